//! A run's invocations on a time axis: one lane per concurrency slot (packed greedily, so queueing at
//! the limit shows as a full wall of lanes) or one lane per block. Painted directly, and culled to the
//! visible time range and lanes, so 100,000 invocations stay fast: bars narrower than a pixel merge.
//!
//! Ctrl+scroll (or pinch) zooms around the pointer, scroll or drag pans, double-click shows everything;
//! hover shows an invocation, a click picks it.

use egui::{Align2, Color32, FontId, Pos2, Rect, RichText, Sense, Stroke, Ui, Vec2};

use super::theme;
use crate::app::executions::RunData;
use crate::app::{App, CommandSender, ExecutionsCommand};
use crate::run::{InvocationRow, InvocationStatus, RunId};
use crate::text::{duration_ms, item_path};

const AXIS_HEIGHT: f32 = 18.0;
const LANE_LABEL_WIDTH: f32 = 110.0;
const MAX_LANE_HEIGHT: f32 = 18.0;
const MIN_LANE_HEIGHT: f32 = 2.0;

/// One invocation's bar: times relative to the run's first start. Lanes hold these side by side, so
/// drawing walks memory in order instead of hopping through a million rows.
#[derive(Clone, Copy)]
struct Bar {
    start: f64,
    end: f64,
    index: u32,
    status: InvocationStatus,
}

/// What a lane is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LaneMode {
    /// One slot of the concurrency limit.
    #[default]
    Slots,
    Blocks,
    /// One Dask worker (a run on a cluster).
    Workers,
}

/// Lanes of one run, derived once per run, mode and generation.
struct Lanes {
    key: (RunId, u64, LaneMode),
    /// Bars per lane, sorted by start.
    rows: Vec<Vec<Bar>>,
    /// The lane of each row (by index), for outlining the picked item's path.
    lane_of: Vec<u32>,
    names: Vec<String>,
    /// The longest invocation of each lane (how far back a bar may begin and still be in view).
    longest_ms: Vec<f64>,
    start_ms: f64,
    end_ms: f64,
}

#[derive(Default)]
pub struct TimelineView {
    pub mode: LaneMode,
    lanes: Option<Lanes>,
    /// The visible time range, relative to the run's first start; `None` shows everything.
    view: Option<(f64, f64)>,
    /// First lane shown (the lanes scroll when they don't fit).
    first_lane: usize,
}

