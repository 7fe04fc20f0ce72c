//! The bench command: backfill throughput end to end and against its two ceilings (fetch
//! only, produce only) on the same data, CPU and peak memory per million records, and the
//! cost of many idle streams, against the simulators and a real Kafka; and the rate the
//! worker learns under a vendor's unpublished per-minute limit ([`limit`]).

pub mod limit;

use std::fmt::Write as _;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use futures_util::future::join_all;
use futures_util::{StreamExt, TryStreamExt};

use crate::config::{Config, DEFAULT_MAX_IN_FLIGHT};
use crate::domain::{OutRecord, WatermarkState, Window};
use crate::metrics::Metrics;
use crate::pipeline;
use crate::simulate::{BENCH_PAIRS, SimPair, bench_pair};
use crate::supervisor::Producer;
use crate::worker::read::Fetched;
use crate::worker::{Reader, StreamPlan};

/// Why a benchmark could not run.
#[derive(Debug, thiserror::Error)]
#[error("bench: {0}")]
pub struct BenchError(String);

fn err(e: impl std::fmt::Display) -> BenchError {
    BenchError(e.to_string())
}

/// What to measure: the `bench` command's arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchOptions {
    /// Kafka to produce to.
    #[arg(long = "kafka", value_name = "KAFKA", env = "KAFKA_BOOTSTRAP")]
    pub bootstrap: String,
    /// Records per shape.
    #[arg(long, default_value_t = 1_000_000)]
    pub records: usize,
    /// Shapes to measure: any windowed kind (wdt.account_check, qimen.stockin_refund,
    /// top.finance_order, finance.transactions).
    #[arg(long, value_delimiter = ',', default_value = "wdt.account_check,qimen.stockin_refund")]
    pub shapes: Vec<String>,
    /// Streams per shape (the data is split between them).
    #[arg(long, default_value_t = 2)]
    pub streams: usize,
    /// Runs of the fetch-only ceiling and of the end-to-end worker per shape; the best of
    /// each counts (two cores shared with the broker and simulator make single runs noisy).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..))]
    pub repeat: u32,
    /// Streams in the idle-scale run (0 skips it).
    #[arg(long, default_value_t = 500)]
    pub idle_streams: usize,
    /// How long the idle-scale run is measured.
    #[arg(long, default_value_t = 60)]
    pub idle_seconds: u64,
    /// Where configs and logs of the runs go.
    #[arg(long, default_value = "target/bench")]
    pub work_dir: PathBuf,
    /// Vendor latency the simulator adds to every response, e.g. 150ms (real vendors take
    /// 100-500 ms).
    #[arg(long, default_value = "0ms", value_parser = parse_duration_arg)]
    pub latency: Duration,
    /// The credential's quota (requests_per_second), shared by a shape's streams.
    #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(u32).range(1..))]
    pub requests_per_second: u32,
    /// The credential's ceiling of requests in flight (max_in_flight).
    #[arg(long, default_value_t = DEFAULT_MAX_IN_FLIGHT, value_parser = clap::value_parser!(u32).range(1..=256))]
    pub max_in_flight: u32,
    /// Each stream's window span (max_span); the vendors allow up to 1d.
    #[arg(long, default_value = "6h", value_parser = parse_duration_arg)]
    pub max_span: Duration,
    /// How far back the records begin (they end 2 hours back): with `--spread 22h` and
    /// `--max-span 1d`, each stream's whole share is in one window (a large window's memory).
    #[arg(long, default_value = "20d", value_parser = parse_duration_arg)]
    pub spread: Duration,
    /// The chance per request that the simulated vendor throttles (TOP/奇门 code 7, HTTP
    /// 429) and bans the credential for --ban.
    #[arg(long, default_value_t = 0.0)]
    pub throttle_rate: f64,
    #[arg(long, default_value = "1s", value_parser = parse_duration_arg)]
    pub ban: Duration,
    /// Windows each stream reads ahead (windows_in_flight); the worker's default if unset.
    #[arg(long)]
    pub windows_in_flight: Option<u32>,
    /// The worker's byte budget (max_buffered_bytes, e.g. 32MiB); its default if unset.
    #[arg(long)]
    pub max_buffered_bytes: Option<String>,
    /// Instead of the shapes: run the worker against a simulated 旺店通 that accepts this many
    /// requests a minute (unpublished, as on a real account) and report the rate it learns.
    #[arg(long, default_value_t = 0)]
    pub per_minute_limit: u32,
    /// How long the per-minute-limit run lasts, in minutes (its last half counts as steady).
    #[arg(long, default_value_t = 8)]
    pub limit_minutes: u64,
    /// Measure this worker binary end to end instead of this one (another build, for a
    /// before/after under the same conditions).
    #[arg(long)]
    pub worker_binary: Option<PathBuf>,
}

