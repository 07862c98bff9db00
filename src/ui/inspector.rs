//! The inspector: everything about the selected block or transition, or the project when nothing is
//! selected. Every change is sent as a command, so each is undoable.

use std::collections::BTreeMap;

use egui::{RichText, Ui};

use super::code_editor::editing::Syntax;
use super::code_editor::{LineMarks, code_editor_ui};
use super::theme;
use crate::app::env_values::ValueSource;
use crate::app::{App, BlockEdit, CommandSender, Edit, FileCommand, Select, TransitionField};
use crate::model::env_file;
use crate::model::validate::{Problem, Severity, Subject, endpoint_method};
use crate::model::{
    Block, BlockId, BlockKind, CodeBlock, HTTP_METHODS, MAX_BATCH_SIZE, MAX_TIMEOUT_S, Retries,
    Tolerance, Transition, TransitionKind,
};

#[derive(Default)]
pub struct InspectorView {
    /// Text of list fields (one item per line) while they are being edited: the list itself drops empty
    /// lines, so the text can't be rebuilt from it while the user is typing a new line.
    list_buffers: BTreeMap<(BlockId, &'static str), String>,
    /// How tall the inspector's panel is on screen (its content scrolls), to size the code editor.
    pub visible_height: f32,
    /// The "connect to" row: the block it is for, its target and type.
    connect_from: Option<BlockId>,
    connect_to: Option<BlockId>,
    connect_kind: Option<TransitionKind>,
    /// The last "show this line" request the code editor followed.
    code_goto_done: Option<u64>,
    /// Environment variable value fields while they are edited, and whether each value is shown.
    env_buffers: BTreeMap<String, (String, bool)>,
}

impl InspectorView {
    pub fn show_ui(&mut self, ui: &mut Ui, app: &App, tx: &CommandSender) {
        let selection = &app.selection;
        if let Some(t) = selection
            .transition
            .as_ref()
            .and_then(|id| app.project.transition(id))
        {
            transition_ui(ui, app, t, tx);
        } else if let Some(block) = selection
            .single_block()
            .and_then(|id| app.project.block(id))
        {
            self.block_ui(ui, app, block, tx);
        } else if selection.blocks.len() > 1 {
            several_ui(ui, app, tx);
        } else {
            project_ui(ui, app, tx);
        }
    }

    fn block_ui(&mut self, ui: &mut Ui, app: &App, block: &Block, tx: &CommandSender) {
        let id = block.id.clone();
        heading_ui(ui, "Block", &block.kind_label());
        egui::Grid::new("block-fields")
            .num_columns(2)
            .spacing([8.0, 6.0])
            .show(ui, |ui| {
                let label = ui.label("Name");
                let mut name = block.name.clone();
                if ui
                    .add(egui::TextEdit::singleline(&mut name).desired_width(f32::INFINITY))
                    .labelled_by(label.id)
                    .changed()
                {
                    tx.send(Edit::EditBlock {
                        block: id.clone(),
                        edit: BlockEdit::Name(name),
                    });
                }
                ui.end_row();
            });
        match &block.kind {
            BlockKind::Code(code) => self.code_block_ui(ui, app, block, code, tx),
            BlockKind::Unsupported { refinery_type, .. } => {
                ui.label(format!(
                    "Braid can't run \"{refinery_type}\" blocks yet; the block is kept as it was \
                     imported. A run that reaches it stops with an error naming it."
                ));
            }
            BlockKind::ApiEndpoint { .. }
            | BlockKind::ApiResponse
            | BlockKind::Timer { .. }
            | BlockKind::Queue { .. }
            | BlockKind::Topic => service_block_ui(ui, app, block, tx),
        }
        problems_ui(ui, app, &Subject::Block(id.clone()));
        ui.add_space(6.0);
        self.connect_ui(ui, app, &id, tx);
        ui.add_space(4.0);
        transitions_list_ui(ui, app, &id, tx);
        ui.add_space(6.0);
        ui.horizontal(|ui| {
            if ui.button("Duplicate").clicked() {
                tx.send(Edit::DuplicateBlocks(vec![id.clone()]));
            }
            if ui.button("Delete block").clicked() {
                tx.send(Edit::DeleteBlocks(vec![id.clone()]));
            }
        });
    }

