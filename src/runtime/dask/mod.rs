//! Runs on a Dask cluster: the invoker of [`Executor::Dask`](crate::run::Executor) runs. Braid's scheduler
//! stays the one authority (the concurrency limit, per-block caps, fan-out and fan-in bookkeeping, records);
//! this invoker only carries its tasks to the cluster and the results back.
//!
//! It drives a bridge: a Python process (`bridge.py`, the interpreter Braid was built with, started with
//! `site` so that `distributed` imports) that holds the `distributed.Client`, spoken to over stdin/stdout
//! in frames as a worker is. Tasks travel in batches (invocations of one block, as the worker protocol's
//! run frame: one Dask task each, never one per invocation, as Dask costs about a millisecond a task);
//! each batch runs on a Dask worker in a child Python running Braid's worker package, which Dask itself
//! carried there (a worker plugin), and its results frames come back as they are, read here by the worker
//! protocol's one reader. A child that dies (a timeout Python could not stop, `os._exit`, a segfault)
//! fails the invocation that killed it; the others run again (attempt + 1), each alone when the culprit
//! is unknown, as the local pool does.

pub mod local;

use std::collections::{HashSet, VecDeque};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustc_hash::FxHashMap;
use serde::Deserialize;
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

use crate::runtime::invoker::{
    BlockCompileError, InvokerCommand, InvokerEvent, InvokerEvents, InvokerHandle, Outcome, Task,
    TaskResult,
};
use crate::runtime::worker::pool::{cancelled, crashed, task_result, timed_out_hard};
use crate::runtime::worker::protocol::{Reply, Request};

/// The bridge's Python source: run as `python -c`, so that its functions and worker plugin go to the
/// Dask workers by value (cloudpickle sends `__main__`'s that way).
const BRIDGE: &str = include_str!("bridge.py");

/// Invocations in one Dask task, at most: a wave of tasks is split over the cluster's threads, each
/// piece one task, so a big one goes out in pieces that come back as they finish.
const MAX_BATCH: usize = 4096;
/// Batches kept on the cluster per thread: one, running. A second one waiting behind it would save a
/// round trip between batches but hold back its invocations: a Dask worker's thread runs one batch at
/// a time, so sleeping blocks ran 50 at once under a limit of 100 (1,000 × 0.1 s took 2.5 s, against
/// about 1 s).
const BATCHES_PER_THREAD: usize = 1;
/// Lines of the bridge's stderr kept to explain why it ended.
const STDERR_LINES: usize = 30;
/// How long stopping waits for the bridge to close its client before it is killed.
const STOP_WITHIN: Duration = Duration::from_secs(3);

/// Starts the bridge to the scheduler at `scheduler` (on the current tokio runtime); the handle is what
/// the engine holds. Until the bridge has connected, what is asked of it waits; if it can't, it reports
/// [`InvokerEvent::Broken`] with why. Stopping closes the bridge's client (the cluster forgets Braid's
/// tasks) and waits until the bridge is gone.
pub fn start(scheduler: String, events: InvokerEvents) -> InvokerHandle {
    let (handle, rx) = InvokerHandle::new(STOP_WITHIN + Duration::from_secs(1));
    tokio::spawn(async move {
        let mut actor = Actor::new(scheduler, events);
        actor.run(rx).await;
    });
    handle
}

/// What the bridge says, other than a batch's end.
#[derive(Debug, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
enum BridgeReply {
    Ready {
        threads: usize,
    },
    Threads {
        threads: usize,
    },
    Broken {
        message: String,
    },
    Loaded {
        program: u64,
        errors: Vec<LoadError>,
    },
    Refused {
        program: u64,
        message: String,
    },
}

#[derive(Debug, Deserialize)]
struct LoadError {
    block: u32,
    #[serde(rename = "if")]
    if_index: Option<u32>,
    /// The fan-out whose item key or label expression does not compile.
    #[serde(default)]
    fan_out: Option<u32>,
    line: Option<u32>,
    message: String,
}

