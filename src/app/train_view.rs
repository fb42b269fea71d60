//! View 2, Train: train an FLM on the chosen data with live curves, then distill it into a
//! flow map (FMLM) from the same view. Runs keep going when the user switches views.

use std::path::{Path, PathBuf};
use std::sync::mpsc::Receiver;

use eframe::egui;
use egui_plot::{Legend, Line, Plot, PlotPoints, Points};

use super::jobs::{TrainingSlot, TrainingStart};
use super::style;
use super::{FlmApp, run_name};
use crate::flow::distill::DistillSettings;
use crate::model::ModelPreset;
use crate::train::{
    DistillRequest, NewModelKind, RunControl, StopReason, TrainConfig, TrainEvent, TrainRequest,
    TrainSummary,
};

/// How long a run goes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum TrainDuration {
    Minutes(f64),
    Steps(u64),
}

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

/// One training (or distillation) run as the UI follows it.
pub struct TrainingSession {
    pub run_dir: Option<PathBuf>,
    pub control: RunControl,
    events: Option<Receiver<TrainEvent>>,
    pub losses: Vec<[f64; 2]>,
    pub valid_losses: Vec<[f64; 2]>,
    pub device: Option<String>,
    pub parameters: Option<usize>,
    pub step: u64,
    pub tokens_per_sec: f64,
    pub eta_secs: Option<f64>,
    pub elapsed_secs: f64,
    /// The newest preview: sampler description and texts.
    pub preview: Option<(String, Vec<String>)>,
    pub outcome: Option<Result<TrainSummary, String>>,
}

impl TrainingSession {
    fn new(control: RunControl) -> Self {
        Self {
            run_dir: None,
            control,
            events: None,
            losses: Vec::new(),
            valid_losses: Vec::new(),
            device: None,
            parameters: None,
            step: 0,
            tokens_per_sec: 0.0,
            eta_secs: None,
            elapsed_secs: 0.0,
            preview: None,
            outcome: None,
        }
    }

    pub fn running(&self) -> bool {
        self.outcome.is_none()
    }

    fn apply(&mut self, event: TrainEvent) {
        match event {
            TrainEvent::Started {
                device,
                parameters,
                start_step,
                ..
            } => {
                self.device = Some(device);
                self.parameters = Some(parameters);
                self.step = start_step;
            }
            TrainEvent::Step {
                step,
                loss,
                tokens_per_sec,
                elapsed_secs,
                eta_secs,
                ..
            } => {
                self.losses.push([step as f64, loss]);
                self.step = step;
                self.tokens_per_sec = tokens_per_sec;
                self.elapsed_secs = elapsed_secs;
                self.eta_secs = eta_secs;
            }
            TrainEvent::Validation { step, loss, .. } => {
                self.valid_losses.push([step as f64, loss])
            }
            TrainEvent::Samples {
                step,
                sampler,
                steps,
                texts,
                valid_fraction,
            } => {
                let validity = valid_fraction
                    .map(|v| format!(", {:.0}% valid", v * 100.0))
                    .unwrap_or_default();
                self.preview = Some((
                    format!("step {step}: {sampler}, {steps} steps{validity}"),
                    texts,
                ));
            }
            TrainEvent::Finished { step, .. } => self.step = step,
            TrainEvent::Checkpoint { .. } => {}
        }
    }
}

/// The Train view's state.
#[derive(Default)]
pub struct TrainState {
    pub form: TrainForm,
    pub distill_form: DistillForm,
    pub flm: Option<TrainingSession>,
    pub distill: Option<TrainingSession>,
}

impl TrainState {
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
}

/// Preview samples and validation come this often in app runs: the user is watching.
const APP_PREVIEW_EVERY: u64 = 100;
/// Loss points come this often, for curves that move while the user watches.
const APP_LOG_EVERY: u64 = 5;

