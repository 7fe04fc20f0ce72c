//! A simulated data set: records with the time the API filters them by, in served order.
//! Records are generated on demand from (seed, index), so a million of any shape costs a few
//! bytes each until served; records added at run time are stored as they are.

use std::collections::HashMap;
use std::sync::Arc;

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
    /// The values records are split by (shops, accounts): one per record, at random.
    #[serde(default = "default_groups")]
    pub shops: Vec<String>,
    /// Top-level fields added to every generated record (text `<field>-<index>`): a vendor
    /// that started sending something its schema lacks, to exercise drift detection.
    #[serde(default)]
    pub extra_fields: Vec<String>,
    /// For an endpoint served from its manifest: the record field (and request parameter)
    /// holding the group. Default `shop_no` where the schema has it.
    #[serde(default)]
    pub group_field: Option<String>,
}

fn default_groups() -> Vec<String> {
    vec!["shop-01".into(), "shop-02".into()]
}

/// Builds record `index`'s JSON from its own seeded generator, its time and its group.
pub type Make = Arc<dyn Fn(&mut SimRng, usize, DateTime<Utc>, &str) -> Value + Send + Sync>;

#[derive(Debug, Clone)]
enum Body {
    Generated(u32),
    Stored(Value),
}

/// One record: the instant the API's time filter sees, its group, and its content.
#[derive(Debug, Clone)]
pub struct SimRecord {
    pub at: DateTime<Utc>,
    pub group: Arc<str>,
    body: Body,
}

/// A data set in served order (by time, then generation order).
#[derive(Default)]
pub struct DataSet {
    records: Vec<SimRecord>,
    seed: u64,
    make: Option<Make>,
    /// Fields added to every generated record (see [`DataSetConfig::extra_fields`]).
    extra_fields: Vec<String>,
    /// Positions in `records` of each group's records, in served order.
    by_group: HashMap<Arc<str>, Vec<u32>>,
}

impl DataSet {
    /// `cfg.records` records with times spread uniformly over `[from, until]`.
    pub fn generate(cfg: &DataSetConfig, key: &str, now: DateTime<Utc>, make: Make) -> Result<DataSet, ConfigError> {
        let from = resolve_time(&format!("{key}.from"), &cfg.from, now)?;
        let until = resolve_time(&format!("{key}.until"), &cfg.until, now)?;
        if until <= from {
            return Err(ConfigError::invalid(format!("{key}.until"), "must be after `from`"));
        }
        if cfg.shops.is_empty() {
            return Err(ConfigError::invalid(format!("{key}.shops"), "needs at least one value"));
        }
        if cfg.records > u32::MAX as usize {
            return Err(ConfigError::invalid(format!("{key}.records"), "at most 4294967295"));
        }
        let groups: Vec<Arc<str>> = cfg.shops.iter().map(|s| Arc::from(s.as_str())).collect();
        let span = (until - from).num_seconds() as u64;
        let mut rng = SimRng::new(cfg.seed);
        let mut records: Vec<SimRecord> = (0..cfg.records)
            .map(|i| SimRecord {
                at: from + Duration::seconds(rng.below(span + 1) as i64),
                group: groups[rng.below(groups.len() as u64) as usize].clone(),
                body: Body::Generated(i as u32),
            })
            .collect();
        records.sort_by_key(|r| (r.at, index_of(r)));
        let mut set = DataSet {
            records,
            seed: cfg.seed,
            make: Some(make),
            extra_fields: cfg.extra_fields.clone(),
            by_group: HashMap::new(),
        };
        set.reindex();
        Ok(set)
    }

    fn reindex(&mut self) {
        self.by_group.clear();
        for (pos, r) in self.records.iter().enumerate() {
            self.by_group.entry(r.group.clone()).or_default().push(pos as u32);
        }
    }

    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// A record's JSON (generated records are rebuilt identically every time).
    pub fn json(&self, r: &SimRecord) -> Value {
        match &r.body {
            Body::Stored(v) => v.clone(),
            Body::Generated(i) => {
                let make = self.make.as_ref().expect("generated records have a generator");
                let mut rng = SimRng::new(record_seed(self.seed, *i));
                let mut v = make(&mut rng, *i as usize, r.at, &r.group);
                if let Value::Object(o) = &mut v {
                    for f in &self.extra_fields {
                        o.insert(f.clone(), Value::String(format!("{f}-{i}")));
                    }
                }
                v
            }
        }
    }

    /// Records whose time is in the closed interval `[start, end]`, of `group` if given.
    pub fn window(&self, start: DateTime<Utc>, end: DateTime<Utc>, group: Option<&str>) -> Vec<&SimRecord> {
        match group {
            None => {
                let lo = self.records.partition_point(|r| r.at < start);
                let hi = self.records.partition_point(|r| r.at <= end);
                self.records[lo..hi.max(lo)].iter().collect()
            }
            Some(g) => {
                let Some(positions) = self.by_group.get(g) else { return Vec::new() };
                let lo = positions.partition_point(|&p| self.records[p as usize].at < start);
                let hi = positions.partition_point(|&p| self.records[p as usize].at <= end);
                positions[lo..hi.max(lo)].iter().map(|&p| &self.records[p as usize]).collect()
            }
        }
    }

    /// Adds a stored record, keeping the served order (after existing records of the same time).
    pub fn insert(&mut self, at: DateTime<Utc>, group: &str, json: Value) {
        let pos = self.records.partition_point(|r| r.at <= at);
        self.records.insert(pos, SimRecord { at, group: Arc::from(group), body: Body::Stored(json) });
        self.reindex();
    }

