//! The headless command line (`../shared/spec/cli.md`): the same runtime as the editor, no GUI.

use std::collections::BTreeMap;
use std::io::{IsTerminal as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, anyhow};
use clap::{Args, Parser, Subcommand};
use serde_json::{Value, json};

use crate::model::format::{LoadedProject, load_project};
use crate::model::validate::{Severity, validate};
use crate::runtime::{
    BlockCounts, RunId, RunRequest, RunStatus, RunSummary, RuntimeConfig, RuntimeEvent,
    RuntimeHandle, RuntimeRequest,
};

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
    Validate { project: PathBuf },
    /// Internal: serve as a Python worker for a Braid process (stdin/stdout protocol).
    #[command(name = "__worker", hide = true)]
    Worker,
}

#[derive(Debug, Args)]
pub struct RunArgs {
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
}

/// Exit code 2: unusable arguments or a file that can't be read or parsed.
struct UsageError(anyhow::Error);

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Command::Worker) => {
            return match crate::runtime::worker::serve() {
                Ok(()) => ExitCode::SUCCESS,
                Err(message) => {
                    eprintln!("braid worker: {message}");
                    ExitCode::FAILURE
                }
            };
        }
        Some(Command::Run(args)) => run(&args),
        Some(Command::Validate { project }) => validate_command(&project),
        None => return open_editor(cli.project.as_deref()),
    };
    match result {
        Ok(code) => code,
        Err(UsageError(error)) => {
            eprintln!("braid: {error:#}");
            ExitCode::from(2)
        }
    }
}

fn open_editor(project: Option<&Path>) -> ExitCode {
    match crate::app::shell::run_editor(project) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("braid: the editor could not start: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn load(path: &Path) -> Result<LoadedProject, UsageError> {
    // The error names the file and says what is wrong in one line; no cause chain to repeat it.
    load_project(path).map_err(|e| UsageError(anyhow!(e.to_string())))
}

/// `--input` and friends: JSON text, or `@path` to read it from a file.
fn json_arg(name: &str, text: &str) -> Result<Value, UsageError> {
    let (text, source) = match text.strip_prefix('@') {
        Some(path) => (
            std::fs::read_to_string(path)
                .with_context(|| format!("{name}: can't read {path}"))
                .map_err(UsageError)?,
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
    for error in &compile_errors {
        println!("error: {error}");
    }
    errors += compile_errors.len();
    problems.sort_by_key(|p| std::cmp::Reverse(p.severity));
    for problem in &problems {
        let label = match problem.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        println!("{label}: {}", problem.message);
    }
    let warnings = problems.len() + compile_errors.len() - errors;
    if errors == 0 {
        println!(
            "{}: valid ({} blocks, {} transitions{})",
            path.display(),
            loaded.project.blocks.len(),
            loaded.project.transitions.len(),
            if warnings > 0 {
                format!(", {warnings} warning(s)")
            } else {
                String::new()
            }
        );
        Ok(ExitCode::SUCCESS)
    } else {
        println!("{}: {errors} error(s)", path.display());
        Ok(ExitCode::FAILURE)
    }
}

fn check_code(
    project: &crate::model::Project,
) -> anyhow::Result<Vec<crate::runtime::CompileError>> {
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
        eprintln!("braid: warning: {problem}");
    }
    let mut runtime = start_runtime().map_err(UsageError)?;
    let run_id = RunId::new_random();
    let block_names: BTreeMap<_, _> = project
        .blocks
        .iter()
        .map(|b| (b.id.clone(), b.name.clone()))
        .collect();
    runtime.send(RuntimeRequest::Run(Box::new(RunRequest {
        run_id: run_id.clone(),
        project,
        input,
        backpack,
        from,
        concurrency: args.concurrency,
        env,
        single: false,
        history: None,
    })));
    let progress = Progress::new();
    let started = std::time::Instant::now();
    loop {
        let Some(event) = runtime.recv_blocking() else {
            return Err(UsageError(anyhow!("the runtime stopped unexpectedly")));
        };
        if event.run_id() != &run_id {
            continue;
        }
        match event {
            RuntimeEvent::Progress { counts, .. } => progress.update(&counts),
            // pip's output while the project's libraries install: visible, never on stdout.
            RuntimeEvent::Log { line, .. } => progress.log(&line),
            RuntimeEvent::RunFinished(summary) => {
                progress.finish();
                print_summary(&summary, args.json, &block_names);
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
                eprintln!("braid: {message}");
                if args.json {
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

fn print_json(value: &Value) {
    let mut stdout = std::io::stdout().lock();
    let _ = serde_json::to_writer(&mut stdout, value);
    let _ = writeln!(stdout);
}

fn print_summary(
    summary: &RunSummary,
    as_json: bool,
    _names: &BTreeMap<crate::model::BlockId, String>,
) {
    if as_json {
        print_json(&json!({
            "run_id": summary.run_id,
            "status": summary.status.label(),
            "results": summary.results,
            "invocations": summary.invocations,
            "failures": summary.failures,
            "duration_ms": summary.duration_ms.round(),
        }));
        return;
    }
    let mut out = std::io::stdout().lock();
    let _ = writeln!(
        out,
        "Run {} {} in {:.2} s: {} invocations",
        summary.run_id,
        summary.status.label(),
        summary.duration_ms / 1000.0,
        summary.invocations
    );
    if !summary.results.is_empty() {
        let _ = writeln!(out, "Results:");
        for result in &summary.results {
            let _ = writeln!(
                out,
                "  {} {:?}: {}",
                result.block,
                result.item_path,
                preview(&result.output, 200)
            );
        }
    }
    if !summary.failures.is_empty() {
        let _ = writeln!(out, "Failures:");
        for failure in &summary.failures {
            let _ = writeln!(
                out,
                "  {} {:?} ({}): {}",
                failure.block, failure.item_path, failure.status, failure.error
            );
        }
    }
}

/// A value as one line of at most `max` characters.
fn preview(value: &Value, max: usize) -> String {
    let text = value.to_string();
    if text.chars().count() <= max {
        return text;
    }
    let cut: String = text.chars().take(max).collect();
    format!("{cut}…")
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
                "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} invocations {msg}",
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
                bar.set_message(format!("({failed} failed)"));
            }
        } else if self.last_line.get().elapsed() >= Duration::from_secs(2) {
            self.last_line.set(std::time::Instant::now());
            eprintln!("braid: {done}/{total} invocations finished, {failed} failed");
        }
    }

    fn log(&self, line: &str) {
        match &self.bar {
            Some(bar) => bar.println(line),
            None => eprintln!("{line}"),
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
