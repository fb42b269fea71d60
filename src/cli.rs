//! The `flm` command line: the same work as the app, headless, with progress bars.

use std::io::Write;
use std::path::PathBuf;
use std::sync::mpsc;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;

use flm::data::{BuiltinTask, TokenizerKind};
use flm::device::{self, ComputeDevice, DeviceChoice};
use flm::eval::metrics::{fraction, unigram_entropy};
use flm::flow::Decoding;
use flm::flow::distill::{BoundaryTarget, DistillSettings, SecondTimeInit};
use flm::flow::flow_map::Midpoint;
use flm::flow::{SamplerSettings, Schedule, euler_sample};
use flm::generate::{GenerateRequest, Generator};
use flm::model::ModelPreset;
use flm::train::setup::{DEFAULT_VOCAB, PreparedRun};
use flm::train::{
    DistillRequest, ModelKind, NewModelKind, RunControl, StopReason, TrainConfig, TrainEvent,
    TrainRequest, load_model, prepare_distill, prepare_run, train,
};

#[derive(Parser, Debug)]
#[command(
    name = "flm",
    version,
    about = "Train small flow language models on your own text and watch them denoise text.",
    long_about = "Train small flow language models (FLM, arXiv 2602.16813) on a text file or a \
                  built-in task, and sample them by continuous denoising.\n\nWith no subcommand, \
                  flm runs a short terminal demo on the built-in `repeat` task."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Train (or resume) an FLM on a text file or a built-in task.
    Train(TrainArgs),
    /// Distill a trained FLM into a flow-map model (FMLM) that samples in 1..N steps.
    Distill(DistillArgs),
    /// Train the autoregressive reference model `flm eval` scores samples with (same flags as
    /// `train`; pass --tokenizer-from <the FLM's run> so both share one tokenizer).
    TrainAr(TrainArgs),
    /// Generate text from a trained checkpoint.
    Sample(SampleArgs),
    /// Evaluate FLM / FMLM checkpoints at several step counts: gen-PPL under a reference
    /// model, distribution distances to held-out text, diversity, validity, speed.
    Eval(EvalArgs),
    /// Benchmarks: `flm bench kernels` times the WGSL kernels against their op chains,
    /// `flm bench train` training steps with and without the fused noisy input.
    Bench(BenchArgs),
    /// Copy a trained model (config.json, tokenizer.json, model.safetensors) into a folder;
    /// with --layout official, in the layout of the paper's PyTorch code.
    Export(ExportArgs),
    /// Import a model of the paper's PyTorch code (a released .ckpt such as lm1b_flm.ckpt, or
    /// an official-layout model.safetensors) as a flm run that `flm sample` opens.
    Import(ImportArgs),
    /// Run a model once on inputs from a safetensors file (`x`, `tau`, `tau_t`) and write its
    /// raw logits and probabilities: for comparing flm with other implementations.
    Forward(ForwardArgs),
    /// Show a checkpoint's configuration, size and progress.
    Info(InfoArgs),
    /// Print the time reparameterization γ(τ) for a vocabulary size.
    Schedule(ScheduleArgs),
    /// Train a tiny model on `builtin:repeat` for a minute and show it denoising.
    Demo(DemoArgs),
    /// Open the desktop app (what `flm` with no subcommand does where a display exists).
    Gui(GuiArgs),
}

#[derive(Args, Debug)]
pub struct GuiArgs {
    /// Where the app trains and samples. With a GPU the window is drawn on the same device.
    #[command(flatten)]
    pub device: DeviceArg,
}

#[derive(Args, Debug)]
pub struct TrainArgs {
    /// Training text (UTF-8 file) or a built-in task: builtin:repeat, builtin:sorted.
    /// Not needed with --resume.
    #[arg(long, required_unless_present = "resume")]
    pub data: Option<String>,
    /// Run directory for config, tokenizer, checkpoints and metrics.
    #[arg(long)]
    pub out: PathBuf,
    /// Validation text file [default: the last 5% of the training tokens]
    #[arg(long)]
    pub valid: Option<PathBuf>,
    /// Model size: micro, tiny, small or base [default: tiny]
    #[arg(long)]
    pub preset: Option<ModelPreset>,
    /// Sequence length L [default: 128 for text, 32 for built-in tasks]
    #[arg(long)]
    pub seq_len: Option<usize>,
    /// Vocabulary size for the BPE tokenizer, special tokens included [default: 2048]
    #[arg(long)]
    pub vocab: Option<usize>,
    /// Tokenizer for text files: bpe or char [default: bpe]
    #[arg(long)]
    pub tokenizer: Option<TokenizerKind>,
    /// Reuse the tokenizer of this run directory instead of training one (for a reference
    /// model that must score another model's samples).
    #[arg(long)]
    pub tokenizer_from: Option<PathBuf>,
    /// Train a one-step flow map (FMLM) directly from the data by self-distillation, instead
    /// of an FLM (diagonal targets are the clean tokens; see also `flm distill`).
    #[arg(long)]
    pub flow_map: bool,
    /// With --flow-map: share of each batch trained on the diagonal s = t [default: 0.5]
    #[arg(long, requires = "flow_map")]
    pub diag_frac: Option<f64>,
    #[command(flatten)]
    pub run: RunArgs,
    #[command(flatten)]
    pub device: DeviceArg,
}

#[derive(Args, Debug)]
pub struct DistillArgs {
    /// Run directory of the trained FLM to distill (not needed with --resume).
    #[arg(long, required_unless_present = "resume")]
    pub teacher: Option<PathBuf>,
    /// Run directory for the flow-map model.
    #[arg(long)]
    pub out: PathBuf,
    /// Start from this recipe; the flags below override its parts. `paper` is the paper's
    /// semigroup method as published (docs/DESIGN.md §6, §6a).
    #[arg(long, value_enum, default_value = "recommended")]
    pub recipe: Recipe,
    /// Share of each batch trained on the diagonal s = t toward the teacher.
    #[arg(long)]
    pub diag_frac: Option<f64>,
    /// Expected share of each batch on the one-step jump (s = 0, t = 1).
    #[arg(long)]
    pub boundary_frac: Option<f64>,
    /// Target of the one-step jump: the teacher's K-step Euler endpoint from the same noise,
    /// or the student's own two half-jumps (semigroup).
    #[arg(long, value_enum)]
    pub boundary_target: Option<BoundaryTarget>,
    /// Euler steps K of the teacher's endpoint.
    #[arg(long)]
    pub teacher_steps: Option<usize>,
    /// How many times each teacher endpoint is used, on average (1 computes every one fresh;
    /// more saves teacher calls by reusing recent endpoints).
    #[arg(long)]
    pub endpoint_reuse: Option<usize>,
    /// Rows read off each teacher trajectory: its one-step jump, then random pairs of its
    /// grid (exact flow-map targets too, for the cost of the student's own pass).
    #[arg(long)]
    pub teacher_pairs: Option<usize>,
    /// Time warp p: times are drawn as w and used as τ = w^p (1 is the paper's; larger puts
    /// more pairs at small τ).
    #[arg(long)]
    pub time_warp: Option<f64>,
    /// Midpoint u of an off-diagonal pair: halfway (middle) or uniform in (s, t) (random).
    #[arg(long, value_enum)]
    pub midpoint: Option<Midpoint>,
    /// Draw off-diagonal pairs on the dyadic grid of 2^N steps (the jumps of 1-, 2-, 4-…
    /// step sampling) instead of anywhere; 0 keeps the continuous draw.
    #[arg(long)]
    pub dyadic_levels: Option<u32>,
    /// Hidden layer of the second time embedder: fresh (random) or a copy of the teacher's
    /// first embedder (teacher).
    #[arg(long, value_enum)]
    pub second_time_init: Option<SecondTimeInit>,
    #[command(flatten)]
    pub run: RunArgs,
    #[command(flatten)]
    pub device: DeviceArg,
}

