//! Latency percentiles, nearest rank.

use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Percentiles {
    pub samples: usize,
    pub p50: Duration,
    pub p95: Duration,
    pub p99: Duration,
    pub max: Duration,
}

impl Percentiles {
    /// `None` without samples.
    pub fn of(mut samples: Vec<Duration>) -> Option<Self> {
        samples.sort_unstable();
        let max = *samples.last()?;
        let rank = |p: usize| samples[(samples.len() * p).div_ceil(100).max(1) - 1];
        Some(Self {
            samples: samples.len(),
            p50: rank(50),
            p95: rank(95),
            p99: rank(99),
            max,
        })
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "samples": self.samples,
            "p50Ms": millis(self.p50),
            "p95Ms": millis(self.p95),
            "p99Ms": millis(self.p99),
            "maxMs": millis(self.max),
        })
    }
}

pub fn millis(duration: Duration) -> f64 {
    (duration.as_secs_f64() * 1e4).round() / 10.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let samples = (1..=200).rev().map(Duration::from_millis).collect();
        let p = Percentiles::of(samples).expect("samples");
        assert_eq!(p.p50, Duration::from_millis(100));
        assert_eq!(p.p95, Duration::from_millis(190));
        assert_eq!(p.p99, Duration::from_millis(198));
        assert_eq!(p.max, Duration::from_millis(200));
    }

    #[test]
    fn one_sample_is_every_percentile_and_none_is_none() {
        let p = Percentiles::of(vec![Duration::from_millis(5)]).expect("a sample");
        assert_eq!(
            (p.p50, p.p99),
            (Duration::from_millis(5), Duration::from_millis(5))
        );
        assert_eq!(Percentiles::of(Vec::new()), None);
    }
}
