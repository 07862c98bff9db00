//! The editor, driven headless through `egui_kittest`: clicks and keys go through accessibility queries,
//! exactly as a user's would, into the real application (its runtime included).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use braid::app::DialogMode;
use braid::app::run::RunPhase;
use braid::model::format::load_project;
use braid::model::{Block, BlockKind, Position, Project, Transition, TransitionKind};
use braid::run::RunStatus;
use braid::runtime::RuntimeConfig;
use braid::shell::{AppOptions, BraidApp};
use egui::{Key, Modifiers};
use egui_kittest::Harness;
use egui_kittest::kittest::Queryable as _;

fn runtime() -> RuntimeConfig {
    crate::support::runtime_config()
}

/// The whole editor with Braid's own file prompt (no native dialogs in tests). Tall enough that the
/// inspector shows a block with seven transitions without scrolling.
pub fn harness(project: Option<PathBuf>) -> Harness<'static, BraidApp> {
    harness_sized(project, [1280.0, 1200.0])
}

/// The editor at the size the issue asks to be readable at.
pub(crate) fn harness_1280x800(project: Option<PathBuf>) -> Harness<'static, BraidApp> {
    harness_sized(project, [1280.0, 800.0])
}

pub(crate) fn harness_sized(
    project: Option<PathBuf>,
    size: [f32; 2],
) -> Harness<'static, BraidApp> {
    let mut harness = Harness::builder()
        .with_size(size)
        .with_max_steps(200)
        .build_eframe(move |cc| {
            BraidApp::new(
                cc,
                AppOptions {
                    runtime: Some(runtime()),
                    project,
                    dialogs: DialogMode::InApp,
                },
            )
        });
    settle(&mut harness);
    harness
}

/// Runs frames until nothing more is requested; the editor repaints on a timer while checking code,
/// so a bounded number of steps is enough.
pub(crate) fn settle(harness: &mut Harness<'_, BraidApp>) {
    harness.run_steps(8);
}

/// Clicks the widget with this label, then takes the pointer away (a tooltip left under it would
/// cover the next widget).
pub(crate) fn click(harness: &mut Harness<'_, BraidApp>, label: &str) {
    harness.get_by_label(label).click();
    harness.step();
    harness.remove_cursor();
    settle(harness);
}

/// Clicks the button with this label (a filter chip, where a table row may read the same).
pub(crate) fn click_chip(harness: &mut Harness<'_, BraidApp>, label: &str) {
    harness
        .get_by_role_and_label(egui::accesskit::Role::Button, label)
        .click();
    harness.step();
    harness.remove_cursor();
    settle(harness);
}

/// Clicks `labels` in turn until `done` holds (at most three times). A synthetic click now and then
/// lands in a frame where egui does not take it (kittest presses and releases within one frame); a
/// second try tells that apart from a broken button, and a test whose clicks never do it fails here.
fn click_until(
    harness: &mut Harness<'_, BraidApp>,
    labels: &[&str],
    done: impl Fn(&BraidApp) -> bool,
) {
    for _attempt in 0..3 {
        for label in labels {
            // The inspector scrolls: a label below its fold is brought into view first.
            harness.get_by_label(label).scroll_to_me();
            settle(harness);
            click(harness, label);
        }
        if done(harness.state()) {
            return;
        }
    }
    panic!("clicking {labels:?} three times did not do it");
}

/// Clicks a block's node on the canvas. Accessibility rectangles of canvas widgets are in canvas
/// coordinates (egui does not apply the canvas's pan and zoom to them), so the point is mapped to the
/// screen first.
pub(crate) fn click_node(harness: &mut Harness<'_, BraidApp>, name: &str) {
    let rect = harness.get_by_label(name).rect();
    let point = harness.state().canvas_to_screen(rect.center());
    harness.drag_at(point);
    harness.drop_at(point);
    harness.step();
    harness.remove_cursor();
    settle(harness);
}

fn kinds_of(project: &Project) -> Vec<TransitionKind> {
    project.transitions.iter().map(|t| t.kind).collect()
}

pub(crate) fn project<'a>(harness: &'a Harness<'_, BraidApp>) -> &'a Project {
    &harness.state().app.project
}

/// Waits (in real time) until `done` holds, stepping the app.
pub(crate) fn wait_for(
    harness: &mut Harness<'_, BraidApp>,
    what: &str,
    done: impl Fn(&BraidApp) -> bool,
) {
    let deadline = Instant::now() + Duration::from_mins(1);
    while !done(harness.state()) {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        harness.step();
        std::thread::sleep(Duration::from_millis(20));
    }
    settle(harness);
}

/// Waits until the editor's run ends; its summary (a run that was refused or is still going fails
/// the test).
pub(crate) fn wait_for_run(harness: &mut Harness<'_, BraidApp>) -> braid::run::RunSummary {
    wait_for(harness, "the run to end", |app| {
        matches!(
            app.app.run.as_ref().map(|r| &r.phase),
            Some(RunPhase::Finished(_) | RunPhase::Refused { .. })
        )
    });
    match harness.state().app.run.as_ref().map(|r| &r.phase) {
        Some(RunPhase::Finished(summary)) => (**summary).clone(),
        _ => panic!("the run did not finish: {:?}", harness.state().app.run),
    }
}

