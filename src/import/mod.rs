//! Interoperation with the paper's PyTorch code (github.com/david3684/flm):
//!
//! - [`import_official`] turns a released checkpoint (`lm1b_flm.ckpt`, `owt_fmlm.ckpt`, ...: a
//!   PyTorch Lightning `.ckpt`) or an official-layout `model.safetensors` into an ordinary flm
//!   run directory, which `flm sample`, `flm info` and the app open like any other;
//! - [`forward_file`] runs a run's network on inputs from a safetensors file and writes its raw
//!   logits and probabilities, for comparing flm with the PyTorch code number by number;
//! - [`export_official`] writes a run in the official layout (state-dict names, PyTorch's
//!   (out, in) `Linear` weights), which the official `DIT` loads with `load_state_dict`.
//!
//! [`official`] says how the two networks' tensors correspond. Everything here works on plain
//! paths and returns plain results, so a front end can run it on a worker thread.

mod export;
mod forward;
pub mod official;
pub(crate) mod source;

use std::fs;
use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::data::{DataError, TextTokenizer, TokenizerKind};
use crate::device::cpu_device;
use crate::flow::distill::DistillSettings;
use crate::model::{Dit, ModelConfig};
use crate::train::RunLock;
use crate::train::checkpoint::{CheckpointError, RunDir, model_bytes, write_atomic, write_json};
use crate::train::config::SCHEMA_VERSION;
use crate::train::{
    DataConfig, DistillConfig, ImportedFrom, ModelKind, RunConfig, TrainConfig, WeightSet,
};

pub use export::{
    ExportError, OFFICIAL_FILES, OfficialExport, export_official, export_official_to,
};
pub use forward::{ForwardError, ForwardSummary, forward_file};
use official::{LayoutProblem, OfficialDims};
use source::OfficialSource;

/// Sequence lengths of the paper's released models, recognised by their vocabularies (the
/// Lightning checkpoint keeps `model.length` in a pickled OmegaConf object no Rust reader
/// interprets): LM1B with bert-base-uncased (30522 tokens) at 128, OpenWebText with GPT-2
/// (50257 tokens, plus the `[PAD]` the paper's data loader adds) at 1024.
const KNOWN_LENGTHS: [(usize, usize, &str); 3] = [
    (30522, 128, "LM1B with bert-base-uncased"),
    (50257, 1024, "OpenWebText with GPT-2"),
    (50258, 1024, "OpenWebText with GPT-2 and [PAD]"),
];

/// The padding token the paper's data loader adds to tokenizers without one (GPT-2's).
const ADDED_PAD: &str = "[PAD]";

/// Everything that can go wrong importing a model.
#[derive(Debug, Error)]
pub enum ImportError {
    #[error(
        "{path}: no such file\n  hint: pass a checkpoint of the paper's code (lm1b_flm.ckpt, owt_fmlm.ckpt, ...) or a folder written by `flm export --layout official`"
    )]
    NotFound { path: PathBuf },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{path} is not a PyTorch checkpoint: {reason}\n  hint: pass a `.ckpt` of the paper's code (a `torch.save` zip archive) or an official-layout `model.safetensors`"
    )]
    NotACheckpoint { path: PathBuf, reason: String },
    #[error(
        "{path} is truncated or damaged: {reason}\n  hint: download it again and compare its size with the published one"
    )]
    Damaged { path: PathBuf, reason: String },
    #[error(
        "{path} does not hold the paper's DiT: {}\n  hint: flm imports the FLM / FMLM DiT of github.com/david3684/flm (state-dict keys `backbone.<name>`)",
        name_lists(.missing, .unexpected)
    )]
    NotOfficialDit {
        path: PathBuf,
        missing: Vec<String>,
        unexpected: Vec<String>,
    },
    #[error(
        "{path}: tensor `{name}` has shape {found:?}, but the other tensors imply {expected:?}\n  hint: the file does not hold the paper's DiT, or was damaged"
    )]
    Shape {
        path: PathBuf,
        name: String,
        expected: Vec<usize>,
        found: Vec<usize>,
    },
    #[error("{path}: cannot tell the number of attention heads: {reason}\n  hint: pass --heads N")]
    Heads { path: PathBuf, reason: String },
    #[error(
        "{path} holds no EMA weights (`ema.shadow_params`)\n  hint: import the trained weights with --weights online"
    )]
    NoEma { path: PathBuf },
    #[error(
        "{path}: the EMA list has {found} tensors but the model has {expected} parameters, so they cannot be matched by position\n  hint: import the trained weights with --weights online"
    )]
    EmaCount {
        path: PathBuf,
        found: usize,
        expected: usize,
    },
    #[error(
        "{path}: EMA tensor {index} has shape {found:?}, but parameter `{name}` in that position has {expected:?}\n  hint: import the trained weights with --weights online"
    )]
    EmaShape {
        path: PathBuf,
        index: usize,
        name: String,
        expected: Vec<usize>,
        found: Vec<usize>,
    },
    #[error(
        "{path} holds one set of weights; --weights online applies to Lightning checkpoints\n  hint: leave out --weights"
    )]
    OneWeightSet { path: PathBuf },
    #[error(
        "tensor `{name}` is stored as {dtype}, which flm cannot read\n  hint: save the weights as float32, float16 or bfloat16"
    )]
    UnsupportedDtype { name: String, dtype: String },
    #[error(
        "the model's sequence length is not in the checkpoint and its vocabulary ({vocab}) is not one of the released models'\n  hint: pass --seq-len L (the `model.length` it was trained with)"
    )]
    SeqLen { vocab: usize },
    #[error(
        "the model needs a tokenizer of {vocab} tokens\n  hint: pass --tokenizer tokenizer.json{suggestion}"
    )]
    NoTokenizer { vocab: usize, suggestion: String },
    #[error(
        "{path} has {tokenizer} tokens but the model's embedding has {model} rows\n  hint: pass the tokenizer the model was trained with{suggestion}"
    )]
    TokenizerSize {
        path: PathBuf,
        tokenizer: usize,
        model: usize,
        suggestion: String,
    },
    #[error("{0}\n  hint: pass a positive --seq-len")]
    InvalidConfig(String),
    #[error("{0} already holds a run (config.json)\n  hint: import into a new or empty folder")]
    OutputExists(PathBuf),
    #[error(transparent)]
    Tokenizer(#[from] DataError),
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
}

