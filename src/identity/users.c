/* Users and the password step of a login, over the storage port. */
#include <openssl/crypto.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "audit/audit.h"
#include "base/errors.h"
#include "base/log.h"
#include "identity/internal.h"

#define USER_COLS \
    "id, username, email, phone, display_name, status, created_at, updated_at, last_login_at, password_hash"

static void copy_col(bv_stmt_t *s, int col, char *out, size_t n)
{
    const char *v = bv_stmt_text(s, col);
    snprintf(out, n, "%s", v != NULL ? v : "");
}

/* Fills u from a row selected with USER_COLS; the PHC string goes to phc (may be NULL). */
static void row_to_user(bv_stmt_t *s, bv_identity_user_t *u, char *phc, size_t phc_len)
{
    memset(u, 0, sizeof(*u));
    copy_col(s, 0, u->id, sizeof(u->id));
    copy_col(s, 1, u->username, sizeof(u->username));
    copy_col(s, 2, u->email, sizeof(u->email));
    copy_col(s, 3, u->phone, sizeof(u->phone));
    copy_col(s, 4, u->display_name, sizeof(u->display_name));
    copy_col(s, 5, u->status, sizeof(u->status));
    u->created_at = bv_stmt_int64(s, 6);
    u->updated_at = bv_stmt_int64(s, 7);
    u->last_login_at = bv_stmt_is_null(s, 8) ? 0 : bv_stmt_int64(s, 8);
    if (phc != NULL)
        copy_col(s, 9, phc, phc_len);
}

static int status_valid(const char *s)
{
    return s != NULL && (strcmp(s, BV_IDENTITY_PENDING) == 0 || strcmp(s, BV_IDENTITY_ACTIVE) == 0 ||
                         strcmp(s, BV_IDENTITY_LOCKED) == 0 || strcmp(s, BV_IDENTITY_DISABLED) == 0);
}

json_t *bv_identity_user_json(const bv_identity_user_t *u)
{
    char c[32], up[32], ll[32];
    bv_time_format(u->created_at, c);
    bv_time_format(u->updated_at, up);
    if (u->last_login_at != 0)
        bv_time_format(u->last_login_at, ll);
    return json_pack("{s:s,s:s,s:s?,s:s?,s:s,s:s,s:s,s:s,s:s?}", "id", u->id, "username", u->username,
                     "email", u->email[0] ? u->email : NULL, "phone", u->phone[0] ? u->phone : NULL,
                     "display_name", u->display_name, "status", u->status, "created_at", c, "updated_at", up,
                     "last_login_at", u->last_login_at != 0 ? ll : NULL);
}

/* ---- create ---- */
typedef struct {
    const bv_identity_new_user_t *req;
    const char *username, *phc, *actor;
    bv_identity_user_t *out;
    const char *conflict_field;
} create_arg_t;

static int exists(bv_tx_t *tx, const char *sql, const char *v)
{
    bv_stmt_t *s = bv_tx_prepare(tx, sql);
    if (s == NULL)
        return BV_EIO;
    bv_stmt_bind_text(s, 1, v, -1);
    int rc = bv_stmt_step(s);
    bv_stmt_reset(s);
    return rc;
}

