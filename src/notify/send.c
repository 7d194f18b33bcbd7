/* The outbound adapters, all through libcurl with timeouts: SMTP (smtp:// with STARTTLS,
 * smtps:// implicit TLS, AUTH) and SMS over HTTP (Twilio's REST shape, or a JSON webhook).
 * Never logs message content or credentials. */
#include <curl/curl.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "base/log.h"
#include "notify/internal.h"

typedef struct {
    const char *data;
    size_t len, off;
} reader_t;

static size_t on_read(char *buf, size_t size, size_t nitems, void *arg)
{
    reader_t *r = arg;
    size_t n = size * nitems;
    if (n > r->len - r->off)
        n = r->len - r->off;
    memcpy(buf, r->data + r->off, n);
    r->off += n;
    return n;
}

static void common_opts(CURL *h, const char *ca_file, int64_t timeout_ms)
{
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, (long)(timeout_ms < 5000 ? timeout_ms : 5000));
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)timeout_ms);
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 2L);
    if (ca_file != NULL)
        curl_easy_setopt(h, CURLOPT_CAINFO, ca_file);
}

/* 1 for smtp://127.x, smtp://localhost, smtp://[::1] */
static int loopback_url(const char *url)
{
    const char *h = strstr(url, "://");
    h = h != NULL ? h + 3 : url;
    return strncmp(h, "127.", 4) == 0 || strncmp(h, "localhost", 9) == 0 || strncmp(h, "[::1]", 5) == 0;
}

int notify_smtp_send(const notify_provider_conf_t *p, const char *ca_file, int64_t timeout_ms, const char *to,
                     const bv_buf_t *message, const char *message_id, notify_send_result_t *res)
{
    CURL *h = curl_easy_init();
    struct curl_slist *rcpt = NULL;
    char from[300], rc_to[300];
    reader_t rd = {message->data, message->len, 0};
    long code = 0;
    CURLcode cc;
    memset(res, 0, sizeof(*res));
    res->retry_after_ms = -1;
    if (h == NULL)
        return BV_ENOMEM;
    snprintf(from, sizeof(from), "<%s>", p->from);
    snprintf(rc_to, sizeof(rc_to), "<%s>", to);
    rcpt = curl_slist_append(NULL, rc_to);
    common_opts(h, ca_file, timeout_ms);
    curl_easy_setopt(h, CURLOPT_URL, p->url);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "smtp,smtps");
    /* STARTTLS when offered; required when asked for, and whenever credentials would cross a
       network in the clear if a man in the middle stripped the offer */
    if (strncmp(p->url, "smtp://", 7) == 0)
        curl_easy_setopt(h, CURLOPT_USE_SSL,
                         (long)(p->tls == NOTIFY_TLS_REQUIRED || (p->user != NULL && !loopback_url(p->url))
                                    ? CURLUSESSL_ALL
                                    : CURLUSESSL_TRY));
    if (p->user != NULL) {
        curl_easy_setopt(h, CURLOPT_USERNAME, p->user);
        curl_easy_setopt(h, CURLOPT_PASSWORD, p->secret);
    }
    curl_easy_setopt(h, CURLOPT_MAIL_FROM, from);
    curl_easy_setopt(h, CURLOPT_MAIL_RCPT, rcpt);
    curl_easy_setopt(h, CURLOPT_READFUNCTION, on_read);
    curl_easy_setopt(h, CURLOPT_READDATA, &rd);
    curl_easy_setopt(h, CURLOPT_UPLOAD, 1L);
    curl_easy_setopt(h, CURLOPT_INFILESIZE_LARGE, (curl_off_t)message->len);
    cc = curl_easy_perform(h);
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &code);
    if (cc == CURLE_OK) {
        res->ok = 1;
        snprintf(res->provider_message_id, sizeof(res->provider_message_id), "%s", message_id);
    } else {
        /* 550-553: this mailbox is refused (permanent for the message); any other failure is
         * the server's or the network's (transient: retry, count toward failover) */
        res->permanent = code >= 550 && code <= 553;
        snprintf(res->error, sizeof(res->error), "smtp: %s (reply %ld)", curl_easy_strerror(cc), code);
    }
    curl_slist_free_all(rcpt);
    curl_easy_cleanup(h);
    return 0;
}

typedef struct {
    bv_buf_t body;
    char retry_after[64];
} http_resp_t;

static size_t on_write(char *ptr, size_t size, size_t n, void *arg)
{
    http_resp_t *r = arg;
    size_t len = size * n;
    if (r->body.len + len > 64 * 1024) /* a provider's answer is small: ignore the rest */
        return len;
    return bv_buf_append(&r->body, ptr, len) == 0 ? len : 0;
}

static size_t on_header(char *buf, size_t size, size_t n, void *arg)
{
    http_resp_t *r = arg;
    size_t len = size * n;
    if (len > 12 && strncasecmp(buf, "retry-after:", 12) == 0) {
        size_t vl = len - 12;
        if (vl >= sizeof(r->retry_after))
            vl = sizeof(r->retry_after) - 1;
        memcpy(r->retry_after, buf + 12, vl);
        r->retry_after[vl] = '\0';
        char *e = strpbrk(r->retry_after, "\r\n");
        if (e != NULL)
            *e = '\0';
    }
    return len;
}

