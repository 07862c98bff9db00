//! What a project, a file or a folder made to harm whoever opens it can't make `braid` do: drive the
//! terminal, block or exhaust it with a file that never ends, write through a link or into another
//! program's database, leave secrets readable by others; and what a damaged history or a killed Braid
//! leaves behind.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};

use crate::cli::{braid, history_runs, write_temp};

/// Set the window title, clear the screen, go back to the line's start, a C1 CSI (bold on), and
/// reverse what follows (a bidi override).
const HOSTILE: &str = "\u{1b}]0;pwned\u{7}\u{1b}[2J\r\u{9b}1m\u{202e}";
/// [`HOSTILE`] as braid writes it on a terminal.
const ESCAPED: &str = r"\u{1b}]0;pwned\u{7}\u{1b}[2J\r\u{9b}1m\u{202e}";
/// [`HOSTILE`] in Python source.
const HOSTILE_PY: &str = r"'\x1b]0;pwned\x07\x1b[2J\r\x9b1m\u202e'";

/// A character a terminal could act on: controls other than the line break, DEL, C1, bidi controls.
fn drives_a_terminal(c: char) -> bool {
    (c.is_control() && c != '\n')
        || matches!(
            c,
            '\u{61c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'
        )
}

fn assert_terminal_safe(what: &str, text: &str) {
    let found: Vec<char> = text.chars().filter(|&c| drives_a_terminal(c)).collect();
    assert!(found.is_empty(), "{what} has {found:?}:\n{text}");
}

