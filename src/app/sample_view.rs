//! View 3, Sample: generate once with the whole trajectory recorded, then replay it: the step
//! slider, the text by confidence, the simplex bars, the heatmap, the τ–γ schedule, and an
//! FLM / FMLM comparison from the same noise.

use std::path::PathBuf;

use eframe::egui;

use super::commands::{AppCommand, ViewContext};
use super::dialogs::PickPurpose;
use super::jobs::{SampleRequest, SampleResult, SampledModel, SamplingProgress};
use super::playback::Playback;
use super::simplex_view::{self as simplex, SimplexPath};
use super::style;
use super::trajectory_widgets::{self as widgets, HeatMetric};
use super::{labelled, run_name};
use crate::data::BuiltinTask;
use crate::flow::Decoding;
use crate::flow::Trajectory;
use crate::flow::decoding::MIN_TEMPERATURE;
use crate::train::ModelKind;

/// View 3: the sampling settings, the last result and the replay position.
pub struct SampleView {
    pub model: Option<PathBuf>,
    pub steps: usize,
    pub eta: f64,
    pub seed: u64,
    pub samples: usize,
    /// How the last step's distributions become tokens.
    pub decoding: Decoding,
    /// Whether the person set the decoding; until then it follows the model (argmax on
    /// built-in tasks, `Decoding::TEXT_DEFAULT` on text).
    pub decoding_chosen: bool,
    /// Fixed text in template syntax: each `___` is one generated token, and everything after
    /// the text is generated. Empty: unconditioned.
    pub prompt: String,
    /// Pull of the free positions toward the prompt ([`crate::flow::Clamped::guidance`]).
    pub guidance: f64,
    /// Whether the person set the guidance; until then it follows the model's kind
    /// ([`crate::generate::default_guidance`]).
    pub guidance_chosen: bool,
    pub compare: bool,
    pub compare_model: Option<PathBuf>,
    pub compare_steps: usize,
    pub result: Option<Box<SampleResult>>,
    pub playback: Option<Playback>,
    /// Which of the generated samples is shown.
    pub sample_index: usize,
    pub metric: HeatMetric,
    /// The position whose path the simplex view draws (a click on a token picks it).
    pub simplex_position: Option<usize>,
    /// The running generation's progress (and Cancel switch), with its total step count.
    pending: Option<(SamplingProgress, usize)>,
    /// The heatmap texture and what it was drawn from (sample, metric, result generation).
    heat: Option<((usize, HeatMetric, u64), egui::TextureHandle)>,
    generation: u64,
}

impl Default for SampleView {
    fn default() -> Self {
        Self {
            model: None,
            steps: 32,
            eta: 0.0,
            seed: 0,
            samples: 4,
            decoding: Decoding::TEXT_DEFAULT,
            decoding_chosen: false,
            prompt: String::new(),
            guidance: crate::generate::FLM_GUIDANCE,
            guidance_chosen: false,
            compare: false,
            compare_model: None,
            compare_steps: 1,
            result: None,
            playback: None,
            sample_index: 0,
            metric: HeatMetric::Entropy,
            simplex_position: None,
            pending: None,
            heat: None,
            generation: 0,
        }
    }
}

impl SampleView {
    pub fn busy(&self) -> bool {
        self.pending.is_some()
    }

    pub fn playback_mut(&mut self) -> Option<&mut Playback> {
        self.playback.as_mut()
    }

    /// Takes a generation result; returns its error for the message list.
    pub(super) fn done(
        &mut self,
        result: Result<Option<Box<SampleResult>>, String>,
    ) -> Option<String> {
        self.pending = None;
        match result {
            // Cancelled: keep what was shown before.
            Ok(None) => None,
            Ok(Some(result)) => {
                self.playback = Some(Playback::new(result.main.trajectory.steps));
                self.sample_index = self
                    .sample_index
                    .min(result.main.texts.len().saturating_sub(1));
                // A position past the new model's length has nothing to show.
                let seq_len = result.main.trajectory.seq_len;
                self.simplex_position = self.simplex_position.filter(|&p| p < seq_len);
                self.result = Some(result);
                self.generation += 1;
                self.heat = None;
                None
            }
            Err(error) => Some(format!("sampling failed: {error}")),
        }
    }

