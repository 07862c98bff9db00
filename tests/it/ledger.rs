//! A fan-out you can account for, on real pipelines: items named by key and label from Python, the
//! ledger's counts after a worker is killed, retries with their attempt records, fan-ins with a failure
//! budget, and a redrive that runs only the failed items. (The rules themselves are unit tested in the
//! scheduler, without Python.)

use std::path::{Path, PathBuf};
use std::sync::Arc;

use braid::model::TransitionKind::{FanIn, FanOut};
use braid::model::{Project, Retries, Tolerance};
use braid::run::{BlockCounts, InvocationStatus, RunId, RunStatus};
use braid::runtime::history::History;
use braid::runtime::redrive::Redrive;
use braid::runtime::scripted::{Reply, Script};
use braid::runtime::{RunRequest, RuntimeEvent, RuntimeHandle};
use serde_json::{Value, json};

use crate::support::{Builder, Outcome, run_request_on, runtime_config, scripted_runtime};

/// Cities, each an item with an id and a name.
const CITIES: &str = "def main(block_input, backpack):\n    return [\n        {'id': 'par', 'city': 'Paris'},\n        {'id': 'osl', 'city': 'Oslo'},\n        {'id': 'rom', 'city': 'Rome'},\n        {'id': 'lim', 'city': 'Lima'},\n    ]\n";

/// `Gen` returns the cities, fanned out to `Work` by id (labelled by name), fanned in to `Collect`,
/// which returns what it got.
fn cities(work: &str) -> Builder {
    cities_into(
        work,
        "def main(block_input, backpack):\n    return block_input\n",
    )
}

fn cities_into(work: &str, collect: &str) -> Builder {
    Builder::new()
        .block("Gen", CITIES)
        .block("Work", work)
        .block("Collect", collect)
        .link("Gen", "Work", FanOut)
        .link("Work", "Collect", FanIn)
        .item_names("Gen", "Work", "item['id']", "item['city']")
}

/// Runs `project` on `runtime`, recorded into `history` when given; keeps the last counts it saw.
fn run_counted(
    runtime: &mut RuntimeHandle,
    project: Project,
    history: Option<&Path>,
    limit: Option<u32>,
) -> (Outcome, Vec<(String, BlockCounts)>) {
    let names: std::collections::HashMap<_, _> = project
        .blocks
        .iter()
        .map(|b| (b.id.clone(), b.name.clone()))
        .collect();
    let mut request = RunRequest::new(RunId::new_random(), project);
    request.concurrency = limit;
    request.history = history.map(Path::to_path_buf);
    let mut counts = Vec::new();
    let out = run_request_on(runtime, request, |_, _, event| {
        if let RuntimeEvent::Progress { counts: c, .. } = event {
            counts = c.iter().map(|(id, c)| (names[id].clone(), *c)).collect();
        }
    });
    (out, counts)
}

fn counts_of<'a>(counts: &'a [(String, BlockCounts)], block: &str) -> &'a BlockCounts {
    &counts.iter().find(|(name, _)| name == block).unwrap().1
}

fn python_runtime() -> RuntimeHandle {
    RuntimeHandle::start(runtime_config()).expect("runtime starts")
}

/// (key path, label, status) of each of a block's records, in id order.
fn items(out: &Outcome, block: &str) -> Vec<(String, String, InvocationStatus)> {
    out.records_of(block)
        .iter()
        .map(|r| {
            (
                r.item_key_path().join("/"),
                r.item_label().unwrap_or_default().to_owned(),
                r.status,
            )
        })
        .collect()
}

#[test]
fn python_names_the_items_and_their_labels_stay_through_a_failure_and_a_stop() {
    let work = "import time\ndef main(block_input, backpack):\n    if block_input['id'] == 'osl':\n        raise KeyError('city')\n    time.sleep(0.3)\n    return block_input['city'].upper()\n";
    let mut runtime = python_runtime();
    let request = RunRequest {
        concurrency: Some(1),
        ..RunRequest::new(RunId::new_random(), cities(work).build())
    };
    let mut stopped = false;
    let out = run_request_on(&mut runtime, request, |runtime, run_id, event| {
        // Stop once Paris and Oslo are done: Rome is running, Lima still queued.
        if let RuntimeEvent::Invocations { records, .. } = event
            && !stopped
            && records.iter().any(|r| r.item_label() == Some("Oslo"))
        {
            stopped = true;
            runtime.send(braid::runtime::RuntimeRequest::Cancel(run_id.clone()));
        }
    });
    assert_eq!(
        items(&out, "Work"),
        [
            ("par".into(), "Paris".into(), InvocationStatus::Succeeded),
            ("osl".into(), "Oslo".into(), InvocationStatus::Exception),
            ("rom".into(), "Rome".into(), InvocationStatus::Cancelled),
            ("lim".into(), "Lima".into(), InvocationStatus::Cancelled),
        ]
    );
    let gen_record = &out.records_of("Gen")[0];
    assert_eq!(gen_record.fanned_out.len(), 1);
    assert_eq!(gen_record.fanned_out[0].names.label(3), Some("Lima"));
}

