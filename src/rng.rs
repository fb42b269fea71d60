//! Reproducible Gaussian noise. Per-use streams (a training step, a sample batch) come from
//! seeded ChaCha generators keyed by a counter, so a resumed run needs no RNG state beyond its
//! step; bulk noise (training inputs, stochastic sampler steps) comes from a counter-based hash
//! that a GPU kernel can evaluate per element, so the CPU and GPU paths draw the same numbers.

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

/// A 32-bit integer permutation (xor-shift-multiply), the mixing step of the counter-based hash.
fn mix32(mut x: u32) -> u32 {
    x ^= x >> 16;
    x = x.wrapping_mul(0x7feb_352d);
    x ^= x >> 15;
    x = x.wrapping_mul(0x846c_a68b);
    x ^ (x >> 16)
}

/// Counter-based noise of one seed: a hash of `(seed, counter, lane)` makes any element of a
/// stream independently, on the host or in a shader (`shaders/counter_rng.wgsl` has the same
/// function; the two must agree bit for bit). The seed's share of the hash is mixed once.
#[derive(Clone, Copy)]
struct CounterStream {
    seed_state: u32,
    counter: u64,
}

impl CounterStream {
    fn new(seed: u64, counter: u64) -> Self {
        let seed_state = mix32(mix32(seed as u32 ^ 0x9e37_79b9) ^ (seed >> 32) as u32);
        Self {
            seed_state,
            counter,
        }
    }

    fn hash(self, counter: u64, lane: u32) -> u32 {
        let h = mix32(self.seed_state ^ counter as u32);
        mix32(mix32(h ^ (counter >> 32) as u32) ^ lane)
    }

    /// Pair `pair` of the stream: Box–Muller on two 24-bit uniforms, in f32 as the shader
    /// computes it (`shaders/counter_rng.wgsl`); elements 2i and 2i+1 are its cosine and sine.
    fn pair(self, pair: u32) -> (f32, f32) {
        let counter = self.counter ^ pair as u64;
        let a = self.hash(counter, 0);
        let b = self.hash(counter, 1);
        let u1 = ((a >> 8) as f32 + 1.0) / 16_777_216.0;
        let u2 = (b >> 8) as f32 / 16_777_216.0;
        let (radius, angle) = ((-2.0 * u1.ln()).sqrt(), std::f32::consts::TAU * u2);
        (radius * angle.cos(), radius * angle.sin())
    }
}

/// Element `index` of the standard normal stream `(seed, counter)` (see [`counter_normals`]).
pub fn counter_normal(seed: u64, counter: u64, index: u32) -> f32 {
    let (cos, sin) = CounterStream::new(seed, counter).pair(index >> 1);
    if index & 1 == 0 { cos } else { sin }
}

/// Elements drawn by one thread at a time (even, so chunks hold whole pairs).
const NORMALS_PER_TASK: usize = 16 * 1024;

/// Elements `0..count` of the stream `(seed, counter)`, drawn in parallel: a training step
/// needs B·L·V of them, millions at V = 1024.
pub fn counter_normals(seed: u64, counter: u64, count: usize) -> Vec<f32> {
    use rayon::prelude::*;
    let stream = CounterStream::new(seed, counter);
    let mut values = vec![0f32; count];
    values
        .par_chunks_mut(NORMALS_PER_TASK)
        .enumerate()
        .for_each(|(task, chunk)| {
            let first_pair = task * NORMALS_PER_TASK / 2;
            for (offset, out) in chunk.chunks_mut(2).enumerate() {
                let (cos, sin) = stream.pair((first_pair + offset) as u32);
                out[0] = cos;
                if let Some(second) = out.get_mut(1) {
                    *second = sin;
                }
            }
        });
    values
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counter_noise_is_reproducible_standard_normal_and_uncorrelated() {
        let n = 200_000;
        let a = counter_normals(42, 7, n);
        assert_eq!(a, counter_normals(42, 7, n));
        // The bulk generator and the element-wise one agree (odd lengths included).
        let single: Vec<f32> = (0..101).map(|i| counter_normal(42, 7, i)).collect();
        assert_eq!(single, counter_normals(42, 7, 101));
        assert_ne!(a[..100], counter_normals(43, 7, 100)[..]);
        assert_ne!(a[..100], counter_normals(42, 8, 100)[..]);
        let mean = a.iter().map(|&v| v as f64).sum::<f64>() / n as f64;
        let var = a.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n as f64;
        // Standard errors: 1/√n ≈ 0.0022 for the mean, √(2/n) ≈ 0.0032 for the variance.
        assert!(mean.abs() < 0.01, "mean {mean}");
        assert!((var - 1.0).abs() < 0.015, "variance {var}");
        let lag1 = a.windows(2).map(|w| w[0] as f64 * w[1] as f64).sum::<f64>() / n as f64;
        assert!(lag1.abs() < 0.01, "neighbour correlation {lag1}");
        let tail = a.iter().filter(|v| v.abs() > 3.0).count() as f64 / n as f64;
        assert!((tail - 0.0027).abs() < 0.0008, "P(|x| > 3) = {tail}");
    }

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
