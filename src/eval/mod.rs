//! Honest evaluation (DESIGN §9): metrics for generated samples and the autoregressive
//! reference model that scores them.

pub mod plan;
pub mod reference;
pub mod report;
