//! Unit tests of the store: records written through the real writer thread, read back through `History`.

use serde_json::json;

use super::*;
use crate::model::TransitionId;
use crate::run::{ErrorInfo, InvocationStatus, RunSummary};

fn record(
    run: &RunId,
    id: u64,
    block: &str,
    path: &[u32],
    status: InvocationStatus,
) -> InvocationRecord {
    InvocationRecord {
        run_id: run.clone(),
        id,
        block_id: BlockId(format!("id-{block}").into()),
        block_name: block.into(),
        item_path: path.into(),
        item_names: crate::run::ItemNamePath::new(),
        attempt: 1,
        parents: smallvec::SmallVec::new(),
        status,
        queued_at_ms: 1000.0,
        started_at_ms: Some(1000.0 + id as f64),
        ended_at_ms: Some(1000.0 + 2.0 * id as f64),
        input: json!({"item": id}),
        backpack_in: json!({"shared": "the same for everyone"}).into(),
        output: (status == InvocationStatus::Succeeded).then(|| json!(id * 10)),
        backpack_out: Some(json!({"shared": "the same for everyone"}).into()),
        stdout: String::new(),
        stderr: String::new(),
        error: status.is_failure().then(|| ErrorInfo {
            kind: "ValueError".to_owned(),
            message: format!("bad row {id}"),
            traceback: format!("Traceback (most recent call last):\n  File \"{block}\", line 3\nValueError: bad row {id}"),
            line: Some(3),
        }),
        fired: Vec::new(),
        worker: None,
        fanned_out: Vec::new(),
        carried_from: None,
    }
}

fn summary(run: &RunId, status: RunStatus, started_at_ms: f64, invocations: u64) -> RunSummary {
    RunSummary {
        run_id: run.clone(),
        status,
        results: Vec::new(),
        invocations,
        failures: Vec::new(),
        tolerated: Vec::new(),
        redrive_of: None,
        started_at_ms,
        duration_ms: 42.0,
    }
}

/// Records one run through a writer and waits until it is committed.
fn write_run(path: &Path, run: &RunId, started_at_ms: f64, records: &[InvocationRecord]) {
    let writer = HistoryWriter::start(path).unwrap();
    writer.run_started(run, "test project", started_at_ms, &Executor::Local);
    // In several messages, as the engine sends them.
    for chunk in records.chunks(7) {
        writer.invocations(chunk);
    }
    let status = if records.iter().any(|r| r.status.is_failure()) {
        RunStatus::Failed
    } else {
        RunStatus::Succeeded
    };
    writer
        .run_finished_flushed(&summary(run, status, started_at_ms, records.len() as u64))
        .blocking_recv()
        .unwrap();
}

fn temp_db() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir
        .path()
        .join(".braid")
        .join("p.braid.json.history.sqlite");
    (dir, path)
}

/// The records stored in chunks, over all runs.
fn stored_records(history: &History) -> i64 {
    history
        .conn
        .query_row("SELECT coalesce(sum(count), 0) FROM chunks", [], |row| {
            row.get(0)
        })
        .unwrap()
}

fn count(history: &History, table: &str) -> i64 {
    history
        .conn
        .query_row(&format!("SELECT count(*) FROM {table}"), [], |row| {
            row.get(0)
        })
        .unwrap()
}

/// 20 invocations of "Work" at item paths [0]..[19], #5 and #12 failing, plus one of "Gen" and "Collect".
fn sample(run: &RunId) -> Vec<InvocationRecord> {
    let mut records = vec![record(run, 1, "Gen", &[], InvocationStatus::Succeeded)];
    for i in 0..20_u32 {
        let id = u64::from(i) + 2;
        let status = if i == 5 || i == 12 {
            InvocationStatus::Exception
        } else {
            InvocationStatus::Succeeded
        };
        let mut r = record(run, id, "Work", &[i], status);
        r.parents = smallvec::smallvec![1];
        records.push(r);
    }
    let mut collect = record(run, 22, "Collect", &[], InvocationStatus::Succeeded);
    collect.parents = (2..22).collect();
    records.push(collect);
    records
}

#[test]
fn open_creates_the_folder_and_the_schema_and_reopens() {
    let (_dir, path) = temp_db();
    let history = History::open(&path).unwrap();
    assert!(path.exists());
    let version: i64 = history
        .conn
        .query_row("PRAGMA user_version", [], |row| row.get(0))
        .unwrap();
    assert_eq!(version, schema::SCHEMA_VERSION);
    let mode: String = history
        .conn
        .query_row("PRAGMA journal_mode", [], |row| row.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    let page_size: i64 = history
        .conn
        .query_row("PRAGMA page_size", [], |row| row.get(0))
        .unwrap();
    assert_eq!(page_size, 16384);
    drop(history);
    assert!(History::open(&path).unwrap().runs().unwrap().is_empty());
}

#[test]
fn a_damaged_file_is_an_error_naming_it() {
    let (_dir, path) = temp_db();
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(
        &path,
        "this is not SQLite, just text that is long enough to have a header page".repeat(100),
    )
    .unwrap();
    let error = History::open(&path).unwrap_err().to_string();
    assert!(error.contains(&path.display().to_string()), "{error}");
    assert!(error.contains("damaged"), "{error}");
    assert!(HistoryWriter::start(&path).is_err());
}

#[test]
fn another_programs_database_and_a_newer_history_are_refused() {
    let (_dir, path) = temp_db();
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute_batch("CREATE TABLE notes (text TEXT)")
        .unwrap();
    let error = History::open(&path).unwrap_err().to_string();
    assert!(error.contains("not a Braid history"), "{error}");
    let error = History::open_read_only(&path).unwrap_err().to_string();
    assert!(error.contains("not a Braid history"), "{error}");
    // Refused as it was: still in its own journal mode, not switched to WAL first.
    assert_eq!(journal_mode(&path), "delete");
    assert!(!wal_of(&path).exists());

    let (_dir2, newer) = temp_db();
    drop(History::open(&newer).unwrap());
    rusqlite::Connection::open(&newer)
        .unwrap()
        .pragma_update(None, "user_version", 99)
        .unwrap();
    let error = History::open(&newer).unwrap_err().to_string();
    assert!(error.contains("newer Braid"), "{error}");
}

/// The journal mode the database's header says (read without changing it).
fn journal_mode(path: &Path) -> &'static str {
    let header = std::fs::read(path).unwrap();
    // Bytes 18 and 19: 1 for a rollback journal, 2 for WAL.
    match header[18] {
        1 => "delete",
        2 => "wal",
        other => panic!("file format byte {other}"),
    }
}