    /// After training in this session: sample the new model, and compare FLM with FMLM once
    /// both exist.
    pub(super) fn adopt_trained(&mut self, (flm, fmlm): (Option<PathBuf>, Option<PathBuf>)) {
        match (flm, fmlm) {
            // The slider scrubs the FLM's many steps; its FMLM's one step sits beside it.
            (Some(flm), Some(fmlm)) => {
                self.model = Some(flm);
                self.steps = 32;
                self.compare_model = Some(fmlm);
                self.compare_steps = 1;
                self.compare = true;
            }
            (Some(flm), None) => self.model = Some(flm),
            (None, Some(fmlm)) => self.model = Some(fmlm),
            (None, None) => {}
        }
    }

    fn request(&self) -> Option<SampleRequest> {
        Some(SampleRequest {
            model: self.model.clone()?,
            steps: self.steps,
            eta: self.eta,
            seed: self.seed,
            samples: self.samples,
            compare: match (&self.compare_model, self.compare) {
                (Some(dir), true) => Some((dir.clone(), self.compare_steps)),
                _ => None,
            },
            decoding: self.decoding,
            prompt: self.prompt.clone(),
            guidance: self.guidance,
        })
    }

    /// Whether a run with the current settings has a 1-step model that cannot see the prompt.
    fn one_step_with_prompt(&self) -> bool {
        let compared = self.compare && self.compare_model.is_some() && self.compare_steps == 1;
        !self.prompt.is_empty() && (self.steps == 1 || compared)
    }
}

impl SampleView {
    /// Starts sampling with the view's settings (the Generate button).
    pub fn generate(&mut self, ctx: &mut ViewContext<'_>) {
        if let Some(request) = self.request() {
            let progress = SamplingProgress::default();
            let total = request.steps + request.compare.as_ref().map_or(0, |(_, steps)| *steps);
            self.pending = Some((progress.clone(), total));
            ctx.send(AppCommand::Sample { request, progress });
        }
    }

