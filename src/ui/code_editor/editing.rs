//! The keys that make the code editor a Python editor: Tab and Shift+Tab indent and dedent with spaces
//! (a tab character would make Python refuse the block with `TabError`), Return keeps the line's
//! indentation and adds a level after a `:` or an open bracket (and drops one after `return`, `pass`,
//! `raise`, `break` or `continue`), Backspace in a line's leading spaces goes back one level, and
//! Ctrl+/ comments or uncomments the selected lines.
//!
//! Pure operations on the text and its selection (character indices, as egui's cursors count), so they
//! are tested without a window; the widget in `mod.rs` routes the keys here.

use crate::model::Language;

/// Spaces per indentation level (PEP 8).
pub const INDENT: usize = 4;

/// What the editing keys need to know about a language.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Syntax {
    /// What starts a line comment.
    pub comment: &'static str,
    /// A line whose code ends in one of these opens a new indentation level.
    pub openers: &'static [char],
    /// A line that starts with one of these ends its block: the next line goes one level back.
    pub block_enders: &'static [&'static str],
    /// The name egui's highlighter knows the language by, when it knows it.
    pub highlight: Option<&'static str>,
}

impl Syntax {
    pub const PYTHON: Self = Self {
        comment: "#",
        openers: &[':', '(', '[', '{'],
        block_enders: &["return", "pass", "raise", "break", "continue"],
        highlight: Some("py"),
    };
    /// A language Braid keeps but does not run (a Refinery export's Node.js or Go block): C-like
    /// comments and braces, no highlighting (egui's highlighter knows none of them).
    pub const OTHER: Self = Self {
        comment: "//",
        openers: &['{', '(', '['],
        block_enders: &[],
        highlight: None,
    };

    pub fn of(language: &Language) -> Self {
        match language {
            Language::Python => Self::PYTHON,
            Language::Other(_) => Self::OTHER,
        }
    }
}

/// A selection in character indices: `anchor` stays where it began, `head` is where the cursor is. An
/// empty selection (`anchor == head`) is a plain cursor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Selection {
    pub anchor: usize,
    pub head: usize,
}

impl Selection {
    pub fn cursor(at: usize) -> Self {
        Self {
            anchor: at,
            head: at,
        }
    }

    fn start(self) -> usize {
        self.anchor.min(self.head)
    }

    fn end(self) -> usize {
        self.anchor.max(self.head)
    }

    fn is_empty(self) -> bool {
        self.anchor == self.head
    }
}

/// The text after a key, and where the selection is then.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Edited {
    pub text: String,
    pub selection: Selection,
}

/// Tab: with a cursor, spaces up to the next indentation level; with a selection, one more level on
/// every line it touches.
pub fn indent(text: &str, selection: Selection) -> Edited {
    let chars: Vec<char> = text.chars().collect();
    if selection.is_empty() {
        let at = selection.head;
        let column = at - line_start(&chars, at);
        let spaces = INDENT - column % INDENT;
        let mut edited = apply(
            &chars,
            &[Change::insert(at, &" ".repeat(spaces))],
            selection,
        );
        edited.selection = Selection::cursor(at + spaces);
        return edited;
    }
    let changes: Vec<Change> = touched_lines(&chars, selection)
        .filter(|&start| line_end(&chars, start) > start)
        .map(|start| Change::insert(start, &" ".repeat(INDENT)))
        .collect();
    apply(&chars, &changes, selection)
}

/// Shift+Tab: one indentation level less on every line the cursor or selection touches.
pub fn dedent(text: &str, selection: Selection) -> Edited {
    let chars: Vec<char> = text.chars().collect();
    let changes: Vec<Change> = touched_lines(&chars, selection)
        .filter_map(|start| {
            let removable = if chars.get(start) == Some(&'\t') {
                1
            } else {
                chars[start..]
                    .iter()
                    .take(INDENT)
                    .take_while(|c| **c == ' ')
                    .count()
            };
            (removable > 0).then(|| Change::remove(start, removable))
        })
        .collect();
    apply(&chars, &changes, selection)
}

