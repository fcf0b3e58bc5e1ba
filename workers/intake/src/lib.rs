//! The intake stage: authenticate the sender, validate, deduplicate.
//!
//! Consumes what senders publish to `ebox.publish`: each sender's own lane
//! (`ebox.intake.<sender>`) and the shared one (`ebox.intake`), in turn, charging each batch to
//! its senders' limits ([`lanes`]). [`Intake::handle`] takes each publication through these
//! steps, each a function of its own:
//!
//! 1. **authenticate**: the sender is the AMQP `user_id`, which RabbitMQ guarantees is the
//!    connection's user; a user with no registration has no status queue, so its message is
//!    audited and dead-lettered;
//! 2. **reference**: the sender reference (`message_id`) gives the eBox message id (UUIDv5),
//!    and the `correlation_id`, kept and echoed, is text that can be kept;
//! 3. **admissible**: it came by a lane it may take ([`lanes::refusal`]), the registration
//!    is active, the body within the size limit, and its release (the AMQP `type`) one we read;
//! 4. **deduplicate**: a reference seen before with the same content re-sends the current
//!    status, with other content it is `rejected` with `DUPLICATE_REFERENCE_CONFLICT`;
//! 5. **decode and validate**: the body is decoded per its release ([`contract`]) and checked
//!    ([`validate`]);
//! 6. **record**: an accepted message is recorded ([`records::messages`]) with its document,
//!    unpublished ([`records::documents`]), and its audit slice, in the batch's transaction:
//!    the document is written here, once;
//! 7. **forward**: the message's id and recipient go on to `ebox.consent-check` (a
//!    [`domain::handoff::Handoff`]) and the sender hears `accepted`.
//!
//! Any step from 2 on may refuse the publication; the refusal is answered in one place:
//! audited, counted, and told to the sender as `rejected`.
//!
//! A publication of type `ebox.withdraw.v1` is not a message but a request to take one back:
//! after the same authentication it goes through [`withdraw`]'s steps instead.

pub mod contract;
pub mod lanes;
pub mod validate;
pub mod withdraw;

use chrono::{SubsecRound as _, Utc};
use contract::{ContractVersion, Request};
use domain::audit::{Action, Stage};
use domain::citizen::SsinHasher;
use domain::digest::Sha256Digest;
use domain::handoff::Handoff;
use domain::ids::{MessageId, SenderId, SenderReference};
use domain::publication::Publication;
use domain::status::{Code, Status, StatusEvent};
use lapin::types::AMQPValue;
use queues::status::status_message;
use queues::topology::{CONSENT_CHECK_QUEUE, INTAKE_QUEUE};
use queues::{
    Handler, HandlerError, Incoming, LaneSpec, LaneWait, Outcome, Outgoing, Raw, ResultExt,
    give_up, handoff,
};
use records::audit::AuditEvent;
use records::documents;
use records::messages::{self, MessageRecord};
use records::registry::{self, RegisteredSender};
use runtime::internal_events::{IntakeDecided, IntakeOutcome};
use sqlx::{PgConnection, PgPool};
use tracing::{error, warn};
use validate::{Envelope, Rejection};

const STAGE: Stage = Stage::Intake;

pub struct Intake {
    hasher: SsinHasher,
    max_message_bytes: usize,
    /// The broker user whose replays (`ebox dlq replay`) are trusted to name their sender.
    replayer: Option<String>,
    /// The senders' own lanes, and which senders have limits.
    lanes: lanes::SenderLanes,
}

/// The header a replay names its sender in; trusted only from the replaying user, whose own
/// `user_id` the broker checks.
pub const REPLAYED_FOR: &str = "x-ebox-replayed-for";

impl Intake {
    pub fn new(hasher: SsinHasher, max_message_bytes: usize) -> Self {
        Self {
            hasher,
            max_message_bytes,
            replayer: None,
            lanes: lanes::SenderLanes::default(),
        }
    }

    /// Takes no more from a sender's own lane while it has `n` messages in flight (accepted,
    /// no final status yet).
    pub fn with_in_flight_per_sender(mut self, n: u32) -> Self {
        self.lanes = lanes::SenderLanes::new(n);
        self
    }

