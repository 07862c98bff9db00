//! Python workers: `pool` is the parent side; `serve` is what `braid __worker` runs, in the child, with
//! `native` the hot loop it hands plain invocations to.

mod native;
pub mod pool;

use std::ffi::CString;

use pyo3::prelude::*;
use pyo3::types::PyModule;

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
    let code = CString::new(WORKER_PY).map_err(|e| e.to_string())?;
    Python::attach(|py| {
        native::register(py)?;
        let module = PyModule::from_code(py, &code, c"braid_worker.py", c"braid_worker")?;
        let executable = crate::runtime::environment::python_executable();
        module
            .getattr("main")?
            .call1((executable.to_string_lossy(),))?;
        Ok::<(), PyErr>(())
    })
    .map_err(|e| e.to_string())
}
