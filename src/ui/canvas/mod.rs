//! The canvas: the project's blocks as nodes and its transitions as wires, drawn with egui-snarl.
//!
//! The project is the source of truth. `Snarl` is only view state, rebuilt from the project in project
//! order whenever it changes, so nothing saved depends on Snarl's internal (hash) order. Each transition
//! has its own output pin on its source and its own input pin on its target (plus one free pin on each
//! side to drag new connections from), so two transitions between the same blocks stay two wires.
//!
//! Snarl only selects with Shift; Braid keeps its own selection in the application (a click selects, Ctrl
//! toggles, Shift adds, Shift-drag selects a rectangle) and moves every selected block together.
//!
//! This file keeps the view's state and its frame; `viewer.rs` is egui-snarl's `SnarlViewer` (what a
//! node shows, its pins, connections), `paint.rs` what Braid paints itself (wire labels, a node's
//! problems and counts, the style), `hit.rs` what a click or a drag means (the one place that decides
//! what a right-click on a block, a wire, a label or the empty canvas opens), `menus.rs` those menus.

mod hit;
mod menus;
mod paint;
mod viewer;

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;

use egui::emath::TSTransform;
use egui::{Id, Pos2, Rect, Ui, Vec2};
use egui_snarl::ui::SnarlWidget;
use egui_snarl::{InPinId, NodeId, OutPinId, Snarl};

use crate::app::{App, CommandSender, Edit};
use crate::model::{BlockId, Position, Project, TransitionId};
use menus::{CanvasMenu, OpenMenu};
use viewer::Viewer;

pub use paint::transition_text;

/// The size assumed for a node that has not been drawn yet (fitting a project just opened).
const ESTIMATED_NODE_SIZE: Vec2 = Vec2::new(220.0, 110.0);
const MIN_SCALE: f32 = 0.2;
const MAX_SCALE: f32 = 2.0;
/// Width of a node's body, so that nodes line up and long summaries are cut, not stretched.
const NODE_BODY_WIDTH: f32 = 150.0;

#[derive(Clone, Debug)]
struct NodeData {
    block: BlockId,
}

/// Where each pin sits in graph space, recorded while Snarl draws them (for the wire labels).
#[derive(Default)]
struct PinPositions {
    outputs: BTreeMap<(BlockId, usize), Pos2>,
    inputs: BTreeMap<(BlockId, usize), Pos2>,
}

type SharedPins = Rc<RefCell<PinPositions>>;

/// For each block, indices into `project.transitions` of its incoming and outgoing transitions.
#[derive(Default)]
struct PinMap {
    incoming: BTreeMap<BlockId, Vec<usize>>,
    outgoing: BTreeMap<BlockId, Vec<usize>>,
}

impl PinMap {
    fn new(project: &Project) -> Self {
        let mut map = Self::default();
        for (index, t) in project.transitions.iter().enumerate() {
            map.outgoing.entry(t.from.clone()).or_default().push(index);
            map.incoming.entry(t.to.clone()).or_default().push(index);
        }
        map
    }

    fn incoming(&self, block: &BlockId) -> &[usize] {
        self.incoming.get(block).map_or(&[], Vec::as_slice)
    }

    fn outgoing(&self, block: &BlockId) -> &[usize] {
        self.outgoing.get(block).map_or(&[], Vec::as_slice)
    }
}

pub struct CanvasView {
    snarl: Snarl<NodeData>,
    nodes: BTreeMap<BlockId, NodeId>,
    wires: Vec<(OutPinId, InPinId)>,
    pins: PinMap,
    synced_revision: Option<u64>,
    /// The document last shown; a newly opened one is fitted into view.
    shown_document: Option<u64>,
    /// graph → screen, as Snarl last used it.
    to_global: TSTransform,
    /// A transform to impose on Snarl next frame (fit, zoom buttons, after a state reset).
    impose: Option<TSTransform>,
    /// Frames left to fit the view in: the first frame only estimates node sizes, the next ones know
    /// them.
    fit_frames: u8,
    /// Node rectangles in graph space, from the last frame.
    node_rects: BTreeMap<BlockId, Rect>,
    label_rects: Vec<(TransitionId, Rect)>,
    /// Where the pins were drawn last frame (graph space).
    last_pins: PinPositions,
    menu: Option<OpenMenu>,
    /// Changing it gives Snarl fresh state, which is how its own selection is cleared.
    epoch: u64,
    snarl_selection: Vec<NodeId>,
    canvas_rect: Rect,
    /// The transform of the last fit, while the user has not panned or zoomed since: a view that is
    /// fitted stays fitted when the canvas changes size.
    fitted: Option<TSTransform>,
    /// The selected block and picked invocation last brought into view.
    revealed: Option<(Option<BlockId>, Option<u64>)>,
}

