//! Runs on a real Dask cluster: the scheduler at `BRAID_TEST_DASK` (`scripts/test` starts one, with two
//! single-threaded workers and their nannies, on 127.0.0.1). The same projects give the same results as
//! on this machine; hostile blocks fail only their own items; a Dask worker killed mid-run costs only time.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use assert_cmd::Command;
use braid::model::TransitionKind::{FanIn, Then};
use braid::run::{Executor, InvocationStatus, RunId, RunStatus};
use braid::runtime::dask::local::{LocalCluster, LocalClusterOptions};
use braid::runtime::{RunRequest, RuntimeEvent, RuntimeHandle, RuntimeRequest};
use serde_json::{Value, json};

use super::support::{Builder, Outcome, follow, run_request_on, runtime_config};

/// The test cluster's scheduler. Unset, the test fails saying how to get one.
fn cluster() -> String {
    std::env::var("BRAID_TEST_DASK").unwrap_or_else(|_| {
        panic!(
            "BRAID_TEST_DASK is not set: these tests need a Dask cluster. `scripts/test` starts one \
             (dask[distributed] from scripts/requirements-test.txt) and sets it; or start \
             `dask scheduler` and `dask worker` yourself and set BRAID_TEST_DASK=tcp://HOST:PORT"
        )
    })
}

fn on_cluster(address: &str) -> Executor {
    Executor::Dask {
        scheduler: address.to_owned(),
    }
}

/// Runs `project` on the test cluster, on a runtime of its own.
fn run_on_cluster(project: braid::model::Project, concurrency: Option<u32>) -> Outcome {
    let mut runtime = RuntimeHandle::start(runtime_config()).expect("runtime starts");
    let mut request = RunRequest::new(RunId::new_random(), project);
    request.concurrency = concurrency;
    request.executor = on_cluster(&cluster());
    run_request_on(&mut runtime, request, |_, _, _| {})
}

fn braid_run_json(project: &std::path::Path, cluster: Option<&str>) -> (Value, i32) {
    let mut command = Command::cargo_bin("braid").unwrap();
    command.args(["run", "--json", "--no-history"]).arg(project);
    if let Some(address) = cluster {
        command.args(["--cluster", address]);
    }
    let output = command.timeout(Duration::from_mins(2)).output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let value: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!(
            "{}: braid run printed no JSON ({e}): {stdout}\nstderr: {}",
            project.display(),
            String::from_utf8_lossy(&output.stderr)
        )
    });
    (value, output.status.code().unwrap_or(-1))
}

/// What a run's JSON says, less what differs from run to run (its id, how long it took).
fn comparable(mut value: Value) -> Value {
    if let Some(object) = value.as_object_mut() {
        object.remove("run_id");
        object.remove("duration_ms");
    }
    value
}

#[test]
fn every_sample_project_and_refinery_export_gives_the_same_results_on_the_cluster() {
    let address = cluster();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut projects: Vec<std::path::PathBuf> =
        ["sample-projects", "tests/fixtures/refinery-examples"]
            .iter()
            .flat_map(|dir| std::fs::read_dir(root.join(dir)).unwrap())
            .map(|entry| entry.unwrap().path())
            .filter(|path| path.extension().is_some_and(|e| e == "json"))
            .collect();
    projects.sort();
    assert!(projects.len() >= 8, "{projects:?}");
    let mut compared = 0;
    for project in &projects {
        let (here, here_code) = braid_run_json(project, None);
        if here["status"] != "succeeded" && here["invocations"] == 0 {
            // Does not run here either (a Refinery export of blocks Braid does not run): nothing to
            // compare.
            continue;
        }
        let (there, there_code) = braid_run_json(project, Some(&address));
        assert_eq!(
            comparable(there),
            comparable(here),
            "{}: the cluster's run differs from this machine's",
            project.display()
        );
        assert_eq!(there_code, here_code, "{}", project.display());
        compared += 1;
    }
    assert!(compared >= 8, "only {compared} projects ran");
}

