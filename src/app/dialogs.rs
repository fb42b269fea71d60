//! File and folder pickers. The real ones are rfd's native dialogs, awaited on a worker thread
//! so the window keeps drawing while a dialog is open; tests swap in a scripted picker.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};

/// What a dialog is for; the answer comes back tagged with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PickPurpose {
    TrainingText,
    RunsFolder,
    ExportFolder,
    CheckpointFolder,
    /// The paper's checkpoint (`.ckpt`) for Import….
    ImportCheckpoint,
    /// The `tokenizer.json` of a model being imported.
    ImportTokenizer,
    /// Where to save the Sample view's denoising as a GIF.
    AnimationFile,
}

impl PickPurpose {
    /// Whether the answer is a new file to write (a save dialog).
    pub fn saves(self) -> bool {
        self == PickPurpose::AnimationFile
    }

    /// Whether the answer is an existing file (otherwise a folder, or a file to save).
    pub fn wants_file(self) -> bool {
        matches!(
            self,
            PickPurpose::TrainingText
                | PickPurpose::ImportCheckpoint
                | PickPurpose::ImportTokenizer
        )
    }
}

/// Opens dialogs. Called on a worker thread, never on the UI thread.
pub trait Dialogs: Send + Sync {
    fn pick_file(&self, title: &str) -> Option<PathBuf>;
    fn pick_folder(&self, title: &str) -> Option<PathBuf>;
    /// A path to write a GIF to, proposing `file_name`.
    fn save_gif(&self, title: &str, file_name: &str) -> Option<PathBuf>;
}

/// The operating system's dialogs (on Linux: the desktop portal, or zenity where none runs).
pub struct NativeDialogs;

impl Dialogs for NativeDialogs {
    fn pick_file(&self, title: &str) -> Option<PathBuf> {
        let dialog = rfd::AsyncFileDialog::new()
            .set_title(title)
            .add_filter("text", &["txt", "md", "text"])
            .add_filter("any file", &["*"])
            .pick_file();
        block_on(dialog).map(|handle| handle.path().to_path_buf())
    }

    fn pick_folder(&self, title: &str) -> Option<PathBuf> {
        block_on(rfd::AsyncFileDialog::new().set_title(title).pick_folder())
            .map(|handle| handle.path().to_path_buf())
    }

    fn save_gif(&self, title: &str, file_name: &str) -> Option<PathBuf> {
        let dialog = rfd::AsyncFileDialog::new()
            .set_title(title)
            .set_file_name(file_name)
            .add_filter("GIF animation", &["gif"])
            .save_file();
        block_on(dialog).map(|handle| handle.path().to_path_buf())
    }
}

/// Answers from a script, in order; `None` once it runs out (as if the user cancelled).
#[derive(Default)]
pub struct ScriptedDialogs {
    answers: Mutex<Vec<PathBuf>>,
}

impl ScriptedDialogs {
    pub fn new(answers: impl IntoIterator<Item = PathBuf>) -> Arc<Self> {
        let mut answers: Vec<PathBuf> = answers.into_iter().collect();
        answers.reverse();
        Arc::new(Self {
            answers: Mutex::new(answers),
        })
    }

    fn next(&self) -> Option<PathBuf> {
        self.answers.lock().ok()?.pop()
    }
}

impl Dialogs for ScriptedDialogs {
    fn pick_file(&self, _title: &str) -> Option<PathBuf> {
        self.next()
    }
    fn pick_folder(&self, _title: &str) -> Option<PathBuf> {
        self.next()
    }
    fn save_gif(&self, _title: &str, _file_name: &str) -> Option<PathBuf> {
        self.next()
    }
}

/// Parks this thread until the future is ready (a dialog is open for seconds: no spinning).
fn block_on<F: std::future::Future>(future: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut context = Context::from_waker(&waker);
    let mut future = std::pin::pin!(future);
    loop {
        match future.as_mut().poll(&mut context) {
            Poll::Ready(value) => return value,
            Poll::Pending => std::thread::park(),
        }
    }
}
