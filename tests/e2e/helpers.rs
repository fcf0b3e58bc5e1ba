//! `spawn_app()`: a fresh database, a fresh vhost with a registered sender, and the workers
//! running in-process against them.

use crate::conformance::front::{self, Violations};
use domain::citizen::SsinHasher;
use domain::registry::RegistryFile;
use domain::status::StatusEvent;
use ebox::demo::SenderClient;
use ebox::smtp_sink::Mail;
use ebox::workers::{self, Worker};
use futures_util::StreamExt;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicGetOptions};
use lapin::types::FieldTable;
use runtime::config::Settings;
use runtime::liveness::Liveness;
use sqlx::{Connection, PgConnection, PgPool};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

pub const MESSAGE_TYPE: &str = "unemployment-certificate";
pub const OTHER_MESSAGE_TYPE: &str = "pension-statement";
pub const ORGANIZATION: &str = "0406798006";
pub const WAIT: Duration = Duration::from_secs(20);
pub const PORTAL: &str = "https://portal.ebox.test/";
pub const ISSUER: &str = "https://idp.ebox.test";
pub const AUDIENCE: &str = "ebox-document-provider";

/// A file of `tests/fixtures/`.
pub fn fixture(name: &str) -> String {
    format!("{}/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))
}
const PASSWORD: &str = "sender-password";

fn env_or(key: &str, default: &str) -> String {
    std::env::var(key).unwrap_or_else(|_| default.to_owned())
}

fn admin_database_url() -> String {
    env_or(
        "EBOX_TEST_DATABASE_URL",
        "postgres://postgres:postgres@127.0.0.1:5432/postgres",
    )
}

/// `url` with `user` (and no password) instead of its credentials.
fn url_with_user(url: &str, user: &str) -> String {
    let (scheme, rest) = url.split_once("://").expect("a URL has a scheme");
    let host_and_path = rest.rsplit_once('@').map_or(rest, |(_, after)| after);
    format!("{scheme}://{user}@{host_and_path}")
}

fn broker_host() -> String {
    env_or("EBOX_TEST_AMQP_HOST", "127.0.0.1:5672")
}

fn management_api() -> String {
    env_or(
        "EBOX_TEST_RABBITMQ_API",
        "http://guest:guest@127.0.0.1:15672/api",
    )
}

pub struct TestApp {
    pub id: String,
    pub vhost: String,
    pub pool: PgPool,
    pub settings: Settings,
    pub sender_id: String,
    /// What the notify worker sent through the test's own SMTP server.
    pub mails: mpsc::UnboundedReceiver<Mail>,
    pub hasher: SsinHasher,
    /// The API's root URL, when it runs: a front that checks every answer against
    /// `api/openapi.yaml` ([`crate::conformance`]).
    pub api: Option<String>,
    /// The answers of the API that did not conform: the test fails with them when it ends.
    violations: Violations,
    /// Broker users created for this test, removed with it.
    users: std::sync::Mutex<Vec<String>>,
    /// The PostgreSQL login role of [`Options::runtime_role`], dropped with the test.
    runtime_role: Option<String>,
    /// The heartbeats of the workers' loops (what `/livez` reads).
    pub liveness: Liveness,
    shutdown: CancellationToken,
    tasks: JoinSet<()>,
}

pub struct Options {
    pub max_message_bytes: usize,
    pub workers: Vec<Worker>,
    /// Extra registry YAML (e.g. `partners:`), appended to the test registry.
    pub registry_extra: String,
    /// Extra `EBOX_*` variables (e.g. partner secrets).
    pub vars: Vec<(String, String)>,
    /// Also serve the citizen API.
    pub api: bool,
    /// Connect the workers, the API and [`TestApp::pool`] as a login role of the test's own
    /// (`ebox_rt_<id>`, owning nothing), as production does; the migrations run as the admin,
    /// who owns the tables. Otherwise everything connects as the admin (development).
    pub runtime_role: bool,
    /// Connect each worker and the API as a broker user of its own (`ebox-<component>-<id>`)
    /// with only the rights `queues::permissions` gives it, as production does. Otherwise
    /// everything connects as the broker's administrator (development).
    pub broker_users: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            max_message_bytes: 16 * 1024 * 1024,
            workers: vec![Worker::Intake],
            registry_extra: String::new(),
            vars: Vec::new(),
            api: false,
            runtime_role: false,
            broker_users: false,
        }
    }
}

