//! What Braid paints on the canvas itself: each wire's label, a node's problems and live counts, the
//! hint on an empty canvas, and the style egui-snarl draws with.

use egui::{Align2, Color32, FontId, Rect, RichText, Stroke, Ui, Vec2};
use egui_snarl::ui::{PinInfo, SelectionStyle, SnarlStyle};

use super::viewer::Viewer;
use super::{CanvasView, MAX_SCALE, MIN_SCALE, PinPositions};
use crate::app::App;
use crate::model::validate::{Severity, Subject};
use crate::model::{Block, BlockId, BlockKind, TransitionKind};
use crate::run::{BlockCounts, FanInCounts, InvocationStatus as S};
use crate::text::truncate;
use crate::ui::theme;

impl CanvasView {
    /// Each wire carries its type (and an `if` its expression) in a label at its middle. Snarl draws
    /// wires as symmetric curves, so the middle of the curve is the middle of its two ends.
    pub(super) fn paint_wire_labels(
        &mut self,
        ui: &Ui,
        app: &App,
        dark: bool,
        layer: egui::LayerId,
        pins: &PinPositions,
    ) {
        self.label_rects.clear();
        let painter = ui
            .ctx()
            .layer_painter(layer)
            .with_clip_rect(self.to_global.inverse() * self.canvas_rect);
        let fill = ui.visuals().extreme_bg_color;
        for (index, t) in app.project.transitions.iter().enumerate() {
            let out_index = self.pins.outgoing(&t.from).iter().position(|&i| i == index);
            let in_index = self.pins.incoming(&t.to).iter().position(|&i| i == index);
            let (Some(out_index), Some(in_index)) = (out_index, in_index) else {
                continue;
            };
            let (Some(from), Some(to)) = (
                pins.outputs.get(&(t.from.clone(), out_index)),
                pins.inputs.get(&(t.to.clone(), in_index)),
            ) else {
                continue;
            };
            let middle = from.lerp(*to, 0.5);
            let color = theme::transition_color(t.kind, dark);
            let galley = painter.layout_no_wrap(
                transition_text(t.kind, &t.expression, 28),
                FontId::proportional(12.0),
                color,
            );
            let rect = Rect::from_center_size(middle, galley.size() + Vec2::new(10.0, 4.0));
            let selected = app.selection.transition.as_ref() == Some(&t.id);
            let stroke = Stroke::new(if selected { 2.0 } else { 1.0 }, color);
            painter.rect(rect, 4.0, fill, stroke, egui::StrokeKind::Inside);
            painter.galley(rect.min + Vec2::new(5.0, 2.0), galley, color);
            self.label_rects.push((t.id.clone(), rect));
        }
    }
}

pub(super) fn empty_hint_ui(ui: &Ui, rect: Rect) {
    ui.painter().text(
        rect.center(),
        Align2::CENTER_CENTER,
        "Double-click or press A to add a Code Block\nRight-click for more · F1 for shortcuts",
        FontId::proportional(15.0),
        ui.visuals().weak_text_color(),
    );
}

pub(super) fn snarl_style(ui: &Ui) -> SnarlStyle {
    let mut style = SnarlStyle::new();
    style.centering = Some(false);
    style.min_scale = Some(MIN_SCALE);
    style.max_scale = Some(MAX_SCALE);
    style.collapsible = Some(false);
    style.wire_width = Some(2.5);
    style.pin_size = Some(10.0);
    style.bg_pattern_stroke = Some(Stroke::new(
        1.0,
        ui.visuals()
            .widgets
            .noninteractive
            .bg_stroke
            .color
            .gamma_multiply(0.5),
    ));
    // Braid draws its own selection (the node's border); Snarl's would be a second one.
    style.select_style = Some(SelectionStyle {
        margin: egui::Margin::same(0),
        rounding: egui::CornerRadius::same(0),
        fill: Color32::TRANSPARENT,
        stroke: Stroke::NONE,
    });
    style.node_frame = Some(
        egui::Frame::window(ui.style())
            .inner_margin(egui::Margin::symmetric(8, 6))
            .corner_radius(6.0),
    );
    style
}

/// The worst status among a block's counts, for its colour on the canvas.
pub(super) fn worst_status(counts: &BlockCounts) -> Option<S> {
    counts
        .by_status()
        .into_iter()
        .filter(|(_, n)| *n > 0)
        .map(|(status, _)| status)
        .max_by_key(|status| status.severity())
}

