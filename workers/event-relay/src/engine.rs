//! The event engine as the relay sees it: one `POST` of a JSON array of events to
//! `EBOX_EVENT_ENGINE_URL?clientId=…` with a bearer token, and what its answer means
//! ([`classify`]).

use domain::events::CitizenDocumentEvent;
use runtime::internal_events::RelayFault;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// The longest a push may take.
const TIMEOUT: Duration = Duration::from_secs(30);
/// The most of an answer's body kept to explain a refusal.
const MAX_EXCERPT: usize = 300;

/// What the event engine's answer means for the events pushed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// 2xx: taken.
    Taken,
    /// 409, an idempotency violation: it has (one of) them already — taken earlier, its answer
    /// lost. For one event, that event is delivered.
    AlreadyTaken,
    /// 400: refused as invalid, for good; the reason, from the answer.
    Refused(String),
    /// Anything else: try again later.
    Failed(RelayFault, String),
}

/// The meaning of `status` (with the answer's `body`, for a refusal).
pub fn classify(status: reqwest::StatusCode, body: &str) -> Answer {
    use reqwest::StatusCode;
    match status {
        s if s.is_success() => Answer::Taken,
        StatusCode::CONFLICT => Answer::AlreadyTaken,
        StatusCode::BAD_REQUEST => {
            Answer::Refused(format!("the event engine answered 400: {}", excerpt(body)))
        }
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => Answer::Failed(
            RelayFault::Unauthorized,
            format!(
                "the event engine answered {status}: is the token valid and the client allowed?"
            ),
        ),
        s if s.is_server_error() || s == StatusCode::TOO_MANY_REQUESTS => Answer::Failed(
            RelayFault::ServerError,
            format!("the event engine answered {status}"),
        ),
        s => Answer::Failed(
            RelayFault::Unexpected,
            format!("the event engine answered {s}"),
        ),
    }
}

/// The start of an answer's body, on one line, with every run of 11 or more digits masked: the
/// event engine may quote the event it refuses, and a national number must not reach a log
/// line or the operators' listing.
pub fn excerpt(body: &str) -> String {
    let mut out = String::new();
    let mut digits = String::new();
    let flush = |digits: &mut String, out: &mut String| {
        if digits.len() >= 11 {
            out.extend(std::iter::repeat_n('*', digits.len()));
        } else {
            out.push_str(digits);
        }
        digits.clear();
    };
    for c in body.chars().take(MAX_EXCERPT) {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        flush(&mut digits, &mut out);
        out.push(if c.is_control() { ' ' } else { c });
    }
    flush(&mut digits, &mut out);
    if body.chars().count() > MAX_EXCERPT {
        out.push('…');
    }
    out
}

/// The event engine's events endpoint, the client id pushes name, and the bearer token.
pub struct Engine {
    http: reqwest::Client,
    url: String,
    client_id: String,
    token: BearerToken,
}

impl Engine {
    pub fn new(url: String, client_id: String, token_file: PathBuf) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| anyhow::anyhow!("Failed to build the event engine's client: {e}"))?;
        Ok(Self {
            http,
            url,
            client_id,
            token: BearerToken::new(token_file),
        })
    }

    /// POSTs `events`, in order, as one JSON array.
    pub async fn push(&mut self, events: &[&CitizenDocumentEvent]) -> Answer {
        let token = match self.token.current() {
            Ok(token) => token.to_owned(),
            Err(e) => return Answer::Failed(RelayFault::Unauthorized, format!("{e:#}")),
        };
        let sent = self
            .http
            .post(&self.url)
            .query(&[("clientId", &self.client_id)])
            .bearer_auth(token)
            .json(events)
            .send()
            .await;
        let response = match sent {
            Ok(response) => response,
            Err(e) => {
                return Answer::Failed(
                    RelayFault::Unreachable,
                    format!("the event engine did not answer: {}", e.without_url()),
                );
            }
        };
        let status = response.status();
        let body = if status == reqwest::StatusCode::BAD_REQUEST {
            response.text().await.unwrap_or_default()
        } else {
            String::new()
        };
        let answer = classify(status, &body);
        if let Answer::Failed(RelayFault::Unauthorized, _) = answer {
            // Read the file again before the next attempt, whatever its time stamp says.
            self.token.forget();
        }
        answer
    }
}

