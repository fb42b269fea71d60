//! The run configuration stored as `config.json`: what data, which model, how to train.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::optimizer::AdamWSettings;
use crate::data::TokenizerKind;
use crate::flow::distill::DistillSettings;
use crate::model::ModelConfig;
pub use crate::model::ModelKind;

/// Bumped whenever the checkpoint layout changes incompatibly.
pub const SCHEMA_VERSION: u32 = 1;

/// How a flow-map run is trained (DESIGN §6).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DistillConfig {
    /// The FLM it was distilled from; `None` for self-distillation from the data.
    pub teacher: Option<TeacherInfo>,
    /// The objective's settings; stored flat, so older files (which have only `fractions`)
    /// read with the paper's values for the rest.
    #[serde(flatten)]
    pub settings: DistillSettings,
}

/// Where a distilled model's teacher came from. Its weights are copied into the run
/// (`teacher.safetensors`), so resuming never depends on the teacher's folder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TeacherInfo {
    /// The teacher's run directory as given to `flm distill`.
    pub source: PathBuf,
    /// Its training step and validation loss when it was copied.
    pub step: Option<u64>,
    pub valid_loss: Option<f64>,
}

/// Which of a PyTorch Lightning checkpoint's two weight sets a model was imported from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WeightSet {
    /// The exponential moving average (`ema.shadow_params`): what the paper evaluates and
    /// samples.
    #[default]
    Ema,
    /// The weights being optimised (`state_dict`).
    Online,
}

impl std::fmt::Display for WeightSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            WeightSet::Ema => "ema",
            WeightSet::Online => "online",
        })
    }
}

impl std::str::FromStr for WeightSet {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "ema" => Ok(WeightSet::Ema),
            "online" => Ok(WeightSet::Online),
            other => Err(format!(
                "unknown weight set `{other}` (expected ema or online)"
            )),
        }
    }
}

/// The file layouts `flm import` reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ImportFormat {
    /// A PyTorch Lightning `.ckpt` written by the paper's trainer.
    LightningCheckpoint,
    /// `model.safetensors` with the official state-dict names (what `flm export --layout
    /// official` writes).
    OfficialSafetensors,
}

/// Provenance of an imported model (`RunConfig::imported_from`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImportedFrom {
    /// The file or folder given to `flm import`.
    pub source: PathBuf,
    pub format: ImportFormat,
    /// The weight set taken; `None` for a file that holds only one (an official-layout
    /// safetensors file).
    pub weights: Option<WeightSet>,
    /// The optimizer step the checkpoint was saved at, when it records one.
    #[serde(default)]
    pub step: Option<u64>,
}

/// Where the text comes from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DataConfig {
    /// `builtin:<task>` or a path to a UTF-8 text file.
    pub source: String,
    /// Optional validation file (otherwise the last 5% of the tokens).
    pub valid: Option<PathBuf>,
    pub tokenizer: TokenizerKind,
    /// Vocabulary size asked for (the trained tokenizer may be smaller).
    pub vocab_size: usize,
    pub seq_len: usize,
}

/// Optimisation and bookkeeping settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    pub batch_size: usize,
    pub learning_rate: f64,
    pub warmup_steps: u64,
    /// Share of the run, at its end, over which the learning rate falls linearly to zero
    /// (0 keeps it constant after warm-up).
    #[serde(default)]
    pub lr_decay: f64,
    pub adamw: AdamWSettings,
    /// Upper bound of the EMA decay (see `ema::decay_at`).
    pub ema_decay: f64,
    pub seed: u64,
    /// Steps between progress events / metric lines.
    pub log_every: u64,
    pub eval_every: u64,
    pub eval_batches: usize,
    pub sample_every: u64,
    pub checkpoint_every: u64,
    /// Wall-clock seconds between checkpoints, whatever the step count.
    pub checkpoint_secs: f64,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            batch_size: 16,
            // DESIGN §4 quotes 3e-4 for paper-size models; our d ≤ 384 presets train faster and
            // stay stable at 1e-3 with warm-up and clipping.
            learning_rate: 1e-3,
            warmup_steps: 100,
            lr_decay: 0.0,
            adamw: AdamWSettings::default(),
            ema_decay: 0.999,
            seed: 0,
            log_every: 10,
            eval_every: 200,
            eval_batches: 8,
            sample_every: 500,
            checkpoint_every: 500,
            checkpoint_secs: 300.0,
        }
    }
}

