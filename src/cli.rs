//! The `flm` command line: the same work as the app, headless, with progress bars.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;

use flm::data::TokenizerKind;
use flm::device::{self, ComputeDevice, DeviceChoice};
use flm::eval::metrics::{fraction, unigram_entropy};
use flm::flow::{SamplerSettings, Schedule, euler_sample};
use flm::model::ModelPreset;
use flm::train::setup::{DEFAULT_VOCAB, load_data};
use flm::train::{
    RunControl, StopReason, TrainConfig, TrainEvent, TrainJob, TrainRequest, load_model,
    prepare_run, train,
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
    /// Generate text from a trained checkpoint.
    Sample(SampleArgs),
    /// Show a checkpoint's configuration, size and progress.
    Info(InfoArgs),
    /// Print the time reparameterization γ(τ) for a vocabulary size.
    Schedule(ScheduleArgs),
    /// Train a tiny model on `builtin:repeat` for a minute and show it denoising.
    Demo(DemoArgs),
}

#[derive(Args, Debug)]
pub struct TrainArgs {
    /// Training text (UTF-8 file) or a built-in task: builtin:repeat, builtin:sorted.
    #[arg(long)]
    pub data: String,
    /// Run directory for config, tokenizer, checkpoints and metrics.
    #[arg(long)]
    pub out: PathBuf,
    /// Validation text file (default: the last 5% of the training tokens).
    #[arg(long)]
    pub valid: Option<PathBuf>,
    /// Model size: micro, tiny, small or base.
    #[arg(long, default_value = "tiny")]
    pub preset: ModelPreset,
    /// Sequence length L (default: 128 for text, 32 for built-in tasks).
    #[arg(long)]
    pub seq_len: Option<usize>,
    /// Vocabulary size for the BPE tokenizer (special tokens included).
    #[arg(long, default_value_t = DEFAULT_VOCAB)]
    pub vocab: usize,
    /// Tokenizer for text files: bpe or char.
    #[arg(long, default_value = "bpe")]
    pub tokenizer: TokenizerKind,
    /// Stop after this many steps in total (default 2000 when --minutes is not given).
    #[arg(long)]
    pub steps: Option<u64>,
    /// Stop after training this many minutes in this invocation.
    #[arg(long)]
    pub minutes: Option<f64>,
    /// Sequences per batch.
    #[arg(long, default_value_t = 16)]
    pub batch: usize,
    /// Peak learning rate (AdamW, after linear warm-up).
    #[arg(long, default_value_t = 1e-3)]
    pub lr: f64,
    /// Warm-up steps.
    #[arg(long, default_value_t = 100)]
    pub warmup: u64,
    /// Upper bound of the EMA decay of the weights used for sampling.
    #[arg(long, default_value_t = 0.999)]
    pub ema: f64,
    /// Random seed (initial weights, batches, noise).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Steps between validation runs.
    #[arg(long, default_value_t = 200)]
    pub eval_every: u64,
    /// Steps between sample previews.
    #[arg(long, default_value_t = 500)]
    pub sample_every: u64,
    /// Steps between checkpoints (one is also written every 5 minutes and at the end).
    #[arg(long, default_value_t = 500)]
    pub checkpoint_every: u64,
    /// Continue the run in --out from its last checkpoint.
    #[arg(long)]
    pub resume: bool,
    #[command(flatten)]
    pub device: DeviceArg,
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
    /// Candidates per position kept in the trajectory.
    #[arg(long, default_value_t = 8)]
    pub top_k: usize,
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
    #[arg(long, default_value_t = 60.0)]
    pub seconds: f64,
    /// Run directory (default: a fresh folder under the system temp dir).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// Sequences sampled together; larger requests are split into batches with seeds seed, seed+1, …
const SAMPLE_BATCH: usize = 64;

pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Some(Command::Train(args)) => run_train(args),
        Some(Command::Sample(args)) => run_sample(args),
        Some(Command::Info(args)) => run_info(args),
        Some(Command::Schedule(args)) => run_schedule(args),
        Some(Command::Demo(args)) => run_demo(args),
        None => {
            eprintln!(
                "flm: the desktop app is not part of this build yet; running the terminal demo \
                 instead (see `flm --help` for train, sample, info, schedule)."
            );
            run_demo(DemoArgs {
                seconds: 60.0,
                out: None,
            })
        }
    }
}