/// The bearer token, from a file read again whenever it changes (its modification time or
/// size), so that whoever renews the token — a sidecar, a Kubernetes Secret update — needs no
/// restart; and after a 401 or 403.
pub struct BearerToken {
    path: PathBuf,
    held: Option<(Stamp, String)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    modified: Option<SystemTime>,
    len: u64,
}

impl BearerToken {
    pub fn new(path: PathBuf) -> Self {
        Self { path, held: None }
    }

    /// The token: the file's content without surrounding white space.
    pub fn current(&mut self) -> anyhow::Result<&str> {
        let stamp = stamp(&self.path)?;
        if !matches!(&self.held, Some((held, _)) if *held == stamp) {
            let token = read_token(&self.path)?;
            tracing::info!(path = %self.path.display(), "event engine token read");
            self.held = Some((stamp, token));
        }
        match &self.held {
            Some((_, token)) => Ok(token),
            None => anyhow::bail!("the token was just read"),
        }
    }

    /// Reads the file again next time.
    pub fn forget(&mut self) {
        self.held = None;
    }
}

fn stamp(path: &Path) -> anyhow::Result<Stamp> {
    let metadata = std::fs::metadata(path).map_err(|e| {
        anyhow::anyhow!("cannot read the event engine token {}: {e}", path.display())
    })?;
    Ok(Stamp {
        modified: metadata.modified().ok(),
        len: metadata.len(),
    })
}

fn read_token(path: &Path) -> anyhow::Result<String> {
    let raw = std::fs::read_to_string(path).map_err(|e| {
        anyhow::anyhow!("cannot read the event engine token {}: {e}", path.display())
    })?;
    let token = raw.trim();
    anyhow::ensure!(
        !token.is_empty() && !token.contains(char::is_whitespace),
        "the event engine token file {} holds no token",
        path.display()
    );
    Ok(token.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::StatusCode;

    #[test]
    fn each_answer_of_the_event_engine_means_one_thing() {
        let cases = [
            (StatusCode::CREATED, Answer::Taken),
            (StatusCode::OK, Answer::Taken),
            (StatusCode::NO_CONTENT, Answer::Taken),
            (StatusCode::CONFLICT, Answer::AlreadyTaken),
            (
                StatusCode::BAD_REQUEST,
                Answer::Refused("the event engine answered 400: bad ssin".into()),
            ),
        ];
        for (status, answer) in cases {
            assert_eq!(classify(status, "bad ssin"), answer, "{status}");
        }
        let faults = [
            (StatusCode::UNAUTHORIZED, RelayFault::Unauthorized),
            (StatusCode::FORBIDDEN, RelayFault::Unauthorized),
            (StatusCode::SERVICE_UNAVAILABLE, RelayFault::ServerError),
            (StatusCode::INTERNAL_SERVER_ERROR, RelayFault::ServerError),
            (StatusCode::TOO_MANY_REQUESTS, RelayFault::ServerError),
            (StatusCode::NOT_FOUND, RelayFault::Unexpected),
            (StatusCode::PERMANENT_REDIRECT, RelayFault::Unexpected),
            (StatusCode::PAYLOAD_TOO_LARGE, RelayFault::Unexpected),
        ];
        for (status, fault) in faults {
            assert!(
                matches!(classify(status, ""), Answer::Failed(f, _) if f == fault),
                "{status}"
            );
        }
    }

    #[test]
    fn an_excerpt_masks_national_numbers_and_stays_short() {
        assert_eq!(
            excerpt("{\"ssin\":\"85073003328\",\"code\":400}"),
            "{\"ssin\":\"***********\",\"code\":400}"
        );
        assert_eq!(excerpt("line one\nline two"), "line one line two");
        let long = "x".repeat(1000);
        assert_eq!(excerpt(&long).chars().count(), MAX_EXCERPT + 1);
        assert_eq!(excerpt("ends with 123456789012"), "ends with ************");
    }

    #[test]
    fn the_token_is_read_again_when_its_file_changes() {
        let path = std::env::temp_dir().join(format!("ebox-relay-token-{}", std::process::id()));
        std::fs::write(&path, "first-token\n").expect("write");
        let mut token = BearerToken::new(path.clone());
        assert_eq!(token.current().expect("a token"), "first-token");
        std::fs::write(&path, "the-second-token\n").expect("write");
        assert_eq!(token.current().expect("a token"), "the-second-token");
        std::fs::write(&path, "  \n").expect("write");
        assert!(token.current().is_err(), "an empty file holds no token");
        std::fs::remove_file(&path).expect("remove");
        assert!(token.current().is_err(), "a missing file holds no token");
    }
}
