//! The training loop shared by FLM training (DESIGN §4) and flow-map distillation (DESIGN §6):
//! the objective's loss, AdamW, EMA; validation, previews and atomic checkpoints along the way.

use std::sync::mpsc::Sender;
use std::time::{Duration, Instant};

use burn::module::Module;
use burn::optim::GradientsParams;
use burn::tensor::Device;
use thiserror::Error;

use super::checkpoint::{
    CheckpointError, RunDir, TrainingState, load_resume_state, save_checkpoint,
};
use super::config::RunConfig;
use super::ema;
use super::events::{ReadabilityNote, RunControl, StopReason, TrainEvent};
use super::metrics_log::{self, MetricLine};
use super::objective::Objective;
use super::optimizer::AdamW;
use super::readability::Readability;
use crate::data::DataSource;
use crate::device::ComputeDevice;
use crate::flow::Schedule;
use crate::generate::{GenerateRequest, Generator};
use crate::model::{Dit, ModelKind};
use crate::rng::stream_rng;

/// Why training could not go on.
#[derive(Debug, Error)]
pub enum TrainError {
    #[error(
        "the loss became {value} at step {step}; training stopped{}\n  hint: lower --lr or keep the default grad clipping",
        match last_checkpoint { Some(s) => format!(" and the checkpoint of step {s} is kept"), None => String::new() }
    )]
    NonFinite {
        step: u64,
        value: f64,
        last_checkpoint: Option<u64>,
    },
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    #[error("{0}")]
    Setup(String),
}

