//! Queue blocks' messages, kept in the project's `.braid/<project file>.queues.sqlite` while it is
//! served, so a `braid serve` killed at any moment loses none.
//!
//! A message is *ready* until a batch takes it (*taken*), and is deleted once its batch's run
//! succeeded. A batch whose run failed puts its messages back (ready again) until they have been
//! tried [`MAX_ATTEMPTS`] times; then they are *dead*, kept for the user to look at and send round
//! again ([`Store::redrive`]). A serve that starts finds the messages its killed predecessor had
//! taken and makes them ready again: at least once, as with SQS.
//!
//! The database belongs to a thread of its own; commands reach it through a channel and are answered
//! once their transaction is committed, so a producer's run goes on only when its messages are on
//! disk. The thread takes every command waiting and commits them in one transaction.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc as std_mpsc;

use rusqlite::{Connection, params};
use serde_json::Value;
use tokio::sync::oneshot;

/// How often a message's batch may fail before the message is dead.
pub const MAX_ATTEMPTS: u32 = 3;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    queue TEXT NOT NULL,
    body TEXT NOT NULL,
    state INTEGER NOT NULL DEFAULT 0,
    attempts INTEGER NOT NULL DEFAULT 0,
    enqueued_at_ms REAL NOT NULL,
    error TEXT
);
CREATE INDEX IF NOT EXISTS messages_waiting ON messages (queue, state, id);
";

const READY: i64 = 0;
const TAKEN: i64 = 1;
const DEAD: i64 = 2;

/// How many messages of a queue are in each state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Depth {
    pub ready: u64,
    pub taken: u64,
    pub dead: u64,
}

/// A message a batch took.
#[derive(Clone, Debug, PartialEq)]
pub struct Message {
    pub id: i64,
    pub body: Value,
}

/// A dead message, for the user to look at.
#[derive(Clone, Debug, PartialEq)]
pub struct DeadLetter {
    pub id: i64,
    pub body: Value,
    pub attempts: u32,
    pub error: Option<String>,
}

/// How a batch's run ended, for its messages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Done with: deleted.
    Succeeded,
    /// Failed (with why): ready again, or dead once tried [`MAX_ATTEMPTS`] times.
    Failed(String),
    /// Stopped (the service stopped): ready again, the attempt not counted.
    Stopped,
}

enum Command {
    Put {
        queue: String,
        bodies: Vec<Value>,
        done: oneshot::Sender<Result<Depth, String>>,
    },
    Take {
        queue: String,
        limit: usize,
        done: oneshot::Sender<Result<Vec<Message>, String>>,
    },
    Settle {
        queue: String,
        ids: Vec<i64>,
        outcome: Outcome,
    },
    Redrive {
        queue: String,
        done: oneshot::Sender<Result<u64, String>>,
    },
    Dead {
        queue: String,
        limit: usize,
        done: oneshot::Sender<Result<Vec<DeadLetter>, String>>,
    },
    Depths(oneshot::Sender<HashMap<String, Depth>>),
}

/// The queues' messages of one served project (a handle to the thread that owns the database;
/// cheap to clone, the thread ends when the last clone goes).
#[derive(Clone, Debug)]
pub struct Store {
    path: PathBuf,
    commands: std_mpsc::Sender<Command>,
}

/// Where a project's queues keep their messages.
pub fn path_for_project(project_file: &Path) -> PathBuf {
    crate::model::local_folder::file_for_project(project_file, ".queues.sqlite")
}