/// A batch's end, as the bridge reports it: the header of a `D` frame (its results frames follow).
#[derive(Debug, Default, Deserialize)]
struct BatchEnd {
    batch: u64,
    /// The Dask worker that ran it.
    #[serde(default)]
    worker: Option<String>,
    /// The child running it died: how, and which invocation killed it when that is known.
    #[serde(default)]
    died: Option<Died>,
    /// Lines the child wrote to its stderr itself while it ran the batch.
    #[serde(default)]
    output: Vec<String>,
    /// The Dask task failed (its workers kept dying under it, or the cluster lost it).
    #[serde(default)]
    error: Option<String>,
    /// Cancelled before it ran.
    #[serde(default)]
    cancelled: bool,
}

#[derive(Debug, Deserialize)]
struct Died {
    how: String,
    culprit: Option<u64>,
    /// `exit` (os._exit), `stuck` (past its timeout and deaf to the interrupt), or none (it just died).
    kind: Option<String>,
    code: Option<i64>,
    stderr: String,
}

enum FromBridge {
    Reply(BridgeReply),
    BatchEnd(BatchEnd, Vec<Vec<u8>>),
    /// The bridge's stdout ended or spoke garbage.
    Gone(String),
}

struct Batch {
    tasks: Vec<Task>,
    /// Runs one suspect alone: if its child dies, it is the culprit.
    solo: bool,
}

struct Actor {
    scheduler: String,
    events: InvokerEvents,
    bridge: Option<Child>,
    frames: Option<mpsc::UnboundedSender<Vec<u8>>>,
    /// What the bridge says, tagged with the bridge's generation: one that ended before the current
    /// one started has nothing more to say.
    from_bridge_tx: mpsc::UnboundedSender<(u64, FromBridge)>,
    from_bridge: mpsc::UnboundedReceiver<(u64, FromBridge)>,
    generation: u64,
    stderr: Arc<Mutex<VecDeque<String>>>,
    /// Connected: what was asked before waits in `early`.
    ready: bool,
    early: Vec<InvokerCommand>,
    /// The cluster's threads: a wave of tasks is split into about as many batches.
    threads: usize,
    batches: FxHashMap<u64, Batch>,
    /// Invocations in `batches`.
    in_flight: usize,
    /// Tasks waiting to fill a batch, per (program, block), in the order they came.
    pending: Vec<((u64, u32), Vec<Task>)>,
    next_batch: u64,
    cancelled: HashSet<u64>,
    /// The Dask workers met, in order: a worker's number in [`InvokerEvent::Output`].
    workers: Vec<Arc<str>>,
    broken: Option<String>,
    /// Added to program ids on the cluster: other Braid processes' runs share its workers (and the
    /// children there, which keep programs by id), and their ids start from 1 too.
    program_base: u64,
}

impl Actor {
    fn new(scheduler: String, events: InvokerEvents) -> Self {
        let (from_bridge_tx, from_bridge) = mpsc::unbounded_channel();
        Self {
            scheduler,
            events,
            bridge: None,
            frames: None,
            from_bridge_tx,
            from_bridge,
            generation: 0,
            stderr: Arc::new(Mutex::new(VecDeque::new())),
            ready: false,
            early: Vec::new(),
            threads: 1,
            batches: FxHashMap::default(),
            in_flight: 0,
            pending: Vec::new(),
            next_batch: 1,
            cancelled: HashSet::new(),
            workers: Vec::new(),
            broken: None,
            program_base: u64::from(uuid::Uuid::new_v4().as_fields().0) << 24,
        }
    }

    async fn run(&mut self, mut commands: mpsc::UnboundedReceiver<InvokerCommand>) {
        if let Err(message) = self.spawn() {
            self.give_up(message).await;
        }
        loop {
            tokio::select! {
                command = commands.recv() => {
                    let Some(command) = command else { break };
                    if let InvokerCommand::Stop(done) = command {
                        self.stop().await;
                        let _ = done.send(());
                        return;
                    }
                    self.command(command).await;
                }
                Some((generation, message)) = self.from_bridge.recv() => {
                    if generation == self.generation {
                        self.bridge_said(message).await;
                    }
                }
            }
        }
        self.stop().await;
    }

