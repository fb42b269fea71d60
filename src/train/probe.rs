//! What a flow-map run measures of its student at every validation (DESIGN §6a): the one-step
//! jump from fixed noise, scored against the task's rules (built-in tasks) or against the
//! teacher's own K-step samples from the same noise (text). Written to `metrics.jsonl` beside
//! the validation loss, so a run shows whether one-step generation improves, not only whether
//! the loss falls.

use burn::tensor::activation::{log_softmax, softmax};
use burn::tensor::{Device, Int, Tensor, TensorData};

use crate::data::DataSource;
use crate::flow::Schedule;
use crate::flow::sampler::{
    SamplerKind, SamplerSettings, argmax_tokens, euler_endpoint, initial_noise, sample,
};
use crate::kernels::KernelPath;
use crate::model::Dit;

/// Noise seed of the probe's samples: fixed, so successive validations are comparable.
const PROBE_SEED: u64 = 4321;
/// Samples per probe: enough for a validity share on built-in tasks, fewer for text.
const TASK_SAMPLES: usize = 64;
const TEXT_SAMPLES: usize = 16;

/// The fixed noise and, for distillation, the teacher's endpoint from it.
pub struct FlowMapProbe {
    sampler: SamplerSettings,
    /// The teacher's K-step sample from the probe noise (tokens), with its validity share on
    /// built-in tasks; `None` when self-distilling.
    teacher_tokens: Option<Vec<Vec<u32>>>,
    teacher_valid: Option<f64>,
}

impl FlowMapProbe {
    /// Samples the teacher once (it is frozen, so its endpoints never change).
    pub fn new(
        teacher: Option<&Dit>,
        teacher_steps: usize,
        data: &DataSource,
        schedule: &Schedule,
        device: &Device,
    ) -> Self {
        let samples = if data.task().is_some() {
            TASK_SAMPLES
        } else {
            TEXT_SAMPLES
        };
        let sampler = SamplerSettings {
            steps: 1,
            seed: PROBE_SEED,
            stream: 0,
            batch: samples,
            seq_len: data.seq_len(),
            top_k: 0,
            decoding: Default::default(),
        };
        let teacher_tokens = teacher.map(|teacher| {
            let noise = initial_noise(&sampler, teacher.vocab_size(), device);
            argmax_tokens(euler_endpoint(
                teacher,
                noise,
                schedule,
                teacher_steps,
                KernelPath::Auto,
            ))
        });
        let teacher_valid = teacher_tokens
            .as_ref()
            .and_then(|tokens| valid_share(data, tokens));
        Self {
            sampler,
            teacher_tokens,
            teacher_valid,
        }
    }

    /// Named measurements of `student` (a flow map, no autodiff).
    pub fn measure(
        &self,
        student: &Dit,
        data: &DataSource,
        schedule: &Schedule,
        device: &Device,
    ) -> Vec<(&'static str, f64)> {
        let noise = initial_noise(&self.sampler, student.vocab_size(), device);
        let batch = self.sampler.batch;
        let full = |value: f32| Tensor::<1>::full([batch], value, device);
        let logits = student.forward(noise, full(0.0), Some(full(1.0)));
        let probs = softmax(logits.clone(), 2);
        let top_prob: f64 = probs.clone().max_dim(2).mean().into_scalar::<f32>() as f64;
        let one_step = argmax_tokens(probs);

        let mut measured = vec![("one_step_top_prob", top_prob)];
        if let Some(share) = valid_share(data, &one_step) {
            let two_step = sample(
                student,
                SamplerKind::FlowMap { eta: 0.0 },
                schedule,
                &SamplerSettings {
                    steps: 2,
                    ..self.sampler.clone()
                },
                device,
            )
            .tokens;
            measured.push(("one_step_valid", share));
            measured.push(("one_step_agreement", agreement(&one_step)));
            measured.push((
                "two_step_valid",
                valid_share(data, &two_step).unwrap_or(0.0),
            ));
        }
        if let Some(teacher) = &self.teacher_tokens {
            let [_, len, _] = logits.dims();
            let ids: Vec<i64> = teacher.iter().flatten().map(|&t| t as i64).collect();
            let targets = Tensor::<2, Int>::from_data(TensorData::new(ids, [batch, len]), device);
            let picked = log_softmax(logits, 2).gather(2, targets.unsqueeze_dim::<3>(2));
            let ce = -(picked.mean().into_scalar::<f32>() as f64);
            measured.push(("one_step_ce_vs_teacher", ce));
            let matching = one_step
                .iter()
                .flatten()
                .zip(teacher.iter().flatten())
                .filter(|(a, b)| a == b)
                .count();
            measured.push((
                "one_step_teacher_match",
                matching as f64 / (batch * len) as f64,
            ));
        }
        if let Some(share) = self.teacher_valid {
            measured.push(("teacher_endpoint_valid", share));
        }
        measured
    }
}

/// Share of `samples` that are valid, for built-in tasks (`None` for text).
fn valid_share(data: &DataSource, samples: &[Vec<u32>]) -> Option<f64> {
    let checks: Vec<bool> = samples.iter().filter_map(|s| data.is_valid(s)).collect();
    (!checks.is_empty()).then(|| checks.iter().filter(|&&v| v).count() as f64 / checks.len() as f64)
}

/// Mean share of a sample's positions that hold its most common token: 1 when every position
/// agrees (what `repeat` asks), about 1/V for independent positions.
pub fn agreement(samples: &[Vec<u32>]) -> f64 {
    if samples.is_empty() {
        return 0.0;
    }
    let shares = samples.iter().map(|sample| {
        let mut counts = std::collections::HashMap::new();
        for &id in sample {
            *counts.entry(id).or_insert(0usize) += 1;
        }
        let most = counts.values().copied().max().unwrap_or(0);
        most as f64 / sample.len().max(1) as f64
    });
    shares.sum::<f64>() / samples.len() as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agreement_is_one_for_repeats_and_the_mode_share_otherwise() {
        assert_eq!(agreement(&[vec![3, 3, 3, 3]]), 1.0);
        assert_eq!(agreement(&[vec![3, 3, 1, 2]]), 0.5);
        assert_eq!(agreement(&[vec![3, 3, 3, 3], vec![1, 2, 3, 4]]), 0.625);
        assert_eq!(agreement(&[]), 0.0);
    }
}
