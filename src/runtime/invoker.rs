//! The one narrow interface between the scheduler and whatever runs Python. No pyo3 type crosses it: code
//! goes in as text, values as JSON text, results come back as `serde_json` values.
//!
//! The engine holds one invoker per [`Executor`] (where a run executes) and sends each run's loads,
//! tasks and cancels to its executor's invoker; what an invoker reports reaches the engine tagged with
//! its executor ([`InvokerEvents`]). Implementations: the local pool of `braid __worker` processes
//! (`worker::pool`), a Dask cluster's (`dask`), and [`super::scripted`], Rust closures standing in for Python in tests.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use serde::Serialize;
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};

use crate::run::{ErrorInfo, Executor, ItemNames};

/// The code of every block of one run, compiled once per worker.
#[derive(Clone, Debug, Serialize)]
pub struct Program {
    #[serde(rename = "program")]
    pub id: u64,
    pub blocks: Vec<ProgramBlock>,
    /// The project's library environment, put first on the workers' `sys.path`.
    pub site_packages: Option<String>,
    /// The working directory the workers switch to (see `RunRequest::working_dir`).
    pub cwd: Option<String>,
    /// Loaded only to compile (a check): it must not make the workers switch library environments,
    /// nor publish its blocks as modules for child processes.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub compile_only: bool,
    /// The project's libraries, for an invoker whose workers bring their own (a cluster's): local
    /// workers get `site_packages`, built from them beforehand.
    #[serde(skip)]
    pub requirements: Vec<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct ProgramBlock {
    pub name: String,
    /// The file name tracebacks show: the block's name, made unique within the program.
    pub filename: String,
    pub code: String,
    /// The expressions of the block's `if` transitions, in project order.
    pub ifs: Vec<String>,
    /// The key and label expressions of the block's fan-out transitions, in project order; empty when
    /// none of them names its items (an invocation of the block then answers no names).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub fan_outs: Vec<FanOutNames>,
    pub timeout_s: f64,
    /// False for blocks that never reach Python (pass-through and unsupported blocks).
    pub runnable: bool,
    /// Environment variable values for this block (names from the project, values from outside it).
    pub env: BTreeMap<String, String>,
}

/// A fan-out's item key and label expressions (each empty when not given), and its target's name for
/// messages.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct FanOutNames {
    pub key: String,
    pub label: String,
    pub target: String,
}

/// One invocation handed to the invoker. Input and backpack are JSON text, encoded once by the scheduler.
#[derive(Clone, Debug)]
pub struct Task {
    pub key: u64,
    pub attempt: u32,
    pub program: u64,
    pub block: u32,
    pub timeout_s: f64,
    pub input_json: smol_str::SmolStr,
    /// Shared by the tasks of one fan-out, which all carry the same backpack.
    pub backpack_json: std::sync::Arc<str>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    Returned {
        output: Value,
        /// `None`: the backpack it was given, unchanged (the worker need not send it back).
        backpack: Option<Value>,
        /// One per `if` transition of the block, in project order.
        ifs: Vec<bool>,
        /// The names of the return value's items, one per fan-out of the block in project order, when
        /// the block's fan-outs name their items ([`ProgramBlock::fan_outs`]); empty otherwise (their
        /// indices are their keys).
        items: Vec<ItemNames>,
    },
    /// An uncaught exception (or an `if` expression that raised); the backpack as it was then, if it can
    /// still be encoded.
    Raised {
        error: ErrorInfo,
        backpack: Option<Value>,
    },
    TimedOut {
        error: ErrorInfo,
    },
    /// The process running the code died under it (`os._exit`, a segfault, out of memory).
    Crashed {
        error: ErrorInfo,
    },
    Cancelled,
}

#[derive(Clone, Debug, PartialEq)]
pub struct TaskResult {
    pub key: u64,
    pub attempt: u32,
    pub started_at_ms: Option<f64>,
    pub ended_at_ms: Option<f64>,
    pub stdout: String,
    pub stderr: String,
    pub outcome: Outcome,
    /// Where it ran, when that is not this machine: the Dask worker's address.
    pub worker: Option<std::sync::Arc<str>>,
}

/// A block whose code (or one of its transitions' expressions) does not compile.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlockCompileError {
    pub block: u32,
    /// The `if` expression's index among the block's (as [`ProgramBlock::ifs`] lists them); `None`:
    /// the block's code, or a fan-out's expression.
    pub if_index: Option<u32>,
    /// The fan-out's index among the block's (as [`ProgramBlock::fan_outs`] lists them) whose key or
    /// label expression does not compile.
    pub fan_out_index: Option<u32>,
    pub line: Option<u32>,
    pub message: String,
}

