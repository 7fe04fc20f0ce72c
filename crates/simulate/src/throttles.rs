//! The counted limits of `[faults]`: a per-window request limit per vendor and the TOP gateway's daily app quota.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use chrono::{DateTime, NaiveTime, TimeDelta, Utc};

use super::vendor::Vendor;
use crate::domain::time::next_beijing_time_of_day;

/// What the limits say about one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Accepted,
    /// Over the per-window limit. `refusal` numbers this vendor's per-window refusals from 0
    /// (旺店通 cycles its texts by it); `secs_left` is the rest of the window in whole seconds,
    /// rounded up, at least 1.
    PerWindow {
        refusal: u64,
        secs_left: u64,
    },
    /// The daily quota is spent: whole seconds until the reset, rounded up, at least 1.
    Daily {
        secs_left: u64,
    },
}

/// One vendor's counts.
#[derive(Debug, Default, Clone)]
pub struct Counts {
    pub per_minute_refused: u64,
    pub daily_refused: u64,
    /// Ms since start (on the simulator's clock) of the first daily refusal after each reset.
    pub quota_exhausted_ms: Vec<u64>,
    /// Accepted requests per window, index k for window k, up to the latest request's window.
    pub window_accepted: Vec<u64>,
    /// Ms since start of each request `per_minute_limit` refused.
    pub per_minute_refused_ms: Vec<u64>,
    day_accepted: u64,
    exhausted_today: bool,
}

/// The running limits. Times are passed in, so tests need not wait for windows or days.
pub struct Limits {
    per_window: u64,
    window: Duration,
    daily_quota: u64,
    reset: NaiveTime,
    /// The quota resets this long after it is used up, instead of at `reset`.
    lasts: Option<Duration>,
    started: Instant,
    started_wall: DateTime<Utc>,
    state: Mutex<State>,
}

struct State {
    next_reset: DateTime<Utc>,
    resets_ms: Vec<u64>,
    vendors: BTreeMap<Vendor, Counts>,
}

/// Whole seconds, rounded up, at least 1.
fn ceil_secs(d: Duration) -> u64 {
    (d.as_secs() + u64::from(d.subsec_nanos() > 0)).max(1)
}

fn ms_between(from: DateTime<Utc>, to: DateTime<Utc>) -> u64 {
    (to - from).num_milliseconds().max(0) as u64
}

impl Limits {
    /// `per_window` requests per `window` (0: no limit); `daily_quota` per day for TOP and 奇门
    /// (0: none), reset at `reset` Beijing time. Windows count from `started`; days and the
    /// log's reset times from `started_wall`, the simulator's (skewed) clock at that moment.
    pub fn new(
        per_window: u64,
        window: Duration,
        daily_quota: u64,
        reset: NaiveTime,
        started: Instant,
        started_wall: DateTime<Utc>,
    ) -> Limits {
        Limits {
            per_window,
            window,
            daily_quota,
            reset,
            lasts: None,
            started,
            started_wall,
            state: Mutex::new(State {
                next_reset: next_beijing_time_of_day(started_wall, reset),
                resets_ms: Vec::new(),
                vendors: BTreeMap::new(),
            }),
        }
    }

    /// The quota resets `lasts` after it is first used up (tests), not at the time of day.
    pub fn with_quota_lasting(mut self, lasts: Option<Duration>) -> Limits {
        self.lasts = lasts;
        self
    }

    fn has_quota(&self, vendor: Vendor) -> bool {
        self.daily_quota > 0 && matches!(vendor, Vendor::Top | Vendor::Qimen)
    }

    /// Passes every reset up to `wall`: each starts the day's counts from zero.
    fn catch_up(&self, s: &mut State, wall: DateTime<Utc>) {
        while self.daily_quota > 0 && wall >= s.next_reset {
            s.resets_ms.push(ms_between(self.started_wall, s.next_reset));
            s.next_reset = next_beijing_time_of_day(s.next_reset, self.reset);
            for c in s.vendors.values_mut() {
                c.day_accepted = 0;
                c.exhausted_today = false;
            }
        }
    }

