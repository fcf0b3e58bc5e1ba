//! Bearer tokens from the identity provider: signature (RS256 or ES256, keys from a JWKS or PEM
//! file), `iss`, `aud`, `exp` and `nbf` checked; then, per endpoint family, the scope and the
//! eIDAS assurance level (`acr`).
//!
//! A citizen is the token's `sub` (their national number); a sender is its `client_id`.

use crate::error::ApiError;
use domain::ssin::Ssin;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use runtime::config::AssuranceLevel;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::collections::HashSet;
use std::path::Path;

pub const SCOPE_SUMMARY: &str = "ebox:summary";
pub const SCOPE_MESSAGES: &str = "ebox:messages";
pub const SCOPE_REFERENCE_DATA: &str = "ebox:referencedata";
pub const SCOPE_SENDER: &str = "ebox:sender";

struct Key {
    kid: Option<String>,
    algorithm: Algorithm,
    key: DecodingKey,
}

pub struct Verifier {
    keys: Vec<Key>,
    issuer: String,
    audience: String,
    min_acr: AssuranceLevel,
}

#[derive(Debug, Deserialize)]
struct Claims {
    sub: Option<String>,
    acr: Option<String>,
    #[serde(default)]
    scope: Option<serde_json::Value>,
    #[serde(default)]
    scp: Option<serde_json::Value>,
    client_id: Option<String>,
    azp: Option<String>,
}

/// Who called, as far as a valid token says.
#[derive(Debug, Clone)]
pub struct Principal {
    pub subject: Option<String>,
    pub client_id: Option<String>,
    scopes: HashSet<String>,
    acr: Option<AssuranceLevel>,
}

/// SHA-256 (hex) of the raw token, for the audit trail.
pub fn token_sha256(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

impl Verifier {
    /// Reads a JWKS (`{"keys": [...]}`) or a PEM public key (RSA → RS256, P-256 → ES256).
    pub fn from_file(
        path: &Path,
        issuer: String,
        audience: String,
        min_acr: AssuranceLevel,
    ) -> anyhow::Result<Self> {
        let raw = read_key_file(path)?;
        let keys = if looks_like_jwks(&raw) {
            keys_from_jwks(&raw, path)?
        } else {
            vec![key_from_pem(&raw, path)?]
        };
        anyhow::ensure!(
            !keys.is_empty(),
            "{} holds no RS256 or ES256 key",
            path.display()
        );
        Ok(Self {
            keys,
            issuer,
            audience,
            min_acr,
        })
    }

    /// Checks the token; any failure is a 401.
    pub fn verify(&self, token: &str) -> Result<Principal, ApiError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| ApiError::unauthorized())?;
        let mut validation = Validation::new(header.alg);
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(&[&self.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        validation.validate_nbf = true;
        validation.leeway = 30;
        let candidates = self.keys.iter().filter(|k| {
            k.algorithm == header.alg
                && match (&header.kid, &k.kid) {
                    (Some(wanted), Some(kid)) => wanted == kid,
                    _ => true,
                }
        });
        for key in candidates {
            if let Ok(data) = jsonwebtoken::decode::<Claims>(token, &key.key, &validation) {
                let claims = data.claims;
                let scopes = [claims.scope, claims.scp]
                    .into_iter()
                    .flatten()
                    .flat_map(|value| match value {
                        serde_json::Value::String(s) => {
                            s.split_whitespace().map(str::to_owned).collect::<Vec<_>>()
                        }
                        serde_json::Value::Array(items) => items
                            .into_iter()
                            .filter_map(|i| i.as_str().map(str::to_owned))
                            .collect(),
                        _ => Vec::new(),
                    })
                    .collect();
                return Ok(Principal {
                    subject: claims.sub,
                    client_id: claims.client_id.or(claims.azp),
                    scopes,
                    acr: claims.acr.as_deref().and_then(AssuranceLevel::parse),
                });
            }
        }
        Err(ApiError::unauthorized())
    }

    /// The citizen behind a token that carries `scope` at a sufficient assurance level.
    pub fn citizen(&self, principal: &Principal, scope: &str) -> Result<Ssin, ApiError> {
        if !principal.scopes.contains(scope) {
            return Err(ApiError::forbidden(format!(
                "the token lacks the scope {scope}"
            )));
        }
        if principal.acr.is_none_or(|acr| acr < self.min_acr) {
            return Err(ApiError::forbidden(
                "the authentication's assurance level is too low",
            ));
        }
        principal
            .subject
            .as_deref()
            .and_then(|sub| Ssin::parse(sub).ok())
            .ok_or_else(|| ApiError::forbidden("the token's subject is not a citizen"))
    }

    /// The sender behind a token with the sender scope.
    pub fn sender(&self, principal: &Principal) -> Result<String, ApiError> {
        if !principal.scopes.contains(SCOPE_SENDER) {
            return Err(ApiError::forbidden(format!(
                "the token lacks the scope {SCOPE_SENDER}"
            )));
        }
        principal
            .client_id
            .clone()
            .ok_or_else(|| ApiError::forbidden("the token names no client_id"))
    }
}

fn read_key_file(path: &Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))
}

