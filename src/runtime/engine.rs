//! The executor's event loop: owns the runs in progress and the invokers (one per [`Executor`]), takes
//! requests in and sends events out. Runs on its own thread with its own tokio runtime, so neither the editor's frame loop nor
//! the CLI ever blocks on Python.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::{mpsc, oneshot};

mod service;

pub use service::{ServeRequest, ServiceNotice, Trigger};

use super::capacity::Lane;
use super::event::{RuntimeEvent, WORKER_OUTPUT_LINES};
use super::history::HistoryWriter;
use super::invoker::{
    BlockCompileError, Invoker, InvokerEvent, InvokerEvents, Program, TaskResult,
};
use super::plan::Plan;
use super::redrive::{CarriedEnd, Redrive};
use super::scheduler::{KEY_BITS, RunScheduler};
use super::scripted::Script;
use super::worker::pool::PoolConfig;
use crate::model::validate::error_messages;
use crate::model::{BlockId, Project, TransitionId};
use crate::run::{CompileError, Executor, RunId, RunStatus, RunSummary, now_ms};

/// A request to run a pipeline.
#[derive(Clone, Debug)]
pub struct RunRequest {
    /// Chosen by the requester; every event of this run carries it.
    pub run_id: RunId,
    /// A snapshot: editing the project during the run changes nothing about the run.
    pub project: Project,
    pub input: Value,
    pub backpack: Value,
    /// Start at this block instead of the entry blocks.
    pub from: Option<BlockId>,
    /// The run's concurrency limit; the project's setting when `None`.
    pub concurrency: Option<u32>,
    /// Values for the environment variable names the blocks declare.
    pub env: BTreeMap<String, String>,
    /// Run only the `from` block once, firing no transitions: a replay of one invocation.
    pub single: bool,
    /// The project's history database: the run and its invocations are recorded there, and
    /// `RunFinished` comes only once all of it is written. A database that can't be opened refuses the
    /// run. Refused runs are not recorded (nothing ran).
    pub history: Option<PathBuf>,
    /// The folder the blocks' code runs in (its relative paths start there): the project file's, so
    /// data beside the project is found however Braid was started. `None` leaves the workers' own.
    pub working_dir: Option<PathBuf>,
    /// Where the run executes.
    pub executor: Executor,
    /// Run an earlier run's failed items again (see [`super::redrive`]): the run starts from that
    /// run's entry invocations, with their inputs (`input`, `backpack` and `from` are not used), and
    /// names that run as the one it redrives.
    pub redrive: Option<Arc<Redrive>>,
}

impl RunRequest {
    /// A run of `project` from its entry blocks with input `null`, an empty backpack and the project's
    /// concurrency limit.
    pub fn new(run_id: RunId, project: Project) -> Self {
        Self {
            run_id,
            project,
            input: Value::Null,
            backpack: Value::Object(serde_json::Map::new()),
            from: None,
            concurrency: None,
            env: BTreeMap::new(),
            single: false,
            history: None,
            working_dir: None,
            executor: Executor::Local,
            redrive: None,
        }
    }
}

#[derive(Debug)]
pub enum RuntimeRequest {
    Run(Box<RunRequest>),
    Cancel(RunId),
    /// Compile every block's code and `if` expressions without running anything; answered by
    /// [`RuntimeEvent::Checked`].
    Check {
        check_id: RunId,
        project: Box<Project>,
    },
    /// Serve a project: load its code once for the runs [`Self::Trigger`] starts (see
    /// [`ServiceNotice`] for what its host is told).
    Serve(Box<ServeRequest>),
    /// Start a run of a served project.
    Trigger(Box<Trigger>),
    /// A service's host has kept the messages of these tasks ([`ServiceNotice::Keep`]).
    Kept(Vec<TaskResult>),
    /// Stop serving: the service's runs going on are cancelled, its code unloaded.
    StopServing(RunId),
}

#[derive(Clone, Debug)]
pub struct RuntimeConfig {
    /// What runs the blocks of the runs on this machine ([`Executor::Local`]).
    pub local: LocalInvoker,
    /// Where per-project library environments are built and cached.
    pub env_cache: std::path::PathBuf,
}

/// The invoker behind [`Executor::Local`].
#[derive(Clone, Debug)]
pub enum LocalInvoker {
    /// A pool of `braid __worker` processes, each embedding CPython: what Braid runs blocks with.
    Workers(PoolConfig),
    /// Rust closures standing in for Python: tests and benchmarks of everything around it.
    Scripted(Script),
}

impl LocalInvoker {
    /// Starts it on the current tokio runtime.
    fn start(self, events: InvokerEvents) -> Box<dyn Invoker> {
        match self {
            Self::Workers(pool) => Box::new(super::worker::pool::start(pool, events)),
            Self::Scripted(script) => Box::new(script.start(events)),
        }
    }
}

impl RuntimeConfig {
    /// The worker pool, started from the running executable, one worker per core.
    pub fn from_current_exe() -> std::io::Result<Self> {
        Ok(Self::workers(PoolConfig::from_current_exe()?))
    }

    pub fn workers(pool: PoolConfig) -> Self {
        Self {
            local: LocalInvoker::Workers(pool),
            env_cache: super::environment::default_cache_dir(),
        }
    }

    /// Blocks run by `script` instead of Python.
    pub fn scripted(script: Script) -> Self {
        Self {
            local: LocalInvoker::Scripted(script),
            env_cache: super::environment::default_cache_dir(),
        }
    }
}

/// The way in and out of the runtime: requests in, events out.
/// See [`RuntimeHandle::requester`].
#[derive(Clone)]
pub struct Requester(mpsc::Sender<RuntimeRequest>);

impl Requester {
    /// Like [`RuntimeHandle::send`]; from a thread outside the runtime.
    pub fn send(&self, request: RuntimeRequest) {
        let _ = self.0.blocking_send(request);
    }

    /// Sends a request from async code (any tokio runtime), waiting while 64 requests wait.
    pub async fn send_async(&self, request: RuntimeRequest) {
        let _ = self.0.send(request).await;
    }
}

pub struct RuntimeHandle {
    requests: mpsc::Sender<RuntimeRequest>,
    events: mpsc::Receiver<RuntimeEvent>,
    /// Answers once the engine has stopped (its history databases closed).
    stopped: std::sync::mpsc::Receiver<()>,
}

