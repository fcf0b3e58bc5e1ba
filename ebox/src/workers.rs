//! The stages this binary can run, and how one process runs several of them.

use anyhow::Context;
use common::audit::SsinHasher;
use common::config::Settings;
use common::metrics::Readiness;
use queues::{DriverSettings, Handler};
use sqlx::PgPool;
use std::sync::Arc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Worker {
    /// Authenticate, validate and deduplicate what senders publish (`ebox.intake`).
    Intake,
    /// Deliver electronically only to consenting citizens (`ebox.consent-check`).
    ConsentCheck,
    /// Record consent and preference changes from the portal (`ebox.consent-updates`).
    ConsentUpdates,
    /// Keep the document in the citizen's eBox and announce it (`ebox.store`); delete it when
    /// it expires.
    Store,
    /// Notify the citizen on their chosen channel (`ebox.notify`, plus the sending dispatcher).
    Notify,
    /// Tell the sender its message was read (`ebox.read-receipt`).
    ReadReceipt,
}

impl Worker {
    pub const ALL: [Worker; 6] = [
        Worker::Intake,
        Worker::ConsentCheck,
        Worker::ConsentUpdates,
        Worker::Store,
        Worker::Notify,
        Worker::ReadReceipt,
    ];
}

/// Runs `workers` until `shutdown`; each gets its own readiness flag, returned for the probes.
/// Fails before starting anything when a worker's own settings are missing.
pub fn spawn(
    settings: &Settings,
    pool: &PgPool,
    workers: &[Worker],
    shutdown: &CancellationToken,
) -> anyhow::Result<(JoinSet<()>, Vec<Readiness>)> {
    let mut tasks = JoinSet::new();
    let mut readiness = Vec::new();
    let driver = DriverSettings {
        amqp_url: settings.amqp_url.clone(),
        prefetch: settings.prefetch,
        batch_size: settings.batch_size,
    };
    let hasher = || SsinHasher::new(&settings.ssin_hash_key);
    let mut start = |handler: Arc<dyn Spawnable>| {
        let ready = Readiness::default();
        readiness.push(ready.clone());
        handler.spawn(
            &mut tasks,
            pool.clone(),
            driver.clone(),
            ready,
            shutdown.clone(),
        );
    };
    let mut dispatcher = None;
    let mut retention = false;
    for worker in workers {
        match worker {
            Worker::Intake => start(Arc::new(intake::Intake::new(
                hasher(),
                settings.max_message_bytes,
            ))),
            Worker::ConsentCheck => start(Arc::new(consent_check::ConsentCheck::new(hasher()))),
            Worker::ConsentUpdates => start(Arc::new(consent_check::updates::ConsentUpdates::new(
                hasher(),
            ))),
            Worker::Store => {
                start(Arc::new(store::Store::new(
                    hasher(),
                    settings.provider_id.clone(),
                )));
                retention = true;
            }
            Worker::ReadReceipt => start(Arc::new(read_receipt::ReadReceipt)),
            Worker::Notify => {
                let smtp_url = settings
                    .smtp_url
                    .as_deref()
                    .context("the notify worker needs EBOX_SMTP_URL (the SMTP relay)")?;
                let mailer = notify::email::Mailer::new(
                    smtp_url,
                    &settings.mail_from,
                    &settings.portal_url,
                )?;
                dispatcher = Some(notify::dispatcher::Dispatcher::new(
                    pool.clone(),
                    mailer,
                    settings.notify_max_attempts,
                    settings.partner_secrets.clone(),
                )?);
                start(Arc::new(notify::Notify::new(hasher())));
            }
        }
    }
    if let Some(dispatcher) = dispatcher {
        tasks.spawn(dispatcher.run(shutdown.clone()));
    }
    if retention {
        tasks.spawn(store::retention::run(
            pool.clone(),
            settings.amqp_url.clone(),
            settings.retention_interval,
            shutdown.clone(),
        ));
    }
    Ok((tasks, readiness))
}

/// A handler the driver can run, whatever its type.
trait Spawnable: Send + Sync {
    fn spawn(
        self: Arc<Self>,
        tasks: &mut JoinSet<()>,
        pool: PgPool,
        driver: DriverSettings,
        ready: Readiness,
        shutdown: CancellationToken,
    );
}

impl<H: Handler> Spawnable for H {
    fn spawn(
        self: Arc<Self>,
        tasks: &mut JoinSet<()>,
        pool: PgPool,
        driver: DriverSettings,
        ready: Readiness,
        shutdown: CancellationToken,
    ) {
        tasks.spawn(queues::driver::run(self, pool, driver, ready, shutdown));
    }
}

/// Starts the citizen API on `settings.api_addr`; returns the address it listens on.
/// Fails before listening when the identity provider's settings are missing or unusable.
pub async fn start_api(
    settings: &Settings,
    pool: &PgPool,
    tasks: &mut JoinSet<()>,
    shutdown: &CancellationToken,
) -> anyhow::Result<std::net::SocketAddr> {
    let mut missing = Vec::new();
    if settings.jwt_keys_file.is_none() {
        missing.push("EBOX_JWT_KEYS_FILE");
    }
    if settings.jwt_issuer.is_none() {
        missing.push("EBOX_JWT_ISSUER");
    }
    if settings.jwt_audience.is_none() {
        missing.push("EBOX_JWT_AUDIENCE");
    }
    if let (Some(keys), Some(issuer), Some(audience)) = (
        &settings.jwt_keys_file,
        &settings.jwt_issuer,
        &settings.jwt_audience,
    ) {
        let verifier = api::auth::Verifier::from_file(
            keys,
            issuer.clone(),
            audience.clone(),
            settings.jwt_min_acr,
        )?;
        let state = Arc::new(api::AppState {
            pool: pool.clone(),
            verifier,
            hasher: SsinHasher::new(&settings.ssin_hash_key),
            events: api::read::EventPublisher::new(settings.amqp_url.clone()),
            provider_id: settings.provider_id.clone(),
            base_path: settings.api_base_path.clone(),
            public_url: format!(
                "{}{}",
                settings.api_public_url,
                settings.api_base_path.trim_end_matches('/')
            ),
        });
        let listener = tokio::net::TcpListener::bind(settings.api_addr)
            .await
            .with_context(|| format!("Failed to listen on {} for the API", settings.api_addr))?;
        let addr = listener.local_addr()?;
        let shutdown = shutdown.clone();
        tasks.spawn(async move {
            if let Err(e) = api::serve(listener, state, shutdown.cancelled_owned()).await {
                tracing::error!(error = format!("{e:#}"), "the API stopped");
            }
        });
        return Ok(addr);
    }
    anyhow::bail!("the API needs {}", missing.join(", "))
}
