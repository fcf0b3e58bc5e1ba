//! The statuses a sender hears back on its status queue, and the stable codes that explain them.
//!
//! These names are the sender contract: never rename one. The README lists them.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// AMQP `type` of a status event.
pub const STATUS_EVENT_TYPE: &str = "ebox.status.v1";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    Accepted,
    Rejected,
    NoDigitalUser,
    Published,
    Read,
    Expired,
    Failed,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Accepted => "accepted",
            Status::Rejected => "rejected",
            Status::NoDigitalUser => "no-digital-user",
            Status::Published => "published",
            Status::Read => "read",
            Status::Expired => "expired",
            Status::Failed => "failed",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        [
            Status::Accepted,
            Status::Rejected,
            Status::NoDigitalUser,
            Status::Published,
            Status::Read,
            Status::Expired,
            Status::Failed,
        ]
        .into_iter()
        .find(|s| s.as_str() == raw)
    }
}

/// The stable codes of the sender contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Code {
    Accepted,
    InvalidInput,
    UnsupportedSchema,
    InvalidSsin,
    InvalidRecipient,
    SenderNotAuthorized,
    UnknownMessageType,
    MediaTypeNotAllowed,
    DigestDoNotMatch,
    TooLarge,
    InvalidExpirationDate,
    DuplicateReferenceConflict,
    NoDigitalUser,
    Published,
    Expired,
    Read,
}

impl Code {
    pub fn as_str(self) -> &'static str {
        match self {
            Code::Accepted => "ACCEPTED",
            Code::InvalidInput => "INVALID_INPUT",
            Code::UnsupportedSchema => "UNSUPPORTED_SCHEMA",
            Code::InvalidSsin => "INVALID_SSIN",
            Code::InvalidRecipient => "INVALID_RECIPIENT",
            Code::SenderNotAuthorized => "SENDER_NOT_AUTHORIZED",
            Code::UnknownMessageType => "UNKNOWN_MESSAGE_TYPE",
            Code::MediaTypeNotAllowed => "MEDIA_TYPE_NOT_ALLOWED",
            Code::DigestDoNotMatch => "DIGEST_DO_NOT_MATCH",
            Code::TooLarge => "TOO_LARGE",
            Code::InvalidExpirationDate => "INVALID_EXPIRATION_DATE",
            Code::DuplicateReferenceConflict => "DUPLICATE_REFERENCE_CONFLICT",
            Code::NoDigitalUser => "NO_DIGITAL_USER",
            Code::Published => "PUBLISHED",
            Code::Expired => "EXPIRED",
            Code::Read => "READ",
        }
    }
}

/// The body of a status event (`type` [`STATUS_EVENT_TYPE`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusEvent {
    /// The sender's `message_id`; absent only when the publication had none.
    pub sender_reference: Option<String>,
    /// The eBox message id; absent when the publication was rejected before one could be made.
    pub message_id: Option<Uuid>,
    pub status: Status,
    pub code: String,
    pub message: String,
    pub at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expiration_date: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
}
