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
