-- Notifications (issue 6): the delivery log and the queues/topic/subscriptions that route
-- notifications to the e-mail and SMS consumers. The topology is created here so that
-- bv_notify_publish works in any migrated store.
CREATE TABLE notifications (
    id          TEXT PRIMARY KEY,          -- UUIDv7 (or the caller's UUID)
    customer_id TEXT NOT NULL,
    kind        TEXT NOT NULL,             -- movement | otp | security_alert | statement | test
    template    TEXT NOT NULL,
    locale      TEXT NOT NULL,             -- es | en
    payload     TEXT,                      -- the event as published (NULL for OTPs: never kept)
    created_at  INTEGER NOT NULL
) STRICT;
CREATE INDEX notifications_customer ON notifications(customer_id, id);
CREATE INDEX notifications_kind ON notifications(kind, id);

-- One row per notification and channel: the at-most-once state.
CREATE TABLE notification_channels (
    notification_id     TEXT NOT NULL REFERENCES notifications(id),
    channel             TEXT NOT NULL,     -- email | sms
    status              TEXT NOT NULL,     -- pending | retrying | delivered | failed | skipped
    attempts            INTEGER NOT NULL DEFAULT 0,
    provider            TEXT,              -- last provider used
    provider_message_id TEXT,
    last_error          TEXT,              -- short reason, never message content
    generation          INTEGER NOT NULL DEFAULT 1, -- bumped by an admin replay
    updated_at          INTEGER NOT NULL,
    PRIMARY KEY (notification_id, channel)
) STRICT, WITHOUT ROWID;
CREATE INDEX notification_channels_status ON notification_channels(status, notification_id);

-- Every delivery attempt.
CREATE TABLE notification_attempts (
    id                  TEXT PRIMARY KEY,  -- UUIDv7
    notification_id     TEXT NOT NULL,
    channel             TEXT NOT NULL,
    generation          INTEGER NOT NULL,
    provider            TEXT NOT NULL,     -- smtp-primary, sms-secondary, ...
    status              TEXT NOT NULL,     -- sent | retry | rate_limited | failed
    provider_message_id TEXT,
    error               TEXT,
    duration_us         INTEGER NOT NULL,
    at                  INTEGER NOT NULL
) STRICT;
CREATE INDEX notification_attempts_notification ON notification_attempts(notification_id, at);

INSERT INTO queues(name, fifo, visibility_timeout_us, delay_us, retention_us, max_receives, dlq, created_at) VALUES
    ('email-dlq', 0, 30000000, 0, 1209600000000, 0, NULL, 0),
    ('sms-dlq',   0, 30000000, 0, 1209600000000, 0, NULL, 0),
    ('analysis',  0, 30000000, 0, 1209600000000, 0, NULL, 0),
    ('email',     0, 30000000, 0, 345600000000, 12, 'email-dlq', 0),
    ('sms',       0, 30000000, 0, 345600000000, 12, 'sms-dlq', 0)
    ON CONFLICT(name) DO NOTHING;
INSERT INTO topics(name, created_at) VALUES ('notifications', 0), ('ledger', 0) ON CONFLICT(name) DO NOTHING;
INSERT INTO topic_subscriptions(id, topic, queue, filter_policy, created_at) VALUES
    ('01900000-0000-7000-8000-000000000071', 'notifications', 'email',
     '{"channels":["email"],"has_email":[{"exists":true}]}', 0),
    ('01900000-0000-7000-8000-000000000072', 'notifications', 'sms',
     '{"channels":["sms"],"has_phone":[{"exists":true}]}', 0)
    ON CONFLICT(topic, queue) DO NOTHING;
