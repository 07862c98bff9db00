//! The Block Executions panel's state: the project's runs, the selected run's invocations (as small
//! rows), the table's filter, the selected invocation with its whole record and lineage, and replays.
//!
//! Runs of this session are held in memory as their records arrive (rows for every invocation; whole
//! records up to [`RECORD_BUDGET`]); older runs come from the project's history database, loaded as rows
//! when selected. Whole records are fetched one at a time, on selection.
//!
//! The table's filtering and ordering are in `table.rs`, the picked invocation in `picked.rs`, and
//! what the application does with the panel's commands (and replays) in `commands.rs`.

mod commands;
mod picked;
pub mod table;

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::mpsc;

use crate::model::BlockId;
use crate::run::{
    BlockCounts, ErrorInfo, Executor, FailureGroup, FailureGroups, InvocationFilter, InvocationId,
    InvocationRecord, InvocationRow, ParentIds, RunId, RunRow, RunStatus, RunSummary,
};
use crate::runtime::history::{DEFAULT_KEEP_RUNS, History, HistoryError};
use table::{TableFilter, filter_rows, merge_new_rows};

/// Whole records kept in memory over all session runs; past it, only rows are kept (and the history
/// database has the rest).
pub const RECORD_BUDGET: usize = 200_000;
/// Session runs kept in memory (their rows); older ones live in the history database only.
const SESSION_RUNS: usize = 8;
/// The most invocations the lineage (the highlighted path) follows forward from the selection: a
/// fan-out's parent leads to every item.
const LINEAGE_LIMIT: usize = 5_000;
/// The input preview of a row, in characters.
const PREVIEW_CHARS: usize = 120;

/// Where a run's invocations come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// Recorded in this session from the runtime's events.
    Session,
    /// Loaded from the history database.
    History,
}

/// One run's invocations as rows, with what the panel derives from them.
#[derive(Debug)]
pub struct RunData {
    pub row: RunRow,
    pub source: Source,
    /// In arrival order (for history runs: invocation id order).
    pub rows: Vec<InvocationRow>,
    index: HashMap<InvocationId, usize>,
    /// Per block, for the canvas.
    pub counts: BTreeMap<BlockId, BlockCounts>,
    /// Session runs only (history runs ask the database).
    parents: HashMap<InvocationId, Vec<InvocationId>>,
    children: HashMap<InvocationId, Vec<InvocationId>>,
    records: HashMap<InvocationId, InvocationRecord>,
    /// Bumped whenever rows are added, so derived views know to refresh.
    pub generation: u64,
}

impl RunData {
    fn new(row: RunRow, source: Source) -> Self {
        Self {
            row,
            source,
            rows: Vec::new(),
            index: HashMap::new(),
            counts: BTreeMap::new(),
            parents: HashMap::new(),
            children: HashMap::new(),
            records: HashMap::new(),
            generation: 0,
        }
    }

    /// A run built from rows alone (a history run, or synthetic data in tests and benchmarks).
    pub fn from_rows(row: RunRow, rows: Vec<InvocationRow>, source: Source) -> Self {
        let mut data = Self::new(row, source);
        for r in rows {
            data.push_row(r);
        }
        data
    }

    fn push_row(&mut self, row: InvocationRow) {
        self.counts
            .entry(row.block_id.clone())
            .or_default()
            .add_final(row.status);
        self.index.insert(row.id, self.rows.len());
        self.rows.push(row);
        self.generation += 1;
    }

    /// Adds a finished invocation; keeps its whole record while `keep_record`.
    fn push_record(&mut self, record: InvocationRecord, keep_record: bool) {
        if self.push_finished(row_of(&record), &record.parents) && keep_record {
            self.records.insert(record.id, record);
        }
    }

    /// Adds a finished invocation's row and links it to its parents. Returns whether it is new.
    fn push_finished(&mut self, row: InvocationRow, parents: &[InvocationId]) -> bool {
        if self.index.contains_key(&row.id) {
            return false;
        }
        for parent in parents {
            self.children.entry(*parent).or_default().push(row.id);
        }
        self.parents.insert(row.id, parents.to_vec());
        self.row.counts.add_final(row.status);
        self.row.invocations += 1;
        self.push_row(row);
        true
    }

