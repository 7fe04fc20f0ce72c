//! `WorkerToml`: the worker config of the 旺店通 tests (openapi2, or via 奇门), built from defaults plus what a test changes.

use std::fmt::Write;

use super::kafka;

/// A worker config with one simulated 旺店通 source, `wdt` (or, after [`WorkerToml::qimen`],
/// `qimen`), and the given streams over it. The defaults are what most tests use; each setter
/// names what a test changes.
pub struct WorkerToml {
    base_url: String,
    qimen: bool,
    topic: String,
    /// `None` is the test run's broker, looked up only when built (tests that point the
    /// worker elsewhere need no broker).
    bootstrap: Option<String>,
    transactional_id: String,
    watermark_topic: String,
    dead_letter_topic: Option<String>,
    partitions: u32,
    transaction_timeout: Option<String>,
    kafka_extra: String,
    appsecret: String,
    request_timeout: Option<String>,
    requests_per_second: u32,
    max_in_flight: Option<u32>,
    streams: Vec<(String, String)>,
    start: String,
    lookback: String,
    max_span: String,
    page_size: Option<u32>,
    stream_extra: String,
    extra: String,
}

impl WorkerToml {
    /// The simulator at `base_url`, records to `topic`; `{topic}-txn` and `{topic}-wm` as the
    /// transactional id and watermark topic, and no streams yet.
    pub fn new(base_url: &str, topic: &str) -> WorkerToml {
        WorkerToml {
            base_url: base_url.to_owned(),
            qimen: false,
            topic: topic.to_owned(),
            bootstrap: None,
            transactional_id: format!("{topic}-txn"),
            watermark_topic: format!("{topic}-wm"),
            dead_letter_topic: None,
            partitions: 3,
            transaction_timeout: None,
            kafka_extra: String::new(),
            appsecret: "test-secret".to_owned(),
            request_timeout: None,
            requests_per_second: 200,
            max_in_flight: None,
            streams: Vec::new(),
            start: "6d".to_owned(),
            lookback: "10m".to_owned(),
            max_span: "24h".to_owned(),
            page_size: None,
            stream_extra: String::new(),
            extra: String::new(),
        }
    }

    /// The source is `qimen`, of kind `qimen.stockin_refund`, with the credentials
    /// [`qimen_simulator`](super::qimen_simulator) serves.
    pub fn qimen(mut self) -> Self {
        self.qimen = true;
        self
    }

    pub fn bootstrap(mut self, bootstrap: &str) -> Self {
        self.bootstrap = Some(bootstrap.to_owned());
        self
    }

    pub fn transactional_id(mut self, id: &str) -> Self {
        self.transactional_id = id.to_owned();
        self
    }

    pub fn watermark_topic(mut self, topic: &str) -> Self {
        self.watermark_topic = topic.to_owned();
        self
    }

    pub fn dead_letter_topic(mut self, topic: &str) -> Self {
        self.dead_letter_topic = Some(topic.to_owned());
        self
    }

    /// Partitions of both the watermark topic and the record topic.
    pub fn partitions(mut self, n: u32) -> Self {
        self.partitions = n;
        self
    }

    pub fn transaction_timeout(mut self, timeout: &str) -> Self {
        self.transaction_timeout = Some(timeout.to_owned());
        self
    }

    /// More lines for `[kafka]` (e.g. `startup_timeout`); may be called again.
    pub fn kafka_extra(mut self, lines: &str) -> Self {
        self.kafka_extra.push_str(lines);
        self.kafka_extra.push('\n');
        self
    }

    pub fn appsecret(mut self, secret: &str) -> Self {
        self.appsecret = secret.to_owned();
        self
    }

    pub fn request_timeout(mut self, timeout: &str) -> Self {
        self.request_timeout = Some(timeout.to_owned());
        self
    }

    pub fn requests_per_second(mut self, n: u32) -> Self {
        self.requests_per_second = n;
        self
    }

    pub fn max_in_flight(mut self, n: u32) -> Self {
        self.max_in_flight = Some(n);
        self
    }

