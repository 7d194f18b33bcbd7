/* The encrypted profile cache: hit and miss, expiry, forget, eviction of the oldest, the
 * generation guard against stale loads, and the security properties: no plaintext in the
 * stored entry, and an entry that was tampered with or moved to another user is a miss. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>
#include <pthread.h>
#include <string.h>

#include "customer/cache.c"

#define SEC 1000000LL

static void make_profile(bv_customer_profile_t *p, const char *id, const char *username)
{
    memset(p, 0, sizeof(*p));
    snprintf(p->id, sizeof(p->id), "%.36s", id);
    snprintf(p->username, sizeof(p->username), "%s", username);
    snprintf(p->display_name, sizeof(p->display_name), "Display %s", username);
    snprintf(p->email, sizeof(p->email), "%s@example.test", username);
    snprintf(p->phone, sizeof(p->phone), "+34600111222");
    snprintf(p->locale, sizeof(p->locale), "en");
    p->channels = BV_NOTIFY_EMAIL | BV_NOTIFY_SMS;
}

static const char *ID_A = "01890a5d-ac96-774b-bcce-b302099a8057";
static const char *ID_B = "01890a5d-ac96-774b-bcce-b302099a8058";

static entry_t *entry_of(customer_cache_t *c, const char *id)
{
    return find(c, id, hash_id(c, id));
}

static void test_hit_and_miss(void **state)
{
    (void)state;
    customer_cache_t *c = NULL;
    bv_customer_profile_t p, got;
    assert_int_equal(customer_cache_create(16, 60 * SEC, &c), 0);
    assert_int_equal(customer_cache_get(c, ID_A, 1000, &got), BV_ENOTFOUND);
    make_profile(&p, ID_A, "alice");
    assert_int_equal(customer_cache_put(c, &p, customer_cache_generation(c), 1000), 0);
    assert_int_equal(customer_cache_size(c), 1);
    assert_int_equal(customer_cache_get(c, ID_A, 2000, &got), 0);
    assert_memory_equal(&got, &p, sizeof(p)); /* every field, both zero-padded */
    assert_int_equal(customer_cache_get(c, ID_B, 2000, &got), BV_ENOTFOUND);
    /* a second put replaces the entry */
    snprintf(p.display_name, sizeof(p.display_name), "Alice Renamed");
    p.channels = BV_NOTIFY_SMS;
    assert_int_equal(customer_cache_put(c, &p, customer_cache_generation(c), 3000), 0);
    assert_int_equal(customer_cache_size(c), 1);
    assert_int_equal(customer_cache_get(c, ID_A, 4000, &got), 0);
    assert_string_equal(got.display_name, "Alice Renamed");
    assert_int_equal(got.channels, BV_NOTIFY_SMS);
    /* empty contacts round-trip as empty strings */
    p.email[0] = p.phone[0] = '\0';
    assert_int_equal(customer_cache_put(c, &p, customer_cache_generation(c), 3000), 0);
    assert_int_equal(customer_cache_get(c, ID_A, 4000, &got), 0);
    assert_string_equal(got.email, "");
    assert_string_equal(got.phone, "");
    customer_cache_destroy(c);
}

static void test_expiry(void **state)
{
    (void)state;
    customer_cache_t *c = NULL;
    bv_customer_profile_t p, got;
    assert_int_equal(customer_cache_create(16, 10 * SEC, &c), 0);
    make_profile(&p, ID_A, "alice");
    assert_int_equal(customer_cache_put(c, &p, customer_cache_generation(c), 100 * SEC), 0);
    assert_int_equal(customer_cache_get(c, ID_A, 110 * SEC - 1, &got), 0);
    assert_int_equal(customer_cache_get(c, ID_A, 110 * SEC, &got), BV_ENOTFOUND);
    assert_int_equal(customer_cache_size(c), 0); /* the expired entry is gone, not just hidden */
    customer_cache_destroy(c);
}

static void test_ttl_zero_disables(void **state)
{
    (void)state;
    customer_cache_t *c = NULL;
    bv_customer_profile_t p, got;
    assert_int_equal(customer_cache_create(16, 0, &c), 0);
    make_profile(&p, ID_A, "alice");
    assert_int_equal(customer_cache_put(c, &p, customer_cache_generation(c), 1), 0);
    assert_int_equal(customer_cache_size(c), 0);
    assert_int_equal(customer_cache_get(c, ID_A, 1, &got), BV_ENOTFOUND);
    customer_cache_destroy(c);
    assert_int_equal(customer_cache_create(0, SEC, &c), BV_EINVALID);
}

