//! The `tidemark` command line: run the worker, serve simulators, validate and inspect.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

use tidemark::config::Config;
use tidemark::domain::watermark::fmt_wm;
use tidemark::metrics::Metrics;
use tidemark::run::{RunOptions, run};
use tidemark::worker::StreamOutcome;

/// `println!` that ignores a failed write: with stdout closed (`tidemark ... | head`, a reader
/// gone) `println!` panics, and the exit code becomes 101 instead of the command's own.
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

/// `eprintln!` that ignores a failed write, for the same reason: the last line of a failed
/// command is its error, and a closed stderr must not turn exit 2 (or 1, or 3) into a panic's
/// 101. (The log subscriber is told the same in `init_logs`.)
macro_rules! errln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

// Parsed vendor JSON is millions of small strings and maps: glibc's allocator took close to a
// third of the worker's CPU in a backfill (see BENCHMARKS.md). The `override` feature makes
// librdkafka's C allocations mimalloc's too: it allocates each message and header on the
// producing thread and frees them on its broker thread, which glibc serves slowly (its
// `_int_malloc` was 8 % of the worker's CPU, half of it `rd_kafka_header_add`). `no_thp` keeps
// mimalloc from asking for transparent huge pages: each one is faulted in and zeroed 2 MiB at a
// time, which held some 40 MiB of RSS more for the same work (BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "tidemark",
    version,
    about = "Turns paged, time-windowed vendor HTTP APIs into Kafka event streams, exactly once.",
    long_about = "Turns paged, time-windowed vendor HTTP APIs (旺店通, 奇门, TOP, finance bills) into \
                  Avro-encoded Kafka event streams. Each stream's watermark is committed in the same \
                  Kafka transaction as its records, so a restart resumes exactly where it stopped."
)]
struct Cli {
    /// Log format on stderr. RUST_LOG sets the level (default: info).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "TIDEMARK_LOG_FORMAT")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Poll every configured stream into Kafka.
    Run {
        /// Worker config file (TOML).
        #[arg(long, short, env = "TIDEMARK_CONFIG")]
        config: PathBuf,
        /// Exit 0 once every stream's watermark has reached now minus its settle lag (exit 1 if
        /// a stream stopped on an error, 3 if a signal came first).
        #[arg(long)]
        until_caught_up: bool,
        /// Run as a replica of this group, sharing the streams with the group's other replicas
        /// (as `[cluster] group = ...`; overrides it). See the README's "Scaling out".
        #[arg(long, env = "TIDEMARK_CLUSTER_GROUP")]
        cluster_group: Option<String>,
        /// This replica's id in the group: unique per replica, stable across its restarts
        /// (default: `[cluster] instance_id`, else the host name).
        #[arg(long, env = "TIDEMARK_INSTANCE_ID")]
        instance_id: Option<String>,
    },
    /// Deliver records from Kafka to the configured [writers.<id>] targets (e.g. refund
    /// stock-ins as 金蝶云星空 销售退货单), each as a consumer group, exactly once per record.
    Write {
        #[arg(long, short, env = "TIDEMARK_CONFIG")]
        config: PathBuf,
        /// Exit once every writer's group has read its topic to the end (exit 1 if a writer
        /// stopped on an error).
        #[arg(long)]
        until_idle: bool,
    },
    /// Serve local simulators of the vendor APIs (for tests, demos and benchmarks).
    Simulate {
        /// Simulator config file (TOML).
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Check a worker config and its environment variables; with the Confluent value format,
    /// also check each topic's schema against the schema registry (nothing is registered).
    Validate {
        #[arg(long, short, env = "TIDEMARK_CONFIG")]
        config: PathBuf,
        /// Connect to nothing: skip the schema registry's compatibility check.
        #[arg(long)]
        offline: bool,
    },
    /// The endpoints (vendor methods) a source's `kind` may name: built in, and a config's own.
    Endpoints {
        #[command(subcommand)]
        command: EndpointsCommand,
    },
    /// Measure throughput, its ceilings, CPU and memory, and idle scale (see BENCHMARKS.md).
    Bench(tidemark::bench::BenchOptions),
    /// Show what Kafka holds per stream (records, keys, tombstones, watermark) and decoded samples.
    Inspect {
        #[arg(long, short, env = "TIDEMARK_CONFIG")]
        config: PathBuf,
        /// Decoded sample records to show per topic.
        #[arg(long, default_value_t = 1)]
        samples: usize,
        /// One line per sample, cut to 400 characters.
        #[arg(long)]
        compact: bool,
    },
    /// See and steer the streams: list them, stop and resume them.
    Streams {
        #[command(subcommand)]
        command: StreamsCommand,
    },
    /// Re-read a closed time range of a stream into its topic without moving its watermark;
    /// run it again after a crash and it resumes where it stopped.
    Backfill {
        #[command(flatten)]
        ops: OpsOptions,
        stream: String,
        /// Beijing time `yyyy-MM-dd HH:mm:ss`, or a duration back from now (`3d`).
        #[arg(long)]
        from: String,
        /// The range's end (not past the stream's watermark).
        #[arg(long)]
        to: String,
        /// The share of the credential's `requests_per_second` the backfill may use (the live
        /// workers use the same credential).
        #[arg(long, default_value_t = 0.5, value_parser = share)]
        quota_share: f64,
        #[arg(long)]
        dry_run: bool,
    },
    /// Check committed windows against the vendor and Kafka: each window's ledger entry (in
    /// `kafka.ledger_topic`) against the vendor's total now (its first page) and against the
    /// records its topic holds for that window. Exit 1 when anything differs.
    #[command(long_about = "Check committed windows against the vendor and Kafka. For every window of the \
                      chosen streams that starts in [--from, --to), its ledger entry (written in the \
                      window's own transaction to kafka.ledger_topic) is compared with the vendor's \
                      total now (one first-page request per window, at --quota-share of the \
                      credential's rate) and with the records the stream's topic holds carrying that \
                      window's tidemark.window header (read_committed; count and id checksum). \
                      Prints a table per stream (--output json for scripts) and exits 1 when anything \
                      differs. --repair hands every window whose vendor total changed to a backfill, \
                      which re-reads it and emits what changed; run reconcile again to see it level.\n\n\
                      With --writer ID it checks the writer instead of streams (the two exclude each \
                      other): every record of the writer's topic (the latest value of each key) whose \
                      own time (its kind's window field, e.g. stockin_time) is in [--from, --to) must \
                      be in the target as the writer would make it now (K3Cloud: a bill with that \
                      FBillNo and the same head fields, lines, quantities and amounts, queried 100 \
                      bills per ExecuteBillQuery at the writer's requests_per_second), or in the \
                      writer's dead-letter topic, which is reported with its reason and is no \
                      difference. What is missing or different is listed by key and field; exit 1 \
                      then, 0 when clean.")]
    Reconcile {
        #[command(flatten)]
        ops: OpsOptions,
        /// Check only these streams (repeat); every windowed stream by default.
        #[arg(long = "stream")]
        streams: Vec<String>,
        /// Check this writer's delivered records against its target instead of streams.
        #[arg(long, conflicts_with_all = ["streams", "repair", "quota_share"])]
        writer: Option<String>,
        /// Windows starting at or after: Beijing time `yyyy-MM-dd HH:mm:ss`, or a duration back from now (`3d`).
        #[arg(long)]
        from: String,
        /// Windows starting before this (default now).
        #[arg(long, default_value = "0s")]
        to: String,
        /// The share of the credential's `requests_per_second` the vendor checks may use.
        #[arg(long, default_value_t = 0.5, value_parser = share)]
        quota_share: f64,
        /// Backfill each window whose vendor total changed since it was committed.
        #[arg(long)]
        repair: bool,
    },
    /// Call a vendor method with a source's credentials, read a window's pages, and write the
    /// endpoint it finds: `<out>/<kind>.toml` and `<kind>.avsc` (README: "Discovering an endpoint");
    /// with `--against KIND`, compare with that kind's schema instead.
    #[command(long_about = "Call a vendor method with a configured source's credentials (a live vendor or a \
                      simulator; wdt, qimen and finance sources: top's client calls one method only), \
                      read a window's pages (at most 50), and write <out>/<kind>.toml (the \
                      manifest) and <kind>.avsc (the schema) as the README's \"Adding an endpoint\" \
                      describes: the envelope's one list of objects as list_field (qimen's inside \
                      `response`); as key_field the \
                      given one or the first field present, non-empty and unique in every record \
                      (*_no preferred); decimal strings as Avro decimal (precision >= 19, the largest \
                      scale seen); yyyy-MM-dd HH:mm:ss as timestamp-millis (Beijing time, \
                      0000-00-00 00:00:00 as null); every field but the key optional; nested lists \
                      of objects as arrays of records; total = every_page when every page read carried \
                      the count. It prints what it inferred and why, and exits 2 \
                      when it cannot tell (no list, several, no unique key).\n\n\
                      With --against KIND (a built-in kind or one in the config's endpoints_dir) it \
                      writes no endpoint: it reads the window of KIND's method (or --method) and lists \
                      the fields the vendor sends that KIND's schema lacks, the schema's fields no \
                      record had, and types that disagree (e.g. a decimal whose scale grew); when \
                      anything differs it writes <out>/<KIND>.avsc, the proposed next version: the \
                      schema with the new fields appended as optional ([\"null\", T], default null), \
                      BACKWARD compatible.\n\n\
                      Exit codes: 0 the endpoint was written, or with --against nothing differs; 1 with \
                      --against, differences found and the proposal written; 2 an error.")]
    Discover {
        /// Worker config file (TOML) holding the source.
        #[arg(long, short, env = "TIDEMARK_CONFIG")]
        config: PathBuf,
        #[command(flatten)]
        opts: tidemark::discover::DiscoverOptions,
    },
    /// Move a stream's watermark (re-read from a time, or start over).
    Watermarks {
        #[command(subcommand)]
        command: WatermarksCommand,
    },
}

/// Options every operations command takes.
#[derive(clap::Args, Debug)]
struct OpsOptions {
    #[arg(long, short, env = "TIDEMARK_CONFIG")]
    config: PathBuf,
    /// `text` (a table) or `json` (for scripts).
    #[arg(long, value_enum, default_value_t = Output::Text)]
    output: Output,
    /// The replicas' group, when they run with `--cluster-group` (each stream's transactional
    /// id, which fences its owner, depends on it); `[cluster] group` otherwise.
    #[arg(long, env = "TIDEMARK_CLUSTER_GROUP")]
    cluster_group: Option<String>,
}

impl OpsOptions {
    fn load(&self) -> anyhow::Result<Config> {
        let mut cfg = Config::load(&self.config)?;
        if let Some(group) = &self.cluster_group {
            cfg.join_cluster(group, None)?;
        }
        Ok(cfg)
    }
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Output {
    Text,
    Json,
}

#[derive(Subcommand, Debug)]
enum StreamsCommand {
    /// Every stream in the config and in the watermark topic: watermark, lag, state
    /// (running: committed within two polls; stopped: by an operator; failed; quota
    /// exhausted until <time>: its credential's daily quota is used up; unknown), last owner.
    List {
        #[command(flatten)]
        ops: OpsOptions,
    },
    /// Stop streams: running workers stop reading and committing them within one poll, and
    /// a stopped stream stays stopped across restarts until resumed.
    Stop {
        #[command(flatten)]
        ops: OpsOptions,
        /// Stream ids, as in the config.
        #[arg(required = true)]
        streams: Vec<String>,
        /// Why, kept with the flag and shown by `streams list`.
        #[arg(long)]
        reason: Option<String>,
        /// Say what would be written; write nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Resume stopped streams from their watermarks.
    Resume {
        #[command(flatten)]
        ops: OpsOptions,
        #[arg(required = true)]
        streams: Vec<String>,
        #[arg(long)]
        dry_run: bool,
    },
}

#[derive(Subcommand, Debug)]
enum EndpointsCommand {
    /// One line per endpoint: kind, protocol, vendor method, mode, longest window, and where it
    /// is defined (built-in, or its manifest's path), then its description.
    #[command(long_about = "One line per endpoint: kind, protocol, vendor method, mode, longest window (max span), \
                      and where it is defined: built-in (compiled in from the repository's schemas/), or the \
                      path of its manifest in the config's endpoints_dir. Without --config, the built-in \
                      endpoints only. A config's manifests are checked as `run` checks them: an error \
                      names the file and the key, and the command exits 2. Adding an endpoint (a \
                      <kind>.toml manifest beside its <kind>.avsc schema) is described in the README.")]
    List {
        /// Worker config file (TOML) whose `endpoints_dir` to list as well.
        #[arg(long, short, env = "TIDEMARK_CONFIG")]
        config: Option<PathBuf>,
    },
}

#[derive(Subcommand, Debug)]
enum WatermarksCommand {
    /// Set a stream's watermark, back (re-read from there; unchanged records are not emitted
    /// again) or forward (skip), in a transaction that fences the stream's current owner.
    Set {
        #[command(flatten)]
        ops: OpsOptions,
        stream: String,
        /// Beijing time `yyyy-MM-dd HH:mm:ss`, or a duration back from now (`1d`, `6h`).
        #[arg(long)]
        to: String,
        /// Also when the stream is running (its owner is fenced and resumes from the new
        /// watermark, losing nothing).
        #[arg(long)]
        force: bool,
        #[arg(long)]
        dry_run: bool,
    },
    /// Forget a stream's watermark: it starts again from its configured `start`.
    Reset {
        #[command(flatten)]
        ops: OpsOptions,
        stream: String,
        #[arg(long)]
        force: bool,
        #[arg(long)]
        dry_run: bool,
    },
}

fn init_logs(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    // Without log_internal_errors(false), a failed write (stderr closed: the reading end of
    // the pipe gone) is reported with eprintln!, which panics: the task logging it dies, and
    // if that is the signal handler, SIGTERM never stops the process.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .log_internal_errors(false);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}

/// Turns SIGINT/SIGTERM into a shutdown request (the token cancelled); a second signal exits
/// at once.
fn shutdown_on_signals() -> CancellationToken {
    use tokio::signal::unix::{SignalKind, signal};
    let shutdown = CancellationToken::new();
    let cancel = shutdown.clone();
    tokio::spawn(async move {
        // Both listeners live for the whole run: one made anew each turn (`ctrl_c()`) misses a
        // SIGINT that came with the SIGTERM before it, and the second signal is lost.
        let mut term = signal(SignalKind::terminate()).expect("sigterm handler");
        let mut int = signal(SignalKind::interrupt()).expect("sigint handler");
        for n in 0.. {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
            if n > 0 {
                tracing::warn!("second signal: exiting now");
                std::process::exit(130);
            }
            tracing::info!("shutdown requested; finishing the current window");
            cancel.cancel();
        }
    });
    shutdown
}

/// The end-of-run table: one line per stream.
fn print_summary(reports: &[tidemark::worker::StreamReport]) {
    let rows: Vec<Vec<String>> = reports
        .iter()
        .map(|r| {
            let outcome = match &r.outcome {
                StreamOutcome::CaughtUp => "caught up".to_owned(),
                StreamOutcome::ShutDown => "shut down".to_owned(),
                StreamOutcome::Stopped(why) | StreamOutcome::ProducerFailed(why) => format!("STOPPED: {why}"),
                StreamOutcome::Fenced(_) => "handed over (another replica owns it)".to_owned(),
                StreamOutcome::Paused => "stopped by an operator".to_owned(),
                StreamOutcome::Resumed => "resumed by an operator".to_owned(),
            };
            vec![
                r.stream.to_string(),
                r.records.to_string(),
                r.unchanged.to_string(),
                r.tombstones.to_string(),
                r.windows.to_string(),
                fmt_wm(r.watermark),
                r.topic.to_string(),
                outcome,
            ]
        })
        .collect();
    let header = ["stream", "records", "unchanged", "deleted", "windows", "watermark (Beijing)", "topic", "outcome"];
    print_table(&header, &rows, &[1, 2, 3, 4]);
}

/// Prints an aligned text table; the columns in `right` are right-aligned (counts).
fn print_table(header: &[&str], rows: &[Vec<String>], right: &[usize]) {
    let n = header.len();
    let widths: Vec<usize> = (0..n)
        .map(|i| rows.iter().map(|r| r[i].chars().count()).chain([header[i].chars().count()]).max().unwrap_or(0))
        .collect();
    let line = |cells: Vec<&str>| {
        let mut out = String::new();
        for (i, c) in cells.iter().enumerate() {
            let pad = " ".repeat(widths[i].saturating_sub(c.chars().count()));
            let last = i + 1 == n;
            if right.contains(&i) {
                out.push_str(&pad);
                out.push_str(c);
            } else {
                out.push_str(c);
                if !last {
                    out.push_str(&pad);
                }
            }
            if !last {
                out.push_str("  ");
            }
        }
        outln!("{out}");
    };
    line(header.to_vec());
    for r in rows {
        line(r.iter().map(String::as_str).collect());
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logs(cli.log_format);
    match dispatch(cli.command).await {
        Ok(code) => code,
        Err(e) => {
            errln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// One function per command; `anyhow` only here, at the binary's edge.
async fn dispatch(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Run { config, until_caught_up, cluster_group, instance_id } => {
            run_command(&config, until_caught_up, cluster_group, instance_id).await
        }
        Command::Simulate { config } => simulate_command(&config).await,
        Command::Write { config, until_idle } => write_command(&config, until_idle).await,
        Command::Validate { config, offline } => validate_command(&config, offline).await,
        Command::Endpoints { command: EndpointsCommand::List { config } } => endpoints_list_command(config.as_deref()),
        Command::Bench(opts) => bench_command(opts).await,
        Command::Discover { config, opts } => discover_command(&config, opts).await,
        Command::Inspect { config, samples, compact } => inspect_command(&config, samples, compact).await,
        Command::Streams { command } => streams_command(command).await,
        Command::Watermarks { command } => watermarks_command(command).await,
        Command::Backfill { ops, stream, from, to, quota_share, dry_run } => {
            backfill_command(ops, &stream, &from, &to, quota_share, dry_run).await
        }
        Command::Reconcile { ops, writer: Some(writer), from, to, .. } => {
            writer_reconcile_command(ops, writer, &from, &to).await
        }
        Command::Reconcile { ops, streams, writer: None, from, to, quota_share, repair } => {
            reconcile_command(ops, streams, &from, &to, quota_share, repair).await
        }
    }
}

/// What `reconcile` found, and what `--repair` backfilled.
#[derive(serde::Serialize)]
struct Reconciled {
    streams: Vec<tidemark::reconcile::StreamReconciled>,
    repaired: Vec<tidemark::ops::BackfillReport>,
}

/// `reconcile`: exit 1 when a window differs, 0 when every one matches.
async fn reconcile_command(
    ops: OpsOptions,
    streams: Vec<String>,
    from: &str,
    to: &str,
    quota_share: f64,
    repair: bool,
) -> anyhow::Result<ExitCode> {
    let now = chrono::Utc::now();
    let (from, to) = (tidemark::ops::parse_time(from, now)?, tidemark::ops::parse_time(to, now)?);
    let config = ops.load()?;
    let opts = tidemark::reconcile::ReconcileOptions { streams, from, to, quota_share };
    let shutdown = shutdown_on_signals();
    let found = tidemark::reconcile::reconcile(&config, &opts, shutdown.clone()).await?;
    tidemark::reconcile::publish(&config.kafka, &found, &opts).await?;
    let mut repaired = Vec::new();
    if repair {
        for s in &found {
            for d in s.differences.iter().filter(|d| d.what == tidemark::reconcile::VENDOR_CHANGED) {
                let Some((start, end)) = tidemark::domain::ledger::parse_window(&d.window) else { continue };
                let r = tidemark::ops::backfill(&config, &s.stream, start, end, quota_share, false, shutdown.clone())
                    .await
                    .with_context(|| format!("repair {} window {}", s.stream, d.window))?;
                repaired.push(r);
            }
        }
    }
    let clean = found.iter().all(tidemark::reconcile::StreamReconciled::clean);
    let report = Reconciled { streams: found, repaired };
    emit(ops.output, &report, || {
        outln!(
            "{:<40} {:>8} {:>8} {:>14} {:>15} {:>10}",
            "STREAM",
            "WINDOWS",
            "MATCHING",
            "VENDOR CHANGED",
            "MISSING (KAFKA)",
            "UNCHECKED"
        );
        for s in &report.streams {
            outln!(
                "{:<40} {:>8} {:>8} {:>14} {:>15} {:>10}",
                s.stream,
                s.windows_checked,
                s.matching,
                s.vendor_changed,
                s.missing_from_kafka,
                s.unchecked
            );
        }
        for s in &report.streams {
            for d in &s.differences {
                outln!("  {} {}: {} ({})", s.stream, d.window, d.what, d.detail);
            }
        }
        for r in &report.repaired {
            outln!(
                "  repaired {} {} .. {}: {} records emitted, {} unchanged",
                r.stream,
                r.from,
                r.to,
                r.records,
                r.unchanged
            );
        }
        if clean {
            outln!("every window matches");
        }
    })?;
    Ok(if clean { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

/// `reconcile --writer`: exit 1 when a record is missing from the target or differs there.
async fn writer_reconcile_command(ops: OpsOptions, writer: String, from: &str, to: &str) -> anyhow::Result<ExitCode> {
    let now = chrono::Utc::now();
    let (from, to) = (tidemark::ops::parse_time(from, now)?, tidemark::ops::parse_time(to, now)?);
    let config = ops.load()?;
    let opts = tidemark::writer::reconcile::WriterReconcileOptions { writer, from, to };
    let r = tidemark::writer::reconcile::reconcile(&config, &opts, shutdown_on_signals()).await?;
    tidemark::writer::reconcile::publish(&config.kafka, &r, &opts).await?;
    emit(ops.output, &r, || {
        outln!(
            "{:<20} {:>8} {:>8} {:>13} {:>8} {:>10} {:>10}",
            "WRITER",
            "RECORDS",
            "MATCHING",
            "DEAD-LETTERED",
            "MISSING",
            "DIFFERENT",
            "UNREADABLE"
        );
        outln!(
            "{:<20} {:>8} {:>8} {:>13} {:>8} {:>10} {:>10}",
            r.writer,
            r.records_checked,
            r.matching,
            r.dead_lettered,
            r.missing,
            r.different,
            r.unreadable
        );
        for d in &r.differences {
            outln!("  {}: {} ({})", d.key, d.what, d.detail);
        }
        for l in &r.dead_letters {
            let field = if l.field.is_empty() { String::new() } else { format!(" {}", l.field) };
            outln!("  {}: dead-lettered{field}: {}", l.key, l.reason);
        }
        if r.clean() {
            outln!("every record is in the target or dead-lettered");
        }
    })?;
    Ok(if r.clean() { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

/// `discover`: infers an endpoint from a window of a vendor method; what it inferred and why
/// on stdout.
async fn discover_command(config: &Path, opts: tidemark::discover::DiscoverOptions) -> anyhow::Result<ExitCode> {
    let cfg = Config::load(config)?;
    if let Some(kind) = &opts.against {
        let compared = tidemark::discover::against(&cfg, &opts, kind, chrono::Utc::now())
            .await
            .with_context(|| format!("discover --against {kind} with source {:?}", opts.source))?;
        for line in &compared.summary {
            outln!("{line}");
        }
        return Ok(if compared.differs { ExitCode::from(1) } else { ExitCode::SUCCESS });
    }
    let method = opts.method.clone().unwrap_or_default();
    let found = tidemark::discover::discover(&cfg, &opts, chrono::Utc::now())
        .await
        .with_context(|| format!("discover {method} with source {:?}", opts.source))?;
    for line in &found.summary {
        outln!("{line}");
    }
    outln!("add `kind = {:?}` to a source and `endpoints_dir` naming {} to run it", found.kind, opts.out.display());
    Ok(ExitCode::SUCCESS)
}

/// `simulate`: serves the vendor simulators until the process ends.
async fn simulate_command(config: &Path) -> anyhow::Result<ExitCode> {
    let cfg = tidemark::simulate::SimConfig::load(config)?;
    tidemark::simulate::serve(cfg).await?;
    Ok(ExitCode::SUCCESS)
}

/// `backfill`: re-reads `[from, to)` of a stream beside its live run; exit 3 if interrupted.
async fn backfill_command(
    ops: OpsOptions,
    stream: &str,
    from: &str,
    to: &str,
    quota_share: f64,
    dry_run: bool,
) -> anyhow::Result<ExitCode> {
    let now = chrono::Utc::now();
    let (from, to) = (tidemark::ops::parse_time(from, now)?, tidemark::ops::parse_time(to, now)?);
    let config = ops.load()?;
    let r = tidemark::ops::backfill(&config, stream, from, to, quota_share, dry_run, shutdown_on_signals()).await?;
    let code = if r.done || !r.written { ExitCode::SUCCESS } else { ExitCode::from(3) };
    emit(ops.output, &r, || {
        let what = if !r.written {
            "would re-read (dry run)"
        } else if r.done {
            "re-read"
        } else {
            "interrupted; run it again to resume"
        };
        outln!(
            "backfill {} {} .. {}: {what}; began at {}, {} records emitted, {} unchanged, {} windows",
            r.stream,
            r.from,
            r.to,
            r.resumed_at,
            r.records,
            r.unchanged,
            r.windows
        );
    })?;
    Ok(code)
}

/// `run`: exit 1 if a stream stopped on an error, 3 if `--until-caught-up` was interrupted.
/// A `[cluster]` group (or `--cluster-group`) makes this process one replica of it.
async fn run_command(
    config: &Path,
    until_caught_up: bool,
    cluster_group: Option<String>,
    instance_id: Option<String>,
) -> anyhow::Result<ExitCode> {
    let mut cfg = Config::load(config)?;
    let group = cluster_group.or_else(|| cfg.cluster.as_ref().map(|c| c.group.clone()));
    match (group, &instance_id) {
        (Some(group), _) => cfg.join_cluster(&group, instance_id.as_deref())?,
        (None, Some(_)) => {
            anyhow::bail!("--instance-id (TIDEMARK_INSTANCE_ID) needs a group: --cluster-group or [cluster]")
        }
        (None, None) => {}
    }
    let streams = cfg.streams.len();
    let (metrics, shutdown) = (Metrics::new(), shutdown_on_signals());
    let reports = if cfg.cluster.is_some() {
        tidemark::cluster::run(cfg, until_caught_up, metrics, shutdown).await?
    } else {
        run(cfg, RunOptions { until_caught_up }, metrics, shutdown).await?
    };
    print_summary(&reports);
    let failed =
        reports.iter().any(|r| matches!(r.outcome, StreamOutcome::Stopped(_) | StreamOutcome::ProducerFailed(_)));
    // A scheduler running --until-caught-up must not read a shutdown as success.
    // Streams an operator stopped are not waited for.
    let caught_up =
        reports.iter().filter(|r| matches!(r.outcome, StreamOutcome::CaughtUp | StreamOutcome::Paused)).count();
    if failed {
        Ok(ExitCode::from(1))
    } else if until_caught_up && caught_up < streams {
        errln!("error: interrupted before every stream caught up ({caught_up} of {streams} did)");
        Ok(ExitCode::from(3))
    } else {
        Ok(ExitCode::SUCCESS)
    }
}

/// `streams list|stop|resume`.
async fn streams_command(command: StreamsCommand) -> anyhow::Result<ExitCode> {
    match command {
        StreamsCommand::List { ops } => {
            let rows = tidemark::ops::list(&ops.load()?).await?;
            let table: Vec<Vec<String>> = rows
                .iter()
                .map(|r| {
                    let o = |v: &Option<String>| v.clone().unwrap_or_else(|| "—".into());
                    vec![
                        r.stream.clone(),
                        o(&r.watermark),
                        r.lag_seconds.map_or("—".into(), |s| format!("{s}s")),
                        r.state.clone(),
                        o(&r.owner),
                        o(&r.last_commit),
                        {
                            let note = match (&r.last_error, r.configured) {
                                (Some(e), _) => e.clone(),
                                (None, false) if r.stream.starts_with("backfill:") => "a backfill's progress".into(),
                                (None, false) => "not in the config".into(),
                                (None, true) => String::new(),
                            };
                            let drift = (!r.schema_drift.is_empty())
                                .then(|| format!("fields not in schema: {}", r.schema_drift.join(", ")));
                            // Late data is judged against the lookback that should have caught it.
                            let reconciled = r.last_reconcile.as_ref().map(|rec| {
                                format!("reconciled {rec} (lookback {})", r.lookback.as_deref().unwrap_or("—"))
                            });
                            [Some(note).filter(|n| !n.is_empty()), drift, reconciled]
                                .into_iter()
                                .flatten()
                                .collect::<Vec<_>>()
                                .join("; ")
                        },
                    ]
                })
                .collect();
            let header = ["stream", "watermark (Beijing)", "lag", "state", "owner", "last commit", "last error / note"];
            emit(ops.output, &rows, || print_table(&header, &table, &[2]))
        }
        StreamsCommand::Stop { ops, streams, reason, dry_run } => {
            let changes = tidemark::ops::set_stopped(&ops.load()?, &streams, true, reason, dry_run).await?;
            emit(ops.output, &changes, || {
                for c in &changes {
                    let verb = if c.written { "stopped" } else { "would stop (dry run)" };
                    outln!("{}: {verb} by {} at {}", c.stream, c.by, c.at);
                }
            })
        }
        StreamsCommand::Resume { ops, streams, dry_run } => {
            let changes = tidemark::ops::set_stopped(&ops.load()?, &streams, false, None, dry_run).await?;
            emit(ops.output, &changes, || {
                for c in &changes {
                    let verb = if c.written { "resumed" } else { "would resume (dry run)" };
                    outln!("{}: {verb} by {} at {}", c.stream, c.by, c.at);
                }
            })
        }
    }
}

/// `watermarks set|reset`.
async fn watermarks_command(command: WatermarksCommand) -> anyhow::Result<ExitCode> {
    let (ops, stream, to, force, dry_run) = match command {
        WatermarksCommand::Set { ops, stream, to, force, dry_run } => {
            let at = tidemark::ops::parse_time(&to, chrono::Utc::now())?;
            (ops, stream, Some(at), force, dry_run)
        }
        WatermarksCommand::Reset { ops, stream, force, dry_run } => (ops, stream, None, force, dry_run),
    };
    let change = tidemark::ops::set_watermark(&ops.load()?, &stream, to, force, dry_run).await?;
    emit(ops.output, &change, || {
        let to = change.to.clone().unwrap_or_else(|| "its configured start (reset)".into());
        let from = change.from.clone().unwrap_or_else(|| "none".into());
        let verb = if change.written { "set" } else { "would be set (dry run)" };
        let forced = if change.forced { "; its running owner was fenced" } else { "" };
        outln!("{}: watermark {verb} from {from} to {to} by {}{forced}", change.stream, change.by);
    })
}

/// `--quota-share`: a fraction above 0, at most 1.
fn share(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(v) if v > 0.0 && v <= 1.0 => Ok(v),
        _ => Err(format!("must be a fraction above 0 and at most 1, got {text:?}")),
    }
}

/// Prints `value` as JSON, or runs `text`.
fn emit<T: serde::Serialize>(output: Output, value: &T, text: impl FnOnce()) -> anyhow::Result<ExitCode> {
    match output {
        Output::Json => outln!("{}", serde_json::to_string_pretty(value)?),
        Output::Text => text(),
    }
    Ok(ExitCode::SUCCESS)
}

/// `write`: every configured writer until shutdown (or idle), then a summary per writer.
async fn write_command(config: &std::path::Path, until_idle: bool) -> anyhow::Result<ExitCode> {
    let cfg = Config::load(config)?;
    if cfg.writers.is_empty() {
        anyhow::bail!("{}: no [writers.<id>] configured", config.display());
    }
    let metrics = Metrics::new();
    if let Some(listen) = &cfg.metrics_listen {
        let addr = metrics.serve(listen).await?;
        tracing::info!(%addr, "serving /metrics, /healthz, /readyz");
    }
    // Each writer's last reconcile (`reconcile --writer`) as metrics, kept current.
    let writers: Vec<String> = cfg.writers.keys().cloned().collect();
    let _control = tidemark::kafka::control::Board::watch(&cfg.kafka, &[], &writers, metrics.clone()).await?;
    let shutdown = shutdown_on_signals();
    let runs =
        cfg.writers.values().map(|w| tidemark::writer::run(&cfg, w, until_idle, shutdown.clone(), metrics.clone()));
    let mut failed = false;
    for (w, result) in cfg.writers.keys().zip(futures_util::future::join_all(runs).await) {
        match result {
            Ok(r) => {
                let counts: Vec<String> = r.records.iter().map(|(k, n)| format!("{k} {n}")).collect();
                outln!(
                    "writer {w}: topic {} in {} batches: {}",
                    r.topic,
                    r.batches,
                    if counts.is_empty() { "nothing".into() } else { counts.join(", ") }
                );
            }
            Err(e) => {
                failed = true;
                outln!("writer {w}: stopped: {e}");
            }
        }
    }
    Ok(if failed { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

/// `validate`: the config, each vendor's limits, and (unless offline) the registry's verdict.
async fn validate_command(config: &std::path::Path, offline: bool) -> anyhow::Result<ExitCode> {
    let cfg = Config::load(config)?;
    let plans = tidemark::pipeline::plan(&cfg)?;
    if let (Some(rc), false) = (&cfg.schema_registry, offline) {
        use tidemark::registry::{self, Compatibility, Registry};
        let reg = Registry::new(rc)?;
        for (topic, avsc) in tidemark::pipeline::topic_schemas(&plans)? {
            let subject = registry::value_subject(&topic);
            let verdict = match registry::check(&reg, &subject, &avsc).await? {
                Compatibility::NewSubject => "new subject",
                Compatibility::Compatible => "compatible with its latest version",
                Compatibility::Incompatible(_) => unreachable!("check fails on incompatible schemas"),
            };
            outln!("ok  schema for {subject}: {verdict} ({})", rc.url);
        }
    }
    for p in &plans {
        outln!(
            "ok  {:<36} source={} topic={} page_size={} max_span={:?} lookback={:?} settle={:?}",
            p.cfg.id.as_str(),
            p.source_id,
            p.topic,
            p.page_size,
            p.max_span,
            p.cfg.lookback,
            p.cfg.settle
        );
    }
    for e in cfg.endpoints.user() {
        outln!("ok  endpoint {:<28} protocol={} method={} ({})", e.spec.kind, e.protocol.name, e.spec.method, e.origin);
    }
    outln!("{} stream(s) valid", plans.len());
    Ok(ExitCode::SUCCESS)
}

/// `endpoints list`: the built-in endpoints, and with a config its `endpoints_dir`'s.
fn endpoints_list_command(config: Option<&Path>) -> anyhow::Result<ExitCode> {
    let endpoints = match config {
        Some(path) => Config::load(path)?.endpoints,
        None => tidemark::config::Endpoints::builtin(),
    };
    let rows: Vec<Vec<String>> = endpoints
        .iter()
        .map(|e| {
            let s = &e.spec;
            let (mode, span) = match s.mode {
                tidemark::sources::Mode::Windowed => ("windowed", tidemark::config::format_duration(s.max_span)),
                tidemark::sources::Mode::Snapshot => ("snapshot", "—".to_owned()),
            };
            vec![
                s.kind.to_owned(),
                e.protocol.name.to_owned(),
                s.method.to_owned(),
                mode.to_owned(),
                span,
                e.origin.to_string(),
                e.description.clone().unwrap_or_default(),
            ]
        })
        .collect();
    print_table(&["kind", "protocol", "method", "mode", "max span", "from", "description"], &rows, &[]);
    Ok(ExitCode::SUCCESS)
}

/// `bench`: the shapes' throughput against their ceilings, then idle scale.
async fn bench_command(opts: tidemark::bench::BenchOptions) -> anyhow::Result<ExitCode> {
    use tidemark::bench;
    if opts.per_minute_limit > 0 {
        outln!(
            "tidemark bench: a vendor accepting {} requests a minute (unpublished), quota {} requests/s, vendor latency {:?}, {} minutes, on {}",
            opts.per_minute_limit,
            opts.requests_per_second,
            opts.latency,
            opts.limit_minutes,
            bench::machine()
        );
        let r = bench::limit::limit_bench(&opts).await?;
        let total = r.accepted + r.refused;
        outln!("accepted per minute: {:?}", r.accepted_per_minute);
        outln!(
            "steady (the last {} minutes): {:.0} requests a minute = {:.2} of the limit; {} refused ({:.2} %)",
            r.steady_minutes,
            r.steady_per_minute,
            r.steady_per_minute / r.limit_per_minute as f64,
            r.steady_refused,
            100.0 * r.steady_refused as f64
                / (r.steady_per_minute * r.steady_minutes as f64 + r.steady_refused as f64).max(1.0)
        );
        outln!(
            "whole run: {} accepted, {} refused ({:.2} % of {} requests)",
            r.accepted,
            r.refused,
            100.0 * r.refused as f64 / (total as f64).max(1.0),
            total
        );
        return Ok(ExitCode::SUCCESS);
    }
    outln!(
        "tidemark bench: {} records per shape, {} streams each, vendor latency {:?}, quota {} requests/s, max_in_flight {}, on {}",
        opts.records,
        opts.streams,
        opts.latency,
        opts.requests_per_second,
        opts.max_in_flight,
        bench::machine()
    );
    let mut rows = Vec::new();
    let mut results = Vec::new();
    for kind in opts.shapes.iter().filter(|k| !k.is_empty()) {
        let r = bench::shape_bench(&opts, kind).await?;
        errln!("{r:?}");
        results.push(r.clone());
        let ceiling = r.fetch_only_rps.min(r.produce_only_rps);
        rows.push(vec![
            r.kind.clone(),
            r.records.to_string(),
            format!("{:.0}", r.fetch_only_rps),
            format!("{:.0}", r.produce_only_rps),
            format!("{:.0}", r.end_to_end_rps),
            format!("{:.2}", r.end_to_end_rps / ceiling),
            format!("{:.0}", r.quota_ceiling_rps),
            r.latency_ceiling_rps.map_or("-".into(), |c| format!("{c:.0}")),
            format!("{:.2}", r.end_to_end_rps / r.vendor_ceiling_rps()),
            format!("{:.1}", r.cpu_seconds_per_million),
            format!("{:.0}", r.peak_rss_mib),
            format!("{:.0}", r.e2e_machine_busy * 100.0),
        ]);
    }
    print_table(
        &[
            "shape",
            "records",
            "fetch-only rec/s",
            "produce-only rec/s",
            "end-to-end rec/s",
            "e2e / min(ceilings)",
            "quota ceiling rec/s",
            "latency ceiling rec/s",
            "e2e / vendor ceiling (less bans)",
            "worker CPU s / M rec",
            "worker peak RSS MiB",
            "machine CPU busy in e2e %",
        ],
        &rows,
        &[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11],
    );
    if opts.throttle_rate > 0.0 {
        for r in &results {
            let b = r.bans;
            outln!(
                "{}: {} bans of {:?} took {:.0} % of the run; {} requests arrived during a ban (already on their way), {} were sent after a ban was answered",
                r.kind,
                b.bans,
                opts.ban,
                b.banned_fraction * 100.0,
                b.during_ban,
                b.after_ban_answer
            );
        }
    }
    if opts.idle_streams > 0 {
        let idle = bench::idle_bench(&opts).await?;
        outln!(
            "idle: {} of {} streams caught up {:.0} s after start; polling every 30 s with nothing new, measured {:.0} s: RSS {:.0} MiB, CPU {:.2} s per minute ({:.3} ms per poll), watermark topic +{:.1} records/s",
            idle.streams,
            idle.configured,
            idle.seconds_to_caught_up,
            idle.seconds,
            idle.rss_mib,
            idle.cpu_seconds_per_minute,
            idle.cpu_ms_per_poll,
            idle.watermark_records_per_second
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `inspect`: what Kafka holds per stream, then decoded samples per topic.
async fn inspect_command(config: &std::path::Path, samples: usize, compact: bool) -> anyhow::Result<ExitCode> {
    let cfg = Config::load(config)?;
    let (streams, topics) = tidemark::inspect::inspect(&cfg, samples).await.context("inspecting kafka")?;
    let rows: Vec<Vec<String>> = streams
        .iter()
        .map(|s| {
            vec![
                s.stream.clone(),
                s.topic.clone(),
                s.records.to_string(),
                s.distinct_keys.to_string(),
                s.tombstones.to_string(),
                s.watermark.map(fmt_wm).unwrap_or_else(|| "none yet".into()),
            ]
        })
        .collect();
    print_table(&["stream", "topic", "records", "keys", "tombstones", "watermark (Beijing)"], &rows, &[2, 3, 4]);
    for t in topics {
        for sample in &t.samples {
            let framing = sample.framing.as_deref().map(|f| format!(", {f}")).unwrap_or_default();
            outln!("\nsample from {} ({}{framing}):", t.topic, t.schema);
            if compact {
                let line = sample.value.to_string();
                let cut: String = line.chars().take(400).collect();
                outln!("{cut}{}", if cut.len() < line.len() { " …" } else { "" });
            } else {
                outln!("{}", serde_json::to_string_pretty(&sample.value)?);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
