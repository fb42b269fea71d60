//! Generating text from a trained model: the one path the CLI (`flm sample`), the app's
//! Sample view, `flm eval` and training previews all take. A request is validated here, once;
//! the sampler follows from the model's kind (Euler steps for an FLM, flow-map jumps for an
//! FMLM), requests larger than a batch are split into batches of one seed's streams, and each
//! sample comes back decoded and, on built-in tasks, checked.

use std::ops::ControlFlow;
use std::time::Instant;

use burn::tensor::Device;
use thiserror::Error;

use crate::data::{BuiltinTask, TextTokenizer};
use crate::flow::decoding::Decoding;
use crate::flow::{SamplerKind, SamplerSettings, Schedule, Trajectory, sample_observed};
use crate::kernels::KernelPath;
use crate::kernels::sampler_step::MAX_TOP_K;
use crate::model::{Dit, ModelKind};

/// Most network calls one request may ask for.
pub const MAX_STEPS: usize = 1024;
/// Most candidates per position a trajectory records (what the sampler kernel keeps).
pub const MAX_TRAJECTORY_TOP_K: usize = MAX_TOP_K;
/// Sequences generated together unless a request says otherwise.
pub const BATCH: usize = 64;

/// What to generate.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerateRequest {
    /// Network calls N (1…[`MAX_STEPS`]).
    pub steps: usize,
    /// Stochasticity η ∈ [0, 1] of flow-map steps; `None` is 0. An FLM takes none.
    pub eta: Option<f64>,
    pub seed: u64,
    /// Number of sequences.
    pub samples: usize,
    /// Sequences per batch (one network call covers a batch); the seed's streams 0, 1, …
    /// keep larger requests from repeating samples.
    pub batch: usize,
    /// Candidates per position recorded in the trajectory; 0 records none.
    pub trajectory_top_k: usize,
    /// How the final distribution becomes tokens.
    pub decoding: Decoding,
}

impl GenerateRequest {
    /// `samples` sequences in `steps` steps, seed 0, argmax, no trajectory.
    pub fn new(steps: usize, samples: usize) -> Self {
        Self {
            steps,
            eta: None,
            seed: 0,
            samples,
            batch: BATCH,
            trajectory_top_k: 0,
            decoding: Decoding::Argmax,
        }
    }

    /// The sampler for a model of `kind`, or why this request cannot run on it.
    pub fn sampler(&self, kind: ModelKind) -> Result<SamplerKind, GenerateError> {
        if !(1..=MAX_STEPS).contains(&self.steps) {
            return Err(GenerateError::Steps(self.steps));
        }
        if self.samples == 0 || self.batch == 0 {
            return Err(GenerateError::NoSamples);
        }
        if self.trajectory_top_k > MAX_TRAJECTORY_TOP_K {
            return Err(GenerateError::TopK(self.trajectory_top_k));
        }
        if let Some(eta) = self.eta
            && !(0.0..=1.0).contains(&eta)
        {
            return Err(GenerateError::Eta(eta));
        }
        self.decoding.validate().map_err(GenerateError::Decoding)?;
        match (kind, self.eta) {
            (ModelKind::Flm, None) => Ok(SamplerKind::Euler),
            (ModelKind::Flm, Some(_)) => Err(GenerateError::EtaOnFlm),
            (ModelKind::FlowMap, eta) => Ok(SamplerKind::FlowMap {
                eta: eta.unwrap_or(0.0),
            }),
            (ModelKind::Autoregressive, _) => Err(GenerateError::Autoregressive),
        }
    }
}

/// Why a request cannot run.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum GenerateError {
    #[error("steps must be in 1…{MAX_STEPS}, got {0}")]
    Steps(usize),
    #[error("ask for at least one sample, in batches of at least one")]
    NoSamples,
    #[error("a trajectory keeps at most {MAX_TRAJECTORY_TOP_K} candidates per position, got {0}")]
    TopK(usize),
    #[error("η must be in [0, 1], got {0}")]
    Eta(f64),
    #[error(
        "η applies to flow-map models; an FLM is sampled with Euler steps\n  hint: distill it first (`flm distill --teacher <run>`)"
    )]
    EtaOnFlm,
    #[error(
        "this is an autoregressive reference model: it scores samples in `flm eval` and is not sampled\n  hint: pick an FLM or FMLM"
    )]
    Autoregressive,
    #[error("{0}")]
    Decoding(String),
}

/// A model ready to generate: the network, what it is, and how to read its tokens.
#[derive(Clone, Copy)]
pub struct Generator<'a> {
    pub model: &'a Dit,
    pub kind: ModelKind,
    pub tokenizer: &'a TextTokenizer,
    /// The built-in task it was trained on, whose rules judge its samples.
    pub task: Option<BuiltinTask>,
    pub seq_len: usize,
}

/// What one request produced.
pub struct Generation {
    pub sampler: SamplerKind,
    pub tokens: Vec<Vec<u32>>,
    pub texts: Vec<String>,
    /// Per sample, on built-in tasks.
    pub valid: Vec<Option<bool>>,
    /// The recorded denoising, when the request asked for candidates.
    pub trajectory: Option<Trajectory>,
    /// Sequences and wall seconds of each batch, in order.
    pub batches: Vec<(usize, f64)>,
}

