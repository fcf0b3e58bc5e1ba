//! Withdrawing a message (`ebox.withdraw.v1`): a sender takes back a message it published by
//! mistake — a misaddressed document is a data-protection incident.
//!
//! The sender was authenticated like for any publication (the AMQP `user_id`); then
//! [`handle`] takes the withdrawal through these steps, each a function of its own:
//!
//! 1. **admissible**: the body is small ([`MAX_WITHDRAWAL_BYTES`]) and the `correlation_id`, echoed
//!    on the answer, is text that can be kept;
//! 2. **decode**: the body names the message by the reference it was published under
//!    (`senderReference`) and may give a `reason` ([`MAX_REASON_CHARS`]);
//! 3. **find**: the sender's own message with that reference, its record locked until the
//!    batch commits — the eBox id derives from (sender, reference), so another sender's message
//!    cannot even be named — or `UNKNOWN_REFERENCE`;
//! 4. **decide** ([`decide`], pure): by the message's status — withdraw it, answer `withdrawn`
//!    again, or refuse with a code naming why;
//! 5. **withdraw**: the document is deleted with its bytes, its events and its reminders, the
//!    notifications not sent yet are cancelled, a tombstone is kept
//!    ([`records::withdrawals`]), the status moves to `withdrawn` (`WITHDRAWN`) and the
//!    withdrawal is audited (`withdrawn`), all in the batch's transaction;
//! 6. **answer**: the sender hears `withdrawn`.
//!
//! A message still `accepted` is withdrawn all the same: the later stages lock the same record
//! before they act, see `withdrawn`, and stop ([`queues::handoff::halted`]).
//!
//! A refusal changes nothing; it is audited (`withdrawal-refused`), counted, and answered
//! `rejected` **without a `messageId`**, since it is the withdrawal that is rejected, not the
//! message, whose status stands.

use crate::contract::{self, TYPE_WITHDRAW_V1};
use crate::validate::{self, Rejection};
use crate::{Properties, Received, STAGE, keepable};
use chrono::{DateTime, SubsecRound as _, Utc};
use domain::audit::Action;
use domain::citizen::CitizenKey;
use domain::ids::{MessageId, SenderReference};
use domain::ssin::mask_numbers;
use domain::status::{Code, Status, StatusEvent};
use queues::status::status_message;
use queues::{HandlerError, Outcome, Outgoing, ResultExt, give_up as giving_up};
use records::audit::AuditEvent;
use records::messages::{self, MessageRecord};
use records::registry::RegisteredSender;
use records::withdrawals::{self, Tombstone};
use runtime::internal_events::{IntakeDecided, IntakeOutcome};
use sqlx::PgConnection;
use tracing::info;

/// At most this many bytes in a withdrawal's body: a reference and a reason need far less.
pub const MAX_WITHDRAWAL_BYTES: usize = 16 * 1024;
/// At most this many characters in a withdrawal's `reason`.
pub const MAX_REASON_CHARS: usize = 512;

/// The status message of a message withdrawn from the citizen's eBox.
pub const WITHDRAWN_MESSAGE: &str =
    "the sender withdrew the message: it was removed from the citizen's eBox";
/// The status message of a message withdrawn while still on its way.
pub const WITHDRAWN_BEFORE_DELIVERY_MESSAGE: &str =
    "the sender withdrew the message before it reached the citizen's eBox: it never will";

/// What a withdrawal does with a message, by the status the message has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// In the citizen's eBox (`published`, `read`) or on its way there (`accepted`): withdraw.
    Withdraw,
    /// Withdrawn before: answer `withdrawn` again, change nothing.
    AlreadyWithdrawn,
    /// Nothing to withdraw; the code says why.
    Refuse(Code),
}

