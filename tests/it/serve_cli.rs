//! `braid serve` as a user runs it: the Refinery exports and the sample project answered over HTTP
//! (curl), timers firing, queues draining (exactly once, and at least once across a `kill -9`), bad
//! settings refused before serving, and requests that a saturating fan-out never starves. Everything
//! listens on 127.0.0.1 with a port the system picks, and every server is stopped by its process id.

use std::collections::HashSet;
use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::load;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/refinery-examples")
        .join(name)
}

fn sample(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("sample-projects")
        .join(name)
}

/// A copy of `source` in a folder of its own (its history and queues go beside it).
fn copy_to(dir: &Path, source: &Path, edit: impl FnOnce(&mut Value)) -> PathBuf {
    let mut value: Value = serde_json::from_slice(&std::fs::read(source).unwrap()).unwrap();
    edit(&mut value);
    let path = dir.join(source.file_name().unwrap());
    std::fs::write(&path, value.to_string()).unwrap();
    path
}

/// A `braid serve` process, stopped (by its pid) when dropped.
struct Server {
    child: Child,
    /// What it printed on stdout as it started (its endpoints, timers, queues, topics).
    lines: Vec<String>,
    base: String,
    stderr: Option<std::thread::JoinHandle<String>>,
}

impl Server {
    fn start(project: &Path, extra: &[&str]) -> Self {
        match Self::try_start(project, extra) {
            Ok(server) => server,
            Err((code, stderr)) => panic!("braid serve exited with {code:?}: {stderr}"),
        }
    }

