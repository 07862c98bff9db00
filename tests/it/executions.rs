//! The Block Executions panel, driven headless: step through a run with a failed item, follow it back
//! to the fan-out and on to the fan-in, open the traceback's line, replay it after fixing the code; find
//! the run again after a restart; a snapshot of the panel.

use std::path::{Path, PathBuf};

use braid::app::executions::{Picked, ReplayPhase};
use braid::app::run::RunPhase;
use braid::app::{BlockEdit, Edit, ExecutionsCommand, RunCommand};
use braid::model::{BlockId, Position, TransitionKind};
use braid::run::{InvocationRecord, InvocationStatus};
use braid::shell::BraidApp;
use egui::{Key, Modifiers};
use egui_kittest::Harness;
use egui_kittest::kittest::Queryable as _;

use super::gui::{
    click, click_chip, click_node, harness_1280x800, harness_sized, mask_all, mask_fixed, settle,
    wait_for,
};
use super::support::Builder;

const PROCESS_FAILS_ON_3: &str = "def main(block_input, backpack):\n    backpack[\"seen\"] = block_input\n    if block_input == 3:\n        raise ValueError(f\"bad row {block_input}\")\n    print(\"processing\", block_input)\n    return block_input * 10\n";
pub(crate) const PROCESS_FIXED: &str = "def main(block_input, backpack):\n    backpack[\"seen\"] = block_input\n    return block_input * 10\n";

/// Split fans out 0..5 to Process, which fails on item 3; its exception goes to Fallback; both fan
/// in to Collect.
pub(crate) fn write_failing_pipeline(dir: &Path) -> PathBuf {
    let mut project = Builder::new()
        .block(
            "Split",
            "def main(block_input, backpack):\n    return list(range(5))\n",
        )
        .block("Process", PROCESS_FAILS_ON_3)
        .block(
            "Fallback",
            "def main(block_input, backpack):\n    return -1\n",
        )
        .block(
            "Collect",
            "def main(block_input, backpack):\n    return block_input\n",
        )
        .link("Split", "Process", TransitionKind::FanOut)
        .link("Process", "Collect", TransitionKind::FanIn)
        .link("Process", "Fallback", TransitionKind::Exception)
        .link("Fallback", "Collect", TransitionKind::FanIn)
        .build();
    "Failing item".clone_into(&mut project.name);
    for (block, (x, y)) in
        project
            .blocks
            .iter_mut()
            .zip([(0.0, 0.0), (260.0, 0.0), (520.0, 160.0), (780.0, 0.0)])
    {
        block.position = Position { x, y };
    }
    let path = dir.join("failing.braid.json");
    braid::model::format::save_project(&path, &project).expect("saves");
    path
}

pub(crate) fn run_to_end(harness: &mut Harness<'_, BraidApp>) {
    click(harness, "▶ Run");
    wait_for(harness, "the run to finish", |app| {
        matches!(
            app.app.run.as_ref().map(|r| &r.phase),
            Some(RunPhase::Finished(_))
        )
    });
}

/// Types `text` into the search field (replacing what is there) and waits for `rows` rows.
fn search(harness: &mut Harness<'_, BraidApp>, text: &str, rows: usize) {
    harness.get_by_label("Search invocations").focus();
    harness.step();
    harness.key_press_modifiers(egui::Modifiers::COMMAND, Key::A);
    harness.key_press(Key::Backspace);
    if !text.is_empty() {
        harness.get_by_label("Search invocations").type_text(text);
    }
    wait_for(harness, "the search", |app| {
        app.app.executions.visible.len() == rows
    });
}

pub(crate) fn current_run(harness: &Harness<'_, BraidApp>) -> braid::run::RunId {
    harness
        .state()
        .app
        .run
        .as_ref()
        .expect("a run")
        .run_id
        .clone()
}

/// The panel's picked invocation.
fn picked(harness: &Harness<'_, BraidApp>) -> Picked {
    harness
        .state()
        .app
        .executions
        .picked
        .clone()
        .expect("a pick")
}

