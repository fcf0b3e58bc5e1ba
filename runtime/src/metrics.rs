//! Every metric of the service, named in one place after Prometheus conventions
//! (`ebox_` prefix, `_total` for counters, `_seconds` for durations, bounded label values),
//! and the small HTTP server that exposes them with the health probes.

use crate::internal_events::{
    CallbackResult, DeliveryOutcome, IntakeOutcome, LaneWaitReason, NotificationResult, PassResult,
    PublishResult, RelayFault, RelayResult,
};
use axum::Router;
use axum::http::StatusCode;
use axum::routing::get;
use domain::audit::Stage;
use domain::citizen::ChannelKind;
use domain::decision::ConsentDecision;
use domain::vocabulary::Vocabulary;
use prometheus::{
    Gauge, Histogram, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};
use sqlx::PgPool;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::LazyLock;
use tokio::sync::watch;

pub struct Metrics {
    pub registry: Registry,
    /// Deliveries settled by a stage. Labels: `queue`, `outcome` (`ack`, `dead_letter`, `requeue`).
    pub deliveries_total: IntCounterVec,
    /// Time to process one batch, from the first delivery to the last ack. Label: `queue`.
    pub batch_seconds: HistogramVec,
    /// Deliveries per batch. Label: `queue`.
    pub batch_size: HistogramVec,
    /// Publishes by the service. Labels: `exchange`, `result` (`confirmed`, `failed`).
    pub publishes_total: IntCounterVec,
    /// Batches retried after a transient fault (database or broker). Label: `queue`.
    pub transient_failures_total: IntCounterVec,
    /// Intake decisions. Labels: `status`, `code`.
    pub intake_decisions_total: IntCounterVec,
    /// Consent-check decisions. Label: `decision` (`consented`, `no-digital-user`).
    pub consent_decisions_total: IntCounterVec,
    /// Notifications. Labels: `channel` (`email`, `partner`, `none`), `result` (`queued`,
    /// `sent`, `retry`, `failed`, `skipped`).
    pub notifications_total: IntCounterVec,
    /// Internal messages a stage refused because they disagree with the recorded state (a
    /// forgery, or a bug): nothing was done. Label: `stage`.
    pub internal_refused_total: IntCounterVec,
    /// Times intake made a sender's lane wait. Label: `reason` (`messages_per_second`,
    /// `bytes_per_day`, `in_flight`).
    pub intake_lane_waits_total: IntCounterVec,
    /// Messages a stage parked because the broker would not take them. Label: `queue`.
    pub publishes_parked_total: IntCounterVec,
    /// Messages parked because the broker would not take them, waiting to be published again.
    pub parked_publishes: IntGauge,
    /// Age of the oldest parked message, in seconds (0 when none waits).
    pub parked_publish_oldest_seconds: Gauge,
    /// Messages at `accepted` for longer than `EBOX_STUCK_AFTER_SECONDS`.
    pub stuck_messages: IntGauge,
    /// How long the oldest of them has been waiting, in seconds (0 when none).
    pub stuck_message_oldest_seconds: Gauge,
    /// Background job passes. Labels: `job`, `result` (`ok`, `failed`).
    pub job_passes_total: IntCounterVec,
    /// Time of one background job pass. Label: `job`.
    pub job_pass_seconds: HistogramVec,
    /// Time a stage's handler took over one delivery (its savepoint included, not the batch's
    /// commit, publish or ack). Label: `stage`.
    pub message_handling_seconds: HistogramVec,
    /// How long a delivery waited between its publisher's AMQP `timestamp` and its stage taking
    /// it (whole seconds on the wire). Label: `stage`.
    pub queue_wait_seconds: HistogramVec,
    /// From intake's acceptance (`messages.accepted_at`) to the document's publication in the
    /// citizen's eBox by store.
    pub publish_to_published_seconds: Histogram,
    /// Notifications in the outbox not yet sent nor abandoned.
    pub notification_outbox_pending: IntGauge,
    /// How long the oldest of them has waited since it was queued or re-queued (0 when none).
    pub notification_outbox_oldest_seconds: Gauge,
    /// Senders' status callbacks. Label: `result` (`queued`, `sent`, `retry`, `failed`).
    pub status_callbacks_total: IntCounterVec,
    /// Status callbacks in their outbox not yet sent nor abandoned.
    pub status_callback_outbox_pending: IntGauge,
    /// How long the oldest of them has waited since it was queued or re-queued (0 when none).
    pub status_callback_outbox_oldest_seconds: Gauge,
    /// Events the event relay settled with the event engine. Label: `result` (`delivered`,
    /// `already_delivered`: a 409, `parked`: refused for good, or behind one that was).
    pub event_relay_events_total: IntCounterVec,
    /// Pushes to the event engine that failed and will be retried. Label: `reason`
    /// (`unreachable`, `server_error`, `unauthorized`, `unexpected`).
    pub event_relay_failures_total: IntCounterVec,
    /// Events recorded and not yet taken by the event engine (parked ones excepted).
    pub event_relay_pending: IntGauge,
    /// How long the oldest of them has waited since it was recorded (0 when none).
    pub event_relay_oldest_pending_seconds: Gauge,
    /// Events parked for the operators (`ebox events parked`): alert on any.
    pub event_relay_parked: IntGauge,
    /// API requests answered. Labels: `route` (the route template, never the raw path;
    /// `unmatched` for none), `status`.
    pub http_requests_total: IntCounterVec,
    /// Time to answer an API request. Label: `route`.
    pub http_request_seconds: HistogramVec,
    /// Consumers of a queue in this process that hold an open broker connection and consume:
    /// 1 in a worker process while its consumer runs, 0 while it connects again (or before it
    /// first did). Label: `queue`. The API's publisher, opened on first use, is not counted.
    pub amqp_connected: IntGaugeVec,
    /// Connections the process's database pool holds open, busy or idle; sampled at each
    /// scrape.
    pub db_pool_connections: IntGauge,
    /// Of those, the idle ones; sampled at each scrape.
    pub db_pool_idle: IntGauge,
    /// The most connections the pool may open (`EBOX_DATABASE_MAX_CONNECTIONS`).
    pub db_pool_max: IntGauge,
    /// Always 1. Label: `version` (the crates' version).
    pub build_info: IntGaugeVec,
}

