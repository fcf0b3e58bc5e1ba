//! A sender, as a sender organisation would write one: publish to `ebox.publish` on its own
//! lane with publisher confirms, read the answers on its own status queue. `ebox demo` uses it to show
//! the pipeline, and the end-to-end tests use it to drive the pipeline for real.

use anyhow::{Context, bail};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use domain::status::{Status, StatusEvent};
use futures_util::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, ConfirmSelectOptions,
};
use lapin::types::{FieldTable, ShortString};
use lapin::{BasicProperties, Channel, Confirmation, Connection, Consumer};
use queues::topology::{PUBLISH_EXCHANGE, lane_routing_key, status_queue};
use std::time::Duration;

pub struct SenderClient {
    connection: Connection,
    channel: Channel,
    sender_id: String,
    /// The routing key it publishes with: its own lane's (`sender.<sender>`).
    routing_key: String,
    /// Absent for a sender that only publishes.
    statuses: Option<Consumer>,
}

impl SenderClient {
    /// Connects as the sender's broker user (`amqp_url` carries its credentials) and starts
    /// consuming its status queue.
    pub async fn connect(amqp_url: &str, sender_id: &str) -> anyhow::Result<Self> {
        let connection = queues::driver::connect(amqp_url, &format!("sender {sender_id}"))
            .await
            .with_context(|| format!("Failed to connect as sender {sender_id}"))?;
        let channel = connection.create_channel().await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        let statuses = channel
            .basic_consume(
                status_queue(sender_id).as_str().into(),
                "".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .with_context(|| format!("Failed to consume {}", status_queue(sender_id)))?;
        Ok(Self {
            connection,
            channel,
            sender_id: sender_id.to_owned(),
            routing_key: lane_routing_key(sender_id),
            statuses: Some(statuses),
        })
    }

    /// Connects as the sender's broker user to publish only, reading no status.
    pub async fn connect_publishing_only(amqp_url: &str, sender_id: &str) -> anyhow::Result<Self> {
        let connection = queues::driver::connect(amqp_url, &format!("sender {sender_id}"))
            .await
            .with_context(|| format!("Failed to connect as sender {sender_id}"))?;
        let channel = connection.create_channel().await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        Ok(Self {
            connection,
            channel,
            sender_id: sender_id.to_owned(),
            routing_key: lane_routing_key(sender_id),
            statuses: None,
        })
    }

    /// Publishes with `routing_key` instead of its own lane's: the previous contract release's
    /// `message` (the shared lane), or another sender's lane (which intake refuses).
    pub fn with_routing_key(mut self, routing_key: impl Into<String>) -> Self {
        self.routing_key = routing_key.into();
        self
    }

    /// The properties a well-behaved sender sets: its reference, the release, its user.
    pub fn properties(&self, reference: &str, kind: &str) -> BasicProperties {
        BasicProperties::default()
            .with_message_id(ShortString::from(reference))
            .with_type(ShortString::from(kind))
            .with_user_id(ShortString::from(self.sender_id.as_str()))
            .with_content_type(ShortString::from("application/json"))
            .with_delivery_mode(2)
    }

    /// Publishes to `ebox.publish` and waits for the broker's confirm.
    pub async fn publish(&self, properties: BasicProperties, body: &[u8]) -> anyhow::Result<()> {
        let confirmation = self
            .channel
            .basic_publish(
                PUBLISH_EXCHANGE.into(),
                self.routing_key.as_str().into(),
                BasicPublishOptions {
                    mandatory: true,
                    ..BasicPublishOptions::default()
                },
                body,
                properties,
            )
            .await?
            .await?;
        match confirmation {
            Confirmation::Ack(None) => Ok(()),
            other => bail!("the broker did not take the publication: {other:?}"),
        }
    }

    /// The next status event on the sender's queue, acknowledged.
    pub async fn next_status(&mut self, timeout: Duration) -> anyhow::Result<StatusEvent> {
        let statuses = self
            .statuses
            .as_mut()
            .context("this sender does not read its statuses")?;
        let delivery = tokio::time::timeout(timeout, statuses.next())
            .await
            .context("no status event arrived in time")?
            .context("the status consumer was cancelled")??;
        delivery.acker.ack(BasicAckOptions::default()).await?;
        serde_json::from_slice(&delivery.data).context("a status event is not valid JSON")
    }

    pub async fn close(self) {
        let _ = self.connection.close(200, "bye".into()).await;
    }
}

/// A tiny valid PDF, for examples.
pub const SAMPLE_PDF: &[u8] =
    b"%PDF-1.4\n1 0 obj<</Type/Catalog>>endobj\ntrailer<</Root 1 0 R>>\n%%EOF\n";

/// A valid national number for examples (born 30 July 1985). The demo script records this
/// citizen's consent and an e-mail preference.
pub const SAMPLE_SSIN: &str = "85073003328";

/// Another valid national number (born 1 January 2001, after the 2000 rule) for a citizen
/// who never consented.
pub const SAMPLE_SSIN_NO_CONSENT: &str = "01010100126";

pub fn sample_v2(ssin: &str, message_type: &str) -> serde_json::Value {
    serde_json::json!({
        "recipient": {"eboxType": "citizen", "eboxIdValue": ssin},
        "subject": {"nl": "Uw attest", "fr": "Votre attestation", "de": "Ihre Bescheinigung"},
        "messageTypeId": message_type,
        "attachments": [{
            "fileName": "attest.pdf",
            "mediaType": "application/pdf",
            "mainContent": true,
            "content": STANDARD.encode(SAMPLE_PDF),
            "digest": {"digestMethod": "sha_256", "digestValue": domain::digest::Sha256Digest::of(SAMPLE_PDF).to_base64url()}
        }],
        "bodyMainContent": false,
        "replyAuthorized": false
    })
}

pub fn sample_v1(ssin: &str, message_type: &str) -> serde_json::Value {
    serde_json::json!({
        "ssin": ssin,
        "messageTypeId": message_type,
        "subject": {"nl": "Uw attest", "fr": "Votre attestation"},
        "document": {"fileName": "attest.pdf", "mediaType": "application/pdf", "content": STANDARD.encode(SAMPLE_PDF)},
        "retentionDays": 60
    })
}

#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// The demo sender's broker URL (its own user and password).
    #[arg(
        long,
        env = "EBOX_DEMO_SENDER_URL",
        default_value = "amqp://demo:demo@127.0.0.1:5672/%2f"
    )]
    sender_url: String,
    /// The demo sender's id (its broker user name, registered in the registry file).
    #[arg(long, default_value = "demo")]
    sender: String,
    /// A message type the demo sender may publish.
    #[arg(long, default_value = "unemployment-certificate")]
    message_type: String,
    /// The citizen API's root URL: with --citizen-token, the demo then plays the portal, lists
    /// the consenting citizen's messages and opens one, and the sender hears `read`.
    #[arg(long)]
    api_url: Option<String>,
    /// A token of citizen 85073003328 for the API (see `ebox token`).
    #[arg(long, env = "EBOX_DEMO_CITIZEN_TOKEN")]
    citizen_token: Option<String>,
    /// Where to write the read message's proofs (`proof-of-deposit.jws`,
    /// `proof-of-reading.jws`), for `ebox proof verify`, and its `sender:reference`
    /// (`reference`), for `ebox audit trace`.
    #[arg(long)]
    proofs_dir: Option<std::path::PathBuf>,
}

pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    let mut client = SenderClient::connect(&args.sender_url, &args.sender).await?;
    let run_id = chrono::Utc::now().format("%Y%m%dT%H%M%S");
    let mut bad = sample_v2(SAMPLE_SSIN, &args.message_type);
    bad["recipient"]["eboxIdValue"] = "85073003329".into();
    let v1 = intake::contract::TYPE_V1;
    let v2 = intake::contract::TYPE_V2;
    let publications = [
        (
            format!("demo-{run_id}-v1"),
            v1,
            sample_v1(SAMPLE_SSIN, &args.message_type),
        ),
        (
            format!("demo-{run_id}-v2"),
            v2,
            sample_v2(SAMPLE_SSIN, &args.message_type),
        ),
        (
            format!("demo-{run_id}-no-consent"),
            v2,
            sample_v2(SAMPLE_SSIN_NO_CONSENT, &args.message_type),
        ),
        (format!("demo-{run_id}-bad-ssin"), v2, bad),
    ];
    for (reference, kind, body) in &publications {
        client
            .publish(
                client.properties(reference, kind),
                &serde_json::to_vec(body)?,
            )
            .await?;
        println!("published {reference} ({kind})");
    }
    // Every publication ends in published, no-digital-user or rejected.
    let mut open: Vec<&str> = publications.iter().map(|(r, _, _)| r.as_str()).collect();
    let mut deposits = std::collections::HashMap::new();
    while !open.is_empty() {
        let status = client.next_status(Duration::from_secs(30)).await?;
        let reference = status.sender_reference.as_deref().unwrap_or("-");
        let last = matches!(
            status.status,
            Status::Published | Status::NoDigitalUser | Status::Rejected
        );
        if last {
            open.retain(|r| *r != reference);
        }
        if let Some(proof) = &status.proof_of_deposit {
            deposits.insert(reference.to_owned(), proof.clone());
        }
        println!(
            "status  {:<34} {:<16} {:<14} {}",
            reference,
            status.status.as_str(),
            status.code,
            status.message
        );
    }
    if let (Some(api), Some(token)) = (&args.api_url, &args.citizen_token) {
        let read = open_as_citizen(&mut client, api, token).await?;
        if let (Some(dir), Some(read)) = (&args.proofs_dir, read) {
            let reference = read.sender_reference.clone().unwrap_or_default();
            write_proofs(
                dir,
                deposits.get(&reference),
                read.proof_of_reading.as_ref(),
            )?;
            std::fs::write(
                dir.join("reference"),
                format!("{}:{reference}", args.sender),
            )?;
        }
    }
    client.close().await;
    Ok(())
}

