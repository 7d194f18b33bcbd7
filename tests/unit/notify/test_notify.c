/* Notifications: template rendering (es/en, masking, OTP confinement, HTML escaping), MIME
 * building, token bucket, circuit breaker, Retry-After, settings validation, and publishing
 * onto the queues in the caller's transaction with duplicate suppression. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/evp.h>

#include "base/config.h"
#include "notify/internal.h"
#include "notify/notify.h"
#include "queue/queue.h"

/* ---- templates ---- */

static json_t *vars(const char *s)
{
    json_t *v = json_loads(s, 0, NULL);
    assert_non_null(v);
    return v;
}

static void test_mask(void **state)
{
    (void)state;
    char out[16];
    notify_mask("0123456789012345", out, sizeof(out));
    assert_string_equal(out, "****2345");
    notify_mask("1234", out, sizeof(out));
    assert_string_equal(out, "****");
    notify_mask(NULL, out, sizeof(out));
    assert_string_equal(out, "****");
}

static void test_render_movement_es_en_masked(void **state)
{
    (void)state;
    notify_rendered_t r;
    char detail[160];
    json_t *v = vars("{\"name\":\"Ana <b>\",\"amount\":\"125.50\",\"currency\":\"EUR\","
                     "\"account\":\"0049123456789012\",\"date\":\"2026-11-22\"}");
    assert_int_equal(notify_render("movement", "es", v, &r, detail, sizeof(detail)), 0);
    assert_non_null(strstr(r.subject, "****9012"));
    assert_non_null(strstr(r.text, "125.50 EUR"));
    assert_non_null(strstr(r.text, "****9012"));
    assert_null(strstr(r.text, "0049123456789012"));
    assert_null(strstr(r.html, "0049123456789012"));
    assert_non_null(strstr(r.text, "movimiento"));
    assert_non_null(strstr(r.html, "Ana &lt;b&gt;")); /* escaped in HTML */
    assert_null(strstr(r.html, "Ana <b>"));
    notify_rendered_free(&r);
    assert_int_equal(notify_render("movement", "en", v, &r, detail, sizeof(detail)), 0);
    assert_non_null(strstr(r.text, "moved on your account ****9012"));
    assert_non_null(strstr(r.subject, "Activity"));
    notify_rendered_free(&r);
    /* unknown locale: Spanish */
    assert_int_equal(notify_render("movement", "fr", v, &r, detail, sizeof(detail)), 0);
    assert_non_null(strstr(r.text, "movimiento"));
    notify_rendered_free(&r);
    json_decref(v);
}

static void test_render_masks_account_variables_without_filter(void **state)
{
    (void)state;
    notify_rendered_t r;
    char detail[160];
    /* the security alert template shows {{event}}; a variable named like an account is masked
       wherever it appears, so a template cannot leak one by mistake */
    json_t *v = vars("{\"name\":\"x\",\"event\":\"login\",\"date\":\"today\",\"period\":\"2026-10\","
                     "\"account\":\"9999888877776666\"}");
    assert_int_equal(notify_render("statement", "en", v, &r, detail, sizeof(detail)), 0);
    assert_non_null(strstr(r.text, "****6666"));
    assert_null(strstr(r.text, "9999888877776666"));
    notify_rendered_free(&r);
    json_decref(v);
}

static void test_render_otp_confined(void **state)
{
    (void)state;
    notify_rendered_t r;
    char detail[160];
    json_t *v = vars("{\"otp\":\"482913\",\"minutes\":5}");
    assert_int_equal(notify_render("otp", "es", v, &r, detail, sizeof(detail)), 0);
    assert_non_null(strstr(r.text, "482913"));
    assert_non_null(strstr(r.text, "5 minutos"));
    notify_rendered_free(&r);
    assert_int_equal(notify_render("otp", "en", v, &r, detail, sizeof(detail)), 0);
    assert_non_null(strstr(r.text, "your code is 482913"));
    notify_rendered_free(&r);
    /* any other template refuses an OTP variable */
    json_t *v2 = vars("{\"otp\":\"482913\",\"event\":\"x\",\"date\":\"y\",\"name\":\"z\"}");
    assert_int_equal(notify_render("security_alert", "es", v2, &r, detail, sizeof(detail)), BV_EINVALID);
    assert_non_null(strstr(detail, "OTP"));
    json_decref(v);
    json_decref(v2);
}

