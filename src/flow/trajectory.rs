//! What a sampler records at every step (DESIGN §8): per position, the point on the simplex
//! reduced to what the app draws. The same format serves the Euler and flow-map samplers.

use serde::{Deserialize, Serialize};

/// The denoiser output `D` of one sample at one step, reduced to `k` candidates per position.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Frame {
    /// Most likely token per position.
    pub argmax: Vec<u32>,
    /// Its probability per position.
    pub max_prob: Vec<f32>,
    /// Entropy of `D` per position, in nats.
    pub entropy: Vec<f32>,
    /// Whether the argmax changed since the previous step (false at step 0).
    pub flipped: Vec<bool>,
    /// Top-k token ids per position, most likely first (L × k, row-major).
    pub top_ids: Vec<u32>,
    /// Their probabilities (L × k).
    pub top_probs: Vec<f32>,
}

/// Every step of one sample, plus its final tokens.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SampleTrajectory {
    pub frames: Vec<Frame>,
    pub tokens: Vec<u32>,
}

/// A whole sampling run as the step slider replays it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Trajectory {
    /// "euler" (FLM) or "flow-map" (FMLM).
    pub sampler: String,
    pub steps: usize,
    pub seed: u64,
    pub eta: f32,
    pub seq_len: usize,
    pub vocab_size: usize,
    pub top_k: usize,
    /// The tokens the person fixed, per position (`None`: generated); empty when none was.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fixed: Vec<Option<u32>>,
    /// τ at which the denoiser was called, per step.
    pub taus: Vec<f64>,
    /// The matching γ, per step.
    pub gammas: Vec<f64>,
    pub samples: Vec<SampleTrajectory>,
}
