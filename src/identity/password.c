/* Argon2id password hashing (RFC 9106) into PHC strings, and the password policy.
 *
 * libargon2's low-level argon2_ctx is used with our own allocator. The 19 MiB work area is
 * mmap'ed (MAP_POPULATE: the kernel fills it in one call instead of ~5,000 page faults taken
 * one by one while Argon2 first touches it) and, once libargon2 has wiped it, kept in a
 * small pool for the next hash: mapping, zero-filling and unmapping 19 MiB per login cost
 * about a fifth of a login. An area idle for AREA_IDLE_S goes back to the kernel (a reaper
 * thread runs only while the pool holds any), so idle resident memory stays small after a
 * burst of logins.
 * The PHC string is encoded and parsed here; parameters read back from the database are
 * bounded before any memory is committed. */
#include <argon2.h>
#include <errno.h>
#include <openssl/crypto.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include "base/base64.h"
#include "base/errors.h"
#include "base/util.h"
#include "identity/identity.h"
#include "identity/internal.h"

#define SALT_LEN  16
#define HASH_LEN  32
#define M_KIB_MIN 8192
#define M_KIB_MAX (1024 * 1024) /* 1 GiB */
#define T_MAX     16
#define P_MAX     16

/* ---- the work-area pool ---- */
#define POOL_MAX    4  /* idle areas kept (concurrent logins beyond this map their own) */
#define AREA_IDLE_S 10 /* an area unused this long is unmapped */

static struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int n;
    bool reaper; /* a reaper thread is running */
    struct {
        void *p;
        size_t bytes;
        int64_t idle_since_us; /* monotonic */
    } area[POOL_MAX];
} pool = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};

/* Unmaps the areas idle for AREA_IDLE_S (all of them with force). Called with pool.mu. */
static void pool_trim(bool force)
{
    int64_t now = bv_mono_us();
    for (int i = 0; i < pool.n;) {
        if (force || now - pool.area[i].idle_since_us >= (int64_t)AREA_IDLE_S * 1000000) {
            munmap(pool.area[i].p, pool.area[i].bytes);
            pool.area[i] = pool.area[--pool.n];
        } else {
            i++;
        }
    }
}

static void *reaper_main(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&pool.mu);
    while (pool.n > 0) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += AREA_IDLE_S / 2 + 1;
        pthread_cond_timedwait(&pool.cv, &pool.mu, &ts);
        pool_trim(false);
    }
    pool.reaper = false;
    pthread_mutex_unlock(&pool.mu);
    return NULL;
}

static int on_alloc(uint8_t **memory, size_t bytes)
{
    pthread_mutex_lock(&pool.mu);
    for (int i = 0; i < pool.n; i++) {
        if (pool.area[i].bytes == bytes) {
            *memory = pool.area[i].p;
            pool.area[i] = pool.area[--pool.n];
            pthread_mutex_unlock(&pool.mu);
            return ARGON2_OK;
        }
    }
    pthread_mutex_unlock(&pool.mu);
    void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
    if (p == MAP_FAILED)
        return ARGON2_MEMORY_ALLOCATION_ERROR;
    *memory = p;
    return ARGON2_OK;
}

int identity_password_pool_size(void)
{
    pthread_mutex_lock(&pool.mu);
    int n = pool.n;
    pthread_mutex_unlock(&pool.mu);
    return n;
}

void identity_password_pool_release(void)
{
    pthread_mutex_lock(&pool.mu);
    pool_trim(true);
    pthread_cond_signal(&pool.cv); /* the reaper sees an empty pool and ends */
    pthread_mutex_unlock(&pool.mu);
}

/* libargon2 has wiped the area (clear_internal_memory) before it calls this. */
static void on_free(uint8_t *memory, size_t bytes)
{
    if (memory == NULL)
        return;
    pthread_mutex_lock(&pool.mu);
    if (pool.n == POOL_MAX) { /* enough idle already */
        pthread_mutex_unlock(&pool.mu);
        munmap(memory, bytes);
        return;
    }
    pool.area[pool.n].p = memory;
    pool.area[pool.n].bytes = bytes;
    pool.area[pool.n].idle_since_us = bv_mono_us();
    pool.n++;
    if (!pool.reaper) {
        pthread_t t;
        pthread_attr_t a;
        pthread_attr_init(&a);
        pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
        if (pthread_create(&t, &a, reaper_main, NULL) == 0)
            pool.reaper = true;
        else
            pool_trim(true); /* no reaper: keep nothing */
        pthread_attr_destroy(&a);
    }
    pthread_mutex_unlock(&pool.mu);
}