/// Return: a new line indented as this one, one level deeper after an opener (`:` in Python), one
/// level shallower after a statement that ends its block (`return`).
pub fn newline(text: &str, selection: Selection, syntax: Syntax) -> Edited {
    let chars: Vec<char> = text.chars().collect();
    let at = selection.start();
    let start = line_start(&chars, at);
    let before: String = chars[start..at].iter().collect();
    let leading = before
        .chars()
        .take_while(|c| *c == ' ' || *c == '\t')
        .count();
    let mut indentation = before.chars().take(leading).collect::<String>();
    let code = strip_comment(&before, syntax.comment);
    let code = code.trim();
    if code.ends_with(syntax.openers) {
        indentation.push_str(&" ".repeat(INDENT));
    } else if syntax.block_enders.iter().any(|word| {
        code.strip_prefix(word)
            .is_some_and(|rest| rest.is_empty() || !rest.starts_with(is_identifier_char))
    }) {
        let keep = indentation.len().saturating_sub(INDENT);
        indentation.truncate(keep);
    }
    let change = Change {
        at,
        removed: selection.end() - at,
        inserted: format!("\n{indentation}"),
    };
    let mut edited = apply(&chars, &[change], Selection::cursor(at));
    edited.selection = Selection::cursor(at + 1 + indentation.chars().count());
    edited
}

/// Backspace with the cursor in a line's leading spaces: back to the previous indentation level.
/// `None` when it is an ordinary Backspace (egui's own).
pub fn backspace(text: &str, selection: Selection) -> Option<Edited> {
    if !selection.is_empty() {
        return None;
    }
    let chars: Vec<char> = text.chars().collect();
    let at = selection.head;
    let start = line_start(&chars, at);
    let column = at - start;
    if column == 0 || chars[start..at].iter().any(|c| *c != ' ') {
        return None;
    }
    let removed = (column - 1) % INDENT + 1;
    Some(apply(
        &chars,
        &[Change::remove(at - removed, removed)],
        selection,
    ))
}

/// Ctrl+/: comments out the lines the selection touches, or uncomments them when every one that has
/// code is a comment already. The comment mark goes at the lines' common indentation, so the block
/// keeps its shape.
pub fn toggle_comment(text: &str, selection: Selection, syntax: Syntax) -> Edited {
    let chars: Vec<char> = text.chars().collect();
    let mark = syntax.comment;
    let lines: Vec<(usize, String)> = touched_lines(&chars, selection)
        .map(|start| {
            (
                start,
                chars[start..line_end(&chars, start)].iter().collect(),
            )
        })
        .collect();
    let code_lines = || lines.iter().filter(|(_, line)| !line.trim().is_empty());
    let commented = code_lines().all(|(_, line)| line.trim_start().starts_with(mark));
    let changes: Vec<Change> = if commented {
        code_lines()
            .map(|(start, line)| {
                let indent = line.chars().take_while(|c| c.is_whitespace()).count();
                let after: String = line.chars().skip(indent + mark.chars().count()).collect();
                let space = usize::from(after.starts_with(' '));
                Change::remove(start + indent, mark.chars().count() + space)
            })
            .collect()
    } else {
        let indent = code_lines()
            .map(|(_, line)| line.chars().take_while(|c| c.is_whitespace()).count())
            .min()
            .unwrap_or(0);
        code_lines()
            .map(|(start, _)| Change::insert(start + indent, &format!("{mark} ")))
            .collect()
    };
    apply(&chars, &changes, selection)
}

/// One replacement: `removed` characters at `at` give way to `inserted`.
struct Change {
    at: usize,
    removed: usize,
    inserted: String,
}

impl Change {
    fn insert(at: usize, text: &str) -> Self {
        Self {
            at,
            removed: 0,
            inserted: text.to_owned(),
        }
    }

    fn remove(at: usize, count: usize) -> Self {
        Self {
            at,
            removed: count,
            inserted: String::new(),
        }
    }
}

