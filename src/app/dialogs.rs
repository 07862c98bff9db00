//! File dialogs, Braid's own path prompt, and the recent projects list.
//!
//! Native dialogs come from rfd's xdg-desktop-portal backend, shown from a named thread so the window
//! keeps drawing while the dialog is open. With no portal running (and no zenity), rfd returns `None`
//! at once, exactly like Cancel, which would leave the user with a button that does nothing. So an
//! answer of "nothing" that comes back faster than a person can press Cancel means "there is no native
//! dialog": Braid then shows its own path prompt, and keeps using it for the rest of the session.

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::command::FileAction;

/// Faster than anyone closes a real dialog.
const NO_DIALOG_THRESHOLD: Duration = Duration::from_millis(400);
/// How many recent projects the File menu lists.
pub const MAX_RECENT: usize = 10;
/// The key of the recent-projects list in eframe's storage.
pub const RECENT_KEY: &str = "braid.recent_projects";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DialogMode {
    /// The desktop's own dialogs, falling back to Braid's prompt when there are none.
    Native,
    /// Braid's own path prompt only (tests, or `BRAID_FILE_DIALOG=builtin`).
    InApp,
}

impl DialogMode {
    /// `BRAID_FILE_DIALOG=builtin` forces Braid's own prompt.
    pub fn from_env() -> Self {
        match std::env::var("BRAID_FILE_DIALOG") {
            Ok(value) if value == "builtin" => Self::InApp,
            _ => Self::Native,
        }
    }
}

/// Braid's own "type a path" prompt, shown when there is no native dialog.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FilePrompt {
    pub action: FileAction,
    /// The path the prompt starts with.
    pub suggested: PathBuf,
}

/// What the file dialog thread answered.
pub enum DialogOutcome {
    Chosen(FileAction, PathBuf),
    Cancelled,
    /// No native dialog could be shown: use the prompt instead.
    Unavailable(FileAction),
}

struct Pending {
    action: FileAction,
    started: Instant,
    answer: mpsc::Receiver<Option<PathBuf>>,
}

pub struct FileDialogs {
    mode: DialogMode,
    pending: Option<Pending>,
}

impl FileDialogs {
    pub fn new(mode: DialogMode) -> Self {
        Self {
            mode,
            pending: None,
        }
    }

    pub fn is_open(&self) -> bool {
        self.pending.is_some()
    }

    /// Starts a native dialog, or returns `false` when Braid's prompt should be used instead.
    pub fn start(&mut self, action: FileAction, suggested: &Path) -> bool {
        if self.mode == DialogMode::InApp || self.pending.is_some() {
            return self.pending.is_some();
        }
        let (tx, rx) = mpsc::sync_channel(1);
        let directory = suggested
            .parent()
            .filter(|p| p.is_dir())
            .map(Path::to_path_buf);
        let file_name = suggested
            .file_name()
            .map(|n| n.to_string_lossy().into_owned());
        let spawned = std::thread::Builder::new()
            .name("braid-file-dialog".to_owned())
            .spawn(move || {
                let mut dialog = rfd::FileDialog::new()
                    .add_filter("Braid project or Refinery export", &["json"])
                    .add_filter("All files", &["*"]);
                if let Some(directory) = directory {
                    dialog = dialog.set_directory(directory);
                }
                let chosen = match action {
                    FileAction::Open => dialog.set_title("Open project").pick_file(),
                    FileAction::SaveAs => {
                        if let Some(name) = file_name {
                            dialog = dialog.set_file_name(name);
                        }
                        dialog.set_title("Save project as").save_file()
                    }
                };
                let _ = tx.send(chosen);
            });
        if spawned.is_err() {
            self.mode = DialogMode::InApp;
            return false;
        }
        self.pending = Some(Pending {
            action,
            started: Instant::now(),
            answer: rx,
        });
        true
    }

    /// The dialog's answer, once there is one.
    pub fn poll(&mut self) -> Option<DialogOutcome> {
        let pending = self.pending.as_ref()?;
        let answer = match pending.answer.try_recv() {
            Ok(answer) => answer,
            Err(mpsc::TryRecvError::Empty) => return None,
            Err(mpsc::TryRecvError::Disconnected) => None,
        };
        let action = pending.action;
        let quick = pending.started.elapsed() < NO_DIALOG_THRESHOLD;
        self.pending = None;
        Some(match answer {
            Some(path) => DialogOutcome::Chosen(action, path),
            None if quick => {
                self.mode = DialogMode::InApp;
                DialogOutcome::Unavailable(action)
            }
            None => DialogOutcome::Cancelled,
        })
    }
}

/// Puts `path` first in the recent list, without duplicates.
pub fn push_recent(recent: &mut Vec<PathBuf>, path: &Path) {
    let path = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_owned());
    recent.retain(|p| p != &path);
    recent.insert(0, path);
    recent.truncate(MAX_RECENT);
}

/// The recent list as stored (JSON text), tolerant of anything unreadable.
pub fn recent_from_storage(text: Option<String>) -> Vec<PathBuf> {
    text.and_then(|t| serde_json::from_str::<Vec<PathBuf>>(&t).ok())
        .unwrap_or_default()
}

/// The file name Save As suggests for a project that has no Braid file yet.
pub fn suggested_file_name(project_name: &str, imported_from: Option<&Path>) -> String {
    if let Some(stem) = imported_from
        .and_then(Path::file_stem)
        .map(|s| s.to_string_lossy().into_owned())
    {
        return format!("{stem}.braid.json");
    }
    let slug: String = project_name
        .chars()
        .map(|c| {
            if c.is_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    let slug = slug.trim_matches('-');
    if slug.is_empty() {
        "project.braid.json".to_owned()
    } else {
        format!("{slug}.braid.json")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recent_list_is_most_recent_first_without_duplicates() {
        let mut recent = vec![PathBuf::from("/nonexistent/a.json")];
        push_recent(&mut recent, Path::new("/nonexistent/b.json"));
        push_recent(&mut recent, Path::new("/nonexistent/a.json"));
        assert_eq!(
            recent,
            [
                PathBuf::from("/nonexistent/a.json"),
                PathBuf::from("/nonexistent/b.json")
            ]
        );
        let text = serde_json::to_string(&recent).expect("paths serialise");
        assert_eq!(recent_from_storage(Some(text)), recent);
        assert!(recent_from_storage(Some("garbage".into())).is_empty());
    }

    #[test]
    fn suggested_names() {
        assert_eq!(
            suggested_file_name("Map-reduce: double", None),
            "map-reduce--double.braid.json"
        );
        assert_eq!(
            suggested_file_name("x", Some(Path::new("/a/export.json"))),
            "export.braid.json"
        );
        assert_eq!(suggested_file_name("???", None), "project.braid.json");
    }
}
