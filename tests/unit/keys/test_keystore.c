/* The key-store suite, written once and run against both adapters: group "keys/file"
 * (master key in data_dir/keys/master.key) and group "keys/pkcs11" (SoftHSM2, initialised
 * here in a temporary directory by tests/softhsm/init.sh). Each test gets a fresh data
 * directory and a freshly migrated store; the SoftHSM token is shared by the group. */
// clang-format off
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
// clang-format on

#include <dlfcn.h>
#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <p11-kit-1/p11-kit/pkcs11.h>

#include "base/errors.h"
#include "base/log.h"
#include "keys/keys_app.h"
#include "keys/keys_internal.h"
#include <openssl/hmac.h>
#include "store/store.h"

#define SOFTHSM_MODULE "/usr/lib/softhsm/libsofthsm2.so"
#define TOKEN_LABEL    "boveda-test"

typedef struct {
    const char *adapter;
    char root[256]; /* group temp dir */
    char pin_file[300];
} group_t;

typedef struct {
    group_t *g;
    char dir[320];
    bv_config_t cfg;
    bv_store_t *store;
    bv_keys_t *keys;
} fx_t;

static void rm_rf(const char *path)
{
    char cmd[700];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", path);
    assert_int_equal(system(cmd), 0);
}

static void make_config(fx_t *f)
{
    memset(&f->cfg, 0, sizeof(f->cfg));
    f->cfg.data_dir = f->dir;
    f->cfg.keystore = (char *)f->g->adapter;
    f->cfg.pkcs11_module = SOFTHSM_MODULE;
    f->cfg.pkcs11_token = TOKEN_LABEL;
    f->cfg.pkcs11_pin = "";
    f->cfg.pkcs11_pin_file = f->g->pin_file;
}

static int open_keys(fx_t *f)
{
    return bv_keys_open(&f->cfg, f->store, &f->keys);
}

static void reopen_keys(fx_t *f)
{
    bv_keys_close(f->keys);
    f->keys = NULL;
    assert_int_equal(open_keys(f), 0);
}

static int group_setup_file(void **state)
{
    static group_t g = {.adapter = "file"};
    snprintf(g.root, sizeof(g.root), "/tmp/bv-keys-file-XXXXXX");
    if (mkdtemp(g.root) == NULL)
        return -1;
    *state = &g;
    return 0;
}

static int group_setup_pkcs11(void **state)
{
    static group_t g = {.adapter = "pkcs11"};
    char cmd[1024], conf[400];
    const char *src = getenv("BOVEDA_SOURCE_DIR");
    snprintf(g.root, sizeof(g.root), "/tmp/bv-keys-hsm-XXXXXX");
    if (mkdtemp(g.root) == NULL)
        return -1;
    char here[512];
    if (src == NULL) { /* run by hand: find the script next to this file */
        snprintf(here, sizeof(here), "%s", __FILE__);
        char *cut = strstr(here, "/tests/unit/keys/");
        if (cut != NULL)
            *cut = '\0';
        src = here;
    }
    snprintf(cmd, sizeof(cmd), "sh '%s/tests/softhsm/init.sh' '%s/hsm' %s 1234 5678 >/dev/null", src, g.root,
             TOKEN_LABEL);
    if (system(cmd) != 0) {
        fprintf(stderr, "softhsm init failed: %s\n", cmd);
        return -1;
    }
    snprintf(conf, sizeof(conf), "%s/hsm/softhsm2.conf", g.root);
    setenv("SOFTHSM2_CONF", conf, 1);
    snprintf(g.pin_file, sizeof(g.pin_file), "%s/pin", g.root);
    FILE *fp = fopen(g.pin_file, "w");
    if (fp == NULL)
        return -1;
    fputs("1234\n", fp);
    fclose(fp);
    *state = &g;
    return 0;
}

static int group_teardown(void **state)
{
    group_t *g = *state;
    char cmd[400];
    if (g == NULL)
        return -1;
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", g->root);
    return system(cmd) == 0 ? 0 : -1;
}

static int setup(void **state)
{
    static int counter;
    fx_t *f = calloc(1, sizeof(*f));
    char db[400];
    f->g = *state;
    snprintf(f->dir, sizeof(f->dir), "%s/t%d", f->g->root, ++counter);
    if (mkdir(f->dir, 0700) != 0)
        return -1;
    make_config(f);
    snprintf(db, sizeof(db), "%s/boveda.db", f->dir);
    bv_store_options_t opt = {.path = db, .batch_max = 64, .busy_timeout_ms = 5000};
    if (bv_store_open(&opt, &f->store) != 0 || bv_store_migrate(f->store, NULL) != 0)
        return -1;
    if (open_keys(f) != 0)
        return -1;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx_t *f = *state;
    group_t *g = f->g;
    bv_keys_close(f->keys);
    bv_store_close(f->store);
    rm_rf(f->dir);
    free(f);
    *state = g;
    return 0;
}

static const bv_aad_t AAD = {"customers", "01900000-0000-7000-8000-000000000001", "national_id"};

static void encrypt_str(fx_t *f, const char *purpose, const bv_aad_t *aad, const char *s, bv_buf_t *out)
{
    bv_buf_reset(out);
    assert_int_equal(bv_keys_encrypt(f->keys, purpose, aad, s, strlen(s), out), 0);
}

static int decrypt_rc(fx_t *f, const bv_aad_t *aad, const bv_buf_t *ct)
{
    bv_buf_t pt = {0};
    int rc = bv_keys_decrypt(f->keys, aad, ct->data, ct->len, &pt);
    bv_buf_free(&pt);
    return rc;
}

static void assert_decrypts_to(fx_t *f, const bv_aad_t *aad, const bv_buf_t *ct, const char *expect)
{
    bv_buf_t pt = {0};
    assert_int_equal(bv_keys_decrypt(f->keys, aad, ct->data, ct->len, &pt), 0);
    assert_int_equal(pt.len, strlen(expect));
    assert_memory_equal(pt.data, expect, pt.len);
    bv_buf_free(&pt);
}

/* ---- envelope encryption ---- */