/// How long and how to optimise; shared by `train` and `distill`.
#[derive(Args, Debug)]
pub struct RunArgs {
    /// Stop after this many steps in total [default: 2000 when --minutes is not given]
    #[arg(long)]
    pub steps: Option<u64>,
    /// Stop after training this many minutes in this invocation.
    #[arg(long)]
    pub minutes: Option<f64>,
    /// Sequences per batch [default: 16]
    #[arg(long)]
    pub batch: Option<usize>,
    /// Peak learning rate (AdamW, after linear warm-up) [default: 0.001; 0.0003 for flow maps]
    #[arg(long)]
    pub lr: Option<f64>,
    /// Warm-up steps [default: 100]
    #[arg(long)]
    pub warmup: Option<u64>,
    /// Share of the run (by --steps or --minutes), at its end, over which the learning rate
    /// falls linearly to zero [default: 0, constant]
    #[arg(long)]
    pub lr_decay: Option<f64>,
    /// Upper bound of the EMA decay of the weights used for sampling [default: 0.999]
    #[arg(long)]
    pub ema: Option<f64>,
    /// Random seed for initial weights, batches and noise [default: 0]
    #[arg(long)]
    pub seed: Option<u64>,
    /// Steps between validation runs [default: 200]
    #[arg(long)]
    pub eval_every: Option<u64>,
    /// Steps between sample previews [default: 500]
    #[arg(long)]
    pub sample_every: Option<u64>,
    /// Steps between checkpoints; one is also written every 5 minutes and at the end
    /// [default: 500]
    #[arg(long)]
    pub checkpoint_every: Option<u64>,
    /// Continue the run in --out from its last checkpoint, with the settings it was started
    /// with (only --steps, --minutes and --device apply).
    #[arg(long)]
    pub resume: bool,
}

impl RunArgs {
    /// Flags that shape a run and are therefore fixed once it has started.
    fn run_shaping_flags(&self) -> Vec<&'static str> {
        let given = [
            ("--batch", self.batch.is_some()),
            ("--lr", self.lr.is_some()),
            ("--warmup", self.warmup.is_some()),
            ("--lr-decay", self.lr_decay.is_some()),
            ("--ema", self.ema.is_some()),
            ("--seed", self.seed.is_some()),
            ("--eval-every", self.eval_every.is_some()),
            ("--sample-every", self.sample_every.is_some()),
            ("--checkpoint-every", self.checkpoint_every.is_some()),
        ];
        set_flags(&given)
    }

    /// The flags over `defaults` (FLM or flow-map defaults).
    fn train_config(&self, defaults: TrainConfig) -> TrainConfig {
        TrainConfig {
            batch_size: self.batch.unwrap_or(defaults.batch_size),
            learning_rate: self.lr.unwrap_or(defaults.learning_rate),
            warmup_steps: self.warmup.unwrap_or(defaults.warmup_steps),
            lr_decay: self.lr_decay.unwrap_or(defaults.lr_decay),
            ema_decay: self.ema.unwrap_or(defaults.ema_decay),
            seed: self.seed.unwrap_or(defaults.seed),
            eval_every: self.eval_every.unwrap_or(defaults.eval_every),
            sample_every: self.sample_every.unwrap_or(defaults.sample_every),
            checkpoint_every: self.checkpoint_every.unwrap_or(defaults.checkpoint_every),
            ..defaults
        }
    }

    /// Rejects non-positive limits and warns about flags `--resume` ignores.
    fn check(&self, other_shaping_flags: Vec<&'static str>) -> Result<()> {
        if self.minutes.is_some_and(|m| !(m.is_finite() && m > 0.0)) || self.steps == Some(0) {
            bail!("--minutes and --steps must be positive");
        }
        let mut ignored = other_shaping_flags;
        ignored.extend(self.run_shaping_flags());
        if self.resume && !ignored.is_empty() {
            eprintln!(
                "warning: --resume continues with the settings in config.json; ignoring {}",
                ignored.join(", ")
            );
        }
        Ok(())
    }
}

