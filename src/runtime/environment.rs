//! Per-project Python environments: the libraries a project's blocks list, installed with `venv` + pip
//! into a cache folder keyed by the requirement set and the interpreter version, reused across runs and
//! projects, rebuilt when the list changes. Workers put its `site-packages` first on `sys.path`.

use std::path::{Path, PathBuf};

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

use crate::model::{BlockKind, Project};

/// Marks a finished environment; written last, so a half-built one is never used.
const READY_MARKER: &str = ".braid-ready";

#[derive(Debug, thiserror::Error)]
pub enum EnvironmentError {
    #[error("could not create the Python environment in {dir}: {message}")]
    Create { dir: PathBuf, message: String },
    #[error("installing the project's libraries ({requirements}) failed:\n{output}")]
    Install {
        requirements: String,
        output: String,
    },
}

/// The libraries every Code Block of the project lists, trimmed, sorted and without repeats.
pub fn requirements(project: &Project) -> Vec<String> {
    let mut all: Vec<String> = project
        .blocks
        .iter()
        .filter_map(|b| match &b.kind {
            BlockKind::Code(code) if code.language.is_runnable() => Some(&code.libraries),
            _ => None,
        })
        .flatten()
        .map(|r| r.trim().to_owned())
        .filter(|r| !r.is_empty() && !r.starts_with('#'))
        .collect();
    all.sort();
    all.dedup();
    all
}

/// Where environments are cached: `$BRAID_ENV_CACHE`, else `$XDG_CACHE_HOME/braid/envs`, else
/// `~/.cache/braid/envs`.
pub fn default_cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("BRAID_ENV_CACHE") {
        return PathBuf::from(dir);
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    base.join("braid").join("envs")
}

/// The interpreter whose `venv` builds environments: `$BRAID_PYTHON`, else the one Braid was built
/// with (the workers embed that same version, so compiled packages match).
pub fn python_executable() -> PathBuf {
    std::env::var_os("BRAID_PYTHON")
        .map(PathBuf::from)
        .or_else(|| option_env!("BRAID_BUILD_PYTHON").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("python3"))
}

/// A stable name for a requirement set on an interpreter version (FNV-1a: stable across Rust releases,
/// unlike `DefaultHasher`).
pub fn environment_key(python_version: &str, requirements: &[String]) -> String {
    let mut text = python_version.as_bytes().to_vec();
    text.push(0);
    text.extend_from_slice(requirements.join("\n").as_bytes());
    format!("py{python_version}-{}", stable_hash(&text))
}

/// FNV-1a of `bytes` as 16 hex digits: the same on every machine and Rust release.
pub fn stable_hash(bytes: &[u8]) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &byte in bytes {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{hash:016x}")
}

/// Makes sure the environment for `requirements` exists and returns its `site-packages` folder.
/// Every line pip prints goes to `log`, so the user sees the install happen.
pub async fn ensure(
    cache_dir: &Path,
    requirements: &[String],
    mut log: impl FnMut(String),
) -> Result<PathBuf, EnvironmentError> {
    let version = option_env!("BRAID_BUILD_PYTHON_VERSION").unwrap_or("3");
    let key = environment_key(version, requirements);
    let dir = cache_dir.join(&key);
    let create_error = |message: String| EnvironmentError::Create {
        dir: dir.clone(),
        message,
    };
    if dir.join(READY_MARKER).is_file() {
        return site_packages(&dir).ok_or_else(|| create_error("it has no site-packages".into()));
    }
    std::fs::create_dir_all(cache_dir).map_err(|e| create_error(e.to_string()))?;
    // One builder per environment, across Braid processes (the editor and a `braid run`, parallel
    // runs in a script): another one would take a half-built environment for an interrupted one and
    // delete it under the first. Held until this function returns.
    let _lock = lock_environment(&cache_dir.join(format!("{key}.lock")), &dir, &mut log)
        .await
        .map_err(|e| create_error(e.to_string()))?;
    if dir.join(READY_MARKER).is_file() {
        log(format!(
            "Using the environment just built in {}",
            dir.display()
        ));
        return site_packages(&dir).ok_or_else(|| create_error("it has no site-packages".into()));
    }
    if dir.exists() {
        // Left half-built by an interrupted install (its builder is gone: the lock is ours): start again.
        std::fs::remove_dir_all(&dir).map_err(|e| create_error(e.to_string()))?;
    }
    log(format!(
        "Creating a Python environment for {} in {}",
        requirements.join(", "),
        dir.display()
    ));
    let python = python_executable();
    let mut output = Vec::new();
    let status = stream(
        Command::new(&python).arg("-m").arg("venv").arg(&dir),
        &mut log,
        &mut output,
    )
    .await
    .map_err(|e| create_error(format!("{}: {e}", python.display())))?;
    if !status {
        return Err(create_error(output.join("\n")));
    }
    let requirements_file = dir.join("braid-requirements.txt");
    std::fs::write(&requirements_file, requirements.join("\n") + "\n")
        .map_err(|e| create_error(e.to_string()))?;
    let installed = stream(
        Command::new(dir.join("bin").join("python"))
            .args([
                "-m",
                "pip",
                "install",
                "--disable-pip-version-check",
                "--no-input",
                "-r",
            ])
            .arg(&requirements_file),
        &mut log,
        &mut output,
    )
    .await
    .map_err(|e| create_error(e.to_string()))?;
    if !installed {
        let _ = std::fs::remove_dir_all(&dir);
        let tail: Vec<String> = output.iter().rev().take(15).rev().cloned().collect();
        return Err(EnvironmentError::Install {
            requirements: requirements.join(", "),
            output: tail.join("\n"),
        });
    }
    std::fs::write(dir.join(READY_MARKER), requirements.join("\n"))
        .map_err(|e| create_error(e.to_string()))?;
    site_packages(&dir).ok_or_else(|| create_error("it has no site-packages".into()))
}

