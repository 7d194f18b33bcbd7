/* Envelope encryption over the key-store port.
 *
 * Field ciphertext format (version 1), all integers big-endian:
 *
 *     offset  size  field
 *     0       1     format version = 0x01
 *     1       1     L = length of the purpose (1..64)
 *     2       L     purpose, ASCII [a-z0-9._-] (the data key's id)
 *     2+L     4     data-key version (>= 1)
 *     6+L     12    nonce (random per encryption)
 *     18+L    n     AES-256-GCM ciphertext (n = plaintext length)
 *     18+L+n  16    GCM tag
 *
 * The GCM associated data is the header (bytes 0 .. 6+L) followed by the context, each part
 * prefixed by its one-byte length: len(table) table len(row_id) row_id len(field) field.
 * Changing any header byte, or decrypting with another table/row/field, fails the tag
 * (BV_EINTEGRITY). An unknown format version, purpose or data-key version fails before.
 *
 * Data keys are 32 random bytes per (kind, purpose, version), kind "aead" (fields) or
 * "hmac" (lookup MACs), stored in keys_data only as master-wrapped blobs (wrap AAD names
 * kind, purpose, version and master version, so a wrapped key cannot be swapped with
 * another row's). Unwrapped keys are cached here for the life of the bv_keys_t and wiped
 * with OPENSSL_cleanse on close. */
#include <openssl/crypto.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/errors.h"
#include "base/log.h"
#include "keys/keys_internal.h"

/* How long a process trusts its idea of the newest data-key version before re-reading it
 * (so a rotation done by `boveda admin keys rotate` reaches a running server). */
#define NEWEST_TTL_US (30 * 1000000LL)

struct dk_entry {
    char kind[8];
    char purpose[BV_KEYS_PURPOSE_MAX + 1];
    int version;
    unsigned char key[BV_KEYS_KEY_LEN];
    EVP_MAC_CTX *hmac; /* kind "hmac": HMAC-SHA256 keyed with key, copied for each MAC */
    dk_entry_t *next;
};

struct newest_entry {
    char kind[8];
    char purpose[BV_KEYS_PURPOSE_MAX + 1];
    int version;
    int64_t checked_us;
    newest_entry_t *next;
};

int bv_keys_purpose_valid(const char *purpose)
{
    if (purpose == NULL)
        return 0;
    size_t n = strlen(purpose);
    if (n == 0 || n > BV_KEYS_PURPOSE_MAX)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = purpose[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-'))
            return 0;
    }
    return 1;
}

static void put_be32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}

