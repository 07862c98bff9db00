//! The parent side of the Python workers: a pool of `braid __worker` processes, each embedding Python.
//! User code never runs in the Braid process itself, so a crash, `os._exit` or a runaway loop costs one
//! worker, never the editor. Workers are restarted when they die; invocations that were merely sharing
//! the dead worker run again (attempt + 1).

use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt::Write as _;
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustc_hash::FxHashMap;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

use crate::run::ErrorInfo;
use crate::runtime::invoker::{
    BlockCompileError, InvokerCommand, InvokerEvent, InvokerEvents, InvokerHandle, Outcome, Task,
    TaskResult,
};

use super::protocol::{
    EXIT_PIPES_CLOSED, ItemLists, Reply, Request, ResultRow, Status, read_reply,
};

/// Invocations sent to one worker in one frame, at most.
const BATCH: usize = 256;
/// A worker whose invocations ran this far past their timeout without a word from it is killed.
const SILENCE_LIMIT: Duration = Duration::from_secs(5);
/// Kept from a worker's stderr, to explain a crash.
const STDERR_LINES: usize = 40;
/// How long a worker's stderr is still read after its stdout ended, for the last words of a crash.
const STDERR_AFTER_EXIT: Duration = Duration::from_millis(500);
/// Deaths in a row with nothing done before the pool gives up (a broken Python install).
const MAX_FUTILE_STARTS: u32 = 3;
/// How long a worker whose output ended gets to finish dying before it is ended: a crash closes the
/// pipe a moment before the process is gone, and its exit status, not our kill, says what happened.
/// One still running by then closed its pipe itself (a block closing every file descriptor).
const EXIT_GRACE: Duration = Duration::from_millis(250);
/// The size asked for a worker's pipes (Linux allows up to 1 MiB without privileges).
const PIPE_SIZE: usize = 1 << 20;

#[derive(Clone, Debug)]
pub struct PoolConfig {
    /// The `braid` binary (started as `braid __worker`).
    pub worker_exe: PathBuf,
    pub workers: usize,
    /// Extra environment for the workers (for example `PYTHONPATH` for a project's libraries).
    pub env: Vec<(String, String)>,
}

impl PoolConfig {
    /// One worker per core, started from the running executable.
    pub fn from_current_exe() -> std::io::Result<Self> {
        Ok(Self {
            worker_exe: std::env::current_exe()?,
            workers: std::thread::available_parallelism().map_or(2, std::num::NonZero::get),
            env: Vec::new(),
        })
    }
}

/// Starts the pool's task on the current tokio runtime; the handle is what the engine holds. Stopping
/// ends the workers and waits until they are gone, their module folders removed: a process that exits
/// right after (as `braid run` does) would otherwise leave that to nobody.
pub fn start(config: PoolConfig, events: InvokerEvents) -> InvokerHandle {
    let (handle, rx) = InvokerHandle::new(Duration::from_secs(2));
    tokio::spawn(PoolActor::new(config, events).run(rx));
    handle
}

/// A result row as the invoker reports it. `start_wall_us`: the worker's start (its rows' times count
/// from it); `attempt`: the task's, which the worker does not echo.
pub(crate) fn task_result(row: ResultRow, start_wall_us: u64, attempt: u32) -> TaskResult {
    let outcome = match (row.status, row.error) {
        (Status::Returned, _) => Outcome::Returned {
            output: row.value,
            backpack: row.backpack,
            ifs: row.ifs,
            items: row
                .items
                .into_iter()
                .map(|ItemLists(names)| names)
                .collect(),
        },
        (Status::TimedOut, Some(error)) => Outcome::TimedOut { error },
        (Status::Cancelled, _) => Outcome::Cancelled,
        (Status::Raised | Status::TimedOut, error) => Outcome::Raised {
            error: error.unwrap_or_else(|| ErrorInfo {
                kind: "Error".to_owned(),
                message: "the invocation failed".to_owned(),
                traceback: String::new(),
                line: None,
            }),
            backpack: row.backpack.filter(|b| !b.is_null()),
        },
    };
    let started = (start_wall_us as f64 + row.t0_ns as f64 / 1000.0) / 1000.0;
    TaskResult {
        key: row.key,
        attempt,
        started_at_ms: Some(started),
        ended_at_ms: Some(started + row.duration_ns as f64 / 1e6),
        stdout: row.stdout,
        stderr: row.stderr,
        outcome,
        worker: None,
    }
}

