//! The clipboard format: what Ctrl+C puts on the clipboard and what Ctrl+V takes from it.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use super::edit::blocks_with_inner_transitions;
use crate::model::format::parse_project;
use crate::model::{Block, BlockId, Project, Transition};

/// What Ctrl+C puts on the clipboard: blocks and the transitions between them, as JSON text that another
/// Braid window (or a text editor) can take.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Clipboard {
    /// Marks the text as Braid blocks (and the version of this format).
    #[serde(rename = "braid_clipboard")]
    format: u32,
    blocks: Vec<Block>,
    #[serde(default)]
    transitions: Vec<Transition>,
}

/// The blocks `ids` and the transitions among them, as clipboard JSON (in project order).
pub fn copy_to_json(project: &Project, ids: &BTreeSet<BlockId>) -> Option<String> {
    let (blocks, transitions) = blocks_with_inner_transitions(project, ids);
    if blocks.is_empty() {
        return None;
    }
    serde_json::to_string_pretty(&Clipboard {
        format: 1,
        blocks,
        transitions,
    })
    .ok()
}

/// Reads blocks from clipboard text: Braid's clipboard JSON, or a whole project file (Braid or
/// Refinery), whose blocks are then pasted.
pub fn parse_clipboard(text: &str) -> Result<(Vec<Block>, Vec<Transition>), String> {
    if let Ok(clip) = serde_json::from_str::<Clipboard>(text) {
        return Ok((clip.blocks, clip.transitions));
    }
    match parse_project(text, std::path::Path::new("clipboard")) {
        Ok(loaded) => Ok((loaded.project.blocks, loaded.project.transitions)),
        Err(_) => Err("the clipboard holds no Braid blocks".to_owned()),
    }
}
