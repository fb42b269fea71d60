//! Long work off the UI thread. Every job runs on its own thread and answers through one
//! channel the UI drains each frame; a panicking job becomes an error message, never a dead
//! window. Nothing here draws.

use std::ops::ControlFlow;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex};

use eframe::egui;

use super::dialogs::{Dialogs, PickPurpose};
use crate::data::{BuiltinTask, DataPreview, TokenizerKind, preview_data};
use crate::device::ComputeDevice;
use crate::flow::{Decoding, Schedule, Trajectory};
use crate::generate::{Conditioning, GenerateRequest, Generator};
use crate::import::{ImportOptions, ImportSummary, import_official};
use crate::render::animation::{AnimationOptions, render_gif};
use crate::train::checkpoint::write_atomic;
use crate::train::metrics_log::{self, LossCurves};
use crate::train::{
    DistillRequest, ModelKind, RunControl, RunDir, RunListing, TrainEvent, TrainRequest,
    TrainSummary, delete_run, export_model, fresh_run_dir, list_runs, load_model, prepare_distill,
    prepare_run, train,
};

/// Which training slot a message belongs to: the Train view shows both side by side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrainingSlot {
    Flm,
    Distill,
}

/// An answer from a job.
pub enum JobMessage {
    Picked {
        purpose: PickPurpose,
        path: Option<PathBuf>,
    },
    DataPreview {
        source: String,
        result: Result<Box<DataPreview>, String>,
    },
    /// The run directory is ready and training starts.
    TrainingStarted {
        slot: TrainingSlot,
        run_dir: PathBuf,
        events: Receiver<TrainEvent>,
    },
    TrainingDone {
        slot: TrainingSlot,
        result: Result<TrainSummary, String>,
    },
    /// `Ok(None)`: the user cancelled.
    Sampled(Result<Option<Box<SampleResult>>, String>),
    Exported {
        dest: PathBuf,
        result: Result<Vec<PathBuf>, String>,
    },
    /// An animation was written (its size in bytes) or not.
    AnimationWritten {
        dest: PathBuf,
        result: Result<usize, String>,
    },
    /// The runs folder's listing.
    Runs {
        root: PathBuf,
        result: Result<Vec<RunListing>, String>,
    },
    Deleted {
        dir: PathBuf,
        result: Result<(), String>,
    },
    /// `flm import` done from the Checkpoints view.
    Imported(Result<Box<ImportSummary>, String>),
    /// A run's loss curves, read from its `metrics.jsonl`.
    Curves { dir: PathBuf, curves: LossCurves },
}

/// Starts jobs and collects their answers.
pub struct Jobs {
    sender: Sender<JobMessage>,
    receiver: Receiver<JobMessage>,
    ctx: egui::Context,
    dialogs: Arc<dyn Dialogs>,
}

impl Jobs {
    pub fn new(ctx: egui::Context, dialogs: Arc<dyn Dialogs>) -> Self {
        let (sender, receiver) = channel();
        Self {
            sender,
            receiver,
            ctx,
            dialogs,
        }
    }

    pub fn set_dialogs(&mut self, dialogs: Arc<dyn Dialogs>) {
        self.dialogs = dialogs;
    }

    /// Answers that arrived since the last frame.
    pub fn drain(&self) -> Vec<JobMessage> {
        self.receiver.try_iter().collect()
    }

    /// Runs `work` on a thread; its answer (or `on_panic` with the panic's message) is sent
    /// back and the UI woken.
    fn spawn(
        &self,
        name: &str,
        work: impl FnOnce(&Sender<JobMessage>) -> JobMessage + Send + 'static,
        on_panic: impl FnOnce(String) -> JobMessage + Send + 'static,
    ) {
        let (sender, ctx) = (self.sender.clone(), self.ctx.clone());
        // Shared so that a thread that never started can still answer with it.
        let on_panic = Arc::new(Mutex::new(Some(on_panic)));
        let fallback = on_panic.clone();
        let take = |slot: &Mutex<Option<_>>| slot.lock().ok().and_then(|mut f| f.take());
        let spawned = std::thread::Builder::new()
            .name(format!("flm-{name}"))
            .spawn(move || {
                let message = std::panic::catch_unwind(AssertUnwindSafe(|| work(&sender)))
                    .unwrap_or_else(|panic| {
                        let on_panic = take(&fallback).expect("answered once");
                        on_panic(panic_message(&panic))
                    });
                // The window may have closed; then nobody is listening and that is fine.
                let _ = sender.send(message);
                ctx.request_repaint();
            });
        if let (Err(error), Some(on_panic)) = (spawned, take(&on_panic)) {
            let _ = self.sender.send(on_panic(format!(
                "could not start a worker thread: {error}"
            )));
        }
    }

