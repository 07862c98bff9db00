//! Run history that lasts: every run and invocation of a project, in an SQLite database beside it.
//!
//! [`History`] reads it (the Block Executions panel, `braid history`); the runtime writes it through
//! [`HistoryWriter`], on a thread of its own.
//!
//! Layout (see `history/schema.rs`, `history/chunk.rs` and `docs/runtime.md`): `runs`, one row per run
//! with live counts; `chunks`, the invocation records of a run in compact binary rows of about 4,000
//! records (one per writer transaction), which is what keeps recording cheap; `payloads`, where every large
//! value is stored once per distinct content, compressed when that pays. Reading decodes a run's chunks
//! and filters in Rust.

mod chunk;
mod owner;
mod payload;
mod schema;
#[cfg(test)]
mod tests;
mod writer;

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use rusqlite::types::Value as SqlValue;
use rusqlite::{Connection, OptionalExtension as _, Transaction, TransactionBehavior};
use serde_json::Value;

pub use schema::{Opened, open_private};
pub use writer::HistoryWriter;

use crate::model::BlockId;
use crate::run::{
    BlockCounts, ErrorInfo, Executor, InvocationFilter, InvocationId, InvocationRecord,
    InvocationRow, RowOrder, RunId, RunRow, RunStatus, failure_shape,
};
use chunk::{Chunk, SegmentView, Val};

/// How many runs a project keeps unless told otherwise (`braid run` applies it after each run).
pub const DEFAULT_KEEP_RUNS: usize = 100;

#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    #[error("history database {path}: {message}")]
    Database { path: PathBuf, message: String },
}

/// A project's history database. Reads are cheap and synchronous; writes happen on the runtime's
/// writer thread in batches (see [`HistoryWriter`]).
#[derive(Debug)]
pub struct History {
    path: PathBuf,
    conn: Connection,
    cache: RefCell<Cache>,
}

/// What reading a run decodes once and uses again: stepping through invocations in the panel asks for
/// one record, its parents and its children at a time.
#[derive(Default)]
struct Cache {
    /// The index of the run asked about last.
    run: Option<RunIndex>,
    /// The chunks read last, newest first (chunks never change once written; ids are never reused).
    chunks: Vec<LoadedChunk>,
}

/// Chunks kept in [`Cache::chunks`]: the few that hold neighbouring ids (chunks written at the same time
/// overlap).
const CACHED_CHUNKS: usize = 4;

impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cache")
            .field("run", &self.run.as_ref().map(|r| r.seq))
            .field(
                "chunks",
                &self.chunks.iter().map(|c| c.id).collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// Where each record of a run is, and its lineage edges, from one pass over its chunks.
struct RunIndex {
    run: RunId,
    /// The connection's `data_version` when the index was last brought up to date.
    version: i64,
    seq: i64,
    /// The run's chunks read so far: how many, and the last one's id (chunk ids only grow).
    chunks: i64,
    last_chunk: i64,
    /// (invocation id, chunk id, segment, offset in the segment's body), by invocation id.
    places: Vec<(InvocationId, i64, u32, u32)>,
    /// (parent, child), sorted and without duplicates.
    edges: Vec<(InvocationId, InvocationId)>,
}

struct LoadedChunk {
    id: i64,
    data: Vec<u8>,
    refs: Vec<i64>,
    /// Where each segment starts in `data`, and the index in `refs` of its first large value: a record is
    /// read without parsing the other segments.
    segments: Vec<(usize, usize)>,
}

/// Reading a database failed: SQLite's error, or something in it that this Braid did not write.
pub(super) enum Failure {
    Sql(rusqlite::Error),
    Damaged(String),
}

impl From<rusqlite::Error> for Failure {
    fn from(error: rusqlite::Error) -> Self {
        Self::Sql(error)
    }
}

/// The process recording a run, while it is running (see `history/owner.rs`).
macro_rules! owner_column {
    () => {
        "(SELECT owner FROM recorders WHERE run = runs.seq)"
    };
}

const RUN_COLUMNS: &str = concat!(
    "run_id, status, started_at_ms, duration_ms, invocations, succeeded, caught, failed, timed_out, \
     cancelled, ",
    owner_column!(),
    ", (SELECT scheduler FROM run_clusters WHERE run = runs.seq)",
    ", (SELECT of FROM redrives WHERE run = runs.seq)"
);

impl History {
    /// Where a project's history lives: `<dir>/.braid/<file name>.history.sqlite` (the folder is meant to be
    /// left out of version control).
    pub fn path_for_project(project_file: &Path) -> PathBuf {
        crate::model::local_folder::file_for_project(project_file, ".history.sqlite")
    }

    /// Opens (creating if needed) the database at `path`, and its folder, to read and delete runs.
    pub fn open(path: &Path) -> Result<Self, HistoryError> {
        Ok(Self {
            path: path.to_owned(),
            conn: schema::open(path)?,
            cache: RefCell::default(),
        })
    }

    /// Opens the database at `path` only to read it: nothing in the file or its folder changes, and a
    /// read-only file system is no obstacle. Deleting runs from it fails.
    pub fn open_read_only(path: &Path) -> Result<Self, HistoryError> {
        Ok(Self {
            path: path.to_owned(),
            conn: schema::open_read_only(path)?,
            cache: RefCell::default(),
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
            .prepare_cached("SELECT seq FROM runs WHERE run_id = ?1")
            .and_then(|mut statement| statement.query_row([&run.0], |row| row.get(0)).optional())
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
                &[SqlValue::Text(run.0.to_string())],
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
                        retrying: 0,
                    },
                    row.get::<_, Option<String>>(10)?,
                    row.get::<_, Option<String>>(11)?,
                    row.get::<_, Option<String>>(12)?,
                ))
            })
            .map_err(error)?;
        let mut runs = Vec::new();
        for row in rows {
            let (
                run_id,
                status,
                started_at_ms,
                duration_ms,
                invocations,
                counts,
                owner,
                cluster,
                of,
            ) = row.map_err(error)?;
            let mut status = RunStatus::from_name(&status)
                .ok_or_else(|| self.damaged(&format!("run status {status:?}")))?;
            if status == RunStatus::Running && owner.as_deref().is_some_and(owner::is_gone) {
                status = RunStatus::Interrupted;
            }
            runs.push(RunRow {
                run_id,
                status,
                started_at_ms,
                duration_ms,
                invocations,
                counts,
                executor: Executor::from_cluster(cluster),
                redrive_of: of.map(|of| RunId(of.into())),
            });
        }
        Ok(runs)
    }

    /// A failure while reading the run `run`.
    fn failure(&self, run: &RunId, failure: Failure) -> HistoryError {
        match failure {
            Failure::Sql(e) => self.sql_error(&e),
            Failure::Damaged(what) => self.damaged(&format!("run {run}: {what}")),
        }
    }

    /// The run's invocations that pass `filter`, in its order. An unknown run has none.
    ///
    /// The run's chunks are decoded and filtered here: block, status and item path on the decoded
    /// numbers, the text in the JSON of the input, return value and error (ASCII case-insensitive). Large
    /// values are payloads, decompressed and searched once each however many rows share them. 100,000
    /// rows take a few tens of milliseconds in a release build.
    pub fn invocation_rows(
        &self,
        run: &RunId,
        filter: &InvocationFilter,
    ) -> Result<Vec<InvocationRow>, HistoryError> {
        let Some(seq) = self.seq(run)? else {
            return Ok(Vec::new());
        };
        let needle = filter
            .text
            .as_deref()
            .filter(|t| !t.is_empty())
            .map(|t| t.to_ascii_lowercase().into_bytes());
        let mut rows = Vec::new();
        // Payload id → whether it contains the needle.
        let mut searched: HashMap<i64, bool> = HashMap::new();
        self.each_chunk(seq, 0, |chunk_id, refs, chunk| {
            let damaged = |what: String| Failure::Damaged(format!("chunk {chunk_id}: {what}"));
            for segment in &chunk.segments {
                let blocks: Vec<bool> = segment
                    .blocks
                    .iter()
                    .map(|(id, _)| filter.block.as_ref().is_none_or(|b| *b.0 == **id))
                    .collect();
                if !blocks.contains(&true) {
                    continue;
                }
                for raw in segment.records() {
                    let raw = raw.map_err(damaged)?;
                    if !blocks[raw.block]
                        || !(filter.statuses.is_empty() || filter.statuses.contains(&raw.status))
                        || filter
                            .item_path_prefix
                            .as_deref()
                            .is_some_and(|p| !raw.path_starts_with(p))
                        || filter
                            .item_key
                            .as_deref()
                            .is_some_and(|k| raw.item_key().as_deref() != Some(k))
                        || filter.failure_shape.as_deref().is_some_and(|shape| {
                            !raw.status.is_failure()
                                || failure_shape(
                                    raw.error.map_or(raw.status.label(), |(summary, _)| summary),
                                ) != shape
                        })
                    {
                        continue;
                    }
                    if let Some(needle) = &needle {
                        let mut found = false;
                        for value in [Some(raw.input), raw.output, raw.error.map(|e| e.1)]
                            .into_iter()
                            .flatten()
                        {
                            found = found
                                || self.contains(segment, refs, value, needle, &mut searched)?;
                        }
                        if !found {
                            continue;
                        }
                    }
                    let (block_id, block_name) = segment.blocks[raw.block];
                    rows.push(InvocationRow {
                        id: raw.id,
                        block_id: BlockId(block_id.into()),
                        block_name: block_name.into(),
                        item_path: raw.item_path().map_err(damaged)?,
                        item: raw.item_name(),
                        attempt: raw.attempt,
                        status: raw.status,
                        carried: raw.carried_from.is_some(),
                        started_at_ms: raw.started_at_ms,
                        ended_at_ms: raw.ended_at_ms,
                        input_preview: segment.input_preview(raw.input).map_err(damaged)?,
                        error_summary: raw.error.map(|(summary, _)| summary.to_owned()),
                        worker: raw.worker(segment),
                    });
                }
            }
            Ok(())
        })
        .map_err(|e| self.failure(run, e))?;
        sort_rows(&mut rows, filter.order);
        Ok(rows)
    }

    /// Calls `each` with every chunk of the run whose id is above `after`, in the order they were
    /// written, with the payload ids it refers to.
    fn each_chunk(
        &self,
        seq: i64,
        after: i64,
        mut each: impl FnMut(i64, &[i64], &Chunk<'_>) -> Result<(), Failure>,
    ) -> Result<(), Failure> {
        let mut statement = self.conn.prepare_cached(
            "SELECT id, refs, data FROM chunks WHERE run = ?1 AND id > ?2 ORDER BY id",
        )?;
        let mut rows = statement.query([seq, after])?;
        while let Some(row) = rows.next()? {
            let chunk_id: i64 = row.get(0)?;
            let damaged = |what: String| Failure::Damaged(format!("chunk {chunk_id}: {what}"));
            let blob = |column: usize| -> Result<&[u8], Failure> {
                row.get_ref(column)?
                    .as_blob()
                    .map_err(|e| damaged(e.to_string()))
            };
            let (refs, chunk) = parse_chunk(blob(1)?, blob(2)?).map_err(damaged)?;
            each(chunk_id, &refs, &chunk)?;
        }
        Ok(())
    }

    /// Whether a value's JSON contains `needle` (lower case), ignoring ASCII case.
    fn contains(
        &self,
        segment: &SegmentView<'_>,
        refs: &[i64],
        value: Val<'_>,
        needle: &[u8],
        searched: &mut HashMap<i64, bool>,
    ) -> Result<bool, Failure> {
        match value {
            Val::Inline(json) => Ok(contains_ignoring_case(json, needle)),
            Val::Uint(n) => Ok(contains_ignoring_case(
                chunk::decimal(n, &mut [0; 20]),
                needle,
            )),
            Val::Large(index) => {
                let id = refs[segment.large_ref(index).map_err(Failure::Damaged)?];
                if let Some(&found) = searched.get(&id) {
                    return Ok(found);
                }
                let found = contains_ignoring_case(&self.payload_bytes(id)?, needle);
                searched.insert(id, found);
                Ok(found)
            }
            Val::SameAsBackpackIn => Ok(false),
        }
    }

    fn payload_bytes(&self, id: i64) -> Result<Vec<u8>, Failure> {
        let (codec, data) = self
            .conn
            .prepare_cached("SELECT codec, data FROM payloads WHERE id = ?1")?
            .query_row([id], |row| Ok((row.get(0)?, row.get(1)?)))
            .optional()?
            .ok_or_else(|| Failure::Damaged(format!("stored value {id} is missing")))?;
        payload::decode(codec, data).map_err(Failure::Damaged)
    }

    /// The whole record of one invocation.
    pub fn invocation(
        &self,
        run: &RunId,
        id: InvocationId,
    ) -> Result<Option<InvocationRecord>, HistoryError> {
        let place = self.with_index(run, |index| {
            index
                .places
                .binary_search_by_key(&id, |place| place.0)
                .ok()
                .map(|at| index.places[at])
        })?;
        let Some((_, chunk_id, segment, offset)) = place.flatten() else {
            return Ok(None);
        };
        self.read_record(run, chunk_id, segment as usize, offset as usize)
            .map(Some)
            .map_err(|e| self.failure(run, e))
    }

    /// Calls `f` with the run's index (read or brought up to date if needed); `None` for an unknown run.
    fn with_index<T>(
        &self,
        run: &RunId,
        f: impl FnOnce(&RunIndex) -> T,
    ) -> Result<Option<T>, HistoryError> {
        let mut cache = self.cache.borrow_mut();
        // Changes only when another connection commits: the index in hand is then certainly current.
        let version: i64 = self
            .conn
            .prepare_cached("PRAGMA data_version")
            .and_then(|mut statement| statement.query_row([], |row| row.get(0)))
            .map_err(|e| self.sql_error(&e))?;
        if let Some(index) = cache
            .run
            .as_ref()
            .filter(|i| &i.run == run && i.version == version)
        {
            return Ok(Some(f(index)));
        }
        let Some(seq) = self.seq(run)? else {
            return Ok(None);
        };
        let mut index = self
            .run_index(seq, cache.run.take())
            .map_err(|e| self.failure(run, e))?;
        index.run = run.clone();
        index.version = version;
        let out = f(&index);
        cache.run = Some(index);
        Ok(Some(out))
    }

    /// The record at this place of the chunk (kept for the next call).
    fn read_record(
        &self,
        run: &RunId,
        chunk_id: i64,
        segment: usize,
        offset: usize,
    ) -> Result<InvocationRecord, Failure> {
        let mut cache = self.cache.borrow_mut();
        let damaged = |what: String| Failure::Damaged(format!("chunk {chunk_id}: {what}"));
        let loaded = match cache.chunks.iter().position(|c| c.id == chunk_id) {
            Some(at) => cache.chunks.remove(at),
            None => self.load_chunk(chunk_id)?,
        };
        let chunks = &mut cache.chunks;
        chunks.insert(0, loaded);
        chunks.truncate(CACHED_CHUNKS);
        let loaded = &chunks[0];
        let &(start, first_ref) = loaded
            .segments
            .get(segment)
            .ok_or_else(|| damaged("a segment is missing".to_owned()))?;
        let segment = SegmentView::at(&loaded.data, start, first_ref).map_err(damaged)?;
        let raw = segment.record_at(offset).map_err(damaged)?;
        self.record(run, &segment, &loaded.refs, &raw)
            .map_err(|e| match e {
                Failure::Damaged(what) => damaged(what),
                sql @ Failure::Sql(_) => sql,
            })
    }

    fn load_chunk(&self, chunk_id: i64) -> Result<LoadedChunk, Failure> {
        let damaged = |what: String| Failure::Damaged(format!("chunk {chunk_id}: {what}"));
        let (refs, data) = self
            .conn
            .prepare_cached("SELECT refs, data FROM chunks WHERE id = ?1")?
            .query_row([chunk_id], |row| {
                let blob = |column| -> rusqlite::Result<Result<Vec<u8>, String>> {
                    Ok(row
                        .get_ref(column)?
                        .as_blob()
                        .map(<[u8]>::to_vec)
                        .map_err(|e| e.to_string()))
                };
                Ok((blob(0)?, blob(1)?))
            })?;
        let (refs, data) = (refs.map_err(damaged)?, data.map_err(damaged)?);
        let (refs, chunk) = parse_chunk(&refs, &data).map_err(damaged)?;
        let segments = chunk
            .segments
            .iter()
            .map(|s| (s.start, s.first_ref))
            .collect();
        drop(chunk);
        Ok(LoadedChunk {
            id: chunk_id,
            data,
            refs,
            segments,
        })
    }

    /// A decoded record, its values read (from the payloads when they are large).
    fn record(
        &self,
        run: &RunId,
        segment: &SegmentView<'_>,
        refs: &[i64],
        raw: &chunk::Raw<'_>,
    ) -> Result<InvocationRecord, Failure> {
        let bytes = |value: Val<'_>| -> Result<Vec<u8>, Failure> {
            match value {
                Val::Inline(bytes) => Ok(bytes.to_vec()),
                Val::Uint(n) => Ok(chunk::decimal(n, &mut [0; 20]).to_vec()),
                Val::Large(index) => {
                    self.payload_bytes(refs[segment.large_ref(index).map_err(Failure::Damaged)?])
                }
                Val::SameAsBackpackIn => Err(Failure::Damaged(
                    "a value refers to the backpack".to_owned(),
                )),
            }
        };
        let json = |value: Val<'_>| -> Result<Value, Failure> {
            match value {
                Val::Uint(n) => Ok(Value::from(n)),
                other => chunk::from_json(&bytes(other)?).map_err(Failure::Damaged),
            }
        };
        let text = |value: Option<Val<'_>>| -> Result<String, Failure> {
            value.map_or(Ok(String::new()), |v| {
                Ok(String::from_utf8_lossy(&bytes(v)?).into_owned())
            })
        };
        let backpack_in = std::sync::Arc::new(json(raw.backpack_in)?);
        let backpack_out = match raw.backpack_out {
            None => None,
            Some(Val::SameAsBackpackIn) => Some(std::sync::Arc::clone(&backpack_in)),
            Some(value) => Some(std::sync::Arc::new(json(value)?)),
        };
        let error: Option<ErrorInfo> = match raw.error {
            None => None,
            Some((_, value)) => Some(chunk::from_json(&bytes(value)?).map_err(Failure::Damaged)?),
        };
        let (block_id, block_name) = segment.blocks[raw.block];
        Ok(InvocationRecord {
            run_id: run.clone(),
            id: raw.id,
            block_id: BlockId(block_id.into()),
            block_name: block_name.into(),
            item_path: raw.item_path().map_err(Failure::Damaged)?,
            attempt: raw.attempt,
            parents: raw.parents().collect(),
            status: raw.status,
            queued_at_ms: raw.queued_at_ms,
            started_at_ms: raw.started_at_ms,
            ended_at_ms: raw.ended_at_ms,
            input: json(raw.input)?,
            backpack_in,
            output: raw.output.map(json).transpose()?,
            backpack_out,
            stdout: text(raw.stdout)?,
            stderr: text(raw.stderr)?,
            error,
            fired: raw.fired(segment),
            worker: raw.worker(segment),
            item_names: raw.item_names(),
            fanned_out: raw
                .fanned_out
                .iter()
                .map(|&value| chunk::from_json(&bytes(value)?).map_err(Failure::Damaged))
                .collect::<Result<_, _>>()?,
            carried_from: raw.carried_from,
        })
    }

    /// Calls `each` with every whole record of the run, in the order they were written (for a redrive,
    /// which reads them all once). An unknown run has none.
    pub fn each_record(
        &self,
        run: &RunId,
        mut each: impl FnMut(InvocationRecord),
    ) -> Result<(), HistoryError> {
        let Some(seq) = self.seq(run)? else {
            return Ok(());
        };
        self.each_chunk(seq, 0, |chunk_id, refs, chunk| {
            for segment in &chunk.segments {
                for raw in segment.records() {
                    let raw =
                        raw.map_err(|what| Failure::Damaged(format!("chunk {chunk_id}: {what}")))?;
                    each(self.record(run, segment, refs, &raw)?);
                }
            }
            Ok(())
        })
        .map_err(|e| self.failure(run, e))
    }

    /// The invocations that came from this one (through any transition), in id order.
    ///
    /// The run's lineage edges are gathered from its chunks on the first call (with where each record
    /// is, for [`Self::invocation`]) and kept, then brought up to date from the chunks written since (a
    /// run being recorded), so stepping through a run costs a count and a binary search per call.
    pub fn children(
        &self,
        run: &RunId,
        id: InvocationId,
    ) -> Result<Vec<InvocationId>, HistoryError> {
        let children = self.with_index(run, |index| {
            let start = index.edges.partition_point(|edge| edge.0 < id);
            index.edges[start..]
                .iter()
                .take_while(|edge| edge.0 == id)
                .map(|edge| edge.1)
                .collect()
        })?;
        Ok(children.unwrap_or_default())
    }

    /// The run's index, up to date: `known` brought up to date, or read anew.
    fn run_index(&self, seq: i64, known: Option<RunIndex>) -> Result<RunIndex, Failure> {
        let (chunks, last_chunk): (i64, i64) = self
            .conn
            .prepare_cached("SELECT count(*), coalesce(max(id), 0) FROM chunks WHERE run = ?1")?
            .query_row([seq], |row| Ok((row.get(0)?, row.get(1)?)))?;
        let mut index = known
            .filter(|i| i.seq == seq && i.chunks <= chunks && i.last_chunk <= last_chunk)
            .unwrap_or(RunIndex {
                run: RunId("".into()),
                version: 0,
                seq,
                chunks: 0,
                last_chunk: 0,
                places: Vec::new(),
                edges: Vec::new(),
            });
        if index.chunks == chunks && index.last_chunk == last_chunk {
            return Ok(index);
        }
        let edges_before = index.edges.len();
        // Chunk ids only grow (AUTOINCREMENT, one writer at a time), so what is new is above the last.
        let mut read = 0;
        let mut last = index.last_chunk;
        self.each_chunk(seq, index.last_chunk, |chunk_id, _, chunk| {
            for (s, segment) in chunk.segments.iter().enumerate() {
                for raw in segment.records() {
                    let raw =
                        raw.map_err(|what| Failure::Damaged(format!("chunk {chunk_id}: {what}")))?;
                    index
                        .places
                        .push((raw.id, chunk_id, s as u32, raw.at as u32));
                    index
                        .edges
                        .extend(raw.parents().map(|parent| (parent, raw.id)));
                }
            }
            read += 1;
            last = chunk_id;
            Ok(())
        })?;
        index.chunks += read;
        index.last_chunk = last;
        // Stable sorts: they find what was known before already sorted and merge the new in.
        index.places.sort_by_key(|place| place.0);
        if index.edges.len() > edges_before {
            #[allow(clippy::stable_sort_primitive)]
            index.edges.sort();
            index.edges.dedup();
        }
        Ok(index)
    }

    /// What a run printed outside its invocations, in order: `(0, line)` for pip's output while the
    /// project's libraries installed, `(n, line)` for worker `n`'s output. Empty for a run not here.
    pub fn log(&self, run: &RunId) -> Result<Vec<(usize, String)>, HistoryError> {
        let Some(seq) = self.seq(run)? else {
            return Ok(Vec::new());
        };
        let error = |e: rusqlite::Error| self.sql_error(&e);
        let mut statement = self
            .conn
            .prepare_cached("SELECT worker, text FROM run_log WHERE run = ?1 ORDER BY line")
            .map_err(error)?;
        statement
            .query_map([seq], |row| {
                Ok((row.get::<_, i64>(0)?.max(0) as usize, row.get(1)?))
            })
            .and_then(Iterator::collect)
            .map_err(error)
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
    /// here (it may be being recorded right now) unless its recorder is gone.
    pub fn apply_retention(&self, keep: usize) -> Result<(), HistoryError> {
        let error = |e: rusqlite::Error| self.sql_error(&e);
        let old: Vec<(i64, String, Option<String>)> = self
            .conn
            .prepare(concat!(
                "SELECT seq, status, ",
                owner_column!(),
                " FROM runs WHERE seq NOT IN \
                     (SELECT seq FROM runs ORDER BY started_at_ms DESC, seq DESC LIMIT ?1)"
            ))
            .map_err(error)?
            .query_map([i64::try_from(keep).unwrap_or(i64::MAX)], |row| {
                Ok((row.get(0)?, row.get(1)?, row.get(2)?))
            })
            .map_err(error)?
            .collect::<Result<_, _>>()
            .map_err(error)?;
        let old: Vec<i64> = old
            .into_iter()
            .filter(|(_, status, owner)| {
                status != "running" || owner.as_deref().is_some_and(owner::is_gone)
            })
            .map(|(seq, _, _)| seq)
            .collect();
        if old.is_empty() {
            return Ok(());
        }
        self.delete_seqs(&old)
    }

    fn delete_seqs(&self, seqs: &[i64]) -> Result<(), HistoryError> {
        let error = |e: rusqlite::Error| self.sql_error(&e);
        let tx = Transaction::new_unchecked(&self.conn, TransactionBehavior::Immediate)
            .map_err(error)?;
        // The payloads these runs refer to; those no remaining chunk refers to go too. (A run whose
        // refs are damaged is deleted all the same; its values may stay behind.)
        let mut candidates = HashSet::new();
        for seq in seqs {
            let mut statement = tx
                .prepare_cached("SELECT refs FROM chunks WHERE run = ?1")
                .map_err(error)?;
            let mut rows = statement.query([seq]).map_err(error)?;
            while let Some(row) = rows.next().map_err(error)? {
                let refs: Vec<u8> = row.get(0).map_err(error)?;
                candidates.extend(chunk::parse_refs(&refs).unwrap_or_default());
            }
            drop(rows);
            for sql in [
                "DELETE FROM chunks WHERE run = ?1",
                "DELETE FROM run_log WHERE run = ?1",
                "DELETE FROM recorders WHERE run = ?1",
                "DELETE FROM run_clusters WHERE run = ?1",
                "DELETE FROM redrives WHERE run = ?1",
                "DELETE FROM runs WHERE seq = ?1",
            ] {
                tx.execute(sql, [seq]).map_err(error)?;
            }
        }
        payload::sweep(&tx, candidates).map_err(error)?;
        tx.commit().map_err(error)?;
        let mut cache = self.cache.borrow_mut();
        if cache.run.as_ref().is_some_and(|r| seqs.contains(&r.seq)) {
            cache.run = None;
        }
        Ok(())
    }
}

