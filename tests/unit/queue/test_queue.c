/* Queues and topics on a real store: send/receive/delete, visibility timeout, DLQ and
 * redrive, FIFO groups and deduplication, retention, long poll wake-up, filter policies
 * (every operator), topic fan-out, the outbox drain, backoff bounds, consumers. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "queue/internal.h"
#include "queue/queue.h"

typedef struct {
    char dir[256];
    char db[300];
    bv_store_t *st;
} fx_t;

static int setup(void **state)
{
    fx_t *f = calloc(1, sizeof(*f));
    snprintf(f->dir, sizeof(f->dir), "/tmp/bv-queue-test-XXXXXX");
    if (mkdtemp(f->dir) == NULL)
        return -1;
    snprintf(f->db, sizeof(f->db), "%s/boveda.db", f->dir);
    bv_store_options_t opt = {.path = f->db, .batch_max = 64, .busy_timeout_ms = 5000};
    if (bv_store_open(&opt, &f->st) != 0 || bv_store_migrate(f->st, NULL) != 0)
        return -1;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx_t *f = *state;
    char cmd[512];
    bv_store_close(f->st);
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
    if (system(cmd) != 0)
        fprintf(stderr, "cannot remove %s\n", f->dir);
    free(f);
    return 0;
}

static void sql(fx_t *f, const char *q)
{
    sqlite3 *db = NULL;
    char *err = NULL;
    assert_int_equal(sqlite3_open(f->db, &db), SQLITE_OK);
    sqlite3_busy_timeout(db, 5000);
    int rc = sqlite3_exec(db, q, NULL, NULL, &err);
    if (rc != SQLITE_OK)
        fprintf(stderr, "sql failed: %s\n", err ? err : "?");
    sqlite3_free(err);
    sqlite3_close(db);
    assert_int_equal(rc, SQLITE_OK);
}

static int64_t count_rows(fx_t *f, const char *q)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *s = NULL;
    int64_t n = -1;
    assert_int_equal(sqlite3_open(f->db, &db), SQLITE_OK);
    if (sqlite3_prepare_v2(db, q, -1, &s, NULL) == SQLITE_OK && sqlite3_step(s) == SQLITE_ROW)
        n = sqlite3_column_int64(s, 0);
    sqlite3_finalize(s);
    sqlite3_close(db);
    return n;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

typedef struct {
    const char *queue;
    const char *body;
    const char *group;
    const char *dedup;
    json_t *attrs;
    int64_t delay_ms;
    char id[BV_UUID_STR_LEN + 1];
    int fail_after; /* roll the job back after sending */
} send_job_t;

static int send_job(bv_tx_t *tx, void *arg)
{
    send_job_t *s = arg;
    bv_queue_send_t m = {.body = s->body,
                         .body_len = strlen(s->body),
                         .attributes = s->attrs,
                         .delay_ms = s->delay_ms,
                         .group_id = s->group,
                         .dedup_id = s->dedup};
    int rc = bv_queue_send(tx, s->queue, &m, s->id);
    if (rc < 0)
        return rc;
    return s->fail_after ? s->fail_after : rc;
}

static int send(fx_t *f, const char *queue, const char *body)
{
    send_job_t s = {.queue = queue, .body = body, .delay_ms = -1};
    return bv_store_write(f->st, send_job, &s);
}

static int send_group(fx_t *f, const char *queue, const char *body, const char *group, const char *dedup)
{
    send_job_t s = {.queue = queue, .body = body, .group = group, .dedup = dedup, .delay_ms = -1};
    return bv_store_write(f->st, send_job, &s);
}

static void ensure(fx_t *f, const char *name, int fifo, int64_t vis_ms, int max_receives, const char *dlq)
{
    bv_queue_options_t o = {.name = name,
                            .fifo = fifo,
                            .visibility_timeout_ms = vis_ms,
                            .max_receives = max_receives,
                            .dlq = dlq};
    assert_int_equal(bv_queue_ensure(f->st, &o), 0);
}

static int receive(fx_t *f, const char *queue, int max, int wait_ms, int64_t vis_ms, bv_queue_msg_t *msgs)
{
    int n = -1;
    bv_queue_receive_opts_t o = {.max = max, .wait_ms = wait_ms, .visibility_ms = vis_ms};
    assert_int_equal(bv_queue_receive(f->st, queue, &o, msgs, &n), 0);
    return n;
}

static bv_queue_info_t info(fx_t *f, const char *name)
{
    bv_queue_info_t *qs = NULL, out;
    size_t n = 0;
    memset(&out, 0, sizeof(out));
    assert_int_equal(bv_queue_list(f->st, &qs, &n), 0);
    for (size_t i = 0; i < n; i++)
        if (strcmp(qs[i].name, name) == 0)
            out = qs[i];
    free(qs);
    assert_string_equal(out.name, name);
    return out;
}

/* ---- names, receipts, backoff ---- */

static void test_names(void **state)
{
    (void)state;
    char long_name[90];
    assert_true(bv_queue_name_valid("email"));
    assert_true(bv_queue_name_valid("a.b_c-9"));
    assert_false(bv_queue_name_valid(""));
    assert_false(bv_queue_name_valid("Email"));
    assert_false(bv_queue_name_valid("a b"));
    assert_false(bv_queue_name_valid("a/b"));
    assert_false(bv_queue_name_valid(NULL));
    memset(long_name, 'a', 80);
    long_name[80] = '\0';
    assert_true(bv_queue_name_valid(long_name));
    long_name[80] = 'a';
    long_name[81] = '\0';
    assert_false(bv_queue_name_valid(long_name));
}

