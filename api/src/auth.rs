//! Bearer tokens from the identity provider: signature (RS256 or ES256, keys from a JWKS or PEM
//! file, or from the provider's JWKS URL), `typ` when present, `iss`, `aud`, `exp`, `nbf` and a
//! bounded lifetime (`exp - iat`) checked; then, per endpoint family, the scope and the eIDAS
//! assurance level (`acr`).
//!
//! A citizen is the token's `sub` (their national number). A sender is the `client_id` of a
//! token with the `ebox:sender` scope that is not a citizen's: no national number as `sub`, no
//! citizen scope; `azp` never names a sender (in a citizen's token it is the portal that asked).
//! The reader of the event feed is, the same way, the `client_id` of a token with the
//! `ebox:events` scope that is not a citizen's ([`Verifier::client`]).
//!
//! Keys from a URL are cached: refreshed in the background ([`Verifier::keep_keys_fresh`]), and
//! on demand when a token names a key the cache does not hold ([`Verifier::refresh_for`]), at
//! most once per [`REFRESH_ON_UNKNOWN_KEY_EVERY`] so that a flood of made-up `kid`s cannot
//! hammer the identity provider.

use crate::error::ApiError;
use domain::ssin::Ssin;
use jsonwebtoken::jwk::{
    AlgorithmParameters, EllipticCurve, Jwk, JwkSet, KeyAlgorithm, KeyOperations, PublicKeyUse,
};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use runtime::config::AssuranceLevel;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::collections::HashSet;
use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

pub const SCOPE_SUMMARY: &str = "ebox:summary";
pub const SCOPE_MESSAGES: &str = "ebox:messages";
pub const SCOPE_REFERENCE_DATA: &str = "ebox:referencedata";
pub const SCOPE_SENDER: &str = "ebox:sender";
/// The federation's event feed (`GET /ebox/citizen/document/events`): every citizen's events,
/// for the event engine's client only.
pub const SCOPE_EVENTS: &str = "ebox:events";

/// The scopes only a citizen's token carries: a token with one of them never acts for a sender.
const CITIZEN_SCOPES: [&str; 2] = [SCOPE_SUMMARY, SCOPE_MESSAGES];

/// The shortest time between two refreshes of the JWKS caused by unknown `kid`s.
pub const REFRESH_ON_UNKNOWN_KEY_EVERY: Duration = Duration::from_secs(30);

/// The longest a JWKS fetch may take, and the largest document accepted.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);
const MAX_JWKS_BYTES: usize = 1024 * 1024;

struct Key {
    kid: Option<String>,
    algorithm: Algorithm,
    key: DecodingKey,
}

/// What every token must satisfy besides its signature.
#[derive(Debug, Clone)]
pub struct Policy {
    pub issuer: String,
    pub audience: String,
    pub min_acr: AssuranceLevel,
    /// The longest `exp - iat` accepted; a token without `iat` is refused.
    pub max_lifetime: Duration,
}

pub struct Verifier {
    keys: KeySource,
    policy: Policy,
}

/// Where the verification keys come from.
enum KeySource {
    /// A file, read once at start-up.
    File(Vec<Key>),
    /// The identity provider's JWKS URL, cached.
    Url(Arc<RemoteKeys>),
}

/// The keys last fetched from the identity provider's JWKS URL.
struct RemoteKeys {
    url: String,
    client: reqwest::Client,
    /// Swapped whole on a successful fetch; a failed one keeps the previous keys.
    keys: RwLock<Arc<Vec<Key>>>,
    /// When a token with an unknown key last caused a fetch. Held across that fetch, so that
    /// tokens arriving meanwhile wait for its result instead of fetching again.
    last_on_demand: tokio::sync::Mutex<Option<Instant>>,
}

#[derive(Debug, Deserialize)]
struct Claims {
    sub: Option<String>,
    acr: Option<String>,
    exp: i64,
    iat: Option<i64>,
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
    /// The calling application, for the audit trail: `client_id`, else `azp`.
    pub client_id: Option<String>,
    /// The `client_id` claim alone: the only claim that can name a sender.
    client_id_claim: Option<String>,
    scopes: HashSet<String>,
    acr: Option<AssuranceLevel>,
}

