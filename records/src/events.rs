//! The events outbox (`event_outbox`): the federation's events, each written in the
//! transaction of its cause ([`record`]: store's publication, the API's read mark), numbered
//! once committed ([`number_committed`]), served as a feed ([`page`]) and pushed to the event
//! engine by the event relay ([`next_to_deliver`], [`mark_delivered`], [`park`]).
//!
//! **Numbering.** `eventSequenceNbr` must be gap-free in commit order, so that a reader paging
//! with `lastSequenceNbr` never skips an event whose transaction committed after a later-numbered
//! one. A number taken inside the writing transaction (a PostgreSQL sequence) cannot promise
//! that: transaction A takes 7, B takes 8 and commits, a reader sees 8 and moves past 7 before A
//! commits. So a row is written without a number, and numbered only once its transaction has
//! committed — a row the sequencer can see is committed, by definition — by one sequencer at a
//! time (a transaction-scoped advisory lock), continuing from the high-water mark in
//! `event_outbox_sequence`. A sequencer's numbers become visible together, when it commits, and
//! each sequencer starts where the last committed one stopped, so every reader sees the numbers
//! 1..N of some N, never a hole. Rows a pass finds are numbered in insertion order: an event's
//! cause commits before a later event about the same message is written (the citizen sees a
//! document only once store committed it), so causal order is kept.
//!
//! Whoever reads numbers first: the relay before each batch, the feed before each page. A
//! reader that finds the lock taken reads what is numbered; the rest shows on its next call.

use chrono::{DateTime, Utc};
use domain::events::{CitizenDocumentEvent, EventPageItem};
use sqlx::types::Json;
use sqlx::{Connection as _, PgConnection};
use uuid::Uuid;

/// The PostgreSQL notification channel a commit that recorded events wakes (a trigger of the
/// migration sends it).
pub const WAKE_CHANNEL: &str = "ebox_event_outbox";

/// The advisory lock (transaction-scoped) one sequencer holds while it numbers.
const SEQUENCER_LOCK: i64 = 0x6562_6f78_0001;
/// The advisory lock (session-scoped) the event relay that pushes holds: one relay at a time
/// keeps the order.
const RELAY_LOCK: i64 = 0x6562_6f78_0002;

/// Rows one sequencer pass numbers at most.
pub const NUMBER_AT_ONCE: i64 = 10_000;

/// Records `event`, which happened at `event_time`, in the caller's transaction; nothing when
/// it is recorded already (its correlation id is stable). Returns whether it was new.
pub async fn record(
    conn: &mut PgConnection,
    event: &CitizenDocumentEvent,
    event_time: DateTime<Utc>,
    provider_id: &str,
) -> sqlx::Result<bool> {
    let inserted = sqlx::query(
        "INSERT INTO event_outbox (correlation_id, event_type, message_id, event_time,
                                   provider_id, event_data)
         VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (correlation_id) DO NOTHING",
    )
    .bind(event.event_correlation_id)
    .bind(event.event_type.as_str())
    .bind(event.message_id.as_uuid())
    .bind(event_time)
    .bind(provider_id)
    .bind(Json(event))
    .execute(conn)
    .await?;
    Ok(inserted.rows_affected() == 1)
}

/// Numbers up to `limit` committed events that have no number yet, in insertion order, after
/// the last number given, in a transaction of its own. `None` when another sequencer holds the
/// lock (its numbers show when it commits); otherwise how many were numbered.
pub async fn number_committed(conn: &mut PgConnection, limit: i64) -> sqlx::Result<Option<u64>> {
    let mut tx = conn.begin().await?;
    let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_xact_lock($1)")
        .bind(SEQUENCER_LOCK)
        .fetch_one(&mut *tx)
        .await?;
    if !locked {
        return Ok(None);
    }
    // A statement after the lock: its snapshot holds what the previous sequencer committed.
    // The rows are locked before they are counted, so one deleted meanwhile (its document
    // expired) is left out rather than leaving a hole.
    let numbered = sqlx::query(
        "WITH next AS (
             SELECT id FROM event_outbox WHERE sequence_nbr IS NULL
              ORDER BY id LIMIT $1 FOR UPDATE
         ), numbered AS (
             SELECT id, row_number() OVER (ORDER BY id) AS n FROM next
         )
         UPDATE event_outbox e
            SET sequence_nbr = s.last_sequence_nbr + numbered.n, numbered_at = now()
           FROM numbered, event_outbox_sequence s
          WHERE e.id = numbered.id",
    )
    .bind(limit)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if numbered > 0 {
        sqlx::query("UPDATE event_outbox_sequence SET last_sequence_nbr = last_sequence_nbr + $1")
            .bind(i64::try_from(numbered).unwrap_or(i64::MAX))
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(Some(numbered))
}

