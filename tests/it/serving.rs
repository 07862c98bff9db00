//! A served project in the engine, over a script standing in for Python (milliseconds a test): the
//! shared capacity with its request reserve and block reservations, answers to requests, messages
//! handed to the host to keep. What HTTP, timers and the queue store add is in `serve_cli.rs`.

use std::time::Duration;

use braid::model::TransitionKind::{FanOut, Then};
use braid::model::{BlockId, BlockKind, Project};
use braid::run::{RunId, RunStatus};
use braid::runtime::capacity::Lane;
use braid::runtime::invoker::{Outcome, TaskResult};
use braid::runtime::scheduler::Answer;
use braid::runtime::scripted::{Held, Reply, Script};
use braid::runtime::{RuntimeHandle, RuntimeRequest, ServeRequest, ServiceNotice, Trigger};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::support::{Builder, scripted_runtime};

/// A runtime serving `project` with `script`, its notices, and the service's name.
struct Served {
    runtime: RuntimeHandle,
    notices: mpsc::UnboundedReceiver<ServiceNotice>,
    service: RunId,
}

impl Served {
    fn start(project: Project, script: &Script, concurrency: u32, reserve: u32) -> Self {
        let runtime = scripted_runtime(script);
        let (tx, mut notices) = mpsc::unbounded_channel();
        let service = RunId("svc".into());
        runtime.send(RuntimeRequest::Serve(Box::new(ServeRequest {
            service: service.clone(),
            project,
            concurrency: Some(concurrency),
            request_reserve: Some(reserve),
            env: std::collections::BTreeMap::default(),
            history: None,
            working_dir: None,
            executor: braid::run::Executor::default(),
            notices: tx,
        })));
        assert_eq!(notices.blocking_recv(), Some(ServiceNotice::Ready));
        Self {
            runtime,
            notices,
            service,
        }
    }

    fn trigger(&self, run: &str, block: &str, input: Value, lane: Lane) {
        self.runtime.send(RuntimeRequest::Trigger(Box::new(Trigger {
            service: self.service.clone(),
            run_id: RunId(run.into()),
            block: BlockId(format!("id-{block}").into()),
            input,
            lane,
        })));
    }

    /// The next notice other than worker output, within a few seconds.
    fn next(&mut self) -> ServiceNotice {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            match self.notices.try_recv() {
                Ok(ServiceNotice::WorkerOutput { .. }) => {}
                Ok(notice) => return notice,
                Err(_) => {
                    assert!(std::time::Instant::now() < deadline, "no notice came");
                    std::thread::sleep(Duration::from_millis(2));
                }
            }
        }
    }
}

fn blocks_of(held: &[Held]) -> Vec<&str> {
    held.iter().map(|h| h.block.as_str()).collect()
}

/// An endpoint `Hook` → `Reply` → API Response `Out`, and a fan-out `Gen` → `Work` beside it.
fn endpoint_and_fan_out() -> Project {
    Builder::new()
        .service(
            "Hook",
            BlockKind::ApiEndpoint {
                api_path: "/hook".into(),
                http_method: "POST".into(),
                timeout_s: 29,
            },
        )
        .scripted(&["Reply", "Gen", "Work"])
        .service("Out", BlockKind::ApiResponse)
        .link("Hook", "Reply", Then)
        .link("Reply", "Out", Then)
        .link("Gen", "Work", FanOut)
        .build()
}

#[test]
fn a_request_runs_at_once_while_a_fan_out_holds_every_slot_background_work_may_have() {
    let script = Script::new()
        .block("Gen", |_| {
            Reply::returns(json!((0..100).collect::<Vec<_>>()))
        })
        .block("Work", |call| Reply::returns(call.input.clone()).held())
        .block("Reply", |call| {
            Reply::returns(json!({"echo": call.input["body"]})).held()
        });
    let mut served = Served::start(endpoint_and_fan_out(), &script, 10, 2);
    served.trigger("fan", "Gen", Value::Null, Lane::Background);
    // Background work holds 8 of the 10 slots, and no more: 92 items wait.
    assert_eq!(blocks_of(&script.wait_held(8)), ["Work"; 8]);
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(script.held().len(), 8);

    // A request runs at once, ahead of the 92 items queued before it.
    served.trigger("req-1", "Hook", json!({"body": "hi"}), Lane::Request);
    let held = script.wait_held(9);
    assert_eq!(held[8].block, "Reply");
    assert_eq!(held[8].input, json!({"body": "hi"}));
    served.trigger("req-2", "Hook", json!({"body": "again"}), Lane::Request);
    served.trigger("req-3", "Hook", json!({"body": "third"}), Lane::Request);
    let held = script.wait_held(10);
    assert_eq!(blocks_of(&held[8..]), ["Reply", "Reply"]);

    // Every slot is taken; the slot a fan-out item frees goes to the waiting request, not to the
    // fan-out's next item.
    script.release(held[0].key);
    let held = script.wait_held(10);
    assert_eq!(
        blocks_of(&held),
        [
            "Work", "Work", "Work", "Work", "Work", "Work", "Work", "Reply", "Reply", "Reply"
        ]
    );
    assert_eq!(held[9].input, json!({"body": "third"}));

    // The first request is answered by the value that reached its API Response.
    script.release(held[7].key);
    assert_eq!(
        served.next(),
        ServiceNotice::Answer {
            run_id: RunId("req-1".into()),
            answer: Answer::Value(json!({"echo": "hi"}))
        }
    );
    assert_eq!(
        served.next(),
        ServiceNotice::Finished {
            run_id: RunId("req-1".into()),
            status: RunStatus::Succeeded
        }
    );
    // Its slot goes back to background work, which is below its share.
    let held = script.wait_held(10);
    assert_eq!(blocks_of(&held).iter().filter(|b| **b == "Work").count(), 8);
    served.runtime.shutdown(Duration::from_secs(10));
}

