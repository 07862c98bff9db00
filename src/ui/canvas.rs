//! The canvas: the project's blocks as nodes and its transitions as wires, drawn with egui-snarl.
//!
//! The project is the source of truth. `Snarl` is only view state, rebuilt from the project in project
//! order whenever it changes, so nothing saved depends on Snarl's internal (hash) order. Each transition
//! has its own output pin on its source and its own input pin on its target (plus one free pin on each
//! side to drag new connections from), so two transitions between the same blocks stay two wires.
//!
//! Snarl only selects with Shift; Braid keeps its own selection in the application (a click selects, Ctrl
//! toggles, Shift adds, Shift-drag selects a rectangle) and moves every selected block together.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;

use egui::emath::TSTransform;
use egui::{Align2, Color32, FontId, Id, Pos2, Rect, RichText, Stroke, Ui, Vec2};
use egui_snarl::ui::{
    AnyPins, PinInfo, PinWireInfo, SelectionStyle, SnarlPin, SnarlStyle, SnarlViewer, SnarlWidget,
};
use egui_snarl::{InPin, InPinId, NodeId, OutPin, OutPinId, Snarl};

use super::theme;
use crate::app::{App, CommandSender, Edit, RunCommand, RunOptions, Select};
use crate::model::validate::{Severity, Subject};
use crate::model::{Block, BlockId, BlockKind, Position, Project, TransitionId, TransitionKind};
use crate::run::{BlockCounts, InvocationStatus as S};
use crate::text::truncate;

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

/// A small menu of transition types at the pointer.
#[derive(Clone, Debug)]
enum Picker {
    /// A wire was dragged between two blocks: which type is it?
    Connect { from: BlockId, to: BlockId },
    /// A wire label was right-clicked: change its type, or delete it.
    Change(TransitionId),
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
        let response = SnarlWidget::new().id(snarl_id).style(snarl_style(ui)).show(
            &mut self.snarl,
            &mut viewer,
            ui,
        );
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
            empty_hint_ui(ui, self.canvas_rect);
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

    /// Blocks the user dragged: Snarl moved one node (or its own selection); every selected block
    /// follows, and the new positions go to the project.
    fn moved_blocks(&self, app: &App, tx: &CommandSender) {
        let mut delta = None;
        let mut moved = BTreeSet::new();
        for block in &app.project.blocks {
            let Some(info) = self
                .nodes
                .get(&block.id)
                .and_then(|n| self.snarl.get_node_info(*n))
            else {
                continue;
            };
            let d = info.pos - to_pos(block.position);
            if d != Vec2::ZERO {
                delta.get_or_insert(d);
                moved.insert(block.id.clone());
            }
        }
        let Some(delta) = delta else {
            return;
        };
        if moved.iter().any(|id| app.selection.blocks.contains(id)) {
            moved.extend(app.selection.blocks.iter().cloned());
        }
        let new_positions = app
            .project
            .blocks
            .iter()
            .filter(|b| moved.contains(&b.id))
            .map(|b| {
                (
                    b.id.clone(),
                    position(b.position.x + delta.x, b.position.y + delta.y),
                )
            })
            .collect();
        tx.send(Edit::MoveBlocks(new_positions));
    }

    /// Shift-drag selects a rectangle in Snarl; Braid adopts it, then resets Snarl's own selection so the
    /// two never disagree.
    fn follow_snarl_selection(&mut self, ui: &Ui, app: &App, tx: &CommandSender) {
        let selected = egui_snarl::ui::get_selected_nodes(self.snarl_id(), ui.ctx());
        if selected == self.snarl_selection {
            return;
        }
        self.snarl_selection.clone_from(&selected);
        if selected.is_empty() {
            return;
        }
        let mut blocks: BTreeSet<BlockId> = app.selection.blocks.clone();
        for node in &selected {
            if let Some(data) = self.snarl.get_node(*node) {
                blocks.insert(data.block.clone());
            }
        }
        tx.send(Select::Blocks(blocks.into_iter().collect()));
        self.epoch += 1;
        self.snarl_selection.clear();
        self.impose = Some(self.to_global);
    }