fn parse_duration_arg(text: &str) -> Result<Duration, String> {
    crate::config::parse_duration("duration", text).map_err(|e| e.to_string())
}

/// The vendor's bans during the end-to-end run, from the simulator's request log.
#[derive(Debug, Clone, Copy, Default)]
pub struct BanStats {
    pub bans: u64,
    /// Requests that arrived while banned (a concurrent client's requests already on their way).
    pub during_ban: u64,
    /// Requests sent after the ban had been answered: must be 0.
    pub after_ban_answer: u64,
    /// The share of the run the credential was banned: what the ban pattern takes away.
    pub banned_fraction: f64,
}

/// One shape's figures.
#[derive(Debug, Clone)]
pub struct ShapeResult {
    pub kind: String,
    pub records: u64,
    pub fetch_only_rps: f64,
    pub produce_only_rps: f64,
    pub end_to_end_rps: f64,
    /// `page_size × requests_per_second`: no worker can beat the quota.
    pub quota_ceiling_rps: f64,
    /// `max_in_flight × page_size / latency`: what the in-flight ceiling allows at this
    /// latency (none without latency).
    pub latency_ceiling_rps: Option<f64>,
    pub bans: BanStats,
    pub cpu_seconds_per_million: f64,
    pub peak_rss_mib: f64,
    /// How busy the machine's cores were during the fastest end-to-end run (0 to 1): near 1,
    /// the worker, the simulator and the broker were sharing every core, and only less CPU per
    /// record makes that run faster.
    pub e2e_machine_busy: f64,
}

impl ShapeResult {
    /// What the vendor allows: the lower of the quota and latency ceilings, less the time the
    /// credential was banned.
    pub fn vendor_ceiling_rps(&self) -> f64 {
        self.quota_ceiling_rps.min(self.latency_ceiling_rps.unwrap_or(f64::MAX)) * (1.0 - self.bans.banned_fraction)
    }
}

/// The idle-scale figures.
#[derive(Debug, Clone)]
pub struct IdleResult {
    /// Streams that said they were caught up (all of them, unless the deadline passed).
    pub streams: usize,
    pub configured: usize,
    /// From the worker's start until the last stream said it was caught up.
    pub seconds_to_caught_up: f64,
    pub seconds: f64,
    pub rss_mib: f64,
    pub cpu_seconds_per_minute: f64,
    /// CPU per poll of a stream while measured (each stream polls every 30 s).
    pub cpu_ms_per_poll: f64,
    /// Records the watermark topic grew by per second while measured.
    pub watermark_records_per_second: f64,
}

/// How long the idle run waits for every stream to say it is caught up.
const IDLE_CATCH_UP_DEADLINE: Duration = Duration::from_secs(600);
/// How often an idle stream polls.
const IDLE_POLL: Duration = Duration::from_secs(30);

/// A shape's simulator side and worker side, from the kind registry.
fn pair(kind: &str) -> Result<&'static SimPair, BenchError> {
    bench_pair(kind).ok_or_else(|| {
        let known: Vec<&str> = BENCH_PAIRS.iter().map(|p| p.kind).collect();
        err(format!("unknown shape {kind:?} (known: {})", known.join(", ")))
    })
}

/// A running simulator child, killed on drop.
struct Sim {
    child: Child,
    base: String,
}

