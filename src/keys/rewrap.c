/* Registered encrypted columns and `rewrap`: re-encrypting stored values under the newest
 * data-key version of their purpose, online, page by page. Each page is read in a read
 * snapshot, re-encrypted on the calling thread, and written back in one write job with a
 * compare-and-set on the old ciphertext, so a concurrent update of the same value wins and
 * the writer is never held for long. */
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/errors.h"
#include "base/log.h"
#include "keys/keys_internal.h"

#define IDENT_MAX 63

struct field_entry {
    char table[IDENT_MAX + 1];
    char id_column[IDENT_MAX + 1];
    char column[IDENT_MAX + 1];
    char purpose[BV_KEYS_PURPOSE_MAX + 1];
    /* SQL built once from the (validated) identifiers; kept for the life of k because the
     * store caches prepared statements by their text. */
    char sql_first[512];
    char sql_after[512];
    char sql_update[512];
    field_entry_t *next;
};

static int ident_valid(const char *s)
{
    size_t n = s != NULL ? strlen(s) : 0;
    if (n == 0 || n > IDENT_MAX)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_'))
            return 0;
    }
    return 1;
}

int bv_keys_register_field(bv_keys_t *k, const char *table, const char *id_column, const char *column,
                           const char *purpose)
{
    if (k == NULL || !ident_valid(table) || !ident_valid(id_column) || !ident_valid(column) ||
        !bv_keys_purpose_valid(purpose))
        return BV_EINVALID;
    field_entry_t *f = calloc(1, sizeof(*f));
    if (f == NULL)
        return BV_ENOMEM;
    snprintf(f->table, sizeof(f->table), "%s", table);
    snprintf(f->id_column, sizeof(f->id_column), "%s", id_column);
    snprintf(f->column, sizeof(f->column), "%s", column);
    snprintf(f->purpose, sizeof(f->purpose), "%s", purpose);
    snprintf(f->sql_first, sizeof(f->sql_first),
             "SELECT %s, %s FROM %s WHERE %s IS NOT NULL ORDER BY %s LIMIT ?", id_column, column, table,
             column, id_column);
    snprintf(f->sql_after, sizeof(f->sql_after),
             "SELECT %s, %s FROM %s WHERE %s IS NOT NULL AND %s > ? ORDER BY %s LIMIT ?", id_column, column,
             table, column, id_column, id_column);
    snprintf(f->sql_update, sizeof(f->sql_update), "UPDATE %s SET %s = ? WHERE %s = ? AND %s = ?", table,
             column, id_column, column);
    pthread_mutex_lock(&k->fields_lock);
    for (field_entry_t *e = k->fields; e != NULL; e = e->next) {
        if (strcmp(e->table, table) == 0 && strcmp(e->column, column) == 0) {
            pthread_mutex_unlock(&k->fields_lock);
            free(f);
            return strcmp(e->purpose, purpose) == 0 && strcmp(e->id_column, id_column) == 0 ? 0 : BV_EINVALID;
        }
    }
    field_entry_t **pp = &k->fields; /* keep registration order */
    while (*pp != NULL)
        pp = &(*pp)->next;
    *pp = f;
    pthread_mutex_unlock(&k->fields_lock);
    return 0;
}

void bv_keys_fields_free(bv_keys_t *k)
{
    while (k->fields != NULL) {
        field_entry_t *n = k->fields->next;
        free(k->fields);
        k->fields = n;
    }
}

typedef struct {
    char *id;
    bv_buf_t old_ct;
    bv_buf_t new_ct;
} row_t;

typedef struct {
    const field_entry_t *f;
    const char *after; /* NULL for the first page */
    int limit;
    row_t *rows;
    size_t n;
} page_t;

static void page_clear(page_t *p)
{
    for (size_t i = 0; i < p->n; i++) {
        free(p->rows[i].id);
        bv_buf_free(&p->rows[i].old_ct);
        bv_buf_free(&p->rows[i].new_ct);
    }
    p->n = 0;
}

static int tx_read_page(bv_tx_t *tx, void *varg)
{
    page_t *p = varg;
    bv_stmt_t *s = bv_tx_prepare(tx, p->after == NULL ? p->f->sql_first : p->f->sql_after);
    int rc, idx = 1;
    if (s == NULL)
        return BV_EIO;
    if (p->after != NULL)
        bv_stmt_bind_text(s, idx++, p->after, -1);
    bv_stmt_bind_int64(s, idx, p->limit);
    while ((rc = bv_stmt_step(s)) == BV_ROW) {
        const char *id = bv_stmt_text(s, 0);
        size_t len = 0;
        const void *blob = bv_stmt_blob(s, 1, &len);
        row_t *r = &p->rows[p->n];
        memset(r, 0, sizeof(*r));
        if (id == NULL || (r->id = strdup(id)) == NULL || bv_buf_append(&r->old_ct, blob, len) != 0) {
            free(r->id);
            bv_buf_free(&r->old_ct);
            rc = BV_ENOMEM;
            break;
        }
        p->n++;
    }
    bv_stmt_reset(s);
    return rc < 0 ? rc : 0;
}

typedef struct {
    const field_entry_t *f;
    page_t *page;
    uint64_t updated;
} apply_t;

