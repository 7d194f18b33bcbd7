/* JWS signing keys (RFC 7515/7518): ES256 (ECDSA P-256, SHA-256) and RS256 (RSASSA-PKCS1
 * v1.5, SHA-256, RSA 2048). Each key has a kid and a state:
 *
 *   next     published in the JWKS, not signing yet (clients fetch it before it signs)
 *   active   signs (one per alg), published
 *   retired  verifies and stays published until retire_until, then is removed
 *
 * With the file adapter the private key is generated here and stored as an envelope
 * ciphertext (purpose "signing", aad {keys_signing, kid, private_key}); with pkcs11 it is
 * generated in the token (non-extractable) and signing happens there. Verification always
 * happens in-process with the stored public key. A process caches the key states for a
 * few seconds so that a rotation done by an admin command reaches a running server. */
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/x509.h>
#include <stdlib.h>
#include <string.h>

#include "base/errors.h"
#include "base/log.h"
#include "keys/keys_internal.h"

#define STATES_TTL_US (10 * 1000000LL)

struct sk_entry {
    char kid[64];
    bv_keys_alg_t alg;
    char state[8];
    char location[8];
    int64_t retire_until; /* 0 = none */
    int64_t created_at;
    EVP_PKEY *pub;
    EVP_PKEY *priv;     /* file adapter, loaded on first signature */
    EVP_MD_CTX *sign_ctx; /* prepared for priv on first signature (bv_keys_prepare_ctx) */
    bv_buf_t priv_blob; /* envelope ciphertext of the private key (file adapter) */
    int seen;           /* reload bookkeeping */
    sk_entry_t *next;
};

static const char *alg_name(bv_keys_alg_t alg)
{
    return alg == BV_KEYS_ALG_ES256 ? "ES256" : "RS256";
}

static int alg_parse(const char *s, bv_keys_alg_t *out)
{
    if (s != NULL && strcmp(s, "ES256") == 0) {
        *out = BV_KEYS_ALG_ES256;
        return 0;
    }
    if (s != NULL && strcmp(s, "RS256") == 0) {
        *out = BV_KEYS_ALG_RS256;
        return 0;
    }
    return BV_EINVALID;
}

/* ---- helpers shared with the pkcs11 adapter and the tests ---- */

int bv_keys_pub_from_ec_point(const unsigned char *point, size_t len, EVP_PKEY **out)
{
    OSSL_PARAM_BLD *b = OSSL_PARAM_BLD_new();
    OSSL_PARAM *params = NULL;
    EVP_PKEY_CTX *pc = NULL;
    int rc = BV_ECRYPTO;
    *out = NULL;
    if (b == NULL || OSSL_PARAM_BLD_push_utf8_string(b, OSSL_PKEY_PARAM_GROUP_NAME, "prime256v1", 0) != 1 ||
        OSSL_PARAM_BLD_push_octet_string(b, OSSL_PKEY_PARAM_PUB_KEY, point, len) != 1 ||
        (params = OSSL_PARAM_BLD_to_param(b)) == NULL)
        goto out;
    if ((pc = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL)) == NULL || EVP_PKEY_fromdata_init(pc) != 1 ||
        EVP_PKEY_fromdata(pc, out, EVP_PKEY_PUBLIC_KEY, params) != 1)
        goto out;
    rc = 0;
out:
    EVP_PKEY_CTX_free(pc);
    OSSL_PARAM_free(params);
    OSSL_PARAM_BLD_free(b);
    return rc;
}

