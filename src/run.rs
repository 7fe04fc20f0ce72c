//! Runs the worker in one process: prepares Kafka, then runs every stream on one producer
//! (through the `supervisor`) until they are caught up or shut down, making a new producer
//! and resuming from Kafka if it fails.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::config::{Config, ConfigError};
use crate::domain::WatermarkState;
use crate::kafka::CommitError;
use crate::kafka::control::Board;
use crate::kafka::reach::BrokerCause;
use crate::kafka::topics::{self, DataTopic, TopicError};
use crate::metrics::Metrics;
use crate::pipeline::{self, StreamPlan};
use crate::supervisor::{Launch, Producer, ResumeError, Supervisor, resumed_state};
use crate::worker::{StreamOutcome, StreamReport};

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
    Resume(#[from] ResumeError),
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
    shutdown: &CancellationToken,
) -> Result<Option<Started>, RunError> {
    let Some((plans, topics)) = start_topics(config, metrics, shutdown).await? else { return Ok(None) };
    let control = follow_control(config, &plans, metrics).await?;
    Ok(Some(Started { plans, topics, control }))
}

/// [`start`] up to the topics created: what follows can run beside the producer's start.
async fn start_topics(
    config: &Config,
    metrics: &Arc<Metrics>,
    shutdown: &CancellationToken,
) -> Result<Option<(Vec<StreamPlan>, Vec<DataTopic>)>, RunError> {
    let mut plans = pipeline::plan(config)?;
    // Schemas are registered before anything is produced, and their ids kept for the run:
    // a registry outage later cannot lose or double a record.
    pipeline::register_schemas(config, &mut plans).await?;
    // Each topic the hanging-transaction check covers is at 0 before the first scrape, so a
    // settle at this start shows as an increase (replicas check them too, per stream).
    let checked = plans.iter().map(|p| p.topic.as_str());
    for topic in checked.chain(config.kafka.written_beside_data()) {
        metrics.producer.watch_hanging(topic);
    }
    if let Some(addr) = &config.metrics_listen {
        let bound = metrics.serve(addr).await.map_err(|source| RunError::Metrics { addr: addr.clone(), source })?;
        info!(addr = %bound, "serving /metrics, /healthz, /readyz");
    }
    let Some(topics) = bootstrap_topics(config, &plans, shutdown).await? else { return Ok(None) };
    Ok(Some((plans, topics)))
}

/// The operators' stop flags of `plans`' streams, followed.
async fn follow_control(config: &Config, plans: &[StreamPlan], metrics: &Arc<Metrics>) -> Result<Board, RunError> {
    let ids: Vec<String> = plans.iter().map(|p| p.cfg.id.to_string()).collect();
    Ok(Board::watch(&config.kafka, &ids, &[], metrics.clone()).await?)
}

