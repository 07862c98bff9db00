//! What only real Python shows: what a block's code sees and reports (its backpack, `if` expressions,
//! exceptions, printed output, threads, subprocesses, the interpreter), how the workers stop it
//! (timeouts, cancel) and hostile code that must fail only its own item. The engine's semantics
//! (transitions, fan-out/fan-in, merges, limits, records) are tested over a script in `engine.rs`.

use std::time::{Duration, Instant};

use braid::model::TransitionKind::{Exception, FanIn, FanOut, If, Then};
use braid::run::{InvocationStatus, RunId, RunStatus};
use braid::runtime::{RunRequest, RuntimeEvent, RuntimeHandle, RuntimeRequest};
use serde_json::{Value, json};

use crate::support::{Builder, items, run, run_on, run_request_on, run_with, runtime_config};

const IDENTITY: &str = "def main(block_input, backpack):\n    return block_input\n";

/// A block changes the backpack it was given in place, and that is what goes on; binding the name to
/// another dictionary changes nothing. What it prints is its own.
#[test]
fn a_block_changes_its_backpack_in_place_and_rebinding_it_changes_nothing() {
    let project = Builder::new()
        .block(
            "A",
            "def main(block_input, backpack):\n    backpack['seen'] = block_input\n    print('from A')\n    return block_input + 1\n",
        )
        .block(
            "B",
            "def main(block_input, backpack):\n    backpack = {'rebinding': 'has no effect'}\n    return block_input * 10\n",
        )
        .link("A", "B", Then)
        .build();
    let out = run(project, json!(4));
    assert_eq!(out.results_of("B"), vec![&json!(50)]);
    let a = out.records_of("A")[0];
    assert_eq!(a.stdout, "from A\n");
    assert_eq!(a.backpack_out.as_deref(), Some(&json!({"seen": 4})));
    let b = out.records_of("B")[0];
    assert_eq!(*b.backpack_in, json!({"seen": 4}));
    assert_eq!(
        b.backpack_out.as_deref(),
        Some(&json!({"seen": 4})),
        "rebinding the name changes nothing"
    );
}

/// Recorded times are wall-clock times of the invocation itself: a 0.2 s sleep records about 0.2 s,
/// starting between the run's request and its end, whether it printed (a full result row) or not.
#[test]
fn recorded_times_are_the_invocations_own() {
    let sleep = |printed: &str| {
        format!(
            "import time\ndef main(block_input, backpack):\n    time.sleep(0.2)\n    {printed}\n    return block_input\n"
        )
    };
    let project = Builder::new()
        .block("Quiet", &sleep("pass"))
        .block("Loud", &sleep("print('done')"))
        .link("Quiet", "Loud", Then)
        .build();
    let before = braid::run::now_ms();
    let out = run(project, json!(1));
    let after = braid::run::now_ms();
    assert_eq!(out.summary.status, RunStatus::Succeeded);
    for block in ["Quiet", "Loud"] {
        let record = out.records_of(block)[0];
        let (start, end) = (
            record.started_at_ms.expect("started"),
            record.ended_at_ms.expect("ended"),
        );
        assert!(
            before <= start && end <= after,
            "{block}: {start}..{end} outside {before}..{after}"
        );
        let took = end - start;
        assert!((195.0..1000.0).contains(&took), "{block} took {took} ms");
    }
}