/// `Gen` returns `items` (Python), fanned out to `Work` keyed by `key`.
fn keyed(items: &str, key: &str) -> Project {
    Builder::new()
        .block(
            "Gen",
            &format!("def main(block_input, backpack):\n    return {items}\n"),
        )
        .block("Work", "def main(block_input, backpack):\n    return 1\n")
        .link("Gen", "Work", FanOut)
        .item_names("Gen", "Work", key, "")
        .build()
}

#[test]
fn keys_that_are_not_text_become_their_json_and_a_duplicate_fails_the_source() {
    let numbered = keyed("[{'n': 7}, {'n': [1, 'a']}, {'n': None}]", "item['n']");
    let mut runtime = python_runtime();
    let (out, _) = run_counted(&mut runtime, numbered, None, None);
    let keys: Vec<String> = out
        .records_of("Work")
        .iter()
        .map(|r| r.item_key_path().join("/"))
        .collect();
    assert_eq!(keys, ["7", "[1,\"a\"]", "null"]);

    let duplicated = keyed("['a', 'b', 'a', 'c', 'b']", "item");
    let (out, _) = run_counted(&mut runtime, duplicated, None, None);
    assert!(out.records_of("Work").is_empty(), "no item runs");
    let error = out.records_of("Gen")[0].error.clone().expect("it failed");
    assert_eq!(
        error.summary(),
        "DuplicateKeyError: the fan-out to \"Work\" gives more than one item the same key: \"a\" (items 0, 2), \"b\" (items 1, 4)"
    );
    assert_eq!(out.summary.status, RunStatus::Failed);
}

#[test]
fn a_key_expression_that_raises_fails_the_source_naming_the_item() {
    let project = cities("def main(block_input, backpack):\n    return 1\n")
        .item_names("Gen", "Work", "item['code']", "")
        .build();
    let mut runtime = python_runtime();
    let (out, _) = run_counted(&mut runtime, project, None, None);
    let error = out.records_of("Gen")[0].error.clone().expect("it failed");
    assert_eq!(error.kind, "KeyError");
    assert_eq!(
        error.message,
        "'code' (in the item key expression of the fan-out to 'Work', item 0)"
    );
}

#[test]
fn a_key_expression_that_does_not_compile_refuses_the_run_naming_its_transition() {
    let project = cities("def main(block_input, backpack):\n    return 1\n")
        .item_names("Gen", "Work", "item[", "")
        .build();
    let fan_out = project.transitions[0].id.clone();
    let mut runtime = python_runtime();
    let mut errors = Vec::new();
    let request = RunRequest::new(RunId::new_random(), project);
    let out = run_request_on(&mut runtime, request, |_, _, event| {
        if let RuntimeEvent::RunRefused { compile_errors, .. } = event {
            errors.clone_from(compile_errors);
        }
    });
    assert!(out.refused.is_some());
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].what, fan_out.0.to_string());
    assert!(
        errors[0]
            .message
            .starts_with("item key expression 'item[': SyntaxError"),
        "{errors:?}"
    );
}