impl Store {
    /// Opens (making it if need be) the store at `path`; messages a previous serve had taken are
    /// ready again.
    pub fn open(path: &Path) -> Result<Self, String> {
        let failed = |e: &dyn std::fmt::Display| format!("queue store {}: {e}", path.display());
        let mut conn = crate::runtime::history::open_private(path).map_err(|e| failed(&e))?;
        let mut state = State::open(&mut conn).map_err(|e| failed(&e))?;
        let (commands, receiver) = std_mpsc::channel();
        let owned = path.to_owned();
        std::thread::Builder::new()
            .name("braid-queues".to_owned())
            .spawn(move || {
                state.serve(&mut conn, &receiver, &owned);
                // Closing the last connection merges the WAL into the database.
                if let Err((_, e)) = conn.close() {
                    tracing::warn!("queue store {}: closing failed: {e}", owned.display());
                }
            })
            .map_err(|e| failed(&e))?;
        Ok(Self {
            path: path.to_owned(),
            commands,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    async fn ask<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Command) -> Option<T> {
        let (done, answer) = oneshot::channel();
        self.commands.send(make(done)).ok()?;
        answer.await.ok()
    }

    fn gone(&self) -> String {
        format!("queue store {}: its thread stopped", self.path.display())
    }

    /// Keeps `bodies` as messages of `queue`; answers once they are committed, with the queue's depth.
    pub async fn put(&self, queue: &str, bodies: Vec<Value>) -> Result<Depth, String> {
        let queue = queue.to_owned();
        self.ask(|done| Command::Put {
            queue,
            bodies,
            done,
        })
        .await
        .unwrap_or_else(|| Err(self.gone()))
    }

    /// Takes up to `limit` ready messages of `queue`, oldest first.
    pub async fn take(&self, queue: &str, limit: usize) -> Result<Vec<Message>, String> {
        let queue = queue.to_owned();
        self.ask(|done| Command::Take { queue, limit, done })
            .await
            .unwrap_or_else(|| Err(self.gone()))
    }

    /// The end of a batch of taken messages.
    pub fn settle(&self, queue: &str, ids: Vec<i64>, outcome: Outcome) {
        let _ = self.commands.send(Command::Settle {
            queue: queue.to_owned(),
            ids,
            outcome,
        });
    }

    /// Makes `queue`'s dead messages ready again (their attempts start over); how many.
    pub async fn redrive(&self, queue: &str) -> Result<u64, String> {
        let queue = queue.to_owned();
        self.ask(|done| Command::Redrive { queue, done })
            .await
            .unwrap_or_else(|| Err(self.gone()))
    }

    /// Up to `limit` of `queue`'s dead messages, oldest first.
    pub async fn dead(&self, queue: &str, limit: usize) -> Result<Vec<DeadLetter>, String> {
        let queue = queue.to_owned();
        self.ask(|done| Command::Dead { queue, limit, done })
            .await
            .unwrap_or_else(|| Err(self.gone()))
    }

    /// Every queue's depth, as the store counts them (no query: kept up to date as messages move).
    pub async fn depths(&self) -> HashMap<String, Depth> {
        self.ask(Command::Depths).await.unwrap_or_default()
    }
}

/// The thread's side: the depths, counted as messages move.
struct State {
    depths: HashMap<String, Depth>,
}

impl State {
    fn open(conn: &mut Connection) -> rusqlite::Result<Self> {
        conn.query_row("PRAGMA journal_mode = WAL", [], |_| Ok(()))?;
        // NORMAL: a commit is in the WAL file (in the operating system's hands) when it returns, so a
        // killed Braid loses nothing committed; only the machine losing power could.
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.execute_batch(SCHEMA)?;
        // A batch taken by a serve that is gone never finished: its messages go round again.
        conn.execute(
            "UPDATE messages SET state = ?1 WHERE state = ?2",
            params![READY, TAKEN],
        )?;
        let mut depths: HashMap<String, Depth> = HashMap::new();
        {
            let mut statement =
                conn.prepare("SELECT queue, state, count(*) FROM messages GROUP BY queue, state")?;
            let rows = statement.query_map([], |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, i64>(1)?,
                    row.get::<_, u64>(2)?,
                ))
            })?;
            for row in rows {
                let (queue, state, count) = row?;
                let depth = depths.entry(queue).or_default();
                match state {
                    READY => depth.ready += count,
                    DEAD => depth.dead += count,
                    _ => depth.taken += count,
                }
            }
        }
        Ok(Self { depths })
    }

    fn serve(
        &mut self,
        conn: &mut Connection,
        receiver: &std_mpsc::Receiver<Command>,
        path: &Path,
    ) {
        while let Ok(first) = receiver.recv() {
            let mut batch = vec![first];
            while let Ok(more) = receiver.try_recv() {
                batch.push(more);
            }
            let before = self.depths.clone();
            let mut answers = Vec::with_capacity(batch.len());
            let written = (|| -> rusqlite::Result<()> {
                let tx = conn.transaction()?;
                for command in batch {
                    answers.push(self.apply(&tx, command)?);
                }
                tx.commit()
            })();
            match written {
                Ok(()) => {
                    for answer in answers {
                        answer.send();
                    }
                }
                Err(e) => {
                    // Rolled back: nothing of the batch happened.
                    self.depths = before;
                    let message = format!("queue store {}: {e}", path.display());
                    tracing::error!("{message}");
                    for answer in answers {
                        answer.fail(&message);
                    }
                }
            }
        }
    }

    fn apply(&mut self, tx: &Connection, command: Command) -> rusqlite::Result<Answer> {
        Ok(match command {
            Command::Put {
                queue,
                bodies,
                done,
            } => {
                let now = crate::run::now_ms();
                let mut insert = tx.prepare_cached(
                    "INSERT INTO messages (queue, body, enqueued_at_ms) VALUES (?1, ?2, ?3)",
                )?;
                for body in &bodies {
                    insert.execute(params![queue, body.to_string(), now])?;
                }
                let depth = self.depths.entry(queue).or_default();
                depth.ready += bodies.len() as u64;
                Answer::Depth(done, *depth)
            }
            Command::Take { queue, limit, done } => {
                let mut statement = tx.prepare_cached(
                    "UPDATE messages SET state = ?1, attempts = attempts + 1 WHERE id IN \
                     (SELECT id FROM messages WHERE queue = ?2 AND state = ?3 ORDER BY id LIMIT ?4) \
                     RETURNING id, body",
                )?;
                let mut taken: Vec<Message> = statement
                    .query_map(params![TAKEN, queue, READY, sql_limit(limit)], |row| {
                        let body: String = row.get(1)?;
                        Ok(Message {
                            id: row.get(0)?,
                            body: serde_json::from_str(&body).unwrap_or(Value::String(body)),
                        })
                    })?
                    .collect::<rusqlite::Result<_>>()?;
                // RETURNING gives no order.
                taken.sort_by_key(|m| m.id);
                let depth = self.depths.entry(queue).or_default();
                depth.ready -= (taken.len() as u64).min(depth.ready);
                depth.taken += taken.len() as u64;
                Answer::Taken(done, taken)
            }
            Command::Settle {
                queue,
                ids,
                outcome,
            } => {
                let depth = self.depths.entry(queue).or_default();
                let n = ids.len() as u64;
                depth.taken -= n.min(depth.taken);
                match outcome {
                    Outcome::Succeeded => {
                        let mut delete = tx.prepare_cached("DELETE FROM messages WHERE id = ?1")?;
                        for id in ids {
                            delete.execute([id])?;
                        }
                    }
                    Outcome::Stopped => {
                        let mut back = tx.prepare_cached(
                            "UPDATE messages SET state = ?1, attempts = attempts - 1 WHERE id = ?2",
                        )?;
                        for id in ids {
                            back.execute(params![READY, id])?;
                        }
                        depth.ready += n;
                    }
                    Outcome::Failed(error) => {
                        let mut back = tx.prepare_cached(
                            "UPDATE messages SET state = CASE WHEN attempts >= ?1 THEN ?2 ELSE ?3 END, \
                             error = ?4 WHERE id = ?5 RETURNING state",
                        )?;
                        for id in ids {
                            let state: i64 = back.query_row(
                                params![MAX_ATTEMPTS, DEAD, READY, error, id],
                                |row| row.get(0),
                            )?;
                            if state == DEAD {
                                depth.dead += 1;
                            } else {
                                depth.ready += 1;
                            }
                        }
                    }
                }
                Answer::None
            }
            Command::Redrive { queue, done } => {
                let moved = tx.execute(
                    "UPDATE messages SET state = ?1, attempts = 0, error = NULL \
                     WHERE queue = ?2 AND state = ?3",
                    params![READY, queue, DEAD],
                )? as u64;
                let depth = self.depths.entry(queue).or_default();
                depth.dead -= moved.min(depth.dead);
                depth.ready += moved;
                Answer::Count(done, moved)
            }
            Command::Dead { queue, limit, done } => {
                let mut statement = tx.prepare_cached(
                    "SELECT id, body, attempts, error FROM messages WHERE queue = ?1 AND state = ?2 \
                     ORDER BY id LIMIT ?3",
                )?;
                let dead = statement
                    .query_map(params![queue, DEAD, sql_limit(limit)], |row| {
                        let body: String = row.get(1)?;
                        Ok(DeadLetter {
                            id: row.get(0)?,
                            body: serde_json::from_str(&body).unwrap_or(Value::String(body)),
                            attempts: row.get(2)?,
                            error: row.get(3)?,
                        })
                    })?
                    .collect::<rusqlite::Result<_>>()?;
                Answer::Dead(done, dead)
            }
            Command::Depths(done) => Answer::Depths(done, self.depths.clone()),
        })
    }
}

