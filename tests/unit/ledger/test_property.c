/* Property test: thousands of random operations (transfers, holds, posts, voids, expiries,
 * reversals, batches, replays, conflicting keys, invalid requests) from several threads
 * against a model kept by the test; then `verify` passes and every balance and every hold
 * total equals the model, before and after the engine reloads from the database.
 *
 * Each thread owns some accounts and only ever debits those (credits go anywhere), so it
 * knows a lower bound of their balances: whenever that bound covers an amount the ledger
 * must accept the debit. */
#include <pthread.h>
#include <stdatomic.h>
#include <unistd.h>

#include "helpers.h"

#define N_THREADS      4
#define OWN            4 /* accounts per thread */
#define N_ACCTS        (N_THREADS * OWN)
#define OPS_PER_THREAD 1500
#define INITIAL        1000000

static fx_t *F;
static char accts[N_ACCTS][BV_UUID_STR_LEN + 1];
static char bank[BV_UUID_STR_LEN + 1];
static char other_currency[BV_UUID_STR_LEN + 1];
static _Atomic int64_t model_balance[N_ACCTS]; /* applied successes only */
static _Atomic int64_t model_holds[N_ACCTS];
static atomic_int n_ok, n_rejected, n_replayed;

typedef struct {
    char id[BV_UUID_STR_LEN + 1];
    int debit, credit;
    int64_t amount;
    bool expires;
} hold_t;

typedef struct {
    char id[BV_UUID_STR_LEN + 1];
    char reference[40];
    int debit, credit;
    int64_t amount;
    bool reversed;
} done_t;

typedef struct {
    int t;
    uint64_t seed;
    int64_t own_debits[OWN]; /* everything this thread took out of its accounts, holds included */
    hold_t holds[64];
    int n_holds;
    done_t done[256];
    int n_done;
    int seq;
} worker_t;

static uint64_t rnd(worker_t *w)
{
    w->seed ^= w->seed << 13;
    w->seed ^= w->seed >> 7;
    w->seed ^= w->seed << 17;
    return w->seed;
}

/* cmocka's assertions cannot fail on a thread other than the test's: the process exits
 * with status 255 and without a word. The workers check with these instead, which say what
 * failed and abort. */
#define CHECK(cond)                                                                  \
    do {                                                                             \
        if (!(cond)) {                                                               \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
            abort();                                                                 \
        }                                                                            \
    } while (0)
