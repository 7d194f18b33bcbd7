/* Internals of the keys module shared between its files (not for other modules).
 *
 * The key-store port (bv_keystore_t) is what the two adapters implement: it holds master
 * keys (which only wrap and unwrap data keys) and, for pkcs11, the signing private keys.
 * Everything else (envelope encryption, caches, signing with the file adapter, JWKS,
 * rotation, rewrap) lives above the port and is the same for both adapters. */
#ifndef BV_KEYS_INTERNAL_H
#define BV_KEYS_INTERNAL_H

#include <openssl/evp.h>
#include <pthread.h>
#include <stdint.h>

#include "keys/keys.h"

#define BV_KEYS_FORMAT_V1    0x01
#define BV_KEYS_KEY_LEN      32
#define BV_KEYS_NONCE_LEN    12
#define BV_KEYS_TAG_LEN      16
#define BV_KEYS_PURPOSE_MAX  64
#define BV_KEYS_AAD_PART_MAX 255 /* table, row id, field: at most 255 bytes each */
/* master-wrapped blob: nonce || ciphertext || tag */
#define BV_KEYS_WRAPPED_LEN (BV_KEYS_NONCE_LEN + BV_KEYS_KEY_LEN + BV_KEYS_TAG_LEN)

typedef enum { BV_KEYS_ALG_ES256 = 1, BV_KEYS_ALG_RS256 = 2 } bv_keys_alg_t;

/* ---- low-level AES-256-GCM (one-shot, 12-byte IV, 16-byte tag) ---- */

/* Encrypts len bytes of pt into ct_out (len bytes) and tag_out. 0 or BV_ECRYPTO. */
int bv_keys_gcm_seal(const unsigned char key[32], const unsigned char iv[12], const void *aad, size_t aad_len,
                     const void *pt, size_t len, unsigned char *ct_out, unsigned char tag_out[16]);
/* Decrypts and verifies; pt_out gets len bytes (wiped on failure). 0, BV_EINTEGRITY,
 * BV_ECRYPTO. */
int bv_keys_gcm_open(const unsigned char key[32], const unsigned char iv[12], const void *aad, size_t aad_len,
                     const void *ct, size_t len, const unsigned char tag[16], unsigned char *pt_out);

/* base64url without padding (RFC 7515 §2) appended to out as a string. */
int bv_keys_b64url(const void *in, size_t len, bv_buf_t *out);

/* ---- key-store port ---- */

typedef struct bv_keystore bv_keystore_t;
typedef struct {
    const char *name; /* "file" | "pkcs11" */
    /* Makes sure master key `version` exists; creates it if missing and `create`. 0,
     * BV_ENOTFOUND (missing, !create), BV_EKEYSTORE. */
    int (*master_ensure)(bv_keystore_t *ks, int version, int create);
    /* Wraps key material under master `version` binding aad. Appends
     * nonce || ciphertext || tag to out. 0, BV_EKEYSTORE, BV_ENOMEM. */
    int (*wrap)(bv_keystore_t *ks, int version, const void *aad, size_t aad_len, const unsigned char *key,
                size_t len, bv_buf_t *out);
    /* Inverse of wrap; key_out gets blob_len - 28 bytes (at most cap). 0, BV_EINTEGRITY,
     * BV_EKEYSTORE. */
    int (*unwrap)(bv_keystore_t *ks, int version, const void *aad, size_t aad_len, const unsigned char *blob,
                  size_t blob_len, unsigned char *key_out, size_t cap, size_t *len_out);
    /* Token-resident signing keys (NULL for adapters that keep private keys in the
     * database). generate creates a non-extractable key pair labelled for kid and returns
     * the public half (caller EVP_PKEY_free()s); sign returns the JWS-form signature. */
    int (*sign_generate)(bv_keystore_t *ks, const char *kid, bv_keys_alg_t alg, EVP_PKEY **pub_out);
    int (*sign)(bv_keystore_t *ks, const char *kid, bv_keys_alg_t alg, const void *data, size_t len,
                bv_buf_t *sig_out);
    /* Fills out with len random bytes from the store's own generator (the HSM's for
     * pkcs11: C_GenerateRandom). 0, BV_EKEYSTORE. */
    int (*random)(bv_keystore_t *ks, void *out, size_t len);
    void (*close)(bv_keystore_t *ks);
} bv_keystore_ops_t;

struct bv_keystore {
    const bv_keystore_ops_t *ops;
};

int bv_keystore_file_open(const bv_config_t *cfg, bv_keystore_t **out);
int bv_keystore_pkcs11_open(const bv_config_t *cfg, bv_keystore_t **out);

/* ---- the keys object ---- */

typedef struct dk_entry dk_entry_t;         /* cached unwrapped data key */
typedef struct newest_entry newest_entry_t; /* newest version per (kind, purpose) */
typedef struct sk_entry sk_entry_t;         /* cached signing key */
typedef struct field_entry field_entry_t;   /* registered encrypted column */

struct bv_keys {
    bv_store_t *store;
    bv_keystore_t *ks;
    const char *adapter;
    pthread_rwlock_t lock; /* guards master_version, dks, newest */
    pthread_mutex_t hmac_mu; /* serialises copies of the dks' keyed HMAC contexts */
    int master_version;
    dk_entry_t *dks;
    newest_entry_t *newest;
    pthread_mutex_t create_lock;      /* serialises key creation in this process */
    pthread_mutex_t sign_lock;        /* guards sks */
    pthread_mutex_t sign_create_lock; /* serialises signing-key creation and rotation */
    sk_entry_t *sks;
    int64_t sks_loaded_us; /* mono time the signing-key states were last read */
    pthread_mutex_t fields_lock;
    field_entry_t *fields;
};

/* Data keys (keys.c). */
int bv_keys_dk_get(bv_keys_t *k, const char *kind, const char *purpose, int version,
                   unsigned char key_out[32]);
int bv_keys_dk_newest(bv_keys_t *k, const char *kind, const char *purpose, int *version_out,
                      unsigned char key_out[32]);
int bv_keys_purpose_valid(const char *purpose);

/* Signing keys (signing.c). */
void bv_keys_signing_free(bv_keys_t *k);
/* Public keys from raw parts: an uncompressed P-256 point (65 bytes, 0x04||x||y) or an RSA
 * modulus and exponent (big-endian). Caller EVP_PKEY_free()s. 0 or BV_ECRYPTO. */
int bv_keys_pub_from_ec_point(const unsigned char *point, size_t len, EVP_PKEY **out);
int bv_keys_pub_from_rsa(const unsigned char *n, size_t n_len, const unsigned char *e, size_t e_len,
                         EVP_PKEY **out);
/* ECDSA P-256 signature conversions between DER (X9.62) and JWS raw r||s (RFC 7518 §3.4). */
int bv_keys_ecdsa_der_to_raw(const unsigned char *der, size_t len, unsigned char raw[64]);
int bv_keys_ecdsa_raw_to_der(const unsigned char raw[64], unsigned char **der_out, size_t *len_out);
/* Verifies a JWS-form signature with a public key: 0 or BV_EINTEGRITY. */
int bv_keys_verify_with(EVP_PKEY *pub, bv_keys_alg_t alg, const void *data, size_t len, const void *sig,
                        size_t sig_len);

/* Rewrap registry (rewrap.c). */
void bv_keys_fields_free(bv_keys_t *k);

#endif
