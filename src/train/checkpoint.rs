//! Checkpoint directories (DESIGN §10).
//!
//! ```text
//! run/
//!   config.json        model + data + training settings, schema version
//!   tokenizer.json
//!   metrics.jsonl      one JSON object per logged step / validation
//!   teacher.safetensors  distilled flow maps only: the frozen FLM teacher's weights
//!   checkpoint/        replaced as a whole, so a crash never leaves a mix of two steps
//!     model.safetensors      EMA weights: what sampling, evaluation and export use
//!     online.safetensors     the weights being optimised
//!     optimizer.safetensors  AdamW moments
//!     state.json             step, elapsed time, last losses
//! ```
//! A new checkpoint is written to `checkpoint.new/`, then swapped in with two renames; if a
//! crash hits between them, loading falls back to the complete `checkpoint.old/`.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use burn::store::{ModuleSnapshot, SafetensorsStore};
use burn::tensor::Device;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::config::{RunConfig, SCHEMA_VERSION};
use super::optimizer::{AdamW, AdamWSettings};
use crate::data::{DataError, TextTokenizer};
use crate::model::Dit;

/// Everything that can go wrong reading or writing a run directory.
#[derive(Debug, Error)]
pub enum CheckpointError {
    /// The OS error is part of the message and deliberately not a `source`: printed with its
    /// cause chain (`{:#}`) it would otherwise appear twice.
    #[error("{path}: {error}")]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error(
        "`{0}` is not a checkpoint directory (no config.json)\n  hint: pass the --out directory of `flm train`"
    )]
    NotACheckpoint(PathBuf),
    #[error(
        "`{0}` has a config but no saved weights yet (training never reached its first checkpoint)"
    )]
    NoWeights(PathBuf),
    #[error("{path} is corrupt: {reason}")]
    Corrupt { path: PathBuf, reason: String },
    #[error(
        "{path} was written by a different version of flm (schema {found}, this build reads {expected})"
    )]
    Schema {
        path: PathBuf,
        found: u32,
        expected: u32,
    },
    #[error("checkpoint mismatch in {path}: {reason}")]
    Mismatch { path: PathBuf, reason: String },
    #[error("{path}: {reason}")]
    TooLarge { path: PathBuf, reason: String },
    #[error(
        "`{path}` is being written by another flm process{holder}\n  hint: wait for that \
         training to finish (or stop it), or choose another --out"
    )]
    Locked { path: PathBuf, holder: String },
    #[error("cannot export into `{path}`: {reason}\n  hint: {hint}")]
    ExportTarget {
        path: PathBuf,
        reason: String,
        hint: &'static str,
    },
    #[error(transparent)]
    Data(#[from] DataError),
}

/// Progress saved with every checkpoint, for resume and `flm info`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainingState {
    pub step: u64,
    pub elapsed_secs: f64,
    pub tokens_seen: u64,
    pub last_train_loss: Option<f64>,
    pub last_valid_loss: Option<f64>,
}

/// Paths inside a run directory.
#[derive(Debug, Clone)]
pub struct RunDir {
    root: PathBuf,
}

const WEIGHTS_DIR: &str = "checkpoint";
/// A distilled flow map's frozen teacher, beside its config.
pub const TEACHER_FILE: &str = "teacher.safetensors";

impl RunDir {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }
    pub fn root(&self) -> &Path {
        &self.root
    }
    pub fn config_path(&self) -> PathBuf {
        self.root.join("config.json")
    }
    pub fn tokenizer_path(&self) -> PathBuf {
        self.root.join("tokenizer.json")
    }
    pub fn metrics_path(&self) -> PathBuf {
        self.root.join("metrics.jsonl")
    }
    pub fn teacher_path(&self) -> PathBuf {
        self.root.join(TEACHER_FILE)
    }
    /// The directory holding the current weights, accepting a crash-interrupted swap and flat
    /// (exported) layouts where `model.safetensors` sits next to `config.json`.
    pub fn weights_dir(&self) -> Option<PathBuf> {
        let candidates = [
            self.root.join(WEIGHTS_DIR),
            self.root.join(format!("{WEIGHTS_DIR}.old")),
            self.root.clone(),
        ];
        candidates
            .into_iter()
            .find(|dir| dir.join("model.safetensors").is_file())
    }
    /// The checkpoint training resumes from: a full one, with optimizer state (never the
    /// flat layout of an exported model).
    pub fn resume_dir(&self) -> Option<PathBuf> {
        [
            self.root.join(WEIGHTS_DIR),
            self.root.join(format!("{WEIGHTS_DIR}.old")),
        ]
        .into_iter()
        .find(|dir| dir.join("state.json").is_file())
    }
    pub fn has_checkpoint(&self) -> bool {
        self.resume_dir().is_some()
    }
}

