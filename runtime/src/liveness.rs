//! Liveness: is every loop of the process still making progress?
//!
//! Readiness ([`crate::metrics::Readiness`]) says whether a part can take work now (its consumer
//! runs, its last pass succeeded, the database answers); a part that is not ready is taken out
//! of the load but left running. Liveness says whether restarting the process would help: a
//! loop stuck inside one step (an `await` that never returns) or a consumer that receives
//! nothing while its queue has messages waiting will not mend by itself, and `/livez` answers
//! 503 so that the orchestrator restarts the process.
//!
//! Each loop holds a [`Heartbeat`] and says where it is: [`Heartbeat::busy`] when it enters a
//! step that must finish (a batch's transaction, a publish, a job's pass),
//! [`Heartbeat::waiting`] when it waits for work, [`Heartbeat::backlog`] when it waits for
//! deliveries that the broker holds ready for it. Waiting for a dependency to come back (a
//! retry's back-off) is `waiting`: a database outage makes the process unready, not dead, so
//! that restarts do not raise every prefetched message's delivery count while the database is
//! down. A loop is stalled when it has been `busy` in one step, or seen a `backlog` it does not
//! receive, for longer than the bound (`EBOX_STALL_AFTER_SECONDS`).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy)]
enum State {
    Waiting,
    Busy { step: &'static str, since: Instant },
    Backlog { ready: u32, since: Instant },
}

/// Where one loop (a consumer, a background job) is. Cheap to clone; clones share the state.
#[derive(Debug, Clone)]
pub struct Heartbeat {
    name: &'static str,
    state: Arc<Mutex<State>>,
}

impl Heartbeat {
    pub fn new(name: &'static str) -> Self {
        Self {
            name,
            state: Arc::new(Mutex::new(State::Waiting)),
        }
    }

    /// Enters `step`, which must finish within the bound.
    pub fn busy(&self, step: &'static str) {
        self.set(State::Busy {
            step,
            since: Instant::now(),
        });
    }

    /// Waits for work or for a dependency: never a stall.
    pub fn waiting(&self) {
        self.set(State::Waiting);
    }

    /// Waits for deliveries while the queue holds `ready` messages. The first sighting starts
    /// the clock; later ones keep it, so a backlog that never reaches the loop is a stall.
    pub fn backlog(&self, ready: u32) {
        let mut state = self.lock();
        *state = match *state {
            State::Backlog { since, .. } => State::Backlog { ready, since },
            _ => State::Backlog {
                ready,
                since: Instant::now(),
            },
        };
    }

    /// What is wrong, when this loop has made no progress for longer than `bound`.
    pub fn stalled(&self, bound: Duration) -> Option<String> {
        match *self.lock() {
            State::Waiting => None,
            State::Busy { step, since } => (since.elapsed() > bound).then(|| {
                format!(
                    "{}: stuck in {step} for {} s",
                    self.name,
                    since.elapsed().as_secs()
                )
            }),
            State::Backlog { ready, since } => (since.elapsed() > bound).then(|| {
                format!(
                    "{}: {ready} messages ready in its queue and none delivered for {} s",
                    self.name,
                    since.elapsed().as_secs()
                )
            }),
        }
    }

    fn set(&self, state: State) {
        *self.lock() = state;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // The state is a plain value: a panic while it was held cannot leave it half-written.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Every loop of the process, and the bound past which one that makes no progress is stalled.
#[derive(Debug, Clone)]
pub struct Liveness {
    bound: Duration,
    heartbeats: Arc<Mutex<Vec<Heartbeat>>>,
}

impl Liveness {
    pub fn new(bound: Duration) -> Self {
        Self {
            bound,
            heartbeats: Arc::default(),
        }
    }

    /// A heartbeat for a new loop, watched from now on.
    pub fn heartbeat(&self, name: &'static str) -> Heartbeat {
        let heartbeat = Heartbeat::new(name);
        self.heartbeats
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(heartbeat.clone());
        heartbeat
    }

    /// Every stalled loop, with what is wrong; empty when the process is live.
    pub fn stalled(&self) -> Vec<String> {
        self.heartbeats
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter_map(|heartbeat| heartbeat.stalled(self.bound))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOUND: Duration = Duration::from_millis(30);

    fn past_the_bound() {
        std::thread::sleep(BOUND + Duration::from_millis(20));
    }

    #[test]
    fn a_loop_waiting_for_work_or_for_a_dependency_is_never_stalled() {
        let liveness = Liveness::new(BOUND);
        let heartbeat = liveness.heartbeat("intake");
        heartbeat.waiting();
        past_the_bound();
        assert!(liveness.stalled().is_empty());
    }

    #[test]
    fn a_step_that_outlasts_the_bound_is_a_stall_and_the_next_step_clears_it() {
        let liveness = Liveness::new(BOUND);
        let heartbeat = liveness.heartbeat("store");
        heartbeat.busy("publishing");
        assert!(liveness.stalled().is_empty(), "not yet past the bound");
        past_the_bound();
        let stalled = liveness.stalled();
        assert_eq!(stalled.len(), 1);
        assert!(stalled[0].starts_with("store: stuck in publishing for"));
        heartbeat.busy("settling");
        assert!(
            liveness.stalled().is_empty(),
            "a new step restarts the clock"
        );
    }

    #[test]
    fn a_backlog_that_never_arrives_is_a_stall_however_often_it_is_seen() {
        let liveness = Liveness::new(BOUND);
        let heartbeat = liveness.heartbeat("notify");
        heartbeat.backlog(3);
        past_the_bound();
        heartbeat.backlog(5);
        let stalled = liveness.stalled();
        assert_eq!(stalled.len(), 1);
        assert!(
            stalled[0].starts_with("notify: 5 messages ready in its queue and none delivered"),
            "the clock started at the first sighting: {stalled:?}"
        );
        heartbeat.busy("handling");
        assert!(liveness.stalled().is_empty());
    }
}