static void test_receipts(void **state)
{
    (void)state;
    char r[BV_QUEUE_RECEIPT_MAX];
    int64_t seq = 0;
    int fifo = -1;
    queue_receipt_make(12345, 1, r);
    assert_int_equal(queue_receipt_parse(r, &seq, &fifo), 0);
    assert_int_equal(seq, 12345);
    assert_int_equal(fifo, 1);
    queue_receipt_make(7, 0, r);
    assert_int_equal(queue_receipt_parse(r, &seq, &fifo), 0);
    assert_int_equal(fifo, 0);
    assert_int_equal(queue_receipt_parse("s7.zz", &seq, &fifo), BV_EINVALID);
    assert_int_equal(queue_receipt_parse("x7.0123456789abcdef", &seq, &fifo), BV_EINVALID);
    assert_int_equal(queue_receipt_parse("s.0123456789abcdef", &seq, &fifo), BV_EINVALID);
    assert_int_equal(queue_receipt_parse("s7.0123456789abcdef0", &seq, &fifo), BV_EINVALID);
}

static void test_backoff_full_jitter_bounds(void **state)
{
    (void)state;
    for (int attempt = 1; attempt <= 12; attempt++) {
        int64_t cap = 100;
        for (int i = 1; i < attempt; i++)
            cap = cap * 2 > 5000 ? 5000 : cap * 2;
        int64_t lo = INT64_MAX, hi = -1;
        for (int k = 0; k < 2000; k++) {
            int64_t d = bv_queue_backoff_ms(attempt, 100, 5000);
            assert_true(d >= 0 && d <= cap);
            lo = d < lo ? d : lo;
            hi = d > hi ? d : hi;
        }
        /* full jitter spreads over the whole range, down to near zero and up to near the cap */
        assert_true(lo <= cap / 10);
        assert_true(hi >= cap - cap / 10);
    }
    /* defaults: 1 s base, 300 s cap */
    for (int k = 0; k < 100; k++)
        assert_true(bv_queue_backoff_ms(30, 0, 0) <= 300000);
}

/* ---- basic semantics ---- */

static void test_send_receive_delete(void **state)
{
    fx_t *f = *state;
    bv_queue_msg_t m[10];
    ensure(f, "work", 0, 30000, 0, NULL);
    assert_int_equal(send(f, "work", "one"), 0);
    assert_int_equal(send(f, "work", "two"), 0);
    assert_int_equal(send(f, "nope", "x"), BV_ENOTFOUND);
    assert_int_equal(receive(f, "work", 10, 0, 0, m), 2);
    assert_string_equal(m[0].body, "one");
    assert_string_equal(m[1].body, "two");
    assert_int_equal(m[0].receive_count, 1);
    assert_non_null(m[0].attributes);
    assert_null(m[0].group_id);
    /* in flight: not received again, counted as such */
    assert_int_equal(receive(f, "work", 8, 0, 0, &m[2]), 0);
    bv_queue_info_t qi = info(f, "work");
    assert_int_equal(qi.depth, 0);
    assert_int_equal(qi.in_flight, 2);
    assert_int_equal(bv_queue_delete(f->st, "work", m[0].receipt), 0);
    assert_int_equal(bv_queue_delete(f->st, "work", m[0].receipt), BV_ENOTFOUND);
    assert_int_equal(bv_queue_delete(f->st, "work", "garbage"), BV_EINVALID);
    const char *rs[] = {m[1].receipt};
    int nd = -1;
    assert_int_equal(bv_queue_delete_batch(f->st, "work", rs, 1, &nd), 0);
    assert_int_equal(nd, 1);
    qi = info(f, "work");
    assert_int_equal(qi.in_flight, 0);
    assert_int_equal(qi.depth, 0);
    bv_queue_msg_clear(&m[0]);
    bv_queue_msg_clear(&m[1]);
    /* a receive on a missing queue */
    int n = 0;
    bv_queue_receive_opts_t o = {.max = 1};
    assert_int_equal(bv_queue_receive(f->st, "missing", &o, m, &n), BV_ENOTFOUND);
    o.max = 11;
    assert_int_equal(bv_queue_receive(f->st, "work", &o, m, &n), BV_EINVALID);
}

static void test_send_rolls_back_with_its_job(void **state)
{
    fx_t *f = *state;
    bv_queue_msg_t m;
    ensure(f, "tx", 0, 30000, 0, NULL);
    send_job_t s = {.queue = "tx", .body = "never", .delay_ms = -1, .fail_after = BV_ECONFLICT};
    assert_int_equal(bv_store_write(f->st, send_job, &s), BV_ECONFLICT);
    assert_int_equal(receive(f, "tx", 1, 0, 0, &m), 0);
}

static void test_batch_of_ten(void **state)
{
    fx_t *f = *state;
    bv_queue_msg_t m[10];
    char body[16];
    ensure(f, "batch", 0, 30000, 0, NULL);
    for (int i = 0; i < 25; i++) {
        snprintf(body, sizeof(body), "m%02d", i);
        assert_int_equal(send(f, "batch", body), 0);
    }
    int total = 0;
    for (int round = 0; round < 3; round++) {
        int n = receive(f, "batch", 10, 0, 0, m);
        assert_int_equal(n, round < 2 ? 10 : 5);
        for (int i = 0; i < n; i++) {
            snprintf(body, sizeof(body), "m%02d", total + i);
            assert_string_equal(m[i].body, body);
            bv_queue_msg_clear(&m[i]);
        }
        total += n;
    }
    assert_int_equal(total, 25);
}

