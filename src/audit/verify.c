/* Checkpoints (signed chain heads) and verification of the whole chain (docs/audit.md).
 *
 * Verification has two passes. The chain walk streams every record in one read snapshot
 * (constant memory) checking seq contiguity, the prev_hash link and each record's hash.
 * Then checkpoints are read in pages and their signatures verified outside any read job
 * (the key store may block or use the store itself), each compared with the chain's hash
 * at its seq. The fault with the lowest seq is reported. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "audit/audit_internal.h"
#include "audit/audit_module.h"
#include "base/log.h"

const char *bv_audit_failure_name(bv_audit_failure_t f)
{
    switch (f) {
    case BV_AUDIT_OK:
        return "ok";
    case BV_AUDIT_ALTERED:
        return "altered";
    case BV_AUDIT_REMOVED:
        return "removed";
    case BV_AUDIT_REORDERED:
        return "reordered";
    case BV_AUDIT_INSERTED:
        return "inserted";
    case BV_AUDIT_BAD_CHECKPOINT:
        return "bad-checkpoint";
    }
    return "unknown";
}

static void fail(bv_audit_verify_result_t *r, bv_audit_failure_t f, int64_t seq, const char *id,
                 const char *fmt, ...) __attribute__((format(printf, 5, 6)));
static void fail(bv_audit_verify_result_t *r, bv_audit_failure_t f, int64_t seq, const char *id,
                 const char *fmt, ...)
{
    va_list ap;
    r->ok = 0;
    r->failure = f;
    r->seq = seq;
    snprintf(r->id, sizeof(r->id), "%s", id != NULL ? id : "");
    va_start(ap, fmt);
    vsnprintf(r->detail, sizeof(r->detail), fmt, ap);
    va_end(ap);
}

/* ---- pass 1: the chain ---- */

typedef struct {
    bv_audit_verify_result_t *res;
    unsigned char head_hash[BV_AUDIT_HASH_LEN];
} walk_t;

static const char *col_text(bv_stmt_t *s, int col)
{
    return bv_stmt_text(s, col);
}

/* After a prev_hash mismatch: a link to another record of the chain means the record was
 * moved (reordered); a link to nothing means it was made up (inserted). */
static int classify_link(bv_tx_t *tx, const unsigned char *prev, size_t prev_len, int64_t *linked_seq_out)
{
    int rc;
    bv_stmt_t *s = bv_tx_prepare(tx, "SELECT seq FROM audit_log WHERE hash = ? ORDER BY seq LIMIT 1");
    *linked_seq_out = 0;
    if (s == NULL)
        return BV_EIO;
    bv_stmt_bind_blob(s, 1, prev, prev_len);
    rc = bv_stmt_step(s);
    if (rc == BV_ROW)
        *linked_seq_out = bv_stmt_int64(s, 0);
    bv_stmt_reset(s);
    return rc < 0 ? rc : 0;
}