    fn spawn(&mut self) -> Result<(), String> {
        self.generation += 1;
        let generation = self.generation;
        if let Ok(mut tail) = self.stderr.lock() {
            tail.clear();
        }
        let python = crate::runtime::environment::python_executable();
        let mut command = Command::new(&python);
        command
            .arg("-c")
            .arg(BRIDGE)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        // A process group of its own, as the local workers have: Ctrl+C in the terminal reaches Braid
        // alone, which cancels the run through the bridge; a bridge that took the Ctrl+C too would die
        // before it could stop the batches running on the cluster, leaving their threads busy there.
        #[cfg(unix)]
        command.process_group(0);
        let mut child = command.spawn().map_err(|e| {
            format!(
                "can't start {} to reach the Dask cluster at {}: {e}",
                python.display(),
                self.scheduler
            )
        })?;
        let (Some(mut stdin), Some(stdout), Some(stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            return Err("the Dask bridge started without its pipes".to_owned());
        };
        let (frames, mut to_write) = mpsc::unbounded_channel::<Vec<u8>>();
        tokio::spawn(async move {
            while let Some(frame) = to_write.recv().await {
                let header = (frame.len() as u32).to_le_bytes();
                if stdin.write_all(&header).await.is_err() || stdin.write_all(&frame).await.is_err()
                {
                    return;
                }
            }
        });
        let tx = self.from_bridge_tx.clone();
        tokio::spawn(async move {
            let mut reader = BufReader::with_capacity(1 << 16, stdout);
            let reason = loop {
                let mut header = [0_u8; 4];
                if reader.read_exact(&mut header).await.is_err() {
                    break String::new();
                }
                let mut body = vec![0_u8; u32::from_le_bytes(header) as usize];
                if reader.read_exact(&mut body).await.is_err() {
                    break String::new();
                }
                match read_bridge_frame(&body) {
                    Ok(message) => {
                        if tx.send((generation, message)).is_err() {
                            return;
                        }
                    }
                    Err(error) => {
                        break format!("the Dask bridge sent a malformed reply ({error})");
                    }
                }
            };
            let _ = tx.send((generation, FromBridge::Gone(reason)));
        });
        let tail = Arc::clone(&self.stderr);
        tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                tracing::debug!(target: "braid::dask", "{line}");
                if let Ok(mut tail) = tail.lock() {
                    if tail.len() == STDERR_LINES {
                        tail.pop_front();
                    }
                    tail.push_back(line);
                }
            }
        });
        let package: serde_json::Map<String, serde_json::Value> = crate::runtime::worker::PACKAGE
            .iter()
            .map(|(name, source)| ((*name).to_owned(), (*source).into()))
            .collect();
        // The plugin's name on the workers: its code and the package it carries, hashed, so the
        // plugin another Braid registered under it is the same (and one of another build is not).
        let mut sources = BRIDGE.to_owned();
        for (_, source) in crate::runtime::worker::PACKAGE {
            sources.push_str(source);
        }
        let plugin = format!(
            "braid-{}",
            crate::runtime::environment::stable_hash(sources.as_bytes())
        );
        let start = serde_json::json!({
            "op": "start",
            "scheduler": self.scheduler,
            "package": package,
            "plugin": plugin,
        });
        let _ = frames.send(start.to_string().into_bytes());
        self.frames = Some(frames);
        self.bridge = Some(child);
        Ok(())
    }

    fn send(&self, frame: Vec<u8>) {
        if let Some(frames) = &self.frames {
            let _ = frames.send(frame);
        }
    }

    async fn command(&mut self, command: InvokerCommand) {
        if let Some(message) = &self.broken {
            match command {
                // A new run: the cluster may be back, so the bridge starts again and connects anew.
                InvokerCommand::Load(_) => {
                    self.broken = None;
                    self.ready = false;
                    if let Err(message) = self.spawn() {
                        self.give_up(message).await;
                        return;
                    }
                }
                // The runs that were going fail with why, each invocation as the engine asks for it.
                InvokerCommand::Submit(tasks) => {
                    let results = tasks.iter().map(|task| crashed(task, message)).collect();
                    self.emit(InvokerEvent::Finished(results)).await;
                    return;
                }
                _ => return,
            }
        }
        if !self.ready {
            self.early.push(command);
            return;
        }
        match command {
            InvokerCommand::Load(mut program) => {
                program.id += self.program_base;
                let load = serde_json::to_value(Request::Load(&program)).unwrap_or_default();
                let request = serde_json::json!({
                    "op": "load",
                    "program": program.id,
                    "requirements": program.requirements,
                    "load": load,
                });
                self.send(request.to_string().into_bytes());
            }
            InvokerCommand::Unload(program) => {
                let request =
                    serde_json::json!({"op": "unload", "program": program + self.program_base});
                self.send(request.to_string().into_bytes());
            }
            InvokerCommand::Submit(tasks) => self.submit(tasks, false),
            InvokerCommand::Cancel(keys) => {
                // Those still waiting for a batch never leave.
                let stop: HashSet<u64> = keys.iter().copied().collect();
                let mut results = Vec::new();
                for (_, tasks) in &mut self.pending {
                    tasks.retain(|task| {
                        let keep = !stop.contains(&task.key);
                        if !keep {
                            results.push(cancelled(task));
                        }
                        keep
                    });
                }
                self.pending.retain(|(_, tasks)| !tasks.is_empty());
                self.cancelled.extend(keys.iter().copied());
                let request = serde_json::json!({"op": "cancel", "keys": keys});
                self.send(request.to_string().into_bytes());
                if !results.is_empty() {
                    self.emit(InvokerEvent::Finished(results)).await;
                }
            }
            InvokerCommand::Stop(_) => {}
        }
    }

    /// Takes tasks to run: suspects (`solo`) go at once, each alone; the others wait to fill a batch of
    /// their block (see [`Self::flush`]).
    fn submit(&mut self, tasks: Vec<Task>, solo: bool) {
        if solo {
            for task in tasks {
                self.send_batch(vec![task], true);
            }
            return;
        }
        for task in tasks {
            let group = (task.program, task.block);
            match self.pending.iter_mut().find(|(g, _)| *g == group) {
                Some((_, members)) => members.push(task),
                None => self.pending.push((group, vec![task])),
            }
        }
        self.flush();
    }

    /// Sends the waiting tasks in batches of one block. What Braid has outstanding (in flight and
    /// waiting) is cut into [`BATCHES_PER_THREAD`] batches per thread of the cluster, so batches
    /// stay that large as the run goes: each batch's results free that many places under the run's
    /// limit, which come back as one submit and fill one batch again. (Cutting each submit by itself
    /// over the threads halved the batches at every round, down to one invocation per Dask task, at
    /// a millisecond each on Dask's scheduler.) Threads that would idle get what waits at once.
    fn flush(&mut self) {
        let waiting: usize = self.pending.iter().map(|(_, tasks)| tasks.len()).sum();
        if waiting == 0 {
            return;
        }
        let slots = BATCHES_PER_THREAD * self.threads.max(1);
        let size = (self.in_flight + waiting)
            .div_ceil(slots)
            .clamp(1, MAX_BATCH);
        let mut full = Vec::new();
        for (_, tasks) in &mut self.pending {
            while tasks.len() >= size {
                let rest = tasks.split_off(size);
                full.push(std::mem::replace(tasks, rest));
            }
        }
        for batch in full {
            self.send_batch(batch, false);
        }
        self.pending.retain(|(_, tasks)| !tasks.is_empty());
        let free = slots.saturating_sub(self.batches.len());
        if free > 0 {
            for (_, tasks) in std::mem::take(&mut self.pending) {
                let size = tasks.len().div_ceil(free).max(1);
                let mut tasks = tasks.into_iter().peekable();
                while tasks.peek().is_some() {
                    let batch: Vec<Task> = tasks.by_ref().take(size).collect();
                    self.send_batch(batch, false);
                }
            }
        }
    }

    fn send_batch(&mut self, tasks: Vec<Task>, solo: bool) {
        let id = self.next_batch;
        self.next_batch += 1;
        let first = &tasks[0];
        let program = first.program + self.program_base;
        let timeout_s = tasks.iter().map(|t| t.timeout_s).fold(0.0, f64::max);
        let run = Request::Run {
            program,
            block: first.block,
            tasks: &tasks,
        }
        .encode();
        let mut frame = Vec::with_capacity(1 + 8 + 8 + 4 + 8 * tasks.len() + 8 + run.len());
        frame.push(b'B');
        frame.extend_from_slice(&id.to_le_bytes());
        frame.extend_from_slice(&program.to_le_bytes());
        frame.extend_from_slice(&(tasks.len() as u32).to_le_bytes());
        for task in &tasks {
            frame.extend_from_slice(&task.key.to_le_bytes());
        }
        frame.extend_from_slice(&timeout_s.to_le_bytes());
        frame.extend_from_slice(&run);
        self.send(frame);
        self.in_flight += tasks.len();
        self.batches.insert(id, Batch { tasks, solo });
    }

    async fn bridge_said(&mut self, message: FromBridge) {
        match message {
            FromBridge::Reply(BridgeReply::Ready { threads }) => {
                self.ready = true;
                self.threads = threads.max(1);
                for command in std::mem::take(&mut self.early) {
                    Box::pin(self.command(command)).await;
                }
            }
            FromBridge::Reply(BridgeReply::Threads { threads }) => {
                self.threads = threads.max(1);
                self.flush();
            }
            FromBridge::Reply(BridgeReply::Broken { message }) => self.give_up(message).await,
            FromBridge::Reply(BridgeReply::Loaded { program, errors }) => {
                let errors = errors
                    .into_iter()
                    .map(|e| BlockCompileError {
                        block: e.block,
                        if_index: e.if_index,
                        fan_out_index: e.fan_out,
                        line: e.line,
                        message: e.message,
                    })
                    .collect();
                let program = program.wrapping_sub(self.program_base);
                self.emit(InvokerEvent::Loaded { program, errors }).await;
            }
            FromBridge::Reply(BridgeReply::Refused { program, message }) => {
                let program = program.wrapping_sub(self.program_base);
                self.emit(InvokerEvent::Refused { program, message }).await;
            }
            FromBridge::BatchEnd(end, frames) => self.batch_ended(end, frames).await,
            FromBridge::Gone(reason) => {
                if self.broken.is_none() {
                    let tail = self
                        .stderr
                        .lock()
                        .map(|lines| lines.iter().cloned().collect::<Vec<_>>().join("\n"))
                        .unwrap_or_default();
                    let mut message = format!(
                        "the bridge to the Dask cluster at {} ended{}",
                        self.scheduler,
                        if reason.is_empty() {
                            String::new()
                        } else {
                            format!(" ({reason})")
                        }
                    );
                    if !tail.is_empty() {
                        message.push_str(":\n");
                        message.push_str(&tail);
                    }
                    self.give_up(message).await;
                }
            }
        }
    }

    fn worker_number(&mut self, address: &str) -> (usize, Arc<str>) {
        if let Some(index) = self.workers.iter().position(|w| &**w == address) {
            return (index, Arc::clone(&self.workers[index]));
        }
        let address: Arc<str> = address.into();
        self.workers.push(Arc::clone(&address));
        (self.workers.len() - 1, address)
    }

    async fn batch_ended(&mut self, end: BatchEnd, frames: Vec<Vec<u8>>) {
        let Some(batch) = self.batches.remove(&end.batch) else {
            return;
        };
        self.in_flight -= batch.tasks.len();
        let worker = end.worker.as_deref().map(|w| self.worker_number(w));
        if let Some((index, _)) = &worker
            && !end.output.is_empty()
        {
            self.emit(InvokerEvent::Output {
                worker: *index,
                lines: end.output.clone(),
            })
            .await;
        }
        let mut open: FxHashMap<u64, Task> = batch.tasks.into_iter().map(|t| (t.key, t)).collect();
        let mut results = Vec::with_capacity(open.len());
        for frame in &frames {
            let Ok(Reply::Results(answers)) = crate::runtime::worker::protocol::read_reply(frame)
            else {
                tracing::warn!("the Dask bridge passed on a frame that is not results");
                continue;
            };
            for row in answers.rows {
                if let Some(task) = open.remove(&row.key) {
                    self.cancelled.remove(&task.key);
                    let mut result = task_result(row, answers.start_wall_us, task.attempt);
                    result.worker = worker.as_ref().map(|(_, address)| Arc::clone(address));
                    results.push(result);
                }
            }
        }
        let mut rerun = Vec::new();
        let mut suspects = Vec::new();
        let left: Vec<Task> = open.into_values().collect();
        // Alone in its child (or the only one it left unanswered): if the child died, this one did it.
        let alone = batch.solo || left.len() == 1;
        let ran_on = worker.as_ref().map(|(_, address)| Arc::clone(address));
        for task in left {
            let result = if self.cancelled.remove(&task.key) || end.cancelled {
                cancelled(&task)
            } else if let Some(died) = &end.died {
                let culprit = died.culprit.or_else(|| alone.then_some(task.key));
                if culprit != Some(task.key) {
                    if died.culprit.is_some() {
                        rerun.push(again(task));
                    } else {
                        suspects.push(again(task));
                    }
                    continue;
                }
                match died.kind.as_deref() {
                    Some("stuck") if died.culprit.is_some() => timed_out_hard(
                        &task,
                        "and did not stop when interrupted; its Python process was killed",
                    ),
                    Some("stuck") => timed_out_hard(
                        &task,
                        "without letting its Python process answer (C code holding Python's \
                         interpreter lock, say); Braid killed the process",
                    ),
                    Some("exit") => crashed(
                        &task,
                        &format!(
                            "the code called os._exit({}); its Python process ended",
                            died.code.unwrap_or_default()
                        ),
                    ),
                    _ => {
                        let mut result =
                            crashed(&task, &format!("its Python process died: {}", died.how));
                        if let Outcome::Crashed { error } = &mut result.outcome {
                            error.traceback.clone_from(&died.stderr);
                        }
                        result
                    }
                }
            } else if let Some(error) = &end.error {
                if !alone {
                    suspects.push(again(task));
                    continue;
                }
                crashed(&task, &format!("the Dask task running it failed: {error}"))
            } else {
                crashed(&task, "the Dask task running it ended without its result")
            };
            results.push(TaskResult {
                worker: ran_on.clone(),
                ..result
            });
        }
        if !results.is_empty() {
            self.emit(InvokerEvent::Finished(results)).await;
        }
        if !rerun.is_empty() {
            self.submit(rerun, false);
        }
        if !suspects.is_empty() {
            self.submit(suspects, true);
        }
        // Places on the cluster came free: what waited for them goes.
        self.flush();
    }

    /// The cluster can't be used (unreachable, gone, no Dask): what is in flight fails with why, and
    /// the engine refuses the runs yet to start.
    async fn give_up(&mut self, message: String) {
        tracing::debug!(target: "braid::dask", "{message}");
        self.broken = Some(message.clone());
        self.in_flight = 0;
        let results: Vec<TaskResult> = self
            .batches
            .drain()
            .flat_map(|(_, batch)| batch.tasks)
            .chain(
                std::mem::take(&mut self.pending)
                    .into_iter()
                    .flat_map(|(_, tasks)| tasks),
            )
            .map(|task| crashed(&task, &message))
            .collect();
        self.early.clear();
        self.emit(InvokerEvent::Broken(message)).await;
        if !results.is_empty() {
            self.emit(InvokerEvent::Finished(results)).await;
        }
        self.end_bridge().await;
    }

    async fn end_bridge(&mut self) {
        // Its stdin closing asks it to close its client and end; then it is killed.
        self.frames = None;
        if let Some(mut bridge) = self.bridge.take()
            && tokio::time::timeout(STOP_WITHIN, bridge.wait())
                .await
                .is_err()
        {
            let _ = bridge.kill().await;
        }
    }

    async fn stop(&mut self) {
        self.end_bridge().await;
    }

    async fn emit(&self, event: InvokerEvent) {
        let _ = self.events.send(event).await;
    }
}