/// An `if` expression sees the block's return value, its input and its backpack; one that raises fails
/// the invocation (here caught by an exception transition), and no other transition fires.
#[test]
fn if_expressions_see_the_value_input_and_backpack_and_one_that_raises_fails_the_invocation() {
    let project = Builder::new()
        .block(
            "Measure",
            "def main(block_input, backpack):\n    backpack['n'] = block_input\n    return block_input * 2\n",
        )
        .block("Seen", IDENTITY)
        .block("Caught", IDENTITY)
        .link_if(
            "Measure",
            "Seen",
            If,
            "return_data == 2 * block_input and backpack['n'] == block_input",
        )
        .link_if("Measure", "Seen", If, "return_data['missing']")
        .link("Measure", "Caught", Exception)
        .build();
    let out = run(project, json!(3));
    let measure = out.records_of("Measure")[0];
    assert_eq!(measure.status, InvocationStatus::CaughtException);
    let error = measure.error.as_ref().expect("the second if raised");
    assert_eq!(error.kind, "TypeError", "{error:?}");
    assert!(out.results_of("Seen").is_empty(), "nothing else fires");
    let caught = out.results_of("Caught")[0];
    assert!(
        caught["exception_text"]
            .as_str()
            .unwrap()
            .contains("TypeError"),
        "{caught}"
    );

    let project = Builder::new()
        .block(
            "Measure",
            "def main(block_input, backpack):\n    backpack['n'] = block_input\n    return block_input * 2\n",
        )
        .block("Seen", IDENTITY)
        .link_if(
            "Measure",
            "Seen",
            If,
            "return_data == 2 * block_input and backpack['n'] == block_input",
        )
        .build();
    assert_eq!(run(project, json!(3)).results_of("Seen"), [&json!(6)]);
}

/// An uncaught exception is reported as Python reports it: its type, message, the block's line and a
/// traceback naming the block as the file; the backpack goes on as it was when it was raised.
#[test]
fn a_raise_reports_its_type_line_and_traceback_and_the_backpack_as_it_was() {
    let project = Builder::new()
        .block(
            "Parse",
            "def main(block_input, backpack):\n    backpack['tried'] = True\n    return int(block_input)\n",
        )
        .block("Report", IDENTITY)
        .link("Parse", "Report", Exception)
        .build();
    let out = run(project, json!("forty-two"));
    let parse = out.records_of("Parse")[0];
    let error = parse.error.as_ref().unwrap();
    assert_eq!(error.kind, "ValueError");
    assert_eq!(
        error.message,
        "invalid literal for int() with base 10: 'forty-two'"
    );
    assert_eq!(error.line, Some(3));
    assert!(
        error.traceback.contains("File \"Parse\", line 3, in main"),
        "{}",
        error.traceback
    );
    assert_eq!(
        *out.records_of("Report")[0].backpack_in,
        json!({"tried": true})
    );
}

/// Cancel stops invocations still running in Python (here sleeping) at once, and the workers are fit
/// for the next run.
#[test]
fn cancel_stops_running_python_promptly() {
    let project = Builder::new()
        .block("Gen", &items(200))
        .block("Sleep", "import time\ndef main(block_input, backpack):\n    time.sleep(2)\n    return block_input\n")
        .block("Collect", IDENTITY)
        .link("Gen", "Sleep", FanOut)
        .link("Sleep", "Collect", FanIn)
        .build();
    let mut runtime = RuntimeHandle::start(runtime_config()).unwrap();
    let mut sent = None;
    let out = run_on(
        &mut runtime,
        project,
        Value::Null,
        Some(10),
        |rt, run_id, event| {
            if sent.is_none() && matches!(event, RuntimeEvent::Invocations { .. }) {
                sent = Some(Instant::now());
                rt.send(RuntimeRequest::Cancel(run_id.clone()));
            }
        },
    );
    let took = sent.expect("cancel was sent").elapsed();
    assert!(took < Duration::from_secs(1), "cancel took {took:?}");
    assert_eq!(out.summary.status, RunStatus::Cancelled);
    // The same runtime runs the next pipeline normally: the cancelled work left nothing behind.
    let next = Builder::new()
        .block(
            "A",
            "def main(block_input, backpack):\n    return 'again'\n",
        )
        .build();
    let again = run_on(&mut runtime, next, Value::Null, None, |_, _, _| {});
    assert_eq!(again.results_of("A"), vec![&json!("again")]);
}

#[test]
fn syntax_error_refuses_the_run_naming_block_and_line() {
    // Code Block #1 of Refinery's guide (docs/spec/refinery-fan-out-fan-in.md) as a plain-text copy of
    // the page has it: the loop's body is lost.
    let seed = "def main(block_input, backpack):\n    return_list = []\n\n    # Generate a list of 100 numbers in an array\n    for i in range( 0, 100 ):\n\n    # Return the array\n    return return_list\n";
    let project = Builder::new()
        .block("Code Block #1", seed)
        .block("Code Block #2", IDENTITY)
        .link("Code Block #1", "Code Block #2", FanOut)
        .build();
    let out = run(project, Value::Null);
    let message = out.refused.expect("the run is refused");
    assert!(message.contains("\"Code Block #1\" line 8"), "{message}");
    assert!(message.contains("IndentationError"), "{message}");
    assert!(out.records.is_empty(), "nothing ran");
}

