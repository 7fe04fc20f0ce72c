//! Starting against a Kafka that cannot be reached: a bounded wait, then an exit code a
//! scheduler sees and an error naming the brokers and the cause; a signal during the wait is
//! not success either.

mod common;

use std::io::{BufRead, BufReader};
use std::process::Command;

use common::*;

/// A worker config whose Kafka is `bootstrap`, waiting at most `startup_timeout` for it.
fn config_for(dir: &std::path::Path, sim: &Simulator, bootstrap: &str, startup_timeout: &str) -> std::path::PathBuf {
    let topic = unique("startup");
    let text = WorkerToml::new(&sim.base_url(), &topic)
        .bootstrap(bootstrap)
        .kafka_extra(&format!("startup_timeout = \"{startup_timeout}\""))
        .stream("wdt.account_check/shop-01", "shop-01")
        .build();
    write(dir, "worker.toml", &text)
}

#[test]
fn an_unreachable_kafka_fails_the_start_naming_the_brokers_and_the_cause() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Simulator::start(dir.path(), &simulator_config(10, "0ms"));
    for (bootstrap, cause) in [("127.0.0.1:1", "connection refused"), ("nohost.invalid:9092", "host name not resolved")]
    {
        let out = run_until_caught_up(&config_for(dir.path(), &sim, bootstrap, "3s"));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{bootstrap}: a failed start exits 2: {stderr}");
        let last = stderr.lines().last().unwrap_or_default();
        assert!(
            last.contains(&format!("kafka at {bootstrap} is still not reachable after"))
                && last.contains("kafka.startup_timeout")
                && last.contains(cause),
            "{bootstrap}: the error names the brokers and says {cause:?}: {last}"
        );
        assert!(stderr.contains("kafka not reachable yet; waiting"), "it waited first: {stderr}");
    }
}

#[test]
fn a_signal_before_every_stream_caught_up_is_not_success_with_until_caught_up() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Simulator::start(dir.path(), &simulator_config(10, "0ms"));
    let cfg = config_for(dir.path(), &sim, "127.0.0.1:1", "10m");
    let mut worker = spawn_worker(&cfg, &["--until-caught-up"]);
    let _guard = KillOnDrop(vec![worker.id()]);
    let log = stderr_lines(&mut worker);
    wait_for_lines(&log, "kafka not reachable yet", 1, LOG_DEADLINE, &mut Vec::new());
    let status = Command::new("kill").args(["-TERM", &worker.id().to_string()]).status().unwrap();
    assert!(status.success());
    let mut rest = Vec::new();
    rest_of(&log, LOG_DEADLINE, &mut rest);
    let exit = wait_within(&mut worker, LOG_DEADLINE).expect("the worker exits after SIGTERM");
    assert_eq!(exit.code(), Some(3), "interrupted before caught up: {}", rest.join("\n"));
    assert!(
        rest.iter().any(|l| l.contains("interrupted before every stream caught up (0 of 1 did)")),
        "{}",
        rest.join("\n")
    );
}

#[test]
fn sigterm_stops_a_worker_whose_log_pipe_is_gone() {
    // A worker whose stderr reader died (a supervisor or a test that went away): a log line
    // that cannot be written must not take the signal handler down with it.
    let dir = tempfile::tempdir().unwrap();
    let sim = Simulator::start(dir.path(), &simulator_config(10, "0ms"));
    let cfg = config_for(dir.path(), &sim, "127.0.0.1:1", "10m");
    let mut worker = spawn_worker(&cfg, &[]);
    let mut lines = BufReader::new(worker.stderr.take().unwrap()).lines();
    for line in lines.by_ref() {
        if line.unwrap().contains("kafka not reachable yet") {
            break;
        }
    }
    drop(lines);
    let _reaper = KillOnDrop(vec![worker.id()]);
    // The handler logs "shutdown requested" into the closed pipe.
    assert!(Command::new("kill").args(["-TERM", &worker.id().to_string()]).status().unwrap().success());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let exit = loop {
        if let Some(exit) = worker.try_wait().unwrap() {
            break exit;
        }
        assert!(std::time::Instant::now() < deadline, "SIGTERM did not stop the worker within a minute");
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    assert_eq!(exit.code(), Some(0), "a requested shutdown: {exit:?}");
}

#[test]
fn a_bad_config_exits_2_even_when_stderr_is_a_broken_pipe() {
    // A supervisor whose log reader died: the final "error: ..." line cannot be written, and
    // the exit code is then all a scheduler learns. It must be the failed start's 2, not the
    // 101 of a panic in the write.
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(dir.path(), "worker.toml", "[kafka]\nbootstrap = 42\n");
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let status = Command::new(BIN)
        .args(["run", "--until-caught-up", "--config"])
        .arg(&cfg)
        .stdout(std::process::Stdio::null())
        .stderr(writer)
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(2), "a bad config exits 2: {status:?}");
}

/// A secret mounted as a file (`${file:/run/secrets/…}`, as Kubernetes and Docker mount them):
/// the worker signs with the file's text and runs; a file that is not there stops the start
/// naming the key and the path. The secret itself is never in the output.
#[test]
fn a_secret_from_a_file_runs_and_a_missing_one_names_the_key_and_the_path() {
    const SECRET: &str = "file-secret-7f3a";
    let dir = tempfile::tempdir().unwrap();
    let sim = Simulator::start(dir.path(), &simulator_config(10, "0ms").replace("test-secret", SECRET));
    let secret_file = dir.path().join("wdt_appsecret");
    std::fs::write(&secret_file, format!("{SECRET}\n")).unwrap();
    let config = |file: &std::path::Path| {
        let text = WorkerToml::new(&sim.base_url(), &unique("filesecret"))
            .appsecret(&format!("${{file:{}}}", file.display()))
            .stream("wdt.account_check/shop-01", "shop-01")
            .build();
        write(dir.path(), "worker.toml", &text)
    };
    let shown = |out: &std::process::Output| {
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
    };

    let validated = Command::new(BIN).args(["validate", "--offline", "--config"]).arg(config(&secret_file)).output();
    let validated = validated.unwrap();
    assert_eq!(validated.status.code(), Some(0), "validate: {}", shown(&validated));
    // The simulator refuses a wrong signature: a run that caught up signed with the file's text.
    let ran = run_until_caught_up(&config(&secret_file));
    assert_eq!(ran.status.code(), Some(0), "run: {}", tail(&shown(&ran), 20));
    assert!(!shown(&ran).contains(SECRET), "the secret is never printed");

    let missing = dir.path().join("not-mounted");
    for command in [&["validate", "--offline", "--config"][..], &["run", "--until-caught-up", "--config"]] {
        let out = Command::new(BIN).args(command).arg(config(&missing)).output().unwrap();
        let text = shown(&out);
        assert_eq!(out.status.code(), Some(2), "{command:?}: a failed start: {text}");
        let last = text.lines().last().unwrap_or_default();
        assert!(
            last.contains("sources.wdt.appsecret") && last.contains(&missing.display().to_string()),
            "{command:?}: the error names the key and the path: {last}"
        );
        assert!(!text.contains(SECRET), "{command:?}: the secret is never printed");
    }
}
