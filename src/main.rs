//! The `tidemark` command line: run the worker, serve simulators, validate and inspect.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use tokio::sync::watch;
use tracing_subscriber::EnvFilter;

use tidemark::config::Config;
use tidemark::engine::StreamOutcome;
use tidemark::engine::stream::fmt_wm;
use tidemark::metrics::Metrics;
use tidemark::run::{RunOptions, run};

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
        /// Exit 0 once every stream's watermark has reached now minus its settle lag.
        #[arg(long)]
        until_caught_up: bool,
    },
    /// Serve local simulators of the vendor APIs (for tests, demos and benchmarks).
    Simulate {
        /// Simulator config file (TOML).
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Check a worker config and its environment variables without connecting to anything.
    Validate {
        #[arg(long, short, env = "TIDEMARK_CONFIG")]
        config: PathBuf,
    },
    /// Show what Kafka holds per stream: committed records, watermark, decoded samples.
    Inspect {
        #[arg(long, short, env = "TIDEMARK_CONFIG")]
        config: PathBuf,
        /// Decoded sample records to show per stream.
        #[arg(long, default_value_t = 1)]
        samples: usize,
    },
}

fn init_logs(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}

/// Turns SIGINT/SIGTERM into a shutdown request; a second signal exits at once.
fn shutdown_on_signals() -> watch::Receiver<bool> {
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("sigterm handler");
        for n in 0.. {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            if n > 0 {
                tracing::warn!("second signal: exiting now");
                std::process::exit(130);
            }
            tracing::info!("shutdown requested; finishing the current window");
            let _ = tx.send(true);
        }
    });
    rx
}

/// The end-of-run table: one line per stream, columns sized to their contents.
fn print_summary(reports: &[tidemark::engine::StreamReport]) {
    let header = ["stream", "records", "unchanged", "deleted", "windows", "watermark (Beijing)", "topic", "outcome"];
    let rows: Vec<[String; 8]> = reports
        .iter()
        .map(|r| {
            let outcome = match &r.outcome {
                StreamOutcome::CaughtUp => "caught up".to_owned(),
                StreamOutcome::ShutDown => "shut down".to_owned(),
                StreamOutcome::Stopped(why) | StreamOutcome::ProducerFailed(why) => format!("STOPPED: {why}"),
            };
            [
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
    let widths: Vec<usize> =
        (0..8).map(|i| rows.iter().map(|r| r[i].chars().count()).chain([header[i].len()]).max().unwrap_or(0)).collect();
    let print_row = |cells: Vec<&str>| {
        let mut out = String::new();
        for (i, c) in cells.iter().enumerate() {
            let pad = widths[i].saturating_sub(c.chars().count());
            // Counts are right-aligned, text left-aligned.
            if (1..=4).contains(&i) {
                out.push_str(&" ".repeat(pad));
                out.push_str(c);
            } else {
                out.push_str(c);
                if i < 7 {
                    out.push_str(&" ".repeat(pad));
                }
            }
            if i < 7 {
                out.push_str("  ");
            }
        }
        println!("{out}");
    };
    print_row(header.to_vec());
    for r in &rows {
        print_row(r.iter().map(String::as_str).collect());
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logs(cli.log_format);
    match dispatch(cli.command).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

async fn dispatch(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Run { config, until_caught_up } => {
            let cfg = Config::load(&config)?;
            let reports = run(cfg, RunOptions { until_caught_up }, Metrics::new(), shutdown_on_signals()).await?;
            print_summary(&reports);
            let failed = reports
                .iter()
                .any(|r| matches!(r.outcome, StreamOutcome::Stopped(_) | StreamOutcome::ProducerFailed(_)));
            Ok(if failed { ExitCode::from(1) } else { ExitCode::SUCCESS })
        }
        Command::Simulate { config } => {
            let cfg = tidemark::simulate::SimConfig::load(&config)?;
            tidemark::simulate::serve(&cfg).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Validate { config } => {
            let cfg = Config::load(&config)?;
            let plans = tidemark::pipeline::plan(&cfg)?;
            for p in &plans {
                println!(
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
            println!("{} stream(s) valid", plans.len());
            Ok(ExitCode::SUCCESS)
        }
        Command::Inspect { config, samples } => {
            let cfg = Config::load(&config)?;
            let summaries = tidemark::inspect::inspect(&cfg, samples).await.context("inspecting kafka")?;
            for s in summaries {
                println!("stream     {}", s.stream);
                println!("  topic      {} (schema {})", s.topic, s.schema);
                println!("  records    {} committed, {} distinct keys", s.records, s.distinct_keys);
                println!("  watermark  {}", s.watermark.map(fmt_wm).unwrap_or_else(|| "none yet".into()));
                for sample in &s.samples {
                    println!("  sample     {}", serde_json::to_string_pretty(sample)?.replace('\n', "\n             "));
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
