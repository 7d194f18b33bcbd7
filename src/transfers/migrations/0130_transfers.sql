-- Customer transfers (issue 8, docs/transfers.md): the order a customer confirms with an OTP
-- and the worker's state machine that executes it exactly once against the core.
-- Times are microseconds since the epoch; money is minor units of `currency`.
CREATE TABLE customer_transfers (
    id                  TEXT PRIMARY KEY,      -- UUIDv7; also the reference in the core
    user_id             TEXT NOT NULL,         -- the customer (token subject)
    idem_key            TEXT NOT NULL,         -- Idempotency-Key of the creating request
    request_hash        TEXT NOT NULL,         -- SHA-256 (hex) of the canonical request
    from_account        TEXT NOT NULL,         -- source account id (owned by user_id)
    from_number         TEXT NOT NULL,
    to_account          TEXT NOT NULL,         -- destination account id (never shown to the customer)
    to_number           TEXT NOT NULL,
    to_customer         TEXT,                  -- the destination's customer id, NULL when none
    amount              INTEGER NOT NULL CHECK (amount > 0),
    currency            TEXT NOT NULL,
    description         TEXT,
    -- pending_confirmation | expired | queued | processing | success | fail
    status              TEXT NOT NULL,
    -- the worker's state (the seed's): NULL before confirmation, then
    -- queued | event_consumed | request_before | waiting | success | fail
    stage               TEXT,
    notification_status TEXT NOT NULL DEFAULT 'none', -- none | notify | notified
    challenge_id        TEXT,
    challenge_channel   TEXT,                  -- sms | email | totp
    challenge_expires_at INTEGER,
    confirm_by          INTEGER NOT NULL,      -- a pending transfer expires at this time
    attempts            INTEGER NOT NULL DEFAULT 0, -- retryable core failures so far
    sends               INTEGER NOT NULL DEFAULT 0, -- execute requests sent to the core
    last_deadline       INTEGER NOT NULL DEFAULT 0, -- the core refuses the last execute after this
    last_error          TEXT,                  -- slug of the last retryable failure
    core_transfer_id    TEXT,
    failure_type        TEXT,                  -- problem slug when failed
    failure_title       TEXT,
    created_at          INTEGER NOT NULL,
    confirmed_at        INTEGER,
    completed_at        INTEGER,
    updated_at          INTEGER NOT NULL,
    UNIQUE (user_id, idem_key)
) STRICT;
CREATE INDEX customer_transfers_user ON customer_transfers(user_id, id);
CREATE INDEX customer_transfers_daily ON customer_transfers(from_account, created_at);
CREATE INDEX customer_transfers_pending ON customer_transfers(status, confirm_by);

-- The worker's queue. Never dead-lettered (max_receives 0): a transfer that is not final
-- must keep its message until it is; retention 14 days.
INSERT INTO queues(name, fifo, visibility_timeout_us, delay_us, retention_us, max_receives, dlq, created_at) VALUES
    ('transfers', 0, 60000000, 0, 1209600000000, 0, NULL, 0)
    ON CONFLICT(name) DO NOTHING;