impl TimelineView {
    pub fn show_ui(&mut self, ui: &mut Ui, app: &App, tx: &CommandSender) {
        let Some(run) = app.executions.shown() else {
            ui.label(RichText::new("No run to show yet.").weak());
            return;
        };
        let on_cluster = run.row.executor.cluster().is_some();
        if !on_cluster && self.mode == LaneMode::Workers {
            self.mode = LaneMode::Slots;
        }
        ui.horizontal(|ui| {
            ui.label("Lanes:");
            let mut mode = self.mode;
            ui.selectable_value(&mut mode, LaneMode::Slots, "concurrency slots")
                .on_hover_text("Each lane is one slot of the concurrency limit");
            ui.selectable_value(&mut mode, LaneMode::Blocks, "blocks");
            if on_cluster {
                ui.selectable_value(&mut mode, LaneMode::Workers, "Dask workers")
                    .on_hover_text("Each lane is one Dask worker of the cluster the run went to");
            }
            if mode != self.mode {
                self.mode = mode;
                self.first_lane = 0;
            }
            ui.label(
                RichText::new("Ctrl+scroll zooms, drag pans, double-click fits, click picks")
                    .small()
                    .weak(),
            );
        });
        self.update_lanes(app, run);
        let Some(lanes) = &self.lanes else {
            return;
        };
        if lanes.rows.is_empty() {
            ui.label(RichText::new("No invocation has started yet.").weak());
            return;
        }
        let (rect, response) = ui.allocate_exact_size(ui.available_size(), Sense::click_and_drag());
        let span = (lanes.end_ms - lanes.start_ms).max(1.0);
        let (mut t0, mut t1) = self.view.unwrap_or((0.0, span));
        let plot = Rect::from_min_max(
            rect.min + Vec2::new(LANE_LABEL_WIDTH, AXIS_HEIGHT),
            rect.max,
        );
        let lane_height =
            (plot.height() / lanes.rows.len() as f32).clamp(MIN_LANE_HEIGHT, MAX_LANE_HEIGHT);
        let lanes_in_view = ((plot.height() / lane_height).floor() as usize).max(1);

        // Zoom and pan.
        if response.hovered() {
            let (zoom, scroll, pointer) =
                ui.input(|i| (i.zoom_delta(), i.smooth_scroll_delta, i.pointer.hover_pos()));
            let width = t1 - t0;
            if (zoom - 1.0).abs() > f32::EPSILON
                && let Some(pointer) = pointer
            {
                let at = t0 + f64::from((pointer.x - plot.left()) / plot.width()) * width;
                let new_width = (width / f64::from(zoom)).clamp(0.05, span * 1.05);
                let ratio = (at - t0) / width;
                t0 = at - ratio * new_width;
                t1 = t0 + new_width;
            }
            if scroll.x != 0.0 {
                let shift = -f64::from(scroll.x / plot.width()) * width;
                t0 += shift;
                t1 += shift;
            }
            if scroll.y != 0.0 && lanes.rows.len() > lanes_in_view {
                let step = (-scroll.y / lane_height).round() as isize;
                self.first_lane = self
                    .first_lane
                    .saturating_add_signed(step)
                    .min(lanes.rows.len() - lanes_in_view);
            }
        }
        if response.dragged() {
            let width = t1 - t0;
            let shift = -f64::from(response.drag_delta().x / plot.width()) * width;
            t0 += shift;
            t1 += shift;
        }
        if response.double_clicked() {
            self.view = None;
            (t0, t1) = (0.0, span);
        } else if (t0, t1) != (0.0, span) {
            self.view = Some((t0, t1));
        }

        let painter = ui.painter_at(rect);
        let dark = ui.visuals().dark_mode;
        let x_of = |t: f64| plot.left() + ((t - t0) / (t1 - t0)) as f32 * plot.width();
        axis_ui(&painter, ui, plot, rect, t0, t1);

        let picked = app.executions.picked.as_ref();
        let last_lane = (self.first_lane + lanes_in_view).min(lanes.rows.len());
        let mut hovered = None;
        let hover_pos = response.hover_pos();
        for (row_in_view, lane_index) in (self.first_lane..last_lane).enumerate() {
            let top = plot.top() + row_in_view as f32 * lane_height;
            let lane_rect = Rect::from_min_size(
                Pos2::new(plot.left(), top),
                Vec2::new(plot.width(), lane_height),
            );
            if lane_height >= 9.0 {
                painter.text(
                    Pos2::new(rect.left() + 4.0, top + lane_height / 2.0),
                    Align2::LEFT_CENTER,
                    &lanes.names[lane_index],
                    FontId::proportional(lane_height.min(11.0)),
                    ui.visuals().weak_text_color(),
                );
            }
            let lane = &lanes.rows[lane_index];
            // The first bar that may reach into view: starts are sorted, and none lasts longer than
            // the lane's longest.
            let earliest = t0 - lanes.longest_ms[lane_index];
            let from = lane.partition_point(|bar| bar.start < earliest);
            let mut bars = Merger::default();
            let mut failures = Merger::default();
            for bar in &lane[from..] {
                if bar.start > t1 {
                    break;
                }
                if bar.end < t0 {
                    continue;
                }
                let (x0, x1) = (
                    x_of(bar.start).max(plot.left()),
                    x_of(bar.end).min(plot.right()),
                );
                if let Some(pointer) = hover_pos
                    && lane_rect.contains(pointer)
                    && pointer.x >= x0 - 1.0
                    && pointer.x <= x1.max(x0 + 1.0) + 1.0
                {
                    hovered = Some(bar.index as usize);
                }
                let color = theme::status_color(bar.status, dark);
                let failed = bar.status.is_failure();
                bars.add((x0, x1), color, failed, |a, b, c| {
                    paint_bar(&painter, lane_rect, a, b, c);
                });
                // Failures are drawn again on top, so one failure among a thousand successes in a
                // pixel still shows (and does not paint its neighbours red).
                if failed {
                    failures.add((x0, x1.max(x0 + 2.0)), color, false, |a, b, c| {
                        paint_bar(&painter, lane_rect, a, b, c);
                    });
                }
            }
            bars.finish(|a, b, c| paint_bar(&painter, lane_rect, a, b, c));
            failures.finish(|a, b, c| paint_bar(&painter, lane_rect, a, b, c));
        }
        // The picked invocation and its item's path, outlined.
        if let Some(picked) = picked {
            let outline = Stroke::new(2.0, ui.visuals().strong_text_color());
            for id in &picked.lineage {
                let Some(index) = run.position_of(*id) else {
                    continue;
                };
                let lane = lanes.lane_of.get(index).copied().unwrap_or(u32::MAX) as usize;
                let row = &run.rows[index];
                let (Some(start), true) = (
                    row.started_at_ms,
                    (self.first_lane..last_lane).contains(&lane),
                ) else {
                    continue;
                };
                let start = start - lanes.start_ms;
                let end = row.ended_at_ms.map_or(start, |e| e - lanes.start_ms);
                if end < t0 || start > t1 {
                    continue;
                }
                let top = plot.top() + (lane - self.first_lane) as f32 * lane_height;
                let x0 = x_of(start).max(plot.left());
                let bar = Rect::from_x_y_ranges(
                    x0..=x_of(end).min(plot.right()).max(x0 + 2.0),
                    top..=top + lane_height,
                );
                painter.rect_stroke(bar.expand(1.0), 1.0, outline, egui::StrokeKind::Outside);
            }
        }
        if lanes.rows.len() > lanes_in_view {
            painter.text(
                rect.right_bottom() - Vec2::new(6.0, 4.0),
                Align2::RIGHT_BOTTOM,
                format!(
                    "lanes {}–{} of {} (scroll)",
                    crate::text::count((self.first_lane + 1) as u64),
                    crate::text::count(last_lane as u64),
                    crate::text::count(lanes.rows.len() as u64)
                ),
                FontId::proportional(11.0),
                ui.visuals().weak_text_color(),
            );
        }
        if let Some(i) = hovered {
            let row = &run.rows[i];
            let text = format!(
                "{} {}{} · #{} · {} · {}",
                row.block_name,
                item_path(&row.item_path),
                row.item_label()
                    .map_or_else(String::new, |label| format!(" {label}")),
                row.id,
                row.status.label(),
                row.duration_ms().map_or_else(String::new, duration_ms)
            );
            response.clone().on_hover_text_at_pointer(text);
            if response.clicked() {
                tx.send(ExecutionsCommand::Pick(row.id));
            }
        }
    }

