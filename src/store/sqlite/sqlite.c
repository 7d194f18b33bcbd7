/* SQLite adapter of the storage port (store.h): WAL, foreign keys on; one writer
 * connection owned by the writer thread that runs queued jobs in group-commit batches;
 * one reader connection per (thread, store), created lazily.
 *
 * Durability is pipelined. The writer commits a batch with synchronous=NORMAL (the WAL
 * frames are written, not yet fsynced) and goes straight on to the next batch, while the
 * syncer thread fdatasyncs the WAL and only then releases the batch's callers and runs its
 * after-commit hooks. Every acknowledged commit is on disk before it is acknowledged, as
 * with synchronous=FULL, but the fsync of one batch overlaps the execution of the next and
 * one fsync can cover several batches. A failed fsync stops the process (the kernel may
 * have dropped the pages it could not write; nothing acknowledged after it could be
 * trusted), as PostgreSQL does. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <semaphore.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "base/log.h"
#include "base/util.h"
#include "store/migrations.h"
#include "store/store.h"

const unsigned bv_store_batch_bounds[12] = {1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 0};

/* ---- connections with a statement cache keyed by SQL text ----
 * Callers nearly always pass the same string literal for the same statement, so a small
 * table keyed by the text's address answers first (checked against the text itself, so
 * a reused buffer is never mistaken); the hash of the text is the fallback. */
typedef struct {
    const char *sql; /* points into the statement (sqlite3_sql) */
    uint64_t hash;
    sqlite3_stmt *stmt;
} cache_slot_t;

#define BY_ADDRESS_SLOTS 128
typedef struct {
    const char *addr; /* the caller's text */
    const cache_slot_t *slot;
} addr_slot_t;

typedef struct conn {
    sqlite3 *db;
    cache_slot_t *slots;
    size_t n_slots, n_used;
    addr_slot_t by_address[BY_ADDRESS_SLOTS];
    struct conn *next_reader; /* the store's list of reader connections */
} conn_t;

typedef struct hook {
    struct hook *next;
    void (*after)(void *arg);
    int (*before)(bv_tx_t *tx, void *arg);
    void *arg;
} hook_t;

typedef struct job {
    struct job *next;
    bv_tx_fn fn;
    void *arg;
    int rc;
    sem_t done;
    hook_t *after; /* after-commit hooks registered by this job */
    /* bv_store_write_pipelined: done is posted at commit, durable(darg) once durable */
    void (*durable)(void *darg);
    void *darg;
} job_t;

/* What the syncer releases once a committed batch is durable: the callers of
 * bv_store_write (their jobs live on their stacks until then), the durable callbacks of
 * pipelined jobs (whose callers have gone on), and the batch's after-commit hooks. */
typedef struct {
    sem_t *done;
    void (*durable)(void *darg);
    void *darg;
} release_t;

typedef struct synced {
    struct synced *next;
    hook_t *after;
    size_t n;
    release_t rel[];
} synced_t;

struct bv_tx {
    conn_t *conn;
    int write;
    job_t *job;           /* the running write job (NULL for reads) */
    hook_t **before;      /* batch-level before-commit hooks (write only) */
};

struct bv_store {
    char *path;
    int batch_max;
    int busy_timeout_ms;
    int wal_restart_frames;
    conn_t *writer;
    pthread_t writer_thread;
    int writer_started;
    pthread_t syncer_thread;
    int syncer_started;
    pthread_cond_t syncer_cond; /* wakes the syncer: a batch committed, or stopping */
    pthread_cond_t cond_synced; /* the syncer finished a round */
    synced_t *sync_head, *sync_tail;
    int syncing; /* the syncer is working on a list taken off sync_head */
    int syncer_stopping;
    int wal_fd; /* the syncer's own descriptor of the WAL file (-1 until it exists) */
    conn_t *checkpointer; /* own connection: copies the WAL back off the writer's path */
    pthread_t checkpoint_thread;
    int checkpoint_started;
    pthread_cond_t checkpoint_cond; /* its own: the writer's cond must only wake the writer */
    pthread_mutex_t mu;
    pthread_cond_t cond;
    job_t *head, *tail;
    size_t depth;
    int stopping;
    uint64_t id;     /* process-unique, never reused: keys the per-thread reader cache */
    conn_t *readers; /* every reader connection, guarded by mu */
    /* stats */
    _Atomic uint64_t batches, jobs, jobs_failed, syncs;
    _Atomic uint64_t buckets[12];
};

static _Thread_local bv_store_t *in_writer_of;
static _Atomic uint64_t next_store_id = 1;

/* Per-thread reader connections, keyed by store id. An entry of a closed store is never
 * matched again (ids are not reused), so its dangling pointer is never followed. */
#define TL_READERS 8
static _Thread_local struct {
    uint64_t id;
    conn_t *conn;
} tl_readers[TL_READERS];
static _Thread_local unsigned tl_next;

static uint64_t fnv1a(const char *s)
{
    uint64_t h = 1469598103934665603ULL;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    return h;
}

