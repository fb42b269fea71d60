//! The run configuration stored as `config.json`: what data, which model, how to train.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::optimizer::AdamWSettings;
use crate::data::TokenizerKind;
use crate::model::ModelConfig;

/// Bumped whenever the checkpoint layout changes incompatibly.
pub const SCHEMA_VERSION: u32 = 1;

/// What a checkpoint's network is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ModelKind {
    /// A flow language model: one time, sampled with Euler steps.
    Flm,
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
            learning_rate: 3e-4,
            warmup_steps: 100,
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

/// Everything in `config.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunConfig {
    pub schema_version: u32,
    pub kind: ModelKind,
    pub model: ModelConfig,
    pub data: DataConfig,
    pub train: TrainConfig,
    /// `flm <version>` that wrote it.
    pub created_with: String,
}

impl TrainConfig {
    /// Linear warm-up, then constant (DESIGN §4).
    pub fn learning_rate_at(&self, step: u64) -> f64 {
        if self.warmup_steps == 0 {
            return self.learning_rate;
        }
        let warm = ((step + 1) as f64 / self.warmup_steps as f64).min(1.0);
        self.learning_rate * warm
    }
}
