//! Settings: every knob is an environment variable with the `EBOX_` prefix, parsed into typed
//! settings at start-up. Every problem is reported at once, then the process exits non-zero.
//!
//! The README's operations guide lists the same variables; keep the two in step.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;

#[derive(Clone)]
pub struct Settings {
    /// AMQP 0-9-1 URL of the broker, with the service's own user and vhost.
    pub amqp_url: String,
    /// PostgreSQL URL.
    pub database_url: String,
    /// Largest database pool per process.
    pub database_max_connections: u32,
    /// Secret key of the keyed hash (HMAC-SHA256) that stands for a national number in the
    /// audit trail and in searchable metadata. Changing it breaks searches over older records.
    pub ssin_hash_key: Vec<u8>,
    /// Largest message body intake accepts; larger ones are rejected with `TOO_LARGE`.
    pub max_message_bytes: usize,
    /// Unacknowledged deliveries the broker may push to one consumer.
    pub prefetch: u16,
    /// Deliveries a stage processes in one database transaction, at most.
    pub batch_size: usize,
    /// Where `/metrics`, `/livez` and `/readyz` are served.
    pub metrics_addr: SocketAddr,
    /// `tracing` filter, e.g. `info` or `info,queues=debug`.
    pub log_filter: String,
    pub log_format: LogFormat,
    /// Notifications: the SMTP relay (`smtp://host:port`, `smtps://…`; credentials in the URL).
    /// Required by the notify worker only.
    pub smtp_url: Option<String>,
    /// `From` of notification e-mails.
    pub mail_from: String,
    /// The eBox portal the notification e-mails link to.
    pub portal_url: String,
    /// Gives up on a notification after this many failed attempts.
    pub notify_max_attempts: u32,
    /// This document provider's id in the events it publishes (`eventProviderId`).
    pub provider_id: String,
    /// How often the store worker looks for expired documents to delete.
    pub retention_interval: std::time::Duration,
    /// The citizen API: where it listens, and the path it is served under (`/` or `/ebox-api`).
    pub api_addr: SocketAddr,
    pub api_base_path: String,
    /// The API's public root URL (what clients reach, base path excluded), for the links in
    /// responses (`contentHref`). Defaults to `http://localhost:<port of EBOX_API_ADDR>`.
    pub api_public_url: String,
    /// The identity provider's verification keys: a JWKS (JSON) or PEM public key file.
    /// Required by the API only, like the issuer and audience.
    pub jwt_keys_file: Option<std::path::PathBuf>,
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

impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Settings")
            .field("amqp_url", &redact_url(&self.amqp_url))
            .field("database_url", &redact_url(&self.database_url))
            .field("database_max_connections", &self.database_max_connections)
            .field("ssin_hash_key", &"<redacted>")
            .field("max_message_bytes", &self.max_message_bytes)
            .field("prefetch", &self.prefetch)
            .field("batch_size", &self.batch_size)
            .field("metrics_addr", &self.metrics_addr)
            .field("log_filter", &self.log_filter)
            .field("log_format", &self.log_format)
            .field("smtp_url", &self.smtp_url.as_deref().map(redact_url))
            .field("mail_from", &self.mail_from)
            .field("portal_url", &self.portal_url)
            .field("notify_max_attempts", &self.notify_max_attempts)
            .field("provider_id", &self.provider_id)
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
        Self::from_vars(std::env::vars().filter(|(k, _)| k.starts_with("EBOX_")))
    }

    pub fn from_vars(
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigErrors> {
        let vars: HashMap<String, String> = vars.into_iter().collect();
        let mut problems = Vec::new();
        let mut env = Env {
            vars: &vars,
            problems: &mut problems,
        };

        let amqp_url = env.required("EBOX_AMQP_URL", |v| {
            if v.starts_with("amqp://") || v.starts_with("amqps://") {
                Ok(v.to_owned())
            } else {
                Err("must start with amqp:// or amqps://".into())
            }
        });
        let database_url = env.required("EBOX_DATABASE_URL", |v| {
            if v.starts_with("postgres://") || v.starts_with("postgresql://") {
                Ok(v.to_owned())
            } else {
                Err("must start with postgres:// or postgresql://".into())
            }
        });
        let ssin_hash_key = env.required("EBOX_SSIN_HASH_KEY", |v| {
            if v.len() >= 32 {
                Ok(v.as_bytes().to_vec())
            } else {
                Err("must be a secret of at least 32 characters".into())
            }
        });
        let database_max_connections = env.optional("EBOX_DATABASE_MAX_CONNECTIONS", 10, |v| {
            parse_in(v, 1..=1000)
        });
        let max_message_bytes = env.optional("EBOX_MAX_MESSAGE_BYTES", 16 * 1024 * 1024, |v| {
            parse_in(v, 1024..=128 * 1024 * 1024)
        });
        let prefetch = env.optional("EBOX_PREFETCH", 64, |v| parse_in(v, 1..=1000));
        let batch_size = env.optional("EBOX_BATCH_SIZE", 32, |v| parse_in(v, 1..=1000));
        let metrics_addr = env.optional("EBOX_METRICS_ADDR", ([0, 0, 0, 0], 9464).into(), |v| {
            v.parse()
                .map_err(|_| "must be an address like 0.0.0.0:9464".into())
        });
        let log_filter = env.optional("EBOX_LOG", "info".to_owned(), |v| Ok(v.to_owned()));
        let log_format = env.optional("EBOX_LOG_FORMAT", LogFormat::Json, |v| match v {
            "json" => Ok(LogFormat::Json),
            "text" => Ok(LogFormat::Text),
            _ => Err("must be json or text".into()),
        });

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
        let notify_max_attempts =
            env.optional("EBOX_NOTIFY_MAX_ATTEMPTS", 12, |v| parse_in(v, 1..=100));
        let provider_id = env.optional(
            "EBOX_PROVIDER_ID",
            "ebox-document-provider".to_owned(),
            |v| Ok(v.to_owned()),
        );

        let retention_interval = env.optional(
            "EBOX_RETENTION_INTERVAL_SECONDS",
            std::time::Duration::from_secs(60),
            |v| parse_in::<u64>(v, 1..=86_400).map(std::time::Duration::from_secs),
        );

        let api_addr = env.optional("EBOX_API_ADDR", ([0, 0, 0, 0], 8080).into(), |v| {
            v.parse()
                .map_err(|_| "must be an address like 0.0.0.0:8080".into())
        });
        let api_base_path = env.optional("EBOX_API_BASE_PATH", "/".to_owned(), |v| {
            if v.starts_with('/') && !v.contains(char::is_whitespace) {
                Ok(format!("/{}", v.trim_matches('/')))
            } else {
                Err("must be a path starting with /".into())
            }
        });
        let api_public_url = env.optional("EBOX_API_PUBLIC_URL", None, |v| {
            if v.starts_with("https://") || v.starts_with("http://") {
                Ok(Some(v.trim_end_matches('/').to_owned()))
            } else {
                Err("must be an http(s) URL".into())
            }
        });
        let jwt_keys_file = env.optional("EBOX_JWT_KEYS_FILE", None, |v| {
            Ok(Some(std::path::PathBuf::from(v)))
        });
        let jwt_issuer = env.optional("EBOX_JWT_ISSUER", None, |v| Ok(Some(v.to_owned())));
        let jwt_audience = env.optional("EBOX_JWT_AUDIENCE", None, |v| Ok(Some(v.to_owned())));
        let jwt_min_acr = env.optional("EBOX_JWT_MIN_ACR", AssuranceLevel::Substantial, |v| {
            AssuranceLevel::parse(v)
                .ok_or_else(|| "must be substantial or high (or an eIDAS LoA URI)".into())
        });
        if let (Some(prefetch), Some(batch)) = (prefetch, batch_size)
            && usize::from(prefetch) < batch
        {
            problems.push(format!(
                "EBOX_BATCH_SIZE ({batch}) cannot exceed EBOX_PREFETCH ({prefetch}): a batch is made of prefetched deliveries"
            ));
        }

        let partner_secrets: HashMap<String, String> = vars
            .iter()
            .filter(|(k, _)| is_partner_secret_name(k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let settings = (|| {
            Some(Settings {
                amqp_url: amqp_url?,
                database_url: database_url?,
                database_max_connections: database_max_connections?,
                ssin_hash_key: ssin_hash_key?,
                max_message_bytes: max_message_bytes?,
                prefetch: prefetch?,
                batch_size: batch_size?,
                metrics_addr: metrics_addr?,
                log_filter: log_filter?,
                log_format: log_format?,
                smtp_url: smtp_url?,
                mail_from: mail_from?,
                portal_url: portal_url?,
                notify_max_attempts: notify_max_attempts?,
                provider_id: provider_id?,
                retention_interval: retention_interval?,
                api_addr: api_addr?,
                api_public_url: match api_public_url? {
                    Some(url) => url,
                    None => format!("http://localhost:{}", api_addr?.port()),
                },
                api_base_path: api_base_path?,
                jwt_keys_file: jwt_keys_file?,
                jwt_issuer: jwt_issuer?,
                jwt_audience: jwt_audience?,
                jwt_min_acr: jwt_min_acr?,
                partner_secrets,
            })
        })();
        match settings {
            Some(settings) if problems.is_empty() => Ok(settings),
            _ => Err(ConfigErrors(problems)),
        }
    }
}

/// `EBOX_PARTNER_<NAME>_SECRET`, NAME in A-Z, 0-9 and `_`.
pub fn is_partner_secret_name(name: &str) -> bool {
    name.strip_prefix("EBOX_PARTNER_")
        .and_then(|rest| rest.strip_suffix("_SECRET"))
        .is_some_and(|middle| {
            !middle.is_empty()
                && middle
                    .bytes()
                    .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
        })
}

struct Env<'a> {
    vars: &'a HashMap<String, String>,
    problems: &'a mut Vec<String>,
}

impl Env<'_> {
    fn required<T>(
        &mut self,
        key: &str,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Option<T> {
        match self
            .vars
            .get(key)
            .map(|v| v.trim())
            .filter(|v| !v.is_empty())
        {
            None => {
                self.problems.push(format!("{key} is required"));
                None
            }
            Some(value) => self.check(key, parse(value)),
        }
    }

    fn optional<T>(
        &mut self,
        key: &str,
        default: T,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Option<T> {
        match self
            .vars
            .get(key)
            .map(|v| v.trim())
            .filter(|v| !v.is_empty())
        {
            None => Some(default),
            Some(value) => self.check(key, parse(value)),
        }
    }

    fn check<T>(&mut self, key: &str, parsed: Result<T, String>) -> Option<T> {
        parsed
            .map_err(|problem| self.problems.push(format!("{key} {problem}")))
            .ok()
    }
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

    #[test]
    fn passwords_are_redacted_from_urls() {
        assert_eq!(
            redact_url("amqp://onem:secret@host:5672/%2f"),
            "amqp://onem:***@host:5672/%2f"
        );
        assert_eq!(redact_url("postgres://host/db"), "postgres://host/db");
    }
}