enum FromWorker {
    /// A reply, read on the reader task (so that decoding runs beside the scheduler).
    Reply(Reply),
    /// Complete lines from the worker's stderr, ahead of the frames it sent after writing them.
    Output(Vec<String>),
    /// The worker's stdout closed or spoke garbage: it is gone (or must go).
    Gone(String),
}

struct InFlight {
    task: Task,
    sent: Instant,
}

struct Worker {
    generation: u64,
    child: Child,
    frames: mpsc::UnboundedSender<Vec<u8>>,
    in_flight: FxHashMap<u64, InFlight>,
    stderr: Arc<Mutex<VecDeque<String>>>,
    /// Running a suspect alone: no other task goes to this worker meanwhile.
    solo: bool,
    last_heard: Instant,
    exiting: Option<(u64, i64)>,
    /// The invocation the worker said ignored its timeout's interrupt: it is being ended for it.
    stuck: Option<u64>,
    /// Ended for saying nothing, long past an invocation's timeout: which one held it up, it can't tell.
    silent: bool,
    useful: bool,
}

impl Worker {
    /// Being ended: no more tasks for it.
    fn ending(&self) -> bool {
        self.stuck.is_some() || self.silent
    }
}

struct PoolActor {
    config: PoolConfig,
    events: InvokerEvents,
    workers: Vec<Option<Worker>>,
    next_generation: u64,
    programs: HashMap<u64, Vec<u8>>,
    loaded_reported: HashSet<u64>,
    /// Tasks that shared a worker with a crash whose cause is unknown: each runs alone to find it.
    suspects: VecDeque<Task>,
    waiting: VecDeque<Task>,
    cancelled: HashSet<u64>,
    from_workers_tx: mpsc::UnboundedSender<(usize, u64, FromWorker)>,
    from_workers: mpsc::UnboundedReceiver<(usize, u64, FromWorker)>,
    futile_starts: u32,
    /// Why the pool gave up on Python: runs until the next program's load (which tries again) fail with it.
    broken: Option<String>,
    /// The library environment the workers were last given.
    site_packages: Option<String>,
}

impl PoolActor {
    fn new(config: PoolConfig, events: InvokerEvents) -> Self {
        let (from_workers_tx, from_workers) = mpsc::unbounded_channel();
        let workers = (0..config.workers.max(1)).map(|_| None).collect();
        Self {
            config,
            events,
            workers,
            next_generation: 0,
            programs: HashMap::new(),
            loaded_reported: HashSet::new(),
            suspects: VecDeque::new(),
            waiting: VecDeque::new(),
            cancelled: HashSet::new(),
            from_workers_tx,
            from_workers,
            futile_starts: 0,
            broken: None,
            site_packages: None,
        }
    }

