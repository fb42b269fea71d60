//! Flow maps (DESIGN §6–§7): the two-time denoiser `δ̂_{s,t}` moves a point from flow time
//! `γ = s` straight to `γ = t`, so a distilled model can jump from noise to text in one call.
//! This module holds the maths shared by distillation and sampling; no network code.

use burn::tensor::{Device, Tensor, TensorData};
use rand::Rng;
use serde::{Deserialize, Serialize};

use super::interpolant::stratified_taus;
use super::schedule::Schedule;

/// `X_{s,t}(x) = ((1−t)/(1−s))·x + ((t−s)/(1−s))·δ`, row-wise: `x` and `denoised` are
/// (B, L, V), `s` and `t` hold one flow time `γ < 1` per example.
pub fn flow_map(x: Tensor<3>, denoised: Tensor<3>, s: &[f64], t: &[f64]) -> Tensor<3> {
    assert_eq!(s.len(), t.len(), "one (s, t) pair per example");
    let device = x.device();
    let keep: Vec<f64> = s
        .iter()
        .zip(t)
        .map(|(s, t)| (1.0 - t) / (1.0 - s))
        .collect();
    let moved: Vec<f64> = s.iter().zip(t).map(|(s, t)| (t - s) / (1.0 - s)).collect();
    x * per_example(&keep, &device) + denoised * per_example(&moved, &device)
}

/// One value per example as a (B, 1, 1) tensor that broadcasts over positions and vocabulary.
pub fn per_example(values: &[f64], device: &Device) -> Tensor<3> {
    let count = values.len();
    let values: Vec<f32> = values.iter().map(|&v| v as f32).collect();
    Tensor::from_data(TensorData::new(values, [count, 1, 1]), device)
}

/// Weight `λ` of the first half-step's denoiser in the semigroup target
/// `λ·δ̂_{s,u} + (1−λ)·δ̂_{u,t}` (DESIGN §6): `λ = (1−t)(u−s) / ((1−u)(t−s))`.
///
/// It is the unique weight for which one jump `s→t` lands where the two jumps `s→u→t` do, and
/// lies in [0, 1] for `s ≤ u ≤ t < 1` (and at `t = 1`, where it is 0). When `s = t` both
/// denoisers are the same and any weight is right; 1/2 is returned.
pub fn semigroup_weight(s: f64, u: f64, t: f64) -> f64 {
    let span = (1.0 - u) * (t - s);
    if span <= 1e-12 {
        return 0.5;
    }
    ((1.0 - t) * (u - s) / span).clamp(0.0, 1.0)
}

/// How a distillation batch is split between its three groups (DESIGN §6).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct GroupFractions {
    /// Share of examples with `s = t`, trained toward the teacher's denoiser.
    pub diagonal: f64,
    /// Expected share of examples with `τ_s = 0, τ_t = 1`: the one-step jump itself.
    pub boundary: f64,
}

impl GroupFractions {
    /// DESIGN's defaults for a diagonal share `diagonal`: a 1/32 of the rest is boundary.
    pub fn with_diagonal(diagonal: f64) -> Self {
        Self {
            diagonal,
            boundary: (1.0 - diagonal) / 32.0,
        }
    }

    pub fn validate(&self) -> Result<(), String> {
        if !(0.0..=1.0).contains(&self.diagonal) {
            return Err(format!(
                "the diagonal fraction must be in [0, 1], got {}",
                self.diagonal
            ));
        }
        if !(0.0..=1.0 - self.diagonal).contains(&self.boundary) {
            return Err(format!(
                "the boundary fraction must be in [0, {}], got {}",
                1.0 - self.diagonal,
                self.boundary
            ));
        }
        Ok(())
    }
}

impl Default for GroupFractions {
    fn default() -> Self {
        Self::with_diagonal(0.5)
    }
}

/// Where the midpoint `u` of an off-diagonal pair `s < t` lies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Midpoint {
    /// Halfway between `s` and `t` (DESIGN §6).
    #[default]
    Middle,
    /// Uniform in `(s, t)`, as the paper's code offers.
    Random,
}

