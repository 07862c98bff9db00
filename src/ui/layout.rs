//! How the window is shared: the bottom panel's height and the inspector's width are fractions of the
//! window, so a smaller window (a laptop, a 1024×700 screen) still leaves the canvas room, and a height
//! dragged on a large screen does not squeeze the canvas on a small one. Each panel has a minimum, and
//! the canvas keeps [`CANVAS_MIN`] whatever the panels ask.

use egui::{Id, Rangef, Vec2};
use serde::{Deserialize, Serialize};

/// The least room the canvas keeps, in points.
pub const CANVAS_MIN: Vec2 = Vec2::new(360.0, 220.0);
/// The least height of the bottom panel (its tabs and a few rows).
const BOTTOM_MIN: f32 = 110.0;
/// The inspector's width range, in points (narrower cuts its fields; wider is never needed).
const INSPECTOR_MIN: f32 = 300.0;
const INSPECTOR_MAX: f32 = 800.0;

/// Where the editor remembers the panels' fractions.
pub const LAYOUT_KEY: &str = "braid.layout";

/// The panels' sizes as fractions of the window.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PanelLayout {
    /// The bottom panel with Results, Failures and Log, of the window's height.
    pub results: f32,
    /// The bottom panel with Block Executions and Timeline (they list more), of the window's height.
    pub executions: f32,
    /// The inspector, of the window's width.
    pub inspector: f32,
}

impl Default for PanelLayout {
    fn default() -> Self {
        Self {
            results: 0.26,
            executions: 0.44,
            inspector: 0.31,
        }
    }
}

/// One panel's size this frame: the size it gets, the sizes a drag may give it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PanelSize {
    pub id: Id,
    pub size: f32,
    pub range: Rangef,
    which: Which,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Which {
    Results,
    Executions,
    Inspector,
}

impl PanelLayout {
    /// The bottom panel, in a window `window` high of which `free` is left beside the top bars.
    pub fn bottom(&self, executions: bool, window: f32, free: f32) -> PanelSize {
        let (which, fraction, id) = if executions {
            (Which::Executions, self.executions, "braid-executions")
        } else {
            (Which::Results, self.results, "braid-results")
        };
        sized(
            id,
            which,
            fraction * window,
            BOTTOM_MIN,
            free - CANVAS_MIN.y,
        )
    }

    /// The inspector, in a window `window` wide of which `free` is left.
    pub fn inspector(&self, window: f32, free: f32) -> PanelSize {
        let most = (free - CANVAS_MIN.x).min(INSPECTOR_MAX);
        sized(
            "braid-inspector",
            Which::Inspector,
            self.inspector * window,
            INSPECTOR_MIN,
            most,
        )
    }

    /// The panel was dragged to `shown` points: that size becomes its fraction. Called only while the
    /// user drags its edge ([`PanelSize::is_dragged`]): egui also grows a panel to content that does
    /// not fit, and that growth, remembered, would take the canvas's room for good.
    pub fn dragged(&mut self, panel: &PanelSize, shown: f32, window: f32) {
        if (shown - panel.size).abs() > 0.5 && window > 0.0 {
            let fraction = (shown / window).clamp(0.05, 0.9);
            match panel.which {
                Which::Results => self.results = fraction,
                Which::Executions => self.executions = fraction,
                Which::Inspector => self.inspector = fraction,
            }
        }
    }
}

/// A panel of `wanted` points, within `least..=most` (a panel never goes under its minimum, even when
/// the window is too small for both it and the canvas's). What egui remembers of the panel is set to
/// it, so egui draws it that size (egui would otherwise keep the pixels it had).
fn sized(id: &str, which: Which, wanted: f32, least: f32, most: f32) -> PanelSize {
    let most = most.max(least);
    PanelSize {
        id: Id::new(id),
        size: wanted.clamp(least, most),
        range: Rangef::new(least, most),
        which,
    }
}

impl PanelSize {
    /// Whether the user is dragging the panel's edge (egui's `Panel` names its resize handle so).
    pub fn is_dragged(&self, ctx: &egui::Context) -> bool {
        ctx.is_being_dragged(self.id.with("__resize"))
    }

    /// Makes egui draw the panel at [`PanelSize::size`] this frame (a drag in progress still moves
    /// it: egui takes the pointer's place over what it remembers).
    pub fn impose(&self, ctx: &egui::Context) {
        let axis = usize::from(self.which != Which::Inspector);
        let Some(mut state) = egui::containers::panel::PanelState::load(ctx, self.id) else {
            return;
        };
        if (state.size()[axis] - self.size).abs() <= 0.5 {
            return;
        }
        let mut size = state.outer_rect.size();
        size[axis] = self.size;
        state.outer_rect = egui::Rect::from_min_size(state.outer_rect.min, size);
        ctx.data_mut(|d| d.insert_persisted(self.id, state));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn panels_are_fractions_of_the_window_and_the_canvas_keeps_its_minimum() {
        let layout = PanelLayout::default();
        // 1024×700: the results panel takes its fraction, the canvas keeps the rest.
        let bottom = layout.bottom(false, 700.0, 640.0);
        assert!((bottom.size - 182.0).abs() < 0.01, "{}", bottom.size);
        // Block Executions takes 44 %.
        let bottom = layout.bottom(true, 700.0, 640.0);
        assert!((bottom.size - 308.0).abs() < 0.01, "{}", bottom.size);
        // A panel dragged to most of a large window leaves a small one's canvas its minimum.
        let mut dragged = layout;
        let tall = dragged.bottom(true, 1080.0, 1020.0);
        dragged.dragged(&tall, 850.0, 1080.0);
        let small = dragged.bottom(true, 700.0, 640.0);
        assert!(
            (small.size - (640.0 - CANVAS_MIN.y)).abs() < 0.01,
            "{}",
            small.size
        );
        // A window too small for both: the panel keeps its minimum.
        assert!((layout.bottom(true, 300.0, 250.0).size - BOTTOM_MIN).abs() < 0.01);
        // The inspector takes its fraction; never under its minimum.
        let narrow = layout.inspector(1024.0, 1024.0).size;
        assert!((narrow - 317.44).abs() < 0.01, "{narrow}");
        assert!((layout.inspector(800.0, 800.0).size - INSPECTOR_MIN).abs() < 0.01);
        let wide = layout.inspector(1920.0, 1920.0).size;
        assert!((wide - 595.2).abs() < 0.01, "{wide}");
    }
}
