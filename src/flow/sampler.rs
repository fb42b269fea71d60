//! Sampling: Euler steps for FLMs (DESIGN §5) and flow-map jumps for FMLMs (DESIGN §7), both
//! on a uniform τ grid from the same starting noise, recording what the app draws.

use burn::tensor::activation::{log_softmax, softmax};
use burn::tensor::{Device, Tensor, TensorData};

use super::flow_map::FlowMapStep;
use super::noise::{standard_normal, stream_rng};
use super::schedule::Schedule;
use super::trajectory::{Frame, SampleTrajectory, Trajectory};
use crate::model::Dit;

/// How to sample.
#[derive(Debug, Clone, PartialEq)]
pub struct SamplerSettings {
    /// Number of network calls N ≥ 1.
    pub steps: usize,
    pub seed: u64,
    /// Which batch of this seed: a request split into batches uses streams 0, 1, …, so two
    /// seeds never share samples.
    pub stream: u64,
    /// Sequences generated together in one batch.
    pub batch: usize,
    pub seq_len: usize,
    /// Candidates kept per position in the trajectory (0 = record nothing).
    pub top_k: usize,
}

/// Which sampler to run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SamplerKind {
    /// Euler steps of the one-time denoiser (FLM).
    Euler,
    /// Jumps of the two-time flow map (FMLM) with stochasticity `eta ∈ [0, 1]`.
    FlowMap { eta: f64 },
}

impl SamplerKind {
    /// The name stored in trajectories and printed in JSON output.
    pub fn name(self) -> &'static str {
        match self {
            SamplerKind::Euler => "euler",
            SamplerKind::FlowMap { .. } => "flow-map",
        }
    }

    pub fn eta(self) -> f64 {
        match self {
            SamplerKind::Euler => 0.0,
            SamplerKind::FlowMap { eta } => eta,
        }
    }
}

/// Runs `kind` on `model`.
pub fn sample(
    model: &Dit,
    kind: SamplerKind,
    schedule: &Schedule,
    settings: &SamplerSettings,
    device: &Device,
) -> SampleOutput {
    match kind {
        SamplerKind::Euler => euler_sample(model, schedule, settings, device),
        SamplerKind::FlowMap { eta } => flow_map_sample(model, schedule, settings, eta, device),
    }
}

/// Sampled token ids per sequence, and the recorded trajectory when `top_k > 0`.
pub struct SampleOutput {
    pub tokens: Vec<Vec<u32>>,
    pub trajectory: Option<Trajectory>,
}

/// The starting noise `z ~ N(0, I)` (B, L, V) for a seed: shared by every sampler, so FLM and
/// FMLM runs with the same seed start from the same point.
pub fn initial_noise(settings: &SamplerSettings, vocab: usize, device: &Device) -> Tensor<3> {
    let shape = [settings.batch, settings.seq_len, vocab];
    let mut rng = stream_rng(settings.seed, settings.stream);
    let values = standard_normal(&mut rng, shape.iter().product());
    Tensor::from_data(TensorData::new(values, shape), device)
}

/// Euler sampler of DESIGN §5 with the final jump `z = D` at the last step.
pub fn euler_sample(
    model: &Dit,
    schedule: &Schedule,
    settings: &SamplerSettings,
    device: &Device,
) -> SampleOutput {
    assert!(settings.steps >= 1, "at least one step");
    let vocab = model.vocab_size();
    let grid = schedule.uniform_grid(settings.steps);
    let mut recorder = TrajectoryRecorder::new(settings, vocab, "euler", 0.0);
    let mut z = initial_noise(settings, vocab, device);
    for (i, window) in grid.windows(2).enumerate() {
        let ((tau, gamma), (_, next_gamma)) = (window[0], window[1]);
        let tau_batch = Tensor::<1>::full([settings.batch], tau as f32, device);
        let logits = model.forward(z.clone(), tau_batch, None);
        recorder.record(&logits, tau, gamma);
        let denoised = softmax(logits, 2);
        z = if i + 1 == settings.steps {
            denoised
        } else {
            let rate = (next_gamma - gamma) / (1.0 - gamma);
            z.clone() + (denoised - z) * rate
        };
    }
    let tokens = argmax_tokens(z);
    SampleOutput {
        trajectory: recorder.finish(&tokens),
        tokens,
    }
}

/// Fresh noise ξ of the stochastic flow-map steps comes from its own streams, far from the
/// streams of the starting noise, so η = 0 and η > 0 start from the same point.
const STEP_NOISE_STREAM_BASE: u64 = 1 << 48;