    pub fn row_of(&self, id: InvocationId) -> Option<&InvocationRow> {
        self.rows.get(*self.index.get(&id)?)
    }

    pub fn position_of(&self, id: InvocationId) -> Option<usize> {
        self.index.get(&id).copied()
    }

    pub fn record(&self, id: InvocationId) -> Option<&InvocationRecord> {
        self.records.get(&id)
    }
}

/// The small row of a whole record.
pub fn row_of(record: &InvocationRecord) -> InvocationRow {
    InvocationRow {
        id: record.id,
        block_id: record.block_id.clone(),
        block_name: record.block_name.clone(),
        item_path: record.item_path.clone(),
        item: record.item_name().cloned(),
        attempt: record.attempt,
        status: record.status,
        carried: record.carried_from.is_some(),
        started_at_ms: record.started_at_ms,
        ended_at_ms: record.ended_at_ms,
        input_preview: crate::text::truncate(&record.input.to_string(), PREVIEW_CHARS),
        error_summary: record.error.as_ref().map(ErrorInfo::summary),
        worker: record.worker.clone(),
    }
}

/// How to move from the selected invocation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// The next / previous row of the table (within the block when a block is selected).
    NextRow,
    PreviousRow,
    /// The next / previous invocation of the whole run in start order.
    NextStarted,
    PreviousStarted,
    /// The first invocation this one came from / led to.
    Parent,
    Child,
}

/// A replay of one invocation with the block's current code.
#[derive(Clone, Debug, PartialEq)]
pub struct Replay {
    /// The replay's own run (not recorded in history).
    pub run_id: RunId,
    pub original: InvocationRecord,
    pub phase: ReplayPhase,
}

#[derive(Clone, Debug, PartialEq)]
pub enum ReplayPhase {
    Running,
    Done(Box<InvocationRecord>),
    /// The replay could not run (the block's code does not compile, the block is gone).
    Refused(String),
}

/// What the user picked: one invocation, its whole record and the path it sits on.
#[derive(Clone, Debug, PartialEq)]
pub struct Picked {
    pub run_id: RunId,
    pub id: InvocationId,
    /// `None` when the record is no longer kept (a session run past the budget, without history).
    pub record: Option<InvocationRecord>,
    pub children: Vec<InvocationId>,
    /// Every invocation on the item's path (ancestors and descendants, the latter capped).
    pub lineage: BTreeSet<InvocationId>,
    /// The blocks those invocations belong to, for the canvas.
    pub lineage_blocks: BTreeSet<BlockId>,
}

/// Where the editor remembers how many runs to keep.
pub const KEEP_RUNS_KEY: &str = "braid.keep_runs";

pub struct Executions {
    history: Option<History>,
    /// The history keeps this many runs (the newest); older ones are deleted after each run.
    pub keep_runs: usize,
    /// Newest first.
    history_runs: Vec<RunRow>,
    /// Newest last.
    session: VecDeque<RunData>,
    /// A history run loaded for viewing.
    loaded: Option<RunData>,
    /// A history run being read on a background thread (a million rows take a while).
    loading: Option<Loading>,
    /// The last text search of a history run.
    search: Option<Search>,
    /// The run the panel shows; `None` follows the newest run.
    pub selected_run: Option<RunId>,
    /// The user pinned the selected run: it stays shown while newer runs come. Unpinned, a run that
    /// starts takes the panel and the canvas over, so what they show after a fix is the fix's run.
    pub pinned: bool,
    pub filter: TableFilter,
    /// The table: indices into the shown run's rows.
    pub visible: Vec<usize>,
    view_key: Option<ViewKey>,
    /// Indices of the shown run's rows in start order (built when first needed).
    by_start: Option<(u64, Vec<usize>)>,
    pub picked: Option<Picked>,
    pub replay: Option<Replay>,
    /// A message about the history database (it could not be opened or read).
    pub history_problem: Option<String>,
    /// The shown run's failures grouped (the selected block's), brought up to date as rows arrive.
    failures: Option<FailureView>,
    /// The item picked in the run shown before (its block and keys): picked again in the run shown
    /// now once its rows are in, found by its keys (never by position).
    follow: Option<(BlockId, Vec<String>)>,
}

