//! Signed proofs: a JWS compact serialization (RFC 7515) signed by the platform with Ed25519
//! (`alg: EdDSA`, RFC 8037), with the signing key's `kid`. Any JOSE library verifies one with
//! the platform's JWKS; nothing here is a format of our own.
//!
//! - `proofOfDeposit` (`proof: "deposit"`): the document was put in the citizen's eBox, at
//!   `depositedAt`, with these digests, until `expirationDate`;
//! - `proofOfReading` (`proof: "reading"`): the citizen opened it at `readAt`.
//!
//! The citizen is bound without their national number in clear: `recipient` is the hex
//! SHA-256 of `"<national number>:<messageId>"` (11 digits, a colon, the message id in its
//! lowercase hyphenated form), which the sender, who knows both, can recompute.

use crate::keys::{Keyring, Signer};
use chrono::{DateTime, Utc};
use jsonwebtoken::{Algorithm, Header, Validation};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

/// What a proof proves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProofKind {
    Deposit,
    Reading,
}

/// A document's digest as the contract writes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AttachmentDigest {
    pub file_name: String,
    pub media_type: String,
    pub main_content: bool,
    /// base64url SHA-256 of the bytes.
    pub sha256: String,
}

/// The claims of a proof.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProofClaims {
    pub proof: ProofKind,
    /// The provider (`EBOX_PROVIDER_ID`).
    pub iss: String,
    /// When the proof was signed (Unix seconds).
    pub iat: i64,
    pub message_id: String,
    pub sender_reference: String,
    /// The sender's id (its broker user).
    pub sender: String,
    pub sender_organization_id: String,
    /// See the module doc: binds the citizen without their number in clear.
    pub recipient: String,
    pub message_type_id: String,
    pub attachments: Vec<AttachmentDigest>,
    /// base64url SHA-256 of the body (`bodyContent` as JSON), when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_sha256: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deposited_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_at: Option<DateTime<Utc>>,
    pub expiration_date: DateTime<Utc>,
    /// The audit record of the proven event (`stored`, `read-confirmed`): its `seq` in
    /// `ebox audit trace` and exports, where the seal that covers it is named. The proof is
    /// signed before that seal exists, so it names the record, which the seal then covers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audit_record: Option<i64>,
}

/// `recipient`: hex SHA-256 of `"<ssin>:<messageId>"`.
pub fn recipient_digest(ssin_digits: &str, message_id: &str) -> String {
    hex_digest(format!("{ssin_digits}:{message_id}").as_bytes())
}

fn hex_digest(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Signs `claims` as a JWS compact serialization.
pub fn sign(signer: &Signer, claims: &ProofClaims) -> anyhow::Result<String> {
    sign_json(signer, claims)
}

/// Signs any JSON payload as a JWS compact serialization (EdDSA, the signer's `kid`).
pub(crate) fn sign_json<T: Serialize>(signer: &Signer, payload: &T) -> anyhow::Result<String> {
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = Some(signer.kid().to_owned());
    Ok(jsonwebtoken::encode(
        &header,
        payload,
        signer.encoding_key(),
    )?)
}

#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("not a JWS compact serialization: {0}")]
    Malformed(String),
    #[error("signed with key {0:?}, which the key set does not hold")]
    UnknownKey(String),
    #[error("the signature does not verify: {0}")]
    BadSignature(String),
}

/// Verifies a proof against `keyring` and returns its claims. Proofs do not expire: a proof of
/// deposit stays a proof of deposit.
pub fn verify(keyring: &Keyring, token: &str) -> Result<ProofClaims, VerifyError> {
    verify_json(keyring, token)
}

/// Verifies any JWS that [`sign_json`] made, and returns its payload.
pub(crate) fn verify_json<T: serde::de::DeserializeOwned>(
    keyring: &Keyring,
    token: &str,
) -> Result<T, VerifyError> {
    let header =
        jsonwebtoken::decode_header(token).map_err(|e| VerifyError::Malformed(e.to_string()))?;
    if header.alg != Algorithm::EdDSA {
        return Err(VerifyError::Malformed(format!(
            "alg is {:?}, not EdDSA",
            header.alg
        )));
    }
    let kid = header
        .kid
        .ok_or_else(|| VerifyError::Malformed("no kid in the header".into()))?;
    let key = keyring
        .decoding_key(&kid)
        .ok_or(VerifyError::UnknownKey(kid))?;
    let mut validation = Validation::new(Algorithm::EdDSA);
    validation.required_spec_claims.clear();
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;
    jsonwebtoken::decode::<T>(token, &key, &validation)
        .map(|data| data.claims)
        .map_err(|e| VerifyError::BadSignature(e.to_string()))
}

