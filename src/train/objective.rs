//! What a run optimises: the FLM denoising loss (DESIGN §4) or flow-map distillation
//! (DESIGN §6). Everything else about training — optimizer, EMA, validation cadence,
//! checkpoints, progress — is shared, so the loop in `trainer.rs` does not care which.

use burn::tensor::{Device, Int, Tensor, TensorData};
use rand_chacha::ChaCha8Rng;

use super::checkpoint::{CheckpointError, RunDir, load_weights};
use super::config::{ModelKind, RunConfig};
use crate::flow::Schedule;
use crate::flow::distill::{DistillBatch, FlowMapObjective, SecondTimeInit};
use crate::flow::interpolant::BatchTimes;
use crate::flow::loss::cross_entropy;
use crate::kernels::KernelPath;
use crate::kernels::noisy_input::noisy_input;
use crate::model::Dit;
use crate::model::causal::next_token_logits;
use crate::rng::stream_rng;
use rand::RngCore;

/// The loss a run minimises.
pub enum Objective {
    /// Cross-entropy of the one-time denoiser against the clean tokens.
    Denoising,
    /// Semigroup distillation of a two-time flow map.
    FlowMap(Box<FlowMapObjective>),
    /// Next-token cross-entropy of the causal reference model (no noise, no time).
    NextToken,
}

/// One batch's loss, with named parts for the metrics log.
pub struct BatchLoss {
    /// Scalar on the model's device (autodiff when training).
    pub loss: Tensor<1>,
    pub parts: Vec<(&'static str, f64)>,
}

/// Validation streams sit far from the training streams `1..=steps`.
const VALID_STREAM_BASE: u64 = 1 << 40;

impl Objective {
    /// The objective `config` describes; a distillation run loads the frozen teacher that
    /// was copied into the run directory, on `device` (no gradients).
    pub fn for_run(
        config: &RunConfig,
        run: &RunDir,
        device: &Device,
    ) -> Result<Self, CheckpointError> {
        match (config.kind, &config.distill) {
            (ModelKind::Flm, _) => Ok(Objective::Denoising),
            (ModelKind::Autoregressive, _) => Ok(Objective::NextToken),
            (ModelKind::FlowMap, Some(distill)) => {
                let teacher = match distill.teacher {
                    Some(_) => Some(load_weights(
                        &run.teacher_path(),
                        &config.teacher_config(),
                        device,
                    )?),
                    None => None,
                };
                Ok(Objective::FlowMap(Box::new(FlowMapObjective::new(
                    teacher,
                    distill.settings.clone(),
                ))))
            }
            (ModelKind::FlowMap, None) => Err(CheckpointError::Corrupt {
                path: run.config_path(),
                reason: "a flow-map run needs a `distill` section".into(),
            }),
        }
    }

    /// The weights a fresh run starts from: random for an FLM or a self-distilled flow map,
    /// the teacher plus a silent second time embedder for a distilled one (`device` is the
    /// training device).
    pub fn initial_model(&self, config: &RunConfig, seed: u64, device: &Device) -> Dit {
        let teacher = match self {
            Objective::FlowMap(objective) => objective.teacher.as_ref(),
            Objective::Denoising | Objective::NextToken => None,
        };
        let Some(teacher) = teacher else {
            return Dit::new(&config.model, seed, device);
        };
        let second_time_init = match self {
            Objective::FlowMap(objective) => objective.settings.second_time_init,
            Objective::Denoising | Objective::NextToken => SecondTimeInit::Random,
        };
        let weights = super::params::flat_params(teacher);
        let copy = super::params::map_params(
            Dit::new(&config.teacher_config().model, seed, device),
            &mut |path, _, value| match weights.get(path) {
                Some(taught) => taught.clone().to_device(&value.device()),
                None => value,
            },
        );
        match second_time_init {
            SecondTimeInit::Random => copy.with_second_time(seed),
            SecondTimeInit::Teacher => copy.with_second_time_like_first(),
        }
    }

    /// The one-step probe of a flow-map run (its teacher sampled once), `None` otherwise.
    pub fn flow_map_probe(
        &self,
        data: &crate::data::DataSource,
        schedule: &Schedule,
        device: &Device,
    ) -> Option<super::probe::FlowMapProbe> {
        match self {
            Objective::FlowMap(objective) => Some(super::probe::FlowMapProbe::new(
                objective.teacher.as_ref(),
                objective.settings.teacher_steps,
                data,
                schedule,
                device,
            )),
            Objective::Denoising | Objective::NextToken => None,
        }
    }

