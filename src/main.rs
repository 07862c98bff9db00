//! `braid`: the editor, the headless runner and (internally) the Python worker, in one binary.

fn main() -> std::process::ExitCode {
    braid::cli::main()
}
