//! `braid run` and `braid validate` as a user calls them: exit codes, `--json`, one-line errors.

use std::path::{Path, PathBuf};

use assert_cmd::Command;
use serde_json::{Value, json};

pub(crate) fn braid() -> Command {
    Command::cargo_bin("braid").unwrap()
}

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn fixture(name: &str) -> PathBuf {
    repo("tests/fixtures/refinery-examples").join(name)
}

/// `braid run … --json`, without recording history: these tests run the repository's own sample
/// projects and must not leave databases beside them (history has its own tests).
fn run_json(args: &[&str]) -> (Value, i32) {
    let out = braid()
        .arg("run")
        .args(args)
        .args(["--json", "--no-history"])
        .output()
        .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    let value: Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("stdout is one JSON object ({e}): {stdout}"));
    (value, out.status.code().unwrap())
}

pub(crate) fn write_temp(name: &str, text: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    std::fs::write(&path, text).unwrap();
    (dir, path)
}

/// A project `<name>.braid.json` in a temporary folder: Gen returns `0..n`, fanned out to Work (`work`
/// is its code).
fn fan_out_project(name: &str, n: usize, work: &str) -> (tempfile::TempDir, PathBuf) {
    let project = json!({
        "format_version": 1, "name": name,
        "blocks": [
            {"id": "g", "name": "Gen", "kind": "code",
             "code": format!("def main(block_input, backpack):\n    return list(range({n}))\n")},
            {"id": "w", "name": "Work", "kind": "code", "code": work}
        ],
        "transitions": [{"id": "t", "from": "g", "to": "w", "type": "fan-out"}]
    });
    write_temp(&format!("{name}.braid.json"), &project.to_string())
}

/// A one-block Braid project whose block has this code.
/// A Code Block named as its id, for projects written inline.
fn code_block(id: &str, code: &str) -> Value {
    json!({"id": id, "name": id, "kind": "code", "code": code})
}

/// `braid validate <path>`: its exit code and what it printed.
fn validate(path: &Path) -> (Option<i32>, String) {
    let out = braid().arg("validate").arg(path).output().unwrap();
    (out.status.code(), String::from_utf8(out.stdout).unwrap())
}

fn one_block(code: &str) -> String {
    serde_json::to_string_pretty(&json!({
        "format_version": 1,
        "name": "one block",
        "blocks": [{"id": "b1", "name": "Only", "kind": "code", "language": "python", "code": code}],
        "transitions": []
    }))
    .unwrap()
}

#[test]
fn map_reduce_sample_prints_the_seeds_result() {
    let (out, code) = run_json(&[repo("sample-projects/map-reduce.braid.json")
        .to_str()
        .unwrap()]);
    assert_eq!(code, 0);
    assert_eq!(out["status"], "succeeded");
    let expected: Vec<u32> = (1..=100).map(|i| i * 2).collect();
    assert_eq!(
        out["results"],
        json!([{"block": "Collect", "block_id": out["results"][0]["block_id"], "item_path": [], "output": expected}])
    );
    assert_eq!(out["invocations"], 102);
    assert_eq!(out["failures"], json!([]));
    assert!(out["duration_ms"].is_number());
    assert!(out["run_id"].is_string());
}

#[test]
fn every_sample_project_runs() {
    for entry in std::fs::read_dir(repo("sample-projects")).unwrap() {
        let path = entry.unwrap().path();
        // Running a sample (in the editor too) leaves its history in `sample-projects/.braid/`.
        if path.extension().is_none_or(|e| e != "json") {
            continue;
        }
        let (out, code) = run_json(&[path.to_str().unwrap()]);
        assert_eq!(
            (code, &out["status"]),
            (0, &json!("succeeded")),
            "{}: {out}",
            path.display()
        );
    }
}

