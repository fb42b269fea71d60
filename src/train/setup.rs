//! Turning a user's request (CLI flags, later GUI fields) into a ready run directory: fresh
//! runs write `config.json` and the tokenizer (a distillation copies both, and the teacher's
//! weights, from the teacher's run); `--resume` reads them back.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::checkpoint::{
    CheckpointError, RunDir, TEACHER_FILE, load_config, load_state, load_tokenizer, write_atomic,
    write_json,
};
use super::config::{
    DataConfig, DistillConfig, ModelKind, RunConfig, SCHEMA_VERSION, TeacherInfo, TrainConfig,
};
use super::lock::RunLock;
use super::objective::Objective;
use super::trainer::{TrainError, TrainJob};
use crate::data::dataset::{TOKENIZER_FILE, TRAIN_CACHE_FILE, VALID_CACHE_FILE};
use crate::data::{
    BuiltinTask, DataSource, TextDatasetSpec, TextTokenizer, TokenizerKind, prepare_text_dataset,
};
use crate::device::ComputeDevice;
use crate::flow::distill::DistillSettings;
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
    pub kind: NewModelKind,
    /// Reuse this run's tokenizer instead of training one (a reference model must share
    /// the tokenizer of the models it scores).
    pub tokenizer_from: Option<PathBuf>,
}

/// Which model a fresh training run makes.
#[derive(Debug, Clone, PartialEq)]
pub enum NewModelKind {
    /// An FLM (DESIGN §4).
    Flm,
    /// A flow map trained from the data by self-distillation (DESIGN §6 without a teacher:
    /// diagonal targets are the clean one-hots).
    SelfDistilledFlowMap(DistillSettings),
    /// The causal reference model `flm eval` scores samples with (DESIGN §9).
    Autoregressive,
}

/// A request to distill a trained FLM into a flow map.
#[derive(Debug, Clone)]
pub struct DistillRequest {
    /// The teacher's run directory (not needed with `resume`).
    pub teacher: PathBuf,
    pub out: PathBuf,
    pub train: TrainConfig,
    pub settings: DistillSettings,
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
    /// The run directory's lock, held from preparation to the end of training.
    pub lock: RunLock,
    pub config: RunConfig,
    pub data: DataSource,
    pub target_steps: Option<u64>,
    pub budget: Option<Duration>,
}

impl PreparedRun {
    /// The training job on `device`, with the run's objective (a distillation loads its frozen
    /// teacher there).
    pub fn into_job(self, device: ComputeDevice) -> Result<TrainJob, TrainError> {
        let objective = Objective::for_run(&self.config, &self.run, &device.device)?;
        Ok(TrainJob {
            run: self.run,
            config: self.config,
            data: self.data,
            objective,
            device,
            target_steps: self.target_steps,
            budget: self.budget,
            lock: self.lock,
        })
    }
}

/// Creates (or, with `resume`, reopens) the run directory.
pub fn prepare_run(request: &TrainRequest) -> Result<PreparedRun, TrainError> {
    let run = RunDir::new(&request.out);
    request.train.validate().map_err(TrainError::Setup)?;
    let limits = Limits::new(request.steps, request.minutes)?;
    if request.resume {
        return reopen_run(run, limits);
    }
    let mut config = new_config(request);
    let shared_tokenizer = match &request.tokenizer_from {
        Some(dir) => {
            let source = RunDir::new(dir);
            let tokenizer = load_tokenizer(&source, &load_config(&source)?)?;
            config.data.tokenizer = tokenizer.kind();
            config.data.vocab_size = tokenizer.vocab_size();
            Some(tokenizer)
        }
        None => None,
    };
    let lock = create_run_dir(&run)?;
    if let Some(tokenizer) = shared_tokenizer {
        tokenizer
            .save(&run.tokenizer_path())
            .map_err(CheckpointError::from)?;
    }
    start_run(run, lock, config, limits)
}