/// A JWKS is a JSON object; anything else is taken for a PEM file.
fn looks_like_jwks(raw: &[u8]) -> bool {
    raw.trim_ascii_start().starts_with(b"{")
}

/// Every RS256 or ES256 key of the set; keys of other types or curves are skipped, but a
/// supported key that cannot be built is an error.
fn keys_from_jwks(raw: &[u8], path: &Path) -> anyhow::Result<Vec<Key>> {
    let set: JwkSet = serde_json::from_slice(raw)
        .map_err(|e| anyhow::anyhow!("{} is not a JWKS: {e}", path.display()))?;
    let keys = set
        .keys
        .iter()
        .filter_map(key_from_jwk)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(keys)
}

/// `None` for a key this service does not verify with.
fn key_from_jwk(jwk: &Jwk) -> Option<jsonwebtoken::errors::Result<Key>> {
    let algorithm = jwk_algorithm(&jwk.algorithm)?;
    Some(DecodingKey::from_jwk(jwk).map(|key| Key {
        kid: jwk.common.key_id.clone(),
        algorithm,
        key,
    }))
}

/// The algorithm a JWK's key type implies: RSA → RS256, P-256 → ES256, anything else none.
fn jwk_algorithm(parameters: &AlgorithmParameters) -> Option<Algorithm> {
    match parameters {
        AlgorithmParameters::RSA(_) => Some(Algorithm::RS256),
        AlgorithmParameters::EllipticCurve(ec) if ec.curve == EllipticCurve::P256 => {
            Some(Algorithm::ES256)
        }
        _ => None,
    }
}

