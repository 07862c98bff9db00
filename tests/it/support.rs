//! Shared helpers: build projects in code and run them through the real runtime, its blocks run by
//! real Python or by a script standing in for it.

use std::time::Duration;

use braid::model::{Block, BlockId, Position, Project, Transition, TransitionKind};
use braid::run::{InvocationRecord, RunId, RunSummary};
use braid::runtime::scripted::Script;
use braid::runtime::worker::pool::PoolConfig;
use braid::runtime::{RunRequest, RuntimeConfig, RuntimeEvent, RuntimeHandle, RuntimeRequest};
use serde_json::{Value, json};

pub fn runtime_config() -> RuntimeConfig {
    RuntimeConfig::workers(PoolConfig {
        worker_exe: env!("CARGO_BIN_EXE_braid").into(),
        workers: 2,
        env: Vec::new(),
    })
}

/// A runtime whose blocks `script` runs: no Python, so it starts and runs in milliseconds.
pub fn scripted_runtime(script: &Script) -> RuntimeHandle {
    RuntimeHandle::start(RuntimeConfig::scripted(script.clone())).expect("runtime starts")
}

/// Runs `project` with `script` standing in for Python, on a runtime of its own.
pub fn run_scripted(
    project: Project,
    script: &Script,
    input: Value,
    concurrency: Option<u32>,
) -> Outcome {
    let mut runtime = scripted_runtime(script);
    run_on(&mut runtime, project, input, concurrency, |_, _, _| {})
}

/// A project assembled block by block; blocks are named and referred to by name.
#[derive(Default)]
pub struct Builder {
    pub project: Project,
}

/// A block's code that returns `[0, 1, …, n - 1]`.
pub fn items(n: usize) -> String {
    format!("def main(block_input, backpack):\n    return list(range({n}))\n")
}

impl Builder {
    pub fn new() -> Self {
        Self::default()
    }

    /// `Gen` returns `0..n` and fans out to the block `name` with this code.
    pub fn fan_out(n: usize, name: &str, code: &str) -> Self {
        Self::new().block("Gen", &items(n)).block(name, code).link(
            "Gen",
            name,
            TransitionKind::FanOut,
        )
    }

    /// Blocks with no code of their own: a script runs them.
    pub fn scripted(self, names: &[&str]) -> Self {
        names
            .iter()
            .fold(self, |builder, name| builder.block(name, ""))
    }

    pub fn block(mut self, name: &str, code: &str) -> Self {
        let mut block = Block::new_code(name, code, Position::default());
        block.id = BlockId(format!("id-{name}").into());
        self.project.blocks.push(block);
        self
    }

    /// A block that is not a Code Block (an API Endpoint, a Queue, …).
    pub fn service(mut self, name: &str, kind: braid::model::BlockKind) -> Self {
        let mut block = Block::new_code(name, "", Position::default());
        block.id = BlockId(format!("id-{name}").into());
        block.kind = kind;
        self.project.blocks.push(block);
        self
    }

    fn code_block(&mut self, name: &str) -> &mut braid::model::CodeBlock {
        self.project
            .blocks
            .iter_mut()
            .find(|b| b.name == name)
            .and_then(|b| b.code_mut())
            .expect("a code block of that name")
    }

    pub fn timeout(mut self, name: &str, timeout_s: u64) -> Self {
        self.code_block(name).timeout_s = timeout_s;
        self
    }

    pub fn cap(mut self, name: &str, cap: u32) -> Self {
        self.code_block(name).concurrency_cap = Some(cap);
        self
    }

    /// The fan-out from `from` to `to` names its items by these key and label expressions.
    pub fn item_names(mut self, from: &str, to: &str, key: &str, label: &str) -> Self {
        let (from, to) = (
            BlockId(format!("id-{from}").into()),
            BlockId(format!("id-{to}").into()),
        );
        let fan_out = self
            .project
            .transitions
            .iter_mut()
            .find(|t| t.from == from && t.to == to && t.kind == TransitionKind::FanOut)
            .expect("a fan-out between them");
        key.clone_into(&mut fan_out.item_key);
        label.clone_into(&mut fan_out.item_label);
        self
    }

    pub fn retries(mut self, name: &str, retries: braid::model::Retries) -> Self {
        self.code_block(name).retries = Some(retries);
        self
    }

