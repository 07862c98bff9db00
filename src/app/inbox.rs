//! The runtime's events, taken off its channel as they come by a thread of their own (`braid-events`),
//! so that a run never waits for the editor to draw. eframe does not call the application while the
//! window is hidden or minimised, and the runtime's event channel is bounded (the engine waits for a
//! slow consumer rather than piling events up): events taken only in a frame would hold a long run
//! still for as long as the window is minimised. The application applies what waits here once per
//! frame, as much as fits its time budget.
//!
//! Nothing is dropped, and what waits stays compact however long nobody looks:
//! - a run's live counts are snapshots, so a newer `Progress` takes the place of one still waiting;
//! - a run's finished invocations wait as whole records up to [`WHOLE_RECORDS`]; past that they wait
//!   as the rows and parents Block Executions keeps of records past its own budget (the history has
//!   the records whole), so a million-item run waiting behind a minimised window costs what showing
//!   it does.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use super::executions::{RECORD_BUDGET, row_of};
use crate::run::{InvocationRow, ParentIds, RunId};
use crate::runtime::{RuntimeEvent, RuntimeEvents};

/// Whole records one run may have waiting; past them its finished invocations wait as rows.
const WHOLE_RECORDS: usize = RECORD_BUDGET;

/// What waits for the application: an event as the runtime sent it, or finished invocations as rows.
#[derive(Debug)]
pub enum Inbound {
    Event(RuntimeEvent),
    /// Finished invocations of a run past [`WHOLE_RECORDS`] waiting: their rows and parents.
    Rows {
        run_id: RunId,
        rows: Vec<(InvocationRow, ParentIds)>,
    },
}

/// The events waiting, in the order they came.
#[derive(Debug)]
struct Waiting {
    queue: VecDeque<Inbound>,
    /// The sequence number of the queue's first entry (entries are numbered as they come).
    first: u64,
    /// Per run, the number of its `Progress` waiting in the queue, to be brought up to date in place.
    progress: HashMap<RunId, u64>,
    /// Per run, how many whole records wait.
    whole: HashMap<RunId, usize>,
    whole_limit: usize,
}

impl Waiting {
    fn new(whole_limit: usize) -> Self {
        Self {
            queue: VecDeque::new(),
            first: 0,
            progress: HashMap::new(),
            whole: HashMap::new(),
            whole_limit,
        }
    }

    fn push(&mut self, event: RuntimeEvent) {
        match event {
            RuntimeEvent::Progress {
                run_id,
                counts,
                fan_ins,
            } => {
                let at = self
                    .progress
                    .get(&run_id)
                    .and_then(|seq| usize::try_from(seq - self.first).ok());
                if let Some(Inbound::Event(RuntimeEvent::Progress {
                    counts: waiting,
                    fan_ins: waiting_fan_ins,
                    ..
                })) = at.and_then(|at| self.queue.get_mut(at))
                {
                    *waiting = counts;
                    *waiting_fan_ins = fan_ins;
                    return;
                }
                let seq = self.first + self.queue.len() as u64;
                self.progress.insert(run_id.clone(), seq);
                self.queue.push_back(Inbound::Event(RuntimeEvent::Progress {
                    run_id,
                    counts,
                    fan_ins,
                }));
            }
            RuntimeEvent::Invocations {
                run_id,
                mut records,
            } => {
                let whole = self.whole.entry(run_id.clone()).or_default();
                let room = self.whole_limit.saturating_sub(*whole);
                let rows: Vec<(InvocationRow, ParentIds)> = if records.len() > room {
                    records
                        .drain(room..)
                        .map(|record| (row_of(&record), record.parents))
                        .collect()
                } else {
                    Vec::new()
                };
                *whole += records.len();
                if !records.is_empty() {
                    self.queue
                        .push_back(Inbound::Event(RuntimeEvent::Invocations {
                            run_id: run_id.clone(),
                            records,
                        }));
                }
                if !rows.is_empty() {
                    self.queue.push_back(Inbound::Rows { run_id, rows });
                }
            }
            other => self.queue.push_back(Inbound::Event(other)),
        }
    }

    fn pop(&mut self) -> Option<Inbound> {
        let entry = self.queue.pop_front()?;
        let seq = self.first;
        self.first += 1;
        match &entry {
            Inbound::Event(RuntimeEvent::Progress { run_id, .. }) => {
                if self.progress.get(run_id) == Some(&seq) {
                    self.progress.remove(run_id);
                }
            }
            Inbound::Event(RuntimeEvent::Invocations { run_id, records }) => {
                if let Some(whole) = self.whole.get_mut(run_id) {
                    *whole = whole.saturating_sub(records.len());
                    if *whole == 0 {
                        self.whole.remove(run_id);
                    }
                }
            }
            Inbound::Event(_) | Inbound::Rows { .. } => {}
        }
        Some(entry)
    }
}

/// The runtime's events waiting for the application, filled by the `braid-events` thread.
#[derive(Debug)]
pub struct Inbox {
    waiting: Arc<Mutex<Waiting>>,
}

