//! Checkpoints: the runs folder as a list; load a run into the Sample view, read its config
//! and curves, export it, delete it (after confirmation).

use std::path::PathBuf;

use eframe::egui;

use crate::train::metrics_log::{self, LossCurves};

use super::dialogs::PickPurpose;
use super::style;
use super::{FlmApp, View};
use crate::train::{ModelKind, RunListing, delete_run, list_runs};

pub struct CheckpointsState {
    pub root: PathBuf,
    pub runs: Vec<RunListing>,
    pub selected: Option<PathBuf>,
    /// The run awaiting "really delete?".
    pub confirm_delete: Option<PathBuf>,
    pub exporting: bool,
    /// Loss curves of the selected run, read from its metrics.jsonl.
    curves: Option<(PathBuf, LossCurves)>,
    list_error: Option<String>,
}

impl CheckpointsState {
    pub fn new(root: PathBuf) -> Self {
        Self {
            root,
            runs: Vec::new(),
            selected: None,
            confirm_delete: None,
            exporting: false,
            curves: None,
            list_error: None,
        }
    }

    pub fn busy(&self) -> bool {
        self.exporting
    }

    /// Re-reads the runs folder (cheap: configs and state files only).
    pub fn refresh(&mut self) {
        match list_runs(&self.root) {
            Ok(runs) => {
                self.runs = runs;
                self.list_error = None;
            }
            Err(error) => {
                self.runs.clear();
                self.list_error = Some(error.to_string());
            }
        }
        if let Some(selected) = &self.selected
            && !self.runs.iter().any(|r| &r.dir == selected)
        {
            self.selected = None;
        }
    }

    fn selected_run(&self) -> Option<&RunListing> {
        let selected = self.selected.as_ref()?;
        self.runs.iter().find(|r| &r.dir == selected)
    }
}

impl FlmApp {
    pub(super) fn checkpoints_view(&mut self, ui: &mut egui::Ui) {
        ui.horizontal(|ui| {
            ui.heading("Runs");
            ui.monospace(self.checkpoints.root.display().to_string());
            if ui.button("📂 Change folder…").clicked() {
                self.jobs.pick(
                    PickPurpose::RunsFolder,
                    "Choose the folder that holds your runs",
                );
            }
            if ui.button("⟳ Refresh").clicked() {
                self.checkpoints.refresh();
            }
        });
        if let Some(error) = &self.checkpoints.list_error {
            ui.colored_label(style::ERROR_TEXT, error);
        }
        if self.checkpoints.runs.is_empty() {
            ui.weak("No runs yet: train one in the Train view.");
        }
        ui.columns(2, |columns| {
            self.run_table(&mut columns[0]);
            self.run_details(&mut columns[1]);
        });
        self.delete_confirmation(ui);
    }

    fn run_table(&mut self, ui: &mut egui::Ui) {
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
                    for run in &self.checkpoints.runs {
                        let selected = self.checkpoints.selected.as_ref() == Some(&run.dir);
                        if ui.selectable_label(selected, &run.name).clicked() {
                            self.checkpoints.selected = Some(run.dir.clone());
                        }
                        ui.label(match &run.config {
                            Ok(c) => kind_name(c.kind),
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

    fn run_details(&mut self, ui: &mut egui::Ui) {
        let Some(run) = self.checkpoints.selected_run().cloned() else {
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
                self.sample.model = Some(run.dir.clone());
                self.view = View::Sample;
            }
            if ui
                .add_enabled(
                    run.has_weights() && !self.checkpoints.exporting,
                    egui::Button::new("📦 Export…"),
                )
                .on_hover_text(
                    "Write config.json, tokenizer.json and model.safetensors to a folder",
                )
                .clicked()
            {
                self.jobs.pick(
                    PickPurpose::ExportFolder,
                    "Choose a folder to export the model into",
                );
            }
            if ui.button("🗑 Delete…").clicked() {
                self.checkpoints.confirm_delete = Some(run.dir.clone());
            }
        });
        if self.checkpoints.exporting {
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
                    row("kind", kind_name(config.kind).into());
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
        if self.checkpoints.curves.as_ref().map(|(dir, _)| dir) != Some(&run.dir) {
            let lines = metrics_log::read(&crate::train::RunDir::new(&run.dir).metrics_path());
            self.checkpoints.curves = Some((run.dir.clone(), LossCurves::from_lines(&lines)));
        }
        if let Some((_, curves)) = &self.checkpoints.curves {
            super::train_view::loss_curves(ui, "run", &curves.train, &curves.valid, 180.0);
        }
    }

    /// Exports the selected run into `dest` on a worker thread.
    pub fn export_selected_to(&mut self, dest: PathBuf) {
        let Some(run) = self.checkpoints.selected.clone() else {
            return;
        };
        self.checkpoints.exporting = true;
        self.jobs.export(run, dest);
    }

    fn delete_confirmation(&mut self, ui: &mut egui::Ui) {
        let Some(dir) = self.checkpoints.confirm_delete.clone() else {
            return;
        };
        let in_use = [&self.train.flm, &self.train.distill]
            .into_iter()
            .flatten()
            .any(|s| s.running() && s.run_dir.as_ref() == Some(&dir));
        let modal = egui::Modal::new(egui::Id::unique("confirm-delete")).show(ui.ctx(), |ui| {
            ui.heading("Delete this run?");
            ui.monospace(dir.display().to_string());
            ui.label("Its checkpoints, tokenizer and metrics are removed from disk. This cannot be undone.");
            if in_use {
                ui.colored_label(style::ERROR_TEXT, "It is training right now: stop it first.");
            }
            ui.horizontal(|ui| {
                if ui.add_enabled(!in_use, egui::Button::new("Delete")).clicked() {
                    match delete_run(&dir) {
                        Ok(()) => self.notices.push(format!("deleted {}", dir.display())),
                        Err(error) => self.errors.push(format!("could not delete: {error}")),
                    }
                    self.checkpoints.confirm_delete = None;
                    self.checkpoints.refresh();
                }
                if ui.button("Cancel").clicked() {
                    self.checkpoints.confirm_delete = None;
                }
            });
        });
        if modal.should_close() {
            self.checkpoints.confirm_delete = None;
        }
    }
}

fn kind_name(kind: ModelKind) -> &'static str {
    match kind {
        ModelKind::Flm => "FLM",
        ModelKind::FlowMap => "FMLM",
        ModelKind::Autoregressive => "AR reference",
    }
}
