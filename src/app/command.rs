//! Commands: everything the views ask of the application, as typed values.
//!
//! Views never change the project themselves. They send a [`Command`] through a [`CommandSender`]; the
//! application drains the channel once per frame, after the views have drawn. Commands are nested by
//! concern (an [`Edit`] of the project, a [`Select`]ion, a [`FileCommand`], …), so each handler takes
//! exactly its own and nothing is sorted out at run time. Each command remembers the line that sent
//! it, so "who asked for this?" has a one-line answer in a log or a debugger.

use std::panic::Location;
use std::path::PathBuf;
use std::sync::mpsc;

use super::executions::Step;
use super::executions::table::TableFilter;
use crate::model::{
    BlockId, BlockKind, Position, Retries, Tolerance, TransitionId, TransitionKind,
};
use crate::run::{Executor, InvocationId, RunId};

/// One edit of a block's fields, as the inspector makes it.
#[derive(Clone, Debug, PartialEq)]
pub enum BlockEdit {
    Name(String),
    Code(String),
    TimeoutSecs(u64),
    ConcurrencyCap(Option<u32>),
    Libraries(Vec<String>),
    EnvVars(Vec<String>),
    /// An API Endpoint's, Timer's or Queue's settings: the block's kind with its fields changed.
    Service(BlockKind),
    /// How failed invocations run again (none: they don't).
    Retries(Option<Retries>),
}

impl BlockEdit {
    /// Which field this edit changes; quick edits of the same field of the same block merge into one
    /// undo step.
    fn field(&self) -> &'static str {
        match self {
            Self::Name(_) => "name",
            Self::Code(_) => "code",
            Self::TimeoutSecs(_) => "timeout",
            Self::ConcurrencyCap(_) => "cap",
            Self::Libraries(_) => "libraries",
            Self::EnvVars(_) => "env",
            Self::Service(_) => "service",
            Self::Retries(_) => "retries",
        }
    }
}

/// A transition's field besides its type and `if` expression.
#[derive(Clone, Debug, PartialEq)]
pub enum TransitionField {
    /// A fan-out's item key expression (empty: the index is the key).
    ItemKey(String),
    /// A fan-out's item label expression (empty: no label).
    ItemLabel(String),
    /// A fan-in's failure budget (none: every item must deliver).
    ToleratedFailures(Option<Tolerance>),
}

impl TransitionField {
    fn name(&self) -> &'static str {
        match self {
            Self::ItemKey(_) => "item key",
            Self::ItemLabel(_) => "item label",
            Self::ToleratedFailures(_) => "tolerated failures",
        }
    }
}

/// What the run dialog asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunOptions {
    /// The run's input as JSON text.
    pub input: String,
    /// The starting backpack as JSON text (an object).
    pub backpack: String,
    /// The run's concurrency limit; the project's when `None`.
    pub concurrency: Option<u32>,
    /// Start at this block instead of the entry blocks.
    pub from: Option<BlockId>,
    /// Run on the Dask cluster at [`Self::cluster`] rather than this machine.
    pub on_cluster: bool,
    /// The Dask scheduler's address as typed (`tcp://HOST:PORT`); kept while runs go to this machine.
    pub cluster: String,
}

impl RunOptions {
    /// Where runs with these options execute: the cluster's scheduler, or why the address is not one.
    pub fn executor(&self) -> Result<Executor, String> {
        if !self.on_cluster {
            return Ok(Executor::Local);
        }
        Executor::dask(&self.cluster)
    }
}

impl Default for RunOptions {
    fn default() -> Self {
        Self {
            input: "null".to_owned(),
            backpack: "{}".to_owned(),
            concurrency: None,
            from: None,
            on_cluster: false,
            cluster: String::new(),
        }
    }
}

/// Which file dialog a view asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileAction {
    Open,
    SaveAs,
}

/// Everything the views ask of the application, by concern. Each concern has its own handler, and
/// the compiler checks that every command reaches one.
#[derive(Clone, Debug, PartialEq)]
pub enum Command {
    /// A change of the project: one undo step (or merged into the last one).
    Edit(Edit),
    Undo,
    Redo,
    Select(Select),
    File(FileCommand),
    Run(RunCommand),
    Serve(ServeCommand),
    Executions(ExecutionsCommand),
    DismissNotice(u64),
}

/// A change of the project. [`super::edit::apply_edit`] applies one to a project.
#[derive(Clone, Debug, PartialEq)]
pub enum Edit {
    AddBlock {
        position: Position,
        /// Connect the new block from this block with this transition type.
        connect_from: Option<(BlockId, TransitionKind)>,
    },
    EditBlock {
        block: BlockId,
        edit: BlockEdit,
    },
    /// New positions of blocks that the user dragged.
    MoveBlocks(Vec<(BlockId, Position)>),
    Connect {
        from: BlockId,
        to: BlockId,
        kind: TransitionKind,
    },
    SetTransitionKind {
        transition: TransitionId,
        kind: TransitionKind,
    },
    SetTransitionExpression {
        transition: TransitionId,
        expression: String,
    },
    /// A fan-out's item key or label, or a fan-in's failure budget.
    SetTransitionField {
        transition: TransitionId,
        field: TransitionField,
    },
    DeleteTransition(TransitionId),
    /// Deletes the blocks and every transition that touches them.
    DeleteBlocks(Vec<BlockId>),
    DuplicateBlocks(Vec<BlockId>),
    /// Blocks (and the transitions between them) as clipboard JSON, placed at `at` when given.
    Paste {
        text: String,
        at: Option<Position>,
    },
    RenameProject(String),
    SetConcurrencyLimit(u32),
    SetReadme(String),
}