int bv_keys_pub_from_rsa(const unsigned char *n, size_t n_len, const unsigned char *e, size_t e_len,
                         EVP_PKEY **out)
{
    OSSL_PARAM_BLD *b = OSSL_PARAM_BLD_new();
    OSSL_PARAM *params = NULL;
    EVP_PKEY_CTX *pc = NULL;
    BIGNUM *bn_n = BN_bin2bn(n, (int)n_len, NULL), *bn_e = BN_bin2bn(e, (int)e_len, NULL);
    int rc = BV_ECRYPTO;
    *out = NULL;
    if (b == NULL || bn_n == NULL || bn_e == NULL ||
        OSSL_PARAM_BLD_push_BN(b, OSSL_PKEY_PARAM_RSA_N, bn_n) != 1 ||
        OSSL_PARAM_BLD_push_BN(b, OSSL_PKEY_PARAM_RSA_E, bn_e) != 1 ||
        (params = OSSL_PARAM_BLD_to_param(b)) == NULL)
        goto out;
    if ((pc = EVP_PKEY_CTX_new_from_name(NULL, "RSA", NULL)) == NULL || EVP_PKEY_fromdata_init(pc) != 1 ||
        EVP_PKEY_fromdata(pc, out, EVP_PKEY_PUBLIC_KEY, params) != 1)
        goto out;
    rc = 0;
out:
    EVP_PKEY_CTX_free(pc);
    OSSL_PARAM_free(params);
    OSSL_PARAM_BLD_free(b);
    BN_free(bn_n);
    BN_free(bn_e);
    return rc;
}

int bv_keys_ecdsa_der_to_raw(const unsigned char *der, size_t len, unsigned char raw[64])
{
    const unsigned char *p = der;
    const BIGNUM *r, *s;
    ECDSA_SIG *sig = d2i_ECDSA_SIG(NULL, &p, (long)len);
    int rc = BV_ECRYPTO;
    if (sig == NULL)
        return BV_ECRYPTO;
    ECDSA_SIG_get0(sig, &r, &s);
    if (BN_num_bytes(r) <= 32 && BN_num_bytes(s) <= 32 && BN_bn2binpad(r, raw, 32) == 32 &&
        BN_bn2binpad(s, raw + 32, 32) == 32)
        rc = 0;
    ECDSA_SIG_free(sig);
    return rc;
}

int bv_keys_ecdsa_raw_to_der(const unsigned char raw[64], unsigned char **der_out, size_t *len_out)
{
    ECDSA_SIG *sig = ECDSA_SIG_new();
    BIGNUM *r = BN_bin2bn(raw, 32, NULL), *s = BN_bin2bn(raw + 32, 32, NULL);
    int rc = BV_ECRYPTO;
    *der_out = NULL;
    if (sig == NULL || r == NULL || s == NULL || ECDSA_SIG_set0(sig, r, s) != 1)
        goto out;
    r = s = NULL; /* owned by sig now */
    int n = i2d_ECDSA_SIG(sig, der_out);
    if (n <= 0)
        goto out;
    *len_out = (size_t)n;
    rc = 0;
out:
    BN_free(r);
    BN_free(s);
    ECDSA_SIG_free(sig);
    return rc;
}

int bv_keys_verify_with(EVP_PKEY *pub, bv_keys_alg_t alg, const void *data, size_t len, const void *sig,
                        size_t sig_len)
{
    EVP_MD_CTX *mctx = NULL;
    unsigned char *der = NULL;
    size_t der_len = 0;
    int rc = BV_EINTEGRITY;
    if (pub == NULL || sig == NULL || (data == NULL && len > 0))
        return BV_EINTEGRITY;
    if (alg == BV_KEYS_ALG_ES256) {
        if (!EVP_PKEY_is_a(pub, "EC") || sig_len != 64)
            return BV_EINTEGRITY;
        if (bv_keys_ecdsa_raw_to_der(sig, &der, &der_len) != 0)
            return BV_EINTEGRITY;
        sig = der;
        sig_len = der_len;
    } else if (!EVP_PKEY_is_a(pub, "RSA") || EVP_PKEY_get_bits(pub) < 2048) {
        return BV_EINTEGRITY;
    }
    if ((mctx = bv_keys_prepare_ctx(pub, 0)) == NULL)
        goto out;
    if (EVP_DigestVerify(mctx, sig, sig_len, data, len) == 1)
        rc = 0;
out:
    EVP_MD_CTX_free(mctx);
    OPENSSL_free(der);
    return rc;
}

