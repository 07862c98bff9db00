//! Small modal pieces: "discard unsaved changes?", Braid's own file prompt, and notices.

use std::path::{Path, PathBuf};

use egui::{RichText, Ui};

use super::theme;
use crate::app::{
    App, Command, CommandSender, FileAction, FileCommand, FilePrompt, NoticeLevel, PendingAction,
};

pub fn confirm_discard_ui(ctx: &egui::Context, app: &App, tx: &CommandSender) {
    let Some(action) = &app.confirm else {
        return;
    };
    let what = match action {
        PendingAction::New => "start a new project",
        PendingAction::Open(_) | PendingAction::OpenDialog => "open another project",
        PendingAction::Quit => "quit",
    };
    let modal = egui::Modal::new(egui::Id::new("braid-confirm-discard")).show(ctx, |ui| {
        ui.set_width(380.0);
        ui.heading("Unsaved changes");
        ui.label(format!(
            "\"{}\" has changes that are not saved. Save them before you {what}?",
            app.project.name
        ));
        ui.add_space(8.0);
        ui.horizontal(|ui| {
            if ui.button(RichText::new("Save").strong()).clicked() {
                tx.send(FileCommand::SaveThenContinue);
            }
            if ui.button("Discard changes").clicked() {
                tx.send(FileCommand::ConfirmDiscard(true));
            }
            if ui.button("Cancel").clicked() {
                tx.send(FileCommand::ConfirmDiscard(false));
            }
        });
    });
    if modal.should_close() {
        tx.send(FileCommand::ConfirmDiscard(false));
    }
}

/// Braid's own file prompt: a path field and the folder's project files, for systems with no native
/// file dialog.
#[derive(Default)]
pub struct FilePromptView {
    /// The prompt this state belongs to, so a new prompt starts afresh.
    shown: Option<FilePrompt>,
    path: String,
}

impl FilePromptView {
    pub fn show(&mut self, ctx: &egui::Context, app: &App, tx: &CommandSender) {
        let Some(prompt) = &app.file_prompt else {
            self.shown = None;
            return;
        };
        if self.shown.as_ref() != Some(prompt) {
            self.shown = Some(prompt.clone());
            self.path = prompt.suggested.display().to_string();
        }
        let (title, verb) = match prompt.action {
            FileAction::Open => ("Open project", "Open"),
            FileAction::SaveAs => ("Save project as", "Save"),
        };
        let mut submit = false;
        egui::Modal::new(egui::Id::new("braid-file-prompt")).show(ctx, |ui| {
            ui.set_width(520.0);
            ui.heading(title);
            let label = ui.label("Path");
            let response = ui
                .add(
                    egui::TextEdit::singleline(&mut self.path)
                        .desired_width(f32::INFINITY)
                        .hint_text("/path/to/project.braid.json"),
                )
                .labelled_by(label.id);
            if response.lost_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter)) {
                submit = true;
            }
            // The keys are the prompt's while it is open: typing goes into the path, never to the
            // canvas behind it.
            if !ui.ctx().memory(|m| m.focused().is_some()) {
                response.request_focus();
            }
            submit |= folder_listing_ui(ui, &mut self.path, prompt.action);
            ui.add_space(6.0);
            ui.horizontal(|ui| {
                let enabled = !self.path.trim().is_empty();
                if ui
                    .add_enabled(enabled, egui::Button::new(RichText::new(verb).strong()))
                    .clicked()
                {
                    submit = true;
                }
                if ui.button("Cancel").clicked() {
                    tx.send(FileCommand::CancelPrompt);
                }
            });
        });
        if submit && !self.path.trim().is_empty() {
            let path = expand_home(self.path.trim());
            match prompt.action {
                FileAction::Open => tx.send(FileCommand::Open(path)),
                FileAction::SaveAs => tx.send(FileCommand::SaveAs(path)),
            }
        } else if ctx.input(|i| i.key_pressed(egui::Key::Escape)) {
            // Escape or Cancel closes the prompt; a click beside it does not (that closed it without
            // a word, and the next keys went to the canvas).
            tx.send(FileCommand::CancelPrompt);
        }
    }
}

fn expand_home(path: &str) -> PathBuf {
    match (path.strip_prefix("~/"), std::env::var_os("HOME")) {
        (Some(rest), Some(home)) => Path::new(&home).join(rest),
        _ => PathBuf::from(path),
    }
}

