//! What every process of the service needs around its work:
//!
//! - [`config`]: the `EBOX_*` settings, validated at start-up with every problem reported;
//! - [`telemetry`]: logs (JSON lines by default) and traces (exported over OTLP when
//!   `OTEL_EXPORTER_OTLP_ENDPOINT` is set);
//! - [`trace`]: W3C trace context, what messages and requests carry from stage to stage;
//! - [`metrics`]: every Prometheus metric, named in one place, and the probe server;
//! - [`db`]: the PostgreSQL pool and the schema migrations;
//! - [`failpoint`]: `EBOX_FAILPOINT`, the fault matrix's crash points (a no-op when unset);
//! - [`internal_events`]: one struct per thing that happens, which logs it and counts it;
//! - [`jobs`]: background jobs (sweepers, dispatchers) with the same shutdown, health and
//!   metrics as the queue consumers;
//! - [`liveness`]: whether every loop still makes progress (`/livez`).

pub mod config;
pub mod db;
pub mod failpoint;
pub mod internal_events;
pub mod jobs;
pub mod liveness;
pub mod metrics;
pub mod telemetry;
pub mod trace;
