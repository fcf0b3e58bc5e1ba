//! Read status: the first consultation of a main content (an attachment with `mainContent`,
//! or the body when `bodyMainContent`) marks the message read and announces `readDocument` on
//! `ebox.events`, which the read-receipt worker turns into the sender's `read` status.
//!
//! The event is published (with confirms) before the mark commits: if the commit fails, the
//! next opening publishes again, and the read-receipt worker keeps one receipt per message.

use crate::AppState;
use crate::model::DocumentRow;
use chrono::{DateTime, Utc};
use domain::events::{self, DocumentEvent, EVENT_TYPE, EboxId, EventEnvelope, EventType};
use domain::ids::MessageId;
use domain::ssin::Ssin;
use domain::translated::TranslatedString;
use queues::topology::EVENTS_EXCHANGE;
use queues::{Outgoing, Publisher};
use sqlx::types::Json;
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

#[derive(sqlx::FromRow)]
struct Marked {
    read_at: DateTime<Utc>,
    receipt_date: DateTime<Utc>,
    expiration_date: DateTime<Utc>,
    registered_mail: bool,
    message_type_id: String,
    sender_organization_id: String,
    sender_application_id: Option<String>,
    subject: Json<TranslatedString>,
}

/// Marks `document` read if it was not yet, and announces it. Never fails the consultation: a
/// failure leaves the message unread, and the next opening tries again.
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
    let mut tx = state.pool.begin().await?;
    let marked: Option<Marked> = sqlx::query_as(
        "UPDATE documents SET read_at = now()
          WHERE message_id = $1 AND read_at IS NULL
          RETURNING read_at, receipt_date, expiration_date, registered_mail, message_type_id,
                    sender_organization_id, sender_application_id, subject",
    )
    .bind(document.message_id)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(marked) = marked else {
        // Another opening got there first.
        return Ok(());
    };
    let sequence: i64 = sqlx::query_scalar("SELECT nextval('event_sequence_nbr')")
        .fetch_one(&mut *tx)
        .await?;
    let event = EventEnvelope {
        event_sequence_nbr: sequence,
        event_time: marked.read_at,
        event_provider_id: state.provider_id.clone(),
        event_data: DocumentEvent {
            event_type: EventType::ReadDocument,
            event_correlation_id: events::correlation_id(
                EventType::ReadDocument,
                MessageId::from_uuid(document.message_id),
            ),
            recipient: EboxId {
                ebox_type: "citizen".to_owned(),
                ebox_id_value: ssin.expose().to_owned(),
            },
            message_id: MessageId::from_uuid(document.message_id),
            receipt_date: marked.receipt_date,
            expiration_date: marked.expiration_date,
            registered_mail: marked.registered_mail,
            message_type_id: marked.message_type_id,
            sender_organization_id: marked.sender_organization_id,
            sender_application_id: marked.sender_application_id,
            subject: marked.subject.0.filled(),
        },
    };
    let outgoing = Outgoing::json(
        EVENTS_EXCHANGE,
        EventType::ReadDocument.as_str(),
        EVENT_TYPE,
        &event.event_data.event_correlation_id.to_string(),
        None,
        &event,
    )?;
    state.events.publish(&[outgoing]).await?;
    tx.commit().await?;
    info!(message_id = %document.message_id, "message read");
    Ok(())
}