impl Options {
    /// The whole pipeline.
    pub fn pipeline() -> Self {
        Self {
            workers: Worker::ALL.to_vec(),
            ..Self::default()
        }
    }

    /// The whole pipeline and the citizen API.
    pub fn with_api() -> Self {
        Self {
            api: true,
            ..Self::pipeline()
        }
    }
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(Options::default()).await
}

pub async fn spawn_app_with(options: Options) -> TestApp {
    if let Ok(filter) = std::env::var("EBOX_TEST_LOG") {
        runtime::telemetry::init(&filter, runtime::config::LogFormat::Text);
    }
    let id = Uuid::new_v4().simple().to_string()[..12].to_owned();
    let vhost = format!("ebox-test-{id}");
    let database = format!("ebox_test_{id}");

    let mut admin = PgConnection::connect(&admin_database_url())
        .await
        .expect("connect to PostgreSQL as admin");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {database}")))
        .execute(&mut admin)
        .await
        .expect("create the test database");
    let owner_url = admin_database_url()
        .rsplit_once('/')
        .map(|(base, _)| format!("{base}/{database}"))
        .expect("a database URL has a path");
    let runtime_role = options.runtime_role.then(|| format!("ebox_rt_{id}"));
    let database_url = match &runtime_role {
        Some(role) => {
            // Roles belong to the whole cluster: this one is dropped with the test, and
            // `scripts/test.sh` sweeps leftovers. The test cluster trusts 127.0.0.1.
            sqlx::query(sqlx::AssertSqlSafe(format!("CREATE ROLE {role} LOGIN")))
                .execute(&mut admin)
                .await
                .expect("create the test's runtime role");
            url_with_user(&owner_url, role)
        }
        None => owner_url.clone(),
    };

    let api = reqwest::Client::new();
    let put = |path: String, body: serde_json::Value| {
        let request = api.put(format!("{}/{path}", management_api())).json(&body);
        async move {
            let response = request
                .send()
                .await
                .expect("RabbitMQ management API reachable");
            assert!(
                response.status().is_success(),
                "PUT {path}: {}",
                response.status()
            );
        }
    };
    put(format!("vhosts/{vhost}"), serde_json::json!({})).await;
    put(
        format!("permissions/{vhost}/guest"),
        serde_json::json!({"configure": ".*", "write": ".*", "read": ".*"}),
    )
    .await;
    // Dead-lettering, the delivery limit and the bounds, as every deployment sets them.
    set_policies(&vhost, &queues::policies::policies()).await;

    let sender_id = format!("onem-{id}");
    create_sender_user(&vhost, &sender_id).await;

    let (smtp, mails) = ebox::smtp_sink::start("127.0.0.1:0")
        .await
        .expect("SMTP sink listens");
    let mut vars = vec![
        ("EBOX_SMTP_URL".to_owned(), format!("smtp://{smtp}")),
        ("EBOX_PORTAL_URL".to_owned(), PORTAL.to_owned()),
        ("EBOX_API_ADDR".to_owned(), "127.0.0.1:0".to_owned()),
        ("EBOX_JWT_KEYS_FILE".to_owned(), fixture("jwks.json")),
        (
            "EBOX_PROOF_SIGNING_KEY_FILE".to_owned(),
            fixture("proof-ed25519.pem"),
        ),
        ("EBOX_JWT_ISSUER".to_owned(), ISSUER.to_owned()),
        ("EBOX_JWT_AUDIENCE".to_owned(), AUDIENCE.to_owned()),
        (
            "EBOX_AMQP_URL".to_owned(),
            format!("amqp://guest:guest@{}/{vhost}", broker_host()),
        ),
        ("EBOX_DATABASE_URL".to_owned(), database_url),
        (
            "EBOX_SSIN_HASH_KEY".to_owned(),
            format!("test-key-{id}-0123456789abcdef0123"),
        ),
        (
            "EBOX_MAX_MESSAGE_BYTES".to_owned(),
            options.max_message_bytes.to_string(),
        ),
        ("EBOX_PREFETCH".to_owned(), "16".to_owned()),
        ("EBOX_BATCH_SIZE".to_owned(), "8".to_owned()),
    ];
    if runtime_role.is_some() {
        vars.push(("EBOX_MIGRATION_DATABASE_URL".to_owned(), owner_url));
    }
    vars.extend(options.vars);
    let settings = Settings::from_vars(vars).expect("valid test settings");
    runtime::db::migrate_as_owner(&settings)
        .await
        .expect("migrate the test database");
    let pool = runtime::db::connect(&settings)
        .await
        .expect("connect to the test database");
    let yaml = format!("{}{}", registry_yaml(&sender_id), options.registry_extra);
    let registry = RegistryFile::parse(&yaml).expect("valid test registry");
    ebox::admin::apply_registry(&pool, &settings.amqp_url, &registry)
        .await
        .expect("apply the test registry");

    let mut users = vec![sender_id.clone()];
    let as_component = |component: &str| {
        let mut settings = settings.clone();
        if options.broker_users {
            let user = component_user(&id, component);
            settings.amqp_url = format!("amqp://{user}:{PASSWORD}@{}/{vhost}", broker_host());
        }
        settings
    };
    if options.broker_users {
        for component in queues::permissions::BROKER_USERS {
            let user = component_user(&id, component.component);
            create_user(&vhost, &user, &component.write(), &component.read()).await;
            set_tags(&user, component.tags).await;
            users.push(user);
        }
    }
    let shutdown = CancellationToken::new();
    let liveness = Liveness::new(settings.stall_after);
    let mut tasks = JoinSet::new();
    let mut readiness = Vec::new();
    for worker in &options.workers {
        let settings = as_component(worker.component());
        let (mut spawned, ready) =
            workers::spawn(&settings, &pool, &[*worker], &liveness, &shutdown)
                .expect("workers start");
        readiness.extend(ready);
        tasks.spawn(async move { while spawned.join_next().await.is_some() {} });
    }
    let violations = Violations::default();
    let api = if options.api {
        let addr = workers::start_api(&as_component("api"), &pool, &mut tasks, &shutdown)
            .await
            .expect("the API starts");
        Some(front::start(addr, &settings.api_base_path, violations.clone()).await)
    } else {
        None
    };
    for ready in &readiness {
        tokio::time::timeout(WAIT, ready.wait_until_ready())
            .await
            .expect("the workers start consuming");
    }
    let hasher = settings.ssin_hasher();
    TestApp {
        id,
        vhost,
        pool,
        settings,
        sender_id,
        mails,
        hasher,
        api,
        violations,
        users: std::sync::Mutex::new(users),
        runtime_role,
        liveness,
        shutdown,
        tasks,
    }
}

