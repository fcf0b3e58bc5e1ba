//! Settings: every knob is an environment variable with the `EBOX_` prefix, parsed into typed
//! settings at start-up. Every problem is reported at once, then the process exits non-zero.
//! A secret may instead be read from the file its `<NAME>_FILE` variable names
//! (`SECRET_VARIABLES` below, and every partner's secret).
//!
//! The README's operations guide lists the same variables; keep the two in step.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;

#[derive(Clone)]
pub struct Settings {
    /// AMQP 0-9-1 URL of the broker, with the service's own user and vhost.
    pub amqp_url: String,
    /// TLS for an `amqps://` broker: the CA to trust and the client certificate, if any.
    pub amqp_tls: AmqpTls,
    /// The broker user whose replays (`ebox dlq replay`) intake trusts to name their sender
    /// (`EBOX_AMQP_REPLAY_USER`); `None`: the user of `amqp_url`, when one user does everything.
    pub amqp_replay_user: Option<String>,
    /// PostgreSQL URL of the runtime role: every worker, the API and the commands connect with
    /// it. In production its user owns no table, so that it can only add to the audit trail.
    pub database_url: String,
    /// PostgreSQL URL of the role that owns the schema, for the migrations only
    /// (`EBOX_MIGRATION_DATABASE_URL`); `database_url` when unset (development).
    pub migration_database_url: String,
    /// Largest database pool per process.
    pub database_max_connections: u32,
    /// Secret key of the keyed hash (HMAC-SHA256) that stands for a national number in the
    /// audit trail and in searchable metadata. Rotate it by moving the old key to
    /// `ssin_hash_previous_keys`: new records use this one, older ones are still found.
    pub ssin_hash_key: Vec<u8>,
    /// Earlier hash keys, newest first (`EBOX_SSIN_HASH_PREVIOUS_KEYS`, one per line), kept so
    /// that records written under them are still found.
    pub ssin_hash_previous_keys: Vec<Vec<u8>>,
    /// Largest message body intake accepts; larger ones are rejected with `TOO_LARGE`.
    pub max_message_bytes: usize,
    /// Unacknowledged deliveries the broker may push to one consumer.
    pub prefetch: u16,
    /// Bytes of prefetched deliveries intake may hold (`EBOX_DELIVERY_BUDGET_BYTES`): its
    /// prefetch is lowered to this over `max_message_bytes`, so that maximum-size messages at
    /// full prefetch fit in memory. Later stages receive hand-offs of a few hundred bytes.
    pub delivery_budget_bytes: usize,
    /// Deliveries a stage processes in one database transaction, at most.
    pub batch_size: usize,
    /// A sender's messages accepted and not yet final (`EBOX_INTAKE_IN_FLIGHT_PER_SENDER`)
    /// past which intake takes no more from its lane until some are: the later stages' queues
    /// then hold at most this many of one sender's, so that another sender's message never
    /// waits behind a whole backlog there either.
    pub in_flight_per_sender: u32,
    /// Where `/metrics`, `/livez` and `/readyz` are served.
    pub metrics_addr: SocketAddr,
    /// `tracing` filter, e.g. `info` or `info,queues=debug`.
    pub log_filter: String,
    pub log_format: LogFormat,
    /// Where spans are exported over OTLP/HTTP: the standard `OTEL_*` variables, `None` (no
    /// exporter) unless an endpoint is set.
    pub traces: Option<TraceExport>,
    /// Notifications: the SMTP relay (`smtp://host:port`, `smtps://…`; credentials in the URL).
    /// Required by the notify worker only.
    pub smtp_url: Option<String>,
    /// `From` of notification e-mails.
    pub mail_from: String,
    /// The eBox portal the notification e-mails link to.
    pub portal_url: String,
    /// How long a notification is retried (counted from when it was queued, or re-queued by
    /// `ebox notifications retry`) before it is abandoned: long enough to outlast a relay or a
    /// partner down for hours.
    pub notify_retry_for: std::time::Duration,
    /// How long a status callback that was sent is kept before the notify process deletes it
    /// (`EBOX_STATUS_CALLBACK_RETENTION_DAYS`): within it, a status event sent again is not
    /// called back twice.
    pub status_callback_retention: std::time::Duration,
    /// This document provider's id in the events it publishes (`eventProviderId`).
    pub provider_id: String,
    /// How often the store worker looks for expired documents to delete.
    pub retention_interval: std::time::Duration,
    /// How long a message may stay `accepted` before it counts as stuck
    /// (`ebox_stuck_messages`).
    pub stuck_after: std::time::Duration,
    /// How long a loop may make no progress (one step, or a backlog that never reaches its
    /// consumer) before `/livez` fails (`EBOX_STALL_AFTER_SECONDS`).
    pub stall_after: std::time::Duration,
    /// How long after its receipt a document still unread gets its `newDocumentReminder`
    /// (`EBOX_REMINDER_AFTER_DAYS`).
    pub reminder_after: std::time::Duration,
    /// How long before its expiration a document still unread gets its
    /// `documentExpirationAlert` (`EBOX_EXPIRATION_ALERT_DAYS`).
    pub expiration_alert_before: std::time::Duration,
    /// The federation's event engine, to which the event relay pushes the events outbox.
    pub event_engine: EventEngine,
    /// The platform's Ed25519 signing key for proofs (PKCS#8 PEM). Required by store,
    /// read-receipt and the API.
    pub proof_signing_key_file: Option<std::path::PathBuf>,
    /// Earlier proof keys (a JWKS), still published so that older proofs verify.
    pub proof_previous_keys_file: Option<std::path::PathBuf>,
    /// The citizen API: where it listens, and the path it is served under (`/` or `/ebox-api`).
    pub api_addr: SocketAddr,
    pub api_base_path: String,
    /// The API's public root URL (what clients reach, base path excluded), for the links in
    /// responses (`contentHref`). Defaults to `http://localhost:<port of EBOX_API_ADDR>`.
    pub api_public_url: String,
    /// Calls per second a citizen may make to one API replica, sustained
    /// (`EBOX_API_RATE_PER_CITIZEN`), with a burst (`EBOX_API_BURST_PER_CITIZEN`), and at most
    /// so many in progress at once (`EBOX_API_CONCURRENCY_PER_CITIZEN`).
    pub api_rate_per_citizen: f64,
    pub api_burst_per_citizen: u32,
    pub api_concurrency_per_citizen: u32,
    /// The identity provider's verification keys: a JWKS (JSON) or PEM public key file.
    /// The API requires it or `jwt_jwks_url` (exactly one), and the issuer and audience.
    pub jwt_keys_file: Option<std::path::PathBuf>,
    /// The identity provider's JWKS URL (https, or http to this machine): fetched at start-up,
    /// every `jwt_jwks_refresh`, and again when a token names an unknown key.
    pub jwt_jwks_url: Option<String>,
    pub jwt_jwks_refresh: std::time::Duration,
    /// The longest lifetime (`exp - iat`) a token may claim; a token without `iat` is refused.
    pub jwt_max_lifetime: std::time::Duration,
    pub jwt_issuer: Option<String>,
    pub jwt_audience: Option<String>,
    /// The lowest eIDAS assurance level (`acr`) the API accepts.
    pub jwt_min_acr: AssuranceLevel,
    /// Partners' webhook signing secrets: every `EBOX_PARTNER_<NAME>_SECRET` variable, by name
    /// (the registry file's `secretEnv` names one).
    pub partner_secrets: HashMap<String, String>,
}

/// eIDAS levels of assurance, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum AssuranceLevel {
    Low,
    Substantial,
    High,
}

impl AssuranceLevel {
    pub const LOW: &'static str = "http://eidas.europa.eu/LoA/low";
    pub const SUBSTANTIAL: &'static str = "http://eidas.europa.eu/LoA/substantial";
    pub const HIGH: &'static str = "http://eidas.europa.eu/LoA/high";

    /// Reads an `acr` value: the eIDAS URI, or its last word.
    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            Self::LOW | "low" => Some(Self::Low),
            Self::SUBSTANTIAL | "substantial" => Some(Self::Substantial),
            Self::HIGH | "high" => Some(Self::High),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Text,
}

/// Trace export over OTLP/HTTP, from the OpenTelemetry SDK's standard variables. The exporter
/// reads `OTEL_EXPORTER_OTLP_HEADERS` and `OTEL_EXPORTER_OTLP_TIMEOUT` (and their `_TRACES_`
/// forms) itself, the SDK `OTEL_TRACES_SAMPLER`, `OTEL_RESOURCE_ATTRIBUTES` and `OTEL_BSP_*`;
/// they are checked here with everything else.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceExport {
    /// Where spans are posted: `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` as it is, or
    /// `OTEL_EXPORTER_OTLP_ENDPOINT` with `/v1/traces` added.
    pub endpoint: String,
    pub protocol: OtlpProtocol,
    /// `OTEL_SERVICE_NAME`; when unset, the component's (`ebox-intake`, `ebox-api`…).
    pub service_name: Option<String>,
}

/// The OTLP encodings over HTTP (`OTEL_EXPORTER_OTLP_PROTOCOL`); gRPC is not built in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OtlpProtocol {
    /// `http/protobuf`, the default.
    HttpProtobuf,
    /// `http/json`.
    HttpJson,
}

impl Settings {
    /// The hasher of national numbers: the current key, and the previous ones for look-ups.
    pub fn ssin_hasher(&self) -> domain::citizen::SsinHasher {
        domain::citizen::SsinHasher::new(&self.ssin_hash_key)
            .with_previous(self.ssin_hash_previous_keys.clone())
    }

    /// Intake's prefetch: [`Settings::prefetch`], lowered so that that many maximum-size
    /// messages fit in [`Settings::delivery_budget_bytes`]; at least 1.
    pub fn intake_prefetch(&self) -> u16 {
        let fits = (self.delivery_budget_bytes / self.max_message_bytes.max(1)).max(1);
        self.prefetch.min(u16::try_from(fits).unwrap_or(u16::MAX))
    }
}

impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Settings")
            .field("amqp_url", &redact_url(&self.amqp_url))
            .field("amqp_tls", &self.amqp_tls)
            .field("amqp_replay_user", &self.amqp_replay_user)
            .field("database_url", &redact_url(&self.database_url))
            .field(
                "migration_database_url",
                &redact_url(&self.migration_database_url),
            )
            .field("database_max_connections", &self.database_max_connections)
            .field("ssin_hash_key", &"<redacted>")
            .field(
                "ssin_hash_previous_keys",
                &format!("<{} redacted>", self.ssin_hash_previous_keys.len()),
            )
            .field("max_message_bytes", &self.max_message_bytes)
            .field("delivery_budget_bytes", &self.delivery_budget_bytes)
            .field("prefetch", &self.prefetch)
            .field("batch_size", &self.batch_size)
            .field("in_flight_per_sender", &self.in_flight_per_sender)
            .field("metrics_addr", &self.metrics_addr)
            .field("log_filter", &self.log_filter)
            .field("log_format", &self.log_format)
            .field(
                "traces",
                &self.traces.as_ref().map(|traces| TraceExport {
                    endpoint: redact_url(&traces.endpoint),
                    ..traces.clone()
                }),
            )
            .field("smtp_url", &self.smtp_url.as_deref().map(redact_url))
            .field("mail_from", &self.mail_from)
            .field("portal_url", &self.portal_url)
            .field("notify_retry_for", &self.notify_retry_for)
            .field("status_callback_retention", &self.status_callback_retention)
            .field("provider_id", &self.provider_id)
            .field("event_engine", &self.event_engine)
            .field(
                "partner_secrets",
                &self.partner_secrets.keys().collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// A URL with its password replaced, for log lines.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let credentials = &url[scheme + 3..at];
            match credentials.find(':') {
                Some(colon) => format!(
                    "{}{}:***{}",
                    &url[..scheme + 3],
                    &credentials[..colon],
                    &url[at..]
                ),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

/// Every problem found in the environment, reported together.
#[derive(Debug)]
pub struct ConfigErrors(pub Vec<String>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "invalid configuration:")?;
        for problem in &self.0 {
            writeln!(f, "  - {problem}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

impl Settings {
    pub fn from_env() -> Result<Self, ConfigErrors> {
        Self::from_vars(
            std::env::vars().filter(|(k, _)| k.starts_with("EBOX_") || k.starts_with("OTEL_")),
        )
    }

    /// Reads every section in turn, then the one rule across sections. Problems are listed in
    /// the order the variables are read.
    pub fn from_vars(
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigErrors> {
        let vars: HashMap<String, String> = vars.into_iter().collect();
        let mut problems = Vec::new();
        let mut env = Env {
            vars: &vars,
            problems: &mut problems,
        };

        let connections = read_connections(&mut env);
        let amqp_tls = read_amqp_tls(&mut env, connections.amqp_url.as_deref());
        let limits = read_pipeline_limits(&mut env);
        let telemetry = read_telemetry(&mut env);
        let traces = read_traces(&mut env);
        let notifications = read_notifications(&mut env);
        let provider_id = read_provider_id(&mut env);
        let retention_interval = read_retention_interval(&mut env);
        let stuck_after = read_stuck_after(&mut env);
        let reminders = read_reminders(&mut env);
        let event_engine = read_event_engine(&mut env);
        let proof_keys = read_proof_keys(&mut env);
        let api = read_api(&mut env);
        let identity_provider = read_identity_provider(&mut env);
        let token_keys = read_token_keys(&mut env, &identity_provider);
        check_batch_fits_prefetch(&mut env, &limits);
        let partner_secrets = read_partner_secrets(&mut env);

        let settings = (|| {
            Some(Settings {
                amqp_url: connections.amqp_url?,
                amqp_tls: amqp_tls?,
                amqp_replay_user: connections.amqp_replay_user?,
                migration_database_url: connections
                    .migration_database_url?
                    .or_else(|| connections.database_url.clone())?,
                database_url: connections.database_url?,
                database_max_connections: connections.database_max_connections?,
                ssin_hash_key: connections.ssin_hash_key?,
                ssin_hash_previous_keys: connections.ssin_hash_previous_keys?,
                max_message_bytes: limits.max_message_bytes?,
                delivery_budget_bytes: limits.delivery_budget_bytes?,
                prefetch: limits.prefetch?,
                batch_size: limits.batch_size?,
                in_flight_per_sender: limits.in_flight_per_sender?,
                metrics_addr: telemetry.metrics_addr?,
                log_filter: telemetry.log_filter?,
                log_format: telemetry.log_format?,
                traces: traces?,
                smtp_url: notifications.smtp_url?,
                mail_from: notifications.mail_from?,
                portal_url: notifications.portal_url?,
                notify_retry_for: notifications.notify_retry_for?,
                status_callback_retention: notifications.status_callback_retention?,
                provider_id: provider_id?,
                retention_interval: retention_interval?,
                stuck_after: stuck_after?,
                stall_after: telemetry.stall_after?,
                reminder_after: reminders.after?,
                expiration_alert_before: reminders.alert_before?,
                event_engine: event_engine?,
                proof_signing_key_file: proof_keys.signing_key_file?,
                proof_previous_keys_file: proof_keys.previous_keys_file?,
                api_addr: api.addr?,
                api_public_url: api.public_url?,
                api_base_path: api.base_path?,
                api_rate_per_citizen: api.rate_per_citizen?,
                api_burst_per_citizen: api.burst_per_citizen?,
                api_concurrency_per_citizen: api.concurrency_per_citizen?,
                jwt_keys_file: identity_provider.keys_file?,
                jwt_issuer: identity_provider.issuer?,
                jwt_audience: identity_provider.audience?,
                jwt_min_acr: identity_provider.min_acr?,
                jwt_jwks_url: token_keys.jwks_url?,
                jwt_jwks_refresh: token_keys.jwks_refresh?,
                jwt_max_lifetime: token_keys.max_lifetime?,
                partner_secrets,
            })
        })();
        match settings {
            Some(settings) if problems.is_empty() => Ok(settings),
            _ => Err(ConfigErrors(problems)),
        }
    }
}

// Each section below reads its variables through `Env`, which records every problem; a
// field is `None` when its variable was invalid, so that `from_vars` builds nothing then.

/// The broker, the database, and the key that stands for national numbers.
struct Connections {
    amqp_url: Option<String>,
    amqp_replay_user: Option<Option<String>>,
    database_url: Option<String>,
    /// `Some(None)` when unset: the migrations then use `database_url`.
    migration_database_url: Option<Option<String>>,
    ssin_hash_key: Option<Vec<u8>>,
    ssin_hash_previous_keys: Option<Vec<Vec<u8>>>,
    database_max_connections: Option<u32>,
}

fn read_connections(env: &mut Env) -> Connections {
    let amqp_url = env.required("EBOX_AMQP_URL", |v| {
        if v.starts_with("amqp://") || v.starts_with("amqps://") {
            Ok(v.to_owned())
        } else {
            Err("must start with amqp:// or amqps://".into())
        }
    });
    let amqp_replay_user = env.optional("EBOX_AMQP_REPLAY_USER", None, |v| {
        if v.chars().all(|c| c.is_ascii_graphic()) {
            Ok(Some(v.to_owned()))
        } else {
            Err("must be a broker user name".into())
        }
    });
    let database_url = env.required("EBOX_DATABASE_URL", postgres_url);
    let migration_database_url = env.optional("EBOX_MIGRATION_DATABASE_URL", None, |v| {
        postgres_url(v).map(Some)
    });
    let ssin_hash_key = env.required("EBOX_SSIN_HASH_KEY", |v| {
        if v.len() >= 32 {
            Ok(v.as_bytes().to_vec())
        } else {
            Err("must be a secret of at least 32 characters".into())
        }
    });
    let ssin_hash_previous_keys = env.optional("EBOX_SSIN_HASH_PREVIOUS_KEYS", Vec::new(), |v| {
        let keys: Vec<Vec<u8>> = v
            .lines()
            .map(str::trim)
            .filter(|line| !line.is_empty())
            .map(|line| line.as_bytes().to_vec())
            .collect();
        if keys.iter().all(|key| key.len() >= 32) {
            Ok(keys)
        } else {
            Err("must hold one secret of at least 32 characters per line".into())
        }
    });
    let database_max_connections = env.optional("EBOX_DATABASE_MAX_CONNECTIONS", 10, |v| {
        parse_in(v, 1..=1000)
    });
    Connections {
        amqp_url,
        amqp_replay_user,
        database_url,
        migration_database_url,
        ssin_hash_key,
        ssin_hash_previous_keys,
        database_max_connections,
    }
}

fn postgres_url(v: &str) -> Result<String, String> {
    if v.starts_with("postgres://") || v.starts_with("postgresql://") {
        Ok(v.to_owned())
    } else {
        Err("must start with postgres:// or postgresql://".into())
    }
}

/// TLS for an `amqps://` broker: paths of PEM files, checked here (readable, of the right
/// kind); `queues::tls` parses them. The system's roots are trusted when no CA file is given.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AmqpTls {
    /// The CA certificates that sign the broker's certificate, trusted instead of the system's
    /// roots.
    pub ca_file: Option<std::path::PathBuf>,
    /// The service's own certificate, for a broker that asks for one (mutual TLS).
    pub client_certificate: Option<ClientCertificate>,
}

/// A client certificate (chain) and its private key, both PEM files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCertificate {
    pub cert_file: std::path::PathBuf,
    pub key_file: std::path::PathBuf,
}

/// `EBOX_AMQP_CA_FILE`, and `EBOX_AMQP_CLIENT_CERT_FILE` with `EBOX_AMQP_CLIENT_KEY_FILE`.
/// Setting any of them for an `amqp://` URL is a problem: the operator expects TLS, and the
/// connection would have none.
fn read_amqp_tls(env: &mut Env, amqp_url: Option<&str>) -> Option<AmqpTls> {
    let ca_file = env.optional("EBOX_AMQP_CA_FILE", None, |v| {
        pem_file(v, "a certificate", |pem| {
            pem.contains("-----BEGIN CERTIFICATE-----")
        })
    });
    let cert_file = env.optional("EBOX_AMQP_CLIENT_CERT_FILE", None, |v| {
        pem_file(v, "a certificate", |pem| {
            pem.contains("-----BEGIN CERTIFICATE-----")
        })
    });
    let key_file = env.optional("EBOX_AMQP_CLIENT_KEY_FILE", None, |v| {
        pem_file(v, "a private key", |pem| pem.contains("PRIVATE KEY-----"))
    });
    let set: Vec<&str> = [
        ("EBOX_AMQP_CA_FILE", &ca_file),
        ("EBOX_AMQP_CLIENT_CERT_FILE", &cert_file),
        ("EBOX_AMQP_CLIENT_KEY_FILE", &key_file),
    ]
    .into_iter()
    .filter(|(_, file)| matches!(file, Some(Some(_))))
    .map(|(key, _)| key)
    .collect();
    if let Some(url) = amqp_url
        && !url.starts_with("amqps://")
        && !set.is_empty()
    {
        env.problems.push(format!(
            "{} {} set but EBOX_AMQP_URL is not amqps://: the connection would not use TLS",
            set.join(" and "),
            if set.len() == 1 { "is" } else { "are" }
        ));
        return None;
    }
    let client_certificate = match (cert_file?, key_file?) {
        (Some(cert_file), Some(key_file)) => Some(ClientCertificate {
            cert_file,
            key_file,
        }),
        (None, None) => None,
        _ => {
            env.problems.push(
                "EBOX_AMQP_CLIENT_CERT_FILE and EBOX_AMQP_CLIENT_KEY_FILE go together: set both for mutual TLS, or neither".to_owned(),
            );
            return None;
        }
    };
    Some(AmqpTls {
        ca_file: ca_file?,
        client_certificate,
    })
}

/// A readable file whose PEM content `holds` what it must; a problem names the path.
fn pem_file(
    path: &str,
    what: &str,
    holds: impl FnOnce(&str) -> bool,
) -> Result<Option<std::path::PathBuf>, String> {
    let content = std::fs::read_to_string(path)
        .map_err(|e| format!("names a file that cannot be read ({path}): {e}"))?;
    if holds(&content) {
        Ok(Some(std::path::PathBuf::from(path)))
    } else {
        Err(format!("names a file without {what} in PEM ({path})"))
    }
}

/// How much the pipeline takes in at once: a message body, the broker's prefetch, a batch.
struct PipelineLimits {
    max_message_bytes: Option<usize>,
    delivery_budget_bytes: Option<usize>,
    prefetch: Option<u16>,
    batch_size: Option<usize>,
    in_flight_per_sender: Option<u32>,
}

fn read_pipeline_limits(env: &mut Env) -> PipelineLimits {
    PipelineLimits {
        max_message_bytes: env.optional("EBOX_MAX_MESSAGE_BYTES", 16 * 1024 * 1024, |v| {
            parse_in(v, 1024..=128 * 1024 * 1024)
        }),
        delivery_budget_bytes: env.optional("EBOX_DELIVERY_BUDGET_BYTES", 64 * 1024 * 1024, |v| {
            parse_in(v, 1024 * 1024..=4 * 1024 * 1024 * 1024)
        }),
        prefetch: env.optional("EBOX_PREFETCH", 64, |v| parse_in(v, 1..=1000)),
        batch_size: env.optional("EBOX_BATCH_SIZE", 32, |v| parse_in(v, 1..=1000)),
        in_flight_per_sender: env.optional("EBOX_INTAKE_IN_FLIGHT_PER_SENDER", 256, |v| {
            parse_in(v, 1..=1_000_000)
        }),
    }
}

/// Logs, metrics and probes.
struct Telemetry {
    metrics_addr: Option<SocketAddr>,
    stall_after: Option<std::time::Duration>,
    log_filter: Option<String>,
    log_format: Option<LogFormat>,
}

fn read_telemetry(env: &mut Env) -> Telemetry {
    Telemetry {
        metrics_addr: env.optional("EBOX_METRICS_ADDR", ([0, 0, 0, 0], 9464).into(), |v| {
            v.parse()
                .map_err(|_| "must be an address like 0.0.0.0:9464".into())
        }),
        stall_after: env.optional(
            "EBOX_STALL_AFTER_SECONDS",
            std::time::Duration::from_secs(300),
            |v| parse_in::<u64>(v, 30..=86_400).map(std::time::Duration::from_secs),
        ),
        log_filter: env.optional("EBOX_LOG", "info".to_owned(), |v| Ok(v.to_owned())),
        log_format: env.optional("EBOX_LOG_FORMAT", LogFormat::Json, |v| match v {
            "json" => Ok(LogFormat::Json),
            "text" => Ok(LogFormat::Text),
            _ => Err("must be json or text".into()),
        }),
    }
}

/// Trace export: the OpenTelemetry SDK's standard variables (not `EBOX_*`: a collector's
/// operator knows them), each `_TRACES_` form before the general one. No endpoint, or
/// `OTEL_SDK_DISABLED=true`: no exporter.
fn read_traces(env: &mut Env) -> Option<Option<TraceExport>> {
    let boolean = |v: &str| match v.to_ascii_lowercase().as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err("must be true or false".to_owned()),
    };
    let disabled = env.optional("OTEL_SDK_DISABLED", false, boolean);
    let http_url = |v: &str| {
        if (v.starts_with("http://") || v.starts_with("https://"))
            && !v.contains(char::is_whitespace)
        {
            Ok(Some(v.to_owned()))
        } else {
            Err("must be an http(s) URL (OTLP over HTTP, e.g. http://collector:4318)".to_owned())
        }
    };
    let traces_endpoint = env.optional("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", None, http_url);
    let endpoint = env.optional("OTEL_EXPORTER_OTLP_ENDPOINT", None, http_url);
    let protocol = |v: &str| match v {
        "http/protobuf" => Ok(Some(OtlpProtocol::HttpProtobuf)),
        "http/json" => Ok(Some(OtlpProtocol::HttpJson)),
        "grpc" => Err(
            "grpc is not built in: use http/protobuf (the collector's OTLP/HTTP port, 4318)"
                .to_owned(),
        ),
        _ => Err("must be http/protobuf or http/json".to_owned()),
    };
    let traces_protocol = env.optional("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", None, protocol);
    let general_protocol = env.optional("OTEL_EXPORTER_OTLP_PROTOCOL", None, protocol);
    let headers = |v: &str| {
        let well_formed = v.split(',').all(|pair| {
            pair.split_once('=')
                .is_some_and(|(key, _)| !key.trim().is_empty())
        });
        if well_formed {
            Ok(())
        } else {
            Err("must be key=value pairs separated by commas".to_owned())
        }
    };
    let timeout = |v: &str| parse_in::<u64>(v, 1..=600_000).map(|_| ());
    let compression = |v: &str| match v {
        "none" => Ok(()),
        _ => Err("must be none (no compression is built in)".to_owned()),
    };
    let mut checked = Some(());
    for (key, check) in [
        (
            "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
            &headers as &dyn Fn(&str) -> Result<(), String>,
        ),
        ("OTEL_EXPORTER_OTLP_HEADERS", &headers),
        ("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", &timeout),
        ("OTEL_EXPORTER_OTLP_TIMEOUT", &timeout),
        ("OTEL_EXPORTER_OTLP_TRACES_COMPRESSION", &compression),
        ("OTEL_EXPORTER_OTLP_COMPRESSION", &compression),
    ] {
        checked = checked.and(env.optional(key, (), check));
    }
    let service_name = env.optional("OTEL_SERVICE_NAME", None, |v| Ok(Some(v.to_owned())));
    checked?;
    if disabled? {
        return Some(None);
    }
    let endpoint = match (traces_endpoint?, endpoint?) {
        (Some(traces), _) => traces,
        (None, Some(general)) => format!("{}/v1/traces", general.trim_end_matches('/')),
        (None, None) => return Some(None),
    };
    Some(Some(TraceExport {
        endpoint,
        protocol: traces_protocol?
            .or(general_protocol?)
            .unwrap_or(OtlpProtocol::HttpProtobuf),
        service_name: service_name?,
    }))
}

/// The notification e-mails: the relay, the sender, the portal they link to, the retries.
struct Notifications {
    smtp_url: Option<Option<String>>,
    mail_from: Option<String>,
    portal_url: Option<String>,
    notify_retry_for: Option<std::time::Duration>,
    status_callback_retention: Option<std::time::Duration>,
}

fn read_notifications(env: &mut Env) -> Notifications {
    let smtp_url = env.optional("EBOX_SMTP_URL", None, |v| {
        if v.starts_with("smtp://") || v.starts_with("smtps://") {
            Ok(Some(v.to_owned()))
        } else {
            Err("must start with smtp:// or smtps://".into())
        }
    });
    let mail_from = env.optional(
        "EBOX_MAIL_FROM",
        "eBox <noreply@ebox.localhost>".to_owned(),
        |v| Ok(v.to_owned()),
    );
    let portal_url = env.optional("EBOX_PORTAL_URL", "https://www.myebox.be".to_owned(), |v| {
        if v.starts_with("https://") || v.starts_with("http://") {
            Ok(v.to_owned())
        } else {
            Err("must be an http(s) URL".into())
        }
    });
    // Replaces EBOX_NOTIFY_MAX_ATTEMPTS (no longer read): a count of attempts gave up after
    // about half an hour, whatever the outage; a time window outlasts one measured in hours.
    let notify_retry_for = env.optional(
        "EBOX_NOTIFY_RETRY_FOR",
        std::time::Duration::from_secs(72 * 3600),
        |v| parse_duration_in(v, 60..=30 * 86_400),
    );
    let status_callback_retention = env.optional(
        "EBOX_STATUS_CALLBACK_RETENTION_DAYS",
        std::time::Duration::from_secs(30 * 86_400),
        |v| parse_in::<u64>(v, 1..=3650).map(|d| std::time::Duration::from_secs(d * 86_400)),
    );
    Notifications {
        smtp_url,
        mail_from,
        portal_url,
        notify_retry_for,
        status_callback_retention,
    }
}

/// This document provider's id in the events it publishes.
fn read_provider_id(env: &mut Env) -> Option<String> {
    env.optional(
        "EBOX_PROVIDER_ID",
        "ebox-document-provider".to_owned(),
        |v| Ok(v.to_owned()),
    )
}

fn read_retention_interval(env: &mut Env) -> Option<std::time::Duration> {
    env.optional(
        "EBOX_RETENTION_INTERVAL_SECONDS",
        std::time::Duration::from_secs(60),
        |v| parse_in::<u64>(v, 1..=86_400).map(std::time::Duration::from_secs),
    )
}

fn read_stuck_after(env: &mut Env) -> Option<std::time::Duration> {
    env.optional(
        "EBOX_STUCK_AFTER_SECONDS",
        std::time::Duration::from_secs(900),
        |v| parse_in::<u64>(v, 10..=604_800).map(std::time::Duration::from_secs),
    )
}

/// The periods of the reminders job: after receipt, before expiration, in whole days.
struct Reminders {
    after: Option<std::time::Duration>,
    alert_before: Option<std::time::Duration>,
}

fn read_reminders(env: &mut Env) -> Reminders {
    let days =
        |v: &str| parse_in::<u64>(v, 1..=365).map(|d| std::time::Duration::from_secs(d * 86_400));
    Reminders {
        after: env.optional(
            "EBOX_REMINDER_AFTER_DAYS",
            std::time::Duration::from_secs(15 * 86_400),
            days,
        ),
        alert_before: env.optional(
            "EBOX_EXPIRATION_ALERT_DAYS",
            std::time::Duration::from_secs(7 * 86_400),
            days,
        ),
    }
}

/// The event engine the event relay pushes to. The relay runs only when `url` is set
/// (`EBOX_EVENT_ENGINE_URL`), and then needs the client id and the token file: the relay
/// checks that when it starts, so that the other processes, which share the settings but not
/// the token, need neither.
#[derive(Clone, PartialEq, Eq)]
pub struct EventEngine {
    /// The event API's events endpoint (`…/ebox/citizen/document/events`): https, or http to
    /// this machine.
    pub url: Option<String>,
    /// The `clientId` query parameter of each push (`EBOX_EVENT_ENGINE_CLIENT_ID`).
    pub client_id: Option<String>,
    /// A file holding the bearer token (`EBOX_EVENT_ENGINE_TOKEN_FILE`), read again whenever it
    /// changes, so a token can be renewed without a restart.
    pub token_file: Option<std::path::PathBuf>,
    /// Events per push, at most (`EBOX_EVENT_ENGINE_BATCH_SIZE`).
    pub batch_size: usize,
}

impl fmt::Debug for EventEngine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventEngine")
            .field("url", &self.url.as_deref().map(redact_url))
            .field("client_id", &self.client_id)
            .field("token_file", &self.token_file)
            .field("batch_size", &self.batch_size)
            .finish()
    }
}