/* PHC strings carry standard-alphabet base64 without padding (base/base64.h). */
static size_t b64_encode(const unsigned char *in, size_t len, char *out)
{
    return bv_b64_encode(BV_B64_STD, in, len, out);
}

/* Decodes exactly `want` bytes from s[0..len); 0 or -1. */
static int b64_decode(const char *s, size_t len, unsigned char *out, size_t want)
{
    return bv_b64_decode(BV_B64_STD, s, len, out, want) == (ssize_t)want ? 0 : -1;
}

typedef struct {
    uint32_t m, t, p;
    unsigned char salt[SALT_LEN];
    unsigned char hash[HASH_LEN];
} phc_t;

static int parse_u32(const char **s, const char *prefix, uint32_t *out)
{
    size_t pl = strlen(prefix);
    if (strncmp(*s, prefix, pl) != 0)
        return -1;
    const char *p = *s + pl;
    uint64_t v = 0;
    if (*p < '1' || *p > '9')
        return -1;
    while (*p >= '0' && *p <= '9') {
        v = v * 10 + (uint64_t)(*p - '0');
        if (v > UINT32_MAX)
            return -1;
        p++;
    }
    *out = (uint32_t)v;
    *s = p;
    return 0;
}

static int phc_parse(const char *s, phc_t *out)
{
    static const char head[] = "$argon2id$v=19$";
    if (s == NULL || strncmp(s, head, sizeof(head) - 1) != 0)
        return BV_EINVALID;
    s += sizeof(head) - 1;
    if (parse_u32(&s, "m=", &out->m) != 0 || parse_u32(&s, ",t=", &out->t) != 0 ||
        parse_u32(&s, ",p=", &out->p) != 0 || *s != '$')
        return BV_EINVALID;
    if (out->m < M_KIB_MIN || out->m > M_KIB_MAX || out->t < 1 || out->t > T_MAX || out->p < 1 ||
        out->p > P_MAX || out->m < 8 * out->p)
        return BV_EINVALID;
    const char *salt = s + 1, *d = strchr(salt, '$');
    if (d == NULL || b64_decode(salt, (size_t)(d - salt), out->salt, SALT_LEN) != 0 ||
        b64_decode(d + 1, strlen(d + 1), out->hash, HASH_LEN) != 0)
        return BV_EINVALID;
    return 0;
}

static int params_ok(const bv_identity_argon2_t *p)
{
    return p->m_kib >= M_KIB_MIN && p->m_kib <= M_KIB_MAX && p->t_cost >= 1 && p->t_cost <= T_MAX &&
           p->parallelism >= 1 && p->parallelism <= P_MAX && p->m_kib >= 8 * p->parallelism;
}

/* Runs Argon2id over password/salt into out[HASH_LEN]. */
static int derive(uint32_t m, uint32_t t, uint32_t p, const unsigned char salt[SALT_LEN],
                  const char *password, size_t len, unsigned char out[HASH_LEN])
{
    /* argon2_context takes a mutable password pointer: hand it a copy we wipe. */
    uint8_t *pwd = malloc(len + 1);
    uint8_t salt_copy[SALT_LEN];
    int rc;
    if (pwd == NULL)
        return BV_ENOMEM;
    memcpy(pwd, password, len);
    memcpy(salt_copy, salt, SALT_LEN);
    argon2_context ctx = {
        .out = out,
        .outlen = HASH_LEN,
        .pwd = pwd,
        .pwdlen = (uint32_t)len,
        .salt = salt_copy,
        .saltlen = SALT_LEN,
        .t_cost = t,
        .m_cost = m,
        .lanes = p,
        .threads = p,
        .version = ARGON2_VERSION_13,
        .allocate_cbk = on_alloc,
        .free_cbk = on_free,
        .flags = ARGON2_FLAG_CLEAR_PASSWORD,
    };
    rc = argon2_ctx(&ctx, Argon2_id);
    OPENSSL_cleanse(pwd, len + 1);
    free(pwd);
    if (rc == ARGON2_MEMORY_ALLOCATION_ERROR)
        return BV_ENOMEM;
    return rc == ARGON2_OK ? 0 : BV_ECRYPTO;
}