static int map_rc(sqlite3 *db, int rc)
{
    switch (rc & 0xff) {
    case SQLITE_OK:
    case SQLITE_DONE:
        return BV_DONE;
    case SQLITE_ROW:
        return BV_ROW;
    case SQLITE_CONSTRAINT:
        return BV_ECONFLICT;
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
        return BV_EBUSY;
    default:
        bv_log_error("sqlite error", "\"code\":%d,\"error\":\"%s\"", rc, db ? sqlite3_errmsg(db) : "?");
        return BV_EIO;
    }
}

static void conn_close(conn_t *c)
{
    if (c == NULL)
        return;
    for (size_t i = 0; i < c->n_slots; i++)
        if (c->slots[i].stmt != NULL)
            sqlite3_finalize(c->slots[i].stmt);
    free(c->slots);
    sqlite3_close(c->db);
    free(c);
}

static int conn_open(bv_store_t *st, int writer, conn_t **out)
{
    conn_t *c = calloc(1, sizeof(*c));
    char *err = NULL;
    char pragmas[512];
    if (c == NULL)
        return BV_ENOMEM;
    int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX | (writer ? SQLITE_OPEN_CREATE : 0);
    int rc = sqlite3_open_v2(st->path, &c->db, flags, NULL);
    if (rc != SQLITE_OK) {
        bv_log_error("cannot open database", "\"error\":\"%s\"", c->db ? sqlite3_errmsg(c->db) : "out of memory");
        conn_close(c);
        return BV_EIO;
    }
    sqlite3_extended_result_codes(c->db, 1);
    snprintf(pragmas, sizeof(pragmas),
             "PRAGMA busy_timeout=%d; PRAGMA journal_mode=WAL; PRAGMA synchronous=%s;"
             "PRAGMA foreign_keys=ON; PRAGMA temp_store=MEMORY; PRAGMA cache_size=-%d; %s",
             /* the writer's commits are fsynced by the syncer thread (see the top) */
             st->busy_timeout_ms, writer ? "NORMAL" : "FULL", writer ? 65536 : 16384,
             /* The checkpointer thread keeps the WAL short; the writer checkpoints itself only
              * as a backstop when the WAL passes ~200 MB. */
             writer ? "PRAGMA wal_autocheckpoint=50000;" : "PRAGMA query_only=1;");
    if (sqlite3_exec(c->db, pragmas, NULL, NULL, &err) != SQLITE_OK) {
        bv_log_error("cannot configure database", "\"error\":\"%s\"", err ? err : "?");
        sqlite3_free(err);
        conn_close(c);
        return BV_EIO;
    }
    *out = c;
    return 0;
}

static sqlite3_stmt *cached_stmt(sqlite3_stmt *s)
{
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
    return s;
}

static sqlite3_stmt *conn_prepare(conn_t *c, const char *sql)
{
    addr_slot_t *as = &c->by_address[((uintptr_t)sql >> 3) % BY_ADDRESS_SLOTS];
    if (as->addr == sql && strcmp(as->slot->sql, sql) == 0)
        return cached_stmt(as->slot->stmt);
    uint64_t h = fnv1a(sql);
    if (c->n_slots == 0 || (c->n_used + 1) * 2 > c->n_slots) {
        size_t n = c->n_slots ? c->n_slots * 2 : 64;
        cache_slot_t *ns = calloc(n, sizeof(*ns));
        if (ns == NULL)
            return NULL;
        for (size_t i = 0; i < c->n_slots; i++) {
            if (c->slots[i].stmt == NULL)
                continue;
            size_t j = c->slots[i].hash & (n - 1);
            while (ns[j].stmt != NULL)
                j = (j + 1) & (n - 1);
            ns[j] = c->slots[i];
        }
        free(c->slots);
        c->slots = ns;
        c->n_slots = n;
        memset(c->by_address, 0, sizeof(c->by_address)); /* they pointed into the old table */
    }
    size_t j = h & (c->n_slots - 1);
    while (c->slots[j].stmt != NULL) {
        if (c->slots[j].hash == h && strcmp(c->slots[j].sql, sql) == 0) {
            *as = (addr_slot_t){sql, &c->slots[j]};
            return cached_stmt(c->slots[j].stmt);
        }
        j = (j + 1) & (c->n_slots - 1);
    }
    sqlite3_stmt *s = NULL;
    int rc = sqlite3_prepare_v3(c->db, sql, -1, SQLITE_PREPARE_PERSISTENT, &s, NULL);
    if (rc != SQLITE_OK) {
        bv_log_error("cannot prepare statement", "\"error\":\"%s\"", sqlite3_errmsg(c->db));
        return NULL;
    }
    c->slots[j].stmt = s;
    c->slots[j].hash = h;
    c->slots[j].sql = sqlite3_sql(s);
    c->n_used++;
    *as = (addr_slot_t){sql, &c->slots[j]};
    return s;
}

static int conn_exec(conn_t *c, const char *sql)
{
    sqlite3_stmt *s = conn_prepare(c, sql);
    if (s == NULL)
        return BV_EIO;
    int rc = sqlite3_step(s);
    int r = map_rc(c->db, rc);
    sqlite3_reset(s);
    return r < 0 ? r : 0;
}

