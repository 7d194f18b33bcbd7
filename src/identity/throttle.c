/* Brute-force protection arithmetic (pure) and input canonicalisation. The persisted
 * state and its use are in users.c. */
#include <ctype.h>
#include <string.h>

#include "base/errors.h"
#include "identity/identity.h"

int64_t bv_identity_throttle_wait(const bv_identity_lockout_t *p, int max_failures, int free_failures,
                                  bv_identity_throttle_t *t, int64_t now)
{
    if (t->locked_until != 0) {
        if (now < t->locked_until)
            return t->locked_until - now;
        /* the lock ran out: start afresh */
        t->failures = 0;
        t->locked_until = 0;
    }
    if (t->failures > 0 && now - t->last_failure_at >= p->lock_us)
        t->failures = 0; /* failures older than the window are forgotten */
    if (max_failures > 0 && t->failures >= max_failures) {
        /* reached without a lock being set (settings lowered): lock from the last failure */
        int64_t until = t->last_failure_at + p->lock_us;
        return until > now ? until - now : 0;
    }
    if (t->failures <= free_failures || p->delay_base_us <= 0)
        return 0;
    int64_t shift = t->failures - free_failures - 1, delay = p->delay_base_us;
    while (shift-- > 0 && delay < p->delay_max_us)
        delay *= 2;
    if (delay > p->delay_max_us)
        delay = p->delay_max_us;
    int64_t ready = t->last_failure_at + delay;
    return ready > now ? ready - now : 0;
}

void bv_identity_throttle_fail(const bv_identity_lockout_t *p, int max_failures, bv_identity_throttle_t *t,
                               int64_t now)
{
    (void)bv_identity_throttle_wait(p, max_failures, max_failures, t, now); /* applies expiry */
    t->failures++;
    t->last_failure_at = now;
    if (max_failures > 0 && t->failures >= max_failures)
        t->locked_until = now + p->lock_us;
}

int bv_identity_username_canonical(const char *in, char out[BV_IDENTITY_USERNAME_MAX + 1])
{
    size_t len = in != NULL ? strlen(in) : 0;
    if (len < 3 || len > BV_IDENTITY_USERNAME_MAX)
        return BV_EINVALID;
    for (size_t i = 0; i < len; i++) {
        char c = (char)tolower((unsigned char)in[i]);
        int ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                 (i > 0 && (c == '.' || c == '_' || c == '-' || c == '@'));
        if (!ok)
            return BV_EINVALID;
        out[i] = c;
    }
    out[len] = '\0';
    return 0;
}

int bv_identity_phone_valid(const char *phone)
{
    size_t len = phone != NULL ? strlen(phone) : 0;
    if (len < 9 || len > BV_IDENTITY_PHONE_MAX || phone[0] != '+' || phone[1] == '0')
        return 0;
    for (size_t i = 1; i < len; i++)
        if (phone[i] < '0' || phone[i] > '9')
            return 0;
    return 1;
}

int bv_identity_email_valid(const char *email)
{
    size_t len = email != NULL ? strlen(email) : 0;
    if (len < 3 || len > BV_IDENTITY_EMAIL_MAX)
        return 0;
    const char *at = strchr(email, '@');
    if (at == NULL || at == email || strchr(at + 1, '@') != NULL)
        return 0;
    const char *dot = strchr(at + 1, '.');
    if (dot == NULL || dot == at + 1 || dot[1] == '\0' || email[len - 1] == '.')
        return 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)email[i];
        if (c <= 0x20 || c == 0x7F || c == '<' || c == '>' || c == '"' || c == ',' || c == ';' || c == '\\')
            return 0;
    }
    return 1;
}
