//! Checkpoints: the runs folder as a list; load a run into the Sample view, read its config
//! and curves, export it, delete it (after confirmation).

use std::path::{Path, PathBuf};

use eframe::egui;

use super::commands::{AppCommand, RunsFolder, ViewContext};
use super::dialogs::PickPurpose;
use super::labelled;
use super::style;
use super::training_session::loss_curves;
use crate::import::ImportOptions;
use crate::train::metrics_log::LossCurves;
use crate::train::{ModelKind, RunListing, WeightSet};

/// The Checkpoints view: which run is selected and what is being done to it. The listing
/// itself is the app's ([`RunsFolder`]), read by a job.
#[derive(Default)]
pub struct CheckpointsView {
    pub selected: Option<PathBuf>,
    /// The run awaiting "really delete?".
    pub confirm_delete: Option<PathBuf>,
    pub exporting: bool,
    pub deleting: bool,
    pub import: ImportForm,
    /// The runs folder and the export folder as typed (a path field beside each dialog).
    pub root_input: String,
    pub export_input: String,
    /// The selected run's loss curves: `None` while its metrics are being read.
    curves: Option<(PathBuf, Option<LossCurves>)>,
}

/// Import…: the paper's released checkpoint (or an official-layout folder) and its tokenizer,
/// typed or picked.
#[derive(Default)]
pub struct ImportForm {
    pub open: bool,
    pub from: String,
    pub tokenizer: String,
    /// 0: read from the checkpoint.
    pub heads: usize,
    /// 0: the released models' length (128 for LM1B, 1024 for OpenWebText).
    pub seq_len: usize,
    pub online_weights: bool,
    pub importing: bool,
}

impl ImportForm {
    fn ui(&mut self, ui: &mut egui::Ui, ctx: &mut ViewContext<'_>) {
        ui.label(
            "The paper's released models (lm1b_flm.ckpt, owt_fmlm.ckpt, …) with their Hugging Face \
             tokenizer.json (bert-base-uncased for LM1B, gpt2 for OpenWebText).",
        );
        egui::Grid::new("import-form")
            .num_columns(2)
            .show(ui, |ui| {
                path_row(
                    ui,
                    ctx,
                    "Checkpoint",
                    &mut self.from,
                    PickPurpose::ImportCheckpoint,
                );
                ui.end_row();
                path_row(
                    ui,
                    ctx,
                    "tokenizer.json",
                    &mut self.tokenizer,
                    PickPurpose::ImportTokenizer,
                );
                ui.end_row();
                labelled(
                    ui,
                    "Attention heads",
                    super::auto_or_count(&mut self.heads, 128),
                )
                .on_hover_text(
                    "auto: implied by the checkpoint's rotary buffer; 12 for the released models",
                );
                ui.end_row();
                labelled(
                    ui,
                    "Sequence length",
                    super::auto_or_count(&mut self.seq_len, 8192),
                )
                .on_hover_text(
                    "The length it was trained with (model.length); auto knows the released models",
                );
                ui.end_row();
                ui.label("Weights");
                ui.checkbox(&mut self.online_weights, "online instead of EMA")
                    .on_hover_text("The paper samples with the EMA weights");
                ui.end_row();
            });
        ui.horizontal(|ui| {
            let ready = !self.from.trim().is_empty() && !self.importing;
            if ui
                .add_enabled(ready, egui::Button::new("⬇ Import"))
                .on_disabled_hover_text("Choose a checkpoint first")
                .clicked()
            {
                let typed = |text: &str| {
                    let text = text.trim();
                    (!text.is_empty()).then(|| std::path::PathBuf::from(text))
                };
                ctx.send(AppCommand::Import {
                    from: std::path::PathBuf::from(self.from.trim()),
                    options: ImportOptions {
                        tokenizer: typed(&self.tokenizer),
                        weights: if self.online_weights {
                            WeightSet::Online
                        } else {
                            WeightSet::Ema
                        },
                        heads: (self.heads > 0).then_some(self.heads),
                        seq_len: (self.seq_len > 0).then_some(self.seq_len),
                    },
                });
            }
            if self.importing {
                style::busy(ui);
                ui.label("importing…");
            }
        });
    }
}

/// A path typed or pasted (desktops without a dialog portal), or picked with 📂.
fn path_row(
    ui: &mut egui::Ui,
    ctx: &mut ViewContext<'_>,
    caption: &'static str,
    text: &mut String,
    purpose: PickPurpose,
) {
    let label = ui.label(caption);
    ui.horizontal(|ui| {
        ui.add(
            egui::TextEdit::singleline(text)
                .font(egui::TextStyle::Monospace)
                .desired_width(420.0),
        )
        .labelled_by(label.id);
        if ui.button("📂").on_hover_text("Choose a file").clicked() {
            ctx.send(AppCommand::Pick {
                purpose,
                title: caption,
            });
        }
    });
}

