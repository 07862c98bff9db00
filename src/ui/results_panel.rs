//! The bottom panel: the current run's progress, then its results and failures.
//!
//! Tabs: the results, the failures, the Block Executions panel, the timeline and the run's log (what it
//! printed outside its invocations).

use std::fmt::Write as _;

use egui::{RichText, Ui};

use super::executions_panel::ExecutionsPanel;
use super::theme;
use super::timeline::TimelineView;
use crate::app::run::{LogLine, LogSource, RunPhase, RunState};
use crate::app::{App, CommandSender, ExecutionsCommand, RunCommand, Select};
use crate::model::BlockId;
use crate::run::{InvocationId, InvocationStatus, RunFailure, RunResult, RunRow, RunStatus};
use crate::text::{clock_time, item_path, truncate};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Tab {
    #[default]
    Results,
    Failures,
    Executions,
    Timeline,
    Log,
}

#[derive(Default)]
pub struct ResultsPanel {
    pub tab: Tab,
    /// The run whose failures tab was chosen automatically (once per run).
    auto_switched: Option<String>,
    pub executions: ExecutionsPanel,
    pub timeline: TimelineView,
}

const ROW_HEIGHT: f32 = 20.0;
/// Room for "in 12.3 s · 1000 invocations" in the status line.
const DURATION_SLOT: f32 = 190.0;

impl ResultsPanel {
    pub fn show_ui(&mut self, ui: &mut Ui, app: &App, tx: &CommandSender) {
        if let Some(run) = &app.run {
            status_line_ui(ui, run, tx);
            ui.separator();
        }
        let summary = app.run.as_ref().and_then(|run| match &run.phase {
            RunPhase::Finished(summary) => Some((run, summary)),
            _ => None,
        });
        // Each run that ends chooses between Results and Failures once: a failed run opens on its
        // failures, a run with none leaves the Failures tab for its results. The user's choice of tab
        // wins after that, and Block Executions, Timeline and Log are never taken away.
        if let Some((run, summary)) = summary
            && self.auto_switched.as_deref() != Some(&*run.run_id.0)
        {
            self.auto_switched = Some(run.run_id.0.to_string());
            let failed = !summary.failures.is_empty() && summary.results.is_empty();
            match self.tab {
                Tab::Results if failed => self.tab = Tab::Failures,
                Tab::Failures if summary.failures.is_empty() => self.tab = Tab::Results,
                _ => {}
            }
        }
        ui.horizontal(|ui| {
            let (results, failures) = summary.map_or((None, None), |(_, s)| {
                (Some(s.results.len()), Some(s.failures.len()))
            });
            let count = |title: &str, n: Option<usize>| {
                n.map_or_else(
                    || title.to_owned(),
                    |n| format!("{title} ({})", crate::text::count(n as u64)),
                )
            };
            ui.selectable_value(&mut self.tab, Tab::Results, count("Results", results));
            ui.selectable_value(&mut self.tab, Tab::Failures, count("Failures", failures));
            ui.selectable_value(&mut self.tab, Tab::Executions, "Block Executions")
                .on_hover_text(
                    "Every invocation of every run: input, output, printed output, errors",
                );
            ui.selectable_value(&mut self.tab, Tab::Timeline, "Timeline")
                .on_hover_text("The shown run's invocations on a time axis");
            let lines = app.shown_log().map_or(0, <[LogLine]>::len);
            let title = if lines == 0 {
                "Log".to_owned()
            } else {
                format!("Log ({})", crate::text::count(lines as u64))
            };
            ui.selectable_value(&mut self.tab, Tab::Log, title)
                .on_hover_text(
                    "What the run Block Executions shows printed outside its invocations: pip \
                     installing the libraries, and what the workers wrote themselves",
                );
        });
        match self.tab {
            Tab::Executions => return self.executions.show_ui(ui, app, tx),
            Tab::Timeline => return self.timeline.show_ui(ui, app, tx),
            Tab::Log => {
                // Which run this is: the log follows the run Block Executions shows, not the newest.
                if let Some(row) = app.executions.shown_run_row() {
                    ui.label(RichText::new(log_title(&row)).small().weak())
                        .on_hover_text(
                            "The run Block Executions shows: pick another in its Runs list",
                        );
                }
                if let Some(log) = app.shown_log() {
                    log_ui(ui, log);
                } else {
                    ui.add_space(6.0);
                    ui.label(RichText::new("Run the pipeline to see its log here.").weak());
                }
                return;
            }
            Tab::Results | Tab::Failures => {}
        }
        let Some(run) = &app.run else {
            ui.add_space(6.0);
            ui.label(
                RichText::new("Run the pipeline (Ctrl+Enter, or ▶ Run) to see its results here.")
                    .weak(),
            );
            return;
        };
        match &run.phase {
            RunPhase::Finished(summary) => match self.tab {
                Tab::Failures => {
                    if let Some((block_id, id)) = failures_ui(ui, app, &summary.failures) {
                        // The failed invocation in Block Executions: its input, backpack and
                        // traceback, with its block selected so that its code is beside them.
                        tx.send(Select::Blocks(vec![block_id]));
                        tx.send(ExecutionsCommand::ShowRun(Some(run.run_id.clone())));
                        tx.send(ExecutionsCommand::Pick(id));
                        self.tab = Tab::Executions;
                    }
                }
                _ => results_ui(ui, &summary.results),
            },
            RunPhase::Refused {
                message,
                compile_errors,
            } => {
                let dark = ui.visuals().dark_mode;
                // The message lists the code's problems too (for `braid run`): each once here.
                let headline = if compile_errors.is_empty() {
                    message.as_str()
                } else {
                    message.lines().next().unwrap_or_default()
                };
                ui.label(RichText::new(headline).color(theme::error_color(dark)));
                if !compile_errors.is_empty() {
                    ui.indent("compile errors", |ui| {
                        for error in compile_errors {
                            ui.label(
                                RichText::new(error.to_string()).color(theme::error_color(dark)),
                            );
                        }
                    });
                }
            }
            RunPhase::Starting | RunPhase::Running | RunPhase::Stopping => {
                ui.label(RichText::new("Results appear when the run ends.").weak());
            }
        }
    }
}

