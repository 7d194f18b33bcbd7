/* The transfer worker's state machine over a real store with a scripted core and a fake
 * clock: reconciliation before every send, at most one execute in flight, retries with the
 * deadline rule, failing only once the core surely never executed, definitive rejections,
 * final states published with their notices in the same job, deterministic notification
 * ids, replays of final states, and the expiry of pending transfers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "base/errors.h"
#include "store/store.h"
#include "transfers/internal.h"

#define T0       1700000000000000LL
#define SENDER   "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"
#define RECEIVER "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5c"
#define CORE_ID  "0190a1b2-c3d4-7e5f-8a9b-00000000c0de"

/* ---- the scripted outside world ---- */
static int64_t fake_now;
static int64_t clock_fn(void)
{
    return fake_now;
}

static struct {
    int lookup_rc[8], execute_rc[8]; /* scripted results, consumed in order (then the last) */
    int n_lookup_script, n_execute_script;
    int lookups, executes;
    char last_reference[64];
} core;

static int script(const int *rcs, int n, int i)
{
    return n == 0 ? 0 : rcs[i < n ? i : n - 1];
}

static int fake_lookup(const char *reference, bv_ledger_transfer_t *out)
{
    int rc = script(core.lookup_rc, core.n_lookup_script, core.lookups++);
    memset(out, 0, sizeof(*out));
    if (rc == 0) {
        snprintf(out->id, sizeof(out->id), "%s", CORE_ID);
        snprintf(out->reference, sizeof(out->reference), "%s", reference);
    }
    return rc;
}

static int fake_execute(const bv_core_transfer_req_t *req, bv_ledger_transfer_t *out, bool *replayed_out)
{
    int rc = script(core.execute_rc, core.n_execute_script, core.executes++);
    snprintf(core.last_reference, sizeof(core.last_reference), "%s", req->reference);
    memset(out, 0, sizeof(*out));
    if (rc == 0)
        snprintf(out->id, sizeof(out->id), "%s", CORE_ID);
    if (replayed_out != NULL)
        *replayed_out = false;
    return rc;
}

/* The core's batch call: the execute script per request, in order, and how it was called. */
static int batch_calls;
static size_t batch_sizes[4];
static int fake_execute_batch(const bv_core_transfer_req_t *reqs, size_t n, bv_ledger_result_t *results)
{
    batch_sizes[batch_calls < 4 ? batch_calls : 3] = n;
    batch_calls++;
    for (size_t i = 0; i < n; i++) {
        memset(&results[i], 0, sizeof(results[i]));
        results[i].rc = fake_execute(&reqs[i], &results[i].transfer, &results[i].replayed);
    }
    return 0;
}

static int fake_profile(const char *user_id, bv_customer_profile_t *out)
{
    memset(out, 0, sizeof(*out));
    snprintf(out->id, sizeof(out->id), "%s", user_id);
    snprintf(out->username, sizeof(out->username), "%s", strcmp(user_id, SENDER) == 0 ? "ana" : "bob");
    snprintf(out->email, sizeof(out->email), "%s@example.com", out->username);
    snprintf(out->phone, sizeof(out->phone), "%s",
             strcmp(user_id, SENDER) == 0 ? "+34600111222" : "+34600333444");
    snprintf(out->locale, sizeof(out->locale), "es");
    out->channels = 0x3u;
    return 0;
}

/* ---- fixture ---- */
typedef struct {
    char dir[64];
    bv_store_t *st;
    tr_service_t s;
} fx_t;

