//! This replica's membership in the cluster's consumer group: a consumer of the coordination
//! topic (one partition per stream slot) whose rebalances say which slots it owns.
//!
//! The consumer runs on a thread of its own: librdkafka calls the rebalance callback from
//! `poll`, and a revocation must wait there until the slots' streams have stopped, so that the
//! rebalance does not complete while this replica still works on them.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::time::Duration;

use rdkafka::ClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use tokio::sync::mpsc::UnboundedSender;
use tracing::{info, warn};

use crate::config::{ClusterConfig, KafkaConfig};

/// A change in the slots this replica owns.
#[derive(Debug)]
pub enum Change {
    Assigned(Vec<i32>),
    /// Slots to let go of; `done` is answered once their streams have stopped. `lost`: the
    /// group already gave them away (this replica was silent past its session timeout).
    Revoked {
        slots: Vec<i32>,
        lost: bool,
        done: mpsc::Sender<()>,
    },
    /// The group consumer failed for good (e.g. another live replica has the same instance
    /// id): this replica can no longer know what it owns.
    Failed(String),
}

/// The group member; dropping it leaves the polling thread to end.
pub struct Membership {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

struct Context {
    changes: UnboundedSender<Change>,
    /// How long a revocation waits for its streams to stop before letting go anyway (the
    /// next owner's producer fences whatever is left).
    stop_wait: Duration,
}

impl ClientContext for Context {
    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        crate::kafka::outage::client_error(&error, reason);
    }
}

impl ConsumerContext for Context {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = rebalance {
            let slots: Vec<i32> = tpl.elements().iter().map(|e| e.partition()).collect();
            if slots.is_empty() {
                return;
            }
            let lost = consumer.assignment_lost();
            let (done, stopped) = mpsc::channel();
            if self.changes.send(Change::Revoked { slots: slots.clone(), lost, done }).is_ok()
                && stopped.recv_timeout(self.stop_wait).is_err()
            {
                warn!(?slots, "streams did not stop in time; letting go of them anyway (their next owner fences them)");
            }
        }
    }

    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl) => {
                let slots: Vec<i32> = tpl.elements().iter().map(|e| e.partition()).collect();
                if !slots.is_empty() {
                    let _ = self.changes.send(Change::Assigned(slots));
                }
            }
            Rebalance::Error(e) => warn!(error = %e, "group rebalance failed"),
            Rebalance::Revoke(_) => {}
        }
    }
}

impl Membership {
    /// Joins the group and reports every change of owned slots on `changes` until dropped.
    pub fn join(
        kafka: &KafkaConfig,
        cluster: &ClusterConfig,
        changes: UnboundedSender<Change>,
    ) -> Result<Membership, rdkafka::error::KafkaError> {
        let session_ms = cluster.session_timeout.as_millis();
        let mut cc = crate::kafka::client_config(kafka);
        if let Some(id) = &cluster.instance_id {
            cc.set("group.instance.id", id);
        }
        let consumer: BaseConsumer<Context> = cc
            .set("group.id", &cluster.group)
            .set("partition.assignment.strategy", "cooperative-sticky")
            .set("session.timeout.ms", session_ms.to_string())
            .set("heartbeat.interval.ms", (session_ms / 4).max(500).to_string())
            // Also the rebalance timeout: how long a rebalance waits for every member to
            // rejoin. This thread polls every 200 ms, so only a frozen replica misses it.
            .set("max.poll.interval.ms", (session_ms * 3).max(30_000).to_string())
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "latest")
            .create_with_context(Context { changes: changes.clone(), stop_wait: cluster.session_timeout })?;
        consumer.subscribe(&[&cluster.coordination_topic])?;
        info!(group = %cluster.group, member = %cluster.member, static_member = cluster.instance_id.is_some(), topic = %cluster.coordination_topic, "joined the cluster group");
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("tidemark-membership".into())
                .spawn(move || {
                    while !stop.load(Ordering::Acquire) {
                        // Nothing is ever produced to the topic: polls serve rebalances.
                        match consumer.poll(Duration::from_millis(200)) {
                            Some(Err(e)) if crate::kafka::outage::is_connection_failure(&e) => {
                                crate::kafka::outage::client_error(&e, "group membership")
                            }
                            Some(Err(e)) => warn!(error = %e, "group membership"),
                            _ => {}
                        }
                        if let Some((code, reason)) = consumer.client().fatal_error() {
                            let _ = changes.send(Change::Failed(format!("{reason} ({code:?})")));
                            break;
                        }
                    }
                    // A dynamic member leaves the group on close (its slots move at once); a
                    // static one keeps them for the session timeout, in case it comes back.
                    drop(consumer);
                })
                .expect("spawn the membership thread")
        };
        Ok(Membership { stop, thread: Some(thread) })
    }
}

impl Drop for Membership {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
