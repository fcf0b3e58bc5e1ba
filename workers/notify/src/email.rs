//! Notification e-mails over SMTP. They say that a new document is available in the eBox — or
//! remind the citizen of one still unread, or warn that one still unread expires soon — and
//! link to the portal, in the citizen's language; never the document's content, subject or
//! sender (the federation's rule for notification e-mails).

use crate::notifier::{Notification, Notifier};
use domain::citizen::ChannelKind;
use domain::events::EventType;
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
        kind: EventType,
        language: Language,
        message_key: &str,
    ) -> anyhow::Result<()> {
        let (subject, body) = text(kind, language, &self.portal_url);
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
            Mailer::send(
                self,
                &notification.target,
                notification.kind,
                notification.language,
                &key,
            )
            .await
        })
    }
}

/// Subject and body of the notification of `kind`, in the citizen's language.
pub fn text(kind: EventType, language: Language, portal_url: &str) -> (&'static str, String) {
    match kind {
        EventType::NewDocumentReminder => reminder_text(language, portal_url),
        EventType::DocumentExpirationAlert => expiration_alert_text(language, portal_url),
        EventType::NewDocument | EventType::ReadDocument => new_document_text(language, portal_url),
    }
}

/// A document is still unread some days after its receipt.
fn reminder_text(language: Language, portal_url: &str) -> (&'static str, String) {
    match language {
        Language::Nl => (
            "Herinnering: ongelezen document in uw eBox",
            format!(
                "Goedendag,\r\n\r\nDit is een herinnering: er staat een document in uw eBox dat u nog niet hebt geopend.\r\nU kunt het raadplegen op {portal_url}\r\n\r\nDit is een automatisch bericht; u kunt er niet op antwoorden.\r\n"
            ),
        ),
        Language::Fr => (
            "Rappel : document non lu dans votre eBox",
            format!(
                "Bonjour,\r\n\r\nCeci est un rappel : un document de votre eBox n'a pas encore été ouvert.\r\nVous pouvez le consulter sur {portal_url}\r\n\r\nCeci est un message automatique ; merci de ne pas y répondre.\r\n"
            ),
        ),
        Language::De => (
            "Erinnerung: ungelesenes Dokument in Ihrer eBox",
            format!(
                "Guten Tag,\r\n\r\nDies ist eine Erinnerung: In Ihrer eBox liegt ein Dokument, das Sie noch nicht geöffnet haben.\r\nSie können es unter {portal_url} einsehen.\r\n\r\nDies ist eine automatische Nachricht; bitte antworten Sie nicht darauf.\r\n"
            ),
        ),
    }
}

/// A document still unread expires in a few days, and will then be deleted.
fn expiration_alert_text(language: Language, portal_url: &str) -> (&'static str, String) {
    match language {
        Language::Nl => (
            "Let op: een ongelezen document in uw eBox vervalt binnenkort",
            format!(
                "Goedendag,\r\n\r\nEen document in uw eBox dat u nog niet hebt geopend, vervalt binnenkort en wordt dan verwijderd.\r\nU kunt het raadplegen op {portal_url}\r\n\r\nDit is een automatisch bericht; u kunt er niet op antwoorden.\r\n"
            ),
        ),
        Language::Fr => (
            "Attention : un document non lu de votre eBox va expirer",
            format!(
                "Bonjour,\r\n\r\nUn document de votre eBox que vous n'avez pas encore ouvert expire bientôt et sera alors supprimé.\r\nVous pouvez le consulter sur {portal_url}\r\n\r\nCeci est un message automatique ; merci de ne pas y répondre.\r\n"
            ),
        ),
        Language::De => (
            "Achtung: Ein ungelesenes Dokument in Ihrer eBox läuft bald ab",
            format!(
                "Guten Tag,\r\n\r\nEin Dokument in Ihrer eBox, das Sie noch nicht geöffnet haben, läuft bald ab und wird dann gelöscht.\r\nSie können es unter {portal_url} einsehen.\r\n\r\nDies ist eine automatische Nachricht; bitte antworten Sie nicht darauf.\r\n"
            ),
        ),
    }
}

/// A new document is available.
fn new_document_text(language: Language, portal_url: &str) -> (&'static str, String) {
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
