//! FMLM distillation by the semigroup method (DESIGN §6).
//!
//! A batch is split into diagonal examples (`s = t`, trained toward the frozen teacher's
//! denoiser, or toward the clean data when self-distilling) and off-diagonal ones (`s < t`,
//! trained toward the student's own two half-jumps `s→u→t`). Targets are computed without
//! gradient; the student is trained by soft-label cross-entropy against them.
//!
//! The loss reported is that cross-entropy minus the (constant) entropy of the targets, i.e.
//! `KL(target ‖ student)`: the gradient is the same, and the number reads 0 when the student
//! is a perfect flow map of its teacher, which makes curves comparable across corpora.

use std::sync::Mutex;

use burn::module::Module;
use burn::tensor::activation::{log_softmax, softmax};
use burn::tensor::{Device, Int, Tensor, TensorData};
use rand::RngCore;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::endpoints::EndpointPool;
use super::flow_map::{
    GroupFractions, PairKind, TimePairs, TimeSampling, flow_map, per_example, semigroup_weight,
};
use super::schedule::Schedule;
use crate::kernels::KernelPath;
use crate::kernels::noisy_input::noisy_input;
use crate::model::Dit;

/// What the boundary pairs `(s = 0, t = 1)` — the one-step jump itself — are trained toward.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum BoundaryTarget {
    /// The student's own two half-jumps, like any off-diagonal pair (the paper's).
    #[default]
    Semigroup,
    /// The frozen teacher's K-step Euler endpoint from the same noise (DESIGN §6a).
    Teacher,
}

/// How the second time embedder of a fresh student starts. Its output layer is zero either
/// way, so the student equals its teacher at step 0 (DESIGN §6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum SecondTimeInit {
    /// A fresh random hidden layer.
    #[default]
    Random,
    /// The hidden layer of the first (trained) time embedder.
    Teacher,
}

/// Every choice of a flow-map training run (DESIGN §6, §6a). A field missing from an older
/// `config.json` takes the paper's value, so old runs resume as they were started;
/// [`DistillSettings::recommended`] is what new runs get.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DistillSettings {
    pub fractions: GroupFractions,
    #[serde(default)]
    pub boundary_target: BoundaryTarget,
    /// Euler steps K of the teacher's endpoint, with [`BoundaryTarget::Teacher`].
    #[serde(default = "default_teacher_steps")]
    pub teacher_steps: usize,
    /// How many times each teacher endpoint is used on average (1: every one is fresh; see
    /// `flow::endpoints`).
    #[serde(default = "default_endpoint_reuse")]
    pub endpoint_reuse: usize,
    /// Rows read off each fresh teacher trajectory: its jump `(0, 1)`, then random pairs of
    /// its grid, whose flow-map targets are exact too (`flow::sampler::euler_pairs`).
    #[serde(default = "default_teacher_pairs")]
    pub teacher_pairs: usize,
    #[serde(default)]
    pub times: TimeSampling,
    #[serde(default)]
    pub second_time_init: SecondTimeInit,
}

fn default_teacher_steps() -> usize {
    16
}

fn default_endpoint_reuse() -> usize {
    1
}

fn default_teacher_pairs() -> usize {
    1
}

impl DistillSettings {
    /// The paper's semigroup recipe with a diagonal share `diagonal`.
    pub fn paper(diagonal: f64) -> Self {
        Self {
            fractions: GroupFractions::with_diagonal(diagonal),
            boundary_target: BoundaryTarget::Semigroup,
            teacher_steps: default_teacher_steps(),
            endpoint_reuse: default_endpoint_reuse(),
            teacher_pairs: default_teacher_pairs(),
            times: TimeSampling::default(),
            second_time_init: SecondTimeInit::Random,
        }
    }

    /// What `flm distill` and the app use unless told otherwise: three quarters of each batch
    /// on the one-step jump toward the teacher's 8-step Euler endpoint from the same noise,
    /// one quarter on the diagonal, nothing off-diagonal. On `builtin:repeat` after 800 steps it
    /// doubles the paper recipe's one-step validity (58.6% against 35.5%) and keeps 2- to 8-step
    /// sampling at least as good; docs/distillation.md has the table and the runs behind it.
    pub fn recommended() -> Self {
        Self {
            fractions: GroupFractions {
                diagonal: 0.25,
                boundary: 0.75,
            },
            boundary_target: BoundaryTarget::Teacher,
            teacher_steps: 8,
            ..Self::paper(0.25)
        }
    }

