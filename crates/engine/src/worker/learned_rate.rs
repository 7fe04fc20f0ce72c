//! The request rate a credential learns from the vendor's throttles: cut to what the vendor
//! accepted when it said "slow down", recovered gradually to just under that, and probed
//! upwards now and then, so a vendor with an unpublished per-minute limit is met, not bounced
//! off every minute.

use std::time::Duration;

use tokio::time::Instant;

/// The span vendors count limits over ("每分钟", calls per minute): accepted requests are
/// counted over it, and the rate is cut at most once in it.
pub const LIMIT_SPAN: Duration = Duration::from_secs(60);
/// The rate settles at this share of the lowest rate the vendor throttled: just under it.
const SETTLE: f64 = 0.97;
/// Right after a throttle the rate starts from this share of it, recovering to `SETTLE`.
const CUT: f64 = 0.9;
/// How long the recovery from `CUT` to `SETTLE` takes.
const RECOVERY: Duration = Duration::from_secs(60);
/// After this long without a throttle the rate is raised by `PROBE_STEP`, and again after
/// each further `PROBE_AFTER`, each step twice the one before (5 %, 10 %, 20 % …): a limit that
/// rose, or a rate cut far down while another client spent the quota, is found again within
/// the hour, while a limit that stayed put costs one throttle every `PROBE_AFTER`.
const PROBE_AFTER: Duration = Duration::from_secs(300);
const PROBE_STEP: f64 = 0.05;
/// Fewer accepted requests than this in the last `LIMIT_SPAN` say too little about the limit:
/// the rate is halved instead of set from them.
const MIN_SAMPLE: u32 = 30;
/// The first pause of a throttle that names no length; it doubles while the vendor keeps
/// answering the first request after each pause with a throttle, up to `MAX_DEFAULT_BAN`.
pub const FIRST_DEFAULT_BAN: Duration = Duration::from_secs(10);
/// 旺店通 advises waiting 5–10 minutes: the doubling stops at the lower end.
pub const MAX_DEFAULT_BAN: Duration = Duration::from_secs(300);
/// The shortest pause a ban imposes.
pub const MIN_BAN: Duration = Duration::from_secs(1);
/// Never slower than one request a minute.
const MIN_RATE: f64 = 1.0 / 60.0;

/// Requests the vendor accepted, per second, over the last `LIMIT_SPAN`.
#[derive(Debug)]
struct SecondCounts {
    /// Counts for the seconds `base - 59 ..= base`, indexed by second modulo 60.
    counts: [u32; 60],
    base: u64,
}

impl SecondCounts {
    fn advance(&mut self, second: u64) {
        if second <= self.base {
            return;
        }
        for s in (self.base + 1..=second).take(60) {
            self.counts[(s % 60) as usize] = 0;
        }
        self.base = second;
    }

    fn add(&mut self, second: u64) {
        self.advance(second);
        if second + 60 > self.base {
            self.counts[(second % 60) as usize] += 1;
        }
    }

    fn total(&mut self, second: u64) -> u32 {
        self.advance(second);
        self.counts.iter().sum()
    }
}

/// One credential's learned rate (requests per second), under its ceiling (the configured
/// quota, times this replica's share).
#[derive(Debug)]
pub struct LearnedRate {
    epoch: Instant,
    ceiling: f64,
    /// The lowest rate the vendor throttled at lately: an upper bound of its limit.
    limit: Option<f64>,
    /// When `limit` was set, and the rate recovery started from then.
    since: Instant,
    start: f64,
    last_cut: Option<Instant>,
    /// When the last ban began: throttles of requests sent before it answer for that ban.
    last_ban: Option<Instant>,
    /// Bans in a row without an accepted request between them.
    streak: u32,
    accepted: SecondCounts,
}

/// What a throttle answer means for the credential.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Throttle {
    /// A new ban of this length (the vendor's, or the default for this many bans in a row).
    Ban(Duration),
    /// The request was out before the current ban began: it answers for that ban.
    Same,
}

impl LearnedRate {
    pub fn new(ceiling: f64, now: Instant) -> Self {
        LearnedRate {
            epoch: now,
            ceiling,
            limit: None,
            since: now,
            start: ceiling,
            last_cut: None,
            last_ban: None,
            streak: 0,
            accepted: SecondCounts { counts: [0; 60], base: 0 },
        }
    }