/// Everything one training run needs.
pub struct TrainJob {
    pub run: RunDir,
    pub config: RunConfig,
    pub data: DataSource,
    /// What is minimised; see [`Objective::for_run`].
    pub objective: Objective,
    pub device: ComputeDevice,
    /// Stop when the total step count reaches this.
    pub target_steps: Option<u64>,
    /// Stop when this session has trained this long.
    pub budget: Option<Duration>,
    /// The run directory's lock, held until training returns.
    pub lock: super::lock::RunLock,
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainSummary {
    pub final_step: u64,
    pub reason: StopReason,
    pub last_train_loss: Option<f64>,
    pub last_valid_loss: Option<f64>,
    pub tokens_per_sec: f64,
}

/// Preview samples use a fixed seed so successive previews are comparable.
const PREVIEW_SEED: u64 = 1234;

/// Runs (or resumes) training until the step target, the time budget or a stop request.
pub fn train(
    job: TrainJob,
    control: &RunControl,
    events: &Sender<TrainEvent>,
) -> Result<TrainSummary, TrainError> {
    let TrainJob {
        run,
        config,
        data,
        objective,
        device,
        target_steps,
        budget,
        lock: _lock,
    } = job;
    let settings = &config.train;
    let base_device = device.device.clone();
    let grad_device = base_device.clone().autodiff();
    let schedule =
        Schedule::new(config.model.vocab_size).map_err(|e| TrainError::Setup(e.to_string()))?;

    let (mut model, mut average, mut optimizer, mut state) = if run.has_checkpoint() {
        let resumed = load_resume_state(&run, &config, &grad_device)?;
        metrics_log::truncate_after(&run.metrics_path(), resumed.state.step)?;
        (
            resumed.online,
            resumed.ema,
            resumed.optimizer,
            resumed.state,
        )
    } else {
        // Lines from an attempt that died before its first checkpoint describe no saved state.
        metrics_log::truncate_after(&run.metrics_path(), 0)?;
        let model = objective.initial_model(&config, settings.seed, &grad_device);
        let average = ema::snapshot(&model);
        let state = TrainingState {
            step: 0,
            elapsed_secs: 0.0,
            tokens_seen: 0,
            last_train_loss: None,
            last_valid_loss: None,
        };
        (model, average, AdamW::new(settings.adamw.clone()), state)
    };
    let mut last_checkpoint = run.has_checkpoint().then_some(state.step);

    let (batch, seq_len) = (settings.batch_size, data.seq_len());
    let tokens_per_step = batch * seq_len;
    let valid_batches = data.valid_batches(settings.seed, batch, settings.eval_batches);
    let send = |event: TrainEvent| {
        // A closed channel only means nobody is watching; training goes on.
        let _ = events.send(event);
    };
    send(TrainEvent::Started {
        device: device.description.clone(),
        parameters: config.model.num_params(),
        start_step: state.step,
        target_steps,
        budget_secs: budget.map(|b| b.as_secs_f64()),
        tokens_per_step,
    });

    let probe = objective.flow_map_probe(&data, &schedule, &base_device);
    // Validation loss of the EMA weights (and the flow-map probe), logged and reported.
    let validate = |average: &Dit, step: u64| -> Result<f64, CheckpointError> {
        let (loss, parts) = objective.validation_loss(
            average,
            &valid_batches,
            seq_len,
            settings.seed,
            &schedule,
            &base_device,
        );
        let probed = probe
            .as_ref()
            .map(|probe| probe.measure(average, &data, &schedule, &base_device))
            .unwrap_or_default();
        let record = MetricLine {
            step,
            valid_loss: Some(loss),
            ..MetricLine::default()
        }
        .with_parts("valid_", &parts)
        .with_parts("", &probed);
        metrics_log::append(&run.metrics_path(), &record)?;
        let metrics = parts.into_iter().chain(probed).collect();
        send(TrainEvent::Validation {
            step,
            loss,
            metrics,
        });
        Ok(loss)
    };

    let session_start = Instant::now();
    let start_elapsed = state.elapsed_secs;
    let mut paused_for = Duration::ZERO;
    let mut window = LossWindow::default();
    let mut last_checkpoint_time = Instant::now();
    let mut last_throughput = 0.0;
    let mut validated_at = None;

    let reason = loop {
        if control.stop_requested() {
            break StopReason::Interrupted;
        }
        if target_steps.is_some_and(|target| state.step >= target) {
            break StopReason::StepsDone;
        }
        let active = session_start.elapsed() - paused_for;
        if budget.is_some_and(|b| active >= b) {
            break StopReason::TimeUp;
        }
        if control.is_paused() {
            let pause_start = Instant::now();
            while control.is_paused() && !control.stop_requested() {
                std::thread::sleep(Duration::from_millis(50));
            }
            paused_for += pause_start.elapsed();
            continue;
        }

        // One optimisation step.
        let step_index = state.step;
        let mut rng = stream_rng(settings.seed, step_index + 1);
        let tokens = data.train_batch(&mut rng, batch);
        let batch_loss =
            objective.loss(&model, &tokens, seq_len, &mut rng, &schedule, &base_device);
        let loss = batch_loss.loss;
        let loss_value = loss.clone().into_scalar::<f32>() as f64;
        if !loss_value.is_finite() {
            return Err(TrainError::NonFinite {
                step: step_index + 1,
                value: loss_value,
                last_checkpoint,
            });
        }
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        let progress = run_progress(step_index, target_steps, budget, active);
        let learning_rate = settings.learning_rate_at(step_index, progress);
        let (updated, grad_norm) = optimizer.step(model, grads, learning_rate);
        model = updated;
        if !grad_norm.is_finite() {
            return Err(TrainError::NonFinite {
                step: step_index + 1,
                value: grad_norm,
                last_checkpoint,
            });
        }
        average = ema::update(
            average,
            &model,
            ema::decay_at(step_index, settings.ema_decay),
        );

        state.step += 1;
        state.tokens_seen += tokens_per_step as u64;
        state.elapsed_secs = start_elapsed + (session_start.elapsed() - paused_for).as_secs_f64();
        state.last_train_loss = Some(loss_value);
        window.add(loss_value, &batch_loss.parts, tokens_per_step);
        let step = state.step;

        if step % settings.log_every == 0 || step == 1 {
            let (mean_loss, parts, tokens_per_sec) = window.take();
            last_throughput = tokens_per_sec;
            let eta_secs = eta(
                step,
                target_steps,
                budget,
                active,
                tokens_per_sec,
                tokens_per_step,
            );
            let record = MetricLine {
                step,
                loss: Some(mean_loss),
                lr: Some(learning_rate),
                grad_norm: Some(grad_norm),
                tokens_per_sec: Some(tokens_per_sec),
                elapsed_secs: Some(state.elapsed_secs),
                ..MetricLine::default()
            }
            .with_parts("", &parts);
            metrics_log::append(&run.metrics_path(), &record)?;
            send(TrainEvent::Step {
                step,
                loss: mean_loss,
                learning_rate,
                grad_norm,
                tokens_per_sec,
                elapsed_secs: state.elapsed_secs,
                eta_secs,
            });
        }
        if step % settings.eval_every == 0 {
            state.last_valid_loss = Some(validate(&average, step)?);
            validated_at = Some(step);
        }
        if step % settings.sample_every == 0
            && let Some(what) = objective.preview()
        {
            let progress = (state.tokens_seen as f64, last_throughput);
            let event = preview(&average, what, &data, (step, progress), &base_device);
            if let TrainEvent::Samples {
                readability: Some(note),
                ..
            } = &event
            {
                metrics_log::append(&run.metrics_path(), &readability_line(step, &note.measured))?;
            }
            send(event);
        }
        if step % settings.checkpoint_every == 0
            || last_checkpoint_time.elapsed().as_secs_f64() >= settings.checkpoint_secs
        {
            let dir = save_checkpoint(&run, &model.valid(), &average, &optimizer, &state)?;
            last_checkpoint = Some(step);
            last_checkpoint_time = Instant::now();
            send(TrainEvent::Checkpoint { step, dir });
        }
    };

    // The final checkpoint carries a validation loss of its own weights, not an older one.
    let needs_validation = state.step > 0 && validated_at != Some(state.step);
    if needs_validation || last_checkpoint != Some(state.step) {
        if needs_validation {
            state.last_valid_loss = Some(validate(&average, state.step)?);
        }
        let dir = save_checkpoint(&run, &model.valid(), &average, &optimizer, &state)?;
        send(TrainEvent::Checkpoint {
            step: state.step,
            dir,
        });
    }
    send(TrainEvent::Finished {
        step: state.step,
        reason,
    });
    Ok(TrainSummary {
        final_step: state.step,
        reason,
        last_train_loss: state.last_train_loss,
        last_valid_loss: state.last_valid_loss,
        tokens_per_sec: last_throughput,
    })
}

/// Samples of the EMA weights with the model's own sampler; built-in tasks sample enough
/// sequences for the valid fraction to mean something. Text previews say how they read, and
/// what that means after `tokens_seen` training tokens at `tokens_per_sec`.
fn preview(
    model: &Dit,
    (kind, steps): (ModelKind, usize),
    data: &DataSource,
    (step, (tokens_seen, tokens_per_sec)): (u64, (f64, f64)),
    device: &Device,
) -> TrainEvent {
    let generator = Generator {
        model,
        kind,
        tokenizer: data.tokenizer(),
        task: data.task(),
        seq_len: data.seq_len(),
    };
    let request = GenerateRequest {
        seed: PREVIEW_SEED,
        decoding: crate::flow::Decoding::default_for(data.task().is_some()),
        ..GenerateRequest::new(steps, if data.task().is_some() { 32 } else { 4 })
    };
    match generator.generate_all(&request, device) {
        Ok(generation) => TrainEvent::Samples {
            step,
            sampler: generation.sampler.name(),
            steps,
            valid_fraction: generation.valid_fraction(),
            readability: data.lexicon().map(|lexicon| {
                let held_out = data.valid_batches(PREVIEW_SEED, request.samples, 1);
                let held_out: Vec<Vec<u32>> = held_out
                    .iter()
                    .flat_map(|batch| batch.chunks(data.seq_len()).map(<[u32]>::to_vec))
                    .collect();
                let measured =
                    Readability::measure(&generation.texts, &generation.tokens, lexicon, &held_out);
                ReadabilityNote {
                    advice: measured.advice(tokens_seen, tokens_per_sec),
                    measured,
                }
            }),
            texts: generation.texts,
        },
        // The request is fixed and valid for the run's own kind; say so if that ever breaks.
        Err(error) => TrainEvent::Samples {
            step,
            sampler: "none",
            steps,
            valid_fraction: None,
            readability: None,
            texts: vec![format!("(no preview: {error})")],
        },
    }
}

/// A preview's readability as a `metrics.jsonl` line, for curves drawn after the run.
fn readability_line(step: u64, r: &Readability) -> MetricLine {
    MetricLine {
        step,
        ..MetricLine::default()
    }
    .with_parts(
        "",
        &[
            ("sample_real_words", r.real_words.unwrap_or(0.0)),
            ("sample_entropy", r.entropy),
            ("data_entropy", r.data_entropy),
        ],
    )
}

/// How far through its limits this session is, in [0, 1): the larger of the step and time
/// shares (0 without limits). The learning-rate decay follows it.
fn run_progress(
    step: u64,
    target_steps: Option<u64>,
    budget: Option<Duration>,
    active: Duration,
) -> f64 {
    let by_steps = target_steps.map_or(0.0, |target| step as f64 / target.max(1) as f64);
    let by_time = budget.map_or(0.0, |b| active.as_secs_f64() / b.as_secs_f64().max(1e-9));
    by_steps.max(by_time).clamp(0.0, 1.0)
}

/// Seconds left: by the step target at the current speed, or by the time budget, whichever
/// comes first.
fn eta(
    step: u64,
    target_steps: Option<u64>,
    budget: Option<Duration>,
    active: Duration,
    tokens_per_sec: f64,
    tokens_per_step: usize,
) -> Option<f64> {
    let by_steps = target_steps.and_then(|target| {
        (tokens_per_sec > 0.0)
            .then(|| target.saturating_sub(step) as f64 * tokens_per_step as f64 / tokens_per_sec)
    });
    let by_time = budget.map(|b| b.saturating_sub(active).as_secs_f64());
    match (by_steps, by_time) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Mean loss (and its named parts) and throughput since the last progress event.
struct LossWindow {
    losses: f64,
    /// Name, sum and count of each loss part.
    parts: Vec<(&'static str, f64, usize)>,
    count: usize,
    tokens: usize,
    since: Instant,
}

impl Default for LossWindow {
    fn default() -> Self {
        Self {
            losses: 0.0,
            parts: Vec::new(),
            count: 0,
            tokens: 0,
            since: Instant::now(),
        }
    }
}

impl LossWindow {
    fn add(&mut self, loss: f64, parts: &[(&'static str, f64)], tokens: usize) {
        self.losses += loss;
        for &(name, value) in parts {
            match self.parts.iter_mut().find(|(n, ..)| *n == name) {
                Some((_, sum, count)) => {
                    *sum += value;
                    *count += 1;
                }
                None => self.parts.push((name, value, 1)),
            }
        }
        self.count += 1;
        self.tokens += tokens;
    }

    /// Mean loss, mean parts (over the steps that had them: group sizes vary) and tokens/s.
    fn take(&mut self) -> (f64, Vec<(&'static str, f64)>, f64) {
        let secs = self.since.elapsed().as_secs_f64().max(1e-9);
        let count = self.count.max(1) as f64;
        let result = (
            self.losses / count,
            self.parts
                .iter()
                .map(|&(name, sum, n)| (name, sum / n as f64))
                .collect(),
            self.tokens as f64 / secs,
        );
        *self = Self::default();
        result
    }
}