static void test_roundtrip_and_format(void **state)
{
    fx_t *f = *state;
    bv_buf_t a = {0}, b = {0};
    char purpose[65];
    int version = 0;
    encrypt_str(f, "pii", &AAD, "X1234567-Z", &a);
    encrypt_str(f, "pii", &AAD, "X1234567-Z", &b);
    /* header: format 1, purpose "pii", version 1; 12-byte nonce; ciphertext; 16-byte tag */
    assert_int_equal(a.len, 1 + 1 + 3 + 4 + 12 + 10 + 16);
    assert_int_equal((unsigned char)a.data[0], 1);
    assert_int_equal((unsigned char)a.data[1], 3);
    assert_memory_equal(a.data + 2, "pii", 3);
    assert_int_equal(bv_keys_blob_info(a.data, a.len, purpose, &version), 0);
    assert_string_equal(purpose, "pii");
    assert_int_equal(version, 1);
    assert_memory_not_equal(a.data + 9, b.data + 9, 12); /* random nonces */
    assert_memory_not_equal(a.data + 21, b.data + 21, 10);
    assert_null(memmem(a.data, a.len, "X1234567", 8));
    assert_decrypts_to(f, &AAD, &a, "X1234567-Z");
    assert_decrypts_to(f, &AAD, &b, "X1234567-Z");
    /* empty plaintext and a large one */
    bv_buf_reset(&a);
    assert_int_equal(bv_keys_encrypt(f->keys, "pii", &AAD, "", 0, &a), 0);
    assert_decrypts_to(f, &AAD, &a, "");
    char big[5000];
    memset(big, 'q', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    encrypt_str(f, "photos", &AAD, big, &a);
    assert_decrypts_to(f, &AAD, &a, big);
    /* survives closing the key store (cache wiped, master key reloaded) */
    reopen_keys(f);
    assert_decrypts_to(f, &AAD, &a, big);
    /* bad purposes and missing context are refused */
    assert_int_equal(bv_keys_encrypt(f->keys, "PII", &AAD, "x", 1, &a), BV_EINVALID);
    assert_int_equal(bv_keys_encrypt(f->keys, "", &AAD, "x", 1, &a), BV_EINVALID);
    bv_aad_t no_row = {"customers", NULL, "national_id"};
    assert_int_equal(bv_keys_encrypt(f->keys, "pii", &no_row, "x", 1, &a), BV_EINVALID);
    bv_buf_free(&a);
    bv_buf_free(&b);
}

static void test_tampering_fails(void **state)
{
    fx_t *f = *state;
    bv_buf_t ct = {0}, t = {0};
    encrypt_str(f, "pii", &AAD, "0123456789abcdef0123456789abcdef", &ct);
    size_t hlen = 2 + 3 + 4;
    /* wrong tag */
    bv_buf_reset(&t);
    bv_buf_append(&t, ct.data, ct.len);
    t.data[t.len - 1] ^= 0x01;
    assert_int_equal(decrypt_rc(f, &AAD, &t), BV_EINTEGRITY);
    /* flipped ciphertext and nonce bytes */
    t.data[t.len - 1] ^= 0x01;
    t.data[hlen + 12 + 5] ^= 0x40;
    assert_int_equal(decrypt_rc(f, &AAD, &t), BV_EINTEGRITY);
    t.data[hlen + 12 + 5] ^= 0x40;
    t.data[hlen + 3] ^= 0x01;
    assert_int_equal(decrypt_rc(f, &AAD, &t), BV_EINTEGRITY);
    t.data[hlen + 3] ^= 0x01;
    assert_int_equal(decrypt_rc(f, &AAD, &t), 0);
    /* truncated: one byte short, tag gone, header only, empty */
    size_t lens[] = {ct.len - 1, ct.len - 16, hlen + 12 + 15, hlen, 1, 0};
    for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
        bv_buf_t p = {0};
        assert_int_equal(bv_keys_decrypt(f->keys, &AAD, ct.data, lens[i], &p), BV_EINTEGRITY);
        assert_int_equal(p.len, 0);
        bv_buf_free(&p);
    }
    /* wrong associated data: other table, other row, other field */
    bv_aad_t other_table = {"employees", AAD.row_id, AAD.field};
    bv_aad_t other_row = {AAD.table, "01900000-0000-7000-8000-000000000002", AAD.field};
    bv_aad_t other_field = {AAD.table, AAD.row_id, "phone"};
    assert_int_equal(decrypt_rc(f, &other_table, &ct), BV_EINTEGRITY);
    assert_int_equal(decrypt_rc(f, &other_row, &ct), BV_EINTEGRITY);
    assert_int_equal(decrypt_rc(f, &other_field, &ct), BV_EINTEGRITY);
    /* boundary confusion: the same bytes split differently between the parts */
    bv_aad_t shifted = {"customers0", "1900000-0000-7000-8000-000000000001", "national_id"};
    assert_int_equal(decrypt_rc(f, &shifted, &ct), BV_EINTEGRITY);
    /* every header byte is bound: format version, purpose length, purpose, key version */
    for (size_t i = 0; i < hlen; i++) {
        bv_buf_reset(&t);
        bv_buf_append(&t, ct.data, ct.len);
        t.data[i] ^= 0x01;
        assert_int_equal(decrypt_rc(f, &AAD, &t), BV_EINTEGRITY);
    }
    /* unknown format version */
    bv_buf_reset(&t);
    bv_buf_append(&t, ct.data, ct.len);
    t.data[0] = 2;
    assert_int_equal(decrypt_rc(f, &AAD, &t), BV_EINTEGRITY);
    /* a key version that does not exist */
    t.data[0] = 1;
    t.data[hlen - 1] = 9;
    assert_int_equal(decrypt_rc(f, &AAD, &t), BV_EINTEGRITY);
    /* another purpose's key with the same header shape: relabelled ciphertext */
    bv_buf_t other = {0};
    encrypt_str(f, "pix", &AAD, "seed", &other);
    bv_buf_reset(&t);
    bv_buf_append(&t, ct.data, ct.len);
    memcpy(t.data + 2, "pix", 3);
    assert_int_equal(decrypt_rc(f, &AAD, &t), BV_EINTEGRITY);
    assert_decrypts_to(f, &AAD, &ct, "0123456789abcdef0123456789abcdef");
    bv_buf_free(&ct);
    bv_buf_free(&t);
    bv_buf_free(&other);
}

