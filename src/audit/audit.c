/* The audit chain: appending records (docs/audit.md).
 *
 * Each record's hash is SHA-256 over a length-prefixed encoding of all its columns,
 * prev_hash included (see encode_record), so editing, removing, reordering or inserting a
 * record breaks the chain. Appends run inside the caller's write job on the single writer
 * thread, which serialises them; the head is read in the same transaction, so a job rolled
 * back to its savepoint takes its record with it and the next append reuses its seq. */
#include "audit/audit_internal.h"

#include <ctype.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"

/* ---- hashing ---- */

static EVP_MD *g_sha256;
static pthread_once_t g_sha256_once = PTHREAD_ONCE_INIT;

static void fetch_sha256(void)
{
    g_sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
}

const EVP_MD *bv_audit_sha256(void)
{
    pthread_once(&g_sha256_once, fetch_sha256);
    return g_sha256;
}

static int put_u32(bv_buf_t *b, uint32_t v)
{
    unsigned char p[4] = {(unsigned char)(v >> 24), (unsigned char)(v >> 16), (unsigned char)(v >> 8),
                          (unsigned char)v};
    return bv_buf_append(b, p, sizeof(p));
}

static int put_u64(bv_buf_t *b, uint64_t v)
{
    unsigned char p[8];
    for (int i = 0; i < 8; i++)
        p[i] = (unsigned char)(v >> (56 - 8 * i));
    return bv_buf_append(b, p, sizeof(p));
}

/* A field: u32 big-endian length then the bytes; SQL NULL is the length 0xffffffff with no
 * bytes, so NULL and "" differ. */
static int put_field(bv_buf_t *b, const void *p, size_t len, int is_null)
{
    int rc;
    if (is_null)
        return put_u32(b, 0xffffffffu);
    if (len >= 0xffffffffu)
        return BV_EINVALID;
    if ((rc = put_u32(b, (uint32_t)len)) != 0)
        return rc;
    return len > 0 ? bv_buf_append(b, p, len) : 0;
}

static int put_str(bv_buf_t *b, const char *s)
{
    return put_field(b, s, s != NULL ? strlen(s) : 0, s == NULL);
}

int bv_audit_encode_record(bv_buf_t *b, const bv_audit_row_t *r)
{
    int rc = 0;
    bv_buf_reset(b);
    if ((rc = bv_buf_append(b, BV_AUDIT_RECORD_TAG, 8)) != 0 || (rc = put_u64(b, (uint64_t)r->seq)) != 0 ||
        (rc = put_str(b, r->id)) != 0 || (rc = put_u64(b, (uint64_t)r->time)) != 0 ||
        (rc = put_str(b, r->actor)) != 0 || (rc = put_str(b, r->action)) != 0 ||
        (rc = put_str(b, r->resource)) != 0 || (rc = put_str(b, r->outcome)) != 0 ||
        (rc = put_str(b, r->source_ip)) != 0 || (rc = put_str(b, r->request_id)) != 0 ||
        (rc = put_field(b, r->details, r->details_len, r->details == NULL)) != 0 ||
        (rc = put_field(b, r->prev_hash, r->prev_hash_len, r->prev_hash == NULL)) != 0)
        return rc;
    return 0;
}

int bv_audit_hash_record(EVP_MD_CTX *ctx, bv_buf_t *scratch, const bv_audit_row_t *r,
                         unsigned char out[BV_AUDIT_HASH_LEN])
{
    unsigned int n = 0;
    int rc = bv_audit_encode_record(scratch, r);
    if (rc != 0)
        return rc;
    if (EVP_DigestInit_ex2(ctx, bv_audit_sha256(), NULL) != 1 ||
        EVP_DigestUpdate(ctx, scratch->data, scratch->len) != 1 || EVP_DigestFinal_ex(ctx, out, &n) != 1 ||
        n != BV_AUDIT_HASH_LEN)
        return BV_ECRYPTO;
    return 0;
}

int bv_audit_encode_checkpoint(bv_buf_t *b, int64_t seq, const unsigned char hash[BV_AUDIT_HASH_LEN],
                               int64_t time_us)
{
    int rc;
    bv_buf_reset(b);
    if ((rc = bv_buf_append(b, BV_AUDIT_CHECKPOINT_TAG, 8)) != 0 || (rc = put_u64(b, (uint64_t)seq)) != 0 ||
        (rc = put_field(b, hash, BV_AUDIT_HASH_LEN, 0)) != 0 || (rc = put_u64(b, (uint64_t)time_us)) != 0)
        return rc;
    return 0;
}

/* ---- what may be recorded ---- */

