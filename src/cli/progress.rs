//! The terminal view of a training run: a progress bar over steps (or the time budget) with
//! validation, sample previews and checkpoints as log lines above it; plain lines every few
//! seconds when stderr is not a terminal.

use std::path::Path;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

use flm::display::clock;
use flm::train::TrainEvent;
use flm::train::events::samples_headline;

/// Says that the run's data is being prepared, with a ticking spinner on a terminal: a big
/// text file takes minutes (a 100 MB file with BPE about three on two cores), and a silent
/// terminal looks hung.
pub fn preparing(out: &Path) -> ProgressBar {
    eprintln!("preparing data in {} …", out.display());
    let spinner = ProgressBar::new_spinner();
    spinner.set_style(
        ProgressStyle::with_template(
            "{spinner} {elapsed} tokenizer and token ids (a big text file takes minutes; once)",
        )
        .expect("valid template"),
    );
    spinner.enable_steady_tick(Duration::from_millis(200));
    spinner
}

/// Renders training events: a bar for steps (or minutes), log lines for the rest.
pub struct ProgressView {
    bar: ProgressBar,
    /// Set when the bar counts seconds of a time budget rather than steps.
    timed_since: Option<Instant>,
    /// Without a terminal there is no bar; progress goes to plain log lines this often.
    last_plain_line: Option<Instant>,
}

/// Seconds between progress lines when stderr is not a terminal (logs, CI).
const PLAIN_PROGRESS_SECS: u64 = 15;

impl Default for ProgressView {
    /// No bar until the run says how long it is.
    fn default() -> Self {
        Self {
            bar: ProgressBar::hidden(),
            timed_since: None,
            last_plain_line: None,
        }
    }
}

impl ProgressView {
    /// Prints above the bar, or plainly when there is no terminal to draw one on.
    fn line(&self, message: String) {
        if self.bar.is_hidden() {
            eprintln!("{message}");
        } else {
            self.bar.println(message);
        }
    }

    pub fn show(&mut self, event: &TrainEvent) {
        match event {
            // The device was announced when it was picked; say it once.
            TrainEvent::Started {
                parameters,
                start_step,
                target_steps,
                budget_secs,
                tokens_per_step,
                ..
            } => {
                self.bar = match (target_steps, budget_secs) {
                    (Some(target), None) => {
                        let bar = ProgressBar::new(*target);
                        bar.set_position(*start_step);
                        bar
                    }
                    (_, Some(secs)) => {
                        self.timed_since = Some(Instant::now());
                        ProgressBar::new(secs.ceil() as u64)
                    }
                    (None, None) => ProgressBar::new_spinner(),
                };
                self.bar.set_style(
                    ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} {msg}")
                        .expect("valid template")
                        .progress_chars("=> "),
                );
                self.line(format!(
                    "training: {parameters} parameters, {tokens_per_step} tokens/step, from step {start_step}"
                ));
            }
            TrainEvent::Step {
                step,
                loss,
                tokens_per_sec,
                eta_secs,
                ..
            } => {
                match self.timed_since {
                    Some(since) => self.bar.set_position(since.elapsed().as_secs()),
                    None => self.bar.set_position(*step),
                }
                let eta = eta_secs.map_or_else(String::new, |s| format!(" eta {}", clock(s)));
                let message = format!("step {step} loss {loss:.4} {tokens_per_sec:.0} tok/s{eta}");
                if self.bar.is_hidden() {
                    let due = self
                        .last_plain_line
                        .is_none_or(|t| t.elapsed().as_secs() >= PLAIN_PROGRESS_SECS);
                    if due {
                        eprintln!("{message}");
                        self.last_plain_line = Some(Instant::now());
                    }
                }
                self.bar.set_message(message);
            }
            TrainEvent::Validation {
                step,
                loss,
                metrics,
            } => {
                let probe: Vec<String> = metrics
                    .iter()
                    .filter(|(name, _)| {
                        name.starts_with("one_step") || name.starts_with("two_step")
                    })
                    .map(|(name, value)| format!("{name} {value:.3}"))
                    .collect();
                let probe = if probe.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", probe.join(", "))
                };
                self.line(format!("step {step}: validation loss {loss:.4}{probe}"));
            }
            TrainEvent::Samples {
                step,
                sampler,
                steps,
                texts,
                valid_fraction,
                readability,
            } => {
                let headline = samples_headline(sampler, *steps, *valid_fraction);
                self.line(format!("step {step}: samples ({headline})"));
                for text in texts.iter().take(2) {
                    self.line(format!("  │ {}", one_line(text, 100)));
                }
                if let Some(note) = readability {
                    self.line(format!("  {}: {}", note.measured.summary(), note.advice));
                }
            }
            TrainEvent::Checkpoint { step, dir } => {
                self.line(format!(
                    "step {step}: checkpoint written to {}",
                    dir.display()
                ));
            }
            TrainEvent::Finished { .. } => {}
        }
    }

    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

/// `text` on one line (control characters as spaces), cut to `max_chars`.
fn one_line(text: &str, max_chars: usize) -> String {
    let flat: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    flat.chars().take(max_chars).collect()
}
