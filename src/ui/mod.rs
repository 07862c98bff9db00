//! The views: one per file. They read the application's state and send commands; none of them owns
//! the project or talks to the runtime.
//!
//! Layout: menu bar and toolbar on top; the status bar and the run's results at the bottom; the
//! inspector on the right; the canvas fills the rest. Dialogs float above.

pub mod canvas;
pub mod code_editor;
pub mod dialogs;
pub mod executions_panel;
pub mod inspector;
pub mod invocation_detail;
pub mod layout;
pub mod menu;
pub mod results_panel;
pub mod run_dialog;
pub mod theme;
pub mod timeline;

use egui::{Key, KeyboardShortcut, Modifiers, RichText, Ui};

use crate::app::clipboard::copy_to_json;
use crate::app::{App, Command, CommandSender, Edit, FileAction, FileCommand, RunCommand, Select};
use crate::model::validate::Severity;

#[derive(Default)]
pub struct Views {
    pub canvas: canvas::CanvasView,
    pub inspector: inspector::InspectorView,
    pub run_dialog: run_dialog::RunDialog,
    pub results: results_panel::ResultsPanel,
    pub file_prompt: dialogs::FilePromptView,
    pub help_open: bool,
    /// Where Serve mode listens, as typed in the toolbar (the app's last address until edited).
    pub serve_listen: Option<String>,
    /// The panels' sizes, as fractions of the window (remembered between sessions).
    pub layout: layout::PanelLayout,
}

impl Views {
    pub fn show_ui(&mut self, ui: &mut Ui, app: &App) {
        let tx = app.sender();
        let ctx = ui.ctx().clone();
        self.shortcuts(&ctx, app, &tx);

        egui::Panel::top("braid-menu").show(ui, |ui| {
            menu::menu_bar_ui(ui, self, app, &tx);
        });
        egui::Panel::bottom("braid-status")
            .exact_size(26.0)
            .show(ui, |ui| status_bar_ui(ui, app));
        // The panels' sizes are fractions of the window (the executions and the timeline want more
        // room than results: each tab group has its own), so a smaller window keeps its canvas.
        let window = ctx.content_rect();
        let executions = matches!(
            self.results.tab,
            results_panel::Tab::Executions | results_panel::Tab::Timeline
        );
        let free = ui.available_rect_before_wrap();
        let bottom = self
            .layout
            .bottom(executions, window.height(), free.height());
        bottom.impose(&ctx);
        let shown = egui::Panel::bottom(bottom.id)
            .resizable(true)
            .default_size(bottom.size)
            .size_range(bottom.range)
            .show(ui, |ui| {
                // The panel keeps the height it is given rather than shrinking to short content,
                // such as the hint shown before any run, and then staying that small.
                ui.set_min_height(ui.available_height());
                ui.add_space(4.0);
                self.results.show_ui(ui, app, &tx);
            })
            .response
            .rect
            .height();
        if bottom.is_dragged(&ctx) {
            self.layout.dragged(&bottom, shown, window.height());
        }
        let free = ui.available_rect_before_wrap();
        let side = self.layout.inspector(window.width(), free.width());
        side.impose(&ctx);
        let shown = egui::Panel::right(side.id)
            .resizable(true)
            .default_size(side.size)
            .size_range(side.range)
            .show(ui, |ui| {
                self.inspector.visible_height = ui.available_height();
                egui::ScrollArea::vertical()
                    .id_salt("inspector-scroll")
                    .auto_shrink([false, false])
                    .show(ui, |ui| {
                        ui.add_space(6.0);
                        self.inspector.show_ui(ui, app, &tx);
                    });
            })
            .response
            .rect
            .width();
        if side.is_dragged(&ctx) {
            self.layout.dragged(&side, shown, window.width());
        }
        let canvas_rect = egui::CentralPanel::no_frame()
            .show(ui, |ui| {
                self.canvas.show_ui(ui, app, &tx);
                ui.max_rect()
            })
            .inner;

        self.run_dialog.show(&ctx, app, &tx);
        dialogs::help_ui(&ctx, &mut self.help_open);
        self.file_prompt.show(&ctx, app, &tx);
        dialogs::confirm_discard_ui(&ctx, app, &tx);
        dialogs::notices_ui(&ctx, app, &tx, canvas_rect);
    }

    pub fn delete_selection(&self, app: &App, tx: &CommandSender) {
        if !app.selection.blocks.is_empty() {
            tx.send(Edit::DeleteBlocks(
                app.selection.blocks.iter().cloned().collect(),
            ));
        } else if let Some(t) = &app.selection.transition {
            tx.send(Edit::DeleteTransition(t.clone()));
        }
    }