/// An `if` expression that does not compile is reported on its transition (the inspector shows it
/// under that transition's expression), the second `if` of its block here; the block's code on the block.
#[test]
fn a_bad_if_expression_is_reported_on_its_transition() {
    let project = Builder::new()
        .block("A", "def main(block_input, backpack)\n    return 1\n")
        .block("B", IDENTITY)
        .block("C", IDENTITY)
        .link_if("A", "B", If, "return_data > 1")
        .link_if("A", "C", If, "return_data >")
        .build();
    let second_if = project.transitions[1].id.clone();
    let mut runtime = RuntimeHandle::start(runtime_config()).unwrap();
    let check_id = RunId::new_random();
    runtime.send(RuntimeRequest::Check {
        check_id: check_id.clone(),
        project: Box::new(project),
    });
    let errors = loop {
        match runtime
            .recv_timeout(Duration::from_secs(30))
            .expect("checked")
        {
            RuntimeEvent::Checked {
                check_id: id,
                compile_errors,
            } if id == check_id => break compile_errors,
            _ => {}
        }
    };
    let got: Vec<(&str, &str, Option<u32>)> = errors
        .iter()
        .map(|e| (e.block.as_str(), e.what.as_str(), e.line))
        .collect();
    assert_eq!(
        got,
        [("A", "code", Some(1)), ("A", &*second_if.0, None)],
        "{errors:?}"
    );
}

#[test]
fn blocks_run_on_the_interpreter_braid_was_built_with() {
    let project = Builder::new()
        .block("Version", "import sys\ndef main(block_input, backpack):\n    return [sys.version_info[0], sys.version_info[1], sys.version_info[2], sys.prefix]\n")
        .build();
    let out = run(project, Value::Null);
    let v = out.results_of("Version")[0];
    let expected = std::process::Command::new("python3")
        .args(["-c", "import sys; print(sys.version_info[2])"])
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse::<u64>().ok());
    assert_eq!(v[0], 3);
    assert_eq!(v[1], 11);
    if let Some(micro) = expected {
        assert_eq!(v[2], micro, "not Debian's libpython: {v}");
    }
}

/// One item of ten misbehaves; the other nine succeed and the editor process is untouched.
fn hostile(body: &str, timeout_s: u64) -> crate::support::Outcome {
    let code = format!(
        "import os, sys, time, ctypes\ndef main(block_input, backpack):\n    if block_input == 4:\n{body}\n    return block_input\n"
    );
    let project = Builder::fan_out(10, "Work", &code)
        .timeout("Work", timeout_s)
        .build();
    run_with(project, Value::Null, Some(10))
}

/// The record of the item that misbehaved.
fn item_4(out: &crate::support::Outcome) -> &braid::run::InvocationRecord {
    out.records_of("Work")
        .into_iter()
        .find(|r| r.item_path[..] == [4])
        .expect("item 4's record")
}

fn assert_only_item_4_failed(
    out: &crate::support::Outcome,
    status: InvocationStatus,
    error_has: &str,
) {
    let work = out.records_of("Work");
    assert_eq!(work.len(), 10);
    for r in &work {
        if r.item_path[..] == [4] {
            assert_eq!(r.status, status, "{r:?}");
            let error = r.error.as_ref().expect("an error");
            assert!(error.summary().contains(error_has), "{error:?}");
        } else {
            assert_eq!(r.status, InvocationStatus::Succeeded, "{r:?}");
        }
    }
    assert_eq!(out.summary.status, RunStatus::Failed);
    assert_eq!(out.summary.failures.len(), 1);
    assert_eq!(out.summary.failures[0].item_path, vec![4]);
}

#[test]
fn hostile_raise() {
    let out = hostile("        raise KeyError('nope')", 10);
    assert_only_item_4_failed(&out, InvocationStatus::Exception, "KeyError: 'nope'");
}