/// SHA-256 (hex) of the raw token, for the audit trail.
pub fn token_sha256(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

impl Verifier {
    /// Reads a JWKS (`{"keys": [...]}`) or a PEM public key (RSA → RS256, P-256 → ES256).
    pub fn from_file(path: &Path, policy: Policy) -> anyhow::Result<Self> {
        let raw = read_key_file(path)?;
        let source = path.display().to_string();
        let keys = if looks_like_jwks(&raw) {
            keys_from_jwks(&raw, &source)?
        } else {
            vec![key_from_pem(&raw, &source)?]
        };
        Ok(Self {
            keys: KeySource::File(keys),
            policy,
        })
    }

    /// Keys from the identity provider's JWKS URL, none yet: call [`Self::refresh_keys`] at
    /// start-up and run [`Self::keep_keys_fresh`]. Until a fetch succeeds every token is a 401.
    pub fn from_url(url: String, policy: Policy) -> anyhow::Result<Self> {
        let client = reqwest::Client::builder()
            .timeout(FETCH_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| anyhow::anyhow!("Failed to build the JWKS client: {e}"))?;
        Ok(Self {
            keys: KeySource::Url(Arc::new(RemoteKeys {
                url,
                client,
                keys: RwLock::new(Arc::new(Vec::new())),
                last_on_demand: tokio::sync::Mutex::new(None),
            })),
            policy,
        })
    }

    /// Fetches the keys from the URL now (nothing to do for a file); on failure the keys held
    /// stay in use.
    pub async fn refresh_keys(&self) -> anyhow::Result<()> {
        match &self.keys {
            KeySource::File(_) => Ok(()),
            KeySource::Url(remote) => remote.fetch().await,
        }
    }

    /// For keys from a URL, a task that fetches them again every `every` (every
    /// [`REFRESH_ON_UNKNOWN_KEY_EVERY`] while the last fetch failed) until `shutdown`.
    pub fn keep_keys_fresh(
        &self,
        every: Duration,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> Option<impl std::future::Future<Output = ()> + Send + 'static> {
        let KeySource::Url(remote) = &self.keys else {
            return None;
        };
        let remote = remote.clone();
        Some(async move {
            tokio::pin!(shutdown);
            let mut wait = if remote.current().is_empty() {
                REFRESH_ON_UNKNOWN_KEY_EVERY.min(every)
            } else {
                every
            };
            loop {
                tokio::select! {
                    () = &mut shutdown => return,
                    () = tokio::time::sleep(wait) => {}
                }
                wait = match remote.fetch().await {
                    Ok(()) => every,
                    Err(e) => {
                        tracing::warn!(
                            error = format!("{e:#}"),
                            "the JWKS refresh failed; the keys held stay in use"
                        );
                        REFRESH_ON_UNKNOWN_KEY_EVERY.min(every)
                    }
                };
            }
        })
    }

    /// Before [`Self::verify`]: when the token's header names a key (by `kid` and algorithm)
    /// that the keys from the URL do not hold, fetches them again, unless a token did so less
    /// than [`REFRESH_ON_UNKNOWN_KEY_EVERY`] ago. Never fails: verification then decides.
    pub async fn refresh_for(&self, token: &str) {
        let KeySource::Url(remote) = &self.keys else {
            return;
        };
        let Ok(header) = jsonwebtoken::decode_header(token) else {
            return;
        };
        if remote.current().iter().any(|k| key_may_sign(k, &header)) {
            return;
        }
        let mut last = remote.last_on_demand.lock().await;
        // Another token may have fetched the key while this one waited for the lock.
        if remote.current().iter().any(|k| key_may_sign(k, &header)) {
            return;
        }
        if last.is_some_and(|at| at.elapsed() < REFRESH_ON_UNKNOWN_KEY_EVERY) {
            return;
        }
        *last = Some(Instant::now());
        if let Err(e) = remote.fetch().await {
            tracing::warn!(
                error = format!("{e:#}"),
                "the JWKS refresh for an unknown key failed"
            );
        }
    }

    /// Checks the token; any failure is a 401.
    pub fn verify(&self, token: &str) -> Result<Principal, ApiError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| ApiError::unauthorized())?;
        if !typ_allowed(header.typ.as_deref()) {
            return Err(ApiError::unauthorized());
        }
        let mut validation = Validation::new(header.alg);
        validation.set_issuer(&[&self.policy.issuer]);
        validation.set_audience(&[&self.policy.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        validation.validate_nbf = true;
        validation.leeway = 30;
        let keys = match &self.keys {
            KeySource::File(keys) => KeysHeld::File(keys),
            KeySource::Url(remote) => KeysHeld::Url(remote.current()),
        };
        for key in keys.iter().filter(|k| key_may_sign(k, &header)) {
            if let Ok(data) = jsonwebtoken::decode::<Claims>(token, &key.key, &validation) {
                return self.principal(data.claims);
            }
        }
        Err(ApiError::unauthorized())
    }

    /// The principal of claims whose signature holds, once their lifetime is checked.
    fn principal(&self, claims: Claims) -> Result<Principal, ApiError> {
        let max = i64::try_from(self.policy.max_lifetime.as_secs()).unwrap_or(i64::MAX);
        let lifetime_ok = claims
            .iat
            .is_some_and(|iat| claims.exp.saturating_sub(iat) <= max);
        if !lifetime_ok {
            return Err(ApiError::unauthorized());
        }
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
        Ok(Principal {
            subject: claims.sub,
            client_id: claims.client_id.clone().or(claims.azp),
            client_id_claim: claims.client_id,
            scopes,
            acr: claims.acr.as_deref().and_then(AssuranceLevel::parse),
        })
    }

    /// The citizen behind a token that carries `scope` at a sufficient assurance level.
    pub fn citizen(&self, principal: &Principal, scope: &str) -> Result<Ssin, ApiError> {
        if !principal.scopes.contains(scope) {
            return Err(ApiError::forbidden(format!(
                "the token lacks the scope {scope}"
            )));
        }
        if principal.acr.is_none_or(|acr| acr < self.policy.min_acr) {
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

    /// The sender behind a token: its `client_id` (never `azp`), when it has the sender scope
    /// and is not a citizen's (no national number as `sub`, no citizen scope).
    pub fn sender(&self, principal: &Principal) -> Result<String, ApiError> {
        self.client(principal, SCOPE_SENDER)
    }

    /// The application behind a token that carries `scope` and is not a citizen's (no
    /// national number as `sub`, no citizen scope): its `client_id`, never `azp`.
    pub fn client(&self, principal: &Principal, scope: &str) -> Result<String, ApiError> {
        if !principal.scopes.contains(scope) {
            return Err(ApiError::forbidden(format!(
                "the token lacks the scope {scope}"
            )));
        }
        let citizen_subject = principal
            .subject
            .as_deref()
            .is_some_and(|sub| Ssin::parse(sub).is_ok());
        let citizen_scope = CITIZEN_SCOPES.iter().any(|s| principal.scopes.contains(*s));
        if citizen_subject || citizen_scope {
            return Err(ApiError::forbidden(
                "a citizen's token cannot act for an application",
            ));
        }
        principal
            .client_id_claim
            .clone()
            .ok_or_else(|| ApiError::forbidden("the token names no client_id"))
    }
}

impl RemoteKeys {
    fn current(&self) -> Arc<Vec<Key>> {
        self.keys
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Fetches and parses the JWKS; replaces the keys only when it holds at least one usable.
    async fn fetch(&self) -> anyhow::Result<()> {
        let raw = self.download().await?;
        let keys = keys_from_jwks(&raw, &self.url)?;
        let count = keys.len();
        *self
            .keys
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(keys);
        tracing::info!(url = %self.url, keys = count, "JWKS fetched");
        Ok(())
    }

    async fn download(&self) -> anyhow::Result<Vec<u8>> {
        let failed = |e: reqwest::Error| anyhow::anyhow!("Failed to fetch {}: {e}", self.url);
        let mut response = self
            .client
            .get(&self.url)
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(failed)?;
        let mut raw = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(failed)? {
            raw.extend_from_slice(&chunk);
            anyhow::ensure!(
                raw.len() <= MAX_JWKS_BYTES,
                "{} answered more than {MAX_JWKS_BYTES} bytes",
                self.url
            );
        }
        Ok(raw)
    }
}

/// The keys a verification uses: borrowed from a file's, or a snapshot of the URL's.
enum KeysHeld<'a> {
    File(&'a [Key]),
    Url(Arc<Vec<Key>>),
}

impl KeysHeld<'_> {
    fn iter(&self) -> std::slice::Iter<'_, Key> {
        match self {
            KeysHeld::File(keys) => keys.iter(),
            KeysHeld::Url(keys) => keys.iter(),
        }
    }
}

/// A key may have signed a token when the algorithms agree and, if both name one, the kids.
fn key_may_sign(key: &Key, header: &jsonwebtoken::Header) -> bool {
    key.algorithm == header.alg
        && match (&header.kid, &key.kid) {
            (Some(wanted), Some(kid)) => wanted == kid,
            _ => true,
        }
}

/// A `typ` header, when present, must say the token is a JWT or an access token (RFC 9068):
/// `JWT` or `at+jwt`, in any case, with or without the `application/` prefix (RFC 7515 §4.1.9).
fn typ_allowed(typ: Option<&str>) -> bool {
    typ.is_none_or(|typ| {
        let typ = typ.to_ascii_lowercase();
        let typ = typ.strip_prefix("application/").unwrap_or(&typ);
        typ == "jwt" || typ == "at+jwt"
    })
}

fn read_key_file(path: &Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))
}