static int walk_job(bv_tx_t *tx, void *arg)
{
    walk_t *w = arg;
    bv_audit_verify_result_t *res = w->res;
    int rc = BV_EIO, step;
    int64_t expected = 1;
    unsigned char prev[BV_AUDIT_HASH_LEN] = {0}, calc[BV_AUDIT_HASH_LEN];
    unsigned char bad_link[BV_AUDIT_HASH_LEN];
    size_t bad_link_len = 0;
    int64_t bad_seq = 0;
    char bad_id[BV_UUID_STR_LEN + 1] = "";
    bv_buf_t scratch = {0};
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    bv_stmt_t *s;

    if (ctx == NULL)
        return BV_ENOMEM;
    s = bv_tx_prepare(tx, "SELECT seq, id, time, actor, action, resource, outcome, source_ip, request_id, "
                          "details, prev_hash, hash FROM audit_log ORDER BY seq");
    if (s == NULL)
        goto out;
    while ((step = bv_stmt_step(s)) == BV_ROW) {
        bv_audit_row_t r = {0};
        size_t hl = 0;
        const unsigned char *stored;
        const char *id;
        r.seq = bv_stmt_int64(s, 0);
        id = col_text(s, 1);
        if (r.seq != expected) {
            if (r.seq > expected)
                fail(res, BV_AUDIT_REMOVED, expected, "",
                     "record seq %lld is missing (seq %lld to %lld removed; next present: seq %lld id %s)",
                     (long long)expected, (long long)expected, (long long)(r.seq - 1), (long long)r.seq,
                     id != NULL ? id : "?");
            else
                fail(res, BV_AUDIT_INSERTED, r.seq, id,
                     "record seq %lld id %s is out of sequence (expected %lld)", (long long)r.seq,
                     id != NULL ? id : "?", (long long)expected);
            break;
        }
        r.id = id;
        r.time = bv_stmt_int64(s, 2);
        r.actor = col_text(s, 3);
        r.action = col_text(s, 4);
        r.resource = col_text(s, 5);
        r.outcome = col_text(s, 6);
        r.source_ip = col_text(s, 7);
        r.request_id = col_text(s, 8);
        r.details = bv_stmt_is_null(s, 9) ? NULL : bv_stmt_blob(s, 9, &r.details_len);
        r.prev_hash = bv_stmt_is_null(s, 10) ? NULL : bv_stmt_blob(s, 10, &r.prev_hash_len);
        stored = bv_stmt_is_null(s, 11) ? NULL : bv_stmt_blob(s, 11, &hl);
        if (r.prev_hash == NULL || r.prev_hash_len != BV_AUDIT_HASH_LEN ||
            memcmp(r.prev_hash, prev, BV_AUDIT_HASH_LEN) != 0) {
            bad_seq = r.seq;
            snprintf(bad_id, sizeof(bad_id), "%s", id != NULL ? id : "");
            bad_link_len =
                r.prev_hash != NULL && r.prev_hash_len == BV_AUDIT_HASH_LEN ? BV_AUDIT_HASH_LEN : 0;
            if (bad_link_len > 0)
                memcpy(bad_link, r.prev_hash, bad_link_len);
            break;
        }
        if ((rc = bv_audit_hash_record(ctx, &scratch, &r, calc)) != 0)
            goto out;
        if (stored == NULL || hl != BV_AUDIT_HASH_LEN || memcmp(stored, calc, BV_AUDIT_HASH_LEN) != 0) {
            fail(res, BV_AUDIT_ALTERED, r.seq, id,
                 "record seq %lld id %s was altered (its hash does not match its content)", (long long)r.seq,
                 id != NULL ? id : "?");
            break;
        }
        memcpy(prev, calc, BV_AUDIT_HASH_LEN);
        res->n_records++;
        res->head_seq = r.seq;
        expected++;
    }
    bv_stmt_reset(s);
    if (step < 0) {
        rc = step;
        goto out;
    }
    if (bad_seq > 0) {
        int64_t linked = 0;
        if (bad_link_len > 0 && (rc = classify_link(tx, bad_link, bad_link_len, &linked)) != 0)
            goto out;
        if (linked > 0)
            fail(res, BV_AUDIT_REORDERED, bad_seq, bad_id,
                 "record seq %lld id %s is out of order (its prev_hash is the hash of seq %lld, not of seq "
                 "%lld)",
                 (long long)bad_seq, bad_id, (long long)linked, (long long)(bad_seq - 1));
        else
            fail(res, BV_AUDIT_INSERTED, bad_seq, bad_id,
                 "record seq %lld id %s does not belong to the chain (its prev_hash links to no record)",
                 (long long)bad_seq, bad_id);
    }
    memcpy(w->head_hash, prev, sizeof(prev));
    rc = 0;
out:
    bv_buf_free(&scratch);
    EVP_MD_CTX_free(ctx);
    return rc;
}

/* ---- pass 2: checkpoints ---- */

#define CP_PAGE 256

