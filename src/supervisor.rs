//! The one lifecycle of streams on a transactional producer, shared by `run`, a replica's
//! streams (`cluster`), `backfill` (`ops`) and the bench: connect the producer (fencing the
//! transactional id's earlier holder), settle transactions a broker left hanging, load the
//! committed watermarks, spawn the streams with their contexts, cancel them together when the
//! producer is done for, and retire the producer exactly once, off the runtime.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Weak};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;
use tracing::{error, warn};

use crate::config::{Config, KafkaConfig};
use crate::domain::{BoxFuture, CommitError, FailureLog, OutRecords, Sink, WatermarkState};
use crate::kafka::TxnSink;
use crate::kafka::control::ControlLog;
use crate::kafka::hanging;
use crate::kafka::watermarks::{self, EarlyLoad, LoadError};
use crate::metrics::Metrics;
use crate::worker::budget::ByteBudget;
use crate::worker::{StreamContext, StreamOutcome, StreamPlan, StreamReport, StreamWorker};

/// How often a producer serves librdkafka's events (statistics, errors) between transactions.
const IDLE_POLL: Duration = Duration::from_secs(5);

/// How long reading the watermark topic to its end may take.
const LOAD_TIMEOUT: Duration = Duration::from_secs(60);

/// Why a producer could not resume its streams from Kafka: the caller retries with a new
/// producer (later), or gives up.
#[derive(Debug, thiserror::Error)]
pub enum ResumeError {
    #[error("kafka producer: {0}")]
    Producer(#[from] CommitError),
    #[error(transparent)]
    Watermarks(#[from] LoadError),
    #[error("cannot check the topics for hanging transactions: {0}")]
    Hanging(rdkafka::error::KafkaError),
}

/// An initialized transactional producer and its idle poller. Streams commit on it through
/// leases that do not keep it alive, so it is retired (dropped off the runtime: dropping
/// waits for librdkafka) exactly once, by [`Producer::retire`] or, if its owner never got
/// there, on drop.
pub struct Producer {
    /// `None` once retired.
    sink: Option<Arc<TxnSink>>,
    poller: JoinHandle<()>,
}

impl Producer {
    /// Creates the producer and initializes its transactions, which fences any older holder of
    /// `kafka.transactional_id` and aborts what it left open.
    pub async fn connect(kafka: &KafkaConfig, metrics: Option<Arc<Metrics>>) -> Result<Producer, CommitError> {
        let sink = Arc::new(TxnSink::connect(kafka, metrics).await?);
        let idle = Arc::downgrade(&sink);
        let poller = tokio::spawn(async move {
            loop {
                tokio::time::sleep(IDLE_POLL).await;
                let Some(sink) = idle.upgrade() else { return };
                sink.poll_idle().await;
            }
        });
        Ok(Producer { sink: Some(sink), poller })
    }

    /// The producer, to commit on directly (the bench's produce-only ceiling).
    pub fn sink(&self) -> &TxnSink {
        self.sink.as_deref().expect("not retired")
    }

    /// A stream's handle on the producer: commits on it while it lives; after it is retired
    /// a commit fails as a producer failure.
    fn lease(&self) -> Arc<dyn Sink> {
        Arc::new(Lease(Arc::downgrade(self.sink.as_ref().expect("not retired"))))
    }

    /// Stops the idle poller and drops the producer off the runtime.
    pub async fn retire(mut self) {
        self.poller.abort();
        let _ = (&mut self.poller).await;
        if let Some(sink) = self.sink.take() {
            let _ = tokio::task::spawn_blocking(move || drop(sink)).await;
        }
    }
}

impl Drop for Producer {
    fn drop(&mut self) {
        self.poller.abort();
        // Not retired (the future owning it was dropped): off the runtime all the same.
        if let Some(sink) = self.sink.take()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            runtime.spawn_blocking(move || drop(sink));
        }
    }
}

/// See [`Producer::lease`].
struct Lease(Weak<TxnSink>);

impl Sink for Lease {
    fn commit(&self, records: OutRecords) -> BoxFuture<'_, Result<(), CommitError>> {
        let sink = self.0.upgrade();
        Box::pin(async move {
            match sink {
                Some(sink) => sink.commit(records).await,
                None => Err(CommitError::Fatal("the producer was retired".into())),
            }
        })
    }
}

/// One stream to start on a producer.
pub struct Launch {
    pub plan: Arc<StreamPlan>,
    /// Where it goes on from (see [`resumed_state`]).
    pub state: WatermarkState,
    /// The operators' stop flag, if followed.
    pub paused: Option<watch::Receiver<bool>>,
}

