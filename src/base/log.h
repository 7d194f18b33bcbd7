/* Structured logging: one JSON object per line on stderr, written with a single write(2)
 * so lines from different threads never interleave. Never pass secrets, bodies,
 * Authorization headers or cookies to these functions. */
#ifndef BV_BASE_LOG_H
#define BV_BASE_LOG_H

#include <stdarg.h>
#include <stddef.h>

typedef enum { BV_LOG_DEBUG = 0, BV_LOG_INFO, BV_LOG_WARN, BV_LOG_ERROR } bv_log_level_t;

/* Parses "debug|info|warn|error"; returns 0 or BV_EINVALID. */
int bv_log_parse_level(const char *s, bv_log_level_t *out);
void bv_log_set_level(bv_log_level_t level);
int bv_log_enabled(bv_log_level_t level);

/* Emits {"ts":...,"level":...,"msg":msg, ...fields}. `fields` is a printf format that
 * must expand to zero or more `"key":value` JSON members separated by commas (values
 * escaped by the caller with bv_json_escape where they come from outside), or NULL.
 * `request_id` may be NULL. */
void bv_log(bv_log_level_t level, const char *request_id, const char *msg, const char *fields, ...)
    __attribute__((format(printf, 4, 5)));

#define bv_log_info(msg, ...) bv_log(BV_LOG_INFO, NULL, msg, __VA_ARGS__)
#define bv_log_warn(msg, ...) bv_log(BV_LOG_WARN, NULL, msg, __VA_ARGS__)
#define bv_log_error(msg, ...) bv_log(BV_LOG_ERROR, NULL, msg, __VA_ARGS__)
#define bv_log_debug(msg, ...) bv_log(BV_LOG_DEBUG, NULL, msg, __VA_ARGS__)

/* Writes `s` JSON-escaped (without quotes) into out (size n, always NUL-terminated,
 * truncated at n-1). Returns the number of bytes written. */
size_t bv_json_escape(char *out, size_t n, const char *s);

#endif
