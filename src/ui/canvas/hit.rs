//! What a click or a drag on the canvas means: blocks dragged (every selected block follows), Snarl's
//! rectangle selection adopted as Braid's, and clicks on blocks, transitions and the empty canvas: the
//! one place that decides what a click or a right-click means.

use std::collections::BTreeSet;

use egui::{Pos2, Ui, Vec2};

use super::menus::CanvasMenu;
use super::{CanvasView, position, to_pos};
use crate::app::{App, CommandSender, Edit, Select};
use crate::model::{BlockId, TransitionId};

impl CanvasView {
    /// Blocks the user dragged: Snarl moved one node (or its own selection); every selected block
    /// follows, and the new positions go to the project.
    pub(super) fn moved_blocks(&self, app: &App, tx: &CommandSender) {
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
    pub(super) fn follow_snarl_selection(&mut self, ui: &Ui, app: &App, tx: &CommandSender) {
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

    /// What is under a point of the canvas (graph space), for a click: a wire's label (labels sit on
    /// their wires, over everything), a transition Snarl found under the pointer (its wire or a pin of
    /// it), the topmost block (anywhere on it: title, text, frame), else the empty canvas.
    fn target_at(&self, app: &App, graph: Pos2, snarl_transition: Option<TransitionId>) -> Target {
        if let Some((id, _)) = self.label_rects.iter().find(|(_, r)| r.contains(graph)) {
            return Target::Transition(id.clone());
        }
        if let Some(id) = snarl_transition {
            return Target::Transition(id);
        }
        // Later blocks are drawn on top.
        app.project
            .blocks
            .iter()
            .rev()
            .find(|b| {
                self.node_rects
                    .get(&b.id)
                    .is_some_and(|r| r.contains(graph))
            })
            .map_or(Target::Canvas, |b| Target::Block(b.id.clone()))
    }

    /// The one place that says what a click means. Primary: a block is selected (Ctrl toggles,
    /// Shift adds), a label selects its transition, the empty canvas clears the selection. Secondary:
    /// whatever is under the pointer is selected and its menu opens.
    pub(super) fn clicks(
        &mut self,
        ui: &Ui,
        app: &App,
        tx: &CommandSender,
        snarl_transition: Option<TransitionId>,
    ) {
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
        let target = self.target_at(app, graph, snarl_transition);
        if secondary {
            let menu = match target {
                Target::Transition(id) => {
                    tx.send(Select::Transition(id.clone()));
                    CanvasMenu::Transition(id)
                }
                Target::Block(id) => {
                    // A right-click on a block of the selection keeps the selection (the menu acts
                    // on all of it); on another block it selects that one.
                    if !app.selection.blocks.contains(&id) {
                        tx.send(Select::Blocks(vec![id.clone()]));
                    }
                    CanvasMenu::Block(id)
                }
                Target::Canvas => CanvasMenu::Canvas(position(graph.x, graph.y)),
            };
            self.open_menu(ctx, menu, pointer);
            return;
        }
        match target {
            Target::Transition(id) => tx.send(Select::Transition(id)),
            Target::Block(id) if modifiers.command => tx.send(Select::Toggle(id)),
            Target::Block(id) if modifiers.shift => {
                let mut blocks = app.selection.blocks.clone();
                blocks.insert(id);
                tx.send(Select::Blocks(blocks.into_iter().collect()));
            }
            Target::Block(id) => tx.send(Select::Blocks(vec![id])),
            Target::Canvas if !modifiers.command && !modifiers.shift => tx.send(Select::Clear),
            Target::Canvas => {}
        }
    }
}

/// What a click lands on.
#[derive(Clone, Debug, PartialEq)]
enum Target {
    Transition(TransitionId),
    Block(BlockId),
    Canvas,
}