/// Failure groups of one run (and block), and how many of its rows they have seen.
struct FailureView {
    run: RunId,
    generation: u64,
    block: Option<BlockId>,
    seen: usize,
    groups: FailureGroups,
    sorted: Vec<FailureGroup>,
}

/// A text search of a history run: (run, block, text), and the ids found once the database answered.
struct Search {
    key: (RunId, Option<BlockId>, String),
    ids: Option<BTreeSet<InvocationId>>,
    rows: mpsc::Receiver<Result<BTreeSet<InvocationId>, HistoryError>>,
}

enum SearchState {
    NotNeeded,
    Pending,
    Ready(BTreeSet<InvocationId>),
}

struct Loading {
    run: RunRow,
    rows: mpsc::Receiver<Result<Vec<InvocationRow>, HistoryError>>,
}

#[derive(Clone, Debug, PartialEq)]
struct ViewKey {
    run: RunId,
    generation: u64,
    /// Rows of the run the table has seen.
    rows: usize,
    block: Option<BlockId>,
    filter: TableFilter,
}

impl Default for Executions {
    fn default() -> Self {
        Self {
            history: None,
            keep_runs: DEFAULT_KEEP_RUNS,
            history_runs: Vec::new(),
            session: VecDeque::new(),
            loaded: None,
            loading: None,
            search: None,
            selected_run: None,
            pinned: false,
            filter: TableFilter::default(),
            visible: Vec::new(),
            view_key: None,
            by_start: None,
            picked: None,
            replay: None,
            history_problem: None,
            failures: None,
            follow: None,
        }
    }
}

impl Executions {
    pub fn history(&self) -> Option<&History> {
        self.history.as_ref()
    }

    /// Uses this history database (or none). Another project's runs are dropped unless
    /// `keep_session` (the same project under a new file name).
    pub fn set_history(&mut self, history: Option<History>, keep_session: bool) {
        self.history = history;
        self.history_problem = None;
        self.loaded = None;
        self.loading = None;
        self.search = None;
        if !keep_session {
            self.session.clear();
            self.selected_run = None;
            self.pinned = false;
            self.picked = None;
            self.replay = None;
            self.view_key = None;
            self.visible.clear();
        }
        self.refresh_runs();
    }

    /// Reads the runs list again from the history database.
    pub fn refresh_runs(&mut self) {
        self.history_runs = match self.history.as_ref().map(History::runs) {
            Some(Ok(runs)) => runs,
            Some(Err(e)) => {
                self.history_problem = Some(e.to_string());
                Vec::new()
            }
            None => Vec::new(),
        };
    }

    /// Every run, newest first: this session's and the history's, each once.
    pub fn runs(&self) -> Vec<RunRow> {
        let mut runs: Vec<RunRow> = self.session.iter().map(|r| r.row.clone()).collect();
        for row in &self.history_runs {
            if !runs.iter().any(|r| r.run_id == row.run_id) {
                runs.push(row.clone());
            }
        }
        runs.sort_by(|a, b| b.started_at_ms.total_cmp(&a.started_at_ms));
        runs
    }

    /// The run the panel shows: the selected one, else the newest.
    pub fn shown_run_id(&self) -> Option<RunId> {
        if let Some(id) = &self.selected_run {
            return Some(id.clone());
        }
        // Called several times a frame: find the newest without building the list.
        self.run_rows()
            .max_by(|a, b| a.started_at_ms.total_cmp(&b.started_at_ms))
            .map(|r| r.run_id.clone())
    }

