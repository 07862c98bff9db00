//! The headless command line (`docs/spec/cli.md`): the same runtime as the editor, no GUI.

use std::io::{IsTerminal as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, anyhow};
use clap::{Args, Parser, Subcommand};
use serde_json::{Value, json};

use crate::model::format::{LoadedProject, load_project};
use crate::model::text_file;
use crate::model::validate::{Severity, validate};
use crate::run::{
    BlockCounts, CompileError, Executor, InvocationFilter, InvocationStatus, RunId, RunRow,
    RunStatus, RunSummary,
};
use crate::runtime::history::{DEFAULT_KEEP_RUNS, History};
use crate::runtime::redrive::Redrive;
use crate::runtime::{RunRequest, RuntimeConfig, RuntimeEvent, RuntimeHandle, RuntimeRequest};
use crate::text::{duration_ms, truncate, utc_date_time};

mod terminal;

/// `writeln!` for Braid's output, with the line escaped for a terminal: names, values, errors and file
/// names come from the project and its run (see `cli/terminal.rs`). Best-effort, as all output here.
macro_rules! say {
    ($out:expr, $($arg:tt)*) => {
        terminal::write_line(&mut $out, &format!($($arg)*))
    };
}

#[derive(Debug, Parser)]
#[command(
    name = "braid",
    version,
    about = "A visual editor and runner for Python map-reduce pipelines",
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    /// A project to open in the editor (a Braid project or a Refinery export).
    pub project: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a pipeline headless.
    Run(RunArgs),
    /// Check a project; print its problems; exit 0 when there are none.
    Validate {
        /// A Braid project file or a Refinery export.
        project: PathBuf,
    },
    /// List a project's recorded runs, or print one run's invocations.
    History(HistoryArgs),
    /// Start a Dask cluster on this machine (a scheduler and workers on 127.0.0.1) to run projects on
    /// with `braid run --cluster`; Ctrl+C stops it.
    Cluster(ClusterArgs),
    /// Serve a project until Ctrl+C: API Endpoints answer HTTP, Timers fire, Queues drain.
    Serve(ServeArgs),
    /// Internal: serve as a Python worker for a Braid process (stdin/stdout protocol).
    #[command(name = "__worker", hide = true)]
    Worker,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// A Braid project file or a Refinery export (the format is detected from the content).
    pub project: PathBuf,
    /// The run's input as JSON text, or @file.json.
    #[arg(long, default_value = "null")]
    pub input: String,
    /// The starting backpack as JSON text (an object), or @file.json.
    #[arg(long, default_value = "{}")]
    pub backpack: String,
    /// Start at this block (name or id) instead of the entry blocks.
    #[arg(long)]
    pub from: Option<String>,
    /// The run's concurrency limit (default: the project's, else 1000).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    pub concurrency: Option<u32>,
    /// Print one JSON object on stdout and nothing else there.
    #[arg(long)]
    pub json: bool,
    /// Don't record the run in the project's history (`.braid/` beside the project).
    #[arg(long, conflicts_with = "redrive")]
    pub no_history: bool,
    /// Run the invocations on the Dask cluster whose scheduler is at this address (default: this
    /// machine's workers). `braid cluster` shows how to start one.
    #[arg(long, value_name = "tcp://HOST:PORT", value_parser = parse_cluster)]
    pub cluster: Option<String>,
    /// Run a finished run's failed items again (its id, or the start of it, from `braid history`):
    /// what succeeded keeps its recorded result, the failed items and what follows them run with the
    /// blocks' current code. The run starts from that run's own input.
    #[arg(long, conflicts_with_all = ["input", "backpack", "from"])]
    pub redrive: Option<String>,
}

/// A Dask scheduler's address, as `Executor::dask` takes it.
fn parse_cluster(text: &str) -> Result<String, String> {
    Executor::dask(text).map(|executor| executor.cluster().unwrap_or_default().to_owned())
}

#[derive(Debug, Args)]
pub struct ClusterArgs {
    /// How many Dask workers to start, each with one thread.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=256))]
    pub workers: u32,
    /// The scheduler's port (default: a free one).
    #[arg(long, default_value_t = 0)]
    pub port: u16,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// A Braid project file or a Refinery export.
    pub project: PathBuf,
    /// The address to answer HTTP on (a host name, or :0 for a free port).
    #[arg(long, default_value = crate::serve::DEFAULT_LISTEN)]
    pub listen: String,
    /// The concurrency limit all its runs share (default: the project's, else 1000).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    pub concurrency: Option<u32>,
}

