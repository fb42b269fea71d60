//! Time reparameterization between the flow time `γ` and the "decodability"
//! time `τ` (DESIGN §2).
//!
//! At flow time `γ` a one-hot row is mixed with Gaussian noise. Decoding it by
//! argmax succeeds with probability
//! `q(γ) = ∫ φ(z) · Φ(z + γ/(1−γ))^{V−1} dz`, which starts at chance (`1/V`)
//! and reaches 1 at `γ = 1`. Rescaling to `τ(γ) = V/(V−1) · (q(γ) − 1/V)`
//! gives a clock that measures how much of the token is actually recoverable,
//! so sampling and training on a uniform `τ` grid spends effort where the
//! token identity is being decided instead of in the long flat stretch where
//! the noise still hides everything. How long that stretch is depends
//! strongly on `V`, which is why a [`Schedule`] is built per vocabulary size.

use std::f64::consts::{FRAC_1_SQRT_2, PI, SQRT_2};
use std::sync::OnceLock;

/// Number of Gauss–Hermite nodes (DESIGN §2). For `V ≈ 5e4` the integrand
/// has a sharp step, and 100 nodes leave an error of up to ~1e-4 in `q`
/// (~1e-5 in `γ`), far below anything the sampler can notice.
const HERMITE_NODES: usize = 100;

/// Intervals of the uniform `γ` table: linear interpolation on a 1e-4 grid
/// is far more accurate than anything the sampler can notice.
const GRID_INTERVALS: usize = 10_000;

/// Slope of the tie-breaking tilt added to the table so that it is strictly
/// increasing and the flat region near `τ = 0` inverts deterministically.
const TILT: f64 = 1e-10;

/// `ln √(2π)`, the log normalizer of the standard normal density.
const LN_SQRT_2PI: f64 = 0.918_938_533_204_672_8;

/// Quadrature terms whose weight is below this cannot change `q` visibly
/// (the integrand is at most 1), so they are dropped to save time.
const MIN_WEIGHT: f64 = 1e-18;

/// Below this exponent `exp` underflows to (sub)normal zero.
const UNDERFLOW_EXPONENT: f64 = -745.0;

/// Beyond `|x| > MILLS_SPLIT` the continued fraction converges quickly and
/// the series for `erf` would start losing digits to cancellation.
const MILLS_SPLIT: f64 = 3.0;

/// Ways building a [`Schedule`] can fail.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    /// Argmax decoding needs at least two candidate tokens to be meaningful.
    #[error("vocabulary size must be at least 2, got {0}")]
    VocabTooSmall(usize),
}

/// Time reparameterization for one vocabulary size (DESIGN §2).
///
/// Holds `τ` tabulated on a uniform `γ` grid so that both directions are
/// cheap lookups during training and sampling.
#[derive(Debug, Clone)]
pub struct Schedule {
    vocab: usize,
    /// `τ(γ_i) + (γ_i − 1)·TILT` at `γ_i = i / GRID_INTERVALS`, strictly
    /// increasing, ending exactly at 1.
    tau_table: Vec<f64>,
}

impl Schedule {
    /// Tabulates `τ` for vocabulary size `vocab_size`.
    ///
    /// Fails for `vocab_size < 2`, where "decoding by argmax" is trivial and
    /// `τ` would divide by zero.
    pub fn new(vocab_size: usize) -> Result<Self, ScheduleError> {
        if vocab_size < 2 {
            return Err(ScheduleError::VocabTooSmall(vocab_size));
        }
        let mut tau_table = Vec::with_capacity(GRID_INTERVALS + 1);
        let mut envelope = 0.0_f64;
        for i in 0..=GRID_INTERVALS {
            let gamma = i as f64 / GRID_INTERVALS as f64;
            // Quadrature noise could make neighbouring entries dip by ~1e-16;
            // the running maximum keeps the table monotone before the tilt
            // makes it strictly so.
            envelope = envelope.max(tau_from_accuracy(
                vocab_size,
                decode_accuracy(vocab_size, gamma),
            ));
            tau_table.push(envelope + (gamma - 1.0) * TILT);
        }
        Ok(Self {
            vocab: vocab_size,
            tau_table,
        })
    }