    async fn run(mut self, mut commands: mpsc::UnboundedReceiver<InvokerCommand>) {
        for index in 0..self.workers.len() {
            self.spawn(index).await;
        }
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                command = commands.recv() => {
                    let Some(command) = command else { break };
                    if let InvokerCommand::Stop(done) = command {
                        self.end_workers();
                        let _ = done.send(());
                        return;
                    }
                    self.command(command).await;
                }
                Some((index, generation, message)) = self.from_workers.recv() => {
                    self.on_worker_message(index, generation, message).await;
                }
                _ = tick.tick() => self.watchdog(),
            }
            self.dispatch();
        }
        self.end_workers();
    }

    async fn command(&mut self, command: InvokerCommand) {
        match command {
            InvokerCommand::Load(program) => {
                if self.broken.take().is_some() {
                    // Given up on Python before: try again for this program, with fresh workers.
                    self.futile_starts = 0;
                    for index in 0..self.workers.len() {
                        if self.workers[index].is_none() {
                            self.spawn(index).await;
                        }
                    }
                }
                if !program.compile_only && program.site_packages != self.site_packages {
                    // Another project's libraries: modules imported from the old environment must
                    // not linger, so idle workers start afresh (busy ones finish their work first).
                    self.site_packages.clone_from(&program.site_packages);
                    let idle: Vec<usize> = (0..self.workers.len())
                        .filter(|&i| {
                            self.workers[i]
                                .as_ref()
                                .is_some_and(|w| w.in_flight.is_empty() && w.useful)
                        })
                        .collect();
                    for index in idle {
                        if let Some(mut old) = self.workers[index].take() {
                            end_worker(&mut old.child);
                        }
                        self.spawn(index).await;
                    }
                }
                let frame = Request::Load(&program).encode();
                for worker in self.workers.iter().flatten() {
                    let _ = worker.frames.send(frame.clone());
                }
                self.programs.insert(program.id, frame);
                // No worker could be started at all (the executable is gone).
                if let Some(message) = &self.broken {
                    self.emit(InvokerEvent::Broken(message.clone())).await;
                }
            }
            InvokerCommand::Unload(program) => {
                self.programs.remove(&program);
                self.loaded_reported.remove(&program);
                let frame = Request::Unload { program }.encode();
                for worker in self.workers.iter().flatten() {
                    let _ = worker.frames.send(frame.clone());
                }
            }
            InvokerCommand::Submit(tasks) => {
                if let Some(message) = self.broken.clone() {
                    let results = tasks
                        .into_iter()
                        .map(|task| crashed(&task, &message))
                        .collect();
                    self.emit(InvokerEvent::Finished(results)).await;
                } else {
                    self.waiting.extend(tasks);
                }
            }
            InvokerCommand::Cancel(keys) => self.cancel(keys).await,
            // Taken by the loop in `run`.
            InvokerCommand::Stop(_) => {}
        }
    }

    /// Ends every worker: dropping one ends it (see `Drop for Worker`).
    fn end_workers(&mut self) {
        self.workers.iter_mut().for_each(|w| *w = None);
    }

    async fn cancel(&mut self, keys: Vec<u64>) {
        let keys: HashSet<u64> = keys.into_iter().collect();
        let mut results = Vec::new();
        for queue in [&mut self.waiting, &mut self.suspects] {
            queue.retain(|task| {
                if keys.contains(&task.key) {
                    results.push(cancelled(task));
                    false
                } else {
                    true
                }
            });
        }
        for worker in self.workers.iter().flatten() {
            let mine: Vec<u64> = keys
                .iter()
                .copied()
                .filter(|key| worker.in_flight.contains_key(key))
                .collect();
            if !mine.is_empty() {
                let _ = worker.frames.send(Request::Cancel { keys: &mine }.encode());
            }
        }
        self.cancelled.extend(keys);
        if !results.is_empty() {
            self.emit(InvokerEvent::Finished(results)).await;
        }
    }

    async fn emit(&self, event: InvokerEvent) {
        let _ = self.events.send(event).await;
    }

    async fn spawn(&mut self, index: usize) {
        self.next_generation += 1;
        let generation = self.next_generation;
        let mut command = Command::new(&self.config.worker_exe);
        command
            .arg("__worker")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        // A process group of its own: Ctrl+C in the terminal reaches Braid, which stops the run and
        // its invocations itself; workers killed by it would take their invocations' results along.
        #[cfg(unix)]
        command.process_group(0);
        for (key, value) in &self.config.env {
            command.env(key, value);
        }
        let mut child = match command.spawn() {
            Ok(child) => child,
            Err(error) => {
                self.give_up(format!(
                    "could not start the Python worker {}: {error}",
                    self.config.worker_exe.display()
                ))
                .await;
                return;
            }
        };
        let (Some(mut stdin), Some(stdout), Some(stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            self.give_up("the Python worker's pipes could not be opened".to_owned())
                .await;
            return;
        };
        // Frames are often megabytes each way (a batch of inputs, a fan-out's return value and its
        // items' names): a pipe of 1 MiB, where the system allows one, passes such a frame in a few
        // writes instead of one per 64 KiB, each waiting for the other side to wake.
        for pipe in [stdin.as_fd(), stdout.as_fd()] {
            let _ = rustix::pipe::fcntl_setpipe_size(pipe, PIPE_SIZE);
        }
        let (frames, mut frames_rx) = mpsc::unbounded_channel::<Vec<u8>>();
        tokio::spawn(async move {
            while let Some(frame) = frames_rx.recv().await {
                let Ok(len) = u32::try_from(frame.len()) else {
                    continue;
                };
                if stdin.write_all(&len.to_le_bytes()).await.is_err()
                    || stdin.write_all(&frame).await.is_err()
                {
                    break;
                }
            }
        });
        let tx = self.from_workers_tx.clone();
        let lines = Arc::new(Mutex::new(VecDeque::new()));
        let mut stderr = WorkerStderr {
            pipe: stderr,
            partial: Vec::new(),
            tail: Arc::clone(&lines),
        };
        // One task reads both of the worker's outputs, so that what it wrote to stderr before sending
        // a frame is passed on before that frame: output a block's C code wrote then reaches its run
        // before the run can end.
        tokio::spawn(async move {
            let send = |message| tx.send((index, generation, message)).is_ok();
            let mut next = Box::pin(read_frame(BufReader::with_capacity(1 << 16, stdout)));
            let mut stderr_open = true;
            let reason = loop {
                tokio::select! {
                    (reader, body) = &mut next => {
                        let earlier = stderr.read_now();
                        if !earlier.is_empty() && !send(FromWorker::Output(earlier)) {
                            return;
                        }
                        let Some(body) = body else {
                            break String::new();
                        };
                        match read_reply(&body) {
                            Ok(reply) => {
                                if !send(FromWorker::Reply(reply)) {
                                    return;
                                }
                            }
                            Err(error) => {
                                break format!("the worker sent a malformed reply ({error})");
                            }
                        }
                        next = Box::pin(read_frame(reader));
                    }
                    more = stderr.read_some(), if stderr_open => match more {
                        Some(more) => {
                            if !more.is_empty() && !send(FromWorker::Output(more)) {
                                return;
                            }
                        }
                        None => stderr_open = false,
                    },
                }
            };
            // A worker that died wrote its last words (a segfault's traceback) to stderr as it went:
            // they explain the crash, so they are read before it is reported.
            let last = tokio::time::timeout(STDERR_AFTER_EXIT, async {
                let mut last = Vec::new();
                while stderr_open && let Some(more) = stderr.read_some().await {
                    last.extend(more);
                }
                last
            })
            .await
            .unwrap_or_default();
            if !last.is_empty() {
                send(FromWorker::Output(last));
            }
            send(FromWorker::Gone(reason));
        });
        for frame in self.programs.values() {
            let _ = frames.send(frame.clone());
        }
        self.workers[index] = Some(Worker {
            generation,
            child,
            frames,
            in_flight: FxHashMap::default(),
            stderr: lines,
            solo: false,
            last_heard: Instant::now(),
            exiting: None,
            stuck: None,
            silent: false,
            useful: false,
        });
    }

    async fn give_up(&mut self, message: String) {
        // Reported through the Broken event (the run is refused with it), so only a debug trace here.
        tracing::debug!("{message}");
        self.broken = Some(message.clone());
        let mut results: Vec<TaskResult> = Vec::new();
        for task in self.waiting.drain(..).chain(self.suspects.drain(..)) {
            results.push(crashed(&task, &message));
        }
        for worker in self.workers.iter_mut().flatten() {
            for (_, flight) in worker.in_flight.drain() {
                results.push(crashed(&flight.task, &message));
            }
        }
        self.emit(InvokerEvent::Broken(message)).await;
        if !results.is_empty() {
            self.emit(InvokerEvent::Finished(results)).await;
        }
    }

    async fn on_worker_message(&mut self, index: usize, generation: u64, message: FromWorker) {
        let Some(worker) = self.workers[index].as_mut() else {
            return;
        };
        if worker.generation != generation {
            return;
        }
        // Stderr alone is no sign of life: C code stuck holding the interpreter may go on printing.
        if !matches!(message, FromWorker::Output(_)) {
            worker.last_heard = Instant::now();
        }
        match message {
            FromWorker::Reply(Reply::Results(results)) => {
                worker.useful = true;
                self.futile_starts = 0;
                let mut finished = Vec::with_capacity(results.rows.len());
                for row in results.rows {
                    if let Some(flight) = worker.in_flight.remove(&row.key) {
                        if !self.cancelled.is_empty() {
                            self.cancelled.remove(&row.key);
                        }
                        finished.push(task_result(row, results.start_wall_us, flight.task.attempt));
                    }
                }
                if worker.in_flight.is_empty() {
                    worker.solo = false;
                }
                self.emit(InvokerEvent::Finished(finished)).await;
            }
            FromWorker::Reply(Reply::Loaded { program, errors }) => {
                worker.useful = true;
                self.futile_starts = 0;
                if self.programs.contains_key(&program) && self.loaded_reported.insert(program) {
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
                    self.emit(InvokerEvent::Loaded { program, errors }).await;
                }
            }
            FromWorker::Reply(Reply::Exiting { key, code }) => worker.exiting = Some((key, code)),
            FromWorker::Reply(Reply::Stuck { key }) => {
                worker.stuck = Some(key);
                end_worker(&mut worker.child);
            }
            // Alive: noted above.
            FromWorker::Reply(Reply::Beat) => {}
            FromWorker::Output(lines) => {
                self.emit(InvokerEvent::Output {
                    worker: index,
                    lines,
                })
                .await;
            }
            FromWorker::Gone(reason) => self.worker_died(index, &reason).await,
        }
    }

    async fn worker_died(&mut self, index: usize, reason: &str) {
        let Some(mut worker) = self.workers[index].take() else {
            return;
        };
        // Its output ended on its own (not a kill of ours, not a malformed reply): let it finish exiting.
        let ended_here = reason.is_empty()
            && !worker.ending()
            && !exited_within(&worker.child, EXIT_GRACE).await;
        end_worker(&mut worker.child);
        let status = tokio::time::timeout(Duration::from_secs(5), worker.child.wait())
            .await
            .ok()
            .and_then(Result::ok);
        // Either way, what ran there closed the worker's pipes: whether the worker noticed first
        // (and exited saying so) or Braid did is a matter of timing.
        let pipes_closed = ended_here
            || (reason.is_empty() && status.and_then(|s| s.code()) == Some(EXIT_PIPES_CLOSED));
        let stderr_tail = worker
            .stderr
            .lock()
            .map(|lines| lines.iter().cloned().collect::<Vec<_>>().join("\n"))
            .unwrap_or_default();
        let how = describe_exit(status, reason);
        let mut results = Vec::new();
        let mut rerun = Vec::new();
        let flights: Vec<InFlight> = worker.in_flight.drain().map(|(_, f)| f).collect();
        // A silent worker names no culprit: like a crash, unless one invocation ran there alone.
        let culprit = worker
            .stuck
            .or(worker.exiting.as_ref().map(|(key, _)| *key))
            .or_else(|| {
                (flights.len() == 1 || worker.solo)
                    .then(|| flights.first().map(|f| f.task.key))
                    .flatten()
            });
        for flight in flights {
            let task = flight.task;
            if self.cancelled.remove(&task.key) {
                results.push(cancelled(&task));
            } else if Some(task.key) == culprit {
                let result = if worker.stuck == Some(task.key) {
                    timed_out_hard(
                        &task,
                        "and did not stop when interrupted; its Python process was killed",
                    )
                } else if worker.silent {
                    timed_out_hard(
                        &task,
                        "without letting its Python process answer (C code holding Python's \
                         interpreter lock, say, such as a runaway regular expression); Braid killed \
                         the process",
                    )
                } else {
                    let message = match &worker.exiting {
                        Some((key, code)) if *key == task.key => {
                            format!("the code called os._exit({code}); its Python process ended")
                        }
                        _ if pipes_closed => format!(
                            "its Python process closed its pipe to Braid (a block closing file \
                             descriptors, such as os.closerange, does this) and {}",
                            if ended_here {
                                "went on running; Braid ended it"
                            } else {
                                "could not go on"
                            }
                        ),
                        _ => format!("its Python process died: {how}"),
                    };
                    let mut result = crashed(&task, &message);
                    if let Outcome::Crashed { error } = &mut result.outcome {
                        error.traceback.clone_from(&stderr_tail);
                    }
                    result
                };
                results.push(result);
            } else {
                let mut task = task;
                task.attempt += 1;
                rerun.push(task);
            }
        }
        if culprit.is_none() && !rerun.is_empty() {
            // Several ran together and any of them may have killed the process: run each alone.
            self.suspects.extend(rerun);
        } else {
            // Those that merely shared the process go first, ahead of new work.
            for task in rerun.into_iter().rev() {
                self.waiting.push_front(task);
            }
        }
        if !worker.useful {
            self.futile_starts += 1;
        }
        if !results.is_empty() {
            self.emit(InvokerEvent::Finished(results)).await;
        }
        if self.broken.is_some() {
            // Given up already: a worker started before that is not replaced, and its death does not
            // give up again (that would refuse the run that is trying Python afresh).
            return;
        }
        if self.futile_starts >= MAX_FUTILE_STARTS {
            let mut message = format!("the Python worker keeps dying at start ({how})");
            if !stderr_tail.is_empty() {
                message.push_str(":\n");
                message.push_str(&stderr_tail);
            }
            self.give_up(message).await;
            return;
        }
        self.spawn(index).await;
    }

    /// Kills a worker that stays silent while an invocation of its is long past its timeout: Python could
    /// not even run the worker's own monitor (a C call holding the interpreter, a block that broke the
    /// worker's replies). Which invocation did it can't be told (a frame's invocations were all sent
    /// at once, and the worker can't say), so none is blamed: its death is a crash with no known
    /// culprit, whose invocations each run again alone ([`Self::worker_died`]), where the one that
    /// does it again is the culprit.
    fn watchdog(&mut self) {
        let now = Instant::now();
        for worker in self.workers.iter_mut().flatten() {
            if worker.ending() || now.duration_since(worker.last_heard) < SILENCE_LIMIT {
                continue;
            }
            let overdue = worker
                .in_flight
                .values()
                .any(|f| now.duration_since(f.sent) > silent_past_timeout(f.task.timeout_s));
            if overdue {
                worker.silent = true;
                end_worker(&mut worker.child);
            }
        }
    }

    fn dispatch(&mut self) {
        // Suspects first, each alone on an idle worker.
        while !self.suspects.is_empty() {
            let Some(worker) = self
                .workers
                .iter_mut()
                .flatten()
                .find(|w| w.in_flight.is_empty() && !w.ending())
            else {
                break;
            };
            let Some(task) = self.suspects.pop_front() else {
                break;
            };
            worker.solo = true;
            send_tasks(worker, vec![task]);
        }
        let eligible = self
            .workers
            .iter()
            .flatten()
            .filter(|w| !w.solo && !w.ending())
            .count();
        // Spread what waits over the workers (a CPU-bound fan-out of 4 must use both cores), in
        // frames of at most BATCH so that results stream back while the rest runs.
        let share = self.waiting.len().div_ceil(eligible.max(1)).clamp(1, BATCH);
        while !self.waiting.is_empty() {
            let Some(worker) = self
                .workers
                .iter_mut()
                .flatten()
                .filter(|w| !w.solo && !w.ending())
                .min_by_key(|w| w.in_flight.len())
            else {
                break;
            };
            let n = self.waiting.len().min(share);
            let batch: Vec<Task> = self.waiting.drain(..n).collect();
            send_tasks(worker, batch);
        }
    }
}

