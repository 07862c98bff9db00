//! The runtime's side of history: records are encoded into chunk segments on the sender's thread (no copy
//! of the records is made), then a named thread takes runs and segments from a bounded channel and writes
//! them in batched transactions, one `chunks` row per run and transaction.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, sync_channel};
use std::time::{Duration, Instant};

use rusqlite::{Connection, OptionalExtension as _, TransactionBehavior, params};
use tokio::sync::oneshot;

use super::chunk::{self, Segment};
use super::payload;
use super::schema::{database_error, open};
use super::{HistoryError, RunId};
use crate::run::{BlockCounts, Executor, InvocationId, InvocationRecord, RunSummary};

/// Messages waiting for the writer. Each holds a whole batch of records, so this is far more than the
/// engine produces while the writer commits one transaction; when it is full, the engine waits
/// (backpressure) rather than memory growing without bound.
const CHANNEL_CAPACITY: usize = 256;
/// A transaction is committed after this many records… Each commit also rewrites a few pages (the run's
/// counts, the chunk index, the table's last leaf), and those and the WAL checkpoints they bring made a
/// quarter of the writer's CPU at 1,000 records; from 4,000 on it hardly pays to wait longer.
const BATCH_RECORDS: usize = 4000;
/// …or this long after its first message arrived, whichever comes first.
const BATCH_WAIT: Duration = Duration::from_millis(50);

enum Message {
    Started {
        run: RunId,
        project_name: String,
        started_at_ms: f64,
        /// The run it redrives.
        redrive_of: Option<RunId>,
        /// Answered once the run's row is committed (see [`HistoryWriter::run_started_flushed`]).
        done: Option<oneshot::Sender<()>>,
        cluster: Option<String>,
    },
    Records(Box<Segment>),
    /// Lines of the run's log: (0 for pip, else the worker counted from 1; the text).
    Log {
        run: RunId,
        lines: Vec<(usize, String)>,
    },
    Finished {
        summary: Box<RunSummary>,
        done: Option<oneshot::Sender<()>>,
    },
    /// Write what came before, close the database (SQLite then checkpoints it and removes its WAL
    /// file), end the thread, then answer.
    Close(oneshot::Sender<()>),
}

/// Records runs into a history database from the runtime's side, batching writes on its own thread.
///
/// Cloning is cheap: clones feed the same thread, which ends (after writing what it was sent) when the
/// last clone is dropped.
#[derive(Clone, Debug)]
pub struct HistoryWriter {
    path: PathBuf,
    sender: SyncSender<Message>,
}

impl HistoryWriter {
    /// Opens (creating if needed) the database and starts the writer thread. Errors (a damaged file, no
    /// permission) come back here, before anything is recorded.
    pub fn start(path: &Path) -> Result<Self, HistoryError> {
        let conn = open(path)?;
        Self::spawn(path, move |path, receiver| {
            Store::new(path, conn).serve(&receiver);
        })
    }

    /// Starts the writer's thread, which runs `body` with the database's path and the channel's end.
    fn spawn(
        path: &Path,
        body: impl FnOnce(PathBuf, Receiver<Message>) + Send + 'static,
    ) -> Result<Self, HistoryError> {
        let (sender, receiver) = sync_channel(CHANNEL_CAPACITY);
        let owned = path.to_owned();
        std::thread::Builder::new()
            .name("braid-history".to_owned())
            .spawn(move || body(owned, receiver))
            .map_err(|e| HistoryError::Database {
                path: path.to_owned(),
                message: format!("can't start the history writer: {e}"),
            })?;
        Ok(Self {
            path: path.to_owned(),
            sender,
        })
    }

