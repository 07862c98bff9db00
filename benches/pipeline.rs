//! `cargo bench --bench pipeline`: Braid's executor against Python's own tools, measured in the same run
//! on the same machine, so the ratios hold even where the absolute numbers don't.
//!
//! 1. A 100,000-item trivial fan-out/fan-in, every invocation recorded, against
//!    `multiprocessing.Pool(2)` running the same work two ways ([`POOL_CALLS`]), in process and as
//!    whole processes; then the same run on a warm runtime with and without the history database, for
//!    the cost of recording.
//! 2. A CPU-bound fan-out (4 items × a 3,000,000-step loop) at limit 4 against limit 1.
//! 3. An I/O-bound fan-out (1,000 × `time.sleep(0.1)`) at limit 100 (ideal: 1.0 s).
//! 4. The seed's 100-item map-reduce, from a cold start (runtime and workers included).

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use braid::model::Project;
use braid::run::{RunId, RunStatus};
use braid::runtime::history::History;
use braid::runtime::{RunRequest, RuntimeEvent, RuntimeHandle, RuntimeRequest};
use serde_json::{Value, json};

/// Samples per measure; `BRAID_BENCH_REPEATS` raises it (for profiling).
fn repeats() -> usize {
    std::env::var("BRAID_BENCH_REPEATS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3)
}

const COUNT_ITEMS: &str = "def main(block_input, backpack):\n    return len(block_input)\n";

/// The fan-out/fan-in whose collector counts what it got.
fn fan_project(generate: &str, work: &str) -> Project {
    common::fan_project(generate, work, COUNT_ITEMS)
}

/// Runs to the end, taking every record as the editor would; returns the wall time and the record count.
fn run(runtime: &mut RuntimeHandle, project: &Project, limit: u32) -> (Duration, usize) {
    run_recorded(runtime, project, limit, None)
}

/// [`run`], recording into a history database when given one. The time includes the wait for the writer
/// to commit the whole run (the engine sends `RunFinished` only then).
fn run_recorded(
    runtime: &mut RuntimeHandle,
    project: &Project,
    limit: u32,
    history: Option<&Path>,
) -> (Duration, usize) {
    let request = RunRequest {
        concurrency: Some(limit),
        history: history.map(Path::to_path_buf),
        ..RunRequest::new(RunId::new_random(), project.clone())
    };
    let mut records = 0;
    let time = follow(runtime, request, RunStatus::Succeeded, |batch| {
        records += batch.len();
    });
    (time, records)
}

/// Sends `request` and takes its events until it ends as `status`, handing each batch of records to
/// `each`; returns the time from sending it to its end.
fn follow(
    runtime: &mut RuntimeHandle,
    request: RunRequest,
    status: RunStatus,
    mut each: impl FnMut(&[braid::run::InvocationRecord]),
) -> Duration {
    let run_id = request.run_id.clone();
    let start = Instant::now();
    runtime.send(RuntimeRequest::Run(Box::new(request)));
    loop {
        match runtime.recv_blocking().expect("runtime alive") {
            RuntimeEvent::Invocations {
                run_id: of,
                records,
            } if of == run_id => each(&records),
            RuntimeEvent::RunFinished(summary) if summary.run_id == run_id => {
                assert_eq!(summary.status, status, "{:?}", summary.failures);
                return start.elapsed();
            }
            RuntimeEvent::RunRefused { message, .. } => panic!("{message}"),
            _ => {}
        }
    }
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn median_f64(mut samples: Vec<f64>) -> f64 {
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

fn python() -> String {
    std::env::var("PYO3_PYTHON").unwrap_or_else(|_| "python3".to_owned())
}

/// The two ways `multiprocessing.Pool(2)` runs the trivial work: what each is called, the function,
/// and the pool call (`{n}` is the item count).
const POOL_CALLS: [(&str, &str, &str); 2] = [
    (
        "Pool(2).map of a one-argument function",
        "def main(x):\n    return x * 2\n",
        "pool.map(main, range({n}))",
    ),
    (
        "Pool(2).starmap of the block's main(block_input, backpack), a backpack each",
        "def main(block_input, backpack):\n    return block_input * 2\n",
        "pool.starmap(main, [(i, {}) for i in range({n})])",
    ),
];

/// A pool call of [`POOL_CALLS`] on the same trivial work, timed inside Python: (pool start and the
/// call, a second call on the same warm pool). The starmap's argument pairs are made in the call, as
/// a script would (in Braid, the generating block makes the list).
fn python_pool(n: usize, (_, function, call): (&str, &str, &str)) -> (Duration, Duration) {
    let call = call.replace("{n}", &n.to_string());
    let script = format!(
        "import multiprocessing, time\n\
         {function}\
         if __name__ == '__main__':\n\
         \x20   t = time.perf_counter()\n\
         \x20   with multiprocessing.Pool(2) as pool:\n\
         \x20       out = {call}\n\
         \x20       cold = time.perf_counter() - t\n\
         \x20       t = time.perf_counter()\n\
         \x20       out = {call}\n\
         \x20       warm = time.perf_counter() - t\n\
         \x20   assert len(out) == {n}\n\
         \x20   print(cold, warm)\n"
    );
    let dir = std::env::temp_dir().join(format!("braid-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("pool.py");
    std::fs::write(&path, script).expect("write script");
    let out = Command::new(python())
        .arg(&path)
        .output()
        .expect("python runs");
    let text = String::from_utf8_lossy(&out.stdout);
    let mut secs = text
        .split_whitespace()
        .map(|s| s.parse::<f64>().expect("python prints its times"));
    let mut next = || Duration::from_secs_f64(secs.next().expect("two times"));
    (next(), next())
}

/// How much faster `multiprocessing.Pool(2)` runs the CPU-bound section's four loops than one process
/// running them one after another: what two processes give on this machine (ideal 2x).
fn python_two_processes() -> f64 {
    let script = "import multiprocessing, time\n\
         def work(n):\n\
         \x20   total = 0\n\
         \x20   for i in range(n):\n\
         \x20       total += i\n\
         \x20   return total\n\
         if __name__ == '__main__':\n\
         \x20   with multiprocessing.Pool(2) as pool:\n\
         \x20       pool.map(work, [1, 1])\n\
         \x20       t = time.perf_counter()\n\
         \x20       [work(3_000_000) for _ in range(4)]\n\
         \x20       one = time.perf_counter() - t\n\
         \x20       t = time.perf_counter()\n\
         \x20       pool.map(work, [3_000_000] * 4, chunksize=1)\n\
         \x20       print(one / (time.perf_counter() - t))\n";
    let out = Command::new(python())
        .args(["-c", script])
        .output()
        .expect("python runs");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("python prints its ratio")
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

/// The Rust side alone: the same fan-out/fan-in through the scheduler, each task answered at once with
/// `input * 2` as Python would (no worker, no channels). What is left of the 100,000-item run's time
/// when this is taken away is the workers and the hops between threads.
fn scheduler_alone(n: usize, repeats: usize) {
    use braid::runtime::invoker::{Outcome, TaskResult};
    use braid::runtime::plan::Plan;
    use braid::runtime::scheduler::RunScheduler;
    let project = common::fan_project("", "", "");
    let plan = std::sync::Arc::new(Plan::new(&project));
    let times: Vec<Duration> = (0..repeats)
        .map(|_| {
            let started = Instant::now();
            let mut scheduler = RunScheduler::new(
                RunId::new_random(),
                std::sync::Arc::clone(&plan),
                1,
                1000,
                0,
            );
            scheduler.start(&[0], &Value::Null, &json!({}));
            let mut records = 0;
            loop {
                let tasks = scheduler.take_ready();
                if tasks.is_empty() {
                    break;
                }
                // One batch per step, as the engine feeds a worker's reply in.
                let results = tasks.into_iter().map(|task| {
                    let input: Value = serde_json::from_str(&task.input_json).expect("json");
                    let output = if task.block == 0 {
                        Value::from((0..n).collect::<Vec<_>>())
                    } else if task.block == 1 {
                        Value::from(input.as_u64().unwrap_or(0) * 2)
                    } else {
                        Value::from(input.as_array().map_or(0, Vec::len))
                    };
                    TaskResult {
                        worker: None,
                        key: task.key,
                        attempt: 1,
                        started_at_ms: Some(0.0),
                        ended_at_ms: Some(0.0),
                        stdout: String::new(),
                        stderr: String::new(),
                        outcome: Outcome::Returned {
                            output,
                            backpack: None,
                            ifs: Vec::new(),
                            items: Vec::new(),
                        },
                    }
                });
                scheduler.complete_all(results.collect::<Vec<_>>());
                records += scheduler.take_records().len();
            }
            assert_eq!(records, n + 2);
            started.elapsed()
        })
        .collect();
    let time = median(times);
    println!("0. The scheduler alone (no Python), {n}-item fan-out/fan-in (median of {repeats})");
    println!(
        "   {}  ({:.2} us per invocation)\n",
        ms(time),
        time.as_secs_f64() * 1e6 / n as f64
    );
}

/// Whole processes, as a user starts them: `braid run` of the project, recording its history, against
/// `python pool.py` for each of [`POOL_CALLS`] (the "about 130–320 ms here" for `Pool.map`
/// matches the block's own two-argument function run this way: about 140–150 ms on this machine, where
/// the one-argument `map` takes about 70).
fn whole_process(n: usize, project: &braid::model::Project, repeats: usize) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("trivial.braid.json");
    braid::model::format::save_project(&path, project).expect("project saved");
    let scripts: Vec<(&str, std::path::PathBuf)> = POOL_CALLS
        .iter()
        .enumerate()
        .map(|(i, (what, function, call))| {
            let script = dir.path().join(format!("pool{i}.py"));
            let call = call.replace("{n}", &n.to_string());
            std::fs::write(
                &script,
                format!(
                    "import multiprocessing\n\
                     {function}\
                     if __name__ == '__main__':\n\
                     \x20   with multiprocessing.Pool(2) as pool:\n\
                     \x20       assert len({call}) == {n}\n"
                ),
            )
            .expect("script written");
            (*what, script)
        })
        .collect();
    let time = |command: &mut Command| {
        let started = Instant::now();
        let status = command.output().expect("process runs").status;
        assert!(status.success(), "{command:?} failed");
        started.elapsed()
    };
    // Interleaved, so that the machine's drift affects all alike.
    let mut braid = Vec::new();
    let mut pools = vec![Vec::new(); scripts.len()];
    for _ in 0..repeats {
        braid.push(time(
            Command::new(env!("CARGO_BIN_EXE_braid"))
                .arg("run")
                .arg(&path),
        ));
        for ((_, script), times) in scripts.iter().zip(&mut pools) {
            times.push(time(Command::new(python()).arg(script)));
        }
    }
    let b = median(braid);
    println!("1c. The same, whole processes (median of {repeats})");
    println!("   `braid run` (history recorded): {}", ms(b));
    for ((what, _), times) in scripts.iter().zip(pools) {
        print_ratio(&format!("   `python pool.py`, {what}"), b, times);
    }
    println!();
}

/// `label: <baseline's median>, ratio <braid / baseline>`.
fn print_ratio(label: &str, braid: Duration, baseline: Vec<Duration>) {
    let p = median(baseline);
    println!(
        "{label}: {}, ratio {:.2}x",
        ms(p),
        braid.as_secs_f64() / p.as_secs_f64()
    );
}

mod common;

use common::config;

fn main() {
    let repeats = repeats();
    // `cargo bench --bench pipeline -- 1 3` runs only sections 1 and 3 (cargo adds `--bench` itself).
    let only: Vec<String> = std::env::args()
        .skip(1)
        .filter(|arg| !arg.starts_with('-'))
        .collect();
    let want = |section: &str| only.is_empty() || only.iter().any(|s| s == section);
    println!(
        "Braid executor benchmark ({} cores)\n",
        common::pool().workers
    );

    let n = 100_000;
    if want("0") {
        scheduler_alone(n, repeats);
    }
    let trivial = fan_project(
        &format!("def main(block_input, backpack):\n    return list(range({n}))\n"),
        "def main(block_input, backpack):\n    return block_input * 2\n",
    );
    if want("1") {
        let (mut braid_cold, mut braid_warm) = (Vec::new(), Vec::new());
        let mut pools = vec![(Vec::new(), Vec::new()); POOL_CALLS.len()];
        for _ in 0..repeats {
            let started = Instant::now();
            let mut runtime = RuntimeHandle::start(config()).expect("runtime");
            let (_, records) = run(&mut runtime, &trivial, 1000);
            assert_eq!(records, n + 2);
            braid_cold.push(started.elapsed());
            // Again on the same workers, as in the editor (they start when it opens).
            braid_warm.push(run(&mut runtime, &trivial, 1000).0);
            for (call, (cold, warm)) in POOL_CALLS.iter().zip(&mut pools) {
                let (c, w) = python_pool(n, *call);
                cold.push(c);
                warm.push(w);
            }
        }
        println!(
            "1. {n}-item trivial fan-out/fan-in, every invocation recorded (median of {repeats}; target: at most 1.5x)"
        );
        let (pool_cold, pool_warm): (Vec<_>, Vec<_>) = pools.into_iter().unzip();
        for (what, braid, pool) in [
            ("cold (workers / pool started)", braid_cold, pool_cold),
            ("warm (workers / pool running)", braid_warm, pool_warm),
        ] {
            let b = median(braid);
            println!("   {what}: braid {}", ms(b));
            for ((call, _, _), times) in POOL_CALLS.iter().zip(pool) {
                print_ratio(&format!("      {call}"), b, times);
            }
        }
        println!();
    }

    if want("1c") {
        whole_process(n, &trivial, repeats);
    }

    let mut runtime = RuntimeHandle::start(config()).expect("runtime");
    // Warm the workers so start-up does not count below.
    run(
        &mut runtime,
        &fan_project(
            "def main(block_input, backpack):\n    return [1]\n",
            "def main(block_input, backpack):\n    return 1\n",
        ),
        10,
    );

    if want("1b") {
        // 1b. The cost of recording history: the same run without it, recorded into a fresh database (a
        // project's first run: the database is created as the run starts), and recorded into the
        // database earlier runs made (every later run), alternating.
        let dir = tempfile::tempdir().expect("temp dir");
        let kept = dir.path().join("kept.history.sqlite");
        let (mut plain_times, mut fresh_times, mut kept_times) =
            (Vec::new(), Vec::new(), Vec::new());
        // Each run starts from a quiet machine: the writer checkpoints a recorded run's WAL after the run
        // has ended, and that must not land in the next run's time.
        let settle = || std::thread::sleep(Duration::from_millis(300));
        for repeat in 0..repeats {
            settle();
            plain_times.push(run(&mut runtime, &trivial, 1000).0);
            for (db, times) in [
                (
                    dir.path().join(format!("{repeat}.history.sqlite")),
                    &mut fresh_times,
                ),
                (kept.clone(), &mut kept_times),
            ] {
                settle();
                let (time, records) = run_recorded(&mut runtime, &trivial, 1000, Some(&db));
                assert_eq!(records, n + 2);
                times.push(time);
                // What was timed is the whole run, recorded.
                let history = History::open(&db).expect("history");
                let runs = history.runs().expect("runs");
                assert_eq!(runs[0].invocations, n as u64 + 2);
            }
        }
        let plain = median(plain_times.clone());
        println!(
            "1b. The same {n}-item run on a warm runtime, with and without history (median of {repeats})"
        );
        println!("   without history:                  {}", ms(plain));
        for (what, times) in [
            ("into a new database (first run)", fresh_times),
            ("into the project's database", kept_times),
        ] {
            // Each repeat runs the three back to back, so the ratio within a repeat is not thrown off by
            // the machine's speed drifting between repeats (medians of times alone moved by ±10%).
            let ratios: Vec<f64> = times
                .iter()
                .zip(&plain_times)
                .map(|(recorded, plain)| recorded.as_secs_f64() / plain.as_secs_f64())
                .collect();
            let recorded = median(times);
            println!(
                "   {what:<33} {}  overhead {:.2}x (median of the repeats' own ratios; target: at most 1.10x)",
                ms(recorded),
                median_f64(ratios)
            );
        }
        println!();
    }

    if want("2") {
        // 2. CPU-bound.
        let cpu = fan_project(
            "def main(block_input, backpack):\n    return [3_000_000] * 4\n",
            "def main(block_input, backpack):\n    total = 0\n    for i in range(block_input):\n        total += i\n    return total\n",
        );
        // Interleaved with Python's own two processes on the same loop, so that the machine's drift
        // (and how much two busy vCPUs really give here) is the same for both.
        let (mut ones, mut fours, mut python) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..repeats {
            ones.push(run(&mut runtime, &cpu, 1).0);
            fours.push(run(&mut runtime, &cpu, 4).0);
            python.push(python_two_processes());
        }
        let (one, four) = (median(ones), median(fours));
        let python = median_f64(python);
        println!("2. CPU-bound fan-out, 4 items x a 3,000,000-step loop");
        println!("   limit 1:  {}", ms(one));
        println!("   limit 4:  {}", ms(four));
        println!(
            "   speed-up: {:.2}x  (target: at least 1.8x)",
            one.as_secs_f64() / four.as_secs_f64()
        );
        println!(
            "   Python's own on this machine, the 4 loops one after another against Pool(2).map: {python:.2}x\n"
        );
    }

    if want("3") {
        // 3. I/O-bound.
        let io = fan_project(
            "def main(block_input, backpack):\n    return list(range(1000))\n",
            "import time\ndef main(block_input, backpack):\n    time.sleep(0.1)\n    return block_input\n",
        );
        let io_time = median(
            (0..repeats)
                .map(|_| run(&mut runtime, &io, 100).0)
                .collect(),
        );
        println!("3. I/O-bound fan-out, 1,000 x time.sleep(0.1) at limit 100");
        println!(
            "   braid: {}  (ideal 1000 ms; target: at most 1300 ms)\n",
            ms(io_time)
        );
    }

    if want("5") {
        // 5. Item keys and labels: the same trivial run, its fan-out naming each item by a key and a
        // label expression, against the plain one, alternating, both recorded.
        let mut named = trivial.clone();
        "f\"k{item}\"".clone_into(&mut named.transitions[0].item_key);
        "f\"item {item} of {len(return_data)}\"".clone_into(&mut named.transitions[0].item_label);
        let dir = tempfile::tempdir().expect("temp dir");
        let db = dir.path().join("named.history.sqlite");
        let (mut plain_times, mut named_times) = (Vec::new(), Vec::new());
        let settle = || std::thread::sleep(Duration::from_millis(300));
        for _ in 0..repeats {
            settle();
            plain_times.push(run_recorded(&mut runtime, &trivial, 1000, Some(&db)).0);
            settle();
            let (time, records) = run_recorded(&mut runtime, &named, 1000, Some(&db));
            assert_eq!(records, n + 2);
            named_times.push(time);
        }
        let ratios: Vec<f64> = named_times
            .iter()
            .zip(&plain_times)
            .map(|(named, plain)| named.as_secs_f64() / plain.as_secs_f64())
            .collect();
        println!(
            "5. The {n}-item run with an item key and label expression, recorded (median of {repeats})"
        );
        println!("   without names: {}", ms(median(plain_times)));
        println!(
            "   with names:    {}  ratio {:.2}x (median of the repeats' own ratios; target: at most 1.3x)\n",
            ms(median(named_times)),
            median_f64(ratios)
        );
    }

    if want("6") {
        // 6. Redrive: a recorded 100,000-item run in which 10 items failed, then redriven with the
        // block fixed. Timed from reading the run out of the history to the redrive's end, written.
        let failing = fan_project(
            &format!("def main(block_input, backpack):\n    return list(range({n}))\n"),
            "def main(block_input, backpack):\n    if block_input % 10000 == 0:\n        raise ValueError(block_input)\n    return block_input * 2\n",
        );
        let dir = tempfile::tempdir().expect("temp dir");
        let mut times = Vec::new();
        let mut ran = 0;
        for repeat in 0..repeats {
            let db = dir.path().join(format!("{repeat}.history.sqlite"));
            let first = RunId::new_random();
            let request = RunRequest {
                history: Some(db.clone()),
                ..RunRequest::new(first.clone(), failing.clone())
            };
            follow(&mut runtime, request, RunStatus::Failed, |_| {});
            std::thread::sleep(Duration::from_millis(300));
            let started = Instant::now();
            let redrive = {
                let history = History::open(&db).expect("history");
                braid::runtime::redrive::Redrive::load(&history, &first, None).expect("redrive")
            };
            let loaded = started.elapsed();
            // The same project with Work fixed: a redrive follows the transitions the run recorded
            // by their ids, which a freshly built project would not share.
            let mut fixed = failing.clone();
            if let (Some(work), Some(fix)) = (fixed.blocks[1].code_mut(), trivial.blocks[1].code())
            {
                work.code.clone_from(&fix.code);
            }
            let request = RunRequest {
                history: Some(db.clone()),
                redrive: Some(std::sync::Arc::new(redrive)),
                ..RunRequest::new(RunId::new_random(), fixed)
            };
            ran = 0;
            follow(&mut runtime, request, RunStatus::Succeeded, |batch| {
                ran += batch
                    .iter()
                    .filter(|r| &*r.block_name == "Work" && r.carried_from.is_none())
                    .count();
            });
            assert_eq!(ran, 10, "exactly the failed items run");
            times.push((started.elapsed(), loaded));
        }
        times.sort();
        let (time, loaded) = times[times.len() / 2];
        println!(
            "6. Redrive of a finished {n}-item run with 10 failed items (median of {repeats})"
        );
        println!(
            "   {}  (reading the run {}; {ran} invocations of the failed block ran; target: under 1 s)\n",
            ms(time),
            ms(loaded)
        );
    }

    if want("4") {
        // 4. The seed's map-reduce from a cold start.
        let seed = fan_project(
            "def main(block_input, backpack):\n    return list(range(1, 101))\n",
            "def main(block_input, backpack):\n    return block_input * 2\n",
        );
        let cold = median(
            (0..repeats)
                .map(|_| {
                    let started = Instant::now();
                    let mut runtime = RuntimeHandle::start(config()).expect("runtime");
                    run(&mut runtime, &seed, 1000);
                    started.elapsed()
                })
                .collect(),
        );
        println!("4. The seed's 100-item map-reduce, cold (runtime and workers started)");
        println!("   braid: {}  (target: under 500 ms)", ms(cold));
    }
}