    pub fn ui(&mut self, ui: &mut egui::Ui, ctx: &mut ViewContext<'_>) {
        self.controls(ui, ctx);
        ui.separator();
        let dt = ui.input(|i| i.stable_dt).min(0.1);
        let (Some(result), Some(playback)) = (&self.result, &mut self.playback) else {
            ui.add_space(20.0);
            ui.weak(if self.model.is_none() {
                "Train a model (or pick a checkpoint above), then Generate."
            } else {
                "Generate records the whole denoising trajectory; then scrub through it."
            });
            return;
        };
        if playback.advance(dt) || playback.playing {
            ui.ctx().request_repaint();
        }
        let main = &result.main;
        let sample = self.sample_index.min(main.texts.len().saturating_sub(1));
        playback_bar(ui, playback, main);
        let step = playback.step;
        let frame = &main.trajectory.samples[sample].frames[step];
        let top_k = main.trajectory.top_k;

        egui::ScrollArea::vertical().id_salt("sample-scroll").show(ui, |ui| {
            ui.horizontal(|ui| {
                ui.strong(model_title(main)).on_hover_text(format!(
                    "{:.2} s for {} samples",
                    main.seconds,
                    main.texts.len()
                ));
                for (i, valid) in main.valid.iter().enumerate() {
                    let label = match valid {
                        Some(true) => format!("#{i} ✔"),
                        Some(false) => format!("#{i} ✖"),
                        None => format!("#{i}"),
                    };
                    ui.selectable_value(&mut self.sample_index, i, label);
                }
            });
            egui::Frame::group(ui.style()).show(ui, |ui| {
                ui.set_width(ui.available_width());
                let fixed = &main.trajectory.fixed;
                let decoded = final_tokens(&main.trajectory, sample, step);
                if let Some(position) =
                    widgets::token_text(ui, frame, top_k, &main.vocab, fixed, decoded)
                {
                    self.simplex_position = Some(position);
                }
            });
            if main.trajectory.steps == 1 && !main.trajectory.fixed.is_empty() {
                one_step_note(ui);
            }
            if let Some(advice) = &main.single_token {
                ui.colored_label(style::ERROR_TEXT, format!("⚠ {advice}"));
            }
            ui.label(
                egui::RichText::new(format!(
                    "Top-{top_k} probabilities per position (the point on the simplex), most likely at the bottom"
                ))
                .small(),
            );
            widgets::simplex_bars(ui, frame, top_k, &main.vocab, 140.0);
            ui.add_space(6.0);
            let steps = main.trajectory.steps;
            let key = (sample, self.metric, self.generation);
            if self.heat.as_ref().map(|(k, _)| *k) != Some(key) {
                let image = widgets::heat_image(&main.trajectory, sample, self.metric);
                let texture = ui.ctx().load_texture("heatmap", image, egui::TextureOptions::NEAREST);
                self.heat = Some((key, texture));
            }
            ui.columns(2, |columns| {
                let ui = &mut columns[0];
                ui.horizontal(|ui| {
                    ui.label("Heatmap of");
                    for metric in [HeatMetric::Entropy, HeatMetric::Doubt] {
                        ui.selectable_value(&mut self.metric, metric, metric.label());
                    }
                });
                if let Some((_, texture)) = &self.heat {
                    let size = egui::vec2(ui.available_width(), 160.0);
                    let fixed = &main.trajectory.fixed;
                    if let Some(picked) = widgets::heatmap(ui, texture, steps, step, size, fixed) {
                        playback.step = picked;
                        playback.playing = false;
                    }
                }
                let ui = &mut columns[1];
                ui.label("Time schedule γ(τ): equal τ steps, equal decoding progress");
                schedule_plot(ui, main, step);
            });
            match self.simplex_position {
                Some(position) => simplex_panel(ui, result, sample, position, step),
                None => {
                    ui.weak("Click a token to see its path on the simplex.");
                }
            }
            if let Some(other) = &result.compare {
                ui.separator();
                comparison(ui, main, other, sample, step);
            }
            ui.separator();
            ui.strong("Final text");
            ui.monospace(&main.texts[sample]);
        });
    }

