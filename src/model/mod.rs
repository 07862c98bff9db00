//! The project model: pure data and serde, no GUI, no runtime, no Python.

pub mod env_file;
pub mod format;
pub mod graph;
pub mod layout;
pub mod local_folder;
pub mod project;
pub mod refinery;
pub mod validate;

pub use project::*;

/// "1 invocation", "2 invocations": a count with its noun, for every message and label that counts
/// things in a project or a run.
pub fn plural(n: impl Into<u64>, noun: &str) -> String {
    match n.into() {
        1 => format!("1 {noun}"),
        n => format!("{n} {noun}s"),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn one_is_singular() {
        assert_eq!(super::plural(1u64, "invocation"), "1 invocation");
        assert_eq!(super::plural(0u64, "invocation"), "0 invocations");
        assert_eq!(super::plural(12u32, "item"), "12 items");
    }
}