    fn update_lanes(&mut self, app: &App, run: &RunData) {
        let key = (run.row.run_id.clone(), run.generation, self.mode);
        if self.lanes.as_ref().is_some_and(|l| l.key == key) {
            return;
        }
        if self
            .lanes
            .as_ref()
            .is_some_and(|l| l.key.0 != run.row.run_id)
        {
            self.view = None;
            self.first_lane = 0;
        }
        let start_ms = run
            .rows
            .iter()
            .filter_map(|r| r.started_at_ms)
            .fold(f64::INFINITY, f64::min);
        let end_ms = run
            .rows
            .iter()
            .filter_map(|r| r.ended_at_ms.or(r.started_at_ms))
            .fold(f64::NEG_INFINITY, f64::max);
        let (mut lanes, names): (Vec<Vec<usize>>, Vec<String>) = if self.mode == LaneMode::Workers {
            worker_lanes(&run.rows)
        } else if self.mode == LaneMode::Blocks {
            let mut order: Vec<&crate::model::BlockId> =
                app.project.blocks.iter().map(|b| &b.id).collect();
            for row in &run.rows {
                if !order.contains(&&row.block_id) {
                    order.push(&row.block_id);
                }
            }
            let mut lanes = vec![Vec::new(); order.len()];
            let mut names = vec![String::new(); order.len()];
            for (i, row) in run.rows.iter().enumerate() {
                if row.started_at_ms.is_none() {
                    continue;
                }
                if let Some(lane) = order.iter().position(|b| *b == &row.block_id) {
                    lanes[lane].push(i);
                    if names[lane].is_empty() {
                        names[lane] = row.block_name.to_string();
                    }
                }
            }
            let keep: Vec<bool> = lanes.iter().map(|l| !l.is_empty()).collect();
            let mut k = keep.iter();
            lanes.retain(|_| *k.next().unwrap_or(&false));
            let mut k = keep.iter();
            let names = names
                .into_iter()
                .filter(|_| *k.next().unwrap_or(&false))
                .collect();
            (lanes, names)
        } else {
            let (assigned, count) = slot_lanes(&run.rows);
            let mut lanes = vec![Vec::new(); count as usize];
            for (i, lane) in assigned.iter().enumerate() {
                if let Some(lane) = lane {
                    lanes[*lane as usize].push(i);
                }
            }
            let names = (1..=count).map(|n| format!("slot {n}")).collect();
            (lanes, names)
        };
        let origin = if start_ms.is_finite() { start_ms } else { 0.0 };
        let mut lane_of = vec![u32::MAX; run.rows.len()];
        let bars: Vec<Vec<Bar>> = lanes
            .iter_mut()
            .enumerate()
            .map(|(lane_index, lane)| {
                let mut bars: Vec<Bar> = lane
                    .iter()
                    .map(|&i| {
                        lane_of[i] = lane_index as u32;
                        let row = &run.rows[i];
                        let start = row.started_at_ms.unwrap_or(origin) - origin;
                        Bar {
                            start,
                            end: row.ended_at_ms.map_or(start, |e| e - origin).max(start),
                            index: i as u32,
                            status: row.status,
                        }
                    })
                    .collect();
                bars.sort_by(|a, b| a.start.total_cmp(&b.start));
                bars
            })
            .collect();
        let longest_ms = bars
            .iter()
            .map(|lane| lane.iter().map(|b| b.end - b.start).fold(0.0, f64::max))
            .collect();
        self.lanes = Some(Lanes {
            key,
            rows: bars,
            lane_of,
            names,
            longest_ms,
            start_ms: origin,
            end_ms: if end_ms.is_finite() { end_ms } else { 0.0 },
        });
    }
}

