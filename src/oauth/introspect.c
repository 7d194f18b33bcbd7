/* POST /oauth2/introspect (RFC 7662) and POST /oauth2/revoke (RFC 7009).
 * Introspection is for authenticated confidential clients (resource servers). An access
 * token is active when it validates like at the authenticator AND neither its jti nor its
 * grant family is revoked; a refresh token is only described to the client it belongs
 * to. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/errors.h"
#include "base/log.h"
#include "oauth/internal.h"

static void reply_inactive(bv_call_t *c)
{
    bv_reply_json(c, 200, json_pack("{s:b}", "active", 0));
}

/* Claims of a validated JWT access token (re-parsed: validation keeps only the principal). */
static json_t *at_payload(const char *token)
{
    jwt_t j;
    if (jwt_parse(token, strlen(token), &j) != 0)
        return NULL;
    json_t *p = json_incref(j.payload);
    jwt_free(&j);
    return p;
}

static int access_token_live(oauth_t *o, const char *token, json_t **claims_out)
{
    bv_principal_t p;
    *claims_out = NULL;
    if (o->validator == NULL ||
        bv_oauth_validate_access_token(o->validator, token, strlen(token), bv_now_us() / 1000000, &p) != 0)
        return 0;
    json_t *cl = at_payload(token);
    if (cl == NULL)
        return 0;
    const char *jti = json_string_value(json_object_get(cl, "jti"));
    const char *fam = json_string_value(json_object_get(cl, "bv_fam"));
    if ((jti != NULL && oauth_jti_revoked(o, jti)) || (fam != NULL && oauth_family_revoked(o, fam))) {
        json_decref(cl);
        return 0;
    }
    if (p.kind == BV_PRINCIPAL_CLIENT) { /* the client must still exist */
        oauth_client_t c;
        if (oauth_client_load(o, p.client_id, &c) != 0) {
            json_decref(cl);
            return 0;
        }
        oauth_client_clear(&c);
    }
    *claims_out = cl;
    return 1;
}

typedef struct {
    const char *hash;
    char client_id[128], user_id[BV_UUID_STR_LEN + 1], scope[512], family_id[BV_UUID_STR_LEN + 1];
    int64_t exp, iat;
    int live;
} rt_arg_t;

static int tx_rt(bv_tx_t *tx, void *varg)
{
    rt_arg_t *a = varg;
    bv_stmt_t *s =
        bv_tx_prepare(tx, "SELECT f.client_id, f.user_id, f.scope, f.id, t.expires_at, t.created_at, "
                          "(t.used_at IS NULL AND f.revoked_at IS NULL AND t.expires_at > ? AND "
                          "f.expires_at > ?) FROM oauth_refresh_tokens t JOIN oauth_families f "
                          "ON f.id = t.family_id WHERE t.id = ?");
    if (s == NULL)
        return BV_EIO;
    int64_t now = bv_now_us();
    bv_stmt_bind_int64(s, 1, now);
    bv_stmt_bind_int64(s, 2, now);
    bv_stmt_bind_text(s, 3, a->hash, -1);
    int rc = bv_stmt_step(s);
    if (rc == BV_ROW) {
        snprintf(a->client_id, sizeof(a->client_id), "%s", bv_stmt_text(s, 0));
        snprintf(a->user_id, sizeof(a->user_id), "%s", bv_stmt_text(s, 1));
        snprintf(a->scope, sizeof(a->scope), "%s", bv_stmt_text(s, 2));
        snprintf(a->family_id, sizeof(a->family_id), "%s", bv_stmt_text(s, 3));
        a->exp = bv_stmt_int64(s, 4) / 1000000;
        a->iat = bv_stmt_int64(s, 5) / 1000000;
        a->live = (int)bv_stmt_int64(s, 6);
    }
    bv_stmt_reset(s);
    return rc == BV_ROW ? 0 : rc == BV_DONE ? BV_ENOTFOUND : rc;
}

static int find_refresh(oauth_t *o, const char *token, rt_arg_t *a)
{
    char hash[65];
    memset(a, 0, sizeof(*a));
    if (strlen(token) > 128 || oauth_lookup_hash(o, token, hash) != 0)
        return BV_ENOTFOUND;
    a->hash = hash;
    int rc = bv_store_run_tx(o->store, 0, tx_rt, a);
    a->hash = NULL;
    return rc;
}

