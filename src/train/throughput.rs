//! `flm bench train`: how long one FLM training step takes (loss, backward, AdamW update, the
//! loss read back as the trainer does) with the fused noisy-input kernel and with the input
//! drawn on the host. Whole training runs vary by ±10% on a shared machine, more than the
//! difference; here the two alternate step by step in one process on one model, so drift
//! affects both alike.

use std::time::Instant;

use burn::optim::GradientsParams;
use burn::tensor::Device;
use rand::Rng;
use serde::Serialize;

use super::objective::denoising_loss;
use super::optimizer::{AdamW, AdamWSettings};
use crate::flow::Schedule;
use crate::kernels::KernelPath;
use crate::kernels::bench::median;
use crate::model::{Dit, ModelConfig, ModelPreset};
use crate::rng::stream_rng;

/// Untimed steps of each kind before timing (kernel compilation and autotuning).
const WARMUP: usize = 3;

/// The step shape and the median step time of each input path.
#[derive(Debug, Clone, Serialize)]
pub struct StepTimes {
    pub preset: String,
    pub vocab: usize,
    pub batch: usize,
    pub seq_len: usize,
    /// Timed steps of each kind.
    pub steps: usize,
    pub fused_ms: f64,
    pub host_ms: f64,
    pub fused_tokens_per_sec: f64,
    pub host_tokens_per_sec: f64,
}

/// Times `steps` training steps with each input path on `device` (a device without autodiff;
/// the model trains on its autodiff wrapper). Token ids are random: a step's cost does not
/// depend on them. Fails only for a vocabulary the schedule rejects.
pub fn time_training_steps(
    device: &Device,
    preset: ModelPreset,
    vocab: usize,
    batch: usize,
    seq_len: usize,
    steps: usize,
) -> Result<StepTimes, String> {
    let schedule = Schedule::new(vocab).map_err(|e| e.to_string())?;
    let grad_device = device.clone().autodiff();
    let config = ModelConfig::from_preset(preset, vocab, seq_len);
    let mut model = Dit::new(&config, 0, &grad_device);
    let mut optimizer = AdamW::new(AdamWSettings::default());
    let (mut fused, mut host) = (Vec::new(), Vec::new());
    for i in 0..2 * (WARMUP + steps) {
        let path = if i % 2 == 0 {
            KernelPath::Auto
        } else {
            KernelPath::Reference
        };
        let mut rng = stream_rng(7, i as u64);
        let tokens: Vec<u32> = (0..batch * seq_len)
            .map(|_| rng.random_range(0..vocab as u32))
            .collect();
        let started = Instant::now();
        let loss = denoising_loss(&model, &tokens, seq_len, &mut rng, &schedule, device, path);
        std::hint::black_box(loss.clone().into_scalar::<f32>());
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optimizer.step(model, grads, 1e-4).0;
        device.sync().map_err(|e| format!("device sync: {e:?}"))?;
        let ms = started.elapsed().as_secs_f64() * 1000.0;
        if i >= 2 * WARMUP {
            if path == KernelPath::Auto {
                &mut fused
            } else {
                &mut host
            }
            .push(ms);
        }
    }
    let tokens = (batch * seq_len) as f64;
    let (fused_ms, host_ms) = (median(fused), median(host));
    Ok(StepTimes {
        preset: preset.name().to_string(),
        vocab,
        batch,
        seq_len,
        steps,
        fused_ms,
        host_ms,
        fused_tokens_per_sec: tokens / fused_ms * 1000.0,
        host_tokens_per_sec: tokens / host_ms * 1000.0,
    })
}