impl Drop for Sim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Writes `toml` to `dir/file` and starts `exe` (this binary unless given) on it:
/// `tidemark <args> --config <file>`.
#[allow(clippy::too_many_arguments)]
fn spawn_with_config(
    exe: Option<&Path>,
    dir: &Path,
    file: &str,
    toml: &str,
    args: &[&str],
    log: &str,
    stdout: Stdio,
    stderr: Stdio,
) -> Result<Child, BenchError> {
    let cfg = dir.join(file);
    std::fs::write(&cfg, toml).map_err(err)?;
    let exe = match exe {
        Some(e) => e.to_owned(),
        None => std::env::current_exe().map_err(err)?,
    };
    Command::new(exe)
        .args(args)
        .arg("--config")
        .arg(&cfg)
        .env("RUST_LOG", log)
        .stdout(stdout)
        .stderr(stderr)
        .spawn()
        .map_err(err)
}

fn start_simulator(dir: &Path, toml: &str) -> Result<Sim, BenchError> {
    let mut child =
        spawn_with_config(None, dir, "simulator.toml", toml, &["simulate"], "warn", Stdio::piped(), Stdio::null())?;
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("piped")).read_line(&mut line).map_err(err)?;
    let addr = line.trim().strip_prefix("listening on ").ok_or_else(|| err(format!("simulator said {line:?}")))?;
    Ok(Sim { base: format!("http://{addr}"), child })
}

/// Waits for a child and returns (whether it succeeded, user + system CPU seconds, peak RSS
/// in MiB). The peak is the child's own `VmHWM`, sampled while it runs: `wait4`'s
/// `ru_maxrss` also counts the memory of this process the child was forked from (Linux keeps
/// the larger high-water mark across `exec`), which inflated earlier figures by the bench's
/// own data set.
fn wait_with_usage(child: &mut Child) -> Result<(bool, f64, f64), BenchError> {
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: an all-zero rusage is valid, and wait4 writes it for our own child.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let mut peak_kib = 0u64;
    loop {
        if let Some(kib) = proc_kib(child.id(), "VmHWM:") {
            peak_kib = peak_kib.max(kib);
        }
        let r = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut usage) };
        match r {
            0 => std::thread::sleep(Duration::from_millis(20)),
            r if r == pid => break,
            _ => return Err(err(std::io::Error::last_os_error())),
        }
    }
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    let ok = libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0;
    Ok((ok, secs(usage.ru_utime) + secs(usage.ru_stime), peak_kib as f64 / 1024.0))
}

/// A `/proc/<pid>/status` line's value in KiB (`VmRSS:`, `VmHWM:`), while the process lives.
fn proc_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

fn worker_toml(opts: &BenchOptions, kind: &str, base: &str, run: &str, streams: &[String], extra: &str) -> String {
    let pair = pair(kind).expect("checked shape");
    let mut s =
        opts.max_buffered_bytes.as_ref().map(|b| format!("max_buffered_bytes = \"{b}\"\n\n")).unwrap_or_default();
    let _ = write!(
        s,
        "[kafka]\nbootstrap = \"{}\"\ntransactional_id = \"bench-{run}\"\nwatermark_topic = \"bench-{run}.wm\"\ndead_letter_topic = \"bench-{run}.dlq\"\ntopic_partitions = 3\n\n[sources.s]\nkind = \"{kind}\"\n{}\nbase_url = \"{base}{}\"\nrequests_per_second = {}\n{}",
        opts.bootstrap,
        pair.source,
        pair.path,
        opts.requests_per_second,
        // Only when not the default, so a build from before the setting can be measured too.
        if opts.max_in_flight == DEFAULT_MAX_IN_FLIGHT {
            String::new()
        } else {
            format!("max_in_flight = {}\n", opts.max_in_flight)
        }
    );
    for g in streams {
        let _ = write!(
            s,
            "\n[[streams]]\nid = \"bench/{g}\"\nsource = \"s\"\ntopic = \"bench-{run}.data\"\nstart = \"21d\"\nsettle = \"1m\"\nmax_span = \"{}s\"\n{}{extra}\n[streams.params]\n{} = \"{g}\"\n",
            opts.max_span.as_secs(),
            opts.windows_in_flight.map(|n| format!("windows_in_flight = {n}\n")).unwrap_or_default(),
            pair.group_param
        );
    }
    s
}

/// Every window of a stream from its start to now, as the worker plans them.
fn windows(plan: &StreamPlan, now: chrono::DateTime<Utc>) -> Vec<Window> {
    plan.windows_from(crate::domain::time::truncate_to_second(plan.cfg.start.resolve(now)), now)
}

