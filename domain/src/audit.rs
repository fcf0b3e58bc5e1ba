//! The audit trail's vocabulary: which part of the service acted ([`Stage`]) and what it did
//! ([`Action`]). The records themselves are written by the `records` crate.

crate::vocabulary! {
    /// The part of the service that writes a record (or a stage decision).
    pub enum Stage {
        Intake => "intake",
        ConsentCheck => "consent-check",
        ConsentUpdates => "consent-updates",
        Store => "store",
        Notify => "notify",
        ReadReceipt => "read-receipt",
        /// The sender's status events called back over HTTPS (in the notify process).
        StatusCallbacks => "status-callbacks",
        Api => "api",
    }
}

crate::vocabulary! {
    /// Everything the audit trail can say happened.
    pub enum Action {
        /// Intake validated the message.
        Accepted => "accepted",
        /// Intake refused it; the code says why.
        Rejected => "rejected",
        /// The same reference again; the current status was re-sent.
        Duplicate => "duplicate",
        /// Parked for the operators (a publication from an unknown sender, or a delivery a
        /// stage gave up on that no sender hears of).
        DeadLettered => "dead-lettered",
        /// A stage gave up on an accepted message: its sender hears `failed`.
        Failed => "failed",
        /// The citizen consented: the message goes on to store.
        Consented => "consented",
        /// No consent: nothing stored, the sender sends it on paper.
        NoDigitalUser => "no-digital-user",
        ConsentGranted => "consent-granted",
        ConsentWithdrawn => "consent-withdrawn",
        PreferencesSet => "preferences-set",
        /// A preference change older than the one in force.
        PreferencesSuperseded => "preferences-superseded",
        /// The document is in the citizen's eBox.
        Stored => "stored",
        /// The document expired and was deleted.
        Deleted => "deleted",
        NotificationQueued => "notification-queued",
        NotificationSkipped => "notification-skipped",
        Notified => "notified",
        NotificationFailed => "notification-failed",
        NotificationRequeued => "notification-requeued",
        /// A document still unread got its `newDocumentReminder` (event, and notification
        /// unless the citizen opted out).
        ReminderRecorded => "reminder-recorded",
        /// A document still unread near its expiration got its `documentExpirationAlert`.
        ExpirationAlertRecorded => "expiration-alert-recorded",
        /// The sender was told the citizen read the message.
        ReadConfirmed => "read-confirmed",
        /// A citizen or sender read through the API.
        Consultation => "consultation",
        /// A citizen changed something through the API.
        Update => "update",
        /// The API refused a call (400, 401, 403, 404): probing leaves a trace.
        Refused => "refused",
        /// The sender withdrew the message: its document was removed from the citizen's eBox
        /// (or from the pipeline), a tombstone kept.
        Withdrawn => "withdrawn",
        /// Intake refused a withdrawal; the code says why. The message is untouched.
        WithdrawalRefused => "withdrawal-refused",
        /// A later stage met a message its sender had withdrawn, and did nothing with it.
        Halted => "halted",
        /// A status event is queued to be called back to its sender's status webhook.
        StatusCallbackQueued => "status-callback-queued",
        /// The sender's status webhook took the status event (2xx).
        StatusCallbackSent => "status-callback-sent",
        /// The callback was abandoned: its retry window closed (`ebox notifications retry
        /// --failed` queues it again).
        StatusCallbackFailed => "status-callback-failed",
    }
}
