/* The ledger engine: every state change of the ledger runs here.
 *
 * Callers (HTTP workers, other modules, the bench) submit operations to a queue; one engine
 * thread takes everything queued (up to a bound) and runs it as ONE store write job, so a
 * burst of N concurrent transfers costs one group commit and each touched balance is
 * written once per job, however many transfers touched it.
 *
 * Jobs are pipelined (bv_store_write_pipelined): the engine starts the next job as soon as
 * the previous one has committed, while the store fsyncs it; the callers of a job are
 * released once it is durable.
 *
 * Balances are validated against an in-memory copy of every account (the overlay), owned by
 * the engine thread. Only one job runs at a time and the engine learns its commit outcome
 * before it starts the next:
 *   - a rejected operation never changes the overlay (every check happens before any change);
 *   - a linked batch that fails is rolled back to its own SAVEPOINT and its overlay changes
 *     are undone from an undo log;
 *   - a job that fails as a whole undoes the whole log (the store rolls back its savepoint);
 *   - if the group commit itself fails after the job succeeded, the overlay is reloaded from
 *     the database before anything else runs.
 */
#include <errno.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "audit/audit.h"
#include "base/log.h"
#include "ledger/internal.h"

enum { TYPE_CHECKING, TYPE_SAVINGS, TYPE_WALLET, TYPE_INTERNAL, N_TYPES };
static const char *const type_names[N_TYPES] = {"checking", "savings", "wallet", "internal"};
enum { ST_ACTIVE, ST_FROZEN, ST_CLOSED, N_STATUSES };
static const char *const status_names[N_STATUSES] = {"active", "frozen", "closed"};

typedef struct acct {
    int64_t rid;
    char id[BV_UUID_STR_LEN + 1];
    char number[BV_LEDGER_NUMBER_LEN + 1];
    char currency[4];
    int8_t exponent, type, status;
    bool allow_negative;
    bool dirty;
    int64_t overdraft, balance, holds, created_at;
    int64_t last_movement, movements; /* head and length of its movement chain */
    char *holder_name;
    char *customer_id; /* NULL when none */
    struct acct *hnext;
} acct_t;

typedef struct {
    acct_t *a;
    int64_t balance, holds, last_movement, movements;
    int8_t status;
    bool created;
} undo_t;

typedef enum { OP_ACCOUNT, OP_STATUS, OP_BATCH, OP_POST, OP_VOID, OP_REVERSE, OP_EXPIRE } op_kind_t;

typedef struct op {
    op_kind_t kind;
    const bv_ledger_ctx_t *ctx;
    /* inputs */
    const bv_ledger_account_req_t *acct_req;
    const char *id; /* account or transfer id */
    const char *status;
    const bv_ledger_transfer_req_t *reqs;
    size_t n;
    bool linked;
    int64_t amount;
    const char *idem_key;
    const char *description;
    /* outputs */
    int rc;
    bool replayed;
    int n_expired;
    bv_ledger_result_t *results;
    bv_ledger_account_t *acct_out;
    bv_ledger_transfer_t *xfer_out;
    sem_t done;
    void (*async_done)(int rc, void *arg); /* an asynchronous op (heap-allocated): called instead of posting done */
    void *async_arg;
    _Atomic int release_refs; /* head op of a job: the engine and the store's syncer */
    struct bv_ledger *lg;      /* head op of a pipelined job */
    struct op *next;
} op_t;

struct bv_ledger {
    bv_store_t *st;
    bv_ledger_options_t opt;
    /* the overlay: touched only by the engine thread (and by open/close) */
    acct_t **buckets;
    size_t n_buckets, n_accts;
    acct_t **by_rid;
    size_t by_rid_cap;
    int64_t next_acct_rid, next_xfer_rid, last_ts;
    undo_t *undo;
    size_t n_undo, cap_undo;
    acct_t **dirty;
    size_t n_dirty, cap_dirty;
    bv_buf_t scratch;
    /* the queue */
    pthread_mutex_t mu;
    pthread_cond_t cond;
    op_t *head, *tail;
    int in_flight; /* jobs committed and not yet durable (their callers not yet released) */
    bool stopping;
    bool started;
    pthread_t thread;
};

static const bv_ledger_ctx_t system_ctx = {.actor = "system"};

/* ---------------------------------------------------------------- the overlay ---- */

static uint64_t hash_id(const char *s)
{
    uint64_t h = 1469598103934665603ULL;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    return h;
}

static acct_t *find_acct(bv_ledger_t *lg, const char *id)
{
    if (id == NULL || lg->n_buckets == 0)
        return NULL;
    for (acct_t *a = lg->buckets[hash_id(id) & (lg->n_buckets - 1)]; a != NULL; a = a->hnext)
        if (strcmp(a->id, id) == 0)
            return a;
    return NULL;
}

static acct_t *acct_by_rid(bv_ledger_t *lg, int64_t rid)
{
    return rid > 0 && (size_t)rid < lg->by_rid_cap ? lg->by_rid[rid] : NULL;
}

static int insert_acct(bv_ledger_t *lg, acct_t *a)
{
    if (lg->n_accts + 1 > lg->n_buckets) {
        size_t n = lg->n_buckets ? lg->n_buckets * 2 : 1024;
        acct_t **nb = calloc(n, sizeof(*nb));
        if (nb == NULL)
            return BV_ENOMEM;
        for (size_t i = 0; i < lg->n_buckets; i++) {
            acct_t *x = lg->buckets[i];
            while (x != NULL) {
                acct_t *nx = x->hnext;
                size_t j = hash_id(x->id) & (n - 1);
                x->hnext = nb[j];
                nb[j] = x;
                x = nx;
            }
        }
        free(lg->buckets);
        lg->buckets = nb;
        lg->n_buckets = n;
    }
    if ((size_t)a->rid >= lg->by_rid_cap) {
        size_t n = lg->by_rid_cap ? lg->by_rid_cap : 1024;
        while (n <= (size_t)a->rid)
            n *= 2;
        acct_t **nr = realloc(lg->by_rid, n * sizeof(*nr));
        if (nr == NULL)
            return BV_ENOMEM;
        memset(nr + lg->by_rid_cap, 0, (n - lg->by_rid_cap) * sizeof(*nr));
        lg->by_rid = nr;
        lg->by_rid_cap = n;
    }
    size_t j = hash_id(a->id) & (lg->n_buckets - 1);
    a->hnext = lg->buckets[j];
    lg->buckets[j] = a;
    lg->by_rid[a->rid] = a;
    lg->n_accts++;
    return 0;
}

static void free_acct(acct_t *a)
{
    if (a == NULL)
        return;
    free(a->holder_name);
    free(a->customer_id);
    free(a);
}

static void remove_acct(bv_ledger_t *lg, acct_t *a)
{
    acct_t **pp = &lg->buckets[hash_id(a->id) & (lg->n_buckets - 1)];
    while (*pp != NULL && *pp != a)
        pp = &(*pp)->hnext;
    if (*pp == a)
        *pp = a->hnext;
    if ((size_t)a->rid < lg->by_rid_cap)
        lg->by_rid[a->rid] = NULL;
    lg->n_accts--;
    free_acct(a);
}

static void clear_overlay(bv_ledger_t *lg)
{
    for (size_t i = 0; i < lg->n_buckets; i++) {
        acct_t *a = lg->buckets[i];
        while (a != NULL) {
            acct_t *nx = a->hnext;
            free_acct(a);
            a = nx;
        }
    }
    free(lg->buckets);
    free(lg->by_rid);
    lg->buckets = NULL;
    lg->by_rid = NULL;
    lg->n_buckets = lg->n_accts = lg->by_rid_cap = 0;
}

static int lookup_index(const char *const *names, int n, const char *s)
{
    for (int i = 0; s != NULL && i < n; i++)
        if (strcmp(names[i], s) == 0)
            return i;
    return -1;
}