    /// Decides one request that arrived at `at` (monotonic) and `wall` (the simulator's clock).
    /// Only an accepted request counts against the daily quota and the window's limit.
    pub fn admit(&self, vendor: Vendor, at: Instant, wall: DateTime<Utc>) -> Verdict {
        let mut s = self.state.lock().expect("limits");
        self.catch_up(&mut s, wall);
        let next_reset = s.next_reset;
        let c = s.vendors.entry(vendor).or_default();
        let has_quota = self.has_quota(vendor);
        if has_quota && c.day_accepted >= self.daily_quota {
            c.daily_refused += 1;
            let mut next_reset = next_reset;
            if !c.exhausted_today {
                c.exhausted_today = true;
                c.quota_exhausted_ms.push(ms_between(self.started_wall, wall));
                if let Some(lasts) = self.lasts {
                    next_reset = wall + TimeDelta::from_std(lasts).unwrap_or(TimeDelta::days(1));
                    s.next_reset = next_reset;
                }
            }
            return Verdict::Daily { secs_left: ceil_secs((next_reset - wall).to_std().unwrap_or_default()) };
        }
        if self.per_window > 0 {
            let elapsed = at.saturating_duration_since(self.started);
            let k = (elapsed.as_nanos() / self.window.as_nanos()) as usize;
            if c.window_accepted.len() <= k {
                c.window_accepted.resize(k + 1, 0);
            }
            if c.window_accepted[k] >= self.per_window {
                let refusal = c.per_minute_refused;
                c.per_minute_refused += 1;
                c.per_minute_refused_ms.push(elapsed.as_millis() as u64);
                let left = self.window * (k as u32 + 1) - elapsed;
                return Verdict::PerWindow { refusal, secs_left: ceil_secs(left) };
            }
            c.window_accepted[k] += 1;
        }
        if has_quota {
            c.day_accepted += 1;
        }
        Verdict::Accepted
    }

