//! Runs the worker: prepares Kafka, resumes every stream from the watermark topic, and
//! supervises the stream loops until they are caught up or shut down, rebuilding the
//! producer and resuming from Kafka if it fails.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::{error, info, warn};

use crate::config::{Config, ConfigError};
use crate::domain::FailureLog;
use crate::domain::WatermarkState;
use crate::kafka::control::{Board, ControlLog};
use crate::kafka::hanging;
use crate::kafka::reach::BrokerCause;
use crate::kafka::sink::retire;
use crate::kafka::topics::{self, DataTopic, TopicError};
use crate::kafka::watermarks::{self, LoadError};
use crate::kafka::{CommitError, TxnSink};
use crate::metrics::Metrics;
use crate::pipeline::{self, StreamPlan};
use crate::worker::stream::sleep_or_shutdown;
use crate::worker::{StreamOutcome, StreamReport, StreamWorker};

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
    #[error("cannot check the topics for hanging transactions: {0}")]
    Hanging(rdkafka::error::KafkaError),
    #[error(transparent)]
    Registry(#[from] crate::registry::RegistryError),
    #[error(transparent)]
    Schemas(#[from] pipeline::SchemaSetupError),
    #[error("kafka at {bootstrap} is still not reachable after {waited:?} (kafka.startup_timeout): {cause}")]
    KafkaUnreachable { bootstrap: String, waited: Duration, cause: BrokerCause },
    #[error(
        "kafka at {bootstrap} rejected the connection: {cause}; check the TLS and SASL settings in [kafka.properties]"
    )]
    KafkaRejected { bootstrap: String, cause: BrokerCause },
    #[error("cannot serve metrics on {addr}: {source}")]
    Metrics { addr: String, source: std::io::Error },
    #[error("cluster: {0}")]
    Cluster(String),
    #[error(transparent)]
    Control(#[from] crate::kafka::control::ControlError),
}

#[derive(Debug, Clone, Copy)]
pub struct RunOptions {
    /// Exit once every stream's watermark has reached now minus its settle lag.
    pub until_caught_up: bool,
}

/// How long a fenced worker waits before it takes its transactional id back.
const FENCED_PAUSE: Duration = Duration::from_secs(3);

/// What a started worker has, single or replica: its streams planned with their schemas
/// registered, metrics served, topics created, and the operators' stop flags followed.
pub struct Started {
    pub plans: Vec<StreamPlan>,
    pub topics: Vec<DataTopic>,
    pub control: Board,
}

/// Prepares a worker to run its streams; `None` if shutdown came first.
pub async fn start(
    config: &Config,
    metrics: &Arc<Metrics>,
    shutdown: &watch::Receiver<bool>,
) -> Result<Option<Started>, RunError> {
    let mut plans = pipeline::plan(config)?;
    // Schemas are registered before anything is produced, and their ids kept for the run:
    // a registry outage later cannot lose or double a record.
    pipeline::register_schemas(config, &mut plans).await?;
    // Each topic the hanging-transaction check covers is at 0 before the first scrape, so a
    // settle at this start shows as an increase (replicas check them too, per stream).
    let checked = plans.iter().map(|p| p.topic.as_str());
    for topic in checked.chain([config.kafka.dead_letter_topic.as_str(), config.kafka.watermark_topic.as_str()]) {
        metrics.producer.watch_hanging(topic);
    }
    if let Some(addr) = &config.metrics_listen {
        let bound = metrics.serve(addr).await.map_err(|source| RunError::Metrics { addr: addr.clone(), source })?;
        info!(addr = %bound, "serving /metrics, /healthz, /readyz");
    }
    let Some(topics) = bootstrap_topics(config, &plans, shutdown).await? else { return Ok(None) };
    let ids: Vec<String> = plans.iter().map(|p| p.cfg.id.to_string()).collect();
    let control = Board::watch(&config.kafka, &ids).await?;
    Ok(Some(Started { plans, topics, control }))
}

