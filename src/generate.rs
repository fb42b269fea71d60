//! Generating text from a trained model: the one path the CLI (`flm sample`), the app's
//! Sample view, `flm eval` and training previews all take. A request is validated here, once;
//! the sampler follows from the model's kind (Euler steps for an FLM, flow-map jumps for an
//! FMLM), requests larger than a batch are split into batches of one seed's streams, and each
//! sample comes back decoded and, on built-in tasks, checked.

use std::ops::ControlFlow;
use std::time::Instant;

use burn::tensor::Device;
use thiserror::Error;

use crate::data::{BuiltinTask, TextTokenizer, TokenizerKind};
use crate::flow::decoding::Decoding;
use crate::flow::{
    Clamped, SamplerKind, SamplerSettings, Schedule, Trajectory, sample_conditioned,
};
use crate::kernels::KernelPath;
use crate::kernels::sampler_step::MAX_TOP_K;
use crate::model::{Dit, ModelKind};

/// Most network calls one request may ask for.
pub const MAX_STEPS: usize = 1024;
/// Most candidates per position a trajectory records (what the sampler kernel keeps).
pub const MAX_TRAJECTORY_TOP_K: usize = MAX_TOP_K;
/// Sequences generated together unless a request says otherwise.
pub const BATCH: usize = 64;
/// The blank of a template: one free token.
pub const BLANK: &str = "___";
/// Default prompt-guidance strength λ ([`crate::flow::Clamped::guidance`]) for an FLM, chosen
/// by measurement on `builtin:repeat`: a one-letter prompt gives that letter at all 32
/// positions in 3 of 64 samples with clamping alone (λ = 0). With the 5-minute FLM (n = 128):
/// λ = 2, 114 at 8 steps; λ = 4, 128 at 8 and 32 steps but 121 at 2; λ = 8, 128 at 2, 8 and
/// 32 steps. On Austen (64-token continuations, 8 steps, `flm eval --prompts`) λ = 4 and 8
/// gave gen-PPL 301 and 306 against 384 unprompted.
pub const FLM_GUIDANCE: f64 = 8.0;
/// Default λ for a flow map (FMLM). Its few large steps scale each pull by a large Δγ: on
/// Austen at λ = 8 its 2- and 4-step continuations collapsed (unigram entropy 3.6 and 3.2
/// against 5.3 unprompted); λ = 2 gave gen-PPL 232 and 186 against 331 and 293 at entropy
/// 4.6, while on `builtin:repeat` it still gave 122 of 128 at 2 steps and 128 at 8.
pub const FLOW_MAP_GUIDANCE: f64 = 2.0;

/// The default guidance strength λ for sampling a model of `kind`.
pub fn default_guidance(kind: ModelKind) -> f64 {
    match kind {
        ModelKind::FlowMap => FLOW_MAP_GUIDANCE,
        ModelKind::Flm | ModelKind::Autoregressive => FLM_GUIDANCE,
    }
}

/// Largest accepted guidance: beyond it one step's pull outweighs the sampler's own move.
pub const MAX_GUIDANCE: f64 = 64.0;
/// What front ends say when a conditioned request has one step.
pub const ONE_STEP_WARNING: &str = "with 1 step the only network call is at γ = 0, where the fixed tokens are pure noise: the free positions are generated without seeing them (the output still shows the fixed tokens); use 2 or more steps";

/// Tokens the person fixes; every other position is generated. The sampler clamps the fixed
/// positions to their tokens' forward process at every step ([`sample_conditioned`]).
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Conditioning {
    /// Nothing fixed.
    #[default]
    None,
    /// The sequence starts with these tokens; the rest is generated.
    Prefix(Vec<u32>),
    /// Per position from the start: `Some(id)` fixed, `None` generated; positions past its
    /// end are generated too.
    Template(Vec<Option<u32>>),
    /// Sample `i` continues prefix `i`: one prefix per sample, all of one length. How
    /// `flm eval --prompts` continues held-out text, many prompts to a batch.
    Prefixes(Vec<Vec<u32>>),
}

