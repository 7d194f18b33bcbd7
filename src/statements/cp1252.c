/* UTF-8 to Windows-1252. The PDF's built-in fonts (Helvetica) are used with
 * WinAnsiEncoding, which is CP1252: one byte per character, so every string drawn is
 * converted here first. Latin-1 (U+00A0..U+00FF) maps to itself; the 27 characters CP1252
 * puts in 0x80..0x9F (euro sign, typographic quotes, dashes, ...) are looked up; anything
 * else becomes '?'. Invalid UTF-8 (bad lead or continuation bytes, overlong forms,
 * surrogates, values past U+10FFFF) becomes one '?' per offending byte. */
#include <stdint.h>
#include <string.h>

#include "statements/internal.h"

static const struct {
    uint16_t cp;
    unsigned char b;
} high[] = {
    {0x20AC, 0x80}, {0x201A, 0x82}, {0x0192, 0x83}, {0x201E, 0x84}, {0x2026, 0x85}, {0x2020, 0x86},
    {0x2021, 0x87}, {0x02C6, 0x88}, {0x2030, 0x89}, {0x0160, 0x8A}, {0x2039, 0x8B}, {0x0152, 0x8C},
    {0x017D, 0x8E}, {0x2018, 0x91}, {0x2019, 0x92}, {0x201C, 0x93}, {0x201D, 0x94}, {0x2022, 0x95},
    {0x2013, 0x96}, {0x2014, 0x97}, {0x02DC, 0x98}, {0x2122, 0x99}, {0x0161, 0x9A}, {0x203A, 0x9B},
    {0x0153, 0x9C}, {0x017E, 0x9E}, {0x0178, 0x9F},
};

static unsigned char map(uint32_t cp)
{
    if (cp >= 0x20 && cp < 0x7F)
        return (unsigned char)cp;
    if (cp >= 0xA0 && cp <= 0xFF)
        return (unsigned char)cp;
    for (size_t i = 0; i < sizeof(high) / sizeof(high[0]); i++)
        if (high[i].cp == cp)
            return high[i].b;
    return '?';
}

/* Decodes one UTF-8 sequence at s (NUL-terminated). Returns its length (>= 1) and the code
 * point in *cp, or 0 when s[0] does not start a valid sequence (the caller skips a byte). */
static size_t decode(const unsigned char *s, uint32_t *cp)
{
    uint32_t c = s[0], min;
    size_t len;
    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    if (c >= 0xC2 && c <= 0xDF)
        len = 2, c &= 0x1F, min = 0x80;
    else if (c >= 0xE0 && c <= 0xEF)
        len = 3, c &= 0x0F, min = 0x800;
    else if (c >= 0xF0 && c <= 0xF4)
        len = 4, c &= 0x07, min = 0x10000;
    else
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80) /* also stops at the NUL */
            return 0;
        c = (c << 6) | (s[i] & 0x3F);
    }
    if (c < min || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF))
        return 0;
    *cp = c;
    return len;
}

size_t statements_cp1252(const char *utf8, char *out, size_t n)
{
    const unsigned char *s = (const unsigned char *)(utf8 != NULL ? utf8 : "");
    size_t o = 0;
    if (n == 0)
        return 0;
    while (*s != '\0' && o + 1 < n) {
        uint32_t cp = 0;
        size_t len = decode(s, &cp);
        if (len == 0) {
            out[o++] = '?';
            s++;
            continue;
        }
        out[o++] = (char)map(cp);
        s += len;
    }
    out[o] = '\0';
    return o;
}
