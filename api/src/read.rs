//! Read status: the first consultation of a main content (an attachment with `mainContent`,
//! or the body when `bodyMainContent`) marks the message read, records the federation's
//! `readDocument` in the events outbox with the mark ([`records::events`]), and announces
//! `readDocument` on `ebox.events`, which the read-receipt worker turns into the sender's
//! `read` status.
//!
//! The announcement is published in the trace of the request that opened the document (the
//! portal's, [`crate::traces`]), so that the sender's `read` status joins it.
//!
//! The mark commits first, and the announcement is published (with confirms) after:
//! read-receipt confirms only a committed mark, so an event can never run ahead of it. If the event is lost
//! (a crash or a broker fault in between), read-receipt's recovery job confirms the mark
//! without it.

use crate::AppState;
use crate::model::DocumentRow;
use anyhow::Context as _;
use chrono::{DateTime, Utc};
use domain::events::{EVENT_TYPE, EventEnvelope, EventType};
use domain::ids::MessageId;
use domain::ssin::Ssin;
use queues::topology::EVENTS_EXCHANGE;
use queues::{Outgoing, Publisher};
use records::documents;
use tokio::sync::Mutex;
use tracing::{info, warn};

const PUBLISH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// A confirmed publisher opened on first use and opened again after a failure.
pub struct EventPublisher {
    amqp_url: String,
    open: Mutex<Option<(lapin::Connection, Publisher)>>,
}

impl EventPublisher {
    pub fn new(amqp_url: String) -> Self {
        Self {
            amqp_url,
            open: Mutex::new(None),
        }
    }

    /// Publishes with confirms, giving up after [`PUBLISH_TIMEOUT`]: a stalled broker must not
    /// hold the consultation (and the message's row lock) hostage.
    pub async fn publish(&self, messages: &[Outgoing]) -> anyhow::Result<()> {
        match tokio::time::timeout(PUBLISH_TIMEOUT, self.publish_now(messages)).await {
            Ok(result) => result,
            Err(_) => {
                *self.open.lock().await = None;
                anyhow::bail!("the broker did not confirm within {PUBLISH_TIMEOUT:?}")
            }
        }
    }

    async fn publish_now(&self, messages: &[Outgoing]) -> anyhow::Result<()> {
        let mut open = self.open.lock().await;
        if open.is_none() {
            let connection = queues::driver::connect(&self.amqp_url, "ebox api").await?;
            let publisher = Publisher::open(&connection).await?;
            *open = Some((connection, publisher));
        }
        let result = match open.as_ref() {
            Some((_, publisher)) => publisher.publish_all(messages).await,
            None => unreachable!("opened above"),
        };
        if result.is_err() {
            *open = None;
        }
        Ok(result?)
    }
}

/// Marks `document` read if it was not yet, and announces it. Never fails the consultation: a
/// failure to mark leaves the message unread, and the next opening tries again.
pub async fn mark_read(state: &AppState, document: &DocumentRow, ssin: &Ssin) {
    if document.read_at.is_some() {
        return;
    }
    if let Err(error) = try_mark_read(state, document, ssin).await {
        warn!(message_id = %document.message_id, error = format!("{error:#}"), "could not mark the message read; the next opening will");
    }
}

async fn try_mark_read(
    state: &AppState,
    document: &DocumentRow,
    ssin: &Ssin,
) -> anyhow::Result<()> {
    let message_id = MessageId::from_uuid(document.message_id);
    let mut tx = state.pool.begin().await?;
    let read_at: Option<DateTime<Utc>> = sqlx::query_scalar(
        "UPDATE documents SET read_at = now()
          WHERE message_id = $1 AND read_at IS NULL
          RETURNING read_at",
    )
    .bind(message_id.as_uuid())
    .fetch_optional(&mut *tx)
    .await?;
    let Some(read_at) = read_at else {
        // Another opening got there first.
        return Ok(());
    };
    let sequence: i64 = sqlx::query_scalar("SELECT nextval('event_sequence_nbr')")
        .fetch_one(&mut *tx)
        .await?;
    let recorded = documents::find(&mut tx, message_id)
        .await?
        .context("a document being read exists")?;
    let (Some(event_data), Some(federation_event)) = (
        recorded.event_data(EventType::ReadDocument, ssin),
        recorded.citizen_event(EventType::ReadDocument, ssin),
    ) else {
        anyhow::bail!("a document being read is published");
    };
    // The federation's readDocument, in the transaction of the mark: it exists exactly when
    // the mark committed.
    records::events::record(&mut tx, &federation_event, read_at, &state.provider_id).await?;
    let event = EventEnvelope {
        event_sequence_nbr: sequence,
        event_time: read_at,
        event_provider_id: state.provider_id.clone(),
        event_data,
    };
    let outgoing = Outgoing::json(
        EVENTS_EXCHANGE,
        EventType::ReadDocument.as_str(),
        EVENT_TYPE,
        &event.event_data.event_correlation_id.to_string(),
        None,
        &event,
    )?
    .traced(runtime::trace::current());
    tx.commit().await?;
    info!(message_id = %document.message_id, "message read");
    if let Err(error) = state.events.publish(&[outgoing]).await {
        warn!(message_id = %document.message_id, error = format!("{error:#}"), "readDocument not announced; read-receipt's recovery will confirm the read");
    }
    Ok(())
}