static int load_fn(bv_tx_t *tx, void *arg)
{
    bv_ledger_t *lg = arg;
    int rc;
    bv_stmt_t *s = bv_tx_prepare(tx, LEDGER_ACCT_SELECT "ORDER BY rid");
    if (s == NULL)
        return BV_EIO;
    lg->next_acct_rid = 1;
    while ((rc = bv_stmt_step(s)) == BV_ROW) {
        acct_t *a = calloc(1, sizeof(*a));
        if (a == NULL) {
            rc = BV_ENOMEM;
            break;
        }
        a->rid = bv_stmt_int64(s, 0);
        ledger_strlcpy(a->id, bv_stmt_text(s, 1), sizeof(a->id));
        ledger_strlcpy(a->number, bv_stmt_text(s, 2), sizeof(a->number));
        a->type = (int8_t)lookup_index(type_names, N_TYPES, bv_stmt_text(s, 3));
        ledger_strlcpy(a->currency, bv_stmt_text(s, 4), sizeof(a->currency));
        a->exponent = (int8_t)bv_ledger_currency_exponent(a->currency);
        a->status = (int8_t)lookup_index(status_names, N_STATUSES, bv_stmt_text(s, 5));
        a->holder_name = strdup(bv_stmt_text(s, 6) ? bv_stmt_text(s, 6) : "");
        a->customer_id = bv_stmt_is_null(s, 7) ? NULL : strdup(bv_stmt_text(s, 7));
        a->overdraft = bv_stmt_int64(s, 8);
        a->allow_negative = bv_stmt_int64(s, 9) != 0;
        a->balance = bv_stmt_int64(s, 10);
        a->holds = bv_stmt_int64(s, 11);
        a->created_at = bv_stmt_int64(s, 12);
        a->last_movement = bv_stmt_int64(s, 13); /* NULL reads as 0: none */
        a->movements = bv_stmt_int64(s, 14);
        if (a->holder_name == NULL || (!bv_stmt_is_null(s, 7) && a->customer_id == NULL) ||
            (rc = insert_acct(lg, a)) != 0) {
            free_acct(a);
            rc = BV_ENOMEM;
            break;
        }
        if (a->rid >= lg->next_acct_rid)
            lg->next_acct_rid = a->rid + 1;
    }
    bv_stmt_reset(s);
    if (rc < 0)
        return rc;
    s = bv_tx_prepare(tx, "SELECT (SELECT COALESCE(MAX(rid), 0) FROM ledger_transfers), "
                          "(SELECT COALESCE(MAX(created_at), 0) FROM ledger_transfers), "
                          "(SELECT COALESCE(MAX(resolved_at), 0) FROM ledger_transfers), "
                          "(SELECT COALESCE(MAX(posted_at), 0) FROM ledger_transfers)");
    if (s == NULL)
        return BV_EIO;
    if ((rc = bv_stmt_step(s)) != BV_ROW) {
        bv_stmt_reset(s);
        return rc < 0 ? rc : BV_EIO;
    }
    lg->next_xfer_rid = bv_stmt_int64(s, 0) + 1;
    for (int i = 1; i <= 3; i++)
        if (bv_stmt_int64(s, i) > lg->last_ts)
            lg->last_ts = bv_stmt_int64(s, i);
    bv_stmt_reset(s);
    return 0;
}

static int reload_overlay(bv_ledger_t *lg)
{
    clear_overlay(lg);
    int rc = bv_store_run_tx(lg->st, 0, load_fn, lg);
    if (rc != 0)
        bv_log_error("ledger: cannot load accounts", "\"error\":\"%s\"", bv_err_name(rc));
    return rc;
}

/* ---- undo log and dirty set ---- */

static int push_undo(bv_ledger_t *lg, acct_t *a, bool created)
{
    if (lg->n_undo == lg->cap_undo) {
        size_t n = lg->cap_undo ? lg->cap_undo * 2 : 4096;
        undo_t *nu = realloc(lg->undo, n * sizeof(*nu));
        if (nu == NULL)
            return BV_ENOMEM;
        lg->undo = nu;
        lg->cap_undo = n;
    }
    lg->undo[lg->n_undo++] = (undo_t){.a = a, .balance = a->balance, .holds = a->holds,
                                      .last_movement = a->last_movement, .movements = a->movements,
                                      .status = a->status, .created = created};
    return 0;
}

static void undo_to(bv_ledger_t *lg, size_t mark)
{
    while (lg->n_undo > mark) {
        undo_t *u = &lg->undo[--lg->n_undo];
        if (u->created) {
            remove_acct(lg, u->a);
            continue;
        }
        u->a->balance = u->balance;
        u->a->holds = u->holds;
        u->a->last_movement = u->last_movement;
        u->a->movements = u->movements;
        u->a->status = u->status;
    }
}

/* Records a's state for undo and marks it to be written at the end of the job. */
static int touch(bv_ledger_t *lg, acct_t *a)
{
    int rc = push_undo(lg, a, false);
    if (rc != 0 || a->dirty)
        return rc;
    if (lg->n_dirty == lg->cap_dirty) {
        size_t n = lg->cap_dirty ? lg->cap_dirty * 2 : 1024;
        acct_t **nd = realloc(lg->dirty, n * sizeof(*nd));
        if (nd == NULL)
            return BV_ENOMEM;
        lg->dirty = nd;
        lg->cap_dirty = n;
    }
    lg->dirty[lg->n_dirty++] = a;
    a->dirty = true;
    return 0;
}

static void clear_dirty(bv_ledger_t *lg)
{
    for (size_t i = 0; i < lg->n_dirty; i++)
        lg->dirty[i]->dirty = false;
    lg->n_dirty = 0;
}

/* Writes each touched balance once. */
static int flush_balances(bv_ledger_t *lg, bv_tx_t *tx, int64_t now)
{
    for (size_t i = 0; i < lg->n_dirty; i++) {
        acct_t *a = lg->dirty[i];
        bv_stmt_t *s = bv_tx_prepare(tx, "UPDATE OR FAIL ledger_balances SET balance = ?, holds = ?, updated_at = ?, "
                                         "last_movement = ?, movements = ? WHERE account = ?");
        if (s == NULL)
            return BV_EIO;
        bv_stmt_bind_int64(s, 1, a->balance);
        bv_stmt_bind_int64(s, 2, a->holds);
        bv_stmt_bind_int64(s, 3, now);
        if (a->last_movement != 0)
            bv_stmt_bind_int64(s, 4, a->last_movement);
        else
            bv_stmt_bind_null(s, 4);
        bv_stmt_bind_int64(s, 5, a->movements);
        bv_stmt_bind_int64(s, 6, a->rid);
        int rc = bv_stmt_step(s);
        bv_stmt_reset(s);
        if (rc < 0)
            return rc;
    }
    return 0;
}

static int64_t next_ts(bv_ledger_t *lg)
{
    int64_t now = bv_now_us();
    if (now <= lg->last_ts)
        now = lg->last_ts + 1;
    lg->last_ts = now;
    return now;
}

static void acct_to_public(const acct_t *a, bv_ledger_account_t *out)
{
    memset(out, 0, sizeof(*out));
    memcpy(out->id, a->id, sizeof(out->id));
    memcpy(out->number, a->number, sizeof(out->number));
    ledger_strlcpy(out->type, type_names[a->type], sizeof(out->type));
    memcpy(out->currency, a->currency, sizeof(out->currency));
    out->exponent = a->exponent;
    ledger_strlcpy(out->status, status_names[a->status], sizeof(out->status));
    ledger_strlcpy(out->holder_name, a->holder_name, sizeof(out->holder_name));
    ledger_strlcpy(out->customer_id, a->customer_id, sizeof(out->customer_id));
    out->overdraft_limit = a->overdraft;
    out->allow_negative = a->allow_negative;
    out->balance = a->balance;
    out->holds = a->holds;
    out->available = a->balance - a->holds;
    out->created_at = a->created_at;
}

/* ---------------------------------------------------- audit and outbox records ---- */

