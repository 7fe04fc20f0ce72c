//! Exponential backoff with jitter, capped, for retrying requests and windows.

use std::cell::Cell;
use std::time::Duration;

/// Delay before retry number `attempt` (1-based): `base * 2^(attempt-1)`, capped at `cap`,
/// then scaled by a random factor in [0.5, 1.0] so many streams do not retry in lockstep.
pub fn delay(attempt: u32, base: Duration, cap: Duration) -> Duration {
    let exp = base.saturating_mul(1u32 << attempt.saturating_sub(1).min(20));
    let capped = exp.min(cap);
    capped.mul_f64(0.5 + 0.5 * unit_random())
}

thread_local! {
    static STATE: Cell<u64> = Cell::new(seed());
}

fn seed() -> u64 {
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    (t.as_nanos() as u64) ^ (std::process::id() as u64).rotate_left(32) | 1
}

/// A uniform number in [0, 1) from xorshift64*: jitter needs no cryptographic quality.
fn unit_random() -> f64 {
    STATE.with(|s| {
        let mut x = s.get();
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        s.set(x);
        (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_and_stay_within_jittered_bounds() {
        let base = Duration::from_millis(100);
        let cap = Duration::from_secs(2);
        for attempt in 1..10 {
            let ideal = (base * 2u32.pow(attempt - 1)).min(cap);
            for _ in 0..50 {
                let d = delay(attempt, base, cap);
                assert!(d >= ideal / 2 && d <= ideal, "attempt {attempt}: {d:?} vs {ideal:?}");
            }
        }
    }
}
