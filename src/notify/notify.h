/* Customer notifications (issue 6, docs/notify.md): movement notices, OTPs, security
 * alerts and statements by e-mail (SMTP) and SMS (HTTP provider), from templates in
 * Spanish and English.
 *
 * A notification is published inside the caller's write job onto the `notifications`
 * topic; subscriptions with filter policies route it to the `email` and `sms` queues, whose
 * consumers render the template, send through the configured provider (failing over to the
 * secondary one), respect per-provider rate limits, retry with backoff, record every
 * attempt in the delivery log, and move permanent failures to the `analysis` queue.
 * A notification id is delivered at most once per channel unless an admin replays it. */
#ifndef BV_NOTIFY_NOTIFY_H
#define BV_NOTIFY_NOTIFY_H

#include <jansson.h>
#include <stddef.h>

#include "app/app.h"
#include "base/util.h"
#include "store/store.h"

typedef enum {
    BV_NOTIFY_MOVEMENT = 0,
    BV_NOTIFY_OTP,
    BV_NOTIFY_SECURITY_ALERT,
    BV_NOTIFY_STATEMENT,
    BV_NOTIFY_TEST, /* `boveda admin notify test` */
} bv_notify_kind_t;

/* channels wanted (the customer's preferences) */
#define BV_NOTIFY_EMAIL 0x1u
#define BV_NOTIFY_SMS   0x2u

#define BV_NOTIFY_MAX_ATTACHMENTS      4
#define BV_NOTIFY_MAX_ATTACHMENT_BYTES (128 * 1024)

typedef struct {
    const char *filename;     /* [A-Za-z0-9._-]{1,100} */
    const char *content_type; /* "application/pdf" */
    const void *data;
    size_t len;
} bv_notify_attachment_t;

typedef struct {
    const char *id; /* optional UUID chosen by the caller (idempotency); NULL: a new UUIDv7 */
    struct {
        const char *id;     /* customer id, required */
        const char *email;  /* NULL: no e-mail */
        const char *phone;  /* E.164 ("+34600111222"), NULL: no SMS */
        const char *locale; /* "es" | "en"; NULL: BOVEDA_LOCALE */
    } customer;
    bv_notify_kind_t kind;
    unsigned channels;                         /* BV_NOTIFY_EMAIL | BV_NOTIFY_SMS */
    const char *template_name;                 /* NULL: the kind's template ("movement", "otp", ...) */
    const json_t *vars;                        /* template variables (object, borrowed). Account numbers are
                                                  masked to their last 4 digits when rendered; "otp" is only
                                                  accepted by the OTP template. */
    const bv_notify_attachment_t *attachments; /* e-mail only (statements) */
    size_t n_attachments;
} bv_notification_t;

/* Publishes a notification inside the caller's write job (it is enqueued only if the job
 * commits). Returns 0, 1 when n->id was already published (nothing new is sent),
 * BV_EINVALID (bad customer/contact/kind/template/variables), store errors. The variables
 * of OTP notifications are never stored outside the queue message (no replay). */
int bv_notify_publish(bv_tx_t *tx, const bv_notification_t *n);
/* The same; id_out (may be NULL) gets the notification id. */
int bv_notify_publish_ex(bv_tx_t *tx, const bv_notification_t *n, char id_out[BV_UUID_STR_LEN + 1]);

/* The channels (BV_NOTIFY_EMAIL | BV_NOTIFY_SMS) on which notification `id` has been
 * delivered so far, read in the caller's job (a read or write transaction). 0 (*channels_out
 * may be 0: not yet), BV_ENOTFOUND (no such notification), store errors. */
int bv_notify_delivered(bv_tx_t *tx, const char *id, unsigned *channels_out);

/* "movement", "otp", "security_alert", "statement", "test"; NULL for unknown values. */
const char *bv_notify_kind_name(bv_notify_kind_t kind);

/* Module table entries (src/app/app.c): init validates the BOVEDA_SMTP_* / BOVEDA_SMS_*
 * settings (start-up fails with one line naming a bad setting), applies the queue
 * settings and registers the `notify-email` / `notify-sms` consumers (group "notify");
 * routes adds GET /v1/notifications and GET /v1/notifications/{id}/deliveries (scope
 * "notify:read"); fini stops the consumers. */
int bv_notify_module_init(bv_app_t *app);
int bv_notify_module_routes(bv_app_t *app);
void bv_notify_module_fini(bv_app_t *app);

/* `boveda admin notify log ID|--customer ID [--json]`, `replay ID [--channel C]`,
 * `test --email ADDR --phone E164 [--timeout S]`. */
int bv_notify_admin_main(bv_app_t *app, int argc, char **argv);

#endif