    /// Checks the settings, `has_teacher` saying whether the run distills a trained FLM.
    pub fn validate(&self, has_teacher: bool) -> Result<(), String> {
        self.fractions.validate()?;
        self.times.validate()?;
        if !(1..=64).contains(&self.endpoint_reuse) {
            return Err(format!(
                "endpoint reuse must be in 1..=64, got {}",
                self.endpoint_reuse
            ));
        }
        if !(1..=16).contains(&self.teacher_pairs) {
            return Err(format!(
                "teacher pairs per trajectory must be in 1..=16, got {}",
                self.teacher_pairs
            ));
        }
        if self.teacher_pairs > 1 && self.endpoint_reuse > 1 {
            return Err(
                "trajectory pairs need the whole teacher path, so they are never reused: \
                 use --endpoint-reuse 1 with --teacher-pairs above 1"
                    .into(),
            );
        }
        if !(1..=1024).contains(&self.teacher_steps) {
            return Err(format!(
                "the teacher's Euler steps must be in 1..=1024, got {}",
                self.teacher_steps
            ));
        }
        if !has_teacher && self.boundary_target == BoundaryTarget::Teacher {
            return Err(
                "teacher endpoints need a teacher: self-distillation (`flm train --flow-map`) \
                 trains the boundary pairs with semigroup targets"
                    .into(),
            );
        }
        if !has_teacher && self.second_time_init == SecondTimeInit::Teacher {
            return Err(
                "a self-distilled flow map has no teacher to copy a time embedder from".into(),
            );
        }
        Ok(())
    }
}

/// What a flow-map student is distilled toward.
pub struct FlowMapObjective {
    /// The frozen FLM whose denoiser is the diagonal target (on the base device, no
    /// gradients). `None` self-distills: diagonal targets are the clean one-hots.
    pub teacher: Option<Dit>,
    pub settings: DistillSettings,
    /// Teacher endpoints for the boundary rows (with [`BoundaryTarget::Teacher`]).
    endpoints: Mutex<EndpointPool>,
}

impl FlowMapObjective {
    pub fn new(teacher: Option<Dit>, settings: DistillSettings) -> Self {
        let endpoints = EndpointPool::new(
            settings.endpoint_reuse,
            settings.teacher_steps,
            settings.teacher_pairs,
        );
        Self {
            teacher,
            settings,
            endpoints: Mutex::new(endpoints),
        }
    }
}

/// The loss of one batch and its split by group (group means are `None` for an empty group).
pub struct DistillLoss {
    /// Mean over all examples; on the student's device (autodiff when training).
    pub loss: Tensor<1>,
    pub diagonal: Option<f64>,
    pub boundary: Option<f64>,
    pub off_diagonal: Option<f64>,
}

/// One distillation batch: clean tokens and everything drawn for them.
pub struct DistillBatch<'a> {
    /// B·L token ids.
    pub tokens: &'a [u32],
    pub seq_len: usize,
    pub vocab: usize,
}

