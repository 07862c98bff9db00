//! The Block Executions panel: the project's runs (newest first), the shown run's invocations in a
//! virtualised table (the selected block's, or all), and the picked invocation's detail.
//!
//! Keyboard, while the panel has focus (it was clicked last): ↓/j and ↑/k move through the table,
//! Shift moves in start order over the whole run, ←/h goes to the invocation the item came from and
//! →/l to the first one it led to.

use egui::{Align, Key, Modifiers, RichText, Ui};
use egui_extras::{Column, TableBuilder};

use super::invocation_detail::InvocationDetail;
use super::theme;
use crate::app::executions::table::TableFilter;
use crate::app::executions::table::parse_item_path;
use crate::app::{App, CommandSender, ExecutionsCommand, Select, Step};
use crate::run::{InvocationStatus, RowOrder, RunRow, RunStatus};
use crate::text::{clock_time, duration_ms, item_path, truncate};

const ROW_HEIGHT: f32 = 20.0;
/// The search text applies this long after the last keystroke.
const TEXT_PAUSE_SECS: f64 = 0.3;
/// The statuses a user filters by (queued and running only exist while a run goes).
const FILTER_STATUSES: [InvocationStatus; 6] = [
    InvocationStatus::Succeeded,
    InvocationStatus::CaughtException,
    InvocationStatus::Exception,
    InvocationStatus::TimedOut,
    InvocationStatus::Cancelled,
    InvocationStatus::Retried,
];
/// Failure groups listed above the table (the rest are counted).
const SHOWN_GROUPS: usize = 5;

#[derive(Default)]
pub struct ExecutionsPanel {
    /// The filter being edited; sent to the application when it changes.
    filter: TableFilter,
    /// Whether the panel was the last thing clicked (its keys then work).
    pub focused: bool,
    /// The retention being edited (applied when the user lets go).
    keep_edit: Option<usize>,
    /// When the typed search text is applied (after a pause in typing).
    text_due: Option<f64>,
    /// The picked invocation the table last scrolled to.
    scrolled_to: Option<u64>,
    detail: InvocationDetail,
}

impl ExecutionsPanel {
    pub fn show_ui(&mut self, ui: &mut Ui, app: &App, tx: &CommandSender) {
        let rect = ui.available_rect_before_wrap();
        self.track_focus(ui, rect);
        if self.focused {
            keys(ui, tx);
        }
        let runs = app.executions.runs();
        if runs.is_empty() {
            ui.add_space(6.0);
            ui.label(
                RichText::new(
                    "No runs yet. Run the pipeline (Ctrl+Enter): every invocation shows up here.",
                )
                .weak(),
            );
            if let Some(problem) = &app.executions.history_problem {
                ui.label(RichText::new(problem).color(theme::error_color(ui.visuals().dark_mode)));
            }
            return;
        }
        let height = ui.available_height();
        ui.horizontal_top(|ui| {
            ui.vertical(|ui| {
                ui.set_width(250.0);
                ui.set_height(height);
                runs_ui(ui, app, &runs, &mut self.keep_edit, tx);
            });
            ui.separator();
            let table_width = (ui.available_width() * 0.56).max(320.0);
            ui.vertical(|ui| {
                ui.set_width(table_width);
                ui.set_height(height);
                self.filter_ui(ui, app, tx);
                self.failures_ui(ui, app, tx);
                self.table_ui(ui, app, tx);
            });
            ui.separator();
            ui.vertical(|ui| {
                ui.set_height(height);
                self.detail.show_ui(ui, app, tx);
            });
        });
    }

    /// The panel has the keyboard after a click in it, until a click elsewhere.
    fn track_focus(&mut self, ui: &Ui, rect: egui::Rect) {
        let (clicked, pointer) = ui
            .ctx()
            .input(|i| (i.pointer.primary_pressed(), i.pointer.interact_pos()));
        if clicked && let Some(pointer) = pointer {
            self.focused = rect.contains(pointer);
        }
    }