#[test]
fn every_invocation_is_recorded_with_the_dask_worker_that_ran_it() {
    let project = Builder::fan_out(
        20,
        "Work",
        "def main(block_input, backpack):\n    print('item', block_input)\n    return block_input * 3\n",
    )
    .block("Sum", "def main(block_input, backpack):\n    return sum(block_input)\n")
    .link("Work", "Sum", FanIn)
    .build();
    let out = run_on_cluster(project, Some(8));
    assert_eq!(out.refused, None);
    assert_eq!(
        out.summary.status,
        RunStatus::Succeeded,
        "{:?}",
        out.summary.failures
    );
    assert_eq!(out.results_of("Sum"), [&json!(570)]);
    assert_eq!(out.records.len(), 22);
    for record in &out.records {
        let worker = record.worker.as_deref().unwrap_or_default();
        assert!(
            worker.starts_with("tcp://127.0.0.1:"),
            "{} ran on {worker:?}",
            record.block_name
        );
        assert!(record.started_at_ms.is_some() && record.ended_at_ms.is_some());
    }
    let work = out.records_of("Work");
    let printed: Vec<&str> = work.iter().map(|r| r.stdout.as_str()).collect();
    assert!(printed.contains(&"item 7\n"), "{printed:?}");
}

/// Item 4 does the damage; the others succeed (those that shared its Python ran again).
fn assert_only_item_4_failed(out: &Outcome, status: InvocationStatus, message: &str) {
    assert_eq!(out.refused, None);
    let work = out.records_of("Work");
    assert_eq!(work.len(), 6, "{work:?}");
    for record in &work {
        if record.item_path[..] == [4] {
            assert_eq!(record.status, status, "{record:?}");
            let error = record.error.as_ref().unwrap();
            assert!(
                error.summary().contains(message),
                "{message:?} not in {:?}",
                error.summary()
            );
        } else {
            assert_eq!(record.status, InvocationStatus::Succeeded, "{record:?}");
            assert_eq!(record.output, Some(json!(record.item_path[0])));
        }
    }
}

/// Six items in two batches (the cluster's two threads); item 4 does its damage at 0.1 s, while the
/// others in its batch still run (until 0.5 s).
fn hostile(code_for_item_4: &str) -> braid::model::Project {
    Builder::fan_out(
        6,
        "Work",
        &format!(
            "import os, sys, time, ctypes\ndef main(block_input, backpack):\n    if block_input == 4:\n        time.sleep(0.1)\n        {code_for_item_4}\n    time.sleep(0.5)\n    return block_input\n"
        ),
    )
    .timeout("Work", 2)
    .build()
}

#[test]
fn sys_exit_on_the_cluster_fails_only_its_own_item() {
    let out = run_on_cluster(hostile("sys.exit(3)"), Some(6));
    assert_only_item_4_failed(&out, InvocationStatus::Exception, "SystemExit");
}

#[test]
fn os_exit_on_the_cluster_fails_only_its_own_item_and_its_neighbours_run_again() {
    let out = run_on_cluster(hostile("os._exit(5)"), Some(6));
    assert_only_item_4_failed(&out, InvocationStatus::Exception, "os._exit(5)");
    let again = out
        .records_of("Work")
        .iter()
        .filter(|r| r.attempt == 2)
        .count();
    assert!(again >= 1, "the items that shared its Python ran again");
}

#[test]
fn a_segfault_on_the_cluster_fails_only_its_own_item() {
    let out = run_on_cluster(hostile("ctypes.string_at(0)"), Some(6));
    assert_only_item_4_failed(&out, InvocationStatus::Exception, "SIGSEGV");
}

#[test]
fn a_spinning_block_on_the_cluster_times_out_and_frees_its_dask_worker() {
    let project = Builder::fan_out(
        2,
        "Work",
        "def main(block_input, backpack):\n    while True:\n        pass\n",
    )
    .timeout("Work", 2)
    .build();
    let out = run_on_cluster(project, Some(2));
    let work = out.records_of("Work");
    assert_eq!(work.len(), 2);
    for record in &work {
        assert_eq!(record.status, InvocationStatus::TimedOut, "{record:?}");
        let ran = record.duration_ms().unwrap();
        assert!(ran < 3000.0, "ended {ran} ms after it started");
    }
    // The workers' threads are free again: a quick run does not wait behind the spinning ones.
    let quick = Builder::fan_out(
        4,
        "Work",
        "def main(block_input, backpack):\n    return 1\n",
    )
    .build();
    let started = Instant::now();
    let out = run_on_cluster(quick, Some(4));
    assert_eq!(out.summary.status, RunStatus::Succeeded);
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "took {:?}",
        started.elapsed()
    );
}