static void test_render_errors(void **state)
{
    (void)state;
    notify_rendered_t r;
    char detail[160];
    json_t *v = vars("{\"otp\":\"1\"}");
    assert_int_equal(notify_render("otp", "es", v, &r, detail, sizeof(detail)),
                     BV_EINVALID); /* minutes missing */
    assert_non_null(strstr(detail, "minutes"));
    assert_int_equal(notify_render("nope", "es", v, &r, detail, sizeof(detail)), BV_EINVALID);
    json_t *nl = vars("{\"period\":\"a\\r\\nBcc: x\",\"account\":\"1\",\"name\":\"n\"}");
    assert_int_equal(notify_render("statement", "es", nl, &r, detail, sizeof(detail)),
                     BV_EINVALID); /* subject */
    assert_int_equal(notify_render("test", "en", NULL, &r, detail, sizeof(detail)), 0);
    assert_non_null(strstr(r.text, "test message"));
    notify_rendered_free(&r);
    assert_true(notify_template_exists("movement"));
    assert_false(notify_template_exists("nope"));
    json_decref(v);
    json_decref(nl);
}

/* ---- MIME ---- */

static char *decode_part(const char *msg, const char *ctype)
{
    const char *p = strstr(msg, ctype);
    assert_non_null(p);
    p = strstr(p, "\r\n\r\n");
    assert_non_null(p);
    p += 4;
    const char *end = strstr(p, "\r\n--");
    assert_non_null(end);
    char *b64 = calloc(1, (size_t)(end - p) + 1);
    size_t n = 0;
    for (const char *q = p; q < end; q++)
        if (*q != '\r' && *q != '\n')
            b64[n++] = *q;
    unsigned char *out = calloc(1, n + 4);
    int len = EVP_DecodeBlock(out, (unsigned char *)b64, (int)n);
    assert_true(len >= 0);
    while (n > 0 && b64[n - 1] == '=') {
        n--;
        len--;
    }
    out[len] = '\0';
    free(b64);
    return (char *)out;
}

static void test_mime_alternative(void **state)
{
    (void)state;
    bv_buf_t b = {0};
    notify_mime_t m = {.from = "bank@example.com",
                       .to = "ana@example.com",
                       .subject = "Movimiento ñ",
                       .text = "hola ñ",
                       .html = "<p>hola</p>",
                       .message_id = "abc.email.1@boveda",
                       .date_us = 1790000000000000LL};
    assert_int_equal(notify_mime_build(&m, &b), 0);
    assert_non_null(strstr(b.data, "From: <bank@example.com>\r\n"));
    assert_non_null(strstr(b.data, "To: <ana@example.com>\r\n"));
    assert_non_null(strstr(b.data, "Subject: =?UTF-8?B?"));
    assert_non_null(strstr(b.data, "Message-ID: <abc.email.1@boveda>\r\n"));
    assert_non_null(strstr(b.data, "MIME-Version: 1.0\r\n"));
    assert_non_null(strstr(b.data, "Content-Type: multipart/alternative; boundary="));
    assert_null(strstr(b.data, "multipart/mixed"));
    char *text = decode_part(b.data, "text/plain"), *html = decode_part(b.data, "text/html");
    assert_string_equal(text, "hola ñ");
    assert_string_equal(html, "<p>hola</p>");
    free(text);
    free(html);
    /* every line ends with CRLF, none longer than 998 */
    for (const char *p = b.data; *p;) {
        const char *nl = strchr(p, '\n');
        assert_non_null(nl);
        assert_true(nl > p ? nl[-1] == '\r' : 0);
        assert_true(nl - p < 998);
        p = nl + 1;
    }
    bv_buf_free(&b);
}

