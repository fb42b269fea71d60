//! End-to-end tests: one test binary (the heavy crate links once), one module per area.

mod checkpoints;
mod cli;
mod common;
mod distill;
mod eval;
mod gpu;
#[cfg(feature = "gui")]
mod gui;
mod hardening;
mod import;
mod kernels;
mod prompting;
mod runs;
mod sampling;
mod training;
