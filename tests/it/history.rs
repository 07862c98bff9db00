//! Run history through the real runtime (its blocks run by a script, or by Python through `braid run`):
//! record a run with a failing item, read it back (as the Block Executions panel and `braid history`
//! do), after a "restart" too.

use std::path::{Path, PathBuf};

use assert_cmd::Command;
use braid::model::TransitionKind;
use braid::run::{InvocationFilter, InvocationStatus, RowOrder, RunId, RunStatus};
use braid::runtime::history::History;
use braid::runtime::scripted::{Reply, Script};
use braid::runtime::{RunRequest, RuntimeHandle, RuntimeRequest};
use serde_json::{Value, json};

use crate::support::{Builder, Outcome, run_request_on, scripted_runtime};

/// Gen fans its input out to Work, which doubles numbers and fails on anything else; Collect fans in.
fn pipeline() -> braid::model::Project {
    Builder::new()
        .block("Gen", "def main(block_input, backpack):\n    return block_input\n")
        .block(
            "Work",
            "def main(block_input, backpack):\n    print('working on', block_input)\n    if not isinstance(block_input, int):\n        raise ValueError(f'bad row {block_input!r}')\n    return block_input * 2\n",
        )
        .block("Collect", "def main(block_input, backpack):\n    return block_input\n")
        .link("Gen", "Work", TransitionKind::FanOut)
        .link("Work", "Collect", TransitionKind::FanIn)
        .build()
}

/// [`pipeline`]'s blocks as a script: Work prints, doubles numbers and raises on anything else.
fn pipeline_script() -> Script {
    Script::new().block("Work", |call| {
        let shown = call
            .input
            .as_str()
            .map_or_else(|| call.input.to_string(), str::to_owned);
        let printed = format!("working on {shown}\n");
        if let Some(x) = call.input.as_i64() {
            return Reply::returns(json!(x * 2)).printing(&printed);
        }
        let message = format!("bad row {}", python_repr(&call.input));
        let traceback = format!(
            "Traceback (most recent call last):\n  File \"Work\", line 4, in main\nValueError: {message}\n"
        );
        Reply::raises("ValueError", &message)
            .with_traceback(&traceback, Some(4))
            .printing(&printed)
    })
}

/// How Python's `repr` shows a string (the only non-number the tests send).
fn python_repr(value: &Value) -> String {
    value
        .as_str()
        .map_or_else(|| value.to_string(), |text| format!("'{text}'"))
}

fn run_recorded(runtime: &mut RuntimeHandle, history: &Path, input: Value) -> Outcome {
    let mut request = RunRequest::new(RunId::new_random(), pipeline());
    request.input = input;
    request.history = Some(history.to_owned());
    run_request_on(runtime, request, |_, _, _| {})
}

fn db_in(dir: &tempfile::TempDir) -> PathBuf {
    History::path_for_project(&dir.path().join("pipeline.braid.json"))
}