    /// The vocabulary size this schedule was built for.
    pub fn vocab_size(&self) -> usize {
        self.vocab
    }

    /// Flow time `γ` at which a fraction `τ` of the way to certain decoding
    /// is reached. The input is clamped to `[0, 1]`; the ends map exactly
    /// (`γ(0) = 0`, `γ(1) = 1`) so sampling starts from pure noise and ends
    /// on clean data. NaN is passed through.
    pub fn gamma(&self, tau: f64) -> f64 {
        if tau.is_nan() {
            return f64::NAN;
        }
        if tau <= 0.0 {
            return 0.0;
        }
        if tau >= 1.0 {
            return 1.0;
        }
        let table = &self.tau_table;
        // table[0] < 0 < tau < 1 = table[last], so 1 <= hi <= last.
        let hi = table.partition_point(|&t| t < tau);
        let (t0, t1) = (table[hi - 1], table[hi]);
        let frac = (tau - t0) / (t1 - t0);
        ((hi - 1) as f64 + frac) / GRID_INTERVALS as f64
    }

    /// `τ(γ)` interpolated from the table, with `γ` and the result clamped to
    /// `[0, 1]`. Consistent with [`Schedule::gamma`] up to the 1e-10 tilt.
    pub fn tau(&self, gamma: f64) -> f64 {
        let pos = gamma.clamp(0.0, 1.0) * GRID_INTERVALS as f64;
        let lo = (pos.floor() as usize).min(GRID_INTERVALS - 1);
        let frac = pos - lo as f64;
        let (t0, t1) = (self.tau_table[lo], self.tau_table[lo + 1]);
        (t0 + frac * (t1 - t0)).clamp(0.0, 1.0)
    }

    /// `τ(γ)` by direct quadrature, bypassing the table; `γ` is clamped to
    /// `[0, 1]` and the result to `[0, 1]`.
    pub fn exact_tau(&self, gamma: f64) -> f64 {
        tau_from_accuracy(self.vocab, self.decode_accuracy(gamma))
    }

    /// Probability `q(γ)` that argmax recovers the clean token at flow time
    /// `γ` (clamped to `[0, 1]`); useful for plots and diagnostics.
    pub fn decode_accuracy(&self, gamma: f64) -> f64 {
        decode_accuracy(self.vocab, gamma)
    }

    /// `steps + 1` pairs `(τ_i, γ_i)` with `τ_i = i / steps`, the sampling
    /// grid that is uniform in decodability. `steps = 0` is treated as 1 so
    /// the grid always contains both ends.
    pub fn uniform_grid(&self, steps: usize) -> Vec<(f64, f64)> {
        let steps = steps.max(1);
        (0..=steps)
            .map(|i| {
                let tau = i as f64 / steps as f64;
                (tau, self.gamma(tau))
            })
            .collect()
    }
}

/// Maps decode accuracy to `τ`, so that chance is 0 and certainty is 1.
fn tau_from_accuracy(vocab: usize, q: f64) -> f64 {
    let v = vocab as f64;
    (v / (v - 1.0) * (q - 1.0 / v)).clamp(0.0, 1.0)
}

/// `q(γ)` for vocabulary size `vocab` by Gauss–Hermite quadrature.
///
/// `Φ^{V−1}` is evaluated as `exp((V−1)·ln Φ)` because for `V ≈ 5e4` the
/// power underflows or loses all precision otherwise.
fn decode_accuracy(vocab: usize, gamma: f64) -> f64 {
    if gamma.is_nan() {
        return f64::NAN;
    }
    let gamma = gamma.clamp(0.0, 1.0);
    if gamma >= 1.0 {
        // Noise-free: the clean token always wins.
        return 1.0;
    }
    if gamma <= 0.0 {
        // Pure noise: by symmetry every token is equally likely to win. Exact
        // here so that `τ(0) = 0` does not carry the ~1e-7 quadrature error.
        return 1.0 / vocab as f64;
    }
    let shift = gamma / (1.0 - gamma);
    let competitors = (vocab - 1) as f64;
    let mut sum = 0.0;
    // Nodes run from the largest z down; the integrand is increasing in z,
    // so once it underflows every remaining node would add zero as well.
    for &(z, w) in normal_quadrature() {
        let exponent = competitors * log_normal_cdf(z + shift);
        if exponent < UNDERFLOW_EXPONENT {
            break;
        }
        sum += w * exponent.exp();
    }
    sum.min(1.0)
}

