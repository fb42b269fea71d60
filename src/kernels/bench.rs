//! `flm bench kernels`: each WGSL kernel against its reference path, timed the way the app
//! uses them (results read back or the device synchronised inside the timed region).

use std::time::Instant;

use burn::tensor::{Device, Tensor, TensorData};
use serde::Serialize;

use super::KernelPath;
use super::noisy_input::noisy_input;
use super::sampler_step::{
    MAX_TOP_K, StepCoefficients, StepOutput, fused_sampler_step, reference_sampler_step,
};
use crate::rng::{standard_normal, stream_rng};

/// One shape's timings.
#[derive(Debug, Clone, Serialize)]
pub struct KernelTiming {
    pub vocab: usize,
    pub rows: usize,
    /// Median milliseconds of the fused kernel and of the reference path.
    pub fused_ms: f64,
    pub reference_ms: f64,
    /// reference / fused: above 1 means the kernel is faster.
    pub speedup: f64,
    pub runs: usize,
}

/// The whole suite: both kernels at every benchmarked vocabulary size.
#[derive(Debug, Clone, Serialize)]
pub struct KernelBench {
    pub seq_len: usize,
    pub sampler_step: Vec<KernelTiming>,
    pub noisy_input: Vec<KernelTiming>,
}

/// Vocabulary sizes of the suite (a small, a mid-size and GPT-2's).
pub const VOCABS: [usize; 3] = [1024, 8192, 50257];
const SEQ_LEN: usize = 128;
const BATCH: usize = 16;
const WARMUP: usize = 3;

/// Runs the suite at L = 128 and B = 16 for each of `vocabs` (usually [`VOCABS`]). B shrinks
/// where one (B, L, V) tensor would pass 128 MiB: B=16 at V=50257 needs 411 MB, and on
/// lavapipe 206 MB already failed to allocate.
pub fn run_suite(device: &Device, vocabs: &[usize], runs: usize) -> KernelBench {
    let batch_for = |vocab: usize| BATCH.min((128usize << 20) / (SEQ_LEN * vocab * 4)).max(1);
    KernelBench {
        seq_len: SEQ_LEN,
        sampler_step: vocabs
            .iter()
            .map(|&v| time_sampler_step(device, batch_for(v), SEQ_LEN, v, runs))
            .collect(),
        noisy_input: vocabs
            .iter()
            .map(|&v| time_noisy_input(device, batch_for(v), SEQ_LEN, v, runs))
            .collect(),
    }
}

/// Median wall times (ms) of `fused(i)` and `reference(i)`, each followed by a device sync,
/// over `runs` calls each after `WARMUP` untimed ones. The two alternate call by call, so a
/// shared machine slowing down or speeding up affects both alike.
fn paired_medians(
    device: &Device,
    runs: usize,
    mut fused: impl FnMut(usize),
    mut reference: impl FnMut(usize),
) -> (f64, f64) {
    let timed = |run: &mut dyn FnMut(usize), i: usize| {
        let started = Instant::now();
        run(i);
        device.sync().expect("device sync");
        started.elapsed().as_secs_f64() * 1000.0
    };
    let (mut fused_ms, mut reference_ms) = (Vec::new(), Vec::new());
    for i in 0..WARMUP + runs {
        let (a, b) = (timed(&mut fused, i), timed(&mut reference, i));
        if i >= WARMUP {
            fused_ms.push(a);
            reference_ms.push(b);
        }
    }
    (median(fused_ms), median(reference_ms))
}

/// The median of `samples` (the upper one of an even count).
pub(crate) fn median(mut samples: Vec<f64>) -> f64 {
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

fn timing(
    vocab: usize,
    rows: usize,
    runs: usize,
    fused_ms: f64,
    reference_ms: f64,
) -> KernelTiming {
    KernelTiming {
        vocab,
        rows,
        fused_ms,
        reference_ms,
        speedup: reference_ms / fused_ms,
        runs,
    }
}

/// The sampler step: fused kernel vs op chain, statistics read back. Inputs rotate between
/// runs so no cache can answer for the device.
pub fn time_sampler_step(
    device: &Device,
    batch: usize,
    len: usize,
    vocab: usize,
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
    let run = |step: fn(Tensor<3>, Tensor<3>, StepCoefficients, usize) -> StepOutput, i: usize| {
        let (logits, z) = inputs[i % inputs.len()].clone();
        let output = step(logits, z, coefficients, MAX_TOP_K);
        // Materialising the statistics is part of the step: the sampler reads them back.
        let stats = output
            .stats
            .into_data()
            .convert::<f32>()
            .try_into_vec::<f32>()
            .expect("benchmark readback");
        std::hint::black_box((stats, output.z_next));
    };
    let (fused_ms, reference_ms) = paired_medians(
        device,
        runs,
        |i| run(fused_sampler_step, i),
        |i| run(reference_sampler_step, i),
    );
    timing(vocab, rows, runs, fused_ms, reference_ms)
}

/// The noisy training input: fused kernel vs noise drawn on the host and uploaded.
pub fn time_noisy_input(
    device: &Device,
    batch: usize,
    len: usize,
    vocab: usize,
    runs: usize,
) -> KernelTiming {
    let tokens: Vec<u32> = (0..batch * len).map(|i| (i * 31 % vocab) as u32).collect();
    let gammas: Vec<f64> = (0..batch)
        .map(|b| (b as f64 + 0.5) / batch as f64)
        .collect();
    let run = |path: KernelPath, i: usize| {
        let x = noisy_input(&tokens, &gammas, len, vocab, i as u64, path, device);
        std::hint::black_box(x);
    };
    let (fused_ms, reference_ms) = paired_medians(
        device,
        runs,
        |i| run(KernelPath::Auto, i),
        |i| run(KernelPath::Reference, i),
    );
    timing(vocab, batch * len, runs, fused_ms, reference_ms)
}
