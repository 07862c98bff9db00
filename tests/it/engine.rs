//! The engine's semantics over a script standing in for Python (no worker starts, so each test takes
//! milliseconds): every transition type, fan-out/fan-in and merge bookkeeping, the concurrency limit
//! and per-block caps, cancel, late replies, records and run summaries. What only Python shows is in
//! `python.rs` and `workers.rs`.

use braid::model::TransitionKind::{Else, Exception, FanIn, FanOut, If, Merge, Then};
use braid::model::{BlockId, Project, TransitionId};
use braid::run::{InvocationStatus, RunFailure, RunId, RunStatus};
use braid::runtime::scripted::{Call, Held, Reply, Script};
use braid::runtime::{RunRequest, RuntimeEvent, RuntimeHandle, RuntimeRequest};
use serde_json::{Value, json};

use crate::support::{
    Builder, Outcome, follow, run_on, run_request_on, run_scripted, scripted_runtime,
};

/// The call's input as a number.
fn n(call: &Call) -> i64 {
    call.input.as_i64().expect("a number")
}

/// `Gen` returns `0..count`.
fn gen_items(count: i64) -> impl Fn(&Call) -> Reply + Send + Sync + 'static {
    move |_| Reply::returns(json!((0..count).collect::<Vec<_>>()))
}

fn transition(project: &Project, from: &str, to: &str) -> TransitionId {
    let (from, to) = (
        BlockId(format!("id-{from}").into()),
        BlockId(format!("id-{to}").into()),
    );
    project
        .transitions
        .iter()
        .find(|t| t.from == from && t.to == to)
        .expect("a transition between them")
        .id
        .clone()
}

/// Sends `project`'s run to `runtime` and returns its id, without waiting for it.
fn start(runtime: &RuntimeHandle, project: Project, limit: Option<u32>) -> RunId {
    let mut request = RunRequest::new(RunId::new_random(), project);
    request.concurrency = limit;
    let run_id = request.run_id.clone();
    runtime.send(RuntimeRequest::Run(Box::new(request)));
    run_id
}

/// Collects `run_id`'s events until it ends.
fn finish(runtime: &mut RuntimeHandle, run_id: &RunId) -> Outcome {
    follow(runtime, run_id, |_, _, _| {})
}

/// Collects `run_id`'s events until it ends, letting every held invocation end as it goes.
fn finish_releasing(runtime: &mut RuntimeHandle, script: &Script, run_id: &RunId) -> Outcome {
    follow(runtime, run_id, |_, _, _| {
        script.release_all();
    })
}

fn inputs(held: &[Held]) -> Vec<Value> {
    held.iter().map(|h| h.input.clone()).collect()
}

#[test]
fn then_passes_the_value_and_backpack_on_and_records_parent_and_transition() {
    let project = Builder::new()
        .scripted(&["A", "B"])
        .link("A", "B", Then)
        .build();
    let then = transition(&project, "A", "B");
    let script = Script::new()
        .block("A", |call| {
            Reply::returns(json!(n(call) + 1))
                .with_backpack(json!({"seen": call.input}))
                .printing("from A\n")
                .printing_to_stderr("careful\n")
        })
        .block("B", |call| Reply::returns(json!(n(call) * 10)));
    let out = run_scripted(project, &script, json!(4), None);
    assert_eq!(out.summary.status, RunStatus::Succeeded);
    assert_eq!(out.results_of("B"), [&json!(50)]);
    assert_eq!(out.summary.invocations, 2);
    let a = out.records_of("A")[0];
    assert_eq!(
        (a.id, a.attempt, a.status),
        (1, 1, InvocationStatus::Succeeded)
    );
    assert!(a.parents.is_empty() && a.item_path.is_empty());
    assert_eq!(
        (a.input.clone(), a.output.clone()),
        (json!(4), Some(json!(5)))
    );
    assert_eq!((&*a.stdout, &*a.stderr), ("from A\n", "careful\n"));
    assert_eq!(a.backpack_out.as_deref(), Some(&json!({"seen": 4})));
    assert_eq!(a.fired, [then]);
    let b = out.records_of("B")[0];
    assert_eq!((b.id, &b.parents[..]), (2, &[1][..]));
    assert_eq!(b.input, json!(5));
    assert_eq!(*b.backpack_in, json!({"seen": 4}));
    assert_eq!(
        b.backpack_out.as_deref(),
        Some(&json!({"seen": 4})),
        "left unchanged, it is the backpack it got"
    );
    assert!(b.fired.is_empty());
    for r in [a, b] {
        let (queued, started, ended) = (
            r.queued_at_ms,
            r.started_at_ms.unwrap(),
            r.ended_at_ms.unwrap(),
        );
        assert!(queued <= started && started <= ended, "{r:?}");
    }
}

