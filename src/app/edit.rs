//! Edits of the project. [`apply_edit`] applies one [`Edit`] to a project: a pure function, tested
//! without an application or a window. The application applies each edit to a copy of its project, so a
//! refused edit changes nothing, and keeps the project as it was on its undo stack.

use std::collections::{BTreeMap, BTreeSet};

use super::command::{BlockEdit, Edit, Select, TransitionField};
use super::{App, CodeGoto, NoticeLevel, Selection};
use crate::model::validate::validate;
use crate::model::{Block, BlockId, MAX_TIMEOUT_S, Position, Project, Transition, TransitionId};

/// After the last edit, this long passes before the code is compiled again (never run) to show errors.
const CHECK_DELAY_SECS: f64 = 0.6;

/// How far a duplicate lands from its original.
pub const DUPLICATE_OFFSET: f32 = 40.0;

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
                ..transition.clone()
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

/// Applies one edit to `project`. Returns the ids of inserted blocks (to select them), or a message for
/// the user when the edit can't be made (the project is then left as it was).
pub fn apply_edit(project: &mut Project, edit: Edit) -> Result<Option<Vec<BlockId>>, String> {
    match edit {
        Edit::AddBlock {
            mut position,
            connect_from,
        } => {
            // A block added where another one is goes a little aside, so both can be seen.
            while project.blocks.iter().any(|b| {
                (b.position.x - position.x).abs() < 20.0 && (b.position.y - position.y).abs() < 20.0
            }) {
                position.x += 30.0;
                position.y += 30.0;
            }
            let name = unique_name(project, "Code Block");
            let block = Block::new_code(name, crate::model::DEFAULT_PYTHON_CODE, position);
            let id = block.id.clone();
            project.blocks.push(block);
            if let Some((from, kind)) = connect_from {
                project
                    .transitions
                    .push(Transition::new(from, id.clone(), kind));
            }
            Ok(Some(vec![id]))
        }
        Edit::EditBlock { block, edit } => {
            let Some(target) = project.block_mut(&block) else {
                return Ok(None);
            };
            if let BlockEdit::Name(name) = edit {
                target.name = name;
                return Ok(None);
            }
            if let BlockEdit::Service(kind) = edit {
                // A service block's settings, never what kind of block it is.
                if target.code().is_some()
                    || std::mem::discriminant(&target.kind) != std::mem::discriminant(&kind)
                {
                    return Err(format!(
                        "\"{}\" is not a block with these settings",
                        target.name
                    ));
                }
                target.kind = kind;
                return Ok(None);
            }
            let Some(code) = target.code_mut() else {
                return Err(format!("\"{}\" is not a Code Block", target.name));
            };
            match edit {
                BlockEdit::Code(text) => code.code = text,
                BlockEdit::TimeoutSecs(secs) => code.timeout_s = secs.clamp(1, MAX_TIMEOUT_S),
                BlockEdit::ConcurrencyCap(cap) => code.concurrency_cap = cap.map(|c| c.max(1)),
                BlockEdit::Libraries(list) => code.libraries = list,
                BlockEdit::EnvVars(list) => code.env_vars = list,
                BlockEdit::Retries(retries) => code.retries = retries,
                BlockEdit::Name(_) | BlockEdit::Service(_) => {}
            }
            Ok(None)
        }
        Edit::MoveBlocks(moves) => {
            for (id, position) in moves {
                if let Some(block) = project.block_mut(&id) {
                    block.position = position;
                }
            }
            Ok(None)
        }
        Edit::Connect { from, to, kind } => {
            if from == to {
                return Err("A block can't be connected to itself.".to_owned());
            }
            if project
                .transitions
                .iter()
                .any(|t| t.from == from && t.to == to && t.kind == kind)
            {
                return Err(format!(
                    "\"{}\" already has a {kind} transition to \"{}\".",
                    project.block_name(&from),
                    project.block_name(&to)
                ));
            }
            project.transitions.push(Transition::new(from, to, kind));
            Ok(None)
        }
        Edit::SetTransitionKind { transition, kind } => {
            if let Some(t) = project.transitions.iter_mut().find(|t| t.id == transition) {
                t.kind = kind;
            }
            Ok(None)
        }
        Edit::SetTransitionExpression {
            transition,
            expression,
        } => {
            if let Some(t) = project.transitions.iter_mut().find(|t| t.id == transition) {
                t.expression = expression;
            }
            Ok(None)
        }
        Edit::SetTransitionField { transition, field } => {
            if let Some(t) = project.transitions.iter_mut().find(|t| t.id == transition) {
                match field {
                    TransitionField::ItemKey(expression) => t.item_key = expression,
                    TransitionField::ItemLabel(expression) => t.item_label = expression,
                    TransitionField::ToleratedFailures(budget) => t.tolerated_failures = budget,
                }
            }
            Ok(None)
        }
        Edit::DeleteTransition(id) => {
            project.transitions.retain(|t| t.id != id);
            Ok(None)
        }
        Edit::DeleteBlocks(ids) => {
            delete_blocks(project, &ids.into_iter().collect());
            Ok(None)
        }
        Edit::DuplicateBlocks(ids) => {
            let ids: BTreeSet<BlockId> = ids.into_iter().collect();
            let (blocks, transitions) = blocks_with_inner_transitions(project, &ids);
            Ok(Some(insert_copies(project, blocks, &transitions, None)))
        }
        Edit::Paste { text, at } => {
            let (blocks, transitions) = super::clipboard::parse_clipboard(&text)?;
            Ok(Some(insert_copies(project, blocks, &transitions, at)))
        }
        Edit::RenameProject(name) => {
            project.name = name;
            Ok(None)
        }
        Edit::SetConcurrencyLimit(limit) => {
            project.settings.concurrency_limit = limit.max(1);
            Ok(None)
        }
        Edit::SetReadme(text) => {
            project.readme = text;
            Ok(None)
        }
    }
}