/// The picked invocation's whole record.
fn picked_record(harness: &Harness<'_, BraidApp>) -> InvocationRecord {
    picked(harness).record.expect("its record")
}

fn picked_block(harness: &Harness<'_, BraidApp>) -> String {
    picked_record(harness).block_name.to_string()
}

fn press(harness: &mut Harness<'_, BraidApp>, key: Key) {
    harness.key_press(key);
    settle(harness);
}

#[test]
fn step_through_a_failed_item_follow_it_and_replay_it() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = write_failing_pipeline(dir.path());
    let mut harness = harness_sized(Some(path), [1280.0, 1000.0]);
    run_to_end(&mut harness);
    // The block first: the table lists block names too.
    click_node(&mut harness, "Process");
    click(&mut harness, "Block Executions");

    // The run is listed with its counts: 1 + 5 + 1 fallback + 1 collect, one caught.
    let runs = harness.state().app.executions.runs();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].invocations, 8);
    assert_eq!(runs[0].counts.caught, 1);
    harness.get_by_label_contains("7 succeeded · 1 caught");

    // A search over input, output and error finds the failed item (after a pause in typing).
    search(&mut harness, "bad row", 1);
    search(&mut harness, "", 5);

    // Process is selected: its five invocations are listed; only the failed one when filtered.
    harness.get_by_label("5 of 8 invocations");
    click_chip(&mut harness, "caught");
    harness.get_by_label("1 of 8 invocations");
    click(&mut harness, "[3]");
    let record = picked_record(&harness);
    assert_eq!(record.status, InvocationStatus::CaughtException);
    assert_eq!(record.input, serde_json::json!(3));
    // Its input, its error and the traceback line, on screen.
    harness.get_by_label("Input");
    harness.get_by_label("3");
    assert!(harness.get_all_by_label("ValueError: bad row 3").count() >= 1);
    let traceback_line = "  File \"Process\", line 4, in main";
    harness.get_by_label(traceback_line);

    // The traceback line opens the block's code at that line.
    click(&mut harness, traceback_line);
    let goto = harness
        .state()
        .app
        .code_goto
        .clone()
        .expect("a code request");
    assert_eq!(goto.block, BlockId("id-Process".into()));
    assert_eq!(goto.line, 4);

    // j and k step through the table (the panel has the keyboard after the click).
    click_chip(&mut harness, "caught");
    harness.get_by_label("5 of 8 invocations");
    click(&mut harness, "[3]");
    press(&mut harness, Key::J);
    let item = |h: &Harness<'_, BraidApp>| picked_record(h).item_path.to_vec();
    assert_eq!(item(&harness), vec![4]);
    press(&mut harness, Key::K);
    press(&mut harness, Key::K);
    assert_eq!(item(&harness), vec![2]);
    press(&mut harness, Key::ArrowDown);
    assert_eq!(item(&harness), vec![3]);

    // Shift+j / Shift+k step in start order over the whole run, and back.
    let here = picked_record(&harness);
    harness.key_press_modifiers(Modifiers::SHIFT, Key::J);
    settle(&mut harness);
    let next = picked_record(&harness);
    assert_ne!(next.id, here.id, "Shift+j moved on");
    assert!(next.started_at_ms >= here.started_at_ms, "in start order");
    harness.key_press_modifiers(Modifiers::SHIFT, Key::K);
    settle(&mut harness);
    assert_eq!(picked_record(&harness).id, here.id, "Shift+k came back");

    // Back to the fan-out that produced it.
    press(&mut harness, Key::ArrowLeft);
    assert_eq!(picked_block(&harness), "Split");
    let split = picked(&harness);
    assert_eq!(split.children.len(), 5, "the fan-out led to five items");
    // Its path runs through every block of the pipeline.
    for block in ["Split", "Process", "Fallback", "Collect"] {
        assert!(
            split
                .lineage_blocks
                .contains(&BlockId(format!("id-{block}").into())),
            "{block} is on the path"
        );
    }

    // Forward again through the failed item to the fan-in, by the detail's links and keys.
    click(&mut harness, "Process [3]");
    assert_eq!(
        harness.state().app.executions.picked.as_ref().map(|p| p.id),
        Some(record.id)
    );
    press(&mut harness, Key::L);
    assert_eq!(picked_block(&harness), "Fallback");
    press(&mut harness, Key::ArrowRight);
    assert_eq!(picked_block(&harness), "Collect");
    let collect = picked_record(&harness);
    assert_eq!(collect.parents.len(), 5, "the fan-in came from five items");
    assert_eq!(collect.input, serde_json::json!([0, 10, 20, -1, 40]));
    // The canvas follows the item: Collect is the selected block now.
    assert_eq!(
        harness.state().app.selection.single_block(),
        Some(&BlockId("id-Collect".into()))
    );

    // Fix the code, pick the failed item again and replay it: the diff shows the new result.
    harness.state_mut().app.apply(
        Edit::EditBlock {
            block: BlockId("id-Process".into()),
            edit: BlockEdit::Code(PROCESS_FIXED.into()),
        },
        0.0,
    );
    harness
        .state_mut()
        .app
        .apply(ExecutionsCommand::Pick(record.id), 0.0);
    settle(&mut harness);
    click(&mut harness, "⟲ Replay");
    wait_for(&mut harness, "the replay", |app| {
        app.app
            .executions
            .replay
            .as_ref()
            .is_some_and(|r| matches!(r.phase, ReplayPhase::Done(_)))
    });
    harness.get_by_label("- ValueError: bad row 3 (caught)");
    harness.get_by_label("+ 30");
    harness.get_by_label("Replay (current code)");
    // The replay ran nothing else and is not a run of its own.
    assert_eq!(harness.state().app.executions.runs().len(), 1);
}