    fn filter_ui(&mut self, ui: &mut Ui, app: &App, tx: &CommandSender) {
        let mut filter = self.filter.clone();
        let dark = ui.visuals().dark_mode;
        ui.horizontal_wrapped(|ui| {
            match app
                .selection
                .single_block()
                .and_then(|id| app.project.block(id))
            {
                Some(block) => {
                    ui.label(RichText::new(truncate(&block.name, 24)).strong())
                        .on_hover_text(
                            "The block selected on the canvas; its invocations are listed",
                        );
                    if ui
                        .small_button("All blocks")
                        .on_hover_text("List every block's invocations")
                        .clicked()
                    {
                        tx.send(Select::Clear);
                    }
                }
                None => {
                    ui.label(RichText::new("All blocks").strong())
                        .on_hover_text("Select a block on the canvas to list only its invocations");
                }
            }
            ui.separator();
            // Retried attempts come only from blocks with retries: without any, no chip for them.
            let retries = app
                .project
                .blocks
                .iter()
                .any(|b| b.code().is_some_and(|c| c.retries.is_some()));
            for status in FILTER_STATUSES {
                let on = filter.statuses.contains(&status);
                if status == InvocationStatus::Retried && !retries && !on {
                    continue;
                }
                let text = RichText::new(status.label()).color(theme::status_color(status, dark));
                if ui
                    .selectable_label(on, text)
                    .on_hover_text(format!(
                        "Only {} invocations: they {}",
                        status.label(),
                        status.description()
                    ))
                    .clicked()
                {
                    if on {
                        filter.statuses.retain(|s| *s != status);
                    } else {
                        filter.statuses.push(status);
                    }
                }
            }
        });
        ui.horizontal(|ui| {
            ui.add(
                egui::TextEdit::singleline(&mut filter.text)
                    .hint_text("search input, output, error")
                    .desired_width(170.0),
            )
            .widget_info(|| {
                egui::WidgetInfo::labeled(egui::WidgetType::TextEdit, true, "Search invocations")
            });
            let path_ok = parse_item_path(&filter.item_path).is_some();
            let mut item = egui::TextEdit::singleline(&mut filter.item_path)
                .hint_text("item path, e.g. 3")
                .desired_width(100.0);
            if !path_ok {
                item = item.text_color(theme::error_color(dark));
            }
            ui.add(item)
                .on_hover_text("Invocations at or under this item path, like 3 or 3, 7");
            egui::ComboBox::from_id_salt("executions-order")
                .selected_text(order_label(filter.order))
                .show_ui(ui, |ui| {
                    for order in [
                        RowOrder::Id,
                        RowOrder::Started,
                        RowOrder::DurationDescending,
                        RowOrder::DurationAscending,
                    ] {
                        ui.selectable_value(&mut filter.order, order, order_label(order));
                    }
                });
        });
        // Typed text waits for a pause (a million rows are searched per change); the rest applies at
        // once.
        let now = ui.input(|i| i.time);
        if filter != self.filter {
            let text_only = TableFilter {
                text: self.filter.text.clone(),
                ..filter.clone()
            } == self.filter;
            self.filter = filter;
            if text_only {
                self.text_due = Some(now + TEXT_PAUSE_SECS);
            } else {
                self.text_due = None;
                tx.send(ExecutionsCommand::SetTableFilter(self.filter.clone()));
            }
        }
        if let Some(due) = self.text_due {
            if now >= due {
                self.text_due = None;
                tx.send(ExecutionsCommand::SetTableFilter(self.filter.clone()));
            } else {
                ui.ctx()
                    .request_repaint_after(std::time::Duration::from_secs_f64(due - now));
            }
        }
    }

