//! What travels between the stages after intake: which message, and for whom.
//!
//! Intake writes the message and its document once; every later stage reads what it acts on
//! from that record. A hand-off carries the recipient only because the federation's events
//! name the citizen by national number, which the record keeps only as a keyed hash: each
//! stage checks the hand-off's recipient against that hash, so a hand-off injected into an
//! internal queue cannot redirect, alter or invent a document.

use crate::ids::MessageId;
use crate::ssin::Ssin;
use serde::{Deserialize, Serialize};

/// AMQP `type` of a hand-off.
pub const HANDOFF_TYPE: &str = "ebox.internal.handoff.v1";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Handoff {
    pub message_id: MessageId,
    pub recipient: Ssin,
}