/// The decision for a message at `status`. Every status is named, so a new one must be
/// decided here.
pub fn decide(status: Status) -> Decision {
    match status {
        Status::Accepted | Status::Published | Status::Read => Decision::Withdraw,
        Status::Withdrawn => Decision::AlreadyWithdrawn,
        Status::NoDigitalUser | Status::Failed | Status::Rejected => {
            Decision::Refuse(Code::NothingToWithdraw)
        }
        Status::Expired => Decision::Refuse(Code::AlreadyExpired),
    }
}

/// Why a message at `status` cannot be withdrawn, in the sender's words.
fn why_not(reference: &str, status: Status, expiration_date: DateTime<Utc>) -> String {
    match status {
        Status::NoDigitalUser => format!(
            "message_id {reference:?} ended no-digital-user: nothing was stored in the citizen's eBox, so there is nothing to withdraw"
        ),
        Status::Failed => format!(
            "message_id {reference:?} ended failed: nothing reached the citizen, so there is nothing to withdraw"
        ),
        Status::Expired => format!(
            "message_id {reference:?} expired at {}: it was deleted from the citizen's eBox then",
            expiration_date.to_rfc3339()
        ),
        other => format!("message_id {reference:?} is {other}: it cannot be withdrawn"),
    }
}

/// A withdrawal, decoded and checked.
struct Withdrawal {
    reference: SenderReference,
    /// As written, national numbers masked.
    reason: Option<String>,
}

/// Why a withdrawal goes no further than the step that returns it.
enum Stop {
    /// Refused: the sender hears `rejected`, the message is untouched.
    Refused(Box<Refusal>),
    /// A fault, settled by the driver (retried or dead-lettered).
    Fault(HandlerError),
}

struct Refusal {
    rejection: Rejection,
    /// The reference the withdrawal named, once it was read.
    reference: Option<SenderReference>,
    /// The message it named, when there is one: for the audit trail only.
    record: Option<MessageRecord>,
}

impl Stop {
    fn refused(
        rejection: Rejection,
        reference: Option<&SenderReference>,
        record: Option<MessageRecord>,
    ) -> Self {
        Stop::Refused(Box::new(Refusal {
            rejection,
            reference: reference.cloned(),
            record,
        }))
    }
}

impl From<HandlerError> for Stop {
    fn from(error: HandlerError) -> Self {
        Stop::Fault(error)
    }
}

impl From<sqlx::Error> for Stop {
    fn from(error: sqlx::Error) -> Self {
        Stop::Fault(error.into())
    }
}

/// Takes an authenticated sender's withdrawal through its steps; a refusal is answered in one
/// place ([`refuse`]).
pub(crate) async fn handle(
    conn: &mut PgConnection,
    received: &Received<'_>,
) -> Result<Outcome, HandlerError> {
    match withdraw(conn, received).await {
        Ok(outcome) => Ok(outcome),
        Err(Stop::Refused(refusal)) => refuse(conn, received, *refusal).await,
        Err(Stop::Fault(error)) => Err(error),
    }
}

/// The steps; each may stop the withdrawal.
async fn withdraw(conn: &mut PgConnection, received: &Received<'_>) -> Result<Outcome, Stop> {
    admissible(received)?;
    let withdrawal = decode(received.incoming.body)?;
    let record = find(conn, received, &withdrawal.reference).await?;
    match decide(record.status) {
        Decision::Withdraw => {
            let (record, tombstone) = remove(conn, received, &withdrawal, record).await?;
            Ok(answer(
                received,
                &record,
                &tombstone,
                IntakeOutcome::Withdrawn,
            )?)
        }
        Decision::AlreadyWithdrawn => {
            let tombstone = withdrawals::find(conn, record.id).await?.ok_or_else(|| {
                HandlerError::Permanent(anyhow::anyhow!(
                    "message {} is withdrawn but has no tombstone",
                    record.id
                ))
            })?;
            audit_repeat(conn, received, &record).await?;
            Ok(answer(
                received,
                &record,
                &tombstone,
                IntakeOutcome::Duplicate,
            )?)
        }
        Decision::Refuse(code) => {
            let why = why_not(
                &record.sender_reference,
                record.status,
                record.expiration_date,
            );
            let reference = withdrawal.reference;
            Err(Stop::refused(
                Rejection::new(code, why),
                Some(&reference),
                Some(record),
            ))
        }
    }
}

