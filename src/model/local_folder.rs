//! The project's local folder, `.braid/` beside the project file: its run history and its environment
//! variable values. Both belong to this machine, never to the shared project, so Braid puts a
//! `.gitignore` in the folder when it makes or uses it: git then leaves the folder out without the
//! user's own `.gitignore` having to know about it (as Python's `venv` and pytest's cache do).
//!
//! The folder and what Braid writes there are its owner's alone (0700 and 0600): the values are
//! secrets, and the history holds every input and result. A link there (a shared copy of a project may
//! carry one) is never followed: Braid would read or write wherever it points.

use std::path::{Path, PathBuf};

/// The folder's name, beside the project file.
pub const FOLDER: &str = ".braid";

/// Permissions of the folder, and of the files Braid makes in it.
#[cfg(unix)]
const FOLDER_MODE: u32 = 0o700;
#[cfg(unix)]
pub const FILE_MODE: u32 = 0o600;

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

/// Whether `dir` is a project's local folder (by its name).
fn is_local_folder(dir: &Path) -> bool {
    dir.file_name().is_some_and(|name| name == FOLDER)
}

/// Creates `dir` (and its parents) to write in. When it is a project's local folder: owner-only (an
/// existing one open to others is closed to them), refused when it is a link, and with its
/// `.gitignore` (see [`ensure_gitignore`]).
pub fn ensure(dir: &Path) -> std::io::Result<()> {
    if !is_local_folder(dir) {
        return std::fs::create_dir_all(dir);
    }
    check_not_a_link(dir)?;
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    let mut builder = std::fs::DirBuilder::new();
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, FOLDER_MODE);
    match builder.create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            check_not_a_link(dir)?;
            make_private(dir, &std::fs::metadata(dir)?);
        }
        Err(e) => return Err(e),
    }
    ensure_gitignore(dir);
    Ok(())
}

/// Refuses `path` when it is a symbolic link: an error naming it.
fn check_not_a_link(path: &Path) -> std::io::Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_symlink() => Err(std::io::Error::other(format!(
            "{} is a symbolic link, which Braid does not follow in its own folder",
            path.display()
        ))),
        _ => Ok(()),
    }
}

/// Refuses a path whose folder is a project's local folder and a link.
pub fn check_folder_of(path: &Path) -> std::io::Result<()> {
    match path.parent() {
        Some(dir) if is_local_folder(dir) => check_not_a_link(dir),
        _ => Ok(()),
    }
}

/// Checks a file in a project's local folder before Braid opens it: when it is there, it must be a
/// regular file, and neither it nor its folder a link. `Ok(false)` when it is not there.
pub fn check_file(path: &Path) -> std::io::Result<bool> {
    check_folder_of(path)?;
    Ok(regular_file(path)?.is_some())
}

/// Like [`check_file`], before Braid opens the file to write: it is also made owner-only when it is
/// open to others.
pub fn check_private_file(path: &Path) -> std::io::Result<bool> {
    check_folder_of(path)?;
    let Some(meta) = regular_file(path)? else {
        return Ok(false);
    };
    make_private(path, &meta);
    Ok(true)
}

/// The file's metadata when it is there and a regular file (not a link); an error when it is
/// something else.
fn regular_file(path: &Path) -> std::io::Result<Option<std::fs::Metadata>> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    check_not_a_link(path)?;
    if !meta.is_file() {
        return Err(std::io::Error::other(format!(
            "{} is not a regular file",
            path.display()
        )));
    }
    Ok(Some(meta))
}

/// Takes the group's and others' permissions away, keeping the owner's. A courtesy, like the
/// `.gitignore`: a file that is not ours, or a read-only file system, keeps what it has.
fn make_private(path: &Path, meta: &std::fs::Metadata) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = meta.permissions().mode();
        if mode & 0o077 != 0 {
            let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode & 0o700));
        }
    }
    #[cfg(not(unix))]
    let _ = (path, meta);
}

