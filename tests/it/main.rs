//! Integration tests: one binary (linking is the slow part of a test build), one module per area.

mod engine;
mod model;
mod support;
