//! Reading a topic's values back as records: single-object values with the input kind's
//! schema, Confluent-framed ones with the schema the registry holds for their id.

use std::collections::HashMap;

use apache_avro::Schema;
use serde_json::Value;

use crate::avro::{Framing, RecordCodec, decode};
use crate::config::{ConfigError, RegistryConfig};
use crate::registry::Registry;

pub struct Values {
    codec: RecordCodec,
    registry: Option<Registry>,
    /// Writer schemas by registry id, fetched once each.
    by_id: HashMap<u32, Schema>,
}

impl Values {
    pub fn new(avsc: &str, registry: Option<&RegistryConfig>) -> Result<Values, ConfigError> {
        let codec = RecordCodec::from_avsc(avsc).map_err(|e| ConfigError::invalid("writers", e.to_string()))?;
        let registry = registry
            .map(Registry::new)
            .transpose()
            .map_err(|e| ConfigError::invalid("schema_registry", e.to_string()))?;
        Ok(Values { codec, registry, by_id: HashMap::new() })
    }

    /// The record in `value`, decimals as text and times as Beijing time.
    pub async fn decode(&mut self, value: &[u8]) -> Result<Value, String> {
        let (framing, datum) = Framing::split(value).ok_or("neither single-object nor Confluent framing")?;
        match framing {
            Framing::SingleObject { fingerprint } if fingerprint == self.codec.fingerprint() => {
                decode::decode_datum(self.codec.schema(), datum)
            }
            Framing::SingleObject { .. } => Err(format!("{framing} is not {}'s", self.codec.full_name())),
            Framing::Confluent { schema_id } => {
                if !self.by_id.contains_key(&schema_id) {
                    let registry = self
                        .registry
                        .as_ref()
                        .ok_or("a Confluent-framed value, but no [schema_registry] is configured")?;
                    let text = registry.schema_by_id(schema_id).await.map_err(|e| e.to_string())?;
                    let schema = Schema::parse_str(&text).map_err(|e| format!("schema id {schema_id}: {e}"))?;
                    self.by_id.insert(schema_id, schema);
                }
                decode::decode_datum(&self.by_id[&schema_id], datum)
            }
        }
    }
}
