//! The editor as a daily tool: what a day of real use with the mouse and the keyboard runs into, driven
//! headless through the real application (right-clicks on wires and names, Python keys in the code
//! editor, runs across projects, menus and Escape, a small window, an import of unconnected blocks,
//! the words for statuses).

use std::path::{Path, PathBuf};

use braid::app::run::RunPhase;
use braid::app::{BlockEdit, Edit, FileCommand, NoticeLevel};
use braid::model::{Block, BlockId, Position, Project, TransitionKind};
use braid::run::RunStatus;
use braid::shell::BraidApp;
use braid::ui::results_panel::Tab;
use egui::accesskit::Role;
use egui::{Event, Key, Modifiers, PointerButton, Pos2};
use egui_kittest::Harness;
use egui_kittest::kittest::Queryable as _;

use super::executions::{PROCESS_FIXED, run_to_end, write_failing_pipeline};
use super::gui::{
    click, click_chip, click_node, code_of, harness_1280x800, harness_sized, harness_with, project,
    settle, wait_for, write_map_reduce,
};

fn block_id(harness: &Harness<'_, BraidApp>, name: &str) -> BlockId {
    project(harness)
        .blocks
        .iter()
        .find(|b| b.name == name)
        .unwrap_or_else(|| panic!("no block {name:?}"))
        .id
        .clone()
}

/// A right-click (press and release) at a point of the screen.
fn right_click_at(harness: &mut Harness<'_, BraidApp>, pos: Pos2) {
    harness.hover_at(pos);
    harness.step();
    for pressed in [true, false] {
        harness.event(Event::PointerButton {
            pos,
            button: PointerButton::Secondary,
            pressed,
            modifiers: Modifiers::NONE,
        });
    }
    harness.step();
    settle(harness);
}

/// Where a block's name is on the screen (accessibility rectangles of canvas widgets are in canvas
/// coordinates).
fn name_on_screen(harness: &Harness<'_, BraidApp>, name: &str) -> Pos2 {
    let rect = harness.get_by_label(name).rect();
    harness.state().canvas_to_screen(rect.center())
}

fn menu_title(harness: &Harness<'_, BraidApp>) -> Option<String> {
    let state = harness.state();
    state.views().canvas.menu_title(&state.app)
}

/// Clicks the button with this label in the open canvas menu (the inspector may show one of the same
/// name: the menu's is the one nearest below and right of where the menu opened).
fn click_in_menu(harness: &mut Harness<'_, BraidApp>, opened_at: Pos2, label: &str) {
    let target = harness
        .get_all_by_label(label)
        .map(|node| node.rect())
        .filter(|r| r.left() >= opened_at.x && r.top() >= opened_at.y)
        .min_by(|a, b| {
            (a.min - opened_at)
                .length()
                .total_cmp(&(b.min - opened_at).length())
        })
        .unwrap_or_else(|| panic!("no {label:?} in the menu"));
    let at = target.center();
    harness.hover_at(at);
    harness.step();
    harness.drag_at(at);
    harness.drop_at(at);
    harness.step();
    settle(harness);
}

fn escape(harness: &mut Harness<'_, BraidApp>) {
    harness.key_press(Key::Escape);
    settle(harness);
}

fn finished(app: &BraidApp) -> bool {
    matches!(
        app.app.run.as_ref().map(|r| &r.phase),
        Some(RunPhase::Finished(_))
    )
}

fn run_status(harness: &Harness<'_, BraidApp>) -> Option<RunStatus> {
    match harness.state().app.run.as_ref().map(|r| &r.phase) {
        Some(RunPhase::Finished(summary)) => Some(summary.status),
        _ => None,
    }
}

// 1. One place decides what a right-click means; every canvas element opens its menu.