    /// The shown run's failures grouped by error type and message shape: each group's count, a jump
    /// to its first failure, a filter to it, and a redrive of it.
    fn failures_ui(&mut self, ui: &mut Ui, app: &App, tx: &CommandSender) {
        let groups = app.executions.failure_groups();
        if groups.is_empty() {
            return;
        }
        let dark = ui.visuals().dark_mode;
        let run = app
            .executions
            .shown_run_row()
            .filter(|r| r.status != RunStatus::Running && app.executions.history().is_some());
        ui.label(RichText::new("Failures, grouped").small().strong());
        for group in groups.iter().take(SHOWN_GROUPS) {
            ui.horizontal(|ui| {
                let filtered = self.filter.failure_group.as_deref() == Some(&group.shape);
                let text = RichText::new(format!(
                    "{} × {}",
                    truncate(&group.example, 60),
                    crate::text::count(group.count)
                ))
                .color(theme::error_color(dark));
                if ui
                    .selectable_label(filtered, text)
                    .on_hover_text(format!(
                        "Only these failures in the table (click again for all)\n{}",
                        group.shape
                    ))
                    .clicked()
                {
                    self.filter.failure_group = (!filtered).then(|| group.shape.clone());
                    tx.send(ExecutionsCommand::SetTableFilter(self.filter.clone()));
                }
                // Every group's buttons read the same; a screen reader names the group too.
                let named = |response: egui::Response, what: &str| {
                    let name = format!(
                        "{what}: {} × {}",
                        group.example,
                        crate::text::count(group.count)
                    );
                    response.widget_info(|| {
                        egui::WidgetInfo::labeled(egui::WidgetType::Button, true, &name)
                    });
                    response
                };
                let first = ui
                    .small_button("first")
                    .on_hover_text("Pick the first invocation that failed this way");
                if named(first, "first").clicked() {
                    tx.send(ExecutionsCommand::Pick(group.first));
                }
                if let Some(run) = &run
                    && named(
                        ui.small_button("↻ redrive").on_hover_text(
                            "Run these failed items again with the blocks' current code; \
                             everything else keeps its result",
                        ),
                        "↻ redrive",
                    )
                    .clicked()
                {
                    tx.send(ExecutionsCommand::Redrive {
                        run: run.run_id.clone(),
                        group: Some(group.shape.clone()),
                    });
                }
            });
        }
        if groups.len() > SHOWN_GROUPS {
            ui.label(
                RichText::new(format!(
                    "and {} more kinds of failure",
                    groups.len() - SHOWN_GROUPS
                ))
                .small()
                .weak(),
            );
        }
    }