    /// A click on a node selects it (Ctrl toggles, Shift adds); on a wire label, selects the
    /// transition; on the empty canvas, clears the selection.
    fn clicks(&mut self, ui: &Ui, app: &App, tx: &CommandSender) {
        let ctx = ui.ctx();
        let (clicked, secondary, pointer, modifiers) = ctx.input(|i| {
            (
                i.pointer.primary_clicked(),
                i.pointer.secondary_clicked(),
                i.pointer.interact_pos(),
                i.modifiers,
            )
        });
        let Some(pointer) = pointer.filter(|_| clicked || secondary) else {
            return;
        };
        if !self.canvas_rect.contains(pointer)
            || ctx
                .layer_id_at(pointer)
                .is_some_and(|layer| layer.order != egui::Order::Background)
        {
            return;
        }
        let graph = self.to_global.inverse() * pointer;
        if let Some((id, _)) = self.label_rects.iter().find(|(_, r)| r.contains(graph)) {
            tx.send(Select::Transition(id.clone()));
            if secondary {
                self.picker = Some((Picker::Change(id.clone()), pointer));
            }
            return;
        }
        if !clicked {
            return;
        }
        // Later blocks are drawn on top.
        let hit = app.project.blocks.iter().rev().find(|b| {
            self.node_rects
                .get(&b.id)
                .is_some_and(|r| r.contains(graph))
        });
        match hit {
            Some(block) if modifiers.command => tx.send(Select::Toggle(block.id.clone())),
            Some(block) if modifiers.shift => {
                let mut blocks = app.selection.blocks.clone();
                blocks.insert(block.id.clone());
                tx.send(Select::Blocks(blocks.into_iter().collect()));
            }
            Some(block) => tx.send(Select::Blocks(vec![block.id.clone()])),
            None if !modifiers.command && !modifiers.shift => tx.send(Select::Clear),
            None => {}
        }
    }

    /// Each wire carries its type (and an `if` its expression) in a label at its middle. Snarl draws
    /// wires as symmetric curves, so the middle of the curve is the middle of its two ends.
    fn paint_wire_labels(
        &mut self,
        ui: &Ui,
        app: &App,
        dark: bool,
        layer: egui::LayerId,
        pins: &PinPositions,
    ) {
        self.label_rects.clear();
        let painter = ui
            .ctx()
            .layer_painter(layer)
            .with_clip_rect(self.to_global.inverse() * self.canvas_rect);
        let fill = ui.visuals().extreme_bg_color;
        for (index, t) in app.project.transitions.iter().enumerate() {
            let out_index = self.pins.outgoing(&t.from).iter().position(|&i| i == index);
            let in_index = self.pins.incoming(&t.to).iter().position(|&i| i == index);
            let (Some(out_index), Some(in_index)) = (out_index, in_index) else {
                continue;
            };
            let (Some(from), Some(to)) = (
                pins.outputs.get(&(t.from.clone(), out_index)),
                pins.inputs.get(&(t.to.clone(), in_index)),
            ) else {
                continue;
            };
            let middle = from.lerp(*to, 0.5);
            let color = theme::transition_color(t.kind, dark);
            let galley = painter.layout_no_wrap(
                transition_text(t.kind, &t.expression, 28),
                FontId::proportional(11.0),
                color,
            );
            let rect = Rect::from_center_size(middle, galley.size() + Vec2::new(10.0, 4.0));
            let selected = app.selection.transition.as_ref() == Some(&t.id);
            let stroke = Stroke::new(if selected { 2.0 } else { 1.0 }, color);
            painter.rect(rect, 4.0, fill, stroke, egui::StrokeKind::Inside);
            painter.galley(rect.min + Vec2::new(5.0, 2.0), galley, color);
            self.label_rects.push((t.id.clone(), rect));
        }
    }