#[test]
fn right_clicking_a_wire_label_opens_the_transitions_menu_and_keeps_it() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let mut harness = harness_with(&write_map_reduce(dir.path()));
    let fan_out = project(&harness).transitions[0].id.clone();
    let label = harness
        .state()
        .views()
        .canvas
        .label_screen_rect(&fan_out)
        .expect("the wire's label is drawn");

    right_click_at(&mut harness, label.center());
    assert_eq!(
        project(&harness).transitions.len(),
        2,
        "a right-click on the label deleted its transition"
    );
    assert_eq!(
        menu_title(&harness).as_deref(),
        Some("Transition from \"Split\" to \"Double\"")
    );
    assert_eq!(
        harness.state().app.selection.transition.as_ref(),
        Some(&fan_out)
    );
    harness.get_by_label("Transition from \"Split\" to \"Double\"");

    // Its type changes from the menu, which then closes.
    click_in_menu(&mut harness, label.center(), "then");
    assert_eq!(project(&harness).transitions[0].kind, TransitionKind::Then);
    assert_eq!(menu_title(&harness), None);

    // Delete is in the menu too, and is the only way a right-click removes a transition.
    right_click_at(&mut harness, label.center());
    click_in_menu(&mut harness, label.center(), "Delete transition");
    assert_eq!(project(&harness).transitions.len(), 1);
}

#[test]
fn a_blocks_name_and_text_are_the_block_for_menus_clicks_and_copy() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let mut harness = harness_with(&write_map_reduce(dir.path()));
    let double = block_id(&harness, "Double");

    // A right-click on the block's title opens the block's menu (not only on its bare frame).
    let title = name_on_screen(&harness, "Double");
    right_click_at(&mut harness, title);
    assert_eq!(menu_title(&harness).as_deref(), Some("Block \"Double\""));
    assert_eq!(harness.state().app.selection.single_block(), Some(&double));
    escape(&mut harness);
    assert_eq!(menu_title(&harness), None);

    // A click on the name selects the block; Ctrl+C then copies the block, not the name's letters.
    click_node(&mut harness, "Split");
    assert_eq!(
        harness.state().app.selection.single_block(),
        Some(&block_id(&harness, "Split"))
    );
    harness.event(Event::Copy);
    harness.step();
    let copied: Vec<String> = harness
        .output()
        .platform_output
        .commands
        .iter()
        .filter_map(|c| match c {
            egui::OutputCommand::CopyText(text) => Some(text.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(copied.len(), 1, "one thing copied: {copied:?}");
    assert!(
        copied[0].contains("\"braid_clipboard\""),
        "the block was copied: {:?}",
        copied[0]
    );
    settle(&mut harness);
    harness.event(Event::Paste(copied[0].clone()));
    settle(&mut harness);
    let names: Vec<&str> = project(&harness)
        .blocks
        .iter()
        .map(|b| b.name.as_str())
        .collect();
    assert_eq!(names, ["Split", "Double", "Collect", "Split 2"]);
}

// 2. The code editor behaves as Python editors do.

/// The code editor (the inspector's other multi-line fields are the libraries and variables lists).
fn code_editor<'h>(harness: &'h Harness<'_, BraidApp>) -> egui_kittest::Node<'h> {
    harness
        .get_all_by_role(Role::MultilineTextInput)
        .find(|n| n.value().is_some_and(|v| v.starts_with("def main")))
        .expect("the code editor")
}

#[test]
fn the_code_editor_indents_with_spaces_keeps_indentation_and_toggles_comments() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let mut harness = harness_with(&write_map_reduce(dir.path()));
    click_node(&mut harness, "Double");
    code_editor(&harness).focus();
    harness.step();
    // To the end of the `def` line, then Return: the new line is indented under the colon.
    harness.key_press_modifiers(Modifiers::CTRL, Key::Home);
    harness.key_press(Key::End);
    harness.key_press(Key::Enter);
    harness.event(Event::Text("x = 1".to_owned()));
    settle(&mut harness);
    assert_eq!(
        code_of(project(&harness), "Double"),
        "def main(block_input, backpack):\n    x = 1\n    return block_input * 2\n"
    );
    // Tab at the line's start indents it with spaces (a tab character is Python's TabError);
    // Shift+Tab takes the level away again; Ctrl+/ comments the line at its indentation.
    harness.key_press(Key::Home);
    harness.key_press(Key::Tab);
    settle(&mut harness);
    assert_eq!(
        code_of(project(&harness), "Double"),
        "def main(block_input, backpack):\n        x = 1\n    return block_input * 2\n"
    );
    harness.key_press_modifiers(Modifiers::SHIFT, Key::Tab);
    harness.key_press_modifiers(Modifiers::COMMAND, Key::Slash);
    settle(&mut harness);
    assert_eq!(
        code_of(project(&harness), "Double"),
        "def main(block_input, backpack):\n    # x = 1\n    return block_input * 2\n"
    );
    // The keys stayed in the editor: nothing else moved or changed.
    assert_eq!(project(&harness).blocks.len(), 3);
}

// 3. Run settings belong to the project they were made for.

#[test]
fn run_from_here_stays_with_its_project_and_the_toolbar_says_so() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let (first, second) = (dir.path().join("first"), dir.path().join("second"));
    std::fs::create_dir_all(&first).expect("a folder");
    std::fs::create_dir_all(&second).expect("a folder");
    let first = write_map_reduce(&first);
    let second = write_map_reduce(&second);
    let mut harness = harness_with(&first);

    let title = name_on_screen(&harness, "Double");
    right_click_at(&mut harness, title);
    click_in_menu(&mut harness, title, "Run from here");
    wait_for(&mut harness, "the run from Double", finished);
    // Later runs start there too, and the toolbar says so beside ▶ Run.
    harness.get_by_label("from “Double”");

    harness
        .state_mut()
        .app
        .apply(FileCommand::Open(second.clone()), 0.0);
    settle(&mut harness);
    assert!(
        harness.query_by_label_contains("from “").is_none(),
        "the other project's start is shown"
    );
    click(&mut harness, "▶ Run");
    wait_for(&mut harness, "the second project's run", finished);
    assert_eq!(run_status(&harness), Some(RunStatus::Succeeded));
    assert!(
        harness.state().app.notices.is_empty(),
        "{:?}",
        harness.state().app.notices
    );
}

