/* The audit module as plugged into the application (src/app/app.c) and its HTTP/CLI
 * helpers. Other modules use audit/audit.h only. */
#ifndef BV_AUDIT_MODULE_H
#define BV_AUDIT_MODULE_H

#include <jansson.h>
#include <stdint.h>

#include "app/app.h"
#include "audit/audit.h"

/* Module table entries: init starts the checkpoint thread when serving (app->http and
 * app->keys set); routes adds GET /v1/audit/events; fini stops the thread after one last
 * checkpoint of the head. */
int bv_audit_module_init(bv_app_t *app);
int bv_audit_module_routes(bv_app_t *app);
void bv_audit_module_fini(bv_app_t *app);

/* `boveda admin audit verify [--json]` (exit 0 pass, 1 fail, 2 error) and
 * `boveda admin audit checkpoint`. */
int bv_audit_admin_main(bv_app_t *app, int argc, char **argv);

/* Checkpoint cadence while serving: every BV_AUDIT_CHECKPOINT_SECONDS if the head moved,
 * sooner once BV_AUDIT_CHECKPOINT_RECORDS records were appended since the last one. */
#define BV_AUDIT_CHECKPOINT_SECONDS 60
#define BV_AUDIT_CHECKPOINT_RECORDS 10000

/* Head of the chain (0 when empty) and the seq of the newest checkpoint (0 if none);
 * either out-parameter may be NULL. */
int bv_audit_head(bv_store_t *st, int64_t *seq_out, int64_t *last_checkpoint_out);

/* A page of the log, newest first. */
typedef struct {
    const char *actor;  /* exact match, NULL = any */
    const char *action; /* exact match, NULL = any */
    int has_from, has_to;
    int64_t from_us;    /* inclusive */
    int64_t to_us;      /* exclusive */
    int64_t before_seq; /* from the cursor; 0 = from the newest */
    int limit;          /* 1..500 */
} bv_audit_query_t;

/* Appends up to q->limit records as JSON objects to `items` (inside a read or write job).
 * *next_cursor_seq_out gets the seq to continue before, or 0 when this was the last page. */
int bv_audit_query(bv_tx_t *tx, const bv_audit_query_t *q, json_t *items, int64_t *next_cursor_seq_out);

/* Opaque page cursors: base64url of the seq. decode: 0 or BV_EINVALID. */
#define BV_AUDIT_CURSOR_LEN 11
void bv_audit_cursor_encode(int64_t seq, char out[BV_AUDIT_CURSOR_LEN + 1]);
int bv_audit_cursor_decode(const char *s, int64_t *seq_out);

#endif