    /// Starts serving; `Err` with the exit code and stderr when it exits instead.
    #[expect(
        clippy::zombie_processes,
        reason = "the child is waited for when it exits, or kept in the server, which waits for it"
    )]
    fn try_start(project: &Path, extra: &[&str]) -> Result<Self, (Option<i32>, String)> {
        let mut child = Command::new(env!("CARGO_BIN_EXE_braid"))
            .arg("serve")
            .arg(project)
            .args(["--listen", "127.0.0.1:0"])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let stderr = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = std::io::Read::read_to_string(&mut BufReader::new(stderr), &mut text);
            text
        });
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut lines = Vec::new();
        loop {
            let mut line = String::new();
            if stdout.read_line(&mut line).unwrap() == 0 {
                let code = child.wait().unwrap().code();
                return Err((code, stderr.join().unwrap()));
            }
            let line = line.trim_end().to_owned();
            if let Some(rest) = line.strip_prefix("serving at ") {
                let base = rest.split(' ').next().unwrap().to_owned();
                // Nothing more comes on stdout; keep the pipe drained all the same.
                std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
                return Ok(Self {
                    child,
                    lines,
                    base,
                    stderr: Some(stderr),
                });
            }
            lines.push(line);
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Ctrl+C (SIGINT to its pid), then its exit code and stderr.
    fn stop(mut self) -> (Option<i32>, String) {
        let pid = rustix::process::Pid::from_raw(self.child.id().cast_signed()).unwrap();
        rustix::process::kill_process(pid, rustix::process::Signal::INT).unwrap();
        let code = wait_for_exit(&mut self.child, Duration::from_secs(30));
        (code, self.stderr.take().unwrap().join().unwrap())
    }

    /// `kill -9`.
    fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn wait_for_exit(child: &mut Child, within: Duration) -> Option<i32> {
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status.code();
        }
        assert!(Instant::now() < deadline, "braid serve did not stop");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `curl` as a user runs it: the status, the headers (lower-cased names) and the body.
fn curl(args: &[&str]) -> (u16, Vec<(String, String)>, String) {
    let out = Command::new("curl")
        .args(["-s", "-i", "--max-time", "60"])
        .args(args)
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP answer: {text}"));
    let headers = lines
        .filter_map(|l| l.split_once(": "))
        .map(|(n, v)| (n.to_ascii_lowercase(), v.to_owned()))
        .collect();
    (status, headers, body.to_owned())
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

/// The project's recorded runs, newest first (`braid history --json`).
fn runs(project: &Path) -> Vec<Value> {
    let out = Command::new(env!("CARGO_BIN_EXE_braid"))
        .args(["history", "--json"])
        .arg(project)
        .output()
        .unwrap();
    match serde_json::from_slice(&out.stdout) {
        Ok(Value::Array(runs)) => runs,
        _ => panic!(
            "braid history: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    }
}

/// One run's invocation records (`braid history RUN --json`).
fn invocations(project: &Path, run: &str) -> Vec<Value> {
    let out = Command::new(env!("CARGO_BIN_EXE_braid"))
        .args(["history", "--json"])
        .arg(project)
        .arg(run)
        .output()
        .unwrap();
    match serde_json::from_slice(&out.stdout) {
        Ok(Value::Array(records)) => records,
        _ => panic!(
            "braid history {run}: {}",
            String::from_utf8_lossy(&out.stderr)
        ),
    }
}

/// Waits (at most `within`) until `done` holds.
fn eventually(within: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !done() {
        assert!(Instant::now() < deadline, "waited {within:?} for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn the_api_endpoint_example_answers_as_refinery_did_and_each_request_is_a_recorded_run() {
    let dir = tempfile::tempdir().unwrap();
    let project = copy_to(
        dir.path(),
        &fixture("api-endpoint-hello-world.json"),
        |_| {},
    );
    let server = Server::start(&project, &[]);
    let endpoint = server.url("/example/endpoint");
    assert_eq!(
        server.lines,
        [format!("GET {endpoint} -> \"API Endpoint Block\"")]
    );

    let (status, headers, body) = curl(&[&endpoint]);
    assert_eq!((status, body.as_str()), (200, "\"Hello World!\""));
    assert_eq!(header(&headers, "content-type"), Some("application/json"));
    let run = header(&headers, "x-braid-run")
        .expect("the run's id")
        .to_owned();

    let (status, _, body) = curl(&[&server.url("/example/nowhere")]);
    assert_eq!(status, 404);
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap(),
        json!({"success": false, "msg": "no API Endpoint answers /example/nowhere"})
    );
    let (status, _, _) = curl(&["-X", "POST", &endpoint]);
    assert_eq!(status, 405);

    let (code, stderr) = server.stop();
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains("GET /example/endpoint 200 ") && stderr.contains(&run),
        "each request is logged: {stderr}"
    );
    let recorded = runs(&project);
    assert_eq!(recorded.len(), 1, "{recorded:?}");
    assert_eq!(
        (&recorded[0]["run_id"], &recorded[0]["status"]),
        (&json!(run), &json!("succeeded"))
    );
    let records = invocations(&project, &run);
    let blocks: Vec<&str> = records
        .iter()
        .map(|r| r["block_name"].as_str().unwrap())
        .collect();
    assert_eq!(
        blocks,
        [
            "API Endpoint Block",
            "Print \"World\"",
            "Say Hello",
            "API Endpoint Response Block"
        ]
    );
    // The endpoint's invocation shows the request as it came.
    assert_eq!(records[0]["input"]["httpMethod"], "GET");
    assert_eq!(records[0]["input"]["path"], "/example/endpoint");
}

#[test]
fn the_fan_out_example_answers_with_its_fan_in() {
    let dir = tempfile::tempdir().unwrap();
    let project = copy_to(dir.path(), &fixture("hello-world-fanout.json"), |_| {});
    let server = Server::start(&project, &[]);
    let (status, _, body) = curl(&[&server.url("/fanout")]);
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap(),
        json!(["Hello There1", "Hello There2", "Hello There3"])
    );
    assert_eq!(server.stop().0, Some(0));
}

#[test]
fn the_timer_example_says_when_it_fires_and_a_short_rate_fires_its_pipeline() {
    let dir = tempfile::tempdir().unwrap();
    let daily = copy_to(dir.path(), &fixture("timer-example.json"), |_| {});
    let server = Server::start(&daily, &[]);
    assert_eq!(server.lines.len(), 1, "{:?}", server.lines);
    assert!(
        server.lines[0].starts_with("timer \"Every Day\" rate(1 day): next at "),
        "{:?}",
        server.lines
    );
    assert_eq!(server.stop().0, Some(0));

    let fast = tempfile::tempdir().unwrap();
    let project = copy_to(fast.path(), &fixture("timer-example.json"), |v| {
        for state in v["workflow_states"].as_array_mut().unwrap() {
            if state["type"] == "schedule_trigger" {
                state["schedule_expression"] = json!("rate(1 second)");
            }
        }
    });
    let server = Server::start(&project, &[]);
    eventually(Duration::from_secs(30), "two timer runs", || {
        runs(&project)
            .iter()
            .filter(|r| r["status"] == "succeeded")
            .count()
            >= 2
    });
    let (code, stderr) = server.stop();
    assert_eq!(code, Some(0), "{stderr}");
    let run = runs(&project)
        .into_iter()
        .find(|r| r["status"] == "succeeded")
        .unwrap();
    let records = invocations(&project, run["run_id"].as_str().unwrap());
    let sent: Vec<&str> = records
        .iter()
        .filter(|r| r["block_name"] == "Send Email")
        .map(|r| r["output"].as_str().unwrap())
        .collect();
    assert_eq!(
        sent,
        [
            "Send email to: sam@example.com",
            "Send email to: fred@example.com",
            "Send email to: eric@example.com"
        ]
    );
    // The timer's own invocation gave its input string ("": not JSON, so the string itself).
    let timer = records
        .iter()
        .find(|r| r["block_name"] == "Every Day")
        .unwrap();
    assert_eq!(timer["output"], json!(""));
}

#[test]
fn the_sample_service_answers_at_once_then_queues_packs_and_publishes() {
    let dir = tempfile::tempdir().unwrap();
    let project = copy_to(dir.path(), &sample("services.braid.json"), |_| {});
    let server = Server::start(&project, &[]);
    let orders = server.url("/orders");
    assert_eq!(server.lines[0], format!("POST {orders} -> \"New order\""));
    for item in ["tea", "jam", "bread"] {
        let (status, _, body) = curl(&[
            "-X",
            "POST",
            "-H",
            "Content-Type: application/json",
            "--data",
            &json!({"item": item, "qty": 2}).to_string(),
            &orders,
        ]);
        assert_eq!(status, 202, "{body}");
        assert_eq!(
            serde_json::from_str::<Value>(&body).unwrap(),
            json!({"accepted": {"item": item, "qty": 2}})
        );
    }
    // An order the block refuses: a short JSON error naming the run, no traceback.
    let (status, _, body) = curl(&[
        "-X",
        "POST",
        "-H",
        "Content-Type: application/json",
        "--data",
        r#"{"item": "tea", "qty": 0}"#,
        &orders,
    ]);
    assert_eq!(status, 500, "{body}");
    let error: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(error["success"], false);
    assert!(error["run_id"].is_string(), "{error}");
    assert!(
        !body.contains("Traceback") && !body.contains("ValueError"),
        "{body}"
    );

    // The three orders go through the queue (in batches of up to five) and the topic.
    eventually(Duration::from_secs(30), "the orders packed", || {
        runs(&project).iter().any(|run| {
            run["status"] == "succeeded"
                && invocations(&project, run["run_id"].as_str().unwrap())
                    .iter()
                    .any(|r| r["block_name"] == "Count packed")
        })
    });
    let (status, _, body) = curl(&[&server.url("/_braid/status")]);
    assert_eq!(status, 200);
    let state: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(state["endpoints"][0]["requests"], 4, "{state}");
    let packed: Vec<Value> = runs(&project)
        .iter()
        .flat_map(|run| invocations(&project, run["run_id"].as_str().unwrap()))
        .filter(|r| r["block_name"] == "Pack orders")
        .map(|r| r["output"]["items"].clone())
        .collect();
    let mut items: Vec<String> = packed
        .iter()
        .flat_map(|items| {
            items
                .as_array()
                .unwrap()
                .iter()
                .map(|i| i.as_str().unwrap().to_owned())
        })
        .collect();
    items.sort();
    assert_eq!(items, ["bread", "jam", "tea"]);

    // A message posted to the topic reaches both subscribers.
    let (status, headers, _) = curl(&[
        "-X",
        "POST",
        "--data",
        r#"{"packed": 1, "items": ["salt"]}"#,
        &server.url("/_braid/topics/Packed"),
    ]);
    assert_eq!(status, 202);
    let run = header(&headers, "x-braid-run").unwrap().to_owned();
    eventually(Duration::from_secs(30), "the topic's run", || {
        runs(&project)
            .iter()
            .any(|r| r["run_id"] == run.as_str() && r["status"] == "succeeded")
    });
    let mut reached: Vec<String> = invocations(&project, &run)
        .iter()
        .map(|r| r["block_name"].as_str().unwrap().to_owned())
        .collect();
    reached.sort();
    assert_eq!(reached, ["Count packed", "Notify warehouse", "Packed"]);
    assert_eq!(server.stop().0, Some(0));
}

#[test]
fn bad_settings_and_a_busy_port_are_refused_before_serving() {
    let dir = tempfile::tempdir().unwrap();
    let project = copy_to(dir.path(), &fixture("api-endpoint-hello-world.json"), |v| {
        let states = v["workflow_states"].as_array_mut().unwrap();
        let mut twin = states
            .iter()
            .find(|s| s["type"] == "api_endpoint")
            .unwrap()
            .clone();
        twin["id"] = json!("twin");
        twin["name"] = json!("Twin");
        states.push(twin);
        states.push(
            json!({"id": "t", "name": "Tick", "type": "schedule_trigger",
                           "schedule_expression": "rate(often)", "input_string": ""}),
        );
    });
    let Err((code, stderr)) = Server::try_start(&project, &[]) else {
        panic!("served a project with problems");
    };
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains(
            "API Endpoint \"Twin\" answers GET /example/endpoint, as API Endpoint \"API Endpoint Block\" does already"
        ),
        "{stderr}"
    );
    assert!(
        stderr.contains("Timer \"Tick\" has the rate (often)"),
        "{stderr}"
    );

    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let good = copy_to(dir.path(), &fixture("hello-world-fanout.json"), |_| {});
    let out = Command::new(env!("CARGO_BIN_EXE_braid"))
        .arg("serve")
        .arg(&good)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!("127.0.0.1:{port} is in use")),
        "{stderr}"
    );
}