fn read_event_engine(env: &mut Env) -> Option<EventEngine> {
    let url = env.optional("EBOX_EVENT_ENGINE_URL", None, |v| {
        if domain::registry::webhook_url_allowed(v) {
            Ok(Some(v.to_owned()))
        } else {
            Err("must be an https URL (or http to this machine)".into())
        }
    });
    let client_id = env.optional("EBOX_EVENT_ENGINE_CLIENT_ID", None, |v| {
        if v.chars().all(|c| c.is_ascii_graphic()) {
            Ok(Some(v.to_owned()))
        } else {
            Err("must be a client id without spaces".into())
        }
    });
    let token_file = env.optional("EBOX_EVENT_ENGINE_TOKEN_FILE", None, |v| {
        read_secret_file(v).map(|_| Some(std::path::PathBuf::from(v)))
    });
    let batch_size = env.optional("EBOX_EVENT_ENGINE_BATCH_SIZE", 100, |v| {
        parse_in(v, 1..=1000)
    });
    Some(EventEngine {
        url: url?,
        client_id: client_id?,
        token_file: token_file?,
        batch_size: batch_size?,
    })
}

/// The keys of signed proofs: paths, checked when the key is loaded.
struct ProofKeys {
    signing_key_file: Option<Option<std::path::PathBuf>>,
    previous_keys_file: Option<Option<std::path::PathBuf>>,
}

