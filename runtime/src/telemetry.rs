//! Logs and traces.
//!
//! Logs: JSON lines by default, flat — the event's fields and those of the spans it happened
//! in at the top level (`stage`, `message_id` = the eBox message id, `sender_reference`,
//! `sender`, `event_id`, `correlation_id`; see `queues::driver`), and `trace_id`/`span_id`
//! when the line belongs to a delivery, a publish or an API request — never a national number;
//! human-readable text for development. The API's access log is target `ebox::access`.
//!
//! Traces: every delivery, publish and API request is a span of the trace its message or
//! request carried (W3C `traceparent`, [`crate::trace`]), or of a new one; [`start`] gives a
//! span its trace context, which the driver and the publisher propagate. The context exists
//! whether or not anything is exported. Spans are exported over OTLP/HTTP only when
//! `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set
//! ([`crate::config::TraceExport`]), in batches, from a thread of the SDK's; [`Telemetry::shutdown`]
//! exports what is left when the process ends. Otherwise nothing is installed: no exporter, no
//! thread, no error line.

use crate::config::{LogFormat, OtlpProtocol, TraceExport};
use crate::trace::TraceContext;
use opentelemetry::trace::{SpanContext, Status, TraceContextExt as _, TraceFlags, TraceState};
use opentelemetry::{KeyValue, Value};
use opentelemetry_sdk::trace::SdkTracerProvider;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use tracing::{Event, Span, Subscriber};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::fmt::format::{JsonFields, Writer};
use tracing_subscriber::fmt::time::{FormatTime as _, SystemTime};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{Layer, Registry};

/// What was installed, to be shut down when the process ends.
#[derive(Default)]
pub struct Telemetry {
    /// Present when spans are exported.
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Exports the spans still buffered and stops the exporter (at most the exporter's timeout);
    /// nothing to do when nothing is exported.
    pub async fn shutdown(self) {
        let Some(provider) = self.provider else {
            return;
        };
        // Blocking: the export runs on the SDK's thread, its HTTP requests on this runtime.
        let stopped = tokio::task::spawn_blocking(move || provider.shutdown()).await;
        if let Ok(Err(error)) = stopped {
            eprintln!("traces: the last spans could not be exported: {error}");
        }
    }
}

/// Set once spans are exported: [`start`] then takes the exported span's ids.
static EXPORTING: AtomicBool = AtomicBool::new(false);

/// Installs the global subscriber for logs only. Calling it twice is harmless (the second call
/// is ignored), which lets tests start several workers in one process.
pub fn init(filter: &str, format: LogFormat) -> Telemetry {
    init_with_traces(filter, format, None, "ebox").unwrap_or_default()
}

/// Installs the global subscriber: logs as `filter` and `format` say, and, when `traces` is
/// set, the trace exporter, the resource named `service_name` unless `OTEL_SERVICE_NAME` says
/// otherwise. Spans are exported whatever `filter` keeps (at `info` and above). Must run inside
/// the Tokio runtime (the exporter's HTTP client uses it). A second call installs nothing.
pub fn init_with_traces(
    filter: &str,
    format: LogFormat,
    traces: Option<&TraceExport>,
    service_name: &str,
) -> anyhow::Result<Telemetry> {
    let filter = EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let logs = match format {
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .event_format(FlatJson)
            .fmt_fields(JsonFields::new())
            .with_writer(std::io::stderr)
            .with_filter(filter)
            .boxed(),
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_filter(filter)
            .boxed(),
    };
    let provider = traces
        .map(|traces| tracer_provider(traces, service_name))
        .transpose()?;
    let spans = provider.as_ref().map(|provider| {
        use opentelemetry::trace::TracerProvider as _;
        tracing_opentelemetry::layer()
            .with_tracer(provider.tracer("ebox"))
            .with_threads(false)
            .with_location(false)
            .with_filter(exported_spans())
    });
    let installed = Registry::default()
        .with(logs)
        .with(spans)
        .try_init()
        .is_ok();
    match provider {
        Some(provider) if installed => {
            EXPORTING.store(true, Ordering::Release);
            Ok(Telemetry {
                provider: Some(provider),
            })
        }
        Some(provider) => {
            // Another subscriber was there first: this exporter would never see a span.
            let _ = provider.shutdown();
            Ok(Telemetry::default())
        }
        None => Ok(Telemetry::default()),
    }
}

/// What is exported: the service's spans and the events in them from `info` on, whatever
/// `EBOX_LOG` keeps; not the broker client's connection loops (one endless span each).
fn exported_spans() -> Targets {
    Targets::new()
        .with_default(LevelFilter::INFO)
        .with_target("lapin", LevelFilter::WARN)
}

/// The SDK's provider, batching spans to the OTLP/HTTP exporter.
fn tracer_provider(traces: &TraceExport, service_name: &str) -> anyhow::Result<SdkTracerProvider> {
    use opentelemetry_otlp::{Protocol, WithExportConfig as _, WithHttpConfig as _};
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_http_client(ExportClient::new()?)
        .with_endpoint(traces.endpoint.as_str())
        .with_protocol(match traces.protocol {
            OtlpProtocol::HttpProtobuf => Protocol::HttpBinary,
            OtlpProtocol::HttpJson => Protocol::HttpJson,
        })
        .build()
        .map_err(|error| anyhow::anyhow!("the OTLP trace exporter: {error}"))?;
    let service_name = traces
        .service_name
        .clone()
        .unwrap_or_else(|| service_name.to_owned());
    // `builder()` reads OTEL_RESOURCE_ATTRIBUTES; the service name set here wins.
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name(service_name)
        .build();
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource)
        .build())
}

