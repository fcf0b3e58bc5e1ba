//! Telemetry as events: one struct per thing that happens, whose `emit()` both logs and counts
//! (vector's habit), so a log line and its metric can never drift apart. Label values come
//! from vocabularies, never from free strings.

use crate::metrics::METRICS;
use domain::citizen::ChannelKind;
use domain::decision::{ConsentDecision, NotifyDecision};
use domain::ids::MessageId;
use domain::status::Code;
use domain::vocabulary::Vocabulary as _;
use std::time::Duration;
use tracing::{debug, info, warn};

domain::vocabulary! {
    /// How the driver settled a delivery.
    pub enum DeliveryOutcome {
        Ack => "ack",
        DeadLetter => "dead_letter",
        Requeue => "requeue",
    }
}

domain::vocabulary! {
    /// What became of a publish.
    pub enum PublishResult {
        Confirmed => "confirmed",
        Failed => "failed",
    }
}

domain::vocabulary! {
    /// How a background job's pass ended.
    pub enum PassResult {
        Ok => "ok",
        Failed => "failed",
    }
}

domain::vocabulary! {
    /// Why intake made a sender's lane wait.
    pub enum LaneWaitReason {
        /// Over its `messagesPerSecond`.
        MessagesPerSecond => "messages_per_second",
        /// Over its `bytesPerDay`.
        BytesPerDay => "bytes_per_day",
        /// At its bound of messages in flight (`EBOX_INTAKE_IN_FLIGHT_PER_SENDER`).
        InFlight => "in_flight",
    }
}

domain::vocabulary! {
    /// What intake did with a publication.
    pub enum IntakeOutcome {
        Accepted => "accepted",
        Rejected => "rejected",
        /// The same reference again: the current status was re-sent.
        Duplicate => "duplicate",
        /// Parked for the operators (unknown sender).
        DeadLetter => "dead_letter",
        /// A withdrawal (`ebox.withdraw.v1`) removed a message: its document is gone.
        Withdrawn => "withdrawn",
    }
}

impl IntakeOutcome {
    /// The codes intake may count with this outcome: a duplicate re-sends whatever status its
    /// message has reached.
    pub fn codes(self) -> impl Iterator<Item = Code> {
        Code::ALL.iter().copied().filter(move |code| match self {
            IntakeOutcome::Accepted => *code == Code::Accepted,
            IntakeOutcome::DeadLetter => *code == Code::UnknownSender,
            IntakeOutcome::Withdrawn => *code == Code::Withdrawn,
            IntakeOutcome::Rejected => !matches!(
                code,
                Code::Accepted
                    | Code::NoDigitalUser
                    | Code::Published
                    | Code::Expired
                    | Code::Read
                    | Code::TechnicalError
                    | Code::UnknownSender
                    | Code::Withdrawn
            ),
            IntakeOutcome::Duplicate => *code != Code::UnknownSender,
        })
    }
}

domain::vocabulary! {
    /// What became of a notification.
    pub enum NotificationResult {
        Queued => "queued",
        Skipped => "skipped",
        Sent => "sent",
        Retry => "retry",
        Failed => "failed",
    }
}

domain::vocabulary! {
    /// What became of a sender's status callback.
    pub enum CallbackResult {
        Queued => "queued",
        Sent => "sent",
        Retry => "retry",
        Failed => "failed",
    }
}

impl NotificationResult {
    /// Whether a notification on `channel` can end this way: `none` is always skipped, a
    /// channel with a target is queued, then sent, retried or abandoned.
    pub fn possible_on(self, channel: ChannelKind) -> bool {
        (channel == ChannelKind::None) == (self == NotificationResult::Skipped)
    }
}

/// A delivery was acked, dead-lettered or requeued.
pub struct DeliverySettled {
    pub queue: &'static str,
    pub outcome: DeliveryOutcome,
}

impl DeliverySettled {
    pub fn emit(self) {
        debug!(
            queue = self.queue,
            outcome = self.outcome.as_str(),
            "delivery settled"
        );
        METRICS
            .deliveries_total
            .with_label_values(&[self.queue, self.outcome.as_str()])
            .inc();
    }
}

