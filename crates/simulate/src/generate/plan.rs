//! A schema compiled once into what to make for each field, so making a record reads no names.

use apache_avro::schema::Schema;
use serde_json::Value;

use super::meaning::{
    Blank, Dec, Int, Text, decimal_meaning, doc_codes, initials, integer_meaning, step_rank, text_meaning,
    text_time_format, unset_rate,
};
use super::{
    EMPTY_FREE_TEXT_RATE, EMPTY_IDENTITY_RATE, EMPTY_NAME_RATE, EMPTY_NUMBER_RATE, EMPTY_RARELY_SET_RATE,
    EMPTY_REASON_RATE, EMPTY_UNKNOWN_TEXT_RATE,
};
use crate::domain::time::DATETIME;

/// A record schema compiled for generation: each field's meaning and rates worked out once.
/// Records made from a plan are the ones [`super::record`] makes from its schema; making them
/// is `values`' (`Plan::record`), which reads the nodes this module compiles.
pub struct Plan {
    pub(super) root: Node,
}

impl Plan {
    pub fn new(schema: &Schema) -> Plan {
        Plan { root: compile(schema, &Slot::top()) }
    }
}

/// What to make for one place in a schema.
pub(super) enum Node {
    /// A record; a nested one (a detail line) is about its own good.
    Record {
        own_good: bool,
        fields: Vec<(String, Node)>,
    },
    /// A list of detail lines (`lines`) or of plain values.
    List {
        lines: bool,
        item: Box<Node>,
    },
    /// A field the vendor documents as unused (未使用): always this text (or number).
    Unused {
        text: String,
        number: bool,
    },
    /// `blank`: how often it is sent as empty text (optional numbers of unknown meaning).
    Decimal {
        meaning: Dec,
        precision: u32,
        scale: u32,
        blank: f64,
    },
    Integer {
        meaning: Int,
        int32: bool,
        blank: f64,
        codes: Codes,
    },
    Time(TimeSpec),
    /// A time sent as text in `format`; a join part is the record's own instant.
    TextTime {
        join_part: bool,
        format: &'static str,
        time: TimeSpec,
    },
    Text(TextSpec),
    Float,
    Boolean,
    Enum(Vec<String>),
    Null,
}

/// The codes an integer code field takes, from its doc.
#[derive(Default)]
pub(super) struct Codes {
    /// Negative codes in a doc are special values (`-100根据预售策略…`).
    pub(super) special: Vec<i64>,
    pub(super) listed: Vec<i64>,
    /// A bit mask: mostly no bit set.
    pub(super) mask: bool,
}

/// A time: how often it is unset, when it happened, how it is written.
pub(super) struct TimeSpec {
    pub(super) unset: f64,
    pub(super) when: When,
    /// Its step in the record's story ([`step_rank`]).
    pub(super) rank: Option<f64>,
    pub(super) format: &'static str,
}

pub(super) enum When {
    /// Goods dates: made months before, good for a year or two after.
    Produced,
    Expires,
    /// At its step in the record's story.
    Step,
}

/// A text field: its meaning, how often it is blank, and what its name contributes.
pub(super) struct TextSpec {
    pub(super) meaning: Text,
    pub(super) blank: f64,
    /// The codes its doc lists ([`Text::Coded`]).
    pub(super) codes: Vec<i64>,
    /// A code's prefix ([`Text::Code`]) or the name in dashes ([`Text::Unknown`]).
    pub(super) tag: String,
}

/// Where a value goes: its field's name and doc, the enclosing record's name, whether it may
/// be left out, and whether it is a part of a `tidemark.join`.
#[derive(Clone)]
struct Slot<'s> {
    name: &'s str,
    doc: &'s str,
    record: &'s str,
    optional: bool,
    join_part: bool,
}

impl Slot<'_> {
    fn top() -> Self {
        Slot { name: "", doc: "", record: "", optional: false, join_part: false }
    }
}

