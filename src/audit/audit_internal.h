/* Shared between the audit module's files and its unit tests; not a public API. */
#ifndef BV_AUDIT_INTERNAL_H
#define BV_AUDIT_INTERNAL_H

#include <openssl/evp.h>

#include "audit/audit.h"
#include "base/util.h"

#define BV_AUDIT_HASH_LEN       32
#define BV_AUDIT_RECORD_TAG     "BVAUDIT1" /* 8 bytes: domain separation of record hashes */
#define BV_AUDIT_CHECKPOINT_TAG "BVACKPT1" /* 8 bytes: of checkpoint signatures */

#define BV_AUDIT_MAX_ACTOR      256
#define BV_AUDIT_MAX_ACTION     128
#define BV_AUDIT_MAX_RESOURCE   256
#define BV_AUDIT_MAX_SOURCE_IP  64
#define BV_AUDIT_MAX_REQUEST_ID 128
#define BV_AUDIT_MAX_DETAILS    16384

/* One record as stored (pointers borrowed). details/prev_hash carry explicit lengths. */
typedef struct {
    int64_t seq;
    const char *id;
    int64_t time;
    const char *actor, *action, *resource, *outcome, *source_ip, *request_id;
    const char *details;
    size_t details_len;
    const unsigned char *prev_hash;
    size_t prev_hash_len;
} bv_audit_row_t;

const EVP_MD *bv_audit_sha256(void);
/* The canonical encoding hashed for a record (replaces b's content). */
int bv_audit_encode_record(bv_buf_t *b, const bv_audit_row_t *r);
/* SHA-256 of that encoding; scratch is reused between calls. */
int bv_audit_hash_record(EVP_MD_CTX *ctx, bv_buf_t *scratch, const bv_audit_row_t *r,
                         unsigned char out[BV_AUDIT_HASH_LEN]);
/* The message signed by a checkpoint (replaces b's content). */
int bv_audit_encode_checkpoint(bv_buf_t *b, int64_t seq, const unsigned char hash[BV_AUDIT_HASH_LEN],
                               int64_t time_us);
int bv_audit_key_is_secret(const char *key);
int bv_audit_event_validate(const bv_audit_event_t *ev);

#endif
