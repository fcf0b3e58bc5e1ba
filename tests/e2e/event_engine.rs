//! The federation's event engine: every `newDocument` and `readDocument` is recorded in the
//! events outbox with its cause, pushed by the event relay to a local HTTP server standing in
//! for the event engine — once each and in order, across a period of 503s, a failure half-way and
//! the 409s that follow it, with a token renewed on the way — and served by the API's feed,
//! which pages without gaps while transactions commit out of order. A 400 parks the event, and
//! the later events of its message behind it, until an operator puts them back in line.
//!
//! Every event the tests receive, pushed or pulled, is validated against the citizen
//! variant's schema in `api/openapi.yaml`.

use crate::helpers::*;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use domain::events::{CitizenDocumentEvent, EventType, correlation_id};
use domain::ids::MessageId;
use domain::status::Status;
use ebox::demo::{SAMPLE_SSIN, SenderClient, sample_v2};
use ebox::token::{TokenArgs, mint};
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, OnceLock};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

const CLIENT_ID: &str = "ebox-provider-test";
const FEED_CLIENT: &str = "event-engine";
const EVENTS_PATH: &str = "/ebox/citizen/document/events";

// ---------------------------------------------------------------------------------------------
// The schema

/// The citizen variant's schemas, from the API's own description.
fn schemas() -> &'static Value {
    static SCHEMAS: OnceLock<Value> = OnceLock::new();
    SCHEMAS.get_or_init(|| {
        let spec: Value = serde_yaml_ng::from_str(api::OPENAPI).expect("api/openapi.yaml is YAML");
        json!({"components": {"schemas": spec["components"]["schemas"]}})
    })
}

fn assert_valid(schema: &str, instance: &Value) {
    let mut root = schemas().clone();
    root["$ref"] = json!(format!("#/components/schemas/{schema}"));
    let validator = jsonschema::draft7::options()
        .should_validate_formats(true)
        .build(&root)
        .expect("a schema");
    let errors: Vec<String> = validator
        .iter_errors(instance)
        .map(|e| format!("{e} at {}", e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "{schema} invalid: {errors:?}\n{instance:#}"
    );
}

#[test]
fn the_schema_refuses_an_event_in_the_enterprise_shape_or_with_a_recipient_object() {
    let event = json!({
        "eventType": "newDocument",
        "eventCorrelationId": Uuid::new_v4(),
        "ssin": SAMPLE_SSIN,
        "messageId": Uuid::new_v4(),
        "receiptDate": "2026-12-07T10:00:00.123456Z",
        "expirationDate": "2027-12-07T10:00:00Z",
        "registeredMail": false,
        "subject": {"nl": "Uw attest", "fr": "Votre attestation", "de": "Ihre Bescheinigung"},
    });
    assert_valid("EboxCitizenDocumentEvent", &event);
    let root = {
        let mut root = schemas().clone();
        root["$ref"] = json!("#/components/schemas/EboxCitizenDocumentEvent");
        root
    };
    let validator = jsonschema::draft7::options()
        .should_validate_formats(true)
        .build(&root)
        .expect("a schema");
    let mut enterprise = event.clone();
    let object = enterprise.as_object_mut().expect("an object");
    object.remove("ssin");
    object.insert("enterpriseId".into(), json!("0406798006"));
    let mut recipient = event.clone();
    recipient["recipient"] = json!({"eboxType": "citizen", "eboxIdValue": SAMPLE_SSIN});
    let mut short = event.clone();
    short["ssin"] = json!("8507300332");
    let mut late = event.clone();
    late["receiptDate"] = json!("yesterday");
    for (what, wrong) in [
        ("enterpriseId", enterprise),
        ("recipient", recipient),
        ("a 10-digit ssin", short),
        ("a date that is not one", late),
    ] {
        assert!(!validator.is_valid(&wrong), "{what} accepted");
    }
}

// ---------------------------------------------------------------------------------------------
// The event engine, played by a local HTTP server

/// What the event engine does with the next pushes, before it behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    /// 503, taking nothing.
    Unavailable,
    /// Takes the first event, then fails (500) — an engine that fell over half-way: the relay
    /// cannot know what arrived.
    FailHalfWay,
}

