#include "base/log.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "base/errors.h"

static volatile bv_log_level_t min_level = BV_LOG_INFO;
static const char *const names[] = {"debug", "info", "warn", "error"};

int bv_log_parse_level(const char *s, bv_log_level_t *out)
{
    for (int i = 0; i < 4; i++) {
        if (strcasecmp(s, names[i]) == 0) {
            *out = (bv_log_level_t)i;
            return 0;
        }
    }
    return BV_EINVALID;
}

void bv_log_set_level(bv_log_level_t level) { min_level = level; }
int bv_log_enabled(bv_log_level_t level) { return level >= min_level; }

size_t bv_json_escape(char *out, size_t n, const char *s)
{
    size_t o = 0;
    if (n == 0)
        return 0;
    for (; s != NULL && *s != '\0'; s++) {
        unsigned char c = (unsigned char)*s;
        char tmp[8];
        const char *rep = NULL;
        size_t rlen = 1;
        switch (c) {
        case '"': rep = "\\\""; rlen = 2; break;
        case '\\': rep = "\\\\"; rlen = 2; break;
        case '\n': rep = "\\n"; rlen = 2; break;
        case '\r': rep = "\\r"; rlen = 2; break;
        case '\t': rep = "\\t"; rlen = 2; break;
        default:
            if (c < 0x20 || c == 0x7f) {
                snprintf(tmp, sizeof(tmp), "\\u%04x", c);
                rep = tmp;
                rlen = 6;
            }
        }
        if (o + (rep ? rlen : 1) >= n)
            break;
        if (rep) {
            memcpy(out + o, rep, rlen);
            o += rlen;
        } else {
            out[o++] = (char)c;
        }
    }
    out[o] = '\0';
    return o;
}

void bv_log(bv_log_level_t level, const char *request_id, const char *msg, const char *fields, ...)
{
    if (level < min_level)
        return;
    char line[4096];
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    size_t off = (size_t)snprintf(line, sizeof(line),
                                  "{\"ts\":\"%04d-%02d-%02dT%02d:%02d:%02d.%06ldZ\",\"level\":\"%s\",\"msg\":\"",
                                  tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
                                  tm.tm_sec, ts.tv_nsec / 1000, names[level]);
    off += bv_json_escape(line + off, sizeof(line) - off - 64, msg);
    off += (size_t)snprintf(line + off, sizeof(line) - off, "\"");
    if (request_id != NULL && off < sizeof(line)) {
        off += (size_t)snprintf(line + off, sizeof(line) - off, ",\"request_id\":\"");
        if (off < sizeof(line))
            off += bv_json_escape(line + off, sizeof(line) - off - 8, request_id);
        if (off < sizeof(line))
            off += (size_t)snprintf(line + off, sizeof(line) - off, "\"");
    }
    if (fields != NULL && fields[0] != '\0' && off + 2 < sizeof(line)) {
        line[off++] = ',';
        va_list ap;
        va_start(ap, fields);
        int w = vsnprintf(line + off, sizeof(line) - off - 2, fields, ap);
        va_end(ap);
        if (w > 0)
            off += (size_t)w < sizeof(line) - off - 2 ? (size_t)w : sizeof(line) - off - 3;
    }
    if (off > sizeof(line) - 3)
        off = sizeof(line) - 3;
    line[off++] = '}';
    line[off++] = '\n';
    ssize_t r = write(STDERR_FILENO, line, off);
    (void)r;
}
