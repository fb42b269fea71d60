//! How views talk to the app: a view draws from its own state and what [`ViewContext`] lends
//! it, and asks for everything else — another view shown, a job started, a message — with an
//! [`AppCommand`] that the app applies after the frame's views have drawn. No view reads or
//! writes another view's fields.

use std::path::PathBuf;

use super::View;
use super::dialogs::PickPurpose;
use super::jobs::{SampleRequest, SamplingProgress, TrainingSlot, TrainingStart};
use crate::data::TokenizerKind;
use crate::import::ImportOptions;
use crate::train::{RunControl, RunListing};

/// Something only the app can do.
pub enum AppCommand {
    Show(View),
    /// Open a file or folder dialog; the answer comes back to the app, tagged.
    Pick {
        purpose: PickPurpose,
        title: &'static str,
    },
    /// A path the person typed or pasted where a dialog would ask: handled like its answer
    /// (for desktops without a file-dialog portal or zenity).
    Typed {
        purpose: PickPurpose,
        path: PathBuf,
    },
    /// Analyse the data choice (tokenizer and statistics) on a worker thread.
    Preview(DataChoice),
    StartTraining {
        slot: TrainingSlot,
        start: Box<TrainingStart>,
        control: RunControl,
    },
    Sample {
        request: SampleRequest,
        progress: SamplingProgress,
    },
    /// Show this run in the Sample view.
    OpenInSample(PathBuf),
    /// Import the paper's checkpoint as a new run.
    Import {
        from: PathBuf,
        options: ImportOptions,
    },
    /// Delete a run folder (the view has asked the user).
    Delete(PathBuf),
    /// List the runs folder again.
    RefreshRuns,
    /// Read a run's loss curves from its `metrics.jsonl`.
    LoadCurves(PathBuf),
}

/// The data the user chose in the Data view, as the Train view needs it.
#[derive(Debug, Clone, PartialEq)]
pub struct DataChoice {
    /// `builtin:<task>` or a file path.
    pub source: String,
    pub tokenizer: TokenizerKind,
    pub vocab_size: usize,
}

/// The runs folder and its listing, which every view reads: refreshed by a job, never read
/// from disk on the UI thread.
pub struct RunsFolder {
    pub root: PathBuf,
    pub list: Vec<RunListing>,
    /// Why the folder could not be listed.
    pub error: Option<String>,
    /// A listing job is running.
    pub listing: bool,
}

/// What a view may read of the rest of the app while it draws, and where it puts requests.
pub struct ViewContext<'a> {
    pub runs: &'a RunsFolder,
    pub data: &'a DataChoice,
    /// Run folders a training job is writing right now.
    pub runs_in_use: &'a [PathBuf],
    pub commands: &'a mut Vec<AppCommand>,
}

impl ViewContext<'_> {
    pub fn send(&mut self, command: AppCommand) {
        self.commands.push(command);
    }
}
