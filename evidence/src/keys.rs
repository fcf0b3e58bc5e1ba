//! The platform's Ed25519 keys: the signing key (PKCS#8 PEM, from a file), and the
//! verification keys by `kid` as a JWKS (RFC 7517, key type OKP, RFC 8037), so that keys can
//! rotate without invalidating older proofs.
//!
//! A key's `kid` is its JWK thumbprint (RFC 7638): SHA-256 over
//! `{"crv":"Ed25519","kty":"OKP","x":"<x>"}`, base64url. Anybody can recompute it from the
//! public key, and two keys never share it.

use anyhow::Context;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use ed25519_dalek::{SigningKey, VerifyingKey};
use jsonwebtoken::{DecodingKey, EncodingKey};
use sha2::{Digest as _, Sha256};
use std::path::Path;

/// The key that signs proofs (and, later, audit seals).
pub struct Signer {
    kid: String,
    verifying: VerifyingKey,
    encoding: EncodingKey,
}

impl Signer {
    /// Reads a PKCS#8 PEM Ed25519 private key (`openssl genpkey -algorithm ed25519`, or
    /// `ebox proof keygen`).
    pub fn from_pem_file(path: &Path) -> anyhow::Result<Self> {
        let pem = std::fs::read_to_string(path)
            .with_context(|| format!("Failed to read the signing key {}", path.display()))?;
        Self::from_pem(&pem)
            .with_context(|| format!("{} is not a PKCS#8 PEM Ed25519 private key", path.display()))
    }

    pub fn from_pem(pem: &str) -> anyhow::Result<Self> {
        let signing = SigningKey::from_pkcs8_pem(pem).map_err(|e| anyhow::anyhow!("{e}"))?;
        let der = signing.to_pkcs8_der().map_err(|e| anyhow::anyhow!("{e}"))?;
        let verifying = signing.verifying_key();
        Ok(Self {
            kid: thumbprint(&verifying),
            verifying,
            encoding: EncodingKey::from_ed_der(der.as_bytes()),
        })
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    pub fn verifying_key(&self) -> VerifyingKey {
        self.verifying
    }

    pub(crate) fn encoding_key(&self) -> &EncodingKey {
        &self.encoding
    }
}

/// A new signing key, as PKCS#8 PEM (for development and tests; production keys come from the
/// operator's key management).
pub fn generate_pem() -> anyhow::Result<String> {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
    // PKCS#8 v1 (no public key inside), the form `openssl genpkey -algorithm ed25519` writes
    // and every tool reads.
    let keypair = ed25519_dalek::ed25519::pkcs8::KeypairBytes {
        secret_key: seed,
        public_key: None,
    };
    let pem = keypair
        .to_pkcs8_pem(Default::default())
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(pem.to_string())
}

/// The public part of an Ed25519 key, base64url (the JWK's `x`).
fn x(key: &VerifyingKey) -> String {
    URL_SAFE_NO_PAD.encode(key.as_bytes())
}

/// The RFC 7638 thumbprint of an Ed25519 public key.
pub fn thumbprint(key: &VerifyingKey) -> String {
    let canonical = format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{}"}}"#, x(key));
    URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()))
}

/// Verification keys by `kid`.
#[derive(Clone, Default)]
pub struct Keyring {
    keys: Vec<(String, VerifyingKey)>,
}

impl Keyring {
    /// The keys of a JWKS (`{"keys": [{"kty": "OKP", "crv": "Ed25519", "x", "kid"}]}`); keys
    /// of other types are skipped. A `kid` that is not the key's thumbprint is refused: a
    /// proof names its key by thumbprint.
    pub fn from_jwks(json: &str) -> anyhow::Result<Self> {
        let jwks: serde_json::Value = serde_json::from_str(json).context("the JWKS is not JSON")?;
        let keys = jwks["keys"]
            .as_array()
            .context("the JWKS has no \"keys\" array")?;
        let mut ring = Keyring::default();
        for key in keys {
            if key["kty"] != "OKP" || key["crv"] != "Ed25519" {
                continue;
            }
            let raw = URL_SAFE_NO_PAD
                .decode(key["x"].as_str().context("an Ed25519 key without \"x\"")?)
                .context("an Ed25519 key's \"x\" is not base64url")?;
            let bytes: [u8; 32] = raw
                .try_into()
                .map_err(|_| anyhow::anyhow!("an Ed25519 key's \"x\" is not 32 bytes"))?;
            let verifying = VerifyingKey::from_bytes(&bytes)
                .map_err(|e| anyhow::anyhow!("not an Ed25519 public key: {e}"))?;
            let kid = thumbprint(&verifying);
            if let Some(given) = key["kid"].as_str()
                && given != kid
            {
                anyhow::bail!("key {given:?} is not named by its thumbprint ({kid})");
            }
            ring.add(verifying);
        }
        Ok(ring)
    }

    pub fn add(&mut self, key: VerifyingKey) {
        let kid = thumbprint(&key);
        if !self.keys.iter().any(|(known, _)| *known == kid) {
            self.keys.push((kid, key));
        }
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    pub(crate) fn decoding_key(&self, kid: &str) -> Option<DecodingKey> {
        self.keys
            .iter()
            .find(|(known, _)| known == kid)
            .and_then(|(_, key)| DecodingKey::from_ed_components(&x(key)).ok())
    }

    /// The keys as a JWKS document.
    pub fn jwks(&self) -> serde_json::Value {
        serde_json::json!({
            "keys": self.keys.iter().map(|(kid, key)| serde_json::json!({
                "kty": "OKP",
                "crv": "Ed25519",
                "x": x(key),
                "kid": kid,
                "alg": "EdDSA",
                "use": "sig",
            })).collect::<Vec<_>>()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `openssl genpkey -algorithm ed25519`
    const OPENSSL_KEY: &str = "-----BEGIN PRIVATE KEY-----
MC4CAQAwBQYDK2VwBCIEIAElH3I9/hyqiofUn8iWzj4p6vJPTilcdClabQBHQ85s
-----END PRIVATE KEY-----
";

    #[test]
    fn a_key_made_by_openssl_loads_and_a_generated_key_has_the_same_form() {
        let signer = Signer::from_pem(OPENSSL_KEY).expect("an OpenSSL key loads");
        assert_eq!(signer.kid().len(), 43, "a base64url SHA-256");
        let generated = generate_pem().expect("a key");
        assert_eq!(
            generated.len(),
            OPENSSL_KEY.len(),
            "PKCS#8 v1 like OpenSSL's"
        );
        assert!(Signer::from_pem(&generated).is_ok());
    }
}
