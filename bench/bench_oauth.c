/* bench_oauth: in-process figures for issue 5, one thread each (per-core numbers).
 *   1. raw ES256 verification (OpenSSL) — the floor of a cold validation
 *   2. access-token validation by the authenticator's validator: cold (every token new,
 *      cache off: parse + signature + claims) and warm (a token presented again)
 *   3. password logins (bv_identity_authenticate: throttle write, Argon2id, success
 *      write) against the raw Argon2id rate (libargon2 argon2id_verify), same parameters,
 *      same run. Goal: logins >= 90 % of raw.
 * usage: bench_oauth [--seconds S] [--logins N] */
#include <argon2.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "base/config.h"
#include "identity/internal.h"
#include "keys/keys.h"
#include "oauth/internal.h"
#include "store/store.h"

#define ISS "https://bank.example"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static char *b64json(json_t *j)
{
    char *s = bv_json_dump(j);
    char *out = malloc(strlen(s) * 4 / 3 + 4);
    oauth_b64url_encode(s, strlen(s), out);
    free(s);
    json_decref(j);
    return out;
}

static char *token(bv_keys_t *keys, const char *kid, int64_t now, int i)
{
    char jti[32], kid_used[64], *h, *p, sb[200];
    snprintf(jti, sizeof(jti), "j%d", i);
    h = b64json(json_pack("{s:s,s:s,s:s}", "alg", "ES256", "typ", "at+jwt", "kid", kid));
    p = b64json(json_pack("{s:s,s:s,s:s,s:s,s:s,s:I,s:I,s:s}", "iss", ISS, "sub",
                          "01a20000-0000-7000-8000-000000000001", "aud", ISS, "client_id", "bench", "scope",
                          "ledger:read ledger:write", "exp", (json_int_t)(now + 300), "iat", (json_int_t)now,
                          "jti", jti));
    bv_buf_t in = {0}, sig = {0};
    bv_buf_printf(&in, "%s.%s", h, p);
    if (bv_keys_sign(keys, "ES256", in.data, in.len, &sig, kid_used) != 0)
        abort();
    oauth_b64url_encode(sig.data, sig.len, sb);
    bv_buf_printf(&in, ".%s", sb);
    free(h);
    free(p);
    bv_buf_free(&sig);
    return in.data;
}

typedef struct {
    bv_identity_t *id;
    const char *phc, *pw;
    int n, raw;
    char user[32], ip[32];
} login_job_t;

static void *login_thread(void *arg)
{
    login_job_t *j = arg;
    bv_login_result_t lr;
    for (int i = 0; i < j->n; i++) {
        if (j->raw) {
            if (argon2id_verify(j->phc, j->pw, strlen(j->pw)) != ARGON2_OK)
                abort();
        } else if (bv_identity_authenticate(j->id, j->user, j->pw, strlen(j->pw), j->ip, NULL, &lr) != 0 ||
                   lr.outcome != BV_LOGIN_OK) {
            abort();
        }
    }
    return NULL;
}

/* Runs `total` verifications (raw) or logins on `threads` threads; returns per second. */
static double run_logins(int threads, int total, login_job_t proto)
{
    pthread_t th[64];
    login_job_t jobs[64];
    double t0 = now_s();
    for (int i = 0; i < threads; i++) {
        jobs[i] = proto;
        jobs[i].n = total / threads;
        snprintf(jobs[i].user, sizeof(jobs[i].user), "bench%d", i);
        snprintf(jobs[i].ip, sizeof(jobs[i].ip), "10.0.0.%d", i + 1);
        pthread_create(&th[i], NULL, login_thread, &jobs[i]);
    }
    for (int i = 0; i < threads; i++)
        pthread_join(th[i], NULL);
    return (double)(total / threads * threads) / (now_s() - t0);
}