    fn controls(&mut self, ui: &mut egui::Ui, ctx: &mut ViewContext<'_>) {
        let models: Vec<(PathBuf, ModelKind)> = ctx
            .runs
            .list
            .iter()
            .filter(|r| r.has_weights())
            .filter_map(|r| match &r.config {
                Ok(c) if c.kind != ModelKind::Autoregressive => Some((r.dir.clone(), c.kind)),
                _ => None,
            })
            .collect();
        let state = self;
        let (mut browse, mut export_animation) = (false, false);
        ui.horizontal_wrapped(|ui| {
            let label = ui.label("Model");
            model_combo(ui, "model", &mut state.model, &models, label.id);
            if ui
                .button("📂")
                .on_hover_text("Open a checkpoint folder")
                .clicked()
            {
                browse = true;
            }
            labelled(
                ui,
                "steps",
                egui::DragValue::new(&mut state.steps).range(1..=1024),
            );
            let flow_map = models.iter().any(|(dir, kind)| {
                Some(dir) == state.model.as_ref() && *kind == ModelKind::FlowMap
            });
            ui.add_enabled_ui(flow_map, |ui| {
                labelled(
                    ui,
                    "η",
                    egui::Slider::new(&mut state.eta, 0.0..=1.0).fixed_decimals(2),
                )
                .on_hover_text("Flow-map steps: 0 = deterministic, 1 = fresh noise each step")
                .on_disabled_hover_text("η applies to flow-map (FMLM) models");
            });
            labelled(ui, "seed", egui::DragValue::new(&mut state.seed));
            labelled(
                ui,
                "samples",
                egui::DragValue::new(&mut state.samples).range(1..=16),
            );
            if !state.decoding_chosen {
                let task = ctx.runs.list.iter().any(|r| {
                    Some(&r.dir) == state.model.as_ref()
                        && r.config
                            .as_ref()
                            .is_ok_and(|c| BuiltinTask::parse(&c.data.source).is_some())
                });
                state.decoding = Decoding::default_for(task);
            }
            state.decoding_chosen |= decoding_controls(ui, &mut state.decoding);
        });
        ui.horizontal_wrapped(|ui| {
            let compare = ui.checkbox(&mut state.compare, "compare with");
            let compare_id = compare.id;
            compare
                .on_hover_text("Sample a second model from the same noise, e.g. the FLM in 32 steps against its FMLM in 1");
            ui.add_enabled_ui(state.compare, |ui| {
                model_combo(ui, "compare-model", &mut state.compare_model, &models, compare_id);
                                labelled(ui, "steps", egui::DragValue::new(&mut state.compare_steps).range(1..=1024));
            });
        });
        ui.horizontal(|ui| {
            let label = ui.label("Prompt");
            ui.add(
                egui::TextEdit::singleline(&mut state.prompt)
                    .hint_text("fixed text; ___ is one generated token")
                    .desired_width(420.0),
            )
            .labelled_by(label.id)
            .on_hover_text(
                "Text every sample starts with; the rest is generated. Each ___ (three underscores) is one token to fill in, e.g. \"the ___ ___ sat\". Fixed tokens have a teal box.",
            );
            if !state.guidance_chosen
                && let Some(kind) = ctx
                    .runs
                    .list
                    .iter()
                    .find(|r| Some(&r.dir) == state.model.as_ref())
                    .and_then(|r| r.config.as_ref().ok())
                    .map(|c| c.kind)
            {
                state.guidance = crate::generate::default_guidance(kind);
            }
            ui.add_enabled_ui(!state.prompt.is_empty(), |ui| {
                let edited = labelled(
                    ui,
                    "guidance",
                    egui::DragValue::new(&mut state.guidance)
                        .range(0.0..=crate::generate::MAX_GUIDANCE)
                        .speed(0.1),
                )
                .on_hover_text(
                    "How hard the generated tokens are pulled toward the fixed text (through the gradient of the model's probability of it). 0 only clamps the fixed tokens, which barely steers the rest; each step then costs about 3× as much. Follows the model until you change it: 8 for an FLM, 2 for a flow map, whose few large steps overshoot with more. A compared model uses the same value.",
                )
                .changed();
                state.guidance_chosen |= edited;
            });
        });
        if state.one_step_with_prompt() {
            ui.colored_label(
                style::VALID_CURVE,
                format!("⚠ {}", crate::generate::ONE_STEP_WARNING),
            );
        }
        let can_generate = state.model.is_some() && state.pending.is_none();
        ui.horizontal(|ui| {
            if ui
                .add_enabled(can_generate, egui::Button::new("✨ Generate"))
                .on_disabled_hover_text("Choose a trained model first")
                .clicked()
            {
                state.generate(ctx);
            }
            if let Some((progress, total)) = &state.pending {
                style::busy(ui);
                let done = progress.steps_done().min(*total);
                ui.add(
                    egui::ProgressBar::new(done as f32 / (*total).max(1) as f32)
                        .desired_width(220.0)
                        .text(format!("denoising: step {done} of {total}")),
                );
                if ui.button("Cancel").clicked() {
                    progress.request_cancel();
                }
            }
            if ui
                .add_enabled(
                    state.result.is_some(),
                    egui::Button::new("🎞 Export animation…"),
                )
                .on_hover_text("Save the shown sample's denoising as an animated GIF")
                .on_disabled_hover_text("Generate first")
                .clicked()
            {
                export_animation = true;
            }
            ui.weak("Space: play/pause · Left/Right arrow: one step");
        });
        if export_animation {
            ctx.send(AppCommand::Pick {
                purpose: PickPurpose::AnimationFile,
                title: "Save the denoising as a GIF",
            });
        }
        if browse {
            ctx.send(AppCommand::Pick {
                purpose: PickPurpose::CheckpointFolder,
                title: "Choose a checkpoint folder",
            });
        }
    }
}

