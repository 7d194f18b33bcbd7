/* Key-store benchmark (one thread = one core):
 *   - field encrypt / decrypt of a small (32-byte) field with a cached data key, against the
 *     raw OpenSSL EVP AES-256-GCM rate at the same size (and `openssl speed` when present);
 *   - ES256 signatures with the file adapter and with SoftHSM2, against raw OpenSSL ECDSA
 *     P-256 (and `openssl speed ecdsap256` when present).
 * Usage: bench_keys [SECONDS_PER_MEASUREMENT]   (default 1; keep runs short on shared CI) */
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/errors.h"
#include "base/log.h"
#include "base/util.h"
#include "keys/keys.h"
#include "store/store.h"

#define FIELD_LEN 32

static double seconds = 1.0;

static double now_s(void)
{
    return (double)bv_mono_us() / 1e6;
}

typedef struct {
    char dir[256];
    bv_config_t cfg;
    bv_store_t *store;
    bv_keys_t *keys;
} env_t;

static int env_open(env_t *e, const char *root, const char *name, const char *adapter, const char *hsm_conf)
{
    char db[400];
    memset(e, 0, sizeof(*e));
    snprintf(e->dir, sizeof(e->dir), "%s/%s", root, name);
    mkdir(e->dir, 0700);
    e->cfg.data_dir = e->dir;
    e->cfg.keystore = (char *)adapter;
    e->cfg.pkcs11_module = "/usr/lib/softhsm/libsofthsm2.so";
    e->cfg.pkcs11_token = "boveda-bench";
    e->cfg.pkcs11_pin = "1234";
    e->cfg.pkcs11_pin_file = "";
    if (hsm_conf != NULL)
        setenv("SOFTHSM2_CONF", hsm_conf, 1);
    snprintf(db, sizeof(db), "%s/boveda.db", e->dir);
    bv_store_options_t opt = {.path = db, .batch_max = 64, .busy_timeout_ms = 5000};
    if (bv_store_open(&opt, &e->store) != 0 || bv_store_migrate(e->store, NULL) != 0)
        return -1;
    return bv_keys_open(&e->cfg, e->store, &e->keys);
}

static void env_close(env_t *e)
{
    bv_keys_close(e->keys);
    bv_store_close(e->store);
}

static void line(const char *name, double value, const char *unit, double baseline, const char *baseline_name)
{
    if (baseline > 0)
        printf("%s: %.0f %s (%.2f x %s)\n", name, value, unit, value / baseline, baseline_name);
    else
        printf("%s: %.0f %s\n", name, value, unit);
}

/* Field encryption through bv_keys_encrypt / bv_keys_decrypt. */
static void bench_fields(env_t *e, double *enc_out, double *dec_out)
{
    unsigned char field[FIELD_LEN];
    bv_buf_t ct = {0}, pt = {0};
    bv_aad_t aad = {"customers", "01900000-0000-7000-8000-000000000001", "national_id"};
    memset(field, 'a', sizeof(field));
    bv_keys_encrypt(e->keys, "bench", &aad, field, sizeof(field), &ct); /* create + cache the key */
    long n = 0;
    double t0 = now_s(), t;
    do {
        for (int i = 0; i < 1000; i++) {
            bv_buf_reset(&ct);
            if (bv_keys_encrypt(e->keys, "bench", &aad, field, sizeof(field), &ct) != 0)
                abort();
        }
        n += 1000;
    } while ((t = now_s() - t0) < seconds);
    *enc_out = (double)n / t;
    n = 0;
    t0 = now_s();
    do {
        for (int i = 0; i < 1000; i++) {
            bv_buf_reset(&pt);
            if (bv_keys_decrypt(e->keys, &aad, ct.data, ct.len, &pt) != 0)
                abort();
        }
        n += 1000;
    } while ((t = now_s() - t0) < seconds);
    *dec_out = (double)n / t;
    bv_buf_free(&ct);
    bv_buf_free(&pt);
}

/* Raw EVP AES-256-GCM at the same size, the way `openssl speed -evp` runs it: one context,
 * key set once, a new IV, 32 bytes and the tag per operation. */
