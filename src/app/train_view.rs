//! View 2, Train: train an FLM on the chosen data with live curves, then distill it into a
//! flow map (FMLM) from the same view. Runs keep going when the user switches views.

use std::path::PathBuf;
use std::sync::mpsc::Receiver;

use eframe::egui;

use super::commands::{AppCommand, ViewContext};
use super::jobs::{TrainingSlot, TrainingStart};
use super::training_session::{
    TrainDuration, TrainingSession, duration_input, minutes_of, run_controls, session_panel,
    steps_of,
};
use super::{labelled, run_name};
use crate::flow::distill::{BoundaryTarget, DistillSettings, SecondTimeInit};
use crate::flow::flow_map::Midpoint;
use crate::model::ModelPreset;
use crate::train::{
    DistillRequest, ModelKind, NewModelKind, RunControl, TrainConfig, TrainEvent, TrainRequest,
    TrainSummary, data_stem,
};

/// The Train form.
#[derive(Debug, Clone)]
pub struct TrainForm {
    pub preset: ModelPreset,
    /// 0: the default (128 for text, 32 for built-in tasks).
    pub seq_len: usize,
    pub batch_size: usize,
    pub learning_rate: f64,
    pub duration: TrainDuration,
}

impl Default for TrainForm {
    fn default() -> Self {
        let defaults = TrainConfig::default();
        Self {
            preset: ModelPreset::Tiny,
            seq_len: 0,
            batch_size: defaults.batch_size,
            learning_rate: defaults.learning_rate,
            duration: TrainDuration::Minutes(5.0),
        }
    }
}

/// The Distill form.
#[derive(Debug, Clone)]
pub struct DistillForm {
    /// The FLM run to distill; the run trained in this session by default.
    pub teacher: Option<PathBuf>,
    pub duration: TrainDuration,
    /// The objective's settings: the recommended recipe, with what the form changes.
    pub settings: DistillSettings,
}

impl Default for DistillForm {
    fn default() -> Self {
        Self {
            teacher: None,
            duration: TrainDuration::Minutes(5.0),
            settings: DistillSettings::recommended(),
        }
    }
}

/// The Train view: both forms and the two runs it follows.
#[derive(Default)]
pub struct TrainView {
    pub form: TrainForm,
    pub distill_form: DistillForm,
    pub flm: Option<TrainingSession>,
    pub distill: Option<TrainingSession>,
}

/// Preview samples and validation come this often in app runs: the user is watching.
const APP_PREVIEW_EVERY: u64 = 100;
/// Loss points come this often, for curves that move while the user watches.
const APP_LOG_EVERY: u64 = 5;

impl TrainView {
    pub fn busy(&self) -> bool {
        self.sessions().any(|(_, s)| s.running())
    }

    fn sessions(&self) -> impl Iterator<Item = (TrainingSlot, &TrainingSession)> {
        [
            (TrainingSlot::Flm, &self.flm),
            (TrainingSlot::Distill, &self.distill),
        ]
        .into_iter()
        .filter_map(|(slot, s)| s.as_ref().map(|s| (slot, s)))
    }

    fn slot(&mut self, slot: TrainingSlot) -> &mut Option<TrainingSession> {
        match slot {
            TrainingSlot::Flm => &mut self.flm,
            TrainingSlot::Distill => &mut self.distill,
        }
    }

    /// Run folders being written right now: not to be deleted.
    pub fn runs_in_use(&self) -> Vec<PathBuf> {
        self.sessions()
            .filter(|(_, s)| s.running())
            .filter_map(|(_, s)| s.run_dir.clone())
            .collect()
    }

    /// Drains training events into the sessions (every frame, whatever the view).
    pub(super) fn poll_events(&mut self) {
        for session in [&mut self.flm, &mut self.distill].into_iter().flatten() {
            let Some(events) = &session.events else {
                continue;
            };
            let pending: Vec<TrainEvent> = events.try_iter().collect();
            for event in pending {
                session.apply(event);
            }
        }
    }

    pub(super) fn started(
        &mut self,
        slot: TrainingSlot,
        run_dir: PathBuf,
        events: Receiver<TrainEvent>,
    ) {
        if let Some(session) = self.slot(slot) {
            session.run_dir = Some(run_dir);
            session.events = Some(events);
        }
    }

