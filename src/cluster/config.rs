//! `[cluster]` (or `--cluster-group`): this replica's place in a group of replicas sharing the
//! streams, as written and as validated.

use std::time::Duration;

use serde::Deserialize;

use crate::domain::config::{ConfigError, check_topic_name, duration};

/// `[cluster]` as written.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterSection {
    pub group: String,
    pub instance_id: Option<String>,
    #[serde(default = "default_session_timeout", deserialize_with = "duration::required")]
    pub session_timeout: Duration,
    pub coordination_topic: Option<String>,
}

/// How long a silent replica keeps its streams unless configured.
pub const DEFAULT_SESSION_TIMEOUT: Duration = Duration::from_secs(10);

fn default_session_timeout() -> Duration {
    DEFAULT_SESSION_TIMEOUT
}

/// `[cluster]`: this replica's place in a group of replicas that share the streams.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// The consumer group the replicas join; also the prefix of each stream's transactional id.
    pub group: String,
    /// Static membership (`group.instance.id`), when set: a replica restarted within the
    /// session timeout gets its streams back without a rebalance, but one that stops keeps
    /// them until then. Unset, a replica leaves the group when it stops (its streams move at
    /// once) and a restart is a new member.
    pub instance_id: Option<String>,
    /// How this replica names itself in logs and in the watermark records' `tidemark.owner`
    /// header: the instance id, else host name and process id.
    pub member: String,
    /// How long a silent replica keeps its streams before the group gives them to others.
    pub session_timeout: Duration,
    /// One partition per stream slot; the group assigns them.
    pub coordination_topic: String,
}

/// A group name fit for ids and topic names, an optional instance id, a session timeout
/// Kafka accepts.
impl TryFrom<ClusterSection> for ClusterConfig {
    type Error = ConfigError;

    fn try_from(c: ClusterSection) -> Result<Self, ConfigError> {
        let fit = |v: &str| !v.is_empty() && v.chars().all(|ch| ch.is_ascii_alphanumeric() || "._-".contains(ch));
        if !fit(&c.group) {
            return Err(ConfigError::invalid(
                "cluster.group",
                format!("must be letters, digits, '.', '_' or '-' (it names a topic and ids), got {:?}", c.group),
            ));
        }
        if let Some(id) = c.instance_id.as_deref().filter(|id| !fit(id)) {
            return Err(ConfigError::invalid(
                "cluster.instance_id",
                format!("must be letters, digits, '.', '_' or '-', got {id:?}"),
            ));
        }
        let member = c.instance_id.clone().unwrap_or_else(|| format!("{}/{}", hostname(), std::process::id()));
        // The broker's defaults: group.min.session.timeout.ms 6 s, group.max.session.timeout.ms 30 min.
        if c.session_timeout < Duration::from_secs(6) || c.session_timeout > Duration::from_secs(1800) {
            return Err(ConfigError::invalid(
                "cluster.session_timeout",
                format!("must be between 6s and 30m (the broker's limits), got {:?}", c.session_timeout),
            ));
        }
        let coordination_topic = c.coordination_topic.unwrap_or_else(|| format!("tidemark.{}.streams", c.group));
        check_topic_name("cluster.coordination_topic", &coordination_topic)?;
        Ok(ClusterConfig {
            group: c.group,
            instance_id: c.instance_id,
            member,
            session_timeout: c.session_timeout,
            coordination_topic,
        })
    }
}

/// The machine's name (`HOSTNAME`, else /etc/hostname), to name a replica without an id.
fn hostname() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_owned())
        .unwrap_or_default()
}