#[test]
fn runs_are_found_again_after_a_restart() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = write_failing_pipeline(dir.path());
    let first_run = {
        let mut harness = harness_sized(Some(path.clone()), [1280.0, 1000.0]);
        run_to_end(&mut harness);
        current_run(&harness)
    };

    // A new editor on the same file: the run comes from the project's history.
    let mut harness = harness_sized(Some(path), [1280.0, 1000.0]);
    click_node(&mut harness, "Process");
    click(&mut harness, "Block Executions");
    let runs = harness.state().app.executions.runs();
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_eq!(runs[0].run_id, first_run);
    assert_eq!(runs[0].invocations, 8);
    harness.get_by_label_contains("7 succeeded · 1 caught");

    // Its invocations and records are there too (read in the background).
    wait_for(&mut harness, "the run's rows", |app| {
        app.app.executions.shown().is_some()
    });
    harness.get_by_label("5 of 8 invocations");
    // The canvas shows that run's counts, though nothing ran in this session.
    let (counts, finished) = harness.state().app.canvas_counts().expect("counts");
    let process = counts[&BlockId("id-Process".into())];
    assert!(finished);
    assert_eq!((process.succeeded, process.caught), (4, 1));
    harness.get_by_label("4 succeeded");
    // The database searches whole values: the error text finds the failed item.
    search(&mut harness, "bad row 3", 1);
    search(&mut harness, "", 5);
    click(&mut harness, "[3]");
    // The record, read back from the database.
    let record = picked_record(&harness);
    assert_eq!(record.input, serde_json::json!(3));
    assert_eq!(
        record.error.expect("its error").summary(),
        "ValueError: bad row 3"
    );
    assert_eq!(picked(&harness).children.len(), 1, "it led to Fallback");

    // A second run; the first can still be shown (its counts on the canvas), then deleted for good.
    run_to_end(&mut harness);
    wait_for(&mut harness, "two runs", |app| {
        app.app.executions.runs().len() == 2
    });
    let app = &mut harness.state_mut().app;
    app.apply(ExecutionsCommand::ShowRun(Some(first_run.clone())), 0.0);
    assert_eq!(app.executions.shown_run_id(), Some(first_run.clone()));
    app.apply(ExecutionsCommand::DeleteRun(first_run.clone()), 0.0);
    let runs = app.executions.runs();
    assert_eq!(runs.len(), 1);
    assert_ne!(runs[0].run_id, first_run);

    // Retention: keeping one run deletes the older one from the history.
    run_to_end(&mut harness);
    wait_for(&mut harness, "two runs again", |app| {
        app.app.executions.runs().len() == 2
    });
    let newest = current_run(&harness);
    let app = &mut harness.state_mut().app;
    app.apply(ExecutionsCommand::SetKeepRuns(1), 0.0);
    let runs = app.executions.runs();
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_eq!(runs[0].run_id, newest);
    let history = app.executions.history().expect("the project's history");
    assert_eq!(history.runs().expect("readable").len(), 1);
}

