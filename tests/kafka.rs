//! The watermark store and the hanging-transaction check against a real broker, with another
//! producer holding a transaction open in the watermark topic.

mod common;

use std::time::Duration;

use chrono::{TimeZone, Utc};
use common::*;
use rdkafka::ClientConfig;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::util::Timeout;
use tidemark::config::{Config, KafkaConfig};
use tidemark::domain::{StreamId, WatermarkState};
use tidemark::kafka::{hanging, topics, watermarks};

/// A worker's Kafka settings with fresh topics, the topics created.
async fn fresh_kafka() -> KafkaConfig {
    let prefix = unique("store");
    let text = format!(
        "[kafka]\nbootstrap = \"{}\"\ntransactional_id = \"{prefix}-txn\"\nwatermark_topic = \"{prefix}.wm\"\ndead_letter_topic = \"{prefix}.dlq\"\nwatermark_partitions = 2\n[sources.s]\nkind = \"wdt.account_check\"\nbase_url = \"http://127.0.0.1:1\"\n[[streams]]\nid = \"s/1\"\nsource = \"s\"\n",
        kafka()
    );
    let cfg = Config::parse(&text).unwrap().kafka;
    let dlq = topics::DataTopic { name: cfg.dead_letter_topic.clone(), compacted: false };
    topics::ensure(&cfg, &[dlq]).await.unwrap();
    cfg
}

/// Another producer (its own transactional id) with a transaction open that holds `stream`'s
/// state in the watermark topic, written to the broker but not committed.
fn open_transaction(cfg: &KafkaConfig, state: &WatermarkState) -> BaseProducer {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", kafka())
        .set("transactional.id", unique("other-writer"))
        .create()
        .unwrap();
    producer.init_transactions(Timeout::After(Duration::from_secs(30))).unwrap();
    producer.begin_transaction().unwrap();
    let value = state.to_bytes();
    producer
        .send(BaseRecord::to(&cfg.watermark_topic).key(state.stream.as_str()).payload(&value[..]))
        .map_err(|(e, _)| e)
        .unwrap();
    producer.flush(Timeout::After(Duration::from_secs(30))).unwrap();
    producer
}

fn state(at_hour: u32) -> WatermarkState {
    WatermarkState::new(StreamId::parse("s/1").unwrap(), Utc.with_ymd_and_hms(2026, 11, 20, at_hour, 0, 0).unwrap())
}

