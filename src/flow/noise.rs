//! Reproducible Gaussian noise. Noise is drawn on the host from a counter-addressed ChaCha
//! stream, so the same `(seed, stream)` gives the same numbers on every backend and a resumed
//! run needs no RNG state beyond its step counter.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};

/// The generator for one logical use (a training step, a sample batch) of a seeded run.
pub fn stream_rng(seed: u64, stream: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(stream);
    rng
}

/// `count` draws from N(0, 1).
pub fn standard_normal(rng: &mut ChaCha8Rng, count: usize) -> Vec<f32> {
    (0..count)
        .map(|_| StandardNormal.sample(rng))
        .collect::<Vec<f32>>()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_and_stream_give_same_noise() {
        let a = standard_normal(&mut stream_rng(7, 3), 100);
        let b = standard_normal(&mut stream_rng(7, 3), 100);
        let c = standard_normal(&mut stream_rng(7, 4), 100);
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn noise_has_unit_moments() {
        let n = 200_000;
        let x = standard_normal(&mut stream_rng(1, 0), n);
        let mean = x.iter().map(|&v| v as f64).sum::<f64>() / n as f64;
        let var = x.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n as f64;
        assert!(mean.abs() < 0.01, "mean {mean}");
        assert!((var - 1.0).abs() < 0.02, "variance {var}");
    }
}