#[test]
fn a_variables_value_on_the_cluster_reaches_only_its_own_block() {
    let mut project = Builder::new()
        .block(
            "Own",
            "import os\ndef main(block_input, backpack):\n    return os.environ.get('BRAID_SECRET')\n",
        )
        .block(
            "Other",
            "import os\ndef main(block_input, backpack):\n    return [block_input, os.environ.get('BRAID_SECRET')]\n",
        )
        .link("Own", "Other", Then)
        .build();
    project.blocks[0]
        .code_mut()
        .unwrap()
        .env_vars
        .push("BRAID_SECRET".to_owned());
    let mut runtime = RuntimeHandle::start(runtime_config()).expect("runtime starts");
    let mut request = RunRequest::new(RunId::new_random(), project);
    request.env = BTreeMap::from([("BRAID_SECRET".to_owned(), "s3cret".to_owned())]);
    request.executor = on_cluster(&cluster());
    let out = run_request_on(&mut runtime, request, |_, _, _| {});
    assert_eq!(out.results_of("Other"), [&json!(["s3cret", null])]);
}

#[test]
fn a_library_the_cluster_lacks_refuses_the_run_saying_what_to_install_where() {
    let mut project = Builder::new()
        .block("Use", "def main(block_input, backpack):\n    return 1\n")
        .build();
    project.blocks[0]
        .code_mut()
        .unwrap()
        .libraries
        .push("braid-no-such-package==1.0".to_owned());
    let out = run_on_cluster(project, None);
    let message = out.refused.expect("refused");
    assert!(
        message.contains("does not have the project's libraries braid-no-such-package==1.0")
            && message.contains("-m pip install 'braid-no-such-package==1.0'"),
        "{message}"
    );
}

#[test]
fn a_library_the_cluster_has_reaches_its_blocks() {
    // toolz comes with dask: every Dask worker has it.
    let mut project = Builder::new()
        .block(
            "Use",
            "import toolz\ndef main(block_input, backpack):\n    return toolz.first([7, 8])\n",
        )
        .build();
    project.blocks[0]
        .code_mut()
        .unwrap()
        .libraries
        .push("toolz".to_owned());
    let out = run_on_cluster(project, None);
    assert_eq!(out.refused, None);
    assert_eq!(out.results_of("Use"), [&json!(7)]);
}

#[test]
fn a_scheduler_that_cannot_be_reached_refuses_the_run_naming_it() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    // Nothing listens there now.
    let address = format!("tcp://127.0.0.1:{port}");
    let mut runtime = RuntimeHandle::start(runtime_config()).expect("runtime starts");
    let mut request = RunRequest::new(
        RunId::new_random(),
        Builder::new()
            .block("A", "def main(block_input, backpack):\n    return 1\n")
            .build(),
    );
    request.executor = on_cluster(&address);
    let out = run_request_on(&mut runtime, request, |_, _, _| {});
    let message = out.refused.expect("refused");
    assert!(
        message.contains(&format!("can't reach the Dask scheduler at {address}")),
        "{message}"
    );
}

#[test]
fn cancelling_a_run_on_the_cluster_stops_its_invocations_there() {
    let project = Builder::fan_out(
        4,
        "Work",
        "import time\ndef main(block_input, backpack):\n    for _ in range(600):\n        time.sleep(0.05)\n    return 1\n",
    )
    .timeout("Work", 300)
    .build();
    let mut runtime = RuntimeHandle::start(runtime_config()).expect("runtime starts");
    let mut request = RunRequest::new(RunId::new_random(), project);
    request.executor = on_cluster(&cluster());
    let run_id = request.run_id.clone();
    runtime.send(RuntimeRequest::Run(Box::new(request)));
    let mut asked = None;
    let out = follow(&mut runtime, &run_id, |runtime, run_id, event| {
        // Once the fan-out's items are running (the generator has been recorded), stop the run.
        if asked.is_none()
            && let Some(RuntimeEvent::Invocations { records, .. }) = event
            && records.iter().any(|r| &*r.block_name == "Gen")
        {
            std::thread::sleep(Duration::from_millis(500));
            runtime.send(RuntimeRequest::Cancel(run_id.clone()));
            asked = Some(Instant::now());
        }
    });
    assert_eq!(out.summary.status, RunStatus::Cancelled);
    // The cluster's threads were freed: the 30-second invocations were stopped, not left running.
    let started = Instant::now();
    let quick = Builder::fan_out(
        4,
        "Work",
        "def main(block_input, backpack):\n    return 1\n",
    )
    .build();
    let out = run_on_cluster(quick, Some(4));
    assert_eq!(out.summary.status, RunStatus::Succeeded);
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "the next run waited {:?} for the cancelled invocations",
        started.elapsed()
    );
}