#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// The project file whose history to read (from `.braid/` beside it).
    pub project: PathBuf,
    /// A run (its id, or the start of it): print its invocations instead of the list of runs.
    pub run_id: Option<String>,
    /// Only invocations of this block (name or id).
    #[arg(long, requires = "run_id")]
    pub block: Option<String>,
    /// Only invocations at or under this item path: `3` for item 3, `3,7` for item 7 inside item 3.
    #[arg(long, requires = "run_id", value_parser = parse_item_path)]
    pub item: Option<ItemPath>,
    /// Only invocations with these statuses (`succeeded`, `caught_exception`, `exception`, `timed_out`,
    /// `cancelled`), comma-separated or repeated.
    #[arg(long, requires = "run_id", value_delimiter = ',', value_parser = parse_status_arg)]
    pub status: Vec<InvocationStatus>,
    /// Only invocations whose input, output or error contains this text (ASCII case-insensitive).
    #[arg(long, requires = "run_id")]
    pub text: Option<String>,
    /// Only invocations of the item with this key (the fan-out's item key; its index when it has none).
    #[arg(long, requires = "run_id")]
    pub key: Option<String>,
    /// Print the run's log instead: what it printed outside its invocations (pip's output as the
    /// libraries installed, `worker N:` lines a worker wrote itself).
    #[arg(long, requires = "run_id", conflicts_with_all = ["block", "item", "status", "text", "key"])]
    pub log: bool,
    /// Print JSON on stdout: the runs, or the run's whole invocation records, as one array.
    #[arg(long)]
    pub json: bool,
}

/// An item path given on the command line.
#[derive(Clone, Debug)]
pub struct ItemPath(pub Vec<u32>);

fn parse_item_path(text: &str) -> Result<ItemPath, String> {
    text.split(',')
        .map(|index| {
            index.trim().parse::<u32>().map_err(|_| {
                format!("{text:?} is not an item path (item indices separated by commas, like 3,7)")
            })
        })
        .collect::<Result<_, _>>()
        .map(ItemPath)
}

fn parse_status_arg(text: &str) -> Result<InvocationStatus, String> {
    InvocationStatus::from_name(text).ok_or_else(|| {
        format!(
            "unknown status {text:?} (one of queued, running, succeeded, caught_exception, exception, timed_out, cancelled, retried)"
        )
    })
}

/// Exit code 2: unusable arguments or a file that can't be read or parsed.
struct UsageError(anyhow::Error);

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    if !matches!(cli.command, Some(Command::Worker)) {
        init_logging();
    }
    let result = match cli.command {
        Some(Command::Worker) => {
            return match crate::runtime::worker::serve() {
                Ok(()) => ExitCode::SUCCESS,
                Err(message) => {
                    say!(std::io::stderr(), "braid worker: {message}");
                    ExitCode::FAILURE
                }
            };
        }
        Some(Command::Run(args)) => run(&args),
        Some(Command::Validate { project }) => validate_command(&project),
        Some(Command::History(args)) => history_command(&args),
        Some(Command::Cluster(args)) => cluster_command(&args),
        Some(Command::Serve(args)) => serve_command(&args),
        None => return open_editor(cli.project.as_deref()),
    };
    match result {
        Ok(code) => code,
        Err(UsageError(error)) => {
            say!(std::io::stderr(), "braid: {error:#}");
            ExitCode::from(2)
        }
    }
}

/// Braid's warnings and errors that nothing else reports (a history write that failed, say) go to
/// stderr; `RUST_LOG` picks more (`RUST_LOG=braid=debug`, or `braid::worker=debug` for what workers
/// write to their own stderr). Other crates' logs (wgpu, winit) stay out unless asked for.
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("braid=warn"));
    // A subscriber set already (a test harness) is kept.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        // Logging is best-effort, like all that reaches a terminal: a line that can't be written (a
        // closed pipe, a full disk) is lost, not reported with `eprintln!`, which panics there and
        // would end the thread or task that logged (a worker's reader: the run would never end).
        .log_internal_errors(false)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .without_time()
        .with_target(false)
        .try_init();
}

fn open_editor(project: Option<&Path>) -> ExitCode {
    match crate::shell::run_editor(project) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            say!(
                std::io::stderr(),
                "braid: the editor could not start: {error:#}"
            );
            ExitCode::FAILURE
        }
    }
}

fn load(path: &Path) -> Result<LoadedProject, UsageError> {
    // The error names the file and says what is wrong in one line; no cause chain to repeat it.
    load_project(path).map_err(|e| UsageError(anyhow!(e.to_string())))
}