/* ---- statements ---- */
#define S(s) ((sqlite3_stmt *)(s))

bv_stmt_t *bv_tx_prepare(bv_tx_t *tx, const char *sql) { return (bv_stmt_t *)conn_prepare(tx->conn, sql); }

static int bind_rc(bv_stmt_t *s, int rc) { return rc == SQLITE_OK ? 0 : map_rc(sqlite3_db_handle(S(s)), rc); }

int bv_stmt_bind_int64(bv_stmt_t *s, int idx, int64_t v) { return bind_rc(s, sqlite3_bind_int64(S(s), idx, v)); }
int bv_stmt_bind_text(bv_stmt_t *s, int idx, const char *v, int len)
{
    if (v == NULL)
        return bind_rc(s, sqlite3_bind_null(S(s), idx));
    return bind_rc(s, sqlite3_bind_text(S(s), idx, v, len, SQLITE_TRANSIENT));
}
int bv_stmt_bind_text_ref(bv_stmt_t *s, int idx, const char *v, int len)
{
    if (v == NULL)
        return bind_rc(s, sqlite3_bind_null(S(s), idx));
    return bind_rc(s, sqlite3_bind_text(S(s), idx, v, len, SQLITE_STATIC));
}
int bv_stmt_bind_blob(bv_stmt_t *s, int idx, const void *v, size_t len)
{
    if (v == NULL)
        return bind_rc(s, sqlite3_bind_null(S(s), idx));
    return bind_rc(s, sqlite3_bind_blob64(S(s), idx, v, len, SQLITE_TRANSIENT));
}
int bv_stmt_bind_null(bv_stmt_t *s, int idx) { return bind_rc(s, sqlite3_bind_null(S(s), idx)); }

int bv_stmt_step(bv_stmt_t *s)
{
    int rc = sqlite3_step(S(s));
    if (rc == SQLITE_ROW)
        return BV_ROW;
    if (rc == SQLITE_DONE)
        return BV_DONE;
    int r = map_rc(sqlite3_db_handle(S(s)), rc);
    sqlite3_reset(S(s));
    return r;
}

int bv_stmt_is_null(bv_stmt_t *s, int col) { return sqlite3_column_type(S(s), col) == SQLITE_NULL; }
int64_t bv_stmt_int64(bv_stmt_t *s, int col) { return sqlite3_column_int64(S(s), col); }
const char *bv_stmt_text(bv_stmt_t *s, int col) { return (const char *)sqlite3_column_text(S(s), col); }
const void *bv_stmt_blob(bv_stmt_t *s, int col, size_t *len_out)
{
    const void *p = sqlite3_column_blob(S(s), col);
    *len_out = (size_t)sqlite3_column_bytes(S(s), col);
    return p;
}
void bv_stmt_reset(bv_stmt_t *s) { sqlite3_reset(S(s)); }

int bv_tx_exec(bv_tx_t *tx, const char *sql)
{
    char *err = NULL;
    int rc = sqlite3_exec(tx->conn->db, sql, NULL, NULL, &err);
    if (rc != SQLITE_OK) {
        bv_log_error("sql exec failed", "\"error\":\"%s\"", err ? err : "?");
        sqlite3_free(err);
        return map_rc(NULL, rc) == BV_DONE ? BV_EIO : map_rc(NULL, rc);
    }
    return 0;
}

int bv_tx_execf(bv_tx_t *tx, const char *sql, const char *types, ...)
{
    bv_stmt_t *s = bv_tx_prepare(tx, sql);
    int rc = 0, idx = 1;
    va_list ap;
    if (s == NULL)
        return BV_EIO;
    va_start(ap, types);
    for (const char *t = types; *t != '\0' && rc == 0; t++, idx++) {
        switch (*t) {
        case 'i': rc = bv_stmt_bind_int64(s, idx, va_arg(ap, int64_t)); break;
        case 't': rc = bv_stmt_bind_text(s, idx, va_arg(ap, const char *), -1); break;
        case 'n': rc = bv_stmt_bind_null(s, idx); break;
        default: rc = BV_EINVALID;
        }
    }
    va_end(ap);
    if (rc == 0) {
        rc = bv_stmt_step(s);
        rc = rc == BV_DONE ? 0 : rc == BV_ROW ? BV_EINVALID : rc;
    }
    bv_stmt_reset(s);
    return rc;
}

int64_t bv_tx_changes(bv_tx_t *tx) { return sqlite3_changes64(tx->conn->db); }
int bv_tx_is_write(bv_tx_t *tx) { return tx->write; }

int bv_tx_after_commit(bv_tx_t *tx, void (*fn)(void *arg), void *arg)
{
    if (!tx->write || tx->job == NULL)
        return BV_EINVALID;
    hook_t *h = malloc(sizeof(*h));
    if (h == NULL)
        return BV_ENOMEM;
    *h = (hook_t){.next = tx->job->after, .after = fn, .arg = arg};
    tx->job->after = h;
    return 0;
}