static int write_audit(bv_tx_t *tx, const bv_ledger_ctx_t *ctx, const char *action, const char *resource_kind,
                       const char *resource_id, json_t *details, const char *details_json)
{
    char resource[80];
    size_t kl = strlen(resource_kind), il = strnlen(resource_id, BV_UUID_STR_LEN);
    memcpy(resource, resource_kind, kl);
    resource[kl] = ':';
    memcpy(resource + kl + 1, resource_id, il);
    resource[kl + 1 + il] = '\0';
    bv_audit_event_t ev = {
        .actor = ctx != NULL && ctx->actor != NULL ? ctx->actor : "system",
        .action = action,
        .resource = resource,
        .outcome = "success",
        .source_ip = ctx != NULL ? ctx->source_ip : NULL,
        .request_id = ctx != NULL ? ctx->request_id : NULL,
        .details = details,
        .details_json = details_json,
    };
    return bv_audit_append(tx, &ev);
}

/* Audit record and outbox event for a transfer state change, in the caller's job. */
static int record_event(bv_ledger_t *lg, bv_tx_t *tx, const bv_ledger_ctx_t *ctx, const char *event,
                        const bv_ledger_transfer_t *t, int64_t now)
{
    char amount[BV_LEDGER_AMOUNT_MAX], oid[BV_UUID_STR_LEN + 1], attrs[160], when[32];
    int rc;
    /* what moved, not how: the amount is the posted one once a hold is resolved */
    bv_ledger_amount_format(t->posted_amount != 0 ? t->posted_amount : t->amount, t->exponent, amount);
    /* canonical (keys sorted); every value is digits, letters or a UUID: nothing to escape */
    char details[256];
    snprintf(details, sizeof(details),
             "{\"amount\":\"%s\",\"credit_account\":\"%.36s\",\"currency\":\"%.3s\",\"debit_account\":\"%.36s\"}",
             amount, t->credit_account, t->currency, t->debit_account);
    rc = write_audit(tx, ctx, event, "transfer", t->id, NULL, details);
    if (rc < 0)
        return rc;

    /* the event carries what a notifier needs; the full transfer is one GET away */
    bv_time_format(now, when);
    /* appended piece by piece (no printf: this runs for every transfer) */
    const char *parts[] = {"{\"event\":\"", event, "\",\"transfer_id\":\"", t->id, "\",\"status\":\"", t->status,
                           "\",\"debit_account\":\"", t->debit_account, "\",\"credit_account\":\"", t->credit_account,
                           "\",\"amount\":\"", amount, "\",\"currency\":\"", t->currency, "\",\"time\":\"", when, "\"}"};
    bv_buf_reset(&lg->scratch);
    for (size_t i = 0; i < sizeof(parts) / sizeof(parts[0]); i++)
        if (bv_buf_puts(&lg->scratch, parts[i]) != 0)
            return BV_ENOMEM;
    /* "customers":"none" when neither account belongs to a customer (internal, settlement and
       operators' accounts): a subscriber with nobody to tell filters those out at publish */
    const acct_t *da = find_acct(lg, t->debit_account), *ca = find_acct(lg, t->credit_account);
    int customers = (da != NULL && da->customer_id != NULL && da->customer_id[0] != '\0') ||
                    (ca != NULL && ca->customer_id != NULL && ca->customer_id[0] != '\0');
    snprintf(attrs, sizeof(attrs), "{\"event\":\"%s\",\"currency\":\"%s\"%s}", event, t->currency,
             customers ? "" : ",\"customers\":\"none\"");
    bv_uuid7(oid);
    bv_stmt_t *s = bv_tx_prepare(tx, "INSERT OR FAIL INTO outbox(id, topic, payload, attributes, created_at) "
                                     "VALUES (?, 'ledger', ?, ?, ?)");
    if (s == NULL)
        return BV_EIO;
    bv_stmt_bind_text_ref(s, 1, oid, -1);
    bv_stmt_bind_text_ref(s, 2, lg->scratch.data, (int)lg->scratch.len);
    bv_stmt_bind_text_ref(s, 3, attrs, -1);
    bv_stmt_bind_int64(s, 4, now);
    rc = bv_stmt_step(s);
    bv_stmt_reset(s);
    return rc < 0 ? rc : 0;
}

/* ---------------------------------------------------------------- operations ---- */

/* Applies a posted amount to both balances (the caller checked the bounds). */
static int move(bv_ledger_t *lg, acct_t *d, acct_t *c, int64_t amount)
{
    int rc;
    if ((rc = touch(lg, d)) != 0 || (rc = touch(lg, c)) != 0)
        return rc;
    d->balance -= amount;
    c->balance += amount;
    return 0;
}

static void bind_rid_or_null(bv_stmt_t *s, int i, int64_t rid)
{
    if (rid != 0)
        bv_stmt_bind_int64(s, i, rid);
    else
        bv_stmt_bind_null(s, i);
}

/* Links transfer `rid`, posted at ts, at the head of the movement chains of d and c (its row
 * holds their previous heads as debit_prev and credit_prev) and enters the anchors due.
 * Both accounts are touched already, so the undo log restores their chains. */
static int link_movement(bv_tx_t *tx, acct_t *d, acct_t *c, int64_t rid, int64_t ts)
{
    acct_t *side[2] = {d, c};
    for (int i = 0; i < 2; i++) {
        acct_t *a = side[i];
        if (a->movements % LEDGER_ANCHOR_EVERY == 0) {
            bv_stmt_t *s = bv_tx_prepare(tx, "INSERT OR FAIL INTO ledger_anchors(account, posted_at, xfer) VALUES (?, ?, ?)");
            if (s == NULL)
                return BV_EIO;
            bv_stmt_bind_int64(s, 1, a->rid);
            bv_stmt_bind_int64(s, 2, ts);
            bv_stmt_bind_int64(s, 3, rid);
            int rc = bv_stmt_step(s);
            bv_stmt_reset(s);
            if (rc < 0)
                return rc;
        }
        a->last_movement = rid;
        a->movements++;
    }
    return 0;
}

/* Loads a transfer by a LEDGER_XFER_SELECT suffix bound to one text or integer key.
 * BV_ROW when found, BV_DONE when not, or an error. */
static int load_xfer(bv_tx_t *tx, const char *sql, const char *key, int64_t ikey, bv_ledger_transfer_t *out,
                     ledger_xfer_extra_t *extra)
{
    bv_stmt_t *s = bv_tx_prepare(tx, sql);
    if (s == NULL)
        return BV_EIO;
    if (key != NULL)
        bv_stmt_bind_text(s, 1, key, -1);
    else
        bv_stmt_bind_int64(s, 1, ikey);
    int rc = bv_stmt_step(s);
    if (rc == BV_ROW)
        ledger_xfer_from_row(s, out, extra);
    bv_stmt_reset(s);
    return rc;
}
#define SQL_XFER_BY_REF LEDGER_XFER_SELECT "WHERE t.reference = ?"
#define SQL_XFER_BY_ID LEDGER_XFER_SELECT "WHERE t.id = ?"
#define SQL_XFER_BY_RID LEDGER_XFER_SELECT "WHERE t.rid = ?"

/* Resolves a hold. When posted > 0, d and c are the accounts after the posting, their chains
 * not yet linked (link_movement follows). */
static int set_xfer_state(bv_tx_t *tx, int64_t rid, const char *status, int64_t posted, int64_t now,
                          const char *resolve_key, const acct_t *d, const acct_t *c)
{
    bv_stmt_t *s = bv_tx_prepare(tx, "UPDATE ledger_transfers SET status = ?, posted_amount = ?, resolved_at = ?, "
                                     "resolve_key = ?, posted_at = ?, debit_balance_after = ?, "
                                     "credit_balance_after = ?, debit_prev = ?, credit_prev = ? WHERE rid = ?");
    if (s == NULL)
        return BV_EIO;
    bv_stmt_bind_text(s, 1, status, -1);
    bv_stmt_bind_int64(s, 2, posted);
    bv_stmt_bind_int64(s, 3, now);
    bv_stmt_bind_text(s, 4, resolve_key, -1);
    if (posted > 0) {
        bv_stmt_bind_int64(s, 5, now);
        bv_stmt_bind_int64(s, 6, d->balance);
        bv_stmt_bind_int64(s, 7, c->balance);
        bind_rid_or_null(s, 8, d->last_movement);
        bind_rid_or_null(s, 9, c->last_movement);
    } else {
        for (int i = 5; i <= 9; i++)
            bv_stmt_bind_null(s, i);
    }
    bv_stmt_bind_int64(s, 10, rid);
    int rc = bv_stmt_step(s);
    bv_stmt_reset(s);
    return rc < 0 ? rc : 0;
}