fn status_line_ui(ui: &mut Ui, run: &RunState, tx: &CommandSender) {
    let dark = ui.visuals().dark_mode;
    let totals = run.totals();
    ui.horizontal(|ui| {
        match &run.phase {
            RunPhase::Starting => {
                ui.spinner();
                match &run.preparing {
                    Some(line) => ui.label(format!("Installing the project's libraries: {line}")),
                    None => ui.label("Compiling…"),
                };
            }
            RunPhase::Running | RunPhase::Stopping => {
                ui.spinner();
                let done = totals.finished();
                let total = totals.total().max(1);
                ui.add(
                    egui::ProgressBar::new(done as f32 / total as f32)
                        .desired_width(240.0)
                        .text(format!(
                            "{} / {}",
                            crate::text::count(done),
                            crate::text::plural(totals.total(), "invocation")
                        )),
                );
                let label = if run.phase == RunPhase::Stopping {
                    "Stopping…"
                } else {
                    "■ Stop"
                };
                if ui
                    .add_enabled(run.phase == RunPhase::Running, egui::Button::new(label))
                    .clicked()
                {
                    tx.send(RunCommand::Stop);
                }
            }
            RunPhase::Finished(summary) => {
                let (text, color) = match summary.status {
                    RunStatus::Succeeded => ("✔ Succeeded", theme::success_color(dark)),
                    RunStatus::Failed => ("✖ Failed", theme::error_color(dark)),
                    RunStatus::Cancelled => (
                        "■ Cancelled",
                        theme::status_color(InvocationStatus::Cancelled, dark),
                    ),
                    RunStatus::Running => ("Running", ui.visuals().text_color()),
                    RunStatus::Interrupted => (
                        "⚠ Interrupted",
                        theme::severity_color(crate::ui::Severity::Warning, dark),
                    ),
                };
                ui.label(RichText::new(text).strong().color(color));
                let width = ui
                    .label(format!(
                        "in {} · {}",
                        crate::text::duration_ms(summary.duration_ms),
                        crate::text::plural(summary.invocations, "invocation")
                    ))
                    .rect
                    .width();
                // A slot of fixed width: the counts after it stay put whatever the duration reads.
                ui.add_space((DURATION_SLOT - width).max(0.0));
            }
            RunPhase::Refused { .. } => {
                ui.label(
                    RichText::new("✖ The run did not start")
                        .strong()
                        .color(theme::error_color(dark)),
                );
            }
        }
        if totals.total() > 0 {
            counts_ui(ui, run, dark);
        }
        if let Some(cluster) = run.executor.cluster() {
            ui.label(
                RichText::new(format!("on the Dask cluster at {cluster}"))
                    .small()
                    .weak(),
            );
        }
    });
}

fn counts_ui(ui: &mut Ui, run: &RunState, dark: bool) {
    let totals = run.totals();
    ui.separator();
    for (status, n) in totals.by_status() {
        if n > 0 {
            ui.label(
                RichText::new(format!("{} {}", crate::text::count(n), status.label()))
                    .color(theme::status_color(status, dark)),
            )
            .on_hover_text(status.description());
        }
    }
}

fn results_ui(ui: &mut Ui, results: &[RunResult]) {
    if results.is_empty() {
        ui.label(RichText::new("The run produced no results (no leaf block finished).").weak());
        return;
    }
    // Only the visible rows are laid out, so a 10,000-result run scrolls smoothly.
    egui::ScrollArea::vertical()
        .id_salt("results-scroll")
        .auto_shrink([false, false])
        .show_rows(ui, ROW_HEIGHT, results.len(), |ui, rows| {
            for result in &results[rows] {
                ui.horizontal(|ui| {
                    ui.add_sized(
                        [140.0, ROW_HEIGHT],
                        egui::Label::new(RichText::new(truncate(&result.block, 20)).strong())
                            .truncate(),
                    );
                    ui.add_sized(
                        [70.0, ROW_HEIGHT],
                        egui::Label::new(RichText::new(item_path(&result.item_path)).weak()),
                    );
                    let text = result.output.to_string();
                    if ui
                        .small_button("Copy")
                        .on_hover_text("Copy the value as JSON")
                        .clicked()
                    {
                        ui.ctx().copy_text(text.clone());
                    }
                    // One tooltip: the label's own (shown when it is cut) would repeat ours.
                    ui.add(
                        egui::Label::new(theme::code_text(truncate(&text, 400)))
                            .truncate()
                            .show_tooltip_when_elided(false),
                    )
                    .on_hover_text(theme::code_text(truncate(&text, 4000)));
                });
            }
        });
}