#define CHECK_EQ(a, b)                                                                             \
    do {                                                                                           \
        long long a_ = (long long)(a), b_ = (long long)(b);                                        \
        if (a_ != b_) {                                                                            \
            fprintf(stderr, "%s:%d: %s is %lld, expected %lld\n", __FILE__, __LINE__, #a, a_, b_); \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

static int own(worker_t *w, int k)
{
    return w->t * OWN + k;
}

/* what the owner can count on: initial + credits recorded so far - own debits and holds */
static int64_t lower_bound(worker_t *w, int k)
{
    (void)w;
    return atomic_load(&model_balance[own(w, k)]) - atomic_load(&model_holds[own(w, k)]);
}

static void apply_posted(int d, int c, int64_t amount)
{
    atomic_fetch_sub(&model_balance[d], amount);
    atomic_fetch_add(&model_balance[c], amount);
}

static void op_transfer(worker_t *w, bool to_own)
{
    int k = (int)(rnd(w) % OWN), d = own(w, k), c;
    do
        c = to_own ? own(w, (int)(rnd(w) % OWN)) : (int)(rnd(w) % N_ACCTS);
    while (c == d);
    int64_t amount = 1 + (int64_t)(rnd(w) % 300000);
    int64_t bound = lower_bound(w, k);
    done_t *r = &w->done[w->n_done % 256];
    char ref[40];
    snprintf(ref, sizeof(ref), "p-%d-%d", w->t, w->seq++);
    bv_ledger_result_t res;
    int rc = fx_transfer(F, accts[d], accts[c], amount, "USD", ref, &res);
    if (rc == 0) {
        apply_posted(d, c, amount);
        atomic_fetch_add(&n_ok, 1);
        memcpy(r->id, res.transfer.id, sizeof(r->id));
        memcpy(r->reference, ref, sizeof(ref));
        r->debit = d;
        r->credit = c;
        r->amount = amount;
        r->reversed = false;
        w->n_done++;
    } else {
        CHECK_EQ(rc, BV_EINSUFFICIENT_FUNDS);
        CHECK(bound < amount); /* it had to be accepted otherwise */
        atomic_fetch_add(&n_rejected, 1);
    }
}

static void op_replay_or_conflict(worker_t *w)
{
    if (w->n_done == 0)
        return;
    int n = w->n_done < 256 ? w->n_done : 256;
    done_t *r = &w->done[rnd(w) % (uint64_t)n];
    bv_ledger_result_t res;
    bool conflict = rnd(w) % 2 == 0;
    int rc = fx_transfer(F, accts[r->debit], accts[r->credit], r->amount + (conflict ? 1 : 0), "USD",
                         r->reference, &res);
    if (conflict) {
        CHECK_EQ(rc, BV_EIDEMPOTENCY);
    } else {
        CHECK_EQ(rc, 0);
        CHECK(res.replayed);
        CHECK(strcmp(res.transfer.id, r->id) == 0);
        atomic_fetch_add(&n_replayed, 1);
    }
}

static void op_invalid(worker_t *w)
{
    int d = own(w, (int)(rnd(w) % OWN));
    char ref[40];
    snprintf(ref, sizeof(ref), "bad-%d-%d", w->t, w->seq++);
    switch (rnd(w) % 4) {
    case 0:
        CHECK_EQ(fx_transfer(F, accts[d], accts[d], 10, "USD", ref, NULL), BV_ESAME_ACCOUNT);
        break;
    case 1:
        CHECK_EQ(fx_transfer(F, accts[d], other_currency, 10, "USD", ref, NULL), BV_ECURRENCY_MISMATCH);
        break;
    case 2:
        CHECK_EQ(fx_transfer(F, accts[d], "01900000-0000-7000-8000-00000000beef", 10, "USD", ref, NULL),
                 BV_EUNKNOWN_ACCOUNT);
        break;
    default:
        CHECK_EQ(fx_transfer(F, accts[d], accts[(d + 1) % N_ACCTS], 0, "USD", ref, NULL), BV_EAMOUNT);
        break;
    }
}

static void op_hold(worker_t *w)
{
    if (w->n_holds == 64)
        return;
    int k = (int)(rnd(w) % OWN), d = own(w, k), c;
    do
        c = (int)(rnd(w) % N_ACCTS);
    while (c == d);
    int64_t amount = 1 + (int64_t)(rnd(w) % 30000);
    bool expires = rnd(w) % 4 == 0;
    char ref[40];
    snprintf(ref, sizeof(ref), "h-%d-%d", w->t, w->seq++);
    bv_ledger_result_t res;
    int64_t bound = lower_bound(w, k);
    int rc = fx_hold(F, accts[d], accts[c], amount, ref, expires ? bv_now_us() + 20000 : 0, &res);
    if (rc == 0) {
        atomic_fetch_add(&model_holds[d], amount);
        hold_t *h = &w->holds[w->n_holds++];
        memcpy(h->id, res.transfer.id, sizeof(h->id));
        h->debit = d;
        h->credit = c;
        h->amount = amount;
        h->expires = expires;
    } else if (!(expires && rc == BV_EEXPIRED)) { /* (a deadline 20 ms away may pass before the
                                                      engine runs the hold: it is refused) */
        CHECK_EQ(rc, BV_EINSUFFICIENT_FUNDS);
        CHECK(bound < amount);
    }
}

static void op_resolve(worker_t *w)
{
    if (w->n_holds == 0)
        return;
    int i = (int)(rnd(w) % (uint64_t)w->n_holds);
    hold_t h = w->holds[i];
    w->holds[i] = w->holds[--w->n_holds];
    bv_ledger_transfer_t t;
    int rc;
    if (h.expires) {
        /* let it pass its deadline: the post is refused and the hold released */
        usleep(25000);
        rc = bv_ledger_post(F->lg, &fx_ctx, h.id, 0, NULL, &t);
        CHECK_EQ(rc, BV_EEXPIRED);
        atomic_fetch_sub(&model_holds[h.debit], h.amount);
        return;
    }
    if (rnd(w) % 3 == 0) {
        rc = bv_ledger_void(F->lg, &fx_ctx, h.id, NULL, &t);
        CHECK_EQ(rc, 0);
        atomic_fetch_sub(&model_holds[h.debit], h.amount);
        return;
    }
    int64_t amount = rnd(w) % 2 ? 0 : 1 + (int64_t)(rnd(w) % (uint64_t)h.amount);
    rc = bv_ledger_post(F->lg, &fx_ctx, h.id, amount, NULL, &t);
    CHECK_EQ(rc, 0);
    CHECK(t.posted_amount == (amount == 0 ? h.amount : amount));
    /* release the hold first so the lower bound never overstates */
    atomic_fetch_sub(&model_holds[h.debit], h.amount);
    apply_posted(h.debit, h.credit, t.posted_amount);
    CHECK_EQ(bv_ledger_post(F->lg, &fx_ctx, h.id, 0, NULL, &t), BV_ETRANSFER_STATE);
}

static void op_reverse(worker_t *w)
{
    int n = w->n_done < 256 ? w->n_done : 256;
    for (int tries = 0; tries < 4 && n > 0; tries++) {
        done_t *r = &w->done[rnd(w) % (uint64_t)n];
        /* only transfers between this thread's own accounts: the reversal debits the credit side */
        if (r->credit / OWN != w->t)
            continue;
        bv_ledger_transfer_t t;
        int k = r->credit % OWN;
        int64_t bound = lower_bound(w, k);
        int rc = bv_ledger_reverse(F->lg, &fx_ctx, r->id, NULL, NULL, &t, NULL);
        if (r->reversed) {
            CHECK_EQ(rc, BV_EALREADY_REVERSED);
        } else if (rc == 0) {
            r->reversed = true;
            apply_posted(r->credit, r->debit, r->amount);
        } else {
            CHECK_EQ(rc, BV_EINSUFFICIENT_FUNDS);
            CHECK(bound < r->amount);
        }
        return;
    }
}

static void op_batch(worker_t *w, bool linked)
{
    bv_ledger_transfer_req_t reqs[5];
    bv_ledger_result_t res[5];
    char refs[5][40];
    int d[5], c[5];
    int64_t need[OWN] = {0};
    for (int i = 0; i < 5; i++) {
        int k = (int)(rnd(w) % OWN);
        d[i] = own(w, k);
        do
            c[i] = (int)(rnd(w) % N_ACCTS);
        while (c[i] == d[i]);
        snprintf(refs[i], 40, "b-%d-%d", w->t, w->seq++);
        reqs[i] = (bv_ledger_transfer_req_t){.debit_account = accts[d[i]],
                                             .credit_account = accts[c[i]],
                                             .amount = 1 + (int64_t)(rnd(w) % 20000),
                                             .currency = "USD",
                                             .reference = refs[i]};
        need[k] += reqs[i].amount;
    }
    bool covered = true;
    for (int k = 0; k < OWN; k++)
        covered = covered && lower_bound(w, k) >= need[k];
    CHECK_EQ(bv_ledger_batch(F->lg, &fx_ctx, reqs, 5, linked, res), 0);
    int failed = 0;
    for (int i = 0; i < 5; i++)
        failed += res[i].rc != 0;
    if (covered)
        CHECK_EQ(failed, 0);
    if (linked && failed > 0) {
        for (int i = 0; i < 5; i++)
            CHECK(res[i].rc == BV_ELINKED_FAILED || res[i].rc == BV_EINSUFFICIENT_FUNDS);
        return;
    }
    for (int i = 0; i < 5; i++) {
        if (res[i].rc == 0)
            apply_posted(d[i], c[i], reqs[i].amount);
        else
            CHECK_EQ(res[i].rc, BV_EINSUFFICIENT_FUNDS);
    }
}

static void *worker_main(void *arg)
{
    worker_t *w = arg;
    for (int i = 0; i < OPS_PER_THREAD; i++) {
        uint64_t r = rnd(w) % 100;
        if (r < 40)
            op_transfer(w, false);
        else if (r < 50)
            op_transfer(w, true);
        else if (r < 58)
            op_replay_or_conflict(w);
        else if (r < 63)
            op_invalid(w);
        else if (r < 75)
            op_hold(w);
        else if (r < 87)
            op_resolve(w);
        else if (r < 92)
            op_reverse(w);
        else
            op_batch(w, r % 2 == 0);
    }
    /* leave some holds pending: the model keeps them */
    return NULL;
}

static void check_model(void)
{
    int64_t total = 0;
    for (int i = 0; i < N_ACCTS; i++) {
        bv_ledger_account_t a;
        assert_int_equal(bv_ledger_account_get(F->lg, accts[i], &a), 0);
        assert_true(a.balance == atomic_load(&model_balance[i]));
        total += a.balance;
    }
    assert_true(total - (int64_t)N_ACCTS * INITIAL == 0); /* money only moved between them */
    /* stored holds include unexpired ones only after the sweep below */
    fx_assert_verified(F);
}

static void test_random_operations_match_the_model(void **state)
{
    (void)state;
    pthread_t th[N_THREADS];
    worker_t *w = calloc(N_THREADS, sizeof(*w));
    F = fx_open();
    fx_account(F, "internal", "USD", 0, true, bank);
    fx_account(F, "checking", "EUR", 0, false, other_currency);
    for (int i = 0; i < N_ACCTS; i++) {
        char ref[32];
        fx_account(F, i % 3 == 0 ? "savings" : "checking", "USD", i % 5 == 0 ? 20000 : 0, false, accts[i]);
        snprintf(ref, sizeof(ref), "seed-%d", i);
        assert_int_equal(fx_transfer(F, bank, accts[i], INITIAL, "USD", ref, NULL), 0);
        atomic_store(&model_balance[i], INITIAL);
        /* overdraft counts as headroom in the lower bound */
        atomic_store(&model_holds[i], 0);
    }
    for (int t = 0; t < N_THREADS; t++) {
        w[t].t = t;
        w[t].seed = 0x2545F4914F6CDD1DULL * (uint64_t)(t + 1);
        assert_int_equal(pthread_create(&th[t], NULL, worker_main, &w[t]), 0);
    }
    for (int t = 0; t < N_THREADS; t++)
        pthread_join(th[t], NULL);
    fprintf(stderr, "property: %d transfers ok, %d rejected for funds, %d replays\n", atomic_load(&n_ok),
            atomic_load(&n_rejected), atomic_load(&n_replayed));
    assert_true(atomic_load(&n_ok) > 1000);

    /* expire what is due, then every stored hold total equals the model */
    int n = 0;
    usleep(30000);
    assert_int_equal(bv_ledger_expire_due(F->lg, &n), 0);
    for (int t = 0; t < N_THREADS; t++)
        for (int i = 0; i < w[t].n_holds; i++)
            if (w[t].holds[i].expires)
                atomic_fetch_sub(&model_holds[w[t].holds[i].debit], w[t].holds[i].amount);
    for (int i = 0; i < N_ACCTS; i++) {
        bv_ledger_account_t a;
        assert_int_equal(bv_ledger_account_get(F->lg, accts[i], &a), 0);
        assert_true(a.holds == atomic_load(&model_holds[i]));
    }
    check_model();
    /* the engine's in-memory state equals the database's */
    fx_reopen_engine(F);
    check_model();
    free(w);
    fx_close(F);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_random_operations_match_the_model),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
