/* Helpers shared by the ledger's HTTP endpoint groups. */
#include <stdio.h>
#include <string.h>

#include "base/log.h"
#include "ledger/internal.h"

void ledger_call_ctx(bv_call_t *c, ledger_call_ctx_t *out)
{
    bv_principal_actor(&c->principal, out->actor, sizeof(out->actor));
    out->ctx.actor = out->actor;
    out->ctx.request_id = c->request_id[0] != '\0' ? c->request_id : NULL;
    out->ctx.source_ip = c->client_ip[0] != '\0' ? c->client_ip : NULL;
}

void ledger_reply_buf(bv_call_t *c, int status, bv_buf_t *b)
{
    bv_reply_raw(c, status, "application/json", b->data, b->len);
    bv_buf_free(b);
}

void ledger_reply_error(bv_call_t *c, int rc, const char *field)
{
    const char *detail = NULL;
    switch (rc) {
    case BV_EUNKNOWN_ACCOUNT:
        detail = "no such account";
        break;
    case BV_EIDEMPOTENCY:
        detail = "this idempotency key was used with a different request";
        break;
    case BV_ENOTFOUND:
        detail = NULL;
        field = NULL;
        break;
    default:
        break;
    }
    bv_reply_problem(c, rc, detail, field);
}

int ledger_idem_key_or_reply(bv_call_t *c, const char **out)
{
    const char *k = bv_call_header(c, "idempotency-key");
    *out = NULL;
    if (k == NULL)
        return 0;
    if (k[0] == '\0' || strlen(k) > BV_LEDGER_REF_MAX) {
        bv_reply_problem(c, BV_EINVALID, "Idempotency-Key must be 1 to 128 bytes", "Idempotency-Key");
        return BV_EINVALID;
    }
    *out = k;
    return 0;
}