EVP_MD_CTX *bv_keys_prepare_ctx(EVP_PKEY *key, int sign)
{
    EVP_MD_CTX *c = EVP_MD_CTX_new();
    if (c == NULL)
        return NULL;
    int ok = sign ? EVP_DigestSignInit_ex(c, NULL, "SHA256", NULL, NULL, key, NULL)
                  : EVP_DigestVerifyInit_ex(c, NULL, "SHA256", NULL, NULL, key, NULL);
    if (ok != 1) {
        EVP_MD_CTX_free(c);
        return NULL;
    }
    /* one use each: without this, the final step copies the context to allow more input */
    EVP_MD_CTX_set_flags(c, EVP_MD_CTX_FLAG_FINALISE);
    return c;
}

EVP_MD_CTX *bv_keys_ctx_copy(const EVP_MD_CTX *prepared)
{
    EVP_MD_CTX *c = EVP_MD_CTX_new();
    if (c != NULL && EVP_MD_CTX_copy_ex(c, prepared) != 1) {
        EVP_MD_CTX_free(c);
        return NULL;
    }
    if (c != NULL)
        EVP_MD_CTX_set_flags(c, EVP_MD_CTX_FLAG_FINALISE);
    return c;
}

/* Signs with mctx (a prepared context for priv, used up and freed here; NULL: one is
 * prepared now). */
static int sign_with(EVP_MD_CTX *mctx, EVP_PKEY *priv, bv_keys_alg_t alg, const void *data, size_t len,
                     bv_buf_t *sig_out)
{
    unsigned char buf[1024];
    size_t siglen = sizeof(buf);
    int rc = BV_ECRYPTO;
    if (mctx == NULL)
        mctx = bv_keys_prepare_ctx(priv, 1);
    if (mctx == NULL || EVP_DigestSign(mctx, buf, &siglen, data, len) != 1)
        goto out;
    if (alg == BV_KEYS_ALG_ES256) {
        unsigned char raw[64];
        if (bv_keys_ecdsa_der_to_raw(buf, siglen, raw) != 0)
            goto out;
        rc = bv_buf_append(sig_out, raw, sizeof(raw)) == 0 ? 0 : BV_ENOMEM;
    } else {
        rc = bv_buf_append(sig_out, buf, siglen) == 0 ? 0 : BV_ENOMEM;
    }
out:
    EVP_MD_CTX_free(mctx);
    return rc;
}

/* ---- cache of key states ---- */

static void entry_free(sk_entry_t *e)
{
    EVP_MD_CTX_free(e->sign_ctx);
    EVP_PKEY_free(e->pub);
    EVP_PKEY_free(e->priv);
    bv_buf_free(&e->priv_blob);
    free(e);
}

void bv_keys_signing_free(bv_keys_t *k)
{
    while (k->sks != NULL) {
        sk_entry_t *n = k->sks->next;
        entry_free(k->sks);
        k->sks = n;
    }
}

static sk_entry_t *signing_find(bv_keys_t *k, const char *kid)
{
    for (sk_entry_t *e = k->sks; e != NULL; e = e->next)
        if (strcmp(e->kid, kid) == 0)
            return e;
    return NULL;
}

typedef struct {
    bv_keys_t *k;
    int64_t now;
} reload_arg_t;