fn set_flags(given: &[(&'static str, bool)]) -> Vec<&'static str> {
    given
        .iter()
        .filter(|(_, set)| *set)
        .map(|(name, _)| *name)
        .collect()
}

impl TrainArgs {
    /// Data and model flags, fixed once a run has started.
    fn data_shaping_flags(&self) -> Vec<&'static str> {
        set_flags(&[
            ("--data", self.data.is_some()),
            ("--valid", self.valid.is_some()),
            ("--preset", self.preset.is_some()),
            ("--seq-len", self.seq_len.is_some()),
            ("--vocab", self.vocab.is_some()),
            ("--tokenizer", self.tokenizer.is_some()),
            ("--flow-map", self.flow_map),
            ("--tokenizer-from", self.tokenizer_from.is_some()),
        ])
    }
}

#[derive(Args, Debug)]
pub struct DeviceArg {
    /// Compute device: auto (a real GPU if present, else the CPU backend), gpu or cpu.
    #[arg(long, default_value = "auto")]
    pub device: DeviceChoice,
}

#[derive(Args, Debug)]
pub struct SampleArgs {
    /// Checkpoint (run) directory.
    #[arg(long)]
    pub ckpt: PathBuf,
    /// Number of denoising steps (network calls).
    #[arg(long, default_value_t = 32)]
    pub steps: usize,
    /// Noise seed; the same seed gives the same samples.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Number of samples.
    #[arg(long, default_value_t = 4)]
    pub n: usize,
    /// Print one JSON object per sample instead of plain text.
    #[arg(long)]
    pub json: bool,
    /// Write the recorded denoising trajectory (per step and position: top-k, entropy, argmax).
    #[arg(long)]
    pub trajectory: Option<PathBuf>,
    /// Candidates per position kept in the trajectory (at most 16).
    #[arg(long, default_value_t = 8)]
    pub top_k: usize,
    /// Stochasticity η in [0, 1] of the flow-map sampler (flow-map models only): 0 is the
    /// deterministic flow map; one step is the same for every η.
    #[arg(long)]
    pub eta: Option<f64>,
    #[command(flatten)]
    pub decoding: DecodingArgs,
    #[command(flatten)]
    pub device: DeviceArg,
}

/// How the last step's distribution becomes tokens (both samplers).
#[derive(Args, Debug)]
pub struct DecodingArgs {
    /// Draw each token from the final distribution at this temperature instead of taking
    /// the most likely one (argmax, the default).
    #[arg(long)]
    pub temperature: Option<f64>,
    /// With drawing: keep only the most likely tokens whose probabilities add up to this
    /// (nucleus sampling) [default: 1, all]
    #[arg(long)]
    pub top_p: Option<f64>,
}

impl DecodingArgs {
    fn decoding(&self) -> Decoding {
        match (self.temperature, self.top_p) {
            (None, None) => Decoding::Argmax,
            (temperature, top_p) => Decoding::Draw {
                temperature: temperature.unwrap_or(1.0),
                top_p: top_p.unwrap_or(1.0),
            },
        }
    }
}

#[derive(Args, Debug)]
pub struct EvalArgs {
    /// FLM or FMLM checkpoint to evaluate; repeat to compare several in one report.
    #[arg(long, required = true)]
    pub ckpt: Vec<PathBuf>,
    /// Step counts, comma-separated; give one list for all checkpoints or one per --ckpt, in
    /// the same order [default: 1,2,4,8,16,32]
    #[arg(long)]
    pub steps: Vec<String>,
    /// Autoregressive reference model (`flm train-ar`, same tokenizer) that scores samples.
    #[arg(long = "ref")]
    pub reference: Option<PathBuf>,
    /// Held-out text file [default for built-in tasks: freshly generated sequences]
    #[arg(long)]
    pub valid: Option<PathBuf>,
    /// Stochasticity η of flow-map sampling.
    #[arg(long, default_value_t = 0.0)]
    pub eta: f64,
    #[command(flatten)]
    pub decoding: DecodingArgs,
    /// Samples per checkpoint and step count.
    #[arg(long, default_value_t = 256)]
    pub n: usize,
    /// Sequences sampled together.
    #[arg(long, default_value_t = 64)]
    pub batch: usize,
    /// Noise seed: the same seed gives the same samples and metrics.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Print the report as JSON on stdout instead of markdown.
    #[arg(long)]
    pub json: bool,
    /// Write the markdown report here, with the JSON and a PNG plot beside it (same name,
    /// .json and .png).
    #[arg(long)]
    pub out: Option<PathBuf>,
    #[command(flatten)]
    pub device: DeviceArg,
}

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

#[derive(Args, Debug)]
pub struct ExportArgs {
    /// Checkpoint (run) directory.
    #[arg(long)]
    pub ckpt: PathBuf,
    /// Folder to write the three files into (created if missing).
    #[arg(long)]
    pub out: PathBuf,
    /// `flm` (config.json, tokenizer.json, model.safetensors) or `official`: model.safetensors
    /// with the paper's state-dict names, config.yaml and tokenizer.json.
    #[arg(long, value_enum, default_value_t = ExportLayout::Flm)]
    pub layout: ExportLayout,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExportLayout {
    Flm,
    Official,
}

#[derive(Args, Debug)]
pub struct ImportArgs {
    /// The paper's checkpoint (.ckpt), or an official-layout model.safetensors or its folder.
    #[arg(long)]
    pub from: PathBuf,
    /// New run directory to write.
    #[arg(long)]
    pub out: PathBuf,
    /// The model's Hugging Face tokenizer.json (bert-base-uncased's for LM1B, gpt2's for
    /// OpenWebText); an official-layout folder's own is the default.
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
    /// Which weights of a .ckpt: `ema` (what the paper samples) or `online`.
    #[arg(long, default_value = "ema")]
    pub weights: flm::train::WeightSet,
    /// Number of attention heads, if the file lacks the rotary buffer that tells it.
    #[arg(long)]
    pub heads: Option<usize>,
    /// Sequence length to sample (default: the released models' 128 or 1024).
    #[arg(long)]
    pub seq_len: Option<usize>,
}

#[derive(Args, Debug)]
pub struct ForwardArgs {
    /// Checkpoint (run) directory.
    #[arg(long)]
    pub ckpt: PathBuf,
    /// safetensors file with `x` (B, L, V), `tau` (B) and, for flow maps, `tau_t` (B).
    #[arg(long)]
    pub input: PathBuf,
    /// safetensors file to write `logits` (before the logit cap) and `probs` into.
    #[arg(long)]
    pub out: PathBuf,
    #[command(flatten)]
    pub device: DeviceArg,
}

#[derive(Args, Debug)]
pub struct InfoArgs {
    /// Checkpoint (run) directory.
    #[arg(long)]
    pub ckpt: PathBuf,
}

#[derive(Args, Debug)]
pub struct ScheduleArgs {
    /// Vocabulary size V.
    #[arg(long)]
    pub vocab: usize,
    /// Print only γ(τ) for this τ in [0, 1].
    #[arg(long)]
    pub tau: Option<f64>,
    /// Rows of the table when no --tau is given.
    #[arg(long, default_value_t = 20)]
    pub rows: usize,
}

#[derive(Args, Debug)]
pub struct DemoArgs {
    /// Seconds of training.
    #[arg(long, default_value_t = 60.0, value_parser = positive_seconds)]
    pub seconds: f64,
    /// Run directory (default: a fresh folder under the system temp dir).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

fn positive_seconds(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(secs) if secs.is_finite() && secs > 0.0 => Ok(secs),
        _ => Err(format!(
            "expected a positive number of seconds, got `{text}`"
        )),
    }
}

pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Some(Command::Train(args)) => run_train(args, false),
        Some(Command::TrainAr(args)) => run_train(args, true),
        Some(Command::Distill(args)) => run_distill(args),
        Some(Command::Sample(args)) => run_sample(args),
        Some(Command::Eval(args)) => run_eval(args),
        Some(Command::Bench(args)) => run_bench(args),
        Some(Command::Export(args)) => run_export(args),
        Some(Command::Import(args)) => run_import(args),
        Some(Command::Forward(args)) => run_forward(args),
        Some(Command::Info(args)) => run_info(args),
        Some(Command::Schedule(args)) => run_schedule(args),
        Some(Command::Demo(args)) => run_demo(args),
        Some(Command::Gui(args)) => flm::app::run_desktop(args.device.device).map_err(|reason| {
            anyhow::anyhow!(
                "cannot open the desktop window: {reason}. Run flm in a desktop session, \
                 or use the headless commands (flm --help)"
            )
        }),
        None => match flm::app::run_desktop(DeviceChoice::Auto) {
            Ok(()) => Ok(()),
            Err(reason) => {
                eprintln!(
                    "flm: cannot open the desktop window ({reason}).\n\
                     Running the terminal demo instead; see `flm --help` for train, distill, \
                     sample, eval and export."
                );
                run_demo(DemoArgs {
                    seconds: 60.0,
                    out: None,
                })
            }
        },
    }
}

fn pick_device(choice: DeviceChoice) -> Result<ComputeDevice> {
    let device = device::select(choice).map_err(anyhow::Error::msg)?;
    eprintln!("device: {device}");
    Ok(device)
}

/// `flm train` (an FLM, or a self-distilled flow map) and `flm train-ar` (the reference model).
fn run_train(args: TrainArgs, autoregressive: bool) -> Result<()> {
    if autoregressive && args.flow_map {
        bail!("--flow-map does not apply to `flm train-ar`");
    }
    args.run.check(args.data_shaping_flags())?;
    let request = TrainRequest {
        out: args.out.clone(),
        data: args.data.clone().unwrap_or_default(),
        valid: args.valid.clone(),
        preset: args.preset.unwrap_or(ModelPreset::Tiny),
        seq_len: args.seq_len,
        vocab_size: args.vocab.unwrap_or(DEFAULT_VOCAB),
        tokenizer: args.tokenizer.unwrap_or(TokenizerKind::Bpe),
        train: args.run.train_config(if args.flow_map {
            TrainConfig::flow_map_defaults()
        } else {
            TrainConfig::default()
        }),
        steps: args.run.steps,
        minutes: args.run.minutes,
        resume: args.run.resume,
        tokenizer_from: args.tokenizer_from.clone(),
        kind: match (autoregressive, args.flow_map) {
            (true, _) => NewModelKind::Autoregressive,
            (false, true) => NewModelKind::SelfDistilledFlowMap(DistillSettings::paper(
                args.diag_frac.unwrap_or(DEFAULT_DIAG_FRAC),
            )),
            (false, false) => NewModelKind::Flm,
        },
    };
    let device = pick_device(args.device.device)?;
    eprintln!("preparing data in {} …", request.out.display());
    let prepared = prepare_run(&request)?;
    train_with_progress(prepared, device)
}

/// DESIGN §6's default share of diagonal examples.
const DEFAULT_DIAG_FRAC: f64 = 0.5;

/// The starting point of `flm distill`'s settings.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recipe {
    /// What measured best here (docs/distillation.md).
    Recommended,
    /// The paper's semigroup method as published.
    Paper,
}