/// The chosen position's path on the simplex, for the main model and (on the same corners)
/// the compared one.
fn simplex_panel(
    ui: &mut egui::Ui,
    result: &SampleResult,
    sample: usize,
    position: usize,
    step: usize,
) {
    let main = &result.main;
    let Some(corners) = simplex::corners(&main.trajectory, sample, position) else {
        ui.weak("The simplex view needs at least 3 recorded candidates per position.");
        return;
    };
    ui.strong(format!("Position {position} on the simplex"));
    let mut paths = vec![SimplexPath {
        label: model_title(main),
        color: style::RANK_COLORS[0],
        points: simplex::path(&main.trajectory, sample, position, corners),
        current: step,
    }];
    if let Some(other) = &result.compare {
        paths.push(SimplexPath {
            label: model_title(other),
            color: style::RANK_COLORS[1],
            points: simplex::path(&other.trajectory, sample, position, corners),
            current: matching_step(step, main.trajectory.steps, other.trajectory.steps),
        });
    }
    let text = |id: u32| main.vocab.get(id as usize).map_or("?", String::as_str);
    ui.horizontal(|ui| {
        simplex::simplex_view(ui, corners.map(text), &paths);
    });
}

/// The sample's decoded tokens when `step` is the last one (what the text strip ends on).
fn final_tokens(trajectory: &Trajectory, sample: usize, step: usize) -> Option<&[u32]> {
    (step + 1 == trajectory.steps)
        .then(|| trajectory.samples.get(sample).map(|s| s.tokens.as_slice()))
        .flatten()
}

/// Under a 1-step result with fixed tokens: what the picture cannot show by itself.
fn one_step_note(ui: &mut egui::Ui) {
    ui.colored_label(
        style::VALID_CURVE,
        "1 step: the network saw the fixed tokens as pure noise (γ = 0); the other tokens were generated without them",
    );
}

/// Argmax (the paper's), or a draw from each final distribution at a temperature within its
/// nucleus: an early model otherwise writes its most frequent token everywhere.
/// Returns whether the person changed anything.
fn decoding_controls(ui: &mut egui::Ui, decoding: &mut Decoding) -> bool {
    let mut draw = matches!(decoding, Decoding::Draw { .. });
    let mut changed = false;
    if ui
        .checkbox(&mut draw, "draw tokens")
        .on_hover_text(
            "Draw each token from the final distribution instead of taking the most likely one (argmax). On by default for text: argmax makes a young model repeat its most frequent tokens",
        )
        .changed()
    {
        changed = true;
        *decoding = if draw {
            Decoding::TEXT_DEFAULT
        } else {
            Decoding::Argmax
        };
    }
    if let Decoding::Draw { temperature, top_p } = decoding {
        changed |= labelled(
            ui,
            "temperature",
            egui::DragValue::new(temperature)
                .range(MIN_TEMPERATURE..=10.0)
                .speed(0.05),
        )
        .changed();
        changed |= labelled(ui, "top-p", egui::Slider::new(top_p, 0.05..=1.0)).changed();
    }
    changed
}

fn model_title(model: &SampledModel) -> String {
    format!(
        "{} · {} · {} {}",
        run_name(&model.dir),
        model.kind.short_name(),
        model.trajectory.steps,
        if model.trajectory.steps == 1 {
            "step"
        } else {
            "steps"
        }
    )
}