/// Runs every configured stream in this process (a `[cluster]` replica runs in
/// `cluster::run`); returns one report per stream when all loops have ended.
pub async fn run(
    config: Config,
    opts: RunOptions,
    metrics: Arc<Metrics>,
    shutdown: watch::Receiver<bool>,
) -> Result<Vec<StreamReport>, RunError> {
    let Some(Started { plans, topics, control }) = start(&config, &metrics, &shutdown).await? else {
        return Ok(Vec::new());
    };
    let first_start = Utc::now();
    let mut plans: Vec<Option<Arc<StreamPlan>>> = plans.into_iter().map(|p| Some(Arc::new(p))).collect();
    let mut reports = Vec::new();
    // Each pass runs the streams on one producer. If it fails, the outcome of its last
    // transaction is unknown: the next pass makes a new producer (which fences the old one
    // and aborts what it left open), rereads every watermark, and resumes from there.
    let mut written: Vec<String> = topics.iter().map(|t| t.name.clone()).collect();
    written.push(config.kafka.watermark_topic.clone());
    for pass in 1.. {
        let Some(sink) = connect(&config, &metrics, pass, &shutdown).await? else { break };
        tracing::debug!(pass, "producer initialized");
        let stored = match resume(&config, &sink, &metrics, &written).await {
            Ok(stored) => stored,
            Err(e) if pass == 1 => return Err(e),
            Err(e) => {
                // The broker went away again: start the pass over with a new producer.
                warn!(error = %e, "cannot resume from kafka; retrying with a new producer");
                metrics.producer.rebuilds.inc();
                retire(sink).await;
                sleep_or_shutdown(Duration::from_secs(1), &shutdown).await;
                continue;
            }
        };
        info!(pass, streams = plans.iter().flatten().count(), resumed = stored.len(), "kafka ready; watermarks loaded");
        let pass =
            Pass { config: &config, opts, metrics: &metrics, shutdown: &shutdown, first_start, control: &control };
        let seen = reports.len();
        let producer_failed = pass.run(sink, stored, &mut plans, &mut reports).await;
        if !producer_failed || *shutdown.borrow() || plans.iter().all(Option::is_none) {
            break;
        }
        // Fenced: someone else took the transactional id, most likely `tidemark watermarks
        // set`, which commits right after. Fencing it back at once could keep it from ever
        // committing: give it a moment.
        if reports[seen..].iter().any(|r| matches!(r.outcome, StreamOutcome::Fenced(_))) {
            sleep_or_shutdown(FENCED_PAUSE, &shutdown).await;
        }
    }
    Ok(merge_reports(reports))
}

