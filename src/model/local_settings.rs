//! A project's settings that belong to this machine rather than to the project: where its runs go from
//! the editor. They live in `.braid/<project file>.settings.json` beside the project, never in the project
//! file: where a run executes is a choice of the run, not of the pipeline.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocalSettings {
    /// The Dask scheduler's address last given in the run dialog; kept when runs go back to this
    /// machine, so choosing the cluster again does not mean typing it again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    /// Whether the editor's runs go to that cluster.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub run_on_cluster: bool,
}

pub fn path_for_project(project_file: &Path) -> PathBuf {
    super::local_folder::file_for_project(project_file, ".settings.json")
}

/// The project's settings; the defaults (this machine) when there are none. A file that can't be read
/// is as good as none, and says why.
pub fn load(project_file: &Path) -> (LocalSettings, Option<String>) {
    let path = path_for_project(project_file);
    match std::fs::read(&path) {
        Ok(bytes) => match serde_json::from_slice(&bytes) {
            Ok(settings) => (settings, None),
            Err(e) => (
                LocalSettings::default(),
                Some(format!(
                    "{} is not readable ({e}); runs go to this machine",
                    path.display()
                )),
            ),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => (LocalSettings::default(), None),
        Err(e) => (
            LocalSettings::default(),
            Some(format!("can't read {}: {e}", path.display())),
        ),
    }
}

/// Writes the project's settings (whole or not at all), making `.braid/` if need be.
pub fn save(project_file: &Path, settings: &LocalSettings) -> std::io::Result<()> {
    let path = path_for_project(project_file);
    if let Some(dir) = path.parent() {
        super::local_folder::ensure(dir)?;
    }
    let mut text = serde_json::to_string_pretty(settings).map_err(std::io::Error::other)?;
    text.push('\n');
    super::format::write_atomically(&path, text.as_bytes(), 0o666)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cluster_a_project_runs_on_is_kept_beside_it_not_in_it() {
        let dir = tempfile::tempdir().unwrap();
        let project = dir.path().join("p.braid.json");
        assert_eq!(load(&project), (LocalSettings::default(), None));
        let settings = LocalSettings {
            cluster: Some("tcp://127.0.0.1:8786".to_owned()),
            run_on_cluster: true,
        };
        save(&project, &settings).unwrap();
        assert_eq!(load(&project), (settings, None));
        assert!(
            dir.path()
                .join(".braid/p.braid.json.settings.json")
                .is_file()
        );
        assert!(!project.exists(), "the project file is not touched");
    }

    #[test]
    fn an_unreadable_settings_file_means_this_machine_and_says_why() {
        let dir = tempfile::tempdir().unwrap();
        let project = dir.path().join("p.braid.json");
        let path = path_for_project(&project);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, "{ not json").unwrap();
        let (settings, problem) = load(&project);
        assert_eq!(settings, LocalSettings::default());
        assert!(problem.unwrap().contains("runs go to this machine"));
    }
}
