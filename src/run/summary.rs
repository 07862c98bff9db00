//! The end of a run: its status, results and failures; and the compile errors that refuse one.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{InvocationId, RunId, RunStatus};
use crate::model::BlockId;

/// A fan-in or merge that could not complete, or any other failure that is not one invocation's.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunFailure {
    pub block: String,
    pub block_id: BlockId,
    pub item_path: Vec<u32>,
    /// The failed item's key and label, when its fan-out names its items.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub item_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub item_label: Option<String>,
    /// `exception`, `timed_out`, `fan_in`, `merge`, `not_runnable` or `too_many_queued`.
    pub status: String,
    pub error: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub traceback: Option<String>,
    /// The failed invocation, when there was one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub invocation: Option<InvocationId>,
}

impl RunFailure {
    /// Where it failed, as the views write it: the block, the item path and the item's label.
    pub fn place(&self, block: &str) -> String {
        let mut place = format!("{block} {}", crate::text::item_path(&self.item_path));
        if let Some(label) = &self.item_label {
            place.push_str(" · ");
            place.push_str(label);
        }
        place
    }

    /// The failure's status in the words every view uses (`failed`, `timed out`; `fan in`, `merge`
    /// and `not runnable` for failures that are not one invocation's).
    pub fn status_label(&self) -> String {
        super::InvocationStatus::from_name(&self.status).map_or_else(
            || self.status.replace('_', " "),
            |status| status.label().to_owned(),
        )
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

/// The end of a run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunSummary {
    pub run_id: RunId,
    pub status: RunStatus,
    pub results: Vec<RunResult>,
    pub invocations: u64,
    pub failures: Vec<RunFailure>,
    /// Failures a fan-in tolerated (within its budget): the run did not fail for them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerated: Vec<RunFailure>,
    /// The run this one redrove.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redrive_of: Option<RunId>,
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
        // Quoted as validation quotes names: a refused run lists these a line each.
        let block = crate::model::validate::quoted(&self.block);
        match self.line {
            Some(line) => write!(f, "{block} line {line}: {}", self.message),
            None => write!(f, "{block}: {}", self.message),
        }
    }
}
