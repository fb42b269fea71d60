//! The straight-line interpolant `x_γ = (1−γ)·ε + γ·onehot(x1)` and training-time sampling
//! (DESIGN §1, §4).

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

/// Builds `x_γ` (B, L, V) on the host in one pass over the noise and uploads it once.
/// `tokens` is (B·L), `noise` is (B·L·V) standard normal, `gammas` is (B).
pub fn noisy_onehots(
    tokens: &[u32],
    gammas: &[f64],
    mut noise: Vec<f32>,
    seq_len: usize,
    vocab: usize,
    device: &Device,
) -> Tensor<3> {
    let batch = gammas.len();
    assert_eq!(tokens.len(), batch * seq_len, "tokens must be B·L");
    assert_eq!(noise.len(), batch * seq_len * vocab, "noise must be B·L·V");
    for (row, (values, &token)) in noise.chunks_exact_mut(vocab).zip(tokens).enumerate() {
        let gamma = gammas[row / seq_len] as f32;
        values.iter_mut().for_each(|v| *v *= 1.0 - gamma);
        values[token as usize] += gamma;
    }
    Tensor::from_data(TensorData::new(noise, [batch, seq_len, vocab]), device)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::noise::stream_rng;

    #[test]
    fn stratified_taus_cover_each_stratum_once() {
        let taus = stratified_taus(&mut stream_rng(3, 0), 8);
        let mut strata: Vec<usize> = taus.iter().map(|t| (t * 8.0) as usize).collect();
        strata.sort();
        assert_eq!(strata, (0..8).collect::<Vec<_>>());
        assert!(taus.iter().all(|t| (0.0..1.0).contains(t)));
    }

    #[test]
    fn interpolant_is_noise_at_zero_and_data_at_one() {
        let device = crate::device::cpu_device();
        let noise = vec![0.5f32; 2 * 3 * 4];
        let tokens = [0u32, 1, 2, 3, 2, 1];
        let x = noisy_onehots(&tokens, &[0.0, 1.0], noise, 3, 4, &device);
        let values = x.into_data().try_into_vec::<f32>().unwrap();
        assert!(values[..12].iter().all(|&v| (v - 0.5).abs() < 1e-7));
        let clean = &values[12..];
        for (pos, &token) in tokens[3..].iter().enumerate() {
            for v in 0..4 {
                let expected = if v == token as usize { 1.0 } else { 0.0 };
                assert_eq!(clean[pos * 4 + v], expected);
            }
        }
    }
}
