//! Parked publishes: messages whose effects are committed but that the broker would not take
//! after a few tries on fresh channels (a sender's status queue deleted or full, a queue
//! leader failing over, a confirm that never came). The driver parks them in PostgreSQL
//! (table `parked_publishes`) and acknowledges its batch, so one destination cannot stop a
//! stage for everyone; [`Republisher`], a background job in every worker process, publishes
//! them again with back-off until the broker confirms, oldest first, then deletes them.
//!
//! A message may be published twice (a crash between the confirm and the delete): every
//! receiver already deduplicates (senders on (`messageId`, `status`), stages by their records).
//!
//! A parked message keeps the trace it was made in (`traceparent`, `tracestate`): published
//! again, it is still part of its message's trace.

use crate::publisher::{Outgoing, Publisher};
use runtime::internal_events::ParkedBacklog;
use runtime::jobs::{Job, Pass};
use runtime::trace::TraceContext;
use sqlx::{PgConnection, PgPool, Row as _};
use std::time::Duration;
use tracing::warn;

/// Rows a pass takes at once.
const BATCH: i64 = 100;
/// The longest wait between two tries of one message.
const MAX_BACKOFF_SECONDS: i64 = 300;

/// Parks `messages` for the republisher, with the error that stopped them.
pub async fn park(
    conn: &mut PgConnection,
    parked_by: &str,
    messages: &[(&Outgoing, String)],
) -> sqlx::Result<()> {
    // All or none, so that a retry after a fault parks nothing twice.
    let mut tx = sqlx::Acquire::begin(&mut *conn).await?;
    for (message, error) in messages {
        sqlx::query(
            "INSERT INTO parked_publishes (exchange, routing_key, kind, message_id,
                 correlation_id, made_at, body, parked_by, last_error, traceparent, tracestate)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        )
        .bind(&message.exchange)
        .bind(&message.routing_key)
        .bind(&message.kind)
        .bind(&message.message_id)
        .bind(&message.correlation_id)
        .bind(i64::try_from(message.timestamp).unwrap_or(i64::MAX))
        .bind(&message.body)
        .bind(parked_by)
        .bind(error)
        .bind(message.trace.as_ref().map(TraceContext::traceparent))
        .bind(message.trace.as_ref().and_then(TraceContext::tracestate))
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await
}

/// The background job that publishes parked messages again.
pub struct Republisher {
    pool: PgPool,
    amqp_url: String,
    /// The queues whose stages' parked messages this process publishes: those its broker user
    /// may publish (a component's user writes only what its own stages publish).
    parked_by: Vec<String>,
    /// Opened on the first pass and after a broker fault.
    publisher: Option<Publisher>,
}

impl Republisher {
    pub fn new(pool: PgPool, amqp_url: String, parked_by: Vec<String>) -> Self {
        Self {
            pool,
            amqp_url,
            parked_by,
            publisher: None,
        }
    }

    /// Publishes what is due; returns how many rows it took.
    async fn republish_due(&self, publisher: &Publisher) -> anyhow::Result<usize> {
        let mut tx = self.pool.begin().await?;
        let due = claim_due(&mut tx, &self.parked_by).await?;
        let messages: Vec<&Outgoing> = due.iter().map(|(_, message)| message).collect();
        let results = publisher.publish_each(&messages).await;
        for ((id, message), error) in due.iter().zip(results) {
            match error {
                None => {
                    sqlx::query("DELETE FROM parked_publishes WHERE id = $1")
                        .bind(id)
                        .execute(&mut *tx)
                        .await?;
                }
                Some(error) => {
                    warn!(exchange = message.exchange, routing_key = message.routing_key, error = %error, "a parked message was refused again");
                    sqlx::query(
                        "UPDATE parked_publishes
                            SET attempts = attempts + 1, last_error = $2,
                                next_attempt_at = now() + make_interval(
                                    secs => least($3, power(2, least(attempts, 20))))
                          WHERE id = $1",
                    )
                    .bind(id)
                    .bind(error.to_string())
                    .bind(MAX_BACKOFF_SECONDS as f64)
                    .execute(&mut *tx)
                    .await?;
                }
            }
        }
        tx.commit().await?;
        Ok(due.len())
    }
}

/// Locks the oldest due rows parked by the stages of `parked_by`, so that other republishers
/// skip them.
async fn claim_due(
    conn: &mut PgConnection,
    parked_by: &[String],
) -> sqlx::Result<Vec<(i64, Outgoing)>> {
    let rows = sqlx::query(
        "SELECT id, exchange, routing_key, kind, message_id, correlation_id, made_at, body,
                traceparent, tracestate
           FROM parked_publishes
          WHERE next_attempt_at <= now() AND parked_by = ANY($2)
          ORDER BY id
          LIMIT $1
            FOR UPDATE SKIP LOCKED",
    )
    .bind(BATCH)
    .bind(parked_by)
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|row| {
            Ok((
                row.try_get("id")?,
                Outgoing {
                    exchange: row.try_get("exchange")?,
                    routing_key: row.try_get("routing_key")?,
                    kind: row.try_get("kind")?,
                    message_id: row.try_get("message_id")?,
                    correlation_id: row.try_get("correlation_id")?,
                    timestamp: u64::try_from(row.try_get::<i64, _>("made_at")?).unwrap_or(0),
                    body: row.try_get("body")?,
                    trace: row.try_get::<Option<String>, _>("traceparent")?.and_then(
                        |traceparent| {
                            let tracestate: Option<String> =
                                row.try_get("tracestate").ok().flatten();
                            TraceContext::parse(&traceparent, tracestate.as_deref())
                        },
                    ),
                },
            ))
        })
        .collect()
}

/// How many messages wait, and how long the oldest has.
async fn backlog(pool: &PgPool) -> sqlx::Result<(i64, f64)> {
    sqlx::query_as(
        "SELECT count(*), coalesce(extract(epoch FROM now() - min(parked_at))::float8, 0)
           FROM parked_publishes",
    )
    .fetch_one(pool)
    .await
}

impl Job for Republisher {
    fn name(&self) -> &'static str {
        "republisher"
    }

    async fn pass(&mut self) -> anyhow::Result<Pass> {
        let publisher = match self.publisher.take() {
            Some(publisher) => publisher,
            None => {
                let connection = crate::driver::connect(&self.amqp_url, "ebox republisher").await?;
                Publisher::open(&connection).await?
            }
        };
        let taken = self.republish_due(&publisher).await?;
        // Refused messages keep the publisher: the fault is theirs, not the channel's; a
        // broken connection fails the pass and drops it.
        if publisher.channel().status().connected() {
            self.publisher = Some(publisher);
        }
        let (count, oldest_seconds) = backlog(&self.pool).await?;
        ParkedBacklog {
            count,
            oldest: Duration::from_secs_f64(oldest_seconds.max(0.0)),
        }
        .emit();
        Ok(if taken as i64 == BATCH {
            Pass::More
        } else {
            Pass::Idle
        })
    }
}