#[test]
fn refinery_hello_world_fanout_runs_as_exported() {
    let (out, code) = run_json(&[fixture("hello-world-fanout.json").to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        out["results"][0]["output"],
        json!(["Hello There1", "Hello There2", "Hello There3"])
    );
    assert_eq!(out["results"][0]["block"], "API Endpoint Response Block");
}

#[test]
fn refinery_node_block_is_reported_not_runnable() {
    let (out, code) = run_json(&[fixture("dev-workflow-intro.json").to_str().unwrap()]);
    assert_eq!(code, 1);
    let error = out["failures"][0]["error"].as_str().unwrap();
    assert!(
        error.contains("\"Hello World Code Block\"") && error.contains("nodejs8.10"),
        "{error}"
    );
}

#[test]
fn input_and_from_select_what_runs() {
    let path = repo("sample-projects/if-else.braid.json");
    let (out, _) = run_json(&[path.to_str().unwrap(), "--input", "\"a long sentence\""]);
    assert_eq!(out["results"][0]["output"], "long: 15 characters");
    let (out, _) = run_json(&[
        path.to_str().unwrap(),
        "--from",
        "Short text",
        "--input",
        "7",
    ]);
    assert_eq!(out["results"][0]["output"], "short: 7 characters");
    assert_eq!(out["invocations"], 1);
    let (_dir, input) = write_temp("in.json", "\"from a file\"");
    let (out, _) = run_json(&[
        path.to_str().unwrap(),
        "--input",
        &format!("@{}", input.display()),
    ]);
    assert_eq!(out["results"][0]["output"], "long: 11 characters");
}

#[test]
fn corrupt_json_is_one_line_with_line_and_column() {
    let (_dir, path) = write_temp(
        "broken.json",
        "{\n  \"format_version\": 1,\n  \"blocks\": [}\n",
    );
    let out = braid().arg("run").arg(&path).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains(&format!("{}:3:14", path.display())),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"));
    assert!(out.stdout.is_empty());
}

#[test]
fn missing_file_is_exit_2() {
    let out = braid()
        .args(["run", "/nonexistent/project.json", "--json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.contains("/nonexistent/project.json"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
}

#[test]
fn bad_input_json_is_exit_2() {
    let path = repo("sample-projects/then.braid.json");
    let out = braid()
        .arg("run")
        .arg(&path)
        .args(["--input", "{oops"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.starts_with("braid: --input:1:2: invalid JSON"),
        "{stderr}"
    );
}

#[test]
fn python_syntax_error_names_block_and_line() {
    let (_dir, path) = write_temp(
        "syntax.json",
        &one_block("def main(block_input, backpack):\n    for i in range(3):\n\n    return 1\n"),
    );
    let (out, code) = run_json(&[path.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert_eq!(out["status"], "failed");
    assert_eq!(out["invocations"], 0);
    let error = out["failures"][0]["error"].as_str().unwrap();
    assert!(
        error.starts_with("\"Only\" line 4: IndentationError"),
        "{error}"
    );
}

#[test]
fn non_json_return_value_names_the_python_type() {
    let (_dir, path) = write_temp(
        "nonjson.json",
        &one_block(
            "import datetime\ndef main(block_input, backpack):\n    return datetime.date(2026, 1, 1)\n",
        ),
    );
    let (out, code) = run_json(&[path.to_str().unwrap()]);
    assert_eq!(code, 1);
    let failure = &out["failures"][0];
    assert_eq!(failure["block"], "Only");
    assert_eq!(failure["status"], "exception");
    assert!(
        failure["error"]
            .as_str()
            .unwrap()
            .contains("not JSON-serialisable: date"),
        "{failure}"
    );
}

#[test]
fn human_summary_without_json() {
    let out = braid()
        .arg("run")
        .arg(repo("sample-projects/fan-in.braid.json"))
        .arg("--no-history")
        .output()
        .unwrap();
    assert!(out.status.success());
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(stdout.contains(" succeeded in "), "{stdout}");
    assert!(
        stdout.contains("Total []: {\"counts\":[2,1,3],\"total\":6,\"job\":\"word count\"}"),
        "{stdout}"
    );
}

/// A fan-out over many items keeps the readable summary short: the first 20 results and failed
/// invocations, then how many more and where to find them all (the history, or `--json`). Counts are
/// grouped by thousands.
#[test]
fn a_big_fan_outs_summary_lists_the_first_and_says_where_the_rest_are() {
    let (_dir, path) = fan_out_project(
        "many",
        2060,
        "def main(block_input, backpack):\n    if block_input % 2:\n        raise ValueError(f'odd {block_input}')\n    return block_input\n",
    );
    let out = braid().arg("run").arg(&path).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8(out.stdout).unwrap();
    let lines = |prefix: &str| stdout.lines().filter(|l| l.starts_with(prefix)).count();
    assert_eq!(lines("  Work ["), 40, "{stdout}");
    assert!(stdout.contains(": 2,061 invocations"), "{stdout}");
    assert!(
        stdout.contains("  … and 1,010 more results (--json prints them all)\n"),
        "{stdout}"
    );
    let hint = stdout
        .lines()
        .find_map(|l| l.strip_prefix("  … and 1,010 more failed invocations: braid history "))
        .unwrap_or_else(|| panic!("{stdout}"));
    let args: Vec<&str> = hint
        .strip_suffix(" lists them all")
        .unwrap()
        .split(' ')
        .collect();
    // The command it names lists every failed invocation.
    let listed = braid().arg("history").args(&args).output().unwrap();
    let listed = String::from_utf8(listed.stdout).unwrap();
    assert_eq!(
        listed
            .lines()
            .filter(|l| l.contains("ValueError: odd"))
            .count(),
        1030,
        "{listed}"
    );
    // --json has them all.
    let (json, _) = run_json(&[path.to_str().unwrap()]);
    assert_eq!(json["failures"].as_array().unwrap().len(), 1030);
    assert_eq!(json["results"].as_array().unwrap().len(), 1030);
}

#[test]
fn validate_reports_every_problem_and_exit_code() {
    let out = braid()
        .arg("validate")
        .arg(repo("sample-projects/merge.braid.json"))
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let broken = json!({
        "format_version": 1, "name": "broken",
        "blocks": [
            {"id": "a", "name": "A", "kind": "code", "code": "def main(block_input, backpack):\n    return 1\n"},
            {"id": "b", "name": "B", "kind": "code", "code": "def main(block_input, backpack)\n    return 1\n"}
        ],
        "transitions": [
            {"id": "t1", "from": "a", "to": "b", "type": "else"},
            {"id": "t2", "from": "a", "to": "ghost", "type": "then"}
        ]
    });
    let (_dir, path) = write_temp("broken.json", &broken.to_string());
    let (code, stdout) = validate(&path);
    assert_eq!(code, Some(1), "{stdout}");
    assert!(stdout.ends_with(": 3 errors\n"), "{stdout}");
    assert!(stdout.contains("\"B\" line 1: SyntaxError"), "{stdout}");
    assert!(stdout.contains("else"), "{stdout}");
    assert!(stdout.contains("ghost"), "{stdout}");
}

/// A `main` that can't take Braid's two arguments is a problem found before anything runs (from its
/// definition: no code runs), with the block and line; the ways a `main` can take them all pass.
#[test]
fn a_main_that_cannot_take_two_arguments_is_a_problem_before_the_run() {
    let project = json!({
        "format_version": 1, "name": "signatures",
        "blocks": [
            code_block("One", "import os\n\ndef main(block_input):\n    return 1\n"),
            code_block("Three", "def main(event, context, extra):\n    return 1\n"),
            code_block("Keyword", "def main(block_input, backpack, *, retries):\n    return 1\n"),
            code_block("Defaults", "def main(block_input, backpack=None, retries=3):\n    return 1\n"),
            code_block("Star", "def main(*args):\n    return len(args)\n"),
            code_block("Decorated", "import functools\ndef twice(f):\n    @functools.wraps(f)\n    def g(a, b):\n        return f(a)\n    return g\n@twice\ndef main(block_input):\n    return 1\n"),
            code_block("Async", "import asyncio\nasync def main(block_input, backpack):\n    await asyncio.sleep(0.01)\n    return 'awaited'\n")
        ],
        "transitions": []
    });
    let (_dir, path) = write_temp("signatures.braid.json", &project.to_string());
    let (code, stdout) = validate(&path);
    assert_eq!(code, Some(1), "{stdout}");
    assert!(stdout.ends_with(": 3 errors\n"), "{stdout}");
    assert!(
        stdout
            .contains("\"One\" line 3: main(block_input) takes one argument, but Braid passes two"),
        "{stdout}"
    );
    assert!(
        stdout.contains("\"Three\" line 1: main(event, context, extra) needs 3 arguments"),
        "{stdout}"
    );
    assert!(
        stdout.contains("\"Keyword\" line 1: main(block_input, backpack, *, retries) needs the keyword argument retries"),
        "{stdout}"
    );
    // Those that pass run; an `async def main` is awaited.
    let mut project = project;
    project["blocks"]
        .as_array_mut()
        .unwrap()
        .retain(|b| !["One", "Three", "Keyword"].contains(&b["name"].as_str().unwrap()));
    std::fs::write(&path, project.to_string()).unwrap();
    let (out, code) = run_json(&[path.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
    let by_block: std::collections::BTreeMap<&str, &Value> = out["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["block"].as_str().unwrap(), &r["output"]))
        .collect();
    assert_eq!(by_block["Async"], &json!("awaited"));
    assert_eq!(by_block["Star"], &json!(2));
    assert_eq!(by_block["Defaults"], &json!(1));
    assert_eq!(by_block["Decorated"], &json!(1));
}

/// A project that can't run is not valid: an empty one is an error; one where every block has an
/// incoming transition is a warning (it runs from a chosen block), as `braid run` refuses it otherwise.
#[test]
fn validate_says_when_a_project_has_nothing_to_start_from() {
    let (_dir, empty) = write_temp(
        "empty.braid.json",
        r#"{"format_version": 1, "name": "empty", "blocks": [], "transitions": []}"#,
    );
    let (code, stdout) = validate(&empty);
    assert_eq!(code, Some(1), "{stdout}");
    assert!(stdout.contains("The project has no blocks"), "{stdout}");
    let returns_one = "def main(block_input, backpack):\n    return 1\n";
    let project = json!({
        "format_version": 1, "name": "circle",
        "blocks": [code_block("A", returns_one), code_block("B", returns_one)],
        "transitions": [
            {"id": "t1", "from": "A", "to": "B", "type": "then"},
            {"id": "t2", "from": "B", "to": "A", "type": "if", "expression": "return_data < 0"}
        ]
    });
    let (_dir, circle) = write_temp("circle.braid.json", &project.to_string());
    let (code, stdout) = validate(&circle);
    assert_eq!(code, Some(0), "{stdout}");
    assert!(
        stdout.contains("warning: Every block has an incoming transition"),
        "{stdout}"
    );
    let (out, code) = run_json(&["--from", "A", circle.to_str().unwrap()]);
    assert_eq!((code, &out["status"]), (0, &json!("succeeded")), "{out}");
}

/// Code that starts with a byte order mark (pasted from a file saved with one) runs, as the same file
/// would under Python; Windows line ends too.
#[test]
fn code_with_a_byte_order_mark_or_windows_line_ends_runs() {
    let (_dir, path) = write_temp(
        "bom.braid.json",
        &one_block("\u{feff}def main(block_input, backpack):\r\n    return 'ran'\r\n"),
    );
    let (out, code) = run_json(&[path.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(out["results"][0]["output"], "ran");
}

#[test]
fn a_failing_library_install_is_shown_and_stops_the_run() {
    let project = json!({
        "format_version": 1, "name": "libs",
        "blocks": [{"id": "a", "name": "A", "kind": "code", "libraries": ["braid-surely-no-such-package-exists==0.0.1"],
                    "code": "def main(block_input, backpack):\n    return 1\n"}],
        "transitions": []
    });
    let (_dir, path) = write_temp("libs.json", &project.to_string());
    let out = braid()
        .arg("run")
        .arg(&path)
        .arg("--no-history")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.contains("Creating a Python environment"), "{stderr}");
    assert!(
        stderr.contains("installing the project's libraries"),
        "{stderr}"
    );
    assert!(out.stdout.is_empty(), "nothing ran, nothing printed");
}

#[test]
fn environment_values_come_from_the_braid_folder_not_the_project() {
    let project = json!({
        "format_version": 1, "name": "env",
        "blocks": [{"id": "a", "name": "A", "kind": "code", "env_vars": ["BRAID_CLI_TEST_SECRET"],
                    "code": "import os\ndef main(block_input, backpack):\n    return os.environ['BRAID_CLI_TEST_SECRET']\n"}],
        "transitions": []
    });
    let (dir, path) = write_temp("env.json", &project.to_string());
    std::fs::create_dir_all(dir.path().join(".braid")).unwrap();
    std::fs::write(
        dir.path().join(".braid/env.json.env"),
        "# local only\nBRAID_CLI_TEST_SECRET=\"hunter2\"\n",
    )
    .unwrap();
    let (out, code) = run_json(&[path.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(out["results"][0]["output"], "hunter2");
    assert!(!std::fs::read_to_string(&path).unwrap().contains("hunter2"));
}

/// A declared variable with no value anywhere is named, with its block, before the run; the run goes on
/// (the block may cope without it).
#[test]
fn a_declared_variable_without_a_value_is_warned_about() {
    let project = json!({
        "format_version": 1, "name": "env",
        "blocks": [{"id": "a", "name": "Call API", "kind": "code",
                    "env_vars": ["BRAID_CLI_TEST_UNSET"],
                    "code": "import os\ndef main(block_input, backpack):\n    return os.environ.get('BRAID_CLI_TEST_UNSET', 'none')\n"}],
        "transitions": []
    });
    let (_dir, path) = write_temp("env.json", &project.to_string());
    let out = braid()
        .args(["run", "--no-history", path.to_str().unwrap()])
        .env_remove("BRAID_CLI_TEST_UNSET")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.contains(
            "braid: warning: block \"Call API\" declares BRAID_CLI_TEST_UNSET, which has no value"
        ),
        "{stderr}"
    );
    assert!(stderr.contains(".braid/env.json.env"), "{stderr}");
}

/// A fan-out of sleepers whose items note that they started (in `started`, with the pid of a helper
/// process each starts), run by `braid run` in a process group of its own, as a shell runs a foreground
/// command; returns the child once one item is running. `sleep` is how an item sleeps (Python, one line).
/// How [`start_sleepy_run`]'s items sleep unless told otherwise.
const SLEEP: &str = "time.sleep(100)";

fn start_sleepy_run(dir: &Path, sleep: &str) -> std::process::Child {
    let started = dir.join("started");
    let flag = started.to_str().unwrap();
    let path = write_sleepy_project(
        dir,
        &format!(
            "import subprocess, time\ndef main(block_input, backpack):\n    helper = subprocess.Popen(['sleep', '100'])\n    with open({flag:?}, 'a') as f:\n        f.write(f'{{helper.pid}}\\n')\n    {sleep}\n    return block_input\n"
        ),
    );
    start_run_until(&[path.to_str().unwrap()], &started)
}

/// `sleepy.braid.json` in `dir`: `Gen` fans 20 items out to `Sleep` (this code, a 300 s timeout) at a
/// concurrency limit of 4.
pub(crate) fn write_sleepy_project(dir: &Path, code: &str) -> PathBuf {
    let project = json!({
        "format_version": 1, "name": "sleepy", "settings": {"concurrency_limit": 4},
        "blocks": [
            {"id": "g", "name": "Gen", "kind": "code",
             "code": "def main(block_input, backpack):\n    return list(range(20))\n"},
            {"id": "w", "name": "Sleep", "kind": "code", "timeout_s": 300, "code": code}
        ],
        "transitions": [{"id": "t", "from": "g", "to": "w", "type": "fan-out"}]
    });
    let path = dir.join("sleepy.braid.json");
    std::fs::write(&path, project.to_string()).unwrap();
    path
}

/// `braid run` with these arguments, as a terminal starts it (a process group of its own, to which
/// Ctrl+C goes), once `started` exists (an item has begun).
pub(crate) fn start_run_until(args: &[&str], started: &Path) -> std::process::Child {
    use std::os::unix::process::CommandExt as _;
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_braid"))
        .arg("run")
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .process_group(0)
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_mins(1);
    while !started.exists() {
        assert!(std::time::Instant::now() < deadline, "no item started");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child
}

/// Every helper process [`start_sleepy_run`]'s items started has ended.
fn assert_helpers_ended(dir: &Path) {
    for pid in std::fs::read_to_string(dir.join("started"))
        .unwrap()
        .lines()
    {
        assert!(
            crate::workers::ended(pid.parse().unwrap()),
            "helper {pid} outlived braid"
        );
    }
}

/// Ctrl+C as a terminal sends it: to the whole foreground process group.
pub(crate) fn ctrl_c(child: &std::process::Child) {
    let group = rustix::process::Pid::from_raw(child.id().cast_signed()).expect("a process id");
    rustix::process::kill_process_group(group, rustix::process::Signal::INT).expect("signalled");
}

/// Ctrl+C stops a headless run the way the editor's Stop does: the summary says cancelled (exit 1),
/// and the history has the whole run, its stopped invocations recorded as cancelled.
#[test]
fn ctrl_c_stops_the_run_and_keeps_its_record() {
    let dir = tempfile::tempdir().unwrap();
    let child = start_sleepy_run(dir.path(), SLEEP);
    ctrl_c(&child);
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(stdout.contains(" cancelled in "), "{stdout}");
    assert!(stderr.contains("stopping the run"), "{stderr}");

    let runs = braid()
        .args([
            "history",
            "--json",
            dir.path().join("sleepy.braid.json").to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let runs: Value = serde_json::from_slice(&runs.stdout).unwrap();
    assert_eq!(runs[0]["status"], "cancelled", "{runs}");
    assert_eq!(runs[0]["invocations"], 21, "{runs}");
    assert_eq!(runs[0]["counts"]["cancelled"], 20, "{runs}");
}

/// A second Ctrl+C quits at once (exit 130) while the first is still stopping the run, and nothing
/// the run started is left behind: the workers see Braid go and end what their blocks started.
#[test]
fn a_second_ctrl_c_quits_at_once_and_leaves_nothing_running() {
    use std::io::BufRead as _;
    let dir = tempfile::tempdir().unwrap();
    // Its block ignores the stop, so only ending its worker ends what it started.
    let mut child = start_sleepy_run(
        dir.path(),
        "while True:\n        try:\n            time.sleep(100)\n        except BaseException:\n            pass",
    );
    // The first Ctrl+C's stop waits to record the run's end while another connection holds the
    // history's write lock, so it is surely still stopping when the second comes. (Without the lock
    // the stop takes milliseconds, and the second Ctrl+C raced Braid's own exit.)
    let db = dir.path().join(".braid/sleepy.braid.json.history.sqlite");
    let mut lock = rusqlite::Connection::open(&db).unwrap();
    lock.busy_timeout(std::time::Duration::from_secs(10))
        .unwrap();
    let held = lock
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .unwrap();
    ctrl_c(&child);
    // Only once the first is seen: two signals sent together may arrive as one.
    let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut seen = String::new();
    while !seen.contains("stopping the run") {
        assert_ne!(stderr.read_line(&mut seen).unwrap(), 0, "{seen}");
    }
    ctrl_c(&child);
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130), "{seen}");
    drop(held);
    let outcome = history_runs(&dir.path().join("sleepy.braid.json"));
    assert_ne!(outcome[0]["status"], "running", "{outcome}");
    assert_helpers_ended(dir.path());
}

/// The runs a project's history lists, newest first.
pub(crate) fn history_runs(project: &Path) -> Value {
    let out = braid()
        .args(["history", "--json", project.to_str().unwrap()])
        .output()
        .unwrap();
    serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
}

/// A `braid run` killed outright (SIGKILL: no chance to record its end) leaves a run that reads as
/// interrupted, not one "running" forever, with what it recorded until then; and retention can drop it.
#[test]
fn a_killed_braid_leaves_its_run_interrupted_not_running() {
    let dir = tempfile::tempdir().unwrap();
    let project = dir.path().join("sleepy.braid.json");
    let mut child = start_sleepy_run(dir.path(), SLEEP);
    let deadline = std::time::Instant::now() + std::time::Duration::from_mins(1);
    while history_runs(&project)[0]["status"] != "running" {
        assert!(
            std::time::Instant::now() < deadline,
            "the run was not recorded"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let pid = rustix::process::Pid::from_raw(child.id().cast_signed()).expect("a process id");
    rustix::process::kill_process(pid, rustix::process::Signal::KILL).expect("killed");
    child.wait().unwrap();

    let runs = history_runs(&project);
    assert_eq!(runs[0]["status"], "interrupted", "{runs}");
    // Its workers saw it go, and ended what their blocks had started.
    assert_helpers_ended(dir.path());
    let listed = braid()
        .args(["history", project.to_str().unwrap()])
        .output()
        .unwrap();
    let listed = String::from_utf8(listed.stdout).unwrap();
    assert!(listed.contains("interrupted"), "{listed}");
}

/// A block that moves the worker's working folder (`os.chdir`) moves only itself: the invocations after
/// it on the same worker still run in the project's folder.
#[test]
fn a_block_that_changes_folder_does_not_move_the_others() {
    let (dir, path) = fan_out_project(
        "moves",
        40,
        "import os\ndef main(block_input, backpack):\n    if block_input % 10 == 0:\n        os.chdir('/')\n        return 'moved'\n    return open('data.txt').read()\n",
    );
    std::fs::write(dir.path().join("data.txt"), "beside the project").unwrap();
    let (out, _) = run_json(&[path.to_str().unwrap()]);
    assert_eq!(
        out["status"], "succeeded",
        "first failure: {}",
        out["failures"][0]
    );
    let outputs: Vec<&Value> = out["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| &r["output"])
        .collect();
    assert_eq!(outputs.len(), 40);
    for (x, output) in outputs.iter().enumerate() {
        let expected = if x % 10 == 0 {
            "moved"
        } else {
            "beside the project"
        };
        assert_eq!(**output, json!(expected), "item {x}");
    }
}

/// Blocks run in the project file's folder, wherever `braid run` was started: data beside the project
/// is found by its relative path.
#[test]
fn blocks_run_in_the_project_folder() {
    let (dir, path) = write_temp(
        "reads.braid.json",
        &one_block("def main(block_input, backpack):\n    return open('data.txt').read()\n"),
    );
    std::fs::write(dir.path().join("data.txt"), "beside the project").unwrap();
    let out = braid()
        .current_dir("/")
        .args(["run", "--json", "--no-history", path.to_str().unwrap()])
        .output()
        .unwrap();
    let out: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(out["results"][0]["output"], "beside the project", "{out}");
}

/// What goes to the worker's own descriptors (C code writing to them; here `os.write`) is not any one
/// invocation's printed output: `braid run` shows it once as the worker's output, and
/// `RUST_LOG=braid::worker=debug` also logs it as it arrives (all of it, past the run's cap).
#[test]
fn rust_log_shows_what_workers_write_to_their_own_stderr() {
    let (_dir, path) = write_temp(
        "sub.braid.json",
        &one_block(
            "import os, time\ndef main(block_input, backpack):\n    os.write(2, b'from a subprocess\\n')\n    time.sleep(0.3)\n    return 1\n",
        ),
    );
    let stderr = |log: Option<&str>| {
        let mut command = braid();
        command.args(["run", "--no-history", path.to_str().unwrap()]);
        command.env_remove("RUST_LOG");
        if let Some(log) = log {
            command.env("RUST_LOG", log);
        }
        let out = command.output().unwrap();
        assert!(out.status.success());
        String::from_utf8(out.stderr).unwrap()
    };
    let debug = stderr(Some("braid::worker=debug"));
    assert_eq!(debug.matches("from a subprocess").count(), 2, "{debug}");
    let default = stderr(None);
    let shown: Vec<&str> = default
        .lines()
        .filter(|line| line.contains("from a subprocess"))
        .collect();
    assert_eq!(shown.len(), 1, "{default}");
    assert!(shown[0].starts_with("worker "), "{default}");
}

/// `braid run` leaves nothing in the temp folder: its workers' folders of block modules go with them,
/// not when a later worker starts.
#[test]
fn braid_run_leaves_no_folders_in_the_temp_folder() {
    let (_dir, path) = fan_out_project(
        "tidy",
        20,
        "def main(block_input, backpack):\n    return block_input\n",
    );
    let temp = tempfile::tempdir().unwrap();
    braid()
        .env("TMPDIR", temp.path())
        .args(["run", "--no-history"])
        .arg(&path)
        .assert()
        .success();
    let left: Vec<_> = std::fs::read_dir(temp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

/// `braid run` shows what a worker wrote itself (C code writing to the process's stderr) on its own
/// stderr, saying which worker; the block's printed output stays in its record.
#[test]
fn braid_run_shows_worker_output_on_stderr() {
    let (_dir, path) = fan_out_project(
        "c-output",
        2,
        "import os\ndef main(block_input, backpack):\n    os.write(2, f'from C {block_input}\\n'.encode())\n    return block_input\n",
    );
    let out = braid()
        .args(["run", "--no-history"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let stderr = String::from_utf8(out.stderr).unwrap();
    let mut shown: Vec<&str> = stderr
        .lines()
        .filter_map(|line| line.strip_prefix("worker "))
        .map(|line| line.split_once(": ").expect("worker N: text").1)
        .collect();
    shown.sort_unstable();
    assert_eq!(shown, ["from C 0", "from C 1"], "{stderr}");
    assert!(!String::from_utf8(out.stdout).unwrap().contains("from C"));
}

/// Workers keep their Python package's compiled code in Braid's cache folder (as Python keeps a
/// module's): compiling it takes about 8 ms, at every worker's start. A cache file that is damaged is
/// compiled again and replaced; the run does not notice.
#[test]
fn workers_cache_their_compiled_code_and_survive_a_damaged_cache() {
    let cache = tempfile::tempdir().unwrap();
    let (_dir, path) = write_temp(
        "cached.braid.json",
        &one_block("def main(block_input, backpack):\n    return 7\n"),
    );
    let run = || {
        let out = braid()
            .env("XDG_CACHE_HOME", cache.path())
            .args(["run", "--json", "--no-history"])
            .arg(&path)
            .output()
            .unwrap();
        let out: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(out["results"][0]["output"], 7, "{out}");
    };
    run();
    let folder = cache.path().join("braid").join("bytecode");
    let files: Vec<PathBuf> = std::fs::read_dir(&folder)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    let good = std::fs::read(&files[0]).unwrap();
    assert!(good.len() > 10_000);
    std::fs::write(&files[0], b"not marshal data").unwrap();
    run();
    assert_eq!(std::fs::read(&files[0]).unwrap(), good, "compiled again");
}

/// The history keeps a run's log: `braid history <project> <run> --log` prints what its workers wrote
/// themselves, as `braid run` showed it.
#[test]
fn braid_history_prints_a_runs_log() {
    let (_dir, path) = fan_out_project(
        "logged",
        2,
        "import os\ndef main(block_input, backpack):\n    os.write(2, f'from C {block_input}\\n'.encode())\n    return block_input\n",
    );
    braid().arg("run").arg(&path).assert().success();
    let runs: Value = serde_json::from_slice(
        &braid()
            .args(["history", "--json"])
            .arg(&path)
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    let run_id = runs[0]["run_id"].as_str().unwrap().to_owned();
    let out = braid()
        .arg("history")
        .arg(&path)
        .args([&run_id, "--log"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let stdout = String::from_utf8(out.stdout).unwrap();
    let mut texts: Vec<&str> = stdout
        .lines()
        .map(|line| line.split_once(": ").expect("worker N: text").1)
        .collect();
    texts.sort_unstable();
    assert_eq!(texts, ["from C 0", "from C 1"], "{stdout}");
    let json: Value = serde_json::from_slice(
        &braid()
            .arg("history")
            .arg(&path)
            .args([&run_id, "--log", "--json"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    assert_eq!(json.as_array().map(Vec::len), Some(2), "{json}");
    assert_eq!(json[0]["source"], "worker", "{json}");
}

/// Waits for `child` at most a minute; `None` (and the child killed) if it has not ended by then.
fn wait_at_most_a_minute(child: &mut std::process::Child) -> Option<std::process::ExitStatus> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_mins(1);
    while std::time::Instant::now() < deadline {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

/// What reaches a terminal is best-effort, log lines too: with stderr on a full disk (`/dev/full`), or
/// stdout and stderr on a pipe its reader closed after the first line (`2>&1 | head -1`), the log
/// lines `RUST_LOG` asks for are lost and the run ends as usual, with its exit code and its history.
/// A log line that could not be written must not end the task that logged it (here a worker's reader,
/// logging what the block wrote to the worker's stderr): the run would never end.
#[test]
fn a_run_ends_and_is_recorded_when_its_output_cannot_be_written() {
    let (dir, path) = write_temp(
        "loud.braid.json",
        &one_block(
            "import os\ndef main(block_input, backpack):\n    for i in range(50):\n        os.write(2, b'to stderr %d\\n' % i)\n    return 42\n",
        ),
    );
    let braid_run = || {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_braid"));
        command
            .args(["run", path.to_str().unwrap()])
            .env("RUST_LOG", "braid::worker=debug")
            .current_dir(dir.path());
        command
    };

    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .unwrap();
    let mut child = braid_run()
        .arg("--json")
        .stdout(std::process::Stdio::piped())
        .stderr(full)
        .spawn()
        .unwrap();
    // The summary is far smaller than a pipe's buffer: it is read once the run has ended.
    let status = wait_at_most_a_minute(&mut child).expect("the run ends with stderr full");
    assert_eq!(status.code(), Some(0));
    let mut stdout = String::new();
    std::io::Read::read_to_string(&mut child.stdout.take().unwrap(), &mut stdout).unwrap();
    let summary: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(summary["results"][0]["output"], 42, "{summary}");

    // `2>&1 | head -1`: one pipe for both, closed after the first line.
    let (reader, writer) = std::io::pipe().unwrap();
    let mut child = braid_run()
        .stdout(writer.try_clone().unwrap())
        .stderr(writer)
        .spawn()
        .unwrap();
    let mut first = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(reader), &mut first).unwrap();
    assert!(!first.is_empty());
    let status = wait_at_most_a_minute(&mut child).expect("the run ends with its pipe closed");
    assert_eq!(status.code(), Some(0));

    let runs = history_runs(&path);
    let statuses: Vec<&Value> = runs
        .as_array()
        .unwrap()
        .iter()
        .map(|r| &r["status"])
        .collect();
    assert_eq!(statuses, ["succeeded", "succeeded"], "{runs}");
}

/// Code Python can't compile except by raising something other than `SyntaxError` (nesting past its
/// parser's limits, a name with a NUL in it) is that block's compile problem: `braid validate` names the
/// block and exits 1, as for any code that does not compile. Before, the worker died at load, three
/// times, and validate exited 2 with "the Python worker keeps dying at start".
#[test]
fn code_python_cannot_compile_is_that_blocks_problem() {
    let minus = format!(
        "def main(block_input, backpack):\n    return {}1\n",
        "-".repeat(100_000)
    );
    let sum = format!(
        "def main(block_input, backpack):\n    return {}\n",
        vec!["1"; 500_000].join("+")
    );
    let project = json!({
        "format_version": 1, "name": "uncompilable",
        "blocks": [
            code_block("Minus", &minus),
            code_block("Sum", &sum),
            {"id": "n", "name": "Nul\u{0}name", "kind": "code", "code": "def main(block_input, backpack):\n    return 1\n"},
        ],
        "transitions": []
    });
    let (_dir, path) = write_temp("uncompilable.braid.json", &project.to_string());
    let (code, out) = validate(&path);
    assert_eq!(code, Some(1), "{out}");
    for expected in [
        "\"Minus\": Python can't compile it: MemoryError: the code is nested deeper than Python's parser can go",
        "\"Sum\": Python can't compile it: RecursionError: maximum recursion depth exceeded during compilation",
        "\"Nul\\0name\": Python can't compile it: ValueError: embedded null character",
    ] {
        assert!(out.contains(expected), "{expected:?} not in {out}");
    }
}

/// A worker whose Braid is killed outright ends within a second or two even while a block holds
/// Python's interpreter lock in C code (a runaway regular expression), which kept its own Python from
/// noticing: before, it went on at full CPU for as long as the expression ran.
#[test]
fn a_worker_ends_with_a_killed_braid_even_inside_a_c_call() {
    use std::os::unix::process::CommandExt as _;
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("worker-pid");
    let code = format!(
        "import os, re\ndef main(block_input, backpack):\n    with open({pid_file:?}, 'w') as f:\n        f.write(str(os.getpid()))\n    return re.match(r'(a+)+$', 'a' * 40 + 'b')\n"
    );
    let (_project_dir, path) = write_temp("regex.braid.json", &one_block(&code));
    let mut braid = std::process::Command::new(env!("CARGO_BIN_EXE_braid"))
        .args(["run", "--no-history", path.to_str().unwrap()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .process_group(0)
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_mins(1);
    let worker: u32 = loop {
        if let Some(pid) = std::fs::read_to_string(&pid_file)
            .ok()
            .and_then(|text| text.parse().ok())
        {
            break pid;
        }
        assert!(std::time::Instant::now() < deadline, "the block never ran");
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    // Inside the match by now.
    std::thread::sleep(std::time::Duration::from_millis(300));
    braid.kill().unwrap();
    braid.wait().unwrap();
    let killed = std::time::Instant::now();
    let gone = crate::workers::ended(worker);
    let waited = killed.elapsed();
    if !gone {
        let _ = rustix::process::kill_process(
            rustix::process::Pid::from_raw(worker.cast_signed()).unwrap(),
            rustix::process::Signal::KILL,
        );
    }
    assert!(gone, "the worker {worker} outlived its braid");
    assert!(
        waited < std::time::Duration::from_secs(2),
        "the worker took {waited:?} to end"
    );
}

/// Cities fanned out to Work by id, labelled by name, and fanned in to Collect; `work` is Work's code.
fn cities_project(dir: &Path, work: &str) -> PathBuf {
    let project = json!({
        "format_version": 1, "name": "cities",
        "blocks": [
            code_block("Gen", "def main(block_input, backpack):\n    return [{'id': 'par', 'city': 'Paris'}, {'id': 'osl', 'city': 'Oslo'}, {'id': 'rom', 'city': 'Rome'}]\n"),
            code_block("Work", work),
            code_block("Collect", "def main(block_input, backpack):\n    return block_input\n"),
        ],
        "transitions": [
            {"id": "out", "from": "Gen", "to": "Work", "type": "fan-out",
             "item_key": "item['id']", "item_label": "item['city']"},
            {"id": "in", "from": "Work", "to": "Collect", "type": "fan-in"}
        ]
    });
    let path = dir.join("cities.braid.json");
    std::fs::write(&path, project.to_string()).unwrap();
    path
}

/// A cities project whose Work block is `work`, run once and failed: its path and the run's id.
fn failed_cities_run(dir: &Path, work: &str) -> (PathBuf, String) {
    let path = cities_project(dir, work);
    let out = braid()
        .args(["run", path.to_str().unwrap(), "--json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let first: Value = serde_json::from_slice(&out.stdout).unwrap();
    let run = first["run_id"].as_str().unwrap().to_owned();
    (path, run)
}

/// A failed item is named by its key and label where the run's failures are listed: the JSON summary
/// and the printed one.
#[test]
fn a_runs_failures_name_the_failed_items_key_and_label() {
    let dir = tempfile::tempdir().unwrap();
    let broken = "def main(block_input, backpack):\n    if block_input['id'] == 'osl':\n        raise KeyError('city')\n    return block_input['city']\n";
    let path = cities_project(dir.path(), broken);
    let out = braid()
        .args(["run", path.to_str().unwrap(), "--json", "--no-history"])
        .output()
        .unwrap();
    let summary: Value = serde_json::from_slice(&out.stdout).unwrap();
    let failure = &summary["failures"][0];
    assert_eq!(
        (
            &failure["block"],
            &failure["item_path"],
            &failure["item_key"],
            &failure["item_label"]
        ),
        (&json!("Work"), &json!([1]), &json!("osl"), &json!("Oslo"))
    );
    let out = braid()
        .args(["run", path.to_str().unwrap(), "--no-history"])
        .output()
        .unwrap();
    let printed = String::from_utf8(out.stdout).unwrap();
    assert!(
        printed.contains("  Work [1] · Oslo (exception): KeyError: 'city'"),
        "{printed}"
    );
}

/// `braid history` names each item by key and label and finds one by `--key`; `braid run --redrive`
/// runs only the failed item again with the block's new code and completes the fan-in in item order,
/// a run of its own that names the run it continues.
#[test]
fn history_shows_keys_and_labels_and_a_headless_redrive_runs_only_the_failed_item() {
    let dir = tempfile::tempdir().unwrap();
    let broken = "def main(block_input, backpack):\n    if block_input['id'] == 'osl':\n        raise KeyError('city')\n    return block_input['city'] + ' 1'\n";
    let (path, run) = failed_cities_run(dir.path(), broken);
    let project = path.to_str().unwrap();

    let listed = braid().args(["history", project, &run]).output().unwrap();
    let listed = String::from_utf8(listed.stdout).unwrap();
    let work: Vec<&str> = listed.lines().filter(|l| l.contains(" Work ")).collect();
    assert_eq!(work.len(), 3, "{listed}");
    assert!(work[0].contains("key \"par\" Paris"), "{listed}");
    assert!(
        work[1].contains("key \"osl\" Oslo") && work[1].contains("KeyError: 'city'"),
        "{listed}"
    );
    let found = braid()
        .args(["history", project, &run, "--key", "rom"])
        .output()
        .unwrap();
    let found = String::from_utf8(found.stdout).unwrap();
    assert_eq!(
        found.lines().filter(|l| l.starts_with('#')).count(),
        1,
        "{found}"
    );
    assert!(found.contains("key \"rom\" Rome"), "{found}");

    let fixed = "def main(block_input, backpack):\n    return block_input['city'] + ' 2'\n";
    cities_project(dir.path(), fixed);
    let out = braid()
        .args(["run", project, "--redrive", &run[..8], "--json"])
        .output()
        .unwrap();
    let again: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(0), "{again}");
    assert_eq!(again["redrive_of"], json!(run));
    assert_eq!(
        again["results"][0]["output"],
        json!(["Paris 1", "Oslo 2", "Rome 1"])
    );
    let redrive = again["run_id"].as_str().unwrap();
    let listed = braid()
        .args(["history", project, redrive, "--block", "Work"])
        .output()
        .unwrap();
    let listed = String::from_utf8(listed.stdout).unwrap();
    let carried: Vec<bool> = listed
        .lines()
        .filter(|l| l.starts_with('#'))
        .map(|l| l.contains("(carried over)"))
        .collect();
    assert_eq!(carried, [true, false, true], "{listed}");
    let runs = history_runs(&path);
    assert_eq!(runs[0]["redrive_of"], json!(run), "{runs}");
}

/// A redrive goes on through the transitions the run fired, by id: when the fan-out was drawn anew since
/// (another id), it would fire nothing and end "succeeded" with no results. It is refused instead,
/// naming the run and the block it went on from.
#[test]
fn a_redrive_through_a_transition_drawn_anew_is_refused_naming_the_block() {
    let dir = tempfile::tempdir().unwrap();
    let broken = "def main(block_input, backpack):\n    if block_input['id'] == 'osl':\n        raise KeyError('city')\n    return block_input['city']\n";
    let (path, run) = failed_cities_run(dir.path(), broken);
    let project = path.to_str().unwrap();
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("\"id\":\"out\"", "\"id\":\"out-drawn-again\"");
    assert!(text.contains("out-drawn-again"));
    std::fs::write(&path, text).unwrap();
    let out = braid()
        .args(["run", project, "--redrive", &run, "--json"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_ne!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert!(
        format!("{stdout}{stderr}").contains(&format!(
            "run {run} went on from block \"Gen\" through transitions that are no longer in the \
             project, so it can't be redriven"
        )),
        "{stdout}{stderr}"
    );
}
