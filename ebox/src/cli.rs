//! The subcommands. Configuration comes from `EBOX_*` environment variables (see `docs/operations.md`),
//! validated before anything starts.

use crate::workers::{self, Worker, WorkerName};
use anyhow::Context;
use chrono::Utc;
use clap::{Parser, Subcommand};
use domain::citizen::{Channel, Consent, Preferences};
use domain::registry::RegistryFile;
use domain::ssin::Ssin;
use domain::translated::Language;
use runtime::config::Settings;
use std::path::PathBuf;
use std::process::ExitCode;
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

#[derive(Debug, Parser)]
#[command(
    name = "ebox",
    version,
    about = "eBox Citizen document provider: the publication pipeline"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Apply the database migrations, as the owner role (EBOX_MIGRATION_DATABASE_URL, else
    /// EBOX_DATABASE_URL), and make EBOX_DATABASE_URL's user a member of `ebox_runtime`.
    Migrate,
    /// Reference data: senders, their applications and message types.
    Registry {
        #[command(subcommand)]
        command: RegistryCommand,
    },
    /// Run one worker: a stage of the pipeline, or the event relay.
    Worker {
        #[arg(value_enum)]
        name: WorkerName,
    },
    /// Run every worker, the event relay (when EBOX_EVENT_ENGINE_URL is set) and the citizen
    /// API in one process (development and the demo); migrates first.
    Run,
    /// Run the citizen API (the Message Registry contract) alone.
    Api,
    /// Mint a token for development and the demo, signed with a private key (ES256 for a P-256
    /// key, RS256 for an RSA key) that the API's EBOX_JWT_KEYS_FILE verifies.
    Token(crate::token::TokenArgs),
    /// Record a citizen's consent to electronic delivery, or its withdrawal.
    Consent {
        #[command(subcommand)]
        command: ConsentCommand,
    },
    /// Citizens' notification preferences.
    Citizen {
        #[command(subcommand)]
        command: CitizenCommand,
    },
    /// Notifications held up by an outage: send them now, or queue abandoned ones again.
    Notifications {
        #[command(subcommand)]
        command: crate::notifications::NotificationsCommand,
    },
    /// The federation's events outbox: where the push to the event engine stands, parked
    /// events, and putting them back in line.
    Events {
        #[command(subcommand)]
        command: crate::events::EventsCommand,
    },
    /// What the stages set aside (per stage): list, show, replay or purge it.
    Dlq {
        #[command(subcommand)]
        command: crate::dlq::DlqCommand,
    },
    /// The audit trail: verify its seals, trace a message's journey.
    Audit {
        #[command(subcommand)]
        command: crate::audit::AuditCommand,
    },
    /// Proofs of deposit and of reading: keys, and offline verification.
    Proof {
        #[command(subcommand)]
        command: crate::proof::ProofCommand,
    },
    /// The broker users and policies of a deployment, as `rabbitmqctl` commands.
    Broker {
        #[command(subcommand)]
        command: crate::broker::BrokerCommand,
    },
    /// Act as a demo sender: publish messages, print the statuses.
    Demo(crate::demo::DemoArgs),
    /// Measure the pipeline's throughput against a bare chain of queues (prints figures).
    Bench(crate::bench::BenchArgs),
    /// A development SMTP server that prints every message it receives (never in production).
    SmtpSink {
        #[arg(long, default_value = "127.0.0.1:2525")]
        listen: String,
    },
}

#[derive(Debug, Subcommand)]
enum ConsentCommand {
    /// The citizen consents to receive government mail electronically.
    Grant { ssin: String },
    /// The citizen withdraws that consent: senders must use paper again.
    Withdraw { ssin: String },
}