/// Checks that need no decoding: a small body, and a `correlation_id` that can be echoed.
fn admissible(received: &Received<'_>) -> Result<(), Stop> {
    let body = received.incoming.body;
    if body.len() > MAX_WITHDRAWAL_BYTES {
        let message = format!(
            "the body has {} bytes; a withdrawal has at most {MAX_WITHDRAWAL_BYTES}",
            body.len()
        );
        return Err(Stop::refused(
            Rejection::new(Code::TooLarge, message),
            None,
            None,
        ));
    }
    if let Some(raw) = received.properties.correlation_id.as_deref() {
        validate::identifier("the AMQP property correlation_id", raw)
            .map_err(|rejection| Stop::refused(rejection, None, None))?;
    }
    Ok(())
}

/// The body: the reference of the message to withdraw, and the reason if given. Serde's error
/// names a missing, ill-typed or unknown field (national numbers masked).
fn decode(body: &[u8]) -> Result<Withdrawal, Stop> {
    let invalid =
        |message: String| Stop::refused(Rejection::new(Code::InvalidInput, message), None, None);
    let decoded = contract::decode_withdrawal(body).map_err(|error| {
        invalid(format!(
            "the body is not a valid {TYPE_WITHDRAW_V1} message: {}",
            mask_numbers(&error.to_string())
        ))
    })?;
    let reference = SenderReference::parse(&decoded.sender_reference).map_err(|_| {
        invalid(
            "senderReference must have 1 to 128 characters among A-Z, a-z, 0-9, '.', '_', ':' and '-'"
                .to_owned(),
        )
    })?;
    if let Some(reason) = &decoded.reason {
        validate::short_text("reason", reason, MAX_REASON_CHARS)
            .map_err(|rejection| Stop::refused(rejection, Some(&reference), None))?;
    }
    Ok(Withdrawal {
        reference,
        // A reason may name the citizen it was misaddressed to: never a national number in the
        // audit trail.
        reason: decoded.reason.as_deref().map(mask_numbers),
    })
}

/// The sender's own message with this reference, locked until the batch commits; otherwise
/// `UNKNOWN_REFERENCE`. The id is derived from (sender, reference): another sender's message
/// under the same reference is another id, and is never found here.
async fn find(
    conn: &mut PgConnection,
    received: &Received<'_>,
    reference: &SenderReference,
) -> Result<MessageRecord, Stop> {
    let message_id = MessageId::derive(&received.sender_id, reference);
    match messages::lock(conn, message_id).await? {
        Some(record) if record.sender_id == received.sender.id => Ok(record),
        _ => Err(Stop::refused(
            Rejection::new(
                Code::UnknownReference,
                format!(
                    "no message of yours was accepted with message_id {:?}: nothing was withdrawn",
                    reference.as_str()
                ),
            ),
            Some(reference),
            None,
        )),
    }
}

