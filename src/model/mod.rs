//! The project model: pure data and serde, no GUI, no runtime, no Python.

pub mod env_file;
pub mod format;
pub mod graph;
pub mod layout;
pub mod local_folder;
pub mod local_settings;
pub mod project;
pub mod refinery;
pub mod schedule;
pub mod text_file;
pub mod validate;

pub use project::*;

/// "1 block · 3 transitions": a project's size, as the inspector and the status bar show it.
pub fn graph_size(project: &Project) -> String {
    format!(
        "{} · {}",
        crate::text::plural(project.blocks.len() as u64, "block"),
        crate::text::plural(project.transitions.len() as u64, "transition")
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_graph_size_counts_blocks_and_transitions() {
        let mut project = super::Project::default();
        project
            .blocks
            .push(super::Block::new_code("b", "", super::Position::default()));
        assert_eq!(super::graph_size(&project), "1 block · 0 transitions");
    }
}