impl Default for CanvasView {
    fn default() -> Self {
        Self {
            snarl: Snarl::new(),
            nodes: BTreeMap::new(),
            wires: Vec::new(),
            pins: PinMap::default(),
            synced_revision: None,
            shown_document: None,
            to_global: TSTransform::IDENTITY,
            impose: None,
            fit_frames: 3,
            node_rects: BTreeMap::new(),
            label_rects: Vec::new(),
            last_pins: PinPositions::default(),
            menu: None,
            epoch: 0,
            snarl_selection: Vec::new(),
            canvas_rect: Rect::NOTHING,
            fitted: None,
            revealed: None,
        }
    }
}

impl CanvasView {
    pub fn request_fit(&mut self) {
        self.fit_frames = 3;
    }

    pub fn zoom(&mut self, factor: f32) {
        let center = self.canvas_rect.center();
        let scaling = (self.to_global.scaling * factor).clamp(MIN_SCALE, MAX_SCALE);
        // Keep the graph point under the canvas centre where it is.
        let graph_center = self.to_global.inverse() * center;
        self.impose = Some(TSTransform {
            scaling,
            translation: center.to_vec2() - graph_center.to_vec2() * scaling,
        });
    }

    /// A point in canvas (graph) coordinates, on the screen.
    pub fn to_screen(&self, point: Pos2) -> Pos2 {
        self.to_global * point
    }

    /// Where the canvas is on the screen.
    pub fn screen_rect(&self) -> Rect {
        self.canvas_rect
    }

    /// The canvas's zoom (1 is 100 %).
    pub fn scaling(&self) -> f32 {
        self.to_global.scaling
    }

    /// Where a block's node was drawn last frame, on the screen.
    pub fn node_screen_rect(&self, block: &BlockId) -> Option<Rect> {
        self.node_rects.get(block).map(|r| self.to_global * *r)
    }

    /// Where a transition's label was drawn last frame, on the screen.
    pub fn label_screen_rect(&self, transition: &TransitionId) -> Option<Rect> {
        self.label_rects
            .iter()
            .find(|(id, _)| id == transition)
            .map(|(_, r)| self.to_global * *r)
    }

    /// Where a block's free pin (the one new connections start from) was drawn, on the screen.
    pub fn free_pin_screen(&self, block: &BlockId, output: bool) -> Option<Pos2> {
        let (pins, index) = if output {
            (&self.last_pins.outputs, self.pins.outgoing(block).len())
        } else {
            (&self.last_pins.inputs, self.pins.incoming(block).len())
        };
        pins.get(&(block.clone(), index))
            .map(|p| self.to_global * *p)
    }

    /// Where a block added "here" goes: the centre of the visible canvas, in graph space.
    pub fn center_position(&self) -> Position {
        if !self.canvas_rect.is_finite() {
            return Position::default();
        }
        let p = self.to_global.inverse() * self.canvas_rect.center();
        position(
            p.x - ESTIMATED_NODE_SIZE.x / 2.0,
            p.y - ESTIMATED_NODE_SIZE.y / 2.0,
        )
    }

    /// Where a block added at the pointer goes (the A key): at the pointer, moved in so that all of it
    /// is in the visible canvas.
    pub fn new_block_position(&self, ctx: &egui::Context) -> Position {
        self.pointer_position(ctx)
            .map_or_else(|| self.center_position(), |p| self.placed(p))
    }

    /// The pointer's position in graph space, when it is over the canvas.
    pub fn pointer_position(&self, ctx: &egui::Context) -> Option<Position> {
        let pointer = ctx.input(|i| i.pointer.latest_pos())?;
        if !self.canvas_rect.contains(pointer) {
            return None;
        }
        let p = self.to_global.inverse() * pointer;
        Some(position(p.x, p.y))
    }

    fn snarl_id(&self) -> Id {
        Id::new(("braid-canvas", self.epoch))
    }

