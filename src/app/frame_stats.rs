//! Frame timing: how long the UI took to build each frame and how often frames came, so the
//! status bar (and `FLM_FRAME_LOG`) can report p50/p95 against the 30 frames/s target.

use std::collections::VecDeque;
use std::io::Write;
use std::time::Instant;

/// The last frames' timings, in milliseconds.
#[derive(Debug, Default)]
pub struct FrameStats {
    /// Time between the starts of consecutive frames, only while frames come back to back.
    intervals: VecDeque<f32>,
    /// CPU time of the UI code (layout + our drawing), per frame.
    build: VecDeque<f32>,
    last_start: Option<Instant>,
    last_was_counted: bool,
    total_frames: u64,
}

/// Frames kept: a few seconds at 60 frames/s.
const WINDOW: usize = 600;
/// A gap longer than this is idleness (nothing asked for a redraw), not a slow frame.
const IDLE_GAP_MS: f32 = 250.0;

/// p50 and p95 of one measure.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Percentiles {
    pub p50: f32,
    pub p95: f32,
    pub count: usize,
}

impl FrameStats {
    /// Call at the start of a frame; returns the clock for [`FrameStats::frame_end`].
    pub fn frame_start(&mut self) -> Instant {
        let now = Instant::now();
        self.last_was_counted = false;
        if let Some(last) = self.last_start {
            let ms = now.duration_since(last).as_secs_f32() * 1000.0;
            if ms < IDLE_GAP_MS {
                push(&mut self.intervals, ms);
                self.last_was_counted = true;
            }
        }
        self.last_start = Some(now);
        self.total_frames += 1;
        now
    }

    /// Ends the frame; returns its build time and the interval since the previous frame
    /// (`None` after idleness), in milliseconds.
    pub fn frame_end(&mut self, started: Instant) -> (f32, Option<f32>) {
        let build = started.elapsed().as_secs_f32() * 1000.0;
        push(&mut self.build, build);
        let interval = self
            .intervals
            .back()
            .copied()
            .filter(|_| self.last_was_counted);
        (build, interval)
    }

    pub fn intervals(&self) -> Option<Percentiles> {
        percentiles(&self.intervals)
    }

    pub fn build_times(&self) -> Option<Percentiles> {
        percentiles(&self.build)
    }

    pub fn total_frames(&self) -> u64 {
        self.total_frames
    }
}

/// Every frame as a line of `FLM_FRAME_LOG`: unix time (s); interval, build time, and eframe's
/// CPU time for the previous frame (UI + tessellation + paint calls), in ms (`-` when
/// unknown: after idleness, or before the first frame). Scripts cut windows out of it.
pub struct FrameLog {
    out: std::io::BufWriter<std::fs::File>,
}

impl FrameLog {
    pub fn create(path: &std::path::Path) -> std::io::Result<Self> {
        let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
        writeln!(out, "# unix_s interval_ms build_ms frame_cpu_ms view")?;
        Ok(Self { out })
    }

    pub fn record(
        &mut self,
        build_ms: f32,
        interval_ms: Option<f32>,
        frame_cpu_ms: Option<f32>,
        view: &str,
    ) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        let ms = |value: Option<f32>| value.map_or("-".into(), |ms| format!("{ms:.3}"));
        let (interval, cpu) = (ms(interval_ms), ms(frame_cpu_ms));
        // A lost line only thins the measurement; never worth disturbing the UI.
        let _ = writeln!(self.out, "{now:.3} {interval} {build_ms:.3} {cpu} {view}");
        let _ = self.out.flush();
    }
}

fn push(window: &mut VecDeque<f32>, value: f32) {
    if window.len() == WINDOW {
        window.pop_front();
    }
    window.push_back(value);
}

/// Nearest-rank percentiles.
pub fn percentiles(values: &VecDeque<f32>) -> Option<Percentiles> {
    if values.is_empty() {
        return None;
    }
    let mut sorted: Vec<f32> = values.iter().copied().collect();
    sorted.sort_by(f32::total_cmp);
    let rank =
        |q: f32| sorted[((q * sorted.len() as f32).ceil() as usize).clamp(1, sorted.len()) - 1];
    Some(Percentiles {
        p50: rank(0.50),
        p95: rank(0.95),
        count: sorted.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let values: VecDeque<f32> = (1..=100).map(|v| v as f32).collect();
        let p = percentiles(&values).unwrap();
        assert_eq!((p.p50, p.p95, p.count), (50.0, 95.0, 100));
        let one: VecDeque<f32> = [7.0].into();
        assert_eq!(percentiles(&one).unwrap().p95, 7.0);
        assert!(percentiles(&VecDeque::new()).is_none());
    }

    #[test]
    fn idle_gaps_are_not_counted_as_frames() {
        let mut stats = FrameStats::default();
        let start = stats.frame_start();
        stats.frame_end(start);
        std::thread::sleep(std::time::Duration::from_millis(300));
        stats.frame_start();
        assert!(stats.intervals().is_none());
        assert_eq!(stats.build_times().unwrap().count, 1);
        assert_eq!(stats.total_frames(), 2);
    }
}