static void test_visibility_timeout_and_change(void **state)
{
    fx_t *f = *state;
    bv_queue_msg_t m, m2;
    ensure(f, "vis", 0, 30000, 0, NULL);
    assert_int_equal(send(f, "vis", "hello"), 0);
    assert_int_equal(receive(f, "vis", 1, 0, 100, &m), 1); /* 100 ms visibility */
    assert_int_equal(receive(f, "vis", 1, 0, 0, &m2), 0);
    /* redelivered after its timeout: the long poll wakes on the timer, not a send */
    assert_int_equal(receive(f, "vis", 1, 3000, 0, &m2), 1);
    assert_string_equal(m2.body, "hello");
    assert_int_equal(m2.receive_count, 2);
    assert_string_equal(m2.id, m.id);
    /* the first receipt is stale now */
    assert_int_equal(bv_queue_delete(f->st, "vis", m.receipt), BV_ENOTFOUND);
    assert_int_equal(bv_queue_change_visibility(f->st, "vis", m.receipt, 0), BV_ENOTFOUND);
    /* change visibility to 0: visible again at once */
    assert_int_equal(bv_queue_change_visibility(f->st, "vis", m2.receipt, 0), 0);
    bv_queue_msg_t m3;
    assert_int_equal(receive(f, "vis", 1, 0, 0, &m3), 1);
    assert_int_equal(m3.receive_count, 3);
    /* extend: not visible after the original 30 s would... set 1 h and check it stays hidden */
    assert_int_equal(bv_queue_change_visibility(f->st, "vis", m3.receipt, 3600 * 1000), 0);
    bv_queue_msg_t none;
    assert_int_equal(receive(f, "vis", 1, 0, 0, &none), 0);
    assert_int_equal(bv_queue_change_visibility(f->st, "vis", m3.receipt, BV_QUEUE_MAX_VISIBILITY_MS + 1),
                     BV_EINVALID);
    assert_int_equal(bv_queue_delete(f->st, "vis", m3.receipt), 0);
    bv_queue_msg_clear(&m);
    bv_queue_msg_clear(&m2);
    bv_queue_msg_clear(&m3);
}

static void test_delay(void **state)
{
    fx_t *f = *state;
    bv_queue_msg_t m;
    ensure(f, "delayed", 0, 30000, 0, NULL);
    send_job_t s = {.queue = "delayed", .body = "later", .delay_ms = 150};
    assert_int_equal(bv_store_write(f->st, send_job, &s), 0);
    assert_int_equal(receive(f, "delayed", 1, 0, 0, &m), 0);
    assert_int_equal(info(f, "delayed").delayed, 1);
    assert_int_equal(receive(f, "delayed", 1, 5000, 0, &m), 1);
    assert_string_equal(m.body, "later");
    bv_queue_msg_clear(&m);
}

static void test_dlq_and_redrive(void **state)
{
    fx_t *f = *state;
    bv_queue_msg_t m;
    ensure(f, "jobs", 0, 30000, 2, "jobs-dlq");
    assert_int_equal(send(f, "jobs", "poison"), 0);
    for (int i = 1; i <= 2; i++) {
        assert_int_equal(receive(f, "jobs", 1, 0, 0, &m), 1);
        assert_string_equal(m.body, "poison");
        assert_int_equal(m.receive_count, i);
        assert_int_equal(bv_queue_change_visibility(f->st, "jobs", m.receipt, 0), 0);
        bv_queue_msg_clear(&m);
    }
    assert_int_equal(send(f, "jobs", "fine"), 0);
    /* third receive: poison has reached max_receives and moves to the DLQ; "fine" comes */
    assert_int_equal(receive(f, "jobs", 1, 0, 0, &m), 1);
    assert_string_equal(m.body, "fine");
    assert_int_equal(bv_queue_delete(f->st, "jobs", m.receipt), 0);
    bv_queue_msg_clear(&m);
    bv_queue_info_t qi = info(f, "jobs");
    assert_int_equal(qi.dlq_depth, 1);
    assert_string_equal(qi.dlq, "jobs-dlq");
    assert_int_equal(info(f, "jobs-dlq").depth, 1);
    /* peek shows where it came from without changing it */
    json_t *items = NULL;
    assert_int_equal(bv_queue_peek(f->st, "jobs-dlq", 10, &items), 0);
    assert_int_equal(json_array_size(items), 1);
    assert_string_equal(json_string_value(json_object_get(json_array_get(items, 0), "source_queue")), "jobs");
    assert_string_equal(json_string_value(json_object_get(json_array_get(items, 0), "body")), "poison");
    json_decref(items);
    /* redrive: back to its source, receive count reset */
    int64_t moved = 0;
    assert_int_equal(bv_queue_redrive(f->st, "jobs-dlq", 0, &moved), 0);
    assert_int_equal(moved, 1);
    assert_int_equal(info(f, "jobs-dlq").depth, 0);
    assert_int_equal(receive(f, "jobs", 1, 0, 0, &m), 1);
    assert_string_equal(m.body, "poison");
    assert_int_equal(m.receive_count, 1);
    /* explicit dead-lettering (a permanent failure) */
    assert_int_equal(bv_queue_dead_letter(f->st, "jobs", m.receipt), 0);
    assert_int_equal(info(f, "jobs-dlq").depth, 1);
    bv_queue_msg_clear(&m);
    /* purge */
    int64_t purged = 0;
    assert_int_equal(bv_queue_purge(f->st, "jobs-dlq", &purged), 0);
    assert_int_equal(purged, 1);
    assert_int_equal(bv_queue_purge(f->st, "no-such", &purged), BV_ENOTFOUND);
}

static void test_fifo_groups_in_order(void **state)
{
    fx_t *f = *state;
    bv_queue_msg_t m[10];
    ensure(f, "orders.fifo", 1, 30000, 0, NULL);
    /* FIFO needs a group; standard forbids one */
    assert_int_equal(send(f, "orders.fifo", "no group"), BV_EINVALID);
    ensure(f, "plain", 0, 30000, 0, NULL);
    assert_int_equal(send_group(f, "plain", "x", "g", NULL), BV_EINVALID);
    assert_int_equal(send_group(f, "orders.fifo", "a1", "A", NULL), 0);
    assert_int_equal(send_group(f, "orders.fifo", "a2", "A", NULL), 0);
    assert_int_equal(send_group(f, "orders.fifo", "b1", "B", NULL), 0);
    assert_int_equal(send_group(f, "orders.fifo", "a3", "A", NULL), 0);
    assert_int_equal(send_group(f, "orders.fifo", "b2", "B", NULL), 0);
    /* one in flight per group: the heads of A and B */
    int n = receive(f, "orders.fifo", 10, 0, 0, m);
    assert_int_equal(n, 2);
    assert_string_equal(m[0].body, "a1");
    assert_string_equal(m[1].body, "b1");
    assert_string_equal(m[0].group_id, "A");
    bv_queue_msg_t more;
    assert_int_equal(receive(f, "orders.fifo", 1, 0, 0, &more), 0); /* both groups busy */
    /* B's head returns to the queue: B is received again in order, before b2 */
    assert_int_equal(bv_queue_change_visibility(f->st, "orders.fifo", m[1].receipt, 0), 0);
    assert_int_equal(receive(f, "orders.fifo", 1, 0, 0, &more), 1);
    assert_string_equal(more.body, "b1");
    assert_int_equal(more.receive_count, 2);
    /* deleting A's head releases a2 (and wakes a waiting receiver) */
    assert_int_equal(bv_queue_delete(f->st, "orders.fifo", m[0].receipt), 0);
    bv_queue_msg_t next;
    assert_int_equal(receive(f, "orders.fifo", 1, 1000, 0, &next), 1);
    assert_string_equal(next.body, "a2");
    assert_int_equal(bv_queue_delete(f->st, "orders.fifo", next.receipt), 0);
    bv_queue_msg_clear(&next);
    assert_int_equal(bv_queue_delete(f->st, "orders.fifo", more.receipt), 0);
    assert_int_equal(receive(f, "orders.fifo", 8, 0, 0, m + 2), 2);
    assert_string_equal(m[2].body, "a3"); /* send order across groups */
    assert_string_equal(m[3].body, "b2");
    for (int i = 0; i < 4; i++)
        bv_queue_msg_clear(&m[i]);
    bv_queue_msg_clear(&more);
}