/// How the times of a distillation batch are drawn (DESIGN §6a): a warp `τ = w^p` of the
/// paper's draws `w`, and where the midpoint lies. `p = 1` with [`Midpoint::Middle`] is the
/// paper's scheme; `p > 1` puts more pairs at small τ, where a sequence's content is decided.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TimeSampling {
    pub warp: f64,
    pub midpoint: Midpoint,
    /// Off-diagonal pairs on the dyadic grid of `2^levels` steps instead of anywhere: a level
    /// `ℓ < levels` uniformly, then one of its `2^ℓ` jumps `(j, j+1)·2^−ℓ` — exactly the jumps
    /// 1-, 2-, 4-… step samplers make. `None` is the paper's continuous draw.
    #[serde(default)]
    pub dyadic_levels: Option<u32>,
}

impl Default for TimeSampling {
    fn default() -> Self {
        Self {
            warp: 1.0,
            midpoint: Midpoint::Middle,
            dyadic_levels: None,
        }
    }
}

impl TimeSampling {
    pub fn validate(&self) -> Result<(), String> {
        if self
            .dyadic_levels
            .is_some_and(|levels| !(1..=10).contains(&levels))
        {
            return Err("dyadic levels must be in 1..=10".into());
        }
        if !(self.warp.is_finite() && (0.25..=8.0).contains(&self.warp)) {
            return Err(format!(
                "the time warp p must be in [0.25, 8] (τ = w^p; 1 is the paper's), got {}",
                self.warp
            ));
        }
        Ok(())
    }

    /// `τ = w^p` for a draw `w ∈ [0, 1]`: monotone, so ordered draws stay ordered.
    pub fn warp(&self, w: f64) -> f64 {
        w.clamp(0.0, 1.0).powf(self.warp)
    }
}

/// Which target an example of a distillation batch is trained toward.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PairKind {
    /// `s = t`: the teacher's denoiser (or the clean data when self-distilling).
    Diagonal,
    /// `s = 0, t = 1`: the one-step jump itself (a semigroup pair, or the teacher's endpoint).
    Boundary,
    /// `s < t`: the student's own two half-steps.
    OffDiagonal,
}

/// Times `(s, u, t)` for every example of one distillation batch, drawn in τ and mapped to γ.
/// Examples are ordered diagonal, then boundary, then off-diagonal.
#[derive(Debug, Clone)]
pub struct TimePairs {
    pub kinds: Vec<PairKind>,
    pub tau_s: Vec<f64>,
    pub tau_u: Vec<f64>,
    pub tau_t: Vec<f64>,
    pub gamma_s: Vec<f64>,
    pub gamma_u: Vec<f64>,
    pub gamma_t: Vec<f64>,
}

impl TimePairs {
    /// Draws the groups for a batch of `batch` examples. The diagonal count is fixed; the
    /// boundary count is rounded at random so its expectation is exact even when `B·share < 1`.
    /// Draws are made in `w` and warped to `τ = w^p` (the midpoint too, so it is taken in w).
    pub fn draw(
        rng: &mut impl Rng,
        batch: usize,
        fractions: GroupFractions,
        sampling: TimeSampling,
        schedule: &Schedule,
    ) -> Self {
        let diagonal = ((batch as f64 * fractions.diagonal).round() as usize).min(batch);
        let expected_boundary = batch as f64 * fractions.boundary;
        let boundary = (expected_boundary.floor() as usize
            + usize::from(rng.random::<f64>() < expected_boundary.fract()))
        .min(batch - diagonal);
        let off_diagonal = batch - diagonal - boundary;

        let mut kinds = Vec::with_capacity(batch);
        let mut w_s = Vec::with_capacity(batch);
        let mut w_u = Vec::with_capacity(batch);
        let mut w_t = Vec::with_capacity(batch);
        for w in stratified_taus(rng, diagonal) {
            kinds.push(PairKind::Diagonal);
            w_s.push(w);
            w_u.push(w);
            w_t.push(w);
        }
        for _ in 0..boundary {
            kinds.push(PairKind::Boundary);
            w_s.push(0.0);
            w_u.push(0.5);
            w_t.push(1.0);
        }
        // Stratified gaps d cover short and long jumps evenly in every batch; on the dyadic
        // grid, stratified levels do.
        for draw in stratified_taus(rng, off_diagonal) {
            let (start, end) = match sampling.dyadic_levels {
                None => {
                    let start = rng.random::<f64>() * (1.0 - draw);
                    (start, start + draw)
                }
                Some(levels) => {
                    let level = ((draw * levels as f64) as u32).min(levels - 1);
                    let jumps = 1u64 << level;
                    let j = rng.random_range(0..jumps);
                    (j as f64 / jumps as f64, (j + 1) as f64 / jumps as f64)
                }
            };
            let gap = end - start;
            let middle = match sampling.midpoint {
                Midpoint::Middle => 0.5 * (start + end),
                Midpoint::Random => start + rng.random::<f64>() * gap,
            };
            kinds.push(PairKind::OffDiagonal);
            w_s.push(start);
            w_u.push(middle);
            w_t.push(end);
        }
        let warp = |ws: &[f64]| -> Vec<f64> { ws.iter().map(|&w| sampling.warp(w)).collect() };
        let (tau_s, tau_u, tau_t) = (warp(&w_s), warp(&w_u), warp(&w_t));
        let to_gamma = |taus: &[f64]| taus.iter().map(|&tau| schedule.gamma(tau)).collect();
        Self {
            gamma_s: to_gamma(&tau_s),
            gamma_u: to_gamma(&tau_u),
            gamma_t: to_gamma(&tau_t),
            kinds,
            tau_s,
            tau_u,
            tau_t,
        }
    }

