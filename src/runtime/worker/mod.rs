//! Python workers: `pool` is the parent side; `serve` is what `braid __worker` runs, in the child, with
//! `native` the hot loop it hands plain invocations to.

mod native;
pub mod pool;

use std::path::PathBuf;

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyModule};

/// The worker's main loop, in Python: frames, JSON, captures, interrupts and every invocation that is
/// not plain (see `native.rs`).
const WORKER_PY: &str = include_str!("worker.py");

/// Runs the worker loop on this process's stdin/stdout until the parent goes away.
pub fn serve() -> Result<(), String> {
    // When memory runs out, the kernel's out-of-memory killer takes a worker (whose invocation then
    // fails, the others running again) rather than the editor with the user's unsaved project. Raising
    // one's own score needs no privilege; where there is no such file, nothing changes.
    #[cfg(target_os = "linux")]
    let _ = std::fs::write("/proc/self/oom_score_adj", "1000");
    start_without_site();
    Python::attach(|py| {
        native::register(py)?;
        let module = worker_module(py)?;
        let executable = crate::runtime::environment::python_executable();
        module
            .getattr("main")?
            .call1((executable.to_string_lossy(),))?;
        Ok::<(), PyErr>(())
    })
    .map_err(|e| e.to_string())
}

/// Starts the interpreter as `python -S` would: without the `site` module's start-up, so blocks see the
/// standard library and their project's libraries, not whatever else is installed beside the
/// interpreter (see docs/runtime.md, "Libraries"). `worker.py` adds what `site` gives a program
/// (`exit`, `quit`, `help`) and the project's environment.
#[allow(
    unsafe_code,
    deprecated,
    reason = "the only way to start pyo3's interpreter without `site` and with its otherwise \
              unchanged settings is the legacy flag, set before the interpreter starts, while this \
              process has one thread"
)]
fn start_without_site() {
    // SAFETY: nothing has started Python yet and no other thread exists: `serve` runs first thing in
    // a worker process, and pyo3 starts the interpreter (reading the flag) in the `attach` after this.
    unsafe {
        pyo3::ffi::Py_NoSiteFlag = 1;
    }
}

/// `worker.py` as a module. Its compiled code is cached (`worker-<source hash>-<Python version>.pyc` in
/// Braid's cache folder), as Python caches a module's: compiling it takes about 8 ms, at every worker's
/// start. A cache that can't be read or written changes nothing but that.
fn worker_module(py: Python<'_>) -> PyResult<Bound<'_, PyModule>> {
    let builtins = py.import("builtins")?;
    let marshal = py.import("marshal")?;
    let version: u64 = py.import("sys")?.getattr("hexversion")?.extract()?;
    let cached = bytecode_dir().map(|dir| {
        dir.join(format!(
            "worker-{}-{version:x}.pyc",
            crate::runtime::environment::stable_hash(WORKER_PY.as_bytes())
        ))
    });
    let loaded = cached
        .as_ref()
        .and_then(|path| std::fs::read(path).ok())
        .and_then(|bytes| {
            marshal
                .call_method1("loads", (PyBytes::new(py, &bytes),))
                .ok()
        });
    let code = if let Some(code) = loaded {
        code
    } else {
        let code = builtins.call_method1("compile", (WORKER_PY, "braid_worker.py", "exec"))?;
        if let Some(path) = &cached {
            let bytes: Vec<u8> = marshal.call_method1("dumps", (&code,))?.extract()?;
            store(path, &bytes);
        }
        code
    };
    let module = PyModule::new(py, "braid_worker")?;
    module.setattr("__file__", "braid_worker.py")?;
    py.import("sys")?
        .getattr("modules")?
        .set_item("braid_worker", &module)?;
    builtins.call_method1("exec", (code, module.dict()))?;
    Ok(module)
}

/// `$XDG_CACHE_HOME/braid/bytecode` (or `~/.cache/braid/bytecode`).
fn bytecode_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|dir| !dir.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")))?;
    Some(base.join("braid").join("bytecode"))
}

/// Writes a cache file whole or not at all (workers starting together may write it at once).
fn store(path: &std::path::Path, bytes: &[u8]) {
    let Some(dir) = path.parent() else {
        return;
    };
    let written = std::fs::create_dir_all(dir)
        .and_then(|()| tempfile::NamedTempFile::new_in(dir))
        .and_then(|mut file| {
            std::io::Write::write_all(&mut file, bytes)?;
            file.persist(path).map_err(|e| e.error)
        });
    if let Err(error) = written {
        tracing::debug!(
            "can't cache the worker's bytecode in {}: {error}",
            dir.display()
        );
    }
}
