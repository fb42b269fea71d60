//! `flm eval`: flags in, report out. The evaluation itself (loading, comparing tokenizers,
//! the held-out set, the metrics) is [`flm::eval::plan`]; this prints its progress and writes
//! or prints the report.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Args;

use flm::eval::plan::{DEFAULT_STEPS, EvalEvent, EvalRequest, EvalTarget, PromptSource};
use flm::flow::Decoding;

use super::sample::DecodingArgs;
use super::{DeviceArg, pick_device};

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
    /// Also measure continuations of prompts cut from this text file: each sequence of the
    /// model's length (packed like training data, at most --n of them) gives a prompt, its
    /// first L − C tokens. Every step count is then sampled twice, continuing the prompts and
    /// unprompted, and both are measured on their last C tokens, gen-PPL given the tokens
    /// before them.
    #[arg(long, value_name = "FILE")]
    pub prompts: Option<PathBuf>,
    /// C: tokens generated after each prompt (with --prompts) [default: half the model's
    /// sequence length]
    #[arg(long, value_name = "C")]
    pub continuation: Option<usize>,
    /// Pull of the generated tokens toward the prompt (with --prompts; as `flm sample`'s)
    /// [default: each model's, 8 for an FLM and 2 for a flow map]
    #[arg(long)]
    pub guidance: Option<f64>,
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

pub fn run(args: EvalArgs) -> Result<()> {
    let steps = step_lists(&args.steps, args.ckpt.len())?;
    let request = EvalRequest {
        targets: args
            .ckpt
            .iter()
            .zip(steps)
            .map(|(checkpoint, steps)| EvalTarget {
                checkpoint: checkpoint.clone(),
                steps,
            })
            .collect(),
        reference: args.reference.clone(),
        valid: args.valid.clone(),
        prompts: args.prompts.clone().map(|file| PromptSource {
            file,
            continuation: args.continuation,
            guidance: args.guidance,
        }),
        eta: args.eta,
        decoding: args.decoding.decoding_or(Decoding::Argmax),
        samples: args.n,
        batch: args.batch,
        seed: args.seed,
    };
    request.check()?;
    let device = pick_device(args.device.device)?;
    let report = request.run(&device.device, &mut |event| match event {
        EvalEvent::HeldOut { sequences, seq_len } => {
            eprintln!("held-out: {sequences} sequences of {seq_len} tokens")
        }
        EvalEvent::Measured { model, result: r } => eprintln!(
            "{model}: {}{} {} steps: gen-PPL {} JS-2 {:.4} entropy {:.3}{} ({:.2} s/batch)",
            r.sampler,
            if r.prompted { ", prompted" } else { "" },
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
        ),
    })?;
    let json = serde_json::to_string_pretty(&report)?;
    let markdown = report.markdown();
    if let Some(path) = &args.out {
        let write = |path: PathBuf, bytes: &[u8]| {
            std::fs::write(&path, bytes).with_context(|| format!("writing {}", path.display()))
        };
        write(path.clone(), markdown.as_bytes())?;
        write(path.with_extension("json"), json.as_bytes())?;
        let png = flm::render::figure::render_png(&report.charts(), 560, 400)?;
        write(path.with_extension("png"), &png)?;
        eprintln!("report written to {} (+ .json, .png)", path.display());
    }
    let mut stdout = std::io::stdout().lock();
    if args.json {
        writeln!(stdout, "{json}")?;
    } else {
        write!(stdout, "{markdown}")?;
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
        0 => Ok(vec![DEFAULT_STEPS.to_vec(); checkpoints]),
        1 => Ok(vec![lists[0].clone(); checkpoints]),
        n if n == checkpoints => Ok(lists),
        n => bail!(
            "{n} --steps lists for {checkpoints} checkpoints: give one list, or one per --ckpt"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::step_lists;

    #[test]
    fn step_lists_default_share_or_pair_up() {
        assert_eq!(step_lists(&[], 2).unwrap().len(), 2);
        let one = vec!["1, 4".to_string()];
        assert_eq!(step_lists(&one, 2).unwrap(), vec![vec![1, 4], vec![1, 4]]);
        assert!(step_lists(&["0".to_string()], 1).is_err());
        assert!(step_lists(&vec![one[0].clone(); 3], 2).is_err());
    }
}
