/* Helpers shared by the customer module's HTTP endpoint groups: the caller check, error
 * replies and the JSON text of profiles (buffer + printf, as the ledger renders: the
 * summary is the hot path). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "customer/internal.h"
#include "notify/notify.h"

void customer_reply_error(bv_call_t *c, int rc, const char *detail, const char *field)
{
    if (bv_err_status(rc) >= 500)
        bv_log(BV_LOG_ERROR, c->request_id, "customer request failed", "\"error\":\"%s\"", bv_err_name(rc));
    if (rc == BV_ENOTFOUND) {
        detail = NULL; /* nothing that tells an unknown id from another customer's */
        field = NULL;
    }
    bv_reply_problem(c, rc, detail, field);
}

void customer_reply_buf(bv_call_t *c, int rc, bv_buf_t *b)
{
    if (rc != 0)
        bv_reply_problem(c, BV_ENOMEM, NULL, NULL);
    else
        bv_reply_raw(c, 200, "application/json", b->data, b->len);
    bv_buf_free(b);
}

int customer_buf_presize(bv_buf_t *b, size_t cap)
{
    /* one allocation of the expected size instead of a chain of doublings from 256 bytes */
    if (b->data != NULL || cap == 0)
        return 0;
    if ((b->data = malloc(cap)) == NULL)
        return BV_ENOMEM;
    b->data[0] = '\0';
    b->len = 0;
    b->cap = cap;
    return 0;
}

int customer_json_channels(bv_buf_t *b, unsigned channels)
{
    bool email = (channels & BV_NOTIFY_EMAIL) != 0, sms = (channels & BV_NOTIFY_SMS) != 0;
    return bv_buf_printf(b, "[%s%s%s]", email ? "\"email\"" : "", email && sms ? "," : "",
                         sms ? "\"sms\"" : "");
}

int customer_profile_json(bv_buf_t *b, const bv_customer_profile_t *p)
{
    int rc = 0;
    rc |= bv_buf_printf(b, "{\"id\":\"%s\",\"username\":", p->id);
    rc |= bv_buf_json_string(b, p->username, false);
    rc |= bv_buf_puts(b, ",\"display_name\":");
    rc |= bv_buf_json_string(b, p->display_name, false);
    rc |= bv_buf_puts(b, ",\"email\":");
    rc |= bv_buf_json_string(b, p->email, true);
    rc |= bv_buf_puts(b, ",\"phone\":");
    rc |= bv_buf_json_string(b, p->phone, true);
    rc |= bv_buf_printf(b, ",\"locale\":\"%s\",\"notification_preferences\":{\"channels\":", p->locale);
    rc |= customer_json_channels(b, p->channels);
    rc |= bv_buf_printf(b, ",\"locale\":\"%s\"}}", p->locale);
    return rc != 0 ? BV_ENOMEM : 0;
}
