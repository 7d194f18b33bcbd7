/* Per-provider token buckets (never exceed the configured rate) and circuit breakers
 * (fail over after K consecutive failures, close again after a cool-down; a 429 pauses
 * the provider for its Retry-After). All integer arithmetic on microseconds. */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "notify/internal.h"

#define MICRO 1000000LL

void notify_bucket_init(notify_bucket_t *b, int64_t rate_milli, int64_t capacity, int64_t now_us)
{
    pthread_mutex_init(&b->mu, NULL);
    b->rate_milli = rate_milli > 0 ? rate_milli : 1000;
    b->capacity = (capacity > 0 ? capacity : 1) * MICRO;
    b->tokens_micro = b->capacity;
    b->last_us = now_us;
}

/* tokens_micro grows by rate_milli/1000 tokens per second = rate_milli micro-tokens per ms */
int64_t notify_bucket_reserve(notify_bucket_t *b, int64_t now_us, int64_t max_wait_us, int64_t *wait_out)
{
    int64_t wait = 0;
    pthread_mutex_lock(&b->mu);
    if (now_us > b->last_us) {
        /* elapsed_us * rate_milli / 1000 micro-tokens (rate_milli/1000 tokens per second) */
        __int128 add = (__int128)(now_us - b->last_us) * b->rate_milli / 1000;
        __int128 t = (__int128)b->tokens_micro + add;
        b->tokens_micro = t > b->capacity ? b->capacity : (int64_t)t;
        b->last_us = now_us;
    }
    int64_t after = b->tokens_micro - MICRO;
    if (after < 0) /* time until the deficit refills: deficit micro-tokens / (rate_milli/1000 per us...) */
        wait = (int64_t)(((__int128)(-after) * 1000 + b->rate_milli - 1) / b->rate_milli);
    if (wait_out != NULL)
        *wait_out = wait;
    if (wait > max_wait_us) {
        pthread_mutex_unlock(&b->mu);
        return -1;
    }
    b->tokens_micro = after;
    pthread_mutex_unlock(&b->mu);
    return wait;
}

void notify_circuit_init(notify_circuit_t *c, int threshold, int64_t cooldown_us)
{
    pthread_mutex_init(&c->mu, NULL);
    c->failures = 0;
    c->open_until_us = 0;
    c->paused_until_us = 0;
    c->threshold = threshold > 0 ? threshold : 3;
    c->cooldown_us = cooldown_us > 0 ? cooldown_us : 30 * MICRO;
}

int64_t notify_circuit_wait(notify_circuit_t *c, int64_t now_us)
{
    int64_t w = 0;
    pthread_mutex_lock(&c->mu);
    if (c->open_until_us > now_us)
        w = c->open_until_us - now_us;
    if (c->paused_until_us > now_us && c->paused_until_us - now_us > w)
        w = c->paused_until_us - now_us;
    pthread_mutex_unlock(&c->mu);
    return w;
}

void notify_circuit_success(notify_circuit_t *c)
{
    pthread_mutex_lock(&c->mu);
    c->failures = 0;
    c->open_until_us = 0;
    pthread_mutex_unlock(&c->mu);
}

int notify_circuit_failure(notify_circuit_t *c, int64_t now_us)
{
    int opened = 0;
    pthread_mutex_lock(&c->mu);
    c->failures++;
    /* K consecutive failures open it; a failed trial after the cool-down (half-open)
     * opens it again at once */
    if (c->failures >= c->threshold) {
        opened = c->open_until_us <= now_us;
        c->open_until_us = now_us + c->cooldown_us;
    }
    pthread_mutex_unlock(&c->mu);
    return opened;
}

void notify_circuit_pause(notify_circuit_t *c, int64_t now_us, int64_t pause_us)
{
    pthread_mutex_lock(&c->mu);
    if (now_us + pause_us > c->paused_until_us)
        c->paused_until_us = now_us + pause_us;
    pthread_mutex_unlock(&c->mu);
}

int64_t notify_parse_retry_after(const char *v, int64_t now_us)
{
    char *end = NULL;
    long long s;
    struct tm tm;
    if (v == NULL)
        return -1;
    while (*v == ' ')
        v++;
    if (*v >= '0' && *v <= '9') {
        s = strtoll(v, &end, 10);
        while (*end == ' ' || *end == '\r' || *end == '\n')
            end++;
        if (*end != '\0' || s < 0 || s > 86400)
            return -1;
        return s * 1000;
    }
    /* IMF-fixdate: "Wed, 21 Oct 2015 07:28:00 GMT" */
    memset(&tm, 0, sizeof(tm));
    end = strptime(v, "%a, %d %b %Y %H:%M:%S GMT", &tm);
    if (end == NULL)
        return -1;
    int64_t at = (int64_t)timegm(&tm) * MICRO;
    return at > now_us ? (at - now_us) / 1000 : 0;
}
