//! The trace export, for real: the `ebox` binary runs intake, consent-check and store as three
//! processes, as a deployment does, with `OTEL_EXPORTER_OTLP_ENDPOINT` pointing at a collector
//! this test runs (OTLP over HTTP, JSON); a sender publishes one message with a `traceparent`;
//! once the processes are stopped (SIGTERM, as Kubernetes does), the collector has the spans of
//! the three stages, in the sender's trace, each consumer span under the publish span of the
//! stage before. The batch is due only after ten minutes: what arrives was flushed at exit.
//!
//! Against the real RabbitMQ and PostgreSQL (`scripts/test.sh` starts them), with the same
//! knobs as the end-to-end tests (`EBOX_TEST_DATABASE_URL`, `EBOX_TEST_AMQP_HOST`,
//! `EBOX_TEST_RABBITMQ_API`); a vhost `ebox-test-*` and a database `ebox_test_*` of its own,
//! removed at the end.

use axum::body::Bytes;
use ebox::demo::{SAMPLE_SSIN, SenderClient, sample_v2};
use lapin::types::{AMQPValue, FieldTable};
use sqlx::{Connection, PgConnection};
use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const MESSAGE_TYPE: &str = "unemployment-certificate";
const PASSWORD: &str = "sender-password";
const WAIT: Duration = Duration::from_secs(30);
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const SENDERS_SPAN: &str = "00f067aa0ba902b7";

fn env_or(key: &str, default: &str) -> String {
    std::env::var(key).unwrap_or_else(|_| default.to_owned())
}

fn admin_database_url() -> String {
    env_or(
        "EBOX_TEST_DATABASE_URL",
        "postgres://postgres:postgres@127.0.0.1:5432/postgres",
    )
}

fn management_api() -> String {
    env_or(
        "EBOX_TEST_RABBITMQ_API",
        "http://guest:guest@127.0.0.1:15672/api",
    )
}

fn broker_host() -> String {
    env_or("EBOX_TEST_AMQP_HOST", "127.0.0.1:5672")
}

/// A vhost, a sender's broker user and a database of this test's, removed when it ends, and
/// the processes it started, stopped.
struct Sandbox {
    id: String,
    processes: Vec<Child>,
}

impl Sandbox {
    fn vhost(&self) -> String {
        format!("ebox-test-{}", self.id)
    }

    fn database(&self) -> String {
        format!("ebox_test_{}", self.id)
    }

    fn sender(&self) -> String {
        format!("otlp-{}", self.id)
    }

    fn database_url(&self) -> String {
        let admin = admin_database_url();
        let (base, _) = admin.rsplit_once('/').expect("a database URL has a path");
        format!("{base}/{}", self.database())
    }