impl Inbox {
    /// Starts taking the runtime's events. The thread ends when the runtime has stopped (its event
    /// channel closed).
    pub fn start(mut events: RuntimeEvents) -> std::io::Result<Self> {
        let waiting = Arc::new(Mutex::new(Waiting::new(WHOLE_RECORDS)));
        let filled = Arc::clone(&waiting);
        std::thread::Builder::new()
            .name("braid-events".to_owned())
            .spawn(move || {
                while let Some(event) = events.recv_blocking() {
                    lock(&filled).push(event);
                }
            })?;
        Ok(Self { waiting })
    }

    /// The next event waiting, if any.
    pub fn pop(&self) -> Option<Inbound> {
        lock(&self.waiting).pop()
    }

    pub fn is_empty(&self) -> bool {
        lock(&self.waiting).queue.is_empty()
    }
}

/// The waiting events, also after a thread panicked holding them (they are plain data, whole at every
/// step).
fn lock(waiting: &Mutex<Waiting>) -> MutexGuard<'_, Waiting> {
    waiting.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::BlockId;
    use crate::run::{BlockCounts, InvocationRecord, RunStatus, RunSummary};

    fn progress(run: &str, succeeded: u64) -> RuntimeEvent {
        RuntimeEvent::Progress {
            run_id: RunId(run.into()),
            counts: vec![(
                BlockId("b".into()),
                BlockCounts {
                    succeeded,
                    ..BlockCounts::default()
                },
            )],
            fan_ins: Vec::new(),
        }
    }

    fn records(run: &str, ids: std::ops::Range<u64>) -> RuntimeEvent {
        RuntimeEvent::Invocations {
            run_id: RunId(run.into()),
            records: ids
                .map(|id| {
                    InvocationRecord::succeeded(
                        &RunId(run.into()),
                        id,
                        &BlockId("b".into()),
                        &[id - 1],
                    )
                })
                .collect(),
        }
    }

    /// What waits, in order, as short labels.
    fn drain(waiting: &mut Waiting) -> Vec<String> {
        std::iter::from_fn(|| waiting.pop())
            .map(|entry| match entry {
                Inbound::Event(RuntimeEvent::Progress { run_id, counts, .. }) => {
                    format!("progress {run_id} {}", counts[0].1.succeeded)
                }
                Inbound::Event(RuntimeEvent::Invocations { run_id, records }) => {
                    let ids: Vec<u64> = records.iter().map(|r| r.id).collect();
                    format!("records {run_id} {ids:?}")
                }
                Inbound::Event(other) => format!("{} {}", kind(&other), other.run_id()),
                Inbound::Rows { run_id, rows } => {
                    let ids: Vec<(u64, Vec<u64>)> = rows
                        .iter()
                        .map(|(row, parents)| (row.id, parents.to_vec()))
                        .collect();
                    format!("rows {run_id} {ids:?}")
                }
            })
            .collect()
    }

    fn kind(event: &RuntimeEvent) -> &'static str {
        match event {
            RuntimeEvent::RunFinished(_) => "finished",
            RuntimeEvent::RunStarted { .. } => "started",
            _ => "other",
        }
    }

    fn finished(run: &str) -> RuntimeEvent {
        RuntimeEvent::RunFinished(RunSummary {
            run_id: RunId(run.into()),
            status: RunStatus::Succeeded,
            results: Vec::new(),
            invocations: 0,
            failures: Vec::new(),
            tolerated: Vec::new(),
            redrive_of: None,
            started_at_ms: 0.0,
            duration_ms: 0.0,
        })
    }

    #[test]
    fn a_newer_progress_takes_the_place_of_the_one_still_waiting() {
        let mut waiting = Waiting::new(100);
        waiting.push(progress("a", 1));
        waiting.push(records("a", 1..3));
        waiting.push(progress("b", 7));
        waiting.push(progress("a", 2));
        waiting.push(progress("a", 5));
        assert_eq!(
            drain(&mut waiting),
            ["progress a 5", "records a [1, 2]", "progress b 7"]
        );
        // Once taken, the next one waits in its own place again.
        waiting.push(records("a", 3..4));
        waiting.push(progress("a", 6));
        waiting.push(finished("a"));
        assert_eq!(
            drain(&mut waiting),
            ["records a [3]", "progress a 6", "finished a"]
        );
    }

    #[test]
    fn records_past_the_limit_wait_as_rows_with_their_parents_in_order() {
        let mut waiting = Waiting::new(3);
        waiting.push(records("a", 1..3));
        waiting.push(records("a", 3..6));
        waiting.push(records("r", 9..10));
        waiting.push(finished("a"));
        assert_eq!(
            drain(&mut waiting),
            [
                "records a [1, 2]",
                "records a [3]",
                "rows a [(4, [3]), (5, [4])]",
                "records r [9]",
                "finished a"
            ]
        );
        // Records taken make room again.
        waiting.push(records("a", 6..8));
        assert_eq!(drain(&mut waiting), ["records a [6, 7]"]);
    }
}