#[test]
fn a_worker_killed_mid_run_leaves_counts_that_add_up_and_a_retry_records_each_attempt() {
    let dir = tempfile::tempdir().unwrap();
    let flag = dir.path().join("killed-once");
    // Rome kills its worker outright (kill -9) the first two times it runs: once in the pool's
    // own run-again, once more alone (which tells the pool it is the culprit); its retry goes on.
    let work = format!(
        "import os, signal, time\ndef main(block_input, backpack):\n    time.sleep(0.05)\n    if block_input['id'] == 'rom':\n        with open({flag:?}, 'a') as f:\n            f.write('x')\n        if os.path.getsize({flag:?}) <= 2:\n            os.kill(os.getpid(), signal.SIGKILL)\n    return block_input['city']\n",
        flag = flag.to_str().unwrap()
    );
    let project = cities(&work)
        .retries(
            "Work",
            Retries {
                count: 2,
                delay_s: 0.05,
                factor: 2.0,
                on: vec!["WorkerCrash".to_owned()],
            },
        )
        .build();
    let mut runtime = python_runtime();
    let (out, counts) = run_counted(&mut runtime, project, None, Some(4));
    assert_eq!(
        out.summary.status,
        RunStatus::Succeeded,
        "{:?}",
        out.summary.failures
    );
    let work = counts_of(&counts, "Work");
    assert_eq!(
        (work.succeeded, work.open(), work.finished(), work.total()),
        (4, 0, 4, 4),
        "{work:?}"
    );
    // The pool may first run Rome again alone (to find which invocation killed its worker), which
    // crashes too; then the block's retry runs it once more, which does not.
    let rome: Vec<(u32, InvocationStatus, Option<String>)> = out
        .records_of("Work")
        .iter()
        .filter(|r| r.item_label() == Some("Rome"))
        .map(|r| {
            (
                r.attempt,
                r.status,
                r.error.as_ref().map(|e| e.kind.clone()),
            )
        })
        .collect();
    let (last, retried) = rome.split_last().unwrap();
    assert_eq!(
        (last.1, &last.2),
        (InvocationStatus::Succeeded, &None),
        "{rome:?}"
    );
    assert!(!retried.is_empty(), "{rome:?}");
    for (attempt, status, kind) in retried {
        assert_eq!(
            (*status, kind.as_deref()),
            (InvocationStatus::Retried, Some("WorkerCrash")),
            "attempt {attempt}: {rome:?}"
        );
    }
    assert!(
        rome.windows(2).all(|pair| pair[1].0 > pair[0].0),
        "each a later attempt: {rome:?}"
    );
    assert_eq!(
        out.results_of("Collect"),
        [&json!(["Paris", "Oslo", "Rome", "Lima"])]
    );
}

#[test]
fn a_worker_killed_with_no_retries_fails_its_item_alone_and_the_counts_still_add_up() {
    let work = "import os, signal\ndef main(block_input, backpack):\n    if block_input['id'] == 'osl':\n        os.kill(os.getpid(), signal.SIGKILL)\n    return 1\n";
    let mut runtime = python_runtime();
    let (out, counts) = run_counted(&mut runtime, cities(work).build(), None, Some(4));
    let work = counts_of(&counts, "Work");
    assert_eq!(
        (work.succeeded, work.failed, work.open(), work.total()),
        (3, 1, 0, 4),
        "{work:?}"
    );
    assert_eq!(out.summary.status, RunStatus::Failed);
    assert_eq!(
        items(&out, "Work")
            .into_iter()
            .filter(|(_, _, status)| *status != InvocationStatus::Succeeded)
            .collect::<Vec<_>>(),
        [("osl".into(), "Oslo".into(), InvocationStatus::Exception)]
    );
}

#[test]
fn a_fan_in_fires_within_its_budget_with_the_failed_items_and_fails_past_it() {
    let work = "def main(block_input, backpack):\n    if block_input['id'] in backpack['bad']:\n        raise KeyError('city')\n    return block_input['city']\n";
    let collect = "def main(block_input, backpack):\n    return {'got': block_input, 'failed': backpack['braid_failed_items']}\n";
    let project = |budget| {
        let mut p = cities_into(work, collect).build();
        p.transitions[1].tolerated_failures = Some(budget);
        p
    };
    let mut runtime = python_runtime();
    let run = |runtime: &mut RuntimeHandle, budget, bad: Value| {
        let request = RunRequest {
            backpack: json!({ "bad": bad }),
            ..RunRequest::new(RunId::new_random(), project(budget))
        };
        run_request_on(runtime, request, |_, _, _| {})
    };
    let within = run(&mut runtime, Tolerance::Percent(25.0), json!(["osl"]));
    assert_eq!(
        within.summary.status,
        RunStatus::Succeeded,
        "{:?}",
        within.summary.failures
    );
    assert_eq!(
        within.results_of("Collect"),
        [&json!({
            "got": ["Paris", "Rome", "Lima"],
            "failed": [{"index": 1, "key": "osl", "label": "Oslo", "error": "KeyError: 'city' in \"Work\""}],
        })]
    );
    assert_eq!(within.summary.tolerated.len(), 1);

    let past = run(&mut runtime, Tolerance::Count(1), json!(["osl", "lim"]));
    assert_eq!(past.summary.status, RunStatus::Failed);
    assert!(
        past.records_of("Collect").is_empty(),
        "the fan-in never fires"
    );
    assert_eq!(
        past.summary.failures.last().map(|f| f.error.as_str()),
        Some(
            "fan-in \"Collect\" got 2 of 4 results, 2 missing where it tolerates 1; missing items \"osl\" (Oslo), \"lim\" (Lima) (item \"osl\" (Oslo): KeyError: 'city' in \"Work\"; item \"lim\" (Lima): KeyError: 'city' in \"Work\")"
        )
    );
}

