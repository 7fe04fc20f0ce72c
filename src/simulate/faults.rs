//! Injected misbehaviour for the simulators, seeded and rate-configured: latency, slow and
//! hanging responses, HTTP 5xx, dropped connections, malformed JSON, each vendor's throttle
//! answer (with a ban it enforces), credentials revoked mid-run, records inserted while a
//! window is being paged. Also the request log tests read quotas and bans from.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::SimState;
use super::rng::SimRng;
use crate::config::{ConfigError, parse_duration};

/// The `[faults]` section: each rate is the chance per vendor request.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultConfig {
    #[serde(default)]
    pub seed: u64,
    /// Added to every vendor response, e.g. `50ms`.
    pub latency: Option<String>,
    #[serde(default)]
    pub slow_rate: f64,
    /// How long a slow response takes (default 300ms).
    pub slow: Option<String>,
    #[serde(default)]
    pub hang_rate: f64,
    /// How long a hanging response takes: set it past the worker's request timeout (default 5s).
    pub hang: Option<String>,
    /// HTTP 500/502/503 (503 with `Retry-After: 1`).
    #[serde(default)]
    pub server_error_rate: f64,
    /// The connection is cut in the middle of the response.
    #[serde(default)]
    pub drop_rate: f64,
    /// A 200 whose JSON body is cut short.
    #[serde(default)]
    pub malformed_rate: f64,
    /// The vendor's throttle answer; the vendor then refuses every request until the ban ends.
    #[serde(default)]
    pub throttle_rate: f64,
    /// Length of a throttle ban (default 1s).
    pub ban: Option<String>,
    /// While a window is paged, a new record appears at its start, shifting later pages.
    #[serde(default)]
    pub insert_while_paging_rate: f64,
    /// The credentials of `revoke_vendors` stop working after this many vendor requests.
    pub revoke_after: Option<u64>,
    #[serde(default)]
    pub revoke_vendors: Vec<String>,
}

/// Which vendor a request is for, by its route.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Vendor {
    Wdt,
    Qimen,
    Top,
    Finance,
    K3cloud,
}

impl Vendor {
    fn of_path(path: &str) -> Option<Vendor> {
        match path {
            p if p.starts_with("/openapi2/") => Some(Vendor::Wdt),
            "/router/qm" => Some(Vendor::Qimen),
            "/router/rest" => Some(Vendor::Top),
            "/api" => Some(Vendor::Finance),
            p if p.starts_with("/k3cloud/") => Some(Vendor::K3cloud),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Vendor::Wdt => "wdt",
            Vendor::Qimen => "qimen",
            Vendor::Top => "top",
            Vendor::Finance => "finance",
            Vendor::K3cloud => "k3cloud",
        }
    }

    /// The vendor's throttle answer. TOP and Qimen: code 7 with the ban in the message. The
    /// 旺店通, finance and K3Cloud docs name no throttle code: their simulators answer HTTP 429
    /// with `Retry-After`, which is what an HTTP gateway in front of them would do.
    fn throttled(self, ban: Duration) -> Response {
        let secs = ban.as_secs().max(1);
        let msg = format!("This ban will last {secs} more seconds");
        match self {
            Vendor::Top => axum::Json(json!({"error_response": {"code": 7, "msg": "App Call Limited",
                "sub_code": "accesscontrol.limited-by-api-access-count", "sub_msg": msg}}))
            .into_response(),
            Vendor::Qimen => axum::Json(json!({"response": {"flag": "failure", "code": "7",
                "sub_code": "accesscontrol.limited-by-api-access-count", "message": format!("App Call Limited, {msg}")}}))
            .into_response(),
            Vendor::Wdt | Vendor::Finance | Vendor::K3cloud => {
                (StatusCode::TOO_MANY_REQUESTS, [(header::RETRY_AFTER, secs.to_string())], "too many requests\n").into_response()
            }
        }
    }

    /// The vendor's answer to a request for `path` once the credentials were revoked.
    fn revoked(self, path: &str) -> Value {
        match self {
            Vendor::Wdt => json!({"code": 100, "message": "appkey 不存在或已停用"}),
            Vendor::Qimen => json!({"error_response": {"code": 29, "msg": "Invalid app Key"}}),
            Vendor::Top => {
                json!({"error_response": {"code": 27, "msg": "Invalid session", "sub_code": "invalid-sessionkey"}})
            }
            Vendor::Finance => json!({"code": 1001, "message": "非法的flag"}),
            Vendor::K3cloud => super::k3cloud::auth_failure(path, &super::k3cloud::auth::AuthFailure::Revoked),
        }
    }
}

