//! Every metric of the service, named in one place after Prometheus conventions
//! (`ebox_` prefix, `_total` for counters, `_seconds` for durations, bounded label values),
//! and the small HTTP server that exposes them with the health probes.

use axum::Router;
use axum::http::StatusCode;
use axum::routing::get;
use prometheus::{
    Gauge, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry, TextEncoder,
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
}

pub static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

impl Metrics {
    fn new() -> Self {
        let registry = Registry::new();
        let counter = |name, help, labels| counter(&registry, name, help, labels);
        let histogram =
            |name, help, label, buckets| histogram(&registry, name, help, label, buckets);
        Self {
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
            registry,
        }
    }

    pub fn render(&self) -> String {
        TextEncoder::new()
            .encode_to_string(&self.registry.gather())
            .unwrap_or_default()
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

/// Serves `/metrics`, `/livez` and `/readyz` until `shutdown` completes. The process is ready
/// when every consumer consumes, every background job's last pass succeeded, and the
/// database answers.
pub async fn serve(
    addr: SocketAddr,
    readiness: Vec<Readiness>,
    pool: PgPool,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let app = Router::new()
        .route("/metrics", get(|| async { METRICS.render() }))
        .route("/livez", get(|| async { "ok" }))
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
