//! A simulated data set: records with the time the API filters them by, in served order.

use chrono::{DateTime, Duration, Utc};
use serde::Deserialize;
use serde_json::Value;

use super::resolve_time;
use super::rng::SimRng;
use crate::config::ConfigError;

/// Size and shape of a generated data set.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataSetConfig {
    #[serde(default)]
    pub seed: u64,
    pub records: usize,
    /// Earliest record time: Beijing `yyyy-MM-dd HH:mm:ss`, or a duration before start (`4d`).
    pub from: String,
    /// Latest record time, same forms.
    pub until: String,
    /// The values records are split by (shops, accounts): one per record, round the list.
    #[serde(default = "default_groups")]
    pub shops: Vec<String>,
}

fn default_groups() -> Vec<String> {
    vec!["shop-01".into(), "shop-02".into()]
}

/// One record and the instant the API's time filter sees.
#[derive(Debug, Clone)]
pub struct SimRecord {
    pub at: DateTime<Utc>,
    pub group: String,
    pub json: Value,
}

/// A generated data set in served order (by time, then generation order).
#[derive(Debug, Default)]
pub struct DataSet {
    pub records: Vec<SimRecord>,
}

impl DataSet {
    /// Generates `cfg.records` records: `make(rng, index, at, group)` builds each one, with
    /// `at` spread uniformly over `[from, until]`.
    pub fn generate(
        cfg: &DataSetConfig,
        key: &str,
        now: DateTime<Utc>,
        mut make: impl FnMut(&mut SimRng, usize, DateTime<Utc>, &str) -> Value,
    ) -> Result<DataSet, ConfigError> {
        let from = resolve_time(&format!("{key}.from"), &cfg.from, now)?;
        let until = resolve_time(&format!("{key}.until"), &cfg.until, now)?;
        if until <= from {
            return Err(ConfigError::invalid(format!("{key}.until"), "must be after `from`"));
        }
        if cfg.shops.is_empty() {
            return Err(ConfigError::invalid(format!("{key}.shops"), "needs at least one value"));
        }
        let span = (until - from).num_seconds() as u64;
        let mut rng = SimRng::new(cfg.seed);
        let mut records: Vec<(usize, SimRecord)> = (0..cfg.records)
            .map(|i| {
                let at = from + Duration::seconds(rng.below(span + 1) as i64);
                let group = cfg.shops[rng.below(cfg.shops.len() as u64) as usize].clone();
                let json = make(&mut rng, i, at, &group);
                (i, SimRecord { at, group, json })
            })
            .collect();
        records.sort_by_key(|(i, r)| (r.at, *i));
        Ok(DataSet { records: records.into_iter().map(|(_, r)| r).collect() })
    }

    /// Records whose time is in the closed interval `[start, end]` and that pass `keep`.
    pub fn in_window(
        &self,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
        keep: impl Fn(&SimRecord) -> bool,
    ) -> Vec<&Value> {
        self.records.iter().filter(|r| r.at >= start && r.at <= end && keep(r)).map(|r| &r.json).collect()
    }

    /// Adds a record, keeping the served order (after existing records of the same time).
    pub fn insert(&mut self, at: DateTime<Utc>, group: &str, json: Value) {
        let pos = self.records.partition_point(|r| r.at <= at);
        self.records.insert(pos, SimRecord { at, group: group.to_owned(), json });
    }

    /// A copy of the first record in `[start, end]` that `keep` selects (the request's
    /// filter), under a new key, placed at `start`: every later record of the window moves
    /// one place down while it is paged. `retime` writes the new time into the vendor's own
    /// time fields.
    pub fn insert_shifting_copy(
        &mut self,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
        key_field: &str,
        keep: impl Fn(&SimRecord) -> bool,
        retime: impl Fn(&mut Value, DateTime<Utc>),
    ) -> bool {
        let Some(first) = self.records.iter().find(|r| r.at >= start && r.at <= end && keep(r)) else { return false };
        let mut json = first.json.clone();
        let group = first.group.clone();
        let n = self.records.len();
        let key = match &json[key_field] {
            Value::String(s) => format!("{s}-late{n}"),
            other => format!("{other}-late{n}"),
        };
        json[key_field] = Value::String(key);
        retime(&mut json, start);
        let pos = self.records.partition_point(|r| r.at < start);
        self.records.insert(pos, SimRecord { at: start, group, json });
        true
    }

    pub fn all(&self) -> Vec<Value> {
        self.records.iter().map(|r| r.json.clone()).collect()
    }
}

/// The slice of `items` on page `page_index` (0-based) of size `size`.
pub fn page<T: Clone>(items: &[T], page_index: u64, size: u64) -> Vec<T> {
    items.iter().skip((page_index * size) as usize).take(size as usize).cloned().collect()
}
