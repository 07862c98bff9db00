//! Braid: a desktop visual pipeline editor for Python map-reduce pipelines.
//!
//! The layers, each using only those before it (see `ARCHITECTURE.md`; `tests/it/architecture.rs`
//! checks the arrows):
//! `text` (counts, durations, times for people) ← `model` (the project, pure data) ← `run` (the run vocabulary: ids, statuses, records, summaries)
//! ← `runtime` (the executor) ← `serve` (a project served: HTTP endpoints, timers, queues, topics)
//! ← `app` (the editor's state and commands) ← `ui` (the views) ← `shell` (the eframe application
//! tying app and views together). `cli` drives the runtime and serve (and opens the shell) without
//! reaching into the editor's state.

pub mod app;
pub mod cli;
pub mod model;
pub mod run;
pub mod runtime;
pub mod serve;
pub mod shell;
pub mod text;
pub mod ui;
