//! The stages this binary can run, and how one process runs several of them.

use common::audit::SsinHasher;
use common::config::Settings;
use common::metrics::Readiness;
use queues::DriverSettings;
use sqlx::PgPool;
use std::sync::Arc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Worker {
    /// Authenticate, validate and deduplicate what senders publish (`ebox.intake`).
    Intake,
}

impl Worker {
    pub const ALL: [Worker; 1] = [Worker::Intake];
}

/// Runs `workers` until `shutdown`; each gets its own readiness flag, returned for the probes.
pub fn spawn(
    settings: &Settings,
    pool: &PgPool,
    workers: &[Worker],
    shutdown: &CancellationToken,
) -> (JoinSet<()>, Vec<Readiness>) {
    let mut tasks = JoinSet::new();
    let mut readiness = Vec::new();
    let driver = DriverSettings {
        amqp_url: settings.amqp_url.clone(),
        prefetch: settings.prefetch,
        batch_size: settings.batch_size,
    };
    for worker in workers {
        let ready = Readiness::default();
        readiness.push(ready.clone());
        let (pool, driver, shutdown) = (pool.clone(), driver.clone(), shutdown.clone());
        match worker {
            Worker::Intake => {
                let handler = Arc::new(intake::Intake::new(
                    SsinHasher::new(&settings.ssin_hash_key),
                    settings.max_message_bytes,
                ));
                tasks.spawn(queues::driver::run(handler, pool, driver, ready, shutdown));
            }
        }
    }
    (tasks, readiness)
}