    async fn create(id: String) -> Self {
        let sandbox = Self {
            id,
            processes: Vec::new(),
        };
        let mut admin = PgConnection::connect(&admin_database_url())
            .await
            .expect("connect to PostgreSQL as admin");
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "CREATE DATABASE {}",
            sandbox.database()
        )))
        .execute(&mut admin)
        .await
        .expect("create the test database");
        let (vhost, sender) = (sandbox.vhost(), sandbox.sender());
        let api = reqwest::Client::new();
        for (path, body) in [
            (format!("vhosts/{vhost}"), serde_json::json!({})),
            (
                format!("permissions/{vhost}/guest"),
                serde_json::json!({"configure": ".*", "write": ".*", "read": ".*"}),
            ),
            (
                format!("users/{sender}"),
                serde_json::json!({"password": PASSWORD, "tags": ""}),
            ),
            (
                format!("permissions/{vhost}/{sender}"),
                serde_json::json!({
                    "configure": "^$",
                    "write": "^ebox\\.publish$",
                    "read": format!("^ebox\\.status\\.{sender}$"),
                }),
            ),
        ] {
            let response = api
                .put(format!("{}/{path}", management_api()))
                .json(&body)
                .send()
                .await
                .expect("RabbitMQ management API reachable");
            assert!(response.status().is_success(), "PUT {path}");
        }
        sandbox
    }

    /// The settings every process of this test gets, and nothing from this process's
    /// environment.
    fn vars(&self) -> Vec<(String, String)> {
        [
            (
                "EBOX_AMQP_URL",
                format!("amqp://guest:guest@{}/{}", broker_host(), self.vhost()),
            ),
            ("EBOX_DATABASE_URL", self.database_url()),
            (
                "EBOX_SSIN_HASH_KEY",
                format!("otlp-test-key-{}-0123456789abcdef", self.id),
            ),
            (
                "EBOX_PROOF_SIGNING_KEY_FILE",
                concat!(
                    env!("CARGO_MANIFEST_DIR"),
                    "/../tests/fixtures/proof-ed25519.pem"
                )
                .to_owned(),
            ),
            ("EBOX_METRICS_ADDR", "127.0.0.1:0".to_owned()),
            ("EBOX_LOG", "warn".to_owned()),
            ("EBOX_LOG_FORMAT", "text".to_owned()),
        ]
        .into_iter()
        .map(|(key, value)| (key.to_owned(), value))
        .collect()
    }

    fn command(&self, args: &[&str], extra: &[(String, String)]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_ebox"));
        command
            .args(args)
            .env_clear()
            .envs(self.vars())
            .envs(extra.iter().cloned())
            .stdin(Stdio::null());
        command
    }

    /// Runs one `ebox` command to its end; it must succeed.
    fn run(&self, args: &[&str]) {
        let output = self
            .command(args, &[])
            .output()
            .expect("the ebox binary runs");
        assert!(
            output.status.success(),
            "ebox {args:?}: {}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }

    fn start(&mut self, args: &[&str], extra: &[(String, String)]) {
        let child = self
            .command(args, extra)
            .stdout(Stdio::null())
            .spawn()
            .expect("the ebox binary starts");
        self.processes.push(child);
    }

    /// Stops every process as Kubernetes does (SIGTERM) and waits for each to exit cleanly.
    async fn stop(&mut self) {
        for child in &self.processes {
            let sent = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status()
                .expect("kill runs");
            assert!(sent.success(), "SIGTERM to {}", child.id());
        }
        let deadline = tokio::time::Instant::now() + WAIT;
        for child in &mut self.processes {
            loop {
                if let Some(status) = child.try_wait().expect("the process can be waited for") {
                    assert!(status.success(), "a worker exited with {status}");
                    break;
                }
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "a worker did not stop"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        self.processes.clear();
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        for child in &mut self.processes {
            let _ = child.kill();
            let _ = child.wait();
        }
        let (vhost, sender, database) = (self.vhost(), self.sender(), self.database());
        let cleanup = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime");
            runtime.block_on(async move {
                let api = reqwest::Client::new();
                for path in [format!("vhosts/{vhost}"), format!("users/{sender}")] {
                    let _ = api
                        .delete(format!("{}/{path}", management_api()))
                        .send()
                        .await;
                }
                if let Ok(mut admin) = PgConnection::connect(&admin_database_url()).await {
                    let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                        "DROP DATABASE IF EXISTS {database} WITH (FORCE)"
                    )))
                    .execute(&mut admin)
                    .await;
                }
            });
        });
        let _ = cleanup.join();
    }
}

