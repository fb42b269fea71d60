//! The denoiser network: a DiT-style transformer over points of the probability simplex
//! (DESIGN §3).

pub mod causal;
mod config;
mod dit;
mod layers;

pub use config::{ModelConfig, ModelKind, ModelPreset};
pub use dit::Dit;

#[cfg(test)]
pub(crate) use dit::tests_support;
#[cfg(test)]
pub(crate) use layers::rotary_tables as rotary_tables_for_tests;