/// A task that shared a dead child with the invocation that killed it: it runs again.
fn again(mut task: Task) -> Task {
    task.attempt += 1;
    task
}

/// A frame from the bridge: `D` a batch's end (a JSON header, then its results frames), else JSON.
fn read_bridge_frame(body: &[u8]) -> Result<FromBridge, String> {
    /// The next `u32`-length-prefixed part of `body` after `at`.
    fn part<'a>(body: &'a [u8], at: &mut usize) -> Result<&'a [u8], String> {
        let cut = || "a batch's end cut short".to_owned();
        let header = body.get(*at..*at + 4).ok_or_else(cut)?;
        let length = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
        let part = body.get(*at + 4..*at + 4 + length).ok_or_else(cut)?;
        *at += 4 + length;
        Ok(part)
    }
    if body.first() == Some(&b'D') {
        let mut at = 1;
        let end: BatchEnd =
            serde_json::from_slice(part(body, &mut at)?).map_err(|e| e.to_string())?;
        let mut frames = Vec::new();
        while at < body.len() {
            frames.push(part(body, &mut at)?.to_vec());
        }
        return Ok(FromBridge::BatchEnd(end, frames));
    }
    serde_json::from_slice(body)
        .map(FromBridge::Reply)
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::Executor;

    fn task(key: u64) -> Task {
        Task {
            key,
            attempt: 1,
            program: 1,
            block: 0,
            timeout_s: 60.0,
            input_json: "1".into(),
            backpack_json: Arc::from("{}"),
        }
    }

    /// The batches sent to the bridge since last asked: (batch id, invocations).
    fn sent(frames: &mut mpsc::UnboundedReceiver<Vec<u8>>) -> Vec<(u64, usize)> {
        let mut batches = Vec::new();
        while let Ok(frame) = frames.try_recv() {
            if frame.first() == Some(&b'B') {
                let id = u64::from_le_bytes(frame[1..9].try_into().unwrap());
                let count = u32::from_le_bytes(frame[17..21].try_into().unwrap());
                batches.push((id, count as usize));
            }
        }
        batches
    }

    /// A 10,000-item fan-out at limit 1,000 on a cluster of two threads, driven as the engine drives
    /// it: each batch's end frees its places under the limit, and the next submit fills them. Every
    /// batch holds half of what is outstanding (500), from the first wave to the last: 20 Dask tasks. Cutting each submit over the threads by itself halved them round after round, down to
    /// one invocation per Dask task.
    #[tokio::test]
    async fn batches_stay_large_through_a_long_fan_out() {
        let (tx, mut events) = mpsc::channel(1 << 16);
        let mut actor = Actor::new(
            "tcp://127.0.0.1:1".to_owned(),
            InvokerEvents::new(Executor::Local, tx),
        );
        let (frames_tx, mut frames) = mpsc::unbounded_channel();
        actor.frames = Some(frames_tx);
        actor.ready = true;
        actor.threads = 2;
        let (total, limit) = (10_000_u64, 1_000_u64);
        actor.submit((0..limit).map(task).collect(), false);
        let mut next = limit;
        let mut in_flight: VecDeque<(u64, usize)> = sent(&mut frames).into();
        let mut sizes = Vec::new();
        while let Some((batch, count)) = in_flight.pop_front() {
            sizes.push(count);
            let end = BatchEnd {
                batch,
                ..BatchEnd::default()
            };
            actor.batch_ended(end, Vec::new()).await;
            while events.try_recv().is_ok() {}
            let more = (total - next).min(count as u64);
            if more > 0 {
                actor.submit((next..next + more).map(task).collect(), false);
                next += more;
            }
            in_flight.extend(sent(&mut frames));
        }
        assert_eq!(sizes, [500; 20]);
    }
}
