//! The database's layout and how a connection to it is opened.

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, ErrorCode, Transaction, TransactionBehavior};

use super::HistoryError;

/// Kept in SQLite's `user_version`. A database of another version is refused rather than misread: a newer
/// one needs a newer Braid, and format 1 was written only by pre-release builds, so nobody has runs in it
/// worth converting.
pub(super) const SCHEMA_VERSION: i64 = 2;

/// How long a connection waits for another one (the runtime's writer, another Braid process) to finish
/// writing before it gives up with "database is locked".
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Runs with their live counts; large values once per distinct content (compressed when that pays); and
/// the records themselves in chunks (see `chunks_schema`).
const SCHEMA: &str = "
CREATE TABLE runs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id TEXT NOT NULL UNIQUE,
    project_name TEXT NOT NULL,
    status TEXT NOT NULL,
    started_at_ms REAL NOT NULL,
    duration_ms REAL,
    invocations INTEGER NOT NULL DEFAULT 0,
    succeeded INTEGER NOT NULL DEFAULT 0,
    caught INTEGER NOT NULL DEFAULT 0,
    failed INTEGER NOT NULL DEFAULT 0,
    timed_out INTEGER NOT NULL DEFAULT 0,
    cancelled INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX runs_started ON runs (started_at_ms);
CREATE TABLE payloads (
    id INTEGER PRIMARY KEY,
    hash BLOB NOT NULL UNIQUE,
    codec INTEGER NOT NULL,
    size INTEGER NOT NULL,
    data BLOB NOT NULL
);
CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
INSERT INTO meta (key, value) VALUES ('payload_generation', 0);
";

/// One row per run and writer transaction (up to about 4,000 records): `data` is the records (see `chunk.rs`),
/// `refs` the payload ids of their large values (varints, in the order the records name them), `min_id`
/// and `max_id` the range of invocation ids it holds. Chunk ids only grow (AUTOINCREMENT), so a reader
/// finds what was written since it last looked above the last id it read. `refs` comes before `data`:
/// reading it (to sweep payloads) does not read the records.
const CHUNKS_SCHEMA: &str = "
CREATE TABLE chunks (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    run INTEGER NOT NULL,
    min_id INTEGER NOT NULL,
    max_id INTEGER NOT NULL,
    count INTEGER NOT NULL,
    refs BLOB NOT NULL,
    data BLOB NOT NULL
);
CREATE INDEX chunks_run ON chunks (run, min_id, max_id);
";

/// The process recording each running run (see `owner.rs`), so that a run whose Braid was killed can be
/// told from one still going.
const RECORDERS_SCHEMA: &str =
    "CREATE TABLE IF NOT EXISTS recorders (run INTEGER PRIMARY KEY, owner TEXT NOT NULL);";

/// What each run printed outside its invocations, a row per line in order: pip's output as the project's
/// libraries installed (`worker` 0) and worker output (`worker` counts from 1). Added without a format
/// change, like `recorders`: a Braid that does not know it leaves it alone.
const LOG_SCHEMA: &str = "CREATE TABLE IF NOT EXISTS run_log (
    run INTEGER NOT NULL,
    line INTEGER NOT NULL,
    worker INTEGER NOT NULL,
    text TEXT NOT NULL,
    PRIMARY KEY (run, line)
) WITHOUT ROWID;";

pub(super) fn database_error(path: &Path, error: &rusqlite::Error) -> HistoryError {
    let hint = match error.sqlite_error_code() {
        Some(ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt) => {
            " (the file is damaged or not a Braid history; move it away to start a new history)"
        }
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => {
            " (another program holds it; try again when it is done)"
        }
        _ => "",
    };
    HistoryError::Database {
        path: path.to_owned(),
        message: format!("{error}{hint}"),
    }
}

/// Opens the database at `path`, creating its folder and its tables when they are not there yet.
pub(super) fn open(path: &Path) -> Result<Connection, HistoryError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        crate::model::local_folder::ensure(dir).map_err(|e| HistoryError::Database {
            path: path.to_owned(),
            message: format!("can't create the folder {}: {e}", dir.display()),
        })?;
    }
    let error = |e: rusqlite::Error| database_error(path, &e);
    let mut conn = Connection::open(path).map_err(error)?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(error)?;
    // WAL: the panel reads while the runtime writes, neither waiting for the other. NORMAL sync is safe
    // against a crash of Braid (not of the machine), which is what history needs, and much faster.
    // 16 kB pages for a new database (an existing one keeps its own): a run's chunks are blobs of
    // about 100 kB, and bigger pages cut the WAL frames, overflow links and checksums the writer
    // goes through: its CPU per recorded 100,000-item run is about 27 ms, against 45 with 4 kB pages.
    conn.pragma_update(None, "page_size", 16384)
        .map_err(error)?;
    conn.query_row("PRAGMA journal_mode = WAL", [], |_| Ok(()))
        .map_err(error)?;
    conn.pragma_update(None, "synchronous", "NORMAL")
        .map_err(error)?;
    // IMMEDIATE: two processes opening a new file at once must not both create the tables.
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(error)?;
    let version: i64 = tx
        .query_row("PRAGMA user_version", [], |row| row.get(0))
        .map_err(error)?;
    match version {
        0 => create(&tx).map_err(|e| match e {
            Created::Sql(e) => error(e),
            Created::Foreign => HistoryError::Database {
                path: path.to_owned(),
                message: "this SQLite database is not a Braid history".to_owned(),
            },
        })?,
        SCHEMA_VERSION => {}
        older @ 1..SCHEMA_VERSION => {
            return Err(HistoryError::Database {
                path: path.to_owned(),
                message: format!(
                    "written by a pre-release Braid (history format {older}; this Braid reads \
                     {SCHEMA_VERSION}); move the file away to start a new history"
                ),
            });
        }
        newer if newer > SCHEMA_VERSION => {
            return Err(HistoryError::Database {
                path: path.to_owned(),
                message: format!(
                    "written by a newer Braid (history format {newer}; this Braid reads {SCHEMA_VERSION})"
                ),
            });
        }
        unknown => {
            return Err(HistoryError::Database {
                path: path.to_owned(),
                message: format!("damaged history: unknown history format {unknown}"),
            });
        }
    }
    // Added without a format change: a Braid that does not know it leaves it alone (see `owner.rs`).
    tx.execute_batch(RECORDERS_SCHEMA).map_err(error)?;
    tx.execute_batch(LOG_SCHEMA).map_err(error)?;
    tx.commit().map_err(error)?;
    Ok(conn)
}

enum Created {
    Sql(rusqlite::Error),
    /// Tables of something else: never write into another program's database.
    Foreign,
}

fn create(tx: &Transaction<'_>) -> Result<(), Created> {
    let tables: i64 = tx
        .query_row("SELECT count(*) FROM sqlite_master", [], |row| row.get(0))
        .map_err(Created::Sql)?;
    if tables > 0 {
        return Err(Created::Foreign);
    }
    tx.execute_batch(SCHEMA).map_err(Created::Sql)?;
    tx.execute_batch(CHUNKS_SCHEMA).map_err(Created::Sql)?;
    tx.pragma_update(None, "user_version", SCHEMA_VERSION)
        .map_err(Created::Sql)
}