/// Writes the read message's two proofs into `dir`.
fn write_proofs(
    dir: &std::path::Path,
    deposit: Option<&String>,
    reading: Option<&String>,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    for (name, proof) in [
        ("proof-of-deposit.jws", deposit),
        ("proof-of-reading.jws", reading),
    ] {
        let proof = proof.with_context(|| format!("the read message has no {name}"))?;
        std::fs::write(dir.join(name), proof)?;
    }
    Ok(())
}

/// Plays the eBox portal: lists the citizen's messages, opens the newest one's main content,
/// and waits for the sender's `read`, which it returns.
async fn open_as_citizen(
    client: &mut SenderClient,
    api: &str,
    token: &str,
) -> anyhow::Result<Option<StatusEvent>> {
    let http = reqwest::Client::new();
    let list: serde_json::Value = http
        .get(format!("{api}/ebox/messages?pageSize=100"))
        .bearer_auth(token)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    println!(
        "citizen 85073003328 has {} messages in the eBox",
        list["totalItems"]
    );
    let Some(message) = list["items"].as_array().and_then(|items| items.first()) else {
        return Ok(None);
    };
    let Some(main) = message["attachments"]["items"]
        .as_array()
        .and_then(|a| a.iter().find(|a| a["mainContent"] == true))
    else {
        return Ok(None);
    };
    let href = main["contentHref"].as_str().unwrap_or_default();
    let bytes = http
        .get(href)
        .bearer_auth(token)
        .send()
        .await?
        .error_for_status()?
        .bytes()
        .await?;
    println!(
        "the citizen opened {} ({} bytes)",
        main["fileName"],
        bytes.len()
    );
    loop {
        let status = client.next_status(Duration::from_secs(30)).await?;
        if status.status == Status::Read {
            println!(
                "status  {:<34} {:<16} {:<14} read at {}",
                status.sender_reference.as_deref().unwrap_or("-"),
                status.status.as_str(),
                status.code,
                status.read_at.map(|t| t.to_rfc3339()).unwrap_or_default()
            );
            return Ok(Some(status));
        }
    }
}