static void test_data_key_rotation(void **state)
{
    fx_t *f = *state;
    bv_buf_t v1 = {0}, v2 = {0}, v3 = {0};
    char purpose[65];
    int version = 0, nv = 0;
    encrypt_str(f, "pii", &AAD, "old secret", &v1);
    assert_int_equal(bv_keys_rotate(f->keys, "pii", &nv), 0);
    assert_int_equal(nv, 2);
    encrypt_str(f, "pii", &AAD, "new secret", &v2);
    assert_int_equal(bv_keys_blob_info(v2.data, v2.len, purpose, &version), 0);
    assert_int_equal(version, 2);
    assert_decrypts_to(f, &AAD, &v1, "old secret");
    assert_decrypts_to(f, &AAD, &v2, "new secret");
    /* other purposes are untouched */
    encrypt_str(f, "otp", &AAD, "x", &v3);
    assert_int_equal(bv_keys_blob_info(v3.data, v3.len, purpose, &version), 0);
    assert_int_equal(version, 1);
    /* a second process (fresh cache) sees the new version and decrypts both */
    reopen_keys(f);
    encrypt_str(f, "pii", &AAD, "newer", &v3);
    assert_int_equal(bv_keys_blob_info(v3.data, v3.len, purpose, &version), 0);
    assert_int_equal(version, 2);
    assert_decrypts_to(f, &AAD, &v1, "old secret");
    assert_decrypts_to(f, &AAD, &v2, "new secret");
    assert_int_equal(bv_keys_rotate(f->keys, "Bad Purpose", NULL), BV_EINVALID);
    bv_buf_free(&v1);
    bv_buf_free(&v2);
    bv_buf_free(&v3);
}

typedef struct {
    int n;
    int master_versions[16];
    bv_buf_t wrapped[16];
} dk_dump_t;

static int tx_dump_dks(bv_tx_t *tx, void *arg)
{
    dk_dump_t *d = arg;
    bv_stmt_t *s =
        bv_tx_prepare(tx, "SELECT master_version, wrapped FROM keys_data ORDER BY kind, purpose, version");
    int rc;
    while ((rc = bv_stmt_step(s)) == BV_ROW && d->n < 16) {
        size_t len = 0;
        const void *p = bv_stmt_blob(s, 1, &len);
        d->master_versions[d->n] = (int)bv_stmt_int64(s, 0);
        bv_buf_append(&d->wrapped[d->n], p, len);
        d->n++;
    }
    bv_stmt_reset(s);
    return rc < 0 ? rc : 0;
}

static void dump_free(dk_dump_t *d)
{
    for (int i = 0; i < d->n; i++)
        bv_buf_free(&d->wrapped[i]);
}

static void test_master_rotation_rewraps(void **state)
{
    fx_t *f = *state;
    bv_buf_t a = {0}, b = {0};
    unsigned char mac1[32], mac2[32];
    dk_dump_t before = {0}, after = {0};
    int version = 0, n = 0;
    encrypt_str(f, "pii", &AAD, "alpha", &a);
    assert_int_equal(bv_keys_rotate(f->keys, "pii", NULL), 0);
    encrypt_str(f, "pii", &AAD, "beta", &b);
    assert_int_equal(bv_keys_hmac(f->keys, "otp", "123456", 6, mac1), 0);
    assert_int_equal(bv_store_read(f->store, tx_dump_dks, &before), 0);
    assert_int_equal(before.n, 3);
    assert_int_equal(bv_keys_rotate_master(f->keys, &version, &n), 0);
    assert_int_equal(version, 2);
    assert_int_equal(n, 3);
    assert_int_equal(bv_store_read(f->store, tx_dump_dks, &after), 0);
    assert_int_equal(after.n, 3);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(before.master_versions[i], 1);
        assert_int_equal(after.master_versions[i], 2);
        assert_false(before.wrapped[i].len == after.wrapped[i].len &&
                     memcmp(before.wrapped[i].data, after.wrapped[i].data, before.wrapped[i].len) == 0);
    }
    /* with a cold cache every data key is unwrapped by the new master version */
    reopen_keys(f);
    assert_decrypts_to(f, &AAD, &a, "alpha");
    assert_decrypts_to(f, &AAD, &b, "beta");
    assert_int_equal(bv_keys_hmac(f->keys, "otp", "123456", 6, mac2), 0);
    assert_memory_equal(mac1, mac2, 32);
    json_t *inv = NULL;
    assert_int_equal(bv_keys_list(f->keys, &inv), 0);
    assert_int_equal(json_integer_value(json_object_get(inv, "master_version")), 2);
    assert_int_equal(json_array_size(json_object_get(inv, "masters")), 2);
    assert_string_equal(json_string_value(json_object_get(inv, "adapter")), f->g->adapter);
    json_t *dks = json_object_get(inv, "data_keys");
    assert_int_equal(json_array_size(dks), 3);
    size_t i;
    json_t *e;
    json_array_foreach(dks, i, e)
    {
        assert_int_equal(json_integer_value(json_object_get(e, "master_version")), 2);
        assert_null(json_object_get(e, "wrapped")); /* never key material */
    }
    json_decref(inv);
    /* a data key wrapped under the new master is created under it too */
    bv_buf_reset(&a);
    encrypt_str(f, "newpurpose", &AAD, "gamma", &a);
    dump_free(&after);
    memset(&after, 0, sizeof(after));
    assert_int_equal(bv_store_read(f->store, tx_dump_dks, &after), 0);
    for (int j = 0; j < after.n; j++)
        assert_int_equal(after.master_versions[j], 2);
    dump_free(&before);
    dump_free(&after);
    bv_buf_free(&a);
    bv_buf_free(&b);
}

static void test_hmac(void **state)
{
    fx_t *f = *state;
    unsigned char a[32], b[32], c[32], d[32];
    assert_int_equal(bv_keys_hmac(f->keys, "otp", "123456", 6, a), 0);
    assert_int_equal(bv_keys_hmac(f->keys, "otp", "123456", 6, b), 0);
    assert_memory_equal(a, b, 32);
    assert_int_equal(bv_keys_hmac(f->keys, "otp", "123457", 6, c), 0);
    assert_memory_not_equal(a, c, 32);
    assert_int_equal(bv_keys_hmac(f->keys, "token-lookup", "123456", 6, d), 0);
    assert_memory_not_equal(a, d, 32);
    /* it is HMAC-SHA256 with the purpose's HMAC key, whatever the code path (stored MACs
     * must keep matching): the first call keys a context, later ones copy it */
    unsigned char key[BV_KEYS_KEY_LEN], want[32];
    unsigned int wl = 0;
    int version = 0;
    assert_int_equal(bv_keys_dk_newest(f->keys, "hmac", "otp", &version, key), 0);
    assert_non_null(HMAC(EVP_sha256(), key, sizeof(key), (const unsigned char *)"123456", 6, want, &wl));
    assert_memory_equal(a, want, 32);
    assert_memory_equal(b, want, 32);
    /* the HMAC key is not the field key of the same purpose, and it persists */
    reopen_keys(f);
    assert_int_equal(bv_keys_hmac(f->keys, "otp", "123456", 6, b), 0);
    assert_memory_equal(a, b, 32);
    assert_int_equal(bv_keys_hmac(f->keys, "OTP", "1", 1, b), BV_EINVALID);
}

/* Random bytes come from the store's generator (the HSM's with pkcs11): not constant,
 * not zero, every length served, bounds refused. */
