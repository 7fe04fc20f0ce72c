//! Time windows: half-open `[start, end)` spans at one-second resolution, and how the next is planned.

use std::fmt;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::time::{DATETIME, format_beijing, truncate_to_second};

/// A half-open span `[start, end)` of whole seconds. Adjacent windows share no second:
/// a vendor with closed intervals is sent `[start, end - 1s]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

impl Window {
    /// The next window after `watermark`: it starts `lookback` before the watermark, spans at
    /// most `max_span`, and ends no later than `horizon` (now minus the settle lag).
    /// `None` when the watermark has already reached the horizon (caught up).
    pub fn next(
        watermark: DateTime<Utc>,
        lookback: Duration,
        max_span: Duration,
        horizon: DateTime<Utc>,
    ) -> Option<Window> {
        let horizon = truncate_to_second(horizon);
        let watermark = truncate_to_second(watermark);
        if horizon <= watermark {
            return None;
        }
        let start = watermark - chrono_duration(lookback);
        let end = (start + chrono_duration(max_span)).min(horizon);
        // lookback < max_span is validated, so the window always moves past the watermark.
        debug_assert!(end > watermark);
        Some(Window { start, end })
    }

    /// The last second inside the window, for vendors whose intervals are closed.
    pub fn last_second(&self) -> DateTime<Utc> {
        self.end - chrono::Duration::seconds(1)
    }
}

impl fmt::Display for Window {
    /// Beijing time, as the vendors and their users read it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{}, {})", format_beijing(self.start, DATETIME), format_beijing(self.end, DATETIME))
    }
}

pub fn chrono_duration(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t(h: u32, m: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2024, 1, 1, h, m, s).unwrap()
    }
    const DAY: Duration = Duration::from_secs(86_400);

    #[test]
    fn windows_are_capped_by_span_and_horizon() {
        let w = Window::next(t(0, 0, 0), Duration::ZERO, Duration::from_secs(3600), t(5, 0, 0)).unwrap();
        assert_eq!((w.start, w.end), (t(0, 0, 0), t(1, 0, 0)));
        let w = Window::next(t(4, 30, 0), Duration::ZERO, DAY, t(5, 0, 0)).unwrap();
        assert_eq!((w.start, w.end), (t(4, 30, 0), t(5, 0, 0)));
    }

    #[test]
    fn caught_up_means_no_window() {
        assert_eq!(Window::next(t(5, 0, 0), Duration::ZERO, DAY, t(5, 0, 0)), None);
        assert_eq!(Window::next(t(5, 0, 0), Duration::ZERO, DAY, t(4, 0, 0)), None);
    }

    #[test]
    fn lookback_reaches_behind_the_watermark_but_span_includes_it() {
        let w = Window::next(t(2, 0, 0), Duration::from_secs(600), Duration::from_secs(3600), t(9, 0, 0)).unwrap();
        assert_eq!((w.start, w.end), (t(1, 50, 0), t(2, 50, 0)));
    }

    #[test]
    fn adjacent_windows_never_share_a_boundary_second() {
        let horizon = t(23, 59, 59);
        let mut wm = t(0, 0, 0);
        let mut covered = 0i64;
        while let Some(w) = Window::next(wm, Duration::ZERO, Duration::from_secs(7 * 60 + 13), horizon) {
            assert_eq!(w.start, wm, "the next window starts exactly at the watermark");
            // Closed rendering [start, last_second] of consecutive windows must not overlap.
            assert!(w.last_second() < w.end && w.last_second() >= w.start);
            covered += (w.last_second() - w.start).num_seconds() + 1;
            wm = w.end;
        }
        assert_eq!(covered, (horizon - t(0, 0, 0)).num_seconds(), "every second counted exactly once");
    }

    #[test]
    fn a_full_day_window_renders_as_the_vendor_example() {
        let w = Window::next(t(0, 0, 0) - chrono::Duration::hours(8), Duration::ZERO, DAY, t(23, 0, 0)).unwrap();
        assert_eq!(format_beijing(w.start, DATETIME), "2024-01-01 00:00:00");
        assert_eq!(format_beijing(w.last_second(), DATETIME), "2024-01-01 23:59:59");
    }
}