/// A chunk's refs and records, parsed.
fn parse_chunk<'a>(refs: &[u8], data: &'a [u8]) -> Result<(Vec<i64>, Chunk<'a>), chunk::Damage> {
    let refs = chunk::parse_refs(refs)?;
    let chunk = Chunk::parse(data)?;
    if refs.len() < chunk.refs_needed() {
        return Err(format!(
            "it names {} large values but refers to {}",
            chunk.refs_needed(),
            refs.len()
        ));
    }
    Ok((refs, chunk))
}

/// Sorts rows: missing times last, ties by id.
fn sort_rows(rows: &mut [InvocationRow], order: RowOrder) {
    let duration = |r: &InvocationRow| Some(r.ended_at_ms? - r.started_at_ms?);
    match order {
        // Chunks come in id order mostly: this is nearly sorted already.
        RowOrder::Id => rows.sort_by_key(|r| r.id),
        RowOrder::Started => rows
            .sort_by(|a, b| by_time(a.started_at_ms, b.started_at_ms, false).then(a.id.cmp(&b.id))),
        RowOrder::DurationDescending => {
            rows.sort_by(|a, b| by_time(duration(a), duration(b), true).then(a.id.cmp(&b.id)));
        }
        RowOrder::DurationAscending => {
            rows.sort_by(|a, b| by_time(duration(a), duration(b), false).then(a.id.cmp(&b.id)));
        }
    }
}

/// Missing last; otherwise up (or down), by `total_cmp` (a total order: sorting never panics).
fn by_time(a: Option<f64>, b: Option<f64>, descending: bool) -> std::cmp::Ordering {
    match (a, b) {
        (Some(a), Some(b)) if descending => b.total_cmp(&a),
        (Some(a), Some(b)) => a.total_cmp(&b),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => std::cmp::Ordering::Equal,
    }
}

/// Whether JSON or printed text contains `needle` (already lower case), ignoring ASCII case.
fn contains_ignoring_case(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty()
        || haystack
            .windows(needle.len())
            .any(|window| window.eq_ignore_ascii_case(needle))
}
