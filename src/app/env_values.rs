//! The values of the project's environment variables as the inspector shows them: from the project's
//! values file (`.braid/<project file>.env`), re-read when it changes on disk, else from Braid's own
//! environment. The values never go into the project file or its undo history.

use super::disk::FileWatch;
use crate::model::env_file;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Where a declared variable's value comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ValueSource<'a> {
    /// The project's values file.
    File(&'a str),
    /// The environment Braid was started in (its value is not shown: it may be a secret too).
    Environment,
    /// Nowhere: the block's code won't find it in `os.environ`.
    Missing,
}

#[derive(Debug, Default)]
pub struct EnvValues {
    /// The project these values are from.
    project: Option<PathBuf>,
    /// Its values file, as last read.
    watch: FileWatch,
    values: BTreeMap<String, String>,
    /// Lines of the values file that could not be read, as messages.
    pub problems: Vec<String>,
}

impl EnvValues {
    /// Reads the values file again when the project's path changed, when `force`, or, at most once a
    /// second, when the file changed on disk.
    pub fn refresh(&mut self, project_file: Option<&Path>, now_secs: f64, force: bool) {
        let moved = project_file != self.project.as_deref();
        if moved {
            self.project = project_file.map(Path::to_path_buf);
        }
        let Some(project) = project_file else {
            if moved {
                self.values.clear();
                self.problems.clear();
            }
            return;
        };
        if !(moved || force || self.watch.due(now_secs)) {
            return;
        }
        let file = env_file::path_for_project(project);
        if moved || force {
            self.watch.seen(&file, now_secs);
        } else if self.watch.changed(&file, now_secs).is_none() {
            return;
        }
        (self.values, self.problems) = env_file::file_values(project);
    }

    pub fn source(&self, name: &str) -> ValueSource<'_> {
        match self.values.get(name) {
            Some(value) => ValueSource::File(value),
            None if std::env::var_os(name).is_some() => ValueSource::Environment,
            None => ValueSource::Missing,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_come_from_the_file_and_follow_its_changes() {
        let dir = tempfile::tempdir().unwrap();
        let project = dir.path().join("p.braid.json");
        let mut values = EnvValues::default();
        values.refresh(Some(&project), 0.0, false);
        assert_eq!(
            values.source("BRAID_TEST_NOT_SET_ANYWHERE"),
            ValueSource::Missing
        );
        assert_eq!(values.source("PATH"), ValueSource::Environment);

        env_file::save_value(&project, "API_KEY", Some("one")).unwrap();
        values.refresh(Some(&project), 0.5, false);
        assert_eq!(
            values.source("API_KEY"),
            ValueSource::Missing,
            "checked once a second"
        );
        values.refresh(Some(&project), 1.5, false);
        assert_eq!(values.source("API_KEY"), ValueSource::File("one"));

        // Written by another program: seen at the next look.
        std::fs::write(
            env_file::path_for_project(&project),
            "API_KEY=two\nPATH=x\n",
        )
        .unwrap();
        values.refresh(Some(&project), 2.6, false);
        assert_eq!(values.source("API_KEY"), ValueSource::File("two"));
        assert_eq!(
            values.source("PATH"),
            ValueSource::File("x"),
            "the file wins"
        );

        values.refresh(None, 2.7, false);
        assert_eq!(
            values.source("API_KEY"),
            ValueSource::Missing,
            "another project"
        );
    }
}
