//! Runs the worker: prepares Kafka, resumes every stream from the watermark topic, and
//! supervises the stream loops until they are caught up or shut down.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::{error, info};

use crate::config::{Config, ConfigError};
use crate::engine::{StreamOutcome, StreamReport, StreamWorker, WatermarkState};
use crate::kafka::topics::{self, DataTopic, TopicError};
use crate::kafka::watermarks::{self, LoadError};
use crate::kafka::{CommitError, TxnSink};
use crate::metrics::Metrics;
use crate::pipeline;

/// Why the worker could not start.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Topics(#[from] TopicError),
    #[error("kafka producer: {0}")]
    Producer(#[from] CommitError),
    #[error(transparent)]
    Watermarks(#[from] LoadError),
    #[error("cannot serve metrics on {addr}: {source}")]
    Metrics { addr: String, source: std::io::Error },
}

pub struct RunOptions {
    /// Exit once every stream's watermark has reached now minus its settle lag.
    pub until_caught_up: bool,
}

/// Runs every configured stream; returns one report per stream when all loops have ended.
pub async fn run(
    config: Config,
    opts: RunOptions,
    metrics: Arc<Metrics>,
    mut external_shutdown: watch::Receiver<bool>,
) -> Result<Vec<StreamReport>, RunError> {
    let plans = pipeline::plan(&config)?;
    if let Some(addr) = &config.metrics_listen {
        let bound = metrics.serve(addr).await.map_err(|source| RunError::Metrics { addr: addr.clone(), source })?;
        info!(addr = %bound, "serving /metrics, /healthz, /readyz");
    }
    let mut topics: Vec<DataTopic> =
        plans.iter().map(|p| DataTopic { name: p.topic.clone(), compacted: p.compacted }).collect();
    topics.push(DataTopic { name: config.kafka.dead_letter_topic.clone(), compacted: false });
    topics.sort();
    topics.dedup();
    topics::ensure(&config.kafka, &topics).await?;
    // Initializing transactions first fences an older instance and aborts its open
    // transaction, so the watermark topic can then be read to its committed end.
    let sink = Arc::new(TxnSink::connect(&config.kafka).await?);
    let mut stored = watermarks::load(&config.kafka, Duration::from_secs(60)).await?;
    metrics.set_ready(true);
    info!(streams = plans.len(), resumed = stored.len(), "kafka ready; watermarks loaded");

    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let forward = shutdown_tx.clone();
    tokio::spawn(async move {
        while external_shutdown.changed().await.is_ok() {
            if *external_shutdown.borrow() {
                let _ = forward.send(true);
                break;
            }
        }
    });

    let now = Utc::now();
    let watermark_topic: Arc<str> = Arc::from(config.kafka.watermark_topic.as_str());
    let mut tasks = JoinSet::new();
    for p in plans {
        let state = match stored.remove(p.cfg.id.as_str()) {
            Some(s) => s,
            None => {
                let start = crate::time::truncate_to_second(p.cfg.start.resolve(now));
                WatermarkState::new(p.cfg.id.clone(), start)
            }
        };
        let worker = StreamWorker {
            id: p.cfg.id.clone(),
            source_id: p.source_id,
            source: p.source,
            gate: p.gate,
            codec: p.codec,
            sink: sink.clone(),
            metrics: metrics.clone(),
            topic: Arc::from(p.topic.as_str()),
            watermark_topic: watermark_topic.clone(),
            dead_letter_topic: Arc::from(config.kafka.dead_letter_topic.as_str()),
            params: p.cfg.params.clone(),
            lookback: p.cfg.lookback,
            settle: p.cfg.settle,
            poll_interval: p.cfg.poll_interval,
            max_span: p.max_span,
            page_size: p.page_size,
            state,
        };
        tasks.spawn(worker.run(opts.until_caught_up, shutdown_rx.clone()));
    }
    let mut reports = Vec::new();
    while let Some(res) = tasks.join_next().await {
        match res {
            Ok(report) => {
                if let StreamOutcome::ProducerFailed(why) = &report.outcome {
                    // Every stream shares the producer: stop them all; a restart resumes
                    // each from its committed watermark.
                    error!(error = %why, "shared producer failed; stopping every stream");
                    let _ = shutdown_tx.send(true);
                }
                reports.push(report);
            }
            Err(e) => error!(error = %e, "stream task panicked"),
        }
    }
    metrics.set_ready(false);
    reports.sort_by(|a, b| a.stream.cmp(&b.stream));
    Ok(reports)
}