static uint32_t get_be32(const unsigned char *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

static void wrap_aad(char *out, size_t n, const char *kind, const char *purpose, int version,
                     int master_version)
{
    snprintf(out, n, "boveda/dk/v1|%s|%s|%d|%d", kind, purpose, version, master_version);
}

/* ---- cache ---- */

static dk_entry_t *cache_find(bv_keys_t *k, const char *kind, const char *purpose, int version)
{
    for (dk_entry_t *e = k->dks; e != NULL; e = e->next)
        if (e->version == version && strcmp(e->purpose, purpose) == 0 && strcmp(e->kind, kind) == 0)
            return e;
    return NULL;
}

static newest_entry_t *newest_find(bv_keys_t *k, const char *kind, const char *purpose)
{
    for (newest_entry_t *e = k->newest; e != NULL; e = e->next)
        if (strcmp(e->purpose, purpose) == 0 && strcmp(e->kind, kind) == 0)
            return e;
    return NULL;
}

static int cache_put(bv_keys_t *k, const char *kind, const char *purpose, int version,
                     const unsigned char key[BV_KEYS_KEY_LEN])
{
    int rc = 0;
    pthread_rwlock_wrlock(&k->lock);
    if (cache_find(k, kind, purpose, version) == NULL) {
        dk_entry_t *e = calloc(1, sizeof(*e));
        if (e == NULL) {
            rc = BV_ENOMEM;
        } else {
            snprintf(e->kind, sizeof(e->kind), "%s", kind);
            snprintf(e->purpose, sizeof(e->purpose), "%s", purpose);
            e->version = version;
            memcpy(e->key, key, BV_KEYS_KEY_LEN);
            e->next = k->dks;
            k->dks = e;
        }
    }
    pthread_rwlock_unlock(&k->lock);
    return rc;
}

static int newest_put(bv_keys_t *k, const char *kind, const char *purpose, int version)
{
    int rc = 0;
    pthread_rwlock_wrlock(&k->lock);
    newest_entry_t *e = newest_find(k, kind, purpose);
    if (e == NULL && (e = calloc(1, sizeof(*e))) != NULL) {
        snprintf(e->kind, sizeof(e->kind), "%s", kind);
        snprintf(e->purpose, sizeof(e->purpose), "%s", purpose);
        e->next = k->newest;
        k->newest = e;
    }
    if (e == NULL) {
        rc = BV_ENOMEM;
    } else {
        if (version > e->version)
            e->version = version;
        e->checked_us = bv_mono_us();
    }
    pthread_rwlock_unlock(&k->lock);
    return rc;
}

/* ---- store jobs ---- */

typedef struct {
    const char *kind;
    const char *purpose;
    int version;
    int master_version;
    bv_buf_t wrapped;
    int found;
} dk_row_t;

static int tx_read_dk(bv_tx_t *tx, void *varg)
{
    dk_row_t *a = varg;
    bv_stmt_t *s = bv_tx_prepare(tx, "SELECT master_version, wrapped FROM keys_data "
                                     "WHERE kind = ? AND purpose = ? AND version = ?");
    if (s == NULL)
        return BV_EIO;
    bv_stmt_bind_text(s, 1, a->kind, -1);
    bv_stmt_bind_text(s, 2, a->purpose, -1);
    bv_stmt_bind_int64(s, 3, a->version);
    int rc = bv_stmt_step(s);
    if (rc == BV_ROW) {
        size_t len = 0;
        const void *p = bv_stmt_blob(s, 1, &len);
        a->master_version = (int)bv_stmt_int64(s, 0);
        a->found = 1;
        rc = bv_buf_append(&a->wrapped, p, len);
    }
    bv_stmt_reset(s);
    return rc < 0 ? rc : 0;
}

typedef struct {
    const char *kind;
    const char *purpose;
    int max_version;    /* data keys of (kind, purpose); 0 if none */
    int master_version; /* newest master version; 0 if none */
    char master_adapter[16];
    int n_data_keys; /* all data keys */
} maxes_t;

static int tx_read_maxes(bv_tx_t *tx, void *varg)
{
    maxes_t *a = varg;
    int rc;
    bv_stmt_t *s;
    if (a->kind != NULL) {
        s = bv_tx_prepare(tx,
                          "SELECT COALESCE(MAX(version), 0) FROM keys_data WHERE kind = ? AND purpose = ?");
        if (s == NULL)
            return BV_EIO;
        bv_stmt_bind_text(s, 1, a->kind, -1);
        bv_stmt_bind_text(s, 2, a->purpose, -1);
        if ((rc = bv_stmt_step(s)) == BV_ROW)
            a->max_version = (int)bv_stmt_int64(s, 0);
        bv_stmt_reset(s);
        if (rc < 0)
            return rc;
    }
    s = bv_tx_prepare(tx, "SELECT version, adapter FROM keys_master ORDER BY version DESC LIMIT 1");
    if (s == NULL)
        return BV_EIO;
    if ((rc = bv_stmt_step(s)) == BV_ROW) {
        a->master_version = (int)bv_stmt_int64(s, 0);
        snprintf(a->master_adapter, sizeof(a->master_adapter), "%s", bv_stmt_text(s, 1));
    }
    bv_stmt_reset(s);
    if (rc < 0)
        return rc;
    s = bv_tx_prepare(tx, "SELECT COUNT(*) FROM keys_data");
    if (s == NULL)
        return BV_EIO;
    if ((rc = bv_stmt_step(s)) == BV_ROW)
        a->n_data_keys = (int)bv_stmt_int64(s, 0);
    bv_stmt_reset(s);
    return rc < 0 ? rc : 0;
}

typedef struct {
    const char *kind;
    const char *purpose;
    int version;
    int master_version;
    const bv_buf_t *wrapped;
} dk_insert_t;

static int tx_insert_dk(bv_tx_t *tx, void *varg)
{
    dk_insert_t *a = varg;
    bv_stmt_t *s =
        bv_tx_prepare(tx, "INSERT INTO keys_data (kind, purpose, version, master_version, wrapped, "
                          "created_at) VALUES (?, ?, ?, ?, ?, ?)");
    if (s == NULL)
        return BV_EIO;
    bv_stmt_bind_text(s, 1, a->kind, -1);
    bv_stmt_bind_text(s, 2, a->purpose, -1);
    bv_stmt_bind_int64(s, 3, a->version);
    bv_stmt_bind_int64(s, 4, a->master_version);
    bv_stmt_bind_blob(s, 5, a->wrapped->data, a->wrapped->len);
    bv_stmt_bind_int64(s, 6, bv_now_us());
    int rc = bv_stmt_step(s);
    bv_stmt_reset(s);
    return rc < 0 ? rc : 0;
}

typedef struct {
    int version;
    const char *adapter;
} master_insert_t;

static int tx_insert_master(bv_tx_t *tx, void *varg)
{
    master_insert_t *a = varg;
    bv_stmt_t *s =
        bv_tx_prepare(tx, "INSERT INTO keys_master (version, adapter, created_at) VALUES (?, ?, ?)");
    if (s == NULL)
        return BV_EIO;
    bv_stmt_bind_int64(s, 1, a->version);
    bv_stmt_bind_text(s, 2, a->adapter, -1);
    bv_stmt_bind_int64(s, 3, bv_now_us());
    int rc = bv_stmt_step(s);
    bv_stmt_reset(s);
    return rc < 0 ? rc : 0;
}

/* ---- data keys ---- */

/* Loads (unwraps) a data key into the cache. BV_ENOTFOUND when there is no such row. */
static int dk_load(bv_keys_t *k, const char *kind, const char *purpose, int version,
                   unsigned char key_out[BV_KEYS_KEY_LEN])
{
    dk_row_t row = {.kind = kind, .purpose = purpose, .version = version};
    char aad[160];
    size_t klen = 0;
    int rc = bv_store_run_tx(k->store, 0, tx_read_dk, &row);
    if (rc != 0)
        goto out;
    if (!row.found) {
        rc = BV_ENOTFOUND;
        goto out;
    }
    wrap_aad(aad, sizeof(aad), kind, purpose, version, row.master_version);
    rc = k->ks->ops->unwrap(k->ks, row.master_version, aad, strlen(aad),
                            (const unsigned char *)row.wrapped.data, row.wrapped.len, key_out,
                            BV_KEYS_KEY_LEN, &klen);
    if (rc == 0 && klen != BV_KEYS_KEY_LEN)
        rc = BV_EINTEGRITY;
    if (rc != 0) {
        bv_log_error("cannot unwrap data key",
                     "\"kind\":\"%s\",\"purpose\":\"%s\",\"version\":%d,\"error\":\"%s\"", kind, purpose,
                     version, bv_err_name(rc));
        OPENSSL_cleanse(key_out, BV_KEYS_KEY_LEN);
        if (rc == BV_EINTEGRITY)
            rc = BV_EKEYSTORE; /* a wrapped key that does not open is a key-store failure */
        goto out;
    }
    rc = cache_put(k, kind, purpose, version, key_out);
out:
    bv_buf_free(&row.wrapped);
    return rc;
}

int bv_keys_dk_get(bv_keys_t *k, const char *kind, const char *purpose, int version,
                   unsigned char key_out[BV_KEYS_KEY_LEN])
{
    pthread_rwlock_rdlock(&k->lock);
    dk_entry_t *e = cache_find(k, kind, purpose, version);
    if (e != NULL)
        memcpy(key_out, e->key, BV_KEYS_KEY_LEN);
    pthread_rwlock_unlock(&k->lock);
    if (e != NULL)
        return 0;
    return dk_load(k, kind, purpose, version, key_out);
}

/* Creates data key (kind, purpose) version max+1 (or `want` when > 0, failing with
 * BV_ECONFLICT if it exists). Caller holds create_lock. */
static int dk_create(bv_keys_t *k, const char *kind, const char *purpose, int *version_out)
{
    unsigned char key[BV_KEYS_KEY_LEN];
    bv_buf_t wrapped = {0};
    char aad[160];
    int rc = 0;
    for (int attempt = 0; attempt < 3; attempt++) {
        maxes_t m = {.kind = kind, .purpose = purpose};
        if ((rc = bv_store_run_tx(k->store, 0, tx_read_maxes, &m)) != 0)
            break;
        if (m.master_version <= 0) {
            rc = BV_EKEYSTORE;
            break;
        }
        int version = m.max_version + 1;
        bv_random(key, sizeof(key));
        bv_buf_reset(&wrapped);
        wrap_aad(aad, sizeof(aad), kind, purpose, version, m.master_version);
        if ((rc = k->ks->ops->wrap(k->ks, m.master_version, aad, strlen(aad), key, sizeof(key), &wrapped)) !=
            0)
            break;
        dk_insert_t ins = {kind, purpose, version, m.master_version, &wrapped};
        rc = bv_store_run_tx(k->store, 1, tx_insert_dk, &ins);
        if (rc == BV_ECONFLICT)
            continue; /* another process created this version: take the next one */
        if (rc != 0)
            break;
        if ((rc = cache_put(k, kind, purpose, version, key)) != 0)
            break;
        bv_log_info("data key created",
                    "\"kind\":\"%s\",\"purpose\":\"%s\",\"version\":%d,\"master_version\":%d", kind, purpose,
                    version, m.master_version);
        *version_out = version;
        break;
    }
    OPENSSL_cleanse(key, sizeof(key));
    bv_buf_free(&wrapped);
    return rc;
}

/* Re-reads the newest version from the store, creating version 1 on first use. */
static int dk_refresh_newest(bv_keys_t *k, const char *kind, const char *purpose, int *version_out)
{
    maxes_t m = {.kind = kind, .purpose = purpose};
    int rc = bv_store_run_tx(k->store, 0, tx_read_maxes, &m);
    if (rc != 0)
        return rc;
    if (m.max_version == 0) {
        pthread_mutex_lock(&k->create_lock);
        memset(&m, 0, sizeof(m));
        m.kind = kind;
        m.purpose = purpose;
        rc = bv_store_run_tx(k->store, 0, tx_read_maxes, &m);
        if (rc == 0 && m.max_version == 0)
            rc = dk_create(k, kind, purpose, &m.max_version);
        pthread_mutex_unlock(&k->create_lock);
        if (rc != 0)
            return rc;
    }
    *version_out = m.max_version;
    return newest_put(k, kind, purpose, m.max_version);
}

int bv_keys_dk_newest(bv_keys_t *k, const char *kind, const char *purpose, int *version_out,
                      unsigned char key_out[BV_KEYS_KEY_LEN])
{
    int version = 0, rc;
    pthread_rwlock_rdlock(&k->lock);
    newest_entry_t *n = newest_find(k, kind, purpose);
    if (n != NULL && bv_mono_us() - n->checked_us < NEWEST_TTL_US) {
        version = n->version;
        dk_entry_t *e = cache_find(k, kind, purpose, version);
        if (e != NULL) {
            memcpy(key_out, e->key, BV_KEYS_KEY_LEN);
            pthread_rwlock_unlock(&k->lock);
            *version_out = version;
            return 0;
        }
    }
    pthread_rwlock_unlock(&k->lock);
    if (version == 0 && (rc = dk_refresh_newest(k, kind, purpose, &version)) != 0)
        return rc;
    if ((rc = bv_keys_dk_get(k, kind, purpose, version, key_out)) != 0)
        return rc;
    *version_out = version;
    return 0;
}

/* ---- field encryption ---- */

static size_t build_header(unsigned char *h, const char *purpose, size_t plen, int version)
{
    h[0] = BV_KEYS_FORMAT_V1;
    h[1] = (unsigned char)plen;
    memcpy(h + 2, purpose, plen);
    put_be32(h + 2 + plen, (uint32_t)version);
    return 2 + plen + 4;
}

/* AAD = header || len(table) table || len(row_id) row_id || len(field) field. */
static int build_aad(unsigned char *out, size_t cap, const unsigned char *hdr, size_t hlen,
                     const bv_aad_t *aad, size_t *len_out)
{
    const char *parts[3];
    size_t n = hlen;
    if (aad == NULL || aad->table == NULL || aad->row_id == NULL || aad->field == NULL)
        return BV_EINVALID;
    parts[0] = aad->table;
    parts[1] = aad->row_id;
    parts[2] = aad->field;
    memcpy(out, hdr, hlen);
    for (int i = 0; i < 3; i++) {
        size_t l = strlen(parts[i]);
        if (l > BV_KEYS_AAD_PART_MAX || n + 1 + l > cap)
            return BV_EINVALID;
        out[n++] = (unsigned char)l;
        memcpy(out + n, parts[i], l);
        n += l;
    }
    *len_out = n;
    return 0;
}

#define HDR_MAX (2 + BV_KEYS_PURPOSE_MAX + 4)
#define AAD_MAX (HDR_MAX + 3 * (1 + BV_KEYS_AAD_PART_MAX))

int bv_keys_encrypt(bv_keys_t *k, const char *purpose, const bv_aad_t *aad, const void *pt, size_t len,
                    bv_buf_t *out)
{
    unsigned char key[BV_KEYS_KEY_LEN], hdr[HDR_MAX], ad[AAD_MAX], nonce[BV_KEYS_NONCE_LEN];
    size_t hlen, adlen, off;
    int version = 0, rc;
    if (k == NULL || !bv_keys_purpose_valid(purpose) || (pt == NULL && len > 0))
        return BV_EINVALID;
    if ((rc = bv_keys_dk_newest(k, "aead", purpose, &version, key)) != 0)
        return rc;
    hlen = build_header(hdr, purpose, strlen(purpose), version);
    if ((rc = build_aad(ad, sizeof(ad), hdr, hlen, aad, &adlen)) != 0)
        goto out;
    if (RAND_bytes(nonce, sizeof(nonce)) != 1) {
        rc = BV_ECRYPTO;
        goto out;
    }
    rc = BV_ENOMEM;
    off = out->len;
    if (bv_buf_append(out, hdr, hlen) != 0 || bv_buf_append(out, nonce, sizeof(nonce)) != 0)
        goto out;
    size_t ct_off = out->len;
    /* Reserve room by appending the plaintext, then encrypt it in place (GCM allows it). */
    static const unsigned char tag_room[BV_KEYS_TAG_LEN];
    if (bv_buf_append(out, pt, len) != 0 || bv_buf_append(out, tag_room, sizeof(tag_room)) != 0)
        goto fail;
    unsigned char *ct = (unsigned char *)out->data + ct_off;
    rc = bv_keys_gcm_seal(key, nonce, ad, adlen, ct, len, ct, ct + len);
    if (rc != 0)
        goto fail;
    rc = 0;
    goto out;
fail:
    if (out->data != NULL && out->len > off) {
        OPENSSL_cleanse(out->data + off, out->len - off);
        out->len = off;
        out->data[off] = '\0';
    }
out:
    OPENSSL_cleanse(key, sizeof(key));
    return rc;
}

int bv_keys_blob_info(const void *ct, size_t len, char purpose_out[65], int *version_out)
{
    const unsigned char *p = ct;
    if (p == NULL || len < 2 || p[0] != BV_KEYS_FORMAT_V1)
        return BV_EINTEGRITY;
    size_t plen = p[1];
    if (plen == 0 || plen > BV_KEYS_PURPOSE_MAX || len < 2 + plen + 4 + BV_KEYS_NONCE_LEN + BV_KEYS_TAG_LEN)
        return BV_EINTEGRITY;
    memcpy(purpose_out, p + 2, plen);
    purpose_out[plen] = '\0';
    if (!bv_keys_purpose_valid(purpose_out))
        return BV_EINTEGRITY;
    uint32_t v = get_be32(p + 2 + plen);
    if (v == 0 || v > INT32_MAX)
        return BV_EINTEGRITY;
    *version_out = (int)v;
    return 0;
}

int bv_keys_decrypt(bv_keys_t *k, const bv_aad_t *aad, const void *ct, size_t len, bv_buf_t *out)
{
    unsigned char key[BV_KEYS_KEY_LEN], ad[AAD_MAX];
    char purpose[BV_KEYS_PURPOSE_MAX + 1];
    size_t adlen;
    int version = 0, rc;
    const unsigned char *p = ct;
    if (k == NULL)
        return BV_EINVALID;
    if ((rc = bv_keys_blob_info(ct, len, purpose, &version)) != 0)
        return rc;
    size_t hlen = 2 + strlen(purpose) + 4;
    const unsigned char *nonce = p + hlen;
    const unsigned char *body = nonce + BV_KEYS_NONCE_LEN;
    size_t n = len - hlen - BV_KEYS_NONCE_LEN - BV_KEYS_TAG_LEN;
    if ((rc = build_aad(ad, sizeof(ad), p, hlen, aad, &adlen)) != 0)
        return rc;
    rc = bv_keys_dk_get(k, "aead", purpose, version, key);
    if (rc == BV_ENOTFOUND)
        return BV_EINTEGRITY; /* no such key: a forged or foreign header */
    if (rc != 0)
        return rc;
    size_t off = out->len;
    /* Reserve room with the (public) ciphertext bytes, then decrypt over them. */
    if (bv_buf_append(out, body, n) != 0) {
        rc = BV_ENOMEM;
        goto out;
    }
    rc = bv_keys_gcm_open(key, nonce, ad, adlen, body, n, body + n, (unsigned char *)out->data + off);
    if (rc != 0) {
        out->len = off;
        out->data[off] = '\0';
    }
out:
    OPENSSL_cleanse(key, sizeof(key));
    return rc;
}

/* A new HMAC-SHA256 context keyed with key, or NULL. */
static EVP_MAC_CTX *hmac_keyed(const unsigned char key[BV_KEYS_KEY_LEN])
{
    EVP_MAC *mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
    EVP_MAC_CTX *c = mac != NULL ? EVP_MAC_CTX_new(mac) : NULL;
    OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string("digest", "SHA256", 0), OSSL_PARAM_construct_end()};
    EVP_MAC_free(mac); /* the context holds its own reference */
    if (c != NULL && EVP_MAC_init(c, key, BV_KEYS_KEY_LEN, params) != 1) {
        EVP_MAC_CTX_free(c);
        c = NULL;
    }
    return c;
}