/// Applies changes (in order, not overlapping) and carries the selection along: a position before or
/// at a change stays, one after it moves with the text, one inside removed text goes to its start.
fn apply(chars: &[char], changes: &[Change], selection: Selection) -> Edited {
    let mut text = String::with_capacity(chars.len() + 16);
    let mut next = 0;
    for change in changes {
        text.extend(&chars[next..change.at]);
        text.push_str(&change.inserted);
        next = change.at + change.removed;
    }
    text.extend(&chars[next.min(chars.len())..]);
    let map = |p: usize| {
        let mut moved = p;
        for change in changes {
            if p <= change.at {
                break;
            }
            let inserted = change.inserted.chars().count();
            if p >= change.at + change.removed {
                moved = moved + inserted - change.removed;
            } else {
                moved -= p - change.at;
                break;
            }
        }
        moved
    };
    Edited {
        text,
        selection: Selection {
            anchor: map(selection.anchor),
            head: map(selection.head),
        },
    }
}

fn line_start(chars: &[char], at: usize) -> usize {
    chars[..at.min(chars.len())]
        .iter()
        .rposition(|c| *c == '\n')
        .map_or(0, |i| i + 1)
}

fn line_end(chars: &[char], start: usize) -> usize {
    chars[start..]
        .iter()
        .position(|c| *c == '\n')
        .map_or(chars.len(), |i| start + i)
}

/// The start of every line the selection touches. A selection that ends at the very start of a line
/// (a whole line selected, with its line break) does not touch that line.
fn touched_lines(chars: &[char], selection: Selection) -> impl Iterator<Item = usize> + '_ {
    let first = line_start(chars, selection.start());
    let mut end = selection.end();
    if end > selection.start() && line_start(chars, end) == end {
        end -= 1;
    }
    let last = line_start(chars, end);
    std::iter::once(first).chain(
        chars[first..last]
            .iter()
            .enumerate()
            .filter(|(_, c)| **c == '\n')
            .map(move |(i, _)| first + i + 1),
    )
}

/// The line without a trailing comment (a comment mark inside a string literal is not one).
fn strip_comment<'a>(line: &'a str, mark: &str) -> &'a str {
    let mut quote = None;
    let mut escaped = false;
    for (i, c) in line.char_indices() {
        match quote {
            Some(_) if escaped => escaped = false,
            Some(_) if c == '\\' => escaped = true,
            Some(q) if c == q => quote = None,
            None if c == '"' || c == '\'' => quote = Some(c),
            None if line[i..].starts_with(mark) => return &line[..i],
            Some(_) | None => {}
        }
    }
    line
}

