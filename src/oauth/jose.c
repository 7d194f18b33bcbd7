/* JOSE pieces: base64url, JWK -> public key, JWS verification and compact JWT parsing
 * (RFC 7515/7517/7519), and signing through the key store. Only ES256 and RS256 exist
 * here: `none` and every HMAC algorithm are unrepresentable. */
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ecdsa.h>
#include <openssl/param_build.h>
#include <openssl/rsa.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/errors.h"
#include "base/log.h"
#include "base/base64.h"
#include "oauth/internal.h"

size_t oauth_b64url_encode(const void *in, size_t len, char *out)
{
    return bv_b64_encode(BV_B64_URL, in, len, out);
}

ssize_t oauth_b64url_decode(const char *s, size_t len, unsigned char *out, size_t cap)
{
    return bv_b64_decode(BV_B64_URL, s, len, out, cap);
}

void oauth_random_token(size_t n, char *out)
{
    unsigned char r[48];
    if (n > sizeof(r))
        n = sizeof(r);
    bv_random(r, n);
    oauth_b64url_encode(r, n, out);
    OPENSSL_cleanse(r, sizeof(r));
}

jws_alg_t jws_alg_parse(const char *s)
{
    if (s == NULL)
        return JWS_ALG_NONE_;
    if (strcmp(s, "ES256") == 0)
        return JWS_ES256;
    if (strcmp(s, "RS256") == 0)
        return JWS_RS256;
    return JWS_ALG_NONE_;
}

/* Decodes the base64url member `name` of jwk into a BIGNUM-ready buffer. */
static ssize_t member_bytes(const json_t *jwk, const char *name, unsigned char *out, size_t cap)
{
    const char *v = json_string_value(json_object_get(jwk, name));
    if (v == NULL)
        return -1;
    return oauth_b64url_decode(v, strlen(v), out, cap);
}

static int ec_pkey(const json_t *jwk, EVP_PKEY **out)
{
    unsigned char x[66], y[66], point[65];
    const char *crv = json_string_value(json_object_get(jwk, "crv"));
    ssize_t xl = member_bytes(jwk, "x", x, sizeof(x)), yl = member_bytes(jwk, "y", y, sizeof(y));
    OSSL_PARAM_BLD *bld = NULL;
    OSSL_PARAM *params = NULL;
    EVP_PKEY_CTX *ctx = NULL;
    int rc = BV_EINVALID;
    if (crv == NULL || strcmp(crv, "P-256") != 0 || xl != 32 || yl != 32)
        return BV_EINVALID;
    point[0] = 0x04;
    memcpy(point + 1, x, 32);
    memcpy(point + 33, y, 32);
    if ((bld = OSSL_PARAM_BLD_new()) == NULL ||
        !OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, "prime256v1", 0) ||
        !OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, point, sizeof(point)) ||
        (params = OSSL_PARAM_BLD_to_param(bld)) == NULL ||
        (ctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL)) == NULL || EVP_PKEY_fromdata_init(ctx) <= 0 ||
        EVP_PKEY_fromdata(ctx, out, EVP_PKEY_PUBLIC_KEY, params) <= 0)
        goto out;
    rc = 0;
out:
    EVP_PKEY_CTX_free(ctx);
    OSSL_PARAM_free(params);
    OSSL_PARAM_BLD_free(bld);
    return rc;
}

static int rsa_pkey(const json_t *jwk, EVP_PKEY **out)
{
    unsigned char n[1024], e[16];
    ssize_t nl = member_bytes(jwk, "n", n, sizeof(n)), el = member_bytes(jwk, "e", e, sizeof(e));
    BIGNUM *bn_n = NULL, *bn_e = NULL;
    OSSL_PARAM_BLD *bld = NULL;
    OSSL_PARAM *params = NULL;
    EVP_PKEY_CTX *ctx = NULL;
    int rc = BV_EINVALID;
    if (nl < 256 || el < 1) /* RSA keys under 2048 bits are refused */
        return BV_EINVALID;
    if ((bn_n = BN_bin2bn(n, (int)nl, NULL)) == NULL || (bn_e = BN_bin2bn(e, (int)el, NULL)) == NULL ||
        BN_num_bits(bn_n) < 2048 || (bld = OSSL_PARAM_BLD_new()) == NULL ||
        !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, bn_n) ||
        !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, bn_e) ||
        (params = OSSL_PARAM_BLD_to_param(bld)) == NULL ||
        (ctx = EVP_PKEY_CTX_new_from_name(NULL, "RSA", NULL)) == NULL || EVP_PKEY_fromdata_init(ctx) <= 0 ||
        EVP_PKEY_fromdata(ctx, out, EVP_PKEY_PUBLIC_KEY, params) <= 0)
        goto out;
    rc = 0;