/// How the worker reads a stream, without a worker: the fetch-only ceiling and the records
/// the produce-only ceiling writes come from the same reads, concurrency included.
fn reader(plan: StreamPlan, dead_letter_topic: &str) -> Arc<Reader> {
    Arc::new(Reader::new(Arc::new(plan), Metrics::new(), dead_letter_topic))
}

/// Every window of a stream, read with as many windows in flight as the worker would.
async fn read_all(reader: &Reader, now: chrono::DateTime<Utc>) -> Result<Vec<Fetched>, BenchError> {
    let never = &tokio_util::sync::CancellationToken::new();
    let ahead = reader.plan.cfg.windows_in_flight as usize;
    futures_util::stream::iter(windows(&reader.plan, now))
        .map(|w| async move { reader.read(Some(&w), never).await.map(|f| (w, f)) })
        .buffered(ahead)
        .map(|r| r.map(|(_, f)| f).map_err(err))
        .try_collect()
        .await
}

async fn fetch_only(readers: &[Arc<Reader>], now: chrono::DateTime<Utc>) -> Result<(u64, Duration), BenchError> {
    let started = Instant::now();
    let counts = join_all(readers.iter().map(|r| async move {
        let fetched = read_all(r, now).await?;
        Ok::<u64, BenchError>(fetched.iter().map(|f| f.candidates.len() as u64).sum())
    }))
    .await;
    let total = counts.into_iter().collect::<Result<Vec<_>, _>>()?.into_iter().sum();
    Ok((total, started.elapsed()))
}

/// Produces the same records, read and encoded beforehand, one transaction per window with
/// its watermark record, as the worker does; only the producing is timed.
async fn produce_only(
    config: &Config,
    readers: &[Arc<Reader>],
    now: chrono::DateTime<Utc>,
    run: &str,
) -> Result<(u64, Duration), BenchError> {
    let mut kafka = config.kafka.clone();
    kafka.transactional_id = format!("bench-{run}-produce");
    // The workers' producer, as the supervisor makes it; retired on drop if a step fails.
    let producer = Producer::connect(&kafka, None).await.map_err(err)?;
    let topic: Arc<str> = Arc::from(format!("bench-{run}.produce"));
    let wm_topic: Arc<str> = Arc::from(kafka.watermark_topic.as_str());
    crate::kafka::topics::ensure(
        &kafka,
        &[crate::kafka::topics::DataTopic { name: topic.to_string(), compacted: false }],
    )
    .await
    .map_err(err)?;
    let mut timed = Duration::ZERO;
    let mut total = 0u64;
    for r in readers {
        let p = &r.plan;
        let mut state = WatermarkState::new(p.cfg.id.clone(), p.cfg.start.resolve(now));
        for (w, fetched) in windows(p, now).into_iter().zip(read_all(r, now).await?) {
            let mut out: Vec<OutRecord> = fetched
                .candidates
                .into_iter()
                .map(|c| c.map(|c| OutRecord { topic: topic.clone(), ..c.out }))
                .collect::<Result<_, _>>()
                .map_err(err)?;
            total += out.len() as u64;
            state = state.advance(w.end, Vec::new(), Duration::ZERO).map_err(err)?;
            out.push(OutRecord {
                topic: wm_topic.clone(),
                key: p.cfg.id.as_str().as_bytes().to_vec(),
                value: Some(state.to_bytes()),
                headers: Vec::new().into(),
            });
            let t0 = Instant::now();
            producer.sink().commit(out.into()).await.map_err(err)?;
            timed += t0.elapsed();
        }
    }
    producer.retire().await;
    Ok((total, timed))
}

/// Runs the real worker binary to completion and measures it.
fn end_to_end(exe: Option<&Path>, dir: &Path, toml: &str) -> Result<(Duration, f64, f64), BenchError> {
    let started = Instant::now();
    let mut child = spawn_with_config(
        exe,
        dir,
        "worker.toml",
        toml,
        &["run", "--until-caught-up"],
        "warn",
        Stdio::null(),
        Stdio::null(),
    )?;
    let (ok, cpu, rss) = wait_with_usage(&mut child)?;
    if !ok {
        return Err(err("the worker did not finish cleanly"));
    }
    Ok((started.elapsed(), cpu, rss))
}

