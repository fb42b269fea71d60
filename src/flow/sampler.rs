//! Sampling: Euler steps for FLMs (DESIGN §5) and flow-map jumps for FMLMs (DESIGN §7), both
//! on a uniform τ grid from the same starting noise, recording what the app draws.

use std::ops::ControlFlow;

use burn::tensor::{Device, IndexingUpdateOp, Int, Tensor, TensorData};

pub use super::decoding::argmax_tokens;
use super::decoding::{Decoding, decode};
use super::flow_map::{FlowMapStep, per_example};
use super::schedule::Schedule;
use super::trajectory::{Frame, SampleTrajectory, Trajectory};
use crate::kernels::KernelPath;
use crate::kernels::sampler_step::{MAX_TOP_K, StepCoefficients, sampler_step};
use crate::model::Dit;
use crate::rng::{standard_normal, stream_rng};

/// How to sample.
#[derive(Debug, Clone, PartialEq)]
pub struct SamplerSettings {
    /// Number of network calls N ≥ 1.
    pub steps: usize,
    pub seed: u64,
    /// Which batch of this seed: a request split into batches uses streams 0, 1, …, so two
    /// seeds never share samples.
    pub stream: u64,
    /// Sequences generated together in one batch.
    pub batch: usize,
    pub seq_len: usize,
    /// Candidates kept per position in the trajectory (0 = record nothing).
    pub top_k: usize,
    /// How the final distribution becomes tokens (DESIGN §5a).
    pub decoding: Decoding,
}

/// Positions a person fixed (a prompt or a template) and how hard the free positions are
/// pulled toward them; see [`sample_conditioned`].
#[derive(Debug, Clone, Copy)]
pub struct Clamped<'a> {
    /// `tokens[i] = Some(id)` fixes position `i`; `None`, and every position past the end,
    /// is generated.
    pub tokens: &'a [Option<u32>],
    /// Empty, or one list per row of the batch: that row's tokens at the positions `tokens`
    /// fixes, in order, in place of `tokens`' own ids. How an evaluation continues a
    /// different prompt in every row of one batch.
    pub per_row: &'a [Vec<u32>],
    /// Guidance strength λ ≥ 0: each step (but the last) moves the free positions by
    /// `λ·Δγ·∇_z log p(fixed tokens at their positions | z)`. 0 is clamping alone.
    pub guidance: f64,
}

impl Clamped<'_> {
    /// Nothing fixed.
    pub const NONE: Clamped<'static> = Clamped {
        tokens: &[],
        per_row: &[],
        guidance: 0.0,
    };
}

/// Which sampler to run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SamplerKind {
    /// Euler steps of the one-time denoiser (FLM).
    Euler,
    /// Jumps of the two-time flow map (FMLM) with stochasticity `eta ∈ [0, 1]`.
    FlowMap { eta: f64 },
}

impl SamplerKind {
    /// The name stored in trajectories and printed in JSON output.
    pub fn name(self) -> &'static str {
        match self {
            SamplerKind::Euler => "euler",
            SamplerKind::FlowMap { .. } => "flow-map",
        }
    }

    pub fn eta(self) -> f64 {
        match self {
            SamplerKind::Euler => 0.0,
            SamplerKind::FlowMap { eta } => eta,
        }
    }
}

/// Runs `kind` on `model`, with the fused sampler kernel on wgpu devices.
pub fn sample(
    model: &Dit,
    kind: SamplerKind,
    schedule: &Schedule,
    settings: &SamplerSettings,
    device: &Device,
) -> SampleOutput {
    sample_with(model, kind, schedule, settings, KernelPath::Auto, device)
}

/// Sampled token ids per sequence, and the recorded trajectory when `top_k > 0`.
pub struct SampleOutput {
    pub tokens: Vec<Vec<u32>>,
    pub trajectory: Option<Trajectory>,
}