/// What the simulators saw, for tests: per vendor, every request's arrival (ms since the
/// simulator started) and how many arrived while that vendor had a ban in force.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct VendorLog {
    pub requests: u64,
    pub arrivals_ms: Vec<u64>,
    /// Arrived while banned: includes requests a concurrent client had already sent when the
    /// ban began, which it cannot call back.
    pub during_ban: u64,
    /// Arrived while banned, more than [`ANSWER_GRACE`] after the vendor had answered a request
    /// with that ban: the client went on sending after it was told.
    pub after_ban_answer: u64,
    /// Bans begun.
    pub throttled: u64,
    /// Each ban, in the order begun.
    pub bans: Vec<BanLog>,
}

/// One ban, for tests that check it by the order of events rather than by time.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct BanLog {
    pub began_ms: u64,
    /// Requests that arrived while the ban was in force, after the vendor had first answered
    /// with it. A client that stops sending once told sends none of these: they were all out
    /// already, so there are fewer than its requests in flight.
    pub arrived_after_answer: u64,
}

/// Time for a throttle answer to reach the client and for requests already on their way to
/// arrive, on a loaded machine.
pub const ANSWER_GRACE: Duration = Duration::from_millis(100);

/// A vendor's ban: until when, when it was first answered to a client, and its place in the
/// vendor's [`VendorLog::bans`].
#[derive(Debug, Clone, Copy)]
struct Ban {
    until: Instant,
    answered: Option<Instant>,
    index: usize,
}

/// The running fault injector.
pub struct Faults {
    cfg: FaultConfig,
    latency: Duration,
    slow: Duration,
    hang: Duration,
    ban: Duration,
    rng: Mutex<SimRng>,
    started: Instant,
    vendor_requests: AtomicU64,
    bans: Mutex<BTreeMap<Vendor, Ban>>,
    log: Mutex<BTreeMap<Vendor, VendorLog>>,
}

enum Fault {
    Slow,
    Hang,
    ServerError(u16),
    Drop,
    Malformed,
    Throttle,
}

impl Faults {
    pub fn new(cfg: FaultConfig) -> Result<Faults, ConfigError> {
        let dur = |key: &str, v: &Option<String>, default: Duration| -> Result<Duration, ConfigError> {
            v.as_deref().map(|t| parse_duration(&format!("faults.{key}"), t)).transpose().map(|d| d.unwrap_or(default))
        };
        for (key, rate) in [
            ("slow_rate", cfg.slow_rate),
            ("hang_rate", cfg.hang_rate),
            ("server_error_rate", cfg.server_error_rate),
            ("drop_rate", cfg.drop_rate),
            ("malformed_rate", cfg.malformed_rate),
            ("throttle_rate", cfg.throttle_rate),
            ("insert_while_paging_rate", cfg.insert_while_paging_rate),
        ] {
            if !(0.0..=1.0).contains(&rate) {
                return Err(ConfigError::invalid(format!("faults.{key}"), format!("must be within 0..1, got {rate}")));
            }
        }
        Ok(Faults {
            latency: dur("latency", &cfg.latency, Duration::ZERO)?,
            slow: dur("slow", &cfg.slow, Duration::from_millis(300))?,
            hang: dur("hang", &cfg.hang, Duration::from_secs(5))?,
            ban: dur("ban", &cfg.ban, Duration::from_secs(1))?,
            rng: Mutex::new(SimRng::new(cfg.seed)),
            started: Instant::now(),
            vendor_requests: AtomicU64::new(0),
            bans: Mutex::new(BTreeMap::new()),
            log: Mutex::new(BTreeMap::new()),
            cfg,
        })
    }

    pub fn latency(&self) -> Duration {
        self.latency
    }

    /// True with the configured chance: insert a record into the window being paged.
    pub fn insert_while_paging(&self) -> bool {
        self.cfg.insert_while_paging_rate > 0.0
            && self.rng.lock().expect("rng").chance(self.cfg.insert_while_paging_rate)
    }

