//! The parent side of the Python workers: a pool of `braid __worker` processes, each embedding Python.
//! User code never runs in the Braid process itself, so a crash, `os._exit` or a runaway loop costs one
//! worker, never the editor. Workers are restarted when they die; invocations that were merely sharing
//! the dead worker run again (attempt + 1).

use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustc_hash::FxHashMap;
use serde::Deserialize;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

use crate::run::ErrorInfo;
use crate::runtime::invoker::{
    BlockCompileError, Invoker, InvokerEvent, Outcome, Program, Task, TaskResult,
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

enum PoolCommand {
    Load(Program),
    Unload(u64),
    Submit(Vec<Task>),
    Cancel(Vec<u64>),
    /// End every worker (and what their blocks started), then answer.
    Stop(tokio::sync::oneshot::Sender<()>),
}

/// The handle the scheduler holds. Dropping it stops the workers.
pub struct ProcessPool {
    commands: mpsc::UnboundedSender<PoolCommand>,
}

impl ProcessPool {
    /// Starts the pool's task on the current tokio runtime.
    pub fn start(config: PoolConfig, events: mpsc::Sender<InvokerEvent>) -> Self {
        // Unbounded on purpose: the scheduler itself bounds what it submits (its concurrency limit), and
        // a bounded channel here could deadlock against the event channel going the other way.
        let (commands, rx) = mpsc::unbounded_channel();
        tokio::spawn(PoolActor::new(config, events).run(rx));
        Self { commands }
    }

    /// Ends the workers and waits until they are gone, their module folders removed: a process that
    /// exits right after (as `braid run` does) would otherwise leave that to nobody.
    pub async fn stop(self) {
        let (done, stopped) = tokio::sync::oneshot::channel();
        if self.commands.send(PoolCommand::Stop(done)).is_ok() {
            let _ = tokio::time::timeout(Duration::from_secs(2), stopped).await;
        }
    }
}

impl Invoker for ProcessPool {
    fn load(&mut self, program: Program) {
        let _ = self.commands.send(PoolCommand::Load(program));
    }

    fn unload(&mut self, program: u64) {
        let _ = self.commands.send(PoolCommand::Unload(program));
    }

    fn submit(&mut self, tasks: Vec<Task>) {
        let _ = self.commands.send(PoolCommand::Submit(tasks));
    }

    fn cancel(&mut self, keys: Vec<u64>) {
        let _ = self.commands.send(PoolCommand::Cancel(keys));
    }
}

/// One frame from a worker, parsed on the reader task (so that decoding runs beside the scheduler).
#[derive(Debug, Default, Deserialize)]
struct WorkerFrame {
    op: String,
    #[serde(default)]
    program: u64,
    #[serde(default)]
    errors: Vec<(u32, String, Option<u32>, String)>,
    /// The worker's start, wall-clock µs since the epoch: result times count from it.
    #[serde(default)]
    t: f64,
    #[serde(default)]
    results: Vec<WireResult>,
    #[serde(default)]
    key: u64,
    #[serde(default)]
    code: Value,
}

/// A frame's body: a binary results frame (worker.py describes it) or a JSON message.
fn parse_frame(body: &[u8]) -> Result<WorkerFrame, String> {
    match body.split_first() {
        Some((b'R', rest)) => parse_results(rest),
        _ => serde_json::from_slice(body).map_err(|e| e.to_string()),
    }
}

/// A results frame after its tag: the short rows' integer columns, then their return values and
/// backpacks as JSON, then the full rows as JSON.
fn parse_results(body: &[u8]) -> Result<WorkerFrame, String> {
    let mut rest = body;
    let mut take = |n: usize| -> Result<&[u8], String> {
        if rest.len() < n {
            return Err("a results frame is cut short".to_owned());
        }
        let (head, tail) = rest.split_at(n);
        rest = tail;
        Ok(head)
    };
    let t = u64::from_le_bytes(take(8)?.try_into().map_err(|_| "bad header")?);
    let n = u32::from_le_bytes(take(4)?.try_into().map_err(|_| "bad header")?) as usize;
    let column = |bytes: &[u8]| -> Vec<i64> {
        bytes
            .chunks_exact(8)
            .map(|c| i64::from_le_bytes(c.try_into().unwrap_or_default()))
            .collect()
    };
    let keys = column(take(n * 8)?);
    let t0s = column(take(n * 8)?);
    let durations = column(take(n * 8)?);
    let mut json = || -> Result<&[u8], String> {
        let len = u32::from_le_bytes(take(4)?.try_into().map_err(|_| "bad length")?);
        take(len as usize)
    };
    let outputs = json_list(json()?, "return value")?;
    let backpacks = json()?;
    let backpacks = if backpacks == b"0" {
        vec![Ok(Value::from(0)); n]
    } else {
        json_list(backpacks, "backpack")?
    };
    let mut results = slow_rows(json()?)?;
    if outputs.len() != n || backpacks.len() != n {
        return Err(format!(
            "{n} results but {} return values and {} backpacks",
            outputs.len(),
            backpacks.len()
        ));
    }
    let short = outputs
        .into_iter()
        .zip(backpacks)
        .enumerate()
        .map(|(i, (output, backpack))| {
            let mut row = WireResult {
                key: keys[i] as u64,
                t0: t0s[i] as f64,
                duration: durations[i] as f64,
                output: Value::Null,
                backpack: None,
                status: 0,
                ifs: Vec::new(),
                stdout: String::new(),
                stderr: String::new(),
                error: None,
            };
            match (output, backpack) {
                (Ok(output), Ok(backpack)) => {
                    row.output = output;
                    row.backpack = (backpack != 0).then_some(backpack);
                }
                (Err(too_deep), _) | (_, Err(too_deep)) => row.fail(too_deep),
            }
            row
        });
    results.splice(0..0, short);
    Ok(WorkerFrame {
        op: "done".to_owned(),
        t: t as f64,
        results,
        ..WorkerFrame::default()
    })
}

/// The deepest nesting a value may have: `serde_json`'s own limit, which keeps every thread's stack safe
/// (Python's encoder goes to about 1,000).
const MAX_DEPTH: usize = 127;

/// A results frame's JSON list of values. A value nested deeper than [`MAX_DEPTH`] is an error of its
/// own (its invocation fails, saying so), not a broken frame.
fn json_list(json: &[u8], what: &str) -> Result<Vec<Result<Value, String>>, String> {
    match serde_json::from_slice::<Vec<Value>>(json) {
        Ok(values) => Ok(values.into_iter().map(Ok).collect()),
        Err(e) if too_deep(&e) => Ok(split_list(json)?
            .into_iter()
            .map(|(element, depth)| parse_element(element, depth, what))
            .collect()),
        Err(e) => Err(e.to_string()),
    }
}

fn too_deep(error: &serde_json::Error) -> bool {
    error.to_string().contains("recursion limit exceeded")
}

fn parse_element(element: &[u8], depth: usize, what: &str) -> Result<Value, String> {
    if depth > MAX_DEPTH {
        return Err(format!(
            "the {what} is nested {depth} levels deep; Braid keeps values up to {MAX_DEPTH} levels"
        ));
    }
    serde_json::from_slice(element).map_err(|e| e.to_string())
}

/// The full rows; a row holding a value nested too deep fails alone, keeping its key, times and output.
fn slow_rows(json: &[u8]) -> Result<Vec<WireResult>, String> {
    match serde_json::from_slice::<Vec<WireResult>>(json) {
        Ok(rows) => Ok(rows),
        Err(e) if too_deep(&e) => split_list(json)?
            .into_iter()
            .map(|(row, _)| match serde_json::from_slice::<WireResult>(row) {
                Ok(row) => Ok(row),
                Err(e) if too_deep(&e) => deep_row(row),
                Err(e) => Err(e.to_string()),
            })
            .collect(),
        Err(e) => Err(e.to_string()),
    }
}

/// A full row with a value too deep in it: its other fields as sent, the invocation failed.
fn deep_row(row: &[u8]) -> Result<WireResult, String> {
    let fields = split_list(row)?;
    let field = |i: usize| -> Result<Value, String> {
        let (bytes, depth) = fields.get(i).ok_or("a result row is cut short")?;
        parse_element(
            bytes,
            *depth,
            if i == 3 { "return value" } else { "backpack" },
        )
    };
    let plain = |i: usize| field(i).map_err(|_| "a result row is damaged".to_owned());
    let number = |i: usize| plain(i).map(|v| v.as_f64().unwrap_or_default());
    let mut result = WireResult {
        key: plain(0)?.as_u64().ok_or("a result row has no key")?,
        t0: number(1)?,
        duration: number(2)?,
        output: Value::Null,
        backpack: None,
        status: 0,
        ifs: Vec::new(),
        stdout: plain(7)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default(),
        stderr: plain(8)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default(),
        error: None,
    };
    match (field(3), field(4)) {
        (Err(too_deep), _) | (_, Err(too_deep)) => result.fail(too_deep),
        // The depth was elsewhere (the error's text): say so plainly.
        (Ok(_), Ok(_)) => result.fail(format!(
            "its result is nested more than {MAX_DEPTH} levels deep"
        )),
    }
    Ok(result)
}

/// A JSON array's elements, each as its bytes and its nesting depth, without parsing them.
fn split_list(json: &[u8]) -> Result<Vec<(&[u8], usize)>, String> {
    let damaged = || "a results frame's JSON is damaged".to_owned();
    let skip_space = |mut i: usize| {
        while json.get(i).is_some_and(u8::is_ascii_whitespace) {
            i += 1;
        }
        i
    };
    let mut i = skip_space(0);
    if json.get(i) != Some(&b'[') {
        return Err(damaged());
    }
    i = skip_space(i + 1);
    let mut elements = Vec::new();
    if json.get(i) == Some(&b']') {
        return Ok(elements);
    }
    loop {
        let start = i;
        let (mut depth, mut deepest, mut in_string, mut escaped) = (0_usize, 0, false, false);
        while let Some(&c) = json.get(i) {
            if in_string {
                match c {
                    _ if escaped => escaped = false,
                    b'\\' => escaped = true,
                    b'"' => in_string = false,
                    _ => {}
                }
            } else {
                match c {
                    b'"' => in_string = true,
                    b'[' | b'{' => {
                        depth += 1;
                        deepest = deepest.max(depth);
                    }
                    b']' | b'}' | b',' if depth == 0 => break,
                    b']' | b'}' => depth -= 1,
                    _ => {}
                }
            }
            i += 1;
        }
        elements.push((&json[start..i], deepest));
        match json.get(i) {
            Some(b',') => i = skip_space(i + 1),
            Some(b']') => return Ok(elements),
            _ => return Err(damaged()),
        }
    }
}

/// A result row, see worker.py: `[key, t0, duration, return, backpack]` when the invocation returned,
/// printed nothing and has no `if`s, else with `status, ifs, stdout, stderr, error` after those.
#[derive(Debug)]
struct WireResult {
    key: u64,
    /// ns after the worker's start.
    t0: f64,
    /// ns.
    duration: f64,
    output: Value,
    /// `None`: the empty backpack it was given, unchanged.
    backpack: Option<Value>,
    status: u8,
    ifs: Vec<bool>,
    stdout: String,
    stderr: String,
    error: Option<(String, String, String, Option<u32>)>,
}

impl<'de> Deserialize<'de> for WireResult {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Row;
        impl<'de> serde::de::Visitor<'de> for Row {
            type Value = WireResult;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a result row")
            }

            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<WireResult, A::Error> {
                use serde::de::Error as _;
                let missing = |i| A::Error::invalid_length(i, &"a result row of 5 or 10 values");
                let key = seq.next_element()?.ok_or_else(|| missing(0))?;
                let t0 = seq.next_element()?.ok_or_else(|| missing(1))?;
                let duration = seq.next_element()?.ok_or_else(|| missing(2))?;
                let output = seq.next_element()?.ok_or_else(|| missing(3))?;
                let backpack: Value = seq.next_element()?.ok_or_else(|| missing(4))?;
                let backpack = (backpack != 0).then_some(backpack);
                let Some(status) = seq.next_element()? else {
                    return Ok(WireResult {
                        key,
                        t0,
                        duration,
                        output,
                        backpack,
                        status: 0,
                        ifs: Vec::new(),
                        stdout: String::new(),
                        stderr: String::new(),
                        error: None,
                    });
                };
                Ok(WireResult {
                    key,
                    t0,
                    duration,
                    output,
                    backpack,
                    status,
                    ifs: seq.next_element()?.ok_or_else(|| missing(6))?,
                    stdout: seq.next_element()?.ok_or_else(|| missing(7))?,
                    stderr: seq.next_element()?.ok_or_else(|| missing(8))?,
                    error: seq.next_element()?.ok_or_else(|| missing(9))?,
                })
            }
        }
        deserializer.deserialize_seq(Row)
    }
}

