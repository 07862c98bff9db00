//! An invoker that runs no Python: a Rust closure per block (by name) decides how each invocation ends
//! (a value and backpack, the `if`s' answers, a raise, a timeout, a crash, a cancel, printed output).
//! It stands in for the worker pool wherever what is tested is everything around Python: the engine,
//! the scheduler's semantics, the history, the editor. An answer can be held until the test releases
//! it, so a test sees exactly what is running at a moment (the limit, per-block caps, the queue's
//! order, a cancel mid-run, a late reply after a run ended).
//!
//! ```text
//! let script = Script::new()
//!     .block("Gen", |_| Reply::returns(json!([1, 2, 3])))
//!     .block("Work", |call| Reply::returns(call.input.clone()).held());
//! let runtime = RuntimeHandle::start(RuntimeConfig::scripted(script.clone()))?;
//! // … send a run, then:
//! let running = script.wait_held(3);   // Work's three items, in the order they were submitted
//! script.release(running[1].key);      // the second one ends first
//! ```
//!
//! `if` expressions are Python, so Braid never evaluates one here: a block with `if` transitions must
//! answer them ([`Reply::with_ifs`], one boolean per `if` in project order, typically computed from the
//! value it returns), or its invocation fails saying so. Fan-outs' item key and label expressions are
//! Python too: a block may answer its items' names ([`Reply::with_items`]); without them its items are
//! named by their indices. One script serves one runtime.

use std::collections::HashMap;
use std::fmt;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::sync::{mpsc, oneshot};

use super::invoker::{
    BlockCompileError, Invoker, InvokerEvent, InvokerEvents, Outcome, Program, Stopping, Task,
    TaskResult,
};
use crate::run::{ErrorInfo, now_ms};

/// One invocation, as a block's closure sees it.
#[derive(Clone, Debug)]
pub struct Call<'a> {
    /// The block's name.
    pub block: &'a str,
    pub input: Value,
    pub backpack: Value,
    pub attempt: u32,
    /// The task's key, unique within the runtime (see [`Held::key`]).
    pub key: u64,
    /// The block's `if` expressions, in project order: what [`Reply::with_ifs`] answers.
    pub ifs: &'a [String],
}

/// How one invocation ends, and what it printed on the way.
#[derive(Clone, Debug)]
pub struct Reply {
    outcome: Outcome,
    stdout: String,
    stderr: String,
    attempt: Option<u32>,
    held: bool,
}

impl Reply {
    fn with_outcome(outcome: Outcome) -> Self {
        Self {
            outcome,
            stdout: String::new(),
            stderr: String::new(),
            attempt: None,
            held: false,
        }
    }

    /// Returns `value`, leaving the backpack as it came and answering no `if`.
    pub fn returns(value: Value) -> Self {
        Self::with_outcome(Outcome::Returned {
            output: value,
            backpack: None,
            ifs: Vec::new(),
            items: Vec::new(),
        })
    }

    /// Raises `kind: message` (with no traceback and no line, unless [`Self::with_traceback`]).
    pub fn raises(kind: &str, message: &str) -> Self {
        Self::with_outcome(Outcome::Raised {
            error: error(kind, message),
            backpack: None,
        })
    }

    /// Runs past its timeout of `timeout_s` seconds and is stopped.
    pub fn times_out(timeout_s: f64) -> Self {
        Self::with_outcome(Outcome::TimedOut {
            error: error("Timeout", &format!("ran past its timeout of {timeout_s} s")),
        })
    }

    /// Kills the process running it (`os._exit`, a segfault), which `message` describes.
    pub fn crashes(message: &str) -> Self {
        Self::with_outcome(Outcome::Crashed {
            error: error("WorkerCrash", message),
        })
    }

    /// Ends as stopped, as an invocation the invoker was asked to cancel does.
    pub fn cancelled() -> Self {
        Self::with_outcome(Outcome::Cancelled)
    }

    /// The backpack as the invocation left it (returned or raised): a changed backpack.
    #[must_use]
    pub fn with_backpack(mut self, backpack: Value) -> Self {
        match &mut self.outcome {
            Outcome::Returned { backpack: b, .. } | Outcome::Raised { backpack: b, .. } => {
                *b = Some(backpack);
            }
            _ => {}
        }
        self
    }