#[test]
fn a_dask_worker_killed_mid_run_costs_only_time() {
    // The Dask workers' process ids: each block runs in a child of a Dask worker.
    let pids = Builder::fan_out(
        8,
        "Work",
        "import os, time\ndef main(block_input, backpack):\n    time.sleep(0.3)\n    return os.getppid()\n",
    )
    .build();
    let out = run_on_cluster(pids, Some(8));
    let mut dask_workers: Vec<i32> = out
        .records_of("Work")
        .iter()
        .map(|r| r.output.as_ref().unwrap().as_i64().unwrap() as i32)
        .collect();
    dask_workers.sort_unstable();
    dask_workers.dedup();
    let victim = dask_workers[0];

    let project = Builder::fan_out(
        40,
        "Work",
        "import time\ndef main(block_input, backpack):\n    time.sleep(0.25)\n    return block_input * 2\n",
    )
    .block("Sum", "def main(block_input, backpack):\n    return sum(block_input)\n")
    .link("Work", "Sum", FanIn)
    .build();
    let mut runtime = RuntimeHandle::start(runtime_config()).expect("runtime starts");
    let mut request = RunRequest::new(RunId::new_random(), project);
    request.concurrency = Some(8);
    request.executor = on_cluster(&cluster());
    let run_id = request.run_id.clone();
    runtime.send(RuntimeRequest::Run(Box::new(request)));
    let mut done = 0;
    let mut killed = false;
    let out = follow(&mut runtime, &run_id, |_, _, event| {
        if let Some(RuntimeEvent::Invocations { records, .. }) = event {
            done += records.len();
            if !killed && done >= 9 {
                // Mid-run: the Gen and at least a batch of Work have finished.
                let _ = std::process::Command::new("kill")
                    .args(["-9", &victim.to_string()])
                    .status();
                killed = true;
            }
        }
    });
    assert!(killed, "the run ended before a Dask worker could be killed");
    assert_eq!(
        out.summary.status,
        RunStatus::Succeeded,
        "{:?}",
        out.summary.failures
    );
    assert_eq!(
        out.results_of("Sum"),
        [&json!((0..40).map(|i| i * 2).sum::<i64>())]
    );
    assert_eq!(out.records_of("Work").len(), 40);
    assert!(
        super::workers::ended(victim.cast_unsigned()),
        "the Dask worker was killed"
    );
}