pub(crate) fn code_of<'a>(project: &'a Project, name: &str) -> &'a str {
    let block = project
        .blocks
        .iter()
        .find(|b| b.name == name)
        .unwrap_or_else(|| panic!("no block {name:?}"));
    match &block.kind {
        BlockKind::Code(code) => &code.code,
        other => panic!("{name} is not a code block: {other:?}"),
    }
}

/// A fan-out / fan-in pipeline built in code (independent of any sample file).
pub(crate) fn write_map_reduce(dir: &Path) -> PathBuf {
    let mut project = Project {
        name: "Double them".to_owned(),
        ..Project::default()
    };
    let split = Block::new_code(
        "Split",
        "def main(block_input, backpack):\n    return list(range(1, 11))\n",
        Position { x: 0.0, y: 0.0 },
    );
    let double = Block::new_code(
        "Double",
        "def main(block_input, backpack):\n    return block_input * 2\n",
        Position { x: 260.0, y: 0.0 },
    );
    let collect = Block::new_code(
        "Collect",
        "def main(block_input, backpack):\n    return sum(block_input)\n",
        Position { x: 520.0, y: 0.0 },
    );
    project.transitions.push(Transition::new(
        split.id.clone(),
        double.id.clone(),
        TransitionKind::FanOut,
    ));
    project.transitions.push(Transition::new(
        double.id.clone(),
        collect.id.clone(),
        TransitionKind::FanIn,
    ));
    project.blocks.extend([split, double, collect]);
    let path = dir.join("map-reduce.braid.json");
    braid::model::format::save_project(&path, &project).expect("saves");
    path
}

#[test]
fn build_connect_edit_undo_save_and_reopen() {
    // Tall enough for the block's whole list of seven transitions in its inspector without scrolling.
    let mut harness = harness_sized(None, [1280.0, 1400.0]);

    // Two blocks from the toolbar.
    click(&mut harness, "+ Block");
    click(&mut harness, "+ Block");
    assert_eq!(project(&harness).blocks.len(), 2);
    let names: Vec<&str> = project(&harness)
        .blocks
        .iter()
        .map(|b| b.name.as_str())
        .collect();
    assert_eq!(names, ["Code Block", "Code Block 2"]);

    // The second block is selected; connect it to the first with every transition type, through the
    // inspector's "Add a transition" row.
    for kind in TransitionKind::ALL {
        let before = project(&harness).transitions.len();
        click_until(&mut harness, &[kind.label(), "Connect"], |app| {
            app.app.project.transitions.len() > before
        });
    }
    let kinds = kinds_of(project(&harness));
    assert_eq!(
        kinds,
        TransitionKind::ALL,
        "{:?}",
        harness.state().app.notices
    );
    let first = project(&harness).blocks[0].id.clone();
    let second = project(&harness).blocks[1].id.clone();
    assert!(
        project(&harness)
            .transitions
            .iter()
            .all(|t| t.from == second && t.to == first)
    );

    // Select the `if` transition from the block's list and give it an expression.
    click_until(&mut harness, &["if ? to Code Block"], |app| {
        app.app.selection.transition.is_some()
    });
    harness.get_by_label("Condition (Python)").click();
    settle(&mut harness);
    harness
        .get_by_label("Condition (Python)")
        .type_text("return_data > 3");
    settle(&mut harness);
    let if_transition = project(&harness)
        .transitions
        .iter()
        .find(|t| t.kind == TransitionKind::If)
        .expect("an if transition");
    assert_eq!(if_transition.expression, "return_data > 3");

    // Back to the block (a click on its node); delete the `merge` transition from its inspector, then
    // turn the `else` wire into a `merge`.
    click_node(&mut harness, "Code Block 2");
    assert_eq!(harness.state().app.selection.single_block(), Some(&second));
    click_until(&mut harness, &["merge to Code Block"], |app| {
        app.app.selection.transition.is_some()
    });
    click(&mut harness, "Delete transition");
    assert_eq!(project(&harness).transitions.len(), 6);
    click_node(&mut harness, "Code Block 2");
    click(&mut harness, "else to Code Block");
    click(&mut harness, "merge");
    let kinds = kinds_of(project(&harness));
    assert_eq!(
        kinds,
        [
            TransitionKind::Then,
            TransitionKind::If,
            TransitionKind::Merge,
            TransitionKind::Exception,
            TransitionKind::FanOut,
            TransitionKind::FanIn
        ]
    );

    // Edit the first block's code in the code editor.
    harness.key_press(Key::Escape);
    settle(&mut harness);
    let before_edit = project(&harness).clone();
    harness
        .state_mut()
        .app
        .apply(braid::app::Select::Blocks(vec![first.clone()]), 0.0);
    settle(&mut harness);
    click(&mut harness, "Code");
    harness.get_by_label("Code").type_text("# doubled\n");
    settle(&mut harness);
    assert!(
        code_of(project(&harness), "Code Block").contains("# doubled"),
        "{}",
        code_of(project(&harness), "Code Block")
    );

    // Undo through the Edit menu (the code editor has the keyboard), then redo with the keyboard.
    harness.key_press(Key::Escape);
    settle(&mut harness);
    harness.get_by_label("Edit").click();
    harness.run_steps(3);
    harness.get_by_label("Undo Ctrl+Z").click();
    harness.step();
    harness.remove_cursor();
    settle(&mut harness);
    assert_eq!(project(&harness), &before_edit);
    harness.key_press_modifiers(Modifiers::COMMAND | Modifiers::SHIFT, Key::Z);
    settle(&mut harness);
    assert!(code_of(project(&harness), "Code Block").contains("# doubled"));
    harness.key_press_modifiers(Modifiers::COMMAND, Key::Z);
    settle(&mut harness);
    assert_eq!(project(&harness), &before_edit);
    harness.key_press_modifiers(Modifiers::COMMAND, Key::Y);
    settle(&mut harness);
    assert!(code_of(project(&harness), "Code Block").contains("# doubled"));

    // Save with Ctrl+S: no file yet, so Braid's path prompt asks for one.
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("built.braid.json");
    assert!(harness.state().app.title().starts_with("● Untitled"));
    harness.key_press_modifiers(Modifiers::COMMAND, Key::S);
    settle(&mut harness);
    type_path_and_save(&mut harness, &path);
    assert!(path.exists(), "the project was saved to {}", path.display());
    assert_eq!(harness.state().app.title(), "built.braid.json — Braid");
    let saved = load_project(&path).expect("the saved file loads").project;
    assert_eq!(&saved, project(&harness));

    // Reopen it in a fresh editor: the same project, positions included.
    let reopened = harness_with(&path);
    assert_eq!(project(&reopened), &saved);
    assert!(!reopened.state().app.is_dirty());
}

