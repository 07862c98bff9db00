//! Runs: the state of the current run as the views show it (live counts per block while it runs, then
//! its summary, its log), starting and stopping one, and the runtime's events of a run. The views never
//! see the runtime itself.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde_json::Value;

use super::command::RunOptions;
use super::{App, NoticeLevel};
use crate::model::BlockId;
use crate::model::local_settings::{self, LocalSettings};
use crate::run::{
    BlockCounts, CompileError, Executor, FanInCounts, InvocationRow, ParentIds, RunId, RunSummary,
};
use crate::runtime::history::History as RunHistory;
use crate::runtime::redrive::Redrive;
use crate::runtime::{RunRequest, RuntimeEvent, RuntimeRequest};

/// How many of this session's earlier runs keep their log in memory (the history keeps every run's).
const SESSION_LOGS: usize = 20;

/// Where the current (or last) run stands.
#[derive(Clone, Debug, PartialEq)]
pub enum RunPhase {
    /// Sent to the runtime; its code is being compiled.
    Starting,
    Running,
    /// The user pressed Stop; waiting for the runtime to confirm.
    Stopping,
    Finished(Box<RunSummary>),
    /// The run never started (code that doesn't compile, bad input, no runtime).
    Refused {
        message: String,
        compile_errors: Vec<CompileError>,
    },
}

#[derive(Clone, Debug)]
pub struct RunState {
    pub run_id: RunId,
    pub phase: RunPhase,
    /// Live counts per block (the runtime sends them in project order): a fan-out target's ledger.
    pub counts: BTreeMap<BlockId, BlockCounts>,
    /// Each fan-in target's ledger: expected, arrived, missing (and which).
    pub fan_ins: BTreeMap<BlockId, FanInCounts>,
    /// Finished invocations received so far. The records themselves go to the Block Executions panel's
    /// state (`executions/`); this state only counts them.
    pub records_received: u64,
    /// When the run was sent, in egui time (seconds), for the elapsed-time display.
    pub sent_at_secs: f64,
    /// The latest line of preparation output (pip installing the project's libraries).
    pub preparing: Option<String>,
    /// What the run printed outside its invocations, in order: pip's output, worker output.
    pub log: Vec<LogLine>,
    /// Where it runs (the status line says so for a cluster).
    pub executor: Executor,
}

/// A line of the run's log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogLine {
    pub source: LogSource,
    pub text: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogSource {
    /// pip, installing the project's libraries before the run.
    Install,
    /// A worker (counted from 1), writing outside any one invocation's printed output.
    Worker(usize),
}

/// The most log lines a run keeps (the runtime already caps worker output; pip's can be long).
pub const LOG_LINES: usize = 10_000;

impl RunState {
    pub fn new(run_id: RunId, executor: Executor, now_secs: f64) -> Self {
        Self {
            executor,
            run_id,
            phase: RunPhase::Starting,
            counts: BTreeMap::new(),
            fan_ins: BTreeMap::new(),
            records_received: 0,
            sent_at_secs: now_secs,
            preparing: None,
            log: Vec::new(),
        }
    }

    pub fn add_log(&mut self, source: LogSource, lines: impl IntoIterator<Item = String>) {
        let room = LOG_LINES.saturating_sub(self.log.len());
        self.log.extend(
            lines
                .into_iter()
                .take(room)
                .map(|text| LogLine { source, text }),
        );
    }

    pub fn is_active(&self) -> bool {
        matches!(
            self.phase,
            RunPhase::Starting | RunPhase::Running | RunPhase::Stopping
        )
    }

    /// All blocks' counts added up.
    pub fn totals(&self) -> BlockCounts {
        self.counts
            .values()
            .fold(BlockCounts::default(), |mut sum, c| {
                sum.queued += c.queued;
                sum.running += c.running;
                sum.succeeded += c.succeeded;
                sum.caught += c.caught;
                sum.failed += c.failed;
                sum.timed_out += c.timed_out;
                sum.cancelled += c.cancelled;
                sum.retrying += c.retrying;
                sum
            })
    }
}

