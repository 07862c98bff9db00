//! A load generator for `braid serve` (loopback only): `clients` connections kept alive, each sending
//! its share of `requests` GETs one after another, every latency measured. Used by the load test and
//! by `benches/serve.rs`.

use std::time::{Duration, Instant};

use http_body_util::{BodyExt as _, Empty};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// What a load gave back.
#[derive(Debug)]
pub struct Load {
    /// Each request's time to its whole answer, in ms, sorted.
    pub latencies_ms: Vec<f64>,
    /// How many answers had each status (0: no answer at all).
    pub statuses: Vec<(u16, usize)>,
    /// From the first request sent to the last answer.
    pub elapsed: Duration,
}

impl Load {
    /// The latency at `q` (0.99 for the 99th percentile), in ms.
    pub fn quantile(&self, q: f64) -> f64 {
        if self.latencies_ms.is_empty() {
            return f64::NAN;
        }
        let index = ((self.latencies_ms.len() as f64 * q).ceil() as usize).max(1) - 1;
        self.latencies_ms[index.min(self.latencies_ms.len() - 1)]
    }

    pub fn ok(&self) -> usize {
        self.statuses
            .iter()
            .filter(|(status, _)| *status == 200)
            .map(|(_, n)| n)
            .sum()
    }

    pub fn per_second(&self) -> f64 {
        self.latencies_ms.len() as f64 / self.elapsed.as_secs_f64()
    }
}

/// Sends `requests` GETs to `url` over `clients` connections; gives up on a request after `patience`.
pub fn hammer(url: &str, requests: usize, clients: usize, patience: Duration) -> Load {
    assert!(
        url.starts_with("http://127.") || url.starts_with("http://localhost"),
        "load only a server on this machine: {url}"
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(clients)
            .build_http();
        let uri: hyper::Uri = url.parse().expect("a URL");
        let started = Instant::now();
        let tasks: Vec<_> = (0..clients)
            .map(|client_index| {
                let client = client.clone();
                let uri = uri.clone();
                let share = requests / clients + usize::from(client_index < requests % clients);
                tokio::spawn(async move {
                    let mut seen = Vec::with_capacity(share);
                    for _ in 0..share {
                        let sent = Instant::now();
                        let answer = tokio::time::timeout(patience, async {
                            let response = client.get(uri.clone()).await.ok()?;
                            let status = response.status().as_u16();
                            response.into_body().collect().await.ok()?;
                            Some(status)
                        })
                        .await
                        .ok()
                        .flatten();
                        seen.push((answer.unwrap_or(0), sent.elapsed().as_secs_f64() * 1000.0));
                    }
                    seen
                })
            })
            .collect();
        let mut latencies_ms = Vec::with_capacity(requests);
        let mut statuses: Vec<(u16, usize)> = Vec::new();
        for task in tasks {
            for (status, ms) in task.await.expect("a client") {
                latencies_ms.push(ms);
                match statuses.iter_mut().find(|(s, _)| *s == status) {
                    Some((_, n)) => *n += 1,
                    None => statuses.push((status, 1)),
                }
            }
        }
        let elapsed = started.elapsed();
        latencies_ms.sort_by(f64::total_cmp);
        statuses.sort_unstable();
        Load {
            latencies_ms,
            statuses,
            elapsed,
        }
    })
}
