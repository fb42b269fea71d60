//! `flm export`, `flm import` and `flm forward`: models in and out of flm, in its own layout
//! or the paper's PyTorch one, and one raw forward pass for comparing implementations.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Result;
use clap::{Args, ValueEnum};

use flm::train::WeightSet;

use super::{DeviceArg, pick_device};

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
    /// Replace files of the same names already in --out (a folder holding a training run is
    /// refused even so).
    #[arg(long)]
    pub force: bool,
}

/// The folder layouts `flm export` writes.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExportLayout {
    /// config.json, tokenizer.json, model.safetensors: what `flm sample` opens.
    Flm,
    /// The paper's state-dict names, config.yaml and tokenizer.json.
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
    /// Which weights of a .ckpt.
    #[arg(long, value_enum, default_value_t = WeightsArg::Ema)]
    pub weights: WeightsArg,
    /// Number of attention heads, if the file lacks the rotary buffer that tells it.
    #[arg(long)]
    pub heads: Option<usize>,
    /// Sequence length to sample, at most 8192 (default: the released models' 128 or 1024).
    #[arg(long, value_parser = flm::limits::parse_seq_len)]
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

/// The weight sets of a paper checkpoint (`flm::train::WeightSet`, listed for `--help`).
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum WeightsArg {
    /// The exponential moving average: what the paper evaluates and samples.
    Ema,
    /// The weights being optimised.
    Online,
}

impl From<WeightsArg> for WeightSet {
    fn from(arg: WeightsArg) -> Self {
        match arg {
            WeightsArg::Ema => WeightSet::Ema,
            WeightsArg::Online => WeightSet::Online,
        }
    }
}

pub fn run_export(args: ExportArgs) -> Result<()> {
    let mut out = std::io::stdout().lock();
    if args.layout == ExportLayout::Official {
        let export = flm::import::export_official_to(&args.ckpt, &args.out, args.force)?;
        for note in &export.notes {
            eprintln!("note: {note}");
        }
        for file in export.files {
            writeln!(out, "{}", file.display())?;
        }
        return Ok(());
    }
    for file in flm::train::export_model_to(&args.ckpt, &args.out, args.force)? {
        writeln!(out, "{}", file.display())?;
    }
    Ok(())
}

pub fn run_import(args: ImportArgs) -> Result<()> {
    let mut out = std::io::stdout().lock();
    let options = flm::import::ImportOptions {
        tokenizer: args.tokenizer,
        weights: args.weights.into(),
        heads: args.heads,
        seq_len: args.seq_len,
    };
    let summary = flm::import::import_official(&args.from, &args.out, &options)?;
    let model = &summary.config.model;
    let kind = summary.kind.description();
    writeln!(
        out,
        "imported {} into {}",
        args.from.display(),
        summary.out.display()
    )?;
    writeln!(
        out,
        "{kind}: d={} blocks={} heads={} cond={} V={} — {} parameters; L={} (from {})",
        model.d_model,
        model.n_blocks,
        model.n_heads,
        model.cond_dim,
        model.vocab_size,
        summary.num_params,
        model.seq_len,
        summary.seq_len_from
    )?;
    for note in &summary.notes {
        writeln!(out, "note: {note}")?;
    }
    writeln!(
        out,
        "sample it with: flm sample --ckpt {}",
        summary.out.display()
    )?;
    Ok(())
}

pub fn run_forward(args: ForwardArgs) -> Result<()> {
    let mut out = std::io::stdout().lock();
    let device = pick_device(args.device.device)?;
    let summary = flm::import::forward_file(&args.ckpt, &args.input, &args.out, &device.device)?;
    if summary.ignored_tau_t {
        eprintln!("note: the model is an FLM (one time): the input's `tau_t` was not used");
    }
    writeln!(
        out,
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
    )?;
    Ok(())
}
