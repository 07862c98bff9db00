//! The project's file: new, open, save, "discard unsaved changes?", the file dialogs' answers, changes
//! other programs make to the file, and the variables' values kept beside it.

use std::path::{Path, PathBuf};

use super::command::{FileAction, FileCommand, RunOptions};
use super::dialogs::{self, DialogOutcome, FilePrompt};
use super::{App, NoticeLevel, PendingAction, Selection, file_name};
use crate::model::Project;
use crate::model::format::{Origin, load_project, save_project};

impl App {
    pub(super) fn file_command(&mut self, command: FileCommand, now_secs: f64) {
        match command {
            FileCommand::New => self.guard_unsaved(PendingAction::New, now_secs),
            FileCommand::ShowDialog(FileAction::Open) => {
                self.guard_unsaved(PendingAction::OpenDialog, now_secs);
            }
            FileCommand::ShowDialog(FileAction::SaveAs) => self.show_dialog(FileAction::SaveAs),
            FileCommand::Open(path) => {
                self.file_prompt = None;
                self.guard_unsaved(PendingAction::Open(path), now_secs);
            }
            FileCommand::Save => {
                self.save(now_secs);
            }
            FileCommand::SaveAs(path) => {
                self.file_prompt = None;
                self.save_to(path, now_secs);
            }
            FileCommand::CancelPrompt => {
                self.file_prompt = None;
                self.continue_after_save = None;
            }
            FileCommand::ConfirmDiscard(discard) => {
                if let Some(action) = self.confirm.take()
                    && discard
                {
                    self.do_pending(action, now_secs);
                }
            }
            FileCommand::SaveThenContinue => {
                if let Some(action) = self.confirm.take() {
                    if self.path.is_some() {
                        if self.save(now_secs) {
                            self.do_pending(action, now_secs);
                        }
                    } else {
                        self.continue_after_save = Some(action);
                        self.show_dialog(FileAction::SaveAs);
                    }
                }
            }
            FileCommand::ForgetRecent(path) => self.recent.retain(|p| p != &path),
            FileCommand::Quit => self.guard_unsaved(PendingAction::Quit, now_secs),
            FileCommand::SetEnvValue { name, value } => {
                self.set_env_value(&name, value.as_deref(), now_secs);
            }
        }
    }

    /// Opens a project file at start-up (from the command line).
    pub fn open_at_start(&mut self, path: &Path) {
        self.open_file(path, 0.0);
    }

    fn guard_unsaved(&mut self, action: PendingAction, now_secs: f64) {
        if self.is_dirty() && !(action == PendingAction::Quit && self.quit_confirmed) {
            self.confirm = Some(action);
        } else {
            self.do_pending(action, now_secs);
        }
    }

    fn do_pending(&mut self, action: PendingAction, now_secs: f64) {
        match action {
            PendingAction::New => self.replace_project(Project::default(), None, None, now_secs),
            PendingAction::Open(path) => self.open_file(&path, now_secs),
            PendingAction::OpenDialog => self.show_dialog(FileAction::Open),
            PendingAction::Quit => {
                self.quit_confirmed = true;
                self.close_requested = true;
            }
        }
    }

    fn show_dialog(&mut self, action: FileAction) {
        let suggested = self.suggested_path(action);
        if !self.dialogs.start(action, &suggested) {
            self.file_prompt = Some(FilePrompt { action, suggested });
        }
    }

    fn suggested_path(&self, action: FileAction) -> PathBuf {
        let dir = self
            .path
            .as_deref()
            .or(self.imported_from.as_deref())
            .and_then(Path::parent)
            .map(Path::to_path_buf)
            .or_else(|| std::env::current_dir().ok())
            .unwrap_or_default();
        match (action, &self.path) {
            (FileAction::SaveAs, Some(path)) => path.clone(),
            (FileAction::SaveAs, None) => dir.join(dialogs::suggested_file_name(
                &self.project.name,
                self.imported_from.as_deref(),
            )),
            (FileAction::Open, _) => dir.join(""),
        }
    }

    pub(super) fn dialog_answered(&mut self, outcome: DialogOutcome, now_secs: f64) {
        match outcome {
            DialogOutcome::Chosen(FileAction::Open, path) => self.open_file(&path, now_secs),
            DialogOutcome::Chosen(FileAction::SaveAs, path) => {
                self.save_to(path, now_secs);
            }
            DialogOutcome::Cancelled => self.continue_after_save = None,
            DialogOutcome::Unavailable(action) => {
                self.notify(
                    NoticeLevel::Info,
                    "No system file dialog is available here (no xdg-desktop-portal); type a path \
                     instead.",
                    now_secs,
                );
                let suggested = self.suggested_path(action);
                self.file_prompt = Some(FilePrompt { action, suggested });
            }
        }
    }

    /// Opens a project. Loading only parses: no code runs.
    fn open_file(&mut self, path: &Path, now_secs: f64) {
        // Absolute from here on: the title, the recent list and the file prompt's folder all derive
        // from it, and a relative path has no folder to show.
        let path = &std::path::absolute(path).unwrap_or_else(|_| path.to_owned());
        match load_project(path) {
            Ok(loaded) => {
                let (saved_path, imported) = match loaded.origin {
                    Origin::Braid => (Some(path.to_owned()), None),
                    // Saving must not overwrite the export with another format: Save asks for a file.
                    Origin::Refinery => (None, Some(path.to_owned())),
                };
                dialogs::push_recent(&mut self.recent, path);
                self.replace_project(loaded.project, saved_path, imported, now_secs);
                if let Some(path) = &self.path {
                    self.disk.seen(path, now_secs);
                }
                self.open_history(false, now_secs);
            }
            Err(e) => self.notify(NoticeLevel::Error, format!("Could not open {e}"), now_secs),
        }
    }

