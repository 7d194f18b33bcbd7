/* MFA benchmark: TOTP verifications per second.
 *   (a) the verification itself on one core: decrypt the stored seed (AES-256-GCM, cached data
 *       key), check the code against steps t-1..t+1 (HMAC-SHA-1, -256 or -512 each) and the
 *       replay rule (step > last accepted step), compared with the goal of 20,000 /s/core;
 *   (b) bv_mfa_totp_check end to end: each check is its own write job (read the token row,
 *       decrypt, verify, record the accepted step), from T threads through the group commit.
 * Usage: bench_mfa [SECONDS] [THREADS]   (defaults 1 and 8; keep runs short on shared CI) */
#include <openssl/crypto.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/config.h"
#include "base/errors.h"
#include "base/log.h"
#include "base/util.h"
#include "keys/keys.h"
#include "mfa/internal.h"
#include "mfa/otp.h"
#include "store/store.h"

#define CODES 4096

static double seconds = 1.0;
static int64_t t0_us = 1700000000LL * 1000000;

static double now_s(void)
{
    return (double)bv_mono_us() / 1e6;
}

typedef struct {
    bv_mfa_t *m;
    bv_store_t *st;
    char user[BV_UUID_STR_LEN + 1];
    unsigned char seed[20];
    char (*codes)[8]; /* codes[i] for step t0 + i */
    long done, failed;
    double deadline;
} worker_t;

typedef struct {
    worker_t *w;
    int i;
    int rc;
} job_t;

static int check_job(bv_tx_t *tx, void *arg)
{
    job_t *j = arg;
    j->rc = bv_mfa_totp_check(tx, j->w->m, j->w->user, j->w->codes[j->i], t0_us + (int64_t)j->i * 30000000);
    return 0;
}

static void *worker(void *arg)
{
    worker_t *w = arg;
    for (int i = 1; i < CODES && now_s() < w->deadline; i++) {
        job_t j = {w, i, 0};
        if (bv_store_write(w->st, check_job, &j) != 0 || j.rc != 0)
            w->failed++;
        else
            w->done++;
    }
    return NULL;
}

static int64_t fixed_clock(void)
{
    return t0_us;
}