int main(int argc, char **argv)
{
    double seconds = 2.0;
    int logins = 20;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--seconds") == 0)
            seconds = atof(argv[i + 1]);
        else if (strcmp(argv[i], "--logins") == 0)
            logins = atoi(argv[i + 1]);
    }
    char dir[] = "/tmp/bv-bench-oauth-XXXXXX", db[128], err[256], kid[64];
    if (mkdtemp(dir) == NULL)
        return 1;
    snprintf(db, sizeof(db), "%s/boveda.db", dir);
    bv_log_set_level(BV_LOG_WARN);
    bv_store_t *st = NULL;
    bv_store_options_t opt = {.path = db, .batch_max = 1024, .busy_timeout_ms = 5000};
    bv_config_t *cfg = NULL;
    bv_keys_t *keys = NULL;
    bv_oauth_validator_t *v = NULL;
    setenv("BOVEDA_DATA_DIR", dir, 1);
    if (bv_store_open(&opt, &st) != 0 || bv_store_migrate(st, NULL) != 0 ||
        bv_config_load(NULL, &cfg, err, sizeof(err)) != 0 || bv_keys_open(cfg, st, &keys) != 0)
        return 1;
    bv_buf_t sig = {0};
    bv_keys_sign(keys, "ES256", "x", 1, &sig, kid);
    bv_buf_free(&sig);
    if (bv_oauth_validator_create(keys, ISS, ISS, 0, &v) != 0)
        return 1;
    int64_t now = bv_now_us() / 1000000;

    /* 1. raw ES256 verify */
    enum { NTOK = 4000 };
    char **toks = malloc(NTOK * sizeof(char *));
    for (int i = 0; i < NTOK; i++)
        toks[i] = token(keys, kid, now, i);
    jwt_t j;
    jwt_parse(toks[0], strlen(toks[0]), &j);
    json_t *jwks = NULL;
    bv_keys_jwks(keys, &jwks);
    EVP_PKEY *pub = NULL;
    json_t *k;
    size_t ki;
    json_array_foreach(json_object_get(jwks, "keys"), ki,
                       k) if (strcmp(json_string_value(json_object_get(k, "kid")), kid) == 0)
        jwk_to_pkey(k, &pub, NULL);
    long n = 0;
    /* the fastest way to call OpenSSL: a context prepared once for the key, copied per use */
    EVP_MD_CTX *prepared = bv_keys_prepare_ctx(pub, 0);
    double t0 = now_s(), t;
    do {
        for (int i = 0; i < 100; i++)
            if (jws_verify(pub, bv_keys_ctx_copy(prepared), JWS_ES256, toks[0], j.signing_input_len, j.sig,
                           j.sig_len) != 0)
                abort();
        n += 100;
    } while ((t = now_s() - t0) < seconds);
    double raw_verify = n / t;
    EVP_MD_CTX_free(prepared);
    jwt_free(&j);

    /* 2. validator: cold and warm */
    bv_principal_t p;
    bv_oauth_validator_set_cache(v, 0);
    n = 0;
    t0 = now_s();
    do {
        if (bv_oauth_validate_access_token(v, toks[n % NTOK], strlen(toks[n % NTOK]), now, &p) != 0)
            abort();
        n++;
    } while ((n % 64) != 0 || (t = now_s() - t0) < seconds);
    double cold = n / t;
    bv_oauth_validator_set_cache(v, 1);
    n = 0;
    t0 = now_s();
    do {
        if (bv_oauth_validate_access_token(v, toks[n % 16], strlen(toks[n % 16]), now, &p) != 0)
            abort();
        n++;
    } while ((n % 1024) != 0 || (t = now_s() - t0) < seconds);
    double warm = n / t;

    /* 3. logins vs raw Argon2id, same parameters */
    bv_identity_options_t io;
    if (bv_identity_options_load(cfg, &io, err, sizeof(err)) != 0)
        return 1;
    io.lockout.max_failures = 1000000;
    io.lockout.ip_max_failures = 1000000;
    bv_identity_t *id = NULL;
    if (bv_identity_open(st, &io, &id) != 0)
        return 1;
    const char *pw = "bench password 123";
    bv_identity_user_t u;
    for (int i = 0; i < 64; i++) { /* one customer per thread, as in real traffic */
        char name[32];
        snprintf(name, sizeof(name), "bench%d", i);
        bv_identity_new_user_t nu = {name, NULL, NULL, NULL, NULL};
        if (bv_identity_user_create(id, &nu, pw, strlen(pw), "bench", &u, NULL) != 0)
            return 1;
    }
    char phc[BV_IDENTITY_PHC_MAX + 1];
    bv_identity_password_hash(&io.argon2, pw, strlen(pw), phc);
    /* as the server runs them: on 2 x cores worker threads, raw and logins alike */
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    int threads = (int)(cores > 0 && cores <= 32 ? 2 * cores : 2);
    /* interleaved rounds, so that load from elsewhere on the machine hits both alike */
    login_job_t proto = {.id = id, .phc = phc, .pw = pw, .raw = 1};
    double t_raw = 0, t_login = 0;
    int rounds = 4, per = logins / rounds < threads ? threads : logins / rounds;
    for (int r = 0; r < rounds; r++) {
        proto.raw = 1;
        t_raw += per / run_logins(threads, per, proto);
        proto.raw = 0;
        t_login += per / run_logins(threads, per, proto);
    }
    double raw_argon = rounds * per / t_raw, login_rate = rounds * per / t_login;
    printf("bench_oauth (validation: one thread; logins: %d threads on %ld cores)\n", threads, cores);
    printf("  raw ES256 verify (OpenSSL)            %10.0f /s\n", raw_verify);
    printf("  JWT validation, cold (new tokens)     %10.0f /s   (%.0f%% of raw verify)\n", cold,
           100.0 * cold / raw_verify);
    printf("  JWT validation, warm (token reused)   %10.0f /s   goal >= 20000/s per core: %s\n", warm,
           warm >= 20000 ? "met" : "NOT met");
    printf("  raw Argon2id verify (m=%u KiB,t=%u,p=%u) %6.1f /s\n", io.argon2.m_kib, io.argon2.t_cost,
           io.argon2.parallelism, raw_argon);
    printf("  password logins (authenticate)        %10.1f /s   %.1f%% of raw, goal >= 90%%: %s\n",
           login_rate, 100.0 * login_rate / raw_argon, login_rate >= 0.9 * raw_argon ? "met" : "NOT met");

    for (int i = 0; i < NTOK; i++)
        free(toks[i]);
    free(toks);
    EVP_PKEY_free(pub);
    json_decref(jwks);
    bv_identity_close(id);
    bv_oauth_validator_free(v);
    bv_keys_close(keys);
    bv_config_free(cfg);
    bv_store_close(st);
    char cmd[160];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : 1;
}