/// Creates a distillation run from a trained FLM (or, with `resume`, reopens one). The
/// teacher's tokenizer and weights are copied in, so the run stands on its own.
pub fn prepare_distill(request: &DistillRequest) -> Result<PreparedRun, TrainError> {
    let run = RunDir::new(&request.out);
    request.train.validate().map_err(TrainError::Setup)?;
    request.settings.validate(true).map_err(TrainError::Setup)?;
    let limits = Limits::new(request.steps, request.minutes)?;
    if request.resume {
        let prepared = reopen_run(run, limits)?;
        if prepared.config.kind != ModelKind::FlowMap {
            return Err(TrainError::Setup(format!(
                "`{}` is an FLM training run, not a distillation\n  hint: resume it with `flm train --resume`",
                prepared.run.root().display()
            )));
        }
        return Ok(prepared);
    }

    let teacher_run = RunDir::new(&request.teacher);
    let teacher = load_config(&teacher_run)?;
    match teacher.kind {
        ModelKind::Flm => {}
        ModelKind::FlowMap => {
            return Err(TrainError::Setup(format!(
                "`{}` is already a flow-map model; distill from the FLM it came from",
                request.teacher.display()
            )));
        }
        ModelKind::Autoregressive => {
            return Err(TrainError::Setup(format!(
                "`{}` is an autoregressive reference model; distill from an FLM trained with \
                 `flm train`",
                request.teacher.display()
            )));
        }
    }
    let weights = teacher_run
        .weights_dir()
        .ok_or_else(|| CheckpointError::NoWeights(request.teacher.clone()))?
        .join("model.safetensors");
    let tokenizer = load_tokenizer(&teacher_run, &teacher)?;
    let teacher_state = load_state(&teacher_run).ok();
    let data = DataConfig {
        source: locate_source(&teacher.data.source, &request.teacher)?,
        valid: match &teacher.data.valid {
            Some(valid) => Some(PathBuf::from(locate_source(
                &valid.to_string_lossy(),
                &request.teacher,
            )?)),
            None => None,
        },
        ..teacher.data.clone()
    };
    let config = RunConfig {
        schema_version: SCHEMA_VERSION,
        kind: ModelKind::FlowMap,
        model: ModelConfig {
            two_times: true,
            ..teacher.model.clone()
        },
        data,
        train: request.train.clone(),
        distill: Some(DistillConfig {
            teacher: Some(TeacherInfo {
                source: request.teacher.clone(),
                step: teacher_state.as_ref().map(|s| s.step),
                valid_loss: teacher_state.and_then(|s| s.last_valid_loss),
            }),
            settings: request.settings.clone(),
        }),
        created_with: created_with(),
        imported_from: None,
    };

    let lock = create_run_dir(&run)?;
    let copy = |from: &std::path::Path, to: PathBuf| -> Result<(), CheckpointError> {
        let bytes = fs::read(from).map_err(|source| CheckpointError::Io {
            path: from.to_path_buf(),
            error: source,
        })?;
        write_atomic(&to, &bytes)
    };
    tokenizer
        .save(&run.tokenizer_path())
        .map_err(CheckpointError::from)?;
    copy(&weights, run.teacher_path())?;
    // Token caches only save time; they are checked against the text before use.
    for name in [TRAIN_CACHE_FILE, VALID_CACHE_FILE] {
        let cached = teacher_run.root().join(name);
        if cached.is_file() {
            copy(&cached, run.root().join(name))?;
        }
    }
    start_run(run, lock, config, limits)
}

/// Where to stop: a step target, a time budget, or the default step count.
struct Limits {
    target_steps: Option<u64>,
    budget: Option<Duration>,
}