fn send_tasks(worker: &mut Worker, tasks: Vec<Task>) {
    // One request per (program, block), columns rather than rows: cheaper for the worker to decode.
    let mut groups: Vec<((u64, u32), Vec<Task>)> = Vec::new();
    for task in tasks {
        let group = (task.program, task.block);
        match groups.iter_mut().find(|(g, _)| *g == group) {
            Some((_, members)) => members.push(task),
            None => groups.push((group, vec![task])),
        }
    }
    let now = Instant::now();
    for ((program, block), tasks) in groups {
        let frame = Request::Run {
            program,
            block,
            tasks: &tasks,
        }
        .encode();
        let _ = worker.frames.send(frame);
        for task in tasks {
            worker
                .in_flight
                .insert(task.key, InFlight { task, sent: now });
        }
    }
}

impl Drop for Worker {
    /// However the pool ends (its task dropped with the runtime, as `braid run` exits), no worker or
    /// process a block started is left behind.
    fn drop(&mut self) {
        end_worker(&mut self.child);
    }
}

/// How long after it was sent a silent worker's task counts as stuck. Total: a project may set an
/// absurd timeout (any u64 of seconds), which `Duration::from_secs_f64` would panic on.
fn silent_past_timeout(timeout_s: f64) -> Duration {
    Duration::try_from_secs_f64(timeout_s)
        .unwrap_or(Duration::MAX)
        .saturating_add(SILENCE_LIMIT)
}