int bv_keys_hmac(bv_keys_t *k, const char *purpose, const void *data, size_t len, unsigned char out[32])
{
    unsigned char key[BV_KEYS_KEY_LEN];
    size_t outl = 0;
    int version = 0, rc;
    EVP_MAC_CTX *c = NULL;
    if (k == NULL || !bv_keys_purpose_valid(purpose) || (data == NULL && len > 0))
        return BV_EINVALID;
    /* HMAC keys have one version: rotating them would orphan every stored lookup MAC. */
    if ((rc = bv_keys_dk_newest(k, "hmac", purpose, &version, key)) != 0)
        return rc;
    /* A copy of the entry's keyed context: keying (and OpenSSL 3's lookups by name) once
     * per key instead of once per MAC. Entries are never freed before the keys object, so
     * the read lock finds it and hmac_mu serialises creating and copying the context. */
    pthread_rwlock_rdlock(&k->lock);
    dk_entry_t *e = cache_find(k, "hmac", purpose, version);
    pthread_rwlock_unlock(&k->lock);
    if (e != NULL) {
        pthread_mutex_lock(&k->hmac_mu);
        if (e->hmac == NULL)
            e->hmac = hmac_keyed(e->key);
        if (e->hmac != NULL)
            c = EVP_MAC_CTX_dup(e->hmac);
        pthread_mutex_unlock(&k->hmac_mu);
    }
    if (c == NULL)
        c = hmac_keyed(key);
    OPENSSL_cleanse(key, sizeof(key));
    rc = c != NULL && EVP_MAC_update(c, data, len) == 1 && EVP_MAC_final(c, out, &outl, 32) == 1 && outl == 32
             ? 0
             : BV_ECRYPTO;
    EVP_MAC_CTX_free(c);
    return rc;
}

