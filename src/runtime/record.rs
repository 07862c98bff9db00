//! What a run produces: invocation records, run summaries and the events that carry them out of the runtime.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::model::{BlockId, TransitionId};

/// A run's identity. The requester chooses it, so that events of an old run can be told apart (and dropped).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RunId(pub Arc<str>);

impl RunId {
    pub fn new_random() -> Self {
        Self(crate::model::new_id().into())
    }
}

impl std::fmt::Display for RunId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// An invocation's number within its run, counting from 1 in creation order.
pub type InvocationId = u64;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InvocationStatus {
    Queued,
    Running,
    Succeeded,
    CaughtException,
    Exception,
    TimedOut,
    Cancelled,
}

impl InvocationStatus {
    pub fn label(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Succeeded => "succeeded",
            Self::CaughtException => "caught exception",
            Self::Exception => "exception",
            Self::TimedOut => "timed out",
            Self::Cancelled => "cancelled",
        }
    }

    /// A failure that ends its branch (and so fails the run).
    pub fn is_failure(self) -> bool {
        matches!(self, Self::Exception | Self::TimedOut)
    }

    /// How bad a status is, for colouring a block by its worst invocation.
    pub fn severity(self) -> u8 {
        match self {
            Self::Succeeded => 0,
            Self::Queued => 1,
            Self::Running => 2,
            Self::Cancelled => 3,
            Self::CaughtException => 4,
            Self::TimedOut => 5,
            Self::Exception => 6,
        }
    }
}

/// A Python error (or a crash of the code) as the user should see it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorInfo {
    /// The exception's type (`ValueError`), or `Timeout` / `WorkerCrash`.
    #[serde(rename = "type")]
    pub kind: String,
    pub message: String,
    /// The traceback, with the block's own file name and line numbers.
    pub traceback: String,
    /// The line in the block's code where it was raised, when known.
    pub line: Option<u32>,
}

impl ErrorInfo {
    /// `ValueError: bad row`.
    pub fn summary(&self) -> String {
        if self.message.is_empty() {
            self.kind.clone()
        } else {
            format!("{}: {}", self.kind, self.message)
        }
    }
}

/// An invocation's item path, inline up to a fan-out in a fan-out: most records allocate nothing for it.
/// (Records are made on the engine's thread and dropped on another; every allocation in them was a
/// free across threads, which costs more than the allocation.)
pub type ItemPath = smallvec::SmallVec<[u32; 2]>;

/// The invocations one came from: one, inline, but for a fan-in or merge.
pub type ParentIds = smallvec::SmallVec<[InvocationId; 1]>;

/// One call of one block on one input, as the Block Executions panel shows it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InvocationRecord {
    pub run_id: RunId,
    pub id: InvocationId,
    pub block_id: BlockId,
    pub block_name: std::sync::Arc<str>,
    pub item_path: ItemPath,
    /// 1 normally; more when the invocation was run again because its worker died under another invocation.
    pub attempt: u32,
    /// The invocations this one came from (several for a fan-in or merge).
    pub parents: ParentIds,
    pub status: InvocationStatus,
    /// Wall-clock times in milliseconds since the Unix epoch.
    pub queued_at_ms: f64,
    pub started_at_ms: Option<f64>,
    pub ended_at_ms: Option<f64>,
    pub input: Value,
    pub backpack_in: Arc<Value>,
    pub output: Option<Value>,
    pub backpack_out: Option<Arc<Value>>,
    pub stdout: String,
    pub stderr: String,
    pub error: Option<ErrorInfo>,
    /// Transitions that fired after this invocation, in project order.
    pub fired: Vec<TransitionId>,
}

impl InvocationRecord {
    pub fn duration_ms(&self) -> Option<f64> {
        Some(self.ended_at_ms? - self.started_at_ms?)
    }
}

/// A fan-in or merge that could not complete, or any other failure that is not one invocation's.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunFailure {
    pub block: String,
    pub block_id: BlockId,
    pub item_path: Vec<u32>,
    /// `exception`, `timed_out`, `fan_in`, `merge` or `not_runnable`.
    pub status: String,
    pub error: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub traceback: Option<String>,
    /// The failed invocation, when there was one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub invocation: Option<InvocationId>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Running,
    Succeeded,
    Failed,
    Cancelled,
    /// Read from the history: the process recording the run ended (killed, crashed, the machine
    /// stopped) before the run did. Its records up to then are kept.
    Interrupted,
}

impl RunStatus {
    pub fn label(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
            Self::Interrupted => "interrupted",
        }
    }
}

/// A leaf invocation's return value: what the run produced.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunResult {
    pub block: String,
    pub block_id: BlockId,
    pub item_path: Vec<u32>,
    pub output: Value,
}

/// Per-block live counts, for the canvas and progress bars.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockCounts {
    pub queued: u64,
    pub running: u64,
    pub succeeded: u64,
    pub caught: u64,
    pub failed: u64,
    pub timed_out: u64,
    pub cancelled: u64,
}

impl BlockCounts {
    pub fn finished(&self) -> u64 {
        self.succeeded + self.caught + self.failed + self.timed_out + self.cancelled
    }

    pub fn total(&self) -> u64 {
        self.queued + self.running + self.finished()
    }

    pub fn add_final(&mut self, status: InvocationStatus) {
        match status {
            InvocationStatus::Succeeded => self.succeeded += 1,
            InvocationStatus::CaughtException => self.caught += 1,
            InvocationStatus::Exception => self.failed += 1,
            InvocationStatus::TimedOut => self.timed_out += 1,
            InvocationStatus::Cancelled => self.cancelled += 1,
            InvocationStatus::Queued => self.queued += 1,
            InvocationStatus::Running => self.running += 1,
        }
    }
}

/// The end of a run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunSummary {
    pub run_id: RunId,
    pub status: RunStatus,
    pub results: Vec<RunResult>,
    pub invocations: u64,
    pub failures: Vec<RunFailure>,
    pub started_at_ms: f64,
    pub duration_ms: f64,
}

/// A block whose code does not compile: the run is refused before anything starts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompileError {
    pub block_id: BlockId,
    pub block: String,
    /// `code` or the id of the `if` transition whose expression failed.
    pub what: String,
    pub line: Option<u32>,
    pub message: String,
}

impl std::fmt::Display for CompileError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.line {
            Some(line) => write!(f, "\"{}\" line {line}: {}", self.block, self.message),
            None => write!(f, "\"{}\": {}", self.block, self.message),
        }
    }
}

/// What the runtime reports. Every event names its run, so a consumer drops events of runs it forgot.
#[derive(Clone, Debug)]
pub enum RuntimeEvent {
    /// The code compiled and the first invocations are queued.
    RunStarted {
        run_id: RunId,
        started_at_ms: f64,
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
    /// Live counts per block, in project block order.
    Progress {
        run_id: RunId,
        counts: Vec<(BlockId, BlockCounts)>,
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

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
}