/// Reads a worker's next frame (its length, then its body); `None` once the worker's stdout has ended.
async fn read_frame<R: tokio::io::AsyncRead + Unpin>(mut reader: R) -> (R, Option<Vec<u8>>) {
    let mut header = [0_u8; 4];
    if reader.read_exact(&mut header).await.is_err() {
        return (reader, None);
    }
    let mut body = vec![0_u8; u32::from_le_bytes(header) as usize];
    if reader.read_exact(&mut body).await.is_err() {
        return (reader, None);
    }
    (reader, Some(body))
}

/// A worker's stderr, read as lines: each is logged (`braid::worker`), kept in the tail that explains
/// a crash, and handed on as the run's worker output.
struct WorkerStderr {
    pipe: tokio::process::ChildStderr,
    /// The start of a line not ended yet.
    partial: Vec<u8>,
    tail: Arc<Mutex<VecDeque<String>>>,
}

impl WorkerStderr {
    /// Waits for more; the lines it completes (none if it ended no line), or `None` once the pipe has
    /// closed (with the last, unended line given before).
    async fn read_some(&mut self) -> Option<Vec<String>> {
        let mut buf = [0_u8; 8192];
        match self.pipe.read(&mut buf).await {
            Ok(n) if n > 0 => Some(self.lines(&buf[..n])),
            _ if self.partial.is_empty() => None,
            _ => {
                self.partial.push(b'\n');
                Some(self.lines(&[]))
            }
        }
    }