int bv_tx_before_commit(bv_tx_t *tx, int (*fn)(bv_tx_t *tx, void *arg), void *arg)
{
    if (!tx->write || tx->before == NULL)
        return BV_EINVALID;
    for (hook_t *h = *tx->before; h != NULL; h = h->next)
        if (h->before == fn && h->arg == arg)
            return 0;
    hook_t *h = malloc(sizeof(*h));
    if (h == NULL)
        return BV_ENOMEM;
    *h = (hook_t){.next = *tx->before, .before = fn, .arg = arg};
    *tx->before = h;
    return 0;
}

static void free_hooks(hook_t *h)
{
    while (h != NULL) {
        hook_t *n = h->next;
        free(h);
        h = n;
    }
}

/* ---- the writer ---- */
static void record_batch(bv_store_t *st, size_t n)
{
    int b = 11;
    for (int i = 0; i < 11; i++) {
        if (n <= bv_store_batch_bounds[i]) {
            b = i;
            break;
        }
    }
    atomic_fetch_add(&st->buckets[b], 1);
    atomic_fetch_add(&st->batches, 1);
    atomic_fetch_add(&st->jobs, n);
}

static void hand_to_syncer(bv_store_t *st, job_t *batch, size_t n);

static void run_batch(bv_store_t *st, job_t *batch, size_t n)
{
    conn_t *c = st->writer;
    hook_t *before = NULL;
    bv_tx_t tx = {.conn = c, .write = 1, .before = &before};
    int rc = conn_exec(c, "BEGIN IMMEDIATE");
    if (rc != 0) {
        for (job_t *j = batch; j != NULL; j = j->next)
            j->rc = rc;
        goto finish;
    }
    if (n == 1) {
        /* alone in its batch: the batch is the job's savepoint (a SAVEPOINT would make SQLite
           copy every page the job changes into a sub-journal, for nothing) */
        tx.job = batch;
        batch->rc = batch->fn(&tx, batch->arg);
        tx.job = NULL;
        if (batch->rc < 0) {
            atomic_fetch_add(&st->jobs_failed, 1);
            sqlite3_exec(c->db, "ROLLBACK", NULL, NULL, NULL);
            free_hooks(batch->after);
            batch->after = NULL;
            goto finish;
        }
    }
    for (job_t *j = n == 1 ? NULL : batch; j != NULL; j = j->next) {
        tx.job = j;
        if ((rc = conn_exec(c, "SAVEPOINT job")) != 0) {
            j->rc = rc;
            continue;
        }
        j->rc = j->fn(&tx, j->arg);
        if (j->rc < 0) {
            atomic_fetch_add(&st->jobs_failed, 1);
            conn_exec(c, "ROLLBACK TO job");
            free_hooks(j->after);
            j->after = NULL;
        }
        conn_exec(c, "RELEASE job");
    }
    tx.job = NULL;
    rc = 0;
    for (hook_t *h = before; h != NULL && rc == 0; h = h->next)
        rc = h->before(&tx, h->arg);
    if (rc == 0)
        rc = conn_exec(c, "COMMIT");
    if (rc != 0) {
        bv_log_error("group commit failed", "\"jobs\":%zu,\"error\":\"%s\"", n, bv_err_name(rc));
        sqlite3_exec(c->db, "ROLLBACK", NULL, NULL, NULL);
        for (job_t *j = batch; j != NULL; j = j->next) {
            if (j->rc >= 0)
                j->rc = BV_EIO;
            free_hooks(j->after);
            j->after = NULL;
        }
    } else {
        record_batch(st, n);
    }
finish:
    free_hooks(before);
    hand_to_syncer(st, batch, n);
}

/* ---- the syncer ---- */

/* fdatasync of the WAL through the syncer's own descriptor (fsync flushes the file, not
 * the descriptor, so this covers what the writer's connection wrote). The first time, the
 * directory is synced too, so that the WAL file itself survives a power loss. */
static void sync_wal(bv_store_t *st)
{
    if (st->wal_fd < 0) {
        char wal[4096];
        snprintf(wal, sizeof(wal), "%s-wal", st->path);
        st->wal_fd = open(wal, O_RDONLY | O_CLOEXEC);
        if (st->wal_fd < 0) {
            if (errno == ENOENT)
                return; /* nothing was ever written */
            bv_log_error("cannot open the WAL to sync it; stopping", "\"error\":\"%s\"", strerror(errno));
            abort();
        }
        char dir[4096];
        snprintf(dir, sizeof(dir), "%s", st->path);
        char *slash = strrchr(dir, '/');
        if (slash == NULL)
            snprintf(dir, sizeof(dir), ".");
        else if (slash == dir)
            dir[1] = '\0';
        else
            *slash = '\0';
        int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd < 0 || fsync(dfd) != 0) {
            bv_log_error("cannot sync the database directory; stopping", "\"error\":\"%s\"", strerror(errno));
            abort();
        }
        close(dfd);
    }
    while (fdatasync(st->wal_fd) != 0) {
        if (errno == EINTR)
            continue;
        bv_log_error("fdatasync of the WAL failed; stopping", "\"error\":\"%s\"", strerror(errno));
        abort();
    }
}

