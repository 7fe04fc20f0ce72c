//! Reading framed values back: single-object values with the schema a reader expects,
//! Confluent-framed ones with the schema the registry holds for their id (each id asked once).

use std::collections::HashMap;

use apache_avro::Schema;
use serde_json::Value;

use super::{Framing, RecordCodec, decode};
use crate::registry::Registry;

/// Decodes one topic's values whatever their framing.
pub struct FramedReader<'a> {
    codec: &'a RecordCodec,
    registry: Option<&'a Registry>,
    /// Writer schemas by registry id, or why the id could not be resolved: asked once, so a
    /// registry that is down costs one retry budget, not one per value.
    by_id: HashMap<u32, Result<Schema, String>>,
}

impl<'a> FramedReader<'a> {
    pub fn new(codec: &'a RecordCodec, registry: Option<&'a Registry>) -> Self {
        FramedReader { codec, registry, by_id: HashMap::new() }
    }

    /// The value's framing (if it has one) and its record, decimals as text and times as
    /// Beijing time, or why it cannot be read.
    pub async fn decode(&mut self, value: &[u8]) -> (Option<Framing>, Result<Value, String>) {
        let Some((framing, datum)) = Framing::split(value) else {
            return (None, Err("neither single-object nor Confluent framing".into()));
        };
        let decoded = match framing {
            Framing::SingleObject { fingerprint } if fingerprint == self.codec.fingerprint() => {
                decode::decode_datum(self.codec.schema(), datum)
            }
            Framing::SingleObject { .. } => Err(format!("{framing} is not {}'s", self.codec.full_name())),
            Framing::Confluent { schema_id } => match self.writer_schema(schema_id).await {
                Ok(schema) => decode::decode_datum(schema, datum),
                Err(e) => Err(e.clone()),
            },
        };
        (Some(framing), decoded)
    }

    async fn writer_schema(&mut self, id: u32) -> &Result<Schema, String> {
        if !self.by_id.contains_key(&id) {
            let schema = match self.registry {
                None => Err("a Confluent-framed value, but no [schema_registry] is configured".to_owned()),
                Some(r) => match r.schema_by_id(id).await {
                    Ok(text) => Schema::parse_str(&text).map_err(|e| format!("schema id {id}: {e}")),
                    Err(e) => Err(e.to_string()),
                },
            };
            self.by_id.insert(id, schema);
        }
        &self.by_id[&id]
    }
}
