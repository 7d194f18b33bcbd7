/* Low-level AES-256-GCM (NIST SP 800-38D, 96-bit IV, 128-bit tag) with OpenSSL EVP.
 * Each thread keeps one EVP_CIPHER_CTX and the cipher is fetched once, so the per-call
 * cost is the key schedule and the data: this is the bulk path of field encryption. */
#include <limits.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <string.h>

#include "base/base64.h"
#include "base/errors.h"
#include "keys/keys_internal.h"

static pthread_once_t gcm_once = PTHREAD_ONCE_INIT;
static pthread_key_t ctx_key;
static EVP_CIPHER *gcm_cipher; /* process lifetime */

static void on_thread_exit(void *p)
{
    EVP_CIPHER_CTX_free(p);
}

static void init_once(void)
{
    if (pthread_key_create(&ctx_key, on_thread_exit) != 0)
        return;
    gcm_cipher = EVP_CIPHER_fetch(NULL, "AES-256-GCM", NULL);
}

static EVP_CIPHER_CTX *thread_ctx(void)
{
    pthread_once(&gcm_once, init_once);
    if (gcm_cipher == NULL)
        return NULL;
    EVP_CIPHER_CTX *c = pthread_getspecific(ctx_key);
    if (c == NULL) {
        c = EVP_CIPHER_CTX_new();
        if (c == NULL)
            return NULL;
        if (pthread_setspecific(ctx_key, c) != 0) {
            EVP_CIPHER_CTX_free(c);
            return NULL;
        }
    }
    return c;
}

int bv_keys_gcm_seal(const unsigned char key[32], const unsigned char iv[12], const void *aad, size_t aad_len,
                     const void *pt, size_t len, unsigned char *ct_out, unsigned char tag_out[16])
{
    EVP_CIPHER_CTX *c = thread_ctx();
    int outl = 0;
    if (c == NULL || len > INT_MAX / 2 || aad_len > INT_MAX / 2)
        return BV_ECRYPTO;
    if (EVP_EncryptInit_ex2(c, gcm_cipher, key, iv, NULL) != 1)
        return BV_ECRYPTO;
    if (aad_len > 0 && EVP_EncryptUpdate(c, NULL, &outl, aad, (int)aad_len) != 1)
        return BV_ECRYPTO;
    if (len > 0 && EVP_EncryptUpdate(c, ct_out, &outl, pt, (int)len) != 1)
        return BV_ECRYPTO;
    if (EVP_EncryptFinal_ex(c, ct_out + (len > 0 ? outl : 0), &outl) != 1)
        return BV_ECRYPTO;
    if (EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, BV_KEYS_TAG_LEN, tag_out) != 1)
        return BV_ECRYPTO;
    return 0;
}

int bv_keys_gcm_open(const unsigned char key[32], const unsigned char iv[12], const void *aad, size_t aad_len,
                     const void *ct, size_t len, const unsigned char tag[16], unsigned char *pt_out)
{
    EVP_CIPHER_CTX *c = thread_ctx();
    unsigned char tagbuf[BV_KEYS_TAG_LEN];
    int outl = 0, rc = BV_ECRYPTO;
    if (c == NULL || len > INT_MAX / 2 || aad_len > INT_MAX / 2)
        return BV_ECRYPTO;
    memcpy(tagbuf, tag, sizeof(tagbuf)); /* the ctrl takes a non-const pointer */
    if (EVP_DecryptInit_ex2(c, gcm_cipher, key, iv, NULL) != 1)
        goto out;
    if (aad_len > 0 && EVP_DecryptUpdate(c, NULL, &outl, aad, (int)aad_len) != 1)
        goto out;
    if (len > 0 && EVP_DecryptUpdate(c, pt_out, &outl, ct, (int)len) != 1)
        goto out;
    if (EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, BV_KEYS_TAG_LEN, tagbuf) != 1)
        goto out;
    rc = BV_EINTEGRITY;
    if (EVP_DecryptFinal_ex(c, pt_out + (len > 0 ? outl : 0), &outl) != 1)
        goto out;
    rc = 0;
out:
    if (rc != 0 && len > 0)
        OPENSSL_cleanse(pt_out, len);
    return rc;
}

int bv_keys_b64url(const void *in, size_t len, bv_buf_t *out)
{
    return bv_b64_encode_buf(BV_B64_URL, 0, in, len, out);
}