    pub fn len(&self) -> usize {
        self.kinds.len()
    }

    pub fn is_empty(&self) -> bool {
        self.kinds.is_empty()
    }

    /// Gives the examples in `rows` the times `(τ_s, τ_t)` (midpoint halfway), e.g. for rows
    /// whose inputs and targets were read off a teacher trajectory.
    pub fn set_times(
        &mut self,
        rows: std::ops::Range<usize>,
        tau_s: &[f64],
        tau_t: &[f64],
        schedule: &Schedule,
    ) {
        for ((row, &s), &t) in rows.zip(tau_s).zip(tau_t) {
            let u = 0.5 * (s + t);
            (self.tau_s[row], self.tau_u[row], self.tau_t[row]) = (s, u, t);
            self.gamma_s[row] = schedule.gamma(s);
            self.gamma_u[row] = schedule.gamma(u);
            self.gamma_t[row] = schedule.gamma(t);
        }
    }

    /// Number of leading diagonal examples.
    pub fn diagonal_count(&self) -> usize {
        self.count(PairKind::Diagonal)
    }

    /// Number of examples of `kind`.
    pub fn count(&self, kind: PairKind) -> usize {
        self.kinds.iter().filter(|&&k| k == kind).count()
    }
}

/// One step of the N-step flow-map sampler (DESIGN §7), with its coefficients precomputed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FlowMapStep {
    /// Where the step starts: `τ_i` and `γ_i`.
    pub tau: f64,
    pub gamma: f64,
    /// The time the network jumps to: `t̃ = 1 − σ·√(1−η²)` and `τ(t̃)`.
    pub target_gamma: f64,
    pub target_tau: f64,
    /// `σ = 1 − γ_{i+1}`: the noise level the step must end at.
    pub sigma: f64,
    /// `σ̃ = σ·√(1−η²)`: the part of it kept from the current point.
    pub kept_sigma: f64,
}

impl FlowMapStep {
    /// The whole plan for `steps ≥ 1` steps with stochasticity `eta ∈ [0, 1]`.
    pub fn plan(schedule: &Schedule, steps: usize, eta: f64) -> Vec<FlowMapStep> {
        let grid = schedule.uniform_grid(steps);
        grid.windows(2)
            .map(|pair| {
                let ((tau, gamma), (_, next_gamma)) = (pair[0], pair[1]);
                let sigma = 1.0 - next_gamma;
                let kept_sigma = sigma * (1.0 - eta * eta).max(0.0).sqrt();
                let target_gamma = 1.0 - kept_sigma;
                FlowMapStep {
                    tau,
                    gamma,
                    target_gamma,
                    target_tau: schedule.tau(target_gamma),
                    sigma,
                    kept_sigma,
                }
            })
            .collect()
    }

