//! Assembles configured streams: source clients, schema codecs, shared rate limiters, and the
//! checks that need each vendor's rules (page size, window span, reserved parameters).

use std::collections::{BTreeMap, HashMap};
use std::num::NonZeroU32;
use std::sync::Arc;

use crate::avro::{Framing, RecordCodec};
use crate::config::{Config, ConfigError, ValueFormat};
use crate::sources::{self, Mode, Source};
pub use crate::worker::StreamPlan;
use crate::worker::gate::CredentialGate;

/// Why the streams' schemas could not be registered.
#[derive(Debug, thiserror::Error)]
pub enum SchemaSetupError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Registry(#[from] crate::registry::RegistryError),
}

/// Builds every stream of `config`, failing on the first setting the vendor would reject.
pub fn plan(config: &Config) -> Result<Vec<StreamPlan>, ConfigError> {
    let http = reqwest::Client::builder()
        .user_agent(concat!("tidemark/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| ConfigError::invalid("sources", format!("cannot build http client: {e}")))?;
    let mut clients: BTreeMap<&str, Arc<dyn Source>> = BTreeMap::new();
    for (id, s) in &config.sources {
        clients.insert(id, sources::build(s, &config.endpoints, http.clone())?);
    }
    // Sources that share a credential share its quota (and its throttle pauses): one gate
    // per quota key, at the lowest rate and in-flight ceiling any of them configured, named
    // for metrics by the sources sharing it.
    // The daily quota resets at the first source's configured time.
    let mut shared: BTreeMap<String, (Vec<&str>, u32, u32, chrono::NaiveTime)> = BTreeMap::new();
    for (id, c) in &clients {
        let s = &config.sources[*id];
        let e = shared.entry(c.quota_key()).or_insert((Vec::new(), u32::MAX, u32::MAX, s.daily_quota_reset));
        e.0.push(id);
        e.1 = e.1.min(s.requests_per_second);
        e.2 = e.2.min(s.max_in_flight);
    }
    let positive = |n: u32| NonZeroU32::new(n).expect("validated positive");
    let gates: HashMap<String, Arc<CredentialGate>> = shared
        .into_iter()
        .map(|(k, (ids, rps, max, reset))| {
            let gate = CredentialGate::new(ids.join(","), positive(rps), positive(max)).with_quota_reset(reset);
            (k, Arc::new(gate))
        })
        .collect();
    let mut codecs: HashMap<&str, Arc<RecordCodec>> = HashMap::new();
    let mut plans = Vec::new();
    for (i, s) in config.streams.iter().enumerate() {
        let key = |name: &str| format!("streams[{i}].{name}");
        let source = clients[s.source.as_str()].clone();
        let spec = source.spec();
        if let Some(p) = s.params.keys().find(|p| spec.reserved_params.contains(&p.as_str())) {
            return Err(ConfigError::invalid(key(&format!("params.{p}")), "is set by tidemark itself; remove it"));
        }
        let page_size = s.page_size.unwrap_or(spec.default_page_size);
        if page_size > spec.max_page_size {
            return Err(ConfigError::invalid(
                key("page_size"),
                format!("{page_size} exceeds the {} maximum of {}", spec.kind, spec.max_page_size),
            ));
        }
        let max_span = s.max_span.unwrap_or(spec.max_span);
        if max_span > spec.max_span {
            return Err(ConfigError::invalid(
                key("max_span"),
                format!("{max_span:?} exceeds the {} window limit of {:?}", spec.kind, spec.max_span),
            ));
        }
        if spec.mode == Mode::Windowed && s.lookback >= max_span {
            return Err(ConfigError::invalid(
                key("lookback"),
                format!("lookback {:?} must be shorter than the window span {max_span:?}", s.lookback),
            ));
        }
        let (avsc, schema_key) = match &config.sources[&s.source].schema {
            Some(text) => (text.as_str(), format!("sources.{}.schema", s.source)),
            None => (spec.schema, format!("sources.{}.kind", s.source)),
        };
        let codec = match codecs.get(avsc) {
            Some(c) => c.clone(),
            None => {
                let c = Arc::new(
                    RecordCodec::from_avsc(avsc)
                        .map_err(|e| ConfigError::invalid(&schema_key, format!("schema for {}: {e}", spec.kind)))?,
                );
                if !c.has_field(spec.key_field) {
                    return Err(ConfigError::invalid(
                        schema_key,
                        format!(
                            "schema {} has no field `{}`, the {} business id",
                            c.full_name(),
                            spec.key_field,
                            spec.kind
                        ),
                    ));
                }
                codecs.insert(avsc, c.clone());
                c
            }
        };
        // The endpoint's own `[params]` first, then the stream's over them.
        let mut cfg = s.clone();
        for (k, v) in spec.default_params {
            cfg.params.entry((*k).to_owned()).or_insert_with(|| (*v).to_owned());
        }
        plans.push(StreamPlan {
            cfg,
            source_id: s.source.clone(),
            gate: gates[&source.quota_key()].clone(),
            source,
            codec,
            topic: s.topic.clone().unwrap_or_else(|| spec.default_topic.to_owned()),
            compacted: spec.mode == Mode::Snapshot,
            max_span,
            page_size,
            until: None,
            records_of: None,
        });
    }
    // A topic is either an event log or a compacted table, never both; and never one of
    // tidemark's own.
    let own = config.kafka.own_topics();
    for (i, p) in plans.iter().enumerate() {
        if let Some((key, _)) = own.iter().find(|(_, t)| *t == p.topic) {
            return Err(ConfigError::invalid(
                format!("streams[{i}].topic"),
                format!("{:?} is {key}; a stream's records need a topic of their own", p.topic),
            ));
        }
        if let Some(q) = plans[..i].iter().find(|q| q.topic == p.topic && q.compacted != p.compacted) {
            return Err(ConfigError::invalid(
                format!("streams[{i}].topic"),
                format!(
                    "{:?} is shared with {} but one is a snapshot (compacted) stream and the other is not",
                    p.topic, q.cfg.id
                ),
            ));
        }
    }
    Ok(plans)
}

/// Each data topic's value schema, for the schema registry: topic → `.avsc`. A topic written
/// by streams of different schemas cannot have one subject (TopicNameStrategy), so it is refused.
pub fn topic_schemas(plans: &[StreamPlan]) -> Result<BTreeMap<String, String>, ConfigError> {
    let mut schemas: BTreeMap<String, (String, &str)> = BTreeMap::new();
    for (i, p) in plans.iter().enumerate() {
        match schemas.get(&p.topic) {
            Some((avsc, first)) if avsc.as_str() != p.codec.avsc() => {
                return Err(ConfigError::invalid(
                    format!("streams[{i}].topic"),
                    format!(
                        "{:?} is shared with {first} whose records have another schema; with value_format = \"confluent\" each topic has one subject ({:?}), so give them separate topics",
                        p.topic,
                        crate::registry::value_subject(&p.topic)
                    ),
                ));
            }
            Some(_) => {}
            None => {
                schemas.insert(p.topic.clone(), (p.codec.avsc().to_owned(), p.cfg.id.as_str()));
            }
        }
    }
    Ok(schemas.into_iter().map(|(t, (avsc, _))| (t, avsc)).collect())
}

/// With the Confluent format, registers every topic's value schema and frames its values
/// with the registry's id; with single-object encoding there is nothing to do.
pub async fn register_schemas(config: &Config, plans: &mut [StreamPlan]) -> Result<(), SchemaSetupError> {
    let (ValueFormat::Confluent, Some(rc)) = (config.kafka.value_format, &config.schema_registry) else {
        return Ok(());
    };
    let registry = crate::registry::Registry::new(rc)?;
    let ids = crate::registry::register_all(&registry, &topic_schemas(plans)?, &rc.compatibility).await?;
    let mut framed: HashMap<String, Arc<RecordCodec>> = HashMap::new();
    for p in plans.iter_mut() {
        let id = ids[&p.topic];
        let codec = framed
            .entry(p.topic.clone())
            .or_insert_with(|| Arc::new(p.codec.with_framing(Framing::Confluent { schema_id: id })))
            .clone();
        p.codec = codec;
    }
    Ok(())
}