/// The starting noise `z ~ N(0, I)` (B, L, V) for a seed: shared by every sampler, so FLM and
/// FMLM runs with the same seed start from the same point.
pub fn initial_noise(settings: &SamplerSettings, vocab: usize, device: &Device) -> Tensor<3> {
    let shape = [settings.batch, settings.seq_len, vocab];
    let mut rng = stream_rng(settings.seed, settings.stream);
    let values = standard_normal(&mut rng, shape.iter().product());
    Tensor::from_data(TensorData::new(values, shape), device)
}

/// Euler sampler of DESIGN §5 with the final jump `z = D` at the last step.
pub fn euler_sample(
    model: &Dit,
    schedule: &Schedule,
    settings: &SamplerSettings,
    device: &Device,
) -> SampleOutput {
    sample(model, SamplerKind::Euler, schedule, settings, device)
}

/// The N-step flow-map sampler of DESIGN §7: one network call per step, the last one's
/// denoiser output is the sample. With `eta = 0` it is deterministic; one step is the same
/// for every `eta`.
pub fn flow_map_sample(
    model: &Dit,
    schedule: &Schedule,
    settings: &SamplerSettings,
    eta: f64,
    device: &Device,
) -> SampleOutput {
    sample(
        model,
        SamplerKind::FlowMap { eta },
        schedule,
        settings,
        device,
    )
}

/// One step of either sampler: where the network is called, and how `z` moves
/// (`z_next = keep·z + moved·D + noise·ξ`).
struct PlannedStep {
    tau: f64,
    gamma: f64,
    /// γ of the point the step ends at (1 after the last step).
    next_gamma: f64,
    /// The second time of a flow-map call; `None` for Euler steps.
    target_tau: Option<f64>,
    keep: f64,
    moved: f64,
    noise: f64,
}

impl PlannedStep {
    /// The step's coefficients without fresh noise (Euler steps, teacher paths).
    fn deterministic(&self) -> StepCoefficients {
        StepCoefficients {
            keep: self.keep as f32,
            moved: self.moved as f32,
            noise: 0.0,
            seed: 0,
            counter: 0,
        }
    }
}

fn plan(kind: SamplerKind, schedule: &Schedule, steps: usize) -> Vec<PlannedStep> {
    let mut plan: Vec<PlannedStep> = match kind {
        SamplerKind::Euler => schedule
            .uniform_grid(steps)
            .windows(2)
            .map(|pair| {
                let ((tau, gamma), (_, next_gamma)) = (pair[0], pair[1]);
                let rate = (next_gamma - gamma) / (1.0 - gamma);
                PlannedStep {
                    tau,
                    gamma,
                    next_gamma,
                    target_tau: None,
                    keep: 1.0 - rate,
                    moved: rate,
                    noise: 0.0,
                }
            })
            .collect(),
        SamplerKind::FlowMap { eta } => FlowMapStep::plan(schedule, steps, eta)
            .iter()
            .map(|step| {
                let (keep, moved, noise) = step.coefficients(eta);
                PlannedStep {
                    tau: step.tau,
                    gamma: step.gamma,
                    next_gamma: 1.0 - step.sigma,
                    target_tau: Some(step.target_tau),
                    keep,
                    moved,
                    noise,
                }
            })
            .collect(),
    };
    // The last step outputs the denoiser itself: z = D.
    if let Some(last) = plan.last_mut() {
        (last.keep, last.moved, last.noise) = (0.0, 1.0, 0.0);
        last.next_gamma = 1.0;
    }
    plan
}

/// Fresh noise ξ of stochastic flow-map steps: stream `(seed, counter)` per step and batch,
/// far from anything else drawn for the seed, so η = 0 and η > 0 start from the same point.
fn step_noise_counter(stream: u64, step: usize) -> u64 {
    (1 << 63) | (stream << 24) | step as u64
}

/// The sampler loop shared by both kinds; `path` picks the fused kernel or the reference ops
/// (tests and benchmarks compare the two).
pub fn sample_with(
    model: &Dit,
    kind: SamplerKind,
    schedule: &Schedule,
    settings: &SamplerSettings,
    path: KernelPath,
    device: &Device,
) -> SampleOutput {
    sample_observed(model, kind, schedule, settings, path, device, &mut |_| {
        ControlFlow::Continue(())
    })
    .expect("an observer that never stops")
}