impl App {
    /// Applies a project edit as one undo step (or merged into the last one).
    pub(super) fn edit(&mut self, edit: Edit, now_secs: f64) {
        let merge_key = edit.merge_key();
        let mut project = self.project.clone();
        let inserted = match apply_edit(&mut project, edit) {
            Ok(inserted) => inserted,
            Err(message) => {
                self.notify(NoticeLevel::Error, message, now_secs);
                return;
            }
        };
        if project == self.project {
            return;
        }
        let before = std::mem::replace(&mut self.project, project);
        // A line marked from a traceback means nothing once that code changes.
        if self
            .code_goto
            .as_ref()
            .is_some_and(|g| self.project.block(&g.block) != before.block(&g.block))
        {
            self.code_goto = None;
        }
        self.undo_stack.record(&before, merge_key, now_secs);
        if let Some(inserted) = inserted {
            self.selection = Selection::blocks(inserted);
        }
        self.project_changed(now_secs);
    }

    pub(super) fn undo(&mut self, now_secs: f64) {
        if let Some(previous) = self.undo_stack.undo(&self.project) {
            self.project = previous;
            self.project_changed(now_secs);
        }
    }

    pub(super) fn redo(&mut self, now_secs: f64) {
        if let Some(next) = self.undo_stack.redo(&self.project) {
            self.project = next;
            self.project_changed(now_secs);
        }
    }

    pub fn can_undo(&self) -> bool {
        self.undo_stack.can_undo()
    }

    pub fn can_redo(&self) -> bool {
        self.undo_stack.can_redo()
    }

    /// Everything derived from the project is refreshed; the code is checked again after a pause.
    pub(super) fn project_changed(&mut self, now_secs: f64) {
        self.revision += 1;
        self.problems = validate(&self.project);
        let project = &self.project;
        self.selection
            .blocks
            .retain(|id| project.block(id).is_some());
        if let Some(t) = &self.selection.transition
            && project.transition(t).is_none()
        {
            self.selection.transition = None;
        }
        if let Some(from) = &self.run_options.from
            && project.block(from).is_none()
        {
            self.run_options.from = None;
        }
        self.check.due_at = Some(now_secs + CHECK_DELAY_SECS);
    }

