#include "base/util.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "base/errors.h"

int64_t bv_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

int64_t bv_mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

void bv_random(void *buf, size_t len)
{
    unsigned char *p = buf;
    while (len > 0) {
        ssize_t r = getrandom(p, len, 0);
        if (r < 0) {
            perror("getrandom");
            abort();
        }
        p += r;
        len -= (size_t)r;
    }
}

/* Random bytes for ids (not secrets) come from a per-thread buffer refilled from the kernel
 * CSPRNG 4 KiB at a time, instead of one getrandom(2) per id. */
static void id_random(unsigned char *out, size_t len)
{
    static _Thread_local unsigned char pool[4096];
    static _Thread_local size_t avail;
    if (avail < len) {
        bv_random(pool, sizeof(pool));
        avail = sizeof(pool);
    }
    memcpy(out, pool + sizeof(pool) - avail, len);
    avail -= len;
}

/* 8-4-4-4-12 lowercase hex of 16 bytes */
static void uuid_format(const unsigned char u[16], char out[BV_UUID_STR_LEN + 1])
{
    static const char hexd[] = "0123456789abcdef";
    for (int i = 0, o = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            out[o++] = '-';
        out[o++] = hexd[u[i] >> 4];
        out[o++] = hexd[u[i] & 15];
    }
    out[BV_UUID_STR_LEN] = '\0';
}

void bv_uuid7_derive(const char *from, const char *label, char out[BV_UUID_STR_LEN + 1])
{
    unsigned char h[32], u[16];
    unsigned int len = sizeof(h);
    EVP_Digest(label, strlen(label), h, &len, EVP_sha256(), NULL);
    memcpy(u, h, 16);
    for (int i = 0, k = 0; i < 6 && from[k] != '\0'; i++) { /* the 48-bit timestamp of `from` */
        unsigned v = 0;
        for (int j = 0; j < 2 && from[k] != '\0'; k++) {
            char c = from[k];
            if (c == '-')
                continue;
            v = v * 16 + (unsigned)(c >= 'a' ? c - 'a' + 10 : c >= 'A' ? c - 'A' + 10 : c - '0');
            j++;
        }
        u[i] = (unsigned char)v;
    }
    u[6] = (unsigned char)(0x70 | (u[6] & 0x0f)); /* version 7 */
    u[8] = (unsigned char)(0x80 | (u[8] & 0x3f)); /* RFC 9562 variant */
    uuid_format(u, out);
}

void bv_uuid7(char out[BV_UUID_STR_LEN + 1])
{
    static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
    static uint64_t last_ms;
    static uint16_t counter;
    unsigned char b[16];
    id_random(b, sizeof(b));
    uint64_t ms = (uint64_t)(bv_now_us() / 1000);
    pthread_mutex_lock(&mu);
    if (ms <= last_ms) {
        ms = last_ms;
        if (++counter > 0x0fff) { /* counter exhausted: borrow the next millisecond */
            ms = ++last_ms;
            counter = 0;
        }
    } else {
        last_ms = ms;
        counter = (uint16_t)(((b[6] << 8) | b[7]) & 0x01ff); /* random start, room to grow */
    }
    uint16_t c = counter;
    pthread_mutex_unlock(&mu);
    for (int i = 0; i < 6; i++)
        b[i] = (unsigned char)(ms >> (40 - 8 * i));
    b[6] = (unsigned char)(0x70 | ((c >> 8) & 0x0f));
    b[7] = (unsigned char)(c & 0xff);
    b[8] = (unsigned char)(0x80 | (b[8] & 0x3f));
    uuid_format(b, out);
}

int bv_uuid_valid(const char *s)
{
    if (s == NULL || strlen(s) != BV_UUID_STR_LEN)
        return 0;
    for (int i = 0; i < BV_UUID_STR_LEN; i++) {
        char c = s[i];
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (c != '-')
                return 0;
        } else if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'))) {
            return 0;
        }
    }
    return 1;
}

