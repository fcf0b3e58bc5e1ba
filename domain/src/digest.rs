//! SHA-256 digests of documents, written in base64url as the federation's `Digest` wants.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Sha256Digest([u8; 32]);

/// Bytes that are not 32 long are not a SHA-256 digest.
#[derive(Debug, thiserror::Error)]
#[error("not a SHA-256 digest: {0} bytes instead of 32")]
pub struct NotADigest(usize);

/// A digest as a database keeps it (`bytea`).
impl TryFrom<Vec<u8>> for Sha256Digest {
    type Error = NotADigest;

    fn try_from(bytes: Vec<u8>) -> Result<Self, NotADigest> {
        let len = bytes.len();
        bytes.try_into().map(Self).map_err(|_| NotADigest(len))
    }
}

impl Sha256Digest {
    pub fn of(bytes: &[u8]) -> Self {
        Self(Sha256::digest(bytes).into())
    }

    /// Parses a base64url value, with or without padding.
    pub fn from_base64url(raw: &str) -> Option<Self> {
        let bytes = URL_SAFE_NO_PAD.decode(raw.trim_end_matches('=')).ok()?;
        bytes.try_into().ok().map(Self)
    }

    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        bytes.try_into().ok().map(Self)
    }

    pub fn to_base64url(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.0)
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

/// The contract's `Digest` object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DigestObject {
    pub digest_method: String,
    pub digest_value: String,
}

impl From<Sha256Digest> for DigestObject {
    fn from(digest: Sha256Digest) -> Self {
        Self {
            digest_method: "sha_256".into(),
            digest_value: digest.to_base64url(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_digest_round_trips_through_base64url() {
        let digest = Sha256Digest::of(b"hello");
        assert_eq!(
            Sha256Digest::from_base64url(&digest.to_base64url()),
            Some(digest)
        );
        assert_eq!(
            Sha256Digest::from_base64url(&format!("{}=", digest.to_base64url())),
            Some(digest)
        );
        assert_eq!(Sha256Digest::from_base64url("abc"), None);
    }
}
