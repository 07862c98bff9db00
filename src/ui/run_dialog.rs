//! The run dialog: the run's input, starting backpack, concurrency and entry block; Run and Stop.

use egui::{RichText, Ui};

use super::theme;
use crate::app::run::parse_json;
use crate::app::{App, CommandSender, RunCommand, RunOptions};

#[derive(Default)]
pub struct RunDialog {
    pub open: bool,
    /// The options being edited; taken from the last run when the dialog opens.
    options: Option<RunOptions>,
    /// Ctrl+Enter while the dialog is open runs with what it shows.
    run_requested: bool,
}

impl RunDialog {
    pub fn open(&mut self, app: &App) {
        self.open = true;
        self.options = Some(app.run_options.clone());
    }

    pub fn request_run(&mut self) {
        self.run_requested = true;
    }

    pub fn show(&mut self, ctx: &egui::Context, app: &App, tx: &CommandSender) {
        if !self.open {
            return;
        }
        let mut open = true;
        let options = self.options.get_or_insert_with(|| app.run_options.clone());
        let mut run = std::mem::take(&mut self.run_requested);
        egui::Window::new("Run pipeline")
            .open(&mut open)
            .collapsible(false)
            .resizable(true)
            .default_width(460.0)
            .anchor(egui::Align2::CENTER_CENTER, [0.0, 0.0])
            .show(ctx, |ui| {
                options_ui(ui, app, options);
                ui.separator();
                ui.horizontal(|ui| {
                    let input_ok = parse_json("input", &options.input).is_ok();
                    let backpack_ok =
                        parse_json("backpack", &options.backpack).is_ok_and(|v| v.is_object());
                    let can_run = input_ok
                        && backpack_ok
                        && options.executor().is_ok()
                        && !app.is_running()
                        && app.has_runtime();
                    if ui
                        .add_enabled(can_run, egui::Button::new(RichText::new("▶ Run").strong()))
                        .on_hover_text("Ctrl+Enter")
                        .clicked()
                    {
                        run = true;
                    }
                    if ui
                        .add_enabled(app.is_running(), egui::Button::new("■ Stop"))
                        .clicked()
                    {
                        tx.send(RunCommand::Stop);
                    }
                    if !app.has_runtime() {
                        ui.label(
                            RichText::new("The runtime did not start; see the notice.")
                                .color(theme::error_color(ui.visuals().dark_mode)),
                        );
                    }
                });
                run &= parse_json("input", &options.input).is_ok()
                    && options.executor().is_ok()
                    && !app.is_running();
            });
        if run {
            tx.send(RunCommand::Start(options.clone()));
            open = false;
        }
        self.open = open;
    }
}

fn options_ui(ui: &mut Ui, app: &App, options: &mut RunOptions) {
    let dark = ui.visuals().dark_mode;
    let label = ui.label(RichText::new("Input (JSON)").strong());
    ui.add(
        egui::TextEdit::multiline(&mut options.input)
            .code_editor()
            .desired_rows(4)
            .desired_width(f32::INFINITY),
    )
    .labelled_by(label.id);
    if let Err(message) = parse_json("input", &options.input) {
        ui.label(
            RichText::new(message)
                .small()
                .color(theme::error_color(dark)),
        );
    }
    let label = ui.label(RichText::new("Backpack (JSON object)").strong());
    ui.add(
        egui::TextEdit::multiline(&mut options.backpack)
            .code_editor()
            .desired_rows(2)
            .desired_width(f32::INFINITY),
    )
    .labelled_by(label.id);
    match parse_json("backpack", &options.backpack) {
        Err(message) => {
            ui.label(
                RichText::new(message)
                    .small()
                    .color(theme::error_color(dark)),
            );
        }
        Ok(value) if !value.is_object() => {
            ui.label(
                RichText::new("The backpack must be a JSON object, like {}.")
                    .small()
                    .color(theme::error_color(dark)),
            );
        }
        Ok(_) => {}
    }
    egui::Grid::new("run-options")
        .num_columns(2)
        .spacing([8.0, 6.0])
        .show(ui, |ui| {
            let label = ui.label("Concurrency");
            ui.horizontal(|ui| {
                let mut custom = options.concurrency.is_some();
                let mut limit = options
                    .concurrency
                    .unwrap_or(app.project.settings.concurrency_limit);
                ui.checkbox(&mut custom, "limit this run to")
                    .labelled_by(label.id);
                ui.add_enabled(
                    custom,
                    egui::DragValue::new(&mut limit).range(1..=1_000_000),
                )
                .labelled_by(label.id);
                if !custom {
                    ui.label(
                        RichText::new(format!(
                            "(project: {})",
                            app.project.settings.concurrency_limit
                        ))
                        .weak(),
                    );
                }
                options.concurrency = custom.then_some(limit);
            });
            ui.end_row();
            let label = ui.label("Start at");
            let selected = options
                .from
                .as_ref()
                .map_or("the entry blocks", |id| app.project.block_name(id))
                .to_owned();
            egui::ComboBox::from_id_salt("run-from")
                .selected_text(selected)
                .show_ui(ui, |ui| {
                    ui.selectable_value(&mut options.from, None, "the entry blocks");
                    for block in &app.project.blocks {
                        ui.selectable_value(&mut options.from, Some(block.id.clone()), &block.name);
                    }
                })
                .response
                .labelled_by(label.id);
            ui.end_row();
            let label = ui.label("Run on");
            ui.vertical(|ui| {
                ui.radio_value(&mut options.on_cluster, false, "this machine")
                    .labelled_by(label.id);
                ui.horizontal(|ui| {
                    ui.radio_value(&mut options.on_cluster, true, "a Dask cluster at")
                        .labelled_by(label.id);
                    let address = ui.add(
                        egui::TextEdit::singleline(&mut options.cluster)
                            .hint_text("tcp://HOST:PORT")
                            .desired_width(200.0),
                    );
                    address.widget_info(|| {
                        egui::WidgetInfo::labeled(
                            egui::WidgetType::TextEdit,
                            true,
                            "Dask scheduler address",
                        )
                    });
                    // Typing an address means running there.
                    if address.changed() {
                        options.on_cluster = true;
                    }
                });
                if let Err(message) = options.executor() {
                    ui.label(
                        RichText::new(message)
                            .small()
                            .color(theme::error_color(dark)),
                    );
                } else if options.on_cluster {
                    ui.label(
                        RichText::new(
                            "Workers need this Python's version and dask[distributed]; \
                             `braid cluster` shows how to start some here.",
                        )
                        .small()
                        .weak(),
                    );
                }
            });
            ui.end_row();
        });
}
