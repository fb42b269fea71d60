//! The step slider's state machine: which recorded step is shown, and playback through them.
//! Pure logic, so its rules are tested without a window.

/// Position in a recorded trajectory of `steps` frames, and whether it is playing.
#[derive(Debug, Clone, PartialEq)]
pub struct Playback {
    steps: usize,
    /// Index of the frame shown, `0..steps`.
    pub step: usize,
    pub playing: bool,
    /// Frames advanced per second while playing.
    pub speed: f32,
    /// Fraction of a frame accumulated between redraws.
    carry: f32,
}

impl Playback {
    pub const DEFAULT_SPEED: f32 = 12.0;

    /// Starts at the last step: after Generate the user first sees the finished text.
    pub fn new(steps: usize) -> Self {
        Self {
            steps,
            step: steps.saturating_sub(1),
            playing: false,
            speed: Self::DEFAULT_SPEED,
            carry: 0.0,
        }
    }

    pub fn steps(&self) -> usize {
        self.steps
    }

    pub fn last(&self) -> usize {
        self.steps.saturating_sub(1)
    }

    /// Play from the start when at the end, so Play always shows something moving.
    pub fn toggle(&mut self) {
        self.playing = !self.playing;
        if self.playing && self.step >= self.last() {
            self.step = 0;
        }
        self.carry = 0.0;
    }

    /// Steps by `delta` frames (arrow keys), stopping playback.
    pub fn nudge(&mut self, delta: isize) {
        self.playing = false;
        self.step = self.step.saturating_add_signed(delta).min(self.last());
    }

    /// Moves the clock by `dt` seconds; stops at the last frame. Returns whether the step changed.
    pub fn advance(&mut self, dt: f32) -> bool {
        if !self.playing {
            return false;
        }
        self.carry += dt.max(0.0) * self.speed;
        let whole = self.carry.floor();
        self.carry -= whole;
        let before = self.step;
        self.step = (self.step + whole as usize).min(self.last());
        if self.step == self.last() {
            self.playing = false;
        }
        self.step != before
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_at_the_end_and_play_rewinds() {
        let mut playback = Playback::new(8);
        assert_eq!(playback.step, 7);
        playback.toggle();
        assert!(playback.playing);
        assert_eq!(playback.step, 0);
    }

    #[test]
    fn advance_accumulates_fractions_and_stops_at_the_end() {
        let mut playback = Playback::new(10);
        playback.toggle();
        playback.speed = 10.0;
        assert!(!playback.advance(0.05)); // half a frame
        assert!(playback.advance(0.05)); // the other half
        assert_eq!(playback.step, 1);
        playback.advance(5.0);
        assert_eq!(playback.step, 9);
        assert!(!playback.playing);
        assert!(!playback.advance(1.0));
    }

    #[test]
    fn nudge_clamps_and_pauses() {
        let mut playback = Playback::new(4);
        playback.toggle();
        playback.nudge(-3);
        assert_eq!(playback.step, 0);
        assert!(!playback.playing);
        playback.nudge(10);
        assert_eq!(playback.step, 3);
    }

    #[test]
    fn a_one_step_trajectory_has_one_frame() {
        let mut playback = Playback::new(1);
        assert_eq!(playback.step, 0);
        playback.toggle();
        playback.advance(1.0);
        assert_eq!(playback.step, 0);
        assert!(!playback.playing);
    }
}