/// `"missing a, b, c (and 4 more); unexpected d"`, leaving out an empty list.
fn name_lists(missing: &[String], unexpected: &[String]) -> String {
    const SHOWN: usize = 8;
    let list = |label: &str, names: &[String]| {
        let shown = names[..names.len().min(SHOWN)].join(", ");
        match names.len().saturating_sub(SHOWN) {
            0 => format!("{label} {shown}"),
            more => format!("{label} {shown} (and {more} more)"),
        }
    };
    [("missing", missing), ("unexpected", unexpected)]
        .into_iter()
        .filter(|(_, names)| !names.is_empty())
        .map(|(label, names)| list(label, names))
        .collect::<Vec<_>>()
        .join("; ")
}

impl ImportError {
    fn io(path: &Path, source: std::io::Error) -> Self {
        if source.kind() == std::io::ErrorKind::NotFound {
            Self::NotFound {
                path: path.to_path_buf(),
            }
        } else {
            Self::Io {
                path: path.to_path_buf(),
                source,
            }
        }
    }

    fn layout(path: &Path, problem: LayoutProblem) -> Self {
        let path = path.to_path_buf();
        match problem {
            LayoutProblem::Names {
                missing,
                unexpected,
            } => Self::NotOfficialDit {
                path,
                missing,
                unexpected,
            },
            LayoutProblem::Shape {
                name,
                expected,
                found,
            } => Self::Shape {
                path,
                name,
                expected,
                found,
            },
            LayoutProblem::Heads(reason) => Self::Heads { path, reason },
        }
    }
}

/// The choices `flm import` offers.
#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    /// A Hugging Face `tokenizer.json` with as many tokens as the model's vocabulary (or one
    /// fewer: then `[PAD]` is added, as the paper's data loader does for GPT-2). Required for a
    /// Lightning checkpoint; an official-layout folder's own `tokenizer.json` is the default.
    pub tokenizer: Option<PathBuf>,
    /// Which weights of a Lightning checkpoint: the EMA (the default, what the paper samples)
    /// or the online ones.
    pub weights: WeightSet,
    /// Number of attention heads, for files without the rotary buffer that implies it.
    pub heads: Option<usize>,
    /// Sequence length L that sampling uses (the model itself works at any length).
    pub seq_len: Option<usize>,
}

/// What [`import_official`] made.
#[derive(Debug, Clone)]
pub struct ImportSummary {
    /// The new run directory.
    pub out: PathBuf,
    pub kind: ModelKind,
    pub config: RunConfig,
    pub num_params: usize,
    /// Where the sequence length came from.
    pub seq_len_from: String,
    /// Notes for the user (an added `[PAD]` token, say).
    pub notes: Vec<String>,
}

