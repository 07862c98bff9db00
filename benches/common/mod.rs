//! What the benchmarks share: the runtime they start and the fan-out/fan-in project they run.

use braid::model::{Block, BlockId, Position, Project, Transition, TransitionKind};
use braid::runtime::RuntimeConfig;
use braid::runtime::worker::pool::PoolConfig;

/// The runtime as the `braid` binary starts it: one worker per core.
pub fn config() -> RuntimeConfig {
    RuntimeConfig::workers(pool())
}

/// The worker pool of [`config`].
pub fn pool() -> PoolConfig {
    PoolConfig {
        worker_exe: env!("CARGO_BIN_EXE_braid").into(),
        workers: std::thread::available_parallelism().map_or(2, std::num::NonZero::get),
        env: Vec::new(),
    }
}

/// `Gen` --fan-out--> `Work` --fan-in--> `Collect`, laid out left to right.
pub fn fan_project(generate: &str, work: &str, collect: &str) -> Project {
    let mut project = Project::default();
    for (name, code) in [("Gen", generate), ("Work", work), ("Collect", collect)] {
        let mut block = Block::new_code(name, code, Position::default());
        block.id = BlockId(name.into());
        project.blocks.push(block);
    }
    project.transitions.push(Transition::new(
        BlockId("Gen".into()),
        BlockId("Work".into()),
        TransitionKind::FanOut,
    ));
    project.transitions.push(Transition::new(
        BlockId("Work".into()),
        BlockId("Collect".into()),
        TransitionKind::FanIn,
    ));
    braid::model::layout::auto_layout(&mut project);
    project
}
