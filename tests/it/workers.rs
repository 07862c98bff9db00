//! Python workers: per-project libraries, per-block environment variables, and the guarantee that an
//! invocation sharing a worker with a crash runs again instead of failing.

use std::collections::BTreeMap;

use braid::model::TransitionKind::FanOut;
use braid::run::{InvocationStatus, RunId, RunStatus};
use braid::runtime::{RunRequest, RuntimeEvent, RuntimeHandle, RuntimeRequest};
use serde_json::{Value, json};

use crate::support::{Builder, items, run_with, runtime_config};

/// Runs and also collects the preparation log.
fn run_collecting(
    request: RunRequest,
) -> (Option<braid::run::RunSummary>, Option<String>, Vec<String>) {
    let mut runtime = RuntimeHandle::start(runtime_config()).unwrap();
    let run_id = request.run_id.clone();
    runtime.send(RuntimeRequest::Run(Box::new(request)));
    let mut log = Vec::new();
    loop {
        let event = runtime
            .recv_timeout(std::time::Duration::from_mins(5))
            .expect("the run ends");
        if event.run_id() != &run_id {
            continue;
        }
        match event {
            RuntimeEvent::Log { line, .. } => log.push(line),
            RuntimeEvent::RunFinished(summary) => return (Some(summary), None, log),
            RuntimeEvent::RunRefused { message, .. } => return (None, Some(message), log),
            _ => {}
        }
    }
}

/// Runs `project`, which must succeed, and returns its first result's output.
fn first_result(project: braid::model::Project) -> Value {
    let (summary, refused, _log) = run_collecting(RunRequest::new(RunId::new_random(), project));
    assert_eq!(refused, None);
    let summary = summary.unwrap();
    assert_eq!(
        summary.status,
        RunStatus::Succeeded,
        "{:?}",
        summary.failures
    );
    summary.results[0].output.clone()
}

/// One block, `code`, whose library list pins six 1.16.0.
fn uses_six(code: &str) -> braid::model::Project {
    let mut project = Builder::new().block("Uses six", code).build();
    project.blocks[0].code_mut().unwrap().libraries = vec!["six==1.16.0".to_owned()];
    project
}

#[test]
fn a_block_imports_a_library_from_the_project_environment() {
    // six 1.16.0: the machine's own interpreter may have another six; the project's pin must win.
    let output = &first_result(uses_six(
        "import six, subprocess, sys\ndef main(block_input, backpack):\n    other = subprocess.run([sys.executable, '-c', 'import six; print(six.__version__)'], capture_output=True, text=True)\n    return [six.__version__, six.__file__, other.stdout.strip() or other.stderr, sys.path]\n",
    ));
    assert_eq!(output[0], "1.16.0");
    // Python started from the block (`sys.executable`) is the environment's, with the same library.
    assert_eq!(output[2], "1.16.0");
    let cache = braid::runtime::environment::default_cache_dir();
    assert!(
        output[1]
            .as_str()
            .unwrap()
            .starts_with(cache.to_str().unwrap()),
        "{output} not from {}",
        cache.display()
    );
    // Where `site` puts a site-packages: after the standard library (a backport must not shadow what
    // it backports), before the worker's folder of block modules (which must not shadow a library).
    let path: Vec<&str> = output[3]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    let at = |what: &dyn Fn(&str) -> bool| path.iter().position(|p| what(p)).expect("on sys.path");
    let stdlib = at(&|p| p.ends_with("lib-dynload"));
    let env = at(&|p| p.starts_with(cache.to_str().unwrap()));
    let blocks = at(&|p| p.contains("braid-blocks-"));
    assert!(stdlib < env && env < blocks, "{path:?}");
}

/// A block's own functions go to a `multiprocessing` pool (pickle finds them by module and name), and
/// the Python a block starts as `sys.executable` is the one Braid embeds, not whichever `python3` is
/// first on PATH.
#[test]
fn blocks_can_use_multiprocessing_and_start_their_own_python() {
    let project = Builder::new()
        .block(
            "Pool",
            "import multiprocessing, subprocess, sys\ndef square(x):\n    return x * x\ndef main(block_input, backpack):\n    with multiprocessing.Pool(2) as pool:\n        squares = pool.map(square, range(5))\n    other = subprocess.run([sys.executable, '-c', 'import sys; print(sys.version)'], capture_output=True, text=True)\n    return [squares, sys.version, other.stdout.strip()]\n",
        )
        .build();
    let output = &first_result(project);
    assert_eq!(output[0], json!([0, 1, 4, 9, 16]));
    assert_eq!(output[2], output[1], "the same Python");
}

