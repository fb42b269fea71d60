//! Hyper-parameters of the denoiser. This struct is what `config.json` stores, so a checkpoint
//! is "config + weights".

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Named sizes, so users pick "tiny" instead of five numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum ModelPreset {
    /// d=64, 2 blocks, 4 heads: smoke tests and quick experiments.
    Micro,
    /// d=128, 4 blocks, 4 heads: trains on a laptop CPU.
    Tiny,
    /// d=256, 6 blocks, 8 heads.
    Small,
    /// d=384, 8 blocks, 6 heads: wants a GPU.
    Base,
}

impl ModelPreset {
    pub const ALL: [ModelPreset; 4] = [
        ModelPreset::Micro,
        ModelPreset::Tiny,
        ModelPreset::Small,
        ModelPreset::Base,
    ];

    /// `(width, blocks, heads)` of the preset.
    pub fn dims(self) -> (usize, usize, usize) {
        match self {
            ModelPreset::Micro => (64, 2, 4),
            ModelPreset::Tiny => (128, 4, 4),
            ModelPreset::Small => (256, 6, 8),
            ModelPreset::Base => (384, 8, 6),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            ModelPreset::Micro => "micro",
            ModelPreset::Tiny => "tiny",
            ModelPreset::Small => "small",
            ModelPreset::Base => "base",
        }
    }
}

impl fmt::Display for ModelPreset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for ModelPreset {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ModelPreset::ALL
            .into_iter()
            .find(|p| p.name() == s)
            .ok_or_else(|| {
                format!("unknown preset `{s}` (expected one of: micro, tiny, small, base)")
            })
    }
}

/// What a network is, and so how it is trained and sampled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ModelKind {
    /// A flow language model: one time, sampled with Euler steps.
    Flm,
    /// A flow-map model (FMLM): two times, sampled with 1..N flow-map jumps.
    #[serde(rename = "fmlm")]
    FlowMap,
    /// The autoregressive reference model used by `flm eval` (causal attention, next-token
    /// cross-entropy).
    #[serde(rename = "ar")]
    Autoregressive,
}

impl ModelKind {
    /// The name people use for it: labels, menus, headlines.
    pub fn short_name(self) -> &'static str {
        match self {
            ModelKind::Flm => "FLM",
            ModelKind::FlowMap => "FMLM",
            ModelKind::Autoregressive => "AR reference",
        }
    }

    /// A few words more, for headlines in logs.
    pub fn description(self) -> &'static str {
        match self {
            ModelKind::Flm => "FLM",
            ModelKind::FlowMap => "flow map (FMLM)",
            ModelKind::Autoregressive => "autoregressive reference",
        }
    }
}

/// Everything needed to rebuild the network's shapes (DESIGN §3).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelConfig {
    /// Vocabulary size V, special tokens included.
    pub vocab_size: usize,
    /// Sequence length L the model is trained on (rotary embeddings work for any length).
    pub seq_len: usize,
    /// Model width d.
    pub d_model: usize,
    pub n_blocks: usize,
    pub n_heads: usize,
    /// Width c of the time conditioning vector.
    pub cond_dim: usize,
    /// Number of sinusoidal features of τ.
    pub time_features: usize,
    /// Whether the network takes a second time (a flow-map model, DESIGN §6).
    pub two_times: bool,
    /// Soft cap `cap·tanh(a/cap)` on attention logits.
    pub attn_softcap: f32,
    /// Optional soft cap on output logits (`None` = raw logits).
    pub logit_softcap: Option<f32>,
    /// Causal attention: the autoregressive reference model (DESIGN §9), not a denoiser.
    #[serde(default)]
    pub causal: bool,
    /// The ε of every LayerNorm, `(x − mean)/√(var + ε)`. flm's own models use
    /// [`ModelConfig::FLM_LAYER_NORM_EPS`] (also the default for configs written before this
    /// field existed, so they load and compute exactly as before); models imported from the
    /// paper's PyTorch code use [`ModelConfig::TORCH_LAYER_NORM_EPS`], the default of the
    /// `F.layer_norm` their LayerNorm calls.
    #[serde(default = "ModelConfig::flm_layer_norm_eps")]
    pub layer_norm_eps: f64,
}

impl ModelConfig {
    /// LayerNorm ε of models trained by flm.
    pub const FLM_LAYER_NORM_EPS: f64 = 1e-6;
    /// LayerNorm ε of PyTorch's `F.layer_norm`, which the official DiT uses.
    pub const TORCH_LAYER_NORM_EPS: f64 = 1e-5;

    fn flm_layer_norm_eps() -> f64 {
        Self::FLM_LAYER_NORM_EPS
    }

