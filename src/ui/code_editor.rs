//! A Python code editor: syntax highlighting, line numbers, and the line of a compile error marked.

use egui::{Color32, FontId, RichText, TextEdit, Ui};

/// Shows `code` for editing; returns the new text when the user changed it. With `goto_line`, the
/// cursor goes to the start of that line (1-based) and the line scrolls into view.
pub fn code_editor_ui(
    ui: &mut Ui,
    id_salt: &str,
    label: egui::Id,
    code: &str,
    error_lines: &[u32],
    height: f32,
    goto_line: Option<u32>,
) -> Option<String> {
    let mut text = code.to_owned();
    let dark = ui.visuals().dark_mode;
    let font = FontId::monospace(13.0);
    let row_height = ui.fonts_mut(|f| f.row_height(&font));
    let theme = egui_extras::syntax_highlighting::CodeTheme::from_style(ui.style());
    let mut layouter = |ui: &Ui, buf: &dyn egui::TextBuffer, wrap_width: f32| {
        let mut job = egui_extras::syntax_highlighting::highlight(
            ui.ctx(),
            ui.style(),
            &theme,
            buf.as_str(),
            "py",
        );
        job.wrap.max_width = wrap_width;
        ui.fonts_mut(|f| f.layout_job(job))
    };
    let lines = text.lines().count().max(1) + usize::from(text.ends_with('\n'));
    let error_color = super::theme::error_color(dark);
    let mut changed = false;
    egui::Frame::new()
        .fill(ui.visuals().extreme_bg_color)
        .stroke(ui.visuals().widgets.noninteractive.bg_stroke)
        .corner_radius(4.0)
        .show(ui, |ui| {
            egui::ScrollArea::both()
                .id_salt(("code-scroll", id_salt))
                .max_height(height)
                .min_scrolled_height(height)
                .auto_shrink([false, false])
                .show(ui, |ui| {
                    ui.horizontal_top(|ui| {
                        ui.spacing_mut().item_spacing.x = 4.0;
                        // The gutter: one number per line, red where the code does not compile.
                        ui.vertical(|ui| {
                            ui.spacing_mut().item_spacing.y = 0.0;
                            ui.add_space(2.0);
                            for n in 1..=lines {
                                let number = u32::try_from(n).unwrap_or(u32::MAX);
                                let is_error = error_lines.contains(&number);
                                let mut label = RichText::new(format!("{n:>3}"))
                                    .font(font.clone())
                                    .color(if is_error {
                                        error_color
                                    } else {
                                        ui.visuals().weak_text_color()
                                    });
                                if is_error {
                                    label = label.strong().background_color(
                                        Color32::from_rgba_unmultiplied(
                                            error_color.r(),
                                            error_color.g(),
                                            error_color.b(),
                                            40,
                                        ),
                                    );
                                }
                                let (rect, _) = ui.allocate_exact_size(
                                    egui::vec2(30.0, row_height),
                                    egui::Sense::hover(),
                                );
                                if goto_line == Some(number) {
                                    ui.scroll_to_rect(rect, Some(egui::Align::Center));
                                }
                                ui.put(rect, egui::Label::new(label).selectable(false));
                            }
                        });
                        let mut output = TextEdit::multiline(&mut text)
                            .id_salt(("code", id_salt))
                            .font(font.clone())
                            .code_editor()
                            .lock_focus(true)
                            .desired_width(f32::INFINITY)
                            .desired_rows(lines.max(12))
                            .frame(egui::Frame::NONE)
                            .layouter(&mut layouter)
                            .show(ui);
                        if let Some(line) = goto_line {
                            let at = line_start_char(code, line);
                            output.state.cursor.set_char_range(Some(
                                egui::text::CCursorRange::one(egui::text::CCursor::new(at)),
                            ));
                            output.state.store(ui.ctx(), output.response.id);
                            output.response.request_focus();
                        }
                        changed = output
                            .response
                            .response
                            .clone()
                            .labelled_by(label)
                            .changed();
                    });
                });
        });
    (changed && text != code).then_some(text)
}

/// The character index where line `line` (1-based) starts; the end when there are fewer lines.
fn line_start_char(code: &str, line: u32) -> usize {
    let mut chars = 0;
    for (n, text) in code.split_inclusive('\n').enumerate() {
        if n + 1 >= line as usize {
            return chars;
        }
        chars += text.chars().count();
    }
    chars
}

#[cfg(test)]
mod tests {
    #[test]
    fn line_starts_count_characters() {
        let code = "a\nbé\nc";
        assert_eq!(super::line_start_char(code, 1), 0);
        assert_eq!(super::line_start_char(code, 3), 5);
        assert_eq!(super::line_start_char(code, 9), 6);
    }
}
