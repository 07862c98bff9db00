//! Serving a project: the layer above the runtime that `braid serve` and the editor's Serve mode use.
//!
//! [`start`] loads the project's code once into the runtime (as a service, see
//! `runtime::engine::service`), then answers its API Endpoints over HTTP (`http.rs`, axum on tokio),
//! fires its Timers (`timers.rs`), keeps its Queues' messages on disk and hands them out in batches
//! (`queues.rs`, `dispatch.rs`), and publishes to its Topics. Every request, firing and batch is a
//! run of its own, recorded in the project's history like any other. The runtime decides who gets a
//! slot: requests draw on a reserve that background work can't take (`runtime::capacity`).
//!
//! The host runs on a tokio runtime of its own (two threads), beside the engine's.

mod dispatch;
mod http;
pub mod queues;
mod timers;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde_json::Value;
use tokio::sync::{Notify, mpsc, oneshot, watch};

use crate::model::schedule::Schedule;
use crate::model::validate::{endpoint_method, error_messages};
use crate::model::{BlockId, BlockKind, Project};
use crate::run::{RunId, RunStatus};
use crate::runtime::capacity::Lane;
use crate::runtime::invoker::{Outcome, TaskResult};
use crate::runtime::scheduler::Answer;
use crate::runtime::{Requester, RuntimeRequest, ServeRequest, ServiceNotice, Trigger};

/// Where `braid serve` listens unless told otherwise.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7700";
/// The largest request body an endpoint takes (as an AWS Lambda's synchronous payload); a larger one
/// is answered 413.
pub const MAX_BODY_BYTES: usize = 6 * 1024 * 1024;
/// Where Braid's own routes live (queues, topics, status); no endpoint may use it.
pub const OWN_PREFIX: &str = "/_braid/";
/// How long starting waits for the project's code to load (its libraries to install, first).
const READY_WITHIN: Duration = Duration::from_mins(10);
/// How long stopping waits for the runs going on to end.
const STOP_WITHIN: Duration = Duration::from_secs(10);

/// The address `text` names (`127.0.0.1:7700`, `localhost:0`), or a sentence saying it is not one.
pub fn listen_address(text: &str) -> Result<SocketAddr, String> {
    use std::net::ToSocketAddrs as _;
    text.trim()
        .to_socket_addrs()
        .ok()
        .and_then(|mut addresses| addresses.next())
        .ok_or_else(|| format!("{text:?} is not an address to listen on (like {DEFAULT_LISTEN})"))
}

/// A line for people about what the service does: a request answered, a worker's output.
pub type Log = Arc<dyn Fn(&str) + Send + Sync>;

/// How to serve.
#[derive(Clone)]
pub struct Options {
    pub listen: SocketAddr,
    /// The limit every run shares; the project's setting when `None`.
    pub concurrency: Option<u32>,
    /// Values of the blocks' environment variables.
    pub env: std::collections::BTreeMap<String, String>,
    pub max_body_bytes: usize,
    pub log: Log,
}

impl std::fmt::Debug for Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Options")
            .field("listen", &self.listen)
            .field("concurrency", &self.concurrency)
            .field("max_body_bytes", &self.max_body_bytes)
            .finish_non_exhaustive()
    }
}

impl Options {
    pub fn new(listen: SocketAddr, log: Log) -> Self {
        Self {
            listen,
            concurrency: None,
            env: std::collections::BTreeMap::new(),
            max_body_bytes: MAX_BODY_BYTES,
            log,
        }
    }
}

/// An endpoint, as it is answered.
#[derive(Debug)]
struct Route {
    block: BlockId,
    name: String,
    method: String,
    path: String,
    timeout: Duration,
    requests: AtomicU64,
}

#[derive(Debug)]
struct Timer {
    block: BlockId,
    name: String,
    expression: String,
    schedule: Schedule,
    /// When serving started: a rate counts from it.
    since: chrono::DateTime<chrono::Utc>,
    /// The next firing, in ms since the epoch (0: none left).
    next_ms: AtomicU64,
    fired: AtomicU64,
}

#[derive(Debug)]
struct Queue {
    block: BlockId,
    name: String,
    batch_size: usize,
    /// Batches whose runs are going on.
    in_flight: AtomicUsize,
    /// Woken when messages may be waiting (some were kept, a batch ended).
    wake: Notify,
}

#[derive(Debug)]
struct Topic {
    block: BlockId,
    name: String,
    published: AtomicU64,
}

/// What answers a request run, as the host learns it.
#[derive(Debug)]
enum Reply {
    Answer(Answer),
    /// The run ended without an answer, with this status.
    Ended(RunStatus),
    /// No run was started, with why.
    Refused(String),
}