pub static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

impl Metrics {
    fn new() -> Self {
        let registry = Registry::new();
        let counter = |name, help, labels| counter(&registry, name, help, labels);
        let histogram =
            |name, help, label, buckets| histogram(&registry, name, help, label, buckets);
        let metrics = Self {
            deliveries_total: counter(
                "ebox_deliveries_total",
                "Deliveries settled by a stage",
                &["queue", "outcome"],
            ),
            batch_seconds: histogram(
                "ebox_batch_seconds",
                "Time to process one batch of deliveries",
                "queue",
                prometheus::exponential_buckets(0.001, 2.0, 15).unwrap_or_default(),
            ),
            batch_size: histogram(
                "ebox_batch_size",
                "Deliveries per batch",
                "queue",
                vec![1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0],
            ),
            publishes_total: counter(
                "ebox_publishes_total",
                "Messages published by the service",
                &["exchange", "result"],
            ),
            transient_failures_total: counter(
                "ebox_transient_failures_total",
                "Batches retried after a transient fault",
                &["queue"],
            ),
            intake_decisions_total: counter(
                "ebox_intake_decisions_total",
                "Intake decisions by status and code",
                &["status", "code"],
            ),
            consent_decisions_total: counter(
                "ebox_consent_decisions_total",
                "Consent-check decisions",
                &["decision"],
            ),
            notifications_total: counter(
                "ebox_notifications_total",
                "Citizen notifications by channel and result",
                &["channel", "result"],
            ),
            internal_refused_total: counter(
                "ebox_internal_refused_total",
                "Internal messages refused because they disagree with the recorded state",
                &["stage"],
            ),
            intake_lane_waits_total: counter(
                "ebox_intake_lane_waits_total",
                "Times intake made a sender's lane wait, by reason",
                &["reason"],
            ),
            publishes_parked_total: counter(
                "ebox_publishes_parked_total",
                "Messages a stage parked because the broker would not take them",
                &["queue"],
            ),
            parked_publishes: gauge(
                &registry,
                "ebox_parked_publishes",
                "Messages parked because the broker would not take them",
            ),
            parked_publish_oldest_seconds: float_gauge(
                &registry,
                "ebox_parked_publish_oldest_seconds",
                "Age of the oldest parked message",
            ),
            stuck_messages: gauge(
                &registry,
                "ebox_stuck_messages",
                "Messages accepted longer ago than EBOX_STUCK_AFTER_SECONDS and not settled",
            ),
            stuck_message_oldest_seconds: float_gauge(
                &registry,
                "ebox_stuck_message_oldest_seconds",
                "How long the oldest stuck message has been waiting",
            ),
            job_passes_total: counter(
                "ebox_job_passes_total",
                "Background job passes by result",
                &["job", "result"],
            ),
            job_pass_seconds: histogram(
                "ebox_job_pass_seconds",
                "Time of one background job pass",
                "job",
                prometheus::exponential_buckets(0.001, 2.0, 15).unwrap_or_default(),
            ),
            message_handling_seconds: histogram(
                "ebox_message_handling_seconds",
                "Time a stage's handler took over one delivery",
                "stage",
                prometheus::exponential_buckets(0.001, 2.0, 15).unwrap_or_default(),
            ),
            queue_wait_seconds: histogram(
                "ebox_queue_wait_seconds",
                "Time a delivery waited from its AMQP timestamp until its stage took it",
                "stage",
                WAIT_BUCKETS.to_vec(),
            ),
            publish_to_published_seconds: plain_histogram(
                &registry,
                "ebox_publish_to_published_seconds",
                "Time from a message's acceptance at intake to its publication in the eBox",
                WAIT_BUCKETS.to_vec(),
            ),
            notification_outbox_pending: gauge(
                &registry,
                "ebox_notification_outbox_pending",
                "Notifications in the outbox not yet sent nor abandoned",
            ),
            notification_outbox_oldest_seconds: float_gauge(
                &registry,
                "ebox_notification_outbox_oldest_seconds",
                "How long the oldest pending notification has waited since it was queued",
            ),
            status_callbacks_total: counter(
                "ebox_status_callbacks_total",
                "Senders' status callbacks by result",
                &["result"],
            ),
            status_callback_outbox_pending: gauge(
                &registry,
                "ebox_status_callback_outbox_pending",
                "Status callbacks in the outbox not yet sent nor abandoned",
            ),
            status_callback_outbox_oldest_seconds: float_gauge(
                &registry,
                "ebox_status_callback_outbox_oldest_seconds",
                "How long the oldest pending status callback has waited since it was queued",
            ),
            event_relay_events_total: counter(
                "ebox_event_relay_events_total",
                "Events the event relay settled with the event engine, by result",
                &["result"],
            ),
            event_relay_failures_total: counter(
                "ebox_event_relay_failures_total",
                "Pushes to the event engine that failed and will be retried, by reason",
                &["reason"],
            ),
            event_relay_pending: gauge(
                &registry,
                "ebox_event_relay_pending",
                "Events recorded and not yet taken by the event engine, parked ones excepted",
            ),
            event_relay_oldest_pending_seconds: float_gauge(
                &registry,
                "ebox_event_relay_oldest_pending_seconds",
                "How long the oldest event not yet taken by the event engine has waited",
            ),
            event_relay_parked: gauge(
                &registry,
                "ebox_event_relay_parked",
                "Events parked for the operators: refused by the event engine, or behind one",
            ),
            http_requests_total: counter(
                "ebox_http_requests_total",
                "API requests answered, by route template and status",
                &["route", "status"],
            ),
            http_request_seconds: histogram(
                "ebox_http_request_seconds",
                "Time to answer an API request, by route template",
                "route",
                vec![
                    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
                ],
            ),
            amqp_connected: gauge_vec(
                &registry,
                "ebox_amqp_connected",
                "Consumers of the queue in this process holding an open broker connection",
                &["queue"],
            ),
            db_pool_connections: gauge(
                &registry,
                "ebox_db_pool_connections",
                "Connections the database pool holds open, busy or idle",
            ),
            db_pool_idle: gauge(
                &registry,
                "ebox_db_pool_idle",
                "Idle connections in the database pool",
            ),
            db_pool_max: gauge(
                &registry,
                "ebox_db_pool_max",
                "The most connections the database pool may open",
            ),
            build_info: gauge_vec(
                &registry,
                "ebox_build_info",
                "Always 1; the version of the running build",
                &["version"],
            ),
            registry,
        };
        metrics.build_info.with_label_values(&[VERSION]).set(1);
        register_process_metrics(&metrics.registry);
        metrics.start_at_zero();
        metrics
    }