/// An environment built for this run (a cache of its own, so pip has something to say): pip's output
/// reaches the run as it installs and stays in the run's log in the history.
#[test]
fn a_fresh_install_prints_pips_output_and_the_history_keeps_it() {
    let project =
        uses_six("import six\ndef main(block_input, backpack):\n    return six.__version__\n");
    let dir = tempfile::tempdir().unwrap();
    let db = braid::runtime::history::History::path_for_project(&dir.path().join("p.braid.json"));
    let mut config = runtime_config();
    config.env_cache = dir.path().join("envs");
    let mut runtime = RuntimeHandle::start(config).unwrap();
    let mut request = RunRequest::new(RunId::new_random(), project);
    request.history = Some(db.clone());
    let run_id = request.run_id.clone();
    runtime.send(RuntimeRequest::Run(Box::new(request)));
    let mut streamed = Vec::new();
    let summary = loop {
        match runtime
            .recv_timeout(std::time::Duration::from_mins(5))
            .expect("the run ends")
        {
            RuntimeEvent::Log { line, .. } => streamed.push(line),
            RuntimeEvent::RunFinished(summary) => break summary,
            RuntimeEvent::RunRefused { message, .. } => panic!("refused: {message}"),
            _ => {}
        }
    };
    assert_eq!(
        summary.status,
        RunStatus::Succeeded,
        "{:?}",
        summary.failures
    );
    assert_eq!(summary.results[0].output, "1.16.0");
    let installed = |lines: &[String]| {
        lines
            .iter()
            .any(|l| l.contains("Successfully installed six-1.16.0"))
    };
    assert!(installed(&streamed), "{streamed:#?}");
    let kept: Vec<String> = braid::runtime::history::History::open(&db)
        .unwrap()
        .log(&run_id)
        .unwrap()
        .into_iter()
        .map(|(worker, text)| {
            assert_eq!(
                worker, 0,
                "pip's lines are the install's, not a worker's: {text}"
            );
            text
        })
        .collect();
    assert!(installed(&kept), "{kept:#?}");
}

#[test]
fn a_library_that_does_not_install_refuses_the_run_with_pips_words() {
    let mut project = Builder::new()
        .block("A", "def main(block_input, backpack):\n    return 1\n")
        .build();
    project.blocks[0].code_mut().unwrap().libraries =
        vec!["braid-surely-no-such-package-exists==0.0.1".to_owned()];
    let (summary, refused, log) = run_collecting(RunRequest::new(RunId::new_random(), project));
    assert!(summary.is_none());
    let message = refused.expect("refused before anything runs");
    assert!(
        message.contains("installing the project's libraries"),
        "{message}"
    );
    assert!(
        message.contains("braid-surely-no-such-package-exists"),
        "{message}"
    );
    assert!(!log.is_empty(), "the install's output was visible");
}

#[test]
fn each_block_sees_the_values_of_the_variables_it_declares() {
    let read = "import os\ndef main(block_input, backpack):\n    return os.environ.get('BRAID_TEST_TOKEN')\n";
    let mut project = Builder::new()
        .block("Declares", read)
        .block("Does not", read)
        .build();
    project.blocks[0].code_mut().unwrap().env_vars = vec!["BRAID_TEST_TOKEN".to_owned()];
    let mut request = RunRequest::new(RunId::new_random(), project);
    request.env = BTreeMap::from([("BRAID_TEST_TOKEN".to_owned(), "s3cret".to_owned())]);
    let (summary, refused, _) = run_collecting(request);
    assert_eq!(refused, None);
    let summary = summary.unwrap();
    let by_block: BTreeMap<_, _> = summary
        .results
        .iter()
        .map(|r| (r.block.as_str(), r.output.clone()))
        .collect();
    assert_eq!(by_block["Declares"], json!("s3cret"));
    assert_eq!(by_block["Does not"], Value::Null);
}