/// The exporter's HTTP client: the workspace's reqwest (rustls, no OpenSSL). The SDK exports
/// from a thread of its own, outside any Tokio runtime; each request runs on the runtime that
/// installed the exporter.
#[derive(Debug)]
struct ExportClient {
    client: reqwest::Client,
    runtime: tokio::runtime::Handle,
}

impl ExportClient {
    fn new() -> anyhow::Result<Self> {
        Ok(Self {
            client: reqwest::Client::builder().build()?,
            runtime: tokio::runtime::Handle::try_current().map_err(|_| {
                anyhow::anyhow!("the trace exporter must be installed inside the Tokio runtime")
            })?,
        })
    }
}

impl opentelemetry_http::HttpClient for ExportClient {
    fn send_bytes<'life0, 'async_trait>(
        &'life0 self,
        request: axum::http::Request<axum::body::Bytes>,
    ) -> std::pin::Pin<
        Box<
            dyn std::future::Future<
                    Output = Result<
                        axum::http::Response<axum::body::Bytes>,
                        opentelemetry_http::HttpError,
                    >,
                > + Send
                + 'async_trait,
        >,
    >
    where
        'life0: 'async_trait,
        Self: 'async_trait,
    {
        let client = self.client.clone();
        let sent = self.runtime.spawn(async move {
            let request = reqwest::Request::try_from(request)?;
            let response = client.execute(request).await?;
            let mut answer = axum::http::Response::builder().status(response.status());
            if let Some(headers) = answer.headers_mut() {
                *headers = response.headers().clone();
            }
            Ok::<_, opentelemetry_http::HttpError>(answer.body(response.bytes().await?)?)
        });
        Box::pin(async move { sent.await? })
    }
}

/// What a span stands for, in OpenTelemetry's terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpanKind {
    /// An API request.
    Server,
    /// A stage handling a delivery.
    Consumer,
    /// A publish.
    Producer,
}

impl SpanKind {
    fn as_str(self) -> &'static str {
        match self {
            SpanKind::Server => "server",
            SpanKind::Consumer => "consumer",
            SpanKind::Producer => "producer",
        }
    }
}

/// Gives `span` its trace context: a new span in `parent`'s trace, or in a new trace; records
/// it in the span's `trace_id` and `span_id` fields and returns it. When spans are exported,
/// the ids are the exported span's, named `name`, of `kind`; then `span` must be new (not yet
/// entered). The span must declare `trace_id`, `span_id`, `otel.name` and `otel.kind`, `Empty`:
/// the last two are recorded only for the exporter, so the log lines never carry them.
pub fn start(
    span: &Span,
    name: impl std::fmt::Display,
    kind: SpanKind,
    parent: Option<&TraceContext>,
) -> TraceContext {
    if EXPORTING.load(Ordering::Acquire) {
        span.record("otel.name", tracing::field::display(name));
        span.record("otel.kind", kind.as_str());
    }
    let context = exported(span, parent).unwrap_or_else(|| match parent {
        Some(parent) => parent.child(),
        None => TraceContext::root(),
    });
    span.record("trace_id", context.trace_id_hex());
    span.record("span_id", context.span_id_hex());
    context
}

