//! How row columns are written as text, and read back.

use crate::runtime::record::{InvocationStatus, RunStatus};

/// Every index followed by `.`: `[3, 7]` → `3.7.`, `[]` → the empty text. A prefix of paths is then a prefix of text
/// (`3.` matches `3.7.` but not `31.`), which an index can range-scan.
pub(super) fn item_path_text(path: &[u32]) -> String {
    use std::fmt::Write as _;
    let mut text = String::with_capacity(path.len() * 4);
    for index in path {
        let _ = write!(text, "{index}.");
    }
    text
}

pub(super) fn parse_item_path(text: &str) -> Option<Vec<u32>> {
    text.split_terminator('.').map(|i| i.parse().ok()).collect()
}

/// The bounds `[low, high)` of the texts of every path under `prefix` (`.` + 1 is `/`); `None` for the
/// empty prefix, which every path has.
pub(super) fn item_path_range(prefix: &[u32]) -> Option<(String, String)> {
    let low = item_path_text(prefix);
    let mut high = low.clone();
    high.pop()?;
    high.push('/');
    Some((low, high))
}

/// Longest input preview, in characters.
pub(super) const PREVIEW_CHARS: usize = 120;

/// JSON text cut to at most [`PREVIEW_CHARS`] characters, the last one `…` when it was cut.
pub(super) fn preview(json: &[u8]) -> String {
    let text = String::from_utf8_lossy(json);
    if text.chars().count() <= PREVIEW_CHARS {
        return text.into_owned();
    }
    let mut cut: String = text.chars().take(PREVIEW_CHARS - 1).collect();
    cut.push('…');
    cut
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
    }
}

pub(super) fn parse_run_status(text: &str) -> Option<RunStatus> {
    [
        RunStatus::Running,
        RunStatus::Succeeded,
        RunStatus::Failed,
        RunStatus::Cancelled,
    ]
    .into_iter()
    .find(|s| run_status_text(*s) == text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn item_paths_round_trip_and_prefixes_do_not_match_longer_numbers() {
        for path in [vec![], vec![3], vec![3, 7], vec![0, 31, 4_000_000]] {
            assert_eq!(
                parse_item_path(&item_path_text(&path)).as_deref(),
                Some(&path[..])
            );
        }
        assert_eq!(item_path_range(&[]), None);
        let (low, high) = item_path_range(&[3]).unwrap();
        let within = |p: &[u32]| {
            let t = item_path_text(p);
            low <= t && t < high
        };
        assert!(within(&[3]));
        assert!(within(&[3, 7]));
        assert!(!within(&[31]));
        assert!(!within(&[4]));
        assert!(!within(&[]));
    }

    #[test]
    fn previews_are_cut_to_120_characters() {
        let long = format!("\"{}\"", "é".repeat(500));
        let cut = preview(long.as_bytes());
        assert_eq!(cut.chars().count(), PREVIEW_CHARS);
        assert!(cut.ends_with('…'));
        assert_eq!(preview(b"[1,2]"), "[1,2]");
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
