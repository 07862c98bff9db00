//! Hands each Queue's messages out in batches: a batch is a run that starts at the Queue with the
//! batch (a list of up to `batch_size` messages, oldest first) as its input, in the background lane.
//! A queue keeps at most as many batches going as background work has slots; the runtime decides
//! when each of their invocations runs.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::watch;

use super::{Host, lock};
use crate::runtime::capacity::Lane;

/// How often the depths the editor shows are read again.
const DEPTHS_EVERY: Duration = Duration::from_millis(200);

/// Runs queue `index`'s batches until `stopped` turns true.
pub(super) async fn run(host: Arc<Host>, index: usize, mut stopped: watch::Receiver<bool>) {
    let queue = &host.queues[index];
    let Some(store) = &host.store else {
        return;
    };
    loop {
        loop {
            if *stopped.borrow() {
                return;
            }
            let free = host
                .window
                .saturating_sub(queue.in_flight.load(Ordering::Acquire));
            if free == 0 {
                break;
            }
            let taken = match store.take(&queue.block.0, free * queue.batch_size).await {
                Ok(taken) => taken,
                Err(message) => {
                    (host.log)(&format!("queue {:?}: {message}", queue.name));
                    break;
                }
            };
            if taken.is_empty() {
                break;
            }
            for batch in taken.chunks(queue.batch_size) {
                let ids = batch.iter().map(|m| m.id).collect();
                let input = Value::Array(batch.iter().map(|m| m.body.clone()).collect());
                queue.in_flight.fetch_add(1, Ordering::AcqRel);
                let run_id = crate::run::RunId::new_random();
                // Known before the run can end, so its end finds it.
                lock(&host.batches).insert(run_id.clone(), (index, ids));
                host.start_batch(&queue.block, run_id, input).await;
            }
        }
        tokio::select! {
            () = queue.wake.notified() => {}
            _ = stopped.wait_for(|stop| *stop) => return,
        }
    }
}

/// Keeps the queues' depths the status shows up to date.
pub(super) async fn watch_depths(host: Arc<Host>, mut stopped: watch::Receiver<bool>) {
    let Some(store) = &host.store else {
        return;
    };
    loop {
        let depths = store.depths().await;
        *lock(&host.depths) = depths;
        tokio::select! {
            () = tokio::time::sleep(DEPTHS_EVERY) => {}
            _ = stopped.wait_for(|stop| *stop) => return,
        }
    }
}

impl Host {
    /// Starts a batch's run (its id already noted with its messages).
    async fn start_batch(
        &self,
        queue: &crate::model::BlockId,
        run_id: crate::run::RunId,
        input: Value,
    ) {
        self.requester
            .send_async(crate::runtime::RuntimeRequest::Trigger(Box::new(
                crate::runtime::Trigger {
                    service: self.service.clone(),
                    run_id,
                    block: queue.clone(),
                    input,
                    lane: Lane::Background,
                },
            )))
            .await;
    }
}