    /// What is in the pipe now, without waiting: written before anything read from stdout after it.
    fn read_now(&mut self) -> Vec<String> {
        let mut lines = Vec::new();
        let mut buf = [0_u8; 8192];
        // The pipe is non-blocking (tokio made it so): this stops at "would block".
        while let Ok(n) = rustix::io::read(&self.pipe, &mut buf) {
            if n == 0 {
                break;
            }
            lines.extend(self.lines(&buf[..n]));
        }
        lines
    }

    fn lines(&mut self, bytes: &[u8]) -> Vec<String> {
        let lines = split_lines(&mut self.partial, bytes);
        for line in &lines {
            tracing::debug!(target: "braid::worker", "{line}");
            if let Ok(mut tail) = self.tail.lock() {
                if tail.len() == STDERR_LINES {
                    tail.pop_front();
                }
                tail.push_back(line.clone());
            }
        }
        lines
    }
}

/// The most of one line of a worker's stderr that is kept: a longer one is cut there, so that C code
/// writing without newlines can't grow Braid's memory.
const LINE_LIMIT: usize = 16 * 1024;

/// Adds `bytes` to the unended line in `partial` and takes out the lines that are complete.
fn split_lines(partial: &mut Vec<u8>, bytes: &[u8]) -> Vec<String> {
    partial.extend_from_slice(bytes);
    let mut lines = Vec::new();
    let mut start = 0;
    while let Some(end) = partial[start..].iter().position(|&b| b == b'\n') {
        lines.push(as_shown(&partial[start..start + end]));
        start += end + 1;
    }
    partial.drain(..start);
    // A progress bar redrawn with carriage returns: only its latest state can still show. (A final
    // one may be the start of a CRLF.)
    if let Some(cr) = partial[..partial.len().saturating_sub(1)]
        .iter()
        .rposition(|&b| b == b'\r')
    {
        partial.drain(..=cr);
    }
    if partial.len() > LINE_LIMIT {
        lines.push(as_shown(&partial[..LINE_LIMIT]));
        partial.clear();
    }
    lines
}

