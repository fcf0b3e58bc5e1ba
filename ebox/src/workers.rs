//! The stages this binary can run, and how one process runs several of them.

use anyhow::Context;
use queues::{DriverSettings, Handler};
use runtime::config::Settings;
use runtime::jobs::{self, Job};
use runtime::liveness::Liveness;
use runtime::metrics::Readiness;
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
    /// Notify the citizen on their chosen channel (`ebox.notify`, plus the sending dispatcher);
    /// call back the senders that asked for their status events over HTTPS
    /// (`ebox.status-callbacks`, plus its dispatcher).
    Notify,
    /// Tell the sender its message was read (`ebox.read-receipt`).
    ReadReceipt,
}

impl Worker {
    /// Its component name: its broker user's (`queues::permissions`) and its Deployment's.
    pub fn component(self) -> &'static str {
        match self {
            Worker::Intake => "intake",
            Worker::ConsentCheck => "consent-check",
            Worker::ConsentUpdates => "consent-updates",
            Worker::Store => "store",
            Worker::Notify => "notify",
            Worker::ReadReceipt => "read-receipt",
        }
    }

    pub const ALL: [Worker; 6] = [
        Worker::Intake,
        Worker::ConsentCheck,
        Worker::ConsentUpdates,
        Worker::Store,
        Worker::Notify,
        Worker::ReadReceipt,
    ];
}

/// What `ebox worker NAME` runs: a stage, or the event relay — a background job that consumes
/// no queue and needs no broker user, so not a [`Worker`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkerName {
    Stage(Worker),
    EventRelay,
}

impl clap::ValueEnum for WorkerName {
    fn value_variants<'a>() -> &'a [Self] {
        &[
            WorkerName::Stage(Worker::Intake),
            WorkerName::Stage(Worker::ConsentCheck),
            WorkerName::Stage(Worker::ConsentUpdates),
            WorkerName::Stage(Worker::Store),
            WorkerName::Stage(Worker::Notify),
            WorkerName::Stage(Worker::ReadReceipt),
            WorkerName::EventRelay,
        ]
    }

    fn to_possible_value(&self) -> Option<clap::builder::PossibleValue> {
        match self {
            WorkerName::Stage(worker) => worker.to_possible_value(),
            WorkerName::EventRelay => {
                Some(clap::builder::PossibleValue::new("event-relay").help(
                    "Push the federation's events to the event engine (EBOX_EVENT_ENGINE_URL)",
                ))
            }
        }
    }
}