/// Sets `policies` on `vhost` through the management API (`PUT /api/policies/{vhost}/{name}`),
/// as the broker's administrator: the same table `ebox broker policies` prints.
pub async fn set_policies(vhost: &str, policies: &[queues::policies::Policy]) {
    let api = reqwest::Client::new();
    for policy in policies {
        let path = format!("policies/{vhost}/{}", policy.name);
        let response = api
            .put(format!("{}/{path}", management_api()))
            .json(&policy.management_body())
            .send()
            .await
            .expect("RabbitMQ management API reachable");
        assert!(
            response.status().is_success(),
            "PUT {path}: {}",
            response.status()
        );
    }
}

/// What the management API says of queue `queue` of `vhost` (`GET /api/queues/{vhost}/{name}`:
/// `messages`, `policy`, `effective_policy_definition`, `arguments`…).
pub async fn queue_info(vhost: &str, queue: &str) -> serde_json::Value {
    reqwest::Client::new()
        .get(format!("{}/queues/{vhost}/{queue}", management_api()))
        .send()
        .await
        .expect("RabbitMQ management API reachable")
        .json()
        .await
        .expect("a queue as JSON")
}

/// A broker user that may only publish to `ebox.publish` and read its own status queue: the
/// permissions the README tells operators to give a sender.
pub async fn create_sender_user(vhost: &str, user: &str) {
    let read = format!("^ebox\\.status\\.{user}$");
    create_user(vhost, user, "^ebox\\.publish$", &read).await;
}