/// The panel with a failed item picked, as an image (thresholds in `kittest.toml`).
#[test]
fn snapshot_of_the_executions_panel() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = write_failing_pipeline(dir.path());
    let mut harness = harness_1280x800(Some(path));
    run_to_end(&mut harness);
    click_node(&mut harness, "Process");
    click(&mut harness, "Block Executions");
    click(&mut harness, "[3]");
    // Times differ from run to run: cover them with boxes of fixed widths (durations read in ms or
    // µs, so their labels' widths vary too).
    mask_all(
        &mut harness,
        &[
            (" · 8 invocations", 190.0),
            ("queued ", 400.0),
            (" ms", 72.0),
            (" µs", 72.0),
        ],
    );
    let runs = harness
        .get_by_label_contains("7 succeeded · 1 caught")
        .rect();
    let runs = runs.expand2(egui::vec2(0.0, 27.0));
    mask_fixed(&mut harness, runs, 250.0);
    let status = harness.get_by_label_contains("failing.braid.json").rect();
    mask_fixed(&mut harness, status, 400.0);
    harness.snapshot("executions_panel");

    // The timeline of the same run (bars vary with timing, so no image): lanes by slot, then by block.
    click(&mut harness, "Timeline");
    harness.get_by_label("concurrency slots");
    click(&mut harness, "blocks");
    harness.get_by_label("Ctrl+scroll zooms, drag pans, double-click fits, click picks");
}

/// The timeline as an image, on a run with fixed times (a real run's bars move with its timing): two
/// blocks, items starting in waves at a limit of 4, one slow item and one failure.
#[test]
fn snapshot_of_the_timeline() {
    use braid::app::executions::{RunData, Source};
    use braid::run::{BlockCounts, InvocationRow, RunId, RunRow, RunStatus};
    let start = 1.7e12;
    let mut rows = vec![InvocationRow {
        id: 1,
        block_id: BlockId("split".into()),
        block_name: "Split".into(),
        item_path: braid::run::ItemPath::new(),
        item: None,
        attempt: 1,
        status: InvocationStatus::Succeeded,
        carried: false,
        started_at_ms: Some(start),
        ended_at_ms: Some(start + 3.0),
        input_preview: "null".to_owned(),
        error_summary: None,
        worker: None,
    }];
    for i in 0..16_u32 {
        let begin = 4.0 + f64::from(i / 4) * 10.0 + f64::from(i % 4) * 0.5;
        let length = if i == 9 { 30.0 } else { 6.0 + f64::from(i % 3) };
        let failed = i == 6;
        rows.push(InvocationRow {
            id: u64::from(i) + 2,
            block_id: BlockId("process".into()),
            block_name: "Process".into(),
            item_path: std::iter::once(i).collect(),
            item: None,
            carried: false,
            attempt: 1,
            status: if failed {
                InvocationStatus::Exception
            } else {
                InvocationStatus::Succeeded
            },
            started_at_ms: Some(start + begin),
            ended_at_ms: Some(start + begin + length),
            input_preview: i.to_string(),
            error_summary: failed.then(|| "ValueError: bad row 6".to_owned()),
            worker: None,
        });
    }
    let row = RunRow {
        run_id: RunId("timeline".into()),
        status: RunStatus::Failed,
        started_at_ms: start,
        duration_ms: Some(70.0),
        invocations: rows.len() as u64,
        counts: BlockCounts::default(),
        executor: braid::run::Executor::Local,
        redrive_of: None,
    };
    let mut harness = harness_1280x800(None);
    harness
        .state_mut()
        .app
        .executions
        .insert_run(RunData::from_rows(row, rows, Source::Session));
    settle(&mut harness);
    click(&mut harness, "Timeline");
    harness.get_by_label("concurrency slots");
    harness.snapshot("timeline_slots");
    click(&mut harness, "blocks");
    harness.snapshot("timeline_blocks");
}