    /// The shown run's row (its start, status, counts), from this session or the history.
    pub fn shown_run_row(&self) -> Option<RunRow> {
        let id = self.shown_run_id()?;
        self.run_rows().find(|row| row.run_id == id).cloned()
    }

    /// This session's runs' rows, then the history's (a run may be in both).
    fn run_rows(&self) -> impl Iterator<Item = &RunRow> {
        self.session
            .iter()
            .map(|r| &r.row)
            .chain(&self.history_runs)
    }

    /// The shown run's data, when it is in memory.
    pub fn shown(&self) -> Option<&RunData> {
        let id = self.shown_run_id()?;
        self.data(&id)
    }

    fn data(&self, id: &RunId) -> Option<&RunData> {
        self.session
            .iter()
            .find(|r| &r.row.run_id == id)
            .or_else(|| self.loaded.as_ref().filter(|r| &r.row.run_id == id))
    }

    /// Adds a run kept in memory (tests and benchmarks build large synthetic runs this way).
    pub fn insert_run(&mut self, data: RunData) {
        self.session.retain(|r| r.row.run_id != data.row.run_id);
        self.session.push_back(data);
        while self.session.len() > SESSION_RUNS {
            self.session.pop_front();
        }
    }

    // --- from the runtime ------------------------------------------------------------------------

    pub fn run_started(
        &mut self,
        run_id: &RunId,
        started_at_ms: f64,
        executor: &Executor,
        redrive_of: Option<RunId>,
    ) {
        if self.data(run_id).is_some() {
            return;
        }
        let row = RunRow {
            run_id: run_id.clone(),
            status: RunStatus::Running,
            started_at_ms,
            duration_ms: None,
            invocations: 0,
            counts: BlockCounts::default(),
            executor: executor.clone(),
            redrive_of,
        };
        self.insert_run(RunData::new(row, Source::Session));
        // The panel follows the new run unless the user pinned the run it shows.
        if !self.pinned {
            self.selected_run = None;
            self.picked = None;
            self.by_start = None;
        }
    }

    pub fn invocations(&mut self, run_id: &RunId, records: Vec<InvocationRecord>) {
        let kept: usize = self.session.iter().map(|r| r.records.len()).sum();
        let Some(run) = self.session.iter_mut().find(|r| &r.row.run_id == run_id) else {
            return;
        };
        let mut room = RECORD_BUDGET.saturating_sub(kept);
        for record in records {
            run.push_record(record, room > 0);
            room = room.saturating_sub(1);
        }
    }

    /// Finished invocations that arrive as rows with their parents, without their whole records (the
    /// history has those): what the panel keeps of records past [`RECORD_BUDGET`].
    pub fn invocation_rows(&mut self, run_id: &RunId, rows: Vec<(InvocationRow, ParentIds)>) {
        let Some(run) = self.session.iter_mut().find(|r| &r.row.run_id == run_id) else {
            return;
        };
        for (row, parents) in rows {
            run.push_finished(row, &parents);
        }
    }

    pub fn run_finished(&mut self, summary: &RunSummary) {
        if let Some(run) = self
            .session
            .iter_mut()
            .find(|r| r.row.run_id == summary.run_id)
        {
            run.row.status = summary.status;
            run.row.duration_ms = Some(summary.duration_ms);
            run.row.started_at_ms = summary.started_at_ms;
            run.generation += 1;
        }
        // As `braid run` does: the oldest runs past the retention go.
        if let Some(history) = &self.history
            && let Err(e) = history.apply_retention(self.keep_runs)
        {
            self.history_problem = Some(format!("old runs were not deleted: {e}"));
        }
        // With a history, older runs are read back from it when shown: only the newest stays in
        // memory (a million-invocation run is a few hundred megabytes of rows).
        if self.history.is_some() {
            let keep = &summary.run_id;
            let shown = self.selected_run.clone();
            self.session.retain(|r| {
                &r.row.run_id == keep
                    || r.row.status == RunStatus::Running
                    || shown.as_ref() == Some(&r.row.run_id)
            });
        }
        self.refresh_runs();
    }

    // --- the table -----------------------------------------------------------------------------