/// Measures one shape: its ceilings and the real worker on the same data set.
pub async fn shape_bench(opts: &BenchOptions, kind: &str) -> Result<ShapeResult, BenchError> {
    let section = pair(kind)?.simulator;
    let dir = opts.work_dir.join(kind);
    std::fs::create_dir_all(&dir).map_err(err)?;
    let groups: Vec<String> = (1..=opts.streams).map(|i| format!("g{i:02}")).collect();
    let quoted: Vec<String> = groups.iter().map(|g| format!("\"{g}\"")).collect();
    let sim = start_simulator(
        &dir,
        &format!(
            "listen = \"127.0.0.1:0\"\n{section}\nseed = 7\nrecords = {}\nfrom = \"{}s\"\nuntil = \"2h\"\nshops = [{}]\n\n[faults]\nlatency = \"{}ms\"\nthrottle_rate = {}\nban = \"{}ms\"\n",
            opts.records,
            opts.spread.as_secs(),
            quoted.join(", "),
            opts.latency.as_millis(),
            opts.throttle_rate,
            opts.ban.as_millis()
        ),
    )?;
    let run = format!("{}-{}", kind.replace('.', "-"), Utc::now().format("%H%M%S"));
    let config = Config::parse(&worker_toml(opts, kind, &sim.base, &run, &groups, "")).map_err(err)?;
    let readers: Vec<Arc<Reader>> =
        pipeline::plan(&config).map_err(err)?.into_iter().map(|p| reader(p, &config.kafka.dead_letter_topic)).collect();
    let now = Utc::now();

    let mut fetch = (0u64, Duration::MAX);
    let mut e2e: Option<(Duration, f64, f64, BanStats, f64)> = None;
    let vendor = kind.split('.').next().unwrap_or(kind);
    let mut topics = vec![format!("bench-{run}.produce"), format!("bench-{run}.wm")];
    for attempt in 1..=opts.repeat {
        eprintln!("[{kind}] fetch-only ceiling ({attempt}/{})…", opts.repeat);
        let (fetched, took) = fetch_only(&readers, now).await?;
        if took < fetch.1 {
            fetch = (fetched, took);
        }
        eprintln!("[{kind}] end to end, the worker binary ({attempt}/{})…", opts.repeat);
        let e2e_run = format!("{run}-e2e{attempt}");
        topics.extend(["data", "wm", "dlq"].map(|t| format!("bench-{e2e_run}.{t}")));
        let before = vendor_log(&sim.base, vendor).await?;
        let busy_before = machine_cpu_ticks();
        let (took, cpu, rss) = end_to_end(
            opts.worker_binary.as_deref(),
            &dir,
            &worker_toml(opts, kind, &sim.base, &e2e_run, &groups, ""),
        )?;
        let busy = busy_fraction(busy_before, machine_cpu_ticks());
        let after = vendor_log(&sim.base, vendor).await?;
        let delta = |field: &str| after[field].as_u64().unwrap_or(0) - before[field].as_u64().unwrap_or(0);
        let bans = BanStats {
            bans: delta("throttled"),
            during_ban: delta("during_ban"),
            after_ban_answer: delta("after_ban_answer"),
            banned_fraction: (delta("throttled") as f64 * opts.ban.as_secs_f64() / took.as_secs_f64()).min(1.0),
        };
        let measured = (took, cpu, rss, bans, busy);
        if e2e.is_none_or(|best| measured.0 < best.0) {
            e2e = Some(measured);
        }
    }
    eprintln!("[{kind}] produce-only ceiling…");
    let (produced, produce_time) = produce_only(&config, &readers, now, &run).await?;
    // The runs' topics are dropped so repeated benches do not load the broker with old data.
    if let Err(e) = delete_topics(&config.kafka, &topics).await {
        eprintln!("[{kind}] could not delete the bench topics: {e}");
    }
    let (fetched, fetch_time) = fetch;
    let (e2e_time, cpu, rss, bans, busy) = e2e.expect("at least one run");
    let rps = |n: u64, d: Duration| n as f64 / d.as_secs_f64();
    let page_size = f64::from(readers[0].plan.page_size);
    Ok(ShapeResult {
        kind: kind.to_owned(),
        records: fetched,
        fetch_only_rps: rps(fetched, fetch_time),
        produce_only_rps: rps(produced, produce_time),
        end_to_end_rps: rps(fetched, e2e_time),
        quota_ceiling_rps: page_size * f64::from(opts.requests_per_second),
        latency_ceiling_rps: (!opts.latency.is_zero())
            .then(|| f64::from(opts.max_in_flight) * page_size / opts.latency.as_secs_f64()),
        bans,
        cpu_seconds_per_million: cpu / (fetched as f64 / 1e6),
        peak_rss_mib: rss,
        e2e_machine_busy: busy,
    })
}