    pub fn pick(&self, purpose: PickPurpose, title: &'static str) {
        let dialogs = self.dialogs.clone();
        self.spawn(
            "dialog",
            move |_| {
                let path = if purpose.saves() {
                    dialogs.save_gif(title, "flm-denoising.gif")
                } else if purpose.wants_file() {
                    dialogs.pick_file(title)
                } else {
                    dialogs.pick_folder(title)
                };
                JobMessage::Picked { purpose, path }
            },
            move |_| JobMessage::Picked {
                purpose,
                path: None,
            },
        );
    }

    pub fn preview(&self, source: String, kind: TokenizerKind, vocab_size: usize) {
        let failed = source.clone();
        self.spawn(
            "preview",
            move |_| JobMessage::DataPreview {
                result: preview_data(&source, kind, vocab_size)
                    .map(Box::new)
                    .map_err(|e| e.to_string()),
                source,
            },
            move |error| JobMessage::DataPreview {
                source: failed,
                result: Err(error),
            },
        );
    }

    /// Prepares the run (tokenizer, data cache, config) and trains it, streaming events.
    pub fn train(
        &self,
        slot: TrainingSlot,
        start: TrainingStart,
        device: ComputeDevice,
        control: RunControl,
    ) {
        let ctx = self.ctx.clone();
        self.spawn(
            "train",
            move |sender| {
                let result = (|| {
                    // Named here, not on the UI thread: it looks at the disk.
                    let prepared = match start {
                        TrainingStart::Flm(mut request) => {
                            request.out = fresh_run_dir(&request.out);
                            prepare_run(&request)
                        }
                        TrainingStart::Distill(mut request) => {
                            request.out = fresh_run_dir(&request.out);
                            prepare_distill(&request)
                        }
                    }
                    .map_err(|e| e.to_string())?;
                    let run_dir = prepared.run.root().to_path_buf();
                    let job = prepared.into_job(device).map_err(|e| e.to_string())?;
                    let (events, receiver) = channel();
                    let _ = sender.send(JobMessage::TrainingStarted {
                        slot,
                        run_dir,
                        events: receiver,
                    });
                    ctx.request_repaint();
                    train(job, &control, &events).map_err(|e| e.to_string())
                })();
                JobMessage::TrainingDone { slot, result }
            },
            move |error| JobMessage::TrainingDone {
                slot,
                result: Err(format!("training crashed: {error}")),
            },
        );
    }

    pub fn sample(
        &self,
        request: SampleRequest,
        device: ComputeDevice,
        progress: SamplingProgress,
    ) {
        self.spawn(
            "sample",
            move |_| {
                JobMessage::Sampled(
                    run_sampling(&request, &device, &progress).map(|done| done.map(Box::new)),
                )
            },
            |error| JobMessage::Sampled(Err(format!("sampling crashed: {error}"))),
        );
    }

    pub fn export(&self, run_dir: PathBuf, dest: PathBuf) {
        let failed = dest.clone();
        self.spawn(
            "export",
            move |_| JobMessage::Exported {
                result: export_model(&run_dir, &dest).map_err(|e| e.to_string()),
                dest,
            },
            move |error| JobMessage::Exported {
                dest: failed,
                result: Err(error),
            },
        );
    }

