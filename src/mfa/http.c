/* The customer's own MFA routes (access token of a user with scope "openid"):
 *   POST   /v1/otp/challenges              create a challenge (SMS, e-mail or TOTP)
 *   POST   /v1/otp/challenges/{id}/verify  verify its code, get a single-use proof
 *   POST   /v1/me/totp                     enrol a TOTP soft token (pending); replacing an
 *                                          active one needs a step-up proof
 *   POST   /v1/me/totp/confirm             confirm it with a first code
 *   POST   /v1/me/totp/resync              resynchronise it with two consecutive codes
 *   DELETE /v1/me/totp                     revoke it (an active one: step-up proof)
 * A challenge of another user answers 404, as if it did not exist. */
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "http/http.h"
#include "identity/identity.h"
#include "mfa/internal.h"

static const char *const purposes[] = {"login", "transfer", "profile_change", "device_enrolment", NULL};
static const char *const channels[] = {"sms", "email", "totp", NULL};

/* The caller must be a customer: the routes act on the token's own user. */
static bv_mfa_t *mfa_or_reply(bv_call_t *c)
{
    bv_mfa_t *m = bv_mfa_instance();
    if (m == NULL)
        bv_reply_problem(c, BV_EUNAVAILABLE, NULL, NULL);
    return m;
}

static void reply_error(bv_call_t *c, int rc, const char *detail, const char *field)
{
    if (bv_err_status(rc) >= 500)
        bv_log(BV_LOG_ERROR, c->request_id, "mfa request failed", "\"error\":\"%s\"", bv_err_name(rc));
    bv_reply_problem(c, rc, detail, field);
}

typedef struct {
    const char *amount, *currency, *source, *destination;
} op_body_t;

static const bv_json_field_t op_spec[] = {
    {"amount", BV_JSON_STRING, BV_JSON_REQUIRED, 1, 32, offsetof(op_body_t, amount), NULL},
    {"currency", BV_JSON_STRING, BV_JSON_REQUIRED, 3, 3, offsetof(op_body_t, currency), NULL},
    {"source", BV_JSON_STRING, BV_JSON_REQUIRED, 1, 128, offsetof(op_body_t, source), NULL},
    {"destination", BV_JSON_STRING, BV_JSON_REQUIRED, 1, 128, offsetof(op_body_t, destination), NULL},
    BV_JSON_END,
};

/* Decodes an optional "operation" object into its binding; replies 400 on error.
 * *has_out = 0 when absent. */
static int binding_or_reply(bv_call_t *c, json_t *op, unsigned char binding[32], int *has_out)
{
    op_body_t o = {0};
    bv_json_error_t err = {{0}, {0}};
    const char *field = NULL;
    char name[64];
    *has_out = 0;
    if (op == NULL)
        return 0;
    if (bv_json_decode_object(op, "operation", op_spec, &o, &err) != 0) {
        bv_reply_problem(c, BV_EINVALID, err.detail, err.field);
        return -1;
    }
    bv_mfa_operation_t mo = {o.amount, o.currency, o.source, o.destination};
    if (bv_mfa_binding(&mo, binding, &field) != 0) {
        snprintf(name, sizeof(name), "operation.%s", field ? field : "");
        bv_reply_problem(c, BV_EINVALID,
                         field && strcmp(field, "amount") == 0
                             ? "amount must be a positive decimal with at most the currency's minor digits"
                             : "invalid operation field",
                         name);
        return -1;
    }
    *has_out = 1;
    return 0;
}

typedef struct {
    const char *purpose, *channel;
    json_t *operation;
} create_body_t;

static const bv_json_field_t create_spec[] = {
    {"purpose", BV_JSON_STRING, BV_JSON_REQUIRED, 1, 32, offsetof(create_body_t, purpose), purposes},
    {"channel", BV_JSON_STRING, BV_JSON_REQUIRED, 1, 16, offsetof(create_body_t, channel), channels},
    {"operation", BV_JSON_OBJECT, BV_JSON_NULLABLE, 0, 0, offsetof(create_body_t, operation), NULL},
    BV_JSON_END,
};

