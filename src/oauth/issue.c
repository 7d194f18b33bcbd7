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

/* Appends `,"name":` and s as a JSON string. */
static int member_str(bv_buf_t *b, const char *name, const char *s)
{
    return bv_buf_puts(b, ",\"") != 0 || bv_buf_puts(b, name) != 0 || bv_buf_puts(b, "\":") != 0 ||
                   bv_buf_json_string(b, s, false) != 0
               ? BV_ENOMEM
               : 0;
}

/* The RFC 9068 claims of an access token, serialised directly (this runs for every grant). */
static int access_claims(oauth_t *o, const oauth_grant_t *g, int64_t now, const char *jti, bv_buf_t *b)
{
    char nums[96];
    int rc = 0;
    snprintf(nums, sizeof(nums), ",\"exp\":%lld,\"iat\":%lld", (long long)(now + BV_OAUTH_ACCESS_TTL),
             (long long)now);
    if (bv_buf_puts(b, "{\"iss\":") != 0 || bv_buf_json_string(b, oauth_issuer(o), false) != 0 ||
        member_str(b, "sub", g->user_id != NULL ? g->user_id : g->client_id) != 0 ||
        member_str(b, "aud", oauth_audience(o)) != 0 || member_str(b, "client_id", g->client_id) != 0 ||
        member_str(b, "scope", g->scope) != 0 || bv_buf_puts(b, nums) != 0 || member_str(b, "jti", jti) != 0)
        return BV_ENOMEM;
    if (g->user_id != NULL) {
        json_t *amr = amr_array(g->amr);
        char *amr_s = amr != NULL ? bv_json_dump(amr) : NULL;
        snprintf(nums, sizeof(nums), ",\"auth_time\":%lld", (long long)g->auth_time);
        rc = amr_s == NULL || bv_buf_puts(b, nums) != 0 || member_str(b, "acr", g->acr ? g->acr : "") != 0 ||
                     bv_buf_puts(b, ",\"amr\":") != 0 || bv_buf_puts(b, amr_s) != 0
                 ? BV_ENOMEM
                 : 0;
        free(amr_s);
        json_decref(amr);
    }
    if (rc == 0 && g->family_id != NULL)
        rc = member_str(b, "bv_fam", g->family_id);
    return rc != 0 || bv_buf_puts(b, "}") != 0 ? BV_ENOMEM : 0;
}

/* A signed access token for g (caller frees *tok). */
static int access_token(oauth_t *o, const oauth_grant_t *g, char **tok)
{
    char jti[BV_UUID_STR_LEN + 1];
    int64_t now = bv_now_us() / 1000000;
    bv_buf_t cl = {0};
    bv_uuid7(jti);
    int rc = access_claims(o, g, now, jti, &cl);
    if (rc == 0)
        rc = oauth_sign_jwt(o, "ES256", "at+jwt", cl.data, tok);
    bv_buf_free(&cl);
    return rc;
}

/* The client_credentials grant writes these members itself (oauth_access_token_response). */
int oauth_issue_access_token(oauth_t *o, const oauth_grant_t *g, json_t *resp)
{
    char *tok = NULL;
    int rc = access_token(o, g, &tok);
    if (rc != 0)
        return rc;
    json_object_set_new(resp, "access_token", json_string(tok));
    json_object_set_new(resp, "token_type", json_string("Bearer"));
    json_object_set_new(resp, "expires_in", json_integer(BV_OAUTH_ACCESS_TTL));
    json_object_set_new(resp, "scope", json_string(g->scope));
    free(tok);
    return 0;
}

/* The same members as oauth_issue_access_token writes: change both together. */
int oauth_access_token_response(oauth_t *o, const oauth_grant_t *g, bv_buf_t *body)
{
    char *tok = NULL, ttl[48];
    int rc = access_token(o, g, &tok);
    if (rc != 0)
        return rc;
    snprintf(ttl, sizeof(ttl), "\",\"token_type\":\"Bearer\",\"expires_in\":%d", BV_OAUTH_ACCESS_TTL);
    /* a compact JWS is base64url and dots: nothing in it to escape */
    rc = bv_buf_puts(body, "{\"access_token\":\"") != 0 || bv_buf_puts(body, tok) != 0 ||
                 bv_buf_puts(body, ttl) != 0 || member_str(body, "scope", g->scope) != 0 ||
                 bv_buf_puts(body, "}") != 0
             ? BV_ENOMEM
             : 0;
    free(tok);
    return rc;
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
    char *cs = bv_json_dump(cl);
    json_decref(cl);
    if (cs == NULL)
        return BV_ENOMEM;
    int rc = oauth_sign_jwt(o, alg != NULL && strcmp(alg, "RS256") == 0 ? "RS256" : "ES256", "JWT", cs, &tok);
    free(cs);
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