/* Words that mark a key as secret wherever they appear inside it (long enough not to
 * occur by accident in innocent names). */
static const char *const secret_substrings[] = {
    "password", "passwd",  "passphrase", "secret",      "token", "authorization", "cookie", "credential",
    "apikey",   "api_key", "privatekey", "private_key", NULL,
};
/* Short words that mark a key as secret when they are a whole word of it ("otp",
 * "otp_code", "cardPin", "cvv2"), so "shipping" or "company" stay allowed. */
static const char *const secret_words[] = {
    "otp", "totp", "code", "pin", "pan", "cvv", "cvc", "cvv2", "cvc2", "pwd", "pass", "seed", NULL,
};

static int word_is_secret(const char *w, size_t n)
{
    for (const char *const *s = secret_words; *s != NULL; s++) {
        size_t sl = strlen(*s);
        if (n == sl && memcmp(w, *s, n) == 0)
            return 1;
        if (n == sl + 1 && w[n - 1] == 's' && memcmp(w, *s, sl) == 0) /* plural: "codes", "pins" */
            return 1;
    }
    return 0;
}

/* 1 if the object key looks like it names a secret. */
int bv_audit_key_is_secret(const char *key)
{
    char low[256];
    size_t n = strlen(key);
    if (n >= sizeof(low))
        return 1; /* absurdly long keys are not worth the risk */
    for (size_t i = 0; i <= n; i++)
        low[i] = (char)tolower((unsigned char)key[i]);
    for (const char *const *s = secret_substrings; *s != NULL; s++)
        if (strstr(low, *s) != NULL)
            return 1;
    /* split into words at non-alphanumerics and at camelCase boundaries ("cardPin") */
    size_t start = 0;
    for (size_t i = 0; i <= n; i++) {
        int boundary = (i == n) || !isalnum((unsigned char)key[i]) ||
                       (i > start && isupper((unsigned char)key[i]) && islower((unsigned char)key[i - 1]));
        if (!boundary)
            continue;
        if (i > start && word_is_secret(low + start, i - start))
            return 1;
        start = isalnum((unsigned char)key[i]) ? i : i + 1;
    }
    return 0;
}

static int check_value(const json_t *v, int depth)
{
    const char *key;
    json_t *child;
    size_t i;
    if (depth > 32)
        return BV_EINVALID;
    if (json_is_object(v)) {
        json_object_foreach((json_t *)v, key, child)
        {
            if (bv_audit_key_is_secret(key))
                return BV_EINVALID;
            if (check_value(child, depth + 1) != 0)
                return BV_EINVALID;
        }
    } else if (json_is_array(v)) {
        json_array_foreach(v, i, child)
        {
            if (check_value(child, depth + 1) != 0)
                return BV_EINVALID;
        }
    }
    return 0;
}

/* bv_audit_key_is_secret with a small per-thread memory of keys found harmless (hot paths
 * pass the same few keys again and again). */
static int key_is_secret_cached(const char *key, size_t n)
{
    static _Thread_local char safe[16][32];
    static _Thread_local unsigned next;
    if (n < sizeof(safe[0]))
        for (int i = 0; i < 16; i++)
            if (safe[i][0] != '\0' && memcmp(safe[i], key, n + 1) == 0)
                return 0;
    if (bv_audit_key_is_secret(key))
        return 1;
    if (n < sizeof(safe[0]))
        memcpy(safe[next++ % 16], key, n + 1);
    return 0;
}

/* details_json: a flat object of string values in canonical form (keys strictly
 * ascending, no whitespace), no secret-looking key. 0 or BV_EINVALID. */
static int check_flat_json(const char *s)
{
    char prev[128] = "", key[128];
    const char *p = s;
    if (*p++ != '{')
        return BV_EINVALID;
    if (*p == '}')
        return p[1] == '\0' ? 0 : BV_EINVALID;
    for (;;) {
        for (int part = 0; part < 2; part++) { /* the key, then its value */
            size_t n = 0;
            if (*p++ != '"')
                return BV_EINVALID;
            while (*p != '"') {
                if (*p == '\0' || (unsigned char)*p < 0x20)
                    return BV_EINVALID;
                if (*p == '\\' && *++p == '\0')
                    return BV_EINVALID;
                if (part == 0) {
                    if (n + 1 >= sizeof(key))
                        return BV_EINVALID; /* no key is that long */
                    key[n++] = *p;
                }
                p++;
            }
            p++;
            if (part == 0) {
                key[n] = '\0';
                if (*p++ != ':' || strcmp(key, prev) <= 0 || key_is_secret_cached(key, n))
                    return BV_EINVALID;
                memcpy(prev, key, n + 1);
            }
        }
        if (*p == '}')
            return p[1] == '\0' ? 0 : BV_EINVALID;
        if (*p++ != ',')
            return BV_EINVALID;
    }
}

