//! Static analysis of the transition graph that both validation and the runtime need: which fan-in
//! closes which fan-out.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use super::project::{BlockId, Project, Transition, TransitionId, TransitionKind};

/// Fan-outs nest; a cycle through fan-outs could nest without end, so the search stops this deep.
const MAX_NESTING: usize = 64;

/// For every fan-out, the blocks its fan-in transitions lead to.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FanAnalysis {
    /// Fan-out transition → the targets of the fan-in transitions that close it (sorted).
    pub closing_targets: BTreeMap<TransitionId, Vec<BlockId>>,
    /// Fan-in transitions that no fan-out upstream opens.
    pub unmatched_fan_ins: Vec<TransitionId>,
}

impl FanAnalysis {
    pub fn new(project: &Project) -> Self {
        let mut closing_targets = BTreeMap::new();
        let mut matched: HashSet<&TransitionId> = HashSet::new();
        // Each block's outgoing transitions, found once rather than by a scan per block visited.
        let mut outgoing: HashMap<&BlockId, Vec<&Transition>> = HashMap::new();
        for t in &project.transitions {
            outgoing.entry(&t.from).or_default().push(t);
        }
        for fan_out in project
            .transitions
            .iter()
            .filter(|t| t.kind == TransitionKind::FanOut)
        {
            let mut targets = BTreeSet::new();
            let mut seen: HashSet<(&BlockId, usize)> = HashSet::new();
            let mut stack = vec![(&fan_out.to, 0_usize)];
            while let Some((block, depth)) = stack.pop() {
                if !seen.insert((block, depth)) {
                    continue;
                }
                for t in outgoing.get(block).into_iter().flatten() {
                    match t.kind {
                        TransitionKind::FanOut if depth < MAX_NESTING => {
                            stack.push((&t.to, depth + 1));
                        }
                        TransitionKind::FanOut => {}
                        TransitionKind::FanIn if depth == 0 => {
                            targets.insert(t.to.clone());
                            matched.insert(&t.id);
                        }
                        TransitionKind::FanIn => stack.push((&t.to, depth - 1)),
                        _ => stack.push((&t.to, depth)),
                    }
                }
            }
            closing_targets.insert(fan_out.id.clone(), targets.into_iter().collect());
        }
        let unmatched_fan_ins = project
            .transitions
            .iter()
            .filter(|t| t.kind == TransitionKind::FanIn && !matched.contains(&t.id))
            .map(|t| t.id.clone())
            .collect();
        Self {
            closing_targets,
            unmatched_fan_ins,
        }
    }
}

/// Every block with a path of transitions to `block` (not `block` itself unless a cycle leads back).
pub fn upstream_of<'a>(project: &'a Project, block: &BlockId) -> BTreeSet<&'a BlockId> {
    let mut upstream = BTreeSet::new();
    let mut stack = vec![block.clone()];
    while let Some(at) = stack.pop() {
        for t in project.transitions.iter().filter(|t| t.to == at) {
            if upstream.insert(&t.from) {
                stack.push(t.from.clone());
            }
        }
    }
    upstream
}

/// The block a new transition from `from` most likely goes to: not upstream of it (that would close a
/// cycle), preferably not joined to it yet, then the nearest block to its right, else the nearest.
pub fn likely_target<'a>(project: &'a Project, from: &BlockId) -> Option<&'a BlockId> {
    let origin = project.block(from)?.position;
    let upstream = upstream_of(project, from);
    let joined: BTreeSet<&BlockId> = project
        .transitions
        .iter()
        .filter(|t| &t.from == from)
        .map(|t| &t.to)
        .collect();
    project
        .blocks
        .iter()
        .filter(|b| &b.id != from && !upstream.contains(&b.id))
        .min_by(|a, b| {
            let key = |block: &super::project::Block| {
                let (dx, dy) = (block.position.x - origin.x, block.position.y - origin.y);
                (joined.contains(&block.id), dx < 0.0, dx.hypot(dy))
            };
            let (ka, kb) = (key(a), key(b));
            (ka.0, ka.1).cmp(&(kb.0, kb.1)).then(ka.2.total_cmp(&kb.2))
        })
        .map(|b| &b.id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::project::{Block, Position, Transition};

    fn chain(kinds: &[TransitionKind]) -> (Project, Vec<TransitionId>) {
        let mut project = Project::default();
        for i in 0..=kinds.len() {
            let mut block = Block::new_code(format!("B{i}"), "", Position::default());
            block.id = BlockId(format!("b{i}").into());
            project.blocks.push(block);
        }
        let mut ids = Vec::new();
        for (i, kind) in kinds.iter().enumerate() {
            let mut t = Transition::new(
                BlockId(format!("b{i}").into()),
                BlockId(format!("b{}", i + 1).into()),
                *kind,
            );
            t.id = TransitionId(format!("t{i}").into());
            ids.push(t.id.clone());
            project.transitions.push(t);
        }
        (project, ids)
    }

    #[test]
    fn nested_fan_outs_close_in_order() {
        use TransitionKind::{FanIn, FanOut, Then};
        let (project, ids) = chain(&[FanOut, FanOut, Then, FanIn, FanIn]);
        let analysis = FanAnalysis::new(&project);
        assert_eq!(
            analysis.closing_targets[&ids[0]],
            vec![BlockId("b5".into())]
        );
        assert_eq!(
            analysis.closing_targets[&ids[1]],
            vec![BlockId("b4".into())]
        );
        assert!(analysis.unmatched_fan_ins.is_empty());
    }

    #[test]
    fn fan_in_without_fan_out_is_unmatched() {
        use TransitionKind::{FanIn, Then};
        let (project, ids) = chain(&[Then, FanIn]);
        let analysis = FanAnalysis::new(&project);
        assert_eq!(analysis.unmatched_fan_ins, vec![ids[1].clone()]);
    }

    #[test]
    fn a_new_transition_goes_downstream_to_the_nearest_block_on_the_right() {
        use crate::model::project::{Block, Position};
        let at = |x, y| Position { x, y };
        let mut project = Project::default();
        for (name, x, y) in [
            ("source", 0.0, 0.0),
            ("middle", 260.0, 0.0),
            ("far", 780.0, 0.0),
            ("near", 520.0, 40.0),
            ("left", -260.0, 0.0),
        ] {
            let mut block = Block::new_code(name, "", at(x, y));
            block.id = BlockId(name.into());
            project.blocks.push(block);
        }
        let id = |name: &str| BlockId(name.into());
        project.transitions.push(Transition::new(
            id("source"),
            id("middle"),
            TransitionKind::Then,
        ));
        // From "middle": "source" is upstream, "near" is the closest to its right.
        assert_eq!(likely_target(&project, &id("middle")), Some(&id("near")));
        // From "source": "middle" is joined already, so the next nearest on the right.
        assert_eq!(likely_target(&project, &id("source")), Some(&id("near")));
        assert_eq!(
            upstream_of(&project, &id("middle")),
            [&id("source")].into_iter().collect()
        );
    }

    #[test]
    fn cycles_terminate() {
        use TransitionKind::{FanOut, Then};
        let (mut project, _) = chain(&[FanOut, Then]);
        project.transitions.push(Transition::new(
            BlockId("b2".into()),
            BlockId("b0".into()),
            FanOut,
        ));
        let analysis = FanAnalysis::new(&project);
        assert_eq!(analysis.closing_targets.len(), 2);
    }
}
