//! Status events to senders: one place builds them, so every stage speaks the same contract.

use crate::publisher::Outgoing;
use crate::topology::{STATUS_EXCHANGE, status_routing_key};
use domain::status::{STATUS_EVENT_TYPE, StatusEvent};
use uuid::Uuid;

/// The status event for `sender_id`, routed `<sender>.<status>` on `ebox.status`. Its AMQP
/// `message_id` is fresh: a sender deduplicates on (`messageId`, `status`) in the body.
pub fn status_message(sender_id: &str, event: &StatusEvent) -> serde_json::Result<Outgoing> {
    Outgoing::json(
        STATUS_EXCHANGE,
        &status_routing_key(sender_id, event.status.as_str()),
        STATUS_EVENT_TYPE,
        &Uuid::new_v4().to_string(),
        event.correlation_id.as_deref(),
        event,
    )
}