/// The tests' reader must not let an absent or unreachable topic pass for an empty one, or
/// their "nothing was committed" checks would hold without reading anything.
#[tokio::test(flavor = "multi_thread")]
async fn the_test_reader_tells_an_absent_or_unreadable_topic_from_an_empty_one() {
    let cfg = fresh_kafka().await;
    assert!(topic_exists(&cfg.dead_letter_topic));
    assert!(consume_committed(&cfg.dead_letter_topic).is_empty(), "an empty topic reads as empty");
    let absent = unique("absent");
    assert!(!topic_exists(&absent));
    assert!(consume_if_exists(&absent).is_none());
    let panic = |read: &dyn Fn() -> Vec<Consumed>| -> String {
        let e = std::panic::catch_unwind(std::panic::AssertUnwindSafe(read)).expect_err("reading must fail");
        e.downcast_ref::<String>().cloned().unwrap_or_default()
    };
    let msg = panic(&|| consume_committed(&absent));
    assert!(msg.contains(&absent) && msg.contains("does not exist"), "{msg}");
    assert!(!topic_exists(&absent), "reading did not create it");
    let msg = panic(&|| consume_from("127.0.0.1:1", &cfg.dead_letter_topic));
    assert!(msg.contains(&cfg.dead_letter_topic) && msg.contains("metadata"), "{msg}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_watermark_loader_waits_for_a_transaction_still_open_before_reading() {
    let cfg = fresh_kafka().await;
    let producer = open_transaction(&cfg, &state(7));
    // The transaction ends while the loader is already waiting on it.
    let committer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(1500));
        producer.commit_transaction(Timeout::After(Duration::from_secs(30))).unwrap();
    });
    let loaded = watermarks::load(&cfg, Duration::from_secs(30)).await.unwrap();
    committer.join().unwrap();
    assert_eq!(loaded.get("s/1"), Some(&state(7)), "the state committed while loading is read");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_transaction_that_never_ends_stops_the_loader_with_its_partition_named() {
    let cfg = fresh_kafka().await;
    let producer = open_transaction(&cfg, &state(8));
    let err = watermarks::load(&cfg, Duration::from_secs(2)).await.expect_err("cannot read past it").to_string();
    assert!(err.contains(&cfg.watermark_topic) && err.contains("did not end"), "{err}");
    producer.abort_transaction(Timeout::After(Duration::from_secs(30))).unwrap();
    assert!(watermarks::load(&cfg, Duration::from_secs(30)).await.unwrap().is_empty(), "aborted state is not read");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_hanging_check_names_exactly_the_partitions_with_an_open_transaction() {
    let cfg = fresh_kafka().await;
    let topics = vec![cfg.watermark_topic.clone(), cfg.dead_letter_topic.clone()];
    assert_eq!(hanging::find(&cfg, topics.clone()).await.unwrap(), vec![], "nothing open in fresh topics");
    let producer = open_transaction(&cfg, &state(9));
    let open = hanging::find(&cfg, topics.clone()).await.unwrap();
    assert_eq!(open.len(), 1, "{open:?}");
    assert_eq!(open[0].0, cfg.watermark_topic);
    let partition = consume_from(kafka(), &cfg.watermark_topic);
    assert!(partition.is_empty(), "nothing committed yet");
    producer.commit_transaction(Timeout::After(Duration::from_secs(30))).unwrap();
    assert_eq!(hanging::find(&cfg, topics).await.unwrap(), vec![], "settled once committed");
    let read = consume_from(kafka(), &cfg.watermark_topic);
    assert_eq!((read.len(), read[0].partition), (1, open[0].1), "the open one was in the partition named");
}

#[tokio::test(flavor = "multi_thread")]
async fn settling_commits_one_control_record_in_each_named_partition_only() {
    let cfg = fresh_kafka().await;
    let sink = tidemark::kafka::TxnSink::connect(&cfg, None).await.unwrap();
    sink.settle(vec![(cfg.watermark_topic.clone(), 1), (cfg.dead_letter_topic.clone(), 0)]).await.unwrap();
    let reader = tidemark::kafka::ends::EndsReader::new(&cfg).unwrap();
    let wm = reader.topic(&cfg.watermark_topic).unwrap();
    let dlq = reader.topic(&cfg.dead_letter_topic).unwrap();
    // One record and its commit marker in each named partition; nothing elsewhere.
    let written: Vec<(i32, i64, bool)> =
        wm.iter().chain(&dlq).map(|e| (e.partition, e.written, e.unsettled())).collect();
    assert_eq!(written, vec![(0, 0, false), (1, 2, false), (0, 2, false)]);
    assert!(consume_from(kafka(), &cfg.dead_letter_topic).is_empty(), "consumers skip control records");
    assert!(watermarks::load(&cfg, Duration::from_secs(30)).await.unwrap().is_empty(), "the loader ignores them");
}

#[tokio::test(flavor = "multi_thread")]
async fn watermarks_read_early_are_kept_only_while_nothing_is_written_to_the_topic() {
    use tidemark::kafka::watermarks::EarlyLoad;
    let cfg = fresh_kafka().await;
    let timeout = Duration::from_secs(30);
    open_transaction(&cfg, &state(7)).commit_transaction(Timeout::After(timeout)).unwrap();

    let early = EarlyLoad::read(&cfg, timeout).await.unwrap();
    let kept = early.confirm(&cfg).await.unwrap().expect("nothing written since: kept");
    assert_eq!(kept.get("s/1"), Some(&state(7)));

    // A commit after the early read (an older instance finishing its transaction before
    // this one fenced it) makes the read stale.
    let early = EarlyLoad::read(&cfg, timeout).await.unwrap();
    open_transaction(&cfg, &state(9)).commit_transaction(Timeout::After(timeout)).unwrap();
    assert!(early.confirm(&cfg).await.unwrap().is_none(), "a commit since: read again");
    // So does an abort: its marker is written too.
    let early = EarlyLoad::read(&cfg, timeout).await.unwrap();
    open_transaction(&cfg, &state(10)).abort_transaction(Timeout::After(timeout)).unwrap();
    assert!(early.confirm(&cfg).await.unwrap().is_none(), "an abort since: read again");
    assert_eq!(watermarks::load(&cfg, timeout).await.unwrap().get("s/1"), Some(&state(9)));

    // A transaction still open is not waited for: initialization may be about to end it.
    let producer = open_transaction(&cfg, &state(11));
    let err = EarlyLoad::read(&cfg, timeout).await.err().expect("an open transaction fails the early read").to_string();
    assert!(err.contains(&cfg.watermark_topic) && err.contains("did not end"), "{err}");
    producer.abort_transaction(Timeout::After(timeout)).unwrap();
}
