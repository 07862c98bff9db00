//! Served projects in the engine: a project's code is loaded once, and every run it starts (a request,
//! a timer's firing, a queue's batch) shares that program, its plan and one capacity (see
//! `capacity.rs`). What the service's host must act on (a request's answer, messages to keep, a run's
//! end) reaches it as [`ServiceNotice`]s on a channel of its own, whoever takes the runtime's events.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;

use serde_json::Value;
use tokio::sync::mpsc;

use super::{ActiveRun, Engine, Phase};
use crate::model::validate::error_messages;
use crate::model::{BlockId, Project};
use crate::run::Executor;
use crate::run::{CompileError, RunId, RunStatus, now_ms};
use crate::runtime::capacity::{Capacity, Lane};
use crate::runtime::event::RuntimeEvent;
use crate::runtime::history::HistoryWriter;
use crate::runtime::invoker::{BlockCompileError, Program, TaskResult};
use crate::runtime::plan::{Behaviour, Plan};
use crate::runtime::scheduler::{Answer, KEY_BITS, RunScheduler};

/// A request to serve a project: load its code once, then start runs of it on [`Trigger`]s.
#[derive(Debug)]
pub struct ServeRequest {
    /// Chosen by the host; triggers and notices name the service by it.
    pub service: RunId,
    /// A snapshot, as for a run.
    pub project: Project,
    /// The limit all its runs share; the project's setting when `None`.
    pub concurrency: Option<u32>,
    /// The slots kept for request runs; the project's setting when `None`.
    pub request_reserve: Option<u32>,
    pub env: BTreeMap<String, String>,
    /// Every run it starts is recorded there.
    pub history: Option<PathBuf>,
    pub working_dir: Option<PathBuf>,
    pub executor: Executor,
    /// Where its notices go.
    pub notices: mpsc::UnboundedSender<ServiceNotice>,
}

/// Start a run of a served project at one of its blocks.
#[derive(Clone, Debug)]
pub struct Trigger {
    pub service: RunId,
    pub run_id: RunId,
    /// An API Endpoint (its input is the request), a Timer, a Queue (its input is a batch of its
    /// messages) or a Topic (a message).
    pub block: BlockId,
    pub input: Value,
    pub lane: Lane,
}

/// What a service's host is told.
#[derive(Clone, Debug, PartialEq)]
pub enum ServiceNotice {
    /// The code compiled: runs may be triggered.
    Ready,
    /// The service never started (problems in the project, code that does not compile, an invoker
    /// that can't run), or stopped as its invoker broke.
    Refused {
        message: String,
        compile_errors: Vec<CompileError>,
    },
    /// A trigger that started no run.
    RunRefused { run_id: RunId, message: String },
    /// What answers a request run (request runs only; at most once per run).
    Answer { run_id: RunId, answer: Answer },
    /// A run reached a Queue: keep these messages, then answer with [`crate::runtime::RuntimeRequest::Kept`]
    /// for `key` (the run's invocation of the Queue ends then).
    Keep {
        key: u64,
        run_id: RunId,
        queue: BlockId,
        messages: Vec<Value>,
    },
    /// A run ended (every run of the service).
    Finished { run_id: RunId, status: RunStatus },
    /// Lines a worker wrote outside any invocation while the service ran.
    WorkerOutput { worker: usize, lines: Vec<String> },
    /// The service stopped: its runs ended (cancelled, if they were going).
    Stopped,
}

pub(super) enum ServiceState {
    /// Installing the project's libraries; the program is loaded once they are there.
    Preparing(Box<Program>),
    Compiling,
    Ready,
}

pub(super) struct Service {
    pub(super) id: RunId,
    /// Its program's number (also kept from being a run's number while the service lives).
    pub(super) number: u64,
    pub(super) plan: Arc<Plan>,
    pub(super) project: Arc<Project>,
    pub(super) executor: Executor,
    pub(super) history: Option<HistoryWriter>,
    pub(super) capacity: Capacity,
    pub(super) notices: mpsc::UnboundedSender<ServiceNotice>,
    pub(super) state: ServiceState,
    /// Its runs going on, request runs first, each lane oldest first: the order slots go in.
    pub(super) runs: BTreeSet<(Lane, u64)>,
}

impl Service {
    pub(super) fn notify(&self, notice: ServiceNotice) {
        // A host that has gone needs no notices.
        let _ = self.notices.send(notice);
    }
}

