//! `ebox events status|parked|retry`: the events outbox for the operators — where the push to
//! the event engine stands, the events it parked (refused for good by the event engine, or
//! waiting behind one of the same message that was) and putting them back in line once the
//! cause is fixed. The SQL is the outbox's ([`records::events`]); national numbers are never
//! printed.

use clap::Subcommand;
use records::events::{self, Parked, Summary};
use runtime::config::Settings;
use sqlx::PgPool;

#[derive(Debug, Subcommand)]
pub enum EventsCommand {
    /// Counts: the last sequence number given, events not numbered yet, numbered and not yet
    /// delivered, delivered, parked (one JSON object).
    Status,
    /// The parked events, oldest number first: one JSON line each (number, type, message id,
    /// correlation id, when, why, attempts).
    Parked {
        #[arg(long, default_value_t = 20)]
        limit: i64,
    },
    /// Put parked events back in line: the relay pushes them before anything numbered after
    /// them, with the events of the same message that waited behind them.
    Retry {
        /// Only the events with these sequence numbers (repeat the option).
        #[arg(long = "sequence", value_name = "N", required_unless_present = "all")]
        sequences: Vec<i64>,
        /// Every parked event.
        #[arg(long, conflicts_with = "sequences")]
        all: bool,
    },
}

pub async fn run(settings: &Settings, command: EventsCommand) -> anyhow::Result<()> {
    let pool = runtime::db::connect(settings).await?;
    match command {
        EventsCommand::Status => {
            println!("{}", serde_json::to_string(&status(&pool).await?)?);
        }
        EventsCommand::Parked { limit } => {
            for event in parked(&pool, limit).await? {
                println!("{}", serde_json::to_string(&event)?);
            }
        }
        EventsCommand::Retry { sequences, all } => {
            let which = (!all).then_some(sequences.as_slice());
            let retried = retry(&pool, which).await?;
            println!("{retried} parked event(s) put back in line for the event relay");
        }
    }
    Ok(())
}

pub async fn status(pool: &PgPool) -> anyhow::Result<Summary> {
    Ok(events::summary(&mut *pool.acquire().await?).await?)
}

pub async fn parked(pool: &PgPool, limit: i64) -> anyhow::Result<Vec<Parked>> {
    Ok(events::parked(&mut *pool.acquire().await?, limit.max(1)).await?)
}

/// Puts the parked events numbered `sequences` (all when `None`) back in line and wakes the
/// relay; returns how many.
pub async fn retry(pool: &PgPool, sequences: Option<&[i64]>) -> anyhow::Result<u64> {
    let retried = events::retry_parked(&mut *pool.acquire().await?, sequences).await?;
    tracing::info!(retried, "parked events put back in line");
    Ok(retried)
}