/// Bars narrower than a few pixels that touch merge into one shape (in the first one's colour), so
/// the shapes painted per lane stay bounded by its width in pixels; wider bars stay apart.
#[derive(Default)]
struct Merger {
    /// Start, end, colour, and whether a later bar's colour should replace it.
    pending: Option<(f32, f32, Color32, bool)>,
}

impl Merger {
    /// Adds a bar; `weak` colours (a failure, which is drawn on top anyway) give way to the next.
    fn add(
        &mut self,
        (x0, x1): (f32, f32),
        color: Color32,
        weak: bool,
        mut paint: impl FnMut(f32, f32, Color32),
    ) {
        match &mut self.pending {
            Some((_, end, c, pending_weak)) if x1 - x0 < 3.0 && x0 <= *end + 1.0 => {
                *end = end.max(x1);
                if *pending_weak && !weak {
                    (*c, *pending_weak) = (color, false);
                }
            }
            _ => {
                if let Some((a, b, c, _)) = self.pending.take() {
                    paint(a, b, c);
                }
                self.pending = Some((x0, x1, color, weak));
            }
        }
    }

    fn finish(self, mut paint: impl FnMut(f32, f32, Color32)) {
        if let Some((a, b, c, _)) = self.pending {
            paint(a, b, c);
        }
    }
}

/// A bar with a pixel of gap after it when it is wide enough to tell neighbours apart.
fn paint_bar(painter: &egui::Painter, lane: Rect, x0: f32, x1: f32, color: Color32) {
    let right = if x1 - x0 > 4.0 {
        x1 - 1.0
    } else {
        x1.max(x0 + 1.0)
    };
    let bar = Rect::from_x_y_ranges(x0..=right, lane.y_range())
        .shrink2(Vec2::new(0.0, (lane.height() * 0.12).min(2.0)));
    painter.rect_filled(bar, 1.0, color);
}

