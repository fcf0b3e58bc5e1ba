//! W3C Trace Context (<https://www.w3.org/TR/trace-context/>): the `traceparent` and
//! `tracestate` a message or a request carries, so that one message's journey — the sender's
//! publication, every stage, the status events the sender hears, the portal's read — is one
//! trace.
//!
//! The service computes these itself: a delivery or a request continues the trace it arrived
//! with (a new span in it) or starts one, whether or not a trace exporter is installed. When
//! one is ([`crate::telemetry`]), the span ids are the exported spans' own, so what a message
//! carries and what the collector receives agree.
//!
//! A `traceparent` is read strictly (version `00`'s exact shape; a later version's first four
//! fields, as the specification asks): anything else is ignored and a new trace starts. It is
//! never a reason to refuse a message or a request.

use std::fmt;

/// The trace context of one span: what its messages and requests carry onwards.
#[derive(Clone, PartialEq, Eq)]
pub struct TraceContext {
    trace_id: [u8; 16],
    span_id: [u8; 8],
    flags: u8,
    /// The vendors' `tracestate`, passed along unchanged.
    tracestate: Option<String>,
}

/// The `sampled` trace flag.
const SAMPLED: u8 = 0x01;

/// The longest `tracestate` kept (the specification's limit for propagating it whole).
const TRACESTATE_MAX_LEN: usize = 512;

/// The most list members a `tracestate` may have.
const TRACESTATE_MAX_MEMBERS: usize = 32;

impl TraceContext {
    /// Reads a `traceparent` (and its `tracestate`); `None` when the `traceparent` is not one.
    /// A `tracestate` that is not well formed is dropped, the `traceparent` kept.
    pub fn parse(traceparent: &str, tracestate: Option<&str>) -> Option<Self> {
        let (trace_id, span_id, flags) = parse_traceparent(traceparent)?;
        Some(Self {
            trace_id,
            span_id,
            flags,
            tracestate: tracestate.and_then(checked_tracestate),
        })
    }

    /// A span of a new trace, sampled: a downstream that records continues it.
    pub fn root() -> Self {
        Self {
            trace_id: nonzero_random(),
            span_id: nonzero_random(),
            flags: SAMPLED,
            tracestate: None,
        }
    }

    /// A new span in this trace, under this one.
    pub fn child(&self) -> Self {
        Self {
            span_id: nonzero_random(),
            ..self.clone()
        }
    }

    /// This context as seen from a span with ids `trace_id` and `span_id` (the exporter's),
    /// keeping the flags given and this context's `tracestate`.
    pub fn from_parts(
        trace_id: [u8; 16],
        span_id: [u8; 8],
        flags: u8,
        tracestate: Option<String>,
    ) -> Option<Self> {
        (trace_id != [0; 16] && span_id != [0; 8]).then_some(Self {
            trace_id,
            span_id,
            flags,
            tracestate,
        })
    }

    pub fn trace_id(&self) -> [u8; 16] {
        self.trace_id
    }

    pub fn span_id(&self) -> [u8; 8] {
        self.span_id
    }

    pub fn flags(&self) -> u8 {
        self.flags
    }

    pub fn tracestate(&self) -> Option<&str> {
        self.tracestate.as_deref()
    }

    /// The trace id in lower-case hex, as logs and collectors show it.
    pub fn trace_id_hex(&self) -> String {
        hex(&self.trace_id)
    }

    /// The span id in lower-case hex.
    pub fn span_id_hex(&self) -> String {
        hex(&self.span_id)
    }

    /// The `traceparent` header value (version `00`).
    pub fn traceparent(&self) -> String {
        format!(
            "00-{}-{}-{:02x}",
            self.trace_id_hex(),
            self.span_id_hex(),
            self.flags
        )
    }
}

impl fmt::Debug for TraceContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("TraceContext")
            .field(&self.traceparent())
            .finish()
    }
}

/// `(trace-id, parent-id, flags)` of a `traceparent`, or `None`.
fn parse_traceparent(value: &str) -> Option<([u8; 16], [u8; 8], u8)> {
    let value = value.as_bytes();
    // version "-" trace-id "-" parent-id "-" flags: 2 + 1 + 32 + 1 + 16 + 1 + 2.
    const LEN: usize = 55;
    let version = lower_hex::<1>(value.get(0..2)?)?[0];
    match version {
        0xff => return None,
        // Version 00 is exactly this long.
        0x00 if value.len() != LEN => return None,
        // A later version may add fields after a dash.
        _ if value.len() > LEN && value[LEN] != b'-' => return None,
        _ if value.len() < LEN => return None,
        _ => {}
    }
    if value[2] != b'-' || value[35] != b'-' || value[52] != b'-' {
        return None;
    }
    let trace_id = lower_hex::<16>(&value[3..35])?;
    let span_id = lower_hex::<8>(&value[36..52])?;
    let flags = lower_hex::<1>(&value[53..55])?[0];
    if trace_id == [0; 16] || span_id == [0; 8] {
        return None;
    }
    Some((trace_id, span_id, flags))
}