/// Braid's own path prompt: replace the suggested path, press Save.
fn type_path_and_save(harness: &mut Harness<'_, BraidApp>, path: &Path) {
    harness.get_by_label("Path").focus();
    harness.step();
    harness.key_press_modifiers(Modifiers::COMMAND, Key::A);
    harness
        .get_by_label("Path")
        .type_text(&path.display().to_string());
    settle(harness);
    harness.get_by_label("Save").click();
    settle(harness);
}

pub(crate) fn harness_with(path: &Path) -> Harness<'static, BraidApp> {
    harness(Some(path.to_owned()))
}

#[test]
fn copy_paste_duplicate_and_delete_blocks() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = write_map_reduce(dir.path());
    let mut harness = harness_with(&path);
    assert_eq!(project(&harness).blocks.len(), 3);

    // Select all, copy: the clipboard gets the blocks and their inner transitions as JSON.
    harness.key_press_modifiers(Modifiers::COMMAND, Key::A);
    settle(&mut harness);
    assert_eq!(harness.state().app.selection.blocks.len(), 3);
    harness.event(egui::Event::Copy);
    harness.step();
    let copied = harness
        .output()
        .platform_output
        .commands
        .iter()
        .find_map(|c| match c {
            egui::OutputCommand::CopyText(text) => Some(text.clone()),
            _ => None,
        })
        .expect("something was copied");
    assert!(copied.contains("\"braid_clipboard\""), "{copied}");
    settle(&mut harness);

    // Paste it back: three more blocks, two more transitions, all with new ids, and they are selected.
    harness.event(egui::Event::Paste(copied));
    settle(&mut harness);
    assert_eq!(project(&harness).blocks.len(), 6);
    assert_eq!(project(&harness).transitions.len(), 4);
    assert_eq!(harness.state().app.selection.blocks.len(), 3);
    assert!(
        project(&harness)
            .blocks
            .iter()
            .any(|b| b.name == "Double 2")
    );

    // Delete the pasted blocks with the Delete key, then undo it.
    harness.key_press(Key::Delete);
    settle(&mut harness);
    assert_eq!(project(&harness).blocks.len(), 3);
    assert_eq!(project(&harness).transitions.len(), 2);
    harness.key_press_modifiers(Modifiers::COMMAND, Key::Z);
    settle(&mut harness);
    assert_eq!(project(&harness).blocks.len(), 6);

    // Duplicate one block from the inspector.
    let double = project(&harness).blocks[1].id.clone();
    harness
        .state_mut()
        .app
        .apply(braid::app::Select::Blocks(vec![double]), 0.0);
    settle(&mut harness);
    // The inspector's buttons are below the code: scrolled to, as a person would.
    harness.get_by_label("Duplicate").scroll_to_me();
    settle(&mut harness);
    click(&mut harness, "Duplicate");
    assert_eq!(project(&harness).blocks.len(), 7);
    assert!(harness.state().app.is_dirty());
}

