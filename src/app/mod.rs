//! The application glue: owns the open project, its file, the undo history, the selection, the runtime
//! and the current run. Views (`crate::ui`) read this state and send [`Command`]s; once per frame the
//! application drains the runtime's events and the views' commands, in that order.
//!
//! Nothing here draws; [`crate::shell::BraidApp`] ties this state and the views to eframe.

pub mod command;
pub mod edit;
pub mod env_values;
pub mod executions;
pub mod files;
pub mod history;
pub mod run;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

pub use command::{BlockEdit, Command, CommandSender, FileAction, RunOptions};
pub use executions::{Executions, Step, TableFilter};
pub use files::{DialogMode, FilePrompt};
pub use run::{RunPhase, RunState};

use crate::model::format::{Origin, load_project, save_project};
use crate::model::validate::{Problem, validate};
use crate::model::{Block, BlockId, Position, Project, Transition, TransitionId};
use crate::run::{BlockCounts, CompileError, RunId};
use crate::runtime::history::History as RunHistory;
use crate::runtime::{RunRequest, RuntimeConfig, RuntimeEvent, RuntimeHandle, RuntimeRequest};
use files::{DialogOutcome, FileDialogs};
use history::History;

/// After the last edit, this long passes before the code is compiled again (never run) to show errors.
const CHECK_DELAY_SECS: f64 = 0.6;
/// The most time one frame spends taking the runtime's events, so a 10,000-item run never stalls
/// drawing.
const EVENT_BUDGET: Duration = Duration::from_millis(6);
/// Information notices fade after this long; errors stay until dismissed.
const NOTICE_SECS: f64 = 5.0;
/// How many of this session's earlier runs keep their log in memory (the history keeps every run's).
const SESSION_LOGS: usize = 20;

/// What is selected on the canvas. Not part of the project and not undoable.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Selection {
    pub blocks: BTreeSet<BlockId>,
    pub transition: Option<TransitionId>,
}

impl Selection {
    /// The one block the inspector shows, when exactly one is selected.
    pub fn single_block(&self) -> Option<&BlockId> {
        match self.blocks.len() {
            1 => self.blocks.iter().next(),
            _ => None,
        }
    }
}

/// A request to show a line of a block's code (from a traceback). `seq` tells a new request from one
/// the code editor already followed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CodeGoto {
    pub block: BlockId,
    pub line: u32,
    pub seq: u64,
}

/// The executions table of a growing run is rebuilt at most this often.
const TABLE_REFRESH_SECS: f64 = 0.25;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NoticeLevel {
    Info,
    Error,
}

/// A message for the user (a failed save, a file that doesn't parse, …).
#[derive(Clone, Debug, PartialEq)]
pub struct Notice {
    pub id: u64,
    pub level: NoticeLevel,
    pub text: String,
    pub at_secs: f64,
}

/// Something waiting for an answer to "discard unsaved changes?".
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PendingAction {
    New,
    Open(PathBuf),
    OpenDialog,
    Quit,
}

/// Compiling the code in the background (nothing runs) to show syntax errors while editing.
#[derive(Default)]
struct CheckState {
    due_at: Option<f64>,
    in_flight: Option<RunId>,
}

pub struct App {
    pub project: Project,
    /// The Braid file the project is saved to; `None` for a new project or a Refinery import.
    pub path: Option<PathBuf>,
    /// The Refinery export this project was imported from (Save then asks for a new Braid file).
    pub imported_from: Option<PathBuf>,
    /// The project as last opened or saved, to tell whether there are unsaved changes.
    saved: Project,
    history: History,
    /// Bumped on every change of the project, so views can refresh what they derive from it.
    pub revision: u64,
    /// Bumped when another project is opened or created (the canvas then fits it into view).
    pub document: u64,
    pub selection: Selection,
    /// Validation problems of the current project.
    pub problems: Vec<Problem>,
    /// Compile errors from the last background check (or the last refused run).
    pub compile_errors: Vec<CompileError>,
    check: CheckState,
    pub run: Option<RunState>,
    /// The logs of this session's earlier runs, newest last (a project never saved has no history).
    session_logs: VecDeque<(RunId, Vec<run::LogLine>)>,
    /// The log of the run Block Executions shows, when that is neither `run` nor in `session_logs`
    /// (read from the history).
    past_log: Option<(RunId, Vec<run::LogLine>)>,
    /// The Block Executions panel: runs, invocations, the picked one, replays.
    pub executions: Executions,
    /// The values of the project's environment variables (not part of the project).
    pub env_values: env_values::EnvValues,
    /// The project file as last opened or saved, to notice changes other programs (a `git pull`,
    /// another editor) make to it.
    disk: files::FileWatch,
    /// Where the code editor should go next (a traceback line was clicked).
    pub code_goto: Option<CodeGoto>,
    /// When the executions table was last rebuilt for a growing run (egui seconds).
    table_refreshed_at: f64,
    /// What the run dialog last ran with; Ctrl+Enter runs with it again.
    pub run_options: RunOptions,
    pub recent: Vec<PathBuf>,
    pub notices: Vec<Notice>,
    next_notice: u64,
    /// An action waiting for the user to confirm discarding unsaved changes.
    pub confirm: Option<PendingAction>,
    /// Braid's own path prompt, when there is no native file dialog.
    pub file_prompt: Option<FilePrompt>,
    dialogs: FileDialogs,
    /// After a Save As that "save first" started, carry on with this.
    continue_after_save: Option<PendingAction>,
    runtime: Option<RuntimeHandle>,
    sender: CommandSender,
    commands: mpsc::Receiver<command::Sent>,
    /// The user confirmed closing the window.
    pub quit_confirmed: bool,
    /// Set when the window should close (the shell sends the viewport command).
    pub close_requested: bool,
}