static void test_mime_attachment(void **state)
{
    (void)state;
    bv_buf_t b = {0};
    unsigned char pdf[300];
    for (size_t i = 0; i < sizeof(pdf); i++)
        pdf[i] = (unsigned char)i;
    notify_mime_part_t a = {"statement-2026-10.pdf", "application/pdf", pdf, sizeof(pdf)};
    notify_mime_t m = {.from = "bank@example.com",
                       .to = "ana@example.com",
                       .subject = "s",
                       .text = "t",
                       .html = "h",
                       .message_id = "x@y",
                       .date_us = 0,
                       .attachments = &a,
                       .n_attachments = 1};
    assert_int_equal(notify_mime_build(&m, &b), 0);
    assert_non_null(strstr(b.data, "Content-Type: multipart/mixed; boundary="));
    assert_non_null(strstr(b.data, "Content-Disposition: attachment; filename=\"statement-2026-10.pdf\""));
    const char *p = strstr(b.data, "Content-Type: application/pdf");
    assert_non_null(p);
    p = strstr(p, "\r\n\r\n") + 4;
    bv_buf_t expect = {0};
    assert_int_equal(notify_base64(pdf, sizeof(pdf), 1, &expect), 0);
    assert_memory_equal(p, expect.data, expect.len);
    bv_buf_free(&expect);
    bv_buf_free(&b);
    /* header injection and bad names are refused */
    notify_mime_t bad = m;
    bad.n_attachments = 0;
    bad.to = "ana@example.com\r\nBcc: evil@example.com";
    assert_int_equal(notify_mime_build(&bad, &b), BV_EINVALID);
    bad.to = "ana@example.com";
    bad.subject = "x\r\nBcc: y";
    assert_int_equal(notify_mime_build(&bad, &b), BV_EINVALID);
    notify_mime_part_t evil = {"../etc/passwd", "application/pdf", pdf, 1};
    bad.subject = "ok";
    bad.attachments = &evil;
    bad.n_attachments = 1;
    assert_int_equal(notify_mime_build(&bad, &b), BV_EINVALID);
    bv_buf_free(&b);
}

static void test_base64_and_contacts(void **state)
{
    (void)state;
    bv_buf_t b = {0};
    assert_int_equal(notify_base64("foobar", 6, 0, &b), 0);
    assert_string_equal(b.data, "Zm9vYmFy");
    bv_buf_reset(&b);
    assert_int_equal(notify_base64("fo", 2, 0, &b), 0);
    assert_string_equal(b.data, "Zm8=");
    bv_buf_free(&b);
    assert_true(notify_email_valid("a@b.co"));
    assert_true(notify_email_valid("test@localhost"));
    assert_false(notify_email_valid("a@b"));
    assert_false(notify_email_valid("a b@c.d"));
    assert_false(notify_email_valid("a@@c.d"));
    assert_false(notify_email_valid("<a@c.d>"));
    assert_true(notify_phone_valid("+34600111222"));
    assert_false(notify_phone_valid("34600111222"));
    assert_false(notify_phone_valid("+0600111222"));
    assert_false(notify_phone_valid("+3460011122a"));
    assert_false(notify_phone_valid("+1234567"));
}

/* ---- rate limiter, circuit, Retry-After ---- */

static void test_token_bucket_never_exceeds_rate(void **state)
{
    (void)state;
    notify_bucket_t b;
    int64_t need = 0;
    notify_bucket_init(&b, 10000 /* 10/s */, 1, 0);
    /* 50 senders at t=0: each is scheduled 100 ms after the previous one */
    int64_t last = -1;
    for (int i = 0; i < 50; i++) {
        int64_t w = notify_bucket_reserve(&b, 0, 60 * 1000000LL, &need);
        assert_int_equal(w, (int64_t)i * 100000);
        assert_true(w > last);
        last = w;
    }
    /* too long a wait: nothing reserved, the needed wait is reported */
    assert_int_equal(notify_bucket_reserve(&b, 0, 1000000, &need), -1);
    assert_int_equal(need, 5000000);
    /* simulate: calls at random times, each using its slot; count per any 1 s window <= rate */
    notify_bucket_t c;
    notify_bucket_init(&c, 2500 /* 2.5/s */, 1, 0);
    int64_t sends[400];
    int ns = 0;
    for (int64_t t = 0; t < 20 * 1000000LL && ns < 400; t += 37000) {
        int64_t w = notify_bucket_reserve(&c, t, 0, &need);
        if (w == 0)
            sends[ns++] = t;
    }
    assert_true(ns > 0);
    for (int i = 0; i < ns; i++) {
        int in_window = 0;
        for (int j = i; j < ns && sends[j] < sends[i] + 1000000; j++)
            in_window++;
        assert_true(in_window <= 3); /* 2.5/s: at most ceil(2.5) in any second, with capacity 1 */
    }
    assert_true(ns >= 45 && ns <= 51); /* ~2.5/s for 20 s */
}