impl Edit {
    /// Edits with the same key, made within a moment of each other, are one undo step (typing a word,
    /// dragging a block).
    pub(crate) fn merge_key(&self) -> Option<String> {
        match self {
            Self::EditBlock { block, edit } => Some(format!("edit {block} {}", edit.field())),
            Self::MoveBlocks(moves) => Some(format!(
                "move {}",
                moves
                    .iter()
                    .map(|(id, _)| &*id.0)
                    .collect::<Vec<_>>()
                    .join(",")
            )),
            Self::SetTransitionExpression { transition, .. } => {
                Some(format!("expression {transition}"))
            }
            Self::SetTransitionField { transition, field } => {
                Some(format!("{} {transition}", field.name()))
            }
            Self::RenameProject(_) => Some("project name".to_owned()),
            Self::SetReadme(_) => Some("readme".to_owned()),
            Self::SetConcurrencyLimit(_) => Some("concurrency".to_owned()),
            Self::AddBlock { .. }
            | Self::Connect { .. }
            | Self::SetTransitionKind { .. }
            | Self::DeleteTransition(_)
            | Self::DeleteBlocks(_)
            | Self::DuplicateBlocks(_)
            | Self::Paste { .. } => None,
        }
    }
}

/// What is selected on the canvas (not part of the project, not undoable).
#[derive(Clone, Debug, PartialEq)]
pub enum Select {
    /// Replaces the selection with these blocks.
    Blocks(Vec<BlockId>),
    /// Adds or removes one block (Ctrl+click).
    Toggle(BlockId),
    Transition(TransitionId),
    All,
    Clear,
    /// Selects a block and puts its code editor at a line (a traceback line was clicked).
    CodeLine {
        block: BlockId,
        line: u32,
    },
}

/// The project's file, and what waits on it.
#[derive(Clone, Debug, PartialEq)]
pub enum FileCommand {
    New,
    /// Shows a file dialog (native when there is one, else Braid's own).
    ShowDialog(FileAction),
    Open(PathBuf),
    Save,
    SaveAs(PathBuf),
    /// Closes Braid's own path prompt without choosing.
    CancelPrompt,
    /// Answers a "discard unsaved changes?" question.
    ConfirmDiscard(bool),
    /// Answers the same question with "save first".
    SaveThenContinue,
    ForgetRecent(PathBuf),
    /// The window's close button.
    Quit,
    /// Sets (or, with `None`, removes) an environment variable's value in the project's values file
    /// (`.braid/<project file>.env`, never the project).
    SetEnvValue {
        name: String,
        value: Option<String>,
    },
}

#[derive(Clone, Debug, PartialEq)]
pub enum RunCommand {
    Start(RunOptions),
    /// The next runs start at the entry blocks again (the toolbar's ✖ beside "from …").
    StartAtEntries,
    Stop,
}

/// Serve mode: the open project served as `braid serve` serves it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ServeCommand {
    /// Serve the project on this address (`127.0.0.1:7700`; port 0: any free one).
    Start {
        listen: String,
    },
    Stop,
}

/// The Block Executions panel.
#[derive(Clone, Debug, PartialEq)]
pub enum ExecutionsCommand {
    /// Shows a run in the panel (and its counts on the canvas); `None` follows the newest run.
    ShowRun(Option<RunId>),
    /// Keeps the shown run in view while newer runs come (or, `false`, follows the newest again).
    PinRun(bool),
    DeleteRun(RunId),
    /// How many runs the history keeps (applied now and after every run).
    SetKeepRuns(usize),
    SetTableFilter(TableFilter),
    /// Selects an invocation of the shown run.
    Pick(InvocationId),
    /// Follows the item to one of its invocations (where it came from, what it led to): picks it and
    /// selects its block.
    Follow(InvocationId),
    Step(Step),
    /// Runs the picked invocation again with the block's current code.
    Replay,
    CloseReplay,
    /// Runs a finished run's failed items again (only the failures of this shape, with `group`);
    /// what succeeded keeps its result.
    Redrive {
        run: RunId,
        group: Option<String>,
    },
}

impl From<Edit> for Command {
    fn from(edit: Edit) -> Self {
        Self::Edit(edit)
    }
}

impl From<Select> for Command {
    fn from(select: Select) -> Self {
        Self::Select(select)
    }
}

impl From<FileCommand> for Command {
    fn from(file: FileCommand) -> Self {
        Self::File(file)
    }
}

impl From<RunCommand> for Command {
    fn from(run: RunCommand) -> Self {
        Self::Run(run)
    }
}

impl From<ServeCommand> for Command {
    fn from(command: ServeCommand) -> Self {
        Self::Serve(command)
    }
}

impl From<ExecutionsCommand> for Command {
    fn from(command: ExecutionsCommand) -> Self {
        Self::Executions(command)
    }
}

/// A command and the line of code that sent it.
#[derive(Debug)]
pub struct Sent {
    pub command: Command,
    pub caller: &'static Location<'static>,
}

/// The views' end of the command channel. Cheap to clone.
#[derive(Clone, Debug)]
pub struct CommandSender(mpsc::Sender<Sent>);

impl CommandSender {
    /// Sends a command, or any part of one (`tx.send(Edit::…)`, `tx.send(Select::All)`).
    #[track_caller]
    pub fn send(&self, command: impl Into<Command>) {
        let caller = Location::caller();
        // The receiver lives as long as the application; a failed send means it is shutting down.
        let _ = self.0.send(Sent {
            command: command.into(),
            caller,
        });
    }
}

/// The channel that carries commands from the views to the application. Unbounded on purpose: views send
/// a handful per frame and the application drains them all at the end of the same frame.
pub fn channel() -> (CommandSender, mpsc::Receiver<Sent>) {
    let (tx, rx) = mpsc::channel();
    (CommandSender(tx), rx)
}