fn sql_limit(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

/// A command's answer, sent once its transaction is committed.
enum Answer {
    None,
    Depth(oneshot::Sender<Result<Depth, String>>, Depth),
    Taken(oneshot::Sender<Result<Vec<Message>, String>>, Vec<Message>),
    Count(oneshot::Sender<Result<u64, String>>, u64),
    Dead(
        oneshot::Sender<Result<Vec<DeadLetter>, String>>,
        Vec<DeadLetter>,
    ),
    Depths(
        oneshot::Sender<HashMap<String, Depth>>,
        HashMap<String, Depth>,
    ),
}

impl Answer {
    fn send(self) {
        match self {
            Self::None => {}
            Self::Depth(done, depth) => drop(done.send(Ok(depth))),
            Self::Taken(done, taken) => drop(done.send(Ok(taken))),
            Self::Count(done, n) => drop(done.send(Ok(n))),
            Self::Dead(done, dead) => drop(done.send(Ok(dead))),
            Self::Depths(done, depths) => drop(done.send(depths)),
        }
    }

    fn fail(self, message: &str) {
        let error = message.to_owned();
        match self {
            Self::None | Self::Depths(..) => {}
            Self::Depth(done, _) => drop(done.send(Err(error))),
            Self::Taken(done, _) => drop(done.send(Err(error))),
            Self::Count(done, _) => drop(done.send(Err(error))),
            Self::Dead(done, _) => drop(done.send(Err(error))),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a runtime")
    }

    #[test]
    fn messages_go_out_oldest_first_and_are_gone_once_their_batch_succeeded() {
        let dir = tempfile::tempdir().expect("a folder");
        let store = Store::open(&dir.path().join("q.sqlite")).expect("opens");
        runtime().block_on(async {
            let depth = store
                .put("jobs", vec![json!(1), json!("two"), json!({"n": 3})])
                .await;
            assert_eq!(
                depth,
                Ok(Depth {
                    ready: 3,
                    taken: 0,
                    dead: 0
                })
            );
            let first = store.take("jobs", 2).await.expect("takes");
            assert_eq!(
                first.iter().map(|m| m.body.clone()).collect::<Vec<_>>(),
                [json!(1), json!("two")]
            );
            assert!(store.take("other", 5).await.expect("takes").is_empty());
            store.settle(
                "jobs",
                first.iter().map(|m| m.id).collect(),
                Outcome::Succeeded,
            );
            let rest = store.take("jobs", 10).await.expect("takes");
            assert_eq!(
                rest.iter().map(|m| m.body.clone()).collect::<Vec<_>>(),
                [json!({"n": 3})]
            );
            assert_eq!(
                store.depths().await.get("jobs"),
                Some(&Depth {
                    ready: 0,
                    taken: 1,
                    dead: 0
                })
            );
        });
    }

    #[test]
    fn a_failing_message_goes_round_until_it_is_dead_and_a_redrive_brings_it_back() {
        let dir = tempfile::tempdir().expect("a folder");
        let store = Store::open(&dir.path().join("q.sqlite")).expect("opens");
        runtime().block_on(async {
            store.put("jobs", vec![json!("bad")]).await.expect("puts");
            for attempt in 1..=MAX_ATTEMPTS {
                let taken = store.take("jobs", 1).await.expect("takes");
                assert_eq!(taken.len(), 1, "attempt {attempt}");
                store.settle(
                    "jobs",
                    vec![taken[0].id],
                    Outcome::Failed("ValueError: bad".into()),
                );
            }
            assert!(store.take("jobs", 1).await.expect("takes").is_empty());
            let dead = store.dead("jobs", 10).await.expect("reads");
            assert_eq!(
                (dead.len(), dead[0].attempts, dead[0].error.as_deref()),
                (1, MAX_ATTEMPTS, Some("ValueError: bad"))
            );
            // A stopped batch does not count as an attempt.
            assert_eq!(store.redrive("jobs").await, Ok(1));
            let taken = store.take("jobs", 1).await.expect("takes");
            store.settle("jobs", vec![taken[0].id], Outcome::Stopped);
            assert_eq!(
                store.depths().await.get("jobs"),
                Some(&Depth {
                    ready: 1,
                    taken: 0,
                    dead: 0
                })
            );
        });
    }

    #[test]
    fn messages_taken_when_the_serve_died_are_ready_again_on_the_next_open() {
        let dir = tempfile::tempdir().expect("a folder");
        let path = dir.path().join("q.sqlite");
        {
            let store = Store::open(&path).expect("opens");
            runtime().block_on(async {
                store
                    .put("jobs", vec![json!(1), json!(2)])
                    .await
                    .expect("puts");
                assert_eq!(store.take("jobs", 1).await.expect("takes").len(), 1);
            });
        }
        let store = Store::open(&path).expect("opens again");
        runtime().block_on(async {
            assert_eq!(
                store.depths().await.get("jobs"),
                Some(&Depth {
                    ready: 2,
                    taken: 0,
                    dead: 0
                })
            );
            let all = store.take("jobs", 10).await.expect("takes");
            assert_eq!(
                all.iter().map(|m| m.body.clone()).collect::<Vec<_>>(),
                [json!(1), json!(2)]
            );
        });
    }
}
