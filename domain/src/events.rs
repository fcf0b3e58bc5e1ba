//! The federation's document events, in two forms:
//!
//! - [`CitizenDocumentEvent`] and [`EventPageItem`]: what the event engine receives, the event
//!   API's shape (`ebox-enterprise-event-api-1.1.1.yaml`) for eBox Citizen — `ssin` where the
//!   enterprise contract has `enterpriseId` (`api/openapi.yaml`, `EboxCitizenDocumentEvent`).
//!   Recorded in the events outbox with their cause, numbered after commit, pushed by the event
//!   relay and served by the API's feed.
//! - [`EventEnvelope`]: the internal announcement on exchange `ebox.events` (routing key =
//!   event type) that notify and read-receipt consume and check against the record. Its
//!   `eventSequenceNbr` is the document's internal number, not the federation's.

use crate::ids::MessageId;
use crate::ssin::Ssin;
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
        /// The document is still unread some days after its receipt (the reminders job).
        NewDocumentReminder => "newDocumentReminder",
        /// The document is still unread and expires in a few days (the reminders job).
        DocumentExpirationAlert => "documentExpirationAlert",
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

/// A document event as the event engine receives it (the body of a push is an array of them):
/// the 1.1.1 fields, with the citizen's national number in place of `enterpriseId`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CitizenDocumentEvent {
    pub event_type: EventType,
    /// Stable for one event (see [`correlation_id`]): the event engine drops a repeat by it.
    pub event_correlation_id: Uuid,
    /// Masked in `Debug`; serialised as its 11 digits.
    pub ssin: Ssin,
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

/// A numbered event, as the feed serves it (`EboxCitizenDocumentEventPageItem`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EventPageItem {
    /// Gap-free, in the order the events committed.
    pub event_sequence_nbr: i64,
    pub event_time: DateTime<Utc>,
    pub event_provider_id: String,
    pub event_data: CitizenDocumentEvent,
}

/// The correlation id of an event about a message: the same on every re-publication.
pub fn correlation_id(event_type: EventType, message_id: MessageId) -> Uuid {
    Uuid::new_v5(&message_id.as_uuid(), event_type.as_str().as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_citizen_event_names_the_citizen_by_ssin_and_shows_no_recipient_object() {
        let message_id = MessageId::from_uuid(Uuid::nil());
        let event = CitizenDocumentEvent {
            event_type: EventType::ReadDocument,
            event_correlation_id: correlation_id(EventType::ReadDocument, message_id),
            ssin: Ssin::parse("85073003328").expect("a valid national number"),
            message_id,
            receipt_date: DateTime::UNIX_EPOCH,
            expiration_date: DateTime::UNIX_EPOCH,
            registered_mail: false,
            message_type_id: "attest".into(),
            sender_organization_id: "0406798006".into(),
            sender_application_id: None,
            subject: TranslatedString::default(),
        };
        let json = serde_json::to_value(&event).expect("JSON");
        assert_eq!(json["ssin"], "85073003328");
        assert_eq!(json["eventType"], "readDocument");
        for absent in ["recipient", "enterpriseId", "senderApplicationId"] {
            assert!(json.get(absent).is_none(), "{absent} in {json}");
        }
        assert!(!format!("{event:?}").contains("85073003328"));
        let back: CitizenDocumentEvent = serde_json::from_value(json).expect("it reads back");
        assert_eq!(back, event);
    }

    #[test]
    fn the_correlation_id_is_the_same_for_one_event_and_differs_between_events() {
        let message_id = MessageId::from_uuid(Uuid::from_u128(7));
        let new = correlation_id(EventType::NewDocument, message_id);
        assert_eq!(new, correlation_id(EventType::NewDocument, message_id));
        assert_ne!(new, correlation_id(EventType::ReadDocument, message_id));
    }
}
