//! One writer per run directory: an exclusive lock held for the whole of a training run.
//!
//! Two `flm train` (or a GUI job and a `flm train --resume`) writing the same run would swap
//! each other's `checkpoint.new/` away. The lock is an OS file lock (`flock` on Unix,
//! `LockFileEx` on Windows) on `<run>/.flm-lock`, so it is released when the process exits,
//! however it exits (a crash or SIGKILL included); the file itself stays, holding the pid of
//! the last holder for the message a second writer gets.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use super::checkpoint::CheckpointError;

/// The lock file's name inside a run directory.
pub const LOCK_FILE: &str = ".flm-lock";

/// Held while a run is being written; dropping it releases the lock.
#[derive(Debug)]
pub struct RunLock {
    _file: File,
    path: PathBuf,
}

impl RunLock {
    /// Locks `dir` (which must exist) or says which process holds it.
    pub fn acquire(dir: &Path) -> Result<Self, CheckpointError> {
        let path = dir.join(LOCK_FILE);
        let io = |error| CheckpointError::Io {
            path: path.clone(),
            error,
        };
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let pid = holder.trim().parse::<u32>().ok();
                return Err(CheckpointError::Locked {
                    path: dir.to_path_buf(),
                    holder: pid.map_or_else(String::new, |pid| format!(" (pid {pid})")),
                });
            }
            Err(TryLockError::Error(error)) => return Err(io(error)),
        }
        // Best effort: the pid only makes the message for a second writer more helpful.
        let _ = file
            .set_len(0)
            .and_then(|()| file.rewind())
            .and_then(|()| writeln!(file, "{}", std::process::id()))
            .and_then(|()| file.flush());
        Ok(Self { _file: file, path })
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}