/// Nodes and weights for `∫ φ(z) f(z) dz ≈ Σ w_i f(z_i)`, largest `z` first.
///
/// They do not depend on `V`, so they are computed once per process.
fn normal_quadrature() -> &'static [(f64, f64)] {
    static NODES: OnceLock<Vec<(f64, f64)>> = OnceLock::new();
    NODES.get_or_init(|| {
        let inv_sqrt_pi = 1.0 / PI.sqrt();
        gauss_hermite(HERMITE_NODES)
            .into_iter()
            .map(|(x, w)| (SQRT_2 * x, w * inv_sqrt_pi))
            .filter(|&(_, w)| w >= MIN_WEIGHT)
            .collect()
    })
}

/// Physicists' Gauss–Hermite rule (weight `e^{−x²}`) with `n` nodes,
/// returned as `(x_i, w_i)` in decreasing `x`.
///
/// Roots are found by Newton's method on the orthonormal Hermite recurrence
/// (which cannot overflow for large `n`), starting each root from asymptotic
/// guesses for the outermost roots and extrapolation from the previous two
/// roots for the rest; the rule is symmetric so only half are searched.
fn gauss_hermite(n: usize) -> Vec<(f64, f64)> {
    const MAX_NEWTON: usize = 20;
    const NEWTON_TOL: f64 = 1e-14;
    let nf = n as f64;
    let mut nodes = vec![0.0_f64; n];
    let mut weights = vec![0.0_f64; n];
    let p0 = PI.powf(-0.25);
    let mut z = 0.0_f64;
    for i in 0..n.div_ceil(2) {
        z = match i {
            0 => (2.0 * nf + 1.0).sqrt() - 1.855_75 * (2.0 * nf + 1.0).powf(-1.0 / 6.0),
            1 => z - 1.14 * nf.powf(0.426) / z,
            2 => 1.86 * z - 0.86 * nodes[0],
            3 => 1.91 * z - 0.91 * nodes[1],
            _ => 2.0 * z - nodes[i - 2],
        };
        let mut derivative = 1.0;
        for _ in 0..MAX_NEWTON {
            // h_n(z) and h_{n−1}(z) of the orthonormal family.
            let (mut h, mut h_prev) = (p0, 0.0_f64);
            for j in 1..=n {
                let jf = j as f64;
                let next = z * (2.0 / jf).sqrt() * h - ((jf - 1.0) / jf).sqrt() * h_prev;
                h_prev = h;
                h = next;
            }
            derivative = (2.0 * nf).sqrt() * h_prev;
            let step = h / derivative;
            z -= step;
            if step.abs() <= NEWTON_TOL * z.abs().max(1.0) {
                break;
            }
        }
        let w = 2.0 / (derivative * derivative);
        nodes[i] = z;
        nodes[n - 1 - i] = -z;
        weights[i] = w;
        weights[n - 1 - i] = w;
    }
    nodes.into_iter().zip(weights).collect()
}

/// `ln Φ(x)` accurate to ~1e-13 relative over the whole real line.
///
/// The lower tail uses `Φ(x) = φ(x)·R(−x)` (Mills ratio) entirely in log
/// space, because `Φ` itself underflows near `x = −38` while `V ≈ 5e4`
/// still needs its logarithm; the upper tail uses `ln(1 − Q)` so the tiny
/// `Q` is not rounded away; the middle uses a cancellation-free series.
fn log_normal_cdf(x: f64) -> f64 {
    if x < -MILLS_SPLIT {
        let t = -x;
        -0.5 * t * t - LN_SQRT_2PI + mills_ratio(t).ln()
    } else if x > MILLS_SPLIT {
        let upper = (-0.5 * x * x - LN_SQRT_2PI).exp() * mills_ratio(x);
        (-upper).ln_1p()
    } else {
        (0.5 + 0.5 * erf_series(x * FRAC_1_SQRT_2)).ln()
    }
}

