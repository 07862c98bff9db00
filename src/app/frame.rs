//! Once per frame: the runtime's events (from the inbox its thread fills), the views' commands, the
//! dialogs' answers, the files other programs may change, a due compile check.

use std::time::{Duration, Instant};

use super::command::{Command, RunCommand, ServeCommand};
use super::inbox::Inbound;
use super::{App, NoticeLevel};
use crate::run::RunId;
use crate::runtime::{RuntimeEvent, RuntimeRequest};

/// The most time one frame spends applying the runtime's events, so a 10,000-item run never stalls
/// drawing (the rest wait in the inbox for the next frame).
const EVENT_BUDGET: Duration = Duration::from_millis(6);
/// Information notices fade after this long.
const NOTICE_SECS: f64 = 5.0;
/// Errors fade after this long (time to read a few lines), unless they are lasting.
const ERROR_NOTICE_SECS: f64 = 20.0;
/// The executions table of a growing run is rebuilt at most this often.
const TABLE_REFRESH_SECS: f64 = 0.25;

/// How long a notice of this level shows.
fn notice_secs(level: NoticeLevel) -> f64 {
    match level {
        NoticeLevel::Info => NOTICE_SECS,
        NoticeLevel::Error => ERROR_NOTICE_SECS,
    }
}

impl App {
    /// Takes the runtime's events and the dialogs' answers, and starts a due compile check.
    pub fn poll(&mut self, now_secs: f64) {
        self.notices
            .retain(|n| n.lasting || now_secs < n.at_secs + notice_secs(n.level));
        self.take_events(now_secs);
        self.poll_serving(now_secs);
        self.refresh_table(now_secs, false);
        self.refresh_past_log();
        self.env_values
            .refresh(self.path.as_deref(), now_secs, false);
        self.watch_disk(now_secs);
        if let Some(outcome) = self.dialogs.poll() {
            self.dialog_answered(outcome, now_secs);
        }
        if let (Some(due), Some(runtime)) = (self.check.due_at, &self.runtime)
            && now_secs >= due
        {
            let check_id = RunId::new_random();
            runtime.sender.send(RuntimeRequest::Check {
                check_id: check_id.clone(),
                project: Box::new(self.project.clone()),
            });
            self.check.in_flight = Some(check_id);
            self.check.due_at = None;
        }
    }

    /// Seconds until the next notice fades, for the shell to draw again then (and not before).
    pub fn next_notice_fades_in(&self, now_secs: f64) -> Option<f64> {
        self.notices
            .iter()
            .filter(|n| !n.lasting)
            .map(|n| (n.at_secs + notice_secs(n.level) - now_secs).max(0.0))
            .reduce(f64::min)
    }

    /// Applies every command the views sent this frame. Returns whether anything was applied.
    pub fn apply_commands(&mut self, now_secs: f64) -> bool {
        let mut any = false;
        while let Ok(sent) = self.commands.try_recv() {
            tracing::debug!(
                "command {:?} from {}:{}",
                sent.command,
                sent.caller.file(),
                sent.caller.line()
            );
            self.apply(sent.command, now_secs);
            any = true;
        }
        if any {
            self.refresh_table(now_secs, true);
        }
        any
    }

    /// Applies one command at once (views send commands; tests may call this directly).
    pub fn apply(&mut self, command: impl Into<Command>, now_secs: f64) {
        match command.into() {
            Command::Edit(edit) => self.edit(edit, now_secs),
            Command::Undo => self.undo(now_secs),
            Command::Redo => self.redo(now_secs),
            Command::Select(select) => self.select(select),
            Command::File(command) => self.file_command(command, now_secs),
            Command::Run(RunCommand::Start(options)) => self.start_run(options, now_secs),
            Command::Run(RunCommand::StartAtEntries) => self.run_options.from = None,
            Command::Run(RunCommand::Stop) => self.stop_run(),
            Command::Serve(ServeCommand::Start { listen }) => self.start_serving(&listen, now_secs),
            Command::Serve(ServeCommand::Stop) => self.stop_serving(now_secs),
            Command::Executions(command) => self.executions_command(command, now_secs),
            Command::DismissNotice(id) => self.notices.retain(|n| n.id != id),
        }
    }

    /// Whether the runtime's events wait to be applied (the shell then draws again soon).
    pub fn has_events(&self) -> bool {
        self.runtime
            .as_ref()
            .is_some_and(|runtime| !runtime.inbox.is_empty())
    }

    /// Applies the events waiting in the inbox, for at most [`EVENT_BUDGET`].
    fn take_events(&mut self, now_secs: f64) {
        let started = Instant::now();
        while started.elapsed() < EVENT_BUDGET {
            let Some(inbound) = self.runtime.as_ref().and_then(|r| r.inbox.pop()) else {
                break;
            };
            match inbound {
                Inbound::Event(event) => self.runtime_event(event, now_secs),
                Inbound::Rows { run_id, rows } => self.run_rows(&run_id, rows),
            }
        }
    }

    /// One event of the runtime, to whatever it answers: a compile check, a replay, or a run.
    fn runtime_event(&mut self, event: RuntimeEvent, now_secs: f64) {
        if let RuntimeEvent::Checked {
            check_id,
            compile_errors,
        } = event
        {
            if self.check.in_flight.as_ref() == Some(&check_id) {
                self.check.in_flight = None;
                self.compile_errors = compile_errors;
            }
            return;
        }
        if self.executions.is_replay(event.run_id()) {
            self.replay_event(event);
        } else {
            self.run_event(event, now_secs);
        }
    }

    /// Rebuilds the executions table when what it shows changed; a growing run's at most every
    /// [`TABLE_REFRESH_SECS`] unless `now` (a command changed the view).
    pub(super) fn refresh_table(&mut self, now_secs: f64, now: bool) {
        if !now
            && !self.executions.is_loading()
            && now_secs - self.table_refreshed_at < TABLE_REFRESH_SECS
        {
            return;
        }
        self.table_refreshed_at = now_secs;
        let block = self.selection.single_block().cloned();
        self.executions.refresh_view(block.as_ref());
    }

    /// Stops the runtime as the editor closes: a run still going is abandoned, and the history
    /// database is written out and closed rather than cut off mid-write.
    pub fn shutdown_runtime(&mut self) {
        self.stop_serving(0.0);
        if let Some(runtime) = self.runtime.take() {
            runtime.sender.shutdown(Duration::from_secs(5));
        }
    }
}
