//! The small rows the Block Executions panel and `braid history` list: a million of them fit in memory.

use serde::{Deserialize, Serialize};

use super::{BlockCounts, InvocationId, InvocationStatus, ItemName, ItemPath, RunId, RunStatus};
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
    /// The run this one redrove (it ran that run's failed items again).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redrive_of: Option<RunId>,
}

/// One invocation, as a table row: small enough to hold a million of them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InvocationRow {
    pub id: InvocationId,
    pub block_id: BlockId,
    pub block_name: std::sync::Arc<str>,
    pub item_path: ItemPath,
    /// Its innermost item's key and label, when a fan-out names its items.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub item: Option<ItemName>,
    pub attempt: u32,
    pub status: InvocationStatus,
    /// In a redrive: it did not run, its result was carried over from the run redriven.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub carried: bool,
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
    /// Its innermost item's key, when a fan-out names its items by key; else its last index.
    pub fn item_key(&self) -> Option<std::borrow::Cow<'_, str>> {
        match &self.item {
            Some(name) => Some(name.key()),
            None => self
                .item_path
                .last()
                .map(|i| std::borrow::Cow::Owned(i.to_string())),
        }
    }

    /// Its innermost item's label, when it has one.
    pub fn item_label(&self) -> Option<&str> {
        self.item.as_ref()?.label()
    }

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
            item: None,
            attempt: 1,
            status: InvocationStatus::Succeeded,
            carried: false,
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
    /// Rows whose innermost item has this key.
    pub item_key: Option<String>,
    /// Failed rows whose error has this shape (see [`super::failure_shape`]).
    pub failure_shape: Option<String>,
    pub order: RowOrder,
}