/// When memory runs out, the kernel's out-of-memory killer takes a worker before the editor: workers
/// carry the highest score there is.
#[cfg(target_os = "linux")]
#[test]
fn workers_are_the_first_the_out_of_memory_killer_takes() {
    let out = run_with(
        Builder::new()
            .block(
                "Reads",
                "def main(block_input, backpack):\n    return open('/proc/self/oom_score_adj').read().strip()\n",
            )
            .build(),
        Value::Null,
        None,
    );
    assert_eq!(out.results_of("Reads"), [&json!("1000")]);
}

/// A block that forks: its child ends when the block returns or exits there (with or without the
/// `os._exit` it should call), rather than going on as the worker and running the rest of the batch
/// again; the parent's invocations all succeed, each child's work is done once.
#[test]
fn a_forked_child_ends_with_its_block() {
    let dir = tempfile::tempdir().unwrap();
    let code = format!(
        "import os\ndef main(block_input, backpack):\n    pid = os.fork()\n    if pid == 0:\n        with open(os.path.join({dir:?}, f'{{block_input}}.txt'), 'a') as f:\n            f.write('x')\n        if block_input % 2:\n            os._exit(0)\n        return 'from the child'\n    os.waitpid(pid, 0)\n    return block_input\n",
        dir = dir.path().to_str().unwrap()
    );
    let out = run_with(
        Builder::fan_out(30, "Work", &code).build(),
        Value::Null,
        None,
    );
    assert_eq!(
        out.summary.status,
        RunStatus::Succeeded,
        "{:?}",
        out.summary
    );
    let work = out.records_of("Work");
    assert_eq!(work.len(), 30);
    for r in work {
        let x = r.item_path[0];
        assert_eq!(r.output, Some(json!(x)), "item {x}");
        assert_eq!(r.attempt, 1, "item {x}");
        let written = std::fs::read_to_string(dir.path().join(format!("{x}.txt"))).unwrap();
        assert_eq!(written, "x", "item {x}'s child ran once");
    }
}

/// A block's own functions reach multiprocessing children that start a fresh Python ("spawn", and
/// "forkserver": the defaults on macOS and, from Python 3.14, on Linux): they import the block's module.
/// Otherwise the children could not unpickle them and the pool would hang until the timeout.
#[test]
fn multiprocessing_children_that_start_afresh_find_the_blocks_functions() {
    let code = "import multiprocessing as mp\n\
                def square(x):\n    return x * x\n\
                def main(block_input, backpack):\n    \
                    with mp.get_context(block_input).Pool(2) as pool:\n        \
                        return pool.map(square, range(5))\n";
    let mut block = Builder::new().block("Pool", code).build();
    block.blocks[0].code_mut().unwrap().timeout_s = 20;
    for method in ["spawn", "forkserver"] {
        let out = run_with(block.clone(), json!(method), None);
        assert_eq!(
            out.results_of("Pool"),
            [&json!([0, 1, 4, 9, 16])],
            "{method}: {:?}",
            out.records.first().and_then(|r| r.error.as_ref())
        );
    }
}

/// A traceback shows what plain Python would: the block's lines and the library's, none of the worker's
/// own (here, the stand-in for `os.environ` that lays the block's variables over the process's).
#[test]
fn a_traceback_shows_no_frames_of_the_worker() {
    let code = "import os\ndef main(block_input, backpack):\n    try:\n        return os.environ['BRAID_TEST_SURELY_UNSET']\n    except KeyError as e:\n        raise RuntimeError('no token') from e\n";
    let mut project = Builder::new().block("Reads", code).build();
    project.blocks[0].code_mut().unwrap().env_vars = vec!["BRAID_TEST_TOKEN".to_owned()];
    let mut request = RunRequest::new(RunId::new_random(), project);
    request.env = BTreeMap::from([("BRAID_TEST_TOKEN".to_owned(), "s3cret".to_owned())]);
    let mut runtime = RuntimeHandle::start(runtime_config()).expect("runtime starts");
    let out = crate::support::run_request_on(&mut runtime, request, |_, _, _| {});
    let error = out.records[0].error.as_ref().expect("it failed");
    let traceback = &error.traceback;
    assert!(!traceback.contains("braid_worker"), "{traceback}");
    assert!(
        traceback.contains("File \"Reads\", line 4, in main"),
        "{traceback}"
    );
    assert!(
        traceback.contains("KeyError: 'BRAID_TEST_SURELY_UNSET'"),
        "{traceback}"
    );
    assert!(traceback.contains("direct cause"), "{traceback}");
    assert!(
        traceback.ends_with("RuntimeError: no token\n"),
        "{traceback}"
    );
}