int bv_identity_password_hash(const bv_identity_argon2_t *p, const char *password, size_t len,
                              char out[BV_IDENTITY_PHC_MAX + 1])
{
    unsigned char salt[SALT_LEN], hash[HASH_LEN];
    char salt_b64[32], hash_b64[48];
    int rc;
    if (p == NULL || !params_ok(p) || password == NULL || len > BV_IDENTITY_PASSWORD_MAX)
        return BV_EINVALID;
    bv_random(salt, sizeof(salt));
    if ((rc = derive(p->m_kib, p->t_cost, p->parallelism, salt, password, len, hash)) != 0)
        return rc;
    b64_encode(salt, SALT_LEN, salt_b64);
    b64_encode(hash, HASH_LEN, hash_b64);
    OPENSSL_cleanse(hash, sizeof(hash));
    int n = snprintf(out, BV_IDENTITY_PHC_MAX + 1, "$argon2id$v=19$m=%u,t=%u,p=%u$%s$%s", p->m_kib, p->t_cost,
                     p->parallelism, salt_b64, hash_b64);
    return n > 0 && n <= BV_IDENTITY_PHC_MAX ? 0 : BV_EINTERNAL;
}

int bv_identity_password_verify(const char *phc, const char *password, size_t len)
{
    phc_t h;
    unsigned char got[HASH_LEN];
    int rc;
    if (password == NULL || len > BV_IDENTITY_PASSWORD_MAX || phc_parse(phc, &h) != 0)
        return BV_EINVALID;
    if ((rc = derive(h.m, h.t, h.p, h.salt, password, len, got)) != 0)
        return rc;
    rc = CRYPTO_memcmp(got, h.hash, HASH_LEN) == 0 ? 0 : BV_EUNAUTHENTICATED;
    OPENSSL_cleanse(got, sizeof(got));
    OPENSSL_cleanse(&h, sizeof(h));
    return rc;
}

int bv_identity_password_needs_rehash(const char *phc, const bv_identity_argon2_t *p)
{
    phc_t h;
    if (phc_parse(phc, &h) != 0)
        return 1;
    return h.m != p->m_kib || h.t != p->t_cost || h.p != p->parallelism;
}

/* Length of the UTF-8 sequence at s (max bytes available), 0 if invalid. */
static size_t utf8_seq(const unsigned char *s, size_t max)
{
    unsigned char c = s[0];
    size_t n;
    uint32_t cp;
    if (c < 0x80)
        return 1;
    if ((c & 0xE0) == 0xC0) {
        n = 2;
        cp = c & 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
        n = 3;
        cp = c & 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
        n = 4;
        cp = c & 0x07;
    } else {
        return 0;
    }
    if (n > max)
        return 0;
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        cp = cp << 6 | (s[i] & 0x3F);
    }
    if ((n == 2 && cp < 0x80) || (n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000) || cp > 0x10FFFF ||
        (cp >= 0xD800 && cp <= 0xDFFF))
        return 0;
    return n;
}

int bv_identity_password_check(const char *password, size_t len, const char **why)
{
    const char *w = NULL;
    size_t chars = 0;
    if (password == NULL || len > BV_IDENTITY_PASSWORD_MAX) {
        w = "the password must be at most 256 bytes";
        goto out;
    }
    for (size_t i = 0; i < len;) {
        const unsigned char *s = (const unsigned char *)password + i;
        size_t n = utf8_seq(s, len - i);
        if (n == 0 || (n == 1 && (s[0] < 0x20 || s[0] == 0x7F))) {
            w = "the password must be valid UTF-8 text without control characters";
            goto out;
        }
        i += n;
        chars++;
    }
    if (chars < BV_IDENTITY_PASSWORD_MIN)
        w = "the password must be at least 12 characters long";
out:
    if (why != NULL)
        *why = w;
    return w == NULL ? 0 : BV_EINVALID;
}