/// [`sample_with`] that reports each finished step (1…N) to `on_step`, which can stop the run:
/// then `None`. Front ends show progress and offer Cancel with it.
pub fn sample_observed(
    model: &Dit,
    kind: SamplerKind,
    schedule: &Schedule,
    settings: &SamplerSettings,
    path: KernelPath,
    device: &Device,
    on_step: &mut dyn FnMut(usize) -> ControlFlow<()>,
) -> Option<SampleOutput> {
    sample_conditioned(
        model,
        kind,
        schedule,
        settings,
        Clamped::NONE,
        path,
        device,
        on_step,
    )
}

/// [`sample_observed`] with some positions fixed by the person (`clamped.tokens`). After every
/// step each fixed position is clamped to the forward process of its token at the γ the step
/// ends at, `(1−γ)·ε + γ·onehot(token)` with the starting noise ε of that position (after the
/// last step, γ = 1: the token itself). The free positions follow the sampler plus, with
/// `clamped.guidance` λ > 0, the gradient of the log probability the model gives the fixed
/// tokens at their positions ([`Guide`]).
///
/// Why guidance: a clamped position is one weak voice among many noisy ones, and the free
/// positions settle early (on `builtin:repeat` a one-letter prompt alone gave 3 of 64 samples
/// of that letter at 8 steps; with λ = 8, 128 of 128). The first call is at γ = 0, where
/// fixed positions are pure noise and the gradient through them is zero, so a 1-step run
/// generates its free positions without seeing them. The clamp acts on the state tensor
/// after the step, whichever path (kernel or reference) made it, and the fixed tokens are
/// written into the decoded output, whatever the decoding.
#[allow(clippy::too_many_arguments)]
pub fn sample_conditioned(
    model: &Dit,
    kind: SamplerKind,
    schedule: &Schedule,
    settings: &SamplerSettings,
    clamped: Clamped,
    path: KernelPath,
    device: &Device,
    on_step: &mut dyn FnMut(usize) -> ControlFlow<()>,
) -> Option<SampleOutput> {
    assert!(settings.steps >= 1, "at least one step");
    let fixed = clamped.tokens;
    assert!(
        clamped.guidance.is_finite() && clamped.guidance >= 0.0,
        "guidance must be finite and ≥ 0"
    );
    assert!(
        fixed.len() <= settings.seq_len,
        "{} fixed positions in sequences of {}",
        fixed.len(),
        settings.seq_len
    );
    if let SamplerKind::FlowMap { eta } = kind {
        assert!((0.0..=1.0).contains(&eta), "η must be in [0, 1]");
    }
    let vocab = model.vocab_size();
    let per_row = clamped.per_row;
    assert!(
        fixed
            .iter()
            .flatten()
            .chain(per_row.iter().flatten())
            .all(|&id| (id as usize) < vocab),
        "fixed tokens must be in the vocabulary of {vocab}"
    );
    let fixed_count = fixed.iter().flatten().count();
    assert!(
        per_row.is_empty()
            || (per_row.len() == settings.batch && per_row.iter().all(|r| r.len() == fixed_count)),
        "per-row tokens: one list per row, each as long as the fixed positions"
    );
    let mut recorder = TrajectoryRecorder::new(settings, vocab, kind.name(), kind.eta() as f32);
    let mut z = initial_noise(settings, vocab, device);
    let clamp = Clamp::new(fixed, per_row, &z);
    let guidance = clamped.guidance;
    let guide = clamp
        .as_ref()
        .filter(|_| guidance > 0.0)
        .map(|clamp| Guide::new(model, clamp, device));
    for (i, step) in plan(kind, schedule, settings.steps).iter().enumerate() {
        let full = |value: f64| Tensor::<1>::full([settings.batch], value as f32, device);
        let last = step.keep == 0.0;
        let (logits, pull) = match &guide {
            Some(guide) if !last => {
                let (logits, gradient) =
                    guide.forward(z.clone(), full(step.tau), step.target_tau.map(full));
                let scale = guidance * (step.next_gamma - step.gamma);
                (logits, Some(gradient * scale as f32))
            }
            _ => (
                model.forward(z.clone(), full(step.tau), step.target_tau.map(full)),
                None,
            ),
        };
        let coefficients = StepCoefficients {
            keep: step.keep as f32,
            moved: step.moved as f32,
            noise: step.noise as f32,
            seed: settings.seed,
            counter: step_noise_counter(settings.stream, i),
        };
        let output = sampler_step(logits, z, coefficients, recorder.top_k(), path);
        recorder.record(output.stats, step.tau, step.gamma);
        let z_next = match pull {
            Some(pull) => output.z_next + pull,
            None => output.z_next,
        };
        z = match &clamp {
            Some(clamp) => clamp.apply(z_next, step.next_gamma),
            None => z_next,
        };
        if on_step(i + 1).is_break() {
            return None;
        }
    }
    let mut tokens = decode(z, settings.decoding, settings.seed, settings.stream);
    // The last clamp left the exact one-hot; a draw at a high temperature could still leave
    // it, so the fixed tokens are written in.
    for (b, row) in tokens.iter_mut().enumerate() {
        let positions = fixed
            .iter()
            .enumerate()
            .filter_map(|(i, id)| id.map(|id| (i, id)));
        for (j, (i, id)) in positions.enumerate() {
            row[i] = per_row.get(b).map_or(id, |ids| ids[j]);
        }
    }
    let mut trajectory = recorder.finish(&tokens);
    if let Some(trajectory) = trajectory.as_mut()
        && fixed.iter().any(Option::is_some)
        && per_row.is_empty()
    {
        trajectory.fixed = (0..settings.seq_len)
            .map(|i| fixed.get(i).copied().flatten())
            .collect();
    }
    Some(SampleOutput { trajectory, tokens })
}