impl Conditioning {
    /// A prefix: `text` tokenized as it is (underscores are text).
    pub fn prompt(tokenizer: &TextTokenizer, text: &str) -> Result<Self, GenerateError> {
        Ok(Conditioning::Prefix(encode_piece(tokenizer, text)?))
    }

    /// A template: every [`BLANK`] (`___`) is one generated token, the text between blanks is
    /// fixed, and whatever follows the template's end is generated. Each piece of text is
    /// tokenized on its own, so a blank is a token boundary. Without blanks it is a prompt.
    pub fn template(tokenizer: &TextTokenizer, text: &str) -> Result<Self, GenerateError> {
        let mut positions = Vec::new();
        for (i, piece) in text.split(BLANK).enumerate() {
            if i > 0 {
                positions.push(None);
            }
            positions.extend(encode_piece(tokenizer, piece)?.into_iter().map(Some));
        }
        Ok(Conditioning::Template(positions))
    }

    /// The fixed token of each of `seq_len` positions (`None`: generated); with
    /// [`Conditioning::Prefixes`], the first sample's.
    pub fn positions(&self, seq_len: usize) -> Vec<Option<u32>> {
        let listed: Vec<Option<u32>> = match self {
            Conditioning::None => Vec::new(),
            Conditioning::Prefix(ids) => ids.iter().copied().map(Some).collect(),
            Conditioning::Template(positions) => positions.clone(),
            Conditioning::Prefixes(prefixes) => prefixes
                .first()
                .map(|ids| ids.iter().copied().map(Some).collect())
                .unwrap_or_default(),
        };
        (0..seq_len)
            .map(|i| listed.get(i).copied().flatten())
            .collect()
    }

    /// How many positions it lists (fixed or blank).
    pub fn len(&self) -> usize {
        match self {
            Conditioning::None => 0,
            Conditioning::Prefix(ids) => ids.len(),
            Conditioning::Template(positions) => positions.len(),
            Conditioning::Prefixes(prefixes) => prefixes.first().map_or(0, Vec::len),
        }
    }

    /// Whether it fixes no token.
    pub fn is_empty(&self) -> bool {
        self.fixed_count() == 0
    }

    /// How many tokens it fixes.
    pub fn fixed_count(&self) -> usize {
        match self {
            Conditioning::None => 0,
            Conditioning::Prefix(ids) => ids.len(),
            Conditioning::Template(positions) => positions.iter().flatten().count(),
            Conditioning::Prefixes(prefixes) => prefixes.first().map_or(0, Vec::len),
        }
    }

    /// The tokens of the fixed positions of samples `rows`, one list per sample, when every
    /// sample has its own ([`Conditioning::Prefixes`]); empty when they all share one.
    fn per_row(&self, rows: std::ops::Range<usize>) -> &[Vec<u32>] {
        match self {
            Conditioning::Prefixes(prefixes) => &prefixes[rows],
            _ => &[],
        }
    }

    fn validate(&self, samples: usize, seq_len: usize, vocab: usize) -> Result<(), GenerateError> {
        if let Conditioning::Prefixes(prefixes) = self {
            if prefixes.len() != samples {
                return Err(GenerateError::PrefixCount {
                    prefixes: prefixes.len(),
                    samples,
                });
            }
            if prefixes.iter().any(|p| p.len() != self.len()) {
                return Err(GenerateError::RaggedPrefixes);
            }
        }
        if self.len() > seq_len {
            return Err(GenerateError::ConditioningTooLong {
                len: self.len(),
                seq_len,
            });
        }
        let ids: Vec<u32> = match self {
            Conditioning::None => Vec::new(),
            Conditioning::Prefix(ids) => ids.clone(),
            Conditioning::Template(positions) => positions.iter().flatten().copied().collect(),
            Conditioning::Prefixes(prefixes) => prefixes.iter().flatten().copied().collect(),
        };
        match ids.into_iter().find(|&id| id as usize >= vocab) {
            Some(id) => Err(GenerateError::FixedToken { id, vocab }),
            None => Ok(()),
        }
    }
}