impl FlowMapObjective {
    /// Draws times and noise from `rng` and returns the student's loss.
    ///
    /// `student` may live on an autodiff device (training) or not (validation); targets are
    /// always computed on `base_device` from `student.valid()` and the teacher.
    pub fn loss(
        &self,
        student: &Dit,
        batch: DistillBatch<'_>,
        rng: &mut ChaCha8Rng,
        schedule: &Schedule,
        base_device: &Device,
    ) -> DistillLoss {
        let DistillBatch {
            tokens,
            seq_len,
            vocab,
        } = batch;
        let examples = tokens.len() / seq_len;
        let mut pairs = TimePairs::draw(
            rng,
            examples,
            self.settings.fractions,
            self.settings.times,
            schedule,
        );
        let x_s = noisy_input(
            tokens,
            &pairs.gamma_s,
            seq_len,
            vocab,
            rng.next_u64(),
            KernelPath::Auto,
            base_device,
        );
        // Boundary rows with teacher targets start from the teacher's own noise (or points of
        // its trajectories), whose targets are known; they take those rows' times.
        let boundary =
            pairs.diagonal_count()..pairs.diagonal_count() + pairs.count(PairKind::Boundary);
        let (x_s, endpoints) = match (&self.teacher, self.settings.boundary_target) {
            (Some(teacher), BoundaryTarget::Teacher) if !boundary.is_empty() => {
                let rows = self
                    .endpoints
                    .lock()
                    .expect("the endpoint pool is never left half-updated")
                    .take(boundary.len(), seq_len, teacher, schedule, rng, base_device);
                pairs.set_times(boundary.clone(), &rows.tau_s, &rows.tau_t, schedule);
                let x_s = x_s.slice_assign([boundary, 0..seq_len, 0..vocab], rows.noise);
                (x_s, Some(rows.targets))
            }
            _ => (x_s, None),
        };
        let targets = self.targets(&student.valid(), &x_s, tokens, &pairs, seq_len, endpoints);

        let student_device = student.embedding.val().device();
        let on_student = |t: Tensor<3>| -> Tensor<3> {
            if student_device.is_autodiff() {
                Tensor::from_inner(t)
            } else {
                t
            }
        };
        let logits = student.forward(
            on_student(x_s),
            times_tensor(&pairs.tau_s, &student_device),
            Some(times_tensor(&pairs.tau_t, &student_device)),
        );
        let per_example = kl_per_example(on_student(targets), logits);
        let values: Vec<f32> = per_example
            .clone()
            .inner()
            .into_data()
            .convert::<f32>()
            .try_into_vec()
            .expect("float losses");
        let mean_of = |kind: PairKind| {
            let picked: Vec<f64> = values
                .iter()
                .zip(&pairs.kinds)
                .filter(|&(_, &k)| k == kind)
                .map(|(&v, _)| v as f64)
                .collect();
            (!picked.is_empty()).then(|| picked.iter().sum::<f64>() / picked.len() as f64)
        };
        DistillLoss {
            loss: per_example.mean(),
            diagonal: mean_of(PairKind::Diagonal),
            boundary: mean_of(PairKind::Boundary),
            off_diagonal: mean_of(PairKind::OffDiagonal),
        }
    }

    /// Soft targets (B, L, V) for every example, rows in the order of `pairs` (diagonal,
    /// boundary, off-diagonal).
    fn targets(
        &self,
        student: &Dit,
        x_s: &Tensor<3>,
        tokens: &[u32],
        pairs: &TimePairs,
        seq_len: usize,
        endpoints: Option<Tensor<3>>,
    ) -> Tensor<3> {
        let device = x_s.device();
        let [examples, _, vocab] = x_s.dims();
        let diagonal = pairs.diagonal_count();
        let boundary_end = diagonal + pairs.count(PairKind::Boundary);
        let mut parts = Vec::with_capacity(3);
        if diagonal > 0 {
            parts.push(match &self.teacher {
                Some(teacher) => {
                    let x = x_s.clone().slice(0..diagonal);
                    let logits =
                        teacher.forward(x, times_tensor(&pairs.tau_s[..diagonal], &device), None);
                    softmax(logits, 2)
                }
                None => {
                    let ids: Vec<i64> = tokens[..diagonal * seq_len]
                        .iter()
                        .map(|&t| t as i64)
                        .collect();
                    Tensor::<2, Int>::from_data(TensorData::new(ids, [diagonal, seq_len]), &device)
                        .one_hot::<3>(vocab)
                        .float()
                }
            });
        }
        // Boundary rows with known teacher endpoints; otherwise they are semigroup rows.
        let semigroup_start = match endpoints {
            Some(endpoints) => {
                parts.push(endpoints);
                boundary_end
            }
            None => diagonal,
        };
        if semigroup_start < examples {
            parts.push(self.semigroup_targets(student, x_s, pairs, semigroup_start..examples));
        }
        Tensor::cat(parts, 0)
    }