/// A project whose queue `Jobs` (batches of 10) feeds `Work`, which appends each message it gets to
/// `seen`, a line each.
fn queue_project(dir: &Path, seen: &Path) -> PathBuf {
    let project = json!({
        "format_version": 1, "name": "drain", "settings": {"concurrency_limit": 100},
        "blocks": [
            {"id": "q", "name": "Jobs", "kind": "queue", "batch_size": 10},
            {"id": "w", "name": "Work", "kind": "code", "code": format!(
                "def main(block_input, backpack):\n    with open({seen:?}, 'a') as f:\n        f.write(''.join('%d\\n' % n for n in block_input))\n    return len(block_input)\n"
            )}
        ],
        "transitions": [{"id": "t", "from": "q", "to": "w", "type": "then"}]
    });
    let path = dir.join("drain.braid.json");
    std::fs::write(&path, project.to_string()).unwrap();
    path
}

/// An endpoint that answers after its timeout is answered 504 (Refinery's words, naming the run), and a
/// body past the limit (6 MiB) 413 before any run starts.
#[test]
fn a_late_answer_is_a_504_and_a_body_past_the_limit_a_413() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("slow.braid.json");
    let project = json!({
        "format_version": 1, "name": "slow",
        "blocks": [
            {"id": "e", "name": "Slow", "kind": "api_endpoint", "api_path": "/slow",
             "http_method": "ANY", "timeout_s": 1},
            {"id": "z", "name": "Doze", "kind": "code",
             "code": "import time\n\ndef main(block_input, backpack):\n    time.sleep(3)\n    return 1\n"},
            {"id": "r", "name": "Answer", "kind": "api_response"}
        ],
        "transitions": [
            {"id": "t1", "from": "e", "to": "z", "type": "then"},
            {"id": "t2", "from": "z", "to": "r", "type": "then"}
        ]
    });
    std::fs::write(&path, project.to_string()).unwrap();
    let server = Server::start(&path, &[]);
    let url = server.url("/slow");
    let started = Instant::now();
    let (status, headers, body) = curl(&[&url]);
    assert_eq!(status, 504, "{body}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "answered at its timeout, not after the block"
    );
    let run = header(&headers, "x-braid-run")
        .expect("the run's id")
        .to_owned();
    let error: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (&error["success"], &error["msg"], &error["run_id"]),
        (
            &json!(false),
            &json!("The request to the backend has timed out."),
            &json!(run)
        )
    );

    let big = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(big.path(), vec![b'x'; 6 * 1024 * 1024 + 1]).unwrap();
    // Without `Expect: 100-continue`, so the one answer is the server's.
    let (status, headers, body) = curl(&[
        "-X",
        "POST",
        "-H",
        "Expect:",
        "--data-binary",
        &format!("@{}", big.path().display()),
        &url,
    ]);
    assert_eq!(status, 413, "{body}");
    assert_eq!(header(&headers, "x-braid-run"), None, "no run started");
    assert_eq!(server.stop().0, Some(0));
    assert_eq!(runs(&path).len(), 1, "only the late request is a run");
}