static void test_fifo_dedup(void **state)
{
    fx_t *f = *state;
    bv_queue_msg_t m[10];
    ensure(f, "pay.fifo", 1, 30000, 0, NULL);
    send_job_t s1 = {.queue = "pay.fifo", .body = "first", .group = "g", .dedup = "order-1", .delay_ms = -1};
    send_job_t s2 = {.queue = "pay.fifo", .body = "again", .group = "g", .dedup = "order-1", .delay_ms = -1};
    send_job_t s3 = {.queue = "pay.fifo", .body = "other", .group = "g", .dedup = "order-2", .delay_ms = -1};
    assert_int_equal(bv_store_write(f->st, send_job, &s1), 0);
    assert_int_equal(bv_store_write(f->st, send_job, &s2), 1); /* duplicate: accepted, not enqueued */
    assert_string_equal(s2.id, s1.id);
    assert_int_equal(bv_store_write(f->st, send_job, &s3), 0);
    assert_int_equal(info(f, "pay.fifo").depth, 2);
    /* once the 5-minute window has passed, the id may be used again */
    sql(f, "UPDATE queue_dedup SET expires_at = 0 WHERE dedup_id = 'order-1'");
    send_job_t s4 = {.queue = "pay.fifo", .body = "later", .group = "g", .dedup = "order-1", .delay_ms = -1};
    assert_int_equal(bv_store_write(f->st, send_job, &s4), 0);
    assert_string_not_equal(s4.id, s1.id);
    int64_t expired = -1;
    assert_int_equal(bv_queue_sweep(f->st, &expired), 0);
    int n = receive(f, "pay.fifo", 10, 0, 0, m);
    assert_int_equal(n, 1); /* one group: one in flight */
    assert_string_equal(m[0].body, "first");
    bv_queue_msg_clear(&m[0]);
}

static void test_retention(void **state)
{
    fx_t *f = *state;
    bv_queue_options_t o = {.name = "short", .retention_s = 60};
    assert_int_equal(bv_queue_ensure(f->st, &o), 0);
    assert_int_equal(send(f, "short", "old"), 0);
    assert_int_equal(send(f, "short", "new"), 0);
    sql(f, "UPDATE queue_messages SET created_at = created_at - 61000000 WHERE body = CAST('old' AS BLOB)");
    int64_t expired = 0;
    assert_int_equal(bv_queue_sweep(f->st, &expired), 0);
    assert_int_equal(expired, 1);
    bv_queue_msg_t m;
    assert_int_equal(receive(f, "short", 1, 0, 0, &m), 1);
    assert_string_equal(m.body, "new");
    bv_queue_msg_clear(&m);
    /* invalid options */
    bv_queue_options_t bad = {.name = "Bad Name"};
    assert_int_equal(bv_queue_ensure(f->st, &bad), BV_EINVALID);
    bv_queue_options_t self = {.name = "self", .dlq = "self", .max_receives = 1};
    assert_int_equal(bv_queue_ensure(f->st, &self), BV_EINVALID);
    bv_queue_options_t flip = {.name = "short", .fifo = 1};
    assert_int_equal(bv_queue_ensure(f->st, &flip), BV_ECONFLICT);
}

/* ---- long poll ---- */

typedef struct {
    fx_t *f;
    int n;
    char body[32];
} poller_t;

static void *poller(void *arg)
{
    poller_t *p = arg;
    bv_queue_msg_t m;
    bv_queue_receive_opts_t o = {.max = 1, .wait_ms = 10000};
    if (bv_queue_receive(p->f->st, "poll", &o, &m, &p->n) == 0 && p->n == 1) {
        snprintf(p->body, sizeof(p->body), "%s", m.body);
        bv_queue_msg_clear(&m);
    }
    return NULL;
}

static void test_long_poll_wakes_on_commit(void **state)
{
    fx_t *f = *state;
    pthread_t t;
    poller_t p = {.f = f, .n = -1};
    ensure(f, "poll", 0, 30000, 0, NULL);
    assert_int_equal(pthread_create(&t, NULL, poller, &p), 0);
    sleep_ms(100); /* let it block */
    assert_int_equal(send(f, "poll", "wake up"), 0);
    pthread_join(t, NULL);
    assert_int_equal(p.n, 1);
    assert_string_equal(p.body, "wake up");
}

static void test_long_poll_stop_flag(void **state)
{
    fx_t *f = *state;
    volatile int stop = 1;
    bv_queue_msg_t m;
    int n = -1;
    ensure(f, "stopq", 0, 30000, 0, NULL);
    bv_queue_receive_opts_t o = {.max = 1, .wait_ms = 20000, .stop = &stop};
    assert_int_equal(bv_queue_receive(f->st, "stopq", &o, &m, &n), 0);
    assert_int_equal(n, 0);
}

