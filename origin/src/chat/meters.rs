//! Meters the rooms keep (pure): a token bucket for message rates, and a
//! sliding minimum for peaks that count only once they held.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// A token bucket.
pub struct Bucket {
    tokens: f64,
    rate: f64,
    burst: f64,
    at: Instant,
}

impl Bucket {
    /// Full, refilling at `rate` per second up to `burst`.
    pub fn new(rate: f64, burst: f64) -> Bucket {
        Bucket {
            tokens: burst,
            rate,
            burst,
            at: Instant::now(),
        }
    }

    /// Takes a token if there is one.
    pub fn take(&mut self) -> bool {
        let now = Instant::now();
        self.tokens =
            (self.tokens + now.duration_since(self.at).as_secs_f64() * self.rate).min(self.burst);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// The least of the values pushed within a window (a monotonic queue:
/// O(1) per push, amortized).
#[derive(Default)]
pub struct SlidingMin {
    queue: VecDeque<(tokio::time::Instant, u64)>,
}

impl SlidingMin {
    /// Adds `v` at `now`; the least value pushed within `window` of `now`.
    pub fn push(&mut self, now: tokio::time::Instant, v: u64, window: Duration) -> u64 {
        while self.queue.back().is_some_and(|b| b.1 >= v) {
            self.queue.pop_back();
        }
        self.queue.push_back((now, v));
        while self.queue.front().is_some_and(|f| now - f.0 > window) {
            self.queue.pop_front();
        }
        self.queue.front().map_or(v, |f| f.1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_count_counts_toward_the_peak_only_once_it_held() {
        let mut m = SlidingMin::default();
        let t = tokio::time::Instant::now();
        let w = Duration::from_secs(5);
        let at = |s: u64| t + Duration::from_millis(s);
        assert_eq!(m.push(at(0), 200, w), 200);
        // A dead origin's 100 still reported while its viewers came here.
        assert_eq!(m.push(at(1000), 300, w), 200);
        assert_eq!(m.push(at(4000), 300, w), 200);
        // Its report expired.
        assert_eq!(m.push(at(5500), 200, w), 200);
        // A real rise counts once it held for the window.
        assert_eq!(m.push(at(6000), 250, w), 200);
        assert_eq!(m.push(at(10_000), 250, w), 200);
        assert_eq!(m.push(at(11_001), 250, w), 250);
    }

    #[test]
    fn the_bucket_allows_a_burst_then_the_rate() {
        let mut b = Bucket::new(1.0, 5.0);
        assert_eq!((0..20).filter(|_| b.take()).count(), 5);
    }
}