out:
    EVP_PKEY_CTX_free(ctx);
    OSSL_PARAM_free(params);
    OSSL_PARAM_BLD_free(bld);
    BN_free(bn_n);
    BN_free(bn_e);
    return rc;
}

int jwk_to_pkey(const json_t *jwk, EVP_PKEY **out, jws_alg_t *alg_out)
{
    const char *kty = json_string_value(json_object_get(jwk, "kty"));
    const char *alg = json_string_value(json_object_get(jwk, "alg"));
    const char *use = json_string_value(json_object_get(jwk, "use"));
    jws_alg_t a;
    *out = NULL;
    if (!json_is_object(jwk) || kty == NULL || (use != NULL && strcmp(use, "sig") != 0) ||
        json_object_get(jwk, "d") != NULL) /* a private key in a public set is refused */
        return BV_EINVALID;
    if (strcmp(kty, "EC") == 0)
        a = JWS_ES256;
    else if (strcmp(kty, "RSA") == 0)
        a = JWS_RS256;
    else
        return BV_EINVALID;
    if (alg != NULL && jws_alg_parse(alg) != a)
        return BV_EINVALID;
    int rc = a == JWS_ES256 ? ec_pkey(jwk, out) : rsa_pkey(jwk, out);
    if (rc == 0 && alg_out != NULL)
        *alg_out = a;
    return rc;
}

int jws_verify(EVP_PKEY *pub, EVP_MD_CTX *md, jws_alg_t alg, const void *data, size_t len,
               const unsigned char *sig, size_t sig_len)
{
    unsigned char der[80];
    const unsigned char *s = sig;
    size_t sl = sig_len;
    int rc = BV_EINTEGRITY;
    if (alg == JWS_ES256) {
        /* JWS carries r||s (RFC 7518 §3.4); OpenSSL wants DER. */
        if (sig_len != 64 || EVP_PKEY_get_base_id(pub) != EVP_PKEY_EC) {
            EVP_MD_CTX_free(md);
            return BV_EINTEGRITY;
        }
        ECDSA_SIG *es = ECDSA_SIG_new();
        BIGNUM *r = BN_bin2bn(sig, 32, NULL), *ss = BN_bin2bn(sig + 32, 32, NULL);
        if (es == NULL || r == NULL || ss == NULL || ECDSA_SIG_set0(es, r, ss) != 1) {
            BN_free(r);
            BN_free(ss);
            ECDSA_SIG_free(es);
            EVP_MD_CTX_free(md);
            return BV_EINTEGRITY;
        }
        unsigned char *p = der;
        int dl = i2d_ECDSA_SIG(es, NULL);
        if (dl <= 0 || (size_t)dl > sizeof(der)) {
            ECDSA_SIG_free(es);
            EVP_MD_CTX_free(md);
            return BV_EINTEGRITY;
        }
        dl = i2d_ECDSA_SIG(es, &p);
        ECDSA_SIG_free(es);
        s = der;
        sl = (size_t)dl;
    } else if (alg != JWS_RS256 || EVP_PKEY_get_base_id(pub) != EVP_PKEY_RSA) {
        EVP_MD_CTX_free(md);
        return BV_EINTEGRITY;
    }
    if (md == NULL)
        md = bv_keys_prepare_ctx(pub, 0);
    if (md != NULL && EVP_DigestVerify(md, s, sl, data, len) == 1)
        rc = 0;
    EVP_MD_CTX_free(md);
    return rc;
}

static json_t *decode_json_part(const char *s, size_t len)
{
    unsigned char buf[8192];
    ssize_t n = oauth_b64url_decode(s, len, buf, sizeof(buf));
    if (n <= 0)
        return NULL;
    json_t *j = json_loadb((const char *)buf, (size_t)n, JSON_REJECT_DUPLICATES, NULL);
    if (j != NULL && !json_is_object(j)) {
        json_decref(j);
        return NULL;
    }
    return j;
}

