/* Key store and cryptography service (issue 3). The master key lives in a key-store
 * adapter (`file`: data_dir/keys/master.key, 0600; `pkcs11`: an AES-256 key inside a
 * PKCS#11 token that never leaves it). Data keys (AES-256-GCM) are per purpose and
 * version, stored only wrapped by the master key, cached unwrapped in memory and wiped on
 * close. Signing keys (ES256, RS256) have a kid; their public halves form the JWKS.
 * All functions are thread-safe and may block (PKCS#11): call them from workers, never
 * from an event loop.
 *
 * Inside a write job (bv_store_write) only bv_keys_encrypt, bv_keys_decrypt, bv_keys_hmac
 * and bv_keys_verify may be called, and only for purposes made ready with bv_keys_prepare
 * (typically at module init): creating a key needs a write of its own, which cannot nest
 * (the call then fails with BV_EINTERNAL). */
#ifndef BV_KEYS_KEYS_H
#define BV_KEYS_KEYS_H

#include <jansson.h>
#include <openssl/evp.h>
#include <stddef.h>
#include <stdint.h>

#include "base/config.h"
#include "base/util.h"
#include "store/store.h"

typedef struct bv_keys bv_keys_t;

/* Opens the configured key store; on an empty data directory (or token) creates the
 * master key. Refuses a key file readable by group/others (BV_EKEYSTORE, logged). The
 * store must be migrated. Caller frees with bv_keys_close (NULL accepted). */
int bv_keys_open(const bv_config_t *cfg, bv_store_t *store, bv_keys_t **out);
void bv_keys_close(bv_keys_t *k);

/* Associated data bound into every field ciphertext: a ciphertext moved to another row,
 * table or field does not decrypt. */
typedef struct {
    const char *table;
    const char *row_id;
    const char *field;
} bv_aad_t;

/* Encrypts a field under the newest data-key version of `purpose` (created on first use).
 * Output: versioned binary blob (format documented in keys.c) appended to out.
 * 0, BV_EKEYSTORE, BV_ECRYPTO, BV_ENOMEM. */
int bv_keys_encrypt(bv_keys_t *k, const char *purpose, const bv_aad_t *aad, const void *pt, size_t len,
                    bv_buf_t *out);
/* Decrypts a blob made by bv_keys_encrypt with the same aad; BV_EINTEGRITY when the tag,
 * the aad or the format does not verify. Plaintext appended to out (caller wipes it). */
int bv_keys_decrypt(bv_keys_t *k, const bv_aad_t *aad, const void *ct, size_t len, bv_buf_t *out);

/* HMAC-SHA-256 under the purpose's HMAC key (e.g. "otp", "token-lookup"). */
int bv_keys_hmac(bv_keys_t *k, const char *purpose, const void *data, size_t len, unsigned char out[32]);

/* Secret material born in the master key store: len (1..1024) random bytes from the
 * store's generator — inside the HSM (C_GenerateRandom) with the PKCS#11 adapter, OpenSSL's
 * CSPRNG with the file adapter. For seeds handed to customers' devices (TOTP). Not inside
 * a write job. 0, BV_EINVALID, BV_EKEYSTORE. */
int bv_keys_random(bv_keys_t *k, void *out, size_t len);

/* Signs `data` with the active signing key for `alg` ("ES256" or "RS256"); the signature
 * is in JWS form (ES256: raw r||s, 64 bytes). kid_out receives the key id. */
int bv_keys_sign(bv_keys_t *k, const char *alg, const void *data, size_t len, bv_buf_t *sig_out,
                 char kid_out[64]);
/* Verifies a JWS-form signature with the (active, next or retired) key `kid`; the key's
 * own algorithm is used (alg pinned per key). 0, BV_ENOTFOUND (kid), BV_EINTEGRITY. */
int bv_keys_verify(bv_keys_t *k, const char *kid, const void *data, size_t len, const void *sig,
                   size_t sig_len);
/* Prepared signature contexts. OpenSSL 3 looks the digest and the signature
 * implementation up by name whenever a context is initialised, about a third of the cost
 * of an ES256 signature; a context prepared once per key and copied for each use skips it.
 * bv_keys_prepare_ctx: an EVP_MD_CTX set up for SHA-256 signing (sign != 0) or verifying
 * with key, or NULL. bv_keys_ctx_copy: a fresh copy to use once (EVP_DigestSign /
 * EVP_DigestVerify), or NULL; the caller serialises the copies of one prepared context. */
EVP_MD_CTX *bv_keys_prepare_ctx(EVP_PKEY *key, int sign);
EVP_MD_CTX *bv_keys_ctx_copy(const EVP_MD_CTX *prepared);