#[test]
fn a_reserved_block_runs_in_slots_of_its_own_while_everything_else_is_full() {
    let project = Builder::new()
        .scripted(&["Gen", "Work", "Audit"])
        .cap("Audit", 2)
        .link("Gen", "Work", FanOut)
        .link("Gen", "Audit", FanOut)
        .build();
    let script = Script::new()
        .block("Gen", |_| {
            Reply::returns(json!((0..20).collect::<Vec<_>>()))
        })
        .block("Work", |_| Reply::returns(Value::Null).held())
        .block("Audit", |_| Reply::returns(Value::Null).held());
    // 10 slots, 2 of them Audit's: the others share 8, of which background work may hold 7.
    let served = Served::start(project, &script, 10, 1);
    served.trigger("fan", "Gen", Value::Null, Lane::Background);
    let held = script.wait_held(9);
    std::thread::sleep(Duration::from_millis(50));
    let held_now = script.held();
    assert_eq!(held_now.len(), 9, "{:?}", blocks_of(&held_now));
    let audits = blocks_of(&held).iter().filter(|b| **b == "Audit").count();
    assert_eq!(audits, 2);
    served.runtime.shutdown(Duration::from_secs(10));
}

#[test]
fn an_uncaught_exception_answers_the_request_as_failed_and_the_first_response_wins() {
    let project = Builder::new()
        .service(
            "Hook",
            BlockKind::ApiEndpoint {
                api_path: "/hook".into(),
                http_method: "GET".into(),
                timeout_s: 29,
            },
        )
        .scripted(&["Check", "Fast", "Slow"])
        .service("Out", BlockKind::ApiResponse)
        .link("Hook", "Check", Then)
        .link("Check", "Fast", Then)
        .link("Check", "Slow", Then)
        .link("Fast", "Out", Then)
        .link("Slow", "Out", Then)
        .build();
    let script = Script::new()
        .block("Check", |call| {
            if call.input == json!("bad") {
                Reply::raises("ValueError", "bad input")
            } else {
                Reply::returns(call.input.clone())
            }
        })
        .block("Fast", |_| Reply::returns(json!("fast")))
        .block("Slow", |_| Reply::returns(json!("slow")).held());
    let mut served = Served::start(project, &script, 10, 2);
    served.trigger("bad", "Hook", json!("bad"), Lane::Request);
    assert_eq!(
        served.next(),
        ServiceNotice::Answer {
            run_id: RunId("bad".into()),
            answer: Answer::Failed {
                block: "Check".into(),
                error: "ValueError: bad input".into(),
                invocation: Some(2)
            }
        }
    );
    assert!(matches!(
        served.next(),
        ServiceNotice::Finished {
            status: RunStatus::Failed,
            ..
        }
    ));

    served.trigger("good", "Hook", json!("ok"), Lane::Request);
    let slow = script.wait_held(1);
    assert_eq!(
        served.next(),
        ServiceNotice::Answer {
            run_id: RunId("good".into()),
            answer: Answer::Value(json!("fast"))
        }
    );
    // The later response is ignored; the run still ends when its last branch does.
    script.release(slow[0].key);
    assert_eq!(
        served.next(),
        ServiceNotice::Finished {
            run_id: RunId("good".into()),
            status: RunStatus::Succeeded
        }
    );
    served.runtime.shutdown(Duration::from_secs(10));
}