static void test_circuit_breaker(void **state)
{
    (void)state;
    notify_circuit_t c;
    notify_circuit_init(&c, 3, 10 * 1000000LL);
    assert_int_equal(notify_circuit_wait(&c, 0), 0);
    assert_int_equal(notify_circuit_failure(&c, 0), 0);
    assert_int_equal(notify_circuit_failure(&c, 1), 0);
    assert_int_equal(notify_circuit_wait(&c, 2), 0);
    assert_int_equal(notify_circuit_failure(&c, 2), 1); /* third: opens */
    assert_int_equal(notify_circuit_wait(&c, 3), 10 * 1000000LL - 1);
    /* after the cool-down a trial is allowed (half-open); failing it reopens at once */
    assert_int_equal(notify_circuit_wait(&c, 10 * 1000000LL + 2), 0);
    assert_int_equal(notify_circuit_failure(&c, 10 * 1000000LL + 2), 1);
    assert_true(notify_circuit_wait(&c, 10 * 1000000LL + 3) > 0);
    /* success closes */
    notify_circuit_success(&c);
    assert_int_equal(notify_circuit_wait(&c, 10 * 1000000LL + 3), 0);
    assert_int_equal(notify_circuit_failure(&c, 11 * 1000000LL), 0);
    /* a 429 pause */
    notify_circuit_pause(&c, 0, 5000000);
    assert_int_equal(notify_circuit_wait(&c, 1000000), 4000000);
}

static void test_retry_after(void **state)
{
    (void)state;
    assert_int_equal(notify_parse_retry_after("3", 0), 3000);
    assert_int_equal(notify_parse_retry_after(" 0", 0), 0);
    assert_int_equal(notify_parse_retry_after("x", 0), -1);
    assert_int_equal(notify_parse_retry_after(NULL, 0), -1);
    assert_int_equal(notify_parse_retry_after("-1", 0), -1);
    /* an HTTP date 10 s ahead */
    int64_t now = 1445412470LL * 1000000; /* Wed, 21 Oct 2015 07:27:50 GMT */
    assert_int_equal(notify_parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now), 10000);
}

/* ---- settings ---- */

static void clear_env(void)
{
    static const char *const names[] = {"BOVEDA_SMTP_URL",
                                        "BOVEDA_SMTP_USER",
                                        "BOVEDA_SMTP_PASSWORD",
                                        "BOVEDA_SMTP_STARTTLS",
                                        "BOVEDA_SMTP_RATE",
                                        "BOVEDA_MAIL_FROM",
                                        "BOVEDA_SMTP_SECONDARY_URL",
                                        "BOVEDA_SMS_PROVIDER",
                                        "BOVEDA_SMS_URL",
                                        "BOVEDA_SMS_ACCOUNT",
                                        "BOVEDA_SMS_TOKEN",
                                        "BOVEDA_SMS_FROM",
                                        "BOVEDA_SMS_RATE",
                                        "BOVEDA_SMS_SECONDARY_PROVIDER",
                                        "BOVEDA_SMS_SECONDARY_URL",
                                        "BOVEDA_SMS_SECONDARY_FROM",
                                        "BOVEDA_NOTIFY_TIMEOUT_MS",
                                        "BOVEDA_NOTIFY_VISIBILITY_S",
                                        "BOVEDA_NOTIFY_FAILOVER_AFTER",
                                        NULL};
    for (size_t i = 0; names[i] != NULL; i++)
        unsetenv(names[i]);
}

/* The configuration as `boveda serve` would build it from the environment. */
static int load_config(notify_config_t *c, const char *locale, char *err, size_t n)
{
    bv_config_t *cfg = NULL;
    int rc = bv_config_load(NULL, &cfg, err, n);
    if (rc == 0)
        rc = notify_config_load(cfg, c, locale, err, n);
    bv_config_free(cfg);
    return rc;
}

