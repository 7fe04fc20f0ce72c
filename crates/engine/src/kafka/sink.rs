//! The transactional producer: each window's records and the stream's new watermark commit
//! in one Kafka transaction, with the windows other streams committed meanwhile (group
//! commit). librdkafka's transactional calls block, so they run off the runtime. A
//! `BaseProducer` polled only here: every poll happens inside a transaction's own thread.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::OwnedHeaders;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::util::Timeout;

use super::stats::StatsContext;
use crate::domain::{BoxFuture, CommitError, OutRecord, OutRecords, Sink};
use crate::kafka::config::KafkaConfig;
use crate::metrics::Metrics;

/// A transactional producer shared by the streams of one worker; transactions are serialized.
/// Windows handed to it while a transaction runs wait and then commit together in the next
/// one: the broker's cost is per transaction, so thousands of streams with a window each (an
/// idle poll) cost tens of transactions, not thousands.
pub struct TxnSink {
    producer: Arc<BaseProducer<StatsContext>>,
    lock: tokio::sync::Mutex<()>,
    /// Windows waiting for the next transaction, each with where its outcome goes.
    waiting: std::sync::Mutex<Vec<Waiting>>,
    timeout: Duration,
    metrics: Option<Arc<Metrics>>,
    /// Set by the first fatal error: the producer is not used again, not even to abort.
    failed: AtomicBool,
}

/// Key and header of the record that settles a hanging transaction (see `kafka::hanging`).
pub const SETTLE_KEY: &str = "tidemark.settle";
pub const HEADER_CONTROL: &str = "tidemark.control";

const COMMIT_ATTEMPTS: u32 = 3;

/// librdkafka's producer queue, in KiB (`queue.buffering.max.kbytes`) and in messages
/// (`queue.buffering.max.messages`). Each queued message costs librdkafka a few hundred bytes
/// beside its payload (its own struct, a copy of its headers), so the count matters as much.
const QUEUE_KBYTES: u32 = 8 * 1024;
const QUEUE_MESSAGES: u32 = 32 * 1024;

/// At most this many records go into one group transaction (more windows wait for the next):
/// a transaction holds the broker's partitions' last stable offset back until it commits.
const GROUP_RECORDS: usize = 50_000;

/// One window's records waiting to be committed with others.
struct Waiting {
    records: OutRecords,
    outcome: tokio::sync::oneshot::Sender<Result<(), CommitError>>,
}

impl TxnSink {
    /// Creates the producer and initializes transactions, which fences any older instance
    /// with the same `transactional.id` and aborts the transaction it left open.
    pub async fn connect(cfg: &KafkaConfig, metrics: Option<Arc<Metrics>>) -> Result<TxnSink, CommitError> {
        let mut cc = super::client_config(cfg);
        cc.set("transactional.id", &cfg.transactional_id)
            .set("enable.idempotence", "true")
            .set("transaction.timeout.ms", cfg.transaction_timeout.as_millis().to_string())
            // Java's default partitioner, so keys land where Kafka Streams and Connect expect.
            .set("partitioner", "murmur2_random")
            // A window's records fill whole batches (fewer, larger produce requests: the
            // broker's cost is mostly per request); `drain` sends what lingers at once when the
            // window is complete, so this never delays a commit.
            .set("linger.ms", "100")
            // Failures only: successful deliveries then need no polling to leave the queue, so
            // `drain` can wait on librdkafka's condition variable instead of polling.
            .set("delivery.report.only.error", "true")
            .set("message.timeout.ms", cfg.transaction_timeout.as_millis().to_string())
            // librdkafka's queue holds a copy of what is produced and not yet acknowledged: 1 GiB
            // by default, which a large window would fill beside the window itself. Sending
            // waits while it is full.
            .set("queue.buffering.max.kbytes", QUEUE_KBYTES.to_string())
            .set("queue.buffering.max.messages", QUEUE_MESSAGES.to_string())
            .set("statistics.interval.ms", "5000");
        let producer: BaseProducer<StatsContext> = cc
            .create_with_context(StatsContext::new(metrics.clone()))
            .map_err(|e| CommitError::Fatal(format!("cannot create producer: {e}")))?;
        let producer = Arc::new(producer);
        let timeout = cfg.transaction_timeout;
        let p = producer.clone();
        tokio::task::spawn_blocking(move || p.init_transactions(Timeout::After(timeout)))
            .await
            .map_err(|e| CommitError::Fatal(format!("init_transactions task failed: {e}")))?
            .map_err(|e| CommitError::Fatal(format!("cannot initialize transactions: {e}")))?;
        let sink = TxnSink {
            producer,
            lock: tokio::sync::Mutex::new(()),
            waiting: std::sync::Mutex::new(Vec::new()),
            timeout,
            metrics,
            failed: AtomicBool::new(false),
        };
        Ok(sink)
    }