/// The messages `Work` saw: each line once, and how many lines there were.
fn seen(path: &Path) -> (HashSet<u64>, usize) {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<u64> = text.lines().filter_map(|l| l.parse().ok()).collect();
    (lines.iter().copied().collect(), lines.len())
}

const MESSAGES: u64 = 100_000;

fn post_messages(server: &Server) {
    let body = json!((0..MESSAGES).collect::<Vec<_>>()).to_string();
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), body).unwrap();
    let (status, _, answer) = curl(&[
        "-X",
        "POST",
        "--data-binary",
        &format!("@{}", file.path().display()),
        &server.url("/_braid/queues/Jobs"),
    ]);
    assert_eq!(status, 202, "{answer}");
    assert_eq!(
        serde_json::from_str::<Value>(&answer).unwrap()["queued"],
        MESSAGES
    );
}

/// Drained: nothing waits or is in a batch.
fn drained(server: &Server) -> bool {
    let (_, _, body) = curl(&[&server.url("/_braid/queues/Jobs")]);
    let state: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    state["depth"] == 0 && state["in_flight"] == 0 && state["batches_running"] == 0
}

#[test]
fn a_queue_of_100_000_messages_drains_in_batches_of_ten_each_message_once() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("seen.txt");
    let project = queue_project(dir.path(), &log);
    let server = Server::start(&project, &[]);
    post_messages(&server);
    eventually(Duration::from_mins(10), "the queue drained", || {
        drained(&server)
    });
    let (distinct, lines) = seen(&log);
    assert_eq!(
        (distinct.len(), lines),
        (MESSAGES as usize, MESSAGES as usize)
    );
    assert_eq!(server.stop().0, Some(0));
    let recorded = runs(&project);
    // One producer-less run per batch, each recorded (the history keeps the latest 100 by default
    // only when told to; serving keeps them all).
    assert_eq!(
        recorded
            .iter()
            .filter(|r| r["status"] == "succeeded")
            .count(),
        (MESSAGES / 10) as usize
    );
}