/* Expires one pending transfer (already loaded) and releases its hold. */
static int expire_one(bv_ledger_t *lg, bv_tx_t *tx, bv_ledger_transfer_t *t, const ledger_xfer_extra_t *x)
{
    acct_t *d = acct_by_rid(lg, x->debit_rid);
    int64_t now = next_ts(lg);
    int rc;
    if (d == NULL)
        return BV_EINTERNAL;
    if ((rc = touch(lg, d)) != 0)
        return rc;
    d->holds -= t->amount;
    if ((rc = set_xfer_state(tx, x->rid, "expired", 0, now, NULL, NULL, NULL)) != 0)
        return rc;
    ledger_strlcpy(t->status, "expired", sizeof(t->status));
    t->resolved_at = now;
    return record_event(lg, tx, &system_ctx, "ledger.hold.expired", t, now);
}

/* Expires due holds: of one debit account (debit_rid > 0) or of all (0), at most `max`. */
static int expire_due(bv_ledger_t *lg, bv_tx_t *tx, int64_t debit_rid, int max, int *n_out)
{
    int64_t rids[256];
    int n = 0, rc;
    int64_t now = bv_now_us();
    bv_stmt_t *s;
    if (max > 256)
        max = 256;
    if (debit_rid > 0) {
        s = bv_tx_prepare(tx, "SELECT rid FROM ledger_transfers WHERE debit = ? AND status = 'pending' "
                              "AND expires_at <= ? LIMIT ?");
        if (s == NULL)
            return BV_EIO;
        bv_stmt_bind_int64(s, 1, debit_rid);
        bv_stmt_bind_int64(s, 2, now);
        bv_stmt_bind_int64(s, 3, max);
    } else {
        s = bv_tx_prepare(tx, "SELECT rid FROM ledger_transfers WHERE status = 'pending' AND expires_at IS NOT NULL "
                              "AND expires_at <= ? ORDER BY expires_at LIMIT ?");
        if (s == NULL)
            return BV_EIO;
        bv_stmt_bind_int64(s, 1, now);
        bv_stmt_bind_int64(s, 2, max);
    }
    while (n < max && (rc = bv_stmt_step(s)) == BV_ROW)
        rids[n++] = bv_stmt_int64(s, 0);
    bv_stmt_reset(s);
    if (rc < 0)
        return rc;
    for (int i = 0; i < n; i++) {
        bv_ledger_transfer_t t;
        ledger_xfer_extra_t x;
        if ((rc = load_xfer(tx, SQL_XFER_BY_RID, NULL, rids[i], &t, &x)) != BV_ROW)
            return rc < 0 ? rc : BV_EINTERNAL;
        if ((rc = expire_one(lg, tx, &t, &x)) != 0)
            return rc;
    }
    if (n_out != NULL)
        *n_out = n;
    return 0;
}

/* 0 if a can be debited `amount` now (balance - holds + overdraft), else a rejection. */
static int debit_check(const acct_t *a, int64_t amount)
{
    __int128 after = (__int128)a->balance - a->holds - amount;
    if (after < INT64_MIN)
        return BV_EAMOUNT;
    if (a->allow_negative)
        return 0;
    return after >= -(__int128)a->overdraft ? 0 : BV_EINSUFFICIENT_FUNDS;
}

static bool same_content(const bv_ledger_transfer_req_t *req, const bv_ledger_transfer_t *t, int64_t reverses_rid,
                         const ledger_xfer_extra_t *x)
{
    (void)x;
    if (strcmp(req->debit_account, t->debit_account) != 0 || strcmp(req->credit_account, t->credit_account) != 0 ||
        req->amount != t->amount || strcmp(req->currency, t->currency) != 0 || req->pending != t->pending ||
        req->expires_at != t->expires_at || (reverses_rid != 0) != (t->reverses[0] != '\0'))
        return false;
    return strcmp(req->description != NULL ? req->description : "", t->description) == 0;
}

/* The request's reference is taken already, or the request was refused (`refusal`): a
 * transfer with that reference makes it a replay (same content) or an idempotency
 * conflict; otherwise the outcome is `refusal`. 0, or a hard (store) error. */
static int replay_or(bv_tx_t *tx, const bv_ledger_transfer_req_t *req, int64_t reverses_rid, int refusal,
                     bv_ledger_result_t *res)
{
    ledger_xfer_extra_t x;
    int rc = load_xfer(tx, SQL_XFER_BY_REF, req->reference, 0, &res->transfer, &x);
    if (rc < 0)
        return rc;
    if (rc == BV_ROW) {
        res->rc = same_content(req, &res->transfer, reverses_rid, &x) ? 0 : BV_EIDEMPOTENCY;
        res->replayed = res->rc == 0;
        return 0;
    }
    res->rc = refusal;
    return 0;
}

/* One transfer. Returns a hard (store) error, else 0 with the outcome in res->rc. All
 * checks precede every change, so a rejection leaves no trace (besides lazily expired
 * holds, which are real changes of their own). The reference is looked up only when the
 * request is refused or its INSERT meets the reference's unique index (a replay): a new
 * transfer, the common case, costs no lookup. */
