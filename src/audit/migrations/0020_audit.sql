-- Append-only, hash-chained audit log (docs/audit.md). seq is contiguous from 1; hash is
-- SHA-256 over the length-prefixed encoding of every other column (prev_hash included).
CREATE TABLE audit_log (
    seq         INTEGER PRIMARY KEY,       -- 1, 2, 3, ... (no gaps)
    id          TEXT NOT NULL UNIQUE,      -- UUIDv7
    time        INTEGER NOT NULL,          -- microseconds since the epoch
    actor       TEXT NOT NULL,             -- "user:<id>", "client:<id>", "admin:admin", "system"
    action      TEXT NOT NULL,             -- dotted verb
    resource    TEXT,
    outcome     TEXT NOT NULL,             -- success | denied | invalid | failure
    source_ip   TEXT,
    request_id  TEXT,
    details     TEXT NOT NULL,             -- canonical JSON object (sorted keys, compact)
    prev_hash   BLOB NOT NULL,             -- 32 bytes; zeros for seq 1
    hash        BLOB NOT NULL              -- 32 bytes
) STRICT;
CREATE INDEX audit_log_actor ON audit_log(actor, seq);
CREATE INDEX audit_log_action ON audit_log(action, seq);

-- Signed chain heads. signature is over the encoding of (seq, hash, time) (docs/audit.md).
CREATE TABLE audit_checkpoints (
    seq         INTEGER PRIMARY KEY,       -- the audit_log.seq of the head that was signed
    hash        BLOB NOT NULL,             -- that record's hash
    time        INTEGER NOT NULL,          -- microseconds since the epoch
    kid         TEXT NOT NULL,
    alg         TEXT NOT NULL,
    signature   BLOB NOT NULL
) STRICT;