#[test]
fn runs_a_pipeline_and_shows_the_result() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = write_map_reduce(dir.path());
    let mut harness = harness_with(&path);
    let before = std::fs::read_to_string(&path).expect("readable");

    harness.get_by_label("▶ Run").click();
    let summary = wait_for_run(&mut harness);
    assert_eq!(summary.status, RunStatus::Succeeded, "{summary:?}");
    // 1 + 10 + 1 invocations; the sum of 2, 4, …, 20.
    assert_eq!(summary.invocations, 12);
    harness.get_by_label("✔ Succeeded");
    harness.get_by_label("110");
    harness.get_by_label("Results (1)");
    // Running never touches the file.
    assert_eq!(std::fs::read_to_string(&path).expect("readable"), before);

    // Closing the editor closes the run's history too: no write-ahead log is left beside it.
    harness.state_mut().app.shutdown_runtime();
    drop(harness);
    let history = dir.path().join(".braid");
    let files: Vec<String> = std::fs::read_dir(&history)
        .expect("a history folder")
        .map(|e| {
            e.expect("an entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    let mut files = files;
    files.sort();
    assert_eq!(
        files,
        [".gitignore", "map-reduce.braid.json.history.sqlite"],
        "{files:?}"
    );
}

/// eframe draws no frame while the window is hidden or minimised, and the runtime's event channel is
/// bounded (1,024 events): a run that sends more than that (one batch of records per invocation, one
/// at a time) still goes on to its end while nobody draws, and the editor shows all of it after.
#[test]
fn a_run_of_more_events_than_the_channel_holds_finishes_while_no_frame_is_drawn() {
    const ITEMS: usize = 3_000;
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("many.braid.json");
    let mut app = braid::app::App::new(Some(runtime()), DialogMode::InApp);
    app.project = crate::support::Builder::fan_out(
        ITEMS,
        "Echo",
        "def main(block_input, backpack):\n    return block_input\n",
    )
    .build();
    app.apply(braid::app::FileCommand::SaveAs(path.clone()), 0.0);
    app.apply(
        braid::app::RunCommand::Start(braid::app::RunOptions {
            concurrency: Some(1),
            ..braid::app::RunOptions::default()
        }),
        0.0,
    );
    let run_id = app.run.as_ref().expect("a run").run_id.clone();

    // No frame: the history alone says when the run has ended.
    let history = braid::runtime::history::History::path_for_project(&path);
    let deadline = Instant::now() + Duration::from_secs(90);
    let status = loop {
        let status = braid::runtime::history::History::open(&history)
            .ok()
            .and_then(|h| h.runs().ok())
            .and_then(|runs| runs.into_iter().find(|r| r.run_id == run_id))
            .map(|run| run.status)
            .filter(|status| *status != RunStatus::Running);
        if let Some(status) = status {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "the run stalled while no frame was drawn"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(status, RunStatus::Succeeded);

    let mut now = 0.0;
    while app.is_running() {
        now += 0.05;
        app.poll(now);
        assert!(Instant::now() < deadline, "the events were never applied");
    }
    let run = app.run.as_ref().expect("a run");
    assert_eq!(run.records_received, ITEMS as u64 + 1);
    let Some(RunPhase::Finished(summary)) = app.run.as_ref().map(|r| &r.phase) else {
        panic!("the run did not finish: {:?}", app.run);
    };
    assert_eq!(summary.invocations, ITEMS as u64 + 1);
    app.shutdown_runtime();
}

/// A saved one-block project whose block writes `line` to its worker's stderr (as C code would) and
/// returns 1.
fn writes_to_stderr(dir: &Path, line: &str) -> PathBuf {
    let project = crate::support::Builder::new()
        .block(
            "Native",
            &format!(
                "import os\ndef main(block_input, backpack):\n    os.write(2, b'{line}\\n')\n    return 1\n"
            ),
        )
        .build();
    let path = dir.join("native.braid.json");
    braid::model::format::save_project(&path, &project).expect("saves");
    path
}

/// The Log tab shows what the run printed outside its invocations: here a block's C-level write to the
/// worker's stderr, with the worker it came from.
#[test]
fn the_log_tab_shows_what_workers_wrote_themselves() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = writes_to_stderr(dir.path(), "native library says hi");
    let mut harness = harness_with(&path);
    assert_eq!(first_output(&mut harness), 1);
    click(&mut harness, "Log (1)");
    harness.get_by_label("native library says hi");
    let run = harness.state().app.run.as_ref().expect("a run");
    assert!(
        matches!(run.log[0].source, braid::app::run::LogSource::Worker(1 | 2)),
        "{:?}",
        run.log
    );
}

/// A past run's log comes from the history: reopened, the editor shows the log of the run Block
/// Executions shows.
#[test]
fn the_log_tab_shows_a_past_runs_log_from_the_history() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = writes_to_stderr(dir.path(), "written before the restart");
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_braid"))
        .arg("run")
        .arg(&path)
        .output()
        .expect("braid run")
        .status;
    assert!(status.success());
    let mut harness = harness_with(&path);
    assert!(
        harness.state().app.run.is_none(),
        "nothing ran in this editor"
    );
    click(&mut harness, "Log (1)");
    harness.get_by_label("written before the restart");
}

/// In a project never saved (so with no history), an earlier run of the session keeps its log: Block
/// Executions can go back to it and the Log tab shows what that run's worker wrote.
#[test]
fn an_earlier_runs_log_stays_in_an_unsaved_project() {
    let mut harness = harness(None);
    let code = |line: &str| {
        format!(
            "import os\ndef main(block_input, backpack):\n    os.write(2, b'{line}\\n')\n    return 1\n"
        )
    };
    harness.state_mut().app.project = crate::support::Builder::new()
        .block("Native", &code("from the first run"))
        .build();
    assert_eq!(first_output(&mut harness), 1);
    let first = crate::executions::current_run(&harness);
    // The second run fails after writing, so the two runs' titles differ even within one second.
    harness.state_mut().app.project.blocks[0]
        .code_mut()
        .expect("a code block")
        .code = code("from the second run").replace("return 1", "raise ValueError('no')");
    harness.get_by_label("▶ Run").click();
    wait_for(&mut harness, "the second run to fail", |app| {
        app.app
            .run
            .as_ref()
            .is_some_and(|r| r.run_id != first && matches!(r.phase, RunPhase::Finished(_)))
    });
    let texts = |harness: &Harness<'_, BraidApp>| -> Vec<String> {
        let log = harness.state().app.shown_log().expect("a shown log");
        log.iter().map(|line| line.text.clone()).collect()
    };
    assert_eq!(texts(&harness), ["from the second run"]);
    harness.state_mut().app.executions.selected_run = Some(first.clone());
    settle(&mut harness);
    assert_eq!(texts(&harness), ["from the first run"]);
    // The tab says which run it shows: the one picked, not the newest.
    click(&mut harness, "Log (1)");
    let row = harness
        .state()
        .app
        .executions
        .shown_run_row()
        .expect("the picked run's row");
    assert_eq!(row.run_id, first);
    let title = braid::ui::results_panel::log_title(&row);
    assert!(title.ends_with("(succeeded)"), "{title}");
    harness.get_by_label(&title);
    harness.get_by_label("from the first run");
}

/// In the editor too, blocks run in the project file's folder (the editor may have been started from
/// anywhere: a desktop launcher starts it in the home folder).
#[test]
fn the_editor_runs_blocks_in_the_project_folder() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let project = crate::support::Builder::new()
        .block(
            "Read",
            "def main(block_input, backpack):\n    return open('data.txt').read()\n",
        )
        .build();
    let path = dir.path().join("reads.braid.json");
    braid::model::format::save_project(&path, &project).expect("saves");
    std::fs::write(dir.path().join("data.txt"), "beside the project").expect("writes");
    let mut harness = harness_with(&path);
    assert_eq!(first_output(&mut harness), "beside the project");
}

