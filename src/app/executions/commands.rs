//! What the application does for Block Executions: the panel's commands, the project's history
//! database it reads, stepping through invocations (the canvas selection follows), replays, and the
//! counts the canvas shows.

use std::collections::BTreeMap;

use serde_json::Value;

use super::{Replay, ReplayPhase, Step};
use crate::app::command::ExecutionsCommand;
use crate::app::run::RunPhase;
use crate::app::{App, NoticeLevel, Selection};
use crate::model::BlockId;
use crate::run::{BlockCounts, FanInCounts, InvocationId, RunId};
use crate::runtime::history::History as RunHistory;
use crate::runtime::{RunRequest, RuntimeEvent};

impl App {
    pub(in crate::app) fn executions_command(&mut self, command: ExecutionsCommand, now_secs: f64) {
        match command {
            ExecutionsCommand::ShowRun(Some(run)) => self.executions.select_run(run),
            ExecutionsCommand::ShowRun(None) => {
                self.executions.selected_run = None;
                self.executions.pinned = false;
                self.executions.picked = None;
            }
            ExecutionsCommand::PinRun(pin) => {
                if pin && self.executions.selected_run.is_none() {
                    self.executions.selected_run = self.executions.shown_run_id();
                }
                self.executions.pinned = pin && self.executions.selected_run.is_some();
            }
            ExecutionsCommand::DeleteRun(run) => {
                if let Err(e) = self.executions.delete_run(&run) {
                    self.notify(NoticeLevel::Error, e.to_string(), now_secs);
                }
            }
            ExecutionsCommand::SetTableFilter(filter) => self.executions.filter = filter,
            ExecutionsCommand::SetKeepRuns(keep) => {
                self.executions.keep_runs = keep.max(1);
                if let Err(e) = self.executions.apply_retention() {
                    self.notify(NoticeLevel::Error, e.to_string(), now_secs);
                }
            }
            ExecutionsCommand::Pick(id) => self.executions.pick(id),
            ExecutionsCommand::Follow(id) => self.follow_invocation(id),
            ExecutionsCommand::Step(step) => self.step_invocation(step),
            ExecutionsCommand::Replay => self.replay(now_secs),
            ExecutionsCommand::CloseReplay => self.executions.replay = None,
            ExecutionsCommand::Redrive { run, group } => {
                self.redrive(&run, group.as_deref(), now_secs);
            }
        }
    }

    /// Opens the project's history database when it exists (opening a project never creates
    /// files; the runtime creates the database with the first run). `keep_session` keeps this
    /// session's runs in view (after Save As).
    pub(in crate::app) fn open_history(&mut self, keep_session: bool, now_secs: f64) {
        let Some(path) = self
            .path
            .as_deref()
            .map(RunHistory::path_for_project)
            .filter(|p| p.exists())
        else {
            self.executions.set_history(None, keep_session);
            return;
        };
        match RunHistory::open(&path) {
            Ok(history) => self.executions.set_history(Some(history), keep_session),
            Err(e) => {
                self.executions.set_history(None, keep_session);
                self.notify(
                    NoticeLevel::Error,
                    format!("The run history could not be opened: {e}"),
                    now_secs,
                );
            }
        }
    }

    /// Moves the picked invocation; following the item (came from, led to) goes through
    /// [`Self::follow_invocation`].
    fn step_invocation(&mut self, step: Step) {
        let Some(target) = self.executions.step_target(step) else {
            return;
        };
        if matches!(step, Step::Parent | Step::Child) {
            self.follow_invocation(target);
        } else {
            self.executions.pick(target);
        }
    }

    /// Picks an invocation the item went through and selects its block, from the All blocks table
    /// too, so the canvas, the table and the inspector go along.
    fn follow_invocation(&mut self, id: InvocationId) {
        if let Some(block) = self.executions.block_of(id) {
            self.selection = Selection::blocks([block]);
        }
        self.executions.pick(id);
    }

    /// Runs the picked invocation again with its captured input and backpack and the block's current
    /// code; nothing upstream or downstream runs, and the replay is not recorded in history.
    fn replay(&mut self, now_secs: f64) {
        let Some(record) = self
            .executions
            .picked
            .as_ref()
            .and_then(|p| p.record.clone())
        else {
            return self.notify(
                NoticeLevel::Error,
                "This invocation's record is not kept, so it can't be replayed.",
                now_secs,
            );
        };
        if self.project.block(&record.block_id).is_none() {
            return self.notify(
                NoticeLevel::Error,
                format!(
                    "The block \"{}\" is no longer in the project.",
                    record.block_name
                ),
                now_secs,
            );
        }
        let run_id = RunId::new_random();
        let backpack = if record.backpack_in.is_object() {
            (*record.backpack_in).clone()
        } else {
            Value::Object(serde_json::Map::new())
        };
        let request = RunRequest {
            input: record.input.clone(),
            backpack,
            from: Some(record.block_id.clone()),
            env: self.run_env(),
            single: true,
            working_dir: self.working_dir(),
            ..RunRequest::new(run_id.clone(), self.project.clone())
        };
        if !self.request_run(request, now_secs) {
            return;
        }
        self.executions.replay = Some(Replay {
            run_id,
            original: record,
            phase: ReplayPhase::Running,
        });
    }

    /// An event of the replay's own run: its one record, or why it did not run.
    pub(in crate::app) fn replay_event(&mut self, event: RuntimeEvent) {
        match event {
            RuntimeEvent::Invocations { run_id, records } => {
                self.executions.replay_records(&run_id, &records);
            }
            RuntimeEvent::RunRefused {
                run_id, message, ..
            } => {
                self.executions.replay_refused(&run_id, &message);
            }
            RuntimeEvent::RunFinished(summary) => {
                if let Some(replay) = &self.executions.replay
                    && replay.phase == ReplayPhase::Running
                {
                    let message = summary.failures.first().map_or_else(
                        || "the replay produced no invocation".to_owned(),
                        |f| f.error.clone(),
                    );
                    self.executions.replay_refused(&summary.run_id, &message);
                }
            }
            // Its start, counts and output say nothing the replay view shows.
            RuntimeEvent::RunStarted { .. }
            | RuntimeEvent::Progress { .. }
            | RuntimeEvent::Log { .. }
            | RuntimeEvent::WorkerOutput { .. }
            | RuntimeEvent::Checked { .. } => {}
        }
    }

    /// The fan-ins' ledgers for the canvas: the current run's, while the canvas shows it (a run read
    /// back from the history has its counts, not its ledger).
    pub fn canvas_fan_ins(&self) -> Option<&BTreeMap<BlockId, FanInCounts>> {
        let run = self.run.as_ref()?;
        let shown_elsewhere = self
            .executions
            .selected_run
            .as_ref()
            .is_some_and(|selected| selected != &run.run_id);
        (!shown_elsewhere).then_some(&run.fan_ins)
    }

    /// Counts per block for the canvas: the run picked in the Block Executions panel, else the current
    /// run's live counts, else the newest run of the history; and whether that run has finished.
    pub fn canvas_counts(&self) -> Option<(&BTreeMap<BlockId, BlockCounts>, bool)> {
        if let Some(selected) = &self.executions.selected_run
            && self.run.as_ref().is_none_or(|r| &r.run_id != selected)
        {
            return self.executions.shown_counts().map(|c| (c, true));
        }
        match &self.run {
            Some(run) => Some((&run.counts, matches!(run.phase, RunPhase::Finished(_)))),
            // No run in this session yet: the newest run from the history.
            None => self.executions.shown_counts().map(|c| (c, true)),
        }
    }
}