static int tx_create(bv_tx_t *tx, void *varg)
{
    create_arg_t *a = varg;
    const bv_identity_new_user_t *r = a->req;
    bv_identity_user_t *u = a->out;
    int64_t now = bv_now_us();
    int rc;
    if ((rc = exists(tx, "SELECT 1 FROM identity_users WHERE username = ?", a->username)) != BV_DONE) {
        a->conflict_field = "username";
        return rc == BV_ROW ? BV_ECONFLICT : rc;
    }
    if (r->email != NULL &&
        (rc = exists(tx, "SELECT 1 FROM identity_users WHERE email = ?", r->email)) != BV_DONE) {
        a->conflict_field = "email";
        return rc == BV_ROW ? BV_ECONFLICT : rc;
    }
    if (r->phone != NULL &&
        (rc = exists(tx, "SELECT 1 FROM identity_users WHERE phone = ?", r->phone)) != BV_DONE) {
        a->conflict_field = "phone";
        return rc == BV_ROW ? BV_ECONFLICT : rc;
    }
    memset(u, 0, sizeof(*u));
    bv_uuid7(u->id);
    snprintf(u->username, sizeof(u->username), "%s", a->username);
    snprintf(u->email, sizeof(u->email), "%s", r->email ? r->email : "");
    snprintf(u->phone, sizeof(u->phone), "%s", r->phone ? r->phone : "");
    snprintf(u->display_name, sizeof(u->display_name), "%s",
             r->display_name && r->display_name[0] ? r->display_name : a->username);
    snprintf(u->status, sizeof(u->status), "%s", r->status ? r->status : BV_IDENTITY_ACTIVE);
    u->created_at = u->updated_at = now;
    bv_stmt_t *s =
        bv_tx_prepare(tx, "INSERT INTO identity_users (id, username, email, phone, display_name, status, "
                          "password_hash, password_changed_at, created_at, updated_at) "
                          "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)");
    if (s == NULL)
        return BV_EIO;
    bv_stmt_bind_text(s, 1, u->id, -1);
    bv_stmt_bind_text(s, 2, u->username, -1);
    bv_stmt_bind_text(s, 3, r->email, -1);
    bv_stmt_bind_text(s, 4, r->phone, -1);
    bv_stmt_bind_text(s, 5, u->display_name, -1);
    bv_stmt_bind_text(s, 6, u->status, -1);
    bv_stmt_bind_text(s, 7, a->phc, -1);
    if (a->phc != NULL)
        bv_stmt_bind_int64(s, 8, now);
    else
        bv_stmt_bind_null(s, 8);
    bv_stmt_bind_int64(s, 9, now);
    bv_stmt_bind_int64(s, 10, now);
    rc = bv_stmt_step(s);
    bv_stmt_reset(s);
    if (rc == BV_ECONFLICT)
        a->conflict_field = "username";
    if (rc != BV_DONE)
        return rc < 0 ? rc : BV_EIO;
    char resource[64];
    snprintf(resource, sizeof(resource), "user:%s", u->id);
    json_t *d = json_pack("{s:s,s:s}", "username", u->username, "status", u->status);
    bv_audit_event_t ev = {.actor = a->actor,
                           .action = "identity.user.create",
                           .resource = resource,
                           .outcome = "success",
                           .details = d};
    rc = bv_audit_append(tx, &ev);
    json_decref(d);
    return rc;
}

int bv_identity_user_create(bv_identity_t *id, const bv_identity_new_user_t *req, const char *password,
                            size_t password_len, const char *actor, bv_identity_user_t *out,
                            const char **field_out)
{
    char username[BV_IDENTITY_USERNAME_MAX + 1], phc[BV_IDENTITY_PHC_MAX + 1];
    const char *field = NULL;
    int rc = BV_EINVALID;
    if (bv_identity_username_canonical(req->username, username) != 0) {
        field = "username";
        goto out;
    }
    if (req->email != NULL && !bv_identity_email_valid(req->email)) {
        field = "email";
        goto out;
    }
    if (req->phone != NULL && !bv_identity_phone_valid(req->phone)) {
        field = "phone";
        goto out;
    }
    if (req->display_name != NULL && strlen(req->display_name) > BV_IDENTITY_NAME_MAX) {
        field = "display_name";
        goto out;
    }
    if (req->status != NULL && !status_valid(req->status)) {
        field = "status";
        goto out;
    }
    if (password != NULL) {
        if (bv_identity_password_check(password, password_len, NULL) != 0) {
            field = "password";
            goto out;
        }
        if ((rc = bv_identity_password_hash(&id->opt.argon2, password, password_len, phc)) != 0)
            goto out;
    }
    create_arg_t a = {req, username, password != NULL ? phc : NULL, actor ? actor : "system", out, NULL};
    rc = bv_store_run_tx(id->store, 1, tx_create, &a);
    field = a.conflict_field;
out:
    OPENSSL_cleanse(phc, sizeof(phc));
    if (field_out != NULL)
        *field_out = rc == 0 ? NULL : field;
    return rc;
}

