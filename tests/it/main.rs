//! Integration tests: one binary (linking is the slow part of a test build), one module per area.

mod gui;
mod model;
