//! The canvas's menus, all Braid's own: what a right-click on the empty canvas, a block (anywhere on
//! it: its title, its text, its pins) or a transition (its wire or its label) offers, the type picker
//! for a wire dragged between two blocks, and the new block for a wire dropped on empty canvas.
//! `hit.rs` decides which one a click means; this file draws it.
//!
//! A menu is an area that waits for input: nothing repaints while one is open. Escape (taken by
//! `Views::shortcuts`), a click elsewhere or a choice closes it.

use egui::epaint::CubicBezierShape;
use egui::{Id, Pos2, RichText, Stroke, Ui, Vec2};

use super::{CanvasView, position};
use crate::app::clipboard::copy_to_json;
use crate::app::{App, CommandSender, Edit, RunCommand, RunOptions, Select};
use crate::model::{BlockId, Position, TransitionId, TransitionKind};
use crate::ui::theme;

/// What a menu is about.
#[derive(Clone, Debug, PartialEq)]
pub(super) enum CanvasMenu {
    /// The empty canvas, at this graph position.
    Canvas(Position),
    Block(BlockId),
    Transition(TransitionId),
    /// A wire was dragged between two blocks: which type is it?
    Connect {
        from: BlockId,
        to: BlockId,
    },
    /// A wire from `from` was dropped on the empty canvas at this graph position: a new block,
    /// connected by the type picked.
    NewBlock {
        from: BlockId,
        at: Position,
    },
}

/// The menu shown, where, and the frame it opened in (the click that opened it is not a click
/// elsewhere).
#[derive(Clone, Debug)]
pub(super) struct OpenMenu {
    pub(super) menu: CanvasMenu,
    pub(super) screen_pos: Pos2,
    pub(super) opened_pass: u64,
}

impl CanvasView {
    pub(super) fn open_menu(&mut self, ctx: &egui::Context, menu: CanvasMenu, screen_pos: Pos2) {
        self.menu = Some(OpenMenu {
            menu,
            screen_pos,
            opened_pass: ctx.cumulative_pass_nr(),
        });
    }

    pub fn has_menu(&self) -> bool {
        self.menu.is_some()
    }

    pub fn close_menu(&mut self) {
        self.menu = None;
    }

    /// The accessible name of the open menu, for tests and tools.
    pub fn menu_title(&self, app: &App) -> Option<String> {
        self.menu.as_ref().map(|open| menu_title(app, &open.menu))
    }

    /// Draws the open menu, and the wire being connected for a wire dropped on the empty canvas.
    pub(super) fn menu_ui(
        &mut self,
        ui: &Ui,
        app: &App,
        tx: &CommandSender,
        wire_layer: egui::LayerId,
    ) {
        let Some(open) = self.menu.clone() else {
            return;
        };
        let still_there = match &open.menu {
            CanvasMenu::Canvas(_) => true,
            CanvasMenu::Block(id) => app.project.block(id).is_some(),
            CanvasMenu::Transition(id) => app.project.transition(id).is_some(),
            CanvasMenu::Connect { from, to } => {
                app.project.block(from).is_some() && app.project.block(to).is_some()
            }
            CanvasMenu::NewBlock { from, .. } => app.project.block(from).is_some(),
        };
        if !still_there {
            self.menu = None;
            return;
        }
        if let CanvasMenu::NewBlock { from, .. } = &open.menu {
            self.paint_dropped_wire(ui, from, open.screen_pos, wire_layer);
        }
        let dark = ui.visuals().dark_mode;
        let title = menu_title(app, &open.menu);
        let mut close = false;
        let area = egui::Area::new(Id::new("braid-canvas-menu"))
            .order(egui::Order::Foreground)
            .fixed_pos(open.screen_pos + Vec2::new(4.0, 4.0))
            .show(ui.ctx(), |ui| {
                egui::Frame::menu(ui.style()).show(ui, |ui| {
                    ui.set_max_width(320.0);
                    ui.label(RichText::new(&title).strong()).widget_info(|| {
                        egui::WidgetInfo::labeled(egui::WidgetType::Label, true, &title)
                    });
                    ui.separator();
                    close = match &open.menu {
                        CanvasMenu::Canvas(at) => canvas_items_ui(ui, *at, tx, self),
                        CanvasMenu::Block(id) => block_items_ui(ui, app, id, tx),
                        CanvasMenu::Transition(id) => transition_items_ui(ui, app, id, dark, tx),
                        CanvasMenu::Connect { from, to } => {
                            kind_items_ui(ui, dark, None, |kind| Edit::Connect {
                                from: from.clone(),
                                to: to.clone(),
                                kind,
                            })
                            .map(|edit| tx.send(edit))
                            .is_some()
                        }
                        CanvasMenu::NewBlock { from, at } => {
                            kind_items_ui(ui, dark, None, |kind| Edit::AddBlock {
                                position: *at,
                                connect_from: Some((from.clone(), kind)),
                            })
                            .map(|edit| tx.send(edit))
                            .is_some()
                        }
                    };
                    ui.separator();
                    if ui.button("Cancel").on_hover_text("Escape").clicked() {
                        close = true;
                    }
                });
            });
        if ui.ctx().cumulative_pass_nr() > open.opened_pass && area.response.clicked_elsewhere() {
            close = true;
        }
        if close {
            self.menu = None;
        }
    }