/// Runs `workers` until `shutdown`; each consumer and background job gets its own readiness
/// flag, returned for the probes, and its heartbeat in `liveness`. Fails before starting
/// anything when a worker's own settings are missing.
pub fn spawn(
    settings: &Settings,
    pool: &PgPool,
    workers: &[Worker],
    liveness: &Liveness,
    shutdown: &CancellationToken,
) -> anyhow::Result<(JoinSet<()>, Vec<Readiness>)> {
    let mut tasks = Tasks {
        set: JoinSet::new(),
        readiness: Vec::new(),
        liveness: liveness.clone(),
        pool: pool.clone(),
        driver: DriverSettings {
            amqp_url: settings.amqp_url.clone(),
            prefetch: settings.prefetch,
            batch_size: settings.batch_size,
        },
        shutdown: shutdown.clone(),
        queues: Vec::new(),
    };
    // Checked first, so that a missing setting starts nothing.
    let dispatcher = if workers.contains(&Worker::Notify) {
        Some(dispatcher(settings, pool)?)
    } else {
        None
    };
    // Loaded once, first, so that a missing or bad key starts nothing.
    let signs_proofs = workers
        .iter()
        .any(|w| matches!(w, Worker::Store | Worker::ReadReceipt));
    let signer = if signs_proofs {
        Some(Arc::new(proof_signer(settings)?))
    } else {
        None
    };
    let signer = || {
        signer
            .clone()
            .context("the proof signer is loaded for these workers")
    };
    let hasher = || settings.ssin_hasher();
    for worker in workers {
        match worker {
            Worker::Intake => {
                let intake = intake::Intake::new(hasher(), settings.max_message_bytes)
                    .with_in_flight_per_sender(settings.in_flight_per_sender)
                    .trusting_replays_from(replay_user(settings));
                // The one stage that receives whole documents: its prefetch fits the budget.
                let prefetch = settings.intake_prefetch();
                let driver = DriverSettings {
                    prefetch,
                    batch_size: settings.batch_size.min(usize::from(prefetch)),
                    ..tasks.driver.clone()
                };
                tasks.consume_with(intake, driver)
            }
            Worker::ConsentCheck => tasks.consume(consent_check::ConsentCheck::new(hasher())),
            Worker::ConsentUpdates => {
                tasks.consume(consent_check::updates::ConsentUpdates::new(hasher()))
            }
            Worker::Store => {
                tasks.consume(store::Store::new(
                    hasher(),
                    settings.provider_id.clone(),
                    signer()?,
                ));
                let sweeper =
                    store::retention::Sweeper::new(pool.clone(), settings.amqp_url.clone());
                tasks.run(sweeper, settings.retention_interval);
                // The store process holds the signing key: it seals the audit trail.
                let sealer = crate::audit::Sealer::new(pool.clone(), signer()?);
                tasks.run(sealer, crate::audit::SEAL_EVERY);
            }
            Worker::ReadReceipt => {
                tasks.consume(read_receipt::ReadReceipt::new(signer()?, hasher()));
                let recovery = read_receipt::recovery::UnconfirmedReads::new(
                    pool.clone(),
                    settings.amqp_url.clone(),
                    signer()?,
                );
                tasks.run(recovery, read_receipt::recovery::EVERY);
            }
            Worker::Notify => {
                tasks.consume(notify::Notify::new(hasher(), settings.provider_id.clone()));
                // Reminders and expiry alerts go through the notification outbox this process
                // sends; replicas share the due documents (`SKIP LOCKED`).
                let reminders = notify::reminders::Reminders::new(
                    pool.clone(),
                    hasher(),
                    settings.provider_id.clone(),
                    notify::reminders::Periods {
                        reminder_after: settings.reminder_after,
                        alert_before: settings.expiration_alert_before,
                    },
                );
                tasks.run(reminders, notify::reminders::EVERY);
                // The senders' status callbacks: every status event, recorded for those that
                // asked for them, POSTed by a dispatcher of their own.
                tasks.consume(notify::status_callbacks::StatusCallbacks);
                let callbacks = notify::status_callbacks::CallbackDispatcher::new(
                    pool.clone(),
                    settings.partner_secrets.clone(),
                    settings.notify_retry_for,
                )?;
                tasks.run(callbacks, notify::status_callbacks::EVERY);
                // Sent callbacks are kept for EBOX_STATUS_CALLBACK_RETENTION_DAYS, then deleted.
                let retention = notify::status_callbacks::retention::SentCallbackRetention::new(
                    pool.clone(),
                    settings.status_callback_retention,
                );
                tasks.run(retention, notify::status_callbacks::retention::EVERY);
            }
        }
    }
    if let Some(dispatcher) = dispatcher {
        tasks.run(dispatcher, notify::dispatcher::POLL);
    }
    if !workers.is_empty() {
        // Every process that consumes may park what the broker refuses; each publishes again
        // what its own stages parked (replicas share the rows), which its broker user may.
        let republisher = queues::parked::Republisher::new(
            pool.clone(),
            settings.amqp_url.clone(),
            tasks.queues.clone(),
        );
        tasks.run(republisher, REPUBLISH_EVERY);
        let stuck = crate::watch::StuckMessages::new(pool.clone(), settings.stuck_after);
        tasks.run(stuck, crate::watch::EVERY);
    }
    Ok((tasks.set, tasks.readiness))
}

/// The broker user whose replays intake trusts: `EBOX_AMQP_REPLAY_USER`, or the service's own.
fn replay_user(settings: &Settings) -> String {
    settings
        .amqp_replay_user
        .clone()
        .unwrap_or_else(|| queues::driver::amqp_user(&settings.amqp_url))
}

/// The key that signs proofs (`EBOX_PROOF_SIGNING_KEY_FILE`).
pub fn proof_signer(settings: &Settings) -> anyhow::Result<evidence::keys::Signer> {
    let path = settings.proof_signing_key_file.as_deref().context(
        "store, read-receipt and the API need EBOX_PROOF_SIGNING_KEY_FILE (the proof signing key)",
    )?;
    evidence::keys::Signer::from_pem_file(path)
}

