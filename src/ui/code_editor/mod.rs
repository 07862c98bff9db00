//! A code editor that behaves as Python editors do: syntax highlighting, a gutter of line numbers that
//! stays at the left edge while long lines scroll sideways, compile-error lines and the line a
//! traceback pointed at marked across the whole width, and the editing keys of `editing.rs` (spaces for
//! Tab, indentation kept and added on Return, Shift+Tab, Ctrl+/).
//!
//! Lines never wrap, so a gutter number is the code's line number, which is what a traceback names.

pub mod editing;

use egui::text::{CCursor, CCursorRange};
use egui::{Color32, Event, FontId, Id, Key, Modifiers, Rect, Shape, TextEdit, Ui};

use super::theme;
use editing::{Selection, Syntax};

/// Lines (1-based) the editor marks.
#[derive(Clone, Copy, Debug, Default)]
pub struct LineMarks<'a> {
    /// Lines with a compile error (red).
    pub errors: &'a [u32],
    /// The line a traceback pointed at (highlighted).
    pub marked: Option<u32>,
    /// Put the cursor at the start of this line and scroll it into view, this frame.
    pub goto: Option<u32>,
}

/// Room between the gutter's numbers and the code.
const GUTTER_PADDING: f32 = 8.0;

/// The text edit's id for a block's editor (tests and the key routing find it by this).
pub fn editor_id(id_salt: &str) -> Id {
    Id::new(("braid-code", id_salt))
}

/// Shows `code` for editing; returns the new text when the user changed it.
pub fn code_editor_ui(
    ui: &mut Ui,
    id_salt: &str,
    label: Id,
    code: &str,
    syntax: Syntax,
    marks: LineMarks<'_>,
    height: f32,
) -> Option<String> {
    let id = editor_id(id_salt);
    let mut text = code.to_owned();
    // The editing keys act before the text edit sees them (it would insert a tab character, and keep
    // no indentation on Return).
    let keyed = ui.memory(|m| m.has_focus(id)) && python_keys(ui, id, &mut text, syntax);

    let dark = ui.visuals().dark_mode;
    let font = FontId::monospace(theme::CODE_SIZE);
    let code_theme = egui_extras::syntax_highlighting::CodeTheme::from_style(ui.style());
    let mut layouter = |ui: &Ui, buf: &dyn egui::TextBuffer, _wrap_width: f32| {
        let mut job = match syntax.highlight {
            Some(language) => egui_extras::syntax_highlighting::highlight(
                ui.ctx(),
                ui.style(),
                &code_theme,
                buf.as_str(),
                language,
            ),
            None => egui::text::LayoutJob::simple(
                buf.as_str().to_owned(),
                font.clone(),
                ui.visuals().text_color(),
                f32::INFINITY,
            ),
        };
        for section in &mut job.sections {
            section.format.font_id = font.clone();
        }
        // No wrapping: one gutter number per text line (long lines scroll sideways).
        job.wrap.max_width = f32::INFINITY;
        ui.fonts_mut(|f| f.layout_job(job))
    };
    let lines = text.lines().count().max(1) + usize::from(text.ends_with('\n'));
    let digit_width = ui.fonts_mut(|f| f.glyph_width(&font, '0'));
    let gutter_width = digit_width * lines.to_string().len().max(3) as f32 + GUTTER_PADDING * 2.0;
    let error_color = theme::error_color(dark);
    let mark_color = theme::path_color(dark);
    let mut changed = keyed;
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
                    // Line bands go under the text: their place in the paint order is kept now.
                    let bands = ui.painter().add(Shape::Noop);
                    let output = ui
                        .horizontal_top(|ui| {
                            ui.spacing_mut().item_spacing.x = 0.0;
                            ui.add_space(gutter_width);
                            TextEdit::multiline(&mut text)
                                .id(id)
                                .font(font.clone())
                                .code_editor()
                                .lock_focus(true)
                                .desired_width(f32::INFINITY)
                                .desired_rows(lines.max(12))
                                .frame(egui::Frame::NONE)
                                .layouter(&mut layouter)
                                .show(ui)
                        })
                        .inner;
                    let visible = ui.clip_rect();
                    let row_rect = |n: u32| -> Option<Rect> {
                        let row = output.galley.rows.get(n.checked_sub(1)? as usize)?;
                        let rect = row.rect().translate(output.galley_pos.to_vec2());
                        Some(Rect::from_x_y_ranges(
                            visible.left().min(rect.left())..=visible.right().max(rect.right()),
                            rect.y_range(),
                        ))
                    };
                    let mut band_shapes = Vec::new();
                    let tint = |c: Color32, alpha| {
                        Color32::from_rgba_unmultiplied(c.r(), c.g(), c.b(), alpha)
                    };
                    if let Some(rect) = marks.marked.and_then(row_rect) {
                        band_shapes.push(Shape::rect_filled(rect, 0.0, tint(mark_color, 40)));
                    }
                    for rect in marks.errors.iter().filter_map(|n| row_rect(*n)) {
                        band_shapes.push(Shape::rect_filled(rect, 0.0, tint(error_color, 45)));
                    }
                    ui.painter().set(bands, Shape::Vec(band_shapes));

                    // The gutter, painted over the code at the visible area's left edge, so the
                    // numbers stay while long lines scroll sideways under it.
                    let gutter = Rect::from_x_y_ranges(
                        visible.left()..=visible.left() + gutter_width - GUTTER_PADDING / 2.0,
                        ui.min_rect().y_range(),
                    );
                    let painter = ui.painter().with_clip_rect(visible);
                    painter.rect_filled(gutter, 0.0, ui.visuals().extreme_bg_color);
                    painter.vline(
                        gutter.right(),
                        gutter.y_range(),
                        ui.visuals().widgets.noninteractive.bg_stroke,
                    );
                    for (index, row) in output.galley.rows.iter().enumerate() {
                        let number = u32::try_from(index + 1).unwrap_or(u32::MAX);
                        let y = output.galley_pos.y + row.rect().center().y;
                        if y < visible.top() - 20.0 || y > visible.bottom() + 20.0 {
                            continue;
                        }
                        let is_error = marks.errors.contains(&number);
                        let color = if is_error {
                            error_color
                        } else if marks.marked == Some(number) {
                            mark_color
                        } else {
                            ui.visuals().weak_text_color()
                        };
                        painter.text(
                            egui::pos2(gutter.right() - GUTTER_PADDING / 2.0 - 2.0, y),
                            egui::Align2::RIGHT_CENTER,
                            number.to_string(),
                            font.clone(),
                            color,
                        );
                    }

                    let goto_rect = marks.goto.and_then(row_rect);
                    let mut output = output;
                    if let Some(line) = marks.goto {
                        if let Some(rect) = goto_rect {
                            ui.scroll_to_rect(rect, Some(egui::Align::Center));
                        }
                        let at = line_start_char(code, line);
                        output
                            .state
                            .cursor
                            .set_char_range(Some(CCursorRange::one(CCursor::new(at))));
                        output.state.store(ui.ctx(), output.response.id);
                        output.response.request_focus();
                    }
                    changed |= output
                        .response
                        .response
                        .clone()
                        .labelled_by(label)
                        .changed();
                });
        });
    (changed && text != code).then_some(text)
}