#[test]
fn a_failed_item_can_be_found_read_and_followed_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_in(&dir);
    let mut runtime = scripted_runtime(&pipeline_script());
    let failed = run_recorded(&mut runtime, &path, json!([1, 2, 3, "oops", 5]));
    assert_eq!(failed.summary.status, RunStatus::Failed);
    let good = run_recorded(&mut runtime, &path, json!([10, 20, 30]));
    assert_eq!(good.summary.status, RunStatus::Succeeded);

    // Read right after RunFinished, without waiting: the engine held it back until the run was written.
    let history = History::open(&path).unwrap();
    for outcome in [&failed, &good] {
        let run = &outcome.summary.run_id;
        let rows = history
            .invocation_rows(run, &InvocationFilter::default())
            .unwrap();
        assert_eq!(rows.len(), outcome.records.len());
        for record in &outcome.records {
            assert_eq!(
                history.invocation(run, record.id).unwrap().as_ref(),
                Some(record),
                "the stored record is the record the runtime sent"
            );
        }
    }
    drop(history);
    drop(runtime);

    // "Restart": a fresh connection to the same file finds both runs, newest first.
    let history = History::open(&path).unwrap();
    let runs = history.runs().unwrap();
    assert_eq!(
        runs.iter().map(|r| &r.run_id).collect::<Vec<_>>(),
        [&good.summary.run_id, &failed.summary.run_id]
    );
    let failed_row = &runs[1];
    assert_eq!(failed_row.status, RunStatus::Failed);
    assert_eq!(failed_row.invocations, 6); // Gen + 5 × Work; the fan-in never fired.
    assert_eq!(
        (failed_row.counts.succeeded, failed_row.counts.failed),
        (5, 1)
    );
    assert_eq!(runs[0].invocations, 5);
    assert_eq!(runs[0].status, RunStatus::Succeeded);

    // Find the failure by status, by block and by item path: always the same invocation.
    let run = &failed.summary.run_id;
    let work = failed.records_of("Work");
    let by_status = history
        .invocation_rows(
            run,
            &InvocationFilter {
                statuses: vec![InvocationStatus::Exception],
                ..InvocationFilter::default()
            },
        )
        .unwrap();
    assert_eq!(by_status.len(), 1);
    let broken = &by_status[0];
    assert_eq!(&*broken.block_name, "Work");
    assert_eq!(broken.item_path[..], [3]);
    assert_eq!(broken.input_preview, "\"oops\"");
    assert_eq!(
        broken.error_summary.as_deref(),
        Some("ValueError: bad row 'oops'")
    );
    let by_block = history
        .invocation_rows(
            run,
            &InvocationFilter {
                block: Some(work[0].block_id.clone()),
                order: RowOrder::DurationDescending,
                ..InvocationFilter::default()
            },
        )
        .unwrap();
    assert_eq!(by_block.len(), 5);
    let by_item = history
        .invocation_rows(
            run,
            &InvocationFilter {
                item_path_prefix: Some(vec![3]),
                ..InvocationFilter::default()
            },
        )
        .unwrap();
    assert_eq!(
        by_item.iter().map(|r| r.id).collect::<Vec<_>>(),
        [broken.id]
    );
    let by_text = history
        .invocation_rows(
            run,
            &InvocationFilter {
                text: Some("BAD ROW".into()),
                ..InvocationFilter::default()
            },
        )
        .unwrap();
    assert_eq!(
        by_text.iter().map(|r| r.id).collect::<Vec<_>>(),
        [broken.id]
    );

    // What it got, what it printed, why it failed.
    let record = history.invocation(run, broken.id).unwrap().unwrap();
    assert_eq!(record.input, json!("oops"));
    assert_eq!(*record.backpack_in, json!({}));
    assert_eq!(record.stdout, "working on oops\n");
    let error = record.error.unwrap();
    assert_eq!(error.kind, "ValueError");
    assert!(error.traceback.contains("bad row"), "{}", error.traceback);
    assert_eq!(error.line, Some(4));

    // Back to the fan-out, forward from it.
    let gen_id = failed.records_of("Gen")[0].id;
    assert_eq!(record.parents[..], [gen_id]);
    let mut fanned: Vec<u64> = work.iter().map(|r| r.id).collect();
    fanned.sort_unstable();
    assert_eq!(history.children(run, gen_id).unwrap(), fanned);
    assert!(history.children(run, broken.id).unwrap().is_empty());

    // In the good run, every Work invocation leads to the one fan-in, whose parents are all of them.
    let run = &good.summary.run_id;
    let collect = good.records_of("Collect")[0];
    for work in good.records_of("Work") {
        assert_eq!(history.children(run, work.id).unwrap(), [collect.id]);
    }
    let stored = history.invocation(run, collect.id).unwrap().unwrap();
    assert_eq!(stored.parents.len(), 3);
    assert_eq!(stored.input, json!([20, 40, 60]));

    history.delete_run(&failed.summary.run_id).unwrap();
    assert_eq!(History::open(&path).unwrap().runs().unwrap().len(), 1);
}

#[test]
fn a_history_that_cannot_be_opened_refuses_the_run_with_its_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_in(&dir);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, "not a database ".repeat(1000)).unwrap();
    let mut runtime = scripted_runtime(&pipeline_script());
    let outcome = run_recorded(&mut runtime, &path, json!([1]));
    let message = outcome.refused.expect("refused");
    assert!(message.contains("can't record the run"), "{message}");
    assert!(message.contains(&path.display().to_string()), "{message}");
}