impl App {
    /// A new, empty project. `runtime` is `None` only when the runtime could not start; the editor still
    /// edits and saves then, and says why runs are unavailable.
    pub fn new(runtime: Option<RuntimeConfig>, dialog_mode: DialogMode) -> Self {
        let (sender, commands) = command::channel();
        let mut app = Self {
            project: Project::default(),
            path: None,
            imported_from: None,
            saved: Project::default(),
            history: History::default(),
            revision: 0,
            document: 0,
            selection: Selection::default(),
            problems: Vec::new(),
            compile_errors: Vec::new(),
            check: CheckState::default(),
            run: None,
            session_logs: VecDeque::new(),
            past_log: None,
            executions: Executions::default(),
            env_values: env_values::EnvValues::default(),
            disk: files::FileWatch::default(),
            code_goto: None,
            table_refreshed_at: f64::NEG_INFINITY,
            run_options: RunOptions::default(),
            recent: Vec::new(),
            notices: Vec::new(),
            next_notice: 0,
            confirm: None,
            file_prompt: None,
            dialogs: FileDialogs::new(dialog_mode),
            continue_after_save: None,
            runtime: None,
            sender,
            commands,
            quit_confirmed: false,
            close_requested: false,
        };
        if let Some(config) = runtime {
            match RuntimeHandle::start(config) {
                Ok(handle) => app.runtime = Some(handle),
                Err(e) => app.notify(
                    NoticeLevel::Error,
                    format!("The runtime could not start, so pipelines can't run: {e}"),
                    0.0,
                ),
            }
        }
        app.project_changed(0.0);
        app
    }

    pub fn sender(&self) -> CommandSender {
        self.sender.clone()
    }

    pub fn is_dirty(&self) -> bool {
        self.project != self.saved
    }

    pub fn can_undo(&self) -> bool {
        self.history.can_undo()
    }

    pub fn can_redo(&self) -> bool {
        self.history.can_redo()
    }