impl RuntimeHandle {
    /// Starts the runtime thread. The local invoker starts at once (the workers, for the pool), so the
    /// first run does not wait for it.
    pub fn start(config: RuntimeConfig) -> std::io::Result<Self> {
        let (requests, requests_rx) = mpsc::channel(64);
        let (events_tx, events) = mpsc::channel(1024);
        let (stopped_tx, stopped) = std::sync::mpsc::channel();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("braid-runtime")
            .enable_all()
            .build()?;
        // Bounded: when events are not taken, the engine waits, as it does for its own events.
        let (recorder, to_record) = mpsc::channel(64);
        let (recorder_done, recorder_finished) = oneshot::channel();
        let (recorder_events, handle) = (events_tx.clone(), runtime.handle().clone());
        std::thread::Builder::new()
            .name("braid-recorder".to_owned())
            .spawn(move || {
                record(to_record, &recorder_events, &handle);
                let _ = recorder_done.send(());
            })?;
        std::thread::Builder::new()
            .name("braid-engine".to_owned())
            .spawn(move || {
                runtime.block_on(Engine::run(
                    config,
                    requests_rx,
                    events_tx,
                    (recorder, recorder_finished),
                ));
                let _ = stopped_tx.send(());
                // Dropping the runtime stops the workers; nobody waits for that.
            })?;
        Ok(Self {
            requests,
            events,
            stopped,
        })
    }

    /// A handle over channels with no engine behind them: whoever holds the other ends plays the
    /// runtime's part, taking the requests and sending the events (an editor test scripting a run's
    /// events). [`Self::shutdown`] returns at once, as there is nothing to stop.
    pub fn from_channels(
        requests: mpsc::Sender<RuntimeRequest>,
        events: mpsc::Receiver<RuntimeEvent>,
    ) -> Self {
        // Its sender dropped: the handle finds the runtime stopped already.
        let (_, stopped) = std::sync::mpsc::channel();
        Self {
            requests,
            events,
            stopped,
        }
    }

    /// Stops the runtime: runs still going end as cancelled (recorded so), history databases are
    /// written out and closed. Waits at most `timeout`; events that arrive meanwhile are dropped.
    pub fn shutdown(self, timeout: Duration) {
        let (sender, RuntimeEvents(mut events)) = self.split();
        // Keep the events flowing, so the engine never waits to send one.
        sender.stop_within(timeout, || while events.try_recv().is_ok() {});
    }

    /// Splits the handle into its requests' end and its events' end, for a consumer that takes the
    /// events on a thread of its own: the editor, whose window may not draw for a long while (a run
    /// must not wait for it).
    pub fn split(self) -> (RuntimeSender, RuntimeEvents) {
        let Self {
            requests,
            events,
            stopped,
        } = self;
        (RuntimeSender { requests, stopped }, RuntimeEvents(events))
    }

    /// Sends a request. Blocks only if 64 requests are already waiting.
    pub fn send(&self, request: RuntimeRequest) {
        let _ = self.requests.blocking_send(request);
    }

    /// Sends requests from another thread (a signal handler's, say) while this handle takes events.
    pub fn requester(&self) -> Requester {
        Requester(self.requests.clone())
    }

    pub fn try_recv(&mut self) -> Option<RuntimeEvent> {
        self.events.try_recv().ok()
    }

    /// Waits for the next event; `None` once the runtime has stopped.
    pub fn recv_blocking(&mut self) -> Option<RuntimeEvent> {
        self.events.blocking_recv()
    }

