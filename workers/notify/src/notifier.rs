//! A notification channel: how to reach a citizen on it. Each channel is one [`Notifier`]
//! ([`crate::email::Mailer`], [`crate::webhook::PartnerWebhooks`]); adding a channel is a
//! module implementing this trait plus a variant of `domain::citizen::ChannelKind`.

use domain::citizen::{ChannelKind, CitizenKey};
use domain::events::EventType;
use domain::ids::MessageId;
use domain::translated::Language;
use futures_util::future::BoxFuture;
use uuid::Uuid;

/// A notification the dispatcher claimed from the outbox and must send now.
#[derive(Debug, Clone)]
pub struct Notification {
    pub message_id: MessageId,
    pub channel: ChannelKind,
    /// What it tells: a new document (`newDocument`), a reminder (`newDocumentReminder`) or
    /// an expiry alert (`documentExpirationAlert`).
    pub kind: EventType,
    pub citizen: CitizenKey,
    /// The same on every attempt: the e-mail's `Message-ID`, the webhook's `Idempotency-Key`.
    pub idempotency_key: Uuid,
    /// The address, or the partner id.
    pub target: String,
    pub language: Language,
    /// What the channel needs beyond the target (the partner's event); empty otherwise.
    pub payload: serde_json::Value,
    /// Attempts so far, this one included.
    pub attempts: u32,
}

/// Sends one notification on one channel; an error is retried by the dispatcher.
pub trait Notifier: Send + Sync {
    fn channel(&self) -> ChannelKind;

    fn send<'a>(&'a self, notification: &'a Notification) -> BoxFuture<'a, anyhow::Result<()>>;
}