    /// Makes every series whose label values the process knows exist at zero from the start,
    /// so that `rate()` and `increase()` see the first event instead of a series appearing.
    /// The series of a queue, a stage or a job appear when it starts ([`Self::consumer_started`],
    /// [`Self::job_started`]).
    fn start_at_zero(&self) {
        for outcome in IntakeOutcome::ALL {
            for code in outcome.codes() {
                self.intake_decisions_total
                    .with_label_values(&[outcome.as_str(), code.as_str()]);
            }
        }
        for reason in LaneWaitReason::ALL {
            self.intake_lane_waits_total
                .with_label_values(&[reason.as_str()]);
        }
        for decision in ConsentDecision::ALL {
            self.consent_decisions_total
                .with_label_values(&[decision.as_str()]);
        }
        for result in CallbackResult::ALL {
            self.status_callbacks_total
                .with_label_values(&[result.as_str()]);
        }
        for channel in ChannelKind::ALL {
            for result in NotificationResult::ALL {
                if result.possible_on(*channel) {
                    self.notifications_total
                        .with_label_values(&[channel.as_str(), result.as_str()]);
                }
            }
        }
    }

    /// The event relay started: its series exist from now on, at zero.
    pub fn event_relay_started(&self) {
        for result in RelayResult::ALL {
            self.event_relay_events_total
                .with_label_values(&[result.as_str()]);
        }
        for reason in RelayFault::ALL {
            self.event_relay_failures_total
                .with_label_values(&[reason.as_str()]);
        }
    }