/* ---- read ---- */
typedef struct {
    const char *key;
    bv_identity_user_t *out;
    char *phc;
    size_t phc_len;
} get_arg_t;

static int tx_get_by(bv_tx_t *tx, void *varg, const char *sql)
{
    get_arg_t *a = varg;
    bv_stmt_t *s = bv_tx_prepare(tx, sql);
    if (s == NULL)
        return BV_EIO;
    bv_stmt_bind_text(s, 1, a->key, -1);
    int rc = bv_stmt_step(s);
    if (rc == BV_ROW)
        row_to_user(s, a->out, a->phc, a->phc_len);
    bv_stmt_reset(s);
    return rc == BV_ROW ? 0 : rc == BV_DONE ? BV_ENOTFOUND : rc;
}

static int tx_get_id(bv_tx_t *tx, void *varg)
{
    return tx_get_by(tx, varg, "SELECT " USER_COLS " FROM identity_users WHERE id = ?");
}

static int tx_get_username(bv_tx_t *tx, void *varg)
{
    return tx_get_by(tx, varg, "SELECT " USER_COLS " FROM identity_users WHERE username = ?");
}

int bv_identity_user_get(bv_identity_t *id, const char *user_id, bv_identity_user_t *out)
{
    if (user_id == NULL || !bv_uuid_valid(user_id))
        return BV_ENOTFOUND;
    get_arg_t a = {user_id, out, NULL, 0};
    return bv_store_run_tx(id->store, 0, tx_get_id, &a);
}

int bv_identity_user_find(bv_identity_t *id, const char *username, bv_identity_user_t *out)
{
    char canon[BV_IDENTITY_USERNAME_MAX + 1];
    if (bv_identity_username_canonical(username, canon) != 0)
        return BV_ENOTFOUND;
    get_arg_t a = {canon, out, NULL, 0};
    return bv_store_run_tx(id->store, 0, tx_get_username, &a);
}

typedef struct {
    const char *after;
    int limit;
    bv_identity_user_t *items;
    size_t n;
} list_arg_t;

static int tx_list(bv_tx_t *tx, void *varg)
{
    list_arg_t *a = varg;
    bv_stmt_t *s =
        bv_tx_prepare(tx, "SELECT " USER_COLS " FROM identity_users WHERE id > ? ORDER BY id LIMIT ?");
    int rc;
    if (s == NULL)
        return BV_EIO;
    a->n = 0;
    bv_stmt_bind_text(s, 1, a->after ? a->after : "", -1);
    bv_stmt_bind_int64(s, 2, a->limit);
    while ((rc = bv_stmt_step(s)) == BV_ROW && a->n < (size_t)a->limit)
        row_to_user(s, &a->items[a->n++], NULL, 0);
    bv_stmt_reset(s);
    return rc < 0 ? rc : 0;
}

int bv_identity_user_list(bv_identity_t *id, const char *after_id, int limit, bv_identity_user_t **items_out,
                          size_t *n_out)
{
    if (limit < 1 || limit > 10000)
        return BV_EINVALID;
    list_arg_t a = {after_id, limit, calloc((size_t)limit, sizeof(bv_identity_user_t)), 0};
    if (a.items == NULL)
        return BV_ENOMEM;
    int rc = bv_store_run_tx(id->store, 0, tx_list, &a);
    if (rc != 0) {
        free(a.items);
        return rc;
    }
    *items_out = a.items;
    *n_out = a.n;
    return 0;
}

/* ---- changes by operators ---- */
typedef struct {
    const char *user_id, *status, *phc, *actor, *action;
} change_arg_t;

