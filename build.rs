//! Link the interpreter pyo3 was configured with, by rpath, so that the binary never silently picks up
//! another libpython (Debian's) from the loader's default path; and remember that interpreter, whose
//! `venv` module builds the per-project library environments the workers import from.
fn main() {
    pyo3_build_config::add_libpython_rpath_link_args();
    let config = pyo3_build_config::get();
    if let Some(executable) = config.executable() {
        println!("cargo:rustc-env=BRAID_BUILD_PYTHON={executable}");
    }
    let version = config.version();
    println!(
        "cargo:rustc-env=BRAID_BUILD_PYTHON_VERSION={}.{}",
        version.major, version.minor
    );
}
