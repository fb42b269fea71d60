//! `flm`: one binary for the desktop app (no subcommand) and the command line. Exit status:
//! 0 on success or when stdout's reader has gone away, 1 on an error, 2 on a usage error.

mod cli;

use clap::Parser;

/// Training and sampling allocate and free megabyte tensors every step; mimalloc keeps that
/// memory for reuse where the system allocator gave it back and faulted it in again.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    quiet_mesa_without_runtime_dir();
    let cli = cli::Cli::parse();
    match cli::run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        // `flm sample … | head -1`: the reader has what it wanted.
        Err(error) if cli::is_broken_pipe(&error) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Mesa's Vulkan driver prints "XDG_RUNTIME_DIR is invalid" on every adapter probe when the
/// variable is unset (servers, CI, containers). Point it at a private directory first.
fn quiet_mesa_without_runtime_dir() {
    if std::env::var_os("XDG_RUNTIME_DIR").is_some() {
        return;
    }
    let dir = std::env::temp_dir().join(format!("flm-runtime-{}", whoami()));
    if std::fs::create_dir_all(&dir).is_ok() {
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700));
        }
        // SAFETY: called first thing in `main`, before any other thread exists.
        unsafe { std::env::set_var("XDG_RUNTIME_DIR", &dir) };
    }
}

/// A per-user suffix so two users never share the runtime directory.
fn whoami() -> String {
    std::env::var("USER").unwrap_or_else(|_| "user".into())
}