static void test_random(void **state)
{
    fx_t *f = *state;
    unsigned char a[64], b[64], zero[64] = {0};
    assert_int_equal(bv_keys_random(f->keys, a, sizeof(a)), 0);
    assert_int_equal(bv_keys_random(f->keys, b, sizeof(b)), 0);
    assert_memory_not_equal(a, b, sizeof(a));
    assert_memory_not_equal(a, zero, sizeof(a));
    unsigned char one;
    assert_int_equal(bv_keys_random(f->keys, &one, 1), 0);
    static unsigned char big[1025];
    assert_int_equal(bv_keys_random(f->keys, big, 1024), 0);
    assert_int_equal(bv_keys_random(f->keys, big, 1025), BV_EINVALID);
    assert_int_equal(bv_keys_random(f->keys, big, 0), BV_EINVALID);
    assert_int_equal(bv_keys_random(f->keys, NULL, 8), BV_EINVALID);
}

/* ---- signing ---- */

static size_t b64url_decode(const char *s, unsigned char *out)
{
    size_t n = 0, bits = 0;
    uint32_t acc = 0;
    for (; *s; s++) {
        const char *alpha = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        const char *p = strchr(alpha, *s);
        assert_non_null(p);
        acc = (acc << 6) | (uint32_t)(p - alpha);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[n++] = (unsigned char)(acc >> bits);
        }
    }
    return n;
}

static json_t *jwk_by_kid(json_t *jwks, const char *kid)
{
    size_t i;
    json_t *e;
    json_array_foreach(json_object_get(jwks, "keys"), i, e)
    {
        if (strcmp(json_string_value(json_object_get(e, "kid")), kid) == 0)
            return e;
    }
    return NULL;
}

/* Builds the public key from the JWK alone and verifies with it (independent of the cache). */
static int verify_with_jwk(json_t *jwk, const char *data, const bv_buf_t *sig)
{
    EVP_PKEY *pub = NULL;
    unsigned char a[600], b[600];
    int rc;
    if (strcmp(json_string_value(json_object_get(jwk, "kty")), "EC") == 0) {
        a[0] = 0x04;
        assert_int_equal(b64url_decode(json_string_value(json_object_get(jwk, "x")), a + 1), 32);
        assert_int_equal(b64url_decode(json_string_value(json_object_get(jwk, "y")), a + 33), 32);
        assert_int_equal(bv_keys_pub_from_ec_point(a, 65, &pub), 0);
        rc = bv_keys_verify_with(pub, BV_KEYS_ALG_ES256, data, strlen(data), sig->data, sig->len);
    } else {
        size_t nl = b64url_decode(json_string_value(json_object_get(jwk, "n")), a);
        size_t el = b64url_decode(json_string_value(json_object_get(jwk, "e")), b);
        assert_true(nl >= 256);
        assert_int_equal(el, 3);
        assert_memory_equal(b, "\x01\x00\x01", 3);
        assert_int_equal(bv_keys_pub_from_rsa(a, nl, b, el, &pub), 0);
        rc = bv_keys_verify_with(pub, BV_KEYS_ALG_RS256, data, strlen(data), sig->data, sig->len);
    }
    EVP_PKEY_free(pub);
    return rc;
}

static void test_es256_sign_verify_jwks(void **state)
{
    fx_t *f = *state;
    bv_buf_t sig = {0}, sig2 = {0};
    char kid[64], kid2[64];
    const char *msg = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiIxIn0";
    assert_int_equal(bv_keys_sign(f->keys, "ES256", msg, strlen(msg), &sig, kid), 0);
    assert_int_equal(sig.len, 64);
    assert_int_equal(bv_keys_verify(f->keys, kid, msg, strlen(msg), sig.data, sig.len), 0);
    assert_int_equal(bv_keys_verify(f->keys, kid, "other", 5, sig.data, sig.len), BV_EINTEGRITY);
    sig.data[10] ^= 1;
    assert_int_equal(bv_keys_verify(f->keys, kid, msg, strlen(msg), sig.data, sig.len), BV_EINTEGRITY);
    sig.data[10] ^= 1;
    assert_int_equal(bv_keys_verify(f->keys, kid, msg, strlen(msg), sig.data, 63), BV_EINTEGRITY);
    assert_int_equal(bv_keys_verify(f->keys, "no-such-kid", msg, strlen(msg), sig.data, sig.len),
                     BV_ENOTFOUND);
    /* same active key for the next signature (ECDSA is randomised: different bytes) */
    assert_int_equal(bv_keys_sign(f->keys, "ES256", msg, strlen(msg), &sig2, kid2), 0);
    assert_string_equal(kid, kid2);
    assert_memory_not_equal(sig.data, sig2.data, 64);
    /* JWKS: the active key and its published successor, public members only */
    json_t *jwks = NULL;
    assert_int_equal(bv_keys_jwks(f->keys, &jwks), 0);
    json_t *keys = json_object_get(jwks, "keys");
    assert_true(json_is_array(keys));
    assert_int_equal(json_array_size(keys), 2);
    size_t i;
    json_t *e;
    json_array_foreach(keys, i, e)
    {
        assert_string_equal(json_string_value(json_object_get(e, "kty")), "EC");
        assert_string_equal(json_string_value(json_object_get(e, "crv")), "P-256");
        assert_string_equal(json_string_value(json_object_get(e, "alg")), "ES256");
        assert_string_equal(json_string_value(json_object_get(e, "use")), "sig");
        assert_int_equal(strlen(json_string_value(json_object_get(e, "x"))), 43);
        assert_int_equal(strlen(json_string_value(json_object_get(e, "y"))), 43);
        assert_null(json_object_get(e, "d"));
        assert_int_equal(json_object_size(e), 7);
    }
    json_t *jwk = jwk_by_kid(jwks, kid);
    assert_non_null(jwk);
    assert_int_equal(verify_with_jwk(jwk, msg, &sig), 0);
    json_decref(jwks);
    /* survives a restart (file: the private key is decrypted from the store) */
    reopen_keys(f);
    bv_buf_reset(&sig2);
    assert_int_equal(bv_keys_sign(f->keys, "ES256", msg, strlen(msg), &sig2, kid2), 0);
    assert_string_equal(kid, kid2);
    assert_int_equal(bv_keys_verify(f->keys, kid, msg, strlen(msg), sig2.data, sig2.len), 0);
    assert_int_equal(bv_keys_sign(f->keys, "HS256", msg, 3, &sig2, kid2), BV_EINVALID);
    bv_buf_free(&sig);
    bv_buf_free(&sig2);
}