    /// Rebuilds Snarl's nodes and wires from the project (in project order) when the project changed,
    /// and keeps node positions equal to the project's.
    fn sync(&mut self, app: &App) {
        let project = &app.project;
        if self.shown_document != Some(app.document) {
            self.shown_document = Some(app.document);
            self.request_fit();
        }
        if self.synced_revision != Some(app.revision) {
            self.synced_revision = Some(app.revision);
            self.pins = PinMap::new(project);
            // Wires go first, while every node they touch still exists (Snarl asserts that).
            for (out_pin, in_pin) in self.wires.drain(..) {
                self.snarl.disconnect(out_pin, in_pin);
            }
            let wanted: BTreeSet<&BlockId> = project.blocks.iter().map(|b| &b.id).collect();
            let gone: Vec<BlockId> = self
                .nodes
                .keys()
                .filter(|id| !wanted.contains(id))
                .cloned()
                .collect();
            for id in gone {
                if let Some(node) = self.nodes.remove(&id) {
                    self.snarl.remove_node(node);
                }
                self.node_rects.remove(&id);
            }
            for block in &project.blocks {
                if !self.nodes.contains_key(&block.id) {
                    let node = self.snarl.insert_node(
                        to_pos(block.position),
                        NodeData {
                            block: block.id.clone(),
                        },
                    );
                    self.nodes.insert(block.id.clone(), node);
                }
            }
            let wires = self.wanted_wires(project);
            for &(out_pin, in_pin) in &wires {
                self.snarl.connect(out_pin, in_pin);
            }
            self.wires = wires;
        }
        for block in &project.blocks {
            if let Some(node) = self.nodes.get(&block.id)
                && let Some(info) = self.snarl.get_node_info_mut(*node)
            {
                info.pos = to_pos(block.position);
            }
        }
    }

    fn wanted_wires(&self, project: &Project) -> Vec<(OutPinId, InPinId)> {
        project
            .transitions
            .iter()
            .enumerate()
            .filter_map(|(index, t)| {
                let from = *self.nodes.get(&t.from)?;
                let to = *self.nodes.get(&t.to)?;
                let output = self
                    .pins
                    .outgoing(&t.from)
                    .iter()
                    .position(|&i| i == index)?;
                let input = self.pins.incoming(&t.to).iter().position(|&i| i == index)?;
                Some((OutPinId { node: from, output }, InPinId { node: to, input }))
            })
            .collect()
    }

    pub fn show_ui(&mut self, ui: &mut Ui, app: &App, tx: &CommandSender) {
        self.sync(app);
        let dark = ui.visuals().dark_mode;
        let rect = ui.available_rect_before_wrap();
        if self.canvas_rect.is_finite() && (rect.size() - self.canvas_rect.size()).length() > 0.5 {
            self.resized(rect);
        }
        self.canvas_rect = rect;
        if self.fit_frames > 0 {
            self.fit_frames -= 1;
            let fit = self.fit_transform(&app.project);
            self.impose = Some(fit);
            self.fitted = Some(fit);
            ui.ctx().request_repaint();
        } else {
            self.reveal(app);
        }
        let pin_positions: SharedPins = Rc::default();
        let mut viewer = Viewer {
            app,
            pins: &self.pins,
            dark,
            impose: self.impose.take(),
            to_global: self.to_global,
            node_rects: BTreeMap::new(),
            pin_positions: pin_positions.clone(),
            connection: None,
            transition_clicked: None,
            dropped_wire: None,
        };
        let snarl_id = self.snarl_id();
        // A node's text is not selectable: a click on a block's name selects the block (so Ctrl+C
        // copies blocks, not the name's letters) and a right-click on it opens the block's menu.
        ui.style_mut().interaction.selectable_labels = false;
        let response = SnarlWidget::new()
            .id(snarl_id)
            .style(paint::snarl_style(ui))
            .show(&mut self.snarl, &mut viewer, ui);
        let Viewer {
            to_global,
            node_rects,
            connection,
            transition_clicked,
            dropped_wire,
            ..
        } = viewer;
        self.to_global = to_global;
        if self
            .fitted
            .is_some_and(|fit| !same_transform(fit, self.to_global))
        {
            self.fitted = None;
        }
        for (id, rect) in node_rects {
            self.node_rects.insert(id, rect);
        }
        let pointer = ui
            .ctx()
            .input(|i| i.pointer.latest_pos())
            .unwrap_or(self.canvas_rect.center());
        if let Some((from, to)) = connection {
            self.open_menu(ui.ctx(), CanvasMenu::Connect { from, to }, pointer);
        }
        if let Some(from) = dropped_wire {
            let at = self.to_global.inverse() * pointer;
            let at = self.placed(position(at.x, at.y));
            self.open_menu(ui.ctx(), CanvasMenu::NewBlock { from, at }, pointer);
        }

        let snarl_layer = egui::LayerId::new(ui.layer_id().order, snarl_id);
        self.paint_wire_labels(ui, app, dark, snarl_layer, &pin_positions.borrow());
        self.last_pins = pin_positions.take();
        self.moved_blocks(app, tx);
        self.follow_snarl_selection(ui, app, tx);
        self.clicks(ui, app, tx, transition_clicked);
        if response.double_clicked()
            && let Some(pointer) = response.interact_pointer_pos()
        {
            let p = self.to_global.inverse() * pointer;
            tx.send(Edit::AddBlock {
                position: self.placed(position(p.x - 20.0, p.y - 20.0)),
                connect_from: None,
            });
        }
        self.menu_ui(ui, app, tx, snarl_layer);
        if app.project.blocks.is_empty() {
            paint::empty_hint_ui(ui, self.canvas_rect);
        }
    }