/* Runs the after-commit hooks of a durable batch and releases its callers, in order. */
static void release(synced_t *sy)
{
    for (hook_t *h = sy->after; h != NULL; h = h->next)
        h->after(h->arg);
    free_hooks(sy->after);
    for (size_t i = 0; i < sy->n; i++) {
        if (sy->rel[i].done != NULL)
            sem_post(sy->rel[i].done);
        else
            sy->rel[i].durable(sy->rel[i].darg);
    }
}

/* The after-commit hooks of every job of a batch, taken off the jobs. */
static hook_t *take_hooks(job_t *batch)
{
    hook_t *all = NULL;
    for (job_t *j = batch; j != NULL; j = j->next) {
        hook_t *h = j->after;
        while (h != NULL) {
            hook_t *hn = h->next;
            h->next = all;
            all = h;
            h = hn;
        }
        j->after = NULL;
    }
    return all;
}

/* Out of memory for the syncer's record: once the syncer is idle, sync and release here,
 * in the same order (hooks, then callers and durable callbacks). */
static void release_here(bv_store_t *st, job_t *batch)
{
    pthread_mutex_lock(&st->mu);
    while (st->sync_head != NULL || st->syncing)
        pthread_cond_wait(&st->cond_synced, &st->mu);
    pthread_mutex_unlock(&st->mu);
    sync_wal(st);
    atomic_fetch_add(&st->syncs, 1);
    hook_t *after = take_hooks(batch);
    for (hook_t *h = after; h != NULL; h = h->next)
        h->after(h->arg);
    free_hooks(after);
    for (job_t *j = batch; j != NULL;) {
        job_t *nx = j->next; /* read before posting: the job lives on the caller's stack */
        void (*fn)(void *) = j->durable;
        void *darg = j->darg;
        sem_post(&j->done);
        if (fn != NULL)
            fn(darg);
        j = nx;
    }
}

/* Called by the writer once a batch has committed (or failed): pipelined callers learn
 * their result now; everything else is released by the syncer once durable. */
static void hand_to_syncer(bv_store_t *st, job_t *batch, size_t n)
{
    synced_t *sy = malloc(sizeof(*sy) + n * sizeof(release_t));
    if (sy == NULL) {
        release_here(st, batch);
        return;
    }
    *sy = (synced_t){.after = take_hooks(batch)};
    for (job_t *j = batch; j != NULL;) {
        job_t *nx = j->next; /* read before posting: the job lives on the caller's stack */
        if (j->durable != NULL) {
            sy->rel[sy->n++] = (release_t){.durable = j->durable, .darg = j->darg};
            sem_post(&j->done); /* the caller goes on; durable(darg) follows once durable */
        } else {
            sy->rel[sy->n++] = (release_t){.done = &j->done};
        }
        j = nx;
    }
    pthread_mutex_lock(&st->mu);
    if (st->sync_tail != NULL)
        st->sync_tail->next = sy;
    else
        st->sync_head = sy;
    st->sync_tail = sy;
    pthread_cond_signal(&st->syncer_cond);
    pthread_mutex_unlock(&st->mu);
}

static void *syncer_main(void *arg)
{
    bv_store_t *st = arg;
    pthread_setname_np(pthread_self(), "bv-store-sync");
    pthread_mutex_lock(&st->mu);
    for (;;) {
        while (st->sync_head == NULL && !st->syncer_stopping)
            pthread_cond_wait(&st->syncer_cond, &st->mu);
        if (st->sync_head == NULL)
            break;
        synced_t *list = st->sync_head; /* one fsync for every batch committed so far */
        st->sync_head = st->sync_tail = NULL;
        st->syncing = 1;
        pthread_mutex_unlock(&st->mu);
        sync_wal(st);
        atomic_fetch_add(&st->syncs, 1);
        while (list != NULL) {
            synced_t *nx = list->next;
            release(list);
            free(list);
            list = nx;
        }
        pthread_mutex_lock(&st->mu);
        st->syncing = 0;
        pthread_cond_broadcast(&st->cond_synced);
    }
    pthread_mutex_unlock(&st->mu);
    return NULL;
}

static void *writer_main(void *arg)
{
    bv_store_t *st = arg;
    in_writer_of = st;
    pthread_setname_np(pthread_self(), "bv-store-writer");
    for (;;) {
        pthread_mutex_lock(&st->mu);
        while (st->head == NULL && !st->stopping)
            pthread_cond_wait(&st->cond, &st->mu);
        if (st->head == NULL && st->stopping) {
            pthread_mutex_unlock(&st->mu);
            break;
        }
        job_t *batch = st->head, *last = batch;
        size_t n = 1;
        while (last->next != NULL && n < (size_t)st->batch_max) {
            last = last->next;
            n++;
        }
        st->head = last->next;
        if (st->head == NULL)
            st->tail = NULL;
        st->depth -= n;
        last->next = NULL;
        pthread_mutex_unlock(&st->mu);
        run_batch(st, batch, n);
    }
    return NULL;
}