#[test]
fn a_cancelled_run_is_recorded_as_cancelled() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_in(&dir);
    let project = Builder::new()
        .scripted(&["Gen", "Slow"])
        .link("Gen", "Slow", TransitionKind::FanOut)
        .build();
    let script = Script::new()
        .block("Gen", |_| {
            Reply::returns(json!((0..50).collect::<Vec<_>>()))
        })
        .block("Slow", |call| Reply::returns(call.input.clone()).held());
    let mut runtime = scripted_runtime(&script);
    let mut request = RunRequest::new(RunId::new_random(), project);
    request.history = Some(path.clone());
    request.concurrency = Some(2);
    let mut cancelled = false;
    let outcome = run_request_on(&mut runtime, request, |runtime, run_id, event| {
        if !cancelled && matches!(event, braid::runtime::RuntimeEvent::Invocations { .. }) {
            cancelled = true;
            script.wait_held(2);
            runtime.send(RuntimeRequest::Cancel(run_id.clone()));
        }
    });
    assert_eq!(outcome.summary.status, RunStatus::Cancelled);
    let history = History::open(&path).unwrap();
    let run = history.run(&outcome.summary.run_id).unwrap().unwrap();
    assert_eq!(run.status, RunStatus::Cancelled);
    assert_eq!(run.invocations, 51);
    assert_eq!(outcome.records.len(), 51);
    assert_eq!((run.counts.succeeded, run.counts.cancelled), (1, 50));
}

/// The runtime stopped mid-run (the editor closed): the run is recorded as cancelled, with every
/// invocation, instead of staying "running" in the history forever.
#[test]
fn a_run_going_when_the_runtime_stops_is_recorded_as_cancelled() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_in(&dir);
    let project = Builder::new()
        .scripted(&["Gen", "Slow"])
        .link("Gen", "Slow", TransitionKind::FanOut)
        .build();
    let script = Script::new()
        .block("Gen", |_| Reply::returns(json!((0..8).collect::<Vec<_>>())))
        .block("Slow", |call| Reply::returns(call.input.clone()).held());
    let runtime = scripted_runtime(&script);
    let mut request = RunRequest::new(RunId::new_random(), project);
    let run_id = request.run_id.clone();
    request.history = Some(path.clone());
    request.concurrency = Some(2);
    runtime.send(RuntimeRequest::Run(Box::new(request)));
    script.wait_held(2);
    runtime.shutdown(std::time::Duration::from_secs(30));

    let history = History::open(&path).unwrap();
    let run = history.run(&run_id).unwrap().expect("the run is recorded");
    assert_eq!(run.status, RunStatus::Cancelled);
    assert_eq!(run.invocations, 9, "Gen and all 8 items");
    assert_eq!(run.counts.cancelled, 8);
}

// `braid history` as a user calls it.

fn braid() -> Command {
    Command::cargo_bin("braid").unwrap()
}