#[derive(Debug, Subcommand)]
enum CitizenCommand {
    /// Set how the citizen is notified of new documents.
    Set {
        ssin: String,
        /// nl, fr or de.
        #[arg(long, default_value = "nl")]
        language: String,
        /// email, partner or none (opted out).
        #[arg(long)]
        channel: String,
        /// The address, for --channel email.
        #[arg(long)]
        email: Option<String>,
        /// The partner id from the registry file, for --channel partner.
        #[arg(long)]
        partner: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
enum RegistryCommand {
    /// Upsert the senders and message types of FILE and declare each sender's status queue.
    Load { file: PathBuf },
}

impl Cli {
    pub async fn run(self) -> ExitCode {
        if let Command::Token(args) = &self.command {
            return match crate::token::mint(args) {
                Ok(token) => {
                    println!("{token}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("token: {e:#}");
                    ExitCode::FAILURE
                }
            };
        }
        if let Command::SmtpSink { listen } = &self.command {
            return match crate::smtp_sink::start(listen).await {
                Ok((addr, mut mails)) => {
                    println!("smtp-sink listening on {addr}");
                    while let Some(mail) = mails.recv().await {
                        println!(
                            "--- mail from {} to {}\n{}",
                            mail.from,
                            mail.to.join(", "),
                            mail.data
                        );
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("smtp-sink cannot listen on {listen}: {e}");
                    ExitCode::FAILURE
                }
            };
        }
        if let Command::Proof { command } = self.command {
            // Offline: no settings, no service.
            return match crate::proof::run(command) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("proof: {e:#}");
                    ExitCode::FAILURE
                }
            };
        }
        if let Command::Broker { command } = self.command {
            crate::broker::run(command);
            return ExitCode::SUCCESS;
        }
        if let Command::Demo(args) = self.command {
            runtime::telemetry::init("warn", runtime::config::LogFormat::Text);
            return match crate::demo::run(args).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("demo failed: {e:#}");
                    ExitCode::FAILURE
                }
            };
        }
        let settings = match Settings::from_env() {
            Ok(settings) => settings,
            Err(errors) => {
                eprint!("{errors}");
                return ExitCode::from(2);
            }
        };
        if let Err(e) = queues::tls::install(&settings.amqp_tls) {
            eprintln!("invalid configuration:\n  - {e:#}");
            return ExitCode::from(2);
        }
        let telemetry = match runtime::telemetry::init_with_traces(
            &settings.log_filter,
            settings.log_format,
            settings.traces.as_ref(),
            &self.command.service_name(),
        ) {
            Ok(telemetry) => telemetry,
            Err(e) => {
                eprintln!("invalid configuration:\n  - {e:#}");
                return ExitCode::from(2);
            }
        };
        let exit = match self.command.execute(settings).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                error!(error = format!("{e:#}"), "ebox failed");
                ExitCode::FAILURE
            }
        };
        // The spans still buffered are exported before the process ends.
        telemetry.shutdown().await;
        exit
    }
}

impl Command {
    /// The trace resource's service name (`OTEL_SERVICE_NAME` wins): the component a process
    /// runs (`ebox-intake`, `ebox-api`…), `ebox` for everything at once and for the commands.
    fn service_name(&self) -> String {
        match self {
            Command::Worker {
                name: WorkerName::Stage(worker),
            } => format!("ebox-{}", worker.component()),
            Command::Worker {
                name: WorkerName::EventRelay,
            } => "ebox-event-relay".to_owned(),
            Command::Api => "ebox-api".to_owned(),
            _ => "ebox".to_owned(),
        }
    }

    async fn execute(self, settings: Settings) -> anyhow::Result<()> {
        match self {
            Command::Migrate => {
                runtime::db::migrate_as_owner(&settings).await?;
                info!("migrations applied");
                Ok(())
            }
            Command::Registry {
                command: RegistryCommand::Load { file },
            } => load_registry(&settings, &file).await,
            Command::Worker {
                name: WorkerName::Stage(name),
            } => run_workers(&settings, &[name], Runs::Stages).await,
            Command::Worker {
                name: WorkerName::EventRelay,
            } => {
                anyhow::ensure!(
                    settings.event_engine.url.is_some(),
                    "the event-relay worker needs EBOX_EVENT_ENGINE_URL (the event engine's events endpoint)"
                );
                run_workers(&settings, &[], Runs::EventRelay).await
            }
            Command::Run => run_workers(&settings, &Worker::ALL, Runs::Everything).await,
            Command::Api => run_workers(&settings, &[], Runs::Api).await,
            Command::Consent { command } => record_consent(&settings, command).await,
            Command::Citizen {
                command:
                    CitizenCommand::Set {
                        ssin,
                        language,
                        channel,
                        email,
                        partner,
                    },
            } => {
                let channel = match (channel.as_str(), email, partner) {
                    ("email", Some(email), None) => Channel::Email { email },
                    ("partner", None, Some(partner_id)) => Channel::Partner { partner_id },
                    ("none", None, None) => Channel::None,
                    _ => anyhow::bail!(
                        "use --channel email --email ADDRESS, --channel partner --partner ID, or --channel none"
                    ),
                };
                set_preferences(&settings, &ssin, &language, channel).await
            }
            Command::Bench(args) => crate::bench::run(&settings, args).await,
            Command::Dlq { command } => crate::dlq::run(&settings.amqp_url, command).await,
            Command::Audit { command } => crate::audit::run(&settings, command).await,
            Command::Notifications { command } => {
                crate::notifications::run(&settings, command).await
            }
            Command::Events { command } => crate::events::run(&settings, command).await,
            Command::Demo(_)
            | Command::SmtpSink { .. }
            | Command::Token(_)
            | Command::Proof { .. }
            | Command::Broker { .. } => {
                unreachable!("handled before settings are read")
            }
        }
    }
}