// 4. The panel and the canvas follow the newest run unless the user pinned an older one.

#[test]
fn a_new_run_takes_the_panel_and_canvas_over_unless_a_run_is_pinned() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let mut harness = harness_1280x800(Some(write_failing_pipeline(dir.path())));
    let process = block_id(&harness, "Process");
    let collect = block_id(&harness, "Collect");
    let fallback = block_id(&harness, "Fallback");
    harness
        .state_mut()
        .app
        .apply(Edit::DeleteBlocks(vec![fallback]), 0.0);
    run_to_end(&mut harness);
    // Item 3 failed and nothing caught it: the fan-in never ran.
    click(&mut harness, "Failures (2)");
    click(&mut harness, "Process [3]");
    let failed_run = harness.state().app.executions.shown_run_id();
    assert!(harness.state().app.executions.picked.is_some());

    // The fix, and a new run: the panel and the canvas show the new run.
    harness.state_mut().app.apply(
        Edit::EditBlock {
            block: process.clone(),
            edit: BlockEdit::Code(PROCESS_FIXED.into()),
        },
        0.0,
    );
    run_to_end(&mut harness);
    let newest = harness.state().app.run.as_ref().map(|r| r.run_id.clone());
    assert_eq!(harness.state().app.executions.shown_run_id(), newest);
    assert_ne!(newest, failed_run);
    let (counts, _) = harness.state().app.canvas_counts().expect("counts");
    assert_eq!(counts.get(&collect).map(|c| c.succeeded), Some(1));

    // Pinned, the shown run stays while the next one runs.
    click(&mut harness, "Block Executions");
    click(&mut harness, "Pin");
    assert!(harness.state().app.executions.pinned);
    run_to_end(&mut harness);
    assert_eq!(harness.state().app.executions.shown_run_id(), newest);
}