    /// What previews sample, and in how many steps: the model's own sampler (the reference
    /// model only scores text, so it has none).
    pub fn preview(&self) -> Option<(ModelKind, usize)> {
        match self {
            Objective::Denoising => Some((ModelKind::Flm, 32)),
            Objective::FlowMap(_) => Some((ModelKind::FlowMap, 1)),
            Objective::NextToken => None,
        }
    }

    /// The loss of `model` on `tokens` (B·L ids), drawing times and noise from `rng`.
    /// `base_device` is the device without autodiff, where targets are computed.
    pub fn loss(
        &self,
        model: &Dit,
        tokens: &[u32],
        seq_len: usize,
        rng: &mut ChaCha8Rng,
        schedule: &Schedule,
        base_device: &Device,
    ) -> BatchLoss {
        let vocab = model.vocab_size();
        match self {
            Objective::Denoising => BatchLoss {
                loss: denoising_loss(
                    model,
                    tokens,
                    seq_len,
                    rng,
                    schedule,
                    base_device,
                    KernelPath::Auto,
                ),
                parts: Vec::new(),
            },
            Objective::NextToken => {
                let device = model.embedding.val().device();
                let logits = next_token_logits(model, tokens, seq_len);
                let targets = token_tensor(tokens, tokens.len() / seq_len, seq_len, &device);
                BatchLoss {
                    loss: cross_entropy(logits, targets),
                    parts: Vec::new(),
                }
            }
            Objective::FlowMap(objective) => {
                let batch = DistillBatch {
                    tokens,
                    seq_len,
                    vocab,
                };
                let result = objective.loss(model, batch, rng, schedule, base_device);
                let parts = [
                    ("diagonal_loss", result.diagonal),
                    ("boundary_loss", result.boundary),
                    ("off_diagonal_loss", result.off_diagonal),
                ]
                .into_iter()
                .filter_map(|(name, value)| value.map(|v| (name, v)))
                .collect();
                BatchLoss {
                    loss: result.loss,
                    parts,
                }
            }
        }
    }

    /// Mean loss of `model` (no autodiff) over fixed batches, with fixed times and noise, so
    /// values from different steps are comparable. Parts are averaged the same way.
    pub fn validation_loss(
        &self,
        model: &Dit,
        batches: &[Vec<u32>],
        seq_len: usize,
        seed: u64,
        schedule: &Schedule,
        device: &Device,
    ) -> (f64, Vec<(&'static str, f64)>) {
        let mut total = 0.0;
        let mut parts: Vec<(&'static str, f64, usize)> = Vec::new();
        for (index, tokens) in batches.iter().enumerate() {
            let mut rng = stream_rng(seed, VALID_STREAM_BASE + index as u64);
            let batch = self.loss(model, tokens, seq_len, &mut rng, schedule, device);
            total += batch.loss.into_scalar::<f32>() as f64;
            for (name, value) in batch.parts {
                match parts.iter_mut().find(|(n, ..)| *n == name) {
                    Some((_, sum, count)) => {
                        *sum += value;
                        *count += 1;
                    }
                    None => parts.push((name, value, 1)),
                }
            }
        }
        let mean_parts = parts
            .into_iter()
            .map(|(name, sum, count)| (name, sum / count as f64))
            .collect();
        (total / batches.len().max(1) as f64, mean_parts)
    }
}

/// The FLM loss (DESIGN §4) on `tokens`: stratified times, the noisy input built through
/// `path` (the fused kernel or the host; the benchmark compares them), cross-entropy against
/// the clean tokens.
pub fn denoising_loss(
    model: &Dit,
    tokens: &[u32],
    seq_len: usize,
    rng: &mut ChaCha8Rng,
    schedule: &Schedule,
    base_device: &Device,
    path: KernelPath,
) -> Tensor<1> {
    let device = model.embedding.val().device();
    let batch = tokens.len() / seq_len;
    let times = BatchTimes::stratified(rng, batch, schedule);
    let noisy = noisy_input(
        tokens,
        &times.gammas,
        seq_len,
        model.vocab_size(),
        rng.next_u64(),
        path,
        base_device,
    );
    // The input is data, not a parameter: made without autodiff, then attached.
    let noisy = if device.is_autodiff() {
        Tensor::from_inner(noisy)
    } else {
        noisy
    };
    let logits = model.forward(noisy, times.tau_tensor(&device), None);
    let targets = token_tensor(tokens, batch, seq_len, &device);
    cross_entropy(logits, targets)
}

/// (B·L) ids → an Int tensor (B, L).
pub fn token_tensor(
    tokens: &[u32],
    batch: usize,
    seq_len: usize,
    device: &Device,
) -> Tensor<2, Int> {
    let ids: Vec<i64> = tokens.iter().map(|&t| t as i64).collect();
    Tensor::from_data(TensorData::new(ids, [batch, seq_len]), device)
}
