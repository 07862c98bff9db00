//! Colours and the look of the editor, for the dark and the light theme.

use egui::Color32;

use crate::model::TransitionKind;
use crate::model::validate::Severity;
use crate::run::InvocationStatus;

/// The one size of code and of what code prints (tracebacks, printed output, values, the replay's
/// diff), in points: monospace, readable at 100 % and never under 11 px.
pub const CODE_SIZE: f32 = 13.0;

/// Text in the code font and size.
pub fn code_text(text: impl Into<String>) -> egui::RichText {
    egui::RichText::new(text).font(egui::FontId::monospace(CODE_SIZE))
}

/// Sets Braid's spacing and fonts; the theme follows the system until the user picks one (View menu).
pub fn install(ctx: &egui::Context) {
    // Ubuntu-Light, the text font, lacks symbols labels use (● ▸ arrows): they showed as boxes. Hack,
    // egui's monospace font, has them; it comes last, so it only fills those gaps.
    let mut fonts = egui::FontDefinitions::default();
    if let Some(proportional) = fonts.families.get_mut(&egui::FontFamily::Proportional) {
        proportional.push("Hack".to_owned());
    }
    ctx.set_fonts(fonts);
    ctx.all_styles_mut(|style| {
        style.spacing.item_spacing = egui::vec2(8.0, 5.0);
        style.spacing.button_padding = egui::vec2(8.0, 3.0);
        style.spacing.interact_size.y = 22.0;
        style.interaction.tooltip_delay = 0.3;
    });
}

/// Each transition type has its own colour, the same on the wire, its pins and its label.
pub fn transition_color(kind: TransitionKind, dark: bool) -> Color32 {
    let (on_dark, on_light) = match kind {
        TransitionKind::Then => ((120, 160, 255), (40, 90, 210)),
        TransitionKind::If => ((235, 180, 60), (170, 110, 0)),
        TransitionKind::Else => ((190, 140, 250), (120, 70, 200)),
        TransitionKind::Exception => ((240, 95, 90), (200, 40, 40)),
        TransitionKind::FanOut => ((80, 200, 120), (20, 140, 60)),
        TransitionKind::FanIn => ((70, 200, 220), (0, 130, 150)),
        TransitionKind::Merge => ((235, 120, 200), (180, 50, 140)),
    };
    rgb(if dark { on_dark } else { on_light })
}

/// What a transition type does, in a few words (menus and tooltips).
pub fn transition_help(kind: TransitionKind) -> &'static str {
    match kind {
        TransitionKind::Then => "on success, pass the return value on",
        TransitionKind::If => "on success, when the expression is true",
        TransitionKind::Else => "on success, when every if beside it was false",
        TransitionKind::Exception => "when the block fails",
        TransitionKind::FanOut => "one invocation per element of the returned array",
        TransitionKind::FanIn => "collect the fanned-out results, in item order",
        TransitionKind::Merge => "wait for every merge source, then pass their results on",
    }
}

pub fn status_color(status: InvocationStatus, dark: bool) -> Color32 {
    let (on_dark, on_light) = match status {
        InvocationStatus::Queued => ((150, 150, 160), (110, 110, 120)),
        InvocationStatus::Running => ((110, 160, 255), (30, 90, 210)),
        InvocationStatus::Succeeded => ((80, 200, 120), (20, 140, 60)),
        InvocationStatus::CaughtException => ((235, 160, 60), (190, 110, 0)),
        InvocationStatus::Exception | InvocationStatus::TimedOut => ((240, 90, 85), (200, 40, 40)),
        InvocationStatus::Cancelled => ((160, 160, 160), (120, 120, 120)),
        // Amber like a warning: the attempt failed, the item is not done.
        InvocationStatus::Retried => ((225, 190, 70), (165, 120, 0)),
    };
    rgb(if dark { on_dark } else { on_light })
}

pub fn severity_color(severity: Severity, dark: bool) -> Color32 {
    match (severity, dark) {
        (Severity::Error, true) => Color32::from_rgb(240, 95, 90),
        (Severity::Error, false) => Color32::from_rgb(200, 40, 40),
        (Severity::Warning, true) => Color32::from_rgb(235, 180, 60),
        (Severity::Warning, false) => Color32::from_rgb(170, 110, 0),
    }
}

/// The glow around the blocks on the picked invocation's item path.
pub fn path_color(dark: bool) -> Color32 {
    if dark {
        Color32::from_rgb(250, 205, 70)
    } else {
        Color32::from_rgb(225, 150, 0)
    }
}

pub fn error_color(dark: bool) -> Color32 {
    severity_color(Severity::Error, dark)
}

pub fn success_color(dark: bool) -> Color32 {
    status_color(InvocationStatus::Succeeded, dark)
}

fn rgb((red, green, blue): (u8, u8, u8)) -> Color32 {
    Color32::from_rgb(red, green, blue)
}
