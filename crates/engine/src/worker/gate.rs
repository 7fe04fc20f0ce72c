//! The request gate of one vendor credential, shared by every stream that uses it: its rate
//! limit (learned from the vendor's throttles), the pause a throttle or a used-up daily quota
//! imposes, and the adaptive limit on requests in flight.

use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, NaiveTime, Utc};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use tokio::sync::Notify;
use tokio::time::Instant;

use super::learned_rate::{LearnedRate, MIN_BAN, Throttle};
use crate::domain::time::next_beijing_time_of_day;

/// The in-flight limit a credential starts with (or its `max_in_flight`, if lower): modest,
/// so a vendor that is already struggling is not hit with the full ceiling at once.
pub const INITIAL_IN_FLIGHT: u32 = 4;
/// What the limit is multiplied by on a throttle, timeout or server error.
const DECREASE: f64 = 0.5;
/// Latency above this multiple of the best seen recently counts as the vendor queueing: the
/// limit stops growing.
const LATENCY_TOLERANCE: f64 = 2.0;
/// Headroom over what the quota can use at the current latency (Little's law): more slots
/// than that would only wait for the rate limit.
const QUOTA_HEADROOM: f64 = 1.5;

/// How a request ended, as far as the vendor's health is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// The vendor answered (data or a business error) in this time.
    Healthy(Duration),
    /// A throttle, a timeout, a 5xx or a dropped connection: the vendor has had enough.
    Overloaded,
    /// Nothing learned (the request was cancelled, or failed on our side).
    Neutral,
}

/// What the gate knows right now, for metrics.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GateStats {
    pub limit: u32,
    pub in_flight: u32,
    pub max_in_flight: u32,
    pub requests_per_second: u32,
}

/// Additive increase, multiplicative decrease of the in-flight limit.
#[derive(Debug)]
struct Aimd {
    limit: f64,
    in_flight: u32,
    /// The lowest healthy latency seen, slowly forgotten so a vendor that got faster or
    /// slower for good is re-learned.
    best_latency: Option<Duration>,
    /// Recent healthy latency, in seconds (exponentially weighted).
    latency: f64,
    /// Below it the limit grows by one per healthy answer (doubling each round trip, as TCP's
    /// slow start); above it by one per round trip. An overload sets it to the halved limit.
    threshold: f64,
    /// No second decrease for requests sent before the first one.
    last_decrease: Option<Instant>,
}

/// Rate limit, throttle pause and in-flight limit for one credential.
pub struct CredentialGate {
    name: String,
    /// Replaced when this replica's share of the quota changes (see [`Self::set_share`]),
    /// with a generation number so that waiters on a replaced one queue again.
    limiter: Mutex<(u64, Arc<DefaultDirectRateLimiter>)>,
    per_second: NonZeroU32,
    /// The requests per second the limiter now lets through: the learned rate, at most
    /// `per_second` times this process's share.
    rate: Mutex<f64>,
    learned: Mutex<LearnedRate>,
    max_in_flight: u32,
    paused_until: Mutex<Option<Instant>>,
    /// When the vendor's daily quota resets (Beijing time of day), if it names no time itself.
    quota_reset: NaiveTime,
    /// Until when the daily quota is used up, while it is.
    exhausted_until: Mutex<Option<DateTime<Utc>>>,
    aimd: Mutex<Aimd>,
    freed: Notify,
}

/// A slot in the credential's in-flight limit, held while a request is out. Report how the
/// request went with [`Permit::done`]; dropping it unreported counts as [`Answer::Neutral`].
pub struct Permit<'g> {
    gate: &'g CredentialGate,
    sent: Instant,
    reported: bool,
}

impl CredentialGate {
    /// At most `per_second` requests a second, evenly spaced (no bursts: vendors count calls
    /// in any second, and a burst at a second's edge would double the rate they see), and at
    /// most `max_in_flight` at once. `name` labels its metrics.
    pub fn new(name: impl Into<String>, per_second: NonZeroU32, max_in_flight: NonZeroU32) -> Self {
        let quota = Quota::per_second(per_second).allow_burst(NonZeroU32::MIN);
        let max = max_in_flight.get();
        CredentialGate {
            name: name.into(),
            limiter: Mutex::new((0, Arc::new(RateLimiter::direct(quota)))),
            per_second,
            rate: Mutex::new(f64::from(per_second.get())),
            learned: Mutex::new(LearnedRate::new(f64::from(per_second.get()), Instant::now())),
            max_in_flight: max,
            paused_until: Mutex::new(None),
            quota_reset: NaiveTime::MIN,
            exhausted_until: Mutex::new(None),
            aimd: Mutex::new(Aimd {
                limit: f64::from(INITIAL_IN_FLIGHT.min(max)),
                in_flight: 0,
                best_latency: None,
                latency: 0.0,
                threshold: f64::from(max),
                last_decrease: None,
            }),
            freed: Notify::new(),
        }
    }

