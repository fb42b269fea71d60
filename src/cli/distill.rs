//! `flm distill`: a trained FLM into a flow-map model. A recipe gives the starting settings
//! and each flag overrides one part of it; the run itself trains like `flm train`.

use std::path::PathBuf;

use anyhow::Result;
use clap::{Args, ValueEnum};

use flm::flow::distill::{BoundaryTarget, DistillSettings, SecondTimeInit};
use flm::flow::flow_map::Midpoint;
use flm::train::{DistillRequest, TrainConfig, prepare_distill};

use super::train::{DEFAULT_DIAG_FRAC, RunArgs, set_flags, train_with_progress};
use super::{DeviceArg, pick_device};

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

/// The starting point of `flm distill`'s settings.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
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

pub fn run(args: DistillArgs) -> Result<()> {
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
        train: args.run.train_config(TrainConfig::distillation_defaults()),
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
