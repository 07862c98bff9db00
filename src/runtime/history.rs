//! Run history that lasts: every run and invocation of a project, in an SQLite database beside it.
//!
//! CONTRACT (written first so that the store and the Block Executions panel can be built at the same
//! time): the types and signatures below are what the panel codes against. The store's owner fills in
//! the bodies and may add items; changing these signatures needs both sides.

//!
//! Layout (see `history/schema.rs` and `docs/runtime.md`): `runs`, one row per run with live counts;
//! `invocations`, one small row per invocation (what the table filters and sorts on) pointing at
//! `payloads`, where every large value is stored once per distinct content, compressed when that pays;
//! `parents`, the lineage edges, so that [`History::children`] is an index lookup.

mod codec;
mod payload;
mod schema;
#[cfg(test)]
mod tests;
mod writer;

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use rusqlite::types::{Value as SqlValue, ValueRef};
use rusqlite::{Connection, OptionalExtension as _, Transaction, TransactionBehavior};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

pub use codec::parse_status;
pub use writer::HistoryWriter;

use super::record::{
    BlockCounts, InvocationId, InvocationRecord, InvocationStatus, RunId, RunStatus,
};
use crate::model::BlockId;
use codec::{item_path_range, parse_item_path, parse_run_status};

/// How many runs a project keeps unless told otherwise (`braid run` applies it after each run).
pub const DEFAULT_KEEP_RUNS: usize = 100;

#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    #[error("history database {path}: {message}")]
    Database { path: PathBuf, message: String },
}

/// The calendar date `(year, month, day)` of a day count since 1970-01-01 (Howard Hinnant's algorithm),
/// for showing run times without a date-time dependency.
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    // Day 1..=31 and month 1..=12: the casts can't truncate.
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(month <= 2), month, day)
}

/// One run, as the runs list shows it (newest first).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunRow {
    pub run_id: RunId,
    pub status: RunStatus,
    pub started_at_ms: f64,
    pub duration_ms: Option<f64>,
    pub invocations: u64,
    /// Totals over all blocks.
    pub counts: BlockCounts,
}