#[test]
fn then_fires_always_every_true_if_fires_and_else_fires_when_none_is_true() {
    let project = Builder::new()
        .scripted(&["Measure", "Always", "Big", "Even", "Small"])
        .link("Measure", "Always", Then)
        .link_if("Measure", "Big", If, "return_data > 10")
        .link_if("Measure", "Even", If, "return_data % 2 == 0")
        .link("Measure", "Small", Else)
        .build();
    let script = Script::new().block("Measure", |call| {
        let x = n(call);
        Reply::returns(json!(x)).with_ifs([x > 10, x % 2 == 0])
    });
    let ran = |input: i64| {
        let out = run_scripted(project.clone(), &script, json!(input), None);
        assert_eq!(out.summary.status, RunStatus::Succeeded);
        let leaves: Vec<&str> = ["Always", "Big", "Even", "Small"]
            .into_iter()
            .filter(|block| out.results_of(block) == [&json!(input)])
            .collect();
        (leaves, out.records_of("Measure")[0].fired.clone())
    };
    let t = |to| transition(&project, "Measure", to);
    assert_eq!(
        ran(12),
        (
            vec!["Always", "Big", "Even"],
            vec![t("Always"), t("Big"), t("Even")]
        )
    );
    assert_eq!(
        ran(11),
        (vec!["Always", "Big"], vec![t("Always"), t("Big")])
    );
    assert_eq!(
        ran(3),
        (vec!["Always", "Small"], vec![t("Always"), t("Small")])
    );
}

#[test]
fn a_block_that_answers_the_wrong_number_of_ifs_fails_saying_so() {
    let project = Builder::new()
        .scripted(&["A", "B"])
        .link_if("A", "B", If, "True")
        .build();
    let out = run_scripted(project, &Script::new(), json!(1), None);
    assert_eq!(out.summary.status, RunStatus::Failed);
    assert_eq!(
        out.summary.failures[0].error,
        "ScriptError: the script of \"A\" answered 0 `if`s; the block has 1"
    );
}

#[test]
fn an_exception_transition_gets_the_exception_text_the_input_and_the_backpack_as_it_was() {
    let project = Builder::new()
        .scripted(&["Parse", "Next", "Report"])
        .link("Parse", "Next", Then)
        .link("Parse", "Report", Exception)
        .build();
    let caught = transition(&project, "Parse", "Report");
    let traceback = "Traceback (most recent call last):\n  File \"Parse\", line 3, in main\nValueError: invalid literal\n";
    let script = Script::new().block("Parse", move |_| {
        Reply::raises("ValueError", "invalid literal")
            .with_traceback(traceback, Some(3))
            .with_backpack(json!({"tried": true}))
    });
    let out = run_scripted(project, &script, json!("forty-two"), None);
    assert_eq!(
        out.summary.status,
        RunStatus::Succeeded,
        "a caught exception does not fail the run"
    );
    let parse = out.records_of("Parse")[0];
    assert_eq!(parse.status, InvocationStatus::CaughtException);
    assert_eq!(parse.fired, [caught], "only the exception transition fires");
    assert_eq!(parse.error.as_ref().unwrap().line, Some(3));
    assert_eq!(parse.backpack_out.as_deref(), Some(&json!({"tried": true})));
    assert!(out.records_of("Next").is_empty());
    let report = out.records_of("Report")[0];
    assert_eq!(
        report.input,
        json!({"version": "1.0.0", "exception_text": traceback, "input_data": "forty-two"})
    );
    assert_eq!(*report.backpack_in, json!({"tried": true}));
    assert_eq!(report.parents[..], [parse.id]);

    // Without a traceback, the text is the exception's summary.
    let project = Builder::new()
        .scripted(&["Parse", "Report"])
        .link("Parse", "Report", Exception)
        .build();
    let script = Script::new().block("Parse", |_| Reply::raises("KeyError", "'x'"));
    let out = run_scripted(project, &script, json!(1), None);
    assert_eq!(
        out.results_of("Report")[0]["exception_text"],
        json!("KeyError: 'x'")
    );
}