    /// The transition-type menu: for a wire just dragged, or a wire label right-clicked.
    fn picker_ui(&mut self, ui: &Ui, app: &App, tx: &CommandSender) {
        let Some((picker, screen_pos)) = self.picker.clone() else {
            return;
        };
        let title = match &picker {
            Picker::Connect { from, to } => format!(
                "Connect \"{}\" to \"{}\" as",
                app.project.block_name(from),
                app.project.block_name(to)
            ),
            Picker::Change(id) => {
                let Some(t) = app.project.transition(id) else {
                    self.picker = None;
                    return;
                };
                format!(
                    "Transition from \"{}\" to \"{}\"",
                    app.project.block_name(&t.from),
                    app.project.block_name(&t.to)
                )
            }
        };
        let dark = ui.visuals().dark_mode;
        let mut close = ui.input(|i| i.key_pressed(egui::Key::Escape));
        let area = egui::Area::new(Id::new("braid-transition-picker"))
            .order(egui::Order::Foreground)
            .fixed_pos(screen_pos + Vec2::new(8.0, 8.0))
            .show(ui.ctx(), |ui| {
                egui::Frame::popup(ui.style()).show(ui, |ui| {
                    ui.label(RichText::new(title).strong());
                    for kind in TransitionKind::ALL {
                        let text =
                            RichText::new(kind.label()).color(theme::transition_color(kind, dark));
                        if ui
                            .button(text)
                            .on_hover_text(theme::transition_help(kind))
                            .clicked()
                        {
                            tx.send(match &picker {
                                Picker::Connect { from, to } => Edit::Connect {
                                    from: from.clone(),
                                    to: to.clone(),
                                    kind,
                                },
                                Picker::Change(id) => Edit::SetTransitionKind {
                                    transition: id.clone(),
                                    kind,
                                },
                            });
                            close = true;
                        }
                    }
                    ui.separator();
                    if let Picker::Change(id) = &picker
                        && ui.button("Delete transition").clicked()
                    {
                        tx.send(Edit::DeleteTransition(id.clone()));
                        close = true;
                    }
                    if ui.button("Cancel").clicked() {
                        close = true;
                    }
                });
            });
        if area.response.clicked_elsewhere() {
            close = true;
        }
        if close {
            self.picker = None;
        }
    }
}

fn empty_hint_ui(ui: &Ui, rect: Rect) {
    ui.painter().text(
        rect.center(),
        Align2::CENTER_CENTER,
        "Double-click or press A to add a Code Block\nRight-click for more · F1 for shortcuts",
        FontId::proportional(15.0),
        ui.visuals().weak_text_color(),
    );
}

fn snarl_style(ui: &Ui) -> SnarlStyle {
    let mut style = SnarlStyle::new();
    style.centering = Some(false);
    style.min_scale = Some(MIN_SCALE);
    style.max_scale = Some(MAX_SCALE);
    style.collapsible = Some(false);
    style.wire_width = Some(2.5);
    style.pin_size = Some(10.0);
    style.bg_pattern_stroke = Some(Stroke::new(
        1.0,
        ui.visuals()
            .widgets
            .noninteractive
            .bg_stroke
            .color
            .gamma_multiply(0.5),
    ));
    // Braid draws its own selection (the node's border); Snarl's would be a second one.
    style.select_style = Some(SelectionStyle {
        margin: egui::Margin::same(0),
        rounding: egui::CornerRadius::same(0),
        fill: Color32::TRANSPARENT,
        stroke: Stroke::NONE,
    });
    style.node_frame = Some(
        egui::Frame::window(ui.style())
            .inner_margin(egui::Margin::symmetric(8, 6))
            .corner_radius(6.0),
    );
    style
}

fn to_pos(p: Position) -> Pos2 {
    Pos2::new(p.x, p.y)
}

/// A position on the canvas (in graph space) as the project stores it.
fn position(x: f32, y: f32) -> Position {
    Position { x, y }
}

/// The worst status among a block's counts, for its colour on the canvas.
fn worst_status(counts: &BlockCounts) -> Option<S> {
    [
        (counts.failed, S::Exception),
        (counts.timed_out, S::TimedOut),
        (counts.caught, S::CaughtException),
        (counts.cancelled, S::Cancelled),
        (counts.running, S::Running),
        (counts.queued, S::Queued),
        (counts.succeeded, S::Succeeded),
    ]
    .into_iter()
    .filter(|(n, _)| *n > 0)
    .map(|(_, status)| status)
    .max_by_key(|status| status.severity())
}

/// `fan-out`, or `if x > 3` with the expression cut to `max` characters.
pub fn transition_text(kind: TransitionKind, expression: &str, max: usize) -> String {
    if kind != TransitionKind::If {
        return kind.label().to_owned();
    }
    let expression = expression.trim();
    if expression.is_empty() {
        return "if ?".to_owned();
    }
    format!("if {}", truncate(expression, max))
}