    /// Serves librdkafka's events (statistics, errors, logs) while no transaction runs:
    /// the producer is otherwise only polled inside transactions.
    pub async fn poll_idle(&self) {
        let _turn = self.lock.lock().await;
        let producer = self.producer.clone();
        let _ = tokio::task::spawn_blocking(move || producer.poll(Duration::ZERO)).await;
    }

    /// Produces every record in one transaction (with other windows waiting at the same time)
    /// and commits it. Returns only once that transaction is committed (all records
    /// acknowledged) or aborted; an abort or failure is every window's in it.
    pub async fn commit(&self, records: OutRecords) -> Result<(), CommitError> {
        let (outcome, mut mine) = tokio::sync::oneshot::channel();
        self.waiting.lock().expect("waiting lock").push(Waiting { records, outcome });
        loop {
            let turn = self.lock.lock().await;
            // A transaction that ran while this one waited for its turn may have held it.
            // Otherwise this window is still waiting (whoever takes a group answers it before
            // giving up the turn), so the group below is not empty.
            if let Ok(result) = mine.try_recv() {
                return result;
            }
            let group = self.take_group();
            let started = std::time::Instant::now();
            let (records, outcomes): (Vec<OutRecords>, Vec<_>) =
                group.into_iter().map(|w| (w.records, w.outcome)).unzip();
            let windows = outcomes.len();
            let result = self
                .run_locked(&turn, move |producer, timeout| {
                    commit_blocking(producer, records.into_iter().flatten(), timeout)
                })
                .await;
            if let Some(m) = &self.metrics {
                m.producer.transaction_duration.observe(started.elapsed().as_secs_f64());
                if result.is_ok() {
                    m.producer.transaction_windows.observe(windows as f64);
                }
            }
            for outcome in outcomes {
                let _ = outcome.send(result.clone());
            }
            drop(turn);
            if let Ok(result) = mine.try_recv() {
                return result;
            }
            // This window did not fit the group: the next turn takes it.
        }
    }

    /// The oldest waiting windows, up to [`GROUP_RECORDS`] records (at least one window).
    fn take_group(&self) -> Vec<Waiting> {
        let mut waiting = self.waiting.lock().expect("waiting lock");
        let mut records = 0;
        let n = waiting
            .iter()
            .take_while(|w| {
                let fits = records == 0 || records + w.records.len() <= GROUP_RECORDS;
                records += w.records.len();
                fits
            })
            .count();
        waiting.drain(..n).collect()
    }

    /// Commits one transaction holding a settle record (no value, header `tidemark.control:
    /// settle`) in each of `partitions`: its commit marker there ends whatever earlier
    /// transaction of this producer was left hanging, as committed.
    pub async fn settle(&self, partitions: Vec<(String, i32)>) -> Result<(), CommitError> {
        self.run(move |producer, timeout| {
            transact(
                producer,
                |producer| {
                    for (topic, p) in &partitions {
                        let header = rdkafka::message::Header { key: HEADER_CONTROL, value: Some("settle".as_bytes()) };
                        let rec = BaseRecord::to(topic.as_str())
                            .partition(*p)
                            .key(SETTLE_KEY.as_bytes())
                            .headers(OwnedHeaders::new().insert(header));
                        send(producer, rec)?;
                    }
                    Ok(partitions.len())
                },
                timeout,
            )
        })
        .await
    }

