/* Append-only, hash-chained audit log (issue 3). Records are written inside the same
 * write job (bv_store_write) as the change they record, so neither commits without the
 * other. Nothing secret may be passed in `details`. */
#ifndef BV_AUDIT_AUDIT_H
#define BV_AUDIT_AUDIT_H

#include <jansson.h>
#include <stdint.h>

#include "base/util.h"
#include "keys/keys.h"
#include "store/store.h"

typedef struct {
    const char *actor;      /* "user:<id>", "client:<id>", "operator:<id>", "admin:admin", "system" */
    const char *action;     /* dotted verb: "ledger.transfer.create" */
    const char *resource;   /* "transfer:<id>" (may be NULL) */
    const char *outcome;    /* "success", "denied", "invalid", "failure" */
    const char *source_ip;  /* may be NULL */
    const char *request_id; /* may be NULL */
    json_t *details;        /* borrowed, may be NULL; non-secret facts only */
    /* Instead of details, for hot paths: the details already rendered as a flat canonical
     * object of strings, keys sorted, no spaces (`{"a":"1","b":"x"}`), checked like details
     * (secret-looking keys refused) without building a json_t. */
    const char *details_json;
} bv_audit_event_t;

/* Appends one record to the chain inside the caller's write job. Must be called with a
 * write transaction (from inside bv_store_write). 0, BV_EINVALID (missing or oversized
 * field, outcome not one of the four, secret-looking details: see
 * bv_audit_check_details), BV_EINTERNAL (not in a write job) or a negative store error;
 * on error the caller's job must fail so the change it records rolls back too. */
int bv_audit_append(bv_tx_t *tx, const bv_audit_event_t *ev);

/* Like bv_audit_append, and hands back the new record's seq and id (either may be NULL). */
int bv_audit_append_ex(bv_tx_t *tx, const bv_audit_event_t *ev, int64_t *seq_out,
                       char id_out[BV_UUID_STR_LEN + 1]);

/* Writes one record in its own write job (retried while busy): for failed attempts
 * (denied, invalid) that change nothing else. Callable from any thread except the writer.
 * 0, BV_EINVALID (bad event or secret-looking details), or a store error. */
int bv_audit_record(bv_store_t *st, const bv_audit_event_t *ev);

/* 0 if `details` (NULL accepted) may be recorded, BV_EINVALID if it is not an object or
 * holds, at any depth, a key that looks secret (password, secret, token, otp, code, pin,
 * pan, cvv, authorization, cookie, ...; case-insensitive; see docs/audit.md). */
int bv_audit_check_details(const json_t *details);

/* ---- checkpoints: the chain head signed with a signing key ---- */

/* Signs the current head (seq, hash) with the active ES256 key and stores the checkpoint.
 * Does nothing when the head is empty or already checkpointed. The signature is made
 * outside the writer (the key store may block). 0, BV_EKEYSTORE/BV_ECRYPTO, store errors. */
int bv_audit_checkpoint(bv_store_t *st, bv_keys_t *keys);
/* Same; *seq_out (may be NULL) gets the checkpointed seq (0 when the chain is empty). */
int bv_audit_checkpoint_ex(bv_store_t *st, bv_keys_t *keys, int64_t *seq_out);

/* ---- verification ---- */

typedef enum {
    BV_AUDIT_OK = 0,
    BV_AUDIT_ALTERED,        /* a record's hash does not match its content */
    BV_AUDIT_REMOVED,        /* a seq is missing (gap, or records after a checkpoint gone) */
    BV_AUDIT_REORDERED,      /* prev_hash links to another record of the chain */
    BV_AUDIT_INSERTED,       /* prev_hash links to no record of the chain */
    BV_AUDIT_BAD_CHECKPOINT, /* a checkpoint signature does not verify (forged, edited, unknown kid) */
} bv_audit_failure_t;

typedef struct {
    int ok;                /* 1 pass, 0 fail */
    int64_t n_records;     /* records walked */
    int64_t n_checkpoints; /* checkpoints verified */
    int64_t head_seq;      /* last seq walked */
    char head_hash[65];    /* its hash, hex ("" when empty) */
    /* on failure: */
    bv_audit_failure_t failure;
    int64_t seq;                  /* the record (or missing seq, or checkpoint seq) at fault */
    char id[BV_UUID_STR_LEN + 1]; /* its id ("" when the record is missing) */
    char detail[256];             /* one line, human readable */
} bv_audit_verify_result_t;

/* Walks the whole chain in one read snapshot, streaming, and every checkpoint (signature
 * via bv_keys_verify; hash against the chain at that seq), and reports the fault with the
 * lowest seq. Returns 0 when verification ran (verdict in *out), BV_EKEYSTORE when
 * checkpoints exist but `keys` is NULL (the chain walk's verdict is still in *out), or
 * a store error. */
int bv_audit_verify(bv_store_t *st, bv_keys_t *keys, bv_audit_verify_result_t *out);
/* "altered", "removed", ... ("ok" for BV_AUDIT_OK). Static string. */
const char *bv_audit_failure_name(bv_audit_failure_t f);

#endif
