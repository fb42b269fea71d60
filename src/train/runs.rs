//! Run directories as a collection: listing what a runs folder holds, exporting a trained
//! model as three portable files, and deleting a run. The Checkpoints view and `flm export`
//! call these.

use std::fs;
use std::path::{Path, PathBuf};

use super::checkpoint::{
    CheckpointError, RunDir, TrainingState, load_config, load_state, load_tokenizer, write_atomic,
};
use super::config::RunConfig;
use super::lock::{LOCK_FILE, RunLock};

/// One entry of a runs folder.
#[derive(Debug, Clone)]
pub struct RunListing {
    pub dir: PathBuf,
    /// The folder name.
    pub name: String,
    /// The run's config, or why it could not be read (a run from another flm version, a
    /// half-deleted folder): listed anyway so the user can see and delete it.
    pub config: Result<RunConfig, String>,
    /// Progress of the newest checkpoint; `None` before the first one.
    pub state: Option<TrainingState>,
}

impl RunListing {
    /// Whether the run has weights to sample or export.
    pub fn has_weights(&self) -> bool {
        RunDir::new(&self.dir).weights_dir().is_some()
    }
}

/// Every run directory (a folder with a `config.json`) directly inside `root`, by name.
/// A missing `root` is an empty list: nothing has been trained yet.
pub fn list_runs(root: &Path) -> Result<Vec<RunListing>, CheckpointError> {
    let entries = match fs::read_dir(root) {
        Ok(entries) => entries,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(CheckpointError::Io {
                path: root.to_path_buf(),
                error: source,
            });
        }
    };
    let mut runs: Vec<RunListing> = entries
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|dir| dir.join("config.json").is_file())
        .map(|dir| {
            let run = RunDir::new(&dir);
            RunListing {
                name: dir
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                config: load_config(&run).map_err(|e| e.to_string()),
                state: load_state(&run).ok(),
                dir,
            }
        })
        .collect();
    runs.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(runs)
}

/// The files an export writes: all a user needs to sample the model elsewhere.
pub const EXPORTED_FILES: [&str; 3] = ["config.json", "tokenizer.json", "model.safetensors"];

/// Copies a run's config, tokenizer and EMA weights into `dest` (created if missing), each
/// file written atomically. The result loads with [`super::load_model`] like the run itself.
/// Checks the run loads first, so a broken run is refused before anything is written.
/// Refuses to replace files already in `dest` (see [`export_model_to`] for `--force`).
pub fn export_model(run_dir: &Path, dest: &Path) -> Result<Vec<PathBuf>, CheckpointError> {
    export_model_to(run_dir, dest, false)
}

/// [`export_model`]; with `force`, files of the same names in `dest` are replaced. A folder
/// holding a training run is refused either way (see [`check_export_dest`]).
pub fn export_model_to(
    run_dir: &Path,
    dest: &Path,
    force: bool,
) -> Result<Vec<PathBuf>, CheckpointError> {
    let run = RunDir::new(run_dir);
    let config = load_config(&run)?;
    load_tokenizer(&run, &config)?;
    let weights = run
        .weights_dir()
        .ok_or_else(|| CheckpointError::NoWeights(run_dir.to_path_buf()))?
        .join("model.safetensors");
    if same_dir(run_dir, dest) {
        return Err(CheckpointError::Mismatch {
            path: dest.to_path_buf(),
            reason: "the export folder is the run itself; choose another folder".into(),
        });
    }
    check_export_dest(dest, &EXPORTED_FILES, force)?;
    fs::create_dir_all(dest).map_err(|source| CheckpointError::Io {
        path: dest.to_path_buf(),
        error: source,
    })?;
    let sources = [run.config_path(), run.tokenizer_path(), weights];
    let mut written = Vec::with_capacity(sources.len());
    for (source, name) in sources.iter().zip(EXPORTED_FILES) {
        let bytes = fs::read(source).map_err(|e| CheckpointError::Io {
            path: source.clone(),
            error: e,
        })?;
        let target = dest.join(name);
        write_atomic(&target, &bytes)?;
        written.push(target);
    }
    Ok(written)
}