fn wal_of(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push("-wal");
    name.into()
}

/// `braid history` and the panel's background reads open the database read-only: nothing in the
/// file or its folder changes (no tables, no WAL switch, no `.gitignore`), a database being made reads
/// as having no runs, and deleting through such a reader fails.
#[test]
fn reading_a_history_changes_nothing() {
    let (_dir, path) = temp_db();
    let run = RunId("run-1".into());
    let writer = HistoryWriter::start(&path).unwrap();
    writer.run_started(&run, "p", 1.0, &Executor::Local);
    writer.invocations(&sample(&run));
    writer.run_finished(&summary(&run, RunStatus::Failed, 1.0, 10));
    // Closed: its WAL is merged into the file, whose bytes then stay as they are.
    writer.close().blocking_recv().unwrap();
    let folder = path.parent().unwrap();
    std::fs::remove_file(folder.join(".gitignore")).unwrap();
    let before = std::fs::read(&path).unwrap();

    let history = History::open_read_only(&path).unwrap();
    assert_eq!(history.runs().unwrap()[0].run_id, run);
    assert_eq!(
        history.invocation(&run, 1).unwrap().unwrap(),
        sample(&run)[0]
    );
    let error = history.delete_run(&run).unwrap_err().to_string();
    assert!(error.contains("readonly database"), "{error}");
    drop(history);
    assert_eq!(std::fs::read(&path).unwrap(), before);
    assert!(!folder.join(".gitignore").exists());

    // An empty file (a database the runtime is making) has no runs, and stays empty.
    let (_dir2, empty) = temp_db();
    std::fs::create_dir_all(empty.parent().unwrap()).unwrap();
    std::fs::write(&empty, "").unwrap();
    assert!(
        History::open_read_only(&empty)
            .unwrap()
            .runs()
            .unwrap()
            .is_empty()
    );
    assert_eq!(std::fs::metadata(&empty).unwrap().len(), 0);
}

/// A link in `.braid/` (a shared copy of a project may carry one) is never opened: an empty file it
/// points to would become a database, another program's would be written into.
#[cfg(unix)]
#[test]
fn links_where_the_history_is_are_refused_not_followed() {
    let (dir, path) = temp_db();
    let folder = path.parent().unwrap();
    std::fs::create_dir_all(folder).unwrap();
    let target = dir.path().join("elsewhere");
    std::fs::write(&target, "").unwrap();
    std::os::unix::fs::symlink(&target, &path).unwrap();
    for error in [
        History::open(&path).unwrap_err(),
        History::open_read_only(&path).unwrap_err(),
        HistoryWriter::start_opening(&path).unwrap_err(),
    ] {
        let error = error.to_string();
        assert!(error.contains("is a symbolic link"), "{error}");
    }
    assert_eq!(std::fs::metadata(&target).unwrap().len(), 0);

    // Nor SQLite's own files beside it, which it opens by name.
    std::fs::remove_file(&path).unwrap();
    drop(History::open(&path).unwrap());
    std::os::unix::fs::symlink(&target, wal_of(&path)).unwrap();
    let error = History::open(&path).unwrap_err().to_string();
    assert!(error.contains("-wal is a symbolic link"), "{error}");
    assert_eq!(std::fs::metadata(&target).unwrap().len(), 0);
}

/// The history holds every input and result: its folder and files, SQLite's `-wal` and `-shm`
/// included, are their owner's alone, as the variables' values beside them are.
#[cfg(unix)]
#[test]
fn the_history_and_its_folder_are_owner_only() {
    use std::os::unix::fs::PermissionsExt as _;
    let mode = |path: &Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    let (_dir, path) = temp_db();
    let writer = HistoryWriter::start_opening(&path).unwrap();
    let run = RunId("run-1".into());
    writer.run_started(&run, "p", 1.0, &Executor::Local);
    writer.invocations(&sample(&run));
    writer
        .run_finished_flushed(&summary(&run, RunStatus::Failed, 1.0, 10))
        .blocking_recv()
        .unwrap();
    let mut shm = path.as_os_str().to_owned();
    shm.push("-shm");
    // While the writer has it open, WAL and shared memory are there too.
    for file in [path.clone(), wal_of(&path), shm.into()] {
        assert_eq!(mode(&file), 0o600, "{}", file.display());
    }
    assert_eq!(mode(path.parent().unwrap()), 0o700);
    writer.close().blocking_recv().unwrap();

    // A history an earlier Braid left open to others is closed to them when it is next written.
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    drop(History::open(&path).unwrap());
    assert_eq!(mode(&path), 0o600);
}

/// The run's row is committed as the run starts, before its first records: a Braid killed right
/// after leaves the run in the history.
#[test]
fn a_run_started_flushed_is_in_the_history_at_once() {
    let (_dir, path) = temp_db();
    let writer = HistoryWriter::start_opening(&path).unwrap();
    let run = RunId("run-1".into());
    writer
        .run_started_flushed(&run, "p", 1.0, &Executor::Local, None)
        .blocking_recv()
        .unwrap();
    let runs = History::open_read_only(&path).unwrap().runs().unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].run_id, run);
    assert_eq!(runs[0].status, RunStatus::Running);
    writer.close().blocking_recv().unwrap();
}

