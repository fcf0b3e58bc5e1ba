//! What each stage decided for a message (recorded in `stage_decisions`, replayed on a
//! redelivery instead of deciding again).

crate::vocabulary! {
    /// Consent-check's decision.
    pub enum ConsentDecision {
        Consented => "consented",
        NoDigitalUser => "no-digital-user",
    }
}

crate::vocabulary! {
    /// Store's decision (the only one: a consented message is stored).
    pub enum StoreDecision {
        Stored => "stored",
    }
}

crate::vocabulary! {
    /// Notify's decision.
    pub enum NotifyDecision {
        /// A notification is in the outbox.
        Queued => "queued",
        /// Opted out, or no preference: nothing to send.
        Skipped => "skipped",
    }
}

crate::vocabulary! {
    /// Read-receipt's decision.
    pub enum ReadDecision {
        Read => "read",
    }
}