typedef struct {
    int64_t seq, time;
    unsigned char hash[BV_AUDIT_HASH_LEN];
    int hash_ok; /* stored hash is 32 bytes */
    char kid[64];
    unsigned char sig[512];
    size_t sig_len;
    int chain_present; /* audit_log has this seq */
    unsigned char chain_hash[BV_AUDIT_HASH_LEN];
    char chain_id[BV_UUID_STR_LEN + 1];
} cp_row_t;

typedef struct {
    int64_t after;
    size_t n;
    cp_row_t *rows; /* CP_PAGE */
} cp_page_t;

static int cp_page_job(bv_tx_t *tx, void *arg)
{
    cp_page_t *p = arg;
    int step;
    bv_stmt_t *s = bv_tx_prepare(tx, "SELECT c.seq, c.hash, c.time, c.kid, c.signature, l.hash, l.id "
                                     "FROM audit_checkpoints c LEFT JOIN audit_log l ON l.seq = c.seq "
                                     "WHERE c.seq > ? ORDER BY c.seq LIMIT 256");
    p->n = 0;
    if (s == NULL)
        return BV_EIO;
    bv_stmt_bind_int64(s, 1, p->after);
    while (p->n < CP_PAGE && (step = bv_stmt_step(s)) == BV_ROW) {
        cp_row_t *c = &p->rows[p->n++];
        size_t len = 0;
        const void *b;
        const char *t;
        memset(c, 0, sizeof(*c));
        c->seq = bv_stmt_int64(s, 0);
        b = bv_stmt_blob(s, 1, &len);
        if (b != NULL && len == BV_AUDIT_HASH_LEN) {
            memcpy(c->hash, b, len);
            c->hash_ok = 1;
        }
        c->time = bv_stmt_int64(s, 2);
        t = bv_stmt_text(s, 3);
        snprintf(c->kid, sizeof(c->kid), "%s", t != NULL ? t : "");
        b = bv_stmt_blob(s, 4, &len);
        if (b != NULL && len <= sizeof(c->sig)) {
            memcpy(c->sig, b, len);
            c->sig_len = len;
        }
        if (!bv_stmt_is_null(s, 5)) {
            b = bv_stmt_blob(s, 5, &len);
            c->chain_present = 1;
            if (b != NULL && len == BV_AUDIT_HASH_LEN)
                memcpy(c->chain_hash, b, len);
            t = bv_stmt_text(s, 6);
            snprintf(c->chain_id, sizeof(c->chain_id), "%s", t != NULL ? t : "");
        }
    }
    bv_stmt_reset(s);
    return step < 0 ? step : 0;
}

/* Checks checkpoints with seq < limit (the seq of the chain's first fault, or INT64_MAX).
 * On a fault fills res and returns 0 with res->ok = 0. */
