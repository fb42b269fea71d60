//! One training or distillation run as the Train view follows it: its events folded into
//! curves and numbers, and the panel that draws them.

use std::path::PathBuf;
use std::sync::mpsc::Receiver;

use eframe::egui;
use egui_plot::{Legend, Line, Plot, PlotPoints, Points};

use super::style;
use crate::display::clock;
use crate::train::events::samples_headline;
use crate::train::{RunControl, StopReason, TrainEvent, TrainSummary};

/// How long a run goes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum TrainDuration {
    Minutes(f64),
    Steps(u64),
}

/// One training (or distillation) run as the UI follows it.
pub struct TrainingSession {
    pub run_dir: Option<PathBuf>,
    pub control: RunControl,
    pub(super) events: Option<Receiver<TrainEvent>>,
    pub losses: Vec<[f64; 2]>,
    pub valid_losses: Vec<[f64; 2]>,
    /// A flow map's one-step probe (`train::probe`) at each validation, by metric.
    pub probe: Vec<(&'static str, Vec<[f64; 2]>)>,
    /// A text model's preview readability (`train::readability`) at each preview: the share
    /// of real words and the entropy as a share of the data's.
    pub readability: Vec<(&'static str, Vec<[f64; 2]>)>,
    /// What the newest readability means, and when words are expected.
    pub readability_advice: Option<String>,
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
    pub(super) fn new(control: RunControl) -> Self {
        Self {
            run_dir: None,
            control,
            events: None,
            losses: Vec::new(),
            valid_losses: Vec::new(),
            probe: Vec::new(),
            readability: Vec::new(),
            readability_advice: None,
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

    pub(super) fn apply(&mut self, event: TrainEvent) {
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
            TrainEvent::Validation {
                step,
                loss,
                metrics,
            } => {
                self.valid_losses.push([step as f64, loss]);
                for (name, value) in metrics {
                    if !PROBE_CURVES.contains(&name) {
                        continue;
                    }
                    push_point(&mut self.probe, name, [step as f64, value]);
                }
            }
            TrainEvent::Samples {
                step,
                sampler,
                steps,
                texts,
                valid_fraction,
                readability,
            } => {
                let headline = samples_headline(sampler, steps, valid_fraction);
                self.preview = Some((format!("step {step}: {headline}"), texts));
                if let Some(note) = readability {
                    let x = step as f64;
                    let real = note.measured.real_words.unwrap_or(0.0);
                    push_point(&mut self.readability, "real words", [x, real]);
                    let ratio = note.measured.entropy_ratio();
                    push_point(&mut self.readability, "entropy ÷ data's", [x, ratio]);
                    self.readability_advice =
                        Some(format!("{} — {}", note.measured.summary(), note.advice));
                }
            }
            TrainEvent::Finished { step, .. } => self.step = step,
            TrainEvent::Checkpoint { .. } => {}
        }
    }
}

/// Appends `point` to the curve called `name`, starting it if needed.
fn push_point(
    curves: &mut Vec<(&'static str, Vec<[f64; 2]>)>,
    name: &'static str,
    point: [f64; 2],
) {
    match curves.iter_mut().find(|(n, _)| *n == name) {
        Some((_, points)) => points.push(point),
        None => curves.push((name, vec![point])),
    }
}

pub(super) fn steps_of(duration: TrainDuration) -> Option<u64> {
    match duration {
        TrainDuration::Steps(steps) => Some(steps),
        TrainDuration::Minutes(_) => None,
    }
}

pub(super) fn minutes_of(duration: TrainDuration) -> Option<f64> {
    match duration {
        TrainDuration::Minutes(minutes) => Some(minutes),
        TrainDuration::Steps(_) => None,
    }
}

pub(super) fn duration_input(ui: &mut egui::Ui, id: &str, duration: &mut TrainDuration) {
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

pub(super) fn run_controls(ui: &mut egui::Ui, session: &TrainingSession) {
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
pub(super) fn session_panel(ui: &mut egui::Ui, id: &str, session: &TrainingSession) {
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
        ui.label(format!("elapsed {}", clock(session.elapsed_secs)));
        if let (Some(eta), true) = (session.eta_secs, session.running()) {
            ui.separator();
            ui.label(format!("ETA {}", clock(eta)));
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
    if !session.probe.is_empty() {
        let title = "One-step quality on fixed noise (every validation)";
        share_curves(ui, &format!("{id}-probe"), title, &session.probe);
    }
    if !session.readability.is_empty() {
        let title = "How the previews read: words of your text, and variety";
        share_curves(
            ui,
            &format!("{id}-readability"),
            title,
            &session.readability,
        );
    }
    if let Some((title, texts)) = &session.preview {
        ui.strong(format!("Preview samples — {title}"));
        for text in texts.iter().take(4) {
            ui.monospace(super::drawable(text).replace('\n', "¶"));
        }
        if let Some(advice) = &session.readability_advice {
            ui.label(advice);
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

/// The probe measurements the Distill panel draws: one-step (and two-step) validity and
/// agreement on built-in tasks, the one-step match with the teacher's samples everywhere.
const PROBE_CURVES: [&str; 4] = [
    "one_step_valid",
    "two_step_valid",
    "one_step_agreement",
    "one_step_teacher_match",
];

/// Shares in [0, 1] against steps: how good the one-step jump is as distillation goes, or
/// how readable a text model's previews are.
fn share_curves(
    ui: &mut egui::Ui,
    id: &str,
    title: &str,
    curves: &[(&'static str, Vec<[f64; 2]>)],
) {
    ui.label(title);
    Plot::new(id)
        .height(140.0)
        .legend(Legend::default())
        .x_axis_label("step")
        .y_axis_label("share")
        .include_y(0.0)
        .include_y(1.0)
        .allow_scroll(false)
        .show(ui, |plot| {
            for (name, points) in curves {
                let label = name.replace('_', " ");
                plot.line(Line::new(label.clone(), PlotPoints::from(points.clone())));
                plot.points(Points::new(label, PlotPoints::from(points.clone())).radius(2.5));
            }
        });
}

#[cfg(test)]
mod tests {
    use super::*;

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
            metrics: vec![("one_step_valid", 0.5), ("valid_diagonal_loss", 0.1)],
        });
        assert_eq!(session.losses, vec![[10.0, 2.5]]);
        assert_eq!(session.valid_losses, vec![[10.0, 2.7]]);
        assert_eq!(session.probe, vec![("one_step_valid", vec![[10.0, 0.5]])]);
        assert_eq!(session.step, 10);
        assert!(session.running());
    }

    #[test]
    fn text_previews_draw_readability_curves_and_advice() {
        let mut session = TrainingSession::new(RunControl::default());
        let measured = crate::train::readability::Readability {
            real_words: Some(0.25),
            entropy: 2.0,
            data_entropy: 4.0,
        };
        session.apply(TrainEvent::Samples {
            step: 50,
            sampler: "euler",
            steps: 32,
            texts: vec!["the the".into()],
            valid_fraction: None,
            readability: Some(crate::train::ReadabilityNote {
                measured,
                advice: "words are forming".into(),
            }),
        });
        assert_eq!(
            session.readability,
            vec![
                ("real words", vec![[50.0, 0.25]]),
                ("entropy ÷ data's", vec![[50.0, 0.5]])
            ]
        );
        let advice = session.readability_advice.unwrap();
        assert!(advice.starts_with("real words 25%") && advice.ends_with("words are forming"));
    }
}
