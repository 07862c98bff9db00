//! The small rows the Block Executions panel and `braid history` list: a million of them fit in memory.

use serde::{Deserialize, Serialize};

use super::{BlockCounts, InvocationId, InvocationStatus, ItemPath, RunId, RunStatus};
use crate::model::BlockId;

/// One run, as the runs list shows it (newest first).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunRow {
    pub run_id: RunId,
    pub status: RunStatus,
    pub started_at_ms: f64,
    pub duration_ms: Option<f64>,
    pub invocations: u64,
    /// Totals over all blocks.
    pub counts: BlockCounts,
    /// Where it ran.
    #[serde(default)]
    pub executor: super::Executor,
}

/// One invocation, as a table row: small enough to hold a million of them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InvocationRow {
    pub id: InvocationId,
    pub block_id: BlockId,
    pub block_name: std::sync::Arc<str>,
    pub item_path: ItemPath,
    pub attempt: u32,
    pub status: InvocationStatus,
    pub started_at_ms: Option<f64>,
    pub ended_at_ms: Option<f64>,
    /// The input as JSON text, cut to at most 120 characters.
    pub input_preview: String,
    /// `ValueError: bad row`, when it failed.
    pub error_summary: Option<String>,
    /// The Dask worker that ran it (its address); `None` on this machine.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker: Option<std::sync::Arc<str>>,
}

impl InvocationRow {
    /// How long it ran, once it has ended.
    pub fn duration_ms(&self) -> Option<f64> {
        Some(self.ended_at_ms? - self.started_at_ms?)
    }

    /// A row of block "B" at the top level that succeeded, for tests of what is built from rows.
    #[cfg(test)]
    pub(crate) fn succeeded(id: InvocationId, started_at_ms: f64, ended_at_ms: f64) -> Self {
        Self {
            id,
            block_id: BlockId("b".into()),
            block_name: "B".into(),
            item_path: ItemPath::new(),
            attempt: 1,
            status: InvocationStatus::Succeeded,
            started_at_ms: Some(started_at_ms),
            ended_at_ms: Some(ended_at_ms),
            input_preview: "null".into(),
            error_summary: None,
            worker: None,
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum RowOrder {
    /// Invocation id (creation order).
    #[default]
    Id,
    /// Start time.
    Started,
    DurationDescending,
    DurationAscending,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InvocationFilter {
    pub block: Option<BlockId>,
    /// Empty: every status.
    pub statuses: Vec<InvocationStatus>,
    /// Text that must appear in the input, output or error.
    pub text: Option<String>,
    /// Rows whose item path starts with this.
    pub item_path_prefix: Option<Vec<u32>>,
    pub order: RowOrder,
}