static void test_rs256_roundtrip(void **state)
{
    fx_t *f = *state;
    bv_buf_t sig = {0};
    char kid[64];
    const char *msg = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiIyIn0";
    assert_int_equal(bv_keys_sign(f->keys, "RS256", msg, strlen(msg), &sig, kid), 0);
    assert_int_equal(sig.len, 256);
    assert_int_equal(bv_keys_verify(f->keys, kid, msg, strlen(msg), sig.data, sig.len), 0);
    sig.data[100] ^= 4;
    assert_int_equal(bv_keys_verify(f->keys, kid, msg, strlen(msg), sig.data, sig.len), BV_EINTEGRITY);
    sig.data[100] ^= 4;
    json_t *jwks = NULL;
    assert_int_equal(bv_keys_jwks(f->keys, &jwks), 0);
    json_t *jwk = jwk_by_kid(jwks, kid);
    assert_non_null(jwk);
    assert_string_equal(json_string_value(json_object_get(jwk, "kty")), "RSA");
    assert_string_equal(json_string_value(json_object_get(jwk, "alg")), "RS256");
    assert_string_equal(json_string_value(json_object_get(jwk, "use")), "sig");
    assert_string_equal(json_string_value(json_object_get(jwk, "e")), "AQAB");
    assert_null(json_object_get(jwk, "d"));
    assert_int_equal(verify_with_jwk(jwk, msg, &sig), 0);
    json_decref(jwks);
    bv_buf_free(&sig);
}

static void test_signing_rotation(void **state)
{
    fx_t *f = *state;
    bv_buf_t s1 = {0}, s2 = {0};
    char k1[64], k2[64], active[64], next_kid[64] = "";
    int promoted = -1;
    const char *msg = "header.payload";
    assert_int_equal(bv_keys_sign(f->keys, "ES256", msg, strlen(msg), &s1, k1), 0);
    json_t *jwks = NULL;
    assert_int_equal(bv_keys_jwks(f->keys, &jwks), 0);
    size_t i;
    json_t *e;
    json_array_foreach(json_object_get(jwks, "keys"), i, e)
    {
        if (strcmp(json_string_value(json_object_get(e, "kid")), k1) != 0)
            snprintf(next_kid, sizeof(next_kid), "%s", json_string_value(json_object_get(e, "kid")));
    }
    json_decref(jwks);
    assert_true(next_kid[0] != '\0'); /* published before it signs */
    /* rotate: the published next key becomes active, k1 retires but still verifies */
    assert_int_equal(bv_keys_rotate_signing(f->keys, "ES256", 3600LL * 1000000, active, &promoted), 0);
    assert_int_equal(promoted, 1);
    assert_string_equal(active, next_kid);
    assert_int_equal(bv_keys_sign(f->keys, "ES256", msg, strlen(msg), &s2, k2), 0);
    assert_string_equal(k2, next_kid);
    assert_int_equal(bv_keys_verify(f->keys, k1, msg, strlen(msg), s1.data, s1.len), 0);
    assert_int_equal(bv_keys_verify(f->keys, k2, msg, strlen(msg), s2.data, s2.len), 0);
    assert_int_equal(bv_keys_jwks(f->keys, &jwks), 0);
    assert_int_equal(json_array_size(json_object_get(jwks, "keys")), 3); /* retired, active, new next */
    assert_non_null(jwk_by_kid(jwks, k1));
    json_decref(jwks);
    json_t *inv = NULL;
    assert_int_equal(bv_keys_list(f->keys, &inv), 0);
    int n_retired = 0, n_active = 0, n_next = 0;
    json_array_foreach(json_object_get(inv, "signing_keys"), i, e)
    {
        const char *st = json_string_value(json_object_get(e, "state"));
        n_retired += strcmp(st, "retired") == 0;
        n_active += strcmp(st, "active") == 0;
        n_next += strcmp(st, "next") == 0;
    }
    assert_int_equal(n_retired, 1);
    assert_int_equal(n_active, 1);
    assert_int_equal(n_next, 1);
    json_decref(inv);
    /* rotate again with no grace: k2 retires with retire_until = now, so it leaves the JWKS
     * and no longer verifies; k1 is older and gone too once its time is up (1 h: still in) */
    assert_int_equal(bv_keys_rotate_signing(f->keys, "ES256", 0, active, &promoted), 0);
    assert_int_equal(promoted, 1);
    assert_int_equal(bv_keys_verify(f->keys, k2, msg, strlen(msg), s2.data, s2.len), BV_ENOTFOUND);
    assert_int_equal(bv_keys_verify(f->keys, k1, msg, strlen(msg), s1.data, s1.len), 0);
    assert_int_equal(bv_keys_jwks(f->keys, &jwks), 0);
    assert_null(jwk_by_kid(jwks, k2));
    assert_non_null(jwk_by_kid(jwks, k1));
    assert_non_null(jwk_by_kid(jwks, active));
    json_decref(jwks);
    /* another process sees the same states */
    reopen_keys(f);
    assert_int_equal(bv_keys_verify(f->keys, k2, msg, strlen(msg), s2.data, s2.len), BV_ENOTFOUND);
    bv_buf_reset(&s2);
    assert_int_equal(bv_keys_sign(f->keys, "ES256", msg, strlen(msg), &s2, k2), 0);
    assert_string_equal(k2, active);
    bv_buf_free(&s1);
    bv_buf_free(&s2);
}

/* ---- rewrap ---- */

#define N_ROWS 25

static int tx_create_table(bv_tx_t *tx, void *arg)
{
    (void)arg;
    return bv_tx_exec(tx, "CREATE TABLE rewrap_test (id TEXT PRIMARY KEY, secret BLOB, note TEXT) STRICT");
}

typedef struct {
    const char *id;
    const bv_buf_t *ct;
} ins_t;

static int tx_insert_row(bv_tx_t *tx, void *arg)
{
    ins_t *a = arg;
    bv_stmt_t *s = bv_tx_prepare(tx, "INSERT INTO rewrap_test (id, secret) VALUES (?, ?)");
    bv_stmt_bind_text(s, 1, a->id, -1);
    if (a->ct != NULL)
        bv_stmt_bind_blob(s, 2, a->ct->data, a->ct->len);
    else
        bv_stmt_bind_null(s, 2);
    int rc = bv_stmt_step(s);
    bv_stmt_reset(s);
    return rc < 0 ? rc : 0;
}

typedef struct {
    const char *id;
    bv_buf_t ct;
    int is_null;
} get_t;