/// The N-step flow-map sampler of DESIGN §7: one network call per step, the last one's
/// denoiser output is the sample. With `eta = 0` it is deterministic; one step is the same
/// for every `eta`.
pub fn flow_map_sample(
    model: &Dit,
    schedule: &Schedule,
    settings: &SamplerSettings,
    eta: f64,
    device: &Device,
) -> SampleOutput {
    assert!(settings.steps >= 1, "at least one step");
    assert!((0.0..=1.0).contains(&eta), "η must be in [0, 1]");
    let vocab = model.vocab_size();
    let plan = FlowMapStep::plan(schedule, settings.steps, eta);
    let mut recorder = TrajectoryRecorder::new(settings, vocab, "flow-map", eta as f32);
    let mut z = initial_noise(settings, vocab, device);
    let mut step_noise = stream_rng(settings.seed, STEP_NOISE_STREAM_BASE + settings.stream);
    let shape = [settings.batch, settings.seq_len, vocab];
    for (i, step) in plan.iter().enumerate() {
        let tau_s = Tensor::<1>::full([settings.batch], step.tau as f32, device);
        let tau_t = Tensor::<1>::full([settings.batch], step.target_tau as f32, device);
        let logits = model.forward(z.clone(), tau_s, Some(tau_t));
        recorder.record(&logits, step.tau, step.gamma);
        let denoised = softmax(logits, 2);
        z = if i + 1 == plan.len() {
            denoised
        } else {
            let noise = (eta > 0.0).then(|| {
                let values = standard_normal(&mut step_noise, shape.iter().product());
                (
                    eta,
                    Tensor::from_data(TensorData::new(values, shape), device),
                )
            });
            step.advance(z, denoised, noise)
        };
    }
    let tokens = argmax_tokens(z);
    SampleOutput {
        trajectory: recorder.finish(&tokens),
        tokens,
    }
}

/// Per-row argmax of (B, L, V), read back as token ids.
pub fn argmax_tokens(z: Tensor<3>) -> Vec<Vec<u32>> {
    let [batch, len, _] = z.dims();
    let ids = z.argmax(2).reshape([batch * len]);
    let ids: Vec<i64> = ids
        .into_data()
        .convert::<i64>()
        .try_into_vec()
        .expect("argmax ids are integers");
    ids.chunks(len)
        .map(|row| row.iter().map(|&id| id as u32).collect())
        .collect()
}

/// Collects per-step statistics; only (B, L, k) numbers ever leave the device.
pub struct TrajectoryRecorder {
    trajectory: Option<Trajectory>,
    batch: usize,
    seq_len: usize,
}

impl TrajectoryRecorder {
    pub fn new(settings: &SamplerSettings, vocab: usize, sampler: &str, eta: f32) -> Self {
        let trajectory = (settings.top_k > 0).then(|| Trajectory {
            sampler: sampler.to_string(),
            steps: settings.steps,
            seed: settings.seed,
            eta,
            seq_len: settings.seq_len,
            vocab_size: vocab,
            top_k: settings.top_k.min(vocab),
            taus: Vec::new(),
            gammas: Vec::new(),
            samples: vec![
                SampleTrajectory {
                    frames: Vec::new(),
                    tokens: Vec::new()
                };
                settings.batch
            ],
        });
        Self {
            trajectory,
            batch: settings.batch,
            seq_len: settings.seq_len,
        }
    }

    /// Records the denoiser output whose logits are given, evaluated at `(tau, gamma)`.
    pub fn record(&mut self, logits: &Tensor<3>, tau: f64, gamma: f64) {
        let Some(trajectory) = self.trajectory.as_mut() else {
            return;
        };
        let k = trajectory.top_k;
        let log_probs = log_softmax(logits.clone(), 2);
        let probs = log_probs.clone().exp();
        let entropy = (probs.clone() * log_probs).sum_dim(2).neg(); // (B, L, 1)
        let (top_probs, top_ids) = probs.topk_with_indices(k, 2); // (B, L, k)
        let entropy = read_f32(entropy);
        let top_probs = read_f32(top_probs);
        let top_ids: Vec<i64> = top_ids
            .into_data()
            .convert::<i64>()
            .try_into_vec()
            .expect("top-k ids are integers");

        trajectory.taus.push(tau);
        trajectory.gammas.push(gamma);
        let per_sample = self.seq_len * k;
        for (b, sample) in trajectory.samples.iter_mut().enumerate().take(self.batch) {
            let ids: Vec<u32> = top_ids[b * per_sample..(b + 1) * per_sample]
                .iter()
                .map(|&id| id as u32)
                .collect();
            let probs = top_probs[b * per_sample..(b + 1) * per_sample].to_vec();
            let argmax: Vec<u32> = ids.iter().step_by(k).copied().collect();
            let flipped = match sample.frames.last() {
                Some(previous) => argmax
                    .iter()
                    .zip(&previous.argmax)
                    .map(|(now, before)| now != before)
                    .collect(),
                None => vec![false; self.seq_len],
            };
            sample.frames.push(Frame {
                max_prob: probs.iter().step_by(k).copied().collect(),
                entropy: entropy[b * self.seq_len..(b + 1) * self.seq_len].to_vec(),
                argmax,
                flipped,
                top_ids: ids,
                top_probs: probs,
            });
        }
    }

    pub fn finish(self, tokens: &[Vec<u32>]) -> Option<Trajectory> {
        let mut trajectory = self.trajectory?;
        for (sample, tokens) in trajectory.samples.iter_mut().zip(tokens) {
            sample.tokens = tokens.clone();
        }
        Some(trajectory)
    }
}

fn read_f32<const D: usize>(tensor: Tensor<D>) -> Vec<f32> {
    tensor
        .into_data()
        .convert::<f32>()
        .try_into_vec()
        .expect("float tensor")
}