/* Reads every published key into the cache (caller holds sign_lock). Runs as a read job. */
static int tx_reload(bv_tx_t *tx, void *varg)
{
    reload_arg_t *a = varg;
    bv_keys_t *k = a->k;
    int rc;
    bv_stmt_t *s =
        bv_tx_prepare(tx, "SELECT kid, alg, state, location, public_key, private_key, retire_until, "
                          "created_at FROM keys_signing WHERE state <> 'retired' OR retire_until > ? "
                          "ORDER BY created_at, kid");
    if (s == NULL)
        return BV_EIO;
    for (sk_entry_t *e = k->sks; e != NULL; e = e->next)
        e->seen = 0;
    bv_stmt_bind_int64(s, 1, a->now);
    while ((rc = bv_stmt_step(s)) == BV_ROW) {
        const char *kid = bv_stmt_text(s, 0);
        bv_keys_alg_t alg;
        if (kid == NULL || strlen(kid) >= 64 || alg_parse(bv_stmt_text(s, 1), &alg) != 0)
            continue;
        sk_entry_t *e = signing_find(k, kid);
        if (e == NULL) {
            size_t len = 0;
            const unsigned char *der = bv_stmt_blob(s, 4, &len);
            EVP_PKEY *pub = der != NULL ? d2i_PUBKEY(NULL, &der, (long)len) : NULL;
            if (pub == NULL) {
                bv_log_error("signing key has an unreadable public key", "\"kid\":\"%s\"", kid);
                continue;
            }
            if ((e = calloc(1, sizeof(*e))) == NULL) {
                EVP_PKEY_free(pub);
                rc = BV_ENOMEM;
                break;
            }
            snprintf(e->kid, sizeof(e->kid), "%s", kid);
            e->alg = alg;
            e->pub = pub;
            const void *blob = bv_stmt_blob(s, 5, &len);
            if (blob != NULL && len > 0 && bv_buf_append(&e->priv_blob, blob, len) != 0) {
                entry_free(e);
                rc = BV_ENOMEM;
                break;
            }
            e->next = k->sks;
            k->sks = e;
        }
        snprintf(e->state, sizeof(e->state), "%s", bv_stmt_text(s, 2));
        snprintf(e->location, sizeof(e->location), "%s", bv_stmt_text(s, 3));
        e->retire_until = bv_stmt_is_null(s, 6) ? 0 : bv_stmt_int64(s, 6);
        e->created_at = bv_stmt_int64(s, 7);
        e->seen = 1;
    }
    bv_stmt_reset(s);
    if (rc < 0)
        return rc;
    for (sk_entry_t **pp = &k->sks; *pp != NULL;) { /* drop keys no longer published */
        sk_entry_t *e = *pp;
        if (!e->seen) {
            *pp = e->next;
            entry_free(e);
        } else {
            pp = &e->next;
        }
    }
    return 0;
}

/* Caller holds sign_lock. */
static int reload_if_stale(bv_keys_t *k, int force)
{
    int64_t mono = bv_mono_us();
    if (!force && k->sks_loaded_us != 0 && mono - k->sks_loaded_us < STATES_TTL_US)
        return 0;
    reload_arg_t a = {k, bv_now_us()};
    int rc = bv_store_run_tx(k->store, 0, tx_reload, &a);
    if (rc == 0)
        k->sks_loaded_us = mono;
    return rc;
}

static int published(const sk_entry_t *e, int64_t now)
{
    return strcmp(e->state, "retired") != 0 || e->retire_until > now;
}

/* ---- creation ---- */

typedef struct {
    char kid[64];
    bv_keys_alg_t alg;
    const char *location;
    bv_buf_t pub_der;
    bv_buf_t priv_ct;
} new_key_t;

static void new_key_free(new_key_t *nk)
{
    bv_buf_free(&nk->pub_der);
    bv_buf_free(&nk->priv_ct);
}

/* Generates a key pair (in the token with pkcs11, here with the file adapter). */
static int generate(bv_keys_t *k, bv_keys_alg_t alg, new_key_t *nk)
{
    EVP_PKEY *pkey = NULL, *pub = NULL;
    unsigned char *der = NULL;
    int rc = BV_ECRYPTO, n;
    memset(nk, 0, sizeof(*nk));
    bv_uuid7(nk->kid);
    nk->alg = alg;
    if (k->ks->ops->sign_generate != NULL) {
        nk->location = "pkcs11";
        if ((rc = k->ks->ops->sign_generate(k->ks, nk->kid, alg, &pub)) != 0)
            goto out;
    } else {
        nk->location = "file";
        pkey = alg == BV_KEYS_ALG_ES256 ? EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256")
                                        : EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
        if (pkey == NULL)
            goto out;
        if ((n = i2d_PrivateKey(pkey, &der)) <= 0)
            goto out;
        bv_aad_t aad = {"keys_signing", nk->kid, "private_key"};
        rc = bv_keys_encrypt(k, "signing", &aad, der, (size_t)n, &nk->priv_ct);
        OPENSSL_cleanse(der, (size_t)n);
        OPENSSL_free(der);
        der = NULL;
        if (rc != 0)
            goto out;
        rc = BV_ECRYPTO;
        pub = pkey;
        pkey = NULL;
    }
    if ((n = i2d_PUBKEY(pub, &der)) <= 0 || bv_buf_append(&nk->pub_der, der, (size_t)n) != 0)
        goto out;
    rc = 0;
out:
    OPENSSL_free(der);
    EVP_PKEY_free(pkey);
    EVP_PKEY_free(pub);
    if (rc != 0) {
        bv_log_error("cannot generate signing key", "\"alg\":\"%s\",\"error\":\"%s\"", alg_name(alg),
                     bv_err_name(rc));
        new_key_free(nk);
    }
    return rc;
}

