//! The run vocabulary: ids, statuses, invocation records, run summaries, block counts and the rows the
//! Block Executions panel lists. Plain data below the runtime, so the runtime, the editor's app and
//! views, and the command line all name the same types directly (nothing re-exports them).

mod executor;
mod failures;
mod ids;
mod item_diff;
mod items;
mod record;
mod rows;
mod status;
mod summary;
mod time;

pub use executor::Executor;
pub use failures::{FailureGroup, FailureGroups, failure_groups, failure_shape, in_failure_group};
pub use ids::{InvocationId, ItemPath, ParentIds, RunId};
pub use item_diff::{ItemChange, ItemDiff, item_diff};
pub use items::{FannedOut, ItemName, ItemNamePath, ItemNames, key_path, names_pair};
pub use record::{ErrorInfo, InvocationRecord};
pub use rows::{InvocationFilter, InvocationRow, RowOrder, RunRow};
pub use status::{BlockCounts, FanInCounts, InvocationStatus, MissingItem, RunStatus};
pub use summary::{CompileError, RunFailure, RunResult, RunSummary};
pub use time::now_ms;