fn pick_device(choice: DeviceChoice) -> Result<ComputeDevice> {
    let device = device::select(choice).map_err(anyhow::Error::msg)?;
    eprintln!("device: {device}");
    Ok(device)
}

fn run_train(args: TrainArgs) -> Result<()> {
    if args.batch == 0 {
        bail!("--batch must be at least 1");
    }
    if args.minutes.is_some_and(|m| m <= 0.0) || args.steps == Some(0) {
        bail!("--minutes and --steps must be positive");
    }
    let request = TrainRequest {
        out: args.out.clone(),
        data: args.data.clone(),
        valid: args.valid.clone(),
        preset: args.preset,
        seq_len: args.seq_len,
        vocab_size: args.vocab,
        tokenizer: args.tokenizer,
        train: TrainConfig {
            batch_size: args.batch,
            learning_rate: args.lr,
            warmup_steps: args.warmup,
            ema_decay: args.ema,
            seed: args.seed,
            eval_every: args.eval_every.max(1),
            sample_every: args.sample_every.max(1),
            checkpoint_every: args.checkpoint_every.max(1),
            ..TrainConfig::default()
        },
        steps: args.steps,
        minutes: args.minutes,
        resume: args.resume,
    };
    let device = pick_device(args.device.device)?;
    train_with_progress(&request, device)?;
    Ok(())
}

