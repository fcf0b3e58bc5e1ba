//! Audit seals: each seal covers a set of audit records by the SHA-256 of their canonical
//! lines, names the previous seal by its SHA-256 (a hash chain), and is signed like a proof
//! (JWS, Ed25519). Editing, deleting, inserting or reordering a record changes a digest;
//! editing or dropping a seal breaks the chain or a signature.

use crate::keys::{Keyring, Signer};
use crate::proof::{VerifyError, sign_json, verify_json};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

/// What a seal states. Its canonical form is this struct as JSON, fields in this order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SealClaims {
    pub seq: i64,
    pub sealed_at: DateTime<Utc>,
    pub record_count: i32,
    pub first_record: i64,
    pub last_record: i64,
    /// Hex SHA-256 over the covered records' canonical lines, each followed by `\n`, in id
    /// order.
    pub records_sha256: String,
    /// The previous seal's `seal_sha256` (empty for the first seal).
    pub previous_seal: String,
}

impl SealClaims {
    /// The canonical JSON of the seal.
    pub fn canonical(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Hex SHA-256 of the canonical JSON: what the next seal chains to.
    pub fn seal_sha256(&self) -> String {
        hex_sha256(self.canonical().as_bytes())
    }

    pub fn sign(&self, signer: &Signer) -> anyhow::Result<String> {
        sign_json(signer, self)
    }
}

/// The claims a seal's JWS carries, if its signature verifies against `keyring`.
pub fn verify(keyring: &Keyring, jws: &str) -> Result<SealClaims, VerifyError> {
    verify_json(keyring, jws)
}

/// Hex SHA-256 over `lines`, each followed by `\n`.
pub fn records_sha256<'a>(lines: impl IntoIterator<Item = &'a str>) -> String {
    let mut digest = Sha256::new();
    for line in lines {
        digest.update(line.as_bytes());
        digest.update(b"\n");
    }
    hex(&digest.finalize())
}

fn hex_sha256(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::generate_pem;

    #[test]
    fn a_seal_signs_its_claims_and_chains_by_digest() {
        let signer = Signer::from_pem(&generate_pem().expect("a key")).expect("a signer");
        let mut ring = Keyring::default();
        ring.add(signer.verifying_key());
        let seal = SealClaims {
            seq: 1,
            sealed_at: DateTime::from_timestamp(1_795_000_000, 0).expect("a time"),
            record_count: 2,
            first_record: 1,
            last_record: 2,
            records_sha256: records_sha256(["a", "b"]),
            previous_seal: String::new(),
        };
        let jws = seal.sign(&signer).expect("signed");
        assert_eq!(verify(&ring, &jws).expect("verifies"), seal);
        assert_eq!(seal.seal_sha256().len(), 64);
        assert_ne!(records_sha256(["a", "b"]), records_sha256(["b", "a"]));
        assert_ne!(records_sha256(["ab"]), records_sha256(["a", "b"]));
    }
}