impl CheckpointsView {
    pub fn busy(&self) -> bool {
        self.exporting || self.deleting || self.import.importing
    }

    /// A fresh listing arrived: forget a selection that is gone.
    pub(super) fn listed(&mut self, runs: &[RunListing]) {
        if let Some(selected) = &self.selected
            && !runs.iter().any(|r| &r.dir == selected)
        {
            self.selected = None;
        }
    }

    pub(super) fn curves_loaded(&mut self, dir: &Path, curves: LossCurves) {
        if let Some((wanted, slot)) = &mut self.curves
            && wanted == dir
        {
            *slot = Some(curves);
        }
    }

    pub fn ui(&mut self, ui: &mut egui::Ui, ctx: &mut ViewContext<'_>) {
        let runs: &RunsFolder = ctx.runs;
        ui.horizontal(|ui| {
            ui.heading("Runs");
            let field = ui
                .add(
                    egui::TextEdit::singleline(&mut self.root_input)
                        .desired_width(360.0)
                        .font(egui::TextStyle::Monospace),
                )
                .on_hover_text("Type or paste a folder and press Enter, or use Change folder…");
            if let Some(path) = typed_path(ui, &field, &self.root_input) {
                ctx.send(AppCommand::Typed {
                    purpose: PickPurpose::RunsFolder,
                    path,
                });
            }
            if !field.has_focus() {
                self.root_input = runs.root.display().to_string();
            }
            if ui.button("📂 Change folder…").clicked() {
                ctx.send(AppCommand::Pick {
                    purpose: PickPurpose::RunsFolder,
                    title: "Choose the folder that holds your runs",
                });
            }
            if ui.button("⟳ Refresh").clicked() {
                ctx.send(AppCommand::RefreshRuns);
            }
            ui.toggle_value(&mut self.import.open, "⬇ Import…")
                .on_hover_text("Open the paper's released checkpoints as runs");
            if runs.listing {
                style::busy(ui);
            }
        });
        if self.import.open {
            egui::Frame::group(ui.style()).show(ui, |ui| self.import.ui(ui, ctx));
        }
        if let Some(error) = &runs.error {
            ui.colored_label(style::ERROR_TEXT, error);
        }
        if runs.list.is_empty() && !runs.listing {
            ui.weak("No runs yet: train one in the Train view.");
        }
        ui.columns(2, |columns| {
            self.run_table(&mut columns[0], &runs.list);
            self.run_details(&mut columns[1], ctx);
        });
        self.delete_confirmation(ui, ctx);
    }

    fn run_table(&mut self, ui: &mut egui::Ui, runs: &[RunListing]) {
        egui::ScrollArea::vertical().id_salt("runs").show(ui, |ui| {
            egui::Grid::new("runs-grid")
                .striped(true)
                .num_columns(4)
                .show(ui, |ui| {
                    ui.strong("run");
                    ui.strong("kind");
                    ui.strong("step");
                    ui.strong("valid loss");
                    ui.end_row();
                    for run in runs {
                        let selected = self.selected.as_ref() == Some(&run.dir);
                        if ui.selectable_label(selected, &run.name).clicked() {
                            self.selected = Some(run.dir.clone());
                        }
                        ui.label(match &run.config {
                            Ok(c) => c.kind.short_name(),
                            Err(_) => "unreadable",
                        });
                        ui.label(
                            run.state
                                .as_ref()
                                .map_or("-".into(), |s| s.step.to_string()),
                        );
                        ui.label(
                            run.state
                                .as_ref()
                                .and_then(|s| s.last_valid_loss)
                                .map_or("-".into(), |l| format!("{l:.4}")),
                        );
                        ui.end_row();
                    }
                });
        });
    }