static int apply_transfer(bv_ledger_t *lg, bv_tx_t *tx, const bv_ledger_ctx_t *ctx,
                          const bv_ledger_transfer_req_t *req, int64_t reverses_rid, const char *reverses_id,
                          bv_ledger_result_t *res)
{
    int rc;
    res->rc = 0;
    res->replayed = false;
    if (req->reference == NULL || req->reference[0] == '\0' || strlen(req->reference) > BV_LEDGER_REF_MAX ||
        req->debit_account == NULL || req->credit_account == NULL || req->currency == NULL ||
        (req->description != NULL && strlen(req->description) > BV_LEDGER_DESC_MAX) ||
        (!req->pending && req->expires_at != 0)) {
        res->rc = BV_EINVALID;
        return 0;
    }
    acct_t *d = find_acct(lg, req->debit_account), *c = find_acct(lg, req->credit_account);
    int64_t now = bv_now_us();
    if (d == NULL || c == NULL)
        res->rc = BV_EUNKNOWN_ACCOUNT;
    else if (d == c)
        res->rc = BV_ESAME_ACCOUNT;
    else if (req->amount <= 0)
        res->rc = BV_EAMOUNT;
    else if (strcmp(req->currency, d->currency) != 0 || strcmp(req->currency, c->currency) != 0)
        res->rc = BV_ECURRENCY_MISMATCH;
    else if (d->status == ST_CLOSED || c->status == ST_CLOSED)
        res->rc = BV_EACCOUNT_CLOSED;
    else if (d->status == ST_FROZEN || c->status == ST_FROZEN)
        res->rc = BV_EACCOUNT_FROZEN;
    else if (req->pending && req->expires_at != 0 && req->expires_at <= now)
        res->rc = BV_EEXPIRED;
    else if (!req->pending && c->balance > INT64_MAX - req->amount)
        res->rc = BV_EAMOUNT;
    else if (req->pending && d->holds > INT64_MAX - req->amount)
        res->rc = BV_EAMOUNT;
    else if ((res->rc = debit_check(d, req->amount)) == BV_EINSUFFICIENT_FUNDS && d->holds > 0) {
        /* lazy expiry: holds past their deadline no longer reserve funds */
        int n = 0;
        if ((rc = expire_due(lg, tx, d->rid, 256, &n)) != 0)
            return rc;
        if (n > 0)
            res->rc = debit_check(d, req->amount);
    }
    if (res->rc != 0)
        return replay_or(tx, req, reverses_rid, res->rc, res);

    /* apply */
    bv_ledger_transfer_t *t = &res->transfer;
    int64_t ts = next_ts(lg), rid = lg->next_xfer_rid++;
    memset(t, 0, sizeof(*t));
    bv_uuid7(t->id);
    ledger_strlcpy(t->reference, req->reference, sizeof(t->reference));
    memcpy(t->debit_account, d->id, sizeof(t->debit_account));
    memcpy(t->credit_account, c->id, sizeof(t->credit_account));
    memcpy(t->currency, d->currency, sizeof(t->currency));
    t->exponent = d->exponent;
    t->amount = req->amount;
    t->posted_amount = req->pending ? 0 : req->amount;
    ledger_strlcpy(t->status, req->pending ? "pending" : "posted", sizeof(t->status));
    t->pending = req->pending;
    t->expires_at = req->expires_at;
    ledger_strlcpy(t->description, req->description, sizeof(t->description));
    ledger_strlcpy(t->reverses, reverses_id, sizeof(t->reverses));
    t->created_at = ts;

    int64_t d_balance = d->balance, d_holds = d->holds, c_balance = c->balance;
    if (req->pending) {
        if ((rc = touch(lg, d)) != 0)
            return rc;
        d->holds += req->amount;
    } else if ((rc = move(lg, d, c, req->amount)) != 0) {
        return rc;
    }
    bv_stmt_t *s = bv_tx_prepare(tx, "INSERT OR FAIL INTO ledger_transfers(rid, id, reference, debit, credit, currency, amount, "
                                     "posted_amount, status, pending, expires_at, description, reverses, created_at, "
                                     "posted_at, debit_balance_after, credit_balance_after, debit_prev, credit_prev) "
                                     "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)");
    if (s == NULL)
        return BV_EIO;
    bv_stmt_bind_int64(s, 1, rid);
    bv_stmt_bind_text_ref(s, 2, t->id, -1); /* t outlives the step below */
    bv_stmt_bind_text_ref(s, 3, t->reference, -1);
    bv_stmt_bind_int64(s, 4, d->rid);
    bv_stmt_bind_int64(s, 5, c->rid);
    bv_stmt_bind_text_ref(s, 6, t->currency, -1);
    bv_stmt_bind_int64(s, 7, t->amount);
    bv_stmt_bind_int64(s, 8, t->posted_amount);
    bv_stmt_bind_text_ref(s, 9, t->status, -1);
    bv_stmt_bind_int64(s, 10, t->pending);
    if (t->expires_at != 0)
        bv_stmt_bind_int64(s, 11, t->expires_at);
    else
        bv_stmt_bind_null(s, 11);
    bv_stmt_bind_text_ref(s, 12, t->description, -1);
    if (reverses_rid != 0)
        bv_stmt_bind_int64(s, 13, reverses_rid);
    else
        bv_stmt_bind_null(s, 13);
    bv_stmt_bind_int64(s, 14, ts);
    if (req->pending) {
        for (int i = 15; i <= 19; i++)
            bv_stmt_bind_null(s, i);
    } else {
        bv_stmt_bind_int64(s, 15, ts);
        bv_stmt_bind_int64(s, 16, d->balance);
        bv_stmt_bind_int64(s, 17, c->balance);
        bind_rid_or_null(s, 18, d->last_movement);
        bind_rid_or_null(s, 19, c->last_movement);
    }
    rc = bv_stmt_step(s);
    bv_stmt_reset(s);
    if (rc == BV_ECONFLICT) { /* the reference is taken: take the change back, then see */
        d->balance = d_balance;
        d->holds = d_holds;
        c->balance = c_balance;
        if ((rc = replay_or(tx, req, reverses_rid, BV_ECONFLICT, res)) != 0)
            return rc;
        return res->rc == BV_ECONFLICT ? BV_ECONFLICT : 0; /* another constraint: a hard error */
    }
    if (rc < 0 || (!req->pending && (rc = link_movement(tx, d, c, rid, ts)) != 0))
        return rc;
    bv_ledger_ctx_t own;
    if (req->actor != NULL) { /* a batch of transfers made for different customers */
        own = ctx != NULL ? *ctx : (bv_ledger_ctx_t){0};
        own.actor = req->actor;
        ctx = &own;
    }
    return record_event(lg, tx, ctx,
                        reverses_rid != 0 ? "ledger.transfer.reversed"
                        : req->pending    ? "ledger.hold.created"
                                          : "ledger.transfer.posted",
                        t, ts);
}

static int op_batch(bv_ledger_t *lg, bv_tx_t *tx, op_t *op)
{
    int rc;
    size_t mark = lg->n_undo;
    if (op->linked && (rc = bv_tx_exec(tx, "SAVEPOINT ledger_linked")) != 0)
        return rc;
    size_t failed = op->n;
    for (size_t i = 0; i < op->n; i++) {
        if ((rc = apply_transfer(lg, tx, op->ctx, &op->reqs[i], 0, NULL, &op->results[i])) != 0)
            return rc; /* the whole job rolls back */
        if (op->linked && op->results[i].rc != 0) {
            failed = i;
            break;
        }
    }
    if (op->linked) {
        if (failed < op->n) {
            if ((rc = bv_tx_exec(tx, "ROLLBACK TO ledger_linked")) != 0)
                return rc;
            undo_to(lg, mark);
            for (size_t i = 0; i < op->n; i++) {
                if (i == failed)
                    continue;
                op->results[i].rc = BV_ELINKED_FAILED;
                op->results[i].replayed = false;
            }
        }
        if ((rc = bv_tx_exec(tx, "RELEASE ledger_linked")) != 0)
            return rc;
    }
    op->rc = 0;
    return 0;
}

/* post / void of a pending transfer */
static int op_resolve(bv_ledger_t *lg, bv_tx_t *tx, op_t *op)
{
    bv_ledger_transfer_t *t = op->xfer_out;
    ledger_xfer_extra_t x;
    int rc = load_xfer(tx, SQL_XFER_BY_ID, op->id, 0, t, &x);
    bool posting = op->kind == OP_POST;
    if (rc < 0)
        return rc;
    if (rc != BV_ROW) {
        op->rc = BV_ENOTFOUND;
        return 0;
    }
    if (op->idem_key != NULL && strcmp(x.resolve_key, op->idem_key) == 0) {
        bool same = posting ? strcmp(t->status, "posted") == 0 && (op->amount == 0 || op->amount == t->posted_amount)
                            : strcmp(t->status, "voided") == 0;
        op->rc = same ? 0 : BV_EIDEMPOTENCY;
        op->replayed = same;
        return 0;
    }
    if (strcmp(t->status, "pending") != 0) {
        op->rc = strcmp(t->status, "expired") == 0 ? BV_EEXPIRED : BV_ETRANSFER_STATE;
        return 0;
    }
    if (t->expires_at != 0 && t->expires_at <= bv_now_us()) {
        /* lazy expiry: the hold is released now and the post/void is refused */
        if ((rc = expire_one(lg, tx, t, &x)) != 0)
            return rc;
        op->rc = BV_EEXPIRED;
        return 0;
    }
    acct_t *d = acct_by_rid(lg, x.debit_rid), *c = acct_by_rid(lg, x.credit_rid);
    if (d == NULL || c == NULL)
        return BV_EINTERNAL;
    int64_t amount = op->amount == 0 ? t->amount : op->amount;
    if (posting) {
        if (amount <= 0 || amount > t->amount || c->balance > INT64_MAX - amount)
            op->rc = BV_EAMOUNT;
        else if (d->status == ST_CLOSED || c->status == ST_CLOSED)
            op->rc = BV_EACCOUNT_CLOSED;
        else if (d->status == ST_FROZEN || c->status == ST_FROZEN)
            op->rc = BV_EACCOUNT_FROZEN;
        if (op->rc != 0)
            return 0;
    }
    int64_t ts = next_ts(lg);
    if ((rc = touch(lg, d)) != 0)
        return rc;
    d->holds -= t->amount;
    if (posting && (rc = move(lg, d, c, amount)) != 0)
        return rc;
    if ((rc = set_xfer_state(tx, x.rid, posting ? "posted" : "voided", posting ? amount : 0, ts, op->idem_key, d, c)) !=
            0 ||
        (posting && (rc = link_movement(tx, d, c, x.rid, ts)) != 0))
        return rc;
    ledger_strlcpy(t->status, posting ? "posted" : "voided", sizeof(t->status));
    t->posted_amount = posting ? amount : 0;
    t->resolved_at = ts;
    op->rc = 0;
    return record_event(lg, tx, op->ctx, posting ? "ledger.hold.posted" : "ledger.hold.voided", t, ts);
}