    /// Keyboard shortcuts, taken before any widget sees the keys. File and run shortcuts work
    /// everywhere; editing shortcuts only when no text field has the keyboard (a focused text field
    /// has its own undo, copy and paste).
    fn shortcuts(&mut self, ctx: &egui::Context, app: &App, tx: &CommandSender) {
        let command = |key| KeyboardShortcut::new(Modifiers::COMMAND, key);
        let command_shift = |key| KeyboardShortcut::new(Modifiers::COMMAND | Modifiers::SHIFT, key);
        let take = |shortcut: KeyboardShortcut| ctx.input_mut(|i| i.consume_shortcut(&shortcut));

        if take(command_shift(Key::S)) {
            tx.send(FileCommand::ShowDialog(FileAction::SaveAs));
        } else if take(command(Key::S)) {
            tx.send(FileCommand::Save);
        }
        if take(command(Key::O)) {
            tx.send(FileCommand::ShowDialog(FileAction::Open));
        }
        if take(command(Key::N)) {
            tx.send(FileCommand::New);
        }
        if take(command(Key::Enter)) {
            if self.run_dialog.open {
                self.run_dialog.request_run();
            } else {
                tx.send(RunCommand::Start(app.run_options.clone()));
            }
        }
        if take(command(Key::R)) {
            self.run_dialog.open(app);
        }
        if take(KeyboardShortcut::new(Modifiers::NONE, Key::F1)) {
            self.help_open = !self.help_open;
        }
        // Escape closes the innermost thing open: a canvas menu, the help, the run dialog; with
        // nothing open it clears the selection (below, when no text field has the keyboard).
        let escape = KeyboardShortcut::new(Modifiers::NONE, Key::Escape);
        if self.canvas.has_menu() && take(escape) {
            self.canvas.close_menu();
        }

        if ctx.egui_wants_keyboard_input() {
            return;
        }
        if take(command_shift(Key::Z)) || take(command(Key::Y)) {
            tx.send(Command::Redo);
        } else if take(command(Key::Z)) {
            tx.send(Command::Undo);
        }
        if take(command(Key::D)) && !app.selection.blocks.is_empty() {
            tx.send(Edit::DuplicateBlocks(
                app.selection.blocks.iter().cloned().collect(),
            ));
        }
        if take(command(Key::A)) {
            tx.send(Select::All);
        }
        let plain = |key| KeyboardShortcut::new(Modifiers::NONE, key);
        if take(plain(Key::Delete)) || take(plain(Key::Backspace)) {
            self.delete_selection(app, tx);
        }
        if take(plain(Key::Escape)) {
            if self.help_open {
                self.help_open = false;
            } else if self.run_dialog.open {
                self.run_dialog.open = false;
            } else {
                tx.send(Select::Clear);
            }
        }
        if take(plain(Key::A)) {
            tx.send(Edit::AddBlock {
                position: self.canvas.new_block_position(ctx),
                connect_from: None,
            });
        }
        if take(plain(Key::F)) {
            self.canvas.request_fit();
        }
        if take(plain(Key::Plus)) || take(plain(Key::Equals)) {
            self.canvas.zoom(1.25);
        }
        if take(plain(Key::Minus)) {
            self.canvas.zoom(0.8);
        }

        // Copy, cut and paste arrive as events (the platform turns Ctrl+C and friends into them).
        let events = ctx.input(|i| i.events.clone());
        for event in events {
            match event {
                egui::Event::Copy | egui::Event::Cut => {
                    if let Some(text) = copy_to_json(&app.project, &app.selection.blocks) {
                        ctx.copy_text(text);
                        if event == egui::Event::Cut {
                            tx.send(Edit::DeleteBlocks(
                                app.selection.blocks.iter().cloned().collect(),
                            ));
                        }
                    }
                }
                egui::Event::Paste(text) => {
                    tx.send(Edit::Paste {
                        text,
                        at: self.canvas.pointer_position(ctx),
                    });
                }
                _ => {}
            }
        }
    }
}

fn status_bar_ui(ui: &mut Ui, app: &App) {
    ui.horizontal_centered(|ui| {
        let dark = ui.visuals().dark_mode;
        let location = match (&app.path, &app.imported_from) {
            (Some(path), _) => path.display().to_string(),
            (None, Some(from)) => format!(
                "imported from {} (Save writes a Braid file)",
                from.display()
            ),
            (None, None) => "not saved yet".to_owned(),
        };
        ui.label(RichText::new(location).weak().small());
        if app.is_dirty() {
            ui.label(RichText::new("● unsaved changes").small());
        }
        ui.with_layout(egui::Layout::right_to_left(egui::Align::Center), |ui| {
            let problems = shown_problems(app);
            let errors = problems
                .iter()
                .filter(|p| p.severity == Severity::Error)
                .count()
                + app.compile_errors.len();
            let warnings = problems
                .iter()
                .filter(|p| p.severity == Severity::Warning)
                .count();
            if app.project.blocks.is_empty() && errors + warnings == 0 {
                // Nothing wrong yet but emptiness, which "0 blocks" beside this already says.
            } else if errors + warnings == 0 {
                ui.label(
                    RichText::new("✔ no problems")
                        .small()
                        .color(theme::success_color(dark)),
                );
            } else {
                let text = format!(
                    "{}, {}",
                    crate::text::plural(errors as u64, "error"),
                    crate::text::plural(warnings as u64, "warning")
                );
                let color = if errors > 0 {
                    theme::error_color(dark)
                } else {
                    theme::severity_color(Severity::Warning, dark)
                };
                let problems: Vec<String> = problems
                    .iter()
                    .map(ToString::to_string)
                    .chain(app.compile_errors.iter().map(|e| format!("error: {e}")))
                    .collect();
                ui.label(RichText::new(text).small().color(color))
                    .on_hover_text(problems.join("\n"));
            }
            ui.label(
                RichText::new(crate::model::graph_size(&app.project))
                    .small()
                    .weak(),
            );
        });
    });
}

/// A block's name as run views list it: the project's name for it, told apart from blocks of the same
/// name (`Untitled Code Block (2)`); the name the run recorded when the block is gone.
pub(crate) fn block_label(app: &App, id: &crate::model::BlockId, recorded: &str) -> String {
    if app.project.block(id).is_some() {
        app.project.distinct_name(id)
    } else {
        recorded.to_owned()
    }
}

/// The project's problems as the editor lists and counts them: an empty project's (it has nothing to
/// run) is not among them, since the inspector shows it as a hint to add a block instead.
pub(crate) fn shown_problems(app: &App) -> Vec<&crate::model::validate::Problem> {
    app.problems
        .iter()
        .filter(|p| p.message != crate::model::validate::NO_BLOCKS)
        .collect()
}