    /// A consumer of `queue` for `stage` started: its series exist from now on, at zero.
    pub fn consumer_started(&self, stage: Stage, queue: &str) {
        for outcome in DeliveryOutcome::ALL {
            self.deliveries_total
                .with_label_values(&[queue, outcome.as_str()]);
        }
        self.transient_failures_total.with_label_values(&[queue]);
        self.publishes_parked_total.with_label_values(&[queue]);
        self.batch_seconds.with_label_values(&[queue]);
        self.batch_size.with_label_values(&[queue]);
        self.internal_refused_total
            .with_label_values(&[stage.as_str()]);
        self.message_handling_seconds
            .with_label_values(&[stage.as_str()]);
        self.queue_wait_seconds.with_label_values(&[stage.as_str()]);
        self.amqp_connected.with_label_values(&[queue]);
    }

    /// The consumer of `queue` holds an open connection and consumes, until the guard is
    /// dropped (the connection failed, or the consumer stopped).
    pub fn consumer_connected(&self, queue: &'static str) -> Connected {
        self.amqp_connected.with_label_values(&[queue]).inc();
        Connected { queue }
    }

    /// Reads the pool's gauges from `pool`: called at each scrape.
    pub fn sample_pool(&self, pool: &PgPool) {
        self.db_pool_connections.set(i64::from(pool.size()));
        self.db_pool_idle
            .set(i64::try_from(pool.num_idle()).unwrap_or(i64::MAX));
        self.db_pool_max
            .set(i64::from(pool.options().get_max_connections()));
    }

    /// The process publishes to `exchange`: its series exist from now on, at zero.
    pub fn publishes_to(&self, exchange: &str) {
        for result in PublishResult::ALL {
            self.publishes_total
                .with_label_values(&[exchange, result.as_str()]);
        }
    }

    /// A background job started: its series exist from now on, at zero.
    pub fn job_started(&self, job: &str) {
        for result in PassResult::ALL {
            self.job_passes_total
                .with_label_values(&[job, result.as_str()]);
        }
        self.job_pass_seconds.with_label_values(&[job]);
    }

    pub fn render(&self) -> String {
        TextEncoder::new()
            .encode_to_string(&self.registry.gather())
            .unwrap_or_default()
    }
}

/// A consumer's open connection, counted in `ebox_amqp_connected` while it lives.
#[must_use = "the consumer counts as connected only while the guard lives"]
pub struct Connected {
    queue: &'static str,
}

impl Drop for Connected {
    fn drop(&mut self) {
        METRICS
            .amqp_connected
            .with_label_values(&[self.queue])
            .dec();
    }
}

/// A counter family, registered. The definitions are constants: a failure is a programming
/// error, caught by the first test that touches a metric.
fn counter(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let metric = IntCounterVec::new(Opts::new(name, help), labels)
        .unwrap_or_else(|e| panic!("metric {name} is malformed: {e}"));
    registry
        .register(Box::new(metric.clone()))
        .unwrap_or_else(|e| panic!("metric {name} registered twice: {e}"));
    metric
}

