//! Run history that lasts: every run and invocation of a project, in an SQLite database beside it.
//!
//! CONTRACT (written first so that the store and the Block Executions panel can be built at the same
//! time): the types and signatures below are what the panel codes against. The store's owner fills in
//! the bodies and may add items; changing these signatures needs both sides.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::record::{
    BlockCounts, InvocationId, InvocationRecord, InvocationStatus, RunId, RunStatus, RunSummary,
};
use crate::model::BlockId;

#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    #[error("history database {path}: {message}")]
    Database { path: PathBuf, message: String },
}

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
}

/// One invocation, as a table row: small enough to hold a million of them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InvocationRow {
    pub id: InvocationId,
    pub block_id: BlockId,
    pub block_name: String,
    pub item_path: Vec<u32>,
    pub attempt: u32,
    pub status: InvocationStatus,
    pub started_at_ms: Option<f64>,
    pub ended_at_ms: Option<f64>,
    /// The input as JSON text, cut to at most 120 characters.
    pub input_preview: String,
    /// `ValueError: bad row`, when it failed.
    pub error_summary: Option<String>,
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

/// A project's history database. Reads are cheap and synchronous; writes happen on the runtime's
/// writer thread in batches (see [`HistoryWriter`]).
#[derive(Debug)]
pub struct History {
    path: PathBuf,
}

impl History {
    /// Where a project's history lives: `<dir>/.braid/<file name>.history.sqlite` (the folder is meant to be
    /// left out of version control).
    pub fn path_for_project(project_file: &Path) -> PathBuf {
        let dir = project_file.parent().unwrap_or_else(|| Path::new("."));
        let name = project_file
            .file_name()
            .map_or_else(|| "project".into(), |n| n.to_string_lossy().into_owned());
        dir.join(".braid").join(format!("{name}.history.sqlite"))
    }

    /// Opens (creating if needed) the database at `path`.
    pub fn open(path: &Path) -> Result<Self, HistoryError> {
        let _ = path;
        todo!("history store")
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Every run, newest first.
    pub fn runs(&self) -> Result<Vec<RunRow>, HistoryError> {
        todo!("history store")
    }

    pub fn invocation_rows(
        &self,
        run: &RunId,
        filter: &InvocationFilter,
    ) -> Result<Vec<InvocationRow>, HistoryError> {
        let _ = (run, filter);
        todo!("history store")
    }

    /// The whole record of one invocation.
    pub fn invocation(
        &self,
        run: &RunId,
        id: InvocationId,
    ) -> Result<Option<InvocationRecord>, HistoryError> {
        let _ = (run, id);
        todo!("history store")
    }

    /// The invocations that came from this one (through any transition).
    pub fn children(
        &self,
        run: &RunId,
        id: InvocationId,
    ) -> Result<Vec<InvocationId>, HistoryError> {
        let _ = (run, id);
        todo!("history store")
    }

    pub fn delete_run(&self, run: &RunId) -> Result<(), HistoryError> {
        let _ = run;
        todo!("history store")
    }

    /// Keeps the newest `keep` runs and deletes the rest.
    pub fn apply_retention(&self, keep: usize) -> Result<(), HistoryError> {
        let _ = keep;
        todo!("history store")
    }
}

/// Records runs into a history database from the runtime's side, batching writes on its own thread.
#[derive(Debug)]
pub struct HistoryWriter {
    path: PathBuf,
}

impl HistoryWriter {
    pub fn start(path: &Path) -> Result<Self, HistoryError> {
        let _ = path;
        todo!("history store")
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn run_started(&self, run: &RunId, project_name: &str, started_at_ms: f64) {
        let _ = (run, project_name, started_at_ms);
        todo!("history store")
    }

    pub fn invocations(&self, records: &[InvocationRecord]) {
        let _ = records;
        todo!("history store")
    }

    pub fn run_finished(&self, summary: &RunSummary) {
        let _ = summary;
        todo!("history store")
    }
}
