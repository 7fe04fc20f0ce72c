//! Replicas that share the streams on Kafka alone: each stream is a slot (a partition of the
//! coordination topic), a consumer group gives each slot to one live replica, and the owner
//! runs the stream on a producer whose transactional id (group and stream) fences every
//! earlier owner, so a replica that lost a stream can never commit for it again.

pub mod config;
mod membership;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::config::{ClusterConfig, Config};
use crate::metrics::Metrics;
use crate::run::{RunError, Started};
use crate::supervisor::{Launch, Supervisor, resumed_state};
use crate::worker::budget::ByteBudget;
use crate::worker::{StreamOutcome, StreamPlan, StreamReport};
use membership::{Change, Membership};

/// The transactional id of a stream's producer in a cluster: the same on every replica, so
/// a new owner's `init_transactions` fences the previous one. Group names have no ':', so no
/// two (group, stream) pairs share an id.
pub fn transactional_id(cluster: &ClusterConfig, stream: &str) -> String {
    format!("{}:{stream}", cluster.group)
}

/// Runs this replica until shutdown: the streams of the slots the group gives it, each on
/// its own producer. Returns one report per stream it ran.
pub async fn run(
    config: Config,
    until_caught_up: bool,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) -> Result<Vec<StreamReport>, RunError> {
    let Some(cluster) = config.cluster.clone() else {
        return Err(RunError::Cluster("a replica needs a [cluster] group".into()));
    };
    if until_caught_up {
        return Err(RunError::Cluster(
            "--until-caught-up needs every stream in one process; a [cluster] replica runs only the streams the group gives it (run it without --until-caught-up, or without [cluster])".into(),
        ));
    }
    let Some(Started { plans, control, .. }) = crate::run::start(&config, &metrics, &shutdown).await? else {
        return Ok(Vec::new());
    };
    let reports = replicate(&config, &cluster, plans, metrics, shutdown, &control).await?;
    Ok(crate::run::merge_reports(reports))
}

/// The replica's life in its group: takes and releases slots as the group assigns them.
async fn replicate(
    config: &Config,
    cluster: &ClusterConfig,
    mut plans: Vec<StreamPlan>,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
    control: &crate::kafka::control::Board,
) -> Result<Vec<StreamReport>, RunError> {
    // Slot i is the i-th stream by id: every replica with the same config agrees.
    plans.sort_by(|a, b| a.cfg.id.cmp(&b.cfg.id));
    let plans: Vec<Arc<StreamPlan>> = plans.into_iter().map(Arc::new).collect();
    let slots = i32::try_from(plans.len().max(1)).expect("fewer streams than i32::MAX");
    crate::kafka::topics::ensure_partitions(&config.kafka, &cluster.coordination_topic, slots).await?;
    let (tx, mut changes) = mpsc::unbounded_channel();
    let membership = Membership::join(&config.kafka, cluster, tx)
        .map_err(|e| RunError::Cluster(format!("cannot join group {}: {e}", cluster.group)))?;
    metrics.set_ready(true);
    metrics.stream.watermark_record_limit.set(config.kafka.watermark_max_bytes as i64);
    // Where streams without a watermark begin, fixed once: a stream handed over before its
    // first commit must not begin later on its next owner.
    let first_start = chrono::Utc::now();
    let mut owner = Owner {
        config,
        budget: ByteBudget::new(config.max_buffered_bytes),
        cluster,
        plans,
        metrics: metrics.clone(),
        shutdown: shutdown.clone(),
        owned: BTreeMap::new(),
        first_start,
        control,
    };
    let mut reports = Vec::new();
    let mut failed = None;
    while !shutdown.is_cancelled() {
        tokio::select! {
            change = changes.recv() => match change {
                Some(Change::Assigned(slots)) => owner.take(&slots).await,
                Some(Change::Revoked { slots, lost, done }) => {
                    reports.extend(owner.release(&slots, lost).await);
                    let _ = done.send(());
                }
                Some(Change::Failed(why)) => {
                    failed = Some(why);
                    break;
                }
                None => break,
            },
            _ = shutdown.cancelled() => break,
        }
    }
    let all: Vec<i32> = owner.owned.keys().copied().collect();
    reports.extend(owner.release(&all, false).await);
    metrics.set_ready(false);
    // Leaving: a revocation the consumer's close asks for finds no one listening and goes on.
    drop(changes);
    let _ = tokio::task::spawn_blocking(move || drop(membership)).await;
    match failed {
        Some(why) => Err(RunError::Cluster(format!("left group {} on a fatal error: {why}", cluster.group))),
        None => Ok(reports),
    }
}

