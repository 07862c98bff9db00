//! `cargo bench --bench dask`: Braid on a loopback Dask cluster (a scheduler and two single-threaded
//! workers with their nannies, started here from the Python Braid runs blocks with), against Dask's own
//! tools on the same cluster in the same run.
//!
//! 1. A 100,000-item trivial fan-out/fan-in, every invocation recorded, against the same work as a Dask
//!    bag written by someone who knows Dask (`db.from_sequence(range(100000), npartitions=10).map(f)`)
//!    and with the bag's default partitions.
//! 2. A CPU-bound fan-out (4 × a 3,000,000-step loop) on two workers against one (a cluster of one),
//!    beside the same loops in Python's `multiprocessing.Pool(2)` against `Pool(1)`: what two cores give
//!    this work on this machine at all.
//! 3. An I/O-bound fan-out (1,000 × `time.sleep(0.1)`) at limit 100 (ideal: 1.0 s; target: 1.5 s).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use braid::model::Project;
use braid::run::{Executor, RunId, RunStatus};
use braid::runtime::dask::local::{LocalCluster, LocalClusterOptions};
use braid::runtime::{RunRequest, RuntimeEvent, RuntimeHandle, RuntimeRequest};

mod common;

/// Samples per measure; `BRAID_BENCH_REPEATS` raises it.
fn repeats() -> usize {
    std::env::var("BRAID_BENCH_REPEATS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3)
}

/// A loopback cluster of `workers` single-threaded workers with their nannies.
fn start_cluster(workers: u32) -> LocalCluster {
    LocalCluster::start(&LocalClusterOptions {
        workers,
        ..LocalClusterOptions::default()
    })
    .unwrap_or_else(|e| panic!("{e}"))
}

fn on(cluster: &LocalCluster) -> Executor {
    Executor::Dask {
        scheduler: cluster.address().to_owned(),
    }
}

/// Runs to the end on the cluster, recording into `history` when given; the wall time and records.
fn run(
    runtime: &mut RuntimeHandle,
    project: &Project,
    limit: u32,
    executor: &Executor,
    history: Option<&Path>,
) -> (Duration, usize) {
    let run_id = RunId::new_random();
    let start = Instant::now();
    runtime.send(RuntimeRequest::Run(Box::new(RunRequest {
        concurrency: Some(limit),
        history: history.map(Path::to_path_buf),
        executor: executor.clone(),
        ..RunRequest::new(run_id.clone(), project.clone())
    })));
    let mut records = 0;
    loop {
        match runtime.recv_blocking().expect("runtime alive") {
            RuntimeEvent::Invocations { records: batch, .. } => records += batch.len(),
            RuntimeEvent::RunFinished(summary) if summary.run_id == run_id => {
                assert_eq!(
                    summary.status,
                    RunStatus::Succeeded,
                    "{:?}",
                    summary.failures
                );
                return (start.elapsed(), records);
            }
            RuntimeEvent::RunRefused {
                run_id: refused,
                message,
                ..
            } if refused == run_id => panic!("refused: {message}"),
            _ => {}
        }
    }
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

/// The same 100,000 trivial invocations as a Dask bag on the cluster, from a client already connected
/// (as a Dask user's session would be): the seconds `compute()` took, per sample.
fn dask_bag(address: &str, partitions: Option<usize>, n: usize, repeats: usize) -> Vec<Duration> {
    let python = braid::runtime::environment::python_executable();
    let partitions = partitions.map_or_else(|| "None".to_owned(), |p| p.to_string());
    let script = format!(
        "import sys, time\nimport dask.bag as db\nfrom distributed import Client\n\
         client = Client(sys.argv[1])\n\
         def f(x):\n    return x * 2\n\
         for _ in range({repeats}):\n    \
             start = time.perf_counter()\n    \
             bag = db.from_sequence(range({n}), npartitions={partitions}) if {partitions} else db.from_sequence(range({n}))\n    \
             out = bag.map(f).compute()\n    \
             assert len(out) == {n}\n    \
             print(time.perf_counter() - start, flush=True)\n\
         client.close()\n"
    );
    let output = Command::new(&python)
        .args(["-c", &script, address])
        .stderr(Stdio::null())
        .output()
        .expect("python runs");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| line.trim().parse::<f64>().ok())
        .map(Duration::from_secs_f64)
        .collect()
}

/// The same four loops on two processes and on one, as plain Python does it (pools started
/// beforehand): how much faster two cores make this work on this machine with nothing of Dask or Braid
/// in the way. (Pool(2), Pool(1)) medians.
fn pool_ceiling(repeats: usize) -> (Duration, Duration) {
    let python = braid::runtime::environment::python_executable();
    let script = format!(
        "import time\nfrom multiprocessing import Pool\n\
         def main(n):\n    total = 0\n    for i in range(n):\n        total += i\n    return total\n\
         if __name__ == '__main__':\n    \
             for size in (2, 1):\n        \
                 with Pool(size) as pool:\n            \
                     pool.map(main, [1] * size, chunksize=1)\n            \
                     for _ in range({repeats}):\n                \
                         start = time.perf_counter()\n                \
                         pool.map(main, [3_000_000] * 4, chunksize=1)\n                \
                         print(size, time.perf_counter() - start, flush=True)\n"
    );
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("ceiling.py");
    std::fs::write(&path, script).expect("script written");
    let output = Command::new(&python)
        .arg(&path)
        .stderr(Stdio::inherit())
        .output()
        .expect("python runs");
    let (mut two, mut one) = (Vec::new(), Vec::new());
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        let mut fields = line.split_whitespace();
        let (Some(size), Some(seconds)) = (fields.next(), fields.next()) else {
            continue;
        };
        let Ok(seconds) = seconds.parse::<f64>() else {
            continue;
        };
        match size {
            "2" => two.push(Duration::from_secs_f64(seconds)),
            "1" => one.push(Duration::from_secs_f64(seconds)),
            _ => {}
        }
    }
    assert!(!two.is_empty() && !one.is_empty(), "the pool script ran");
    (median(two), median(one))
}

