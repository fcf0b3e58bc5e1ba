//! The citizen as the pipeline knows them: by a keyed hash of the national number
//! ([`CitizenKey`]), never by the number itself; their consent to electronic delivery; and how
//! they want to hear about a new document ([`Preferences`]).

use crate::ssin::Ssin;
use crate::translated::Language;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

/// The keyed hash (hex HMAC-SHA256) that stands for a citizen in the database and the audit
/// trail. It still lets an auditor find every record about one citizen when given the number
/// and the key, and nobody without the key.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct CitizenKey(String);

impl CitizenKey {
    /// A key read back from the database, where only [`SsinHasher::hash`] wrote it.
    pub fn from_stored(hex: String) -> Self {
        Self(hex)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Turns national numbers into [`CitizenKey`]s with the service's secret. The key can rotate:
/// new records use the current key ([`SsinHasher::hash`]); the previous keys are kept so that
/// records written under them are still found ([`SsinHasher::keys`]).
#[derive(Clone)]
pub struct SsinHasher {
    key: Vec<u8>,
    previous: Vec<Vec<u8>>,
}

impl SsinHasher {
    pub fn new(key: &[u8]) -> Self {
        Self {
            key: key.to_vec(),
            previous: Vec::new(),
        }
    }

    /// Also finds records written under `previous` keys (newest first).
    pub fn with_previous(mut self, previous: Vec<Vec<u8>>) -> Self {
        self.previous = previous;
        self
    }

    /// Hex HMAC-SHA256 of the 11 digits, with the current key: what new records carry.
    pub fn hash(&self, ssin: &Ssin) -> CitizenKey {
        hmac_hex(&self.key, ssin)
    }

    /// Every key the citizen may be recorded under: the current one first.
    pub fn keys(&self, ssin: &Ssin) -> CitizenKeys {
        let mut keys = vec![self.hash(ssin)];
        keys.extend(self.previous.iter().map(|key| hmac_hex(key, ssin)));
        CitizenKeys(keys)
    }
}

fn hmac_hex(key: &[u8], ssin: &Ssin) -> CitizenKey {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(ssin.expose().as_bytes());
    CitizenKey(hex::encode(mac.finalize().into_bytes()))
}

/// One citizen under every hash key in use: the current key's first (what new records carry),
/// then the previous keys'. Look-ups match any of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CitizenKeys(Vec<CitizenKey>);

impl CitizenKeys {
    /// The key new records carry.
    pub fn current(&self) -> &CitizenKey {
        &self.0[0]
    }

    /// Every key, for a look-up (`citizen = ANY($1)`).
    pub fn all(&self) -> Vec<String> {
        self.0.iter().map(|key| key.0.clone()).collect()
    }

    /// True when `stored` is this citizen's under one of the keys.
    pub fn matches(&self, stored: &str) -> bool {
        self.0.iter().any(|key| key.0 == stored)
    }
}

crate::vocabulary! {
    /// A citizen's word on electronic delivery.
    pub enum Consent {
        Granted => "granted",
        Withdrawn => "withdrawn",
    }
}

/// The consent in force, and since when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConsentState {
    pub consent: Consent,
    pub since: DateTime<Utc>,
}

crate::vocabulary! {
    /// The notification channels. Adding one: a variant here, a [`Channel`] variant, and a
    /// notifier in the notify worker.
    pub enum ChannelKind {
        Email => "email",
        Partner => "partner",
        /// Explicitly opted out (or no preference): nothing is sent.
        None => "none",
    }
}

/// How a citizen wants to hear about a new document, with where to reach them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "channel", rename_all = "lowercase")]
pub enum Channel {
    Email {
        email: String,
    },
    Partner {
        #[serde(rename = "partnerId")]
        partner_id: String,
    },
    /// Explicitly opted out of notifications.
    None,
}

impl Channel {
    pub fn kind(&self) -> ChannelKind {
        match self {
            Channel::Email { .. } => ChannelKind::Email,
            Channel::Partner { .. } => ChannelKind::Partner,
            Channel::None => ChannelKind::None,
        }
    }

    /// Where to send: the address or the partner id; `None` when opted out.
    pub fn target(&self) -> Option<&str> {
        match self {
            Channel::Email { email } => Some(email),
            Channel::Partner { partner_id } => Some(partner_id),
            Channel::None => None,
        }
    }

    /// The channel of `kind` with its target, as stored; `None` when the target is missing.
    pub fn from_parts(kind: ChannelKind, target: Option<String>) -> Option<Self> {
        Some(match kind {
            ChannelKind::Email => Channel::Email { email: target? },
            ChannelKind::Partner => Channel::Partner {
                partner_id: target?,
            },
            ChannelKind::None => Channel::None,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Preferences {
    pub language: Language,
    pub channel: Channel,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hash_depends_on_the_key_and_hides_the_number() {
        let ssin = Ssin::parse("85073003328").expect("valid");
        let a = SsinHasher::new(b"key-a").hash(&ssin);
        let b = SsinHasher::new(b"key-b").hash(&ssin);
        assert_ne!(a, b);
        assert_eq!(a, SsinHasher::new(b"key-a").hash(&ssin));
        assert!(!a.as_str().contains("85073003328"));
        assert_eq!(a.as_str().len(), 64);
    }

    #[test]
    fn after_a_rotation_new_records_use_the_new_key_and_old_ones_are_still_found() {
        let ssin = Ssin::parse("85073003328").expect("valid");
        let before = SsinHasher::new(b"key-a").hash(&ssin);
        let rotated = SsinHasher::new(b"key-b").with_previous(vec![b"key-a".to_vec()]);
        let keys = rotated.keys(&ssin);
        assert_eq!(keys.current(), &SsinHasher::new(b"key-b").hash(&ssin));
        assert_eq!(rotated.hash(&ssin), *keys.current());
        assert!(
            keys.matches(before.as_str()),
            "a record from before the rotation"
        );
        assert!(keys.matches(keys.current().as_str()));
        assert_eq!(keys.all().len(), 2);
        let other = Ssin::parse("01010100126").expect("valid");
        assert!(!keys.matches(SsinHasher::new(b"key-a").hash(&other).as_str()));
    }

    #[test]
    fn a_channel_reads_back_from_its_stored_parts() {
        for channel in [
            Channel::Email {
                email: "a@b.be".into(),
            },
            Channel::Partner {
                partner_id: "mybox".into(),
            },
            Channel::None,
        ] {
            let target = channel.target().map(str::to_owned);
            assert_eq!(Channel::from_parts(channel.kind(), target), Some(channel));
        }
    }
}