#[test]
fn a_queue_killed_mid_drain_finishes_after_a_restart_losing_no_message() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("seen.txt");
    let project = queue_project(dir.path(), &log);
    let server = Server::start(&project, &[]);
    post_messages(&server);
    eventually(Duration::from_mins(5), "a fifth drained", || {
        seen(&log).0.len() >= (MESSAGES / 5) as usize
    });
    server.kill();
    let (before, _) = seen(&log);
    assert!(before.len() < MESSAGES as usize, "killed too late to tell");

    let server = Server::start(&project, &[]);
    assert!(
        server.lines[0].starts_with("queue \"Jobs\": "),
        "{:?}",
        server.lines
    );
    eventually(Duration::from_mins(10), "the queue drained", || {
        drained(&server)
    });
    let (distinct, lines) = seen(&log);
    assert_eq!(
        distinct.len(),
        MESSAGES as usize,
        "every message at least once"
    );
    assert!(lines >= MESSAGES as usize);
    assert_eq!(server.stop().0, Some(0));
}

/// A Topic `Start` that kicks off a 10,000-item fan-out of 50 ms sleeps, and a trivial endpoint.
fn busy_project(dir: &Path) -> PathBuf {
    let project = json!({
        "format_version": 1, "name": "busy", "settings": {"concurrency_limit": 100},
        "blocks": [
            {"id": "e", "name": "Ping", "kind": "api_endpoint", "api_path": "/ping", "http_method": "GET"},
            {"id": "p", "name": "Pong", "kind": "code",
             "code": "def main(block_input, backpack):\n    return 'pong'\n"},
            {"id": "r", "name": "Answer", "kind": "api_response"},
            {"id": "s", "name": "Start", "kind": "topic"},
            {"id": "g", "name": "Gen", "kind": "code",
             "code": "def main(block_input, backpack):\n    return list(range(10000))\n"},
            {"id": "n", "name": "Nap", "kind": "code",
             "code": "import time\n\ndef main(block_input, backpack):\n    time.sleep(0.05)\n    return block_input\n"}
        ],
        "transitions": [
            {"id": "t1", "from": "e", "to": "p", "type": "then"},
            {"id": "t2", "from": "p", "to": "r", "type": "then"},
            {"id": "t3", "from": "s", "to": "g", "type": "then"},
            {"id": "t4", "from": "g", "to": "n", "type": "fan-out"}
        ]
    });
    let path = dir.join("busy.braid.json");
    std::fs::write(&path, project.to_string()).unwrap();
    path
}

