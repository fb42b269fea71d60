//! `flm bench train` and `flm bench sample`: how long one FLM training step (loss, backward,
//! AdamW, EMA, the loss read back, as the trainer does) and one sampling batch take on a
//! device, with flm's own kernels (WGSL on wgpu, the fused CPU kernels on the CPU) and without
//! them. The two alternate step by step in one process on one model, so a shared machine's
//! drift affects both alike. Peak memory is the process's high-water mark.

use std::time::Instant;

use burn::optim::GradientsParams;
use burn::tensor::Device;
use rand::Rng;
use serde::Serialize;

use super::ema;
use super::objective::denoising_loss;
use super::optimizer::{AdamW, AdamWSettings};
use crate::flow::{SamplerKind, SamplerSettings, Schedule, sample};
use crate::kernels::KernelPath;
use crate::kernels::bench::median;
use crate::model::{Dit, ModelConfig, ModelPreset};
use crate::rng::stream_rng;

/// Untimed repetitions of each kind before timing (compilation, autotuning, warm caches).
const WARMUP: usize = 3;

/// What is benchmarked: a model size and a batch.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct BenchShape {
    pub preset: ModelPreset,
    pub vocab: usize,
    pub batch: usize,
    pub seq_len: usize,
}

impl BenchShape {
    pub fn parameters(&self) -> usize {
        ModelConfig::from_preset(self.preset, self.vocab, self.seq_len).num_params()
    }

    fn tokens(&self) -> f64 {
        (self.batch * self.seq_len) as f64
    }
}

/// Median times with and without flm's kernels.
#[derive(Debug, Clone, Serialize)]
pub struct Timing {
    /// Timed repetitions of each kind.
    pub runs: usize,
    pub kernels_ms: f64,
    pub reference_ms: f64,
    /// Tokens per second with the kernels (training: tokens trained on; sampling: tokens
    /// generated).
    pub tokens_per_sec: f64,
    pub speedup: f64,
}

impl Timing {
    fn new(kernels: Vec<f64>, reference: Vec<f64>, tokens: f64) -> Self {
        let runs = kernels.len();
        let (kernels_ms, reference_ms) = (median(kernels), median(reference));
        Self {
            runs,
            kernels_ms,
            reference_ms,
            tokens_per_sec: tokens / kernels_ms * 1000.0,
            speedup: reference_ms / kernels_ms,
        }
    }
}

/// Runs `work(kernels_on)` `2·(WARMUP + runs)` times, alternating, and returns the timed
/// milliseconds of each kind.
fn alternate(
    runs: usize,
    mut work: impl FnMut(bool, usize) -> Result<(), String>,
) -> Result<(Vec<f64>, Vec<f64>), String> {
    let (mut on, mut off) = (Vec::new(), Vec::new());
    for i in 0..2 * (WARMUP + runs) {
        let kernels = i % 2 == 0;
        crate::kernels::set_enabled(kernels);
        let started = Instant::now();
        let result = work(kernels, i);
        crate::kernels::set_enabled(true);
        result?;
        let ms = started.elapsed().as_secs_f64() * 1000.0;
        if i >= 2 * WARMUP {
            if kernels { &mut on } else { &mut off }.push(ms);
        }
    }
    Ok((on, off))
}

/// Times `runs` training steps of each kind on `device` (without autodiff; the model trains
/// on its autodiff wrapper). Token ids are random: a step's cost does not depend on them.
pub fn time_training_steps(
    device: &Device,
    shape: BenchShape,
    runs: usize,
) -> Result<Timing, String> {
    let schedule = Schedule::new(shape.vocab).map_err(|e| e.to_string())?;
    let grad_device = device.clone().autodiff();
    let config = ModelConfig::from_preset(shape.preset, shape.vocab, shape.seq_len);
    let mut model = Dit::new(&config, 0, &grad_device);
    let mut average = ema::snapshot(&model);
    let mut optimizer = AdamW::new(AdamWSettings::default());
    let (on, off) = alternate(runs, |_, i| {
        let mut rng = stream_rng(7, i as u64);
        let tokens: Vec<u32> = (0..shape.batch * shape.seq_len)
            .map(|_| rng.random_range(0..shape.vocab as u32))
            .collect();
        let loss = denoising_loss(
            &model,
            &tokens,
            shape.seq_len,
            &mut rng,
            &schedule,
            device,
            KernelPath::Auto,
        );
        std::hint::black_box(loss.clone().into_scalar::<f32>());
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optimizer.step(model.clone(), grads, 1e-4).0;
        average = ema::update(average.clone(), &model, ema::decay_at(i as u64, 0.999));
        device.sync().map_err(|e| format!("device sync: {e:?}"))
    })?;
    Ok(Timing::new(on, off, shape.tokens()))
}

/// Times `runs` sampling batches of `steps` Euler steps each (one network call per step),
/// ending with the tokens read back.
pub fn time_sampling(
    device: &Device,
    shape: BenchShape,
    steps: usize,
    runs: usize,
) -> Result<Timing, String> {
    let schedule = Schedule::new(shape.vocab).map_err(|e| e.to_string())?;
    let config = ModelConfig::from_preset(shape.preset, shape.vocab, shape.seq_len);
    let model = Dit::new(&config, 0, device);
    let (on, off) = alternate(runs, |_, i| {
        let settings = SamplerSettings {
            steps,
            seed: i as u64,
            stream: 0,
            batch: shape.batch,
            seq_len: shape.seq_len,
            top_k: 0,
            decoding: Default::default(),
        };
        let output = sample(&model, SamplerKind::Euler, &schedule, &settings, device);
        std::hint::black_box(output.tokens);
        Ok(())
    })?;
    Ok(Timing::new(on, off, shape.tokens()))
}

/// The process's peak resident memory in MiB (Linux: `VmHWM`), when the platform says.
pub fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}