    /// A copy of the first record of `group` in `[start, end]`, under a new key, placed at
    /// `start`: every later record of the window moves one place down while it is paged.
    /// `retime` writes the new time into the vendor's own time fields.
    pub fn insert_shifting_copy(
        &mut self,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
        group: Option<&str>,
        key_field: &str,
        retime: impl Fn(&mut Value, DateTime<Utc>),
    ) -> bool {
        let Some(first) = self.window(start, end, group).first().map(|r| (*r).clone()) else { return false };
        let mut json = self.json(&first);
        let n = self.records.len();
        let key = match &json[key_field] {
            Value::String(s) => format!("{s}-late{n}"),
            other => format!("{other}-late{n}"),
        };
        json[key_field] = Value::String(key);
        retime(&mut json, start);
        let pos = self.records.partition_point(|r| r.at < start);
        self.records.insert(pos, SimRecord { at: start, group: first.group, body: Body::Stored(json) });
        self.reindex();
        true
    }

    /// Every record's JSON, in served order.
    pub fn all(&self) -> Vec<Value> {
        self.records.iter().map(|r| self.json(r)).collect()
    }
}

/// Record `index`'s own seed. Mixed, not `seed ^ index * step`: SplitMix64 steps its state by
/// that same constant, so such seeds made record i's k-th value record i+1's (k-1)-th, and
/// neighbouring records shared amounts and rare values.
fn record_seed(seed: u64, index: u32) -> u64 {
    let mut z = seed ^ (u64::from(index) + 1).wrapping_mul(0xD6E8_FEB8_6659_FD93);
    z = (z ^ (z >> 32)).wrapping_mul(0xD6E8_FEB8_6659_FD93);
    z = (z ^ (z >> 32)).wrapping_mul(0xD6E8_FEB8_6659_FD93);
    z ^ (z >> 32)
}

fn index_of(r: &SimRecord) -> u32 {
    match r.body {
        Body::Generated(i) => i,
        Body::Stored(_) => u32::MAX,
    }
}

/// The slice of `items` on page `page_index` (0-based) of size `size`.
pub fn page<T: Clone>(items: &[T], page_index: u64, size: u64) -> Vec<T> {
    items.iter().skip((page_index * size) as usize).take(size as usize).cloned().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn set(n: usize) -> DataSet {
        let cfg = DataSetConfig {
            seed: 4,
            records: n,
            from: "2024-01-01 00:00:00".into(),
            until: "2024-01-02 00:00:00".into(),
            shops: vec!["a".into(), "b".into()],
            extra_fields: Vec::new(),
            group_field: None,
        };
        let make: Make = Arc::new(|rng, i, _, g| json!({"id": i, "g": g, "v": rng.below(1000)}));
        DataSet::generate(&cfg, "t", Utc::now(), make).unwrap()
    }

    #[test]
    fn generated_records_are_stable_and_windows_use_the_index() {
        let s = set(1000);
        assert_eq!(s.all(), set(1000).all(), "same seed, same records");
        let start = crate::domain::time::parse_beijing("2024-01-01 06:00:00").unwrap();
        let end = crate::domain::time::parse_beijing("2024-01-01 11:59:59").unwrap();
        let a = s.window(start, end, Some("a"));
        let brute: Vec<_> = s.records.iter().filter(|r| r.at >= start && r.at <= end && &*r.group == "a").collect();
        assert_eq!(a.len(), brute.len());
        assert!(a.iter().zip(&brute).all(|(x, y)| s.json(x) == s.json(y)));
        assert!(a.len() > 100);
    }

    /// Each record draws its own values: no record repeats its neighbour's sequence shifted by
    /// one (as seeds a SplitMix64 step apart did).
    #[test]
    fn neighbouring_records_do_not_share_their_draws() {
        let draws = |i: u32| {
            let mut rng = SimRng::new(record_seed(4, i));
            (0..8).map(|_| rng.next_u64()).collect::<Vec<_>>()
        };
        for i in 0..1000 {
            let (a, b) = (draws(i), draws(i + 1));
            assert!(a.iter().all(|x| !b.contains(x)), "records {i} and {} share a draw", i + 1);
        }
    }

    #[test]
    fn extra_fields_are_added_to_every_generated_record() {
        let plain = set(10);
        let mut cfg: DataSetConfig = toml::from_str(
            "seed = 4\nrecords = 10\nfrom = \"2024-01-01 00:00:00\"\nuntil = \"2024-01-02 00:00:00\"\nshops = [\"a\", \"b\"]\nextra_fields = [\"new_field\"]",
        )
        .unwrap();
        let make: Make = Arc::new(|rng, i, _, g| json!({"id": i, "g": g, "v": rng.below(1000)}));
        let drifted = DataSet::generate(&cfg, "t", Utc::now(), make.clone()).unwrap();
        for (p, d) in plain.all().iter().zip(drifted.all()) {
            let mut d = d.clone();
            let extra = d.as_object_mut().unwrap().remove("new_field").expect("the extra field");
            assert!(extra.as_str().unwrap().starts_with("new_field-"), "{extra}");
            assert_eq!(p, &d, "otherwise the same record");
        }
        cfg.extra_fields.clear();
        assert_eq!(DataSet::generate(&cfg, "t", Utc::now(), make).unwrap().all(), plain.all());
    }

    #[test]
    fn inserted_records_keep_the_order_and_the_index() {
        let mut s = set(100);
        let at = crate::domain::time::parse_beijing("2024-01-01 12:00:00").unwrap();
        s.insert(at, "b", json!({"id": "new"}));
        let w = s.window(at, at, Some("b"));
        assert!(w.iter().any(|r| s.json(r)["id"] == "new"));
        assert_eq!(s.len(), 101);
    }
}