/// Takes the editing keys of this frame out of egui's input and applies them to `text` (with the
/// editor's cursor). Returns whether the text changed.
///
/// A key is applied at the cursor the text edit left last frame, so it must come before anything else
/// that edits in the same frame (typing `if x:` and Return quickly arrive together): from the first
/// editing key that follows another edit, the frame's remaining events wait for the next frame, which
/// then starts with them.
fn python_keys(ui: &Ui, id: Id, text: &mut String, syntax: Syntax) -> bool {
    let deferred_id = id.with("deferred-events");
    let waiting: Vec<Event> = ui
        .ctx()
        .data_mut(|d| d.remove_temp(deferred_id))
        .unwrap_or_default();
    let Some(mut state) = egui::text_edit::TextEditState::load(ui.ctx(), id) else {
        return false;
    };
    let Some(range) = state.cursor.char_range() else {
        return false;
    };
    let mut selection = Selection {
        anchor: range.secondary.index.0,
        head: range.primary.index.0,
    };
    let mut changed = false;
    let mut deferred = Vec::new();
    ui.input_mut(|input| {
        let events: Vec<Event> = waiting.into_iter().chain(input.events.drain(..)).collect();
        let mut others_edited = false;
        for event in events {
            if !deferred.is_empty() {
                deferred.push(event);
                continue;
            }
            let edited = editing_key(&event).and_then(|key| match key {
                EditingKey::Indent => Some(editing::indent(text, selection)),
                EditingKey::Dedent => Some(editing::dedent(text, selection)),
                EditingKey::Newline => Some(editing::newline(text, selection, syntax)),
                EditingKey::Backspace => editing::backspace(text, selection),
                EditingKey::Comment => Some(editing::toggle_comment(text, selection, syntax)),
            });
            match edited {
                Some(_) if others_edited => deferred.push(event),
                Some(edited) => {
                    changed |= edited.text != *text;
                    *text = edited.text;
                    selection = edited.selection;
                }
                None => {
                    others_edited |= edits_text(&event);
                    input.events.push(event);
                }
            }
        }
    });
    if !deferred.is_empty() {
        ui.ctx().data_mut(|d| d.insert_temp(deferred_id, deferred));
        ui.ctx().request_repaint();
    }
    if changed || selection.head != range.primary.index.0 {
        state.cursor.set_char_range(Some(CCursorRange::two(
            CCursor::new(selection.anchor),
            CCursor::new(selection.head),
        )));
        state.store(ui.ctx(), id);
    }
    changed
}

/// The keys the editor handles itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum EditingKey {
    Indent,
    Dedent,
    Newline,
    Backspace,
    Comment,
}

fn editing_key(event: &Event) -> Option<EditingKey> {
    let Event::Key {
        key,
        pressed: true,
        modifiers,
        ..
    } = event
    else {
        return None;
    };
    match *key {
        Key::Tab if modifiers.is_none() => Some(EditingKey::Indent),
        Key::Tab if modifiers.matches_exact(Modifiers::SHIFT) => Some(EditingKey::Dedent),
        Key::Enter if modifiers.is_none() => Some(EditingKey::Newline),
        Key::Backspace if modifiers.is_none() => Some(EditingKey::Backspace),
        Key::Slash if modifiers.matches_logically(Modifiers::COMMAND) => Some(EditingKey::Comment),
        _ => None,
    }
}

/// Whether the text edit would change the text or move the cursor for this event.
fn edits_text(event: &Event) -> bool {
    matches!(
        event,
        Event::Text(_)
            | Event::Paste(_)
            | Event::Cut
            | Event::Ime(_)
            | Event::Key { pressed: true, .. }
    )
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