static int insert_key(bv_tx_t *tx, const new_key_t *nk, const char *state, int64_t now)
{
    bv_stmt_t *s =
        bv_tx_prepare(tx, "INSERT INTO keys_signing (kid, alg, state, location, public_key, private_key, "
                          "created_at, activated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)");
    if (s == NULL)
        return BV_EIO;
    bv_stmt_bind_text(s, 1, nk->kid, -1);
    bv_stmt_bind_text(s, 2, alg_name(nk->alg), -1);
    bv_stmt_bind_text(s, 3, state, -1);
    bv_stmt_bind_text(s, 4, nk->location, -1);
    bv_stmt_bind_blob(s, 5, nk->pub_der.data, nk->pub_der.len);
    if (nk->priv_ct.len > 0)
        bv_stmt_bind_blob(s, 6, nk->priv_ct.data, nk->priv_ct.len);
    else
        bv_stmt_bind_null(s, 6);
    bv_stmt_bind_int64(s, 7, now);
    if (strcmp(state, "active") == 0)
        bv_stmt_bind_int64(s, 8, now);
    else
        bv_stmt_bind_null(s, 8);
    int rc = bv_stmt_step(s);
    bv_stmt_reset(s);
    return rc < 0 ? rc : 0;
}

/* kid of the key of `alg` in `state` into kid_out ("" if none). */
static int find_state(bv_tx_t *tx, bv_keys_alg_t alg, const char *state, char kid_out[64])
{
    bv_stmt_t *s = bv_tx_prepare(tx, "SELECT kid FROM keys_signing WHERE alg = ? AND state = ?");
    if (s == NULL)
        return BV_EIO;
    bv_stmt_bind_text(s, 1, alg_name(alg), -1);
    bv_stmt_bind_text(s, 2, state, -1);
    kid_out[0] = '\0';
    int rc = bv_stmt_step(s);
    if (rc == BV_ROW)
        snprintf(kid_out, 64, "%s", bv_stmt_text(s, 0));
    bv_stmt_reset(s);
    return rc < 0 ? rc : 0;
}

typedef struct {
    const new_key_t *active;
    const new_key_t *next;
} first_arg_t;

static int tx_insert_first(bv_tx_t *tx, void *varg)
{
    first_arg_t *a = varg;
    char kid[64];
    int64_t now = bv_now_us();
    int rc = find_state(tx, a->active->alg, "active", kid);
    if (rc != 0)
        return rc;
    if (kid[0] != '\0')
        return BV_ECONFLICT; /* created meanwhile by another process */
    if ((rc = insert_key(tx, a->active, "active", now)) != 0)
        return rc;
    if ((rc = find_state(tx, a->next->alg, "next", kid)) != 0)
        return rc;
    return kid[0] == '\0' ? insert_key(tx, a->next, "next", now) : 0;
}

/* Creates the first active key of alg and its published successor. */
static int create_first(bv_keys_t *k, bv_keys_alg_t alg)
{
    new_key_t active, next;
    int rc;
    pthread_mutex_lock(&k->sign_create_lock);
    pthread_mutex_lock(&k->sign_lock);
    rc = reload_if_stale(k, 1);
    int have = 0;
    for (sk_entry_t *e = k->sks; rc == 0 && e != NULL; e = e->next)
        if (e->alg == alg && strcmp(e->state, "active") == 0)
            have = 1;
    pthread_mutex_unlock(&k->sign_lock);
    if (rc != 0 || have)
        goto out;
    if ((rc = generate(k, alg, &active)) != 0)
        goto out;
    if ((rc = generate(k, alg, &next)) != 0) {
        new_key_free(&active);
        goto out;
    }
    first_arg_t a = {&active, &next};
    rc = bv_store_run_tx(k->store, 1, tx_insert_first, &a);
    if (rc == 0)
        bv_log_info("signing key created", "\"alg\":\"%s\",\"kid\":\"%s\",\"next\":\"%s\"", alg_name(alg),
                    active.kid, next.kid);
    if (rc == BV_ECONFLICT)
        rc = 0;
    new_key_free(&active);
    new_key_free(&next);
    pthread_mutex_lock(&k->sign_lock);
    if (rc == 0)
        rc = reload_if_stale(k, 1);
    pthread_mutex_unlock(&k->sign_lock);
out:
    pthread_mutex_unlock(&k->sign_create_lock);
    return rc;
}

