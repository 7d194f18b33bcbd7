-- The drainer now deletes an outbox row once it is published (its message lives on in the
-- subscribed queues, the change itself in its tables and the audit log); rows it marked
-- published before were kept forever, about half a kilobyte per ledger movement, and
-- nothing reads them. published_at stays, always NULL, for the partial index.
DELETE FROM outbox WHERE published_at IS NOT NULL;
