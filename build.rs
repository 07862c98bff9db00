//! Link the interpreter pyo3 was configured with, by rpath, so that the binary never silently picks up
//! another libpython (Debian's) from the loader's default path.
fn main() {
    pyo3_build_config::add_libpython_rpath_link_args();
}