#[test]
fn an_uncaught_exception_timeout_or_crash_fails_the_run_naming_block_item_and_invocation() {
    let project = Builder::new()
        .scripted(&["Gen", "Work"])
        .link("Gen", "Work", FanOut)
        .build();
    let script = Script::new()
        .block("Gen", gen_items(4))
        .block("Work", |call| match n(call) {
            1 => Reply::raises("ValueError", "bad row")
                .with_traceback("Traceback: bad row\n", Some(2)),
            2 => Reply::times_out(2.0),
            3 => Reply::crashes("the worker running it died (os._exit(3))").on_attempt(2),
            x => Reply::returns(json!(x)),
        });
    let out = run_scripted(project, &script, Value::Null, None);
    assert_eq!(out.summary.status, RunStatus::Failed);
    let work = out.records_of("Work");
    let statuses: Vec<_> = work.iter().map(|r| (r.status, r.attempt)).collect();
    assert_eq!(
        statuses,
        [
            (InvocationStatus::Succeeded, 1),
            (InvocationStatus::Exception, 1),
            (InvocationStatus::TimedOut, 1),
            (InvocationStatus::Exception, 2),
        ]
    );
    let failure = |item: u32, status: &str, error: &str, traceback: Option<&str>| RunFailure {
        block: "Work".to_owned(),
        block_id: BlockId("id-Work".into()),
        item_path: vec![item],
        item_key: None,
        item_label: None,
        status: status.to_owned(),
        error: error.to_owned(),
        traceback: traceback.map(str::to_owned),
        invocation: Some(work[item as usize].id),
    };
    assert_eq!(
        out.summary.failures,
        [
            failure(
                1,
                "exception",
                "ValueError: bad row",
                Some("Traceback: bad row\n")
            ),
            failure(2, "timed_out", "Timeout: ran past its timeout of 2 s", None),
            failure(
                3,
                "exception",
                "WorkerCrash: the worker running it died (os._exit(3))",
                None
            ),
        ]
    );
    assert_eq!(out.results_of("Work"), [&json!(0)]);
}

#[test]
fn a_fan_in_collects_in_item_order_whatever_the_finishing_order() {
    let project = Builder::new()
        .scripted(&["Gen", "Slow", "Collect"])
        .link("Gen", "Slow", FanOut)
        .link("Slow", "Collect", FanIn)
        .build();
    let script = Script::new()
        .block("Gen", gen_items(20))
        .block("Slow", |call| {
            let x = n(call);
            Reply::returns(json!(x * 2))
                .with_backpack(json!({"last": x, format!("k{x}"): 1}))
                .held()
        });
    let mut runtime = scripted_runtime(&script);
    let run_id = start(&runtime, project, None);
    let held = script.wait_held(20);
    // The last item ends first, the first last.
    for item in held.iter().rev() {
        assert!(script.release(item.key));
    }
    let out = finish(&mut runtime, &run_id);
    assert_eq!(out.summary.status, RunStatus::Succeeded);
    let expected: Vec<i64> = (0..20).map(|i| i * 2).collect();
    assert_eq!(out.results_of("Collect"), [&json!(expected)]);
    let slow = out.records_of("Slow");
    let paths: Vec<Vec<u32>> = slow.iter().map(|r| r.item_path.to_vec()).collect();
    assert_eq!(paths, (0..20).map(|i| vec![i]).collect::<Vec<_>>());
    // The backpacks merge in item order, not finishing order: the last item's key wins.
    let collect = out.records_of("Collect")[0];
    assert_eq!(collect.backpack_in["last"], json!(19));
    assert_eq!(collect.backpack_in.as_object().unwrap().len(), 21);
    let slow_ids: Vec<u64> = slow.iter().map(|r| r.id).collect();
    assert_eq!(
        collect.parents.to_vec(),
        slow_ids,
        "its parents, in item order"
    );
    assert!(collect.item_path.is_empty());
}

#[test]
fn an_empty_fan_out_fires_its_fan_in_with_an_empty_array() {
    let project = Builder::new()
        .scripted(&["Gen", "Work", "Collect"])
        .link("Gen", "Work", FanOut)
        .link("Work", "Collect", FanIn)
        .build();
    let script = Script::new()
        .block("Gen", gen_items(0))
        .block("Collect", |call| Reply::returns(json!({"got": call.input})));
    let out = run_scripted(project, &script, Value::Null, None);
    assert_eq!(out.summary.status, RunStatus::Succeeded);
    assert_eq!(out.results_of("Collect"), [&json!({"got": []})]);
    assert!(out.records_of("Work").is_empty());
    let gen_id = out.records_of("Gen")[0].id;
    assert_eq!(
        out.records_of("Collect")[0].parents[..],
        [gen_id],
        "with no items to come from, it comes from the fan-out"
    );
}

#[test]
fn a_fan_out_of_a_non_array_fails_naming_the_type() {
    let project = Builder::new()
        .scripted(&["Gen", "Work"])
        .link("Gen", "Work", FanOut)
        .build();
    let script = Script::new().block("Gen", |_| Reply::returns(json!({"a": 1})));
    let out = run_scripted(project, &script, Value::Null, None);
    assert_eq!(out.summary.status, RunStatus::Failed);
    assert_eq!(
        out.summary.failures[0].error,
        "TypeError: fan-out needs an array, got object"
    );
    let gen_record = out.records_of("Gen")[0];
    assert_eq!(gen_record.status, InvocationStatus::Exception);
    assert_eq!(
        gen_record.output,
        Some(json!({"a": 1})),
        "what it returned is kept"
    );
    assert!(out.records_of("Work").is_empty());
}

