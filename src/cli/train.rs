//! `flm train` and `flm train-ar`: flags that shape a run, the checks on them (a resumed run
//! keeps its settings), and training with a progress view and a clean Ctrl-C, which
//! `flm distill` and `flm demo` share.

use std::path::PathBuf;
use std::sync::mpsc;

use anyhow::{Result, bail};
use clap::{Args, ValueEnum};

use flm::data::TokenizerKind;
use flm::device::ComputeDevice;
use flm::flow::distill::DistillSettings;
use flm::model::ModelPreset;
use flm::train::setup::{DEFAULT_VOCAB, PreparedRun};
use flm::train::{
    NewModelKind, RunControl, StopReason, TrainConfig, TrainRequest, prepare_run, train,
};

use super::progress::ProgressView;
use super::{DeviceArg, fmt_opt, pick_device};

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
    /// Model size [default: tiny]
    #[arg(long, value_enum)]
    pub preset: Option<ModelPreset>,
    /// Sequence length L, at most 8192 [default: 128 for text, 32 for built-in tasks]
    #[arg(long, value_parser = flm::limits::parse_seq_len)]
    pub seq_len: Option<usize>,
    /// Vocabulary size for the BPE tokenizer, special tokens included, at most 262144
    /// [default: 2048]
    #[arg(long, value_parser = flm::limits::parse_vocab)]
    pub vocab: Option<usize>,
    /// Tokenizer for text files [default: bpe]
    #[arg(long, value_enum)]
    pub tokenizer: Option<TokenizerArg>,
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

/// How long and how to optimise; shared by `train` and `distill`.
#[derive(Args, Debug)]
pub struct RunArgs {
    /// Stop after this many steps in total [default: 2000 when --minutes is not given]
    #[arg(long)]
    pub steps: Option<u64>,
    /// Stop after training this many minutes in this invocation.
    #[arg(long)]
    pub minutes: Option<f64>,
    /// Sequences per batch, at most 65536 [default: 16; 64 for `flm distill`]
    #[arg(long, value_parser = flm::limits::parse_batch)]
    pub batch: Option<usize>,
    /// Peak learning rate (AdamW, after linear warm-up) [default: 0.001; 0.0003 for flow maps]
    #[arg(long)]
    pub lr: Option<f64>,
    /// Warm-up steps [default: 100]
    #[arg(long)]
    pub warmup: Option<u64>,
    /// Share of the run (by --steps or --minutes), at its end, over which the learning rate
    /// falls linearly to zero [default: 0.5 for flm distill; 0, constant, otherwise]
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
    pub(super) fn train_config(&self, defaults: TrainConfig) -> TrainConfig {
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
    pub(super) fn check(&self, other_shaping_flags: Vec<&'static str>) -> Result<()> {
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

/// The names of the flags that were given.
pub(super) fn set_flags(given: &[(&'static str, bool)]) -> Vec<&'static str> {
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

/// The tokenizers `flm train` can train (a pretrained one only comes with `flm import`).
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenizerArg {
    /// Byte-level BPE with --vocab tokens.
    Bpe,
    /// One token per character.
    Char,
}

impl From<TokenizerArg> for TokenizerKind {
    fn from(arg: TokenizerArg) -> Self {
        match arg {
            TokenizerArg::Bpe => TokenizerKind::Bpe,
            TokenizerArg::Char => TokenizerKind::Char,
        }
    }
}

/// `flm train` (an FLM, or a self-distilled flow map) and `flm train-ar` (the reference model).
pub fn run_train(args: TrainArgs, autoregressive: bool) -> Result<()> {
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
        tokenizer: args
            .tokenizer
            .map_or(TokenizerKind::Bpe, TokenizerKind::from),
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
    let spinner = super::progress::preparing(&request.out);
    let prepared = prepare_run(&request);
    spinner.finish_and_clear();
    train_with_progress(prepared?, device)
}

/// DESIGN §6's default share of diagonal examples.
pub(super) const DEFAULT_DIAG_FRAC: f64 = 0.5;

/// Trains a prepared run on a worker thread and draws its events; Ctrl-C stops cleanly with
/// a final checkpoint.
pub(super) fn train_with_progress(prepared: PreparedRun, device: ComputeDevice) -> Result<()> {
    let model = &prepared.config.model;
    eprintln!(
        "model: {} ({} parameters, V={}, L={}, d={}, {} blocks)",
        prepared.config.kind.description(),
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
    let mut view = ProgressView::default();
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
    // Peak memory matters on big corpora (the whole token cache is in memory), so say it.
    let memory = flm::train::throughput::peak_rss_mib()
        .map(|mib| format!(", peak memory {mib:.0} MiB"))
        .unwrap_or_default();
    eprintln!(
        "done at step {} ({reason}); train loss {}, valid loss {}, {:.0} tokens/s{memory}",
        summary.final_step,
        fmt_opt(summary.last_train_loss),
        fmt_opt(summary.last_valid_loss),
        summary.tokens_per_sec
    );
    Ok(())
}