    fn code_block_ui(
        &mut self,
        ui: &mut Ui,
        app: &App,
        block: &Block,
        code: &CodeBlock,
        tx: &CommandSender,
    ) {
        let id = block.id.clone();
        let errors: Vec<_> = app.compile_errors_of(&id).collect();
        let error_lines: Vec<u32> = errors.iter().filter_map(|e| e.line).collect();
        ui.add_space(4.0);
        let label = ui.horizontal(|ui| {
            let label = ui.label(RichText::new("Code").strong());
            let signature = if code.language.is_runnable() {
                format!(
                    "{} · def main(block_input, backpack)",
                    code.language.label()
                )
            } else {
                format!(
                    "{} · kept as imported; Braid does not run it",
                    code.language.label()
                )
            };
            ui.label(RichText::new(signature).weak().small());
            // The spinner's room is kept when it is hidden, so that the inspector below does not
            // jump each time a background check starts or ends.
            ui.add_visible(app.is_checking(), egui::Spinner::new())
                .on_hover_text("Checking the code (nothing runs)");
            label
        });
        // Leave room below the editor for the block's settings, so they are in view too.
        let height = (self.visible_height - 380.0).clamp(180.0, 420.0);
        // A traceback line was clicked: that line stays marked; the cursor goes there once.
        let marked = app.code_goto.as_ref().filter(|g| g.block == id);
        let goto = marked.filter(|g| self.code_goto_done != Some(g.seq));
        if let Some(goto) = goto {
            self.code_goto_done = Some(goto.seq);
        }
        let marks = LineMarks {
            errors: &error_lines,
            marked: marked.map(|g| g.line),
            goto: goto.map(|g| g.line),
        };
        if let Some(text) = code_editor_ui(
            ui,
            &id.0,
            label.inner.id,
            &code.code,
            Syntax::of(&code.language),
            marks,
            height,
        ) {
            tx.send(Edit::EditBlock {
                block: id.clone(),
                edit: BlockEdit::Code(text),
            });
        }
        for error in &errors {
            let text = match error.line {
                Some(line) => format!("Line {line}: {}", error.message),
                None => error.message.clone(),
            };
            ui.label(RichText::new(text).color(theme::error_color(ui.visuals().dark_mode)));
        }
        ui.add_space(4.0);
        egui::Grid::new("code-settings")
            .num_columns(2)
            .spacing([8.0, 6.0])
            .show(ui, |ui| {
                let label = ui.label("Timeout");
                let mut timeout = code.timeout_s;
                if ui
                    .add(
                        egui::DragValue::new(&mut timeout)
                            .range(1..=MAX_TIMEOUT_S)
                            .suffix(" s"),
                    )
                    .labelled_by(label.id)
                    .changed()
                {
                    tx.send(Edit::EditBlock {
                        block: id.clone(),
                        edit: BlockEdit::TimeoutSecs(timeout),
                    });
                }
                ui.end_row();

                let label = ui.label("Concurrency cap");
                ui.horizontal(|ui| {
                    let mut capped = code.concurrency_cap.is_some();
                    let mut cap = code.concurrency_cap.unwrap_or(10);
                    let toggled = ui
                        .checkbox(&mut capped, "")
                        .labelled_by(label.id)
                        .on_hover_text("At most this many invocations of this block at once")
                        .changed();
                    let dragged = ui
                        .add_enabled(capped, egui::DragValue::new(&mut cap).range(1..=100_000))
                        .labelled_by(label.id)
                        .changed();
                    if toggled || dragged {
                        tx.send(Edit::EditBlock {
                            block: id.clone(),
                            edit: BlockEdit::ConcurrencyCap(capped.then_some(cap)),
                        });
                    }
                });
                ui.end_row();

                retries_ui(ui, &id, code.retries.as_ref(), tx);
                ui.end_row();

                self.list_field_ui(
                    ui,
                    &id,
                    "Libraries",
                    &code.libraries,
                    tx,
                    BlockEdit::Libraries,
                );
                ui.end_row();
                self.list_field_ui(
                    ui,
                    &id,
                    "Environment variables",
                    &code.env_vars,
                    tx,
                    BlockEdit::EnvVars,
                );
                ui.end_row();
                self.env_values_ui(ui, app, &code.env_vars, tx);
            });
    }