/// The management API as `user` (with the tests' password).
pub fn management_api_for(user: &str) -> String {
    let mut url = reqwest::Url::parse(&management_api()).expect("a management API URL");
    url.set_username(user).expect("a user");
    url.set_password(Some(PASSWORD)).expect("a password");
    url.as_str().trim_end_matches('/').to_owned()
}

/// The broker user of `component` in the test `id`.
pub fn component_user(id: &str, component: &str) -> String {
    format!("ebox-{component}-{id}")
}

async fn set_tags(user: &str, tags: &str) {
    let response = reqwest::Client::new()
        .put(format!("{}/users/{user}", management_api()))
        .json(&serde_json::json!({"password": PASSWORD, "tags": tags}))
        .send()
        .await
        .expect("RabbitMQ management API reachable");
    assert!(response.status().is_success(), "tags of {user}");
}

/// A broker user that may write to the exchanges matching `write` and read the queues
/// matching `read`, and configure nothing.
pub async fn create_user(vhost: &str, user: &str, write: &str, read: &str) {
    let api = reqwest::Client::new();
    for (path, body) in [
        (
            format!("users/{user}"),
            serde_json::json!({"password": PASSWORD, "tags": ""}),
        ),
        (
            format!("permissions/{vhost}/{user}"),
            serde_json::json!({"configure": "^$", "write": write, "read": read}),
        ),
    ] {
        let response = api
            .put(format!("{}/{path}", management_api()))
            .json(&body)
            .send()
            .await
            .expect("RabbitMQ management API reachable");
        assert!(
            response.status().is_success(),
            "PUT {path}: {}",
            response.status()
        );
    }
}

pub fn registry_yaml(sender_id: &str) -> String {
    format!(
        r#"
senders:
  - id: {sender_id}
    organizationId: "{ORGANIZATION}"
    name: {{nl: RVA, fr: ONEM, de: LfA}}
    applications: [{{id: unemployment, name: {{nl: Werkloosheid, fr: Chômage}}}}]
    messageTypes: [{MESSAGE_TYPE}]
messageTypes:
  - id: {MESSAGE_TYPE}
    name: {{nl: Attest, fr: Attestation, de: Bescheinigung}}
    validityPeriod: {{validityPeriodNumber: 1, validityPeriodUnit: year}}
  - id: {OTHER_MESSAGE_TYPE}
    name: {{nl: Pensioen, fr: Pension, de: Rente}}
    validityPeriod: {{validityPeriodNumber: 6, validityPeriodUnit: month}}
"#
    )
}

/// The test registry with a second sender, `other`, beside `sender_id`; `extra` is added to
/// the second sender's entry (lines indented by four spaces, e.g. its `limits`).
pub fn registry_with_sender(sender_id: &str, other: &str, extra: &str) -> RegistryFile {
    let yaml = registry_yaml(sender_id).replacen(
        "senders:\n",
        &format!(
            "senders:\n  - id: {other}\n    organizationId: \"0206731645\"\n    \
             name: {{nl: RIZIV, fr: INAMI, de: LIKIV}}\n    \
             applications: [{{id: benefits, name: {{nl: Uitkeringen, fr: Indemnités}}}}]\n    \
             messageTypes: [{MESSAGE_TYPE}]\n{extra}"
        ),
        1,
    );
    RegistryFile::parse(&yaml).expect("valid registry")
}