static int check_checkpoints(bv_store_t *st, bv_keys_t *keys, int64_t limit, const walk_t *w,
                             bv_audit_verify_result_t *res)
{
    int rc = 0;
    cp_page_t page = {.after = 0};
    bv_buf_t msg = {0};
    int64_t last_good = 0; /* seq of the last checkpoint that matched the chain */
    bv_audit_verify_result_t found = *res;

    found.ok = 1;
    if ((page.rows = calloc(CP_PAGE, sizeof(cp_row_t))) == NULL)
        return BV_ENOMEM;
    for (;;) {
        if ((rc = bv_store_run_tx(st, 0, cp_page_job, &page)) != 0)
            goto out;
        if (page.n == 0)
            break;
        for (size_t i = 0; i < page.n; i++) {
            cp_row_t *c = &page.rows[i];
            page.after = c->seq;
            if (c->seq >= limit)
                goto done;
            if (keys == NULL) {
                rc = BV_EKEYSTORE;
                goto out;
            }
            if (!c->hash_ok || c->sig_len == 0 || c->seq <= 0 ||
                (rc = bv_audit_encode_checkpoint(&msg, c->seq, c->hash, c->time)) != 0 ||
                bv_keys_verify(keys, c->kid, msg.data, msg.len, c->sig, c->sig_len) != 0) {
                if (rc == BV_ENOMEM)
                    goto out;
                rc = 0;
                fail(&found, BV_AUDIT_BAD_CHECKPOINT, c->seq, c->chain_id,
                     "checkpoint at seq %lld has an invalid signature (kid %s)", (long long)c->seq, c->kid);
                goto done;
            }
            res->n_checkpoints++;
            if (!c->chain_present || c->seq > w->res->head_seq) {
                fail(&found, BV_AUDIT_REMOVED, w->res->head_seq + 1, "",
                     "records after seq %lld were removed (a signed checkpoint covers seq %lld)",
                     (long long)w->res->head_seq, (long long)c->seq);
                goto done;
            }
            if (memcmp(c->chain_hash, c->hash, BV_AUDIT_HASH_LEN) != 0) {
                fail(&found, BV_AUDIT_ALTERED, c->seq, c->chain_id,
                     "the chain was rewritten: its hash at seq %lld differs from the signed checkpoint "
                     "(a record in seq %lld..%lld was altered and the chain rehashed)",
                     (long long)c->seq, (long long)(last_good + 1), (long long)c->seq);
                goto done;
            }
            last_good = c->seq;
        }
        if (page.n < CP_PAGE)
            break;
    }
done:
    if (!found.ok) {
        found.n_records = res->n_records;
        found.n_checkpoints = res->n_checkpoints;
        *res = found;
    }
    rc = 0;
out:
    bv_buf_free(&msg);
    free(page.rows);
    return rc;
}

int bv_audit_verify(bv_store_t *st, bv_keys_t *keys, bv_audit_verify_result_t *out)
{
    int rc;
    walk_t w = {.res = out};
    memset(out, 0, sizeof(*out));
    out->ok = 1;
    if ((rc = bv_store_run_tx(st, 0, walk_job, &w)) != 0)
        return rc;
    if (out->n_records > 0)
        bv_hex(w.head_hash, BV_AUDIT_HASH_LEN, out->head_hash);
    /* a checkpoint fault below the chain's first fault comes first */
    return check_checkpoints(st, keys, out->ok ? INT64_MAX : out->seq, &w, out);
}

/* ---- checkpoints ---- */

typedef struct {
    int64_t seq, last_cp;
    unsigned char hash[BV_AUDIT_HASH_LEN];
} head_t;

static int head_job(bv_tx_t *tx, void *arg)
{
    head_t *h = arg;
    int step;
    bv_stmt_t *s = bv_tx_prepare(tx, "SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1");
    if (s == NULL)
        return BV_EIO;
    h->seq = 0;
    step = bv_stmt_step(s);
    if (step == BV_ROW) {
        size_t len = 0;
        const void *b = bv_stmt_blob(s, 1, &len);
        h->seq = bv_stmt_int64(s, 0);
        if (b == NULL || len != BV_AUDIT_HASH_LEN) {
            bv_stmt_reset(s);
            return BV_EINTEGRITY;
        }
        memcpy(h->hash, b, len);
    }
    bv_stmt_reset(s);
    if (step < 0)
        return step;
    if ((s = bv_tx_prepare(tx, "SELECT COALESCE(MAX(seq), 0) FROM audit_checkpoints")) == NULL)
        return BV_EIO;
    step = bv_stmt_step(s);
    h->last_cp = step == BV_ROW ? bv_stmt_int64(s, 0) : 0;
    bv_stmt_reset(s);
    return step < 0 ? step : 0;
}

int bv_audit_head(bv_store_t *st, int64_t *seq_out, int64_t *last_checkpoint_out)
{
    head_t h = {0};
    int rc = bv_store_run_tx(st, 0, head_job, &h);
    if (rc != 0)
        return rc;
    if (seq_out != NULL)
        *seq_out = h.seq;
    if (last_checkpoint_out != NULL)
        *last_checkpoint_out = h.last_cp;
    return 0;
}

