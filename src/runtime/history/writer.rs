//! The runtime's side of history: a named thread that takes runs and records from a bounded channel and
//! writes them in batched transactions.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, sync_channel};
use std::time::{Duration, Instant};

use rusqlite::types::Value as SqlValue;
use rusqlite::{Connection, OptionalExtension as _, TransactionBehavior, params};
use tokio::sync::oneshot;

use super::codec::{item_path_text, preview, run_status_text, status_text};
use super::payload;
use super::schema::{database_error, open};
use super::{HistoryError, RunId};
use crate::runtime::record::{BlockCounts, InvocationRecord, RunSummary};

/// Messages waiting for the writer. Each holds a whole batch of records, so this is far more than the
/// engine produces while the writer commits one transaction; when it is full, the engine waits
/// (backpressure) rather than memory growing without bound.
const CHANNEL_CAPACITY: usize = 256;
/// A transaction is committed after this many records…
const BATCH_RECORDS: usize = 1000;
/// …or this long after its first message arrived, whichever comes first.
const BATCH_WAIT: Duration = Duration::from_millis(50);
/// The hash → payload id memo is dropped when it grows past this (memory stays bounded on huge runs;
/// the database lookup it saves is only an index probe).
const MEMO_LIMIT: usize = 200_000;

enum Message {
    Started {
        run: RunId,
        project_name: String,
        started_at_ms: f64,
    },
    Records(Vec<InvocationRecord>),
    Finished {
        summary: Box<RunSummary>,
        done: Option<oneshot::Sender<()>>,
    },
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
        let (sender, receiver) = sync_channel(CHANNEL_CAPACITY);
        let store = Store::new(path.to_owned(), conn);
        std::thread::Builder::new()
            .name("braid-history".to_owned())
            .spawn(move || store.serve(&receiver))
            .map_err(|e| HistoryError::Database {
                path: path.to_owned(),
                message: format!("can't start the history writer: {e}"),
            })?;
        Ok(Self {
            path: path.to_owned(),
            sender,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn run_started(&self, run: &RunId, project_name: &str, started_at_ms: f64) {
        self.send(Message::Started {
            run: run.clone(),
            project_name: project_name.to_owned(),
            started_at_ms,
        });
    }

    pub fn invocations(&self, records: &[InvocationRecord]) {
        if !records.is_empty() {
            self.send(Message::Records(records.to_vec()));
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
}

/// What the writer remembers between transactions, to spare itself lookups.
#[derive(Default)]
struct Memos {
    /// Run id → its `runs.seq`.
    runs: HashMap<RunId, i64>,
    /// Runs this writer started: a record of one of them whose row is gone belongs to a deleted run.
    started: HashSet<RunId>,
    /// Content hash → payload id, valid for `generation`.
    memo: HashMap<payload::Hash, i64>,
    /// Bumped in the database whenever payloads are deleted: memos of other connections are then stale.
    generation: i64,
}

impl Store {
    fn new(path: PathBuf, conn: Connection) -> Self {
        Self {
            path,
            conn,
            memos: Memos {
                generation: -1,
                ..Memos::default()
            },
        }
    }

    fn serve(mut self, receiver: &Receiver<Message>) {
        while let Ok(first) = receiver.recv() {
            let deadline = Instant::now() + BATCH_WAIT;
            let mut records = count(&first);
            let mut batch = vec![first];
            while records < BATCH_RECORDS && !matches!(batch.last(), Some(Message::Finished { .. }))
            {
                match receiver.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                    Ok(message) => {
                        records += count(&message);
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
                self.memos.memo.clear();
            }
            for message in batch {
                if let Message::Finished {
                    done: Some(done), ..
                } = message
                {
                    let _ = done.send(());
                }
            }
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

impl Memos {
    fn write(&mut self, tx: &rusqlite::Transaction<'_>, batch: &[Message]) -> rusqlite::Result<()> {
        let generation: i64 = tx.query_row(
            "SELECT value FROM meta WHERE key = 'payload_generation'",
            [],
            |row| row.get(0),
        )?;
        if generation != self.generation {
            // Payloads (and maybe runs) were deleted since the memos were made.
            self.memo.clear();
            self.runs.clear();
            self.generation = generation;
        }
        let mut counts: HashMap<i64, (u64, BlockCounts)> = HashMap::new();
        let mut statements = Statements::new(tx)?;
        for message in batch {
            match message {
                Message::Started {
                    run,
                    project_name,
                    started_at_ms,
                } => {
                    tx.execute(
                        "INSERT OR IGNORE INTO runs (run_id, project_name, status, started_at_ms)
                         VALUES (?1, ?2, 'running', ?3)",
                        params![run.0, project_name, started_at_ms],
                    )?;
                    let seq =
                        tx.query_row("SELECT seq FROM runs WHERE run_id = ?1", [&run.0], |row| {
                            row.get(0)
                        })?;
                    self.runs.insert(run.clone(), seq);
                    self.started.insert(run.clone());
                }
                Message::Records(records) => {
                    for record in records {
                        let Some(seq) = self.run_seq(tx, &record.run_id, record.queued_at_ms)?
                        else {
                            continue;
                        };
                        if self.insert(&mut statements, seq, record)? {
                            let entry = counts.entry(seq).or_default();
                            entry.0 += 1;
                            entry.1.add_final(record.status);
                        }
                    }
                }
                Message::Finished { summary, .. } => {
                    let Some(seq) = self.run_seq(tx, &summary.run_id, summary.started_at_ms)?
                    else {
                        continue;
                    };
                    tx.execute(
                        "UPDATE runs SET status = ?2, started_at_ms = ?3, duration_ms = ?4 WHERE seq = ?1",
                        params![
                            seq,
                            run_status_text(summary.status),
                            summary.started_at_ms,
                            summary.duration_ms
                        ],
                    )?;
                }
            }
        }
        for (seq, (invocations, c)) in counts {
            tx.execute(
                "UPDATE runs SET invocations = invocations + ?2, succeeded = succeeded + ?3,
                 caught = caught + ?4, failed = failed + ?5, timed_out = timed_out + ?6,
                 cancelled = cancelled + ?7 WHERE seq = ?1",
                params![
                    seq,
                    invocations,
                    c.succeeded,
                    c.caught,
                    c.failed,
                    c.timed_out,
                    c.cancelled
                ],
            )?;
        }
        Ok(())
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
                tx.last_insert_rowid()
            }
        };
        self.runs.insert(run.clone(), seq);
        Ok(Some(seq))
    }

    /// Inserts one record; `false` when it was there already.
    fn insert(
        &mut self,
        st: &mut Statements<'_>,
        seq: i64,
        record: &InvocationRecord,
    ) -> rusqlite::Result<bool> {
        let input = json_bytes(&record.input);
        let preview = preview(&input);
        let input = self.payload(st, &input)?;
        let backpack_in = self.payload(st, &json_bytes(&record.backpack_in))?;
        let output = self.optional_json(st, record.output.as_ref())?;
        let backpack_out = self.optional_json(st, record.backpack_out.as_ref())?;
        let stdout = self.text(st, &record.stdout)?;
        let stderr = self.text(st, &record.stderr)?;
        let error = self.optional_json(st, record.error.as_ref())?;
        let fired = if record.fired.is_empty() {
            None
        } else {
            self.optional_json(st, Some(&record.fired))?
        };
        let parents = json_bytes(&record.parents);
        let inserted = st.row.execute(params![
            seq,
            record.id,
            record.block_id.0,
            record.block_name,
            item_path_text(&record.item_path),
            record.attempt,
            status_text(record.status),
            record.queued_at_ms,
            record.started_at_ms,
            record.ended_at_ms,
            record.duration_ms(),
            preview,
            record
                .error
                .as_ref()
                .map(crate::runtime::ErrorInfo::summary),
            String::from_utf8_lossy(&parents),
            input,
            backpack_in,
            output,
            backpack_out,
            stdout,
            stderr,
            error,
            fired,
        ])? == 1;
        if inserted {
            for parent in &record.parents {
                st.edge.execute(params![seq, parent, record.id])?;
            }
        }
        Ok(inserted)
    }

    fn optional_json<T: serde::Serialize>(
        &mut self,
        st: &mut Statements<'_>,
        value: Option<&T>,
    ) -> rusqlite::Result<Option<SqlValue>> {
        value.map(|v| self.payload(st, &json_bytes(v))).transpose()
    }

    /// Printed output; nothing printed is no payload at all.
    fn text(&mut self, st: &mut Statements<'_>, text: &str) -> rusqlite::Result<Option<SqlValue>> {
        if text.is_empty() {
            Ok(None)
        } else {
            self.payload(st, text.as_bytes()).map(Some)
        }
    }

    /// What a payload column holds for these contents: a small value itself (a blob), else the id of the
    /// payload row (stored now if it was not there yet).
    fn payload(&mut self, st: &mut Statements<'_>, bytes: &[u8]) -> rusqlite::Result<SqlValue> {
        if bytes.len() < payload::INLINE_BELOW {
            return Ok(SqlValue::Blob(bytes.to_vec()));
        }
        self.payload_row(st, bytes).map(SqlValue::Integer)
    }

    fn payload_row(&mut self, st: &mut Statements<'_>, bytes: &[u8]) -> rusqlite::Result<i64> {
        let hash = payload::hash(bytes);
        if let Some(&id) = self.memo.get(&hash) {
            return Ok(id);
        }
        let found: Option<i64> = st
            .find_payload
            .query_row([&hash[..]], |row| row.get(0))
            .optional()?;
        let id = if let Some(id) = found {
            id
        } else {
            let (codec, data) = payload::encode(bytes);
            st.add_payload
                .execute(params![&hash[..], codec, bytes.len(), &data[..]])?;
            st.conn.last_insert_rowid()
        };
        if self.memo.len() >= MEMO_LIMIT {
            self.memo.clear();
        }
        self.memo.insert(hash, id);
        Ok(id)
    }
}

/// The statements run per record, prepared once per transaction: preparing (or finding in the cache)
/// per record showed up in profiles.
struct Statements<'c> {
    conn: &'c Connection,
    row: rusqlite::Statement<'c>,
    edge: rusqlite::Statement<'c>,
    find_payload: rusqlite::Statement<'c>,
    add_payload: rusqlite::Statement<'c>,
}

impl<'c> Statements<'c> {
    fn new(conn: &'c Connection) -> rusqlite::Result<Self> {
        Ok(Self {
            conn,
            row: conn.prepare(
                "INSERT OR IGNORE INTO invocations (run, id, block_id, block_name, item_path, attempt,
                 status, queued_at_ms, started_at_ms, ended_at_ms, duration_ms, input_preview,
                 error_summary, parents, input, backpack_in, output, backpack_out, stdout, stderr, error,
                 fired)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18,
                 ?19, ?20, ?21, ?22)",
            )?,
            edge: conn
                .prepare("INSERT OR IGNORE INTO parents (run, parent, child) VALUES (?1, ?2, ?3)")?,
            find_payload: conn.prepare("SELECT id FROM payloads WHERE hash = ?1")?,
            add_payload: conn
                .prepare("INSERT INTO payloads (hash, codec, size, data) VALUES (?1, ?2, ?3, ?4)")?,
        })
    }
}

fn count(message: &Message) -> usize {
    match message {
        Message::Records(records) => records.len(),
        Message::Started { .. } | Message::Finished { .. } => 1,
    }
}

fn json_bytes<T: serde::Serialize + ?Sized>(value: &T) -> Vec<u8> {
    // Serialising a `Value` (or our own plain structs) cannot fail: no maps with non-string keys.
    serde_json::to_vec(value).unwrap_or_default()
}
