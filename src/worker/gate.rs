//! The request gate of one vendor credential: its rate limit, shared by every stream that
//! uses the credential, and the pause a vendor throttle imposes on all of them.

use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::Duration;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use tokio::time::Instant;

/// Rate limit and throttle pause for one credential.
pub struct CredentialGate {
    limiter: DefaultDirectRateLimiter,
    paused_until: Mutex<Option<Instant>>,
}

impl CredentialGate {
    /// At most `per_second` requests a second, evenly spaced (no bursts: vendors count calls
    /// in any second, and a burst at a second's edge would double the rate they see).
    pub fn new(per_second: NonZeroU32) -> Self {
        let quota = Quota::per_second(per_second).allow_burst(NonZeroU32::MIN);
        CredentialGate { limiter: RateLimiter::direct(quota), paused_until: Mutex::new(None) }
    }

    /// Waits until a request may be sent: after any throttle pause, within the rate limit.
    pub async fn acquire(&self) {
        loop {
            let until = *self.paused_until.lock().expect("gate lock");
            match until {
                Some(u) if u > Instant::now() => tokio::time::sleep_until(u).await,
                _ => break,
            }
        }
        self.limiter.until_ready().await;
    }

    /// Pauses every request on this credential for `d` (a vendor throttle's ban).
    pub fn pause(&self, d: Duration) {
        let until = Instant::now() + d;
        let mut p = self.paused_until.lock().expect("gate lock");
        if p.is_none_or(|cur| cur < until) {
            *p = Some(until);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_pause_holds_every_caller_until_it_ends() {
        let gate = std::sync::Arc::new(CredentialGate::new(NonZeroU32::new(1000).unwrap()));
        gate.pause(Duration::from_secs(12));
        let start = Instant::now();
        let g2 = gate.clone();
        let other = tokio::spawn(async move {
            g2.acquire().await;
            Instant::now()
        });
        gate.acquire().await;
        assert!(Instant::now() - start >= Duration::from_secs(12));
        assert!(other.await.unwrap() - start >= Duration::from_secs(12), "the other stream waits too");
    }

    #[tokio::test(start_paused = true)]
    async fn a_shorter_pause_does_not_cut_a_longer_one() {
        let gate = CredentialGate::new(NonZeroU32::new(1000).unwrap());
        gate.pause(Duration::from_secs(10));
        gate.pause(Duration::from_secs(2));
        let start = Instant::now();
        gate.acquire().await;
        assert!(Instant::now() - start >= Duration::from_secs(10));
    }
}
