-- Durable queues with SQS semantics, topics with SNS-style filter policies (issue 6).
-- Times are microseconds since the epoch; durations microseconds unless named _s.
CREATE TABLE queues (
    name                  TEXT PRIMARY KEY,           -- [a-z0-9._-]{1,80}
    fifo                  INTEGER NOT NULL DEFAULT 0, -- 1: message groups, deduplication
    visibility_timeout_us INTEGER NOT NULL,
    delay_us              INTEGER NOT NULL DEFAULT 0, -- default delivery delay
    retention_us          INTEGER NOT NULL,
    max_receives          INTEGER NOT NULL DEFAULT 0, -- 0: never dead-lettered
    dlq                   TEXT,                       -- dead-letter queue name
    created_at            INTEGER NOT NULL
) STRICT;

CREATE TABLE queue_messages (
    seq               INTEGER PRIMARY KEY,            -- send order (rowid)
    id                TEXT NOT NULL,                  -- UUIDv7 (unique by construction; not indexed)
    queue             TEXT NOT NULL,
    body              BLOB NOT NULL,
    attributes        TEXT NOT NULL DEFAULT '{}',     -- JSON object
    group_id          TEXT,                           -- FIFO message group
    dedup_id          TEXT,
    visible_at        INTEGER NOT NULL,
    receive_count     INTEGER NOT NULL DEFAULT 0,
    first_received_at INTEGER,
    created_at        INTEGER NOT NULL,               -- first sent (kept across DLQ moves)
    receipt           TEXT,                           -- current receipt handle (NULL: never received)
    source_queue      TEXT                            -- set when dead-lettered: where it came from
) STRICT;
CREATE INDEX queue_messages_ready ON queue_messages(queue, visible_at, seq);
CREATE INDEX queue_messages_group ON queue_messages(queue, group_id, seq) WHERE group_id IS NOT NULL;
CREATE INDEX queue_messages_age ON queue_messages(queue, created_at);

-- FIFO deduplication ids, remembered for 5 minutes.
CREATE TABLE queue_dedup (
    queue      TEXT NOT NULL,
    dedup_id   TEXT NOT NULL,
    message_id TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    PRIMARY KEY (queue, dedup_id)
) STRICT, WITHOUT ROWID;

CREATE TABLE topics (
    name       TEXT PRIMARY KEY,
    created_at INTEGER NOT NULL
) STRICT;

CREATE TABLE topic_subscriptions (
    id            TEXT PRIMARY KEY,                   -- UUIDv7
    topic         TEXT NOT NULL REFERENCES topics(name),
    queue         TEXT NOT NULL REFERENCES queues(name),
    filter_policy TEXT,                               -- JSON object, NULL: every message
    created_at    INTEGER NOT NULL,
    UNIQUE (topic, queue)
) STRICT;
