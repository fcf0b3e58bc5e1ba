//! The subcommands. Configuration comes from `EBOX_*` environment variables (see the README),
//! validated before anything starts.

use crate::workers::{self, Worker};
use anyhow::Context;
use clap::{Parser, Subcommand};
use common::config::Settings;
use common::registry::RegistryFile;
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
    /// Apply the database migrations.
    Migrate,
    /// Reference data: senders, their applications and message types.
    Registry {
        #[command(subcommand)]
        command: RegistryCommand,
    },
    /// Run one worker (one stage of the pipeline).
    Worker {
        #[arg(value_enum)]
        name: Worker,
    },
    /// Run every worker in one process (development and the demo); migrates first.
    Run,
    /// Act as a demo sender: publish a v1, a v2 and an invalid message, print the statuses.
    Demo(crate::demo::DemoArgs),
}

#[derive(Debug, Subcommand)]
enum RegistryCommand {
    /// Upsert the senders and message types of FILE and declare each sender's status queue.
    Load { file: PathBuf },
}

impl Cli {
    pub async fn run(self) -> ExitCode {
        if let Command::Demo(args) = self.command {
            common::telemetry::init("warn", common::config::LogFormat::Text);
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
        common::telemetry::init(&settings.log_filter, settings.log_format);
        match self.command.execute(settings).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                error!(error = format!("{e:#}"), "ebox failed");
                ExitCode::FAILURE
            }
        }
    }
}

impl Command {
    async fn execute(self, settings: Settings) -> anyhow::Result<()> {
        match self {
            Command::Migrate => {
                let pool = common::db::connect(&settings).await?;
                common::db::migrate(&pool).await?;
                info!("migrations applied");
                Ok(())
            }
            Command::Registry {
                command: RegistryCommand::Load { file },
            } => load_registry(&settings, &file).await,
            Command::Worker { name } => run_workers(&settings, &[name], false).await,
            Command::Run => run_workers(&settings, &Worker::ALL, true).await,
            Command::Demo(_) => unreachable!("handled before settings are read"),
        }
    }
}

async fn load_registry(settings: &Settings, file: &PathBuf) -> anyhow::Result<()> {
    let yaml = std::fs::read_to_string(file)
        .with_context(|| format!("Failed to read {}", file.display()))?;
    let registry = RegistryFile::parse(&yaml).map_err(|problems| {
        anyhow::anyhow!(
            "{} is invalid:\n  - {}",
            file.display(),
            problems.join("\n  - ")
        )
    })?;
    let pool = common::db::connect(settings).await?;
    crate::admin::apply_registry(&pool, &settings.amqp_url, &registry).await?;
    info!(
        senders = registry.senders.len(),
        message_types = registry.message_types.len(),
        "registry loaded"
    );
    Ok(())
}

async fn run_workers(settings: &Settings, names: &[Worker], migrate: bool) -> anyhow::Result<()> {
    let pool = common::db::connect(settings).await?;
    if migrate {
        common::db::migrate(&pool).await?;
    }
    let shutdown = CancellationToken::new();
    let (mut tasks, readiness) = workers::spawn(settings, &pool, names, &shutdown);
    let metrics = tokio::spawn(common::metrics::serve(
        settings.metrics_addr,
        readiness,
        shutdown.clone().cancelled_owned(),
    ));
    info!(workers = ?names, metrics = %settings.metrics_addr, "running");
    wait_for_signal().await;
    info!("shutting down: finishing the batches in progress");
    shutdown.cancel();
    while tasks.join_next().await.is_some() {}
    match metrics.await {
        Ok(result) => result,
        Err(e) => Err(e.into()),
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
