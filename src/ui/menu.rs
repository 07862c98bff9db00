//! The menu bar and the toolbar beside it.

use egui::{RichText, Ui};

use super::{Views, theme};
use crate::app::{
    App, Command, CommandSender, Edit, FileAction, FileCommand, RunCommand, RunPhase, Select,
    ServeCommand,
};
use crate::model::Block;

pub fn menu_bar_ui(ui: &mut Ui, views: &mut Views, app: &App, tx: &CommandSender) {
    egui::MenuBar::new().ui(ui, |ui| {
        ui.menu_button("File", |ui| {
            if ui
                .add(egui::Button::new("New").shortcut_text("Ctrl+N"))
                .clicked()
            {
                tx.send(FileCommand::New);
            }
            if ui
                .add(egui::Button::new("Open…").shortcut_text("Ctrl+O"))
                .clicked()
            {
                tx.send(FileCommand::ShowDialog(FileAction::Open));
            }
            ui.menu_button("Open recent", |ui| {
                if app.recent.is_empty() {
                    ui.label(RichText::new("No recent projects").weak());
                }
                for path in &app.recent {
                    let name = path.file_name().map_or_else(
                        || path.display().to_string(),
                        |n| n.to_string_lossy().into_owned(),
                    );
                    if ui
                        .button(name)
                        .on_hover_text(path.display().to_string())
                        .clicked()
                    {
                        tx.send(FileCommand::Open(path.clone()));
                    }
                }
            });
            ui.separator();
            if ui
                .add(egui::Button::new("Save").shortcut_text("Ctrl+S"))
                .clicked()
            {
                tx.send(FileCommand::Save);
            }
            if ui
                .add(egui::Button::new("Save as…").shortcut_text("Ctrl+Shift+S"))
                .clicked()
            {
                tx.send(FileCommand::ShowDialog(FileAction::SaveAs));
            }
            ui.separator();
            if ui.button("Quit").clicked() {
                tx.send(FileCommand::Quit);
            }
        });
        ui.menu_button("Edit", |ui| {
            if ui
                .add_enabled(
                    app.can_undo(),
                    egui::Button::new("Undo").shortcut_text("Ctrl+Z"),
                )
                .clicked()
            {
                tx.send(Command::Undo);
            }
            if ui
                .add_enabled(
                    app.can_redo(),
                    egui::Button::new("Redo").shortcut_text("Ctrl+Shift+Z"),
                )
                .clicked()
            {
                tx.send(Command::Redo);
            }
            ui.separator();
            let selected: Vec<_> = app.selection.blocks.iter().cloned().collect();
            let any = !selected.is_empty();
            if ui
                .add(egui::Button::new("Add Code Block").shortcut_text("A"))
                .clicked()
            {
                tx.send(Edit::AddBlock {
                    position: views.canvas.center_position(),
                    connect_from: None,
                });
            }
            if ui
                .add_enabled(any, egui::Button::new("Duplicate").shortcut_text("Ctrl+D"))
                .clicked()
            {
                tx.send(Edit::DuplicateBlocks(selected.clone()));
            }
            if ui
                .add_enabled(
                    any || app.selection.transition.is_some(),
                    egui::Button::new("Delete").shortcut_text("Del"),
                )
                .clicked()
            {
                views.delete_selection(app, tx);
            }
            if ui
                .add(egui::Button::new("Select all").shortcut_text("Ctrl+A"))
                .clicked()
            {
                tx.send(Select::All);
            }
        });
        ui.menu_button("View", |ui| {
            if ui
                .add(egui::Button::new("Fit to view").shortcut_text("F"))
                .clicked()
            {
                views.canvas.request_fit();
            }
            if ui
                .add(egui::Button::new("Zoom in").shortcut_text("+"))
                .clicked()
            {
                views.canvas.zoom(1.25);
            }
            if ui
                .add(egui::Button::new("Zoom out").shortcut_text("-"))
                .clicked()
            {
                views.canvas.zoom(0.8);
            }
            ui.separator();
            let mut preference = ui.ctx().options(|o| o.theme_preference);
            ui.label(RichText::new("Theme").weak());
            let before = preference;
            ui.radio_value(&mut preference, egui::ThemePreference::Dark, "Dark");
            ui.radio_value(&mut preference, egui::ThemePreference::Light, "Light");
            ui.radio_value(
                &mut preference,
                egui::ThemePreference::System,
                "Follow the system",
            );
            if preference != before {
                ui.ctx().set_theme(preference);
            }
        });
        ui.menu_button("Run", |ui| {
            if ui
                .add_enabled(
                    !app.is_running(),
                    egui::Button::new("Run").shortcut_text("Ctrl+Enter"),
                )
                .clicked()
            {
                tx.send(RunCommand::Start(app.run_options.clone()));
            }
            if ui
                .add(egui::Button::new("Run with input…").shortcut_text("Ctrl+R"))
                .clicked()
            {
                views.run_dialog.open(app);
            }
            if ui
                .add_enabled(app.is_running(), egui::Button::new("Stop"))
                .clicked()
            {
                tx.send(RunCommand::Stop);
            }
        });
        ui.menu_button("Help", |ui| {
            if ui
                .add(egui::Button::new("Keyboard shortcuts").shortcut_text("F1"))
                .clicked()
            {
                views.help_open = true;
            }
        });

        ui.separator();
        toolbar_ui(ui, views, app, tx);
    });
}