/// A batch was handled, committed, published and settled.
pub struct BatchHandled {
    pub queue: &'static str,
    pub size: usize,
    pub elapsed: Duration,
}

impl BatchHandled {
    pub fn emit(self) {
        debug!(
            queue = self.queue,
            size = self.size,
            elapsed_ms = self.elapsed.as_millis() as u64,
            "batch handled"
        );
        METRICS
            .batch_size
            .with_label_values(&[self.queue])
            .observe(self.size as f64);
        METRICS
            .batch_seconds
            .with_label_values(&[self.queue])
            .observe(self.elapsed.as_secs_f64());
    }
}

/// A stage's handler finished with one delivery (whatever it decided).
pub struct MessageHandled {
    pub stage: domain::audit::Stage,
    pub elapsed: Duration,
}

impl MessageHandled {
    pub fn emit(self) {
        debug!(
            stage = self.stage.as_str(),
            elapsed_ms = self.elapsed.as_millis() as u64,
            "delivery handled"
        );
        METRICS
            .message_handling_seconds
            .with_label_values(&[self.stage.as_str()])
            .observe(self.elapsed.as_secs_f64());
    }
}

/// A stage took a delivery off its queue, `waited` after its publisher stamped it.
pub struct DeliveryTaken {
    pub stage: domain::audit::Stage,
    pub waited: Duration,
}

impl DeliveryTaken {
    pub fn emit(self) {
        debug!(
            stage = self.stage.as_str(),
            waited_ms = self.waited.as_millis() as u64,
            "delivery taken"
        );
        METRICS
            .queue_wait_seconds
            .with_label_values(&[self.stage.as_str()])
            .observe(self.waited.as_secs_f64());
    }
}

/// Store published a document in the citizen's eBox, `since_accepted` after intake accepted
/// its message.
pub struct DocumentPublished {
    pub message_id: MessageId,
    pub since_accepted: Duration,
}

impl DocumentPublished {
    pub fn emit(self) {
        debug!(
            message_id = %self.message_id,
            since_accepted_ms = self.since_accepted.as_millis() as u64,
            "document published"
        );
        METRICS
            .publish_to_published_seconds
            .observe(self.since_accepted.as_secs_f64());
    }
}

/// The notification outbox, as the dispatcher found it.
pub struct OutboxBacklog {
    pub pending: i64,
    pub oldest: Duration,
}

impl OutboxBacklog {
    pub fn emit(self) {
        debug!(
            pending = self.pending,
            oldest_s = self.oldest.as_secs(),
            "notification outbox"
        );
        METRICS.notification_outbox_pending.set(self.pending);
        METRICS
            .notification_outbox_oldest_seconds
            .set(self.oldest.as_secs_f64());
    }
}

/// The status callbacks' outbox, as their dispatcher found it.
pub struct CallbackBacklog {
    pub pending: i64,
    pub oldest: Duration,
}

impl CallbackBacklog {
    pub fn emit(self) {
        debug!(
            pending = self.pending,
            oldest_s = self.oldest.as_secs(),
            "status callback outbox"
        );
        METRICS.status_callback_outbox_pending.set(self.pending);
        METRICS
            .status_callback_outbox_oldest_seconds
            .set(self.oldest.as_secs_f64());
    }
}

/// A status event was recorded to be called back to its sender.
pub struct StatusCallbackQueued<'a> {
    pub sender_id: &'a str,
    pub key: &'a str,
    pub status: &'a str,
}

impl StatusCallbackQueued<'_> {
    pub fn emit(self) {
        let (key, sender, status) = (self.key, self.sender_id, self.status);
        info!(key, sender, status, "status callback queued");
        METRICS
            .status_callbacks_total
            .with_label_values(&[CallbackResult::Queued.as_str()])
            .inc();
    }
}

/// The dispatcher sent a status callback, will retry it, or abandoned it.
pub struct StatusCallbackSettled<'a> {
    pub sender_id: &'a str,
    pub key: &'a str,
    pub status: &'a str,
    pub result: CallbackResult,
    pub attempts: i32,
    pub error: Option<&'a str>,
    pub retry_in: Option<Duration>,
}

