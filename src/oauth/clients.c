/* The client registry: storage, validation of registrations, secrets (stored only as an
 * HMAC) and the small predicates the endpoints use. */
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "audit/audit.h"
#include "base/errors.h"
#include "base/log.h"
#include "oauth/internal.h"

#define CLIENT_COLS                                                                                       \
    "id, name, public, auth_method, secret_hash, redirect_uris, post_logout_redirect_uris, grant_types, " \
    "scope, "                                                                                             \
    "first_party, legacy_password, id_token_alg, jwks, created_at, updated_at"

void oauth_client_clear(oauth_client_t *c)
{
    json_decref(c->redirect_uris);
    json_decref(c->post_logout_redirect_uris);
    json_decref(c->jwks);
    OPENSSL_cleanse(c->secret_hash, sizeof(c->secret_hash));
    memset(c, 0, sizeof(*c));
}

static void col(bv_stmt_t *s, int i, char *out, size_t n)
{
    const char *v = bv_stmt_text(s, i);
    snprintf(out, n, "%s", v ? v : "");
}

static json_t *col_json(bv_stmt_t *s, int i)
{
    const char *v = bv_stmt_text(s, i);
    return v != NULL ? json_loads(v, 0, NULL) : NULL;
}

static void row_to_client(bv_stmt_t *s, oauth_client_t *c)
{
    memset(c, 0, sizeof(*c));
    col(s, 0, c->id, sizeof(c->id));
    col(s, 1, c->name, sizeof(c->name));
    c->is_public = (int)bv_stmt_int64(s, 2);
    col(s, 3, c->auth_method, sizeof(c->auth_method));
    col(s, 4, c->secret_hash, sizeof(c->secret_hash));
    c->redirect_uris = col_json(s, 5);
    c->post_logout_redirect_uris = col_json(s, 6);
    col(s, 7, c->grant_types, sizeof(c->grant_types));
    col(s, 8, c->scope, sizeof(c->scope));
    c->first_party = (int)bv_stmt_int64(s, 9);
    c->legacy_password = (int)bv_stmt_int64(s, 10);
    col(s, 11, c->id_token_alg, sizeof(c->id_token_alg));
    c->jwks = col_json(s, 12);
    c->created_at = bv_stmt_int64(s, 13);
    c->updated_at = bv_stmt_int64(s, 14);
    if (c->redirect_uris == NULL)
        c->redirect_uris = json_array();
    if (c->post_logout_redirect_uris == NULL)
        c->post_logout_redirect_uris = json_array();
}

int oauth_client_get(bv_tx_t *tx, const char *id, oauth_client_t *c)
{
    bv_stmt_t *s = bv_tx_prepare(tx, "SELECT " CLIENT_COLS " FROM oauth_clients WHERE id = ?");
    if (s == NULL)
        return BV_EIO;
    bv_stmt_bind_text(s, 1, id, -1);
    int rc = bv_stmt_step(s);
    if (rc == BV_ROW)
        row_to_client(s, c);
    bv_stmt_reset(s);
    return rc == BV_ROW ? 0 : rc == BV_DONE ? BV_ENOTFOUND : rc;
}

typedef struct {
    const char *id;
    oauth_client_t *c;
} load_arg_t;

static int tx_load(bv_tx_t *tx, void *varg)
{
    load_arg_t *a = varg;
    return oauth_client_get(tx, a->id, a->c);
}

/* dst = a copy of src. The JSON members are shared, not copied: a registration's JSON is
 * never modified once read (jansson's reference counts are atomic, and reading shared
 * values from several threads is safe), and copying them was about a sixth of the work
 * of authenticating a client from the cache. */
static void client_copy(oauth_client_t *dst, const oauth_client_t *src)
{
    *dst = *src;
    json_incref(dst->redirect_uris);
    json_incref(dst->post_logout_redirect_uris);
    json_incref(dst->jwks);
}

static size_t client_slot(const char *id)
{
    uint64_t h = 1469598103934665603ULL;
    for (; *id; id++)
        h = (h ^ (unsigned char)*id) * 1099511628211ULL;
    return (size_t)(h % OAUTH_CLIENT_CACHE_SLOTS);
}