    /// The canvas changed size (the window, a panel): a fitted view is fitted again; otherwise what was
    /// in the middle stays in the middle.
    fn resized(&mut self, rect: Rect) {
        if self.fitted.is_some() {
            self.request_fit();
            return;
        }
        let scaling = self.to_global.scaling;
        let middle = self.to_global.inverse() * self.canvas_rect.center();
        self.impose = Some(TSTransform {
            scaling,
            translation: rect.center().to_vec2() - middle.to_vec2() * scaling,
        });
    }

    /// Brings the picked invocation's block (else the selected block) into view when either changes,
    /// so that following an item, or a failure's link, never leaves its block below the canvas.
    fn reveal(&mut self, app: &App) {
        let selected = app.selection.single_block().cloned();
        let picked = app.executions.picked.as_ref();
        let key = (selected.clone(), picked.map(|p| p.id));
        if self.revealed.as_ref() == Some(&key) {
            return;
        }
        self.revealed = Some(key);
        let block = picked
            .and_then(|p| p.record.as_ref())
            .map(|r| r.block_id.clone())
            .or(selected);
        let Some(node) = block.and_then(|b| self.node_rects.get(&b).copied()) else {
            return;
        };
        let visible = self.canvas_rect.shrink(16.0);
        let on_screen = self.to_global * node;
        if visible.contains_rect(on_screen) || !visible.is_positive() {
            return;
        }
        // The least move that shows all of it (its top-left corner when it is larger than the canvas).
        let shift = |lo: f32, hi: f32, min: f32, max: f32| {
            if hi - lo > max - min || lo < min {
                min - lo
            } else if hi > max {
                max - hi
            } else {
                0.0
            }
        };
        let delta = Vec2::new(
            shift(
                on_screen.min.x,
                on_screen.max.x,
                visible.min.x,
                visible.max.x,
            ),
            shift(
                on_screen.min.y,
                on_screen.max.y,
                visible.min.y,
                visible.max.y,
            ),
        );
        self.impose = Some(TSTransform {
            scaling: self.to_global.scaling,
            translation: self.to_global.translation + delta,
        });
    }

    /// The transform that shows every block, not zoomed in past 100 %.
    fn fit_transform(&self, project: &Project) -> TSTransform {
        let bounds = project.blocks.iter().fold(Rect::NOTHING, |acc, block| {
            let rect = self.node_rects.get(&block.id).copied().unwrap_or_else(|| {
                Rect::from_min_size(to_pos(block.position), ESTIMATED_NODE_SIZE)
            });
            acc.union(rect)
        });
        let canvas = self.canvas_rect;
        if !bounds.is_finite() || !canvas.is_finite() || canvas.area() <= 0.0 {
            return TSTransform {
                scaling: 1.0,
                translation: canvas.min.to_vec2() + Vec2::splat(40.0),
            };
        }
        let bounds = bounds.expand(50.0);
        let scaling = (canvas.size() / bounds.size())
            .min_elem()
            .clamp(MIN_SCALE, 1.0);
        TSTransform {
            scaling,
            translation: canvas.center().to_vec2() - bounds.center().to_vec2() * scaling,
        }
    }
}

/// Two transforms that differ by less than a pixel (Snarl rounds what it is given).
fn same_transform(a: TSTransform, b: TSTransform) -> bool {
    (a.scaling - b.scaling).abs() < 1e-4 && (a.translation - b.translation).length() < 0.5
}

fn to_pos(p: Position) -> Pos2 {
    Pos2::new(p.x, p.y)
}

/// A position on the canvas (in graph space) as the project stores it.
fn position(x: f32, y: f32) -> Position {
    Position { x, y }
}