#[test]
fn hostile_infinite_loop_times_out() {
    let out = hostile("        while True:\n            pass", 2);
    assert_only_item_4_failed(&out, InvocationStatus::TimedOut, "timeout of 2 s");
    let stopped = item_4(&out);
    let error = stopped.error.as_ref().unwrap();
    assert!(
        error
            .traceback
            .ends_with("Timeout: ran past its timeout of 2 s\n"),
        "{}",
        error.traceback
    );
    assert!(
        matches!(error.line, Some(4 | 5)),
        "the loop's line, where it was stopped: {:?}",
        error.line
    );
}

/// A print in a runaway loop: the invocation times out like any loop, by the interrupt (its worker is
/// not killed), and keeps the first mebibyte of what it printed, with a note of how much was dropped
/// (keeping everything would take gigabytes of memory, and seconds of sending after the timeout).
#[test]
fn hostile_print_loop_keeps_the_first_of_its_output() {
    let out = hostile("        while True:\n            print('x' * 1000)", 1);
    assert_only_item_4_failed(&out, InvocationStatus::TimedOut, "timeout of 1 s");
    let chatty = item_4(&out);
    let error = chatty.error.as_ref().unwrap();
    assert!(
        !error.message.contains("killed"),
        "stopped by the interrupt: {error:?}"
    );
    assert!(
        chatty.stdout.starts_with(&"x".repeat(1000)),
        "{}",
        &chatty.stdout[..100]
    );
    let note = chatty.stdout.lines().last().unwrap();
    assert!(
        note.starts_with("[Braid kept the first 1,048,576 characters of this output; ")
            && note.ends_with(" more were dropped]"),
        "{note}"
    );
    assert!(chatty.stdout.len() < 1_048_576 + 200);
}

/// Module-level code that runs past the timeout of the invocation that first loads the block: that
/// invocation times out, and the next ones run the module code again instead of inheriting its
/// timeout. Only the first load is slow (a marker file), as with a cache warmed on first use.
#[test]
fn a_timed_out_module_load_is_not_the_next_invocations_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("loaded-once");
    let code = format!(
        "import os, time\nif not os.path.exists({marker:?}):\n    open({marker:?}, 'w').close()\n    t = time.time()\n    while time.time() - t < 30:\n        pass\n\ndef main(block_input, backpack):\n    return block_input\n"
    );
    let project = Builder::fan_out(6, "Work", &code)
        .timeout("Work", 1)
        .build();
    // One at a time, so every invocation after the first meets the block as the first one left it.
    let out = run_with(project, Value::Null, Some(1));
    let work = out.records_of("Work");
    assert_eq!(work.len(), 6);
    let timed_out: Vec<_> = work
        .iter()
        .filter(|r| r.status == InvocationStatus::TimedOut)
        .map(|r| r.item_path.to_vec())
        .collect();
    assert_eq!(timed_out, [vec![0]], "{work:#?}");
}

/// Text that is not Unicode (a lone surrogate, as `os.fsdecode` makes of a file name's undecodable
/// bytes): returned, it fails only its invocation, saying what and how to fix it; printed, or in an
/// exception's message, it is shown with U+FFFD in its place. It must not break the worker's whole
/// reply, which would have the worker killed and a message blaming the memory.
#[test]
fn hostile_text_that_is_not_unicode() {
    let out = hostile("        return os.fsdecode(b'file-\\xff.txt')", 10);
    assert_only_item_4_failed(&out, InvocationStatus::Exception, "not Unicode: '\\udcff'");

    let out = hostile(
        "        print(os.fsdecode(b'name-\\xfe'))\n        raise ValueError(os.fsdecode(b'bad-\\xfd'))",
        10,
    );
    assert_only_item_4_failed(
        &out,
        InvocationStatus::Exception,
        "ValueError: bad-\u{fffd}",
    );
    let printed = &item_4(&out).stdout;
    assert_eq!(printed, "name-\u{fffd}\n");
}

#[test]
fn hostile_sleep_past_timeout_kills_the_worker() {
    let out = hostile("        time.sleep(30)", 1);
    assert_only_item_4_failed(&out, InvocationStatus::TimedOut, "Timeout");
}