#[derive(Default)]
struct EngineState {
    script: VecDeque<Fault>,
    /// Events whose subject (nl) contains this are refused with a 400.
    refuse_subject: Option<String>,
    /// Every push: its body, the `clientId` parameter and the bearer token.
    pushes: Vec<(Vec<Value>, Option<String>, Option<String>)>,
    /// The status of each answer, in order.
    answers: Vec<u16>,
    /// The events taken, in the order they were first taken.
    stored: Vec<Value>,
    stored_ids: HashSet<String>,
    /// Events whose delivery the engine confirmed (2xx, or 409 to the event alone): the relay
    /// has no reason to push them again.
    confirmed: HashSet<String>,
    /// Events pushed again after they were confirmed: doubles.
    doubles: Vec<String>,
}

impl EngineState {
    /// The answer to a push of `events`, as the event API describes it: 201, 400 for an
    /// invalid event, 409 when it has one of them already (taking none of the batch).
    fn answer(&mut self, events: &[Value]) -> (StatusCode, Value) {
        let ids: Vec<String> = events.iter().map(correlation).collect();
        for id in &ids {
            if self.confirmed.contains(id) {
                self.doubles.push(id.clone());
            }
        }
        match self.script.pop_front() {
            Some(Fault::Unavailable) => {
                return (StatusCode::SERVICE_UNAVAILABLE, json!({"message": "down"}));
            }
            Some(Fault::FailHalfWay) => {
                self.take(&events[..1], false);
                return (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    json!({"message": "oops"}),
                );
            }
            None => {}
        }
        if let Some(refused) = &self.refuse_subject
            && let Some(bad) = events.iter().find(|e| {
                e["subject"]["nl"]
                    .as_str()
                    .is_some_and(|s| s.contains(refused.as_str()))
            })
        {
            let message = format!("invalid event for citizen {}", bad["ssin"]);
            return (StatusCode::BAD_REQUEST, json!({"message": message}));
        }
        if ids.iter().any(|id| self.stored_ids.contains(id)) {
            if let [id] = ids.as_slice() {
                self.confirmed.insert(id.clone());
            }
            return (
                StatusCode::CONFLICT,
                json!({"message": "idempotency violation"}),
            );
        }
        self.take(events, true);
        (StatusCode::CREATED, Value::Null)
    }

    fn take(&mut self, events: &[Value], confirmed: bool) {
        for event in events {
            let id = correlation(event);
            if self.stored_ids.insert(id.clone()) {
                self.stored.push(event.clone());
            }
            if confirmed {
                self.confirmed.insert(id);
            }
        }
    }
}