    /// Waits up to `timeout` for the next event.
    pub fn recv_timeout(&mut self, timeout: Duration) -> Option<RuntimeEvent> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if let Ok(event) = self.events.try_recv() {
                return Some(event);
            }
            if std::time::Instant::now() >= deadline || self.events.is_closed() {
                return None;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

/// The requests' end of a runtime whose events another thread takes (see [`RuntimeHandle::split`]).
pub struct RuntimeSender {
    requests: mpsc::Sender<RuntimeRequest>,
    stopped: std::sync::mpsc::Receiver<()>,
}

impl RuntimeSender {
    /// Like [`RuntimeHandle::send`].
    pub fn send(&self, request: RuntimeRequest) {
        let _ = self.requests.blocking_send(request);
    }

    /// Like [`RuntimeHandle::requester`].
    pub fn requester(&self) -> Requester {
        Requester(self.requests.clone())
    }

    /// Stops the runtime as [`RuntimeHandle::shutdown`] does; whoever holds the events keeps taking
    /// them meanwhile.
    pub fn shutdown(self, timeout: Duration) {
        self.stop_within(timeout, || {});
    }

    /// Closes the requests (the engine stops once they are all gone) and waits at most `timeout` for
    /// the engine to have stopped, calling `meanwhile` every few milliseconds.
    fn stop_within(self, timeout: Duration, mut meanwhile: impl FnMut()) {
        let Self { requests, stopped } = self;
        drop(requests);
        let deadline = std::time::Instant::now() + timeout;
        loop {
            meanwhile();
            match stopped.recv_timeout(Duration::from_millis(5)) {
                Ok(()) | Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return,
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                    if std::time::Instant::now() >= deadline {
                        tracing::warn!("the runtime did not stop within {timeout:?}");
                        return;
                    }
                }
            }
        }
    }
}

/// The events' end of a runtime (see [`RuntimeHandle::split`]).
pub struct RuntimeEvents(mpsc::Receiver<RuntimeEvent>);

impl RuntimeEvents {
    /// Waits for the next event; `None` once the runtime has stopped (every sender of events gone).
    pub fn recv_blocking(&mut self) -> Option<RuntimeEvent> {
        self.0.blocking_recv()
    }
}

/// A finished environment preparation: the run's number, the site-packages (or the error) and pip's
/// output, for the run's log in the history.
type Prepared = (u64, Result<std::path::PathBuf, String>, Vec<String>);

enum Phase {
    /// Installing the project's libraries; the program is loaded once they are there.
    Preparing {
        program: Box<Program>,
        start: Start,
    },
    /// Compiling only, for a check: no invocation will run.
    Checking,
    /// Waiting for the workers to compile the code.
    Compiling {
        start: Start,
    },
    Running,
}

/// Where a run starts, once its code has compiled.
enum Start {
    /// These entry blocks, with the run's input and backpack.
    Entries {
        entries: Vec<usize>,
        input: Value,
        backpack: Value,
    },
    /// An earlier run's entries, taking its recorded ends where it can.
    Redrive(Box<Redrive>),
}

struct ActiveRun {
    scheduler: RunScheduler,
    /// Where it runs: its loads, tasks and cancels go to this executor's invoker.
    executor: Executor,
    phase: Phase,
    project: Arc<Project>,
    last_progress: std::time::Instant,
    history: Option<HistoryWriter>,
    /// Lines of worker output sent so far (see [`RuntimeEvent::WorkerOutput`]).
    output_lines: usize,
    /// pip's output while the run's environment was built, until the history has the run.
    pip_output: Vec<String>,
    /// The service (its number) whose run this is, and the run's lane; `None` for a run of its own.
    service: Option<(u64, Lane)>,
}

struct Engine {
    events: mpsc::Sender<RuntimeEvent>,
    invokers: HashMap<Executor, Box<dyn Invoker>>,
    /// How invokers report back; a cluster's invoker starts with the first run that goes there.
    invoker_events: mpsc::Sender<(Executor, InvokerEvent)>,
    env_cache: std::path::PathBuf,
    /// Finished environment preparations.
    prepared_tx: mpsc::Sender<Prepared>,
    runs: HashMap<u64, ActiveRun>,
    /// One writer thread per history database, started on first use and kept for later runs.
    writers: HashMap<PathBuf, HistoryWriter>,
    /// The recorder's way in: recorded runs' records and ends, in order (see [`Recorded`]).
    recorder: mpsc::Sender<Recorded>,
    /// Served projects, by their program's number.
    services: HashMap<u64, service::Service>,
    next_run: u64,
}

/// What a recorded run hands the recorder. It encodes records for the history writer and then passes
/// them on as events, off the engine's thread (which a big fan-out keeps busy): encoding is about a
/// tenth of a microsecond a record. Going through the one recorder keeps a run's records ahead of its
/// `RunFinished`, which waits for the writer to have committed them.
enum Recorded {
    Records {
        writer: HistoryWriter,
        run_id: RunId,
        records: Vec<crate::run::InvocationRecord>,
    },
    Finished {
        writer: HistoryWriter,
        summary: RunSummary,
    },
    /// No run records there any more: close it (after what came before), merging its WAL.
    Close(HistoryWriter),
}

/// The recorder: a thread of its own, since encoding and waiting for a full writer channel block.
/// (As a task it moved the runtime's other tasks to another thread for every batch, with
/// `block_in_place`, which cost about a sixth of its time.) Runs until the engine drops its sender,
/// after everything sent before; `done` says it has finished.
fn record(
    mut recorded: mpsc::Receiver<Recorded>,
    events: &mpsc::Sender<RuntimeEvent>,
    runtime: &tokio::runtime::Handle,
) {
    while let Some(message) = recorded.blocking_recv() {
        match message {
            Recorded::Records {
                writer,
                run_id,
                records,
            } => {
                writer.invocations(&records);
                let _ = events.blocking_send(RuntimeEvent::Invocations { run_id, records });
            }
            Recorded::Finished { writer, summary } => {
                // Held back until the writer has committed the run, without holding up other runs.
                let written = writer.run_finished_flushed(&summary);
                let events = events.clone();
                let path = writer.path().to_owned();
                runtime.spawn(async move {
                    let mut summary = summary;
                    if written.await.is_err() {
                        // The writer's thread is gone (it ends only with its last sender, short of a
                        // panic): the run ends all the same, failed, saying its history is lost.
                        unrecorded(&mut summary, &path, "its history writer stopped");
                    }
                    let _ = events.send(RuntimeEvent::RunFinished(summary)).await;
                });
            }
            Recorded::Close(writer) => drop(writer.close()),
        }
    }
}

/// Marks a run whose history could not be written as failed, saying why: its records went out all the
/// same, but the history does not have them.
fn unrecorded(summary: &mut RunSummary, history: &Path, why: &str) {
    summary.status = RunStatus::Failed;
    summary.failures.push(crate::run::RunFailure {
        block: String::new(),
        block_id: BlockId("".into()),
        item_path: Vec::new(),
        item_key: None,
        item_label: None,
        status: "history".to_owned(),
        error: format!("the run is not recorded in {}: {why}", history.display()),
        traceback: None,
        invocation: None,
    });
}

const PROGRESS_EVERY: Duration = Duration::from_millis(100);
/// How long shutting down waits for a history database to close.
const CLOSE_WITHIN: Duration = Duration::from_secs(10);

impl Engine {
    async fn run(
        config: RuntimeConfig,
        mut requests: mpsc::Receiver<RuntimeRequest>,
        events: mpsc::Sender<RuntimeEvent>,
        (recorder, recorder_finished): (mpsc::Sender<Recorded>, oneshot::Receiver<()>),
    ) {
        let (invoker_tx, mut invoker_rx) = mpsc::channel(256);
        let local = config
            .local
            .start(InvokerEvents::new(Executor::Local, invoker_tx.clone()));
        let (prepared_tx, mut prepared_rx) = mpsc::channel(16);

        let mut engine = Self {
            events,
            invokers: HashMap::from([(Executor::Local, local)]),
            invoker_events: invoker_tx,
            env_cache: config.env_cache,
            prepared_tx,
            runs: HashMap::new(),
            writers: HashMap::new(),
            recorder,
            services: HashMap::new(),
            next_run: 1,
        };
        let mut tick = tokio::time::interval(PROGRESS_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                request = requests.recv() => {
                    let Some(request) = request else { break };
                    engine.request(request).await;
                }
                Some((executor, event)) = invoker_rx.recv() => {
                    let mut touched = Vec::new();
                    engine.invoker_event(&executor, event, &mut touched).await;
                    // Take whatever else is already waiting before scheduling: fewer, larger batches.
                    while let Ok((executor, event)) = invoker_rx.try_recv() {
                        engine.invoker_event(&executor, event, &mut touched).await;
                    }
                    engine.after_completions(touched).await;
                }
                Some((number, prepared, output)) = prepared_rx.recv() => {
                    engine.prepared(number, prepared, output).await;
                }
                () = sleep_until(engine.next_wake()) => engine.wake_due().await,
                _ = tick.tick() => engine.progress().await,
            }
        }
        // The handle went away (the editor closed, `braid run` ended) with runs still going: they end
        // as cancelled, as with Stop, so their history says what happened rather than "running".
        let going: Vec<RunId> = engine
            .runs
            .values()
            .filter(|run| !matches!(run.phase, Phase::Checking))
            .map(|run| run.scheduler.run_id().clone())
            .collect();
        for run_id in going {
            engine.request(RuntimeRequest::Cancel(run_id)).await;
        }
        // Then let the recorder finish what it has, and close the history databases, so each is left
        // merged and whole; meanwhile the invokers stop (the workers end; none waits for another:
        // `braid run` exits once all are done).
        let Self {
            writers,
            recorder,
            invokers,
            ..
        } = engine;
        let stopping: Vec<_> = invokers
            .into_values()
            .map(|invoker| tokio::spawn(invoker.stop()))
            .collect();
        let stop_invokers = async {
            for stopped in stopping {
                let _ = stopped.await;
            }
        };
        drop(recorder);
        let close_history = async {
            if tokio::time::timeout(CLOSE_WITHIN, recorder_finished)
                .await
                .is_err()
            {
                tracing::warn!("history: the recorder did not finish in time");
            }
            for (path, writer) in writers {
                if tokio::time::timeout(CLOSE_WITHIN, writer.close())
                    .await
                    .is_err()
                {
                    tracing::warn!("history: {} did not close in time", path.display());
                }
            }
        };
        tokio::join!(stop_invokers, close_history);
    }