/// C code that holds the interpreter past the timeout, so that not even the worker's own monitor can
/// run, while something it started goes on writing to the worker's stderr: Braid's watchdog still
/// finds the worker silent (stderr is no sign of life) and kills it. Only that item fails, timed out.
#[test]
fn hostile_c_call_holding_the_interpreter_while_printing_times_out() {
    let out = hostile(
        "        ctypes.PyDLL(None).system(b'while true; do echo tick >&2; sleep 0.2; done')",
        1,
    );
    assert_only_item_4_failed(
        &out,
        InvocationStatus::TimedOut,
        "without letting its Python process answer",
    );
}

/// Workers that stop answering (C code holding the interpreter: a runaway regular expression, in items
/// 1 and 3) are ended like ones that crashed with no known culprit: each invocation they had runs again
/// alone, so only the items that silence a worker fail, timed out, and those that merely shared one
/// (sleeping 0.3 s each) succeed. Before, the watchdog blamed one of a silent worker's invocations at
/// random and ran the rest, culprits included, together again: items that only slept failed as timed
/// out, round after round.
#[test]
fn hostile_silent_workers_fail_only_the_items_that_silenced_them() {
    let code = "import re, time\ndef main(block_input, backpack):\n    if block_input in (1, 3):\n        re.match(r'(a+)+$', 'a' * 40 + 'b')\n    time.sleep(0.3)\n    return block_input\n";
    let project = Builder::fan_out(10, "Work", code)
        .timeout("Work", 1)
        .build();
    let started = Instant::now();
    let out = run_with(project, Value::Null, Some(10));
    let took = started.elapsed();
    let mut statuses: Vec<(u32, InvocationStatus)> = out
        .records_of("Work")
        .iter()
        .map(|r| (r.item_path[0], r.status))
        .collect();
    statuses.sort_by_key(|(item, _)| *item);
    let expected: Vec<(u32, InvocationStatus)> = (0..10)
        .map(|i| {
            let status = if i == 1 || i == 3 {
                InvocationStatus::TimedOut
            } else {
                InvocationStatus::Succeeded
            };
            (i, status)
        })
        .collect();
    assert_eq!(statuses, expected);
    for record in out.records_of("Work") {
        if let Some(error) = &record.error {
            assert_eq!(
                error.message,
                "ran past its timeout of 1 s without letting its Python process answer (C code \
                 holding Python's interpreter lock, say, such as a runaway regular expression); \
                 Braid killed the process"
            );
        }
    }
    // Found silent twice (with the others, then alone): about 2 × (1 s + 5 s of silence).
    assert!(took < Duration::from_secs(20), "the run took {took:?}");
}

#[test]
fn hostile_sys_exit() {
    let out = hostile("        sys.exit(2)", 10);
    assert_only_item_4_failed(&out, InvocationStatus::Exception, "sys.exit(2)");
}

#[test]
fn hostile_os_exit() {
    let out = hostile("        time.sleep(0.05)\n        os._exit(3)", 10);
    assert_only_item_4_failed(&out, InvocationStatus::Exception, "os._exit(3)");
}

#[test]
fn hostile_segfault() {
    let out = hostile("        ctypes.string_at(0)", 10);
    assert_only_item_4_failed(&out, InvocationStatus::Exception, "SIGSEGV");
    let crash = item_4(&out);
    assert!(
        crash
            .error
            .as_ref()
            .unwrap()
            .traceback
            .contains("Segmentation fault")
    );
}

/// A block that closes every file descriptor closes its worker's pipes to Braid, though the worker
/// goes on running. Only its item fails, and the message says what happened, not a SIGKILL and perhaps
/// the memory (Braid's own kill of the worker, mistaken for a crash).
#[test]
fn hostile_closing_every_file_descriptor() {
    let out = hostile("        os.closerange(0, 1024)", 10);
    assert_only_item_4_failed(
        &out,
        InvocationStatus::Exception,
        "closed its pipe to Braid (a block closing file descriptors, such as os.closerange",
    );
    let message = &item_4(&out).error.as_ref().unwrap().message;
    assert!(!message.contains("SIGKILL"), "{message}");
}

#[test]
fn hostile_non_json_return() {
    let out = hostile("        return {1, 2, 3}", 10);
    assert_only_item_4_failed(
        &out,
        InvocationStatus::Exception,
        "not JSON-serialisable: set",
    );
}

