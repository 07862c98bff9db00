//! Keeps the layering honest. The layers, each using only those below it (see `ARCHITECTURE.md`):
//! `text` ← `model` ← `run` ← `runtime` ← `serve` ← `app` ← `ui` ← `shell`; `cli` uses `runtime` and
//! `serve` (and opens `shell`).
//! Nothing re-exports another layer's items, so an import always names the layer it comes from.

use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The Rust files of a layer: `src/<layer>/` or `src/<layer>.rs`.
fn layer_files(root: &Path, layer: &str) -> Vec<PathBuf> {
    let mut files = Vec::new();
    rust_files(&root.join(layer), &mut files);
    let file = root.join(format!("{layer}.rs"));
    if file.is_file() {
        files.push(file);
    }
    assert!(
        !files.is_empty(),
        "no layer {layer} under {}",
        root.display()
    );
    files
}

/// Lines of code (comments left out) in the layer's files that mention any of `forbidden`.
fn offenders_in(root: &Path, layer: &str, forbidden: &[&str]) -> Vec<String> {
    let mut found = Vec::new();
    for file in layer_files(root, layer) {
        let text = std::fs::read_to_string(&file).unwrap();
        for (n, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or_default();
            if forbidden.iter().any(|f| code.contains(f)) {
                found.push(format!("{}:{}: {}", file.display(), n + 1, line.trim()));
            }
        }
    }
    found
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn offenders(layer: &str, forbidden: &[&str]) -> Vec<String> {
    offenders_in(&src(), layer, forbidden)
}

fn assert_none(found: &[String], rule: &str) {
    assert!(found.is_empty(), "{rule}:\n{}", found.join("\n"));
}

#[test]
fn text_for_people_uses_nothing_of_braid() {
    let found = offenders("text", &["crate::", "braid::", "egui", "tokio", "pyo3"]);
    assert_none(
        &found,
        "text.rs is below every layer: it formats plain numbers and strings only",
    );
}

#[test]
fn model_is_pure_data() {
    let found = offenders(
        "model",
        &[
            "egui",
            "eframe",
            "tokio",
            "pyo3",
            "rusqlite",
            "crate::run",
            "crate::runtime",
            "crate::app",
            "crate::ui",
            "crate::shell",
            "crate::cli",
        ],
    );
    assert_none(
        &found,
        "model/ must not depend on GUI, async, Python or other layers",
    );
}

#[test]
fn the_run_vocabulary_is_plain_data_over_the_model() {
    let found = offenders(
        "run",
        &[
            "egui",
            "eframe",
            "tokio",
            "pyo3",
            "rusqlite",
            "crate::runtime",
            "crate::app",
            "crate::ui",
            "crate::shell",
            "crate::cli",
        ],
    );
    assert_none(&found, "run/ is plain data: it may use model/ only");
}

#[test]
fn runtime_knows_nothing_of_the_editor() {
    let found = offenders(
        "runtime",
        &[
            "egui",
            "eframe",
            "crate::serve",
            "crate::app",
            "crate::ui",
            "crate::shell",
            "crate::cli",
        ],
    );
    assert_none(
        &found,
        "runtime/ must not depend on serving, the editor or the CLI",
    );
}

#[test]
fn serving_sits_on_the_runtime_and_knows_nothing_of_the_editor() {
    let found = offenders(
        "serve",
        &[
            "egui",
            "eframe",
            "pyo3",
            "crate::app",
            "crate::ui",
            "crate::shell",
            "crate::cli",
        ],
    );
    assert_none(
        &found,
        "serve/ is a host over the runtime: the CLI and the editor use it, not the other way",
    );
}

#[test]
fn app_never_names_the_views() {
    let found = offenders(
        "app",
        &[
            "egui::",
            "eframe",
            "crate::ui",
            "crate::shell",
            "crate::cli",
        ],
    );
    assert_none(
        &found,
        "app/ holds state and commands: it must not use ui/ or the shell",
    );
}

#[test]
fn ui_reaches_the_runtime_only_through_app_commands() {
    let found = offenders(
        "ui",
        &[
            "crate::runtime",
            "braid::runtime",
            "crate::serve",
            "tokio",
            "pyo3",
            "crate::shell",
            "crate::cli",
        ],
    );
    assert_none(&found, "ui/ must go through app/ commands");
}

#[test]
fn the_command_line_stays_out_of_the_editor() {
    let found = offenders("cli", &["egui", "eframe", "crate::app", "crate::ui"]);
    assert_none(
        &found,
        "cli.rs runs headless: it may open the shell, nothing else of the editor",
    );
}

#[test]
fn nothing_re_exports_another_layer() {
    let mut found = Vec::new();
    for layer in [
        "text", "model", "run", "runtime", "serve", "app", "ui", "shell", "cli",
    ] {
        found.extend(offenders(layer, &["pub use crate::", "pub use braid::"]));
    }
    assert_none(
        &found,
        "import a type from the layer that defines it; a layer re-exports only its own modules",
    );
}

#[test]
fn imports_name_one_layer_each() {
    // `use crate::{app, ui}` would hide a layer from the checks above.
    let mut found = Vec::new();
    for layer in [
        "text", "model", "run", "runtime", "serve", "app", "ui", "shell", "cli",
    ] {
        found.extend(offenders(layer, &["crate::{"]));
    }
    assert_none(
        &found,
        "write `use crate::<layer>::…` so the checks see the layer",
    );
}

#[test]
fn the_checker_sees_an_offence() {
    // A checker that can't fail proves nothing: a copy of the tree with a re-export and a view import
    // in app/ must be caught by the rules above.
    let dir = tempfile::tempdir().unwrap();
    let app = dir.path().join("app");
    std::fs::create_dir(&app).unwrap();
    std::fs::write(
        app.join("mod.rs"),
        "pub use crate::runtime::RunId;\nuse crate::ui::Views; // a comment: crate::shell\n",
    )
    .unwrap();
    let views = offenders_in(dir.path(), "app", &["crate::ui"]);
    assert_eq!(views.len(), 1, "{views:?}");
    let reexports = offenders_in(dir.path(), "app", &["pub use crate::"]);
    assert_eq!(reexports.len(), 1, "{reexports:?}");
    assert!(
        offenders_in(dir.path(), "app", &["crate::shell"]).is_empty(),
        "comments are not code"
    );
    // And on the real tree: the runtime does use tokio.
    assert!(!offenders("runtime", &["tokio"]).is_empty());
}
