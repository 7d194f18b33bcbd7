-- Identity (issue 5): people who log in, and the persisted brute-force counters.
CREATE TABLE identity_users (
    id                   TEXT PRIMARY KEY,            -- UUIDv7
    username             TEXT NOT NULL,               -- canonical (lower-case)
    email                TEXT,                        -- NULL when none
    phone                TEXT,                        -- E.164, NULL when none
    display_name         TEXT NOT NULL,
    status               TEXT NOT NULL CHECK (status IN ('pending_onboarding', 'active', 'locked', 'disabled')),
    password_hash        TEXT,                        -- Argon2id PHC string; NULL = no password login
    password_changed_at  INTEGER,
    created_at           INTEGER NOT NULL,            -- microseconds since the epoch
    updated_at           INTEGER NOT NULL,
    last_login_at        INTEGER
) STRICT;
CREATE UNIQUE INDEX identity_users_username ON identity_users (username);
CREATE UNIQUE INDEX identity_users_email ON identity_users (email) WHERE email IS NOT NULL;
CREATE UNIQUE INDEX identity_users_phone ON identity_users (phone) WHERE phone IS NOT NULL;

-- One row per throttled key: 'account:<canonical username>' (whether or not it exists)
-- or 'ip:<address>'. Rows are deleted on success and forgotten after the lock window.
CREATE TABLE identity_throttle (
    key              TEXT PRIMARY KEY,
    failures         INTEGER NOT NULL,
    last_failure_at  INTEGER NOT NULL,
    locked_until     INTEGER NOT NULL DEFAULT 0
) STRICT;
