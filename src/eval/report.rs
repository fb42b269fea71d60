//! `flm eval`: sample a model at several step counts and measure every sample set the same
//! way (DESIGN §9) — gen-PPL under the reference model, unigram entropy, Jensen–Shannon
//! distances to held-out text, distinct-n, repetition, validity, speed — plus the denoiser's
//! validation cross-entropy at fixed times. Gen-PPL alone rewards dull, repetitive text; the
//! distribution metrics next to it are what catch that.

use burn::tensor::{Device, Tensor};
use serde::Serialize;

use super::reference::conditional_perplexity;
use crate::data::BuiltinTask;
use crate::data::{Lexicon, TextTokenizer};
use crate::flow::loss::cross_entropy;
use crate::flow::{Decoding, Schedule};
use crate::generate::{Conditioning, GenerateError, GenerateRequest, Generator};
use crate::kernels::KernelPath;
use crate::kernels::noisy_input::noisy_input;
use crate::metrics::{distinct_n, entropy, fraction, js_divergence, ngram_counts, repetition_rate};
use crate::model::Dit;
use crate::render::figure::{Chart, Series};
use crate::rng::stream_rng;
use crate::train::objective::token_tensor;
use rand::RngCore;

/// The times at which the denoiser's validation cross-entropy is reported.
pub const CE_TAUS: [f64; 5] = [0.1, 0.3, 0.5, 0.7, 0.9];

/// Held-out text as the samples are compared with it.
pub struct HeldOut {
    pub sequences: Vec<Vec<u32>>,
    unigrams: std::collections::BTreeMap<Vec<u32>, usize>,
    bigrams: std::collections::BTreeMap<Vec<u32>, usize>,
}

impl HeldOut {
    /// The n-gram statistics count positions `scored_from..` of each sequence, the window the
    /// samples are measured on ([`Yardstick::scored_from`]).
    pub fn new(sequences: Vec<Vec<u32>>, scored_from: usize) -> Self {
        let tails = tails(&sequences, scored_from);
        Self {
            unigrams: ngram_counts(&tails, 1),
            bigrams: ngram_counts(&tails, 2),
            sequences,
        }
    }
}

/// Positions `from..` of every sequence.
fn tails(sequences: &[Vec<u32>], from: usize) -> Vec<Vec<u32>> {
    sequences
        .iter()
        .map(|s| s[from.min(s.len())..].to_vec())
        .collect()
}

/// Everything measured on one set of samples.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SampleMetrics {
    /// Perplexity of the samples under the reference model (`None` without one).
    pub gen_ppl: Option<f64>,
    pub unigram_entropy: f64,
    /// Jensen–Shannon divergence (nats, ≤ ln 2) to the held-out unigram / bigram distribution.
    pub js_unigram: f64,
    pub js_bigram: f64,
    /// distinct-1, -2, -3.
    pub distinct: [f64; 3],
    /// Share of 4-grams repeating an earlier 4-gram of the same sample.
    pub repetition: f64,
    /// Share of valid sequences, for built-in tasks.
    pub validity: Option<f64>,
    /// Share of the samples' words that occur in the training text (text corpora; `None`
    /// when that text could not be read or the samples hold no words).
    pub real_words: Option<f64>,
}