/// The exported span's context, when `span` is exported.
fn exported(span: &Span, parent: Option<&TraceContext>) -> Option<TraceContext> {
    if !EXPORTING.load(Ordering::Acquire) {
        return None;
    }
    let parent_context = match parent {
        Some(parent) => opentelemetry::Context::new().with_remote_span_context(SpanContext::new(
            opentelemetry::trace::TraceId::from_bytes(parent.trace_id()),
            opentelemetry::trace::SpanId::from_bytes(parent.span_id()),
            TraceFlags::new(parent.flags()),
            true,
            TraceState::NONE,
        )),
        // Not the span it was created in: a delivery or a request starts its own trace.
        None => opentelemetry::Context::new(),
    };
    span.set_parent(parent_context).ok()?;
    let context = span.context();
    let own = context.span().span_context().clone();
    TraceContext::from_parts(
        own.trace_id().to_bytes(),
        own.span_id().to_bytes(),
        own.trace_flags().to_u8(),
        parent.and_then(|parent| parent.tracestate().map(str::to_owned)),
    )
}

/// A messaging operation, described as OpenTelemetry's semantic conventions for RabbitMQ ask:
/// set on the exported span only (the log lines have their own fields).
pub struct Messaging<'a> {
    pub operation: MessagingOperation,
    /// The exchange (`messaging.destination.name`): `""` for the default exchange.
    pub exchange: &'a str,
    pub routing_key: &'a str,
    /// The AMQP `message_id`.
    pub message_id: Option<&'a str>,
    /// The queue consumed (`messaging.destination.subscription.name`).
    pub queue: Option<&'a str>,
    pub delivery_tag: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessagingOperation {
    /// A stage handles a delivery (span kind consumer).
    Process,
    /// A message is sent (span kind producer).
    Publish,
}

impl MessagingOperation {
    fn as_str(self) -> &'static str {
        match self {
            MessagingOperation::Process => "process",
            MessagingOperation::Publish => "publish",
        }
    }
}

/// Sets `operation`'s attributes on `span`'s exported span.
pub fn messaging(span: &Span, operation: &Messaging<'_>) {
    if !EXPORTING.load(Ordering::Acquire) {
        return;
    }
    let mut attributes = vec![
        KeyValue::new("messaging.system", "rabbitmq"),
        KeyValue::new("messaging.operation.type", operation.operation.as_str()),
        KeyValue::new(
            "messaging.operation.name",
            match operation.operation {
                MessagingOperation::Process => "process",
                MessagingOperation::Publish => "publish",
            },
        ),
        KeyValue::new("messaging.destination.name", operation.exchange.to_owned()),
    ];
    if !operation.routing_key.is_empty() {
        attributes.push(KeyValue::new(
            "messaging.rabbitmq.destination.routing_key",
            operation.routing_key.to_owned(),
        ));
    }
    if let Some(id) = operation.message_id {
        attributes.push(KeyValue::new("messaging.message.id", id.to_owned()));
    }
    if let Some(queue) = operation.queue {
        attributes.push(KeyValue::new(
            "messaging.destination.subscription.name",
            queue.to_owned(),
        ));
    }
    if let Some(tag) = operation.delivery_tag {
        attributes.push(KeyValue::new(
            "messaging.rabbitmq.message.delivery_tag",
            Value::I64(i64::try_from(tag).unwrap_or(i64::MAX)),
        ));
    }
    for attribute in attributes {
        span.set_attribute(attribute.key, attribute.value);
    }
}

/// Sets an HTTP server span's attributes (`http.request.method`, `http.route`).
pub fn http_request(span: &Span, method: &str, route: &str) {
    if EXPORTING.load(Ordering::Acquire) {
        span.set_attribute("http.request.method", method.to_owned());
        span.set_attribute("http.route", route.to_owned());
    }
}

/// Sets an HTTP server span's response status, an error from 500 on.
pub fn http_response(span: &Span, status: u16) {
    if EXPORTING.load(Ordering::Acquire) {
        span.set_attribute("http.response.status_code", i64::from(status));
        if status >= 500 {
            span.set_status(Status::error(""));
        }
    }
}

/// Marks `span`'s exported span as failed, with why.
pub fn failed(span: &Span, why: &str) {
    if EXPORTING.load(Ordering::Acquire) {
        span.set_status(Status::error(why.to_owned()));
    }
}

/// JSON lines with every field at the top level: the event's, and those of the spans it
/// happened in (outermost first, so the innermost span's wins, and the event's over any span's).
/// `otel.*` fields steer the exporter and are left out. The span fields are kept as JSON by
/// [`JsonFields`].
struct FlatJson;