/* Wake-up policy, white box: the receiver that fell asleep last is woken first; while a
 * claim job runs, messages that do not fill a batch wake no one (the running claim's
 * receiver takes them when it returns); a broadcast wakes everyone. */
static void test_wake_policy(void **state)
{
    (void)state;
    queue_waiter_t *w = queue_waiter("wake-policy");
    queue_sleeper_t z[3];
    assert_non_null(w);
    pthread_mutex_lock(&w->mu);
    for (int i = 0; i < 3; i++) {
        pthread_cond_init(&z[i].cv, NULL);
        queue_sleeper_add(w, &z[i], 0);
    }
    pthread_mutex_unlock(&w->mu);

    queue_waiter_signal(w); /* nobody claiming: one message wakes the last asleep */
    assert_true(z[2].woken);
    assert_false(z[1].woken);
    assert_int_equal(w->waiting, 2);
    assert_int_equal(w->signaled, 1);
    assert_ptr_equal(w->sleepers, &z[1]);

    pthread_mutex_lock(&w->mu); /* z[2] runs, reserves the message, its claim job starts */
    w->signaled--;
    w->pending = 0;
    w->claiming = 1;
    pthread_mutex_unlock(&w->mu);
    for (int i = 0; i < BV_QUEUE_MAX_BATCH - 1; i++)
        queue_waiter_signal(w);
    assert_false(z[1].woken); /* nine wait for the running claim */
    queue_waiter_signal(w);   /* the tenth fills a batch */
    assert_true(z[1].woken);
    assert_false(z[0].woken);
    assert_int_equal(w->waiting, 1);

    queue_waiter_broadcast(w);
    assert_true(z[0].woken);
    assert_null(w->sleepers);
    assert_int_equal(w->waiting, 0);
    assert_int_equal(w->signaled, 2); /* z[1] and z[0], not yet running */
    /* as if the three had run and their claims returned */
    pthread_mutex_lock(&w->mu);
    w->signaled = 0;
    w->pending = 0;
    w->claiming = 0;
    pthread_mutex_unlock(&w->mu);
    for (int i = 0; i < 3; i++)
        pthread_cond_destroy(&z[i].cv);
}

/* Many receivers with short long polls (time-outs unlink sleepers from the middle of the
 * list while wake-ups take them from its head) and a sender: each message is received and
 * deleted exactly once, none is left behind. */
#define MANY_RECEIVERS 16
#define MANY_MESSAGES  400

typedef struct {
    fx_t *f;
    _Atomic int *deleted;
    _Atomic int *seen; /* per message number */
    _Atomic int *errors;
} many_t;

static void *many_receiver(void *arg)
{
    many_t *m = arg;
    bv_queue_msg_t msgs[BV_QUEUE_MAX_BATCH];
    int idle = 0;
    while (atomic_load(m->deleted) < MANY_MESSAGES && idle < 500) {
        int n = 0;
        bv_queue_receive_opts_t o = {.max = BV_QUEUE_MAX_BATCH, .wait_ms = 5 + rand() % 20};
        if (bv_queue_receive(m->f->st, "many", &o, msgs, &n) != 0) {
            atomic_fetch_add(m->errors, 1);
            break;
        }
        idle = n == 0 ? idle + 1 : 0;
        const char *r[BV_QUEUE_MAX_BATCH];
        for (int i = 0; i < n; i++) {
            int k = atoi(msgs[i].body);
            if (k < 0 || k >= MANY_MESSAGES || atomic_fetch_add(&m->seen[k], 1) != 0)
                atomic_fetch_add(m->errors, 1);
            r[i] = msgs[i].receipt;
        }
        int d = 0;
        if (n > 0 && (bv_queue_delete_batch(m->f->st, "many", r, n, &d) != 0 || d != n))
            atomic_fetch_add(m->errors, 1);
        atomic_fetch_add(m->deleted, d);
        for (int i = 0; i < n; i++)
            bv_queue_msg_clear(&msgs[i]);
    }
    return NULL;
}

static void test_many_receivers_each_message_once(void **state)
{
    fx_t *f = *state;
    _Atomic int deleted = 0, errors = 0;
    _Atomic int *seen = calloc(MANY_MESSAGES, sizeof(*seen));
    many_t m = {f, &deleted, seen, &errors};
    pthread_t t[MANY_RECEIVERS];
    ensure(f, "many", 0, 30000, 0, NULL);
    for (int i = 0; i < MANY_RECEIVERS; i++)
        assert_int_equal(pthread_create(&t[i], NULL, many_receiver, &m), 0);
    for (int i = 0; i < MANY_MESSAGES; i++) {
        char b[16];
        snprintf(b, sizeof(b), "%d", i);
        assert_int_equal(send(f, "many", b), 0);
        if (i % 37 == 0)
            sleep_ms(3); /* let receivers fall asleep and time out meanwhile */
    }
    for (int i = 0; i < MANY_RECEIVERS; i++)
        pthread_join(t[i], NULL);
    assert_int_equal(atomic_load(&errors), 0);
    assert_int_equal(atomic_load(&deleted), MANY_MESSAGES);
    for (int i = 0; i < MANY_MESSAGES; i++)
        assert_int_equal(atomic_load(&seen[i]), 1);
    assert_int_equal(count_rows(f, "SELECT count(*) FROM queue_messages WHERE queue='many'"), 0);
    queue_waiter_t *w = queue_waiter("many");
    assert_int_equal(w->waiting, 0);
    assert_null(w->sleepers);
    assert_int_equal(w->claiming, 0);
    free((void *)seen);
}

/* ---- filter policies ---- */

static int match(const char *policy, const char *attrs)
{
    json_t *p = json_loads(policy, 0, NULL), *a = attrs ? json_loads(attrs, 0, NULL) : NULL;
    assert_non_null(p);
    assert_int_equal(bv_queue_filter_validate(p, NULL, 0), 0);
    int r = bv_queue_filter_match(p, a);
    json_decref(p);
    json_decref(a);
    return r;
}

