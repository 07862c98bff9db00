//! Undo and redo as snapshots: before an edit changes the project, the project as it was goes on the undo
//! stack. Quick edits of the same thing (typing, dragging) share one snapshot, so one Ctrl+Z undoes the
//! whole word or the whole drag.
//!
//! History is never saved with the project (it is not `Serialize`, on purpose).

use crate::model::Project;

/// How many steps are kept; older ones are dropped.
const MAX_STEPS: usize = 200;
/// Edits with the same merge key closer together than this are one undo step.
const MERGE_WINDOW_SECS: f64 = 1.0;

#[derive(Default)]
pub struct History {
    undo: Vec<Project>,
    redo: Vec<Project>,
    /// The merge key and time of the last recorded edit.
    last: Option<(String, f64)>,
}

impl History {
    /// Call before applying an edit to `before`. Returns whether a new step was recorded.
    pub fn record(&mut self, before: &Project, merge_key: Option<String>, now_secs: f64) -> bool {
        self.redo.clear();
        let merges = match (&self.last, &merge_key) {
            (Some((last_key, at)), Some(key)) => {
                last_key == key && now_secs - at < MERGE_WINDOW_SECS && !self.undo.is_empty()
            }
            _ => false,
        };
        self.last = merge_key.map(|key| (key, now_secs));
        if merges {
            return false;
        }
        self.undo.push(before.clone());
        if self.undo.len() > MAX_STEPS {
            self.undo.remove(0);
        }
        true
    }

    /// Drops the last recorded step (an edit that turned out to change nothing).
    pub fn forget_last(&mut self) {
        self.undo.pop();
        self.last = None;
    }

    /// The project before the last edit; `current` becomes redoable.
    pub fn undo(&mut self, current: &Project) -> Option<Project> {
        let previous = self.undo.pop()?;
        self.redo.push(current.clone());
        self.last = None;
        Some(previous)
    }

    pub fn redo(&mut self, current: &Project) -> Option<Project> {
        let next = self.redo.pop()?;
        self.undo.push(current.clone());
        self.last = None;
        Some(next)
    }

    pub fn can_undo(&self) -> bool {
        !self.undo.is_empty()
    }

    pub fn can_redo(&self) -> bool {
        !self.redo.is_empty()
    }

    pub fn clear(&mut self) {
        *self = Self::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn named(name: &str) -> Project {
        Project {
            name: name.to_owned(),
            ..Project::default()
        }
    }

    #[test]
    fn quick_edits_of_one_thing_merge() {
        let mut history = History::default();
        assert!(history.record(&named("a"), Some("name".into()), 0.0));
        assert!(!history.record(&named("ab"), Some("name".into()), 0.3));
        assert!(history.record(&named("abc"), Some("name".into()), 2.0));
        assert!(history.record(&named("abcd"), None, 2.1));
        let back = history.undo(&named("abcde")).expect("a step");
        assert_eq!(back.name, "abcd");
        assert_eq!(history.undo(&back).expect("a step").name, "abc");
        assert_eq!(history.undo(&named("abc")).expect("a step").name, "a");
        assert!(!history.can_undo());
        assert_eq!(history.redo(&named("a")).expect("a step").name, "abc");
    }

    #[test]
    fn a_new_edit_clears_redo() {
        let mut history = History::default();
        history.record(&named("a"), None, 0.0);
        let _ = history.undo(&named("b"));
        assert!(history.can_redo());
        history.record(&named("a"), None, 1.0);
        assert!(!history.can_redo());
    }
}