/// Withdraws the message: deletes its document, cancels its notifications, moves its status,
/// keeps the tombstone and audits. Returns the record as it now stands, and the tombstone.
async fn remove(
    conn: &mut PgConnection,
    received: &Received<'_>,
    withdrawal: &Withdrawal,
    record: MessageRecord,
) -> Result<(MessageRecord, Tombstone), HandlerError> {
    let message_id = record.id;
    let at = Utc::now().trunc_subsecs(6);
    let removed = withdrawals::remove_document(conn, message_id).await?;
    let notifications_cancelled = withdrawals::cancel_notifications(conn, message_id).await?;
    let text = if record.status == Status::Accepted {
        WITHDRAWN_BEFORE_DELIVERY_MESSAGE
    } else {
        WITHDRAWN_MESSAGE
    };
    // The record is locked and was withdrawable: it moves.
    let withdrawn = messages::withdraw(conn, message_id, text, at)
        .await?
        .ok_or_else(|| {
            HandlerError::Transient(anyhow::anyhow!(
                "message {message_id} changed status under its lock"
            ))
        })?;
    let tombstone = Tombstone {
        message_id,
        sender_id: record.sender_id.clone(),
        sender_reference: record.sender_reference.clone(),
        citizen: record.citizen.clone(),
        withdrawn_by: received.sender.id.clone(),
        withdrawn_at: at,
        reason: withdrawal.reason.clone(),
        status_before: record.status,
        receipt_date: removed.as_ref().and_then(|r| r.receipt_date),
        read_at: removed.as_ref().and_then(|r| r.read_at),
        attachments: removed.as_ref().map_or_else(
            || serde_json::json!([]),
            withdrawals::Removed::attachment_digests,
        ),
        events_delivered: removed.as_ref().map_or(0, |r| r.events_delivered),
        notifications_cancelled,
    };
    withdrawals::record(conn, &tombstone).await?;
    audit_withdrawn(conn, received, &tombstone).await?;
    info!(%message_id, from = record.status.as_str(), "message withdrawn by its sender");
    Ok((withdrawn, tombstone))
}

/// The audit slice of a withdrawal: the tombstone, never the content.
async fn audit_withdrawn(
    conn: &mut PgConnection,
    received: &Received<'_>,
    tombstone: &Tombstone,
) -> sqlx::Result<()> {
    let mut audit = AuditEvent::new(STAGE, Action::Withdrawn);
    audit.code = Some(Code::Withdrawn);
    audit.sender_id = Some(received.sender.id.clone());
    audit.message_id = Some(tombstone.message_id);
    audit.sender_reference = Some(tombstone.sender_reference.clone());
    audit.ssin_hash = tombstone.citizen.clone().map(CitizenKey::from_stored);
    audit.details = serde_json::json!({
        "request": TYPE_WITHDRAW_V1,
        "reason": tombstone.reason,
        "statusBefore": tombstone.status_before,
        "receiptDate": tombstone.receipt_date,
        "readAt": tombstone.read_at,
        "attachments": tombstone.attachments,
        "eventsDelivered": tombstone.events_delivered,
        "notificationsCancelled": tombstone.notifications_cancelled,
        "redelivered": received.incoming.redelivered,
    });
    audit.record(conn).await?;
    Ok(())
}

/// A withdrawal of a message withdrawn before: audited as a duplicate, nothing else.
async fn audit_repeat(
    conn: &mut PgConnection,
    received: &Received<'_>,
    record: &MessageRecord,
) -> sqlx::Result<()> {
    let mut audit = AuditEvent::new(STAGE, Action::Duplicate);
    audit.code = Some(Code::Withdrawn);
    audit.sender_id = Some(received.sender.id.clone());
    audit.message_id = Some(record.id);
    audit.sender_reference = Some(record.sender_reference.clone());
    audit.details = serde_json::json!({
        "request": TYPE_WITHDRAW_V1,
        "currentStatus": record.status,
        "redelivered": received.incoming.redelivered,
    });
    audit.record(conn).await?;
    Ok(())
}

/// The sender hears `withdrawn`, with `readAt` when the citizen had opened the message (a
/// withdrawal does not undo a reading), and the proofs it was given.
fn answer(
    received: &Received<'_>,
    record: &MessageRecord,
    tombstone: &Tombstone,
    outcome: IntakeOutcome,
) -> Result<Outcome, HandlerError> {
    IntakeDecided {
        message_id: Some(record.id),
        outcome,
        code: Code::Withdrawn,
    }
    .emit();
    let mut status = record.current_status(received.properties.correlation_id.clone());
    status.read_at = tombstone.read_at;
    Ok(Outcome::ack(vec![
        status_message(&received.sender.id, &status).permanent()?,
    ]))
}