fn db_in(dir: &tempfile::TempDir) -> PathBuf {
    dir.path().join("history.sqlite")
}

/// Redrives `of` from the history at `db`, recording the redrive there too.
fn redrive(runtime: &mut RuntimeHandle, project: Project, db: &Path, of: &RunId) -> Outcome {
    let redrive = {
        let history = History::open(db).unwrap();
        Redrive::load(&history, of, None).unwrap()
    };
    let request = RunRequest {
        history: Some(db.to_path_buf()),
        redrive: Some(Arc::new(redrive)),
        ..RunRequest::new(RunId::new_random(), project)
    };
    run_request_on(runtime, request, |_, _, _| {})
}

#[test]
fn a_redrive_runs_only_the_failed_items_with_the_new_code_and_completes_the_fan_in_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let db = db_in(&dir);
    let broken = "def main(block_input, backpack):\n    if block_input['id'] in ('osl', 'lim'):\n        raise KeyError('city')\n    return block_input['city'] + ' 1'\n";
    let fixed = "def main(block_input, backpack):\n    return block_input['city'] + ' 2'\n";
    let mut runtime = python_runtime();
    let mut project = cities(broken).build();
    let (first, _) = run_counted(&mut runtime, project.clone(), Some(&db), None);
    assert_eq!(first.summary.status, RunStatus::Failed);
    // The same project, its block fixed.
    fixed.clone_into(&mut project.blocks[1].code_mut().unwrap().code);
    let again = redrive(&mut runtime, project, &db, &first.summary.run_id);
    assert_eq!(
        again.summary.status,
        RunStatus::Succeeded,
        "{:?}",
        again.summary.failures
    );
    assert_eq!(
        again.summary.redrive_of.as_ref(),
        Some(&first.summary.run_id)
    );
    assert_eq!(
        again.results_of("Collect"),
        [&json!(["Paris 1", "Oslo 2", "Rome 1", "Lima 2"])],
        "carried and new results, in item order"
    );
    let ran: Vec<(String, Option<u64>)> = again
        .records_of("Work")
        .iter()
        .map(|r| (r.item_label().unwrap().to_owned(), r.carried_from))
        .collect();
    let first_ids: Vec<u64> = first.records_of("Work").iter().map(|r| r.id).collect();
    assert_eq!(
        ran,
        [
            ("Paris".into(), Some(first_ids[0])),
            ("Oslo".into(), None),
            ("Rome".into(), Some(first_ids[2])),
            ("Lima".into(), None),
        ]
    );
    let history = History::open(&db).unwrap();
    let row = history.run(&again.summary.run_id).unwrap().unwrap();
    assert_eq!(row.redrive_of.as_ref(), Some(&first.summary.run_id));
    // The history has it whole: labels, keys and the carried records.
    let record = history
        .invocation(&again.summary.run_id, again.records_of("Work")[0].id)
        .unwrap()
        .unwrap();
    assert_eq!(
        (record.item_label(), record.carried_from),
        (Some("Paris"), Some(first_ids[0]))
    );
}

#[test]
fn a_retry_waits_its_delay_in_the_engine_and_runs_again_as_the_next_attempt() {
    let script = Script::new()
        .block("Gen", |_| Reply::returns(json!([1, 2])))
        .block("Work", |call| {
            if call.attempt < 3 && call.input == json!(2) {
                Reply::raises("ConnectionError", "reset")
            } else {
                Reply::returns(call.input.clone())
            }
        });
    let project = Builder::new()
        .scripted(&["Gen", "Work"])
        .link("Gen", "Work", FanOut)
        .retries(
            "Work",
            Retries {
                count: 3,
                delay_s: 0.05,
                factor: 2.0,
                on: Vec::new(),
            },
        )
        .build();
    let mut runtime = scripted_runtime(&script);
    let started = std::time::Instant::now();
    let (out, counts) = run_counted(&mut runtime, project, None, None);
    // Two waits: 50 ms, then 100 ms.
    assert!(started.elapsed() >= std::time::Duration::from_millis(150));
    assert_eq!(out.summary.status, RunStatus::Succeeded);
    let attempts: Vec<(u32, InvocationStatus)> = out
        .records_of("Work")
        .iter()
        .filter(|r| r.input == json!(2))
        .map(|r| (r.attempt, r.status))
        .collect();
    assert_eq!(
        attempts,
        [
            (1, InvocationStatus::Retried),
            (2, InvocationStatus::Retried),
            (3, InvocationStatus::Succeeded),
        ]
    );
    let work = counts_of(&counts, "Work");
    assert_eq!((work.succeeded, work.retrying, work.total()), (2, 0, 2));
}

