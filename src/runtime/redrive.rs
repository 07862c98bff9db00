//! Redrive: a finished run's failed items run again with the blocks' current code, while what
//! succeeded keeps its recorded result.
//!
//! A redrive re-walks the graph from the earlier run's entry invocations. An invocation whose block and
//! item keys match an invocation that succeeded in the earlier run does not run when its inputs all
//! came from such carried-over invocations, or when it is given the very input and backpack the earlier
//! one was: it takes the recorded return value and backpack and fires the transitions that fired then
//! (recorded as carried over, naming the invocation it came from). Everything else runs: the failed
//! items, and what follows them, so a fan-in completes with the carried results and the new ones, in
//! item order. Items are matched by key, never by position: behind a fan-in that runs again, a fan-out
//! that now has more items (those that failed before) finds its earlier items by their keys wherever
//! they now are. The redriven run is a run of its own that names the run it continues.

use std::sync::Arc;

use serde_json::Value;

use super::history::{History, HistoryError};
use crate::model::{BlockId, TransitionId};
use crate::run::{
    ErrorInfo, FannedOut, InvocationId, InvocationRecord, InvocationStatus, RunId, RunStatus,
    failure_shape,
};

/// What a redrive starts from: the earlier run's entries and what its invocations came to.
#[derive(Clone, Debug)]
pub struct Redrive {
    /// The run redriven.
    pub of: RunId,
    /// Its entry invocations (those with no parent), in id order: where the redrive starts.
    pub entries: Vec<RedriveEntry>,
    /// Its invocations whose ends the redrive keeps.
    pub carried: Vec<CarriedRecord>,
}

#[derive(Clone, Debug)]
pub struct RedriveEntry {
    pub block: BlockId,
    pub input: Value,
    pub backpack: Value,
}

/// An invocation of the earlier run, as a redrive carries it over.
#[derive(Clone, Debug)]
pub struct CarriedRecord {
    pub id: InvocationId,
    pub block: BlockId,
    /// Its item's keys, outermost first.
    pub key_path: Vec<String>,
    pub end: CarriedEnd,
}

#[derive(Clone, Debug)]
pub enum CarriedEnd {
    Succeeded {
        /// What it was given: an invocation that follows one that ran again takes this end only
        /// when it is given the same.
        input: Value,
        backpack_in: Arc<Value>,
        output: Value,
        backpack: Arc<Value>,
        fired: Vec<TransitionId>,
        fanned_out: Vec<FannedOut>,
    },
    /// A failure the redrive leaves as it was: a redrive of one failure group leaves the others failed.
    Failed {
        status: InvocationStatus,
        error: ErrorInfo,
    },
}

/// Why a run can't be redriven.
#[derive(Debug, thiserror::Error)]
pub enum RedriveError {
    #[error(transparent)]
    History(#[from] HistoryError),
    #[error("there is no run {0} in the history")]
    NoSuchRun(RunId),
    #[error("run {run} is {status}: only a finished run can be redriven")]
    NotFinished { run: RunId, status: &'static str },
    #[error("run {0} has no failed items to run again")]
    NothingFailed(RunId),
}

impl Redrive {
    /// Reads what a redrive of `run` needs from its history. With `group` (a failure shape, see
    /// [`failure_shape`]), only the failures of that shape run again; the others stay as they were.
    pub fn load(history: &History, run: &RunId, group: Option<&str>) -> Result<Self, RedriveError> {
        let row = history
            .run(run)?
            .ok_or_else(|| RedriveError::NoSuchRun(run.clone()))?;
        if row.status == RunStatus::Running {
            return Err(RedriveError::NotFinished {
                run: run.clone(),
                status: row.status.label(),
            });
        }
        let mut redrive = Self {
            of: run.clone(),
            entries: Vec::new(),
            carried: Vec::new(),
        };
        let mut rerun = 0_usize;
        history.each_record(run, |record| {
            if record.parents.is_empty() {
                redrive.entries.push(RedriveEntry {
                    block: record.block_id.clone(),
                    input: record.input.clone(),
                    backpack: (*record.backpack_in).clone(),
                });
            }
            let failed = record.status.is_failure();
            let in_group = group.is_none_or(|shape| {
                let summary = record
                    .error
                    .as_ref()
                    .map_or_else(|| record.status.label().to_owned(), ErrorInfo::summary);
                failure_shape(&summary) == shape
            });
            if failed && in_group {
                rerun += 1;
            }
            if let Some(carried) = CarriedRecord::of(record, failed && !in_group) {
                redrive.carried.push(carried);
            }
        })?;
        // A failed run may have no failed invocation (a fan-in that missed filtered items), and a
        // cancelled or interrupted one goes on where it stopped; a succeeded run has nothing to redo.
        if rerun == 0 && (group.is_some() || row.status == RunStatus::Succeeded) {
            return Err(RedriveError::NothingFailed(run.clone()));
        }
        Ok(redrive)
    }
}

impl CarriedRecord {
    /// What a redrive keeps of `record`: a success, or (with `keep_failure`) a failure; `None` for
    /// anything else, which runs again.
    fn of(record: InvocationRecord, keep_failure: bool) -> Option<Self> {
        let key_path = record
            .item_key_path()
            .into_iter()
            .map(std::borrow::Cow::into_owned)
            .collect();
        let end = match record.status {
            InvocationStatus::Succeeded => CarriedEnd::Succeeded {
                input: record.input,
                backpack_in: Arc::clone(&record.backpack_in),
                output: record.output.unwrap_or(Value::Null),
                backpack: record
                    .backpack_out
                    .unwrap_or_else(|| Arc::clone(&record.backpack_in)),
                fired: record.fired,
                fanned_out: record.fanned_out,
            },
            status if keep_failure && status.is_failure() => CarriedEnd::Failed {
                status,
                error: record.error?,
            },
            _ => return None,
        };
        Some(Self {
            id: record.id,
            block: record.block_id,
            key_path,
            end,
        })
    }
}
