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

use burn::module::Module;
use burn::tensor::activation::{log_softmax, softmax};
use burn::tensor::{Device, Int, Tensor, TensorData};
use rand_chacha::ChaCha8Rng;

use super::flow_map::{GroupFractions, TimePairs, flow_map, per_example, semigroup_weight};
use super::schedule::Schedule;
use crate::kernels::KernelPath;
use crate::kernels::noisy_input::noisy_input;
use crate::model::Dit;
use rand::RngCore;

/// What a flow-map student is distilled toward.
pub struct FlowMapObjective {
    /// The frozen FLM whose denoiser is the diagonal target (on the base device, no
    /// gradients). `None` self-distills: diagonal targets are the clean one-hots.
    pub teacher: Option<Dit>,
    pub fractions: GroupFractions,
}

/// The loss of one batch and its split by group (group means are `None` for an empty group).
pub struct DistillLoss {
    /// Mean over all examples; on the student's device (autodiff when training).
    pub loss: Tensor<1>,
    pub diagonal: Option<f64>,
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
        let pairs = TimePairs::draw(rng, examples, self.fractions, schedule);
        let x_s = noisy_input(
            tokens,
            &pairs.gamma_s,
            seq_len,
            vocab,
            rng.next_u64(),
            KernelPath::Auto,
            base_device,
        );
        let targets = self.targets(&student.valid(), &x_s, tokens, &pairs, seq_len);

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
        let split = pairs.diagonal_count();
        let mean = |xs: &[f32]| {
            (!xs.is_empty()).then(|| xs.iter().map(|&v| v as f64).sum::<f64>() / xs.len() as f64)
        };
        DistillLoss {
            loss: per_example.mean(),
            diagonal: mean(&values[..split]),
            off_diagonal: mean(&values[split..]),
        }
    }

    /// Soft targets (B, L, V) for every example, rows in the order of `pairs`.
    fn targets(
        &self,
        student: &Dit,
        x_s: &Tensor<3>,
        tokens: &[u32],
        pairs: &TimePairs,
        seq_len: usize,
    ) -> Tensor<3> {
        let device = x_s.device();
        let [examples, _, vocab] = x_s.dims();
        let split = pairs.diagonal_count();
        let mut parts = Vec::with_capacity(2);
        if split > 0 {
            let diagonal = match &self.teacher {
                Some(teacher) => {
                    let x = x_s.clone().slice(0..split);
                    let logits =
                        teacher.forward(x, times_tensor(&pairs.tau_s[..split], &device), None);
                    softmax(logits, 2)
                }
                None => {
                    let ids: Vec<i64> = tokens[..split * seq_len]
                        .iter()
                        .map(|&t| t as i64)
                        .collect();
                    Tensor::<2, Int>::from_data(TensorData::new(ids, [split, seq_len]), &device)
                        .one_hot::<3>(vocab)
                        .float()
                }
            };
            parts.push(diagonal);
        }
        if split < examples {
            let rows = split..examples;
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
            parts.push(
                first * per_example(&lambda, &device) + second * per_example(&one_minus, &device),
            );
        }
        Tensor::cat(parts, 0)
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
    use crate::flow::noise::stream_rng;

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
    fn a_student_copied_from_its_teacher_has_zero_diagonal_loss() {
        let device = crate::device::cpu_device();
        let config = crate::model::tests_support::small_config(11, 6);
        // A fresh model predicts uniform; perturb it so the check is not trivial.
        let teacher = crate::model::tests_support::perturbed(Dit::new(&config, 3, &device), 4);
        let student = teacher.clone().with_second_time(5);
        let objective = FlowMapObjective {
            teacher: Some(teacher),
            fractions: GroupFractions::with_diagonal(1.0),
        };
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