/// The state the host's tasks share.
struct Host {
    service: RunId,
    requester: Requester,
    routes: Vec<Route>,
    timers: Vec<Timer>,
    queues: Vec<Queue>,
    topics: Vec<Topic>,
    store: Option<queues::Store>,
    /// Request runs waiting for their answer.
    pending: Mutex<HashMap<RunId, oneshot::Sender<Reply>>>,
    /// Batch runs going on: their queue (index) and messages.
    batches: Mutex<HashMap<RunId, (usize, Vec<i64>)>>,
    /// Batch runs one queue may have going at once: as many as background work has slots.
    window: usize,
    depths: Mutex<HashMap<String, queues::Depth>>,
    max_body_bytes: usize,
    log: Log,
    base_url: String,
}

impl Host {
    fn route(&self, method: &str, path: &str) -> Result<&Route, bool> {
        let mut path_known = false;
        for route in &self.routes {
            if route.path == path {
                path_known = true;
                if route.method == method || route.method == "ANY" {
                    return Ok(route);
                }
            }
        }
        Err(path_known)
    }

    /// A queue by its block's name or id.
    fn queue(&self, name: &str) -> Option<(usize, &Queue)> {
        self.queues
            .iter()
            .enumerate()
            .find(|(_, q)| q.name == name || *q.block.0 == *name)
    }

    fn topic(&self, name: &str) -> Option<&Topic> {
        self.topics
            .iter()
            .find(|t| t.name == name || *t.block.0 == *name)
    }

    /// Starts a run at `block`; for a request run, the receiver gets what answers it.
    async fn trigger(
        &self,
        block: &BlockId,
        input: Value,
        lane: Lane,
    ) -> (RunId, oneshot::Receiver<Reply>) {
        let run_id = RunId::new_random();
        let (reply, answer) = oneshot::channel();
        if lane == Lane::Request {
            lock(&self.pending).insert(run_id.clone(), reply);
        }
        self.requester
            .send_async(RuntimeRequest::Trigger(Box::new(Trigger {
                service: self.service.clone(),
                run_id: run_id.clone(),
                block: block.clone(),
                input,
                lane,
            })))
            .await;
        (run_id, answer)
    }

    /// What the runtime tells the service, until it has stopped.
    async fn notices(self: Arc<Self>, mut notices: mpsc::UnboundedReceiver<ServiceNotice>) {
        while let Some(notice) = notices.recv().await {
            match notice {
                ServiceNotice::Answer { run_id, answer } => {
                    if let Some(waiting) = lock(&self.pending).remove(&run_id) {
                        let _ = waiting.send(Reply::Answer(answer));
                    }
                }
                ServiceNotice::Finished { run_id, status } => {
                    if let Some(waiting) = lock(&self.pending).remove(&run_id) {
                        let _ = waiting.send(Reply::Ended(status));
                    }
                    let batch = lock(&self.batches).remove(&run_id);
                    if let Some((index, ids)) = batch {
                        self.batch_ended(index, ids, &run_id, status);
                    }
                }
                ServiceNotice::RunRefused { run_id, message } => {
                    (self.log)(&format!("run {run_id} was not started: {message}"));
                    if let Some(waiting) = lock(&self.pending).remove(&run_id) {
                        let _ = waiting.send(Reply::Refused(message));
                    }
                    let batch = lock(&self.batches).remove(&run_id);
                    if let Some((index, ids)) = batch {
                        self.batch_ended(index, ids, &run_id, RunStatus::Cancelled);
                    }
                }
                ServiceNotice::Keep {
                    key,
                    run_id,
                    queue,
                    messages,
                } => {
                    let host = Arc::clone(&self);
                    tokio::spawn(async move { host.keep(key, &run_id, &queue, messages).await });
                }
                ServiceNotice::WorkerOutput { worker, lines } => {
                    for line in lines {
                        (self.log)(&format!("worker {worker}: {line}"));
                    }
                }
                ServiceNotice::Refused { message, .. } => {
                    (self.log)(&format!("the service stopped: {message}"));
                }
                ServiceNotice::Stopped => break,
                ServiceNotice::Ready => {}
            }
        }
    }

