//! The confirmed publisher: every publish is mandatory and waits for the broker's confirm, for
//! at most [`CONFIRM_TIMEOUT`]. A nack, a `basic.return` (nothing bound to receive the
//! message) or a confirm that does not come is a failure of that message alone.
//!
//! Every publish is a span (`publish`, kind producer) in the trace of the span that made the
//! message ([`Outgoing::trace`]), or of a new trace; the message carries that span's
//! `traceparent` ([`crate::propagation`]), so whoever consumes it continues the trace.

use crate::propagation;
use lapin::Confirmation;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::types::ShortString;
use lapin::{BasicProperties, Channel, Connection};
use runtime::internal_events::{MessagePublished, PublishResult};
use runtime::telemetry::{self, Messaging, MessagingOperation, SpanKind};
use runtime::trace::TraceContext;
use serde::Serialize;
use std::time::Duration;
use tracing::{Span, field, info_span};

/// Persistent delivery mode.
const PERSISTENT: u8 = 2;

/// How long a confirm may take. Past it the broker is stuck for this message (a queue leader
/// failing over, a resource alarm); the caller tries again on a fresh channel or parks it.
pub const CONFIRM_TIMEOUT: Duration = Duration::from_secs(10);

/// A message to publish once the effects that justify it are committed: a persistent JSON
/// message, its AMQP properties built when it is sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    pub exchange: String,
    pub routing_key: String,
    /// The AMQP `type`.
    pub kind: String,
    /// Makes a re-publication recognisable downstream.
    pub message_id: String,
    pub correlation_id: Option<String>,
    /// Unix seconds, when the message was made (the AMQP `timestamp`).
    pub timestamp: u64,
    pub body: Vec<u8>,
    /// The trace context of the span that made it (a delivery, a request): its publish is a
    /// span under that one. `None`: the publish starts a new trace.
    pub trace: Option<TraceContext>,
}

impl Outgoing {
    /// A persistent JSON message of AMQP type `kind`.
    pub fn json<T: Serialize>(
        exchange: &str,
        routing_key: &str,
        kind: &str,
        message_id: &str,
        correlation_id: Option<&str>,
        body: &T,
    ) -> serde_json::Result<Self> {
        Ok(Self {
            exchange: exchange.to_owned(),
            routing_key: routing_key.to_owned(),
            kind: kind.to_owned(),
            message_id: message_id.to_owned(),
            correlation_id: correlation_id.map(str::to_owned),
            timestamp: u64::try_from(chrono::Utc::now().timestamp()).unwrap_or_default(),
            body: serde_json::to_vec(body)?,
            trace: None,
        })
    }

    /// The same message, made in the span of `trace`.
    pub fn traced(self, trace: Option<TraceContext>) -> Self {
        Self { trace, ..self }
    }

    /// Its AMQP properties, with the `traceparent` of `published_in`, its publish span.
    pub fn properties(&self, published_in: &TraceContext) -> BasicProperties {
        let properties = BasicProperties::default()
            .with_content_type(ShortString::from("application/json"))
            .with_delivery_mode(PERSISTENT)
            .with_type(ShortString::from(self.kind.as_str()))
            .with_message_id(ShortString::from(self.message_id.as_str()))
            .with_app_id(ShortString::from("ebox"))
            .with_timestamp(self.timestamp)
            .with_headers(propagation::with_context(None, published_in));
        match &self.correlation_id {
            Some(id) => properties.with_correlation_id(ShortString::from(id.as_str())),
            None => properties,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("the broker connection failed while publishing: {0}")]
    Broker(#[from] lapin::Error),
    #[error("the broker refused a message for {exchange}/{routing_key} (nack)")]
    Nacked {
        exchange: String,
        routing_key: String,
    },
    #[error("nothing is bound to receive {exchange}/{routing_key} ({reply_text})")]
    Unroutable {
        exchange: String,
        routing_key: String,
        reply_text: String,
    },
    #[error(
        "the broker did not confirm a message for {exchange}/{routing_key} within {CONFIRM_TIMEOUT:?}"
    )]
    Timeout {
        exchange: String,
        routing_key: String,
    },
}

/// A channel in confirm mode. One per worker: publishes are pipelined, then all confirms awaited.
pub struct Publisher {
    channel: Channel,
}

impl Publisher {
    pub async fn open(connection: &Connection) -> lapin::Result<Self> {
        let channel = connection.create_channel().await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        Ok(Self { channel })
    }

    /// Replaces the channel with a fresh one: a channel that nacked (a queue leader failing
    /// over) may go on nacking while a new one publishes fine.
    pub async fn reopen(&mut self, connection: &Connection) -> lapin::Result<()> {
        let fresh = Self::open(connection).await?;
        let stale = std::mem::replace(&mut self.channel, fresh.channel);
        let _ = stale.close(200, "replaced".into()).await;
        Ok(())
    }

    /// Publishes every message and returns once the broker has confirmed all of them; fails on
    /// the first refusal.
    pub async fn publish_all(&self, messages: &[Outgoing]) -> Result<(), PublishError> {
        let refs: Vec<&Outgoing> = messages.iter().collect();
        match self.publish_each(&refs).await.into_iter().flatten().next() {
            Some(error) => Err(error),
            None => Ok(()),
        }
    }