    /// A value field for each declared variable. Values go to the project's values file (never the
    /// project): set on Enter or when the field loses focus; emptying the field removes the value.
    fn env_values_ui(&mut self, ui: &mut Ui, app: &App, names: &[String], tx: &CommandSender) {
        let names: Vec<&String> = names.iter().filter(|n| env_file::is_name(n)).collect();
        if names.is_empty() {
            return;
        }
        if app.path.is_none() {
            ui.label("");
            ui.label(
                RichText::new(
                    "Save the project to give these variables values: they are kept beside it, in \
                     .braid/, never in the project file.",
                )
                .small()
                .weak(),
            );
            ui.end_row();
            return;
        }
        let dark = ui.visuals().dark_mode;
        for name in names {
            let label = ui.label(RichText::new(name.as_str()).monospace());
            let source = app.env_values.source(name);
            let saved = match source {
                ValueSource::File(value) => value,
                ValueSource::Environment | ValueSource::Missing => "",
            };
            ui.vertical(|ui| {
                let (buffer, shown) = self
                    .env_buffers
                    .entry(name.clone())
                    .or_insert_with(|| (saved.to_owned(), false));
                ui.horizontal(|ui| {
                    let response = ui
                        .add(
                            egui::TextEdit::singleline(buffer)
                                .password(!*shown)
                                .desired_width(ui.available_width() - 60.0)
                                .hint_text(if source == ValueSource::Environment {
                                    "value (instead of the environment's)"
                                } else {
                                    "value"
                                }),
                        )
                        .labelled_by(label.id);
                    if response.lost_focus() && buffer != saved {
                        tx.send(FileCommand::SetEnvValue {
                            name: name.clone(),
                            value: (!buffer.is_empty()).then(|| buffer.clone()),
                        });
                    } else if !response.has_focus() && buffer != saved {
                        // Changed on disk, or by another block's field for the same name.
                        saved.clone_into(buffer);
                    }
                    let eye = if *shown { "hide" } else { "show" };
                    if ui
                        .small_button(eye)
                        .on_hover_text(format!("{eye} the value of {name}"))
                        .clicked()
                    {
                        *shown = !*shown;
                    }
                });
                let (text, color) = match source {
                    ValueSource::File(_) => (
                        "in .braid/ beside the project".to_owned(),
                        theme::success_color(dark),
                    ),
                    ValueSource::Environment => (
                        "from the environment Braid was started in".to_owned(),
                        ui.visuals().weak_text_color(),
                    ),
                    ValueSource::Missing => (
                        format!("no value: the block won't find {name} in os.environ"),
                        theme::severity_color(Severity::Warning, dark),
                    ),
                };
                ui.label(RichText::new(text).small().color(color));
            });
            ui.end_row();
        }
        // Lines of the values file Braid could not read: their variables would silently lack values.
        for problem in &app.env_values.problems {
            ui.label("");
            ui.label(
                RichText::new(problem)
                    .small()
                    .color(theme::severity_color(Severity::Warning, dark)),
            );
            ui.end_row();
        }
    }

    /// One item per line; the list is sent as it is typed.
    fn list_field_ui(
        &mut self,
        ui: &mut Ui,
        block: &BlockId,
        name: &'static str,
        items: &[String],
        tx: &CommandSender,
        make: fn(Vec<String>) -> BlockEdit,
    ) {
        // Blocks don't see packages installed beside the interpreter (docs/runtime.md).
        let about = (name == "Libraries").then_some(
            "pip requirements, installed into the project's own environment. A block imports the \
             standard library and its project's libraries only, so the project runs the same on \
             every machine.",
        );
        let mut label = ui.label(name);
        if let Some(about) = about {
            label = label.on_hover_text(about);
        }
        let key = (block.clone(), name);
        let joined = items.join("\n");
        let buffer = self
            .list_buffers
            .entry(key.clone())
            .or_insert_with(|| joined.clone());
        // Another edit (undo, a different block) changed the list: show it as it is now.
        if parse_list(buffer) != items {
            buffer.clone_from(&joined);
        }
        let hint = if name == "Libraries" {
            "one per line, e.g. requests"
        } else {
            "one name per line; values from .braid/<project>.env or the environment"
        };
        let response = ui
            .add(
                egui::TextEdit::multiline(buffer)
                    .desired_rows(2)
                    .desired_width(f32::INFINITY)
                    .hint_text(hint),
            )
            .labelled_by(label.id);
        let response = match about {
            Some(about) => response.on_hover_text(about),
            None => response,
        };
        if response.changed() {
            let list = parse_list(buffer);
            if list != items {
                tx.send(Edit::EditBlock {
                    block: block.clone(),
                    edit: make(list),
                });
            }
        }
        if !response.has_focus() && *buffer != joined && parse_list(buffer) == items {
            buffer.clone_from(&joined);
        }
    }

