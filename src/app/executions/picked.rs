//! The picked invocation: its whole record (from memory, else the history), its children, its lineage
//! (the item's path through the run), and stepping from it to its neighbours.

use std::collections::BTreeSet;

use super::{Executions, LINEAGE_LIMIT, Picked, RunData, Source, Step};
use crate::model::BlockId;
use crate::run::{InvocationId, InvocationRecord, RunId};

impl Executions {
    /// Selects an invocation of the shown run and fetches its whole record and lineage.
    pub fn pick(&mut self, id: InvocationId) {
        let Some(run_id) = self.shown_run_id() else {
            return;
        };
        let Some(run) = self.data(&run_id) else {
            return;
        };
        if run.position_of(id).is_none() {
            return;
        }
        let record = self.fetch_record(run, id);
        let children = self.children_of(run, id);
        let (lineage, lineage_blocks) = self.lineage(run, id, record.as_ref());
        self.picked = Some(Picked {
            run_id,
            id,
            record,
            children,
            lineage,
            lineage_blocks,
        });
    }

    pub(super) fn fetch_record(&self, run: &RunData, id: InvocationId) -> Option<InvocationRecord> {
        if let Some(record) = run.record(id) {
            return Some(record.clone());
        }
        self.history
            .as_ref()?
            .invocation(&run.row.run_id, id)
            .ok()
            .flatten()
    }

    fn parents_of(&self, run: &RunData, id: InvocationId) -> Vec<InvocationId> {
        if let Some(parents) = run.parents.get(&id) {
            return parents.clone();
        }
        self.fetch_record(run, id)
            .map(|r| r.parents.to_vec())
            .unwrap_or_default()
    }

    fn children_of(&self, run: &RunData, id: InvocationId) -> Vec<InvocationId> {
        if run.source == Source::Session {
            return run.children.get(&id).cloned().unwrap_or_default();
        }
        self.history
            .as_ref()
            .and_then(|h| h.children(&run.row.run_id, id).ok())
            .unwrap_or_default()
    }

    /// Every ancestor and (up to [`LINEAGE_LIMIT`]) every descendant of `id`, and their blocks.
    fn lineage(
        &self,
        run: &RunData,
        id: InvocationId,
        record: Option<&InvocationRecord>,
    ) -> (BTreeSet<InvocationId>, BTreeSet<BlockId>) {
        let mut seen = BTreeSet::from([id]);
        let mut up: Vec<InvocationId> =
            record.map_or_else(|| self.parents_of(run, id), |r| r.parents.to_vec());
        while let Some(next) = up.pop() {
            if seen.insert(next) {
                up.extend(self.parents_of(run, next));
            }
        }
        let mut down = vec![id];
        let mut found = 0;
        while let Some(next) = down.pop() {
            for child in self.children_of(run, next) {
                if found < LINEAGE_LIMIT && seen.insert(child) {
                    found += 1;
                    down.push(child);
                }
            }
        }
        let blocks = seen
            .iter()
            .filter_map(|i| run.row_of(*i).map(|r| r.block_id.clone()))
            .collect();
        (seen, blocks)
    }

    /// Where a step from the picked invocation goes (`None`: nowhere to go).
    pub fn step_target(&mut self, step: Step) -> Option<InvocationId> {
        let run_id = self.shown_run_id()?;
        let current = self.picked.as_ref().map(|p| p.id);
        match step {
            Step::NextRow | Step::PreviousRow => {
                let run = self.data(&run_id)?;
                let at = current.and_then(|id| {
                    let position = run.position_of(id)?;
                    self.visible.iter().position(|&i| i == position)
                });
                let index = match (at, step) {
                    (None, _) => 0,
                    (Some(i), Step::NextRow) => i + 1,
                    (Some(i), _) => i.checked_sub(1)?,
                };
                Some(run.rows.get(*self.visible.get(index)?)?.id)
            }
            Step::NextStarted | Step::PreviousStarted => {
                let order = self.start_order(&run_id)?;
                let run = self.data(&run_id)?;
                let at = current
                    .and_then(|id| run.position_of(id))
                    .and_then(|p| order.iter().position(|&i| i == p));
                let index = match (at, step) {
                    (None, _) => 0,
                    (Some(i), Step::NextStarted) => i + 1,
                    (Some(i), _) => i.checked_sub(1)?,
                };
                Some(run.rows.get(*order.get(index)?)?.id)
            }
            Step::Parent => {
                let picked = self.picked.as_ref()?;
                let run = self.data(&run_id)?;
                picked
                    .record
                    .as_ref()
                    .map_or_else(|| self.parents_of(run, picked.id), |r| r.parents.to_vec())
                    .first()
                    .copied()
            }
            Step::Child => self.picked.as_ref()?.children.first().copied(),
        }
    }

    /// The shown run's rows in start order (not-started ones last, by id).
    fn start_order(&mut self, run_id: &RunId) -> Option<Vec<usize>> {
        let generation = self.data(run_id)?.generation;
        if self.by_start.as_ref().is_none_or(|(g, _)| *g != generation) {
            let run = self.data(run_id)?;
            let mut order: Vec<usize> = (0..run.rows.len()).collect();
            order.sort_by(|&a, &b| {
                let (ra, rb) = (&run.rows[a], &run.rows[b]);
                ra.started_at_ms
                    .unwrap_or(f64::INFINITY)
                    .total_cmp(&rb.started_at_ms.unwrap_or(f64::INFINITY))
                    .then(ra.id.cmp(&rb.id))
            });
            self.by_start = Some((generation, order));
        }
        self.by_start.as_ref().map(|(_, o)| o.clone())
    }
}