#[test]
fn a_folder_that_cannot_be_created_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a file");
    std::fs::write(&file, "").unwrap();
    let error = History::open(&file.join("h.sqlite"))
        .unwrap_err()
        .to_string();
    assert!(error.contains("can't create the folder"), "{error}");
}

#[test]
fn records_round_trip_whole() {
    let (_dir, path) = temp_db();
    let run = RunId("run-1".into());
    let mut records = sample(&run);
    records[6].stdout = "printed\n".to_owned();
    records[6].stderr = "warned\n".to_owned();
    records[6].fired = vec![TransitionId("t1".into())];
    records[6].attempt = 2;
    records[6].output = Some(json!({"big": "x".repeat(10_000)}));
    write_run(&path, &run, 5000.0, &records);
    let history = History::open(&path).unwrap();
    for original in &records {
        assert_eq!(
            history.invocation(&run, original.id).unwrap().as_ref(),
            Some(original)
        );
    }
    assert_eq!(history.invocation(&run, 999).unwrap(), None);
    assert_eq!(history.invocation(&RunId("nope".into()), 1).unwrap(), None);
}

#[test]
fn runs_are_listed_newest_first_with_counts() {
    let (_dir, path) = temp_db();
    let (old, new) = (RunId("old".into()), RunId("new".into()));
    write_run(&path, &new, 2000.0, &sample(&new));
    write_run(&path, &old, 1000.0, &sample(&old)[..3]);
    let history = History::open(&path).unwrap();
    let runs = history.runs().unwrap();
    assert_eq!(
        runs.iter().map(|r| &*r.run_id.0).collect::<Vec<_>>(),
        ["new", "old"]
    );
    let newest = &runs[0];
    assert_eq!(newest.status, RunStatus::Failed);
    assert_eq!(newest.invocations, 22);
    assert_eq!(newest.counts.succeeded, 20);
    assert_eq!(newest.counts.failed, 2);
    assert_eq!(newest.duration_ms, Some(42.0));
    assert_eq!(runs[1].status, RunStatus::Succeeded);
    assert_eq!(history.run(&old).unwrap().unwrap().invocations, 3);
}

#[test]
fn identical_payloads_are_stored_once_and_large_ones_compressed() {
    let (_dir, path) = temp_db();
    let run = RunId("dedup".into());
    let big = json!({"shared": "y".repeat(100_000)});
    let records: Vec<_> = (1..=1000)
        .map(|id| {
            let mut r = record(&run, id, "Work", &[id as u32], InvocationStatus::Succeeded);
            r.backpack_in = big.clone().into();
            r.backpack_out = Some(big.clone().into());
            r
        })
        .collect();
    write_run(&path, &run, 1.0, &records);
    let history = History::open(&path).unwrap();
    // One backpack; the small inputs and outputs are kept in the chunks.
    assert_eq!(count(&history, "payloads"), 1);
    let stored: i64 = history
        .conn
        .query_row("SELECT sum(length(data)) FROM payloads", [], |row| {
            row.get(0)
        })
        .unwrap();
    assert!(
        stored < 50_000,
        "the 100 kB backpack compresses: {stored} bytes stored"
    );
    assert_eq!(
        history.invocation(&run, 500).unwrap().unwrap().backpack_out,
        Some(big.into())
    );
}

/// The run's rows whose input, output or error contains `text`.
fn with_text(history: &History, run: &RunId, text: &str) -> Vec<InvocationRow> {
    history
        .invocation_rows(
            run,
            &InvocationFilter {
                text: Some(text.to_owned()),
                ..InvocationFilter::default()
            },
        )
        .unwrap()
}

fn ids(rows: &[InvocationRow]) -> Vec<u64> {
    rows.iter().map(|r| r.id).collect()
}