/// Imports the paper's model at `from` (a Lightning `.ckpt`, an official-layout
/// `model.safetensors` or its folder) into a new flm run directory `out` (created if missing;
/// refused if it already holds a run). The run holds `config.json`, `tokenizer.json` and the
/// chosen weights as `model.safetensors`, and loads with [`crate::train::load_model`].
pub fn import_official(
    from: &Path,
    out: &Path,
    options: &ImportOptions,
) -> Result<ImportSummary, ImportError> {
    let run = RunDir::new(out);
    if run.config_path().exists() {
        return Err(ImportError::OutputExists(out.to_path_buf()));
    }
    let source = OfficialSource::open(from, options.weights, options.heads)?;
    let dims = source.dims;
    let mut notes = Vec::new();
    let (seq_len, seq_len_from) = sequence_length(&source, options.seq_len)?;
    let tokenizer = import_tokenizer(&source, options.tokenizer.as_deref(), &mut notes)?;
    let config = run_config(&source, from, seq_len)?;

    let model = build_model(&source, &config.model)?;
    drop(source); // the file's tensors are no longer needed: the model holds the weights
    let bytes = model_bytes(&model);
    drop(model);

    fs::create_dir_all(out).map_err(|source| ImportError::io(out, source))?;
    // Held while writing, and the check repeated under it: two imports (or an import and a
    // training run) into one folder cannot interleave their files.
    let _lock = RunLock::acquire(out)?;
    if run.config_path().exists() {
        return Err(ImportError::OutputExists(out.to_path_buf()));
    }
    write_atomic(&out.join("model.safetensors"), &bytes)?;
    drop(bytes);
    tokenizer.save(&run.tokenizer_path())?;
    // Written last: until it exists the folder is not a run, so a failed import never
    // leaves something that looks like one.
    write_json(&run.config_path(), &config)?;
    if dims.double_temb {
        notes.push(
            "a flow map (FMLM): `flm sample` jumps from noise to text in --steps 1 or more".into(),
        );
    }
    Ok(ImportSummary {
        out: out.to_path_buf(),
        kind: config.kind,
        num_params: config.model.num_params(),
        config,
        seq_len_from,
        notes,
    })
}

fn sequence_length(
    source: &OfficialSource,
    requested: Option<usize>,
) -> Result<(usize, String), ImportError> {
    if let Some(len) = requested {
        return Ok((len, "--seq-len".into()));
    }
    if let Some(len) = source.seq_len {
        return Ok((len, "config.yaml".into()));
    }
    let vocab = source.dims.vocab_size;
    KNOWN_LENGTHS
        .iter()
        .find(|(v, _, _)| *v == vocab)
        .map(|(_, len, what)| (*len, format!("the released {what}")))
        .ok_or(ImportError::SeqLen { vocab })
}

/// Where to find the tokenizer for a vocabulary of `vocab` tokens, as a hint.
fn tokenizer_suggestion(vocab: usize) -> String {
    match vocab {
        30522 => " (bert-base-uncased's tokenizer.json from the Hugging Face hub)".into(),
        50257 | 50258 => " (gpt2's tokenizer.json from the Hugging Face hub)".into(),
        _ => String::new(),
    }
}

fn import_tokenizer(
    source: &OfficialSource,
    requested: Option<&Path>,
    notes: &mut Vec<String>,
) -> Result<TextTokenizer, ImportError> {
    let vocab = source.dims.vocab_size;
    let path = requested
        .map(Path::to_path_buf)
        .or_else(|| source.tokenizer.clone())
        .ok_or_else(|| ImportError::NoTokenizer {
            vocab,
            suggestion: tokenizer_suggestion(vocab),
        })?;
    let tokenizer = TextTokenizer::load_pretrained(&path)?;
    if tokenizer.vocab_size() + 1 == vocab
        && let Some(padded) = tokenizer.with_added_special_token(ADDED_PAD)
    {
        let padded = padded?;
        notes.push(format!(
            "added {ADDED_PAD} as token {} (the paper's data loader adds it to tokenizers \
             without a padding token)",
            vocab - 1
        ));
        return Ok(padded);
    }
    if tokenizer.vocab_size() != vocab {
        return Err(ImportError::TokenizerSize {
            path,
            tokenizer: tokenizer.vocab_size(),
            model: vocab,
            suggestion: tokenizer_suggestion(vocab),
        });
    }
    Ok(tokenizer)
}

