//! Kafka outages said once, again every 30 s while they last, and when they end.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rdkafka::error::{KafkaError, RDKafkaErrorCode};

/// How often a continuing outage is mentioned again.
pub const REMIND_EVERY: Duration = Duration::from_secs(30);

/// What an outage log has to say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Line {
    /// Kafka was reachable and is not any more.
    Lost,
    /// Still not reachable, for this long.
    StillLost { down_for: Duration },
    /// Reachable again after this long.
    Back { down_for: Duration },
}

/// Whether Kafka is lost and since when, and when that was last said. Pure: time is passed in.
#[derive(Debug, Default)]
pub struct OutageLog {
    /// When the outage began and when it was last said, while there is one.
    lost: Option<(Instant, Instant)>,
}

impl OutageLog {
    pub const fn new() -> OutageLog {
        OutageLog { lost: None }
    }

    pub fn is_lost(&self) -> bool {
        self.lost.is_some()
    }

    /// Every broker is down at `now`: the first time, a line; then one per [`REMIND_EVERY`].
    pub fn down(&mut self, now: Instant) -> Option<Line> {
        match &mut self.lost {
            None => {
                self.lost = Some((now, now));
                Some(Line::Lost)
            }
            Some((since, said)) if now.saturating_duration_since(*said) >= REMIND_EVERY => {
                *said = now;
                Some(Line::StillLost { down_for: now.saturating_duration_since(*since) })
            }
            Some(_) => None,
        }
    }

    /// Kafka answered at `now`: a line if it had been lost.
    pub fn up(&mut self, now: Instant) -> Option<Line> {
        let (since, _) = self.lost.take()?;
        Some(Line::Back { down_for: now.saturating_duration_since(since) })
    }
}

/// The process's outage log. librdkafka calls every client's error callback from its own
/// threads each time a reconnect fails, dozens of times a second across a process's clients;
/// this one log, behind a lock, turns them into a line per outage.
static OUTAGE: Mutex<OutageLog> = Mutex::new(OutageLog::new());
/// Whether [`OUTAGE`] holds an outage: lets [`reachable`], called per record, skip the lock.
static LOST: AtomicBool = AtomicBool::new(false);

/// A client's error callback: end of partition is no error; "all brokers down" goes to the
/// outage log, as do the connection failures that come with it while an outage lasts; the
/// rest is logged as it comes.
pub fn client_error(error: &KafkaError, reason: &str) {
    if super::is_partition_eof(error) {
        return;
    }
    if error.rdkafka_error_code() == Some(RDKafkaErrorCode::AllBrokersDown) {
        let line = with_log(|log| log.down(Instant::now()));
        say(line, reason);
    } else if LOST.load(Ordering::Acquire) && is_connection_failure(error) {
        tracing::debug!(error = %error, reason, "kafka client error during an outage");
    } else if is_connection_failure(error) {
        // One broker of several, or the moment before "all brokers down": not an outage yet.
        tracing::warn!(error = %error, reason, "kafka broker connection failed");
    } else {
        tracing::error!(error = %error, reason, "kafka client error");
    }
}

/// Kafka answered: ends an outage, if there was one. Cheap when there was none: callers call
/// it on every sign of an answer they see anyway.
///
/// librdkafka reports no event when the brokers return, so the end of an outage is read off
/// the first thing that works again: a producer's statistics naming a broker UP (the sink
/// asks for them every 5 s and is polled when idle), a committed transaction, a consumed
/// record or end of partition. Waiting for the error callbacks to fall silent would say
/// "back" late, or wrongly when librdkafka merely backs off between attempts.
pub fn reachable() {
    if LOST.load(Ordering::Acquire) {
        let line = with_log(|log| log.up(Instant::now()));
        say(line, "");
    }
}

fn with_log(f: impl FnOnce(&mut OutageLog) -> Option<Line>) -> Option<Line> {
    // A panic elsewhere while holding the lock leaves a log that is still consistent.
    let mut log = OUTAGE.lock().unwrap_or_else(|e| e.into_inner());
    let line = f(&mut log);
    LOST.store(log.is_lost(), Ordering::Release);
    line
}

fn say(line: Option<Line>, reason: &str) {
    match line {
        Some(Line::Lost) => tracing::warn!(reason, "kafka lost: every broker is down; retrying"),
        Some(Line::StillLost { down_for }) => {
            tracing::warn!(down_for_s = down_for.as_secs(), reason, "kafka still lost; retrying")
        }
        Some(Line::Back { down_for }) => {
            tracing::info!(down_for_s = down_for.as_secs(), "kafka back")
        }
        None => {}
    }
}

/// Failures to reach a broker, which an outage repeats on every reconnect attempt. Consumers
/// also return them from `poll`/`recv`: those belong in [`client_error`] too.
pub fn is_connection_failure(error: &KafkaError) -> bool {
    matches!(
        error.rdkafka_error_code(),
        Some(RDKafkaErrorCode::BrokerTransportFailure | RDKafkaErrorCode::Resolve | RDKafkaErrorCode::AllBrokersDown)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn many_errors_in_a_short_span_are_one_line() {
        let (mut log, t0) = (OutageLog::new(), Instant::now());
        assert_eq!(log.down(t0), Some(Line::Lost));
        for ms in (20..29_000).step_by(20) {
            assert_eq!(log.down(t0 + Duration::from_millis(ms)), None, "at {ms} ms");
        }
        assert!(log.is_lost());
    }

    #[test]
    fn a_lasting_outage_is_mentioned_again_every_30_s_with_its_length() {
        let (mut log, t0) = (OutageLog::new(), Instant::now());
        log.down(t0);
        let at = |s: u64| t0 + Duration::from_secs(s);
        assert_eq!(log.down(at(29)), None);
        assert_eq!(log.down(at(31)), Some(Line::StillLost { down_for: Duration::from_secs(31) }));
        assert_eq!(log.down(at(45)), None, "30 s from the reminder, not from the start");
        assert_eq!(log.down(at(61)), Some(Line::StillLost { down_for: Duration::from_secs(61) }));
    }

    #[test]
    fn the_return_says_how_long_kafka_was_gone_once() {
        let (mut log, t0) = (OutageLog::new(), Instant::now());
        assert_eq!(log.up(t0), None, "nothing to say while all is well");
        log.down(t0);
        log.down(t0 + Duration::from_secs(40));
        assert_eq!(log.up(t0 + Duration::from_secs(95)), Some(Line::Back { down_for: Duration::from_secs(95) }));
        assert_eq!(log.up(t0 + Duration::from_secs(96)), None);
        assert!(!log.is_lost());
        assert_eq!(log.down(t0 + Duration::from_secs(100)), Some(Line::Lost), "a new outage is told again");
    }
}