/// What every sample set is measured against.
#[derive(Clone, Copy)]
pub struct Yardstick<'a> {
    pub held_out: &'a HeldOut,
    /// The reference model and its sequence length, for gen-PPL.
    pub reference: Option<(&'a Dit, usize)>,
    /// The built-in task whose validity check applies.
    pub task: Option<(BuiltinTask, &'a TextTokenizer)>,
    /// The training text's words, and the tokenizer that turns samples back into text.
    pub words: Option<(&'a Lexicon, &'a TextTokenizer)>,
    /// Positions before it are a prompt: gen-PPL scores the tokens from here on, each given
    /// all before it, and the distribution metrics count these tokens alone. 0: whole samples.
    pub scored_from: usize,
}

impl SampleMetrics {
    /// Measures `samples` against `yardstick`.
    pub fn compute(samples: &[Vec<u32>], yardstick: Yardstick<'_>) -> Self {
        let Yardstick {
            held_out,
            reference,
            task,
            words,
            scored_from,
        } = yardstick;
        let scored = tails(samples, scored_from);
        let unigrams = ngram_counts(&scored, 1);
        Self {
            gen_ppl: reference.map(|(model, seq_len)| {
                conditional_perplexity(model, samples, seq_len, 32, scored_from)
            }),
            unigram_entropy: entropy(&unigrams),
            js_unigram: js_divergence(&unigrams, &held_out.unigrams),
            js_bigram: js_divergence(&ngram_counts(&scored, 2), &held_out.bigrams),
            distinct: [1, 2, 3].map(|n| distinct_n(&scored, n)),
            repetition: repetition_rate(&scored, 4),
            validity: task
                .map(|(task, tokenizer)| fraction(samples, |ids| task.is_valid(tokenizer, ids))),
            real_words: words.and_then(|(lexicon, tokenizer)| {
                let texts: Vec<String> = scored.iter().map(|ids| tokenizer.decode(ids)).collect();
                lexicon.real_word_share(&texts)
            }),
        }
    }
}

/// One sampler at one step count.
#[derive(Debug, Clone, Serialize)]
pub struct SamplerResult {
    pub sampler: String,
    pub steps: usize,
    /// Whether each sample continued a prompt (`flm eval --prompts`).
    pub prompted: bool,
    pub eta: f64,
    pub metrics: SampleMetrics,
    /// Median wall time of one batch of `batch` sequences.
    pub secs_per_batch: f64,
    pub batch: usize,
    pub tokens_per_sec: f64,
}

/// One model's part of an evaluation.
#[derive(Debug, Clone, Serialize)]
pub struct ModelEvaluation {
    /// Its checkpoint directory.
    pub model: String,
    /// "flm" or "fmlm".
    pub kind: String,
    /// Denoiser validation cross-entropy at `CE_TAUS`.
    pub denoiser_ce: Vec<(f64, f64)>,
    pub results: Vec<SamplerResult>,
}

/// A whole evaluation, as written to JSON and rendered to markdown and a plot.
#[derive(Debug, Clone, Serialize)]
pub struct EvalReport {
    pub reference: Option<String>,
    pub seed: u64,
    pub samples_per_setting: usize,
    pub seq_len: usize,
    pub vocab_size: usize,
    /// The held-out text measured like a sample set: the target every row is compared with.
    pub held_out: SampleMetrics,
    pub held_out_sequences: usize,
    /// How prompted rows were made, when the evaluation continued prompts.
    pub prompts: Option<PromptSummary>,
    pub models: Vec<ModelEvaluation>,
}

/// The prompts an evaluation continued (`flm eval --prompts`).
#[derive(Debug, Clone, Serialize)]
pub struct PromptSummary {
    /// The text file the prompts were cut from.
    pub file: String,
    pub prompts: usize,
    /// Tokens of each prompt (the first positions of a sample).
    pub prompt_tokens: usize,
    /// Tokens generated after each prompt, and measured.
    pub continuation_tokens: usize,
    /// Guidance strength λ toward the prompt; `None`: each model's default.
    pub guidance: Option<f64>,
}

/// What to evaluate: one request per step count, the rest shared.
pub struct EvalSettings {
    /// η of flow-map steps (`None` for an FLM).
    pub eta: Option<f64>,
    pub steps: Vec<usize>,
    pub samples: usize,
    pub batch: usize,
    pub seed: u64,
    pub decoding: Decoding,
    /// Prompts, one per sample, all of one length: each step count is then measured twice,
    /// continuing them and unconditionally (same seed). Empty: unconditional only.
    pub prompts: Vec<Vec<u32>>,
    /// Guidance strength λ toward the prompts.
    pub guidance: f64,
}

/// Samples the generator's model at every step count and measures each set.
/// `progress` hears one line per finished setting.
pub fn evaluate_samplers(
    generator: &Generator<'_>,
    settings: &EvalSettings,
    yardstick: Yardstick<'_>,
    device: &Device,
    progress: &mut dyn FnMut(&SamplerResult),
) -> Result<Vec<SamplerResult>, GenerateError> {
    let mut results = Vec::new();
    let conditionings = if settings.prompts.is_empty() {
        vec![Conditioning::None]
    } else {
        vec![
            Conditioning::Prefixes(settings.prompts.clone()),
            Conditioning::None,
        ]
    };
    for &steps in &settings.steps {
        for conditioning in &conditionings {
            let prompted = *conditioning != Conditioning::None;
            let request = GenerateRequest {
                steps,
                eta: settings.eta,
                seed: settings.seed,
                samples: settings.samples,
                batch: settings.batch,
                trajectory_top_k: 0,
                decoding: settings.decoding,
                conditioning: conditioning.clone(),
                guidance: if prompted { settings.guidance } else { 0.0 },
            };
            let generation = generator.generate_all(&request, device)?;
            let mut batch_secs: Vec<f64> = generation.batches.iter().map(|&(_, s)| s).collect();
            batch_secs.sort_by(f64::total_cmp);
            let result = SamplerResult {
                sampler: generation.sampler.name().to_string(),
                steps,
                prompted,
                eta: generation.sampler.eta(),
                metrics: SampleMetrics::compute(&generation.tokens, yardstick),
                secs_per_batch: batch_secs[batch_secs.len() / 2],
                batch: settings.batch.min(settings.samples),
                tokens_per_sec: (generation.tokens.len() * generator.seq_len) as f64
                    / generation.seconds().max(1e-9),
            };
            progress(&result);
            results.push(result);
        }
    }
    Ok(results)
}

/// Mean denoising cross-entropy at each of `CE_TAUS` on held-out sequences, with fixed noise.
/// A flow map is measured on its diagonal `δ̂_{τ,τ}`, which is its denoiser.
pub fn denoiser_cross_entropy(
    model: &Dit,
    held_out: &HeldOut,
    seq_len: usize,
    seed: u64,
    device: &Device,
) -> Vec<(f64, f64)> {
    let schedule = Schedule::new(model.vocab_size()).expect("a model has V ≥ 2");
    let vocab = model.vocab_size();
    let batch = 16;
    let sequences: Vec<&Vec<u32>> = held_out.sequences.iter().take(4 * batch).collect();
    CE_TAUS
        .iter()
        .map(|&tau| {
            let gamma = schedule.gamma(tau);
            let mut total = 0.0;
            let chunks: Vec<_> = sequences.chunks(batch).collect();
            for (index, chunk) in chunks.iter().enumerate() {
                let tokens: Vec<u32> = chunk.iter().flat_map(|s| s.iter().copied()).collect();
                let rows = chunk.len();
                let noise_seed = stream_rng(seed, (1 << 44) + index as u64).next_u64();
                let x = noisy_input(
                    &tokens,
                    &vec![gamma; rows],
                    seq_len,
                    vocab,
                    noise_seed,
                    KernelPath::Auto,
                    device,
                );
                let taus = Tensor::<1>::full([rows], tau as f32, device);
                let second = model.is_flow_map().then(|| taus.clone());
                let logits = model.forward(x, taus, second);
                let targets = token_tensor(&tokens, rows, seq_len, device);
                total += cross_entropy(logits, targets).into_scalar::<f32>() as f64;
            }
            (tau, total / chunks.len().max(1) as f64)
        })
        .collect()
}

/// Line colours of the models in the figure.
const PALETTE: [[u8; 3]; 4] = [
    [31, 119, 180],
    [214, 39, 40],
    [44, 160, 44],
    [148, 103, 189],
];

impl EvalReport {
    /// The report as a markdown document.
    pub fn markdown(&self) -> String {
        let mut out = String::from("# flm evaluation\n\n");
        out.push_str(&format!(
            "{} samples per setting, seed {}, L = {}, V = {}; reference model: {}; held-out text: {} sequences.\n\n",
            self.samples_per_setting,
            self.seed,
            self.seq_len,
            self.vocab_size,
            self.reference
                .as_deref()
                .map_or_else(|| "none".to_string(), |r| format!("`{r}`")),
            self.held_out_sequences
        ));
        if let Some(p) = &self.prompts {
            out.push_str(&format!(
                "Prompted rows: each of {} samples continues its own prompt, the first {} tokens of \
                 a sequence of `{}`, with {} generated tokens (guidance {}); unprompted rows \
                 use the same seed. Every row, the held-out text's too, is measured on its last {} \
                 tokens: gen-PPL scores each given all tokens before it.\n\n",
                p.prompts,
                p.prompt_tokens,
                p.file,
                p.continuation_tokens,
                p.guidance.map_or_else(
                    || format!(
                        "λ = {} for FLMs and {} for FMLMs, the defaults",
                        crate::generate::FLM_GUIDANCE,
                        crate::generate::FLOW_MAP_GUIDANCE
                    ),
                    |g| format!("λ = {g}")
                ),
                p.continuation_tokens
            ));
        }
        out.push_str("| model | sampler | steps | η | gen-PPL | unigram H | JS-1 | JS-2 | distinct-1/2/3 | repetition | valid | real words | s/batch | tokens/s |\n");
        out.push_str("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
        out.push_str(&table_row(
            "held-out text",
            "-",
            "-",
            "-",
            &self.held_out,
            "- | -",
        ));
        for model in &self.models {
            for r in &model.results {
                let sampler = if r.prompted {
                    format!("{}, prompted", r.sampler)
                } else {
                    r.sampler.clone()
                };
                out.push_str(&table_row(
                    &format!("`{}` ({})", model.model, model.kind),
                    &sampler,
                    &r.steps.to_string(),
                    &format!("{}", r.eta),
                    &r.metrics,
                    &format!("{:.3} | {:.0}", r.secs_per_batch, r.tokens_per_sec),
                ));
            }
        }
        out.push_str("\nDenoiser validation cross-entropy (nats/token) at fixed τ:\n\n| model |");
        for tau in CE_TAUS {
            out.push_str(&format!(" τ = {tau} |"));
        }
        out.push_str("\n|---|");
        out.push_str(&"---|".repeat(CE_TAUS.len()));
        for model in &self.models {
            out.push_str(&format!("\n| `{}` |", model.model));
            for (_, ce) in &model.denoiser_ce {
                out.push_str(&format!(" {ce:.4} |"));
            }
        }
        out.push_str(
            "\n\ngen-PPL: perplexity of the samples under the autoregressive reference model \
             (lower means more likely text, but dull, repetitive text scores low too). JS-1/JS-2: \
             Jensen–Shannon divergence of unigram/bigram token frequencies between the samples \
             and the held-out text (0 = same, ln 2 = 0.693 = disjoint). repetition: share of \
             4-grams that repeat an earlier one in the same sample. real words: share of the samples' \
             words that occur in the training text. s/batch: median wall time \
             of one sampling batch.\n",
        );
        out
    }

    /// Quality against steps and against wall time (the paper's "time vs PPL" figure), one
    /// line per model: gen-PPL when a reference model scored the samples, else validity for
    /// built-in tasks, else the bigram JS divergence.
    pub fn charts(&self) -> Vec<Chart> {
        let has_validity = self.held_out.validity.is_some();
        let (y_label, quality): (&str, fn(&SampleMetrics) -> f64) = if self.reference.is_some() {
            ("gen-PPL", |m| m.gen_ppl.unwrap_or(f64::NAN))
        } else if has_validity {
            ("valid %", |m| m.validity.map_or(f64::NAN, |v| 100.0 * v))
        } else {
            ("JS bigram", |m| m.js_bigram)
        };
        let lines = |x: fn(&SamplerResult) -> f64| {
            let mut series = Vec::new();
            for (model, &color) in self.models.iter().zip(PALETTE.iter().cycle()) {
                for prompted in [false, true] {
                    let points: Vec<(f64, f64)> = model
                        .results
                        .iter()
                        .filter(|r| r.prompted == prompted)
                        .map(|r| (x(r), quality(&r.metrics)))
                        .collect();
                    if points.is_empty() {
                        continue;
                    }
                    let name = short_name(&model.model);
                    series.push(Series {
                        label: if prompted {
                            format!("{name} ({}, prompted)", model.kind)
                        } else {
                            format!("{name} ({})", model.kind)
                        },
                        // Prompted lines in a lighter shade of their model's colour.
                        color: if prompted {
                            color.map(|c| c / 2 + 128)
                        } else {
                            color
                        },
                        points,
                    });
                }
            }
            series
        };
        vec![
            Chart {
                title: format!("{y_label} vs steps"),
                x_label: "steps".into(),
                y_label: y_label.into(),
                x_log: true,
                series: lines(|r| r.steps as f64),
            },
            Chart {
                title: format!("{y_label} vs time"),
                x_label: "seconds per batch".into(),
                y_label: y_label.into(),
                x_log: true,
                series: lines(|r| r.secs_per_batch),
            },
        ]
    }
}

fn table_row(
    model: &str,
    sampler: &str,
    steps: &str,
    eta: &str,
    m: &SampleMetrics,
    speed: &str,
) -> String {
    format!(
        "| {model} | {sampler} | {steps} | {eta} | {} | {:.3} | {:.4} | {:.4} | {:.3} / {:.3} / {:.3} | {:.3} | {} | {} | {speed} |\n",
        m.gen_ppl.map_or_else(|| "-".into(), |p| format!("{p:.1}")),
        m.unigram_entropy,
        m.js_unigram,
        m.js_bigram,
        m.distinct[0],
        m.distinct[1],
        m.distinct[2],
        m.repetition,
        m.validity
            .map_or_else(|| "-".into(), |v| format!("{:.1}%", v * 100.0)),
        m.real_words
            .map_or_else(|| "-".into(), |v| format!("{:.1}%", v * 100.0)),
    )
}

/// The last path component, for legends.
fn short_name(path: &str) -> &str {
    path.trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or(path)
}