impl TrainConfig {
    /// Defaults for flow-map training: AdamW with β2 = 0.95 (DESIGN §6) and a 3e-4 peak
    /// rate (the paper's); at 1e-3 distillation from our CPU-trained teachers drifted away from
    /// the teacher on the diagonal and its one-step quality fell after a few hundred steps.
    pub fn flow_map_defaults() -> Self {
        let defaults = Self::default();
        Self {
            learning_rate: 3e-4,
            adamw: AdamWSettings {
                beta2: 0.95,
                ..defaults.adamw
            },
            ..defaults
        }
    }

    /// Defaults for distilling a teacher (`flm distill`, the Distill panel): the flow-map
    /// defaults at batch 64, with the learning rate falling to zero over the second half of
    /// the run. The student learns a map of the noise, so it needs many different noises, and
    /// on the CPU a batch of 64 costs well under 4× one of 16; at a constant rate its one-step
    /// validity stalls near 90%, and the decay lets it settle. On `builtin:repeat` (5-minute
    /// teacher, 24 minutes of distillation each, n = 2048, `docs/distillation.md`): 86.5% at
    /// batch 16, 90.9% at batch 64, 93.8% at batch 64 with the decay; 95.3% in 30 minutes.
    pub fn distillation_defaults() -> Self {
        Self {
            batch_size: 64,
            lr_decay: 0.5,
            ..Self::flow_map_defaults()
        }
    }
}

/// Everything in `config.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunConfig {
    pub schema_version: u32,
    pub kind: ModelKind,
    pub model: ModelConfig,
    pub data: DataConfig,
    pub train: TrainConfig,
    /// Present for flow-map runs (`kind: fmlm`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub distill: Option<DistillConfig>,
    /// Present for models `flm import` brought in from the paper's PyTorch code: where their
    /// weights came from. Such runs were not trained by flm (`train` holds defaults).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub imported_from: Option<ImportedFrom>,
    /// `flm <version>` that wrote it.
    pub created_with: String,
}

impl RunConfig {
    /// Checks that kind, model and distillation settings tell the same story.
    pub fn validate(&self) -> Result<(), String> {
        self.model.validate()?;
        self.train.validate()?;
        crate::limits::check_seq_len("data.seq_len", self.data.seq_len)?;
        crate::limits::check_vocab("data.vocab_size", self.data.vocab_size)?;
        let (two_times, causal) = (self.model.two_times, self.model.causal);
        match (self.kind, &self.distill) {
            (ModelKind::Flm, None) if !two_times && !causal => Ok(()),
            (ModelKind::Autoregressive, None) if !two_times && causal => Ok(()),
            (ModelKind::FlowMap, Some(distill)) if two_times && !causal => {
                distill.settings.validate(distill.teacher.is_some())
            }
            _ => Err(
                "`kind`, `model.two_times`, `model.causal` and `distill` disagree: an FLM has \
                 one time and no distill section, a flow map (fmlm) has two times and one, an \
                 autoregressive model (ar) is causal"
                    .into(),
            ),
        }
    }

    /// The configuration of a distilled model's teacher: the same network with one time.
    pub fn teacher_config(&self) -> RunConfig {
        let mut teacher = self.clone();
        teacher.kind = ModelKind::Flm;
        teacher.model.two_times = false;
        teacher.distill = None;
        teacher
    }
}