/// `--input` and friends: JSON text, or `@path` to read it from a file (a regular file of at most
/// `text_file::MAX_BYTES`, in UTF-8).
fn json_arg(name: &str, text: &str) -> Result<Value, UsageError> {
    let (text, source) = match text.strip_prefix('@') {
        Some(path) => (
            text_file::read(Path::new(path), text_file::Links::Follow).map_err(|e| {
                UsageError(match e.position() {
                    Some((line, column)) => anyhow!("{path}:{line}:{column}: {e}"),
                    None => anyhow!("{name}: can't read {path}: {e}"),
                })
            })?,
            path.to_owned(),
        ),
        None => (text.to_owned(), name.to_owned()),
    };
    serde_json::from_str(&text).map_err(|e| {
        UsageError(anyhow!(
            "{source}:{}:{}: invalid JSON: {}",
            e.line(),
            e.column(),
            strip_position(&e)
        ))
    })
}

/// `serde_json`'s message without its own " at line X column Y" suffix (we print the position first).
fn strip_position(error: &serde_json::Error) -> String {
    let text = error.to_string();
    match text.rfind(" at line ") {
        Some(i) => text[..i].to_owned(),
        None => text,
    }
}

fn validate_command(path: &Path) -> Result<ExitCode, UsageError> {
    let loaded = load(path)?;
    let mut problems = validate(&loaded.project);
    let mut errors = problems
        .iter()
        .filter(|p| p.severity == Severity::Error)
        .count();
    // Compile the code too (nothing runs): a syntax error is a problem of the project.
    let compile_errors = check_code(&loaded.project).map_err(UsageError)?;
    let mut out = std::io::stdout().lock();
    for error in &compile_errors {
        say!(out, "error: {error}");
    }
    errors += compile_errors.len();
    problems.sort_by_key(|p| std::cmp::Reverse(p.severity));
    for problem in &problems {
        let label = match problem.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        say!(out, "{label}: {}", problem.message);
    }
    let warnings = problems.len() + compile_errors.len() - errors;
    if errors == 0 {
        say!(
            out,
            "{}: valid ({}{})",
            path.display(),
            crate::model::graph_size(&loaded.project),
            if warnings > 0 {
                format!(", {}", crate::text::plural(warnings as u64, "warning"))
            } else {
                String::new()
            }
        );
        Ok(ExitCode::SUCCESS)
    } else {
        say!(
            out,
            "{}: {}",
            path.display(),
            crate::text::plural(errors as u64, "error")
        );
        Ok(ExitCode::FAILURE)
    }
}

fn check_code(project: &crate::model::Project) -> anyhow::Result<Vec<CompileError>> {
    let mut runtime = start_runtime()?;
    let check_id = RunId::new_random();
    runtime.send(RuntimeRequest::Check {
        check_id: check_id.clone(),
        project: Box::new(project.clone()),
    });
    while let Some(event) = runtime.recv_blocking() {
        match event {
            RuntimeEvent::Checked {
                check_id: id,
                compile_errors,
            } if id == check_id => return Ok(compile_errors),
            RuntimeEvent::RunRefused { message, .. } => return Err(anyhow!(message)),
            _ => {}
        }
    }
    Err(anyhow!("the runtime stopped before the code was checked"))
}

/// `braid serve`: serves until Ctrl+C or SIGTERM; exit 0 after a clean stop, 2 when it can't start.
fn serve_command(args: &ServeArgs) -> Result<ExitCode, UsageError> {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    let loaded = load(&args.project)?;
    let project = loaded.project;
    let listen = crate::serve::listen_address(&args.listen)
        .map_err(|message| UsageError(anyhow!("--listen: {message}")))?;
    let (env, env_problems) = crate::model::env_file::values_for(Some(&args.project));
    for problem in env_problems {
        say!(std::io::stderr(), "braid: warning: {problem}");
    }
    // Ctrl+C and SIGTERM stop serving cleanly (the runs going on end as cancelled, recorded so).
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, Arc::clone(&stop))
            .map_err(|e| UsageError(anyhow!("can't watch for Ctrl+C: {e}")))?;
    }
    let mut runtime = start_runtime().map_err(UsageError)?;
    let log: crate::serve::Log = Arc::new(|line: &str| say!(std::io::stderr(), "{line}"));
    let mut options = crate::serve::Options::new(listen, log);
    options.concurrency = args.concurrency;
    options.env = env;
    let served = match crate::serve::start(
        &project,
        Some(&args.project),
        &runtime.requester(),
        &options,
    ) {
        Ok(served) => served,
        Err(crate::serve::NotServed(lines)) => {
            for line in lines {
                say!(std::io::stderr(), "braid: {line}");
            }
            runtime.shutdown(Duration::from_secs(10));
            return Ok(ExitCode::from(2));
        }
    };
    let status = served.status();
    let mut out = std::io::stdout().lock();
    for endpoint in &status.endpoints {
        say!(
            out,
            "{} {} -> {:?}",
            endpoint.method,
            endpoint.url,
            endpoint.name
        );
    }
    for timer in &status.timers {
        let next = timer.next_fire_ms.map_or_else(
            || "never again".to_owned(),
            |ms| format!("next at {}", utc_date_time(ms)),
        );
        say!(out, "timer {:?} {}: {next}", timer.name, timer.schedule);
    }
    for queue in &status.queues {
        say!(
            out,
            "queue {:?}: {} waiting; POST {}{}queues/{}",
            queue.name,
            crate::text::count(queue.depth),
            served.base_url(),
            crate::serve::OWN_PREFIX,
            queue.block
        );
    }
    for topic in &status.topics {
        say!(out, "topic {:?}: POST {}", topic.name, topic.url);
    }
    say!(out, "serving at {} (Ctrl+C stops)", served.base_url());
    let _ = out.flush();
    drop(out);
    // The runtime's events are the runs' records on their way to the history; nobody shows them here.
    while !stop.load(Ordering::Relaxed) {
        let _ = runtime.recv_timeout(Duration::from_millis(100));
    }
    say!(std::io::stderr(), "braid: stopping");
    served.stop();
    runtime.shutdown(Duration::from_secs(10));
    Ok(ExitCode::SUCCESS)
}