void bv_time_format(int64_t us, char out[32])
{
    time_t sec = (time_t)(us / 1000000);
    long frac = (long)(us % 1000000);
    if (frac < 0) {
        frac += 1000000;
        sec -= 1;
    }
    struct tm tm;
    gmtime_r(&sec, &tm);
    if (tm.tm_year > 9999 - 1900 || tm.tm_year < -1900)
        tm.tm_year = 9999 - 1900;
    /* by hand: this runs for every time in every JSON answer and every ledger event */
    int year = tm.tm_year + 1900, f = (int)frac;
    const int parts[5] = {tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec};
    const char seps[5] = {'-', 'T', ':', ':', '.'};
    char *o = out;
    *o++ = (char)('0' + year / 1000);
    *o++ = (char)('0' + year / 100 % 10);
    *o++ = (char)('0' + year / 10 % 10);
    *o++ = (char)('0' + year % 10);
    *o++ = '-';
    for (int i = 0; i < 5; i++) {
        *o++ = (char)('0' + parts[i] / 10);
        *o++ = (char)('0' + parts[i] % 10);
        *o++ = seps[i];
    }
    for (int d = 100000; d > 0; d /= 10)
        *o++ = (char)('0' + f / d % 10);
    *o++ = 'Z';
    *o = '\0';
}

static int digits(const char **p, int n, int *out)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        char c = (*p)[i];
        if (c < '0' || c > '9')
            return -1;
        v = v * 10 + (c - '0');
    }
    *p += n;
    *out = v;
    return 0;
}