#[test]
fn invocations_sharing_a_dead_worker_run_again() {
    let project = Builder::new()
        .block("Gen", &items(10))
        .block(
            "Work",
            "import os, time\ndef main(block_input, backpack):\n    if block_input == 4:\n        time.sleep(0.1)\n        os._exit(3)\n    time.sleep(0.4)\n    return block_input\n",
        )
        .link("Gen", "Work", FanOut)
        .build();
    let out = run_with(project, Value::Null, Some(10));
    let work = out.records_of("Work");
    assert_eq!(work.len(), 10);
    let rerun = work.iter().filter(|r| r.attempt == 2).count();
    assert!(rerun >= 1, "the crash's neighbours ran again: {work:?}");
    for r in &work {
        if r.item_path[..] == [4] {
            assert_eq!(r.status, InvocationStatus::Exception);
        } else {
            assert_eq!(r.status, InvocationStatus::Succeeded, "{r:?}");
        }
    }
}

/// Invocations that had finished on a worker before user code called `os._exit` there are not run
/// again: their results go out before the process ends. (Each invocation notes its item in a file, so
/// a second run of one would show.)
#[test]
fn finished_invocations_are_not_run_again_when_their_worker_exits() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("ran.txt");
    let project = Builder::new()
        .block("Gen", &items(10))
        .block(
            "Work",
            &format!(
                "import os\ndef main(block_input, backpack):\n    with open({log:?}, 'a') as f:\n        f.write(f'{{block_input}}\\n')\n    if block_input == 4:\n        os._exit(3)\n    return block_input\n"
            ),
        )
        .link("Gen", "Work", FanOut)
        .build();
    let out = run_with(project, Value::Null, Some(10));
    assert_eq!(out.records_of("Work").len(), 10);
    let text = std::fs::read_to_string(&log).unwrap();
    let mut ran: Vec<u32> = text.lines().map(|l| l.parse().unwrap()).collect();
    ran.sort_unstable();
    assert_eq!(ran, (0..10).collect::<Vec<_>>(), "each item ran once");
}

#[test]
fn a_killed_worker_fails_only_the_item_that_killed_it() {
    let project = Builder::new()
        .block("Gen", &items(6))
        .block(
            "Work",
            "import os, signal, time\ndef main(block_input, backpack):\n    time.sleep(0.2)\n    if block_input == 4:\n        os.kill(os.getpid(), signal.SIGKILL)\n    return block_input\n",
        )
        .link("Gen", "Work", FanOut)
        .build();
    let out = run_with(project, Value::Null, Some(6));
    let work = out.records_of("Work");
    assert_eq!(work.len(), 6);
    for r in &work {
        if r.item_path[..] == [4] {
            assert_eq!(r.status, InvocationStatus::Exception);
            let error = r.error.as_ref().unwrap();
            assert!(error.message.contains("signal 9"), "{error:?}");
        } else {
            assert_eq!(r.status, InvocationStatus::Succeeded, "{r:?}");
        }
    }
}

#[test]
fn checking_code_does_not_restart_workers_that_hold_a_projects_libraries() {
    let pids = |runtime: &mut RuntimeHandle| -> std::collections::BTreeSet<i64> {
        let mut project = Builder::new()
            .block("Gen", &items(8))
            .block(
                "Pid",
                "import os, time, six\ndef main(block_input, backpack):\n    time.sleep(0.05)\n    return os.getpid()\n",
            )
            .link("Gen", "Pid", FanOut)
            .build();
        project.blocks[1].code_mut().unwrap().libraries = vec!["six==1.16.0".to_owned()];
        let out = crate::support::run_on(runtime, project, Value::Null, Some(8), |_, _, _| {});
        assert_eq!(
            out.summary.status,
            RunStatus::Succeeded,
            "{:?}",
            out.summary.failures
        );
        out.results_of("Pid")
            .iter()
            .map(|v| v.as_i64().unwrap())
            .collect()
    };
    let mut runtime = RuntimeHandle::start(runtime_config()).unwrap();
    let before = pids(&mut runtime);
    // The editor checks code after every edit; the project has no libraries in this check's program.
    let check_id = RunId::new_random();
    runtime.send(RuntimeRequest::Check {
        check_id: check_id.clone(),
        project: Box::new(
            Builder::new()
                .block("A", "def main(block_input, backpack):\n    return 1\n")
                .build(),
        ),
    });
    loop {
        let event = runtime
            .recv_timeout(std::time::Duration::from_secs(30))
            .expect("checked");
        if matches!(&event, RuntimeEvent::Checked { check_id: id, .. } if *id == check_id) {
            break;
        }
    }
    let after = pids(&mut runtime);
    assert!(
        after.is_subset(&before),
        "workers restarted: {before:?} then {after:?}"
    );
}