    /// `λ·δ̂_{s,u}(x_s) + (1−λ)·δ̂_{u,t}(X_{s,u}(x_s))` for the examples in `rows` (DESIGN §6).
    fn semigroup_targets(
        &self,
        student: &Dit,
        x_s: &Tensor<3>,
        pairs: &TimePairs,
        rows: std::ops::Range<usize>,
    ) -> Tensor<3> {
        let device = x_s.device();
        let (s, u, t) = (
            &pairs.gamma_s[rows.clone()],
            &pairs.gamma_u[rows.clone()],
            &pairs.gamma_t[rows.clone()],
        );
        let x = x_s.clone().slice(rows.clone());
        let first = softmax(
            student.forward(
                x.clone(),
                times_tensor(&pairs.tau_s[rows.clone()], &device),
                Some(times_tensor(&pairs.tau_u[rows.clone()], &device)),
            ),
            2,
        );
        let x_u = flow_map(x, first.clone(), s, u);
        let second = softmax(
            student.forward(
                x_u,
                times_tensor(&pairs.tau_u[rows.clone()], &device),
                Some(times_tensor(&pairs.tau_t[rows], &device)),
            ),
            2,
        );
        let lambda: Vec<f64> = (0..s.len())
            .map(|i| semigroup_weight(s[i], u[i], t[i]))
            .collect();
        let one_minus: Vec<f64> = lambda.iter().map(|l| 1.0 - l).collect();
        first * per_example(&lambda, &device) + second * per_example(&one_minus, &device)
    }
}

/// `KL(target ‖ softmax(logits))` per example, averaged over positions: (B,).
fn kl_per_example(targets: Tensor<3>, logits: Tensor<3>) -> Tensor<1> {
    let [examples, len, _] = targets.dims();
    // 0·log 0 = 0: the tiny floor only guards the log of exact zeros (one-hot targets).
    let target_log = targets.clone().clamp_min(1e-30).log();
    let gap = targets * (target_log - log_softmax(logits, 2));
    gap.sum_dim(2)
        .reshape([examples, len])
        .mean_dim(1)
        .reshape([examples])
}