/// A local OTLP/HTTP collector: every JSON body posted to `/v1/traces`.
async fn collector() -> (String, Arc<Mutex<Vec<serde_json::Value>>>) {
    let received = Arc::new(Mutex::new(Vec::new()));
    let kept = received.clone();
    let app = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post(move |body: Bytes| {
            let kept = kept.clone();
            async move {
                let json = serde_json::from_slice(&body).expect("OTLP/JSON");
                kept.lock().expect("not poisoned").push(json);
                axum::Json(serde_json::json!({}))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a free port");
    let addr = listener.local_addr().expect("an address");
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}"), received)
}

/// One exported span.
#[derive(Debug, Clone)]
struct Exported {
    service: String,
    name: String,
    trace_id: String,
    span_id: String,
    parent_span_id: String,
    /// OTLP's `SpanKind`: 4 producer, 5 consumer.
    kind: i64,
}

const PRODUCER: i64 = 4;
const CONSUMER: i64 = 5;

fn exported(bodies: &[serde_json::Value]) -> Vec<Exported> {
    let text = |value: &serde_json::Value| value.as_str().unwrap_or_default().to_lowercase();
    let mut spans = Vec::new();
    for body in bodies {
        for resource in body["resourceSpans"].as_array().into_iter().flatten() {
            let service = resource["resource"]["attributes"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|attribute| attribute["key"] == "service.name")
                .map(|attribute| text(&attribute["value"]["stringValue"]))
                .unwrap_or_default();
            for scope in resource["scopeSpans"].as_array().into_iter().flatten() {
                for span in scope["spans"].as_array().into_iter().flatten() {
                    spans.push(Exported {
                        service: service.clone(),
                        name: span["name"].as_str().unwrap_or_default().to_owned(),
                        trace_id: text(&span["traceId"]),
                        span_id: text(&span["spanId"]),
                        parent_span_id: text(&span["parentSpanId"]),
                        kind: span["kind"].as_i64().unwrap_or_default(),
                    });
                }
            }
        }
    }
    spans
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_exports_one_trace_through_intake_consent_check_and_store_over_otlp() {
    let id = uuid::Uuid::new_v4().simple().to_string()[..12].to_owned();
    let mut sandbox = Sandbox::create(id).await;
    let (collector_url, received) = collector().await;
    let registry = std::env::temp_dir().join(format!("ebox-otlp-registry-{}.yaml", sandbox.id));
    std::fs::write(
        &registry,
        format!(
            r#"
senders:
  - id: {sender}
    organizationId: "0406798006"
    name: {{nl: RVA, fr: ONEM, de: LfA}}
    applications: [{{id: unemployment, name: {{nl: Werkloosheid, fr: Chômage}}}}]
    messageTypes: [{MESSAGE_TYPE}]
messageTypes:
  - id: {MESSAGE_TYPE}
    name: {{nl: Attest, fr: Attestation, de: Bescheinigung}}
    validityPeriod: {{validityPeriodNumber: 1, validityPeriodUnit: year}}
"#,
            sender = sandbox.sender()
        ),
    )
    .expect("write the registry file");
    sandbox.run(&["migrate"]);
    sandbox.run(&["registry", "load", registry.to_str().expect("a UTF-8 path")]);
    let _ = std::fs::remove_file(&registry);
    sandbox.run(&["consent", "grant", SAMPLE_SSIN]);

    let traces = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT".to_owned(), collector_url),
        (
            "OTEL_EXPORTER_OTLP_PROTOCOL".to_owned(),
            "http/json".to_owned(),
        ),
        // Not due while the test runs: what the collector gets was flushed at exit.
        ("OTEL_BSP_SCHEDULE_DELAY".to_owned(), "600000".to_owned()),
    ];
    for stage in ["intake", "consent-check", "store"] {
        sandbox.start(&["worker", stage], &traces);
    }

    let sender_url = format!(
        "amqp://{}:{PASSWORD}@{}/{}",
        sandbox.sender(),
        broker_host(),
        sandbox.vhost()
    );
    let mut sender = SenderClient::connect(&sender_url, &sandbox.sender())
        .await
        .expect("the sender connects");
    let mut headers = FieldTable::default();
    headers.insert(
        "traceparent".into(),
        AMQPValue::LongString(format!("00-{TRACE_ID}-{SENDERS_SPAN}-01").into()),
    );
    sender
        .publish(
            sender
                .properties("ref-otlp", intake::contract::TYPE_V2)
                .with_headers(headers),
            &serde_json::to_vec(&sample_v2(SAMPLE_SSIN, MESSAGE_TYPE)).expect("JSON"),
        )
        .await
        .expect("the broker takes the publication");
    loop {
        let status = sender.next_status(WAIT).await.expect("a status event");
        match status.status {
            domain::status::Status::Published => break,
            domain::status::Status::Accepted => continue,
            other => panic!("the message was not published: {other:?} {status:?}"),
        }
    }
    sender.close().await;
    assert!(
        received.lock().expect("not poisoned").is_empty(),
        "nothing is exported before the batch is due or the process ends"
    );

    sandbox.stop().await;

    let bodies = received.lock().expect("not poisoned").clone();
    let spans: Vec<Exported> = exported(&bodies)
        .into_iter()
        .filter(|span| span.trace_id == TRACE_ID)
        .collect();
    let find = |service: &str, name: &str| {
        spans
            .iter()
            .find(|span| span.service == service && span.name == name)
            .unwrap_or_else(|| panic!("no span {name:?} of {service} in the trace: {spans:#?}"))
            .clone()
    };
    let intake = find("ebox-intake", "process ebox.intake");
    let intake_publish = find("ebox-intake", "publish ebox.internal");
    let consent_check = find("ebox-consent-check", "process ebox.consent-check");
    let consent_check_publish = find("ebox-consent-check", "publish ebox.internal");
    let store = find("ebox-store", "process ebox.store");
    let _published = find("ebox-store", "publish ebox.status");
    let _new_document = find("ebox-store", "publish ebox.events");

    for consumer in [&intake, &consent_check, &store] {
        assert_eq!(consumer.kind, CONSUMER, "{consumer:?}");
    }
    for producer in [&intake_publish, &consent_check_publish] {
        assert_eq!(producer.kind, PRODUCER, "{producer:?}");
    }
    assert_eq!(
        intake.parent_span_id, SENDERS_SPAN,
        "under the sender's span"
    );
    assert_eq!(intake_publish.parent_span_id, intake.span_id);
    assert_eq!(consent_check.parent_span_id, intake_publish.span_id);
    assert_eq!(consent_check_publish.parent_span_id, consent_check.span_id);
    assert_eq!(store.parent_span_id, consent_check_publish.span_id);
    let services: HashMap<&str, usize> = spans.iter().fold(HashMap::new(), |mut count, span| {
        *count.entry(span.service.as_str()).or_default() += 1;
        count
    });
    assert_eq!(services.len(), 3, "{services:?}");
}