    /// The step as `z_next = keep·z + moved·D + noise·ξ`: first the deterministic jump
    /// `z ← ((1−t̃)/(1−γ_i))·z + ((t̃−γ_i)/(1−γ_i))·D`, then for η > 0 the correction
    /// `z ← z + (σ̃−σ)·D + η·σ·ξ` that restores the noise level σ with fresh noise.
    pub fn coefficients(&self, eta: f64) -> (f64, f64, f64) {
        let keep = (1.0 - self.target_gamma) / (1.0 - self.gamma);
        let moved = (self.target_gamma - self.gamma) / (1.0 - self.gamma);
        if eta > 0.0 {
            (keep, moved + self.kept_sigma - self.sigma, eta * self.sigma)
        } else {
            (keep, moved, 0.0)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::{standard_normal, stream_rng};

    fn read(t: Tensor<3>) -> Vec<f32> {
        t.into_data().convert::<f32>().try_into_vec().unwrap()
    }

    fn random(shape: [usize; 3], seed: u64, device: &Device) -> Tensor<3> {
        let values = standard_normal(&mut stream_rng(seed, 0), shape.iter().product());
        Tensor::from_data(TensorData::new(values, shape), device)
    }

    /// Random points on the simplex (softmax of noise).
    fn random_simplex(shape: [usize; 3], seed: u64, device: &Device) -> Tensor<3> {
        burn::tensor::activation::softmax(random(shape, seed, device), 2)
    }

    #[test]
    fn semigroup_weight_is_a_convex_weight_for_random_times() {
        let mut rng = stream_rng(11, 0);
        for _ in 0..10_000 {
            let mut times = [rng.random::<f64>(), rng.random(), rng.random()];
            times.sort_by(f64::total_cmp);
            let [s, u, t] = times;
            let lambda = semigroup_weight(s, u, t);
            assert!((0.0..=1.0).contains(&lambda), "λ({s},{u},{t}) = {lambda}");
        }
        assert_eq!(semigroup_weight(0.0, 0.5, 1.0), 0.0);
        assert_eq!(semigroup_weight(0.3, 0.3, 0.3), 0.5);
    }

    #[test]
    fn semigroup_target_rows_stay_on_the_simplex() {
        let device = crate::device::cpu_device();
        let mut rng = stream_rng(5, 0);
        for case in 0..20u64 {
            let mut times = [rng.random::<f64>(), rng.random(), rng.random()];
            times.sort_by(f64::total_cmp);
            let [s, u, t] = times;
            let lambda = semigroup_weight(s, u, t);
            let first = random_simplex([2, 3, 17], case, &device);
            let second = random_simplex([2, 3, 17], case + 100, &device);
            let target = first * lambda + second * (1.0 - lambda);
            let values = read(target);
            assert!(values.iter().all(|&p| p >= 0.0));
            for row in values.chunks(17) {
                let sum: f32 = row.iter().sum();
                assert!((sum - 1.0).abs() < 1e-5, "row sums to {sum}");
            }
        }
    }

    #[test]
    fn flow_map_from_s_to_s_is_the_identity() {
        let device = crate::device::cpu_device();
        let x = random([2, 4, 9], 1, &device);
        let denoised = random_simplex([2, 4, 9], 2, &device);
        let moved = flow_map(x.clone(), denoised, &[0.3, 0.8], &[0.3, 0.8]);
        for (a, b) in read(moved).iter().zip(read(x)) {
            assert!((a - b).abs() < 1e-6);
        }
    }

    #[test]
    fn two_half_jumps_equal_one_jump_with_the_semigroup_target() {
        // X_{u,t}(X_{s,u}(x)) with denoisers D1, D2 equals X_{s,t}(x) with λ·D1 + (1−λ)·D2.
        let device = crate::device::cpu_device();
        let (s, u, t) = (0.2, 0.55, 0.9);
        let x = random([1, 5, 7], 3, &device);
        let d1 = random_simplex([1, 5, 7], 4, &device);
        let d2 = random_simplex([1, 5, 7], 5, &device);
        let x_u = flow_map(x.clone(), d1.clone(), &[s], &[u]);
        let two_jumps = flow_map(x_u, d2.clone(), &[u], &[t]);
        let lambda = semigroup_weight(s, u, t);
        let one_jump = flow_map(x, d1 * lambda + d2 * (1.0 - lambda), &[s], &[t]);
        for (a, b) in read(two_jumps).iter().zip(read(one_jump)) {
            assert!((a - b).abs() < 1e-5, "{a} vs {b}");
        }
    }

    #[test]
    fn flow_map_matches_the_formula_elementwise() {
        let device = crate::device::cpu_device();
        let x = random([1, 2, 3], 6, &device);
        let d = random_simplex([1, 2, 3], 7, &device);
        let (s, t) = (0.25, 0.75);
        let got = read(flow_map(x.clone(), d.clone(), &[s], &[t]));
        let (xs, ds) = (read(x), read(d));
        for i in 0..6 {
            let want = (1.0 - t) / (1.0 - s) * xs[i] as f64 + (t - s) / (1.0 - s) * ds[i] as f64;
            assert!((got[i] as f64 - want).abs() < 1e-6);
        }
    }

    #[test]
    fn time_pairs_follow_the_group_rules() {
        let schedule = Schedule::new(30).unwrap();
        let mut rng = stream_rng(9, 0);
        let mut boundary_total = 0;
        for _ in 0..2000 {
            let pairs = TimePairs::draw(
                &mut rng,
                16,
                GroupFractions::default(),
                TimeSampling::default(),
                &schedule,
            );
            assert_eq!(pairs.len(), 16);
            assert_eq!(pairs.diagonal_count(), 8);
            for i in 0..16 {
                let (s, u, t) = (pairs.tau_s[i], pairs.tau_u[i], pairs.tau_t[i]);
                assert!(0.0 <= s && s <= u && u <= t && t <= 1.0, "{s} {u} {t}");
                match pairs.kinds[i] {
                    PairKind::Diagonal => assert_eq!(s, t),
                    PairKind::Boundary => assert_eq!((s, t), (0.0, 1.0)),
                    PairKind::OffDiagonal => assert!(t < 1.0 + 1e-12),
                }
                assert_eq!(pairs.gamma_s[i], schedule.gamma(s));
            }
            boundary_total += pairs
                .kinds
                .iter()
                .filter(|&&k| k == PairKind::Boundary)
                .count();
        }
        // Expected 16 · 0.5/32 = 0.25 boundary examples per batch.
        let mean = boundary_total as f64 / 2000.0;
        assert!((mean - 0.25).abs() < 0.05, "mean boundary count {mean}");
    }

    #[test]
    fn warped_times_stay_ordered_and_in_the_unit_interval() {
        let schedule = Schedule::new(30).unwrap();
        let mut rng = stream_rng(4, 0);
        for (warp, midpoint) in [
            (2.0, Midpoint::Middle),
            (3.0, Midpoint::Random),
            (0.5, Midpoint::Random),
        ] {
            let sampling = TimeSampling {
                warp,
                midpoint,
                ..TimeSampling::default()
            };
            let mut below_tenth = 0;
            for _ in 0..500 {
                let pairs =
                    TimePairs::draw(&mut rng, 16, GroupFractions::default(), sampling, &schedule);
                for i in 0..16 {
                    let (s, u, t) = (pairs.tau_s[i], pairs.tau_u[i], pairs.tau_t[i]);
                    assert!(
                        0.0 <= s && s <= u && u <= t && t <= 1.0,
                        "p={warp}: {s} {u} {t}"
                    );
                    assert!(
                        pairs.gamma_s[i] <= pairs.gamma_u[i]
                            && pairs.gamma_u[i] <= pairs.gamma_t[i]
                    );
                    below_tenth += usize::from(pairs.kinds[i] == PairKind::Diagonal && s < 0.1);
                }
            }
            // Diagonal draws w are uniform, so P(τ < 0.1) = P(w < 0.1^(1/p)).
            let expected = 0.1f64.powf(1.0 / warp);
            let share = below_tenth as f64 / (500.0 * 8.0);
            assert!(
                (share - expected).abs() < 0.04,
                "p={warp}: {share} vs {expected}"
            );
        }
        assert!(
            TimeSampling {
                warp: 0.0,
                ..TimeSampling::default()
            }
            .validate()
            .is_err()
        );
        assert!(TimeSampling::default().validate().is_ok());
    }

    #[test]
    fn random_midpoints_spread_over_the_pair() {
        let schedule = Schedule::new(30).unwrap();
        let sampling = TimeSampling {
            midpoint: Midpoint::Random,
            ..TimeSampling::default()
        };
        let pairs = TimePairs::draw(
            &mut stream_rng(8, 0),
            4000,
            GroupFractions::with_diagonal(0.0),
            sampling,
            &schedule,
        );
        let relative: Vec<f64> = (0..pairs.len())
            .filter(|&i| {
                pairs.kinds[i] == PairKind::OffDiagonal && pairs.tau_t[i] > pairs.tau_s[i] + 1e-3
            })
            .map(|i| (pairs.tau_u[i] - pairs.tau_s[i]) / (pairs.tau_t[i] - pairs.tau_s[i]))
            .collect();
        let mean = relative.iter().sum::<f64>() / relative.len() as f64;
        let below_quarter =
            relative.iter().filter(|&&r| r < 0.25).count() as f64 / relative.len() as f64;
        assert!((mean - 0.5).abs() < 0.03, "mean relative midpoint {mean}");
        assert!((below_quarter - 0.25).abs() < 0.03, "{below_quarter}");
    }

    #[test]
    fn dyadic_pairs_are_the_jumps_of_power_of_two_samplers() {
        let schedule = Schedule::new(30).unwrap();
        let sampling = TimeSampling {
            dyadic_levels: Some(3),
            ..TimeSampling::default()
        };
        let mut seen = std::collections::BTreeSet::new();
        let mut rng = stream_rng(12, 0);
        for _ in 0..400 {
            let pairs = TimePairs::draw(
                &mut rng,
                12,
                GroupFractions::with_diagonal(0.0),
                sampling,
                &schedule,
            );
            for i in 0..pairs.len() {
                let (s, t) = (pairs.tau_s[i], pairs.tau_t[i]);
                let gap = t - s;
                assert!(
                    [1.0, 0.5, 0.25].iter().any(|g| (gap - g).abs() < 1e-12),
                    "gap {gap}"
                );
                assert!(
                    (s / gap).fract().abs() < 1e-9,
                    "{s} is not a multiple of {gap}"
                );
                assert!((pairs.tau_u[i] - (s + t) / 2.0).abs() < 1e-12);
                seen.insert(((s * 8.0) as u32, (t * 8.0) as u32));
            }
        }
        // Levels 0, 1, 2: 1 + 2 + 4 distinct jumps.
        assert_eq!(seen.len(), 7, "{seen:?}");
        assert!(
            TimeSampling {
                dyadic_levels: Some(0),
                ..TimeSampling::default()
            }
            .validate()
            .is_err()
        );
    }

    #[test]
    fn group_fractions_are_checked() {
        assert!(GroupFractions::default().validate().is_ok());
        assert!(GroupFractions::with_diagonal(1.5).validate().is_err());
        let too_much = GroupFractions {
            diagonal: 0.9,
            boundary: 0.2,
        };
        assert!(too_much.validate().is_err());
    }

    #[test]
    fn deterministic_plan_lands_on_the_grid_and_one_step_jumps_to_data() {
        let schedule = Schedule::new(1024).unwrap();
        let plan = FlowMapStep::plan(&schedule, 4, 0.0);
        let grid = schedule.uniform_grid(4);
        for (step, next) in plan.iter().zip(&grid[1..]) {
            assert!((step.target_gamma - next.1).abs() < 1e-12);
            assert!((step.target_tau - next.0).abs() < 1e-6);
        }
        let one = FlowMapStep::plan(&schedule, 1, 0.7);
        assert_eq!(one.len(), 1);
        assert_eq!((one[0].gamma, one[0].target_gamma), (0.0, 1.0));
    }

    #[test]
    fn stochastic_step_keeps_the_marginal_noise_level() {
        // With z = (1−γ)·ε + γ·D and D fixed, the step must land at noise level σ = 1−γ_{i+1}
        // with data weight γ_{i+1}, whatever η.
        let device = crate::device::cpu_device();
        let schedule = Schedule::new(30).unwrap();
        let n = 200_000;
        for eta in [0.0, 0.5, 1.0] {
            let step = FlowMapStep::plan(&schedule, 4, eta)[1];
            let d = Tensor::<3>::zeros([1, 1, n], &device);
            let eps = random([1, 1, n], 21, &device);
            let z = eps * (1.0 - step.gamma);
            let xi = random([1, 1, n], 22, &device);
            let (keep, moved, noise) = step.coefficients(eta);
            let next = read(z * keep + d * moved + xi * noise);
            let var = next.iter().map(|v| (*v as f64).powi(2)).sum::<f64>() / n as f64;
            let want = step.sigma.powi(2);
            assert!((var / want - 1.0).abs() < 0.02, "η={eta}: {var} vs {want}");
        }
    }
}