impl TestApp {
    /// Registers a second sender, `other` (see [`registry_with_sender`]), with its broker
    /// user, and connects it reading its statuses.
    pub async fn second_sender(&self, other: &str, extra: &str) -> SenderClient {
        ebox::admin::apply_registry(
            &self.pool,
            &self.settings.amqp_url,
            &registry_with_sender(&self.sender_id, other, extra),
        )
        .await
        .expect("the second sender registered");
        self.broker_user(other).await;
        SenderClient::connect(&self.amqp_url_for(other), other)
            .await
            .expect("the second sender connects")
    }

    /// Another broker user with a sender's permissions (registered or not), removed with the
    /// test.
    pub async fn broker_user(&self, user: &str) {
        create_sender_user(&self.vhost, user).await;
        if let Ok(mut users) = self.users.lock() {
            users.push(user.to_owned());
        }
    }

    /// A channel, with confirms, of a broker user whose only right is to write to the default
    /// exchange (`amq.default`): enough to put any message on any internal queue.
    pub async fn forger(&self) -> lapin::Channel {
        let user = format!("forger-{}", self.id);
        create_user(&self.vhost, &user, "^amq\\.default$", "^$").await;
        if let Ok(mut users) = self.users.lock() {
            users.push(user.clone());
        }
        let connection = lapin::Connection::connect(
            &self.amqp_url_for(&user),
            lapin::ConnectionProperties::default(),
        )
        .await
        .expect("the forger connects");
        let channel = connection.create_channel().await.expect("a channel");
        channel
            .confirm_select(Default::default())
            .await
            .expect("confirms");
        channel
    }

    pub fn amqp_url_for(&self, user: &str) -> String {
        format!("amqp://{user}:{PASSWORD}@{}/{}", broker_host(), self.vhost)
    }

    /// The registered sender of this test, connected and consuming its status queue.
    pub async fn sender(&self) -> SenderClient {
        SenderClient::connect(&self.amqp_url_for(&self.sender_id), &self.sender_id)
            .await
            .expect("the sender connects")
    }

    /// The registered sender of this test, publishing only (reading no status).
    pub async fn sender_without_statuses(&self) -> SenderClient {
        SenderClient::connect_publishing_only(&self.amqp_url_for(&self.sender_id), &self.sender_id)
            .await
            .expect("the sender connects")
    }

    /// Records that the citizen consents to electronic delivery, now.
    pub async fn grant_consent(&self, ssin: &str) {
        self.consent(ssin, None).await;
    }

    /// The citizen consents and chooses `channel`, in French (what `ebox consent grant` and
    /// `ebox citizen set` record).
    pub async fn grant_consent_with(&self, ssin: &str, channel: domain::citizen::Channel) {
        self.consent(ssin, Some(channel)).await;
    }

    /// The citizen's consent, now, with their preferences when `channel` is given.
    async fn consent(&self, ssin: &str, channel: Option<domain::citizen::Channel>) {
        let ssin = domain::ssin::Ssin::parse(ssin).expect("a valid national number");
        let mut tx = self.pool.begin().await.expect("tx");
        records::citizens::record_consent(
            &mut tx,
            &self.hasher,
            &ssin,
            domain::citizen::Consent::Granted,
            chrono::Utc::now(),
            "test",
        )
        .await
        .expect("consent recorded");
        if let Some(channel) = channel {
            let preferences = domain::citizen::Preferences {
                language: domain::translated::Language::Fr,
                channel,
            };
            records::citizens::record_preferences(
                &mut tx,
                &self.hasher,
                &ssin,
                &preferences,
                chrono::Utc::now(),
            )
            .await
            .expect("preferences recorded");
        }
        tx.commit().await.expect("commit");
    }

    /// How many answers of the API were checked against `api/openapi.yaml` so far.
    pub fn answers_checked(&self) -> usize {
        self.violations.checked()
    }