/// The simulator's request log for one vendor (`/_simulator/requests`).
async fn vendor_log(base: &str, vendor: &str) -> Result<serde_json::Value, BenchError> {
    let log: serde_json::Value =
        reqwest::get(format!("{base}/_simulator/requests")).await.map_err(err)?.json().await.map_err(err)?;
    Ok(log.get(vendor).cloned().unwrap_or_default())
}

async fn delete_topics(kafka: &crate::config::KafkaConfig, topics: &[String]) -> Result<(), BenchError> {
    use rdkafka::admin::{AdminClient, AdminOptions};
    let admin: AdminClient<rdkafka::client::DefaultClientContext> =
        crate::kafka::client_config(kafka).create().map_err(err)?;
    let names: Vec<&str> = topics.iter().map(String::as_str).collect();
    admin.delete_topics(&names, &AdminOptions::new()).await.map_err(err)?;
    Ok(())
}

/// The sum of `topic`'s partitions' end offsets (0 for a topic not there yet).
async fn topic_end(bootstrap: &str, topic: &str) -> Result<u64, BenchError> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let (bootstrap, topic) = (bootstrap.to_owned(), topic.to_owned());
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer =
            rdkafka::ClientConfig::new().set("bootstrap.servers", &bootstrap).create().map_err(err)?;
        let md = consumer.fetch_metadata(Some(&topic), Duration::from_secs(10)).map_err(err)?;
        let mut end = 0;
        for p in md.topics().iter().flat_map(|t| t.partitions()) {
            let (_, high) = consumer.fetch_watermarks(&topic, p.id(), Duration::from_secs(10)).map_err(err)?;
            end += high.max(0) as u64;
        }
        Ok(end)
    })
    .await
    .map_err(err)?
}