/// `fan-out`, or `if x > 3` with the expression cut to `max` characters.
pub fn transition_text(kind: TransitionKind, expression: &str, max: usize) -> String {
    if kind != TransitionKind::If {
        return kind.label().to_owned();
    }
    let expression = expression.trim();
    if expression.is_empty() {
        return "if ?".to_owned();
    }
    format!("if {}", truncate(expression, max))
}

/// One line that says what a block does: its docstring or first comment, else its size.
pub fn block_summary(block: &Block) -> String {
    match &block.kind {
        BlockKind::Code(code) => {
            let described = code.code.lines().map(str::trim).find_map(|line| {
                let text = line
                    .strip_prefix('#')
                    .or_else(|| line.strip_prefix("\"\"\""))
                    .or_else(|| line.strip_prefix("'''"))?;
                let text = text
                    .trim_end_matches("\"\"\"")
                    .trim_end_matches("'''")
                    .trim();
                (!text.is_empty()).then(|| text.to_owned())
            });
            described.unwrap_or_else(|| {
                let lines = code.code.lines().filter(|l| !l.trim().is_empty()).count();
                format!(
                    "{} of {}",
                    crate::text::plural(lines as u64, "line"),
                    code.language.label()
                )
            })
        }
        _ => block.kind_label(),
    }
}

impl Viewer<'_> {
    pub(super) fn block_has_error(&self, block: &BlockId) -> bool {
        self.app.compile_errors_of(block).next().is_some()
            || self.app.problems.iter().any(|p| {
                p.severity == Severity::Error && p.subject == Subject::Block(block.clone())
            })
    }

    pub(super) fn problems_ui(&self, ui: &mut Ui, block: &Block) {
        for error in self.app.compile_errors_of(&block.id) {
            let text = match error.line {
                Some(line) => format!("✖ line {line}: {}", error.message),
                None => format!("✖ {}", error.message),
            };
            ui.add(
                egui::Label::new(RichText::new(&text).color(theme::error_color(self.dark)))
                    .truncate()
                    .show_tooltip_when_elided(false),
            )
            .on_hover_text(text);
        }
        for problem in self
            .app
            .problems
            .iter()
            .filter(|p| p.subject == Subject::Block(block.id.clone()))
        {
            let mark = if problem.severity == Severity::Error {
                "✖"
            } else {
                "⚠"
            };
            let text = format!("{mark} {}", problem.message);
            ui.add(
                egui::Label::new(
                    RichText::new(&text).color(theme::severity_color(problem.severity, self.dark)),
                )
                .truncate()
                .show_tooltip_when_elided(false),
            )
            .on_hover_text(text);
        }
    }

    /// While the project is served: an endpoint's URL and request count, a timer's next fire, a
    /// queue's depth.
    pub(super) fn served_ui(&self, ui: &mut Ui, block: &BlockId, dark: bool) {
        let app = self.app;
        let line = if let Some(endpoint) = app.served_endpoint(block) {
            format!(
                "{} · {}",
                endpoint.url,
                crate::text::plural(endpoint.requests, "request")
            )
        } else if let Some(timer) = app.served_timer(block) {
            timer.next_fire_ms.map_or_else(
                || "no fire left".to_owned(),
                |ms| format!("next {}", crate::text::clock_time(ms)),
            )
        } else if let Some(queue) = app.served_queue(block) {
            format!("{} waiting", crate::text::plural(queue.depth, "message"))
        } else {
            return;
        };
        ui.add(
            egui::Label::new(RichText::new(line).color(theme::path_color(dark)))
                .truncate()
                .show_tooltip_when_elided(true),
        );
    }

    pub(super) fn counts_ui(&self, ui: &mut Ui, block: &BlockId, dark: bool) {
        let Some((counts, finished)) = self.app.canvas_counts() else {
            return;
        };
        if let Some(picked) = &self.app.executions.picked
            && let Some(record) = &picked.record
            && &record.block_id == block
        {
            ui.label(
                RichText::new(format!(
                    "▶ #{} {}{}",
                    record.id,
                    crate::text::item_path(&record.item_path),
                    record
                        .item_label()
                        .map_or_else(String::new, |label| format!(" {}", truncate(label, 24)))
                ))
                .strong()
                .color(theme::path_color(dark)),
            );
        }
        // A fan-in's ledger: how many items were sent its way, how many arrived, which are missing.
        if let Some(ledger) = self.app.canvas_fan_ins().and_then(|l| l.get(block)) {
            fan_in_ui(ui, ledger, dark);
        }
        // The runtime reports every block, so a block nothing reached has all-zero counts.
        let Some(counts) = counts.get(block).filter(|c| c.total() > 0) else {
            if finished {
                ui.label(RichText::new("not run").weak());
            }
            return;
        };
        // A fan-out target's ledger: every item in exactly one state.
        ui.horizontal_wrapped(|ui| {
            ui.spacing_mut().item_spacing.x = 6.0;
            for (status, n) in counts.by_status() {
                if n > 0 {
                    // A count moves to the next line whole, never "15" here and "succeeded" below.
                    ui.add(
                        egui::Label::new(
                            RichText::new(format!("{} {}", crate::text::count(n), status.label()))
                                .strong()
                                .color(theme::status_color(status, dark)),
                        )
                        .extend(),
                    )
                    .on_hover_text(status.description());
                }
            }
        });
    }
}