static int valid(const char *policy)
{
    json_t *p = json_loads(policy, 0, NULL);
    char detail[160] = "";
    assert_non_null(p);
    int rc = bv_queue_filter_validate(p, detail, sizeof(detail));
    if (rc != 0)
        assert_true(detail[0] != '\0');
    json_decref(p);
    return rc == 0;
}

static void test_filter_exact(void **state)
{
    (void)state;
    assert_true(match("{\"kind\":[\"movement\",\"otp\"]}", "{\"kind\":\"otp\"}"));
    assert_false(match("{\"kind\":[\"movement\"]}", "{\"kind\":\"otp\"}"));
    assert_false(match("{\"kind\":[\"movement\"]}", "{}"));
    assert_false(match("{\"kind\":[\"movement\"]}", NULL));
    /* arrays in attributes: any element */
    assert_true(match("{\"channels\":[\"sms\"]}", "{\"channels\":[\"email\",\"sms\"]}"));
    assert_false(match("{\"channels\":[\"sms\"]}", "{\"channels\":[\"email\"]}"));
    /* numbers match numerically, not as strings */
    assert_true(match("{\"n\":[5]}", "{\"n\":5.0}"));
    assert_false(match("{\"n\":[5]}", "{\"n\":\"5\"}"));
    /* AND across keys */
    assert_true(match("{\"a\":[\"x\"],\"b\":[\"y\"]}", "{\"a\":\"x\",\"b\":\"y\"}"));
    assert_false(match("{\"a\":[\"x\"],\"b\":[\"y\"]}", "{\"a\":\"x\",\"b\":\"z\"}"));
    /* NULL policy: everything */
    assert_true(bv_queue_filter_match(NULL, NULL));
}

static void test_filter_prefix(void **state)
{
    (void)state;
    assert_true(match("{\"region\":[{\"prefix\":\"eu-\"}]}", "{\"region\":\"eu-west\"}"));
    assert_false(match("{\"region\":[{\"prefix\":\"eu-\"}]}", "{\"region\":\"us-east\"}"));
    assert_false(match("{\"region\":[{\"prefix\":\"eu-\"}]}", "{\"region\":7}"));
}

static void test_filter_anything_but(void **state)
{
    (void)state;
    assert_true(match("{\"kind\":[{\"anything-but\":\"test\"}]}", "{\"kind\":\"otp\"}"));
    assert_false(match("{\"kind\":[{\"anything-but\":\"test\"}]}", "{\"kind\":\"test\"}"));
    assert_false(match("{\"kind\":[{\"anything-but\":\"test\"}]}", "{}")); /* absent: no match */
    assert_true(match("{\"kind\":[{\"anything-but\":[\"a\",\"b\"]}]}", "{\"kind\":\"c\"}"));
    assert_false(match("{\"kind\":[{\"anything-but\":[\"a\",\"b\"]}]}", "{\"kind\":\"b\"}"));
    assert_true(match("{\"n\":[{\"anything-but\":[1,2]}]}", "{\"n\":3}"));
    assert_false(match("{\"n\":[{\"anything-but\":[1,2]}]}", "{\"n\":2}"));
    assert_true(match("{\"k\":[{\"anything-but\":{\"prefix\":\"int\"}}]}", "{\"k\":\"ext-1\"}"));
    assert_false(match("{\"k\":[{\"anything-but\":{\"prefix\":\"int\"}}]}", "{\"k\":\"internal\"}"));
    /* on a list: every element must be allowed */
    assert_false(match("{\"c\":[{\"anything-but\":\"sms\"}]}", "{\"c\":[\"email\",\"sms\"]}"));
    assert_true(match("{\"c\":[{\"anything-but\":\"sms\"}]}", "{\"c\":[\"email\",\"push\"]}"));
}

static void test_filter_numeric(void **state)
{
    (void)state;
    const char *range = "{\"amount\":[{\"numeric\":[\">=\",100,\"<\",500]}]}";
    assert_true(match(range, "{\"amount\":100}"));
    assert_true(match(range, "{\"amount\":499.99999}"));
    assert_false(match(range, "{\"amount\":500}"));
    assert_false(match(range, "{\"amount\":99.99999}"));
    assert_false(match(range, "{\"amount\":\"250\"}"));
    assert_false(match(range, "{}"));
    assert_true(match("{\"x\":[{\"numeric\":[\">\",0]}]}", "{\"x\":0.00001}"));
    assert_false(match("{\"x\":[{\"numeric\":[\">\",0]}]}", "{\"x\":0}"));
    assert_true(match("{\"x\":[{\"numeric\":[\"<=\",-5]}]}", "{\"x\":-5}"));
    assert_true(match("{\"x\":[{\"numeric\":[\"=\",1.5]}]}", "{\"x\":1.5}"));
    assert_false(match("{\"x\":[{\"numeric\":[\"=\",1.5]}]}", "{\"x\":1.50001}"));
    assert_true(match("{\"x\":[{\"numeric\":[\">\",10,\"<=\",20]}]}", "{\"x\":20}"));
    assert_false(match("{\"x\":[{\"numeric\":[\">\",10,\"<=\",20]}]}", "{\"x\":10}"));
}

static void test_filter_exists(void **state)
{
    (void)state;
    assert_true(match("{\"email\":[{\"exists\":true}]}", "{\"email\":\"a@b.c\"}"));
    assert_false(match("{\"email\":[{\"exists\":true}]}", "{\"phone\":\"+1\"}"));
    assert_true(match("{\"email\":[{\"exists\":false}]}", "{\"phone\":\"+1\"}"));
    assert_false(match("{\"email\":[{\"exists\":false}]}", "{\"email\":\"a@b.c\"}"));
    assert_true(match("{\"email\":[{\"exists\":false}]}", NULL));
    /* OR within a key */
    assert_true(match("{\"k\":[\"a\",{\"prefix\":\"z\"}]}", "{\"k\":\"zz\"}"));
}

