/* Resource-server side: validation of our JWT access tokens (RFC 9068 §4) without
 * blocking, for the HTTP authenticator on the event loops.
 *
 * A per-thread cache remembers tokens whose signature was verified (by SHA-256 of the
 * token): a client presents the same access token for many requests, and an ECDSA
 * verification costs ~70 us while a hit costs ~1 us. It is 4-way set-associative (1,024
 * tokens per thread, the least recently used of a set replaced), so that the tokens in use
 * at once do not evict each other: a direct-mapped cache made two tokens landing in one
 * slot verify every time. A hit still re-checks exp/nbf, and the cache is bypassed as soon
 * as the key set or the expected issuer changes. */
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "base/errors.h"
#include "base/log.h"
#include "oauth/internal.h"

#define TCACHE_WAYS 4
#define TCACHE_SETS 256
#define MAX_TOKEN   8192

typedef struct {
    unsigned char hash[32];
    const bv_oauth_validator_t *v;
    uint64_t generation, epoch;
    int64_t exp, nbf;
    bv_principal_t principal;
    uint64_t used; /* when last used (the thread's own clock), 0 if empty */
} tcache_entry_t;

static _Thread_local uint64_t tcache_clock;

/* One cache per thread (no locking), freed when the thread exits. */
static pthread_key_t tcache_key;
static pthread_once_t tcache_once = PTHREAD_ONCE_INIT;
static void tcache_key_make(void)
{
    pthread_key_create(&tcache_key, free);
}

static tcache_entry_t *tcache_get(void)
{
    pthread_once(&tcache_once, tcache_key_make);
    tcache_entry_t *t = pthread_getspecific(tcache_key);
    if (t == NULL && (t = calloc(TCACHE_SETS * TCACHE_WAYS, sizeof(*t))) != NULL &&
        pthread_setspecific(tcache_key, t) != 0) {
        free(t);
        t = NULL;
    }
    return t;
}

int bv_oauth_validator_create(bv_keys_t *keys, const char *issuer, const char *audience, int refresh_thread,
                              bv_oauth_validator_t **out)
{
    bv_oauth_validator_t *v = calloc(1, sizeof(*v));
    int rc;
    *out = NULL;
    if (v == NULL)
        return BV_ENOMEM;
    keycache_init(&v->kc, keys);
    pthread_mutex_init(&v->mu, NULL);
    atomic_store(&v->cache_on, 1);
    bv_oauth_validator_set_issuer(v, issuer, audience);
    if ((rc = keycache_refresh(&v->kc)) != 0 ||
        (refresh_thread && (rc = keycache_start_thread(&v->kc)) != 0)) {
        bv_oauth_validator_free(v);
        return rc;
    }
    *out = v;
    return 0;
}

void bv_oauth_validator_free(bv_oauth_validator_t *v)
{
    if (v == NULL)
        return;
    keycache_fini(&v->kc);
    pthread_mutex_destroy(&v->mu);
    free(v);
}

void bv_oauth_validator_set_issuer(bv_oauth_validator_t *v, const char *issuer, const char *audience)
{
    pthread_mutex_lock(&v->mu);
    snprintf(v->issuer, sizeof(v->issuer), "%s", issuer != NULL ? issuer : "");
    snprintf(v->audience, sizeof(v->audience), "%s", audience != NULL ? audience : "");
    atomic_fetch_add(&v->epoch, 1);
    pthread_mutex_unlock(&v->mu);
}

int bv_oauth_validator_refresh(bv_oauth_validator_t *v)
{
    return keycache_refresh(&v->kc);
}

uint64_t bv_oauth_validator_verifications(bv_oauth_validator_t *v)
{
    return atomic_load(&v->verifications);
}

void bv_oauth_validator_set_cache(bv_oauth_validator_t *v, int on)
{
    atomic_store(&v->cache_on, on != 0);
}

static int typ_ok(const char *typ)
{
    /* RFC 9068 §2.1: "at+jwt"; the media-type form "application/at+jwt" is equivalent. */
    return typ != NULL && (strcasecmp(typ, "at+jwt") == 0 || strcasecmp(typ, "application/at+jwt") == 0);
}

static int aud_ok(const json_t *aud, const char *want)
{
    if (json_is_string(aud))
        return strcmp(json_string_value(aud), want) == 0;
    if (json_is_array(aud)) {
        size_t i;
        json_t *a;
        json_array_foreach(aud, i,
                           a) if (json_is_string(a) && strcmp(json_string_value(a), want) == 0) return 1;
    }
    return 0;
}

static int copy_str(const json_t *j, char *out, size_t n, int required)
{
    const char *s = json_string_value(j);
    if (s == NULL)
        return required ? -1 : 0;
    if (strlen(s) >= n)
        return -1;
    memcpy(out, s, strlen(s) + 1);
    return 0;
}

