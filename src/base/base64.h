/* Base64 (RFC 4648): the standard alphabet (§4, MIME, PHC strings) and the URL-safe one
 * (§5, JOSE, tokens, cursors). The one implementation every module uses. */
#ifndef BV_BASE_BASE64_H
#define BV_BASE_BASE64_H

#include <stddef.h>
#include <sys/types.h>

#include "base/util.h"

typedef enum { BV_B64_STD = 0, BV_B64_URL = 1 } bv_b64_alphabet_t;

#define BV_B64_PAD    0x1u /* append '=' padding to a multiple of 4 characters */
#define BV_B64_WRAP76 0x2u /* CRLF after every 76 characters (MIME, RFC 2045 §6.8) */

/* Characters needed to encode len bytes without padding, plus the NUL. */
#define BV_B64_ENCODED_SIZE(len) (((len)*4 + 2) / 3 + 1)

/* Encodes without padding into out (at least BV_B64_ENCODED_SIZE(len) bytes, NUL-terminated);
 * returns the number of characters. */
size_t bv_b64_encode(bv_b64_alphabet_t alphabet, const void *in, size_t len, char *out);
/* Appends the encoding (flags: BV_B64_PAD, BV_B64_WRAP76) to out. 0 or BV_ENOMEM. */
int bv_b64_encode_buf(bv_b64_alphabet_t alphabet, unsigned flags, const void *in, size_t len, bv_buf_t *out);
/* Decodes s[0..len) (no padding; '=' is not accepted) into out (cap bytes). Canonical
 * input only: the unused low bits of the last character must be zero. Returns the decoded
 * length, or -1 on a character outside the alphabet, an impossible length (len % 4 == 1)
 * or not enough room. */
ssize_t bv_b64_decode(bv_b64_alphabet_t alphabet, const char *s, size_t len, unsigned char *out, size_t cap);

#endif
