//! The project compiled for running: blocks by index, outgoing transitions sorted by type, and the code
//! the invoker loads. Built once per run from a snapshot of the project, so edits during a run change
//! nothing about it.

use std::collections::{BTreeMap, HashMap};

use serde_json::Value;

use crate::model::graph::FanAnalysis;
use crate::model::{BlockId, BlockKind, Project, Retries, Tolerance, TransitionId, TransitionKind};

use super::invoker::{FanOutNames, Program, ProgramBlock};

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
    /// Whether it names its items (a key or label expression): the invoker then answers their names.
    pub names_items: bool,
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

/// What running a block means.
#[derive(Clone, Debug, PartialEq)]
pub enum Behaviour {
    /// Python code: the invoker runs it.
    Code,
    /// Passes its input on as its output, without reaching the invoker: an API Endpoint (its input is
    /// the request), an API Response, a Topic (each block it leads to gets the message).
    PassThrough,
    /// Returns this value whatever it receives: a Timer (its input string).
    Constant(Value),
    /// A Queue in a run that is not served: its messages are passed on at once, in batches of this
    /// size; each block it leads to is invoked once per batch, as for a fan-out without a fan-in.
    Batches(u32),
    /// A Queue of a served project. A run that reaches it hands what it received to the service's
    /// host, which keeps it as messages (the invocation ends once they are kept); a run that starts at
    /// it (one batch of its messages) passes the batch on.
    Enqueue,
    /// Can't run, and why (a Node.js block, a block type Braid doesn't support).
    NotRunnable(String),
}

#[derive(Clone, Debug)]
pub struct PlanBlock {
    pub id: BlockId,
    pub name: std::sync::Arc<str>,
    pub behaviour: Behaviour,
    /// An API Response: the first value reaching it answers a served run's request.
    pub responds: bool,
    pub cap: Option<u32>,
    pub timeout_s: f64,
    pub outgoing: Outgoing,
    /// How many merge transitions lead into this block.
    pub merge_inputs: usize,
    /// The merge sources' names, in slot order, for messages.
    pub merge_sources: Vec<String>,
    /// How its failed invocations run again (none: they fail at once).
    pub retries: Option<Retries>,
    /// For a fan-in target: how many failed items its fan-in tolerates (the smallest budget of its
    /// fan-in transitions; none when one of them has none).
    pub tolerance: Option<Tolerance>,
}

#[derive(Clone, Debug)]
pub struct Plan {
    pub blocks: Vec<PlanBlock>,
    pub by_id: HashMap<BlockId, usize>,
}

/// Whether the plan is for a run of its own or for the runs of a served project.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// `braid run`, a run from the editor: a Queue passes its messages on at once, in batches.
    Run,
    /// `braid serve`: a Queue keeps its messages for the service's host to hand out in batch runs.
    Served,
}

impl Plan {
    /// Builds the plan of a run of its own. Transitions that name missing blocks are left out
    /// (validation reports them).
    pub fn new(project: &Project) -> Self {
        Self::build(project, Mode::Run)
    }

    /// Builds the plan the runs of a served project share.
    pub fn served(project: &Project) -> Self {
        Self::build(project, Mode::Served)
    }