/// A page of the feed: numbered events after `after`, in order, at most `size`, only those at
/// or after `since` when given.
pub struct Page {
    pub items: Vec<EventPageItem>,
    /// More numbered events (matching `since`) follow the page.
    pub has_next: bool,
}

pub async fn page(
    conn: &mut PgConnection,
    after: i64,
    since: Option<DateTime<Utc>>,
    size: i64,
) -> sqlx::Result<Page> {
    let rows: Vec<(i64, DateTime<Utc>, String, Json<CitizenDocumentEvent>)> = sqlx::query_as(
        "SELECT sequence_nbr, event_time, provider_id, event_data
           FROM event_outbox
          WHERE sequence_nbr > $1 AND ($2::timestamptz IS NULL OR event_time >= $2)
          ORDER BY sequence_nbr
          LIMIT $3",
    )
    .bind(after)
    .bind(since)
    .bind(size.saturating_add(1))
    .fetch_all(conn)
    .await?;
    let has_next = rows.len() as i64 > size;
    let items = rows
        .into_iter()
        .take(usize::try_from(size).unwrap_or(0))
        .map(
            |(event_sequence_nbr, event_time, event_provider_id, data)| EventPageItem {
                event_sequence_nbr,
                event_time,
                event_provider_id,
                event_data: data.0,
            },
        )
        .collect();
    Ok(Page { items, has_next })
}

/// Takes the relay's lock for the session of `conn` (released when the connection closes).
/// `false` when another relay holds it.
pub async fn try_lead(conn: &mut PgConnection) -> sqlx::Result<bool> {
    sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
        .bind(RELAY_LOCK)
        .fetch_one(conn)
        .await
}

/// A numbered event the event engine has not taken yet.
#[derive(Debug, Clone)]
pub struct Pending {
    pub id: i64,
    pub sequence_nbr: i64,
    pub event: CitizenDocumentEvent,
    /// The number of a parked earlier event about the same message, which this one waits
    /// behind (the order per message is kept).
    pub behind: Option<i64>,
}

/// The next numbered events to push, in order: neither delivered nor parked.
pub async fn next_to_deliver(conn: &mut PgConnection, limit: i64) -> sqlx::Result<Vec<Pending>> {
    let rows: Vec<(i64, i64, Json<CitizenDocumentEvent>, Option<i64>)> = sqlx::query_as(
        "SELECT e.id, e.sequence_nbr, e.event_data,
                (SELECT min(p.sequence_nbr) FROM event_outbox p
                  WHERE p.message_id = e.message_id AND p.parked_at IS NOT NULL
                    AND p.sequence_nbr < e.sequence_nbr) AS behind
           FROM event_outbox e
          WHERE e.sequence_nbr IS NOT NULL AND e.delivered_at IS NULL AND e.parked_at IS NULL
          ORDER BY e.sequence_nbr
          LIMIT $1",
    )
    .bind(limit)
    .fetch_all(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(id, sequence_nbr, event, behind)| Pending {
            id,
            sequence_nbr,
            event: event.0,
            behind,
        })
        .collect())
}

/// The event engine took these events (or had them already).
pub async fn mark_delivered(conn: &mut PgConnection, ids: &[i64]) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE event_outbox SET delivered_at = now(), attempts = attempts + 1
          WHERE id = ANY($1) AND delivered_at IS NULL",
    )
    .bind(ids)
    .execute(conn)
    .await?;
    Ok(())
}

