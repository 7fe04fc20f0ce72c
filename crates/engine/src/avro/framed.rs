//! Reading framed values back: single-object values with the schema a reader expects,
//! Confluent-framed ones with the schema the registry holds for their id (each id asked once).

use std::collections::HashMap;

use apache_avro::Schema;
use serde_json::Value;

use super::{Framing, RecordCodec, decode};
use crate::registry::Registry;

/// Why a value could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReadError {
    /// The value itself: no known framing, another schema, a datum that does not decode.
    #[error("{0}")]
    Value(String),
    /// The registry did not give its schema: the value may be fine; ask again later.
    #[error("{0}")]
    Registry(String),
}

/// Decodes one topic's values whatever their framing.
pub struct FramedReader<'a> {
    codec: &'a RecordCodec,
    registry: Option<&'a Registry>,
    /// Writer schemas by registry id. Only found schemas are kept: a registry that was down
    /// is asked again for the next value.
    by_id: HashMap<u32, Schema>,
}

impl<'a> FramedReader<'a> {
    pub fn new(codec: &'a RecordCodec, registry: Option<&'a Registry>) -> Self {
        FramedReader { codec, registry, by_id: HashMap::new() }
    }

    /// The value's framing (if it has one) and its record, decimals as text and times as
    /// Beijing time, or why it cannot be read.
    pub async fn decode(&mut self, value: &[u8]) -> (Option<Framing>, Result<Value, ReadError>) {
        let Some((framing, datum)) = Framing::split(value) else {
            return (None, Err(ReadError::Value("neither single-object nor Confluent framing".into())));
        };
        let decoded = match framing {
            Framing::SingleObject { fingerprint } if fingerprint == self.codec.fingerprint() => {
                decode::decode_datum(self.codec.schema(), datum).map_err(ReadError::Value)
            }
            Framing::SingleObject { .. } => {
                Err(ReadError::Value(format!("{framing} is not {}'s", self.codec.full_name())))
            }
            Framing::Confluent { schema_id } => match self.writer_schema(schema_id).await {
                Ok(schema) => decode::decode_datum(schema, datum).map_err(ReadError::Value),
                Err(e) => Err(e),
            },
        };
        (Some(framing), decoded)
    }

    async fn writer_schema(&mut self, id: u32) -> Result<&Schema, ReadError> {
        if !self.by_id.contains_key(&id) {
            let registry = self.registry.ok_or_else(|| {
                ReadError::Value("a Confluent-framed value, but no [schema_registry] is configured".into())
            })?;
            let text = registry.schema_by_id(id).await.map_err(|e| ReadError::Registry(e.to_string()))?;
            let schema = Schema::parse_str(&text).map_err(|e| ReadError::Value(format!("schema id {id}: {e}")))?;
            self.by_id.insert(id, schema);
        }
        Ok(&self.by_id[&id])
    }
}
