//! The database's layout and how a connection to it is opened.

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, ErrorCode, OpenFlags, Transaction, TransactionBehavior};

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

/// The Dask scheduler each run executed on; a run on this machine has no row. Added without a format
/// change, like `recorders`: a Braid that does not know it leaves it alone, and a history an earlier
/// Braid made still reads (a table, not a column of `runs`, which a read-only reader could not add).
const CLUSTERS_SCHEMA: &str =
    "CREATE TABLE IF NOT EXISTS run_clusters (run INTEGER PRIMARY KEY, scheduler TEXT NOT NULL);";

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

/// Which run each redrive continues (see `runtime/redrive.rs`), a row per redriven run. Added without a
/// format change, like `recorders`.
const REDRIVES_SCHEMA: &str =
    "CREATE TABLE IF NOT EXISTS redrives (run INTEGER PRIMARY KEY, of TEXT NOT NULL);";

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

/// Opens the database at `path` to record into, creating its folder and its tables when they are not
/// there yet. The file is checked before anything in it changes: another program's database, a newer
/// Braid's or a damaged one is refused as it is (not switched to WAL first). In a project's `.braid/`
/// folder nothing is opened through a link, and the folder and files are owner-only (see
/// `local_folder`); SQLite gives its `-wal` and `-shm` files the database's permissions.
pub(super) fn open(path: &Path) -> Result<Connection, HistoryError> {
    let refused = |message: String| HistoryError::Database {
        path: path.to_owned(),
        message,
    };
    let error = |e: rusqlite::Error| database_error(path, &e);
    let mut conn = open_private(path).map_err(|e| match e {
        Opened::Refused(message) => refused(message),
        Opened::Sql(e) => error(e),
    })?;
    // Nothing changes before the file is known to be a history of a format this Braid writes, or an
    // empty database to make one in.
    check_version(path, version(&conn).map_err(error)?)?;
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
    match version(&tx).map_err(error)? {
        (0, _) => create(&tx).map_err(|e| match e {
            Created::Sql(e) => error(e),
            Created::Foreign => refused(FOREIGN.to_owned()),
        })?,
        other => check_version(path, other)?,
    }
    // Added without a format change: a Braid that does not know it leaves it alone (see `owner.rs`).
    tx.execute_batch(RECORDERS_SCHEMA).map_err(error)?;
    tx.execute_batch(LOG_SCHEMA).map_err(error)?;
    tx.execute_batch(CLUSTERS_SCHEMA).map_err(error)?;
    tx.execute_batch(REDRIVES_SCHEMA).map_err(error)?;
    tx.commit().map_err(error)?;
    Ok(conn)
}

/// Why [`open_private`] could not open a database.
#[derive(Debug)]
pub enum Opened {
    /// Its folder or file can't be made, or is not what it must be (a link, not a regular file).
    Refused(String),
    Sql(rusqlite::Error),
}

impl std::fmt::Display for Opened {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Refused(message) => f.write_str(message),
            Self::Sql(e) => write!(f, "{e}"),
        }
    }
}

/// Opens (making it and its folder if need be) a database of Braid's in a project's `.braid/` folder
/// to write it, as the history is: no link followed, the folder and the file owner-only, SQLite's
/// `-wal`, `-shm` and `-journal` checked too, and a wait of a few seconds for another writer. Nothing
/// in the file is read or changed here.
pub fn open_private(path: &Path) -> Result<Connection, Opened> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        crate::model::local_folder::ensure(dir).map_err(|e| {
            Opened::Refused(format!("can't create the folder {}: {e}", dir.display()))
        })?;
    }
    let exists = check_files(path, Access::Write).map_err(|e| match e {
        HistoryError::Database { message, .. } => Opened::Refused(message),
    })?;
    if !exists {
        create_file(path).map_err(|e| Opened::Refused(format!("can't create it: {e}")))?;
    }
    let conn =
        Connection::open_with_flags(path, OpenFlags::default() | NO_LINKS).map_err(Opened::Sql)?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(Opened::Sql)?;
    Ok(conn)
}