#[test]
fn a_replay_of_a_fan_out_source_names_its_items_again() {
    let mut runtime = python_runtime();
    let project = cities("def main(block_input, backpack):\n    return 1\n").build();
    let gen_id = project.blocks[0].id.clone();
    let request = RunRequest {
        from: Some(gen_id),
        single: true,
        ..RunRequest::new(RunId::new_random(), project)
    };
    let out = run_request_on(&mut runtime, request, |_, _, _| {});
    let record = &out.records_of("Gen")[0];
    let names = &record.fanned_out[0].names;
    assert_eq!(
        (0..4)
            .map(|i| names.key(i).into_owned())
            .collect::<Vec<_>>(),
        ["par", "osl", "rom", "lim"]
    );
}

/// A replay of the fan-out source whose code returns the cities reordered (Lima first, Oslo gone, Rome
/// renamed, Bergen new) pairs them with the run's by key, never by position.
#[test]
fn a_replay_diff_of_a_reordered_list_pairs_the_items_by_key() {
    use braid::run::ItemChange::{Changed, OnlyBefore, OnlyInReplay, Same};
    let mut runtime = python_runtime();
    let project = cities("def main(block_input, backpack):\n    return 1\n").build();
    let (run, _) = run_counted(&mut runtime, project.clone(), None, None);
    let original = run.records_of("Gen")[0].clone();
    let mut changed = project;
    let gen_id = changed.blocks[0].id.clone();
    "def main(block_input, backpack):\n    return [\n        {'id': 'lim', 'city': 'Lima'},\n        {'id': 'ber', 'city': 'Bergen'},\n        {'id': 'rom', 'city': 'Roma'},\n        {'id': 'par', 'city': 'Paris'},\n    ]\n"
        .clone_into(&mut changed.blocks[0].code_mut().unwrap().code);
    let request = RunRequest {
        from: Some(gen_id),
        single: true,
        ..RunRequest::new(RunId::new_random(), changed)
    };
    let replay = run_request_on(&mut runtime, request, |_, _, _| {});
    let diff = braid::run::item_diff(&original, replay.records_of("Gen")[0]).expect("named items");
    let seen: Vec<(String, Option<String>, braid::run::ItemChange)> = diff
        .into_iter()
        .map(|d| (d.key, d.label, d.change))
        .collect();
    let city = |id: &str, name: &str| json!({"id": id, "city": name});
    assert_eq!(
        seen,
        [
            ("par".into(), Some("Paris".into()), Same),
            (
                "osl".into(),
                Some("Oslo".into()),
                OnlyBefore(city("osl", "Oslo"))
            ),
            (
                "rom".into(),
                Some("Roma".into()),
                Changed {
                    before: city("rom", "Rome"),
                    after: city("rom", "Roma")
                }
            ),
            ("lim".into(), Some("Lima".into()), Same),
            (
                "ber".into(),
                Some("Bergen".into()),
                OnlyInReplay(city("ber", "Bergen"))
            ),
        ]
    );
}

mod editor {
    //! The ledger in the editor: live counts on the canvas, the missing items a click away, the
    //! failures grouped, and a redrive from the panel.

    use std::path::{Path, PathBuf};

    use braid::app::run::RunPhase;
    use braid::app::{BlockEdit, Edit};
    use braid::model::Position;
    use braid::run::{InvocationStatus, RunStatus};
    use braid::runtime::history::History;
    use braid::shell::BraidApp;
    use egui_kittest::Harness;
    use egui_kittest::kittest::{NodeT as _, Queryable as _};

    use super::cities;
    use crate::gui::{click, harness_1280x800, settle, wait_for};

    /// Oslo fails; Lima waits for `gate` to exist; the others finish at once.
    fn work(gate: &Path) -> String {
        format!(
            "import os, time\ndef main(block_input, backpack):\n    if block_input['id'] == 'osl':\n        raise KeyError('city')\n    while block_input['id'] == 'lim' and not os.path.exists({gate:?}):\n        time.sleep(0.02)\n    return block_input['city']\n",
            gate = gate.to_str().unwrap()
        )
    }

    fn write_project(dir: &Path, gate: &Path) -> PathBuf {
        let mut project = cities(&work(gate)).build();
        "Cities".clone_into(&mut project.name);
        for (block, (x, y)) in
            project
                .blocks
                .iter_mut()
                .zip([(0.0, 0.0), (260.0, 0.0), (520.0, 0.0)])
        {
            block.position = Position { x, y };
        }
        let path = dir.join("cities.braid.json");
        braid::model::format::save_project(&path, &project).expect("saves");
        path
    }