/// `braid` with these arguments: exit code, stdout, stderr.
fn run_braid(args: &[&str]) -> (Option<i32>, String, String) {
    let out = braid()
        .args(args)
        .timeout(Duration::from_mins(1))
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

/// A fan-out of `a…` and `b` from a hostile-named Gen to a hostile-named Work that writes hostile text
/// to its worker's stderr and raises it for `b`.
fn hostile_project() -> (tempfile::TempDir, PathBuf) {
    let project = json!({
        "format_version": 1, "name": "hostile",
        "blocks": [
            {"id": "g", "name": format!("Gen{HOSTILE}"), "kind": "code",
             "code": format!("H = {HOSTILE_PY}\ndef main(block_input, backpack):\n    return ['a' + H, 'b']\n")},
            {"id": "w", "name": format!("Work{HOSTILE}"), "kind": "code",
             "code": format!("import os\nH = {HOSTILE_PY}\ndef main(block_input, backpack):\n    os.write(2, ('from C' + H + '\\n').encode())\n    if block_input == 'b':\n        raise ValueError('bad' + H + '\\nforged line')\n    return block_input\n")}
        ],
        "transitions": [{"id": "t", "from": "g", "to": "w", "type": "fan-out"}]
    });
    write_temp("hostile.braid.json", &project.to_string())
}

/// A shared project can't drive the terminal of whoever validates, runs or reads it: names, printed
/// output and errors reach stdout and stderr with their control characters escaped, and a name can't
/// start a line of its own (here, a forged "valid").
#[test]
fn names_and_output_that_could_drive_a_terminal_are_escaped() {
    let forged = format!("Gen{HOSTILE}\nforged.braid.json: valid (1 block)");
    let (_dir, path) = write_temp(
        "invalid.braid.json",
        &json!({"format_version": 1, "name": "p", "blocks": [
            {"id": "g", "name": forged, "kind": "code", "timeout_s": 0,
             "code": "def main(block_input, backpack):\n    return 1\n"}]})
        .to_string(),
    );
    let (code, stdout, _) = run_braid(&["validate", path.to_str().unwrap()]);
    assert_eq!(code, Some(1));
    assert_eq!(
        stdout,
        format!(
            "error: Block \"Gen{ESCAPED}\\nforged.braid.json: valid (1 block)\" has a timeout of 0 \
             seconds, so every run of it would time out\n{}: 1 error\n",
            path.display()
        )
    );

    // A run refused for that problem lists it in a message of several lines: still one line each.
    let (code, _, stderr) = run_braid(&["run", path.to_str().unwrap(), "--no-history"]);
    assert_eq!(code, Some(1));
    assert_eq!(
        stderr,
        format!(
            "braid: the project has problems:\n  Block \"Gen{ESCAPED}\\nforged.braid.json: valid (1 \
             block)\" has a timeout of 0 seconds, so every run of it would time out\n"
        )
    );

    let (_dir, path) = hostile_project();
    let project = path.to_str().unwrap();
    let (code, stdout, stderr) = run_braid(&["run", project]);
    assert_eq!(code, Some(1), "{stdout}{stderr}");
    assert_terminal_safe("run's stdout", &stdout);
    assert_terminal_safe("run's stderr", &stderr);
    assert!(
        stdout.contains(&format!(
            "  Work{ESCAPED} [1] (exception): ValueError: bad{ESCAPED}\\nforged line\n"
        )),
        "{stdout}"
    );
    // A worker's own output is shown as a terminal would show it (after its last `\r`), escaped.
    assert!(stderr.contains(": \\u{9b}1m\\u{202e}\n"), "{stderr}");

    let runs = history_runs(&path);
    let run_id = runs[0]["run_id"].as_str().unwrap();
    for args in [
        vec!["history", project],
        vec!["history", project, run_id],
        vec!["history", project, run_id, "--log"],
    ] {
        let (code, stdout, stderr) = run_braid(&args);
        assert_eq!(code, Some(0), "{args:?}: {stderr}");
        assert_terminal_safe(&format!("{args:?}"), &stdout);
    }
    let (_, rows, _) = run_braid(&["history", project, run_id, "--block", "w"]);
    assert!(rows.contains(&format!(" Work{ESCAPED} ")), "{rows}");
}

/// `--json` is JSON that decodes to the very names and text, with nothing raw a terminal would act on:
/// JSON escapes C0 controls itself, and Braid's output escapes DEL, C1 and bidi controls too.
#[test]
fn json_output_decodes_to_the_same_text_and_carries_no_terminal_controls() {
    let (_dir, path) = hostile_project();
    let project = path.to_str().unwrap();
    let (code, stdout, _) = run_braid(&["run", project, "--json"]);
    assert_eq!(code, Some(1));
    assert_terminal_safe("run --json", &stdout);
    let out: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(out["results"][0]["block"], format!("Work{HOSTILE}"));
    assert_eq!(out["results"][0]["output"], format!("a{HOSTILE}"));
    assert_eq!(
        out["failures"][0]["error"],
        format!("ValueError: bad{HOSTILE}\nforged line")
    );

    let run_id = out["run_id"].as_str().unwrap();
    for args in [
        vec!["history", project, "--json"],
        vec!["history", project, run_id, "--json"],
        vec!["history", project, run_id, "--log", "--json"],
    ] {
        let (code, stdout, _) = run_braid(&args);
        assert_eq!(code, Some(0), "{args:?}");
        assert_terminal_safe(&format!("{args:?}"), &stdout);
        let value: Value = serde_json::from_str(&stdout).unwrap();
        assert!(value.is_array(), "{args:?}: {value}");
    }
    let (_, records, _) = run_braid(&["history", project, run_id, "--json", "--block", "w"]);
    let records: Value = serde_json::from_str(&records).unwrap();
    assert_eq!(records[0]["block_name"], format!("Work{HOSTILE}"));
}

/// A project saved in another encoding is one clear line saying where, or that it is UTF-16 (exit 2).
#[test]
fn a_project_that_is_not_utf8_says_where_or_that_it_is_utf16() {
    let text = "{\"format_version\": 1, \"name\": \"caf\u{e9}\"}";
    let latin1: Vec<u8> = text.chars().map(|c| c as u8).collect();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("latin1.braid.json");
    std::fs::write(&path, latin1).unwrap();
    let (code, stdout, stderr) = run_braid(&["validate", path.to_str().unwrap()]);
    assert_eq!(code, Some(2));
    assert!(stdout.is_empty());
    assert_eq!(
        stderr,
        format!(
            "braid: {}:1:35: not UTF-8 text (byte 0xe9); save the file as UTF-8\n",
            path.display()
        )
    );

    let utf16: Vec<u8> = [0xff, 0xfe]
        .into_iter()
        .chain(text.encode_utf16().flat_map(u16::to_le_bytes))
        .collect();
    let path = dir.path().join("utf16.braid.json");
    std::fs::write(&path, utf16).unwrap();
    let (code, _, stderr) = run_braid(&["run", path.to_str().unwrap()]);
    assert_eq!(code, Some(2));
    assert_eq!(
        stderr,
        format!(
            "braid: {}: the file is UTF-16; save it as UTF-8\n",
            path.display()
        )
    );
}

/// A FIFO would block the read and `/dev/zero` never end it: a project or `--input @file` is a
/// regular file of at most 256 MiB, or one clear line (exit 2) at once.
#[test]
fn a_fifo_a_device_or_a_huge_file_is_refused_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("pipe.json");
    rustix::fs::mkfifoat(
        rustix::fs::CWD,
        &fifo,
        rustix::fs::Mode::from_raw_mode(0o600),
    )
    .unwrap();
    let huge = dir.path().join("huge.json");
    std::fs::File::create(&huge)
        .unwrap()
        .set_len(256 * 1024 * 1024 + 1)
        .unwrap();
    let fifo = fifo.to_str().unwrap();
    for (args, expected) in [
        (
            vec!["validate", fifo],
            format!("{fifo}: not a file but a named pipe (FIFO); Braid reads regular files only"),
        ),
        (
            vec!["run", "/dev/zero"],
            "/dev/zero: not a file but a device; Braid reads regular files only".to_owned(),
        ),
        (
            vec!["validate", huge.to_str().unwrap()],
            format!(
                "{}: larger than 256 MiB, the most Braid reads",
                huge.display()
            ),
        ),
    ] {
        let (code, _, stderr) = run_braid(&args);
        assert_eq!((code, stderr), (Some(2), format!("braid: {expected}\n")));
    }

    let (_dir, project) = write_temp(
        "p.braid.json",
        &json!({"format_version": 1, "name": "p", "blocks": [
            {"id": "a", "name": "A", "kind": "code",
             "code": "def main(block_input, backpack):\n    return block_input\n"}]})
        .to_string(),
    );
    let input = format!("@{fifo}");
    let (code, _, stderr) = run_braid(&[
        "run",
        project.to_str().unwrap(),
        "--no-history",
        "--input",
        &input,
    ]);
    assert_eq!(code, Some(2));
    assert_eq!(
        stderr,
        format!(
            "braid: --input: can't read {fifo}: not a file but a named pipe (FIFO); Braid reads \
             regular files only\n"
        )
    );
}