static void on_create(bv_call_t *c)
{
    create_body_t b = {0};
    json_t *root = NULL, *body = NULL;
    unsigned char binding[32];
    char hex[65], exp[32];
    int has_binding = 0, rc;
    bv_identity_user_t u;
    bv_mfa_challenge_req_t req = {0};
    bv_mfa_challenge_t ch;
    bv_mfa_t *m;
    if ((m = mfa_or_reply(c)) == NULL)
        return;
    if (bv_call_decode_json_or_reply(c, create_spec, &b, &root) != 0)
        return;
    if (bv_mfa_purpose_parse(b.purpose, &req.purpose) != 0 ||
        bv_mfa_channel_parse(b.channel, &req.channel) != 0) {
        bv_reply_problem(c, BV_EINVALID, "unknown purpose or channel", "purpose");
        goto out;
    }
    if (binding_or_reply(c, b.operation, binding, &has_binding) != 0)
        goto out;
    if (req.purpose == BV_MFA_TRANSFER && !has_binding) {
        bv_reply_problem(c, BV_EINVALID, "a transfer challenge must name its operation", "operation");
        goto out;
    }
    if (bv_identity_instance() == NULL ||
        (rc = bv_identity_user_get(bv_identity_instance(), c->principal.subject, &u)) != 0) {
        reply_error(c, BV_EUNAUTHENTICATED, "unknown user", NULL);
        goto out;
    }
    if (req.channel == BV_MFA_SMS && u.phone[0] == '\0') {
        bv_reply_problem(c, BV_EINVALID, "no phone number on file for SMS", "channel");
        goto out;
    }
    if (req.channel == BV_MFA_EMAIL && u.email[0] == '\0') {
        bv_reply_problem(c, BV_EINVALID, "no e-mail address on file", "channel");
        goto out;
    }
    if (req.channel == BV_MFA_TOTP) {
        int active = 0;
        if ((rc = bv_mfa_totp_active(m, u.id, &active)) != 0) {
            reply_error(c, rc, NULL, NULL);
            goto out;
        }
        if (!active) {
            bv_reply_problem(c, BV_EINVALID, "no confirmed TOTP soft token", "channel");
            goto out;
        }
    }
    req.user_id = u.id;
    req.binding = has_binding ? binding : NULL;
    req.email = u.email;
    req.phone = u.phone;
    req.source_ip = c->client_ip;
    req.request_id = c->request_id;
    if ((rc = bv_mfa_challenge_create(m, &req, &ch)) != 0) {
        reply_error(c, rc, rc == BV_EOTP_RATE ? "too many challenges in the last 15 minutes" : NULL, NULL);
        goto out;
    }
    bv_time_format(ch.expires_at, exp);
    body = json_pack("{s:s, s:s, s:s, s:s}", "id", ch.id, "purpose", b.purpose, "channel", b.channel,
                     "expires_at", exp);
    if (body != NULL && has_binding) {
        bv_hex(binding, 32, hex);
        json_object_set_new(body, "binding", json_string(hex));
    }
    if (body == NULL) {
        bv_reply_problem(c, BV_ENOMEM, NULL, NULL);
        goto out;
    }
    bv_reply_json(c, 201, body);
out:
    json_decref(root);
}

typedef struct {
    const char *code;
    json_t *operation;
    const char *binding;
} verify_body_t;

static const bv_json_field_t verify_spec[] = {
    {"code", BV_JSON_STRING, BV_JSON_REQUIRED, 1, 32, offsetof(verify_body_t, code), NULL},
    {"operation", BV_JSON_OBJECT, BV_JSON_NULLABLE, 0, 0, offsetof(verify_body_t, operation), NULL},
    {"binding", BV_JSON_STRING, BV_JSON_NULLABLE, 64, 64, offsetof(verify_body_t, binding), NULL},
    BV_JSON_END,
};

/* 64 hexadecimal characters into 32 bytes; 0 or -1. */
static int unhex32(const char *s, unsigned char out[32])
{
    for (int i = 0; i < 64; i++) {
        char ch = s[i];
        int v = ch >= '0' && ch <= '9' ? ch - '0' : ch >= 'a' && ch <= 'f' ? ch - 'a' + 10 : -1;
        if (v < 0)
            return -1;
        if (i % 2 == 0)
            out[i / 2] = (unsigned char)(v << 4);
        else
            out[i / 2] |= (unsigned char)v;
    }
    return s[64] == '\0' ? 0 : -1;
}