#[test]
fn nested_fan_outs_with_hops_between_close_in_order() {
    let project = Builder::new()
        .scripted(&["Rows", "Cells", "Square", "Hop", "RowSum", "Table"])
        .link("Rows", "Cells", FanOut)
        .link("Cells", "Square", FanOut)
        .link("Square", "Hop", Then)
        .link("Hop", "RowSum", FanIn)
        .link("RowSum", "Table", FanIn)
        .build();
    let script = Script::new()
        .block("Rows", |_| Reply::returns(json!([[1, 2], [3, 4, 5], []])))
        .block("Square", |call| Reply::returns(json!(n(call) * n(call))))
        .block("RowSum", |call| {
            let cells = call.input.as_array().expect("an array");
            Reply::returns(json!(cells.iter().filter_map(Value::as_i64).sum::<i64>()))
        });
    let out = run_scripted(project, &script, Value::Null, None);
    assert_eq!(
        out.summary.status,
        RunStatus::Succeeded,
        "{:?}",
        out.summary.failures
    );
    assert_eq!(out.results_of("Table"), [&json!([5, 50, 0])]);
    let paths = |block: &str| -> Vec<Vec<u32>> {
        let mut paths: Vec<Vec<u32>> = out
            .records_of(block)
            .iter()
            .map(|r| r.item_path.to_vec())
            .collect();
        paths.sort();
        paths
    };
    let cells = vec![vec![0, 0], vec![0, 1], vec![1, 0], vec![1, 1], vec![1, 2]];
    assert_eq!(paths("Square"), cells);
    assert_eq!(paths("Hop"), cells);
    assert_eq!(paths("Cells"), [vec![0], vec![1], vec![2]]);
    assert_eq!(paths("RowSum"), [vec![0], vec![1], vec![2]]);
    assert_eq!(paths("Table"), [Vec::<u32>::new()]);
    // Each row's sum came from its own cells' hops, in cell order; the empty row's from its fan-out.
    for row in out.records_of("RowSum") {
        let mut hops: Vec<(Vec<u32>, u64)> = out
            .records_of("Hop")
            .iter()
            .filter(|h| h.item_path[0] == row.item_path[0])
            .map(|h| (h.item_path.to_vec(), h.id))
            .collect();
        hops.sort();
        let mut expected: Vec<u64> = hops.into_iter().map(|(_, id)| id).collect();
        if expected.is_empty() {
            let cells = out.records_of("Cells");
            expected.extend(
                cells
                    .iter()
                    .filter(|c| c.item_path == row.item_path)
                    .map(|c| c.id),
            );
        }
        assert_eq!(row.parents.to_vec(), expected, "row {:?}", row.item_path);
    }
}

#[test]
fn a_failing_item_fails_the_fan_in_and_names_what_is_missing_and_why() {
    let project = Builder::new()
        .scripted(&["Gen", "Process", "Filter", "Collect"])
        .link("Gen", "Process", FanOut)
        .link_if("Process", "Filter", If, "return_data != 50")
        .link("Filter", "Collect", FanIn)
        .build();
    let script = Script::new()
        .block("Gen", gen_items(100))
        .block("Process", |call| {
            let x = n(call);
            if [3, 17, 42].contains(&x) {
                Reply::raises("ValueError", "bad row")
            } else {
                Reply::returns(json!(x)).with_ifs([x != 50])
            }
        });
    let out = run_scripted(project, &script, Value::Null, Some(10));
    assert_eq!(out.summary.status, RunStatus::Failed);
    assert!(
        out.records_of("Collect").is_empty(),
        "the fan-in never fires"
    );
    let fan_in = out
        .summary
        .failures
        .iter()
        .find(|f| f.status == "fan_in")
        .expect("a fan-in failure");
    assert_eq!(
        fan_in.error,
        "fan-in \"Collect\" got 96 of 100 results; missing items 3, 17, 42, 50 (item 3: ValueError: bad row in \"Process\"; item 17: ValueError: bad row in \"Process\"; item 42: ValueError: bad row in \"Process\")"
    );
    assert_eq!(
        (
            fan_in.block.as_str(),
            fan_in.item_path.len(),
            fan_in.invocation
        ),
        ("Collect", 0, None)
    );
    let failed_items: Vec<Vec<u32>> = out
        .summary
        .failures
        .iter()
        .filter(|f| f.block == "Process")
        .map(|f| f.item_path.clone())
        .collect();
    assert_eq!(failed_items, [vec![3], vec![17], vec![42]]);
    // Item 50 fired nothing: its record says so.
    let item_50 = out.records_of("Process")[50];
    assert_eq!(item_50.item_path[..], [50]);
    assert!(item_50.fired.is_empty());
}