    /// Like [`Self::start`], except for a database that does not exist yet: its file is made here (so a
    /// folder that can't be written still refuses the run), and its tables on the writer's thread while
    /// the run starts. Creating a database costs tens of milliseconds (SQLite syncs the new file to
    /// disk), which a project's first run would otherwise wait for.
    pub fn start_opening(path: &Path) -> Result<Self, HistoryError> {
        if path.exists() {
            return Self::start(path);
        }
        let refused = |message: String| HistoryError::Database {
            path: path.to_owned(),
            message,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            crate::model::local_folder::ensure(dir)
                .map_err(|e| refused(format!("can't create the folder {}: {e}", dir.display())))?;
        }
        // An empty file is an empty SQLite database; `create_new`: never clobber one made meanwhile
        // (nor follow a link planted there). Owner-only, as SQLite's `-wal` and `-shm` will be.
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(
            &mut options,
            crate::model::local_folder::FILE_MODE,
        );
        match options.open(path) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Self::start(path),
            Err(e) => return Err(refused(format!("can't create it: {e}"))),
        }
        Self::spawn(path, |path, receiver| match open(&path) {
            Ok(conn) => Store::new(path, conn).serve(&receiver),
            Err(error) => {
                // Logged once; what was sent is dropped (`braid run` then says its run is missing).
                tracing::error!("history not recorded: {error}");
                for message in receiver {
                    match message {
                        Message::Finished {
                            done: Some(done), ..
                        } => {
                            let _ = done.send(());
                        }
                        Message::Close(done) => {
                            let _ = done.send(());
                            break;
                        }
                        _ => {}
                    }
                }
            }
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Lines the run printed outside its invocations (see [`Message::Log`]).
    pub fn log(&self, run: &RunId, lines: Vec<(usize, String)>) {
        if !lines.is_empty() {
            self.send(Message::Log {
                run: run.clone(),
                lines,
            });
        }
    }

    pub fn run_started(
        &self,
        run: &RunId,
        project_name: &str,
        started_at_ms: f64,
        executor: &Executor,
    ) {
        self.send(Message::Started {
            run: run.clone(),
            project_name: project_name.to_owned(),
            started_at_ms,
            redrive_of: None,
            done: None,
            cluster: executor.cluster().map(str::to_owned),
        });
    }

    /// Like [`Self::run_started`], committed at once rather than with the run's first records; the
    /// receiver completes once it is (or failed to be: a write error is logged by the writer). The
    /// engine starts the run's invocations only then, so a Braid killed at any moment after leaves the
    /// run in the history (as *interrupted*).
    pub fn run_started_flushed(
        &self,
        run: &RunId,
        project_name: &str,
        started_at_ms: f64,
        executor: &Executor,
        redrive_of: Option<&RunId>,
    ) -> oneshot::Receiver<()> {
        let (done, receiver) = oneshot::channel();
        self.send(Message::Started {
            run: run.clone(),
            project_name: project_name.to_owned(),
            started_at_ms,
            redrive_of: redrive_of.cloned(),
            done: Some(done),
            cluster: executor.cluster().map(str::to_owned),
        });
        receiver
    }

    /// Encodes the records here, on the caller's thread (about a tenth of a microsecond for a small
    /// record), and hands the bytes to the writer.
    pub fn invocations(&self, records: &[InvocationRecord]) {
        for segment in chunk::encode(records) {
            self.send(Message::Records(Box::new(segment)));
        }
    }

    pub fn run_finished(&self, summary: &RunSummary) {
        self.send(Message::Finished {
            summary: Box::new(summary.clone()),
            done: None,
        });
    }

    /// Like [`Self::run_finished`]; the receiver completes once everything sent before, and the run's end,
    /// is committed (or failed to be: a write error is logged by the writer). The engine holds back
    /// `RunFinished` until then, so whoever reads history after `RunFinished` sees the whole run.
    pub fn run_finished_flushed(&self, summary: &RunSummary) -> oneshot::Receiver<()> {
        let (done, receiver) = oneshot::channel();
        self.send(Message::Finished {
            summary: Box::new(summary.clone()),
            done: Some(done),
        });
        receiver
    }

    /// Ends the writer: everything sent before is written, then the database is closed. The receiver
    /// completes once it is. Without this, a process that exits right after a run (`braid run`) leaves
    /// the WAL behind, unmerged and growing from run to run, for the next open to scan.
    pub fn close(&self) -> oneshot::Receiver<()> {
        let (done, receiver) = oneshot::channel();
        self.send(Message::Close(done));
        receiver
    }

    fn send(&self, message: Message) {
        // Blocks while the channel is full (backpressure). Fails only when the thread is gone, which it
        // never is while a sender lives, short of a panic there: then history is lost, the run is not.
        if self.sender.send(message).is_err() {
            tracing::error!("the history writer for {} stopped", self.path.display());
        }
    }
}

/// The writer thread's state.
struct Store {
    path: PathBuf,
    conn: Connection,
    memos: Memos,
    /// Transactions committed since the last checkpoint.
    since_checkpoint: u32,
    /// When the WAL was last checkpointed.
    checkpointed_at: Instant,
}

/// Without a run's end to wait for, the WAL is checkpointed after this many transactions (about
/// 100,000 records), so it stays a few megabytes.
const CHECKPOINT_EVERY: u32 = 25;
/// A run's end is followed by a checkpoint once nothing has come for this long (or at once, when the
/// last was longer ago than this): a served project ends thousands of runs a second, and a checkpoint
/// after each would be most of the writer's work.
const CHECKPOINT_IDLE: Duration = Duration::from_millis(50);

/// What the writer remembers between transactions, to spare itself lookups.
#[derive(Default)]
struct Memos {
    /// Run id → its `runs.seq`.
    runs: HashMap<RunId, i64>,
    /// Runs this writer started: a record of one of them whose row is gone belongs to a deleted run.
    started: HashSet<RunId>,
    /// Per run (`seq`, never reused), the ids recorded so far, one bit each: a record sent twice is
    /// stored and counted once. Dropped when the run finishes; read back from its chunks if needed again.
    recorded: HashMap<i64, Vec<u64>>,
    /// Content hash → payload id, valid for `generation`.
    payloads: payload::Memo,
    /// Bumped in the database whenever payloads are deleted: memos of other connections are then stale.
    generation: i64,
    /// This process, noted with each run it starts (see `owner.rs`).
    owner: Option<String>,
}

impl Store {
    fn new(path: PathBuf, conn: Connection) -> Self {
        // SQLite's automatic checkpoint runs inside whichever commit crosses 1,000 WAL pages, often a
        // run's last one, which `RunFinished` waits for: 10–15 ms of copying and syncing at the end of a
        // new project's first run. The writer checkpoints itself instead, once a run's end is
        // acknowledged (see `serve`). A failure here only leaves SQLite's default.
        if let Err(e) = conn.pragma_update(None, "wal_autocheckpoint", 0) {
            tracing::warn!("history: automatic checkpoints stay on: {e}");
        }
        Self {
            path,
            conn,
            memos: Memos {
                generation: -1,
                owner: super::owner::this_process(),
                ..Memos::default()
            },
            since_checkpoint: 0,
            checkpointed_at: Instant::now(),
        }
    }

    /// Copies the WAL into the database without waiting for readers (PASSIVE): the panel may be reading.
    fn checkpoint(&mut self) {
        self.since_checkpoint = 0;
        self.checkpointed_at = Instant::now();
        if let Err(e) = self
            .conn
            .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
        {
            tracing::warn!("history checkpoint of {} failed: {e}", self.path.display());
        }
    }

    fn serve(mut self, receiver: &Receiver<Message>) {
        let mut closing = Vec::new();
        // A run ended since the last checkpoint: one is owed once the writer is idle.
        let mut owed = false;
        loop {
            let first = if owed {
                match receiver.recv_timeout(CHECKPOINT_IDLE) {
                    Ok(first) => first,
                    Err(RecvTimeoutError::Timeout) => {
                        owed = false;
                        self.checkpoint();
                        continue;
                    }
                    Err(RecvTimeoutError::Disconnected) => break,
                }
            } else {
                match receiver.recv() {
                    Ok(first) => first,
                    Err(_) => break,
                }
            };
            let deadline = Instant::now() + BATCH_WAIT;
            let mut records = count(&first);
            let mut batch = vec![first];
            // Someone waits for this batch's commit (a run's end, its start, a close): take only what
            // is already waiting (the ends and starts of other runs, in a busy served project), and
            // commit them together at once.
            let waited_for = |message: &Message| {
                matches!(
                    message,
                    Message::Finished { .. }
                        | Message::Close(_)
                        | Message::Started { done: Some(_), .. }
                )
            };
            let mut urgent = batch.last().is_some_and(waited_for);
            while records < BATCH_RECORDS && !matches!(batch.last(), Some(Message::Close(_))) {
                let next = if urgent {
                    receiver.try_recv().map_err(|_| RecvTimeoutError::Timeout)
                } else {
                    receiver.recv_timeout(deadline.saturating_duration_since(Instant::now()))
                };
                match next {
                    Ok(message) => {
                        records += count(&message);
                        urgent |= waited_for(&message);
                        batch.push(message);
                    }
                    Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => break,
                }
            }
            if let Err(e) = self.write(&batch) {
                // Logged here and nowhere else; the run goes on, and `braid run` checks that its run
                // made it into history.
                let error = database_error(&self.path, &e);
                tracing::error!("history not recorded: {error}");
                // The transaction rolled back: what the memos say may not be in the database.
                self.memos.runs.clear();
                self.memos.recorded.clear();
                self.memos.payloads.clear();
            }
            let mut finished = false;
            for message in batch {
                match message {
                    Message::Finished { done, .. } => {
                        finished = true;
                        if let Some(done) = done {
                            let _ = done.send(());
                        }
                    }
                    Message::Started {
                        done: Some(done), ..
                    } => {
                        let _ = done.send(());
                    }
                    Message::Close(done) => closing.push(done),
                    Message::Started { done: None, .. }
                    | Message::Records(_)
                    | Message::Log { .. } => {}
                }
            }
            if !closing.is_empty() {
                break;
            }
            // After the acknowledgement: a run's end does not wait for the checkpoint.
            self.since_checkpoint += 1;
            owed |= finished;
            if self.since_checkpoint >= CHECKPOINT_EVERY
                || (owed && self.checkpointed_at.elapsed() >= CHECKPOINT_IDLE)
            {
                owed = false;
                self.checkpoint();
            }
        }
        let path = self.path.clone();
        // The last connection to close merges the WAL into the database and deletes it.
        if let Err((_, e)) = self.conn.close() {
            tracing::warn!("history: closing {} failed: {e}", path.display());
        }
        for done in closing {
            let _ = done.send(());
        }
    }

    fn write(&mut self, batch: &[Message]) -> rusqlite::Result<()> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        self.memos.write(&tx, batch)?;
        tx.commit()
    }
}

/// One `chunks` row being put together: the segments of one run in one transaction.
pub(super) struct Row {
    data: Vec<u8>,
    refs: Vec<u8>,
    min_id: InvocationId,
    max_id: InvocationId,
    count: u64,
    counts: BlockCounts,
}

impl Row {
    pub fn new() -> Self {
        Self {
            data: vec![chunk::FORMAT],
            refs: Vec::new(),
            min_id: InvocationId::MAX,
            max_id: 0,
            count: 0,
            counts: BlockCounts::default(),
        }
    }