/// Writes the pipeline to a project file in a fresh folder and runs it with `braid run` (recording).
fn project_with_a_failed_run() -> (tempfile::TempDir, PathBuf, String) {
    let dir = tempfile::tempdir().unwrap();
    let project = dir.path().join("pipeline.braid.json");
    braid::model::format::save_project(&project, &pipeline()).unwrap();
    let out = braid()
        .args(["run", project.to_str().unwrap(), "--json", "--input"])
        .arg(r#"[1, 2, 3, "oops"]"#)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let summary: Value = serde_json::from_slice(&out.stdout).unwrap();
    let run_id = summary["run_id"].as_str().unwrap().to_owned();
    (dir, project, run_id)
}

/// `braid run` closes its history before it exits: the database is whole, with no write-ahead log
/// left beside it to grow from run to run (and for the next open to scan).
#[test]
fn braid_run_leaves_its_history_closed() {
    let (dir, project, run_id) = project_with_a_failed_run();
    let history = dir.path().join(".braid");
    let mut files: Vec<String> = std::fs::read_dir(&history)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    // The `.gitignore` keeps the folder out of the user's repository.
    assert_eq!(
        files,
        [".gitignore", "pipeline.braid.json.history.sqlite"],
        "{files:?}"
    );
    let runs = history_json(&[project.to_str().unwrap()]);
    assert_eq!(runs[0]["run_id"], run_id);
}

/// A runtime that moves on to another project's history closes the one it left: its WAL is merged
/// then, not when the editor exits.
#[test]
fn moving_to_another_projects_history_closes_the_last_one() {
    let (first, second) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (first_db, second_db) = (db_in(&first), db_in(&second));
    let wal = |db: &Path| db.with_extension("sqlite-wal");
    let mut runtime = scripted_runtime(&pipeline_script());
    run_recorded(&mut runtime, &first_db, json!([1, 2]));
    assert!(wal(&first_db).exists(), "the first database is open");
    run_recorded(&mut runtime, &second_db, json!([3]));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while wal(&first_db).exists() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert!(!wal(&first_db).exists(), "the first database was closed");
    assert!(
        wal(&second_db).exists(),
        "the second stays open for the next run"
    );
    assert_eq!(History::open(&first_db).unwrap().runs().unwrap().len(), 1);
    // And back again: the first reopens.
    run_recorded(&mut runtime, &first_db, json!([4]));
    runtime.shutdown(std::time::Duration::from_secs(10));
    assert_eq!(History::open(&first_db).unwrap().runs().unwrap().len(), 2);
    assert_eq!(History::open(&second_db).unwrap().runs().unwrap().len(), 1);
}

fn history_json(args: &[&str]) -> Value {
    let out = braid()
        .arg("history")
        .args(args)
        .arg("--json")
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn braid_run_records_and_braid_history_lists_and_filters() {
    let (_dir, project, run_id) = project_with_a_failed_run();
    let p = project.to_str().unwrap();
    // A second run, unrecorded.
    braid()
        .args(["run", p, "--no-history", "--input", "[1]"])
        .assert()
        .success();

    let runs = history_json(&[p]);
    assert_eq!(runs.as_array().unwrap().len(), 1, "{runs}");
    assert_eq!(runs[0]["run_id"], run_id);
    assert_eq!(runs[0]["status"], "failed");
    assert_eq!(runs[0]["invocations"], 5);
    assert_eq!(runs[0]["counts"]["failed"], 1);

    let text = braid().args(["history", p]).output().unwrap();
    let text = String::from_utf8(text.stdout).unwrap();
    assert!(text.starts_with(&run_id), "{text}");
    assert!(text.contains("failed"), "{text}");

    // Every record, whole.
    let all = history_json(&[p, &run_id]);
    assert_eq!(all.as_array().unwrap().len(), 5);
    // The failed one, three ways; a run id prefix is enough.
    for filter in [
        &["--status", "exception"][..],
        &["--item", "3"],
        &["--block", "Work", "--text", "oops"],
    ] {
        let mut args = vec![p, &run_id[..8]];
        args.extend_from_slice(filter);
        let found = history_json(&args);
        assert_eq!(found.as_array().unwrap().len(), 1, "{filter:?}: {found}");
        assert_eq!(found[0]["input"], "oops");
        assert_eq!(found[0]["item_path"], json!([3]));
        assert_eq!(found[0]["status"], "exception");
        assert!(
            found[0]["error"]["traceback"]
                .as_str()
                .unwrap()
                .contains("ValueError: bad row 'oops'")
        );
    }
    let nested = history_json(&[p, &run_id, "--item", "3,7"]);
    assert_eq!(nested, json!([]));
    let ok = history_json(&[p, &run_id, "--status", "succeeded,exception"]);
    assert_eq!(ok.as_array().unwrap().len(), 5);
}

#[test]
fn braid_history_errors_are_one_line_and_exit_2() {
    let (_dir, project, _) = project_with_a_failed_run();
    let p = project.to_str().unwrap();
    for (args, expected) in [
        (vec![p, "no-such-run"], "no run no-such-run"),
        (
            vec!["/nonexistent/x.braid.json"],
            "/nonexistent/x.braid.json",
        ),
    ] {
        let out = braid().arg("history").args(&args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.contains(expected), "{stderr}");
        assert!(out.stdout.is_empty());
    }
    let out = braid()
        .args(["history", p, "x", "--item", "three"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));

    // A project that never ran: no runs, and nothing is created by looking.
    let dir = tempfile::tempdir().unwrap();
    let fresh = dir.path().join("fresh.braid.json");
    braid::model::format::save_project(&fresh, &pipeline()).unwrap();
    assert_eq!(history_json(&[fresh.to_str().unwrap()]), json!([]));
    assert!(!dir.path().join(".braid").exists());
}

#[test]
fn a_history_a_pre_release_braid_wrote_is_refused_naming_the_file_and_runs_go_on_unrecorded() {
    // Format 1 (one row per invocation), which only pre-release builds wrote.
    let dir = tempfile::tempdir().unwrap();
    let project = dir.path().join("pipeline.braid.json");
    braid::model::format::save_project(&project, &pipeline()).unwrap();
    let db = History::path_for_project(&project);
    std::fs::create_dir_all(db.parent().unwrap()).unwrap();
    rusqlite::Connection::open(&db)
        .unwrap()
        .execute_batch(
            "CREATE TABLE invocations (id INTEGER PRIMARY KEY); PRAGMA user_version = 1;",
        )
        .unwrap();
    let refusal = format!(
        "history database {}: written by a pre-release Braid (history format 1; this Braid reads 2); \
         move the file away to start a new history",
        db.display()
    );
    let p = project.to_str().unwrap();
    let out = braid().args(["history", p]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        format!("braid: {refusal}\n")
    );
    let out = braid().args(["run", p, "--input", "[1]"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(&format!(
            "braid: warning: the run will not be recorded: {refusal}"
        )),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