/// Every key that verifies the platform's proofs: the signing key's, then the previous keys
/// (`EBOX_PROOF_PREVIOUS_KEYS_FILE`, a JWKS), so that proofs signed before a rotation verify.
pub fn proof_keyring(settings: &Settings) -> anyhow::Result<evidence::keys::Keyring> {
    let mut keyring = match &settings.proof_previous_keys_file {
        Some(path) => {
            let json = std::fs::read_to_string(path).with_context(|| {
                format!("Failed to read the previous proof keys {}", path.display())
            })?;
            evidence::keys::Keyring::from_jwks(&json)
                .with_context(|| format!("{} is not a usable JWKS", path.display()))?
        }
        None => evidence::keys::Keyring::default(),
    };
    keyring.add(proof_signer(settings)?.verifying_key());
    Ok(keyring)
}

/// How often parked messages are looked at (each message also waits its own back-off).
const REPUBLISH_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// Runs the event relay in `tasks` until `shutdown`, and returns its readiness flag, when
/// `EBOX_EVENT_ENGINE_URL` is set; when it is not, runs nothing (logged) and returns `None`.
/// With the URL, the client id and the token file are required: a missing one starts nothing.
pub fn spawn_event_relay(
    settings: &Settings,
    pool: &PgPool,
    tasks: &mut JoinSet<()>,
    liveness: &Liveness,
    shutdown: &CancellationToken,
) -> anyhow::Result<Option<Readiness>> {
    let engine = &settings.event_engine;
    let Some(url) = &engine.url else {
        tracing::info!("EBOX_EVENT_ENGINE_URL is unset: the event relay does not run");
        return Ok(None);
    };
    let (Some(client_id), Some(token_file)) = (&engine.client_id, &engine.token_file) else {
        anyhow::bail!(
            "the event relay needs EBOX_EVENT_ENGINE_CLIENT_ID and EBOX_EVENT_ENGINE_TOKEN_FILE with EBOX_EVENT_ENGINE_URL"
        )
    };
    let client =
        event_relay::engine::Engine::new(url.clone(), client_id.clone(), token_file.clone())?;
    let relay = event_relay::Relay::new(pool.clone(), client, engine.batch_size);
    let ready = Readiness::default();
    let heartbeat = liveness.heartbeat(jobs::Job::name(&relay));
    tasks.spawn(jobs::run(
        relay,
        event_relay::EVERY,
        ready.clone(),
        heartbeat,
        shutdown.clone(),
    ));
    Ok(Some(ready))
}

/// The notification dispatcher with its two channels.
fn dispatcher(
    settings: &Settings,
    pool: &PgPool,
) -> anyhow::Result<notify::dispatcher::Dispatcher> {
    let smtp_url = settings
        .smtp_url
        .as_deref()
        .context("the notify worker needs EBOX_SMTP_URL (the SMTP relay)")?;
    let mailer = notify::email::Mailer::new(smtp_url, &settings.mail_from, &settings.portal_url)?;
    let webhooks =
        notify::webhook::PartnerWebhooks::new(pool.clone(), settings.partner_secrets.clone())?;
    Ok(notify::dispatcher::Dispatcher::new(
        pool.clone(),
        vec![Box::new(mailer), Box::new(webhooks)],
        settings.notify_retry_for,
    ))
}

/// What a process runs, each with its readiness flag.
struct Tasks {
    set: JoinSet<()>,
    readiness: Vec<Readiness>,
    liveness: Liveness,
    pool: PgPool,
    driver: DriverSettings,
    shutdown: CancellationToken,
    /// The queues consumed: what this process parks, and may publish again.
    queues: Vec<String>,
}

impl Tasks {
    fn ready(&mut self) -> Readiness {
        let ready = Readiness::default();
        self.readiness.push(ready.clone());
        ready
    }

    /// A handler, run by the consumer driver.
    fn consume<H: Handler>(&mut self, handler: H) {
        let driver = self.driver.clone();
        self.consume_with(handler, driver);
    }