    fn finished(app: &BraidApp) -> bool {
        matches!(
            app.app.run.as_ref().map(|r| &r.phase),
            Some(RunPhase::Finished(_))
        )
    }

    #[test]
    fn the_canvas_shows_the_ledger_live_the_missing_items_a_click_away_and_a_redrive_finishes_it() {
        let dir = tempfile::tempdir().unwrap();
        let gate = dir.path().join("gate");
        let path = write_project(dir.path(), &gate);
        let mut harness: Harness<'_, BraidApp> = harness_1280x800(Some(path));
        click(&mut harness, "▶ Run");
        // Lima runs (held by the gate) while the others have ended: the ledger says so, live.
        wait_for(&mut harness, "three items to end and one to run", |app| {
            app.app.run.as_ref().is_some_and(|run| {
                run.counts
                    .values()
                    .any(|c| c.succeeded == 2 && c.failed == 1 && c.running == 1)
            })
        });
        for label in ["2 succeeded", "1 failed", "1 running"] {
            // On the node (and the status bar's totals, for some).
            assert!(
                harness.query_all_by_label(label).next().is_some(),
                "{label:?} shows"
            );
        }
        harness.get_by_label("⇲ 2 of 4 arrived");
        // On the canvas, where a click is mapped as for a node.
        crate::gui::click_node(&mut harness, "1 missing");
        harness.get_by_label("Oslo (key \"osl\")");
        harness.get_by_label("KeyError: 'city' in \"Work\"");
        // The elapsed time, the progress bar and the spinner beside them move from run to run.
        let elapsed = harness.get_by_label_contains("invocations").rect();
        crate::gui::mask_fixed(&mut harness, elapsed, 190.0);
        harness.mask(egui::Rect::from_min_max(
            egui::pos2(0.0, elapsed.min.y - 4.0),
            egui::pos2(elapsed.min.x, elapsed.max.y + 4.0),
        ));
        let live = harness.try_snapshot("ledger_live");
        harness.key_press(egui::Key::Escape);
        settle(&mut harness);

        std::fs::write(&gate, "").unwrap();
        wait_for(&mut harness, "the run to finish", finished);
        let run = harness.state().app.run.clone().unwrap();
        let RunPhase::Finished(summary) = &run.phase else {
            unreachable!()
        };
        assert_eq!(summary.status, RunStatus::Failed);
        harness.get_by_label("⇲ 3 of 4 arrived");
        // The failures, grouped, in Block Executions.
        click(&mut harness, "Block Executions");
        harness.get_by_label("KeyError: 'city' × 1");
        let work_id = harness.state().app.project.blocks[1].id.clone();
        harness
            .state_mut()
            .app
            .apply(braid::app::Select::Blocks(vec![work_id.clone()]), 0.0);
        settle(&mut harness);
        click(&mut harness, "Oslo");
        // Times differ from run to run: covered by boxes of fixed widths.
        crate::gui::mask_all(
            &mut harness,
            &[(" ms", 72.0), (" µs", 72.0), ("queued ", 400.0)],
        );
        let runs = harness.get_by_label_contains("3 succeeded").rect();
        crate::gui::mask_fixed(&mut harness, runs.expand2(egui::vec2(0.0, 27.0)), 250.0);
        let status = harness.get_by_label_contains("cities.braid.json").rect();
        crate::gui::mask_fixed(&mut harness, status, 400.0);
        let failures = harness.try_snapshot("ledger_failures");

        // Fix the block, then redrive: only Oslo runs again; the fan-in completes.
        let fixed = "def main(block_input, backpack):\n    return block_input['city']\n";
        harness.state_mut().app.apply(
            Edit::EditBlock {
                block: work_id,
                edit: BlockEdit::Code(fixed.to_owned()),
            },
            0.0,
        );
        settle(&mut harness);
        click(&mut harness, "↻ Redrive failed items");
        wait_for(&mut harness, "the redrive to finish", |app| {
            finished(app) && app.app.run.as_ref().is_some_and(|r| r.run_id != run.run_id)
        });
        let redrive = harness.state().app.run.clone().unwrap();
        let RunPhase::Finished(summary) = &redrive.phase else {
            unreachable!()
        };
        assert_eq!(
            summary.status,
            RunStatus::Succeeded,
            "{:?}",
            summary.failures
        );
        assert_eq!(summary.redrive_of.as_ref(), Some(&run.run_id));
        assert_eq!(
            summary.results[0].output,
            serde_json::json!(["Paris", "Oslo", "Rome", "Lima"])
        );
        harness.get_by_label("⇲ 4 of 4 arrived");
        for result in [live, failures] {
            if let Err(e) = result {
                panic!("{e}");
            }
        }
    }