/* ---- public API ---- */

/* Loads the file adapter's private key of e (outside sign_lock: it may hit the store). */
static int load_private(bv_keys_t *k, const char *kid, const bv_buf_t *blob, EVP_PKEY **out)
{
    bv_buf_t der = {0};
    bv_aad_t aad = {"keys_signing", kid, "private_key"};
    int rc = bv_keys_decrypt(k, &aad, blob->data, blob->len, &der);
    if (rc != 0) {
        bv_log_error("cannot decrypt signing key", "\"kid\":\"%s\",\"error\":\"%s\"", kid, bv_err_name(rc));
        return rc;
    }
    const unsigned char *p = (const unsigned char *)der.data;
    *out = d2i_AutoPrivateKey(NULL, &p, (long)der.len);
    OPENSSL_cleanse(der.data, der.len);
    bv_buf_free(&der);
    return *out != NULL ? 0 : BV_ECRYPTO;
}

int bv_keys_sign(bv_keys_t *k, const char *alg_s, const void *data, size_t len, bv_buf_t *sig_out,
                 char kid_out[64])
{
    bv_keys_alg_t alg;
    char kid[64] = "", location[8] = "";
    EVP_PKEY *priv = NULL;
    bv_buf_t blob = {0};
    int rc;
    if (k == NULL || alg_parse(alg_s, &alg) != 0 || (data == NULL && len > 0))
        return BV_EINVALID;
    for (int attempt = 0; attempt < 2; attempt++) {
        pthread_mutex_lock(&k->sign_lock);
        rc = reload_if_stale(k, 0);
        for (sk_entry_t *e = k->sks; rc == 0 && e != NULL; e = e->next) {
            if (e->alg == alg && strcmp(e->state, "active") == 0) {
                snprintf(kid, sizeof(kid), "%s", e->kid);
                snprintf(location, sizeof(location), "%s", e->location);
                if (e->priv != NULL && EVP_PKEY_up_ref(e->priv) == 1)
                    priv = e->priv;
                else if (e->priv_blob.len > 0)
                    rc = bv_buf_append(&blob, e->priv_blob.data, e->priv_blob.len);
                break;
            }
        }
        pthread_mutex_unlock(&k->sign_lock);
        if (rc != 0 || kid[0] != '\0')
            break;
        if ((rc = create_first(k, alg)) != 0)
            break;
    }
    if (rc != 0)
        goto out;
    if (kid[0] == '\0') {
        rc = BV_EKEYSTORE;
        goto out;
    }
    if (strcmp(location, "pkcs11") == 0) {
        if (k->ks->ops->sign == NULL) {
            bv_log_error("signing key lives in a PKCS#11 token but the key store is not pkcs11",
                         "\"kid\":\"%s\"", kid);
            rc = BV_EKEYSTORE;
            goto out;
        }
        rc = k->ks->ops->sign(k->ks, kid, alg, data, len, sig_out);
    } else {
        if (priv == NULL) {
            if ((rc = load_private(k, kid, &blob, &priv)) != 0)
                goto out;
            pthread_mutex_lock(&k->sign_lock);
            sk_entry_t *e = signing_find(k, kid);
            if (e != NULL && e->priv == NULL && EVP_PKEY_up_ref(priv) == 1)
                e->priv = priv; /* the cache keeps one reference, we hold another */
            pthread_mutex_unlock(&k->sign_lock);
        }
        /* a copy of the entry's prepared context (copied under the lock that guards it) */
        EVP_MD_CTX *mctx = NULL;
        pthread_mutex_lock(&k->sign_lock);
        sk_entry_t *e = signing_find(k, kid);
        if (e != NULL && e->priv == priv) {
            if (e->sign_ctx == NULL)
                e->sign_ctx = bv_keys_prepare_ctx(priv, 1);
            if (e->sign_ctx != NULL)
                mctx = bv_keys_ctx_copy(e->sign_ctx);
        }
        pthread_mutex_unlock(&k->sign_lock);
        rc = sign_with(mctx, priv, alg, data, len, sig_out);
    }
    if (rc == 0 && kid_out != NULL)
        snprintf(kid_out, 64, "%s", kid);
out:
    EVP_PKEY_free(priv);
    bv_buf_free(&blob);
    return rc;
}

