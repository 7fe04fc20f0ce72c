//! Credential gates, labelled by `credential` (its sources' ids joined by commas): requests
//! sent, the adaptive in-flight limit, requests out now, the configured ceilings, the learned
//! rate, a used-up daily quota, and banned time.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{Gauge, GaugeVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts};

use super::Registrar;

/// Each credential's vendor bans, for `tidemark_throttled_seconds_total`.
type Bans = Arc<Mutex<BTreeMap<String, BanClock>>>;

/// The series of every credential.
pub struct CredentialMetrics {
    requests: IntCounterVec,
    in_flight_limit: IntGaugeVec,
    in_flight: IntGaugeVec,
    max_in_flight: IntGaugeVec,
    quota: IntGaugeVec,
    /// The learned request rate, and when a used-up daily quota resets.
    rate: GaugeVec,
    quota_exhausted_until: GaugeVec,
    bans: Bans,
}

impl CredentialMetrics {
    pub(super) fn new(reg: &Registrar) -> CredentialMetrics {
        let bans = Arc::new(Mutex::new(BTreeMap::new()));
        reg.add_collector(BanCollector::new(bans.clone()));
        let requests = reg.counter_vec(
            "tidemark_credential_requests_total",
            "Vendor API requests sent on a credential (the quota's numerator).",
            &["credential"],
        );
        let gauge = |name: &str, help: &str| reg.int_gauge_vec(name, help, &["credential"]);
        let in_flight_limit = gauge(
            "tidemark_credential_in_flight_limit",
            "The adaptive limit on requests in flight on a credential (grows while the vendor answers well, halves on throttles, timeouts and 5xx).",
        );
        let in_flight = gauge(
            "tidemark_credential_in_flight",
            "Vendor API requests in flight (or waiting for the rate limit) on a credential.",
        );
        let max_in_flight = gauge(
            "tidemark_credential_max_in_flight",
            "The configured ceiling of the in-flight limit (max_in_flight).",
        );
        let quota = gauge(
            "tidemark_credential_quota_requests_per_second",
            "The configured request quota of a credential (requests_per_second).",
        );
        let fgauge = |name: &str, help: &str| reg.gauge_vec(name, help, &["credential"]);
        let rate = fgauge(
            "tidemark_credential_rate_requests_per_second",
            "The request rate a credential may send at now: its quota (times this replica's share), lowered to what the vendor accepted when it throttled, recovering gradually.",
        );
        let quota_exhausted_until = fgauge(
            "tidemark_credential_quota_exhausted_until_timestamp_seconds",
            "When the credential's used-up daily quota resets (Unix seconds); in the past once it has. Compare with time().",
        );
        CredentialMetrics {
            requests,
            in_flight_limit,
            in_flight,
            max_in_flight,
            quota,
            rate,
            quota_exhausted_until,
            bans,
        }
    }

    /// `credential`'s series: its request count, banned time and used-up-quota time (at the
    /// epoch until a quota is used up) at zero, so the dashboard has them from the start.
    /// Streams sharing a credential hold the same series.
    pub fn handles(&self, credential: &str) -> CredentialHandles {
        let c = [credential];
        self.bans.lock().expect("metrics lock").entry(credential.to_owned()).or_default();
        CredentialHandles {
            name: credential.to_owned(),
            requests: self.requests.with_label_values(&c),
            in_flight_limit: self.in_flight_limit.with_label_values(&c),
            in_flight: self.in_flight.with_label_values(&c),
            max_in_flight: self.max_in_flight.with_label_values(&c),
            quota: self.quota.with_label_values(&c),
            rate: self.rate.with_label_values(&c),
            quota_exhausted_until: self.quota_exhausted_until.with_label_values(&c),
            bans: self.bans.clone(),
        }
    }

    /// The seconds `credential` was banned up to `now`.
    pub fn banned_seconds(&self, credential: &str, now: Instant) -> f64 {
        self.bans.lock().expect("metrics lock").get(credential).map_or(0.0, |c| c.seconds(now))
    }
}

/// One credential's series, resolved once.
pub struct CredentialHandles {
    name: String,
    /// `tidemark_credential_requests_total`.
    pub requests: IntCounter,
    in_flight_limit: IntGauge,
    in_flight: IntGauge,
    max_in_flight: IntGauge,
    quota: IntGauge,
    rate: Gauge,
    quota_exhausted_until: Gauge,
    bans: Bans,
}

impl CredentialHandles {
    /// Sets the credential's gauges: its adaptive limit, requests in flight, the configured
    /// ceilings, and the rate it may send at now.
    pub fn observe(&self, limit: u32, in_flight: u32, max_in_flight: u32, quota: u32, rate: f64) {
        self.in_flight_limit.set(i64::from(limit));
        self.in_flight.set(i64::from(in_flight));
        self.max_in_flight.set(i64::from(max_in_flight));
        self.quota.set(i64::from(quota));
        self.rate.set(rate);
    }

    /// Notes that the credential's daily quota is used up until `until`.
    pub fn quota_exhausted_until(&self, until: chrono::DateTime<chrono::Utc>) {
        self.quota_exhausted_until.set(until.timestamp() as f64);
    }

    /// Notes that the credential is banned until `until` (a ban that ends later than the one
    /// running, if any): the time counts as it passes, once however many requests met it.
    pub fn banned_until(&self, until: Instant) {
        let now = Instant::now();
        let mut bans = self.bans.lock().expect("metrics lock");
        let clock = bans.entry(self.name.clone()).or_default();
        match clock.current {
            Some((start, end)) if end > now => clock.current = Some((start, end.max(until))),
            Some((start, end)) => {
                clock.done += (end - start).as_secs_f64();
                clock.current = Some((now, until));
            }
            None => clock.current = Some((now, until)),
        }
    }
}

/// A credential's banned time: bans that ended, and the one running (start, end).
#[derive(Default)]
struct BanClock {
    done: f64,
    current: Option<(Instant, Instant)>,
}

impl BanClock {
    fn seconds(&self, now: Instant) -> f64 {
        self.done
            + self.current.map_or(0.0, |(start, end)| (end.min(now).saturating_duration_since(start)).as_secs_f64())
    }
}

/// `tidemark_throttled_seconds_total{credential}`: banned seconds up to the scrape, so a rate
/// is the share of time banned and never above 1.
struct BanCollector {
    bans: Bans,
    template: prometheus::CounterVec,
}

impl BanCollector {
    fn new(bans: Bans) -> Self {
        BanCollector { bans, template: Self::family() }
    }

    fn family() -> prometheus::CounterVec {
        prometheus::CounterVec::new(
            Opts::new(
                "tidemark_throttled_seconds_total",
                "Seconds a credential was banned by its vendor, counted as they pass and once however many requests met the ban.",
            ),
            &["credential"],
        )
        .expect("valid metric")
    }
}

impl Collector for BanCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.template.desc()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let now = Instant::now();
        let out = Self::family();
        for (credential, clock) in self.bans.lock().expect("metrics lock").iter() {
            out.with_label_values(&[credential.as_str()]).inc_by(clock.seconds(now));
        }
        out.collect()
    }
}