    /// Draws sample `sample` of `trajectory` as a GIF and writes it to `dest`.
    pub fn export_animation(
        &self,
        trajectory: Trajectory,
        vocab: Arc<Vec<String>>,
        sample: usize,
        dest: PathBuf,
    ) {
        let failed = dest.clone();
        self.spawn(
            "animation",
            move |_| {
                let token_text = |id: u32| vocab.get(id as usize).cloned().unwrap_or_default();
                let options = AnimationOptions {
                    sample,
                    ..AnimationOptions::default()
                };
                let result = render_gif(&trajectory, &token_text, &options)
                    .map_err(|e| e.to_string())
                    .and_then(|gif| {
                        write_atomic(&dest, &gif)
                            .map(|()| gif.len())
                            .map_err(|e| e.to_string())
                    });
                JobMessage::AnimationWritten { dest, result }
            },
            move |error| JobMessage::AnimationWritten {
                dest: failed,
                result: Err(error),
            },
        );
    }

    /// Lists the runs folder.
    pub fn list_runs(&self, root: PathBuf) {
        let failed = root.clone();
        self.spawn(
            "list-runs",
            move |_| JobMessage::Runs {
                result: list_runs(&root).map_err(|e| e.to_string()),
                root,
            },
            move |error| JobMessage::Runs {
                root: failed,
                result: Err(error),
            },
        );
    }

    pub fn delete(&self, dir: PathBuf) {
        let failed = dir.clone();
        self.spawn(
            "delete",
            move |_| JobMessage::Deleted {
                result: delete_run(&dir).map_err(|e| e.to_string()),
                dir,
            },
            move |error| JobMessage::Deleted {
                dir: failed,
                result: Err(error),
            },
        );
    }

    /// Imports the paper's checkpoint into a fresh folder `out` (named here, off the UI thread).
    pub fn import(&self, from: PathBuf, out: PathBuf, options: ImportOptions) {
        self.spawn(
            "import",
            move |_| {
                let out = fresh_run_dir(&out);
                JobMessage::Imported(
                    import_official(&from, &out, &options)
                        .map(Box::new)
                        .map_err(|e| e.to_string()),
                )
            },
            |error| JobMessage::Imported(Err(format!("import crashed: {error}"))),
        );
    }

    pub fn load_curves(&self, dir: PathBuf) {
        let failed = dir.clone();
        self.spawn(
            "curves",
            move |_| {
                let lines = metrics_log::read(&RunDir::new(&dir).metrics_path());
                JobMessage::Curves {
                    curves: LossCurves::from_lines(&lines),
                    dir,
                }
            },
            // Curves are a nicety: a crash reading them shows none.
            move |_| JobMessage::Curves {
                dir: failed,
                curves: LossCurves::default(),
            },
        );
    }
}

/// What a training job starts from.
pub enum TrainingStart {
    Flm(TrainRequest),
    Distill(DistillRequest),
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "unknown panic".into())
}

/// What Generate asks for.
#[derive(Debug, Clone, PartialEq)]
pub struct SampleRequest {
    pub model: PathBuf,
    pub steps: usize,
    pub eta: f64,
    pub seed: u64,
    pub samples: usize,
    /// A second model sampled from the same noise, with its own step count.
    pub compare: Option<(PathBuf, usize)>,
    /// How the final distributions become tokens.
    pub decoding: Decoding,
    /// Fixed text, in template syntax ([`crate::generate::Conditioning::template`]: each
    /// `___` is one generated token, everything after the text is generated); tokenized with
    /// each model's own tokenizer. Empty: unconditioned.
    pub prompt: String,
    /// Pull toward the fixed text ([`crate::flow::Clamped::guidance`]).
    pub guidance: f64,
}

/// Candidates per position kept in the trajectory: what the bars and tooltips show.
pub const TRAJECTORY_TOP_K: usize = 8;
const _: () = assert!(TRAJECTORY_TOP_K <= crate::generate::MAX_TRAJECTORY_TOP_K);

/// One model's recorded sampling run, ready to replay.
pub struct SampledModel {
    pub dir: PathBuf,
    pub kind: ModelKind,
    pub trajectory: Trajectory,
    /// Display text of every token id, looked up once instead of every frame.
    pub vocab: Arc<Vec<String>>,
    pub texts: Vec<String>,
    /// Validity per sample on built-in tasks.
    pub valid: Vec<Option<bool>>,
    pub seconds: f64,
    /// Why the samples are all one token, when they are (`generate::single_token_advice`).
    pub single_token: Option<String>,
    /// γ(τ) of the model's vocabulary, for the schedule plot.
    pub schedule_curve: Vec<[f64; 2]>,
}

