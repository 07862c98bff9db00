//! The editor's shell, above `app` and `ui`: the eframe application that ties the app's state to the
//! views. One frame = take the runtime's events, draw the views, apply their commands.

use std::path::PathBuf;
use std::time::Duration;

use crate::app::dialogs::{self, DialogMode, RECENT_KEY};
use crate::app::executions::KEEP_RUNS_KEY;
use crate::app::{App, FileCommand};
use crate::runtime::RuntimeConfig;
use crate::ui::Views;
use crate::ui::layout::LAYOUT_KEY;

/// How the editor starts.
pub struct AppOptions {
    /// `None` leaves the editor without a runtime (it still edits and saves).
    pub runtime: Option<RuntimeConfig>,
    /// A project to open at start.
    pub project: Option<PathBuf>,
    pub dialogs: DialogMode,
}

pub struct BraidApp {
    pub app: App,
    views: Views,
    /// The title last sent to the window, so it is only sent when it changes.
    title: String,
}

impl BraidApp {
    pub fn new(cc: &eframe::CreationContext<'_>, options: AppOptions) -> Self {
        crate::ui::theme::install(&cc.egui_ctx);
        let mut app = App::new(options.runtime, options.dialogs);
        if let Some(storage) = cc.storage {
            app.recent = dialogs::recent_from_storage(storage.get_string(RECENT_KEY));
            if let Some(keep) = storage
                .get_string(KEEP_RUNS_KEY)
                .and_then(|text| text.parse().ok())
            {
                app.executions.keep_runs = keep;
            }
        }
        if let Some(path) = options.project {
            app.open_at_start(&path);
        }
        let mut views = Views::default();
        if let Some(layout) = cc
            .storage
            .and_then(|storage| storage.get_string(LAYOUT_KEY))
            .and_then(|text| serde_json::from_str(&text).ok())
        {
            views.layout = layout;
        }
        Self {
            app,
            views,
            title: String::new(),
        }
    }

    /// Where a point of the canvas (in canvas coordinates) is on the screen now, for tests and tools
    /// that find canvas widgets through accessibility (whose rectangles are in canvas coordinates).
    pub fn canvas_to_screen(&self, point: egui::Pos2) -> egui::Pos2 {
        self.views.canvas.to_screen(point)
    }

    /// The views, for tests and tools that look at what is drawn where.
    pub fn views(&self) -> &Views {
        &self.views
    }

    /// The views, for tests and tools that set what a user would type (the address Serve listens on).
    pub fn views_mut(&mut self) -> &mut Views {
        &mut self.views
    }

    /// One frame, on a context (eframe calls it through [`eframe::App::ui`]).
    pub fn frame_ui(&mut self, ui: &mut egui::Ui) {
        let ctx = ui.ctx().clone();
        let now = ctx.input(|i| i.time);

        if ctx.input(|i| i.viewport().close_requested())
            && self.app.is_dirty()
            && !self.app.quit_confirmed
        {
            ctx.send_viewport_cmd(egui::ViewportCommand::CancelClose);
            self.app.apply(FileCommand::Quit, now);
        }
        let dropped = ctx.input(|i| {
            i.raw
                .dropped_files
                .iter()
                .filter(|file| !file.path().as_os_str().is_empty())
                .map(|file| file.path().to_path_buf())
                .next()
        });
        if let Some(path) = dropped {
            self.app.apply(FileCommand::Open(path), now);
        }

        self.app.poll(now);
        self.views.show_ui(ui, &self.app);
        if self.app.apply_commands(now) {
            ctx.request_repaint();
        }

        if self.app.close_requested {
            self.app.close_requested = false;
            ctx.send_viewport_cmd(egui::ViewportCommand::Close);
        }
        let title = self.app.title();
        if title != self.title {
            ctx.send_viewport_cmd(egui::ViewportCommand::Title(title.clone()));
            self.title = title;
        }
        // Runs, checks and dialogs answer from other threads (events the last frame had no time for
        // wait in the inbox): look again soon, without spinning.
        if self.app.is_running()
            || self.app.has_events()
            || self.app.is_checking()
            || self.app.serve_starting()
            || self.app.file_dialog_open()
            || self.app.executions.is_loading()
        {
            ctx.request_repaint_after(Duration::from_millis(50));
        } else {
            // Files other programs may change (the project, its variables' values) are looked at once
            // a second, which takes a frame: an idle editor would otherwise never notice. So is a
            // served project's status (a queue's depth). A notice that fades is drawn away when it does.
            let watch = (self.app.path.is_some() || self.app.is_serving()).then_some(1.0);
            let fade = self.app.next_notice_fades_in(now);
            if let Some(secs) = [watch, fade].into_iter().flatten().reduce(f64::min) {
                ctx.request_repaint_after(Duration::from_secs_f64(secs + 0.01));
            }
        }
    }
}

impl eframe::App for BraidApp {
    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        self.frame_ui(ui);
    }

    fn on_exit(&mut self) {
        self.app.shutdown_runtime();
    }

    fn save(&mut self, storage: &mut dyn eframe::Storage) {
        if let Ok(text) = serde_json::to_string(&self.app.recent) {
            storage.set_string(RECENT_KEY, text);
        }
        storage.set_string(KEEP_RUNS_KEY, self.app.executions.keep_runs.to_string());
        if let Ok(text) = serde_json::to_string(&self.views.layout) {
            storage.set_string(LAYOUT_KEY, text);
        }
    }
}

/// The app icon (also in `assets/`).
const ICON_PNG: &[u8] = include_bytes!("../assets/icon.png");

/// Opens the editor window and returns when it closes.
pub fn run_editor(project: Option<&std::path::Path>) -> anyhow::Result<()> {
    let runtime = match RuntimeConfig::from_current_exe() {
        Ok(config) => Some(config),
        Err(e) => {
            tracing::warn!("no runtime: {e}");
            None
        }
    };
    let mut viewport = egui::ViewportBuilder::default()
        .with_title("Braid")
        .with_app_id("braid")
        .with_inner_size([1280.0, 800.0])
        .with_min_inner_size([900.0, 600.0])
        .with_drag_and_drop(true);
    match eframe::icon_data::from_png_bytes(ICON_PNG) {
        Ok(icon) => viewport = viewport.with_icon(icon),
        Err(e) => tracing::warn!("the app icon did not load: {e}"),
    }
    let options = eframe::NativeOptions {
        viewport,
        renderer: eframe::Renderer::Wgpu,
        ..eframe::NativeOptions::default()
    };
    let project = project.map(std::path::Path::to_path_buf);
    eframe::run_native(
        "braid",
        options,
        Box::new(move |cc| {
            Ok(Box::new(BraidApp::new(
                cc,
                AppOptions {
                    runtime,
                    project,
                    dialogs: DialogMode::from_env(),
                },
            )))
        }),
    )
    .map_err(|e| anyhow::anyhow!("{e}"))
}