/// Runs every configured stream in this process (a `[cluster]` replica runs in
/// `cluster::run`); returns one report per stream when all loops have ended.
pub async fn run(
    config: Config,
    opts: RunOptions,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) -> Result<Vec<StreamReport>, RunError> {
    let Some((plans, topics)) = start_topics(&config, &metrics, &shutdown).await? else {
        return Ok(Vec::new());
    };
    let supervisor = Supervisor::new(&config, metrics.clone(), shutdown.clone()).until_caught_up(opts.until_caught_up);
    // The first producer starts (its `init_transactions` takes the broker most of a second on
    // a new transactional id) while the stop flags are followed and the watermarks read: a
    // backfill measured from start to exit waits for the longest of them, not their sum.
    let (control, first, early) =
        tokio::join!(follow_control(&config, &plans, &metrics), connect(&supervisor, 1), supervisor.read_early());
    let control = match control {
        Ok(control) => control,
        Err(e) => {
            if let Ok(Some(producer)) = first {
                producer.retire().await;
            }
            return Err(e);
        }
    };
    let (mut first, mut early) = (Some(first), early);
    let first_start = Utc::now();
    let mut plans: Vec<Option<Arc<StreamPlan>>> = plans.into_iter().map(|p| Some(Arc::new(p))).collect();
    let mut reports = Vec::new();
    // Each pass runs the streams on one producer. If it fails, the outcome of its last
    // transaction is unknown: the next pass makes a new producer (which fences the old one
    // and aborts what it left open), rereads every watermark, and resumes from there.
    let mut written: Vec<String> =
        topics.iter().map(|t| t.name.as_str()).chain(config.kafka.written_beside_data()).map(str::to_owned).collect();
    written.sort();
    written.dedup();
    for pass in 1.. {
        let producer = match first.take() {
            Some(first) => first?,
            None => connect(&supervisor, pass).await?,
        };
        let Some(producer) = producer else { break };
        tracing::debug!(pass, "producer initialized");
        let stored = match supervisor.resume_with(&producer, &written, early.take()).await {
            Ok(stored) => stored,
            Err(e) if pass == 1 => {
                producer.retire().await;
                return Err(e.into());
            }
            Err(e) => {
                // The broker went away again: start the pass over with a new producer.
                warn!(error = %e, "cannot resume from kafka; retrying with a new producer");
                metrics.producer.rebuilds.inc();
                producer.retire().await;
                shutdown.run_until_cancelled(tokio::time::sleep(Duration::from_secs(1))).await;
                continue;
            }
        };
        info!(pass, streams = plans.iter().flatten().count(), resumed = stored.len(), "kafka ready; watermarks loaded");
        metrics.stream.watermark_record_limit.set(config.kafka.watermark_max_bytes as i64);
        let seen = reports.len();
        let producer_failed =
            run_pass(&supervisor, &metrics, producer, stored, first_start, &control, &mut plans, &mut reports).await;
        if !producer_failed || shutdown.is_cancelled() || plans.iter().all(Option::is_none) {
            break;
        }
        // Fenced: someone else took the transactional id, most likely `tidemark watermarks
        // set`, which commits right after. Fencing it back at once could keep it from ever
        // committing: give it a moment.
        if reports[seen..].iter().any(|r| matches!(r.outcome, StreamOutcome::Fenced(_))) {
            shutdown.run_until_cancelled(tokio::time::sleep(FENCED_PAUSE)).await;
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
    shutdown: &CancellationToken,
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
                if shutdown.run_until_cancelled(tokio::time::sleep(wait)).await.is_none() {
                    return Ok(None);
                }
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// One producer's life: every stream still in `plans` runs on it from its `stored` state
/// until all end, or the producer fails. A stream that ended for good leaves `plans` and adds
/// its report. True if the producer failed (the streams it interrupted stay in `plans` for
/// the next pass).
#[allow(clippy::too_many_arguments)]
async fn run_pass(
    supervisor: &Supervisor,
    metrics: &Metrics,
    producer: Producer,
    mut stored: BTreeMap<String, WatermarkState>,
    first_start: chrono::DateTime<Utc>,
    control: &Board,
    plans: &mut [Option<Arc<StreamPlan>>],
    reports: &mut Vec<StreamReport>,
) -> bool {
    let mut indices = Vec::new();
    let mut launches = Vec::new();
    for (index, p) in plans.iter().enumerate() {
        let Some(p) = p else { continue };
        let state = resumed_state(p, &mut stored, first_start);
        launches.push(Launch { plan: p.clone(), state, paused: control.flag(p.cfg.id.as_str()) });
        indices.push(index);
    }
    metrics.set_ready(true);
    let mut pass = supervisor.launch(producer, launches);
    let mut producer_failed = false;
    while let Some((launched, report)) = pass.next().await {
        // One producer for every stream: fenced (another process took the transactional
        // id) is a producer failure here, and the next pass fences it back. The supervisor
        // ends the other streams.
        if let StreamOutcome::ProducerFailed(why) | StreamOutcome::Fenced(why) = &report.outcome {
            if !producer_failed {
                error!(error = %why, "shared producer failed; restarting every stream from its committed watermark");
                metrics.producer.rebuilds.inc();
            }
            producer_failed = true;
        }
        // A resumed stream starts again from Kafka on a new producer: so does this pass.
        if report.outcome == StreamOutcome::Resumed {
            if !producer_failed {
                info!(stream = %report.stream, "a stream was resumed; restarting every stream from its committed watermark on a new producer");
            }
            producer_failed = true;
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
            plans[indices[launched]] = None;
        }
        reports.push(report);
    }
    metrics.set_ready(false);
    pass.finish().await;
    producer_failed
}

/// The producer for one pass. The first pass fails after a few tries (a wrong config should
/// say so); later passes wait for Kafka to come back. `None` if shutdown came first.
async fn connect(supervisor: &Supervisor, pass: u32) -> Result<Option<Producer>, RunError> {
    let shutdown = supervisor.token();
    let mut attempt = 0;
    loop {
        if shutdown.is_cancelled() && pass > 1 {
            return Ok(None);
        }
        match supervisor.connect().await {
            Ok(producer) => return Ok(Some(producer)),
            Err(e) if pass == 1 && attempt >= 2 => return Err(e.into()),
            Err(e) => {
                attempt += 1;
                let wait = crate::domain::backoff::delay(attempt, Duration::from_secs(1), Duration::from_secs(30));
                warn!(error = %e, retry_in = ?wait, "cannot initialize the kafka producer; retrying");
                shutdown.run_until_cancelled(tokio::time::sleep(wait)).await;
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