#[test]
fn a_merge_waits_for_every_source_and_takes_them_in_transition_order() {
    let project = Builder::new()
        .scripted(&["Start", "Slow", "Fast", "Join"])
        .link("Start", "Slow", Then)
        .link("Start", "Fast", Then)
        .link("Slow", "Join", Merge)
        .link("Fast", "Join", Merge)
        .build();
    let script = Script::new()
        .block("Start", |_| {
            Reply::returns(json!(5)).with_backpack(json!({"start": 1}))
        })
        .block("Slow", |_| {
            Reply::returns(json!("slow"))
                .with_backpack(json!({"start": 1, "who": "slow"}))
                .held()
        })
        .block("Fast", |_| {
            Reply::returns(json!("fast")).with_backpack(json!({"start": 1, "who": "fast"}))
        });
    let mut runtime = scripted_runtime(&script);
    let run_id = start(&runtime, project, None);
    // Fast ends at once; Slow only now.
    let slow = script.wait_held(1);
    assert_eq!(slow[0].block, "Slow");
    script.release_all();
    let out = finish(&mut runtime, &run_id);
    assert_eq!(out.results_of("Join"), [&json!(["slow", "fast"])]);
    let join = out.records_of("Join")[0];
    assert_eq!(
        *join.backpack_in,
        json!({"start": 1, "who": "fast"}),
        "the later transition's backpack wins"
    );
    let (slow, fast) = (out.records_of("Slow")[0].id, out.records_of("Fast")[0].id);
    assert_eq!(join.parents[..], [slow, fast]);
}

#[test]
fn a_merge_inside_a_fan_out_fires_per_item_and_fails_where_a_source_is_missing() {
    let project = Builder::new()
        .scripted(&["Gen", "Split", "Left", "Right", "Join"])
        .link("Gen", "Split", FanOut)
        .link("Split", "Left", Then)
        .link("Split", "Right", Then)
        .link("Left", "Join", Merge)
        .link("Right", "Join", Merge)
        .build();
    let script = Script::new()
        .block("Gen", gen_items(4))
        .block("Right", |call| {
            if n(call) == 2 {
                Reply::raises("RuntimeError", "no right side")
            } else {
                Reply::returns(json!(-n(call)))
            }
        });
    let out = run_scripted(project, &script, Value::Null, None);
    assert_eq!(out.summary.status, RunStatus::Failed);
    assert_eq!(
        out.results_of("Join"),
        [&json!([0, 0]), &json!([1, -1]), &json!([3, -3])]
    );
    let joins: Vec<Vec<u32>> = out
        .records_of("Join")
        .iter()
        .map(|r| r.item_path.to_vec())
        .collect();
    let mut sorted = joins.clone();
    sorted.sort();
    assert_eq!(sorted, [vec![0], vec![1], vec![3]]);
    let merge = out
        .summary
        .failures
        .iter()
        .find(|f| f.status == "merge")
        .expect("a merge failure");
    assert_eq!(
        merge.error,
        "merge \"Join\" got 1 of 2 inputs at item [2]; missing the result of \"Right\" (RuntimeError: no right side in \"Right\")"
    );
    assert_eq!(merge.item_path, vec![2]);
}

#[test]
fn a_merge_at_the_top_that_never_completes_fails_the_run_when_it_ends() {
    let project = Builder::new()
        .scripted(&["Start", "Left", "Right", "Join"])
        .link("Start", "Left", Then)
        .link_if("Start", "Right", If, "False")
        .link("Left", "Join", Merge)
        .link("Right", "Join", Merge)
        .build();
    let script = Script::new().block("Start", |_| Reply::returns(json!(1)).with_ifs([false]));
    let out = run_scripted(project, &script, Value::Null, None);
    assert_eq!(out.summary.status, RunStatus::Failed);
    assert_eq!(
        out.summary.failures[0].error,
        "merge \"Join\" got 1 of 2 inputs; missing the result of \"Right\""
    );
    assert!(out.records_of("Join").is_empty());
}

#[test]
fn the_limit_holds_the_rest_back_first_in_first_out_and_is_used() {
    let project = Builder::new()
        .scripted(&["Gen", "Work", "Collect"])
        .link("Gen", "Work", FanOut)
        .link("Work", "Collect", FanIn)
        .build();
    let script = Script::new()
        .block("Gen", gen_items(40))
        .block("Work", |call| Reply::returns(call.input.clone()).held());
    let mut runtime = scripted_runtime(&script);
    let run_id = start(&runtime, project, Some(5));
    let running = script.wait_held(5);
    assert_eq!(inputs(&running), [0, 1, 2, 3, 4].map(|i| json!(i)));
    // One ends: the next in line starts, and only it.
    script.release(running[2].key);
    let running = script.wait_held(5);
    assert_eq!(inputs(&running), [0, 1, 3, 4, 5].map(|i| json!(i)));
    let out = finish_releasing(&mut runtime, &script, &run_id);
    assert_eq!(out.summary.status, RunStatus::Succeeded);
    assert_eq!(
        script.max_in_flight(),
        5,
        "never more than the limit, and all of it"
    );
    let started: Vec<Value> = script
        .submitted()
        .iter()
        .filter(|s| s.block == "Work")
        .map(|s| s.input.clone())
        .collect();
    assert_eq!(started, (0..40).map(|i| json!(i)).collect::<Vec<_>>());
}