fn start_runtime() -> anyhow::Result<RuntimeHandle> {
    let config = RuntimeConfig::from_current_exe().context("can't find the braid executable")?;
    RuntimeHandle::start(config).context("can't start the runtime")
}

fn run(args: &RunArgs) -> Result<ExitCode, UsageError> {
    let loaded = load(&args.project)?;
    let project = loaded.project;
    let input = json_arg("--input", &args.input)?;
    let backpack = json_arg("--backpack", &args.backpack)?;
    if !backpack.is_object() {
        return Err(UsageError(anyhow!("--backpack must be a JSON object")));
    }
    let from =
        match &args.from {
            Some(name) => Some(project.find_block(name).map(|b| b.id.clone()).ok_or_else(
                || UsageError(anyhow!("--from: no block named or with id {name:?}")),
            )?),
            None => None,
        };
    let (env, env_problems) = crate::model::env_file::values_for(Some(&args.project));
    for problem in env_problems {
        say!(std::io::stderr(), "braid: warning: {problem}");
    }
    for missing in crate::model::env_file::missing_values(&project, &env) {
        say!(
            std::io::stderr(),
            "braid: warning: {missing} (set it in {} or the environment)",
            crate::model::env_file::path_for_project(&args.project).display()
        );
    }
    let history = if args.no_history {
        None
    } else {
        open_history_for_run(&args.project)
    };
    let redrive = match &args.redrive {
        Some(wanted) => Some(std::sync::Arc::new(load_redrive(
            history.as_ref(),
            wanted,
            &args.project,
        )?)),
        None => None,
    };
    let mut runtime = start_runtime().map_err(UsageError)?;
    let run_id = RunId::new_random();

    runtime.send(RuntimeRequest::Run(Box::new(RunRequest {
        input,
        backpack,
        from,
        concurrency: args.concurrency,
        env,
        history: history.as_ref().map(|h| h.path().to_owned()),
        working_dir: crate::model::local_folder::working_dir(&args.project),
        executor: Executor::from_cluster(args.cluster.clone()),
        redrive,
        ..RunRequest::new(run_id.clone(), project)
    })));
    let interrupts = stop_on_ctrl_c(runtime.requester(), run_id.clone());
    let outcome = follow_run(
        &mut runtime,
        &run_id,
        history.as_ref(),
        args.json,
        &args.project,
    );
    if let Some(interrupts) = interrupts {
        interrupts.close();
    }
    // History is written out and closed before the process ends (a killed writer would leave its WAL).
    runtime.shutdown(std::time::Duration::from_secs(10));
    outcome
}

/// What a redrive of the run `wanted` (its id or the start of it) starts from, read from the project's
/// history.
fn load_redrive(
    history: Option<&History>,
    wanted: &str,
    project: &Path,
) -> Result<Redrive, UsageError> {
    let path = History::path_for_project(project);
    let history = history.ok_or_else(|| {
        UsageError(anyhow!(
            "--redrive: the history {} can't be read",
            path.display()
        ))
    })?;
    let runs = history
        .runs()
        .map_err(|e| UsageError(anyhow!(e.to_string())))?;
    let run = find_run(&runs, wanted, &path)?;
    Redrive::load(history, &run.run_id, None).map_err(|e| UsageError(anyhow!("--redrive: {e}")))
}