/// The load test: while the fan-out saturates the limit, 1,000 requests from 50 clients all succeed,
/// every one of them answered before the fan-out ends (none waited behind its backlog), and each is
/// a run in the history. Its latencies against an idle server are `benches/serve.rs`'s to measure.
#[test]
fn requests_are_never_starved_by_a_fan_out_that_saturates_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let project = busy_project(dir.path());
    let server = Server::start(&project, &[]);
    let (status, headers, _) = curl(&[
        "-X",
        "POST",
        "--data",
        "null",
        &server.url("/_braid/topics/Start"),
    ]);
    assert_eq!(status, 202);
    let fan_out = header(&headers, "x-braid-run").unwrap().to_owned();
    // The fan-out is under way: the limit is full of its items.
    std::thread::sleep(Duration::from_millis(500));
    let load = load::hammer(&server.url("/ping"), 1000, 50, Duration::from_mins(1));
    assert_eq!(
        (load.ok(), &load.statuses),
        (1000, &vec![(200, 1000)]),
        "p99 {:.1} ms, {:.0} requests/s",
        load.quantile(0.99),
        load.per_second()
    );
    // The fan-out (10,000 × 50 ms over at most 90 slots: at least 5.5 s) was still going when the
    // last request was answered.
    let fan_out_run = runs(&project)
        .into_iter()
        .find(|r| r["run_id"] == fan_out.as_str())
        .expect("the fan-out's run");
    assert_eq!(fan_out_run["status"], "running", "{fan_out_run}");
    let (code, stderr) = server.stop();
    assert_eq!(
        code,
        Some(0),
        "{}",
        &stderr[stderr.len().saturating_sub(2000)..]
    );
    let recorded = runs(&project);
    let requests = recorded.len() - 1;
    assert_eq!(requests, 1000, "every request is a recorded run");
}
