//! Background jobs: work that no queue drives — the retention sweeper and the notification
//! dispatcher today; the audit sealer, reminders and the event relay have their room here too.
//!
//! A job is a [`Job`]: one pass over due work at a time. [`run`] owns the rest, the same for
//! every job and in the same spirit as the consumer driver:
//!
//! - **schedule**: a pass at start, then one every `every`, sooner when the job is woken (e.g.
//!   by a PostgreSQL `NOTIFY`), at once when the last pass said more work is waiting;
//! - **shutdown**: checked only between passes, so a pass that started always finishes;
//! - **faults**: a failed pass is logged and counted, and the next one comes at the next tick
//!   (a job's work is in the database, so nothing is lost by waiting);
//! - **health**: the job's [`Readiness`] is true after a pass that succeeded, false after one
//!   that failed, and `/readyz` reports it with the consumers; a pass that outlasts
//!   `EBOX_STALL_AFTER_SECONDS` makes `/livez` fail ([`crate::liveness`]);
//! - **metrics**: `ebox_job_passes_total{job, result}` and `ebox_job_pass_seconds{job}`.

use crate::internal_events::{JobPassed, PassResult};
use crate::liveness::Heartbeat;
use crate::metrics::Readiness;
use std::future::Future;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// What a pass found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pass {
    /// Nothing more is due: wait for the next tick or a wake-up.
    Idle,
    /// More work is waiting: run the next pass at once.
    More,
}

/// One background job.
pub trait Job: Send + 'static {
    /// Its name, in logs and as the `job` label.
    fn name(&self) -> &'static str;

    /// One pass over what is due.
    fn pass(&mut self) -> impl Future<Output = anyhow::Result<Pass>> + Send;

    /// Resolves when new work may be due before the next tick. The default never does.
    fn woken(&mut self) -> impl Future<Output = ()> + Send {
        std::future::pending()
    }
}

/// Runs `job` until `shutdown`, a pass every `every` at most apart.
pub async fn run<J: Job>(
    mut job: J,
    every: Duration,
    health: Readiness,
    heartbeat: Heartbeat,
    shutdown: CancellationToken,
) {
    let name = job.name();
    crate::metrics::METRICS.job_started(name);
    info!(
        job = name,
        every_ms = every.as_millis() as u64,
        "job running"
    );
    loop {
        let started = Instant::now();
        heartbeat.busy("a pass");
        let outcome = job.pass().await;
        heartbeat.waiting();
        let pass = match outcome {
            Ok(pass) => {
                health.set(true);
                JobPassed::new(name, PassResult::Ok, started.elapsed()).emit();
                pass
            }
            Err(error) => {
                health.set(false);
                JobPassed::new(name, PassResult::Failed, started.elapsed()).emit();
                warn!(
                    job = name,
                    error = format!("{error:#}"),
                    "job pass failed; retrying at the next tick"
                );
                Pass::Idle
            }
        };
        if shutdown.is_cancelled() {
            break;
        }
        if pass == Pass::More {
            continue;
        }
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = job.woken() => {}
            _ = tokio::time::sleep(every) => {}
        }
    }
    health.set(false);
    info!(job = name, "job stopped");
}