    /// Appends a segment's records (those `keep` keeps: all of them when it is `None`), storing its
    /// large values as payloads.
    pub fn push(
        &mut self,
        conn: &Connection,
        payloads: &mut payload::Memo,
        segment: &Segment,
        keep: Option<&[bool]>,
    ) -> rusqlite::Result<()> {
        let mut kept = 0;
        for (i, (&id, &status)) in segment.ids.iter().zip(&segment.statuses).enumerate() {
            if keep.is_none_or(|k| k[i]) {
                kept += 1;
                self.counts.add_final(status);
                self.min_id = self.min_id.min(id);
                self.max_id = self.max_id.max(id);
            }
        }
        if kept == 0 {
            return Ok(());
        }
        self.count += kept;
        for bytes in &segment.large {
            let id = payload::store(conn, payloads, bytes)?;
            chunk::put_ref(&mut self.refs, id);
        }
        segment.write_to(&mut self.data, keep);
        Ok(())
    }

    /// Inserts the row (unless it is empty); `false` when it was.
    pub fn insert(&self, conn: &Connection, run: i64) -> rusqlite::Result<bool> {
        if self.count == 0 {
            return Ok(false);
        }
        conn.prepare_cached(
            "INSERT INTO chunks (run, min_id, max_id, count, refs, data)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?
        .execute(params![
            run,
            self.min_id,
            self.max_id,
            self.count,
            self.refs,
            self.data
        ])?;
        Ok(true)
    }
}

impl Memos {
    fn write(&mut self, tx: &rusqlite::Transaction<'_>, batch: &[Message]) -> rusqlite::Result<()> {
        let generation: i64 = tx
            .prepare_cached("SELECT value FROM meta WHERE key = 'payload_generation'")?
            .query_row([], |row| row.get(0))?;
        if generation != self.generation {
            // Payloads (and maybe runs) were deleted since the memos were made.
            self.payloads.clear();
            self.runs.clear();
            self.generation = generation;
            // Forget the ids of runs that were deleted (their `Finished` will not find them).
            let mut exists = tx.prepare_cached("SELECT 1 FROM runs WHERE seq = ?1")?;
            let mut gone = Vec::new();
            for &seq in self.recorded.keys() {
                if !exists.exists([seq])? {
                    gone.push(seq);
                }
            }
            for seq in gone {
                self.recorded.remove(&seq);
            }
        }
        // Per run, in the order first seen (so chunk rows keep the order the engine sent).
        let mut rows: Vec<(i64, Row)> = Vec::new();
        let mut finished = Vec::new();
        for message in batch {
            match message {
                Message::Started {
                    run,
                    project_name,
                    started_at_ms,
                    cluster,
                    redrive_of,
                    ..
                } => {
                    let new = tx.execute(
                        "INSERT OR IGNORE INTO runs (run_id, project_name, status, started_at_ms)
                         VALUES (?1, ?2, 'running', ?3)",
                        params![run.0, project_name, started_at_ms],
                    )? == 1;
                    let seq =
                        tx.query_row("SELECT seq FROM runs WHERE run_id = ?1", [&run.0], |row| {
                            row.get(0)
                        })?;
                    if new {
                        self.recorded.insert(seq, Vec::new());
                        if let Some(scheduler) = cluster {
                            tx.execute(
                                "INSERT OR REPLACE INTO run_clusters (run, scheduler) VALUES (?1, ?2)",
                                params![seq, scheduler],
                            )?;
                        }
                        if let Some(of) = redrive_of {
                            tx.execute(
                                "INSERT OR REPLACE INTO redrives (run, of) VALUES (?1, ?2)",
                                params![seq, of.0],
                            )?;
                        }
                        if let Some(owner) = &self.owner {
                            tx.execute(
                                "INSERT OR REPLACE INTO recorders (run, owner) VALUES (?1, ?2)",
                                params![seq, owner],
                            )?;
                        }
                    }
                    self.runs.insert(run.clone(), seq);
                    self.started.insert(run.clone());
                }
                Message::Log { run, lines } => {
                    let Some(seq) = self.run_seq(tx, run, crate::run::now_ms())? else {
                        continue;
                    };
                    let first: i64 = tx.query_row(
                        "SELECT coalesce(max(line) + 1, 0) FROM run_log WHERE run = ?1",
                        [seq],
                        |row| row.get(0),
                    )?;
                    let mut insert = tx.prepare_cached(
                        "INSERT INTO run_log (run, line, worker, text) VALUES (?1, ?2, ?3, ?4)",
                    )?;
                    for (line, (worker, text)) in (first..).zip(lines) {
                        insert.execute(params![seq, line, worker, text])?;
                    }
                }
                Message::Records(segment) => {
                    let Some(seq) = self.run_seq(tx, &segment.run, segment.first_queued_at_ms)?
                    else {
                        continue;
                    };
                    let i = rows.iter().position(|(s, _)| *s == seq).unwrap_or_else(|| {
                        rows.push((seq, Row::new()));
                        rows.len() - 1
                    });
                    self.add(tx, seq, segment, &mut rows[i].1)?;
                }
                Message::Close(_) => {}
                Message::Finished { summary, .. } => {
                    let Some(seq) = self.run_seq(tx, &summary.run_id, summary.started_at_ms)?
                    else {
                        continue;
                    };
                    tx.execute(
                        "UPDATE runs SET status = ?2, started_at_ms = ?3, duration_ms = ?4 WHERE seq = ?1",
                        params![
                            seq,
                            summary.status.name(),
                            summary.started_at_ms,
                            summary.duration_ms
                        ],
                    )?;
                    tx.execute("DELETE FROM recorders WHERE run = ?1", [seq])?;
                    finished.push(seq);
                }
            }
        }
        for (seq, row) in rows {
            if !row.insert(tx, seq)? {
                continue;
            }
            let c = row.counts;
            tx.prepare_cached(
                "UPDATE runs SET invocations = invocations + ?2, succeeded = succeeded + ?3,
                 caught = caught + ?4, failed = failed + ?5, timed_out = timed_out + ?6,
                 cancelled = cancelled + ?7 WHERE seq = ?1",
            )?
            .execute(params![
                seq,
                row.count,
                c.succeeded,
                c.caught,
                c.failed,
                c.timed_out,
                c.cancelled
            ])?;
        }
        for seq in finished {
            self.recorded.remove(&seq);
        }
        Ok(())
    }