/// A cluster of its own (a scheduler and one worker of two threads, without a nanny), for a test that
/// stops its scheduler or counts what runs on it; stopped by PID when dropped.
fn own_cluster(worker_env: &[(&str, &std::path::Path)]) -> LocalCluster {
    LocalCluster::start(&LocalClusterOptions {
        workers: 1,
        threads: 2,
        nanny: false,
        worker_env: worker_env
            .iter()
            .map(|(k, v)| ((*k).into(), v.as_os_str().to_owned()))
            .collect(),
        ..LocalClusterOptions::default()
    })
    .unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn a_scheduler_lost_mid_run_fails_the_run_naming_it_and_the_history_keeps_what_finished() {
    let cluster = own_cluster(&[]);
    let dir = tempfile::tempdir().unwrap();
    let database = dir.path().join("p.history.sqlite");
    let project = Builder::fan_out(
        40,
        "Work",
        "import time\ndef main(block_input, backpack):\n    time.sleep(0.2)\n    return block_input\n",
    )
    .build();
    let mut runtime = RuntimeHandle::start(runtime_config()).expect("runtime starts");
    let mut request = RunRequest::new(RunId::new_random(), project);
    request.concurrency = Some(2);
    request.history = Some(database.clone());
    request.executor = on_cluster(cluster.address());
    let run_id = request.run_id.clone();
    runtime.send(RuntimeRequest::Run(Box::new(request)));
    let mut seen = 0;
    let mut stopped = None;
    let out = follow(&mut runtime, &run_id, |_, _, event| {
        if let Some(RuntimeEvent::Invocations { records, .. }) = event {
            seen += records.len();
            if stopped.is_none() && seen >= 5 {
                let scheduler =
                    rustix::process::Pid::from_raw(cluster.scheduler_pid().cast_signed());
                let _ = rustix::process::kill_process(
                    scheduler.expect("a process id"),
                    rustix::process::Signal::KILL,
                );
                stopped = Some(Instant::now());
            }
        }
    });
    let stopped = stopped.expect("the run got under way");
    assert_eq!(out.summary.status, RunStatus::Failed);
    assert!(
        stopped.elapsed() < Duration::from_secs(30),
        "the run ended {:?} after its scheduler stopped",
        stopped.elapsed()
    );
    let failure = out.summary.failures.first().expect("a failure");
    assert!(
        failure
            .error
            .contains(&format!("the Dask scheduler at {}", cluster.address())),
        "{failure:?}"
    );
    let history = braid::runtime::history::History::open(&database).unwrap();
    let rows = history
        .invocation_rows(&run_id, &braid::run::InvocationFilter::default())
        .unwrap();
    let succeeded = rows
        .iter()
        .filter(|r| r.status == InvocationStatus::Succeeded)
        .count();
    assert!(
        succeeded >= 5,
        "the history kept {succeeded} finished invocations"
    );
    assert_eq!(rows.len(), out.records.len());
}

/// The editor runs a project on the test cluster, through the run dialog as a user would: the status
/// line and the run's line in Block Executions say where it ran, the table names each invocation's
/// Dask worker, and the address is remembered beside the project (`.braid/`), not in its file.
#[test]
fn the_editor_runs_a_project_on_the_cluster_and_shows_each_invocations_worker() {
    use egui::{Key, Modifiers};
    use egui_kittest::kittest::Queryable as _;

    use super::gui::{click, harness_sized, settle, wait_for_run, write_map_reduce};

    let address = cluster();
    let dir = tempfile::tempdir().unwrap();
    let path = write_map_reduce(dir.path());
    let project_text = std::fs::read_to_string(&path).unwrap();
    // Tall enough that Block Executions (44 % of the window) lists all 12 rows without scrolling: the
    // table's rows below its fold are not drawn, so not counted.
    let mut harness = harness_sized(Some(path.clone()), [1280.0, 1200.0]);
    click(&mut harness, "Run…");
    harness.get_by_label("Dask scheduler address").focus();
    harness.step();
    harness
        .get_by_label("Dask scheduler address")
        .type_text(&address);
    settle(&mut harness);
    harness.key_press_modifiers(Modifiers::COMMAND, Key::Enter);
    let summary = wait_for_run(&mut harness);
    assert_eq!(summary.status, RunStatus::Succeeded, "{summary:?}");
    // Split, 10 × Double, Collect: the sum of 2, 4, …, 20.
    assert_eq!(summary.invocations, 12);
    assert_eq!(summary.results[0].output, json!(110));
    harness.get_by_label(&format!("on the Dask cluster at {address}"));

    click(&mut harness, "Block Executions");
    harness.get_by_label(&format!("· ran on the Dask cluster at {address}"));
    harness.get_by_label("worker");
    let shown = harness
        .state()
        .app
        .executions
        .shown()
        .expect("the run shown");
    assert_eq!(shown.rows.len(), 12);
    let workers: Vec<&str> = shown
        .rows
        .iter()
        .map(|r| r.worker.as_deref().unwrap_or_default())
        .collect();
    assert!(
        workers.iter().all(|w| w.starts_with("tcp://127.0.0.1:")),
        "{workers:?}"
    );
    // The table's worker column: the rows name their workers, without the scheme.
    let mut distinct = workers.clone();
    distinct.sort_unstable();
    distinct.dedup();
    let in_table: usize = distinct
        .iter()
        .map(|w| harness.query_all_by_label(&w["tcp://".len()..]).count())
        .sum();
    assert_eq!(in_table, 12, "rows that name their worker, of {distinct:?}");

    assert_eq!(std::fs::read_to_string(&path).unwrap(), project_text);
    let settings = braid::model::local_settings::path_for_project(&path);
    let remembered = std::fs::read_to_string(&settings).unwrap();
    assert!(remembered.contains(&address), "{remembered}");
}

/// A library a Dask worker's user installed with `pip install --user` (in the user site, which a fresh
/// Debian machine's `pip` uses) reaches the blocks: the children that run them start without `site`,
/// so the bridge hands them the worker's user site along with its site-packages.
#[test]
fn a_library_in_the_dask_workers_user_site_reaches_its_blocks() {
    let python = braid::runtime::environment::python_executable();
    let user_base = tempfile::tempdir().unwrap();
    let version = std::process::Command::new(&python)
        .args([
            "-c",
            "import sys; print(f'{sys.version_info[0]}.{sys.version_info[1]}')",
        ])
        .output()
        .unwrap();
    let user_site = user_base.path().join(format!(
        "lib/python{}/site-packages",
        String::from_utf8_lossy(&version.stdout).trim()
    ));
    // What pip leaves for a package: the module and its distribution's metadata.
    let dist_info = user_site.join("braid_user_probe-1.0.dist-info");
    std::fs::create_dir_all(&dist_info).unwrap();
    std::fs::write(
        dist_info.join("METADATA"),
        "Metadata-Version: 2.1\nName: braid-user-probe\nVersion: 1.0\n",
    )
    .unwrap();
    std::fs::write(user_site.join("braid_user_probe.py"), "ANSWER = 42\n").unwrap();
    let cluster = own_cluster(&[("PYTHONUSERBASE", user_base.path())]);
    let mut project = Builder::new()
        .block(
            "Use",
            "import braid_user_probe\ndef main(block_input, backpack):\n    return braid_user_probe.ANSWER\n",
        )
        .build();
    project.blocks[0]
        .code_mut()
        .unwrap()
        .libraries
        .push("braid-user-probe==1.0".to_owned());
    let mut runtime = RuntimeHandle::start(runtime_config()).expect("runtime starts");
    let mut request = RunRequest::new(RunId::new_random(), project);
    request.executor = on_cluster(cluster.address());
    let out = run_request_on(&mut runtime, request, |_, _, _| {});
    assert_eq!(out.refused, None);
    assert_eq!(
        out.summary.status,
        RunStatus::Succeeded,
        "{:?}",
        out.summary.failures
    );
    assert_eq!(out.results_of("Use"), [&json!(42)]);
}

/// `braid cluster` starts a loopback cluster that a project runs on with this machine's results, says
/// where it is in lines a terminal shows as lines, and stops it on Ctrl+C: its scheduler is gone.
#[test]
fn braid_cluster_starts_a_cluster_to_run_on_and_ctrl_c_stops_it() {
    use std::io::BufRead as _;
    let mut started = std::process::Command::new(env!("CARGO_BIN_EXE_braid"))
        .args(["cluster", "--workers", "1"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(started.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    let address = first
        .strip_prefix("A Dask cluster on this machine: its scheduler is at ")
        .and_then(|rest| rest.split(',').next())
        .unwrap_or_else(|| panic!("{first}"))
        .to_owned();
    assert!(address.starts_with("tcp://127.0.0.1:"), "{first}");
    // Said once its worker has joined: a run started at once finds it.
    let script = "import sys\nfrom distributed import Client\nwith Client(sys.argv[1], timeout=30) as client:\n    print(len(client.scheduler_info()['workers']))\n";
    let output = std::process::Command::new(braid::runtime::environment::python_executable())
        .args(["-c", script, &address])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "1");
    assert_eq!(
        lines.next().unwrap().unwrap(),
        "Run a project on it:",
        "each line its own"
    );
    let project = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("sample-projects/map-reduce.braid.json");
    let (here, _) = braid_run_json(&project, None);
    let (there, code) = braid_run_json(&project, Some(&address));
    assert_eq!(comparable(there), comparable(here));
    assert_eq!(code, 0);

    let pid = rustix::process::Pid::from_raw(started.id().cast_signed()).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::INT).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = started.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "braid cluster did not stop");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success(), "{status}");
    let port: u16 = address.rsplit(':').next().unwrap().parse().unwrap();
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "the scheduler still listens at {address}"
    );
}

