//! The names of runs and invocations, and where an invocation sits in its fan-outs.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

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

/// An invocation's item path, inline up to a fan-out in a fan-out: most records allocate nothing for it.
/// (Records are made on the engine's thread and dropped on another; every allocation in them would be
/// a free across threads, which costs more than the allocation.)
pub type ItemPath = smallvec::SmallVec<[u32; 2]>;

/// The invocations one came from: one, inline, but for a fan-in or merge.
pub type ParentIds = smallvec::SmallVec<[InvocationId; 1]>;
