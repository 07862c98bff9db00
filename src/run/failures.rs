//! Failures grouped by what went wrong: an exception type and the shape of its message, so that
//! `KeyError: 'city'` three hundred times is one line, not three hundred.

use serde::{Deserialize, Serialize};

use super::{InvocationId, InvocationRow};

/// The shape of an error summary (`ValueError: bad row 17`): its numbers, addresses and long hex ids
/// replaced by `#`, so errors that differ only in which row, id or time they name fall together, while
/// the words and quoted names (`KeyError: 'city'` against `KeyError: 'day'`) keep them apart.
pub fn failure_shape(summary: &str) -> String {
    let mut shape = String::with_capacity(summary.len());
    let mut chars = summary.chars().peekable();
    // A number starts only after something that is not part of a word: `x1` and `utf8` stay words.
    let mut after_word = false;
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() && !after_word {
            // The whole number: digits, with hex letters, dots, and the `x` of `0x…`.
            while chars
                .peek()
                .is_some_and(|n| n.is_ascii_hexdigit() || *n == '.' || *n == 'x')
            {
                chars.next();
            }
            shape.push('#');
            after_word = false;
            continue;
        }
        after_word = c.is_alphanumeric() || c == '_';
        shape.push(c);
    }
    shape
}

/// Failed invocations that share an error type and shape.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailureGroup {
    /// The shape (see [`failure_shape`]), which names the group.
    pub shape: String,
    /// The first failure's own summary, as an example.
    pub example: String,
    pub count: u64,
    /// The failure with the lowest invocation id: where "jump to the first" goes.
    pub first: InvocationId,
}

/// Failed rows grouped as they come: [`Self::add`] takes rows one at a time (a run's rows grow while it
/// goes), [`Self::sorted`] gives the groups.
#[derive(Clone, Debug, Default)]
pub struct FailureGroups {
    groups: Vec<FailureGroup>,
    index: std::collections::HashMap<String, usize>,
}

impl FailureGroups {
    /// Counts a row in its group, if it failed (exception or timed out).
    pub fn add(&mut self, row: &InvocationRow) {
        if !row.status.is_failure() {
            return;
        }
        let summary = row.error_summary.as_deref().unwrap_or(row.status.label());
        let shape = failure_shape(summary);
        if let Some(&at) = self.index.get(&shape) {
            let group = &mut self.groups[at];
            group.count += 1;
            if row.id < group.first {
                group.first = row.id;
                summary.clone_into(&mut group.example);
            }
        } else {
            self.index.insert(shape.clone(), self.groups.len());
            self.groups.push(FailureGroup {
                shape,
                example: summary.to_owned(),
                count: 1,
                first: row.id,
            });
        }
    }

    /// The groups, the largest first (ties: the one whose first failure came first).
    pub fn sorted(&self) -> Vec<FailureGroup> {
        let mut groups = self.groups.clone();
        groups.sort_by(|a, b| b.count.cmp(&a.count).then(a.first.cmp(&b.first)));
        groups
    }
}

/// The failed rows (exception or timed out) grouped by shape, the largest group first.
pub fn failure_groups<'a>(rows: impl IntoIterator<Item = &'a InvocationRow>) -> Vec<FailureGroup> {
    let mut groups = FailureGroups::default();
    for row in rows {
        groups.add(row);
    }
    groups.sorted()
}

/// Whether a row is in the failure group of this shape.
pub fn in_failure_group(row: &InvocationRow, shape: &str) -> bool {
    row.status.is_failure()
        && failure_shape(row.error_summary.as_deref().unwrap_or(row.status.label())) == shape
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::InvocationStatus;

    #[test]
    fn numbers_and_ids_are_the_variable_part_of_a_message() {
        assert_eq!(
            failure_shape("ValueError: bad row 17 at 0x7f3a2c"),
            "ValueError: bad row # at #"
        );
        assert_eq!(failure_shape("KeyError: 'city'"), "KeyError: 'city'");
        assert_eq!(
            failure_shape("TimeoutError: took 2.5 s (limit 2)"),
            "TimeoutError: took # s (limit #)"
        );
        // Digits inside a word are the word's.
        assert_eq!(
            failure_shape("UnicodeDecodeError: 'utf8' codec"),
            "UnicodeDecodeError: 'utf8' codec"
        );
    }

    fn failed(id: InvocationId, summary: &str) -> InvocationRow {
        InvocationRow {
            status: InvocationStatus::Exception,
            error_summary: Some(summary.to_owned()),
            ..InvocationRow::succeeded(id, 0.0, 1.0)
        }
    }

    #[test]
    fn failures_group_by_shape_largest_first_with_their_first_failure() {
        let rows = [
            failed(9, "ValueError: bad row 9"),
            failed(3, "KeyError: 'city'"),
            InvocationRow::succeeded(4, 0.0, 1.0),
            failed(5, "KeyError: 'city'"),
            failed(2, "ValueError: bad row 2"),
            failed(7, "KeyError: 'day'"),
            failed(8, "KeyError: 'city'"),
        ];
        let groups = failure_groups(&rows);
        let seen: Vec<(&str, u64, InvocationId, &str)> = groups
            .iter()
            .map(|g| (g.shape.as_str(), g.count, g.first, g.example.as_str()))
            .collect();
        assert_eq!(
            seen,
            [
                ("KeyError: 'city'", 3, 3, "KeyError: 'city'"),
                ("ValueError: bad row #", 2, 2, "ValueError: bad row 2"),
                ("KeyError: 'day'", 1, 7, "KeyError: 'day'"),
            ]
        );
        assert!(in_failure_group(&rows[0], "ValueError: bad row #"));
        assert!(!in_failure_group(&rows[2], "ValueError: bad row #"));
    }
}
