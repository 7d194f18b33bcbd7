/* Notify module internals shared by its files and unit tests. */
#ifndef BV_NOTIFY_INTERNAL_H
#define BV_NOTIFY_INTERNAL_H

#include <pthread.h>
#include <stdint.h>

#include "base/util.h"
#include "notify/notify.h"

/* ---- configuration (config.c) ---- */
typedef enum {
    NOTIFY_PROVIDER_SMTP = 0,
    NOTIFY_PROVIDER_TWILIO,
    NOTIFY_PROVIDER_WEBHOOK
} notify_provider_kind_t;
typedef enum { NOTIFY_TLS_OPPORTUNISTIC = 0, NOTIFY_TLS_REQUIRED, NOTIFY_TLS_OFF } notify_tls_t;

typedef struct {
    int configured;
    notify_provider_kind_t kind;
    char name[32];      /* "smtp-primary", "sms-secondary", ... (the delivery log's provider) */
    char *url;          /* smtp(s)://host:port, or the HTTP base/endpoint URL */
    char *user;         /* SMTP user / Twilio account SID */
    char *secret;       /* SMTP password / SMS token (wiped on free) */
    char *from;         /* mail From address / SMS sender */
    notify_tls_t tls;   /* SMTP only */
    int64_t rate_milli; /* messages per second x 1000 */
    int64_t burst;      /* token bucket capacity (>= 1) */
} notify_provider_conf_t;

typedef struct {
    notify_provider_conf_t email[2]; /* primary, secondary */
    notify_provider_conf_t sms[2];
    char *ca_file;       /* BOVEDA_NOTIFY_CA_FILE: extra trust anchors for SMTP/HTTPS (tests, private CAs) */
    int64_t timeout_ms;  /* per provider request */
    int failover_after;  /* consecutive failures before the circuit opens */
    int64_t cooldown_ms; /* circuit open time */
    int max_attempts;    /* attempts per channel before the analysis queue */
    int64_t visibility_ms; /* of the email and sms queues */
    int concurrency;       /* threads per channel consumer */
    char locale[3];        /* default customer locale */
} notify_config_t;

/* Reads and validates every notify setting from the environment (getenv). On failure
 * returns BV_ECONFIG and writes one line naming the setting into err. The caller frees
 * with notify_config_free (secrets wiped). `default_locale` is BOVEDA_LOCALE. */
int notify_config_load(const bv_config_t *cfg, notify_config_t *out, const char *default_locale, char *err,
                       size_t errlen);
void notify_config_free(notify_config_t *c);

/* ---- templates (template.c) ---- */
typedef struct {
    char *subject; /* e-mail subject */
    char *text;    /* text/plain body; also the SMS text */
    char *html;    /* text/html body (variables HTML-escaped) */
} notify_rendered_t;
void notify_rendered_free(notify_rendered_t *r);

/* 1 if `name` is a built-in template. */
int notify_template_exists(const char *name);
/* The template of a kind. */
const char *notify_kind_template(bv_notify_kind_t kind);
/* Renders template `name` in `locale` ("es"/"en"; others fall back to "es") with vars.
 * {{name}} inserts a variable, {{name|mask}} its last 4 characters after "****". Any
 * variable whose name contains "account" is masked even without |mask. The variable
 * "otp" is refused (BV_EINVALID) by every template but "otp". A missing variable is
 * BV_EINVALID (detail names it). Output is owned by r. */
int notify_render(const char *name, const char *locale, const json_t *vars, notify_rendered_t *r,
                  char *detail, size_t detail_len);
/* "****" + last 4 characters of s (all of s when shorter than 5 characters is "****"). */
void notify_mask(const char *s, char *out, size_t n);

/* ---- MIME (mime.c) ---- */
typedef struct {
    const char *filename;
    const char *content_type;
    const void *data;
    size_t len;
} notify_mime_part_t;

typedef struct {
    const char *from, *to, *subject, *text, *html;
    const char *message_id; /* without angle brackets */
    int64_t date_us;
    const notify_mime_part_t *attachments;
    size_t n_attachments;
} notify_mime_t;

/* Builds an RFC 5322 / MIME message (CRLF line ends): multipart/alternative text + HTML,
 * inside multipart/mixed when there are attachments (base64 parts). Headers are checked
 * for CR/LF injection (BV_EINVALID). The buffer is the caller's (bv_buf_free). */
