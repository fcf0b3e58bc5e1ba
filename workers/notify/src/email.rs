//! Notification e-mails over SMTP. They say that a new document is available in the eBox and
//! link to the portal, in the citizen's language; never the document's content, subject or
//! sender (the federation's rule for notification e-mails).

use crate::notifier::{Notification, Notifier};
use domain::citizen::ChannelKind;
use domain::translated::Language;
use futures_util::future::BoxFuture;
use lettre::message::Mailbox;
use lettre::message::header::ContentType;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use std::time::Duration;

pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    portal_url: String,
}

impl Mailer {
    /// `smtp_url`: `smtp://host:25`, `smtp://host:587?tls=required` (STARTTLS) or
    /// `smtps://host:465`, with `user:password@` when the relay wants it.
    pub fn new(smtp_url: &str, from: &str, portal_url: &str) -> anyhow::Result<Self> {
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(smtp_url)
            .map_err(|e| anyhow::anyhow!("EBOX_SMTP_URL is not usable: {e}"))?
            .timeout(Some(Duration::from_secs(30)))
            .build();
        let from = from
            .parse()
            .map_err(|e| anyhow::anyhow!("EBOX_MAIL_FROM is not a mailbox: {e}"))?;
        Ok(Self {
            transport,
            from,
            portal_url: portal_url.to_owned(),
        })
    }

    /// Sends one notification; `message_key` becomes the `Message-ID`, so a repeat is
    /// recognisable.
    pub async fn send(
        &self,
        to: &str,
        language: Language,
        message_key: &str,
    ) -> anyhow::Result<()> {
        let (subject, body) = text(language, &self.portal_url);
        let message = Message::builder()
            .from(self.from.clone())
            .to(to
                .parse()
                .map_err(|e| anyhow::anyhow!("recipient address: {e}"))?)
            .subject(subject)
            .message_id(Some(format!("<{message_key}@ebox.notification>")))
            .header(ContentType::TEXT_PLAIN)
            .body(body)?;
        self.transport.send(message).await?;
        Ok(())
    }
}

impl Notifier for Mailer {
    fn channel(&self) -> ChannelKind {
        ChannelKind::Email
    }

    fn send<'a>(&'a self, notification: &'a Notification) -> BoxFuture<'a, anyhow::Result<()>> {
        let key = notification.idempotency_key.to_string();
        Box::pin(async move {
            Mailer::send(self, &notification.target, notification.language, &key).await
        })
    }
}

/// Subject and body in the citizen's language.
pub fn text(language: Language, portal_url: &str) -> (&'static str, String) {
    match language {
        Language::Nl => (
            "Nieuw document in uw eBox",
            format!(
                "Goedendag,\r\n\r\nEr staat een nieuw document voor u klaar in uw eBox.\r\nU kunt het raadplegen op {portal_url}\r\n\r\nDit is een automatisch bericht; u kunt er niet op antwoorden.\r\n"
            ),
        ),
        Language::Fr => (
            "Nouveau document dans votre eBox",
            format!(
                "Bonjour,\r\n\r\nUn nouveau document est disponible dans votre eBox.\r\nVous pouvez le consulter sur {portal_url}\r\n\r\nCeci est un message automatique ; merci de ne pas y répondre.\r\n"
            ),
        ),
        Language::De => (
            "Neues Dokument in Ihrer eBox",
            format!(
                "Guten Tag,\r\n\r\nIn Ihrer eBox steht ein neues Dokument für Sie bereit.\r\nSie können es unter {portal_url} einsehen.\r\n\r\nDies ist eine automatische Nachricht; bitte antworten Sie nicht darauf.\r\n"
            ),
        ),
    }
}
