/* Unit tests of identity: Argon2id PHC strings (default parameters, verification,
 * tampered/oversized parameters refused), the password policy, input canonicalisation,
 * the throttle arithmetic (delays, lock, expiry) and the persisted lockout of
 * bv_identity_authenticate against a real store (unknown users treated like known ones). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <argon2.h>
#include <cmocka.h>

#include "base/config.h"
#include "identity/internal.h"
#include "store/store.h"

static void test_defaults_and_phc(void **state)
{
    (void)state;
    bv_identity_options_t o;
    char err[128], phc[BV_IDENTITY_PHC_MAX + 1];
    bv_config_t *cfg = NULL;
    unsetenv("BOVEDA_ARGON2_MEMORY_KIB");
    assert_int_equal(bv_config_load(NULL, &cfg, err, sizeof(err)), 0);
    assert_int_equal(bv_identity_options_load(cfg, &o, err, sizeof(err)), 0);
    bv_config_free(cfg);
    assert_int_equal(o.argon2.m_kib, 19456); /* 19 MiB */
    assert_int_equal(o.argon2.t_cost, 2);
    assert_int_equal(o.argon2.parallelism, 1);
    assert_int_equal(o.lockout.max_failures, 5);
    assert_int_equal(bv_identity_password_hash(&o.argon2, "correct horse battery", 21, phc), 0);
    assert_int_equal(strncmp(phc, "$argon2id$v=19$m=19456,t=2,p=1$", 31), 0);
    assert_int_equal(bv_identity_password_verify(phc, "correct horse battery", 21), 0);
    assert_int_equal(bv_identity_password_verify(phc, "correct horse batterx", 21), BV_EUNAUTHENTICATED);
    assert_int_equal(bv_identity_password_verify(phc, "correct horse battery", 20), BV_EUNAUTHENTICATED);
    assert_false(bv_identity_password_needs_rehash(phc, &o.argon2));
    bv_identity_argon2_t cheaper = {8192, 1, 1};
    assert_true(bv_identity_password_needs_rehash(phc, &cheaper));
    /* the same password hashes differently (fresh salt) */
    char phc2[BV_IDENTITY_PHC_MAX + 1];
    assert_int_equal(bv_identity_password_hash(&o.argon2, "correct horse battery", 21, phc2), 0);
    assert_string_not_equal(phc, phc2);
    /* libargon2's own encoder agrees with ours: its PHC string verifies here */
    char ref[128];
    const unsigned char salt[16] = "0123456789abcdef";
    assert_int_equal(argon2id_hash_encoded(1, 8192, 1, "reference pass", 14, salt, 16, 32, ref, sizeof(ref)),
                     ARGON2_OK);
    assert_int_equal(bv_identity_password_verify(ref, "reference pass", 14), 0);
    assert_int_equal(bv_identity_password_verify(ref, "reference pasS", 14), BV_EUNAUTHENTICATED);
    setenv("BOVEDA_ARGON2_MEMORY_KIB", "100", 1);
    assert_int_equal(bv_config_load(NULL, &cfg, err, sizeof(err)), BV_ECONFIG);
    assert_non_null(strstr(err, "BOVEDA_ARGON2_MEMORY_KIB"));
    unsetenv("BOVEDA_ARGON2_MEMORY_KIB");
}

/* The Argon2 work area is reused from a small pool (same size: same area), and results do
 * not depend on what the area held before. */
static void test_work_area_pool(void **state)
{
    (void)state;
    char a[BV_IDENTITY_PHC_MAX + 1], b[BV_IDENTITY_PHC_MAX + 1];
    bv_identity_argon2_t small = {8192, 1, 1}, other = {9216, 1, 1};
    identity_password_pool_release();
    assert_int_equal(identity_password_pool_size(), 0);
    assert_int_equal(bv_identity_password_hash(&small, "first password", 14, a), 0);
    assert_int_equal(identity_password_pool_size(), 1);
    for (int i = 0; i < 3; i++) { /* reused, not multiplied */
        assert_int_equal(bv_identity_password_verify(a, "first password", 14), 0);
        assert_int_equal(bv_identity_password_verify(a, "first passwore", 14), BV_EUNAUTHENTICATED);
        assert_int_equal(identity_password_pool_size(), 1);
    }
    assert_int_equal(bv_identity_password_hash(&other, "second password", 15, b), 0);
    assert_int_equal(identity_password_pool_size(), 2);
    assert_int_equal(bv_identity_password_verify(b, "second password", 15), 0);
    assert_int_equal(bv_identity_password_verify(a, "first password", 14), 0);
    assert_int_equal(identity_password_pool_size(), 2);
    identity_password_pool_release();
    assert_int_equal(identity_password_pool_size(), 0);
    assert_int_equal(bv_identity_password_verify(b, "second password", 15), 0);
}