/// The worker's Python package (`src/runtime/worker/python`) passes its own tests (pytest, in a plain
/// Python: without Braid's native module) and its lint (ruff: checks and formatting), as does the Dask
/// bridge (`src/runtime/dask/bridge.py`, linted by the package's rules). The tools come
/// from `scripts/requirements-test.txt`; where one is not installed, this says so and checks nothing.
#[test]
fn the_worker_package_passes_its_python_tests_and_lint() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/src/runtime/worker/python");
    // Outside the package's folder: its pyproject.toml applies through --config.
    let bridge = concat!(env!("CARGO_MANIFEST_DIR"), "/src/runtime/dask/bridge.py");
    let python = std::env::var("PYO3_PYTHON").unwrap_or_else(|_| "python3".to_owned());
    let run = |args: &[&str]| {
        std::process::Command::new(&python)
            .args(args)
            .current_dir(dir)
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .output()
            .expect("python runs")
    };
    for (tool, args) in [
        ("pytest", &["-m", "pytest", "-q"][..]),
        (
            "ruff",
            &[
                "-m",
                "ruff",
                "check",
                "--no-cache",
                "--config",
                "pyproject.toml",
                ".",
                bridge,
            ],
        ),
        (
            "ruff",
            &[
                "-m",
                "ruff",
                "format",
                "--no-cache",
                "--config",
                "pyproject.toml",
                "--check",
                ".",
                bridge,
            ],
        ),
    ] {
        let out = run(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        if stderr.contains(&format!("No module named {tool}")) {
            eprintln!(
                "SKIPPED: {tool} is not installed for {python} (pip install -r scripts/requirements-test.txt)"
            );
            continue;
        }
        assert!(
            out.status.success(),
            "{tool} {args:?}:\n{}\n{stderr}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
}

/// Whether the process `pid` has ended (a zombie left for a parent that does not reap counts as ended),
/// waiting up to five seconds for it.
pub fn ended(pid: u32) -> bool {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let state = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|s| Some(s.rsplit_once(')')?.1.split_whitespace().next()?.to_owned()));
        if state.as_deref().is_none_or(|s| s == "Z" || s == "X") {
            return true;
        }
        if std::time::Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Processes a block starts end with its worker: one stuck in a subprocess it waits for (the timeout
/// kills the worker) and one it left running in the background, once the runtime shuts down.
#[test]
fn processes_a_block_started_do_not_outlive_its_worker() {
    let dir = tempfile::tempdir().unwrap();
    let pids = dir.path().join("pids");
    let project = Builder::new()
        .block(
            "Stuck",
            &format!(
                "import subprocess\ndef main(block_input, backpack):\n    background = subprocess.Popen(['sleep', '300'])\n    waited_for = subprocess.Popen(['sleep', '301'])\n    with open({pids:?}, 'a') as f:\n        f.write(f'{{background.pid}}\\n{{waited_for.pid}}\\n')\n    waited_for.wait()\n"
            ),
        )
        .timeout("Stuck", 1)
        .build();
    let outcome = crate::support::run(project, Value::Null);
    assert_eq!(
        outcome.records_of("Stuck")[0].status,
        InvocationStatus::TimedOut
    );
    let started: Vec<u32> = std::fs::read_to_string(&pids)
        .unwrap()
        .lines()
        .map(|l| l.parse().unwrap())
        .collect();
    assert_eq!(started.len(), 2);
    for pid in started {
        assert!(ended(pid), "the block's sleep {pid} lives on");
    }

    // A block that returns, leaving a process behind: it ends when the runtime does.
    let project = Builder::new()
        .block(
            "Leaves",
            "import subprocess\ndef main(block_input, backpack):\n    return subprocess.Popen(['sleep', '302']).pid\n",
        )
        .build();
    let mut runtime = RuntimeHandle::start(crate::support::runtime_config()).unwrap();
    let outcome = crate::support::run_on(&mut runtime, project, Value::Null, None, |_, _, _| {});
    let pid = u32::try_from(outcome.results_of("Leaves")[0].as_u64().unwrap()).unwrap();
    assert!(
        std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "alive while the runtime is"
    );
    runtime.shutdown(std::time::Duration::from_secs(5));
    assert!(
        ended(pid),
        "the background sleep {pid} outlived the runtime"
    );
}

/// The worker output a run got, in order, as `worker N: line`.
fn worker_output_of(project: braid::model::Project) -> (RunStatus, Vec<String>) {
    let mut runtime = RuntimeHandle::start(runtime_config()).expect("runtime starts");
    let mut lines = Vec::new();
    let out = crate::support::run_request_on(
        &mut runtime,
        RunRequest::new(RunId::new_random(), project),
        |_, _, event| {
            if let RuntimeEvent::WorkerOutput {
                worker,
                lines: more,
                ..
            } = event
            {
                lines.extend(more.iter().map(|line| format!("worker {worker}: {line}")));
            }
        },
    );
    (out.summary.status, lines)
}

/// What reaches a worker's own descriptors (C code writing to them, here `os.write`; a child process
/// that inherited them) is no invocation's printed output, but the run gets it, before it ends: the
/// editor's Log tab and `braid run`'s stderr show it, not only `RUST_LOG=braid::worker=debug`.
#[test]
fn what_a_worker_writes_itself_reaches_the_run() {
    let code = "import os\ndef main(block_input, backpack):\n    \
                os.write(2, f'to stderr {block_input}\\n'.encode())\n    \
                os.write(1, f'to stdout {block_input}\\n'.encode())\n    \
                print('printed', block_input)\n    \
                return block_input\n";
    let project = Builder::fan_out(3, "Work", code).build();
    let (status, lines) = worker_output_of(project);
    assert_eq!(status, RunStatus::Succeeded);
    let mut texts: Vec<&str> = lines
        .iter()
        .map(|line| line.split_once(": ").expect("worker N: text").1)
        .collect();
    texts.sort_unstable();
    assert_eq!(
        texts,
        [
            "to stderr 0",
            "to stderr 1",
            "to stderr 2",
            "to stdout 0",
            "to stdout 1",
            "to stdout 2"
        ],
        "{lines:?}"
    );
    assert!(
        lines
            .iter()
            .all(|line| line.starts_with("worker 1: ") || line.starts_with("worker 2: ")),
        "{lines:?}"
    );
}

/// Workers start without `site`: a block sees the standard library and its project's libraries, not the
/// packages installed beside the interpreter (a project that runs here runs on a colleague's machine),
/// and a missing one is named with what to do. What `site` gives every program is still there.
#[test]
fn a_block_sees_the_standard_library_and_its_projects_libraries_only() {
    // The interpreter's own package folders, and a package in one of them (pip, which every
    // interpreter that can build a project environment has).
    let own = python_json(
        "import json, site, pip\nprint(json.dumps([site.getsitepackages() + [site.getusersitepackages()], pip.__file__]))",
        &[],
    );
    let pip_file = own[1].as_str().unwrap();
    assert!(
        own[0]
            .as_array()
            .unwrap()
            .iter()
            .any(|dir| pip_file.starts_with(dir.as_str().unwrap())),
        "pip is not in the interpreter's site-packages: {own}"
    );

    let looks = Builder::new()
        .block(
            "Sees",
            "import sys\ndef main(block_input, backpack):\n    return [sys.path, [callable(f) for f in (exit, quit, help)]]\n",
        )
        .build();
    let out = crate::support::run(looks, Value::Null);
    let seen = out.results_of("Sees")[0];
    for dir in own[0].as_array().unwrap() {
        assert!(
            !seen[0].as_array().unwrap().contains(dir),
            "{dir} is on the block's sys.path: {seen}"
        );
    }
    assert_eq!(seen[1], json!([true, true, true]));

    let imports = Builder::new()
        .block(
            "Imports pip",
            "def main(block_input, backpack):\n    import pip\n    return pip.__file__\n",
        )
        .build();
    let out = crate::support::run(imports, Value::Null);
    let error = out.records[0].error.as_ref().expect("it failed");
    assert_eq!(error.kind, "ModuleNotFoundError", "{error:?}");
    assert!(
        error
            .message
            .starts_with("No module named 'pip' (a block imports the standard library and its project's libraries only: add the package"),
        "{error:?}"
    );
}

/// What the interpreter Braid embeds prints, as JSON, for `python -c script args…`.
fn python_json(script: &str, args: &[&str]) -> Value {
    let python = std::env::var("PYO3_PYTHON").unwrap_or_else(|_| "python3".to_owned());
    let out = std::process::Command::new(python)
        .args(["-c", script])
        .args(args)
        .output()
        .expect("python runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("the script's JSON")
}

/// A block whose timeout is past what 64 bits of nanoseconds hold (validation refuses such a project,
/// but the worker is handed it here directly, as any caller of the invoker may): its invocations run,
/// the timeout meaning never. Before, the native loop could not take the number: the exception killed
/// the worker's only exec thread and every later invocation on that worker waited forever.
#[test]
fn a_timeout_past_64_bits_of_nanoseconds_does_not_hang_the_worker() {
    use braid::run::Executor;
    use braid::runtime::invoker::{
        Invoker, InvokerEvent, InvokerEvents, Outcome, Program, ProgramBlock, Task,
    };
    use braid::runtime::worker::pool::PoolConfig;

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let outputs = runtime.block_on(async {
        let (tx, mut events) = tokio::sync::mpsc::channel(64);
        let config = PoolConfig {
            worker_exe: env!("CARGO_BIN_EXE_braid").into(),
            workers: 2,
            env: Vec::new(),
        };
        let mut pool =
            braid::runtime::worker::pool::start(config, InvokerEvents::new(Executor::Local, tx));
        let huge = 1e10;
        pool.load(Program {
            id: 1,
            blocks: vec![ProgramBlock {
                name: "Double".to_owned(),
                filename: "Double".to_owned(),
                code: "def main(block_input, backpack):\n    return block_input * 2\n".to_owned(),
                ifs: Vec::new(),
                fan_outs: Vec::new(),
                timeout_s: huge,
                runnable: true,
                env: BTreeMap::new(),
            }],
            site_packages: None,
            cwd: None,
            compile_only: false,
            requirements: Vec::new(),
        });
        let mut outputs = Vec::new();
        let wait = tokio::time::timeout(std::time::Duration::from_secs(30), async {
            while let Some((_, event)) = events.recv().await {
                match event {
                    InvokerEvent::Loaded { errors, .. } => {
                        assert!(errors.is_empty(), "{errors:?}");
                        pool.submit(
                            (0..6_u64)
                                .map(|i| Task {
                                    key: i,
                                    attempt: 1,
                                    program: 1,
                                    block: 0,
                                    timeout_s: huge,
                                    input_json: i.to_string().as_str().into(),
                                    backpack_json: std::sync::Arc::from("{}"),
                                })
                                .collect(),
                        );
                    }
                    InvokerEvent::Finished(results) => {
                        for result in results {
                            match result.outcome {
                                Outcome::Returned { output, .. } => {
                                    outputs.push((result.key, output));
                                }
                                other => panic!("{}: {other:?}", result.key),
                            }
                        }
                        if outputs.len() == 6 {
                            return;
                        }
                    }
                    InvokerEvent::Broken(message) | InvokerEvent::Refused { message, .. } => {
                        panic!("{message}")
                    }
                    InvokerEvent::Output { .. } => {}
                }
            }
        })
        .await;
        Box::new(pool).stop().await;
        assert!(wait.is_ok(), "only {outputs:?} came back");
        outputs
    });
    let mut outputs = outputs;
    outputs.sort_by_key(|(key, _)| *key);
    let expected: Vec<(u64, Value)> = (0..6).map(|i| (i, json!(i * 2))).collect();
    assert_eq!(outputs, expected);
}

/// Code Python can't compile except by raising something other than `SyntaxError` refuses the run with
/// that block's compile problem, and the runtime goes on: the next run runs. Before, the worker died
/// at load three times, the run was refused with "the Python worker keeps dying at start", naming no
/// block, and the runtime refused every later run until a restart.
#[test]
fn code_python_cannot_compile_refuses_its_run_and_the_next_one_runs() {
    let mut runtime = RuntimeHandle::start(runtime_config()).unwrap();
    let deep = Builder::new()
        .block(
            "Minus",
            &format!(
                "def main(block_input, backpack):\n    return {}1\n",
                "-".repeat(100_000)
            ),
        )
        .build();
    let out = crate::support::run_on(&mut runtime, deep, Value::Null, None, |_, _, _| {});
    let refused = out.refused.expect("refused");
    assert!(
        refused.contains("\"Minus\": Python can't compile it: MemoryError"),
        "{refused}"
    );
    let fine = Builder::new()
        .block("Fine", "def main(block_input, backpack):\n    return 7\n")
        .build();
    let out = crate::support::run_on(&mut runtime, fine, Value::Null, None, |_, _, _| {});
    assert_eq!(out.refused, None);
    assert_eq!(out.results_of("Fine"), [&json!(7)]);
}

/// A runtime whose workers would not start (here a stand-in for the worker that fails while a flag
/// file exists) refuses the run saying so, and tries again for the next run: once Python starts, it
/// runs. Before, it refused every run until the editor was restarted.
#[test]
fn a_runtime_that_gave_up_on_python_tries_again_for_the_next_run() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let flag = dir.path().join("broken");
    std::fs::write(&flag, "").unwrap();
    let script = dir.path().join("worker.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\n[ -e {flag:?} ] && {{ echo 'no Python today' >&2; exit 3; }}\nexec {:?} \"$@\"\n",
            env!("CARGO_BIN_EXE_braid")
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let config = braid::runtime::RuntimeConfig::workers(braid::runtime::worker::pool::PoolConfig {
        worker_exe: script,
        workers: 2,
        env: Vec::new(),
    });
    let mut runtime = RuntimeHandle::start(config).unwrap();
    let project = || {
        Builder::new()
            .block("Fine", "def main(block_input, backpack):\n    return 7\n")
            .build()
    };
    let out = crate::support::run_on(&mut runtime, project(), Value::Null, None, |_, _, _| {});
    let refused = out.refused.expect("refused while the worker can't start");
    assert!(
        refused.contains("keeps dying at start") && refused.contains("no Python today"),
        "{refused}"
    );
    std::fs::remove_file(&flag).unwrap();
    let out = crate::support::run_on(&mut runtime, project(), Value::Null, None, |_, _, _| {});
    assert_eq!(out.refused, None);
    assert_eq!(out.results_of("Fine"), [&json!(7)]);
}

/// A block's variable values (typed by the user for that block) are not left in the workers for the
/// next project's blocks to find through the interpreter (`gc`): not in the module of the block that
/// read them, nor in the exec thread that ran it. Before, both held them after the run had ended.
#[test]
fn a_projects_variable_values_are_not_left_for_the_next_project_to_find() {
    let mut runtime = RuntimeHandle::start(runtime_config()).unwrap();
    let secret = "s3cret-of-project-a";
    let mut holds = Builder::fan_out(
        4,
        "Holds",
        "import os\nTOKEN = os.environ['TOKEN']\ndef main(block_input, backpack):\n    return len(os.environ['TOKEN'])\n",
    )
    .build();
    holds.blocks[1].code_mut().unwrap().env_vars = vec!["TOKEN".to_owned()];
    let mut request = RunRequest::new(RunId::new_random(), holds);
    request.env = BTreeMap::from([("TOKEN".to_owned(), secret.to_owned())]);
    let out = crate::support::run_request_on(&mut runtime, request, |_, _, _| {});
    assert_eq!(out.results_of("Holds"), [&json!(19); 4]);

    // The secret is not in this code (that would be found): it is put together as it runs (a `+` of
    // two constants would be folded into one by Python's compiler).
    let looks = Builder::fan_out(
        4,
        "Looks",
        &format!(
            "import gc\ndef main(block_input, backpack):\n    needle = ''.join([{:?}, {:?}])\n    found = set()\n    for o in gc.get_objects():\n        for r in [o, *gc.get_referents(o)]:\n            if isinstance(r, dict):\n                r = list(r.values())\n            if isinstance(r, (list, tuple)) and any(isinstance(v, str) and needle in v for v in r):\n                found.add(type(o).__name__)\n    return sorted(found)\n",
            &secret[..6],
            &secret[6..]
        ),
    )
    .build();
    let out = crate::support::run_on(&mut runtime, looks, Value::Null, None, |_, _, _| {});
    assert_eq!(out.results_of("Looks"), [&json!([]); 4]);
}
