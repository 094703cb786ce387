//! Exponential restart backoff with a cap and a reset after a stable run.

use std::time::Duration;

/// 100 ms → 200 ms → … → 5 s, back to 100 ms once a set ran for 30 s.
#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    stable_after: Duration,
    next: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self::new(
            Duration::from_millis(100),
            Duration::from_secs(5),
            Duration::from_secs(30),
        )
    }
}

impl Backoff {
    /// A backoff starting at `initial`, doubling up to `max`, reset after a run of
    /// `stable_after`.
    pub fn new(initial: Duration, max: Duration, stable_after: Duration) -> Self {
        Self {
            initial,
            max: max.max(initial),
            stable_after,
            next: initial,
        }
    }

    /// The delay before the next start, given how long the failed set was up.
    pub fn delay(&mut self, uptime: Duration) -> Duration {
        if uptime >= self.stable_after {
            self.next = self.initial;
        }
        let d = self.next;
        self.next = self.next.saturating_mul(2).min(self.max);
        d
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_caps_and_resets_after_a_stable_run() {
        let ms = Duration::from_millis;
        let mut b = Backoff::default();
        let quick = ms(10);
        let got: Vec<u128> = (0..8).map(|_| b.delay(quick).as_millis()).collect();
        assert_eq!(got, [100, 200, 400, 800, 1600, 3200, 5000, 5000]);
        assert_eq!(b.delay(Duration::from_secs(30)), ms(100));
        assert_eq!(b.delay(quick), ms(200));
    }
}