static int write_job(bv_store_t *st, bv_tx_fn fn, void *arg, void (*durable)(void *darg), void *darg)
{
    if (in_writer_of == st) {
        bv_log_error("bv_store_write called from inside a write job", NULL);
        if (durable != NULL)
            durable(darg);
        return BV_EINTERNAL;
    }
    job_t job = {.fn = fn, .arg = arg, .rc = BV_EINTERNAL, .durable = durable, .darg = darg};
    sem_init(&job.done, 0, 0);
    pthread_mutex_lock(&st->mu);
    if (st->stopping) {
        pthread_mutex_unlock(&st->mu);
        sem_destroy(&job.done);
        if (durable != NULL)
            durable(darg);
        return BV_ESHUTDOWN;
    }
    if (st->tail != NULL)
        st->tail->next = &job;
    else
        st->head = &job;
    st->tail = &job;
    st->depth++;
    pthread_cond_signal(&st->cond);
    pthread_mutex_unlock(&st->mu);
    while (sem_wait(&job.done) != 0)
        ;
    sem_destroy(&job.done);
    return job.rc;
}

int bv_store_write(bv_store_t *st, bv_tx_fn fn, void *arg) { return write_job(st, fn, arg, NULL, NULL); }

int bv_store_write_pipelined(bv_store_t *st, bv_tx_fn fn, void *arg, void (*durable)(void *darg), void *darg)
{
    if (durable == NULL)
        return BV_EINVALID;
    return write_job(st, fn, arg, durable, darg);
}

/* ---- the checkpointer ---- */
#define WAL_RESTART_FRAMES 4096 /* default: ~16 MB of WAL */
#define WAL_RESTART_REST 256    /* at most, frames left to copy with the writer held off */
#define CHECKPOINT_BUSY_MS 5    /* how long a restart waits for the writer or for readers */
#define RESTART_BACKOFF_US 2000000 /* after readers kept a restart from finishing, before the next */
static void *checkpoint_main(void *arg)
{
    bv_store_t *st = arg;
    int64_t restart_after = 0; /* monotonic us */
    pthread_setname_np(pthread_self(), "bv-store-ckpt");
    pthread_mutex_lock(&st->mu);
    while (!st->stopping) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 200 * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&st->checkpoint_cond, &st->mu, &ts);
        if (st->stopping)
            break;
        pthread_mutex_unlock(&st->mu);
        /* Under a steady stream of commits a passive checkpoint never finds the WAL fully
         * copied at the moment the writer begins, so the WAL is never started over: it grows
         * (to the writer's backstop, ~200 MB), every commit extends the file, and every
         * fdatasync of it also commits file-system metadata. Once the WAL is long, passive
         * passes copy it while commits go on (each pass has less left: what was committed
         * during the last), and once little is left the rest is copied with the writer held
         * off (those frames and one fsync of the database: milliseconds), waiting briefly for
         * readers, so that the next commit starts the WAL over, on blocks already allocated. */
        int log_frames = 0, done = 0, passes = 0;
        int rest = st->wal_restart_frames / 16 < WAL_RESTART_REST ? st->wal_restart_frames / 16 : WAL_RESTART_REST;
        do
            sqlite3_wal_checkpoint_v2(st->checkpointer->db, NULL, SQLITE_CHECKPOINT_PASSIVE, &log_frames, &done);
        while (log_frames >= st->wal_restart_frames && log_frames - done > rest && ++passes < 4);
        /* A long read (an export, say) keeps the restart from finishing, and each try holds
         * the writer off for the busy wait: after a refusal, let a while pass. */
        if (log_frames >= st->wal_restart_frames && log_frames - done <= rest && bv_mono_us() >= restart_after &&
            sqlite3_wal_checkpoint_v2(st->checkpointer->db, NULL, SQLITE_CHECKPOINT_RESTART, &log_frames,
                                      &done) == SQLITE_BUSY)
            restart_after = bv_mono_us() + RESTART_BACKOFF_US;
        pthread_mutex_lock(&st->mu);
    }
    pthread_mutex_unlock(&st->mu);
    return NULL;
}

/* ---- readers ---- */
static conn_t *reader(bv_store_t *st)
{
    conn_t *c = NULL;
    for (int i = 0; i < TL_READERS; i++)
        if (tl_readers[i].id == st->id)
            return tl_readers[i].conn;
    if (conn_open(st, 0, &c) != 0)
        return NULL;
    pthread_mutex_lock(&st->mu);
    c->next_reader = st->readers;
    st->readers = c;
    pthread_mutex_unlock(&st->mu);
    /* An evicted entry's connection stays open in the store's list until close. */
    unsigned slot = tl_next++ % TL_READERS;
    tl_readers[slot].id = st->id;
    tl_readers[slot].conn = c;
    return c;
}