    /// The answers of the block's `if` expressions, one per `if` transition in project order.
    #[must_use]
    pub fn with_ifs(mut self, answers: impl IntoIterator<Item = bool>) -> Self {
        if let Outcome::Returned { ifs, .. } = &mut self.outcome {
            *ifs = answers.into_iter().collect();
        }
        self
    }

    /// The names of the returned items, as the block's fan-outs' key and label expressions would have
    /// given them: one `(keys, labels)` per fan-out of the block, in project order.
    #[must_use]
    pub fn with_items(
        mut self,
        names: impl IntoIterator<Item = (Option<Vec<String>>, Option<Vec<String>>)>,
    ) -> Self {
        if let Outcome::Returned { items, .. } = &mut self.outcome {
            *items = names
                .into_iter()
                .map(|(keys, labels)| crate::run::ItemNames::new(keys, labels))
                .collect();
        }
        self
    }

    /// A raise's (or timeout's, or crash's) traceback and the block's line it points at.
    #[must_use]
    pub fn with_traceback(mut self, traceback: &str, line: Option<u32>) -> Self {
        if let Outcome::Raised { error, .. }
        | Outcome::TimedOut { error }
        | Outcome::Crashed { error } = &mut self.outcome
        {
            traceback.clone_into(&mut error.traceback);
            error.line = line;
        }
        self
    }

    /// What the invocation printed to its stdout.
    #[must_use]
    pub fn printing(mut self, stdout: &str) -> Self {
        self.stdout.push_str(stdout);
        self
    }

    /// What the invocation printed to its stderr.
    #[must_use]
    pub fn printing_to_stderr(mut self, stderr: &str) -> Self {
        self.stderr.push_str(stderr);
        self
    }

    /// Reported as this attempt (the pool runs an invocation again when its worker died under it).
    #[must_use]
    pub fn on_attempt(mut self, attempt: u32) -> Self {
        self.attempt = Some(attempt);
        self
    }

    /// Kept running until [`Script::release`] (or [`Script::release_all`]) lets it end.
    #[must_use]
    pub fn held(mut self) -> Self {
        self.held = true;
        self
    }
}

fn error(kind: &str, message: &str) -> ErrorInfo {
    ErrorInfo {
        kind: kind.to_owned(),
        message: message.to_owned(),
        traceback: String::new(),
        line: None,
    }
}

/// An invocation that is running: held by its reply, or submitted and not yet answered.
#[derive(Clone, Debug, PartialEq)]
pub struct Held {
    /// The task's key: the run's number in the high bits, the invocation's id in the low ones.
    pub key: u64,
    pub block: String,
    pub input: Value,
    pub attempt: u32,
}

type Handler = Arc<dyn Fn(&Call) -> Reply + Send + Sync>;

/// What the script decides and what it has seen, shared by the test and the invoker.
#[derive(Default)]
struct Shared {
    blocks: HashMap<String, Handler>,
    /// Blocks whose code does not compile: (block, line, message).
    compile_errors: Vec<(String, Option<u32>, String)>,
    /// Why the invoker can't run anything, while it can't: each load is answered with it.
    broken: Option<String>,
    /// Held invocations stay held when cancelled, so that releasing them makes late replies.
    ignore_cancel: bool,
    held: Vec<(Held, TaskResult)>,
    submitted: Vec<Held>,
    cancelled: Vec<u64>,
    in_flight: usize,
    max_in_flight: usize,
    /// The invoker's way in, once a runtime has started it.
    commands: Option<mpsc::UnboundedSender<Command>>,
    /// What the test sent before the runtime's thread started the invoker, sent once it has.
    early: Vec<Command>,
}

/// A script: what each block does, and the test's view of the invocations. Cloning it gives another
/// handle to the same script (one for the runtime's config, one for the test).
#[derive(Clone, Default)]
pub struct Script {
    shared: Arc<(Mutex<Shared>, Condvar)>,
}

impl fmt::Debug for Script {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shared = self.lock();
        let mut blocks: Vec<&String> = shared.blocks.keys().collect();
        blocks.sort();
        f.debug_struct("Script").field("blocks", &blocks).finish()
    }
}

/// How long [`Script::wait_held`] waits before it gives up.
const WAIT: Duration = Duration::from_secs(20);

impl Script {
    /// A script in which every block returns its input, its backpack unchanged.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Shared> {
        self.shared.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// What the block named `name` does with each invocation.
    #[must_use]
    pub fn block(self, name: &str, run: impl Fn(&Call) -> Reply + Send + Sync + 'static) -> Self {
        self.lock().blocks.insert(name.to_owned(), Arc::new(run));
        self
    }