impl TrainConfig {
    /// Rejects settings that would divide by zero or silently train garbage (config.json can
    /// be edited by hand between runs).
    pub fn validate(&self) -> Result<(), String> {
        let intervals = [
            ("log_every", self.log_every),
            ("eval_every", self.eval_every),
            ("sample_every", self.sample_every),
            ("checkpoint_every", self.checkpoint_every),
        ];
        if let Some((name, _)) = intervals.iter().find(|(_, v)| *v == 0) {
            return Err(format!("{name} must be at least 1"));
        }
        if self.batch_size == 0 || self.eval_batches == 0 {
            return Err("batch_size and eval_batches must be at least 1".into());
        }
        crate::limits::check_batch("batch_size", self.batch_size)?;
        crate::limits::check_batch("eval_batches", self.eval_batches)?;
        if !(self.learning_rate.is_finite() && self.learning_rate > 0.0) {
            return Err(format!(
                "the learning rate must be positive, got {}",
                self.learning_rate
            ));
        }
        if !(0.0..1.0).contains(&self.ema_decay) {
            return Err(format!(
                "the EMA decay must be in [0, 1), got {}",
                self.ema_decay
            ));
        }
        let adamw = &self.adamw;
        let betas_ok = (0.0..1.0).contains(&adamw.beta1) && (0.0..1.0).contains(&adamw.beta2);
        if !betas_ok
            || adamw.epsilon.is_nan()
            || adamw.epsilon <= 0.0
            || adamw.weight_decay < 0.0
            || adamw.grad_clip < 0.0
        {
            return Err(
                "AdamW needs betas in [0, 1), epsilon > 0 and non-negative decay and clip".into(),
            );
        }
        if !(0.0..=1.0).contains(&self.lr_decay) {
            return Err(format!(
                "the learning-rate decay share must be in [0, 1], got {}",
                self.lr_decay
            ));
        }
        if self.checkpoint_secs.is_nan() || self.checkpoint_secs <= 0.0 {
            return Err("checkpoint_secs must be positive".into());
        }
        Ok(())
    }

    /// Linear warm-up, then constant (DESIGN §4), then, with `lr_decay > 0`, a linear decay
    /// to zero over the last `lr_decay` of the run; `progress` ∈ [0, 1] is how far the run is.
    pub fn learning_rate_at(&self, step: u64, progress: f64) -> f64 {
        let warm = if self.warmup_steps == 0 {
            1.0
        } else {
            ((step + 1) as f64 / self.warmup_steps as f64).min(1.0)
        };
        let decay = if self.lr_decay > 0.0 {
            ((1.0 - progress) / self.lr_decay).clamp(0.0, 1.0)
        } else {
            1.0
        };
        self.learning_rate * warm * decay
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_settings_are_valid() {
        TrainConfig::default().validate().unwrap();
    }

    #[test]
    fn settings_that_would_divide_by_zero_or_diverge_are_rejected() {
        let broken = [
            TrainConfig {
                log_every: 0,
                ..TrainConfig::default()
            },
            TrainConfig {
                checkpoint_every: 0,
                ..TrainConfig::default()
            },
            TrainConfig {
                batch_size: 0,
                ..TrainConfig::default()
            },
            TrainConfig {
                learning_rate: f64::NAN,
                ..TrainConfig::default()
            },
            TrainConfig {
                learning_rate: -1e-3,
                ..TrainConfig::default()
            },
            TrainConfig {
                ema_decay: 1.0,
                ..TrainConfig::default()
            },
        ];
        for config in broken {
            assert!(config.validate().is_err(), "{config:?} was accepted");
        }
    }

    #[test]
    fn learning_rate_warms_up_linearly_then_stays() {
        let config = TrainConfig {
            learning_rate: 1.0,
            warmup_steps: 4,
            ..TrainConfig::default()
        };
        let rates: Vec<f64> = (0..6).map(|s| config.learning_rate_at(s, 0.0)).collect();
        assert_eq!(rates, vec![0.25, 0.5, 0.75, 1.0, 1.0, 1.0]);
        // Without a decay share, progress changes nothing.
        assert_eq!(config.learning_rate_at(10, 0.99), 1.0);
    }

    #[test]
    fn learning_rate_decays_linearly_over_the_last_share_of_the_run() {
        let config = TrainConfig {
            learning_rate: 1.0,
            warmup_steps: 0,
            lr_decay: 0.2,
            ..TrainConfig::default()
        };
        assert_eq!(config.learning_rate_at(50, 0.5), 1.0);
        assert!((config.learning_rate_at(50, 0.8) - 1.0).abs() < 1e-12);
        assert!((config.learning_rate_at(50, 0.9) - 0.5).abs() < 1e-12);
        assert_eq!(config.learning_rate_at(50, 1.0), 0.0);
        let broken = TrainConfig {
            lr_decay: 1.5,
            ..TrainConfig::default()
        };
        assert!(broken.validate().is_err());
    }
}