    /// The root URL of a front for another API the test started at `addr`, whose answers are
    /// checked like the harness's.
    pub async fn front(&self, addr: std::net::SocketAddr) -> String {
        front::start(addr, &self.settings.api_base_path, self.violations.clone()).await
    }

    /// A connection with the service's own user, to look into internal queues.
    pub async fn service_channel(&self) -> lapin::Channel {
        let connection = queues::driver::connect(&self.settings.amqp_url, "test inspector")
            .await
            .expect("the service user connects");
        connection.create_channel().await.expect("a channel")
    }

    /// Takes every message currently in `queue`, acknowledging them.
    pub async fn drain(&self, queue: &str) -> Vec<lapin::message::Delivery> {
        let channel = self.service_channel().await;
        let mut messages = Vec::new();
        while let Some(message) = channel
            .basic_get(queue.into(), BasicGetOptions::default())
            .await
            .expect("basic.get")
        {
            message
                .delivery
                .acker
                .ack(BasicAckOptions::default())
                .await
                .expect("ack");
            messages.push(message.delivery);
        }
        messages
    }

    /// Waits for the next message on `queue` (for queues that fill asynchronously).
    pub async fn next_on(&self, queue: &str) -> lapin::message::Delivery {
        let channel = self.service_channel().await;
        let mut consumer = channel
            .basic_consume(
                queue.into(),
                "".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .expect("basic.consume");
        let delivery = tokio::time::timeout(WAIT, consumer.next())
            .await
            .unwrap_or_else(|_| panic!("nothing arrived on {queue}"))
            .expect("consumer open")
            .expect("delivery");
        delivery
            .acker
            .ack(BasicAckOptions::default())
            .await
            .expect("ack");
        delivery
    }

    pub async fn audit_actions(&self, reference: &str) -> Vec<(String, Option<String>)> {
        sqlx::query_as(
            "SELECT action, code FROM audit_events WHERE sender_reference = $1 ORDER BY id",
        )
        .bind(reference)
        .fetch_all(&self.pool)
        .await
        .expect("read the audit trail")
    }

    /// Stops the workers, finishing their batches, as a rollout would.
    pub async fn stop_workers(&mut self) {
        self.shutdown.cancel();
        while self.tasks.join_next().await.is_some() {}
    }

    /// Starts the workers again on the same database and vhost.
    pub async fn start_workers(&mut self, names: &[Worker]) {
        self.shutdown = CancellationToken::new();
        self.liveness = Liveness::new(self.settings.stall_after);
        let (tasks, readiness) = workers::spawn(
            &self.settings,
            &self.pool,
            names,
            &self.liveness,
            &self.shutdown,
        )
        .expect("workers start");
        self.tasks = tasks;
        for ready in &readiness {
            tokio::time::timeout(WAIT, ready.wait_until_ready())
                .await
                .expect("the workers start consuming");
        }
    }
}

impl Drop for TestApp {
    /// Stops the workers and removes the test's vhost, broker users and database: the broker
    /// slows to a halt when hundreds of idle quorum queues pile up. `EBOX_TEST_KEEP=1` keeps
    /// them for inspection (`scripts/test.sh` sweeps leftovers before each run). Then fails the
    /// test if an answer of the API was not as `api/openapi.yaml` describes it.
    fn drop(&mut self) {
        self.shutdown.cancel();
        if std::env::var_os("EBOX_TEST_KEEP").is_none() {
            self.clean_up();
        }
        let violations = self.violations.take();
        if !violations.is_empty() && !std::thread::panicking() {
            panic!(
                "{} answer(s) of the API not as api/openapi.yaml describes them:\n{}",
                violations.len(),
                violations.join("\n")
            );
        }
    }
}

impl TestApp {
    /// Removes the test's vhost, broker users, database and runtime role.
    fn clean_up(&mut self) {
        let vhost = self.vhost.clone();
        let users: Vec<String> = self.users.lock().map(|u| u.clone()).unwrap_or_default();
        let database = format!("ebox_test_{}", self.id);
        let runtime_role = self.runtime_role.clone();
        let pool = self.pool.clone();
        // Drop cannot await, and the test's runtime is the current thread: clean up on a
        // thread of its own with a runtime of its own.
        let cleanup = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime");
            runtime.block_on(async move {
                let api = reqwest::Client::new();
                let _ = api
                    .delete(format!("{}/vhosts/{vhost}", management_api()))
                    .send()
                    .await;
                for user in users {
                    let _ = api
                        .delete(format!("{}/users/{user}", management_api()))
                        .send()
                        .await;
                }
                if let Ok(mut admin) = PgConnection::connect(&admin_database_url()).await {
                    let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                        "DROP DATABASE IF EXISTS {database} WITH (FORCE)"
                    )))
                    .execute(&mut admin)
                    .await;
                    if let Some(role) = runtime_role {
                        let _ =
                            sqlx::query(sqlx::AssertSqlSafe(format!("DROP ROLE IF EXISTS {role}")))
                                .execute(&mut admin)
                                .await;
                    }
                }
            });
        });
        drop(pool);
        let _ = cleanup.join();
    }
}