impl Limits {
    fn new(steps: Option<u64>, minutes: Option<f64>) -> Result<Self, TrainError> {
        let budget = match minutes {
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
        let target_steps = match (steps, budget) {
            (None, None) => Some(DEFAULT_STEPS),
            (steps, _) => steps,
        };
        Ok(Self {
            target_steps,
            budget,
        })
    }
}

/// Reopens an existing run with the settings in its `config.json`.
fn reopen_run(run: RunDir, limits: Limits) -> Result<PreparedRun, TrainError> {
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
    let lock = RunLock::acquire(run.root())?;
    if !run.has_checkpoint() {
        return Err(TrainError::Setup(format!(
            "--resume: `{}` has no checkpoint/ to resume from (training never saved one, or it \
             was deleted); resuming would silently start again from step 0\n  hint: delete \
             the folder (or its config.json) and train afresh, or choose another --out",
            run.root().display()
        )));
    }
    let config = load_config(&run)?;
    if config.data.seq_len != config.model.seq_len {
        return Err(CheckpointError::Mismatch {
            path: run.config_path(),
            reason: format!(
                "model.seq_len is {} but data.seq_len is {}; the model is trained on sequences \
                 of the data's length\n  hint: set both to the length the run was started with",
                config.model.seq_len, config.data.seq_len
            ),
        }
        .into());
    }
    let data = load_data(&config.data, &run)?;
    finish(run, lock, config, data, limits)
}

/// Creates and locks the directory of a new run, refusing one that already holds a run.
fn create_run_dir(run: &RunDir) -> Result<RunLock, TrainError> {
    if run.config_path().exists() {
        return Err(already_a_run(run));
    }
    fs::create_dir_all(run.root()).map_err(|source| CheckpointError::Io {
        path: run.root().to_path_buf(),
        error: source,
    })?;
    let lock = RunLock::acquire(run.root())?;
    // Checked again under the lock: another process may have started a run here meanwhile.
    if run.config_path().exists() {
        return Err(already_a_run(run));
    }
    remove_leftovers(run)?;
    Ok(lock)
}

fn already_a_run(run: &RunDir) -> TrainError {
    TrainError::Setup(format!(
        "`{}` already holds a run\n  hint: pass --resume to continue it, or choose another --out",
        run.root().display()
    ))
}

/// Loads the data of a new run, fixes the vocabulary size its tokenizer gives and writes
/// `config.json` (the marker that the run exists).
fn start_run(
    run: RunDir,
    lock: RunLock,
    mut config: RunConfig,
    limits: Limits,
) -> Result<PreparedRun, TrainError> {
    config.model.validate().map_err(TrainError::Setup)?;
    let data = load_data(&config.data, &run)?;
    config.model.vocab_size = data.tokenizer().vocab_size();
    config.validate().map_err(TrainError::Setup)?;
    check_training_memory(&config)?;
    write_json(&run.config_path(), &config)?;
    finish(run, lock, config, data, limits)
}

/// Refuses a run whose model, optimizer state and activations would not fit in memory.
fn check_training_memory(config: &RunConfig) -> Result<(), TrainError> {
    crate::limits::check_memory(
        &config.model,
        config.train.batch_size,
        crate::limits::Use::Training,
    )
    .map_err(TrainError::Setup)
}

fn finish(
    run: RunDir,
    lock: RunLock,
    config: RunConfig,
    data: DataSource,
    limits: Limits,
) -> Result<PreparedRun, TrainError> {
    check_training_memory(&config)?;
    if data.tokenizer().vocab_size() != config.model.vocab_size {
        return Err(CheckpointError::Mismatch {
            path: run.tokenizer_path(),
            reason: "the tokenizer does not match config.json".into(),
        }
        .into());
    }
    Ok(PreparedRun {
        run,
        lock,
        config,
        data,
        target_steps: limits.target_steps,
        budget: limits.budget,
    })
}

/// The teacher's data, as a path that works from here: built-in tasks as they are, files as
/// absolute paths (the teacher's config may hold a path relative to where it was trained).
fn locate_source(source: &str, teacher: &std::path::Path) -> Result<String, TrainError> {
    if BuiltinTask::parse(source).is_some() {
        return Ok(source.to_string());
    }
    fs::canonicalize(source)
        .map(|path| path.to_string_lossy().into_owned())
        .map_err(|_| {
            TrainError::Setup(format!(
                "the teacher `{}` was trained on `{source}`, which is not found from here; \
                 distillation needs the same text\n  hint: run flm from the directory the \
                 teacher was trained in",
                teacher.display()
            ))
        })
}

/// A directory without `config.json` holds no run; a tokenizer, token cache or teacher there is left
/// from an attempt that failed before training began, and must not shape the new run.
fn remove_leftovers(run: &RunDir) -> Result<(), CheckpointError> {
    for name in [
        TOKENIZER_FILE,
        TRAIN_CACHE_FILE,
        VALID_CACHE_FILE,
        TEACHER_FILE,
    ] {
        let path = run.root().join(name);
        match fs::remove_file(&path) {
            Err(source) if source.kind() != std::io::ErrorKind::NotFound => {
                return Err(CheckpointError::Io {
                    path,
                    error: source,
                });
            }
            _ => {}
        }
    }
    Ok(())
}

/// The absolute form of a data path, so the run can be resumed (and its teacher found) from
/// any directory; the path as given when it cannot be resolved (the error comes when reading).
fn absolute(path: &Path) -> PathBuf {
    fs::canonicalize(path)
        .or_else(|_| std::path::absolute(path))
        .unwrap_or_else(|_| path.to_path_buf())
}

fn created_with() -> String {
    format!("flm {}", env!("CARGO_PKG_VERSION"))
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
    let (kind, distill) = match &request.kind {
        NewModelKind::Flm => (ModelKind::Flm, None),
        NewModelKind::SelfDistilledFlowMap(settings) => (
            ModelKind::FlowMap,
            Some(DistillConfig {
                teacher: None,
                settings: settings.clone(),
            }),
        ),
        NewModelKind::Autoregressive => (ModelKind::Autoregressive, None),
    };
    let model = ModelConfig {
        two_times: kind == ModelKind::FlowMap,
        causal: kind == ModelKind::Autoregressive,
        // The vocabulary size is fixed once the tokenizer exists.
        ..ModelConfig::from_preset(request.preset, request.vocab_size, seq_len)
    };
    RunConfig {
        schema_version: SCHEMA_VERSION,
        kind,
        model,
        data: DataConfig {
            source: match BuiltinTask::parse(&request.data) {
                Some(_) => request.data.clone(),
                None => absolute(Path::new(&request.data))
                    .to_string_lossy()
                    .into_owned(),
            },
            valid: request.valid.as_deref().map(absolute),
            tokenizer,
            vocab_size: request.vocab_size,
            seq_len,
        },
        train: request.train.clone(),
        distill,
        created_with: created_with(),
        imported_from: None,
    }
}

/// Builds the data source a config describes, writing or reusing `tokenizer.json`.
pub fn load_data(data: &DataConfig, run: &RunDir) -> Result<DataSource, TrainError> {
    match BuiltinTask::parse(&data.source) {
        Some(task) => {
            let task = task.map_err(CheckpointError::from)?;
            let tokenizer: TextTokenizer = task.tokenizer();
            let path = run.tokenizer_path();
            if path.is_file() {
                // Sampling reads this file: a corrupt or foreign one must stop training now,
                // not after hours, when `flm sample` cannot use the result.
                let saved = TextTokenizer::load_as(tokenizer.kind(), &path)
                    .map_err(CheckpointError::from)?;
                if saved.fingerprint() != tokenizer.fingerprint() {
                    return Err(CheckpointError::Mismatch {
                        path,
                        reason: format!(
                            "this tokenizer ({} tokens) is not the one of `{}` ({} tokens)\n  \
                             hint: delete tokenizer.json; --resume writes the task's own again",
                            saved.vocab_size(),
                            data.source,
                            tokenizer.vocab_size()
                        ),
                    }
                    .into());
                }
            } else {
                tokenizer.save(&path).map_err(CheckpointError::from)?;
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