    /// Changes what is selected (not part of the project, not undoable).
    pub(super) fn select(&mut self, select: Select) {
        match select {
            Select::Blocks(ids) => self.selection = Selection::blocks(ids),
            Select::Toggle(id) => {
                self.selection.transition = None;
                if !self.selection.blocks.remove(&id) {
                    self.selection.blocks.insert(id);
                }
            }
            Select::Transition(id) => {
                self.selection = Selection {
                    blocks: BTreeSet::new(),
                    transition: Some(id),
                };
            }
            Select::All => {
                self.selection =
                    Selection::blocks(self.project.blocks.iter().map(|b| b.id.clone()));
            }
            Select::Clear => self.selection = Selection::default(),
            Select::CodeLine { block, line } => {
                if self.project.block(&block).is_some() {
                    self.selection = Selection::blocks([block.clone()]);
                    let seq = self.code_goto.as_ref().map_or(1, |g| g.seq + 1);
                    self.code_goto = Some(CodeGoto { block, line, seq });
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::clipboard::{copy_to_json, parse_clipboard};
    use crate::model::{BlockKind, TransitionKind};

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
        assert!((project.blocks[2].position.x - DUPLICATE_OFFSET).abs() < f32::EPSILON);
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

    #[test]
    fn a_block_added_onto_another_goes_aside_with_a_fresh_name_and_its_connection() {
        let (mut project, a, _) = two_blocks();
        let inserted = apply_edit(
            &mut project,
            Edit::AddBlock {
                position: Position { x: 5.0, y: 5.0 },
                connect_from: Some((a.clone(), TransitionKind::Then)),
            },
        )
        .expect("added")
        .expect("selects the new block");
        let new = project.block(&inserted[0]).expect("in the project");
        assert_eq!(new.name, "Code Block");
        assert_eq!(new.position, Position { x: 35.0, y: 35.0 });
        let wire = project.transitions.last().expect("connected");
        assert_eq!(
            (&wire.from, &wire.to, wire.kind),
            (&a, &inserted[0], TransitionKind::Then)
        );
    }

    #[test]
    fn a_block_is_never_connected_to_itself_nor_twice_the_same_way() {
        let (mut project, a, b) = two_blocks();
        let before = project.clone();
        let connect = |from: &BlockId, to: &BlockId| Edit::Connect {
            from: from.clone(),
            to: to.clone(),
            kind: TransitionKind::FanOut,
        };
        assert_eq!(
            apply_edit(&mut project, connect(&a, &a)),
            Err("A block can't be connected to itself.".to_owned())
        );
        assert_eq!(
            apply_edit(&mut project, connect(&a, &b)),
            Err("\"A\" already has a fan-out transition to \"B\".".to_owned())
        );
        assert_eq!(project, before);
        assert_eq!(apply_edit(&mut project, connect(&b, &a)), Ok(None));
        assert_eq!(project.transitions.len(), 2);
    }

    #[test]
    fn code_fields_of_a_block_that_is_not_code_are_refused_by_name_but_it_can_be_renamed() {
        let mut project = Project::default();
        let mut block = Block::new_code("Endpoint", "", Position::default());
        block.kind = BlockKind::ApiResponse;
        let id = block.id.clone();
        project.blocks.push(block);
        let edit = |edit| Edit::EditBlock {
            block: id.clone(),
            edit,
        };
        assert_eq!(
            apply_edit(&mut project, edit(BlockEdit::Code("x".into()))),
            Err("\"Endpoint\" is not a Code Block".to_owned())
        );
        assert_eq!(
            apply_edit(&mut project, edit(BlockEdit::Name("Reply".into()))),
            Ok(None)
        );
        assert_eq!(project.blocks[0].name, "Reply");
    }

    #[test]
    fn a_service_blocks_settings_change_but_never_its_kind_nor_a_code_blocks() {
        let (mut project, code, _) = two_blocks();
        let mut block = Block::new_code("Hook", "", Position::default());
        block.kind = BlockKind::Queue { batch_size: 1 };
        let queue = block.id.clone();
        project.blocks.push(block);
        let edit = |block: &BlockId, kind| Edit::EditBlock {
            block: block.clone(),
            edit: BlockEdit::Service(kind),
        };
        apply_edit(
            &mut project,
            edit(&queue, BlockKind::Queue { batch_size: 10 }),
        )
        .unwrap();
        assert_eq!(project.blocks[2].kind, BlockKind::Queue { batch_size: 10 });
        let before = project.clone();
        assert_eq!(
            apply_edit(&mut project, edit(&queue, BlockKind::Topic)),
            Err("\"Hook\" is not a block with these settings".to_owned())
        );
        assert_eq!(
            apply_edit(&mut project, edit(&code, BlockKind::Topic)),
            Err("\"A\" is not a block with these settings".to_owned())
        );
        assert_eq!(project, before);
    }

    #[test]
    fn timeouts_caps_and_the_limit_are_at_least_one() {
        let (mut project, a, _) = two_blocks();
        let edit = |edit| Edit::EditBlock {
            block: a.clone(),
            edit,
        };
        apply_edit(&mut project, edit(BlockEdit::TimeoutSecs(0))).unwrap();
        apply_edit(&mut project, edit(BlockEdit::ConcurrencyCap(Some(0)))).unwrap();
        apply_edit(&mut project, Edit::SetConcurrencyLimit(0)).unwrap();
        let code = project.blocks[0].code_mut().expect("a Code Block");
        assert_eq!((code.timeout_s, code.concurrency_cap), (1, Some(1)));
        assert_eq!(project.settings.concurrency_limit, 1);
    }

    #[test]
    fn pasting_text_that_holds_no_blocks_is_refused_and_changes_nothing() {
        let (mut project, _, _) = two_blocks();
        let before = project.clone();
        let paste = Edit::Paste {
            text: "hello".into(),
            at: None,
        };
        assert_eq!(
            apply_edit(&mut project, paste),
            Err("the clipboard holds no Braid blocks".to_owned())
        );
        assert_eq!(project, before);
    }

    #[test]
    fn duplicates_keep_their_inner_transitions_and_land_aside() {
        let (mut project, a, b) = two_blocks();
        let copies = apply_edit(&mut project, Edit::DuplicateBlocks(vec![b.clone(), a]))
            .unwrap()
            .expect("selects the copies");
        let names: Vec<&str> = project.blocks.iter().map(|b| b.name.as_str()).collect();
        assert_eq!(names, ["A", "B", "A 2", "B 2"]);
        assert_eq!(copies.len(), 2);
        let copy = &project.transitions[1];
        assert_eq!((&copy.from, &copy.to), (&copies[0], &copies[1]));
        assert_eq!(
            project.blocks[3].position,
            Position {
                x: 200.0 + DUPLICATE_OFFSET,
                y: DUPLICATE_OFFSET
            }
        );
    }
}
