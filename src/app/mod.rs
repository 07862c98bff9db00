//! The application glue: owns the open project, its file, the undo stack, the selection, the runtime
//! and the current run. Views (`crate::ui`) read this state and send [`Command`]s; once per frame the
//! application takes the runtime's events and the views' commands, in that order.
//!
//! This file holds the state; each concern has its own `impl App` in a file of its own: the frame
//! (`frame.rs`: polling, command dispatch, the runtime's events), edits and the selection (`edit.rs`),
//! the project's file (`files.rs`), runs (`run.rs`) and Block Executions with replays
//! (`executions/commands.rs`). Nothing here draws; [`crate::shell::BraidApp`] ties this state and the
//! views to eframe.

pub mod clipboard;
pub mod command;
pub mod dialogs;
pub mod disk;
pub mod edit;
pub mod env_values;
pub mod executions;
mod files;
mod frame;
pub mod inbox;
pub mod run;
pub mod serve;
#[cfg(test)]
mod tests;
pub mod undo;

use std::collections::{BTreeSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::mpsc;

pub use command::{
    BlockEdit, Command, CommandSender, Edit, ExecutionsCommand, FileAction, FileCommand,
    RunCommand, RunOptions, Select, ServeCommand, TransitionField,
};
pub use dialogs::{DialogMode, FilePrompt};
pub use executions::{Executions, Step};
pub use run::{RunPhase, RunState};

use crate::model::validate::Problem;
use crate::model::{BlockId, Project, TransitionId};
use crate::run::{CompileError, RunId};
use crate::runtime::{RuntimeConfig, RuntimeHandle, RuntimeSender};
use dialogs::FileDialogs;
use inbox::Inbox;
use undo::UndoStack;

/// What is selected on the canvas. Not part of the project and not undoable.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Selection {
    pub blocks: BTreeSet<BlockId>,
    pub transition: Option<TransitionId>,
}

impl Selection {
    /// These blocks and no transition.
    pub fn blocks(ids: impl IntoIterator<Item = BlockId>) -> Self {
        Self {
            blocks: ids.into_iter().collect(),
            transition: None,
        }
    }

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
    /// Stays until dismissed (a conflict the user has to settle); other notices fade on their own.
    pub lasting: bool,
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

/// The runtime as the editor holds it: its requests' end, and the inbox its events wait in (filled by a
/// thread of their own, so a run goes on while no frame is drawn).
struct Runtime {
    sender: RuntimeSender,
    inbox: Inbox,
}

pub struct App {
    pub project: Project,
    /// The Braid file the project is saved to; `None` for a new project or a Refinery import.
    pub path: Option<PathBuf>,
    /// The Refinery export this project was imported from (Save then asks for a new Braid file).
    pub imported_from: Option<PathBuf>,
    /// The project as last opened or saved, to tell whether there are unsaved changes.
    saved: Project,
    undo_stack: UndoStack,
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
    /// Serve mode: the project served (or starting to be); `None` when it is not.
    serving: Option<serve::Serving>,
    /// Where Serve mode listens (`braid serve`'s default; the toolbar edits it).
    pub serve_listen: String,
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
    disk: disk::FileWatch,
    /// Where the code editor should go next (a traceback line was clicked).
    pub code_goto: Option<CodeGoto>,
    /// When the executions table was last rebuilt for a growing run (egui seconds).
    table_refreshed_at: f64,
    /// What this project last ran with; ▶ Run and Ctrl+Enter run with it again. It belongs to the
    /// project it was made for: opening or starting another one starts from the defaults, and a start
    /// block that is deleted is forgotten (the toolbar says when a run starts elsewhere than at the
    /// entry blocks).
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
    runtime: Option<Runtime>,
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
        match runtime.map(RuntimeHandle::start) {
            None => Self::with_runtime(None, dialog_mode),
            Some(Ok(handle)) => Self::with_runtime(Some(handle), dialog_mode),
            Some(Err(e)) => {
                let mut app = Self::with_runtime(None, dialog_mode);
                app.notify(
                    NoticeLevel::Error,
                    format!("The runtime could not start, so pipelines can't run: {e}"),
                    0.0,
                );
                app
            }
        }
    }

    /// A new, empty project over a runtime already started (or built over plain channels, as the
    /// application's tests do).
    pub fn with_runtime(runtime: Option<RuntimeHandle>, dialog_mode: DialogMode) -> Self {
        let (sender, commands) = command::channel();
        let mut broken = None;
        let runtime = runtime.and_then(|handle| {
            let (sender, events) = handle.split();
            match Inbox::start(events) {
                Ok(inbox) => Some(Runtime { sender, inbox }),
                Err(e) => {
                    broken = Some(format!(
                        "The runtime's events can't be taken, so pipelines can't run: {e}"
                    ));
                    sender.shutdown(std::time::Duration::from_secs(1));
                    None
                }
            }
        });
        let mut app = Self {
            project: Project::default(),
            path: None,
            imported_from: None,
            saved: Project::default(),
            undo_stack: UndoStack::default(),
            revision: 0,
            document: 0,
            selection: Selection::default(),
            problems: Vec::new(),
            compile_errors: Vec::new(),
            check: CheckState::default(),
            run: None,
            serving: None,
            serve_listen: crate::serve::DEFAULT_LISTEN.to_owned(),
            session_logs: VecDeque::new(),
            past_log: None,
            executions: Executions::default(),
            env_values: env_values::EnvValues::default(),
            disk: disk::FileWatch::default(),
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
            runtime,
            sender,
            commands,
            quit_confirmed: false,
            close_requested: false,
        };
        app.project_changed(0.0);
        if let Some(message) = broken {
            app.notify(NoticeLevel::Error, message, 0.0);
        }
        app
    }

    pub fn sender(&self) -> CommandSender {
        self.sender.clone()
    }

    pub fn is_dirty(&self) -> bool {
        self.project != self.saved
    }

    pub fn has_runtime(&self) -> bool {
        self.runtime.is_some()
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

    /// Tells the user something; it fades after a few seconds (an error after longer).
    #[track_caller]
    pub fn notify(&mut self, level: NoticeLevel, text: impl Into<String>, now_secs: f64) {
        self.push_notice(level, text.into(), now_secs, false);
    }

    /// An error that stays until the user dismisses it: something they have to settle (the file
    /// changed on disk under unsaved changes).
    #[track_caller]
    pub fn notify_lasting(&mut self, text: impl Into<String>, now_secs: f64) {
        self.push_notice(NoticeLevel::Error, text.into(), now_secs, true);
    }

    #[track_caller]
    fn push_notice(&mut self, level: NoticeLevel, text: String, now_secs: f64, lasting: bool) {
        match level {
            NoticeLevel::Error => tracing::warn!("{text}"),
            NoticeLevel::Info => tracing::info!("{text}"),
        }
        // The same message again (a run refused twice) replaces the older one rather than piling up.
        self.notices.retain(|n| n.text != text);
        self.next_notice += 1;
        self.notices.push(Notice {
            id: self.next_notice,
            level,
            text,
            at_secs: now_secs,
            lasting,
        });
        // Old notices go first: a burst of errors never fills the window.
        if self.notices.len() > MAX_NOTICES {
            self.notices.remove(0);
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

/// The most notices shown at once.
const MAX_NOTICES: usize = 3;

/// A file's name, for titles and messages.
fn file_name(path: &Path) -> String {
    path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}