impl DistillArgs {
    /// The recipe with the flags given over it.
    fn settings(&self) -> DistillSettings {
        let mut settings = match self.recipe {
            Recipe::Recommended => DistillSettings::recommended(),
            Recipe::Paper => DistillSettings::paper(DEFAULT_DIAG_FRAC),
        };
        if let Some(diagonal) = self.diag_frac {
            let boundary_share =
                settings.fractions.boundary / (1.0 - settings.fractions.diagonal).max(1e-9);
            settings.fractions.diagonal = diagonal;
            settings.fractions.boundary = boundary_share * (1.0 - diagonal);
        }
        if let Some(boundary) = self.boundary_frac {
            settings.fractions.boundary = boundary;
        }
        if let Some(target) = self.boundary_target {
            settings.boundary_target = target;
        }
        if let Some(steps) = self.teacher_steps {
            settings.teacher_steps = steps;
        }
        if let Some(reuse) = self.endpoint_reuse {
            settings.endpoint_reuse = reuse;
        }
        if let Some(pairs) = self.teacher_pairs {
            settings.teacher_pairs = pairs;
        }
        if let Some(warp) = self.time_warp {
            settings.times.warp = warp;
        }
        if let Some(midpoint) = self.midpoint {
            settings.times.midpoint = midpoint;
        }
        if let Some(levels) = self.dyadic_levels {
            settings.times.dyadic_levels = (levels > 0).then_some(levels);
        }
        if let Some(init) = self.second_time_init {
            settings.second_time_init = init;
        }
        settings
    }
}

fn run_distill(args: DistillArgs) -> Result<()> {
    let shaping = set_flags(&[
        ("--teacher", args.teacher.is_some()),
        ("--diag-frac", args.diag_frac.is_some()),
        ("--boundary-frac", args.boundary_frac.is_some()),
        ("--boundary-target", args.boundary_target.is_some()),
        ("--teacher-steps", args.teacher_steps.is_some()),
        ("--endpoint-reuse", args.endpoint_reuse.is_some()),
        ("--teacher-pairs", args.teacher_pairs.is_some()),
        ("--time-warp", args.time_warp.is_some()),
        ("--midpoint", args.midpoint.is_some()),
        ("--dyadic-levels", args.dyadic_levels.is_some()),
        ("--second-time-init", args.second_time_init.is_some()),
    ]);
    args.run.check(shaping)?;
    let request = DistillRequest {
        teacher: args.teacher.clone().unwrap_or_default(),
        out: args.out.clone(),
        train: args.run.train_config(TrainConfig::flow_map_defaults()),
        settings: args.settings(),
        steps: args.run.steps,
        minutes: args.run.minutes,
        resume: args.run.resume,
    };
    let device = pick_device(args.device.device)?;
    if !request.resume {
        eprintln!(
            "distilling {} into a flow map in {} …",
            request.teacher.display(),
            request.out.display()
        );
    }
    let prepared = prepare_distill(&request)?;
    train_with_progress(prepared, device)
}

/// Trains a prepared run on a worker thread and draws its events; Ctrl-C stops cleanly with
/// a final checkpoint.
fn train_with_progress(prepared: PreparedRun, device: ComputeDevice) -> Result<()> {
    let model = &prepared.config.model;
    eprintln!(
        "model: {} ({} parameters, V={}, L={}, d={}, {} blocks)",
        match prepared.config.kind {
            ModelKind::Flm => "FLM",
            ModelKind::FlowMap => "flow map (FMLM)",
            ModelKind::Autoregressive => "autoregressive reference",
        },
        model.num_params(),
        model.vocab_size,
        model.seq_len,
        model.d_model,
        model.n_blocks,
    );
    let control = RunControl::default();
    let ctrlc_control = control.clone();
    // First Ctrl-C: finish the step and write a final checkpoint. Second: leave at once (the
    // last checkpoint on disk is complete, checkpoints being swapped in atomically).
    // Registering twice (the demo after a train) fails harmlessly.
    let _ = ctrlc::set_handler(move || {
        if ctrlc_control.stop_requested() {
            std::process::exit(130);
        }
        eprintln!("\nstopping after this step and writing a checkpoint (Ctrl-C again to quit now)");
        ctrlc_control.request_stop();
    });

    let (sender, receiver) = mpsc::channel();
    let job = prepared.into_job(device)?;
    let worker = std::thread::spawn(move || train(job, &control, &sender));
    let mut view = ProgressView::new();
    for event in receiver {
        view.show(&event);
    }
    let summary = worker
        .join()
        .map_err(|_| anyhow::anyhow!("the training thread panicked"))??;
    view.finish();
    let reason = match summary.reason {
        StopReason::StepsDone => "step target reached",
        StopReason::TimeUp => "time budget used",
        StopReason::Interrupted => "interrupted",
    };
    eprintln!(
        "done at step {} ({reason}); train loss {}, valid loss {}, {:.0} tokens/s",
        summary.final_step,
        fmt_opt(summary.last_train_loss),
        fmt_opt(summary.last_valid_loss),
        summary.tokens_per_sec
    );
    Ok(())
}