    /// While the new-block menu is open, the dropped wire still runs from its pin to the menu.
    fn paint_dropped_wire(&self, ui: &Ui, from: &BlockId, screen_pos: Pos2, layer: egui::LayerId) {
        let free_pin = self.pins.outgoing(from).len();
        let Some(&start) = self.last_pins.outputs.get(&(from.clone(), free_pin)) else {
            return;
        };
        let end = self.to_global.inverse() * screen_pos;
        let bend = ((end.x - start.x).abs() / 2.0).max(30.0);
        let color = ui.visuals().widgets.inactive.fg_stroke.color;
        ui.ctx()
            .layer_painter(layer)
            .add(CubicBezierShape::from_points_stroke(
                [
                    start,
                    start + Vec2::new(bend, 0.0),
                    end - Vec2::new(bend, 0.0),
                    end,
                ],
                false,
                egui::Color32::TRANSPARENT,
                Stroke::new(2.0, color),
            ));
    }
}

fn menu_title(app: &App, menu: &CanvasMenu) -> String {
    let name = |id: &BlockId| app.project.block_name(id).to_owned();
    match menu {
        CanvasMenu::Canvas(_) => "Canvas".to_owned(),
        CanvasMenu::Block(id) => format!("Block \"{}\"", name(id)),
        CanvasMenu::Transition(id) => app.project.transition(id).map_or_else(
            || "Transition".to_owned(),
            |t| {
                format!(
                    "Transition from \"{}\" to \"{}\"",
                    name(&t.from),
                    name(&t.to)
                )
            },
        ),
        CanvasMenu::Connect { from, to } => {
            format!("Connect \"{}\" to \"{}\" as", name(from), name(to))
        }
        CanvasMenu::NewBlock { from, .. } => {
            format!("New Code Block after \"{}\", connected by", name(from))
        }
    }
}

/// The empty canvas's items. Returns whether one was chosen.
fn canvas_items_ui(ui: &mut Ui, at: Position, tx: &CommandSender, view: &mut CanvasView) -> bool {
    if ui
        .button("Add Code Block here")
        .on_hover_text("A")
        .clicked()
    {
        tx.send(Edit::AddBlock {
            position: view.placed(at),
            connect_from: None,
        });
        return true;
    }
    if ui.button("Select all").on_hover_text("Ctrl+A").clicked() {
        tx.send(Select::All);
        return true;
    }
    if ui.button("Fit to view").on_hover_text("F").clicked() {
        view.request_fit();
        return true;
    }
    ui.label(RichText::new("Paste blocks with Ctrl+V").weak().small());
    false
}

/// A block's items; they act on the whole selection when the block is part of it.
fn block_items_ui(ui: &mut Ui, app: &App, id: &BlockId, tx: &CommandSender) -> bool {
    let targets: Vec<BlockId> = if app.selection.blocks.contains(id) {
        app.selection.blocks.iter().cloned().collect()
    } else {
        vec![id.clone()]
    };
    if ui
        .add_enabled(!app.is_running(), egui::Button::new("Run from here"))
        .on_hover_text("Run with the last input, starting at this block; later runs start here too")
        .clicked()
    {
        tx.send(RunCommand::Start(RunOptions {
            from: Some(id.clone()),
            ..app.run_options.clone()
        }));
        return true;
    }
    ui.separator();
    if ui.button("Copy").on_hover_text("Ctrl+C").clicked() {
        let ids = targets.iter().cloned().collect();
        if let Some(text) = copy_to_json(&app.project, &ids) {
            ui.ctx().copy_text(text);
        }
        return true;
    }
    if ui.button("Duplicate").on_hover_text("Ctrl+D").clicked() {
        tx.send(Edit::DuplicateBlocks(targets));
        return true;
    }
    if ui.button("Delete").on_hover_text("Delete").clicked() {
        tx.send(Edit::DeleteBlocks(targets));
        return true;
    }
    false
}

/// A transition's items: its type (the current one marked), and Delete.
fn transition_items_ui(
    ui: &mut Ui,
    app: &App,
    id: &TransitionId,
    dark: bool,
    tx: &CommandSender,
) -> bool {
    let current = app.project.transition(id).map(|t| t.kind);
    if let Some(edit) = kind_items_ui(ui, dark, current, |kind| Edit::SetTransitionKind {
        transition: id.clone(),
        kind,
    }) {
        tx.send(edit);
        return true;
    }
    ui.separator();
    if ui.button("Delete transition").clicked() {
        tx.send(Edit::DeleteTransition(id.clone()));
        return true;
    }
    false
}

/// One button per transition type, each in its colour; returns the edit of the one clicked.
fn kind_items_ui(
    ui: &mut Ui,
    dark: bool,
    current: Option<TransitionKind>,
    edit: impl Fn(TransitionKind) -> Edit,
) -> Option<Edit> {
    let mut chosen = None;
    for kind in TransitionKind::ALL {
        let text = RichText::new(kind.label()).color(theme::transition_color(kind, dark));
        if ui
            .add(egui::Button::selectable(current == Some(kind), text))
            .on_hover_text(theme::transition_help(kind))
            .clicked()
        {
            chosen = Some(edit(kind));
        }
    }
    chosen
}

impl CanvasView {
    /// Where a block asked for at `at` goes: moved in so that all of it is in the visible canvas (a
    /// block made near the right edge would otherwise sit half under the inspector).
    pub(super) fn placed(&self, at: Position) -> Position {
        if !self.canvas_rect.is_finite() {
            return at;
        }
        let visible = self.to_global.inverse() * self.canvas_rect.shrink(12.0);
        let size = super::ESTIMATED_NODE_SIZE;
        let x = at.x.min(visible.max.x - size.x).max(visible.min.x);
        let y = at.y.min(visible.max.y - size.y).max(visible.min.y);
        position(x, y)
    }
}
