//! `cargo bench --bench panel`: the Block Executions panel's frame time with a run of 1,000,000
//! invocations, drawn headless (egui logic and tessellation, no GPU): the table at rest and while
//! scrolling, the timeline (which holds the same run), and the one-time costs of filtering and packing
//! lanes. Target: a frame under 16 ms.

use std::time::{Duration, Instant};

use braid::app::executions::{RunData, Source};
use braid::app::{App, DialogMode};
use braid::model::BlockId;
use braid::run::{BlockCounts, InvocationRow, InvocationStatus, RunId, RunRow, RunStatus};
use braid::ui::Views;
use braid::ui::results_panel::Tab;

const ROWS: u64 = 1_000_000;
const FRAMES: usize = 120;

/// A 1,000,000-item run: items start in waves at a limit of 1,000, most take a few milliseconds, one
/// in a thousand fails, one in ten thousand is slow.
fn synthetic_run() -> RunData {
    let block = BlockId("process".into());
    let rows = (0..ROWS)
        .map(|i| {
            let start = (i / 1000) as f64 * 6.0 + (i % 1000) as f64 * 0.004;
            let duration = 2.0 + (i % 7) as f64 + if i % 10_000 == 0 { 400.0 } else { 0.0 };
            let failed = i % 1000 == 417;
            InvocationRow {
                id: i + 1,
                block_id: block.clone(),
                block_name: "Process".into(),
                item_path: smallvec::smallvec![i as u32],
                item: None,
                carried: false,
                attempt: 1,
                status: if failed {
                    InvocationStatus::Exception
                } else {
                    InvocationStatus::Succeeded
                },
                started_at_ms: Some(1.7e12 + start),
                ended_at_ms: Some(1.7e12 + start + duration),
                input_preview: format!("{{\"row\": {i}, \"name\": \"item {i}\"}}"),
                error_summary: failed.then(|| format!("ValueError: bad row {i}")),
                worker: None,
            }
        })
        .collect();
    let row = RunRow {
        run_id: RunId("bench".into()),
        status: RunStatus::Failed,
        started_at_ms: 1.7e12,
        duration_ms: Some(6000.0),
        invocations: ROWS,
        counts: BlockCounts::default(),
        executor: braid::run::Executor::Local,
        redrive_of: None,
    };
    RunData::from_rows(row, rows, Source::Session)
}

fn input(time: f64, events: Vec<egui::Event>) -> egui::RawInput {
    egui::RawInput {
        screen_rect: Some(egui::Rect::from_min_size(
            egui::Pos2::ZERO,
            egui::vec2(1280.0, 800.0),
        )),
        time: Some(time),
        events,
        ..egui::RawInput::default()
    }
}

/// Times `FRAMES` frames (logic and tessellation); `events` gives each frame's input.
fn frames(
    ctx: &egui::Context,
    app: &mut App,
    views: &mut Views,
    clock: &mut f64,
    events: impl Fn(usize) -> Vec<egui::Event>,
) -> Vec<Duration> {
    (0..FRAMES)
        .map(|n| {
            *clock += 1.0 / 60.0;
            let started = Instant::now();
            let output = ctx.run_ui(input(*clock, events(n)), |ui| {
                app.poll(*clock);
                views.show_ui(ui, app);
                app.apply_commands(*clock);
            });
            let _ = ctx.tessellate(output.shapes, output.pixels_per_point);
            started.elapsed()
        })
        .collect()
}

fn report(what: &str, mut times: Vec<Duration>) {
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "{what:<44} median {:>6.2} ms   p95 {:>6.2} ms   max {:>6.2} ms",
        ms(times[times.len() / 2]),
        ms(times[times.len() * 95 / 100]),
        ms(times[times.len() - 1])
    );
}

fn main() {
    let built = Instant::now();
    let run = synthetic_run();
    println!(
        "built {ROWS} rows in {:.0} ms",
        built.elapsed().as_secs_f64() * 1000.0
    );
    let mut app = App::new(None, DialogMode::InApp);
    app.executions.insert_run(run);
    let mut views = Views::default();
    views.results.tab = Tab::Executions;
    let ctx = egui::Context::default();
    braid::ui::theme::install(&ctx);
    let mut clock = 0.0;

    // The first frame filters the million rows into the table.
    let first = Instant::now();
    let output = ctx.run_ui(input(clock, Vec::new()), |ui| {
        app.poll(clock);
        views.show_ui(ui, &app);
        app.apply_commands(clock);
    });
    let shapes = output.shapes.len();
    let _ = ctx.tessellate(output.shapes, output.pixels_per_point);
    println!(
        "first frame (filters {ROWS} rows into the table): {:.1} ms, {shapes} shapes",
        first.elapsed().as_secs_f64() * 1000.0
    );
    assert_eq!(app.executions.visible.len(), ROWS as usize);

    report(
        "table at rest",
        frames(&ctx, &mut app, &mut views, &mut clock, |_| Vec::new()),
    );
    // The pointer over the table, the wheel turning every frame: rows scroll past.
    let over_table = egui::pos2(500.0, 700.0);
    report(
        "table scrolling (wheel every frame)",
        frames(&ctx, &mut app, &mut views, &mut clock, |_| {
            vec![
                egui::Event::PointerMoved(over_table),
                egui::Event::MouseWheel {
                    unit: egui::MouseWheelUnit::Point,
                    delta: egui::vec2(0.0, -4000.0),
                    modifiers: egui::Modifiers::NONE,
                    phase: egui::TouchPhase::Move,
                },
            ]
        }),
    );
    // Picking rows with the keyboard (the panel has focus after a click in it).
    let mut events = vec![
        egui::Event::PointerButton {
            pos: over_table,
            button: egui::PointerButton::Primary,
            pressed: true,
            modifiers: egui::Modifiers::NONE,
        },
        egui::Event::PointerButton {
            pos: over_table,
            button: egui::PointerButton::Primary,
            pressed: false,
            modifiers: egui::Modifiers::NONE,
        },
    ];
    events.push(egui::Event::PointerGone);
    let key = |key| egui::Event::Key {
        key,
        physical_key: None,
        pressed: true,
        repeat: false,
        modifiers: egui::Modifiers::NONE,
    };
    report(
        "stepping with j (pick + detail every frame)",
        frames(&ctx, &mut app, &mut views, &mut clock, |n| {
            if n == 0 {
                events.clone()
            } else {
                vec![key(egui::Key::J)]
            }
        }),
    );

    let picked = app.executions.picked.as_ref().map(|p| p.id);
    assert!(
        picked.is_some_and(|id| id > 100),
        "j stepped through the table (picked {picked:?})"
    );
    views.results.tab = Tab::Timeline;
    let lanes = Instant::now();
    let output = ctx.run_ui(input(clock, Vec::new()), |ui| {
        views.show_ui(ui, &app);
    });
    let _ = ctx.tessellate(output.shapes, output.pixels_per_point);
    println!(
        "timeline first frame (packs {ROWS} invocations into slots): {:.1} ms",
        lanes.elapsed().as_secs_f64() * 1000.0
    );
    report(
        "timeline, whole run in view",
        frames(&ctx, &mut app, &mut views, &mut clock, |_| Vec::new()),
    );
}