#[test]
fn a_per_block_cap_limits_that_block_only() {
    let project = Builder::new()
        .scripted(&["Gen", "Capped", "Free"])
        .cap("Capped", 2)
        .link("Gen", "Capped", FanOut)
        .link("Gen", "Free", FanOut)
        .build();
    let script = Script::new()
        .block("Gen", gen_items(12))
        .block("Capped", |call| Reply::returns(call.input.clone()).held())
        .block("Free", |call| Reply::returns(call.input.clone()).held());
    let mut runtime = scripted_runtime(&script);
    let run_id = start(&runtime, project, Some(50));
    let of = |held: &[Held], block: &str| -> Vec<Held> {
        held.iter().filter(|h| h.block == block).cloned().collect()
    };
    let held = script.wait_held(14);
    assert_eq!(inputs(&of(&held, "Capped")), [json!(0), json!(1)]);
    assert_eq!(of(&held, "Free").len(), 12);
    // A capped invocation ends: the next capped one starts in its place.
    script.release(of(&held, "Capped")[0].key);
    let held = script.wait_held(14);
    assert_eq!(inputs(&of(&held, "Capped")), [json!(1), json!(2)]);
    let out = finish_releasing(&mut runtime, &script, &run_id);
    assert_eq!(out.summary.status, RunStatus::Succeeded);
    assert_eq!(out.records_of("Capped").len(), 12);
}

#[test]
fn ten_thousand_items_at_limit_1000_all_complete() {
    let project = Builder::new()
        .scripted(&["Gen", "Double", "Collect"])
        .link("Gen", "Double", FanOut)
        .link("Double", "Collect", FanIn)
        .build();
    let script = Script::new()
        .block("Gen", gen_items(10_000))
        .block("Double", |call| Reply::returns(json!(n(call) * 2)))
        .block("Collect", |call| {
            let values = call.input.as_array().expect("an array");
            Reply::returns(json!([
                values.len(),
                values.iter().filter_map(Value::as_i64).sum::<i64>()
            ]))
        });
    let out = run_scripted(project, &script, Value::Null, Some(1000));
    assert_eq!(out.summary.status, RunStatus::Succeeded);
    assert_eq!(out.summary.invocations, 10_002);
    assert_eq!(out.records.len(), 10_002);
    assert_eq!(
        out.results_of("Collect"),
        [&json!([10_000, 9_999 * 10_000])]
    );
    assert!(script.max_in_flight() <= 1000, "{}", script.max_in_flight());
}

#[test]
fn cancel_ends_every_queued_and_running_invocation_as_cancelled_and_the_runtime_goes_on() {
    let project = Builder::new()
        .scripted(&["Gen", "Sleep", "Collect"])
        .link("Gen", "Sleep", FanOut)
        .link("Sleep", "Collect", FanIn)
        .build();
    let script = Script::new()
        .block("Gen", gen_items(200))
        .block("Sleep", |call| Reply::returns(call.input.clone()).held());
    let mut runtime = scripted_runtime(&script);
    let run_id = start(&runtime, project, Some(10));
    let running = script.wait_held(10);
    runtime.send(RuntimeRequest::Cancel(run_id.clone()));
    let out = finish(&mut runtime, &run_id);
    assert_eq!(out.summary.status, RunStatus::Cancelled);
    assert!(out.summary.failures.is_empty());
    let sleep = out.records_of("Sleep");
    assert_eq!(sleep.len(), 200);
    assert!(
        sleep
            .iter()
            .all(|r| r.status == InvocationStatus::Cancelled && r.output.is_none()),
        "every queued and running item ends as cancelled"
    );
    let paths: Vec<u32> = sleep.iter().map(|r| r.item_path[0]).collect();
    assert_eq!(paths, (0..200).collect::<Vec<_>>());
    assert_eq!(out.records_of("Gen")[0].status, InvocationStatus::Succeeded);
    assert!(out.records_of("Collect").is_empty());
    let mut asked = script.wait_cancelled(running.len());
    asked.sort_unstable();
    assert_eq!(
        asked,
        running.iter().map(|h| h.key).collect::<Vec<_>>(),
        "the invoker is asked to stop exactly the running ones"
    );
    assert!(script.held().is_empty(), "the invoker stopped them");
    // The same runtime runs the next pipeline normally.
    let next = Builder::new().scripted(&["A"]).build();
    let again = run_on(&mut runtime, next, json!("again"), None, |_, _, _| {});
    assert_eq!(again.results_of("A"), [&json!("again")]);
}