/// The first Ctrl+C stops the run the way the editor's Stop does: running invocations are interrupted,
/// queued ones end as cancelled, the history records it all, and the summary says "cancelled". A second
/// one quits at once (exit code 130). `None` when signals can't be watched (the run then just goes on).
fn stop_on_ctrl_c(
    requests: crate::runtime::Requester,
    run_id: RunId,
) -> Option<signal_hook::iterator::Handle> {
    let mut signals = signal_hook::iterator::Signals::new([signal_hook::consts::SIGINT]).ok()?;
    let handle = signals.handle();
    std::thread::Builder::new()
        .name("braid-ctrl-c".to_owned())
        .spawn(move || {
            let mut stopping = false;
            for _ in signals.forever() {
                if stopping {
                    std::process::exit(130);
                }
                stopping = true;
                say!(
                    std::io::stderr(),
                    "braid: stopping the run (Ctrl+C again quits at once)"
                );
                requests.send(RuntimeRequest::Cancel(run_id.clone()));
            }
        })
        .ok()?;
    Some(handle)
}

/// Shows a run's progress until it ends, then its summary; the exit code says how it went.
fn follow_run(
    runtime: &mut RuntimeHandle,
    run_id: &RunId,
    history: Option<&History>,
    as_json: bool,
    project: &Path,
) -> Result<ExitCode, UsageError> {
    let progress = Progress::new();
    let started = std::time::Instant::now();
    loop {
        let Some(event) = runtime.recv_blocking() else {
            return Err(UsageError(anyhow!("the runtime stopped unexpectedly")));
        };
        if event.run_id() != run_id {
            continue;
        }
        match event {
            RuntimeEvent::Progress { counts, .. } => progress.update(&counts),
            // pip's output while the project's libraries install: visible, never on stdout.
            RuntimeEvent::Log { line, .. } => progress.log(&line),
            // What a worker wrote outside any invocation's printed output (C code, late threads).
            RuntimeEvent::WorkerOutput { worker, lines, .. } => {
                for line in lines {
                    progress.log(&format!("worker {worker}: {line}"));
                }
            }
            RuntimeEvent::RunFinished(summary) => {
                progress.finish();
                if let Some(history) = &history {
                    check_recorded(history, run_id);
                }
                print_summary(&summary, as_json, history.is_some().then_some(project));
                return Ok(if summary.status == RunStatus::Succeeded {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::FAILURE
                });
            }
            RuntimeEvent::RunRefused {
                message,
                compile_errors,
                ..
            } => {
                progress.finish();
                terminal::write_lines(&mut std::io::stderr(), &format!("braid: {message}"));
                if as_json {
                    let failures: Vec<Value> = compile_errors
                        .iter()
                        .map(|e| {
                            json!({"block": e.block, "block_id": e.block_id, "item_path": [],
                                   "status": "compile_error", "error": e.to_string(), "line": e.line})
                        })
                        .collect();
                    let failures = if failures.is_empty() {
                        vec![
                            json!({"block": null, "block_id": null, "item_path": [], "status": "refused", "error": message}),
                        ]
                    } else {
                        failures
                    };
                    print_json(&json!({
                        "run_id": run_id, "status": "failed", "results": [], "invocations": 0,
                        "failures": failures,
                        "duration_ms": started.elapsed().as_secs_f64() * 1000.0,
                    }));
                }
                return Ok(ExitCode::FAILURE);
            }
            _ => {}
        }
    }
}

/// One JSON value and a line break on stdout (see `terminal::JsonFormatter`).
fn print_json(value: &impl serde::Serialize) {
    let mut stdout = std::io::stdout().lock();
    let _ = terminal::json_to_writer(&mut stdout, value);
    let _ = writeln!(stdout);
}

/// How many results, and how many failed invocations, the readable summary lists: a fan-out over
/// thousands of items must not bury the summary. `--json` and the history have them all.
const SUMMARY_LINES: usize = 20;