    /// The block named `name` does not compile: loading a program with it reports `message` at `line`.
    #[must_use]
    pub fn compile_error(self, name: &str, line: Option<u32>, message: &str) -> Self {
        self.lock()
            .compile_errors
            .push((name.to_owned(), line, message.to_owned()));
        self
    }

    /// Held invocations stay held when the engine cancels them (a worker too busy to stop at once):
    /// releasing them later sends the replies of a run that has ended.
    #[must_use]
    pub fn ignoring_cancel(self) -> Self {
        self.lock().ignore_cancel = true;
        self
    }

    /// Waits until at least `n` invocations are held, and returns those held, in the order they were
    /// submitted.
    ///
    /// # Panics
    /// When fewer are held after 20 seconds: the test fails saying how many were.
    pub fn wait_held(&self, n: usize) -> Vec<Held> {
        let shared = self.wait_until(
            |shared| shared.held.len() >= n,
            |shared| {
                format!(
                    "{n} held invocations; {} are held: {:?}",
                    shared.held.len(),
                    shared.held.iter().map(|(h, _)| h).collect::<Vec<_>>()
                )
            },
        );
        shared.held.iter().map(|(held, _)| held.clone()).collect()
    }

    /// The script's state once `done` holds, waiting for the invoker's task to change it.
    ///
    /// # Panics
    /// When `done` still does not hold after 20 seconds: the test fails with `waited for` and what
    /// `describe` says.
    fn wait_until(
        &self,
        done: impl Fn(&Shared) -> bool,
        describe: impl Fn(&Shared) -> String,
    ) -> MutexGuard<'_, Shared> {
        let deadline = Instant::now() + WAIT;
        let mut shared = self.lock();
        while !done(&shared) {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "waited {WAIT:?} for {}", describe(&shared));
            shared = self
                .shared
                .1
                .wait_timeout(shared, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        shared
    }

    /// The invocations held now, in the order they were submitted.
    pub fn held(&self) -> Vec<Held> {
        self.lock()
            .held
            .iter()
            .map(|(held, _)| held.clone())
            .collect()
    }

    /// Lets the held invocation `key` end as its reply said. `false` if none is held under that key.
    pub fn release(&self, key: u64) -> bool {
        self.release_where(|held| held.key == key) == 1
    }

    /// Lets every held invocation end; returns how many there were.
    pub fn release_all(&self) -> usize {
        self.release_where(|_| true)
    }

    /// Lets the held invocations that `pick` picks end, in the order they were submitted; returns how
    /// many it picked.
    pub fn release_where(&self, mut pick: impl FnMut(&Held) -> bool) -> usize {
        let mut shared = self.lock();
        let (released, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut shared.held)
            .into_iter()
            .partition(|(held, _)| pick(held));
        shared.held = kept;
        let n = released.len();
        if n > 0 {
            let now = now_ms();
            let results = released
                .into_iter()
                .map(|(_, mut result)| {
                    result.ended_at_ms = Some(now);
                    result
                })
                .collect();
            shared.send(Command::Answer(results));
        }
        n
    }

    /// Every task the engine submitted, in order.
    pub fn submitted(&self) -> Vec<Held> {
        self.lock().submitted.clone()
    }

    /// The keys the engine asked to cancel, in order.
    pub fn cancelled(&self) -> Vec<u64> {
        self.lock().cancelled.clone()
    }

    /// The keys the engine asked to cancel, once there are at least `n`. The engine ends a cancelled
    /// run's invocations itself and asks the invoker to stop them as it goes: the ask can arrive after
    /// the run has finished.
    ///
    /// # Panics
    /// When fewer were asked after 20 seconds: the test fails saying which were.
    pub fn wait_cancelled(&self, n: usize) -> Vec<u64> {
        self.wait_until(
            |shared| shared.cancelled.len() >= n,
            |shared| format!("{n} cancelled invocations; {:?} were", shared.cancelled),
        )
        .cancelled
        .clone()
    }

    /// The most tasks submitted and not yet answered at one moment. The engine learns of an answer
    /// after the invoker sent it, so this never exceeds what the engine had running.
    pub fn max_in_flight(&self) -> usize {
        self.lock().max_in_flight
    }