/* Checks the claims and fills the principal. 0 or BV_EUNAUTHENTICATED. */
static int check_claims(const json_t *p, const char *issuer, const char *audience, int64_t now,
                        bv_principal_t *out, int64_t *exp_out, int64_t *nbf_out)
{
    const json_t *exp = json_object_get(p, "exp"), *nbf = json_object_get(p, "nbf"),
                 *iat = json_object_get(p, "iat");
    const char *iss = json_string_value(json_object_get(p, "iss"));
    if (iss == NULL || strcmp(iss, issuer) != 0 || !aud_ok(json_object_get(p, "aud"), audience))
        return BV_EUNAUTHENTICATED;
    if (!json_is_integer(exp) || json_integer_value(exp) + BV_OAUTH_SKEW <= now ||
        json_integer_value(exp) > now + 600 + BV_OAUTH_SKEW) /* we never issue longer-lived ones */
        return BV_EUNAUTHENTICATED;
    if (nbf != NULL && (!json_is_integer(nbf) || json_integer_value(nbf) > now + BV_OAUTH_SKEW))
        return BV_EUNAUTHENTICATED;
    if (iat != NULL && (!json_is_integer(iat) || json_integer_value(iat) > now + BV_OAUTH_SKEW))
        return BV_EUNAUTHENTICATED;
    memset(out, 0, sizeof(*out));
    if (copy_str(json_object_get(p, "sub"), out->subject, sizeof(out->subject), 1) != 0 ||
        out->subject[0] == '\0' ||
        copy_str(json_object_get(p, "client_id"), out->client_id, sizeof(out->client_id), 1) != 0 ||
        json_object_get(p, "jti") == NULL ||
        copy_str(json_object_get(p, "scope"), out->scopes, sizeof(out->scopes), 0) != 0 ||
        copy_str(json_object_get(p, "acr"), out->acr, sizeof(out->acr), 0) != 0)
        return BV_EUNAUTHENTICATED;
    const json_t *amr = json_object_get(p, "amr");
    if (json_is_array(amr)) {
        size_t i, off = 0;
        json_t *m;
        json_array_foreach(amr, i, m)
        {
            const char *s = json_string_value(m);
            if (s == NULL || off + strlen(s) + 2 > sizeof(out->amr))
                return BV_EUNAUTHENTICATED;
            off += (size_t)snprintf(out->amr + off, sizeof(out->amr) - off, "%s%s", off ? " " : "", s);
        }
    }
    const json_t *at = json_object_get(p, "auth_time");
    out->auth_time = json_is_integer(at) ? json_integer_value(at) : 0;
    /* RFC 9068 §2.2: with no resource owner (client credentials) sub is the client. */
    out->kind = strcmp(out->subject, out->client_id) == 0 ? BV_PRINCIPAL_CLIENT : BV_PRINCIPAL_USER;
    *exp_out = json_integer_value(exp);
    *nbf_out = nbf != NULL ? json_integer_value(nbf) : 0;
    return 0;
}

int bv_oauth_validate_access_token(bv_oauth_validator_t *v, const char *token, size_t len, int64_t now,
                                   bv_principal_t *out)
{
    char issuer[512], audience[512];
    unsigned char hash[32];
    tcache_entry_t *e = NULL;
    jwt_t j;
    int64_t exp = 0, nbf = 0;
    int rc = BV_EUNAUTHENTICATED;
    if (token == NULL || len < 16 || len > MAX_TOKEN)
        return BV_EUNAUTHENTICATED;
    uint64_t gen = atomic_load(&v->kc.generation), epoch = atomic_load(&v->epoch);
    int use_cache = atomic_load(&v->cache_on);
    if (use_cache) {
        tcache_entry_t *tcache = tcache_get();
        if (tcache != NULL) {
            SHA256((const unsigned char *)token, len, hash);
            tcache_entry_t *set = &tcache[(size_t)hash[0] % TCACHE_SETS * TCACHE_WAYS];
            for (int w = 0; w < TCACHE_WAYS; w++) {
                tcache_entry_t *c = &set[w];
                if (c->used && c->v == v && c->generation == gen && c->epoch == epoch &&
                    CRYPTO_memcmp(c->hash, hash, 32) == 0) {
                    if (c->exp + BV_OAUTH_SKEW <= now || c->nbf > now + BV_OAUTH_SKEW)
                        return BV_EUNAUTHENTICATED;
                    c->used = ++tcache_clock;
                    *out = c->principal;
                    return 0;
                }
                if (e == NULL || c->used < e->used)
                    e = c; /* where to keep it: an empty way, else the least recently used */
            }
        }
    }
    if (jwt_parse(token, len, &j) != 0)
        return BV_EUNAUTHENTICATED;
    const json_t *h = j.header;
    jws_alg_t alg = jws_alg_parse(json_string_value(json_object_get(h, "alg")));
    const char *kid = json_string_value(json_object_get(h, "kid"));
    if (alg == JWS_ALG_NONE_ || kid == NULL || !typ_ok(json_string_value(json_object_get(h, "typ"))) ||
        json_object_get(h, "crit") != NULL)
        goto out;
    atomic_fetch_add(&v->verifications, 1);
    int vr = keycache_verify(&v->kc, kid, alg, token, j.signing_input_len, j.sig, j.sig_len);
    if (vr == BV_ENOTFOUND)
        keycache_poke(&v->kc); /* maybe a key published since the last refresh */
    if (vr != 0)
        goto out;
    pthread_mutex_lock(&v->mu);
    memcpy(issuer, v->issuer, sizeof(issuer));
    memcpy(audience, v->audience, sizeof(audience));
    pthread_mutex_unlock(&v->mu);
    if ((rc = check_claims(j.payload, issuer, audience, now, out, &exp, &nbf)) != 0)
        goto out;
    if (e != NULL) {
        memcpy(e->hash, hash, 32);
        e->v = v;
        e->generation = gen;
        e->epoch = epoch;
        e->exp = exp;
        e->nbf = nbf;
        e->principal = *out;
        e->used = ++tcache_clock;
    }
out:
    jwt_free(&j);
    if (rc != 0)
        memset(out, 0, sizeof(*out));
    return rc;
}