/// One line that says what a block does: its docstring or first comment, else its size.
pub fn block_summary(block: &Block) -> String {
    match &block.kind {
        BlockKind::Code(code) => {
            let described = code.code.lines().map(str::trim).find_map(|line| {
                let text = line
                    .strip_prefix('#')
                    .or_else(|| line.strip_prefix("\"\"\""))
                    .or_else(|| line.strip_prefix("'''"))?;
                let text = text
                    .trim_end_matches("\"\"\"")
                    .trim_end_matches("'''")
                    .trim();
                (!text.is_empty()).then(|| text.to_owned())
            });
            described.unwrap_or_else(|| {
                let lines = code.code.lines().filter(|l| !l.trim().is_empty()).count();
                format!(
                    "{} of {}",
                    crate::text::plural(lines as u64, "line"),
                    code.language.label()
                )
            })
        }
        _ => block.kind_label(),
    }
}

struct Viewer<'a> {
    app: &'a App,
    tx: &'a CommandSender,
    pins: &'a PinMap,
    dark: bool,
    impose: Option<TSTransform>,
    to_global: TSTransform,
    node_rects: BTreeMap<BlockId, Rect>,
    pin_positions: SharedPins,
    connection: Option<(BlockId, BlockId)>,
}

impl Viewer<'_> {
    fn block<'b>(&'b self, snarl: &Snarl<NodeData>, node: NodeId) -> Option<&'b Block> {
        let id = &snarl.get_node(node)?.block;
        self.app.project.block(id)
    }

    fn transition_at_output(&self, snarl: &Snarl<NodeData>, pin: OutPinId) -> Option<TransitionId> {
        let block = &snarl.get_node(pin.node)?.block;
        let index = *self.pins.outgoing(block).get(pin.output)?;
        Some(self.app.project.transitions.get(index)?.id.clone())
    }

    fn transition_at_input(&self, snarl: &Snarl<NodeData>, pin: InPinId) -> Option<TransitionId> {
        let block = &snarl.get_node(pin.node)?.block;
        let index = *self.pins.incoming(block).get(pin.input)?;
        Some(self.app.project.transitions.get(index)?.id.clone())
    }

    /// Pin `index` of a node (an output pin when `output`): its label, and how it is drawn.
    fn pin_ui(
        &mut self,
        ui: &mut Ui,
        snarl: &Snarl<NodeData>,
        node: NodeId,
        index: usize,
        output: bool,
    ) -> RecordingPin {
        let block = snarl
            .get_node(node)
            .map_or_else(|| BlockId("".into()), |n| n.block.clone());
        let pins = if output {
            self.pins.outgoing(&block)
        } else {
            self.pins.incoming(&block)
        };
        let transition = pins.get(index).copied();
        let color = self.pin_color(ui, transition);
        RecordingPin {
            info: pin_info(color, transition.is_some()),
            key: (block, index),
            output,
            sink: self.pin_positions.clone(),
        }
    }

    /// A pin's colour: its transition's, or the neutral colour of a free pin. Pins carry no text: the
    /// wire's label says what it is, and nodes stay narrow enough for the automatic layout.
    /// While an invocation is picked, wires off its item's path fade, so the path stands out.
    fn pin_color(&self, ui: &Ui, transition: Option<usize>) -> Color32 {
        let lineage = self
            .app
            .executions
            .picked
            .as_ref()
            .map(|p| &p.lineage_blocks);
        transition
            .and_then(|i| self.app.project.transitions.get(i))
            .map_or(ui.visuals().widgets.inactive.fg_stroke.color, |t| {
                let color = theme::transition_color(t.kind, self.dark);
                match lineage {
                    Some(blocks) if !(blocks.contains(&t.from) && blocks.contains(&t.to)) => {
                        color.gamma_multiply(0.3)
                    }
                    _ => color,
                }
            })
    }
}

/// A pin that remembers where it was drawn.
struct RecordingPin {
    info: PinInfo,
    key: (BlockId, usize),
    output: bool,
    sink: SharedPins,
}

impl SnarlPin for RecordingPin {
    fn draw(
        self,
        snarl_style: &SnarlStyle,
        style: &egui::Style,
        rect: Rect,
        painter: &egui::Painter,
    ) -> PinWireInfo {
        let mut sink = self.sink.borrow_mut();
        if self.output {
            sink.outputs.insert(self.key, rect.center());
        } else {
            sink.inputs.insert(self.key, rect.center());
        }
        self.info.draw(snarl_style, style, rect, painter)
    }
}

