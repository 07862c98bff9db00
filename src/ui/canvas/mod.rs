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
//! problems and counts, the style), `hit.rs` what a click or a drag means, `menus.rs` the context
//! menus and the transition-type picker.

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
use menus::Picker;
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
    picker: Option<(Picker, Pos2)>,
    /// Changing it gives Snarl fresh state, which is how its own selection is cleared.
    epoch: u64,
    snarl_selection: Vec<NodeId>,
    canvas_rect: Rect,
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
            picker: None,
            epoch: 0,
            snarl_selection: Vec::new(),
            canvas_rect: Rect::NOTHING,
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
        self.canvas_rect = ui.available_rect_before_wrap();
        if self.fit_frames > 0 {
            self.fit_frames -= 1;
            self.impose = Some(self.fit_transform(&app.project));
            ui.ctx().request_repaint();
        }
        let pin_positions: SharedPins = Rc::default();
        let mut viewer = Viewer {
            app,
            tx,
            pins: &self.pins,
            dark,
            impose: self.impose.take(),
            to_global: self.to_global,
            node_rects: BTreeMap::new(),
            pin_positions: pin_positions.clone(),
            connection: None,
        };
        let snarl_id = self.snarl_id();
        let response = SnarlWidget::new()
            .id(snarl_id)
            .style(paint::snarl_style(ui))
            .show(&mut self.snarl, &mut viewer, ui);
        self.to_global = viewer.to_global;
        for (id, rect) in viewer.node_rects {
            self.node_rects.insert(id, rect);
        }
        if let Some((from, to)) = viewer.connection {
            let screen_pos = ui
                .ctx()
                .input(|i| i.pointer.latest_pos())
                .unwrap_or(self.canvas_rect.center());
            self.picker = Some((Picker::Connect { from, to }, screen_pos));
        }

        let snarl_layer = egui::LayerId::new(ui.layer_id().order, snarl_id);
        self.paint_wire_labels(ui, app, dark, snarl_layer, &pin_positions.borrow());
        self.moved_blocks(app, tx);
        self.follow_snarl_selection(ui, app, tx);
        self.clicks(ui, app, tx);
        if response.double_clicked()
            && let Some(pointer) = response.interact_pointer_pos()
        {
            let p = self.to_global.inverse() * pointer;
            tx.send(Edit::AddBlock {
                position: position(p.x - 20.0, p.y - 20.0),
                connect_from: None,
            });
        }
        self.picker_ui(ui, app, tx);
        if app.project.blocks.is_empty() {
            paint::empty_hint_ui(ui, self.canvas_rect);
        }
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

fn to_pos(p: Position) -> Pos2 {
    Pos2::new(p.x, p.y)
}

/// A position on the canvas (in graph space) as the project stores it.
fn position(x: f32, y: f32) -> Position {
    Position { x, y }
}
