//! The live status line on a terminal: hits per second, total, lost; at most 10 refreshes
//! per second, and nothing at all when stderr is not a terminal.
//!
//! Not for: the summary (see [`crate::report`]).

use std::time::{Duration, Instant};

/// Minimum time between two refreshes (10 per second at most).
pub const REFRESH: Duration = Duration::from_millis(100);

/// The state of the status line; [`StatusLine::tick`] returns the text to draw, if any.
#[derive(Debug)]
pub struct StatusLine {
    enabled: bool,
    last_draw: Option<Instant>,
    last_total: u64,
    drawn: bool,
}

impl StatusLine {
    /// A status line that draws only if `enabled` (stderr is a terminal).
    pub fn new(enabled: bool) -> StatusLine {
        StatusLine {
            enabled,
            last_draw: None,
            last_total: 0,
            drawn: false,
        }
    }

    /// The line to draw now (`\r` + text + clear-to-end), or `None` when disabled or when the
    /// last refresh was less than [`REFRESH`] ago.
    pub fn tick(&mut self, now: Instant, total: u64, lost: u64) -> Option<String> {
        if !self.enabled {
            return None;
        }
        let rate = match self.last_draw {
            Some(t) if now.duration_since(t) < REFRESH => return None,
            Some(t) => {
                let dt = now.duration_since(t).as_secs_f64();
                (total.saturating_sub(self.last_total) as f64 / dt).round() as u64
            }
            None => 0,
        };
        self.last_draw = Some(now);
        self.last_total = total;
        self.drawn = true;
        Some(format!("\r{rate} hits/s, {total} total, {lost} lost\x1b[K"))
    }

    /// The text that erases the line before other output (empty if nothing was drawn).
    pub fn clear(&mut self) -> &'static str {
        if std::mem::take(&mut self.drawn) {
            "\r\x1b[K"
        } else {
            ""
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_most_ten_per_second() {
        let t0 = Instant::now();
        let mut s = StatusLine::new(true);
        let ms = |n| t0 + Duration::from_millis(n);
        assert_eq!(
            s.tick(ms(0), 0, 0).as_deref(),
            Some("\r0 hits/s, 0 total, 0 lost\x1b[K")
        );
        assert_eq!(s.tick(ms(50), 10, 0), None);
        assert_eq!(s.tick(ms(99), 10, 0), None);
        assert_eq!(
            s.tick(ms(200), 100, 2).as_deref(),
            Some("\r500 hits/s, 100 total, 2 lost\x1b[K")
        );
        // 10 seconds of ticks every millisecond: at most 100 draws.
        let mut s = StatusLine::new(true);
        let draws = (0..10_000)
            .filter(|&i| s.tick(ms(i), i, 0).is_some())
            .count();
        assert_eq!(draws, 100);
        assert_eq!(s.clear(), "\r\x1b[K");
        assert_eq!(s.clear(), "");
    }

    #[test]
    fn nothing_when_not_a_terminal() {
        let mut s = StatusLine::new(false);
        assert_eq!(s.tick(Instant::now(), 5, 0), None);
        assert_eq!(s.clear(), "");
    }
}