    /// One more stream, `id`, over shop `shop`.
    pub fn stream(mut self, id: &str, shop: &str) -> Self {
        self.streams.push((id.to_owned(), shop.to_owned()));
        self
    }

    /// More streams, as `(id, shop)` pairs.
    pub fn streams(self, streams: &[(&str, &str)]) -> Self {
        streams.iter().fold(self, |b, (id, shop)| b.stream(id, shop))
    }

    pub fn start(mut self, start: &str) -> Self {
        self.start = start.to_owned();
        self
    }

    pub fn lookback(mut self, lookback: &str) -> Self {
        self.lookback = lookback.to_owned();
        self
    }

    pub fn max_span(mut self, span: &str) -> Self {
        self.max_span = span.to_owned();
        self
    }

    pub fn page_size(mut self, n: u32) -> Self {
        self.page_size = Some(n);
        self
    }

    /// More lines for every stream (e.g. `poll_interval`).
    pub fn stream_extra(mut self, lines: &str) -> Self {
        self.stream_extra.push_str(lines);
        self.stream_extra.push('\n');
        self
    }

    /// Whole sections appended after the streams (other sources and their streams,
    /// `[metrics]`, `[kafka.properties]`); may be called again.
    pub fn extra(mut self, sections: &str) -> Self {
        self.extra.push('\n');
        self.extra.push_str(sections);
        self
    }

    pub fn build(self) -> String {
        let bootstrap = self.bootstrap.unwrap_or_else(|| kafka().to_owned());
        let mut s = String::new();
        writeln!(s, "[kafka]\nbootstrap = \"{bootstrap}\"").unwrap();
        writeln!(s, "transactional_id = \"{}\"\nwatermark_topic = \"{}\"", self.transactional_id, self.watermark_topic)
            .unwrap();
        if let Some(t) = &self.dead_letter_topic {
            writeln!(s, "dead_letter_topic = \"{t}\"").unwrap();
        }
        writeln!(s, "watermark_partitions = {0}\ntopic_partitions = {0}", self.partitions).unwrap();
        if let Some(t) = &self.transaction_timeout {
            writeln!(s, "transaction_timeout = \"{t}\"").unwrap();
        }
        s.push_str(&self.kafka_extra);
        let source = if self.qimen { "qimen" } else { "wdt" };
        if self.qimen {
            writeln!(
                s,
                "\n[sources.qimen]\nkind = \"qimen.stockin_refund\"\nbase_url = \"{}/router/qm\"",
                self.base_url
            )
            .unwrap();
            writeln!(s, "app_key = \"qk\"\napp_secret = \"{}\"\ntarget_app_key = \"t\"\nsid = \"s\"", self.appsecret)
                .unwrap();
        } else {
            writeln!(s, "\n[sources.wdt]\nkind = \"wdt.account_check\"\nbase_url = \"{}\"", self.base_url).unwrap();
            writeln!(s, "sid = \"test-sid\"\nappkey = \"test-appkey\"\nappsecret = \"{}\"", self.appsecret).unwrap();
        }
        if let Some(t) = &self.request_timeout {
            writeln!(s, "request_timeout = \"{t}\"").unwrap();
        }
        writeln!(s, "requests_per_second = {}", self.requests_per_second).unwrap();
        if let Some(n) = self.max_in_flight {
            writeln!(s, "max_in_flight = {n}").unwrap();
        }
        for (id, shop) in &self.streams {
            writeln!(s, "\n[[streams]]\nid = \"{id}\"\nsource = \"{source}\"\ntopic = \"{}\"", self.topic).unwrap();
            writeln!(s, "start = \"{}\"\nlookback = \"{}\"\nsettle = \"1m\"", self.start, self.lookback).unwrap();
            writeln!(s, "max_span = \"{}\"", self.max_span).unwrap();
            if let Some(n) = self.page_size {
                writeln!(s, "page_size = {n}").unwrap();
            }
            s.push_str(&self.stream_extra);
            writeln!(s, "[streams.params]\nshop_no = \"{shop}\"").unwrap();
        }
        s.push_str(&self.extra);
        s
    }
}
