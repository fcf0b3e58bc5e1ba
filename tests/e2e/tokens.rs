//! Citizen and sender tokens against the running API, the identity provider's keys served by a
//! JWKS endpoint of the test's own (`EBOX_JWT_JWKS_URL`): rotation without a restart, and the
//! checks every token passes besides its signature (`typ`, lifetime, who may act for a sender).

use crate::helpers::{AUDIENCE, ISSUER, Options, TestApp, fixture, spawn_app_with};
use axum::http::StatusCode;
use ebox::token::{TokenArgs, mint};
use futures_util::future::join_all;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

const SSIN: &str = "85073003328";

/// The public half of `stranger-es256-private.pem`: the key the identity provider rotates to.
fn rotated_key() -> Value {
    json!({
        "kty": "EC", "crv": "P-256", "kid": "rotated-es256", "use": "sig", "alg": "ES256",
        "x": "iFAKv9vMDMPbeYulWppTh9aWtO-SWoABaceMNh92b7o",
        "y": "06z7F6kefAQqoxJpvhYjTmGmrMSNc-ZM1S1lPI5gJXo",
    })
}

/// A stand-in for the identity provider's JWKS endpoint: serves whatever set it holds, and
/// counts how often it was asked.
#[derive(Clone)]
struct JwksServer {
    url: String,
    keys: Arc<Mutex<Value>>,
    fetches: Arc<AtomicUsize>,
}