    /// Stops the runtime as the editor closes: a run still going is abandoned, and the history
    /// database is written out and closed rather than cut off mid-write.
    pub fn shutdown_runtime(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown(Duration::from_secs(5));
        }
    }

    pub fn has_runtime(&self) -> bool {
        self.runtime.is_some()
    }

    pub fn is_running(&self) -> bool {
        self.run.as_ref().is_some_and(RunState::is_active)
    }

    /// Whether a background compile check is pending or under way (the views show a spinner).
    pub fn is_checking(&self) -> bool {
        self.check.due_at.is_some() || self.check.in_flight.is_some()
    }

    pub fn file_dialog_open(&self) -> bool {
        self.dialogs.is_open()
    }

    /// The window title: the file, and a mark when there are unsaved changes.
    pub fn title(&self) -> String {
        let file = match (&self.path, &self.imported_from) {
            (Some(path), _) => file_name(path),
            (None, Some(from)) => format!("{} (Refinery import)", file_name(from)),
            (None, None) => "Untitled".to_owned(),
        };
        let mark = if self.is_dirty() { "● " } else { "" };
        format!("{mark}{file} — Braid")
    }

    #[track_caller]
    pub fn notify(&mut self, level: NoticeLevel, text: impl Into<String>, now_secs: f64) {
        let text = text.into();
        match level {
            NoticeLevel::Error => tracing::warn!("{text}"),
            NoticeLevel::Info => tracing::info!("{text}"),
        }
        self.next_notice += 1;
        self.notices.push(Notice {
            id: self.next_notice,
            level,
            text,
            at_secs: now_secs,
        });
        // Old notices go first: a burst of errors never fills the window.
        if self.notices.len() > 5 {
            self.notices.remove(0);
        }
    }

    /// Opens a project file at start-up (from the command line).
    pub fn open_at_start(&mut self, path: &Path) {
        self.open_file(path, 0.0);
    }

    // ------------------------------------------------------------------------------------------------
    // Once per frame

    /// Takes the runtime's events and the dialogs' answers, and starts a due compile check.
    pub fn poll(&mut self, now_secs: f64) {
        self.notices
            .retain(|n| n.level == NoticeLevel::Error || now_secs - n.at_secs < NOTICE_SECS);
        self.drain_runtime(now_secs);
        self.refresh_table(now_secs, false);
        self.refresh_past_log();
        self.env_values
            .refresh(self.path.as_deref(), now_secs, false);
        self.watch_disk(now_secs);
        if let Some(outcome) = self.dialogs.poll() {
            self.dialog_answered(outcome, now_secs);
        }
        if let (Some(due), Some(runtime)) = (self.check.due_at, &self.runtime)
            && now_secs >= due
        {
            let check_id = RunId::new_random();
            runtime.send(RuntimeRequest::Check {
                check_id: check_id.clone(),
                project: Box::new(self.project.clone()),
            });
            self.check.in_flight = Some(check_id);
            self.check.due_at = None;
        }
    }

    /// The log of the run Block Executions shows: the current run's as it grows, or a past run's from the
    /// history. `None` when no run is shown.
    pub fn shown_log(&self) -> Option<&[run::LogLine]> {
        let shown = self.executions.shown_run_id()?;
        if let Some(run) = self.run.as_ref().filter(|run| run.run_id == shown) {
            return Some(&run.log);
        }
        self.session_logs
            .iter()
            .chain(&self.past_log)
            .find(|(id, _)| *id == shown)
            .map(|(_, lines)| lines.as_slice())
    }

    /// Reads a past run's log when Block Executions comes to show that run (once, not every frame).
    fn refresh_past_log(&mut self) {
        let current = self.run.as_ref().map(|run| &run.run_id);
        let wanted = self.executions.shown_run_id().filter(|id| {
            Some(id) != current && !self.session_logs.iter().any(|(run, _)| run == id)
        });
        if wanted.as_ref() == self.past_log.as_ref().map(|(id, _)| id) {
            return;
        }
        self.past_log = wanted.map(|id| {
            let lines = match self.executions.history().map(|h| h.log(&id)) {
                Some(Ok(lines)) => lines,
                Some(Err(error)) => {
                    tracing::warn!("can't read the run's log: {error}");
                    Vec::new()
                }
                None => Vec::new(),
            };
            let lines = lines
                .into_iter()
                .map(|(worker, text)| run::LogLine {
                    source: if worker == 0 {
                        run::LogSource::Install
                    } else {
                        run::LogSource::Worker(worker)
                    },
                    text,
                })
                .collect();
            (id, lines)
        });
    }

    fn drain_runtime(&mut self, now_secs: f64) {
        let started = Instant::now();
        while started.elapsed() < EVENT_BUDGET {
            let Some(event) = self.runtime.as_mut().and_then(RuntimeHandle::try_recv) else {
                break;
            };
            self.runtime_event(event, now_secs);
        }
    }

    fn runtime_event(&mut self, event: RuntimeEvent, now_secs: f64) {
        if let RuntimeEvent::Checked {
            check_id,
            compile_errors,
        } = event
        {
            if self.check.in_flight.as_ref() == Some(&check_id) {
                self.check.in_flight = None;
                self.compile_errors = compile_errors;
            }
            return;
        }
        if self.executions.is_replay(event.run_id()) {
            self.replay_event(event);
            return;
        }
        match &event {
            RuntimeEvent::RunStarted {
                run_id,
                started_at_ms,
            } if self.run.as_ref().is_some_and(|r| &r.run_id == run_id) => {
                self.executions.run_started(run_id, *started_at_ms);
            }
            RuntimeEvent::RunFinished(summary) => {
                // The runtime creates the database with the project's first run.
                if self.executions.history().is_none() {
                    self.open_history(true, now_secs);
                }
                self.executions.run_finished(summary);
                // The table shows the run's last rows now: the editor stops repainting once nothing
                // runs, so a refresh held back by the throttle would leave it stale until the next input.
                self.table_refreshed_at = f64::NEG_INFINITY;
            }
            _ => {}
        }
        // Events of a run the editor no longer shows are dropped.
        let Some(run) = self
            .run
            .as_mut()
            .filter(|run| &run.run_id == event.run_id())
        else {
            return;
        };
        match event {
            RuntimeEvent::RunStarted { .. } => {
                if run.phase == RunPhase::Starting {
                    run.phase = RunPhase::Running;
                }
            }
            RuntimeEvent::Progress { counts, .. } => {
                run.counts = counts.into_iter().collect();
            }
            RuntimeEvent::Invocations { run_id, records } => {
                run.records_received += records.len() as u64;
                self.executions.invocations(&run_id, records);
            }
            RuntimeEvent::RunFinished(summary) => {
                let failed = summary.failures.len();
                run.phase = RunPhase::Finished(Box::new(summary));
                if failed > 0 {
                    tracing::info!("run finished with {failed} failure(s)");
                }
            }
            RuntimeEvent::RunRefused {
                message,
                compile_errors,
                ..
            } => {
                if !compile_errors.is_empty() {
                    self.compile_errors.clone_from(&compile_errors);
                }
                run.phase = RunPhase::Refused {
                    message: message.clone(),
                    compile_errors,
                };
                self.notify(
                    NoticeLevel::Error,
                    format!("The run did not start: {message}"),
                    now_secs,
                );
            }
            RuntimeEvent::Log { line, .. } => {
                tracing::info!(target: "braid::environment", "{line}");
                run.add_log(run::LogSource::Install, [line.clone()]);
                run.preparing = Some(line);
            }
            RuntimeEvent::WorkerOutput { worker, lines, .. } => {
                run.add_log(run::LogSource::Worker(worker), lines);
            }
            RuntimeEvent::Checked { .. } => {}
        }
    }

    /// Applies every command the views sent this frame. Returns whether anything was applied.
    pub fn apply_commands(&mut self, now_secs: f64) -> bool {
        let mut any = false;
        while let Ok(sent) = self.commands.try_recv() {
            tracing::debug!(
                "command {:?} from {}:{}",
                sent.command,
                sent.caller.file(),
                sent.caller.line()
            );
            self.apply(sent.command, now_secs);
            any = true;
        }
        if any {
            self.refresh_table(now_secs, true);
        }
        any
    }

    /// Applies one command at once (views send commands; tests may call this directly).
    pub fn apply(&mut self, command: Command, now_secs: f64) {
        match command {
            Command::Undo => self.undo(now_secs),
            Command::Redo => self.redo(now_secs),
            Command::SelectBlocks(ids) => {
                self.selection = Selection {
                    blocks: ids.into_iter().collect(),
                    transition: None,
                };
            }
            Command::ToggleBlock(id) => {
                self.selection.transition = None;
                if !self.selection.blocks.remove(&id) {
                    self.selection.blocks.insert(id);
                }
            }
            Command::SelectTransition(id) => {
                self.selection = Selection {
                    blocks: BTreeSet::new(),
                    transition: Some(id),
                };
            }
            Command::SelectAll => {
                self.selection = Selection {
                    blocks: self.project.blocks.iter().map(|b| b.id.clone()).collect(),
                    transition: None,
                };
            }
            Command::ClearSelection => self.selection = Selection::default(),
            Command::New => self.guard_unsaved(PendingAction::New, now_secs),
            Command::ShowFileDialog(FileAction::Open) => {
                self.guard_unsaved(PendingAction::OpenDialog, now_secs);
            }
            Command::ShowFileDialog(FileAction::SaveAs) => self.show_dialog(FileAction::SaveAs),
            Command::Open(path) => {
                self.file_prompt = None;
                self.guard_unsaved(PendingAction::Open(path), now_secs);
            }
            Command::Save => {
                self.save(now_secs);
            }
            Command::SaveAs(path) => {
                self.file_prompt = None;
                self.save_to(path, now_secs);
            }
            Command::CancelFilePrompt => {
                self.file_prompt = None;
                self.continue_after_save = None;
            }
            Command::ConfirmDiscard(discard) => {
                if let Some(action) = self.confirm.take()
                    && discard
                {
                    self.do_pending(action, now_secs);
                }
            }
            Command::SaveThenContinue => {
                if let Some(action) = self.confirm.take() {
                    if self.path.is_some() {
                        if self.save(now_secs) {
                            self.do_pending(action, now_secs);
                        }
                    } else {
                        self.continue_after_save = Some(action);
                        self.show_dialog(FileAction::SaveAs);
                    }
                }
            }
            Command::ForgetRecent(path) => self.recent.retain(|p| p != &path),
            Command::Quit => self.guard_unsaved(PendingAction::Quit, now_secs),
            Command::Run(options) => self.start_run(options, now_secs),
            Command::StopRun => self.stop_run(),
            Command::SetEnvValue { name, value } => {
                self.set_env_value(&name, value.as_deref(), now_secs);
            }
            Command::DismissNotice(id) => self.notices.retain(|n| n.id != id),
            Command::ShowRun(Some(run)) => self.executions.select_run(run),
            Command::ShowRun(None) => {
                self.executions.selected_run = None;
                self.executions.picked = None;
            }
            Command::DeleteRun(run) => {
                if let Err(e) = self.executions.delete_run(&run) {
                    self.notify(NoticeLevel::Error, e.to_string(), now_secs);
                }
            }
            Command::SetTableFilter(filter) => self.executions.filter = filter,
            Command::SetKeepRuns(keep) => {
                self.executions.keep_runs = keep.max(1);
                if let Err(e) = self.executions.apply_retention() {
                    self.notify(NoticeLevel::Error, e.to_string(), now_secs);
                }
            }
            Command::PickInvocation(id) => self.executions.pick(id),
            Command::StepInvocation(step) => self.step_invocation(step),
            Command::Replay => self.replay(now_secs),
            Command::CloseReplay => self.executions.replay = None,
            Command::ShowCode { block, line } => {
                if self.project.block(&block).is_some() {
                    self.selection = Selection {
                        blocks: BTreeSet::from([block.clone()]),
                        transition: None,
                    };
                    let seq = self.code_goto.as_ref().map_or(1, |g| g.seq + 1);
                    self.code_goto = Some(CodeGoto { block, line, seq });
                }
            }
            edit => self.edit(edit, now_secs),
        }
    }

    // ------------------------------------------------------------------------------------------------
    // Edits

    /// Applies a project edit as one undo step (or merged into the last one).
    fn edit(&mut self, command: Command, now_secs: f64) {
        let before = self.project.clone();
        let merge_key = command.merge_key();
        let mut project = self.project.clone();
        let outcome = apply_edit(&mut project, command);
        let inserted = match outcome {
            Ok(inserted) => inserted,
            Err(message) => {
                self.notify(NoticeLevel::Error, message, now_secs);
                return;
            }
        };
        if project == before {
            return;
        }
        // A line marked from a traceback means nothing once that code changes.
        if self
            .code_goto
            .as_ref()
            .is_some_and(|g| project.block(&g.block) != before.block(&g.block))
        {
            self.code_goto = None;
        }
        self.history.record(&before, merge_key, now_secs);
        self.project = project;
        if let Some(inserted) = inserted {
            self.selection = Selection {
                blocks: inserted.into_iter().collect(),
                transition: None,
            };
        }
        self.project_changed(now_secs);
    }

    fn undo(&mut self, now_secs: f64) {
        if let Some(previous) = self.history.undo(&self.project) {
            self.project = previous;
            self.project_changed(now_secs);
        }
    }

    fn redo(&mut self, now_secs: f64) {
        if let Some(next) = self.history.redo(&self.project) {
            self.project = next;
            self.project_changed(now_secs);
        }
    }

    /// Everything derived from the project is refreshed; the code is checked again after a pause.
    fn project_changed(&mut self, now_secs: f64) {
        self.revision += 1;
        self.problems = validate(&self.project);
        let project = &self.project;
        self.selection
            .blocks
            .retain(|id| project.block(id).is_some());
        if let Some(t) = &self.selection.transition
            && project.transition(t).is_none()
        {
            self.selection.transition = None;
        }
        self.check.due_at = Some(now_secs + CHECK_DELAY_SECS);
    }

    // ------------------------------------------------------------------------------------------------
    // Files

    fn guard_unsaved(&mut self, action: PendingAction, now_secs: f64) {
        if self.is_dirty() && !(action == PendingAction::Quit && self.quit_confirmed) {
            self.confirm = Some(action);
        } else {
            self.do_pending(action, now_secs);
        }
    }

    fn do_pending(&mut self, action: PendingAction, now_secs: f64) {
        match action {
            PendingAction::New => self.replace_project(Project::default(), None, None, now_secs),
            PendingAction::Open(path) => self.open_file(&path, now_secs),
            PendingAction::OpenDialog => self.show_dialog(FileAction::Open),
            PendingAction::Quit => {
                self.quit_confirmed = true;
                self.close_requested = true;
            }
        }
    }

    fn show_dialog(&mut self, action: FileAction) {
        let suggested = self.suggested_path(action);
        if !self.dialogs.start(action, &suggested) {
            self.file_prompt = Some(FilePrompt { action, suggested });
        }
    }

    fn suggested_path(&self, action: FileAction) -> PathBuf {
        let dir = self
            .path
            .as_deref()
            .or(self.imported_from.as_deref())
            .and_then(Path::parent)
            .map(Path::to_path_buf)
            .or_else(|| std::env::current_dir().ok())
            .unwrap_or_default();
        match (action, &self.path) {
            (FileAction::SaveAs, Some(path)) => path.clone(),
            (FileAction::SaveAs, None) => dir.join(files::suggested_file_name(
                &self.project.name,
                self.imported_from.as_deref(),
            )),
            (FileAction::Open, _) => dir.join(""),
        }
    }

    fn dialog_answered(&mut self, outcome: DialogOutcome, now_secs: f64) {
        match outcome {
            DialogOutcome::Chosen(FileAction::Open, path) => self.open_file(&path, now_secs),
            DialogOutcome::Chosen(FileAction::SaveAs, path) => {
                self.save_to(path, now_secs);
            }
            DialogOutcome::Cancelled => self.continue_after_save = None,
            DialogOutcome::Unavailable(action) => {
                self.notify(
                    NoticeLevel::Info,
                    "No system file dialog is available here (no xdg-desktop-portal); type a path \
                     instead.",
                    now_secs,
                );
                let suggested = self.suggested_path(action);
                self.file_prompt = Some(FilePrompt { action, suggested });
            }
        }
    }

    /// Opens a project. Loading only parses: no code runs.
    fn open_file(&mut self, path: &Path, now_secs: f64) {
        match load_project(path) {
            Ok(loaded) => {
                let (saved_path, imported) = match loaded.origin {
                    Origin::Braid => (Some(path.to_owned()), None),
                    // Saving must not overwrite the export with another format: Save asks for a file.
                    Origin::Refinery => (None, Some(path.to_owned())),
                };
                files::push_recent(&mut self.recent, path);
                self.replace_project(loaded.project, saved_path, imported, now_secs);
                if let Some(path) = &self.path {
                    self.disk.seen(path, now_secs);
                }
                self.open_history(false, now_secs);
            }
            Err(e) => self.notify(NoticeLevel::Error, format!("Could not open {e}"), now_secs),
        }
    }

    fn replace_project(
        &mut self,
        project: Project,
        path: Option<PathBuf>,
        imported_from: Option<PathBuf>,
        now_secs: f64,
    ) {
        self.stop_run();
        self.run = None;
        self.saved = project.clone();
        self.project = project;
        self.path = path;
        self.imported_from = imported_from;
        self.history.clear();
        self.selection = Selection::default();
        self.compile_errors.clear();
        self.executions.set_history(None, false);
        self.document += 1;
        self.project_changed(now_secs);
    }

    /// Notices, once a second at most, when another program changed the project file. Without unsaved
    /// changes the project is read again; with some, they are kept and the user is told that Save
    /// would replace the file's new content (nothing is overwritten unasked, nothing silently lost).
    fn watch_disk(&mut self, now_secs: f64) {
        let Some(stamp) = self
            .path
            .as_deref()
            .and_then(|path| self.disk.changed(path, now_secs))
        else {
            return;
        };
        let Some(path) = self.path.clone() else {
            return;
        };
        let name = path.file_name().map_or_else(
            || path.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        if stamp.is_none() {
            self.notify(
                NoticeLevel::Error,
                format!("{name} was deleted or moved by another program; Save writes it again."),
                now_secs,
            );
        } else if self.is_dirty() {
            self.notify(
                NoticeLevel::Error,
                format!(
                    "{name} was changed by another program. Your unsaved changes are kept: Save \
                     replaces the file's new content with them, or open the file again to take its \
                     version instead."
                ),
                now_secs,
            );
        } else {
            match load_project(&path) {
                Ok(loaded) if loaded.origin == Origin::Braid => {
                    self.saved = loaded.project.clone();
                    self.project = loaded.project;
                    // Undo would step back across the reload into a project the file no longer holds.
                    self.history.clear();
                    self.project_changed(now_secs);
                    self.notify(
                        NoticeLevel::Info,
                        format!("Reloaded {name}: another program changed it."),
                        now_secs,
                    );
                }
                Ok(_) => self.notify(
                    NoticeLevel::Error,
                    format!("{name} was replaced by a Refinery export; open it to import it."),
                    now_secs,
                ),
                Err(e) => self.notify(
                    NoticeLevel::Error,
                    format!(
                        "{name} was changed by another program and can't be read now ({e}); the \
                         project shown is the one read before."
                    ),
                    now_secs,
                ),
            }
        }
    }

    /// Saves to the project's file, or asks for one. Returns whether the project is now saved.
    fn save(&mut self, now_secs: f64) -> bool {
        if let Some(path) = self.path.clone() {
            self.save_to(path, now_secs)
        } else {
            self.show_dialog(FileAction::SaveAs);
            false
        }
    }

    fn save_to(&mut self, path: PathBuf, now_secs: f64) -> bool {
        match save_project(&path, &self.project) {
            Ok(()) => {
                self.saved = self.project.clone();
                self.disk.seen(&path, now_secs);
                files::push_recent(&mut self.recent, &path);
                let moved = self.path.as_ref() != Some(&path);
                // The blocks' variable values follow the project to its new name; its run history
                // stays with the old file (this session's runs stay in view).
                if moved
                    && let Some(old_path) = &self.path
                    && let Err(e) = crate::model::env_file::carry_over(old_path, &path)
                {
                    self.notify(
                        NoticeLevel::Error,
                        format!("The variables' values were not copied to the new name: {e}"),
                        now_secs,
                    );
                }
                self.path = Some(path);
                if moved {
                    self.open_history(true, now_secs);
                }
                self.imported_from = None;
                if let Some(action) = self.continue_after_save.take() {
                    self.do_pending(action, now_secs);
                }
                true
            }
            Err(e) => {
                self.continue_after_save = None;
                self.notify(NoticeLevel::Error, e.to_string(), now_secs);
                false
            }
        }
    }

    // ------------------------------------------------------------------------------------------------
    // Runs

    fn start_run(&mut self, options: RunOptions, now_secs: f64) {
        if self.is_running() {
            self.notify(
                NoticeLevel::Info,
                "A run is already going; stop it first.",
                now_secs,
            );
            return;
        }
        let input = match parse_json("input", &options.input) {
            Ok(v) => v,
            Err(message) => return self.notify(NoticeLevel::Error, message, now_secs),
        };
        let backpack = match parse_json("backpack", &options.backpack) {
            Ok(v) if v.is_object() => v,
            Ok(_) => {
                return self.notify(
                    NoticeLevel::Error,
                    "The backpack must be a JSON object, like {}.",
                    now_secs,
                );
            }
            Err(message) => return self.notify(NoticeLevel::Error, message, now_secs),
        };
        let Some(runtime) = &self.runtime else {
            return self.notify(
                NoticeLevel::Error,
                "Pipelines can't run: the runtime did not start.",
                now_secs,
            );
        };
        let run_id = RunId::new_random();
        // The values file's unreadable lines, then the variables left without a value.
        let (env, mut warnings) = crate::model::env_file::values_for(self.path.as_deref());
        let missing = crate::model::env_file::missing_values(&self.project, &env);
        if !missing.is_empty() {
            warnings.push(format!(
                "{} (the block's inspector sets values)",
                missing.join("; ")
            ));
        }
        runtime.send(RuntimeRequest::Run(Box::new(RunRequest {
            run_id: run_id.clone(),
            project: self.project.clone(),
            input,
            backpack,
            from: options.from.clone(),
            concurrency: options.concurrency,
            env,
            single: false,
            history: self.path.as_deref().map(RunHistory::path_for_project),
            working_dir: self.working_dir(),
        })));
        self.run_options = options;
        if let Some(earlier) = self.run.take() {
            if self.session_logs.len() == SESSION_LOGS {
                self.session_logs.pop_front();
            }
            self.session_logs.push_back((earlier.run_id, earlier.log));
        }
        self.run = Some(RunState::new(run_id, now_secs));
        // Worth knowing before reading the run's failures; a block may well cope without the value.
        for warning in warnings {
            self.notify(NoticeLevel::Info, warning, now_secs);
        }
    }

    /// Environment variable values for a run (or a replay) of this project: its `.braid/` values file
    /// over Braid's own environment.
    fn run_env(&self) -> std::collections::BTreeMap<String, String> {
        crate::model::env_file::values_for(self.path.as_deref()).0
    }

    /// Where this project's blocks run: its file's folder (none for a project never saved).
    fn working_dir(&self) -> Option<PathBuf> {
        self.path
            .as_deref()
            .and_then(crate::model::local_folder::working_dir)
    }

    fn set_env_value(&mut self, name: &str, value: Option<&str>, now_secs: f64) {
        let Some(path) = self.path.clone() else {
            self.notify(
                NoticeLevel::Error,
                "Save the project first: its variables' values are kept beside it, in .braid/",
                now_secs,
            );
            return;
        };
        match crate::model::env_file::save_value(&path, name, value) {
            Ok(()) => {
                let file = crate::model::env_file::path_for_project(&path);
                let what = if value.is_some() {
                    "saved in"
                } else {
                    "removed from"
                };
                self.notify(
                    NoticeLevel::Info,
                    format!("{name}'s value {what} {}", file.display()),
                    now_secs,
                );
            }
            Err(e) => self.notify(NoticeLevel::Error, e.to_string(), now_secs),
        }
        self.env_values.refresh(Some(&path), now_secs, true);
    }

    fn stop_run(&mut self) {
        if let (Some(run), Some(runtime)) = (&mut self.run, &self.runtime)
            && run.is_active()
        {
            runtime.send(RuntimeRequest::Cancel(run.run_id.clone()));
            run.phase = RunPhase::Stopping;
        }
    }

    // ------------------------------------------------------------------------------------------------
    // Block Executions

    /// Opens the project's history database when it exists (opening a project never creates
    /// files; the runtime creates the database with the first run). `keep_session` keeps this
    /// session's runs in view (after Save As).
    fn open_history(&mut self, keep_session: bool, now_secs: f64) {
        let Some(path) = self
            .path
            .as_deref()
            .map(RunHistory::path_for_project)
            .filter(|p| p.exists())
        else {
            self.executions.set_history(None, keep_session);
            return;
        };
        match RunHistory::open(&path) {
            Ok(history) => self.executions.set_history(Some(history), keep_session),
            Err(e) => {
                self.executions.set_history(None, keep_session);
                self.notify(
                    NoticeLevel::Error,
                    format!("The run history could not be opened: {e}"),
                    now_secs,
                );
            }
        }
    }

    /// Rebuilds the executions table when what it shows changed; a growing run's at most every
    /// [`TABLE_REFRESH_SECS`] unless `now` (a command changed the view).
    fn refresh_table(&mut self, now_secs: f64, now: bool) {
        if !now
            && !self.executions.is_loading()
            && now_secs - self.table_refreshed_at < TABLE_REFRESH_SECS
        {
            return;
        }
        self.table_refreshed_at = now_secs;
        let block = self.selection.single_block().cloned();
        self.executions.refresh_view(block.as_ref());
    }

    /// Moves the picked invocation. Following the item into another block selects that block, so the
    /// table (which lists the selected block's invocations) and the inspector go along.
    fn step_invocation(&mut self, step: Step) {
        let Some(target) = self.executions.step_target(step) else {
            return;
        };
        if matches!(step, Step::Parent | Step::Child)
            && self.selection.single_block().is_some()
            && let Some(block) = self.executions.block_of(target)
        {
            self.selection = Selection {
                blocks: BTreeSet::from([block]),
                transition: None,
            };
        }
        self.executions.pick(target);
    }

    /// Runs the picked invocation again with its captured input and backpack and the block's current
    /// code; nothing upstream or downstream runs, and the replay is not recorded in history.
    fn replay(&mut self, now_secs: f64) {
        let Some(record) = self
            .executions
            .picked
            .as_ref()
            .and_then(|p| p.record.clone())
        else {
            return self.notify(
                NoticeLevel::Error,
                "This invocation's record is not kept, so it can't be replayed.",
                now_secs,
            );
        };
        if self.project.block(&record.block_id).is_none() {
            return self.notify(
                NoticeLevel::Error,
                format!(
                    "The block \"{}\" is no longer in the project.",
                    record.block_name
                ),
                now_secs,
            );
        }
        let Some(runtime) = &self.runtime else {
            return self.notify(
                NoticeLevel::Error,
                "Pipelines can't run: the runtime did not start.",
                now_secs,
            );
        };
        let run_id = RunId::new_random();
        let backpack = if record.backpack_in.is_object() {
            (*record.backpack_in).clone()
        } else {
            Value::Object(serde_json::Map::new())
        };
        runtime.send(RuntimeRequest::Run(Box::new(RunRequest {
            input: record.input.clone(),
            backpack,
            from: Some(record.block_id.clone()),
            env: self.run_env(),
            single: true,
            working_dir: self.working_dir(),
            ..RunRequest::new(run_id.clone(), self.project.clone())
        })));
        self.executions.replay = Some(executions::Replay {
            run_id,
            original: record,
            phase: executions::ReplayPhase::Running,
        });
    }

    fn replay_event(&mut self, event: RuntimeEvent) {
        match event {
            RuntimeEvent::Invocations { run_id, records } => {
                self.executions.replay_records(&run_id, &records);
            }
            RuntimeEvent::RunRefused {
                run_id, message, ..
            } => {
                self.executions.replay_refused(&run_id, &message);
            }
            RuntimeEvent::RunFinished(summary) => {
                if let Some(replay) = &self.executions.replay
                    && replay.phase == executions::ReplayPhase::Running
                {
                    let message = summary.failures.first().map_or_else(
                        || "the replay produced no invocation".to_owned(),
                        |f| f.error.clone(),
                    );
                    self.executions.replay_refused(&summary.run_id, &message);
                }
            }
            _ => {}
        }
    }

    /// Counts per block for the canvas: the run picked in the Block Executions panel, else the current
    /// run's live counts, else the newest run of the history; and whether that run has finished.
    pub fn canvas_counts(&self) -> Option<(&BTreeMap<BlockId, BlockCounts>, bool)> {
        if let Some(selected) = &self.executions.selected_run
            && self.run.as_ref().is_none_or(|r| &r.run_id != selected)
        {
            return self.executions.shown_counts().map(|c| (c, true));
        }
        match &self.run {
            Some(run) => Some((&run.counts, matches!(run.phase, RunPhase::Finished(_)))),
            // No run in this session yet: the newest run from the history.
            None => self.executions.shown_counts().map(|c| (c, true)),
        }
    }

    /// Compile errors that belong to a block.
    pub fn compile_errors_of<'a>(
        &'a self,
        block: &'a BlockId,
    ) -> impl Iterator<Item = &'a CompileError> + 'a {
        self.compile_errors
            .iter()
            .filter(move |e| &e.block_id == block)
    }
}