static int clear_account_throttle(bv_tx_t *tx, const char *user_id)
{
    bv_stmt_t *s = bv_tx_prepare(tx, "DELETE FROM identity_throttle WHERE key = "
                                     "'account:' || (SELECT username FROM identity_users WHERE id = ?)");
    if (s == NULL)
        return BV_EIO;
    bv_stmt_bind_text(s, 1, user_id, -1);
    int rc = bv_stmt_step(s);
    bv_stmt_reset(s);
    return rc == BV_DONE ? 0 : rc;
}

static int tx_change(bv_tx_t *tx, void *varg)
{
    change_arg_t *a = varg;
    int64_t now = bv_now_us();
    bv_stmt_t *s;
    int rc;
    if (a->phc != NULL) {
        s = bv_tx_prepare(
            tx, "UPDATE identity_users SET password_hash = ?, password_changed_at = ?, updated_at = ? "
                "WHERE id = ?");
        if (s == NULL)
            return BV_EIO;
        bv_stmt_bind_text(s, 1, a->phc, -1);
        bv_stmt_bind_int64(s, 2, now);
        bv_stmt_bind_int64(s, 3, now);
        bv_stmt_bind_text(s, 4, a->user_id, -1);
    } else {
        s = bv_tx_prepare(tx, "UPDATE identity_users SET status = ?, updated_at = ? WHERE id = ?");
        if (s == NULL)
            return BV_EIO;
        bv_stmt_bind_text(s, 1, a->status, -1);
        bv_stmt_bind_int64(s, 2, now);
        bv_stmt_bind_text(s, 3, a->user_id, -1);
    }
    rc = bv_stmt_step(s);
    bv_stmt_reset(s);
    if (rc != BV_DONE)
        return rc < 0 ? rc : BV_EIO;
    if (bv_tx_changes(tx) == 0)
        return BV_ENOTFOUND;
    if ((a->phc != NULL || strcmp(a->status, BV_IDENTITY_ACTIVE) == 0) &&
        (rc = clear_account_throttle(tx, a->user_id)) != 0)
        return rc;
    char resource[64];
    snprintf(resource, sizeof(resource), "user:%s", a->user_id);
    json_t *d = a->status != NULL ? json_pack("{s:s}", "status", a->status) : NULL;
    bv_audit_event_t ev = {
        .actor = a->actor, .action = a->action, .resource = resource, .outcome = "success", .details = d};
    rc = bv_audit_append(tx, &ev);
    json_decref(d);
    return rc;
}

int bv_identity_user_set_status(bv_identity_t *id, const char *user_id, const char *status, const char *actor)
{
    if (!status_valid(status))
        return BV_EINVALID;
    if (user_id == NULL || !bv_uuid_valid(user_id))
        return BV_ENOTFOUND;
    change_arg_t a = {user_id, status, NULL, actor ? actor : "system", "identity.user.status"};
    return bv_store_run_tx(id->store, 1, tx_change, &a);
}

int bv_identity_user_set_password(bv_identity_t *id, const char *user_id, const char *password, size_t len,
                                  const char *actor)
{
    char phc[BV_IDENTITY_PHC_MAX + 1];
    int rc;
    if (user_id == NULL || !bv_uuid_valid(user_id))
        return BV_ENOTFOUND;
    if (bv_identity_password_check(password, len, NULL) != 0)
        return BV_EINVALID;
    if ((rc = bv_identity_password_hash(&id->opt.argon2, password, len, phc)) != 0)
        return rc;
    change_arg_t a = {user_id, NULL, phc, actor ? actor : "system", "identity.user.password_reset"};
    rc = bv_store_run_tx(id->store, 1, tx_change, &a);
    OPENSSL_cleanse(phc, sizeof(phc));
    return rc;
}

/* ---- login ---- */