    /// Limits this process to `fraction` (0 to 1) of the credential's quota: replicas that
    /// share a credential each take the share of its streams they own, so together they stay
    /// within the quota. Requests waiting on the old limiter queue again on the new one, which
    /// starts empty: a change of share never adds the old rate to the new, nor a burst.
    pub fn set_share(&self, fraction: f64) {
        let fraction = fraction.clamp(0.0, 1.0);
        if fraction == 0.0 {
            return; // owns none of the credential's streams: nothing will ask
        }
        let ceiling = f64::from(self.per_second.get()) * fraction;
        let rate = {
            let mut learned = self.learned.lock().expect("gate lock");
            learned.set_ceiling(ceiling);
            learned.rate(Instant::now())
        };
        self.install_rate(rate);
    }

    /// When the vendor's daily quota resets, as a Beijing time of day (default midnight).
    pub fn with_quota_reset(mut self, reset: NaiveTime) -> Self {
        self.quota_reset = reset;
        self
    }

    /// A limiter at `rate`: requests waiting on the old one queue again on it, and it starts
    /// empty, so a change never adds the old rate to the new, nor a burst.
    fn install_rate(&self, rate: f64) {
        let quota = Quota::with_period(Duration::from_secs_f64(1.0 / rate))
            .expect("a positive period")
            .allow_burst(NonZeroU32::MIN);
        let limiter = RateLimiter::direct(quota);
        let _ = limiter.check(); // the one cell a new limiter starts with
        let mut current = self.limiter.lock().expect("gate lock");
        *current = (current.0 + 1, Arc::new(limiter));
        *self.rate.lock().expect("gate lock") = rate;
    }

    /// Follows the learned rate as it recovers: a new limiter once it moved by more than 2 %.
    fn follow_learned_rate(&self) {
        let learned = self.learned.lock().expect("gate lock").rate(Instant::now());
        let current = self.rate();
        if (learned - current).abs() > current * 0.02 {
            self.install_rate(learned);
        }
    }

    /// The requests per second this process may send now (the quota times its share).
    pub fn rate(&self) -> f64 {
        *self.rate.lock().expect("gate lock")
    }

    /// The sources sharing this credential, for metric labels.
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn max_in_flight(&self) -> u32 {
        self.max_in_flight
    }

    pub fn stats(&self) -> GateStats {
        let a = self.aimd.lock().expect("gate lock");
        GateStats {
            limit: a.limit as u32,
            in_flight: a.in_flight,
            max_in_flight: self.max_in_flight,
            requests_per_second: self.per_second.get(),
        }
    }