int notify_sms_send(const notify_provider_conf_t *p, const char *ca_file, int64_t timeout_ms, const char *to,
                    const char *text, const char *id, notify_send_result_t *res)
{
    CURL *h = curl_easy_init();
    struct curl_slist *hdrs = NULL;
    http_resp_t resp = {0};
    bv_buf_t url = {0}, post = {0};
    char *json_body = NULL;
    long status = 0;
    CURLcode cc;
    int rc = BV_ENOMEM;
    memset(res, 0, sizeof(*res));
    res->retry_after_ms = -1;
    if (h == NULL)
        return BV_ENOMEM;
    common_opts(h, ca_file, timeout_ms);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    if (p->kind == NOTIFY_PROVIDER_TWILIO) {
        char *e_to = curl_easy_escape(h, to, 0), *e_from = curl_easy_escape(h, p->from, 0),
             *e_body = curl_easy_escape(h, text, 0);
        int ok = e_to != NULL && e_from != NULL && e_body != NULL &&
                 bv_buf_printf(&url, "%s/2010-04-01/Accounts/%s/Messages.json", p->url, p->user) == 0 &&
                 bv_buf_printf(&post, "To=%s&From=%s&Body=%s", e_to, e_from, e_body) == 0;
        if (e_body != NULL)
            OPENSSL_cleanse(e_body, strlen(e_body));
        curl_free(e_to);
        curl_free(e_from);
        curl_free(e_body);
        if (!ok)
            goto out;
        curl_easy_setopt(h, CURLOPT_URL, url.data);
        curl_easy_setopt(h, CURLOPT_HTTPAUTH, (long)CURLAUTH_BASIC);
        curl_easy_setopt(h, CURLOPT_USERNAME, p->user);
        curl_easy_setopt(h, CURLOPT_PASSWORD, p->secret);
        hdrs = curl_slist_append(hdrs, "Content-Type: application/x-www-form-urlencoded");
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, post.data);
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, (long)post.len);
    } else {
        json_t *o = json_pack("{s:s, s:s, s:s, s:s}", "to", to, "from", p->from, "body", text, "id", id);
        json_body = o != NULL ? json_dumps(o, JSON_COMPACT) : NULL;
        json_decref(o);
        if (json_body == NULL)
            goto out;
        curl_easy_setopt(h, CURLOPT_URL, p->url);
        hdrs = curl_slist_append(hdrs, "Content-Type: application/json");
        if (p->secret != NULL) {
            bv_buf_t auth = {0};
            if (bv_buf_printf(&auth, "Authorization: Bearer %s", p->secret) == 0)
                hdrs = curl_slist_append(hdrs, auth.data);
            if (auth.data != NULL)
                OPENSSL_cleanse(auth.data, auth.len);
            bv_buf_free(&auth);
        }
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, json_body);
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, (long)strlen(json_body));
    }
    hdrs = curl_slist_append(hdrs, "Accept: application/json");
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_write);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &resp);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, &resp);
    cc = curl_easy_perform(h);
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    rc = 0;
    if (cc != CURLE_OK) {
        snprintf(res->error, sizeof(res->error), "http: %s", curl_easy_strerror(cc));
    } else if (status >= 200 && status < 300) {
        json_t *r = resp.body.data != NULL ? json_loads(resp.body.data, 0, NULL) : NULL;
        const char *pid =
            json_string_value(json_object_get(r, p->kind == NOTIFY_PROVIDER_TWILIO ? "sid" : "id"));
        res->ok = 1;
        snprintf(res->provider_message_id, sizeof(res->provider_message_id), "%s", pid != NULL ? pid : "");
        json_decref(r);
    } else if (status == 429) {
        res->retry_after_ms =
            notify_parse_retry_after(resp.retry_after[0] ? resp.retry_after : NULL, bv_now_us());
        if (res->retry_after_ms < 0)
            res->retry_after_ms = 1000;
        snprintf(res->error, sizeof(res->error), "http 429 (retry after %lld ms)",
                 (long long)res->retry_after_ms);
    } else {
        /* 4xx but 401/403/408/409/425/429: the message itself is refused (bad number...);
         * credentials and 5xx are the provider's problem */
        res->permanent = status >= 400 && status < 500 && status != 401 && status != 403 && status != 408 &&
                         status != 409 && status != 425;
        snprintf(res->error, sizeof(res->error), "http %ld", status);
    }
out:
    if (post.data != NULL)
        OPENSSL_cleanse(post.data, post.len);
    if (json_body != NULL)
        OPENSSL_cleanse(json_body, strlen(json_body));
    free(json_body);
    bv_buf_free(&post);
    bv_buf_free(&url);
    bv_buf_free(&resp.body);
    curl_slist_free_all(hdrs);
    curl_easy_cleanup(h);
    return rc;
}
