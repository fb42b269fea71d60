//! The whole `flm eval` pipeline as a library call: load the checkpoints and the reference
//! model, check that they can be compared (one tokenizer, one sequence length), build the
//! held-out set, and measure every model at every step count. The command line only parses
//! flags into an [`EvalRequest`] and prints the [`EvalReport`]; anything else that wants an
//! evaluation (the app, a script) gets the same checks and numbers.

use std::path::{Path, PathBuf};

use burn::tensor::Device;

use super::report::{
    EvalReport, EvalSettings, HeldOut, ModelEvaluation, PromptSummary, SampleMetrics,
    SamplerResult, Yardstick, denoiser_cross_entropy, evaluate_samplers,
};
use crate::data::{BuiltinTask, DataError, Lexicon, PackedSequences, TextTokenizer, load_text};
use crate::flow::Decoding;
use crate::generate::{GenerateError, Generator};
use crate::train::{CheckpointError, LoadedModel, ModelKind, load_model};

/// Held-out sequences cap: plenty for n-gram statistics, bounded reference-scoring cost.
pub const MAX_HELD_OUT: usize = 1024;

/// The step counts evaluated when none are asked for.
pub const DEFAULT_STEPS: [usize; 6] = [1, 2, 4, 8, 16, 32];

/// Prompts cut from a text file: every sequence of `seq_len` tokens (packed like training
/// data) gives one prompt, its first `seq_len − continuation` tokens; the model generates the
/// rest, and the metrics measure that continuation.
#[derive(Debug, Clone)]
pub struct PromptSource {
    pub file: PathBuf,
    /// Tokens generated after each prompt; `None`: half the sequence.
    pub continuation: Option<usize>,
    /// Guidance strength λ toward the prompt; `None`: each model's default
    /// ([`crate::generate::default_guidance`]).
    pub guidance: Option<f64>,
}

/// One checkpoint to evaluate and the step counts to sample it at.
#[derive(Debug, Clone)]
pub struct EvalTarget {
    pub checkpoint: PathBuf,
    pub steps: Vec<usize>,
}

/// Everything an evaluation needs; the same request gives the same report.
#[derive(Debug, Clone)]
pub struct EvalRequest {
    /// FLM or FMLM checkpoints, all on the same tokenizer and sequence length.
    pub targets: Vec<EvalTarget>,
    /// Autoregressive reference model that scores samples (gen-PPL).
    pub reference: Option<PathBuf>,
    /// Held-out text file; built-in tasks generate fresh sequences without one.
    pub valid: Option<PathBuf>,
    /// Also measure continuations of these prompts (at most `samples` of them).
    pub prompts: Option<PromptSource>,
    /// Stochasticity η of flow-map sampling (ignored for FLMs).
    pub eta: f64,
    pub decoding: Decoding,
    /// Samples per checkpoint and step count.
    pub samples: usize,
    /// Sequences sampled together.
    pub batch: usize,
    pub seed: u64,
}