/// A gauge, registered.
fn gauge(registry: &Registry, name: &str, help: &str) -> IntGauge {
    let metric =
        IntGauge::new(name, help).unwrap_or_else(|e| panic!("metric {name} is malformed: {e}"));
    registry
        .register(Box::new(metric.clone()))
        .unwrap_or_else(|e| panic!("metric {name} registered twice: {e}"));
    metric
}

/// A floating-point gauge, registered.
fn float_gauge(registry: &Registry, name: &str, help: &str) -> Gauge {
    let metric =
        Gauge::new(name, help).unwrap_or_else(|e| panic!("metric {name} is malformed: {e}"));
    registry
        .register(Box::new(metric.clone()))
        .unwrap_or_else(|e| panic!("metric {name} registered twice: {e}"));
    metric
}

/// A gauge family, registered.
fn gauge_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let metric = IntGaugeVec::new(Opts::new(name, help), labels)
        .unwrap_or_else(|e| panic!("metric {name} is malformed: {e}"));
    registry
        .register(Box::new(metric.clone()))
        .unwrap_or_else(|e| panic!("metric {name} registered twice: {e}"));
    metric
}

/// A histogram without labels, registered.
fn plain_histogram(registry: &Registry, name: &str, help: &str, buckets: Vec<f64>) -> Histogram {
    let metric = Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets))
        .unwrap_or_else(|e| panic!("metric {name} is malformed: {e}"));
    registry
        .register(Box::new(metric.clone()))
        .unwrap_or_else(|e| panic!("metric {name} registered twice: {e}"));
    metric
}

/// The process's CPU, memory, file descriptors and start time (`process_*`), read from
/// `/proc`: Linux only, where the service runs.
fn register_process_metrics(registry: &Registry) {
    #[cfg(target_os = "linux")]
    registry
        .register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))
        .unwrap_or_else(|e| panic!("the process metrics registered twice: {e}"));
    #[cfg(not(target_os = "linux"))]
    let _ = registry;
}

/// The version `ebox_build_info` reports: the workspace's crates share it.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Buckets for waits that span milliseconds to a day (a queue's backlog, a message's way from
/// intake to the eBox).
const WAIT_BUCKETS: [f64; 16] = [
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 14400.0, 43200.0,
    86400.0,
];

/// A histogram family with one label, registered.
fn histogram(
    registry: &Registry,
    name: &str,
    help: &str,
    label: &str,
    buckets: Vec<f64>,
) -> HistogramVec {
    let metric = HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets), &[label])
        .unwrap_or_else(|e| panic!("metric {name} is malformed: {e}"));
    registry
        .register(Box::new(metric.clone()))
        .unwrap_or_else(|e| panic!("metric {name} registered twice: {e}"));
    metric
}

/// One worker's readiness: true while its consumer runs. The process is ready when all are.
#[derive(Clone)]
pub struct Readiness(Arc<watch::Sender<bool>>);

impl Default for Readiness {
    fn default() -> Self {
        Self(Arc::new(watch::channel(false).0))
    }
}

impl Readiness {
    pub fn set(&self, ready: bool) {
        self.0.send_replace(ready);
    }

    pub fn get(&self) -> bool {
        *self.0.borrow()
    }

    /// Returns once the worker consumes.
    pub async fn wait_until_ready(&self) {
        let mut receiver = self.0.subscribe();
        // The sender lives in `self`, so the channel cannot close while we wait.
        let _ = receiver.wait_for(|ready| *ready).await;
    }
}

/// Serves `/metrics` (reading the pool's gauges from `pool` at each scrape), `/livez` and
/// `/readyz` until `shutdown` completes. The process is ready
/// when every consumer consumes, every background job's last pass succeeded, and the
/// database answers; it is live while no loop has stalled ([`crate::liveness`]).
pub async fn serve(
    addr: SocketAddr,
    readiness: Vec<Readiness>,
    liveness: crate::liveness::Liveness,
    pool: PgPool,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let app = Router::new()
        .route(
            "/metrics",
            get({
                let pool = pool.clone();
                move || async move {
                    METRICS.sample_pool(&pool);
                    METRICS.render()
                }
            }),
        )
        .route(
            "/livez",
            get(move || async move {
                let stalled = liveness.stalled();
                if stalled.is_empty() {
                    (StatusCode::OK, "ok".to_owned())
                } else {
                    (
                        StatusCode::SERVICE_UNAVAILABLE,
                        format!("not live: {}", stalled.join("; ")),
                    )
                }
            }),
        )
        .route(
            "/readyz",
            get(move || {
                let consuming = readiness.iter().all(Readiness::get);
                let pool = pool.clone();
                async move {
                    if !consuming {
                        (StatusCode::SERVICE_UNAVAILABLE, "not ready")
                    } else if !database_answers(&pool).await {
                        (
                            StatusCode::SERVICE_UNAVAILABLE,
                            "not ready: the database does not answer",
                        )
                    } else {
                        (StatusCode::OK, "ready")
                    }
                }
            }),
        );
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("Failed to listen on {addr} for metrics: {e}"))?;
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await?;
    Ok(())
}