/// Clicks Run, waits for that run to finish and returns its first result's output.
fn first_output(harness: &mut Harness<'_, BraidApp>) -> serde_json::Value {
    let before = harness.state().app.run.as_ref().map(|r| r.run_id.clone());
    harness.get_by_label("▶ Run").click();
    wait_for(harness, "the run to finish", |app| {
        app.app.run.as_ref().is_some_and(|r| {
            Some(&r.run_id) != before.as_ref() && matches!(r.phase, RunPhase::Finished(_))
        })
    });
    match harness.state().app.run.as_ref().map(|r| &r.phase) {
        Some(RunPhase::Finished(summary)) => summary.results[0].output.clone(),
        other => panic!("the run did not finish: {other:?}"),
    }
}

/// A block declares a variable; its value is typed into the inspector, lands in `.braid/` beside the
/// project (never in the project file, which stays unchanged and saved), and the block's code sees it
/// when the pipeline runs.
#[test]
fn a_variables_value_is_set_in_the_inspector_and_the_block_sees_it() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let mut project = crate::support::Builder::new()
        .block(
            "Call API",
            "import os\ndef main(block_input, backpack):\n    return os.environ.get('BRAID_GUI_TOKEN')\n",
        )
        .build();
    project.blocks[0].code_mut().unwrap().env_vars = vec!["BRAID_GUI_TOKEN".to_owned()];
    let path = dir.path().join("api.braid.json");
    braid::model::format::save_project(&path, &project).expect("saves");
    let before = std::fs::read_to_string(&path).expect("readable");
    let mut harness = harness_with(&path);
    click_node(&mut harness, "Call API");
    harness.get_by_label_contains("no value:").hover();
    // Without a value the run says so up front, and the block finds nothing.
    assert_eq!(first_output(&mut harness), serde_json::Value::Null);
    harness.get_by_label_contains("declares BRAID_GUI_TOKEN, which has no value");

    harness.get_by_label("BRAID_GUI_TOKEN").click();
    settle(&mut harness);
    harness
        .get_by_label("BRAID_GUI_TOKEN")
        .type_text("s3cret value");
    harness.key_press(Key::Enter);
    settle(&mut harness);

    let values_file = dir.path().join(".braid/api.braid.json.env");
    let text = std::fs::read_to_string(&values_file).expect("the values file");
    assert_eq!(text, "BRAID_GUI_TOKEN=s3cret value\n");
    harness.get_by_label("in .braid/ beside the project");
    assert!(
        !harness.state().app.is_dirty(),
        "a value is not a change to the project"
    );
    assert_eq!(std::fs::read_to_string(&path).expect("readable"), before);
    assert_eq!(first_output(&mut harness), "s3cret value");

    // Save As: the value goes along to the project's new name (and stays with the old one).
    let copy = dir.path().join("api copy.braid.json");
    harness.key_press_modifiers(Modifiers::COMMAND | Modifiers::SHIFT, Key::S);
    settle(&mut harness);
    type_path_and_save(&mut harness, &copy);
    assert_eq!(harness.state().app.title(), "api copy.braid.json — Braid");
    harness.get_by_label("in .braid/ beside the project");
    assert_eq!(first_output(&mut harness), "s3cret value");
    assert_eq!(
        std::fs::read_to_string(&values_file).expect("readable"),
        text
    );
    let values_file = dir.path().join(".braid/api copy.braid.json.env");

    // Emptying the field removes the value.
    harness.get_by_label("BRAID_GUI_TOKEN").click();
    settle(&mut harness);
    harness.key_press_modifiers(Modifiers::COMMAND, Key::A);
    harness.key_press(Key::Backspace);
    harness.key_press(Key::Enter);
    settle(&mut harness);
    assert_eq!(std::fs::read_to_string(&values_file).expect("readable"), "");
    harness.get_by_label_contains("no value:");

    // Edited outside Braid, with a line it can't read: the inspector says so.
    std::fs::write(&values_file, "BRAID_GUI_TOKEN s3cret\n").expect("writes");
    wait_for(&mut harness, "the values file to be read again", |app| {
        !app.app.env_values.problems.is_empty()
    });
    harness.get_by_label_contains("expected NAME=value");
}