    /// Connect without dragging: pick a target and a type.
    fn connect_ui(&mut self, ui: &mut Ui, app: &App, from: &BlockId, tx: &CommandSender) {
        let dark = ui.visuals().dark_mode;
        ui.label(RichText::new("Add a transition").strong());
        ui.horizontal_wrapped(|ui| {
            let targets: Vec<&Block> = app
                .project
                .blocks
                .iter()
                .filter(|b| &b.id != from)
                .collect();
            // A target left from another block, or deleted, gives way to the likeliest one: downstream,
            // never upstream (that would close a cycle).
            if self.connect_from.as_ref() != Some(from)
                || self
                    .connect_to
                    .as_ref()
                    .is_none_or(|t| !targets.iter().any(|b| &b.id == t))
            {
                self.connect_from = Some(from.clone());
                self.connect_to = crate::model::graph::likely_target(&app.project, from)
                    .or_else(|| targets.first().map(|b| &b.id))
                    .cloned();
            }
            let kind = self.connect_kind.get_or_insert(TransitionKind::Then);
            let label = ui.label("to");
            let selected_name = self
                .connect_to
                .as_ref()
                .map_or("—", |id| app.project.block_name(id))
                .to_owned();
            egui::ComboBox::from_id_salt("connect-target")
                .selected_text(selected_name)
                .show_ui(ui, |ui| {
                    for block in &targets {
                        ui.selectable_value(
                            &mut self.connect_to,
                            Some(block.id.clone()),
                            &block.name,
                        );
                    }
                })
                .response
                .labelled_by(label.id);
            ui.end_row();
            ui.label("as");
            // All types in view (no drop-down): one click picks one.
            for k in TransitionKind::ALL {
                ui.selectable_value(
                    kind,
                    k,
                    RichText::new(k.label()).color(theme::transition_color(k, dark)),
                )
                .on_hover_text(theme::transition_help(k));
            }
            let kind = *kind;
            if ui
                .add_enabled(self.connect_to.is_some(), egui::Button::new("Connect"))
                .clicked()
                && let Some(to) = self.connect_to.clone()
            {
                tx.send(Edit::Connect {
                    from: from.clone(),
                    to,
                    kind,
                });
            }
        });
    }
}

/// The block's transitions, each a link to its own inspector.
fn transitions_list_ui(ui: &mut Ui, app: &App, block: &BlockId, tx: &CommandSender) {
    let dark = ui.visuals().dark_mode;
    let touching: Vec<&Transition> = app
        .project
        .transitions
        .iter()
        .filter(|t| &t.from == block || &t.to == block)
        .collect();
    if touching.is_empty() {
        return;
    }
    ui.label(RichText::new("Transitions").strong());
    for t in touching {
        let text = if &t.from == block {
            format!(
                "{} to {}",
                super::canvas::transition_text(t.kind, &t.expression, 30),
                app.project.block_name(&t.to)
            )
        } else {
            format!(
                "{} from {}",
                t.kind.label(),
                app.project.block_name(&t.from)
            )
        };
        let link = RichText::new(text).color(theme::transition_color(t.kind, dark));
        if ui
            .add(egui::Button::new(link).frame(false))
            .on_hover_text("Edit this transition")
            .clicked()
        {
            tx.send(Select::Transition(t.id.clone()));
        }
    }
    ui.add_space(4.0);
}

/// A block's retries: how many, the first delay and its factor, and which error types (all when empty).
fn retries_ui(ui: &mut Ui, block: &BlockId, retries: Option<&Retries>, tx: &CommandSender) {
    let label = ui.label("Retries");
    let mut edited = retries.cloned().unwrap_or_default();
    let before = edited.clone();
    ui.vertical(|ui| {
        ui.horizontal(|ui| {
            ui.add(egui::DragValue::new(&mut edited.count).range(0..=100))
                .labelled_by(label.id)
                .on_hover_text("More attempts a failed invocation gets (0: none)");
            ui.add_enabled(
                edited.count > 0,
                egui::DragValue::new(&mut edited.delay_s)
                    .range(0.0..=3600.0)
                    .speed(0.1)
                    .prefix("after ")
                    .suffix(" s"),
            )
            .on_hover_text("Wait before the first retry");
            ui.add_enabled(
                edited.count > 0,
                egui::DragValue::new(&mut edited.factor)
                    .range(1.0..=10.0)
                    .speed(0.05)
                    .prefix("× "),
            )
            .on_hover_text("Each further wait is the one before times this");
        });
        if edited.count > 0 {
            // The text as typed stays while the field has focus (a trailing comma included).
            let id = ui.make_persistent_id(("retry-on", block));
            let mut on: String = ui
                .data(|d| d.get_temp(id))
                .unwrap_or_else(|| edited.on.join(", "));
            let response = ui
                .add(
                    egui::TextEdit::singleline(&mut on)
                        .desired_width(f32::INFINITY)
                        .hint_text("every error (or: ConnectionError, Timeout)"),
                )
                .on_hover_text(
                    "The error types that are retried, comma-separated (Timeout and WorkerCrash \
                     too); empty: every failure",
                );
            if response.changed() {
                edited.on = on
                    .split(',')
                    .map(str::trim)
                    .filter(|kind| !kind.is_empty())
                    .map(str::to_owned)
                    .collect();
                ui.data_mut(|d| d.insert_temp(id, on));
            }
            if response.lost_focus() {
                ui.data_mut(|d| d.remove::<String>(id));
            }
        }
    });
    if edited != before {
        tx.send(Edit::EditBlock {
            block: block.clone(),
            edit: BlockEdit::Retries((edited.count > 0).then_some(edited)),
        });
    }
}

fn parse_list(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}

fn heading_ui(ui: &mut Ui, title: &str, detail: &str) {
    ui.horizontal(|ui| {
        ui.heading(title);
        ui.label(RichText::new(detail).weak());
    });
    ui.separator();
}

fn transition_ui(ui: &mut Ui, app: &App, t: &Transition, tx: &CommandSender) {
    let dark = ui.visuals().dark_mode;
    heading_ui(ui, "Transition", t.kind.label());
    ui.label(format!(
        "From \"{}\" to \"{}\"",
        app.project.block_name(&t.from),
        app.project.block_name(&t.to)
    ));
    ui.add_space(4.0);
    ui.label(RichText::new("Type").strong());
    for kind in TransitionKind::ALL {
        let text = RichText::new(kind.label()).color(theme::transition_color(kind, dark));
        let response = ui
            .radio(t.kind == kind, text)
            .on_hover_text(theme::transition_help(kind));
        if response.clicked() && t.kind != kind {
            tx.send(Edit::SetTransitionKind {
                transition: t.id.clone(),
                kind,
            });
        }
    }
    if t.kind == TransitionKind::If {
        ui.add_space(6.0);
        let label = ui.label(RichText::new("Condition (Python)").strong());
        ui.label(
            RichText::new("over return_data, backpack and block_input")
                .weak()
                .small(),
        );
        let mut expression = t.expression.clone();
        if ui
            .add(
                egui::TextEdit::singleline(&mut expression)
                    .code_editor()
                    .desired_width(f32::INFINITY)
                    .hint_text("return_data > 3"),
            )
            .labelled_by(label.id)
            .changed()
        {
            tx.send(Edit::SetTransitionExpression {
                transition: t.id.clone(),
                expression,
            });
        }
        for error in app.compile_errors.iter().filter(|e| *e.what == *t.id.0) {
            ui.label(RichText::new(&error.message).color(theme::error_color(dark)));
        }
    }
    if t.kind == TransitionKind::FanOut {
        item_names_ui(ui, app, t, tx);
    }
    if t.kind == TransitionKind::FanIn {
        tolerance_ui(ui, t, tx);
    }
    problems_ui(ui, app, &Subject::Transition(t.id.clone()));
    ui.add_space(8.0);
    if ui.button("Delete transition").clicked() {
        tx.send(Edit::DeleteTransition(t.id.clone()));
    }
}

/// A fan-out's item key and label expressions (Python over `item`, like `if` conditions).
fn item_names_ui(ui: &mut Ui, app: &App, t: &Transition, tx: &CommandSender) {
    let dark = ui.visuals().dark_mode;
    ui.add_space(6.0);
    ui.label(RichText::new("Items").strong());
    ui.label(
        RichText::new(
            "Python over item (and index, return_data, backpack, block_input). The key names an item \
             across runs (its index when empty); the label is what the tables and the canvas show.",
        )
        .weak()
        .small(),
    );
    egui::Grid::new("item-names")
        .num_columns(2)
        .spacing([8.0, 6.0])
        .show(ui, |ui| {
            for (title, hint, value, field) in [
                (
                    "Key",
                    "item[\"id\"]",
                    &t.item_key,
                    TransitionField::ItemKey as fn(String) -> TransitionField,
                ),
                (
                    "Label",
                    "f\"{item['city']} {item['day']}\"",
                    &t.item_label,
                    TransitionField::ItemLabel,
                ),
            ] {
                let label = ui.label(title);
                let mut text = value.clone();
                if ui
                    .add(
                        egui::TextEdit::singleline(&mut text)
                            .code_editor()
                            .desired_width(f32::INFINITY)
                            .hint_text(hint),
                    )
                    .labelled_by(label.id)
                    .changed()
                {
                    tx.send(Edit::SetTransitionField {
                        transition: t.id.clone(),
                        field: field(text),
                    });
                }
                ui.end_row();
            }
        });
    for error in app.compile_errors.iter().filter(|e| *e.what == *t.id.0) {
        ui.label(RichText::new(&error.message).color(theme::error_color(dark)));
    }
}

/// A fan-in's failure budget: a count (`3`) or a share (`5%`) of its fan-out's items.
fn tolerance_ui(ui: &mut Ui, t: &Transition, tx: &CommandSender) {
    ui.add_space(6.0);
    let label = ui.label(RichText::new("Tolerated failures").strong());
    ui.label(
        RichText::new(
            "How many items may fail with the fan-in still firing: a count (3) or a share (5%). \
             It then gets the results that arrived, in item order, and the failed items in \
             backpack[\"braid_failed_items\"]. Empty: every item must deliver.",
        )
        .weak()
        .small(),
    );
    let id = ui.make_persistent_id(("tolerance", &t.id));
    let mut text: String = ui.data(|d| d.get_temp(id)).unwrap_or_else(|| {
        t.tolerated_failures
            .map(Tolerance::text)
            .unwrap_or_default()
    });
    let valid = text.trim().is_empty() || Tolerance::parse(&text).is_some();
    let mut field = egui::TextEdit::singleline(&mut text)
        .desired_width(80.0)
        .hint_text("none");
    if !valid {
        field = field.text_color(theme::error_color(ui.visuals().dark_mode));
    }
    let response = ui.add(field).labelled_by(label.id);
    if response.changed() {
        ui.data_mut(|d| d.insert_temp(id, text.clone()));
        let budget = Tolerance::parse(&text);
        if (text.trim().is_empty() || budget.is_some()) && budget != t.tolerated_failures {
            tx.send(Edit::SetTransitionField {
                transition: t.id.clone(),
                field: TransitionField::ToleratedFailures(budget),
            });
        }
    }
    if response.lost_focus() {
        ui.data_mut(|d| d.remove::<String>(id));
    }
}

fn several_ui(ui: &mut Ui, app: &App, tx: &CommandSender) {
    let ids: Vec<BlockId> = app.selection.blocks.iter().cloned().collect();
    heading_ui(ui, "Selection", &format!("{} blocks", ids.len()));
    for id in &ids {
        ui.label(app.project.block_name(id));
    }
    ui.add_space(6.0);
    ui.horizontal(|ui| {
        if ui.button("Duplicate").clicked() {
            tx.send(Edit::DuplicateBlocks(ids.clone()));
        }
        if ui.button("Delete blocks").clicked() {
            tx.send(Edit::DeleteBlocks(ids.clone()));
        }
    });
}

fn project_ui(ui: &mut Ui, app: &App, tx: &CommandSender) {
    let project = &app.project;
    heading_ui(ui, "Project", &crate::model::graph_size(project));
    egui::Grid::new("project-fields")
        .num_columns(2)
        .spacing([8.0, 6.0])
        .show(ui, |ui| {
            let label = ui.label("Name");
            let mut name = project.name.clone();
            if ui
                .add(egui::TextEdit::singleline(&mut name).desired_width(f32::INFINITY))
                .labelled_by(label.id)
                .changed()
            {
                tx.send(Edit::RenameProject(name));
            }
            ui.end_row();
            let label = ui.label("Concurrency limit");
            let mut limit = project.settings.concurrency_limit;
            if ui
                .add(egui::DragValue::new(&mut limit).range(1..=1_000_000))
                .labelled_by(label.id)
                .on_hover_text("At most this many invocations run at once")
                .changed()
            {
                tx.send(Edit::SetConcurrencyLimit(limit));
            }
            ui.end_row();
        });
    ui.add_space(4.0);
    let label = ui.label(RichText::new("Readme").strong());
    let mut readme = project.readme.clone();
    if ui
        .add(
            egui::TextEdit::multiline(&mut readme)
                .desired_rows(5)
                .desired_width(f32::INFINITY)
                .hint_text("What this pipeline does"),
        )
        .labelled_by(label.id)
        .changed()
    {
        tx.send(Edit::SetReadme(readme));
    }
    ui.add_space(6.0);
    let all = super::shown_problems(app);
    ui.label(RichText::new("Problems").strong());
    if project.blocks.is_empty() {
        // Not a mistake yet, just a start: the problem an empty project has, as a hint.
        ui.label(
            RichText::new("Nothing to run yet: add a Code Block (double-click the canvas).").weak(),
        );
    } else if all.is_empty() && app.compile_errors.is_empty() {
        ui.label(
            RichText::new("None: the project can run.")
                .color(theme::success_color(ui.visuals().dark_mode)),
        );
    }
    for problem in all {
        problem_line_ui(ui, problem);
    }
    for error in &app.compile_errors {
        ui.label(
            RichText::new(error.to_string()).color(theme::error_color(ui.visuals().dark_mode)),
        );
    }
    ui.add_space(6.0);
    ui.label(
        RichText::new("Select a block or a wire label to edit it.")
            .weak()
            .small(),
    );
}

fn problems_ui(ui: &mut Ui, app: &App, subject: &Subject) {
    let problems: Vec<&Problem> = app
        .problems
        .iter()
        .filter(|p| &p.subject == subject)
        .collect();
    if problems.is_empty() {
        return;
    }
    ui.add_space(4.0);
    ui.label(RichText::new("Problems").strong());
    for problem in problems {
        problem_line_ui(ui, problem);
    }
}

fn problem_line_ui(ui: &mut Ui, problem: &Problem) {
    let mark = if problem.severity == Severity::Error {
        "✖"
    } else {
        "⚠"
    };
    ui.label(
        RichText::new(format!("{mark} {}", problem.message)).color(theme::severity_color(
            problem.severity,
            ui.visuals().dark_mode,
        )),
    );
}

/// A service block's settings, what it does in a run from the editor and while served, and, while the
/// project is served, where it answers and what it has done.
fn service_block_ui(ui: &mut Ui, app: &App, block: &Block, tx: &CommandSender) {
    let edit = |kind: BlockKind| {
        tx.send(Edit::EditBlock {
            block: block.id.clone(),
            edit: BlockEdit::Service(kind),
        });
    };
    egui::Grid::new("service-settings")
        .num_columns(2)
        .spacing([8.0, 6.0])
        .show(ui, |ui| match &block.kind {
            BlockKind::ApiEndpoint {
                api_path,
                http_method,
                timeout_s,
            } => {
                let label = ui.label("Method");
                let mut method = endpoint_method(http_method);
                egui::ComboBox::from_id_salt("endpoint-method")
                    .selected_text(&method)
                    .show_ui(ui, |ui| {
                        for m in HTTP_METHODS {
                            ui.selectable_value(&mut method, m.to_owned(), m);
                        }
                    })
                    .response
                    .labelled_by(label.id);
                if method != endpoint_method(http_method) {
                    edit(BlockKind::ApiEndpoint {
                        api_path: api_path.clone(),
                        http_method: method,
                        timeout_s: *timeout_s,
                    });
                }
                ui.end_row();
                let label = ui.label("Path");
                let mut path = api_path.clone();
                if ui
                    .add(egui::TextEdit::singleline(&mut path).desired_width(f32::INFINITY))
                    .labelled_by(label.id)
                    .changed()
                {
                    edit(BlockKind::ApiEndpoint {
                        api_path: path,
                        http_method: http_method.clone(),
                        timeout_s: *timeout_s,
                    });
                }
                ui.end_row();
                let label = ui.label("Timeout");
                let mut timeout = *timeout_s;
                if ui
                    .add(
                        egui::DragValue::new(&mut timeout)
                            .range(1..=MAX_TIMEOUT_S)
                            .suffix(" s"),
                    )
                    .labelled_by(label.id)
                    .on_hover_text("A request with no API Response reached by then is answered 504")
                    .changed()
                {
                    edit(BlockKind::ApiEndpoint {
                        api_path: api_path.clone(),
                        http_method: http_method.clone(),
                        timeout_s: timeout,
                    });
                }
                ui.end_row();
            }
            BlockKind::Timer {
                schedule_expression,
                input_string,
                description,
            } => {
                let label = ui.label("Schedule");
                let mut schedule = schedule_expression.clone();
                if ui
                    .add(
                        egui::TextEdit::singleline(&mut schedule)
                            .desired_width(f32::INFINITY)
                            .hint_text("rate(5 minutes) or cron(0 12 * * ? *)"),
                    )
                    .labelled_by(label.id)
                    .changed()
                {
                    edit(BlockKind::Timer {
                        schedule_expression: schedule,
                        input_string: input_string.clone(),
                        description: description.clone(),
                    });
                }
                ui.end_row();
                let label = ui.label("Input");
                let mut input = input_string.clone();
                if ui
                    .add(
                        egui::TextEdit::multiline(&mut input)
                            .desired_rows(2)
                            .desired_width(f32::INFINITY)
                            .hint_text("what its blocks receive (JSON, or text)"),
                    )
                    .labelled_by(label.id)
                    .changed()
                {
                    edit(BlockKind::Timer {
                        schedule_expression: schedule_expression.clone(),
                        input_string: input,
                        description: description.clone(),
                    });
                }
                ui.end_row();
            }
            BlockKind::Queue { batch_size } => {
                let label = ui.label("Batch size");
                let mut size = *batch_size;
                if ui
                    .add(egui::DragValue::new(&mut size).range(1..=MAX_BATCH_SIZE))
                    .labelled_by(label.id)
                    .on_hover_text("Its blocks are invoked with up to this many messages at once")
                    .changed()
                {
                    edit(BlockKind::Queue { batch_size: size });
                }
                ui.end_row();
            }
            _ => {}
        });
    let text = match &block.kind {
        BlockKind::ApiEndpoint { .. } => {
            "While the project is served, each request to this endpoint starts a run here with the \
             request as input. In a run from the editor it passes its input on."
        }
        BlockKind::ApiResponse => {
            "The first value that reaches it answers the run's request. In a run from the editor it \
             passes its input on."
        }
        BlockKind::Timer { .. } => {
            "While the project is served, it fires on its schedule and starts a run here; its blocks \
             get its input (as JSON when it is JSON)."
        }
        BlockKind::Queue { .. } => {
            "What reaches it is kept as messages (a list: one per item); its blocks are invoked with \
             batches of them. In a run from the editor the batches go on at once."
        }
        _ => "Every block it leads to receives each message, with the publisher's backpack.",
    };
    ui.label(text);
    served_ui(ui, app, &block.id);
}

/// While the project is served: an endpoint's URL (copyable) and request count, a timer's next fire, a
/// queue's depth.
fn served_ui(ui: &mut Ui, app: &App, id: &BlockId) {
    if let Some(endpoint) = app.served_endpoint(id) {
        ui.horizontal(|ui| {
            ui.label(RichText::new(format!("{} {}", endpoint.method, endpoint.url)).monospace());
            if ui
                .small_button("Copy")
                .on_hover_text("Copy the URL")
                .clicked()
            {
                ui.ctx().copy_text(endpoint.url.clone());
            }
        });
        ui.label(format!(
            "{} so far",
            crate::text::plural(endpoint.requests, "request")
        ));
    } else if let Some(timer) = app.served_timer(id) {
        ui.label(match timer.next_fire_ms {
            Some(ms) => format!("Next fire: {}", crate::text::utc_date_time(ms)),
            None => "Its schedule has no fire left.".to_owned(),
        });
        ui.label(format!(
            "Fired {} so far",
            crate::text::plural(timer.fired, "time")
        ));
    } else if let Some(queue) = app.served_queue(id) {
        ui.label(format!(
            "{} waiting, {} in batches, {} dead",
            crate::text::plural(queue.depth, "message"),
            crate::text::count(queue.in_flight),
            crate::text::count(queue.dead)
        ));
    }
}