impl App {
    pub fn is_running(&self) -> bool {
        self.run.as_ref().is_some_and(RunState::is_active)
    }

    pub(super) fn start_run(&mut self, options: RunOptions, now_secs: f64) {
        if self.is_running() {
            self.notify(
                NoticeLevel::Info,
                "A run is already going; stop it first.",
                now_secs,
            );
            return;
        }
        let input = match parse_json("input", &options.input) {
            Ok(v) => v,
            Err(message) => return self.notify(NoticeLevel::Error, message, now_secs),
        };
        let backpack = match parse_json("backpack", &options.backpack) {
            Ok(v) if v.is_object() => v,
            Ok(_) => {
                return self.notify(
                    NoticeLevel::Error,
                    "The backpack must be a JSON object, like {}.",
                    now_secs,
                );
            }
            Err(message) => return self.notify(NoticeLevel::Error, message, now_secs),
        };
        let executor = match options.executor() {
            Ok(executor) => executor,
            Err(message) => return self.notify(NoticeLevel::Error, message, now_secs),
        };
        let run_id = RunId::new_random();
        // The values file's unreadable lines, then the variables left without a value.
        let (env, mut warnings) = crate::model::env_file::values_for(self.path.as_deref());
        let missing = crate::model::env_file::missing_values(&self.project, &env);
        if !missing.is_empty() {
            warnings.push(format!(
                "{} (the block's inspector sets values)",
                missing.join("; ")
            ));
        }
        let request = RunRequest {
            input,
            backpack,
            from: options.from.clone(),
            concurrency: options.concurrency,
            env,
            history: self.path.as_deref().map(RunHistory::path_for_project),
            working_dir: self.working_dir(),
            executor: executor.clone(),
            ..RunRequest::new(run_id.clone(), self.project.clone())
        };
        if !self.request_run(request, now_secs) {
            return;
        }
        self.remember_where_runs_go(&options, now_secs);
        self.run_options = options;
        self.became_current(run_id, executor, now_secs);
        // Worth knowing before reading the run's failures; a block may well cope without the value.
        for warning in warnings {
            self.notify(NoticeLevel::Info, warning, now_secs);
        }
    }

    /// A run just sent is the current one; the one before keeps its log for a while.
    fn became_current(&mut self, run_id: RunId, executor: Executor, now_secs: f64) {
        if let Some(earlier) = self.run.take() {
            if self.session_logs.len() == SESSION_LOGS {
                self.session_logs.pop_front();
            }
            self.session_logs.push_back((earlier.run_id, earlier.log));
        }
        self.run = Some(RunState::new(run_id, executor, now_secs));
    }

    /// Runs a finished run's failed items again (with `group`, only the failures of that shape), with
    /// the blocks' current code; what succeeded keeps its recorded result (see `runtime::redrive`).
    pub(super) fn redrive(&mut self, of: &RunId, group: Option<&str>, now_secs: f64) {
        if self.is_running() {
            return self.notify(
                NoticeLevel::Info,
                "A run is already going; stop it first.",
                now_secs,
            );
        }
        let Some(history) = self.executions.history() else {
            return self.notify(
                NoticeLevel::Error,
                "Only a run in the project's history can be redriven: save the project, run it, \
                 then redrive that run.",
                now_secs,
            );
        };
        let redrive = match Redrive::load(history, of, group) {
            Ok(redrive) => redrive,
            Err(e) => {
                return self.notify(NoticeLevel::Error, format!("Can't redrive: {e}"), now_secs);
            }
        };
        // It goes where runs go now (the run dialog's choice), like a run.
        let executor = match self.run_options.executor() {
            Ok(executor) => executor,
            Err(message) => return self.notify(NoticeLevel::Error, message, now_secs),
        };
        let run_id = RunId::new_random();
        let request = RunRequest {
            env: self.run_env(),
            executor: executor.clone(),
            history: self.path.as_deref().map(RunHistory::path_for_project),
            working_dir: self.working_dir(),
            redrive: Some(std::sync::Arc::new(redrive)),
            ..RunRequest::new(run_id.clone(), self.project.clone())
        };
        if !self.request_run(request, now_secs) {
            return;
        }
        self.became_current(run_id, executor, now_secs);
        // The panel follows the redrive, as it follows any new run.
        self.executions.selected_run = None;
    }

