//! One invocation in full: where it sits (block, item, attempt, times), where it came from and what it
//! led to, its input and backpacks and return value as collapsible JSON trees, what it printed, its
//! error with a traceback whose lines open the code, and a replay with the block's current code.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use egui::{RichText, Ui};
use serde_json::Value;

use super::theme;
use crate::app::executions::{Picked, ReplayPhase};
use crate::app::{App, CommandSender, ExecutionsCommand, Select, Step};
use crate::model::{BlockId, Project};
use crate::run::{InvocationId, InvocationRecord, ItemChange, ItemDiff, item_diff};
use crate::text::{clock_time, duration_ms, item_path, plural, truncate};

/// Children of an array or object shown before "show all".
const SHOWN_CHILDREN: usize = 100;
/// Characters of a string (or printed output) shown before "show all".
const SHOWN_CHARS: usize = 2_000;
/// Parents and children listed by name (a fan-in has one parent per item).
const SHOWN_LINKS: usize = 12;

#[derive(Default)]
pub struct InvocationDetail {
    /// Values the user asked to see in full (by their tree path).
    show_all: BTreeSet<String>,
    /// The invocation those choices were made for.
    shown_for: Option<InvocationId>,
}

impl InvocationDetail {
    pub fn show_ui(&mut self, ui: &mut Ui, app: &App, tx: &CommandSender) {
        let Some(picked) = &app.executions.picked else {
            ui.add_space(6.0);
            ui.label(
                RichText::new(
                    "Pick an invocation in the table to see its input, output, printed output and \
                     error. Up and Down (or j and k) step through the table; Left and Right (or h and \
                     l) follow the item.",
                )
                .weak(),
            );
            return;
        };
        if self.shown_for != Some(picked.id) {
            self.shown_for = Some(picked.id);
            self.show_all.clear();
        }
        navigation_ui(ui, picked, tx);
        let Some(record) = &picked.record else {
            ui.label(
                RichText::new(
                    "This invocation's full record is not kept (only the newest 200,000 are held in \
                     memory). Save the project to keep every record in its history.",
                )
                .weak(),
            );
            return;
        };
        egui::ScrollArea::vertical()
            .id_salt("invocation-detail")
            .auto_shrink([false, false])
            .show(ui, |ui| {
                header_ui(ui, app, record);
                links_ui(ui, app, picked, record, tx);
                Self::replay_ui(ui, app, record, tx);
                ui.separator();
                if let Some(error) = &record.error {
                    section_label(ui, "Error");
                    ui.label(
                        RichText::new(error.summary())
                            .strong()
                            .color(theme::error_color(ui.visuals().dark_mode)),
                    );
                    traceback_ui(ui, app, &error.traceback, tx);
                }
                self.value_ui(ui, "Input", Some(&record.input));
                self.value_ui(ui, "Backpack in", Some(&record.backpack_in));
                self.value_ui(ui, "Return value", record.output.as_ref());
                self.value_ui(ui, "Backpack out", record.backpack_out.as_deref());
                self.printed_ui(ui, "stdout", &record.stdout);
                self.printed_ui(ui, "stderr", &record.stderr);
                if !record.fired.is_empty() {
                    section_label(ui, "Transitions fired");
                    for t in &record.fired {
                        let text = app.project.transition(t).map_or_else(
                            || format!("{t} (no longer in the project)"),
                            |t| format!("{} to {}", t.kind.label(), app.project.block_name(&t.to)),
                        );
                        ui.label(RichText::new(text).small());
                    }
                }
            });
    }

    fn value_ui(&mut self, ui: &mut Ui, title: &str, value: Option<&Value>) {
        ui.horizontal(|ui| {
            section_label(ui, title);
            if let Some(value) = value
                && ui
                    .small_button("Copy")
                    .on_hover_text("Copy as JSON")
                    .clicked()
            {
                ui.ctx()
                    .copy_text(serde_json::to_string_pretty(value).unwrap_or_default());
            }
        });
        match value {
            None => {
                ui.label(RichText::new("none").weak().small());
            }
            Some(value) => {
                ui.push_id(title, |ui| self.json_ui(ui, title, None, value, 0));
            }
        }
    }

