//! Keeps the layering honest: `model` is pure data, `ui` reaches the runtime only through `app`.

use std::path::Path;

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
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

/// Lines of code (comments left out) in `src/<layer>` that mention any of `forbidden`.
fn offenders(layer: &str, forbidden: &[&str]) -> Vec<String> {
    let mut files = Vec::new();
    rust_files(
        &Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("src")
            .join(layer),
        &mut files,
    );
    let mut found = Vec::new();
    for file in files {
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

#[test]
fn model_is_pure_data() {
    let found = offenders(
        "model",
        &[
            "egui",
            "eframe",
            "tokio",
            "pyo3",
            "crate::runtime",
            "crate::app",
            "crate::ui",
        ],
    );
    assert!(
        found.is_empty(),
        "model/ must not depend on GUI, async or Python:\n{}",
        found.join("\n")
    );
}

#[test]
fn runtime_depends_on_model_only() {
    let found = offenders("runtime", &["egui", "eframe", "crate::app", "crate::ui"]);
    assert!(
        found.is_empty(),
        "runtime/ must not depend on the GUI:\n{}",
        found.join("\n")
    );
}

#[test]
fn ui_talks_to_the_runtime_only_through_app() {
    let found = offenders("ui", &["crate::runtime", "braid::runtime", "tokio", "pyo3"]);
    assert!(
        found.is_empty(),
        "ui/ must go through app/ commands:\n{}",
        found.join("\n")
    );
}

#[test]
fn the_checker_sees_an_offence() {
    // Guard against a checker that can't fail: runtime/ does use tokio.
    assert!(!offenders("runtime", &["tokio"]).is_empty());
}