static int op_reverse(bv_ledger_t *lg, bv_tx_t *tx, op_t *op)
{
    bv_ledger_transfer_t orig;
    ledger_xfer_extra_t x;
    char reference[BV_LEDGER_REF_MAX + 1], description[BV_LEDGER_DESC_MAX + 1];
    int rc = load_xfer(tx, SQL_XFER_BY_ID, op->id, 0, &orig, &x);
    if (rc < 0)
        return rc;
    if (rc != BV_ROW) {
        op->rc = BV_ENOTFOUND;
        return 0;
    }
    if (orig.reversed_by[0] != '\0') {
        /* a retry of the reversal that happened: same Idempotency-Key -> same result */
        if (op->idem_key != NULL) {
            rc = load_xfer(tx, SQL_XFER_BY_ID, orig.reversed_by, 0, op->xfer_out, NULL);
            if (rc < 0)
                return rc;
            if (rc == BV_ROW && strcmp(op->xfer_out->reference, op->idem_key) == 0) {
                op->rc = 0;
                op->replayed = true;
                return 0;
            }
        }
        op->rc = BV_EALREADY_REVERSED;
        return 0;
    }
    if (strcmp(orig.status, "posted") != 0) {
        op->rc = BV_ETRANSFER_STATE;
        return 0;
    }
    if (op->idem_key != NULL)
        ledger_strlcpy(reference, op->idem_key, sizeof(reference));
    else
        snprintf(reference, sizeof(reference), "reversal:%s", orig.id);
    if (op->description != NULL)
        ledger_strlcpy(description, op->description, sizeof(description));
    else
        snprintf(description, sizeof(description), "Reversal of %.200s", orig.reference);
    bv_ledger_transfer_req_t req = {
        .debit_account = orig.credit_account,
        .credit_account = orig.debit_account,
        .amount = orig.posted_amount,
        .currency = orig.currency,
        .reference = reference,
        .description = description,
    };
    bv_ledger_result_t res;
    if ((rc = apply_transfer(lg, tx, op->ctx, &req, x.rid, orig.id, &res)) != 0)
        return rc;
    op->rc = res.rc;
    op->replayed = res.replayed;
    *op->xfer_out = res.transfer;
    return 0;
}

static int op_account(bv_ledger_t *lg, bv_tx_t *tx, op_t *op)
{
    const bv_ledger_account_req_t *r = op->acct_req;
    int type = lookup_index(type_names, N_TYPES, r->type), exponent = bv_ledger_currency_exponent(r->currency);
    int rc = 0;
    if (type < 0 || exponent < 0 || r->holder_name == NULL || r->holder_name[0] == '\0' ||
        strlen(r->holder_name) > BV_LEDGER_NAME_MAX || r->overdraft_limit < 0 ||
        (r->allow_negative && type != TYPE_INTERNAL) || (r->customer_id != NULL && strlen(r->customer_id) > BV_UUID_STR_LEN)) {
        op->rc = BV_EINVALID;
        return 0;
    }
    if (r->idem_key != NULL) {
        bv_stmt_t *s = bv_tx_prepare(tx, "SELECT id FROM ledger_account_info WHERE creation_key = ?");
        char id[BV_UUID_STR_LEN + 1] = "";
        if (s == NULL)
            return BV_EIO;
        bv_stmt_bind_text(s, 1, r->idem_key, -1);
        rc = bv_stmt_step(s);
        if (rc == BV_ROW)
            ledger_strlcpy(id, bv_stmt_text(s, 0), sizeof(id));
        bv_stmt_reset(s);
        if (rc < 0)
            return rc;
        if (rc == BV_ROW) {
            acct_t *old = find_acct(lg, id);
            if (old == NULL)
                return BV_EINTERNAL;
            bool same = old->type == type && strcmp(old->currency, r->currency) == 0 &&
                        strcmp(old->holder_name, r->holder_name) == 0 &&
                        strcmp(old->customer_id ? old->customer_id : "", r->customer_id ? r->customer_id : "") == 0 &&
                        old->overdraft == r->overdraft_limit && old->allow_negative == r->allow_negative;
            op->rc = same ? 0 : BV_EIDEMPOTENCY;
            op->replayed = same;
            if (same)
                acct_to_public(old, op->acct_out);
            return 0;
        }
    }
    acct_t *a = calloc(1, sizeof(*a));
    if (a == NULL)
        return BV_ENOMEM;
    a->rid = lg->next_acct_rid++;
    bv_uuid7(a->id);
    memcpy(a->currency, r->currency, 4);
    a->exponent = (int8_t)exponent;
    a->type = (int8_t)type;
    a->status = ST_ACTIVE;
    a->allow_negative = r->allow_negative;
    a->overdraft = r->overdraft_limit;
    a->created_at = bv_now_us();
    a->holder_name = strdup(r->holder_name);
    a->customer_id = r->customer_id != NULL ? strdup(r->customer_id) : NULL;
    if (a->holder_name == NULL || (r->customer_id != NULL && a->customer_id == NULL)) {
        free_acct(a);
        return BV_ENOMEM;
    }
    for (int attempt = 0; attempt < 8; attempt++) {
        uint64_t body;
        bv_random(&body, sizeof(body));
        /* 14-digit body; the leading digit is never 0 so numbers keep their length */
        body = 10000000000000ULL + body % 90000000000000ULL;
        bv_ledger_number_make(body, a->number);
        bv_stmt_t *s = bv_tx_prepare(tx, "INSERT INTO ledger_account_info(rid, id, number, type, currency, status, "
                                         "holder_name, customer_id, overdraft_limit, allow_negative, "
                                         "created_at, updated_at, creation_key) "
                                         "VALUES (?, ?, ?, ?, ?, 'active', ?, ?, ?, ?, ?, ?, ?)");
        if (s == NULL) {
            rc = BV_EIO;
            break;
        }
        bv_stmt_bind_int64(s, 1, a->rid);
        bv_stmt_bind_text(s, 2, a->id, -1);
        bv_stmt_bind_text(s, 3, a->number, -1);
        bv_stmt_bind_text(s, 4, type_names[type], -1);
        bv_stmt_bind_text(s, 5, a->currency, -1);
        bv_stmt_bind_text(s, 6, a->holder_name, -1);
        bv_stmt_bind_text(s, 7, a->customer_id, -1);
        bv_stmt_bind_int64(s, 8, a->overdraft);
        bv_stmt_bind_int64(s, 9, a->allow_negative);
        bv_stmt_bind_int64(s, 10, a->created_at);
        bv_stmt_bind_int64(s, 11, a->created_at);
        bv_stmt_bind_text(s, 12, r->idem_key, -1);
        rc = bv_stmt_step(s);
        bv_stmt_reset(s);
        if (rc != BV_ECONFLICT) /* a number collision draws another number */
            break;
    }
    if (rc >= 0) {
        bv_stmt_t *s = bv_tx_prepare(tx, "INSERT INTO ledger_balances(account, updated_at) VALUES (?, ?)");
        if (s == NULL) {
            rc = BV_EIO;
        } else {
            bv_stmt_bind_int64(s, 1, a->rid);
            bv_stmt_bind_int64(s, 2, a->created_at);
            rc = bv_stmt_step(s);
            bv_stmt_reset(s);
        }
    }
    if (rc < 0 || (rc = insert_acct(lg, a)) != 0) {
        free_acct(a);
        return rc;
    }
    if ((rc = push_undo(lg, a, true)) != 0)
        return rc;
    acct_to_public(a, op->acct_out);
    json_t *details = json_pack("{s:s,s:s,s:s}", "number", a->number, "type", type_names[type], "currency", a->currency);
    if (details == NULL)
        return BV_ENOMEM;
    rc = write_audit(tx, op->ctx, "ledger.account.open", "account", a->id, details, NULL);
    json_decref(details);
    op->rc = 0;
    return rc < 0 ? rc : 0;
}