    /// A JSON value as a tree: objects and arrays collapse (open near the top), long ones and long
    /// strings are cut with "show all".
    fn json_ui(&mut self, ui: &mut Ui, path: &str, key: Option<&str>, value: &Value, depth: usize) {
        let prefix = key.map_or_else(String::new, |k| format!("{k}: "));
        match value {
            Value::Object(map) if !map.is_empty() => {
                let header = format!("{prefix}{{…}} {}", plural(map.len() as u64, "key"));
                self.container_ui(ui, path, &header, value, depth, map.len(), |this, ui, n| {
                    for (k, v) in map.iter().take(n) {
                        this.json_ui(ui, &format!("{path}.{k}"), Some(k), v, depth + 1);
                    }
                });
            }
            Value::Array(items) if !items.is_empty() => {
                let header = format!("{prefix}[…] {}", plural(items.len() as u64, "item"));
                self.container_ui(
                    ui,
                    path,
                    &header,
                    value,
                    depth,
                    items.len(),
                    |this, ui, n| {
                        for (i, v) in items.iter().take(n).enumerate() {
                            this.json_ui(
                                ui,
                                &format!("{path}[{i}]"),
                                Some(&i.to_string()),
                                v,
                                depth + 1,
                            );
                        }
                    },
                );
            }
            leaf => {
                let text = leaf.to_string();
                let full = self.show_all.contains(path);
                let shown = if full {
                    text.clone()
                } else {
                    truncate(&text, SHOWN_CHARS)
                };
                ui.horizontal_wrapped(|ui| {
                    ui.label(theme::code_text(format!("{prefix}{shown}")));
                    if !full
                        && shown.len() < text.len()
                        && ui
                            .small_button(format!("show all ({} chars)", text.chars().count()))
                            .clicked()
                    {
                        self.show_all.insert(path.to_owned());
                    }
                });
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn container_ui(
        &mut self,
        ui: &mut Ui,
        path: &str,
        header: &str,
        value: &Value,
        depth: usize,
        len: usize,
        children: impl FnOnce(&mut Self, &mut Ui, usize),
    ) {
        let response = egui::CollapsingHeader::new(theme::code_text(header))
            .id_salt(path)
            .default_open(depth < 2)
            .show(ui, |ui| {
                let full = self.show_all.contains(path);
                let n = if full { len } else { len.min(SHOWN_CHILDREN) };
                children(self, ui, n);
                if n < len && ui.small_button(format!("show all {len}")).clicked() {
                    self.show_all.insert(path.to_owned());
                }
            });
        response.header_response.context_menu(|ui| {
            if ui.button("Copy as JSON").clicked() {
                ui.ctx()
                    .copy_text(serde_json::to_string_pretty(value).unwrap_or_default());
                ui.close();
            }
        });
    }

    fn printed_ui(&mut self, ui: &mut Ui, title: &str, text: &str) {
        if text.is_empty() {
            return;
        }
        ui.horizontal(|ui| {
            section_label(ui, &format!("Printed ({title})"));
            if ui.small_button("Copy").clicked() {
                ui.ctx().copy_text(text.to_owned());
            }
        });
        let full = self.show_all.contains(title);
        // As a terminal would show it (progress bars, colours); Copy gives the text as printed.
        let text = &*as_a_terminal_shows(text);
        let shown = if full {
            text.to_owned()
        } else {
            truncate(text, SHOWN_CHARS)
        };
        ui.label(theme::code_text(&shown));
        if !full && shown.len() < text.len() && ui.small_button("show all").clicked() {
            self.show_all.insert(title.to_owned());
        }
    }

    fn replay_ui(ui: &mut Ui, app: &App, record: &InvocationRecord, tx: &CommandSender) {
        let replay = app
            .executions
            .replay
            .as_ref()
            .filter(|r| r.original.run_id == record.run_id && r.original.id == record.id);
        ui.horizontal(|ui| {
            let running = replay.is_some_and(|r| r.phase == ReplayPhase::Running);
            if ui
                .add_enabled(!running, egui::Button::new("⟲ Replay"))
                .on_hover_text(
                    "Run this invocation again with its input and backpack and the block's current \
                     code; nothing upstream or downstream runs",
                )
                .clicked()
            {
                tx.send(ExecutionsCommand::Replay);
            }
            if running {
                ui.spinner();
            }
            if replay.is_some() && ui.small_button("Close replay").clicked() {
                tx.send(ExecutionsCommand::CloseReplay);
            }
        });
        let Some(replay) = replay else {
            return;
        };
        let dark = ui.visuals().dark_mode;
        match &replay.phase {
            ReplayPhase::Running => {}
            ReplayPhase::Refused(message) => {
                ui.label(
                    RichText::new(format!("The replay did not run: {message}"))
                        .color(theme::error_color(dark)),
                );
            }
            ReplayPhase::Done(new) => {
                let before = outcome_text(&replay.original);
                let after = outcome_text(new);
                ui.columns(2, |columns| {
                    let sides = [
                        ("Before", &replay.original, &before),
                        ("Replay (current code)", &**new, &after),
                    ];
                    for (ui, (title, record, text)) in columns.iter_mut().zip(sides) {
                        ui.label(RichText::new(title).strong());
                        ui.label(
                            RichText::new(record.status.label())
                                .color(theme::status_color(record.status, dark)),
                        );
                        wrapped_code_ui(ui, &truncate(text, SHOWN_CHARS));
                    }
                });
                if let Some(items) = item_diff(&replay.original, new) {
                    item_diff_ui(ui, &items);
                }
                section_label(ui, "Diff");
                let diff = if before == after {
                    ui.label(RichText::new("No difference.").weak());
                    Vec::new()
                } else {
                    line_diff(&before, &after)
                };
                for line in diff.iter().take(400) {
                    let (text, color) = match line {
                        DiffLine::Same(l) => (format!("  {l}"), ui.visuals().weak_text_color()),
                        DiffLine::Removed(l) => (format!("- {l}"), theme::error_color(dark)),
                        DiffLine::Added(l) => (format!("+ {l}"), theme::success_color(dark)),
                    };
                    ui.add(egui::Label::new(theme::code_text(text).color(color)).extend());
                }
                if !new.stdout.is_empty() || !new.stderr.is_empty() {
                    section_label(ui, "Replay printed");
                    ui.label(theme::code_text(truncate(
                        &as_a_terminal_shows(&format!("{}{}", new.stdout, new.stderr)),
                        SHOWN_CHARS,
                    )));
                }
            }
        }
    }
}

fn navigation_ui(ui: &mut Ui, picked: &Picked, tx: &CommandSender) {
    ui.horizontal_wrapped(|ui| {
        for (text, hover, step) in [
            ("⬆", "Previous row (Up or k)", Step::PreviousRow),
            ("⬇", "Next row (Down or j)", Step::NextRow),
            (
                "⏮",
                "Previous in start order (Shift+Up)",
                Step::PreviousStarted,
            ),
            ("⏭", "Next in start order (Shift+Down)", Step::NextStarted),
            (
                "⬅ came from",
                "The invocation this item came from (Left or h)",
                Step::Parent,
            ),
            (
                "led to ➡",
                "The first invocation it led to (Right or l)",
                Step::Child,
            ),
        ] {
            if ui.button(text).on_hover_text(hover).clicked() {
                tx.send(ExecutionsCommand::Step(step));
            }
        }
        ui.label(
            RichText::new(format!(
                "path: {}",
                plural(picked.lineage.len() as u64, "invocation")
            ))
            .small()
            .weak(),
        )
        .on_hover_text("Invocations on this item's path (highlighted on the canvas)");
    });
}

fn header_ui(ui: &mut Ui, app: &App, record: &InvocationRecord) {
    let dark = ui.visuals().dark_mode;
    ui.horizontal_wrapped(|ui| {
        let name = super::block_label(app, &record.block_id, &record.block_name);
        ui.label(RichText::new(name).strong().size(15.0));
        ui.label(RichText::new(format!("#{}", record.id)).monospace().weak());
        ui.label(format!("item {}", item_path(&record.item_path)));
        if let Some(name) = record.item_name() {
            if let Some(label) = name.label() {
                ui.label(RichText::new(label).strong());
            }
            ui.label(
                RichText::new(format!("key {:?}", name.key()))
                    .monospace()
                    .small(),
            )
            .on_hover_text(format!(
                "The item's key, outermost first: {}",
                record.item_key_path().join(" / ")
            ));
        }
        if record.attempt > 1 {
            ui.label(format!("attempt {}", record.attempt));
        }
        ui.label(
            RichText::new(record.status.label())
                .strong()
                .color(theme::status_color(record.status, dark)),
        );
    });
    let mut times = format!("queued {}", clock_time(record.queued_at_ms));
    if let Some(started) = record.started_at_ms {
        let _ = write!(
            times,
            " · waited {} · started {}",
            duration_ms(started - record.queued_at_ms),
            clock_time(started)
        );
    }
    if let Some(duration) = record.duration_ms() {
        let _ = write!(times, " · ran {}", duration_ms(duration));
    }
    if let Some(worker) = &record.worker {
        let _ = write!(times, " · on the Dask worker {worker}");
    }
    ui.label(RichText::new(times).small().weak());
    if let Some(from) = record.carried_from {
        ui.label(
            RichText::new(format!(
                "Carried over from invocation #{from} of the run this one redrove: it did not run \
                 again, its result is the one recorded then."
            ))
            .small()
            .weak(),
        );
    }
}

/// The invocations this one came from and led to, each a link.
fn links_ui(
    ui: &mut Ui,
    app: &App,
    picked: &Picked,
    record: &InvocationRecord,
    tx: &CommandSender,
) {
    let describe = |id: InvocationId| {
        app.executions
            .shown()
            .and_then(|run| run.row_of(id))
            .map_or_else(
                || format!("#{id}"),
                |row| {
                    let name = super::block_label(app, &row.block_id, &row.block_name);
                    if row.item_path.is_empty() {
                        name
                    } else {
                        format!("{name} {}", item_path(&row.item_path))
                    }
                },
            )
    };
    for (title, ids) in [
        ("came from", &record.parents[..]),
        ("led to", &picked.children[..]),
    ] {
        ui.horizontal_wrapped(|ui| {
            ui.label(RichText::new(title).small().weak());
            if ids.is_empty() {
                ui.label(RichText::new("nothing").small().weak());
            }
            for id in ids.iter().take(SHOWN_LINKS) {
                if ui.link(describe(*id)).clicked() {
                    tx.send(ExecutionsCommand::Follow(*id));
                }
            }
            if ids.len() > SHOWN_LINKS {
                ui.label(
                    RichText::new(format!("and {} more", ids.len() - SHOWN_LINKS))
                        .small()
                        .weak(),
                );
            }
        });
    }
}

/// Code-font text that stays in its column: long lines (a value's JSON has no spaces to break at) break
/// anywhere rather than run into the next column.
fn wrapped_code_ui(ui: &mut Ui, text: &str) {
    let mut job = egui::text::LayoutJob::single_section(
        text.to_owned(),
        egui::TextFormat::simple(
            egui::FontId::monospace(theme::CODE_SIZE),
            ui.visuals().text_color(),
        ),
    );
    job.wrap = egui::text::TextWrapping {
        max_width: ui.available_width(),
        break_anywhere: true,
        ..egui::text::TextWrapping::default()
    };
    ui.add(egui::Label::new(job));
}

/// The traceback, with each `File "<block>", line N` a link to that line of that block's code.
fn traceback_ui(ui: &mut Ui, app: &App, traceback: &str, tx: &CommandSender) {
    let frame_color = ui.visuals().extreme_bg_color;
    egui::Frame::new()
        .fill(frame_color)
        .inner_margin(6.0)
        .corner_radius(4.0)
        .show(ui, |ui| {
            // Lines never wrap, so the `^^^^` line sits under the code it points at; a long line
            // scrolls sideways.
            egui::ScrollArea::horizontal()
                .id_salt("traceback")
                .show(ui, |ui| traceback_lines_ui(ui, app, traceback, tx));
        });
}

fn traceback_lines_ui(ui: &mut Ui, app: &App, traceback: &str, tx: &CommandSender) {
    ui.vertical(|ui| {
        ui.spacing_mut().item_spacing.y = 1.0;
        for line in traceback.lines() {
            let target = traceback_location(line).and_then(|(file, n)| {
                block_for_file(&app.project, file).map(|block| (block.clone(), n))
            });
            match target {
                Some((block, n)) => {
                    let response = ui
                        .add(egui::Link::new(theme::code_text(line)))
                        .on_hover_text("Open this line of the block's code");
                    if response.clicked() {
                        tx.send(Select::CodeLine { block, line: n });
                    }
                }
                None => {
                    ui.add(egui::Label::new(theme::code_text(line)).extend());
                }
            }
        }
    });
}

fn section_label(ui: &mut Ui, title: &str) {
    ui.add_space(4.0);
    ui.label(
        RichText::new(title)
            .strong()
            .color(ui.visuals().strong_text_color()),
    );
}

/// Printed text as a terminal shows it: a carriage return goes back to the start of the line, so a
/// progress bar that redraws itself (tqdm) shows its last state rather than every one; escape
/// sequences (colours) are left out rather than shown as `[32m`.
fn as_a_terminal_shows(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.contains(['\r', '\u{1b}']) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut shown = String::with_capacity(text.len());
    let mut line: Vec<char> = Vec::new();
    let mut column = 0;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\r' => column = 0,
            '\n' => {
                shown.extend(line.drain(..));
                shown.push('\n');
                column = 0;
            }
            '\u{1b}' => {
                // CSI: ESC [ parameters… final byte in @..~; other escapes: ESC and one character.
                if chars.next_if_eq(&'[').is_some() {
                    while chars.next().is_some_and(|c| !('@'..='~').contains(&c)) {}
                } else {
                    chars.next();
                }
            }
            c => {
                if column < line.len() {
                    line[column] = c;
                } else {
                    line.push(c);
                }
                column += 1;
            }
        }
    }
    shown.extend(line);
    std::borrow::Cow::Owned(shown)
}

/// A line of a diff.
#[derive(Clone, Debug, PartialEq, Eq)]
enum DiffLine {
    Same(String),
    Removed(String),
    Added(String),
}

/// A line diff (longest common subsequence; inputs past 2,000 lines are compared as wholes).
fn line_diff(old: &str, new: &str) -> Vec<DiffLine> {
    let a: Vec<&str> = old.lines().collect();
    let b: Vec<&str> = new.lines().collect();
    if a.len() * b.len() > 4_000_000 {
        if old == new {
            return a.iter().map(|l| DiffLine::Same((*l).to_owned())).collect();
        }
        return a
            .iter()
            .map(|l| DiffLine::Removed((*l).to_owned()))
            .chain(b.iter().map(|l| DiffLine::Added((*l).to_owned())))
            .collect();
    }
    // lcs[i][j]: the common length of a[i..] and b[j..].
    let mut lcs = vec![vec![0u32; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let (mut i, mut j) = (0, 0);
    let mut out = Vec::new();
    while i < a.len() && j < b.len() {
        if a[i] == b[j] {
            out.push(DiffLine::Same(a[i].to_owned()));
            i += 1;
            j += 1;
        } else if lcs[i + 1][j] >= lcs[i][j + 1] {
            out.push(DiffLine::Removed(a[i].to_owned()));
            i += 1;
        } else {
            out.push(DiffLine::Added(b[j].to_owned()));
            j += 1;
        }
    }
    out.extend(a[i..].iter().map(|l| DiffLine::Removed((*l).to_owned())));
    out.extend(b[j..].iter().map(|l| DiffLine::Added((*l).to_owned())));
    out
}

/// The keyed diff: a count of each kind of change, then the items that changed (the same ones only
/// counted).
fn item_diff_ui(ui: &mut Ui, items: &[ItemDiff]) {
    let dark = ui.visuals().dark_mode;
    section_label(ui, "Items, paired by key");
    let count = |f: fn(&ItemChange) -> bool| items.iter().filter(|i| f(&i.change)).count() as u64;
    ui.label(
        RichText::new(format!(
            "{} the same · {} changed · {} only before · {} only in the replay",
            crate::text::count(count(|c| *c == ItemChange::Same)),
            crate::text::count(count(|c| matches!(c, ItemChange::Changed { .. }))),
            crate::text::count(count(|c| matches!(c, ItemChange::OnlyBefore(_)))),
            crate::text::count(count(|c| matches!(c, ItemChange::OnlyInReplay(_)))),
        ))
        .small(),
    );
    let value = |v: &Value| truncate(&v.to_string(), 60);
    for item in items
        .iter()
        .filter(|i| i.change != ItemChange::Same)
        .take(200)
    {
        let name = match &item.label {
            Some(label) => format!("{:?} ({label})", item.key),
            None => format!("{:?}", item.key),
        };
        let (text, color) = match &item.change {
            ItemChange::Same => continue,
            ItemChange::Changed { before, after } => (
                format!("~ {name}: {} → {}", value(before), value(after)),
                ui.visuals().text_color(),
            ),
            ItemChange::OnlyBefore(v) => {
                (format!("- {name}: {}", value(v)), theme::error_color(dark))
            }
            ItemChange::OnlyInReplay(v) => (
                format!("+ {name}: {}", value(v)),
                theme::success_color(dark),
            ),
        };
        ui.label(RichText::new(text).monospace().small().color(color));
    }
}

/// What an invocation came to, as text to compare: its return value (pretty JSON) or its error.
fn outcome_text(record: &InvocationRecord) -> String {
    match (&record.output, &record.error) {
        (Some(output), _) => serde_json::to_string_pretty(output).unwrap_or_default(),
        (None, Some(error)) => format!("{} ({})", error.summary(), record.status.label()),
        (None, None) => format!("({})", record.status.label()),
    }
}

/// The block a traceback's file name means: block names are the file names (`"Name #2"` for the
/// second block of that name).
fn block_for_file<'a>(project: &'a Project, file: &str) -> Option<&'a BlockId> {
    let (name, nth) = match file.rsplit_once(" #") {
        Some((name, n)) if n.parse::<usize>().is_ok() => (name, n.parse::<usize>().ok()?),
        _ => (file, 1),
    };
    project
        .blocks
        .iter()
        .filter(|b| b.name == name)
        .nth(nth.checked_sub(1)?)
        .map(|b| &b.id)
}

/// `  File "Process", line 3, in main` → `("Process", 3)`.
fn traceback_location(line: &str) -> Option<(&str, u32)> {
    let rest = line.trim_start().strip_prefix("File \"")?;
    let (file, rest) = rest.split_once('"')?;
    let rest = rest.trim_start().strip_prefix(", line ")?;
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    Some((file, digits.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::{
        DiffLine, ItemChange, ItemDiff, as_a_terminal_shows, item_diff, line_diff,
        traceback_location,
    };
    use crate::model::{BlockId, TransitionId};
    use crate::run::{FannedOut, InvocationRecord, ItemNames, RunId};
    use serde_json::json;

    /// A fan-out source's record that returned `items`, keyed by their `id` and labelled by `city`.
    fn source(items: serde_json::Value) -> InvocationRecord {
        let list = items.as_array().unwrap();
        let field = |f: &str| -> Vec<String> {
            list.iter()
                .map(|i| i[f].as_str().unwrap().to_owned())
                .collect()
        };
        let mut record =
            InvocationRecord::succeeded(&RunId("r".into()), 1, &BlockId("gen".into()), &[]);
        record.fanned_out = vec![FannedOut {
            transition: TransitionId("t".into()),
            names: std::sync::Arc::new(ItemNames::new(Some(field("id")), Some(field("city")))),
        }];
        record.output = Some(items);
        record
    }

    #[test]
    fn a_replay_that_reorders_its_items_still_pairs_them_by_key() {
        let before = source(json!([
            {"id": "a", "city": "Paris", "t": 1},
            {"id": "b", "city": "Oslo", "t": 2},
            {"id": "c", "city": "Rome", "t": 3},
        ]));
        let after = source(json!([
            {"id": "d", "city": "Lima", "t": 4},
            {"id": "c", "city": "Rome", "t": 3},
            {"id": "a", "city": "Paris", "t": 10},
        ]));
        let diff = item_diff(&before, &after).expect("both name their items");
        let seen: Vec<(&str, Option<&str>, &ItemChange)> = diff
            .iter()
            .map(|ItemDiff { key, label, change }| (key.as_str(), label.as_deref(), change))
            .collect();
        assert_eq!(
            seen,
            [
                (
                    "a",
                    Some("Paris"),
                    &ItemChange::Changed {
                        before: json!({"id": "a", "city": "Paris", "t": 1}),
                        after: json!({"id": "a", "city": "Paris", "t": 10}),
                    }
                ),
                (
                    "b",
                    Some("Oslo"),
                    &ItemChange::OnlyBefore(json!({"id": "b", "city": "Oslo", "t": 2}))
                ),
                ("c", Some("Rome"), &ItemChange::Same),
                (
                    "d",
                    Some("Lima"),
                    &ItemChange::OnlyInReplay(json!({"id": "d", "city": "Lima", "t": 4}))
                ),
            ]
        );
        let plain = InvocationRecord::succeeded(&RunId("r".into()), 1, &BlockId("gen".into()), &[]);
        assert_eq!(item_diff(&plain, &after), None, "no names, no keyed diff");
    }

    #[test]
    fn printed_text_shows_as_a_terminal_would() {
        assert_eq!(as_a_terminal_shows("plain\ntext"), "plain\ntext");
        // A progress bar redrawn in place shows its last state.
        assert_eq!(
            as_a_terminal_shows("  0%|   |\r 50%|#  |\r100%|###|\ndone\n"),
            "100%|###|\ndone\n"
        );
        // A shorter redraw leaves the end of the longer one, as a terminal does.
        assert_eq!(as_a_terminal_shows("abcdef\rxy"), "xycdef");
        // Windows line ends keep their lines.
        assert_eq!(as_a_terminal_shows("one\r\ntwo\r\n"), "one\ntwo\n");
        // Colours are left out.
        assert_eq!(
            as_a_terminal_shows("\u{1b}[32mgreen\u{1b}[0m and \u{1b}[1;31mred\u{1b}[m"),
            "green and red"
        );
    }

    #[test]
    fn diff_marks_changed_lines() {
        let diff = line_diff("a\nb\nc", "a\nx\nc");
        assert_eq!(
            diff,
            vec![
                DiffLine::Same("a".into()),
                DiffLine::Removed("b".into()),
                DiffLine::Added("x".into()),
                DiffLine::Same("c".into()),
            ]
        );
    }

    #[test]
    fn traceback_lines_name_block_and_line() {
        assert_eq!(
            traceback_location("  File \"Process #2\", line 14, in main"),
            Some(("Process #2", 14))
        );
        assert_eq!(traceback_location("ValueError: bad"), None);
    }
}