    /// Publishes every message (pipelined), then waits for each confirm; returns, in order,
    /// `None` for each message the broker confirmed and the error of each it did not.
    pub async fn publish_each(&self, messages: &[&Outgoing]) -> Vec<Option<PublishError>> {
        let mut pending = Vec::with_capacity(messages.len());
        for message in messages {
            let (span, context) = publish_span(
                &message.exchange,
                &message.routing_key,
                Some(&message.message_id),
                message.trace.as_ref(),
            );
            let confirm = self
                .channel
                .basic_publish(
                    message.exchange.as_str().into(),
                    message.routing_key.as_str().into(),
                    BasicPublishOptions {
                        mandatory: true,
                        ..BasicPublishOptions::default()
                    },
                    &message.body,
                    message.properties(&context),
                )
                .await;
            pending.push((confirm, span));
        }
        let mut results = Vec::with_capacity(messages.len());
        for (message, (confirm, span)) in messages.iter().zip(pending) {
            let result = match confirm {
                Ok(confirm) => confirmed(&message.exchange, &message.routing_key, confirm).await,
                Err(error) => Err(error.into()),
            };
            if let Err(error) = &result {
                telemetry::failed(&span, &error.to_string());
            }
            let outcome = match result {
                Ok(()) => PublishResult::Confirmed,
                Err(_) => PublishResult::Failed,
            };
            MessagePublished {
                exchange: &message.exchange,
                result: outcome,
            }
            .emit();
            results.push(result.err());
        }
        results
    }

    /// Publishes one message as it is (a parked copy, a replay), and waits for its confirm. Its
    /// publish is a span in the trace its `traceparent` names, whose context it then carries.
    pub async fn publish_as_is(
        &self,
        exchange: &str,
        routing_key: &str,
        body: &[u8],
        properties: BasicProperties,
    ) -> Result<(), PublishError> {
        let (span, context) = publish_span(
            exchange,
            routing_key,
            properties.message_id().as_ref().map(ShortString::as_str),
            propagation::incoming(&properties).as_ref(),
        );
        let headers = propagation::with_context(properties.headers().as_ref(), &context);
        let properties = properties.with_headers(headers);
        let confirm = self
            .channel
            .basic_publish(
                exchange.into(),
                routing_key.into(),
                BasicPublishOptions {
                    mandatory: true,
                    ..BasicPublishOptions::default()
                },
                body,
                properties,
            )
            .await?;
        let result = confirmed(exchange, routing_key, confirm).await;
        if let Err(error) = &result {
            telemetry::failed(&span, &error.to_string());
        }
        MessagePublished {
            exchange,
            result: match result {
                Ok(()) => PublishResult::Confirmed,
                Err(_) => PublishResult::Failed,
            },
        }
        .emit();
        result
    }

    pub fn channel(&self) -> &Channel {
        &self.channel
    }
}

/// The span of one publish (it ends when dropped, after the confirm), under `parent` or in a
/// new trace, and the context the message carries.
fn publish_span(
    exchange: &str,
    routing_key: &str,
    message_id: Option<&str>,
    parent: Option<&TraceContext>,
) -> (Span, TraceContext) {
    let destination = if exchange.is_empty() {
        "amq.default"
    } else {
        exchange
    };
    let span = info_span!(
        parent: None,
        "publish",
        otel.name = field::Empty,
        otel.kind = field::Empty,
        exchange,
        trace_id = field::Empty,
        span_id = field::Empty,
    );
    let context = telemetry::start(
        &span,
        format_args!("publish {destination}"),
        SpanKind::Producer,
        parent,
    );
    telemetry::messaging(
        &span,
        &Messaging {
            operation: MessagingOperation::Publish,
            exchange,
            routing_key,
            message_id,
            queue: None,
            delivery_tag: None,
        },
    );
    (span, context)
}

/// Waits for one message's confirm, for at most [`CONFIRM_TIMEOUT`].
async fn confirmed(
    exchange: &str,
    routing_key: &str,
    confirm: lapin::PublisherConfirm,
) -> Result<(), PublishError> {
    let place = || (exchange.to_owned(), routing_key.to_owned());
    match tokio::time::timeout(CONFIRM_TIMEOUT, confirm).await {
        Err(_) => {
            let (exchange, routing_key) = place();
            Err(PublishError::Timeout {
                exchange,
                routing_key,
            })
        }
        Ok(Ok(Confirmation::Ack(None))) => Ok(()),
        Ok(Ok(Confirmation::Ack(Some(returned)))) => {
            let (exchange, routing_key) = place();
            Err(PublishError::Unroutable {
                exchange,
                routing_key,
                reply_text: returned.reply_text.to_string(),
            })
        }
        Ok(Ok(Confirmation::Nack(_) | Confirmation::NotRequested)) => {
            let (exchange, routing_key) = place();
            Err(PublishError::Nacked {
                exchange,
                routing_key,
            })
        }
        Ok(Err(error)) => Err(error.into()),
    }
}
