//! Where an invocation, a block and a run stand.

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InvocationStatus {
    Queued,
    Running,
    Succeeded,
    CaughtException,
    Exception,
    TimedOut,
    Cancelled,
    /// This attempt failed and the block's retries run the item again: not the item's end.
    Retried,
}

impl InvocationStatus {
    pub const ALL: [Self; 8] = [
        Self::Queued,
        Self::Running,
        Self::Succeeded,
        Self::CaughtException,
        Self::Exception,
        Self::TimedOut,
        Self::Cancelled,
        Self::Retried,
    ];

    /// The status's stable name: what the history stores, `--status` accepts and `--json` prints
    /// (`caught_exception`, `timed_out`…), the same as its serde name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Succeeded => "succeeded",
            Self::CaughtException => "caught_exception",
            Self::Exception => "exception",
            Self::TimedOut => "timed_out",
            Self::Cancelled => "cancelled",
            Self::Retried => "retried",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.name() == name)
    }

    /// The word people read for the status, the same on a node, in the run's strip, on a filter chip,
    /// in a table row and in `braid history`: an invocation that raised and was not caught "failed",
    /// never "exception" in one place and "failed" in another.
    pub fn label(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Succeeded => "succeeded",
            Self::CaughtException => "caught",
            Self::Exception => "failed",
            Self::TimedOut => "timed out",
            Self::Cancelled => "cancelled",
            Self::Retried => "retrying",
        }
    }

    /// What the status means, for hovers.
    pub fn description(self) -> &'static str {
        match self {
            Self::Queued => "waiting for a free slot",
            Self::Running => "running now",
            Self::Succeeded => "returned a value",
            Self::CaughtException => "raised an exception that an exception transition caught",
            Self::Exception => "raised an exception that nothing caught",
            Self::TimedOut => "ran past the block's timeout",
            Self::Cancelled => "stopped before it finished (the run was stopped, or failed fast)",
            Self::Retried => {
                "failed, and the block's retries run it again (its next attempt is a record of its own)"
            }
        }
    }

    /// A failure that ends its branch (and so fails the run).
    pub fn is_failure(self) -> bool {
        matches!(self, Self::Exception | Self::TimedOut)
    }

    /// How bad a status is, for colouring a block by its worst invocation.
    pub fn severity(self) -> u8 {
        match self {
            Self::Succeeded => 0,
            Self::Queued => 1,
            Self::Running => 2,
            Self::Retried => 3,
            Self::Cancelled => 4,
            Self::CaughtException => 5,
            Self::TimedOut => 6,
            Self::Exception => 7,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Running,
    Succeeded,
    Failed,
    Cancelled,
    /// Read from the history: the process recording the run ended (killed, crashed, the machine
    /// stopped) before the run did. Its records up to then are kept.
    Interrupted,
}

impl RunStatus {
    pub const ALL: [Self; 5] = [
        Self::Running,
        Self::Succeeded,
        Self::Failed,
        Self::Cancelled,
        Self::Interrupted,
    ];

    /// The status's stable name: what the history stores and `--json` prints; the same as its
    /// `label` and its serde name.
    pub fn name(self) -> &'static str {
        self.label()
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.name() == name)
    }

    pub fn label(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
            Self::Interrupted => "interrupted",
        }
    }
}

/// Per-block live counts, for the canvas and progress bars: a fan-out target's ledger. They count
/// items, each in exactly one state: an item whose attempt failed and that waits for its next one is
/// *retrying* (its failed attempts are records of their own, but not ends), so the counts add up to
/// the invocations queued, however many attempts they took.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockCounts {
    pub queued: u64,
    pub running: u64,
    pub succeeded: u64,
    pub caught: u64,
    pub failed: u64,
    pub timed_out: u64,
    pub cancelled: u64,
    #[serde(default)]
    pub retrying: u64,
}

impl BlockCounts {
    pub fn finished(&self) -> u64 {
        self.succeeded + self.caught + self.failed + self.timed_out + self.cancelled
    }

    /// Items not yet at their end: queued, running or waiting for their next attempt.
    pub fn open(&self) -> u64 {
        self.queued + self.running + self.retrying
    }

    pub fn total(&self) -> u64 {
        self.open() + self.finished()
    }

    /// Each status with its count, in the order every view lists them.
    pub fn by_status(&self) -> [(InvocationStatus, u64); 8] {
        [
            (InvocationStatus::Queued, self.queued),
            (InvocationStatus::Running, self.running),
            (InvocationStatus::Succeeded, self.succeeded),
            (InvocationStatus::CaughtException, self.caught),
            (InvocationStatus::Exception, self.failed),
            (InvocationStatus::TimedOut, self.timed_out),
            (InvocationStatus::Cancelled, self.cancelled),
            (InvocationStatus::Retried, self.retrying),
        ]
    }

    /// Counts a record read back: a retried attempt is not its item's end, so it counts nowhere.
    pub fn add_final(&mut self, status: InvocationStatus) {
        match status {
            InvocationStatus::Succeeded => self.succeeded += 1,
            InvocationStatus::CaughtException => self.caught += 1,
            InvocationStatus::Exception => self.failed += 1,
            InvocationStatus::TimedOut => self.timed_out += 1,
            InvocationStatus::Cancelled => self.cancelled += 1,
            InvocationStatus::Queued => self.queued += 1,
            InvocationStatus::Running => self.running += 1,
            InvocationStatus::Retried => {}
        }
    }
}

/// A fan-in's ledger: how many items its fan-outs sent towards it, how many delivered, and which
/// ended without delivering (the first [`FanInCounts::LISTED`] of them named).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FanInCounts {
    pub expected: u64,
    pub arrived: u64,
    pub missing: u64,
    /// The first missing items, in the order they were found missing.
    pub missing_items: Vec<MissingItem>,
}

impl FanInCounts {
    /// How many missing items are named (the rest are counted).
    pub const LISTED: usize = 100;

    /// Items still on their way: neither arrived nor missing.
    pub fn pending(&self) -> u64 {
        self.expected.saturating_sub(self.arrived + self.missing)
    }
}

/// An item that ended without delivering to its fan-in.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MissingItem {
    pub item_path: Vec<u32>,
    pub key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// Why (`KeyError: 'city' in "Work"`).
    pub reason: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_names_round_trip_and_match_serde() {
        for status in InvocationStatus::ALL {
            assert_eq!(InvocationStatus::from_name(status.name()), Some(status));
            assert_eq!(
                serde_json::to_value(status).unwrap(),
                serde_json::json!(status.name())
            );
        }
        for status in RunStatus::ALL {
            assert_eq!(RunStatus::from_name(status.name()), Some(status));
            assert_eq!(
                serde_json::to_value(status).unwrap(),
                serde_json::json!(status.name())
            );
        }
        assert_eq!(InvocationStatus::from_name("exploded"), None);
    }

    #[test]
    fn every_count_is_listed_under_its_own_status() {
        let mut counts = BlockCounts::default();
        for (n, status) in InvocationStatus::ALL.into_iter().enumerate() {
            for _ in 0..=n {
                counts.add_final(status);
            }
        }
        // A retried attempt read back is no item's end: an item waiting for its next attempt is
        // counted live, as retrying.
        assert_eq!(counts.retrying, 0);
        counts.retrying = 8;
        let listed: Vec<(InvocationStatus, u64)> = counts.by_status().to_vec();
        let expected: Vec<(InvocationStatus, u64)> =
            InvocationStatus::ALL.into_iter().zip(1..).collect();
        assert_eq!(listed, expected);
    }
}