    /// Waits until a request may be sent: a free slot in the in-flight limit, then past any
    /// throttle pause, then within the rate limit. The slot is taken first so that requests
    /// held back by the limit do not bank rate tokens and then leave in a burst.
    pub async fn acquire(&self) -> Permit<'_> {
        loop {
            let freed = self.freed.notified();
            {
                let mut a = self.aimd.lock().expect("gate lock");
                if f64::from(a.in_flight) < a.limit.floor().max(1.0) {
                    a.in_flight += 1;
                    break;
                }
            }
            freed.await;
        }
        let mut permit = Permit { gate: self, sent: Instant::now(), reported: false };
        self.follow_learned_rate();
        loop {
            let until = *self.paused_until.lock().expect("gate lock");
            match until {
                Some(u) if u > Instant::now() => tokio::time::sleep_until(u).await,
                _ => {
                    let (generation, limiter) = self.limiter.lock().expect("gate lock").clone();
                    limiter.until_ready().await;
                    if self.limiter.lock().expect("gate lock").0 != generation {
                        continue; // the share changed while this waited: queue at the new rate
                    }
                    // A ban that began while this request waited for the rate limit holds
                    // it too: nothing is sent once the credential knows it is banned.
                    if !self.paused() {
                        break;
                    }
                }
            }
        }
        permit.sent = Instant::now();
        permit
    }

    fn paused(&self) -> bool {
        self.paused_until.lock().expect("gate lock").is_some_and(|u| u > Instant::now())
    }

    /// Pauses every request on this credential for `d` (a vendor throttle's ban). Returns how
    /// much later the pause now ends than before: requests in flight when the ban began all
    /// come back throttled, and the ban counts once, not once per answer.
    pub fn pause(&self, d: Duration) -> Duration {
        let now = Instant::now();
        let until = now + d;
        let mut p = self.paused_until.lock().expect("gate lock");
        let current = p.filter(|cur| *cur > now).unwrap_or(now);
        if until > current {
            *p = Some(until);
            until - current
        } else {
            Duration::ZERO
        }
    }

    /// The vendor throttled a request sent at `sent`, naming how long or not (`stated`): a new
    /// ban pauses the credential (for `stated`, else for a default that doubles while bans
    /// follow each other) and lowers its learned rate. Returns the new ban's length, or `None`
    /// when the request was out before the current ban began and answers for it.
    pub fn throttled(&self, sent: Instant, stated: Option<Duration>) -> Option<Duration> {
        let verdict = {
            // The pause is set under the same lock as the ban is decided, so no request slips
            // out between the two and counts as a second ban.
            let mut learned = self.learned.lock().expect("gate lock");
            let verdict = learned.throttled(Instant::now(), sent, stated);
            match verdict {
                Throttle::Ban(ban) => self.pause(ban),
                // The same ban, but the vendor may name a longer one: keep to it (a pause is
                // never shortened).
                Throttle::Same => self.pause(stated.unwrap_or_default()),
            };
            verdict
        };
        match verdict {
            Throttle::Ban(ban) => {
                self.follow_learned_rate();
                Some(ban)
            }
            Throttle::Same => None,
        }
    }

    /// The credential's daily quota is used up: every request waits until it resets, `after`
    /// from now when the vendor said so, else at the configured reset time. Returns when, if
    /// this is news (not an answer for an exhaustion already known).
    pub fn quota_exhausted(&self, after: Option<Duration>) -> Option<DateTime<Utc>> {
        let now = Utc::now();
        let until = match after {
            Some(a) => now + chrono::Duration::from_std(a.max(MIN_BAN)).unwrap_or(chrono::Duration::days(1)),
            None => quota_reset_after(now, self.quota_reset),
        };
        {
            let mut known = self.exhausted_until.lock().expect("gate lock");
            if known.is_some_and(|k| k > now && k + chrono::Duration::seconds(1) >= until) {
                return None;
            }
            *known = Some(until);
        }
        self.pause((until - now).to_std().unwrap_or_default());
        Some(until)
    }

    fn release(&self, sent: Instant, answer: Answer) {
        if let Answer::Healthy(_) = answer {
            self.learned.lock().expect("gate lock").accepted(Instant::now());
        }
        let mut a = self.aimd.lock().expect("gate lock");
        // Growth only helps if the limit is being used: at least half of it out (as in
        // Netflix's concurrency-limits AIMD).
        let saturated = f64::from(a.in_flight) * 2.0 >= a.limit;
        a.in_flight -= 1;
        let max = f64::from(self.max_in_flight);
        match answer {
            Answer::Healthy(latency) => {
                // Forget the best latency slowly (0.1 % a request), so it follows a vendor
                // that became slower for good.
                let best = a.best_latency.map_or(latency, |b| b.mul_f64(1.001).min(latency));
                a.best_latency = Some(best);
                let secs = latency.as_secs_f64();
                a.latency = if a.latency == 0.0 { secs } else { 0.9 * a.latency + 0.1 * secs };
                let queueing = secs > best.as_secs_f64() * LATENCY_TOLERANCE;
                let useful = *self.rate.lock().expect("gate lock") * a.latency * QUOTA_HEADROOM + 1.0;
                if saturated && !queueing && a.limit < useful.min(max) {
                    let step = if a.limit < a.threshold { 1.0 } else { 1.0 / a.limit };
                    a.limit = (a.limit + step).min(max);
                }
            }
            Answer::Overloaded => {
                // Requests sent before the last decrease answer for the load that caused it.
                if a.last_decrease.is_none_or(|t| sent > t) {
                    let now = Instant::now();
                    a.limit = (a.limit * DECREASE).max(1.0);
                    a.threshold = a.limit;
                    a.last_decrease = Some(now);
                }
            }
            Answer::Neutral => {}
        }
        drop(a);
        self.freed.notify_waiters();
    }
}

/// Just after the reset time the vendor's clock may not have reached it yet: a quota still
/// used up then is looked at again in a minute, not tomorrow.
const RESET_SLACK: chrono::TimeDelta = chrono::TimeDelta::minutes(10);