    /// Selects a run: a history run's rows are read from the database now. The invocation picked in
    /// the run shown before is followed: the same block's invocation of the same item (by its keys) is
    /// picked in this one, once its rows are in.
    pub fn select_run(&mut self, run_id: RunId) {
        if !self.load(&run_id) {
            return;
        }
        if self.selected_run.as_ref() != Some(&run_id) {
            self.pinned = false;
        }
        self.follow = self
            .picked
            .as_ref()
            .filter(|p| p.run_id != run_id)
            .and_then(|p| p.record.as_ref())
            .map(|r| {
                let keys = r
                    .item_key_path()
                    .into_iter()
                    .map(std::borrow::Cow::into_owned)
                    .collect();
                (r.block_id.clone(), keys)
            });
        self.selected_run = Some(run_id);
        self.picked = None;
        self.by_start = None;
    }

    /// The invocation of `block` on the item with these keys in the shown run (its last attempt), if
    /// the run has one.
    pub fn same_item(&self, block: &BlockId, keys: &[String]) -> Option<InvocationId> {
        let run = self.shown()?;
        let innermost = keys.last().map(String::as_str);
        let mut candidates: Vec<InvocationId> = run
            .rows
            .iter()
            .filter(|row| {
                &row.block_id == block
                    && row.item_path.len() == keys.len()
                    && row.item_key().as_deref() == innermost
            })
            .map(|row| row.id)
            .collect();
        candidates.sort_unstable();
        candidates.into_iter().rev().find(|&id| {
            self.fetch_record(run, id).is_some_and(|record| {
                record
                    .item_key_path()
                    .iter()
                    .map(|k| &**k)
                    .eq(keys.iter().map(String::as_str))
            })
        })
    }

    /// Picks the followed item once the shown run's rows are in (see [`Self::select_run`]).
    fn pick_followed(&mut self) {
        if self.follow.is_none() || self.shown().is_none() {
            return;
        }
        if let Some((block, keys)) = self.follow.take()
            && let Some(id) = self.same_item(&block, &keys)
        {
            self.pick(id);
        }
    }

    /// Whether a run's rows are in memory; if not, starts reading a history run's on a background
    /// thread (its own connection), so the window never waits for a million rows.
    fn load(&mut self, run_id: &RunId) -> bool {
        if self.data(run_id).is_some() {
            return true;
        }
        self.take_loaded();
        if self.data(run_id).is_some() {
            return true;
        }
        if self
            .loading
            .as_ref()
            .is_some_and(|l| &l.run.run_id == run_id)
        {
            return true;
        }
        let Some(history) = &self.history else {
            return false;
        };
        let Some(row) = self
            .history_runs
            .iter()
            .find(|r| &r.run_id == run_id)
            .cloned()
        else {
            return false;
        };
        let (tx, rx) = mpsc::sync_channel(1);
        let path = history.path().to_owned();
        let run = row.run_id.clone();
        let spawned = std::thread::Builder::new()
            .name("braid-history-read".to_owned())
            .spawn(move || {
                let rows = History::open_read_only(&path)
                    .and_then(|h| h.invocation_rows(&run, &InvocationFilter::default()));
                let _ = tx.send(rows);
            });
        match spawned {
            Ok(_) => {
                self.loading = Some(Loading { run: row, rows: rx });
                true
            }
            Err(e) => {
                self.history_problem = Some(format!("could not start reading the history: {e}"));
                false
            }
        }
    }

    /// Takes a history run's rows once they have been read.
    fn take_loaded(&mut self) {
        let Some(loading) = &self.loading else {
            return;
        };
        let result = match loading.rows.try_recv() {
            Ok(result) => result,
            Err(mpsc::TryRecvError::Empty) => return,
            Err(mpsc::TryRecvError::Disconnected) => {
                self.loading = None;
                return;
            }
        };
        let Some(loading) = self.loading.take() else {
            return;
        };
        match result {
            Ok(rows) => {
                self.loaded = Some(RunData::from_rows(loading.run, rows, Source::History));
                self.view_key = None;
            }
            Err(e) => self.history_problem = Some(e.to_string()),
        }
    }

