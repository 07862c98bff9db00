//! The state of the current run, as the views show it: live counts per block while it runs, then its
//! summary. Built from the runtime's events; the views never see the runtime itself.

use std::collections::BTreeMap;

use crate::model::BlockId;
use crate::run::{BlockCounts, CompileError, InvocationStatus, RunId, RunSummary};

/// Where the current (or last) run stands.
#[derive(Clone, Debug, PartialEq)]
pub enum RunPhase {
    /// Sent to the runtime; its code is being compiled.
    Starting,
    Running,
    /// The user pressed Stop; waiting for the runtime to confirm.
    Stopping,
    Finished(Box<RunSummary>),
    /// The run never started (code that doesn't compile, bad input, no runtime).
    Refused {
        message: String,
        compile_errors: Vec<CompileError>,
    },
}

#[derive(Clone, Debug)]
pub struct RunState {
    pub run_id: RunId,
    pub phase: RunPhase,
    /// Live counts per block (the runtime sends them in project order).
    pub counts: BTreeMap<BlockId, BlockCounts>,
    /// Finished invocations received so far. The records themselves go to the Block Executions panel's
    /// state (`executions.rs`); this state only counts them.
    pub records_received: u64,
    /// When the run was sent, in egui time (seconds), for the elapsed-time display.
    pub sent_at_secs: f64,
    /// The latest line of preparation output (pip installing the project's libraries).
    pub preparing: Option<String>,
    /// What the run printed outside its invocations, in order: pip's output, worker output.
    pub log: Vec<LogLine>,
}

/// A line of the run's log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogLine {
    pub source: LogSource,
    pub text: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogSource {
    /// pip, installing the project's libraries before the run.
    Install,
    /// A worker (counted from 1), writing outside any one invocation's printed output.
    Worker(usize),
}

/// The most log lines a run keeps (the runtime already caps worker output; pip's can be long).
pub const LOG_LINES: usize = 10_000;

impl RunState {
    pub fn new(run_id: RunId, now_secs: f64) -> Self {
        Self {
            run_id,
            phase: RunPhase::Starting,
            counts: BTreeMap::new(),
            records_received: 0,
            sent_at_secs: now_secs,
            preparing: None,
            log: Vec::new(),
        }
    }

    pub fn add_log(&mut self, source: LogSource, lines: impl IntoIterator<Item = String>) {
        let room = LOG_LINES.saturating_sub(self.log.len());
        self.log.extend(
            lines
                .into_iter()
                .take(room)
                .map(|text| LogLine { source, text }),
        );
    }

    pub fn is_active(&self) -> bool {
        matches!(
            self.phase,
            RunPhase::Starting | RunPhase::Running | RunPhase::Stopping
        )
    }

    /// All blocks' counts added up.
    pub fn totals(&self) -> BlockCounts {
        self.counts
            .values()
            .fold(BlockCounts::default(), |mut sum, c| {
                sum.queued += c.queued;
                sum.running += c.running;
                sum.succeeded += c.succeeded;
                sum.caught += c.caught;
                sum.failed += c.failed;
                sum.timed_out += c.timed_out;
                sum.cancelled += c.cancelled;
                sum
            })
    }
}

/// The worst status among a block's counts, for its colour on the canvas.
pub fn worst_status(counts: &BlockCounts) -> Option<InvocationStatus> {
    [
        (counts.failed, InvocationStatus::Exception),
        (counts.timed_out, InvocationStatus::TimedOut),
        (counts.caught, InvocationStatus::CaughtException),
        (counts.cancelled, InvocationStatus::Cancelled),
        (counts.running, InvocationStatus::Running),
        (counts.queued, InvocationStatus::Queued),
        (counts.succeeded, InvocationStatus::Succeeded),
    ]
    .into_iter()
    .filter(|(n, _)| *n > 0)
    .map(|(_, status)| status)
    .max_by_key(|status| status.severity())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worst_status_prefers_failures() {
        let mut counts = BlockCounts {
            succeeded: 10,
            ..BlockCounts::default()
        };
        assert_eq!(worst_status(&counts), Some(InvocationStatus::Succeeded));
        counts.running = 1;
        assert_eq!(worst_status(&counts), Some(InvocationStatus::Running));
        counts.failed = 1;
        assert_eq!(worst_status(&counts), Some(InvocationStatus::Exception));
        assert_eq!(worst_status(&BlockCounts::default()), None);
    }
}