/// The folder of the typed path: sub-folders and JSON files. A click picks one; a double-click on a
/// file picks it and answers the prompt (returns `true`), on a folder opens it.
fn folder_listing_ui(ui: &mut Ui, path: &mut String, action: FileAction) -> bool {
    let typed = expand_home(path.trim());
    let folder = if typed.is_dir() {
        typed
    } else {
        typed.parent().map(Path::to_path_buf).unwrap_or_default()
    };
    let Ok(entries) = std::fs::read_dir(&folder) else {
        return false;
    };
    let mut entries: Vec<(bool, String)> = entries
        .filter_map(Result::ok)
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let is_dir = e.file_type().ok()?.is_dir();
            (!name.starts_with('.')
                && (is_dir
                    || Path::new(&name)
                        .extension()
                        .is_some_and(|e| e.eq_ignore_ascii_case("json"))))
            .then_some((is_dir, name))
        })
        .collect();
    entries.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
    ui.label(RichText::new(folder.display().to_string()).weak().small());
    let mut chosen = false;
    egui::ScrollArea::vertical()
        .max_height(200.0)
        .auto_shrink([false, true])
        .show(ui, |ui| {
            if let Some(parent) = folder.parent()
                && ui.selectable_label(false, "📁 ..").clicked()
            {
                *path = format!("{}/", parent.display());
            }
            for (is_dir, name) in entries {
                let text = if is_dir {
                    format!("📁 {name}")
                } else {
                    format!("📄 {name}")
                };
                let response = ui.selectable_label(false, text);
                if response.clicked() || response.double_clicked() {
                    let joined = folder.join(&name);
                    *path = if is_dir {
                        format!("{}/", joined.display())
                    } else {
                        joined.display().to_string()
                    };
                    chosen |= response.double_clicked() && !is_dir;
                }
            }
        });
    if action == FileAction::SaveAs {
        ui.label(
            RichText::new(
                "Saving replaces the file in one step; a crash never leaves half a file.",
            )
            .weak()
            .small(),
        );
    }
    chosen
}

/// Notices in the canvas's top-right corner; errors stay until closed.
pub fn notices_ui(ctx: &egui::Context, app: &App, tx: &CommandSender, rect: egui::Rect) {
    if app.notices.is_empty() {
        return;
    }
    let dark = ctx.global_style().visuals.dark_mode;
    egui::Area::new(egui::Id::new("braid-notices"))
        .order(egui::Order::Foreground)
        .fixed_pos(rect.right_top() + egui::vec2(-430.0, 10.0))
        .show(ctx, |ui| {
            ui.set_max_width(420.0);
            for notice in app.notices.iter().rev() {
                let color = match notice.level {
                    NoticeLevel::Error => theme::error_color(dark),
                    NoticeLevel::Info => ui.visuals().text_color(),
                };
                egui::Frame::popup(ui.style())
                    .stroke(egui::Stroke::new(1.0, color))
                    .show(ui, |ui| {
                        ui.set_width(400.0);
                        ui.horizontal_top(|ui| {
                            if ui.small_button("x").on_hover_text("Dismiss").clicked() {
                                tx.send(Command::DismissNotice(notice.id));
                            }
                            ui.add(
                                egui::Label::new(RichText::new(&notice.text).color(color)).wrap(),
                            );
                        });
                    });
                ui.add_space(4.0);
            }
        });
}

/// F1: every shortcut in one place.
pub fn help_ui(ctx: &egui::Context, open: &mut bool) {
    egui::Window::new("Keyboard shortcuts")
        .open(open)
        .collapsible(false)
        .resizable(false)
        .anchor(egui::Align2::CENTER_CENTER, [0.0, 0.0])
        .show(ctx, |ui| {
            egui::Grid::new("shortcuts")
                .num_columns(2)
                .spacing([24.0, 4.0])
                .striped(true)
                .show(ui, |ui| {
                    for (keys, what) in SHORTCUTS {
                        ui.label(RichText::new(*keys).monospace().strong());
                        ui.label(*what);
                        ui.end_row();
                    }
                });
            ui.add_space(6.0);
            ui.label(
                RichText::new(
                    "Canvas: drag a block to move it · drag from a pin to connect · drop a wire \
                     on empty space for a new block · scroll to pan · Ctrl+scroll to zoom · \
                     Shift+drag to select a rectangle · right-click for menus",
                )
                .weak()
                .small(),
            );
        });
}

pub const SHORTCUTS: &[(&str, &str)] = &[
    ("Ctrl+N", "New project"),
    ("Ctrl+O", "Open…"),
    ("Ctrl+S", "Save"),
    ("Ctrl+Shift+S", "Save as…"),
    ("Ctrl+Enter", "Run (with the last run's input)"),
    ("Ctrl+R", "Run dialog…"),
    ("Ctrl+Z", "Undo"),
    ("Ctrl+Shift+Z / Ctrl+Y", "Redo"),
    ("Ctrl+C / Ctrl+X / Ctrl+V", "Copy / cut / paste blocks"),
    ("Ctrl+D", "Duplicate the selection"),
    ("Ctrl+A", "Select all blocks"),
    ("Delete", "Delete the selection"),
    ("A", "Add a Code Block"),
    ("F", "Fit the pipeline into view"),
    ("+ / -", "Zoom in / out"),
    ("Escape", "Close the menu or dialog, or clear the selection"),
    (
        "Tab / Shift+Tab, Ctrl+/",
        "Code editor: indent / dedent, comment lines",
    ),
    ("F1", "This help"),
    (
        "Down / J, Up / K",
        "Block Executions (once clicked): next / previous invocation",
    ),
    (
        "Shift+Down / Shift+Up",
        "Next / previous invocation of the run in start order",
    ),
    (
        "Left / H, Right / L",
        "Follow the item: where it came from / what it led to",
    ),
];