/// "Log of the run started 20:15:20 (succeeded)".
pub fn log_title(row: &RunRow) -> String {
    format!(
        "Log of the run started {} ({})",
        clock_time(row.started_at_ms),
        row.status.label()
    )
}

/// The run's log: pip's output, then what workers wrote outside any one invocation's printed output,
/// each line with where it came from.
fn log_ui(ui: &mut Ui, log: &[LogLine]) {
    if log.is_empty() {
        ui.add_space(6.0);
        ui.label(
            RichText::new(
                "Nothing was printed outside the invocations. This is where pip's output goes while \
                 the project's libraries install, and what a worker writes itself: C code writing to \
                 the process's output, a thread printing after its invocation ended.",
            )
            .weak(),
        );
        return;
    }
    let source = |line: &LogLine| match line.source {
        LogSource::Install => "pip".to_owned(),
        LogSource::Worker(n) => format!("worker {n}"),
    };
    if ui
        .small_button("Copy")
        .on_hover_text("Copy the whole log")
        .clicked()
    {
        let mut text = String::new();
        for line in log {
            let _ = writeln!(text, "{}: {}", source(line), line.text);
        }
        ui.ctx().copy_text(text);
    }
    egui::ScrollArea::vertical()
        .id_salt("log-scroll")
        .auto_shrink([false, false])
        .stick_to_bottom(true)
        .show_rows(ui, ROW_HEIGHT, log.len(), |ui, rows| {
            for line in &log[rows] {
                ui.horizontal(|ui| {
                    ui.add_sized(
                        [70.0, ROW_HEIGHT],
                        egui::Label::new(RichText::new(source(line)).weak()),
                    );
                    ui.add(
                        egui::Label::new(theme::code_text(truncate(&line.text, 1000)))
                            .truncate()
                            .show_tooltip_when_elided(false),
                    )
                    .on_hover_text(theme::code_text(truncate(&line.text, 4000)));
                });
            }
        });
}

/// One line per failure (its traceback folds out under the ▸); a failure of one invocation links to
/// it in Block Executions. Returns the block and invocation whose link was clicked.
fn failures_ui(ui: &mut Ui, app: &App, failures: &[RunFailure]) -> Option<(BlockId, InvocationId)> {
    if failures.is_empty() {
        ui.label(RichText::new("No failures.").weak());
        return None;
    }
    let dark = ui.visuals().dark_mode;
    let mut clicked = None;
    egui::ScrollArea::vertical()
        .id_salt("failures-scroll")
        .auto_shrink([false, false])
        .show(ui, |ui| {
            // Tracebacks make rows of different heights, so at most the first 500 are listed.
            for (i, failure) in failures.iter().take(500).enumerate() {
                let mut row = |ui: &mut Ui| {
                    let place =
                        failure.place(&super::block_label(app, &failure.block_id, &failure.block));
                    match failure.invocation {
                        Some(id) => {
                            if ui
                                .link(RichText::new(place).strong())
                                .on_hover_text(
                                    "Show this invocation in Block Executions: its input, \
                                     backpack, printed output and traceback",
                                )
                                .clicked()
                            {
                                clicked = Some((failure.block_id.clone(), id));
                            }
                        }
                        None => {
                            ui.label(RichText::new(place).strong());
                        }
                    }
                    ui.label(RichText::new(failure.status_label()).color(theme::error_color(dark)));
                    ui.add(
                        egui::Label::new(truncate(&failure.error, 300))
                            .truncate()
                            .show_tooltip_when_elided(false),
                    )
                    .on_hover_text(&failure.error);
                };
                match &failure.traceback {
                    Some(traceback) => {
                        let id = ui.make_persistent_id(("traceback", i));
                        egui::collapsing_header::CollapsingState::load_with_default_open(
                            ui.ctx(),
                            id,
                            false,
                        )
                        .show_header(ui, row)
                        .body(|ui| {
                            ui.label(theme::code_text(traceback));
                        });
                    }
                    None => {
                        ui.horizontal(|ui| {
                            // Lined up with the rows that have a ▸.
                            ui.add_space(ui.spacing().indent);
                            row(ui);
                        });
                    }
                }
            }
            if failures.len() > 500 {
                ui.label(
                    RichText::new(format!(
                        "… and {} more: Block Executions lists them all (filter on failed)",
                        crate::text::count((failures.len() - 500) as u64)
                    ))
                    .weak(),
                );
            }
        });
    clicked
}