fn read_proof_keys(env: &mut Env) -> ProofKeys {
    let path = |v: &str| Ok(Some(std::path::PathBuf::from(v)));
    ProofKeys {
        signing_key_file: env.optional("EBOX_PROOF_SIGNING_KEY_FILE", None, path),
        previous_keys_file: env.optional("EBOX_PROOF_PREVIOUS_KEYS_FILE", None, path),
    }
}

/// The citizen API: where it listens, the path it is served under, the root clients reach.
struct Api {
    addr: Option<SocketAddr>,
    base_path: Option<String>,
    rate_per_citizen: Option<f64>,
    burst_per_citizen: Option<u32>,
    concurrency_per_citizen: Option<u32>,
    /// Already defaulted to `http://localhost:<port of addr>` when the variable is unset.
    public_url: Option<String>,
}

fn read_api(env: &mut Env) -> Api {
    let addr: Option<SocketAddr> =
        env.optional("EBOX_API_ADDR", ([0, 0, 0, 0], 8080).into(), |v| {
            v.parse()
                .map_err(|_| "must be an address like 0.0.0.0:8080".into())
        });
    let base_path = env.optional("EBOX_API_BASE_PATH", "/".to_owned(), |v| {
        if v.starts_with('/') && !v.contains(char::is_whitespace) {
            Ok(format!("/{}", v.trim_matches('/')))
        } else {
            Err("must be a path starting with /".into())
        }
    });
    let public_url = env.optional("EBOX_API_PUBLIC_URL", None, |v| {
        if v.starts_with("https://") || v.starts_with("http://") {
            Ok(Some(v.trim_end_matches('/').to_owned()))
        } else {
            Err("must be an http(s) URL".into())
        }
    });
    let rate_per_citizen = env.optional("EBOX_API_RATE_PER_CITIZEN", 20.0, |v| {
        v.parse::<f64>()
            .ok()
            .filter(|rate| (0.1..=10_000.0).contains(rate))
            .ok_or_else(|| "must be a number of calls per second from 0.1 to 10000".into())
    });
    let burst_per_citizen = env.optional("EBOX_API_BURST_PER_CITIZEN", 100, |v| {
        parse_in(v, 1..=100_000)
    });
    let concurrency_per_citizen = env.optional("EBOX_API_CONCURRENCY_PER_CITIZEN", 8, |v| {
        parse_in(v, 1..=10_000)
    });
    Api {
        addr,
        base_path,
        rate_per_citizen,
        burst_per_citizen,
        concurrency_per_citizen,
        public_url: match public_url {
            Some(Some(url)) => Some(url),
            Some(None) => addr.map(|addr| format!("http://localhost:{}", addr.port())),
            None => None,
        },
    }
}

/// The identity provider whose tokens the API accepts. Required by the API only, so every
/// variable but the minimum assurance level may be unset.
struct IdentityProvider {
    keys_file: Option<Option<std::path::PathBuf>>,
    issuer: Option<Option<String>>,
    audience: Option<Option<String>>,
    min_acr: Option<AssuranceLevel>,
}

fn read_identity_provider(env: &mut Env) -> IdentityProvider {
    IdentityProvider {
        keys_file: env.optional("EBOX_JWT_KEYS_FILE", None, |v| {
            Ok(Some(std::path::PathBuf::from(v)))
        }),
        issuer: env.optional("EBOX_JWT_ISSUER", None, |v| Ok(Some(v.to_owned()))),
        audience: env.optional("EBOX_JWT_AUDIENCE", None, |v| Ok(Some(v.to_owned()))),
        min_acr: env.optional("EBOX_JWT_MIN_ACR", AssuranceLevel::Substantial, |v| {
            AssuranceLevel::parse(v)
                .ok_or_else(|| "must be substantial or high (or an eIDAS LoA URI)".into())
        }),
    }
}

/// Where else the identity provider's keys may come from, and how long a token may live. A
/// JWKS URL replaces the key file: setting both is a problem.
struct TokenKeys {
    jwks_url: Option<Option<String>>,
    jwks_refresh: Option<std::time::Duration>,
    max_lifetime: Option<std::time::Duration>,
}

fn read_token_keys(env: &mut Env, identity_provider: &IdentityProvider) -> TokenKeys {
    let jwks_url = env.optional("EBOX_JWT_JWKS_URL", None, |v| {
        if domain::registry::webhook_url_allowed(v) {
            Ok(Some(v.to_owned()))
        } else {
            Err("must be an https URL (or http to this machine)".into())
        }
    });
    if let (Some(Some(_)), Some(Some(_))) = (&jwks_url, &identity_provider.keys_file) {
        env.problems.push(
            "EBOX_JWT_KEYS_FILE and EBOX_JWT_JWKS_URL are both set: set one or the other".into(),
        );
    }
    let seconds =
        |range| move |v: &str| parse_in::<u64>(v, range).map(std::time::Duration::from_secs);
    TokenKeys {
        jwks_url,
        jwks_refresh: env.optional(
            "EBOX_JWT_JWKS_REFRESH_SECONDS",
            std::time::Duration::from_secs(3600),
            seconds(60..=86_400),
        ),
        max_lifetime: env.optional(
            "EBOX_JWT_MAX_LIFETIME_SECONDS",
            std::time::Duration::from_secs(3600),
            seconds(60..=86_400),
        ),
    }
}

/// A batch is made of prefetched deliveries, so it cannot be larger than the prefetch. Checked
/// only when both values are valid on their own.
fn check_batch_fits_prefetch(env: &mut Env, limits: &PipelineLimits) {
    if let (Some(prefetch), Some(batch)) = (limits.prefetch, limits.batch_size)
        && usize::from(prefetch) < batch
    {
        env.problems.push(format!(
            "EBOX_BATCH_SIZE ({batch}) cannot exceed EBOX_PREFETCH ({prefetch}): a batch is made of prefetched deliveries"
        ));
    }
}

/// Every `EBOX_PARTNER_<NAME>_SECRET`, set directly or through its
/// `EBOX_PARTNER_<NAME>_SECRET_FILE` (never itself a secret's name), by name; any value that is
/// not blank is accepted.
fn read_partner_secrets(env: &mut Env) -> HashMap<String, String> {
    let vars = env.vars;
    let names: std::collections::BTreeSet<&str> = vars
        .keys()
        .map(|k| k.strip_suffix("_FILE").unwrap_or(k))
        .filter(|k| is_partner_secret_name(k))
        .collect();
    names
        .into_iter()
        .filter_map(|name| match env.lookup(name) {
            Ok(Some(found)) => Some((name.to_owned(), found.value)),
            Ok(None) | Err(Reported) => None,
        })
        .collect()
}

pub use domain::registry::is_partner_secret_name;

struct Env<'a> {
    vars: &'a HashMap<String, String>,
    problems: &'a mut Vec<String>,
}

/// The variables that hold secrets. Each may instead be read from the file its `<NAME>_FILE`
/// variable names (a Kubernetes Secret mounted as files, kept out of the environment), as may
/// every `EBOX_PARTNER_<NAME>_SECRET`. A new secret variable belongs here.
const SECRET_VARIABLES: [&str; 6] = [
    "EBOX_AMQP_URL",
    "EBOX_DATABASE_URL",
    "EBOX_MIGRATION_DATABASE_URL",
    "EBOX_SSIN_HASH_KEY",
    "EBOX_SSIN_HASH_PREVIOUS_KEYS",
    "EBOX_SMTP_URL",
];

fn is_secret(key: &str) -> bool {
    SECRET_VARIABLES.contains(&key) || is_partner_secret_name(key)
}

/// A variable's value, and the `<NAME>_FILE` variable it was read from, if any.
struct Found {
    value: String,
    file_key: Option<String>,
}

impl Found {
    /// How a problem names the variable, so that the operator looks where it was set.
    fn name(&self, key: &str) -> String {
        match &self.file_key {
            Some(file_key) => format!("{key} (read from {file_key})"),
            None => key.to_owned(),
        }
    }
}

/// A problem already recorded in [`Env::problems`].
struct Reported;

