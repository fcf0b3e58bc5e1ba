//! Logging: JSON lines by default — the event's fields at the top level, the delivery's under
//! `span` (`stage`, `message_id` = the eBox message id, `sender_reference`, `sender`,
//! `event_id`, `correlation_id`; see `queues::driver`), never a national number — and
//! human-readable text for development. The API's access log is target `ebox::access`.

use crate::config::LogFormat;
use tracing_subscriber::EnvFilter;

/// Installs the global subscriber. Calling it twice is harmless (the second call is ignored),
/// which lets tests start several workers in one process.
pub fn init(filter: &str, format: LogFormat) {
    let filter = EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
        LogFormat::Text => builder.try_init(),
    };
}