impl Engine {
    pub(super) fn serve(&mut self, request: ServeRequest) {
        let ServeRequest {
            service: id,
            project,
            concurrency,
            request_reserve,
            env,
            history,
            working_dir,
            executor,
            notices,
        } = request;
        let refuse = |message: String| {
            let _ = notices.send(ServiceNotice::Refused {
                message,
                compile_errors: Vec::new(),
            });
        };
        if let Err(message) = self.usable(&executor) {
            refuse(message);
            return;
        }
        let errors: Vec<String> = error_messages(&project);
        if !errors.is_empty() {
            refuse(format!(
                "the project has problems:\n  {}",
                errors.join("\n  ")
            ));
            return;
        }
        if self.services.values().any(|s| s.id == id) {
            refuse(format!("a service named {id} is already going"));
            return;
        }
        let history = match history.map(|path| self.writer(path)).transpose() {
            Ok(history) => history,
            Err(error) => {
                refuse(format!("can't record its runs: {error}"));
                return;
            }
        };
        let plan = Arc::new(Plan::served(&project));
        let limit = concurrency
            .unwrap_or(project.settings.concurrency_limit)
            .max(1);
        let reserve = request_reserve.unwrap_or_else(|| project.settings.request_reserve());
        let capacity = Capacity::new(limit, reserve, plan.blocks.iter().map(|b| b.cap).collect());
        let number = self.take_number();
        let mut program = plan.program(number, &project, &env);
        program.cwd = working_dir.map(|dir| dir.to_string_lossy().into_owned());
        let requirements = crate::runtime::environment::requirements(&project);
        let state = if requirements.is_empty() {
            if let Some(invoker) = self.invokers.get_mut(&executor) {
                invoker.load(program);
            }
            ServiceState::Compiling
        } else {
            self.prepare_environment(number, &id, requirements);
            ServiceState::Preparing(Box::new(program))
        };
        self.services.insert(
            number,
            Service {
                id,
                number,
                plan,
                project: Arc::new(project),
                executor,
                history,
                capacity,
                notices,
                state,
                runs: BTreeSet::new(),
            },
        );
    }

    /// The service's libraries are installed (or failed to be): load its program, or refuse it.
    pub(super) fn service_prepared(
        &mut self,
        number: u64,
        prepared: Result<std::path::PathBuf, String>,
    ) {
        let Some(service) = self.services.get_mut(&number) else {
            return;
        };
        let ServiceState::Preparing(program) =
            std::mem::replace(&mut service.state, ServiceState::Compiling)
        else {
            return;
        };
        match prepared {
            Ok(site_packages) => {
                let mut program = *program;
                program.site_packages = Some(site_packages.to_string_lossy().into_owned());
                if let Some(invoker) = self.invokers.get_mut(&service.executor) {
                    invoker.load(program);
                }
            }
            Err(message) => {
                if let Some(service) = self.services.remove(&number) {
                    service.notify(ServiceNotice::Refused {
                        message,
                        compile_errors: Vec::new(),
                    });
                }
            }
        }
    }

    /// The service's code compiled (or did not).
    pub(super) fn service_loaded(&mut self, number: u64, errors: Vec<BlockCompileError>) {
        let Some(service) = self.services.get_mut(&number) else {
            return;
        };
        if errors.is_empty() {
            service.state = ServiceState::Ready;
            service.notify(ServiceNotice::Ready);
            return;
        }
        let compile_errors = super::compile_errors(&service.project, &service.plan, errors);
        if let Some(invoker) = self.invokers.get_mut(&service.executor) {
            invoker.unload(number);
        }
        if let Some(service) = self.services.remove(&number) {
            service.notify(ServiceNotice::Refused {
                message: format!(
                    "the code has problems, so nothing can be served:\n  {}",
                    compile_errors
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join("\n  ")
                ),
                compile_errors,
            });
        }
    }

    /// The invoker of these services can't run anything: they stop.
    pub(super) async fn services_broken(&mut self, executor: &Executor, message: &str) {
        let broken: Vec<u64> = self
            .services
            .values()
            .filter(|s| s.executor == *executor)
            .map(|s| s.number)
            .collect();
        for number in broken {
            self.stop_service(number).await;
            if let Some(service) = self.services.remove(&number) {
                service.notify(ServiceNotice::Refused {
                    message: message.to_owned(),
                    compile_errors: Vec::new(),
                });
            }
        }
    }

    pub(super) async fn trigger(&mut self, trigger: Trigger) {
        let Trigger {
            service: id,
            run_id,
            block,
            input,
            lane,
        } = trigger;
        let Some(service) = self.services.values().find(|s| s.id == id) else {
            tracing::warn!("a run of a service that is not going ({id}) was not started");
            return;
        };
        let refused = |message: String| ServiceNotice::RunRefused {
            run_id: run_id.clone(),
            message,
        };
        if !matches!(service.state, ServiceState::Ready) {
            service.notify(refused("the service has not started yet".to_owned()));
            return;
        }
        let Some(&entry) = service.plan.by_id.get(&block) else {
            service.notify(refused(format!("the project has no block {block}")));
            return;
        };
        let service_number = service.number;
        let number = self.take_number();
        let Some(service) = self.services.get_mut(&service_number) else {
            return;
        };
        let mut scheduler = RunScheduler::new(
            run_id.clone(),
            Arc::clone(&service.plan),
            service.number,
            1,
            number << KEY_BITS,
        );
        if lane == Lane::Request {
            scheduler.set_answering();
        }
        let started_at_ms = now_ms();
        if let Some(history) = &service.history {
            // Not flushed, unlike a run of its own: the engine can't wait for a commit per request.
            // The run's row is committed with its first records, within the writer's batch time.
            history.run_started(
                &run_id,
                &service.project.name,
                started_at_ms,
                &service.executor,
            );
        }
        scheduler.start(&[entry], &input, &Value::Object(serde_json::Map::new()));
        service.runs.insert((lane, number));
        self.runs.insert(
            number,
            ActiveRun {
                scheduler,
                executor: service.executor.clone(),
                phase: Phase::Running,
                project: Arc::clone(&service.project),
                last_progress: std::time::Instant::now(),
                history: service.history.clone(),
                output_lines: 0,
                pip_output: Vec::new(),
                service: Some((service_number, lane)),
            },
        );
        let executor = service.executor.clone();
        self.emit(RuntimeEvent::RunStarted {
            run_id,
            started_at_ms,
            executor,
            redrive_of: None,
        })
        .await;
        let started = self.dispatch(service_number);
        for number in started.into_iter().chain([number]) {
            self.advance(number).await;
        }
    }

