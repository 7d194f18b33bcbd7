/* Storage port. Domain modules talk SQL through this small interface and never include
 * an engine's header; the SQLite adapter (store/sqlite/) implements it today and a
 * PostgreSQL adapter can implement the same contract (tests/unit/store/contract.h).
 *
 * Writes go through bv_store_write: the job runs on the single writer thread inside a
 * group-commit batch (one transaction per batch, a SAVEPOINT per job). A job that returns
 * < 0 is rolled back to its savepoint alone; the others in the batch commit.
 * bv_store_write returns only after the batch is durable (fsynced). Durability is
 * pipelined: while one batch is being fsynced the writer already runs the next, and one
 * fsync may cover several batches.
 * Reads go through bv_store_read on the calling thread's own read connection, inside a
 * read transaction (a consistent snapshot). A snapshot may include a batch that has
 * committed but whose fsync has not finished (for at most one fsync); anything acted upon
 * through a write job is ordered after it and acknowledged only once both are durable.
 *
 * SQL is written with `?` placeholders and portable types (INTEGER, TEXT, BLOB). */
#ifndef BV_STORE_STORE_H
#define BV_STORE_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "base/errors.h"

typedef struct bv_store bv_store_t;
typedef struct bv_tx bv_tx_t;
typedef struct bv_stmt bv_stmt_t;

/* A unit of work. Returns 0 (commit) or a negative BV_E... code (roll back this job). */
typedef int (*bv_tx_fn)(bv_tx_t *tx, void *arg);

typedef struct {
    const char *path;     /* database file; ":memory:" not supported (readers need a file) */
    int batch_max;        /* jobs per group commit (default 1024) */
    int busy_timeout_ms;  /* reader wait on a locked database (default 5000) */
    int wal_restart_frames; /* SQLite: WAL length (pages) from which the checkpointer starts
                               the WAL over (default 4096, ~16 MB) */
} bv_store_options_t;

typedef struct {
    uint64_t batches;           /* committed batches */
    uint64_t syncs;             /* fsyncs that made batches durable (one may cover several) */
    uint64_t jobs;              /* jobs run by the writer */
    uint64_t jobs_failed;       /* jobs rolled back to their savepoint */
    uint64_t queue_depth;       /* write jobs waiting now */
    /* histogram of batch sizes: counts of batches with size <= bounds[i] (cumulative-free) */
    uint64_t batch_size_buckets[12];
} bv_store_stats_t;
extern const unsigned bv_store_batch_bounds[12]; /* 1,2,4,...,1024,+Inf(0) */

/* Opens (creating if needed) the store and starts its writer thread. Does not migrate.
 * Returns 0, BV_EIO. The caller frees with bv_store_close (NULL accepted), which drains
 * pending writes, stops the writer and closes every connection. */
int bv_store_open(const bv_store_options_t *opt, bv_store_t **out);
void bv_store_close(bv_store_t *st);

/* Applies every embedded migration not applied yet, each in its own transaction, in number
 * order, whatever higher numbers were applied before (each module numbers its own range, so
 * a module's new migration may be lower than another's old one). *n_applied_out (may be
 * NULL) gets how many ran. */
int bv_store_migrate(bv_store_t *st, int *n_applied_out);
/* The number of the last embedded migration up to which every embedded migration is
 * applied (0 when the first is not), and the highest embedded one; readiness means they
 * are equal. */
int bv_store_schema_version(bv_store_t *st, int *applied_out, int *embedded_out);

/* Runs fn inside a group-commit batch on the writer thread and waits until the batch is
 * durable. Returns fn's result, or BV_EIO if the batch failed to commit, or BV_ESHUTDOWN
 * after close began. Must not be called from the writer thread (i.e. not from inside a job). */
int bv_store_write(bv_store_t *st, bv_tx_fn fn, void *arg);
/* Runs fn in a read-only snapshot on this thread's reader connection. Returns fn's result. */
int bv_store_read(bv_store_t *st, bv_tx_fn fn, void *arg);
/* Like bv_store_write, but returns as soon as the batch holding the job has committed
 * (later jobs and readers see it) with the job's result, and calls durable(darg) on the
 * store's syncer thread once that batch is durable, exactly once whatever the result (at
 * once, on the calling thread, when the job was refused without running). For a single-threaded pipeline such as the ledger engine, which runs its next
 * job while the previous one is being fsynced and releases its callers from durable().
 * durable must not block. Returns BV_EINVALID if durable is NULL. */