/// When a quota found used up at `now` resets: the next `reset` (Beijing time of day), or a
/// minute from now within [`RESET_SLACK`] after one.
fn quota_reset_after(now: DateTime<Utc>, reset: NaiveTime) -> DateTime<Utc> {
    let next = next_beijing_time_of_day(now, reset);
    let last = next - chrono::TimeDelta::days(1);
    if now - last < RESET_SLACK { now + chrono::TimeDelta::minutes(1) } else { next }
}

impl Permit<'_> {
    /// When the request was sent (once the gate let it go).
    pub fn sent(&self) -> Instant {
        self.sent
    }

    /// Reports how the request went and frees its slot.
    pub fn done(mut self, answer: Answer) {
        self.reported = true;
        let answer = match answer {
            Answer::Healthy(_) => Answer::Healthy(self.sent.elapsed()),
            other => other,
        };
        self.gate.release(self.sent, answer);
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        if !self.reported {
            self.gate.release(self.sent, Answer::Neutral);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn gate(rps: u32, max: u32) -> CredentialGate {
        CredentialGate::new("test", NonZeroU32::new(rps).unwrap(), NonZeroU32::new(max).unwrap())
    }

    /// governor keeps its own clock, so this runs in real time: 5 requests at a quarter of
    /// 20/s (5/s, evenly spaced) cannot take less than 0.8 s; at the full quota they take 0.2 s.
    #[tokio::test]
    async fn a_replica_with_a_share_sends_at_that_share_of_the_quota() {
        let gate = gate(20, 16);
        gate.set_share(0.25);
        assert_eq!(gate.rate(), 5.0);
        let started = std::time::Instant::now();
        for _ in 0..5 {
            gate.acquire().await.done(Answer::Healthy(Duration::from_millis(1)));
        }
        let took = started.elapsed();
        assert!(took >= Duration::from_millis(780), "5 requests at 5/s took {took:?}");
        gate.set_share(0.0);
        assert_eq!(gate.rate(), 5.0, "a zero share (no streams owned) leaves the limiter alone");
    }

    /// Requests already waiting when the share drops go at the new rate, not the old: 10 at
    /// 20/s would take 0.45 s; at a quarter (5/s, the new limiter starting empty) at least 1.8 s.
    #[tokio::test]
    async fn waiters_queue_again_at_the_new_rate_when_the_share_changes() {
        let gate = Arc::new(gate(20, 16));
        gate.set_share(1.0);
        let started = std::time::Instant::now();
        let waiting: Vec<_> = (0..10)
            .map(|_| {
                let g = gate.clone();
                tokio::spawn(async move { g.acquire().await.done(Answer::Healthy(Duration::from_millis(1))) })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(20)).await;
        gate.set_share(0.25);
        for w in waiting {
            w.await.unwrap();
        }
        let took = started.elapsed();
        assert!(took >= Duration::from_millis(1700), "10 requests after the share fell to 5/s took {took:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_pause_holds_every_caller_until_it_ends() {
        let gate = Arc::new(gate(1000, 8));
        gate.pause(Duration::from_secs(12));
        let start = Instant::now();
        let g2 = gate.clone();
        let other = tokio::spawn(async move {
            let _p = g2.acquire().await;
            Instant::now()
        });
        let _p = gate.acquire().await;
        assert!(Instant::now() - start >= Duration::from_secs(12));
        assert!(other.await.unwrap() - start >= Duration::from_secs(12), "the other stream waits too");
    }

    #[test]
    fn a_quota_used_up_just_after_the_reset_is_looked_at_again_in_a_minute() {
        let at = |s: &str| crate::domain::time::parse_beijing(s).unwrap();
        let midnight = NaiveTime::MIN;
        assert_eq!(quota_reset_after(at("2026-12-03 00:00:20"), midnight), at("2026-12-03 00:01:20"));
        assert_eq!(quota_reset_after(at("2026-12-03 09:00:00"), midnight), at("2026-12-04 00:00:00"));
    }

    /// Requests out before a default 10 s ban come back naming 60 s: the credential keeps to
    /// the vendor's 60 s.
    #[tokio::test(start_paused = true)]
    async fn a_later_answer_naming_a_longer_ban_extends_the_pause() {
        let gate = gate(1000, 8);
        let sent = Instant::now();
        tokio::time::advance(Duration::from_millis(10)).await;
        assert_eq!(gate.throttled(sent, None), Some(Duration::from_secs(10)));
        assert_eq!(gate.throttled(sent, Some(Duration::from_secs(60))), None, "the same ban");
        let start = Instant::now();
        let _p = gate.acquire().await;
        assert!(Instant::now() - start >= Duration::from_secs(60));
    }

    #[tokio::test(start_paused = true)]
    async fn a_shorter_pause_does_not_cut_a_longer_one() {
        let gate = gate(1000, 8);
        gate.pause(Duration::from_secs(10));
        gate.pause(Duration::from_secs(2));
        let start = Instant::now();
        let _p = gate.acquire().await;
        assert!(Instant::now() - start >= Duration::from_secs(10));
    }

    #[tokio::test(start_paused = true)]
    async fn a_ban_answered_by_every_request_in_flight_counts_once() {
        let gate = gate(1000, 8);
        assert_eq!(gate.pause(Duration::from_secs(5)), Duration::from_secs(5));
        tokio::time::advance(Duration::from_millis(100)).await;
        // Four more answers of the same ban, 100 ms later: each extends it by 100 ms at most.
        let extra: Duration = (0..4).map(|_| gate.pause(Duration::from_secs(5))).sum();
        assert_eq!(extra, Duration::from_millis(100));
        tokio::time::advance(Duration::from_secs(10)).await;
        assert_eq!(gate.pause(Duration::from_secs(3)), Duration::from_secs(3), "a new ban after the old one ended");
    }

    #[tokio::test(start_paused = true)]
    async fn requests_beyond_the_limit_wait_for_a_slot() {
        let gate = Arc::new(gate(1000, 2));
        let a = gate.acquire().await;
        let _b = gate.acquire().await;
        assert_eq!(gate.stats().in_flight, 2);
        let g = gate.clone();
        let third = tokio::spawn(async move {
            let _c = g.acquire().await;
        });
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(!third.is_finished(), "a third request waits while two are out");
        a.done(Answer::Healthy(Duration::ZERO));
        third.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn the_limit_grows_while_healthy_and_saturated_and_halves_on_overload() {
        let gate = Arc::new(gate(100_000, 16));
        assert_eq!(gate.stats().limit, INITIAL_IN_FLIGHT);
        // Keep the limit full: every slot out, each answered healthily after 100 ms.
        for _ in 0..40 {
            let limit = gate.stats().limit;
            let permits: Vec<_> = futures_util::future::join_all((0..limit).map(|_| gate.acquire())).await;
            tokio::time::advance(Duration::from_millis(100)).await;
            for p in permits {
                p.done(Answer::Healthy(Duration::ZERO));
            }
        }
        assert_eq!(gate.stats().limit, 16, "grows to the ceiling, never past it");
        // Two requests out when the vendor overloads: both come back failed.
        let (p1, p2) = (gate.acquire().await, gate.acquire().await);
        tokio::time::advance(Duration::from_millis(10)).await;
        p1.done(Answer::Overloaded);
        assert_eq!(gate.stats().limit, 8);
        tokio::time::advance(Duration::from_secs(30)).await;
        p2.done(Answer::Overloaded);
        assert_eq!(gate.stats().limit, 8, "a request sent before the decrease (even a slow timeout) halves it once");
        let p = gate.acquire().await;
        p.done(Answer::Overloaded);
        assert_eq!(gate.stats().limit, 4, "one sent after it halves it again");
    }

    #[tokio::test(start_paused = true)]
    async fn the_limit_does_not_grow_past_what_the_quota_can_use() {
        // 10 requests/s at 100 ms each keep one request busy: 4 slots are already plenty.
        let gate = Arc::new(gate(10, 16));
        for _ in 0..20 {
            let permits: Vec<_> = futures_util::future::join_all((0..4).map(|_| gate.acquire())).await;
            tokio::time::advance(Duration::from_millis(100)).await;
            for p in permits {
                p.done(Answer::Healthy(Duration::ZERO));
            }
        }
        assert_eq!(gate.stats().limit, INITIAL_IN_FLIGHT);
    }

    #[tokio::test(start_paused = true)]
    async fn the_limit_does_not_grow_when_unsaturated_or_queueing() {
        let gate = gate(100_000, 16);
        // One request at a time: not even half the limit of 4 is used.
        for _ in 0..50 {
            let p = gate.acquire().await;
            tokio::time::advance(Duration::from_millis(100)).await;
            p.done(Answer::Healthy(Duration::ZERO));
        }
        assert_eq!(gate.stats().limit, INITIAL_IN_FLIGHT);
        // Saturated, but latency tripled: the vendor is queueing, so no growth.
        for _ in 0..20 {
            let permits: Vec<_> = futures_util::future::join_all((0..4).map(|_| gate.acquire())).await;
            tokio::time::advance(Duration::from_millis(300)).await;
            for p in permits {
                p.done(Answer::Healthy(Duration::ZERO));
            }
        }
        assert_eq!(gate.stats().limit, INITIAL_IN_FLIGHT);
    }
}