/// What an evaluation reports while it runs.
#[derive(Debug)]
pub enum EvalEvent<'a> {
    /// The held-out set is built.
    HeldOut { sequences: usize, seq_len: usize },
    /// One model finished one step count.
    Measured {
        model: &'a str,
        result: &'a SamplerResult,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    /// Settings that cannot be evaluated, or models that cannot be compared.
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    #[error(transparent)]
    Data(#[from] DataError),
    #[error(transparent)]
    Generate(#[from] GenerateError),
}

fn invalid(message: impl Into<String>) -> EvalError {
    EvalError::Invalid(message.into())
}

impl EvalRequest {
    /// Rejects settings that cannot run, before anything is loaded.
    pub fn check(&self) -> Result<(), EvalError> {
        if self.targets.is_empty() {
            return Err(invalid("no checkpoint to evaluate"));
        }
        if self.samples == 0 || self.batch == 0 {
            return Err(invalid("--n and --batch must be at least 1"));
        }
        if !(0.0..=1.0).contains(&self.eta) {
            return Err(invalid("--eta must be in [0, 1]"));
        }
        if let Some(prompts) = &self.prompts {
            if prompts.continuation == Some(0) {
                return Err(invalid("--continuation must be at least 1 token"));
            }
            if let Some(guidance) = prompts.guidance
                && !(0.0..=crate::generate::MAX_GUIDANCE).contains(&guidance)
            {
                return Err(invalid(format!(
                    "--guidance must be in [0, {}]",
                    crate::generate::MAX_GUIDANCE
                )));
            }
        }
        Ok(())
    }

    /// Loads, checks and measures everything; `progress` hears the held-out set and every
    /// finished setting as they come.
    pub fn run(
        &self,
        device: &Device,
        progress: &mut dyn FnMut(EvalEvent<'_>),
    ) -> Result<EvalReport, EvalError> {
        self.check()?;
        let models = self
            .targets
            .iter()
            .map(|target| load_model(&target.checkpoint, device))
            .collect::<Result<Vec<_>, _>>()?;
        let first = &models[0];
        let first_dir = &self.targets[0].checkpoint;
        for (target, loaded) in self.targets.iter().zip(&models) {
            check_comparable(first_dir, first, &target.checkpoint, loaded)?;
        }
        let reference = self
            .reference
            .as_deref()
            .map(|dir| load_reference(dir, first_dir, &first.tokenizer, device))
            .transpose()?;
        let seq_len = first.config.model.seq_len;
        let tokenizer = &first.tokenizer;
        let task = BuiltinTask::parse(&first.config.data.source).and_then(Result::ok);
        let prompts = match &self.prompts {
            Some(source) => Some(self.prompts(source, tokenizer, seq_len)?),
            None => None,
        };
        let scored_from = prompts.as_ref().map_or(0, |p| p[0].len());
        let samples = prompts.as_ref().map_or(self.samples, Vec::len);
        let held_out = HeldOut::new(
            self.held_out_sequences(tokenizer, task, seq_len)?,
            scored_from,
        );
        let lexicon = match task {
            None => self.training_words(&first.config.data.source),
            Some(_) => None,
        };
        let yardstick = Yardstick {
            held_out: &held_out,
            reference: reference.as_ref().map(|r| (&r.model, seq_len)),
            task: task.map(|t| (t, tokenizer)),
            words: lexicon.as_ref().map(|l| (l, tokenizer)),
            scored_from,
        };
        progress(EvalEvent::HeldOut {
            sequences: held_out.sequences.len(),
            seq_len,
        });
        let held_out_metrics = SampleMetrics::compute(&held_out.sequences, yardstick);

        let mut evaluations = Vec::new();
        for (target, loaded) in self.targets.iter().zip(&models) {
            let settings = EvalSettings {
                eta: (loaded.config.kind == ModelKind::FlowMap).then_some(self.eta),
                steps: target.steps.clone(),
                samples,
                batch: self.batch,
                seed: self.seed,
                decoding: self.decoding,
                prompts: prompts.clone().unwrap_or_default(),
                guidance: self.prompts.as_ref().map_or(0.0, |p| {
                    p.guidance
                        .unwrap_or(crate::generate::default_guidance(loaded.config.kind))
                }),
            };
            let generator = Generator {
                model: &loaded.model,
                kind: loaded.config.kind,
                tokenizer: &loaded.tokenizer,
                task,
                seq_len,
            };
            let name = target.checkpoint.display().to_string();
            let denoiser_ce =
                denoiser_cross_entropy(&loaded.model, &held_out, seq_len, self.seed, device);
            let results =
                evaluate_samplers(&generator, &settings, yardstick, device, &mut |result| {
                    progress(EvalEvent::Measured {
                        model: &name,
                        result,
                    })
                })?;
            evaluations.push(ModelEvaluation {
                model: name,
                kind: match loaded.config.kind {
                    ModelKind::FlowMap => "fmlm".into(),
                    _ => "flm".into(),
                },
                denoiser_ce,
                results,
            });
        }
        Ok(EvalReport {
            reference: self.reference.as_ref().map(|p| p.display().to_string()),
            seed: self.seed,
            samples_per_setting: samples,
            seq_len,
            vocab_size: first.config.model.vocab_size,
            held_out: held_out_metrics,
            held_out_sequences: held_out.sequences.len(),
            prompts: prompts
                .zip(self.prompts.as_ref())
                .map(|(prompts, source)| PromptSummary {
                    file: source.file.display().to_string(),
                    prompts: prompts.len(),
                    prompt_tokens: scored_from,
                    continuation_tokens: seq_len - scored_from,
                    guidance: source.guidance,
                }),
            models: evaluations,
        })
    }

    /// The words of the model's training text (and of the held-out file), when that text
    /// is still where the run found it: real-word shares need it, nothing else does, so a
    /// moved file only drops that column.
    fn training_words(&self, source: &str) -> Option<Lexicon> {
        let mut lexicon = Lexicon::default();
        if let Ok(text) = load_text(Path::new(source)) {
            lexicon.extend(&text);
        }
        if let Some(Ok(text)) = self.valid.as_deref().map(load_text) {
            lexicon.extend(&text);
        }
        (!lexicon.is_empty()).then_some(lexicon)
    }

    /// The prompts of `source`: the first `seq_len − continuation` tokens of each packed
    /// sequence of its file, at most `samples` of them, all of one length.
    fn prompts(
        &self,
        source: &PromptSource,
        tokenizer: &TextTokenizer,
        seq_len: usize,
    ) -> Result<Vec<Vec<u32>>, EvalError> {
        let continuation = source.continuation.unwrap_or(seq_len / 2).max(1);
        if continuation >= seq_len {
            return Err(invalid(format!(
                "--continuation {continuation} leaves no prompt in sequences of {seq_len} \
                 tokens; give fewer than {seq_len}"
            )));
        }
        let text = load_text(&source.file)?;
        let ids = tokenizer.encode(&text)?;
        let packed = PackedSequences::pack(&ids, seq_len);
        if packed.is_empty() {
            return Err(invalid(format!(
                "`{}` holds {} tokens, fewer than one sequence of {seq_len}: no prompt to cut",
                source.file.display(),
                ids.len()
            )));
        }
        let prompt_len = seq_len - continuation;
        Ok((0..packed.len().min(self.samples))
            .map(|i| packed.sequence(i)[..prompt_len].to_vec())
            .collect())
    }

    /// The text every sample set is compared with: the `valid` file packed into sequences,
    /// or fresh sequences of the built-in task.
    fn held_out_sequences(
        &self,
        tokenizer: &TextTokenizer,
        task: Option<BuiltinTask>,
        seq_len: usize,
    ) -> Result<Vec<Vec<u32>>, EvalError> {
        match (&self.valid, task) {
            (Some(path), _) => {
                let text = load_text(path)?;
                let ids = tokenizer.encode(&text)?;
                let packed = PackedSequences::pack(&ids, seq_len);
                if packed.is_empty() {
                    return Err(invalid(format!(
                        "`{}` holds {} tokens, fewer than one sequence of {seq_len}",
                        path.display(),
                        ids.len()
                    )));
                }
                Ok((0..packed.len().min(MAX_HELD_OUT))
                    .map(|i| packed.sequence(i).to_vec())
                    .collect())
            }
            (None, Some(task)) => {
                let mut rng = crate::rng::stream_rng(self.seed, u64::MAX - 7);
                Ok(task
                    .batch(tokenizer, &mut rng, self.samples, seq_len)
                    .chunks(seq_len)
                    .map(<[u32]>::to_vec)
                    .collect())
            }
            (None, None) => Err(invalid("--valid FILE is needed for models trained on text")),
        }
    }
}

/// A model to evaluate must be a denoiser on the first one's tokenizer and sequence length.
fn check_comparable(
    first_dir: &Path,
    first: &LoadedModel,
    dir: &Path,
    loaded: &LoadedModel,
) -> Result<(), EvalError> {
    if loaded.config.kind == ModelKind::Autoregressive {
        return Err(invalid(format!(
            "`{}` is an autoregressive reference model; pass it with --ref",
            dir.display()
        )));
    }
    if loaded.tokenizer.fingerprint() != first.tokenizer.fingerprint()
        || loaded.config.model.seq_len != first.config.model.seq_len
    {
        return Err(invalid(format!(
            "`{}` and `{}` use different tokenizers or sequence lengths; compare models \
             trained on the same data",
            first_dir.display(),
            dir.display()
        )));
    }
    Ok(())
}

/// Loads the reference model and checks it scores the same tokens the models write.
fn load_reference(
    dir: &Path,
    first_dir: &Path,
    tokenizer: &TextTokenizer,
    device: &Device,
) -> Result<LoadedModel, EvalError> {
    let loaded = load_model(dir, device)?;
    if loaded.config.kind != ModelKind::Autoregressive {
        return Err(invalid(format!(
            "--ref `{}` is not an autoregressive reference model\n  hint: train one with \
             `flm train-ar --data <the same text> --out DIR`",
            dir.display()
        )));
    }
    if loaded.tokenizer.fingerprint() != tokenizer.fingerprint() {
        return Err(invalid(format!(
            "the reference model `{}` uses a different tokenizer than `{}`; its scores \
             would be meaningless\n  hint: train it on the same text with the same \
             --vocab and --tokenizer (tokenizer training is deterministic)",
            dir.display(),
            first_dir.display()
        )));
    }
    Ok(loaded)
}