    async fn emit(&self, event: RuntimeEvent) {
        let _ = self.events.send(event).await;
    }

    async fn request(&mut self, request: RuntimeRequest) {
        match request {
            RuntimeRequest::Run(request) => self.start_run(*request).await,
            RuntimeRequest::Serve(request) => self.serve(*request),
            RuntimeRequest::Trigger(trigger) => self.trigger(*trigger).await,
            RuntimeRequest::Kept(results) => self.host_results(results).await,
            RuntimeRequest::StopServing(id) => self.stop_serving(&id).await,
            RuntimeRequest::Check { check_id, project } => {
                let executor = Executor::Local;
                let number = self.take_number();
                let invoker = match self.usable(&executor) {
                    Ok(invoker) => invoker,
                    Err(message) => {
                        self.refuse(check_id, message, Vec::new()).await;
                        return;
                    }
                };
                let plan = Arc::new(Plan::new(&project));
                let mut program = plan.program(number, &project, &BTreeMap::new());
                program.compile_only = true;
                invoker.load(program);
                self.runs.insert(
                    number,
                    ActiveRun {
                        scheduler: RunScheduler::new(check_id, plan, number, 1, number << KEY_BITS),
                        executor,
                        phase: Phase::Checking,
                        project: Arc::new(*project),
                        last_progress: std::time::Instant::now(),
                        history: None,
                        output_lines: 0,
                        pip_output: Vec::new(),
                        service: None,
                    },
                );
            }
            RuntimeRequest::Cancel(run_id) => {
                let Some((&number, _)) = self
                    .runs
                    .iter()
                    .find(|(_, run)| run.scheduler.run_id() == &run_id)
                else {
                    return;
                };
                self.cancel_run(number).await;
            }
        }
    }

    /// Stops a run: what is queued or running ends as cancelled, and the run ends.
    async fn cancel_run(&mut self, number: u64) {
        let Some(run) = self.runs.get_mut(&number) else {
            return;
        };
        let keys = match run.service {
            Some((service, lane)) => match self.services.get_mut(&service) {
                Some(service) => run.scheduler.cancel_in(&mut service.capacity.lane(lane)),
                None => run.scheduler.cancel(),
            },
            None => run.scheduler.cancel(),
        };
        if !keys.is_empty()
            && let Some(invoker) = self.invokers.get_mut(&run.executor)
        {
            invoker.cancel(keys);
        }
        run.phase = Phase::Running;
        let service = run.service.map(|(service, _)| service);
        self.advance(number).await;
        // Its slots are free: the service's other runs may take them.
        if let Some(service) = service {
            for number in self.dispatch(service) {
                self.advance(number).await;
            }
        }
    }

    /// A number for a run or a service's program: it goes in the high bits of task keys, so numbers
    /// wrap around once they no longer fit (after 16 million runs; a served project at 2,000 requests
    /// a second gets there in a little over two hours), skipping those in use. A late result of a run
    /// 16 million runs ago (its task's key reused) would need an invocation running far past any
    /// timeout.
    fn take_number(&mut self) -> u64 {
        const NUMBERS: u64 = 1 << (64 - KEY_BITS);
        loop {
            let number = self.next_run;
            self.next_run = if number + 1 >= NUMBERS { 1 } else { number + 1 };
            if !self.runs.contains_key(&number) && !self.services.contains_key(&number) {
                return number;
            }
        }
    }

    async fn refuse(&self, run_id: RunId, message: String, compile_errors: Vec<CompileError>) {
        self.emit(RuntimeEvent::RunRefused {
            run_id,
            message,
            compile_errors,
        })
        .await;
    }