impl StatusCallbackSettled<'_> {
    pub fn emit(self) {
        let (key, sender, status, attempts, error) = (
            self.key,
            self.sender_id,
            self.status,
            self.attempts,
            self.error,
        );
        match self.result {
            CallbackResult::Sent => info!(key, sender, status, attempts, "status callback sent"),
            CallbackResult::Retry => warn!(
                key,
                sender,
                status,
                attempts,
                error,
                retry_in_ms = self.retry_in.map(|d| d.as_millis() as u64),
                "status callback failed; retrying"
            ),
            _ => warn!(
                key,
                sender, status, attempts, error, "status callback abandoned"
            ),
        }
        METRICS
            .status_callbacks_total
            .with_label_values(&[self.result.as_str()])
            .inc();
    }
}

/// The API answered a request. `route` is the route template (`/ebox/messages/{message_id}`),
/// never the path a client sent: the label stays bounded and carries no identifier.
/// The API answered a request: counted, timed, and written to the access log (target
/// `ebox::access`: method, route template, status, duration; never a token, a national number
/// or a message id — the audit trail has who saw what).
pub struct HttpRequestAnswered<'a> {
    pub method: &'a str,
    pub route: &'a str,
    pub status: u16,
    pub elapsed: Duration,
}

impl HttpRequestAnswered<'_> {
    pub fn emit(self) {
        info!(
            target: "ebox::access",
            method = self.method,
            route = self.route,
            status = self.status,
            duration_ms = self.elapsed.as_secs_f64() * 1000.0,
            "request answered"
        );
        METRICS
            .http_requests_total
            .with_label_values(&[self.route, &self.status.to_string()])
            .inc();
        METRICS
            .http_request_seconds
            .with_label_values(&[self.route])
            .observe(self.elapsed.as_secs_f64());
    }
}

/// A batch met a transient fault and will be retried.
pub struct TransientFault<'a> {
    pub queue: &'static str,
    pub error: &'a anyhow::Error,
    pub retry_in: Duration,
}

impl TransientFault<'_> {
    pub fn emit(self) {
        warn!(
            queue = self.queue,
            error = format!("{:#}", self.error),
            retry_in_ms = self.retry_in.as_millis() as u64,
            "transient fault; retrying the batch"
        );
        METRICS
            .transient_failures_total
            .with_label_values(&[self.queue])
            .inc();
    }
}

/// The broker confirmed, or refused, one publish.
pub struct MessagePublished<'a> {
    pub exchange: &'a str,
    pub result: PublishResult,
}

impl MessagePublished<'_> {
    pub fn emit(self) {
        let exchange = if self.exchange.is_empty() {
            "(default)"
        } else {
            self.exchange
        };
        if self.result == PublishResult::Failed {
            debug!(exchange, "publish failed");
        }
        METRICS
            .publishes_total
            .with_label_values(&[exchange, self.result.as_str()])
            .inc();
    }
}

/// Intake made a sender's lane wait: it takes nothing more from it for a while.
pub struct LaneWaited<'a> {
    pub sender: &'a str,
    pub reason: LaneWaitReason,
}

impl LaneWaited<'_> {
    pub fn emit(self) {
        // The bound on messages in flight is looked at every 50 ms while it holds: debug.
        if self.reason == LaneWaitReason::InFlight {
            debug!(
                sender = self.sender,
                reason = self.reason.as_str(),
                "lane waits"
            );
        } else {
            info!(
                sender = self.sender,
                reason = self.reason.as_str(),
                "lane waits"
            );
        }
        METRICS
            .intake_lane_waits_total
            .with_label_values(&[self.reason.as_str()])
            .inc();
    }
}

/// Intake decided what to do with a publication.
pub struct IntakeDecided {
    pub message_id: Option<MessageId>,
    pub outcome: IntakeOutcome,
    pub code: Code,
}

impl IntakeDecided {
    pub fn emit(self) {
        info!(
            message_id = self.message_id.map(|id| id.to_string()),
            outcome = self.outcome.as_str(),
            code = self.code.as_str(),
            "intake decided"
        );
        METRICS
            .intake_decisions_total
            .with_label_values(&[self.outcome.as_str(), self.code.as_str()])
            .inc();
    }
}

/// Consent-check decided for a message.
pub struct ConsentDecided {
    pub message_id: MessageId,
    pub decision: ConsentDecision,
}