    /// Keeps where the project's runs go (this machine or a cluster, and the cluster's address) in its
    /// local settings, `.braid/` beside it, when that changed: the next session's run dialog offers the
    /// same. An unsaved project has nowhere to keep them: they last the session.
    fn remember_where_runs_go(&mut self, options: &RunOptions, now_secs: f64) {
        let Some(path) = self.path.clone() else {
            return;
        };
        let cluster = options.cluster.trim();
        let settings = LocalSettings {
            cluster: (!cluster.is_empty()).then(|| cluster.to_owned()),
            run_on_cluster: options.on_cluster,
        };
        let (saved, _) = local_settings::load(&path);
        if saved != settings
            && let Err(e) = local_settings::save(&path, &settings)
        {
            self.notify(
                NoticeLevel::Info,
                format!("Where runs go was not remembered for next time: {e}"),
                now_secs,
            );
        }
    }

    /// Sends a run (or a replay) to the runtime; without one, says so. Returns whether it was sent.
    pub(super) fn request_run(&mut self, request: RunRequest, now_secs: f64) -> bool {
        let Some(runtime) = &self.runtime else {
            self.notify(
                NoticeLevel::Error,
                "Pipelines can't run: the runtime did not start.",
                now_secs,
            );
            return false;
        };
        runtime.sender.send(RuntimeRequest::Run(Box::new(request)));
        true
    }

    pub(super) fn stop_run(&mut self) {
        if let (Some(run), Some(runtime)) = (&mut self.run, &self.runtime)
            && run.is_active()
        {
            runtime
                .sender
                .send(RuntimeRequest::Cancel(run.run_id.clone()));
            run.phase = RunPhase::Stopping;
        }
    }

    /// Environment variable values for a run (or a replay) of this project: its `.braid/` values file
    /// over Braid's own environment.
    pub(super) fn run_env(&self) -> BTreeMap<String, String> {
        crate::model::env_file::values_for(self.path.as_deref()).0
    }

    /// Where this project's blocks run: its file's folder (none for a project never saved).
    pub(super) fn working_dir(&self) -> Option<PathBuf> {
        self.path
            .as_deref()
            .and_then(crate::model::local_folder::working_dir)
    }

    /// An event of a run (not a check, not a replay): Block Executions records every run's; the run
    /// state takes the current run's only, so a late event of an earlier run changes nothing shown.
    /// While the project is served, every other run that starts is one of the service's (a request, a
    /// timer's firing, a queue's batch): Block Executions follows those too.
    pub(super) fn run_event(&mut self, event: RuntimeEvent, now_secs: f64) {
        let current = self
            .run
            .as_ref()
            .is_some_and(|r| &r.run_id == event.run_id());
        match &event {
            RuntimeEvent::RunStarted {
                run_id,
                started_at_ms,
                executor,
                redrive_of,
            } if current || self.is_serving() => {
                self.executions
                    .run_started(run_id, *started_at_ms, executor, redrive_of.clone());
            }
            RuntimeEvent::RunFinished(summary) => {
                // The runtime creates the database with the project's first run.
                if self.executions.history().is_none() {
                    self.open_history(true, now_secs);
                }
                self.executions.run_finished(summary);
                // The table shows the run's last rows now: the editor stops repainting once nothing
                // runs, so a refresh held back by the throttle would leave it stale until the next input.
                self.table_refreshed_at = f64::NEG_INFINITY;
            }
            _ => {}
        }
        let Some(run) = self.run.as_mut().filter(|_| current) else {
            // A served run's records (the panel drops those of runs it does not follow).
            if let RuntimeEvent::Invocations { run_id, records } = event
                && self.is_serving()
            {
                self.executions.invocations(&run_id, records);
            }
            return;
        };
        match event {
            RuntimeEvent::RunStarted { .. } => {
                if run.phase == RunPhase::Starting {
                    run.phase = RunPhase::Running;
                }
            }
            RuntimeEvent::Progress {
                counts, fan_ins, ..
            } => {
                run.counts = counts.into_iter().collect();
                run.fan_ins = fan_ins.into_iter().collect();
            }
            RuntimeEvent::Invocations { run_id, records } => {
                run.records_received += records.len() as u64;
                self.executions.invocations(&run_id, records);
            }
            RuntimeEvent::RunFinished(summary) => {
                let failed = summary.failures.len();
                run.phase = RunPhase::Finished(Box::new(summary));
                if failed > 0 {
                    tracing::info!("run finished with {failed} failure(s)");
                }
            }
            RuntimeEvent::RunRefused {
                message,
                compile_errors,
                ..
            } => {
                if !compile_errors.is_empty() {
                    self.compile_errors.clone_from(&compile_errors);
                }
                run.phase = RunPhase::Refused {
                    message: message.clone(),
                    compile_errors,
                };
                self.notify(
                    NoticeLevel::Error,
                    format!("The run did not start: {message}"),
                    now_secs,
                );
            }
            RuntimeEvent::Log { line, .. } => {
                tracing::info!(target: "braid::environment", "{line}");
                run.add_log(LogSource::Install, [line.clone()]);
                run.preparing = Some(line);
            }
            RuntimeEvent::WorkerOutput { worker, lines, .. } => {
                run.add_log(LogSource::Worker(worker), lines);
            }
            // Answers to checks never reach a run.
            RuntimeEvent::Checked { .. } => {}
        }
    }