static int op_status(bv_ledger_t *lg, bv_tx_t *tx, op_t *op)
{
    acct_t *a = find_acct(lg, op->id);
    int status = lookup_index(status_names, N_STATUSES, op->status), rc;
    if (a == NULL) {
        op->rc = BV_ENOTFOUND;
        return 0;
    }
    if (status < 0) {
        op->rc = BV_EINVALID;
        return 0;
    }
    if (a->status == ST_CLOSED && status != ST_CLOSED) {
        op->rc = BV_EACCOUNT_CLOSED;
        return 0;
    }
    if (status == ST_CLOSED && a->status != ST_CLOSED && (a->balance != 0 || a->holds != 0)) {
        op->rc = BV_ECONFLICT;
        return 0;
    }
    if ((rc = push_undo(lg, a, false)) != 0)
        return rc;
    int old = a->status;
    a->status = (int8_t)status;
    bv_stmt_t *s = bv_tx_prepare(tx, "UPDATE ledger_account_info SET status = ?, updated_at = ? WHERE rid = ?");
    if (s == NULL)
        return BV_EIO;
    bv_stmt_bind_text(s, 1, status_names[status], -1);
    bv_stmt_bind_int64(s, 2, bv_now_us());
    bv_stmt_bind_int64(s, 3, a->rid);
    rc = bv_stmt_step(s);
    bv_stmt_reset(s);
    if (rc < 0)
        return rc;
    acct_to_public(a, op->acct_out);
    json_t *details = json_pack("{s:s,s:s}", "from", status_names[old], "to", status_names[status]);
    if (details == NULL)
        return BV_ENOMEM;
    rc = write_audit(tx, op->ctx, "ledger.account.status", "account", a->id, details, NULL);
    json_decref(details);
    op->rc = 0;
    return rc < 0 ? rc : 0;
}

static int run_op(bv_ledger_t *lg, bv_tx_t *tx, op_t *op)
{
    op->rc = 0;
    switch (op->kind) {
    case OP_ACCOUNT:
        return op_account(lg, tx, op);
    case OP_STATUS:
        return op_status(lg, tx, op);
    case OP_BATCH:
        return op_batch(lg, tx, op);
    case OP_POST:
    case OP_VOID:
        return op_resolve(lg, tx, op);
    case OP_REVERSE:
        return op_reverse(lg, tx, op);
    case OP_EXPIRE:
        return expire_due(lg, tx, 0, 256, &op->n_expired);
    }
    return BV_EINTERNAL;
}

typedef struct {
    bv_ledger_t *lg;
    op_t *ops;
    bool returned_ok;
} job_t;

static int run_job(bv_tx_t *tx, void *arg)
{
    job_t *job = arg;
    bv_ledger_t *lg = job->lg;
    int rc = 0;
    lg->n_undo = 0;
    lg->n_dirty = 0;
    for (op_t *op = job->ops; op != NULL && rc == 0; op = op->next)
        rc = run_op(lg, tx, op);
    if (rc == 0)
        rc = flush_balances(lg, tx, bv_now_us());
    clear_dirty(lg);
    if (rc < 0) {
        bv_log_error("ledger job failed", "\"error\":\"%s\"", bv_err_name(rc));
        undo_to(lg, 0);
        return rc;
    }
    lg->n_undo = 0;
    job->returned_ok = true;
    return 0;
}

/* Outcome of a transfer op as bv_ledger_transfer returns it. */
static int transfer_rc(const op_t *op) { return op->rc != 0 ? op->rc : op->results[0].rc; }

/* Releases every op of a job once both the engine is done with them and the job is durable
 * (whichever comes last): posts the waiting callers (their ops live on their stacks) and
 * calls back the asynchronous ones (their ops are freed here). */
static void release_ops(void *arg)
{
    op_t *ops = arg;
    if (atomic_fetch_sub(&ops->release_refs, 1) != 1)
        return;
    for (op_t *op = ops; op != NULL;) {
        op_t *nx = op->next;
        if (op->async_done != NULL) {
            op->async_done(transfer_rc(op), op->async_arg);
            free(op);
        } else {
            sem_post(&op->done);
        }
        op = nx;
    }
}

/* The store's durable callback of a pipelined job (on its syncer thread). */
static void job_durable(void *arg)
{
    op_t *ops = arg;
    bv_ledger_t *lg = ops->lg;
    release_ops(ops); /* first: bv_ledger_close returns only after every op is answered */
    pthread_mutex_lock(&lg->mu);
    lg->in_flight--;
    if (lg->stopping) /* bv_ledger_close waits for the last ones */
        pthread_cond_broadcast(&lg->cond);
    pthread_mutex_unlock(&lg->mu);
}

/* Runs ops as one store job. With pipelined, returns once the job has committed (the
 * engine can run the next one while this one is fsynced) and the ops are released when it
 * is durable; otherwise returns once durable and the caller releases them. */
static void run_ops(bv_ledger_t *lg, op_t *ops, bool pipelined)
{
    job_t job = {.lg = lg, .ops = ops};
    int rc;
    if (pipelined) {
        atomic_store(&ops->release_refs, 2);
        ops->lg = lg;
        pthread_mutex_lock(&lg->mu);
        lg->in_flight++;
        pthread_mutex_unlock(&lg->mu);
        rc = bv_store_write_pipelined(lg->st, run_job, &job, job_durable, ops);
    } else {
        atomic_store(&ops->release_refs, 1); /* the caller's release_ops is the only one */
        rc = bv_store_write(lg->st, run_job, &job);
    }
    if (rc == 0)
        return;
    if (job.returned_ok) {
        /* the job ran but its batch did not commit: the overlay is ahead of the database */
        bv_log_error("ledger commit failed; reloading balances", "\"error\":\"%s\"", bv_err_name(rc));
        reload_overlay(lg);
    }
    for (op_t *op = ops; op != NULL; op = op->next) {
        op->rc = rc;
        op->replayed = false;
        if (op->kind == OP_BATCH)
            for (size_t i = 0; i < op->n; i++)
                op->results[i].rc = rc;
    }
}

/* --------------------------------------------------------- the engine thread ---- */

static void *engine_main(void *arg)
{
    bv_ledger_t *lg = arg;
    pthread_setname_np(pthread_self(), "bv-ledger");
    int interval = lg->opt.sweep_interval_ms > 0 ? lg->opt.sweep_interval_ms : 1000;
    int64_t next_sweep = bv_mono_us() + (int64_t)interval * 1000;
    pthread_mutex_lock(&lg->mu);
    for (;;) {
        if (lg->head == NULL) {
            if (lg->stopping)
                break;
            if (!lg->opt.sweeper) {
                pthread_cond_wait(&lg->cond, &lg->mu);
                continue;
            }
            int64_t wait = next_sweep - bv_mono_us();
            if (wait > 0) {
                struct timespec ts;
                clock_gettime(CLOCK_MONOTONIC, &ts);
                ts.tv_sec += wait / 1000000;
                ts.tv_nsec += (wait % 1000000) * 1000;
                if (ts.tv_nsec >= 1000000000) {
                    ts.tv_sec++;
                    ts.tv_nsec -= 1000000000;
                }
                pthread_cond_timedwait(&lg->cond, &lg->mu, &ts);
                continue;
            }
            next_sweep = bv_mono_us() + (int64_t)interval * 1000;
            pthread_mutex_unlock(&lg->mu);
            op_t sweep = {.kind = OP_EXPIRE, .ctx = &system_ctx};
            run_ops(lg, &sweep, false);
            if (sweep.rc == 0 && sweep.n_expired > 0)
                bv_log_info("ledger holds expired", "\"count\":%d", sweep.n_expired);
            pthread_mutex_lock(&lg->mu);
            continue;
        }
        /* take what is queued, up to the per-job bound (always at least one op) */
        op_t *ops = lg->head, *last = ops;
        size_t weight = ops->kind == OP_BATCH ? ops->n : 1;
        while (last->next != NULL) {
            size_t w = last->next->kind == OP_BATCH ? last->next->n : 1;
            if (weight + w > (size_t)lg->opt.max_transfers_per_job)
                break;
            weight += w;
            last = last->next;
        }
        lg->head = last->next;
        if (lg->head == NULL)
            lg->tail = NULL;
        last->next = NULL;
        pthread_mutex_unlock(&lg->mu);
        run_ops(lg, ops, true);
        release_ops(ops); /* the engine is done with them; the syncer posts if durable */
        pthread_mutex_lock(&lg->mu);
    }
    pthread_mutex_unlock(&lg->mu);
    return NULL;
}

