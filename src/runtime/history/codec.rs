//! Statuses as text (the `runs` table, `--status`), and format 1's item paths.

use crate::runtime::record::{InvocationStatus, RunStatus};

/// An item path as format 1 wrote it: every index followed by `.` (`[3, 7]` → `3.7.`, `[]` → the empty
/// text).
pub(super) fn parse_item_path(text: &str) -> Option<Vec<u32>> {
    text.split_terminator('.').map(|i| i.parse().ok()).collect()
}

pub(super) fn status_text(status: InvocationStatus) -> &'static str {
    match status {
        InvocationStatus::Queued => "queued",
        InvocationStatus::Running => "running",
        InvocationStatus::Succeeded => "succeeded",
        InvocationStatus::CaughtException => "caught_exception",
        InvocationStatus::Exception => "exception",
        InvocationStatus::TimedOut => "timed_out",
        InvocationStatus::Cancelled => "cancelled",
    }
}

pub(super) const ALL_STATUSES: [InvocationStatus; 7] = [
    InvocationStatus::Queued,
    InvocationStatus::Running,
    InvocationStatus::Succeeded,
    InvocationStatus::CaughtException,
    InvocationStatus::Exception,
    InvocationStatus::TimedOut,
    InvocationStatus::Cancelled,
];

/// The status written as `status_text` (also what `--status` accepts: `caught_exception`, `timed_out`…).
pub fn parse_status(text: &str) -> Option<InvocationStatus> {
    ALL_STATUSES.into_iter().find(|s| status_text(*s) == text)
}

pub(super) fn run_status_text(status: RunStatus) -> &'static str {
    match status {
        RunStatus::Running => "running",
        RunStatus::Succeeded => "succeeded",
        RunStatus::Failed => "failed",
        RunStatus::Cancelled => "cancelled",
        RunStatus::Interrupted => "interrupted",
    }
}

pub(super) fn parse_run_status(text: &str) -> Option<RunStatus> {
    [
        RunStatus::Running,
        RunStatus::Succeeded,
        RunStatus::Failed,
        RunStatus::Cancelled,
        RunStatus::Interrupted,
    ]
    .into_iter()
    .find(|s| run_status_text(*s) == text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_1_item_paths_parse() {
        assert_eq!(parse_item_path(""), Some(vec![]));
        assert_eq!(parse_item_path("3."), Some(vec![3]));
        assert_eq!(
            parse_item_path("0.31.4000000."),
            Some(vec![0, 31, 4_000_000])
        );
        assert_eq!(parse_item_path("x."), None);
    }

    #[test]
    fn statuses_round_trip() {
        for status in ALL_STATUSES {
            assert_eq!(parse_status(status_text(status)), Some(status));
        }
        assert_eq!(parse_status("exploded"), None);
        assert_eq!(parse_run_status("failed"), Some(RunStatus::Failed));
    }
}
