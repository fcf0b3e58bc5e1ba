//! Bearer tokens from the identity provider: signature (RS256 or ES256, keys from a JWKS or PEM
//! file), `iss`, `aud`, `exp` and `nbf` checked; then, per endpoint family, the scope and the
//! eIDAS assurance level (`acr`).
//!
//! A citizen is the token's `sub` (their national number); a sender is its `client_id`.

use crate::error::ApiError;
use common::config::AssuranceLevel;
use common::ssin::Ssin;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
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
        let raw = std::fs::read(path)
            .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
        let keys = if raw.trim_ascii_start().starts_with(b"{") {
            let set: JwkSet = serde_json::from_slice(&raw)
                .map_err(|e| anyhow::anyhow!("{} is not a JWKS: {e}", path.display()))?;
            set.keys
                .iter()
                .filter_map(|jwk| {
                    let algorithm = match &jwk.algorithm {
                        AlgorithmParameters::RSA(_) => Algorithm::RS256,
                        AlgorithmParameters::EllipticCurve(ec)
                            if ec.curve == EllipticCurve::P256 =>
                        {
                            Algorithm::ES256
                        }
                        _ => return None,
                    };
                    Some(DecodingKey::from_jwk(jwk).map(|key| Key {
                        kid: jwk.common.key_id.clone(),
                        algorithm,
                        key,
                    }))
                })
                .collect::<Result<Vec<_>, _>>()?
        } else {
            let key = DecodingKey::from_ec_pem(&raw)
                .map(|key| (key, Algorithm::ES256))
                .or_else(|_| DecodingKey::from_rsa_pem(&raw).map(|key| (key, Algorithm::RS256)))
                .map_err(|e| {
                    anyhow::anyhow!("{} holds no RSA or P-256 public key: {e}", path.display())
                })?;
            vec![Key {
                kid: None,
                algorithm: key.1,
                key: key.0,
            }]
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
}
