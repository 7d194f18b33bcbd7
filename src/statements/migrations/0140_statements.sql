-- Statements by e-mail (issue 8): one row per customer request. The row and the queue
-- message that asks for it are written in one transaction; the consumer marks the row sent
-- in the transaction that publishes the e-mail (or failed, with a reason).
CREATE TABLE statement_requests (
    id               TEXT PRIMARY KEY,                    -- UUIDv7; also the notification id
    user_id          TEXT NOT NULL,                       -- the customer who asked
    account_id       TEXT NOT NULL,
    from_at          INTEGER NOT NULL,                    -- period [from_at, to_at), microseconds
    to_at            INTEGER NOT NULL,
    format           TEXT NOT NULL CHECK (format IN ('pdf', 'csv')),
    status           TEXT NOT NULL CHECK (status IN ('queued', 'sent', 'failed')),
    error            TEXT,                                -- reason code when failed
    idem_key         TEXT,                                -- Idempotency-Key header, NULL if none
    request_hash     BLOB NOT NULL,                       -- SHA-256 of the request's content
    movements        INTEGER,                             -- movements in the statement sent
    size_bytes       INTEGER,                             -- size of the attachment sent
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL
) STRICT;
CREATE INDEX statement_requests_user ON statement_requests (user_id, created_at);
CREATE UNIQUE INDEX statement_requests_idem ON statement_requests (user_id, idem_key) WHERE idem_key IS NOT NULL;