fn compile(schema: &Schema, slot: &Slot) -> Node {
    // A field the vendor documents as unused (未使用) comes back empty or zero.
    let unused = slot.doc.contains("未使用");
    match schema {
        Schema::Record(r) => {
            let joined: Vec<&str> = r
                .fields
                .iter()
                .filter_map(|f| f.custom_attributes.get("tidemark.join"))
                .filter_map(Value::as_array)
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            let fields = r
                .fields
                .iter()
                // Derived fields are computed by tidemark, never sent by the vendor.
                .filter(|f| !f.custom_attributes.contains_key("tidemark.join"))
                .map(|f| {
                    let s = Slot {
                        name: &f.name,
                        doc: f.doc.as_deref().unwrap_or(""),
                        record: r.name.name(),
                        optional: false,
                        join_part: joined.contains(&f.name.as_str()),
                    };
                    (f.name.clone(), compile(&f.schema, &s))
                })
                .collect();
            Node::Record { own_good: !slot.name.is_empty(), fields }
        }
        Schema::Union(u) => {
            let inner = u.variants().iter().find(|s| !matches!(s, Schema::Null)).unwrap_or(&Schema::Null);
            compile(inner, &Slot { optional: true, ..slot.clone() })
        }
        Schema::Array(a) => {
            Node::List { lines: matches!(*a.items, Schema::Record(_)), item: Box::new(compile(&a.items, slot)) }
        }
        Schema::Decimal(d) => {
            let (precision, scale) = (d.precision as u32, d.scale as u32);
            if unused {
                return Node::Unused { text: super::fixed(false, 0, scale), number: true };
            }
            let meaning = decimal_meaning(slot.name, slot.doc, scale);
            let blank = if meaning == Dec::Unknown && slot.optional { EMPTY_NUMBER_RATE } else { 0.0 };
            Node::Decimal { meaning, precision, scale, blank }
        }
        Schema::TimestampMillis | Schema::TimestampMicros | Schema::Date => {
            let format = if matches!(schema, Schema::Date) { "%Y-%m-%d" } else { DATETIME };
            Node::Time(time_spec(&slot.name.to_ascii_lowercase(), slot.optional, format))
        }
        Schema::Int | Schema::Long => {
            if unused {
                return Node::Unused { text: "0".into(), number: true };
            }
            let meaning = integer_meaning(slot.name);
            let blank = if meaning == Int::Unknown && slot.optional { EMPTY_NUMBER_RATE } else { 0.0 };
            let codes = if meaning == Int::Code {
                let (special, listed) = doc_codes(slot.doc).into_iter().partition(|c| *c < 0);
                Codes { special, listed, mask: slot.name.contains("mask") || slot.doc.contains("bit") }
            } else {
                Codes::default()
            };
            Node::Integer { meaning, int32: matches!(schema, Schema::Int), blank, codes }
        }
        Schema::Float | Schema::Double => Node::Float,
        Schema::Boolean => Node::Boolean,
        Schema::Enum(e) => Node::Enum(e.symbols.clone()),
        Schema::Null => Node::Null,
        _ => {
            if unused {
                return Node::Unused { text: String::new(), number: false };
            }
            text(slot)
        }
    }
}

/// A time field named `name` (lower case), written in `format`.
fn time_spec(name: &str, optional: bool, format: &'static str) -> TimeSpec {
    // The record's main times are always set, milestones unset at their rate.
    let rate = unset_rate(name);
    let when = match name {
        "production_date" => When::Produced,
        "expire_date" => When::Expires,
        _ => When::Step,
    };
    let format = if name.ends_with("_date") && format == DATETIME { "%Y-%m-%d" } else { format };
    TimeSpec { unset: if optional { rate } else { 0.0 }, when, rank: step_rank(name), format }
}

fn text(slot: &Slot) -> Node {
    let name = slot.name.to_ascii_lowercase();
    if let Some(format) = text_time_format(&name, slot.doc, slot.join_part) {
        let time = time_spec(&name, slot.optional, DATETIME);
        return Node::TextTime { join_part: slot.join_part, format, time };
    }
    let meaning = text_meaning(&name, &slot.record.to_ascii_lowercase(), slot.doc);
    let blank = match meaning.blank() {
        Blank::Identity => EMPTY_IDENTITY_RATE,
        Blank::Name => EMPTY_NAME_RATE,
        Blank::Free => EMPTY_FREE_TEXT_RATE,
        Blank::Reason => EMPTY_REASON_RATE,
        Blank::Rare => EMPTY_RARELY_SET_RATE,
        Blank::Unknown => EMPTY_UNKNOWN_TEXT_RATE,
        Blank::Never => 0.0,
    };
    let (codes, tag) = match meaning {
        Text::Coded => (doc_codes(slot.doc), String::new()),
        Text::Code => (Vec::new(), initials(&name)),
        Text::Unknown => (Vec::new(), name.replace('_', "-")),
        _ => (Vec::new(), String::new()),
    };
    // A required string is never absent, blank or not: it is the record's key.
    Node::Text(TextSpec { meaning, blank: if slot.optional { blank } else { 0.0 }, codes, tag })
}