int bv_store_read(bv_store_t *st, bv_tx_fn fn, void *arg)
{
    conn_t *c = reader(st);
    if (c == NULL)
        return BV_EIO;
    bv_tx_t tx = {.conn = c, .write = 0};
    int rc = conn_exec(c, "BEGIN");
    if (rc != 0)
        return rc;
    rc = fn(&tx, arg);
    if (conn_exec(c, "COMMIT") != 0)
        sqlite3_exec(c->db, "ROLLBACK", NULL, NULL, NULL);
    return rc;
}

int bv_store_run_tx(bv_store_t *st, int write, bv_tx_fn fn, void *arg)
{
    int rc = BV_EBUSY;
    for (int attempt = 0; attempt < 5 && rc == BV_EBUSY; attempt++)
        rc = write ? bv_store_write(st, fn, arg) : bv_store_read(st, fn, arg);
    return rc;
}

/* ---- lifecycle ---- */
int bv_store_open(const bv_store_options_t *opt, bv_store_t **out)
{
    bv_store_t *st = calloc(1, sizeof(*st));
    int rc = BV_EIO;
    *out = NULL;
    if (st == NULL)
        return BV_ENOMEM;
    st->path = strdup(opt->path);
    st->batch_max = opt->batch_max > 0 ? opt->batch_max : 1024;
    st->busy_timeout_ms = opt->busy_timeout_ms > 0 ? opt->busy_timeout_ms : 5000;
    st->wal_restart_frames = opt->wal_restart_frames > 0 ? opt->wal_restart_frames : WAL_RESTART_FRAMES;
    pthread_mutex_init(&st->mu, NULL);
    pthread_cond_init(&st->cond, NULL);
    pthread_cond_init(&st->checkpoint_cond, NULL);
    pthread_cond_init(&st->syncer_cond, NULL);
    pthread_cond_init(&st->cond_synced, NULL);
    st->wal_fd = -1;
    st->id = atomic_fetch_add(&next_store_id, 1);
    if (st->path == NULL)
        goto out;
    if ((rc = conn_open(st, 1, &st->writer)) != 0)
        goto out;
    if (pthread_create(&st->syncer_thread, NULL, syncer_main, st) != 0) {
        rc = BV_EIO;
        goto out;
    }
    st->syncer_started = 1;
    if (pthread_create(&st->writer_thread, NULL, writer_main, st) != 0) {
        rc = BV_EIO;
        goto out;
    }
    st->writer_started = 1;
    if ((rc = conn_open(st, 0, &st->checkpointer)) != 0)
        goto out;
    sqlite3_exec(st->checkpointer->db, "PRAGMA query_only=0", NULL, NULL, NULL);
    sqlite3_busy_timeout(st->checkpointer->db, CHECKPOINT_BUSY_MS);
    if (pthread_create(&st->checkpoint_thread, NULL, checkpoint_main, st) != 0) {
        rc = BV_EIO;
        goto out;
    }
    st->checkpoint_started = 1;
    rc = 0;
out:
    if (rc != 0)
        bv_store_close(st);
    else
        *out = st;
    return rc;
}

void bv_store_close(bv_store_t *st)
{
    if (st == NULL)
        return;
    pthread_mutex_lock(&st->mu);
    st->stopping = 1;
    pthread_cond_broadcast(&st->cond);
    pthread_cond_broadcast(&st->checkpoint_cond);
    pthread_mutex_unlock(&st->mu);
    if (st->writer_started)
        pthread_join(st->writer_thread, NULL);
    /* the writer has handed over its last batch: let the syncer finish, then stop it */
    pthread_mutex_lock(&st->mu);
    st->syncer_stopping = 1;
    pthread_cond_signal(&st->syncer_cond);
    pthread_mutex_unlock(&st->mu);
    if (st->syncer_started)
        pthread_join(st->syncer_thread, NULL);
    if (st->wal_fd >= 0)
        close(st->wal_fd);
    if (st->checkpoint_started)
        pthread_join(st->checkpoint_thread, NULL);
    conn_close(st->checkpointer);
    if (st->writer != NULL) /* leave a short WAL behind */
        sqlite3_wal_checkpoint_v2(st->writer->db, NULL, SQLITE_CHECKPOINT_TRUNCATE, NULL, NULL);
    conn_close(st->writer);
    conn_t *r = st->readers;
    while (r != NULL) {
        conn_t *n = r->next_reader;
        conn_close(r);
        r = n;
    }
    pthread_mutex_destroy(&st->mu);
    pthread_cond_destroy(&st->cond);
    pthread_cond_destroy(&st->checkpoint_cond);
    pthread_cond_destroy(&st->syncer_cond);
    pthread_cond_destroy(&st->cond_synced);
    free(st->path);
    free(st);
}

void bv_store_get_stats(bv_store_t *st, bv_store_stats_t *out)
{
    memset(out, 0, sizeof(*out));
    out->batches = atomic_load(&st->batches);
    out->syncs = atomic_load(&st->syncs);
    out->jobs = atomic_load(&st->jobs);
    out->jobs_failed = atomic_load(&st->jobs_failed);
    pthread_mutex_lock(&st->mu);
    out->queue_depth = st->depth;
    pthread_mutex_unlock(&st->mu);
    for (int i = 0; i < 12; i++)
        out->batch_size_buckets[i] = atomic_load(&st->buckets[i]);
}

