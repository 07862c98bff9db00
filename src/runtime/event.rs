//! What the runtime reports: the events that carry a run's records, counts and end out of the runtime.

use crate::model::BlockId;
use crate::run::{
    BlockCounts, CompileError, Executor, FanInCounts, InvocationRecord, RunId, RunSummary,
};

/// What the runtime reports. Every event names its run, so a consumer drops events of runs it forgot.
#[derive(Clone, Debug)]
pub enum RuntimeEvent {
    /// The code compiled and the first invocations are queued.
    RunStarted {
        run_id: RunId,
        started_at_ms: f64,
        /// Where it runs.
        executor: Executor,
        /// The run it redrives, for a redrive.
        redrive_of: Option<RunId>,
    },
    /// The run never started: code that does not compile, a block that can't run, bad arguments.
    RunRefused {
        run_id: RunId,
        message: String,
        compile_errors: Vec<CompileError>,
    },
    /// Finished invocations (batched: one event per scheduling step, not per invocation).
    Invocations {
        run_id: RunId,
        records: Vec<InvocationRecord>,
    },
    /// Live counts per block, in project block order (a fan-out target's are its ledger), and each
    /// fan-in target's ledger (expected, arrived, missing).
    Progress {
        run_id: RunId,
        counts: Vec<(BlockId, BlockCounts)>,
        fan_ins: Vec<(BlockId, FanInCounts)>,
    },
    RunFinished(RunSummary),
    /// A line of output while the run prepares (pip installing the project's libraries).
    Log {
        run_id: RunId,
        line: String,
    },
    /// Lines a worker wrote outside any one invocation's printed output (C code writing to the
    /// process's descriptors, a thread printing after its invocation ended) while the run went on.
    /// `worker` counts from 1. A run gets at most [`WORKER_OUTPUT_LINES`] of them.
    WorkerOutput {
        run_id: RunId,
        worker: usize,
        lines: Vec<String>,
    },
    /// The answer to a check: the code's compile errors (empty when everything compiles).
    Checked {
        check_id: RunId,
        compile_errors: Vec<CompileError>,
    },
}

impl RuntimeEvent {
    pub fn run_id(&self) -> &RunId {
        match self {
            Self::RunStarted { run_id, .. }
            | Self::RunRefused { run_id, .. }
            | Self::Invocations { run_id, .. }
            | Self::Progress { run_id, .. }
            | Self::Log { run_id, .. }
            | Self::WorkerOutput { run_id, .. } => run_id,
            Self::RunFinished(summary) => &summary.run_id,
            Self::Checked { check_id, .. } => check_id,
        }
    }
}

/// How many lines of worker output one run shows; a note after them says where the rest are.
pub const WORKER_OUTPUT_LINES: usize = 1000;
