/* The encrypted profile cache (docs/customer.md, "Profile cache").
 *
 * Why encrypted: the cache holds personal data (name, e-mail, phone) of every customer
 * who used the API in the last TTL seconds. Holding it as AES-256-GCM ciphertext under a
 * key that exists only in this process means that a heap dump, a core file, a swapped
 * page or a stray read past a buffer shows ciphertext, not a customer list; and the key
 * itself is one 32-byte buffer, wiped at destroy. GCM authenticates each entry with the
 * user id as additional data, so an entry that was corrupted or attached to another user
 * fails to decrypt and is treated as a miss (and dropped), never returned.
 *
 * Nonces: 4 random bytes fixed per cache then a 64-bit counter, so no nonce repeats under
 * one key (NIST SP 800-38D §8.2.1, deterministic construction).
 *
 * Entry plaintext: version (1), channels (1), then username, display_name, email, phone,
 * locale each as one length byte and the bytes. The id is the key and the AAD. */
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/errors.h"
#include "base/log.h"
#include "customer/internal.h"
#include "notify/notify.h"

#define KEY_LEN    32
#define NONCE_LEN  12
#define TAG_LEN    16
#define PT_VERSION 1
#define PT_MAX     (2 + 5 + 255 * 5)

typedef struct entry {
    struct entry *hnext;         /* hash chain */
    struct entry *older, *newer; /* storage order: eviction takes the oldest */
    uint64_t hash;
    int64_t expires_at; /* monotonic us */
    char user_id[BV_UUID_STR_LEN + 1];
    unsigned char nonce[NONCE_LEN];
    unsigned char tag[TAG_LEN];
    size_t ct_len;
    unsigned char ct[]; /* ciphertext, ct_len bytes */
} entry_t;

struct customer_cache {
    pthread_mutex_t mu;
    entry_t **buckets;
    size_t mask; /* n_buckets - 1 (power of two) */
    entry_t *oldest, *newest;
    size_t n, max;
    int64_t ttl_us;
    uint64_t generation;
    uint64_t hash_seed;
    _Atomic uint64_t nonce_counter;
    unsigned char nonce_prefix[4];
    unsigned char key[KEY_LEN];
    EVP_CIPHER *aes; /* AES-256-GCM, fetched once */
};

/* FNV-1a seeded per cache. The ids are those of users that exist (looked up before they
 * are stored), so nobody outside chooses them freely. */
static uint64_t hash_id(const customer_cache_t *c, const char *id)
{
    uint64_t h = 1469598103934665603ULL ^ c->hash_seed;
    for (const unsigned char *p = (const unsigned char *)id; *p; p++) {
        h ^= *p;
        h *= 1099511628211ULL;
    }
    return h ^ (h >> 29);
}

int customer_cache_create(size_t max_entries, int64_t ttl_us, customer_cache_t **out)
{
    customer_cache_t *c = NULL;
    size_t n_buckets = 1024;
    int rc = BV_ENOMEM;
    *out = NULL;
    if (max_entries == 0 || ttl_us < 0)
        return BV_EINVALID;
    while (n_buckets < max_entries && n_buckets < ((size_t)1 << 30))
        n_buckets <<= 1;
    if ((c = calloc(1, sizeof(*c))) == NULL)
        goto out;
    pthread_mutex_init(&c->mu, NULL);
    if ((c->buckets = calloc(n_buckets, sizeof(*c->buckets))) == NULL)
        goto out;
    c->mask = n_buckets - 1;
    c->max = max_entries;
    c->ttl_us = ttl_us;
    bv_random(c->key, sizeof(c->key));
    bv_random(c->nonce_prefix, sizeof(c->nonce_prefix));
    bv_random(&c->hash_seed, sizeof(c->hash_seed));
    atomic_init(&c->nonce_counter, 0);
    if ((c->aes = EVP_CIPHER_fetch(NULL, "AES-256-GCM", NULL)) == NULL) {
        rc = BV_ECRYPTO;
        goto out;
    }
    *out = c;
    c = NULL;
    rc = 0;
out:
    customer_cache_destroy(c);
    return rc;
}

static void entry_free(entry_t *e)
{
    if (e != NULL)
        OPENSSL_clear_free(e, sizeof(*e) + e->ct_len);
}

/* Unlinks e from its chain and from the storage order; mu held. */
static void unlink_entry(customer_cache_t *c, entry_t *e)
{
    entry_t **pp = &c->buckets[e->hash & c->mask];
    while (*pp != NULL && *pp != e)
        pp = &(*pp)->hnext;
    if (*pp == e)
        *pp = e->hnext;
    if (e->older != NULL)
        e->older->newer = e->newer;
    else
        c->oldest = e->newer;
    if (e->newer != NULL)
        e->newer->older = e->older;
    else
        c->newest = e->older;
    c->n--;
}

void customer_cache_destroy(customer_cache_t *c)
{
    if (c == NULL)
        return;
    for (entry_t *e = c->oldest, *next; e != NULL; e = next) {
        next = e->newer;
        entry_free(e);
    }
    free(c->buckets);
    EVP_CIPHER_free(c->aes);
    OPENSSL_cleanse(c->key, sizeof(c->key));
    pthread_mutex_destroy(&c->mu);
    free(c);
}