/// The positions a conditioned run holds fixed, as device tensors: after every step the state
/// becomes `z·free` plus, at the n fixed positions, `ε·(1−γ) + onehot·γ`. Only (B, n, V) is
/// kept beside `z`, so a large vocabulary with a short prompt costs little memory.
struct Clamp {
    /// 1 at free positions, 0 at fixed ones: (1, L, 1) seen as (B, L, V).
    free: Tensor<3>,
    /// The fixed positions, in order (n).
    positions: Tensor<1, Int>,
    /// The starting noise at the fixed positions (B, n, V).
    noise: Tensor<3>,
    /// The fixed tokens one-hot: (1, n, V) seen as (B, n, V), or (B, n, V) with per-row tokens.
    onehot: Tensor<3>,
}

impl Clamp {
    /// `None` when no position is fixed. `noise` is the starting point ε (B, L, V); `per_row`
    /// as in [`Clamped::per_row`].
    fn new(fixed: &[Option<u32>], per_row: &[Vec<u32>], noise: &Tensor<3>) -> Option<Self> {
        let pinned: Vec<(usize, u32)> = fixed
            .iter()
            .enumerate()
            .filter_map(|(i, id)| id.map(|id| (i, id)))
            .collect();
        if pinned.is_empty() {
            return None;
        }
        let [batch, len, vocab] = noise.dims();
        let count = pinned.len();
        let device = noise.device();
        let free: Vec<f32> = (0..len)
            .map(|i| f32::from(u8::from(fixed.get(i).is_none_or(Option::is_none))))
            .collect();
        let free = Tensor::<3>::from_data(TensorData::new(free, [1, len, 1]), &device)
            .expand([batch, len, vocab]);
        let indices: Vec<i64> = pinned.iter().map(|&(i, _)| i as i64).collect();
        let positions = Tensor::<1, Int>::from_data(TensorData::new(indices, [count]), &device);
        let (rows, ids): (usize, Vec<f32>) = if per_row.is_empty() {
            (1, pinned.iter().map(|&(_, id)| id as f32).collect())
        } else {
            let ids = per_row.iter().flatten().map(|&id| id as f32).collect();
            (per_row.len(), ids)
        };
        let ids = Tensor::<3>::from_data(TensorData::new(ids, [rows, count, 1]), &device)
            .expand([rows, count, vocab]);
        let vocabulary = Tensor::<1, Int>::arange(0..vocab as i64, &device)
            .float()
            .reshape([1, 1, vocab])
            .expand([rows, count, vocab]);
        let onehot = ids.equal(vocabulary).float().expand([batch, count, vocab]);
        Some(Self {
            free,
            noise: noise.clone().select(1, positions.clone()),
            positions,
            onehot,
        })
    }