fn model_combo(
    ui: &mut egui::Ui,
    id: &str,
    selected: &mut Option<PathBuf>,
    models: &[(PathBuf, ModelKind)],
    label: egui::Id,
) {
    let text = selected.as_deref().map_or("choose…".into(), run_name);
    egui::ComboBox::from_id_salt(id)
        .selected_text(text)
        .width(200.0)
        .show_ui(ui, |ui| {
            for (dir, kind) in models {
                ui.selectable_value(
                    selected,
                    Some(dir.clone()),
                    format!("{} ({})", run_name(dir), kind.short_name()),
                );
            }
        })
        .response
        .labelled_by(label);
}

fn playback_bar(ui: &mut egui::Ui, playback: &mut Playback, main: &SampledModel) {
    ui.horizontal(|ui| {
        if ui.button("⏮").on_hover_text("First step").clicked() {
            playback.step = 0;
            playback.playing = false;
        }
        let label = if playback.playing {
            "⏸ Pause"
        } else {
            "▶ Play"
        };
        if ui.button(label).clicked() {
            playback.toggle();
        }
        let last = playback.last();
        let mut shown = playback.step + 1;
        let slider = egui::Slider::new(&mut shown, 1..=last + 1)
            .text(format!("/ {} steps", last + 1))
            .clamping(egui::SliderClamping::Always);
        ui.spacing_mut().slider_width = (ui.available_width() - 480.0).max(120.0);
        if ui.add(slider).changed() {
            playback.step = shown - 1;
            playback.playing = false;
        }
        labelled(
            ui,
            "speed",
            egui::DragValue::new(&mut playback.speed)
                .range(1.0..=120.0)
                .suffix(" steps/s"),
        );
        let trajectory = &main.trajectory;
        ui.monospace(format!(
            "τ={:.3} γ={:.3}",
            trajectory.taus[playback.step], trajectory.gammas[playback.step]
        ));
    });
}

/// γ(τ) with the steps taken and the current one: painted directly, since a plot widget's
/// layout (ticks, legend, interaction) cost about 2 ms a frame here while scrubbing, for a
/// chart that never changes but for its marker.
fn schedule_plot(ui: &mut egui::Ui, main: &SampledModel, step: usize) {
    let trajectory = &main.trajectory;
    let size = egui::vec2(ui.available_width(), 160.0);
    let (rect, response) = ui.allocate_exact_size(size, egui::Sense::hover());
    response.widget_info(|| {
        egui::WidgetInfo::labeled(egui::Role::Image, true, "time schedule gamma of tau")
    });
    let painter = ui.painter_at(rect);
    let plot = egui::Rect::from_min_max(
        rect.min + egui::vec2(28.0, 8.0),
        rect.max - egui::vec2(8.0, 22.0),
    );
    let at = |tau: f64, gamma: f64| {
        egui::pos2(
            plot.left() + tau.clamp(0.0, 1.0) as f32 * plot.width(),
            plot.bottom() - gamma.clamp(0.0, 1.0) as f32 * plot.height(),
        )
    };
    let visuals = ui.visuals();
    let axis = egui::Stroke::new(1.0, visuals.weak_text_color());
    painter.line_segment([plot.left_bottom(), plot.right_bottom()], axis);
    painter.line_segment([plot.left_bottom(), plot.left_top()], axis);
    let font = egui::FontId::proportional(12.0);
    let text = visuals.text_color();
    let label = |pos: egui::Pos2, align: egui::Align2, s: &str| {
        painter.text(pos, align, s, font.clone(), text);
    };
    label(
        plot.left_bottom() + egui::vec2(0.0, 3.0),
        egui::Align2::CENTER_TOP,
        "0",
    );
    label(
        plot.right_bottom() + egui::vec2(0.0, 3.0),
        egui::Align2::CENTER_TOP,
        "1",
    );
    label(
        plot.center_bottom() + egui::vec2(0.0, 3.0),
        egui::Align2::CENTER_TOP,
        "τ",
    );
    label(
        plot.left_top() - egui::vec2(6.0, 0.0),
        egui::Align2::RIGHT_CENTER,
        "1",
    );
    label(
        plot.left_center() - egui::vec2(6.0, 0.0),
        egui::Align2::RIGHT_CENTER,
        "γ",
    );
    let curve: Vec<egui::Pos2> = main.schedule_curve.iter().map(|&[t, g]| at(t, g)).collect();
    painter.add(egui::Shape::line(
        curve,
        egui::Stroke::new(1.5, style::TRAIN_CURVE),
    ));
    for (&tau, &gamma) in trajectory.taus.iter().zip(&trajectory.gammas) {
        painter.circle_filled(at(tau, gamma), 1.5, text);
    }
    if let (Some(&tau), Some(&gamma)) = (trajectory.taus.get(step), trajectory.gammas.get(step)) {
        painter.circle_filled(at(tau, gamma), 5.0, style::VALID_CURVE);
    }
}