fn is_identifier_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `|` marks the cursor; `[` and `]` a selection (anchor at `[`, cursor at `]`).
    fn parse(marked: &str) -> (String, Selection) {
        let mut text = String::new();
        let (mut anchor, mut head) = (None, None);
        for c in marked.chars() {
            let at = text.chars().count();
            match c {
                '|' => {
                    anchor = Some(at);
                    head = Some(at);
                }
                '[' => anchor = Some(at),
                ']' => head = Some(at),
                _ => text.push(c),
            }
        }
        let anchor = anchor.expect("the test marks a cursor");
        let head = head.unwrap_or(anchor);
        (text, Selection { anchor, head })
    }

    fn show(edited: &Edited) -> String {
        let mut out = String::new();
        let Selection { anchor, head } = edited.selection;
        for (i, c) in edited.text.chars().chain(std::iter::once('\0')).enumerate() {
            if anchor == head && i == head {
                out.push('|');
            } else if i == anchor {
                out.push('[');
            } else if i == head {
                out.push(']');
            }
            if c != '\0' {
                out.push(c);
            }
        }
        out
    }

    fn tab(marked: &str) -> String {
        let (text, selection) = parse(marked);
        show(&indent(&text, selection))
    }

    fn shift_tab(marked: &str) -> String {
        let (text, selection) = parse(marked);
        show(&dedent(&text, selection))
    }

    fn enter(marked: &str) -> String {
        let (text, selection) = parse(marked);
        show(&newline(&text, selection, Syntax::PYTHON))
    }

    fn comment(marked: &str) -> String {
        let (text, selection) = parse(marked);
        show(&toggle_comment(&text, selection, Syntax::PYTHON))
    }

    #[test]
    fn tab_inserts_spaces_to_the_next_level_never_a_tab_character() {
        assert_eq!(tab("|x"), "    |x");
        assert_eq!(tab("ab|c"), "ab  |c");
        assert_eq!(tab("    |x"), "        |x");
    }

    #[test]
    fn tab_on_a_selection_indents_every_line_it_touches() {
        assert_eq!(tab("[a\nb\n]c"), "[    a\n    b\n]c");
        assert_eq!(tab("a[a\nb]b"), "    a[a\n    b]b");
        // An empty line in the selection gets no trailing spaces.
        assert_eq!(tab("[a\n\nb]"), "[    a\n\n    b]");
    }

    #[test]
    fn shift_tab_removes_one_level_from_each_line() {
        assert_eq!(shift_tab("        x|"), "    x|");
        assert_eq!(shift_tab("  x|"), "x|");
        assert_eq!(shift_tab("\tx|"), "x|");
        assert_eq!(shift_tab("x|"), "x|");
        assert_eq!(shift_tab("[    a\n      b]"), "[a\n  b]");
        assert_eq!(shift_tab("    a|b"), "a|b");
    }

    #[test]
    fn return_keeps_the_indentation_and_adds_a_level_after_a_colon() {
        assert_eq!(enter("    x = 1|"), "    x = 1\n    |");
        assert_eq!(
            enter("def main(block_input, backpack):|"),
            "def main(block_input, backpack):\n    |"
        );
        assert_eq!(
            enter("    if x:  # check|"),
            "    if x:  # check\n        |"
        );
        assert_eq!(enter("    f(a,|"), "    f(a,\n    |");
        assert_eq!(enter("    items = {|"), "    items = {\n        |");
        // A `#` inside a string is no comment: the line does not end with a colon.
        assert_eq!(enter("    s = \"a: #\"|"), "    s = \"a: #\"\n    |");
    }

    #[test]
    fn return_after_a_statement_that_ends_its_block_goes_one_level_back() {
        assert_eq!(enter("        return x|"), "        return x\n    |");
        assert_eq!(enter("        pass|"), "        pass\n    |");
        assert_eq!(enter("    returned = 1|"), "    returned = 1\n    |");
    }

    #[test]
    fn return_replaces_a_selection_and_splits_a_line() {
        assert_eq!(enter("    a[bc]d"), "    a\n    |d");
        assert_eq!(enter("  |x"), "  \n  |x");
    }

    #[test]
    fn backspace_in_leading_spaces_goes_back_one_level() {
        let back = |marked: &str| {
            let (text, selection) = parse(marked);
            backspace(&text, selection).map(|e| show(&e))
        };
        assert_eq!(back("        |x").as_deref(), Some("    |x"));
        assert_eq!(back("      |x").as_deref(), Some("    |x"));
        assert_eq!(back("a\n    |").as_deref(), Some("a\n|"));
        assert_eq!(back("    x|"), None);
        assert_eq!(back("|x"), None);
        assert_eq!(back("[    ]x"), None);
    }

    #[test]
    fn ctrl_slash_comments_lines_at_their_common_indentation_and_back() {
        assert_eq!(comment("    a = 1|"), "    # a = 1|");
        assert_eq!(
            comment("[    if x:\n        y()\n]z"),
            "[    # if x:\n    #     y()\n]z"
        );
        assert_eq!(
            comment("[    # if x:\n    #     y()\n]z"),
            "[    if x:\n        y()\n]z"
        );
        // Blank lines are left alone; a mix of code and comments is commented.
        assert_eq!(comment("[a\n\n# b]"), "[# a\n\n# # b]");
    }

    #[test]
    fn other_languages_comment_with_slashes_and_open_braces() {
        let (text, selection) = parse("function f() {|");
        assert_eq!(
            show(&newline(&text, selection, Syntax::OTHER)),
            "function f() {\n    |"
        );
        let (text, selection) = parse("x();|");
        assert_eq!(
            show(&toggle_comment(&text, selection, Syntax::OTHER)),
            "// x();|"
        );
    }
}