/// Prepares the run, trains on a worker thread and draws its events; Ctrl-C stops cleanly
/// with a final checkpoint.
fn train_with_progress(request: &TrainRequest, device: ComputeDevice) -> Result<()> {
    eprintln!("preparing data in {} …", request.out.display());
    let prepared = prepare_run(request)?;
    eprintln!(
        "model: {} parameters, V={}, L={}, preset {}",
        prepared.config.model.num_params(),
        prepared.config.model.vocab_size,
        prepared.config.model.seq_len,
        request.preset
    );
    let control = RunControl::default();
    let ctrlc_control = control.clone();
    // A second handler registration fails harmlessly (e.g. in the demo after a train).
    let _ = ctrlc::set_handler(move || ctrlc_control.request_stop());

    let (sender, receiver) = mpsc::channel();
    let job = TrainJob {
        run: prepared.run,
        config: prepared.config,
        data: prepared.data,
        device,
        target_steps: prepared.target_steps,
        budget: prepared.budget,
    };
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
            TrainEvent::Started {
                device,
                parameters,
                start_step,
                target_steps,
                budget_secs,
                tokens_per_step,
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
                    "training on {device}: {parameters} parameters, {tokens_per_step} tokens/step, from step {start_step}"
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
            TrainEvent::Validation { step, loss } => {
                self.line(format!("step {step}: validation loss {loss:.4}"));
            }
            TrainEvent::Samples {
                step,
                texts,
                valid_fraction,
            } => {
                let valid = valid_fraction
                    .map_or_else(String::new, |f| format!(" ({:.0}% valid)", f * 100.0));
                self.line(format!("step {step}: samples{valid}"));
                for text in texts.iter().take(2) {
                    self.line(format!("  │ {}", one_line(text, 100)));
                }
            }
            TrainEvent::Checkpoint { step, dir } => {
                self.bar.println(format!(
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
    if args.steps == 0 {
        bail!("--steps must be at least 1");
    }
    if args.n == 0 {
        bail!("--n must be at least 1");
    }
    let device = pick_device(args.device.device)?;
    let loaded = load_model(&args.ckpt, &device.device)?;
    let schedule = Schedule::new(loaded.config.model.vocab_size)?;
    let data = load_data(&loaded.config.data, &loaded.run).ok();
    let mut stdout = std::io::stdout().lock();
    let mut trajectories = Vec::new();
    let mut all_tokens = Vec::new();
    let mut valid = Vec::new();
    let batches = args.n.div_ceil(SAMPLE_BATCH);
    for batch_index in 0..batches {
        let batch = SAMPLE_BATCH.min(args.n - batch_index * SAMPLE_BATCH);
        let seed = args.seed + batch_index as u64;
        let settings = SamplerSettings {
            steps: args.steps,
            seed,
            batch,
            seq_len: loaded.config.model.seq_len,
            top_k: if args.trajectory.is_some() {
                args.top_k
            } else {
                0
            },
        };
        let output = euler_sample(&loaded.model, &schedule, &settings, &device.device);
        for (index, tokens) in output.tokens.iter().enumerate() {
            let text = loaded.tokenizer.decode(tokens);
            let validity = data.as_ref().and_then(|d| d.is_valid(tokens));
            if let Some(v) = validity {
                valid.push(v);
            }
            if args.json {
                let mut record = json!({"text": text, "tokens": tokens, "steps": args.steps,
                    "seed": seed, "index": index, "sampler": "euler"});
                if let Some(v) = validity {
                    record["valid"] = json!(v);
                }
                writeln!(stdout, "{record}")?;
            } else {
                let mark = validity.map_or("", |v| if v { " [valid]" } else { " [invalid]" });
                writeln!(
                    stdout,
                    "--- sample {} (seed {seed}){mark}\n{text}",
                    all_tokens.len()
                )?;
            }
            all_tokens.push(tokens.clone());
        }
        trajectories.extend(output.trajectory);
    }
    if !valid.is_empty() {
        eprintln!(
            "valid: {}/{} ({:.1}%) at {} steps",
            valid.iter().filter(|&&v| v).count(),
            valid.len(),
            fraction(&valid, |&v| v) * 100.0,
            args.steps
        );
    }
    eprintln!(
        "unigram entropy of samples: {:.3} nats",
        unigram_entropy(&all_tokens)
    );
    if let Some(path) = &args.trajectory {
        write_trajectories(path, trajectories)?;
        eprintln!("trajectory written to {}", path.display());
    }
    Ok(())
}

fn write_trajectories(path: &Path, mut trajectories: Vec<flm::flow::Trajectory>) -> Result<()> {
    let value = if trajectories.len() == 1 {
        serde_json::to_value(trajectories.remove(0))?
    } else {
        serde_json::to_value(trajectories)?
    };
    let text = serde_json::to_string(&value)?;
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

fn run_info(args: InfoArgs) -> Result<()> {
    let run = flm::train::RunDir::new(&args.ckpt);
    let config = flm::train::checkpoint::load_config(&run)?;
    let state = flm::train::checkpoint::load_state(&run).ok();
    println!("checkpoint: {}", args.ckpt.display());
    println!("kind: {:?}", config.kind);
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
        train: TrainConfig {
            learning_rate: 1e-3,
            ..TrainConfig::default()
        },
        steps: None,
        minutes: Some(args.seconds / 60.0),
        resume: false,
    };
    let device = pick_device(DeviceChoice::Auto)?;
    train_with_progress(&request, device.clone())?;

    let loaded = load_model(&out, &device.device)?;
    let schedule = Schedule::new(loaded.config.model.vocab_size)?;
    let data = load_data(&loaded.config.data, &loaded.run)?;
    for steps in [1, 4, 32] {
        let settings = SamplerSettings {
            steps,
            seed: 7,
            batch: 32,
            seq_len: loaded.config.model.seq_len,
            top_k: 1,
        };
        let output = euler_sample(&loaded.model, &schedule, &settings, &device.device);
        let valid = fraction(&output.tokens, |t| data.is_valid(t).unwrap_or(false));
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