/// The characters beyond ASCII in the Rust files at `path` (a file, or a folder and its folders).
fn symbols_in(path: &Path, symbols: &mut std::collections::BTreeSet<char>) {
    if path.is_dir() {
        for entry in std::fs::read_dir(path).expect("the sources") {
            symbols_in(&entry.expect("an entry").path(), symbols);
        }
    } else if path.extension().is_some_and(|e| e == "rs") {
        let text = std::fs::read_to_string(path).expect("a source");
        symbols.extend(text.chars().filter(|c| !c.is_ascii()));
    }
}

/// Every symbol the editor's text uses (any character beyond ASCII in `src/ui`, `src/app` and
/// `src/text.rs`) has a glyph in the text font: a missing one shows as a box (● did, in the status bar).
#[test]
fn every_symbol_the_editor_writes_has_a_glyph() {
    let harness = harness(None);
    let mut symbols = std::collections::BTreeSet::new();
    for source in ["src/ui", "src/app", "src/text.rs"] {
        symbols_in(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join(source),
            &mut symbols,
        );
    }
    assert!(
        symbols.contains(&'●') && symbols.contains(&'µ'),
        "the scan found the editor's symbols, and the durations'"
    );
    // egui's `has_glyph` says no for any glyph of the font that also holds its replacement glyph (its
    // TODO says so): NotoEmoji for text, these are in it (checked in the font file) and draw. The same
    // makes the code font (Hack, which holds them all) impossible to check this way.
    let in_noto_emoji = "▶⚠✔✖➡⬅⬆⬇📁📄";
    let font = egui::FontId::proportional(13.0);
    let missing: String = harness.ctx.fonts_mut(|fonts| {
        symbols
            .iter()
            .filter(|&&c| !in_noto_emoji.contains(c) && !fonts.has_glyph(&font, c))
            .collect()
    });
    assert_eq!(missing, "", "no glyph in the text font");
}

/// A new, empty project is not shown as broken (its one problem, that it has nothing to run, is a hint
/// to add a block), but its other problems still count.
#[test]
fn an_empty_project_shows_a_hint_not_an_error() {
    let harness = harness(None);
    harness.get_by_label("Nothing to run yet: add a Code Block (double-click the canvas).");
    assert!(harness.query_by_label_contains("error").is_none());
    // No blocks, and a transition between two blocks that aren't there.
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("dangling.braid.json");
    std::fs::write(
        &path,
        r#"{"format_version": 1, "name": "dangling", "blocks": [],
            "transitions": [{"id": "t", "from": "a", "to": "b", "type": "then"}]}"#,
    )
    .expect("written");
    let harness = harness_with(&path);
    harness.get_by_label("Nothing to run yet: add a Code Block (double-click the canvas).");
    harness.get_by_label("2 errors, 0 warnings");
}

#[test]
fn compile_errors_show_before_anything_runs() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = write_map_reduce(dir.path());
    let mut harness = harness_with(&path);
    let double = project(&harness).blocks[1].id.clone();
    harness.state_mut().app.apply(
        braid::app::Edit::EditBlock {
            block: double.clone(),
            edit: braid::app::BlockEdit::Code(
                "def main(block_input, backpack)\n    return 1\n".into(),
            ),
        },
        0.0,
    );
    wait_for(&mut harness, "the background check", |app| {
        !app.app.compile_errors.is_empty()
    });
    let error = &harness.state().app.compile_errors[0];
    assert_eq!(error.block_id, double);
    assert_eq!(error.line, Some(1));
    // On the node and in the status bar.
    harness.get_by_label_contains("✖ line 1");
    harness.get_by_label("1 error, 0 warnings");
    // Run anyway: refused, and the results panel says why, each problem once (the refusal's message
    // lists them too, for `braid run`).
    harness.get_by_label("▶ Run").click();
    wait_for(&mut harness, "the run to be refused", |app| {
        matches!(
            app.app.run.as_ref().map(|r| &r.phase),
            Some(RunPhase::Refused { .. })
        )
    });
    // The headline alone, not the whole message with its list (the list follows it).
    harness.get_by_label("the code has problems, so nothing ran:");
}

#[test]
fn opening_a_refinery_export_then_save_writes_braid_format() {
    let export = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/refinery-examples/hello-world-fanout.json");
    let mut harness = harness_with(&export);
    assert!(!project(&harness).blocks.is_empty());
    assert!(harness.state().app.title().contains("(Refinery import)"));

    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("imported.braid.json");
    harness.key_press_modifiers(Modifiers::COMMAND, Key::S);
    settle(&mut harness);
    type_path_and_save(&mut harness, &path);
    let text = std::fs::read_to_string(&path).expect("saved");
    assert!(text.starts_with("{\n  \"format_version\": 1,"), "{text}");
    assert_eq!(
        &load_project(&path).expect("loads").project,
        project(&harness)
    );
}

#[test]
fn unsaved_changes_are_confirmed_before_new() {
    let mut harness = harness(None);
    click(&mut harness, "+ Block");
    harness.key_press_modifiers(Modifiers::COMMAND, Key::N);
    settle(&mut harness);
    harness.get_by_label("Unsaved changes");
    click(&mut harness, "Cancel");
    assert_eq!(project(&harness).blocks.len(), 1);
    harness.key_press_modifiers(Modifiers::COMMAND, Key::N);
    settle(&mut harness);
    click(&mut harness, "Discard changes");
    assert!(project(&harness).blocks.is_empty());
    assert!(!harness.state().app.is_dirty());
}