static void on_verify(bv_call_t *c)
{
    verify_body_t b = {0};
    json_t *root = NULL;
    unsigned char binding[32];
    char exp[32];
    int has_binding = 0, rc;
    bv_mfa_verify_result_t r;
    bv_mfa_t *m;
    const char *id = bv_call_param(c, "id");
    if ((m = mfa_or_reply(c)) == NULL)
        return;
    if (bv_call_decode_json_or_reply(c, verify_spec, &b, &root) != 0)
        return;
    if (binding_or_reply(c, b.operation, binding, &has_binding) != 0)
        goto out;
    /* a step-up challenge (docs/mfa.md) is bound to a request, not to a transfer: its client
     * echoes the binding the 401 answer gave */
    if (b.binding != NULL) {
        if (has_binding) {
            bv_reply_problem(c, BV_EINVALID, "give either operation or binding", "binding");
            goto out;
        }
        if (unhex32(b.binding, binding) != 0) {
            bv_reply_problem(c, BV_EINVALID, "binding must be 64 lower-case hexadecimal characters", "binding");
            goto out;
        }
        has_binding = 1;
    }
    if (id == NULL || !bv_uuid_valid(id)) {
        bv_reply_problem(c, BV_ENOTFOUND, "no such challenge", NULL);
        goto out;
    }
    char lower[BV_UUID_STR_LEN + 1];
    snprintf(lower, sizeof(lower), "%s", id);
    for (char *p = lower; *p; p++)
        if (*p >= 'A' && *p <= 'F')
            *p = (char)(*p - 'A' + 'a');
    rc = bv_mfa_challenge_verify(m, c->principal.subject, lower, b.code, has_binding ? binding : NULL,
                                 c->client_ip, c->request_id, &r);
    switch (rc) {
    case 0: {
        bv_time_format(r.proof_expires_at, exp);
        json_t *body = json_pack("{s:s, s:s, s:s}", "proof", r.proof, "expires_at", exp, "purpose",
                                 bv_mfa_purpose_name(r.purpose));
        OPENSSL_cleanse(r.proof, sizeof(r.proof));
        if (body == NULL)
            bv_reply_problem(c, BV_ENOMEM, NULL, NULL);
        else
            bv_reply_json(c, 200, body);
        break;
    }
    case BV_EOTP_INVALID:
        bv_mfa_reply_invalid_code(c, r.attempts_left);
        break;
    case BV_ENOTFOUND:
        bv_reply_problem(c, rc, "no such challenge", NULL);
        break;
    case BV_EOTP_LOCKED:
        bv_reply_problem(c, rc, "too many wrong codes: request a new challenge", NULL);
        break;
    case BV_EOTP_EXPIRED:
        bv_reply_problem(c, rc, "the challenge expired: request a new one", NULL);
        break;
    case BV_EOTP_USED:
        bv_reply_problem(c, rc, "the challenge was already verified", NULL);
        break;
    default:
        reply_error(c, rc, NULL, NULL);
        break;
    }
out:
    json_decref(root);
}

/* ---- TOTP ---- */

/* The token's id when the user has an active one ("" otherwise); replies on error. */
static int active_token_or_reply(bv_call_t *c, bv_mfa_t *m, char id_out[BV_UUID_STR_LEN + 1], int *exists_out)
{
    bv_mfa_totp_info_t info;
    int rc = bv_mfa_totp_info(m, c->principal.subject, &info);
    id_out[0] = '\0';
    *exists_out = rc == 0;
    if (rc == BV_ENOTFOUND)
        return 0;
    if (rc != 0) {
        reply_error(c, rc, NULL, NULL);
        return -1;
    }
    if (info.active)
        snprintf(id_out, BV_UUID_STR_LEN + 1, "%s", info.id);
    return 0;
}

