//! How numbers read in the front ends, so the CLI and the app say the same thing the same way.

/// A duration as `m:ss` (minutes unbounded): elapsed training time and ETAs.
pub fn clock(secs: f64) -> String {
    let secs = secs.max(0.0) as u64;
    format!("{}:{:02}", secs / 60, secs % 60)
}

#[cfg(test)]
mod tests {
    use super::clock;

    #[test]
    fn clock_reads_minutes_and_seconds() {
        assert_eq!(clock(0.0), "0:00");
        assert_eq!(clock(61.9), "1:01");
        assert_eq!(clock(3725.0), "62:05");
        assert_eq!(clock(-3.0), "0:00");
    }
}
