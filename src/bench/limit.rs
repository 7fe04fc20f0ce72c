//! The learned-rate bench: the worker against a simulated vendor whose per-minute limit it is
//! not told, as a real 旺店通 account's is unpublished; how close its steady rate comes to the
//! limit and how many requests the vendor refused on the way.

use std::process::Stdio;
use std::time::Duration;

use chrono::Utc;

use super::{BenchError, BenchOptions, err, pair, spawn_with_config, start_simulator, vendor_log, worker_toml};

/// The figures of one run.
#[derive(Debug, Clone)]
pub struct LimitResult {
    pub limit_per_minute: u64,
    /// Requests the vendor accepted in each whole minute of the run (its fixed windows).
    pub accepted_per_minute: Vec<u64>,
    pub accepted: u64,
    pub refused: u64,
    /// The mean of the last `steady_minutes` whole minutes.
    pub steady_per_minute: f64,
    pub steady_minutes: usize,
    /// Requests refused in those minutes.
    pub steady_refused: u64,
}

/// At least this many minutes at the end of the run count as its steady state (the last half
/// of the run, if longer: with the worker's probes every 5 minutes in it).
const STEADY_MINUTES: usize = 3;

/// Runs the worker for `opts.limit_minutes` against 旺店通 with `opts.per_minute_limit` and
/// reads what the simulator accepted and refused, minute by minute.
pub async fn limit_bench(opts: &BenchOptions) -> Result<LimitResult, BenchError> {
    let kind = "wdt.account_check";
    let limit = u64::from(opts.per_minute_limit);
    let dir = opts.work_dir.join("per-minute-limit");
    std::fs::create_dir_all(&dir).map_err(err)?;
    let section = pair(kind)?.simulator;
    // Many small windows (one request each), more than the run can read.
    let sim = start_simulator(
        &dir,
        &format!(
            "listen = \"127.0.0.1:0\"\n{section}\nseed = 7\nrecords = 20000\nfrom = \"20d\"\nuntil = \"2h\"\nshops = [\"g01\", \"g02\"]\n\n[faults]\nlatency = \"{}ms\"\nper_minute_limit = {limit}\nlimit_window = \"60s\"\n",
            opts.latency.as_millis(),
        ),
    )?;
    let run = format!("limit-{}", Utc::now().format("%H%M%S"));
    let small = BenchOptions { max_span: Duration::from_secs(300), ..opts.clone() };
    let groups = ["g01".to_owned(), "g02".to_owned()];
    let mut child = spawn_with_config(
        opts.worker_binary.as_deref(),
        &dir,
        "worker.toml",
        &worker_toml(&small, kind, &sim.base, &run, &groups, ""),
        &["run"],
        "warn",
        Stdio::null(),
        Stdio::null(),
    )?;
    let minutes = opts.limit_minutes.max(STEADY_MINUTES as u64 + 1);
    for m in 1..=minutes {
        tokio::time::sleep(Duration::from_secs(60)).await;
        eprintln!("[per-minute-limit] minute {m} of {minutes}…");
    }
    // Into the next window, so the last counted one is whole.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let log = vendor_log(&sim.base, "wdt").await?;
    // SAFETY: kill only signals our own child.
    unsafe {
        libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
    }
    let _ = child.wait();
    let list = |field: &str| -> Vec<u64> {
        log[field].as_array().map(|a| a.iter().filter_map(|v| v.as_u64()).collect()).unwrap_or_default()
    };
    let mut accepted_per_minute = list("window_accepted");
    accepted_per_minute.truncate(minutes as usize); // the running window is not whole
    let refused_ms = list("per_minute_refused_ms");
    let steady_len = STEADY_MINUTES.max(accepted_per_minute.len() / 2);
    let steady = &accepted_per_minute[accepted_per_minute.len().saturating_sub(steady_len)..];
    let steady_from_ms = (accepted_per_minute.len() - steady.len()) as u64 * 60_000;
    let steady_to_ms = accepted_per_minute.len() as u64 * 60_000;
    Ok(LimitResult {
        limit_per_minute: limit,
        accepted: accepted_per_minute.iter().sum(),
        refused: refused_ms.iter().filter(|&&t| t < steady_to_ms).count() as u64,
        steady_per_minute: steady.iter().sum::<u64>() as f64 / steady.len().max(1) as f64,
        steady_minutes: steady.len(),
        steady_refused: refused_ms.iter().filter(|&&t| (steady_from_ms..steady_to_ms).contains(&t)).count() as u64,
        accepted_per_minute,
    })
}