/// flm's configuration of an official model: its sizes, and the official forward pass's
/// constants (256 time features, attention cap 50, LayerNorm ε 1e-5) and the v2 algorithm's
/// logit cap 30.
pub fn model_config(dims: &OfficialDims, seq_len: usize) -> ModelConfig {
    ModelConfig {
        vocab_size: dims.vocab_size,
        seq_len,
        d_model: dims.hidden_size,
        n_blocks: dims.n_blocks,
        n_heads: dims.n_heads,
        cond_dim: dims.cond_dim,
        time_features: official::TIME_FEATURES,
        two_times: dims.double_temb,
        attn_softcap: official::ATTENTION_SOFTCAP,
        logit_softcap: Some(official::LOGIT_SOFTCAP),
        causal: false,
        layer_norm_eps: ModelConfig::TORCH_LAYER_NORM_EPS,
    }
}

fn run_config(
    source: &OfficialSource,
    from: &Path,
    seq_len: usize,
) -> Result<RunConfig, ImportError> {
    let model = model_config(&source.dims, seq_len);
    let flow_map = model.two_times;
    let config = RunConfig {
        schema_version: SCHEMA_VERSION,
        kind: if flow_map {
            ModelKind::FlowMap
        } else {
            ModelKind::Flm
        },
        data: DataConfig {
            source: format!("imported:{}", from.display()),
            valid: None,
            tokenizer: TokenizerKind::Pretrained,
            vocab_size: model.vocab_size,
            seq_len,
        },
        model,
        train: if flow_map {
            TrainConfig::flow_map_defaults()
        } else {
            TrainConfig::default()
        },
        // The paper distils its flow maps from a teacher flm does not have: no teacher, and the
        // paper's own settings, which need none (nothing reads them unless the run is trained
        // further, and then it self-distils).
        distill: flow_map.then(|| DistillConfig {
            teacher: None,
            settings: DistillSettings::paper(0.5),
        }),
        created_with: format!("flm {} (flm import)", env!("CARGO_PKG_VERSION")),
        imported_from: Some(ImportedFrom {
            source: from.to_path_buf(),
            format: source.format,
            weights: source.weights,
            step: source.step,
        }),
    };
    config.validate().map_err(ImportError::InvalidConfig)?;
    crate::limits::check_memory(&config.model, 1, crate::limits::Use::Inference)
        .map_err(ImportError::InvalidConfig)?;
    Ok(config)
}

/// Builds flm's model from the file's tensors, one at a time, each transposed into flm's
/// layout where PyTorch's differs.
fn build_model(source: &OfficialSource, config: &ModelConfig) -> Result<Dit, ImportError> {
    let specs: std::collections::HashMap<String, official::ParamSpec> = source
        .dims
        .parameters()
        .into_iter()
        .map(|spec| (spec.flm.clone(), spec))
        .collect();
    Dit::from_weights(config, &cpu_device(), &mut |path, shape| {
        let spec = specs.get(path).ok_or_else(|| ImportError::NotOfficialDit {
            path: source.path.clone(),
            missing: vec![format!("(flm parameter {path})")],
            unexpected: Vec::new(),
        })?;
        debug_assert_eq!(spec.flm_shape(), shape);
        let values = source.read(&spec.official)?;
        if values.len() != shape.iter().product::<usize>() {
            return Err(ImportError::Damaged {
                path: source.path.clone(),
                reason: format!("tensor `{}` holds {} values", spec.official, values.len()),
            });
        }
        Ok(if spec.transpose {
            transpose(&values, spec.shape[0], spec.shape[1])
        } else {
            values
        })
    })
}

/// A row-major (rows, cols) matrix as row-major (cols, rows).
fn transpose(values: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut out = vec![0.0; values.len()];
    for (r, row) in values.chunks_exact(cols).enumerate() {
        for (c, &value) in row.iter().enumerate() {
            out[c * rows + r] = value;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transpose_swaps_rows_and_columns() {
        let m = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]; // 2 × 3
        assert_eq!(transpose(&m, 2, 3), [1.0, 4.0, 2.0, 5.0, 3.0, 6.0]);
        assert_eq!(transpose(&transpose(&m, 2, 3), 3, 2), m);
    }

    #[test]
    fn error_lists_are_shortened() {
        let names: Vec<String> = (0..10).map(|i| format!("t{i}")).collect();
        assert_eq!(
            name_lists(&names, &[]),
            "missing t0, t1, t2, t3, t4, t5, t6, t7 (and 2 more)"
        );
        assert_eq!(
            name_lists(&names[..1], &names[9..]),
            "missing t0; unexpected t9"
        );
        assert_eq!(name_lists(&[], &names[..2]), "unexpected t0, t1");
    }

    #[test]
    fn released_vocabularies_give_the_released_lengths() {
        let lengths: Vec<usize> = KNOWN_LENGTHS.iter().map(|(_, len, _)| *len).collect();
        assert_eq!(lengths, [128, 1024, 1024]);
    }
}