fn fmt_opt(value: Option<f64>) -> String {
    value.map_or_else(|| "-".into(), |v| format!("{v:.4}"))
}

/// Renders training events: a bar for steps (or minutes), log lines for the rest.
struct ProgressView {
    bar: ProgressBar,
    /// Set when the bar counts seconds of a time budget rather than steps.
    timed_since: Option<Instant>,
    /// Without a terminal there is no bar; progress goes to plain log lines this often.
    last_plain_line: Option<Instant>,
}

/// Seconds between progress lines when stderr is not a terminal (logs, CI).
const PLAIN_PROGRESS_SECS: u64 = 15;

impl ProgressView {
    fn new() -> Self {
        Self {
            bar: ProgressBar::hidden(),
            timed_since: None,
            last_plain_line: None,
        }
    }

    /// Prints above the bar, or plainly when there is no terminal to draw one on.
    fn line(&self, message: String) {
        if self.bar.is_hidden() {
            eprintln!("{message}");
        } else {
            self.bar.println(message);
        }
    }

    fn show(&mut self, event: &TrainEvent) {
        match event {
            // The device was announced when it was picked; say it once.
            TrainEvent::Started {
                parameters,
                start_step,
                target_steps,
                budget_secs,
                tokens_per_step,
                ..
            } => {
                self.bar = match (target_steps, budget_secs) {
                    (Some(target), None) => {
                        let bar = ProgressBar::new(*target);
                        bar.set_position(*start_step);
                        bar
                    }
                    (_, Some(secs)) => {
                        self.timed_since = Some(Instant::now());
                        ProgressBar::new(secs.ceil() as u64)
                    }
                    (None, None) => ProgressBar::new_spinner(),
                };
                self.bar.set_style(
                    ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} {msg}")
                        .expect("valid template")
                        .progress_chars("=> "),
                );
                self.line(format!(
                    "training: {parameters} parameters, {tokens_per_step} tokens/step, from step {start_step}"
                ));
            }
            TrainEvent::Step {
                step,
                loss,
                tokens_per_sec,
                eta_secs,
                ..
            } => {
                match self.timed_since {
                    Some(since) => self.bar.set_position(since.elapsed().as_secs()),
                    None => self.bar.set_position(*step),
                }
                let eta = eta_secs.map_or_else(String::new, |s| format!(" eta {}", fmt_secs(s)));
                let message = format!("step {step} loss {loss:.4} {tokens_per_sec:.0} tok/s{eta}");
                if self.bar.is_hidden() {
                    let due = self
                        .last_plain_line
                        .is_none_or(|t| t.elapsed().as_secs() >= PLAIN_PROGRESS_SECS);
                    if due {
                        eprintln!("{message}");
                        self.last_plain_line = Some(Instant::now());
                    }
                }
                self.bar.set_message(message);
            }
            TrainEvent::Validation {
                step,
                loss,
                metrics,
            } => {
                let probe: Vec<String> = metrics
                    .iter()
                    .filter(|(name, _)| {
                        name.starts_with("one_step") || name.starts_with("two_step")
                    })
                    .map(|(name, value)| format!("{name} {value:.3}"))
                    .collect();
                let probe = if probe.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", probe.join(", "))
                };
                self.line(format!("step {step}: validation loss {loss:.4}{probe}"));
            }
            TrainEvent::Samples {
                step,
                sampler,
                steps,
                texts,
                valid_fraction,
            } => {
                let valid = valid_fraction
                    .map_or_else(String::new, |f| format!(", {:.0}% valid", f * 100.0));
                self.line(format!(
                    "step {step}: samples ({sampler}, {steps} steps{valid})"
                ));
                for text in texts.iter().take(2) {
                    self.line(format!("  │ {}", one_line(text, 100)));
                }
            }
            TrainEvent::Checkpoint { step, dir } => {
                self.line(format!(
                    "step {step}: checkpoint written to {}",
                    dir.display()
                ));
            }
            TrainEvent::Finished { .. } => {}
        }
    }

    fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

fn fmt_secs(secs: f64) -> String {
    let secs = secs.max(0.0) as u64;
    format!("{}:{:02}", secs / 60, secs % 60)
}

fn one_line(text: &str, max_chars: usize) -> String {
    let flat: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    flat.chars().take(max_chars).collect()
}

fn run_sample(args: SampleArgs) -> Result<()> {
    if args.trajectory.is_some() && args.top_k == 0 {
        bail!("--trajectory needs --top-k of at least 1");
    }
    if args.top_k > flm::generate::MAX_TRAJECTORY_TOP_K {
        return Err(flm::generate::GenerateError::TopK(args.top_k).into());
    }
    let request = GenerateRequest {
        steps: args.steps,
        eta: args.eta,
        seed: args.seed,
        samples: args.n,
        batch: flm::generate::BATCH,
        trajectory_top_k: if args.trajectory.is_some() {
            args.top_k
        } else {
            0
        },
        decoding: args.decoding.decoding(),
    };
    let device = pick_device(args.device.device)?;
    let loaded = load_model(&args.ckpt, &device.device)?;
    // Checked before sampling, so a bad flag fails at once rather than after loading data.
    request
        .sampler(loaded.config.kind)
        .with_context(|| format!("cannot sample `{}`", args.ckpt.display()))?;
    let generator = Generator {
        model: &loaded.model,
        kind: loaded.config.kind,
        tokenizer: &loaded.tokenizer,
        task: BuiltinTask::parse(&loaded.config.data.source).and_then(Result::ok),
        seq_len: loaded.config.model.seq_len,
    };
    let generation = generator.generate_all(&request, &device.device)?;
    let sampler = generation.sampler;
    let mut stdout = std::io::stdout().lock();
    for (index, (text, tokens)) in generation.texts.iter().zip(&generation.tokens).enumerate() {
        let validity = generation.valid[index];
        if args.json {
            let mut record = json!({"text": text, "tokens": tokens, "steps": args.steps,
                "seed": args.seed, "index": index, "sampler": sampler.name(),
                "eta": sampler.eta()});
            if let Some(v) = validity {
                record["valid"] = json!(v);
            }
            writeln!(stdout, "{record}")?;
        } else {
            let mark = validity.map_or("", |v| if v { " [valid]" } else { " [invalid]" });
            writeln!(
                stdout,
                "--- sample {index} (seed {}){mark}\n{text}",
                args.seed
            )?;
        }
    }
    if let Some(share) = generation.valid_fraction() {
        let valid = generation.valid.iter().flatten().filter(|&&v| v).count();
        eprintln!(
            "valid: {valid}/{} ({:.1}%) at {} steps",
            generation.tokens.len(),
            share * 100.0,
            args.steps
        );
    }
    eprintln!(
        "unigram entropy of samples: {:.3} nats",
        unigram_entropy(&generation.tokens) + 0.0 // one repeated token: -0 would print as "-0.000"
    );
    let (first_batch, first_secs) = generation.batches[0];
    let secs = generation.seconds();
    eprintln!(
        "{} sampler, {} steps, η = {}: {} sequences in {secs:.3} s ({:.1} ms per sequence, first batch of {first_batch} took {first_secs:.3} s)",
        sampler.name(),
        args.steps,
        sampler.eta(),
        generation.tokens.len(),
        secs * 1000.0 / generation.tokens.len().max(1) as f64,
    );
    if let (Some(path), Some(trajectory)) = (&args.trajectory, &generation.trajectory) {
        let text = serde_json::to_string(trajectory)?;
        std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
        eprintln!("trajectory written to {}", path.display());
    }
    Ok(())
}