static int throttle_load(bv_tx_t *tx, const char *key, bv_identity_throttle_t *t)
{
    bv_stmt_t *s = bv_tx_prepare(tx, "SELECT failures, last_failure_at, locked_until FROM identity_throttle "
                                     "WHERE key = ?");
    if (s == NULL)
        return BV_EIO;
    memset(t, 0, sizeof(*t));
    bv_stmt_bind_text(s, 1, key, -1);
    int rc = bv_stmt_step(s);
    if (rc == BV_ROW) {
        t->failures = bv_stmt_int64(s, 0);
        t->last_failure_at = bv_stmt_int64(s, 1);
        t->locked_until = bv_stmt_int64(s, 2);
    }
    bv_stmt_reset(s);
    return rc < 0 ? rc : 0;
}

static int throttle_store(bv_tx_t *tx, const char *key, const bv_identity_throttle_t *t)
{
    bv_stmt_t *s;
    if (t->failures <= 0 && t->locked_until == 0) {
        s = bv_tx_prepare(tx, "DELETE FROM identity_throttle WHERE key = ?");
        if (s == NULL)
            return BV_EIO;
        bv_stmt_bind_text(s, 1, key, -1);
    } else {
        s = bv_tx_prepare(tx,
                          "INSERT INTO identity_throttle (key, failures, last_failure_at, locked_until) "
                          "VALUES (?, ?, ?, ?) ON CONFLICT (key) DO UPDATE SET failures = excluded.failures, "
                          "last_failure_at = excluded.last_failure_at, locked_until = excluded.locked_until");
        if (s == NULL)
            return BV_EIO;
        bv_stmt_bind_text(s, 1, key, -1);
        bv_stmt_bind_int64(s, 2, t->failures);
        bv_stmt_bind_int64(s, 3, t->last_failure_at);
        bv_stmt_bind_int64(s, 4, t->locked_until);
    }
    int rc = bv_stmt_step(s);
    bv_stmt_reset(s);
    return rc == BV_DONE ? 0 : rc < 0 ? rc : BV_EIO;
}

/* Attempts in flight, per throttle key, in this process: they count as failures until
 * they finish, so parallel guesses cannot overtake the persisted counters. */
#define INFLIGHT_MAX 512
static pthread_mutex_t inflight_mu = PTHREAD_MUTEX_INITIALIZER;
static struct {
    char key[BV_IDENTITY_USERNAME_MAX + 16];
    int count;
} inflight[INFLIGHT_MAX];

/* Adds one attempt for key; returns how many others are in flight (-1: table full). */
static int inflight_enter(const char *key)
{
    int others = -1, free_slot = -1;
    pthread_mutex_lock(&inflight_mu);
    for (int i = 0; i < INFLIGHT_MAX; i++) {
        if (inflight[i].count > 0 && strcmp(inflight[i].key, key) == 0) {
            others = inflight[i].count++;
            break;
        }
        if (inflight[i].count == 0 && free_slot < 0)
            free_slot = i;
    }
    if (others < 0 && free_slot >= 0) {
        snprintf(inflight[free_slot].key, sizeof(inflight[free_slot].key), "%s", key);
        inflight[free_slot].count = 1;
        others = 0;
    }
    pthread_mutex_unlock(&inflight_mu);
    return others;
}

static void inflight_leave(const char *key)
{
    pthread_mutex_lock(&inflight_mu);
    for (int i = 0; i < INFLIGHT_MAX; i++) {
        if (inflight[i].count > 0 && strcmp(inflight[i].key, key) == 0) {
            inflight[i].count--;
            break;
        }
    }
    pthread_mutex_unlock(&inflight_mu);
}

typedef struct {
    bv_identity_t *id;
    char account_key[BV_IDENTITY_USERNAME_MAX + 16];
    char ip_key[80];
    int acct_others, ip_others; /* concurrent attempts, counted as pending failures */
    int64_t wait_us;
    int locked;
} begin_arg_t;

