//! `metrics.jsonl`: one [`MetricLine`] per logged step or validation, written by the trainer
//! and read back by the app's curves (one record type, so writer and readers cannot drift).

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::checkpoint::{CheckpointError, write_atomic};

/// One line of `metrics.jsonl`. A training line carries `loss` and the throughput fields, a
/// validation line `valid_loss`; both may carry named `parts`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MetricLine {
    pub step: u64,
    /// Mean training loss since the previous line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lr: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grad_norm: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens_per_sec: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub elapsed_secs: Option<f64>,
    /// Validation loss of the EMA weights.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid_loss: Option<f64>,
    /// Named extras: the loss split by group (`diagonal_loss`, …; `valid_…` on validation
    /// lines) and, for flow maps, the one-step probe (`one_step_valid`, …; `train::probe`).
    #[serde(flatten)]
    pub parts: BTreeMap<String, f64>,
}

impl MetricLine {
    /// A line for `step` with the named `parts`, each name prefixed by `prefix`.
    pub fn with_parts<'a>(
        mut self,
        prefix: &str,
        parts: impl IntoIterator<Item = &'a (&'static str, f64)>,
    ) -> Self {
        for (name, value) in parts {
            self.parts.insert(format!("{prefix}{name}"), *value);
        }
        self
    }
}

/// Appends `line` to the log at `path`.
pub fn append(path: &Path, line: &MetricLine) -> Result<(), CheckpointError> {
    let io = |source| CheckpointError::Io {
        path: path.to_path_buf(),
        error: source,
    };
    let text = serde_json::to_string(line).expect("metric lines serialize");
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(io)?;
    writeln!(file, "{text}").map_err(io)
}

/// Every readable line of the log at `path` (a line being written, or from an older flm,
/// that does not parse is skipped); empty when there is no log.
pub fn read(path: &Path) -> Vec<MetricLine> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Vec::new();
    };
    text.lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect()
}

/// Drops lines logged after `step`, so a resumed run's log tells one story.
pub fn truncate_after(path: &Path, step: u64) -> Result<(), CheckpointError> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Ok(());
    };
    let kept: String = text
        .lines()
        .filter(|line| {
            serde_json::from_str::<MetricLine>(line).is_ok_and(|record| record.step <= step)
        })
        .map(|line| format!("{line}\n"))
        .collect();
    write_atomic(path, kept.as_bytes())
}

/// Training and validation loss curves, `[step, value]` points.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LossCurves {
    pub train: Vec<[f64; 2]>,
    pub valid: Vec<[f64; 2]>,
}

impl LossCurves {
    pub fn from_lines(lines: &[MetricLine]) -> Self {
        let points = |value: fn(&MetricLine) -> Option<f64>| {
            lines
                .iter()
                .filter_map(|line| value(line).map(|v| [line.step as f64, v]))
                .collect()
        };
        Self {
            train: points(|line| line.loss),
            valid: points(|line| line.valid_loss),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_round_trip_and_odd_lines_are_skipped() {
        let dir = crate::data::test_util::unique_temp_dir("metrics");
        let path = dir.join("metrics.jsonl");
        let training = MetricLine {
            step: 10,
            loss: Some(2.5),
            lr: Some(1e-3),
            ..MetricLine::default()
        }
        .with_parts("", &[("diagonal_loss", 0.25)]);
        let validation = MetricLine {
            step: 20,
            valid_loss: Some(2.25),
            ..MetricLine::default()
        }
        .with_parts("", &[("one_step_valid", 0.5)]);
        append(&path, &training).unwrap();
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"{\"step\": 15, \"loss\": \n")
            .unwrap();
        append(&path, &validation).unwrap();
        let lines = read(&path);
        assert_eq!(lines, vec![training.clone(), validation]);
        assert_eq!(lines[0].parts["diagonal_loss"], 0.25);
        let curves = LossCurves::from_lines(&lines);
        assert_eq!(curves.train, vec![[10.0, 2.5]]);
        assert_eq!(curves.valid, vec![[20.0, 2.25]]);

        truncate_after(&path, 10).unwrap();
        assert_eq!(read(&path), vec![training]);
    }

    #[test]
    fn lines_written_by_older_versions_still_read() {
        let old = r#"{"step": 3, "loss": 1.5, "lr": 0.001, "grad_norm": 0.5, "tokens_per_sec": 900.0, "elapsed_secs": 1.0, "off_diagonal_loss": 0.1}"#;
        let line: MetricLine = serde_json::from_str(old).unwrap();
        assert_eq!((line.step, line.loss), (3, Some(1.5)));
        assert_eq!(line.parts["off_diagonal_loss"], 0.1);
    }
}
