/* Small shared helpers: clocks, random bytes, UUIDv7, RFC 3339 time, constant-time compare. */
#ifndef BV_BASE_UTIL_H
#define BV_BASE_UTIL_H

#include <stddef.h>
#include <stdint.h>

#define BV_UUID_STR_LEN 36

/* Microseconds since the Unix epoch (UTC wall clock). */
int64_t bv_now_us(void);
/* Monotonic microseconds, for durations and deadlines. */
int64_t bv_mono_us(void);

/* Fills buf with cryptographically secure random bytes; aborts if the kernel CSPRNG fails. */
void bv_random(void *buf, size_t len);

/* UUIDv7 (RFC 9562 §5.7) as a lower-case string into out[37]; monotonic within the process
 * (a 12-bit counter in rand_a orders ids created in the same millisecond). The random bits
 * are unpredictable but ids are identifiers, not secrets: never use one as a token. */
void bv_uuid7(char out[BV_UUID_STR_LEN + 1]);
/* A UUIDv7 derived from another and a label, the same every time (ids that make a replayed
 * step idempotent, e.g. the notification of an event): the timestamp of `from` (so it sorts
 * with it; `from` must be a UUIDv7 string), the other bits from SHA-256(label). */
void bv_uuid7_derive(const char *from, const char *label, char out[BV_UUID_STR_LEN + 1]);
/* 1 if s is a canonical lower- or upper-case UUID string of any version, else 0. */
int bv_uuid_valid(const char *s);

/* Formats microseconds since the epoch as RFC 3339 UTC with microseconds into out[32]. */
void bv_time_format(int64_t us, char out[32]);
/* Parses an RFC 3339 timestamp (Z or +hh:mm offset, optional fraction) or a plain date
 * "YYYY-MM-DD" (midnight UTC) into microseconds; returns 0 or BV_EINVALID. */
int bv_time_parse(const char *s, int64_t *us_out);

/* Constant-time equality of two byte strings (length is not secret). 1 if equal. */
int bv_ct_equal(const void *a, size_t alen, const void *b, size_t blen);

/* Lowercase hex of len bytes into out (2*len+1). */
void bv_hex(const void *in, size_t len, char *out);

/* Growable byte buffer. Zero-initialise; bv_buf_free releases. All appends return 0 or
 * BV_ENOMEM. data is always NUL-terminated when non-NULL. */
typedef struct {
    char *data;
    size_t len;
    size_t cap;
} bv_buf_t;
int bv_buf_append(bv_buf_t *b, const void *p, size_t len);
int bv_buf_puts(bv_buf_t *b, const char *s);
int bv_buf_printf(bv_buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void bv_buf_reset(bv_buf_t *b);
void bv_buf_free(bv_buf_t *b);

/* Bump allocator for request-scoped data handed across threads. Zero-initialise;
 * bv_arena_free releases everything at once. Allocation returns NULL on OOM. */
typedef struct bv_arena_chunk bv_arena_chunk_t;
typedef struct {
    bv_arena_chunk_t *head;
} bv_arena_t;
void *bv_arena_alloc(bv_arena_t *a, size_t len);
char *bv_arena_strndup(bv_arena_t *a, const char *s, size_t len);

/* Percent-decodes s[0..len) (RFC 3986 §2.1) into the arena; `plus_is_space` for form and
 * query encoding. NULL on a malformed escape or an encoded or raw NUL. */
char *bv_url_decode(bv_arena_t *a, const char *s, size_t len, int plus_is_space);
void bv_arena_free(bv_arena_t *a);

#endif