static double bench_raw_gcm(void)
{
    unsigned char key[32], iv[12], in[FIELD_LEN], out[FIELD_LEN + 16], tag[16];
    EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
    EVP_CIPHER *gcm = EVP_CIPHER_fetch(NULL, "AES-256-GCM", NULL);
    int outl;
    RAND_bytes(key, sizeof(key));
    RAND_bytes(iv, sizeof(iv));
    memset(in, 'a', sizeof(in));
    EVP_EncryptInit_ex2(c, gcm, key, NULL, NULL);
    long n = 0;
    double t0 = now_s(), t;
    do {
        for (int i = 0; i < 1000; i++) {
            iv[0]++;
            EVP_EncryptInit_ex2(c, NULL, NULL, iv, NULL);
            EVP_EncryptUpdate(c, out, &outl, in, sizeof(in));
            EVP_EncryptFinal_ex(c, out + outl, &outl);
            EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, 16, tag);
        }
        n += 1000;
    } while ((t = now_s() - t0) < seconds);
    EVP_CIPHER_CTX_free(c);
    EVP_CIPHER_free(gcm);
    return (double)n / t;
}

static double bench_raw_ecdsa(void)
{
    EVP_PKEY *pkey = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    unsigned char sig[128];
    const char *msg = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiIxIn0";
    long n = 0;
    double t0 = now_s(), t;
    do {
        for (int i = 0; i < 100; i++) {
            EVP_MD_CTX *m = EVP_MD_CTX_new();
            size_t len = sizeof(sig);
            EVP_DigestSignInit_ex(m, NULL, "SHA256", NULL, NULL, pkey, NULL);
            EVP_DigestSign(m, sig, &len, (const unsigned char *)msg, strlen(msg));
            EVP_MD_CTX_free(m);
        }
        n += 100;
    } while ((t = now_s() - t0) < seconds);
    EVP_PKEY_free(pkey);
    return (double)n / t;
}

static double bench_sign(env_t *e)
{
    bv_buf_t sig = {0};
    char kid[64];
    const char *msg = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiIxIn0";
    if (bv_keys_sign(e->keys, "ES256", msg, strlen(msg), &sig, kid) != 0) /* create the key */
        return -1;
    long n = 0;
    double t0 = now_s(), t;
    do {
        for (int i = 0; i < 50; i++) {
            bv_buf_reset(&sig);
            if (bv_keys_sign(e->keys, "ES256", msg, strlen(msg), &sig, kid) != 0)
                abort();
        }
        n += 50;
    } while ((t = now_s() - t0) < seconds);
    bv_buf_free(&sig);
    return (double)n / t;
}

/* `openssl speed` figures, when the CLI exists: AES-GCM ops/s at 32 bytes and P-256 signs/s. */
static double openssl_speed_gcm(void)
{
    char cmd[128], buf[512];
    double kbytes = -1;
    snprintf(cmd, sizeof(cmd), "openssl speed -evp aes-256-gcm -bytes %d -seconds %d 2>/dev/null", FIELD_LEN,
             (int)(seconds + 0.5) > 0 ? (int)(seconds + 0.5) : 1);
    FILE *p = popen(cmd, "r");
    if (p == NULL)
        return -1;
    while (fgets(buf, sizeof(buf), p) != NULL) {
        double v;
        if (strncmp(buf, "AES-256-GCM", 11) == 0 || strncmp(buf, "aes-256-gcm", 11) == 0)
            if (sscanf(buf + 11, " %lfk", &v) == 1)
                kbytes = v;
    }
    pclose(p);
    return kbytes > 0 ? kbytes * 1000.0 / FIELD_LEN : -1;
}

static double openssl_speed_ecdsa(void)
{
    char buf[512];
    double signs = -1;
    FILE *p = popen("openssl speed -seconds 1 ecdsap256 2>/dev/null", "r");
    if (p == NULL)
        return -1;
    while (fgets(buf, sizeof(buf), p) != NULL) {
        double ts, tv, s, v;
        char *at = strstr(buf, "(nistp256)");
        if (at != NULL && sscanf(at + 10, " %lfs %lfs %lf %lf", &ts, &tv, &s, &v) == 4)
            signs = s;
    }
    pclose(p);
    return signs;
}