/// Creates the topics the streams write, waiting for brokers that are not up yet (and not
/// ready meanwhile) up to kafka.startup_timeout; a rejected credential or certificate fails
/// at once. `None` if shutdown came first.
pub(crate) async fn bootstrap_topics(
    config: &Config,
    plans: &[StreamPlan],
    shutdown: &watch::Receiver<bool>,
) -> Result<Option<Vec<DataTopic>>, RunError> {
    let mut topics: Vec<DataTopic> =
        plans.iter().map(|p| DataTopic { name: p.topic.clone(), compacted: p.compacted }).collect();
    topics.push(DataTopic { name: config.kafka.dead_letter_topic.clone(), compacted: false });
    topics.sort();
    topics.dedup();
    let waiting_since = std::time::Instant::now();
    let mut attempt = 0;
    loop {
        match topics::ensure(&config.kafka, &topics).await {
            Ok(()) => {
                tracing::debug!("topics ready");
                return Ok(Some(topics));
            }
            Err(TopicError::Unreachable { bootstrap, cause }) => {
                if cause.kind.is_fatal() {
                    return Err(RunError::KafkaRejected { bootstrap, cause });
                }
                let waited = waiting_since.elapsed();
                if waited >= config.kafka.startup_timeout {
                    return Err(RunError::KafkaUnreachable { bootstrap, waited, cause });
                }
                attempt += 1;
                let wait = crate::domain::backoff::delay(attempt, Duration::from_secs(1), Duration::from_secs(10))
                    .min(config.kafka.startup_timeout - waited);
                warn!(bootstrap = %bootstrap, cause = %cause, retry_in = ?wait, "kafka not reachable yet; waiting");
                if !sleep_or_shutdown(wait, shutdown).await {
                    return Ok(None);
                }
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// One producer's life: every remaining stream runs on it until all end, or it fails.
struct Pass<'a> {
    config: &'a Config,
    opts: RunOptions,
    metrics: &'a Arc<Metrics>,
    shutdown: &'a watch::Receiver<bool>,
    /// When the worker first started: where streams without a watermark begin.
    first_start: chrono::DateTime<Utc>,
    /// The operators' stop flags.
    control: &'a Board,
}

impl Pass<'_> {
    /// Runs the streams still in `plans` from their `stored` states; a stream that ended for
    /// good leaves `plans` and adds its report. True if the producer failed (the streams it
    /// interrupted stay in `plans` for the next pass).
    async fn run(
        &self,
        sink: TxnSink,
        mut stored: BTreeMap<String, WatermarkState>,
        plans: &mut [Option<Arc<StreamPlan>>],
        reports: &mut Vec<StreamReport>,
    ) -> bool {
        let (config, metrics) = (self.config, self.metrics);
        metrics.set_ready(true);
        metrics.stream.watermark_record_limit.set(config.kafka.watermark_max_bytes as i64);
        let sink = Arc::new(sink);
        let idle_poller = {
            let sink = sink.clone();
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(Duration::from_secs(5)).await;
                    sink.poll_idle().await;
                }
            })
        };
        let (stop_tx, stop_rx) = watch::channel(*self.shutdown.borrow());
        let relay = {
            let (mut external, stop_tx) = (self.shutdown.clone(), stop_tx.clone());
            tokio::spawn(async move {
                while external.changed().await.is_ok() {
                    if *external.borrow() {
                        let _ = stop_tx.send(true);
                    }
                }
            })
        };
        let failures: Arc<dyn FailureLog> = Arc::new(ControlLog(config.kafka.clone()));
        let mut tasks = JoinSet::new();
        for (index, p) in plans.iter().enumerate() {
            let Some(p) = p else { continue };
            let state = stored.remove(p.cfg.id.as_str()).unwrap_or_else(|| {
                WatermarkState::new(
                    p.cfg.id.clone(),
                    crate::domain::time::truncate_to_second(p.cfg.start.resolve(self.first_start)),
                )
            });
            let worker = StreamWorker::new(
                config,
                p,
                sink.clone(),
                metrics.clone(),
                state,
                self.control.flag(p.cfg.id.as_str()),
                Some(failures.clone()),
            );
            let rx = stop_rx.clone();
            let until_caught_up = self.opts.until_caught_up;
            tasks.spawn(async move { (index, worker.run(until_caught_up, rx).await) });
        }
        let mut producer_failed = false;
        while let Some(res) = tasks.join_next().await {
            let (index, report) = match res {
                Ok(done) => done,
                Err(e) => {
                    error!(error = %e, "stream task panicked");
                    continue;
                }
            };
            // One producer for every stream: fenced (another process took the transactional
            // id) is a producer failure here, and the next pass fences it back.
            if let StreamOutcome::ProducerFailed(why) | StreamOutcome::Fenced(why) = &report.outcome {
                if !producer_failed {
                    error!(error = %why, "shared producer failed; restarting every stream from its committed watermark");
                    metrics.producer.rebuilds.inc();
                }
                producer_failed = true;
                let _ = stop_tx.send(true);
            }
            // A resumed stream starts again from Kafka on a new producer: so does this pass.
            if report.outcome == StreamOutcome::Resumed {
                if !producer_failed {
                    info!(stream = %report.stream, "a stream was resumed; restarting every stream from its committed watermark on a new producer");
                }
                producer_failed = true;
                let _ = stop_tx.send(true);
            }
            // Streams interrupted by the producer failure run again in the next pass.
            let again = producer_failed
                && matches!(
                    report.outcome,
                    StreamOutcome::ProducerFailed(_)
                        | StreamOutcome::Fenced(_)
                        | StreamOutcome::Resumed
                        | StreamOutcome::ShutDown
                );
            if !again {
                plans[index] = None;
            }
            reports.push(report);
        }
        relay.abort();
        idle_poller.abort();
        let _ = idle_poller.await;
        metrics.set_ready(false);
        if let Some(sink) = Arc::into_inner(sink) {
            retire(sink).await;
        }
        producer_failed
    }
}