impl ConsentDecided {
    pub fn emit(self) {
        info!(message_id = %self.message_id, decision = self.decision.as_str(), "consent checked");
        METRICS
            .consent_decisions_total
            .with_label_values(&[self.decision.as_str()])
            .inc();
    }
}

/// A stage refused an internal message that disagrees with what is recorded: an injected
/// message, or a bug. Nothing was done; the refusal is audited.
pub struct InternalRefused<'a> {
    pub stage: domain::audit::Stage,
    pub message_id: Option<MessageId>,
    pub reason: &'a str,
}

impl InternalRefused<'_> {
    pub fn emit(self) {
        warn!(
            stage = self.stage.as_str(),
            message_id = self.message_id.map(|id| id.to_string()),
            reason = self.reason,
            "internal message refused: it disagrees with the recorded state"
        );
        METRICS
            .internal_refused_total
            .with_label_values(&[self.stage.as_str()])
            .inc();
    }
}

/// Notify decided whether to notify (queued or skipped).
pub struct NotificationDecided {
    pub message_id: MessageId,
    pub channel: ChannelKind,
    pub decision: NotifyDecision,
}

impl NotificationDecided {
    pub fn emit(self) {
        info!(message_id = %self.message_id, channel = self.channel.as_str(), decision = self.decision.as_str(), "notification decided");
        let result = match self.decision {
            NotifyDecision::Queued => NotificationResult::Queued,
            NotifyDecision::Skipped => NotificationResult::Skipped,
        };
        METRICS
            .notifications_total
            .with_label_values(&[self.channel.as_str(), result.as_str()])
            .inc();
    }
}

/// The dispatcher sent a notification, will retry it, or abandoned it.
pub struct NotificationSettled<'a> {
    pub message_id: MessageId,
    pub channel: ChannelKind,
    pub result: NotificationResult,
    pub attempts: u32,
    pub error: Option<&'a anyhow::Error>,
    pub retry_in: Option<Duration>,
}

impl NotificationSettled<'_> {
    pub fn emit(self) {
        let error = self.error.map(|e| format!("{e:#}"));
        let (message_id, channel, attempts) =
            (self.message_id, self.channel.as_str(), self.attempts);
        match self.result {
            NotificationResult::Sent => info!(%message_id, channel, attempts, "notification sent"),
            NotificationResult::Retry => warn!(
                %message_id,
                channel,
                attempts,
                retry_in_s = self.retry_in.map(|d| d.as_secs()),
                error,
                "notification failed; will retry"
            ),
            _ => tracing::error!(%message_id, channel, attempts, error, "notification abandoned"),
        }
        METRICS
            .notifications_total
            .with_label_values(&[channel, self.result.as_str()])
            .inc();
    }
}

/// A background job finished a pass.
pub struct JobPassed {
    pub job: &'static str,
    pub result: PassResult,
    pub elapsed: Duration,
}

impl JobPassed {
    pub fn new(job: &'static str, result: PassResult, elapsed: Duration) -> Self {
        Self {
            job,
            result,
            elapsed,
        }
    }

    pub fn emit(self) {
        debug!(
            job = self.job,
            result = self.result.as_str(),
            elapsed_ms = self.elapsed.as_millis() as u64,
            "job pass"
        );
        METRICS
            .job_passes_total
            .with_label_values(&[self.job, self.result.as_str()])
            .inc();
        METRICS
            .job_pass_seconds
            .with_label_values(&[self.job])
            .observe(self.elapsed.as_secs_f64());
    }
}

/// The backlog of parked publishes, as the republisher found it.
pub struct ParkedBacklog {
    pub count: i64,
    pub oldest: Duration,
}

impl ParkedBacklog {
    pub fn emit(self) {
        if self.count > 0 {
            warn!(
                count = self.count,
                oldest_s = self.oldest.as_secs(),
                "messages wait in the parked publishes"
            );
        }
        METRICS.parked_publishes.set(self.count);
        METRICS
            .parked_publish_oldest_seconds
            .set(self.oldest.as_secs_f64());
    }
}

/// A stage parked messages the broker would not take, and acknowledged its batch.
pub struct PublishesParked<'a> {
    pub queue: &'static str,
    pub count: usize,
    pub error: &'a str,
}

