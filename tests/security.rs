//! A broker that requires TLS and SCRAM-SHA-512 (`dev/kafka-secure`): the worker backfills
//! over SASL_SSL exactly once, and a wrong password, a wrong CA and a plaintext attempt are
//! each refused at start with a clear error, no secret in any line.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::*;

const STREAMS: &[(&str, &str)] = &[("wdt.account_check/shop-01", "shop-01"), ("wdt.account_check/shop-02", "shop-02")];

/// A worker config against the secure broker; the password comes from `KAFKA_PASSWORD`.
fn secure_config(dir: &Path, sim: &Simulator, topic: &str, protocol: &str, ca: &str) -> std::path::PathBuf {
    let k = secure_kafka();
    let text = WorkerToml::new(&sim.base_url(), topic)
        .bootstrap(&k.bootstrap)
        .kafka_extra("startup_timeout = \"8s\"")
        .streams(STREAMS)
        .extra(&format!(
            "[kafka.properties]\n\"security.protocol\" = \"{protocol}\"\n\"sasl.mechanisms\" = \"SCRAM-SHA-512\"\n\"sasl.username\" = \"{}\"\n\"sasl.password\" = \"${{KAFKA_PASSWORD}}\"\n\"ssl.ca.location\" = \"{ca}\"\n",
            k.username
        ))
        .build();
    write(dir, "secure.toml", &text)
}

fn run_with_password(config: &Path, password: &str) -> Output {
    Command::new(BIN)
        .args(["run", "--until-caught-up", "--config"])
        .arg(config)
        .env("RUST_LOG", "debug,hyper=info,reqwest=info,apache_avro=info")
        .env("KAFKA_PASSWORD", password)
        .output()
        .unwrap()
}

fn secure_reader() -> Vec<(&'static str, &'static str)> {
    let k = secure_kafka();
    vec![
        ("bootstrap.servers", k.bootstrap.as_str()),
        ("security.protocol", "SASL_SSL"),
        ("sasl.mechanisms", "SCRAM-SHA-512"),
        ("sasl.username", k.username.as_str()),
        ("sasl.password", k.password.as_str()),
        ("ssl.ca.location", k.ca.as_str()),
    ]
}

#[tokio::test(flavor = "multi_thread")]
async fn the_worker_backfills_over_sasl_ssl_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Simulator::start(dir.path(), &simulator_config(400, "0ms"));
    let expected = sim.records("wdt.account_check").await;
    let topic = unique("secure");
    let k = secure_kafka();
    let cfg = secure_config(dir.path(), &sim, &topic, "SASL_SSL", &k.ca);
    let out = run_with_password(&cfg, &k.password);
    let all = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{all}");
    assert_exactly(&consume_with(&secure_reader(), &topic), &expected, "wdt.account_check.avsc", "account_check_no");
    // A second run resumes from the watermarks it reads over SASL_SSL and adds nothing.
    let again = run_with_password(&cfg, &k.password);
    let all_again = format!("{}{}", String::from_utf8_lossy(&again.stdout), String::from_utf8_lossy(&again.stderr));
    assert!(again.status.success(), "{all_again}");
    assert!(all_again.contains("resumed=2"), "it resumed from the watermarks: {all_again}");
    assert_eq!(consume_with(&secure_reader(), &topic).len(), expected.len());
    for out in [&all, &all_again] {
        assert!(!out.contains(&k.password), "the password is never printed, even at debug level");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_password_a_wrong_ca_and_plaintext_are_each_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Simulator::start(dir.path(), &simulator_config(20, "0ms"));
    let k = secure_kafka();
    let wrong_password = "not-the-password-5c1e";
    let cases = [
        ("SASL_SSL", k.ca.as_str(), wrong_password, "authentication failed"),
        ("SASL_SSL", k.wrong_ca.as_str(), k.password.as_str(), "TLS handshake failed"),
        ("SASL_PLAINTEXT", k.ca.as_str(), k.password.as_str(), "is security.protocol right?"),
    ];
    for (protocol, ca, password, cause) in cases {
        let topic = unique("refused");
        let out = run_with_password(&secure_config(dir.path(), &sim, &topic, protocol, ca), password);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{protocol} {ca}: the start fails: {stderr}");
        let last = stderr.lines().last().unwrap_or_default();
        assert!(last.contains(&format!("kafka at {}", k.bootstrap)) && last.contains(cause), "{cause}: {last}");
        for secret in [wrong_password, k.password.as_str()] {
            assert!(
                !stderr.contains(secret) && !String::from_utf8_lossy(&out.stdout).contains(secret),
                "{cause}: a password was printed"
            );
        }
        // The start fails before topics are created: the data topic's absence shows nothing was
        // written (the broker creates no topic on a produce).
        assert!(!topic_exists_with(&secure_reader(), &topic), "{cause}: nothing was written");
    }
}
