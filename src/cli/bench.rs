//! `flm bench kernels|train|sample`: time flm's kernels against the op chains they replace,
//! alone and inside whole training steps and sampling runs, as a table or JSON.

use std::io::Write;

use anyhow::{Result, bail};
use clap::{Args, Subcommand};
use serde_json::json;

use flm::device::DeviceChoice;
use flm::model::ModelPreset;

use super::{DeviceArg, pick_device};

#[derive(Args, Debug)]
pub struct BenchArgs {
    #[command(subcommand)]
    pub target: BenchTarget,
}

#[derive(Subcommand, Debug)]
pub enum BenchTarget {
    /// The fused sampler step vs the reference op chain, V ∈ {1024, 8192, 50257}, L=128, B=16,
    /// on the wgpu device (lavapipe counts).
    Kernels {
        /// Timed runs per shape (after 3 warm-up runs); the median is reported.
        #[arg(long, default_value_t = 10)]
        runs: usize,
        /// Vocabulary sizes to run, comma-separated (default: 1024,8192,50257).
        #[arg(long, value_delimiter = ',')]
        vocab: Vec<usize>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// FLM training steps (loss, backward, AdamW, EMA, loss read back) with flm's own
    /// kernels and without them, alternating step by step; tokens/s and peak memory.
    Train {
        #[command(flatten)]
        shape: BenchShapeArgs,
        /// Timed steps of each kind (after 3 warm-up steps each); the median is reported.
        #[arg(long, default_value_t = 10)]
        steps: usize,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        device: DeviceArg,
    },
    /// Sampling one batch with N Euler steps (N network calls), with flm's kernels and
    /// without them, alternating; ms per network call and peak memory.
    Sample {
        #[command(flatten)]
        shape: BenchShapeArgs,
        /// Network calls per sample, comma-separated: one timing each.
        #[arg(long, value_delimiter = ',', default_value = "1,32")]
        steps: Vec<usize>,
        /// Timed batches of each kind (after 3 warm-ups); the median is reported.
        #[arg(long, default_value_t = 3)]
        runs: usize,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        device: DeviceArg,
    },
}

/// The model and batch a benchmark runs.
#[derive(Args, Debug)]
pub struct BenchShapeArgs {
    /// Model size.
    #[arg(long, value_enum, default_value = "tiny")]
    pub preset: ModelPreset,
    /// Vocabulary size V (the input is B×L×V).
    #[arg(long, default_value_t = 1024)]
    pub vocab: usize,
    #[arg(long, default_value_t = 16)]
    pub batch: usize,
    #[arg(long, default_value_t = 128)]
    pub seq_len: usize,
}

impl BenchShapeArgs {
    fn shape(&self) -> Result<flm::train::throughput::BenchShape> {
        if self.batch == 0 || self.seq_len == 0 || self.vocab < 2 {
            bail!("--batch and --seq-len must be at least 1 and --vocab at least 2");
        }
        Ok(flm::train::throughput::BenchShape {
            preset: self.preset,
            vocab: self.vocab,
            batch: self.batch,
            seq_len: self.seq_len,
        })
    }
}

pub fn run(args: BenchArgs) -> Result<()> {
    match args.target {
        BenchTarget::Kernels { runs, vocab, json } => run_kernel_bench(runs, vocab, json),
        BenchTarget::Train {
            shape,
            steps,
            json,
            device,
        } => run_train_bench(&shape, steps, json, device.device),
        BenchTarget::Sample {
            shape,
            steps,
            runs,
            json,
            device,
        } => run_sample_bench(&shape, &steps, runs, json, device.device),
    }
}

fn run_kernel_bench(runs: usize, vocab: Vec<usize>, json: bool) -> Result<()> {
    if runs == 0 {
        bail!("--runs must be at least 1");
    }
    if vocab.contains(&0) {
        bail!("--vocab sizes must be at least 1");
    }
    let vocabs = if vocab.is_empty() {
        flm::kernels::bench::VOCABS.to_vec()
    } else {
        vocab
    };
    // The kernels exist only on wgpu: this benchmark always runs there.
    let device = pick_device(DeviceChoice::Gpu)?;
    let bench = flm::kernels::bench::run_suite(&device.device, &vocabs, runs);
    let mut out = std::io::stdout().lock();
    if json {
        let report = json!({"device": device.description,
            "top_k": flm::kernels::sampler_step::MAX_TOP_K, "bench": bench});
        writeln!(out, "{}", serde_json::to_string_pretty(&report)?)?;
        return Ok(());
    }
    writeln!(
        out,
        "L={}, median of {runs} runs after 3 warm-ups (fused and reference alternate), {}",
        bench.seq_len, device.description
    )?;
    kernel_table(
        &mut out,
        "fused sampler step (softmax + z update + entropy/max/top-16) vs the burn op chain",
        "op chain ms",
        &bench.sampler_step,
    )?;
    kernel_table(
        &mut out,
        "fused noisy input (training) vs noise drawn on the host and uploaded",
        "host ms",
        &bench.noisy_input,
    )
}

/// One kernel against what it replaces, a row per vocabulary size.
fn kernel_table(
    out: &mut impl Write,
    title: &str,
    reference: &str,
    timings: &[flm::kernels::bench::KernelTiming],
) -> Result<()> {
    writeln!(out, "{title}")?;
    writeln!(
        out,
        "{:>6}  {:>5}  {:>10}  {:>12}  {:>8}",
        "V", "B·L", "fused ms", reference, "speed-up"
    )?;
    for t in timings {
        writeln!(
            out,
            "{:>6}  {:>5}  {:>10.2}  {:>12.2}  {:>7.2}x",
            t.vocab, t.rows, t.fused_ms, t.reference_ms, t.speedup
        )?;
    }
    Ok(())
}

fn run_train_bench(
    shape: &BenchShapeArgs,
    steps: usize,
    json: bool,
    device: DeviceChoice,
) -> Result<()> {
    if steps == 0 {
        bail!("--steps must be at least 1");
    }
    let shape = shape.shape()?;
    let device = pick_device(device)?;
    let timing = flm::train::throughput::time_training_steps(&device.device, shape, steps)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let peak = flm::train::throughput::peak_rss_mib();
    let mut out = std::io::stdout().lock();
    if json {
        let report = json!({"device": device.description, "shape": shape,
            "parameters": shape.parameters(), "train": timing, "peak_rss_mib": peak});
        writeln!(out, "{}", serde_json::to_string_pretty(&report)?)?;
        return Ok(());
    }
    writeln!(
        out,
        "training step, preset {}, {} parameters, V={}, B={}, L={}, median of {} steps each (alternating), {}",
        shape.preset,
        shape.parameters(),
        shape.vocab,
        shape.batch,
        shape.seq_len,
        timing.runs,
        device.description
    )?;
    writeln!(
        out,
        "  with flm's kernels:    {:8.1} ms/step  {:7.0} tokens/s",
        timing.kernels_ms, timing.tokens_per_sec
    )?;
    writeln!(
        out,
        "  without (burn ops):    {:8.1} ms/step  {:7.0} tokens/s",
        timing.reference_ms,
        timing.tokens_per_sec / timing.speedup
    )?;
    writeln!(out, "  speed-up: {:.2}x", timing.speedup)?;
    if let Some(peak) = peak {
        writeln!(out, "  peak memory: {peak:.0} MiB")?;
    }
    Ok(())
}

fn run_sample_bench(
    shape: &BenchShapeArgs,
    steps: &[usize],
    runs: usize,
    json: bool,
    device: DeviceChoice,
) -> Result<()> {
    if runs == 0 || steps.contains(&0) {
        bail!("--runs and every --steps value must be at least 1");
    }
    let shape = shape.shape()?;
    let device = pick_device(device)?;
    let mut results = Vec::new();
    for &n in steps {
        let timing = flm::train::throughput::time_sampling(&device.device, shape, n, runs)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        results.push((n, timing));
    }
    let peak = flm::train::throughput::peak_rss_mib();
    let mut out = std::io::stdout().lock();
    if json {
        let rows: Vec<_> = results
            .iter()
            .map(|(n, t)| json!({"network_calls": n, "timing": t, "ms_per_call": t.kernels_ms / *n as f64}))
            .collect();
        let report = json!({"device": device.description, "shape": shape,
            "parameters": shape.parameters(), "sample": rows, "peak_rss_mib": peak});
        writeln!(out, "{}", serde_json::to_string_pretty(&report)?)?;
        return Ok(());
    }
    writeln!(
        out,
        "sampling a batch, preset {}, V={}, B={}, L={}, median of {runs} batches each (alternating), {}",
        shape.preset, shape.vocab, shape.batch, shape.seq_len, device.description
    )?;
    for (n, t) in &results {
        writeln!(
            out,
            "  {n:>4} calls: {:9.1} ms ({:7.1} ms/call) with flm's kernels, {:9.1} ms without, {:.2}x",
            t.kernels_ms,
            t.kernels_ms / *n as f64,
            t.reference_ms,
            t.speedup
        )?;
    }
    if let Some(peak) = peak {
        writeln!(out, "  peak memory: {peak:.0} MiB")?;
    }
    Ok(())
}