#[test]
fn hostile_cyclic_and_too_deep_values() {
    let out = hostile("        x = []\n        x.append(x)\n        return x", 10);
    assert_only_item_4_failed(&out, InvocationStatus::Exception, "not JSON-serialisable");
    // Nested deeper than the encoder can go: it fails alone too, rather than losing its result.
    let out = hostile(
        "        x = []\n        for _ in range(100000):\n            x = [x]\n        return x",
        10,
    );
    assert_only_item_4_failed(&out, InvocationStatus::Exception, "not JSON-serialisable");
    // Deeper than Braid keeps (127 levels), yet encodable: it fails alone, saying so; the same
    // with a printed line (a full result row), and in the backpack.
    for body in [
        "        x = 0\n        for _ in range(400):\n            x = [x]\n        return x",
        "        x = 0\n        for _ in range(400):\n            x = [x]\n        print('deep')\n        return x",
        "        x = 0\n        for _ in range(400):\n            x = [x]\n        backpack['deep'] = x",
    ] {
        let out = hostile(body, 10);
        assert_only_item_4_failed(&out, InvocationStatus::Exception, "levels deep");
    }
    // Within it: it passes through whole.
    let out = hostile(
        "        x = 0\n        for _ in range(100):\n            x = [x]\n        return x",
        10,
    );
    assert_eq!(
        out.summary.status,
        RunStatus::Succeeded,
        "{:?}",
        out.summary
    );
    let mut at = out.records_of("Work")[4].output.as_ref().expect("returned");
    let mut depth = 0;
    while let Some([inner]) = at.as_array().map(Vec::as_slice) {
        depth += 1;
        at = inner;
    }
    assert_eq!(depth, 100);
}

#[test]
fn hostile_memory_error() {
    let out = hostile("        raise MemoryError()", 10);
    assert_only_item_4_failed(&out, InvocationStatus::Exception, "MemoryError");
}

/// Every item of a fan-out keeps what is its own (printed output on either stream, its error, a
/// backpack it changed), whichever worker thread ran it and however the items were batched: most of a
/// big fan-out runs in the worker's native loop, which hands these back to its Python.
#[test]
fn every_item_of_a_fan_out_keeps_its_own_output_error_and_backpack() {
    let code = "import sys\n\
                def main(block_input, backpack):\n    \
                    x = block_input\n    \
                    if x % 3 == 0:\n        print(f'item {x}')\n    \
                    if x % 5 == 0:\n        print(f'warn {x}', file=sys.stderr)\n    \
                    if x % 7 == 6:\n        raise ValueError(f'bad {x}')\n    \
                    if x % 4 == 1:\n        backpack['seen'] = x\n    \
                    return x * 2\n";
    let project = Builder::fan_out(600, "Work", code).build();
    let out = run_with(project, Value::Null, Some(1000));
    let work = out.records_of("Work");
    assert_eq!(work.len(), 600);
    for r in work {
        let x = u64::from(r.item_path[0]);
        let printed = if x % 3 == 0 {
            format!("item {x}\n")
        } else {
            String::new()
        };
        let warned = if x % 5 == 0 {
            format!("warn {x}\n")
        } else {
            String::new()
        };
        assert_eq!((&r.stdout, &r.stderr), (&printed, &warned), "item {x}");
        if x % 7 == 6 {
            assert_eq!(r.status, InvocationStatus::Exception, "item {x}");
            let error = r.error.as_ref().expect("an error");
            assert_eq!(error.summary(), format!("ValueError: bad {x}"));
            assert_eq!(error.line, Some(9), "item {x}: {error:?}");
        } else {
            assert_eq!(r.status, InvocationStatus::Succeeded, "item {x}");
            assert_eq!(r.output, Some(json!(x * 2)), "item {x}");
        }
        // An item that raised did so before it changed its backpack.
        let seen = if x % 4 == 1 && x % 7 != 6 {
            json!({"seen": x})
        } else {
            json!({})
        };
        assert_eq!(r.backpack_out.as_deref(), Some(&seen), "item {x}");
        assert!(
            r.started_at_ms.unwrap() <= r.ended_at_ms.unwrap(),
            "item {x}"
        );
    }
}