/// One invocation, as a table row: small enough to hold a million of them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InvocationRow {
    pub id: InvocationId,
    pub block_id: BlockId,
    pub block_name: String,
    pub item_path: Vec<u32>,
    pub attempt: u32,
    pub status: InvocationStatus,
    pub started_at_ms: Option<f64>,
    pub ended_at_ms: Option<f64>,
    /// The input as JSON text, cut to at most 120 characters.
    pub input_preview: String,
    /// `ValueError: bad row`, when it failed.
    pub error_summary: Option<String>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum RowOrder {
    /// Invocation id (creation order).
    #[default]
    Id,
    /// Start time.
    Started,
    DurationDescending,
    DurationAscending,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InvocationFilter {
    pub block: Option<BlockId>,
    /// Empty: every status.
    pub statuses: Vec<InvocationStatus>,
    /// Text that must appear in the input, output or error.
    pub text: Option<String>,
    /// Rows whose item path starts with this.
    pub item_path_prefix: Option<Vec<u32>>,
    pub order: RowOrder,
}

/// A project's history database. Reads are cheap and synchronous; writes happen on the runtime's
/// writer thread in batches (see [`HistoryWriter`]).
#[derive(Debug)]
pub struct History {
    path: PathBuf,
    conn: Connection,
}

const RUN_COLUMNS: &str = "run_id, status, started_at_ms, duration_ms, invocations, succeeded, caught, \
                           failed, timed_out, cancelled";

impl History {
    /// Where a project's history lives: `<dir>/.braid/<file name>.history.sqlite` (the folder is meant to be
    /// left out of version control).
    pub fn path_for_project(project_file: &Path) -> PathBuf {
        let dir = project_file.parent().unwrap_or_else(|| Path::new("."));
        let name = project_file
            .file_name()
            .map_or_else(|| "project".into(), |n| n.to_string_lossy().into_owned());
        dir.join(".braid").join(format!("{name}.history.sqlite"))
    }

    /// Opens (creating if needed) the database at `path`, and its folder.
    pub fn open(path: &Path) -> Result<Self, HistoryError> {
        Ok(Self {
            path: path.to_owned(),
            conn: schema::open(path)?,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn sql_error(&self, error: &rusqlite::Error) -> HistoryError {
        schema::database_error(&self.path, error)
    }

    /// Something in the file that this Braid did not write: a damaged database.
    fn damaged(&self, what: &str) -> HistoryError {
        HistoryError::Database {
            path: self.path.clone(),
            message: format!("damaged history: {what}"),
        }
    }

    fn seq(&self, run: &RunId) -> Result<Option<i64>, HistoryError> {
        self.conn
            .query_row("SELECT seq FROM runs WHERE run_id = ?1", [&run.0], |row| {
                row.get(0)
            })
            .optional()
            .map_err(|e| self.sql_error(&e))
    }

    /// Every run, newest first.
    pub fn runs(&self) -> Result<Vec<RunRow>, HistoryError> {
        self.query_runs(
            &format!("SELECT {RUN_COLUMNS} FROM runs ORDER BY started_at_ms DESC, seq DESC"),
            &[],
        )
    }

    /// One run, when it is in the history.
    pub fn run(&self, run: &RunId) -> Result<Option<RunRow>, HistoryError> {
        Ok(self
            .query_runs(
                &format!("SELECT {RUN_COLUMNS} FROM runs WHERE run_id = ?1"),
                &[SqlValue::Text(run.0.clone())],
            )?
            .pop())
    }

    fn query_runs(&self, sql: &str, params: &[SqlValue]) -> Result<Vec<RunRow>, HistoryError> {
        let error = |e: rusqlite::Error| self.sql_error(&e);
        let mut statement = self.conn.prepare_cached(sql).map_err(error)?;
        let rows = statement
            .query_map(rusqlite::params_from_iter(params), |row| {
                Ok((
                    RunId(row.get(0)?),
                    row.get::<_, String>(1)?,
                    row.get(2)?,
                    row.get(3)?,
                    row.get(4)?,
                    BlockCounts {
                        queued: 0,
                        running: 0,
                        succeeded: row.get(5)?,
                        caught: row.get(6)?,
                        failed: row.get(7)?,
                        timed_out: row.get(8)?,
                        cancelled: row.get(9)?,
                    },
                ))
            })
            .map_err(error)?;
        let mut runs = Vec::new();
        for row in rows {
            let (run_id, status, started_at_ms, duration_ms, invocations, counts) =
                row.map_err(error)?;
            let status = parse_run_status(&status)
                .ok_or_else(|| self.damaged(&format!("run status {status:?}")))?;
            runs.push(RunRow {
                run_id,
                status,
                started_at_ms,
                duration_ms,
                invocations,
                counts,
            });
        }
        Ok(runs)
    }

    /// The run's invocations that pass `filter`, in its order. An unknown run has none.
    ///
    /// Block, status and item path are SQL conditions on indexed columns. The text filter is a scan
    /// instead: payloads are compressed, so SQL can't look inside them; the run's distinct input, output
    /// and error payloads are decompressed once each and searched (ASCII case-insensitive) in Rust. Each
    /// distinct value is searched once however many rows share it; 100,000 rows take well under a
    /// second.
    pub fn invocation_rows(
        &self,
        run: &RunId,
        filter: &InvocationFilter,
    ) -> Result<Vec<InvocationRow>, HistoryError> {
        let error = |e: rusqlite::Error| self.sql_error(&e);
        let Some(seq) = self.seq(run)? else {
            return Ok(Vec::new());
        };
        let mut sql = String::from(
            "SELECT id, block_id, block_name, item_path, attempt, status, started_at_ms, ended_at_ms, \
             input_preview, error_summary, input, output, error FROM invocations WHERE run = ?",
        );
        let mut params = vec![SqlValue::Integer(seq)];
        if let Some(block) = &filter.block {
            sql.push_str(" AND block_id = ?");
            params.push(SqlValue::Text(block.0.clone()));
        }
        if !filter.statuses.is_empty() {
            sql.push_str(" AND status IN (");
            for (i, status) in filter.statuses.iter().enumerate() {
                sql.push_str(if i == 0 { "?" } else { ", ?" });
                params.push(SqlValue::Text(codec::status_text(*status).to_owned()));
            }
            sql.push(')');
        }
        if let Some((low, high)) = filter.item_path_prefix.as_deref().and_then(item_path_range) {
            sql.push_str(" AND item_path >= ? AND item_path < ?");
            params.push(SqlValue::Text(low));
            params.push(SqlValue::Text(high));
        }
        sql.push_str(match filter.order {
            RowOrder::Id => " ORDER BY id",
            RowOrder::Started => " ORDER BY started_at_ms IS NULL, started_at_ms, id",
            RowOrder::DurationDescending => " ORDER BY duration_ms IS NULL, duration_ms DESC, id",
            RowOrder::DurationAscending => " ORDER BY duration_ms IS NULL, duration_ms, id",
        });
        let needle = filter
            .text
            .as_deref()
            .filter(|t| !t.is_empty())
            .map(str::to_ascii_lowercase);
        let matching = match &needle {
            Some(needle) => Some(self.payloads_containing(seq, needle)?),
            None => None,
        };
        let mut statement = self.conn.prepare(&sql).map_err(error)?;
        let mut rows = statement
            .query(rusqlite::params_from_iter(params))
            .map_err(error)?;
        let mut out = Vec::new();
        while let Some(row) = rows.next().map_err(error)? {
            if let (Some(matching), Some(needle)) = (&matching, &needle) {
                let mut found = false;
                for column in 10..=12 {
                    found |= match row.get_ref(column).map_err(error)? {
                        ValueRef::Integer(id) => matching.contains(&id),
                        ValueRef::Blob(inline) => contains_ignoring_case(inline.to_vec(), needle),
                        _ => false,
                    };
                }
                if !found {
                    continue;
                }
            }
            out.push(Self::invocation_row(row).map_err(|e| match e {
                RowError::Sql(e) => error(e),
                RowError::Damaged(what) => self.damaged(&what),
            })?);
        }
        Ok(out)
    }

    fn invocation_row(row: &rusqlite::Row<'_>) -> Result<InvocationRow, RowError> {
        let item_path: String = row.get(3)?;
        let status: String = row.get(5)?;
        Ok(InvocationRow {
            id: row.get(0)?,
            block_id: BlockId(row.get(1)?),
            block_name: row.get(2)?,
            item_path: parse_item_path(&item_path)
                .ok_or_else(|| RowError::Damaged(format!("item path {item_path:?}")))?,
            attempt: row.get(4)?,
            status: parse_status(&status)
                .ok_or_else(|| RowError::Damaged(format!("status {status:?}")))?,
            started_at_ms: row.get(6)?,
            ended_at_ms: row.get(7)?,
            input_preview: row.get(8)?,
            error_summary: row.get(9)?,
        })
    }

    /// The ids of the run's input, output and error payload rows that contain `needle` (lower case).
    fn payloads_containing(&self, seq: i64, needle: &str) -> Result<HashSet<i64>, HistoryError> {
        let error = |e: rusqlite::Error| self.sql_error(&e);
        let mut statement = self
            .conn
            .prepare(
                "SELECT id, codec, data FROM payloads WHERE id IN (
                     SELECT input FROM invocations WHERE run = ?1
                     UNION SELECT output FROM invocations WHERE run = ?1
                     UNION SELECT error FROM invocations WHERE run = ?1)",
            )
            .map_err(error)?;
        let mut rows = statement.query([seq]).map_err(error)?;
        let mut matching = HashSet::new();
        while let Some(row) = rows.next().map_err(error)? {
            let id: i64 = row.get(0).map_err(error)?;
            let bytes = payload::decode(row.get(1).map_err(error)?, row.get(2).map_err(error)?)
                .map_err(|what| self.damaged(&what))?;
            if contains_ignoring_case(bytes, needle) {
                matching.insert(id);
            }
        }
        Ok(matching)
    }

    /// The contents of a payload column: `None` for no value.
    fn column_bytes(&self, column: SqlValue) -> Result<Option<Vec<u8>>, HistoryError> {
        match column {
            SqlValue::Null => Ok(None),
            SqlValue::Blob(inline) => Ok(Some(inline)),
            SqlValue::Integer(id) => self.payload_bytes(id).map(Some),
            SqlValue::Real(_) | SqlValue::Text(_) => Err(self.damaged("a value of the wrong type")),
        }
    }

    fn payload_bytes(&self, id: i64) -> Result<Vec<u8>, HistoryError> {
        let error = |e: rusqlite::Error| self.sql_error(&e);
        let (codec, data) = self
            .conn
            .prepare_cached("SELECT codec, data FROM payloads WHERE id = ?1")
            .map_err(error)?
            .query_row([id], |row| Ok((row.get(0)?, row.get(1)?)))
            .optional()
            .map_err(error)?
            .ok_or_else(|| self.damaged(&format!("stored value {id} is missing")))?;
        payload::decode(codec, data).map_err(|what| self.damaged(&what))
    }

    fn column_json<T: DeserializeOwned>(
        &self,
        column: SqlValue,
    ) -> Result<Option<T>, HistoryError> {
        self.column_bytes(column)?
            .map(|bytes| {
                serde_json::from_slice(&bytes)
                    .map_err(|e| self.damaged(&format!("a stored value: {e}")))
            })
            .transpose()
    }

    fn column_text(&self, column: SqlValue) -> Result<String, HistoryError> {
        Ok(self
            .column_bytes(column)?
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
            .unwrap_or_default())
    }

    /// The whole record of one invocation.
    pub fn invocation(
        &self,
        run: &RunId,
        id: InvocationId,
    ) -> Result<Option<InvocationRecord>, HistoryError> {
        let error = |e: rusqlite::Error| self.sql_error(&e);
        let Some(seq) = self.seq(run)? else {
            return Ok(None);
        };
        let Some((row, parents, payloads)) = self
            .conn
            .prepare_cached(
                "SELECT id, block_id, block_name, item_path, attempt, status, started_at_ms, \
                 ended_at_ms, input_preview, error_summary, queued_at_ms, parents, input, backpack_in, \
                 output, backpack_out, stdout, stderr, error, fired \
                 FROM invocations WHERE run = ?1 AND id = ?2",
            )
            .map_err(error)?
            .query_row(rusqlite::params![seq, id], |row| {
                let payloads: [SqlValue; 8] = [
                    row.get(12)?,
                    row.get(13)?,
                    row.get(14)?,
                    row.get(15)?,
                    row.get(16)?,
                    row.get(17)?,
                    row.get(18)?,
                    row.get(19)?,
                ];
                let queued_at_ms: f64 = row.get(10)?;
                let parents: String = row.get(11)?;
                Ok((
                    Self::invocation_row(row).map(|r| (r, queued_at_ms)),
                    parents,
                    payloads,
                ))
            })
            .optional()
            .map_err(error)?
        else {
            return Ok(None);
        };
        let (row, queued_at_ms) = row.map_err(|e| match e {
            RowError::Sql(e) => error(e),
            RowError::Damaged(what) => self.damaged(&what),
        })?;
        let [
            input,
            backpack_in,
            output,
            backpack_out,
            stdout,
            stderr,
            failure,
            fired,
        ] = payloads;
        let required = |column: SqlValue| {
            self.column_json(column)?
                .ok_or_else(|| self.damaged("a required value is missing"))
        };
        Ok(Some(InvocationRecord {
            run_id: run.clone(),
            id: row.id,
            block_id: row.block_id,
            block_name: row.block_name,
            item_path: row.item_path,
            attempt: row.attempt,
            parents: serde_json::from_str(&parents)
                .map_err(|e| self.damaged(&format!("parents {parents:?}: {e}")))?,
            status: row.status,
            queued_at_ms,
            started_at_ms: row.started_at_ms,
            ended_at_ms: row.ended_at_ms,
            input: required(input)?,
            backpack_in: required(backpack_in)?,
            output: self.column_json(output)?,
            backpack_out: self.column_json(backpack_out)?,
            stdout: self.column_text(stdout)?,
            stderr: self.column_text(stderr)?,
            error: self.column_json(failure)?,
            fired: self.column_json(fired)?.unwrap_or_default(),
        }))
    }

    /// The invocations that came from this one (through any transition).
    pub fn children(
        &self,
        run: &RunId,
        id: InvocationId,
    ) -> Result<Vec<InvocationId>, HistoryError> {
        let error = |e: rusqlite::Error| self.sql_error(&e);
        let Some(seq) = self.seq(run)? else {
            return Ok(Vec::new());
        };
        let mut statement = self
            .conn
            .prepare_cached(
                "SELECT child FROM parents WHERE run = ?1 AND parent = ?2 ORDER BY child",
            )
            .map_err(error)?;
        let children = statement
            .query_map(rusqlite::params![seq, id], |row| row.get(0))
            .map_err(error)?
            .collect::<Result<Vec<InvocationId>, _>>()
            .map_err(error)?;
        Ok(children)
    }

    /// Deletes a run and its invocations, and the stored values nothing else uses. Deleting a run that
    /// is not there does nothing.
    pub fn delete_run(&self, run: &RunId) -> Result<(), HistoryError> {
        let Some(seq) = self.seq(run)? else {
            return Ok(());
        };
        self.delete_seqs(&[seq])
    }

    /// Keeps the newest `keep` runs and deletes the rest. A run still marked running is never deleted
    /// here: it may be being recorded right now.
    pub fn apply_retention(&self, keep: usize) -> Result<(), HistoryError> {
        let error = |e: rusqlite::Error| self.sql_error(&e);
        let old: Vec<i64> = self
            .conn
            .prepare(
                "SELECT seq FROM runs WHERE status != 'running' AND seq NOT IN \
                 (SELECT seq FROM runs ORDER BY started_at_ms DESC, seq DESC LIMIT ?1)",
            )
            .map_err(error)?
            .query_map([i64::try_from(keep).unwrap_or(i64::MAX)], |row| row.get(0))
            .map_err(error)?
            .collect::<Result<_, _>>()
            .map_err(error)?;
        if old.is_empty() {
            return Ok(());
        }
        self.delete_seqs(&old)
    }

    fn delete_seqs(&self, seqs: &[i64]) -> Result<(), HistoryError> {
        let error = |e: rusqlite::Error| self.sql_error(&e);
        let tx = Transaction::new_unchecked(&self.conn, TransactionBehavior::Immediate)
            .map_err(error)?;
        for seq in seqs {
            for sql in [
                "DELETE FROM invocations WHERE run = ?1",
                "DELETE FROM parents WHERE run = ?1",
                "DELETE FROM runs WHERE seq = ?1",
            ] {
                tx.execute(sql, [seq]).map_err(error)?;
            }
        }
        // One sweep for all the runs: payloads are shared, so only what no remaining invocation
        // references can go. Only ids count: `x NOT IN (…, NULL)` is never true, and inline values
        // (blobs) are no references.
        tx.execute_batch(
            "DELETE FROM payloads WHERE id NOT IN (
                 SELECT input FROM invocations WHERE typeof(input) = 'integer'
                 UNION SELECT backpack_in FROM invocations WHERE typeof(backpack_in) = 'integer'
                 UNION SELECT output FROM invocations WHERE typeof(output) = 'integer'
                 UNION SELECT backpack_out FROM invocations WHERE typeof(backpack_out) = 'integer'
                 UNION SELECT stdout FROM invocations WHERE typeof(stdout) = 'integer'
                 UNION SELECT stderr FROM invocations WHERE typeof(stderr) = 'integer'
                 UNION SELECT error FROM invocations WHERE typeof(error) = 'integer'
                 UNION SELECT fired FROM invocations WHERE typeof(fired) = 'integer');
             UPDATE meta SET value = value + 1 WHERE key = 'payload_generation';",
        )
        .map_err(error)?;
        tx.commit().map_err(error)
    }
}

/// Whether JSON or printed text contains `needle` (already lower case), ignoring ASCII case.
fn contains_ignoring_case(mut bytes: Vec<u8>, needle: &str) -> bool {
    bytes.make_ascii_lowercase();
    String::from_utf8_lossy(&bytes).contains(needle)
}

enum RowError {
    Sql(rusqlite::Error),
    Damaged(String),
}

impl From<rusqlite::Error> for RowError {
    fn from(error: rusqlite::Error) -> Self {
        Self::Sql(error)
    }
}