/// Settles transactions a broker left hanging in the worker's topics (see `kafka::hanging`),
/// then reads every stream's committed state.
async fn resume(
    config: &Config,
    sink: &TxnSink,
    metrics: &Metrics,
    topics: &[String],
) -> Result<BTreeMap<String, WatermarkState>, RunError> {
    settle_hanging(&config.kafka, sink, metrics, topics).await?;
    Ok(watermarks::load(&config.kafka, Duration::from_secs(60)).await?)
}

/// Settles, with `sink`'s producer (just initialized), the partitions of `topics` where a
/// transaction stays open (see `kafka::hanging`): one warning and one count per partition.
/// A single process and every replica's stream producer run it before they read watermarks.
pub(crate) async fn settle_hanging(
    kafka: &crate::config::KafkaConfig,
    sink: &TxnSink,
    metrics: &Metrics,
    topics: &[String],
) -> Result<(), RunError> {
    let open = hanging::find(kafka, topics.to_vec()).await.map_err(RunError::Hanging)?;
    if !open.is_empty() {
        for (topic, partition) in &open {
            warn!(
                topic = %topic, partition, grace = ?hanging::GRACE,
                "a transaction in this partition did not end (its records stay invisible to read_committed readers); settling it as committed"
            );
            metrics.producer.hanging_settled(topic);
        }
        sink.settle(open).await?;
    }
    tracing::debug!("hanging check done");
    Ok(())
}

/// The producer for one pass. The first pass fails after a few tries (a wrong config should
/// say so); later passes wait for Kafka to come back. `None` if shutdown came first.
async fn connect(
    config: &Config,
    metrics: &Arc<Metrics>,
    pass: u32,
    shutdown: &watch::Receiver<bool>,
) -> Result<Option<TxnSink>, RunError> {
    let mut attempt = 0;
    loop {
        if *shutdown.borrow() && pass > 1 {
            return Ok(None);
        }
        match TxnSink::connect(&config.kafka, Some(metrics.clone())).await {
            Ok(sink) => return Ok(Some(sink)),
            Err(e) if pass == 1 && attempt >= 2 => return Err(e.into()),
            Err(e) => {
                attempt += 1;
                let wait = crate::domain::backoff::delay(attempt, Duration::from_secs(1), Duration::from_secs(30));
                warn!(error = %e, retry_in = ?wait, "cannot initialize the kafka producer; retrying");
                sleep_or_shutdown(wait, shutdown).await;
            }
        }
    }
}

/// One report per stream, adding up what each pass did.
pub fn merge_reports(reports: Vec<StreamReport>) -> Vec<StreamReport> {
    let mut merged: BTreeMap<String, StreamReport> = BTreeMap::new();
    for r in reports {
        match merged.get_mut(r.stream.as_str()) {
            None => {
                merged.insert(r.stream.to_string(), r);
            }
            Some(m) => {
                m.records += r.records;
                m.unchanged += r.unchanged;
                m.tombstones += r.tombstones;
                m.dead_letters += r.dead_letters;
                m.windows += r.windows;
                m.watermark = m.watermark.max(r.watermark);
                m.outcome = r.outcome;
            }
        }
    }
    merged.into_values().collect()
}