    fn apply(&self, z: Tensor<3>, gamma: f64) -> Tensor<3> {
        let fixed = self.noise.clone() * (1.0 - gamma) as f32 + self.onehot.clone() * gamma as f32;
        // Added to zeros, so the fixed values land exactly (the last step's one-hot stays one).
        let placed = Tensor::<3>::zeros(z.dims(), &z.device()).select_assign(
            1,
            self.positions.clone(),
            fixed,
            IndexingUpdateOp::Add,
        );
        z * self.free.clone() + placed
    }
}

/// Guidance toward the fixed tokens: the gradient, with respect to the state, of the log
/// probability the model gives the fixed tokens at their own positions, the model itself
/// acting as the classifier of classifier guidance. It tells each free position which way
/// makes the prompt more likely. Costs a backward pass per step (about 3× a plain call).
struct Guide {
    /// The model on the autodiff device (its own copy of the weights).
    model: Dit,
    positions: Tensor<1, Int>,
    onehot: Tensor<3>,
    free: Tensor<3>,
}

impl Guide {
    fn new(model: &Dit, clamp: &Clamp, device: &Device) -> Self {
        use burn::module::Module;
        Self {
            model: model.clone().fork(&device.clone().autodiff()),
            positions: clamp.positions.clone(),
            onehot: clamp.onehot.clone(),
            free: clamp.free.clone(),
        }
    }

    /// The logits at `z` (without autodiff) and the gradient, zero at the fixed positions.
    fn forward(
        &self,
        z: Tensor<3>,
        tau: Tensor<1>,
        target: Option<Tensor<1>>,
    ) -> (Tensor<3>, Tensor<3>) {
        let input = Tensor::from_inner(z).require_grad();
        let logits = self.model.forward(
            input.clone(),
            Tensor::from_inner(tau),
            target.map(Tensor::from_inner),
        );
        let plain = logits.clone().inner();
        let at_fixed =
            burn::tensor::activation::log_softmax(logits.select(1, self.positions.clone()), 2);
        let log_p = (at_fixed * Tensor::from_inner(self.onehot.clone())).sum();
        let grads = log_p.backward();
        let gradient = input
            .grad(&grads)
            .expect("the state takes part in the forward pass");
        (plain, gradient * self.free.clone())
    }
}

/// The K-step Euler endpoint of `model` (an FLM) from the starting point `noise` (B, L, V):
/// the last step's denoiser output, a distribution per position (DESIGN §5). Distillation
/// trains the one-step jump toward it (DESIGN §6a); the argmax of each row is the token the
/// teacher would have sampled from this noise.
pub fn euler_endpoint(
    model: &Dit,
    noise: Tensor<3>,
    schedule: &Schedule,
    steps: usize,
    path: KernelPath,
) -> Tensor<3> {
    assert!(steps >= 1, "at least one step");
    let [batch, ..] = noise.dims();
    let device = noise.device();
    let mut z = noise;
    for step in plan(SamplerKind::Euler, schedule, steps) {
        let tau = Tensor::<1>::full([batch], step.tau as f32, &device);
        let logits = model.forward(z.clone(), tau, None);
        let coefficients = step.deterministic();
        z = sampler_step(logits, z, coefficients, 0, path).z_next;
    }
    z
}

