-- Ledger (issue 4, docs/ledger.md). Money is INTEGER minor units of the account's currency;
-- times are microseconds since the epoch. Internal integer keys (rid) keep the hot indexes
-- small; the public ids are UUIDv7 strings.
CREATE TABLE ledger_accounts (
    rid             INTEGER PRIMARY KEY,
    id              TEXT NOT NULL UNIQUE,      -- UUIDv7
    number          TEXT NOT NULL UNIQUE,      -- 16 digits, ISO 7064 MOD 97-10 check digits
    type            TEXT NOT NULL CHECK (type IN ('checking', 'savings', 'wallet', 'internal')),
    currency        TEXT NOT NULL,             -- ISO 4217
    status          TEXT NOT NULL CHECK (status IN ('active', 'frozen', 'closed')),
    holder_name     TEXT NOT NULL,
    customer_id     TEXT,
    creation_key    TEXT UNIQUE,               -- Idempotency-Key of the request that opened it
    overdraft_limit INTEGER NOT NULL DEFAULT 0 CHECK (overdraft_limit >= 0),
    allow_negative  INTEGER NOT NULL DEFAULT 0 CHECK (allow_negative IN (0, 1)),
    balance         INTEGER NOT NULL DEFAULT 0,  -- sum of the account's movements
    holds           INTEGER NOT NULL DEFAULT 0,  -- sum of its pending debits
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL
) STRICT;
CREATE INDEX ledger_accounts_customer ON ledger_accounts(customer_id) WHERE customer_id IS NOT NULL;

-- One row per transfer: posted, pending (a hold), or a reversal of another transfer.
-- A pending transfer becomes posted (possibly for less), voided or expired.
-- A posted transfer IS its two postings (double entry in one row): the debit account's
-- movement is -posted_amount and leaves debit_balance_after, the credit account's is
-- +posted_amount and leaves credit_balance_after, both at posted_at. posted_at is strictly
-- increasing across the ledger (the engine assigns it), so it is the movements' time, order
-- and cursor; the two partial indexes below are each account's movement history, newest
-- first in one index range (the "last 4 movements" query).
CREATE TABLE ledger_transfers (
    rid                   INTEGER PRIMARY KEY,
    id                    TEXT NOT NULL UNIQUE,        -- UUIDv7
    reference             TEXT NOT NULL UNIQUE,        -- idempotency key, unique forever
    debit                 INTEGER NOT NULL,            -- ledger_accounts.rid (checked by verify)
    credit                INTEGER NOT NULL,
    currency              TEXT NOT NULL,
    amount                INTEGER NOT NULL CHECK (amount > 0), -- requested (held) amount
    posted_amount         INTEGER NOT NULL DEFAULT 0,  -- what moved
    status                TEXT NOT NULL CHECK (status IN ('posted', 'pending', 'voided', 'expired')),
    pending               INTEGER NOT NULL DEFAULT 0,  -- 1 if created as a hold
    expires_at            INTEGER,
    description           TEXT NOT NULL DEFAULT '',
    reverses              INTEGER,                     -- rid of the reversed transfer
    resolve_key           TEXT,                        -- Idempotency-Key of post/void
    created_at            INTEGER NOT NULL,
    resolved_at           INTEGER,
    posted_at             INTEGER,                     -- NULL unless posted
    debit_balance_after   INTEGER,
    credit_balance_after  INTEGER
) STRICT;
CREATE UNIQUE INDEX ledger_transfers_reverses ON ledger_transfers(reverses) WHERE reverses IS NOT NULL;
CREATE INDEX ledger_transfers_holds ON ledger_transfers(debit, expires_at) WHERE status = 'pending';
CREATE INDEX ledger_transfers_expiry ON ledger_transfers(expires_at) WHERE status = 'pending' AND expires_at IS NOT NULL;
CREATE INDEX ledger_transfers_debits ON ledger_transfers(debit, posted_at) WHERE posted_at IS NOT NULL;
CREATE INDEX ledger_transfers_credits ON ledger_transfers(credit, posted_at) WHERE posted_at IS NOT NULL;