    async fn start_run(&mut self, request: RunRequest) {
        let RunRequest {
            run_id,
            project,
            input,
            backpack,
            from,
            concurrency,
            env,
            single,
            history,
            working_dir,
            executor,
            redrive,
        } = request;
        if let Err(message) = self.usable(&executor) {
            self.refuse(run_id, message, Vec::new()).await;
            return;
        }
        let errors: Vec<String> = error_messages(&project);
        if !errors.is_empty() {
            let message = format!("the project has problems:\n  {}", errors.join("\n  "));
            self.refuse(run_id, message, Vec::new()).await;
            return;
        }
        if !backpack.is_object() {
            self.refuse(
                run_id,
                "the backpack must be a JSON object".to_owned(),
                Vec::new(),
            )
            .await;
            return;
        }
        let plan = Arc::new(Plan::new(&project));
        let start = match start_of(&plan, &project, redrive, from.as_ref(), input, backpack) {
            Ok(start) => start,
            Err(message) => {
                self.refuse(run_id, message, Vec::new()).await;
                return;
            }
        };
        if let Some(path) = &history {
            self.close_idle_writers(path).await;
        }
        let history = match history.map(|path| self.writer(path)).transpose() {
            Ok(history) => history,
            Err(error) => {
                self.refuse(run_id, format!("can't record the run: {error}"), Vec::new())
                    .await;
                return;
            }
        };
        let number = self.take_number();
        let limit = concurrency
            .unwrap_or(project.settings.concurrency_limit)
            .max(1) as usize;
        let mut program = plan.program(number, &project, &env);
        program.cwd = working_dir.map(|dir| dir.to_string_lossy().into_owned());
        let requirements = super::environment::requirements(&project);
        let phase = if requirements.is_empty() || executor != Executor::Local {
            // A cluster's workers have the libraries themselves (the invoker checks): nothing to
            // build here.
            program.requirements = requirements;
            if let Some(invoker) = self.invokers.get_mut(&executor) {
                invoker.load(program);
            }
            Phase::Compiling { start }
        } else {
            self.prepare_environment(number, &run_id, requirements);
            Phase::Preparing {
                program: Box::new(program),
                start,
            }
        };
        let mut scheduler = RunScheduler::new(run_id, plan, number, limit, number << KEY_BITS);
        scheduler.set_single(single);
        self.runs.insert(
            number,
            ActiveRun {
                scheduler,
                executor,
                phase,
                project: Arc::new(project),
                last_progress: std::time::Instant::now(),
                history,
                output_lines: 0,
                pip_output: Vec::new(),
                service: None,
            },
        );
    }

    /// Builds (or finds in the cache) the environment with the project's libraries, off the event loop;
    /// pip's output goes out as [`RuntimeEvent::Log`] lines.
    fn prepare_environment(&self, number: u64, run_id: &RunId, requirements: Vec<String>) {
        let cache = self.env_cache.clone();
        let events = self.events.clone();
        let done = self.prepared_tx.clone();
        let run_id = run_id.clone();
        tokio::spawn(async move {
            let mut output = Vec::new();
            let result = super::environment::ensure(&cache, &requirements, |line| {
                output.push(line.clone());
                // Dropping a line of pip's chatter beats stalling the install on a slow consumer.
                let _ = events.try_send(RuntimeEvent::Log {
                    run_id: run_id.clone(),
                    line,
                });
            })
            .await
            .map_err(|e| e.to_string());
            let _ = done.send((number, result, output)).await;
        });
    }

    async fn prepared(
        &mut self,
        number: u64,
        prepared: Result<std::path::PathBuf, String>,
        output: Vec<String>,
    ) {
        if self.services.contains_key(&number) {
            self.service_prepared(number, prepared);
            return;
        }
        let Some(run) = self.runs.get_mut(&number) else {
            return;
        };
        // Recorded once the run has started (refused runs are not recorded).
        run.pip_output = output;
        let Phase::Preparing { .. } = &run.phase else {
            return;
        };
        let Phase::Preparing { mut program, start } =
            std::mem::replace(&mut run.phase, Phase::Checking)
        else {
            return;
        };
        match prepared {
            Ok(site_packages) => {
                program.site_packages = Some(site_packages.to_string_lossy().into_owned());
                if let Some(invoker) = self.invokers.get_mut(&run.executor) {
                    invoker.load(*program);
                }
                run.phase = Phase::Compiling { start };
            }
            Err(message) => {
                let run_id = run.scheduler.run_id().clone();
                self.runs.remove(&number);
                self.refuse(run_id, message, Vec::new()).await;
            }
        }
    }

    /// The writer for this database, started if need be (or again, if its file was deleted meanwhile:
    /// the old writer would go on writing into the deleted file).
    fn writer(&mut self, path: PathBuf) -> Result<HistoryWriter, super::history::HistoryError> {
        if let Some(writer) = self.writers.get(&path)
            && path.exists()
        {
            return Ok(writer.clone());
        }
        let writer = HistoryWriter::start_opening(&path)?;
        self.writers.insert(path, writer.clone());
        Ok(writer)
    }

    /// A run is about to record into `keep`: the databases no running run records into are closed
    /// (the editor moved to another project), so their WAL is merged now rather than at exit.
    async fn close_idle_writers(&mut self, keep: &Path) {
        let busy: Vec<&Path> = self
            .runs
            .values()
            .filter_map(|run| run.history.as_ref().map(HistoryWriter::path))
            .collect();
        let idle: Vec<PathBuf> = self
            .writers
            .keys()
            .filter(|path| path.as_path() != keep && !busy.contains(&path.as_path()))
            .cloned()
            .collect();
        for path in idle {
            if let Some(writer) = self.writers.remove(&path) {
                let _ = self.recorder.send(Recorded::Close(writer)).await;
            }
        }
    }

    /// The invoker of `executor`, or why runs can't go there. A cluster's invoker starts here, with the
    /// first run that goes there (and connects again itself for a run after the cluster went away).
    fn usable(&mut self, executor: &Executor) -> Result<&mut Box<dyn Invoker>, String> {
        if let Executor::Dask { scheduler } = executor
            && !self.invokers.contains_key(executor)
        {
            let events = InvokerEvents::new(executor.clone(), self.invoker_events.clone());
            self.invokers.insert(
                executor.clone(),
                Box::new(super::dask::start(scheduler.clone(), events)),
            );
        }
        self.invokers
            .get_mut(executor)
            .ok_or_else(|| format!("the runtime has no invoker for {executor:?} runs"))
    }