/// Mills ratio `R(t) = Q(t)/φ(t)` for `t ≥ 3` via Laplace's continued
/// fraction `1/(t + 1/(t + 2/(t + 3/(t + …))))`, evaluated bottom-up.
///
/// The depth `400/t² + 8` was chosen empirically to keep the truncation
/// error below 1e-14 relative for every `t ≥ 3`.
fn mills_ratio(t: f64) -> f64 {
    let depth = (400.0 / (t * t)).ceil() as usize + 8;
    let mut tail = t;
    for k in (1..=depth).rev() {
        tail = t + k as f64 / tail;
    }
    1.0 / tail
}

/// `erf(t)` for moderate `|t|` from the all-positive-terms series
/// `erf(t) = 2/√π · e^{−t²} · Σ_n (2t²)^n t / (1·3·…·(2n+1))`, which unlike
/// the alternating Taylor series loses no digits to cancellation.
fn erf_series(t: f64) -> f64 {
    let two_t2 = 2.0 * t * t;
    let mut term = t;
    let mut sum = t;
    let mut n = 0.0_f64;
    while term.abs() > 1e-17 * sum.abs() {
        n += 1.0;
        term *= two_t2 / (2.0 * n + 1.0);
        sum += term;
    }
    2.0 / PI.sqrt() * (-t * t).exp() * sum
}

#[cfg(test)]
mod tests {
    use super::*;

    const TAUS: [f64; 7] = [0.01, 0.10, 0.25, 0.50, 0.75, 0.90, 0.99];

    /// γ(τ) from DESIGN §2, one row per vocabulary size.
    const DESIGN_TABLE: [(usize, [f64; 7]); 4] = [
        (30, [0.114, 0.436, 0.576, 0.674, 0.738, 0.777, 0.825]),
        (1024, [0.457, 0.655, 0.718, 0.764, 0.798, 0.822, 0.852]),
        (30522, [0.631, 0.736, 0.773, 0.804, 0.829, 0.846, 0.868]),
        (50258, [0.646, 0.744, 0.779, 0.809, 0.832, 0.848, 0.870]),
    ];

    const TABLE_TOL: f64 = 2e-3;

    /// Reference `q` by a fine trapezoid rule on [−10, 10], independent of
    /// the Gauss–Hermite nodes.
    fn trapezoid_accuracy(vocab: usize, gamma: f64) -> f64 {
        let shift = gamma / (1.0 - gamma);
        let competitors = (vocab - 1) as f64;
        let steps = 40_000;
        let h = 20.0 / steps as f64;
        (0..=steps)
            .map(|i| {
                let z = -10.0 + i as f64 * h;
                let end = if i == 0 || i == steps { 0.5 } else { 1.0 };
                let density = (-0.5 * z * z - LN_SQRT_2PI).exp();
                end * density * (competitors * log_normal_cdf(z + shift)).exp()
            })
            .sum::<f64>()
            * h
    }

    #[test]
    fn gamma_of_tau_matches_design_table() {
        let mut worst = 0.0_f64;
        let mut failures = Vec::new();
        for (vocab, expected) in DESIGN_TABLE {
            let schedule = Schedule::new(vocab).unwrap();
            let mut line = format!("V={vocab:>6}:");
            for (&tau, &want) in TAUS.iter().zip(&expected) {
                let got = schedule.gamma(tau);
                let err = (got - want).abs();
                worst = worst.max(err);
                line += &format!(" τ={tau:.2}→{got:.4} (ref {want:.3})");
                if err > TABLE_TOL {
                    failures.push(format!("V={vocab} τ={tau}: got {got:.5}, want {want}"));
                }
            }
            println!("{line}");
        }
        println!("max |γ − ref| = {worst:.2e}");
        assert!(failures.is_empty(), "mismatches: {failures:#?}");
    }

    #[test]
    fn tau_of_gamma_matches_design_forward_values() {
        let schedule = Schedule::new(50258).unwrap();
        for (gamma, want) in [(0.70, 0.033), (0.75, 0.117), (0.80, 0.413), (0.85, 0.916)] {
            let exact = schedule.exact_tau(gamma);
            let table = schedule.tau(gamma);
            println!("τ({gamma}) exact {exact:.5} table {table:.5} ref {want}");
            assert!(
                (exact - want).abs() < TABLE_TOL,
                "exact τ({gamma}) = {exact}"
            );
            assert!(
                (table - want).abs() < TABLE_TOL,
                "table τ({gamma}) = {table}"
            );
        }
    }