int bv_store_write_pipelined(bv_store_t *st, bv_tx_fn fn, void *arg, void (*durable)(void *darg), void *darg);
/* Retries bv_store_read/write while the result is BV_EBUSY, a bounded number of times. */
int bv_store_run_tx(bv_store_t *st, int write, bv_tx_fn fn, void *arg);

void bv_store_get_stats(bv_store_t *st, bv_store_stats_t *out);

/* Registers fn(arg) to run after the batch holding tx commits and is durable (not if this
 * job or the batch rolls back), on the store's syncer thread, before the batch's callers
 * are released. For waking consumers of what was just written; fn must not block. */
int bv_tx_after_commit(bv_tx_t *tx, void (*fn)(void *arg), void *arg);

/* Registers fn(tx, arg) to run once, on the writer thread, just before the batch holding
 * tx commits, inside the batch transaction (registrations with the same fn and arg are
 * merged). For deferred per-batch work such as writing each touched balance once. If fn
 * fails the whole batch rolls back and every job in it gets BV_EIO. */
int bv_tx_before_commit(bv_tx_t *tx, int (*fn)(bv_tx_t *tx, void *arg), void *arg);

/* Statements. bv_tx_prepare returns a cached, reset statement owned by the connection
 * (never finalize it); `sql` should be a string literal (it is the cache key by content).
 * NULL on error (logged). Parameters are 1-based, columns 0-based. Text/blob pointers
 * from columns are valid until the next step/reset of that statement. */
bv_stmt_t *bv_tx_prepare(bv_tx_t *tx, const char *sql);
int bv_stmt_bind_int64(bv_stmt_t *s, int idx, int64_t v);
int bv_stmt_bind_text(bv_stmt_t *s, int idx, const char *v, int len); /* len < 0: strlen; NULL v binds NULL */
/* Like bv_stmt_bind_text, but v is not copied: it must stay unchanged until the statement
 * has been stepped and reset. For hot paths whose values sit in the caller's frame. */
int bv_stmt_bind_text_ref(bv_stmt_t *s, int idx, const char *v, int len);
int bv_stmt_bind_blob(bv_stmt_t *s, int idx, const void *v, size_t len);
int bv_stmt_bind_null(bv_stmt_t *s, int idx);
/* BV_ROW (1) when a row is available, BV_DONE (0) when finished, else BV_ECONFLICT for a
 * uniqueness/constraint violation, BV_EBUSY (retryable), BV_EIO. */
int bv_stmt_step(bv_stmt_t *s);
int bv_stmt_is_null(bv_stmt_t *s, int col);
int64_t bv_stmt_int64(bv_stmt_t *s, int col);
const char *bv_stmt_text(bv_stmt_t *s, int col); /* NULL for SQL NULL */
const void *bv_stmt_blob(bv_stmt_t *s, int col, size_t *len_out);
void bv_stmt_reset(bv_stmt_t *s);

/* Runs one statement that returns no rows (INSERT, UPDATE, DELETE) with its parameters
 * bound in order from `types`: 'i' int64_t, 't' const char * (NULL binds SQL NULL),
 * 'n' SQL NULL (no argument). Returns 0 or the step's error (BV_ECONFLICT for a
 * constraint, BV_EBUSY, BV_EIO; BV_EINVALID for a bad type letter or a statement that
 * returns a row). Rows changed: bv_tx_changes. */
int bv_tx_execf(bv_tx_t *tx, const char *sql, const char *types, ...);

/* Executes a statement without parameters or results (DDL, PRAGMA). 0 or negative. */
int bv_tx_exec(bv_tx_t *tx, const char *sql);
/* Rows changed by the last INSERT/UPDATE/DELETE on this connection. */
int64_t bv_tx_changes(bv_tx_t *tx);
/* 1 inside bv_store_write jobs, 0 in reads. */
int bv_tx_is_write(bv_tx_t *tx);

#endif
