//! `flm bench kernels`: the fused sampler step against its reference op chain, timed the way
//! sampling uses them (statistics read back, device synchronised inside the timed region).

use std::time::Instant;

use burn::tensor::{Device, Tensor, TensorData};
use serde::Serialize;

use super::sampler_step::{
    MAX_TOP_K, StepCoefficients, StepOutput, fused_sampler_step, reference_sampler_step,
};
use crate::flow::noise::{standard_normal, stream_rng};

/// One shape's timings.
#[derive(Debug, Clone, Serialize)]
pub struct KernelTiming {
    pub vocab: usize,
    pub rows: usize,
    /// Median milliseconds of the fused kernel and of the op chain.
    pub fused_ms: f64,
    pub reference_ms: f64,
    /// reference / fused: above 1 means the kernel is faster.
    pub speedup: f64,
    pub runs: usize,
}

/// Times both paths of the sampler step for (batch, len, vocab) on `device`: `warmup`
/// untimed runs each, then the median of `runs`. Inputs change between runs so no cache can
/// answer for the device.
pub fn time_sampler_step(
    device: &Device,
    batch: usize,
    len: usize,
    vocab: usize,
    warmup: usize,
    runs: usize,
) -> KernelTiming {
    let rows = batch * len;
    let make = |seed: u64| {
        let values = standard_normal(&mut stream_rng(seed, vocab as u64), rows * vocab);
        Tensor::<3>::from_data(TensorData::new(values, [batch, len, vocab]), device)
    };
    let inputs: Vec<(Tensor<3>, Tensor<3>)> =
        (0..4).map(|i| (make(2 * i), make(2 * i + 1))).collect();
    let coefficients = StepCoefficients {
        keep: 0.9,
        moved: 0.1,
        noise: 0.0,
        seed: 0,
        counter: 0,
    };
    let time = |step: &dyn Fn(Tensor<3>, Tensor<3>) -> StepOutput| {
        let mut samples = Vec::with_capacity(runs);
        for i in 0..warmup + runs {
            let (logits, z) = inputs[i % inputs.len()].clone();
            let started = Instant::now();
            let output = step(logits, z);
            let stats: Vec<f32> = output
                .stats
                .into_data()
                .convert::<f32>()
                .try_into_vec()
                .unwrap_or_default();
            device.sync().expect("device sync");
            std::hint::black_box((stats, output.z_next));
            if i >= warmup {
                samples.push(started.elapsed().as_secs_f64() * 1000.0);
            }
        }
        samples.sort_by(f64::total_cmp);
        samples[samples.len() / 2]
    };
    let fused_ms = time(&|l, z| fused_sampler_step(l, z, coefficients, MAX_TOP_K));
    let reference_ms = time(&|l, z| reference_sampler_step(l, z, coefficients, MAX_TOP_K));
    KernelTiming {
        vocab,
        rows,
        fused_ms,
        reference_ms,
        speedup: reference_ms / fused_ms,
        runs,
    }
}

/// Times the fused noisy input against the host path (draw on the CPU, upload) for
/// (batch, len, vocab) on `device`; the device is synchronised inside the timed region.
pub fn time_noisy_input(
    device: &Device,
    batch: usize,
    len: usize,
    vocab: usize,
    warmup: usize,
    runs: usize,
) -> KernelTiming {
    use super::KernelPath;
    use super::noisy_input::noisy_input;
    let tokens: Vec<u32> = (0..batch * len).map(|i| (i * 31 % vocab) as u32).collect();
    let gammas: Vec<f64> = (0..batch)
        .map(|b| (b as f64 + 0.5) / batch as f64)
        .collect();
    let time = |path: KernelPath| {
        let mut samples = Vec::with_capacity(runs);
        for i in 0..warmup + runs {
            let started = Instant::now();
            let x = noisy_input(&tokens, &gammas, len, vocab, i as u64, path, device);
            device.sync().expect("device sync");
            std::hint::black_box(x);
            if i >= warmup {
                samples.push(started.elapsed().as_secs_f64() * 1000.0);
            }
        }
        samples.sort_by(f64::total_cmp);
        samples[samples.len() / 2]
    };
    let fused_ms = time(KernelPath::Auto);
    let reference_ms = time(KernelPath::Reference);
    KernelTiming {
        vocab,
        rows: batch * len,
        fused_ms,
        reference_ms,
        speedup: reference_ms / fused_ms,
        runs,
    }
}
