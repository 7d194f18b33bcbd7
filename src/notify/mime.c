/* E-mail messages (RFC 5322 + MIME, RFC 2045/2046/2047): text + HTML alternatives,
 * attachments as base64 parts, UTF-8 subjects as encoded words. */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "base/base64.h"
#include "notify/internal.h"

int notify_base64(const void *in, size_t len, int wrap, bv_buf_t *out)
{
    return bv_b64_encode_buf(BV_B64_STD, BV_B64_PAD | (wrap ? BV_B64_WRAP76 : 0), in, len, out);
}

int notify_email_valid(const char *s)
{
    const char *at;
    size_t len = s != NULL ? strlen(s) : 0;
    if (len < 3 || len > 254 || strpbrk(s, " \t\r\n<>()[],;:\\\"") != NULL)
        return 0;
    at = strchr(s, '@');
    if (at == NULL || at == s || strchr(at + 1, '@') != NULL || at[1] == '\0' || at - s > 64)
        return 0;
    for (const char *p = s; *p; p++)
        if ((unsigned char)*p < 0x21 || (unsigned char)*p == 0x7f)
            return 0;
    return strchr(at + 1, '.') != NULL || strcmp(at + 1, "localhost") == 0;
}

int notify_phone_valid(const char *s)
{
    size_t n;
    if (s == NULL || s[0] != '+' || s[1] < '1' || s[1] > '9')
        return 0;
    n = strlen(s + 1);
    return n >= 8 && n <= 15 && strspn(s + 1, "0123456789") == n;
}

static int header_ok(const char *s)
{
    return s != NULL && strpbrk(s, "\r\n") == NULL;
}

static void boundary(char out[40], const char *tag)
{
    unsigned char r[12];
    char hex[25];
    bv_random(r, sizeof(r));
    bv_hex(r, sizeof(r), hex);
    snprintf(out, 40, "=_bv_%s_%s", tag, hex);
}

/* RFC 5322 date: "Sun, 22 Nov 2026 09:14:14 +0000" */
static void rfc5322_date(int64_t us, char out[40])
{
    time_t t = (time_t)(us / 1000000);
    struct tm tm;
    gmtime_r(&t, &tm);
    static const char *const days[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
    static const char *const months[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                         "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    snprintf(out, 40, "%s, %02d %s %04d %02d:%02d:%02d +0000", days[tm.tm_wday], tm.tm_mday,
             months[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
}

static int text_part(bv_buf_t *o, const char *ctype, const char *body)
{
    int rc = bv_buf_printf(o, "Content-Type: %s; charset=UTF-8\r\nContent-Transfer-Encoding: base64\r\n\r\n",
                           ctype);
    if (rc == 0)
        rc = notify_base64(body, strlen(body), 1, o);
    if (rc == 0)
        rc = bv_buf_puts(o, "\r\n");
    return rc;
}

static int filename_ok(const char *f)
{
    size_t n = f != NULL ? strlen(f) : 0;
    return n > 0 && n <= 100 &&
           strspn(f, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-") == n && f[0] != '.';
}

static int ctype_ok(const char *c)
{
    size_t n = c != NULL ? strlen(c) : 0;
    return n > 2 && n <= 100 && strchr(c, '/') != NULL &&
           strspn(c, "abcdefghijklmnopqrstuvwxyz0123456789.+-/") == n;
}

int notify_mime_build(const notify_mime_t *m, bv_buf_t *o)
{
    char alt[40], mixed[40], date[40];
    int rc = 0;
    if (!notify_email_valid(m->from) || !notify_email_valid(m->to) || !header_ok(m->subject) ||
        !header_ok(m->message_id) || m->text == NULL || m->html == NULL ||
        strpbrk(m->message_id, "<> ") != NULL)
        return BV_EINVALID;
    for (size_t i = 0; i < m->n_attachments; i++)
        if (!filename_ok(m->attachments[i].filename) || !ctype_ok(m->attachments[i].content_type) ||
            (m->attachments[i].data == NULL && m->attachments[i].len > 0))
            return BV_EINVALID;
    boundary(alt, "alt");
    boundary(mixed, "mix");
    rfc5322_date(m->date_us, date);
    rc = bv_buf_printf(o, "From: <%s>\r\nTo: <%s>\r\nSubject: =?UTF-8?B?", m->from, m->to);
    if (rc == 0)
        rc = notify_base64(m->subject, strlen(m->subject), 0, o);
    if (rc == 0)
        rc = bv_buf_printf(o, "?=\r\nDate: %s\r\nMessage-ID: <%s>\r\nMIME-Version: 1.0\r\n", date,
                           m->message_id);
    if (rc == 0 && m->n_attachments > 0)
        rc = bv_buf_printf(o, "Content-Type: multipart/mixed; boundary=\"%s\"\r\n\r\n--%s\r\n", mixed, mixed);
    if (rc == 0)
        rc = bv_buf_printf(o, "Content-Type: multipart/alternative; boundary=\"%s\"\r\n\r\n--%s\r\n", alt,
                           alt);
    if (rc == 0)
        rc = text_part(o, "text/plain", m->text);
    if (rc == 0)
        rc = bv_buf_printf(o, "--%s\r\n", alt);
    if (rc == 0)
        rc = text_part(o, "text/html", m->html);
    if (rc == 0)
        rc = bv_buf_printf(o, "--%s--\r\n", alt);
    for (size_t i = 0; rc == 0 && i < m->n_attachments; i++) {
        const notify_mime_part_t *a = &m->attachments[i];
        rc = bv_buf_printf(o,
                           "--%s\r\nContent-Type: %s; name=\"%s\"\r\nContent-Disposition: attachment; "
                           "filename=\"%s\"\r\nContent-Transfer-Encoding: base64\r\n\r\n",
                           mixed, a->content_type, a->filename, a->filename);
        if (rc == 0)
            rc = notify_base64(a->data, a->len, 1, o);
        if (rc == 0)
            rc = bv_buf_puts(o, "\r\n");
    }
    if (rc == 0 && m->n_attachments > 0)
        rc = bv_buf_printf(o, "--%s--\r\n", mixed);
    return rc == 0 ? 0 : BV_ENOMEM;
}
