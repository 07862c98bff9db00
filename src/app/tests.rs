//! The application fed with runtime events, without Python or a window: the test plays the runtime
//! over plain channels (`RuntimeHandle::from_channels`), taking the requests the application sends
//! and sending the events a runtime would.

use std::time::{Duration, Instant};

use serde_json::json;
use tokio::sync::mpsc;

use super::command::{Edit, ExecutionsCommand, FileCommand, RunCommand, RunOptions};
use super::executions::ReplayPhase;
use super::run::{LogLine, LogSource, RunPhase};
use super::{App, Command, DialogMode, NoticeLevel, PendingAction};
use crate::model::{BlockId, Position};
use crate::run::{
    BlockCounts, CompileError, Executor, InvocationId, InvocationRecord, RunId, RunStatus,
    RunSummary,
};
use crate::runtime::{RunRequest, RuntimeEvent, RuntimeHandle, RuntimeRequest};

/// The runtime's event channel holds as many as the engine's does.
const EVENT_CHANNEL: usize = 1024;

/// An application and the runtime's ends of its channels.
struct Scripted {
    app: App,
    requests: mpsc::Receiver<RuntimeRequest>,
    events: mpsc::Sender<RuntimeEvent>,
    /// The application's clock (egui seconds), moved on a frame at a time.
    now_secs: f64,
}

impl Scripted {
    fn new() -> Self {
        let (requests_tx, requests) = mpsc::channel(64);
        let (events, events_rx) = mpsc::channel(EVENT_CHANNEL);
        let handle = RuntimeHandle::from_channels(requests_tx, events_rx);
        Self {
            app: App::with_runtime(Some(handle), DialogMode::InApp),
            requests,
            events,
            now_secs: 0.0,
        }
    }

    fn apply(&mut self, command: impl Into<Command>) {
        self.app.apply(command, self.now_secs);
    }

    /// The next run (or replay) the application asked for; compile checks are skipped.
    fn run_request(&mut self) -> RunRequest {
        loop {
            match self.requests.try_recv() {
                Ok(RuntimeRequest::Run(request)) => return *request,
                Ok(_) => {}
                Err(e) => panic!("no run was requested: {e}"),
            }
        }
    }

    /// Starts a run from the run dialog's defaults; returns its id.
    fn start_run(&mut self) -> RunId {
        self.apply(RunCommand::Start(RunOptions::default()));
        self.run_request().run_id
    }

    fn send(&self, events: impl IntoIterator<Item = RuntimeEvent>) {
        for event in events {
            self.events
                .blocking_send(event)
                .expect("the application takes events");
        }
    }