/// The claims of a proof this service signed and kept, read without checking the signature
/// (for deriving the proof of reading from the proof of deposit; a third party uses
/// [`verify`]).
pub fn claims_of_own(token: &str) -> anyhow::Result<ProofClaims> {
    use base64::Engine as _;
    let payload = token
        .split('.')
        .nth(1)
        .ok_or_else(|| anyhow::anyhow!("not a JWS compact serialization"))?;
    let json = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload)?;
    Ok(serde_json::from_slice(&json)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::generate_pem;

    fn claims() -> ProofClaims {
        ProofClaims {
            proof: ProofKind::Deposit,
            iss: "ebox-document-provider".into(),
            iat: 1_795_000_000,
            message_id: "7d0b0f4e-1a2b-5c3d-8e9f-0a1b2c3d4e5f".into(),
            sender_reference: "ref-1".into(),
            sender: "onem".into(),
            sender_organization_id: "0406798006".into(),
            recipient: recipient_digest("85073003328", "7d0b0f4e-1a2b-5c3d-8e9f-0a1b2c3d4e5f"),
            message_type_id: "unemployment-certificate".into(),
            attachments: vec![AttachmentDigest {
                file_name: "attest.pdf".into(),
                media_type: "application/pdf".into(),
                main_content: true,
                sha256: "47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU".into(),
            }],
            body_sha256: None,
            deposited_at: Some(DateTime::from_timestamp(1_795_000_000, 0).expect("a time")),
            read_at: None,
            expiration_date: DateTime::from_timestamp(1_826_536_000, 0).expect("a time"),
            audit_record: None,
        }
    }

    fn signer() -> Signer {
        Signer::from_pem(&generate_pem().expect("a key")).expect("a signer")
    }

    fn ring_of(signer: &Signer) -> Keyring {
        let mut ring = Keyring::default();
        ring.add(signer.verifying_key());
        ring
    }

    #[test]
    fn a_proof_verifies_with_its_key_and_gives_back_its_claims() {
        let signer = signer();
        let token = sign(&signer, &claims()).expect("signed");
        assert_eq!(token.split('.').count(), 3, "a compact JWS");
        assert_eq!(
            verify(&ring_of(&signer), &token).expect("verifies"),
            claims()
        );
    }

    #[test]
    fn a_proof_fails_with_another_key_or_a_changed_claim() {
        let signer = signer();
        let token = sign(&signer, &claims()).expect("signed");
        assert!(matches!(
            verify(&ring_of(&self::signer()), &token),
            Err(VerifyError::UnknownKey(_))
        ));
        // The same kid with another key's signature: swap in a payload signed elsewhere.
        let mut changed = claims();
        changed.sender_reference = "ref-2".into();
        let forged = sign(&self::signer(), &changed).expect("signed");
        let parts: Vec<&str> = token.split('.').collect();
        let forged_parts: Vec<&str> = forged.split('.').collect();
        let tampered = format!("{}.{}.{}", parts[0], forged_parts[1], parts[2]);
        assert!(matches!(
            verify(&ring_of(&signer), &tampered),
            Err(VerifyError::BadSignature(_))
        ));
    }

    #[test]
    fn the_jwks_round_trips_and_names_each_key_by_its_thumbprint() {
        let signer = signer();
        let ring = ring_of(&signer);
        let jwks = ring.jwks();
        assert_eq!(jwks["keys"][0]["kid"], signer.kid());
        let again = Keyring::from_jwks(&jwks.to_string()).expect("parses");
        let token = sign(&signer, &claims()).expect("signed");
        assert!(verify(&again, &token).is_ok());
        let mut wrong = jwks.clone();
        wrong["keys"][0]["kid"] = "another".into();
        assert!(Keyring::from_jwks(&wrong.to_string()).is_err());
    }

    #[test]
    fn the_recipient_digest_is_the_sha256_of_number_colon_id() {
        // printf '85073003328:7d0b0f4e-1a2b-5c3d-8e9f-0a1b2c3d4e5f' | sha256sum
        let digest = recipient_digest("85073003328", "7d0b0f4e-1a2b-5c3d-8e9f-0a1b2c3d4e5f");
        assert_eq!(
            digest,
            "48a18f56a6a36aac4e5a61a2abab87183cb567e47207bfc0eef3dfbb7939f02c"
        );
        assert_ne!(digest, recipient_digest("85073003328", "another"));
    }
}