static void on_totp_enrol(bv_call_t *c)
{
    bv_mfa_enrolment_t e;
    bv_identity_user_t u;
    bv_mfa_t *m;
    json_t *codes, *body;
    unsigned char binding[32];
    char active_id[BV_UUID_STR_LEN + 1];
    const char *proof = NULL;
    int exists, rc;
    if ((m = mfa_or_reply(c)) == NULL)
        return;
    if (bv_identity_instance() == NULL ||
        bv_identity_user_get(bv_identity_instance(), c->principal.subject, &u) != 0) {
        reply_error(c, BV_EUNAUTHENTICATED, "unknown user", NULL);
        return;
    }
    if (active_token_or_reply(c, m, active_id, &exists) != 0)
        return;
    if (active_id[0] == '\0') {
        rc = bv_mfa_totp_enrol(m, u.id, u.username, c->request_id, &e);
    } else {
        /* replacing the active soft token: a fresh second factor bound to "replace this token" */
        if ((rc = bv_mfa_op_binding("totp.replace", u.id, active_id, binding)) != 0) {
            reply_error(c, rc, NULL, NULL);
            return;
        }
        if (bv_mfa_step_up_or_reply(c, u.id, BV_MFA_DEVICE_ENROLMENT, binding, &proof) != 0)
            return;
        rc = bv_mfa_totp_replace(m, u.id, u.username, proof, c->request_id, &e);
        if (rc == BV_EOTP_INVALID || rc == BV_EOTP_USED || rc == BV_EOTP_EXPIRED) {
            bv_mfa_step_up_reply(c, u.id, BV_MFA_DEVICE_ENROLMENT, binding, rc);
            return;
        }
    }
    if (rc != 0) {
        reply_error(c, rc, rc == BV_ECONFLICT ? "a confirmed soft token exists: replacing it needs a step-up" : NULL,
                    NULL);
        return;
    }
    codes = json_array();
    for (int i = 0; codes != NULL && i < BV_MFA_RECOVERY_CODES; i++)
        json_array_append_new(codes, json_string(e.recovery_codes[i]));
    body = json_pack("{s:s, s:s, s:s, s:s, s:s, s:i, s:i, s:s, s:o}", "id", e.id, "status", "pending",
                     "secret", e.secret, "otpauth_uri", e.uri, "algorithm", e.algorithm, "digits", 6, "period", 30,
                     "qr_svg", e.qr_svg.data ? e.qr_svg.data : "", "recovery_codes", codes);
    bv_mfa_enrolment_clear(&e);
    if (body == NULL) {
        bv_reply_problem(c, BV_ENOMEM, NULL, NULL);
        return;
    }
    bv_reply_json(c, 201, body);
}

typedef struct {
    const char *code;
} confirm_body_t;

static const bv_json_field_t confirm_spec[] = {
    {"code", BV_JSON_STRING, BV_JSON_REQUIRED, 1, 32, offsetof(confirm_body_t, code), NULL},
    BV_JSON_END,
};

static void on_totp_confirm(bv_call_t *c)
{
    confirm_body_t b = {0};
    json_t *root = NULL;
    bv_mfa_t *m;
    int rc;
    if ((m = mfa_or_reply(c)) == NULL)
        return;
    if (bv_call_decode_json_or_reply(c, confirm_spec, &b, &root) != 0)
        return;
    rc = bv_mfa_totp_confirm(m, c->principal.subject, b.code, c->request_id);
    if (rc == 0)
        bv_reply_json(c, 200, json_pack("{s:s}", "status", "active"));
    else if (rc == BV_ENOTFOUND)
        bv_reply_problem(c, rc, "no pending soft token: enrol first", NULL);
    else if (rc == BV_EOTP_INVALID)
        bv_reply_problem(c, rc, "wrong code", "code");
    else
        reply_error(c, rc, NULL, NULL);
    json_decref(root);
}

static void on_totp_revoke(bv_call_t *c)
{
    bv_mfa_t *m;
    unsigned char binding[32];
    char active_id[BV_UUID_STR_LEN + 1];
    const char *proof = NULL, *user = c->principal.subject;
    int exists, rc;
    if ((m = mfa_or_reply(c)) == NULL)
        return;
    if (active_token_or_reply(c, m, active_id, &exists) != 0)
        return;
    if (!exists) {
        bv_reply_problem(c, BV_ENOTFOUND, "no soft token", NULL);
        return;
    }
    if (active_id[0] != '\0') { /* an active second factor goes only with a fresh one */
        if ((rc = bv_mfa_op_binding("totp.revoke", user, active_id, binding)) != 0) {
            reply_error(c, rc, NULL, NULL);
            return;
        }
        if (bv_mfa_step_up_or_reply(c, user, BV_MFA_DEVICE_ENROLMENT, binding, &proof) != 0)
            return;
    }
    rc = bv_mfa_totp_revoke_with_proof(m, user, proof, c->request_id);
    if (rc == 0)
        bv_reply_empty(c, 204);
    else if (rc == BV_ENOTFOUND)
        bv_reply_problem(c, rc, "no soft token", NULL);
    else if (active_id[0] != '\0' && (rc == BV_EOTP_INVALID || rc == BV_EOTP_USED || rc == BV_EOTP_EXPIRED))
        bv_mfa_step_up_reply(c, user, BV_MFA_DEVICE_ENROLMENT, binding, rc);
    else if (rc == BV_EOTP_INVALID) /* it became active meanwhile */
        bv_reply_problem(c, BV_ECONFLICT, "the soft token changed: try again", NULL);
    else
        reply_error(c, rc, NULL, NULL);
}

