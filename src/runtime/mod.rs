//! The executor: scheduling, the concurrency limit, fan-out/fan-in bookkeeping, Python workers and
//! invocation records. Depends on `model` only; reached through [`RuntimeHandle`]: requests in, events out.

mod engine;
pub mod environment;
pub mod history;
pub mod invoker;
pub mod plan;
pub mod record;
pub mod scheduler;
pub mod worker;

pub use engine::{Requester, RunRequest, RuntimeConfig, RuntimeHandle, RuntimeRequest};
pub use record::*;