/// Flow-map training pairs read off a teacher's Euler trajectories (DESIGN §6a).
///
/// Euler steps `z_{m+1} = keep_m·z_m + moved_m·D_m` make `z_j` an affine function of `z_i` and
/// the denoiser outputs between them, so for grid indices `i < j` the flow map from `γ_i` to
/// `γ_j` is known exactly: `X_{γ_i,γ_j}(z_i) = z_j` with the target
/// `δ = (z_j − ((1−γ_j)/(1−γ_i))·z_i)·(1−γ_i)/(γ_j−γ_i)`, a convex combination of the `D_m`
/// (a point of the simplex). `(0, K)` is the one-step jump: its target is the endpoint.
pub struct EulerPairs {
    /// Per requested pair: the point `z_i` (rows, L, V).
    pub inputs: Vec<Tensor<3>>,
    /// Per requested pair: the target `δ` (rows, L, V).
    pub targets: Vec<Tensor<3>>,
}

/// Runs `model` (an FLM) for `steps` Euler steps from `noise` (rows, L, V) and returns, for
/// each entry of `pairs` (one `(i, j)` per row, `0 ≤ i < j ≤ steps`), the inputs and targets
/// of [`EulerPairs`].
pub fn euler_pairs(
    model: &Dit,
    noise: Tensor<3>,
    schedule: &Schedule,
    steps: usize,
    pairs: &[Vec<(usize, usize)>],
    path: KernelPath,
) -> EulerPairs {
    let [rows, ..] = noise.dims();
    let device = noise.device();
    let plan = plan(SamplerKind::Euler, schedule, steps);
    let gamma = |index: usize| plan.get(index).map_or(1.0, |step| step.gamma);
    // Weight of D_m in the target of (i, j): moved_m·Π_{k=m+1}^{j−1} keep_k·(1−γ_i)/(γ_j−γ_i).
    let weight = |(i, j): (usize, usize), m: usize| -> f64 {
        if m < i || m >= j {
            return 0.0;
        }
        let kept: f64 = plan[m + 1..j].iter().map(|step| step.keep).product();
        plan[m].moved * kept * (1.0 - gamma(i)) / (gamma(j) - gamma(i))
    };
    for slot in pairs {
        assert_eq!(slot.len(), rows, "one pair per row");
        assert!(
            slot.iter().all(|&(i, j)| i < j && j <= steps),
            "pairs must satisfy 0 ≤ i < j ≤ steps"
        );
    }
    let zeros = || Tensor::<3>::zeros(noise.dims(), &device);
    let mut inputs: Vec<Tensor<3>> = pairs.iter().map(|_| zeros()).collect();
    let mut targets: Vec<Tensor<3>> = pairs.iter().map(|_| zeros()).collect();
    let mut z = noise;
    for (m, step) in plan.iter().enumerate() {
        for (slot, input) in pairs.iter().zip(inputs.iter_mut()) {
            let starts: Vec<f64> = slot
                .iter()
                .map(|&(i, _)| f64::from(u8::from(i == m)))
                .collect();
            if starts.iter().any(|&w| w > 0.0) {
                *input = input.clone() + z.clone() * per_example(&starts, &device);
            }
        }
        let tau = Tensor::<1>::full([rows], step.tau as f32, &device);
        let logits = model.forward(z.clone(), tau, None);
        let coefficients = step.deterministic();
        let denoised = burn::tensor::activation::softmax(logits.clone(), 2);
        for (slot, target) in pairs.iter().zip(targets.iter_mut()) {
            let weights: Vec<f64> = slot.iter().map(|&pair| weight(pair, m)).collect();
            if weights.iter().any(|&w| w > 0.0) {
                *target = target.clone() + denoised.clone() * per_example(&weights, &device);
            }
        }
        z = sampler_step(logits, z, coefficients, 0, path).z_next;
    }
    EulerPairs { inputs, targets }
}

/// Collects per-step statistics; only (B, L, k) numbers ever leave the device.
pub struct TrajectoryRecorder {
    trajectory: Option<Trajectory>,
    batch: usize,
    seq_len: usize,
}