    #[test]
    fn endpoints_map_exactly() {
        for vocab in [2, 30, 50258] {
            let schedule = Schedule::new(vocab).unwrap();
            assert_eq!(schedule.gamma(0.0), 0.0);
            assert_eq!(schedule.gamma(1.0), 1.0);
            assert_eq!(schedule.tau(0.0), 0.0);
            assert_eq!(schedule.tau(1.0), 1.0);
            assert_eq!(schedule.exact_tau(1.0), 1.0);
            assert_eq!(schedule.decode_accuracy(1.0), 1.0);
            // Out-of-range inputs clamp instead of extrapolating.
            assert_eq!(schedule.gamma(-0.5), 0.0);
            assert_eq!(schedule.gamma(1.5), 1.0);
            assert_eq!(schedule.tau(-0.5), 0.0);
            assert_eq!(schedule.tau(2.0), 1.0);
        }
    }

    #[test]
    fn chance_level_near_zero_flow_time() {
        // With (almost) no signal every token is equally likely: q → 1/V.
        for vocab in [2, 30, 1024, 50258] {
            let schedule = Schedule::new(vocab).unwrap();
            let chance = 1.0 / vocab as f64;
            assert_eq!(schedule.decode_accuracy(0.0), chance);
            assert_eq!(schedule.exact_tau(0.0), 0.0);
            let q = schedule.decode_accuracy(1e-6);
            assert!((q - chance).abs() < 1e-6, "V={vocab}: q(1e-6)={q}");
        }
    }

    #[test]
    fn tau_gamma_round_trip() {
        for vocab in [2, 30, 1024, 50258] {
            let schedule = Schedule::new(vocab).unwrap();
            for i in 1..100 {
                let tau = i as f64 / 100.0;
                let back = schedule.tau(schedule.gamma(tau));
                assert!((back - tau).abs() < 1e-9, "V={vocab} τ={tau} back={back}");
                let exact = schedule.exact_tau(schedule.gamma(tau));
                assert!(
                    (exact - tau).abs() < 1e-4,
                    "V={vocab} τ={tau} exact={exact}"
                );
            }
        }
    }

    #[test]
    fn gamma_is_strictly_increasing_in_tau() {
        for vocab in [2, 30, 50258] {
            let schedule = Schedule::new(vocab).unwrap();
            let grid = schedule.uniform_grid(2000);
            for pair in grid.windows(2) {
                assert!(pair[1].1 > pair[0].1, "V={vocab}: {pair:?}");
            }
        }
    }

    #[test]
    fn larger_vocab_needs_later_flow_time() {
        let small = Schedule::new(30).unwrap();
        let large = Schedule::new(50258).unwrap();
        for tau in TAUS {
            assert!(large.gamma(tau) > small.gamma(tau), "τ={tau}");
        }
    }

    #[test]
    fn binary_vocab_matches_closed_form() {
        // For V = 2, q(γ) = P(z₁ + c > z₂) = Φ(c/√2) with c = γ/(1−γ).
        let schedule = Schedule::new(2).unwrap();
        for (gamma, want) in [
            (0.25, 0.593_168_142_116_604_1),
            (0.5, 0.760_249_938_906_523_3),
            (0.75, 0.983_052_573_237_655_4),
            (0.9, 0.999_999_999_901_692),
        ] {
            let got = schedule.decode_accuracy(gamma);
            assert!((got - want).abs() < 1e-10, "γ={gamma}: {got} vs {want}");
            let tau = 2.0 * want - 1.0;
            assert!((schedule.exact_tau(gamma) - tau).abs() < 1e-9);
            // At γ = 0.9, τ is within 1e-10 of 1 and no longer invertible.
            if gamma <= 0.75 {
                assert!((schedule.gamma(tau) - gamma).abs() < 1e-6);
            }
        }
    }