#[test]
fn rows_honour_every_filter() {
    let (_dir, path) = temp_db();
    let run = RunId("filters".into());
    let mut records = sample(&run);
    // Nested paths under [3].
    let mut nested = record(&run, 23, "Inner", &[3, 7], InvocationStatus::Succeeded);
    nested.input = json!("Needle in the input");
    records.push(nested);
    records.push(record(
        &run,
        24,
        "Inner",
        &[31, 0],
        InvocationStatus::Succeeded,
    ));
    write_run(&path, &run, 1.0, &records);
    let history = History::open(&path).unwrap();
    let rows = |filter: InvocationFilter| history.invocation_rows(&run, &filter).unwrap();

    assert_eq!(rows(InvocationFilter::default()).len(), 24);
    let work = rows(InvocationFilter {
        block: Some(BlockId("id-Work".into())),
        ..InvocationFilter::default()
    });
    assert_eq!(ids(&work), (2..22).collect::<Vec<_>>());
    assert_eq!(&*work[0].block_name, "Work");
    assert_eq!(work[0].input_preview, r#"{"item":2}"#);

    let failed = rows(InvocationFilter {
        statuses: vec![InvocationStatus::Exception, InvocationStatus::TimedOut],
        ..InvocationFilter::default()
    });
    assert_eq!(ids(&failed), [7, 14]);
    assert_eq!(
        failed[0].error_summary.as_deref(),
        Some("ValueError: bad row 7")
    );
    assert_eq!(failed[0].item_path[..], [5]);

    let under_3 = rows(InvocationFilter {
        item_path_prefix: Some(vec![3]),
        ..InvocationFilter::default()
    });
    assert_eq!(ids(&under_3), [5, 23]);
    let exact = rows(InvocationFilter {
        item_path_prefix: Some(vec![3, 7]),
        ..InvocationFilter::default()
    });
    assert_eq!(ids(&exact), [23]);
    assert_eq!(
        rows(InvocationFilter {
            item_path_prefix: Some(Vec::new()),
            ..InvocationFilter::default()
        })
        .len(),
        24
    );

    // Text: in the input (any case), in the output, in the error's traceback.
    let text = |t: &str| {
        ids(&rows(InvocationFilter {
            text: Some(t.to_owned()),
            ..InvocationFilter::default()
        }))
    };
    assert_eq!(text("needle"), [23]);
    assert_eq!(text("130"), [13]);
    assert_eq!(text("bad row 14"), [14]);
    assert_eq!(text("most recent call"), [7, 14]);
    assert!(text("nowhere at all").is_empty());

    // Everything at once.
    let combined = rows(InvocationFilter {
        block: Some(BlockId("id-Work".into())),
        statuses: vec![InvocationStatus::Exception],
        text: Some("row".into()),
        item_path_prefix: Some(vec![12]),
        order: RowOrder::Id,
        ..InvocationFilter::default()
    });
    assert_eq!(ids(&combined), [14]);

    assert!(
        history
            .invocation_rows(&RunId("unknown".into()), &InvocationFilter::default())
            .unwrap()
            .is_empty()
    );
}

#[test]
fn rows_sort_by_duration_and_start() {
    let (_dir, path) = temp_db();
    let run = RunId("order".into());
    let mut records: Vec<_> = (1..=4)
        .map(|id| record(&run, id, "B", &[], InvocationStatus::Succeeded))
        .collect();
    // Durations 30, 10, none (cancelled before it started), 20; starts 4, 3, -, 1.
    for (r, (start, duration)) in records.iter_mut().zip([
        (Some(4.0), 30.0),
        (Some(3.0), 10.0),
        (None, 0.0),
        (Some(1.0), 20.0),
    ]) {
        r.started_at_ms = start;
        r.ended_at_ms = start.map(|s| s + duration);
    }
    records[2].status = InvocationStatus::Cancelled;
    write_run(&path, &run, 1.0, &records);
    let history = History::open(&path).unwrap();
    let order = |order: RowOrder| {
        ids(&history
            .invocation_rows(
                &run,
                &InvocationFilter {
                    order,
                    ..InvocationFilter::default()
                },
            )
            .unwrap())
    };
    assert_eq!(order(RowOrder::Id), [1, 2, 3, 4]);
    assert_eq!(order(RowOrder::DurationDescending), [1, 4, 2, 3]);
    assert_eq!(order(RowOrder::DurationAscending), [2, 4, 1, 3]);
    assert_eq!(order(RowOrder::Started), [4, 2, 1, 3]);
}

#[test]
fn children_follow_fan_out_and_fan_in() {
    let (_dir, path) = temp_db();
    let run = RunId("lineage".into());
    write_run(&path, &run, 1.0, &sample(&run));
    let history = History::open(&path).unwrap();
    assert_eq!(
        history.children(&run, 1).unwrap(),
        (2..22).collect::<Vec<_>>()
    );
    assert_eq!(history.children(&run, 9).unwrap(), [22]);
    assert!(history.children(&run, 22).unwrap().is_empty());
    assert_eq!(
        history.invocation(&run, 22).unwrap().unwrap().parents[..],
        (2..22).collect::<Vec<_>>()
    );
}

#[test]
fn delete_and_retention_remove_runs_and_only_unshared_payloads() {
    let (_dir, path) = temp_db();
    let runs: Vec<RunId> = (0..4).map(|i| RunId(format!("run-{i}").into())).collect();
    for (i, run) in runs.iter().enumerate() {
        let mut records = sample(run);
        // A value only this run has.
        // Large enough to be a payload rather than kept in the chunk.
        records[0].output = Some(json!(format!("only in run {i}: {}", "z".repeat(2000))));
        write_run(&path, run, 1000.0 * (i as f64 + 1.0), &records);
    }
    let history = History::open(&path).unwrap();
    let payloads_before = count(&history, "payloads");

    history.delete_run(&runs[1]).unwrap();
    assert!(history.run(&runs[1]).unwrap().is_none());
    assert_eq!(history.invocation(&runs[1], 1).unwrap(), None);
    assert_eq!(count(&history, "payloads"), payloads_before - 1);
    // Deleting again, or an unknown run, is fine.
    history.delete_run(&runs[1]).unwrap();
    // Shared payloads survive for the runs that are left.
    assert_eq!(
        history.invocation(&runs[0], 3).unwrap().unwrap().input,
        json!({"item": 3})
    );

    history.apply_retention(2).unwrap();
    let left: Vec<_> = history
        .runs()
        .unwrap()
        .into_iter()
        .map(|r| r.run_id)
        .collect();
    assert_eq!(left, [runs[3].clone(), runs[2].clone()]);
    assert_eq!(count(&history, "payloads"), payloads_before - 2);
    assert_eq!(stored_records(&history), 44);
    for run in &left {
        assert_eq!(history.children(run, 1).unwrap().len(), 20);
        assert_eq!(history.children(run, 2).unwrap(), [22]);
    }
    history.apply_retention(2).unwrap();
    assert_eq!(history.runs().unwrap().len(), 2);

    history.apply_retention(0).unwrap();
    assert_eq!(count(&history, "payloads"), 0);
    assert_eq!(stored_records(&history), 0);
    assert_eq!(count(&history, "chunks"), 0);
}

#[test]
fn a_writer_that_outlives_a_deletion_does_not_point_at_deleted_payloads() {
    let (_dir, path) = temp_db();
    let (a, b) = (RunId("a".into()), RunId("b".into()));
    let writer = HistoryWriter::start(&path).unwrap();
    let flush = |run: &RunId| {
        writer
            .run_finished_flushed(&summary(run, RunStatus::Succeeded, 1.0, 1))
            .blocking_recv()
            .unwrap();
    };
    // Large enough to be a payload row rather than kept in the chunk.
    let big = |run: &RunId| {
        let mut r = record(run, 1, "B", &[], InvocationStatus::Succeeded);
        r.input = json!({"item": 1, "padding": "p".repeat(2000)});
        r
    };
    writer.run_started(&a, "p", 1.0, &Executor::Local);
    writer.invocations(&[big(&a)]);
    flush(&a);
    History::open(&path).unwrap().delete_run(&a).unwrap();
    // The same values again, through the same writer: its memo of payload ids must not be trusted.
    writer.run_started(&b, "p", 2.0, &Executor::Local);
    writer.invocations(&[big(&b)]);
    flush(&b);
    let history = History::open(&path).unwrap();
    let back = history.invocation(&b, 1).unwrap().unwrap();
    assert_eq!(back.input, big(&b).input);
}

#[test]
fn a_run_deleted_while_recording_does_not_come_back() {
    let (_dir, path) = temp_db();
    let run = RunId("live".into());
    let writer = HistoryWriter::start(&path).unwrap();
    writer.run_started(&run, "p", 1.0, &Executor::Local);
    writer.invocations(&[record(&run, 1, "B", &[], InvocationStatus::Succeeded)]);
    let history = History::open(&path).unwrap();
    // Let the writer commit what it has, then delete the run under it.
    std::thread::sleep(std::time::Duration::from_millis(200));
    history.delete_run(&run).unwrap();
    writer.invocations(&[record(&run, 2, "B", &[], InvocationStatus::Succeeded)]);
    writer
        .run_finished_flushed(&summary(&run, RunStatus::Succeeded, 1.0, 2))
        .blocking_recv()
        .unwrap();
    assert!(history.runs().unwrap().is_empty());
    assert_eq!(stored_records(&history), 0);
}

#[test]
fn text_search_finds_one_row_among_100k_and_every_row_sorts() {
    let (_dir, path) = temp_db();
    let run = RunId("big".into());
    let records: Vec<_> = (1..=100_000)
        .map(|id| record(&run, id, "Work", &[id as u32], InvocationStatus::Succeeded))
        .collect();
    write_run(&path, &run, 1.0, &records);
    let history = History::open(&path).unwrap();
    let rows = with_text(&history, &run, "\"item\":99999}");
    assert_eq!(ids(&rows), [99_999]);
    let all = history
        .invocation_rows(
            &run,
            &InvocationFilter {
                order: RowOrder::DurationDescending,
                ..InvocationFilter::default()
            },
        )
        .unwrap();
    assert_eq!(all.len(), 100_000);
    assert_eq!(all[0].id, 100_000);
}

// --- format 2: chunks ---------------------------------------------------------------------------

#[test]
fn a_record_sent_twice_is_stored_and_counted_once() {
    let (_dir, path) = temp_db();
    let run = RunId("twice".into());
    let writer = HistoryWriter::start(&path).unwrap();
    writer.run_started(&run, "p", 1.0, &Executor::Local);
    let first = record(&run, 1, "B", &[], InvocationStatus::Succeeded);
    let mut again = first.clone();
    again.status = InvocationStatus::Exception;
    writer.invocations(&[
        first.clone(),
        record(&run, 2, "B", &[], InvocationStatus::Succeeded),
    ]);
    // In the same transaction, and in a later one.
    writer.invocations(std::slice::from_ref(&again));
    writer
        .run_finished_flushed(&summary(&run, RunStatus::Succeeded, 1.0, 2))
        .blocking_recv()
        .unwrap();
    writer.invocations(&[
        again,
        record(&run, 3, "B", &[], InvocationStatus::Succeeded),
    ]);
    writer
        .run_finished_flushed(&summary(&run, RunStatus::Succeeded, 1.0, 3))
        .blocking_recv()
        .unwrap();
    let history = History::open(&path).unwrap();
    let row = history.run(&run).unwrap().unwrap();
    assert_eq!(row.invocations, 3);
    assert_eq!((row.counts.succeeded, row.counts.failed), (3, 0));
    let rows = history
        .invocation_rows(&run, &InvocationFilter::default())
        .unwrap();
    assert_eq!(ids(&rows), [1, 2, 3]);
    assert_eq!(history.invocation(&run, 1).unwrap(), Some(first));
}

#[test]
fn a_run_is_read_while_it_is_being_written() {
    let (_dir, path) = temp_db();
    let run = RunId("growing".into());
    let writer = HistoryWriter::start(&path).unwrap();
    writer.run_started(&run, "p", 1.0, &Executor::Local);
    let records = sample(&run);
    let flush = || {
        // A finished message of another run: waits for everything sent before, leaves this run running.
        let other = RunId("flush".into());
        writer
            .run_finished_flushed(&summary(&other, RunStatus::Succeeded, 1.0, 0))
            .blocking_recv()
            .unwrap();
    };
    writer.invocations(&records[..10]);
    flush();
    let history = History::open(&path).unwrap();
    assert_eq!(
        history.run(&run).unwrap().unwrap().status,
        RunStatus::Running
    );
    let rows = |h: &History| {
        h.invocation_rows(&run, &InvocationFilter::default())
            .unwrap()
    };
    assert_eq!(rows(&history).len(), 10);
    assert_eq!(
        history.children(&run, 1).unwrap(),
        (2..=10).collect::<Vec<_>>()
    );
    assert!(history.children(&run, 2).unwrap().is_empty());
    // More comes in: the same connection sees it, the lineage it keeps included.
    writer.invocations(&records[10..]);
    flush();
    assert_eq!(rows(&history).len(), 22);
    assert_eq!(
        history.children(&run, 1).unwrap(),
        (2..22).collect::<Vec<_>>()
    );
    assert_eq!(history.children(&run, 2).unwrap(), [22]);
    assert_eq!(
        history.invocation(&run, 22).unwrap().as_ref(),
        Some(&records[21])
    );
}

#[test]
fn invocations_are_found_in_chunks_whose_ids_overlap() {
    let (_dir, path) = temp_db();
    let run = RunId("overlap".into());
    let mut records: Vec<_> = (1..=6)
        .map(|id| record(&run, id, "B", &[id as u32], InvocationStatus::Succeeded))
        .collect();
    // 1 and 6 finish first, 2..=5 later: two chunks, [1, 6] and [2, 5].
    records.swap(1, 5);
    let writer = HistoryWriter::start(&path).unwrap();
    writer.run_started(&run, "p", 1.0, &Executor::Local);
    for batch in [&records[..2], &records[2..]] {
        writer.invocations(batch);
        writer
            .run_finished_flushed(&summary(&run, RunStatus::Succeeded, 1.0, 6))
            .blocking_recv()
            .unwrap();
    }
    let history = History::open(&path).unwrap();
    assert_eq!(count(&history, "chunks"), 2);
    for original in &records {
        assert_eq!(
            history.invocation(&run, original.id).unwrap().as_ref(),
            Some(original)
        );
    }
    let rows = history
        .invocation_rows(&run, &InvocationFilter::default())
        .unwrap();
    assert_eq!(ids(&rows), [1, 2, 3, 4, 5, 6]);
}

#[test]
fn large_inputs_are_previewed_and_searched() {
    let (_dir, path) = temp_db();
    let run = RunId("large".into());
    let mut records = sample(&run);
    records[3].input = json!({"text": format!("{}needle{}", "a".repeat(3000), "b".repeat(3000))});
    // The same large value in another record: one payload.
    records[4].input = records[3].input.clone();
    write_run(&path, &run, 1.0, &records);
    let history = History::open(&path).unwrap();
    assert_eq!(count(&history, "payloads"), 1);
    let found = with_text(&history, &run, "NEEDLE");
    assert_eq!(ids(&found), [4, 5]);
    assert_eq!(found[0].input_preview.chars().count(), 120);
    assert!(found[0].input_preview.starts_with("{\"text\":\"aaa"));
    assert!(found[0].input_preview.ends_with('…'));
    assert_eq!(
        history.invocation(&run, 5).unwrap().unwrap().input,
        records[4].input
    );
}

#[test]
fn a_damaged_chunk_is_an_error_naming_the_run() {
    let (_dir, path) = temp_db();
    let run = RunId("broken".into());
    write_run(&path, &run, 1.0, &sample(&run));
    let history = History::open(&path).unwrap();
    let damage = |sql: &str| {
        history.conn.execute_batch(sql).unwrap();
        // A fresh connection: nothing cached.
        let fresh = History::open(&path).unwrap();
        for error in [
            fresh
                .invocation_rows(&run, &InvocationFilter::default())
                .map(|_| ())
                .unwrap_err(),
            fresh.invocation(&run, 10).map(|_| ()).unwrap_err(),
            fresh.children(&run, 1).map(|_| ()).unwrap_err(),
        ] {
            let error = error.to_string();
            assert!(error.contains("damaged history"), "{error}");
            assert!(error.contains("run broken"), "{error}");
            assert!(error.contains(&path.display().to_string()), "{error}");
        }
    };
    let original: Vec<u8> = history
        .conn
        .query_row("SELECT data FROM chunks", [], |row| row.get(0))
        .unwrap();
    damage("UPDATE chunks SET data = substr(data, 1, 60)");
    damage("UPDATE chunks SET data = x'07'");
    damage("UPDATE chunks SET data = 'text, not a blob'");
    // Every byte changed in turn: an error or a record, never a panic.
    for at in 1..original.len() {
        let mut damaged = original.clone();
        damaged[at] ^= 0xa5;
        history
            .conn
            .execute("UPDATE chunks SET data = ?1", [&damaged])
            .unwrap();
        let fresh = History::open(&path).unwrap();
        let _ = fresh.invocation_rows(&run, &InvocationFilter::default());
        let _ = fresh.invocation(&run, 10);
        let _ = fresh.children(&run, 1);
    }
    // Deleting a damaged run still works.
    history.delete_run(&run).unwrap();
    assert!(history.runs().unwrap().is_empty());
}

#[test]
fn a_format_1_history_is_refused_and_left_as_it_was() {
    let (_dir, path) = temp_db();
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(
            "CREATE TABLE runs (seq INTEGER PRIMARY KEY, run_id TEXT);
             CREATE TABLE invocations (id INTEGER PRIMARY KEY, run INTEGER);
             INSERT INTO runs VALUES (1, 'run-1');
             INSERT INTO invocations VALUES (1, 1);
             PRAGMA user_version = 1;",
        )
        .unwrap();
    }
    let error = History::open(&path).unwrap_err().to_string();
    assert_eq!(
        error,
        format!(
            "history database {}: written by a pre-release Braid (history format 1; this Braid \
             reads 2); move the file away to start a new history",
            path.display()
        )
    );
    assert!(HistoryWriter::start(&path).is_err());
    let conn = rusqlite::Connection::open(&path).unwrap();
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |row| row.get(0))
        .unwrap();
    assert_eq!(version, 1);
    let rows: i64 = conn
        .query_row("SELECT count(*) FROM invocations", [], |row| row.get(0))
        .unwrap();
    assert_eq!(rows, 1);
}

