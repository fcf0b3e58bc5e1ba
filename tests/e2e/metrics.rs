//! What `/metrics` says while messages flow: every series exists before the first message, the
//! counters and histograms move as one goes from a sender to the citizen's eyes (through every
//! stage, the notification outbox and the API), no label carries an identifier, and
//! Prometheus's own checker (`promtool check metrics`) accepts the exposition.

use crate::helpers::*;
use domain::citizen::Channel;
use domain::status::Status;
use ebox::demo::{SAMPLE_SSIN, sample_v2};
use std::collections::BTreeMap;
use std::io::Write as _;
use std::process::{Command, Stdio};

/// The content of a message's main attachment, as the API's route template names it.
const CONTENT_ROUTE: &str = "/ebox/messages/{message_id}/attachments/{attachment_id}/content";

/// One scrape: every sample, keyed by its name and its labels in name order
/// (`ebox_deliveries_total{outcome="ack",queue="ebox.intake"}`), and the text as served.
struct Scrape {
    samples: BTreeMap<String, f64>,
    text: String,
}

impl Scrape {
    fn parse(text: String) -> Self {
        let samples = text
            .lines()
            .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
            .map(|line| {
                let (series, value) = line
                    .rsplit_once(' ')
                    .unwrap_or_else(|| panic!("a sample line: {line}"));
                let value = value
                    .parse()
                    .unwrap_or_else(|_| panic!("a sample value: {line}"));
                (normalised(series), value)
            })
            .collect();
        Self { samples, text }
    }

    /// The value of `series` (labels in any order), or why there is none.
    fn value(&self, series: &str) -> f64 {
        let key = normalised(series);
        *self
            .samples
            .get(&key)
            .unwrap_or_else(|| panic!("no series {key} in the scrape:\n{}", self.text))
    }

    /// The value of `series`, 0 when it does not exist yet.
    fn value_or_zero(&self, series: &str) -> f64 {
        self.samples
            .get(&normalised(series))
            .copied()
            .unwrap_or(0.0)
    }

    fn has_metric(&self, name: &str) -> bool {
        self.samples
            .keys()
            .any(|key| key == name || key.starts_with(&format!("{name}{{")))
    }
}

/// `name{b="2",a="1"}` as `name{a="1",b="2"}`. Label values here hold no comma or brace.
fn normalised(series: &str) -> String {
    let Some((name, labels)) = series.split_once('{') else {
        return series.to_owned();
    };
    let mut labels: Vec<&str> = labels
        .trim_end_matches('}')
        .split(',')
        .filter(|label| !label.is_empty())
        .collect();
    labels.sort_unstable();
    format!("{name}{{{}}}", labels.join(","))
}

/// Serves `/metrics` (and the probes) as a worker process does, on a free loopback port;
/// returns the URL of `/metrics`.
async fn serve_metrics(app: &TestApp) -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port();
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    tokio::spawn(runtime::metrics::serve(
        addr,
        Vec::new(),
        app.liveness.clone(),
        app.pool.clone(),
        std::future::pending(),
    ));
    let root = format!("http://{addr}");
    eventually("the metrics server to listen", || async {
        reqwest::get(format!("{root}/livez")).await.is_ok()
    })
    .await;
    format!("{root}/metrics")
}

async fn scrape(url: &str) -> Scrape {
    let response = reqwest::get(url).await.expect("/metrics answers");
    assert_eq!(response.status(), 200);
    Scrape::parse(response.text().await.expect("a text body"))
}

/// `promtool`, from Debian's `prometheus` package: the test command installs it.
fn promtool_on_path() {
    let found = Command::new("promtool")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    assert!(
        found.is_ok_and(|status| status.success()),
        "promtool is not on PATH: install Debian's `prometheus` package \
         (`apt-get install prometheus`), which has it"
    );
}

/// Runs `promtool check metrics` over `text`; returns its complaints when it has any.
fn promtool_check(text: &str) -> Result<(), String> {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool runs");
    child
        .stdin
        .take()
        .expect("promtool's stdin")
        .write_all(text.as_bytes())
        .expect("the scrape reaches promtool");
    let output = child.wait_with_output().expect("promtool ends");
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}

/// Publishes a v2 message stamped with the time of publishing, as a sender may, and waits for
/// its `published`.
async fn deliver_stamped(sender: &mut ebox::demo::SenderClient, reference: &str) -> uuid::Uuid {
    let now = u64::try_from(chrono::Utc::now().timestamp()).expect("after 1970");
    let properties = sender
        .properties(reference, intake::contract::TYPE_V2)
        .with_timestamp(now);
    let body = serde_json::to_vec(&sample_v2(SAMPLE_SSIN, MESSAGE_TYPE)).expect("JSON");
    sender.publish(properties, &body).await.expect("published");
    loop {
        let status = sender.next_status(WAIT).await.expect("a status");
        assert!(
            matches!(status.status, Status::Accepted | Status::Published),
            "{status:?}"
        );
        if status.status == Status::Published {
            return status.message_id.expect("an id").as_uuid();
        }
    }
}

