//! Injected misbehaviour for the simulators, seeded and rate-configured: latency, slow and
//! hanging responses, HTTP 5xx, dropped connections, malformed JSON, each vendor's throttle
//! answer (with a ban it enforces), credentials revoked mid-run, records inserted while a
//! window is being paged; per-window limits, the daily app quota and other throttle answers
//! as each vendor words them (counted in [`super::throttles`]); a skewed clock. Also the
//! request log tests read quotas and bans from.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, NaiveTime, TimeDelta, Utc};
use serde::Deserialize;
use serde_json::{Value, json};

use super::SimState;
use super::rng::SimRng;
use super::throttles::{Limits, Verdict};
use super::vendor::{Vendor, dropped_connection};
use crate::config::{ConfigError, parse_duration};

/// 旺店通's own per-minute refusals (code 100), sent in turn: the call rate with a half-width
/// comma, the same with a full-width comma, and the concurrency limit.
pub const WDT_PER_MINUTE_TEXTS: [&str; 3] = [
    "超过每分钟最大调用频率限制,请稍后重试",
    "超过每分钟最大调用频率限制，请稍后重试",
    "超过每分钟最大并发次数限制，请稍后重试",
];
/// 旺店通's own text for a database error (codes 4 and 5).
pub const WDT_DB_ERROR: &str = "数据库错误";
/// TOP's own `msg` for code 7.
pub const TOP_APP_CALL_LIMITED: &str = "App Call Limited";
/// TOP's own sub_code for the per-API call limit.
pub const TOP_LIMITED_BY_API: &str = "accesscontrol.limited-by-api-access-count";
/// TOP's own sub_code for the app's (daily) call quota.
pub const TOP_LIMITED_BY_APP: &str = "accesscontrol.limited-by-app-access-count";
/// TOP's own sub_code for the app's per-API limit, answered without a ban length.
pub const TOP_LIMITED_BY_APP_API: &str = "accesscontrol.limited-by-app-api-access-count";
/// TOP's own sub_msg for a ban; `{}` is the whole seconds left.
pub const TOP_BAN_SUB_MSG: &str = "This ban will last for {} more seconds";
/// TOP's access-limited refusal (code 15) as tidemark's brief words it; not checked against TOP's docs.
pub const TOP_ACCESS_LIMITED: (u32, &str, &str, &str) =
    (15, "Remote service error", "isv.access-limited", "access limited");

fn top_ban_sub_msg(secs: u64) -> String {
    TOP_BAN_SUB_MSG.replace("{}", &secs.to_string())
}

/// TOP's code 7 `App Call Limited` with `sub_code` and `sub_msg`, as its gateway sends it.
fn top_call_limited(sub_code: &str, sub_msg: &str) -> Response {
    axum::Json(json!({"error_response": {"code": 7, "msg": TOP_APP_CALL_LIMITED,
        "sub_code": sub_code, "sub_msg": sub_msg}}))
    .into_response()
}

/// HTTP 429 with `Retry-After: secs`.
fn too_many_requests(secs: u64) -> Response {
    (StatusCode::TOO_MANY_REQUESTS, [(header::RETRY_AFTER, secs.to_string())], "too many requests\n").into_response()
}

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
    /// Requests each vendor accepts per `limit_window` (0: no limit). Windows are fixed,
    /// counted from the simulator's start; a request over the limit is refused (and does not
    /// count) with the vendor's own answer: 旺店通 code 100 with its three per-minute texts in
    /// turn, 奇门 the same inside its `response`, TOP code 7
    /// `accesscontrol.limited-by-api-access-count` with the seconds left in the window, finance
    /// and K3Cloud HTTP 429 with `Retry-After` (seconds left).
    #[serde(default)]
    pub per_minute_limit: u64,
    /// The window of `per_minute_limit` (default 60s, at least 1s).
    pub limit_window: Option<String>,
    /// Requests TOP and 奇门 accept per day (their gateway's app quota; 0: none). Once spent,
    /// both answer TOP's code 7 `accesscontrol.limited-by-app-access-count` with the seconds
    /// until `daily_quota_reset`, when the count starts from zero.
    #[serde(default)]
    pub daily_quota: u64,
    /// Beijing time of day the daily quota resets, `HH:MM:SS` on the simulator's (skewed)
    /// clock (default 00:00:00).
    pub daily_quota_reset: Option<String>,
    /// For tests: the quota resets this long after it was first used up that day, instead of
    /// at `daily_quota_reset` (the answer's seconds say so, as TOP's do).
    pub daily_quota_lasts: Option<String>,
    /// TOP and 奇门: code 7 `accesscontrol.limited-by-app-api-access-count` with no ban length
    /// in the message; the `ban` is still enforced, every request during it answered the same.
    #[serde(default)]
    pub ban_without_seconds_rate: f64,
    /// TOP only: one code 15 `isv.access-limited` answer, with no ban.
    #[serde(default)]
    pub access_limited_rate: f64,
    /// 旺店通 and 奇门: the database error, codes 4 and 5 in turn.
    #[serde(default)]
    pub db_error_rate: f64,
    /// How far the simulators' clock runs from the real one, signed (e.g. `-7m`; default 0s):
    /// their timestamp checks, data and `Date` headers use it.
    pub clock_skew: Option<String>,
}

