-- OAuth 2 / OpenID Connect authorization server (issue 5). Every bearer secret (client
-- secret, code, refresh token, session cookie) is stored only as an HMAC-SHA-256 under
-- the key store's "token-lookup" key (hex), never in clear.
CREATE TABLE oauth_clients (
    id                         TEXT PRIMARY KEY,          -- client_id
    name                       TEXT NOT NULL,
    public                     INTEGER NOT NULL CHECK (public IN (0, 1)),
    auth_method                TEXT NOT NULL CHECK (auth_method IN
                                   ('none', 'client_secret_basic', 'client_secret_post', 'private_key_jwt')),
    secret_hash                TEXT,                      -- NULL for public and private_key_jwt clients
    redirect_uris              TEXT NOT NULL,             -- JSON array of exact URIs
    post_logout_redirect_uris  TEXT NOT NULL,             -- JSON array
    grant_types                TEXT NOT NULL,             -- space-separated
    scope                      TEXT NOT NULL,             -- scopes the client may ask for
    first_party                INTEGER NOT NULL CHECK (first_party IN (0, 1)),
    legacy_password            INTEGER NOT NULL CHECK (legacy_password IN (0, 1)),
    id_token_alg               TEXT NOT NULL CHECK (id_token_alg IN ('ES256', 'RS256')),
    jwks                       TEXT,                      -- the client's public JWK set (private_key_jwt)
    created_at                 INTEGER NOT NULL,
    updated_at                 INTEGER NOT NULL
) STRICT;

-- Browser sessions at the authorization server (cookie __Host-boveda_session).
CREATE TABLE oauth_sessions (
    id          TEXT PRIMARY KEY,     -- HMAC of the cookie value
    user_id     TEXT,                 -- NULL until a login completes
    auth_time   INTEGER,              -- seconds
    acr         TEXT,
    amr         TEXT,                 -- space-separated
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL,
    ended_at    INTEGER
) STRICT;

-- A login in progress: the authorization request it serves and the steps done so far.
CREATE TABLE oauth_login_tx (
    id              TEXT PRIMARY KEY,           -- UUIDv7, in the login form
    session_id      TEXT NOT NULL,              -- the browser session it is bound to
    csrf_hash       TEXT NOT NULL,
    client_id       TEXT NOT NULL,
    redirect_uri    TEXT NOT NULL,
    scope           TEXT NOT NULL,
    state           TEXT,
    nonce           TEXT,
    code_challenge  TEXT NOT NULL,
    locale          TEXT NOT NULL,
    steps_required  TEXT NOT NULL,              -- space-separated, in order: "password [consent]"
    steps_done      TEXT NOT NULL,
    user_id         TEXT,
    created_at      INTEGER NOT NULL,
    expires_at      INTEGER NOT NULL,
    completed_at    INTEGER
) STRICT;

CREATE TABLE oauth_codes (
    id              TEXT PRIMARY KEY,           -- HMAC of the code
    client_id       TEXT NOT NULL,
    user_id         TEXT NOT NULL,
    session_id      TEXT,
    redirect_uri    TEXT NOT NULL,
    scope           TEXT NOT NULL,
    nonce           TEXT,
    code_challenge  TEXT NOT NULL,
    auth_time       INTEGER NOT NULL,
    acr             TEXT NOT NULL,
    amr             TEXT NOT NULL,
    created_at      INTEGER NOT NULL,
    expires_at      INTEGER NOT NULL,
    used_at         INTEGER,
    family_id       TEXT                        -- what the code issued (revoked on reuse)
) STRICT;

-- A grant: every refresh token rotated from one code (or password grant) is one family.
CREATE TABLE oauth_families (
    id              TEXT PRIMARY KEY,
    client_id       TEXT NOT NULL,
    user_id         TEXT NOT NULL,
    session_id      TEXT,
    scope           TEXT NOT NULL,
    auth_time       INTEGER NOT NULL,
    acr             TEXT NOT NULL,
    amr             TEXT NOT NULL,
    created_at      INTEGER NOT NULL,
    expires_at      INTEGER NOT NULL,
    revoked_at      INTEGER,
    revoked_reason  TEXT
) STRICT;
CREATE INDEX oauth_families_session ON oauth_families (session_id);

CREATE TABLE oauth_refresh_tokens (
    id          TEXT PRIMARY KEY,               -- HMAC of the token
    family_id   TEXT NOT NULL REFERENCES oauth_families (id),
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL,
    used_at     INTEGER                          -- rotated: any later use is a replay
) STRICT;
CREATE INDEX oauth_refresh_tokens_family ON oauth_refresh_tokens (family_id);

-- private_key_jwt assertions seen (RFC 7523 §3 jti), kept until they expire.
CREATE TABLE oauth_assertion_jti (
    client_id   TEXT NOT NULL,
    jti         TEXT NOT NULL,
    expires_at  INTEGER NOT NULL,
    PRIMARY KEY (client_id, jti)
) STRICT;

-- Access tokens revoked before their expiry (RFC 7009), by jti.
CREATE TABLE oauth_revoked_jti (
    jti         TEXT PRIMARY KEY,
    expires_at  INTEGER NOT NULL
) STRICT;
