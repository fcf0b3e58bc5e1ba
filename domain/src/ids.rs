//! Identifiers of senders and messages.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use uuid::Uuid;

/// A sender's id: its broker user name. It is used in routing keys (`<sender>.<status>`) and
/// queue names (`ebox.status.<sender>`), so it is restricted to characters that mean nothing to
/// a topic exchange.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SenderId(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct IdError(&'static str);

impl SenderId {
    pub fn parse(raw: &str) -> Result<Self, IdError> {
        let valid = (1..=64).contains(&raw.len())
            && raw
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
        if valid {
            Ok(Self(raw.to_owned()))
        } else {
            Err(IdError(
                "a sender id has 1 to 64 characters among a-z, 0-9, '-' and '_'",
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SenderId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for SenderId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for SenderId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(deserializer)?;
        SenderId::parse(&raw).map_err(serde::de::Error::custom)
    }
}

/// The sender's own reference for a message (the AMQP `message_id`): its idempotency key.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SenderReference(String);

impl SenderReference {
    pub fn parse(raw: &str) -> Result<Self, IdError> {
        let valid = (1..=128).contains(&raw.len())
            && raw
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'));
        if valid {
            Ok(Self(raw.to_owned()))
        } else {
            Err(IdError(
                "message_id must have 1 to 128 characters among A-Z, a-z, 0-9, '.', '_', ':' and '-'",
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for SenderReference {
    type Error = IdError;
    fn try_from(raw: String) -> Result<Self, IdError> {
        Self::parse(&raw)
    }
}

impl From<SenderReference> for String {
    fn from(reference: SenderReference) -> String {
        reference.0
    }
}

/// The namespace of eBox message ids (UUIDv5). Changing it would break idempotency for every
/// message already accepted: it is part of the data, not of the code.
const MESSAGE_ID_NAMESPACE: Uuid = Uuid::from_u128(0x6f1c_2b7e_4d0a_5e91_b3a8_0c5d_e2f4_9a17);

/// The eBox message id, derived deterministically from (sender, sender reference), so that a
/// re-publication, or a redelivery anywhere in the pipeline, always names the same message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct MessageId(Uuid);

impl MessageId {
    pub fn derive(sender: &SenderId, reference: &SenderReference) -> Self {
        // The sender id cannot contain a newline, so the pair is unambiguous.
        let name = format!("{}\n{}", sender.as_str(), reference.as_str());
        Self(Uuid::new_v5(&MESSAGE_ID_NAMESPACE, name.as_bytes()))
    }

    pub fn from_uuid(id: Uuid) -> Self {
        Self(id)
    }

    pub fn as_uuid(&self) -> Uuid {
        self.0
    }
}

/// An id as a database column holds it.
impl From<Uuid> for MessageId {
    fn from(id: Uuid) -> Self {
        Self(id)
    }
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_message_id_depends_on_sender_and_reference_only() {
        let onem = SenderId::parse("onem").expect("valid");
        let riziv = SenderId::parse("riziv").expect("valid");
        let reference = SenderReference::parse("2026.ref-1").expect("valid");
        assert_eq!(
            MessageId::derive(&onem, &reference),
            MessageId::derive(&onem, &reference)
        );
        assert_ne!(
            MessageId::derive(&onem, &reference),
            MessageId::derive(&riziv, &reference)
        );
    }

    #[test]
    fn the_message_id_is_the_one_the_sender_contract_tells_senders_to_compute() {
        // docs/sender-contract.md: uuid5(6f1c2b7e-…, "onem\nref-1"), computed with Python.
        let onem = SenderId::parse("onem").expect("valid");
        let reference = SenderReference::parse("ref-1").expect("valid");
        assert_eq!(
            MessageId::derive(&onem, &reference).to_string(),
            "2ec3625d-5570-5b89-a8f5-bdf0d0bb60f2"
        );
    }

    #[test]
    fn references_with_spaces_or_too_long_are_refused() {
        assert!(SenderReference::parse("a b").is_err());
        assert!(SenderReference::parse("").is_err());
        assert!(SenderReference::parse(&"x".repeat(129)).is_err());
        assert!(SenderReference::parse(&"x".repeat(128)).is_ok());
    }

    #[test]
    fn sender_ids_cannot_carry_routing_key_syntax() {
        assert!(SenderId::parse("on.em").is_err());
        assert!(SenderId::parse("onem#").is_err());
        assert!(SenderId::parse("onem-2").is_ok());
    }
}