/// An attempt at these events failed and will be made again.
pub async fn note_failure(conn: &mut PgConnection, ids: &[i64], error: &str) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE event_outbox SET attempts = attempts + 1, last_error = $2
          WHERE id = ANY($1) AND delivered_at IS NULL",
    )
    .bind(ids)
    .bind(error)
    .execute(conn)
    .await?;
    Ok(())
}

/// Sets the event aside for the operators: the event engine refused it for good, or it waits
/// behind one that was.
pub async fn park(conn: &mut PgConnection, id: i64, reason: &str) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE event_outbox SET parked_at = now(), parked_reason = $2, last_error = $2
          WHERE id = $1 AND delivered_at IS NULL",
    )
    .bind(id)
    .bind(reason)
    .execute(conn)
    .await?;
    Ok(())
}

/// What waits: events not delivered nor parked (numbered or not) and since when the oldest
/// was recorded; events parked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backlog {
    pub pending: i64,
    pub oldest: Option<DateTime<Utc>>,
    pub parked: i64,
}

pub async fn backlog(conn: &mut PgConnection) -> sqlx::Result<Backlog> {
    let (pending, oldest, parked) = sqlx::query_as(
        "SELECT count(*) FILTER (WHERE parked_at IS NULL),
                min(recorded_at) FILTER (WHERE parked_at IS NULL),
                count(*) FILTER (WHERE parked_at IS NOT NULL)
           FROM event_outbox WHERE delivered_at IS NULL",
    )
    .fetch_one(conn)
    .await?;
    Ok(Backlog {
        pending,
        oldest,
        parked,
    })
}

/// The outbox at a glance, for `ebox events status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    pub last_sequence_nbr: i64,
    pub unnumbered: i64,
    pub undelivered: i64,
    pub delivered: i64,
    pub parked: i64,
}

pub async fn summary(conn: &mut PgConnection) -> sqlx::Result<Summary> {
    let (last_sequence_nbr, unnumbered, undelivered, delivered, parked) = sqlx::query_as(
        "SELECT (SELECT last_sequence_nbr FROM event_outbox_sequence),
                count(*) FILTER (WHERE sequence_nbr IS NULL),
                count(*) FILTER (WHERE sequence_nbr IS NOT NULL AND delivered_at IS NULL
                                   AND parked_at IS NULL),
                count(*) FILTER (WHERE delivered_at IS NOT NULL),
                count(*) FILTER (WHERE parked_at IS NOT NULL)
           FROM event_outbox",
    )
    .fetch_one(conn)
    .await?;
    Ok(Summary {
        last_sequence_nbr,
        unnumbered,
        undelivered,
        delivered,
        parked,
    })
}

/// A parked event, as `ebox events parked` shows it: never the national number.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
pub struct Parked {
    pub sequence_nbr: i64,
    pub event_type: String,
    pub message_id: Uuid,
    pub correlation_id: Uuid,
    pub recorded_at: DateTime<Utc>,
    pub parked_at: DateTime<Utc>,
    pub reason: String,
    pub attempts: i32,
}

/// The parked events, oldest number first.
pub async fn parked(conn: &mut PgConnection, limit: i64) -> sqlx::Result<Vec<Parked>> {
    sqlx::query_as(
        "SELECT sequence_nbr, event_type, message_id, correlation_id, recorded_at, parked_at,
                coalesce(parked_reason, '') AS reason, attempts
           FROM event_outbox WHERE parked_at IS NOT NULL
          ORDER BY sequence_nbr LIMIT $1",
    )
    .bind(limit)
    .fetch_all(conn)
    .await
}

/// Puts parked events back in line for the relay — those numbered `sequences`, or all when
/// `None` — and wakes it. They keep their numbers: the relay sends them before anything
/// numbered after them. Returns how many.
pub async fn retry_parked(conn: &mut PgConnection, sequences: Option<&[i64]>) -> sqlx::Result<u64> {
    let retried = sqlx::query(
        "UPDATE event_outbox SET parked_at = NULL, parked_reason = NULL
          WHERE parked_at IS NOT NULL AND ($1::bigint[] IS NULL OR sequence_nbr = ANY($1))",
    )
    .bind(sequences)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    sqlx::query("SELECT pg_notify($1, '')")
        .bind(WAKE_CHANNEL)
        .execute(conn)
        .await?;
    Ok(retried)
}