impl Env<'_> {
    fn required<T>(
        &mut self,
        key: &str,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Option<T> {
        match self.lookup(key).ok()? {
            None => {
                self.problems.push(format!("{key} is required"));
                None
            }
            Some(found) => self.check(&found.name(key), parse(&found.value)),
        }
    }

    fn optional<T>(
        &mut self,
        key: &str,
        default: T,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Option<T> {
        match self.lookup(key).ok()? {
            None => Some(default),
            Some(found) => self.check(&found.name(key), parse(&found.value)),
        }
    }

    /// A variable's value: from the environment (trimmed; blank counts as unset) or, for a
    /// secret, from the file its `<NAME>_FILE` variable names. Setting both is a problem, as is
    /// a file that cannot be read; either is recorded here.
    fn lookup(&mut self, key: &str) -> Result<Option<Found>, Reported> {
        let vars = self.vars;
        let set = |name: &str| vars.get(name).map(|v| v.trim()).filter(|v| !v.is_empty());
        let direct = set(key).map(|value| Found {
            value: value.to_owned(),
            file_key: None,
        });
        if !is_secret(key) {
            return Ok(direct);
        }
        let file_key = format!("{key}_FILE");
        match (direct, set(&file_key)) {
            (direct, None) => Ok(direct),
            (Some(_), Some(_)) => {
                self.problems.push(format!(
                    "{key} and {file_key} are both set: set one or the other"
                ));
                Err(Reported)
            }
            (None, Some(path)) => match read_secret_file(path) {
                Ok(value) => Ok(Some(Found {
                    value,
                    file_key: Some(file_key),
                })),
                Err(problem) => {
                    self.problems.push(format!("{file_key} {problem}"));
                    Err(Reported)
                }
            },
        }
    }

    fn check<T>(&mut self, key: &str, parsed: Result<T, String>) -> Option<T> {
        parsed
            .map_err(|problem| self.problems.push(format!("{key} {problem}")))
            .ok()
    }
}

/// A secret file's content less one trailing line ending (`\n` or `\r\n`, as `echo` or an
/// editor leaves it); anything else in the file is part of the secret. A problem names the
/// path, never the content.
fn read_secret_file(path: &str) -> Result<String, String> {
    let content = std::fs::read_to_string(path)
        .map_err(|e| format!("names a file that cannot be read ({path}): {e}"))?;
    let value = content
        .strip_suffix("\r\n")
        .or_else(|| content.strip_suffix('\n'))
        .unwrap_or(&content);
    if value.is_empty() {
        return Err(format!("names an empty file ({path})"));
    }
    Ok(value.to_owned())
}

fn parse_in<T>(raw: &str, range: std::ops::RangeInclusive<u64>) -> Result<T, String>
where
    T: TryFrom<u64>,
{
    raw.parse::<u64>()
        .ok()
        .filter(|v| range.contains(v))
        .and_then(|v| T::try_from(v).ok())
        .ok_or_else(|| {
            format!(
                "must be a whole number from {} to {}",
                range.start(),
                range.end()
            )
        })
}

/// A duration written as a whole number and a unit — `90s`, `30m`, `72h`, `3d` — within
/// `range` (in seconds).
fn parse_duration_in(
    raw: &str,
    range: std::ops::RangeInclusive<u64>,
) -> Result<std::time::Duration, String> {
    [("s", 1), ("m", 60), ("h", 3600), ("d", 86_400)]
        .into_iter()
        .find_map(|(unit, scale)| Some((raw.strip_suffix(unit)?, scale)))
        .filter(|(number, _)| !number.is_empty() && number.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|(number, scale)| number.parse::<u64>().ok()?.checked_mul(scale))
        .filter(|seconds| range.contains(seconds))
        .map(std::time::Duration::from_secs)
        .ok_or_else(|| {
            format!(
                "must be a duration like 90s, 30m, 72h or 3d, from {} to {}",
                written(*range.start()),
                written(*range.end())
            )
        })
}

/// `seconds` in the largest unit that divides it, as [`parse_duration_in`] reads it.
fn written(seconds: u64) -> String {
    match seconds {
        0 => "0s".to_owned(),
        s if s % 86_400 == 0 => format!("{}d", s / 86_400),
        s if s % 3600 == 0 => format!("{}h", s / 3600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let errors = Settings::from_vars(vars(&[
            ("EBOX_AMQP_URL", "http://broker"),
            ("EBOX_PREFETCH", "zero"),
            ("EBOX_SSIN_HASH_KEY", "short"),
        ]))
        .expect_err("invalid");
        let text = errors.to_string();
        for key in [
            "EBOX_AMQP_URL",
            "EBOX_DATABASE_URL",
            "EBOX_PREFETCH",
            "EBOX_SSIN_HASH_KEY",
        ] {
            assert!(text.contains(key), "{key} missing from {text}");
        }
    }

    #[test]
    fn defaults_apply_when_only_the_required_variables_are_set() {
        let settings = Settings::from_vars(vars(&[
            ("EBOX_AMQP_URL", "amqp://u:p@localhost:5672/%2f"),
            ("EBOX_DATABASE_URL", "postgres://localhost/ebox"),
            ("EBOX_SSIN_HASH_KEY", &"k".repeat(32)),
        ]))
        .expect("valid");
        assert_eq!(settings.max_message_bytes, 16 * 1024 * 1024);
        assert_eq!(settings.batch_size, 32);
        assert!(!format!("{settings:?}").contains(":p@"));
    }

    #[test]
    fn a_batch_larger_than_the_prefetch_is_refused() {
        let errors = Settings::from_vars(vars(&[
            ("EBOX_AMQP_URL", "amqp://localhost"),
            ("EBOX_DATABASE_URL", "postgres://localhost/ebox"),
            ("EBOX_SSIN_HASH_KEY", &"k".repeat(32)),
            ("EBOX_PREFETCH", "8"),
            ("EBOX_BATCH_SIZE", "16"),
        ]))
        .expect_err("invalid");
        assert!(errors.to_string().contains("EBOX_BATCH_SIZE"));
    }

    /// The required variables, valid; each test adds or overrides the variables it is about.
    fn with(overrides: &[(&str, &str)]) -> Vec<(String, String)> {
        let key = "k".repeat(32);
        let mut all: HashMap<&str, &str> = HashMap::from([
            ("EBOX_AMQP_URL", "amqp://localhost"),
            ("EBOX_DATABASE_URL", "postgres://localhost/ebox"),
            ("EBOX_SSIN_HASH_KEY", key.as_str()),
        ]);
        all.extend(overrides.iter().copied());
        all.into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
    }

    #[test]
    fn every_invalid_variable_is_named_in_its_problem() {
        let rows = [
            ("EBOX_AMQP_URL", "", "is required"),
            (
                "EBOX_AMQP_URL",
                "http://broker",
                "must start with amqp:// or amqps://",
            ),
            ("EBOX_DATABASE_URL", " ", "is required"),
            (
                "EBOX_DATABASE_URL",
                "mysql://localhost/ebox",
                "must start with postgres:// or postgresql://",
            ),
            (
                "EBOX_MIGRATION_DATABASE_URL",
                "localhost/ebox",
                "must start with postgres:// or postgresql://",
            ),
            ("EBOX_SSIN_HASH_KEY", "", "is required"),
            (
                "EBOX_SSIN_HASH_KEY",
                "short",
                "must be a secret of at least 32 characters",
            ),
            (
                "EBOX_DATABASE_MAX_CONNECTIONS",
                "0",
                "must be a whole number from 1 to 1000",
            ),
            (
                "EBOX_MAX_MESSAGE_BYTES",
                "1023",
                "must be a whole number from 1024 to 134217728",
            ),
            (
                "EBOX_PREFETCH",
                "zero",
                "must be a whole number from 1 to 1000",
            ),
            (
                "EBOX_BATCH_SIZE",
                "1001",
                "must be a whole number from 1 to 1000",
            ),
            (
                "EBOX_METRICS_ADDR",
                "localhost:9464",
                "must be an address like 0.0.0.0:9464",
            ),
            ("EBOX_LOG_FORMAT", "yaml", "must be json or text"),
            (
                "EBOX_SMTP_URL",
                "http://relay",
                "must start with smtp:// or smtps://",
            ),
            ("EBOX_PORTAL_URL", "www.myebox.be", "must be an http(s) URL"),
            (
                "EBOX_NOTIFY_RETRY_FOR",
                "31d",
                "must be a duration like 90s, 30m, 72h or 3d, from 1m to 30d",
            ),
            (
                "EBOX_NOTIFY_RETRY_FOR",
                "72",
                "must be a duration like 90s, 30m, 72h or 3d, from 1m to 30d",
            ),
            (
                "EBOX_RETENTION_INTERVAL_SECONDS",
                "86401",
                "must be a whole number from 1 to 86400",
            ),
            (
                "EBOX_STUCK_AFTER_SECONDS",
                "5",
                "must be a whole number from 10 to 604800",
            ),
            (
                "EBOX_STALL_AFTER_SECONDS",
                "5",
                "must be a whole number from 30 to 86400",
            ),
            (
                "EBOX_REMINDER_AFTER_DAYS",
                "0",
                "must be a whole number from 1 to 365",
            ),
            (
                "EBOX_REMINDER_AFTER_DAYS",
                "15d",
                "must be a whole number from 1 to 365",
            ),
            (
                "EBOX_EXPIRATION_ALERT_DAYS",
                "366",
                "must be a whole number from 1 to 365",
            ),
            (
                "EBOX_API_ADDR",
                ":8080",
                "must be an address like 0.0.0.0:8080",
            ),
            (
                "EBOX_API_BASE_PATH",
                "ebox-api",
                "must be a path starting with /",
            ),
            (
                "EBOX_API_BASE_PATH",
                "/ebox api",
                "must be a path starting with /",
            ),
            (
                "EBOX_API_PUBLIC_URL",
                "api.example",
                "must be an http(s) URL",
            ),
            (
                "EBOX_JWT_MIN_ACR",
                "medium",
                "must be substantial or high (or an eIDAS LoA URI)",
            ),
        ];
        for (key, value, problem) in rows {
            let errors = Settings::from_vars(with(&[(key, value)])).expect_err(key);
            assert_eq!(errors.0, [format!("{key} {problem}")], "{key}={value:?}");
        }
    }

    #[test]
    fn a_batch_larger_than_the_default_prefetch_names_both_variables() {
        let errors = Settings::from_vars(with(&[("EBOX_BATCH_SIZE", "65")])).expect_err("invalid");
        assert_eq!(
            errors.0,
            [
                "EBOX_BATCH_SIZE (65) cannot exceed EBOX_PREFETCH (64): a batch is made of prefetched deliveries"
            ]
        );
    }

    #[test]
    fn problems_are_listed_in_the_order_the_variables_are_read() {
        let errors = Settings::from_vars(vars(&[
            ("EBOX_AMQP_URL", "http://broker"),
            ("EBOX_SSIN_HASH_KEY", "short"),
            ("EBOX_DATABASE_MAX_CONNECTIONS", "0"),
            ("EBOX_MAX_MESSAGE_BYTES", "0"),
            ("EBOX_PREFETCH", "8"),
            ("EBOX_BATCH_SIZE", "16"),
            ("EBOX_METRICS_ADDR", "x"),
            ("EBOX_LOG_FORMAT", "x"),
            ("EBOX_SMTP_URL", "x"),
            ("EBOX_PORTAL_URL", "x"),
            ("EBOX_NOTIFY_RETRY_FOR", "0"),
            ("EBOX_RETENTION_INTERVAL_SECONDS", "0"),
            ("EBOX_API_ADDR", "x"),
            ("EBOX_API_BASE_PATH", "x"),
            ("EBOX_API_PUBLIC_URL", "x"),
            ("EBOX_JWT_MIN_ACR", "x"),
        ]))
        .expect_err("invalid");
        let keys: Vec<&str> = errors
            .0
            .iter()
            .map(|problem| problem.split(' ').next().unwrap_or_default())
            .collect();
        assert_eq!(
            keys,
            [
                "EBOX_AMQP_URL",
                "EBOX_DATABASE_URL",
                "EBOX_SSIN_HASH_KEY",
                "EBOX_DATABASE_MAX_CONNECTIONS",
                "EBOX_MAX_MESSAGE_BYTES",
                "EBOX_METRICS_ADDR",
                "EBOX_LOG_FORMAT",
                "EBOX_SMTP_URL",
                "EBOX_PORTAL_URL",
                "EBOX_NOTIFY_RETRY_FOR",
                "EBOX_RETENTION_INTERVAL_SECONDS",
                "EBOX_API_ADDR",
                "EBOX_API_BASE_PATH",
                "EBOX_API_PUBLIC_URL",
                "EBOX_JWT_MIN_ACR",
                "EBOX_BATCH_SIZE",
            ]
        );
    }

    #[test]
    fn every_documented_default_applies() {
        let settings = Settings::from_vars(with(&[])).expect("valid");
        assert_eq!(settings.migration_database_url, settings.database_url);
        assert_eq!(settings.database_max_connections, 10);
        assert_eq!(settings.max_message_bytes, 16_777_216);
        assert_eq!(settings.prefetch, 64);
        assert_eq!(settings.batch_size, 32);
        assert_eq!(settings.metrics_addr.to_string(), "0.0.0.0:9464");
        assert_eq!(settings.log_filter, "info");
        assert_eq!(settings.log_format, LogFormat::Json);
        assert_eq!(settings.smtp_url, None);
        assert_eq!(settings.mail_from, "eBox <noreply@ebox.localhost>");
        assert_eq!(settings.portal_url, "https://www.myebox.be");
        assert_eq!(
            settings.notify_retry_for,
            std::time::Duration::from_secs(72 * 3600)
        );
        assert_eq!(settings.provider_id, "ebox-document-provider");
        assert_eq!(
            settings.retention_interval,
            std::time::Duration::from_secs(60)
        );
        assert_eq!(settings.stuck_after, std::time::Duration::from_secs(900));
        assert_eq!(settings.stall_after, std::time::Duration::from_secs(300));
        assert_eq!(
            settings.reminder_after,
            std::time::Duration::from_secs(15 * 86_400)
        );
        assert_eq!(
            settings.expiration_alert_before,
            std::time::Duration::from_secs(7 * 86_400)
        );
        assert_eq!(settings.api_addr.to_string(), "0.0.0.0:8080");
        assert_eq!(settings.api_base_path, "/");
        assert_eq!(settings.api_public_url, "http://localhost:8080");
        assert_eq!(settings.jwt_keys_file, None);
        assert_eq!(settings.jwt_issuer, None);
        assert_eq!(settings.jwt_audience, None);
        assert_eq!(settings.jwt_min_acr, AssuranceLevel::Substantial);
        assert_eq!(settings.jwt_jwks_url, None);
        assert_eq!(
            settings.jwt_jwks_refresh,
            std::time::Duration::from_secs(3600)
        );
        assert_eq!(
            settings.jwt_max_lifetime,
            std::time::Duration::from_secs(3600)
        );
        assert!(settings.partner_secrets.is_empty());
    }

    #[test]
    fn a_jwks_url_is_https_or_local_and_replaces_the_key_file() {
        let url = |value: &str| {
            Settings::from_vars(with(&[("EBOX_JWT_JWKS_URL", value)]))
                .map(|s| s.jwt_jwks_url)
                .map_err(|e| e.to_string())
        };
        assert_eq!(
            url("https://idp.example/jwks"),
            Ok(Some("https://idp.example/jwks".to_owned()))
        );
        assert!(url("http://127.0.0.1:8081/jwks").is_ok());
        assert!(
            url("http://idp.example/jwks")
                .is_err_and(|e| e.contains("EBOX_JWT_JWKS_URL must be an https URL"))
        );
        let both = Settings::from_vars(with(&[
            ("EBOX_JWT_JWKS_URL", "https://idp.example/jwks"),
            ("EBOX_JWT_KEYS_FILE", "/keys/jwks.json"),
        ]))
        .map_err(|e| e.to_string());
        assert!(
            both.is_err_and(|e| e.contains("EBOX_JWT_KEYS_FILE and EBOX_JWT_JWKS_URL are both set")),
        );
        let lifetime = Settings::from_vars(with(&[
            ("EBOX_JWT_MAX_LIFETIME_SECONDS", "600"),
            ("EBOX_JWT_JWKS_REFRESH_SECONDS", "300"),
        ]))
        .expect("valid");
        assert_eq!(
            lifetime.jwt_max_lifetime,
            std::time::Duration::from_secs(600)
        );
        assert_eq!(
            lifetime.jwt_jwks_refresh,
            std::time::Duration::from_secs(300)
        );
    }

    #[test]
    fn the_notification_retry_window_is_a_number_with_a_unit() {
        let hours = |h: u64| std::time::Duration::from_secs(h * 3600);
        for (raw, expected) in [
            ("90s", std::time::Duration::from_secs(90)),
            ("30m", std::time::Duration::from_secs(30 * 60)),
            ("72h", hours(72)),
            ("3d", hours(72)),
            ("1m", std::time::Duration::from_secs(60)),
            ("30d", hours(30 * 24)),
        ] {
            let settings = Settings::from_vars(with(&[("EBOX_NOTIFY_RETRY_FOR", raw)])).expect(raw);
            assert_eq!(settings.notify_retry_for, expected, "{raw}");
        }
        for raw in [
            "59s",
            "721h",
            "72",
            "h",
            "1.5h",
            "-1h",
            "+1h",
            "72H",
            "72 h",
            "3w",
            "é",
            "99999999999999999999d",
        ] {
            let errors =
                Settings::from_vars(with(&[("EBOX_NOTIFY_RETRY_FOR", raw)])).expect_err(raw);
            assert_eq!(errors.0.len(), 1, "{raw}: {errors}");
        }
    }

    #[test]
    fn the_reminder_periods_are_whole_days_from_1_to_365() {
        let days = |d: u64| std::time::Duration::from_secs(d * 86_400);
        for (after, alert, expected_after, expected_alert) in [
            ("1", "1", days(1), days(1)),
            ("30", "3", days(30), days(3)),
            ("365", "365", days(365), days(365)),
        ] {
            let settings = Settings::from_vars(with(&[
                ("EBOX_REMINDER_AFTER_DAYS", after),
                ("EBOX_EXPIRATION_ALERT_DAYS", alert),
            ]))
            .expect(after);
            assert_eq!(settings.reminder_after, expected_after, "{after}");
            assert_eq!(settings.expiration_alert_before, expected_alert, "{alert}");
        }
        for raw in ["0", "366", "-1", "1.5", "15d", "x"] {
            for key in ["EBOX_REMINDER_AFTER_DAYS", "EBOX_EXPIRATION_ALERT_DAYS"] {
                let errors = Settings::from_vars(with(&[(key, raw)])).expect_err(raw);
                assert_eq!(
                    errors.0,
                    [format!("{key} must be a whole number from 1 to 365")],
                    "{key}={raw}"
                );
            }
        }
    }

    #[test]
    fn sent_status_callbacks_are_kept_30_days_unless_told_from_1_to_3650() {
        let days = |d: u64| std::time::Duration::from_secs(d * 86_400);
        let settings = Settings::from_vars(with(&[])).expect("the default");
        assert_eq!(settings.status_callback_retention, days(30));
        for (raw, expected) in [("1", days(1)), ("3650", days(3650))] {
            let settings =
                Settings::from_vars(with(&[("EBOX_STATUS_CALLBACK_RETENTION_DAYS", raw)]))
                    .expect(raw);
            assert_eq!(settings.status_callback_retention, expected, "{raw}");
        }
        for raw in ["0", "3651", "30d", "x"] {
            let errors = Settings::from_vars(with(&[("EBOX_STATUS_CALLBACK_RETENTION_DAYS", raw)]))
                .expect_err(raw);
            assert_eq!(
                errors.0,
                ["EBOX_STATUS_CALLBACK_RETENTION_DAYS must be a whole number from 1 to 3650"],
                "{raw}"
            );
        }
    }

    #[test]
    fn the_api_paths_are_normalised_and_the_public_url_follows_the_api_port() {
        let settings = Settings::from_vars(with(&[
            ("EBOX_API_ADDR", "127.0.0.1:9000"),
            ("EBOX_API_BASE_PATH", "/ebox-api/"),
        ]))
        .expect("valid");
        assert_eq!(settings.api_base_path, "/ebox-api");
        assert_eq!(settings.api_public_url, "http://localhost:9000");
        let settings =
            Settings::from_vars(with(&[("EBOX_API_PUBLIC_URL", "https://api.example/")]))
                .expect("valid");
        assert_eq!(settings.api_public_url, "https://api.example");
    }

    #[test]
    fn only_well_named_partner_secrets_are_kept_and_none_is_shown_in_debug() {
        let settings = Settings::from_vars(with(&[
            ("EBOX_PARTNER_MYBOX_SECRET", "s3cr3t-value"),
            ("EBOX_PARTNER_mybox_SECRET", "ignored"),
            ("EBOX_PARTNER__SECRET", "ignored"),
        ]))
        .expect("valid");
        let names: Vec<&String> = settings.partner_secrets.keys().collect();
        assert_eq!(names, ["EBOX_PARTNER_MYBOX_SECRET"]);
        let debug = format!("{settings:?}");
        assert!(debug.contains("EBOX_PARTNER_MYBOX_SECRET"), "{debug}");
        assert!(!debug.contains("s3cr3t-value"), "{debug}");
        assert!(!debug.contains(&"k".repeat(32)), "{debug}");
    }

    /// A file in the temporary directory, with a name no other test uses, removed when dropped.
    struct SecretFile(std::path::PathBuf);

    impl SecretFile {
        fn with(content: &str) -> Self {
            static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
            let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let path = std::env::temp_dir().join(format!(
                "ebox-config-test-{}-{n}.secret",
                std::process::id()
            ));
            std::fs::write(&path, content).expect("write the secret file");
            Self(path)
        }

        fn path(&self) -> &str {
            self.0.to_str().expect("a UTF-8 temporary path")
        }
    }

    impl Drop for SecretFile {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    #[test]
    fn the_migrations_may_run_as_another_role_than_the_services() {
        let settings = Settings::from_vars(with(&[
            ("EBOX_DATABASE_URL", "postgres://ebox_app:pw@db/ebox"),
            (
                "EBOX_MIGRATION_DATABASE_URL",
                "postgres://ebox_owner:owner-pw@db/ebox",
            ),
        ]))
        .expect("valid");
        assert_eq!(settings.database_url, "postgres://ebox_app:pw@db/ebox");
        assert_eq!(
            settings.migration_database_url,
            "postgres://ebox_owner:owner-pw@db/ebox"
        );
        assert!(!format!("{settings:?}").contains("owner-pw"));

        let file = SecretFile::with("postgres://ebox_owner:owner-pw@db/ebox\n");
        let settings =
            Settings::from_vars(with(&[("EBOX_MIGRATION_DATABASE_URL_FILE", file.path())]))
                .expect("valid");
        assert_eq!(
            settings.migration_database_url,
            "postgres://ebox_owner:owner-pw@db/ebox"
        );
    }

    /// The required variables, each read from a file instead of the environment.
    #[test]
    fn every_secret_can_be_read_from_the_file_its_file_variable_names() {
        let key = "f".repeat(32);
        let amqp = SecretFile::with("amqps://ebox:pw@broker:5671/ebox\n");
        let database = SecretFile::with("postgres://ebox:pw@db/ebox\r\n");
        let ssin_hash_key = SecretFile::with(&format!("{key}\n"));
        let smtp = SecretFile::with("smtps://ebox:pw@relay:465");
        let settings = Settings::from_vars(vars(&[
            ("EBOX_AMQP_URL_FILE", amqp.path()),
            ("EBOX_DATABASE_URL_FILE", database.path()),
            ("EBOX_SSIN_HASH_KEY_FILE", ssin_hash_key.path()),
            ("EBOX_SMTP_URL_FILE", smtp.path()),
        ]))
        .expect("valid");
        assert_eq!(settings.amqp_url, "amqps://ebox:pw@broker:5671/ebox");
        assert_eq!(settings.database_url, "postgres://ebox:pw@db/ebox");
        assert_eq!(settings.ssin_hash_key, key.as_bytes());
        assert_eq!(
            settings.smtp_url.as_deref(),
            Some("smtps://ebox:pw@relay:465")
        );
    }

    #[test]
    fn only_one_trailing_line_ending_is_trimmed_from_a_secret_file() {
        let key = "k".repeat(32);
        for (content, expected) in [
            (format!("{key}\n"), key.clone()),
            (format!("{key}\r\n"), key.clone()),
            (key.clone(), key.clone()),
            (format!("{key}\n\n"), format!("{key}\n")),
            (format!(" {key} \n"), format!(" {key} ")),
        ] {
            let file = SecretFile::with(&content);
            let settings = Settings::from_vars(with(&[
                ("EBOX_SSIN_HASH_KEY", ""),
                ("EBOX_SSIN_HASH_KEY_FILE", file.path()),
            ]))
            .expect(&content);
            assert_eq!(settings.ssin_hash_key, expected.as_bytes(), "{content:?}");
        }
    }

    #[test]
    fn a_partner_secret_can_be_read_from_a_file() {
        let file = SecretFile::with("partner-s3cr3t\n");
        let settings = Settings::from_vars(with(&[
            ("EBOX_PARTNER_MYBOX_SECRET_FILE", file.path()),
            ("EBOX_PARTNER_OTHER_SECRET", "other-s3cr3t"),
        ]))
        .expect("valid");
        let mut secrets: Vec<(&str, &str)> = settings
            .partner_secrets
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        secrets.sort();
        assert_eq!(
            secrets,
            [
                ("EBOX_PARTNER_MYBOX_SECRET", "partner-s3cr3t"),
                ("EBOX_PARTNER_OTHER_SECRET", "other-s3cr3t"),
            ]
        );
        assert!(!is_partner_secret_name("EBOX_PARTNER_MYBOX_SECRET_FILE"));
    }

    /// Each secret set both ways, or naming a file that cannot be read or is empty: one
    /// problem, naming the variables and the path, never the content.
    #[test]
    fn every_secret_file_problem_names_the_variable_and_the_path() {
        let empty = SecretFile::with("\n");
        let missing = std::env::temp_dir().join(format!(
            "ebox-config-test-{}-missing.secret",
            std::process::id()
        ));
        let missing = missing.to_str().expect("a UTF-8 temporary path");
        let directory = std::env::temp_dir();
        let directory = directory.to_str().expect("a UTF-8 temporary path");
        let invalid = SecretFile::with("http://user:hunter2@broker\n");
        let both = SecretFile::with("s3cr3t-from-file\n");
        let rows: Vec<(&str, &str, String)> = vec![
            (
                "EBOX_AMQP_URL",
                both.path(),
                "EBOX_AMQP_URL and EBOX_AMQP_URL_FILE are both set: set one or the other".into(),
            ),
            (
                "EBOX_DATABASE_URL",
                both.path(),
                "EBOX_DATABASE_URL and EBOX_DATABASE_URL_FILE are both set: set one or the other"
                    .into(),
            ),
            (
                "EBOX_SSIN_HASH_KEY",
                both.path(),
                "EBOX_SSIN_HASH_KEY and EBOX_SSIN_HASH_KEY_FILE are both set: set one or the other"
                    .into(),
            ),
            (
                "EBOX_DATABASE_URL",
                missing,
                format!(
                    "EBOX_DATABASE_URL_FILE names a file that cannot be read ({missing}): No such file or directory (os error 2)"
                ),
            ),
            (
                "EBOX_SSIN_HASH_KEY",
                directory,
                format!(
                    "EBOX_SSIN_HASH_KEY_FILE names a file that cannot be read ({directory}): Is a directory (os error 21)"
                ),
            ),
            (
                "EBOX_AMQP_URL",
                empty.path(),
                format!("EBOX_AMQP_URL_FILE names an empty file ({})", empty.path()),
            ),
            (
                "EBOX_AMQP_URL",
                invalid.path(),
                "EBOX_AMQP_URL (read from EBOX_AMQP_URL_FILE) must start with amqp:// or amqps://"
                    .into(),
            ),
        ];
        for (key, path, problem) in rows {
            let file_key = format!("{key}_FILE");
            let overrides: Vec<(&str, &str)> = if problem.contains("both set") {
                vec![(file_key.as_str(), path)]
            } else {
                vec![(key, ""), (file_key.as_str(), path)]
            };
            let errors = Settings::from_vars(with(&overrides)).expect_err(&file_key);
            assert_eq!(errors.0, [problem], "{file_key}={path}");
            assert!(!errors.to_string().contains("s3cr3t"), "{errors}");
            assert!(!errors.to_string().contains("hunter2"), "{errors}");
        }
        let errors = Settings::from_vars(with(&[
            ("EBOX_SMTP_URL", "smtp://relay"),
            ("EBOX_SMTP_URL_FILE", both.path()),
            ("EBOX_PARTNER_MYBOX_SECRET", "s3cr3t"),
            ("EBOX_PARTNER_MYBOX_SECRET_FILE", both.path()),
        ]))
        .expect_err("both set");
        assert_eq!(
            errors.0,
            [
                "EBOX_SMTP_URL and EBOX_SMTP_URL_FILE are both set: set one or the other",
                "EBOX_PARTNER_MYBOX_SECRET and EBOX_PARTNER_MYBOX_SECRET_FILE are both set: set one or the other",
            ]
        );
        let errors = Settings::from_vars(with(&[("EBOX_PARTNER_MYBOX_SECRET_FILE", missing)]))
            .expect_err("missing");
        assert_eq!(
            errors.0,
            [format!(
                "EBOX_PARTNER_MYBOX_SECRET_FILE names a file that cannot be read ({missing}): No such file or directory (os error 2)"
            )]
        );
    }

    #[test]
    fn secret_file_problems_are_reported_with_every_other_problem() {
        let errors = Settings::from_vars(vars(&[
            ("EBOX_AMQP_URL", "amqp://localhost"),
            ("EBOX_AMQP_URL_FILE", "/nonexistent/amqp-url"),
            ("EBOX_DATABASE_URL_FILE", "/nonexistent/database-url"),
            ("EBOX_PREFETCH", "zero"),
        ]))
        .expect_err("invalid");
        let keys: Vec<&str> = errors
            .0
            .iter()
            .map(|problem| problem.split(' ').next().unwrap_or_default())
            .collect();
        assert_eq!(
            keys,
            [
                "EBOX_AMQP_URL",
                "EBOX_DATABASE_URL_FILE",
                "EBOX_SSIN_HASH_KEY",
                "EBOX_PREFETCH",
            ]
        );
    }

    #[test]
    fn a_file_variable_is_read_for_secrets_only() {
        let file = SecretFile::with("128\n");
        let settings =
            Settings::from_vars(with(&[("EBOX_PREFETCH_FILE", file.path())])).expect("valid");
        assert_eq!(settings.prefetch, 64);
    }

    /// A PEM-looking file for the broker TLS tests, removed when dropped.
    struct PemFile(std::path::PathBuf);

    impl PemFile {
        fn with(name: &str, content: &str) -> Self {
            let path = std::env::temp_dir()
                .join(format!("ebox-config-tls-{}-{name}.pem", std::process::id()));
            std::fs::write(&path, content).expect("write the PEM file");
            Self(path)
        }

        fn path(&self) -> &str {
            self.0.to_str().expect("a UTF-8 temporary path")
        }
    }

    impl Drop for PemFile {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    const CERTIFICATE: &str = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
    const KEY: &str = "-----BEGIN PRIVATE KEY-----\nMIIB\n-----END PRIVATE KEY-----\n";

    #[test]
    fn broker_tls_trusts_the_system_roots_unless_a_ca_file_is_given() {
        let settings = Settings::from_vars(with(&[])).expect("valid");
        assert_eq!(settings.amqp_tls, AmqpTls::default());
        let ca = PemFile::with("ca", CERTIFICATE);
        let cert = PemFile::with("client-cert", CERTIFICATE);
        let key = PemFile::with("client-key", KEY);
        let settings = Settings::from_vars(with(&[
            ("EBOX_AMQP_URL", "amqps://ebox:pw@broker/ebox"),
            ("EBOX_AMQP_CA_FILE", ca.path()),
            ("EBOX_AMQP_CLIENT_CERT_FILE", cert.path()),
            ("EBOX_AMQP_CLIENT_KEY_FILE", key.path()),
        ]))
        .expect("valid");
        assert_eq!(
            settings.amqp_tls,
            AmqpTls {
                ca_file: Some(ca.0.clone()),
                client_certificate: Some(ClientCertificate {
                    cert_file: cert.0.clone(),
                    key_file: key.0.clone(),
                }),
            }
        );
    }

    #[test]
    fn every_broker_tls_problem_names_its_variables() {
        let ca = PemFile::with("problem-ca", CERTIFICATE);
        let key = PemFile::with("problem-key", KEY);
        let missing = std::env::temp_dir().join(format!(
            "ebox-config-tls-{}-missing.pem",
            std::process::id()
        ));
        let missing = missing.to_str().expect("a UTF-8 temporary path");
        let tls_url = ("EBOX_AMQP_URL", "amqps://ebox:pw@broker/ebox");
        let rows: Vec<(Vec<(&str, &str)>, String)> = vec![
            (
                vec![tls_url, ("EBOX_AMQP_CA_FILE", key.path())],
                format!(
                    "EBOX_AMQP_CA_FILE names a file without a certificate in PEM ({})",
                    key.path()
                ),
            ),
            (
                vec![tls_url, ("EBOX_AMQP_CA_FILE", missing)],
                format!(
                    "EBOX_AMQP_CA_FILE names a file that cannot be read ({missing}): No such file or directory (os error 2)"
                ),
            ),
            (
                vec![
                    tls_url,
                    ("EBOX_AMQP_CLIENT_CERT_FILE", ca.path()),
                    ("EBOX_AMQP_CLIENT_KEY_FILE", ca.path()),
                ],
                format!(
                    "EBOX_AMQP_CLIENT_KEY_FILE names a file without a private key in PEM ({})",
                    ca.path()
                ),
            ),
            (
                vec![tls_url, ("EBOX_AMQP_CLIENT_KEY_FILE", key.path())],
                "EBOX_AMQP_CLIENT_CERT_FILE and EBOX_AMQP_CLIENT_KEY_FILE go together: set both for mutual TLS, or neither".to_owned(),
            ),
            (
                vec![("EBOX_AMQP_CA_FILE", ca.path())],
                "EBOX_AMQP_CA_FILE is set but EBOX_AMQP_URL is not amqps://: the connection would not use TLS".to_owned(),
            ),
            (
                vec![
                    ("EBOX_AMQP_CLIENT_CERT_FILE", ca.path()),
                    ("EBOX_AMQP_CLIENT_KEY_FILE", key.path()),
                ],
                "EBOX_AMQP_CLIENT_CERT_FILE and EBOX_AMQP_CLIENT_KEY_FILE are set but EBOX_AMQP_URL is not amqps://: the connection would not use TLS".to_owned(),
            ),
        ];
        for (overrides, problem) in rows {
            let errors = Settings::from_vars(with(&overrides)).expect_err(&problem);
            assert_eq!(errors.0, [problem]);
        }
    }

    #[test]
    fn passwords_are_redacted_from_urls() {
        assert_eq!(
            redact_url("amqp://onem:secret@host:5672/%2f"),
            "amqp://onem:***@host:5672/%2f"
        );
        assert_eq!(redact_url("postgres://host/db"), "postgres://host/db");
    }
    #[test]
    fn intakes_prefetch_fits_the_delivery_budget() {
        let cases = [
            // (prefetch, max message bytes, budget, intake's prefetch)
            (64, 16 * 1024 * 1024, 64 * 1024 * 1024, 4),
            (64, 1024 * 1024, 64 * 1024 * 1024, 64),
            (8, 1024 * 1024, 64 * 1024 * 1024, 8),
            (64, 128 * 1024 * 1024, 64 * 1024 * 1024, 1),
        ];
        for (prefetch, max, budget, expected) in cases {
            let settings = Settings::from_vars(
                vec![
                    ("EBOX_AMQP_URL", "amqp://localhost".to_owned()),
                    ("EBOX_DATABASE_URL", "postgres://localhost/ebox".to_owned()),
                    ("EBOX_SSIN_HASH_KEY", "k".repeat(32)),
                    ("EBOX_PREFETCH", prefetch.to_string()),
                    ("EBOX_BATCH_SIZE", "1".to_owned()),
                    ("EBOX_MAX_MESSAGE_BYTES", max.to_string()),
                    ("EBOX_DELIVERY_BUDGET_BYTES", budget.to_string()),
                ]
                .into_iter()
                .map(|(key, value)| (key.to_owned(), value)),
            )
            .expect("valid settings");
            assert_eq!(
                settings.intake_prefetch(),
                expected,
                "{prefetch} {max} {budget}"
            );
        }
    }

    #[test]
    fn the_event_engine_is_optional_and_each_of_its_problems_is_named() {
        let settings = Settings::from_vars(with(&[])).expect("valid");
        assert_eq!(
            settings.event_engine,
            EventEngine {
                url: None,
                client_id: None,
                token_file: None,
                batch_size: 100,
            },
            "unset: no relay runs"
        );
        let token = SecretFile::with("a-token\n");
        let empty = SecretFile::with("");
        let rows = [
            (
                "EBOX_EVENT_ENGINE_URL",
                "http://events.example/ebox/citizen/document/events",
                "must be an https URL (or http to this machine)",
            ),
            (
                "EBOX_EVENT_ENGINE_URL",
                "events.example",
                "must be an https URL (or http to this machine)",
            ),
            (
                "EBOX_EVENT_ENGINE_CLIENT_ID",
                "ebox provider",
                "must be a client id without spaces",
            ),
            (
                "EBOX_EVENT_ENGINE_TOKEN_FILE",
                "/nonexistent/ebox-token",
                "names a file that cannot be read (/nonexistent/ebox-token)",
            ),
            (
                "EBOX_EVENT_ENGINE_TOKEN_FILE",
                empty.path(),
                "names an empty file",
            ),
            (
                "EBOX_EVENT_ENGINE_BATCH_SIZE",
                "1001",
                "must be a whole number from 1 to 1000",
            ),
        ];
        for (key, value, problem) in rows {
            let errors = Settings::from_vars(with(&[(key, value)])).expect_err(key);
            assert_eq!(errors.0.len(), 1, "{key}={value:?}: {errors}");
            assert!(
                errors.0[0].starts_with(&format!("{key} {problem}")),
                "{key}={value:?}: {errors}"
            );
        }
        let settings = Settings::from_vars(with(&[
            (
                "EBOX_EVENT_ENGINE_URL",
                "https://events.example/ebox/citizen/document/events",
            ),
            ("EBOX_EVENT_ENGINE_CLIENT_ID", "ebox-provider"),
            ("EBOX_EVENT_ENGINE_TOKEN_FILE", token.path()),
            ("EBOX_EVENT_ENGINE_BATCH_SIZE", "20"),
        ]))
        .expect("valid");
        assert_eq!(
            settings.event_engine,
            EventEngine {
                url: Some("https://events.example/ebox/citizen/document/events".into()),
                client_id: Some("ebox-provider".into()),
                token_file: Some(token.path().into()),
                batch_size: 20,
            }
        );
    }
    #[test]
    fn traces_are_exported_only_when_an_otlp_endpoint_is_set() {
        let traces = |overrides: &[(&str, &str)]| {
            Settings::from_vars(with(overrides)).expect("valid").traces
        };
        assert_eq!(traces(&[]), None, "silent by default");
        assert_eq!(
            traces(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318/")]),
            Some(TraceExport {
                endpoint: "http://collector:4318/v1/traces".into(),
                protocol: OtlpProtocol::HttpProtobuf,
                service_name: None,
            })
        );
        assert_eq!(
            traces(&[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318"),
                (
                    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                    "https://otlp.example/traces"
                ),
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
                ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/json"),
                (
                    "OTEL_EXPORTER_OTLP_HEADERS",
                    "authorization=Bearer%20x,tenant=ebox"
                ),
                ("OTEL_SERVICE_NAME", "ebox-blue"),
            ]),
            Some(TraceExport {
                endpoint: "https://otlp.example/traces".into(),
                protocol: OtlpProtocol::HttpJson,
                service_name: Some("ebox-blue".into()),
            }),
            "the _TRACES_ forms win"
        );
        assert_eq!(
            traces(&[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318"),
                ("OTEL_SDK_DISABLED", "TRUE"),
            ]),
            None
        );
    }

    #[test]
    fn every_trace_export_problem_names_its_variable() {
        let rows = [
            (
                "OTEL_EXPORTER_OTLP_ENDPOINT",
                "collector:4318",
                "must be an http(s) URL",
            ),
            (
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                "grpc://collector:4317",
                "must be an http(s) URL",
            ),
            (
                "OTEL_EXPORTER_OTLP_PROTOCOL",
                "grpc",
                "grpc is not built in",
            ),
            (
                "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
                "thrift",
                "must be http/protobuf or http/json",
            ),
            (
                "OTEL_EXPORTER_OTLP_HEADERS",
                "no-equals-sign",
                "must be key=value pairs",
            ),
            (
                "OTEL_EXPORTER_OTLP_TIMEOUT",
                "10s",
                "must be a whole number from 1 to 600000",
            ),
            ("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip", "must be none"),
            ("OTEL_SDK_DISABLED", "yes", "must be true or false"),
        ];
        for (key, value, problem) in rows {
            let errors = Settings::from_vars(with(&[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318"),
                (key, value),
            ]))
            .expect_err(key);
            assert_eq!(errors.0.len(), 1, "{key}={value:?}: {errors}");
            assert!(
                errors.0[0].starts_with(&format!("{key} {problem}")),
                "{key}={value:?}: {errors}"
            );
        }
    }

    #[test]
    fn the_trace_endpoints_password_is_not_shown_in_debug() {
        let settings = Settings::from_vars(with(&[(
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "https://ebox:hunter2@otlp.example",
        )]))
        .expect("valid");
        let shown = format!("{settings:?}");
        assert!(shown.contains("otlp.example/v1/traces"), "{shown}");
        assert!(!shown.contains("hunter2"), "{shown}");
    }
}