/// Covers a label whose text changes from run to run with a box of a fixed `width` from the label's
/// left edge: covering just the label's own rect would make the mask's size, and so the image, follow
/// the text ("850 µs" is narrower than "1.20 ms"). The width is the caller's on purpose, even when the
/// label is wider: a box that is too narrow shows up as a failing snapshot, not as a flaky one.
pub fn mask_fixed(harness: &mut Harness<'_, BraidApp>, label: egui::Rect, width: f32) {
    harness.mask(egui::Rect::from_min_size(
        label.min,
        egui::vec2(width, label.height()),
    ));
}

/// Covers every widget whose label contains one of `labels`, each with a box of its fixed width.
pub fn mask_all(harness: &mut Harness<'_, BraidApp>, labels: &[(&str, f32)]) {
    let masked: Vec<(egui::Rect, f32)> = labels
        .iter()
        .flat_map(|&(label, width)| {
            harness
                .query_all_by_label_contains(label)
                .map(|n| (n.rect(), width))
                .collect::<Vec<_>>()
        })
        .collect();
    for (rect, width) in masked {
        mask_fixed(harness, rect, width);
    }
}

/// A snapshot with what differs from run to run covered: the run's duration and the temporary
/// file's path in the status bar.
fn snapshot(harness: &mut Harness<'_, BraidApp>, name: &str) -> Result<(), String> {
    let duration = harness.get_by_label_contains("invocations").rect();
    let path = harness
        .get_by_label_contains("map-reduce.braid.json")
        .rect();
    mask_fixed(harness, duration, 190.0);
    mask_fixed(harness, path, 400.0);
    harness.try_snapshot(name).map_err(|e| e.to_string())
}

/// Images of the main views, compared with `tests/snapshots/` (thresholds in `kittest.toml`).
#[test]
fn snapshots_of_the_main_views() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = write_map_reduce(dir.path());
    let mut harness = harness_1280x800(Some(path));
    click(&mut harness, "▶ Run");
    wait_for(&mut harness, "the run to finish", |app| {
        matches!(
            app.app.run.as_ref().map(|r| &r.phase),
            Some(RunPhase::Finished(_))
        )
    });
    let mut results = vec![snapshot(&mut harness, "editor_dark_after_run")];

    let double = project(&harness).blocks[1].id.clone();
    harness
        .state_mut()
        .app
        .apply(braid::app::Select::Blocks(vec![double]), 0.0);
    harness.ctx.set_theme(egui::Theme::Light);
    settle(&mut harness);
    results.push(snapshot(&mut harness, "editor_light_block_selected"));

    harness.key_press_modifiers(Modifiers::COMMAND, Key::R);
    settle(&mut harness);
    results.push(snapshot(&mut harness, "run_dialog"));
    harness.key_press(Key::Escape);
    harness.key_press(Key::F1);
    settle(&mut harness);
    results.push(snapshot(&mut harness, "help_overlay"));
    for result in results {
        if let Err(e) = result {
            panic!("{e}");
        }
    }
}

/// Another program (a `git pull`, another editor) changes the open project's file. With nothing
/// unsaved here, the editor reads it again; with unsaved changes, it keeps them and says that Save would
/// replace the file's new content, and Save does only that.
#[test]
fn a_project_changed_on_disk_is_reloaded_or_kept_with_a_warning() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = write_map_reduce(dir.path());
    let mut harness = harness_with(&path);
    // An idle editor still takes a frame a second to look at the file (it would not notice otherwise).
    harness.step();
    let delay = harness.output().viewport_output[&egui::ViewportId::ROOT].repaint_delay;
    assert!(delay <= std::time::Duration::from_secs(1), "{delay:?}");
    let change_on_disk = |name: &str| {
        let mut project = load_project(&path).expect("loads").project;
        name.clone_into(&mut project.name);
        braid::model::format::save_project(&path, &project).expect("saves");
    };

    change_on_disk("Pulled from git");
    wait_for(&mut harness, "the reload", |app| {
        app.app.project.name == "Pulled from git"
    });
    assert!(!harness.state().app.is_dirty());
    harness.get_by_label_contains("Reloaded map-reduce.braid.json");

    harness
        .state_mut()
        .app
        .apply(braid::app::Edit::RenameProject("Mine".to_owned()), 0.0);
    change_on_disk("Pulled again");
    wait_for(&mut harness, "the warning", |app| {
        app.app
            .notices
            .iter()
            .any(|n| n.text.contains("was changed by another program"))
    });
    assert_eq!(
        harness.state().app.project.name,
        "Mine",
        "unsaved work kept"
    );
    assert!(harness.state().app.is_dirty());
    harness.key_press_modifiers(Modifiers::COMMAND, Key::S);
    settle(&mut harness);
    assert_eq!(load_project(&path).expect("loads").project.name, "Mine");
}

/// The inspector says where a block's imports come from: the standard library and the project's own
/// libraries, not whatever is installed beside the interpreter (docs/runtime.md).
#[test]
fn the_libraries_field_says_what_a_block_can_import() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let project = crate::support::Builder::new()
        .block(
            "Fetch",
            "def main(block_input, backpack):\n    return None\n",
        )
        .build();
    let path = dir.path().join("fetch.braid.json");
    braid::model::format::save_project(&path, &project).expect("saves");
    let mut harness = harness_with(&path);
    click_node(&mut harness, "Fetch");
    assert!(
        harness
            .query_by_label_contains("standard library and its project's libraries only")
            .is_none()
    );
    harness.get_by_label("Libraries").hover();
    // Tooltips wait for the pointer to rest (half a second of frames).
    harness.run_steps(60);
    harness.get_by_label_contains("standard library and its project's libraries only");
}