    /// Runs one transaction on the producer, off the runtime and after any other. After a
    /// fatal error every call fails at once: the producer must not touch Kafka again.
    async fn run(
        &self,
        txn: impl FnOnce(&BaseProducer<StatsContext>, Duration) -> Result<(), CommitError> + Send + 'static,
    ) -> Result<(), CommitError> {
        let turn = self.lock.lock().await;
        self.run_locked(&turn, txn).await
    }

    /// [`run`](Self::run) for a caller holding the turn.
    async fn run_locked(
        &self,
        _turn: &tokio::sync::MutexGuard<'_, ()>,
        txn: impl FnOnce(&BaseProducer<StatsContext>, Duration) -> Result<(), CommitError> + Send + 'static,
    ) -> Result<(), CommitError> {
        if self.failed.load(Ordering::Acquire) {
            return Err(CommitError::Fatal("the producer failed earlier".into()));
        }
        let producer = self.producer.clone();
        let timeout = self.timeout;
        let result = tokio::task::spawn_blocking(move || txn(&producer, timeout))
            .await
            .unwrap_or_else(|e| Err(CommitError::Fatal(format!("transaction task failed: {e}"))));
        match result {
            Err(CommitError::Fatal(why)) => {
                self.failed.store(true, Ordering::Release);
                // librdkafka keeps the error that made the producer fatal: fencing by a newer
                // instance of the transactional id means "no longer mine", not a crash.
                match self.producer.client().fatal_error() {
                    Some((code, reason)) if is_fencing(code) => Err(CommitError::Fenced(format!("{reason} ({why})"))),
                    _ => Err(CommitError::Fatal(why)),
                }
            }
            other => other,
        }
    }
}

/// The codes with which a broker refuses a producer that a newer one with the same
/// transactional id has replaced.
fn is_fencing(code: RDKafkaErrorCode) -> bool {
    matches!(code, RDKafkaErrorCode::Fenced | RDKafkaErrorCode::ProducerFenced | RDKafkaErrorCode::InvalidProducerEpoch)
}

/// Produces each record (freed once librdkafka holds its copy, so a large window is not held
/// twice; a spilled one is read back from its file as it goes) in one transaction.
fn commit_blocking(
    producer: &BaseProducer<StatsContext>,
    records: impl Iterator<Item = std::io::Result<OutRecord>>,
    timeout: Duration,
) -> Result<(), CommitError> {
    transact(
        producer,
        |producer| {
            let mut count = 0;
            for r in records {
                // Some of the transaction may be sent already: like any failure after sending,
                // it is left for the next producer to abort.
                let r = r.map_err(|e| after_send(format!("cannot read a spilled record back: {e}")))?;
                let mut headers = OwnedHeaders::new_with_capacity(r.headers.len());
                for (name, value) in r.headers.iter() {
                    headers = headers.insert(rdkafka::message::Header { key: name, value: Some(value.as_ref()) });
                }
                let rec: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(&r.topic).key(&r.key[..]).headers(headers);
                send(
                    producer,
                    match &r.value {
                        Some(v) => rec.payload(&v[..]),
                        None => rec,
                    },
                )?;
                count += 1;
            }
            Ok(count)
        },
        timeout,
    )
}

/// Hands one record to librdkafka, waiting while its queue is full.
fn send(producer: &BaseProducer<StatsContext>, mut rec: BaseRecord<'_, [u8], [u8]>) -> Result<(), CommitError> {
    loop {
        match producer.send(rec) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                // The local queue drains as the broker acknowledges.
                rec = back;
                wait_for_acks(producer, Duration::from_millis(5));
            }
            Err((e, back)) => return Err(after_send(format!("cannot produce to {}: {e}", back.topic))),
        }
    }
}