static void test_phc_bounds(void **state)
{
    (void)state;
    bv_identity_argon2_t p = {8192, 1, 1};
    char phc[BV_IDENTITY_PHC_MAX + 1], bad[256];
    assert_int_equal(bv_identity_password_hash(&p, "a long enough password", 22, phc), 0);
    const char *tail = strchr(phc + 20, '$'); /* "$salt$hash" after the parameters */
    /* a tampered row asking for 4 GiB or 1000 passes is refused before any work */
    snprintf(bad, sizeof(bad), "$argon2id$v=19$m=4194304,t=1,p=1%s", tail);
    assert_int_equal(bv_identity_password_verify(bad, "a long enough password", 22), BV_EINVALID);
    snprintf(bad, sizeof(bad), "$argon2id$v=19$m=8192,t=1000,p=1%s", tail);
    assert_int_equal(bv_identity_password_verify(bad, "a long enough password", 22), BV_EINVALID);
    assert_int_equal(bv_identity_password_verify("$argon2i$v=19$m=8192,t=1,p=1$abc$def", "x", 1),
                     BV_EINVALID);
    assert_int_equal(bv_identity_password_verify("$argon2id$v=16$m=8192,t=1,p=1$abc$def", "x", 1),
                     BV_EINVALID);
    assert_int_equal(bv_identity_password_verify("", "x", 1), BV_EINVALID);
    bv_identity_argon2_t weak = {1024, 1, 1};
    assert_int_equal(bv_identity_password_hash(&weak, "a long enough password", 22, phc), BV_EINVALID);
}

static void test_policy_and_canonical(void **state)
{
    (void)state;
    char u[BV_IDENTITY_USERNAME_MAX + 1];
    const char *why = NULL;
    assert_int_equal(bv_identity_password_check("short", 5, &why), BV_EINVALID);
    assert_non_null(why);
    assert_int_equal(bv_identity_password_check("contraseña segura", strlen("contraseña segura"), NULL), 0);
    assert_int_equal(bv_identity_password_check("áéíóúáéíóú", strlen("áéíóúáéíóú"), NULL),
                     BV_EINVALID); /* 10 chars */
    assert_int_equal(bv_identity_password_check("with\ttab inside", 15, NULL), BV_EINVALID);
    assert_int_equal(bv_identity_password_check("bad \xff utf8 here", 15, NULL), BV_EINVALID);
    assert_int_equal(bv_identity_username_canonical("Ana.Maria", u), 0);
    assert_string_equal(u, "ana.maria");
    assert_int_equal(bv_identity_username_canonical("ab", u), BV_EINVALID);
    assert_int_equal(bv_identity_username_canonical(".ana", u), BV_EINVALID);
    assert_int_equal(bv_identity_username_canonical("ana maria", u), BV_EINVALID);
    assert_true(bv_identity_phone_valid("+34600111222"));
    assert_false(bv_identity_phone_valid("600111222"));
    assert_false(bv_identity_phone_valid("+0600111222"));
    assert_false(bv_identity_phone_valid("+3460011122233344"));
    assert_true(bv_identity_email_valid("ana@example.com"));
    assert_false(bv_identity_email_valid("ana@localhost"));
    assert_false(bv_identity_email_valid("a b@example.com"));
    assert_false(bv_identity_email_valid("@example.com"));
}