/// One fixed piece of a prompt or template, refusing characters a char tokenizer does not know
/// (they would be fixed as `<unk>`).
fn encode_piece(tokenizer: &TextTokenizer, text: &str) -> Result<Vec<u32>, GenerateError> {
    let ids = tokenizer
        .encode(text)
        .map_err(|e| GenerateError::Tokenize(e.to_string()))?;
    if tokenizer.kind() == TokenizerKind::Char && ids.contains(&TextTokenizer::UNK_ID) {
        let unknown: String = text
            .chars()
            .filter(|c| {
                tokenizer
                    .encode(&c.to_string())
                    .is_ok_and(|ids| ids.contains(&TextTokenizer::UNK_ID))
            })
            .collect();
        let hint = if unknown.contains('_') {
            " (a blank is exactly three underscores, `___`)"
        } else {
            ""
        };
        return Err(GenerateError::Tokenize(format!(
            "the model's tokenizer does not know {unknown:?}{hint}"
        )));
    }
    Ok(ids)
}

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
    /// Tokens fixed by the person (prompt or template).
    pub conditioning: Conditioning,
    /// How hard the free positions are pulled toward the fixed tokens (0 = clamping alone);
    /// ignored when nothing is fixed.
    pub guidance: f64,
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
            conditioning: Conditioning::None,
            guidance: FLM_GUIDANCE,
        }
    }

    /// [`GenerateRequest::sampler`] plus the checks that need the model: the conditioning fits
    /// in `seq_len` positions and names tokens of a vocabulary of `vocab`.
    pub fn validate(
        &self,
        kind: ModelKind,
        seq_len: usize,
        vocab: usize,
    ) -> Result<SamplerKind, GenerateError> {
        let sampler = self.sampler(kind)?;
        self.conditioning.validate(self.samples, seq_len, vocab)?;
        Ok(sampler)
    }

    /// What a front end should tell the person before running this request:
    /// [`ONE_STEP_WARNING`] for a conditioned 1-step run.
    pub fn warning(&self) -> Option<&'static str> {
        (self.steps == 1 && !self.conditioning.is_empty()).then_some(ONE_STEP_WARNING)
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
        if !(0.0..=MAX_GUIDANCE).contains(&self.guidance) {
            return Err(GenerateError::Guidance(self.guidance));
        }
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

/// What to tell a person whose samples are all one token (see [`Generation::single_token`]).
pub fn single_token_advice(token_text: &str) -> String {
    format!(
        "every generated position is the same token ({token_text:?}): the model still predicts \
         the most frequent token everywhere, which is how training starts. Train longer, or \
         draw tokens instead of taking the most likely one (flm sample --temperature 1)"
    )
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
    #[error("guidance must be in [0, {MAX_GUIDANCE}], got {0}")]
    Guidance(f64),
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
    #[error("the prompt is {len} tokens long; the model generates {seq_len}")]
    ConditioningTooLong { len: usize, seq_len: usize },
    #[error("fixed token {id} is outside the vocabulary of {vocab}")]
    FixedToken { id: u32, vocab: usize },
    #[error("cannot tokenize the prompt: {0}")]
    Tokenize(String),
    #[error("{prefixes} prompts for {samples} samples: give one prompt per sample")]
    PrefixCount { prefixes: usize, samples: usize },
    #[error("prompts of one request must all have the same number of tokens")]
    RaggedPrefixes,
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
    /// The fixed token of every position (`None`: generated); the first sample's, when each
    /// sample has its own prompt.
    pub fixed: Vec<Option<u32>>,
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

    /// The one token every generated position holds, when that is all the samples are: the
    /// mark of an early model whose denoiser still predicts the most frequent token everywhere
    /// (argmax decoding then picks it at every position). Fixed (prompt) positions do not count.
    pub fn single_token(&self) -> Option<u32> {
        let mut generated = self.tokens.iter().flat_map(|sample| {
            sample
                .iter()
                .enumerate()
                .filter(|(i, _)| self.fixed.get(*i).is_none_or(Option::is_none))
                .map(|(_, &token)| token)
        });
        let first = generated.next()?;
        generated.all(|token| token == first).then_some(first)
    }

    /// Total wall seconds over all batches.
    pub fn seconds(&self) -> f64 {
        self.batches.iter().map(|(_, secs)| secs).sum()
    }
}