// 5. Both wire menus close with Escape, and an open menu draws nothing more until something happens.

#[test]
fn both_wire_menus_close_with_escape_and_an_open_menu_does_not_repaint() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let mut harness = harness_with(&write_map_reduce(dir.path()));
    let split = block_id(&harness, "Split");
    let collect = block_id(&harness, "Collect");
    let canvas = harness.state().views().canvas.screen_rect();
    let pin = harness
        .state()
        .views()
        .canvas
        .free_pin_screen(&split, true)
        .expect("Split's free output pin");
    let drag = |harness: &mut Harness<'_, BraidApp>, to: Pos2| {
        harness.hover_at(pin);
        harness.step();
        harness.drag_at(pin);
        harness.step();
        for t in [0.25, 0.5, 0.75, 1.0] {
            harness.hover_at(pin + (to - pin) * t);
            harness.step();
        }
        // Released where it is (the pointer stays: a wire is dropped on what is under it).
        harness.event(Event::PointerButton {
            pos: to,
            button: PointerButton::Primary,
            pressed: false,
            modifiers: Modifiers::NONE,
        });
        harness.step();
        harness.step();
    };

    // The opened project's compile check answers from another thread, and the editor looks again
    // every frame until it has: that wait is over before the menu's frames are counted.
    wait_for(&mut harness, "the compile check", |app| {
        !app.app.is_checking() && !app.app.has_events()
    });

    // A wire dropped on the empty canvas: the new-block menu.
    let empty = Pos2::new(canvas.center().x, canvas.bottom() - 40.0);
    drag(&mut harness, empty);
    assert_eq!(
        menu_title(&harness).as_deref(),
        Some("New Code Block after \"Split\", connected by")
    );
    let steps = harness
        .try_run()
        .expect("an open menu waits for input without drawing again");
    assert!(
        steps < 10,
        "{steps} frames for {:?}",
        harness.ctx.repaint_causes()
    );
    escape(&mut harness);
    assert_eq!(menu_title(&harness), None);
    assert_eq!(project(&harness).blocks.len(), 3);

    // A wire dragged between two blocks: the type picker.
    let to = harness
        .state()
        .views()
        .canvas
        .free_pin_screen(&collect, false)
        .expect("Collect's free input pin");
    drag(&mut harness, to);
    assert_eq!(
        menu_title(&harness).as_deref(),
        Some("Connect \"Split\" to \"Collect\" as")
    );
    escape(&mut harness);
    assert_eq!(menu_title(&harness), None);
    assert_eq!(project(&harness).transitions.len(), 2);
    // Escape closed the menu only: the selection is as it was.
    harness.try_run().expect("the editor settles");
}

// 7. Code and what code prints are in one readable monospace size.

#[test]
fn tracebacks_are_code_sized_and_keep_their_columns() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let mut project = Project::default();
    project.blocks.push(Block::new_code(
        "Divide",
        "def main(block_input, backpack):\n    return 10 / block_input\n",
        Position::default(),
    ));
    let path = dir.path().join("divide.braid.json");
    braid::model::format::save_project(&path, &project).expect("saves");
    let mut harness = harness_1280x800(Some(path));
    run_to_end(&mut harness);
    click_node(&mut harness, "Divide");
    click(&mut harness, "Block Executions");
    click(&mut harness, "—");
    let code = harness.get_by_label("    return 10 / block_input").rect();
    let marks = harness.get_by_label_contains("~~~^~~~").rect();
    // 13 px monospace: a row is at least 15 px high (egui's small text was about 11).
    assert!(code.height() >= 15.0, "{code:?}");
    // The same number of characters takes the same width, and neither line wraps, so the marks sit
    // under the code they point at.
    assert_eq!(
        "    return 10 / block_input".len(),
        "           ~~~^~~~~~~~~~~~~".len()
    );
    assert!(
        (code.left() - marks.left()).abs() < 0.5,
        "{code:?} {marks:?}"
    );
    assert!(
        (code.width() - marks.width()).abs() < 1.0,
        "{code:?} {marks:?}"
    );
    assert!((code.height() - marks.height()).abs() < 1.0, "{marks:?}");
}