    /// Hands the service's free slots to its runs with invocations waiting, request runs first and
    /// each lane oldest first, and sends out their tasks. Returns the runs that took any.
    pub(super) fn dispatch(&mut self, service_number: u64) -> Vec<u64> {
        let Some(service) = self.services.get_mut(&service_number) else {
            return Vec::new();
        };
        let mut stepped = Vec::new();
        let mut to_invoker = Vec::new();
        let mut to_host = Vec::new();
        let reservations = service.plan.blocks.iter().any(|b| b.cap.is_some());
        for &(lane, number) in &service.runs {
            let Some(run) = self.runs.get_mut(&number) else {
                continue;
            };
            if !run.scheduler.has_queued() {
                continue;
            }
            // Nothing of this lane (and, with no reservations, of any later one) could start.
            if !service.capacity.has_room(lane) && !reservations {
                if lane == Lane::Background {
                    break;
                }
                continue;
            }
            let tasks = run
                .scheduler
                .take_ready_in(&mut service.capacity.lane(lane));
            stepped.push(number);
            for task in tasks {
                if service.plan.blocks[task.block as usize].behaviour == Behaviour::Enqueue {
                    to_host.push((run.scheduler.run_id().clone(), task));
                } else {
                    to_invoker.push(task);
                }
            }
        }
        for (run_id, task) in to_host {
            let messages = serde_json::from_str::<Value>(&task.input_json)
                .map(crate::runtime::plan::messages)
                .unwrap_or_default();
            service.notify(ServiceNotice::Keep {
                key: task.key,
                run_id,
                queue: service.plan.blocks[task.block as usize].id.clone(),
                messages,
            });
        }
        if !to_invoker.is_empty()
            && let Some(invoker) = self.invokers.get_mut(&service.executor)
        {
            invoker.submit(to_invoker);
        }
        stepped
    }

    /// The host's answers to its tasks (messages kept): they end as the invoker's results do.
    pub(super) async fn host_results(&mut self, results: Vec<TaskResult>) {
        let mut touched = Vec::new();
        self.complete(results, &mut touched);
        self.after_completions(touched).await;
    }

    /// A run of a service ended.
    pub(super) fn service_run_finished(
        &mut self,
        (service_number, lane): (u64, Lane),
        number: u64,
        run_id: &RunId,
        status: RunStatus,
    ) {
        if let Some(service) = self.services.get_mut(&service_number) {
            service.runs.remove(&(lane, number));
            service.notify(ServiceNotice::Finished {
                run_id: run_id.clone(),
                status,
            });
        }
    }

    /// Sends a request run's answer to the host, once it has one.
    pub(super) fn answer(&mut self, number: u64) {
        let Some(run) = self.runs.get_mut(&number) else {
            return;
        };
        let Some((service_number, _)) = run.service else {
            return;
        };
        if let Some(answer) = run.scheduler.take_answer()
            && let Some(service) = self.services.get(&service_number)
        {
            service.notify(ServiceNotice::Answer {
                run_id: run.scheduler.run_id().clone(),
                answer,
            });
        }
    }

    pub(super) async fn stop_serving(&mut self, id: &RunId) {
        let Some(number) = self
            .services
            .values()
            .find(|s| s.id == *id)
            .map(|s| s.number)
        else {
            return;
        };
        self.stop_service(number).await;
        if let Some(service) = self.services.remove(&number) {
            if let Some(invoker) = self.invokers.get_mut(&service.executor) {
                invoker.unload(number);
            }
            service.notify(ServiceNotice::Stopped);
        }
    }

    /// Cancels the service's runs going on (they end recorded as cancelled).
    async fn stop_service(&mut self, number: u64) {
        let runs: Vec<u64> = self
            .services
            .get(&number)
            .map(|s| s.runs.iter().map(|&(_, run)| run).collect())
            .unwrap_or_default();
        for run in runs {
            self.cancel_run(run).await;
        }
    }

    /// A worker's output while services run: their hosts show it.
    pub(super) fn service_output(&self, executor: &Executor, worker: usize, lines: &[String]) {
        for service in self.services.values().filter(|s| s.executor == *executor) {
            service.notify(ServiceNotice::WorkerOutput {
                worker: worker + 1,
                lines: lines.to_vec(),
            });
        }
    }
}
