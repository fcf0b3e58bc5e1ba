//! The confirmed publisher: every publish is mandatory and waits for the broker's confirm. A
//! nack, or a `basic.return` (nothing bound to receive the message), is a failure.

use lapin::Confirmation;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::types::ShortString;
use lapin::{BasicProperties, Channel, Connection};
use runtime::internal_events::{MessagePublished, PublishResult};
use serde::Serialize;

/// Persistent delivery mode.
const PERSISTENT: u8 = 2;

/// A message to publish once the effects that justify it are committed.
#[derive(Debug, Clone)]
pub struct Outgoing {
    pub exchange: String,
    pub routing_key: String,
    pub properties: BasicProperties,
    pub body: Vec<u8>,
}

impl Outgoing {
    /// A persistent JSON message of AMQP type `kind`. `message_id` makes a re-publication
    /// recognisable downstream.
    pub fn json<T: Serialize>(
        exchange: &str,
        routing_key: &str,
        kind: &str,
        message_id: &str,
        correlation_id: Option<&str>,
        body: &T,
    ) -> serde_json::Result<Self> {
        let mut properties = BasicProperties::default()
            .with_content_type(ShortString::from("application/json"))
            .with_delivery_mode(PERSISTENT)
            .with_type(ShortString::from(kind))
            .with_message_id(ShortString::from(message_id))
            .with_app_id(ShortString::from("ebox"))
            .with_timestamp(u64::try_from(chrono::Utc::now().timestamp()).unwrap_or_default());
        if let Some(correlation_id) = correlation_id {
            properties = properties.with_correlation_id(ShortString::from(correlation_id));
        }
        Ok(Self {
            exchange: exchange.to_owned(),
            routing_key: routing_key.to_owned(),
            properties,
            body: serde_json::to_vec(body)?,
        })
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

    /// Publishes every message and returns once the broker has confirmed all of them; fails on
    /// the first refusal.
    pub async fn publish_all(&self, messages: &[Outgoing]) -> Result<(), PublishError> {
        let mut pending = Vec::with_capacity(messages.len());
        for message in messages {
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
                    message.properties.clone(),
                )
                .await;
            match confirm {
                Ok(confirm) => pending.push((message, confirm)),
                Err(error) => {
                    published(&message.exchange, PublishResult::Failed);
                    return Err(error.into());
                }
            }
        }
        for (message, confirm) in pending {
            let result = match confirm.await {
                Ok(Confirmation::Ack(None)) => Ok(()),
                Ok(Confirmation::Ack(Some(returned))) => Err(PublishError::Unroutable {
                    exchange: message.exchange.clone(),
                    routing_key: message.routing_key.clone(),
                    reply_text: returned.reply_text.to_string(),
                }),
                Ok(Confirmation::Nack(_)) | Ok(Confirmation::NotRequested) => {
                    Err(PublishError::Nacked {
                        exchange: message.exchange.clone(),
                        routing_key: message.routing_key.clone(),
                    })
                }
                Err(error) => Err(error.into()),
            };
            published(
                &message.exchange,
                if result.is_ok() {
                    PublishResult::Confirmed
                } else {
                    PublishResult::Failed
                },
            );
            result?;
        }
        Ok(())
    }

    pub fn channel(&self) -> &Channel {
        &self.channel
    }
}

fn published(exchange: &str, result: PublishResult) {
    MessagePublished { exchange, result }.emit();
}