    /// Records how a run ended; returns its error for the message list.
    pub(super) fn done(
        &mut self,
        slot: TrainingSlot,
        result: Result<TrainSummary, String>,
    ) -> Option<String> {
        self.poll_events();
        let session = self.slot(slot).as_mut()?;
        let error = result.as_ref().err().cloned();
        session.outcome = Some(result);
        if slot == TrainingSlot::Flm && error.is_none() {
            self.distill_form.teacher = self.flm.as_ref().and_then(|s| s.run_dir.clone());
        }
        error.map(|e| format!("training stopped with an error: {e}"))
    }

    /// The FLM and FMLM trained in this session that have finished with weights.
    pub(super) fn latest_models(&self) -> (Option<PathBuf>, Option<PathBuf>) {
        let finished = |session: &Option<TrainingSession>| {
            session
                .as_ref()
                .filter(|s| matches!(s.outcome, Some(Ok(_))))
                .and_then(|s| s.run_dir.clone())
        };
        (finished(&self.flm), finished(&self.distill))
    }

    pub(super) fn stop_all(&self) {
        for (_, session) in self.sessions() {
            session.control.request_stop();
        }
    }

    pub(super) fn status_line(&self) -> String {
        match self.sessions().find(|(_, s)| s.running()) {
            Some((slot, session)) => format!(
                "{} step {} · {:.0} tokens/s{}",
                match slot {
                    TrainingSlot::Flm => "training",
                    TrainingSlot::Distill => "distilling",
                },
                session.step,
                session.tokens_per_sec,
                if session.control.is_paused() {
                    " · paused"
                } else {
                    ""
                }
            ),
            None => "idle".into(),
        }
    }

    pub fn ui(&mut self, ui: &mut egui::Ui, ctx: &mut ViewContext<'_>) {
        egui::ScrollArea::vertical().show(ui, |ui| {
            ui.heading("Train an FLM");
            ui.horizontal(|ui| {
                ui.label("Data:");
                ui.monospace(&ctx.data.source);
                if ui.small_button("change…").clicked() {
                    ctx.send(AppCommand::Show(super::View::Data));
                }
            });
            self.train_form(ui, ctx);
            if let Some(session) = &self.flm {
                session_panel(ui, "flm", session);
            }
            ui.add_space(12.0);
            ui.separator();
            ui.heading("Distill into a one-step flow map (FMLM)");
            self.distill_form(ui, ctx);
            if let Some(session) = &self.distill {
                session_panel(ui, "distill", session);
            }
        });
    }

    fn train_form(&mut self, ui: &mut egui::Ui, ctx: &mut ViewContext<'_>) {
        let form = &mut self.form;
        egui::Grid::new("train-form").num_columns(2).show(ui, |ui| {
            let label = ui.label("Model size");
            egui::ComboBox::from_id_salt("preset")
                .selected_text(form.preset.to_string())
                .show_ui(ui, |ui| {
                    for preset in ModelPreset::ALL {
                        let (d, blocks, heads) = preset.dims();
                        ui.selectable_value(&mut form.preset, preset, preset.to_string())
                            .on_hover_text(format!("d={d}, {blocks} blocks, {heads} heads"));
                    }
                })
                .response
                .labelled_by(label.id);
            ui.end_row();
            labelled(
                ui,
                "Sequence length",
                super::auto_or_count(&mut form.seq_len, 1024),
            )
            .on_hover_text("auto: 128 tokens for text, 32 for built-in tasks");
            ui.end_row();
            labelled(
                ui,
                "Batch size",
                egui::DragValue::new(&mut form.batch_size).range(1..=512),
            );
            ui.end_row();
            labelled(
                ui,
                "Learning rate",
                egui::DragValue::new(&mut form.learning_rate)
                    .range(1e-5..=1e-2)
                    .speed(1e-5)
                    .max_decimals(5),
            );
            ui.end_row();
            ui.label("Duration");
            duration_input(ui, "train-duration", &mut form.duration);
            ui.end_row();
        });
        let running = self.busy();
        ui.horizontal(|ui| {
            if ui
                .add_enabled(!running, egui::Button::new("▶ Start training"))
                .on_disabled_hover_text("A run is in progress")
                .clicked()
            {
                self.start_training(ctx);
            }
            if let Some(session) = self.flm.as_ref().filter(|s| s.running()) {
                run_controls(ui, session);
            }
        });
    }