/* Queues op for the engine thread. 0, or BV_ESHUTDOWN. */
static int enqueue(bv_ledger_t *lg, op_t *op)
{
    op->next = NULL;
    pthread_mutex_lock(&lg->mu);
    if (lg->stopping) {
        pthread_mutex_unlock(&lg->mu);
        return BV_ESHUTDOWN;
    }
    if (lg->tail != NULL)
        lg->tail->next = op;
    else
        lg->head = op;
    lg->tail = op;
    pthread_cond_signal(&lg->cond);
    pthread_mutex_unlock(&lg->mu);
    return 0;
}

static int submit(bv_ledger_t *lg, op_t *op)
{
    if (sem_init(&op->done, 0, 0) != 0)
        return BV_EINTERNAL;
    int rc = enqueue(lg, op);
    if (rc != 0) {
        sem_destroy(&op->done);
        return rc;
    }
    while (sem_wait(&op->done) != 0 && errno == EINTR)
        ;
    sem_destroy(&op->done);
    return op->rc;
}

/* ---------------------------------------------------------------- public API ---- */

bv_store_t *ledger_store(bv_ledger_t *lg) { return lg->st; }

int bv_ledger_open(bv_store_t *st, const bv_ledger_options_t *opt, bv_ledger_t **out)
{
    bv_ledger_t *lg = calloc(1, sizeof(*lg));
    pthread_condattr_t ca;
    int rc;
    *out = NULL;
    if (lg == NULL)
        return BV_ENOMEM;
    lg->st = st;
    if (opt != NULL)
        lg->opt = *opt;
    if (lg->opt.max_transfers_per_job <= 0)
        lg->opt.max_transfers_per_job = 16384;
    if (lg->opt.max_transfers_per_job < BV_LEDGER_BATCH_MAX)
        lg->opt.max_transfers_per_job = BV_LEDGER_BATCH_MAX;
    pthread_mutex_init(&lg->mu, NULL);
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&lg->cond, &ca);
    pthread_condattr_destroy(&ca);
    if ((rc = reload_overlay(lg)) != 0) {
        bv_ledger_close(lg);
        return rc;
    }
    if (pthread_create(&lg->thread, NULL, engine_main, lg) != 0) {
        bv_ledger_close(lg);
        return BV_EINTERNAL;
    }
    lg->started = true;
    *out = lg;
    return 0;
}

void bv_ledger_close(bv_ledger_t *lg)
{
    if (lg == NULL)
        return;
    pthread_mutex_lock(&lg->mu);
    lg->stopping = true;
    pthread_cond_broadcast(&lg->cond);
    pthread_mutex_unlock(&lg->mu);
    if (lg->started)
        pthread_join(lg->thread, NULL);
    /* the store's syncer still calls back for the last jobs: wait for those calls */
    pthread_mutex_lock(&lg->mu);
    while (lg->in_flight > 0)
        pthread_cond_wait(&lg->cond, &lg->mu);
    pthread_mutex_unlock(&lg->mu);
    clear_overlay(lg);
    free(lg->undo);
    free(lg->dirty);
    bv_buf_free(&lg->scratch);
    pthread_cond_destroy(&lg->cond);
    pthread_mutex_destroy(&lg->mu);
    free(lg);
}

int bv_ledger_account_create(bv_ledger_t *lg, const bv_ledger_ctx_t *ctx, const bv_ledger_account_req_t *req,
                             bv_ledger_account_t *out, bool *replayed_out)
{
    op_t op = {.kind = OP_ACCOUNT, .ctx = ctx, .acct_req = req, .acct_out = out};
    int rc = submit(lg, &op);
    if (replayed_out != NULL)
        *replayed_out = op.replayed;
    return rc;
}

int bv_ledger_account_set_status(bv_ledger_t *lg, const bv_ledger_ctx_t *ctx, const char *id, const char *status,
                                 bv_ledger_account_t *out)
{
    op_t op = {.kind = OP_STATUS, .ctx = ctx, .id = id, .status = status, .acct_out = out};
    return submit(lg, &op);
}

int bv_ledger_batch(bv_ledger_t *lg, const bv_ledger_ctx_t *ctx, const bv_ledger_transfer_req_t *reqs, size_t n,
                    bool linked, bv_ledger_result_t *results)
{
    if (n == 0 || n > BV_LEDGER_BATCH_MAX)
        return BV_EINVALID;
    op_t op = {.kind = OP_BATCH, .ctx = ctx, .reqs = reqs, .n = n, .linked = linked, .results = results};
    return submit(lg, &op);
}

int bv_ledger_transfer(bv_ledger_t *lg, const bv_ledger_ctx_t *ctx, const bv_ledger_transfer_req_t *req,
                       bv_ledger_result_t *result)
{
    int rc = bv_ledger_batch(lg, ctx, req, 1, false, result);
    return rc != 0 ? rc : result->rc;
}

int bv_ledger_transfer_async(bv_ledger_t *lg, const bv_ledger_ctx_t *ctx, const bv_ledger_transfer_req_t *req,
                             bv_ledger_result_t *result, void (*done)(int rc, void *arg), void *arg)
{
    op_t *op = calloc(1, sizeof(*op));
    if (op == NULL)
        return BV_ENOMEM;
    *op = (op_t){.kind = OP_BATCH, .ctx = ctx, .reqs = req, .n = 1, .results = result, .async_done = done,
                 .async_arg = arg};
    int rc = enqueue(lg, op);
    if (rc != 0)
        free(op);
    return rc;
}

int bv_ledger_post(bv_ledger_t *lg, const bv_ledger_ctx_t *ctx, const char *transfer_id, int64_t amount,
                   const char *idem_key, bv_ledger_transfer_t *out)
{
    if (amount < 0)
        return BV_EAMOUNT;
    op_t op = {.kind = OP_POST, .ctx = ctx, .id = transfer_id, .amount = amount, .idem_key = idem_key, .xfer_out = out};
    return submit(lg, &op);
}

int bv_ledger_void(bv_ledger_t *lg, const bv_ledger_ctx_t *ctx, const char *transfer_id, const char *idem_key,
                   bv_ledger_transfer_t *out)
{
    op_t op = {.kind = OP_VOID, .ctx = ctx, .id = transfer_id, .idem_key = idem_key, .xfer_out = out};
    return submit(lg, &op);
}

int bv_ledger_reverse(bv_ledger_t *lg, const bv_ledger_ctx_t *ctx, const char *transfer_id, const char *idem_key,
                      const char *description, bv_ledger_transfer_t *out, bool *replayed_out)
{
    op_t op = {.kind = OP_REVERSE, .ctx = ctx, .id = transfer_id, .idem_key = idem_key, .description = description,
               .xfer_out = out};
    int rc = submit(lg, &op);
    if (replayed_out != NULL)
        *replayed_out = op.replayed;
    return rc;
}

int bv_ledger_expire_due(bv_ledger_t *lg, int *n_out)
{
    op_t op = {.kind = OP_EXPIRE, .ctx = &system_ctx};
    int rc = submit(lg, &op);
    if (n_out != NULL)
        *n_out = op.n_expired;
    return rc;
}