    fn table_ui(&mut self, ui: &mut Ui, app: &App, tx: &CommandSender) {
        let executions = &app.executions;
        let Some(run) = executions.shown() else {
            ui.horizontal(|ui| {
                if executions.is_loading() {
                    ui.spinner();
                }
                ui.label(RichText::new("Reading the run from the history…").weak());
            });
            return;
        };
        let visible = &executions.visible;
        // A click anywhere on a row picks it; selectable labels would take the click for themselves.
        ui.style_mut().interaction.selectable_labels = false;
        ui.horizontal(|ui| {
            ui.label(
                RichText::new(format!(
                    "{} of {}",
                    crate::text::count(visible.len() as u64),
                    crate::text::plural(run.rows.len() as u64, "invocation")
                ))
                .small()
                .weak(),
            );
            if let Some(cluster) = run.row.executor.cluster() {
                ui.label(
                    RichText::new(format!("· ran on the Dask cluster at {cluster}"))
                        .small()
                        .weak(),
                );
            }
            if executions.is_searching() {
                ui.spinner();
                ui.label(RichText::new("searching the history…").small().weak());
            }
            if let Some(of) = &run.row.redrive_of {
                ui.label(
                    RichText::new(format!("a redrive of {}", truncate(&of.0, 8)))
                        .small()
                        .weak(),
                )
                .on_hover_text(format!(
                    "This run ran the failed items of run {of} again; the rest was carried over"
                ));
            }
            if redrivable(&run.row) && executions.history().is_some() {
                let response = ui.small_button("↻ Redrive failed items").on_hover_text(
                    "Run this run's failed items (and what follows them) again with the \
                         blocks' current code; what succeeded keeps its recorded result",
                );
                if response.clicked() {
                    tx.send(ExecutionsCommand::Redrive {
                        run: run.row.run_id.clone(),
                        group: None,
                    });
                }
            }
        });
        let picked = executions.picked.as_ref().map(|p| p.id);
        let lineage = executions.picked.as_ref().map(|p| &p.lineage);
        let dark = ui.visuals().dark_mode;
        let all_blocks = app.selection.single_block().is_none();
        // Which Dask worker ran each invocation, for a run on a cluster.
        let on_cluster = run.row.executor.cluster().is_some();
        // Room for the items' labels when a fan-out names its items; the path alone otherwise.
        let names_items = app
            .project
            .transitions
            .iter()
            .any(crate::model::Transition::names_items);
        let item_column = if names_items {
            Column::initial(96.0).at_least(64.0).clip(true)
        } else {
            Column::exact(64.0)
        };
        let mut table = TableBuilder::new(ui)
            .id_salt("executions-table")
            .striped(true)
            .sense(egui::Sense::click())
            .auto_shrink([false, false])
            // The table scrolls in whatever height the panel has (egui_extras' default keeps 200 px,
            // which grew the panel over the canvas on a small window).
            .min_scrolled_height(0.0)
            .column(Column::exact(54.0))
            .columns(
                Column::auto().at_least(60.0).clip(true),
                usize::from(all_blocks),
            )
            .column(item_column)
            .column(Column::exact(24.0))
            .column(Column::exact(112.0))
            .column(Column::exact(64.0))
            .columns(
                Column::auto().at_least(90.0).clip(true),
                usize::from(on_cluster),
            )
            .column(Column::remainder().clip(true));
        if picked != self.scrolled_to {
            self.scrolled_to = picked;
            if let Some(row) = picked
                .and_then(|id| run.position_of(id))
                .and_then(|p| visible.iter().position(|&i| i == p))
            {
                table = table.scroll_to_row(row, Some(Align::Center));
            }
        }
        table
            .header(ROW_HEIGHT, |mut header| {
                header.col(|ui| {
                    ui.strong("#");
                });
                if all_blocks {
                    header.col(|ui| {
                        ui.strong("block");
                    });
                }
                for title in ["item", "try", "status", "duration"] {
                    header.col(|ui| {
                        ui.strong(title);
                    });
                }
                if on_cluster {
                    header.col(|ui| {
                        ui.strong("worker");
                    });
                }
                header.col(|ui| {
                    ui.strong("input / error");
                });
            })
            .body(|body| {
                // Only the rows in view are laid out: a million rows cost what thirty do.
                body.rows(ROW_HEIGHT, visible.len(), |mut row| {
                    let Some(data) = visible.get(row.index()).and_then(|&i| run.rows.get(i)) else {
                        return;
                    };
                    row.set_selected(picked == Some(data.id));
                    let on_path = lineage.is_some_and(|l| l.contains(&data.id));
                    row.col(|ui| {
                        let mut text = RichText::new(format!("#{}", data.id)).monospace().weak();
                        if on_path {
                            text = text.strong();
                        }
                        ui.label(text);
                    });
                    if all_blocks {
                        row.col(|ui| {
                            ui.add(
                                egui::Label::new(super::block_label(
                                    app,
                                    &data.block_id,
                                    &data.block_name,
                                ))
                                .truncate(),
                            );
                        });
                    }
                    row.col(|ui| {
                        // The path, then the item's label (its key when it has none of its own).
                        ui.horizontal(|ui| {
                            ui.spacing_mut().item_spacing.x = 4.0;
                            ui.label(RichText::new(item_path(&data.item_path)).monospace());
                            if let Some(item) = &data.item {
                                ui.add(
                                    egui::Label::new(RichText::new(item.shown()).strong())
                                        .truncate(),
                                );
                            }
                        });
                    });
                    row.col(|ui| {
                        ui.label(data.attempt.to_string());
                    });
                    row.col(|ui| {
                        let text = if data.carried {
                            "carried over"
                        } else {
                            data.status.label()
                        };
                        ui.label(RichText::new(text).color(theme::status_color(data.status, dark)));
                    });
                    row.col(|ui| {
                        ui.label(data.duration_ms().map_or_else(String::new, duration_ms));
                    });
                    if on_cluster {
                        row.col(|ui| {
                            let worker = data.worker.as_deref().unwrap_or("");
                            // The host and port tell workers apart; the scheme is the same for all.
                            let short = worker.split_once("://").map_or(worker, |(_, rest)| rest);
                            ui.add(egui::Label::new(RichText::new(short).monospace()).truncate())
                                .on_hover_text(worker);
                        });
                    }
                    row.col(|ui| {
                        let text = data.error_summary.as_ref().map_or_else(
                            || RichText::new(&data.input_preview).monospace(),
                            |e| RichText::new(e).color(theme::error_color(dark)),
                        );
                        ui.add(egui::Label::new(text).truncate().selectable(false));
                    });
                    let response = row.response();
                    if response.clicked() {
                        // A focused row would take the arrow keys for focus moves, and the
                        // editor's shortcuts: the panel's keys should work instead.
                        response.surrender_focus();
                        tx.send(ExecutionsCommand::Pick(data.id));
                    }
                });
            });
    }
}

