//! Turning a user's request (CLI flags, later GUI fields) into a ready run directory: fresh
//! runs write `config.json` and the tokenizer; `--resume` reads them back.

use std::fs;
use std::path::PathBuf;
use std::time::Duration;

use super::checkpoint::{CheckpointError, RunDir, load_config, write_json};
use super::config::{DataConfig, ModelKind, RunConfig, SCHEMA_VERSION, TrainConfig};
use super::trainer::TrainError;
use crate::data::dataset::{TOKENIZER_FILE, TRAIN_CACHE_FILE, VALID_CACHE_FILE};
use crate::data::{
    BuiltinTask, DataSource, TextDatasetSpec, TextTokenizer, TokenizerKind, prepare_text_dataset,
};
use crate::model::{ModelConfig, ModelPreset};

/// What the user asked for.
#[derive(Debug, Clone)]
pub struct TrainRequest {
    pub out: PathBuf,
    /// `builtin:<task>` or a text file.
    pub data: String,
    pub valid: Option<PathBuf>,
    pub preset: ModelPreset,
    /// `None`: 128 for text, the task's default for built-in tasks.
    pub seq_len: Option<usize>,
    pub vocab_size: usize,
    pub tokenizer: TokenizerKind,
    pub train: TrainConfig,
    pub steps: Option<u64>,
    pub minutes: Option<f64>,
    pub resume: bool,
}

/// Default sequence length for text corpora.
pub const TEXT_SEQ_LEN: usize = 128;
/// Default vocabulary size for BPE.
pub const DEFAULT_VOCAB: usize = 2048;
/// Used when neither `--steps` nor `--minutes` is given.
pub const DEFAULT_STEPS: u64 = 2000;

/// A run directory with its configuration and data, ready for [`super::train`].
pub struct PreparedRun {
    pub run: RunDir,
    pub config: RunConfig,
    pub data: DataSource,
    pub target_steps: Option<u64>,
    pub budget: Option<Duration>,
}

/// Creates (or, with `resume`, reopens) the run directory.
pub fn prepare_run(request: &TrainRequest) -> Result<PreparedRun, TrainError> {
    let run = RunDir::new(&request.out);
    request.train.validate().map_err(TrainError::Setup)?;
    let config = if request.resume {
        if !run.config_path().is_file() {
            return Err(TrainError::Setup(format!(
                "--resume: `{}` holds no run to resume (no config.json)\n  hint: drop --resume to start a new run there",
                run.root().display()
            )));
        }
        if run.weights_dir().is_some() && !run.has_checkpoint() {
            return Err(TrainError::Setup(format!(
                "--resume: `{}` is an exported model without training state; it can be sampled \
                 but not resumed\n  hint: resume the run directory it was exported from",
                run.root().display()
            )));
        }
        load_config(&run)?
    } else {
        if run.config_path().exists() {
            return Err(TrainError::Setup(format!(
                "`{}` already holds a run\n  hint: pass --resume to continue it, or choose another --out",
                run.root().display()
            )));
        }
        fs::create_dir_all(run.root()).map_err(|source| CheckpointError::Io {
            path: run.root().to_path_buf(),
            source,
        })?;
        remove_leftovers(&run)?;
        new_config(request)
    };
    let data = load_data(&config.data, &run)?;
    let config = if request.resume {
        config
    } else {
        let mut config = config;
        config.model.vocab_size = data.tokenizer().vocab_size();
        config.model.validate().map_err(TrainError::Setup)?;
        write_json(&run.config_path(), &config)?;
        config
    };
    if data.tokenizer().vocab_size() != config.model.vocab_size {
        return Err(CheckpointError::Mismatch {
            path: run.tokenizer_path(),
            reason: "the tokenizer does not match config.json".into(),
        }
        .into());
    }
    let budget = match request.minutes {
        Some(minutes) => Some(
            Duration::try_from_secs_f64(minutes * 60.0)
                .ok()
                .filter(|d| !d.is_zero())
                .ok_or_else(|| {
                    TrainError::Setup(format!(
                        "--minutes must be a positive number, got {minutes}"
                    ))
                })?,
        ),
        None => None,
    };
    let target_steps = match (request.steps, budget) {
        (None, None) => Some(DEFAULT_STEPS),
        (steps, _) => steps,
    };
    Ok(PreparedRun {
        run,
        config,
        data,
        target_steps,
        budget,
    })
}

/// A directory without `config.json` holds no run; a tokenizer or token cache there is left
/// from an attempt that failed before training began, and must not shape the new run.
fn remove_leftovers(run: &RunDir) -> Result<(), CheckpointError> {
    for name in [TOKENIZER_FILE, TRAIN_CACHE_FILE, VALID_CACHE_FILE] {
        let path = run.root().join(name);
        match fs::remove_file(&path) {
            Err(source) if source.kind() != std::io::ErrorKind::NotFound => {
                return Err(CheckpointError::Io { path, source });
            }
            _ => {}
        }
    }
    Ok(())
}

fn new_config(request: &TrainRequest) -> RunConfig {
    let task = BuiltinTask::parse(&request.data).and_then(Result::ok);
    let seq_len = request.seq_len.unwrap_or(match task {
        Some(_) => BuiltinTask::DEFAULT_SEQ_LEN,
        None => TEXT_SEQ_LEN,
    });
    let tokenizer = if task.is_some() {
        TokenizerKind::Char
    } else {
        request.tokenizer
    };
    RunConfig {
        schema_version: SCHEMA_VERSION,
        kind: ModelKind::Flm,
        // The vocabulary size is fixed once the tokenizer exists.
        model: ModelConfig::from_preset(request.preset, request.vocab_size, seq_len),
        data: DataConfig {
            source: request.data.clone(),
            valid: request.valid.clone(),
            tokenizer,
            vocab_size: request.vocab_size,
            seq_len,
        },
        train: request.train.clone(),
        created_with: format!("flm {}", env!("CARGO_PKG_VERSION")),
    }
}

/// Builds the data source a config describes, writing or reusing `tokenizer.json`.
pub fn load_data(data: &DataConfig, run: &RunDir) -> Result<DataSource, TrainError> {
    match BuiltinTask::parse(&data.source) {
        Some(task) => {
            let task = task.map_err(CheckpointError::from)?;
            let tokenizer: TextTokenizer = task.tokenizer();
            if !run.tokenizer_path().is_file() {
                tokenizer
                    .save(&run.tokenizer_path())
                    .map_err(CheckpointError::from)?;
            }
            Ok(DataSource::Task {
                task,
                tokenizer,
                seq_len: data.seq_len,
            })
        }
        None => {
            let train_path = PathBuf::from(&data.source);
            let spec = TextDatasetSpec {
                train_path: &train_path,
                valid_path: data.valid.as_deref(),
                tokenizer_kind: data.tokenizer,
                vocab_size: data.vocab_size,
                seq_len: data.seq_len,
            };
            let dataset = prepare_text_dataset(&spec, run.root()).map_err(CheckpointError::from)?;
            Ok(DataSource::Text(dataset))
        }
    }
}