int notify_mime_build(const notify_mime_t *m, bv_buf_t *out);
/* 1 if s looks like a deliverable address (local@domain, no spaces/CR/LF/<>), <= 254. */
int notify_email_valid(const char *s);
/* 1 if s is E.164: "+" and 8..15 digits, the first not 0. */
int notify_phone_valid(const char *s);
/* Standard base64 with line breaks every 76 characters (CRLF) when wrap is set. */
int notify_base64(const void *in, size_t len, int wrap, bv_buf_t *out);

/* ---- rate limits and circuits (limit.c) ---- */
typedef struct {
    pthread_mutex_t mu;
    int64_t rate_milli;   /* tokens per second x 1000 */
    int64_t capacity;     /* tokens (micro units below) */
    int64_t tokens_micro; /* tokens x 1e6; may go negative: reservations waiting */
    int64_t last_us;
} notify_bucket_t;

void notify_bucket_init(notify_bucket_t *b, int64_t rate_milli, int64_t capacity, int64_t now_us);
/* Reserves one token at now_us and returns the time to wait before using it (0: now).
 * When the wait would exceed max_wait_us nothing is reserved and -1 is returned with
 * *wait_out set to the wait it would have needed. */
int64_t notify_bucket_reserve(notify_bucket_t *b, int64_t now_us, int64_t max_wait_us, int64_t *wait_out);

typedef struct {
    pthread_mutex_t mu;
    int failures;            /* consecutive */
    int64_t open_until_us;   /* monotonic; 0 closed */
    int64_t paused_until_us; /* monotonic; a 429 Retry-After */
    int threshold;
    int64_t cooldown_us;
} notify_circuit_t;

void notify_circuit_init(notify_circuit_t *c, int threshold, int64_t cooldown_us);
/* 0 if the provider may be called at now_us, else the microseconds until it may. */
int64_t notify_circuit_wait(notify_circuit_t *c, int64_t now_us);
void notify_circuit_success(notify_circuit_t *c);
/* Returns 1 when this failure opened the circuit. */
int notify_circuit_failure(notify_circuit_t *c, int64_t now_us);
void notify_circuit_pause(notify_circuit_t *c, int64_t now_us, int64_t pause_us);

/* ---- providers (smtp.c, sms.c) ---- */
typedef struct {
    int ok;                 /* delivered to the provider */
    int permanent;          /* the message itself is undeliverable (bad address, 4xx) */
    int64_t retry_after_ms; /* >= 0 when the provider asked to wait (429 Retry-After) */
    char provider_message_id[128];
    char error[160]; /* short reason for the log (no content, no secrets) */
} notify_send_result_t;

int notify_smtp_send(const notify_provider_conf_t *p, const char *ca_file, int64_t timeout_ms, const char *to,
                     const bv_buf_t *message, const char *message_id, notify_send_result_t *res);
int notify_sms_send(const notify_provider_conf_t *p, const char *ca_file, int64_t timeout_ms, const char *to,
                    const char *text, const char *id, notify_send_result_t *res);
/* Parses a Retry-After header value (delta-seconds or an HTTP date) into milliseconds
 * from now; -1 if unparseable. */
int64_t notify_parse_retry_after(const char *v, int64_t now_us);

/* ---- module state and the delivery log (notify.c, log.c) ---- */
bv_store_t *notify_store(void);
/* 1 if this process has a provider (and so a consumer) for "email" / "sms". */
int notify_channel_ready(const char *channel);

/* The delivery log of one notification as a JSON object: {id, customer_id, kind, template,
 * locale, created_at, channels: [{channel, status, attempts, provider, provider_message_id,
 * last_error, generation, updated_at}], attempts: [{channel, generation, provider, status,
 * provider_message_id, error, duration_ms, at}]}. 0, BV_ENOTFOUND, store errors. */
int notify_log_get(bv_tx_t *tx, const char *id, json_t **out);

typedef struct {
    const char *customer_id, *kind, *status; /* NULL: any */
    const char *before_id;                   /* cursor: ids lower than this (newest first) */
    int limit;                               /* 1..200 */
} notify_query_t;
/* Appends up to q->limit notifications (newest first) to items; next_out gets the cursor
 * of the next page ("" when this is the last). */
int notify_log_list(bv_tx_t *tx, const notify_query_t *q, json_t *items, char next_out[BV_UUID_STR_LEN + 1]);

/* Replays a notification on `channel` (NULL: every channel it had): the channel's
 * generation grows, its state returns to pending and the event is queued again. OTPs are
 * never replayed (BV_EEXPIRED). *n_out gets the channels queued. Audited with `actor`.
 * 0, BV_ENOTFOUND, BV_EEXPIRED, BV_EINVALID, store errors. */
int notify_replay(bv_store_t *st, const char *id, const char *channel, const char *actor, int *n_out);

#endif