void oauth_client_cache_clear(oauth_t *o)
{
    pthread_mutex_lock(&o->clients_mu);
    for (size_t i = 0; i < OAUTH_CLIENT_CACHE_SLOTS; i++)
        if (o->clients[i].loaded_us != 0) {
            oauth_client_clear(&o->clients[i].c);
            o->clients[i].loaded_us = 0;
        }
    pthread_mutex_unlock(&o->clients_mu);
}

int oauth_client_load(oauth_t *o, const char *id, oauth_client_t *c)
{
    memset(c, 0, sizeof(*c));
    if (id == NULL || id[0] == '\0' || strlen(id) >= sizeof(c->id))
        return BV_ENOTFOUND;
    oauth_client_slot_t *slot = &o->clients[client_slot(id)];
    int64_t now = bv_mono_us();
    int rc = BV_ENOTFOUND;
    pthread_mutex_lock(&o->clients_mu);
    if (slot->loaded_us != 0 && now - slot->loaded_us < OAUTH_CLIENT_CACHE_TTL_US &&
        strcmp(slot->c.id, id) == 0) {
        client_copy(c, &slot->c);
        rc = 0;
    }
    pthread_mutex_unlock(&o->clients_mu);
    if (rc != BV_ENOTFOUND)
        return rc;
    load_arg_t a = {id, c};
    if ((rc = bv_store_run_tx(o->store, 0, tx_load, &a)) != 0)
        return rc;
    oauth_client_t keep;
    client_copy(&keep, c);
    pthread_mutex_lock(&o->clients_mu);
    if (slot->loaded_us != 0)
        oauth_client_clear(&slot->c);
    slot->c = keep;
    slot->loaded_us = now;
    pthread_mutex_unlock(&o->clients_mu);
    return 0;
}

int oauth_client_has_grant(const oauth_client_t *c, const char *grant)
{
    return oauth_scope_has(c->grant_types, grant);
}

static int in_array(const json_t *arr, const char *uri)
{
    size_t i;
    json_t *v;
    if (uri == NULL)
        return 0;
    /* RFC 9700 §2.1: exact string comparison, no patterns, no normalisation */
    json_array_foreach(arr, i, v) if (json_is_string(v) && strcmp(json_string_value(v), uri) == 0) return 1;
    return 0;
}

int oauth_client_redirect_ok(const oauth_client_t *c, const char *uri)
{
    return in_array(c->redirect_uris, uri);
}

int oauth_client_post_logout_ok(const oauth_client_t *c, const char *uri)
{
    return in_array(c->post_logout_redirect_uris, uri);
}

static int loopback_http(const char *uri)
{
    static const char *const hosts[] = {"http://localhost", "http://127.0.0.1", "http://[::1]", NULL};
    for (const char *const *h = hosts; *h; h++) {
        size_t l = strlen(*h);
        if (strncmp(uri, *h, l) == 0 && (uri[l] == ':' || uri[l] == '/' || uri[l] == '\0'))
            return 1;
    }
    return 0;
}

int oauth_redirect_uri_acceptable(const char *uri)
{
    size_t len = uri != NULL ? strlen(uri) : 0;
    if (len < 8 || len > 512 || strchr(uri, '#') != NULL)
        return 0;
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)uri[i] <= 0x20 || (unsigned char)uri[i] >= 0x7F)
            return 0;
    if (strncmp(uri, "https://", 8) == 0)
        return uri[8] != '\0' && uri[8] != '/';
    if (loopback_http(uri))
        return 1;
    /* RFC 8252 §7.1 private-use scheme: reverse domain name, e.g. com.example.app:/cb */
    const char *colon = strchr(uri, ':');
    if (colon == NULL || memchr(uri, '.', (size_t)(colon - uri)) == NULL || strncmp(uri, "http:", 5) == 0)
        return 0;
    for (const char *p = uri; p < colon; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '.' || *p == '-' || *p == '+'))
            return 0;
    return 1;
}

static int new_secret(oauth_t *o, char secret[OAUTH_SECRET_LEN + 1], char hash[65])
{
    char r[48];
    oauth_random_token(32, r); /* 43 characters, 256 bits */
    snprintf(secret, OAUTH_SECRET_LEN + 1, "bvs_%.43s", r);
    OPENSSL_cleanse(r, sizeof(r));
    return oauth_lookup_hash(o, secret, hash);
}

static int valid_grant(const char *g)
{
    return strcmp(g, "authorization_code") == 0 || strcmp(g, "refresh_token") == 0 ||
           strcmp(g, "client_credentials") == 0 || strcmp(g, "password") == 0;
}