    fn build(project: &Project, mode: Mode) -> Self {
        let by_id: HashMap<BlockId, usize> = project
            .blocks
            .iter()
            .enumerate()
            .map(|(i, b)| (b.id.clone(), i))
            .collect();
        let analysis = FanAnalysis::new(project);
        let default_timeout = crate::model::DEFAULT_TIMEOUT_S as f64;
        let mut blocks: Vec<PlanBlock> = project
            .blocks
            .iter()
            .map(|block| {
                let retries = block
                    .code()
                    .and_then(|c| c.retries.clone())
                    .filter(|r| r.count > 0);
                let (behaviour, cap, timeout_s) = match &block.kind {
                    BlockKind::Code(code) => (
                        if code.language.is_runnable() {
                            Behaviour::Code
                        } else {
                            Behaviour::NotRunnable(format!(
                                "block \"{}\" is a {} Code Block, which Braid can't run yet (only Python)",
                                block.name,
                                code.language.label()
                            ))
                        },
                        code.concurrency_cap,
                        code.timeout_s as f64,
                    ),
                    BlockKind::ApiEndpoint { .. } | BlockKind::ApiResponse | BlockKind::Topic => {
                        (Behaviour::PassThrough, None, default_timeout)
                    }
                    BlockKind::Timer { input_string, .. } => (
                        Behaviour::Constant(timer_input(input_string)),
                        None,
                        default_timeout,
                    ),
                    BlockKind::Queue { batch_size } => (
                        match mode {
                            Mode::Run => Behaviour::Batches((*batch_size).max(1)),
                            Mode::Served => Behaviour::Enqueue,
                        },
                        None,
                        default_timeout,
                    ),
                    BlockKind::Unsupported { refinery_type, .. } => (
                        Behaviour::NotRunnable(format!(
                            "block \"{}\" is a Refinery {refinery_type} block, which Braid can't run yet",
                            block.name
                        )),
                        None,
                        default_timeout,
                    ),
                };
                PlanBlock {
                    id: block.id.clone(),
                    name: block.name.as_str().into(),
                    behaviour,
                    responds: matches!(block.kind, BlockKind::ApiResponse),
                    cap,
                    timeout_s,
                    outgoing: Outgoing::default(),
                    merge_inputs: 0,
                    merge_sources: Vec::new(),
                    retries,
                    tolerance: None,
                }
            })
            .collect();
        // Each fan-in target's budgets so far: `Some(None)` once a fan-in into it tolerates nothing.
        let mut budgets: Vec<Option<Option<Tolerance>>> = vec![None; blocks.len()];
        for t in &project.transitions {
            let (Some(&from), Some(&target)) = (by_id.get(&t.from), by_id.get(&t.to)) else {
                continue;
            };
            let edge = Edge {
                transition: t.id.clone(),
                target,
            };
            // A Queue's batches reach its blocks as a fan-out's items do.
            let batches = matches!(blocks[from].behaviour, Behaviour::Batches(_));
            let out = &mut blocks[from].outgoing;
            match t.kind {
                TransitionKind::Then if batches => out.fan_outs.push(FanOutEdge {
                    transition: t.id.clone(),
                    target,
                    closing: Vec::new(),
                    names_items: false,
                }),
                TransitionKind::Then => out.then.push(edge),
                TransitionKind::If => out.ifs.push(edge),
                TransitionKind::Else => out.elses.push(edge),
                TransitionKind::Exception => out.exceptions.push(edge),
                TransitionKind::FanIn => {
                    out.fan_ins.push(edge);
                    // The smallest budget, by what it allows of 100 items; none when one has none.
                    let budget = &mut budgets[target];
                    *budget = Some(match (*budget, t.tolerated_failures) {
                        (None, new) => new,
                        (Some(Some(least)), Some(new)) => {
                            Some(if new.allowed(100) < least.allowed(100) {
                                new
                            } else {
                                least
                            })
                        }
                        (Some(_), _) => None,
                    });
                }
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
                        names_items: t.names_items(),
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
        for (block, budget) in blocks.iter_mut().zip(budgets) {
            block.tolerance = budget.flatten();
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
        // Likewise each block's fan-outs' item names, in project order (the order of its plan's
        // fan-out edges).
        let mut fan_outs: Vec<Vec<FanOutNames>> = vec![Vec::new(); self.blocks.len()];
        for t in &project.transitions {
            if t.kind == TransitionKind::FanOut
                && let Some(&to) = self.by_id.get(&t.to)
                && let Some(&from) = self.by_id.get(&t.from)
            {
                fan_outs[from].push(FanOutNames {
                    key: t.item_key.trim().to_owned(),
                    label: t.item_label.trim().to_owned(),
                    target: self.blocks[to].name.to_string(),
                });
            }
        }
        let blocks = project
            .blocks
            .iter()
            .zip(&self.blocks)
            .zip(ifs)
            .zip(fan_outs)
            .map(|(((block, plan), ifs), fan_outs)| {
                let seen = used.entry(block.name.clone()).or_insert(0);
                *seen += 1;
                let filename = if *seen == 1 {
                    block.name.clone()
                } else {
                    format!("{} #{seen}", block.name)
                };
                let runnable = plan.behaviour == Behaviour::Code;
                // Every fan-out of the block, in project order, when one of them names its items: the
                // worker answers one list of names per entry.
                let fan_outs = if plan.outgoing.fan_outs.iter().any(|f| f.names_items) {
                    fan_outs
                } else {
                    Vec::new()
                };
                let (code, block_env) = match &block.kind {
                    BlockKind::Code(code) if runnable => (
                        code.code.clone(),
                        code.env_vars
                            .iter()
                            .filter_map(|name| env.get(name).map(|v| (name.clone(), v.clone())))
                            .collect(),
                    ),
                    _ => (String::new(), BTreeMap::new()),
                };
                ProgramBlock {
                    name: block.name.clone(),
                    filename,
                    code,
                    ifs,
                    fan_outs,
                    timeout_s: plan.timeout_s,
                    runnable,
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

/// What a Timer's blocks receive: its input string parsed as JSON when it is JSON, else the string
/// itself (as Refinery did).
pub fn timer_input(input_string: &str) -> Value {
    serde_json::from_str(input_string).unwrap_or_else(|_| Value::String(input_string.to_owned()))
}

/// A Queue's messages from what reached it: a list is one message per item, anything else one message.
pub fn messages(value: Value) -> Vec<Value> {
    match value {
        Value::Array(items) => items,
        other => vec![other],
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::model::{Block, Position, Transition};

    #[test]
    fn a_timer_gives_its_input_string_as_json_when_it_is_json() {
        assert_eq!(timer_input("{\"n\": [1, 2]}"), json!({"n": [1, 2]}));
        assert_eq!(timer_input("42"), json!(42));
        assert_eq!(timer_input("hello"), json!("hello"));
        assert_eq!(timer_input(""), json!(""));
    }

    #[test]
    fn a_list_is_one_message_per_item() {
        assert_eq!(
            messages(json!([1, [2], 3])),
            [json!(1), json!([2]), json!(3)]
        );
        assert_eq!(messages(json!({"a": 1})), [json!({"a": 1})]);
        assert_eq!(messages(json!([])), Vec::<Value>::new());
    }

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