    /// The counts for `vendor`, with the resets passed by `wall` (when it has a daily quota).
    pub fn counts(&self, vendor: Vendor, wall: DateTime<Utc>) -> (Counts, Vec<u64>) {
        let mut s = self.state.lock().expect("limits");
        self.catch_up(&mut s, wall);
        let resets = if self.has_quota(vendor) { s.resets_ms.clone() } else { Vec::new() };
        (s.vendors.get(&vendor).cloned().unwrap_or_default(), resets)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::time::parse_beijing;

    const MIDNIGHT: NaiveTime = NaiveTime::MIN;

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    #[test]
    fn a_window_accepts_its_limit_refusals_do_not_count_and_the_next_window_accepts_again() {
        let t0 = Instant::now();
        let wall = Utc::now();
        let l = Limits::new(2, secs(60.0), 0, MIDNIGHT, t0, wall);
        let admit = |at: f64| l.admit(Vendor::Wdt, t0 + secs(at), wall);
        assert_eq!(admit(0.2), Verdict::Accepted);
        assert_eq!(admit(1.0), Verdict::Accepted);
        // 59.8 s left rounds up to 60; exactly 59 s left is 59; half a second is 1.
        assert_eq!(admit(0.2), Verdict::PerWindow { refusal: 0, secs_left: 60 });
        assert_eq!(admit(1.0), Verdict::PerWindow { refusal: 1, secs_left: 59 });
        assert_eq!(admit(59.5), Verdict::PerWindow { refusal: 2, secs_left: 1 });
        assert_eq!(admit(60.0), Verdict::Accepted, "window 1 starts at 60 s");
        assert_eq!(admit(119.0), Verdict::Accepted, "the refusals did not use up window 1");
        assert_eq!(admit(119.999), Verdict::PerWindow { refusal: 3, secs_left: 1 });
        // A window with no requests shows 0.
        assert_eq!(admit(180.0), Verdict::Accepted);
        // Each vendor has its own limit.
        assert_eq!(l.admit(Vendor::Top, t0 + secs(1.0), wall), Verdict::Accepted);
        let (c, resets) = l.counts(Vendor::Wdt, wall);
        assert_eq!((c.window_accepted, c.per_minute_refused, c.daily_refused), (vec![2, 2, 0, 1], 4, 0));
        assert!(resets.is_empty());
    }

    #[test]
    fn the_daily_quota_refuses_until_the_reset_and_then_counts_from_zero() {
        let t0 = Instant::now();
        let start = parse_beijing("2024-03-01 23:59:53").unwrap();
        let l = Limits::new(0, secs(60.0), 2, MIDNIGHT, t0, start);
        let admit = |v: Vendor, at: f64| l.admit(v, t0, start + TimeDelta::from_std(secs(at)).unwrap());
        assert_eq!(admit(Vendor::Top, 1.0), Verdict::Accepted);
        assert_eq!(admit(Vendor::Top, 1.0), Verdict::Accepted);
        assert_eq!(admit(Vendor::Top, 1.0), Verdict::Daily { secs_left: 6 });
        assert_eq!(admit(Vendor::Top, 6.5), Verdict::Daily { secs_left: 1 });
        // 奇门 has its own count; other vendors have no daily quota.
        for _ in 0..2 {
            assert_eq!(admit(Vendor::Qimen, 2.0), Verdict::Accepted);
        }
        assert_eq!(admit(Vendor::Qimen, 2.0), Verdict::Daily { secs_left: 5 });
        for _ in 0..5 {
            assert_eq!(admit(Vendor::Wdt, 2.0), Verdict::Accepted);
        }
        // Midnight Beijing is 7 s after the start.
        assert_eq!(admit(Vendor::Top, 7.0), Verdict::Accepted);
        assert_eq!(admit(Vendor::Top, 8.0), Verdict::Accepted);
        assert_eq!(admit(Vendor::Top, 8.5), Verdict::Daily { secs_left: 86_399 });
        let (c, resets) = l.counts(Vendor::Top, start + TimeDelta::seconds(9));
        assert_eq!((c.daily_refused, c.quota_exhausted_ms, resets), (3, vec![1000, 8500], vec![7000]));
        // A reset passes with no request: the log shows it.
        let (q, resets) = l.counts(Vendor::Qimen, start + TimeDelta::seconds(7 + 86_400));
        assert_eq!((q.daily_refused, q.quota_exhausted_ms, resets), (1, vec![2000], vec![7000, 86_407_000]));
        assert!(l.counts(Vendor::Wdt, start).1.is_empty(), "旺店通 has no daily quota");
    }

    #[test]
    fn a_request_refused_by_the_window_does_not_use_the_daily_quota() {
        let t0 = Instant::now();
        let wall = parse_beijing("2024-03-01 12:00:00").unwrap();
        let l = Limits::new(1, secs(10.0), 2, NaiveTime::from_hms_opt(12, 0, 0).unwrap(), t0, wall);
        assert_eq!(l.admit(Vendor::Top, t0, wall), Verdict::Accepted);
        assert_eq!(l.admit(Vendor::Top, t0, wall), Verdict::PerWindow { refusal: 0, secs_left: 10 });
        assert_eq!(l.admit(Vendor::Top, t0 + secs(10.0), wall), Verdict::Accepted);
        // A reset at the start's own time of day is a day later.
        assert_eq!(l.admit(Vendor::Top, t0 + secs(20.0), wall), Verdict::Daily { secs_left: 86_400 });
    }

    #[test]
    fn a_quota_lasting_a_while_resets_that_long_after_it_was_used_up() {
        let t0 = Instant::now();
        let start = parse_beijing("2024-03-01 12:00:00").unwrap();
        let l = Limits::new(0, secs(60.0), 1, MIDNIGHT, t0, start).with_quota_lasting(Some(secs(20.0)));
        let admit = |at: f64| l.admit(Vendor::Top, t0, start + TimeDelta::from_std(secs(at)).unwrap());
        assert_eq!(admit(1.0), Verdict::Accepted);
        assert_eq!(admit(5.0), Verdict::Daily { secs_left: 20 });
        assert_eq!(admit(15.0), Verdict::Daily { secs_left: 10 });
        assert_eq!(admit(25.5), Verdict::Accepted, "reset 20 s after it was used up");
        assert_eq!(admit(26.0), Verdict::Daily { secs_left: 20 }, "and again when used up again");
    }
}