impl PublishesParked<'_> {
    pub fn emit(self) {
        tracing::error!(
            queue = self.queue,
            count = self.count,
            error = self.error,
            "the broker would not take these messages; parked for the republisher"
        );
        METRICS
            .publishes_parked_total
            .with_label_values(&[self.queue])
            .inc_by(self.count as u64);
    }
}

/// The stuck-message check found messages that stayed `accepted` too long.
pub struct StuckMessagesFound {
    pub count: i64,
    pub oldest: Duration,
}

impl StuckMessagesFound {
    pub fn emit(self) {
        if self.count > 0 {
            tracing::error!(
                count = self.count,
                oldest_s = self.oldest.as_secs(),
                "messages have stayed accepted too long"
            );
        }
        METRICS.stuck_messages.set(self.count);
        METRICS
            .stuck_message_oldest_seconds
            .set(self.oldest.as_secs_f64());
    }
}

domain::vocabulary! {
    /// How the event relay settled an event with the event engine.
    pub enum RelayResult {
        /// Taken (2xx).
        Delivered => "delivered",
        /// The event engine had it already (409): taken earlier, its answer lost.
        AlreadyDelivered => "already_delivered",
        /// Refused for good (400), or waiting behind an event of the same message that was:
        /// kept for the operators.
        Parked => "parked",
    }
}

domain::vocabulary! {
    /// Why a push to the event engine failed (it is made again after a back-off).
    pub enum RelayFault {
        /// No answer: refused connection, DNS, TLS, time-out.
        Unreachable => "unreachable",
        /// 5xx or 429.
        ServerError => "server_error",
        /// 401 or 403, or the token file could not be read.
        Unauthorized => "unauthorized",
        /// Any other answer.
        Unexpected => "unexpected",
    }
}

/// The event relay settled events with the event engine.
pub struct EventsRelayed {
    pub result: RelayResult,
    pub count: usize,
    /// The first and last sequence numbers of the events.
    pub first: i64,
    pub last: i64,
}

impl EventsRelayed {
    pub fn emit(self) {
        info!(
            result = self.result.as_str(),
            count = self.count,
            first_sequence_nbr = self.first,
            last_sequence_nbr = self.last,
            "events relayed to the event engine"
        );
        METRICS
            .event_relay_events_total
            .with_label_values(&[self.result.as_str()])
            .inc_by(self.count as u64);
    }
}

/// The event relay set an event aside for the operators.
pub struct EventParked<'a> {
    pub sequence_nbr: i64,
    pub message_id: MessageId,
    pub reason: &'a str,
}

impl EventParked<'_> {
    pub fn emit(self) {
        tracing::error!(
            sequence_nbr = self.sequence_nbr,
            message_id = %self.message_id,
            reason = self.reason,
            "event parked: see `ebox events parked`, then `ebox events retry`"
        );
        METRICS
            .event_relay_events_total
            .with_label_values(&[RelayResult::Parked.as_str()])
            .inc();
    }
}

/// A push to the event engine failed; the relay tries again after `retry_in`.
pub struct EventRelayFailed<'a> {
    pub reason: RelayFault,
    pub error: &'a str,
    pub events: usize,
    pub retry_in: Duration,
}

impl EventRelayFailed<'_> {
    pub fn emit(self) {
        warn!(
            reason = self.reason.as_str(),
            error = self.error,
            events = self.events,
            retry_in_ms = self.retry_in.as_millis() as u64,
            "the event engine did not take the events; retrying"
        );
        METRICS
            .event_relay_failures_total
            .with_label_values(&[self.reason.as_str()])
            .inc();
    }
}

/// The events outbox, as the event relay found it.
pub struct EventRelayBacklog {
    pub pending: i64,
    pub oldest: Duration,
    pub parked: i64,
}

impl EventRelayBacklog {
    pub fn emit(self) {
        debug!(
            pending = self.pending,
            oldest_s = self.oldest.as_secs(),
            parked = self.parked,
            "events outbox"
        );
        METRICS.event_relay_pending.set(self.pending);
        METRICS
            .event_relay_oldest_pending_seconds
            .set(self.oldest.as_secs_f64());
        METRICS.event_relay_parked.set(self.parked);
    }
}