fn correlation(event: &Value) -> String {
    event["eventCorrelationId"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[derive(Clone)]
struct Engine {
    url: String,
    state: Arc<Mutex<EngineState>>,
}

impl Engine {
    async fn start(script: &[Fault]) -> Self {
        let state = Arc::new(Mutex::new(EngineState {
            script: script.iter().copied().collect(),
            ..EngineState::default()
        }));
        let router = axum::Router::new()
            .route(EVENTS_PATH, axum::routing::post(push))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a free port");
        let addr = listener.local_addr().expect("its address");
        tokio::spawn(async move { axum::serve(listener, router).await });
        Self {
            url: format!("http://{addr}{EVENTS_PATH}"),
            state,
        }
    }

    fn with<T>(&self, look: impl FnOnce(&mut EngineState) -> T) -> T {
        look(&mut self.state.lock().expect("the engine's state"))
    }

    fn stored_ids(&self) -> Vec<String> {
        self.with(|s| s.stored.iter().map(correlation).collect())
    }
}

async fn push(
    State(state): State<Arc<Mutex<EngineState>>>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> (StatusCode, axum::Json<Value>) {
    let events: Vec<Value> = serde_json::from_slice(&body).expect("a JSON array of events");
    let token = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_owned);
    let mut state = state.lock().expect("the engine's state");
    let (status, answer) = state.answer(&events);
    state.answers.push(status.as_u16());
    state
        .pushes
        .push((events, query.get("clientId").cloned(), token));
    (status, axum::Json(answer))
}

// ---------------------------------------------------------------------------------------------
// The relay, the token file, the feed

/// The bearer token the relay reads, in a file of the test's own.
struct TokenFile(std::path::PathBuf);

impl TokenFile {
    fn with(token: &str) -> Self {
        let path = std::env::temp_dir().join(format!("ebox-event-token-{}", Uuid::new_v4()));
        std::fs::write(&path, format!("{token}\n")).expect("write the token");
        Self(path)
    }

    fn renew(&self, token: &str) {
        std::fs::write(&self.0, format!("{token}\n")).expect("write the token");
    }

    fn path(&self) -> String {
        self.0.to_str().expect("a UTF-8 path").to_owned()
    }
}

impl Drop for TokenFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn relay_vars(engine: &Engine, token: &TokenFile) -> Vec<(String, String)> {
    vec![
        ("EBOX_EVENT_ENGINE_URL".to_owned(), engine.url.clone()),
        (
            "EBOX_EVENT_ENGINE_CLIENT_ID".to_owned(),
            CLIENT_ID.to_owned(),
        ),
        ("EBOX_EVENT_ENGINE_TOKEN_FILE".to_owned(), token.path()),
    ]
}

/// The event relay, run as `ebox worker event-relay` runs it, until dropped.
struct Relay {
    shutdown: CancellationToken,
    _tasks: JoinSet<()>,
}

impl Relay {
    async fn start(app: &TestApp) -> Self {
        let shutdown = CancellationToken::new();
        let mut tasks = JoinSet::new();
        let ready = ebox::workers::spawn_event_relay(
            &app.settings,
            &app.pool,
            &mut tasks,
            &app.liveness,
            &shutdown,
        )
        .expect("the relay starts")
        .expect("EBOX_EVENT_ENGINE_URL is set");
        tokio::time::timeout(WAIT, ready.wait_until_ready())
            .await
            .expect("the relay passes");
        Self {
            shutdown,
            _tasks: tasks,
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

fn token(args: TokenArgs) -> String {
    mint(&args).expect("a token")
}

fn token_args() -> TokenArgs {
    TokenArgs {
        key: fixture("es256-private.pem").into(),
        issuer: ISSUER.into(),
        audience: AUDIENCE.into(),
        sub: None,
        client_id: Some(FEED_CLIENT.into()),
        scope: "ebox:events".into(),
        acr: "http://eidas.europa.eu/LoA/substantial".into(),
        ttl: 600,
        kid: Some("test-es256".into()),
    }
}

fn feed_token() -> String {
    token(token_args())
}

fn citizen_token() -> String {
    token(TokenArgs {
        sub: Some(SAMPLE_SSIN.into()),
        client_id: Some("ebox-portal".into()),
        scope: "ebox:summary ebox:messages ebox:referencedata".into(),
        ..token_args()
    })
}

/// `GET` of the feed with `query`, as `token`'s client.
async fn get_feed(app: &TestApp, query: &str, token: Option<&str>) -> (StatusCode, Value) {
    let url = format!(
        "{}{EVENTS_PATH}?{query}",
        app.api.clone().expect("the API runs")
    );
    let mut request = reqwest::Client::new().get(url);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.expect("the API answers");
    let status = response.status();
    let body = response.bytes().await.expect("a body");
    (
        StatusCode::from_u16(status.as_u16()).expect("a status"),
        serde_json::from_slice(&body).unwrap_or(Value::Null),
    )
}

/// One page after `after`, checked: a valid page whose numbers follow `after` without a gap.
async fn page(app: &TestApp, after: i64, size: i64) -> (Vec<Value>, bool) {
    let (status, page) = get_feed(
        app,
        &format!("lastSequenceNbr={after}&pageSize={size}&clientId={FEED_CLIENT}"),
        Some(&feed_token()),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_valid("EboxCitizenDocumentEventPage", &page);
    let items = page["EboxCitizenDocumentEvents"]
        .as_array()
        .expect("the events")
        .clone();
    assert!(items.len() as i64 <= size);
    for (n, item) in items.iter().enumerate() {
        assert_eq!(
            item["eventSequenceNbr"].as_i64(),
            Some(after + 1 + n as i64),
            "a gap after {after}: {page}"
        );
    }
    let last = items
        .last()
        .map_or(after, |i| i["eventSequenceNbr"].as_i64().expect("a number"));
    assert_eq!(page["pageInfo"]["lastSequenceNbr"].as_i64(), Some(last));
    let has_next = page["pageInfo"]["hasNext"].as_bool().expect("hasNext");
    (items, has_next)
}

/// Every event of the feed, paging `size` at a time.
async fn whole_feed(app: &TestApp, size: i64) -> Vec<Value> {
    let mut all = Vec::new();
    loop {
        let (items, has_next) = page(app, all.len() as i64, size).await;
        all.extend(items);
        if !has_next {
            return all;
        }
    }
}

async fn deliver_one(sender: &mut SenderClient, reference: &str, subject: &str) -> Uuid {
    let mut body = sample_v2(SAMPLE_SSIN, MESSAGE_TYPE);
    body["subject"]["nl"] = subject.into();
    deliver(sender, reference, body).await
}

/// Opens the message's main content as its citizen, and waits until its sender hears `read`.
async fn read(app: &TestApp, sender: &mut SenderClient, message_id: Uuid) {
    let opened = open_main_content(app, message_id, &citizen_token()).await;
    assert_eq!(opened.status(), reqwest::StatusCode::OK);
    loop {
        let status = sender.next_status(WAIT).await.expect("a status");
        if status.status == Status::Read {
            assert_eq!(status.message_id.map(|m| m.as_uuid()), Some(message_id));
            return;
        }
    }
}

fn correlation_of(event_type: EventType, message_id: Uuid) -> String {
    correlation_id(event_type, MessageId::from_uuid(message_id)).to_string()
}

async fn outbox(app: &TestApp) -> records::events::Summary {
    ebox::events::status(&app.pool).await.expect("the summary")
}

// ---------------------------------------------------------------------------------------------
// Push

#[tokio::test]
async fn every_event_reaches_the_event_engine_once_and_in_order_across_an_outage_and_a_conflict() {
    let engine = Engine::start(&[Fault::Unavailable, Fault::Unavailable, Fault::FailHalfWay]).await;
    let token_file = TokenFile::with("first-token");
    // As production connects: a runtime role that owns nothing (the sequencer and the relay
    // need only the default privileges).
    let app = spawn_app_with(Options {
        vars: relay_vars(&engine, &token_file),
        runtime_role: true,
        ..Options::with_api()
    })
    .await;
    app.grant_consent(SAMPLE_SSIN).await;
    let mut sender = app.sender().await;
    let first = deliver_one(&mut sender, "ev-1", "Eerste").await;
    let second = deliver_one(&mut sender, "ev-2", "Tweede").await;
    read(&app, &mut sender, first).await;
    let third = deliver_one(&mut sender, "ev-3", "Derde").await;
    // The relay starts with four events waiting: its pushes are batches of them. Two meet an
    // outage, the third an event engine that falls over half-way, after taking the first
    // event; the fourth gets a 409 for that one, so the relay pushes them one by one.
    let _relay = Relay::start(&app).await;
    let expected = [
        correlation_of(EventType::NewDocument, first),
        correlation_of(EventType::NewDocument, second),
        correlation_of(EventType::ReadDocument, first),
        correlation_of(EventType::NewDocument, third),
    ];
    eventually("the event engine has the four events", || async {
        engine.stored_ids().len() == expected.len() && outbox(&app).await.delivered == 4
    })
    .await;
    assert_eq!(engine.stored_ids(), expected, "in the order they committed");

    // The token is renewed: the next push carries the new one, without a restart.
    token_file.renew("second-token");
    let fourth = deliver_one(&mut sender, "ev-4", "Vierde").await;
    eventually("the event engine has the fifth event", || async {
        engine.stored_ids().len() == 5 && outbox(&app).await.delivered == 5
    })
    .await;
    assert_eq!(
        engine.stored_ids()[4],
        correlation_of(EventType::NewDocument, fourth)
    );

    engine.with(|state| {
        assert_eq!(
            state.answers[..8],
            [503, 503, 500, 409, 409, 201, 201, 201],
            "an outage, a failure half-way, a conflict, then each event alone: {:?}",
            state.answers
        );
        let sizes: Vec<usize> = state
            .pushes
            .iter()
            .map(|(events, _, _)| events.len())
            .collect();
        assert_eq!(
            sizes[..8],
            [4, 4, 4, 4, 1, 1, 1, 1],
            "batches, then one by one"
        );
        assert!(
            state.doubles.is_empty(),
            "pushed again after a confirmation: {:?}",
            state.doubles
        );
        for (events, client_id, _) in &state.pushes {
            assert_eq!(client_id.as_deref(), Some(CLIENT_ID));
            for event in events {
                assert_valid("EboxCitizenDocumentEvent", event);
                assert_eq!(event["ssin"], SAMPLE_SSIN);
            }
        }
        let tokens: Vec<&str> = state
            .pushes
            .iter()
            .filter_map(|(_, _, token)| token.as_deref())
            .collect();
        assert_eq!(
            tokens.len(),
            state.pushes.len(),
            "every push carries a token"
        );
        assert_eq!(tokens.first(), Some(&"first-token"));
        assert_eq!(tokens.last(), Some(&"second-token"));
    });

    // The feed serves the same events, numbered 1..5 in the same order.
    let feed = whole_feed(&app, 2).await;
    let fed: Vec<String> = feed.iter().map(|i| correlation(&i["eventData"])).collect();
    assert_eq!(fed, engine.stored_ids());
    let pushed: Vec<Value> = engine.with(|s| s.stored.clone());
    for (item, pushed) in feed.iter().zip(&pushed) {
        assert_eq!(&item["eventData"], pushed, "the feed and the push agree");
        assert_eq!(item["eventProviderId"], "ebox-document-provider");
    }
    let read_event: CitizenDocumentEvent =
        serde_json::from_value(feed[2]["eventData"].clone()).expect("an event");
    assert_eq!(read_event.event_type, EventType::ReadDocument);
    assert_eq!(read_event.message_id.as_uuid(), first);
    let summary = outbox(&app).await;
    assert_eq!(
        (
            summary.last_sequence_nbr,
            summary.unnumbered,
            summary.undelivered,
            summary.parked
        ),
        (5, 0, 0, 0)
    );
}

#[tokio::test]
async fn a_refused_event_is_parked_with_the_later_events_of_its_message_until_it_is_retried() {
    let engine = Engine::start(&[]).await;
    engine.with(|s| s.refuse_subject = Some("REFUSE".into()));
    let token_file = TokenFile::with("a-token");
    let app = spawn_app_with(Options {
        vars: relay_vars(&engine, &token_file),
        ..Options::with_api()
    })
    .await;
    app.grant_consent(SAMPLE_SSIN).await;
    let mut sender = app.sender().await;
    // Recorded before the relay runs: its first push is one batch of the three.
    let refused = deliver_one(&mut sender, "park-1", "REFUSE this one").await;
    let fine = deliver_one(&mut sender, "park-2", "Fine").await;
    read(&app, &mut sender, refused).await;
    let relay = Relay::start(&app).await;

    eventually(
        "the refused events are parked and the other delivered",
        || async {
            let summary = outbox(&app).await;
            summary.parked == 2 && summary.delivered == 1
        },
    )
    .await;
    assert_eq!(
        engine.stored_ids(),
        [correlation_of(EventType::NewDocument, fine)]
    );
    let parked = ebox::events::parked(&app.pool, 10)
        .await
        .expect("the parked events");
    let listed: Vec<(i64, String, Uuid)> = parked
        .iter()
        .map(|p| (p.sequence_nbr, p.event_type.clone(), p.message_id))
        .collect();
    assert_eq!(
        listed,
        [
            (1, "newDocument".to_owned(), refused),
            (3, "readDocument".to_owned(), refused),
        ]
    );
    assert!(parked[0].reason.contains("400"), "{}", parked[0].reason);
    assert!(
        !parked[0].reason.contains(SAMPLE_SSIN),
        "the national number the event engine quoted is masked: {}",
        parked[0].reason
    );
    assert_eq!(
        parked[1].reason,
        "waits behind parked event 1 of the same message"
    );
    let metrics = runtime::metrics::METRICS.render();
    assert!(
        metrics.lines().any(
            |l| l.starts_with(r#"ebox_event_relay_events_total{result="parked"}"#)
                && !l.ends_with(" 0")
        ),
        "parked events are counted"
    );
    engine.with(|s| {
        let batch: Vec<String> = s.pushes[0].0.iter().map(correlation).collect();
        assert_eq!(batch.len(), 3, "one batch first: {batch:?}");
        assert_eq!(s.answers[0], 400);
        for (events, _, _) in &s.pushes {
            for event in events {
                assert_valid("EboxCitizenDocumentEvent", event);
            }
        }
    });

    // The cause is fixed; the operator puts them back in line: they go, in order.
    engine.with(|s| s.refuse_subject = None);
    assert_eq!(
        ebox::events::retry(&app.pool, None).await.expect("retried"),
        2
    );
    eventually("the parked events are delivered", || async {
        outbox(&app).await.delivered == 3
    })
    .await;
    assert_eq!(
        engine.stored_ids(),
        [
            correlation_of(EventType::NewDocument, fine),
            correlation_of(EventType::NewDocument, refused),
            correlation_of(EventType::ReadDocument, refused),
        ]
    );
    assert_eq!(outbox(&app).await.parked, 0);
    drop(relay);
}

// ---------------------------------------------------------------------------------------------
// Pull

/// A transaction that records an event, as store's and the API's do, and commits when told.
async fn record_in(
    app: &TestApp,
    template: &CitizenDocumentEvent,
) -> (sqlx::Transaction<'static, sqlx::Postgres>, String) {
    let mut event = template.clone();
    event.event_correlation_id = Uuid::new_v4();
    let mut tx = app.pool.begin().await.expect("a transaction");
    let recorded = records::events::record(
        &mut tx,
        &event,
        chrono::Utc::now(),
        "ebox-document-provider",
    )
    .await
    .expect("recorded");
    assert!(recorded);
    (tx, event.event_correlation_id.to_string())
}

#[tokio::test]
async fn the_feed_pages_without_gaps_while_transactions_commit_out_of_order() {
    let app = spawn_app_with(Options {
        runtime_role: true,
        ..Options::with_api()
    })
    .await;
    app.grant_consent(SAMPLE_SSIN).await;
    let mut sender = app.sender().await;
    let first = deliver_one(&mut sender, "feed-1", "Eerste").await;
    let second = deliver_one(&mut sender, "feed-2", "Tweede").await;

    // Only the event engine's client reads the feed.
    let citizen = citizen_token();
    let feed = feed_token();
    let query = "lastSequenceNbr=0&pageSize=10";
    let cases = [
        (query.to_owned(), None, StatusCode::UNAUTHORIZED),
        (
            query.to_owned(),
            Some(citizen.as_str()),
            StatusCode::FORBIDDEN,
        ),
        (
            format!("{query}&clientId=somebody-else"),
            Some(feed.as_str()),
            StatusCode::FORBIDDEN,
        ),
        (
            "pageSize=10".to_owned(),
            Some(feed.as_str()),
            StatusCode::BAD_REQUEST,
        ),
        (
            "lastSequenceNbr=0&pageSize=0".to_owned(),
            Some(feed.as_str()),
            StatusCode::BAD_REQUEST,
        ),
    ];
    for (query, token, expected) in &cases {
        let (status, body) = get_feed(&app, query, *token).await;
        assert_eq!(status, *expected, "{query}: {body}");
    }

    let (start, has_next) = page(&app, 0, 1).await;
    assert!(has_next, "one of two");
    let (rest, has_next) = page(&app, 1, 10).await;
    assert!(!has_next);
    let started: Vec<String> = start
        .iter()
        .chain(&rest)
        .map(|i| correlation(&i["eventData"]))
        .collect();
    assert_eq!(
        started,
        [
            correlation_of(EventType::NewDocument, first),
            correlation_of(EventType::NewDocument, second),
        ]
    );
    let template: CitizenDocumentEvent =
        serde_json::from_value(start[0]["eventData"].clone()).expect("an event");

    // A writes first and commits last; B writes second and commits first.
    let (a, a_id) = record_in(&app, &template).await;
    let (b, b_id) = record_in(&app, &template).await;
    b.commit().await.expect("B commits");
    let (items, has_next) = page(&app, 2, 10).await;
    assert_eq!(items.len(), 1, "A has not committed");
    assert!(!has_next);
    assert_eq!(correlation(&items[0]["eventData"]), b_id);
    a.commit().await.expect("A commits");
    let (items, _) = page(&app, 3, 10).await;
    assert_eq!(
        items.len(),
        1,
        "A is not skipped although it wrote before B"
    );
    assert_eq!(correlation(&items[0]["eventData"]), a_id);

    // Many writers committing in a scrambled order while a reader pages.
    const WRITERS: usize = 6;
    const EACH: usize = 6;
    let mut writers = JoinSet::new();
    for writer in 0..WRITERS {
        let pool = app.pool.clone();
        let template = template.clone();
        writers.spawn(async move {
            let mut ids = Vec::new();
            for n in 0..EACH {
                let mut event = template.clone();
                event.event_correlation_id = Uuid::new_v4();
                let mut tx = pool.begin().await.expect("a transaction");
                records::events::record(
                    &mut tx,
                    &event,
                    chrono::Utc::now(),
                    "ebox-document-provider",
                )
                .await
                .expect("recorded");
                let hold = ((writer * 7 + n * 13) % 40) as u64;
                tokio::time::sleep(std::time::Duration::from_millis(hold)).await;
                tx.commit().await.expect("commits");
                ids.push(event.event_correlation_id.to_string());
            }
            ids
        });
    }
    let mut seen: Vec<String> = Vec::new();
    let mut after = 4;
    let mut written: Vec<String> = Vec::new();
    let mut writing = true;
    let deadline = tokio::time::Instant::now() + WAIT;
    while writing || seen.len() < WRITERS * EACH {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the reader saw {} events",
            seen.len()
        );
        let (items, _) = page(&app, after, 3).await;
        after += items.len() as i64;
        seen.extend(items.iter().map(|i| correlation(&i["eventData"])));
        while let Some(done) = writers.try_join_next() {
            written.extend(done.expect("a writer"));
        }
        writing = !writers.is_empty();
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    assert_eq!(seen.len(), WRITERS * EACH, "each event once");
    let seen_set: HashSet<&String> = seen.iter().collect();
    let written_set: HashSet<&String> = written.iter().collect();
    assert_eq!(seen_set, written_set, "every committed event, none twice");
    assert_eq!(after, 4 + (WRITERS * EACH) as i64);
    let summary = outbox(&app).await;
    assert_eq!(summary.last_sequence_nbr, after);
    assert_eq!(summary.unnumbered, 0);
}