#[test]
fn a_new_database_made_while_the_run_starts_records_it_whole() {
    let (_dir, path) = temp_db();
    let run = RunId("new".into());
    let writer = HistoryWriter::start_opening(&path).unwrap();
    // Sent at once, before the writer's thread has made the tables: they wait in the channel.
    writer.run_started(&run, "test project", 1000.0, &Executor::Local);
    let records: Vec<_> = (1..=20)
        .map(|id| record(&run, id, "Work", &[id as u32], InvocationStatus::Succeeded))
        .collect();
    writer.invocations(&records);
    writer
        .run_finished_flushed(&summary(&run, RunStatus::Succeeded, 1000.0, 20))
        .blocking_recv()
        .unwrap();
    let history = History::open(&path).unwrap();
    assert_eq!(history.runs().unwrap()[0].invocations, 20);
    assert_eq!(stored_records(&history), 20);
}

#[test]
fn a_new_database_where_no_file_can_be_made_is_refused_at_once() {
    let dir = tempfile::tempdir().unwrap();
    // Its folder would have to be inside a plain file.
    let blocker = dir.path().join("not-a-folder");
    std::fs::write(&blocker, "x").unwrap();
    let error = HistoryWriter::start_opening(&blocker.join("p.history.sqlite")).unwrap_err();
    assert!(error.to_string().contains("not-a-folder"), "{error}");
}