int jwt_parse(const char *token, size_t len, jwt_t *out)
{
    memset(out, 0, sizeof(*out));
    const char *d1 = memchr(token, '.', len);
    if (len > 16384 || d1 == NULL)
        return BV_EINVALID;
    const char *d2 = memchr(d1 + 1, '.', len - (size_t)(d1 + 1 - token));
    if (d2 == NULL || memchr(d2 + 1, '.', len - (size_t)(d2 + 1 - token)) != NULL)
        return BV_EINVALID;
    ssize_t sl = oauth_b64url_decode(d2 + 1, len - (size_t)(d2 + 1 - token), out->sig, sizeof(out->sig));
    if (sl <= 0)
        return BV_EINVALID;
    out->sig_len = (size_t)sl;
    out->signing_input_len = (size_t)(d2 - token);
    if ((out->header = decode_json_part(token, (size_t)(d1 - token))) == NULL ||
        (out->payload = decode_json_part(d1 + 1, (size_t)(d2 - d1 - 1))) == NULL) {
        jwt_free(out);
        return BV_EINVALID;
    }
    return 0;
}

void jwt_free(jwt_t *j)
{
    json_decref(j->header);
    json_decref(j->payload);
    j->header = j->payload = NULL;
}

/* ---- signing ---- */

static int sign_once(oauth_t *o, const char *alg, const char *kid, const char *typ, const char *payload_b64,
                     bv_buf_t *out, char kid_used[64])
{
    bv_buf_t sig = {0}, h = {0};
    char *hb = NULL;
    int rc = BV_ENOMEM;
    /* {"alg":..,"kid":..[,"typ":..]} */
    if (bv_buf_puts(&h, "{\"alg\":") != 0 || bv_buf_json_string(&h, alg, false) != 0 ||
        bv_buf_puts(&h, ",\"kid\":") != 0 || bv_buf_json_string(&h, kid, false) != 0 ||
        (typ != NULL && (bv_buf_puts(&h, ",\"typ\":") != 0 || bv_buf_json_string(&h, typ, false) != 0)) ||
        bv_buf_puts(&h, "}") != 0)
        goto out;
    if ((hb = malloc(h.len * 4 / 3 + 4)) == NULL)
        goto out;
    oauth_b64url_encode(h.data, h.len, hb);
    bv_buf_reset(out);
    if (bv_buf_puts(out, hb) != 0 || bv_buf_puts(out, ".") != 0 || bv_buf_puts(out, payload_b64) != 0)
        goto out;
    if ((rc = bv_keys_sign(o->keys, alg, out->data, out->len, &sig, kid_used)) != 0)
        goto out;
    char sb[700];
    if (sig.len > 512) {
        rc = BV_ECRYPTO;
        goto out;
    }
    oauth_b64url_encode(sig.data, sig.len, sb);
    rc = bv_buf_puts(out, ".") != 0 || bv_buf_puts(out, sb) != 0 ? BV_ENOMEM : 0;
out:
    bv_buf_free(&h);
    free(hb);
    bv_buf_free(&sig);
    return rc;
}

int oauth_sign_jwt(oauth_t *o, const char *alg, const char *typ, const char *ps, char **out)
{
    char kid[64], used[64] = "";
    bv_buf_t tok = {0};
    char *pb = NULL;
    int rc = BV_ENOMEM;
    char *slot = strcmp(alg, "RS256") == 0 ? o->kid_rs256 : o->kid_es256;
    *out = NULL;
    size_t pl = strlen(ps);
    if ((pb = malloc(pl * 4 / 3 + 4)) == NULL)
        goto out;
    oauth_b64url_encode(ps, pl, pb);
    /* The header names the kid before the key store picks the active key: sign with the
     * last active kid seen, and once more if the store used another one (rotation). */
    for (int attempt = 0; attempt < 3; attempt++) {
        pthread_mutex_lock(&o->mu);
        snprintf(kid, sizeof(kid), "%s", slot);
        pthread_mutex_unlock(&o->mu);
        if ((rc = sign_once(o, alg, kid[0] ? kid : "-", typ, pb, &tok, used)) != 0)
            goto out;
        if (strcmp(used, kid) == 0)
            break;
        pthread_mutex_lock(&o->mu);
        snprintf(slot, 64, "%s", used);
        pthread_mutex_unlock(&o->mu);
        /* A kid we had not signed with before (first key, or a rotation): reload the
         * validator's cache now, on this worker, so the token we return validates at once. */
        if (o->validator != NULL && keycache_refresh(&o->validator->kc) != 0)
            keycache_poke(&o->validator->kc);
        rc = BV_EKEYSTORE;
    }
    if (rc != 0)
        goto out;
    *out = tok.data;
    tok.data = NULL;
out:
    free(pb);
    bv_buf_free(&tok);
    return rc;
}

int oauth_lookup_hash(oauth_t *o, const char *secret, char out[65])
{
    unsigned char mac[32];
    int rc = bv_keys_hmac(o->keys, "token-lookup", secret, strlen(secret), mac);
    if (rc != 0)
        return rc;
    bv_hex(mac, sizeof(mac), out);
    return 0;
}