/// Refuses an export folder that holds a training run (`config.json` beside `checkpoint/`:
/// replacing its config would break it for good), and, unless `force`, one that already has
/// any of the files `names` an export would write.
pub fn check_export_dest(dest: &Path, names: &[&str], force: bool) -> Result<(), CheckpointError> {
    let run = RunDir::new(dest);
    let holds_run = run.config_path().is_file()
        && ["checkpoint", "checkpoint.old", "checkpoint.new"]
            .iter()
            .any(|name| dest.join(name).is_dir());
    if holds_run {
        return Err(CheckpointError::ExportTarget {
            path: dest.to_path_buf(),
            reason: "it holds a training run (config.json and checkpoint/); exporting there \
                     would replace the run's files and break it"
                .into(),
            hint: "choose an empty folder",
        });
    }
    let existing: Vec<&str> = names
        .iter()
        .copied()
        .filter(|name| dest.join(name).exists())
        .collect();
    if !force && !existing.is_empty() {
        return Err(CheckpointError::ExportTarget {
            path: dest.to_path_buf(),
            reason: format!("it already has {}", existing.join(", ")),
            hint: "choose an empty folder, or pass --force to replace them",
        });
    }
    Ok(())
}

fn same_dir(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

/// `wanted`, or `wanted-2`, `-3`… when that is taken: a new run never lands in an old one.
pub fn fresh_run_dir(wanted: &Path) -> PathBuf {
    let base = wanted.as_os_str().to_string_lossy().into_owned();
    (1..)
        .map(|n| match n {
            1 => wanted.to_path_buf(),
            n => PathBuf::from(format!("{base}-{n}")),
        })
        .find(|dir| !dir.exists())
        .expect("some name is free")
}

/// A short, filesystem-safe name for a data source: the built-in task or the file's stem.
pub fn data_stem(source: &str) -> String {
    let stem = source
        .strip_prefix("builtin:")
        .map(str::to_string)
        .unwrap_or_else(|| {
            Path::new(source)
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| "text".into())
        });
    stem.chars()
        .map(|c| {
            if c.is_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Deletes a run directory, refusing anything that is not one (no `config.json`), so a
/// wrong path can never take a user's other files with it.
pub fn delete_run(run_dir: &Path) -> Result<(), CheckpointError> {
    if !RunDir::new(run_dir).config_path().is_file() {
        return Err(CheckpointError::NotACheckpoint(run_dir.to_path_buf()));
    }
    let io = |path: &Path, source| CheckpointError::Io {
        path: path.to_path_buf(),
        error: source,
    };
    // A run being trained (here or by `flm train` elsewhere) holds its lock: refuse rather
    // than pull the files from under it. Everything but the lock file goes while it is held
    // (Windows cannot delete an open file), then the lock file and the folder.
    let lock = RunLock::acquire(run_dir)?;
    for entry in fs::read_dir(run_dir).map_err(|e| io(run_dir, e))? {
        let entry = entry.map_err(|e| io(run_dir, e))?;
        if entry.file_name() == LOCK_FILE {
            continue;
        }
        let path = entry.path();
        let removed = if entry.file_type().is_ok_and(|t| t.is_dir()) {
            fs::remove_dir_all(&path)
        } else {
            fs::remove_file(&path)
        };
        removed.map_err(|e| io(&path, e))?;
    }
    drop(lock);
    fs::remove_dir_all(run_dir).map_err(|e| io(run_dir, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_being_written_is_not_deleted() {
        let dir = std::env::temp_dir().join(format!("flm-delete-locked-{}", std::process::id()));
        fs::create_dir_all(dir.join("checkpoint")).unwrap();
        fs::write(RunDir::new(&dir).config_path(), "{}").unwrap();
        let lock = RunLock::acquire(&dir).unwrap();
        let refused = delete_run(&dir).unwrap_err().to_string();
        assert!(refused.contains("is being written"), "{refused}");
        assert!(RunDir::new(&dir).config_path().is_file());
        drop(lock);
        delete_run(&dir).unwrap();
        assert!(!dir.exists());
    }

    #[test]
    fn fresh_run_dirs_never_reuse_a_folder_and_names_are_safe() {
        let root = std::env::temp_dir().join(format!("flm-fresh-{}", std::process::id()));
        fs::create_dir_all(root.join("book-flm")).unwrap();
        assert_eq!(
            fresh_run_dir(&root.join("book-flm")),
            root.join("book-flm-2")
        );
        assert_eq!(fresh_run_dir(&root.join("other")), root.join("other"));
        assert_eq!(data_stem("/home/me/My Book.txt"), "My_Book");
        assert_eq!(data_stem("builtin:repeat"), "repeat");
        fs::remove_dir_all(root).unwrap();
    }
}