    /// Trusts publications from `user` (the service's own broker user) to name their sender
    /// in [`REPLAYED_FOR`]: that is how a parked publication is replayed, since a copy cannot
    /// carry the sender's `user_id`.
    pub fn trusting_replays_from(mut self, user: impl Into<String>) -> Self {
        self.replayer = Some(user.into());
        self
    }

    /// The properties, with the replayed sender in place of the replaying user.
    fn properties(&self, incoming: &Incoming<'_>) -> Properties {
        let mut properties = Properties::of(incoming);
        let replayed_for = incoming
            .properties
            .headers()
            .as_ref()
            .and_then(|headers| headers.inner().get(REPLAYED_FOR).cloned());
        if let (Some(replayer), Some(AMQPValue::LongString(sender))) =
            (&self.replayer, replayed_for)
            && properties.user_id.as_deref() == Some(replayer.as_str())
        {
            properties.user_id = Some(sender.to_string());
        }
        properties
    }
}

/// The AMQP properties intake reads, as strings.
struct Properties {
    user_id: Option<String>,
    reference: Option<String>,
    correlation_id: Option<String>,
    kind: Option<String>,
}

impl Properties {
    fn of(incoming: &Incoming<'_>) -> Self {
        let p = incoming.properties;
        Self {
            user_id: p.user_id().as_ref().map(|v| v.to_string()),
            reference: p.message_id().as_ref().map(|v| v.to_string()),
            correlation_id: p.correlation_id().as_ref().map(|v| v.to_string()),
            kind: p.kind().as_ref().map(|v| v.to_string()),
        }
    }
}

/// A publication from a registered sender: what every step after authentication reads.
struct Received<'a> {
    sender: RegisteredSender,
    /// The registration's id, parsed.
    sender_id: SenderId,
    properties: Properties,
    incoming: Incoming<'a>,
}

/// What the admission checks establish: the message's names, its release, and what makes it
/// "the same content" for deduplication.
struct Admitted {
    reference: SenderReference,
    message_id: MessageId,
    version: ContractVersion,
    content_sha256: Vec<u8>,
}

/// Why a publication goes no further than the step that returns it.
enum Stop {
    /// Refused: the sender hears `rejected`.
    Rejected(Refusal),
    /// A fault, settled by the driver (retried or dead-lettered).
    Fault(HandlerError),
}

/// A rejection, with what was known of the message when it was refused.
struct Refusal {
    rejection: Rejection,
    /// Absent before the reference gave one, and for a conflict, whose id is the first
    /// message's.
    message_id: Option<MessageId>,
    /// Absent before the release was known.
    version: Option<ContractVersion>,
}

