//! One invocation as it is recorded: what went in, what came out, what it printed, how it ended.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{
    FannedOut, InvocationId, InvocationStatus, ItemName, ItemNamePath, ItemPath, ParentIds, RunId,
};
use crate::model::{BlockId, TransitionId};

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

/// One call of one block on one input, as the Block Executions panel shows it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InvocationRecord {
    pub run_id: RunId,
    pub id: InvocationId,
    pub block_id: BlockId,
    pub block_name: std::sync::Arc<str>,
    pub item_path: ItemPath,
    /// The keys and labels of its items, outermost first, when a fan-out around it names them (see
    /// [`ItemNamePath`]); empty when its indices are its keys.
    #[serde(default, skip_serializing_if = "smallvec::SmallVec::is_empty")]
    pub item_names: ItemNamePath,
    /// 1 normally; more for a retry (the block's retries), or when the invocation was run again because
    /// its worker died under another invocation.
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
    /// The Dask worker that ran it (its address), for a run on a cluster; `None` on this machine.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker: Option<Arc<str>>,
    /// The names its fan-outs gave the items of its return value (fan-outs with a key or label
    /// expression only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fanned_out: Vec<FannedOut>,
    /// In a redrive: it did not run; its result is that of this invocation of the run redriven.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub carried_from: Option<InvocationId>,
}

impl InvocationRecord {
    pub fn duration_ms(&self) -> Option<f64> {
        Some(self.ended_at_ms? - self.started_at_ms?)
    }

    /// Its item's keys, outermost first (its indices as text where no fan-out names its items).
    pub fn item_key_path(&self) -> Vec<std::borrow::Cow<'_, str>> {
        super::key_path(&self.item_path, &self.item_names)
    }

    /// Its innermost item's name, when a fan-out names its items.
    pub fn item_name(&self) -> Option<&ItemName> {
        self.item_names.last()
    }

    /// Its innermost item's label, when it has one.
    pub fn item_label(&self) -> Option<&str> {
        self.item_name()?.label()
    }

    /// Invocation `id` of `block` at the top level, on input `null`, that returned its id after
    /// `parents`: for tests of what is built from records.
    #[cfg(test)]
    pub(crate) fn succeeded(
        run_id: &RunId,
        id: InvocationId,
        block: &BlockId,
        parents: &[InvocationId],
    ) -> Self {
        Self {
            run_id: run_id.clone(),
            id,
            block_id: block.clone(),
            block_name: block.0.clone(),
            item_path: ItemPath::new(),
            item_names: ItemNamePath::new(),
            attempt: 1,
            parents: parents.iter().copied().collect(),
            status: InvocationStatus::Succeeded,
            queued_at_ms: 0.0,
            started_at_ms: Some(1.0),
            ended_at_ms: Some(2.0),
            input: Value::Null,
            backpack_in: Arc::new(Value::Object(serde_json::Map::new())),
            output: Some(Value::from(id)),
            backpack_out: None,
            stdout: String::new(),
            stderr: String::new(),
            error: None,
            fired: Vec::new(),
            worker: None,
            fanned_out: Vec::new(),
            carried_from: None,
        }
    }
}