fn times_tensor(taus: &[f64], device: &Device) -> Tensor<1> {
    let values: Vec<f32> = taus.iter().map(|&t| t as f32).collect();
    Tensor::from_data(TensorData::new(values, [taus.len()]), device)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::stream_rng;

    #[test]
    fn kl_is_zero_for_matching_distributions_and_positive_otherwise() {
        let device = crate::device::cpu_device();
        let logits = Tensor::<3>::from_data(
            TensorData::new(vec![0.5f32, -1.0, 2.0, 0.0, 0.0, 3.0], [1, 2, 3]),
            &device,
        );
        let same = kl_per_example(softmax(logits.clone(), 2), logits.clone());
        assert!(same.into_scalar::<f32>().abs() < 1e-6);
        let onehot = Tensor::<3>::from_data(
            TensorData::new(vec![1.0f32, 0.0, 0.0, 0.0, 0.0, 1.0], [1, 2, 3]),
            &device,
        );
        let gap: f32 = kl_per_example(onehot, logits).into_scalar();
        assert!(gap > 0.1, "{gap}");
    }

    #[test]
    fn the_teachers_endpoint_is_its_euler_sample_from_the_same_noise() {
        use crate::flow::sampler::{
            SamplerKind, SamplerSettings, argmax_tokens, euler_endpoint, initial_noise, sample,
        };
        let device = crate::device::cpu_device();
        let (vocab, seq_len, steps) = (13, 5, 4);
        let teacher = crate::model::tests_support::teacher(vocab, seq_len);
        let schedule = Schedule::new(vocab).unwrap();
        // The sampler's own starting noise and result, through its own code path.
        let sampler = SamplerSettings {
            steps,
            seed: 17,
            stream: 0,
            batch: 6,
            seq_len,
            top_k: 0,
            decoding: Default::default(),
        };
        let noise = initial_noise(&sampler, vocab, &device);
        let sampled = sample(&teacher, SamplerKind::Euler, &schedule, &sampler, &device).tokens;
        let endpoint = euler_endpoint(&teacher, noise, &schedule, steps, KernelPath::Auto);
        assert_eq!(argmax_tokens(endpoint.clone()), sampled);
        // Distributions, not logits: each row sums to one.
        let sums: Vec<f32> = endpoint.sum_dim(2).into_data().try_into_vec().unwrap();
        assert!(sums.iter().all(|s| (s - 1.0).abs() < 1e-4), "{sums:?}");
    }

    #[test]
    fn boundary_rows_are_trained_toward_teacher_endpoints_from_their_own_noise() {
        let device = crate::device::cpu_device();
        let (vocab, seq_len, rows, steps) = (13, 5, 6, 3);
        let teacher = crate::model::tests_support::teacher(vocab, seq_len);
        let student = teacher.clone().with_second_time(5);
        let schedule = Schedule::new(vocab).unwrap();
        let settings = DistillSettings {
            fractions: GroupFractions {
                diagonal: 0.0,
                boundary: 1.0,
            },
            boundary_target: BoundaryTarget::Teacher,
            teacher_steps: steps,
            ..DistillSettings::paper(0.0)
        };
        let objective = FlowMapObjective::new(Some(teacher.clone()), settings.clone());
        let tokens = vec![4u32; rows * seq_len];
        let batch = || DistillBatch {
            tokens: &tokens,
            seq_len,
            vocab,
        };
        let rng = stream_rng(2, 0);
        let loss = objective.loss(&student, batch(), &mut rng.clone(), &schedule, &device);

        // The same draws by hand: times, the batch's noise seed, then a fresh pool's rows.
        let mut replay = rng.clone();
        let pairs = TimePairs::draw(
            &mut replay,
            rows,
            settings.fractions,
            settings.times,
            &schedule,
        );
        assert_eq!(pairs.count(PairKind::Boundary), rows);
        replay.next_u64();
        let expected_rows = EndpointPool::new(1, steps, 1).take(
            rows,
            seq_len,
            &teacher,
            &schedule,
            &mut replay,
            &device,
        );
        let full = |v: f32| Tensor::<1>::full([rows], v, &device);
        let logits = student.forward(expected_rows.noise, full(0.0), Some(full(1.0)));
        let expected: f32 = kl_per_example(expected_rows.targets, logits)
            .mean()
            .into_scalar();
        let got = loss.boundary.expect("boundary rows");
        assert!((got - expected as f64).abs() < 1e-5, "{got} vs {expected}");
        assert!(
            got > 1e-3,
            "a fresh student is not yet its teacher's endpoint map"
        );

        // The paper's semigroup target is something else.
        let paper = FlowMapObjective::new(
            Some(teacher),
            DistillSettings {
                boundary_target: BoundaryTarget::Semigroup,
                ..settings
            },
        );
        let semigroup = paper.loss(&student, batch(), &mut rng.clone(), &schedule, &device);
        assert!((semigroup.boundary.unwrap() - got).abs() > 1e-4);
    }

    #[test]
    fn the_recommended_recipe_is_valid_only_with_a_teacher() {
        let recommended = DistillSettings::recommended();
        assert_eq!(recommended.validate(true), Ok(()));
        assert!(recommended.validate(false).is_err());
        assert_ne!(recommended, DistillSettings::paper(0.5));
    }

    #[test]
    fn teacher_endpoints_need_a_teacher() {
        let settings = DistillSettings {
            boundary_target: BoundaryTarget::Teacher,
            ..DistillSettings::paper(0.5)
        };
        assert!(settings.validate(true).is_ok());
        assert!(settings.validate(false).is_err());
        let settings = DistillSettings {
            teacher_steps: 0,
            ..settings
        };
        assert!(settings.validate(true).is_err());
    }

    #[test]
    fn settings_missing_from_an_old_config_read_as_the_papers() {
        let old = r#"{"fractions": {"diagonal": 0.5, "boundary": 0.015625}}"#;
        let settings: DistillSettings = serde_json::from_str(old).unwrap();
        assert_eq!(settings, DistillSettings::paper(0.5));
    }

    #[test]
    fn a_student_copied_from_its_teacher_has_zero_diagonal_loss() {
        let device = crate::device::cpu_device();
        let config = crate::model::tests_support::small_config(11, 6);
        // A fresh model predicts uniform; perturb it so the check is not trivial.
        let teacher = crate::model::tests_support::perturbed(Dit::new(&config, 3, &device), 4);
        let student = teacher.clone().with_second_time(5);
        let objective = FlowMapObjective::new(Some(teacher), DistillSettings::paper(1.0));
        let schedule = Schedule::new(11).unwrap();
        let tokens: Vec<u32> = (0..4 * 6).map(|i| (i * 7 % 11) as u32).collect();
        let batch = DistillBatch {
            tokens: &tokens,
            seq_len: 6,
            vocab: 11,
        };
        let loss = objective.loss(&student, batch, &mut stream_rng(1, 1), &schedule, &device);
        assert!(loss.diagonal.unwrap().abs() < 1e-5, "{:?}", loss.diagonal);
        assert!(loss.off_diagonal.is_none());
    }
}