    fn distill_form(&mut self, ui: &mut egui::Ui, ctx: &mut ViewContext<'_>) {
        let flm_runs = ctx
            .runs
            .list
            .iter()
            .filter(|r| r.has_weights())
            .filter(|r| matches!(&r.config, Ok(c) if c.kind == ModelKind::Flm));
        let form = &mut self.distill_form;
        egui::Grid::new("distill-form")
            .num_columns(2)
            .show(ui, |ui| {
                let label = ui.label("Teacher (FLM)");
                egui::ComboBox::from_id_salt("teacher")
                    .selected_text(
                        form.teacher
                            .as_deref()
                            .map_or("choose a trained FLM".into(), run_name),
                    )
                    .show_ui(ui, |ui| {
                        for run in flm_runs {
                            ui.selectable_value(
                                &mut form.teacher,
                                Some(run.dir.clone()),
                                &run.name,
                            );
                        }
                    })
                    .response
                    .labelled_by(label.id);
                ui.end_row();
                ui.label("Duration");
                duration_input(ui, "distill-duration", &mut form.duration);
                ui.end_row();
            });
        egui::CollapsingHeader::new("Distillation recipe")
            .id_salt("distill-recipe")
            .show(ui, |ui| recipe_form(ui, &mut form.settings));
        let can_start = !self.busy() && self.distill_form.teacher.is_some();
        ui.horizontal(|ui| {
            if ui
                .add_enabled(can_start, egui::Button::new("▶ Start distillation"))
                .on_disabled_hover_text(
                    "Train an FLM first (or pick one), and wait for runs to finish",
                )
                .clicked()
            {
                self.start_distillation(ctx);
            }
            if let Some(session) = self.distill.as_ref().filter(|s| s.running()) {
                run_controls(ui, session);
            }
        });
    }

    /// Starts an FLM run on the chosen data in a new folder of the runs root.
    pub fn start_training(&mut self, ctx: &mut ViewContext<'_>) {
        let form = &self.form;
        let data = ctx.data;
        let request = TrainRequest {
            out: ctx
                .runs
                .root
                .join(format!("{}-flm", data_stem(&data.source))),
            data: data.source.clone(),
            valid: None,
            preset: form.preset,
            seq_len: (form.seq_len > 0).then_some(form.seq_len),
            vocab_size: data.vocab_size,
            tokenizer: data.tokenizer,
            train: app_train_config(TrainConfig {
                batch_size: form.batch_size,
                learning_rate: form.learning_rate,
                ..TrainConfig::default()
            }),
            steps: steps_of(form.duration),
            minutes: minutes_of(form.duration),
            resume: false,
            kind: NewModelKind::Flm,
            tokenizer_from: None,
        };
        let control = RunControl::default();
        self.flm = Some(TrainingSession::new(control.clone()));
        ctx.send(AppCommand::StartTraining {
            slot: TrainingSlot::Flm,
            start: Box::new(TrainingStart::Flm(request)),
            control,
        });
    }

    /// Distills the chosen teacher into a flow map.
    pub fn start_distillation(&mut self, ctx: &mut ViewContext<'_>) {
        let form = &self.distill_form;
        let Some(teacher) = form.teacher.clone() else {
            return;
        };
        let request = DistillRequest {
            out: ctx.runs.root.join(format!("{}-fmlm", run_name(&teacher))),
            teacher,
            train: app_train_config(TrainConfig::distillation_defaults()),
            settings: {
                let mut settings = form.settings.clone();
                let fractions = &mut settings.fractions;
                fractions.boundary = fractions.boundary.min(1.0 - fractions.diagonal);
                settings
            },
            steps: steps_of(form.duration),
            minutes: minutes_of(form.duration),
            resume: false,
        };
        let control = RunControl::default();
        self.distill = Some(TrainingSession::new(control.clone()));
        ctx.send(AppCommand::StartTraining {
            slot: TrainingSlot::Distill,
            start: Box::new(TrainingStart::Distill(request)),
            control,
        });
    }
}

