//! Text that reaches a terminal from a project, its run or its history: block names, worker output,
//! errors and tracebacks, values, file names. A shared project must not be able to drive the terminal
//! of whoever runs it (set its title, clear the screen, move the cursor to overwrite a line, reverse
//! text with bidirectional controls) or forge a line of Braid's own (`… valid`). Every such text goes
//! through [`escape`] on its way out, readable and whole: a character that could do any of that is
//! written as its Rust escape (`\u{1b}`, `\r`, `\u{202e}`).
//!
//! `--json` output goes through [`JsonFormatter`]: JSON escapes C0 controls itself; it also escapes DEL,
//! C1 controls and the bidirectional controls, which JSON allows raw, as `\u` escapes that decode to the
//! same text.

use std::borrow::Cow;
use std::fmt::Write as _;

/// How much of a text's own layout is kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// One line (a name, a value, a line of output): line breaks and tabs are escaped too, so the text
    /// can't start a line of its own.
    Line,
    /// A text of several lines that Braid prints as they are (a message listing problems): line breaks
    /// and tabs are kept.
    Lines,
}

/// `text` with every character that could drive a terminal escaped: C0 controls (ESC, BEL, CR, BS,
/// and line breaks and tabs in a [`Layout::Line`]), DEL, C1 controls (U+0080 to U+009F, which some
/// terminals take as ESC sequences), Unicode's bidirectional controls and its line and paragraph
/// separators. Borrowed when there is nothing to escape, as there almost never is.
pub fn escape(text: &str, layout: Layout) -> Cow<'_, str> {
    let unsafe_char = |c: char| match c {
        '\n' | '\t' => layout == Layout::Line,
        c => c.is_control() || is_bidi_or_separator(c),
    };
    let Some(first) = text.find(unsafe_char) else {
        return Cow::Borrowed(text);
    };
    let mut out = String::with_capacity(text.len() + 8);
    out.push_str(&text[..first]);
    for c in text[first..].chars() {
        if unsafe_char(c) {
            // `\n`, `\t`, `\r`, `\u{1b}`, `\u{202e}`: the forms a Rust programmer reads at a glance.
            let _ = write!(out, "{}", c.escape_debug());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// One line of text for a terminal (see [`escape`]).
pub fn line(text: &str) -> Cow<'_, str> {
    escape(text, Layout::Line)
}

/// Characters that reorder or break text without being control characters: the bidirectional marks,
/// embeddings, overrides and isolates (a name can read backwards, or hide what follows it), and the
/// line and paragraph separators.
fn is_bidi_or_separator(c: char) -> bool {
    matches!(
        c,
        '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'
            | '\u{2028}' | '\u{2029}'
    )
}

/// Writes `text` and a line break to `out`, escaped as one [`Layout::Line`]. Output is best-effort:
/// a closed pipe or a full disk loses the line, never the run.
pub fn write_line(out: &mut impl std::io::Write, text: &str) {
    let _ = writeln!(out, "{}", line(text));
}

/// Writes a text of several lines (see [`Layout::Lines`]) and a line break to `out`, best-effort.
pub fn write_lines(out: &mut impl std::io::Write, text: &str) {
    let _ = writeln!(out, "{}", escape(text, Layout::Lines));
}

/// `serde_json`'s compact output, with DEL, C1 controls, bidirectional controls and line and paragraph
/// separators inside strings written as `\uXXXX` (JSON allows them raw; a terminal would act on them).
/// A JSON reader gets the same strings back.
#[derive(Clone, Copy, Debug, Default)]
pub struct JsonFormatter;

impl serde_json::ser::Formatter for JsonFormatter {
    fn write_string_fragment<W: ?Sized + std::io::Write>(
        &mut self,
        writer: &mut W,
        fragment: &str,
    ) -> std::io::Result<()> {
        let mut rest = fragment;
        while let Some(at) = rest.find(|c: char| c.is_control() || is_bidi_or_separator(c)) {
            writer.write_all(&rest.as_bytes()[..at])?;
            let c = rest[at..].chars().next().unwrap_or_default();
            write!(writer, "\\u{:04x}", u32::from(c))?;
            rest = &rest[at + c.len_utf8()..];
        }
        writer.write_all(rest.as_bytes())
    }
}

/// `value` as one line of compact JSON that is safe for a terminal (see [`JsonFormatter`]).
pub fn json_to_writer<W: std::io::Write>(
    writer: W,
    value: &impl serde::Serialize,
) -> serde_json::Result<()> {
    let mut serializer = serde_json::Serializer::with_formatter(writer, JsonFormatter);
    value.serialize(&mut serializer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_that_could_drive_a_terminal_is_escaped_readably() {
        // Set the window title, clear the screen, return to the line's start, a C1 CSI, DEL, a bidi
        // override.
        let hostile = "Gen\u{1b}]0;pwned\u{7}\u{1b}[2J\rok\u{9b}31m\u{7f}\u{202e}cba";
        assert_eq!(
            line(hostile),
            "Gen\\u{1b}]0;pwned\\u{7}\\u{1b}[2J\\rok\\u{9b}31m\\u{7f}\\u{202e}cba"
        );
        assert_eq!(line("a\nb\tc"), "a\\nb\\tc");
        assert_eq!(escape("a\nb\tc\r", Layout::Lines), "a\nb\tc\\r");
        assert_eq!(line("line\u{2028}break"), "line\\u{2028}break");
    }

    #[test]
    fn ordinary_text_is_borrowed_as_it_is() {
        for text in ["Process rows", "naïve — 東京 ✓ \"quoted\" \\", ""] {
            assert!(
                matches!(line(text), Cow::Borrowed(t) if t == text),
                "{text}"
            );
        }
    }

    #[test]
    fn json_for_a_terminal_escapes_what_json_allows_raw_and_reads_back_the_same() {
        let value = serde_json::json!({"block\u{9b}": "a\u{1b}b\u{7f}c\u{202e}d\u{85}e\n", "n": 1});
        let mut out = Vec::new();
        json_to_writer(&mut out, &value).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            text,
            r#"{"block\u009b":"a\u001bb\u007fc\u202ed\u0085e\n","n":1}"#
        );
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&text).unwrap(),
            value
        );
    }
}