/// The panel's keys: rows with ↑↓ / j k, start order with Shift, the item's path with ← → / h l.
fn keys(ui: &Ui, tx: &CommandSender) {
    // Only typing takes the keys: a clicked (focused) row or button must not.
    if ui.ctx().text_edit_focused() {
        return;
    }
    // Shift first: `consume_key` ignores an extra Shift, so plain keys would take those presses.
    let steps = [
        (Modifiers::SHIFT, Key::ArrowDown, Step::NextStarted),
        (Modifiers::SHIFT, Key::ArrowUp, Step::PreviousStarted),
        (Modifiers::SHIFT, Key::J, Step::NextStarted),
        (Modifiers::SHIFT, Key::K, Step::PreviousStarted),
        (Modifiers::NONE, Key::ArrowDown, Step::NextRow),
        (Modifiers::NONE, Key::ArrowUp, Step::PreviousRow),
        (Modifiers::NONE, Key::J, Step::NextRow),
        (Modifiers::NONE, Key::K, Step::PreviousRow),
        (Modifiers::NONE, Key::ArrowLeft, Step::Parent),
        (Modifiers::NONE, Key::H, Step::Parent),
        (Modifiers::NONE, Key::ArrowRight, Step::Child),
        (Modifiers::NONE, Key::L, Step::Child),
    ];
    for (modifiers, key, step) in steps {
        if ui.ctx().input_mut(|i| i.consume_key(modifiers, key)) {
            tx.send(ExecutionsCommand::Step(step));
        }
    }
}