static const char *validate(const oauth_client_new_t *r, const char **method_out)
{
    const char *m = r->auth_method ? r->auth_method : r->is_public ? "none" : "client_secret_basic";
    char one[64];
    *method_out = m;
    if (r->name == NULL || r->name[0] == '\0' || strlen(r->name) > 120)
        return "a name of 1 to 120 characters is required";
    if (r->client_id != NULL) {
        size_t l = strlen(r->client_id);
        if (l < 3 || l > 120)
            return "client_id must be 3 to 120 characters";
        for (size_t i = 0; i < l; i++) {
            char c = r->client_id[i];
            if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
                  c == '_' || c == '.'))
                return "client_id may hold only letters, digits, '-', '_' and '.'";
        }
    }
    if (strcmp(m, "none") != 0 && strcmp(m, "client_secret_basic") != 0 &&
        strcmp(m, "client_secret_post") != 0 && strcmp(m, "private_key_jwt") != 0)
        return "auth method must be none, client_secret_basic, client_secret_post or private_key_jwt";
    if (r->is_public != (strcmp(m, "none") == 0))
        return "public clients (and only they) use the auth method none";
    if (strcmp(m, "private_key_jwt") == 0) {
        json_t *keys = r->jwks != NULL ? json_object_get(r->jwks, "keys") : NULL;
        if (!json_is_array(keys) || json_array_size(keys) == 0)
            return "private_key_jwt needs the client's JWK set (--jwks)";
        size_t i;
        json_t *k;
        json_array_foreach(keys, i, k)
        {
            EVP_PKEY *pk = NULL;
            if (jwk_to_pkey(k, &pk, NULL) != 0)
                return "every key of the JWK set must be a public EC P-256 or RSA (>= 2048 bits) signing key";
            EVP_PKEY_free(pk);
        }
    }
    const char *g = r->grant_types;
    int has_code = 0;
    if (g == NULL || g[0] == '\0')
        return "at least one grant type is required";
    while (*g) {
        while (*g == ' ')
            g++;
        const char *e = g;
        while (*e && *e != ' ')
            e++;
        if (e == g)
            break;
        if ((size_t)(e - g) >= sizeof(one))
            return "unknown grant type";
        memcpy(one, g, (size_t)(e - g));
        one[e - g] = '\0';
        if (!valid_grant(one))
            return "grant types are authorization_code, refresh_token, client_credentials and password";
        if (strcmp(one, "authorization_code") == 0)
            has_code = 1;
        if (strcmp(one, "client_credentials") == 0 && r->is_public)
            return "public clients cannot use client_credentials";
        if (strcmp(one, "password") == 0 && (!r->legacy_password || !r->first_party))
            return "the password grant needs --legacy-password on a first-party client (RFC 9700 forbids it)";
        g = e;
    }
    size_t n = json_array_size(r->redirect_uris);
    if (has_code && n == 0)
        return "authorization_code needs at least one --redirect-uri";
    for (size_t i = 0; i < n; i++)
        if (!oauth_redirect_uri_acceptable(json_string_value(json_array_get(r->redirect_uris, i))))
            return "redirect URIs must be absolute https (or loopback http, or a private-use scheme) without "
                   "a fragment";
    for (size_t i = 0; i < json_array_size(r->post_logout_redirect_uris); i++)
        if (!oauth_redirect_uri_acceptable(
                json_string_value(json_array_get(r->post_logout_redirect_uris, i))))
            return "post-logout redirect URIs follow the rules of redirect URIs";
    if (r->scope == NULL || r->scope[0] == '\0' || strlen(r->scope) > 500 ||
        !oauth_scope_subset(r->scope, r->scope))
        return "scope must be 1 to 500 characters of space-separated scope tokens";
    if (r->id_token_alg != NULL && jws_alg_parse(r->id_token_alg) == JWS_ALG_NONE_)
        return "the ID token algorithm must be ES256 or RS256";
    return NULL;
}

typedef struct {
    const oauth_client_new_t *r;
    const char *id, *method, *secret_hash;
    char *ru, *plru, *jwks;
} create_arg_t;