static int tx_get_row(bv_tx_t *tx, void *arg)
{
    get_t *a = arg;
    bv_stmt_t *s = bv_tx_prepare(tx, "SELECT secret FROM rewrap_test WHERE id = ?");
    bv_stmt_bind_text(s, 1, a->id, -1);
    int rc = bv_stmt_step(s);
    if (rc == BV_ROW) {
        size_t len = 0;
        const void *p = bv_stmt_blob(s, 0, &len);
        a->is_null = bv_stmt_is_null(s, 0);
        bv_buf_reset(&a->ct);
        bv_buf_append(&a->ct, p, len);
    }
    bv_stmt_reset(s);
    return rc == BV_ROW ? 0 : BV_ENOTFOUND;
}

static void test_rewrap_table(void **state)
{
    fx_t *f = *state;
    char ids[N_ROWS + 2][40], val[64], purpose[65];
    bv_buf_t ct = {0};
    get_t g = {0};
    int version;
    assert_int_equal(bv_store_write(f->store, tx_create_table, NULL), 0);
    assert_int_equal(bv_keys_register_field(f->keys, "rewrap_test", "id", "secret", "pii"), 0);
    assert_int_equal(bv_keys_register_field(f->keys, "rewrap_test", "id", "secret", "pii"),
                     0); /* idempotent */
    assert_int_equal(bv_keys_register_field(f->keys, "rewrap_test; DROP", "id", "secret", "pii"),
                     BV_EINVALID);
    for (int i = 0; i < N_ROWS; i++) {
        snprintf(ids[i], sizeof(ids[i]), "row-%03d", i);
        snprintf(val, sizeof(val), "secret number %d", i);
        bv_aad_t aad = {"rewrap_test", ids[i], "secret"};
        encrypt_str(f, "pii", &aad, val, &ct);
        ins_t ins = {ids[i], &ct};
        assert_int_equal(bv_store_write(f->store, tx_insert_row, &ins), 0);
    }
    /* a NULL value is skipped; a ciphertext copied from another row does not decrypt and
     * is counted as failed, not modified */
    snprintf(ids[N_ROWS], sizeof(ids[N_ROWS]), "row-null");
    ins_t ins_null = {ids[N_ROWS], NULL};
    assert_int_equal(bv_store_write(f->store, tx_insert_row, &ins_null), 0);
    snprintf(ids[N_ROWS + 1], sizeof(ids[N_ROWS + 1]), "row-moved");
    g.id = ids[0];
    assert_int_equal(bv_store_read(f->store, tx_get_row, &g), 0);
    ins_t ins_moved = {ids[N_ROWS + 1], &g.ct};
    assert_int_equal(bv_store_write(f->store, tx_insert_row, &ins_moved), 0);

    assert_int_equal(bv_keys_rotate(f->keys, "pii", &version), 0);
    assert_int_equal(version, 2);
    bv_keys_rewrap_stats_t st;
    assert_int_equal(bv_keys_rewrap(f->keys, 7, &st), 0);
    assert_int_equal(st.scanned, N_ROWS + 1);
    assert_int_equal(st.rewrapped, N_ROWS);
    assert_int_equal(st.failed, 1);
    assert_int_equal(st.skipped, 0);
    assert_true(st.batches >= (N_ROWS + 6) / 7 - 1 && st.batches <= (N_ROWS + 1 + 6) / 7);
    for (int i = 0; i < N_ROWS; i++) {
        g.id = ids[i];
        assert_int_equal(bv_store_read(f->store, tx_get_row, &g), 0);
        assert_int_equal(bv_keys_blob_info(g.ct.data, g.ct.len, purpose, &version), 0);
        assert_int_equal(version, 2);
        snprintf(val, sizeof(val), "secret number %d", i);
        bv_aad_t aad = {"rewrap_test", ids[i], "secret"};
        assert_decrypts_to(f, &aad, &g.ct, val);
    }
    g.id = ids[N_ROWS];
    assert_int_equal(bv_store_read(f->store, tx_get_row, &g), 0);
    assert_true(g.is_null);
    g.id = ids[N_ROWS + 1];
    assert_int_equal(bv_store_read(f->store, tx_get_row, &g), 0);
    assert_int_equal(bv_keys_blob_info(g.ct.data, g.ct.len, purpose, &version), 0);
    assert_int_equal(version, 1); /* untouched */
    /* nothing left to do the second time */
    assert_int_equal(bv_keys_rewrap(f->keys, 7, &st), 0);
    assert_int_equal(st.rewrapped, 0);
    assert_int_equal(st.batches, 0);
    bv_buf_free(&ct);
    bv_buf_free(&g.ct);
}

static void *worker(void *arg)
{
    fx_t *f = arg;
    bv_buf_t ct = {0}, pt = {0};
    char row[32];
    long ok = 0;
    for (int i = 0; i < 200; i++) {
        snprintf(row, sizeof(row), "%p-%d", (void *)&ct, i);
        bv_aad_t aad = {"t", row, "f"};
        const char *purpose = i % 2 ? "mt-a" : "mt-b";
        bv_buf_reset(&ct);
        bv_buf_reset(&pt);
        if (bv_keys_encrypt(f->keys, purpose, &aad, row, strlen(row), &ct) == 0 &&
            bv_keys_decrypt(f->keys, &aad, ct.data, ct.len, &pt) == 0 && pt.len == strlen(row) &&
            memcmp(pt.data, row, pt.len) == 0)
            ok++;
    }
    bv_buf_t sig = {0};
    char kid[64];
    if (bv_keys_sign(f->keys, "ES256", "x", 1, &sig, kid) == 0 &&
        bv_keys_verify(f->keys, kid, "x", 1, sig.data, sig.len) == 0)
        ok++;
    bv_buf_free(&sig);
    bv_buf_free(&ct);
    bv_buf_free(&pt);
    return (void *)ok;
}

static void test_concurrent_use(void **state)
{
    fx_t *f = *state;
    pthread_t t[4];
    for (int i = 0; i < 4; i++)
        assert_int_equal(pthread_create(&t[i], NULL, worker, f), 0);
    for (int i = 0; i < 4; i++) {
        void *ok = NULL;
        pthread_join(t[i], &ok);
        assert_int_equal((long)ok, 201);
    }
    /* first use from four threads at once still made exactly one key per purpose */
    json_t *inv = NULL;
    assert_int_equal(bv_keys_list(f->keys, &inv), 0);
    size_t i;
    json_t *e;
    int n_a = 0;
    json_array_foreach(json_object_get(inv, "data_keys"), i, e)
    {
        n_a += strcmp(json_string_value(json_object_get(e, "purpose")), "mt-a") == 0;
    }
    assert_int_equal(n_a, 1);
    json_decref(inv);
}

