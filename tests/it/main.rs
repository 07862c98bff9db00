//! Integration tests: one binary (linking is the slow part of a test build), one module per area.

#![allow(
    clippy::unwrap_used,
    reason = "a failed unwrap in a test is the test failing"
)]

mod architecture;
mod cli;
mod daily;
mod dask;
mod engine;
mod executions;
mod gui;
mod history;
mod hostile;
mod ledger;
mod load;
mod model;
mod python;
mod serve_cli;
mod serving;
mod support;
mod workers;