/// What an invoker reports back, through the channel it was built with.
#[derive(Debug)]
pub enum InvokerEvent {
    Loaded {
        program: u64,
        errors: Vec<BlockCompileError>,
    },
    Finished(Vec<TaskResult>),
    /// Python can't be run at all (the worker won't start): the runs waiting for a load are refused
    /// with this message. Sent again for each load while it lasts; an invoker tries again for each
    /// load, so a later run may run.
    Broken(String),
    /// Lines a worker wrote to its own stderr or stdout: C code writing to them, a thread printing after
    /// its invocation ended, a process that inherited them; nothing Python's streams in an invocation
    /// caught. Sent ahead of the results the worker sent after writing them. `worker` counts from 0.
    Output {
        worker: usize,
        lines: Vec<String>,
    },
    /// A program can't run where it was sent (a cluster without the project's libraries, say): its
    /// run is refused with this message.
    Refused {
        program: u64,
        message: String,
    },
}

/// Runs Python for the scheduler. Calls return at once; answers arrive as [`InvokerEvent`]s on the
/// [`InvokerEvents`] it was started with.
pub trait Invoker: Send {
    /// Compiles every block of a program (nothing runs); answered by [`InvokerEvent::Loaded`].
    fn load(&mut self, program: Program);
    fn unload(&mut self, program: u64);
    fn submit(&mut self, tasks: Vec<Task>);
    /// Stops these tasks; each still gets a result ([`Outcome::Cancelled`] unless it had finished).
    fn cancel(&mut self, keys: Vec<u64>);
    /// Ends what it started (processes, connections) and resolves once they are gone, so a process
    /// that exits right after leaves nothing behind. The engine calls it as it stops.
    fn stop(self: Box<Self>) -> Stopping;
}

/// What [`Invoker::stop`] returns: resolves once the invoker has stopped.
pub type Stopping = Pin<Box<dyn Future<Output = ()> + Send>>;

/// An [`Invoker`] call, as a message to the task that owns the workers (the local pool's, the Dask
/// bridge's): the engine never waits on a call.
#[derive(Debug)]
pub enum InvokerCommand {
    Load(Program),
    Unload(u64),
    Submit(Vec<Task>),
    Cancel(Vec<u64>),
    /// End every worker (and what their blocks started), then answer.
    Stop(oneshot::Sender<()>),
}

/// The invoker the engine holds when the work runs in a task of its own: each call goes to that task as
/// an [`InvokerCommand`]. Unbounded on purpose: the scheduler itself bounds what it submits (its
/// concurrency limit), and a bounded channel could deadlock against the events going the other way.
pub struct InvokerHandle {
    commands: mpsc::UnboundedSender<InvokerCommand>,
    /// How long [`Invoker::stop`] waits for the task to answer.
    stop_within: Duration,
}

impl InvokerHandle {
    /// A handle, and the commands' receiving end for the task it speaks to.
    pub fn new(stop_within: Duration) -> (Self, mpsc::UnboundedReceiver<InvokerCommand>) {
        let (commands, rx) = mpsc::unbounded_channel();
        (
            Self {
                commands,
                stop_within,
            },
            rx,
        )
    }
}

impl Invoker for InvokerHandle {
    fn load(&mut self, program: Program) {
        let _ = self.commands.send(InvokerCommand::Load(program));
    }

    fn unload(&mut self, program: u64) {
        let _ = self.commands.send(InvokerCommand::Unload(program));
    }

    fn submit(&mut self, tasks: Vec<Task>) {
        let _ = self.commands.send(InvokerCommand::Submit(tasks));
    }

    fn cancel(&mut self, keys: Vec<u64>) {
        let _ = self.commands.send(InvokerCommand::Cancel(keys));
    }

    fn stop(self: Box<Self>) -> Stopping {
        let (done, stopped) = oneshot::channel();
        let asked = self.commands.send(InvokerCommand::Stop(done)).is_ok();
        let within = self.stop_within;
        Box::pin(async move {
            if asked {
                let _ = tokio::time::timeout(within, stopped).await;
            }
        })
    }
}

/// How an invoker reports back: each event reaches the engine with the executor it came from, so a
/// broken invoker refuses only its own runs, and a worker's output goes to the runs on that executor.
#[derive(Clone, Debug)]
pub struct InvokerEvents {
    executor: Executor,
    events: mpsc::Sender<(Executor, InvokerEvent)>,
}

impl InvokerEvents {
    pub fn new(executor: Executor, events: mpsc::Sender<(Executor, InvokerEvent)>) -> Self {
        Self { executor, events }
    }

    pub fn executor(&self) -> &Executor {
        &self.executor
    }

    /// Sends an event, waiting while the engine's channel is full. `Err` once the engine has gone.
    pub async fn send(&self, event: InvokerEvent) -> Result<(), InvokerEvent> {
        self.events
            .send((self.executor.clone(), event))
            .await
            .map_err(|mpsc::error::SendError((_, event))| event)
    }
}