static void test_forget_and_generation(void **state)
{
    (void)state;
    customer_cache_t *c = NULL;
    bv_customer_profile_t p, q, got;
    assert_int_equal(customer_cache_create(16, 60 * SEC, &c), 0);
    make_profile(&p, ID_A, "alice");
    make_profile(&q, ID_B, "bob");
    assert_int_equal(customer_cache_put(c, &p, customer_cache_generation(c), 1), 0);
    assert_int_equal(customer_cache_put(c, &q, customer_cache_generation(c), 1), 0);
    customer_cache_forget(c, ID_A);
    assert_int_equal(customer_cache_get(c, ID_A, 2, &got), BV_ENOTFOUND);
    assert_int_equal(customer_cache_get(c, ID_B, 2, &got), 0);
    assert_string_equal(got.username, "bob");
    /* a load that started before a forget must not store what it read */
    uint64_t gen = customer_cache_generation(c);
    customer_cache_forget(c, ID_A);
    assert_int_equal(customer_cache_put(c, &p, gen, 3), 0);
    assert_int_equal(customer_cache_get(c, ID_A, 4, &got), BV_ENOTFOUND);
    customer_cache_forget(c, "not-an-id"); /* harmless */
    customer_cache_forget(NULL, ID_A);
    customer_cache_destroy(c);
}

static void test_evicts_oldest(void **state)
{
    (void)state;
    customer_cache_t *c = NULL;
    bv_customer_profile_t p, got;
    char id[40];
    assert_int_equal(customer_cache_create(3, 60 * SEC, &c), 0);
    for (int i = 0; i < 5; i++) {
        snprintf(id, sizeof(id), "01890a5d-ac96-774b-bcce-b302099a800%d", i);
        make_profile(&p, id, "user");
        assert_int_equal(customer_cache_put(c, &p, customer_cache_generation(c), 10 + i), 0);
        assert_true(customer_cache_size(c) <= 3);
    }
    assert_int_equal(customer_cache_size(c), 3);
    for (int i = 0; i < 5; i++) {
        snprintf(id, sizeof(id), "01890a5d-ac96-774b-bcce-b302099a800%d", i);
        assert_int_equal(customer_cache_get(c, id, 20, &got), i < 2 ? BV_ENOTFOUND : 0);
    }
    customer_cache_destroy(c);
}

static void test_no_plaintext_in_entry(void **state)
{
    (void)state;
    customer_cache_t *c = NULL;
    bv_customer_profile_t p;
    assert_int_equal(customer_cache_create(16, 60 * SEC, &c), 0);
    make_profile(&p, ID_A, "zz-unmistakable-username");
    snprintf(p.phone, sizeof(p.phone), "+34699887766");
    assert_int_equal(customer_cache_put(c, &p, customer_cache_generation(c), 1), 0);
    entry_t *e = entry_of(c, ID_A);
    assert_non_null(e);
    const unsigned char *bytes = (const unsigned char *)e;
    size_t len = sizeof(*e) + e->ct_len;
    const char *needles[] = {"zz-unmistakable-username",
                             "unmistakable",
                             "Display zz",
                             "example.test",
                             "+34699887766",
                             "699887766"};
    for (size_t i = 0; i < sizeof(needles) / sizeof(needles[0]); i++)
        assert_null(memmem(bytes, len, needles[i], strlen(needles[i])));
    /* and it is really there in encrypted form: it decrypts back */
    bv_customer_profile_t got;
    assert_int_equal(customer_cache_get(c, ID_A, 2, &got), 0);
    assert_string_equal(got.username, "zz-unmistakable-username");
    customer_cache_destroy(c);
}

static void test_fresh_nonce_per_entry(void **state)
{
    (void)state;
    customer_cache_t *c = NULL;
    bv_customer_profile_t p;
    unsigned char n1[NONCE_LEN], ct1[64];
    assert_int_equal(customer_cache_create(16, 60 * SEC, &c), 0);
    make_profile(&p, ID_A, "alice");
    assert_int_equal(customer_cache_put(c, &p, customer_cache_generation(c), 1), 0);
    memcpy(n1, entry_of(c, ID_A)->nonce, NONCE_LEN);
    memcpy(ct1, entry_of(c, ID_A)->ct, 32);
    assert_int_equal(customer_cache_put(c, &p, customer_cache_generation(c), 1), 0);
    assert_memory_not_equal(entry_of(c, ID_A)->nonce, n1, NONCE_LEN);
    assert_memory_not_equal(entry_of(c, ID_A)->ct, ct1, 32); /* same plaintext, other ciphertext */
    customer_cache_destroy(c);
}