#[test]
fn a_run_whose_recorder_is_gone_reads_as_interrupted_and_retention_may_drop_it() {
    let (_dir, path) = temp_db();
    let writer = HistoryWriter::start(&path).unwrap();
    let (live, dead) = (RunId("live".into()), RunId("dead".into()));
    writer.run_started(&live, "p", 1.0, &Executor::Local);
    writer.run_started(&dead, "p", 2.0, &Executor::Local);
    writer
        .run_finished_flushed(&summary(
            &RunId("done".into()),
            RunStatus::Succeeded,
            3.0,
            0,
        ))
        .blocking_recv()
        .unwrap();
    let history = History::open(&path).unwrap();
    let Some(me) = owner::this_process() else {
        return; // no /proc here: nothing is claimed, every unfinished run reads as running
    };
    // The dead run's recorder: this process, as if it had started at another time (a reused pid).
    let mut gone: Vec<&str> = me.split('\t').collect();
    gone[3] = "1";
    history
        .conn
        .execute(
            "UPDATE recorders SET owner = ?1 WHERE run = (SELECT seq FROM runs WHERE run_id = 'dead')",
            [gone.join("\t")],
        )
        .unwrap();
    let status = |run: &RunId| history.run(run).unwrap().map(|r| r.status);
    assert_eq!(status(&live), Some(RunStatus::Running));
    assert_eq!(status(&dead), Some(RunStatus::Interrupted));

    history.apply_retention(0).unwrap();
    assert_eq!(
        status(&live),
        Some(RunStatus::Running),
        "still being recorded"
    );
    assert_eq!(status(&dead), None);
    let left: i64 = history
        .conn
        .query_row("SELECT count(*) FROM recorders", [], |row| row.get(0))
        .unwrap();
    assert_eq!(left, 1, "only the live run's recorder is left");

    // The end of a run removes its recorder.
    writer
        .run_finished_flushed(&summary(&live, RunStatus::Succeeded, 1.0, 0))
        .blocking_recv()
        .unwrap();
    assert_eq!(status(&live), Some(RunStatus::Succeeded));
    let left: i64 = history
        .conn
        .query_row("SELECT count(*) FROM recorders", [], |row| row.get(0))
        .unwrap();
    assert_eq!(left, 0);
}