    /// A run reached a Queue: its messages are kept, then the run goes on.
    async fn keep(&self, key: u64, run_id: &RunId, queue: &BlockId, messages: Vec<Value>) {
        let count = messages.len();
        let index = self.queues.iter().position(|q| q.block == *queue);
        let kept = match (&self.store, index) {
            (Some(store), Some(index)) => store
                .put(&self.queues[index].block.0, messages)
                .await
                .map(|_| index),
            _ => Err(format!("the queue {queue} has no store")),
        };
        let now = crate::run::now_ms();
        let outcome = match kept {
            Ok(index) => {
                self.queues[index].wake.notify_one();
                Outcome::Returned {
                    output: serde_json::json!({ "queued": count }),
                    backpack: None,
                    ifs: Vec::new(),
                    items: Vec::new(),
                }
            }
            Err(message) => {
                (self.log)(&format!("run {run_id}: messages not kept: {message}"));
                Outcome::Raised {
                    error: crate::run::ErrorInfo {
                        kind: "QueueError".to_owned(),
                        message,
                        traceback: String::new(),
                        line: None,
                    },
                    backpack: None,
                }
            }
        };
        self.requester
            .send_async(RuntimeRequest::Kept(vec![TaskResult {
                key,
                attempt: 1,
                started_at_ms: Some(now),
                ended_at_ms: Some(crate::run::now_ms()),
                stdout: String::new(),
                stderr: String::new(),
                outcome,
                worker: None,
            }]))
            .await;
    }

    fn batch_ended(&self, index: usize, ids: Vec<i64>, run_id: &RunId, status: RunStatus) {
        let queue = &self.queues[index];
        if let Some(store) = &self.store {
            let outcome = match status {
                RunStatus::Succeeded => queues::Outcome::Succeeded,
                RunStatus::Cancelled | RunStatus::Running | RunStatus::Interrupted => {
                    queues::Outcome::Stopped
                }
                RunStatus::Failed => {
                    queues::Outcome::Failed(format!("its batch's run {run_id} failed"))
                }
            };
            store.settle(&queue.block.0, ids, outcome);
        }
        queue.in_flight.fetch_sub(1, Ordering::AcqRel);
        queue.wake.notify_one();
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// What serving looks like now, for the editor and `GET /_braid/status`.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct Status {
    pub endpoints: Vec<EndpointStatus>,
    pub timers: Vec<TimerStatus>,
    pub queues: Vec<QueueStatus>,
    pub topics: Vec<TopicStatus>,
}

#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct EndpointStatus {
    pub block: BlockId,
    pub name: String,
    pub method: String,
    pub url: String,
    pub requests: u64,
}

#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct TimerStatus {
    pub block: BlockId,
    pub name: String,
    pub schedule: String,
    /// The next firing, ms since the epoch (UTC); `None` when the schedule has none left.
    pub next_fire_ms: Option<f64>,
    pub fired: u64,
}

#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct QueueStatus {
    pub block: BlockId,
    pub name: String,
    /// Messages waiting for a batch.
    pub depth: u64,
    /// Messages in batches being run.
    pub in_flight: u64,
    /// Messages whose batches failed too often (see `queues::MAX_ATTEMPTS`).
    pub dead: u64,
}

#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct TopicStatus {
    pub block: BlockId,
    pub name: String,
    pub url: String,
    pub published: u64,
}

impl Host {
    fn status(&self) -> Status {
        let depths = lock(&self.depths).clone();
        Status {
            endpoints: self
                .routes
                .iter()
                .map(|r| EndpointStatus {
                    block: r.block.clone(),
                    name: r.name.clone(),
                    method: r.method.clone(),
                    url: format!("{}{}", self.base_url, r.path),
                    requests: r.requests.load(Ordering::Relaxed),
                })
                .collect(),
            timers: self
                .timers
                .iter()
                .map(|t| TimerStatus {
                    block: t.block.clone(),
                    name: t.name.clone(),
                    schedule: t.expression.clone(),
                    next_fire_ms: match t.next_ms.load(Ordering::Relaxed) {
                        0 => None,
                        ms => Some(ms as f64),
                    },
                    fired: t.fired.load(Ordering::Relaxed),
                })
                .collect(),
            queues: self
                .queues
                .iter()
                .map(|q| {
                    let depth = depths.get(&*q.block.0).copied().unwrap_or_default();
                    QueueStatus {
                        block: q.block.clone(),
                        name: q.name.clone(),
                        depth: depth.ready,
                        in_flight: depth.taken,
                        dead: depth.dead,
                    }
                })
                .collect(),
            topics: self
                .topics
                .iter()
                .map(|t| TopicStatus {
                    block: t.block.clone(),
                    name: t.name.clone(),
                    url: format!("{}{OWN_PREFIX}topics/{}", self.base_url, t.block),
                    published: t.published.load(Ordering::Relaxed),
                })
                .collect(),
        }
    }
}

