//! `flm demo` (and `flm` without a display): train a tiny model on `builtin:repeat` for a
//! minute, then show it denoising at 1, 4 and 32 steps, with no files or flags needed.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use flm::data::{BuiltinTask, TokenizerKind};
use flm::device::DeviceChoice;
use flm::flow::{SamplerSettings, Schedule, euler_sample};
use flm::metrics::fraction;
use flm::model::ModelPreset;
use flm::train::setup::DEFAULT_VOCAB;
use flm::train::{NewModelKind, TrainConfig, TrainRequest, load_model, prepare_run};

use super::pick_device;
use super::train::train_with_progress;

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

impl Default for DemoArgs {
    /// What `flm` runs when it cannot open a window.
    fn default() -> Self {
        Self {
            seconds: 60.0,
            out: None,
        }
    }
}

pub fn run(args: DemoArgs) -> Result<()> {
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
    let mut stdout = std::io::stdout().lock();
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
        writeln!(
            stdout,
            "\n{steps:>2} Euler steps: {:.0}% of 32 samples valid",
            valid * 100.0
        )?;
        if let Some(trajectory) = output.trajectory.filter(|_| steps == 32) {
            writeln!(
                stdout,
                "denoising of sample 0 (argmax per step; upper case = probability > 0.9):"
            )?;
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
                writeln!(
                    stdout,
                    "  step {i:>2} (τ={:.2}): {text}",
                    trajectory.taus[i]
                )?;
            }
        }
        for tokens in output.tokens.iter().take(2) {
            writeln!(stdout, "  {}", loaded.tokenizer.decode(tokens))?;
        }
    }
    writeln!(
        stdout,
        "\nrun directory kept at {} (try: flm sample --ckpt {} --steps 8)",
        out.display(),
        out.display()
    )?;
    Ok(())
}