    async fn invoker_event(
        &mut self,
        executor: &Executor,
        event: InvokerEvent,
        touched: &mut Vec<u64>,
    ) {
        match event {
            InvokerEvent::Loaded { program, errors } => {
                self.loaded(program, errors).await;
            }
            InvokerEvent::Finished(results) => self.complete(results, touched),
            // The runs waiting for their code to load are refused with it; a later run tries again (the
            // invoker starts Python afresh for it), so one bad spell never refuses every run until a
            // restart. A service's code is gone with it: the service stops.
            InvokerEvent::Broken(message) => {
                self.services_broken(executor, &message).await;
                // Its runs already going get their invocations' results (failed); those yet to
                // start never will.
                let compiling: Vec<u64> = self
                    .runs
                    .iter()
                    .filter(|(_, run)| {
                        run.executor == *executor && !matches!(run.phase, Phase::Running)
                    })
                    .map(|(&number, _)| number)
                    .collect();
                for number in compiling {
                    if let Some(run) = self.runs.remove(&number) {
                        self.refuse(run.scheduler.run_id().clone(), message.clone(), Vec::new())
                            .await;
                    }
                }
            }
            InvokerEvent::Output { worker, lines } => {
                self.worker_output(executor, worker, lines).await;
            }
            InvokerEvent::Refused { program, message } => {
                if let Some(run) = self.runs.remove(&program) {
                    if let Some(invoker) = self.invokers.get_mut(&run.executor) {
                        invoker.unload(program);
                    }
                    self.refuse(run.scheduler.run_id().clone(), message, Vec::new())
                        .await;
                }
            }
        }
    }

    /// Finished tasks (the invoker's, or a service host's): each goes to its run; `touched` gets the
    /// runs that had any.
    fn complete(&mut self, results: Vec<TaskResult>, touched: &mut Vec<u64>) {
        // A batch's results are mostly of one run: look it up once per run met, not per result.
        let mut results = results.into_iter().peekable();
        while let Some(first) = results.next() {
            let number = first.key >> KEY_BITS;
            let run = self.runs.get_mut(&number);
            let same_run = std::iter::from_fn(|| results.next_if(|r| r.key >> KEY_BITS == number));
            let Some(run) = run else {
                same_run.for_each(drop);
                continue;
            };
            let results = std::iter::once(first).chain(same_run);
            match run.service {
                Some((service, lane)) => match self.services.get_mut(&service) {
                    Some(service) => run
                        .scheduler
                        .complete_all_in(results, &mut service.capacity.lane(lane)),
                    None => results.for_each(drop),
                },
                None => run.scheduler.complete_all(results),
            }
            touched.push(number);
        }
    }

    /// After results came in for the `touched` runs: the slots they freed go to the runs of their
    /// services that wait for one (request runs first), and every run that moved goes on.
    async fn after_completions(&mut self, mut touched: Vec<u64>) {
        let mut services: Vec<u64> = touched
            .iter()
            .filter_map(|number| self.runs.get(number)?.service.map(|(service, _)| service))
            .collect();
        services.sort_unstable();
        services.dedup();
        for service in services {
            touched.extend(self.dispatch(service));
        }
        touched.sort_unstable();
        touched.dedup();
        for run in touched {
            self.advance(run).await;
        }
    }

    /// Worker output belongs to no one invocation: every run going on on that executor gets it
    /// (workers are shared, so with two runs at once it can't say whose it is), up to
    /// [`WORKER_OUTPUT_LINES`] each. A served project's runs are many and short: its host shows the
    /// lines instead.
    async fn worker_output(&mut self, executor: &Executor, worker: usize, lines: Vec<String>) {
        self.service_output(executor, worker, &lines);
        let mut sends = Vec::new();
        for run in self.runs.values_mut() {
            if run.executor != *executor
                || run.service.is_some()
                || !matches!(run.phase, Phase::Running)
                || run.output_lines > WORKER_OUTPUT_LINES
            {
                continue;
            }
            let room = WORKER_OUTPUT_LINES - run.output_lines;
            let mut shown: Vec<String> = lines.iter().take(room).cloned().collect();
            run.output_lines += shown.len();
            if lines.len() > room {
                // Once, and never again for this run.
                run.output_lines = WORKER_OUTPUT_LINES + 1;
                shown.push(format!(
                    "[Braid shows a run's first {} lines of worker output; \
                     RUST_LOG=braid::worker=debug logs all of them]",
                    crate::text::count(WORKER_OUTPUT_LINES as u64)
                ));
            }
            if let Some(history) = &run.history {
                history.log(
                    run.scheduler.run_id(),
                    shown
                        .iter()
                        .map(|line| (worker + 1, line.clone()))
                        .collect(),
                );
            }
            sends.push(RuntimeEvent::WorkerOutput {
                run_id: run.scheduler.run_id().clone(),
                worker: worker + 1,
                lines: shown,
            });
        }
        for event in sends {
            self.emit(event).await;
        }
    }

    async fn loaded(&mut self, program: u64, errors: Vec<BlockCompileError>) {
        if self.services.contains_key(&program) {
            self.service_loaded(program, errors);
            return;
        }
        let Some(run) = self.runs.get_mut(&program) else {
            return;
        };
        if matches!(run.phase, Phase::Checking) {
            let compile_errors = compile_errors(&run.project, run.scheduler.plan(), errors);
            let check_id = run.scheduler.run_id().clone();
            if let Some(invoker) = self.invokers.get_mut(&run.executor) {
                invoker.unload(program);
            }
            self.runs.remove(&program);
            self.emit(RuntimeEvent::Checked {
                check_id,
                compile_errors,
            })
            .await;
            return;
        }
        if !errors.is_empty() {
            let compile_errors = compile_errors(&run.project, run.scheduler.plan(), errors);
            let message = format!(
                "the code has problems, so nothing ran:\n  {}",
                compile_errors
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("\n  ")
            );
            let run_id = run.scheduler.run_id().clone();
            if let Some(invoker) = self.invokers.get_mut(&run.executor) {
                invoker.unload(program);
            }
            self.runs.remove(&program);
            self.refuse(run_id, message, compile_errors).await;
            return;
        }
        let Phase::Compiling { start } = std::mem::replace(&mut run.phase, Phase::Running) else {
            return;
        };
        let redrive_of = match &start {
            Start::Redrive(redrive) => Some(redrive.of.clone()),
            Start::Entries { .. } => None,
        };
        let run_id = run.scheduler.run_id().clone();
        let started_at_ms = now_ms();
        if let Some(history) = &run.history {
            // The run's row is committed before any of its invocations starts: a Braid killed from
            // here on leaves the run in the history, as interrupted. (A small transaction of its own;
            // the engine waits for it, as it waits for a full writer channel.)
            let _ = history
                .run_started_flushed(
                    &run_id,
                    &run.project.name,
                    started_at_ms,
                    &run.executor,
                    redrive_of.as_ref(),
                )
                .await;
            let pip = std::mem::take(&mut run.pip_output);
            history.log(&run_id, pip.into_iter().map(|line| (0, line)).collect());
        }
        match start {
            Start::Entries {
                entries,
                input,
                backpack,
            } => run.scheduler.start(&entries, &input, &backpack),
            Start::Redrive(redrive) => run.scheduler.start_redrive(*redrive),
        }
        let executor = run.executor.clone();
        self.emit(RuntimeEvent::RunStarted {
            run_id,
            started_at_ms,
            executor,
            redrive_of,
        })
        .await;
        self.advance(program).await;
    }