/// Cities fanned out to `Work` by id and labelled by name and index, fanned in to `Collect`; `Work`
/// raises for Oslo.
fn named_cities() -> braid::model::Project {
    let work = "def main(block_input, backpack):\n    if block_input['id'] == 'osl':\n        raise KeyError('city')\n    return block_input['city']\n";
    Builder::new()
        .block(
            "Gen",
            "def main(block_input, backpack):\n    return [{'id': 'par', 'city': 'Paris'}, {'id': 'osl', 'city': 'Oslo'}, {'id': 'rom', 'city': 'Rome'}, {'id': 'lim', 'city': 'Lima'}]\n",
        )
        .block("Work", work)
        .block(
            "Collect",
            "def main(block_input, backpack):\n    return block_input\n",
        )
        .link("Gen", "Work", braid::model::TransitionKind::FanOut)
        .link("Work", "Collect", FanIn)
        .item_names("Gen", "Work", "item['id']", "f\"{item['city']} ({index})\"")
        .build()
}

/// (block, item keys, label, status, carried from) of each record, in id order.
fn named_items(out: &Outcome) -> Vec<(String, String, String, InvocationStatus, Option<u64>)> {
    out.records
        .iter()
        .map(|r| {
            (
                r.block_name.to_string(),
                r.item_key_path().join("/"),
                r.item_label().unwrap_or_default().to_owned(),
                r.status,
                r.carried_from,
            )
        })
        .collect()
}