/// A line as a terminal shows it: what follows its last carriage return, as UTF-8 (U+FFFD for what
/// isn't).
fn as_shown(line: &[u8]) -> String {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let line = line
        .iter()
        .rposition(|&b| b == b'\r')
        .map_or(line, |cr| &line[cr + 1..]);
    String::from_utf8_lossy(line).into_owned()
}

/// Ends a worker and everything its invocations started: its process group (it leads one of its own),
/// so a subprocess a block left running, or one a timed-out invocation was stuck waiting for, does not
/// outlive it. Called before the worker is reaped, while its pid (the group's id) can't be reused.
fn end_worker(child: &mut Child) {
    #[cfg(unix)]
    if let Some(group) = child
        .id()
        .and_then(|id| rustix::process::Pid::from_raw(id.cast_signed()))
    {
        let _ = rustix::process::kill_process_group(group, rustix::process::Signal::KILL);
        let pid = group.as_raw_pid().cast_unsigned();
        if !remove_modules_dir(pid) {
            // No folder yet: the worker may still be starting, and make it after this look. Looked for
            // again once it is gone (a killed process is gone within a millisecond or so; this waits
            // 100 ms at most).
            for _ in 0..100 {
                if has_exited(group) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            remove_modules_dir(pid);
        }
    }
    let _ = child.start_kill();
}

/// Whether the child `pid` has exited, leaving it unreaped (or can't be waited for: already reaped).
fn has_exited(pid: rustix::process::Pid) -> bool {
    use rustix::process::{WaitId, WaitIdOptions, waitid};
    !matches!(
        waitid(
            WaitId::Pid(pid),
            WaitIdOptions::EXITED | WaitIdOptions::NOHANG | WaitIdOptions::NOWAIT,
        ),
        Ok(None)
    )
}

/// Removes the folder of block modules a worker keeps (`isolation.py`'s `start_modules_dir`), which a killed
/// worker can't: otherwise every `braid run` would leave its workers' folders in the temp folder.
/// Best effort: the next worker to start removes what is left of workers that are gone. Returns whether
/// there was one.
fn remove_modules_dir(pid: u32) -> bool {
    let base = std::env::var_os("TMPDIR")
        .filter(|dir| !dir.is_empty())
        .map_or_else(
            || std::path::PathBuf::from("/tmp"),
            std::path::PathBuf::from,
        );
    let prefix = format!("braid-blocks-{pid}-");
    let Ok(entries) = std::fs::read_dir(&base) else {
        return false;
    };
    let mut found = false;
    for entry in entries.flatten() {
        if entry
            .file_name()
            .to_str()
            .is_some_and(|name| name.starts_with(&prefix))
        {
            found = true;
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
    found
}

/// Whether `child` has exited within `grace`, leaving it unreaped: its pid, and with it the id of its
/// process group, stays its own until [`end_worker`] has ended the group.
async fn exited_within(child: &Child, grace: Duration) -> bool {
    let Some(pid) = child
        .id()
        .and_then(|id| rustix::process::Pid::from_raw(id.cast_signed()))
    else {
        return true;
    };
    let deadline = Instant::now() + grace;
    loop {
        if has_exited(pid) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn describe_exit(status: Option<ExitStatus>, reason: &str) -> String {
    use std::os::unix::process::ExitStatusExt as _;
    let mut text = match status {
        Some(status) => match (status.code(), status.signal()) {
            (Some(code), _) => format!("exited with code {code}"),
            (None, Some(signal)) => format!("killed by signal {signal} ({})", signal_name(signal)),
            _ => "ended".to_owned(),
        },
        None => "stopped answering".to_owned(),
    };
    if !reason.is_empty() {
        let _ = write!(text, "; {reason}");
    }
    text
}

fn signal_name(signal: i32) -> &'static str {
    match signal {
        4 => "SIGILL, an illegal instruction",
        6 => "SIGABRT, aborted",
        7 => "SIGBUS, a bus error",
        8 => "SIGFPE",
        9 => "SIGKILL, perhaps out of memory",
        11 => "SIGSEGV, a segmentation fault",
        15 => "SIGTERM",
        _ => "a signal",
    }
}

pub(crate) fn failed_result(task: &Task, outcome: Outcome) -> TaskResult {
    TaskResult {
        key: task.key,
        attempt: task.attempt,
        started_at_ms: None,
        ended_at_ms: Some(crate::run::now_ms()),
        stdout: String::new(),
        stderr: String::new(),
        outcome,
        worker: None,
    }
}

pub(crate) fn crashed(task: &Task, message: &str) -> TaskResult {
    failed_result(
        task,
        Outcome::Crashed {
            error: ErrorInfo {
                kind: "WorkerCrash".to_owned(),
                message: message.to_owned(),
                traceback: String::new(),
                line: None,
            },
        },
    )
}

/// A timed-out invocation that Python could not stop: Braid killed its worker.
pub(crate) fn timed_out_hard(task: &Task, how: &str) -> TaskResult {
    failed_result(
        task,
        Outcome::TimedOut {
            error: ErrorInfo {
                kind: "Timeout".to_owned(),
                message: format!("ran past its timeout of {} s {how}", task.timeout_s),
                traceback: String::new(),
                line: None,
            },
        },
    )
}

pub(crate) fn cancelled(task: &Task) -> TaskResult {
    failed_result(task, Outcome::Cancelled)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A worker's stderr as lines: pieces joined, CRLF and a progress bar's redraws shown as a terminal
    /// would, text that isn't UTF-8 replaced, and a line without end cut rather than kept growing.
    #[test]
    fn worker_stderr_splits_into_lines_as_a_terminal_shows_them() {
        let mut partial = Vec::new();
        assert_eq!(split_lines(&mut partial, b"one\ntw"), ["one"]);
        assert_eq!(split_lines(&mut partial, b"o\r"), Vec::<String>::new());
        assert_eq!(
            split_lines(&mut partial, b"\nthree \xff\n"),
            ["two", "three \u{fffd}"]
        );
        assert_eq!(
            split_lines(&mut partial, b" 10%\r 50%\r 90%"),
            Vec::<String>::new()
        );
        assert_eq!(partial, b" 90%", "only the latest redraw is kept");
        assert_eq!(split_lines(&mut partial, b"\r100%\n"), ["100%"]);
        let long = vec![b'x'; LINE_LIMIT + 10];
        let lines = split_lines(&mut partial, &long);
        assert_eq!(lines.len(), 1);
        assert_eq!(lines[0].len(), LINE_LIMIT);
        assert!(partial.is_empty());
    }

    #[test]
    fn any_timeout_a_project_can_hold_has_a_stuck_limit() {
        assert_eq!(silent_past_timeout(2.0), Duration::from_secs(7));
        assert_eq!(silent_past_timeout(u64::MAX as f64), Duration::MAX);
        assert_eq!(silent_past_timeout(f64::NAN), Duration::MAX);
    }
}