    /// A handler, run by the consumer driver with `driver`'s prefetch and batch size.
    fn consume_with<H: Handler>(&mut self, handler: H, driver: DriverSettings) {
        let ready = self.ready();
        let heartbeat = self.liveness.heartbeat(handler.queue());
        self.queues.push(handler.queue().to_owned());
        self.set.spawn(queues::driver::run(
            Arc::new(handler),
            self.pool.clone(),
            driver,
            ready,
            heartbeat,
            self.shutdown.clone(),
        ));
    }

    /// A background job, a pass every `every` at most apart.
    fn run<J: Job>(&mut self, job: J, every: std::time::Duration) {
        let ready = self.ready();
        let heartbeat = self.liveness.heartbeat(job.name());
        self.set.spawn(jobs::run(
            job,
            every,
            ready,
            heartbeat,
            self.shutdown.clone(),
        ));
    }
}

/// Starts the citizen API on `settings.api_addr`; returns the address it listens on.
/// Fails before listening when the identity provider's settings are missing or unusable.
/// Keys from a JWKS URL are fetched once before listening; should the identity provider be
/// unreachable then, the API starts anyway (logged) and refuses every token until a retry
/// succeeds: a provider outage must not keep the API down once the provider is back.
pub async fn start_api(
    settings: &Settings,
    pool: &PgPool,
    tasks: &mut JoinSet<()>,
    shutdown: &CancellationToken,
) -> anyhow::Result<std::net::SocketAddr> {
    let mut missing = Vec::new();
    if settings.jwt_keys_file.is_none() && settings.jwt_jwks_url.is_none() {
        missing.push("EBOX_JWT_KEYS_FILE or EBOX_JWT_JWKS_URL (exactly one)");
    }
    if settings.jwt_issuer.is_none() {
        missing.push("EBOX_JWT_ISSUER");
    }
    if settings.jwt_audience.is_none() {
        missing.push("EBOX_JWT_AUDIENCE");
    }
    let (Some(issuer), Some(audience), true) = (
        &settings.jwt_issuer,
        &settings.jwt_audience,
        missing.is_empty(),
    ) else {
        anyhow::bail!("the API needs {}", missing.join(", "))
    };
    let verifier = token_verifier(settings, issuer, audience).await?;
    if let Some(refresh) = verifier.keep_keys_fresh(
        settings.jwt_jwks_refresh,
        shutdown.clone().cancelled_owned(),
    ) {
        tasks.spawn(refresh);
    }
    let state = Arc::new(api::AppState {
        pool: pool.clone(),
        verifier,
        hasher: settings.ssin_hasher(),
        events: api::read::EventPublisher::new(settings.amqp_url.clone()),
        provider_id: settings.provider_id.clone(),
        base_path: settings.api_base_path.clone(),
        public_url: format!(
            "{}{}",
            settings.api_public_url,
            settings.api_base_path.trim_end_matches('/')
        ),
        proof_jwks: proof_keyring(settings)?.jwks(),
        limits: api::limits::CitizenLimits::new(api::limits::Limits {
            rate: settings.api_rate_per_citizen,
            burst: settings.api_burst_per_citizen,
            concurrency: settings.api_concurrency_per_citizen,
        }),
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
    Ok(addr)
}

/// The token verifier, its keys read from the file or fetched from the URL (configuration
/// makes sure only one is set).
async fn token_verifier(
    settings: &Settings,
    issuer: &str,
    audience: &str,
) -> anyhow::Result<api::auth::Verifier> {
    let policy = api::auth::Policy {
        issuer: issuer.to_owned(),
        audience: audience.to_owned(),
        min_acr: settings.jwt_min_acr,
        max_lifetime: settings.jwt_max_lifetime,
    };
    match (&settings.jwt_keys_file, &settings.jwt_jwks_url) {
        (Some(file), _) => api::auth::Verifier::from_file(file, policy),
        (None, Some(url)) => {
            let verifier = api::auth::Verifier::from_url(url.clone(), policy)?;
            if let Err(e) = verifier.refresh_keys().await {
                tracing::warn!(
                    error = format!("{e:#}"),
                    "the identity provider's keys could not be fetched: every token is refused until a retry succeeds"
                );
            }
            Ok(verifier)
        }
        (None, None) => anyhow::bail!("the API needs EBOX_JWT_KEYS_FILE or EBOX_JWT_JWKS_URL"),
    }
}