impl Vendor {
    /// The vendor's throttle answer. TOP and Qimen: code 7 with the ban in the message. The
    /// 旺店通, finance and K3Cloud docs name no throttle code: their simulators answer HTTP 429
    /// with `Retry-After`, which is what an HTTP gateway in front of them would do.
    fn throttled(self, ban: Duration) -> Response {
        let secs = ban.as_secs().max(1);
        let msg = top_ban_sub_msg(secs);
        match self {
            Vendor::Top => top_call_limited(TOP_LIMITED_BY_API, &msg),
            Vendor::Qimen => axum::Json(json!({"response": {"flag": "failure", "code": "7",
                "sub_code": TOP_LIMITED_BY_API, "message": format!("{TOP_APP_CALL_LIMITED}, {msg}")}}))
            .into_response(),
            Vendor::Wdt | Vendor::Finance | Vendor::K3cloud => too_many_requests(secs),
        }
    }

    /// The vendor's answer to a request over the per-window limit: `refusal` numbers the
    /// vendor's refusals (旺店通's texts come in turn), `secs_left` is the rest of the window.
    pub fn per_minute_refusal(self, refusal: u64, secs_left: u64) -> Response {
        let text = WDT_PER_MINUTE_TEXTS[(refusal % 3) as usize];
        match self {
            Vendor::Wdt => axum::Json(json!({"code": 100, "message": text})).into_response(),
            // 奇门 passes 旺店通's business answer through.
            Vendor::Qimen => {
                axum::Json(json!({"response": {"flag": "failure", "code": "100", "message": text}})).into_response()
            }
            Vendor::Top => top_call_limited(TOP_LIMITED_BY_API, &top_ban_sub_msg(secs_left)),
            Vendor::Finance | Vendor::K3cloud => too_many_requests(secs_left),
        }
    }

    /// The gateway's answer once the daily app quota is spent (TOP and 奇门 alike).
    pub fn daily_refusal(secs_left: u64) -> Response {
        top_call_limited(TOP_LIMITED_BY_APP, &top_ban_sub_msg(secs_left))
    }

    /// The gateway's code 7 with no ban length (TOP and 奇门 alike).
    pub fn limited_without_seconds() -> Response {
        top_call_limited(TOP_LIMITED_BY_APP_API, TOP_APP_CALL_LIMITED)
    }

    /// TOP's access-limited answer.
    pub fn access_limited() -> Response {
        let (code, msg, sub_code, sub_msg) = TOP_ACCESS_LIMITED;
        axum::Json(json!({"error_response": {"code": code, "msg": msg, "sub_code": sub_code, "sub_msg": sub_msg}}))
            .into_response()
    }