int bv_keys_prepare(bv_keys_t *k, const char *purpose, unsigned kinds)
{
    unsigned char key[BV_KEYS_KEY_LEN];
    int version = 0, rc = 0;
    if (k == NULL || !bv_keys_purpose_valid(purpose) || kinds == 0 ||
        (kinds & ~(BV_KEYS_AEAD | BV_KEYS_HMAC)) != 0)
        return BV_EINVALID;
    if ((kinds & BV_KEYS_AEAD) != 0)
        rc = bv_keys_dk_newest(k, "aead", purpose, &version, key);
    if (rc == 0 && (kinds & BV_KEYS_HMAC) != 0)
        rc = bv_keys_dk_newest(k, "hmac", purpose, &version, key);
    OPENSSL_cleanse(key, sizeof(key));
    return rc;
}

/* ---- rotation ---- */

int bv_keys_rotate(bv_keys_t *k, const char *purpose, int *version_out)
{
    int version = 0, rc;
    if (k == NULL || !bv_keys_purpose_valid(purpose))
        return BV_EINVALID;
    pthread_mutex_lock(&k->create_lock);
    rc = dk_create(k, "aead", purpose, &version);
    pthread_mutex_unlock(&k->create_lock);
    if (rc != 0)
        return rc;
    if ((rc = newest_put(k, "aead", purpose, version)) != 0)
        return rc;
    if (version_out != NULL)
        *version_out = version;
    return 0;
}