impl<S, N> FormatEvent<S, N> for FlatJson
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> std::fmt::Result {
        let mut fields = serde_json::Map::new();
        if let Some(scope) = ctx.event_scope() {
            for span in scope.from_root() {
                let extensions = span.extensions();
                let Some(recorded) = extensions.get::<FormattedFields<N>>() else {
                    continue;
                };
                if let Ok(serde_json::Value::Object(recorded)) =
                    serde_json::from_str::<serde_json::Value>(recorded.as_str())
                {
                    fields.extend(
                        recorded
                            .into_iter()
                            .filter(|(key, _)| !key.starts_with("otel.")),
                    );
                }
            }
        }
        event.record(&mut JsonVisitor(&mut fields));
        let mut timestamp = String::new();
        SystemTime.format_time(&mut Writer::new(&mut timestamp))?;
        let mut line = String::with_capacity(256);
        write!(
            line,
            "{{\"timestamp\":{},\"level\":{}",
            json_string(&timestamp),
            json_string(event.metadata().level().as_str())
        )?;
        for (key, value) in &fields {
            write!(line, ",{}:{value}", json_string(key))?;
        }
        write!(
            line,
            ",\"target\":{}}}",
            json_string(event.metadata().target())
        )?;
        writeln!(writer, "{line}")
    }
}

/// `text` as a JSON string literal.
fn json_string(text: &str) -> String {
    serde_json::Value::from(text).to_string()
}

/// An event's fields as JSON values.
struct JsonVisitor<'a>(&'a mut serde_json::Map<String, serde_json::Value>);