pub struct SampleResult {
    pub main: SampledModel,
    pub compare: Option<SampledModel>,
}

/// How far a sampling job is, shared with the UI, and its Cancel switch.
#[derive(Debug, Clone, Default)]
pub struct SamplingProgress {
    /// Network calls done, over all models of the request.
    pub done: Arc<AtomicUsize>,
    pub cancel: Arc<AtomicBool>,
}

impl SamplingProgress {
    pub fn steps_done(&self) -> usize {
        self.done.load(Ordering::Relaxed)
    }
    pub fn request_cancel(&self) {
        self.cancel.store(true, Ordering::Relaxed);
    }
}

/// `Ok(None)` when cancelled.
fn run_sampling(
    request: &SampleRequest,
    device: &ComputeDevice,
    progress: &SamplingProgress,
) -> Result<Option<SampleResult>, String> {
    let Some(main) = sample_model(&request.model, request.steps, request, device, progress)? else {
        return Ok(None);
    };
    let compare = match &request.compare {
        Some((dir, steps)) => {
            let Some(other) = sample_model(dir, *steps, request, device, progress)? else {
                return Ok(None);
            };
            if other.trajectory.seq_len != main.trajectory.seq_len {
                return Err(format!(
                    "cannot compare: {} samples {} tokens, {} samples {}",
                    request.model.display(),
                    main.trajectory.seq_len,
                    dir.display(),
                    other.trajectory.seq_len
                ));
            }
            Some(other)
        }
        None => None,
    };
    Ok(Some(SampleResult { main, compare }))
}

fn sample_model(
    dir: &Path,
    steps: usize,
    request: &SampleRequest,
    device: &ComputeDevice,
    progress: &SamplingProgress,
) -> Result<Option<SampledModel>, String> {
    let loaded = load_model(dir, &device.device).map_err(|e| e.to_string())?;
    let kind = loaded.config.kind;
    let generate = GenerateRequest {
        steps,
        eta: (kind == ModelKind::FlowMap).then_some(request.eta),
        seed: request.seed,
        samples: request.samples,
        batch: crate::generate::BATCH,
        trajectory_top_k: TRAJECTORY_TOP_K.min(loaded.config.model.vocab_size),
        decoding: request.decoding,
        conditioning: Conditioning::template(&loaded.tokenizer, &request.prompt)
            .map_err(|e| format!("{}: {e}", dir.display()))?,
        guidance: request.guidance,
    };
    let tokenizer = &loaded.tokenizer;
    let generator = Generator {
        model: &loaded.model,
        kind,
        tokenizer,
        task: BuiltinTask::parse(&loaded.config.data.source).and_then(Result::ok),
        seq_len: loaded.config.model.seq_len,
    };
    let generated = generator
        .generate(&generate, &device.device, &mut |_| {
            progress.done.fetch_add(1, Ordering::Relaxed);
            if progress.cancel.load(Ordering::Relaxed) {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        })
        .map_err(|e| format!("{}: {e}", dir.display()))?;
    let Some(generation) = generated else {
        return Ok(None);
    };
    let seconds = generation.seconds();
    let single_token = generation
        .single_token()
        .map(|token| crate::generate::single_token_advice(&tokenizer.token_text(token)));
    let trajectory = generation
        .trajectory
        .ok_or("the sampler recorded no trajectory")?;
    let vocab = (0..tokenizer.vocab_size() as u32)
        .map(|id| super::drawable(&tokenizer.token_text(id)))
        .collect();
    let schedule = Schedule::new(loaded.config.model.vocab_size).map_err(|e| e.to_string())?;
    let schedule_curve = (0..=200)
        .map(|i| {
            let tau = i as f64 / 200.0;
            [tau, schedule.gamma(tau)]
        })
        .collect();
    Ok(Some(SampledModel {
        dir: dir.to_path_buf(),
        kind,
        texts: generation
            .texts
            .iter()
            .map(|t| super::drawable(t))
            .collect(),
        valid: generation.valid,
        trajectory,
        vocab: Arc::new(vocab),
        seconds,
        single_token,
        schedule_curve,
    }))
}
