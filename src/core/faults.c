/* Fault injection of `boveda core` (BOVEDA_CORE_FAULTS), for tests of the exactly-once
 * transfer worker. Rates are parsed into parts per million with integer arithmetic only, and
 * drawn from a seeded generator (splitmix64) so a failing run can be repeated. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "core/internal.h"

#define PPM 1000000u

int core_rate_parse(const char *s, uint32_t *ppm_out)
{
    uint32_t whole = 0, frac = 0, scale = PPM;
    const char *p = s;
    *ppm_out = 0;
    if (s == NULL || (*p != '0' && *p != '1'))
        return BV_EINVALID;
    whole = (uint32_t)(*p++ - '0');
    if (*p == '.') {
        p++;
        if (*p == '\0')
            return BV_EINVALID; /* "1." */
        for (int digits = 0; *p != '\0'; p++, digits++) {
            if (*p < '0' || *p > '9' || digits == 6)
                return BV_EINVALID; /* finer than one per million, or not a digit */
            scale /= 10;
            frac += (uint32_t)(*p - '0') * scale;
        }
    }
    if (*p != '\0')
        return BV_EINVALID;
    if (whole == 1 && frac != 0)
        return BV_EINVALID; /* more than 1 */
    *ppm_out = whole * PPM + frac;
    return 0;
}

static int parse_int(const char *s, int64_t min, int64_t max, int64_t *out)
{
    char *end;
    if (s[0] < '0' || s[0] > '9')
        return BV_EINVALID;
    long long v = strtoll(s, &end, 10);
    if (*end != '\0' || v < min || v > max)
        return BV_EINVALID;
    *out = v;
    return 0;
}

static int parse_u64(const char *s, uint64_t *out)
{
    char *end;
    if (s[0] < '0' || s[0] > '9')
        return BV_EINVALID;
    unsigned long long v = strtoull(s, &end, 10);
    if (*end != '\0')
        return BV_EINVALID;
    *out = v;
    return 0;
}

int core_faults_parse(const char *spec, core_faults_t *out, char *err, size_t errlen)
{
    char buf[512], *save = NULL;
    memset(out, 0, sizeof(*out));
    out->timeout_ms = 0;
    bv_random(&out->seed, sizeof(out->seed));
    if (err != NULL && errlen > 0)
        err[0] = '\0';
    if (spec == NULL || spec[0] == '\0')
        return 0;
    if (strlen(spec) >= sizeof(buf)) {
        snprintf(err, errlen, "too long");
        return BV_EINVALID;
    }
    snprintf(buf, sizeof(buf), "%s", spec);
    bool timeout_ms_set = false;
    for (char *item = strtok_r(buf, ",", &save); item != NULL; item = strtok_r(NULL, ",", &save)) {
        while (*item == ' ')
            item++;
        char *eq = strchr(item, '=');
        if (eq == NULL || eq == item || eq[1] == '\0') {
            snprintf(err, errlen, "expected key=value, got '%.40s'", item);
            return BV_EINVALID;
        }
        *eq = '\0';
        const char *key = item, *val = eq + 1;
        int rc;
        if (strcmp(key, "seed") == 0)
            rc = parse_u64(val, &out->seed);
        else if (strcmp(key, "delay_ms") == 0)
            rc = parse_int(val, 0, 600000, &out->delay_ms);
        else if (strcmp(key, "timeout_ms") == 0)
            rc = parse_int(val, 0, 600000, &out->timeout_ms), timeout_ms_set = true;
        else if (strcmp(key, "delay_rate") == 0)
            rc = core_rate_parse(val, &out->delay_ppm);
        else if (strcmp(key, "error_rate") == 0)
            rc = core_rate_parse(val, &out->error_ppm);
        else if (strcmp(key, "timeout_rate") == 0)
            rc = core_rate_parse(val, &out->timeout_ppm);
        else if (strcmp(key, "crash_after_commit_rate") == 0)
            rc = core_rate_parse(val, &out->crash_ppm);
        else {
            snprintf(err, errlen, "unknown key '%.40s'", key);
            return BV_EINVALID;
        }
        if (rc != 0) {
            snprintf(err, errlen, "bad value for %s (rates: 0 to 1 with at most 6 decimals; times: ms)", key);
            return BV_EINVALID;
        }
    }
    if (out->timeout_ppm > 0 && !timeout_ms_set) {
        snprintf(err, errlen, "timeout_rate needs timeout_ms (longer than the client's timeout)");
        return BV_EINVALID;
    }
    if (out->delay_ppm > 0 && out->delay_ms == 0) {
        snprintf(err, errlen, "delay_rate needs delay_ms");
        return BV_EINVALID;
    }
    out->any = out->delay_ppm > 0 || out->error_ppm > 0 || out->timeout_ppm > 0 || out->crash_ppm > 0;
    return 0;
}

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static uint64_t g_state;

void core_faults_seed(uint64_t seed)
{
    pthread_mutex_lock(&g_mu);
    g_state = seed;
    pthread_mutex_unlock(&g_mu);
}

/* splitmix64: a tiny, well-distributed generator; not for secrets. */
static uint64_t next_u64(void)
{
    pthread_mutex_lock(&g_mu);
    uint64_t z = (g_state += 0x9e3779b97f4a7c15ull);
    pthread_mutex_unlock(&g_mu);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

bool core_faults_draw(uint32_t ppm)
{
    if (ppm == 0)
        return false;
    if (ppm >= PPM)
        return true;
    return next_u64() % PPM < ppm;
}
