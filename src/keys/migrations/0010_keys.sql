-- Key store (issue 3). Master keys live in the key-store adapter (file or PKCS#11 token);
-- this table only records which versions exist and which adapter holds them.
CREATE TABLE keys_master (
    version     INTEGER PRIMARY KEY,       -- 1, 2, ...; the highest is current
    adapter     TEXT NOT NULL CHECK (adapter IN ('file', 'pkcs11')),
    created_at  INTEGER NOT NULL           -- microseconds since the epoch
) STRICT;

-- Data keys (AES-256-GCM for fields, HMAC-SHA-256 for lookups), only ever stored wrapped
-- by a master key version: wrapped = nonce(12) || AES-GCM(master, key) || tag(16).
CREATE TABLE keys_data (
    kind            TEXT NOT NULL CHECK (kind IN ('aead', 'hmac')),
    purpose         TEXT NOT NULL,
    version         INTEGER NOT NULL,
    master_version  INTEGER NOT NULL REFERENCES keys_master(version),
    wrapped         BLOB NOT NULL,
    created_at      INTEGER NOT NULL,
    PRIMARY KEY (kind, purpose, version)
) STRICT;

-- JWS signing keys. public_key is a DER SubjectPublicKeyInfo; private_key is an envelope
-- ciphertext (purpose "signing") with the file adapter and NULL with pkcs11 (the private
-- key stays inside the token, label "boveda-sign-<kid>").
CREATE TABLE keys_signing (
    kid           TEXT PRIMARY KEY,
    alg           TEXT NOT NULL CHECK (alg IN ('ES256', 'RS256')),
    state         TEXT NOT NULL CHECK (state IN ('next', 'active', 'retired')),
    location      TEXT NOT NULL CHECK (location IN ('file', 'pkcs11')),
    public_key    BLOB NOT NULL,
    private_key   BLOB,
    created_at    INTEGER NOT NULL,
    activated_at  INTEGER,
    retired_at    INTEGER,
    retire_until  INTEGER                  -- retired keys verify (and are published) until then
) STRICT;
CREATE UNIQUE INDEX keys_signing_one_active ON keys_signing(alg) WHERE state = 'active';
CREATE UNIQUE INDEX keys_signing_one_next ON keys_signing(alg) WHERE state = 'next';
