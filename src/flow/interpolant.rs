//! Training-time sampling of flow times (DESIGN §4); the interpolant
//! `x_γ = (1−γ)·ε + γ·onehot(x1)` itself is built by `kernels::noisy_input`.

use burn::tensor::{Device, Tensor, TensorData};
use rand::Rng;

use super::schedule::Schedule;

/// Stratified τ for a batch: `(u/B + i/B) mod 1` with one shared `u ~ U[0,1)`, so every batch
/// covers the whole time range evenly (lower-variance loss than i.i.d. times).
pub fn stratified_taus(rng: &mut impl Rng, batch: usize) -> Vec<f64> {
    let u: f64 = rng.random();
    (0..batch)
        .map(|i| (u / batch as f64 + i as f64 / batch as f64).fract())
        .collect()
}

/// Times for one batch: `(τ, γ(τ))` per example.
pub struct BatchTimes {
    pub taus: Vec<f64>,
    pub gammas: Vec<f64>,
}

impl BatchTimes {
    pub fn stratified(rng: &mut impl Rng, batch: usize, schedule: &Schedule) -> Self {
        let taus = stratified_taus(rng, batch);
        let gammas = taus.iter().map(|&tau| schedule.gamma(tau)).collect();
        Self { taus, gammas }
    }

    pub fn tau_tensor(&self, device: &Device) -> Tensor<1> {
        let taus: Vec<f32> = self.taus.iter().map(|&t| t as f32).collect();
        Tensor::from_data(TensorData::new(taus, [self.taus.len()]), device)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::stream_rng;

    #[test]
    fn stratified_taus_cover_each_stratum_once() {
        let taus = stratified_taus(&mut stream_rng(3, 0), 8);
        let mut strata: Vec<usize> = taus.iter().map(|t| (t * 8.0) as usize).collect();
        strata.sort();
        assert_eq!(strata, (0..8).collect::<Vec<_>>());
        assert!(taus.iter().all(|t| (0.0..1.0).contains(t)));
    }
}