const COUNT_ITEMS: &str = "def main(block_input, backpack):\n    return len(block_input)\n";

fn main() {
    let repeats = repeats();
    let n = 100_000;
    println!(
        "Braid on a loopback Dask cluster (2 single-threaded workers), medians of {repeats}\n"
    );
    let cluster = start_cluster(2);
    let executor = on(&cluster);
    let mut runtime = RuntimeHandle::start(common::config()).expect("runtime");
    // The bridge connects and the workers' children start: not part of what is timed.
    let warm = common::fan_project(
        "def main(block_input, backpack):\n    return list(range(8))\n",
        "def main(block_input, backpack):\n    return 1\n",
        COUNT_ITEMS,
    );
    run(&mut runtime, &warm, 8, &executor, None);

    let trivial = common::fan_project(
        &format!("def main(block_input, backpack):\n    return list(range({n}))\n"),
        "def main(block_input, backpack):\n    return block_input * 2\n",
        COUNT_ITEMS,
    );
    let dir = tempfile::tempdir().expect("temp dir");
    let database = dir.path().join("bench.history.sqlite");
    let mut braid_times = Vec::new();
    for _ in 0..repeats {
        let (time, records) = run(&mut runtime, &trivial, 1000, &executor, Some(&database));
        assert_eq!(records, n + 2);
        braid_times.push(time);
    }
    let braid = median(braid_times);
    let bag10 = median(dask_bag(cluster.address(), Some(10), n, repeats));
    let bag_default = median(dask_bag(cluster.address(), None, n, repeats));
    println!("1. {n}-item trivial fan-out/fan-in, every invocation recorded, limit 1,000");
    println!("   braid --cluster:                         {}", ms(braid));
    println!(
        "   dask bag, npartitions=10:                {} (braid {:.2}x its time)",
        ms(bag10),
        braid.as_secs_f64() / bag10.as_secs_f64()
    );
    println!(
        "   dask bag, default partitions:            {} (braid {:.2}x its time)\n",
        ms(bag_default),
        braid.as_secs_f64() / bag_default.as_secs_f64()
    );

    let cpu = common::fan_project(
        "def main(block_input, backpack):\n    return [3_000_000] * 4\n",
        "def main(block_input, backpack):\n    total = 0\n    for i in range(block_input):\n        total += i\n    return total\n",
        COUNT_ITEMS,
    );
    let two = median(
        (0..repeats)
            .map(|_| run(&mut runtime, &cpu, 4, &executor, None).0)
            .collect(),
    );
    drop(runtime);
    drop(cluster);
    let single = start_cluster(1);
    let mut runtime = RuntimeHandle::start(common::config()).expect("runtime");
    run(&mut runtime, &warm, 8, &on(&single), None);
    let one = median(
        (0..repeats)
            .map(|_| run(&mut runtime, &cpu, 4, &on(&single), None).0)
            .collect(),
    );
    drop(runtime);
    drop(single);
    let (pool_two, pool_one) = pool_ceiling(repeats);
    println!("2. CPU-bound fan-out, 4 x a 3,000,000-step loop (target: two workers at least 1.8x)");
    println!("   two workers: {}; one worker: {}", ms(two), ms(one));
    println!(
        "   two workers are {:.2}x faster",
        one.as_secs_f64() / two.as_secs_f64()
    );
    println!(
        "   this machine's own ceiling, the same 4 loops in Python's multiprocessing.Pool (no Dask, \
         no Braid): Pool(2) {}, Pool(1) {}: {:.2}x\n",
        ms(pool_two),
        ms(pool_one),
        pool_one.as_secs_f64() / pool_two.as_secs_f64()
    );

    let cluster = start_cluster(2);
    let executor = on(&cluster);
    let mut runtime = RuntimeHandle::start(common::config()).expect("runtime");
    run(&mut runtime, &warm, 8, &executor, None);
    let sleepy = common::fan_project(
        "def main(block_input, backpack):\n    return list(range(1000))\n",
        "import time\ndef main(block_input, backpack):\n    time.sleep(0.1)\n    return block_input\n",
        COUNT_ITEMS,
    );
    let waited = median(
        (0..repeats)
            .map(|_| run(&mut runtime, &sleepy, 100, &executor, None).0)
            .collect(),
    );
    println!(
        "3. I/O-bound fan-out, 1,000 x time.sleep(0.1) at limit 100 (ideal 1,000 ms; target 1,500 ms)"
    );
    println!(
        "   braid --cluster: {} ({:.2}x the ideal)",
        ms(waited),
        waited.as_secs_f64()
    );
    drop(runtime);
}