#[test]
fn a_pipeline_fitted_too_small_to_read_shows_its_blocks_names_and_not_their_small_print() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let mut project = Project::default();
    for i in 0..30 {
        project.blocks.push(Block::new_code(
            format!("Step {i}"),
            "def main(block_input, backpack):\n    return block_input\n",
            Position {
                x: 300.0 * i as f32,
                y: 0.0,
            },
        ));
    }
    let path = dir.path().join("long.braid.json");
    braid::model::format::save_project(&path, &project).expect("saves");
    let harness = harness_1280x800(Some(path));
    // Fitted, a node's 12 px text would be under 9 px: its name stays, its kind line goes.
    let scaling = harness.state().views().canvas.scaling();
    assert!(12.0 * scaling < 9.0, "fitted at {scaling}");
    harness.get_by_label("Step 29");
    assert_eq!(harness.query_all_by_label("Python · 900 s").count(), 0);

    // At a readable zoom the same line is there.
    let dir = tempfile::tempdir().expect("a temporary directory");
    let harness = harness_1280x800(Some(write_map_reduce(dir.path())));
    assert_eq!(harness.get_all_by_label("Python · 900 s").count(), 3);
}

// 8. Panel sizes are fractions of the window; the canvas keeps its room and the graph follows it.

#[test]
fn at_1024x700_the_canvas_keeps_its_room_and_the_graph_refits_after_a_resize() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let mut harness = harness_sized(Some(write_map_reduce(dir.path())), [1920.0, 1080.0]);
    click(&mut harness, "Block Executions");
    // The window shrinks: the panels keep their share, the canvas its room, the graph is fitted again.
    harness.set_size(egui::vec2(1024.0, 700.0));
    settle(&mut harness);
    let canvas = harness.state().views().canvas.screen_rect();
    assert!(canvas.height() >= 300.0, "{canvas:?}");
    assert!(canvas.width() >= 360.0, "{canvas:?}");
    for name in ["Split", "Double", "Collect"] {
        let id = block_id(&harness, name);
        let node = harness
            .state()
            .views()
            .canvas
            .node_screen_rect(&id)
            .expect("the node is drawn");
        assert!(
            canvas.contains_rect(node),
            "{name} {node:?} out of {canvas:?}"
        );
    }
}

#[test]
fn at_1024x700_block_executions_takes_its_share_and_leaves_the_canvas_the_rest() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let mut harness = harness_sized(Some(write_map_reduce(dir.path())), [1024.0, 700.0]);
    run_to_end(&mut harness);
    click_node(&mut harness, "Double");
    click(&mut harness, "Block Executions");
    settle(&mut harness);
    // The panel is its 44 % of the window (308 px), however much its table and chips would like: what
    // does not fit scrolls inside it. The canvas has the rest between the toolbar and the panel.
    let canvas = harness.state().views().canvas.screen_rect();
    assert!(canvas.height() >= 320.0, "{canvas:?}");
    // Nothing but a drag of the panel's edge changes its share, so it stays so frame after frame.
    assert_eq!(
        harness.state().views().layout,
        braid::ui::layout::PanelLayout::default()
    );
    settle(&mut harness);
    assert_eq!(harness.state().views().canvas.screen_rect(), canvas);

    // A drag of its top edge 70 px down is remembered as its new share: (308 − 70) / 700.
    let edge = Pos2::new(500.0, canvas.bottom() + 1.0);
    harness.hover_at(edge);
    harness.step();
    harness.drag_at(edge);
    harness.step();
    for dy in [20.0, 40.0, 60.0, 70.0] {
        harness.hover_at(edge + egui::vec2(0.0, dy));
        harness.step();
    }
    harness.drop_at(edge + egui::vec2(0.0, 70.0));
    settle(&mut harness);
    let share = harness.state().views().layout.executions;
    assert!((share - 238.0 / 700.0).abs() < 0.01, "{share}");
    let taller = harness.state().views().canvas.screen_rect();
    assert!(
        (taller.height() - canvas.height() - 70.0).abs() < 2.0,
        "{taller:?}"
    );
}