/// The run's summary: JSON, or readable (`recorded_for`: the project whose history has the run).
fn print_summary(summary: &RunSummary, as_json: bool, recorded_for: Option<&Path>) {
    if as_json {
        let mut json = json!({
            "run_id": summary.run_id,
            "status": summary.status.label(),
            "results": summary.results,
            "invocations": summary.invocations,
            "failures": summary.failures,
            "duration_ms": summary.duration_ms.round(),
        });
        if !summary.tolerated.is_empty() {
            json["tolerated"] = json!(summary.tolerated);
        }
        if let Some(of) = &summary.redrive_of {
            json["redrive_of"] = json!(of);
        }
        print_json(&json);
        return;
    }
    let mut out = std::io::stdout().lock();
    say!(
        out,
        "Run {} {} in {}: {}{}",
        summary.run_id,
        summary.status.label(),
        duration_ms(summary.duration_ms),
        crate::text::plural(summary.invocations, "invocation"),
        summary
            .redrive_of
            .as_ref()
            .map_or_else(String::new, |of| format!(" (a redrive of {of})"))
    );
    if !summary.results.is_empty() {
        say!(out, "Results:");
        for result in summary.results.iter().take(SUMMARY_LINES) {
            say!(
                out,
                "  {} {:?}: {}",
                result.block,
                result.item_path,
                truncate(&result.output.to_string(), 200)
            );
        }
        if let Some(more) = summary.results.len().checked_sub(SUMMARY_LINES)
            && more > 0
        {
            say!(
                out,
                "  … and {} (--json prints them all)",
                crate::text::plural(more as u64, "more result")
            );
        }
    }
    if !summary.tolerated.is_empty() {
        say!(
            out,
            "Tolerated: {} within their fan-ins' budgets",
            crate::text::plural(summary.tolerated.len() as u64, "failed item")
        );
        for failure in summary.tolerated.iter().take(SUMMARY_LINES) {
            print_failure(&mut out, failure);
        }
    }
    if !summary.failures.is_empty() {
        say!(out, "Failures:");
        // Every failure that is not one invocation's (a fan-in that could not complete says which
        // items it missed, and why), and the first failed invocations.
        let mut listed = 0;
        for failure in &summary.failures {
            if failure.invocation.is_some() {
                listed += 1;
                if listed > SUMMARY_LINES {
                    continue;
                }
            }
            print_failure(&mut out, failure);
        }
        if let Some(more) = listed.checked_sub(SUMMARY_LINES)
            && more > 0
        {
            let more = crate::text::plural(more as u64, "more failed invocation");
            match recorded_for {
                Some(project) => say!(
                    out,
                    "  … and {more}: braid history {} {} --status exception,timed_out lists them all",
                    project.display(),
                    summary.run_id
                ),
                None => say!(out, "  … and {more} (--json prints them all)"),
            }
        }
    }
}

/// `  Work [3] (exception): ValueError: bad row`.
fn print_failure(mut out: impl std::io::Write, failure: &crate::run::RunFailure) {
    say!(
        out,
        "  {} ({}): {}",
        failure.place(&failure.block),
        failure.status,
        failure.error
    );
}

/// Progress on stderr: a bar on a terminal, a line now and then otherwise.
struct Progress {
    bar: Option<indicatif::ProgressBar>,
    last_line: std::cell::Cell<std::time::Instant>,
}