typedef struct rewrap_row {
    char kind[8];
    char purpose[BV_KEYS_PURPOSE_MAX + 1];
    int version;
    int master_version;
    bv_buf_t wrapped;     /* old */
    bv_buf_t new_wrapped; /* under the new master */
} rewrap_row_t;

typedef struct {
    rewrap_row_t *rows;
    size_t n, cap;
    int new_master;
    const char *adapter;
} master_rot_t;

static int tx_read_all_dks(bv_tx_t *tx, void *varg)
{
    master_rot_t *a = varg;
    bv_stmt_t *s = bv_tx_prepare(tx, "SELECT kind, purpose, version, master_version, wrapped FROM keys_data "
                                     "ORDER BY kind, purpose, version");
    int rc;
    if (s == NULL)
        return BV_EIO;
    while ((rc = bv_stmt_step(s)) == BV_ROW) {
        if (a->n == a->cap) {
            size_t ncap = a->cap ? a->cap * 2 : 16;
            rewrap_row_t *nr = realloc(a->rows, ncap * sizeof(*nr));
            if (nr == NULL) {
                rc = BV_ENOMEM;
                break;
            }
            a->rows = nr;
            a->cap = ncap;
        }
        rewrap_row_t *r = &a->rows[a->n++];
        memset(r, 0, sizeof(*r));
        snprintf(r->kind, sizeof(r->kind), "%s", bv_stmt_text(s, 0));
        snprintf(r->purpose, sizeof(r->purpose), "%s", bv_stmt_text(s, 1));
        r->version = (int)bv_stmt_int64(s, 2);
        r->master_version = (int)bv_stmt_int64(s, 3);
        size_t len = 0;
        const void *p = bv_stmt_blob(s, 4, &len);
        if (bv_buf_append(&r->wrapped, p, len) != 0) {
            rc = BV_ENOMEM;
            break;
        }
    }
    bv_stmt_reset(s);
    return rc < 0 ? rc : 0;
}

