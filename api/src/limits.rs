//! Abuse limits per citizen, per API replica: a token bucket (a sustained rate with a burst)
//! and a cap on the citizen's calls in progress. Over either, the call is answered
//! `429 TOO_MANY_REQUESTS` with `Retry-After`, and audited as refused.
//!
//! The key is the citizen's *verified* identity (their keyed hash, once the token checked out):
//! limiting on an unverified token would let anybody spend somebody else's budget. Calls
//! without a valid token are refused before they cost anything but the signature check.
//!
//! The state is in memory (a replica's own share of the limit); idle citizens are forgotten
//! once the table holds [`FORGET_ABOVE`] of them.

use crate::error::ApiError;
use domain::citizen::CitizenKey;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// How many citizens the table keeps before forgetting the idle ones.
const FORGET_ABOVE: usize = 100_000;

/// The limits of one API replica (`EBOX_API_RATE_PER_CITIZEN`, `EBOX_API_BURST_PER_CITIZEN`,
/// `EBOX_API_CONCURRENCY_PER_CITIZEN`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    /// Calls per second, sustained.
    pub rate: f64,
    /// Calls at once after a pause.
    pub burst: u32,
    /// Calls in progress at once.
    pub concurrency: u32,
}

pub struct CitizenLimits {
    limits: Limits,
    citizens: Mutex<HashMap<String, Bucket>>,
}

struct Bucket {
    tokens: f64,
    updated: Instant,
    in_progress: Arc<Semaphore>,
}

/// Held while the call is in progress.
pub struct Permit(#[allow(dead_code)] OwnedSemaphorePermit);

impl CitizenLimits {
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            citizens: Mutex::new(HashMap::new()),
        }
    }

    /// Admits one call of `citizen` at `now`, or refuses it.
    pub fn admit(&self, citizen: &CitizenKey, now: Instant) -> Result<Permit, ApiError> {
        let Ok(mut citizens) = self.citizens.lock() else {
            return Err(ApiError::internal("the limits' table is poisoned"));
        };
        if citizens.len() >= FORGET_ABOVE {
            self.forget_idle(&mut citizens, now);
        }
        let limits = self.limits;
        let bucket = citizens
            .entry(citizen.as_str().to_owned())
            .or_insert_with(|| Bucket {
                tokens: f64::from(limits.burst),
                updated: now,
                in_progress: Arc::new(Semaphore::new(limits.concurrency as usize)),
            });
        let elapsed = now.saturating_duration_since(bucket.updated).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * limits.rate).min(f64::from(limits.burst));
        bucket.updated = now;
        if bucket.tokens < 1.0 {
            let wait = ((1.0 - bucket.tokens) / limits.rate).ceil().max(1.0);
            return Err(ApiError::too_many_requests(
                "too many calls for this citizen; slow down",
                wait as u64,
            ));
        }
        let permit = bucket
            .in_progress
            .clone()
            .try_acquire_owned()
            .map_err(|_| {
                ApiError::too_many_requests("too many calls in progress for this citizen", 1)
            })?;
        bucket.tokens -= 1.0;
        Ok(Permit(permit))
    }

    /// Forgets the citizens whose bucket is full again and who have no call in progress:
    /// remembering them changes nothing.
    fn forget_idle(&self, citizens: &mut HashMap<String, Bucket>, now: Instant) {
        let limits = self.limits;
        citizens.retain(|_, bucket| {
            let elapsed = now.saturating_duration_since(bucket.updated).as_secs_f64();
            let full = bucket.tokens + elapsed * limits.rate >= f64::from(limits.burst);
            let idle = bucket.in_progress.available_permits() == limits.concurrency as usize;
            !(full && idle)
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::StatusCode;
    use std::time::Duration;

    fn citizen(n: u8) -> CitizenKey {
        CitizenKey::from_stored(format!("{n:064x}"))
    }

    #[test]
    fn a_burst_passes_then_the_rate_holds_and_refills() {
        let limits = CitizenLimits::new(Limits {
            rate: 2.0,
            burst: 3,
            concurrency: 10,
        });
        let start = Instant::now();
        let mut held = Vec::new();
        for _ in 0..3 {
            held.push(limits.admit(&citizen(1), start).expect("within the burst"));
        }
        let refused = limits
            .admit(&citizen(1), start)
            .err()
            .expect("over the burst");
        assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(refused.retry_after, Some(1));
        // Another citizen has a budget of their own.
        assert!(limits.admit(&citizen(2), start).is_ok());
        // Half a second later, one more call (2 per second).
        assert!(
            limits
                .admit(&citizen(1), start + Duration::from_millis(500))
                .is_ok()
        );
        assert!(
            limits
                .admit(&citizen(1), start + Duration::from_millis(500))
                .is_err()
        );
    }

    #[test]
    fn calls_in_progress_are_capped_and_a_finished_one_frees_its_place() {
        let limits = CitizenLimits::new(Limits {
            rate: 100.0,
            burst: 100,
            concurrency: 2,
        });
        let now = Instant::now();
        let first = limits.admit(&citizen(1), now).expect("one");
        let _second = limits.admit(&citizen(1), now).expect("two");
        assert!(limits.admit(&citizen(1), now).is_err(), "a third at once");
        drop(first);
        assert!(limits.admit(&citizen(1), now).is_ok(), "once one finished");
    }

    #[test]
    fn idle_citizens_are_forgotten_busy_ones_kept() {
        let limits = CitizenLimits::new(Limits {
            rate: 1.0,
            burst: 1,
            concurrency: 1,
        });
        let now = Instant::now();
        let busy = limits.admit(&citizen(1), now).expect("busy");
        let _ = limits.admit(&citizen(2), now).expect("idle once done");
        let later = now + Duration::from_secs(5);
        let mut citizens = limits.citizens.lock().expect("lock");
        limits.forget_idle(&mut citizens, later);
        assert_eq!(citizens.len(), 1);
        assert!(citizens.contains_key(citizen(1).as_str()));
        drop(busy);
    }
}
