//! Timer blocks: each fires on its schedule (UTC) and starts a run at itself, in the background lane.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use chrono::Utc;
use serde_json::Value;
use tokio::sync::watch;

use super::Host;
use crate::model::schedule::Schedule;
use crate::runtime::capacity::Lane;

/// Fires timer `index` until `stopped` turns true.
pub(super) async fn run(host: Arc<Host>, index: usize, mut stopped: watch::Receiver<bool>) {
    let timer = &host.timers[index];
    // A rate counts from when serving started (as CloudWatch's does from when its rule was made).
    let mut after = timer.since;
    loop {
        let Some(next) = timer.schedule.next_after(after) else {
            timer.next_ms.store(0, Ordering::Relaxed);
            return;
        };
        timer
            .next_ms
            .store(next.timestamp_millis().max(1) as u64, Ordering::Relaxed);
        let wait = (next - Utc::now()).to_std().unwrap_or_default();
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            _ = stopped.wait_for(|stop| *stop) => return,
        }
        // A Timer block returns its input string whatever it is given.
        host.trigger(&timer.block, Value::Null, Lane::Background)
            .await;
        timer.fired.fetch_add(1, Ordering::Relaxed);
        after = next;
        // Firings missed while the machine slept are not made up for: the next is the next one due.
        let now = Utc::now();
        if matches!(timer.schedule, Schedule::Rate(_))
            && timer.schedule.next_after(after).is_some_and(|n| n < now)
        {
            after = now;
        }
    }
}