int bv_audit_check_details(const json_t *details)
{
    if (details == NULL)
        return 0;
    if (!json_is_object(details))
        return BV_EINVALID;
    return check_value(details, 0);
}

static int utf8_valid(const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    while (*p) {
        unsigned c = *p;
        int n;
        if (c < 0x80) {
            if (c < 0x20)
                return 0; /* control characters have no business in these fields */
            p++;
            continue;
        } else if ((c & 0xe0) == 0xc0 && c >= 0xc2)
            n = 1;
        else if ((c & 0xf0) == 0xe0)
            n = 2;
        else if ((c & 0xf8) == 0xf0 && c <= 0xf4)
            n = 3;
        else
            return 0;
        for (int i = 1; i <= n; i++)
            if ((p[i] & 0xc0) != 0x80)
                return 0;
        p += n + 1;
    }
    return 1;
}

static int text_ok(const char *s, size_t max, int required)
{
    if (s == NULL)
        return !required;
    size_t n = strlen(s);
    if (n > max || (required && n == 0))
        return 0;
    return utf8_valid(s);
}

static int outcome_ok(const char *o)
{
    static const char *const outcomes[] = {"success", "denied", "invalid", "failure", NULL};
    if (o == NULL)
        return 0;
    for (const char *const *p = outcomes; *p != NULL; p++)
        if (strcmp(o, *p) == 0)
            return 1;
    return 0;
}

int bv_audit_event_validate(const bv_audit_event_t *ev)
{
    if (ev == NULL || !text_ok(ev->actor, BV_AUDIT_MAX_ACTOR, 1) ||
        !text_ok(ev->action, BV_AUDIT_MAX_ACTION, 1) || !text_ok(ev->resource, BV_AUDIT_MAX_RESOURCE, 0) ||
        !outcome_ok(ev->outcome) || !text_ok(ev->source_ip, BV_AUDIT_MAX_SOURCE_IP, 0) ||
        !text_ok(ev->request_id, BV_AUDIT_MAX_REQUEST_ID, 0))
        return BV_EINVALID;
    if (ev->details_json != NULL)
        return ev->details == NULL && utf8_valid(ev->details_json) ? check_flat_json(ev->details_json) : BV_EINVALID;
    return bv_audit_check_details(ev->details);
}

/* ---- appending ---- */

/* Per-thread hashing state, so an append allocates nothing for hashing (appends run on
 * the writer thread; tests and tools may run several stores, hence per thread). */
typedef struct {
    EVP_MD_CTX *ctx;
    bv_buf_t enc;
} hasher_t;

static pthread_key_t g_hasher_key;
static pthread_once_t g_hasher_once = PTHREAD_ONCE_INIT;

static void hasher_free(void *p)
{
    hasher_t *h = p;
    if (h == NULL)
        return;
    EVP_MD_CTX_free(h->ctx);
    bv_buf_free(&h->enc);
    free(h);
}

static void hasher_key_init(void)
{
    if (pthread_key_create(&g_hasher_key, hasher_free) != 0)
        abort();
}

static hasher_t *hasher_get(void)
{
    hasher_t *h;
    pthread_once(&g_hasher_once, hasher_key_init);
    if ((h = pthread_getspecific(g_hasher_key)) != NULL)
        return h;
    if ((h = calloc(1, sizeof(*h))) == NULL || (h->ctx = EVP_MD_CTX_new()) == NULL ||
        pthread_setspecific(g_hasher_key, h) != 0) {
        hasher_free(h);
        return NULL;
    }
    return h;
}

