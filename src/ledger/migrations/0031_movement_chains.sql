-- Movement history as per-account chains instead of two (account, posted_at) indexes.
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

ALTER TABLE ledger_accounts ADD COLUMN last_movement INTEGER;          -- rid of its newest movement
ALTER TABLE ledger_accounts ADD COLUMN movements INTEGER NOT NULL DEFAULT 0 CHECK (movements >= 0);
ALTER TABLE ledger_transfers ADD COLUMN debit_prev INTEGER;            -- the debit account's previous movement
ALTER TABLE ledger_transfers ADD COLUMN credit_prev INTEGER;           -- the credit account's previous movement

CREATE TABLE ledger_anchors (
    account   INTEGER NOT NULL,   -- ledger_accounts.rid
    posted_at INTEGER NOT NULL,   -- the movement's time (unique: posted_at is strictly increasing)
    xfer      INTEGER NOT NULL,   -- ledger_transfers.rid
    PRIMARY KEY (account, posted_at)
) STRICT, WITHOUT ROWID;

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
UPDATE ledger_accounts SET movements = m.n, last_movement = m.rid
FROM (SELECT acct, MAX(n) AS n, rid FROM chain_backfill GROUP BY acct) m  -- rid: of the row with MAX(n)
WHERE m.acct = ledger_accounts.rid;
INSERT INTO ledger_anchors(account, posted_at, xfer) SELECT acct, posted_at, rid FROM chain_backfill WHERE n % 64 = 1;
DROP TABLE chain_backfill;

DROP INDEX ledger_transfers_debits;
DROP INDEX ledger_transfers_credits;
