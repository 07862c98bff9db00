//! What a click or a drag on the canvas means: blocks dragged (every selected block follows), Snarl's
//! rectangle selection adopted as Braid's, and clicks on nodes, wire labels and the empty canvas.

use std::collections::BTreeSet;

use egui::{Ui, Vec2};

use super::menus::Picker;
use super::{CanvasView, position, to_pos};
use crate::app::{App, CommandSender, Edit, Select};
use crate::model::BlockId;

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

    /// A click on a node selects it (Ctrl toggles, Shift adds); on a wire label, selects the
    /// transition; on the empty canvas, clears the selection.
    pub(super) fn clicks(&mut self, ui: &Ui, app: &App, tx: &CommandSender) {
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
}