int bv_audit_append_ex(bv_tx_t *tx, const bv_audit_event_t *ev, int64_t *seq_out,
                       char id_out[BV_UUID_STR_LEN + 1])
{
    int rc = BV_EINTERNAL, step;
    char *details = NULL;
    hasher_t *hs;
    bv_stmt_t *head, *ins;
    bv_audit_row_t r = {0};
    char id[BV_UUID_STR_LEN + 1];
    unsigned char prev[BV_AUDIT_HASH_LEN] = {0}, hash[BV_AUDIT_HASH_LEN];

    if (tx == NULL || !bv_tx_is_write(tx)) {
        bv_log_error("audit append outside a write job", NULL);
        return BV_EINTERNAL;
    }
    if ((rc = bv_audit_event_validate(ev)) != 0) {
        bv_log_warn("audit event rejected", "\"action\":\"%.64s\"",
                    ev != NULL && ev->action != NULL && utf8_valid(ev->action) && !strpbrk(ev->action, "\"\\")
                        ? ev->action
                        : "?");
        return rc;
    }
    rc = BV_ENOMEM;
    details = ev->details_json != NULL ? (char *)ev->details_json
              : ev->details != NULL    ? json_dumps(ev->details, JSON_SORT_KEYS | JSON_COMPACT)
                                       : strdup("{}");
    if (details == NULL)
        goto out;
    if (strlen(details) > BV_AUDIT_MAX_DETAILS) {
        rc = BV_EINVALID;
        goto out;
    }

    rc = BV_EIO;
    if ((head = bv_tx_prepare(tx, "SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1")) == NULL)
        goto out;
    step = bv_stmt_step(head);
    if (step == BV_ROW) {
        size_t hl = 0;
        const void *h = bv_stmt_blob(head, 1, &hl);
        r.seq = bv_stmt_int64(head, 0) + 1;
        if (h == NULL || hl != BV_AUDIT_HASH_LEN) {
            bv_stmt_reset(head);
            bv_log_error("audit chain head is malformed", "\"seq\":%lld", (long long)(r.seq - 1));
            rc = BV_EINTEGRITY;
            goto out;
        }
        memcpy(prev, h, BV_AUDIT_HASH_LEN);
    } else if (step == BV_DONE) {
        r.seq = 1;
    } else {
        rc = step;
        bv_stmt_reset(head);
        goto out;
    }
    bv_stmt_reset(head);

    bv_uuid7(id);
    r.id = id;
    r.time = bv_now_us();
    r.actor = ev->actor;
    r.action = ev->action;
    r.resource = ev->resource;
    r.outcome = ev->outcome;
    r.source_ip = ev->source_ip;
    r.request_id = ev->request_id;
    r.details = details;
    r.details_len = strlen(details);
    r.prev_hash = prev;
    r.prev_hash_len = BV_AUDIT_HASH_LEN;
    rc = BV_ENOMEM;
    if ((hs = hasher_get()) == NULL)
        goto out;
    if ((rc = bv_audit_hash_record(hs->ctx, &hs->enc, &r, hash)) != 0)
        goto out;

    rc = BV_EIO;
    ins = bv_tx_prepare(tx,
                        "INSERT OR FAIL INTO audit_log (seq, id, time, actor, action, resource, outcome, source_ip, "
                        "request_id, details, prev_hash, hash) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)");
    if (ins == NULL)
        goto out;
    bv_stmt_bind_int64(ins, 1, r.seq);
    /* every value outlives the step below */
    bv_stmt_bind_text_ref(ins, 2, r.id, -1);
    bv_stmt_bind_int64(ins, 3, r.time);
    bv_stmt_bind_text_ref(ins, 4, r.actor, -1);
    bv_stmt_bind_text_ref(ins, 5, r.action, -1);
    bv_stmt_bind_text_ref(ins, 6, r.resource, -1);
    bv_stmt_bind_text_ref(ins, 7, r.outcome, -1);
    bv_stmt_bind_text_ref(ins, 8, r.source_ip, -1);
    bv_stmt_bind_text_ref(ins, 9, r.request_id, -1);
    bv_stmt_bind_text_ref(ins, 10, r.details, (int)r.details_len);
    bv_stmt_bind_blob(ins, 11, prev, BV_AUDIT_HASH_LEN);
    bv_stmt_bind_blob(ins, 12, hash, BV_AUDIT_HASH_LEN);
    step = bv_stmt_step(ins);
    bv_stmt_reset(ins);
    if (step != BV_DONE) {
        rc = step < 0 ? step : BV_EIO;
        goto out;
    }
    if (seq_out != NULL)
        *seq_out = r.seq;
    if (id_out != NULL)
        memcpy(id_out, id, sizeof(id));
    rc = 0;
out:
    if (details != ev->details_json)
        free(details);
    return rc;
}

int bv_audit_append(bv_tx_t *tx, const bv_audit_event_t *ev)
{
    return bv_audit_append_ex(tx, ev, NULL, NULL);
}

static int record_job(bv_tx_t *tx, void *arg)
{
    return bv_audit_append(tx, arg);
}

int bv_audit_record(bv_store_t *st, const bv_audit_event_t *ev)
{
    int rc = bv_audit_event_validate(ev); /* fail fast, without a trip to the writer */
    if (rc != 0)
        return rc;
    return bv_store_run_tx(st, 1, record_job, (void *)ev);
}
