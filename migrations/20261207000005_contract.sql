-- The rest of the Message Registry 2.1 contract.

-- `lastConsultationDate` in the eBox summary is the citizen's latest API call that succeeded,
-- read from the audit trail: one index probe per summary instead of a scan of the citizen's
-- ten years of records.
CREATE INDEX audit_events_citizen_access ON audit_events (ssin_hash, at)
    WHERE stage = 'api' AND action IN ('consultation', 'update');