typedef struct {
    bv_keys_t *keys;
    const char *purpose;
    bv_buf_t ct;
    unsigned char mac[32];
    int rc_enc, rc_mac;
} in_job_t;

static int tx_encrypt_in_job(bv_tx_t *tx, void *arg)
{
    (void)tx;
    in_job_t *a = arg;
    a->rc_enc = bv_keys_encrypt(a->keys, a->purpose, &AAD, "in job", 6, &a->ct);
    a->rc_mac = bv_keys_hmac(a->keys, a->purpose, "in job", 6, a->mac);
    return 0;
}

static void test_prepare_for_write_jobs(void **state)
{
    fx_t *f = *state;
    in_job_t a = {.keys = f->keys, .purpose = "prepared"};
    assert_int_equal(bv_keys_prepare(f->keys, "prepared", BV_KEYS_AEAD | BV_KEYS_HMAC), 0);
    assert_int_equal(bv_store_write(f->store, tx_encrypt_in_job, &a), 0);
    assert_int_equal(a.rc_enc, 0);
    assert_int_equal(a.rc_mac, 0);
    assert_decrypts_to(f, &AAD, &a.ct, "in job");
    /* a purpose never used cannot get its first key from inside a write job: clean error */
    in_job_t b = {.keys = f->keys, .purpose = "unprepared"};
    assert_int_equal(bv_store_write(f->store, tx_encrypt_in_job, &b), 0);
    assert_int_not_equal(b.rc_enc, 0);
    assert_int_equal(b.ct.len, 0);
    assert_int_equal(bv_keys_prepare(f->keys, "prepared", 0), BV_EINVALID);
    assert_int_equal(bv_keys_prepare(f->keys, "Bad", BV_KEYS_AEAD), BV_EINVALID);
    bv_buf_free(&a.ct);
    bv_buf_free(&b.ct);
}

static int run_admin(fx_t *f, const char *a1, const char *a2, const char *a3)
{
    bv_app_t app = {.cfg = &f->cfg, .store = f->store, .keys = f->keys};
    char *argv[5] = {"keys", (char *)a1, (char *)a2, (char *)a3, NULL};
    int argc = 1 + (a1 != NULL) + (a2 != NULL) + (a3 != NULL);
    fflush(stdout);
    int saved = dup(1), devnull = open("/dev/null", O_WRONLY);
    dup2(devnull, 1); /* keep the test output readable */
    int rc = bv_keys_admin_main(&app, argc, argv);
    fflush(stdout);
    dup2(saved, 1);
    close(saved);
    close(devnull);
    return rc;
}

static void test_admin_commands(void **state)
{
    fx_t *f = *state;
    bv_buf_t ct = {0};
    char purpose[65];
    int version = 0;
    assert_int_equal(run_admin(f, NULL, NULL, NULL), 2);
    assert_int_equal(run_admin(f, "frobnicate", NULL, NULL), 2);
    assert_int_equal(run_admin(f, "rotate", NULL, NULL), 2);
    assert_int_equal(run_admin(f, "rotate", "--purpose", "Not Valid"), 2);
    assert_int_equal(run_admin(f, "rotate-signing", "--alg", "HS256"), 2);
    assert_int_equal(run_admin(f, "rewrap", "--batch", "0"), 2);
    assert_int_equal(run_admin(f, "rotate", "--purpose", "pii"), 0);
    assert_int_equal(run_admin(f, "rotate", "--purpose", "pii"), 0);
    encrypt_str(f, "pii", &AAD, "x", &ct);
    assert_int_equal(bv_keys_blob_info(ct.data, ct.len, purpose, &version), 0);
    assert_int_equal(version, 2);
    assert_int_equal(run_admin(f, "rotate-master", NULL, NULL), 0);
    assert_int_equal(run_admin(f, "rotate-signing", "--alg", "ES256"), 0);
    assert_int_equal(run_admin(f, "rewrap", "--batch", "10"), 0);
    assert_int_equal(run_admin(f, "list", "--json", NULL), 0);
    assert_int_equal(run_admin(f, "list", NULL, NULL), 0);
    json_t *inv = NULL;
    assert_int_equal(bv_keys_list(f->keys, &inv), 0);
    assert_int_equal(json_integer_value(json_object_get(inv, "master_version")), 2);
    assert_int_equal(json_array_size(json_object_get(inv, "signing_keys")), 1); /* a published next key */
    json_decref(inv);
    assert_decrypts_to(f, &AAD, &ct, "x");
    bv_buf_free(&ct);
}

/* ---- adapter-specific ---- */

static void test_file_permissions_refused(void **state)
{
    fx_t *f = *state;
    char path[400];
    bv_keys_t *k = NULL;
    snprintf(path, sizeof(path), "%s/keys/master.key", f->dir);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    snprintf(path, sizeof(path), "%s/keys", f->dir);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0700);
    snprintf(path, sizeof(path), "%s/keys/master.key", f->dir);
    bv_keys_close(f->keys);
    f->keys = NULL;
    mode_t bad[] = {0640, 0604, 0620, 0602, 0644};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(chmod(path, bad[i]), 0);
        assert_int_equal(bv_keys_open(&f->cfg, f->store, &k), BV_EKEYSTORE);
        assert_null(k);
    }
    assert_int_equal(chmod(path, 0600), 0);
    assert_int_equal(open_keys(f), 0);
}

static void test_file_missing_master_refused(void **state)
{
    fx_t *f = *state;
    char path[400];
    bv_buf_t ct = {0};
    bv_keys_t *k = NULL;
    encrypt_str(f, "pii", &AAD, "v", &ct); /* a data key now depends on the master key */
    bv_keys_close(f->keys);
    f->keys = NULL;
    snprintf(path, sizeof(path), "%s/keys/master.key", f->dir);
    assert_int_equal(unlink(path), 0);
    assert_int_equal(bv_keys_open(&f->cfg, f->store, &k), BV_EKEYSTORE);
    assert_null(k);
    assert_int_equal(access(path, F_OK), -1); /* not silently replaced */
    bv_buf_free(&ct);
}

static void test_pkcs11_bad_pin_and_token(void **state)
{
    fx_t *f = *state;
    bv_keys_t *k = NULL;
    bv_config_t cfg = f->cfg;
    /* PKCS#11 login is per process and token: close ours so the wrong PIN is really tried */
    bv_keys_close(f->keys);
    f->keys = NULL;
    cfg.pkcs11_pin = "9999";
    cfg.pkcs11_pin_file = "";
    assert_int_equal(bv_keys_open(&cfg, f->store, &k), BV_EKEYSTORE);
    assert_null(k);
    cfg.pkcs11_pin = "1234"; /* the PIN itself instead of the PIN file works too */
    assert_int_equal(bv_keys_open(&cfg, f->store, &f->keys), 0);
    cfg = f->cfg;
    cfg.pkcs11_token = "no-such-token";
    assert_int_equal(bv_keys_open(&cfg, f->store, &k), BV_EKEYSTORE);
    assert_null(k);
    /* switching adapters under existing data keys is refused */
    bv_buf_t ct = {0};
    encrypt_str(f, "pii", &AAD, "v", &ct);
    cfg = f->cfg;
    cfg.keystore = "file";
    assert_int_equal(bv_keys_open(&cfg, f->store, &k), BV_EKEYSTORE);
    assert_null(k);
    bv_buf_free(&ct);
}

