//! The project compiled for running: blocks by index, outgoing transitions sorted by type, and the code
//! the invoker loads. Built once per run from a snapshot of the project, so edits during a run change
//! nothing about it.

use std::collections::{BTreeMap, HashMap};

use crate::model::graph::FanAnalysis;
use crate::model::{BlockId, BlockKind, Project, TransitionId, TransitionKind};

use super::invoker::{Program, ProgramBlock};

/// The code that stands in for Refinery's API Endpoint and API Response blocks in a headless run:
/// they pass their input on.
const PASS_THROUGH: &str = "def main(block_input, backpack):\n    return block_input\n";

#[derive(Clone, Debug)]
pub struct Edge {
    pub transition: TransitionId,
    pub target: usize,
}

#[derive(Clone, Debug)]
pub struct FanOutEdge {
    pub transition: TransitionId,
    pub target: usize,
    /// The blocks whose fan-in transitions close this fan-out.
    pub closing: Vec<usize>,
}

#[derive(Clone, Debug)]
pub struct MergeEdge {
    pub transition: TransitionId,
    pub target: usize,
    /// This transition's place among the target's merge transitions (project order).
    pub slot: usize,
}

#[derive(Clone, Debug, Default)]
pub struct Outgoing {
    pub then: Vec<Edge>,
    pub ifs: Vec<Edge>,
    pub elses: Vec<Edge>,
    pub exceptions: Vec<Edge>,
    pub fan_outs: Vec<FanOutEdge>,
    pub fan_ins: Vec<Edge>,
    pub merges: Vec<MergeEdge>,
}

impl Outgoing {
    pub fn is_empty(&self) -> bool {
        self.then.is_empty()
            && self.ifs.is_empty()
            && self.elses.is_empty()
            && self.exceptions.is_empty()
            && self.fan_outs.is_empty()
            && self.fan_ins.is_empty()
            && self.merges.is_empty()
    }
}

#[derive(Clone, Debug)]
pub struct PlanBlock {
    pub id: BlockId,
    pub name: std::sync::Arc<str>,
    /// Why this block can't run, if it can't (a Node.js block, a block type Braid doesn't support yet).
    pub not_runnable: Option<String>,
    pub cap: Option<u32>,
    pub timeout_s: f64,
    pub outgoing: Outgoing,
    /// How many merge transitions lead into this block.
    pub merge_inputs: usize,
    /// The merge sources' names, in slot order, for messages.
    pub merge_sources: Vec<String>,
}

#[derive(Clone, Debug)]
pub struct Plan {
    pub blocks: Vec<PlanBlock>,
    pub by_id: HashMap<BlockId, usize>,
}

impl Plan {
    /// Builds the plan. Transitions that name missing blocks are left out (validation reports them).
    pub fn new(project: &Project) -> Self {
        let by_id: HashMap<BlockId, usize> = project
            .blocks
            .iter()
            .enumerate()
            .map(|(i, b)| (b.id.clone(), i))
            .collect();
        let analysis = FanAnalysis::new(project);
        let mut blocks: Vec<PlanBlock> = project
            .blocks
            .iter()
            .map(|block| {
                let (not_runnable, cap, timeout_s) = match &block.kind {
                    BlockKind::Code(code) => (
                        (!code.language.is_runnable()).then(|| {
                            format!(
                                "block \"{}\" is a {} Code Block, which Braid can't run yet (only Python)",
                                block.name,
                                code.language.label()
                            )
                        }),
                        code.concurrency_cap,
                        code.timeout_s as f64,
                    ),
                    BlockKind::ApiEndpoint { .. } | BlockKind::ApiResponse => {
                        (None, None, crate::model::DEFAULT_TIMEOUT_S as f64)
                    }
                    BlockKind::Unsupported { refinery_type, .. } => (
                        Some(format!(
                            "block \"{}\" is a Refinery {refinery_type} block, which Braid can't run yet",
                            block.name
                        )),
                        None,
                        crate::model::DEFAULT_TIMEOUT_S as f64,
                    ),
                };
                PlanBlock {
                    id: block.id.clone(),
                    name: block.name.as_str().into(),
                    not_runnable,
                    cap,
                    timeout_s,
                    outgoing: Outgoing::default(),
                    merge_inputs: 0,
                    merge_sources: Vec::new(),
                }
            })
            .collect();
        for t in &project.transitions {
            let (Some(&from), Some(&target)) = (by_id.get(&t.from), by_id.get(&t.to)) else {
                continue;
            };
            let edge = Edge {
                transition: t.id.clone(),
                target,
            };
            let out = &mut blocks[from].outgoing;
            match t.kind {
                TransitionKind::Then => out.then.push(edge),
                TransitionKind::If => out.ifs.push(edge),
                TransitionKind::Else => out.elses.push(edge),
                TransitionKind::Exception => out.exceptions.push(edge),
                TransitionKind::FanIn => out.fan_ins.push(edge),
                TransitionKind::FanOut => {
                    let closing = analysis
                        .closing_targets
                        .get(&t.id)
                        .map(|targets| {
                            targets
                                .iter()
                                .filter_map(|id| by_id.get(id).copied())
                                .collect()
                        })
                        .unwrap_or_default();
                    out.fan_outs.push(FanOutEdge {
                        transition: t.id.clone(),
                        target,
                        closing,
                    });
                }
                TransitionKind::Merge => {
                    let slot = blocks[target].merge_inputs;
                    blocks[target].merge_inputs += 1;
                    let source = blocks[from].name.to_string();
                    blocks[target].merge_sources.push(source);
                    blocks[from].outgoing.merges.push(MergeEdge {
                        transition: t.id.clone(),
                        target,
                        slot,
                    });
                }
            }
        }
        Self { blocks, by_id }
    }