/// Held-out sequences cap: plenty for n-gram statistics, bounded reference-scoring cost.
const MAX_HELD_OUT: usize = 1024;

fn run_eval(args: EvalArgs) -> Result<()> {
    use flm::eval::report::{
        EvalReport, EvalSettings, HeldOut, ModelEvaluation, SampleMetrics, Yardstick,
        denoiser_cross_entropy, evaluate_samplers,
    };
    if args.n == 0 || args.batch == 0 {
        bail!("--n and --batch must be at least 1");
    }
    if !(0.0..=1.0).contains(&args.eta) {
        bail!("--eta must be in [0, 1]");
    }
    let steps_per_model = step_lists(&args.steps, args.ckpt.len())?;
    let device = pick_device(args.device.device)?;
    let models = args
        .ckpt
        .iter()
        .map(|dir| load_model(dir, &device.device))
        .collect::<Result<Vec<_>, _>>()?;
    let first = &models[0];
    for (dir, loaded) in args.ckpt.iter().zip(&models) {
        if loaded.config.kind == ModelKind::Autoregressive {
            bail!(
                "`{}` is an autoregressive reference model; pass it with --ref",
                dir.display()
            );
        }
        if loaded.tokenizer.fingerprint() != first.tokenizer.fingerprint()
            || loaded.config.model.seq_len != first.config.model.seq_len
        {
            bail!(
                "`{}` and `{}` use different tokenizers or sequence lengths; compare models \
                 trained on the same data",
                args.ckpt[0].display(),
                dir.display()
            );
        }
    }
    let reference = match &args.reference {
        Some(dir) => {
            let loaded = load_model(dir, &device.device)?;
            if loaded.config.kind != ModelKind::Autoregressive {
                bail!(
                    "--ref `{}` is not an autoregressive reference model\n  hint: train one with \
                     `flm train-ar --data <the same text> --out DIR`",
                    dir.display()
                );
            }
            if loaded.tokenizer.fingerprint() != first.tokenizer.fingerprint() {
                bail!(
                    "the reference model `{}` uses a different tokenizer than `{}`; its scores \
                     would be meaningless\n  hint: train it on the same text with the same \
                     --vocab and --tokenizer (tokenizer training is deterministic)",
                    dir.display(),
                    args.ckpt[0].display()
                );
            }
            Some(loaded)
        }
        None => None,
    };
    let seq_len = first.config.model.seq_len;
    let tokenizer = &first.tokenizer;
    let task = BuiltinTask::parse(&first.config.data.source).and_then(Result::ok);
    let held_out_sequences: Vec<Vec<u32>> = match (&args.valid, task) {
        (Some(path), _) => {
            let text = flm::data::load_text(path)?;
            let ids = tokenizer.encode(&text)?;
            let packed = flm::data::PackedSequences::pack(&ids, seq_len);
            if packed.is_empty() {
                bail!(
                    "`{}` holds {} tokens, fewer than one sequence of {seq_len}",
                    path.display(),
                    ids.len()
                );
            }
            (0..packed.len().min(MAX_HELD_OUT))
                .map(|i| packed.sequence(i).to_vec())
                .collect()
        }
        (None, Some(task)) => {
            let mut rng = flm::rng::stream_rng(args.seed, u64::MAX - 7);
            task.batch(tokenizer, &mut rng, args.n, seq_len)
                .chunks(seq_len)
                .map(<[u32]>::to_vec)
                .collect()
        }
        (None, None) => bail!("--valid FILE is needed for models trained on text"),
    };
    let held_out = HeldOut::new(held_out_sequences);
    let yardstick = Yardstick {
        held_out: &held_out,
        reference: reference.as_ref().map(|r| (&r.model, seq_len)),
        task: task.map(|t| (t, tokenizer)),
    };
    eprintln!(
        "held-out: {} sequences of {seq_len} tokens",
        held_out.sequences.len()
    );
    let held_out_metrics = SampleMetrics::compute(&held_out.sequences, yardstick);

    let mut evaluations = Vec::new();
    for ((dir, loaded), steps) in args.ckpt.iter().zip(&models).zip(steps_per_model) {
        let settings = EvalSettings {
            eta: (loaded.config.kind == ModelKind::FlowMap).then_some(args.eta),
            steps,
            samples: args.n,
            batch: args.batch,
            seed: args.seed,
            decoding: args.decoding.decoding(),
        };
        let generator = Generator {
            model: &loaded.model,
            kind: loaded.config.kind,
            tokenizer: &loaded.tokenizer,
            task,
            seq_len,
        };
        let name = dir.display().to_string();
        let denoiser_ce =
            denoiser_cross_entropy(&loaded.model, &held_out, seq_len, args.seed, &device.device);
        let results =
            evaluate_samplers(&generator, &settings, yardstick, &device.device, &mut |r| {
                eprintln!(
                    "{name}: {} {} steps: gen-PPL {} JS-2 {:.4} entropy {:.3}{} ({:.2} s/batch)",
                    r.sampler,
                    r.steps,
                    r.metrics
                        .gen_ppl
                        .map_or_else(|| "-".into(), |p| format!("{p:.1}")),
                    r.metrics.js_bigram,
                    r.metrics.unigram_entropy,
                    r.metrics
                        .validity
                        .map_or_else(String::new, |v| format!(" valid {:.1}%", v * 100.0)),
                    r.secs_per_batch
                )
            })?;
        evaluations.push(ModelEvaluation {
            model: name,
            kind: match loaded.config.kind {
                ModelKind::FlowMap => "fmlm".into(),
                _ => "flm".into(),
            },
            denoiser_ce,
            results,
        });
    }
    let report = EvalReport {
        reference: args.reference.as_ref().map(|p| p.display().to_string()),
        seed: args.seed,
        samples_per_setting: args.n,
        seq_len,
        vocab_size: first.config.model.vocab_size,
        held_out: held_out_metrics,
        held_out_sequences: held_out.sequences.len(),
        models: evaluations,
    };
    let json = serde_json::to_string_pretty(&report)?;
    let markdown = report.markdown();
    if let Some(path) = &args.out {
        let write = |path: PathBuf, bytes: &[u8]| {
            std::fs::write(&path, bytes).with_context(|| format!("writing {}", path.display()))
        };
        write(path.clone(), markdown.as_bytes())?;
        write(path.with_extension("json"), json.as_bytes())?;
        let png = flm::eval::figure::render_png(&report.charts(), 560, 400)?;
        write(path.with_extension("png"), &png)?;
        eprintln!("report written to {} (+ .json, .png)", path.display());
    }
    if args.json {
        println!("{json}");
    } else {
        print!("{markdown}");
    }
    Ok(())
}