/// A PEM public key without a kid: an EC key first, else an RSA one.
fn key_from_pem(raw: &[u8], path: &Path) -> anyhow::Result<Key> {
    let (key, algorithm) = DecodingKey::from_ec_pem(raw)
        .map(|key| (key, Algorithm::ES256))
        .or_else(|_| DecodingKey::from_rsa_pem(raw).map(|key| (key, Algorithm::RS256)))
        .map_err(|e| anyhow::anyhow!("{} holds no RSA or P-256 public key: {e}", path.display()))?;
    Ok(Key {
        kid: None,
        algorithm,
        key,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{EncodingKey, Header};

    fn fixture(name: &str) -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../tests/fixtures")
            .join(name)
    }

    fn token(private: &str, algorithm: Algorithm, sub: &str) -> String {
        let pem = std::fs::read(fixture(private)).expect("fixture");
        let key = match algorithm {
            Algorithm::ES256 => EncodingKey::from_ec_pem(&pem),
            _ => EncodingKey::from_rsa_pem(&pem),
        }
        .expect("a private key");
        let now = chrono::Utc::now().timestamp();
        let claims = serde_json::json!({
            "iss": "idp", "aud": "ebox", "exp": now + 60, "sub": sub,
            "scope": "ebox:messages", "acr": AssuranceLevel::HIGH,
        });
        jsonwebtoken::encode(&Header::new(algorithm), &claims, &key).expect("signed")
    }

    fn verifier(public: &str) -> Verifier {
        Verifier::from_file(
            &fixture(public),
            "idp".into(),
            "ebox".into(),
            AssuranceLevel::Substantial,
        )
        .expect("keys")
    }

    #[test]
    fn a_pem_public_key_verifies_its_own_algorithm_only() {
        let es = verifier("es256-public.pem");
        let rs = verifier("rs256-public.pem");
        let es_token = token("es256-private.pem", Algorithm::ES256, "85073003328");
        let rs_token = token("rs256-private.pem", Algorithm::RS256, "85073003328");
        let citizen = es
            .verify(&es_token)
            .and_then(|p| es.citizen(&p, SCOPE_MESSAGES));
        assert_eq!(
            citizen.map(|s| s.expose().to_owned()).ok().as_deref(),
            Some("85073003328")
        );
        assert!(rs.verify(&rs_token).is_ok());
        assert!(es.verify(&rs_token).is_err());
        assert!(rs.verify(&es_token).is_err());
        let forged = token(
            "stranger-es256-private.pem",
            Algorithm::ES256,
            "85073003328",
        );
        assert!(es.verify(&forged).is_err());
    }

    #[test]
    fn scope_and_assurance_are_checked_after_the_signature() {
        let es = verifier("es256-public.pem");
        let principal = es
            .verify(&token("es256-private.pem", Algorithm::ES256, "85073003328"))
            .expect("valid");
        assert_eq!(
            es.citizen(&principal, SCOPE_SUMMARY).map_err(|e| e.status),
            Err(axum::http::StatusCode::FORBIDDEN)
        );
    }

    #[test]
    fn a_jwks_verifies_tokens_of_both_of_its_algorithms() {
        let jwks = verifier("jwks.json");
        for (private, algorithm) in [
            ("es256-private.pem", Algorithm::ES256),
            ("rs256-private.pem", Algorithm::RS256),
        ] {
            let signed = token(private, algorithm, "85073003328");
            assert!(jwks.verify(&signed).is_ok(), "{algorithm:?}");
        }
        let forged = token(
            "stranger-es256-private.pem",
            Algorithm::ES256,
            "85073003328",
        );
        assert!(jwks.verify(&forged).is_err());
    }

    #[test]
    fn only_rsa_and_p256_keys_imply_an_algorithm() {
        let cases = [
            (
                "an RSA key",
                serde_json::json!({"kty": "RSA", "n": "AQAB", "e": "AQAB"}),
                Some(Algorithm::RS256),
            ),
            (
                "a P-256 key",
                serde_json::json!({"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA"}),
                Some(Algorithm::ES256),
            ),
            (
                "a P-384 key",
                serde_json::json!({"kty": "EC", "crv": "P-384", "x": "AA", "y": "AA"}),
                None,
            ),
            (
                "an Ed25519 key",
                serde_json::json!({"kty": "OKP", "crv": "Ed25519", "x": "AA"}),
                None,
            ),
            (
                "a shared secret",
                serde_json::json!({"kty": "oct", "k": "AA"}),
                None,
            ),
        ];
        for (what, jwk, expected) in cases {
            let jwk: Jwk = serde_json::from_value(jwk).expect("a JWK");
            assert_eq!(jwk_algorithm(&jwk.algorithm), expected, "{what}");
        }
    }

    #[test]
    fn a_key_file_is_a_jwks_only_when_it_holds_a_json_object() {
        let cases: [(&[u8], bool); 5] = [
            (b"{\"keys\": []}", true),
            (b"\n  {\"keys\": []}", true),
            (b"-----BEGIN PUBLIC KEY-----", false),
            (b"[]", false),
            (b"", false),
        ];
        for (raw, expected) in cases {
            assert_eq!(
                looks_like_jwks(raw),
                expected,
                "{}",
                String::from_utf8_lossy(raw)
            );
        }
    }

    #[test]
    fn a_jwks_keeps_its_rs256_and_es256_keys_with_their_kids() {
        let mut set: serde_json::Value =
            serde_json::from_slice(&std::fs::read(fixture("jwks.json")).expect("fixture"))
                .expect("JSON");
        let keys = set["keys"].as_array_mut().expect("keys");
        keys.push(serde_json::json!({"kty": "oct", "k": "AAAA", "kid": "secret"}));
        keys.push(serde_json::json!({"kty": "EC", "crv": "P-384", "x": "AA", "y": "AA"}));
        let raw = serde_json::to_vec(&set).expect("JSON");
        let keys = keys_from_jwks(&raw, Path::new("jwks.json")).expect("keys");
        let found: Vec<_> = keys
            .iter()
            .map(|k| (k.kid.as_deref(), k.algorithm))
            .collect();
        assert_eq!(
            found,
            [
                (Some("test-es256"), Algorithm::ES256),
                (Some("test-rs256"), Algorithm::RS256)
            ]
        );
    }

    #[test]
    fn a_key_file_without_a_usable_key_is_refused_with_the_reason() {
        let dir = std::env::temp_dir().join(format!("ebox-api-keys-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a temporary directory");
        let private = std::fs::read_to_string(fixture("es256-private.pem")).expect("fixture");
        let cases = [
            ("missing", None, "cannot read"),
            ("broken.json", Some("{\"keys\": ["), "is not a JWKS"),
            (
                "empty.json",
                Some("{\"keys\": []}"),
                "holds no RS256 or ES256 key",
            ),
            (
                "secret.json",
                Some("{\"keys\": [{\"kty\": \"oct\", \"k\": \"AAAA\"}]}"),
                "holds no RS256 or ES256 key",
            ),
            (
                "garbage.pem",
                Some("hello"),
                "holds no RSA or P-256 public key",
            ),
            (
                "private.pem",
                Some(private.as_str()),
                "holds no RSA or P-256 public key",
            ),
        ];
        for (name, content, reason) in cases {
            let path = dir.join(name);
            if let Some(content) = content {
                std::fs::write(&path, content).expect("a key file");
            }
            let refused = Verifier::from_file(
                &path,
                "idp".into(),
                "ebox".into(),
                AssuranceLevel::Substantial,
            )
            .err()
            .map(|e| e.to_string());
            assert!(
                refused.as_deref().is_some_and(|e| e.contains(reason)),
                "{name}: {refused:?}"
            );
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