/// Publishes `body` as the test's sender with type `kind` and returns the status it receives.
pub async fn publish_and_wait(
    sender: &mut SenderClient,
    reference: &str,
    kind: &str,
    body: &[u8],
) -> StatusEvent {
    sender
        .publish(sender.properties(reference, kind), body)
        .await
        .expect("the broker takes the publication");
    sender.next_status(WAIT).await.expect("a status event")
}

/// Publishes a v2 message to `ssin` and reads the sender's statuses until a final one
/// (`published`, `no-digital-user`, `rejected`) for this reference; returns them all.
pub async fn journey(sender: &mut SenderClient, reference: &str, ssin: &str) -> Vec<StatusEvent> {
    let body = serde_json::to_vec(&ebox::demo::sample_v2(ssin, MESSAGE_TYPE)).expect("JSON");
    sender
        .publish(
            sender.properties(reference, intake::contract::TYPE_V2),
            &body,
        )
        .await
        .expect("published");
    let mut statuses = Vec::new();
    loop {
        let status = sender.next_status(WAIT).await.expect("a status");
        assert_eq!(status.sender_reference.as_deref(), Some(reference));
        let done = matches!(
            status.status,
            domain::status::Status::Published
                | domain::status::Status::NoDigitalUser
                | domain::status::Status::Rejected
        );
        statuses.push(status);
        if done {
            return statuses;
        }
    }
}

/// Publishes a v2 `body` and waits for its `published`; returns the eBox message id.
pub async fn deliver(
    sender: &mut SenderClient,
    reference: &str,
    body: serde_json::Value,
) -> uuid::Uuid {
    sender
        .publish(
            sender.properties(reference, intake::contract::TYPE_V2),
            &serde_json::to_vec(&body).expect("JSON"),
        )
        .await
        .expect("published");
    loop {
        let status = sender.next_status(WAIT).await.expect("a status");
        if status.sender_reference.as_deref() == Some(reference)
            && status.status == domain::status::Status::Published
        {
            return status.message_id.expect("an id").as_uuid();
        }
        assert_ne!(
            status.status,
            domain::status::Status::Rejected,
            "{status:?}"
        );
        assert_ne!(
            status.status,
            domain::status::Status::NoDigitalUser,
            "{status:?}"
        );
    }
}

/// Opens a message's first attachment's content through the API, as the portal would.
pub async fn open_main_content(
    app: &TestApp,
    message_id: uuid::Uuid,
    token: &str,
) -> reqwest::Response {
    let base = app.api.clone().expect("the API runs");
    let http = reqwest::Client::new();
    let attachments: serde_json::Value = http
        .get(format!("{base}/ebox/messages/{message_id}/attachments"))
        .bearer_auth(token)
        .send()
        .await
        .expect("the API answers")
        .json()
        .await
        .expect("JSON");
    let main = attachments["items"][0]["attachmentId"]
        .as_str()
        .unwrap_or_else(|| panic!("an attachment id in {attachments}"));
    http.get(format!(
        "{base}/ebox/messages/{message_id}/attachments/{main}/content"
    ))
    .bearer_auth(token)
    .send()
    .await
    .expect("the API answers")
}

