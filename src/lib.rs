//! Braid: a desktop visual pipeline editor for Python map-reduce pipelines.
//!
//! The layers (see `ARCHITECTURE.md`): `model` (pure data) ← `runtime` (executor) ← `app` (glue) → `ui`;
//! `cli` drives the runtime without any GUI.

pub mod app;
pub mod cli;
pub mod model;
pub mod runtime;
pub mod ui;