    /// Whether a history run is being read (the editor looks again soon).
    pub fn is_loading(&self) -> bool {
        self.loading.is_some() || self.is_searching()
    }

    /// Deletes the history's runs past [`Self::keep_runs`].
    pub fn apply_retention(&mut self) -> Result<(), HistoryError> {
        if let Some(history) = &self.history {
            history.apply_retention(self.keep_runs)?;
        }
        self.refresh_runs();
        Ok(())
    }

    pub fn delete_run(&mut self, run_id: &RunId) -> Result<(), HistoryError> {
        if let Some(history) = &self.history {
            history.delete_run(run_id)?;
        }
        self.session.retain(|r| &r.row.run_id != run_id);
        if self
            .loaded
            .as_ref()
            .is_some_and(|r| &r.row.run_id == run_id)
        {
            self.loaded = None;
        }
        if self.selected_run.as_ref() == Some(run_id) {
            self.selected_run = None;
            self.pinned = false;
        }
        if self.picked.as_ref().is_some_and(|p| &p.run_id == run_id) {
            self.picked = None;
        }
        self.refresh_runs();
        Ok(())
    }

    /// The shown run's failures grouped by error type and shape (the selected block's), largest first.
    pub fn failure_groups(&self) -> &[FailureGroup] {
        self.failures.as_ref().map_or(&[], |f| &f.sorted)
    }

    /// Brings the failure groups up to date with the shown run's rows: only rows that arrived since
    /// are grouped.
    fn refresh_failures(&mut self, block: Option<&BlockId>) {
        let mut view = self.failures.take();
        let Some(run) = self.shown() else {
            return;
        };
        let same = view.as_ref().is_some_and(|f| {
            f.run == run.row.run_id
                && f.generation == run.generation
                && f.block.as_ref() == block
                && f.seen <= run.rows.len()
        });
        let mut view = match view.take() {
            Some(view) if same => view,
            _ => FailureView {
                run: run.row.run_id.clone(),
                generation: run.generation,
                block: block.cloned(),
                seen: 0,
                groups: FailureGroups::default(),
                sorted: Vec::new(),
            },
        };
        if view.seen < run.rows.len() {
            for row in &run.rows[view.seen..] {
                if block.is_none_or(|b| &row.block_id == b) {
                    view.groups.add(row);
                }
            }
            view.seen = run.rows.len();
            view.sorted = view.groups.sorted();
        }
        self.failures = Some(view);
    }

    /// Rebuilds the table when the run, its rows, the block or the filter changed. Cheap otherwise.
    pub fn refresh_view(&mut self, block: Option<&BlockId>) {
        self.refresh_table(block);
        self.refresh_failures(block);
        self.pick_followed();
    }

    fn refresh_table(&mut self, block: Option<&BlockId>) {
        let Some(run_id) = self.shown_run_id() else {
            self.visible.clear();
            self.view_key = None;
            return;
        };
        self.load(&run_id);
        let Some(run) = self.data(&run_id) else {
            self.visible.clear();
            self.view_key = None;
            return;
        };
        let key = ViewKey {
            run: run_id,
            generation: run.generation,
            rows: run.rows.len(),
            block: block.cloned(),
            filter: self.filter.clone(),
        };
        if self.view_key.as_ref() == Some(&key) {
            return;
        }
        // Only new rows of the same run, block and filter: merge them in (session runs only; a
        // history run's text filter asks the database).
        let grown = self.view_key.as_ref().filter(|old| {
            old.run == key.run
                && old.block == key.block
                && old.filter == key.filter
                && old.rows <= key.rows
                && run.source == Source::Session
        });
        if let Some(old) = grown {
            self.visible = merge_new_rows(run, block, &self.filter, &self.visible, old.rows);
            self.view_key = Some(key);
            return;
        }
        let source = run.source;
        let text_ids = match self.search_ids(&key.run, source, block) {
            SearchState::NotNeeded => None,
            // The table stays as it is until the database answers (the key is not kept, so the
            // next refresh looks again).
            SearchState::Pending => return,
            SearchState::Ready(ids) => Some(ids),
        };
        let Some(run) = self.data(&key.run) else {
            return;
        };
        self.visible = filter_rows(run, block, &self.filter, text_ids.as_ref());
        self.view_key = Some(key);
    }