/// The table shows every invocation of a run as soon as it has finished, even when the last ones arrive
/// inside the table's refresh interval: the editor repaints nothing more after a run ends, so a refresh
/// left for later would leave the table stale until the user touched something. The clock is held
/// still, so every refresh after the first is held back by the interval.
#[test]
fn the_table_has_every_invocation_once_the_run_has_finished() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_failing_pipeline(dir.path());
    let mut app = braid::app::App::new(
        Some(super::support::runtime_config()),
        braid::app::DialogMode::InApp,
    );
    app.open_at_start(&path);
    let now = 1000.0;
    app.poll(now);
    app.apply(RunCommand::Start(braid::app::RunOptions::default()), now);
    let deadline = std::time::Instant::now() + std::time::Duration::from_mins(1);
    while !matches!(
        app.run.as_ref().map(|r| &r.phase),
        Some(RunPhase::Finished(_))
    ) {
        assert!(std::time::Instant::now() < deadline, "the run finishes");
        app.poll(now);
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let run = app.executions.shown().expect("the run is shown");
    assert_eq!(
        run.rows.len(),
        1 + 5 + 1 + 1,
        "Split, 5 Process, Fallback, Collect"
    );
    assert_eq!(
        app.executions.visible.len(),
        run.rows.len(),
        "every row is in the table"
    );
}

/// A run's failures are listed one line each, enough of them in view; a failure's block and item link
/// to its invocation in Block Executions, with its block selected beside it.
#[test]
fn a_failure_links_to_its_invocation() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let mut project = Builder::new()
        .block(
            "Split",
            "def main(block_input, backpack):\n    return list(range(30))\n",
        )
        .block(
            "Process",
            "def main(block_input, backpack):\n    if block_input % 4 == 3:\n        raise ValueError(f'bad row {block_input}')\n    return block_input\n",
        )
        .link("Split", "Process", TransitionKind::FanOut)
        .build();
    for (block, x) in project.blocks.iter_mut().zip([0.0, 300.0]) {
        block.position = Position { x, y: 0.0 };
    }
    let path = dir.path().join("failures.braid.json");
    braid::model::format::save_project(&path, &project).expect("saves");
    let mut harness = harness_1280x800(Some(path));
    run_to_end(&mut harness);

    // Seven failures; the panel keeps its height (it does not shrink to the hint shown before the
    // run), so several lines of them are in view.
    let tab = harness.get_by_label("Failures (7)").rect();
    assert!(
        tab.top() < 650.0,
        "the results panel starts at {}",
        tab.top()
    );
    click(&mut harness, "Failures (7)");
    harness.get_by_label_contains("bad row 19");

    click(&mut harness, "Process [11]");
    let record = picked_record(&harness);
    assert_eq!(record.item_path[..], [11]);
    assert_eq!(record.status, InvocationStatus::Exception);
    assert_eq!(record.input, serde_json::json!(11));
    harness.get_by_label("Error");
    let app = &harness.state().app;
    let process = app
        .project
        .find_block("Process")
        .expect("Process")
        .id
        .clone();
    assert_eq!(app.selection.single_block(), Some(&process));
}

