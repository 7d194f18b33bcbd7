-- Transactional outbox: events written in the same transaction as the change that caused
-- them; the queue module (issue 6) publishes them. payload is JSON.
CREATE TABLE outbox (
    id          TEXT PRIMARY KEY,          -- UUIDv7
    topic       TEXT NOT NULL,
    payload     TEXT NOT NULL,
    attributes  TEXT NOT NULL DEFAULT '{}', -- JSON object of message attributes
    created_at  INTEGER NOT NULL,          -- microseconds since the epoch
    published_at INTEGER
) STRICT;
CREATE INDEX outbox_unpublished ON outbox(created_at) WHERE published_at IS NULL;