    pub fn from_preset(preset: ModelPreset, vocab_size: usize, seq_len: usize) -> Self {
        let (d_model, n_blocks, n_heads) = preset.dims();
        Self {
            vocab_size,
            seq_len,
            d_model,
            n_blocks,
            n_heads,
            cond_dim: 128,
            time_features: 256,
            two_times: false,
            attn_softcap: 50.0,
            logit_softcap: None,
            causal: false,
            layer_norm_eps: Self::FLM_LAYER_NORM_EPS,
        }
    }

    pub fn head_dim(&self) -> usize {
        self.d_model / self.n_heads
    }

    /// Checks the shapes make sense, and are within [`crate::limits`], before any tensor is
    /// allocated.
    pub fn validate(&self) -> Result<(), String> {
        crate::limits::check_model(self)?;
        if self.vocab_size < 2 {
            return Err(format!(
                "vocab_size must be at least 2, got {}",
                self.vocab_size
            ));
        }
        if self.seq_len == 0 || self.d_model == 0 || self.n_blocks == 0 || self.n_heads == 0 {
            return Err("seq_len, d_model, n_blocks and n_heads must all be positive".into());
        }
        if !self.d_model.is_multiple_of(self.n_heads) || !self.head_dim().is_multiple_of(2) {
            return Err(format!(
                "d_model ({}) must split into {} heads of an even width (rotary embeddings)",
                self.d_model, self.n_heads
            ));
        }
        if !self.time_features.is_multiple_of(2) || self.time_features == 0 || self.cond_dim == 0 {
            return Err(
                "time_features must be a positive even number and cond_dim positive".into(),
            );
        }
        let cap_ok = |cap: f32| cap.is_finite() && cap > 0.0;
        if !cap_ok(self.attn_softcap) || self.logit_softcap.is_some_and(|cap| !cap_ok(cap)) {
            return Err("soft caps must be positive and finite".into());
        }
        if !(self.layer_norm_eps.is_finite() && self.layer_norm_eps > 0.0) {
            return Err(format!(
                "layer_norm_eps must be positive and finite, got {}",
                self.layer_norm_eps
            ));
        }
        Ok(())
    }

    /// Number of trainable scalars, computed from the shapes alone (for `flm info` and logs);
    /// saturates at `usize::MAX` rather than wrapping for absurd shapes.
    pub fn num_params(&self) -> usize {
        // `as` saturates float-to-int; below 2^53 (any config within the limits) it is exact.
        self.num_params_f64() as usize
    }

    /// [`Self::num_params`] as a float: no overflow whatever the fields hold.
    pub fn num_params_f64(&self) -> f64 {
        let (v, d, c, f) = (
            self.vocab_size as f64,
            self.d_model as f64,
            self.cond_dim as f64,
            self.time_features as f64,
        );
        let time_embedder = f * c + c + c * c + c;
        let block = d // norm 1
            + d * 3.0 * d // qkv
            + d * d // attention out
            + d // norm 2
            + d * 4.0 * d + 4.0 * d + 4.0 * d * d + d // mlp
            + c * 6.0 * d + 6.0 * d; // adaLN
        let final_layer = d + c * 2.0 * d + 2.0 * d + d * v + v;
        let embedders = if self.two_times { 2.0 } else { 1.0 };
        v * d + embedders * time_embedder + self.n_blocks as f64 * block + final_layer
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_parse_and_validate() {
        for preset in ModelPreset::ALL {
            let parsed: ModelPreset = preset.name().parse().unwrap();
            assert_eq!(parsed, preset);
            ModelConfig::from_preset(preset, 1024, 128)
                .validate()
                .unwrap();
        }
        assert!("huge".parse::<ModelPreset>().is_err());
    }

    #[test]
    fn odd_head_width_is_rejected() {
        let mut config = ModelConfig::from_preset(ModelPreset::Tiny, 64, 16);
        config.n_heads = 3;
        assert!(config.validate().is_err());
    }

    #[test]
    fn configs_without_layer_norm_eps_keep_flms_epsilon() {
        let config = ModelConfig::from_preset(ModelPreset::Micro, 64, 16);
        let mut json = serde_json::to_value(&config).unwrap();
        json.as_object_mut().unwrap().remove("layer_norm_eps");
        let old: ModelConfig = serde_json::from_value(json).unwrap();
        assert_eq!(old.layer_norm_eps, ModelConfig::FLM_LAYER_NORM_EPS);
        assert_eq!(old, config);
        let bad = ModelConfig {
            layer_norm_eps: 0.0,
            ..config
        };
        assert!(bad.validate().is_err());
    }
}