/// Code written for a terminal runs as it is and prints into its own invocation: `sys.stdout` is a whole
/// text stream (`reconfigure`, `buffer`, `fileno` raising `io.UnsupportedOperation`, a `close` that
/// doesn't stop later output), and a block that replaces `sys.stdout` or `sys.stderr` for good takes
/// only its own printed output with it, not that of the invocations after it on the same worker.
#[test]
fn code_written_for_a_terminal_prints_into_its_own_invocation() {
    let code = "import contextlib, io, os, sys\n\
                def main(block_input, backpack):\n    \
                    x = block_input\n    \
                    if x == 0:\n        sys.stdout.reconfigure(encoding='utf-8', line_buffering=True)\n    \
                    if x == 1:\n        sys.stdout.buffer.write('raw é\\n'.encode())\n    \
                    if x == 2:\n        try:\n            sys.stderr.fileno()\n        except io.UnsupportedOperation:\n            print('no fileno')\n    \
                    if x == 3:\n        sys.stdout.close()\n    \
                    if x == 4:\n        sys.stdout = io.StringIO()\n    \
                    if x == 5:\n        sys.stderr = open(os.devnull, 'w')\n    \
                    if x == 6:\n        with contextlib.redirect_stdout(io.StringIO()):\n            print('hidden')\n    \
                    print(f'item {x}', flush=True)\n    \
                    if x % 50 == 5:\n        print(f'warn {x}', file=sys.stderr)\n    \
                    return x\n";
    let project = Builder::fan_out(300, "Work", code).build();
    let out = run_with(project, Value::Null, Some(1000));
    for (x, r) in succeeded_items(&out, "Work", 300) {
        let printed = match x {
            1 => "raw é\nitem 1\n".to_owned(),
            2 => "no fileno\nitem 2\n".to_owned(),
            4 => String::new(),
            _ => format!("item {x}\n"),
        };
        let warned = if x % 50 == 5 && x != 5 {
            format!("warn {x}\n")
        } else {
            String::new()
        };
        assert_eq!((&r.stdout, &r.stderr), (&printed, &warned), "item {x}");
    }
}

/// Threads an invocation starts (a thread pool calling an API for it) belong to it: they see its block's
/// variables, and what they print is its printed output; invocations after it on the same worker keep
/// their own.
#[test]
fn threads_an_invocation_starts_see_its_variables_and_print_into_it() {
    let code = "import os\n\
                from concurrent.futures import ThreadPoolExecutor\n\
                def fetch(x, part):\n    \
                    print(f'part {part} of {x}')\n    \
                    return os.environ['BRAID_IT_TOKEN'] + str(part)\n\
                def main(block_input, backpack):\n    \
                    with ThreadPoolExecutor(3) as pool:\n        \
                        got = list(pool.map(lambda part: fetch(block_input, part), range(3)))\n    \
                    return got\n";
    let mut project = Builder::fan_out(40, "Work", code).build();
    project.blocks[1].code_mut().unwrap().env_vars = vec!["BRAID_IT_TOKEN".to_owned()];
    let mut request = RunRequest::new(RunId::new_random(), project);
    request.env = std::collections::BTreeMap::from([("BRAID_IT_TOKEN".to_owned(), "t".to_owned())]);
    let mut runtime = RuntimeHandle::start(runtime_config()).expect("runtime starts");
    let out = run_request_on(&mut runtime, request, |_, _, _| {});
    for (x, r) in succeeded_items(&out, "Work", 40) {
        assert_eq!(r.output, Some(json!(["t0", "t1", "t2"])), "item {x}");
        let mut lines: Vec<&str> = r.stdout.lines().collect();
        lines.sort_unstable();
        let expected: Vec<String> = (0..3).map(|p| format!("part {p} of {x}")).collect();
        assert_eq!(lines, expected, "item {x}");
    }
}

/// The records of `block`'s invocations, each with its item number, after checking there are `n` and
/// each succeeded.
fn succeeded_items<'a>(
    out: &'a crate::support::Outcome,
    block: &str,
    n: usize,
) -> impl Iterator<Item = (u64, &'a braid::run::InvocationRecord)> {
    let records = out.records_of(block);
    assert_eq!(records.len(), n);
    records.into_iter().map(|r| {
        let x = u64::from(r.item_path[0]);
        assert_eq!(
            r.status,
            InvocationStatus::Succeeded,
            "item {x}: {:?}",
            r.error
        );
        (x, r)
    })
}