static void expect_config_error(const char *setting)
{
    notify_config_t c;
    char err[256] = "";
    assert_int_equal(load_config(&c, "es", err, sizeof(err)), BV_ECONFIG);
    if (strncmp(err, setting, strlen(setting)) != 0)
        fail_msg("expected an error naming %s, got: %s", setting, err);
}

static void test_config(void **state)
{
    (void)state;
    notify_config_t c;
    char err[256];
    clear_env();
    assert_int_equal(load_config(&c, "en", err, sizeof(err)), 0);
    assert_false(c.email[0].configured);
    assert_false(c.sms[0].configured);
    assert_string_equal(c.locale, "en");
    notify_config_free(&c);

    setenv("BOVEDA_SMTP_URL", "http://mail", 1);
    expect_config_error("BOVEDA_SMTP_URL");
    setenv("BOVEDA_SMTP_URL", "smtp://127.0.0.1:2525", 1);
    expect_config_error("BOVEDA_MAIL_FROM");
    setenv("BOVEDA_MAIL_FROM", "not an address", 1);
    expect_config_error("BOVEDA_MAIL_FROM");
    setenv("BOVEDA_MAIL_FROM", "bank@example.com", 1);
    setenv("BOVEDA_SMTP_RATE", "fast", 1);
    expect_config_error("BOVEDA_SMTP_RATE");
    setenv("BOVEDA_SMTP_RATE", "0.5", 1);
    setenv("BOVEDA_SMTP_STARTTLS", "maybe", 1);
    expect_config_error("BOVEDA_SMTP_STARTTLS");
    setenv("BOVEDA_SMTP_STARTTLS", "required", 1);
    setenv("BOVEDA_SMS_PROVIDER", "carrier-pigeon", 1);
    expect_config_error("BOVEDA_SMS_PROVIDER");
    setenv("BOVEDA_SMS_PROVIDER", "twilio", 1);
    expect_config_error("BOVEDA_SMS_URL");
    setenv("BOVEDA_SMS_URL", "http://127.0.0.1:9/", 1);
    expect_config_error("BOVEDA_SMS_ACCOUNT");
    setenv("BOVEDA_SMS_ACCOUNT", "AC123", 1);
    expect_config_error("BOVEDA_SMS_TOKEN");
    setenv("BOVEDA_SMS_TOKEN", "secret-token", 1);
    expect_config_error("BOVEDA_SMS_FROM");
    setenv("BOVEDA_SMS_FROM", "+15550001111", 1);
    setenv("BOVEDA_SMS_SECONDARY_URL", "http://127.0.0.1:10/hook", 1);
    expect_config_error("BOVEDA_SMS_SECONDARY_PROVIDER");
    setenv("BOVEDA_SMS_SECONDARY_PROVIDER", "webhook", 1);
    expect_config_error("BOVEDA_SMS_SECONDARY_FROM");
    setenv("BOVEDA_SMS_SECONDARY_FROM", "Boveda", 1);
    setenv("BOVEDA_NOTIFY_TIMEOUT_MS", "20000", 1);
    expect_config_error("BOVEDA_NOTIFY_VISIBILITY_S"); /* 30 s < 2 x 20 s + 1 s */
    setenv("BOVEDA_NOTIFY_VISIBILITY_S", "60", 1);
    setenv("BOVEDA_NOTIFY_FAILOVER_AFTER", "0", 1);
    expect_config_error("BOVEDA_NOTIFY_FAILOVER_AFTER");
    setenv("BOVEDA_NOTIFY_FAILOVER_AFTER", "2", 1);
    assert_int_equal(load_config(&c, "es", err, sizeof(err)), 0);
    assert_true(c.email[0].configured);
    assert_int_equal(c.email[0].tls, NOTIFY_TLS_REQUIRED);
    assert_int_equal(c.email[0].rate_milli, 500);
    assert_true(c.sms[0].configured);
    assert_int_equal(c.sms[0].kind, NOTIFY_PROVIDER_TWILIO);
    assert_string_equal(c.sms[0].url, "http://127.0.0.1:9"); /* trailing slash trimmed */
    assert_true(c.sms[1].configured);
    assert_int_equal(c.sms[1].kind, NOTIFY_PROVIDER_WEBHOOK);
    assert_int_equal(c.failover_after, 2);
    assert_string_equal(c.sms[0].name, "sms-primary");
    assert_string_equal(c.sms[1].name, "sms-secondary");
    notify_config_free(&c);
    clear_env();
}