/// `--steps` as one list per checkpoint: none gives the default, a single list applies to all.
fn step_lists(raw: &[String], checkpoints: usize) -> Result<Vec<Vec<usize>>> {
    let parse = |list: &String| -> Result<Vec<usize>> {
        let steps = list
            .split(',')
            .map(|s| s.trim().parse::<usize>().ok().filter(|&n| n >= 1))
            .collect::<Option<Vec<_>>>();
        steps.ok_or_else(|| {
            anyhow::anyhow!("--steps expects comma-separated counts ≥ 1, like 1,2,4, got `{list}`")
        })
    };
    let lists = raw.iter().map(parse).collect::<Result<Vec<_>>>()?;
    match lists.len() {
        0 => Ok(vec![vec![1, 2, 4, 8, 16, 32]; checkpoints]),
        1 => Ok(vec![lists[0].clone(); checkpoints]),
        n if n == checkpoints => Ok(lists),
        n => bail!(
            "{n} --steps lists for {checkpoints} checkpoints: give one list, or one per --ckpt"
        ),
    }
}

fn run_bench(args: BenchArgs) -> Result<()> {
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
    if json {
        let report = json!({"device": device.description,
            "top_k": flm::kernels::sampler_step::MAX_TOP_K, "bench": bench});
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    let table = |title: &str, reference: &str, timings: &[flm::kernels::bench::KernelTiming]| {
        println!("{title}");
        println!(
            "{:>6}  {:>5}  {:>10}  {:>12}  {:>8}",
            "V", "B·L", "fused ms", reference, "speed-up"
        );
        for t in timings {
            println!(
                "{:>6}  {:>5}  {:>10.2}  {:>12.2}  {:>7.2}x",
                t.vocab, t.rows, t.fused_ms, t.reference_ms, t.speedup
            );
        }
    };
    println!(
        "L={}, median of {runs} runs after 3 warm-ups (fused and reference alternate), {}",
        bench.seq_len, device.description
    );
    table(
        "fused sampler step (softmax + z update + entropy/max/top-16) vs the burn op chain",
        "op chain ms",
        &bench.sampler_step,
    );
    table(
        "fused noisy input (training) vs noise drawn on the host and uploaded",
        "host ms",
        &bench.noisy_input,
    );
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
    if json {
        let report = json!({"device": device.description, "shape": shape,
            "parameters": shape.parameters(), "train": timing, "peak_rss_mib": peak});
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    println!(
        "training step, preset {}, {} parameters, V={}, B={}, L={}, median of {} steps each (alternating), {}",
        shape.preset,
        shape.parameters(),
        shape.vocab,
        shape.batch,
        shape.seq_len,
        timing.runs,
        device.description
    );
    println!(
        "  with flm's kernels:    {:8.1} ms/step  {:7.0} tokens/s",
        timing.kernels_ms, timing.tokens_per_sec
    );
    println!(
        "  without (burn ops):    {:8.1} ms/step  {:7.0} tokens/s",
        timing.reference_ms,
        timing.tokens_per_sec / timing.speedup
    );
    println!("  speed-up: {:.2}x", timing.speedup);
    if let Some(peak) = peak {
        println!("  peak memory: {peak:.0} MiB");
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
    if json {
        let rows: Vec<_> = results
            .iter()
            .map(|(n, t)| json!({"network_calls": n, "timing": t, "ms_per_call": t.kernels_ms / *n as f64}))
            .collect();
        let report = json!({"device": device.description, "shape": shape,
            "parameters": shape.parameters(), "sample": rows, "peak_rss_mib": peak});
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    println!(
        "sampling a batch, preset {}, V={}, B={}, L={}, median of {runs} batches each (alternating), {}",
        shape.preset, shape.vocab, shape.batch, shape.seq_len, device.description
    );
    for (n, t) in &results {
        println!(
            "  {n:>4} calls: {:9.1} ms ({:7.1} ms/call) with flm's kernels, {:9.1} ms without, {:.2}x",
            t.kernels_ms,
            t.kernels_ms / *n as f64,
            t.reference_ms,
            t.speedup
        );
    }
    if let Some(peak) = peak {
        println!("  peak memory: {peak:.0} MiB");
    }
    Ok(())
}

fn run_export(args: ExportArgs) -> Result<()> {
    if args.layout == ExportLayout::Official {
        let export = flm::import::export_official(&args.ckpt, &args.out)?;
        for note in &export.notes {
            eprintln!("note: {note}");
        }
        for file in export.files {
            println!("{}", file.display());
        }
        return Ok(());
    }
    for file in flm::train::export_model(&args.ckpt, &args.out)? {
        println!("{}", file.display());
    }
    Ok(())
}

fn run_import(args: ImportArgs) -> Result<()> {
    let options = flm::import::ImportOptions {
        tokenizer: args.tokenizer,
        weights: args.weights,
        heads: args.heads,
        seq_len: args.seq_len,
    };
    let summary = flm::import::import_official(&args.from, &args.out, &options)?;
    let model = &summary.config.model;
    let kind = match summary.kind {
        ModelKind::FlowMap => "flow map (FMLM)",
        _ => "FLM",
    };
    println!(
        "imported {} into {}",
        args.from.display(),
        summary.out.display()
    );
    println!(
        "{kind}: d={} blocks={} heads={} cond={} V={} — {} parameters; L={} (from {})",
        model.d_model,
        model.n_blocks,
        model.n_heads,
        model.cond_dim,
        model.vocab_size,
        summary.num_params,
        model.seq_len,
        summary.seq_len_from
    );
    for note in &summary.notes {
        println!("note: {note}");
    }
    println!(
        "sample it with: flm sample --ckpt {}",
        summary.out.display()
    );
    Ok(())
}

fn run_forward(args: ForwardArgs) -> Result<()> {
    let device = pick_device(args.device.device)?;
    let summary = flm::import::forward_file(&args.ckpt, &args.input, &args.out, &device.device)?;
    if summary.ignored_tau_t {
        eprintln!("note: the model is an FLM (one time): the input's `tau_t` was not used");
    }
    println!(
        "{} × {} positions × {} tokens ({}), {:.3} s: wrote `logits` (before the logit cap) \
         and `probs` (after {} and the softmax) to {}",
        summary.batch,
        summary.seq_len,
        summary.vocab,
        if summary.flow_map { "flow map" } else { "FLM" },
        summary.secs,
        summary
            .logit_softcap
            .map_or_else(|| "no cap".to_string(), |cap| format!("the cap {cap}")),
        args.out.display()
    );
    Ok(())
}

fn run_info(args: InfoArgs) -> Result<()> {
    let run = flm::train::RunDir::new(&args.ckpt);
    let config = flm::train::checkpoint::load_config(&run)?;
    let state = flm::train::checkpoint::load_state(&run).ok();
    println!("checkpoint: {}", args.ckpt.display());
    match (&config.kind, &config.distill) {
        (ModelKind::FlowMap, Some(distill)) => {
            let settings = &distill.settings;
            println!(
                "kind: flow map (FMLM), diagonal share {}, boundary share {:.4} ({} targets{}), \
                 time warp {}, {:?} midpoint",
                settings.fractions.diagonal,
                settings.fractions.boundary,
                match settings.boundary_target {
                    BoundaryTarget::Teacher => "teacher-endpoint",
                    BoundaryTarget::Semigroup => "semigroup",
                },
                match settings.boundary_target {
                    BoundaryTarget::Teacher => format!(", K = {}", settings.teacher_steps),
                    BoundaryTarget::Semigroup => String::new(),
                },
                settings.times.warp,
                settings.times.midpoint,
            );
            match &distill.teacher {
                Some(teacher) => println!(
                    "teacher: {} (step {}, validation loss {})",
                    teacher.source.display(),
                    teacher.step.map_or_else(|| "-".into(), |s| s.to_string()),
                    fmt_opt(teacher.valid_loss)
                ),
                None if config.imported_from.is_some() => {
                    println!("teacher: not recorded (distilled by the paper's code)")
                }
                None => println!("teacher: none (self-distilled from the data)"),
            }
        }
        (ModelKind::Autoregressive, _) => println!("kind: autoregressive reference model"),
        _ => println!("kind: FLM"),
    }
    println!("data: {}", config.data.source);
    if let Some(valid) = &config.data.valid {
        println!("validation: {}", valid.display());
    }
    println!(
        "tokenizer: {:?}, V = {}, L = {}",
        config.data.tokenizer, config.model.vocab_size, config.model.seq_len
    );
    println!(
        "model: d={} blocks={} heads={} cond={} — {} parameters",
        config.model.d_model,
        config.model.n_blocks,
        config.model.n_heads,
        config.model.cond_dim,
        config.model.num_params()
    );
    println!(
        "training: batch {}, lr {}, warm-up {}, EMA ≤ {}, seed {}",
        config.train.batch_size,
        config.train.learning_rate,
        config.train.warmup_steps,
        config.train.ema_decay,
        config.train.seed
    );
    match state {
        Some(state) => {
            println!(
                "progress: {} steps, {} tokens, {} trained",
                state.step,
                state.tokens_seen,
                fmt_secs(state.elapsed_secs)
            );
            println!(
                "last losses: train {}, validation {}",
                fmt_opt(state.last_train_loss),
                fmt_opt(state.last_valid_loss)
            );
        }
        None => println!("progress: no checkpoint written yet"),
    }
    if let Some(import) = &config.imported_from {
        let weights = import
            .weights
            .map_or_else(String::new, |w| format!(", {w} weights"));
        println!("imported from: {}{weights}", import.source.display());
    }
    println!("created with: {}", config.created_with);
    Ok(())
}

fn run_schedule(args: ScheduleArgs) -> Result<()> {
    let schedule = Schedule::new(args.vocab)?;
    match args.tau {
        Some(tau) => {
            if !(0.0..=1.0).contains(&tau) {
                bail!("--tau must be in [0, 1], got {tau}");
            }
            println!("{:.4}", schedule.gamma(tau));
        }
        None => {
            println!(
                "V = {}: γ(τ) and the argmax decoding accuracy q(γ)",
                args.vocab
            );
            println!("{:>6}  {:>8}  {:>8}", "tau", "gamma", "q");
            for (tau, gamma) in schedule.uniform_grid(args.rows.max(1)) {
                println!(
                    "{tau:>6.3}  {gamma:>8.4}  {:>8.4}",
                    schedule.decode_accuracy(gamma)
                );
            }
        }
    }
    Ok(())
}

fn run_demo(args: DemoArgs) -> Result<()> {
    let out = args
        .out
        .unwrap_or_else(|| std::env::temp_dir().join(format!("flm-demo-{}", std::process::id())));
    eprintln!(
        "demo: training a tiny model on builtin:repeat (every sequence is one letter repeated) for {:.0} s in {}",
        args.seconds,
        out.display()
    );
    let request = TrainRequest {
        out: out.clone(),
        data: "builtin:repeat".into(),
        valid: None,
        preset: ModelPreset::Tiny,
        seq_len: None,
        vocab_size: DEFAULT_VOCAB,
        tokenizer: TokenizerKind::Char,
        train: TrainConfig::default(),
        steps: None,
        minutes: Some(args.seconds / 60.0),
        resume: false,
        kind: NewModelKind::Flm,
        tokenizer_from: None,
    };
    let device = pick_device(DeviceChoice::Auto)?;
    train_with_progress(prepare_run(&request)?, device.clone())?;

    let loaded = load_model(&out, &device.device)?;
    let schedule = Schedule::new(loaded.config.model.vocab_size)?;
    let task = BuiltinTask::Repeat;
    for steps in [1, 4, 32] {
        let settings = SamplerSettings {
            steps,
            seed: 7,
            stream: 0,
            batch: 32,
            seq_len: loaded.config.model.seq_len,
            top_k: 1,
            decoding: Default::default(),
        };
        let output = euler_sample(&loaded.model, &schedule, &settings, &device.device);
        let valid = fraction(&output.tokens, |t| task.is_valid(&loaded.tokenizer, t));
        println!(
            "\n{steps:>2} Euler steps: {:.0}% of 32 samples valid",
            valid * 100.0
        );
        if let Some(trajectory) = output.trajectory.filter(|_| steps == 32) {
            println!("denoising of sample 0 (argmax per step; upper case = probability > 0.9):");
            let sample = &trajectory.samples[0];
            for (i, frame) in sample.frames.iter().enumerate().step_by(4) {
                let text: String = frame
                    .argmax
                    .iter()
                    .zip(&frame.max_prob)
                    .map(|(&id, &p)| {
                        let token = loaded.tokenizer.token_text(id);
                        if p > 0.9 { token.to_uppercase() } else { token }
                    })
                    .collect();
                println!("  step {i:>2} (τ={:.2}): {text}", trajectory.taus[i]);
            }
        }
        for tokens in output.tokens.iter().take(2) {
            println!("  {}", loaded.tokenizer.decode(tokens));
        }
    }
    println!(
        "\nrun directory kept at {} (try: flm sample --ckpt {} --steps 8)",
        out.display(),
        out.display()
    );
    Ok(())
}