/// Writes `bytes` to `path` via a temporary file and a rename, so readers never see half a file.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), CheckpointError> {
    let io = |source| CheckpointError::Io {
        path: path.to_path_buf(),
        error: source,
    };
    let tmp = path.with_extension(format!(
        "{}.tmp",
        path.extension().and_then(|e| e.to_str()).unwrap_or("")
    ));
    let mut file = fs::File::create(&tmp).map_err(io)?;
    file.write_all(bytes).map_err(io)?;
    file.sync_all().map_err(io)?;
    drop(file);
    fs::rename(&tmp, path).map_err(io)
}

/// Makes renames and deletions inside `dir` durable before the next step relies on them.
fn sync_dir(dir: &Path) -> Result<(), CheckpointError> {
    #[cfg(unix)]
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|source| CheckpointError::Io {
            path: dir.to_path_buf(),
            error: source,
        })?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

pub fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), CheckpointError> {
    let text = serde_json::to_string_pretty(value).expect("config types serialize");
    write_atomic(path, text.as_bytes())
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T, CheckpointError> {
    let text = fs::read_to_string(path).map_err(|source| CheckpointError::Io {
        path: path.to_path_buf(),
        error: source,
    })?;
    serde_json::from_str(&text).map_err(|e| CheckpointError::Corrupt {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

/// Reads and checks `config.json`.
pub fn load_config(run: &RunDir) -> Result<RunConfig, CheckpointError> {
    let path = run.config_path();
    if !path.is_file() {
        return Err(CheckpointError::NotACheckpoint(run.root().to_path_buf()));
    }
    let raw: serde_json::Value = read_json(&path)?;
    let found = raw
        .get("schema_version")
        .and_then(|v| v.as_u64())
        .unwrap_or(0) as u32;
    if found != SCHEMA_VERSION {
        return Err(CheckpointError::Schema {
            path,
            found,
            expected: SCHEMA_VERSION,
        });
    }
    let config: RunConfig = serde_json::from_value(raw).map_err(|e| CheckpointError::Corrupt {
        path: path.clone(),
        reason: e.to_string(),
    })?;
    config
        .validate()
        .map_err(|reason| CheckpointError::Corrupt { path, reason })?;
    Ok(config)
}

/// Loads the tokenizer and checks it matches the model's vocabulary.
pub fn load_tokenizer(run: &RunDir, config: &RunConfig) -> Result<TextTokenizer, CheckpointError> {
    let tokenizer = TextTokenizer::load_as(config.data.tokenizer, &run.tokenizer_path())?;
    if tokenizer.vocab_size() != config.model.vocab_size {
        return Err(CheckpointError::Mismatch {
            path: run.tokenizer_path(),
            reason: format!(
                "the tokenizer has {} tokens but the model expects {}",
                tokenizer.vocab_size(),
                config.model.vocab_size
            ),
        });
    }
    Ok(tokenizer)
}

/// A model's weights as the bytes of `model.safetensors`, in the layout [`load_weights`] reads.
pub(crate) fn model_bytes(model: &Dit) -> Vec<u8> {
    let mut store = SafetensorsStore::from_bytes(None);
    model
        .save_into(&mut store)
        .expect("serializing weights to memory cannot fail");
    store.get_bytes().expect("bytes were just written")
}

/// Loads weights saved by [`save_checkpoint`] into a fresh model of `config`'s shape.
///
/// Before any tensor is built, the model's memory is estimated against what the machine has
/// ([`crate::limits::check_memory`]) and the file's header (names, shapes, dtypes) is
/// compared with the parameters the config implies ([`check_header`]).
pub fn load_weights(
    path: &Path,
    config: &RunConfig,
    device: &Device,
) -> Result<Dit, CheckpointError> {
    crate::limits::check_memory(&config.model, 1, crate::limits::Use::Inference).map_err(
        |reason| CheckpointError::TooLarge {
            path: path.to_path_buf(),
            reason,
        },
    )?;
    let bytes = fs::read(path).map_err(|source| CheckpointError::Io {
        path: path.to_path_buf(),
        error: source,
    })?;
    // Parse the header ourselves first: truncated or foreign files get a clear message.
    let tensors =
        safetensors::SafeTensors::deserialize(&bytes).map_err(|e| CheckpointError::Corrupt {
            path: path.to_path_buf(),
            reason: format!("not a readable safetensors file ({e})"),
        })?;
    let mismatch = |reason: String| CheckpointError::Mismatch {
        path: path.to_path_buf(),
        reason,
    };
    check_header(&tensors, &config.model).map_err(mismatch)?;
    // Each parameter is read straight from the file into the model: no initial weights are
    // drawn and the bytes are not copied, so a large model is held about twice at most (the
    // file and the model), once when this returns.
    Dit::from_weights(&config.model, device, &mut |name, shape| {
        let view = tensors
            .tensor(name)
            .map_err(|_| mismatch(format!("tensor `{name}` is missing")))?;
        let stored: usize = view.shape().iter().product();
        let wanted: usize = shape.iter().product();
        if stored != wanted || view.dtype() != safetensors::Dtype::F32 {
            return Err(mismatch(format!(
                "tensor `{name}` does not match config.json"
            )));
        }
        Ok(view
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect())
    })
}

/// How many problems a mismatch message lists before "and N more".
const LISTED_PROBLEMS: usize = 6;

/// Compares a weights file's header with the parameters `model` implies: every name present,
/// no stranger, each of the expected shape and float32. The error lists the first few
/// differences, one per line, and what they suggest.
pub fn check_header(
    tensors: &safetensors::SafeTensors<'_>,
    model: &crate::model::ModelConfig,
) -> Result<(), String> {
    let expected = Dit::weight_shapes(model);
    let mut problems = Vec::new();
    for (name, shape) in &expected {
        match tensors.tensor(name) {
            Err(_) => problems.push(format!("tensor `{name}` is missing")),
            Ok(view) if view.shape() != shape.as_slice() => problems.push(format!(
                "tensor `{name}` has shape {:?} but config.json implies {shape:?}",
                view.shape()
            )),
            Ok(view) if view.dtype() != safetensors::Dtype::F32 => problems.push(format!(
                "tensor `{name}` is {:?}, not float32",
                view.dtype()
            )),
            Ok(_) => {}
        }
    }
    let known: std::collections::HashSet<&str> =
        expected.iter().map(|(name, _)| name.as_str()).collect();
    let mut unexpected: Vec<String> = tensors
        .names()
        .into_iter()
        .filter(|name| !known.contains(name))
        .map(str::to_string)
        .collect();
    unexpected.sort();
    problems.extend(
        unexpected
            .into_iter()
            .map(|name| format!("tensor `{name}` is not part of this model")),
    );
    if problems.is_empty() {
        return Ok(());
    }
    let total = problems.len();
    let mut text = format!(
        "the weights do not fit the model config.json describes (d_model {}, {} blocks,          vocabulary {}, {}):",
        model.d_model,
        model.n_blocks,
        model.vocab_size,
        if model.two_times {
            "two times"
        } else {
            "one time"
        }
    );
    for problem in problems.iter().take(LISTED_PROBLEMS) {
        text.push_str("\n    ");
        text.push_str(problem);
    }
    if total > LISTED_PROBLEMS {
        text.push_str(&format!("\n    … and {} more", total - LISTED_PROBLEMS));
    }
    text.push_str(
        "\n  hint: config.json was edited, or the weights come from another run; restore the \
         run's own config.json",
    );
    Err(text)
}

fn optimizer_bytes(optimizer: &AdamW) -> Vec<u8> {
    let (steps, tensors) = optimizer.export();
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = tensors
        .iter()
        .map(|(name, values)| {
            let view = safetensors::tensor::TensorView::new(
                safetensors::Dtype::F32,
                vec![values.len()],
                bytemuck_f32(values),
            )
            .expect("shape matches data");
            (name.clone(), view)
        })
        .collect();
    let metadata = [("steps_taken".to_string(), steps.to_string())]
        .into_iter()
        .collect();
    safetensors::serialize(views, Some(metadata)).expect("serializing to memory")
}

fn bytemuck_f32(values: &[f32]) -> &[u8] {
    // SAFETY: f32 has no padding or invalid bit patterns; the byte view lives as long as `values`.
    unsafe {
        std::slice::from_raw_parts(values.as_ptr().cast::<u8>(), std::mem::size_of_val(values))
    }
}

fn load_optimizer(
    path: &Path,
    settings: AdamWSettings,
    device: &Device,
) -> Result<AdamW, CheckpointError> {
    let corrupt = |reason: String| CheckpointError::Corrupt {
        path: path.to_path_buf(),
        reason,
    };
    let bytes = fs::read(path).map_err(|source| CheckpointError::Io {
        path: path.to_path_buf(),
        error: source,
    })?;
    let (_, metadata) = safetensors::SafeTensors::read_metadata(&bytes)
        .map_err(|e| corrupt(format!("unreadable header ({e})")))?;
    let steps: u64 = metadata
        .metadata()
        .as_ref()
        .and_then(|m| m.get("steps_taken"))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| corrupt("missing steps_taken".into()))?;
    let tensors = safetensors::SafeTensors::deserialize(&bytes)
        .map_err(|e| corrupt(format!("unreadable tensors ({e})")))?;
    let mut named = Vec::new();
    for (name, view) in tensors.tensors() {
        if view.dtype() != safetensors::Dtype::F32 {
            return Err(corrupt(format!("tensor `{name}` is not f32")));
        }
        let values = view
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        named.push((name, values));
    }
    AdamW::import(settings, steps, named, device).map_err(corrupt)
}

/// The state needed to continue training exactly where it stopped.
pub struct ResumeState {
    pub online: Dit,
    pub ema: Dit,
    pub optimizer: AdamW,
    pub state: TrainingState,
}

/// Writes a complete checkpoint of the current step (see the module docs for atomicity).
pub fn save_checkpoint(
    run: &RunDir,
    online: &Dit,
    ema: &Dit,
    optimizer: &AdamW,
    state: &TrainingState,
) -> Result<PathBuf, CheckpointError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| CheckpointError::Io {
            path,
            error: source,
        }
    };
    let fresh = run.root().join(format!("{WEIGHTS_DIR}.new"));
    let current = run.root().join(WEIGHTS_DIR);
    let old = run.root().join(format!("{WEIGHTS_DIR}.old"));
    if fresh.exists() {
        fs::remove_dir_all(&fresh).map_err(io(&fresh))?;
    }
    fs::create_dir_all(&fresh).map_err(io(&fresh))?;
    write_atomic(&fresh.join("model.safetensors"), &model_bytes(ema))?;
    write_atomic(&fresh.join("online.safetensors"), &model_bytes(online))?;
    write_atomic(
        &fresh.join("optimizer.safetensors"),
        &optimizer_bytes(optimizer),
    )?;
    write_json(&fresh.join("state.json"), state)?;
    sync_dir(&fresh)?;

    if current.exists() {
        if old.exists() {
            fs::remove_dir_all(&old).map_err(io(&old))?;
        }
        fs::rename(&current, &old).map_err(io(&current))?;
    }
    fs::rename(&fresh, &current).map_err(io(&fresh))?;
    sync_dir(run.root())?;
    if old.exists() {
        fs::remove_dir_all(&old).map_err(io(&old))?;
    }
    Ok(current)
}

/// Reads the training state of the newest complete checkpoint.
pub fn load_state(run: &RunDir) -> Result<TrainingState, CheckpointError> {
    let dir = run
        .weights_dir()
        .ok_or_else(|| CheckpointError::NoWeights(run.root().to_path_buf()))?;
    read_json(&dir.join("state.json"))
}

/// Loads everything `--resume` needs; `device` must be the autodiff device for `online`.
pub fn load_resume_state(
    run: &RunDir,
    config: &RunConfig,
    device: &Device,
) -> Result<ResumeState, CheckpointError> {
    use burn::module::Module;
    let dir = run.resume_dir().ok_or_else(|| {
        if run.weights_dir().is_some() {
            CheckpointError::Mismatch {
                path: run.root().to_path_buf(),
                reason: "this is an exported model without training state; it can be sampled \
                         but not resumed"
                    .into(),
            }
        } else {
            CheckpointError::NoWeights(run.root().to_path_buf())
        }
    })?;
    let state: TrainingState = read_json(&dir.join("state.json"))?;
    let online = load_weights(&dir.join("online.safetensors"), config, device)?;
    let ema = load_weights(&dir.join("model.safetensors"), config, device)?.valid();
    let optimizer = load_optimizer(
        &dir.join("optimizer.safetensors"),
        config.train.adamw.clone(),
        &device.clone().inner(),
    )?;
    let param_sizes = super::params::flat_params(&online)
        .into_iter()
        .map(|(path, values)| (path, values.shape().num_elements()))
        .collect();
    optimizer
        .check_matches(&param_sizes)
        .map_err(|reason| CheckpointError::Mismatch {
            path: dir.join("optimizer.safetensors"),
            reason,
        })?;
    if optimizer.steps_taken() != state.step {
        return Err(CheckpointError::Mismatch {
            path: dir,
            reason: format!(
                "optimizer has taken {} steps but state.json says {}",
                optimizer.steps_taken(),
                state.step
            ),
        });
    }
    Ok(ResumeState {
        online,
        ema,
        optimizer,
        state,
    })
}

/// A trained model ready for sampling: config, tokenizer and EMA weights.
pub struct LoadedModel {
    pub run: RunDir,
    pub config: RunConfig,
    pub tokenizer: TextTokenizer,
    pub model: Dit,
    pub state: Option<TrainingState>,
}

/// Loads a checkpoint directory for inference (no gradients).
pub fn load_model(dir: &Path, device: &Device) -> Result<LoadedModel, CheckpointError> {
    let run = RunDir::new(dir);
    let config = load_config(&run)?;
    let tokenizer = load_tokenizer(&run, &config)?;
    let weights = run
        .weights_dir()
        .ok_or_else(|| CheckpointError::NoWeights(dir.to_path_buf()))?;
    let model = load_weights(&weights.join("model.safetensors"), &config, device)?;
    let state = read_json(&weights.join("state.json")).ok();
    Ok(LoadedModel {
        run,
        config,
        tokenizer,
        model,
        state,
    })
}