/// `N` bytes from `2 * N` lower-case hex digits (upper case is not a `traceparent`'s).
fn lower_hex<const N: usize>(digits: &[u8]) -> Option<[u8; N]> {
    if digits.len() != 2 * N {
        return None;
    }
    let nibble = |digit: u8| match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        _ => None,
    };
    let mut bytes = [0; N];
    for (byte, pair) in bytes.iter_mut().zip(digits.chunks_exact(2)) {
        *byte = (nibble(pair[0])? << 4) | nibble(pair[1])?;
    }
    Some(bytes)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// A `tracestate` worth passing on: at most 32 `key=value` members, printable ASCII, at most
/// 512 characters. Vendors' keys and values are not checked further: they are theirs.
fn checked_tracestate(value: &str) -> Option<String> {
    let value = value.trim();
    if value.is_empty()
        || value.len() > TRACESTATE_MAX_LEN
        || !value.bytes().all(|b| (0x20..0x7f).contains(&b))
    {
        return None;
    }
    let members: Vec<&str> = value
        .split(',')
        .map(str::trim)
        .filter(|member| !member.is_empty())
        .collect();
    let well_formed = members.iter().all(|member| {
        member
            .split_once('=')
            .is_some_and(|(key, value)| !key.is_empty() && !value.is_empty() && !key.contains(' '))
    });
    (well_formed && !members.is_empty() && members.len() <= TRACESTATE_MAX_MEMBERS)
        .then(|| members.join(","))
}

/// Random bytes, never all zero (an all-zero id is invalid). Falls back to the time and a
/// counter if the system's source fails: an id must be unique, not secret.
fn nonzero_random<const N: usize>() -> [u8; N] {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(1);
    let mut bytes = [0u8; N];
    if getrandom::fill(&mut bytes).is_err() || bytes == [0; N] {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_nanos());
        let seed = nanos ^ u128::from(COUNTER.fetch_add(1, Ordering::Relaxed));
        for (byte, source) in bytes.iter_mut().zip(seed.to_le_bytes().iter().cycle()) {
            *byte = *source;
        }
        bytes[0] |= 1;
    }
    bytes
}

tokio::task_local! {
    static CURRENT: TraceContext;
}

/// Runs `future` with `context` as the trace of the work in progress ([`current`]): the API
/// sets the request's, so that what the request publishes carries it.
pub async fn scope<F: std::future::Future>(context: TraceContext, future: F) -> F::Output {
    CURRENT.scope(context, future).await
}

/// The trace of the work in progress in this task, when one was set with [`scope`].
pub fn current() -> Option<TraceContext> {
    CURRENT.try_with(Clone::clone).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALID: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn a_well_formed_traceparent_is_read_and_written_back_the_same() {
        let context = TraceContext::parse(VALID, Some("congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"))
            .expect("a valid traceparent");
        assert_eq!(context.trace_id_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(context.span_id_hex(), "00f067aa0ba902b7");
        assert_eq!(context.flags(), 1);
        assert_eq!(context.traceparent(), VALID);
        assert_eq!(
            context.tracestate(),
            Some("congo=t61rcWkgMzE,rojo=00f067aa0ba902b7")
        );
    }

    #[test]
    fn anything_but_a_strict_traceparent_is_ignored() {
        for malformed in [
            "",
            "garbage",
            // Upper-case hex.
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-01",
            // All-zero trace id, all-zero parent id.
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            // The forbidden version, and version 00 with something after it.
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            // Too short, wrong separators, non-hex.
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00_4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7_01",
            "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",
            " 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            // A later version's fields must follow a dash.
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x",
        ] {
            assert_eq!(TraceContext::parse(malformed, None), None, "{malformed:?}");
        }
    }

    #[test]
    fn a_later_version_is_read_for_its_first_four_fields() {
        let context = TraceContext::parse(
            "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-comes-next",
            None,
        )
        .expect("a future version is understood");
        assert_eq!(context.traceparent(), VALID, "written back as version 00");
    }

    #[test]
    fn a_malformed_tracestate_is_dropped_and_the_traceparent_kept() {
        for tracestate in ["", "no-equals", "=value", "key=", &"a=b,".repeat(40)] {
            let context = TraceContext::parse(VALID, Some(tracestate)).expect("traceparent");
            assert_eq!(context.tracestate(), None, "{tracestate:?}");
        }
    }

    #[test]
    fn a_child_continues_the_trace_with_a_span_of_its_own() {
        let parent = TraceContext::parse(VALID, Some("congo=t61rcWkgMzE")).expect("valid");
        let child = parent.child();
        assert_eq!(child.trace_id(), parent.trace_id());
        assert_ne!(child.span_id(), parent.span_id());
        assert_eq!(child.flags(), parent.flags());
        assert_eq!(child.tracestate(), parent.tracestate());
        let root = TraceContext::root();
        assert_ne!(root.trace_id(), parent.trace_id());
        assert_eq!(
            TraceContext::parse(&root.traceparent(), None),
            Some(root.clone()),
            "what the service writes, it reads"
        );
    }

    #[tokio::test]
    async fn the_current_trace_is_the_one_of_the_scope_only() {
        assert_eq!(current(), None);
        let context = TraceContext::root();
        let seen = scope(context.clone(), async { current() }).await;
        assert_eq!(seen, Some(context));
        assert_eq!(current(), None);
    }
}