/// `ebox consent grant|withdraw SSIN`: records the change now, audited with source `cli`.
async fn record_consent(settings: &Settings, command: ConsentCommand) -> anyhow::Result<()> {
    let (ssin, consent) = match command {
        ConsentCommand::Grant { ssin } => (ssin, Consent::Granted),
        ConsentCommand::Withdraw { ssin } => (ssin, Consent::Withdrawn),
    };
    let ssin = Ssin::parse(&ssin).context("SSIN is not a valid national number")?;
    let pool = runtime::db::connect(settings).await?;
    let mut tx = pool.begin().await?;
    let hasher = settings.ssin_hasher();
    records::citizens::record_consent(&mut tx, &hasher, &ssin, consent, Utc::now(), "cli").await?;
    tx.commit().await?;
    println!("consent {} recorded", consent.as_str());
    Ok(())
}

/// `ebox citizen set`: records a notification preference now.
async fn set_preferences(
    settings: &Settings,
    ssin: &str,
    language: &str,
    channel: Channel,
) -> anyhow::Result<()> {
    let ssin = Ssin::parse(ssin).context("SSIN is not a valid national number")?;
    let language = Language::ALL
        .into_iter()
        .find(|l| l.code() == language)
        .context("--language must be nl, fr or de")?;
    let pool = runtime::db::connect(settings).await?;
    let mut tx = pool.begin().await?;
    let hasher = settings.ssin_hasher();
    let preferences = Preferences { language, channel };
    records::citizens::record_preferences(&mut tx, &hasher, &ssin, &preferences, Utc::now())
        .await?;
    tx.commit().await?;
    println!("preferences recorded");
    Ok(())
}

async fn load_registry(settings: &Settings, file: &PathBuf) -> anyhow::Result<()> {
    let yaml = std::fs::read_to_string(file)
        .with_context(|| format!("Failed to read {}", file.display()))?;
    let registry =
        RegistryFile::parse_with(&yaml, crate::admin::files_beside(file)).map_err(|problems| {
            anyhow::anyhow!(
                "{} is invalid:\n  - {}",
                file.display(),
                problems.join("\n  - ")
            )
        })?;
    let pool = runtime::db::connect(settings).await?;
    crate::admin::apply_registry(&pool, &settings.amqp_url, &registry).await?;
    info!(
        senders = registry.senders.len(),
        message_types = registry.message_types.len(),
        "registry loaded"
    );
    Ok(())
}

/// What a process runs besides the stages it is given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Runs {
    /// The stages alone (`ebox worker <stage>`).
    Stages,
    /// The event relay alone (`ebox worker event-relay`).
    EventRelay,
    /// The citizen API alone (`ebox api`).
    Api,
    /// Migrations first, then the stages, the event relay (when its URL is set) and the API
    /// (`ebox run`).
    Everything,
}

async fn run_workers(settings: &Settings, names: &[Worker], runs: Runs) -> anyhow::Result<()> {
    let (migrate, with_api, with_relay) = match runs {
        Runs::Stages => (false, false, false),
        Runs::EventRelay => (false, false, true),
        Runs::Api => (false, true, false),
        Runs::Everything => (true, true, true),
    };
    if migrate {
        runtime::db::migrate_as_owner(settings).await?;
    }
    let pool = runtime::db::connect(settings).await?;
    let shutdown = CancellationToken::new();
    let liveness = runtime::liveness::Liveness::new(settings.stall_after);
    let (mut tasks, mut readiness) = workers::spawn(settings, &pool, names, &liveness, &shutdown)?;
    if with_relay
        && let Some(ready) =
            workers::spawn_event_relay(settings, &pool, &mut tasks, &liveness, &shutdown)?
    {
        readiness.push(ready);
    }
    if with_api {
        let addr = workers::start_api(settings, &pool, &mut tasks, &shutdown).await?;
        info!(api = %addr, base_path = settings.api_base_path, "API listening");
    }
    tasks.spawn({
        let (addr, pool, shutdown) = (settings.metrics_addr, pool.clone(), shutdown.clone());
        async move {
            let stopped = shutdown.clone().cancelled_owned();
            if let Err(e) = runtime::metrics::serve(addr, readiness, liveness, pool, stopped).await
            {
                tracing::error!(error = format!("{e:#}"), "the probe server stopped");
            }
        }
    });
    info!(workers = ?names, ?runs, metrics = %settings.metrics_addr, "running");
    // Every task runs until shutdown: one that ends before (a panic, a server that could not
    // listen) leaves the process without a part of its work, so the process exits non-zero
    // and the orchestrator restarts it.
    let failure = tokio::select! {
        _ = wait_for_signal() => None,
        ended = tasks.join_next() => Some(match ended {
            Some(Err(e)) if e.is_panic() => format!("a task panicked: {e}"),
            _ => "a task stopped before shutdown".to_owned(),
        }),
    };
    match &failure {
        None => info!("shutting down: finishing the batches in progress"),
        Some(why) => tracing::error!(why, "shutting down: {why}"),
    }
    shutdown.cancel();
    while tasks.join_next().await.is_some() {}
    match failure {
        None => Ok(()),
        Some(why) => anyhow::bail!("{why}"),
    }
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
