//! Events for the federation's event engine, on exchange `ebox.events` (routing key = event
//! type). The shape is the event API's page item (`ebox-enterprise-event-api-1.1.1.yaml`):
//! a monotonic `eventSequenceNbr`, `eventTime`, `eventProviderId` and the `eventData`, whose
//! recipient is a citizen's eBox.

use crate::ids::MessageId;
use crate::translated::TranslatedString;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// AMQP `type` of an event message.
pub const EVENT_TYPE: &str = "ebox.event.v1";

crate::vocabulary! {
    /// The event types this service publishes (the event API's `eventType`); each is also the
    /// routing key on `ebox.events`.
    pub enum EventType {
        NewDocument => "newDocument",
        ReadDocument => "readDocument",
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EventEnvelope {
    pub event_sequence_nbr: i64,
    pub event_time: DateTime<Utc>,
    pub event_provider_id: String,
    pub event_data: DocumentEvent,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DocumentEvent {
    pub event_type: EventType,
    /// Stable for one event: a re-publication of the same event carries the same id.
    pub event_correlation_id: Uuid,
    pub recipient: EboxId,
    pub message_id: MessageId,
    pub receipt_date: DateTime<Utc>,
    pub expiration_date: DateTime<Utc>,
    pub registered_mail: bool,
    pub message_type_id: String,
    pub sender_organization_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sender_application_id: Option<String>,
    pub subject: TranslatedString,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EboxId {
    pub ebox_type: String,
    pub ebox_id_value: String,
}

/// The correlation id of an event about a message: the same on every re-publication.
pub fn correlation_id(event_type: EventType, message_id: MessageId) -> Uuid {
    Uuid::new_v5(&message_id.as_uuid(), event_type.as_str().as_bytes())
}