/// Replies that come after their run was cancelled (a worker too busy to stop at once) change nothing:
/// not the cancelled run's records, and not the next run's, though it reuses the workers.
#[test]
fn late_replies_of_a_cancelled_run_are_dropped() {
    let project = Builder::new()
        .scripted(&["Gen", "Work"])
        .link("Gen", "Work", FanOut)
        .build();
    let script = Script::new()
        .ignoring_cancel()
        .block("Gen", gen_items(6))
        .block("Work", |call| Reply::returns(call.input.clone()).held());
    let mut runtime = scripted_runtime(&script);
    let first = start(&runtime, project.clone(), Some(3));
    script.wait_held(3);
    runtime.send(RuntimeRequest::Cancel(first.clone()));
    let cancelled = finish(&mut runtime, &first);
    assert_eq!(cancelled.summary.status, RunStatus::Cancelled);
    assert_eq!(script.held().len(), 3, "still running in the invoker");

    let second = start(&runtime, project, Some(3));
    let held = script.wait_held(6);
    // The first run's three answer now, late, before any of the second run's.
    assert_eq!(script.release_where(|h| held[..3].contains(h)), 3);
    let out = finish_releasing(&mut runtime, &script, &second);
    assert_eq!(out.summary.status, RunStatus::Succeeded);
    assert_eq!(out.records.len(), 7);
    assert!(out.records.iter().all(|r| r.run_id == second));
    let expected: Vec<Value> = (0..6).map(|i| json!(i)).collect();
    assert_eq!(out.results_of("Work"), expected.iter().collect::<Vec<_>>());
    // Nothing more arrives for the first run.
    while let Some(event) = runtime.recv_timeout(std::time::Duration::from_millis(100)) {
        assert_ne!(event.run_id(), &first, "{event:?}");
    }
}

#[test]
fn results_are_ordered_by_block_then_item_whatever_the_finishing_order() {
    let project = Builder::new()
        .scripted(&["Gen", "First", "Second"])
        .link("Gen", "First", FanOut)
        .link("Gen", "Second", FanOut)
        .build();
    let script = Script::new()
        .block("Gen", gen_items(3))
        .block("First", |call| {
            Reply::returns(json!(format!("first {}", n(call)))).held()
        })
        .block("Second", |call| {
            Reply::returns(json!(format!("second {}", n(call)))).held()
        });
    let mut runtime = scripted_runtime(&script);
    let run_id = start(&runtime, project, None);
    for item in script.wait_held(6).iter().rev() {
        script.release(item.key);
    }
    let out = finish(&mut runtime, &run_id);
    let results: Vec<(&str, Vec<u32>, &Value)> = out
        .summary
        .results
        .iter()
        .map(|r| (r.block.as_str(), r.item_path.clone(), &r.output))
        .collect();
    assert_eq!(
        results,
        [
            ("First", vec![0], &json!("first 0")),
            ("First", vec![1], &json!("first 1")),
            ("First", vec![2], &json!("first 2")),
            ("Second", vec![0], &json!("second 0")),
            ("Second", vec![1], &json!("second 1")),
            ("Second", vec![2], &json!("second 2")),
        ]
    );
}

#[test]
fn an_else_without_an_if_is_refused_by_validation() {
    let project = Builder::new()
        .scripted(&["A", "B"])
        .link("A", "B", Else)
        .build();
    let out = run_scripted(project, &Script::new(), Value::Null, None);
    assert_eq!(
        out.refused.as_deref(),
        Some(
            "the project has problems:\n  Transition \"else\" from \"A\" to \"B\" has no \"if\" beside it, so it could never fire"
        )
    );
    assert!(out.records.is_empty());
}

#[test]
fn code_that_does_not_compile_refuses_the_run_naming_block_and_line() {
    let project = Builder::new()
        .scripted(&["A", "B"])
        .link("A", "B", Then)
        .build();
    let script = Script::new().compile_error("B", Some(3), "SyntaxError: invalid syntax");
    let out = run_scripted(project, &script, Value::Null, None);
    assert_eq!(
        out.refused.as_deref(),
        Some("the code has problems, so nothing ran:\n  \"B\" line 3: SyntaxError: invalid syntax")
    );
    assert!(script.submitted().is_empty(), "nothing ran");
}

#[test]
fn bad_requests_are_refused_with_what_is_wrong() {
    let script = Script::new();
    let mut runtime = scripted_runtime(&script);
    let refused = |runtime: &mut RuntimeHandle, request: RunRequest| {
        run_request_on(runtime, request, |_, _, _| {})
            .refused
            .expect("refused")
    };
    let project = Builder::new().scripted(&["A"]).build();
    let mut from_nowhere = RunRequest::new(RunId::new_random(), project.clone());
    from_nowhere.from = Some(BlockId("no-such-block".into()));
    assert_eq!(
        refused(&mut runtime, from_nowhere),
        "there is no block no-such-block"
    );
    let mut backpack = RunRequest::new(RunId::new_random(), project);
    backpack.backpack = json!([1]);
    assert_eq!(
        refused(&mut runtime, backpack),
        "the backpack must be a JSON object"
    );
    let looped = Builder::new()
        .scripted(&["A", "B"])
        .link("A", "B", Then)
        .link("B", "A", Then)
        .build();
    assert_eq!(
        refused(&mut runtime, RunRequest::new(RunId::new_random(), looped)),
        "every block has an incoming transition, so there is no entry block: choose a block to start from"
    );
    assert!(script.submitted().is_empty());
}