    /// Paris and Rome succeed; Oslo and Lima raise `KeyError`, Bergen and Kyoto `ValueError`: two
    /// failure groups of two.
    const TWO_FAILURES: &str = "def main(block_input, backpack):\n    if block_input['id'] in ('osl', 'lim'):\n        raise KeyError('city')\n    if block_input['id'] in ('ber', 'kyo'):\n        raise ValueError('no forecast')\n    return block_input['city']\n";

    /// Six cities fanned out to `Work` by id (labelled by name) and fanned in to `Collect`.
    fn write_six_cities(dir: &Path) -> PathBuf {
        let six = "def main(block_input, backpack):\n    return [\n        {'id': 'par', 'city': 'Paris'},\n        {'id': 'osl', 'city': 'Oslo'},\n        {'id': 'rom', 'city': 'Rome'},\n        {'id': 'ber', 'city': 'Bergen'},\n        {'id': 'lim', 'city': 'Lima'},\n        {'id': 'kyo', 'city': 'Kyoto'},\n    ]\n";
        let mut project = cities(TWO_FAILURES).build();
        six.clone_into(&mut project.blocks[0].code_mut().unwrap().code);
        "Six cities".clone_into(&mut project.name);
        for (block, x) in project.blocks.iter_mut().zip([0.0, 260.0, 520.0]) {
            block.position = Position { x, y: 0.0 };
        }
        let path = dir.join("six.braid.json");
        braid::model::format::save_project(&path, &project).expect("saves");
        path
    }

    /// Clicks the "↻ redrive" button of the failure group whose label is `group`: each group's button
    /// is named after its group for a screen reader.
    fn click_group_redrive(harness: &mut Harness<'_, BraidApp>, group: &str) {
        harness.get_by_label(&format!("↻ redrive: {group}")).click();
        harness.step();
        harness.remove_cursor();
        settle(harness);
    }

    /// (block, key, label, status, carried over) of each of a recorded run's invocations, in id order.
    fn recorded(
        path: &Path,
        run: &braid::run::RunId,
    ) -> Vec<(String, String, String, InvocationStatus, bool)> {
        let history = History::open(&History::path_for_project(path)).unwrap();
        history
            .invocation_rows(run, &braid::run::InvocationFilter::default())
            .unwrap()
            .iter()
            .map(|row| {
                (
                    row.block_name.to_string(),
                    row.item_key().unwrap_or_default().into_owned(),
                    row.item_label().unwrap_or_default().to_owned(),
                    row.status,
                    row.carried,
                )
            })
            .collect()
    }

