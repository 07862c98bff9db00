//! The canvas's menus: right-click on the canvas or a block, a wire dropped on the empty canvas, and
//! the transition-type picker (for a wire just dragged between two blocks, or a label right-clicked).

use egui::{Id, Pos2, RichText, Ui, Vec2};

use super::viewer::Viewer;
use super::{CanvasView, position};
use crate::app::{App, CommandSender, Edit, RunCommand, RunOptions, Select};
use crate::model::{BlockId, TransitionId, TransitionKind};
use crate::ui::theme;

/// A small menu of transition types at the pointer.
#[derive(Clone, Debug)]
pub(super) enum Picker {
    /// A wire was dragged between two blocks: which type is it?
    Connect { from: BlockId, to: BlockId },
    /// A wire label was right-clicked: change its type, or delete it.
    Change(TransitionId),
}

impl CanvasView {
    /// The transition-type menu: for a wire just dragged, or a wire label right-clicked.
    pub(super) fn picker_ui(&mut self, ui: &Ui, app: &App, tx: &CommandSender) {
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

impl Viewer<'_> {
    /// Right-click on the empty canvas.
    pub(super) fn graph_menu_ui(&self, pos: Pos2, ui: &mut Ui) {
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

    /// Right-click on a block.
    pub(super) fn node_menu_ui(&self, id: &BlockId, ui: &mut Ui) {
        // The menu acts on the whole selection when the block is part of it.
        let targets: Vec<BlockId> = if self.app.selection.blocks.contains(id) {
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

    /// A wire dragged from `from` and dropped on the empty canvas: a new block, connected.
    pub(super) fn dropped_wire_menu_ui(&self, pos: Pos2, ui: &mut Ui, from: &BlockId) {
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
}