int main(int argc, char **argv)
{
    char dir[] = "/tmp/bv-bench-mfa-XXXXXX", db[128], err[256];
    int threads = 8;
    bv_store_t *st = NULL;
    bv_config_t *cfg = NULL;
    bv_keys_t *keys = NULL;
    bv_mfa_t *m = NULL;
    if (argc > 1)
        seconds = atof(argv[1]);
    if (argc > 2)
        threads = atoi(argv[2]);
    if (seconds <= 0 || threads < 1 || threads > 256) {
        fprintf(stderr, "usage: bench_mfa [SECONDS] [THREADS]\n");
        return 2;
    }
    bv_log_set_level(BV_LOG_WARN);
    if (mkdtemp(dir) == NULL)
        return 1;
    snprintf(db, sizeof(db), "%s/boveda.db", dir);
    setenv("BOVEDA_DATA_DIR", dir, 1);
    setenv("BOVEDA_KEYSTORE", "file", 1);
    bv_store_options_t so = {.path = db, .batch_max = 1024, .busy_timeout_ms = 5000};
    bv_mfa_options_t mo = {.digits = 6, .ttl_us = 180000000, .max_challenges = 10, .max_attempts = 5};
    if (bv_store_open(&so, &st) != 0 || bv_store_migrate(st, NULL) != 0 ||
        bv_config_load(NULL, &cfg, err, sizeof(err)) != 0 || bv_keys_open(cfg, st, &keys) != 0 ||
        bv_mfa_open(st, keys, &mo, &m) != 0) {
        fprintf(stderr, "bench_mfa: setup failed\n");
        return 1;
    }
    m->now_us = fixed_clock;

    worker_t *ws = calloc((size_t)threads, sizeof(*ws));
    for (int t = 0; t < threads; t++) {
        worker_t *w = &ws[t];
        bv_mfa_enrolment_t e;
        char code[8];
        w->m = m;
        w->st = st;
        bv_uuid7(w->user);
        if (bv_mfa_totp_enrol(m, w->user, "bench", NULL, &e) != 0 ||
            bv_base32_decode(e.secret, w->seed, sizeof(w->seed)) != 20) {
            fprintf(stderr, "bench_mfa: enrol failed\n");
            return 1;
        }
        bv_mfa_enrolment_clear(&e);
        w->codes = calloc(CODES, sizeof(*w->codes));
        for (int i = 0; i < CODES; i++)
            bv_otp_totp(w->seed, 20, t0_us / 1000000 + (int64_t)i * 30, 30, 6, BV_OTP_SHA1, w->codes[i]);
        snprintf(code, sizeof(code), "%s", w->codes[0]);
        if (bv_mfa_totp_confirm(m, w->user, code, NULL) != 0) {
            fprintf(stderr, "bench_mfa: confirm failed\n");
            return 1;
        }
    }

    /* (a) one core: decrypt + verify (+-1 step) + replay rule, no storage; per algorithm */
    for (int a = 0; a < 3; a++) {
        static const bv_otp_alg_t algs[] = {BV_OTP_SHA1, BV_OTP_SHA256, BV_OTP_SHA512};
        static const size_t seed_lens[] = {20, 32, 64};
        static const char *const names[] = {"SHA-1", "SHA-256", "SHA-512"};
        unsigned char seed[64];
        bv_buf_t ct = {0}, pt = {0};
        bv_aad_t aad = {"mfa_totp", "01900000-0000-7000-8000-000000000001", "seed"};
        int64_t last = -1, step = 0;
        long n = 0, bad = 0;
        char(*codes)[8] = calloc(CODES, sizeof(*codes));
        bv_random(seed, sizeof(seed));
        for (int i = 0; i < CODES; i++)
            bv_otp_totp(seed, seed_lens[a], t0_us / 1000000 + (int64_t)i * 30, 30, 6, algs[a], codes[i]);
        bv_keys_encrypt(keys, "totp", &aad, seed, seed_lens[a], &ct);
        double start = now_s(), end = start + (a == 0 ? seconds : seconds / 2), el;
        while (now_s() < end) {
            for (int k = 0; k < 256; k++, n++) {
                int i = (int)(n % (CODES - 1)) + 1;
                bv_buf_reset(&pt);
                if (bv_keys_decrypt(keys, &aad, ct.data, ct.len, &pt) != 0 ||
                    bv_otp_totp_verify(pt.data, pt.len, codes[i], t0_us / 1000000 + (int64_t)i * 30, 30, 6,
                                       algs[a], 1, &step) != 0)
                    bad++;
                if (i == 1)
                    last = -1;
                if (step <= last) /* the replay rule: a step is accepted only after the last one */
                    bad++;
                last = step;
                OPENSSL_cleanse(pt.data, pt.len);
            }
        }
        el = now_s() - start;
        double rate = (double)n / el;
        printf("totp verify %-7s (decrypt seed + 3-step window + replay rule), 1 thread: %.0f /s (%ld failures)"
               " -- goal 20000 /s/core: %s (x%.1f)\n",
               names[a], rate, bad, rate >= 20000 ? "met" : "NOT met", rate / 20000);
        OPENSSL_cleanse(seed, sizeof(seed));
        free(codes);
        bv_buf_free(&ct);
        bv_buf_free(&pt);
    }

    /* (b) end to end through the store */
    {
        pthread_t *tid = calloc((size_t)threads, sizeof(*tid));
        double start = now_s(), el;
        long done = 0, failed = 0;
        bv_store_stats_t s0, s1;
        bv_store_get_stats(st, &s0);
        for (int t = 0; t < threads; t++) {
            ws[t].deadline = start + seconds;
            pthread_create(&tid[t], NULL, worker, &ws[t]);
        }
        for (int t = 0; t < threads; t++) {
            pthread_join(tid[t], NULL);
            done += ws[t].done;
            failed += ws[t].failed;
        }
        el = now_s() - start;
        bv_store_get_stats(st, &s1);
        printf(
            "bv_mfa_totp_check in write jobs (row read, decrypt, verify, replay step recorded), %d threads: "
            "%.0f /s (%ld failures, %.1f jobs per commit)\n",
            threads, (double)done / el, failed,
            s1.batches > s0.batches ? (double)(s1.jobs - s0.jobs) / (double)(s1.batches - s0.batches) : 0.0);
        free(tid);
    }
    for (int t = 0; t < threads; t++)
        free(ws[t].codes);
    free(ws);
    bv_mfa_close(m);
    bv_keys_close(keys);
    bv_store_close(st);
    bv_config_free(cfg);
    char cmd[200];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "cannot remove %s\n", dir);
    return 0;
}