    /// A failure group's redrive button runs that group's items again and nothing else: the other
    /// group's failures are carried over as they were (even though the code would now pass them), so
    /// the fan-in still misses those items and the redrive fails naming them.
    #[test]
    fn a_failure_groups_redrive_runs_only_that_groups_items_and_keeps_the_other_failures() {
        use InvocationStatus::{Exception, Succeeded};
        let dir = tempfile::tempdir().unwrap();
        let path = write_six_cities(dir.path());
        let mut harness: Harness<'_, BraidApp> = harness_1280x800(Some(path.clone()));
        click(&mut harness, "▶ Run");
        let first = crate::gui::wait_for_run(&mut harness);
        assert_eq!(first.status, RunStatus::Failed);
        click(&mut harness, "Block Executions");
        harness.get_by_label("ValueError: no forecast × 2");

        // Fixed for every item: only the redrive's choice keeps Bergen and Kyoto from running again.
        let work_id = harness.state().app.project.blocks[1].id.clone();
        harness.state_mut().app.apply(
            Edit::EditBlock {
                block: work_id,
                edit: BlockEdit::Code(
                    "def main(block_input, backpack):\n    return block_input['city'] + ' again'\n"
                        .to_owned(),
                ),
            },
            0.0,
        );
        settle(&mut harness);
        click_group_redrive(&mut harness, "KeyError: 'city' × 2");
        wait_for(&mut harness, "the redrive to finish", |app| {
            finished(app)
                && app
                    .app
                    .run
                    .as_ref()
                    .is_some_and(|r| r.run_id != first.run_id)
        });
        let redrive = crate::gui::wait_for_run(&mut harness);
        assert_eq!(redrive.redrive_of.as_ref(), Some(&first.run_id));

        let first_rows = recorded(&path, &first.run_id);
        let work = |rows: &[(String, String, String, InvocationStatus, bool)]| {
            rows.iter()
                .filter(|row| row.0 == "Work")
                .map(|(_, key, label, status, carried)| {
                    (key.clone(), label.clone(), *status, *carried)
                })
                .collect::<Vec<_>>()
        };
        let s = |text: &str| text.to_owned();
        assert_eq!(
            work(&first_rows),
            [
                (s("par"), s("Paris"), Succeeded, false),
                (s("osl"), s("Oslo"), Exception, false),
                (s("rom"), s("Rome"), Succeeded, false),
                (s("ber"), s("Bergen"), Exception, false),
                (s("lim"), s("Lima"), Exception, false),
                (s("kyo"), s("Kyoto"), Exception, false),
            ]
        );
        let rows = recorded(&path, &redrive.run_id);
        // Oslo and Lima ran (with the new code); the rest was carried over, Bergen and Kyoto still
        // failed; the fan-in never fired.
        assert_eq!(
            work(&rows),
            [
                (s("par"), s("Paris"), Succeeded, true),
                (s("osl"), s("Oslo"), Succeeded, false),
                (s("rom"), s("Rome"), Succeeded, true),
                (s("ber"), s("Bergen"), Exception, true),
                (s("lim"), s("Lima"), Succeeded, false),
                (s("kyo"), s("Kyoto"), Exception, true),
            ]
        );
        assert_eq!(
            rows.iter().map(|row| row.0.as_str()).collect::<Vec<_>>(),
            ["Gen", "Work", "Work", "Work", "Work", "Work", "Work"]
        );
        assert_eq!(redrive.status, RunStatus::Failed);
        let failures: Vec<(&str, &[u32], &str)> = redrive
            .failures
            .iter()
            .map(|f| (f.block.as_str(), &f.item_path[..], f.error.as_str()))
            .collect();
        assert_eq!(
            failures,
            [
                ("Work", &[3][..], "ValueError: no forecast"),
                ("Work", &[5][..], "ValueError: no forecast"),
                (
                    "Collect",
                    &[][..],
                    "fan-in \"Collect\" got 4 of 6 results; missing items \"ber\" (Bergen), \"kyo\" (Kyoto) (item \"ber\" (Bergen): ValueError: no forecast in \"Work\"; item \"kyo\" (Kyoto): ValueError: no forecast in \"Work\")"
                ),
            ]
        );
    }

    /// The timeline names the item under the pointer by its label: Rome runs long while the others
    /// end at once, so late in the run only its bar is in the `Work` lane.
    #[test]
    fn the_timeline_names_the_hovered_items_label() {
        let dir = tempfile::tempdir().unwrap();
        let mut project = cities(
            "import time\ndef main(block_input, backpack):\n    if block_input['id'] == 'rom':\n        time.sleep(0.8)\n    return block_input['city']\n",
        )
        .build();
        for (block, x) in project.blocks.iter_mut().zip([0.0, 260.0, 520.0]) {
            block.position = Position { x, y: 0.0 };
        }
        let path = dir.path().join("cities.braid.json");
        braid::model::format::save_project(&path, &project).expect("saves");
        let mut harness: Harness<'_, BraidApp> = harness_1280x800(Some(path));
        click(&mut harness, "▶ Run");
        let summary = crate::gui::wait_for_run(&mut harness);
        assert_eq!(summary.status, RunStatus::Succeeded);
        click(&mut harness, "Timeline");
        click(&mut harness, "blocks");
        // The lanes fill the panel below the row of lane modes, each at most 18 points high, from
        // 110 points right of its left edge (where the lanes' names are); three quarters of the way
        // through the run only Rome is running.
        let modes = harness.get_by_label("Lanes:").rect();
        let x = modes.left() + 110.0 + 0.75 * (1280.0 - modes.left() - 110.0);
        let mut tooltip = None;
        for step in 0..60 {
            harness.hover_at(egui::pos2(x, modes.bottom() + 2.0 * step as f32));
            harness.run_steps(3);
            if let Some(node) = harness.query_by_label_contains("Work [2]") {
                tooltip = node.accesskit_node().value();
                break;
            }
        }
        let tooltip = tooltip.expect("hovering Rome's bar shows its invocation");
        // Its block, item path and label, invocation id, status; then how long it ran, which varies.
        let (said, ran) = tooltip
            .rsplit_once(" · ")
            .unwrap_or_else(|| panic!("{tooltip}"));
        assert_eq!(said, "Work [2] Rome · #4 · succeeded");
        assert!(ran.ends_with(" ms"), "{tooltip}");
    }
}