int main(int argc, char **argv)
{
    char root[] = "/tmp/bv-bench-keys-XXXXXX", cmd[1024], conf[400], here[512];
    env_t file, hsm;
    double enc, dec, raw_gcm, cli_gcm, raw_ecdsa, cli_ecdsa, file_sign, hsm_sign = -1;
    if (argc > 1)
        seconds = atof(argv[1]) > 0 ? atof(argv[1]) : 1.0;
    bv_log_set_level(BV_LOG_ERROR);
    if (mkdtemp(root) == NULL)
        return 1;

    if (env_open(&file, root, "file", "file", NULL) != 0) {
        fprintf(stderr, "cannot open the file key store\n");
        return 1;
    }
    bench_fields(&file, &enc, &dec);
    raw_gcm = bench_raw_gcm();
    cli_gcm = openssl_speed_gcm();
    line("field encrypt 32 B (file adapter, cached data key)", enc, "ops/s/core", raw_gcm,
         "raw EVP AES-256-GCM");
    line("field decrypt 32 B (file adapter, cached data key)", dec, "ops/s/core", raw_gcm,
         "raw EVP AES-256-GCM");
    double aead = 2.0 / (1.0 / enc + 1.0 / dec);
    line("field AEAD 32 B, encrypt+decrypt mix", aead, "ops/s/core", raw_gcm, "raw EVP AES-256-GCM");
    line("raw EVP AES-256-GCM 32 B", raw_gcm, "ops/s/core", 0, NULL);
    if (cli_gcm > 0) {
        line("openssl speed -evp aes-256-gcm -bytes 32", cli_gcm, "ops/s/core", 0, NULL);
        line("field AEAD 32 B vs openssl speed", aead, "ops/s/core", cli_gcm, "openssl speed");
    }
    printf("goal: >= 200000 AEAD ops/s/core: %s\n", aead >= 200000 ? "met" : "NOT met");

    raw_ecdsa = bench_raw_ecdsa();
    cli_ecdsa = openssl_speed_ecdsa();
    file_sign = bench_sign(&file);
    env_close(&file);

    const char *src = getenv("BOVEDA_SOURCE_DIR");
    if (src == NULL) {
        snprintf(here, sizeof(here), "%s", __FILE__);
        char *cut = strstr(here, "/bench/bench_keys.c");
        if (cut != NULL)
            *cut = '\0';
        src = here;
    }
    snprintf(cmd, sizeof(cmd), "sh '%s/tests/softhsm/init.sh' '%s/hsm' boveda-bench 1234 5678 >/dev/null",
             src, root);
    snprintf(conf, sizeof(conf), "%s/hsm/softhsm2.conf", root);
    if (system(cmd) == 0 && env_open(&hsm, root, "pkcs11", "pkcs11", conf) == 0) {
        hsm_sign = bench_sign(&hsm);
        env_close(&hsm);
    } else {
        fprintf(stderr, "SoftHSM2 not usable: skipping the pkcs11 figures\n");
    }

    line("ES256 sign (file adapter)", file_sign, "signatures/s/core", raw_ecdsa, "raw OpenSSL ECDSA P-256");
    if (hsm_sign > 0)
        line("ES256 sign (pkcs11, SoftHSM2)", hsm_sign, "signatures/s/core", raw_ecdsa,
             "raw OpenSSL ECDSA P-256");
    line("raw OpenSSL ECDSA P-256 sign (EVP, SHA-256)", raw_ecdsa, "signatures/s/core", 0, NULL);
    if (cli_ecdsa > 0) {
        line("openssl speed ecdsap256 sign", cli_ecdsa, "signatures/s/core", 0, NULL);
        line("ES256 sign (file adapter) vs openssl speed", file_sign, "signatures/s/core", cli_ecdsa,
             "openssl speed");
        if (hsm_sign > 0)
            line("ES256 sign (pkcs11, SoftHSM2) vs openssl speed", hsm_sign, "signatures/s/core", cli_ecdsa,
                 "openssl speed");
    }
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", root);
    return system(cmd) == 0 ? 0 : 1;
}