/// Item keys and labels are evaluated where the fan-out's source ran, on a Dask worker: the records name
/// the same items as a local run's; and a redrive on the cluster runs only the item that failed (and the
/// fan-in after it), carrying the others over by key.
#[test]
fn a_keyed_and_labelled_fan_out_names_its_items_on_the_cluster_as_here_and_a_redrive_there_runs_only_the_failed_item()
 {
    let dir = tempfile::tempdir().unwrap();
    let database = dir.path().join("p.history.sqlite");
    let mut runtime = RuntimeHandle::start(runtime_config()).expect("runtime starts");
    let project = named_cities();
    let here = run_request_on(
        &mut runtime,
        RunRequest::new(RunId::new_random(), project.clone()),
        |_, _, _| {},
    );
    let mut request = RunRequest::new(RunId::new_random(), project.clone());
    request.executor = on_cluster(&cluster());
    request.history = Some(database.clone());
    let there = run_request_on(&mut runtime, request, |_, _, _| {});
    assert_eq!(there.refused, None);
    let s = |text: &str| text.to_owned();
    let failed = [
        (s("Gen"), s(""), s(""), InvocationStatus::Succeeded, None),
        (
            s("Work"),
            s("par"),
            s("Paris (0)"),
            InvocationStatus::Succeeded,
            None,
        ),
        (
            s("Work"),
            s("osl"),
            s("Oslo (1)"),
            InvocationStatus::Exception,
            None,
        ),
        (
            s("Work"),
            s("rom"),
            s("Rome (2)"),
            InvocationStatus::Succeeded,
            None,
        ),
        (
            s("Work"),
            s("lim"),
            s("Lima (3)"),
            InvocationStatus::Succeeded,
            None,
        ),
    ];
    assert_eq!(named_items(&here), failed);
    assert_eq!(named_items(&there), failed);
    assert!(
        there
            .records
            .iter()
            .all(|r| r.worker.as_deref().is_some_and(|w| w.starts_with("tcp://"))),
        "every invocation ran on the cluster"
    );
    assert_eq!(there.summary.status, RunStatus::Failed);

    let redrive = {
        let history = braid::runtime::history::History::open(&database).unwrap();
        braid::runtime::redrive::Redrive::load(&history, &there.summary.run_id, None).unwrap()
    };
    // The same project, its block fixed.
    let mut fixed = project;
    "def main(block_input, backpack):\n    return block_input['city'] + ' again'\n"
        .clone_into(&mut fixed.blocks[1].code_mut().unwrap().code);
    let mut request = RunRequest::new(RunId::new_random(), fixed);
    request.executor = on_cluster(&cluster());
    request.history = Some(database);
    request.redrive = Some(std::sync::Arc::new(redrive));
    let again = run_request_on(&mut runtime, request, |_, _, _| {});
    assert_eq!(again.refused, None);
    assert_eq!(
        again.summary.status,
        RunStatus::Succeeded,
        "{:?}",
        again.summary.failures
    );
    let ids: Vec<u64> = there.records.iter().map(|r| r.id).collect();
    assert_eq!(
        named_items(&again),
        [
            (
                s("Gen"),
                s(""),
                s(""),
                InvocationStatus::Succeeded,
                Some(ids[0])
            ),
            (
                s("Work"),
                s("par"),
                s("Paris (0)"),
                InvocationStatus::Succeeded,
                Some(ids[1])
            ),
            (
                s("Work"),
                s("osl"),
                s("Oslo (1)"),
                InvocationStatus::Succeeded,
                None
            ),
            (
                s("Work"),
                s("rom"),
                s("Rome (2)"),
                InvocationStatus::Succeeded,
                Some(ids[3])
            ),
            (
                s("Work"),
                s("lim"),
                s("Lima (3)"),
                InvocationStatus::Succeeded,
                Some(ids[4])
            ),
            (
                s("Collect"),
                s(""),
                s(""),
                InvocationStatus::Succeeded,
                None
            ),
        ]
    );
    // What ran, ran on the cluster.
    for record in again.records.iter().filter(|r| r.carried_from.is_none()) {
        assert!(
            record
                .worker
                .as_deref()
                .is_some_and(|w| w.starts_with("tcp://")),
            "{record:?}"
        );
    }
    assert_eq!(
        again.results_of("Collect"),
        [&json!(["Paris", "Oslo again", "Rome", "Lima"])]
    );
}