/// A one-block project whose block returns `code`'s value, and where its history goes.
fn recorded_project(code: &str) -> (tempfile::TempDir, PathBuf, PathBuf) {
    let (dir, path) = write_temp(
        "p.braid.json",
        &json!({"format_version": 1, "name": "p", "blocks": [
            {"id": "a", "name": "A", "kind": "code",
             "code": format!("def main(block_input, backpack):\n    return {code}\n")}]})
        .to_string(),
    );
    let history = dir.path().join(".braid/p.braid.json.history.sqlite");
    (dir, path, history)
}

/// Bytes 18 and 19 of an SQLite file: 1 for a rollback journal, 2 for WAL.
fn journal_mode_byte(path: &Path) -> u8 {
    std::fs::read(path).unwrap()[18]
}

/// Where the history goes, another program's database is refused as it is (not switched to WAL
/// first), and a link is refused rather than followed (an empty file it points to would become a
/// database): the run goes on unrecorded, with a warning, and `braid history` says why (exit 2).
#[test]
fn a_foreign_database_or_a_link_where_the_history_goes_is_left_untouched() {
    let (dir, project, history) = recorded_project("1");
    std::fs::create_dir_all(history.parent().unwrap()).unwrap();
    rusqlite::Connection::open(&history)
        .unwrap()
        .execute_batch("CREATE TABLE notes (text TEXT); INSERT INTO notes VALUES ('mine');")
        .unwrap();
    let before = std::fs::read(&history).unwrap();
    assert_eq!(journal_mode_byte(&history), 1);
    let project = project.to_str().unwrap();
    let (code, _, stderr) = run_braid(&["run", project]);
    assert_eq!(code, Some(0));
    assert!(
        stderr.contains("the run will not be recorded") && stderr.contains("not a Braid history"),
        "{stderr}"
    );
    let (code, stdout, stderr) = run_braid(&["history", project]);
    assert_eq!(code, Some(2));
    assert!(stdout.is_empty());
    assert_eq!(
        stderr,
        format!(
            "braid: history database {}: this SQLite database is not a Braid history\n",
            history.display()
        )
    );
    assert_eq!(std::fs::read(&history).unwrap(), before);

    std::fs::remove_file(&history).unwrap();
    let target = dir.path().join("empty");
    std::fs::write(&target, "").unwrap();
    std::os::unix::fs::symlink(&target, &history).unwrap();
    let (code, _, stderr) = run_braid(&["run", project]);
    assert_eq!(code, Some(0));
    assert!(stderr.contains("is a symbolic link"), "{stderr}");
    let (code, _, stderr) = run_braid(&["history", project]);
    assert_eq!(code, Some(2));
    assert!(stderr.contains("is a symbolic link"), "{stderr}");
    assert_eq!(std::fs::metadata(&target).unwrap().len(), 0);
}