typedef struct {
    const head_t *head;
    int64_t time;
    const char *kid;
    const bv_buf_t *sig;
} cp_insert_t;

static int cp_insert_job(bv_tx_t *tx, void *arg)
{
    cp_insert_t *c = arg;
    int step;
    size_t len = 0;
    const void *b;
    bv_stmt_t *s = bv_tx_prepare(tx, "SELECT hash FROM audit_log WHERE seq = ?");
    if (s == NULL)
        return BV_EIO;
    /* the head was read in another snapshot: it must still be there, unchanged */
    bv_stmt_bind_int64(s, 1, c->head->seq);
    step = bv_stmt_step(s);
    b = step == BV_ROW ? bv_stmt_blob(s, 0, &len) : NULL;
    if (b == NULL || len != BV_AUDIT_HASH_LEN || memcmp(b, c->head->hash, len) != 0) {
        bv_stmt_reset(s);
        return step < 0 ? step : BV_EINTEGRITY;
    }
    bv_stmt_reset(s);
    s = bv_tx_prepare(tx, "INSERT INTO audit_checkpoints (seq, hash, time, kid, alg, signature) "
                          "VALUES (?,?,?,?,'ES256',?) ON CONFLICT (seq) DO NOTHING");
    if (s == NULL)
        return BV_EIO;
    bv_stmt_bind_int64(s, 1, c->head->seq);
    bv_stmt_bind_blob(s, 2, c->head->hash, BV_AUDIT_HASH_LEN);
    bv_stmt_bind_int64(s, 3, c->time);
    bv_stmt_bind_text(s, 4, c->kid, -1);
    bv_stmt_bind_blob(s, 5, c->sig->data, c->sig->len);
    step = bv_stmt_step(s);
    bv_stmt_reset(s);
    return step == BV_DONE ? 0 : (step < 0 ? step : BV_EIO);
}

int bv_audit_checkpoint_ex(bv_store_t *st, bv_keys_t *keys, int64_t *seq_out)
{
    int rc;
    head_t h = {0};
    bv_buf_t msg = {0}, sig = {0};
    char kid[64] = "";
    cp_insert_t ins;

    if (seq_out != NULL)
        *seq_out = 0;
    if (st == NULL || keys == NULL)
        return BV_EKEYSTORE;
    if ((rc = bv_store_run_tx(st, 0, head_job, &h)) != 0)
        goto out;
    if (seq_out != NULL)
        *seq_out = h.seq;
    if (h.seq == 0 || h.seq == h.last_cp)
        goto out; /* nothing new to sign */
    ins.head = &h;
    ins.time = bv_now_us();
    if ((rc = bv_audit_encode_checkpoint(&msg, h.seq, h.hash, ins.time)) != 0)
        goto out;
    if ((rc = bv_keys_sign(keys, "ES256", msg.data, msg.len, &sig, kid)) != 0) {
        bv_log_error("audit checkpoint: signing failed", "\"error\":\"%s\"", bv_err_name(rc));
        goto out;
    }
    ins.kid = kid;
    ins.sig = &sig;
    if ((rc = bv_store_run_tx(st, 1, cp_insert_job, &ins)) != 0) {
        bv_log_error("audit checkpoint: store failed", "\"seq\":%lld,\"error\":\"%s\"", (long long)h.seq,
                     bv_err_name(rc));
        goto out;
    }
    {
        char kid_esc[128];
        bv_json_escape(kid_esc, sizeof(kid_esc), kid);
        bv_log_info("audit checkpoint", "\"seq\":%lld,\"kid\":\"%s\"", (long long)h.seq, kid_esc);
    }
out:
    bv_buf_free(&msg);
    bv_buf_free(&sig);
    return rc;
}

int bv_audit_checkpoint(bv_store_t *st, bv_keys_t *keys)
{
    return bv_audit_checkpoint_ex(st, keys, NULL);
}