/* ---- publishing ---- */

typedef struct {
    char dir[256];
    bv_store_t *st;
} fx_t;

static int setup(void **state)
{
    fx_t *f = calloc(1, sizeof(*f));
    char db[300];
    snprintf(f->dir, sizeof(f->dir), "/tmp/bv-notify-test-XXXXXX");
    if (mkdtemp(f->dir) == NULL)
        return -1;
    snprintf(db, sizeof(db), "%s/boveda.db", f->dir);
    bv_store_options_t opt = {.path = db, .batch_max = 64, .busy_timeout_ms = 5000};
    if (bv_store_open(&opt, &f->st) != 0 || bv_store_migrate(f->st, NULL) != 0)
        return -1;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx_t *f = *state;
    char cmd[512];
    bv_store_close(f->st);
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
    if (system(cmd) != 0)
        fprintf(stderr, "cannot remove %s\n", f->dir);
    free(f);
    return 0;
}

typedef struct {
    bv_notification_t n;
    char id[BV_UUID_STR_LEN + 1];
    int fail_after;
} pub_t;

static int pub_job(bv_tx_t *tx, void *arg)
{
    pub_t *p = arg;
    int rc = bv_notify_publish_ex(tx, &p->n, p->id);
    return rc < 0 ? rc : p->fail_after ? p->fail_after : rc;
}

static int count_queue(fx_t *f, const char *name)
{
    bv_queue_info_t *qs = NULL;
    size_t n = 0;
    int64_t total = -1;
    assert_int_equal(bv_queue_list(f->st, &qs, &n), 0);
    for (size_t i = 0; i < n; i++)
        if (strcmp(qs[i].name, name) == 0)
            total = qs[i].depth + qs[i].in_flight + qs[i].delayed;
    free(qs);
    return (int)total;
}

static void test_publish_routes_by_channel(void **state)
{
    fx_t *f = *state;
    json_t *v =
        vars("{\"name\":\"Ana\",\"amount\":\"10.00\",\"currency\":\"EUR\",\"account\":\"0049123456789012\","
             "\"date\":\"2026-11-22\"}");
    pub_t both = {.n = {.customer = {"cust-1", "ana@example.com", "+34600111222", "es"},
                        .kind = BV_NOTIFY_MOVEMENT,
                        .channels = BV_NOTIFY_EMAIL | BV_NOTIFY_SMS,
                        .vars = v}};
    assert_int_equal(bv_store_write(f->st, pub_job, &both), 0);
    assert_int_equal(count_queue(f, "email"), 1);
    assert_int_equal(count_queue(f, "sms"), 1);
    /* SMS only */
    pub_t sms = both;
    sms.n.channels = BV_NOTIFY_SMS;
    assert_int_equal(bv_store_write(f->st, pub_job, &sms), 0);
    assert_int_equal(count_queue(f, "email"), 1);
    assert_int_equal(count_queue(f, "sms"), 2);
    /* e-mail wanted but no address: nothing queued, the channel is recorded as skipped */
    pub_t noaddr = both;
    noaddr.n.customer.email = NULL;
    noaddr.n.channels = BV_NOTIFY_EMAIL;
    assert_int_equal(bv_store_write(f->st, pub_job, &noaddr), 0);
    assert_int_equal(count_queue(f, "email"), 1);
    /* rolled back with the caller's job: nothing queued */
    pub_t rb = both;
    rb.fail_after = BV_ECONFLICT;
    assert_int_equal(bv_store_write(f->st, pub_job, &rb), BV_ECONFLICT);
    assert_int_equal(count_queue(f, "email"), 1);
    assert_int_equal(count_queue(f, "sms"), 2);
    /* duplicate suppression on the caller's id */
    pub_t idem = both;
    idem.n.id = "0190f0a0-0000-7000-8000-0000000000aa";
    assert_int_equal(bv_store_write(f->st, pub_job, &idem), 0);
    assert_int_equal(bv_store_write(f->st, pub_job, &idem), 1);
    assert_string_equal(idem.id, "0190f0a0-0000-7000-8000-0000000000aa");
    assert_int_equal(count_queue(f, "email"), 2);
    assert_int_equal(count_queue(f, "sms"), 3);
    json_decref(v);
}