impl tracing::field::Visit for JsonVisitor<'_> {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.into());
    }

    fn record_i64(&mut self, field: &tracing::field::Field, value: i64) {
        self.0.insert(field.name().to_owned(), value.into());
    }

    fn record_u64(&mut self, field: &tracing::field::Field, value: u64) {
        self.0.insert(field.name().to_owned(), value.into());
    }

    fn record_f64(&mut self, field: &tracing::field::Field, value: f64) {
        self.0.insert(field.name().to_owned(), value.into());
    }

    fn record_bool(&mut self, field: &tracing::field::Field, value: bool) {
        self.0.insert(field.name().to_owned(), value.into());
    }

    fn record_error(
        &mut self,
        field: &tracing::field::Field,
        value: &(dyn std::error::Error + 'static),
    ) {
        self.0
            .insert(field.name().to_owned(), value.to_string().into());
    }

    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.0
            .insert(field.name().to_owned(), format!("{value:?}").into());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};
    use tracing::field;

    /// Everything written, for a test to read.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            if let Ok(mut all) = self.0.lock() {
                all.extend_from_slice(bytes);
            }
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Captured {
        fn lines(&self) -> Vec<serde_json::Value> {
            let all = self.0.lock().map(|all| all.clone()).unwrap_or_default();
            String::from_utf8_lossy(&all)
                .lines()
                .map(|line| serde_json::from_str(line).expect("each line is JSON"))
                .collect()
        }
    }

    #[test]
    fn a_json_line_has_the_fields_of_its_event_and_of_its_spans_at_the_top_level() {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = Registry::default().with(
            tracing_subscriber::fmt::layer()
                .event_format(FlatJson)
                .fmt_fields(JsonFields::new())
                .with_writer(move || writer.clone()),
        );
        tracing::subscriber::with_default(subscriber, || {
            let outer = tracing::info_span!("outer", stage = "store", queue = "outer-queue");
            let _outer = outer.enter();
            let span = tracing::info_span!(
                "delivery",
                otel.name = field::Empty,
                otel.kind = field::Empty,
                queue = "ebox.store",
                message_id = "d2ae4cb4-cba1-5a57-9a9c-d07a8601193f",
                trace_id = field::Empty,
                span_id = field::Empty,
            );
            let context = start(&span, "process ebox.store", SpanKind::Consumer, None);
            span.in_scope(|| tracing::info!(delivery_tag = 7u64, "handled"));
            tracing::warn!(queue = "the event's", "outside the delivery");
            assert_eq!(context.trace_id_hex().len(), 32);
        });
        let lines = captured.lines();
        assert_eq!(lines.len(), 2, "{lines:?}");
        let handled = &lines[0];
        assert_eq!(handled["message"], "handled");
        assert_eq!(handled["level"], "INFO");
        assert_eq!(handled["stage"], "store", "an outer span's field");
        assert_eq!(
            handled["queue"], "ebox.store",
            "the inner span's field wins"
        );
        assert_eq!(
            handled["message_id"],
            "d2ae4cb4-cba1-5a57-9a9c-d07a8601193f"
        );
        assert_eq!(handled["delivery_tag"], 7);
        assert_eq!(handled["trace_id"].as_str().map(str::len), Some(32));
        assert_eq!(handled["span_id"].as_str().map(str::len), Some(16));
        assert!(handled["timestamp"].is_string());
        assert!(handled["target"].is_string());
        assert!(handled.get("span").is_none(), "nothing nested: {handled}");
        assert!(handled.get("otel.kind").is_none(), "{handled}");
        let outside = &lines[1];
        assert_eq!(outside["queue"], "the event's", "the event's field wins");
        assert!(outside.get("trace_id").is_none(), "{outside}");
    }

    #[test]
    fn without_an_exporter_a_span_continues_its_parent_or_starts_a_trace() {
        let parent = TraceContext::parse(
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            None,
        )
        .expect("valid");
        let span = tracing::info_span!(
            "delivery",
            otel.name = field::Empty,
            otel.kind = field::Empty,
            trace_id = field::Empty,
            span_id = field::Empty
        );
        let child = start(&span, "process q", SpanKind::Consumer, Some(&parent));
        assert_eq!(child.trace_id(), parent.trace_id());
        assert_ne!(child.span_id(), parent.span_id());
        let root = start(&span, "process q", SpanKind::Consumer, None);
        assert_ne!(root.trace_id(), parent.trace_id());
    }

    /// What the local collector received: path, content type, body.
    type Received = (String, String, Vec<u8>);

    /// A local OTLP/HTTP receiver: every request it gets, sent on the channel.
    async fn collector() -> (String, tokio::sync::mpsc::UnboundedReceiver<Received>) {
        let (sender, received) = tokio::sync::mpsc::unbounded_channel();
        let app = axum::Router::new().fallback(
            move |uri: axum::http::Uri, headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                let sender = sender.clone();
                async move {
                    let content_type = headers
                        .get(axum::http::header::CONTENT_TYPE)
                        .and_then(|value| value.to_str().ok())
                        .unwrap_or_default()
                        .to_owned();
                    let _ = sender.send((uri.path().to_owned(), content_type, body.to_vec()));
                    axum::http::StatusCode::OK
                }
            },
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a free port");
        let addr = listener.local_addr().expect("an address");
        tokio::spawn(async move { axum::serve(listener, app).await });
        (format!("http://{addr}"), received)
    }

    fn contains(haystack: &[u8], needle: &[u8]) -> bool {
        haystack
            .windows(needle.len())
            .any(|window| window == needle)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn spans_are_exported_over_otlp_http_with_the_ids_they_propagate() {
        use opentelemetry::trace::TracerProvider as _;
        let (root, mut received) = collector().await;
        let provider = tracer_provider(
            &TraceExport {
                endpoint: format!("{root}/v1/traces"),
                protocol: OtlpProtocol::HttpProtobuf,
                service_name: None,
            },
            "ebox-telemetry-test",
        )
        .expect("an exporter");
        let subscriber = Registry::default()
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("ebox")));
        EXPORTING.store(true, Ordering::Release);
        let parent = TraceContext::parse(
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            None,
        )
        .expect("valid");
        let context = tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!(
                "delivery",
                otel.name = field::Empty,
                otel.kind = field::Empty,
                trace_id = field::Empty,
                span_id = field::Empty,
            );
            let context = start(
                &span,
                "process ebox.telemetry-test",
                SpanKind::Consumer,
                Some(&parent),
            );
            messaging(
                &span,
                &Messaging {
                    operation: MessagingOperation::Process,
                    exchange: "ebox.internal",
                    routing_key: "ebox.telemetry-test",
                    message_id: Some("m-1"),
                    queue: Some("ebox.telemetry-test"),
                    delivery_tag: Some(1),
                },
            );
            context
        });
        assert_eq!(context.trace_id(), parent.trace_id(), "the trace continues");
        assert_ne!(context.span_id(), parent.span_id());
        // Shutting down exports what is buffered: nothing was sent before (the batch is not due).
        let stopped = tokio::task::spawn_blocking(move || provider.shutdown())
            .await
            .expect("joined");
        assert!(stopped.is_ok(), "{stopped:?}");
        let (path, content_type, body) =
            tokio::time::timeout(std::time::Duration::from_secs(10), received.recv())
                .await
                .expect("the collector received spans")
                .expect("a request");
        assert_eq!(path, "/v1/traces");
        assert_eq!(content_type, "application/x-protobuf");
        for needle in [
            &context.trace_id()[..],
            &context.span_id()[..],
            &parent.span_id()[..],
            b"process ebox.telemetry-test",
            b"ebox-telemetry-test",
            b"messaging.destination.name",
            b"rabbitmq",
        ] {
            assert!(
                contains(&body, needle),
                "{needle:?} is not in what was exported"
            );
        }
    }
}