/* Closes every session of the token behind the key store's back, as a token reset or a
 * module restart would. */
static void close_all_sessions(void)
{
    void *dl = dlopen(SOFTHSM_MODULE, RTLD_NOW | RTLD_NOLOAD);
    assert_non_null(dl);
    CK_C_GetFunctionList get = (CK_C_GetFunctionList)dlsym(dl, "C_GetFunctionList");
    CK_FUNCTION_LIST_PTR fl = NULL;
    assert_int_equal(get(&fl), CKR_OK);
    CK_SLOT_ID slots[16];
    CK_ULONG n = 16;
    assert_int_equal(fl->C_GetSlotList(CK_TRUE, slots, &n), CKR_OK);
    int closed = 0;
    for (CK_ULONG i = 0; i < n; i++) {
        CK_TOKEN_INFO ti;
        if (fl->C_GetTokenInfo(slots[i], &ti) == CKR_OK &&
            memcmp(ti.label, TOKEN_LABEL, strlen(TOKEN_LABEL)) == 0) {
            assert_int_equal(fl->C_CloseAllSessions(slots[i]), CKR_OK);
            closed = 1;
        }
    }
    assert_true(closed);
    dlclose(dl);
}

static void *sign_in_thread(void *arg)
{
    fx_t *f = arg;
    bv_buf_t sig = {0};
    char kid[64];
    long ok = bv_keys_sign(f->keys, "ES256", "t", 1, &sig, kid) == 0 &&
              bv_keys_verify(f->keys, kid, "t", 1, sig.data, sig.len) == 0;
    bv_buf_free(&sig);
    return (void *)ok;
}

static void test_pkcs11_session_loss_recovery(void **state)
{
    fx_t *f = *state;
    bv_buf_t ct = {0}, sig = {0};
    char kid[64];
    void *ok = NULL;
    pthread_t t;
    encrypt_str(f, "before", &AAD, "v", &ct);
    assert_int_equal(bv_keys_sign(f->keys, "ES256", "m", 1, &sig, kid), 0);
    /* a second thread has its own session */
    assert_int_equal(pthread_create(&t, NULL, sign_in_thread, f), 0);
    pthread_join(t, &ok);
    assert_int_equal((long)ok, 1);

    /* a second key store on this thread: its (empty) cache must unwrap through the token */
    bv_keys_t *k2 = NULL;
    assert_int_equal(bv_keys_open(&f->cfg, f->store, &k2), 0);

    close_all_sessions();
    /* signing in the token recovers */
    bv_buf_reset(&sig);
    assert_int_equal(bv_keys_sign(f->keys, "ES256", "m", 1, &sig, kid), 0);
    assert_int_equal(bv_keys_verify(f->keys, kid, "m", 1, sig.data, sig.len), 0);
    close_all_sessions();
    /* unwrapping (cold cache) recovers */
    bv_buf_t pt = {0};
    assert_int_equal(bv_keys_decrypt(k2, &AAD, ct.data, ct.len, &pt), 0);
    assert_int_equal(pt.len, 1);
    assert_memory_equal(pt.data, "v", 1);
    bv_buf_free(&pt);
    bv_keys_close(k2);
    close_all_sessions();
    /* wrapping (a new data key) recovers */
    encrypt_str(f, "after-loss", &AAD, "w", &ct);
    assert_decrypts_to(f, &AAD, &ct, "w");

    close_all_sessions();
    assert_int_equal(bv_keys_rotate_signing(f->keys, "ES256", 60LL * 1000000, NULL, NULL), 0); /* generate */
    close_all_sessions();
    assert_int_equal(bv_keys_rotate_master(f->keys, NULL, NULL), 0); /* unwrap + wrap */
    reopen_keys(f);
    assert_decrypts_to(f, &AAD, &ct, "w");
    bv_buf_free(&ct);
    bv_buf_free(&sig);
}

#define SUITE_TESTS                                                                     \
    cmocka_unit_test_setup_teardown(test_roundtrip_and_format, setup, teardown),        \
        cmocka_unit_test_setup_teardown(test_tampering_fails, setup, teardown),         \
        cmocka_unit_test_setup_teardown(test_data_key_rotation, setup, teardown),       \
        cmocka_unit_test_setup_teardown(test_master_rotation_rewraps, setup, teardown), \
        cmocka_unit_test_setup_teardown(test_hmac, setup, teardown),                    \
        cmocka_unit_test_setup_teardown(test_random, setup, teardown),                  \
        cmocka_unit_test_setup_teardown(test_es256_sign_verify_jwks, setup, teardown),  \
        cmocka_unit_test_setup_teardown(test_rs256_roundtrip, setup, teardown),         \
        cmocka_unit_test_setup_teardown(test_signing_rotation, setup, teardown),        \
        cmocka_unit_test_setup_teardown(test_rewrap_table, setup, teardown),            \
        cmocka_unit_test_setup_teardown(test_concurrent_use, setup, teardown),          \
        cmocka_unit_test_setup_teardown(test_prepare_for_write_jobs, setup, teardown),  \
        cmocka_unit_test_setup_teardown(test_admin_commands, setup, teardown)

int main(void)
{
    bv_log_set_level(getenv("KEYS_TEST_LOG") ? BV_LOG_DEBUG : BV_LOG_ERROR);
    const struct CMUnitTest file_tests[] = {
        SUITE_TESTS,
        cmocka_unit_test_setup_teardown(test_file_permissions_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_file_missing_master_refused, setup, teardown),
    };
    const struct CMUnitTest pkcs11_tests[] = {
        SUITE_TESTS,
        cmocka_unit_test_setup_teardown(test_pkcs11_bad_pin_and_token, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pkcs11_session_loss_recovery, setup, teardown),
    };
    int failed = cmocka_run_group_tests_name("keys/file", file_tests, group_setup_file, group_teardown);
    failed += cmocka_run_group_tests_name("keys/pkcs11", pkcs11_tests, group_setup_pkcs11, group_teardown);
    return failed;
}
