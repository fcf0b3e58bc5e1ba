//! The statuses a sender hears back on its status queue, and the stable codes that explain them.
//!
//! These names are the sender contract: never rename one. The README lists them.

use crate::ids::MessageId;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// AMQP `type` of a status event.
pub const STATUS_EVENT_TYPE: &str = "ebox.status.v1";

crate::vocabulary! {
    /// Where a message stands, as its sender hears it.
    pub enum Status {
        Accepted => "accepted",
        Rejected => "rejected",
        NoDigitalUser => "no-digital-user",
        Published => "published",
        Read => "read",
        Expired => "expired",
        Failed => "failed",
        /// The sender withdrew the message (`ebox.withdraw.v1`): it is no longer in the
        /// citizen's eBox, or never reached it.
        Withdrawn => "withdrawn",
    }
}

crate::vocabulary! {
    /// The stable codes of the sender contract.
    pub enum Code {
        Accepted => "ACCEPTED",
        InvalidInput => "INVALID_INPUT",
        UnsupportedSchema => "UNSUPPORTED_SCHEMA",
        InvalidSsin => "INVALID_SSIN",
        InvalidRecipient => "INVALID_RECIPIENT",
        SenderNotAuthorized => "SENDER_NOT_AUTHORIZED",
        UnknownMessageType => "UNKNOWN_MESSAGE_TYPE",
        MediaTypeNotAllowed => "MEDIA_TYPE_NOT_ALLOWED",
        DigestDoNotMatch => "DIGEST_DO_NOT_MATCH",
        TooLarge => "TOO_LARGE",
        InvalidExpirationDate => "INVALID_EXPIRATION_DATE",
        DuplicateReferenceConflict => "DUPLICATE_REFERENCE_CONFLICT",
        NoDigitalUser => "NO_DIGITAL_USER",
        Published => "PUBLISHED",
        Expired => "EXPIRED",
        Read => "READ",
        /// The platform gave up on the message (a stage could not process it): nothing
        /// reached the citizen.
        TechnicalError => "TECHNICAL_ERROR",
        /// Audited only, never sent: a publication from a broker user with no registration
        /// has no status queue to answer on.
        UnknownSender => "UNKNOWN_SENDER",
        /// The sender withdrew the message.
        Withdrawn => "WITHDRAWN",
        /// A withdrawal named a reference this sender never had accepted.
        UnknownReference => "UNKNOWN_REFERENCE",
        /// A withdrawal named a message that never reached the citizen's eBox and never will
        /// (`no-digital-user`, `failed`): there is nothing to withdraw.
        NothingToWithdraw => "NOTHING_TO_WITHDRAW",
        /// A withdrawal named a message that already expired: it left the citizen's eBox then.
        AlreadyExpired => "ALREADY_EXPIRED",
        /// A publication came by another sender's lane (routing key `sender.<another>`).
        WrongLane => "WRONG_LANE",
        /// A sender with limits published on the shared lane (routing key `message`): it
        /// publishes on its own lane (`sender.<its id>`).
        OwnLaneRequired => "OWN_LANE_REQUIRED",
    }
}

/// The body of a status event (`type` [`STATUS_EVENT_TYPE`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusEvent {
    /// The sender's `message_id`; absent only when the publication had none.
    pub sender_reference: Option<String>,
    /// The eBox message id; absent when the publication was rejected before one could be made.
    pub message_id: Option<MessageId>,
    pub status: Status,
    pub code: Code,
    pub message: String,
    pub at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expiration_date: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
    /// The signed proof of deposit (a JWS), once the document is in the citizen's eBox.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proof_of_deposit: Option<String>,
    /// The signed proof of reading (a JWS), once the citizen opened it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proof_of_reading: Option<String>,
}
