//! When to try a tenant again after a transient failure: exponential backoff with jitter, a
//! pure function of the attempt number and a random fraction passed in.

use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

/// The pause before the first retry, doubled for each one after it.
const FIRST_PAUSE: Duration = Duration::from_millis(500);
/// The longest pause between two attempts.
const MAX_PAUSE: Duration = Duration::from_secs(30);

/// The pause before retry number `retry` (1 for the first retry): `FIRST_PAUSE * 2^(retry-1)`,
/// at most [`MAX_PAUSE`], scaled by a factor between 0.5 and 1.0 drawn from `jitter` (in
/// `0.0..1.0`), so that workers that failed together do not come back together.
pub fn pause(retry: u32, jitter: f64) -> Duration {
    let exponent = retry.saturating_sub(1).min(16);
    let base = FIRST_PAUSE.saturating_mul(1 << exponent).min(MAX_PAUSE);
    base.mul_f64(0.5 + 0.5 * jitter.clamp(0.0, 1.0))
}

/// A random fraction in `0.0..1.0`, from the standard library's per-process random keys.
pub fn jitter() -> f64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(0);
    (h.finish() >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(retry: u32, jitter: f64, expect: &str) {
        assert_eq!(
            format!("{:?}", pause(retry, jitter)),
            expect,
            "retry {retry}, jitter {jitter}"
        );
    }

    #[test]
    fn pauses_double_and_are_capped() {
        check(1, 1.0, "500ms");
        check(1, 0.0, "250ms");
        check(2, 1.0, "1s");
        check(3, 1.0, "2s");
        check(4, 0.5, "3s");
        check(7, 1.0, "30s");
        check(40, 1.0, "30s");
        check(40, 0.0, "15s");
        // Out-of-range jitter is clamped, never a longer or negative pause.
        check(1, 7.0, "500ms");
        check(1, -1.0, "250ms");
    }

    #[test]
    fn jitter_is_a_fraction() {
        for _ in 0..100 {
            let j = jitter();
            assert!((0.0..1.0).contains(&j), "{j}");
        }
    }
}
