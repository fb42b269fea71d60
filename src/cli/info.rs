//! `flm info` and `flm schedule`: read-only reports, a checkpoint's configuration and
//! progress, and the time reparameterization γ(τ) for a vocabulary size.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Result, bail};
use clap::Args;

use flm::display::clock;
use flm::flow::Schedule;
use flm::flow::distill::BoundaryTarget;
use flm::train::ModelKind;

use super::fmt_opt;

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

pub fn run_info(args: InfoArgs) -> Result<()> {
    let mut out = std::io::stdout().lock();
    let run = flm::train::RunDir::new(&args.ckpt);
    let config = flm::train::checkpoint::load_config(&run)?;
    let state = flm::train::checkpoint::load_state(&run).ok();
    writeln!(out, "checkpoint: {}", args.ckpt.display())?;
    match (&config.kind, &config.distill) {
        (ModelKind::FlowMap, Some(distill)) => {
            let settings = &distill.settings;
            writeln!(
                out,
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
            )?;
            match &distill.teacher {
                Some(teacher) => writeln!(
                    out,
                    "teacher: {} (step {}, validation loss {})",
                    teacher.source.display(),
                    teacher.step.map_or_else(|| "-".into(), |s| s.to_string()),
                    fmt_opt(teacher.valid_loss)
                )?,
                None if config.imported_from.is_some() => {
                    writeln!(out, "teacher: not recorded (distilled by the paper's code)")?
                }
                None => writeln!(out, "teacher: none (self-distilled from the data)")?,
            }
        }
        (ModelKind::Autoregressive, _) => writeln!(out, "kind: autoregressive reference model")?,
        _ => writeln!(out, "kind: FLM")?,
    }
    writeln!(out, "data: {}", config.data.source)?;
    if let Some(valid) = &config.data.valid {
        writeln!(out, "validation: {}", valid.display())?;
    }
    writeln!(
        out,
        "tokenizer: {:?}, V = {}, L = {}",
        config.data.tokenizer, config.model.vocab_size, config.model.seq_len
    )?;
    writeln!(
        out,
        "model: d={} blocks={} heads={} cond={} — {} parameters",
        config.model.d_model,
        config.model.n_blocks,
        config.model.n_heads,
        config.model.cond_dim,
        config.model.num_params()
    )?;
    writeln!(
        out,
        "training: batch {}, lr {}, warm-up {}, EMA ≤ {}, seed {}",
        config.train.batch_size,
        config.train.learning_rate,
        config.train.warmup_steps,
        config.train.ema_decay,
        config.train.seed
    )?;
    match state {
        Some(state) => {
            writeln!(
                out,
                "progress: {} steps, {} tokens, {} trained",
                state.step,
                state.tokens_seen,
                clock(state.elapsed_secs)
            )?;
            writeln!(
                out,
                "last losses: train {}, validation {}",
                fmt_opt(state.last_train_loss),
                fmt_opt(state.last_valid_loss)
            )?;
        }
        None => writeln!(out, "progress: no checkpoint written yet")?,
    }
    if let Some(import) = &config.imported_from {
        let weights = import
            .weights
            .map_or_else(String::new, |w| format!(", {w} weights"));
        writeln!(out, "imported from: {}{weights}", import.source.display())?;
    }
    writeln!(out, "created with: {}", config.created_with)?;
    Ok(())
}

pub fn run_schedule(args: ScheduleArgs) -> Result<()> {
    let mut out = std::io::stdout().lock();
    let schedule = Schedule::new(args.vocab)?;
    match args.tau {
        Some(tau) => {
            if !(0.0..=1.0).contains(&tau) {
                bail!("--tau must be in [0, 1], got {tau}");
            }
            writeln!(out, "{:.4}", schedule.gamma(tau))?;
        }
        None => {
            writeln!(
                out,
                "V = {}: γ(τ) and the argmax decoding accuracy q(γ)",
                args.vocab
            )?;
            writeln!(out, "{:>6}  {:>8}  {:>8}", "tau", "gamma", "q")?;
            for (tau, gamma) in schedule.uniform_grid(args.rows.max(1)) {
                writeln!(
                    out,
                    "{tau:>6.3}  {gamma:>8.4}  {:>8.4}",
                    schedule.decode_accuracy(gamma)
                )?;
            }
        }
    }
    Ok(())
}