/// The streams this replica runs, by slot.
struct Owner<'a> {
    config: &'a Config,
    /// The replica's byte budget, shared by every stream it owns.
    budget: Arc<ByteBudget>,
    cluster: &'a ClusterConfig,
    plans: Vec<Arc<StreamPlan>>,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
    owned: BTreeMap<i32, Running>,
    first_start: chrono::DateTime<chrono::Utc>,
    control: &'a crate::kafka::control::Board,
}

/// One owned stream's task and the token that stops it (a child of the process's shutdown).
struct Running {
    stop: CancellationToken,
    task: JoinHandle<StreamReport>,
}

impl Owner<'_> {
    /// Starts the streams of newly assigned slots, each on a task that fences the stream's
    /// previous owner before it reads the stream's watermark (see [`own`]).
    async fn take(&mut self, slots: &[i32]) {
        self.metrics.cluster.assigned.inc();
        // Slots past the streams (the topic kept partitions of removed streams) hold nothing.
        let new: Vec<i32> =
            slots.iter().copied().filter(|s| !self.owned.contains_key(s) && (*s as usize) < self.plans.len()).collect();
        let ids: Vec<&str> = new.iter().map(|&s| self.plans[s as usize].cfg.id.as_str()).collect();
        info!(slots = ?slots, streams = ?ids, "assigned");
        // The quota share first: the streams start under it.
        self.share_quota(self.owned.keys().copied().chain(new.iter().copied()));
        for slot in new {
            let plan = self.plans[slot as usize].clone();
            let paused = self.control.flag(plan.cfg.id.as_str());
            // The stream's own producer: its transactional id fences the stream's earlier owners.
            let stop = self.shutdown.child_token();
            let supervisor = Supervisor::new(self.config, self.metrics.clone(), stop.clone())
                .transactional_id(transactional_id(self.cluster, plan.cfg.id.as_str()))
                .budget(self.budget.clone());
            let task = tokio::spawn(own(
                supervisor,
                self.cluster.session_timeout,
                plan,
                self.metrics.clone(),
                self.first_start,
                paused,
            ));
            self.owned.insert(slot, Running { stop, task });
        }
        self.metrics.cluster.streams_owned.set(self.owned.len() as i64);
    }

    /// Stops the streams of revoked slots and waits for them: a window being committed
    /// finishes (or aborts) before the slot is let go.
    async fn release(&mut self, slots: &[i32], lost: bool) -> Vec<StreamReport> {
        if slots.is_empty() {
            return Vec::new();
        }
        if lost { &self.metrics.cluster.lost } else { &self.metrics.cluster.revoked }.inc();
        let mut stopping = Vec::new();
        for slot in slots {
            if let Some(r) = self.owned.remove(slot) {
                r.stop.cancel();
                stopping.push(r.task);
            }
        }
        let mut reports = Vec::new();
        for task in stopping {
            match task.await {
                Ok(report) => {
                    self.metrics.forget_stream(&report.stream);
                    reports.push(report);
                }
                Err(e) => warn!(error = %e, "stream task failed"),
            }
        }
        info!(?slots, lost, "released");
        self.share_quota(self.owned.keys().copied());
        self.metrics.cluster.streams_owned.set(self.owned.len() as i64);
        reports
    }

    /// Gives each credential's gate the share of its streams this replica owns, so that the
    /// replicas together stay within the credential's quota.
    fn share_quota(&self, owned: impl Iterator<Item = i32>) {
        // Per gate (named for the sources sharing it): its streams, and those owned here.
        let mut gates: BTreeMap<&str, (&crate::worker::gate::CredentialGate, usize, usize)> = BTreeMap::new();
        for p in &self.plans {
            gates.entry(p.gate.name()).or_insert((&p.gate, 0, 0)).1 += 1;
        }
        for slot in owned {
            gates.get_mut(self.plans[slot as usize].gate.name()).expect("every plan's gate is counted").2 += 1;
        }
        for (name, (gate, all, mine)) in gates {
            gate.set_share(mine as f64 / all as f64);
            if mine > 0 {
                info!(credential = %name, streams = mine, of = all, requests_per_second = gate.rate(), "quota share");
            }
        }
    }
}

