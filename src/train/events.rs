//! What a training run reports while it works. The CLI draws these as a progress bar; the GUI
//! will subscribe to the same channel. The library never prints.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use super::readability::Readability;

/// Why a run ended without an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// The step target was reached.
    StepsDone,
    /// The time budget ran out.
    TimeUp,
    /// The user asked to stop (Ctrl-C, Stop button).
    Interrupted,
}

/// One progress message.
#[derive(Debug, Clone, PartialEq)]
pub enum TrainEvent {
    Started {
        device: String,
        parameters: usize,
        start_step: u64,
        target_steps: Option<u64>,
        budget_secs: Option<f64>,
        tokens_per_step: usize,
    },
    Step {
        step: u64,
        loss: f64,
        learning_rate: f64,
        grad_norm: f64,
        tokens_per_sec: f64,
        elapsed_secs: f64,
        eta_secs: Option<f64>,
    },
    Validation {
        step: u64,
        loss: f64,
        /// What else was measured at this step: the loss's parts by group and, for flow maps,
        /// the one-step probe (`train::probe`), by name.
        metrics: Vec<(&'static str, f64)>,
    },
    Samples {
        step: u64,
        /// Which sampler made them ("euler" or "flow-map"), with how many steps.
        sampler: &'static str,
        steps: usize,
        texts: Vec<String>,
        /// Fraction of valid samples, for built-in tasks.
        valid_fraction: Option<f64>,
        /// How the samples read, for text corpora.
        readability: Option<ReadabilityNote>,
    },
    Checkpoint {
        step: u64,
        dir: PathBuf,
    },
    Finished {
        step: u64,
        reason: StopReason,
    },
}

/// A preview's readability and what it means for this run (`train::readability`).
#[derive(Debug, Clone, PartialEq)]
pub struct ReadabilityNote {
    pub measured: Readability,
    /// The stage in words, with when to expect words: shown under the samples.
    pub advice: String,
}

/// Shared switches a front end flips to steer a running job.
#[derive(Debug, Clone, Default)]
pub struct RunControl {
    stop: Arc<AtomicBool>,
    pause: Arc<AtomicBool>,
}

impl RunControl {
    pub fn request_stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
    }
    pub fn stop_requested(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }
    pub fn set_paused(&self, paused: bool) {
        self.pause.store(paused, Ordering::SeqCst);
    }
    pub fn is_paused(&self) -> bool {
        self.pause.load(Ordering::SeqCst)
    }
}

/// How a preview was made, as both front ends print it: `flow-map, 1 steps, 58% valid`.
pub fn samples_headline(sampler: &str, steps: usize, valid_fraction: Option<f64>) -> String {
    let valid = valid_fraction.map_or_else(String::new, |f| format!(", {:.0}% valid", f * 100.0));
    format!("{sampler}, {steps} steps{valid}")
}
