#include "base/base64.h"

#include <stdint.h>

#include "base/errors.h"

static const char alphabets[2][65] = {
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/",
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_",
};

size_t bv_b64_encode(bv_b64_alphabet_t alphabet, const void *in_v, size_t len, char *out)
{
    const char *a = alphabets[alphabet == BV_B64_URL];
    const unsigned char *in = in_v;
    size_t o = 0, i = 0;
    for (; i + 2 < len; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
        out[o++] = a[v >> 18];
        out[o++] = a[(v >> 12) & 63];
        out[o++] = a[(v >> 6) & 63];
        out[o++] = a[v & 63];
    }
    if (len - i >= 1) {
        uint32_t v = (uint32_t)in[i] << 16 | (len - i == 2 ? (uint32_t)in[i + 1] << 8 : 0);
        out[o++] = a[v >> 18];
        out[o++] = a[(v >> 12) & 63];
        if (len - i == 2)
            out[o++] = a[(v >> 6) & 63];
    }
    out[o] = '\0';
    return o;
}

int bv_b64_encode_buf(bv_b64_alphabet_t alphabet, unsigned flags, const void *in, size_t len, bv_buf_t *out)
{
    const unsigned char *p = in;
    char chunk[BV_B64_ENCODED_SIZE(57) + 2];
    /* 57 input bytes are exactly one 76-character line */
    for (size_t off = 0; off < len || (off == 0 && len == 0); off += 57) {
        size_t n = len - off < 57 ? len - off : 57;
        size_t c = bv_b64_encode(alphabet, p + off, n, chunk);
        if ((flags & BV_B64_PAD) != 0)
            while (c % 4 != 0)
                chunk[c++] = '=';
        if (bv_buf_append(out, chunk, c) != 0)
            return BV_ENOMEM;
        if ((flags & BV_B64_WRAP76) != 0 && off + 57 < len && bv_buf_append(out, "\r\n", 2) != 0)
            return BV_ENOMEM;
        if (len == 0)
            break;
    }
    return 0;
}

static int value_of(int url, unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == (url ? '-' : '+'))
        return 62;
    if (c == (url ? '_' : '/'))
        return 63;
    return -1;
}

ssize_t bv_b64_decode(bv_b64_alphabet_t alphabet, const char *s, size_t len, unsigned char *out, size_t cap)
{
    size_t o = 0;
    uint32_t acc = 0;
    int bits = 0, url = alphabet == BV_B64_URL;
    if (len % 4 == 1)
        return -1;
    for (size_t i = 0; i < len; i++) {
        int v = value_of(url, (unsigned char)s[i]);
        if (v < 0)
            return -1;
        acc = acc << 6 | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            if (o == cap)
                return -1;
            out[o++] = (unsigned char)(acc >> bits);
            acc &= (1u << bits) - 1;
        }
    }
    return acc == 0 ? (ssize_t)o : -1; /* leftover bits must be zero (canonical) */
}