/// What the scheduler at `address` has its workers doing: each worker's tasks in processing, and the
/// tasks each worker's threads are still executing (a task the scheduler forgot still holds its thread
/// until its function returns).
fn cluster_busy(address: &str) -> Value {
    let script = "import json, sys\nfrom distributed import Client\nwith Client(sys.argv[1], timeout=30) as client:\n    processing = {w: [str(k) for k in keys] for w, keys in client.processing().items() if keys}\n    executing = {w: n for w, n in client.run(lambda dask_worker: len(dask_worker.state.executing)).items() if n}\n    print(json.dumps({'processing': processing, 'executing': executing}))\n";
    let output = std::process::Command::new(braid::runtime::environment::python_executable())
        .args(["-c", script, address])
        .output()
        .unwrap();
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "asking the scheduler at {address} ({e}): {}",
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

/// Ctrl+C (to the whole process group, as a terminal sends it) of `braid run --cluster` stops the run as
/// a local one stops: cancelled (exit 1, the summary and the history say so), soon, and nothing of it is
/// left running on the cluster. On a cluster of its own, so that no other test's work is counted.
#[test]
fn ctrl_c_of_a_run_on_a_cluster_cancels_it_there_and_records_it_cancelled() {
    let cluster = own_cluster(&[]);
    let dir = tempfile::tempdir().unwrap();
    let started = dir.path().join("started");
    let flag = started.to_str().unwrap();
    let path = super::cli::write_sleepy_project(
        dir.path(),
        &format!(
            "import time\ndef main(block_input, backpack):\n    with open({flag:?}, 'a') as f:\n        f.write(f'{{block_input}}\\n')\n    time.sleep(30)\n    return block_input\n"
        ),
    );
    let child = super::cli::start_run_until(
        &[path.to_str().unwrap(), "--cluster", cluster.address()],
        &started,
    );
    let busy = cluster_busy(cluster.address());
    assert_ne!(busy["processing"], json!({}), "{busy}");

    super::cli::ctrl_c(&child);
    let signalled = Instant::now();
    let out = child.wait_with_output().unwrap();
    let took = signalled.elapsed();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(
        took < Duration::from_secs(10),
        "braid ended {took:?} after Ctrl+C"
    );
    assert!(stdout.contains(" cancelled in "), "{stdout}");
    assert!(stderr.contains("stopping the run"), "{stderr}");

    let runs = super::cli::history_runs(&path);
    assert_eq!(runs[0]["status"], "cancelled", "{runs}");
    assert_eq!(runs[0]["invocations"], 21, "{runs}");
    assert_eq!(runs[0]["counts"]["cancelled"], 20, "{runs}");

    // Nothing of the run is left on the cluster: no task in processing, no worker thread running one.
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut busy = cluster_busy(cluster.address());
    while busy != json!({"processing": {}, "executing": {}}) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
        busy = cluster_busy(cluster.address());
    }
    assert_eq!(busy, json!({"processing": {}, "executing": {}}));
}
