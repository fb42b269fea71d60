//! The `flm` command line: the same work as the app, headless, with progress bars.
//!
//! One module per subcommand, each holding its clap arguments next to the code that runs
//! them; this file holds the command list, the dispatch and the flags every command shares.
//! Orchestration (training, evaluation, import) lives in the library; the CLI parses flags,
//! calls it, and prints.
//!
//! Exit status: 0 on success (also when the reader of stdout goes away early, as with
//! `flm sample … | head -1`), 1 on an error (the message goes to stderr), 2 on a usage error
//! reported by clap, 130 when a second Ctrl-C ends training at once.

mod bench;
mod demo;
mod distill;
mod eval;
mod import;
mod info;
mod progress;
mod sample;
mod train;

use anyhow::Result;
use clap::{Args, Parser, Subcommand};

use flm::device::{self, ComputeDevice, DeviceChoice};

#[derive(Parser, Debug)]
#[command(
    name = "flm",
    version,
    about = "Train small flow language models on your own text and watch them denoise text.",
    long_about = "Train small flow language models (FLM, arXiv 2602.16813) on a text file or a \
                  built-in task, and sample them by continuous denoising.\n\nWith no subcommand, \
                  flm runs a short terminal demo on the built-in `repeat` task.",
    after_help = "Exit status: 0 on success, 1 on an error, 2 on a usage error."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Train (or resume) an FLM on a text file or a built-in task.
    Train(train::TrainArgs),
    /// Distill a trained FLM into a flow-map model (FMLM) that samples in 1..N steps.
    Distill(distill::DistillArgs),
    /// Train the autoregressive reference model `flm eval` scores samples with (same flags as
    /// `train`; pass --tokenizer-from <the FLM's run> so both share one tokenizer).
    TrainAr(train::TrainArgs),
    /// Generate text from a trained checkpoint.
    Sample(sample::SampleArgs),
    /// Evaluate FLM / FMLM checkpoints at several step counts: gen-PPL under a reference
    /// model, distribution distances to held-out text, diversity, validity, speed.
    Eval(eval::EvalArgs),
    /// Benchmarks: `flm bench kernels` times the WGSL kernels against their op chains,
    /// `flm bench train` training steps with and without the fused noisy input.
    Bench(bench::BenchArgs),
    /// Copy a trained model (config.json, tokenizer.json, model.safetensors) into a folder;
    /// with --layout official, in the layout of the paper's PyTorch code.
    Export(import::ExportArgs),
    /// Import a model of the paper's PyTorch code (a released .ckpt such as lm1b_flm.ckpt, or
    /// an official-layout model.safetensors) as a flm run that `flm sample` opens.
    Import(import::ImportArgs),
    /// Run a model once on inputs from a safetensors file (`x`, `tau`, `tau_t`) and write its
    /// raw logits and probabilities: for comparing flm with other implementations.
    Forward(import::ForwardArgs),
    /// Show a checkpoint's configuration, size and progress.
    Info(info::InfoArgs),
    /// Print the time reparameterization γ(τ) for a vocabulary size.
    Schedule(info::ScheduleArgs),
    /// Train a tiny model on `builtin:repeat` for a minute and show it denoising.
    Demo(demo::DemoArgs),
    /// Open the desktop app (what `flm` with no subcommand does where a display exists).
    Gui(GuiArgs),
}

#[derive(Args, Debug)]
pub struct GuiArgs {
    /// Where the app trains and samples. With a GPU the window is drawn on the same device.
    #[command(flatten)]
    pub device: DeviceArg,
}

/// `--device`, shared by every command that computes.
#[derive(Args, Debug)]
pub struct DeviceArg {
    /// Compute device.
    #[arg(long, value_enum, default_value_t = DeviceChoice::Auto)]
    pub device: DeviceChoice,
}

pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Some(Command::Train(args)) => train::run_train(args, false),
        Some(Command::TrainAr(args)) => train::run_train(args, true),
        Some(Command::Distill(args)) => distill::run(args),
        Some(Command::Sample(args)) => sample::run(args),
        Some(Command::Eval(args)) => eval::run(args),
        Some(Command::Bench(args)) => bench::run(args),
        Some(Command::Export(args)) => import::run_export(args),
        Some(Command::Import(args)) => import::run_import(args),
        Some(Command::Forward(args)) => import::run_forward(args),
        Some(Command::Info(args)) => info::run_info(args),
        Some(Command::Schedule(args)) => info::run_schedule(args),
        Some(Command::Demo(args)) => demo::run(args),
        Some(Command::Gui(args)) => run_desktop(args.device.device).map_err(|reason| {
            anyhow::anyhow!(
                "cannot open the desktop window: {reason}. Run flm in a desktop session, \
                 or use the headless commands (flm --help)"
            )
        }),
        None => match run_desktop(DeviceChoice::Auto) {
            Ok(()) => Ok(()),
            Err(reason) => {
                eprintln!(
                    "flm: cannot open the desktop window ({reason}).\n\
                     Running the terminal demo instead; see `flm --help` for train, distill, \
                     sample, eval and export."
                );
                demo::run(demo::DemoArgs::default())
            }
        },
    }
}

#[cfg(feature = "gui")]
fn run_desktop(device: DeviceChoice) -> Result<(), String> {
    flm::app::run_desktop(device)
}

/// Built with `--no-default-features`: the command line only.
#[cfg(not(feature = "gui"))]
fn run_desktop(_: DeviceChoice) -> Result<(), String> {
    Err("this flm was built without the desktop app (cargo feature `gui`)".into())
}

/// True when `error` comes from writing to a pipe whose reader has gone (`flm … | head`):
/// the reader has what it wanted, so that is a quiet success, not an error.
pub fn is_broken_pipe(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// Selects the device and says which on stderr (stdout stays for results).
fn pick_device(choice: DeviceChoice) -> Result<ComputeDevice> {
    let device = device::select(choice).map_err(anyhow::Error::msg)?;
    eprintln!("device: {device}");
    Ok(device)
}

/// A loss (or any optional measurement) with four decimals, `-` when there is none.
fn fmt_opt(value: Option<f64>) -> String {
    value.map_or_else(|| "-".into(), |v| format!("{v:.4}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broken_pipe_is_found_under_context() {
        let pipe = std::io::Error::from(std::io::ErrorKind::BrokenPipe);
        let error = anyhow::Error::from(pipe).context("writing samples");
        assert!(is_broken_pipe(&error));
        assert!(!is_broken_pipe(&anyhow::anyhow!("Broken pipe")));
    }

    #[test]
    fn the_command_line_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