/// Writes the folder's `.gitignore` when it is missing, empty, or Braid's own cut short (a full disk
/// while it was written): atomically, so a failure leaves no half-written file. A `.gitignore` of the
/// user's own (any other content, or a link) is left alone. A courtesy: a folder it can't be written to
/// (a read-only copy of a project, whose history is only read) is not an error.
fn ensure_gitignore(dir: &Path) {
    let path = dir.join(".gitignore");
    match std::fs::symlink_metadata(&path) {
        Ok(meta) if !meta.is_file() => return,
        Ok(_) => match std::fs::read(&path) {
            Ok(text) if text.len() < GITIGNORE.len() && GITIGNORE.as_bytes().starts_with(&text) => {
            }
            _ => return,
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(_) => return,
    }
    #[cfg(unix)]
    let mode = FILE_MODE;
    #[cfg(not(unix))]
    let mode = 0o666;
    let _ = super::format::write_atomically(&path, GITIGNORE.as_bytes(), mode);
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

    /// A full disk while the `.gitignore` was written left it empty (or cut short), and git then took
    /// in the history and the secrets: the next use of the folder writes it again.
    #[test]
    fn an_empty_or_cut_short_gitignore_is_written_again() {
        let dir = tempfile::tempdir().unwrap();
        let local = dir.path().join(FOLDER);
        std::fs::create_dir(&local).unwrap();
        for damaged in ["", "# Made by Braid: run his"] {
            std::fs::write(local.join(".gitignore"), damaged).unwrap();
            ensure(&local).unwrap();
            assert_eq!(
                std::fs::read_to_string(local.join(".gitignore")).unwrap(),
                GITIGNORE
            );
        }
        // Nothing left behind by the atomic write.
        let names: Vec<_> = std::fs::read_dir(&local)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, [".gitignore"]);
    }

    #[cfg(unix)]
    fn mode(path: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::symlink_metadata(path)
            .unwrap()
            .permissions()
            .mode()
            & 0o777
    }

    #[cfg(unix)]
    #[test]
    fn the_local_folder_and_its_files_are_their_owners_alone() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let local = dir.path().join(FOLDER);
        ensure(&local).unwrap();
        assert_eq!(mode(&local), 0o700);
        assert_eq!(mode(&local.join(".gitignore")), 0o600);

        // One made open to others (by an earlier Braid) is closed to them when used.
        std::fs::set_permissions(&local, std::fs::Permissions::from_mode(0o755)).unwrap();
        ensure(&local).unwrap();
        assert_eq!(mode(&local), 0o700);
        let history = local.join("p.braid.json.history.sqlite");
        std::fs::write(&history, "").unwrap();
        std::fs::set_permissions(&history, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(check_private_file(&history).unwrap());
        assert_eq!(mode(&history), 0o600);
        assert!(!check_private_file(&local.join("none")).unwrap());
    }

    #[cfg(unix)]
    #[test]
    fn links_in_the_local_folder_are_refused_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let elsewhere = dir.path().join("elsewhere");
        std::fs::create_dir(&elsewhere).unwrap();
        let project = dir.path().join("project");
        std::fs::create_dir(&project).unwrap();
        let local = project.join(FOLDER);
        std::os::unix::fs::symlink(&elsewhere, &local).unwrap();
        let error = ensure(&local).unwrap_err().to_string();
        assert!(
            error.ends_with(
                ".braid is a symbolic link, which Braid does not follow in its own folder"
            ),
            "{error}"
        );
        assert_eq!(std::fs::read_dir(&elsewhere).unwrap().count(), 0);

        std::fs::remove_file(&local).unwrap();
        ensure(&local).unwrap();
        let target = elsewhere.join("empty");
        std::fs::write(&target, "").unwrap();
        let file = local.join("p.braid.json.history.sqlite");
        std::os::unix::fs::symlink(&target, &file).unwrap();
        assert!(check_private_file(&file).is_err());
    }
}
