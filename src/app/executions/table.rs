//! The Block Executions table: which rows of a run pass the filter, in which order, and how rows that
//! arrive later merge into a table already built (a growing run).

use std::collections::BTreeSet;

use serde_json::Value;

use super::RunData;
use crate::model::BlockId;
use crate::run::{InvocationId, InvocationRow, InvocationStatus, RowOrder, in_failure_group};

/// The table's filter, as the panel sets it (the block comes from the canvas selection).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TableFilter {
    /// Empty: every status.
    pub statuses: Vec<InvocationStatus>,
    pub text: String,
    /// Item path as the user typed it: `3` or `3, 7` or `[3,7]`.
    pub item_path: String,
    /// Only the failures of this group (its shape: see [`crate::run::failure_shape`]).
    pub failure_group: Option<String>,
    pub order: RowOrder,
}

/// `3, 7` → `[3, 7]`; `None` when it is not a path (empty text is the empty prefix: no filter).
pub fn parse_item_path(text: &str) -> Option<Vec<u32>> {
    let inner = text.trim().trim_start_matches('[').trim_end_matches(']');
    inner
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().ok())
        .collect()
}

/// The rows of `run` that pass the filter, as indices, in the filter's order.
pub fn filter_rows(
    run: &RunData,
    block: Option<&BlockId>,
    filter: &TableFilter,
    text_ids: Option<&BTreeSet<InvocationId>>,
) -> Vec<usize> {
    let mut visible = filter_range(run, block, filter, text_ids, 0);
    visible.sort_by(row_order(run, filter.order));
    visible
}

/// The rows from index `from` on that pass the filter, in row order.
fn filter_range(
    run: &RunData,
    block: Option<&BlockId>,
    filter: &TableFilter,
    text_ids: Option<&BTreeSet<InvocationId>>,
    from: usize,
) -> Vec<usize> {
    let prefix = parse_item_path(&filter.item_path).unwrap_or_default();
    let text = filter.text.trim().to_lowercase();
    run.rows
        .iter()
        .enumerate()
        .skip(from)
        .filter(|(_, row)| {
            block.is_none_or(|b| &row.block_id == b)
                && (filter.statuses.is_empty() || filter.statuses.contains(&row.status))
                && row.item_path.starts_with(&prefix)
                && filter
                    .failure_group
                    .as_deref()
                    .is_none_or(|shape| in_failure_group(row, shape))
                && (text.is_empty()
                    || row_item_matches(row, &text)
                    || text_ids.map_or_else(
                        || row_matches_text(run, row, &text),
                        |ids| ids.contains(&row.id),
                    ))
        })
        .map(|(i, _)| i)
        .collect()
}

/// How two rows (by index) compare in a table order.
fn row_order(run: &RunData, order: RowOrder) -> impl Fn(&usize, &usize) -> std::cmp::Ordering + '_ {
    let duration = |i: usize| run.rows[i].duration_ms().unwrap_or(-1.0);
    let start = |i: usize| run.rows[i].started_at_ms.unwrap_or(f64::INFINITY);
    move |&a, &b| match order {
        RowOrder::Id => run.rows[a].id.cmp(&run.rows[b].id),
        RowOrder::Started => start(a).total_cmp(&start(b)),
        RowOrder::DurationDescending => duration(b).total_cmp(&duration(a)),
        RowOrder::DurationAscending => duration(a).total_cmp(&duration(b)),
    }
}

/// Merges rows that arrived since the table was built (a growing run) into it: only the new rows are
/// filtered and sorted, then the two sorted lists merge, so a million-row table keeps up cheaply.
pub(super) fn merge_new_rows(
    run: &RunData,
    block: Option<&BlockId>,
    filter: &TableFilter,
    visible: &[usize],
    from: usize,
) -> Vec<usize> {
    let mut new = filter_range(run, block, filter, None, from);
    let order = row_order(run, filter.order);
    new.sort_by(&order);
    let mut merged = Vec::with_capacity(visible.len() + new.len());
    let (mut a, mut b) = (visible.iter().peekable(), new.iter().peekable());
    while let (Some(&&x), Some(&&y)) = (a.peek(), b.peek()) {
        if order(&y, &x) == std::cmp::Ordering::Less {
            merged.push(y);
            b.next();
        } else {
            merged.push(x);
            a.next();
        }
    }
    merged.extend(a);
    merged.extend(b);
    merged
}