// 9. Imports with many entry blocks are a readable grid; same-named blocks are told apart.

#[test]
fn an_import_of_unconnected_blocks_is_a_readable_grid() {
    let export = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/refinery-examples/all-block-types.deployment-request.json");
    let mut harness = harness_1280x800(Some(export));
    let blocks = &project(&harness).blocks;
    let columns: std::collections::BTreeSet<u32> =
        blocks.iter().map(|b| b.position.x as u32).collect();
    assert!(columns.len() >= 3, "{} blocks in {columns:?}", blocks.len());
    let scaling = harness.state().views().canvas.scaling();
    assert!(scaling >= 0.6, "fitted at {scaling}");
    // Two blocks named alike are told apart wherever runs list them.
    let names: Vec<String> = blocks
        .iter()
        .filter(|b| b.name == "Untitled Code Block")
        .map(|b| project(&harness).distinct_name(&b.id))
        .collect();
    assert_eq!(
        names,
        ["Untitled Code Block (1)", "Untitled Code Block (2)"]
    );
    harness.try_run().expect("the editor settles");
}

fn same_named_failures(dir: &Path) -> PathBuf {
    let mut project = Project::default();
    for x in [0.0, 300.0] {
        project.blocks.push(Block::new_code(
            "Untitled Code Block",
            "def main(block_input, backpack):\n    raise ValueError('no')\n",
            Position { x, y: 0.0 },
        ));
    }
    let path = dir.join("twins.braid.json");
    braid::model::format::save_project(&path, &project).expect("saves");
    path
}

#[test]
fn failures_of_same_named_blocks_can_be_told_apart() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let mut harness = harness_1280x800(Some(same_named_failures(dir.path())));
    run_to_end(&mut harness);
    click(&mut harness, "Failures (2)");
    harness.get_by_label("Untitled Code Block (1) —");
    harness.get_by_label("Untitled Code Block (2) —");
}

// 10. State does not slip: tabs, notices, tooltips, the words for statuses, following an item.

#[test]
fn a_successful_run_leaves_the_failures_tab_and_notices_go_with_their_project() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let mut harness = harness_1280x800(Some(write_failing_pipeline(dir.path())));
    let process = block_id(&harness, "Process");
    let fallback = block_id(&harness, "Fallback");
    harness
        .state_mut()
        .app
        .apply(Edit::DeleteBlocks(vec![fallback]), 0.0);
    run_to_end(&mut harness);
    // A failed run with no results opens on its failures.
    assert_eq!(harness.state().views().results.tab, Tab::Failures);
    harness.state_mut().app.apply(
        Edit::EditBlock {
            block: process,
            edit: BlockEdit::Code(PROCESS_FIXED.into()),
        },
        0.0,
    );
    run_to_end(&mut harness);
    assert_eq!(run_status(&harness), Some(RunStatus::Succeeded));
    // The results are in view, not an empty failures list.
    assert_eq!(harness.state().views().results.tab, Tab::Results);

    // Saved, so that opening another project does not ask first; the notice is fresh (it would
    // fade by itself 20 s after it was made).
    harness.state_mut().app.apply(FileCommand::Save, 0.0);
    settle(&mut harness);
    assert!(!harness.state().app.is_dirty());
    let now = harness.ctx.input(|i| i.time);
    harness
        .state_mut()
        .app
        .notify(NoticeLevel::Error, "something about this project", now);
    let other = tempfile::tempdir().expect("a temporary directory");
    let other = write_map_reduce(other.path());
    harness
        .state_mut()
        .app
        .apply(FileCommand::Open(other.clone()), now);
    settle(&mut harness);
    assert_eq!(harness.state().app.path.as_deref(), Some(other.as_path()));
    assert!(
        harness.state().app.notices.is_empty(),
        "{:?}",
        harness.state().app.notices
    );
}