/// Audits the refusal, and tells the sender: `rejected` with the code, naming the reference
/// when the withdrawal named one, never the message's id.
async fn refuse(
    conn: &mut PgConnection,
    received: &Received<'_>,
    refusal: Refusal,
) -> Result<Outcome, HandlerError> {
    let Refusal {
        rejection,
        reference,
        record,
    } = refusal;
    let reference = reference.map(|r| r.as_str().to_owned());
    let mut audit = AuditEvent::new(STAGE, Action::WithdrawalRefused);
    audit.code = Some(rejection.code);
    audit.sender_id = Some(received.sender.id.clone());
    audit.message_id = record.as_ref().map(|r| r.id);
    audit.sender_reference = reference.clone();
    audit.ssin_hash = record
        .as_ref()
        .and_then(|r| r.citizen.clone())
        .map(CitizenKey::from_stored);
    audit.details = serde_json::json!({
        "request": TYPE_WITHDRAW_V1,
        "currentStatus": record.as_ref().map(|r| r.status),
        "reason": rejection.message,
    });
    audit.record(conn).await?;
    IntakeDecided {
        message_id: None,
        outcome: IntakeOutcome::Rejected,
        code: rejection.code,
    }
    .emit();
    let status = StatusEvent {
        sender_reference: reference,
        // The message, if any, keeps its status: this status is about the withdrawal.
        message_id: None,
        status: Status::Rejected,
        code: rejection.code,
        message: rejection.message,
        at: Utc::now(),
        expiration_date: None,
        read_at: None,
        correlation_id: received
            .properties
            .correlation_id
            .clone()
            .filter(|id| validate::is_identifier(id)),
        proof_of_deposit: None,
        proof_of_reading: None,
    };
    Ok(Outcome::ack(vec![
        status_message(&received.sender.id, &status).permanent()?,
    ]))
}

/// A withdrawal intake could not process (a permanent fault): audited, parked for the operators
/// by the driver, and a registered sender hears `rejected` (`TECHNICAL_ERROR`) without a
/// `messageId` — nothing was withdrawn, and the message it names keeps its status.
pub(crate) async fn give_up(
    conn: &mut PgConnection,
    sender: Option<RegisteredSender>,
    properties: &Properties,
    body: &[u8],
    error: &anyhow::Error,
) -> Result<Vec<Outgoing>, HandlerError> {
    let reference = contract::decode_withdrawal(body)
        .ok()
        .and_then(|w| SenderReference::parse(&w.sender_reference).ok())
        .map(|r| r.as_str().to_owned());
    let mut audit = AuditEvent::new(STAGE, Action::DeadLettered);
    audit.code = Some(Code::TechnicalError);
    audit.sender_id = keepable(&properties.user_id);
    audit.sender_reference = reference.clone();
    audit.details = serde_json::json!({
        "request": TYPE_WITHDRAW_V1,
        "reason": giving_up::reason(error),
    });
    audit.record(conn).await?;
    let Some(sender) = sender else {
        return Ok(Vec::new());
    };
    let status = StatusEvent {
        sender_reference: reference,
        message_id: None,
        status: Status::Rejected,
        code: Code::TechnicalError,
        message: "intake could not process this withdrawal and set it aside for the operators; \
                  nothing was withdrawn: publish the withdrawal again"
            .to_owned(),
        at: Utc::now(),
        expiration_date: None,
        read_at: None,
        correlation_id: properties
            .correlation_id
            .clone()
            .filter(|id| validate::is_identifier(id)),
        proof_of_deposit: None,
        proof_of_reading: None,
    };
    Ok(vec![status_message(&sender.id, &status).permanent()?])
}

#[cfg(test)]
mod tests {
    use super::*;
    use domain::Vocabulary as _;

