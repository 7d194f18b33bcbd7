/* Issuing tokens: RFC 9068 access tokens and OIDC ID tokens signed through the key store,
 * and the grant families that tie refresh tokens (and, at introspection, access tokens)
 * to one grant so that reuse can revoke all of it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/errors.h"
#include "base/log.h"
#include "oauth/internal.h"

static json_t *amr_array(const char *amr)
{
    json_t *a = json_array();
    const char *s = amr;
    while (s != NULL && *s) {
        while (*s == ' ')
            s++;
        const char *e = s;
        while (*e && *e != ' ')
            e++;
        if (e > s)
            json_array_append_new(a, json_stringn(s, (size_t)(e - s)));
        s = e;
    }
    return a;
}

int oauth_issue_access_token(oauth_t *o, const oauth_grant_t *g, json_t *resp)
{
    char jti[BV_UUID_STR_LEN + 1], *tok = NULL;
    int64_t now = bv_now_us() / 1000000;
    bv_uuid7(jti);
    json_t *cl = json_pack("{s:s,s:s,s:s,s:s,s:s,s:I,s:I,s:s}", "iss", oauth_issuer(o), "sub",
                           g->user_id != NULL ? g->user_id : g->client_id, "aud", oauth_audience(o),
                           "client_id", g->client_id, "scope", g->scope, "exp",
                           (json_int_t)(now + BV_OAUTH_ACCESS_TTL), "iat", (json_int_t)now, "jti", jti);
    if (cl == NULL)
        return BV_ENOMEM;
    if (g->user_id != NULL) {
        json_object_set_new(cl, "auth_time", json_integer(g->auth_time));
        json_object_set_new(cl, "acr", json_string(g->acr ? g->acr : ""));
        json_object_set_new(cl, "amr", amr_array(g->amr));
    }
    if (g->family_id != NULL)
        json_object_set_new(cl, "bv_fam", json_string(g->family_id));
    int rc = oauth_sign_jwt(o, "ES256", "at+jwt", cl, &tok);
    json_decref(cl);
    if (rc != 0)
        return rc;
    json_object_set_new(resp, "access_token", json_string(tok));
    json_object_set_new(resp, "token_type", json_string("Bearer"));
    json_object_set_new(resp, "expires_in", json_integer(BV_OAUTH_ACCESS_TTL));
    json_object_set_new(resp, "scope", json_string(g->scope));
    free(tok);
    return 0;
}

int oauth_issue_id_token(oauth_t *o, const oauth_grant_t *g, const char *nonce, const char *alg, json_t *resp)
{
    char *tok = NULL;
    int64_t now = bv_now_us() / 1000000;
    json_t *cl = json_pack("{s:s,s:s,s:s,s:s,s:I,s:I,s:I,s:s,s:o}", "iss", oauth_issuer(o), "sub", g->user_id,
                           "aud", g->client_id, "azp", g->client_id, "exp",
                           (json_int_t)(now + BV_OAUTH_ID_TOKEN_TTL), "iat", (json_int_t)now, "auth_time",
                           (json_int_t)g->auth_time, "acr", g->acr ? g->acr : "", "amr", amr_array(g->amr));
    if (cl == NULL)
        return BV_ENOMEM;
    if (nonce != NULL)
        json_object_set_new(cl, "nonce", json_string(nonce));
    int rc = oauth_sign_jwt(o, alg != NULL && strcmp(alg, "RS256") == 0 ? "RS256" : "ES256", "JWT", cl, &tok);
    json_decref(cl);
    if (rc != 0)
        return rc;
    json_object_set_new(resp, "id_token", json_string(tok));
    free(tok);
    return 0;
}

int oauth_family_revoke_tx(bv_tx_t *tx, const char *family_id, const char *reason)
{
    return bv_tx_execf(
        tx,
        "UPDATE oauth_families SET revoked_at = ?, revoked_reason = ? WHERE id = ? AND revoked_at IS NULL",
        "itt", bv_now_us(), reason, family_id);
}

static int tx_family_live(bv_tx_t *tx, void *varg)
{
    const char *id = varg;
    bv_stmt_t *s = bv_tx_prepare(tx, "SELECT 1 FROM oauth_families WHERE id = ? AND revoked_at IS NULL "
                                     "AND expires_at > ?");
    if (s == NULL)
        return BV_EIO;
    bv_stmt_bind_text(s, 1, id, -1);
    bv_stmt_bind_int64(s, 2, bv_now_us());
    int rc = bv_stmt_step(s);
    bv_stmt_reset(s);
    return rc == BV_ROW ? 0 : rc == BV_DONE ? BV_ENOTFOUND : rc;
}

int oauth_family_revoked(oauth_t *o, const char *family_id)
{
    return bv_store_run_tx(o->store, 0, tx_family_live, (void *)family_id) != 0;
}

static int tx_jti_revoked(bv_tx_t *tx, void *varg)
{
    const char *jti = varg;
    bv_stmt_t *s = bv_tx_prepare(tx, "SELECT 1 FROM oauth_revoked_jti WHERE jti = ?");
    if (s == NULL)
        return BV_EIO;
    bv_stmt_bind_text(s, 1, jti, -1);
    int rc = bv_stmt_step(s);
    bv_stmt_reset(s);
    return rc == BV_ROW ? 1 : rc == BV_DONE ? 0 : rc;
}

int oauth_jti_revoked(oauth_t *o, const char *jti)
{
    return bv_store_run_tx(o->store, 0, tx_jti_revoked, (void *)jti) != 0;
}
