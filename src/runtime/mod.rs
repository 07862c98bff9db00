//! The executor: scheduling, the concurrency limit, fan-out/fan-in bookkeeping, Python workers and
//! invocation records. Depends on `model` only; reached through [`RuntimeHandle`]: requests in, events out.

pub mod capacity;
pub mod dask;
mod engine;
pub mod environment;
mod event;
pub mod history;
pub mod invoker;
pub mod plan;
pub mod redrive;
pub mod scheduler;
pub mod scripted;
pub mod worker;

pub use engine::{
    LocalInvoker, Requester, RunRequest, RuntimeConfig, RuntimeEvents, RuntimeHandle,
    RuntimeRequest, RuntimeSender, ServeRequest, ServiceNotice, Trigger,
};
pub use event::{RuntimeEvent, WORKER_OUTPUT_LINES};