fn file_name(path: &Path) -> String {
    path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}

/// JSON text from the run dialog, with the position of a mistake.
pub fn parse_json(what: &str, text: &str) -> Result<Value, String> {
    let text = if text.trim().is_empty() { "null" } else { text };
    serde_json::from_str(text).map_err(|e| {
        format!(
            "The {what} is not valid JSON (line {}, column {}): {e}",
            e.line(),
            e.column()
        )
    })
}

/// Applies one project edit to `project`. Returns the ids of inserted blocks (to select them), or a
/// message for the user when the edit can't be made.
fn apply_edit(project: &mut Project, command: Command) -> Result<Option<Vec<BlockId>>, String> {
    match command {
        Command::AddBlock {
            mut position,
            connect_from,
        } => {
            // A block added where another one is goes a little aside, so both can be seen.
            while project.blocks.iter().any(|b| {
                (b.position.x - position.x).abs() < 20.0 && (b.position.y - position.y).abs() < 20.0
            }) {
                position.x += 30.0;
                position.y += 30.0;
            }
            let name = edit::unique_name(project, "Code Block");
            let block = Block::new_code(name, crate::model::DEFAULT_PYTHON_CODE, position);
            let id = block.id.clone();
            project.blocks.push(block);
            if let Some((from, kind)) = connect_from {
                project
                    .transitions
                    .push(Transition::new(from, id.clone(), kind));
            }
            Ok(Some(vec![id]))
        }
        Command::EditBlock { block, edit } => {
            let Some(target) = project.block_mut(&block) else {
                return Ok(None);
            };
            match edit {
                BlockEdit::Name(name) => target.name = name,
                other => {
                    let Some(code) = target.code_mut() else {
                        return Err(format!("\"{}\" is not a Code Block", target.name));
                    };
                    match other {
                        BlockEdit::Code(text) => code.code = text,
                        BlockEdit::TimeoutSecs(secs) => code.timeout_s = secs.max(1),
                        BlockEdit::ConcurrencyCap(cap) => {
                            code.concurrency_cap = cap.map(|c| c.max(1));
                        }
                        BlockEdit::Libraries(list) => code.libraries = list,
                        BlockEdit::EnvVars(list) => code.env_vars = list,
                        BlockEdit::Name(_) => {}
                    }
                }
            }
            Ok(None)
        }
        Command::MoveBlocks(moves) => {
            for (id, position) in moves {
                if let Some(block) = project.block_mut(&id) {
                    block.position = position;
                }
            }
            Ok(None)
        }
        Command::Connect { from, to, kind } => {
            if from == to {
                return Err("A block can't be connected to itself.".to_owned());
            }
            if project
                .transitions
                .iter()
                .any(|t| t.from == from && t.to == to && t.kind == kind)
            {
                return Err(format!(
                    "\"{}\" already has a {kind} transition to \"{}\".",
                    project.block_name(&from),
                    project.block_name(&to)
                ));
            }
            project.transitions.push(Transition::new(from, to, kind));
            Ok(None)
        }
        Command::SetTransitionKind { transition, kind } => {
            if let Some(t) = project.transitions.iter_mut().find(|t| t.id == transition) {
                t.kind = kind;
            }
            Ok(None)
        }
        Command::SetTransitionExpression {
            transition,
            expression,
        } => {
            if let Some(t) = project.transitions.iter_mut().find(|t| t.id == transition) {
                t.expression = expression;
            }
            Ok(None)
        }
        Command::DeleteTransition(id) => {
            project.transitions.retain(|t| t.id != id);
            Ok(None)
        }
        Command::DeleteBlocks(ids) => {
            edit::delete_blocks(project, &ids.into_iter().collect());
            Ok(None)
        }
        Command::DuplicateBlocks(ids) => {
            let ids: BTreeSet<BlockId> = ids.into_iter().collect();
            let (blocks, transitions) = edit::blocks_with_inner_transitions(project, &ids);
            Ok(Some(edit::insert_copies(
                project,
                blocks,
                &transitions,
                None,
            )))
        }
        Command::Paste { text, at } => {
            let (blocks, transitions) = edit::parse_clipboard(&text)?;
            Ok(Some(edit::insert_copies(project, blocks, &transitions, at)))
        }
        Command::RenameProject(name) => {
            project.name = name;
            Ok(None)
        }
        Command::SetConcurrencyLimit(limit) => {
            project.settings.concurrency_limit = limit.max(1);
            Ok(None)
        }
        Command::SetReadme(text) => {
            project.readme = text;
            Ok(None)
        }
        other => Err(format!("internal: {other:?} is not an edit")),
    }
}

/// A position on the canvas, for commands built from egui coordinates.
pub fn position(x: f32, y: f32) -> Position {
    Position { x, y }
}