/// The second model at the same point of progress: its step whose share of the way matches.
pub fn matching_step(step: usize, steps: usize, other_steps: usize) -> usize {
    let progress = (step + 1) as f64 / steps.max(1) as f64;
    ((progress * other_steps as f64).ceil() as usize).clamp(1, other_steps.max(1)) - 1
}

fn comparison(
    ui: &mut egui::Ui,
    main: &SampledModel,
    other: &SampledModel,
    sample: usize,
    step: usize,
) {
    ui.strong("Same noise, two models");
    let other_step = matching_step(step, main.trajectory.steps, other.trajectory.steps);
    ui.columns(2, |columns| {
        let [left, right] = columns else { return };
        for (ui, model, at) in [(left, main, step), (right, other, other_step)] {
            ui.label(format!(
                "{} — step {}/{}",
                model_title(model),
                at + 1,
                model.trajectory.steps
            ));
            let frame = &model.trajectory.samples[sample].frames[at];
            ui.push_id(model.dir.display().to_string(), |ui| {
                let fixed = &model.trajectory.fixed;
                let decoded = final_tokens(&model.trajectory, sample, at);
                let top_k = model.trajectory.top_k;
                widgets::token_text(ui, frame, top_k, &model.vocab, fixed, decoded);
            });
            if model.trajectory.steps == 1 && !model.trajectory.fixed.is_empty() {
                one_step_note(ui);
            }
            if let Some(valid) = model.valid[sample] {
                ui.label(if valid {
                    "final: ✔ valid"
                } else {
                    "final: ✖ invalid"
                });
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matching_step_maps_progress() {
        // 32 Euler steps against a 1-step flow map: the one step is the end.
        assert_eq!(matching_step(0, 32, 1), 0);
        assert_eq!(matching_step(31, 32, 1), 0);
        // Same length: identity.
        assert_eq!(matching_step(5, 8, 8), 5);
        // 4 steps against 8: halfway is step 3 of 4 (index 1 → 2 of 4).
        assert_eq!(matching_step(3, 8, 4), 1);
        assert_eq!(matching_step(7, 8, 4), 3);
    }

    #[test]
    fn the_text_strip_ends_on_the_decoded_tokens() {
        use crate::flow::trajectory::{Frame, SampleTrajectory};
        let frame = Frame {
            argmax: vec![4, 4],
            max_prob: vec![0.5, 0.5],
            entropy: vec![1.0, 1.0],
            flipped: vec![false, false],
            top_ids: Vec::new(),
            top_probs: Vec::new(),
        };
        let trajectory = Trajectory {
            sampler: "euler".into(),
            steps: 2,
            seed: 0,
            eta: 0.0,
            seq_len: 2,
            vocab_size: 9,
            top_k: 0,
            fixed: Vec::new(),
            taus: vec![0.0, 0.5],
            gammas: vec![0.0, 0.5],
            samples: vec![SampleTrajectory {
                frames: vec![frame.clone(), frame],
                // Drawn, not the argmax.
                tokens: vec![7, 2],
            }],
        };
        assert_eq!(final_tokens(&trajectory, 0, 0), None);
        assert_eq!(final_tokens(&trajectory, 0, 1), Some(&[7, 2][..]));
        assert_eq!(final_tokens(&trajectory, 1, 1), None);
    }
}