    /// For a history run and a text filter, the ids the database finds (it searches the whole
    /// input, output and error); the search runs on a background thread, like loading.
    fn search_ids(
        &mut self,
        run_id: &RunId,
        source: Source,
        block: Option<&BlockId>,
    ) -> SearchState {
        let text = self.filter.text.trim().to_owned();
        let Some(history) = &self.history else {
            return SearchState::NotNeeded;
        };
        if text.is_empty() || source != Source::History {
            return SearchState::NotNeeded;
        }
        let key = (run_id.clone(), block.cloned(), text);
        if let Some(search) = self.search.as_mut().filter(|s| s.key == key) {
            if let Some(ids) = &search.ids {
                return SearchState::Ready(ids.clone());
            }
            let found = match search.rows.try_recv() {
                Ok(Ok(ids)) => ids,
                Ok(Err(e)) => {
                    self.history_problem = Some(e.to_string());
                    BTreeSet::new()
                }
                Err(mpsc::TryRecvError::Empty) => return SearchState::Pending,
                Err(mpsc::TryRecvError::Disconnected) => BTreeSet::new(),
            };
            search.ids = Some(found.clone());
            return SearchState::Ready(found);
        }
        let (tx, rx) = mpsc::sync_channel(1);
        let path = history.path().to_owned();
        let filter = InvocationFilter {
            block: key.1.clone(),
            text: Some(key.2.clone()),
            ..InvocationFilter::default()
        };
        let run = key.0.clone();
        let spawned = std::thread::Builder::new()
            .name("braid-history-search".to_owned())
            .spawn(move || {
                let ids = History::open_read_only(&path)
                    .and_then(|h| h.invocation_rows(&run, &filter))
                    .map(|rows| rows.into_iter().map(|r| r.id).collect());
                let _ = tx.send(ids);
            });
        if let Err(e) = spawned {
            self.history_problem = Some(format!("could not start the search: {e}"));
            return SearchState::NotNeeded;
        }
        self.search = Some(Search {
            key,
            ids: None,
            rows: rx,
        });
        SearchState::Pending
    }

    /// Whether a search of a history run is under way.
    pub fn is_searching(&self) -> bool {
        self.search.as_ref().is_some_and(|s| s.ids.is_none())
    }

    /// The block of an invocation of the shown run.
    pub fn block_of(&self, id: InvocationId) -> Option<BlockId> {
        Some(self.shown()?.row_of(id)?.block_id.clone())
    }

    /// Counts per block of the shown run, for the canvas (while no run is shown, nothing).
    pub fn shown_counts(&self) -> Option<&BTreeMap<BlockId, BlockCounts>> {
        self.shown().map(|r| &r.counts)
    }

    // --- replay ----------------------------------------------------------------------------------

    /// Takes a replay's result; returns whether the event belonged to the replay.
    pub fn replay_records(&mut self, run_id: &RunId, records: &[InvocationRecord]) -> bool {
        let Some(replay) = self.replay.as_mut().filter(|r| &r.run_id == run_id) else {
            return false;
        };
        if let Some(record) = records.first() {
            replay.phase = ReplayPhase::Done(Box::new(record.clone()));
        }
        true
    }

    pub fn replay_refused(&mut self, run_id: &RunId, message: &str) -> bool {
        let Some(replay) = self.replay.as_mut().filter(|r| &r.run_id == run_id) else {
            return false;
        };
        replay.phase = ReplayPhase::Refused(message.to_owned());
        true
    }

    pub fn is_replay(&self, run_id: &RunId) -> bool {
        self.replay.as_ref().is_some_and(|r| &r.run_id == run_id)
    }
}