#[tokio::test]
async fn the_metrics_move_as_messages_flow_and_promtool_accepts_them() {
    promtool_on_path();
    let app = spawn_app_with(Options::with_api()).await;
    let metrics = serve_metrics(&app).await;
    // The citizen wants an e-mail for each new document: the message goes through the outbox.
    let email = Channel::Email {
        email: "citoyen@example.be".to_owned(),
    };
    app.grant_consent_with(SAMPLE_SSIN, email).await;

    let before = scrape(&metrics).await;
    // Before this test's first message, every stage's series are there (other tests of this
    // binary share the process's metrics, so they may not be at zero: only increases count).
    for series in [
        r#"ebox_deliveries_total{queue="ebox.store",outcome="dead_letter"}"#,
        r#"ebox_internal_refused_total{stage="read-receipt"}"#,
        r#"ebox_transient_failures_total{queue="ebox.notify"}"#,
        r#"ebox_consent_decisions_total{decision="no-digital-user"}"#,
        r#"ebox_intake_decisions_total{status="rejected",code="INVALID_SSIN"}"#,
        r#"ebox_publishes_total{exchange="ebox.events",result="failed"}"#,
        r#"ebox_job_passes_total{job="notification-dispatcher",result="failed"}"#,
        r#"ebox_message_handling_seconds_count{stage="consent-updates"}"#,
        r#"ebox_queue_wait_seconds_count{stage="intake"}"#,
    ] {
        before.value(series);
    }
    assert_eq!(
        before.value(&format!(
            r#"ebox_build_info{{version="{}"}}"#,
            runtime::metrics::VERSION
        )),
        1.0
    );
    for metric in [
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "process_open_fds",
        "process_start_time_seconds",
    ] {
        assert!(before.has_metric(metric), "no {metric}:\n{}", before.text);
    }
    promtool_check(&before.text)
        .unwrap_or_else(|problems| panic!("promtool check metrics refused:\n{problems}"));
    // This test's consumers are connected (other tests of this process may add theirs).
    for queue in [
        "ebox.intake",
        "ebox.consent-check",
        "ebox.store",
        "ebox.notify",
        "ebox.read-receipt",
    ] {
        let connected = before.value(&format!(r#"ebox_amqp_connected{{queue="{queue}"}}"#));
        assert!(connected >= 1.0, "{queue}: {connected} connected consumers");
    }
    // The pool's gauges, read from this test's pool at the scrape.
    let (open, idle, max) = (
        before.value("ebox_db_pool_connections"),
        before.value("ebox_db_pool_idle"),
        before.value("ebox_db_pool_max"),
    );
    assert!(
        max >= 1.0 && idle <= open && open <= max,
        "pool: {open} open, {idle} idle, {max} at most"
    );
    assert_eq!(max, f64::from(app.pool.options().get_max_connections()));

    // One message from the sender to the citizen, who is told by e-mail and opens it.
    let mut sender = app.sender().await;
    let message_id = deliver_stamped(&mut sender, "ref-metrics").await;
    let opened = open_main_content(&app, message_id, &portal_citizen_token()).await;
    assert_eq!(opened.status(), 200);
    let read = sender.next_status(WAIT).await.expect("the read status");
    assert_eq!(read.status, Status::Read, "{read:?}");
    let sent = r#"ebox_notifications_total{channel="email",result="sent"}"#;
    eventually("the e-mail to be sent", || async {
        scrape(&metrics).await.value(sent) > before.value(sent)
    })
    .await;

    let after = scrape(&metrics).await;
    let moved = |series: &str| {
        assert!(
            after.value(series) > before.value_or_zero(series),
            "{series} did not move: {} before, {} after",
            before.value_or_zero(series),
            after.value(series)
        );
    };
    for stage in ["intake", "consent-check", "store", "notify", "read-receipt"] {
        moved(&format!(
            r#"ebox_message_handling_seconds_count{{stage="{stage}"}}"#
        ));
        // Every stage's delivery carries the AMQP timestamp of its publisher: the sender's
        // for intake, ours after.
        moved(&format!(
            r#"ebox_queue_wait_seconds_count{{stage="{stage}"}}"#
        ));
    }
    for queue in [
        "ebox.intake",
        "ebox.consent-check",
        "ebox.store",
        "ebox.notify",
    ] {
        moved(&format!(
            r#"ebox_deliveries_total{{queue="{queue}",outcome="ack"}}"#
        ));
        moved(&format!(r#"ebox_batch_seconds_count{{queue="{queue}"}}"#));
    }
    moved(r#"ebox_intake_decisions_total{status="accepted",code="ACCEPTED"}"#);
    moved(r#"ebox_consent_decisions_total{decision="consented"}"#);
    moved(r#"ebox_notifications_total{channel="email",result="queued"}"#);
    moved(sent);
    moved(r#"ebox_publishes_total{exchange="ebox.events",result="confirmed"}"#);
    moved(r#"ebox_publishes_total{exchange="ebox.status",result="confirmed"}"#);
    moved("ebox_publish_to_published_seconds_count");
    moved(r#"ebox_job_passes_total{job="notification-dispatcher",result="ok"}"#);
    moved(&format!(
        r#"ebox_http_requests_total{{route="{CONTENT_ROUTE}",status="200"}}"#
    ));
    moved(&format!(
        r#"ebox_http_request_seconds_count{{route="{CONTENT_ROUTE}"}}"#
    ));
    moved(
        r#"ebox_http_requests_total{route="/ebox/messages/{message_id}/attachments",status="200"}"#,
    );
    // The outbox was measured (nothing waits in it once the e-mail is sent, unless other tests
    // of this process left some).
    after.value("ebox_notification_outbox_pending");
    after.value("ebox_notification_outbox_oldest_seconds");

    assert!(
        !after.text.contains(&message_id.to_string()),
        "a message id reached a label:\n{}",
        after.text
    );
    assert!(
        !after.text.contains(SAMPLE_SSIN),
        "a national number reached a label"
    );
    promtool_check(&after.text)
        .unwrap_or_else(|problems| panic!("promtool check metrics refused:\n{problems}"));
}