/// The committed state of `plan`'s stream in `stored`, else a new one at its configured
/// start, resolved against `first_start` (when the worker first started: a stream that moves
/// before its first commit must not begin later).
pub fn resumed_state(
    plan: &StreamPlan,
    stored: &mut BTreeMap<String, WatermarkState>,
    first_start: DateTime<Utc>,
) -> WatermarkState {
    stored.remove(plan.cfg.id.as_str()).unwrap_or_else(|| {
        WatermarkState::new(
            plan.cfg.id.clone(),
            crate::domain::time::truncate_to_second(plan.cfg.start.resolve(first_start)),
        )
    })
}

/// Runs streams on producers of one transactional id, for one process (or one replica's
/// stream, or a backfill): what every stream's context borrows, and the token that ends it all.
pub struct Supervisor {
    /// Kafka, with the transactional id its producers take.
    kafka: KafkaConfig,
    metrics: Arc<Metrics>,
    control: Arc<dyn FailureLog>,
    owner: Arc<[u8]>,
    until_caught_up: bool,
    cancel: CancellationToken,
    /// The bytes its streams may hold in windows read ahead (`max_buffered_bytes`).
    budget: Arc<ByteBudget>,
}

impl Supervisor {
    /// Streams of `config` with `metrics`, ended by `cancel`; producers take the config's
    /// transactional id, and watermark records name this process (its replica, else that id).
    pub fn new(config: &Config, metrics: Arc<Metrics>, cancel: CancellationToken) -> Supervisor {
        let owner = config.cluster.as_ref().map_or(config.kafka.transactional_id.as_str(), |c| c.member.as_str());
        Supervisor {
            kafka: config.kafka.clone(),
            metrics,
            control: Arc::new(ControlLog(config.kafka.clone())),
            owner: Arc::from(owner.as_bytes()),
            until_caught_up: false,
            cancel,
            budget: ByteBudget::new(config.max_buffered_bytes),
        }
    }

    /// Its streams share `budget` with others' (a replica's streams each have a supervisor).
    pub fn budget(mut self, budget: Arc<ByteBudget>) -> Supervisor {
        self.budget = budget;
        self
    }

    /// Producers take `id` instead (a replica's stream, a backfill).
    pub fn transactional_id(mut self, id: String) -> Supervisor {
        self.kafka.transactional_id = id;
        self
    }

    /// Streams end once caught up.
    pub fn until_caught_up(mut self, yes: bool) -> Supervisor {
        self.until_caught_up = yes;
        self
    }

    /// The token that ends everything this supervisor runs.
    pub fn token(&self) -> &CancellationToken {
        &self.cancel
    }

    /// What a stream commits to: its topic, the dead-letter, watermark and ledger topics (the
    /// partitions its producer checks for hanging transactions).
    pub fn topics_of(&self, plan: &StreamPlan) -> Vec<String> {
        std::iter::once(plan.topic.as_str()).chain(self.kafka.written_beside_data()).map(str::to_owned).collect()
    }

    /// One attempt at a producer (see [`Producer::connect`]).
    pub async fn connect(&self) -> Result<Producer, CommitError> {
        Producer::connect(&self.kafka, Some(self.metrics.clone())).await
    }

    /// Settles, with `producer` (just connected), the partitions of `topics` where a
    /// transaction stays open (see `kafka::hanging`), then reads every stream's committed state.
    pub async fn resume(
        &self,
        producer: &Producer,
        topics: &[String],
    ) -> Result<BTreeMap<String, WatermarkState>, ResumeError> {
        self.resume_with(producer, topics, None).await
    }

    /// Reads every stream's committed state while the producer initializes (see
    /// [`Self::resume_with`]); `None` if that read failed (a transaction open there, which
    /// only initialization can end): the load after initialization then reads it.
    pub async fn read_early(&self) -> Option<EarlyLoad> {
        match EarlyLoad::read(&self.kafka, LOAD_TIMEOUT).await {
            Ok(early) => Some(early),
            Err(e) => {
                tracing::debug!(error = %e, "watermarks not read early; reading them after the producer starts");
                None
            }
        }
    }

    /// [`Self::resume`], keeping `early` (read while `producer` initialized) if the watermark
    /// topic has not changed since and nothing was settled: it saves a start the time of a
    /// load.
    pub async fn resume_with(
        &self,
        producer: &Producer,
        topics: &[String],
        early: Option<EarlyLoad>,
    ) -> Result<BTreeMap<String, WatermarkState>, ResumeError> {
        let confirm = async {
            match early {
                Some(early) => early.confirm(&self.kafka).await.unwrap_or_else(|e| {
                    tracing::debug!(error = %e, "cannot confirm the watermarks read early; loading them again");
                    None
                }),
                None => None,
            }
        };
        let (settled, confirmed) = tokio::join!(self.settle_hanging(producer.sink(), topics), confirm);
        match (settled?, confirmed) {
            (false, Some(states)) => {
                tracing::debug!("watermarks read while the producer started are current");
                Ok(states)
            }
            _ => Ok(watermarks::load(&self.kafka, LOAD_TIMEOUT).await?),
        }
    }