/// A project being served. Dropping it stops serving (as [`Served::stop`] does).
pub struct Served {
    host: Arc<Host>,
    address: SocketAddr,
    stop: watch::Sender<bool>,
    /// Ends once the runtime has said the service stopped.
    notices_done: Option<tokio::task::JoinHandle<()>>,
    server_done: Option<tokio::task::JoinHandle<()>>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl std::fmt::Debug for Served {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Served")
            .field("address", &self.address)
            .finish_non_exhaustive()
    }
}

impl Served {
    /// The address it listens on (the port the system chose, for `:0`).
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// `http://127.0.0.1:7700`
    pub fn base_url(&self) -> &str {
        &self.host.base_url
    }

    pub fn status(&self) -> Status {
        self.host.status()
    }

    /// Stops serving: no new request, firing or batch; the runs going on are cancelled (a batch's
    /// messages go back, ready); waits for that, at most a few seconds.
    pub fn stop(mut self) {
        self.stop_now();
    }

    fn stop_now(&mut self) {
        let Some(runtime) = self.runtime.take() else {
            return;
        };
        let _ = self.stop.send(true);
        let host = Arc::clone(&self.host);
        let notices = self.notices_done.take();
        let server = self.server_done.take();
        runtime.block_on(async move {
            host.requester
                .send_async(RuntimeRequest::StopServing(host.service.clone()))
                .await;
            let ended = async {
                if let Some(notices) = notices {
                    let _ = notices.await;
                }
                if let Some(server) = server {
                    let _ = server.await;
                }
            };
            if tokio::time::timeout(STOP_WITHIN, ended).await.is_err() {
                tracing::warn!("serving did not stop within {STOP_WITHIN:?}");
            }
        });
        runtime.shutdown_timeout(Duration::from_secs(1));
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        self.stop_now();
    }
}

/// Why serving could not start: each a line for people.
#[derive(Debug, thiserror::Error)]
#[error("{}", .0.join("\n"))]
pub struct NotServed(pub Vec<String>);

/// What would stop `project` from being served, each a line: its validation errors, and capacity
/// reserved for blocks that leaves nothing for the rest.
pub fn problems(project: &Project, concurrency: Option<u32>) -> Vec<String> {
    let mut problems: Vec<String> = error_messages(project);
    let limit = concurrency.unwrap_or(project.settings.concurrency_limit);
    let reserved: u64 = project
        .blocks
        .iter()
        .filter_map(|b| b.code().and_then(|c| c.concurrency_cap))
        .map(u64::from)
        .sum();
    if limit > 0 && reserved >= u64::from(limit) {
        problems.push(format!(
            "The blocks' reserved concurrency adds up to {reserved}, which leaves none of the limit of \
             {limit} for the other blocks: lower a block's cap or raise the limit"
        ));
    }
    problems
}