static int tx_create(bv_tx_t *tx, void *varg)
{
    create_arg_t *a = varg;
    const oauth_client_new_t *r = a->r;
    int64_t now = bv_now_us();
    bv_stmt_t *s = bv_tx_prepare(tx, "INSERT INTO oauth_clients (" CLIENT_COLS ") "
                                     "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)");
    if (s == NULL)
        return BV_EIO;
    bv_stmt_bind_text(s, 1, a->id, -1);
    bv_stmt_bind_text(s, 2, r->name, -1);
    bv_stmt_bind_int64(s, 3, r->is_public);
    bv_stmt_bind_text(s, 4, a->method, -1);
    bv_stmt_bind_text(s, 5, a->secret_hash, -1);
    bv_stmt_bind_text(s, 6, a->ru, -1);
    bv_stmt_bind_text(s, 7, a->plru, -1);
    bv_stmt_bind_text(s, 8, r->grant_types, -1);
    bv_stmt_bind_text(s, 9, r->scope, -1);
    bv_stmt_bind_int64(s, 10, r->first_party);
    bv_stmt_bind_int64(s, 11, r->legacy_password);
    bv_stmt_bind_text(s, 12, r->id_token_alg ? r->id_token_alg : "ES256", -1);
    bv_stmt_bind_text(s, 13, a->jwks, -1);
    bv_stmt_bind_int64(s, 14, now);
    bv_stmt_bind_int64(s, 15, now);
    int rc = bv_stmt_step(s);
    bv_stmt_reset(s);
    if (rc != BV_DONE)
        return rc < 0 ? rc : BV_EIO;
    char resource[160];
    snprintf(resource, sizeof(resource), "client:%s", a->id);
    json_t *d =
        json_pack("{s:s,s:s,s:s}", "name", r->name, "auth_method", a->method, "grant_types", r->grant_types);
    bv_audit_event_t ev = {.actor = "admin:cli",
                           .action = "oauth.client.create",
                           .resource = resource,
                           .outcome = "success",
                           .details = d};
    rc = bv_audit_append(tx, &ev);
    json_decref(d);
    return rc;
}

int oauth_client_create(oauth_t *o, const oauth_client_new_t *req, char id_out[128],
                        char secret_out[OAUTH_SECRET_LEN + 1], const char **why)
{
    const char *method;
    char id[128], hash[65] = "";
    int rc;
    secret_out[0] = '\0';
    *why = validate(req, &method);
    if (*why != NULL)
        return BV_EINVALID;
    if (req->client_id != NULL)
        snprintf(id, sizeof(id), "%s", req->client_id);
    else
        bv_uuid7(id);
    if ((strcmp(method, "client_secret_basic") == 0 || strcmp(method, "client_secret_post") == 0) &&
        (rc = new_secret(o, secret_out, hash)) != 0)
        return rc;
    json_t *empty = json_array();
    create_arg_t a = {req,
                      id,
                      method,
                      hash[0] ? hash : NULL,
                      bv_json_dump(req->redirect_uris ? req->redirect_uris : empty),
                      bv_json_dump(req->post_logout_redirect_uris ? req->post_logout_redirect_uris : empty),
                      req->jwks ? bv_json_dump(req->jwks) : NULL};
    json_decref(empty);
    rc = a.ru && a.plru ? bv_store_run_tx(o->store, 1, tx_create, &a) : BV_ENOMEM;
    free(a.ru);
    free(a.plru);
    free(a.jwks);
    if (rc == BV_ECONFLICT)
        *why = "a client with this client_id exists";
    if (rc != 0) {
        OPENSSL_cleanse(secret_out, OAUTH_SECRET_LEN + 1);
        secret_out[0] = '\0';
        return rc;
    }
    snprintf(id_out, 128, "%s", id);
    return 0;
}

json_t *oauth_client_json(const oauth_client_t *c)
{
    char ca[32];
    bv_time_format(c->created_at, ca);
    json_t *o =
        json_pack("{s:s,s:s,s:b,s:s,s:O,s:O,s:s,s:s,s:b,s:b,s:s,s:s}", "client_id", c->id, "name", c->name,
                  "public", c->is_public, "token_endpoint_auth_method", c->auth_method, "redirect_uris",
                  c->redirect_uris, "post_logout_redirect_uris", c->post_logout_redirect_uris, "grant_types",
                  c->grant_types, "scope", c->scope, "first_party", c->first_party, "legacy_password",
                  c->legacy_password, "id_token_signed_response_alg", c->id_token_alg, "created_at", ca);
    if (o != NULL && c->jwks != NULL)
        json_object_set(o, "jwks", c->jwks);
    return o;
}