#[test]
fn a_run_reaching_a_queue_goes_on_once_the_host_has_kept_its_messages_and_a_batch_passes_through() {
    let project = Builder::new()
        .scripted(&["Produce", "Consume"])
        .service("Jobs", BlockKind::Queue { batch_size: 2 })
        .link("Produce", "Jobs", Then)
        .link("Jobs", "Consume", Then)
        .build();
    let script = Script::new()
        .block("Produce", |_| Reply::returns(json!([1, 2, 3])))
        .block("Consume", |call| Reply::returns(json!({"got": call.input})));
    let mut served = Served::start(project, &script, 10, 2);
    served.trigger("produce", "Produce", Value::Null, Lane::Background);
    let ServiceNotice::Keep {
        key,
        run_id,
        queue,
        messages,
    } = served.next()
    else {
        panic!("the host keeps the messages");
    };
    assert_eq!(
        (run_id.0.as_ref(), &*queue.0, messages),
        ("produce", "id-Jobs", vec![json!(1), json!(2), json!(3)])
    );
    // Nothing downstream of the queue runs in the producer's run.
    std::thread::sleep(Duration::from_millis(50));
    assert!(script.submitted().iter().all(|h| h.block != "Consume"));
    served.runtime.send(RuntimeRequest::Kept(vec![TaskResult {
        key,
        attempt: 1,
        started_at_ms: Some(0.0),
        ended_at_ms: Some(1.0),
        stdout: String::new(),
        stderr: String::new(),
        outcome: Outcome::Returned {
            output: json!({"queued": 3}),
            backpack: None,
            ifs: Vec::new(),
            items: Vec::new(),
        },
        worker: None,
    }]));
    assert_eq!(
        served.next(),
        ServiceNotice::Finished {
            run_id: RunId("produce".into()),
            status: RunStatus::Succeeded
        }
    );
    // A batch is a run that starts at the queue: its block gets the batch.
    served.trigger("batch", "Jobs", json!([1, 2]), Lane::Background);
    assert_eq!(
        served.next(),
        ServiceNotice::Finished {
            run_id: RunId("batch".into()),
            status: RunStatus::Succeeded
        }
    );
    let consumed: Vec<Value> = script
        .submitted()
        .iter()
        .filter(|h| h.block == "Consume")
        .map(|h| h.input.clone())
        .collect();
    assert_eq!(consumed, [json!([1, 2])]);
    served.runtime.shutdown(Duration::from_secs(10));
}

#[test]
fn stopping_a_service_cancels_its_runs_and_says_it_stopped() {
    let script = Script::new()
        .block("Gen", |_| Reply::returns(json!([1, 2, 3])))
        .block("Work", |_| Reply::returns(Value::Null).held())
        .block("Reply", |call| Reply::returns(call.input.clone()));
    let mut served = Served::start(endpoint_and_fan_out(), &script, 10, 2);
    served.trigger("fan", "Gen", Value::Null, Lane::Background);
    script.wait_held(3);
    served
        .runtime
        .send(RuntimeRequest::StopServing(served.service.clone()));
    assert_eq!(
        served.next(),
        ServiceNotice::Finished {
            run_id: RunId("fan".into()),
            status: RunStatus::Cancelled
        }
    );
    assert_eq!(served.next(), ServiceNotice::Stopped);
    // A trigger after the stop starts nothing.
    served.trigger("late", "Hook", Value::Null, Lane::Request);
    std::thread::sleep(Duration::from_millis(50));
    assert!(served.notices.try_recv().is_err());
    served.runtime.shutdown(Duration::from_secs(10));
}

#[test]
fn a_project_with_problems_or_code_that_does_not_compile_is_not_served() {
    let mut project = endpoint_and_fan_out();
    project.settings.concurrency_limit = 0;
    let script = Script::new();
    let runtime = scripted_runtime(&script);
    let (tx, mut notices) = mpsc::unbounded_channel();
    let request = |project: Project, notices| ServeRequest {
        service: RunId("svc".into()),
        project,
        concurrency: None,
        request_reserve: None,
        env: std::collections::BTreeMap::default(),
        history: None,
        working_dir: None,
        executor: braid::run::Executor::default(),
        notices,
    };
    runtime.send(RuntimeRequest::Serve(Box::new(request(project, tx))));
    let Some(ServiceNotice::Refused { message, .. }) = notices.blocking_recv() else {
        panic!("refused");
    };
    assert!(message.contains("concurrency limit is 0"), "{message}");
    runtime.shutdown(Duration::from_secs(10));

    let script = Script::new().compile_error("Reply", Some(3), "SyntaxError: invalid syntax");
    let runtime = scripted_runtime(&script);
    let (tx, mut notices) = mpsc::unbounded_channel();
    runtime.send(RuntimeRequest::Serve(Box::new(request(
        endpoint_and_fan_out(),
        tx,
    ))));
    let Some(ServiceNotice::Refused {
        message,
        compile_errors,
    }) = notices.blocking_recv()
    else {
        panic!("refused");
    };
    assert_eq!(compile_errors.len(), 1, "{message}");
    assert_eq!(compile_errors[0].block, "Reply");
    runtime.shutdown(Duration::from_secs(10));
}
