-- Movement history as per-account chains instead of two (account, posted_at) indexes, and
-- the balances in a narrow table of their own.
--
-- Each posted transfer links to the previous movement of each of its accounts
-- (debit_prev, credit_prev: a ledger_transfers.rid, NULL for an account's first movement);
-- each account knows its newest movement and how many it has. An account's history, newest
-- first, is its chain followed by primary key, so posting a transfer writes no random index
-- page: the two movement indexes cost a random leaf page each per transfer, most of the WAL
-- a transfer wrote.
--
-- To find a point in time without walking a long chain, every LEDGER_ANCHOR_EVERY-th
-- movement of an account (the 1st, the 65th, ...) is also entered in ledger_anchors: the
-- first anchor at or after a time is at most that many steps from the newest movement
-- before it.
--
-- What changes with every transfer (balance, holds, chain head) moves to ledger_balances,
-- about 40 bytes a row: a job writes each touched balance once, and a page of narrow rows
-- holds ~100 accounts instead of ~25, so a job with many accounts writes a quarter of the
-- pages. ledger_accounts becomes a view joining the two, so readers see the same columns.

ALTER TABLE ledger_transfers ADD COLUMN debit_prev INTEGER;            -- the debit account's previous movement
ALTER TABLE ledger_transfers ADD COLUMN credit_prev INTEGER;           -- the credit account's previous movement

CREATE TABLE ledger_anchors (
    account   INTEGER NOT NULL,   -- ledger_account_info.rid
    posted_at INTEGER NOT NULL,   -- the movement's time (unique: posted_at is strictly increasing)
    xfer      INTEGER NOT NULL,   -- ledger_transfers.rid
    PRIMARY KEY (account, posted_at)
) STRICT, WITHOUT ROWID;

CREATE TABLE ledger_balances (
    account       INTEGER PRIMARY KEY,         -- ledger_account_info.rid
    balance       INTEGER NOT NULL DEFAULT 0,  -- sum of the account's movements
    holds         INTEGER NOT NULL DEFAULT 0,  -- sum of its pending debits
    last_movement INTEGER,                     -- rid of its newest movement (NULL: none)
    movements     INTEGER NOT NULL DEFAULT 0,  -- how many it has
    updated_at    INTEGER NOT NULL
) STRICT;

-- the chains of the movements posted so far, in posting (posted_at) order
CREATE TEMP TABLE chain_backfill AS
SELECT acct, rid, side, posted_at,
       LAG(rid) OVER w AS prev,
       ROW_NUMBER() OVER w AS n
FROM (SELECT debit AS acct, rid, 0 AS side, posted_at FROM ledger_transfers WHERE posted_at IS NOT NULL
      UNION ALL
      SELECT credit, rid, 1, posted_at FROM ledger_transfers WHERE posted_at IS NOT NULL)
WINDOW w AS (PARTITION BY acct ORDER BY posted_at);

UPDATE ledger_transfers SET debit_prev = b.prev FROM chain_backfill b WHERE b.side = 0 AND b.rid = ledger_transfers.rid;
UPDATE ledger_transfers SET credit_prev = b.prev FROM chain_backfill b WHERE b.side = 1 AND b.rid = ledger_transfers.rid;
INSERT INTO ledger_balances(account, balance, holds, last_movement, movements, updated_at)
SELECT a.rid, a.balance, a.holds, m.rid, COALESCE(m.n, 0), a.updated_at
FROM ledger_accounts a
LEFT JOIN (SELECT acct, MAX(n) AS n, rid FROM chain_backfill GROUP BY acct) m  -- rid: of the row with MAX(n)
       ON m.acct = a.rid;
INSERT INTO ledger_anchors(account, posted_at, xfer) SELECT acct, posted_at, rid FROM chain_backfill WHERE n % 64 = 1;
DROP TABLE chain_backfill;

DROP INDEX ledger_transfers_debits;
DROP INDEX ledger_transfers_credits;

ALTER TABLE ledger_accounts RENAME TO ledger_account_info;
ALTER TABLE ledger_account_info DROP COLUMN balance;
ALTER TABLE ledger_account_info DROP COLUMN holds;

CREATE VIEW ledger_accounts AS
SELECT i.rid, i.id, i.number, i.type, i.currency, i.status, i.holder_name, i.customer_id, i.creation_key,
       i.overdraft_limit, i.allow_negative, b.balance, b.holds, i.created_at,
       MAX(i.updated_at, b.updated_at) AS updated_at, b.last_movement, b.movements
FROM ledger_account_info i JOIN ledger_balances b ON b.account = i.rid;