    /// The request log, by vendor name.
    pub fn log(&self) -> BTreeMap<&'static str, VendorLog> {
        self.log.lock().expect("log").iter().map(|(v, l)| (v.name(), l.clone())).collect()
    }

    /// The vendor's throttle answer, noting when its ban was first told to a client.
    fn answer_ban(&self, vendor: Vendor) -> Response {
        if let Some(b) = self.bans.lock().expect("bans").get_mut(&vendor) {
            b.answered.get_or_insert_with(Instant::now);
        }
        vendor.throttled(self.ban)
    }

    fn pick(&self) -> Option<Fault> {
        let c = &self.cfg;
        let mut rng = self.rng.lock().expect("rng");
        let mut roll = |rate: f64| rate > 0.0 && rng.chance(rate);
        if roll(c.throttle_rate) {
            Some(Fault::Throttle)
        } else if roll(c.server_error_rate) {
            Some(Fault::ServerError([500, 502, 503][(self.vendor_requests.load(Ordering::Relaxed) % 3) as usize]))
        } else if roll(c.drop_rate) {
            Some(Fault::Drop)
        } else if roll(c.malformed_rate) {
            Some(Fault::Malformed)
        } else if roll(c.hang_rate) {
            Some(Fault::Hang)
        } else if roll(c.slow_rate) {
            Some(Fault::Slow)
        } else {
            None
        }
    }
}

/// Applies the faults to every vendor request (not to `/_simulator/*`).
pub async fn middleware(State(state): State<Arc<SimState>>, req: Request, next: Next) -> Response {
    let Some(vendor) = Vendor::of_path(req.uri().path()) else { return next.run(req).await };
    let f = &state.faults;
    let n = f.vendor_requests.fetch_add(1, Ordering::SeqCst) + 1;
    let now = Instant::now();
    let ban = f.bans.lock().expect("bans").get(&vendor).copied().filter(|b| b.until > now);
    {
        let mut log = f.log.lock().expect("log");
        let l = log.entry(vendor).or_default();
        l.requests += 1;
        l.arrivals_ms.push(now.duration_since(f.started).as_millis() as u64);
        if let Some(b) = ban {
            l.during_ban += 1;
            if b.answered.is_some_and(|a| now > a + ANSWER_GRACE) {
                l.after_ban_answer += 1;
            }
            if b.answered.is_some() {
                l.bans[b.index].arrived_after_answer += 1;
            }
        }
    }
    if !f.latency.is_zero() {
        tokio::time::sleep(f.latency).await;
    }
    if ban.is_some() {
        return f.answer_ban(vendor);
    }
    if f.cfg.revoke_after.is_some_and(|after| n > after) && f.cfg.revoke_vendors.iter().any(|v| v == vendor.name()) {
        return axum::Json(vendor.revoked(req.uri().path())).into_response();
    }
    match f.pick() {
        None => next.run(req).await,
        Some(Fault::Slow) => {
            tokio::time::sleep(f.slow).await;
            next.run(req).await
        }
        Some(Fault::Hang) => {
            tokio::time::sleep(f.hang).await;
            (StatusCode::GATEWAY_TIMEOUT, "gateway timeout\n").into_response()
        }
        Some(Fault::ServerError(code)) => {
            let status = StatusCode::from_u16(code).expect("valid status");
            let mut resp = (status, format!("simulated http {code}\n")).into_response();
            if code == 503 {
                resp.headers_mut().insert(header::RETRY_AFTER, "1".parse().expect("header value"));
            }
            resp
        }
        Some(Fault::Drop) => {
            // Headers go out, then the body fails: the connection is cut mid-response.
            let body = futures_util::stream::once(async {
                Err::<axum::body::Bytes, std::io::Error>(std::io::Error::other("simulated dropped connection"))
            });
            Response::builder().status(StatusCode::OK).body(Body::from_stream(body)).expect("response")
        }
        Some(Fault::Malformed) => {
            let resp = next.run(req).await;
            let (mut parts, body) = resp.into_parts();
            parts.headers.remove(header::CONTENT_LENGTH);
            let bytes = axum::body::to_bytes(body, usize::MAX).await.unwrap_or_default();
            let cut = bytes.slice(..bytes.len() / 2);
            Response::from_parts(parts, Body::from(cut))
        }
        Some(Fault::Throttle) => {
            let began = Instant::now();
            let index = {
                let mut log = f.log.lock().expect("log");
                let l = log.entry(vendor).or_default();
                l.throttled += 1;
                l.bans
                    .push(BanLog { began_ms: began.duration_since(f.started).as_millis() as u64, ..BanLog::default() });
                l.bans.len() - 1
            };
            f.bans.lock().expect("bans").insert(vendor, Ban { until: began + f.ban, answered: None, index });
            f.answer_ban(vendor)
        }
    }
}