impl TrajectoryRecorder {
    pub fn new(settings: &SamplerSettings, vocab: usize, sampler: &str, eta: f32) -> Self {
        let trajectory = (settings.top_k > 0).then(|| Trajectory {
            sampler: sampler.to_string(),
            steps: settings.steps,
            seed: settings.seed,
            eta,
            seq_len: settings.seq_len,
            vocab_size: vocab,
            top_k: settings.top_k.min(vocab).min(MAX_TOP_K),
            fixed: Vec::new(),
            taus: Vec::new(),
            gammas: Vec::new(),
            samples: vec![
                SampleTrajectory {
                    frames: Vec::new(),
                    tokens: Vec::new()
                };
                settings.batch
            ],
        });
        Self {
            trajectory,
            batch: settings.batch,
            seq_len: settings.seq_len,
        }
    }

    /// Candidates per position to compute: 0 when nothing is recorded.
    pub fn top_k(&self) -> usize {
        self.trajectory.as_ref().map_or(0, |t| t.top_k)
    }

    /// Records one step from the per-row statistics of the fused sampler step
    /// (`kernels::sampler_step`): only these (B·L, 2 + 2k) numbers are read back.
    pub fn record(&mut self, stats: Tensor<2>, tau: f64, gamma: f64) {
        let Some(trajectory) = self.trajectory.as_mut() else {
            return;
        };
        let k = trajectory.top_k;
        let width = 2 + 2 * k;
        let values = read_f32(stats);
        trajectory.taus.push(tau);
        trajectory.gammas.push(gamma);
        for (b, sample) in trajectory.samples.iter_mut().enumerate().take(self.batch) {
            let rows = &values[b * self.seq_len * width..(b + 1) * self.seq_len * width];
            let mut frame = Frame {
                argmax: Vec::with_capacity(self.seq_len),
                max_prob: Vec::with_capacity(self.seq_len),
                entropy: Vec::with_capacity(self.seq_len),
                flipped: Vec::with_capacity(self.seq_len),
                top_ids: Vec::with_capacity(self.seq_len * k),
                top_probs: Vec::with_capacity(self.seq_len * k),
            };
            for (position, row) in rows.chunks_exact(width).enumerate() {
                let ids = row[2..2 + k].iter().map(|&id| id as u32);
                frame.entropy.push(row[0]);
                frame.max_prob.push(row[1]);
                frame.argmax.push(row[2] as u32);
                frame.flipped.push(
                    sample
                        .frames
                        .last()
                        .is_some_and(|previous| previous.argmax[position] != row[2] as u32),
                );
                frame.top_ids.extend(ids);
                frame.top_probs.extend_from_slice(&row[2 + k..]);
            }
            sample.frames.push(frame);
        }
    }

    pub fn finish(self, tokens: &[Vec<u32>]) -> Option<Trajectory> {
        let mut trajectory = self.trajectory?;
        for (sample, tokens) in trajectory.samples.iter_mut().zip(tokens) {
            sample.tokens = tokens.clone();
        }
        Some(trajectory)
    }
}