impl Progress {
    fn new() -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = indicatif::ProgressBar::new(0);
            if let Ok(style) = indicatif::ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {wide_bar} {human_pos}/{human_len} invocations {msg}",
            ) {
                bar.set_style(style);
            }
            bar.enable_steady_tick(Duration::from_millis(120));
            bar
        });
        Self {
            bar,
            last_line: std::cell::Cell::new(std::time::Instant::now()),
        }
    }

    fn update(&self, counts: &[(crate::model::BlockId, BlockCounts)]) {
        let total: u64 = counts.iter().map(|(_, c)| c.total()).sum();
        let done: u64 = counts.iter().map(|(_, c)| c.finished()).sum();
        let failed: u64 = counts.iter().map(|(_, c)| c.failed + c.timed_out).sum();
        if let Some(bar) = &self.bar {
            bar.set_length(total);
            bar.set_position(done);
            if failed > 0 {
                bar.set_message(format!("({} failed)", crate::text::count(failed)));
            }
        } else if self.last_line.get().elapsed() >= Duration::from_secs(2) {
            self.last_line.set(std::time::Instant::now());
            say!(
                std::io::stderr(),
                "braid: {}/{} invocations finished, {} failed",
                crate::text::count(done),
                crate::text::count(total),
                crate::text::count(failed)
            );
        }
    }

    /// A line of output (pip's, a worker's) above the bar, escaped for the terminal.
    fn log(&self, line: &str) {
        match &self.bar {
            Some(bar) => bar.println(terminal::line(line)),
            None => say!(std::io::stderr(), "{line}"),
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

/// The project's history, for `braid run` to record into. A history that can't be opened does not stop
/// the run: it runs unrecorded, with a warning.
fn open_history_for_run(project: &Path) -> Option<History> {
    match History::open(&History::path_for_project(project)) {
        Ok(history) => Some(history),
        Err(error) => {
            say!(
                std::io::stderr(),
                "braid: warning: the run will not be recorded: {error}"
            );
            None
        }
    }
}

/// After the run: the writer reports its errors only to the log, so look for the run; then drop the
/// oldest runs past the retention.
fn check_recorded(history: &History, run_id: &RunId) {
    match history.run(run_id) {
        Ok(Some(run)) if run.status != RunStatus::Running => {}
        Ok(_) => say!(
            std::io::stderr(),
            "braid: warning: the run was not fully recorded in {}",
            history.path().display()
        ),
        Err(error) => say!(std::io::stderr(), "braid: warning: {error}"),
    }
    if let Err(error) = history.apply_retention(DEFAULT_KEEP_RUNS) {
        say!(
            std::io::stderr(),
            "braid: warning: old runs were not deleted: {error}"
        );
    }
}

fn history_command(args: &HistoryArgs) -> Result<ExitCode, UsageError> {
    let project = load(&args.project)?.project;
    let path = History::path_for_project(&args.project);
    // Reading changes nothing: no file means no runs (a link there is refused, not taken for none).
    let history = if std::fs::symlink_metadata(&path).is_ok() {
        Some(History::open_read_only(&path).map_err(|e| UsageError(anyhow!(e.to_string())))?)
    } else {
        None
    };
    let runs = match &history {
        Some(history) => history
            .runs()
            .map_err(|e| UsageError(anyhow!(e.to_string())))?,
        None => Vec::new(),
    };
    let Some(wanted) = &args.run_id else {
        print_runs(&runs, args.json, &path);
        return Ok(ExitCode::SUCCESS);
    };
    let run = find_run(&runs, wanted, &path)?;
    let Some(history) = history else {
        return Err(UsageError(anyhow!("no run {wanted} in {}", path.display())));
    };
    let failed = |e: crate::runtime::history::HistoryError| UsageError(anyhow!(e.to_string()));
    if args.log {
        let lines = history.log(&run.run_id).map_err(failed)?;
        let mut out = std::io::stdout().lock();
        if args.json {
            let lines: Vec<Value> = lines
                .iter()
                .map(|(worker, text)| match worker {
                    0 => json!({"source": "pip", "text": text}),
                    n => json!({"source": "worker", "worker": n, "text": text}),
                })
                .collect();
            drop(out);
            print_json(&lines);
        } else {
            for (worker, text) in &lines {
                match worker {
                    0 => say!(out, "pip: {text}"),
                    n => say!(out, "worker {n}: {text}"),
                }
            }
        }
        return Ok(ExitCode::SUCCESS);
    }
    let block = match &args.block {
        Some(name) => Some(match project.find_block(name) {
            Some(block) => block.id.clone(),
            // A block renamed or deleted since the run: its name in the run's own records.
            None => history
                .invocation_rows(&run.run_id, &InvocationFilter::default())
                .map_err(failed)?
                .into_iter()
                .find(|r| *r.block_name == **name || *r.block_id.0 == **name)
                .map(|r| r.block_id)
                .ok_or_else(|| {
                    UsageError(anyhow!(
                        "--block: no block named or with id {name:?} in the project or the run"
                    ))
                })?,
        }),
        None => None,
    };
    let filter = InvocationFilter {
        block,
        statuses: args.status.clone(),
        text: args.text.clone(),
        item_path_prefix: args.item.as_ref().map(|p| p.0.clone()),
        item_key: args.key.clone(),
        ..InvocationFilter::default()
    };
    let rows = history
        .invocation_rows(&run.run_id, &filter)
        .map_err(failed)?;
    let mut out = std::io::stdout().lock();
    if args.json {
        // The whole array is made before any of it is printed: a record that can't be read (a damaged
        // history) leaves stdout empty, never half an array. It is the records' compact JSON text (a
        // few hundred bytes a record), not a tree of values.
        let mut json = b"[".to_vec();
        for row in &rows {
            let Some(record) = history.invocation(&run.run_id, row.id).map_err(failed)? else {
                continue;
            };
            if json.len() > 1 {
                json.push(b',');
            }
            terminal::json_to_writer(&mut json, &record)
                .map_err(|e| UsageError(anyhow!("invocation {}: {e}", row.id)))?;
        }
        json.extend_from_slice(b"]\n");
        let _ = out.write_all(&json);
    } else {
        for row in &rows {
            let duration = match (row.started_at_ms, row.ended_at_ms) {
                (Some(s), Some(e)) => duration_ms(e - s),
                _ => "-".to_owned(),
            };
            let item_path = format!("{:?}", row.item_path);
            // Which Dask worker ran it, for a run on a cluster.
            let worker = row
                .worker
                .as_deref()
                .map_or_else(String::new, |worker| format!("  on {worker}"));
            // The item's key and label when a fan-out names its items (`key "p" Paris`).
            let item = row.item.as_ref().map_or_else(String::new, |item| {
                let mut text = format!("key {:?}", item.key());
                if let Some(label) = item.label() {
                    text.push(' ');
                    text.push_str(label);
                }
                text.push_str("  ");
                text
            });
            let carried = if row.carried { " (carried over)" } else { "" };
            say!(
                out,
                "#{:<6} {:<20} {:<10} attempt {} {:<16} {:>10}{worker}  {item}{}{carried}",
                row.id,
                row.block_name,
                item_path,
                row.attempt,
                row.status.label(),
                duration,
                row.error_summary.as_deref().unwrap_or(&row.input_preview)
            );
        }
        say!(
            out,
            "{}",
            crate::text::plural(rows.len() as u64, "invocation")
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `braid cluster`: a scheduler and single-threaded workers (with their nannies) on 127.0.0.1, from the
/// Python Braid runs blocks with (Dask workers must run its version), until Ctrl+C. It says where the
/// scheduler is once the workers have joined, so a run started then finds them.
fn cluster_command(args: &ClusterArgs) -> Result<ExitCode, UsageError> {
    use crate::runtime::dask::local::{LocalCluster, LocalClusterOptions};
    say!(
        std::io::stderr(),
        "braid: starting a Dask scheduler and {}",
        crate::text::plural(u64::from(args.workers), "worker")
    );
    let cluster = LocalCluster::start(&LocalClusterOptions {
        workers: args.workers,
        port: args.port,
        ..LocalClusterOptions::default()
    })
    .map_err(|e| UsageError(anyhow!(e)))?;
    let address = cluster.address();
    let python = crate::runtime::environment::python_executable();
    // Several lines: `say!` writes one, with its line breaks escaped.
    terminal::write_lines(
        &mut std::io::stdout(),
        &format!(
            "A Dask cluster on this machine: its scheduler is at {address}, with {}.\n\
         Run a project on it:\n  braid run PROJECT --cluster {address}\n\
         or choose \"a Dask cluster at\" {address} in the editor's run dialog.\n\
         It listens on 127.0.0.1 only; a cluster of several machines (each worker with Python {} and \
         dask[distributed]) is described in docs/scale-out.md.\n\
         Logs: {}\nCtrl+C stops the cluster.",
            crate::text::plural(u64::from(args.workers), "single-threaded worker"),
            python_version(&python),
            cluster.logs().display()
        ),
    );
    let signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
    ]);
    match signals {
        Ok(mut signals) => {
            let _ = signals.forever().next();
        }
        Err(e) => say!(
            std::io::stderr(),
            "braid: can't watch for Ctrl+C ({e}); the cluster stops when killed"
        ),
    }
    say!(std::io::stderr(), "braid: stopping the cluster");
    drop(cluster);
    Ok(ExitCode::SUCCESS)
}

/// `3.11` for the interpreter at `python`.
fn python_version(python: &Path) -> String {
    std::process::Command::new(python)
        .args([
            "-c",
            "import sys; print(f'{sys.version_info[0]}.{sys.version_info[1]}')",
        ])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| "3".to_owned())
}

/// The run with this id, or the only one whose id starts with it.
fn find_run<'a>(runs: &'a [RunRow], wanted: &str, path: &Path) -> Result<&'a RunRow, UsageError> {
    if let Some(run) = runs.iter().find(|r| *r.run_id.0 == *wanted) {
        return Ok(run);
    }
    let mut matching = runs.iter().filter(|r| r.run_id.0.starts_with(wanted));
    match (matching.next(), matching.next()) {
        (Some(run), None) => Ok(run),
        (Some(_), Some(_)) => Err(UsageError(anyhow!(
            "{wanted:?} is the start of more than one run id in {}",
            path.display()
        ))),
        (None, _) => Err(UsageError(anyhow!("no run {wanted} in {}", path.display()))),
    }
}

