//! Python workers: `pool` is the parent side; `serve` is what `braid __worker` runs, in the child: the
//! `braid_worker` Python package (`python/braid_worker/`), with `native` the hot loop it hands plain
//! invocations to. `protocol` is what the two sides say to each other.

mod native;
pub mod pool;
pub(crate) mod protocol;

use std::path::PathBuf;

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyModule, PyTuple};

/// The `braid_worker` package's modules, in the order they are run (each after those it imports): its
/// loop, in Python, reads requests, captures output, raises interrupts and runs every invocation that
/// is not plain (see `native.rs`).
pub(crate) const PACKAGE: [(&str, &str); 6] = [
    (
        "constants",
        include_str!("python/braid_worker/constants.py"),
    ),
    ("protocol", include_str!("python/braid_worker/protocol.py")),
    ("capture", include_str!("python/braid_worker/capture.py")),
    (
        "isolation",
        include_str!("python/braid_worker/isolation.py"),
    ),
    ("loop", include_str!("python/braid_worker/loop.py")),
    ("__init__", include_str!("python/braid_worker/__init__.py")),
];

/// Runs the worker loop on this process's stdin/stdout until the parent goes away.
pub fn serve() -> Result<(), String> {
    // When memory runs out, the kernel's out-of-memory killer takes a worker (whose invocation then
    // fails, the others running again) rather than the editor with the user's unsaved project. Raising
    // one's own score needs no privilege; where there is no such file, nothing changes.
    #[cfg(target_os = "linux")]
    let _ = std::fs::write("/proc/self/oom_score_adj", "1000");
    watch_parent();
    start_without_site();
    Python::attach(|py| {
        native::register(py)?;
        let package = load_package(py)?;
        let executable = crate::runtime::environment::python_executable();
        package
            .getattr("loop")?
            .getattr("main")?
            .call1((executable.to_string_lossy(),))?;
        Ok::<(), PyErr>(())
    })
    .map_err(|e| e.to_string())
}

/// How long a worker whose Braid has gone gives its Python to end by itself (it then removes its
/// folder of block modules) before it is ended regardless.
const ORPHAN_GRACE: std::time::Duration = std::time::Duration::from_millis(500);

/// Ends this worker, and what its blocks started (its process group), when Braid goes away, whatever
/// its Python is doing: a thread of its own, outside Python, waits for the request pipe to hang up (no
/// writer left: Braid exited or was killed). Python notices too, as its read ends, but only when it
/// gets the interpreter lock: a block stuck in C code holding it (a runaway regular expression) kept
/// the orphaned worker at full CPU for as long as it ran.
fn watch_parent() {
    // A descriptor of its own for the pipe (closed on exec: a block's child processes don't get it),
    // since the loop moves fd 0 aside.
    let Ok(pipe) = rustix::io::fcntl_dupfd_cloexec(rustix::stdio::stdin(), 3) else {
        return;
    };
    let spawned = std::thread::Builder::new()
        .name("braid-parent-watch".to_owned())
        .spawn(move || {
            let mut fds = [rustix::event::PollFd::new(
                &pipe,
                rustix::event::PollFlags::empty(),
            )];
            // Hang-up (or an error) is reported whatever the events asked for.
            while let Err(rustix::io::Errno::INTR) | Ok(0) = rustix::event::poll(&mut fds, None) {}
            std::thread::sleep(ORPHAN_GRACE);
            let me = rustix::process::getpid();
            if rustix::process::getpgrp() == me {
                let _ = rustix::process::kill_current_process_group(rustix::process::Signal::KILL);
            }
            let _ = rustix::process::kill_process(me, rustix::process::Signal::KILL);
        });
    if let Err(error) = spawned {
        tracing::debug!("can't watch for Braid's end: {error}");
    }
}

/// Starts the interpreter as `python -S` would: without the `site` module's start-up, so blocks see the
/// standard library and their project's libraries, not whatever else is installed beside the
/// interpreter (see docs/runtime.md, "Libraries"). `loop.py` adds what `site` gives a program
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

/// The `braid_worker` package, from the sources built into this binary: each module made and run as
/// Python's import would (in `sys.modules`, with its spec), so the package's relative imports find one
/// another. Their compiled code is cached (`braid_worker-<sources' hash>-<Python version>.pyc` in
/// Braid's cache folder, one file for all of them), as Python caches a module's: compiling it takes
/// about 8 ms, at every worker's start. A cache that can't be read or written changes nothing but that.
fn load_package(py: Python<'_>) -> PyResult<Bound<'_, PyModule>> {
    let builtins = py.import("builtins")?;
    let marshal = py.import("marshal")?;
    let version: u64 = py.import("sys")?.getattr("hexversion")?.extract()?;
    let sources: String = PACKAGE.iter().map(|(_, source)| *source).collect();
    let cached = bytecode_dir().map(|dir| {
        dir.join(format!(
            "braid_worker-{}-{version:x}.pyc",
            crate::runtime::environment::stable_hash(sources.as_bytes())
        ))
    });
    let loaded = cached
        .as_ref()
        .and_then(|path| std::fs::read(path).ok())
        .and_then(|bytes| {
            marshal
                .call_method1("loads", (PyBytes::new(py, &bytes),))
                .ok()
        })
        .and_then(|codes| codes.extract::<Vec<Bound<'_, PyAny>>>().ok())
        .filter(|codes| codes.len() == PACKAGE.len());
    let codes = if let Some(codes) = loaded {
        codes
    } else {
        let codes = PACKAGE
            .iter()
            .map(|(name, source)| {
                builtins.call_method1("compile", (*source, file_name(name), "exec"))
            })
            .collect::<PyResult<Vec<_>>>()?;
        if let Some(path) = &cached {
            let bytes: Vec<u8> = marshal
                .call_method1("dumps", (PyTuple::new(py, &codes)?,))?
                .extract()?;
            store(path, &bytes);
        }
        codes
    };
    let modules = py.import("sys")?.getattr("modules")?;
    let spec = py.import("_frozen_importlib")?.getattr("ModuleSpec")?;
    let make = |name: &str, file: &str, is_package: bool| -> PyResult<Bound<'_, PyModule>> {
        let module = PyModule::new(py, name)?;
        module.setattr("__file__", file)?;
        let kwargs = PyDict::new(py);
        kwargs.set_item("origin", file)?;
        kwargs.set_item("is_package", is_package)?;
        module.setattr("__spec__", spec.call((name, py.None()), Some(&kwargs))?)?;
        module.setattr("__package__", "braid_worker")?;
        modules.set_item(name, &module)?;
        Ok(module)
    };
    let package = make("braid_worker", &file_name("__init__"), true)?;
    package.setattr("__path__", PyList::empty(py))?;
    for ((name, _), code) in PACKAGE.iter().zip(codes) {
        let module = if *name == "__init__" {
            package.clone()
        } else {
            let module = make(&format!("braid_worker.{name}"), &file_name(name), false)?;
            package.setattr(*name, &module)?;
            module
        };
        builtins.call_method1("exec", (code, module.dict()))?;
    }
    Ok(package)
}

/// The file name a module's code carries (tracebacks show it; the worker leaves frames from this folder
/// out of a block's traceback).
fn file_name(module: &str) -> String {
    format!("<braid>/braid_worker/{module}.py")
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