static void test_tampered_entry_is_a_miss(void **state)
{
    (void)state;
    customer_cache_t *c = NULL;
    bv_customer_profile_t p, got;
    assert_int_equal(customer_cache_create(16, 60 * SEC, &c), 0);
    make_profile(&p, ID_A, "alice");
    /* a flipped ciphertext bit */
    assert_int_equal(customer_cache_put(c, &p, customer_cache_generation(c), 1), 0);
    entry_of(c, ID_A)->ct[3] ^= 0x01;
    assert_int_equal(customer_cache_get(c, ID_A, 2, &got), BV_ENOTFOUND);
    assert_string_equal(got.username, "");       /* nothing of the entry leaks into out */
    assert_int_equal(customer_cache_size(c), 0); /* dropped */
    /* a flipped tag bit */
    assert_int_equal(customer_cache_put(c, &p, customer_cache_generation(c), 1), 0);
    entry_of(c, ID_A)->tag[0] ^= 0x80;
    assert_int_equal(customer_cache_get(c, ID_A, 2, &got), BV_ENOTFOUND);
    /* a changed nonce */
    assert_int_equal(customer_cache_put(c, &p, customer_cache_generation(c), 1), 0);
    entry_of(c, ID_A)->nonce[0] ^= 0x01;
    assert_int_equal(customer_cache_get(c, ID_A, 2, &got), BV_ENOTFOUND);
    /* a truncated ciphertext */
    assert_int_equal(customer_cache_put(c, &p, customer_cache_generation(c), 1), 0);
    entry_of(c, ID_A)->ct_len -= 1;
    assert_int_equal(customer_cache_get(c, ID_A, 2, &got), BV_ENOTFOUND);
    assert_int_equal(customer_cache_size(c), 0);
    customer_cache_destroy(c);
}

static void test_entry_moved_to_another_user_is_a_miss(void **state)
{
    (void)state;
    customer_cache_t *c = NULL;
    bv_customer_profile_t p, q, got;
    assert_int_equal(customer_cache_create(16, 60 * SEC, &c), 0);
    make_profile(&p, ID_A, "alice"); /* same lengths: the ciphertexts can be swapped */
    make_profile(&q, ID_B, "bobby");
    assert_int_equal(customer_cache_put(c, &p, customer_cache_generation(c), 1), 0);
    assert_int_equal(customer_cache_put(c, &q, customer_cache_generation(c), 1), 0);
    entry_t *a = entry_of(c, ID_A), *b = entry_of(c, ID_B);
    assert_int_equal(a->ct_len, b->ct_len);
    /* give B alice's sealed entry: the user id is the AAD, so it does not open as B */
    memcpy(b->nonce, a->nonce, NONCE_LEN);
    memcpy(b->tag, a->tag, TAG_LEN);
    memcpy(b->ct, a->ct, a->ct_len);
    assert_int_equal(customer_cache_get(c, ID_B, 2, &got), BV_ENOTFOUND);
    assert_int_equal(customer_cache_get(c, ID_A, 2, &got), 0);
    assert_string_equal(got.username, "alice");
    customer_cache_destroy(c);
}

static void test_random_key_per_cache(void **state)
{
    (void)state;
    customer_cache_t *c = NULL, *d = NULL;
    static const unsigned char zero[KEY_LEN];
    assert_int_equal(customer_cache_create(4, SEC, &c), 0);
    assert_int_equal(customer_cache_create(4, SEC, &d), 0);
    assert_memory_not_equal(c->key, zero, KEY_LEN);
    assert_memory_not_equal(c->key, d->key, KEY_LEN); /* made at create, never a constant */
    customer_cache_destroy(c);
    customer_cache_destroy(d);
}

typedef struct {
    customer_cache_t *c;
    int id;
    int errors;
} worker_t;

static void *worker(void *arg)
{
    worker_t *w = arg;
    bv_customer_profile_t p, got;
    char id[40], name[32];
    for (int i = 0; i < 2000; i++) {
        int k = (i * 7 + w->id) % 50;
        snprintf(id, sizeof(id), "01890a5d-ac96-774b-bcce-b3020990%04d", k);
        snprintf(name, sizeof(name), "user%d", k);
        if (customer_cache_get(w->c, id, 5, &got) == 0) {
            if (strcmp(got.username, name) != 0 || strcmp(got.id, id) != 0)
                w->errors++;
        } else {
            make_profile(&p, id, name);
            if (customer_cache_put(w->c, &p, customer_cache_generation(w->c), 5) != 0)
                w->errors++;
        }
        if (i % 97 == 0)
            customer_cache_forget(w->c, id);
    }
    return NULL;
}

static void test_threads(void **state)
{
    (void)state;
    customer_cache_t *c = NULL;
    pthread_t t[4];
    worker_t w[4];
    assert_int_equal(customer_cache_create(32, 60 * SEC, &c), 0); /* smaller than the key set: evictions */
    for (int i = 0; i < 4; i++) {
        w[i] = (worker_t){c, i, 0};
        assert_int_equal(pthread_create(&t[i], NULL, worker, &w[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(t[i], NULL);
        assert_int_equal(w[i].errors, 0);
    }
    assert_true(customer_cache_size(c) <= 32);
    customer_cache_destroy(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hit_and_miss),
        cmocka_unit_test(test_expiry),
        cmocka_unit_test(test_ttl_zero_disables),
        cmocka_unit_test(test_forget_and_generation),
        cmocka_unit_test(test_evicts_oldest),
        cmocka_unit_test(test_no_plaintext_in_entry),
        cmocka_unit_test(test_fresh_nonce_per_entry),
        cmocka_unit_test(test_tampered_entry_is_a_miss),
        cmocka_unit_test(test_entry_moved_to_another_user_is_a_miss),
        cmocka_unit_test(test_random_key_per_cache),
        cmocka_unit_test(test_threads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
