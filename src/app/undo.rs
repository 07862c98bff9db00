//! Undo and redo as snapshots: before an edit changes the project, the project as it was goes on the undo
//! stack. Quick edits of the same thing (typing, dragging) share one snapshot, so one Ctrl+Z undoes the
//! whole word or the whole drag.
//!
//! The undo stack is never saved with the project (it is not `Serialize`, on purpose). It is named for
//! what it is: the run history is the runtime's (`crate::runtime::history::History`).

use crate::model::Project;

/// How many steps are kept; older ones are dropped.
const MAX_STEPS: usize = 200;
/// Edits with the same merge key closer together than this are one undo step.
const MERGE_WINDOW_SECS: f64 = 1.0;

#[derive(Default)]
pub struct UndoStack {
    undo: Vec<Project>,
    redo: Vec<Project>,
    /// The merge key and time of the last recorded edit.
    last: Option<(String, f64)>,
}

impl UndoStack {
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
        let mut undo = UndoStack::default();
        assert!(undo.record(&named("a"), Some("name".into()), 0.0));
        assert!(!undo.record(&named("ab"), Some("name".into()), 0.3));
        assert!(undo.record(&named("abc"), Some("name".into()), 2.0));
        assert!(undo.record(&named("abcd"), None, 2.1));
        let back = undo.undo(&named("abcde")).expect("a step");
        assert_eq!(back.name, "abcd");
        assert_eq!(undo.undo(&back).expect("a step").name, "abc");
        assert_eq!(undo.undo(&named("abc")).expect("a step").name, "a");
        assert!(!undo.can_undo());
        assert_eq!(undo.redo(&named("a")).expect("a step").name, "abc");
    }

    #[test]
    fn a_new_edit_clears_redo() {
        let mut undo = UndoStack::default();
        undo.record(&named("a"), None, 0.0);
        let _ = undo.undo(&named("b"));
        assert!(undo.can_redo());
        undo.record(&named("a"), None, 1.0);
        assert!(!undo.can_redo());
    }
}