/// Serve mode: the toolbar's Serve serves the open project on the runtime the editor runs on; the
/// endpoint block shows its URL and request count, the timer its next fire, and each request arrives
/// in Block Executions as a run of its own (the panel follows it) while it happens. Stop serving stops
/// it: the port answers no more.
#[test]
fn the_editor_serves_its_project_and_block_executions_shows_each_request_as_it_arrives() {
    use braid::model::TransitionKind::Then;

    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("hello.braid.json");
    let gate = dir.path().join("gate");
    let mut project = crate::support::Builder::new()
        .service(
            "Hello",
            BlockKind::ApiEndpoint {
                api_path: "/hello".into(),
                http_method: "GET".into(),
                timeout_s: 29,
            },
        )
        .block(
            "Greet",
            &format!(
                "import os, time\n\ndef main(block_input, backpack):\n    \
                 while not os.path.exists({gate:?}):\n        time.sleep(0.01)\n    \
                 return {{'greeting': 'hi ' + block_input['queryStringParameters']['name']}}\n"
            ),
        )
        .service("Answer", BlockKind::ApiResponse)
        .service(
            "Tick",
            BlockKind::Timer {
                schedule_expression: "rate(1 hour)".into(),
                input_string: String::new(),
                description: String::new(),
            },
        )
        .block("Tock", "def main(block_input, backpack):\n    return 1\n")
        .link("Hello", "Greet", Then)
        .link("Greet", "Answer", Then)
        .link("Tick", "Tock", Then)
        .build();
    project.name = "hello".into();
    braid::model::format::save_project(&path, &project).expect("saved");
    let mut harness = harness(Some(path));
    harness.state_mut().views_mut().serve_listen = Some("127.0.0.1:0".to_owned());
    click(&mut harness, "Serve");
    wait_for(&mut harness, "serving to start", |app| {
        app.app.serving_url().is_some()
    });
    let base = harness
        .state()
        .app
        .serving_url()
        .expect("served")
        .to_owned();
    harness.get_by_label(&format!("● Serving at {base}"));
    // Before any request: the endpoint's URL and no request, the timer's next fire (in an hour).
    let url = format!("{base}/hello");
    harness.get_by_label(&format!("{url} · 0 requests"));
    let next = harness
        .state()
        .app
        .serve_status()
        .and_then(|s| s.timers.first())
        .and_then(|t| t.next_fire_ms)
        .expect("the timer's next fire");
    let now_ms = braid::run::now_ms();
    assert!(
        (now_ms + 3_590_000.0..now_ms + 3_600_001.0).contains(&next),
        "{next} is not an hour after {now_ms}"
    );
    harness.get_by_label(&format!("next {}", braid::text::clock_time(next)));

    for (n, name) in ["Ada", "Grace"].into_iter().enumerate() {
        // Greet waits for its gate: the request is seen while it runs, not only once it has ended.
        let request = std::thread::spawn({
            let url = format!("{url}?name={name}");
            move || {
                std::process::Command::new("curl")
                    .args(["-s", "--max-time", "30", &url])
                    .output()
                    .expect("curl runs")
            }
        });
        wait_for(
            &mut harness,
            "the request's run, going, in Block Executions",
            |app| {
                let executions = &app.app.executions;
                let runs = executions.runs();
                runs.len() == n + 1
                    && runs[0].status == RunStatus::Running
                    && executions.shown_run_id() == Some(runs[0].run_id.clone())
                    && executions.shown().is_some_and(|run| {
                        run.rows.iter().map(|r| &*r.block_name).collect::<Vec<_>>() == ["Hello"]
                    })
            },
        );
        std::fs::write(&gate, name).expect("the gate opens");
        let answer = request.join().expect("the request");
        assert_eq!(
            serde_json::from_slice::<serde_json::Value>(&answer.stdout).ok(),
            Some(serde_json::json!({"greeting": format!("hi {name}")}))
        );
        std::fs::remove_file(&gate).expect("the gate closes");
        wait_for(
            &mut harness,
            "the request's run to end in Block Executions",
            |app| {
                let executions = &app.app.executions;
                executions.runs()[0].status == RunStatus::Succeeded
                    && executions.shown().is_some_and(|run| run.rows.len() == 3)
            },
        );
        let shown = harness.state().app.executions.shown().expect("a run shown");
        let blocks: Vec<&str> = shown.rows.iter().map(|r| &*r.block_name).collect();
        assert_eq!(blocks, ["Hello", "Greet", "Answer"]);
        harness.get_by_label(&format!(
            "{url} · {}",
            braid::text::plural(n as u64 + 1, "request")
        ));
    }

    click(&mut harness, "■ Stop serving");
    assert!(!harness.state().app.is_serving());
    let refused = std::process::Command::new("curl")
        .args(["-s", "--max-time", "5", &url])
        .status()
        .expect("curl runs");
    assert!(
        !refused.success(),
        "the port still answers after Stop serving"
    );
    harness.get_by_label("Serve");
    harness.state_mut().app.shutdown_runtime();
}