/// Takes the lock file beside an environment's folder (an advisory lock, released when the file is
/// closed, so also when its holder dies), waiting for another builder if there is one.
async fn lock_environment(
    path: &Path,
    dir: &Path,
    log: &mut impl FnMut(String),
) -> std::io::Result<std::fs::File> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => {
            log(format!(
                "Waiting for another Braid to finish building the environment in {}",
                dir.display()
            ));
            tokio::task::spawn_blocking(move || file.lock().map(|()| file))
                .await
                .map_err(std::io::Error::other)?
        }
        Err(std::fs::TryLockError::Error(e)) => Err(e),
    }
}

/// Runs a command, passing each line of its stdout and stderr to `log` and keeping them in `output`.
async fn stream(
    command: &mut Command,
    log: &mut impl FnMut(String),
    output: &mut Vec<String>,
) -> std::io::Result<bool> {
    let mut child = command
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
        return Ok(false);
    };
    // Both streams feed one channel; it closes when both have ended.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let tx_err = tx.clone();
    tokio::spawn(async move {
        let mut lines = BufReader::new(stdout).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            let _ = tx.send(line);
        }
    });
    tokio::spawn(async move {
        let mut lines = BufReader::new(stderr).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            let _ = tx_err.send(line);
        }
    });
    while let Some(line) = rx.recv().await {
        log(line.clone());
        output.push(line);
    }
    Ok(child.wait().await?.success())
}

fn site_packages(dir: &Path) -> Option<PathBuf> {
    let lib = dir.join("lib");
    std::fs::read_dir(&lib)
        .ok()?
        .flatten()
        .map(|e| e.path().join("site-packages"))
        .find(|p| p.is_dir())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Block, Position};

    #[test]
    fn requirements_are_the_sorted_union() {
        let mut project = Project::default();
        for libs in [vec!["requests", " numpy==2.1.* "], vec!["requests", ""]] {
            let mut block = Block::new_code("b", "", Position::default());
            block.code_mut().unwrap().libraries = libs.into_iter().map(String::from).collect();
            project.blocks.push(block);
        }
        assert_eq!(requirements(&project), vec!["numpy==2.1.*", "requests"]);
    }

    /// A second builder that comes while the first is installing waits for it and uses its
    /// environment, rather than deleting it as half-built. (`pip` is in every new environment, so
    /// this installs nothing from the network.)
    #[test]
    fn a_second_builder_waits_for_the_first_instead_of_deleting_its_work() {
        let cache = tempfile::tempdir().unwrap();
        let requirements = vec!["pip".to_owned()];
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let dir = cache.path().join(environment_key(
            option_env!("BRAID_BUILD_PYTHON_VERSION").unwrap_or("3"),
            &requirements,
        ));
        let (first, second) = runtime.block_on(async {
            let first = tokio::spawn({
                let (cache, requirements) = (cache.path().to_owned(), requirements.clone());
                async move {
                    let mut lines = Vec::new();
                    let result = ensure(&cache, &requirements, |line| lines.push(line)).await;
                    (result, lines)
                }
            });
            while !dir.exists() {
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
            let mut lines = Vec::new();
            let second = ensure(cache.path(), &requirements, |line| lines.push(line)).await;
            (first.await.unwrap(), (second, lines))
        });
        let (first, first_lines) = first;
        let (second, second_lines) = second;
        let site = first.unwrap_or_else(|e| panic!("{e}\n{first_lines:?}"));
        assert_eq!(second.unwrap(), site);
        assert!(site.starts_with(&dir), "{}", site.display());
        assert!(
            second_lines
                .iter()
                .any(|l| l.starts_with("Waiting for another Braid")),
            "{second_lines:?}"
        );
        assert!(
            !second_lines.iter().any(|l| l.starts_with("Creating")),
            "{second_lines:?}"
        );
    }

    #[test]
    fn key_changes_with_the_list_and_the_interpreter() {
        let a = environment_key("3.11", &["six".into()]);
        assert_eq!(a, environment_key("3.11", &["six".into()]));
        assert_ne!(a, environment_key("3.12", &["six".into()]));
        assert_ne!(a, environment_key("3.11", &["six==1.16.0".into()]));
    }
}