    /// [`Self::connect`] then [`Self::resume`]; a producer that cannot resume is retired.
    pub async fn prepare(
        &self,
        topics: &[String],
    ) -> Result<(Producer, BTreeMap<String, WatermarkState>), ResumeError> {
        let producer = self.connect().await?;
        match self.resume(&producer, topics).await {
            Ok(stored) => Ok((producer, stored)),
            Err(e) => {
                producer.retire().await;
                Err(e)
            }
        }
    }

    /// One warning and one count per settled partition; true if any was.
    async fn settle_hanging(&self, sink: &TxnSink, topics: &[String]) -> Result<bool, ResumeError> {
        let open = hanging::find(&self.kafka, topics.to_vec()).await.map_err(ResumeError::Hanging)?;
        let settled = !open.is_empty();
        if settled {
            for (topic, partition) in &open {
                warn!(
                    topic = %topic, partition, grace = ?hanging::GRACE,
                    "a transaction in this partition did not end (its records stay invisible to read_committed readers); settling it as committed"
                );
                self.metrics.producer.hanging_settled(topic);
            }
            sink.settle(open).await?;
        }
        tracing::debug!("hanging check done");
        Ok(settled)
    }

    /// Starts `streams` on `producer`, each on a task with its context and a child of a token
    /// of their own: the pass ends them together, or this supervisor's token does.
    pub fn launch(&self, producer: Producer, streams: Vec<Launch>) -> Pass {
        let cancel = self.cancel.child_token();
        let mut pass = Pass { producer, cancel, tasks: JoinSet::new(), launched: HashMap::new() };
        for (index, Launch { plan, state, paused }) in streams.into_iter().enumerate() {
            let ctx = StreamContext {
                sink: pass.producer.lease(),
                budget: self.budget.clone(),
                metrics: self.metrics.clone(),
                control: Some(self.control.clone()),
                watermark_topic: Arc::from(self.kafka.watermark_topic.as_str()),
                dead_letter_topic: Arc::from(self.kafka.dead_letter_topic.as_str()),
                ledger_topic: Arc::from(self.kafka.ledger_topic.as_str()),
                watermark_max_bytes: self.kafka.watermark_max_bytes,
                owner: Some(self.owner.clone()),
                paused,
                cancel: pass.cancel.child_token(),
                until_caught_up: self.until_caught_up,
            };
            let worker = StreamWorker::new(ctx, plan.clone(), state);
            let task = pass.tasks.spawn(worker.run());
            pass.launched.insert(task.id(), (index, plan));
        }
        pass
    }

    /// Runs one stream on `producer` until it ends, then retires the producer.
    pub async fn run_one(&self, producer: Producer, stream: Launch) -> StreamReport {
        let mut pass = self.launch(producer, vec![stream]);
        let (_, report) = pass.next().await.expect("one stream launched");
        pass.finish().await;
        report
    }
}

/// Streams running on one producer (see [`Supervisor::launch`]).
pub struct Pass {
    producer: Producer,
    /// Every stream's token is a child of this one.
    cancel: CancellationToken,
    tasks: JoinSet<StreamReport>,
    /// Each task's stream: its index in the launch, and its plan.
    launched: HashMap<tokio::task::Id, (usize, Arc<StreamPlan>)>,
}

impl Pass {
    /// The next stream to end, with its index in the launch. A stream that says the producer
    /// is done for (it failed, or a newer one fenced it) or that it must start again from
    /// Kafka (resumed by an operator) ends the others: they share the producer. A stream whose
    /// task panicked is reported stopped.
    pub async fn next(&mut self) -> Option<(usize, StreamReport)> {
        let (id, result) = match self.tasks.join_next_with_id().await? {
            Ok((id, report)) => (id, Ok(report)),
            Err(e) => (e.id(), Err(e)),
        };
        let (index, plan) = self.launched.remove(&id).expect("a launched task");
        let report = result.unwrap_or_else(|e| {
            error!(stream = %plan.cfg.id, error = %e, "stream task panicked");
            StreamReport::idle(&plan, StreamOutcome::Stopped(format!("the stream's task failed: {e}")))
        });
        if matches!(
            report.outcome,
            StreamOutcome::ProducerFailed(_) | StreamOutcome::Fenced(_) | StreamOutcome::Resumed
        ) {
            self.cancel.cancel();
        }
        Some((index, report))
    }

    /// Ends the streams still running (without their reports) and retires the producer.
    pub async fn finish(mut self) {
        if !self.tasks.is_empty() {
            self.cancel.cancel();
            while self.tasks.join_next().await.is_some() {}
        }
        self.producer.retire().await;
    }
}