/// Whether `needle` (lower case) is in the row's item key or label.
fn row_item_matches(row: &InvocationRow, needle: &str) -> bool {
    row.item.as_ref().is_some_and(|item| {
        item.key().to_lowercase().contains(needle)
            || item
                .label()
                .is_some_and(|label| label.to_lowercase().contains(needle))
    })
}

/// Whether `needle` (lower case) is in the row's input, output or error; whole records are searched
/// when held, else the row's preview and error summary.
fn row_matches_text(run: &RunData, row: &InvocationRow, needle: &str) -> bool {
    if let Some(record) = run.record(row.id) {
        let output = record.output.as_ref().map(Value::to_string);
        let haystacks = [
            Some(record.input.to_string()),
            output,
            record
                .error
                .as_ref()
                .map(|e| format!("{}\n{}", e.summary(), e.traceback)),
            Some(record.stdout.clone()),
            Some(record.stderr.clone()),
        ];
        return haystacks
            .into_iter()
            .flatten()
            .any(|h| h.to_lowercase().contains(needle));
    }
    row.input_preview.to_lowercase().contains(needle)
        || row
            .error_summary
            .as_ref()
            .is_some_and(|e| e.to_lowercase().contains(needle))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::executions::Source;
    use crate::run::{BlockCounts, RunId, RunRow, RunStatus};

    #[test]
    fn item_paths_parse_from_what_people_type() {
        assert_eq!(parse_item_path("[3, 7]"), Some(vec![3, 7]));
        assert_eq!(parse_item_path("3,7"), Some(vec![3, 7]));
        assert_eq!(parse_item_path(""), Some(vec![]));
        assert_eq!(parse_item_path("x"), None);
    }

    #[test]
    fn filters_and_sorts_in_memory() {
        let mut rows = vec![
            InvocationRow::succeeded(1, 0.0, 10.0),
            InvocationRow::succeeded(2, 1.0, 2.0),
            InvocationRow::succeeded(3, 2.0, 30.0),
        ];
        rows[1].status = InvocationStatus::Exception;
        rows[2].item_path = smallvec::smallvec![4];
        let run = RunData::from_rows(
            RunRow {
                run_id: RunId("r".into()),
                status: RunStatus::Failed,
                started_at_ms: 0.0,
                duration_ms: Some(30.0),
                invocations: 3,
                counts: BlockCounts::default(),
                executor: crate::run::Executor::Local,
                redrive_of: None,
            },
            rows,
            Source::Session,
        );
        let filter = TableFilter {
            order: RowOrder::DurationDescending,
            ..TableFilter::default()
        };
        assert_eq!(filter_rows(&run, None, &filter, None), vec![2, 0, 1]);
        let failed = TableFilter {
            statuses: vec![InvocationStatus::Exception],
            ..TableFilter::default()
        };
        assert_eq!(filter_rows(&run, None, &failed, None), vec![1]);
        let item = TableFilter {
            item_path: "4".into(),
            ..TableFilter::default()
        };
        assert_eq!(filter_rows(&run, None, &item, None), vec![2]);
        assert_eq!(run.counts[&BlockId("b".into())].failed, 1);
    }

    #[test]
    fn rows_that_arrive_later_merge_in_order() {
        let mut run = RunData::from_rows(
            RunRow {
                run_id: RunId("r".into()),
                status: RunStatus::Running,
                started_at_ms: 0.0,
                duration_ms: None,
                invocations: 0,
                counts: BlockCounts::default(),
                executor: crate::run::Executor::Local,
                redrive_of: None,
            },
            vec![
                InvocationRow::succeeded(5, 0.0, 9.0),
                InvocationRow::succeeded(2, 0.0, 1.0),
            ],
            Source::Session,
        );
        let filter = TableFilter {
            order: RowOrder::DurationDescending,
            ..TableFilter::default()
        };
        let visible = filter_rows(&run, None, &filter, None);
        assert_eq!(visible, vec![0, 1]);
        run.push_row(InvocationRow::succeeded(3, 0.0, 4.0));
        run.push_row(InvocationRow::succeeded(1, 0.0, 20.0));
        let merged = merge_new_rows(&run, None, &filter, &visible, 2);
        assert_eq!(merged, filter_rows(&run, None, &filter, None));
        assert_eq!(merged, vec![3, 0, 2, 1]);
    }
}