    /// Draws frames (a twentieth of a second apart) until `done` holds; the events go through the
    /// inbox's thread first.
    fn frames_until(&mut self, what: &str, done: impl Fn(&App) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !done(&self.app) {
            assert!(Instant::now() < deadline, "never came: {what}");
            self.now_secs += 0.05;
            self.app.poll(self.now_secs);
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    fn phase(&self) -> &RunPhase {
        &self.app.run.as_ref().expect("a run").phase
    }
}

fn block() -> BlockId {
    BlockId("b".into())
}

fn record(run: &RunId, id: InvocationId, parents: &[InvocationId]) -> InvocationRecord {
    InvocationRecord::succeeded(run, id, &block(), parents)
}

fn started(run: &RunId) -> RuntimeEvent {
    RuntimeEvent::RunStarted {
        run_id: run.clone(),
        started_at_ms: 1_000.0,
        executor: Executor::Local,
        redrive_of: None,
    }
}

fn finished(run: &RunId, invocations: u64) -> RuntimeEvent {
    RuntimeEvent::RunFinished(RunSummary {
        run_id: run.clone(),
        status: RunStatus::Succeeded,
        results: Vec::new(),
        invocations,
        failures: Vec::new(),
        tolerated: Vec::new(),
        redrive_of: None,
        started_at_ms: 1_000.0,
        duration_ms: 5.0,
    })
}

fn log(run: &RunId, line: &str) -> RuntimeEvent {
    RuntimeEvent::Log {
        run_id: run.clone(),
        line: line.to_owned(),
    }
}

fn succeeded(n: u64) -> Vec<(BlockId, BlockCounts)> {
    vec![(
        block(),
        BlockCounts {
            succeeded: n,
            ..BlockCounts::default()
        },
    )]
}

#[test]
fn a_run_goes_from_sent_to_running_to_finished_with_its_counts_and_rows() {
    let mut s = Scripted::new();
    s.apply(RunCommand::Start(RunOptions {
        input: "[1, 2]".to_owned(),
        ..RunOptions::default()
    }));
    let request = s.run_request();
    let run = request.run_id.clone();
    assert_eq!(request.input, json!([1, 2]));
    assert_eq!(s.phase(), &RunPhase::Starting);
    assert!(s.app.is_running());

    s.send([started(&run)]);
    s.frames_until("running", |app| {
        app.run
            .as_ref()
            .is_some_and(|r| r.phase == RunPhase::Running)
    });
    assert_eq!(s.app.executions.shown_run_id(), Some(run.clone()));

    s.send([
        RuntimeEvent::Invocations {
            run_id: run.clone(),
            records: vec![record(&run, 1, &[]), record(&run, 2, &[1])],
        },
        RuntimeEvent::Progress {
            run_id: run.clone(),
            counts: succeeded(2),
            fan_ins: Vec::new(),
        },
    ]);
    s.frames_until("the counts", |app| {
        app.run.as_ref().is_some_and(|r| !r.counts.is_empty())
    });
    let state = s.app.run.as_ref().expect("a run");
    assert_eq!(state.records_received, 2);
    assert_eq!(state.counts[&block()].succeeded, 2);
    let shown = s.app.executions.shown().expect("the run's rows");
    let ids: Vec<InvocationId> = shown.rows.iter().map(|r| r.id).collect();
    assert_eq!(ids, [1, 2]);
    assert_eq!(shown.row.invocations, 2);

    s.send([finished(&run, 2)]);
    s.frames_until("finished", |app| !app.is_running());
    let RunPhase::Finished(summary) = s.phase() else {
        panic!("not finished: {:?}", s.phase());
    };
    assert_eq!(summary.invocations, 2);
    let row = s.app.executions.shown_run_row().expect("the run's row");
    assert_eq!(
        (row.status, row.duration_ms),
        (RunStatus::Succeeded, Some(5.0))
    );
}

#[test]
fn a_refused_run_says_why_and_marks_the_code_that_does_not_compile() {
    let mut s = Scripted::new();
    let run = s.start_run();
    let error = CompileError {
        block_id: block(),
        block: "B".to_owned(),
        what: "code".to_owned(),
        line: Some(3),
        message: "invalid syntax".to_owned(),
    };
    s.send([RuntimeEvent::RunRefused {
        run_id: run,
        message: "B does not compile".to_owned(),
        compile_errors: vec![error.clone()],
    }]);
    s.frames_until("refused", |app| !app.is_running());
    assert_eq!(
        s.phase(),
        &RunPhase::Refused {
            message: "B does not compile".to_owned(),
            compile_errors: vec![error.clone()],
        }
    );
    assert_eq!(s.app.compile_errors, [error]);
    let notice = s.app.notices.last().expect("a notice");
    assert_eq!(notice.text, "The run did not start: B does not compile");
}

#[test]
fn events_of_a_run_no_longer_shown_change_nothing() {
    let mut s = Scripted::new();
    let first = s.start_run();
    s.send([started(&first), finished(&first, 0)]);
    s.frames_until("the first run finished", |app| !app.is_running());
    let second = s.start_run();
    s.send([
        started(&second),
        // Late events of the first run, and of a run nobody asked for.
        RuntimeEvent::Progress {
            run_id: first.clone(),
            counts: succeeded(9),
            fan_ins: Vec::new(),
        },
        RuntimeEvent::Invocations {
            run_id: first.clone(),
            records: vec![record(&first, 1, &[])],
        },
        log(&first, "late"),
        RuntimeEvent::Progress {
            run_id: RunId("nobody's".into()),
            counts: succeeded(7),
            fan_ins: Vec::new(),
        },
        log(&second, "mine"),
    ]);
    s.frames_until("the second run's log line", |app| {
        app.run.as_ref().is_some_and(|r| !r.log.is_empty())
    });
    let run = s.app.run.as_ref().expect("a run");
    assert_eq!(run.run_id, second);
    assert!(run.counts.is_empty(), "{:?}", run.counts);
    assert_eq!(run.records_received, 0);
    assert_eq!(
        run.log,
        [LogLine {
            source: LogSource::Install,
            text: "mine".to_owned()
        }]
    );
    s.apply(ExecutionsCommand::ShowRun(Some(first)));
    let earlier = s.app.executions.shown().expect("the first run's rows");
    assert!(earlier.rows.is_empty());
}

#[test]
fn a_replay_runs_the_picked_invocation_again_and_shows_what_it_made() {
    let mut s = Scripted::new();
    s.apply(Edit::AddBlock {
        position: Position::default(),
        connect_from: None,
    });
    let block_id = s.app.project.blocks[0].id.clone();
    let run = s.start_run();
    let mut original = record(&run, 1, &[]);
    original.block_id = block_id.clone();
    original.input = json!({"n": 3});
    s.send([
        started(&run),
        RuntimeEvent::Invocations {
            run_id: run.clone(),
            records: vec![original.clone()],
        },
        finished(&run, 1),
    ]);
    s.frames_until("finished", |app| !app.is_running());
    s.apply(ExecutionsCommand::Pick(1));
    s.apply(ExecutionsCommand::Replay);
    let request = s.run_request();
    assert!(request.single);
    assert_eq!(request.from, Some(block_id));
    assert_eq!(request.input, json!({"n": 3}));
    let replay = request.run_id;

    let mut again = original.clone();
    again.run_id = replay.clone();
    again.output = Some(json!(42));
    s.send([
        started(&replay),
        RuntimeEvent::Invocations {
            run_id: replay.clone(),
            records: vec![again.clone()],
        },
        finished(&replay, 1),
    ]);
    s.frames_until("the replay's record", |app| {
        app.executions
            .replay
            .as_ref()
            .is_some_and(|r| r.phase != ReplayPhase::Running)
    });
    let shown = s.app.executions.replay.as_ref().expect("a replay");
    assert_eq!(shown.original, original);
    assert_eq!(shown.phase, ReplayPhase::Done(Box::new(again)));
    // The replay is not a run of the project: the run shown is still the one replayed from.
    assert_eq!(s.app.run.as_ref().map(|r| &r.run_id), Some(&run));
    assert_eq!(s.app.executions.shown_run_id(), Some(run));

    s.apply(ExecutionsCommand::Replay);
    let refused = s.run_request().run_id;
    s.send([RuntimeEvent::RunRefused {
        run_id: refused,
        message: "the block does not compile".to_owned(),
        compile_errors: Vec::new(),
    }]);
    s.frames_until("the refusal", |app| {
        app.executions
            .replay
            .as_ref()
            .is_some_and(|r| r.phase != ReplayPhase::Running)
    });
    assert_eq!(
        s.app.executions.replay.as_ref().map(|r| &r.phase),
        Some(&ReplayPhase::Refused(
            "the block does not compile".to_owned()
        ))
    );
}

#[test]
fn only_the_latest_compile_check_is_believed() {
    let mut s = Scripted::new();
    s.frames_until("a check sent", |app| {
        app.check.due_at.is_none() && app.is_checking()
    });
    let check_id = loop {
        match s.requests.try_recv() {
            Ok(RuntimeRequest::Check { check_id, .. }) => break check_id,
            Ok(_) => {}
            Err(e) => panic!("no check was requested: {e}"),
        }
    };
    let error = |message: &str| CompileError {
        block_id: block(),
        block: "B".to_owned(),
        what: "code".to_owned(),
        line: None,
        message: message.to_owned(),
    };
    s.send([
        RuntimeEvent::Checked {
            check_id: RunId("an older check".into()),
            compile_errors: vec![error("old")],
        },
        RuntimeEvent::Checked {
            check_id,
            compile_errors: vec![error("new")],
        },
    ]);
    s.frames_until("the check's answer", |app| !app.is_checking());
    assert_eq!(s.app.compile_errors, [error("new")]);
}

#[test]
fn edits_are_undone_and_redone_a_step_at_a_time_and_quick_renames_are_one_step() {
    let mut s = Scripted::new();
    let revision = s.app.revision;
    s.apply(Edit::RenameProject("a".to_owned()));
    s.now_secs = 0.3;
    s.apply(Edit::RenameProject("ab".to_owned()));
    s.now_secs = 2.0;
    s.apply(Edit::AddBlock {
        position: Position::default(),
        connect_from: None,
    });
    assert_eq!(s.app.revision, revision + 3);
    assert_eq!(
        s.app.selection.single_block(),
        Some(&s.app.project.blocks[0].id)
    );

    s.apply(Command::Undo);
    assert!(s.app.project.blocks.is_empty());
    assert!(
        s.app.selection.blocks.is_empty(),
        "a deleted block is not selected"
    );
    assert_eq!(s.app.project.name, "ab");
    s.apply(Command::Undo);
    assert_eq!(s.app.project.name, "Untitled project");
    assert!(!s.app.can_undo());
    s.apply(Command::Redo);
    s.apply(Command::Redo);
    assert_eq!(
        (s.app.project.name.as_str(), s.app.project.blocks.len()),
        ("ab", 1)
    );
    assert!(!s.app.can_redo());

    // A refused edit is no step at all, and says why.
    let a = s.app.project.blocks[0].id.clone();
    s.apply(Edit::Connect {
        from: a.clone(),
        to: a,
        kind: crate::model::TransitionKind::Then,
    });
    assert_eq!(
        s.app.notices.last().map(|n| n.text.as_str()),
        Some("A block can't be connected to itself.")
    );
    s.apply(Command::Undo);
    assert_eq!(s.app.project.name, "ab", "undo went to the step before");
}

#[test]
fn unsaved_changes_show_until_saved_and_come_back_with_undo() {
    let dir = tempfile::tempdir().expect("a folder");
    let path = dir.path().join("p.braid.json");
    let mut s = Scripted::new();
    assert!(!s.app.is_dirty());
    assert_eq!(s.app.title(), "Untitled — Braid");

    s.apply(Edit::RenameProject("Mine".to_owned()));
    assert!(s.app.is_dirty());
    assert_eq!(s.app.title(), "● Untitled — Braid");

    s.apply(FileCommand::SaveAs(path.clone()));
    assert!(!s.app.is_dirty());
    assert_eq!(s.app.path.as_deref(), Some(path.as_path()));
    assert_eq!(s.app.title(), "p.braid.json — Braid");

    s.apply(Command::Undo);
    assert!(s.app.is_dirty(), "the file still has the name");
    s.apply(Command::Redo);
    assert!(!s.app.is_dirty(), "the project is as saved again");

    // New asks first while there are unsaved changes.
    s.apply(Command::Undo);
    s.apply(FileCommand::New);
    assert_eq!(s.app.confirm, Some(PendingAction::New));
    assert_eq!(s.app.path.as_deref(), Some(path.as_path()));
    s.apply(FileCommand::ConfirmDiscard(true));
    assert_eq!((s.app.path.as_deref(), s.app.is_dirty()), (None, false));
}

/// eframe draws no frame while the window is hidden or minimised, and the runtime's event channel is
/// bounded: a run must go on to its end anyway.
#[test]
fn a_run_finishes_while_no_frame_is_drawn() {
    const BATCHES: u64 = 5 * EVENT_CHANNEL as u64;
    let mut s = Scripted::new();
    let run = s.start_run();
    let events = s.events.clone();
    let (done_tx, done) = std::sync::mpsc::channel();
    let runtime = std::thread::spawn(move || {
        let send = |event| events.blocking_send(event).is_ok();
        let mut all_sent = send(started(&run));
        for id in 1..=BATCHES {
            all_sent &= send(RuntimeEvent::Invocations {
                run_id: run.clone(),
                records: vec![record(&run, id, &[])],
            });
        }
        all_sent &= send(finished(&run, BATCHES));
        let _ = done_tx.send(all_sent);
    });
    let finished_alone = done.recv_timeout(Duration::from_secs(20));
    assert_eq!(
        finished_alone,
        Ok(true),
        "the runtime could send the run's events with no frame drawn"
    );
    runtime.join().expect("the scripted runtime");
    s.frames_until("the run's end applied", |app| !app.is_running());
    let state = s.app.run.as_ref().expect("a run");
    assert_eq!(state.records_received, BATCHES);
    assert!(matches!(state.phase, RunPhase::Finished(_)));
    assert_eq!(
        s.app.executions.shown().map(|r| r.rows.len()),
        Some(BATCHES as usize)
    );
}

#[test]
fn notices_fade_errors_later_and_a_conflict_stays_until_dismissed() {
    let mut s = Scripted::new();
    s.app.notify(NoticeLevel::Info, "saved", 0.0);
    s.app.notify(NoticeLevel::Error, "could not save", 0.0);
    s.app.notify_lasting("changed on disk", 0.0);
    // The same message again replaces the older one.
    s.app.notify(NoticeLevel::Error, "could not save", 1.0);
    let texts = |app: &App| -> Vec<String> { app.notices.iter().map(|n| n.text.clone()).collect() };
    assert_eq!(
        texts(&s.app),
        ["saved", "changed on disk", "could not save"]
    );
    assert_eq!(s.app.next_notice_fades_in(1.0), Some(4.0));
    s.app.poll(6.0);
    assert_eq!(texts(&s.app), ["changed on disk", "could not save"]);
    s.app.poll(21.5);
    assert_eq!(texts(&s.app), ["changed on disk"]);
    assert_eq!(s.app.next_notice_fades_in(21.5), None);
    let id = s.app.notices[0].id;
    s.apply(Command::DismissNotice(id));
    assert!(s.app.notices.is_empty());
}

#[test]
fn a_start_block_is_the_projects_and_is_forgotten_with_it() {
    let mut s = Scripted::new();
    s.apply(Edit::AddBlock {
        position: Position::default(),
        connect_from: None,
    });
    let block = s.app.project.blocks[0].id.clone();
    s.apply(RunCommand::Start(RunOptions {
        from: Some(block.clone()),
        ..RunOptions::default()
    }));
    assert_eq!(s.run_request().from, Some(block.clone()));
    assert_eq!(s.app.run_options.from, Some(block.clone()));
    // The block goes: so does the start (▶ Run would otherwise name a block that is not there).
    s.apply(Edit::DeleteBlocks(vec![block.clone()]));
    assert_eq!(s.app.run_options.from, None);
    s.apply(Command::Undo);
    s.apply(RunCommand::Start(RunOptions {
        from: Some(block),
        input: "5".to_owned(),
        ..RunOptions::default()
    }));
    // Another project starts from the defaults: its input, its entry blocks.
    s.apply(FileCommand::New);
    s.apply(FileCommand::ConfirmDiscard(true));
    assert_eq!(s.app.run_options, RunOptions::default());
}

#[test]
fn a_new_run_is_shown_unless_the_shown_run_is_pinned() {
    let mut s = Scripted::new();
    let first = s.start_run();
    s.send([started(&first), finished(&first, 0)]);
    s.frames_until("the first run finished", |app| !app.is_running());
    s.apply(ExecutionsCommand::ShowRun(Some(first.clone())));
    let second = s.start_run();
    s.send([started(&second), finished(&second, 0)]);
    s.frames_until("the second run finished", |app| !app.is_running());
    assert_eq!(s.app.executions.shown_run_id(), Some(second.clone()));
    s.apply(ExecutionsCommand::ShowRun(Some(first.clone())));
    s.apply(ExecutionsCommand::PinRun(true));
    let third = s.start_run();
    s.send([started(&third), finished(&third, 0)]);
    s.frames_until("the third run finished", |app| !app.is_running());
    assert_eq!(s.app.executions.shown_run_id(), Some(first));
    s.apply(ExecutionsCommand::PinRun(false));
    s.apply(ExecutionsCommand::ShowRun(None));
    assert_eq!(s.app.executions.shown_run_id(), Some(third));
}