#[test]
fn a_timed_out_block_says_timed_out_on_the_node_the_strip_and_the_table() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let mut project = Project::default();
    let mut slow = Block::new_code(
        "Slow",
        "import time\ndef main(block_input, backpack):\n    time.sleep(30)\n",
        Position::default(),
    );
    if let Some(code) = slow.code_mut() {
        code.timeout_s = 1;
    }
    project.blocks.push(slow);
    let path = dir.path().join("slow.braid.json");
    braid::model::format::save_project(&path, &project).expect("saves");
    let mut harness = harness_1280x800(Some(path));
    run_to_end(&mut harness);
    // The node and the run's strip.
    assert_eq!(harness.get_all_by_label("1 timed out").count(), 2);
    assert!(harness.query_by_label("1 failed").is_none());
    // The table's row says it too, beside the chip that lists such rows.
    click(&mut harness, "Block Executions");
    assert_eq!(harness.get_all_by_label("timed out").count(), 2);
}

#[test]
fn the_failed_chip_lists_rows_that_say_failed_and_following_an_item_selects_its_block() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let mut harness = harness_1280x800(Some(write_failing_pipeline(dir.path())));
    let fallback = block_id(&harness, "Fallback");
    harness
        .state_mut()
        .app
        .apply(Edit::DeleteBlocks(vec![fallback]), 0.0);
    run_to_end(&mut harness);
    click(&mut harness, "Block Executions");
    // All blocks: the failed chip lists the one failed row, and its status reads "failed".
    assert_eq!(harness.state().app.selection.single_block(), None);
    click_chip(&mut harness, "failed");
    harness.get_by_label("1 of 6 invocations");
    assert!(harness.query_by_label("exception").is_none());
    click(&mut harness, "[3]");
    // Following the item back to the fan-out from the All blocks table selects the fan-out's block.
    click(&mut harness, "⬅ came from");
    assert_eq!(
        harness.state().app.selection.single_block(),
        Some(&block_id(&harness, "Split"))
    );
}

#[test]
fn a_result_shows_one_tooltip() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let mut project = Project::default();
    project.blocks.push(Block::new_code(
        "Long",
        "def main(block_input, backpack):\n    return 'x' * 600\n",
        Position::default(),
    ));
    let path = dir.path().join("long.braid.json");
    braid::model::format::save_project(&path, &project).expect("saves");
    let mut harness = harness_1280x800(Some(path));
    run_to_end(&mut harness);
    let value = harness.get_by_label_contains("\"xxxxxxxx").rect();
    harness.hover_at(value.center());
    // Tooltips wait a moment before they show.
    for _ in 0..30 {
        harness.step();
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let shown = harness.get_all_by_label_contains("\"xxxxxxxx").count();
    assert_eq!(shown, 2, "the value and one tooltip");
}

// Smaller: the path prompt, where a new block lands, a block of another language.