impl SnarlViewer<NodeData> for Viewer<'_> {
    fn title(&mut self, node: &NodeData) -> String {
        self.app.project.block_name(&node.block).to_owned()
    }

    fn show_header(
        &mut self,
        node: NodeId,
        _inputs: &[InPin],
        _outputs: &[OutPin],
        ui: &mut Ui,
        snarl: &mut Snarl<NodeData>,
    ) {
        let Some(block) = self.block(snarl, node) else {
            return;
        };
        ui.vertical(|ui| {
            ui.label(RichText::new(truncate(&block.name, 22)).strong().size(14.0));
            let kind = match &block.kind {
                BlockKind::Code(code) if code.language.is_runnable() => {
                    format!("{} · {} s", code.language.label(), code.timeout_s)
                }
                _ => block.kind_label(),
            };
            ui.label(RichText::new(kind).small().weak());
        });
    }

    fn inputs(&mut self, node: &NodeData) -> usize {
        self.pins.incoming(&node.block).len() + 1
    }

    fn outputs(&mut self, node: &NodeData) -> usize {
        self.pins.outgoing(&node.block).len() + 1
    }

    #[allow(refining_impl_trait)]
    fn show_input(
        &mut self,
        pin: &InPin,
        ui: &mut Ui,
        snarl: &mut Snarl<NodeData>,
    ) -> RecordingPin {
        self.pin_ui(ui, snarl, pin.id.node, pin.id.input, false)
    }

    #[allow(refining_impl_trait)]
    fn show_output(
        &mut self,
        pin: &OutPin,
        ui: &mut Ui,
        snarl: &mut Snarl<NodeData>,
    ) -> RecordingPin {
        self.pin_ui(ui, snarl, pin.id.node, pin.id.output, true)
    }

    fn has_body(&mut self, _node: &NodeData) -> bool {
        true
    }

    fn show_body(
        &mut self,
        node: NodeId,
        _inputs: &[InPin],
        _outputs: &[OutPin],
        ui: &mut Ui,
        snarl: &mut Snarl<NodeData>,
    ) {
        let Some(block) = self.block(snarl, node) else {
            return;
        };
        let dark = self.dark;
        ui.vertical(|ui| {
            ui.set_width(NODE_BODY_WIDTH);
            ui.label(RichText::new(truncate(&block_summary(block), 28)).small())
                .on_hover_text(block_summary(block));
            self.problems_ui(ui, block);
            self.counts_ui(ui, &block.id, dark);
        });
    }

    fn node_frame(
        &mut self,
        default: egui::Frame,
        node: NodeId,
        _inputs: &[InPin],
        _outputs: &[OutPin],
        snarl: &Snarl<NodeData>,
    ) -> egui::Frame {
        let Some(data) = snarl.get_node(node) else {
            return default;
        };
        let mut frame = default;
        if let Some(status) = self
            .app
            .canvas_counts()
            .and_then(|(counts, _)| counts.get(&data.block))
            .and_then(worst_status)
        {
            frame.stroke = Stroke::new(2.0, theme::status_color(status, self.dark));
        } else if self.block_has_error(&data.block) {
            frame.stroke = Stroke::new(1.5, theme::error_color(self.dark));
        }
        // The picked invocation's item path, through every block it went through.
        if self
            .app
            .executions
            .picked
            .as_ref()
            .is_some_and(|p| p.lineage_blocks.contains(&data.block))
        {
            frame.shadow = egui::Shadow {
                offset: [0, 0],
                blur: 14,
                spread: 3,
                color: theme::path_color(self.dark),
            };
        }
        if self.app.selection.blocks.contains(&data.block) {
            frame.stroke = Stroke::new(3.0, theme_accent(self.dark));
        }
        frame
    }

    fn final_node_rect(
        &mut self,
        node: NodeId,
        rect: Rect,
        _ui: &mut Ui,
        snarl: &mut Snarl<NodeData>,
    ) {
        if let Some(data) = snarl.get_node(node) {
            self.node_rects.insert(data.block.clone(), rect);
        }
    }

    fn has_graph_menu(&mut self, _pos: Pos2, _snarl: &mut Snarl<NodeData>) -> bool {
        true
    }

    fn show_graph_menu(&mut self, pos: Pos2, ui: &mut Ui, _snarl: &mut Snarl<NodeData>) {
        if ui.button("Add Code Block here").clicked() {
            self.tx.send(Edit::AddBlock {
                position: position(pos.x, pos.y),
                connect_from: None,
            });
            ui.close();
        }
        if ui.button("Select all").clicked() {
            self.tx.send(Select::All);
            ui.close();
        }
        ui.label(RichText::new("Paste with Ctrl+V").weak().small());
    }

    fn has_node_menu(&mut self, _node: &NodeData) -> bool {
        true
    }

    fn show_node_menu(
        &mut self,
        node: NodeId,
        _inputs: &[InPin],
        _outputs: &[OutPin],
        ui: &mut Ui,
        snarl: &mut Snarl<NodeData>,
    ) {
        let Some(id) = snarl.get_node(node).map(|n| n.block.clone()) else {
            return;
        };
        // The menu acts on the whole selection when the block is part of it.
        let targets: Vec<BlockId> = if self.app.selection.blocks.contains(&id) {
            self.app.selection.blocks.iter().cloned().collect()
        } else {
            vec![id.clone()]
        };
        if ui.button("Duplicate").clicked() {
            self.tx.send(Edit::DuplicateBlocks(targets.clone()));
            ui.close();
        }
        if ui.button("Run from here").clicked() {
            let options = RunOptions {
                from: Some(id.clone()),
                ..self.app.run_options.clone()
            };
            self.tx.send(RunCommand::Start(options));
            ui.close();
        }
        ui.separator();
        if ui.button("Delete").clicked() {
            self.tx.send(Edit::DeleteBlocks(targets));
            ui.close();
        }
    }

    fn has_dropped_wire_menu(&mut self, src_pins: AnyPins, _snarl: &mut Snarl<NodeData>) -> bool {
        matches!(src_pins, AnyPins::Out(_))
    }

    fn show_dropped_wire_menu(
        &mut self,
        pos: Pos2,
        ui: &mut Ui,
        src_pins: AnyPins,
        snarl: &mut Snarl<NodeData>,
    ) {
        let AnyPins::Out(pins) = src_pins else {
            return;
        };
        let Some(from) = pins
            .first()
            .and_then(|p| snarl.get_node(p.node))
            .map(|n| n.block.clone())
        else {
            return;
        };
        ui.label(RichText::new("New Code Block, connected by").weak());
        for kind in TransitionKind::ALL {
            let text = RichText::new(kind.label()).color(theme::transition_color(kind, self.dark));
            if ui
                .button(text)
                .on_hover_text(theme::transition_help(kind))
                .clicked()
            {
                self.tx.send(Edit::AddBlock {
                    position: position(pos.x, pos.y),
                    connect_from: Some((from.clone(), kind)),
                });
                ui.close();
            }
        }
    }

    fn connect(&mut self, from: &OutPin, to: &InPin, snarl: &mut Snarl<NodeData>) {
        let (Some(a), Some(b)) = (snarl.get_node(from.id.node), snarl.get_node(to.id.node)) else {
            return;
        };
        if a.block != b.block {
            self.connection = Some((a.block.clone(), b.block.clone()));
        }
    }

    fn disconnect(&mut self, from: &OutPin, _to: &InPin, snarl: &mut Snarl<NodeData>) {
        if let Some(id) = self.transition_at_output(snarl, from.id) {
            self.tx.send(Edit::DeleteTransition(id));
        }
    }

    fn drop_outputs(&mut self, pin: &OutPin, snarl: &mut Snarl<NodeData>) {
        if let Some(id) = self.transition_at_output(snarl, pin.id) {
            self.tx.send(Edit::DeleteTransition(id));
        }
    }

    fn drop_inputs(&mut self, pin: &InPin, snarl: &mut Snarl<NodeData>) {
        if let Some(id) = self.transition_at_input(snarl, pin.id) {
            self.tx.send(Edit::DeleteTransition(id));
        }
    }

    fn current_transform(&mut self, to_global: &mut TSTransform, _snarl: &mut Snarl<NodeData>) {
        if let Some(imposed) = self.impose.take() {
            *to_global = imposed;
        }
        self.to_global = *to_global;
    }
}