static void test_throttle(void **state)
{
    (void)state;
    bv_identity_lockout_t p = {.max_failures = 5,
                               .ip_max_failures = 50,
                               .free_failures = 2,
                               .delay_base_us = 1000000,
                               .delay_max_us = 4000000,
                               .lock_us = 900000000};
    bv_identity_throttle_t t = {0};
    int64_t now = 1000000000000;
    assert_int_equal(bv_identity_throttle_wait(&p, 5, 2, &t, now), 0);
    bv_identity_throttle_fail(&p, 5, &t, now);
    bv_identity_throttle_fail(&p, 5, &t, now);
    assert_int_equal(bv_identity_throttle_wait(&p, 5, 2, &t, now), 0); /* two free failures */
    bv_identity_throttle_fail(&p, 5, &t, now);
    assert_int_equal(bv_identity_throttle_wait(&p, 5, 2, &t, now), 1000000); /* 1 s */
    assert_int_equal(bv_identity_throttle_wait(&p, 5, 2, &t, now + 1000000), 0);
    bv_identity_throttle_fail(&p, 5, &t, now + 1000000);
    assert_int_equal(bv_identity_throttle_wait(&p, 5, 2, &t, now + 1000000), 2000000); /* doubled */
    bv_identity_throttle_fail(&p, 5, &t, now + 3000000);                               /* the 5th: locked */
    assert_int_equal(t.locked_until, now + 3000000 + 900000000);
    assert_int_equal(bv_identity_throttle_wait(&p, 5, 2, &t, now + 3000001), 900000000 - 1);
    /* the lock runs out: afresh */
    assert_int_equal(bv_identity_throttle_wait(&p, 5, 2, &t, now + 3000000 + 900000000), 0);
    assert_int_equal(t.failures, 0);
    /* the delay is capped */
    bv_identity_throttle_t c = {.failures = 4, .last_failure_at = now};
    p.max_failures = 100;
    assert_int_equal(bv_identity_throttle_wait(&p, 100, 2, &c, now), 2000000);
    c.failures = 30;
    assert_int_equal(bv_identity_throttle_wait(&p, 100, 2, &c, now), 4000000);
    /* source IPs have no delay (many customers behind one NAT), only their lock */
    bv_identity_throttle_t ip = {.failures = 10, .last_failure_at = now};
    assert_int_equal(bv_identity_throttle_wait(&p, 50, 50, &ip, now), 0);
    /* old failures are forgotten after the window */
    assert_int_equal(bv_identity_throttle_wait(&p, 100, 2, &c, now + 900000000), 0);
    assert_int_equal(c.failures, 0);
}

/* ---- against a store ---- */
typedef struct {
    char dir[128];
    bv_store_t *st;
    bv_identity_t *id;
} fx_t;