/// Many streams with nothing new: the worker's memory and CPU per minute once all are caught up.
pub async fn idle_bench(opts: &BenchOptions) -> Result<IdleResult, BenchError> {
    let kind = "wdt.account_check";
    let dir = opts.work_dir.join("idle");
    std::fs::create_dir_all(&dir).map_err(err)?;
    let section = pair(kind)?.simulator;
    let sim = start_simulator(
        &dir,
        &format!("listen = \"127.0.0.1:0\"\n{section}\nrecords = 0\nfrom = \"2d\"\nuntil = \"1d\"\n"),
    )?;
    let groups: Vec<String> = (0..opts.idle_streams).map(|i| format!("idle-{i:04}")).collect();
    let run = format!("idle-{}", Utc::now().format("%H%M%S"));
    let toml = worker_toml(opts, kind, &sim.base, &run, &groups, "poll_interval = \"30s\"")
        .replace("start = \"21d\"", "start = \"3m\"");
    let mut child = spawn_with_config(
        opts.worker_binary.as_deref(),
        &dir,
        "worker.toml",
        &toml,
        &["run"],
        "info",
        Stdio::null(),
        Stdio::piped(),
    )?;
    let (pid, started) = (child.id(), Instant::now());
    let stderr = child.stderr.take().expect("piped");
    let configured = groups.len();
    // A thread reads the log (and keeps draining it, so the worker never blocks on a full
    // pipe); each stream's first "caught up" is counted here, up to a deadline.
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains("caught up") {
                let _ = tx.send(());
            }
        }
    });
    let caught_up = tokio::task::spawn_blocking(move || {
        let deadline = started + IDLE_CATCH_UP_DEADLINE;
        let mut n = 0;
        while n < configured {
            match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(()) => n += 1,
                Err(_) => break,
            }
        }
        n
    })
    .await
    .map_err(err)?;
    let seconds_to_caught_up = started.elapsed().as_secs_f64();
    eprintln!(
        "[idle] {caught_up} of {configured} streams caught up in {seconds_to_caught_up:.0} s; measuring for {} s…",
        opts.idle_seconds
    );
    let watermarks = format!("bench-{run}.wm");
    let wm0 = topic_end(&opts.bootstrap, &watermarks).await?;
    let (cpu0, t0) = (proc_cpu_seconds(pid)?, Instant::now());
    tokio::time::sleep(Duration::from_secs(opts.idle_seconds)).await;
    let (cpu1, elapsed) = (proc_cpu_seconds(pid)?, t0.elapsed());
    let wm1 = topic_end(&opts.bootstrap, &watermarks).await?;
    let rss = proc_rss_mib(pid)?;
    unsafe {
        libc::kill(pid as libc::pid_t, libc::SIGTERM);
    }
    let _ = wait_with_usage(&mut child);
    let seconds = elapsed.as_secs_f64();
    let polls = caught_up as f64 * seconds / IDLE_POLL.as_secs_f64();
    Ok(IdleResult {
        streams: caught_up,
        configured,
        seconds_to_caught_up,
        seconds,
        rss_mib: rss,
        cpu_seconds_per_minute: (cpu1 - cpu0) / seconds * 60.0,
        cpu_ms_per_poll: if polls > 0.0 { (cpu1 - cpu0) * 1000.0 / polls } else { 0.0 },
        watermark_records_per_second: wm1.saturating_sub(wm0) as f64 / seconds,
    })
}

/// utime + stime of a running process, from /proc.
fn proc_cpu_seconds(pid: u32) -> Result<f64, BenchError> {
    // proc(5): after "pid (comm) " come state (field 3) … utime (14), stime (15), in clock
    // ticks; comm may hold spaces and parentheses, so count from the last ')'.
    const UTIME_AFTER_COMM: usize = 14 - 3;
    const STIME_AFTER_COMM: usize = 15 - 3;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).map_err(err)?;
    let after = &stat[stat.rfind(')').ok_or_else(|| err("bad /proc stat"))? + 2..];
    let f: Vec<&str> = after.split_whitespace().collect();
    let field =
        |i: usize| -> Result<f64, BenchError> { f.get(i).ok_or_else(|| err("short /proc stat"))?.parse().map_err(err) };
    // SAFETY: sysconf only reads a configuration value; _SC_CLK_TCK is always defined.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Ok((field(UTIME_AFTER_COMM)? + field(STIME_AFTER_COMM)?) / ticks)
}

/// The machine's (busy, total) CPU ticks since boot, from /proc/stat's `cpu` line.
fn machine_cpu_ticks() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    // proc(5): user nice system idle iowait irq softirq steal ...; idle and iowait are idle.
    let ticks: Vec<u64> =
        stat.lines().next()?.split_whitespace().skip(1).take(8).map(|t| t.parse().ok()).collect::<Option<_>>()?;
    let total: u64 = ticks.iter().sum();
    Some((total - ticks.get(3)? - ticks.get(4)?, total))
}

/// The busy share of the ticks between two readings (0 if /proc/stat could not be read).
fn busy_fraction(before: Option<(u64, u64)>, after: Option<(u64, u64)>) -> f64 {
    match (before, after) {
        (Some((b0, t0)), Some((b1, t1))) if t1 > t0 => (b1 - b0) as f64 / (t1 - t0) as f64,
        _ => 0.0,
    }
}

fn proc_rss_mib(pid: u32) -> Result<f64, BenchError> {
    proc_kib(pid, "VmRSS:").map(|kb| kb as f64 / 1024.0).ok_or_else(|| err("no VmRSS"))
}

/// The machine, for the report.
pub fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find_map(|l| l.strip_prefix("model name").map(|v| v.trim_start_matches([' ', '\t', ':']).to_owned()))
        })
        .unwrap_or_else(|| "unknown cpu".into());
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    format!("{cores} cores, {cpu}")
}
