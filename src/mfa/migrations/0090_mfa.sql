-- MFA (issue 7): one-time code challenges, the proofs they yield, TOTP soft tokens and
-- recovery codes. No code, seed or proof is ever stored in clear.
CREATE TABLE mfa_challenges (
    id           TEXT PRIMARY KEY,                     -- UUIDv7
    user_id      TEXT NOT NULL,
    purpose      TEXT NOT NULL CHECK (purpose IN ('login', 'transfer', 'profile_change', 'device_enrolment')),
    channel      TEXT NOT NULL CHECK (channel IN ('sms', 'email', 'totp')),
    binding      BLOB,                                 -- SHA-256 of the operation, NULL when unbound
    code_mac     BLOB,                                 -- HMAC(otp key, id ':' code); NULL for totp
    status       TEXT NOT NULL CHECK (status IN ('pending', 'verified', 'locked')),
    attempts     INTEGER NOT NULL DEFAULT 0,           -- wrong codes so far
    created_at   INTEGER NOT NULL,                     -- microseconds since the epoch
    expires_at   INTEGER NOT NULL,
    verified_at  INTEGER
) STRICT;
CREATE INDEX mfa_challenges_user ON mfa_challenges (user_id, created_at);

CREATE TABLE mfa_proofs (
    hash          BLOB PRIMARY KEY,                    -- SHA-256 of the proof token
    user_id       TEXT NOT NULL,
    challenge_id  TEXT NOT NULL,
    purpose       TEXT NOT NULL,
    binding       BLOB,
    created_at    INTEGER NOT NULL,
    expires_at    INTEGER NOT NULL,
    used_at       INTEGER
) STRICT;

CREATE TABLE mfa_totp (
    id            TEXT PRIMARY KEY,                    -- UUIDv7, the aad row of seed
    user_id       TEXT NOT NULL UNIQUE,
    status        TEXT NOT NULL CHECK (status IN ('pending', 'active')),
    seed          BLOB NOT NULL,                       -- bv_keys_encrypt("totp", mfa_totp/id/seed)
    alg           TEXT NOT NULL DEFAULT 'SHA1',
    digits        INTEGER NOT NULL DEFAULT 6,
    period        INTEGER NOT NULL DEFAULT 30,
    last_step     INTEGER NOT NULL DEFAULT -1,         -- highest accepted time step (replay guard)
    created_at    INTEGER NOT NULL,
    confirmed_at  INTEGER
) STRICT;

CREATE TABLE mfa_recovery_codes (
    user_id     TEXT NOT NULL,
    code_mac    BLOB NOT NULL,                         -- HMAC(otp key, 'recovery:' user ':' code)
    created_at  INTEGER NOT NULL,
    used_at     INTEGER,
    PRIMARY KEY (user_id, code_mac)
) STRICT;