/// A replay runs the chosen block once on the given input and fires nothing after it.
#[test]
fn a_single_run_runs_its_block_once_and_fires_nothing() {
    let project = Builder::new()
        .scripted(&["A", "B"])
        .link("A", "B", Then)
        .build();
    let script = Script::new().block("B", |call| Reply::returns(json!(n(call) + 1)));
    let mut runtime = scripted_runtime(&script);
    let mut request = RunRequest::new(RunId::new_random(), project);
    request.from = Some(BlockId("id-B".into()));
    request.single = true;
    request.input = json!(41);
    let out = run_request_on(&mut runtime, request, |_, _, _| {});
    assert_eq!(out.summary.status, RunStatus::Succeeded);
    assert_eq!(out.results_of("B"), [&json!(42)]);
    assert_eq!(out.records.len(), 1);
    assert!(out.records[0].fired.is_empty());
}

/// An invoker that can't run anything (Python won't start) refuses the runs waiting for it and every
/// run and check after, with its message, for as long as it can't; once it can, runs run again (the
/// engine does not hold on to it: before, it refused every run until a restart).
#[test]
fn a_broken_invoker_refuses_runs_and_checks_with_its_message() {
    let script = Script::new();
    let mut runtime = scripted_runtime(&script);
    script.break_with("Python could not start: no libpython");
    // The runtime learns of it in its own time: wait until a run is refused.
    let project = Builder::new().scripted(&["A"]).build();
    let message = (0..1000)
        .find_map(|_| {
            run_on(
                &mut runtime,
                project.clone(),
                Value::Null,
                None,
                |_, _, _| {},
            )
            .refused
        })
        .expect("a run is refused");
    assert_eq!(message, "Python could not start: no libpython");
    let check_id = RunId::new_random();
    runtime.send(RuntimeRequest::Check {
        check_id: check_id.clone(),
        project: Box::new(project.clone()),
    });
    let refused = loop {
        match runtime.recv_timeout(std::time::Duration::from_secs(10)) {
            Some(RuntimeEvent::RunRefused {
                run_id, message, ..
            }) if run_id == check_id => {
                break message;
            }
            Some(_) => {}
            None => panic!("the check got no answer"),
        }
    };
    assert_eq!(refused, "Python could not start: no libpython");
    script.mend();
    let out = run_on(&mut runtime, project, Value::Null, None, |_, _, _| {});
    assert_eq!(out.refused, None);
    assert_eq!(out.summary.status, RunStatus::Succeeded);
}

/// What workers write outside any invocation reaches the runs going on, numbered from 1, up to 1,000
/// lines a run, then a note says where the rest are.
#[test]
fn worker_output_reaches_the_run_going_on_capped_with_a_note() {
    let project = Builder::new().scripted(&["Flood"]).build();
    let script = Script::new().block("Flood", |_| Reply::returns(Value::Null).held());
    let mut runtime = scripted_runtime(&script);
    let run_id = start(&runtime, project, None);
    script.wait_held(1);
    script.write_output(0, vec!["hello".to_owned()]);
    script.write_output(1, (0..1500).map(|i| format!("line {i}")).collect());
    script.write_output(1, vec!["never shown".to_owned()]);
    // The invoker sends what it was given in order: the lines, then the end of the invocation.
    script.release_all();
    let mut lines = Vec::new();
    loop {
        match runtime.recv_timeout(std::time::Duration::from_secs(10)) {
            Some(RuntimeEvent::WorkerOutput {
                worker,
                lines: more,
                ..
            }) => lines.extend(
                more.into_iter()
                    .map(|line| format!("worker {worker}: {line}")),
            ),
            Some(RuntimeEvent::RunFinished(summary)) if summary.run_id == run_id => {
                assert_eq!(summary.status, RunStatus::Succeeded);
                break;
            }
            Some(_) => {}
            None => panic!("the run did not end"),
        }
    }
    assert_eq!(
        lines.len(),
        1001,
        "{:?}",
        &lines[lines.len().saturating_sub(3)..]
    );
    assert_eq!(lines[0], "worker 1: hello");
    assert_eq!(lines[999], "worker 2: line 998");
    assert_eq!(
        lines[1000],
        "worker 2: [Braid shows a run's first 1,000 lines of worker output; RUST_LOG=braid::worker=debug logs all of them]"
    );
}