#[test]
fn the_path_prompt_opens_on_a_relatively_opened_projects_folder_and_keeps_the_keys() {
    // A project opened by a relative path (as `braid sample-projects/x.braid.json` does).
    let target = Path::new(env!("CARGO_MANIFEST_DIR")).join("target");
    let dir = tempfile::tempdir_in(&target).expect("a temporary directory");
    let first = write_map_reduce(dir.path());
    let other = dir.path().join("other.braid.json");
    std::fs::copy(&first, &other).expect("copies");
    let cwd = std::env::current_dir().expect("a working directory");
    let relative = first
        .strip_prefix(&cwd)
        .expect("under the working directory");
    let mut harness = harness_1280x800(None);
    harness
        .state_mut()
        .app
        .apply(FileCommand::Open(relative.to_owned()), 0.0);
    settle(&mut harness);

    // Ctrl+O: the prompt starts in the project's folder, not at an empty path.
    harness.key_press_modifiers(Modifiers::COMMAND, Key::O);
    settle(&mut harness);
    let folder = format!("{}/", dir.path().display());
    assert_eq!(
        harness.get_by_label("Path").value().as_deref(),
        Some(&*folder)
    );

    // A click beside the prompt leaves it open, and the keys typed next go to it, not to the canvas
    // (A there adds a block).
    let canvas = harness.state().views().canvas.screen_rect();
    harness.hover_at(canvas.left_top() + egui::vec2(20.0, 20.0));
    harness.step();
    harness.drag_at(canvas.left_top() + egui::vec2(20.0, 20.0));
    harness.drop_at(canvas.left_top() + egui::vec2(20.0, 20.0));
    settle(&mut harness);
    assert!(
        harness.state().app.file_prompt.is_some(),
        "the prompt closed"
    );
    harness.key_press(Key::A);
    settle(&mut harness);
    assert_eq!(project(&harness).blocks.len(), 3);

    // A double-click on a file in its listing opens it.
    let file = harness.get_by_label("📄 other.braid.json").rect().center();
    harness.hover_at(file);
    harness.step();
    // Both clicks in one frame: the harness's frames are a quarter of a second apart, longer than a
    // double-click's delay.
    for _ in 0..2 {
        for pressed in [true, false] {
            harness.input_mut().events.push(Event::PointerButton {
                pos: file,
                button: PointerButton::Primary,
                pressed,
                modifiers: Modifiers::NONE,
            });
        }
    }
    harness.step();
    settle(&mut harness);
    assert_eq!(harness.state().app.file_prompt, None);
    assert_eq!(harness.state().app.path.as_deref(), Some(other.as_path()));
}

#[test]
fn a_block_added_at_the_canvas_edge_lands_inside_the_canvas() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let mut harness = harness_with(&write_map_reduce(dir.path()));
    let canvas = harness.state().views().canvas.screen_rect();
    // A with the pointer just left of the inspector, near the bottom.
    harness.hover_at(Pos2::new(canvas.right() - 5.0, canvas.bottom() - 5.0));
    harness.step();
    harness.key_press(Key::A);
    settle(&mut harness);
    let added = project(&harness).blocks[3].id.clone();
    let node = harness
        .state()
        .views()
        .canvas
        .node_screen_rect(&added)
        .expect("the new block is drawn");
    assert!(canvas.contains_rect(node), "{node:?} out of {canvas:?}");
}

#[test]
fn a_nodejs_block_says_it_is_kept_as_imported_not_a_python_signature() {
    let export = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/refinery-examples/all-block-types.deployment-request.json");
    let mut harness = harness_1280x800(Some(export));
    let nodejs = project(&harness)
        .blocks
        .iter()
        .find(|b| b.code().is_some_and(|c| !c.language.is_runnable()))
        .expect("a Node.js block")
        .id
        .clone();
    harness
        .state_mut()
        .app
        .apply(braid::app::Select::Blocks(vec![nodejs]), 0.0);
    settle(&mut harness);
    harness.get_by_label("nodejs8.10 · kept as imported; Braid does not run it");
    assert!(
        harness
            .query_by_label_contains("def main(block_input, backpack)")
            .is_none()
    );
}