fn read_f32<const D: usize>(tensor: Tensor<D>) -> Vec<f32> {
    tensor
        .into_data()
        .convert::<f32>()
        .try_into_vec()
        .expect("float tensor")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::cpu_device;

    fn read(t: Tensor<3>) -> Vec<f32> {
        t.into_data().convert::<f32>().try_into_vec().unwrap()
    }

    #[test]
    fn the_clamp_puts_fixed_positions_on_their_forward_process() {
        let device = cpu_device();
        let (batch, len, vocab) = (2, 3, 4);
        let values = |offset: f32| -> Vec<f32> {
            (0..batch * len * vocab)
                .map(|i| i as f32 * 0.1 + offset)
                .collect()
        };
        let tensor =
            |v: Vec<f32>| Tensor::<3>::from_data(TensorData::new(v, [batch, len, vocab]), &device);
        let (noise, z) = (values(-1.0), values(5.0));
        let fixed = [Some(1), None, Some(3)];
        assert!(Clamp::new(&[None, None], &[], &tensor(noise.clone())).is_none());
        // Shared tokens, then a different pair of tokens in each row.
        let per_row = [vec![2, 0], vec![1, 3]];
        for rows in [&[][..], &per_row[..]] {
            let clamp = Clamp::new(&fixed, rows, &tensor(noise.clone())).expect("fixed positions");
            for gamma in [0.0, 0.3, 1.0] {
                let out = read(clamp.apply(tensor(z.clone()), gamma));
                for (i, &v) in out.iter().enumerate() {
                    let (row, position, token) = (i / (len * vocab), (i / vocab) % len, i % vocab);
                    let id = match (fixed[position], rows.get(row)) {
                        (None, _) => None,
                        (Some(_), Some(ids)) => Some(ids[usize::from(position == 2)]),
                        (Some(id), None) => Some(id),
                    };
                    let want = match id {
                        Some(id) => {
                            let onehot = if token == id as usize { 1.0 } else { 0.0 };
                            (1.0 - gamma as f32) * noise[i] + gamma as f32 * onehot
                        }
                        None => z[i],
                    };
                    assert!(
                        (v - want).abs() < 1e-6,
                        "rows {rows:?} γ {gamma} element {i}: {v} vs {want}"
                    );
                }
            }
        }
    }

    #[test]
    fn guidance_is_the_gradient_of_the_fixed_tokens_log_probability() {
        let device = cpu_device();
        let (vocab, len) = (7, 5);
        let config = crate::model::tests_support::small_config(vocab, len);
        let model = crate::model::tests_support::perturbed(Dit::new(&config, 3, &device), 2);
        let z = Tensor::<3>::from_data(
            TensorData::new(
                (0..len * vocab)
                    .map(|i| ((i * 37 % 11) as f32 - 5.0) * 0.2)
                    .collect::<Vec<_>>(),
                [1, len, vocab],
            ),
            &device,
        );
        let fixed = [None, Some(4)];
        let clamp = Clamp::new(&fixed, &[], &z).unwrap();
        let guide = Guide::new(&model, &clamp, &device);
        let tau = || Tensor::<1>::full([1], 0.4, &device);
        let (logits, gradient) = guide.forward(z.clone(), tau(), None);
        let plain = model.forward(z.clone(), tau(), None);
        assert!(
            read(logits.clone())
                .iter()
                .zip(read(plain))
                .all(|(a, b)| (a - b).abs() < 1e-5)
        );
        let gradient = read(gradient);
        let at = |position: usize, token: usize| gradient[position * vocab + token];
        assert!(
            (0..vocab).all(|token| at(1, token) == 0.0),
            "fixed position: {gradient:?}"
        );
        // A finite difference along the gradient raises log p(token 4 at position 1).
        let log_p = |state: Tensor<3>| {
            let logits = model.forward(state, tau(), None);
            let log_probs = burn::tensor::activation::log_softmax(logits, 2);
            read(log_probs)[vocab + 4]
        };
        let norm: f32 = gradient.iter().map(|g| g * g).sum::<f32>().sqrt();
        assert!(
            norm > 1e-6,
            "the free positions move the fixed token's probability"
        );
        let step = Tensor::<3>::from_data(
            TensorData::new(
                gradient.iter().map(|g| g / norm * 1e-2).collect::<Vec<_>>(),
                [1, len, vocab],
            ),
            &device,
        );
        let (before, after) = (log_p(z.clone()), log_p(z + step));
        let expected = 1e-2 * norm;
        assert!(
            ((after - before) - expected).abs() < 0.2 * expected,
            "log p rose by {} where the gradient says {expected}",
            after - before
        );
    }

    #[test]
    fn every_plan_ends_at_gamma_one() {
        let schedule = Schedule::new(30).unwrap();
        for kind in [
            SamplerKind::Euler,
            SamplerKind::FlowMap { eta: 0.0 },
            SamplerKind::FlowMap { eta: 0.8 },
        ] {
            for steps in [1, 2, 7] {
                let plan = plan(kind, &schedule, steps);
                assert_eq!(plan.last().unwrap().next_gamma, 1.0);
                for pair in plan.windows(2) {
                    assert!((pair[0].next_gamma - pair[1].gamma).abs() < 1e-12);
                }
            }
        }
    }
}