/// A run's log (pip's output, worker output) is kept in order with the run, in pieces as the engine
/// sends it, read back whole, and deleted with the run.
#[test]
fn a_runs_log_is_kept_in_order_and_deleted_with_the_run() {
    let (_dir, path) = temp_db();
    let run = RunId("logged".into());
    let writer = HistoryWriter::start(&path).unwrap();
    writer.run_started(&run, "test project", 1000.0, &Executor::Local);
    writer.log(&run, vec![(0, "Collecting six".to_owned())]);
    writer.log(&run, Vec::new());
    writer.log(
        &run,
        vec![(2, "from C".to_owned()), (1, "a late thread".to_owned())],
    );
    writer.invocations(&sample(&run));
    writer
        .run_finished_flushed(&summary(&run, RunStatus::Failed, 1000.0, 22))
        .blocking_recv()
        .unwrap();
    let history = History::open(&path).unwrap();
    assert_eq!(
        history.log(&run).unwrap(),
        [
            (0, "Collecting six".to_owned()),
            (2, "from C".to_owned()),
            (1, "a late thread".to_owned())
        ]
    );
    assert!(history.log(&RunId("other".into())).unwrap().is_empty());
    history.delete_run(&run).unwrap();
    assert_eq!(count(&history, "run_log"), 0);
}

/// Where a run executed is kept with it and deleted with it; a history made before Braid kept it (no
/// `run_clusters` table) still reads, read-only, its runs as run on this machine.
#[test]
fn a_runs_cluster_is_kept_and_a_history_without_clusters_still_reads() {
    let (_dir, path) = temp_db();
    let dask = Executor::Dask {
        scheduler: "tcp://10.0.0.5:8786".to_owned(),
    };
    let (here, there) = (RunId("here".into()), RunId("there".into()));
    let writer = HistoryWriter::start(&path).unwrap();
    writer.run_started(&here, "p", 1.0, &Executor::Local);
    writer.run_started(&there, "p", 2.0, &dask);
    writer.run_finished(&summary(&here, RunStatus::Succeeded, 1.0, 0));
    writer
        .run_finished_flushed(&summary(&there, RunStatus::Succeeded, 2.0, 0))
        .blocking_recv()
        .unwrap();
    let history = History::open(&path).unwrap();
    let executors = |history: &History| -> Vec<(String, Executor)> {
        let runs = history.runs().unwrap();
        runs.into_iter()
            .map(|r| (r.run_id.0.to_string(), r.executor))
            .collect()
    };
    assert_eq!(
        executors(&history),
        [
            ("there".to_owned(), dask.clone()),
            ("here".to_owned(), Executor::Local)
        ]
    );
    assert_eq!(history.run(&there).unwrap().unwrap().executor, dask);
    history.delete_run(&there).unwrap();
    assert_eq!(count(&history, "run_clusters"), 0);

    history
        .conn
        .execute_batch("DROP TABLE run_clusters")
        .unwrap();
    drop(history);
    let old = History::open_read_only(&path).unwrap();
    assert_eq!(executors(&old), [("here".to_owned(), Executor::Local)]);
}