    /// The code of every block, for the invoker. Block names become the tracebacks' file names.
    pub fn program(&self, id: u64, project: &Project, env: &BTreeMap<String, String>) -> Program {
        let mut used: HashMap<String, usize> = HashMap::new();
        // Each block's `if` expressions in project order, gathered in one pass over the transitions.
        let mut ifs: Vec<Vec<String>> = vec![Vec::new(); self.blocks.len()];
        for t in &project.transitions {
            if t.kind == TransitionKind::If
                && self.by_id.contains_key(&t.to)
                && let Some(&from) = self.by_id.get(&t.from)
            {
                ifs[from].push(t.expression.clone());
            }
        }
        let blocks = project
            .blocks
            .iter()
            .zip(&self.blocks)
            .zip(ifs)
            .map(|((block, plan), ifs)| {
                let seen = used.entry(block.name.clone()).or_insert(0);
                *seen += 1;
                let filename = if *seen == 1 {
                    block.name.clone()
                } else {
                    format!("{} #{seen}", block.name)
                };
                let (code, block_env) = match &block.kind {
                    BlockKind::Code(code) if plan.not_runnable.is_none() => (
                        code.code.clone(),
                        code.env_vars
                            .iter()
                            .filter_map(|name| env.get(name).map(|v| (name.clone(), v.clone())))
                            .collect(),
                    ),
                    BlockKind::ApiEndpoint { .. } | BlockKind::ApiResponse => {
                        (PASS_THROUGH.to_owned(), BTreeMap::new())
                    }
                    _ => (String::new(), BTreeMap::new()),
                };
                ProgramBlock {
                    name: block.name.clone(),
                    filename,
                    code,
                    ifs,
                    timeout_s: plan.timeout_s,
                    runnable: plan.not_runnable.is_none(),
                    env: block_env,
                }
            })
            .collect();
        Program {
            id,
            blocks,
            site_packages: None,
            cwd: None,
            compile_only: false,
            requirements: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Block, Position, Transition};

    /// A plan of 68,000 blocks is made at once (each block's `if`s are gathered in one pass, not by a
    /// scan of every transition per block, which took minutes at this size), and each block gets its
    /// own `if`s, in project order.
    #[test]
    fn a_plan_of_68000_blocks_gives_each_block_its_own_ifs() {
        let n = 68_000;
        let mut project = Project::default();
        for i in 0..n {
            let mut block = Block::new_code(format!("b{i}"), "", Position::default());
            block.id = BlockId(format!("b{i}").into());
            project.blocks.push(block);
        }
        for i in 1..n {
            for condition in ["x", "y"] {
                let mut t = Transition::new(
                    BlockId(format!("b{}", i - 1).into()),
                    BlockId(format!("b{i}").into()),
                    TransitionKind::If,
                );
                t.expression = format!("{condition} == {i}");
                project.transitions.push(t);
            }
        }
        let plan = Plan::new(&project);
        let program = plan.program(1, &project, &BTreeMap::new());
        assert_eq!(program.blocks.len(), n);
        assert_eq!(program.blocks[41].ifs, ["x == 42", "y == 42"]);
        assert!(program.blocks[n - 1].ifs.is_empty());
        assert_eq!(plan.blocks[41].outgoing.ifs.len(), 2);
        assert_eq!(plan.blocks[41].outgoing.ifs[1].target, 42);
    }
}