fn print_runs(runs: &[RunRow], as_json: bool, path: &Path) {
    if as_json {
        print_json(&json!(runs));
        return;
    }
    let mut out = std::io::stdout().lock();
    if runs.is_empty() {
        say!(out, "no runs recorded in {}", path.display());
        return;
    }
    for run in runs {
        let c = &run.counts;
        say!(
            out,
            "{}  {:<9}  {}  {:>9}  {} ({} succeeded, {} caught, {} failed, {} timed out{}){}{}",
            run.run_id,
            run.status.label(),
            utc_date_time(run.started_at_ms),
            run.duration_ms.map_or_else(|| "-".to_owned(), duration_ms),
            crate::text::plural(run.invocations, "invocation"),
            crate::text::count(c.succeeded),
            crate::text::count(c.caught),
            crate::text::count(c.failed),
            crate::text::count(c.timed_out),
            if c.cancelled > 0 {
                format!(", {} cancelled", crate::text::count(c.cancelled))
            } else {
                String::new()
            },
            if run.executor == Executor::Local {
                String::new()
            } else {
                format!(", on {}", run.executor)
            },
            run.redrive_of
                .as_ref()
                .map_or_else(String::new, |of| format!("  redrive of {of}"))
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn item_paths_parse_from_comma_lists() {
        assert_eq!(parse_item_path("3").unwrap().0, [3]);
        assert_eq!(parse_item_path("3,7").unwrap().0, [3, 7]);
        assert!(parse_item_path("3,x").is_err());
        assert!(parse_item_path("").is_err());
    }
}