impl WireResult {
    /// The invocation failed after all (its value can't be kept): say why, keep its times.
    fn fail(&mut self, message: String) {
        self.status = 1;
        self.output = Value::Null;
        self.backpack = None;
        self.error = Some(("ValueError".to_owned(), message, String::new(), None));
    }

    /// `base`: the worker's start (wall-clock µs); `attempt`: the task's, which the worker does not echo.
    fn into_result(self, base: f64, attempt: u32) -> TaskResult {
        let error = self
            .error
            .map(|(kind, message, traceback, line)| ErrorInfo {
                kind,
                message,
                traceback,
                line,
            });
        let outcome = match (self.status, error) {
            (0, _) => Outcome::Returned {
                output: self.output,
                backpack: self.backpack,
                ifs: self.ifs,
            },
            (2, Some(error)) => Outcome::TimedOut { error },
            (3, _) => Outcome::Cancelled,
            (_, error) => Outcome::Raised {
                error: error.unwrap_or_else(|| ErrorInfo {
                    kind: "Error".to_owned(),
                    message: "the invocation failed".to_owned(),
                    traceback: String::new(),
                    line: None,
                }),
                backpack: self.backpack.filter(|b| !b.is_null()),
            },
        };
        let started = (base + self.t0 / 1000.0) / 1000.0;
        TaskResult {
            key: self.key,
            attempt,
            started_at_ms: Some(started),
            ended_at_ms: Some(started + self.duration / 1e6),
            stdout: self.stdout,
            stderr: self.stderr,
            outcome,
        }
    }
}

