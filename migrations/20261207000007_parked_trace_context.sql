-- A parked publish keeps the W3C trace context it was made in (issue #12, "Traces and logs"),
-- so that published again it is still part of its message's trace. Absent on rows parked
-- before: those are published in a new trace.
ALTER TABLE parked_publishes
    ADD COLUMN traceparent text,
    ADD COLUMN tracestate  text;