static void test_publish_validation(void **state)
{
    fx_t *f = *state;
    json_t *otp = vars("{\"otp\":\"123456\",\"minutes\":5}");
    pub_t p = {.n = {.customer = {"cust-1", "ana@example.com", "+34600111222", NULL},
                     .kind = BV_NOTIFY_OTP,
                     .channels = BV_NOTIFY_SMS,
                     .vars = otp}};
    assert_int_equal(bv_store_write(f->st, pub_job, &p), 0);
    /* an OTP in a non-OTP template, or the OTP template for another kind: refused */
    pub_t bad = p;
    bad.n.kind = BV_NOTIFY_SECURITY_ALERT;
    assert_int_equal(bv_store_write(f->st, pub_job, &bad), BV_EINVALID);
    bad = p;
    bad.n.customer.phone = "600111222";
    assert_int_equal(bv_store_write(f->st, pub_job, &bad), BV_EINVALID);
    bad = p;
    bad.n.customer.email = "bad address";
    assert_int_equal(bv_store_write(f->st, pub_job, &bad), BV_EINVALID);
    bad = p;
    bad.n.channels = 0;
    assert_int_equal(bv_store_write(f->st, pub_job, &bad), BV_EINVALID);
    bad = p;
    bad.n.customer.locale = "fr";
    assert_int_equal(bv_store_write(f->st, pub_job, &bad), BV_EINVALID);
    bad = p;
    bad.n.customer.id = NULL;
    assert_int_equal(bv_store_write(f->st, pub_job, &bad), BV_EINVALID);
    json_t *missing = vars("{\"otp\":\"1\"}");
    bad = p;
    bad.n.vars = missing;
    assert_int_equal(bv_store_write(f->st, pub_job, &bad), BV_EINVALID);
    /* the OTP itself is not kept in the notification record: no replay possible */
    assert_int_equal(notify_replay(f->st, p.id, NULL, "admin:test", NULL), BV_EEXPIRED);
    json_decref(otp);
    json_decref(missing);
}

static void test_replay_bumps_generation(void **state)
{
    fx_t *f = *state;
    json_t *v = vars("{}");
    pub_t p = {.n = {.customer = {"cust-2", "bo@example.com", NULL, "en"},
                     .kind = BV_NOTIFY_TEST,
                     .channels = BV_NOTIFY_EMAIL,
                     .vars = v}};
    assert_int_equal(bv_store_write(f->st, pub_job, &p), 0);
    int n = 0;
    assert_int_equal(notify_replay(f->st, p.id, "email", "admin:test", &n), 0);
    assert_int_equal(n, 1);
    assert_int_equal(count_queue(f, "email"), 2);
    assert_int_equal(notify_replay(f->st, p.id, "sms", "admin:test", &n), BV_ENOTFOUND);
    assert_int_equal(notify_replay(f->st, "0190f0a0-0000-7000-8000-0000000000ff", NULL, "admin:test", &n),
                     BV_ENOTFOUND);
    json_decref(v);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mask),
        cmocka_unit_test(test_render_movement_es_en_masked),
        cmocka_unit_test(test_render_masks_account_variables_without_filter),
        cmocka_unit_test(test_render_otp_confined),
        cmocka_unit_test(test_render_errors),
        cmocka_unit_test(test_mime_alternative),
        cmocka_unit_test(test_mime_attachment),
        cmocka_unit_test(test_base64_and_contacts),
        cmocka_unit_test(test_token_bucket_never_exceeds_rate),
        cmocka_unit_test(test_circuit_breaker),
        cmocka_unit_test(test_retry_after),
        cmocka_unit_test(test_config),
        cmocka_unit_test_setup_teardown(test_publish_routes_by_channel, setup, teardown),
        cmocka_unit_test_setup_teardown(test_publish_validation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_replay_bumps_generation, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