    /// Adds a segment's records that were not recorded before to the run's row, and stores its large
    /// values as payloads.
    fn add(
        &mut self,
        tx: &rusqlite::Transaction<'_>,
        seq: i64,
        segment: &Segment,
        row: &mut Row,
    ) -> rusqlite::Result<()> {
        let recorded = match self.recorded.entry(seq) {
            Entry::Occupied(entry) => entry.into_mut(),
            Entry::Vacant(entry) => entry.insert(recorded_ids(tx, seq)?),
        };
        let mut keep: Option<Vec<bool>> = None;
        for (i, &id) in segment.ids.iter().enumerate() {
            if !set_bit(recorded, id) {
                keep.get_or_insert_with(|| vec![true; segment.len()])[i] = false;
            }
        }
        row.push(tx, &mut self.payloads, segment, keep.as_deref())
    }

    /// The run's `seq`; `None` when the run was deleted while it was being recorded (its records are
    /// dropped rather than bringing half of it back).
    fn run_seq(
        &mut self,
        tx: &rusqlite::Transaction<'_>,
        run: &RunId,
        started_at_ms: f64,
    ) -> rusqlite::Result<Option<i64>> {
        if let Some(&seq) = self.runs.get(run) {
            return Ok(Some(seq));
        }
        let found: Option<i64> = tx
            .query_row("SELECT seq FROM runs WHERE run_id = ?1", [&run.0], |row| {
                row.get(0)
            })
            .optional()?;
        let seq = match found {
            Some(seq) => seq,
            None if self.started.contains(run) => return Ok(None),
            None => {
                // Records without a start (a caller that skipped `run_started`): keep them all the same.
                tx.execute(
                    "INSERT INTO runs (run_id, project_name, status, started_at_ms)
                     VALUES (?1, '', 'running', ?2)",
                    params![run.0, started_at_ms],
                )?;
                let seq = tx.last_insert_rowid();
                self.recorded.insert(seq, Vec::new());
                seq
            }
        };
        self.runs.insert(run.clone(), seq);
        Ok(Some(seq))
    }
}

/// Sets `id`'s bit; `false` when it was set already.
fn set_bit(bits: &mut Vec<u64>, id: InvocationId) -> bool {
    let (word, bit) = ((id / 64) as usize, 1 << (id % 64));
    if word >= bits.len() {
        bits.resize((word + 1).next_power_of_two(), 0);
    }
    let was = bits[word] & bit != 0;
    bits[word] |= bit;
    !was
}

/// The ids of a run's records already in the database, as bits (for a run this writer did not start,
/// or no longer remembers).
fn recorded_ids(tx: &rusqlite::Transaction<'_>, seq: i64) -> rusqlite::Result<Vec<u64>> {
    let mut bits = Vec::new();
    let mut statement = tx.prepare_cached("SELECT data FROM chunks WHERE run = ?1")?;
    let mut rows = statement.query([seq])?;
    while let Some(row) = rows.next()? {
        let data: Vec<u8> = row.get(0)?;
        // A damaged chunk: its ids are unknown, so a record in it could be written again. Better than
        // recording nothing more of the run; reading it reports the damage.
        for id in chunk::ids(&data).unwrap_or_default() {
            set_bit(&mut bits, id);
        }
    }
    Ok(bits)
}

fn count(message: &Message) -> usize {
    match message {
        Message::Records(segment) => segment.len(),
        Message::Log { lines, .. } => lines.len(),
        Message::Started { .. } | Message::Finished { .. } | Message::Close(_) => 1,
    }
}