int bv_keys_verify(bv_keys_t *k, const char *kid, const void *data, size_t len, const void *sig,
                   size_t sig_len)
{
    EVP_PKEY *pub = NULL;
    bv_keys_alg_t alg = BV_KEYS_ALG_ES256;
    int rc = 0;
    if (k == NULL || kid == NULL)
        return BV_EINVALID;
    for (int attempt = 0; attempt < 2 && pub == NULL; attempt++) {
        pthread_mutex_lock(&k->sign_lock);
        rc = reload_if_stale(k, attempt > 0);
        sk_entry_t *e = rc == 0 ? signing_find(k, kid) : NULL;
        if (e != NULL && published(e, bv_now_us()) && EVP_PKEY_up_ref(e->pub) == 1) {
            pub = e->pub;
            alg = e->alg;
        }
        pthread_mutex_unlock(&k->sign_lock);
        if (rc != 0)
            return rc;
    }
    if (pub == NULL)
        return BV_ENOTFOUND;
    rc = bv_keys_verify_with(pub, alg, data, len, sig, sig_len);
    EVP_PKEY_free(pub);
    return rc;
}

static int bn_param_b64(EVP_PKEY *pkey, const char *name, int pad, json_t *obj, const char *member)
{
    BIGNUM *bn = NULL;
    unsigned char buf[1024];
    bv_buf_t b64 = {0};
    int rc = BV_ECRYPTO;
    if (EVP_PKEY_get_bn_param(pkey, name, &bn) != 1)
        return BV_ECRYPTO;
    int n = pad > 0 ? BN_bn2binpad(bn, buf, pad) : BN_bn2bin(bn, buf);
    if (BN_num_bytes(bn) <= (int)sizeof(buf) && n > 0 && bv_keys_b64url(buf, (size_t)n, &b64) == 0) {
        json_object_set_new(obj, member, json_string(b64.data));
        rc = 0;
    }
    BN_free(bn);
    bv_buf_free(&b64);
    return rc;
}

int bv_keys_jwks(bv_keys_t *k, json_t **out)
{
    json_t *root = json_object(), *keys = json_array();
    int rc;
    *out = NULL;
    if (root == NULL || keys == NULL) {
        json_decref(root);
        json_decref(keys);
        return BV_ENOMEM;
    }
    json_object_set_new(root, "keys", keys);
    pthread_mutex_lock(&k->sign_lock);
    rc = reload_if_stale(k, 0);
    int64_t now = bv_now_us();
    for (sk_entry_t *e = k->sks; rc == 0 && e != NULL; e = e->next) {
        if (!published(e, now))
            continue;
        json_t *jwk = json_object();
        if (e->alg == BV_KEYS_ALG_ES256) {
            json_object_set_new(jwk, "kty", json_string("EC"));
            json_object_set_new(jwk, "crv", json_string("P-256"));
            rc = bn_param_b64(e->pub, OSSL_PKEY_PARAM_EC_PUB_X, 32, jwk, "x");
            if (rc == 0)
                rc = bn_param_b64(e->pub, OSSL_PKEY_PARAM_EC_PUB_Y, 32, jwk, "y");
        } else {
            json_object_set_new(jwk, "kty", json_string("RSA"));
            rc = bn_param_b64(e->pub, OSSL_PKEY_PARAM_RSA_N, 0, jwk, "n");
            if (rc == 0)
                rc = bn_param_b64(e->pub, OSSL_PKEY_PARAM_RSA_E, 0, jwk, "e");
        }
        json_object_set_new(jwk, "kid", json_string(e->kid));
        json_object_set_new(jwk, "alg", json_string(alg_name(e->alg)));
        json_object_set_new(jwk, "use", json_string("sig"));
        json_array_append_new(keys, jwk);
    }
    pthread_mutex_unlock(&k->sign_lock);
    if (rc != 0) {
        json_decref(root);
        return rc;
    }
    *out = root;
    return 0;
}