/// Ticks along the top: about one every 100 pixels, at round times.
fn axis_ui(painter: &egui::Painter, ui: &Ui, plot: Rect, rect: Rect, t0: f64, t1: f64) {
    let width = t1 - t0;
    let raw = width / f64::from((plot.width() / 100.0).max(1.0));
    let magnitude = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * magnitude)
        .find(|s| *s >= raw)
        .unwrap_or(raw);
    let color = ui.visuals().weak_text_color();
    let mut t = (t0 / step).ceil() * step;
    while t <= t1 {
        let x = plot.left() + ((t - t0) / width) as f32 * plot.width();
        painter.line_segment(
            [
                Pos2::new(x, rect.top() + AXIS_HEIGHT - 4.0),
                Pos2::new(x, rect.bottom()),
            ],
            Stroke::new(1.0, color.gamma_multiply(0.25)),
        );
        painter.text(
            Pos2::new(x + 2.0, rect.top() + 2.0),
            Align2::LEFT_TOP,
            // The origin is the run's start, exactly: not a duration too short to measure.
            if t.abs() < step * 1e-6 {
                "0".to_owned()
            } else {
                duration_ms(t)
            },
            FontId::proportional(10.0),
            color,
        );
        t += step;
    }
}

/// One lane per Dask worker, in the order they first ran something, named by host and port; rows that
/// never started (or ran on no worker) are in none.
fn worker_lanes(rows: &[InvocationRow]) -> (Vec<Vec<usize>>, Vec<String>) {
    let mut names: Vec<String> = Vec::new();
    let mut lanes: Vec<Vec<usize>> = Vec::new();
    for (i, row) in rows.iter().enumerate() {
        let (Some(worker), Some(_)) = (row.worker.as_deref(), row.started_at_ms) else {
            continue;
        };
        let name = worker.split_once("://").map_or(worker, |(_, rest)| rest);
        let lane = names.iter().position(|n| n == name).unwrap_or_else(|| {
            names.push(name.to_owned());
            lanes.push(Vec::new());
            names.len() - 1
        });
        lanes[lane].push(i);
    }
    (lanes, names)
}

/// Lane of each row (by index) when invocations are packed greedily onto concurrency slots: a row takes
/// the lowest lane that is free at its start. Rows that never started get no lane.
fn slot_lanes(rows: &[InvocationRow]) -> (Vec<Option<u32>>, u32) {
    let mut order: Vec<usize> = (0..rows.len())
        .filter(|&i| rows[i].started_at_ms.is_some())
        .collect();
    order.sort_by(|&a, &b| {
        rows[a]
            .started_at_ms
            .unwrap_or_default()
            .total_cmp(&rows[b].started_at_ms.unwrap_or_default())
    });
    let mut lanes = vec![None; rows.len()];
    // Free lanes (lowest first) and busy lanes by end time.
    let mut free: std::collections::BinaryHeap<std::cmp::Reverse<u32>> =
        std::collections::BinaryHeap::new();
    let mut busy: std::collections::BinaryHeap<std::cmp::Reverse<(OrdF64, u32)>> =
        std::collections::BinaryHeap::new();
    let mut count = 0u32;
    for i in order {
        let start = rows[i].started_at_ms.unwrap_or_default();
        let end = rows[i].ended_at_ms.unwrap_or(start).max(start);
        while let Some(std::cmp::Reverse((OrdF64(at), lane))) = busy.peek().copied() {
            if at > start {
                break;
            }
            busy.pop();
            free.push(std::cmp::Reverse(lane));
        }
        let lane = free.pop().map_or_else(
            || {
                count += 1;
                count - 1
            },
            |std::cmp::Reverse(l)| l,
        );
        busy.push(std::cmp::Reverse((OrdF64(end), lane)));
        lanes[i] = Some(lane);
    }
    (lanes, count)
}

#[derive(Clone, Copy, Debug, PartialEq)]
struct OrdF64(f64);

impl Eq for OrdF64 {}

impl PartialOrd for OrdF64 {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for OrdF64 {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&other.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lanes_reuse_free_slots() {
        let rows = [
            InvocationRow::succeeded(1, 0.0, 10.0),
            InvocationRow::succeeded(2, 0.0, 5.0),
            InvocationRow::succeeded(3, 5.0, 8.0),
            InvocationRow::succeeded(4, 11.0, 12.0),
        ];
        let (lanes, count) = slot_lanes(&rows);
        assert_eq!(count, 2);
        assert_eq!(lanes, vec![Some(0), Some(1), Some(1), Some(0)]);
    }
}