    fn replace_project(
        &mut self,
        project: Project,
        path: Option<PathBuf>,
        imported_from: Option<PathBuf>,
        now_secs: f64,
    ) {
        self.stop_run();
        // The project served is the one going away.
        self.stop_serving(now_secs);
        self.run = None;
        self.saved = project.clone();
        self.project = project;
        self.path = path;
        self.imported_from = imported_from;
        self.undo_stack.clear();
        self.selection = Selection::default();
        self.compile_errors.clear();
        self.run_options = RunOptions::default();
        // What was said about the project before is about another project now.
        self.notices.clear();
        self.executions.set_history(None, false);
        self.document += 1;
        self.recall_where_runs_go(now_secs);
        self.project_changed(now_secs);
    }

    /// The run dialog offers where this project's runs last went (its local settings, `.braid/`).
    fn recall_where_runs_go(&mut self, now_secs: f64) {
        let (settings, problem) = self
            .path
            .as_deref()
            .map(crate::model::local_settings::load)
            .unwrap_or_default();
        self.run_options.on_cluster = settings.run_on_cluster;
        self.run_options.cluster = settings.cluster.unwrap_or_default();
        if let Some(problem) = problem {
            self.notify(NoticeLevel::Info, problem, now_secs);
        }
    }

    /// Notices, once a second at most, when another program changed the project file. Without unsaved
    /// changes the project is read again; with some, they are kept and the user is told that Save
    /// would replace the file's new content (nothing is overwritten unasked, nothing silently lost).
    pub(super) fn watch_disk(&mut self, now_secs: f64) {
        let Some(stamp) = self
            .path
            .as_deref()
            .and_then(|path| self.disk.changed(path, now_secs))
        else {
            return;
        };
        let Some(path) = self.path.clone() else {
            return;
        };
        let name = file_name(&path);
        if stamp.is_none() {
            self.notify(
                NoticeLevel::Error,
                format!("{name} was deleted or moved by another program; Save writes it again."),
                now_secs,
            );
        } else if self.is_dirty() {
            self.notify_lasting(
                format!(
                    "{name} was changed by another program. Your unsaved changes are kept: Save \
                     replaces the file's new content with them, or open the file again to take its \
                     version instead."
                ),
                now_secs,
            );
        } else {
            match load_project(&path) {
                Ok(loaded) if loaded.origin == Origin::Braid => {
                    self.saved = loaded.project.clone();
                    self.project = loaded.project;
                    // Undo would step back across the reload into a project the file no longer holds.
                    self.undo_stack.clear();
                    self.project_changed(now_secs);
                    self.notify(
                        NoticeLevel::Info,
                        format!("Reloaded {name}: another program changed it."),
                        now_secs,
                    );
                }
                Ok(_) => self.notify(
                    NoticeLevel::Error,
                    format!("{name} was replaced by a Refinery export; open it to import it."),
                    now_secs,
                ),
                Err(e) => self.notify(
                    NoticeLevel::Error,
                    format!(
                        "{name} was changed by another program and can't be read now ({e}); the \
                         project shown is the one read before."
                    ),
                    now_secs,
                ),
            }
        }
    }

    /// Saves to the project's file, or asks for one. Returns whether the project is now saved.
    fn save(&mut self, now_secs: f64) -> bool {
        if let Some(path) = self.path.clone() {
            self.save_to(path, now_secs)
        } else {
            self.show_dialog(FileAction::SaveAs);
            false
        }
    }

    fn save_to(&mut self, path: PathBuf, now_secs: f64) -> bool {
        match save_project(&path, &self.project) {
            Ok(()) => {
                self.saved = self.project.clone();
                self.disk.seen(&path, now_secs);
                dialogs::push_recent(&mut self.recent, &path);
                let moved = self.path.as_ref() != Some(&path);
                // The blocks' variable values follow the project to its new name; its run history
                // stays with the old file (this session's runs stay in view).
                if moved
                    && let Some(old_path) = &self.path
                    && let Err(e) = crate::model::env_file::carry_over(old_path, &path)
                {
                    self.notify(
                        NoticeLevel::Error,
                        format!("The variables' values were not copied to the new name: {e}"),
                        now_secs,
                    );
                }
                self.path = Some(path);
                if moved {
                    self.open_history(true, now_secs);
                }
                self.imported_from = None;
                if let Some(action) = self.continue_after_save.take() {
                    self.do_pending(action, now_secs);
                }
                true
            }
            Err(e) => {
                self.continue_after_save = None;
                self.notify(NoticeLevel::Error, e.to_string(), now_secs);
                false
            }
        }
    }

    fn set_env_value(&mut self, name: &str, value: Option<&str>, now_secs: f64) {
        let Some(path) = self.path.clone() else {
            self.notify(
                NoticeLevel::Error,
                "Save the project first: its variables' values are kept beside it, in .braid/",
                now_secs,
            );
            return;
        };
        match crate::model::env_file::save_value(&path, name, value) {
            Ok(()) => {
                let file = crate::model::env_file::path_for_project(&path);
                let what = if value.is_some() {
                    "saved in"
                } else {
                    "removed from"
                };
                self.notify(
                    NoticeLevel::Info,
                    format!("{name}'s value {what} {}", file.display()),
                    now_secs,
                );
            }
            Err(e) => self.notify(NoticeLevel::Error, e.to_string(), now_secs),
        }
        self.env_values.refresh(Some(&path), now_secs, true);
    }
}
