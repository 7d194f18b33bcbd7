/* In-memory copy of our published public signing keys, by kid, for validation on the
 * event loops (which must not call the key store: it may block). A background thread
 * reloads the set from bv_keys_jwks every REFRESH_US, and sooner when poked (a token
 * named an unknown kid, or signing used a kid we had not seen: a rotation). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/errors.h"
#include "base/log.h"
#include "oauth/internal.h"

#define REFRESH_US           (30 * 1000000LL)
#define POKE_MIN_INTERVAL_US (1000000LL)

int keycache_init(keycache_t *kc, bv_keys_t *src)
{
    memset(kc, 0, sizeof(*kc));
    kc->src = src;
    pthread_rwlock_init(&kc->lock, NULL);
    pthread_mutex_init(&kc->copy_mu, NULL);
    pthread_mutex_init(&kc->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&kc->cv, &ca);
    pthread_condattr_destroy(&ca);
    return 0;
}

static void free_keys(kc_key_t *keys, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        EVP_MD_CTX_free(keys[i].vctx);
        EVP_PKEY_free(keys[i].pub);
    }
    free(keys);
}

int keycache_refresh(keycache_t *kc)
{
    json_t *jwks = NULL;
    kc_key_t *keys = NULL;
    size_t n = 0;
    int rc = bv_keys_jwks(kc->src, &jwks);
    if (rc != 0)
        return rc;
    json_t *arr = json_object_get(jwks, "keys");
    size_t cap = json_array_size(arr);
    if (cap > 0 && (keys = calloc(cap, sizeof(*keys))) == NULL) {
        json_decref(jwks);
        return BV_ENOMEM;
    }
    for (size_t i = 0; i < cap; i++) {
        json_t *jwk = json_array_get(arr, i);
        const char *kid = json_string_value(json_object_get(jwk, "kid"));
        if (kid == NULL || strlen(kid) >= sizeof(keys[n].kid))
            continue;
        if (jwk_to_pkey(jwk, &keys[n].pub, &keys[n].alg) != 0) {
            bv_log_warn("published signing key not usable for validation", "\"kid\":\"%s\"", kid);
            continue;
        }
        snprintf(keys[n].kid, sizeof(keys[n].kid), "%s", kid);
        keys[n].vctx = bv_keys_prepare_ctx(keys[n].pub, 0); /* NULL: prepared per use instead */
        n++;
    }
    json_decref(jwks);
    pthread_rwlock_wrlock(&kc->lock);
    int changed = n != kc->n;
    for (size_t i = 0; !changed && i < n; i++)
        changed = strcmp(keys[i].kid, kc->keys[i].kid) != 0;
    kc_key_t *old = kc->keys;
    size_t old_n = kc->n;
    kc->keys = keys;
    kc->n = n;
    if (changed)
        atomic_fetch_add(&kc->generation, 1);
    pthread_rwlock_unlock(&kc->lock);
    free_keys(old, old_n);
    return 0;
}

static void *refresher(void *arg)
{
    keycache_t *kc = arg;
    pthread_mutex_lock(&kc->mu);
    while (!kc->stop) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        ts.tv_sec += REFRESH_US / 1000000;
        while (!kc->stop && !kc->poke)
            if (pthread_cond_timedwait(&kc->cv, &kc->mu, &ts) != 0)
                break;
        if (kc->stop)
            break;
        kc->poke = 0;
        pthread_mutex_unlock(&kc->mu);
        int rc = keycache_refresh(kc);
        if (rc != 0)
            bv_log_warn("signing keys not refreshed", "\"error\":\"%s\"", bv_err_name(rc));
        pthread_mutex_lock(&kc->mu);
    }
    pthread_mutex_unlock(&kc->mu);
    return NULL;
}

int keycache_start_thread(keycache_t *kc)
{
    if (pthread_create(&kc->thread, NULL, refresher, kc) != 0)
        return BV_EINTERNAL;
    kc->running = 1;
    return 0;
}

void keycache_poke(keycache_t *kc)
{
    int64_t now = bv_mono_us(), last = atomic_load(&kc->last_poke_us);
    if (!kc->running || now - last < POKE_MIN_INTERVAL_US)
        return;
    if (!atomic_compare_exchange_strong(&kc->last_poke_us, &last, now))
        return;
    /* trylock: a loop never waits for the refresher */
    if (pthread_mutex_trylock(&kc->mu) == 0) {
        kc->poke = 1;
        pthread_cond_signal(&kc->cv);
        pthread_mutex_unlock(&kc->mu);
    }
}

int keycache_verify(keycache_t *kc, const char *kid, jws_alg_t alg, const void *data, size_t len,
                    const unsigned char *sig, size_t sig_len)
{
    EVP_PKEY *pub = NULL;
    EVP_MD_CTX *mctx = NULL;
    jws_alg_t pinned = JWS_ALG_NONE_;
    pthread_rwlock_rdlock(&kc->lock);
    for (size_t i = 0; i < kc->n; i++) {
        if (strcmp(kc->keys[i].kid, kid) == 0) {
            pinned = kc->keys[i].alg;
            if (EVP_PKEY_up_ref(kc->keys[i].pub) == 1)
                pub = kc->keys[i].pub;
            if (pub != NULL && pinned == alg && kc->keys[i].vctx != NULL) {
                pthread_mutex_lock(&kc->copy_mu);
                mctx = bv_keys_ctx_copy(kc->keys[i].vctx);
                pthread_mutex_unlock(&kc->copy_mu);
            }
            break;
        }
    }
    pthread_rwlock_unlock(&kc->lock);
    if (pub == NULL)
        return BV_ENOTFOUND;
    int rc;
    if (pinned != alg) {
        EVP_MD_CTX_free(mctx);
        rc = BV_EINVALID;
    } else {
        rc = jws_verify(pub, mctx, alg, data, len, sig, sig_len);
    }
    EVP_PKEY_free(pub);
    return rc;
}

void keycache_fini(keycache_t *kc)
{
    if (kc->running) {
        pthread_mutex_lock(&kc->mu);
        kc->stop = 1;
        pthread_cond_signal(&kc->cv);
        pthread_mutex_unlock(&kc->mu);
        pthread_join(kc->thread, NULL);
        kc->running = 0;
    }
    free_keys(kc->keys, kc->n);
    kc->keys = NULL;
    kc->n = 0;
    pthread_rwlock_destroy(&kc->lock);
    pthread_mutex_destroy(&kc->copy_mu);
    pthread_mutex_destroy(&kc->mu);
    pthread_cond_destroy(&kc->cv);
}