/// A fan-in's ledger on its node: expected, arrived, and the missing items (their labels a click away).
fn fan_in_ui(ui: &mut Ui, ledger: &FanInCounts, dark: bool) {
    ui.horizontal_wrapped(|ui| {
        ui.spacing_mut().item_spacing.x = 6.0;
        ui.add(
            egui::Label::new(
                RichText::new(format!(
                    "⇲ {} of {} arrived",
                    crate::text::count(ledger.arrived),
                    crate::text::count(ledger.expected)
                ))
                .small()
                .strong(),
            )
            .extend(),
        )
        .on_hover_text("Items its fan-outs sent towards this fan-in, and how many delivered");
        if ledger.missing == 0 {
            return;
        }
        let missing = RichText::new(format!("{} missing", crate::text::count(ledger.missing)))
            .small()
            .strong()
            .color(theme::status_color(S::Exception, dark));
        ui.menu_button(missing, |ui| {
            ui.label(RichText::new("Items that ended without delivering").strong());
            egui::ScrollArea::vertical()
                .max_height(240.0)
                .show(ui, |ui| {
                    for item in &ledger.missing_items {
                        let name = match &item.label {
                            Some(label) => format!("{label} (key {:?})", item.key),
                            None => format!("item {}", item.key),
                        };
                        ui.label(RichText::new(truncate(&name, 60)).strong());
                        ui.label(RichText::new(truncate(&item.reason, 90)).small().weak());
                    }
                    let more = ledger.missing as usize
                        - ledger.missing_items.len().min(ledger.missing as usize);
                    if more > 0 {
                        ui.label(
                            RichText::new(format!(
                                "and {} more (Block Executions lists every failure)",
                                crate::text::count(more as u64)
                            ))
                            .small()
                            .weak(),
                        );
                    }
                });
        });
    });
}

pub(super) fn theme_accent(dark: bool) -> Color32 {
    if dark {
        Color32::from_rgb(90, 170, 255)
    } else {
        Color32::from_rgb(20, 110, 230)
    }
}

pub(super) fn pin_info(color: Color32, connected: bool) -> PinInfo {
    let info = PinInfo::circle().with_wire_color(color);
    if connected {
        info.with_fill(color)
    } else {
        info.with_fill(Color32::TRANSPARENT)
            .with_stroke(Stroke::new(1.5, color))
    }
}

#[cfg(test)]
mod tests {
    use super::{BlockCounts, S, worst_status};
    use crate::model::{Block, Position};

    #[test]
    fn a_block_shows_its_worst_status() {
        let mut counts = BlockCounts {
            succeeded: 10,
            ..BlockCounts::default()
        };
        assert_eq!(worst_status(&counts), Some(S::Succeeded));
        counts.running = 1;
        assert_eq!(worst_status(&counts), Some(S::Running));
        counts.failed = 1;
        assert_eq!(worst_status(&counts), Some(S::Exception));
        assert_eq!(worst_status(&BlockCounts::default()), None);
    }

    #[test]
    fn a_block_without_a_comment_is_summed_up_by_its_size() {
        let block = |code: &str| Block::new_code("b", code, Position::default());
        assert_eq!(
            super::block_summary(&block("def main(block_input, backpack):\n    return 1\n")),
            "2 lines of Python"
        );
        assert_eq!(
            super::block_summary(&block("main = lambda block_input, backpack: 1\n")),
            "1 line of Python"
        );
        assert_eq!(
            super::block_summary(&block("# Doubles it\ndef main(b, p):\n    return b * 2\n")),
            "Doubles it"
        );
    }
}