/// The objective's settings, the same choices `flm distill` offers (docs/distillation.md).
fn recipe_form(ui: &mut egui::Ui, settings: &mut DistillSettings) {
    ui.horizontal(|ui| {
        ui.label("Start from:");
        if ui
            .button("recommended")
            .on_hover_text("What measured best here (docs/distillation.md)")
            .clicked()
        {
            *settings = DistillSettings::recommended();
        }
        if ui
            .button("paper")
            .on_hover_text("The paper's semigroup method as published")
            .clicked()
        {
            *settings = DistillSettings::paper(0.5);
        }
    });
    egui::Grid::new("distill-recipe-grid")
        .num_columns(2)
        .show(ui, |ui| {
            labelled(
                ui,
                "Diagonal share",
                egui::Slider::new(&mut settings.fractions.diagonal, 0.0..=1.0),
            )
            .on_hover_text("Share of examples that train the flow map's denoiser (s = t)");
            ui.end_row();
            labelled(
                ui,
                "One-step share",
                egui::Slider::new(&mut settings.fractions.boundary, 0.0..=1.0),
            )
            .on_hover_text("Expected share of examples on the one-step jump (s = 0, t = 1)");
            ui.end_row();
            let label = ui.label("One-step target");
            egui::ComboBox::from_id_salt("boundary-target")
                .selected_text(match settings.boundary_target {
                    BoundaryTarget::Teacher => "teacher endpoint",
                    BoundaryTarget::Semigroup => "two half-jumps",
                })
                .show_ui(ui, |ui| {
                    ui.selectable_value(
                        &mut settings.boundary_target,
                        BoundaryTarget::Teacher,
                        "teacher endpoint",
                    )
                    .on_hover_text("The teacher's K-step Euler sample from the same noise");
                    ui.selectable_value(
                        &mut settings.boundary_target,
                        BoundaryTarget::Semigroup,
                        "two half-jumps",
                    )
                    .on_hover_text("The student's own jumps 0 → ½ → 1 (the paper's)");
                })
                .response
                .labelled_by(label.id);
            ui.end_row();
            ui.add_enabled_ui(settings.boundary_target == BoundaryTarget::Teacher, |ui| {
                labelled(
                    ui,
                    "Teacher steps K",
                    egui::DragValue::new(&mut settings.teacher_steps).range(1..=1024),
                )
            });
            ui.end_row();
            labelled(
                ui,
                "Time warp p",
                egui::DragValue::new(&mut settings.times.warp)
                    .range(0.25..=8.0)
                    .speed(0.05),
            )
            .on_hover_text("Times drawn as w and used as τ = w^p: p > 1 puts more pairs early");
            ui.end_row();
            let mut dyadic = settings.times.dyadic_levels.unwrap_or(0);
            labelled(
                ui,
                "Dyadic levels",
                egui::DragValue::new(&mut dyadic).range(0..=10),
            )
            .on_hover_text("Pairs on the jumps of 1-, 2-, 4-… step samplers; 0: anywhere");
            settings.times.dyadic_levels = (dyadic > 0).then_some(dyadic);
            ui.end_row();
            let label = ui.label("Midpoint");
            egui::ComboBox::from_id_salt("midpoint")
                .selected_text(format!("{:?}", settings.times.midpoint).to_lowercase())
                .show_ui(ui, |ui| {
                    for midpoint in [Midpoint::Middle, Midpoint::Random] {
                        let text = format!("{midpoint:?}").to_lowercase();
                        ui.selectable_value(&mut settings.times.midpoint, midpoint, text);
                    }
                })
                .response
                .labelled_by(label.id);
            ui.end_row();
            let mut copy_time = settings.second_time_init == SecondTimeInit::Teacher;
            ui.label("Second time embedder");
            ui.checkbox(&mut copy_time, "start as a copy of the teacher's");
            settings.second_time_init = if copy_time {
                SecondTimeInit::Teacher
            } else {
                SecondTimeInit::Random
            };
            ui.end_row();
        });
}

fn app_train_config(base: TrainConfig) -> TrainConfig {
    TrainConfig {
        log_every: APP_LOG_EVERY,
        eval_every: APP_PREVIEW_EVERY,
        sample_every: APP_PREVIEW_EVERY,
        ..base
    }
}