enum FromWorker {
    Frame(WorkerFrame),
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
    exiting: Option<(u64, Value)>,
    stuck: Option<u64>,
    useful: bool,
}

struct PoolActor {
    config: PoolConfig,
    events: mpsc::Sender<InvokerEvent>,
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
    broken: Option<String>,
    /// The library environment the workers were last given.
    site_packages: Option<String>,
}

impl PoolActor {
    fn new(config: PoolConfig, events: mpsc::Sender<InvokerEvent>) -> Self {
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

    async fn run(mut self, mut commands: mpsc::UnboundedReceiver<PoolCommand>) {
        for index in 0..self.workers.len() {
            self.spawn(index).await;
        }
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                command = commands.recv() => {
                    let Some(command) = command else { break };
                    if let PoolCommand::Stop(done) = command {
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

    async fn command(&mut self, command: PoolCommand) {
        match command {
            PoolCommand::Load(program) => {
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
                let mut frame = Vec::new();
                let _ = serde_json::to_writer(&mut frame, &LoadFrame::from(&program));
                for worker in self.workers.iter().flatten() {
                    let _ = worker.frames.send(frame.clone());
                }
                self.programs.insert(program.id, frame);
                if let Some(message) = &self.broken {
                    self.emit(InvokerEvent::Broken(message.clone())).await;
                }
            }
            PoolCommand::Unload(program) => {
                self.programs.remove(&program);
                self.loaded_reported.remove(&program);
                let frame = format!(r#"{{"op":"unload","program":{program}}}"#).into_bytes();
                for worker in self.workers.iter().flatten() {
                    let _ = worker.frames.send(frame.clone());
                }
            }
            PoolCommand::Submit(tasks) => {
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
            PoolCommand::Cancel(keys) => self.cancel(keys).await,
            // Taken by the loop in `run`.
            PoolCommand::Stop(_) => {}
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
                let mut frame = String::from(r#"{"op":"cancel","keys":"#);
                push_keys(&mut frame, mine.into_iter());
                frame.push('}');
                let _ = worker.frames.send(frame.into_bytes());
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
                        match parse_frame(&body) {
                            Ok(frame) => {
                                if !send(FromWorker::Frame(frame)) {
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
            FromWorker::Frame(frame) => match frame.op.as_str() {
                "done" => {
                    worker.useful = true;
                    self.futile_starts = 0;
                    let mut results = Vec::with_capacity(frame.results.len());
                    for wire in frame.results {
                        if let Some(flight) = worker.in_flight.remove(&wire.key) {
                            if !self.cancelled.is_empty() {
                                self.cancelled.remove(&wire.key);
                            }
                            results.push(wire.into_result(frame.t, flight.task.attempt));
                        }
                    }
                    if worker.in_flight.is_empty() {
                        worker.solo = false;
                    }
                    self.emit(InvokerEvent::Finished(results)).await;
                }
                "loaded" => {
                    worker.useful = true;
                    self.futile_starts = 0;
                    if self.programs.contains_key(&frame.program)
                        && self.loaded_reported.insert(frame.program)
                    {
                        let errors = frame
                            .errors
                            .into_iter()
                            .map(|(block, what, line, message)| BlockCompileError {
                                block,
                                what,
                                line,
                                message,
                            })
                            .collect();
                        self.emit(InvokerEvent::Loaded {
                            program: frame.program,
                            errors,
                        })
                        .await;
                    }
                }
                "exiting" => worker.exiting = Some((frame.key, frame.code)),
                "stuck" => {
                    worker.stuck = Some(frame.key);
                    end_worker(&mut worker.child);
                }
                _ => {}
            },
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
            && worker.stuck.is_none()
            && !exited_within(&worker.child, EXIT_GRACE).await;
        end_worker(&mut worker.child);
        let status = tokio::time::timeout(Duration::from_secs(5), worker.child.wait())
            .await
            .ok()
            .and_then(Result::ok);
        let stderr_tail = worker
            .stderr
            .lock()
            .map(|lines| lines.iter().cloned().collect::<Vec<_>>().join("\n"))
            .unwrap_or_default();
        let how = describe_exit(status, reason);
        let mut results = Vec::new();
        let mut rerun = Vec::new();
        let flights: Vec<InFlight> = worker.in_flight.drain().map(|(_, f)| f).collect();
        let culprit = worker
            .stuck
            .or(worker.exiting.as_ref().map(|(key, _)| *key))
            .or_else(|| (flights.len() == 1 || worker.solo).then(|| flights[0].task.key));
        for flight in flights {
            let task = flight.task;
            if self.cancelled.remove(&task.key) {
                results.push(cancelled(&task));
            } else if Some(task.key) == culprit {
                let result = if worker.stuck == Some(task.key) {
                    timed_out_hard(&task)
                } else {
                    let message = match &worker.exiting {
                        Some((key, code)) if *key == task.key => {
                            format!("the code called os._exit({code}); its Python process ended")
                        }
                        _ if ended_here => "its Python process closed its pipe to Braid (a block \
                            closing file descriptors, such as os.closerange, does this) and went on \
                            running; Braid ended it"
                            .to_owned(),
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

    /// Kills a worker that stays silent while its invocations are long past their timeouts: Python could
    /// not even run the worker's own monitor (a C call holding the interpreter).
    fn watchdog(&mut self) {
        let now = Instant::now();
        for worker in self.workers.iter_mut().flatten() {
            if worker.stuck.is_some() || now.duration_since(worker.last_heard) < SILENCE_LIMIT {
                continue;
            }
            let overdue = worker
                .in_flight
                .values()
                .filter(|f| now.duration_since(f.sent) > silent_past_timeout(f.task.timeout_s))
                .min_by_key(|f| f.sent)
                .map(|f| f.task.key);
            if let Some(key) = overdue {
                worker.stuck = Some(key);
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
                .find(|w| w.in_flight.is_empty() && w.stuck.is_none())
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
            .filter(|w| !w.solo && w.stuck.is_none())
            .count();
        // Spread what waits over the workers (a CPU-bound fan-out of 4 must use both cores), in
        // frames of at most BATCH so that results stream back while the rest runs.
        let share = self.waiting.len().div_ceil(eligible.max(1)).clamp(1, BATCH);
        while !self.waiting.is_empty() {
            let Some(worker) = self
                .workers
                .iter_mut()
                .flatten()
                .filter(|w| !w.solo && w.stuck.is_none())
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
    // One frame per (program, block), columns rather than rows: cheaper for the worker to decode.
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
        let mut frame = String::with_capacity(
            96 + tasks
                .iter()
                .map(|t| 24 + t.input_json.len() + t.backpack_json.len())
                .sum::<usize>(),
        );
        let _ = write!(
            frame,
            r#"{{"op":"run","program":{program},"block":{block},"keys":"#
        );
        push_keys(&mut frame, tasks.iter().map(|t| t.key));
        frame.push_str(r#","inputs":"#);
        push_list(&mut frame, tasks.iter().map(|t| t.input_json.as_str()));
        if tasks.iter().all(|t| &*t.backpack_json == "{}") {
            // Every one starts with an empty backpack (a fresh one each, made by the worker).
            frame.push_str(r#","fresh":1}"#);
        } else {
            frame.push_str(r#","backpacks":"#);
            push_list(&mut frame, tasks.iter().map(|t| &*t.backpack_json));
            frame.push('}');
        }
        let _ = worker.frames.send(frame.into_bytes());
        for task in tasks {
            worker
                .in_flight
                .insert(task.key, InFlight { task, sent: now });
        }
    }
}

/// Appends `[k,…]`, the keys as decimal numbers.
fn push_keys(frame: &mut String, keys: impl Iterator<Item = u64>) {
    let mut digits = itoa::Buffer::new();
    frame.push('[');
    for (i, key) in keys.enumerate() {
        if i > 0 {
            frame.push(',');
        }
        frame.push_str(digits.format(key));
    }
    frame.push(']');
}

/// Appends `[a,b,…]`: the items are JSON texts already.
fn push_list<'a>(frame: &mut String, items: impl Iterator<Item = &'a str>) {
    frame.push('[');
    for (i, item) in items.enumerate() {
        if i > 0 {
            frame.push(',');
        }
        frame.push_str(item);
    }
    frame.push(']');
}

#[derive(serde::Serialize)]
struct LoadFrame<'a> {
    op: &'static str,
    #[serde(flatten)]
    program: &'a Program,
}

impl<'a> From<&'a Program> for LoadFrame<'a> {
    fn from(program: &'a Program) -> Self {
        Self {
            op: "load",
            program,
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

/// Removes the folder of block modules a worker keeps (worker.py's `_start_modules_dir`), which a killed
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

fn failed_result(task: &Task, outcome: Outcome) -> TaskResult {
    TaskResult {
        key: task.key,
        attempt: task.attempt,
        started_at_ms: None,
        ended_at_ms: Some(crate::run::now_ms()),
        stdout: String::new(),
        stderr: String::new(),
        outcome,
    }
}

fn crashed(task: &Task, message: &str) -> TaskResult {
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

fn timed_out_hard(task: &Task) -> TaskResult {
    failed_result(
        task,
        Outcome::TimedOut {
            error: ErrorInfo {
                kind: "Timeout".to_owned(),
                message: format!(
                    "ran past its timeout of {} s and did not stop when interrupted; its Python process was killed",
                    task.timeout_s
                ),
                traceback: String::new(),
                line: None,
            },
        },
    )
}

fn cancelled(task: &Task) -> TaskResult {
    failed_result(task, Outcome::Cancelled)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The worker's native short rows read back as what they were: keys, times, values, and backpacks
    /// (unchanged when all were; else each its own). A row it can't encode leaves the frame to Python.
    #[test]
    fn a_native_short_frame_reads_back_as_its_rows() {
        use pyo3::prelude::*;
        use pyo3::types::PyList;
        use serde_json::json;
        Python::attach(|py| {
            let rows = |code: &std::ffi::CStr| {
                py.eval(code, None, None)
                    .unwrap()
                    .cast_into::<PyList>()
                    .unwrap()
            };
            let read = |rows: &Bound<'_, PyList>| {
                let head = super::super::native::short_frame(py, rows, 1_000_000).expect("plain");
                let mut body = head.as_bytes().to_vec();
                body.extend_from_slice(&2_u32.to_le_bytes());
                body.extend_from_slice(b"[]");
                parse_frame(&body).unwrap()
            };
            let frame = read(&rows(
                c"[(7, 10, 5, [1, 'a'], 0), (2**40, 20, 6, {'k': 2.5}, 0), (9, 30, 7, None, 0)]",
            ));
            assert_eq!(frame.op, "done");
            assert!((frame.t - 1_000_000.0).abs() < f64::EPSILON);
            let got: Vec<_> = frame
                .results
                .iter()
                .map(|r| {
                    (
                        r.key,
                        r.t0,
                        r.duration,
                        r.output.clone(),
                        r.backpack.clone(),
                    )
                })
                .collect();
            assert_eq!(
                got,
                [
                    (7, 10.0, 5.0, json!([1, "a"]), None),
                    (1 << 40, 20.0, 6.0, json!({"k": 2.5}), None),
                    (9, 30.0, 7.0, Value::Null, None),
                ]
            );
            let frame = read(&rows(c"[(1, 0, 1, 2, 0), (2, 0, 1, 4, {'seen': True})]"));
            let backpacks: Vec<_> = frame.results.iter().map(|r| r.backpack.clone()).collect();
            assert_eq!(backpacks, [None, Some(json!({"seen": true}))]);
            assert!(read(&rows(c"[]")).results.is_empty());
            let odd = rows(c"[(1, 0, 1, float('nan'), 0)]");
            assert!(super::super::native::short_frame(py, &odd, 0).is_none());
        });
    }

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
    fn split_list_finds_elements_and_depths_past_strings() {
        let json = br#" [ 1, "a,]\"[{", [[2]], {"k": [3, "]"]} ] "#;
        let parts: Vec<(String, usize)> = split_list(json)
            .unwrap()
            .into_iter()
            .map(|(bytes, depth)| (String::from_utf8_lossy(bytes).trim().to_owned(), depth))
            .collect();
        assert_eq!(
            parts,
            [
                ("1".to_owned(), 0),
                (r#""a,]\"[{""#.to_owned(), 0),
                ("[[2]]".to_owned(), 2),
                (r#"{"k": [3, "]"]}"#.to_owned(), 2),
            ]
        );
        assert_eq!(split_list(b"[]").unwrap().len(), 0);
        assert!(split_list(b"[1, 2").is_err());
        assert!(split_list(b"{}").is_err());
    }

    #[test]
    fn any_timeout_a_project_can_hold_has_a_stuck_limit() {
        assert_eq!(silent_past_timeout(2.0), Duration::from_secs(7));
        assert_eq!(silent_past_timeout(u64::MAX as f64), Duration::MAX);
        assert_eq!(silent_past_timeout(f64::NAN), Duration::MAX);
    }

    #[test]
    fn a_value_too_deep_fails_alone() {
        let deep = format!("{}0{}", "[".repeat(200), "]".repeat(200));
        let list = format!("[1, {deep}, 3]");
        let values = json_list(list.as_bytes(), "return value").unwrap();
        assert_eq!(values[0], Ok(Value::from(1)));
        assert!(
            values[1]
                .as_ref()
                .unwrap_err()
                .contains("nested 200 levels deep")
        );
        assert_eq!(values[2], Ok(Value::from(3)));
        // Damage is still damage.
        assert!(json_list(b"[1, oops]", "return value").is_err());
    }
}