static int tx_apply_page(bv_tx_t *tx, void *varg)
{
    apply_t *a = varg;
    a->updated = 0;
    for (size_t i = 0; i < a->page->n; i++) {
        row_t *r = &a->page->rows[i];
        if (r->new_ct.len == 0)
            continue;
        bv_stmt_t *s = bv_tx_prepare(tx, a->f->sql_update);
        if (s == NULL)
            return BV_EIO;
        bv_stmt_bind_blob(s, 1, r->new_ct.data, r->new_ct.len);
        bv_stmt_bind_text(s, 2, r->id, -1);
        bv_stmt_bind_blob(s, 3, r->old_ct.data, r->old_ct.len);
        int rc = bv_stmt_step(s);
        bv_stmt_reset(s);
        if (rc < 0)
            return rc;
        a->updated += (uint64_t)bv_tx_changes(tx);
    }
    return 0;
}

static int rewrap_field(bv_keys_t *k, const field_entry_t *f, int batch_rows, bv_keys_rewrap_stats_t *st)
{
    page_t page = {.f = f, .limit = batch_rows};
    char *after = NULL;
    bv_buf_t pt = {0};
    unsigned char key[BV_KEYS_KEY_LEN];
    int newest = 0, rc;
    if ((page.rows = calloc((size_t)batch_rows, sizeof(row_t))) == NULL)
        return BV_ENOMEM;
    for (;;) {
        page_clear(&page);
        page.after = after;
        if ((rc = bv_store_run_tx(k->store, 0, tx_read_page, &page)) != 0)
            break;
        if (page.n == 0)
            break;
        size_t todo = 0;
        for (size_t i = 0; i < page.n; i++) {
            row_t *r = &page.rows[i];
            char purpose[BV_KEYS_PURPOSE_MAX + 1];
            int version = 0;
            st->scanned++;
            if (newest == 0) { /* looked up once a value exists (no key is created for nothing) */
                if ((rc = bv_keys_dk_newest(k, "aead", f->purpose, &newest, key)) != 0)
                    goto out;
                OPENSSL_cleanse(key, sizeof(key));
            }
            if (bv_keys_blob_info(r->old_ct.data, r->old_ct.len, purpose, &version) == 0 &&
                strcmp(purpose, f->purpose) == 0 && version >= newest)
                continue; /* already under the newest version */
            bv_aad_t aad = {f->table, r->id, f->column};
            bv_buf_reset(&pt);
            rc = bv_keys_decrypt(k, &aad, r->old_ct.data, r->old_ct.len, &pt);
            if (rc == BV_EINTEGRITY) {
                bv_log_warn("rewrap: value does not decrypt, left as is",
                            "\"table\":\"%s\",\"column\":\"%s\",\"row\":\"%s\"", f->table, f->column, r->id);
                st->failed++;
                rc = 0;
                continue;
            }
            if (rc == 0)
                rc = bv_keys_encrypt(k, f->purpose, &aad, pt.data, pt.len, &r->new_ct);
            if (pt.data != NULL)
                OPENSSL_cleanse(pt.data, pt.cap);
            if (rc != 0)
                goto out;
            todo++;
        }
        if (todo > 0) {
            apply_t a = {f, &page, 0};
            if ((rc = bv_store_run_tx(k->store, 1, tx_apply_page, &a)) != 0)
                break;
            st->batches++;
            st->rewrapped += a.updated;
            st->skipped += todo - a.updated;
        }
        free(after);
        if ((after = strdup(page.rows[page.n - 1].id)) == NULL) {
            rc = BV_ENOMEM;
            break;
        }
        if (page.n < (size_t)batch_rows)
            break;
    }
out:
    page_clear(&page);
    free(page.rows);
    free(after);
    if (pt.data != NULL)
        OPENSSL_cleanse(pt.data, pt.cap);
    bv_buf_free(&pt);
    return rc;
}

int bv_keys_rewrap(bv_keys_t *k, int batch_rows, bv_keys_rewrap_stats_t *stats_out)
{
    bv_keys_rewrap_stats_t st = {0};
    int rc = 0;
    if (k == NULL)
        return BV_EINVALID;
    if (batch_rows <= 0)
        batch_rows = 256;
    if (batch_rows > 100000)
        batch_rows = 100000;
    /* Registrations happen at init; walk a snapshot of the list without holding the lock
     * across store calls (entries are never removed before close). */
    pthread_mutex_lock(&k->fields_lock);
    field_entry_t *first = k->fields;
    pthread_mutex_unlock(&k->fields_lock);
    for (field_entry_t *f = first; f != NULL; f = f->next) {
        st.fields++;
        if ((rc = rewrap_field(k, f, batch_rows, &st)) != 0) {
            bv_log_error("rewrap failed", "\"table\":\"%s\",\"column\":\"%s\",\"error\":\"%s\"", f->table,
                         f->column, bv_err_name(rc));
            break;
        }
    }
    bv_log_info("rewrap finished",
                "\"fields\":%llu,\"scanned\":%llu,\"rewrapped\":%llu,\"skipped\":%llu,\"failed\":%llu,"
                "\"batches\":%llu",
                (unsigned long long)st.fields, (unsigned long long)st.scanned,
                (unsigned long long)st.rewrapped, (unsigned long long)st.skipped,
                (unsigned long long)st.failed, (unsigned long long)st.batches);
    if (stats_out != NULL)
        *stats_out = st;
    return rc;
}