/// Runs one owned stream until it is revoked or shutdown (`supervisor`'s token): a producer
/// of its own (fencing any earlier owner), its committed watermark, then the stream. A producer
/// failure starts over from the watermark topic. Fenced while the group still says the stream
/// is ours (a previous owner's late start, or replicas that disagree on the streams), it waits
/// a session timeout for the revocation and, if none comes, takes the stream back.
async fn own(
    supervisor: Supervisor,
    session_timeout: Duration,
    plan: Arc<StreamPlan>,
    metrics: Arc<Metrics>,
    first_start: chrono::DateTime<chrono::Utc>,
    paused: Option<watch::Receiver<bool>>,
) -> StreamReport {
    let stop = supervisor.token().clone();
    // Sleeps for `d`; false if the stream was revoked or shutdown came first.
    let sleep = |d| {
        let stop = stop.clone();
        async move { stop.run_until_cancelled(tokio::time::sleep(d)).await.is_some() }
    };
    let id = plan.cfg.id.clone();
    // Any transaction a broker left hanging in the stream's partitions is settled first (as a
    // single process does at every start; otherwise a lost marker on the shared watermark
    // topic keeps every stream from loading).
    let topics = supervisor.topics_of(&plan);
    let stopped = |outcome| StreamReport::idle(&plan, outcome);
    let mut attempt = 0u32;
    let mut last = None;
    loop {
        if stop.is_cancelled() {
            return last.unwrap_or_else(|| stopped(StreamOutcome::ShutDown));
        }
        let (producer, mut stored) = match supervisor.prepare(&topics).await {
            Ok(ready) => ready,
            Err(e) => {
                attempt += 1;
                let wait = crate::domain::backoff::delay(attempt, Duration::from_secs(1), Duration::from_secs(30));
                warn!(stream = %id, error = %e, retry_in = ?wait, "cannot take over the stream yet; retrying");
                metrics.set_kafka_failing(&id, true);
                if !sleep(wait).await {
                    return stopped(StreamOutcome::ShutDown);
                }
                continue;
            }
        };
        // Revoked while the producer started: let go without reading a window.
        if stop.is_cancelled() {
            producer.retire().await;
            return last.unwrap_or_else(|| stopped(StreamOutcome::ShutDown));
        }
        metrics.set_kafka_failing(&id, false);
        let state = resumed_state(&plan, &mut stored, first_start);
        let report = supervisor.run_one(producer, Launch { plan: plan.clone(), state, paused: paused.clone() }).await;
        match &report.outcome {
            StreamOutcome::ProducerFailed(why) => {
                attempt += 1;
                let wait = crate::domain::backoff::delay(attempt, Duration::from_secs(1), Duration::from_secs(30));
                warn!(stream = %id, error = %why, retry_in = ?wait, "stream producer failed; resuming from its committed watermark");
                metrics.set_kafka_failing(&id, true);
                last = Some(report);
                if !sleep(wait).await {
                    return last.expect("set above");
                }
            }
            // Resumed by an operator: again from Kafka, on a new producer, at once.
            StreamOutcome::Resumed => last = Some(report),
            StreamOutcome::Fenced(_) => {
                metrics.cluster.fenced(&id);
                metrics.forget_stream(&id);
                last = Some(report);
                if !sleep(session_timeout).await {
                    return last.expect("set above");
                }
                warn!(stream = %id, "fenced, but the group still gives this replica the stream; taking it back");
            }
            _ => return report,
        }
    }
}