/// A run on a Dask cluster: the table names each invocation's worker, the line above it says where the
/// run went, and the timeline offers a lane per worker (laid out in the order they first ran).
#[test]
fn a_run_on_a_cluster_shows_each_invocations_worker() {
    use braid::app::executions::{RunData, Source};
    use braid::run::{BlockCounts, Executor, InvocationRow, RunId, RunRow, RunStatus};
    let start = 1.7e12;
    let rows: Vec<InvocationRow> = (0..8_u32)
        .map(|i| InvocationRow {
            id: u64::from(i) + 1,
            block_id: BlockId("process".into()),
            block_name: "Process".into(),
            item_path: std::iter::once(i).collect(),
            item: None,
            attempt: 1,
            status: InvocationStatus::Succeeded,
            carried: false,
            started_at_ms: Some(start + f64::from(i / 2) * 10.0),
            ended_at_ms: Some(start + f64::from(i / 2) * 10.0 + 8.0),
            input_preview: i.to_string(),
            error_summary: None,
            worker: Some(format!("tcp://127.0.0.1:{}", 4001 + i % 2).into()),
        })
        .collect();
    let row = RunRow {
        run_id: RunId("cluster".into()),
        status: RunStatus::Succeeded,
        started_at_ms: start,
        duration_ms: Some(40.0),
        invocations: rows.len() as u64,
        counts: BlockCounts::default(),
        executor: Executor::Dask {
            scheduler: "tcp://127.0.0.1:8786".to_owned(),
        },
        redrive_of: None,
    };
    let mut harness = harness_1280x800(None);
    harness
        .state_mut()
        .app
        .executions
        .insert_run(RunData::from_rows(row, rows, Source::Session));
    settle(&mut harness);
    click(&mut harness, "Block Executions");
    harness.get_by_label("· ran on the Dask cluster at tcp://127.0.0.1:8786");
    harness.get_by_label("worker");
    assert_eq!(harness.query_all_by_label("127.0.0.1:4001").count(), 4);
    click(&mut harness, "Timeline");
    click(&mut harness, "Dask workers");
    settle(&mut harness);
    harness.snapshot("timeline_workers");
}

/// The run dialog's "a Dask cluster at" goes into the run's request, and the choice is remembered beside
/// the project (`.braid/`), never in the project file: opening the project again offers it.
#[test]
fn where_a_projects_runs_go_is_remembered_beside_it_and_reaches_the_request() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_failing_pipeline(dir.path());
    let project_text = std::fs::read_to_string(&path).unwrap();
    let (requests_tx, mut requests) = tokio::sync::mpsc::channel(16);
    let (_events, events_rx) = tokio::sync::mpsc::channel(16);
    let runtime = braid::runtime::RuntimeHandle::from_channels(requests_tx, events_rx);
    let mut app = braid::app::App::with_runtime(Some(runtime), braid::app::DialogMode::InApp);
    app.open_at_start(&path);
    assert!(!app.run_options.on_cluster, "this machine by default");
    let options = braid::app::RunOptions {
        on_cluster: true,
        cluster: "127.0.0.1:8786".to_owned(),
        ..braid::app::RunOptions::default()
    };
    app.apply(RunCommand::Start(options), 1000.0);
    let Ok(braid::runtime::RuntimeRequest::Run(request)) = requests.try_recv() else {
        panic!("a run was requested");
    };
    assert_eq!(
        request.executor,
        braid::run::Executor::Dask {
            scheduler: "tcp://127.0.0.1:8786".to_owned()
        }
    );
    assert_eq!(std::fs::read_to_string(&path).unwrap(), project_text);

    let mut again = braid::app::App::with_runtime(None, braid::app::DialogMode::InApp);
    again.open_at_start(&path);
    assert!(again.run_options.on_cluster);
    assert_eq!(again.run_options.cluster, "127.0.0.1:8786");
}