    fn run_details(&mut self, ui: &mut egui::Ui, ctx: &mut ViewContext<'_>) {
        let selected = self.selected.as_ref();
        let Some(run) = ctx.runs.list.iter().find(|r| Some(&r.dir) == selected) else {
            ui.weak("Select a run to see its settings, curves and actions.");
            return;
        };
        ui.heading(&run.name);
        ui.horizontal(|ui| {
            let sampleable = run.has_weights()
                && matches!(&run.config, Ok(c) if c.kind != ModelKind::Autoregressive);
            if ui
                .add_enabled(sampleable, egui::Button::new("✨ Sample it"))
                .on_disabled_hover_text("No weights yet, or a reference model")
                .clicked()
            {
                ctx.send(AppCommand::OpenInSample(run.dir.clone()));
            }
            if ui
                .add_enabled(
                    run.has_weights() && !self.exporting,
                    egui::Button::new("📦 Export…"),
                )
                .on_hover_text(
                    "Write config.json, tokenizer.json and model.safetensors to a folder",
                )
                .clicked()
            {
                ctx.send(AppCommand::Pick {
                    purpose: PickPurpose::ExportFolder,
                    title: "Choose a folder to export the model into",
                });
            }
            let field = ui
                .add_enabled(
                    run.has_weights() && !self.exporting,
                    egui::TextEdit::singleline(&mut self.export_input)
                        .hint_text("…or type a folder, Enter")
                        .desired_width(220.0),
                )
                .on_hover_text("Export into this folder when you press Enter");
            if let Some(path) = typed_path(ui, &field, &self.export_input) {
                ctx.send(AppCommand::Typed {
                    purpose: PickPurpose::ExportFolder,
                    path,
                });
            }
            if ui.button("🗑 Delete…").clicked() {
                self.confirm_delete = Some(run.dir.clone());
            }
        });
        if self.exporting {
            ui.horizontal(|ui| {
                style::busy(ui);
                ui.label("exporting…");
            });
        }
        match &run.config {
            Ok(config) => {
                egui::Grid::new("run-facts").num_columns(2).show(ui, |ui| {
                    let mut row = |name: &str, value: String| {
                        ui.label(name);
                        ui.monospace(value);
                        ui.end_row();
                    };
                    row("kind", config.kind.short_name().into());
                    row("data", config.data.source.clone());
                    row(
                        "model",
                        format!(
                            "d={} · {} blocks · V={} · L={} · {:.2} M parameters",
                            config.model.d_model,
                            config.model.n_blocks,
                            config.model.vocab_size,
                            config.model.seq_len,
                            config.model.num_params() as f64 / 1e6
                        ),
                    );
                    if let Some(state) = &run.state {
                        row("steps", state.step.to_string());
                        row(
                            "trained for",
                            format!("{:.1} min", state.elapsed_secs / 60.0),
                        );
                        row(
                            "last losses",
                            format!(
                                "train {} · valid {}",
                                state
                                    .last_train_loss
                                    .map_or("-".into(), |l| format!("{l:.4}")),
                                state
                                    .last_valid_loss
                                    .map_or("-".into(), |l| format!("{l:.4}"))
                            ),
                        );
                    }
                });
                egui::CollapsingHeader::new("config.json").show(ui, |ui| {
                    let text = serde_json::to_string_pretty(config).unwrap_or_default();
                    egui::ScrollArea::vertical()
                        .max_height(200.0)
                        .show(ui, |ui| ui.monospace(text));
                });
            }
            Err(error) => {
                ui.colored_label(style::ERROR_TEXT, error);
            }
        }
        match &self.curves {
            Some((dir, Some(curves))) if *dir == run.dir => {
                loss_curves(ui, "run", &curves.train, &curves.valid, 180.0);
            }
            Some((dir, None)) if *dir == run.dir => {
                style::busy(ui);
            }
            _ => {
                self.curves = Some((run.dir.clone(), None));
                ctx.send(AppCommand::LoadCurves(run.dir.clone()));
            }
        }
    }

    fn delete_confirmation(&mut self, ui: &mut egui::Ui, ctx: &mut ViewContext<'_>) {
        let Some(dir) = self.confirm_delete.clone() else {
            return;
        };
        let in_use = ctx.runs_in_use.contains(&dir);
        let modal = egui::Modal::new(egui::Id::unique("confirm-delete")).show(ui.ctx(), |ui| {
            ui.heading("Delete this run?");
            ui.monospace(dir.display().to_string());
            ui.label("Its checkpoints, tokenizer and metrics are removed from disk. This cannot be undone.");
            if in_use {
                ui.colored_label(style::ERROR_TEXT, "It is training right now: stop it first.");
            }
            ui.horizontal(|ui| {
                if ui.add_enabled(!in_use, egui::Button::new("Delete")).clicked() {
                    self.deleting = true;
                    ctx.send(AppCommand::Delete(dir.clone()));
                    self.confirm_delete = None;
                }
                if ui.button("Cancel").clicked() {
                    self.confirm_delete = None;
                }
            });
        });
        if modal.should_close() {
            self.confirm_delete = None;
        }
    }
}

/// The path in `text` when the person pressed Enter in `field` (nothing for an empty field).
fn typed_path(ui: &egui::Ui, field: &egui::Response, text: &str) -> Option<PathBuf> {
    let entered = field.lost_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter));
    let text = text.trim();
    (entered && !text.is_empty()).then(|| PathBuf::from(text))
}
