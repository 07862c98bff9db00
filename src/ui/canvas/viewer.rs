//! egui-snarl's viewer for Braid's canvas: a node's header and body, its pins (one per transition, plus
//! a free one to drag from), its frame (status, errors, the picked invocation's path, the selection),
//! and what connecting, disconnecting and dropping wires ask of the project.

use std::collections::BTreeMap;

use egui::emath::TSTransform;
use egui::{Color32, Pos2, Rect, RichText, Stroke, Ui};
use egui_snarl::ui::{AnyPins, PinInfo, PinWireInfo, SnarlPin, SnarlStyle, SnarlViewer};
use egui_snarl::{InPin, InPinId, NodeId, OutPin, OutPinId, Snarl};

use super::paint::{block_summary, pin_info, theme_accent, worst_status};
use super::{NODE_BODY_WIDTH, NodeData, PinMap, SharedPins};
use crate::app::App;
use crate::model::{Block, BlockId, BlockKind, TransitionId};
use crate::text::truncate;
use crate::ui::theme;

pub(super) struct Viewer<'a> {
    pub(super) app: &'a App,
    pub(super) pins: &'a PinMap,
    pub(super) dark: bool,
    pub(super) impose: Option<TSTransform>,
    pub(super) to_global: TSTransform,
    pub(super) node_rects: BTreeMap<BlockId, Rect>,
    pub(super) pin_positions: SharedPins,
    pub(super) connection: Option<(BlockId, BlockId)>,
    /// A transition whose wire or pin was right-clicked (Snarl reports those as disconnecting; Braid
    /// opens the transition's menu instead).
    pub(super) transition_clicked: Option<TransitionId>,
    /// A wire dragged from this block and dropped on the empty canvas.
    pub(super) dropped_wire: Option<BlockId>,
}

/// A node's name, in points at 100 %.
const TITLE_SIZE: f32 = 15.0;
/// A node's other text (its kind, summary, problems, counts), in points at 100 %.
const TEXT_SIZE: f32 = 12.0;
/// The smallest text, in screen pixels, a node shows: below it (a large pipeline fitted into view) a
/// node keeps its name and counts and leaves out the lines that could not be read anyway.
const SMALLEST_TEXT_PX: f32 = 9.0;

impl Viewer<'_> {
    /// Whether the zoom leaves a node's smaller text readable.
    fn detailed(&self) -> bool {
        TEXT_SIZE * self.to_global.scaling >= SMALLEST_TEXT_PX
    }

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
pub(super) struct RecordingPin {
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
        let detailed = self.detailed();
        ui.vertical(|ui| {
            ui.label(
                RichText::new(truncate(&block.name, 22))
                    .strong()
                    .size(TITLE_SIZE),
            );
            if detailed {
                let kind = match &block.kind {
                    BlockKind::Code(code) if code.language.is_runnable() => {
                        format!("{} · {} s", code.language.label(), code.timeout_s)
                    }
                    _ => block.kind_label(),
                };
                ui.label(RichText::new(kind).size(TEXT_SIZE).weak());
            }
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
        let detailed = self.detailed();
        ui.vertical(|ui| {
            ui.set_width(NODE_BODY_WIDTH);
            ui.style_mut().override_font_id = Some(egui::FontId::proportional(TEXT_SIZE));
            if detailed {
                // One line, cut at the node's width (the hover has all of it).
                ui.add(
                    egui::Label::new(block_summary(block))
                        .truncate()
                        .show_tooltip_when_elided(false),
                )
                .on_hover_text(block_summary(block));
                self.problems_ui(ui, block);
            }
            self.served_ui(ui, &block.id, dark);
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

    // Braid draws every canvas menu itself (`menus.rs`), so that one place (`hit.rs`) decides what a
    // right-click means wherever it lands on a block; Snarl's menus open only on a node's bare frame.
    fn has_graph_menu(&mut self, _pos: Pos2, _snarl: &mut Snarl<NodeData>) -> bool {
        false
    }

    fn has_node_menu(&mut self, _node: &NodeData) -> bool {
        false
    }

    /// A wire dropped on the empty canvas: Braid's own menu offers the new block (Snarl's would
    /// repaint every frame while open).
    fn has_dropped_wire_menu(&mut self, src_pins: AnyPins, snarl: &mut Snarl<NodeData>) -> bool {
        if let AnyPins::Out(pins) = src_pins {
            self.dropped_wire = pins
                .first()
                .and_then(|p| snarl.get_node(p.node))
                .map(|n| n.block.clone());
        }
        false
    }

    fn connect(&mut self, from: &OutPin, to: &InPin, snarl: &mut Snarl<NodeData>) {
        let (Some(a), Some(b)) = (snarl.get_node(from.id.node), snarl.get_node(to.id.node)) else {
            return;
        };
        if a.block != b.block {
            self.connection = Some((a.block.clone(), b.block.clone()));
        }
    }

    // Snarl disconnects a wire (or a pin's wires) on a right-click; in Braid a right-click opens the
    // transition's menu, whose Delete removes it.
    fn disconnect(&mut self, from: &OutPin, _to: &InPin, snarl: &mut Snarl<NodeData>) {
        self.transition_clicked = self.transition_at_output(snarl, from.id);
    }

    fn drop_outputs(&mut self, pin: &OutPin, snarl: &mut Snarl<NodeData>) {
        self.transition_clicked = self.transition_at_output(snarl, pin.id);
    }

    fn drop_inputs(&mut self, pin: &InPin, snarl: &mut Snarl<NodeData>) {
        self.transition_clicked = self.transition_at_input(snarl, pin.id);
    }

    fn current_transform(&mut self, to_global: &mut TSTransform, _snarl: &mut Snarl<NodeData>) {
        if let Some(imposed) = self.impose.take() {
            *to_global = imposed;
        }
        self.to_global = *to_global;
    }
}