/* Read: must this attempt wait? */
static int tx_check(bv_tx_t *tx, void *varg)
{
    begin_arg_t *a = varg;
    const bv_identity_lockout_t *p = &a->id->opt.lockout;
    bv_identity_throttle_t acct, ip;
    int64_t now = bv_now_us();
    int rc;
    if ((rc = throttle_load(tx, a->account_key, &acct)) != 0 || (rc = throttle_load(tx, a->ip_key, &ip)) != 0)
        return rc;
    int64_t w1 = bv_identity_throttle_wait(p, p->max_failures, p->free_failures, &acct, now);
    int64_t w2 = bv_identity_throttle_wait(p, p->ip_max_failures, p->ip_max_failures, &ip, now);
    a->locked = (acct.locked_until > now) || (ip.locked_until > now);
    /* attempts still running count as failures: no parallel guessing past the limits */
    if (w1 == 0 && a->acct_others > 0) {
        int64_t f = acct.failures + a->acct_others;
        if (f >= p->max_failures) {
            w1 = 1000000; /* they may still succeed: retry shortly */
        } else if (f > p->free_failures) {
            bv_identity_throttle_t pending = {f, now, 0};
            w1 = bv_identity_throttle_wait(p, p->max_failures, p->free_failures, &pending, now);
        }
    }
    if (w2 == 0 && a->ip_others > 0 && ip.failures + a->ip_others >= p->ip_max_failures)
        w2 = 1000000;
    a->wait_us = w1 > w2 ? w1 : w2;
    return 0;
}

typedef struct {
    begin_arg_t *b;
    const bv_identity_user_t *user; /* NULL on failure */
    const char *new_phc;            /* rehash, may be NULL */
    const char *request_id, *source_ip;
    int active;
} outcome_arg_t;

static int tx_outcome(bv_tx_t *tx, void *varg)
{
    outcome_arg_t *a = varg;
    const bv_identity_lockout_t *p = &a->b->id->opt.lockout;
    int64_t now = bv_now_us();
    char resource[64];
    json_t *d;
    int rc;
    if (a->user == NULL) { /* a failure counts against the account and the IP */
        bv_identity_throttle_t acct, ip;
        if ((rc = throttle_load(tx, a->b->account_key, &acct)) != 0 ||
            (rc = throttle_load(tx, a->b->ip_key, &ip)) != 0)
            return rc;
        bv_identity_throttle_fail(p, p->max_failures, &acct, now);
        bv_identity_throttle_fail(p, p->ip_max_failures, &ip, now);
        if ((rc = throttle_store(tx, a->b->account_key, &acct)) != 0 ||
            (rc = throttle_store(tx, a->b->ip_key, &ip)) != 0)
            return rc;
        d = json_pack("{s:s}", "reason", "invalid_credentials");
        bv_audit_event_t ev = {.actor = "system",
                               .action = "identity.login",
                               .outcome = "denied",
                               .source_ip = a->source_ip,
                               .request_id = a->request_id,
                               .details = d};
        rc = bv_audit_append(tx, &ev);
        json_decref(d);
        return rc;
    }
    /* the password was right: the account starts afresh */
    bv_identity_throttle_t clear = {0};
    if ((rc = throttle_store(tx, a->b->account_key, &clear)) != 0)
        return rc;
    if (a->active) {
        bv_stmt_t *s = bv_tx_prepare(tx, "UPDATE identity_users SET last_login_at = ?, "
                                         "password_hash = coalesce(?, password_hash) WHERE id = ?");
        if (s == NULL)
            return BV_EIO;
        bv_stmt_bind_int64(s, 1, now);
        bv_stmt_bind_text(s, 2, a->new_phc, -1);
        bv_stmt_bind_text(s, 3, a->user->id, -1);
        rc = bv_stmt_step(s);
        bv_stmt_reset(s);
        if (rc != BV_DONE)
            return rc < 0 ? rc : BV_EIO;
    }
    snprintf(resource, sizeof(resource), "user:%s", a->user->id);
    d = json_pack("{s:s,s:s}", "method", "password", "status", a->user->status);
    bv_audit_event_t ev = {.actor = "system",
                           .action = "identity.login",
                           .resource = resource,
                           .outcome = a->active ? "success" : "denied",
                           .source_ip = a->source_ip,
                           .request_id = a->request_id,
                           .details = d};
    rc = bv_audit_append(tx, &ev);
    json_decref(d);
    return rc;
}

