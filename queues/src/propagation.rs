//! W3C trace context in AMQP headers (`traceparent`, `tracestate`), as OpenTelemetry's
//! messaging conventions carry it: read from every delivery ([`incoming`]), written on every
//! message the service publishes ([`with_context`]). A sender may set them on its publication;
//! one that is not well formed is ignored (a new trace starts), never a reason to refuse the
//! message.

use lapin::BasicProperties;
use lapin::types::{AMQPValue, FieldTable};
use runtime::trace::TraceContext;

pub const TRACEPARENT: &str = "traceparent";
pub const TRACESTATE: &str = "tracestate";

/// The trace context a message carries, when its `traceparent` is well formed.
pub fn incoming(properties: &BasicProperties) -> Option<TraceContext> {
    let headers = properties.headers().as_ref()?;
    let traceparent = text(headers, TRACEPARENT)?;
    TraceContext::parse(&traceparent, text(headers, TRACESTATE).as_deref())
}

/// `headers` with `context`'s `traceparent` and `tracestate` instead of any they had.
pub fn with_context(headers: Option<&FieldTable>, context: &TraceContext) -> FieldTable {
    let mut copy = FieldTable::default();
    if let Some(headers) = headers {
        for (key, value) in headers.inner() {
            if !matches!(key.as_str(), TRACEPARENT | TRACESTATE) {
                copy.insert(key.clone(), value.clone());
            }
        }
    }
    copy.insert(
        TRACEPARENT.into(),
        AMQPValue::LongString(context.traceparent().into()),
    );
    if let Some(tracestate) = context.tracestate() {
        copy.insert(TRACESTATE.into(), AMQPValue::LongString(tracestate.into()));
    }
    copy
}

/// A header's text: a long or a short string of UTF-8 (what AMQP clients write for a string).
fn text(headers: &FieldTable, key: &str) -> Option<String> {
    match headers.inner().get(key)? {
        AMQPValue::LongString(value) => std::str::from_utf8(value.as_bytes())
            .ok()
            .map(str::to_owned),
        AMQPValue::ShortString(value) => Some(value.as_str().to_owned()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn carrying(headers: &[(&str, AMQPValue)]) -> BasicProperties {
        let mut table = FieldTable::default();
        for (key, value) in headers {
            table.insert((*key).into(), value.clone());
        }
        BasicProperties::default().with_headers(table)
    }

    const TRACEPARENT_VALUE: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn a_senders_traceparent_is_read_from_a_long_or_a_short_string() {
        for value in [
            AMQPValue::LongString(TRACEPARENT_VALUE.into()),
            AMQPValue::ShortString(TRACEPARENT_VALUE.into()),
        ] {
            let context = incoming(&carrying(&[
                (TRACEPARENT, value),
                (
                    TRACESTATE,
                    AMQPValue::LongString("congo=t61rcWkgMzE".into()),
                ),
            ]))
            .expect("a trace context");
            assert_eq!(context.traceparent(), TRACEPARENT_VALUE);
            assert_eq!(context.tracestate(), Some("congo=t61rcWkgMzE"));
        }
    }

    #[test]
    fn a_missing_malformed_or_mistyped_traceparent_gives_none() {
        assert_eq!(incoming(&BasicProperties::default()), None);
        for value in [
            AMQPValue::LongString("00-nope".into()),
            AMQPValue::LongInt(42),
            AMQPValue::LongString(TRACEPARENT_VALUE.to_uppercase().into()),
        ] {
            assert_eq!(incoming(&carrying(&[(TRACEPARENT, value)])), None);
        }
    }

    #[test]
    fn the_context_written_replaces_the_one_a_message_had_and_keeps_other_headers() {
        let before = carrying(&[
            (TRACEPARENT, AMQPValue::LongString(TRACEPARENT_VALUE.into())),
            (TRACESTATE, AMQPValue::LongString("old=state".into())),
            ("x-other", AMQPValue::LongString("kept".into())),
        ]);
        let context = TraceContext::root();
        let headers = with_context(before.headers().as_ref(), &context);
        let after = BasicProperties::default().with_headers(headers);
        assert_eq!(incoming(&after), Some(context));
        let inner = after.headers().as_ref().expect("headers").inner().clone();
        assert!(inner.contains_key("x-other"));
        assert!(!inner.contains_key(TRACESTATE), "the new context has none");
    }
}