impl FlmApp {
    pub(super) fn train_view(&mut self, ui: &mut egui::Ui) {
        egui::ScrollArea::vertical().show(ui, |ui| {
            ui.heading("Train an FLM");
            ui.horizontal(|ui| {
                ui.label("Data:");
                ui.monospace(&self.data.source);
                if ui.small_button("change…").clicked() {
                    self.view = super::View::Data;
                }
            });
            self.train_form(ui);
            if let Some(session) = &self.train.flm {
                session_panel(ui, "flm", session);
            }
            ui.add_space(12.0);
            ui.separator();
            ui.heading("Distill into a one-step flow map (FMLM)");
            self.distill_form(ui);
            if let Some(session) = &self.train.distill {
                session_panel(ui, "distill", session);
            }
        });
    }

    fn train_form(&mut self, ui: &mut egui::Ui) {
        let form = &mut self.train.form;
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
            super::labelled(
                ui,
                "Sequence length",
                egui::DragValue::new(&mut form.seq_len)
                    .range(0..=1024)
                    .custom_formatter(|v, _| {
                        if v == 0.0 {
                            "auto".into()
                        } else {
                            format!("{v}")
                        }
                    }),
            )
            .on_hover_text("auto: 128 tokens for text, 32 for built-in tasks");
            ui.end_row();
            super::labelled(
                ui,
                "Batch size",
                egui::DragValue::new(&mut form.batch_size).range(1..=512),
            );
            ui.end_row();
            super::labelled(
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
        let running = self.train.busy();
        ui.horizontal(|ui| {
            if ui
                .add_enabled(!running, egui::Button::new("▶ Start training"))
                .on_disabled_hover_text("A run is in progress")
                .clicked()
            {
                self.start_training();
            }
            if let Some(session) = self.train.flm.as_ref().filter(|s| s.running()) {
                run_controls(ui, session);
            }
        });
    }

    fn distill_form(&mut self, ui: &mut egui::Ui) {
        let flm_runs: Vec<PathBuf> = self
            .checkpoints
            .runs
            .iter()
            .filter(|r| r.has_weights())
            .filter(|r| matches!(&r.config, Ok(c) if c.kind == crate::train::ModelKind::Flm))
            .map(|r| r.dir.clone())
            .collect();
        let form = &mut self.train.distill_form;
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
                        for dir in &flm_runs {
                            ui.selectable_value(
                                &mut form.teacher,
                                Some(dir.clone()),
                                run_name(dir),
                            );
                        }
                    })
                    .response
                    .labelled_by(label.id);
                ui.end_row();
                ui.label("Duration");
                duration_input(ui, "distill-duration", &mut form.duration);
                ui.end_row();
                super::labelled(
                    ui,
                    "Diagonal share",
                    egui::Slider::new(&mut form.settings.fractions.diagonal, 0.0..=1.0),
                )
                .on_hover_text("Share of examples that train the flow map's denoiser (s = t)");
                ui.end_row();
            });
        let can_start = !self.train.busy() && self.train.distill_form.teacher.is_some();
        ui.horizontal(|ui| {
            if ui
                .add_enabled(can_start, egui::Button::new("▶ Start distillation"))
                .on_disabled_hover_text(
                    "Train an FLM first (or pick one), and wait for runs to finish",
                )
                .clicked()
            {
                self.start_distillation();
            }
            if let Some(session) = self.train.distill.as_ref().filter(|s| s.running()) {
                run_controls(ui, session);
            }
        });
    }

    /// Starts an FLM run on the chosen data in a new folder of the runs root.
    pub fn start_training(&mut self) {
        let form = &self.train.form;
        let stem = data_stem(&self.data.source);
        let request = TrainRequest {
            out: unique_run_dir(&self.checkpoints.root, &format!("{stem}-flm")),
            data: self.data.source.clone(),
            valid: None,
            preset: form.preset,
            seq_len: (form.seq_len > 0).then_some(form.seq_len),
            vocab_size: self.data.vocab_size,
            tokenizer: self.data.tokenizer,
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
        self.train.flm = Some(TrainingSession::new(control.clone()));
        self.jobs.train(
            TrainingSlot::Flm,
            TrainingStart::Flm(request),
            self.device.clone(),
            control,
        );
    }

    /// Distills the chosen teacher into a flow map.
    pub fn start_distillation(&mut self) {
        let form = &self.train.distill_form;
        let Some(teacher) = form.teacher.clone() else {
            return;
        };
        let request = DistillRequest {
            out: unique_run_dir(
                &self.checkpoints.root,
                &format!("{}-fmlm", run_name(&teacher)),
            ),
            teacher,
            train: app_train_config(TrainConfig::flow_map_defaults()),
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
        self.train.distill = Some(TrainingSession::new(control.clone()));
        self.jobs.train(
            TrainingSlot::Distill,
            TrainingStart::Distill(request),
            self.device.clone(),
            control,
        );
    }
}

fn app_train_config(base: TrainConfig) -> TrainConfig {
    TrainConfig {
        log_every: APP_LOG_EVERY,
        eval_every: APP_PREVIEW_EVERY,
        sample_every: APP_PREVIEW_EVERY,
        ..base
    }
}

fn steps_of(duration: TrainDuration) -> Option<u64> {
    match duration {
        TrainDuration::Steps(steps) => Some(steps),
        TrainDuration::Minutes(_) => None,
    }
}

fn minutes_of(duration: TrainDuration) -> Option<f64> {
    match duration {
        TrainDuration::Minutes(minutes) => Some(minutes),
        TrainDuration::Steps(_) => None,
    }
}

fn duration_input(ui: &mut egui::Ui, id: &str, duration: &mut TrainDuration) {
    ui.push_id(id, |ui| {
        ui.horizontal(|ui| {
            let minutes = matches!(duration, TrainDuration::Minutes(_));
            let minutes_radio = ui.radio(minutes, "minutes");
            if minutes_radio.clicked() && !minutes {
                *duration = TrainDuration::Minutes(5.0);
            }
            let steps_radio = ui.radio(!minutes, "steps");
            if steps_radio.clicked() && minutes {
                *duration = TrainDuration::Steps(1000);
            }
            match duration {
                TrainDuration::Minutes(m) => {
                    ui.add(egui::DragValue::new(m).range(0.1..=24.0 * 60.0).speed(0.5))
                        .labelled_by(minutes_radio.id);
                }
                TrainDuration::Steps(s) => {
                    ui.add(egui::DragValue::new(s).range(1..=10_000_000).speed(10))
                        .labelled_by(steps_radio.id);
                }
            }
        });
    });
}

fn run_controls(ui: &mut egui::Ui, session: &TrainingSession) {
    let paused = session.control.is_paused();
    if ui
        .button(if paused { "⏵ Resume" } else { "⏸ Pause" })
        .clicked()
    {
        session.control.set_paused(!paused);
    }
    if ui
        .button("⏹ Stop")
        .on_hover_text("Finish the current step and write a checkpoint")
        .clicked()
    {
        session.control.request_stop();
    }
}

/// Curves, numbers and the newest preview of one run.
fn session_panel(ui: &mut egui::Ui, id: &str, session: &TrainingSession) {
    ui.add_space(6.0);
    ui.horizontal_wrapped(|ui| {
        match (&session.outcome, session.run_dir.is_some()) {
            (None, false) => {
                style::busy(ui);
                ui.label("preparing data and model…");
            }
            (None, true) => {
                style::busy(ui);
                ui.label(if session.control.is_paused() {
                    "paused"
                } else {
                    "training"
                });
            }
            (Some(Ok(summary)), _) => {
                ui.label(format!(
                    "✔ finished at step {} ({})",
                    summary.final_step,
                    match summary.reason {
                        StopReason::StepsDone => "step target reached",
                        StopReason::TimeUp => "time budget used",
                        StopReason::Interrupted => "stopped",
                    }
                ));
            }
            (Some(Err(_)), _) => {
                ui.colored_label(style::ERROR_TEXT, "✖ failed (see the message below)");
            }
        }
        ui.separator();
        ui.label(format!("step {}", session.step));
        ui.separator();
        ui.label(format!("{:.0} tokens/s", session.tokens_per_sec));
        ui.separator();
        ui.label(format!("elapsed {}", fmt_duration(session.elapsed_secs)));
        if let (Some(eta), true) = (session.eta_secs, session.running()) {
            ui.separator();
            ui.label(format!("ETA {}", fmt_duration(eta)));
        }
        if let Some(parameters) = session.parameters {
            ui.separator();
            ui.label(format!("{:.2} M parameters", parameters as f64 / 1e6));
        }
        if let Some(device) = &session.device {
            ui.separator();
            ui.label(super::headline(device)).on_hover_text(device);
        }
    });
    if let Some(dir) = &session.run_dir {
        ui.weak(format!("run folder: {}", dir.display()));
    }
    loss_curves(ui, id, &session.losses, &session.valid_losses, 200.0);
    if let Some((title, texts)) = &session.preview {
        ui.strong(format!("Preview samples — {title}"));
        for text in texts.iter().take(4) {
            ui.monospace(text.replace('\n', "¶"));
        }
    }
}

/// Training and validation loss against steps: the Train view's live curves and the
/// Checkpoints view's history.
pub(super) fn loss_curves(
    ui: &mut egui::Ui,
    id: &str,
    train: &[[f64; 2]],
    valid: &[[f64; 2]],
    height: f32,
) {
    Plot::new(format!("{id}-loss"))
        .height(height)
        .legend(Legend::default())
        .x_axis_label("step")
        .y_axis_label("loss (nats/token)")
        .allow_scroll(false)
        .show(ui, |plot| {
            plot.line(
                Line::new("train loss", PlotPoints::from(train.to_vec())).color(style::TRAIN_CURVE),
            );
            if !valid.is_empty() {
                let points = || PlotPoints::from(valid.to_vec());
                plot.line(Line::new("validation loss", points()).color(style::VALID_CURVE));
                // Markers too: validation comes rarely, and a single point draws no line.
                plot.points(
                    Points::new("validation loss", points())
                        .color(style::VALID_CURVE)
                        .radius(3.0),
                );
            }
        });
}

fn fmt_duration(secs: f64) -> String {
    let secs = secs.max(0.0) as u64;
    format!("{}:{:02}", secs / 60, secs % 60)
}

/// A short name for the data: the task or the file's stem.
fn data_stem(source: &str) -> String {
    let stem = source
        .strip_prefix("builtin:")
        .map(str::to_string)
        .unwrap_or_else(|| {
            Path::new(source)
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| "text".into())
        });
    stem.chars()
        .map(|c| {
            if c.is_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// `root/base`, or `root/base-2`, `-3`… when taken: a new run never overwrites an old one.
fn unique_run_dir(root: &Path, base: &str) -> PathBuf {
    (1..)
        .map(|n| {
            if n == 1 {
                root.join(base)
            } else {
                root.join(format!("{base}-{n}"))
            }
        })
        .find(|dir| !dir.exists())
        .expect("some name is free")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_names_are_unique_and_safe() {
        let root = std::env::temp_dir().join(format!("flm-unique-{}", std::process::id()));
        std::fs::create_dir_all(root.join("book-flm")).unwrap();
        assert_eq!(unique_run_dir(&root, "book-flm"), root.join("book-flm-2"));
        assert_eq!(unique_run_dir(&root, "other"), root.join("other"));
        assert_eq!(data_stem("/home/me/My Book.txt"), "My_Book");
        assert_eq!(data_stem("builtin:repeat"), "repeat");
        std::fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn sessions_follow_events() {
        let mut session = TrainingSession::new(RunControl::default());
        session.apply(TrainEvent::Step {
            step: 10,
            loss: 2.5,
            learning_rate: 1e-3,
            grad_norm: 1.0,
            tokens_per_sec: 900.0,
            elapsed_secs: 3.0,
            eta_secs: Some(20.0),
        });
        session.apply(TrainEvent::Validation {
            step: 10,
            loss: 2.7,
            metrics: Vec::new(),
        });
        assert_eq!(session.losses, vec![[10.0, 2.5]]);
        assert_eq!(session.valid_losses, vec![[10.0, 2.7]]);
        assert_eq!(session.step, 10);
        assert!(session.running());
    }
}