typedef struct {
    const char *code1, *code2;
} resync_body_t;

static const bv_json_field_t resync_spec[] = {
    {"code1", BV_JSON_STRING, BV_JSON_REQUIRED, 6, 6, offsetof(resync_body_t, code1), NULL},
    {"code2", BV_JSON_STRING, BV_JSON_REQUIRED, 6, 6, offsetof(resync_body_t, code2), NULL},
    BV_JSON_END,
};

static void on_totp_resync(bv_call_t *c)
{
    resync_body_t b = {0};
    json_t *root = NULL;
    bv_mfa_totp_info_t info;
    bv_mfa_t *m;
    int rc;
    if ((m = mfa_or_reply(c)) == NULL)
        return;
    if (bv_call_decode_json_or_reply(c, resync_spec, &b, &root) != 0)
        return;
    rc = bv_mfa_totp_resync(m, c->principal.subject, b.code1, b.code2, c->request_id);
    if (rc == 0 && (rc = bv_mfa_totp_info(m, c->principal.subject, &info)) == 0)
        bv_reply_json(c, 200, json_pack("{s:s, s:I}", "status", "active", "drift_steps", (json_int_t)info.drift));
    else if (rc == BV_ENOTFOUND)
        bv_reply_problem(c, rc, "no confirmed soft token", NULL);
    else if (rc == BV_EOTP_INVALID)
        bv_reply_problem(c, rc, "the two codes are not consecutive codes of the soft token near the current time",
                         "code1");
    else
        reply_error(c, rc, NULL, NULL);
    json_decref(root);
}

static const bv_route_t routes[] = {
    {"POST", "/v1/otp/challenges", on_create, "openid", 4096, BV_ROUTE_CUSTOMER, NULL},
    {"POST", "/v1/otp/challenges/{id}/verify", on_verify, "openid", 4096, BV_ROUTE_CUSTOMER, NULL},
    {"POST", "/v1/me/totp", on_totp_enrol, "openid", 0, BV_ROUTE_CUSTOMER, NULL},
    {"POST", "/v1/me/totp/confirm", on_totp_confirm, "openid", 1024, BV_ROUTE_CUSTOMER, NULL},
    {"POST", "/v1/me/totp/resync", on_totp_resync, "openid", 1024, BV_ROUTE_CUSTOMER, NULL},
    {"DELETE", "/v1/me/totp", on_totp_revoke, "openid", 0, BV_ROUTE_CUSTOMER, NULL},
};

int bv_mfa_module_routes(bv_app_t *app)
{
    return bv_http_add_routes(app->http, routes, sizeof(routes) / sizeof(routes[0]), app);
}

int bv_mfa_module_init(bv_app_t *app)
{
    bv_mfa_options_t opt;
    bv_mfa_t *m = NULL;
    int rc;
    if (app->keys == NULL)
        return BV_EKEYSTORE;
    if ((rc = bv_mfa_options_load(app->cfg, &opt)) != 0)
        return rc;
    if ((rc = bv_mfa_open(app->store, app->keys, &opt, &m)) != 0)
        return rc;
    mfa_set_instance(m);
    return 0;
}

void bv_mfa_module_fini(bv_app_t *app)
{
    (void)app;
    bv_mfa_t *m = bv_mfa_instance();
    mfa_set_instance(NULL);
    bv_mfa_close(m);
}

void bv_mfa_reply_invalid_code(bv_call_t *c, int attempts_left)
{
    bv_reply_problem(c, BV_EOTP_INVALID, "wrong code", "code");
    json_t *p = json_loadb(c->resp_body.data, c->resp_body.len, 0, NULL);
    if (p == NULL)
        return;
    json_object_set_new(p, "attempts_left", json_integer(attempts_left));
    char *s = bv_json_dump(p);
    json_decref(p);
    if (s != NULL) {
        bv_reply_raw(c, bv_err_status(BV_EOTP_INVALID), "application/problem+json", s, strlen(s));
        c->error_code = BV_EOTP_INVALID;
    }
    free(s);
}