    /// Finished invocations of the current run (or, while serving, of a served run) that waited in the
    /// inbox as rows (see [`super::inbox`]); those of another run are dropped, as its records are.
    pub(super) fn run_rows(&mut self, run_id: &RunId, rows: Vec<(InvocationRow, ParentIds)>) {
        let Some(run) = self.run.as_mut().filter(|run| &run.run_id == run_id) else {
            // A served run's (the panel drops those of runs it does not follow).
            if self.is_serving() {
                self.executions.invocation_rows(run_id, rows);
            }
            return;
        };
        run.records_received += rows.len() as u64;
        self.executions.invocation_rows(run_id, rows);
    }

    /// The log of the run Block Executions shows: the current run's as it grows, or a past run's from the
    /// history. `None` when no run is shown.
    pub fn shown_log(&self) -> Option<&[LogLine]> {
        let shown = self.executions.shown_run_id()?;
        if let Some(run) = self.run.as_ref().filter(|run| run.run_id == shown) {
            return Some(&run.log);
        }
        self.session_logs
            .iter()
            .chain(&self.past_log)
            .find(|(id, _)| *id == shown)
            .map(|(_, lines)| lines.as_slice())
    }

    /// Reads a past run's log when Block Executions comes to show that run (once, not every frame).
    pub(super) fn refresh_past_log(&mut self) {
        let current = self.run.as_ref().map(|run| &run.run_id);
        let wanted = self.executions.shown_run_id().filter(|id| {
            Some(id) != current && !self.session_logs.iter().any(|(run, _)| run == id)
        });
        if wanted.as_ref() == self.past_log.as_ref().map(|(id, _)| id) {
            return;
        }
        self.past_log = wanted.map(|id| {
            let lines = match self.executions.history().map(|h| h.log(&id)) {
                Some(Ok(lines)) => lines,
                Some(Err(error)) => {
                    tracing::warn!("can't read the run's log: {error}");
                    Vec::new()
                }
                None => Vec::new(),
            };
            let lines = lines
                .into_iter()
                .map(|(worker, text)| LogLine {
                    source: if worker == 0 {
                        LogSource::Install
                    } else {
                        LogSource::Worker(worker)
                    },
                    text,
                })
                .collect();
            (id, lines)
        });
    }
}

/// JSON text from the run dialog, with the position of a mistake.
pub fn parse_json(what: &str, text: &str) -> Result<Value, String> {
    let text = if text.trim().is_empty() { "null" } else { text };
    serde_json::from_str(text).map_err(|e| {
        format!(
            "The {what} is not valid JSON (line {}, column {}): {e}",
            e.line(),
            e.column()
        )
    })
}