    pub fn link(self, from: &str, to: &str, kind: TransitionKind) -> Self {
        self.link_if(from, to, kind, "")
    }

    pub fn link_if(mut self, from: &str, to: &str, kind: TransitionKind, expression: &str) -> Self {
        let mut t = Transition::new(
            BlockId(format!("id-{from}").into()),
            BlockId(format!("id-{to}").into()),
            kind,
        );
        expression.clone_into(&mut t.expression);
        self.project.transitions.push(t);
        self
    }

    pub fn build(self) -> Project {
        self.project
    }
}

pub struct Outcome {
    pub summary: RunSummary,
    pub records: Vec<InvocationRecord>,
    pub refused: Option<String>,
}

impl Outcome {
    pub fn results_of(&self, block: &str) -> Vec<&Value> {
        self.summary
            .results
            .iter()
            .filter(|r| r.block == block)
            .map(|r| &r.output)
            .collect()
    }

    pub fn records_of(&self, block: &str) -> Vec<&InvocationRecord> {
        self.records
            .iter()
            .filter(|r| *r.block_name == *block)
            .collect()
    }
}

pub fn run(project: Project, input: Value) -> Outcome {
    run_with(project, input, None)
}

pub fn run_with(project: Project, input: Value, concurrency: Option<u32>) -> Outcome {
    let mut runtime = RuntimeHandle::start(runtime_config()).expect("runtime starts");
    run_on(&mut runtime, project, input, concurrency, |_, _, _| {})
}

/// Runs on an existing runtime; `on_event` may send requests (e.g. cancel) as events arrive.
pub fn run_on(
    runtime: &mut RuntimeHandle,
    project: Project,
    input: Value,
    concurrency: Option<u32>,
    on_event: impl FnMut(&RuntimeHandle, &RunId, &RuntimeEvent),
) -> Outcome {
    let mut request = RunRequest::new(RunId::new_random(), project);
    request.input = input;
    request.backpack = json!({});
    request.concurrency = concurrency;
    run_request_on(runtime, request, on_event)
}

/// Sends `request` and collects its events until the run ends.
pub fn run_request_on(
    runtime: &mut RuntimeHandle,
    request: RunRequest,
    mut on_event: impl FnMut(&RuntimeHandle, &RunId, &RuntimeEvent),
) -> Outcome {
    let run_id = request.run_id.clone();
    runtime.send(RuntimeRequest::Run(Box::new(request)));
    follow(runtime, &run_id, |runtime, run_id, event| {
        if let Some(event) = event {
            on_event(runtime, run_id, event);
        }
    })
}

/// Collects `run_id`'s events until it ends. `on_event` sees each event first, and `None` whenever a
/// few milliseconds pass without one (so that it can move along a run that waits for it).
pub fn follow(
    runtime: &mut RuntimeHandle,
    run_id: &RunId,
    mut on_event: impl FnMut(&RuntimeHandle, &RunId, Option<&RuntimeEvent>),
) -> Outcome {
    let run_id = run_id.clone();
    let deadline = std::time::Instant::now() + Duration::from_mins(2);
    let mut records = Vec::new();
    loop {
        assert!(
            std::time::Instant::now() < deadline,
            "the run ends within two minutes"
        );
        let Some(event) = runtime.recv_timeout(Duration::from_millis(5)) else {
            on_event(runtime, &run_id, None);
            continue;
        };
        if event.run_id() != &run_id {
            continue;
        }
        on_event(runtime, &run_id, Some(&event));
        match event {
            RuntimeEvent::Invocations { records: batch, .. } => records.extend(batch),
            RuntimeEvent::RunFinished(summary) => {
                records.sort_by_key(|r| r.id);
                return Outcome {
                    summary,
                    records,
                    refused: None,
                };
            }
            RuntimeEvent::RunRefused { message, .. } => {
                return Outcome {
                    summary: RunSummary {
                        run_id,
                        status: braid::run::RunStatus::Failed,
                        results: Vec::new(),
                        invocations: 0,
                        failures: Vec::new(),
                        tolerated: Vec::new(),
                        redrive_of: None,
                        started_at_ms: 0.0,
                        duration_ms: 0.0,
                    },
                    records,
                    refused: Some(message),
                };
            }
            _ => {}
        }
    }
}