static entry_t *find(customer_cache_t *c, const char *user_id, uint64_t h)
{
    for (entry_t *e = c->buckets[h & c->mask]; e != NULL; e = e->hnext)
        if (e->hash == h && strcmp(e->user_id, user_id) == 0)
            return e;
    return NULL;
}

/* ---- the plaintext form ---- */

static int put_str(unsigned char *pt, size_t *len, const char *s)
{
    size_t n = strlen(s);
    if (n > 255)
        return BV_EINVALID;
    pt[(*len)++] = (unsigned char)n;
    memcpy(pt + *len, s, n);
    *len += n;
    return 0;
}

static int encode(const bv_customer_profile_t *p, unsigned char pt[PT_MAX], size_t *len_out)
{
    size_t len = 0;
    pt[len++] = PT_VERSION;
    pt[len++] = (unsigned char)p->channels;
    if (put_str(pt, &len, p->username) != 0 || put_str(pt, &len, p->display_name) != 0 ||
        put_str(pt, &len, p->email) != 0 || put_str(pt, &len, p->phone) != 0 ||
        put_str(pt, &len, p->locale) != 0)
        return BV_EINVALID;
    *len_out = len;
    return 0;
}

static int get_str(const unsigned char *pt, size_t len, size_t *pos, char *dst, size_t cap)
{
    if (*pos >= len)
        return BV_EINVALID;
    size_t n = pt[(*pos)++];
    if (n >= cap || *pos + n > len)
        return BV_EINVALID;
    memcpy(dst, pt + *pos, n);
    dst[n] = '\0';
    *pos += n;
    return 0;
}

static int decode(const unsigned char *pt, size_t len, bv_customer_profile_t *out)
{
    size_t pos = 2;
    if (len < 2 || pt[0] != PT_VERSION || pt[1] == 0 || (pt[1] & ~(BV_NOTIFY_EMAIL | BV_NOTIFY_SMS)) != 0)
        return BV_EINVALID;
    out->channels = pt[1];
    if (get_str(pt, len, &pos, out->username, sizeof(out->username)) != 0 ||
        get_str(pt, len, &pos, out->display_name, sizeof(out->display_name)) != 0 ||
        get_str(pt, len, &pos, out->email, sizeof(out->email)) != 0 ||
        get_str(pt, len, &pos, out->phone, sizeof(out->phone)) != 0 ||
        get_str(pt, len, &pos, out->locale, sizeof(out->locale)) != 0 || pos != len)
        return BV_EINVALID;
    return 0;
}

/* ---- AES-256-GCM ---- */

static int seal(customer_cache_t *c, const char *aad, const unsigned char *pt, size_t len, entry_t *e)
{
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    uint64_t counter = atomic_fetch_add(&c->nonce_counter, 1);
    int n = 0, rc = BV_ECRYPTO;
    memcpy(e->nonce, c->nonce_prefix, 4);
    for (int i = 0; i < 8; i++)
        e->nonce[4 + i] = (unsigned char)(counter >> (56 - 8 * i));
    if (ctx == NULL || EVP_EncryptInit_ex2(ctx, c->aes, c->key, e->nonce, NULL) != 1 ||
        EVP_EncryptUpdate(ctx, NULL, &n, (const unsigned char *)aad, (int)strlen(aad)) != 1 ||
        EVP_EncryptUpdate(ctx, e->ct, &n, pt, (int)len) != 1 || (size_t)n != len ||
        EVP_EncryptFinal_ex(ctx, e->ct + n, &n) != 1 ||
        EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_GET_TAG, TAG_LEN, e->tag) != 1)
        goto out;
    e->ct_len = len;
    rc = 0;
out:
    EVP_CIPHER_CTX_free(ctx); /* frees (and cleanses) the expanded key */
    return rc;
}

static int open_entry(customer_cache_t *c, const char *aad, const unsigned char nonce[NONCE_LEN],
                      const unsigned char tag[TAG_LEN], const unsigned char *ct, size_t len,
                      unsigned char *pt)
{
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    unsigned char tag_copy[TAG_LEN];
    int n = 0, rc = BV_EINTEGRITY;
    memcpy(tag_copy, tag, TAG_LEN);
    if (ctx == NULL || EVP_DecryptInit_ex2(ctx, c->aes, c->key, nonce, NULL) != 1 ||
        EVP_DecryptUpdate(ctx, NULL, &n, (const unsigned char *)aad, (int)strlen(aad)) != 1 ||
        EVP_DecryptUpdate(ctx, pt, &n, ct, (int)len) != 1 ||
        EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_SET_TAG, TAG_LEN, tag_copy) != 1 ||
        EVP_DecryptFinal_ex(ctx, pt + n, &n) != 1)
        goto out;
    rc = 0;
out:
    EVP_CIPHER_CTX_free(ctx);
    return rc;
}

/* ---- the map ---- */