    /// 旺店通's database error, `code` 4 or 5; 奇门 wraps it in its `response`.
    pub fn db_error(self, code: u32) -> Response {
        match self {
            Vendor::Qimen => {
                axum::Json(json!({"response": {"flag": "failure", "code": code.to_string(), "message": WDT_DB_ERROR}}))
                    .into_response()
            }
            _ => axum::Json(json!({"code": code, "message": WDT_DB_ERROR})).into_response(),
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
    /// Requests refused by `per_minute_limit`.
    pub per_minute_refused: u64,
    /// When each of them arrived, in ms since the simulator started.
    pub per_minute_refused_ms: Vec<u64>,
    /// Requests refused by `daily_quota` (TOP and 奇门).
    pub daily_refused: u64,
    /// Each daily quota reset passed, in ms since the simulator started (on its clock); empty
    /// for a vendor without a daily quota.
    pub daily_resets_ms: Vec<u64>,
    /// When the daily quota was first refused after each reset (or after the start), in ms
    /// since the simulator started (on its clock).
    pub quota_exhausted_ms: Vec<u64>,
    /// With `per_minute_limit`: accepted requests in each window since the start (index k is
    /// window k, up to the window of the latest request; the last may still be running).
    pub window_accepted: Vec<u64>,
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

/// A vendor's ban: until when, when it was first answered to a client, its place in the
/// vendor's [`VendorLog::bans`], and how it is answered.
#[derive(Debug, Clone, Copy)]
struct Ban {
    until: Instant,
    answered: Option<Instant>,
    index: usize,
    without_seconds: bool,
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
    limits: Limits,
    skew: TimeDelta,
    /// Database errors answered per vendor, for codes 4 and 5 in turn.
    db_errors: Mutex<BTreeMap<Vendor, u64>>,
}

enum Fault {
    Slow,
    Hang,
    ServerError(u16),
    Drop,
    Malformed,
    Throttle,
    BanWithoutSeconds,
    AccessLimited,
    DbError,
}

/// A signed duration: `parse_duration`'s text with an optional leading `-`.
fn parse_signed_duration(key: &str, text: &str) -> Result<TimeDelta, ConfigError> {
    let t = text.trim();
    let (sign, rest) = t.strip_prefix('-').map_or((1, t), |r| (-1, r));
    let d = TimeDelta::from_std(parse_duration(key, rest)?)
        .map_err(|_| ConfigError::invalid(key, format!("too large: {text:?}")))?;
    Ok(d * sign)
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
            ("ban_without_seconds_rate", cfg.ban_without_seconds_rate),
            ("access_limited_rate", cfg.access_limited_rate),
            ("db_error_rate", cfg.db_error_rate),
        ] {
            if !(0.0..=1.0).contains(&rate) {
                return Err(ConfigError::invalid(format!("faults.{key}"), format!("must be within 0..1, got {rate}")));
            }
        }
        let window = dur("limit_window", &cfg.limit_window, Duration::from_secs(60))?;
        if window < Duration::from_secs(1) {
            return Err(ConfigError::invalid("faults.limit_window", "must be at least 1s"));
        }
        let reset = match cfg.daily_quota_reset.as_deref() {
            None => NaiveTime::MIN,
            Some(t) => NaiveTime::parse_from_str(t.trim(), "%H:%M:%S").map_err(|_| {
                ConfigError::invalid("faults.daily_quota_reset", format!("expected HH:MM:SS (Beijing time), got {t:?}"))
            })?,
        };
        let skew = match cfg.clock_skew.as_deref() {
            None => TimeDelta::zero(),
            Some(t) => parse_signed_duration("faults.clock_skew", t)?,
        };
        let started = Instant::now();
        let lasts =
            cfg.daily_quota_lasts.as_deref().map(|t| parse_duration("faults.daily_quota_lasts", t)).transpose()?;
        let limits = Limits::new(cfg.per_minute_limit, window, cfg.daily_quota, reset, started, Utc::now() + skew)
            .with_quota_lasting(lasts);
        Ok(Faults {
            latency: dur("latency", &cfg.latency, Duration::ZERO)?,
            slow: dur("slow", &cfg.slow, Duration::from_millis(300))?,
            hang: dur("hang", &cfg.hang, Duration::from_secs(5))?,
            ban: dur("ban", &cfg.ban, Duration::from_secs(1))?,
            rng: Mutex::new(SimRng::new(cfg.seed)),
            started,
            vendor_requests: AtomicU64::new(0),
            bans: Mutex::new(BTreeMap::new()),
            log: Mutex::new(BTreeMap::new()),
            limits,
            skew,
            db_errors: Mutex::new(BTreeMap::new()),
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

    /// The simulators' clock: the real one moved by `clock_skew`.
    pub fn now(&self) -> DateTime<Utc> {
        self.skewed(Utc::now())
    }

    /// `t` on the simulators' clock.
    pub fn skewed(&self, t: DateTime<Utc>) -> DateTime<Utc> {
        t + self.skew
    }

    /// The request log, by vendor name, with each vendor's limit counts.
    pub fn log(&self) -> BTreeMap<&'static str, VendorLog> {
        let now = self.now();
        let log = self.log.lock().expect("log");
        log.iter()
            .map(|(v, l)| {
                let mut l = l.clone();
                let (c, resets) = self.limits.counts(*v, now);
                l.per_minute_refused = c.per_minute_refused;
                l.per_minute_refused_ms = c.per_minute_refused_ms;
                l.daily_refused = c.daily_refused;
                l.daily_resets_ms = resets;
                l.quota_exhausted_ms = c.quota_exhausted_ms;
                l.window_accepted = c.window_accepted;
                (v.name(), l)
            })
            .collect()
    }

    /// The vendor's answer to its ban, noting when the ban was first told to a client.
    fn answer_ban(&self, vendor: Vendor) -> Response {
        let mut without_seconds = false;
        if let Some(b) = self.bans.lock().expect("bans").get_mut(&vendor) {
            b.answered.get_or_insert_with(Instant::now);
            without_seconds = b.without_seconds;
        }
        if without_seconds { Vendor::limited_without_seconds() } else { vendor.throttled(self.ban) }
    }

    /// Begins a ban for `vendor`, logs it, and answers it.
    fn begin_ban(&self, vendor: Vendor, without_seconds: bool) -> Response {
        let began = Instant::now();
        let index = {
            let mut log = self.log.lock().expect("log");
            let l = log.entry(vendor).or_default();
            l.throttled += 1;
            l.bans
                .push(BanLog { began_ms: began.duration_since(self.started).as_millis() as u64, ..BanLog::default() });
            l.bans.len() - 1
        };
        self.bans
            .lock()
            .expect("bans")
            .insert(vendor, Ban { until: began + self.ban, answered: None, index, without_seconds });
        self.answer_ban(vendor)
    }

    /// A rate of 0 draws nothing, so a seed gives the same faults as before a rate was added.
    fn pick(&self, vendor: Vendor) -> Option<Fault> {
        let c = &self.cfg;
        let top_family = matches!(vendor, Vendor::Top | Vendor::Qimen);
        let mut rng = self.rng.lock().expect("rng");
        let mut roll = |rate: f64| rate > 0.0 && rng.chance(rate);
        if roll(c.throttle_rate) {
            Some(Fault::Throttle)
        } else if top_family && roll(c.ban_without_seconds_rate) {
            Some(Fault::BanWithoutSeconds)
        } else if vendor == Vendor::Top && roll(c.access_limited_rate) {
            Some(Fault::AccessLimited)
        } else if matches!(vendor, Vendor::Wdt | Vendor::Qimen) && roll(c.db_error_rate) {
            Some(Fault::DbError)
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

/// Applies the faults to every vendor request (not to `/_simulator/*`), and dates each answer
/// by the simulators' clock (hyper keeps a `Date` header it is given).
pub async fn middleware(State(state): State<Arc<SimState>>, req: Request, next: Next) -> Response {
    let Some(vendor) = Vendor::of_path(req.uri().path()) else { return next.run(req).await };
    let mut resp = answer(&state.faults, vendor, req, next).await;
    let date = state.faults.now().format("%a, %d %b %Y %H:%M:%S GMT").to_string();
    resp.headers_mut().insert(header::DATE, date.parse().expect("a date is a header value"));
    resp
}

/// In order: a ban in force, the daily quota, the per-window limit, revoked credentials, then
/// the random faults.
async fn answer(f: &Faults, vendor: Vendor, req: Request, next: Next) -> Response {
    let n = f.vendor_requests.fetch_add(1, Ordering::SeqCst) + 1;
    let now = Instant::now();
    let wall = f.now();
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
    match f.limits.admit(vendor, now, wall) {
        Verdict::Accepted => {}
        Verdict::Daily { secs_left } => return Vendor::daily_refusal(secs_left),
        Verdict::PerWindow { refusal, secs_left } => return vendor.per_minute_refusal(refusal, secs_left),
    }
    if f.cfg.revoke_after.is_some_and(|after| n > after) && f.cfg.revoke_vendors.iter().any(|v| v == vendor.name()) {
        return axum::Json(vendor.revoked(req.uri().path())).into_response();
    }
    match f.pick(vendor) {
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
        Some(Fault::Drop) => dropped_connection(),
        Some(Fault::Malformed) => {
            let resp = next.run(req).await;
            let (mut parts, body) = resp.into_parts();
            parts.headers.remove(header::CONTENT_LENGTH);
            let bytes = axum::body::to_bytes(body, usize::MAX).await.unwrap_or_default();
            let cut = bytes.slice(..bytes.len() / 2);
            Response::from_parts(parts, Body::from(cut))
        }
        Some(Fault::Throttle) => f.begin_ban(vendor, false),
        Some(Fault::BanWithoutSeconds) => f.begin_ban(vendor, true),
        Some(Fault::AccessLimited) => Vendor::access_limited(),
        Some(Fault::DbError) => {
            let mut turns = f.db_errors.lock().expect("db errors");
            let turn = turns.entry(vendor).or_default();
            *turn += 1;
            vendor.db_error(if *turn % 2 == 1 { 4 } else { 5 })
        }
    }
}

#[cfg(test)]
#[path = "faults_tests.rs"]
mod tests;