/// A `SELECT 1` within two seconds.
async fn database_answers(pool: &PgPool) -> bool {
    let ping = sqlx::query("SELECT 1").execute(pool);
    matches!(
        tokio::time::timeout(std::time::Duration::from_secs(2), ping).await,
        Ok(Ok(_))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_of_known_label_values_exist_at_zero_before_anything_happens() {
        let rendered = METRICS.render();
        for series in [
            r#"ebox_consent_decisions_total{decision="no-digital-user"} 0"#,
            r#"ebox_intake_decisions_total{code="INVALID_SSIN",status="rejected"} 0"#,
            r#"ebox_intake_decisions_total{code="UNKNOWN_SENDER",status="dead_letter"} 0"#,
            r#"ebox_notifications_total{channel="email",result="failed"} 0"#,
            r#"ebox_notifications_total{channel="none",result="skipped"} 0"#,
        ] {
            assert!(rendered.contains(series), "no {series} in\n{rendered}");
        }
        // Never counted together: no series for them.
        assert!(!rendered.contains(r#"ebox_notifications_total{channel="none",result="sent"}"#));
        assert!(!rendered.contains(r#"code="ACCEPTED",status="rejected""#));
    }

    #[test]
    fn a_starting_consumer_or_job_brings_its_series_at_zero() {
        METRICS.consumer_started(Stage::ConsentUpdates, "ebox.test-queue");
        METRICS.job_started("test-job");
        METRICS.publishes_to("ebox.test-exchange");
        let rendered = METRICS.render();
        for series in [
            r#"ebox_deliveries_total{outcome="dead_letter",queue="ebox.test-queue"} 0"#,
            r#"ebox_transient_failures_total{queue="ebox.test-queue"} 0"#,
            r#"ebox_internal_refused_total{stage="consent-updates"} 0"#,
            r#"ebox_message_handling_seconds_count{stage="consent-updates"} 0"#,
            r#"ebox_queue_wait_seconds_count{stage="consent-updates"} 0"#,
            r#"ebox_job_passes_total{job="test-job",result="failed"} 0"#,
            r#"ebox_publishes_total{exchange="ebox.test-exchange",result="failed"} 0"#,
        ] {
            assert!(rendered.contains(series), "no {series} in\n{rendered}");
        }
    }

    #[test]
    fn a_consumer_counts_as_connected_while_its_guard_lives() {
        let queue = "ebox.test-connected";
        METRICS.consumer_started(Stage::ConsentUpdates, queue);
        let series = format!(r#"ebox_amqp_connected{{queue="{queue}"}}"#);
        assert!(METRICS.render().contains(&format!("{series} 0")));
        let connected = METRICS.consumer_connected(queue);
        assert!(METRICS.render().contains(&format!("{series} 1")));
        drop(connected);
        assert!(METRICS.render().contains(&format!("{series} 0")));
    }

    #[tokio::test]
    async fn the_pool_gauges_are_read_from_the_pool_at_each_scrape() {
        // A lazy pool opens nothing until asked: no database is needed.
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(7)
            .connect_lazy("postgres://nobody@127.0.0.1:1/nothing")
            .expect("a lazy pool");
        METRICS.sample_pool(&pool);
        let rendered = METRICS.render();
        for series in [
            "ebox_db_pool_connections 0",
            "ebox_db_pool_idle 0",
            "ebox_db_pool_max 7",
        ] {
            assert!(rendered.contains(series), "no {series} in\n{rendered}");
        }
    }

    #[test]
    fn the_build_and_the_process_are_described() {
        let rendered = METRICS.render();
        assert!(rendered.contains(&format!(r#"ebox_build_info{{version="{VERSION}"}} 1"#)));
        #[cfg(target_os = "linux")]
        for metric in ["process_cpu_seconds_total", "process_resident_memory_bytes"] {
            assert!(rendered.contains(metric), "no {metric}");
        }
    }
}