    fn second(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.epoch).as_secs()
    }

    /// A new ceiling (this replica's share of the quota changed): what was learned scales
    /// with it, since the vendor's limit is shared the same way.
    pub fn set_ceiling(&mut self, ceiling: f64) {
        if self.ceiling > 0.0 {
            let scale = ceiling / self.ceiling;
            self.limit = self.limit.map(|l| l * scale);
            self.start *= scale;
        }
        self.ceiling = ceiling;
    }

    /// The rate the credential may send at now.
    pub fn rate(&self, now: Instant) -> f64 {
        let Some(limit) = self.limit else { return self.ceiling };
        let settled = limit * SETTLE;
        let t = now.saturating_duration_since(self.since);
        let rate = if t < RECOVERY {
            self.start + (settled - self.start) * t.as_secs_f64() / RECOVERY.as_secs_f64()
        } else {
            let probes = ((t - RECOVERY).as_secs_f64() / PROBE_AFTER.as_secs_f64()).floor() as u32;
            // Capped: past 16 doublings the rate is long at the ceiling.
            (0..probes.min(16)).fold(settled, |r, i| r * (1.0 + PROBE_STEP * f64::from(1u32 << i)))
        };
        rate.clamp(MIN_RATE, self.ceiling.max(MIN_RATE))
    }

    /// The vendor accepted a request (it answered, with data or a business error).
    pub fn accepted(&mut self, now: Instant) {
        self.accepted.add(self.second(now));
        self.streak = 0;
    }

    /// The vendor throttled a request sent at `sent`, naming the ban's length or not
    /// (`stated`). A new ban cuts the rate, at most once a `LIMIT_SPAN`, to what the vendor
    /// accepted over the last one (an upper bound of a per-minute limit), or by half when too
    /// few requests went out to tell or the ban is short (a per-second limit).
    pub fn throttled(&mut self, now: Instant, sent: Instant, stated: Option<Duration>) -> Throttle {
        if self.last_ban.is_some_and(|b| sent < b) {
            return Throttle::Same;
        }
        self.last_ban = Some(now);
        self.streak += 1;
        // A stated 0 ("last 0 more seconds", `Retry-After: 0`) still pauses a moment.
        let ban = stated
            .map(|s| s.max(MIN_BAN))
            .unwrap_or_else(|| FIRST_DEFAULT_BAN.saturating_mul(1 << (self.streak - 1).min(10)).min(MAX_DEFAULT_BAN));
        if self.last_cut.is_none_or(|c| now.saturating_duration_since(c) >= LIMIT_SPAN) {
            let current = self.rate(now);
            let accepted = self.accepted.total(self.second(now));
            // A ban the vendor says is short is a per-second limit: what it accepted over a
            // minute says nothing of that rate (early in a run it is far below it).
            let per_minute = stated.is_none_or(|s| s >= FIRST_DEFAULT_BAN);
            let bound = if per_minute && accepted >= MIN_SAMPLE {
                current.min(f64::from(accepted) / LIMIT_SPAN.as_secs_f64())
            } else {
                current * 0.5
            };
            let bound = bound.max(MIN_RATE);
            self.limit = Some(bound);
            self.start = bound * CUT;
            self.since = now;
            self.last_cut = Some(now);
        }
        Throttle::Ban(ban)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn without_throttles_the_rate_is_the_ceiling() {
        let t0 = Instant::now();
        let r = LearnedRate::new(50.0, t0);
        assert_eq!(r.rate(t0 + secs(3600)), 50.0);
    }

    /// 12 s at 50/s against a vendor that accepts 600 a minute: the rate falls to what it
    /// accepted (10/s), starts at 90 % of it and settles at 97 %.
    #[test]
    fn a_throttle_cuts_the_rate_to_what_the_vendor_accepted() {
        let t0 = Instant::now();
        let mut r = LearnedRate::new(50.0, t0);
        for i in 0..600u64 {
            r.accepted(t0 + Duration::from_millis(i * 20));
        }
        let at = t0 + secs(12);
        assert_eq!(r.throttled(at, at, None), Throttle::Ban(FIRST_DEFAULT_BAN));
        assert!((r.rate(at) - 9.0).abs() < 1e-9, "{}", r.rate(at));
        assert!((r.rate(at + secs(30)) - 9.35).abs() < 1e-9);
        assert!((r.rate(at + secs(61)) - 9.7).abs() < 1e-9);
        assert!((r.rate(at + secs(359)) - 9.7).abs() < 1e-9, "steady until the first probe");
        assert!((r.rate(at + secs(361)) - 9.7 * 1.05).abs() < 1e-9, "then probes 5 % higher");
        assert!((r.rate(at + secs(661)) - 9.7 * 1.05 * 1.1).abs() < 1e-9, "then 10 % more");
    }

    #[test]
    fn answers_to_requests_out_before_the_ban_count_once() {
        let t0 = Instant::now();
        let mut r = LearnedRate::new(50.0, t0);
        let at = t0 + secs(5);
        assert_eq!(r.throttled(at, at - Duration::from_millis(10), Some(secs(7))), Throttle::Ban(secs(7)));
        assert_eq!(r.throttled(at, at - Duration::from_millis(5), None), Throttle::Same);
        assert_eq!(r.rate(at), 25.0 * CUT, "few requests accepted: halved, once");
    }

    #[test]
    fn unstated_bans_double_while_the_first_request_after_each_is_throttled() {
        let t0 = Instant::now();
        let mut r = LearnedRate::new(10.0, t0);
        let mut at = t0;
        let mut bans = Vec::new();
        for _ in 0..7 {
            at += secs(1);
            match r.throttled(at, at, None) {
                Throttle::Ban(b) => bans.push(b.as_secs()),
                Throttle::Same => panic!("a probe after the ban is a new ban"),
            }
            at += secs(bans[bans.len() - 1]);
        }
        assert_eq!(bans, [10, 20, 40, 80, 160, 300, 300]);
        r.accepted(at);
        at += secs(1);
        assert_eq!(r.throttled(at, at, None), Throttle::Ban(FIRST_DEFAULT_BAN), "an accepted request ends the streak");
    }

    #[test]
    fn the_rate_is_cut_at_most_once_a_minute() {
        let t0 = Instant::now();
        let mut r = LearnedRate::new(16.0, t0);
        r.throttled(t0, t0, None);
        let after_first = r.rate(t0);
        r.throttled(t0 + secs(20), t0 + secs(20), None);
        assert_eq!(r.rate(t0), after_first, "the same minute's limit");
        r.throttled(t0 + secs(61), t0 + secs(61), None);
        assert!(r.rate(t0 + secs(61)) < after_first);
    }

    #[test]
    fn accepted_requests_older_than_a_minute_are_forgotten() {
        let t0 = Instant::now();
        let mut r = LearnedRate::new(100.0, t0);
        for i in 0..100u64 {
            r.accepted(t0 + Duration::from_millis(i * 10));
        }
        for i in 0..60u64 {
            r.accepted(t0 + secs(70) + Duration::from_millis(i * 10));
        }
        let at = t0 + secs(71);
        r.throttled(at, at, None);
        assert!((r.rate(at) - CUT * 1.0).abs() < 1e-9, "60 accepted in the last minute: 1/s, got {}", r.rate(at));
    }

    /// Cut to one request a minute (another client spent the quota), the rate is back at a
    /// ceiling of 5/s within the hour once the vendor stops throttling.
    #[test]
    fn a_rate_cut_far_down_comes_back_within_the_hour() {
        let t0 = Instant::now();
        let mut r = LearnedRate::new(5.0, t0);
        let mut at = t0;
        for _ in 0..12 {
            r.throttled(at, at, None);
            at += secs(61);
        }
        assert!(r.rate(at) < 0.05, "cut by half a minute, twelve times: {}", r.rate(at));
        assert_eq!(r.rate(at + secs(3600)), 5.0);
    }

    #[test]
    fn a_new_share_scales_what_was_learned() {
        let t0 = Instant::now();
        let mut r = LearnedRate::new(10.0, t0);
        r.throttled(t0, t0, None);
        let before = r.rate(t0 + secs(120));
        r.set_ceiling(20.0);
        assert!((r.rate(t0 + secs(120)) - 2.0 * before).abs() < 1e-9);
    }

    #[test]
    fn a_stated_zero_still_pauses_a_moment() {
        let t0 = Instant::now();
        let mut r = LearnedRate::new(10.0, t0);
        assert_eq!(r.throttled(t0, t0, Some(Duration::ZERO)), Throttle::Ban(MIN_BAN));
    }

    /// A 1 s ban early in a run (a per-second limit, or a gateway's passing 429) halves the
    /// rate; it does not cut it to what a minute of a young run accepted (40 a minute here).
    #[test]
    fn a_short_ban_halves_the_rate_instead_of_using_the_minutes_count() {
        let t0 = Instant::now();
        let mut r = LearnedRate::new(1000.0, t0);
        for i in 0..40u64 {
            r.accepted(t0 + Duration::from_millis(i * 50));
        }
        let at = t0 + secs(2);
        r.throttled(at, at, Some(secs(1)));
        assert_eq!(r.rate(at), 500.0 * CUT);
    }
}