    /// After results came in: start what may start, publish records, end the run when nothing is left.
    async fn advance(&mut self, number: u64) {
        let Some(run) = self.runs.get_mut(&number) else {
            return;
        };
        if !matches!(run.phase, Phase::Running) {
            return;
        }
        let stops = run.scheduler.take_stops();
        if let Some(invoker) = self.invokers.get_mut(&run.executor) {
            if !stops.is_empty() {
                invoker.cancel(stops);
            }
            // A service's runs get their slots from it (`dispatch`).
            let tasks = if run.service.is_none() {
                run.scheduler.take_ready()
            } else {
                Vec::new()
            };
            if !tasks.is_empty() {
                invoker.submit(tasks);
            }
        }
        self.answer(number);
        let Some(run) = self.runs.get_mut(&number) else {
            return;
        };
        let records = run.scheduler.take_records();
        let run_id = run.scheduler.run_id().clone();
        let idle = run.scheduler.is_idle();
        if !records.is_empty() {
            match &run.history {
                Some(writer) => {
                    let sent = self
                        .recorder
                        .send(Recorded::Records {
                            writer: writer.clone(),
                            run_id: run_id.clone(),
                            records,
                        })
                        .await;
                    // The recorder is gone (short of a panic, it never is): the records still go out.
                    if let Err(mpsc::error::SendError(Recorded::Records { records, .. })) = sent {
                        self.emit(RuntimeEvent::Invocations {
                            run_id: run_id.clone(),
                            records,
                        })
                        .await;
                    }
                }
                None => {
                    self.emit(RuntimeEvent::Invocations {
                        run_id: run_id.clone(),
                        records,
                    })
                    .await;
                }
            }
        }
        if idle && let Some(run) = self.runs.remove(&number) {
            let counts = run.scheduler.counts();
            let fan_ins = run.scheduler.fan_in_counts();
            let summary: RunSummary = run.scheduler.finish();
            match run.service {
                // The program is the service's, for its other runs.
                Some(service) => {
                    self.service_run_finished(service, number, &run_id, summary.status);
                }
                None => {
                    if let Some(invoker) = self.invokers.get_mut(&run.executor) {
                        invoker.unload(number);
                    }
                }
            }
            self.emit(RuntimeEvent::Progress {
                run_id,
                counts,
                fan_ins,
            })
            .await;
            debug_assert!(summary.status != RunStatus::Running);
            match run.history {
                Some(writer) => {
                    let sent = self
                        .recorder
                        .send(Recorded::Finished { writer, summary })
                        .await;
                    // The recorder is gone: the run ends all the same, failed, rather than never.
                    if let Err(mpsc::error::SendError(Recorded::Finished {
                        writer,
                        mut summary,
                    })) = sent
                    {
                        unrecorded(&mut summary, writer.path(), "Braid's recorder stopped");
                        self.emit(RuntimeEvent::RunFinished(summary)).await;
                    }
                }
                None => self.emit(RuntimeEvent::RunFinished(summary)).await,
            }
        }
    }

    /// When the earliest retry of any run is due.
    fn next_wake(&self) -> Option<tokio::time::Instant> {
        let due = self
            .runs
            .values()
            .filter(|run| matches!(run.phase, Phase::Running))
            .filter_map(|run| run.scheduler.next_wake())
            .min_by(f64::total_cmp)?;
        let wait = Duration::from_secs_f64(((due - now_ms()) / 1000.0).clamp(0.0, 86_400.0));
        Some(tokio::time::Instant::now() + wait)
    }

    /// Queues the retries that are due, and starts them.
    async fn wake_due(&mut self) {
        let now = now_ms();
        let due: Vec<u64> = self
            .runs
            .iter_mut()
            .filter(|(_, run)| matches!(run.phase, Phase::Running))
            .filter(|(_, run)| run.scheduler.next_wake().is_some_and(|at| at <= now))
            .map(|(&number, run)| {
                run.scheduler.wake(now);
                number
            })
            .collect();
        for number in due {
            self.advance(number).await;
        }
    }

    async fn progress(&mut self) {
        let now = std::time::Instant::now();
        let mut events = Vec::new();
        for run in self.runs.values_mut() {
            if matches!(run.phase, Phase::Running)
                && now.duration_since(run.last_progress) >= PROGRESS_EVERY
            {
                run.last_progress = now;
                events.push(RuntimeEvent::Progress {
                    run_id: run.scheduler.run_id().clone(),
                    counts: run.scheduler.counts(),
                    fan_ins: run.scheduler.fan_in_counts(),
                });
            }
        }
        for event in events {
            self.emit(event).await;
        }
    }
}

