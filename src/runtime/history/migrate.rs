//! Older history formats, brought up to date when a database is opened, so that nobody loses their runs.
//!
//! Format 1 kept one `invocations` row per invocation (22 columns, two secondary indexes; values under 48
//! bytes in the row itself, larger ones as payload ids) and one `parents` row per lineage edge. Format 2
//! keeps `runs`, `payloads` and `meta` as they were and replaces both tables with `chunks`. The
//! migration runs inside the caller's transaction: it happens whole or not at all.

use std::collections::HashSet;

use rusqlite::types::Value as SqlValue;
use rusqlite::{Connection, OptionalExtension as _, Transaction};
use serde::de::DeserializeOwned;

use super::chunk;
use super::codec::parse_item_path;
use super::payload;
use super::schema::{CHUNKS_SCHEMA, SCHEMA_VERSION};
use super::writer::Row;
use super::{Failure, RunId};
use crate::model::BlockId;
use crate::run::InvocationRecord;
use crate::run::InvocationStatus;

/// Records per chunk: what the writer commits at most per transaction.
const CHUNK_RECORDS: usize = 4000;

pub(super) fn from_v1(tx: &Transaction<'_>) -> Result<(), Failure> {
    tx.execute_batch(CHUNKS_SCHEMA)?;
    let runs: Vec<(i64, String)> = tx
        .prepare("SELECT seq, run_id FROM runs ORDER BY seq")?
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?
        .collect::<Result<_, _>>()?;
    let mut memo = payload::Memo::new();
    for (seq, run_id) in runs {
        let run = RunId(run_id.into());
        let mut statement = tx.prepare(
            "SELECT id, block_id, block_name, item_path, attempt, status, queued_at_ms, started_at_ms,
             ended_at_ms, parents, input, backpack_in, output, backpack_out, stdout, stderr, error, fired
             FROM invocations WHERE run = ?1 ORDER BY id",
        )?;
        let mut rows = statement.query([seq])?;
        let mut batch = Vec::with_capacity(CHUNK_RECORDS);
        loop {
            let row = rows.next()?;
            if let Some(row) = row {
                batch.push(record(tx, &run, row)?);
            }
            if batch.len() == CHUNK_RECORDS || (row.is_none() && !batch.is_empty()) {
                let mut chunk = Row::new();
                for segment in chunk::encode(&batch) {
                    chunk.push(tx, &mut memo, &segment, None)?;
                }
                chunk.insert(tx, seq)?;
                batch.clear();
            }
            if row.is_none() {
                break;
            }
        }
    }
    tx.execute_batch("DROP TABLE invocations; DROP TABLE parents;")?;
    // Values of 48 bytes to 1 kB were payloads and are now in the chunks.
    let every: HashSet<i64> = tx
        .prepare("SELECT id FROM payloads")?
        .query_map([], |row| row.get(0))?
        .collect::<Result<_, _>>()?;
    payload::sweep(tx, every)?;
    tx.pragma_update(None, "user_version", SCHEMA_VERSION)?;
    Ok(())
}

/// One format-1 row as the record it was written from.
fn record(
    conn: &Connection,
    run: &RunId,
    row: &rusqlite::Row<'_>,
) -> Result<InvocationRecord, Failure> {
    let item_path: String = row.get(3)?;
    let status: String = row.get(5)?;
    let parents: String = row.get(9)?;
    let id = row.get(0)?;
    let required = |column: usize| -> Result<serde_json::Value, Failure> {
        json(conn, row.get(column)?)?.ok_or_else(|| {
            Failure::Damaged(format!("invocation {id}: a required value is missing"))
        })
    };
    Ok(InvocationRecord {
        run_id: run.clone(),
        id,
        block_id: BlockId(row.get(1)?),
        block_name: row.get(2)?,
        item_path: parse_item_path(&item_path)
            .map(crate::run::ItemPath::from_vec)
            .ok_or_else(|| Failure::Damaged(format!("item path {item_path:?}")))?,
        attempt: row.get(4)?,
        parents: serde_json::from_str(&parents)
            .map_err(|e| Failure::Damaged(format!("parents {parents:?}: {e}")))?,
        status: InvocationStatus::from_name(&status)
            .ok_or_else(|| Failure::Damaged(format!("status {status:?}")))?,
        queued_at_ms: row.get(6)?,
        started_at_ms: row.get(7)?,
        ended_at_ms: row.get(8)?,
        input: required(10)?,
        backpack_in: required(11)?.into(),
        output: json(conn, row.get(12)?)?,
        backpack_out: json::<serde_json::Value>(conn, row.get(13)?)?.map(Into::into),
        stdout: text(conn, row.get(14)?)?,
        stderr: text(conn, row.get(15)?)?,
        error: json(conn, row.get(16)?)?,
        fired: json(conn, row.get(17)?)?.unwrap_or_default(),
    })
}

/// A format-1 payload column: NULL (no value), a blob (the value itself) or a payload id.
fn bytes(conn: &Connection, column: SqlValue) -> Result<Option<Vec<u8>>, Failure> {
    match column {
        SqlValue::Null => Ok(None),
        SqlValue::Blob(inline) => Ok(Some(inline)),
        SqlValue::Integer(id) => {
            let (codec, data) = conn
                .prepare_cached("SELECT codec, data FROM payloads WHERE id = ?1")?
                .query_row([id], |row| Ok((row.get(0)?, row.get(1)?)))
                .optional()?
                .ok_or_else(|| Failure::Damaged(format!("stored value {id} is missing")))?;
            payload::decode(codec, data)
                .map(Some)
                .map_err(Failure::Damaged)
        }
        SqlValue::Real(_) | SqlValue::Text(_) => {
            Err(Failure::Damaged("a value of the wrong type".to_owned()))
        }
    }
}

fn json<T: DeserializeOwned>(conn: &Connection, column: SqlValue) -> Result<Option<T>, Failure> {
    bytes(conn, column)?
        .map(|bytes| chunk::from_json(&bytes).map_err(Failure::Damaged))
        .transpose()
}

fn text(conn: &Connection, column: SqlValue) -> Result<String, Failure> {
    Ok(bytes(conn, column)?
        .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
        .unwrap_or_default())
}
