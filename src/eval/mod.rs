//! Metrics for generated samples (DESIGN §9).

pub mod metrics;