fn toolbar_ui(ui: &mut Ui, views: &mut Views, app: &App, tx: &CommandSender) {
    let running = app.is_running();
    let start = app
        .run_options
        .from
        .as_ref()
        .map(|id| app.project.block_name(id).to_owned());
    let hover = match &start {
        Some(name) => format!("Run from \"{name}\" with the last input (Ctrl+Enter)"),
        None => "Run with the last input (Ctrl+Enter)".to_owned(),
    };
    if ui
        .add_enabled(!running, egui::Button::new(RichText::new("▶ Run").strong()))
        .on_hover_text(hover)
        .clicked()
    {
        tx.send(RunCommand::Start(app.run_options.clone()));
    }
    // A run that starts elsewhere than at the entry blocks says so where ▶ Run is pressed.
    if let Some(name) = start {
        let accent = theme::severity_color(
            crate::model::validate::Severity::Warning,
            ui.visuals().dark_mode,
        );
        ui.label(
            RichText::new(format!("from “{}”", crate::text::truncate(&name, 24))).color(accent),
        )
        .on_hover_text("▶ Run starts at this block (Run from here, or the Run… dialog's Start at)");
        if ui
            .small_button("✖")
            .on_hover_text("Start at the entry blocks again")
            .clicked()
        {
            tx.send(RunCommand::StartAtEntries);
        }
    }
    if ui
        .add_enabled(!running, egui::Button::new("Run…"))
        .on_hover_text("Choose the input, backpack and concurrency (Ctrl+R)")
        .clicked()
    {
        views.run_dialog.open(app);
    }
    let stopping = app
        .run
        .as_ref()
        .is_some_and(|r| r.phase == RunPhase::Stopping);
    if ui
        .add_enabled(running && !stopping, egui::Button::new("■ Stop"))
        .clicked()
    {
        tx.send(RunCommand::Stop);
    }
    // Serving is offered to a project with something to serve.
    if app.is_serving() || app.project.blocks.iter().any(Block::is_service) {
        ui.separator();
        serve_ui(ui, views, app, tx);
    }
    ui.separator();
    if ui
        .button("+ Block")
        .on_hover_text("Add a Code Block (A, or double-click the canvas)")
        .clicked()
    {
        tx.send(Edit::AddBlock {
            position: views.canvas.center_position(),
            connect_from: None,
        });
    }
    if ui
        .button("Fit")
        .on_hover_text("Fit the pipeline into view (F)")
        .clicked()
    {
        views.canvas.request_fit();
    }
}

/// Serve mode: serve the project (on the address typed here) or stop serving it; while served, where.
fn serve_ui(ui: &mut Ui, views: &mut Views, app: &App, tx: &CommandSender) {
    if let Some(url) = app.serving_url() {
        ui.label(
            RichText::new(format!("● Serving at {url}"))
                .color(theme::path_color(ui.visuals().dark_mode)),
        )
        .on_hover_text("Each request, timer firing and queue batch is a run in Block Executions");
        if ui
            .small_button("Copy")
            .on_hover_text("Copy the URL")
            .clicked()
        {
            ui.ctx().copy_text(url.to_owned());
        }
        if ui.button("■ Stop serving").clicked() {
            tx.send(ServeCommand::Stop);
        }
        return;
    }
    if app.serve_starting() {
        ui.spinner();
        ui.label("Starting to serve…");
        if ui.button("■ Stop serving").clicked() {
            tx.send(ServeCommand::Stop);
        }
        return;
    }
    let listen = views
        .serve_listen
        .get_or_insert_with(|| app.serve_listen.clone());
    ui.add(
        egui::TextEdit::singleline(listen)
            .desired_width(120.0)
            .hint_text("127.0.0.1:7700"),
    )
    .on_hover_text("Where Serve listens (port 0: any free one)");
    if ui
        .button("Serve")
        .on_hover_text(
            "Serve the project as braid serve does: API Endpoints answer HTTP, Timers fire, Queues \
             drain, Topics publish",
        )
        .clicked()
    {
        tx.send(ServeCommand::Start {
            listen: listen.clone(),
        });
    }
}