int bv_time_parse(const char *s, int64_t *us_out)
{
    int y, mo, d, h = 0, mi = 0, se = 0;
    long frac_us = 0;
    long offset_s = 0;
    const char *p = s;
    if (s == NULL || digits(&p, 4, &y) || *p++ != '-' || digits(&p, 2, &mo) || *p++ != '-' ||
        digits(&p, 2, &d))
        return BV_EINVALID;
    if (*p != '\0') {
        if (*p != 'T' && *p != 't' && *p != ' ')
            return BV_EINVALID;
        p++;
        if (digits(&p, 2, &h) || *p++ != ':' || digits(&p, 2, &mi) || *p++ != ':' || digits(&p, 2, &se))
            return BV_EINVALID;
        if (*p == '.') {
            p++;
            int n = 0;
            while (*p >= '0' && *p <= '9') {
                if (n < 6) {
                    frac_us = frac_us * 10 + (*p - '0');
                }
                n++;
                p++;
            }
            if (n == 0)
                return BV_EINVALID;
            for (int i = n; i < 6; i++)
                frac_us *= 10;
        }
        if (*p == 'Z' || *p == 'z') {
            p++;
        } else if (*p == '+' || *p == '-') {
            int sign = *p == '-' ? -1 : 1, oh, om;
            p++;
            if (digits(&p, 2, &oh) || *p++ != ':' || digits(&p, 2, &om) || oh > 23 || om > 59)
                return BV_EINVALID;
            offset_s = sign * (oh * 3600L + om * 60L);
        } else {
            return BV_EINVALID;
        }
        if (*p != '\0')
            return BV_EINVALID;
    }
    static const int mdays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (y < 1970 || y > 9999 || mo < 1 || mo > 12 || d < 1 || d > mdays[mo - 1] || h > 23 || mi > 59 ||
        se > 60)
        return BV_EINVALID;
    int leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    if (mo == 2 && d == 29 && !leap)
        return BV_EINVALID;
    if (se == 60)
        se = 59; /* leap second: clamp */
    /* days from civil (H. Hinnant's algorithm) */
    int yy = y - (mo <= 2);
    int era = yy / 400;
    int yoe = yy - era * 400;
    int doy = (153 * (mo + (mo > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    int64_t days = (int64_t)era * 146097 + doe - 719468;
    int64_t sec = days * 86400 + h * 3600 + mi * 60 + se - offset_s;
    *us_out = sec * 1000000 + frac_us;
    return 0;
}

int bv_ct_equal(const void *a, size_t alen, const void *b, size_t blen)
{
    if (alen != blen)
        return 0;
    return CRYPTO_memcmp(a, b, alen) == 0;
}

void bv_hex(const void *in, size_t len, char *out)
{
    static const char hx[] = "0123456789abcdef";
    const unsigned char *p = in;
    for (size_t i = 0; i < len; i++) {
        out[2 * i] = hx[p[i] >> 4];
        out[2 * i + 1] = hx[p[i] & 15];
    }
    out[2 * len] = '\0';
}

static int buf_reserve(bv_buf_t *b, size_t extra)
{
    if (b->len + extra + 1 <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + extra + 1)
        cap *= 2;
    char *d = realloc(b->data, cap);
    if (d == NULL)
        return BV_ENOMEM;
    b->data = d;
    b->cap = cap;
    return 0;
}

int bv_buf_append(bv_buf_t *b, const void *p, size_t len)
{
    if (buf_reserve(b, len) != 0)
        return BV_ENOMEM;
    if (len > 0)
        memcpy(b->data + b->len, p, len);
    b->len += len;
    b->data[b->len] = '\0';
    return 0;
}

int bv_buf_puts(bv_buf_t *b, const char *s)
{
    return bv_buf_append(b, s, strlen(s));
}

int bv_buf_printf(bv_buf_t *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0 || buf_reserve(b, (size_t)n) != 0)
        return BV_ENOMEM;
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return 0;
}

void bv_buf_reset(bv_buf_t *b)
{
    b->len = 0;
    if (b->data)
        b->data[0] = '\0';
}

void bv_buf_free(bv_buf_t *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

struct bv_arena_chunk {
    bv_arena_chunk_t *next;
    size_t used, cap;
    _Alignas(16) unsigned char mem[];
};

void *bv_arena_alloc(bv_arena_t *a, size_t len)
{
    len = (len + 15) & ~(size_t)15;
    bv_arena_chunk_t *c = a->head;
    if (c == NULL || c->cap - c->used < len) {
        size_t cap = len > 4000 ? len : 4000;
        c = malloc(sizeof(*c) + cap);
        if (c == NULL)
            return NULL;
        c->used = 0;
        c->cap = cap;
        c->next = a->head;
        a->head = c;
    }
    void *p = c->mem + c->used;
    c->used += len;
    return p;
}

char *bv_arena_strndup(bv_arena_t *a, const char *s, size_t len)
{
    char *p = bv_arena_alloc(a, len + 1);
    if (p != NULL) {
        memcpy(p, s, len);
        p[len] = '\0';
    }
    return p;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

char *bv_url_decode(bv_arena_t *a, const char *s, size_t len, int plus_is_space)
{
    char *out = bv_arena_alloc(a, len + 1);
    size_t o = 0;
    if (out == NULL)
        return NULL;
    for (size_t i = 0; i < len; i++) {
        if (s[i] == '%') {
            int h, l;
            if (i + 2 >= len || (h = hexval(s[i + 1])) < 0 || (l = hexval(s[i + 2])) < 0 || h + l == 0)
                return NULL;
            out[o++] = (char)(h * 16 + l);
            i += 2;
        } else if (s[i] == '+' && plus_is_space) {
            out[o++] = ' ';
        } else if (s[i] == '\0') {
            return NULL;
        } else {
            out[o++] = s[i];
        }
    }
    out[o] = '\0';
    return out;
}

void bv_arena_free(bv_arena_t *a)
{
    bv_arena_chunk_t *c = a->head;
    while (c != NULL) {
        bv_arena_chunk_t *n = c->next;
        free(c);
        c = n;
    }
    a->head = NULL;
}