int bv_identity_authenticate(bv_identity_t *id, const char *username, const char *password,
                             size_t password_len, const char *source_ip, const char *request_id,
                             bv_login_result_t *out)
{
    char canon[BV_IDENTITY_USERNAME_MAX + 1], phc[BV_IDENTITY_PHC_MAX + 1] = "",
                                                                        fresh[BV_IDENTITY_PHC_MAX + 1];
    begin_arg_t b = {.id = id};
    int rc, known = 0;
    memset(out, 0, sizeof(*out));
    /* A malformed username is throttled and verified like any unknown one. */
    if (username == NULL || bv_identity_username_canonical(username, canon) != 0)
        snprintf(canon, sizeof(canon), "%s", "-invalid-");
    snprintf(b.account_key, sizeof(b.account_key), "account:%s", canon);
    snprintf(b.ip_key, sizeof(b.ip_key), "ip:%s", source_ip != NULL && source_ip[0] ? source_ip : "unknown");
    b.acct_others = inflight_enter(b.account_key);
    b.ip_others = inflight_enter(b.ip_key);
    if (b.acct_others < 0 || b.ip_others < 0) {
        rc = BV_EBUSY;
        goto out;
    }
    if ((rc = bv_store_run_tx(id->store, 0, tx_check, &b)) != 0)
        goto out;
    if (b.wait_us > 0) {
        out->outcome = BV_LOGIN_THROTTLED;
        out->retry_after_s = (b.wait_us + 999999) / 1000000;
        out->locked = b.locked;
        json_t *d = json_pack("{s:s,s:b}", "reason", "throttled", "locked", b.locked);
        bv_audit_event_t ev = {.actor = "system",
                               .action = "identity.login",
                               .outcome = "denied",
                               .source_ip = source_ip,
                               .request_id = request_id,
                               .details = d};
        bv_audit_record(id->store, &ev);
        json_decref(d);
        goto out;
    }
    get_arg_t g = {canon, &out->user, phc, sizeof(phc)};
    rc = bv_store_run_tx(id->store, 0, tx_get_username, &g);
    if (rc != 0 && rc != BV_ENOTFOUND)
        goto out;
    known = rc == 0 && phc[0] != '\0';
    /* the same Argon2id work whether or not the user exists */
    rc = bv_identity_password_verify(known ? phc : id->dummy_phc, password != NULL ? password : "",
                                     password != NULL ? password_len : 0);
    if (rc != 0 && rc != BV_EUNAUTHENTICATED && rc != BV_EINVALID)
        goto out; /* e.g. out of memory: not the caller's fault */
    outcome_arg_t o = {&b, NULL, NULL, request_id, source_ip, 0};
    if (rc == 0 && known) {
        o.user = &out->user;
        o.active = strcmp(out->user.status, BV_IDENTITY_ACTIVE) == 0;
        if (o.active && bv_identity_password_needs_rehash(phc, &id->opt.argon2) &&
            bv_identity_password_hash(&id->opt.argon2, password, password_len, fresh) == 0)
            o.new_phc = fresh;
    }
    if ((rc = bv_store_run_tx(id->store, 1, tx_outcome, &o)) != 0)
        goto out;
    if (o.user != NULL) {
        out->outcome = o.active ? BV_LOGIN_OK : BV_LOGIN_INACTIVE;
    } else {
        memset(&out->user, 0, sizeof(out->user));
        out->outcome = BV_LOGIN_INVALID;
    }
out:
    if (b.acct_others >= 0)
        inflight_leave(b.account_key);
    if (b.ip_others >= 0)
        inflight_leave(b.ip_key);
    OPENSSL_cleanse(phc, sizeof(phc));
    OPENSSL_cleanse(fresh, sizeof(fresh));
    return rc;
}