/// Values that stand for JSON (numpy arrays and scalars: anything with a `tolist`) are returned and
/// kept in the backpack as the lists and numbers they stand for; a value that stands for nothing JSON
/// still fails its own invocation, naming its type.
#[test]
fn values_with_a_tolist_are_the_json_they_stand_for() {
    let code = "class Vector:\n    def __init__(self, *xs):\n        self.xs = xs\n    def tolist(self):\n        return list(self.xs)\n\
                class Opaque:\n    pass\n\
                def main(block_input, backpack):\n    \
                    if block_input == 'opaque':\n        return [1, Opaque()]\n    \
                    backpack['v'] = Vector(3, 4)\n    \
                    return {'v': Vector(1, Vector(2)), 'n': 5}\n";
    let out = run(Builder::new().block("Numpyish", code).build(), json!("ok"));
    let r = &out.records_of("Numpyish")[0];
    assert_eq!(
        r.output,
        Some(json!({"v": [1, [2]], "n": 5})),
        "{:?}",
        r.error
    );
    assert_eq!(r.backpack_out.as_deref(), Some(&json!({"v": [3, 4]})));
    let out = run(
        Builder::new().block("Numpyish", code).build(),
        json!("opaque"),
    );
    let error = out.records_of("Numpyish")[0]
        .error
        .as_ref()
        .expect("it failed");
    assert!(error.message.contains("Opaque"), "{error:?}");
}

/// What a subprocess an invocation starts writes (to the stdout and stderr it inherits) is that
/// invocation's printed output, in order with its own prints: a failing tool's message is there beside
/// the error. Streams the caller chose (`capture_output`) are left alone; `os.system` is captured too
/// and returns its usual wait status.
#[test]
fn a_subprocess_writes_into_its_invocation() {
    let code = "import os, subprocess\n\
                def main(block_input, backpack):\n    \
                    print('before')\n    \
                    subprocess.run(['sh', '-c', f'echo out {block_input}; echo err {block_input} >&2'])\n    \
                    done = subprocess.run(['echo', 'kept'], capture_output=True, text=True)\n    \
                    print('after')\n    \
                    subprocess.run(['sh', '-c', 'echo failing >&2; exit 3'], check=block_input == 5)\n    \
                    assert os.system('echo by system; exit 2') == 512\n    \
                    return done.stdout\n";
    let project = Builder::fan_out(8, "Tool", code).build();
    let out = run_with(project, Value::Null, Some(1000));
    let tool = out.records_of("Tool");
    assert_eq!(tool.len(), 8);
    for r in tool {
        let x = r.item_path[0];
        let system = if x == 5 { "" } else { "by system\n" };
        assert_eq!(
            r.stdout,
            format!("before\nout {x}\nafter\n{system}"),
            "item {x}"
        );
        assert_eq!(r.stderr, format!("err {x}\nfailing\n"), "item {x}");
        if x == 5 {
            assert_eq!(r.status, InvocationStatus::Exception);
        } else {
            assert_eq!(r.output, Some(json!("kept\n")), "item {x}: {:?}", r.error);
        }
    }
}

/// A worker does not import `subprocess` as it starts (that took several milliseconds of every start);
/// it patches it when a block first imports it, here inside `main` itself, and the subprocess's output
/// is still that invocation's. `os.system` works before anything imported it.
#[test]
fn subprocess_is_patched_when_a_block_first_imports_it() {
    let code = "import os, sys\n\
                def main(block_input, backpack):\n    \
                    before = 'subprocess' in sys.modules\n    \
                    status = os.system('echo by system')\n    \
                    import subprocess\n    \
                    subprocess.run(['echo', 'by run'])\n    \
                    return [before, status]\n";
    let project = Builder::new().block("Late", code).build();
    let out = run_with(project, Value::Null, None);
    let late = &out.records_of("Late")[0];
    assert_eq!(late.output, Some(json!([false, 0])), "{:?}", late.error);
    assert_eq!(late.stdout, "by system\nby run\n");
}