/// Begins a transaction, produces what `produce` sends (returning how many), waits for every
/// acknowledgement and commits.
fn transact(
    producer: &BaseProducer<StatsContext>,
    produce: impl FnOnce(&BaseProducer<StatsContext>) -> Result<usize, CommitError>,
    timeout: Duration,
) -> Result<(), CommitError> {
    let t0 = std::time::Instant::now();
    producer.begin_transaction().map_err(|e| match &e {
        KafkaError::Transaction(t) if t.is_fatal() => CommitError::Fatal(e.to_string()),
        _ => abort_before_commit(producer, e.to_string(), timeout),
    })?;
    let count = produce(producer)?;
    let t1 = std::time::Instant::now();
    drain(producer, timeout).map_err(|e| after_send(format!("records not acknowledged: {e}")))?;
    let mut attempt = 0;
    loop {
        attempt += 1;
        match producer.commit_transaction(Timeout::After(timeout)) {
            Ok(()) => {
                super::outage::reachable();
                tracing::debug!(
                    records = count,
                    produce_ms = (t1 - t0).as_millis() as u64,
                    commit_ms = t1.elapsed().as_millis() as u64,
                    "transaction committed"
                );
                return Ok(());
            }
            // librdkafka allows calling commit again after a retriable error.
            Err(KafkaError::Transaction(t)) if t.is_retriable() && attempt < COMMIT_ATTEMPTS => continue,
            // Once the commit was asked for, a failure does not say whether it landed (the
            // broker may have committed and lost the answer). Aborting and retrying here could
            // duplicate the window: only a new producer, which completes or aborts what the
            // old one left, and a fresh read of the watermark topic can tell.
            Err(e) => return Err(CommitError::Fatal(format!("commit outcome unknown: {e}"))),
        }
    }
}

/// Waits until every produced record is acknowledged. rust-rdkafka's `flush` and `poll` run
/// until their deadline (in 100 ms steps for `flush`, which added 100 ms to every transaction)
/// and spin on the clock below a millisecond (a quarter of the worker's CPU in a backfill); so
/// this waits in librdkafka itself and only serves pending events (failure reports,
/// statistics, logs) between waits.
fn drain(producer: &BaseProducer<StatsContext>, timeout: Duration) -> Result<(), KafkaError> {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        wait_for_acks(producer, Duration::from_millis(100));
        loop {
            let before = producer.in_flight_count();
            if before == 0 {
                return Ok(());
            }
            producer.poll(Duration::ZERO);
            if producer.in_flight_count() == before {
                break;
            }
        }
        if std::time::Instant::now() >= deadline {
            return Err(KafkaError::Flush(RDKafkaErrorCode::OperationTimedOut));
        }
    }
}

/// Blocks until nothing is in flight or `max` has passed, sending lingering batches at once.
/// With failure-only delivery reports, acknowledged records leave the count without polling.
fn wait_for_acks(producer: &BaseProducer<StatsContext>, max: Duration) {
    let ms = i32::try_from(max.as_millis()).unwrap_or(i32::MAX);
    // SAFETY: the handle is valid while `producer` lives, and rd_kafka_flush may be called from
    // any thread; its result (timed out or not) is read through `in_flight_count` instead.
    unsafe {
        rdkafka::bindings::rd_kafka_flush(producer.client().native_ptr(), ms);
    }
}

/// A failure after records were handed to librdkafka. The producer is not used again, not
/// even to abort: requests of the transaction may still be in flight or retried, and only a
/// new producer (a new epoch) is sure to fence them. Its initialization aborts the open
/// transaction, once the broker is reachable again; an abort sent now, while the broker may be
/// going down, could lose its markers (see `kafka::hanging`). Fatal, so the worker starts over
/// from the watermark topic.
fn after_send(reason: String) -> CommitError {
    CommitError::Fatal(format!("{reason} (transaction left for the next producer to abort)"))
}

/// Aborts a transaction before anything was sent, so nothing of it can exist anywhere.
/// If even the abort fails, the producer's state is unknown: fatal.
fn abort_before_commit(producer: &BaseProducer<StatsContext>, reason: String, timeout: Duration) -> CommitError {
    match producer.abort_transaction(Timeout::After(timeout)) {
        Ok(()) => CommitError::Aborted(reason),
        Err(e) => CommitError::Fatal(format!("{reason}; then abort failed: {e}")),
    }
}

/// Drops a producer off the runtime: dropping purges its queue and waits up to 500 ms.
pub async fn retire(sink: TxnSink) {
    let _ = tokio::task::spawn_blocking(move || drop(sink)).await;
}

impl Sink for TxnSink {
    fn commit(&self, records: OutRecords) -> BoxFuture<'_, Result<(), CommitError>> {
        Box::pin(TxnSink::commit(self, records))
    }
}