    /// The invoker reports it can't run anything (as the pool does when Python won't start), and
    /// answers every load with that until [`Self::mend`].
    pub fn break_with(&self, message: &str) {
        let mut shared = self.lock();
        shared.broken = Some(message.to_owned());
        shared.send(Command::Emit(InvokerEvent::Broken(message.to_owned())));
    }

    /// The invoker can run again (as the pool, which tries Python again for each load).
    pub fn mend(&self) {
        self.lock().broken = None;
    }

    /// A worker (counting from 0) writes lines outside any invocation.
    pub fn write_output(&self, worker: usize, lines: Vec<String>) {
        self.lock()
            .send(Command::Emit(InvokerEvent::Output { worker, lines }));
    }

    /// Starts the invoker on the current tokio runtime.
    pub fn start(&self, events: InvokerEvents) -> ScriptedInvoker {
        let (commands, rx) = mpsc::unbounded_channel();
        {
            let mut shared = self.lock();
            for early in std::mem::take(&mut shared.early) {
                let _ = commands.send(early);
            }
            shared.commands = Some(commands.clone());
        }
        tokio::spawn(run(self.clone(), events, rx));
        ScriptedInvoker { commands }
    }

    /// What the script makes of one task: its result, and whether it is held.
    fn answer(&self, task: &Task, block: Option<&ProgramBlock>) -> (Held, TaskResult, bool) {
        let started = now_ms();
        let input = serde_json::from_str(&task.input_json).unwrap_or(Value::Null);
        let held = Held {
            key: task.key,
            block: block.map(|b| b.name.clone()).unwrap_or_default(),
            input: input.clone(),
            attempt: task.attempt,
        };
        let reply = match block {
            None => Reply::raises(
                "ScriptError",
                &format!(
                    "the scripted invoker has no block {} in program {}",
                    task.block, task.program
                ),
            ),
            Some(block) => {
                let handler = self.lock().blocks.get(&block.name).cloned();
                let call = Call {
                    block: &block.name,
                    input,
                    backpack: serde_json::from_str(&task.backpack_json).unwrap_or(Value::Null),
                    attempt: task.attempt,
                    key: task.key,
                    ifs: &block.ifs,
                };
                match handler {
                    None => check_ifs(Reply::returns(call.input.clone()), block),
                    Some(handler) => {
                        match std::panic::catch_unwind(AssertUnwindSafe(|| handler(&call))) {
                            Ok(reply) => check_ifs(reply, block),
                            Err(panic) => Reply::raises(
                                "ScriptError",
                                &format!(
                                    "the script of \"{}\" panicked: {}",
                                    block.name,
                                    panic_message(&*panic)
                                ),
                            ),
                        }
                    }
                }
            }
        };
        let result = TaskResult {
            worker: None,
            key: task.key,
            attempt: reply.attempt.unwrap_or(task.attempt),
            started_at_ms: Some(started),
            ended_at_ms: Some(now_ms()),
            stdout: reply.stdout,
            stderr: reply.stderr,
            outcome: reply.outcome,
        };
        (held, result, reply.held)
    }
}

/// A returned value must answer each of the block's `if`s, as Python would have evaluated each.
fn check_ifs(reply: Reply, block: &ProgramBlock) -> Reply {
    match &reply.outcome {
        Outcome::Returned { ifs, .. } if ifs.len() != block.ifs.len() => {
            let mut wrong = Reply::raises(
                "ScriptError",
                &format!(
                    "the script of \"{}\" answered {} `if`s; the block has {}",
                    block.name,
                    ifs.len(),
                    block.ifs.len()
                ),
            );
            wrong.held = reply.held;
            wrong
        }
        _ => reply,
    }
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(ToString::to_string)
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".to_owned())
}

impl Shared {
    fn send(&mut self, command: Command) {
        match &self.commands {
            Some(commands) => {
                let _ = commands.send(command);
            }
            None => self.early.push(command),
        }
    }

    fn answered(&mut self, n: usize) {
        self.in_flight = self.in_flight.saturating_sub(n);
    }
}

enum Command {
    Load(Program),
    Unload(u64),
    Submit(Vec<Task>),
    Cancel(Vec<u64>),
    Answer(Vec<TaskResult>),
    Emit(InvokerEvent),
    Stop(oneshot::Sender<()>),
}

/// A block as the script needs it: its name, for its closure, and its `if`s.
struct ProgramBlock {
    name: String,
    ifs: Vec<String>,
}