static int tx_apply_master_rotation(bv_tx_t *tx, void *varg)
{
    master_rot_t *a = varg;
    master_insert_t mi = {a->new_master, a->adapter};
    int rc = tx_insert_master(tx, &mi);
    if (rc != 0)
        return rc;
    for (size_t i = 0; i < a->n; i++) {
        rewrap_row_t *r = &a->rows[i];
        bv_stmt_t *s =
            bv_tx_prepare(tx, "UPDATE keys_data SET wrapped = ?, master_version = ? "
                              "WHERE kind = ? AND purpose = ? AND version = ? AND master_version = ?");
        if (s == NULL)
            return BV_EIO;
        bv_stmt_bind_blob(s, 1, r->new_wrapped.data, r->new_wrapped.len);
        bv_stmt_bind_int64(s, 2, a->new_master);
        bv_stmt_bind_text(s, 3, r->kind, -1);
        bv_stmt_bind_text(s, 4, r->purpose, -1);
        bv_stmt_bind_int64(s, 5, r->version);
        bv_stmt_bind_int64(s, 6, r->master_version);
        rc = bv_stmt_step(s);
        bv_stmt_reset(s);
        if (rc < 0)
            return rc;
        if (bv_tx_changes(tx) != 1)
            return BV_ECONFLICT; /* rotated concurrently: roll the whole rotation back */
    }
    return 0;
}