static int setup(void **state)
{
    fx_t *f = calloc(1, sizeof(*f));
    char db[128];
    snprintf(f->dir, sizeof(f->dir), "/tmp/bv-transfers-test-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(db, sizeof(db), "%s/boveda.db", f->dir);
    bv_store_options_t opt = {.path = db, .batch_max = 64, .busy_timeout_ms = 5000};
    assert_int_equal(bv_store_open(&opt, &f->st), 0);
    assert_int_equal(bv_store_migrate(f->st, NULL), 0);
    f->s = (tr_service_t){.store = f->st,
                          .max_retries = 2,
                          .backoff_ms = 100,
                          .core_timeout_ms = 5000,
                          .max_amount_e4 = 10000LL * 10000,
                          .daily_limit_e4 = 20000LL * 10000,
                          .lookup = fake_lookup,
                          .execute = fake_execute,
                          .profile = fake_profile,
                          .now_us = clock_fn};
    memset(&core, 0, sizeof(core));
    fake_now = T0;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx_t *f = *state;
    char cmd[128];
    bv_store_close(f->st);
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
    if (system(cmd) != 0)
        fprintf(stderr, "cannot remove %s\n", f->dir);
    free(f);
    return 0;
}

static int tx_insert(bv_tx_t *tx, void *arg)
{
    return tr_insert_tx(tx, arg);
}

/* A confirmed transfer of 125.50 EUR from the sender to the receiver's account. */
static void insert(fx_t *f, const char *status, tr_transfer_t *t)
{
    memset(t, 0, sizeof(*t));
    bv_uuid7(t->id);
    snprintf(t->user_id, sizeof(t->user_id), "%s", SENDER);
    snprintf(t->idem_key, sizeof(t->idem_key), "key-%s", t->id);
    memset(t->request_hash, 'a', 64);
    snprintf(t->from_account, sizeof(t->from_account), "0190a1b2-0000-7000-8000-0000000000a1");
    snprintf(t->from_number, sizeof(t->from_number), "1000000000000101");
    snprintf(t->to_account, sizeof(t->to_account), "0190a1b2-0000-7000-8000-0000000000b1");
    snprintf(t->to_number, sizeof(t->to_number), "2000000000000202");
    snprintf(t->to_customer, sizeof(t->to_customer), "%s", RECEIVER);
    t->amount = 12550;
    snprintf(t->currency, sizeof(t->currency), "EUR");
    snprintf(t->status, sizeof(t->status), "%s", status);
    if (strcmp(status, TR_QUEUED) == 0)
        snprintf(t->stage, sizeof(t->stage), "queued");
    snprintf(t->notification_status, sizeof(t->notification_status), "none");
    t->confirm_by = fake_now + TR_CONFIRM_TTL_US;
    t->created_at = t->updated_at = fake_now;
    assert_int_equal(bv_store_write(f->st, tx_insert, t), 0);
}

static tr_transfer_t reload(fx_t *f, const char *id)
{
    tr_transfer_t t;
    assert_int_equal(tr_load(f->st, id, &t), 0);
    return t;
}

typedef struct {
    const char *sql, *arg;
    int64_t n;
} count_arg_t;

static int tx_count(bv_tx_t *tx, void *arg)
{
    count_arg_t *a = arg;
    bv_stmt_t *s = bv_tx_prepare(tx, a->sql);
    if (s == NULL)
        return BV_EIO;
    bv_stmt_bind_text(s, 1, a->arg, -1);
    int rc = bv_stmt_step(s);
    a->n = rc == BV_ROW ? bv_stmt_int64(s, 0) : -1;
    bv_stmt_reset(s);
    return 0;
}

static int64_t count(fx_t *f, const char *sql, const char *arg)
{
    count_arg_t a = {sql, arg, 0};
    assert_int_equal(bv_store_read(f->st, tx_count, &a), 0);
    return a.n;
}

static int64_t audits(fx_t *f, const tr_transfer_t *t, const char *action)
{
    char sql[256];
    snprintf(sql, sizeof(sql),
             "SELECT count(*) FROM audit_log WHERE resource = 'customer_transfer:' || ?1 AND action = '%s'",
             action);
    count_arg_t a = {sql, t->id, 0};
    /* sql is not a literal: the statement cache keys by content, fine for a test */
    assert_int_equal(bv_store_read(f->st, tx_count, &a), 0);
    return a.n;
}

static int64_t notices(fx_t *f, const tr_transfer_t *t, const char *party)
{
    char nid[BV_UUID_STR_LEN + 1];
    tr_notification_id(t->id, party, nid);
    return count(f, "SELECT count(*) FROM notifications WHERE id = ?1", nid);
}

/* ---- tests ---- */

static void test_notification_ids(void **state)
{
    (void)state;
    char a[BV_UUID_STR_LEN + 1], b[BV_UUID_STR_LEN + 1], c[BV_UUID_STR_LEN + 1];
    const char *id = "01a20300-5aec-7059-bc5a-43a6224778b6";
    tr_notification_id(id, "sender", a);
    tr_notification_id(id, "sender", b);
    tr_notification_id(id, "receiver", c);
    assert_string_equal(a, b);
    assert_string_not_equal(a, c);
    assert_true(bv_uuid_valid(a));
    assert_int_equal(a[14], '7');
    assert_true(strchr("89ab", a[19]) != NULL);
    assert_memory_equal(a, "01a20300-5aec", 13); /* the transfer's timestamp */
}

static void test_happy_path(void **state)
{
    fx_t *f = *state;
    tr_transfer_t t, r;
    int64_t retry = -1;
    insert(f, TR_QUEUED, &t);
    core.lookup_rc[0] = BV_ENOTFOUND, core.n_lookup_script = 1;
    assert_int_equal(tr_process(&f->s, t.id, NULL, &retry), BV_QUEUE_ACK);
    assert_int_equal(core.lookups, 1);
    assert_int_equal(core.executes, 1);
    assert_string_equal(core.last_reference, t.id); /* the reference is the transfer id */
    r = reload(f, t.id);
    assert_string_equal(r.status, TR_SUCCESS);
    assert_string_equal(r.stage, "success");
    assert_string_equal(r.core_transfer_id, CORE_ID);
    assert_string_equal(r.notification_status, "notify");
    assert_int_equal(r.sends, 1);
    assert_int_equal(r.attempts, 0);
    assert_true(r.last_deadline >= T0 + 5000 * 1000LL);
    assert_int_equal(notices(f, &t, "sender"), 1);
    assert_int_equal(notices(f, &t, "receiver"), 1);
    assert_int_equal(audits(f, &t, "transfers.transfer.send"), 1);
    assert_int_equal(audits(f, &t, "transfers.transfer.execute"), 1);

    /* a redelivery of a final transfer: nothing asked, nothing sent, nothing notified again */
    assert_int_equal(tr_process(&f->s, t.id, NULL, &retry), BV_QUEUE_ACK);
    assert_int_equal(core.lookups, 1);
    assert_int_equal(core.executes, 1);
    assert_int_equal(audits(f, &t, "transfers.transfer.execute"), 1);
    assert_int_equal(count(f, "SELECT count(*) FROM notifications WHERE customer_id = ?1", RECEIVER), 1);
}

static void test_reconciled_without_sending(void **state)
{
    fx_t *f = *state;
    tr_transfer_t t, r;
    int64_t retry = -1;
    insert(f, TR_PROCESSING, &t); /* e.g. the worker died after the core executed it */
    assert_int_equal(tr_process(&f->s, t.id, NULL, &retry), BV_QUEUE_ACK);
    assert_int_equal(core.lookups, 1);
    assert_int_equal(core.executes, 0);
    r = reload(f, t.id);
    assert_string_equal(r.status, TR_SUCCESS);
    assert_int_equal(r.sends, 0);
}

static void test_timeout_then_success(void **state)
{
    fx_t *f = *state;
    tr_transfer_t t, r;
    int64_t retry = -1;
    insert(f, TR_QUEUED, &t);
    core.lookup_rc[0] = BV_ENOTFOUND, core.n_lookup_script = 1;
    core.execute_rc[0] = BV_ETIMEOUT, core.execute_rc[1] = 0, core.n_execute_script = 2;
    assert_int_equal(tr_process(&f->s, t.id, NULL, &retry), BV_QUEUE_RETRY);
    r = reload(f, t.id);
    assert_string_equal(r.status, TR_PROCESSING);
    assert_string_equal(r.stage, "waiting");
    assert_int_equal(r.attempts, 1);
    assert_string_equal(r.last_error, "upstream-timeout");
    /* not before the execute's deadline could have passed */
    assert_true(retry * 1000 >= r.last_deadline + TR_CLOCK_SKEW_US - fake_now);
    assert_int_equal(audits(f, &t, "transfers.transfer.retry"), 1);

    /* an early redelivery (another consumer) never sends while the first may be in flight */
    fake_now += 1000000;
    retry = -1;
    assert_int_equal(tr_process(&f->s, t.id, NULL, &retry), BV_QUEUE_RETRY);
    assert_int_equal(core.executes, 1);
    assert_true(retry > 0);
    r = reload(f, t.id);
    assert_string_equal(r.stage, "event_consumed");

    /* after the deadline: not in the core, so it is sent again, and succeeds */
    fake_now = r.last_deadline + TR_CLOCK_SKEW_US + 1;
    assert_int_equal(tr_process(&f->s, t.id, NULL, &retry), BV_QUEUE_ACK);
    assert_int_equal(core.executes, 2);
    r = reload(f, t.id);
    assert_string_equal(r.status, TR_SUCCESS);
    assert_int_equal(r.sends, 2);
}

static void test_fails_only_after_the_last_deadline(void **state)
{
    fx_t *f = *state;
    tr_transfer_t t, r;
    int64_t retry = -1;
    insert(f, TR_QUEUED, &t);
    core.lookup_rc[0] = BV_ENOTFOUND, core.n_lookup_script = 1;
    core.execute_rc[0] = BV_EUPSTREAM, core.n_execute_script = 1;
    /* max_retries = 2: three failed sends spend them */
    for (int i = 0; i < 3; i++) {
        r = reload(f, t.id);
        fake_now = (r.last_deadline > fake_now ? r.last_deadline : fake_now) + TR_CLOCK_SKEW_US + 1;
        assert_int_equal(tr_process(&f->s, t.id, NULL, &retry), BV_QUEUE_RETRY);
    }
    assert_int_equal(core.executes, 3);
    r = reload(f, t.id);
    assert_int_equal(r.attempts, 3);
    assert_string_equal(r.status, TR_PROCESSING);

    /* before the last deadline: a "not found" proves nothing yet */
    fake_now = r.last_deadline - 1000;
    assert_int_equal(tr_process(&f->s, t.id, NULL, &retry), BV_QUEUE_RETRY);
    assert_string_equal(reload(f, t.id).status, TR_PROCESSING);
    assert_int_equal(core.executes, 3);

    /* after it: never executed, so it fails, with the last error, and the sender is told */
    fake_now = r.last_deadline + TR_CLOCK_SKEW_US + 1;
    assert_int_equal(tr_process(&f->s, t.id, NULL, &retry), BV_QUEUE_ACK);
    assert_int_equal(core.executes, 3);
    r = reload(f, t.id);
    assert_string_equal(r.status, TR_FAILED);
    assert_string_equal(r.stage, "fail");
    assert_string_equal(r.failure_type, "upstream-failure");
    assert_string_equal(r.notification_status, "notify");
    assert_int_equal(notices(f, &t, "sender"), 1);
    assert_int_equal(notices(f, &t, "receiver"), 0);
    assert_int_equal(audits(f, &t, "transfers.transfer.fail"), 1);
}

static void test_spent_retries_but_found(void **state)
{
    fx_t *f = *state;
    tr_transfer_t t, r;
    int64_t retry = -1;
    insert(f, TR_QUEUED, &t);
    /* three sends time out, yet the last one was executed by the core */
    core.lookup_rc[0] = BV_ENOTFOUND, core.lookup_rc[1] = BV_ENOTFOUND, core.lookup_rc[2] = BV_ENOTFOUND;
    core.lookup_rc[3] = 0, core.n_lookup_script = 4;
    core.execute_rc[0] = BV_ETIMEOUT, core.n_execute_script = 1;
    for (int i = 0; i < 3; i++) {
        r = reload(f, t.id);
        fake_now = (r.last_deadline > fake_now ? r.last_deadline : fake_now) + TR_CLOCK_SKEW_US + 1;
        assert_int_equal(tr_process(&f->s, t.id, NULL, &retry), BV_QUEUE_RETRY);
    }
    fake_now += 60 * 1000000LL;
    assert_int_equal(tr_process(&f->s, t.id, NULL, &retry), BV_QUEUE_ACK);
    r = reload(f, t.id);
    assert_string_equal(r.status, TR_SUCCESS);
    assert_string_equal(r.core_transfer_id, CORE_ID);
}

static void test_lookup_failure_never_sends(void **state)
{
    fx_t *f = *state;
    tr_transfer_t t, r;
    int64_t retry = -1;
    insert(f, TR_QUEUED, &t);
    core.lookup_rc[0] = BV_EUNAVAILABLE, core.lookup_rc[1] = BV_EUNAVAILABLE,
    core.lookup_rc[2] = BV_EUNAVAILABLE;
    core.lookup_rc[3] = BV_ENOTFOUND, core.n_lookup_script = 4;
    for (int i = 0; i < 3; i++)
        assert_int_equal(tr_process(&f->s, t.id, NULL, &retry), BV_QUEUE_RETRY);
    assert_int_equal(core.executes, 0);
    r = reload(f, t.id);
    assert_int_equal(r.attempts, 3);
    assert_string_equal(r.stage, "event_consumed");
    /* retries spent and nothing ever sent: surely not executed */
    assert_int_equal(tr_process(&f->s, t.id, NULL, &retry), BV_QUEUE_ACK);
    r = reload(f, t.id);
    assert_string_equal(r.status, TR_FAILED);
    assert_string_equal(r.failure_type, "unavailable");
    assert_int_equal(core.executes, 0);
}

static void test_definitive_rejection(void **state)
{
    fx_t *f = *state;
    tr_transfer_t t, r;
    int64_t retry = -1;
    insert(f, TR_QUEUED, &t);
    core.lookup_rc[0] = BV_ENOTFOUND, core.n_lookup_script = 1;
    core.execute_rc[0] = BV_EINSUFFICIENT_FUNDS, core.n_execute_script = 1;
    assert_int_equal(tr_process(&f->s, t.id, NULL, &retry), BV_QUEUE_ACK);
    r = reload(f, t.id);
    assert_string_equal(r.status, TR_FAILED);
    assert_string_equal(r.failure_type, "insufficient-funds");
    assert_string_equal(r.failure_title, "Insufficient funds");
    assert_int_equal(r.attempts, 0);
    assert_int_equal(notices(f, &t, "sender"), 1);
    assert_int_equal(notices(f, &t, "receiver"), 0);
}

static void test_unconfirmed_and_unknown(void **state)
{
    fx_t *f = *state;
    tr_transfer_t t;
    int64_t retry = -1;
    insert(f, TR_PENDING, &t);
    assert_int_equal(tr_process(&f->s, t.id, NULL, &retry), BV_QUEUE_ACK);
    assert_int_equal(tr_process(&f->s, "0190a1b2-0000-7000-8000-00000000dead", NULL, &retry), BV_QUEUE_ACK);
    assert_int_equal(core.lookups + core.executes, 0);
    assert_string_equal(reload(f, t.id).status, TR_PENDING);
}

static unsigned fake_delivered_channels;
static char fake_known[2][BV_UUID_STR_LEN + 1];

static int fake_delivered(bv_tx_t *tx, const char *id, unsigned *channels_out)
{
    (void)tx;
    *channels_out = 0;
    if (strcmp(id, fake_known[0]) != 0 && strcmp(id, fake_known[1]) != 0)
        return BV_ENOTFOUND;
    *channels_out = strcmp(id, fake_known[0]) == 0 ? fake_delivered_channels : fake_delivered_channels >> 4;
    return 0;
}

static void test_notified(void **state)
{
    fx_t *f = *state;
    tr_transfer_t t;
    int64_t retry = -1;
    int n = -1;
    insert(f, TR_QUEUED, &t);
    assert_int_equal(tr_process(&f->s, t.id, NULL, &retry), BV_QUEUE_ACK);
    assert_string_equal(reload(f, t.id).notification_status, "notify");
    /* without the notify hook nothing is promoted */
    assert_int_equal(tr_promote_notified(&f->s, &n), 0);
    assert_int_equal(n, 0);
    f->s.delivered = fake_delivered;
    tr_notification_id(t.id, "sender", fake_known[0]);
    tr_notification_id(t.id, "receiver", fake_known[1]);
    fake_delivered_channels = 0x2u; /* the sender's SMS went out, nothing to the receiver yet */
    assert_int_equal(tr_promote_notified(&f->s, &n), 0);
    assert_int_equal(n, 0);
    assert_string_equal(reload(f, t.id).notification_status, "notify");
    fake_delivered_channels = 0x12u; /* and the receiver's e-mail */
    assert_int_equal(tr_promote_notified(&f->s, &n), 0);
    assert_int_equal(n, 1);
    assert_string_equal(reload(f, t.id).notification_status, "notified");
    assert_int_equal(tr_promote_notified(&f->s, &n), 0);
    assert_int_equal(n, 0);
}

static void test_expiry(void **state)
{
    fx_t *f = *state;
    tr_transfer_t t, q;
    int n = -1;
    insert(f, TR_PENDING, &t);
    insert(f, TR_QUEUED, &q);
    assert_int_equal(tr_expire_due(f->st, NULL, t.confirm_by - 1, &n), 0);
    assert_int_equal(n, 0);
    assert_int_equal(tr_expire_due(f->st, NULL, t.confirm_by, &n), 0);
    assert_int_equal(n, 1);
    assert_string_equal(reload(f, t.id).status, TR_EXPIRED);
    assert_string_equal(reload(f, q.id).status, TR_QUEUED); /* confirmed ones never expire */
    assert_int_equal(audits(f, &t, "transfers.transfer.expire"), 1);
    assert_int_equal(tr_expire_due(f->st, NULL, t.confirm_by + 1, &n), 0);
    assert_int_equal(n, 0);
}

/* Five deliveries in one batch, each to its own end: already in the core, executed,
 * rejected, timed out (retried after its deadline), never confirmed. One stage job for all,
 * one core call for the three executes, one final job. */
static void test_batch(void **state)
{
    fx_t *f = *state;
    tr_transfer_t t[5];
    insert(f, TR_QUEUED, &t[0]);
    insert(f, TR_QUEUED, &t[1]);
    insert(f, TR_QUEUED, &t[2]);
    insert(f, TR_QUEUED, &t[3]);
    insert(f, TR_PENDING, &t[4]);
    f->s.execute_batch = fake_execute_batch;
    batch_calls = 0;
    core.lookup_rc[0] = 0, core.lookup_rc[1] = BV_ENOTFOUND, core.n_lookup_script = 2;
    core.execute_rc[0] = 0, core.execute_rc[1] = BV_EINSUFFICIENT_FUNDS, core.execute_rc[2] = BV_ETIMEOUT;
    core.n_execute_script = 3;
    const char *ids[5] = {t[0].id, t[1].id, t[2].id, t[3].id, t[4].id};
    bv_queue_result_t res[5];
    int64_t retry[5] = {-1, -1, -1, -1, -1};
    tr_process_batch(&f->s, ids, NULL, 5, res, retry);

    assert_int_equal(core.lookups, 4); /* the pending one is never looked up */
    assert_int_equal(batch_calls, 1);
    assert_int_equal(batch_sizes[0], 3);
    assert_int_equal(res[0], BV_QUEUE_ACK);
    assert_string_equal(reload(f, t[0].id).status, TR_SUCCESS);
    assert_int_equal(reload(f, t[0].id).sends, 0); /* reconciled: never sent */
    assert_int_equal(res[1], BV_QUEUE_ACK);
    assert_string_equal(reload(f, t[1].id).status, TR_SUCCESS);
    assert_int_equal(reload(f, t[1].id).sends, 1);
    assert_int_equal(res[2], BV_QUEUE_ACK);
    tr_transfer_t c = reload(f, t[2].id);
    assert_string_equal(c.status, TR_FAILED);
    assert_string_equal(c.failure_type, "insufficient-funds");
    assert_int_equal(res[3], BV_QUEUE_RETRY);
    tr_transfer_t d = reload(f, t[3].id);
    assert_string_equal(d.status, TR_PROCESSING);
    assert_string_equal(d.stage, "waiting");
    assert_int_equal(d.attempts, 1);
    assert_int_equal(d.sends, 1);
    /* not before the deadline of the execute that may still reach the core */
    assert_true(retry[3] * 1000 >= d.last_deadline - fake_now);
    assert_int_equal(res[4], BV_QUEUE_ACK);
    assert_string_equal(reload(f, t[4].id).status, TR_PENDING);
    /* notices in the final job: both parties of the successes, the sender of the failure */
    assert_int_equal(notices(f, &t[0], "sender") + notices(f, &t[0], "receiver"), 2);
    assert_int_equal(notices(f, &t[1], "sender") + notices(f, &t[1], "receiver"), 2);
    assert_int_equal(notices(f, &t[2], "sender"), 1);
    assert_int_equal(notices(f, &t[2], "receiver"), 0);
    assert_int_equal(notices(f, &t[3], "sender"), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_notification_ids),
        cmocka_unit_test_setup_teardown(test_happy_path, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reconciled_without_sending, setup, teardown),
        cmocka_unit_test_setup_teardown(test_timeout_then_success, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fails_only_after_the_last_deadline, setup, teardown),
        cmocka_unit_test_setup_teardown(test_spent_retries_but_found, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lookup_failure_never_sends, setup, teardown),
        cmocka_unit_test_setup_teardown(test_definitive_rejection, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unconfirmed_and_unknown, setup, teardown),
        cmocka_unit_test_setup_teardown(test_notified, setup, teardown),
        cmocka_unit_test_setup_teardown(test_expiry, setup, teardown),
        cmocka_unit_test_setup_teardown(test_batch, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