impl Viewer<'_> {
    fn block_has_error(&self, block: &BlockId) -> bool {
        self.app.compile_errors_of(block).next().is_some()
            || self.app.problems.iter().any(|p| {
                p.severity == Severity::Error && p.subject == Subject::Block(block.clone())
            })
    }

    fn problems_ui(&self, ui: &mut Ui, block: &Block) {
        for error in self.app.compile_errors_of(&block.id) {
            let text = match error.line {
                Some(line) => format!("✖ line {line}: {}", error.message),
                None => format!("✖ {}", error.message),
            };
            ui.label(
                RichText::new(truncate(&text, 28))
                    .small()
                    .color(theme::error_color(self.dark)),
            )
            .on_hover_text(text);
        }
        for problem in self
            .app
            .problems
            .iter()
            .filter(|p| p.subject == Subject::Block(block.id.clone()))
        {
            let mark = if problem.severity == Severity::Error {
                "✖"
            } else {
                "⚠"
            };
            let text = format!("{mark} {}", problem.message);
            ui.label(
                RichText::new(truncate(&text, 28))
                    .small()
                    .color(theme::severity_color(problem.severity, self.dark)),
            )
            .on_hover_text(text);
        }
    }

    fn counts_ui(&self, ui: &mut Ui, block: &BlockId, dark: bool) {
        let Some((counts, finished)) = self.app.canvas_counts() else {
            return;
        };
        if let Some(picked) = &self.app.executions.picked
            && let Some(record) = &picked.record
            && &record.block_id == block
        {
            ui.label(
                RichText::new(format!(
                    "▶ #{} {}",
                    record.id,
                    crate::text::item_path(&record.item_path)
                ))
                .small()
                .strong()
                .color(theme::path_color(dark)),
            );
        }
        // The runtime reports every block, so a block nothing reached has all-zero counts.
        let Some(counts) = counts.get(block).filter(|c| c.total() > 0) else {
            if finished {
                ui.label(RichText::new("not run").small().weak());
            }
            return;
        };
        ui.horizontal_wrapped(|ui| {
            ui.spacing_mut().item_spacing.x = 6.0;
            let parts = [
                (counts.queued, S::Queued, "queued"),
                (counts.running, S::Running, "running"),
                (counts.succeeded, S::Succeeded, "ok"),
                (counts.caught, S::CaughtException, "caught"),
                (counts.failed + counts.timed_out, S::Exception, "failed"),
                (counts.cancelled, S::Cancelled, "cancelled"),
            ];
            for (n, status, label) in parts {
                if n > 0 {
                    // A count moves to the next line whole, never "15" here and "ok" below.
                    ui.add(
                        egui::Label::new(
                            RichText::new(format!("{} {label}", crate::text::count(n)))
                                .strong()
                                .color(theme::status_color(status, dark)),
                        )
                        .extend(),
                    );
                }
            }
        });
    }
}