static int tx_list(bv_tx_t *tx, void *varg)
{
    json_t *arr = varg;
    bv_stmt_t *s = bv_tx_prepare(tx, "SELECT " CLIENT_COLS " FROM oauth_clients ORDER BY created_at, id");
    int rc;
    if (s == NULL)
        return BV_EIO;
    while ((rc = bv_stmt_step(s)) == BV_ROW) {
        oauth_client_t c;
        row_to_client(s, &c);
        json_array_append_new(arr, oauth_client_json(&c));
        oauth_client_clear(&c);
    }
    bv_stmt_reset(s);
    return rc < 0 ? rc : 0;
}

int oauth_client_list(oauth_t *o, json_t **out)
{
    json_t *arr = json_array();
    int rc = bv_store_run_tx(o->store, 0, tx_list, arr);
    if (rc != 0) {
        json_decref(arr);
        return rc;
    }
    *out = arr;
    return 0;
}

typedef struct {
    const char *id, *hash;
} rotate_arg_t;

static int tx_rotate(bv_tx_t *tx, void *varg)
{
    rotate_arg_t *a = varg;
    bv_stmt_t *s = bv_tx_prepare(tx, "UPDATE oauth_clients SET secret_hash = ?, updated_at = ? WHERE id = ? "
                                     "AND auth_method IN ('client_secret_basic', 'client_secret_post')");
    if (s == NULL)
        return BV_EIO;
    bv_stmt_bind_text(s, 1, a->hash, -1);
    bv_stmt_bind_int64(s, 2, bv_now_us());
    bv_stmt_bind_text(s, 3, a->id, -1);
    int rc = bv_stmt_step(s);
    bv_stmt_reset(s);
    if (rc != BV_DONE)
        return rc < 0 ? rc : BV_EIO;
    if (bv_tx_changes(tx) == 0)
        return BV_ENOTFOUND;
    char resource[160];
    snprintf(resource, sizeof(resource), "client:%s", a->id);
    bv_audit_event_t ev = {.actor = "admin:cli",
                           .action = "oauth.client.rotate_secret",
                           .resource = resource,
                           .outcome = "success"};
    return bv_audit_append(tx, &ev);
}

int oauth_client_rotate_secret(oauth_t *o, const char *id, char secret_out[OAUTH_SECRET_LEN + 1])
{
    char hash[65];
    int rc = new_secret(o, secret_out, hash);
    if (rc != 0)
        return rc;
    rotate_arg_t a = {id, hash};
    rc = bv_store_run_tx(o->store, 1, tx_rotate, &a);
    if (rc != 0) {
        OPENSSL_cleanse(secret_out, OAUTH_SECRET_LEN + 1);
        secret_out[0] = '\0';
    }
    return rc;
}

static int tx_delete(bv_tx_t *tx, void *varg)
{
    const char *id = varg;
    bv_stmt_t *s = bv_tx_prepare(tx, "DELETE FROM oauth_clients WHERE id = ?");
    int rc;
    if (s == NULL)
        return BV_EIO;
    bv_stmt_bind_text(s, 1, id, -1);
    rc = bv_stmt_step(s);
    bv_stmt_reset(s);
    if (rc != BV_DONE)
        return rc < 0 ? rc : BV_EIO;
    if (bv_tx_changes(tx) == 0)
        return BV_ENOTFOUND;
    /* everything the client was issued dies with it */
    s = bv_tx_prepare(tx, "UPDATE oauth_families SET revoked_at = ?, revoked_reason = 'client_deleted' "
                          "WHERE client_id = ? AND revoked_at IS NULL");
    if (s == NULL)
        return BV_EIO;
    bv_stmt_bind_int64(s, 1, bv_now_us());
    bv_stmt_bind_text(s, 2, id, -1);
    rc = bv_stmt_step(s);
    bv_stmt_reset(s);
    if (rc != BV_DONE)
        return rc < 0 ? rc : BV_EIO;
    char resource[160];
    snprintf(resource, sizeof(resource), "client:%s", id);
    bv_audit_event_t ev = {
        .actor = "admin:cli", .action = "oauth.client.delete", .resource = resource, .outcome = "success"};
    return bv_audit_append(tx, &ev);
}

int oauth_client_delete(oauth_t *o, const char *id)
{
    return bv_store_run_tx(o->store, 1, tx_delete, (void *)id);
}