    #[test]
    fn a_message_in_the_ebox_or_on_its_way_is_withdrawn() {
        for status in [Status::Accepted, Status::Published, Status::Read] {
            assert_eq!(decide(status), Decision::Withdraw, "{status}");
        }
    }

    #[test]
    fn a_withdrawn_message_is_answered_withdrawn_again_and_nothing_else_happens() {
        assert_eq!(decide(Status::Withdrawn), Decision::AlreadyWithdrawn);
    }

    #[test]
    fn a_message_that_never_reached_the_ebox_or_left_it_is_refused_with_a_code_naming_why() {
        for status in [Status::NoDigitalUser, Status::Failed, Status::Rejected] {
            assert_eq!(
                decide(status),
                Decision::Refuse(Code::NothingToWithdraw),
                "{status}"
            );
        }
        assert_eq!(
            decide(Status::Expired),
            Decision::Refuse(Code::AlreadyExpired)
        );
    }

    #[test]
    fn every_status_is_decided_and_only_withdrawable_ones_are_withdrawn() {
        for status in Status::ALL {
            assert_eq!(
                decide(*status) == Decision::Withdraw,
                messages::WITHDRAWABLE.contains(status),
                "{status}: the decision and the SQL guard agree"
            );
        }
    }

    #[test]
    fn a_refusal_names_the_reference_and_the_reason_in_the_senders_words() {
        let expired = DateTime::parse_from_rfc3339("2027-01-31T23:00:00Z")
            .expect("a date")
            .with_timezone(&Utc);
        let said = why_not("ref-1", Status::NoDigitalUser, expired);
        assert!(
            said.starts_with("message_id \"ref-1\" ended no-digital-user"),
            "{said}"
        );
        let said = why_not("ref-1", Status::Expired, expired);
        assert!(
            said.contains("expired at 2027-01-31T23:00:00+00:00"),
            "{said}"
        );
        let said = why_not("ref-1", Status::Failed, expired);
        assert!(said.contains("nothing reached the citizen"), "{said}");
    }

    #[test]
    fn a_withdrawal_that_does_not_decode_names_the_field() {
        let refused = |body: &[u8]| match decode(body) {
            Err(Stop::Refused(refusal)) => refusal.rejection,
            Err(Stop::Fault(error)) => panic!("a fault: {error}"),
            Ok(_) => panic!("{} decoded", String::from_utf8_lossy(body)),
        };
        let rejection = refused(br#"{"senderReference": "ref-1", "extra": 1}"#);
        assert_eq!(rejection.code, Code::InvalidInput);
        assert!(
            rejection.message.contains("unknown field `extra`"),
            "{}",
            rejection.message
        );
        let rejection = refused(br#"{"senderReference": "ref 1"}"#);
        assert!(
            rejection.message.starts_with("senderReference must have"),
            "{}",
            rejection.message
        );
        let rejection = refused(br#"{"senderReference": "ref-1", "reason": "a\u0000b"}"#);
        assert_eq!(
            rejection.message,
            "reason contains a control character (U+0000)"
        );
        let long = format!(
            r#"{{"senderReference": "ref-1", "reason": "{}"}}"#,
            "x".repeat(MAX_REASON_CHARS + 1)
        );
        let rejection = refused(long.as_bytes());
        assert_eq!(
            rejection.message,
            "reason has 513 characters; at most 512 are allowed"
        );
        let rejection = refused(b"not json");
        assert!(
            rejection
                .message
                .starts_with("the body is not a valid ebox.withdraw.v1 message"),
            "{}",
            rejection.message
        );
    }

    #[test]
    fn a_national_number_in_a_reason_is_masked() {
        let Ok(withdrawal) =
            decode(br#"{"senderReference": "ref-1", "reason": "sent to 85073003328 by mistake"}"#)
        else {
            panic!("a valid withdrawal");
        };
        let reason = withdrawal.reason.expect("a reason");
        assert!(!reason.contains("85073003328"), "{reason}");
        assert!(reason.starts_with("sent to "), "{reason}");
    }
}
