//! Shared helpers: temporary run directories and tiny training runs.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;

use flm::data::TokenizerKind;
use flm::device::{Backend, ComputeDevice, cpu_device};
use flm::model::ModelPreset;
use flm::train::setup::{PreparedRun, prepare_run};
use flm::train::{
    NewModelKind, RunControl, TrainConfig, TrainError, TrainEvent, TrainJob, TrainRequest,
    TrainSummary, train,
};

/// A fresh, empty directory under the system temp dir, unique per call.
pub fn temp_dir(name: &str) -> PathBuf {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    let dir = std::env::temp_dir().join(format!("flm-test-{}-{name}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The small corpus the tests use (`tests/fixtures/README.md` says where it is from).
pub fn sonnets() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny_sonnets.txt")
}

pub fn cpu() -> ComputeDevice {
    ComputeDevice {
        device: cpu_device(),
        backend: Backend::Cpu,
        description: "CPU backend (tests)".into(),
    }
}

/// A request for a micro model that trains in seconds.
pub fn micro_request(out: &Path, data: &str) -> TrainRequest {
    TrainRequest {
        out: out.to_path_buf(),
        data: data.to_string(),
        valid: None,
        preset: ModelPreset::Micro,
        seq_len: Some(32),
        vocab_size: 512,
        tokenizer: TokenizerKind::Char,
        train: TrainConfig {
            batch_size: 8,
            learning_rate: 2e-3,
            warmup_steps: 5,
            log_every: 1,
            eval_every: 1000,
            eval_batches: 2,
            sample_every: 1000,
            checkpoint_every: 1000,
            seed: 42,
            ..TrainConfig::default()
        },
        steps: Some(20),
        minutes: None,
        resume: false,
        kind: NewModelKind::Flm,
        tokenizer_from: None,
    }
}

/// Trains a prepared run to completion on the CPU, collecting every event.
pub fn run_prepared(prepared: PreparedRun) -> (Result<TrainSummary, TrainError>, Vec<TrainEvent>) {
    match prepared.into_job(cpu()) {
        Ok(job) => run_job(job),
        Err(error) => (Err(error), Vec::new()),
    }
}

/// Trains a job to completion, collecting every event.
pub fn run_job(job: TrainJob) -> (Result<TrainSummary, TrainError>, Vec<TrainEvent>) {
    let (sender, receiver) = mpsc::channel();
    let result = train(job, &RunControl::default(), &sender);
    drop(sender);
    (result, receiver.into_iter().collect())
}

pub fn run_request(request: &TrainRequest) -> (TrainSummary, Vec<TrainEvent>) {
    let (result, events) = run_prepared(prepare_run(request).expect("prepare run"));
    (result.expect("training succeeds"), events)
}

/// `(step, loss)` of every step event.
pub fn step_losses(events: &[TrainEvent]) -> Vec<(u64, f64)> {
    events
        .iter()
        .filter_map(|e| match e {
            TrainEvent::Step { step, loss, .. } => Some((*step, *loss)),
            _ => None,
        })
        .collect()
}