impl Generator<'_> {
    /// Checks `request` against this model; front ends call it before long work.
    pub fn check(&self, request: &GenerateRequest) -> Result<SamplerKind, GenerateError> {
        request.validate(self.kind, self.seq_len, self.model.vocab_size())
    }

    /// Runs `request`; `on_step` hears every finished network call (over all batches) and can
    /// stop the run, which then returns `Ok(None)`.
    pub fn generate(
        &self,
        request: &GenerateRequest,
        device: &Device,
        on_step: &mut dyn FnMut(usize) -> ControlFlow<()>,
    ) -> Result<Option<Generation>, GenerateError> {
        let sampler = self.check(request)?;
        let fixed = request.conditioning.positions(self.seq_len);
        let schedule = Schedule::new(self.model.vocab_size())
            .expect("a loaded model has a vocabulary of at least 2");
        let mut generation = Generation {
            sampler,
            tokens: Vec::with_capacity(request.samples),
            texts: Vec::with_capacity(request.samples),
            valid: Vec::with_capacity(request.samples),
            fixed: fixed.clone(),
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
            let output = sample_conditioned(
                self.model,
                sampler,
                &schedule,
                &settings,
                Clamped {
                    tokens: &fixed,
                    per_row: request.conditioning.per_row(start..start + settings.batch),
                    guidance: request.guidance,
                },
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
    use crate::device::cpu_device;
    use crate::model::tests_support::{perturbed, small_config};

    #[test]
    fn all_one_token_is_recognised_and_prompt_positions_do_not_count() {
        let generation = |tokens: Vec<Vec<u32>>, fixed: Vec<Option<u32>>| Generation {
            sampler: SamplerKind::Euler,
            texts: vec![String::new(); tokens.len()],
            valid: vec![None; tokens.len()],
            tokens,
            fixed,
            trajectory: None,
            batches: Vec::new(),
        };
        let newlines = generation(vec![vec![7, 7, 7], vec![7, 7, 7]], Vec::new());
        assert_eq!(newlines.single_token(), Some(7));
        let varied = generation(vec![vec![7, 7, 7], vec![7, 8, 7]], Vec::new());
        assert_eq!(varied.single_token(), None);
        // A prompt token that differs does not make the generated part varied.
        let prompted = generation(
            vec![vec![3, 7, 7], vec![3, 7, 7]],
            vec![Some(3), None, None],
        );
        assert_eq!(prompted.single_token(), Some(7));
        assert_eq!(generation(Vec::new(), Vec::new()).single_token(), None);
        assert!(single_token_advice("\n").contains("most frequent token"));
    }

    const LEN: usize = 16;

    /// The repeat task's letters-only char tokenizer (V = 30) and two random, non-uniform
    /// models for it: an FLM and a flow map.
    fn models() -> (TextTokenizer, Dit, Dit) {
        let tokenizer = BuiltinTask::Repeat.tokenizer();
        let config = small_config(tokenizer.vocab_size(), LEN);
        let device = cpu_device();
        let flm = perturbed(Dit::new(&config, 0, &device), 1);
        let flow_map = perturbed(Dit::new(&config, 0, &device).with_second_time(2), 3);
        (tokenizer, flm, flow_map)
    }

    fn generator<'a>(
        model: &'a Dit,
        kind: ModelKind,
        tokenizer: &'a TextTokenizer,
    ) -> Generator<'a> {
        Generator {
            model,
            kind,
            tokenizer,
            task: None,
            seq_len: LEN,
        }
    }

    fn id(tokenizer: &TextTokenizer, letter: &str) -> u32 {
        tokenizer.encode(letter).unwrap()[0]
    }

    #[test]
    fn a_template_is_tokenized_piece_by_piece() {
        let tokenizer = BuiltinTask::Repeat.tokenizer();
        let (a, b, c) = (
            id(&tokenizer, "a"),
            id(&tokenizer, "b"),
            id(&tokenizer, "c"),
        );
        let template = Conditioning::template(&tokenizer, "ab___c______").unwrap();
        assert_eq!(
            template,
            Conditioning::Template(vec![Some(a), Some(b), None, Some(c), None, None])
        );
        assert_eq!((template.len(), template.fixed_count()), (6, 3));
        assert_eq!(
            template.positions(8),
            [Some(a), Some(b), None, Some(c), None, None, None, None]
        );
        assert_eq!(
            Conditioning::template(&tokenizer, "___a").unwrap(),
            Conditioning::Template(vec![None, Some(a)])
        );
        // Without blanks a template is a prompt.
        assert_eq!(
            Conditioning::template(&tokenizer, "abc")
                .unwrap()
                .positions(4),
            Conditioning::prompt(&tokenizer, "abc")
                .unwrap()
                .positions(4)
        );
        assert!(Conditioning::prompt(&tokenizer, "").unwrap().is_empty());
        // The task's alphabet has no space: refused rather than fixed as <unk>.
        let error = Conditioning::prompt(&tokenizer, "a b").unwrap_err();
        assert!(error.to_string().contains("\" \""), "{error}");
    }

    #[test]
    fn conditioning_is_checked_against_the_model() {
        let (tokenizer, flm, _) = models();
        let generator = generator(&flm, ModelKind::Flm, &tokenizer);
        let with = |conditioning| GenerateRequest {
            conditioning,
            ..GenerateRequest::new(4, 2)
        };
        assert!(
            generator
                .check(&with(Conditioning::Prefix(vec![5; LEN])))
                .is_ok()
        );
        assert_eq!(
            generator.check(&with(Conditioning::Prefix(vec![5; LEN + 1]))),
            Err(GenerateError::ConditioningTooLong {
                len: LEN + 1,
                seq_len: LEN
            })
        );
        assert_eq!(
            generator.check(&with(Conditioning::Template(vec![None, Some(30)]))),
            Err(GenerateError::FixedToken { id: 30, vocab: 30 })
        );
        let generated =
            generator.generate_all(&with(Conditioning::Prefix(vec![5; LEN + 1])), &cpu_device());
        assert!(generated.is_err(), "generate checks too");
    }

    #[test]
    fn each_sample_continues_its_own_prefix_as_if_it_were_shared() {
        let (tokenizer, flm, flow_map) = models();
        let device = cpu_device();
        let prefixes = vec![vec![3, 4, 5], vec![9, 9, 2], vec![7, 1, 1]];
        for (model, kind, steps) in [
            (&flm, ModelKind::Flm, 4),
            (&flow_map, ModelKind::FlowMap, 2),
        ] {
            let generator = generator(model, kind, &tokenizer);
            // Batches of 2: the second batch holds the third prompt alone.
            let request = |conditioning| GenerateRequest {
                conditioning,
                batch: 2,
                guidance: 4.0,
                ..GenerateRequest::new(steps, 3)
            };
            let each = generator
                .generate_all(&request(Conditioning::Prefixes(prefixes.clone())), &device)
                .unwrap();
            for (i, prefix) in prefixes.iter().enumerate() {
                let shared = generator
                    .generate_all(&request(Conditioning::Prefix(prefix.clone())), &device)
                    .unwrap();
                assert_eq!(each.tokens[i][..3], prefix[..], "{kind:?} sample {i}");
                assert_eq!(each.tokens[i], shared.tokens[i], "{kind:?} sample {i}");
            }
        }
        let generator = generator(&flm, ModelKind::Flm, &tokenizer);
        let check = |prefixes: Vec<Vec<u32>>| {
            generator.check(&GenerateRequest {
                conditioning: Conditioning::Prefixes(prefixes),
                ..GenerateRequest::new(4, 2)
            })
        };
        assert_eq!(
            check(vec![vec![1]]),
            Err(GenerateError::PrefixCount {
                prefixes: 1,
                samples: 2
            })
        );
        assert_eq!(
            check(vec![vec![1], vec![1, 2]]),
            Err(GenerateError::RaggedPrefixes)
        );
        assert_eq!(
            check(vec![vec![1], vec![30]]),
            Err(GenerateError::FixedToken { id: 30, vocab: 30 })
        );
    }

    #[test]
    fn fixed_positions_end_as_their_tokens_for_every_sampler() {
        let (tokenizer, flm, flow_map) = models();
        let device = cpu_device();
        let template = Conditioning::template(&tokenizer, "k___q___z").unwrap();
        let fixed = template.positions(LEN);
        let draw = Decoding::Draw {
            temperature: 10.0,
            top_p: 1.0,
        };
        for (model, kind, steps, eta, decoding) in [
            (&flm, ModelKind::Flm, 8, None, Decoding::Argmax),
            (&flm, ModelKind::Flm, 3, None, draw),
            (&flow_map, ModelKind::FlowMap, 1, None, Decoding::Argmax),
            (
                &flow_map,
                ModelKind::FlowMap,
                4,
                Some(0.0),
                Decoding::Argmax,
            ),
            (&flow_map, ModelKind::FlowMap, 4, Some(0.7), draw),
        ] {
            let request = GenerateRequest {
                eta,
                decoding,
                trajectory_top_k: 4,
                conditioning: template.clone(),
                ..GenerateRequest::new(steps, 5)
            };
            let generation = generator(model, kind, &tokenizer)
                .generate_all(&request, &device)
                .unwrap();
            let case = format!("{kind:?} {steps} steps η {eta:?} {decoding:?}");
            assert_eq!(generation.fixed, fixed, "{case}");
            for tokens in &generation.tokens {
                for (token, want) in tokens.iter().zip(&fixed) {
                    if let Some(want) = want {
                        assert_eq!(token, want, "{case}: {tokens:?}");
                    }
                }
            }
            assert!(
                generation.texts.iter().all(|t| t.starts_with('k')),
                "{case}"
            );
            let trajectory = generation.trajectory.unwrap();
            assert_eq!(trajectory.fixed, fixed, "{case}");
            for (sample, tokens) in trajectory.samples.iter().zip(&generation.tokens) {
                assert_eq!(&sample.tokens, tokens, "{case}");
            }
        }
    }

    #[test]
    fn a_template_without_blanks_comes_back_as_it_is() {
        let (tokenizer, flm, flow_map) = models();
        let text = "thequickbrownfox";
        assert_eq!(text.len(), LEN);
        let template = Conditioning::template(&tokenizer, text).unwrap();
        for (model, kind) in [(&flm, ModelKind::Flm), (&flow_map, ModelKind::FlowMap)] {
            let request = GenerateRequest {
                conditioning: template.clone(),
                ..GenerateRequest::new(6, 3)
            };
            let generation = generator(model, kind, &tokenizer)
                .generate_all(&request, &cpu_device())
                .unwrap();
            assert!(
                generation.texts.iter().all(|t| t == text),
                "{:?}",
                generation.texts
            );
        }
    }

    #[test]
    fn the_free_positions_see_the_prompt_only_after_the_first_step() {
        let (tokenizer, _, flow_map) = models();
        let generator = generator(&flow_map, ModelKind::FlowMap, &tokenizer);
        let prompt = Conditioning::prompt(&tokenizer, "mmmm").unwrap();
        let run = |steps, conditioning| {
            let request = GenerateRequest {
                conditioning,
                ..GenerateRequest::new(steps, 8)
            };
            let warning = request.warning();
            let tokens = generator
                .generate_all(&request, &cpu_device())
                .unwrap()
                .tokens;
            let free: Vec<Vec<u32>> = tokens.iter().map(|t| t[4..].to_vec()).collect();
            (free, warning)
        };
        // One step: its only call is at γ = 0, where the prompt is pure noise.
        let (plain, none) = run(1, Conditioning::None);
        let (prompted, warning) = run(1, prompt.clone());
        assert_eq!(prompted, plain, "a 1-step run cannot see the prompt");
        assert_eq!((none, warning), (None, Some(ONE_STEP_WARNING)));
        // Two steps: the second call sees the prompt at γ_1 > 0.
        let (plain, _) = run(2, Conditioning::None);
        let (prompted, warning) = run(2, prompt);
        assert_ne!(prompted, plain, "the second step sees the prompt");
        assert_eq!(warning, None);
    }

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