/// The invoker the engine holds; its task answers in order what the engine and the test send it.
#[derive(Debug)]
pub struct ScriptedInvoker {
    commands: mpsc::UnboundedSender<Command>,
}

impl Invoker for ScriptedInvoker {
    fn load(&mut self, program: Program) {
        let _ = self.commands.send(Command::Load(program));
    }

    fn unload(&mut self, program: u64) {
        let _ = self.commands.send(Command::Unload(program));
    }

    fn submit(&mut self, tasks: Vec<Task>) {
        let _ = self.commands.send(Command::Submit(tasks));
    }

    fn cancel(&mut self, keys: Vec<u64>) {
        let _ = self.commands.send(Command::Cancel(keys));
    }

    fn stop(self: Box<Self>) -> Stopping {
        let (done, stopped) = oneshot::channel();
        let asked = self.commands.send(Command::Stop(done)).is_ok();
        Box::pin(async move {
            if asked {
                let _ = stopped.await;
            }
        })
    }
}

async fn run(
    script: Script,
    events: InvokerEvents,
    mut commands: mpsc::UnboundedReceiver<Command>,
) {
    let mut programs: HashMap<u64, Vec<ProgramBlock>> = HashMap::new();
    while let Some(command) = commands.recv().await {
        let event = match command {
            Command::Load(program) => {
                let broken = script.lock().broken.clone();
                if let Some(message) = broken {
                    let _ = events.send(InvokerEvent::Broken(message)).await;
                    continue;
                }
                let errors = {
                    let shared = script.lock();
                    program
                        .blocks
                        .iter()
                        .zip(0..)
                        .flat_map(|(block, index)| {
                            shared
                                .compile_errors
                                .iter()
                                .filter(|(name, ..)| *name == block.name)
                                .map(move |(_, line, message)| BlockCompileError {
                                    block: index,
                                    if_index: None,
                                    fan_out_index: None,
                                    line: *line,
                                    message: message.clone(),
                                })
                        })
                        .collect()
                };
                if !program.compile_only {
                    let blocks = program
                        .blocks
                        .into_iter()
                        .map(|b| ProgramBlock {
                            name: b.name,
                            ifs: b.ifs,
                        })
                        .collect();
                    programs.insert(program.id, blocks);
                }
                Some(InvokerEvent::Loaded {
                    program: program.id,
                    errors,
                })
            }
            Command::Unload(program) => {
                programs.remove(&program);
                None
            }
            Command::Submit(tasks) => {
                let mut answers = Vec::new();
                for task in &tasks {
                    let block = programs
                        .get(&task.program)
                        .and_then(|blocks| blocks.get(task.block as usize));
                    let (held, result, keep) = script.answer(task, block);
                    let mut shared = script.lock();
                    shared.submitted.push(held.clone());
                    shared.in_flight += 1;
                    shared.max_in_flight = shared.max_in_flight.max(shared.in_flight);
                    if keep {
                        shared.held.push((held, result));
                        script.shared.1.notify_all();
                    } else {
                        answers.push(result);
                    }
                }
                (!answers.is_empty()).then_some(InvokerEvent::Finished(answers))
            }
            Command::Cancel(keys) => {
                let mut shared = script.lock();
                shared.cancelled.extend(&keys);
                script.shared.1.notify_all();
                if shared.ignore_cancel {
                    None
                } else {
                    let now = now_ms();
                    let (stopped, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut shared.held)
                        .into_iter()
                        .partition(|(held, _)| keys.contains(&held.key));
                    shared.held = kept;
                    let results: Vec<TaskResult> = stopped
                        .into_iter()
                        .map(|(_, result)| TaskResult {
                            worker: None,
                            ended_at_ms: Some(now),
                            stdout: String::new(),
                            stderr: String::new(),
                            outcome: Outcome::Cancelled,
                            ..result
                        })
                        .collect();
                    (!results.is_empty()).then_some(InvokerEvent::Finished(results))
                }
            }
            Command::Answer(results) => Some(InvokerEvent::Finished(results)),
            Command::Emit(event) => Some(event),
            Command::Stop(done) => {
                let _ = done.send(());
                break;
            }
        };
        if let Some(event) = event {
            if let InvokerEvent::Finished(results) = &event {
                script.lock().answered(results.len());
            }
            if events.send(event).await.is_err() {
                break;
            }
        }
    }
    script.lock().commands = None;
}