int bv_keys_rotate_master(bv_keys_t *k, int *version_out, int *n_rewrapped_out)
{
    master_rot_t a = {0};
    unsigned char key[BV_KEYS_KEY_LEN];
    char aad[160];
    int rc;
    if (k == NULL)
        return BV_EINVALID;
    pthread_mutex_lock(&k->create_lock);
    maxes_t m = {0};
    if ((rc = bv_store_run_tx(k->store, 0, tx_read_maxes, &m)) != 0)
        goto out;
    a.new_master = m.master_version + 1;
    a.adapter = k->adapter;
    if ((rc = k->ks->ops->master_ensure(k->ks, a.new_master, 1)) != 0)
        goto out;
    if ((rc = bv_store_run_tx(k->store, 0, tx_read_all_dks, &a)) != 0)
        goto out;
    for (size_t i = 0; i < a.n; i++) {
        rewrap_row_t *r = &a.rows[i];
        size_t klen = 0;
        wrap_aad(aad, sizeof(aad), r->kind, r->purpose, r->version, r->master_version);
        rc = k->ks->ops->unwrap(k->ks, r->master_version, aad, strlen(aad),
                                (const unsigned char *)r->wrapped.data, r->wrapped.len, key, sizeof(key),
                                &klen);
        if (rc == 0 && klen != sizeof(key))
            rc = BV_EKEYSTORE;
        if (rc != 0) {
            bv_log_error("master rotation: cannot unwrap data key",
                         "\"kind\":\"%s\",\"purpose\":\"%s\",\"version\":%d", r->kind, r->purpose,
                         r->version);
            rc = BV_EKEYSTORE;
            goto out;
        }
        wrap_aad(aad, sizeof(aad), r->kind, r->purpose, r->version, a.new_master);
        rc = k->ks->ops->wrap(k->ks, a.new_master, aad, strlen(aad), key, sizeof(key), &r->new_wrapped);
        OPENSSL_cleanse(key, sizeof(key));
        if (rc != 0)
            goto out;
    }
    if ((rc = bv_store_run_tx(k->store, 1, tx_apply_master_rotation, &a)) != 0)
        goto out;
    pthread_rwlock_wrlock(&k->lock);
    k->master_version = a.new_master;
    pthread_rwlock_unlock(&k->lock);
    bv_log_info("master key rotated", "\"version\":%d,\"rewrapped\":%zu", a.new_master, a.n);
    if (version_out != NULL)
        *version_out = a.new_master;
    if (n_rewrapped_out != NULL)
        *n_rewrapped_out = (int)a.n;
out:
    pthread_mutex_unlock(&k->create_lock);
    OPENSSL_cleanse(key, sizeof(key));
    for (size_t i = 0; i < a.n; i++) {
        bv_buf_free(&a.rows[i].wrapped);
        bv_buf_free(&a.rows[i].new_wrapped);
    }
    free(a.rows);
    return rc;
}

/* ---- inventory ---- */

static json_t *time_or_null(bv_stmt_t *s, int col)
{
    char t[32];
    if (bv_stmt_is_null(s, col))
        return json_null();
    bv_time_format(bv_stmt_int64(s, col), t);
    return json_string(t);
}

typedef struct {
    json_t *root;
} list_arg_t;

static int tx_list(bv_tx_t *tx, void *varg)
{
    list_arg_t *a = varg;
    json_t *masters = json_array(), *dks = json_array(), *sks = json_array();
    int rc;
    json_object_set_new(a->root, "masters", masters);
    json_object_set_new(a->root, "data_keys", dks);
    json_object_set_new(a->root, "signing_keys", sks);
    bv_stmt_t *s = bv_tx_prepare(tx, "SELECT version, adapter, created_at FROM keys_master ORDER BY version");
    if (s == NULL)
        return BV_EIO;
    while ((rc = bv_stmt_step(s)) == BV_ROW)
        json_array_append_new(masters,
                              json_pack("{s:I,s:s,s:o}", "version", (json_int_t)bv_stmt_int64(s, 0),
                                        "adapter", bv_stmt_text(s, 1), "created_at", time_or_null(s, 2)));
    bv_stmt_reset(s);
    if (rc < 0)
        return rc;
    s = bv_tx_prepare(tx, "SELECT d.kind, d.purpose, d.version, d.master_version, d.created_at, "
                          "d.version = (SELECT MAX(version) FROM keys_data m WHERE m.kind = d.kind AND "
                          "m.purpose = d.purpose) FROM keys_data d ORDER BY d.kind, d.purpose, d.version");
    if (s == NULL)
        return BV_EIO;
    while ((rc = bv_stmt_step(s)) == BV_ROW)
        json_array_append_new(dks,
                              json_pack("{s:s,s:s,s:I,s:I,s:o,s:b}", "kind", bv_stmt_text(s, 0), "purpose",
                                        bv_stmt_text(s, 1), "version", (json_int_t)bv_stmt_int64(s, 2),
                                        "master_version", (json_int_t)bv_stmt_int64(s, 3), "created_at",
                                        time_or_null(s, 4), "current", (int)bv_stmt_int64(s, 5)));
    bv_stmt_reset(s);
    if (rc < 0)
        return rc;
    s = bv_tx_prepare(tx,
                      "SELECT kid, alg, state, location, created_at, activated_at, retired_at, retire_until "
                      "FROM keys_signing ORDER BY created_at, kid");
    if (s == NULL)
        return BV_EIO;
    while ((rc = bv_stmt_step(s)) == BV_ROW)
        json_array_append_new(sks, json_pack("{s:s,s:s,s:s,s:s,s:o,s:o,s:o,s:o}", "kid", bv_stmt_text(s, 0),
                                             "alg", bv_stmt_text(s, 1), "state", bv_stmt_text(s, 2),
                                             "location", bv_stmt_text(s, 3), "created_at", time_or_null(s, 4),
                                             "activated_at", time_or_null(s, 5), "retired_at",
                                             time_or_null(s, 6), "retire_until", time_or_null(s, 7)));
    bv_stmt_reset(s);
    return rc < 0 ? rc : 0;
}

