//! Project edits that are more than setting a field: adding, deleting, duplicating and pasting blocks,
//! and the clipboard format. Pure functions over [`Project`], so they are tested without a window.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::model::format::parse_project;
use crate::model::{Block, BlockId, Position, Project, Transition, TransitionId};

/// How far a duplicate lands from its original.
pub const DUPLICATE_OFFSET: f32 = 40.0;

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

/// Copies of the blocks `ids` and of the transitions among them, in project order.
pub fn blocks_with_inner_transitions(
    project: &Project,
    ids: &BTreeSet<BlockId>,
) -> (Vec<Block>, Vec<Transition>) {
    let blocks = project
        .blocks
        .iter()
        .filter(|b| ids.contains(&b.id))
        .cloned()
        .collect();
    let transitions = project
        .transitions
        .iter()
        .filter(|t| ids.contains(&t.from) && ids.contains(&t.to))
        .cloned()
        .collect();
    (blocks, transitions)
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

/// Inserts copies of `blocks` (with fresh ids and unique names) and of the `transitions` among them.
/// The copies keep their layout; their top-left corner goes to `at`, or they are moved by a small
/// offset. Returns the new blocks' ids.
pub fn insert_copies(
    project: &mut Project,
    blocks: Vec<Block>,
    transitions: &[Transition],
    at: Option<Position>,
) -> Vec<BlockId> {
    let min_x = blocks
        .iter()
        .map(|b| b.position.x)
        .fold(f32::INFINITY, f32::min);
    let min_y = blocks
        .iter()
        .map(|b| b.position.y)
        .fold(f32::INFINITY, f32::min);
    let (dx, dy) = match at {
        Some(at) if min_x.is_finite() && min_y.is_finite() => (at.x - min_x, at.y - min_y),
        _ => (DUPLICATE_OFFSET, DUPLICATE_OFFSET),
    };
    let mut new_ids = BTreeMap::new();
    let mut inserted = Vec::new();
    for mut block in blocks {
        let new_id = BlockId::new_random();
        new_ids.insert(block.id.clone(), new_id.clone());
        block.id = new_id.clone();
        block.name = unique_name(project, &block.name);
        block.position.x += dx;
        block.position.y += dy;
        project.blocks.push(block);
        inserted.push(new_id);
    }
    for transition in transitions {
        if let (Some(from), Some(to)) = (new_ids.get(&transition.from), new_ids.get(&transition.to))
        {
            project.transitions.push(Transition {
                id: TransitionId::new_random(),
                from: from.clone(),
                to: to.clone(),
                kind: transition.kind,
                expression: transition.expression.clone(),
            });
        }
    }
    inserted
}

/// `base`, or `base 2`, `base 3`, … : the first name no block has.
pub fn unique_name(project: &Project, base: &str) -> String {
    let taken = |name: &str| project.blocks.iter().any(|b| b.name == name);
    if !taken(base) {
        return base.to_owned();
    }
    // "Double 2" copied again becomes "Double 3", not "Double 2 2".
    let stem = match base.rsplit_once(' ') {
        Some((stem, number)) if number.parse::<u32>().is_ok() => stem,
        _ => base,
    };
    (2..u32::MAX)
        .map(|n| format!("{stem} {n}"))
        .find(|name| !taken(name))
        .unwrap_or_else(|| base.to_owned())
}

/// Deletes blocks and every transition that touches them. Returns whether anything was deleted.
pub fn delete_blocks(project: &mut Project, ids: &BTreeSet<BlockId>) -> bool {
    let before = project.blocks.len();
    project.blocks.retain(|b| !ids.contains(&b.id));
    project
        .transitions
        .retain(|t| !ids.contains(&t.from) && !ids.contains(&t.to));
    project.blocks.len() != before
}

/// Where a new block goes when none was asked for: right of the rightmost block.
pub fn free_position(project: &Project) -> Position {
    project
        .blocks
        .iter()
        .max_by(|a, b| a.position.x.total_cmp(&b.position.x))
        .map_or(Position::default(), |b| Position {
            x: b.position.x + 280.0,
            y: b.position.y,
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::TransitionKind;

    fn two_blocks() -> (Project, BlockId, BlockId) {
        let mut project = Project::default();
        let a = Block::new_code("A", "x", Position::default());
        let b = Block::new_code("B", "y", Position { x: 200.0, y: 0.0 });
        let (ida, idb) = (a.id.clone(), b.id.clone());
        project.blocks.extend([a, b]);
        project.transitions.push(Transition::new(
            ida.clone(),
            idb.clone(),
            TransitionKind::FanOut,
        ));
        (project, ida, idb)
    }

    #[test]
    fn copy_and_paste_keeps_inner_transitions_with_new_ids() {
        let (mut project, a, b) = two_blocks();
        let ids = BTreeSet::from([a.clone(), b.clone()]);
        let text = copy_to_json(&project, &ids).expect("something to copy");
        let (blocks, transitions) = parse_clipboard(&text).expect("parses");
        let new = insert_copies(&mut project, blocks, &transitions, None);
        assert_eq!(new.len(), 2);
        assert_eq!(project.blocks.len(), 4);
        assert_eq!(project.transitions.len(), 2);
        let pasted = &project.transitions[1];
        assert_eq!((&pasted.from, &pasted.to), (&new[0], &new[1]));
        assert_eq!(pasted.kind, TransitionKind::FanOut);
        assert_eq!(project.blocks[2].name, "A 2");
        assert_eq!(project.blocks[2].position.x, DUPLICATE_OFFSET);
    }

    #[test]
    fn only_inner_transitions_are_copied() {
        let (project, a, _) = two_blocks();
        let text = copy_to_json(&project, &BTreeSet::from([a])).expect("something to copy");
        let (blocks, transitions) = parse_clipboard(&text).expect("parses");
        assert_eq!(blocks.len(), 1);
        assert!(transitions.is_empty());
        assert!(parse_clipboard("hello").is_err());
    }

    #[test]
    fn deleting_a_block_deletes_its_transitions() {
        let (mut project, a, _) = two_blocks();
        assert!(delete_blocks(&mut project, &BTreeSet::from([a])));
        assert_eq!(project.blocks.len(), 1);
        assert!(project.transitions.is_empty());
    }

    #[test]
    fn unique_names_count_up() {
        let (mut project, _, _) = two_blocks();
        assert_eq!(unique_name(&project, "C"), "C");
        assert_eq!(unique_name(&project, "A"), "A 2");
        project.blocks[1].name = "A 2".to_owned();
        assert_eq!(unique_name(&project, "A 2"), "A 3");
    }
}
