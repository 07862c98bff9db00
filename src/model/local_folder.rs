//! The project's local folder, `.braid/` beside the project file: its run history and its environment
//! variable values. Both belong to this machine, never to the shared project, so Braid puts a
//! `.gitignore` in the folder when it makes or uses it: git then leaves the folder out without the
//! user's own `.gitignore` having to know about it (as Python's `venv` and pytest's cache do).

use std::io::Write as _;
use std::path::{Path, PathBuf};

/// The folder's name, beside the project file.
pub const FOLDER: &str = ".braid";

const GITIGNORE: &str =
    "# Made by Braid: run history and environment variable values (secrets) of this machine.\n*\n";

/// `<project folder>/.braid/<project file name><suffix>`.
pub fn file_for_project(project_file: &Path, suffix: &str) -> PathBuf {
    let dir = project_file.parent().unwrap_or_else(|| Path::new("."));
    let name = project_file
        .file_name()
        .map_or_else(|| "project".into(), |n| n.to_string_lossy().into_owned());
    dir.join(FOLDER).join(format!("{name}{suffix}"))
}

/// The folder a project's blocks run in: the project file's own, as an absolute path, so that data
/// beside the project is found however Braid was started.
pub fn working_dir(project_file: &Path) -> Option<PathBuf> {
    std::path::absolute(project_file)
        .ok()?
        .parent()
        .map(Path::to_path_buf)
}

/// Creates `dir` (and its parents). When it is a project's local folder, also its `.gitignore`, unless
/// one is there already (the user's own wins). The `.gitignore` is a courtesy: a folder it can't be
/// written to (a read-only copy of a project, whose history is only read) is not an error.
pub fn ensure(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    if dir.file_name().is_some_and(|name| name == FOLDER)
        && let Ok(mut file) = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(dir.join(".gitignore"))
    {
        let _ = file.write_all(GITIGNORE.as_bytes());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_local_folder_keeps_itself_out_of_git() {
        let dir = tempfile::tempdir().unwrap();
        let local = dir.path().join("sub").join(FOLDER);
        ensure(&local).unwrap();
        let ignore = std::fs::read_to_string(local.join(".gitignore")).unwrap();
        assert!(ignore.lines().any(|line| line == "*"), "{ignore}");

        // The user's own file stays as it is.
        std::fs::write(local.join(".gitignore"), "history only\n").unwrap();
        ensure(&local).unwrap();
        assert_eq!(
            std::fs::read_to_string(local.join(".gitignore")).unwrap(),
            "history only\n"
        );

        // Any other folder (a history database put elsewhere) gets no `.gitignore`.
        let elsewhere = dir.path().join("histories");
        ensure(&elsewhere).unwrap();
        assert!(elsewhere.is_dir());
        assert!(!elsewhere.join(".gitignore").exists());
    }
}