void oauth_on_introspect(bv_call_t *c)
{
    oauth_t *o = c->ctx;
    oauth_form_t f;
    oauth_authed_client_t ac;
    char url[600];
    json_t *cl = NULL;
    rt_arg_t rt;
    if (oauth_call_form_or_reply(c, &f, 1) != 0)
        return;
    snprintf(url, sizeof(url), "%s/oauth2/introspect", oauth_issuer(o));
    if (oauth_client_auth_or_reply(o, c, &f, url, &ac) != 0)
        return;
    if (ac.client.is_public) {
        oauth_reply_invalid_client(c); /* introspection is for confidential clients */
        goto out;
    }
    const char *token = oauth_form_get(&f, "token");
    if (token == NULL) {
        oauth_reply_error(c, 400, "invalid_request", "token is required");
        goto out;
    }
    if (access_token_live(o, token, &cl)) {
        json_t *r = json_pack("{s:b,s:s,s:O,s:O,s:O,s:O,s:O,s:O,s:O}", "active", 1, "token_type", "Bearer",
                              "scope", json_object_get(cl, "scope"), "client_id",
                              json_object_get(cl, "client_id"), "sub", json_object_get(cl, "sub"), "aud",
                              json_object_get(cl, "aud"), "iss", json_object_get(cl, "iss"), "exp",
                              json_object_get(cl, "exp"), "iat", json_object_get(cl, "iat"));
        if (r != NULL && json_object_get(cl, "jti") != NULL)
            json_object_set(r, "jti", json_object_get(cl, "jti"));
        if (r != NULL && json_object_get(cl, "acr") != NULL)
            json_object_set(r, "acr", json_object_get(cl, "acr"));
        json_decref(cl);
        bv_reply_json(c, 200, r);
        goto out;
    }
    if (find_refresh(o, token, &rt) == 0 && rt.live && strcmp(rt.client_id, ac.client.id) == 0) {
        bv_reply_json(c, 200,
                      json_pack("{s:b,s:s,s:s,s:s,s:s,s:I,s:I,s:s}", "active", 1, "token_type",
                                "refresh_token", "scope", rt.scope, "client_id", rt.client_id, "sub",
                                rt.user_id, "exp", (json_int_t)rt.exp, "iat", (json_int_t)rt.iat, "iss",
                                oauth_issuer(o)));
        goto out;
    }
    reply_inactive(c);
out:
    oauth_client_clear(&ac.client);
}

typedef struct {
    const char *family_id, *jti;
    int64_t exp;
} revoke_arg_t;

static int tx_revoke(bv_tx_t *tx, void *varg)
{
    revoke_arg_t *a = varg;
    if (a->family_id != NULL)
        return oauth_family_revoke_tx(tx, a->family_id, "revoked");
    bv_stmt_t *s = bv_tx_prepare(tx, "INSERT INTO oauth_revoked_jti (jti, expires_at) VALUES (?, ?) "
                                     "ON CONFLICT (jti) DO NOTHING");
    if (s == NULL)
        return BV_EIO;
    bv_stmt_bind_text(s, 1, a->jti, -1);
    bv_stmt_bind_int64(s, 2, a->exp);
    int rc = bv_stmt_step(s);
    bv_stmt_reset(s);
    if (rc != BV_DONE)
        return rc < 0 ? rc : BV_EIO;
    if ((s = bv_tx_prepare(tx, "DELETE FROM oauth_revoked_jti WHERE expires_at < ?")) != NULL) {
        bv_stmt_bind_int64(s, 1, bv_now_us() - (int64_t)BV_OAUTH_SKEW * 1000000);
        bv_stmt_step(s);
        bv_stmt_reset(s);
    }
    return 0;
}

void oauth_on_revoke(bv_call_t *c)
{
    oauth_t *o = c->ctx;
    oauth_form_t f;
    oauth_authed_client_t ac;
    char url[600];
    json_t *cl = NULL;
    rt_arg_t rt;
    int rc = 0;
    if (oauth_call_form_or_reply(c, &f, 1) != 0)
        return;
    snprintf(url, sizeof(url), "%s/oauth2/revoke", oauth_issuer(o));
    if (oauth_client_auth_or_reply(o, c, &f, url, &ac) != 0)
        return;
    const char *token = oauth_form_get(&f, "token");
    if (token == NULL) {
        oauth_reply_error(c, 400, "invalid_request", "token is required");
        goto out;
    }
    /* RFC 7009 §2.2: invalid or foreign tokens get 200 as well (nothing to reveal) */
    if (find_refresh(o, token, &rt) == 0) {
        if (strcmp(rt.client_id, ac.client.id) == 0) {
            revoke_arg_t a = {rt.family_id, NULL, 0};
            rc = bv_store_run_tx(o->store, 1, tx_revoke, &a);
        }
    } else if (access_token_live(o, token, &cl)) {
        const char *owner = json_string_value(json_object_get(cl, "client_id"));
        const char *jti = json_string_value(json_object_get(cl, "jti"));
        if (owner != NULL && jti != NULL && strcmp(owner, ac.client.id) == 0) {
            revoke_arg_t a = {NULL, jti, json_integer_value(json_object_get(cl, "exp")) * 1000000};
            rc = bv_store_run_tx(o->store, 1, tx_revoke, &a);
        }
        json_decref(cl);
    }
    if (rc != 0)
        oauth_reply_error(c, 503, "temporarily_unavailable", NULL);
    else
        bv_reply_empty(c, 200);
out:
    oauth_client_clear(&ac.client);
}