/// Where a run starts: an earlier run's entries for a redrive, else the chosen block or the entry
/// blocks; or why it can't start.
fn start_of(
    plan: &Plan,
    project: &Project,
    redrive: Option<Arc<Redrive>>,
    from: Option<&BlockId>,
    input: Value,
    backpack: Value,
) -> Result<Start, String> {
    if let Some(redrive) = redrive {
        let redrive = Arc::unwrap_or_clone(redrive);
        if !redrive
            .entries
            .iter()
            .any(|e| plan.by_id.contains_key(&e.block))
        {
            return Err(format!(
                "run {} started at blocks that are no longer in the project, so it can't be redriven",
                redrive.of
            ));
        }
        // What carried invocations fired then fires again, by transition id: a transition drawn anew
        // since (another id) would fire nothing, and the run would end "succeeded" having run nothing.
        let transitions: std::collections::HashSet<&TransitionId> =
            project.transitions.iter().map(|t| &t.id).collect();
        let gone = redrive
            .carried
            .iter()
            .find_map(|carried| match &carried.end {
                CarriedEnd::Succeeded { fired, .. } => fired
                    .iter()
                    .any(|id| !transitions.contains(id))
                    .then_some(&carried.block),
                CarriedEnd::Failed { .. } => None,
            });
        if let Some(block) = gone {
            let name = project
                .block(block)
                .map_or_else(|| block.to_string(), |b| format!("{:?}", b.name));
            return Err(format!(
                "run {} went on from block {name} through transitions that are no longer in the \
                 project, so it can't be redriven: run the project afresh",
                redrive.of
            ));
        }
        return Ok(Start::Redrive(Box::new(redrive)));
    }
    let entries: Vec<usize> = match from {
        Some(id) => vec![
            *plan
                .by_id
                .get(id)
                .ok_or_else(|| format!("there is no block {id}"))?,
        ],
        None => project
            .entry_blocks()
            .iter()
            .filter_map(|b| plan.by_id.get(&b.id).copied())
            .collect(),
    };
    if entries.is_empty() {
        return Err(if project.blocks.is_empty() {
            "the project has no blocks".to_owned()
        } else {
            "every block has an incoming transition, so there is no entry block: choose a block to start from".to_owned()
        });
    }
    Ok(Start::Entries {
        entries,
        input,
        backpack,
    })
}

/// Waits until `at`, or forever without one.
async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// The errors as the editor shows them: an `if` expression's is the transition's, named by its id (the
/// plan lists a block's `if`s in the order the program gave them to the invoker).
fn compile_errors(
    project: &Project,
    plan: &Plan,
    errors: Vec<BlockCompileError>,
) -> Vec<CompileError> {
    errors
        .into_iter()
        .map(|e| {
            let block = project.blocks.get(e.block as usize);
            let fan_out = e.fan_out_index.and_then(|i| {
                plan.blocks
                    .get(e.block as usize)
                    .and_then(|b| b.outgoing.fan_outs.get(i as usize))
                    .map(|edge| edge.transition.0.to_string())
            });
            let what = match e.if_index {
                None if fan_out.is_some() => fan_out.unwrap_or_default(),
                None => "code".to_owned(),
                Some(i) => plan
                    .blocks
                    .get(e.block as usize)
                    .and_then(|b| b.outgoing.ifs.get(i as usize))
                    .map_or_else(
                        || format!("if #{}", i + 1),
                        |edge| edge.transition.0.to_string(),
                    ),
            };
            CompileError {
                block_id: block.map_or(BlockId("".into()), |b| b.id.clone()),
                block: block.map(|b| b.name.clone()).unwrap_or_default(),
                what,
                line: e.line,
                message: e.message,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Project;

    /// A recorder that has stopped (its thread panicked) neither hangs a recorded run nor loses its
    /// records: they go out as events, and the run ends, failed, saying it is not recorded.
    #[test]
    fn a_recorded_run_ends_failed_when_the_recorder_has_stopped() {
        let dir = tempfile::tempdir().unwrap();
        let history = dir.path().join("p.history.sqlite");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let (requests_tx, requests) = mpsc::channel(4);
        let (events_tx, mut events) = mpsc::channel(64);
        let (recorder, stopped) = mpsc::channel(1);
        drop(stopped);
        let (finished, recorder_finished) = oneshot::channel();
        drop(finished);
        let engine = Engine::run(
            RuntimeConfig::scripted(crate::runtime::scripted::Script::new()),
            requests,
            events_tx,
            (recorder, recorder_finished),
        );
        let mut project = Project::default();
        project.blocks.push(crate::model::Block::new_code(
            "A",
            "",
            crate::model::Position::default(),
        ));
        let mut request = RunRequest::new(RunId("r".into()), project);
        request.history = Some(history.clone());
        request.input = serde_json::json!(7);
        let run = async move {
            requests_tx
                .send(RuntimeRequest::Run(Box::new(request)))
                .await
                .unwrap();
            let mut records = Vec::new();
            loop {
                match tokio::time::timeout(Duration::from_secs(20), events.recv()).await {
                    Ok(Some(RuntimeEvent::Invocations { records: more, .. })) => {
                        records.extend(more);
                    }
                    Ok(Some(RuntimeEvent::RunFinished(summary))) => break (records, summary),
                    Ok(Some(_)) => {}
                    Ok(None) | Err(_) => panic!("the run did not end"),
                }
            }
            // Dropping the requests' sender ends the engine.
        };
        let ((), (records, summary)) = runtime.block_on(async { tokio::join!(engine, run) });
        assert_eq!(records.len(), 1);
        assert_eq!(records[0].output, Some(serde_json::json!(7)));
        assert_eq!(summary.status, RunStatus::Failed);
        assert_eq!(
            summary.failures[0].error,
            format!(
                "the run is not recorded in {}: Braid's recorder stopped",
                history.display()
            )
        );
    }

    #[test]
    fn a_handle_over_channels_passes_requests_out_and_events_in() {
        let (requests_tx, mut requests) = mpsc::channel(4);
        let (events, events_rx) = mpsc::channel(4);
        let mut handle = RuntimeHandle::from_channels(requests_tx, events_rx);
        let run_id = RunId("r".into());
        handle.send(RuntimeRequest::Cancel(run_id.clone()));
        handle
            .requester()
            .send(RuntimeRequest::Run(Box::new(RunRequest::new(
                run_id.clone(),
                Project::default(),
            ))));
        assert!(matches!(requests.try_recv(), Ok(RuntimeRequest::Cancel(id)) if id == run_id));
        assert!(
            matches!(requests.try_recv(), Ok(RuntimeRequest::Run(request)) if request.run_id == run_id)
        );
        assert!(handle.try_recv().is_none());
        events
            .try_send(RuntimeEvent::Log {
                run_id: run_id.clone(),
                line: "hello".to_owned(),
            })
            .unwrap();
        assert!(matches!(
            handle.try_recv(),
            Some(RuntimeEvent::Log { line, .. }) if line == "hello"
        ));
        drop(events);
        assert!(handle.recv_blocking().is_none(), "the events ended");
        let asked = std::time::Instant::now();
        handle.shutdown(Duration::from_secs(10));
        assert!(
            asked.elapsed() < Duration::from_secs(5),
            "nothing to wait for"
        );
    }
}