/// A JWKS is a JSON object; anything else is taken for a PEM file.
fn looks_like_jwks(raw: &[u8]) -> bool {
    raw.trim_ascii_start().starts_with(b"{")
}

/// Every RS256 or ES256 key of the set; keys of other types or curves are skipped, but a
/// supported key that cannot be built is an error, as is a set without any. `source` (a path
/// or URL) names where it came from in errors.
fn keys_from_jwks(raw: &[u8], source: &str) -> anyhow::Result<Vec<Key>> {
    let set: JwkSet =
        serde_json::from_slice(raw).map_err(|e| anyhow::anyhow!("{source} is not a JWKS: {e}"))?;
    let keys = set
        .keys
        .iter()
        .filter_map(key_from_jwk)
        .collect::<Result<Vec<_>, _>>()?;
    anyhow::ensure!(!keys.is_empty(), "{source} holds no RS256 or ES256 key");
    Ok(keys)
}

/// `None` for a key this service does not verify with: not RSA or P-256, or one its publisher
/// marked for something else — `use` other than `sig`, `key_ops` without `verify`, or an `alg`
/// other than the one its type implies (RFC 7517 §4.2–4.4): such a key must not verify tokens.
fn key_from_jwk(jwk: &Jwk) -> Option<jsonwebtoken::errors::Result<Key>> {
    let algorithm = jwk_algorithm(&jwk.algorithm)?;
    let common = &jwk.common;
    if common
        .public_key_use
        .as_ref()
        .is_some_and(|usage| *usage != PublicKeyUse::Signature)
    {
        return None;
    }
    if common
        .key_operations
        .as_ref()
        .is_some_and(|operations| !operations.contains(&KeyOperations::Verify))
    {
        return None;
    }
    if let Some(declared) = common.key_algorithm {
        let implied = match algorithm {
            Algorithm::RS256 => KeyAlgorithm::RS256,
            _ => KeyAlgorithm::ES256,
        };
        if declared != implied {
            return None;
        }
    }
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
fn key_from_pem(raw: &[u8], source: &str) -> anyhow::Result<Key> {
    let (key, algorithm) = DecodingKey::from_ec_pem(raw)
        .map(|key| (key, Algorithm::ES256))
        .or_else(|_| DecodingKey::from_rsa_pem(raw).map(|key| (key, Algorithm::RS256)))
        .map_err(|e| anyhow::anyhow!("{source} holds no RSA or P-256 public key: {e}"))?;
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
            "iss": "idp", "aud": "ebox", "iat": now, "exp": now + 60, "sub": sub,
            "scope": "ebox:messages", "acr": AssuranceLevel::HIGH,
        });
        jsonwebtoken::encode(&Header::new(algorithm), &claims, &key).expect("signed")
    }

    fn policy() -> Policy {
        Policy {
            issuer: "idp".into(),
            audience: "ebox".into(),
            min_acr: AssuranceLevel::Substantial,
            max_lifetime: Duration::from_secs(3600),
        }
    }

    fn verifier(public: &str) -> Verifier {
        Verifier::from_file(&fixture(public), policy()).expect("keys")
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
    fn a_jwk_its_publisher_marked_for_another_use_or_algorithm_verifies_nothing() {
        let set: serde_json::Value =
            serde_json::from_slice(&std::fs::read(fixture("jwks.json")).expect("fixture"))
                .expect("JSON");
        let es256 = set["keys"][0].clone();
        assert_eq!(es256["kid"], "test-es256");
        let with = |member: &str, value: serde_json::Value| {
            let mut key = es256.clone();
            key[member] = value;
            serde_json::to_vec(&serde_json::json!({"keys": [key]})).expect("JSON")
        };
        for (what, raw) in [
            ("use enc", with("use", "enc".into())),
            ("alg ES384", with("alg", "ES384".into())),
            ("alg RS256", with("alg", "RS256".into())),
            (
                "key_ops encrypt",
                with("key_ops", serde_json::json!(["encrypt"])),
            ),
        ] {
            assert!(
                keys_from_jwks(&raw, "jwks.json").is_err(),
                "a key with {what} was kept"
            );
        }
        for (what, raw) in [
            ("use sig", with("use", "sig".into())),
            (
                "key_ops verify",
                with("key_ops", serde_json::json!(["verify"])),
            ),
            ("alg ES256", with("alg", "ES256".into())),
        ] {
            assert_eq!(
                keys_from_jwks(&raw, "jwks.json").map(|k| k.len()).ok(),
                Some(1),
                "a key with {what} was dropped"
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
        let keys = keys_from_jwks(&raw, "jwks.json").expect("keys");
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
            let refused = Verifier::from_file(&path, policy())
                .err()
                .map(|e| e.to_string());
            assert!(
                refused.as_deref().is_some_and(|e| e.contains(reason)),
                "{name}: {refused:?}"
            );
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    fn signed(typ: Option<&str>, claims: serde_json::Value) -> String {
        let pem = std::fs::read(fixture("es256-private.pem")).expect("fixture");
        let key = EncodingKey::from_ec_pem(&pem).expect("a private key");
        let mut header = Header::new(Algorithm::ES256);
        header.typ = typ.map(str::to_owned);
        jsonwebtoken::encode(&header, &claims, &key).expect("signed")
    }

    fn claims(lifetime: Option<i64>, extra: serde_json::Value) -> serde_json::Value {
        let now = chrono::Utc::now().timestamp();
        let mut claims = serde_json::json!({"iss": "idp", "aud": "ebox", "exp": now + 60});
        if let Some(lifetime) = lifetime {
            claims["iat"] = (now + 60 - lifetime).into();
        }
        for (name, value) in extra.as_object().expect("an object") {
            claims[name] = value.clone();
        }
        claims
    }

    #[test]
    fn a_typ_header_is_accepted_only_for_a_jwt_or_an_access_token() {
        let es = verifier("es256-public.pem");
        let cases = [
            (None, true),
            (Some("JWT"), true),
            (Some("jwt"), true),
            (Some("at+jwt"), true),
            (Some("AT+JWT"), true),
            (Some("application/at+jwt"), true),
            (Some("foo"), false),
            (Some("JWS"), false),
            (Some("dpop+jwt"), false),
            (Some(""), false),
        ];
        for (typ, accepted) in cases {
            let token = signed(typ, claims(Some(60), serde_json::json!({})));
            assert_eq!(es.verify(&token).is_ok(), accepted, "{typ:?}");
        }
    }

    #[test]
    fn a_token_must_say_when_it_was_issued_and_live_no_longer_than_the_maximum() {
        let es = verifier("es256-public.pem");
        let cases = [
            (Some(60), true),
            (Some(3600), true),
            (Some(3601), false),
            (Some(86_400), false),
            (None, false),
        ];
        for (lifetime, accepted) in cases {
            let token = signed(None, claims(lifetime, serde_json::json!({})));
            assert_eq!(es.verify(&token).is_ok(), accepted, "{lifetime:?}");
        }
    }

    #[test]
    fn only_the_client_id_of_a_token_that_is_not_a_citizens_names_a_sender() {
        let es = verifier("es256-public.pem");
        let sender_of = |extra: serde_json::Value| {
            let token = signed(None, claims(Some(60), extra));
            es.verify(&token)
                .and_then(|p| es.sender(&p))
                .map_err(|e| e.status)
        };
        let forbidden = Err(axum::http::StatusCode::FORBIDDEN);
        let cases = [
            (
                "a sender's token",
                serde_json::json!({"client_id": "onem", "scope": "ebox:sender"}),
                Ok("onem".to_owned()),
            ),
            (
                "a sender's token whose sub is its client",
                serde_json::json!({"sub": "onem", "client_id": "onem", "scope": "ebox:sender"}),
                Ok("onem".to_owned()),
            ),
            (
                "a token naming its client by azp only",
                serde_json::json!({"azp": "onem", "scope": "ebox:sender"}),
                forbidden.clone(),
            ),
            (
                "a citizen's token with the sender scope",
                serde_json::json!({
                    "sub": "85073003328", "client_id": "onem", "azp": "onem",
                    "scope": "ebox:sender",
                }),
                forbidden.clone(),
            ),
            (
                "a token with a citizen's scope",
                serde_json::json!({"client_id": "onem", "scope": "ebox:sender ebox:messages"}),
                forbidden.clone(),
            ),
            (
                "a token with the citizen scopes as a list",
                serde_json::json!({"client_id": "onem", "scp": ["ebox:sender", "ebox:summary"]}),
                forbidden.clone(),
            ),
            (
                "a token without the sender scope",
                serde_json::json!({"client_id": "onem", "scope": "ebox:referencedata"}),
                forbidden,
            ),
        ];
        for (what, extra, expected) in cases {
            assert_eq!(sender_of(extra), expected, "{what}");
        }
    }
}