int bv_keys_list(bv_keys_t *k, json_t **out)
{
    list_arg_t a = {json_object()};
    int rc;
    if (a.root == NULL)
        return BV_ENOMEM;
    pthread_rwlock_rdlock(&k->lock);
    int mv = k->master_version;
    pthread_rwlock_unlock(&k->lock);
    json_object_set_new(a.root, "adapter", json_string(k->adapter));
    json_object_set_new(a.root, "master_version", json_integer(mv));
    if ((rc = bv_store_run_tx(k->store, 0, tx_list, &a)) != 0) {
        json_decref(a.root);
        return rc;
    }
    *out = a.root;
    return 0;
}

const char *bv_keys_adapter(const bv_keys_t *k)
{
    return k != NULL ? k->adapter : "none";
}

/* ---- open / close ---- */

int bv_keys_open(const bv_config_t *cfg, bv_store_t *store, bv_keys_t **out)
{
    bv_keys_t *k = NULL;
    int rc;
    *out = NULL;
    if ((k = calloc(1, sizeof(*k))) == NULL)
        return BV_ENOMEM;
    pthread_rwlock_init(&k->lock, NULL);
    pthread_mutex_init(&k->hmac_mu, NULL);
    pthread_mutex_init(&k->create_lock, NULL);
    pthread_mutex_init(&k->sign_lock, NULL);
    pthread_mutex_init(&k->sign_create_lock, NULL);
    pthread_mutex_init(&k->fields_lock, NULL);
    k->store = store;
    const char *which = cfg->keystore != NULL && cfg->keystore[0] != '\0' ? cfg->keystore : "file";
    if (strcmp(which, "file") == 0) {
        rc = bv_keystore_file_open(cfg, &k->ks);
    } else if (strcmp(which, "pkcs11") == 0) {
        rc = bv_keystore_pkcs11_open(cfg, &k->ks);
    } else {
        bv_log_error("unknown key store adapter (BOVEDA_KEYSTORE=file|pkcs11)", NULL);
        rc = BV_ECONFIG;
    }
    if (rc != 0)
        goto fail;
    k->adapter = k->ks->ops->name;

    maxes_t m = {0};
    if ((rc = bv_store_run_tx(store, 0, tx_read_maxes, &m)) != 0)
        goto fail;
    if (m.master_version > 0 && strcmp(m.master_adapter, k->adapter) != 0) {
        bv_log_error("data keys are wrapped by master keys of another key store adapter: refusing to start",
                     "\"stored\":\"%s\",\"configured\":\"%s\"", m.master_adapter, k->adapter);
        rc = BV_EKEYSTORE;
        goto fail;
    }
    int version = m.master_version > 0 ? m.master_version : 1;
    /* Create the master key only while nothing is wrapped by it yet: a missing master key
     * with wrapped data keys means the key file or token is not the right one. */
    rc = k->ks->ops->master_ensure(k->ks, version, m.n_data_keys == 0);
    if (rc == BV_ENOTFOUND) {
        bv_log_error("master key missing from the key store: the stored data keys cannot be unwrapped",
                     "\"adapter\":\"%s\",\"version\":%d", k->adapter, version);
        rc = BV_EKEYSTORE;
    }
    if (rc != 0)
        goto fail;
    if (m.master_version == 0) {
        master_insert_t mi = {version, k->adapter};
        rc = bv_store_run_tx(store, 1, tx_insert_master, &mi);
        if (rc != 0 && rc != BV_ECONFLICT)
            goto fail;
    }
    k->master_version = version;
    /* The file adapter keeps signing private keys encrypted in keys_signing: rewrap walks
     * them like any other encrypted column. */
    if ((rc = bv_keys_register_field(k, "keys_signing", "kid", "private_key", "signing")) != 0)
        goto fail;
    *out = k;
    return 0;
fail:
    bv_keys_close(k);
    return rc;
}

void bv_keys_close(bv_keys_t *k)
{
    if (k == NULL)
        return;
    bv_keys_signing_free(k);
    bv_keys_fields_free(k);
    while (k->dks != NULL) {
        dk_entry_t *n = k->dks->next;
        EVP_MAC_CTX_free(k->dks->hmac);
        OPENSSL_cleanse(k->dks, sizeof(*k->dks));
        free(k->dks);
        k->dks = n;
    }
    while (k->newest != NULL) {
        newest_entry_t *n = k->newest->next;
        free(k->newest);
        k->newest = n;
    }
    if (k->ks != NULL)
        k->ks->ops->close(k->ks);
    pthread_rwlock_destroy(&k->lock);
    pthread_mutex_destroy(&k->hmac_mu);
    pthread_mutex_destroy(&k->create_lock);
    pthread_mutex_destroy(&k->sign_lock);
    pthread_mutex_destroy(&k->sign_create_lock);
    pthread_mutex_destroy(&k->fields_lock);
    free(k);
}

int bv_keys_random(bv_keys_t *k, void *out, size_t len)
{
    if (k == NULL || out == NULL || len == 0 || len > 1024)
        return BV_EINVALID;
    int rc = k->ks->ops->random(k->ks, out, len);
    if (rc != 0)
        OPENSSL_cleanse(out, len);
    return rc;
}