    #[test]
    fn quadrature_matches_fine_trapezoid() {
        // 100 Gauss–Hermite nodes are near machine precision for small V but
        // only ~1e-4 for V ≈ 5e4, where Φ^{V−1} is a sharp step.
        for (vocab, tol) in [(2, 1e-12), (30, 1e-8), (1024, 1e-5), (50258, 2e-4)] {
            let schedule = Schedule::new(vocab).unwrap();
            for i in 1..40 {
                let gamma = i as f64 / 40.0;
                let quad = schedule.decode_accuracy(gamma);
                let trap = trapezoid_accuracy(vocab, gamma);
                assert!(
                    (quad - trap).abs() < tol,
                    "V={vocab} γ={gamma}: GH {quad} vs trapezoid {trap}"
                );
            }
        }
    }

    #[test]
    fn table_agrees_with_direct_quadrature() {
        let schedule = Schedule::new(1024).unwrap();
        for i in 0..=200 {
            let gamma = i as f64 / 200.0 - 0.000_37 * (i % 2) as f64;
            let gamma = gamma.clamp(0.0, 1.0);
            let diff = (schedule.tau(gamma) - schedule.exact_tau(gamma)).abs();
            assert!(diff < 1e-5, "γ={gamma}: diff {diff}");
        }
    }

    #[test]
    fn log_normal_cdf_matches_reference_values() {
        // ln Φ(x) from high-precision references (erfc / Mills-ratio tails).
        let cases = [
            (-40.0, -804.608_442_013_753_8),
            (-20.0, -203.917_155_371_097_2),
            (-10.0, -53.231_285_150_512_46),
            (-6.0, -20.736_768_949_974_7),
            (-5.0, -15.064_998_393_988_72),
            (-3.0, -6.607_726_221_510_348),
            (-1.0, -1.841_021_645_009_263_4),
            (0.0, -std::f64::consts::LN_2),
            (1.0, -0.172_753_779_023_449_9),
            (3.0, -0.001_350_809_964_748_202_7),
            (6.0, -9.865_876_455_243_787e-10),
        ];
        for (x, want) in cases {
            let got = log_normal_cdf(x);
            let rel = ((got - want) / want).abs();
            assert!(rel < 1e-11, "x={x}: {got} vs {want} (rel {rel:e})");
        }
        // Continuity across the branch switches.
        for edge in [-MILLS_SPLIT, MILLS_SPLIT] {
            let below = log_normal_cdf(edge - 1e-12);
            let above = log_normal_cdf(edge + 1e-12);
            assert!(((below - above) / below).abs() < 1e-11, "edge {edge}");
        }
    }

    #[test]
    fn gauss_hermite_integrates_normal_moments() {
        // E[z^{2k}] = (2k−1)!! for a standard normal; odd moments vanish.
        let nodes = normal_quadrature();
        let moment = |p: i32| nodes.iter().map(|&(z, w)| w * z.powi(p)).sum::<f64>();
        assert!((moment(0) - 1.0).abs() < 1e-13);
        assert!(moment(1).abs() < 1e-13);
        assert!((moment(2) - 1.0).abs() < 1e-12);
        assert!((moment(4) - 3.0).abs() < 1e-11);
        assert!((moment(6) - 15.0).abs() < 1e-10);
        assert!(nodes.windows(2).all(|p| p[0].0 > p[1].0));
    }

    #[test]
    fn invalid_vocab_is_rejected() {
        assert_eq!(
            Schedule::new(0).unwrap_err(),
            ScheduleError::VocabTooSmall(0)
        );
        assert_eq!(
            Schedule::new(1).unwrap_err(),
            ScheduleError::VocabTooSmall(1)
        );
        assert_eq!(Schedule::new(2).unwrap().vocab_size(), 2);
    }

    #[test]
    fn uniform_grid_spans_unit_interval() {
        let schedule = Schedule::new(30522).unwrap();
        let grid = schedule.uniform_grid(8);
        assert_eq!(grid.len(), 9);
        assert_eq!(grid[0], (0.0, 0.0));
        assert_eq!(grid[8], (1.0, 1.0));
        for (i, &(tau, gamma)) in grid.iter().enumerate() {
            assert_eq!(tau, i as f64 / 8.0);
            assert_eq!(gamma, schedule.gamma(tau));
        }
        assert_eq!(schedule.uniform_grid(0).len(), 2);
    }
}