impl JwksServer {
    async fn start(keys: Value) -> Self {
        let keys = Arc::new(Mutex::new(keys));
        let fetches = Arc::new(AtomicUsize::new(0));
        let served = (keys.clone(), fetches.clone());
        let router = axum::Router::new().route(
            "/jwks",
            axum::routing::get(move || {
                let (keys, fetches) = served.clone();
                async move {
                    fetches.fetch_add(1, Ordering::SeqCst);
                    axum::Json(keys.lock().expect("the key set").clone())
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("the JWKS server listens");
        let url = format!("http://{}/jwks", listener.local_addr().expect("an address"));
        tokio::spawn(async move { axum::serve(listener, router).await });
        Self { url, keys, fetches }
    }

    fn serve(&self, keys: Value) {
        *self.keys.lock().expect("the key set") = keys;
    }

    fn fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }
}

/// The API, its keys from `jwks` only (the key file the helper sets is unset again).
async fn app_with_keys_from(jwks: &JwksServer, extra: &[(&str, &str)]) -> TestApp {
    let mut vars = vec![
        ("EBOX_JWT_KEYS_FILE".to_owned(), String::new()),
        ("EBOX_JWT_JWKS_URL".to_owned(), jwks.url.clone()),
    ];
    vars.extend(
        extra
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
    );
    spawn_app_with(Options {
        vars,
        ..Options::with_api()
    })
    .await
}

fn fixture_jwks() -> Value {
    serde_json::from_str(&std::fs::read_to_string(fixture("jwks.json")).expect("fixture"))
        .expect("JSON")
}

fn citizen(key: &str, kid: &str) -> TokenArgs {
    TokenArgs {
        key: fixture(key).into(),
        issuer: ISSUER.into(),
        audience: AUDIENCE.into(),
        sub: Some(SSIN.into()),
        client_id: Some("ebox-portal".into()),
        scope: "ebox:summary ebox:messages".into(),
        acr: "http://eidas.europa.eu/LoA/substantial".into(),
        ttl: 600,
        kid: Some(kid.into()),
    }
}

/// A token signed with the fixture's ES256 key, with the header's `typ` and claims given.
fn signed(typ: Option<&str>, claims: Value) -> String {
    let pem = std::fs::read(fixture("es256-private.pem")).expect("fixture");
    let key = EncodingKey::from_ec_pem(&pem).expect("a private key");
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some("test-es256".into());
    header.typ = typ.map(str::to_owned);
    jsonwebtoken::encode(&header, &claims, &key).expect("signed")
}

fn citizen_claims() -> Value {
    let now = chrono::Utc::now().timestamp();
    json!({
        "iss": ISSUER, "aud": AUDIENCE, "iat": now, "nbf": now, "exp": now + 600,
        "sub": SSIN, "scope": "ebox:summary ebox:messages",
        "acr": "http://eidas.europa.eu/LoA/substantial",
    })
}

async fn summary_status(app: &TestApp, token: &str) -> StatusCode {
    reqwest::Client::new()
        .get(format!(
            "{}/ebox",
            app.api.as_deref().expect("the API runs")
        ))
        .bearer_auth(token)
        .send()
        .await
        .expect("the API answers")
        .status()
}

#[tokio::test]
async fn a_token_signed_with_a_key_the_jwks_url_serves_is_accepted() {
    let jwks = JwksServer::start(fixture_jwks()).await;
    let app = app_with_keys_from(&jwks, &[]).await;
    for (key, kid) in [
        ("es256-private.pem", "test-es256"),
        ("rs256-private.pem", "test-rs256"),
    ] {
        let token = mint(&citizen(key, kid)).expect("token");
        assert_eq!(summary_status(&app, &token).await, StatusCode::OK, "{kid}");
    }
    let forged = mint(&citizen("stranger-es256-private.pem", "test-es256")).expect("token");
    assert_eq!(
        summary_status(&app, &forged).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(jwks.fetches(), 1, "fetched once, at start-up");
}

#[tokio::test]
async fn a_rotated_key_is_fetched_once_on_its_first_token_without_a_restart() {
    let jwks = JwksServer::start(fixture_jwks()).await;
    let app = app_with_keys_from(&jwks, &[]).await;
    let rotated = mint(&citizen("stranger-es256-private.pem", "rotated-es256")).expect("token");
    assert_eq!(jwks.fetches(), 1, "fetched at start-up");
    jwks.serve(json!({"keys": [rotated_key()]}));
    let statuses = join_all((0..5).map(|_| summary_status(&app, &rotated))).await;
    assert_eq!(statuses, [StatusCode::OK; 5], "accepted without a restart");
    assert_eq!(
        jwks.fetches(),
        2,
        "one fetch for several tokens naming the new key"
    );
    for bogus in ["made-up-1", "made-up-2", "made-up-3"] {
        let token = mint(&citizen("stranger-es256-private.pem", bogus)).expect("token");
        assert_eq!(summary_status(&app, &token).await, StatusCode::UNAUTHORIZED);
    }
    assert_eq!(
        jwks.fetches(),
        2,
        "made-up kids do not reach the identity provider again within 30 s"
    );
    let retired = mint(&citizen("es256-private.pem", "test-es256")).expect("token");
    assert_eq!(
        summary_status(&app, &retired).await,
        StatusCode::UNAUTHORIZED,
        "a key no longer served is no longer trusted"
    );
}

#[tokio::test]
async fn a_token_whose_typ_is_not_a_jwt_is_refused() {
    let jwks = JwksServer::start(fixture_jwks()).await;
    let app = app_with_keys_from(&jwks, &[]).await;
    for (typ, expected) in [
        (None, StatusCode::OK),
        (Some("JWT"), StatusCode::OK),
        (Some("at+JWT"), StatusCode::OK),
        (Some("foo"), StatusCode::UNAUTHORIZED),
    ] {
        let token = signed(typ, citizen_claims());
        assert_eq!(summary_status(&app, &token).await, expected, "{typ:?}");
    }
}

#[tokio::test]
async fn a_token_living_longer_than_the_maximum_or_without_iat_is_refused() {
    let jwks = JwksServer::start(fixture_jwks()).await;
    let app = app_with_keys_from(&jwks, &[("EBOX_JWT_MAX_LIFETIME_SECONDS", "900")]).await;
    for (ttl, expected) in [
        (900, StatusCode::OK),
        (901, StatusCode::UNAUTHORIZED),
        (86_400, StatusCode::UNAUTHORIZED),
    ] {
        let token = mint(&TokenArgs {
            ttl,
            ..citizen("es256-private.pem", "test-es256")
        })
        .expect("token");
        assert_eq!(summary_status(&app, &token).await, expected, "ttl {ttl}");
    }
    let mut claims = citizen_claims();
    claims.as_object_mut().expect("an object").remove("iat");
    assert_eq!(
        summary_status(&app, &signed(None, claims)).await,
        StatusCode::UNAUTHORIZED,
        "without iat"
    );
}

#[tokio::test]
async fn a_citizens_token_never_acts_for_a_sender() {
    let jwks = JwksServer::start(fixture_jwks()).await;
    let app = app_with_keys_from(&jwks, &[]).await;
    let search = |token: String| {
        reqwest::Client::new()
            .post(format!(
                "{}/searchMessageStatus",
                app.api.as_deref().expect("the API runs")
            ))
            .bearer_auth(token)
            .json(&json!([]))
            .send()
    };
    let now = chrono::Utc::now().timestamp();
    let sender = |extra: Value| {
        let mut claims = json!({
            "iss": ISSUER, "aud": AUDIENCE, "iat": now, "exp": now + 600,
            "acr": "http://eidas.europa.eu/LoA/substantial",
        });
        for (name, value) in extra.as_object().expect("an object") {
            claims[name] = value.clone();
        }
        signed(Some("at+jwt"), claims)
    };
    let cases = [
        (
            "the sender's own token",
            json!({"client_id": app.sender_id, "scope": "ebox:sender"}),
            StatusCode::CREATED,
        ),
        (
            "a citizen's token naming the sender as client_id and azp",
            json!({
                "sub": SSIN, "client_id": app.sender_id, "azp": app.sender_id,
                "scope": "ebox:sender",
            }),
            StatusCode::FORBIDDEN,
        ),
        (
            "a token with a citizen's scopes besides the sender's",
            json!({
                "client_id": app.sender_id,
                "scope": "ebox:sender ebox:summary ebox:messages",
            }),
            StatusCode::FORBIDDEN,
        ),
        (
            "a token naming the sender by azp only",
            json!({"azp": app.sender_id, "scope": "ebox:sender"}),
            StatusCode::FORBIDDEN,
        ),
    ];
    for (what, extra, expected) in cases {
        let response = search(sender(extra)).await.expect("the API answers");
        assert_eq!(response.status(), expected, "{what}");
    }
}