typedef struct {
    const new_key_t *fresh;
    int64_t retire_after_us;
    int promoted;
    char kid[64];
} rotate_arg_t;

static int tx_rotate(bv_tx_t *tx, void *varg)
{
    rotate_arg_t *a = varg;
    char active[64], next[64];
    int64_t now = bv_now_us();
    int rc;
    bv_stmt_t *s;
    if ((rc = find_state(tx, a->fresh->alg, "active", active)) != 0 ||
        (rc = find_state(tx, a->fresh->alg, "next", next)) != 0)
        return rc;
    /* Keys retired long enough ago are gone from the JWKS: forget them. */
    if ((s = bv_tx_prepare(tx, "DELETE FROM keys_signing WHERE state = 'retired' AND retire_until <= ?")) ==
        NULL)
        return BV_EIO;
    bv_stmt_bind_int64(s, 1, now);
    rc = bv_stmt_step(s);
    bv_stmt_reset(s);
    if (rc < 0)
        return rc;
    a->promoted = 0;
    if (next[0] == '\0') {
        /* Nothing published ahead: publish one now; it signs after the next rotation. */
        snprintf(a->kid, sizeof(a->kid), "%s", a->fresh->kid);
        return insert_key(tx, a->fresh, "next", now);
    }
    if (active[0] != '\0') {
        s = bv_tx_prepare(tx, "UPDATE keys_signing SET state = 'retired', retired_at = ?, retire_until = ? "
                              "WHERE kid = ?");
        if (s == NULL)
            return BV_EIO;
        bv_stmt_bind_int64(s, 1, now);
        bv_stmt_bind_int64(s, 2, now + a->retire_after_us);
        bv_stmt_bind_text(s, 3, active, -1);
        rc = bv_stmt_step(s);
        bv_stmt_reset(s);
        if (rc < 0)
            return rc;
    }
    s = bv_tx_prepare(tx, "UPDATE keys_signing SET state = 'active', activated_at = ? WHERE kid = ?");
    if (s == NULL)
        return BV_EIO;
    bv_stmt_bind_int64(s, 1, now);
    bv_stmt_bind_text(s, 2, next, -1);
    rc = bv_stmt_step(s);
    bv_stmt_reset(s);
    if (rc < 0)
        return rc;
    a->promoted = 1;
    snprintf(a->kid, sizeof(a->kid), "%s", next);
    return insert_key(tx, a->fresh, "next", now);
}

int bv_keys_rotate_signing(bv_keys_t *k, const char *alg_s, int64_t retire_after_us, char kid_out[64],
                           int *promoted_out)
{
    bv_keys_alg_t alg;
    new_key_t fresh;
    int rc;
    if (k == NULL || alg_parse(alg_s, &alg) != 0 || retire_after_us < 0)
        return BV_EINVALID;
    pthread_mutex_lock(&k->sign_create_lock);
    if ((rc = generate(k, alg, &fresh)) != 0)
        goto out;
    rotate_arg_t a = {.fresh = &fresh, .retire_after_us = retire_after_us};
    rc = bv_store_run_tx(k->store, 1, tx_rotate, &a);
    new_key_free(&fresh);
    if (rc != 0)
        goto out;
    bv_log_info("signing key rotated", "\"alg\":\"%s\",\"kid\":\"%s\",\"promoted\":%s", alg_name(alg), a.kid,
                a.promoted ? "true" : "false");
    if (kid_out != NULL)
        snprintf(kid_out, 64, "%s", a.kid);
    if (promoted_out != NULL)
        *promoted_out = a.promoted;
    pthread_mutex_lock(&k->sign_lock);
    rc = reload_if_stale(k, 1);
    pthread_mutex_unlock(&k->sign_lock);
out:
    pthread_mutex_unlock(&k->sign_create_lock);
    return rc;
}