#[test]
fn item_names_retries_fanned_out_names_and_carried_records_round_trip() {
    use crate::run::{FannedOut, ItemName, ItemNames};
    let (_dir, path) = temp_db();
    let run = RunId("named".into());
    let cities = std::sync::Arc::new(ItemNames::new(
        Some(["par", "osl"]),
        Some(["Paris", "Oslo"]),
    ));
    let mut gen_record = record(&run, 1, "Gen", &[], InvocationStatus::Succeeded);
    gen_record.fanned_out = vec![FannedOut {
        transition: TransitionId("fan".into()),
        names: std::sync::Arc::clone(&cities),
    }];
    let mut retried = record(&run, 2, "Work", &[1], InvocationStatus::Retried);
    retried.item_names = smallvec::smallvec![ItemName::new(std::sync::Arc::clone(&cities), 1)];
    retried.error = Some(ErrorInfo {
        kind: "ConnectionError".into(),
        message: "reset".into(),
        traceback: String::new(),
        line: None,
    });
    let mut carried = record(&run, 3, "Work", &[0], InvocationStatus::Succeeded);
    carried.item_names = smallvec::smallvec![ItemName::new(std::sync::Arc::clone(&cities), 0)];
    carried.carried_from = Some(17);
    let mut nested = record(&run, 4, "Cell", &[1, 2], InvocationStatus::Succeeded);
    nested.item_names = smallvec::smallvec![
        ItemName::new(std::sync::Arc::clone(&cities), 1),
        ItemName::single("2", Some("Tuesday")),
    ];
    // On a cluster: each record names its worker as well as its item.
    nested.worker = Some("tcp://127.0.0.1:4001".into());
    let records = vec![gen_record, retried, carried, nested];
    write_run(&path, &run, 1.0, &records);
    let history = History::open(&path).unwrap();
    for original in &records {
        let read = history.invocation(&run, original.id).unwrap().unwrap();
        assert_eq!(read.status, original.status);
        assert_eq!(read.item_key_path(), original.item_key_path());
        assert_eq!(read.item_label(), original.item_label());
        assert_eq!(read.carried_from, original.carried_from);
        assert_eq!(read.fanned_out, original.fanned_out);
        assert_eq!(read.worker, original.worker);
    }
    let rows = history
        .invocation_rows(&run, &InvocationFilter::default())
        .unwrap();
    let seen: Vec<(u64, Option<String>, Option<String>, bool)> = rows
        .iter()
        .map(|r| {
            (
                r.id,
                r.item.as_ref().map(|i| i.key().into_owned()),
                r.item_label().map(str::to_owned),
                r.carried,
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            (1, None, None, false),
            (2, Some("osl".into()), Some("Oslo".into()), false),
            (3, Some("par".into()), Some("Paris".into()), true),
            (4, Some("2".into()), Some("Tuesday".into()), false),
        ]
    );
    // A retried attempt is no item's end: it counts nowhere in the run's totals.
    let totals = history.run(&run).unwrap().unwrap().counts;
    assert_eq!((totals.succeeded, totals.failed), (3, 0));
}

#[test]
fn rows_filter_by_item_key_and_by_failure_shape() {
    use crate::run::{ItemName, ItemNames};
    let (_dir, path) = temp_db();
    let run = RunId("keys".into());
    let names = std::sync::Arc::new(ItemNames::new(Some(["a", "b", "c"]), None::<[&str; 0]>));
    let mut records = vec![record(&run, 1, "Gen", &[], InvocationStatus::Succeeded)];
    for i in 0..3_u32 {
        let status = if i == 1 {
            InvocationStatus::Succeeded
        } else {
            InvocationStatus::Exception
        };
        let mut r = record(&run, u64::from(i) + 2, "Work", &[i], status);
        r.item_names = smallvec::smallvec![ItemName::new(std::sync::Arc::clone(&names), i)];
        records.push(r);
    }
    write_run(&path, &run, 1.0, &records);
    let history = History::open(&path).unwrap();
    let ids = |filter: InvocationFilter| -> Vec<u64> {
        history
            .invocation_rows(&run, &filter)
            .unwrap()
            .iter()
            .map(|r| r.id)
            .collect()
    };
    assert_eq!(
        ids(InvocationFilter {
            item_key: Some("b".into()),
            ..InvocationFilter::default()
        }),
        [3]
    );
    // Unnamed items are found by their index.
    assert_eq!(
        ids(InvocationFilter {
            item_key: Some("0".into()),
            ..InvocationFilter::default()
        }),
        Vec::<u64>::new()
    );
    assert_eq!(
        ids(InvocationFilter {
            failure_shape: Some("ValueError: bad row #".into()),
            ..InvocationFilter::default()
        }),
        [2, 4]
    );
}

#[test]
fn a_redrive_names_the_run_it_continues_in_the_runs_list() {
    let (_dir, path) = temp_db();
    let (first, second) = (RunId("first".into()), RunId("second".into()));
    write_run(
        &path,
        &first,
        1.0,
        &[record(&first, 1, "A", &[], InvocationStatus::Exception)],
    );
    let writer = HistoryWriter::start(&path).unwrap();
    writer
        .run_started_flushed(&second, "p", 2.0, &Executor::Local, Some(&first))
        .blocking_recv()
        .unwrap();
    writer
        .run_finished_flushed(&summary(&second, RunStatus::Succeeded, 2.0, 0))
        .blocking_recv()
        .unwrap();
    let history = History::open(&path).unwrap();
    let runs: Vec<(String, Option<String>)> = history
        .runs()
        .unwrap()
        .into_iter()
        .map(|r| {
            (
                r.run_id.0.to_string(),
                r.redrive_of.map(|of| of.0.to_string()),
            )
        })
        .collect();
    assert_eq!(
        runs,
        [
            ("second".into(), Some("first".into())),
            ("first".into(), None)
        ]
    );
    history.delete_run(&second).unwrap();
    assert_eq!(count(&history, "redrives"), 0);
}
