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
