//! `cargo bench --bench editor`: does the editor stay responsive while a 10,000-item fan-out runs?
//!
//! Drives the real app (its runtime and Python workers included) through `egui_kittest`, starts a
//! 10,000-item fan-out/fan-in from the Run button, and times every frame until the run ends: the frame
//! time is what the user feels (events drained, the canvas with live counts, the panels laid out).
//! Rendering is left out (no GPU here); the baseline is the same editor idle, in the same run.

use std::time::{Duration, Instant};

use braid::app::DialogMode;
use braid::app::run::RunPhase;
use braid::shell::{AppOptions, BraidApp};
use egui_kittest::Harness;
use egui_kittest::kittest::Queryable as _;

const ITEMS: usize = 10_000;

fn project_file(dir: &std::path::Path) -> std::path::PathBuf {
    let project = common::fan_project(
        &format!("def main(block_input, backpack):\n    return list(range({ITEMS}))\n"),
        // A little real work per item, so the run lasts long enough to feel.
        "import time\ndef main(block_input, backpack):\n    time.sleep(0.002)\n    return block_input * 2\n",
        "def main(block_input, backpack):\n    return sum(block_input)\n",
    );
    let path = dir.join("responsive.braid.json");
    braid::model::format::save_project(&path, &project).expect("saved");
    path
}

fn stats(label: &str, mut frames: Vec<Duration>) -> Duration {
    frames.sort();
    let pick = |q: f64| frames[((frames.len() - 1) as f64 * q) as usize];
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "   {label:<28} {:>5} frames   median {:>6.2} ms   p95 {:>6.2} ms   p99 {:>6.2} ms   max {:>6.2} ms",
        frames.len(),
        ms(pick(0.5)),
        ms(pick(0.95)),
        ms(pick(0.99)),
        ms(pick(1.0))
    );
    pick(0.99)
}

mod common;

fn main() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = project_file(dir.path());
    let runtime = common::config();
    let mut harness = Harness::builder()
        .with_size([1280.0, 800.0])
        .with_max_steps(200)
        .build_eframe(move |cc| {
            BraidApp::new(
                cc,
                AppOptions {
                    runtime: Some(runtime),
                    project: Some(path),
                    dialogs: DialogMode::InApp,
                },
            )
        });
    harness.run_steps(20);

    let timed_step = |harness: &mut Harness<'_, BraidApp>| {
        let start = Instant::now();
        harness.step();
        start.elapsed()
    };
    let idle: Vec<Duration> = (0..200).map(|_| timed_step(&mut harness)).collect();

    harness.get_by_label("▶ Run").click();
    let mut running = Vec::new();
    let deadline = Instant::now() + Duration::from_mins(3);
    loop {
        running.push(timed_step(&mut harness));
        let finished = matches!(
            harness.state().app.run.as_ref().map(|r| &r.phase),
            Some(RunPhase::Finished(_) | RunPhase::Refused { .. })
        );
        if finished || Instant::now() > deadline {
            break;
        }
    }
    let Some(RunPhase::Finished(summary)) = harness.state().app.run.as_ref().map(|r| &r.phase)
    else {
        panic!("the run did not finish");
    };
    assert_eq!(summary.invocations as usize, ITEMS + 2);

    println!("Editor frame times (egui logic, no rendering), {ITEMS}-item fan-out at limit 1000");
    let base = stats("idle, same project", idle);
    let busy = stats("while the run goes on", running);
    println!(
        "   p99 while running / p99 idle: {:.2}x  (target: every frame well under 16 ms)",
        busy.as_secs_f64() / base.as_secs_f64().max(1e-9)
    );
}