fn runs_ui(
    ui: &mut Ui,
    app: &App,
    runs: &[RunRow],
    keep_edit: &mut Option<usize>,
    tx: &CommandSender,
) {
    let dark = ui.visuals().dark_mode;
    let shown = app.executions.shown_run_id();
    ui.horizontal(|ui| {
        ui.strong(format!("Runs ({})", runs.len()));
        let pinned = app.executions.pinned;
        let hover = if pinned {
            "Pinned: a new run does not replace this one here. Click to follow the newest run again"
        } else {
            "Pin the shown run: a new run then does not replace it here (unpinned, the panel and the \
             canvas follow the newest run)"
        };
        if ui
            .selectable_label(pinned, "Pin")
            .on_hover_text(hover)
            .clicked()
        {
            tx.send(ExecutionsCommand::PinRun(!pinned));
        }
        if app.executions.history().is_none() {
            ui.label(RichText::new("· this session").small().weak())
                .on_hover_text("Save the project to keep its runs between sessions");
        } else {
            let mut keep = keep_edit.unwrap_or(app.executions.keep_runs);
            let response = ui
                .add(
                    egui::DragValue::new(&mut keep)
                        .range(1..=10_000)
                        .prefix("keep ")
                        .speed(1.0),
                )
                .on_hover_text("The history keeps this many runs; older ones are deleted");
            // Applied when the user lets go or stops typing: deleting runs mid-drag would be rash.
            if response.changed() {
                *keep_edit = Some(keep);
            }
            if !response.dragged()
                && !response.has_focus()
                && let Some(keep) = keep_edit.take()
                && keep != app.executions.keep_runs
            {
                tx.send(ExecutionsCommand::SetKeepRuns(keep));
            }
        }
    });
    egui::ScrollArea::vertical()
        .id_salt("executions-runs")
        .auto_shrink([false, false])
        .show_rows(ui, 38.0, runs.len(), |ui, range| {
            for run in &runs[range] {
                let selected = shown.as_ref() == Some(&run.run_id);
                let (mark, color) = run_status_look(run.status, dark);
                let response = ui
                    .push_id(&run.run_id, |ui| {
                        ui.selectable_label(
                            selected,
                            RichText::new(format!(
                                "{mark} {}  {}",
                                clock_time(run.started_at_ms),
                                match (run.duration_ms, run.status) {
                                    (Some(ms), _) => duration_ms(ms),
                                    (None, RunStatus::Interrupted) => "interrupted".to_owned(),
                                    (None, _) => "…".to_owned(),
                                }
                            ))
                            .color(color),
                        )
                    })
                    .inner;
                let response = if run.status == RunStatus::Interrupted {
                    response.on_hover_text(
                        "Braid stopped (it was killed or crashed, or the machine stopped) before \
                         this run ended. The invocations recorded until then are kept.",
                    )
                } else {
                    response
                };
                let mut parts: Vec<String> = run
                    .counts
                    .by_status()
                    .into_iter()
                    .filter(|(status, n)| *n > 0 || *status == InvocationStatus::Succeeded)
                    .map(|(status, n)| format!("{} {}", crate::text::count(n), status.label()))
                    .collect();
                if let Some(cluster) = run.executor.cluster() {
                    parts.push(format!("on {cluster}"));
                }
                ui.label(RichText::new(parts.join(" · ")).small().weak());
                if response.clicked() {
                    tx.send(ExecutionsCommand::ShowRun(Some(run.run_id.clone())));
                }
                if let Some(of) = &run.redrive_of {
                    response
                        .clone()
                        .on_hover_text(format!("A redrive of run {of}"));
                }
                response.context_menu(|ui| {
                    if ui.button("Pin this run").clicked() {
                        tx.send(ExecutionsCommand::ShowRun(Some(run.run_id.clone())));
                        tx.send(ExecutionsCommand::PinRun(true));
                        ui.close();
                    }
                    if redrivable(run)
                        && app.executions.history().is_some()
                        && ui.button("Redrive failed items").clicked()
                    {
                        tx.send(ExecutionsCommand::Redrive {
                            run: run.run_id.clone(),
                            group: None,
                        });
                        ui.close();
                    }
                    if run.status != RunStatus::Running && ui.button("Delete run").clicked() {
                        tx.send(ExecutionsCommand::DeleteRun(run.run_id.clone()));
                        ui.close();
                    }
                    if ui.button("Copy run id").clicked() {
                        ui.ctx().copy_text(run.run_id.0.to_string());
                        ui.close();
                    }
                });
            }
        });
}

/// Whether a run has something a redrive would do: it ended without succeeding.
fn redrivable(run: &RunRow) -> bool {
    matches!(
        run.status,
        RunStatus::Failed | RunStatus::Cancelled | RunStatus::Interrupted
    )
}

fn run_status_look(status: RunStatus, dark: bool) -> (&'static str, egui::Color32) {
    match status {
        RunStatus::Running => ("●", theme::status_color(InvocationStatus::Running, dark)),
        RunStatus::Succeeded => ("✔", theme::success_color(dark)),
        RunStatus::Failed => ("✖", theme::error_color(dark)),
        RunStatus::Cancelled => ("■", theme::status_color(InvocationStatus::Cancelled, dark)),
        RunStatus::Interrupted => (
            "⚠",
            theme::severity_color(crate::ui::Severity::Warning, dark),
        ),
    }
}

fn order_label(order: RowOrder) -> &'static str {
    match order {
        RowOrder::Id => "in order created",
        RowOrder::Started => "by start time",
        RowOrder::DurationDescending => "slowest first",
        RowOrder::DurationAscending => "fastest first",
    }
}