/* ---- migrations ----
 * Numbers are global but each module owns a range, so a module's new migration can be
 * lower than one another module applied long ago: what is applied is a set, not a high-water
 * mark, and every embedded migration missing from it is applied, in number order. */
typedef struct {
    int *numbers; /* applied, ascending */
    size_t n;
} applied_t;

static int read_applied(bv_tx_t *tx, void *arg)
{
    applied_t *a = arg;
    a->n = 0;
    bv_stmt_t *s = bv_tx_prepare(tx, "SELECT count(*) FROM sqlite_master WHERE type='table' AND name='schema_migrations'");
    if (s == NULL)
        return BV_EIO;
    int rc = bv_stmt_step(s);
    int exists = rc == BV_ROW && bv_stmt_int64(s, 0) > 0;
    bv_stmt_reset(s);
    if (rc < 0)
        return rc;
    if (!exists)
        return 0;
    s = bv_tx_prepare(tx, "SELECT number FROM schema_migrations ORDER BY number");
    if (s == NULL)
        return BV_EIO;
    size_t cap = 0;
    while ((rc = bv_stmt_step(s)) == BV_ROW) {
        if (a->n == cap) {
            int *grown = realloc(a->numbers, (cap = cap ? cap * 2 : 64) * sizeof(int));
            if (grown == NULL) {
                rc = BV_ENOMEM;
                break;
            }
            a->numbers = grown;
        }
        a->numbers[a->n++] = (int)bv_stmt_int64(s, 0);
    }
    bv_stmt_reset(s);
    return rc < 0 ? rc : 0;
}

static int is_applied(const applied_t *a, int number)
{
    for (size_t i = 0; i < a->n; i++)
        if (a->numbers[i] == number)
            return 1;
    return 0;
}

typedef struct {
    const bv_migration_t *m;
} apply_t;

static int apply_migration(bv_tx_t *tx, void *arg)
{
    apply_t *a = arg;
    int rc = bv_tx_exec(tx, "CREATE TABLE IF NOT EXISTS schema_migrations (number INTEGER PRIMARY KEY, "
                            "name TEXT NOT NULL, applied_at INTEGER NOT NULL) STRICT");
    if (rc != 0)
        return rc;
    bv_stmt_t *s = bv_tx_prepare(tx, "SELECT count(*) FROM schema_migrations WHERE number=?");
    if (s == NULL)
        return BV_EIO;
    bv_stmt_bind_int64(s, 1, a->m->number);
    rc = bv_stmt_step(s);
    int done = rc == BV_ROW && bv_stmt_int64(s, 0) > 0;
    bv_stmt_reset(s);
    if (rc < 0)
        return rc;
    if (done)
        return 1; /* someone else applied it meanwhile */
    if ((rc = bv_tx_exec(tx, a->m->sql)) != 0) {
        bv_log_error("migration failed", "\"migration\":\"%s\"", a->m->name);
        return rc;
    }
    s = bv_tx_prepare(tx, "INSERT INTO schema_migrations(number, name, applied_at) VALUES (?,?,?)");
    if (s == NULL)
        return BV_EIO;
    bv_stmt_bind_int64(s, 1, a->m->number);
    bv_stmt_bind_text(s, 2, a->m->name, -1);
    bv_stmt_bind_int64(s, 3, bv_now_us());
    rc = bv_stmt_step(s);
    bv_stmt_reset(s);
    return rc < 0 ? rc : 0;
}

int bv_store_schema_version(bv_store_t *st, int *applied_out, int *embedded_out)
{
    applied_t a = {0};
    int rc = bv_store_read(st, read_applied, &a), through = 0;
    for (size_t i = 0; rc == 0 && i < bv_n_migrations && is_applied(&a, bv_migrations[i].number); i++)
        through = bv_migrations[i].number;
    free(a.numbers);
    if (applied_out)
        *applied_out = through;
    if (embedded_out)
        *embedded_out = bv_n_migrations > 0 ? bv_migrations[bv_n_migrations - 1].number : 0;
    return rc;
}

int bv_store_migrate(bv_store_t *st, int *n_applied_out)
{
    applied_t a = {0};
    int applied = 0, rc;
    if ((rc = bv_store_read(st, read_applied, &a)) != 0) {
        free(a.numbers);
        return rc;
    }
    for (size_t i = 0; i < bv_n_migrations; i++) {
        if (is_applied(&a, bv_migrations[i].number))
            continue;
        apply_t ap = {&bv_migrations[i]};
        rc = bv_store_write(st, apply_migration, &ap);
        if (rc < 0)
            break;
        if (rc == 0) {
            applied++;
            bv_log_info("migration applied", "\"number\":%d,\"name\":\"%s\"", bv_migrations[i].number,
                        bv_migrations[i].name);
        }
        rc = 0;
    }
    free(a.numbers);
    if (n_applied_out)
        *n_applied_out = applied;
    return rc;
}