/// Opens the database at `path` to read it, changing nothing: no folder, tables or `.gitignore` made,
/// no switch to WAL, and no link followed in `.braid/`. It works on a read-only file system too (the
/// file is then read as it is: nobody can be writing it). A file with no tables yet (a database being
/// made) reads as a history without runs.
pub(super) fn open_read_only(path: &Path) -> Result<Connection, HistoryError> {
    let error = |e: rusqlite::Error| database_error(path, &e);
    check_files(path, Access::Read)?;
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY
        | OpenFlags::SQLITE_OPEN_URI
        | OpenFlags::SQLITE_OPEN_NO_MUTEX
        | NO_LINKS;
    let opened = Connection::open_with_flags(path, flags).and_then(|conn| {
        conn.busy_timeout(BUSY_TIMEOUT)?;
        let version = version(&conn)?;
        Ok((conn, version))
    });
    let (conn, version) = match opened {
        Ok(opened) => opened,
        // A WAL database needs its `-shm` file, which a read-only folder won't let SQLite make: read
        // the file as it is (`immutable`), since nothing can write it either.
        Err(e)
            if matches!(
                e.sqlite_error_code(),
                Some(ErrorCode::CannotOpen | ErrorCode::ReadOnly)
            ) =>
        {
            let conn = Connection::open_with_flags(immutable_uri(path), flags).map_err(error)?;
            let version = version(&conn).map_err(error)?;
            (conn, version)
        }
        Err(e) => return Err(error(e)),
    };
    if version == (0, 0) {
        // Nothing to read yet: an empty history, in memory.
        let conn = Connection::open_in_memory().map_err(error)?;
        for schema in [
            SCHEMA,
            CHUNKS_SCHEMA,
            RECORDERS_SCHEMA,
            LOG_SCHEMA,
            CLUSTERS_SCHEMA,
            REDRIVES_SCHEMA,
        ] {
            conn.execute_batch(schema).map_err(error)?;
        }
        return Ok(conn);
    }
    check_version(path, version)?;
    // Tables added without a format change may be missing from a database an earlier Braid made:
    // empty ones of the connection's own (TEMP, which a read-only connection may write) stand in.
    for (table, schema) in [
        ("recorders", RECORDERS_SCHEMA),
        ("run_log", LOG_SCHEMA),
        ("run_clusters", CLUSTERS_SCHEMA),
        ("redrives", REDRIVES_SCHEMA),
    ] {
        let exists = conn
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?1",
                [table],
                |row| row.get::<_, i64>(0),
            )
            .map_err(error)?
            > 0;
        if !exists {
            conn.execute_batch(&schema.replacen("CREATE TABLE", "CREATE TEMP TABLE", 1))
                .map_err(error)?;
        }
    }
    Ok(conn)
}
/// What a connection is opened for.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Access {
    Read,
    Write,
}

/// Never open the database through a link: a link planted in `.braid/` (an empty file it points to
/// would become a database).
const NO_LINKS: OpenFlags = OpenFlags::SQLITE_OPEN_NOFOLLOW;

const FOREIGN: &str = "this SQLite database is not a Braid history";

/// The database's `user_version` and how many tables, indexes and views it has.
fn version(conn: &Connection) -> rusqlite::Result<(i64, i64)> {
    Ok((
        conn.query_row("PRAGMA user_version", [], |row| row.get(0))?,
        conn.query_row("SELECT count(*) FROM sqlite_master", [], |row| row.get(0))?,
    ))
}

/// Refuses a database this Braid can't read or record into, by its version and table count (see
/// [`version`]).
fn check_version(path: &Path, (version, tables): (i64, i64)) -> Result<(), HistoryError> {
    let message = match version {
        SCHEMA_VERSION => return Ok(()),
        // An empty database becomes a history when it is written; a reader sees no runs.
        0 if tables == 0 => return Ok(()),
        0 => FOREIGN.to_owned(),
        older @ 1..SCHEMA_VERSION => format!(
            "written by a pre-release Braid (history format {older}; this Braid reads \
             {SCHEMA_VERSION}); move the file away to start a new history"
        ),
        newer if newer > SCHEMA_VERSION => format!(
            "written by a newer Braid (history format {newer}; this Braid reads {SCHEMA_VERSION})"
        ),
        unknown => format!("damaged history: unknown history format {unknown}"),
    };
    Err(HistoryError::Database {
        path: path.to_owned(),
        message,
    })
}

/// Checks the database's file and SQLite's own beside it (`-wal`, `-shm`, `-journal`, which SQLite
/// opens by name and would follow a link at): each must be a regular file and not a link, when it is
/// there (see `local_folder`); to write, they are also made owner-only. Whether the database's file
/// is there.
fn check_files(path: &Path, access: Access) -> Result<bool, HistoryError> {
    let refused = |e: std::io::Error| HistoryError::Database {
        path: path.to_owned(),
        message: e.to_string(),
    };
    let mut exists = false;
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let mut name = path.as_os_str().to_owned();
        name.push(suffix);
        let file = Path::new(&name);
        let there = match access {
            Access::Read => crate::model::local_folder::check_file(file),
            Access::Write => crate::model::local_folder::check_private_file(file),
        }
        .map_err(refused)?;
        exists |= suffix.is_empty() && there;
    }
    Ok(exists)
}

/// Makes an empty database file, owner-only (an empty file is an empty SQLite database); one made
/// meanwhile by another process is left as it is.
fn create_file(path: &Path) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, crate::model::local_folder::FILE_MODE);
    match options.open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

/// `file:` URI of the database, to be read as a file nothing changes (`immutable=1`: no locks, no
/// `-shm`).
fn immutable_uri(path: &Path) -> String {
    use std::fmt::Write as _;
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_owned());
    let mut uri = String::from("file:");
    for &byte in absolute.as_os_str().as_encoded_bytes() {
        if byte.is_ascii_graphic() && !matches!(byte, b'%' | b'?' | b'#') || byte == b' ' {
            uri.push(char::from(byte));
        } else {
            let _ = write!(uri, "%{byte:02X}");
        }
    }
    uri.push_str("?immutable=1");
    uri
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