static void test_filter_validation(void **state)
{
    (void)state;
    assert_false(valid("[]"));
    assert_false(valid("{}"));
    assert_false(valid("{\"a\":\"x\"}"));
    assert_false(valid("{\"a\":[]}"));
    assert_false(valid("{\"a\":[{\"prefix\":1}]}"));
    assert_false(valid("{\"a\":[{\"exists\":\"yes\"}]}"));
    assert_false(valid("{\"a\":[{\"numeric\":[\"<\",1,\">\",0]}]}"));
    assert_false(valid("{\"a\":[{\"numeric\":[\">\",5,\"<\",1]}]}"));
    assert_false(valid("{\"a\":[{\"numeric\":[\"~\",1]}]}"));
    assert_false(valid("{\"a\":[{\"numeric\":[\">\",1e12]}]}"));
    assert_false(valid("{\"a\":[{\"regex\":\".*\"}]}"));
    assert_false(valid("{\"a\":[{\"prefix\":\"x\",\"exists\":true}]}"));
    assert_false(valid("{\"a\":[{\"anything-but\":[]}]}"));
    assert_false(valid("{\"a\":[[\"nested\"]]}"));
    assert_false(
        valid("{\"a\":[\"1\"],\"b\":[\"1\"],\"c\":[\"1\"],\"d\":[\"1\"],\"e\":[\"1\"],\"f\":[\"1\"]}"));
    assert_true(valid("{\"a\":[\"x\",1,{\"prefix\":\"p\"},{\"anything-but\":{\"prefix\":\"q\"}},"
                      "{\"numeric\":[\">=\",0,\"<\",1]},{\"exists\":true}]}"));
}

/* ---- topics and the outbox ---- */

typedef struct {
    json_t *policy_email, *policy_sms;
} topo_t;

static int topology_job(bv_tx_t *tx, void *arg)
{
    topo_t *t = arg;
    bv_queue_options_t e = {.name = "t-email"}, s = {.name = "t-sms"}, a = {.name = "t-all"};
    int rc;
    if ((rc = bv_queue_create(tx, &e)) || (rc = bv_queue_create(tx, &s)) || (rc = bv_queue_create(tx, &a)))
        return rc;
    if ((rc = bv_queue_topic_create(tx, "t-notes")) != 0)
        return rc;
    if ((rc = bv_queue_subscribe(tx, "t-notes", "t-email", t->policy_email)) ||
        (rc = bv_queue_subscribe(tx, "t-notes", "t-sms", t->policy_sms)) ||
        (rc = bv_queue_subscribe(tx, "t-notes", "t-all", NULL)))
        return rc;
    return 0;
}

typedef struct {
    const char *topic;
    const char *attrs;
    const char *body;
    int delivered;
} publish_job_t;

static int publish_job(bv_tx_t *tx, void *arg)
{
    publish_job_t *p = arg;
    json_t *a = json_loads(p->attrs, 0, NULL);
    int rc = bv_queue_publish_ex(tx, p->topic, a, p->body, &p->delivered);
    json_decref(a);
    return rc;
}

static void test_topic_fanout_with_filters(void **state)
{
    fx_t *f = *state;
    bv_queue_msg_t m[10];
    topo_t t = {json_loads("{\"channels\":[\"email\"],\"email\":[{\"exists\":true}]}", 0, NULL),
                json_loads("{\"channels\":[\"sms\"]}", 0, NULL)};
    assert_int_equal(bv_store_write(f->st, topology_job, &t), 0);
    assert_int_equal(bv_store_write(f->st, topology_job, &t), 0); /* idempotent */
    publish_job_t p1 = {"t-notes", "{\"channels\":[\"email\",\"sms\"],\"email\":\"a@b.c\"}", "both", 0};
    publish_job_t p2 = {"t-notes", "{\"channels\":[\"sms\"]}", "sms only", 0};
    publish_job_t p3 = {"t-notes", "{\"channels\":[\"email\"]}", "email without address", 0};
    publish_job_t p4 = {"t-nope", "{}", "x", 0};
    assert_int_equal(bv_store_write(f->st, publish_job, &p1), 0);
    assert_int_equal(p1.delivered, 3);
    assert_int_equal(bv_store_write(f->st, publish_job, &p2), 0);
    assert_int_equal(p2.delivered, 2);
    assert_int_equal(bv_store_write(f->st, publish_job, &p3), 0);
    assert_int_equal(p3.delivered, 1);
    assert_int_equal(bv_store_write(f->st, publish_job, &p4), BV_ENOTFOUND);
    assert_int_equal(receive(f, "t-email", 10, 0, 0, m), 1);
    assert_string_equal(m[0].body, "both");
    assert_string_equal(json_string_value(json_object_get(m[0].attributes, "email")), "a@b.c");
    bv_queue_msg_clear(&m[0]);
    int n = receive(f, "t-sms", 10, 0, 0, m);
    assert_int_equal(n, 2);
    assert_string_equal(m[0].body, "both");
    assert_string_equal(m[1].body, "sms only");
    bv_queue_msg_clear(&m[0]);
    bv_queue_msg_clear(&m[1]);
    assert_int_equal(receive(f, "t-all", 10, 0, 0, m), 3);
    for (int i = 0; i < 3; i++)
        bv_queue_msg_clear(&m[i]);
    json_decref(t.policy_email);
    json_decref(t.policy_sms);
}

static void test_outbox_drain(void **state)
{
    fx_t *f = *state;
    bv_queue_msg_t m[10];
    topo_t t = {NULL, json_loads("{\"channels\":[\"sms\"]}", 0, NULL)};
    int n = -1;
    assert_int_equal(bv_store_write(f->st, topology_job, &t), 0);
    sql(f, "INSERT INTO outbox(id, topic, payload, attributes, created_at) VALUES "
           "('0190f0a0-0000-7000-8000-000000000001', 't-notes', '{\"n\":1}', '{\"channels\":[\"sms\"]}', 1),"
           "('0190f0a0-0000-7000-8000-000000000002', 'unknown-topic', '{\"n\":2}', '{}', 2),"
           "('0190f0a0-0000-7000-8000-000000000003', 't-notes', '{\"n\":3}', '{}', 3)");
    assert_int_equal(bv_queue_outbox_drain(f->st, 100, &n), 0);
    assert_int_equal(n, 3);
    assert_int_equal(bv_queue_outbox_drain(f->st, 100, &n), 0);
    assert_int_equal(n, 0); /* all published (or dropped) and deleted */
    assert_int_equal(count_rows(f, "SELECT count(*) FROM outbox"), 0);
    assert_int_equal(receive(f, "t-sms", 10, 0, 0, m), 1);
    assert_string_equal(m[0].body, "{\"n\":1}");
    bv_queue_msg_clear(&m[0]);
    assert_int_equal(receive(f, "t-all", 10, 0, 0, m), 2);
    bv_queue_msg_clear(&m[0]);
    bv_queue_msg_clear(&m[1]);
    json_decref(t.policy_sms);
}

