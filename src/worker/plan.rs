//! One stream as configured and checked against its vendor's rules, ready to run: its source
//! client, credential gate, schema codec, topic and window settings.

use std::sync::Arc;
use std::time::Duration;

use super::gate::CredentialGate;
use crate::avro::RecordCodec;
use crate::config::StreamConfig;
use crate::domain::Source;

/// One stream, ready to run once Kafka is prepared and its watermark is known.
pub struct StreamPlan {
    pub cfg: StreamConfig,
    pub source_id: String,
    pub source: Arc<dyn Source>,
    pub gate: Arc<CredentialGate>,
    pub codec: Arc<RecordCodec>,
    pub topic: String,
    /// Snapshot streams write to a compacted topic.
    pub compacted: bool,
    pub max_span: Duration,
    pub page_size: u32,
}