/* JWK set of every published public signing key (caller json_decref()s). */
int bv_keys_jwks(bv_keys_t *k, json_t **out);

#define BV_KEYS_AEAD 0x1u /* the field-encryption data key of a purpose */
#define BV_KEYS_HMAC 0x2u /* the HMAC key of a purpose */
/* Makes sure the keys of `purpose` named by `kinds` exist (creating version 1 if needed)
 * and are unwrapped in the cache, so later calls do not need to write to the store. Call
 * it at module init for every purpose a module uses inside write jobs.
 * 0, BV_EINVALID, BV_EKEYSTORE, BV_EIO. */
int bv_keys_prepare(bv_keys_t *k, const char *purpose, unsigned kinds);

/* ---- Operator functions (admin commands; also callable from tests) ---- */

/* Name of the adapter in use: "file" or "pkcs11" (static string). */
const char *bv_keys_adapter(const bv_keys_t *k);

/* Creates a new data-key version for `purpose`: new writes use it, older versions still
 * decrypt. version_out (may be NULL) gets the new version. 0, BV_EINVALID (purpose),
 * BV_EKEYSTORE, BV_EIO. */
int bv_keys_rotate(bv_keys_t *k, const char *purpose, int *version_out);

/* Creates a new master-key version in the key store and rewraps every data key under it
 * in one write job. The old master key versions are kept (file: in master.key; pkcs11: in
 * the token) so that older backups stay restorable. version_out / n_rewrapped_out may be
 * NULL. 0, BV_EKEYSTORE, BV_ECONFLICT (concurrent rotation), BV_EIO. */
int bv_keys_rotate_master(bv_keys_t *k, int *version_out, int *n_rewrapped_out);

/* Signing-key rotation for `alg`: the published `next` key becomes active, the active key
 * becomes retired (still verifies and stays in the JWKS until now + retire_after_us), and a
 * new `next` key is generated. When there was no `next` key yet, one is only created (and
 * published) and *promoted_out is 0: run the rotation again once clients have refreshed the
 * JWKS. kid_out (may be NULL) receives the kid of the key that is active afterwards (or of
 * the new next key when nothing was promoted). 0, BV_EINVALID (alg), BV_EKEYSTORE, BV_EIO. */
int bv_keys_rotate_signing(bv_keys_t *k, const char *alg, int64_t retire_after_us, char kid_out[64],
                           int *promoted_out);

/* Describes the key inventory (no key material): {"adapter":..., "master_version":N,
 * "masters":[{version,adapter,created_at}], "data_keys":[{kind,purpose,version,
 * master_version,created_at,current}], "signing_keys":[{kid,alg,state,location,
 * created_at,activated_at,retired_at,retire_until}]}. Caller json_decref()s. */
int bv_keys_list(bv_keys_t *k, json_t **out);

/* Declares an encrypted column so `rewrap` can re-encrypt it: every value of
 * table.column (a bv_keys_encrypt blob or NULL) must have been encrypted with
 * aad = {table, <id_column value as text>, column} under `purpose`. Identifiers must be
 * [a-z0-9_], at most 63 bytes. Call at module init, before serving. 0, BV_EINVALID,
 * BV_ENOMEM. */
int bv_keys_register_field(bv_keys_t *k, const char *table, const char *id_column, const char *column,
                           const char *purpose);

typedef struct {
    uint64_t fields;    /* registered fields walked */
    uint64_t scanned;   /* non-NULL values read */
    uint64_t rewrapped; /* values re-encrypted under the newest data-key version */
    uint64_t skipped;   /* changed concurrently (left for the next run) */
    uint64_t batches;   /* write jobs */
    uint64_t failed;    /* values that did not decrypt (BV_EINTEGRITY: logged, left as is) */
} bv_keys_rewrap_stats_t;

/* Re-encrypts every registered field whose value is not under the newest data-key version
 * of its purpose, online: rows are read in pages of batch_rows (default 256 when <= 0) and
 * each page's updates are one write job (compare-and-set on the old value, so concurrent
 * writes win). 0 (even when some values failed to decrypt: see stats), BV_EKEYSTORE, BV_EIO. */
int bv_keys_rewrap(bv_keys_t *k, int batch_rows, bv_keys_rewrap_stats_t *stats_out);

/* Parses the header of a blob made by bv_keys_encrypt: purpose (NUL-terminated, up to 64
 * bytes) and data-key version. 0 or BV_EINTEGRITY. */
int bv_keys_blob_info(const void *ct, size_t len, char purpose_out[65], int *version_out);

#endif