fn theme_accent(dark: bool) -> Color32 {
    if dark {
        Color32::from_rgb(90, 170, 255)
    } else {
        Color32::from_rgb(20, 110, 230)
    }
}

fn pin_info(color: Color32, connected: bool) -> PinInfo {
    let info = PinInfo::circle().with_wire_color(color);
    if connected {
        info.with_fill(color)
    } else {
        info.with_fill(Color32::TRANSPARENT)
            .with_stroke(Stroke::new(1.5, color))
    }
}

#[cfg(test)]
mod tests {
    use super::{BlockCounts, S, worst_status};
    use crate::model::{Block, Position};

    #[test]
    fn a_block_shows_its_worst_status() {
        let mut counts = BlockCounts {
            succeeded: 10,
            ..BlockCounts::default()
        };
        assert_eq!(worst_status(&counts), Some(S::Succeeded));
        counts.running = 1;
        assert_eq!(worst_status(&counts), Some(S::Running));
        counts.failed = 1;
        assert_eq!(worst_status(&counts), Some(S::Exception));
        assert_eq!(worst_status(&BlockCounts::default()), None);
    }

    #[test]
    fn a_block_without_a_comment_is_summed_up_by_its_size() {
        let block = |code: &str| Block::new_code("b", code, Position::default());
        assert_eq!(
            super::block_summary(&block("def main(block_input, backpack):\n    return 1\n")),
            "2 lines of Python"
        );
        assert_eq!(
            super::block_summary(&block("main = lambda block_input, backpack: 1\n")),
            "1 line of Python"
        );
        assert_eq!(
            super::block_summary(&block("# Doubles it\ndef main(b, p):\n    return b * 2\n")),
            "Doubles it"
        );
    }
}