/// `braid history` reads a history on a read-only file system (a mounted backup, a shared volume): it
/// opens the database read-only and changes nothing. The file system is made read-only in a mount
/// namespace of the test's own (`unshare`); where user namespaces are not allowed, only the rest of the
/// test runs.
#[test]
fn braid_history_reads_a_history_on_a_read_only_file_system() {
    let (dir, project, history) = recorded_project("[1, 2, 3]");
    let project = project.to_str().unwrap();
    let (code, _, stderr) = run_braid(&["run", project]);
    assert_eq!(code, Some(0), "{stderr}");
    let run_id = history_runs(Path::new(project))[0]["run_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let before = std::fs::read(&history).unwrap();
    let (code, stdout, _) = run_braid(&["history", project, &run_id, "--json"]);
    assert_eq!(code, Some(0));
    assert_eq!(
        serde_json::from_str::<Value>(&stdout).unwrap()[0]["output"],
        json!([1, 2, 3])
    );
    assert_eq!(std::fs::read(&history).unwrap(), before);

    let probe = std::process::Command::new("unshare")
        .args(["-Urm", "true"])
        .output();
    if !probe.is_ok_and(|out| out.status.success()) {
        eprintln!("no user namespaces here: the read-only file system is not tried");
        return;
    }
    let read_only = |args: &[&str]| {
        let out = std::process::Command::new("unshare")
            .args([
                "-Urm",
                "sh",
                "-c",
                r#"mount --bind -o ro "$0" "$0" && exec "$@""#,
            ])
            .arg(dir.path())
            .arg(env!("CARGO_BIN_EXE_braid"))
            .args(args)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8(out.stdout).unwrap(),
            String::from_utf8(out.stderr).unwrap(),
        )
    };
    let (code, stdout, stderr) = read_only(&["history", project]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stdout.starts_with(&format!("{run_id}  succeeded ")),
        "{stdout}"
    );
    let (code, stdout, stderr) = read_only(&["history", project, &run_id, "--json"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(
        serde_json::from_str::<Value>(&stdout).unwrap()[0]["output"],
        json!([1, 2, 3])
    );
}

/// `braid history RUN --json` on a history damaged under one record prints nothing rather than half
/// an array, and says what is wrong (exit 2).
#[test]
fn history_json_of_a_damaged_run_prints_nothing() {
    let (_dir, project) = write_temp(
        "p.braid.json",
        &json!({"format_version": 1, "name": "p",
            "blocks": [
                {"id": "a", "name": "A", "kind": "code",
                 "code": "def main(block_input, backpack):\n    return 1\n"},
                {"id": "b", "name": "B", "kind": "code",
                 "code": "def main(block_input, backpack):\n    return 'x' * 5000\n"}],
            "transitions": [{"id": "t", "from": "a", "to": "b", "type": "then"}]})
        .to_string(),
    );
    let project = project.to_str().unwrap();
    braid().args(["run", project]).assert().success();
    let run_id = history_runs(Path::new(project))[0]["run_id"]
        .as_str()
        .unwrap()
        .to_owned();
    // B's return value is a stored payload (1 kB or more); A's record is whole.
    let history = Path::new(project)
        .parent()
        .unwrap()
        .join(".braid/p.braid.json.history.sqlite");
    let deleted = rusqlite::Connection::open(&history)
        .unwrap()
        .execute("DELETE FROM payloads", [])
        .unwrap();
    assert_eq!(deleted, 1);
    let (code, stdout, stderr) = run_braid(&["history", project, &run_id, "--json"]);
    assert_eq!(code, Some(2));
    assert_eq!(stdout, "");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("is missing"), "{stderr}");
}

/// A Braid killed (SIGKILL) as soon as its run starts leaves the run in the history, read as
/// interrupted: the run's row is committed before its first invocation starts. What it leaves in
/// `.braid/` (the database with SQLite's `-wal` and `-shm`, unmerged) is its owner's alone.
#[test]
fn a_braid_killed_as_its_run_starts_leaves_the_run_interrupted() {
    use std::os::unix::fs::PermissionsExt as _;
    use std::os::unix::process::CommandExt as _;
    let dir = tempfile::tempdir().unwrap();
    let started = dir.path().join("started");
    let project = dir.path().join("starting.braid.json");
    std::fs::write(
        &project,
        json!({"format_version": 1, "name": "starting", "blocks": [
            {"id": "a", "name": "A", "kind": "code", "timeout_s": 300,
             "code": format!("import time\ndef main(block_input, backpack):\n    open({started:?}, 'w').close()\n    time.sleep(100)\n")}]})
        .to_string(),
    )
    .unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_braid"))
        .args(["run", project.to_str().unwrap()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .process_group(0)
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_mins(1);
    while !started.exists() {
        assert!(std::time::Instant::now() < deadline, "the block never ran");
        std::thread::sleep(Duration::from_millis(1));
    }
    let pid = rustix::process::Pid::from_raw(child.id().cast_signed()).expect("a process id");
    rustix::process::kill_process(pid, rustix::process::Signal::KILL).expect("killed");
    child.wait().unwrap();

    let runs = history_runs(&project);
    assert_eq!(runs.as_array().map(Vec::len), Some(1), "{runs}");
    assert_eq!(runs[0]["status"], "interrupted", "{runs}");

    let mode = |path: &Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    let folder = dir.path().join(".braid");
    assert_eq!(mode(&folder), 0o700);
    for suffix in ["", "-wal", "-shm"] {
        let file = folder.join(format!("starting.braid.json.history.sqlite{suffix}"));
        assert_eq!(mode(&file), 0o600, "{}", file.display());
    }
}