impl Generation {
    /// Share of valid samples, on built-in tasks.
    pub fn valid_fraction(&self) -> Option<f64> {
        let checked: Vec<bool> = self.valid.iter().flatten().copied().collect();
        (!checked.is_empty())
            .then(|| checked.iter().filter(|&&v| v).count() as f64 / checked.len() as f64)
    }

    /// Total wall seconds over all batches.
    pub fn seconds(&self) -> f64 {
        self.batches.iter().map(|(_, secs)| secs).sum()
    }
}

impl Generator<'_> {
    /// Runs `request`; `on_step` hears every finished network call (over all batches) and can
    /// stop the run, which then returns `Ok(None)`.
    pub fn generate(
        &self,
        request: &GenerateRequest,
        device: &Device,
        on_step: &mut dyn FnMut(usize) -> ControlFlow<()>,
    ) -> Result<Option<Generation>, GenerateError> {
        let sampler = request.sampler(self.kind)?;
        let schedule = Schedule::new(self.model.vocab_size())
            .expect("a loaded model has a vocabulary of at least 2");
        let mut generation = Generation {
            sampler,
            tokens: Vec::with_capacity(request.samples),
            texts: Vec::with_capacity(request.samples),
            valid: Vec::with_capacity(request.samples),
            trajectory: None,
            batches: Vec::new(),
        };
        let mut calls = 0;
        for (index, start) in (0..request.samples).step_by(request.batch).enumerate() {
            let settings = SamplerSettings {
                steps: request.steps,
                seed: request.seed,
                stream: index as u64,
                batch: request.batch.min(request.samples - start),
                seq_len: self.seq_len,
                top_k: request.trajectory_top_k,
                decoding: request.decoding,
            };
            let started = Instant::now();
            let output = sample_observed(
                self.model,
                sampler,
                &schedule,
                &settings,
                KernelPath::Auto,
                device,
                &mut |_| {
                    calls += 1;
                    on_step(calls)
                },
            );
            let Some(output) = output else {
                return Ok(None);
            };
            generation
                .batches
                .push((settings.batch, started.elapsed().as_secs_f64()));
            for tokens in output.tokens {
                generation.texts.push(self.tokenizer.decode(&tokens));
                generation
                    .valid
                    .push(self.task.map(|task| task.is_valid(self.tokenizer, &tokens)));
                generation.tokens.push(tokens);
            }
            generation.trajectory = match (generation.trajectory.take(), output.trajectory) {
                (Some(mut all), Some(more)) => {
                    all.samples.extend(more.samples);
                    Some(all)
                }
                (all, more) => all.or(more),
            };
        }
        Ok(Some(generation))
    }

    /// [`Generator::generate`] without progress reports or cancelling.
    pub fn generate_all(
        &self,
        request: &GenerateRequest,
        device: &Device,
    ) -> Result<Generation, GenerateError> {
        self.generate(request, device, &mut |_| ControlFlow::Continue(()))
            .map(|done| done.expect("an observer that never stops"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_checked_once_for_every_front_end() {
        let ok = GenerateRequest::new(8, 4);
        assert_eq!(ok.sampler(ModelKind::Flm), Ok(SamplerKind::Euler));
        assert_eq!(
            ok.sampler(ModelKind::FlowMap),
            Ok(SamplerKind::FlowMap { eta: 0.0 })
        );
        let with = |change: fn(&mut GenerateRequest)| {
            let mut request = GenerateRequest::new(8, 4);
            change(&mut request);
            request
        };
        assert_eq!(
            with(|r| r.steps = 0).sampler(ModelKind::Flm),
            Err(GenerateError::Steps(0))
        );
        assert_eq!(
            with(|r| r.steps = MAX_STEPS + 1).sampler(ModelKind::Flm),
            Err(GenerateError::Steps(MAX_STEPS + 1))
        );
        assert_eq!(
            with(|r| r.samples = 0).sampler(ModelKind::Flm),
            Err(GenerateError::NoSamples)
        );
        assert_eq!(
            with(|r| r.eta = Some(1.5)).sampler(ModelKind::FlowMap),
            Err(GenerateError::Eta(1.5))
        );
        assert_eq!(
            with(|r| r.eta = Some(0.5)).sampler(ModelKind::Flm),
            Err(GenerateError::EtaOnFlm)
        );
        assert_eq!(
            with(|r| r.eta = Some(0.5)).sampler(ModelKind::FlowMap),
            Ok(SamplerKind::FlowMap { eta: 0.5 })
        );
        assert_eq!(
            with(|r| r.trajectory_top_k = 17).sampler(ModelKind::Flm),
            Err(GenerateError::TopK(17))
        );
        assert!(ok.sampler(ModelKind::Autoregressive).is_err());
        assert!(
            with(|r| r.decoding = Decoding::Draw {
                temperature: 0.0,
                top_p: 1.0
            })
            .sampler(ModelKind::Flm)
            .is_err()
        );
    }
}