uint64_t customer_cache_generation(customer_cache_t *c)
{
    pthread_mutex_lock(&c->mu);
    uint64_t g = c->generation;
    pthread_mutex_unlock(&c->mu);
    return g;
}

int customer_cache_get(customer_cache_t *c, const char *user_id, int64_t now, bv_customer_profile_t *out)
{
    unsigned char nonce[NONCE_LEN], tag[TAG_LEN], ct[PT_MAX], pt[PT_MAX];
    size_t len = 0;
    uint64_t h, counter_seen;
    entry_t *e;
    int rc;

    if (c == NULL || c->ttl_us == 0 || user_id == NULL || strlen(user_id) > BV_UUID_STR_LEN)
        return BV_ENOTFOUND;
    h = hash_id(c, user_id);
    pthread_mutex_lock(&c->mu);
    e = find(c, user_id, h);
    if (e != NULL && now >= e->expires_at) {
        unlink_entry(c, e);
        entry_free(e);
        e = NULL;
    }
    if (e == NULL) {
        pthread_mutex_unlock(&c->mu);
        return BV_ENOTFOUND;
    }
    /* copy out and decrypt without the lock: other readers do not wait on the cipher */
    memcpy(nonce, e->nonce, NONCE_LEN);
    memcpy(tag, e->tag, TAG_LEN);
    len = e->ct_len <= sizeof(ct) ? e->ct_len : 0;
    memcpy(ct, e->ct, len);
    memcpy(&counter_seen, nonce + 4, sizeof(counter_seen)); /* identifies this entry version */
    pthread_mutex_unlock(&c->mu);

    rc = len > 0 ? open_entry(c, user_id, nonce, tag, ct, len, pt) : BV_EINTEGRITY;
    if (rc == 0) {
        memset(out, 0, sizeof(*out));
        snprintf(out->id, sizeof(out->id), "%s", user_id);
        rc = decode(pt, len, out);
    }
    OPENSSL_cleanse(pt, sizeof(pt));
    if (rc == 0)
        return 0;
    /* corrupted or misplaced: drop it (if it is still the entry we read) and miss */
    bv_log_warn("profile cache entry failed authentication; dropped", NULL);
    pthread_mutex_lock(&c->mu);
    e = find(c, user_id, h);
    if (e != NULL && memcmp(e->nonce + 4, &counter_seen, sizeof(counter_seen)) == 0) {
        unlink_entry(c, e);
        entry_free(e);
    }
    pthread_mutex_unlock(&c->mu);
    memset(out, 0, sizeof(*out));
    return BV_ENOTFOUND;
}

int customer_cache_put(customer_cache_t *c, const bv_customer_profile_t *p, uint64_t gen, int64_t now)
{
    unsigned char pt[PT_MAX];
    size_t len = 0;
    entry_t *e = NULL, *old;
    int rc;

    if (c == NULL || c->ttl_us == 0)
        return 0;
    if (strlen(p->id) != BV_UUID_STR_LEN || p->channels == 0)
        return BV_EINVALID;
    if ((rc = encode(p, pt, &len)) != 0)
        goto out;
    if ((e = calloc(1, sizeof(*e) + len)) == NULL) {
        rc = BV_ENOMEM;
        goto out;
    }
    memcpy(e->user_id, p->id, sizeof(e->user_id));
    e->hash = hash_id(c, e->user_id);
    e->expires_at = now + c->ttl_us;
    if ((rc = seal(c, e->user_id, pt, len, e)) != 0)
        goto out;
    pthread_mutex_lock(&c->mu);
    if (c->generation != gen) {
        /* forgotten while we loaded: what we hold may be stale */
        pthread_mutex_unlock(&c->mu);
        goto out;
    }
    if ((old = find(c, e->user_id, e->hash)) != NULL) {
        unlink_entry(c, old);
        entry_free(old);
    }
    e->hnext = c->buckets[e->hash & c->mask];
    c->buckets[e->hash & c->mask] = e;
    e->older = c->newest;
    if (c->newest != NULL)
        c->newest->newer = e;
    else
        c->oldest = e;
    c->newest = e;
    c->n++;
    while (c->n > c->max) {
        old = c->oldest;
        unlink_entry(c, old);
        entry_free(old);
    }
    pthread_mutex_unlock(&c->mu);
    e = NULL;
    rc = 0;
out:
    OPENSSL_cleanse(pt, sizeof(pt));
    if (e != NULL)
        entry_free(e);
    return rc;
}

void customer_cache_forget(customer_cache_t *c, const char *user_id)
{
    entry_t *e;
    if (c == NULL || user_id == NULL)
        return;
    uint64_t h = hash_id(c, user_id);
    pthread_mutex_lock(&c->mu);
    c->generation++;
    if ((e = find(c, user_id, h)) != NULL) {
        unlink_entry(c, e);
        entry_free(e);
    }
    pthread_mutex_unlock(&c->mu);
}

size_t customer_cache_size(customer_cache_t *c)
{
    if (c == NULL)
        return 0;
    pthread_mutex_lock(&c->mu);
    size_t n = c->n;
    pthread_mutex_unlock(&c->mu);
    return n;
}