static int setup(void **state)
{
    fx_t *f = calloc(1, sizeof(*f));
    char db[256];
    snprintf(f->dir, sizeof(f->dir), "/tmp/bv-identity-test-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(db, sizeof(db), "%s/boveda.db", f->dir);
    bv_store_options_t opt = {.path = db, .batch_max = 64, .busy_timeout_ms = 5000};
    assert_int_equal(bv_store_open(&opt, &f->st), 0);
    assert_int_equal(bv_store_migrate(f->st, NULL), 0);
    bv_identity_options_t o = {.argon2 = {8192, 1, 1},
                               .lockout = {.max_failures = 3,
                                           .ip_max_failures = 1000,
                                           .free_failures = 10,
                                           .delay_base_us = 0,
                                           .delay_max_us = 0,
                                           .lock_us = 600000000}};
    assert_int_equal(bv_identity_open(f->st, &o, &f->id), 0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx_t *f = *state;
    char cmd[200];
    bv_identity_close(f->id);
    bv_store_close(f->st);
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
    if (system(cmd) != 0)
        fprintf(stderr, "cannot remove %s\n", f->dir);
    free(f);
    return 0;
}

#define PW "correct horse battery staple"

static void test_users(void **state)
{
    fx_t *f = *state;
    bv_identity_user_t u, g;
    const char *field = NULL;
    bv_identity_new_user_t r = {"Ana", "ana@example.com", "+34600111222", "Ana P.", NULL};
    assert_int_equal(bv_identity_user_create(f->id, &r, PW, strlen(PW), "test", &u, &field), 0);
    assert_string_equal(u.username, "ana");
    assert_string_equal(u.status, BV_IDENTITY_ACTIVE);
    assert_int_equal(u.id[14], '7'); /* UUIDv7 */
    assert_int_equal(bv_identity_user_find(f->id, "ANA", &g), 0);
    assert_string_equal(g.id, u.id);
    bv_identity_new_user_t dup = {"ana", NULL, NULL, NULL, NULL};
    assert_int_equal(bv_identity_user_create(f->id, &dup, PW, strlen(PW), "test", &g, &field), BV_ECONFLICT);
    assert_string_equal(field, "username");
    bv_identity_new_user_t dupmail = {"ana2", "ana@example.com", NULL, NULL, NULL};
    assert_int_equal(bv_identity_user_create(f->id, &dupmail, PW, strlen(PW), "test", &g, &field),
                     BV_ECONFLICT);
    assert_string_equal(field, "email");
    bv_identity_new_user_t badphone = {"ana3", NULL, "12345", NULL, NULL};
    assert_int_equal(bv_identity_user_create(f->id, &badphone, PW, strlen(PW), "test", &g, &field),
                     BV_EINVALID);
    assert_string_equal(field, "phone");
    assert_int_equal(bv_identity_user_create(f->id, &(bv_identity_new_user_t){"ana4", NULL, NULL, NULL, NULL},
                                             "short", 5, "test", &g, &field),
                     BV_EINVALID);
    assert_string_equal(field, "password");
    /* the password is never stored in clear */
    json_t *j = bv_identity_user_json(&u);
    char *s = bv_json_dump(j);
    assert_null(strstr(s, PW));
    free(s);
    json_decref(j);
}

static bv_login_outcome_t login(fx_t *f, const char *user, const char *pw, const char *ip)
{
    bv_login_result_t r;
    assert_int_equal(bv_identity_authenticate(f->id, user, pw, strlen(pw), ip, NULL, &r), 0);
    return r.outcome;
}

static void test_lockout(void **state)
{
    fx_t *f = *state;
    bv_identity_user_t u;
    bv_identity_new_user_t r = {"bob", NULL, NULL, NULL, NULL};
    assert_int_equal(bv_identity_user_create(f->id, &r, PW, strlen(PW), "test", &u, NULL), 0);
    assert_int_equal(login(f, "bob", PW, "10.0.0.1"), BV_LOGIN_OK);
    assert_int_equal(login(f, "bob", "wrong password!", "10.0.0.1"), BV_LOGIN_INVALID);
    assert_int_equal(login(f, "ghost", "wrong password!", "10.0.0.1"), BV_LOGIN_INVALID); /* same outcome */
    assert_int_equal(login(f, "bob", "wrong password!", "10.0.0.2"), BV_LOGIN_INVALID);
    assert_int_equal(login(f, "bob", "wrong password!", "10.0.0.3"), BV_LOGIN_INVALID); /* the 3rd: locked */
    assert_int_equal(login(f, "bob", PW, "10.0.0.4"), BV_LOGIN_THROTTLED); /* per account, any IP */
    /* unknown users lock the same way */
    assert_int_equal(login(f, "ghost", "x-wrong-pass", "10.0.0.1"), BV_LOGIN_INVALID);
    assert_int_equal(login(f, "ghost", "x-wrong-pass", "10.0.0.1"), BV_LOGIN_INVALID);
    assert_int_equal(login(f, "ghost", "x-wrong-pass", "10.0.0.1"), BV_LOGIN_THROTTLED);
    /* a password reset clears the lock */
    assert_int_equal(bv_identity_user_set_password(f->id, u.id, "another good password", 21, "test"), 0);
    assert_int_equal(login(f, "bob", PW, "10.0.0.4"), BV_LOGIN_INVALID);
    assert_int_equal(login(f, "bob", "another good password", "10.0.0.4"), BV_LOGIN_OK);
    /* an operator lock: the right password gives INACTIVE */
    assert_int_equal(bv_identity_user_set_status(f->id, u.id, BV_IDENTITY_LOCKED, "test"), 0);
    assert_int_equal(login(f, "bob", "another good password", "10.0.0.4"), BV_LOGIN_INACTIVE);
    assert_int_equal(bv_identity_user_set_status(f->id, u.id, BV_IDENTITY_ACTIVE, "test"), 0);
    assert_int_equal(login(f, "bob", "another good password", "10.0.0.4"), BV_LOGIN_OK);
}

static void test_ip_limit(void **state)
{
    fx_t *f = *state;
    f->id->opt.lockout.ip_max_failures = 4;
    f->id->opt.lockout.max_failures = 100;
    bv_identity_user_t u;
    bv_identity_new_user_t r = {"carol", NULL, NULL, NULL, NULL};
    assert_int_equal(bv_identity_user_create(f->id, &r, PW, strlen(PW), "test", &u, NULL), 0);
    /* spraying many accounts from one address trips the IP lock */
    assert_int_equal(login(f, "u1", "wrong password!", "192.0.2.9"), BV_LOGIN_INVALID);
    assert_int_equal(login(f, "u2", "wrong password!", "192.0.2.9"), BV_LOGIN_INVALID);
    assert_int_equal(login(f, "u3", "wrong password!", "192.0.2.9"), BV_LOGIN_INVALID);
    assert_int_equal(login(f, "u4", "wrong password!", "192.0.2.9"), BV_LOGIN_INVALID);
    assert_int_equal(login(f, "carol", PW, "192.0.2.9"), BV_LOGIN_THROTTLED);
    assert_int_equal(login(f, "carol", PW, "192.0.2.10"), BV_LOGIN_OK);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults_and_phc),
        cmocka_unit_test(test_phc_bounds),
        cmocka_unit_test(test_work_area_pool),
        cmocka_unit_test(test_policy_and_canonical),
        cmocka_unit_test(test_throttle),
        cmocka_unit_test_setup_teardown(test_users, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lockout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ip_limit, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