/// Starts serving `project` (saved at `project_file`, whose `.braid/` folder keeps the history and
/// the queues' messages) on the runtime `requester` reaches. Waits until the code has loaded.
pub fn start(
    project: &Project,
    project_file: Option<&Path>,
    requester: &Requester,
    options: &Options,
) -> Result<Served, NotServed> {
    let problems = problems(project, options.concurrency);
    if !problems.is_empty() {
        return Err(NotServed(problems));
    }
    let listener = std::net::TcpListener::bind(options.listen).map_err(|e| {
        NotServed(vec![if e.kind() == std::io::ErrorKind::AddrInUse {
            format!(
                "{} is in use (another braid serve?): choose another with --listen",
                options.listen
            )
        } else {
            format!("can't listen on {}: {e}", options.listen)
        }])
    })?;
    let address = listener
        .local_addr()
        .map_err(|e| NotServed(vec![format!("can't listen on {}: {e}", options.listen)]))?;
    listener
        .set_nonblocking(true)
        .map_err(|e| NotServed(vec![format!("can't listen on {address}: {e}")]))?;
    let has_queues = project
        .blocks
        .iter()
        .any(|b| matches!(b.kind, BlockKind::Queue { .. }));
    let store = match (has_queues, project_file) {
        (false, _) => None,
        (true, Some(file)) => Some(
            queues::Store::open(&queues::path_for_project(file)).map_err(|e| NotServed(vec![e]))?,
        ),
        (true, None) => {
            return Err(NotServed(vec![
                "the project has Queue blocks: save it first, so their messages have a place to be kept"
                    .to_owned(),
            ]));
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("braid-serve")
        .enable_all()
        .build()
        .map_err(|e| NotServed(vec![format!("can't start serving: {e}")]))?;

    let limit = options
        .concurrency
        .unwrap_or(project.settings.concurrency_limit)
        .max(1);
    let background = limit - project.settings.request_reserve().min(limit - 1);
    let base_url = format!("http://{address}");
    let host = Arc::new(Host {
        service: RunId::new_random(),
        requester: requester.clone(),
        routes: routes(project),
        timers: project
            .blocks
            .iter()
            .filter_map(|b| match &b.kind {
                BlockKind::Timer {
                    schedule_expression,
                    ..
                } => {
                    let schedule = Schedule::parse(schedule_expression).ok()?;
                    let since = chrono::Utc::now();
                    let next = schedule
                        .next_after(since)
                        .map_or(0, |next| next.timestamp_millis().max(1) as u64);
                    Some(Timer {
                        block: b.id.clone(),
                        name: b.name.clone(),
                        expression: schedule_expression.clone(),
                        schedule,
                        since,
                        next_ms: AtomicU64::new(next),
                        fired: AtomicU64::new(0),
                    })
                }
                _ => None,
            })
            .collect(),
        queues: project
            .blocks
            .iter()
            .filter_map(|b| match &b.kind {
                BlockKind::Queue { batch_size } => Some(Queue {
                    block: b.id.clone(),
                    name: b.name.clone(),
                    batch_size: (*batch_size).max(1) as usize,
                    in_flight: AtomicUsize::new(0),
                    wake: Notify::new(),
                }),
                _ => None,
            })
            .collect(),
        topics: project
            .blocks
            .iter()
            .filter(|b| matches!(b.kind, BlockKind::Topic))
            .map(|b| Topic {
                block: b.id.clone(),
                name: b.name.clone(),
                published: AtomicU64::new(0),
            })
            .collect(),
        store,
        pending: Mutex::new(HashMap::new()),
        batches: Mutex::new(HashMap::new()),
        window: background as usize,
        depths: Mutex::new(HashMap::new()),
        max_body_bytes: options.max_body_bytes,
        log: Arc::clone(&options.log),
        base_url,
    });

    // Load the code; nothing is answered before it has.
    let (notices_tx, mut notices) = mpsc::unbounded_channel();
    let history = project_file.map(crate::runtime::history::History::path_for_project);
    requester.send(RuntimeRequest::Serve(Box::new(ServeRequest {
        service: host.service.clone(),
        project: project.clone(),
        concurrency: options.concurrency,
        request_reserve: None,
        env: options.env.clone(),
        history,
        working_dir: project_file.and_then(crate::model::local_folder::working_dir),
        executor: crate::run::Executor::Local,
        notices: notices_tx,
    })));
    let ready = runtime.block_on(async {
        tokio::time::timeout(READY_WITHIN, async {
            loop {
                match notices.recv().await {
                    Some(ServiceNotice::Ready) => return Ok(()),
                    Some(ServiceNotice::Refused { message, .. }) => return Err(message),
                    Some(_) => {}
                    None => return Err("the runtime stopped".to_owned()),
                }
            }
        })
        .await
        .unwrap_or_else(|_| Err(format!("the code did not load within {READY_WITHIN:?}")))
    });
    if let Err(message) = ready {
        return Err(NotServed(message.lines().map(str::to_owned).collect()));
    }

    let (stop, stopped) = watch::channel(false);
    let guard = runtime.enter();
    let notices_done = runtime.spawn(Arc::clone(&host).notices(notices));
    let server_done = runtime.spawn(http::serve(Arc::clone(&host), listener, stopped.clone()));
    for index in 0..host.timers.len() {
        runtime.spawn(timers::run(Arc::clone(&host), index, stopped.clone()));
    }
    for index in 0..host.queues.len() {
        runtime.spawn(dispatch::run(Arc::clone(&host), index, stopped.clone()));
    }
    if host.store.is_some() {
        runtime.spawn(dispatch::watch_depths(Arc::clone(&host), stopped));
    }
    drop(guard);
    Ok(Served {
        host,
        address,
        stop,
        notices_done: Some(notices_done),
        server_done: Some(server_done),
        runtime: Some(runtime),
    })
}

fn routes(project: &Project) -> Vec<Route> {
    project
        .blocks
        .iter()
        .filter_map(|b| match &b.kind {
            BlockKind::ApiEndpoint {
                api_path,
                http_method,
                timeout_s,
            } => Some(Route {
                block: b.id.clone(),
                name: b.name.clone(),
                method: endpoint_method(http_method),
                path: api_path.clone(),
                timeout: Duration::from_secs(*timeout_s),
                requests: AtomicU64::new(0),
            }),
            _ => None,
        })
        .collect()
}

/// Where a project's queue messages are kept (for messages and tests).
pub fn queue_store_path(project_file: &Path) -> PathBuf {
    queues::path_for_project(project_file)
}