/// Waits until `check` holds, looking again every 50 ms, for at most [`WAIT`].
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Publishes an update as the eBox portal does (to `ebox.portal`), and waits for the broker's
/// confirm.
pub async fn portal_update(portal: &lapin::Channel, kind: &str, body: &serde_json::Value) {
    portal
        .basic_publish(
            queues::topology::PORTAL_EXCHANGE.into(),
            queues::topology::PORTAL_ROUTING_KEY.into(),
            lapin::options::BasicPublishOptions::default(),
            &serde_json::to_vec(body).expect("JSON"),
            lapin::BasicProperties::default()
                .with_type(lapin::types::ShortString::from(kind))
                .with_delivery_mode(2),
        )
        .await
        .expect("publish")
        .await
        .expect("confirm");
}

/// A token the eBox portal presents for the sample citizen (`ebox demo`'s), signed with the test
/// identity provider's key.
pub fn portal_citizen_token() -> String {
    ebox::token::mint(&ebox::token::TokenArgs {
        key: fixture("es256-private.pem").into(),
        issuer: ISSUER.into(),
        audience: AUDIENCE.into(),
        sub: Some(ebox::demo::SAMPLE_SSIN.into()),
        client_id: Some("ebox-portal".into()),
        scope: "ebox:summary ebox:messages ebox:referencedata".into(),
        acr: "http://eidas.europa.eu/LoA/substantial".into(),
        ttl: 600,
        kid: Some("test-es256".into()),
    })
    .expect("a token")
}

/// One request a webhook endpoint received.
pub struct WebhookCall {
    pub idempotency_key: String,
    pub timestamp: String,
    pub signature: String,
    pub body: Vec<u8>,
}

impl std::fmt::Debug for WebhookCall {
    /// The key alone: a test shows the body beside it when it matters.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "WebhookCall({})", self.idempotency_key)
    }
}

/// A real HTTP server on loopback standing for a webhook's receiver (a partner app, a sender's
/// status endpoint) at `path`: it answers 500 to the first call and 200 to the others, and
/// reports every call.
pub async fn start_webhook_endpoint(
    path: &'static str,
) -> (std::net::SocketAddr, mpsc::UnboundedReceiver<WebhookCall>) {
    use axum::http::{HeaderMap, StatusCode};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let (tx, rx) = mpsc::unbounded_channel();
    let calls = Arc::new(AtomicUsize::new(0));
    let app = axum::Router::new().route(
        path,
        axum::routing::post(move |headers: HeaderMap, body: axum::body::Bytes| {
            let (tx, calls) = (tx.clone(), calls.clone());
            async move {
                let header = |name: &str| {
                    headers
                        .get(name)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_owned()
                };
                let _ = tx.send(WebhookCall {
                    idempotency_key: header(notify::webhook::IDEMPOTENCY_KEY),
                    timestamp: header(notify::webhook::TIMESTAMP),
                    signature: header(notify::webhook::SIGNATURE),
                    body: body.to_vec(),
                });
                if calls.fetch_add(1, Ordering::SeqCst) == 0 {
                    StatusCode::INTERNAL_SERVER_ERROR
                } else {
                    StatusCode::OK
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("listen");
    let addr = listener.local_addr().expect("address");
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr, rx)
}

/// What a webhook's receiver computes to check a signature: HMAC-SHA256 of
/// `<timestamp>.<body>` with the shared secret.
pub fn expected_signature(secret: &str, timestamp: &str, body: &[u8]) -> String {
    use hmac::{Hmac, Mac};
    let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(secret.as_bytes()).expect("key");
    mac.update(format!("{timestamp}.").as_bytes());
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}