/* ---- consumers ---- */

static _Atomic int handled, attempts_seen;

static bv_queue_result_t on_flaky(const bv_queue_consumer_t *c, bv_queue_msg_t *m, int64_t *retry_after_ms)
{
    (void)c;
    atomic_fetch_add(&attempts_seen, 1);
    if (strcmp(m->body, "flaky") == 0 && m->receive_count < 3) {
        *retry_after_ms = 10; /* quick retry for the test */
        return BV_QUEUE_RETRY;
    }
    if (strcmp(m->body, "bad") == 0)
        return BV_QUEUE_FAIL;
    atomic_fetch_add(&handled, 1);
    return BV_QUEUE_ACK;
}

static const bv_queue_consumer_t flaky_consumer = {
    .name = "test-flaky", .group = "tests", .queue = "cons", .concurrency = 4, .handler = on_flaky};

static void test_consumer_retry_ack_fail(void **state)
{
    fx_t *f = *state;
    ensure(f, "cons", 0, 30000, 5, "cons-dlq");
    assert_int_equal(bv_queue_consumer_register(&flaky_consumer), 0);
    assert_int_equal(bv_queue_consumer_register(&flaky_consumer), BV_ECONFLICT);
    assert_int_equal(bv_queue_workers_start(f->st, "no-such-consumer"), BV_ENOTFOUND);
    assert_int_equal(bv_queue_workers_start(f->st, "tests"), 0);
    assert_int_equal(send(f, "cons", "ok-1"), 0);
    assert_int_equal(send(f, "cons", "flaky"), 0);
    assert_int_equal(send(f, "cons", "bad"), 0);
    for (int i = 0; i < 500; i++) { /* until handled, settled (acks follow the handler) and dead-lettered */
        bv_queue_info_t q = info(f, "cons");
        if (atomic_load(&handled) >= 2 && q.depth + q.in_flight + q.delayed == 0 &&
            info(f, "cons-dlq").depth >= 1)
            break;
        sleep_ms(10);
    }
    assert_int_equal(atomic_load(&handled), 2);
    assert_true(atomic_load(&attempts_seen) >= 5); /* ok-1, flaky x3, bad */
    bv_queue_info_t qi = info(f, "cons");
    assert_int_equal(qi.depth + qi.in_flight + qi.delayed, 0);
    assert_int_equal(info(f, "cons-dlq").depth, 1);
    bv_queue_consumer_unregister(&flaky_consumer);
    bv_queue_workers_stop();
}

static volatile int slow_started;
static bv_queue_result_t on_slow(const bv_queue_consumer_t *c, bv_queue_msg_t *m, int64_t *retry_after_ms)
{
    (void)c, (void)m, (void)retry_after_ms;
    slow_started = 1;
    sleep_ms(200);
    return BV_QUEUE_ACK;
}
static const bv_queue_consumer_t slow_consumer = {
    .name = "test-slow", .queue = "slowq", .concurrency = 1, .handler = on_slow};

static void test_consumer_graceful_stop(void **state)
{
    fx_t *f = *state;
    ensure(f, "slowq", 0, 30000, 0, NULL);
    assert_int_equal(bv_queue_consumer_register(&slow_consumer), 0);
    assert_int_equal(send(f, "slowq", "first"), 0);
    assert_int_equal(send(f, "slowq", "second"), 0);
    assert_int_equal(bv_queue_workers_start(f->st, "test-slow"), 0);
    for (int i = 0; i < 300 && !slow_started; i++)
        sleep_ms(10);
    assert_true(slow_started);
    /* stop while the first is being handled: it completes, the second stays available */
    bv_queue_consumer_unregister(&slow_consumer);
    bv_queue_workers_stop();
    bv_queue_info_t qi = info(f, "slowq");
    assert_int_equal(qi.depth, 1);
    assert_int_equal(qi.in_flight, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_receipts),
        cmocka_unit_test(test_backoff_full_jitter_bounds),
        cmocka_unit_test(test_filter_exact),
        cmocka_unit_test(test_filter_prefix),
        cmocka_unit_test(test_filter_anything_but),
        cmocka_unit_test(test_filter_numeric),
        cmocka_unit_test(test_filter_exists),
        cmocka_unit_test(test_filter_validation),
        cmocka_unit_test_setup_teardown(test_send_receive_delete, setup, teardown),
        cmocka_unit_test_setup_teardown(test_send_rolls_back_with_its_job, setup, teardown),
        cmocka_unit_test_setup_teardown(test_batch_of_ten, setup, teardown),
        cmocka_unit_test_setup_teardown(test_visibility_timeout_and_change, setup, teardown),
        cmocka_unit_test_setup_teardown(test_delay, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dlq_and_redrive, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fifo_groups_in_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fifo_dedup, setup, teardown),
        cmocka_unit_test_setup_teardown(test_retention, setup, teardown),
        cmocka_unit_test_setup_teardown(test_long_poll_wakes_on_commit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_long_poll_stop_flag, setup, teardown),
        cmocka_unit_test(test_wake_policy),
        cmocka_unit_test_setup_teardown(test_many_receivers_each_message_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_topic_fanout_with_filters, setup, teardown),
        cmocka_unit_test_setup_teardown(test_outbox_drain, setup, teardown),
        cmocka_unit_test_setup_teardown(test_consumer_retry_ack_fail, setup, teardown),
        cmocka_unit_test_setup_teardown(test_consumer_graceful_stop, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