impl Stop {
    fn rejected(
        rejection: Rejection,
        message_id: Option<MessageId>,
        version: Option<ContractVersion>,
    ) -> Self {
        Stop::Rejected(Refusal {
            rejection,
            message_id,
            version,
        })
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

impl Handler for Intake {
    type Message = Raw;
    const STAGE: Stage = STAGE;

    fn queue(&self) -> &'static str {
        INTAKE_QUEUE
    }

    async fn lanes(&self, pool: &PgPool) -> anyhow::Result<Vec<LaneSpec>> {
        self.lanes.specs(pool).await
    }

    async fn admit(&self, pool: &PgPool, batch: &[Incoming<'_>]) -> anyhow::Result<Vec<LaneWait>> {
        self.lanes.admit(pool, batch).await
    }

    async fn handle(
        &self,
        conn: &mut PgConnection,
        _: Raw,
        incoming: Incoming<'_>,
    ) -> Result<Outcome, HandlerError> {
        let properties = self.properties(&incoming);
        let Some((sender, sender_id)) = authenticate(conn, &properties).await? else {
            return dead_letter_unknown_sender(conn, &properties).await;
        };
        let received = Received {
            sender,
            sender_id,
            properties,
            incoming,
        };
        if Request::of_type(received.properties.kind.as_deref()) == Request::Withdrawal {
            return withdraw::handle(conn, &received).await;
        }
        match self.accept(conn, &received).await {
            Ok(outcome) => Ok(outcome),
            Err(Stop::Rejected(refusal)) => self.reject(conn, &received, refusal).await,
            Err(Stop::Fault(error)) => Err(error),
        }
    }

    /// A publication intake could not process. A registered sender hears `failed`
    /// (`TECHNICAL_ERROR`); a message it had already accepted moves to `failed`. Audited
    /// either way.
    async fn give_up(
        &self,
        conn: &mut PgConnection,
        incoming: Incoming<'_>,
        error: &anyhow::Error,
    ) -> Result<Vec<Outgoing>, HandlerError> {
        let properties = self.properties(&incoming);
        // Only a valid sender id can be registered (and PostgreSQL refuses a NUL parameter).
        let sender = match properties.user_id.as_deref().map(SenderId::parse) {
            Some(Ok(user)) => registry::find_sender(conn, user.as_str()).await?,
            _ => None,
        };
        if Request::of_type(properties.kind.as_deref()) == Request::Withdrawal {
            // Its AMQP message_id names no message: nothing is failed.
            return withdraw::give_up(conn, sender, &properties, incoming.body, error).await;
        }
        let message_id = sender.as_ref().and_then(|sender| {
            let sender_id = SenderId::parse(&sender.id).ok()?;
            let reference = SenderReference::parse(properties.reference.as_deref()?).ok()?;
            Some(MessageId::derive(&sender_id, &reference))
        });
        if let Some(message_id) = message_id
            && messages::find(conn, message_id).await?.is_some()
        {
            return give_up::fail_message(conn, STAGE, message_id, error).await;
        }
        let mut audit = AuditEvent::new(STAGE, Action::DeadLettered);
        audit.code = Some(Code::TechnicalError);
        audit.sender_id = keepable(&properties.user_id);
        audit.message_id = message_id;
        audit.sender_reference = keepable(&properties.reference);
        audit.details = serde_json::json!({ "reason": give_up::reason(error) });
        audit.record(conn).await?;
        let Some(sender) = sender else {
            return Ok(Vec::new());
        };
        let status = StatusEvent {
            sender_reference: keepable(&properties.reference),
            message_id,
            status: Status::Failed,
            code: Code::TechnicalError,
            message: give_up::failed_message(STAGE),
            at: Utc::now(),
            expiration_date: None,
            read_at: None,
            // It may be what could not be processed.
            correlation_id: None,
            proof_of_deposit: None,
            proof_of_reading: None,
        };
        Ok(vec![status_message(&sender.id, &status).permanent()?])
    }
}

impl Intake {
    /// The steps after authentication; each may stop the publication.
    async fn accept(
        &self,
        conn: &mut PgConnection,
        received: &Received<'_>,
    ) -> Result<Outcome, Stop> {
        let (reference, message_id) = reference(received)?;
        correlation(received)?;
        let admitted = self.admissible(received, reference, message_id)?;
        if let Some(existing) = messages::find(conn, message_id).await? {
            return duplicate(conn, received, &admitted, existing).await;
        }
        let publication = decode_and_validate(conn, received, &admitted).await?;
        if let Some(winner) = self.record(conn, received, &admitted, &publication).await? {
            return duplicate(conn, received, &admitted, winner).await;
        }
        Ok(forward_accepted(received, &publication)?)
    }

    /// Checks that need no decoding: it came by a lane it may take, the registration is
    /// active, the body fits, and its release is one we read.
    fn admissible(
        &self,
        received: &Received<'_>,
        reference: SenderReference,
        message_id: MessageId,
    ) -> Result<Admitted, Stop> {
        let refuse = |rejection| Stop::rejected(rejection, Some(message_id), None);
        if let Some(rejection) = lanes::refusal(received) {
            return Err(refuse(rejection));
        }
        if !received.sender.active {
            return Err(refuse(Rejection::new(
                Code::SenderNotAuthorized,
                "this sender's registration has been withdrawn",
            )));
        }
        let body = received.incoming.body;
        if body.len() > self.max_message_bytes {
            return Err(refuse(Rejection::new(
                Code::TooLarge,
                format!(
                    "the body has {} bytes; at most {} are accepted",
                    body.len(),
                    self.max_message_bytes
                ),
            )));
        }
        let kind = received.properties.kind.as_deref();
        let version = kind.and_then(ContractVersion::from_type).ok_or_else(|| {
            refuse(Rejection::new(
                Code::UnsupportedSchema,
                format!(
                    "the AMQP property type must be {} or {} ({} to withdraw a message), not {:?}",
                    contract::TYPE_V2,
                    contract::TYPE_V1,
                    contract::TYPE_WITHDRAW_V1,
                    kind.unwrap_or("")
                ),
            ))
        })?;
        Ok(Admitted {
            reference,
            message_id,
            version,
            content_sha256: content_hash(version, body),
        })
    }

    /// Records the accepted message with its audit slice. `Some` is the record of a concurrent
    /// copy of the same publication that won the insert: this one is then a duplicate.
    async fn record(
        &self,
        conn: &mut PgConnection,
        received: &Received<'_>,
        admitted: &Admitted,
        publication: &Publication,
    ) -> Result<Option<MessageRecord>, HandlerError> {
        let message_id = admitted.message_id;
        let citizen = self.hasher.hash(&publication.recipient);
        if !messages::insert_accepted(conn, publication, &citizen, &admitted.content_sha256).await?
        {
            let winner = messages::find(conn, message_id).await?.ok_or_else(|| {
                HandlerError::Transient(anyhow::anyhow!(
                    "message {message_id} vanished after a conflict"
                ))
            })?;
            return Ok(Some(winner));
        }
        documents::insert_unpublished(conn, publication, &citizen).await?;
        let mut audit = AuditEvent::new(STAGE, Action::Accepted);
        audit.code = Some(Code::Accepted);
        audit.sender_id = Some(received.sender.id.clone());
        audit.message_id = Some(message_id);
        audit.sender_reference = Some(publication.sender_reference.as_str().to_owned());
        audit.ssin_hash = Some(citizen);
        audit.details = provision_details(admitted.version, publication);
        audit.record(conn).await?;
        Ok(None)
    }

    /// Audits the refusal, and tells the sender.
    async fn reject(
        &self,
        conn: &mut PgConnection,
        received: &Received<'_>,
        refusal: Refusal,
    ) -> Result<Outcome, HandlerError> {
        let Refusal {
            rejection,
            message_id,
            version,
        } = refusal;
        let properties = &received.properties;
        let mut audit = AuditEvent::new(STAGE, Action::Rejected);
        audit.code = Some(rejection.code);
        audit.sender_id = Some(received.sender.id.clone());
        audit.message_id = message_id;
        audit.sender_reference = keepable(&properties.reference);
        audit.ssin_hash = rejection
            .recipient
            .as_ref()
            .map(|ssin| self.hasher.hash(ssin));
        audit.details = serde_json::json!({
            "contractVersion": version.map(ContractVersion::as_str),
            "reason": rejection.message,
        });
        audit.record(conn).await?;
        IntakeDecided {
            message_id,
            outcome: IntakeOutcome::Rejected,
            code: rejection.code,
        }
        .emit();
        let status = StatusEvent {
            sender_reference: keepable(&properties.reference),
            message_id,
            status: Status::Rejected,
            code: rejection.code,
            message: rejection.message,
            at: Utc::now(),
            expiration_date: None,
            read_at: None,
            // Not echoed when it is what was refused: the status stays clean.
            correlation_id: properties
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
}

/// The registered sender named by the AMQP `user_id`, if any, with its parsed id.
async fn authenticate(
    conn: &mut PgConnection,
    properties: &Properties,
) -> Result<Option<(RegisteredSender, SenderId)>, HandlerError> {
    let Some(user) = &properties.user_id else {
        return Ok(None);
    };
    // Only a valid sender id can be registered: anything else is not looked up (PostgreSQL
    // refuses a NUL in a text parameter).
    let Ok(sender_id) = SenderId::parse(user) else {
        return Ok(None);
    };
    let Some(sender) = registry::find_sender(conn, sender_id.as_str()).await? else {
        return Ok(None);
    };
    Ok(Some((sender, sender_id)))
}

/// A publication from a broker user with no registration: audited, then parked for the
/// operators, since the sender has no status queue to hear `rejected` on.
async fn dead_letter_unknown_sender(
    conn: &mut PgConnection,
    properties: &Properties,
) -> Result<Outcome, HandlerError> {
    let reason = match &properties.user_id {
        Some(_) => "the broker user has no sender registration",
        None => "the AMQP property user_id is missing, so the sender is unknown",
    };
    let mut audit = AuditEvent::new(STAGE, Action::DeadLettered);
    audit.code = Some(Code::UnknownSender);
    audit.sender_id = keepable(&properties.user_id);
    audit.sender_reference = keepable(&properties.reference);
    audit.details = serde_json::json!({ "reason": reason });
    audit.record(conn).await?;
    IntakeDecided {
        message_id: None,
        outcome: IntakeOutcome::DeadLetter,
        code: Code::UnknownSender,
    }
    .emit();
    warn!(
        user_id = properties.user_id.as_deref(),
        reason, "publication from an unknown sender dead-lettered"
    );
    Ok(Outcome::dead_letter(reason))
}

/// The sender's reference (the AMQP `message_id`), and the eBox message id derived from it.
fn reference(received: &Received<'_>) -> Result<(SenderReference, MessageId), Stop> {
    let parsed = match received.properties.reference.as_deref() {
        Some(raw) => SenderReference::parse(raw).map_err(|error| error.to_string()),
        None => Err("the AMQP property message_id (the sender's reference) is required".into()),
    };
    let reference = parsed.map_err(|message| {
        Stop::rejected(Rejection::new(Code::InvalidInput, message), None, None)
    })?;
    let message_id = MessageId::derive(&received.sender_id, &reference);
    Ok((reference, message_id))
}

/// The AMQP `correlation_id`, which is kept with the message and echoed on its statuses: an
/// identifier that can be kept ([`validate::identifier`]). Refused before deduplication, so
/// the rejection names no message id: the reference may be that of a message already accepted,
/// which this refusal must not contradict.
fn correlation(received: &Received<'_>) -> Result<(), Stop> {
    match received.properties.correlation_id.as_deref() {
        Some(raw) => validate::identifier("the AMQP property correlation_id", raw)
            .map_err(|rejection| Stop::rejected(rejection, None, None)),
        None => Ok(()),
    }
}

/// An AMQP property as the sender wrote it, for the audit trail and the rejection status;
/// absent when it has a control character, which PostgreSQL may refuse (NUL) and a status
/// should not carry.
fn keepable(property: &Option<String>) -> Option<String> {
    property
        .clone()
        .filter(|text| !text.chars().any(char::is_control))
}

/// What identifies "the same content": the release and the exact body.
fn content_hash(version: ContractVersion, body: &[u8]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(body.len() + 3);
    bytes.extend_from_slice(version.as_str().as_bytes());
    bytes.push(b'\n');
    bytes.extend_from_slice(body);
    Sha256Digest::of(&bytes).as_bytes().to_vec()
}

/// A reference seen before: same content re-sends the current status; other content is a
/// conflict and the first message is left untouched.
async fn duplicate(
    conn: &mut PgConnection,
    received: &Received<'_>,
    admitted: &Admitted,
    existing: MessageRecord,
) -> Result<Outcome, Stop> {
    if existing.content_sha256 != admitted.content_sha256 {
        let rejection = Rejection::new(
            Code::DuplicateReferenceConflict,
            format!(
                "message_id {:?} was already used for another message; use a new reference",
                existing.sender_reference
            ),
        );
        // The status names no message id: the message with this id is the first one, and it
        // is not rejected.
        return Err(Stop::rejected(rejection, None, Some(admitted.version)));
    }
    let mut publish = Vec::new();
    if existing.status == Status::Accepted {
        publish.extend(forward_again(conn, received, admitted, &existing).await?);
    }
    audit_duplicate(conn, received, admitted.version, &existing).await?;
    IntakeDecided {
        message_id: Some(existing.id),
        outcome: IntakeOutcome::Duplicate,
        code: existing.status_code,
    }
    .emit();
    let status = existing.current_status(received.properties.correlation_id.clone());
    publish.push(status_message(&received.sender.id, &status).permanent()?);
    Ok(Outcome::ack(publish))
}

/// A message still at `accepted` is forwarded again: the first forward may have been lost (a
/// crash between commit and confirm, or a dead-lettered delivery moved back), and every later
/// stage is idempotent, so a second copy costs a replay, never a duplicate. The publication is
/// rebuilt as it was first accepted: same correlation id, acceptance time and expiration date.
async fn forward_again(
    conn: &mut PgConnection,
    received: &Received<'_>,
    admitted: &Admitted,
    existing: &MessageRecord,
) -> Result<Option<Outgoing>, HandlerError> {
    let envelope = Envelope {
        message_id: existing.id,
        sender_id: received.sender_id.clone(),
        // The record was found by the id derived from this reference: it is the record's.
        sender_reference: admitted.reference.clone(),
        correlation_id: existing.correlation_id.clone(),
        accepted_at: existing.accepted_at,
    };
    match check(conn, received, admitted.version, envelope).await? {
        Ok(mut publication) => {
            publication.expiration_date = existing.expiration_date;
            Ok(Some(forward(&publication)?))
        }
        Err(rejection) => {
            error!(
                message_id = %existing.id,
                code = rejection.code.as_str(),
                "an accepted message no longer validates (the registry changed); it stays at accepted until an operator acts"
            );
            Ok(None)
        }
    }
}

async fn audit_duplicate(
    conn: &mut PgConnection,
    received: &Received<'_>,
    version: ContractVersion,
    existing: &MessageRecord,
) -> sqlx::Result<()> {
    let mut audit = AuditEvent::new(STAGE, Action::Duplicate);
    audit.code = Some(existing.status_code);
    audit.sender_id = Some(received.sender.id.clone());
    audit.message_id = Some(existing.id);
    audit.sender_reference = Some(existing.sender_reference.clone());
    audit.details = serde_json::json!({
        "contractVersion": version.as_str(),
        "currentStatus": existing.status,
        "redelivered": received.incoming.redelivered,
    });
    audit.record(conn).await?;
    Ok(())
}

/// Decodes and validates a message seen for the first time, decided now.
async fn decode_and_validate(
    conn: &mut PgConnection,
    received: &Received<'_>,
    admitted: &Admitted,
) -> Result<Publication, Stop> {
    let envelope = Envelope {
        message_id: admitted.message_id,
        sender_id: received.sender_id.clone(),
        sender_reference: admitted.reference.clone(),
        correlation_id: received.properties.correlation_id.clone(),
        // The database keeps microseconds: decide with the time it will store.
        accepted_at: Utc::now().trunc_subsecs(6),
    };
    let (message_id, version) = (admitted.message_id, admitted.version);
    check(conn, received, version, envelope)
        .await?
        .map_err(|rejection| Stop::rejected(rejection, Some(message_id), Some(version)))
}

/// Decodes and validates the body; the outer error is a fault, the inner one a rejection.
async fn check(
    conn: &mut PgConnection,
    received: &Received<'_>,
    version: ContractVersion,
    envelope: Envelope,
) -> Result<Result<Publication, Rejection>, HandlerError> {
    let draft = match contract::decode(version, received.incoming.body) {
        Ok(draft) => draft,
        Err(error) => return Ok(Err(undecodable(version, &error))),
    };
    // A type id that could not be kept is refused by validation, not looked up: PostgreSQL
    // refuses a NUL in a text parameter.
    let validity = match draft.message_type_id.as_deref() {
        Some(type_id) if validate::is_identifier(type_id) => {
            registry::find_validity_period(conn, type_id).await?
        }
        _ => None,
    };
    Ok(validate::validate(
        draft,
        &envelope,
        &received.sender,
        validity,
    ))
}

/// A body that does not decode: serde's error names the field and the position. It may quote
/// the body (an unknown field's name), so national numbers are masked; control characters are
/// escaped by [`Rejection::new`].
fn undecodable(version: ContractVersion, error: &serde_json::Error) -> Rejection {
    Rejection::new(
        Code::InvalidInput,
        format!(
            "the body is not a valid {} message: {}",
            version.as_str(),
            domain::ssin::mask_numbers(&error.to_string())
        ),
    )
}

/// The audit details of a provision: what was delivered, never the content.
fn provision_details(version: ContractVersion, publication: &Publication) -> serde_json::Value {
    serde_json::json!({
        "contractVersion": version.as_str(),
        "messageTypeId": publication.message_type_id,
        "senderOrganizationId": publication.sender_organization_id,
        "senderApplicationId": publication.sender_application_id,
        "expirationDate": publication.expiration_date,
        "bodyMainContent": publication.body_main_content,
        "attachments": publication.attachments.iter().map(|a| serde_json::json!({
            "mediaType": a.media_type,
            "size": a.content.len(),
            "mainContent": a.main_content,
            "digest": {"digestMethod": "sha_256", "digestValue": a.sha256.to_base64url()},
        })).collect::<Vec<_>>(),
    })
}

/// The accepted publication goes on to consent-check, and its sender hears `accepted`.
fn forward_accepted(
    received: &Received<'_>,
    publication: &Publication,
) -> Result<Outcome, HandlerError> {
    IntakeDecided {
        message_id: Some(publication.message_id),
        outcome: IntakeOutcome::Accepted,
        code: Code::Accepted,
    }
    .emit();
    let status = StatusEvent {
        sender_reference: Some(publication.sender_reference.as_str().to_owned()),
        message_id: Some(publication.message_id),
        status: Status::Accepted,
        code: Code::Accepted,
        message: messages::ACCEPTED_MESSAGE.to_owned(),
        at: publication.accepted_at,
        expiration_date: Some(publication.expiration_date),
        read_at: None,
        correlation_id: publication.correlation_id.clone(),
        proof_of_deposit: None,
        proof_of_reading: None,
    };
    Ok(Outcome::ack(vec![
        forward(publication)?,
        status_message(&received.sender.id, &status).permanent()?,
    ]))
}

/// Consent-check is handed the message id and recipient; it reads the rest from the record.
fn forward(publication: &Publication) -> Result<Outgoing, HandlerError> {
    let handoff = Handoff {
        message_id: publication.message_id,
        recipient: publication.recipient.clone(),
    };
    handoff::forward(
        CONSENT_CHECK_QUEUE,
        &handoff,
        publication.correlation_id.as_deref(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_content_hash_tells_releases_apart() {
        assert_eq!(
            content_hash(ContractVersion::V1, b"{}"),
            content_hash(ContractVersion::V1, b"{}")
        );
        assert_ne!(
            content_hash(ContractVersion::V1, b"{}"),
            content_hash(ContractVersion::V2, b"{}")
        );
    }

    #[test]
    fn an_unknown_field_named_with_a_nul_is_refused_in_words_the_audit_can_keep() {
        let body = br#"{"bad\u0000field": 1}"#;
        let error = contract::decode(ContractVersion::V1, body).expect_err("an unknown field");
        assert!(error.to_string().contains('\0'), "serde quotes the name");
        let rejection = undecodable(ContractVersion::V1, &error);
        assert_eq!(rejection.code, Code::InvalidInput);
        assert!(
            rejection
                .message
                .contains("unknown field `bad\\u0000field`"),
            "{}",
            rejection.message
        );
    }

    #[test]
    fn a_property_with_a_control_character_is_neither_audited_nor_echoed() {
        assert_eq!(keepable(&Some("ref-1".into())).as_deref(), Some("ref-1"));
        assert_eq!(keepable(&Some("ref\u{0}1".into())), None);
        assert_eq!(keepable(&None), None);
    }
}
