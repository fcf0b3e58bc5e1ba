//! Development tokens: what the identity provider would issue, signed with a local private key.
//! Never a production path: the API only verifies, with the provider's public keys.

use anyhow::Context;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use std::path::PathBuf;

#[derive(Debug, Clone, clap::Args)]
pub struct TokenArgs {
    /// PEM private key (P-256 → ES256, RSA → RS256).
    #[arg(long)]
    pub key: PathBuf,
    #[arg(long, env = "EBOX_JWT_ISSUER")]
    pub issuer: String,
    #[arg(long, env = "EBOX_JWT_AUDIENCE")]
    pub audience: String,
    /// The citizen's national number (citizen tokens).
    #[arg(long)]
    pub sub: Option<String>,
    /// The sender id (sender tokens).
    #[arg(long)]
    pub client_id: Option<String>,
    #[arg(long, default_value = "ebox:summary ebox:messages ebox:referencedata")]
    pub scope: String,
    #[arg(long, default_value = "http://eidas.europa.eu/LoA/substantial")]
    pub acr: String,
    /// Lifetime in seconds.
    #[arg(long, default_value_t = 3600)]
    pub ttl: i64,
    /// Key id, when the API's key file is a JWKS naming its keys.
    #[arg(long)]
    pub kid: Option<String>,
}

/// Signs the claims the arguments describe.
pub fn mint(args: &TokenArgs) -> anyhow::Result<String> {
    let pem = std::fs::read(&args.key)
        .with_context(|| format!("Failed to read {}", args.key.display()))?;
    let (key, algorithm) = match EncodingKey::from_ec_pem(&pem) {
        Ok(key) => (key, Algorithm::ES256),
        Err(_) => (
            EncodingKey::from_rsa_pem(&pem)
                .context("the key is neither a P-256 nor an RSA private key")?,
            Algorithm::RS256,
        ),
    };
    let now = chrono::Utc::now().timestamp();
    let mut claims = serde_json::json!({
        "iss": args.issuer,
        "aud": args.audience,
        "iat": now,
        "nbf": now,
        "exp": now + args.ttl,
        "scope": args.scope,
        "acr": args.acr,
    });
    if let Some(sub) = &args.sub {
        claims["sub"] = sub.clone().into();
    }
    if let Some(client_id) = &args.client_id {
        claims["client_id"] = client_id.clone().into();
    }
    let mut header = Header::new(algorithm);
    header.kid = args.kid.clone();
    Ok(jsonwebtoken::encode(&header, &claims, &key)?)
}
