//! `flm sample`: generate text from a checkpoint (the sampler follows the model's kind) and
//! print it as text or JSON lines, with validity, diversity and timing on stderr.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Args;
use serde_json::json;

use flm::data::BuiltinTask;
use flm::flow::Decoding;
use flm::generate::{Conditioning, GenerateRequest, Generator};
use flm::metrics::unigram_entropy;
use flm::render::animation::{AnimationOptions, render_gif};
use flm::train::load_model;

use super::{DeviceArg, pick_device};

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
    /// Write the denoising of the first sample as an animated GIF: one frame per step (at
    /// most 32, evenly spread), tokens shaded by probability, then the final text.
    #[arg(long, value_name = "FILE.gif")]
    pub animation: Option<PathBuf>,
    /// Candidates per position kept in the trajectory (at most 16).
    #[arg(long, default_value_t = 8)]
    pub top_k: usize,
    /// Stochasticity η in [0, 1] of the flow-map sampler (flow-map models only): 0 is the
    /// deterministic flow map; one step is the same for every η.
    #[arg(long)]
    pub eta: Option<f64>,
    /// Fixed text the samples start with; the rest of each sequence is generated. The fixed
    /// positions are clamped to their tokens' noisy versions at every step and the generated
    /// ones are guided toward them (see --guidance; use at least 2 steps: a single step cannot
    /// see them).
    #[arg(long, value_name = "TEXT", conflicts_with = "template")]
    pub prompt: Option<String>,
    /// Fixed text with blanks to fill in: each `___` (three underscores) is one generated
    /// token, the text between blanks is fixed, and everything after the template's end is
    /// generated up to the model's sequence length, e.g. `--template "the ___ ___ sat on"`.
    /// Each piece of text is tokenized on its own.
    #[arg(long, value_name = "TEXT")]
    pub template: Option<String>,
    /// With --prompt or --template: how hard the generated positions are pulled toward the
    /// fixed text, through the gradient of the model's probability of it (0 = clamping
    /// alone, which barely steers; costs about 3× a plain step) [default: 8 for an FLM, 2 for
    /// a flow map, whose few large steps overshoot with more]
    #[arg(long)]
    pub guidance: Option<f64>,
    #[command(flatten)]
    pub decoding: DecodingArgs,
    #[command(flatten)]
    pub device: DeviceArg,
}

/// How the last step's distribution becomes tokens (both samplers).
#[derive(Args, Debug)]
pub struct DecodingArgs {
    /// Draw each token from the final distribution at this temperature [default for `flm
    /// sample` on text: 0.8, with --top-p 0.9; see docs/first-minutes.md]
    #[arg(long)]
    pub temperature: Option<f64>,
    /// With drawing: keep only the most likely tokens whose probabilities add up to this
    /// (nucleus sampling) [default: 1 when only --temperature is given]
    #[arg(long)]
    pub top_p: Option<f64>,
    /// Take the most likely token at every position (the paper's decoding; the default on
    /// built-in tasks and in `flm eval`)
    #[arg(long, conflicts_with_all = ["temperature", "top_p"])]
    pub argmax: bool,
}

impl DecodingArgs {
    /// The decoding the flags ask for, or `default` when they ask for none.
    pub fn decoding_or(&self, default: Decoding) -> Decoding {
        match (self.argmax, self.temperature, self.top_p) {
            (true, _, _) => Decoding::Argmax,
            (false, None, None) => default,
            (false, temperature, top_p) => Decoding::Draw {
                temperature: temperature.unwrap_or(1.0),
                top_p: top_p.unwrap_or(1.0),
            },
        }
    }
}

pub fn run(args: SampleArgs) -> Result<()> {
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
        trajectory_top_k: match (&args.trajectory, &args.animation) {
            (Some(_), _) => args.top_k,
            (None, Some(_)) => 1, // the animation draws only the top candidate
            (None, None) => 0,
        },
        decoding: args.decoding.decoding_or(Decoding::Argmax), // the model's default below
        conditioning: Conditioning::None,
        guidance: args.guidance.unwrap_or(flm::generate::FLM_GUIDANCE), // the model's default below
    };
    let device = pick_device(args.device.device)?;
    let loaded = load_model(&args.ckpt, &device.device)?;
    let cannot = || format!("cannot sample `{}`", args.ckpt.display());
    // Checked before sampling, so a bad flag fails at once rather than after loading data.
    request.sampler(loaded.config.kind).with_context(cannot)?;
    let tokenizer = &loaded.tokenizer;
    let conditioning = match (&args.prompt, &args.template) {
        (Some(text), _) => Conditioning::prompt(tokenizer, text),
        (None, Some(text)) => Conditioning::template(tokenizer, text),
        (None, None) => Ok(Conditioning::None),
    };
    let task = BuiltinTask::parse(&loaded.config.data.source).and_then(Result::ok);
    let request = GenerateRequest {
        conditioning: conditioning.with_context(cannot)?,
        guidance: args
            .guidance
            .unwrap_or(flm::generate::default_guidance(loaded.config.kind)),
        decoding: args
            .decoding
            .decoding_or(Decoding::default_for(task.is_some())),
        ..request
    };
    let generator = Generator {
        model: &loaded.model,
        kind: loaded.config.kind,
        tokenizer,
        task,
        seq_len: loaded.config.model.seq_len,
    };
    generator.check(&request).with_context(cannot)?;
    if let Some(warning) = request.warning() {
        eprintln!("warning: {warning}");
    }
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
            if !request.conditioning.is_empty() {
                record["fixed"] = json!(generation.fixed);
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
    if let Some(token) = generation.single_token() {
        eprintln!(
            "warning: {}",
            flm::generate::single_token_advice(&tokenizer.token_text(token))
        );
    }
    eprintln!(
        "unigram entropy of samples: {:.3} nats",
        unigram_entropy(&generation.tokens) + 0.0 // one repeated token: -0 would print as "-0.000"
    );
    // Real words need the training text; a run whose file has moved just skips the line.
    if generation.valid_fraction().is_none()
        && let Ok(text) = flm::data::load_text(std::path::Path::new(&loaded.config.data.source))
        && let Some(share) = flm::data::Lexicon::from_text(&text).real_word_share(&generation.texts)
    {
        eprintln!(
            "real words: {:.1}% of the samples' words occur in the training text",
            share * 100.0
        );
    }
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
    if let (Some(path), Some(trajectory)) = (&args.animation, &generation.trajectory) {
        let token_text = |id| tokenizer.token_text(id);
        let gif = render_gif(trajectory, &token_text, &AnimationOptions::default())
            .with_context(|| format!("cannot draw the animation {}", path.display()))?;
        flm::train::checkpoint::write_atomic(path, &gif)?;
        eprintln!(
            "animation written to {} ({} KB)",
            path.display(),
            gif.len() / 1024
        );
    }
    if let (Some(path), Some(trajectory)) = (&args.trajectory, &generation.trajectory) {
        let text = serde_json::to_string(trajectory)?;
        std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
        eprintln!("trajectory written to {}", path.display());
    }
    Ok(())
}
