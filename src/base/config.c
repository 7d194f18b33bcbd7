#include "base/config.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "base/errors.h"

typedef enum { T_STR, T_INT, T_LEVEL, T_HOSTPORT, T_ENUM } type_t;

typedef struct {
    const char *name; /* without the BOVEDA_ prefix */
    type_t type;
    size_t offset;
    const char *def;
    int64_t min, max;
    int secret;
    const char *choices; /* T_ENUM: "a|b|c" */
    const char *help;
} setting_t;

#define S(f) offsetof(bv_config_t, f)
#define NO_FIELD SIZE_MAX /* a module's setting: read with bv_config_int / bv_config_str */
static const setting_t settings[] = {
    {"DATA_DIR", T_STR, S(data_dir), "./data", 0, 0, 0, NULL, "data directory (database, keys)"},
    {"HTTP_LISTEN", T_HOSTPORT, S(http_listen), "127.0.0.1:8080", 0, 0, 0, NULL, "plain HTTP listener, empty disables"},
    {"HTTPS_LISTEN", T_HOSTPORT, S(https_listen), "", 0, 0, 0, NULL, "HTTPS listener (HTTP/2 via ALPN), empty disables"},
    {"TLS_CERT", T_STR, S(tls_cert), "", 0, 0, 0, NULL, "TLS certificate chain (PEM)"},
    {"TLS_KEY", T_STR, S(tls_key), "", 0, 0, 0, NULL, "TLS private key (PEM)"},
    {"THREADS", T_INT, S(threads), "0", 0, 256, 0, NULL, "event-loop threads, 0 = cores"},
    {"WORKERS", T_INT, S(workers), "0", 0, 1024, 0, NULL, "worker threads for writes, 0 = max(32, 8 x cores)"},
    {"READ_WORKERS", T_INT, S(read_workers), "0", 0, 1024, 0, NULL, "worker threads for GET/HEAD and requests that wait for no commit, 0 = 2 x cores + 2"},
    {"LOG_LEVEL", T_LEVEL, S(log_level_name), "info", 0, 0, 0, NULL, "debug|info|warn|error"},
    {"ADMIN_TOKEN", T_STR, S(admin_token), "", 0, 0, 1, NULL, "bootstrap admin bearer token (>= 32 chars), empty disables"},
    {"CORS_ORIGINS", T_STR, S(cors_origins), "", 0, 0, 0, NULL, "comma-separated allowed CORS origins"},
    {"MAX_BODY", T_INT, S(max_body), "8388608", 1024, 67108864, 0, NULL, "cap on every route's body limit (bytes)"},
    {"REQUEST_TIMEOUT_MS", T_INT, S(req_timeout_ms), "10000", 100, 600000, 0, NULL, "time allowed to send a request"},
    {"SHUTDOWN_TIMEOUT_MS", T_INT, S(shutdown_timeout_ms), "10000", 0, 600000, 0, NULL, "bound on draining at shutdown"},
    {"WORKER_QUEUE_LIMIT", T_INT, S(queue_limit), "10000", 1, 10000000, 0, NULL, "queued jobs before answering 503"},
    {"COMMIT_BATCH_MAX", T_INT, S(commit_batch_max), "1024", 1, 100000, 0, NULL, "write jobs per group commit"},
    {"PUBLIC_URL", T_STR, S(public_url), "", 0, 0, 0, NULL, "external base URL (issuer); default from the listener"},
    {"LOCALE", T_ENUM, S(locale), "es", 0, 0, 0, "es|en", "language of customer-facing texts"},
    {"KEYSTORE", T_ENUM, S(keystore), "file", 0, 0, 0, "file|pkcs11", "master key store adapter"},
    {"PKCS11_MODULE", T_STR, S(pkcs11_module), "", 0, 0, 0, NULL, "PKCS#11 module path"},
    {"PKCS11_TOKEN", T_STR, S(pkcs11_token), "", 0, 0, 0, NULL, "PKCS#11 token label"},
    {"PKCS11_PIN", T_STR, S(pkcs11_pin), "", 0, 0, 1, NULL, "PKCS#11 user PIN"},
    {"PKCS11_PIN_FILE", T_STR, S(pkcs11_pin_file), "", 0, 0, 0, NULL, "file holding the PKCS#11 user PIN"},
    /* identity (issue 5) */
    {"ARGON2_MEMORY_KIB", T_INT, NO_FIELD, "19456", 8192, 1048576, 0, NULL, "Argon2id memory per hash (KiB)"},
    {"ARGON2_ITERATIONS", T_INT, NO_FIELD, "2", 1, 16, 0, NULL, "Argon2id passes"},
    {"ARGON2_PARALLELISM", T_INT, NO_FIELD, "1", 1, 16, 0, NULL, "Argon2id lanes"},
    {"LOGIN_MAX_FAILURES", T_INT, NO_FIELD, "5", 1, 1000, 0, NULL, "failed logins before an account is locked"},
    {"LOGIN_IP_MAX_FAILURES", T_INT, NO_FIELD, "50", 1, 1000000, 0, NULL, "failed logins before a source IP is locked"},
    {"LOGIN_FREE_FAILURES", T_INT, NO_FIELD, "2", 0, 1000, 0, NULL, "failures before progressive delays start"},
    {"LOGIN_DELAY_MS", T_INT, NO_FIELD, "1000", 0, 3600000, 0, NULL, "first progressive delay"},
    {"LOGIN_DELAY_MAX_MS", T_INT, NO_FIELD, "60000", 0, 86400000, 0, NULL, "largest progressive delay"},
    {"LOGIN_LOCK_SECONDS", T_INT, NO_FIELD, "900", 1, 2592000, 0, NULL, "temporary lock after too many failures"},
    /* notifications (issue 6): semantic checks in src/notify/config.c */
    {"SMTP_URL", T_STR, NO_FIELD, "", 0, 0, 0, NULL, "smtp://host:port (STARTTLS) or smtps://host:port"},
    {"SMTP_USER", T_STR, NO_FIELD, "", 0, 0, 0, NULL, "SMTP AUTH user"},
    {"SMTP_PASSWORD", T_STR, NO_FIELD, "", 0, 0, 1, NULL, "SMTP AUTH password"},
    {"SMTP_STARTTLS", T_STR, NO_FIELD, "", 0, 0, 0, NULL, "auto|required (smtp:// only)"},
    {"SMTP_RATE", T_STR, NO_FIELD, "", 0, 0, 0, NULL, "messages per second (default 10)"},
    {"SMTP_SECONDARY_URL", T_STR, NO_FIELD, "", 0, 0, 0, NULL, "failover SMTP server"},
    {"SMTP_SECONDARY_USER", T_STR, NO_FIELD, "", 0, 0, 0, NULL, "failover SMTP AUTH user"},
    {"SMTP_SECONDARY_PASSWORD", T_STR, NO_FIELD, "", 0, 0, 1, NULL, "failover SMTP AUTH password"},
    {"SMTP_SECONDARY_STARTTLS", T_STR, NO_FIELD, "", 0, 0, 0, NULL, "auto|required"},
    {"SMTP_SECONDARY_RATE", T_STR, NO_FIELD, "", 0, 0, 0, NULL, "messages per second"},
    {"MAIL_FROM", T_STR, NO_FIELD, "", 0, 0, 0, NULL, "sender address of e-mails"},
    {"SMS_PROVIDER", T_STR, NO_FIELD, "", 0, 0, 0, NULL, "twilio|webhook"},
    {"SMS_URL", T_STR, NO_FIELD, "", 0, 0, 0, NULL, "SMS provider base URL"},
    {"SMS_ACCOUNT", T_STR, NO_FIELD, "", 0, 0, 0, NULL, "SMS provider account (Twilio SID)"},
    {"SMS_TOKEN", T_STR, NO_FIELD, "", 0, 0, 1, NULL, "SMS provider token"},
    {"SMS_FROM", T_STR, NO_FIELD, "", 0, 0, 0, NULL, "SMS sender"},
    {"SMS_RATE", T_STR, NO_FIELD, "", 0, 0, 0, NULL, "messages per second (default 10)"},
    {"SMS_SECONDARY_PROVIDER", T_STR, NO_FIELD, "", 0, 0, 0, NULL, "twilio|webhook"},
    {"SMS_SECONDARY_URL", T_STR, NO_FIELD, "", 0, 0, 0, NULL, "failover SMS provider base URL"},
    {"SMS_SECONDARY_ACCOUNT", T_STR, NO_FIELD, "", 0, 0, 0, NULL, "failover SMS account"},
    {"SMS_SECONDARY_TOKEN", T_STR, NO_FIELD, "", 0, 0, 1, NULL, "failover SMS token"},
    {"SMS_SECONDARY_FROM", T_STR, NO_FIELD, "", 0, 0, 0, NULL, "failover SMS sender"},
    {"SMS_SECONDARY_RATE", T_STR, NO_FIELD, "", 0, 0, 0, NULL, "messages per second"},
    {"NOTIFY_CA_FILE", T_STR, NO_FIELD, "", 0, 0, 0, NULL, "extra CA bundle for SMTP/SMS TLS"},
    {"NOTIFY_TIMEOUT_MS", T_STR, NO_FIELD, "10000", 0, 0, 0, NULL, "per-attempt timeout (100-60000)"},
    {"NOTIFY_FAILOVER_AFTER", T_STR, NO_FIELD, "3", 0, 0, 0, NULL, "consecutive failures before failover (1-100)"},
    {"NOTIFY_COOLDOWN_S", T_STR, NO_FIELD, "30", 0, 0, 0, NULL, "seconds before retrying the primary (1-3600)"},
    {"NOTIFY_MAX_ATTEMPTS", T_STR, NO_FIELD, "5", 0, 0, 0, NULL, "deliveries tried before analysis (1-10)"},
    {"NOTIFY_VISIBILITY_S", T_STR, NO_FIELD, "30", 0, 0, 0, NULL, "consumer visibility timeout (1-3600)"},
    {"NOTIFY_CONCURRENCY", T_STR, NO_FIELD, "2", 0, 0, 0, NULL, "messages sent at once per channel (1-16)"},
    /* mfa (issue 7) */
    {"MFA_OTP_DIGITS", T_ENUM, NO_FIELD, "6", 0, 0, 0, "4|6", "digits of SMS/e-mail one-time codes"},
    {"MFA_OTP_TTL_S", T_INT, NO_FIELD, "180", 30, 300, 0, NULL, "lifetime of a one-time code challenge"},
    {"MFA_MAX_CHALLENGES_15MIN", T_INT, NO_FIELD, "10", 1, 1000, 0, NULL, "challenges per user per 15 minutes"},
    {"MFA_MAX_ATTEMPTS", T_INT, NO_FIELD, "5", 1, 10, 0, NULL, "wrong codes before a challenge is dead"},
    {"MFA_LOGIN_POLICY", T_ENUM, NO_FIELD, "all", 0, 0, 0, "all|enrolled",
     "second login step for all customers, or only for those with a soft token"},
    {"MFA_TOTP_ALGORITHM", T_ENUM, NO_FIELD, "sha1", 0, 0, 0, "sha1|sha256|sha512", "HMAC of new soft tokens"},
    /* customer banking and the core port (issue 8) */
    {"CORE", T_ENUM, NO_FIELD, "builtin", 0, 0, 0, "builtin|http", "core-banking adapter: the ledger in process, or a core over HTTP"},
    {"CORE_URL", T_STR, NO_FIELD, "", 0, 0, 0, NULL, "base URL of the core over HTTP (BOVEDA_CORE=http)"},
    {"CORE_TOKEN", T_STR, NO_FIELD, "", 0, 0, 1, NULL, "bearer token of the core contract (client and `boveda core`)"},
    {"CORE_TIMEOUT_MS", T_INT, NO_FIELD, "5000", 100, 120000, 0, NULL, "per-request timeout towards the core"},
    {"CORE_CA_FILE", T_STR, NO_FIELD, "", 0, 0, 0, NULL, "CA bundle that verifies the core's TLS certificate"},
    {"CORE_FAULTS", T_STR, NO_FIELD, "", 0, 0, 0, NULL, "`boveda core` fault injection for tests (docs/core-contract.md)"},
    {"SERVE_CONSUMERS", T_STR, NO_FIELD, "all", 0, 0, 0, NULL, "queue consumers run by `boveda serve`: all, none or a list"},
    {"TRANSFER_MAX_AMOUNT", T_STR, NO_FIELD, "10000", 0, 0, 0, NULL, "largest customer transfer (in the currency's units)"},
    {"TRANSFER_DAILY_LIMIT", T_STR, NO_FIELD, "20000", 0, 0, 0, NULL, "customer transfers per account per day (currency units)"},
    {"TRANSFER_MAX_RETRIES", T_INT, NO_FIELD, "8", 0, 100, 0, NULL, "retryable core failures before a transfer fails"},
    {"TRANSFER_BACKOFF_MS", T_INT, NO_FIELD, "500", 1, 600000, 0, NULL, "first retry delay (exponential, full jitter)"},
    {"TRANSFER_CONCURRENCY", T_INT, NO_FIELD, "32", 1, 64, 0, NULL, "transfer worker threads (each takes up to 10 messages at once)"},
    {"PROFILE_CACHE_TTL_S", T_INT, NO_FIELD, "300", 0, 86400, 0, NULL, "lifetime of the encrypted profile cache entries"},
};
#undef S
#define N_SETTINGS (sizeof(settings) / sizeof(settings[0]))
_Static_assert(sizeof(settings) / sizeof(settings[0]) <= sizeof(((bv_config_t *)0)->values) / sizeof(char *),
               "bv_config_t.values is too small for the settings table");

int bv_config_split_hostport(const char *s, char *host_out, int *port_out)
{
    const char *colon;
    size_t hlen;
    if (s[0] == '[') {
        const char *end = strchr(s, ']');
        if (end == NULL || end[1] != ':')
            return BV_EINVALID;
        hlen = (size_t)(end - s - 1);
        memcpy(host_out, s + 1, hlen < 255 ? hlen : 255);
        colon = end + 1;
    } else {
        colon = strrchr(s, ':');
        if (colon == NULL)
            return BV_EINVALID;
        hlen = (size_t)(colon - s);
        if (hlen > 255)
            return BV_EINVALID;
        memcpy(host_out, s, hlen);
    }
    host_out[hlen < 255 ? hlen : 255] = '\0';
    if (hlen == 0)
        return BV_EINVALID;
    char *end;
    errno = 0;
    long p = strtol(colon + 1, &end, 10);
    if (errno || *end != '\0' || end == colon + 1 || p < 0 || p > 65535)
        return BV_EINVALID;
    *port_out = (int)p;
    return 0;
}

static int apply(bv_config_t *cfg, const setting_t *s, const char *value, const char *origin, char *err,
                 size_t errlen)
{
    char **strp = &cfg->values[s - settings];
    switch (s->type) {
    case T_INT: {
        char *end;
        errno = 0;
        long long v = strtoll(value, &end, 10);
        if (errno || *end != '\0' || end == value || v < s->min || v > s->max) {
            snprintf(err, errlen, "BOVEDA_%s (%s): must be an integer between %lld and %lld", s->name, origin,
                     (long long)s->min, (long long)s->max);
            return BV_ECONFIG;
        }
        if (s->offset != NO_FIELD)
            *(int64_t *)((char *)cfg + s->offset) = v;
        break;
    }
    case T_LEVEL:
        if (bv_log_parse_level(value, &cfg->log_level) != 0) {
            snprintf(err, errlen, "BOVEDA_%s (%s): must be one of debug, info, warn, error", s->name, origin);
            return BV_ECONFIG;
        }
        break;
    case T_HOSTPORT: {
        char host[256];
        int port;
        if (value[0] != '\0' && bv_config_split_hostport(value, host, &port) != 0) {
            snprintf(err, errlen, "BOVEDA_%s (%s): must be host:port with a port from 0 to 65535", s->name,
                     origin);
            return BV_ECONFIG;
        }
        break;
    }
    case T_ENUM: {
        size_t vl = strlen(value);
        const char *c = s->choices;
        int ok = 0;
        while (*c) {
            const char *bar = strchr(c, '|');
            size_t cl = bar ? (size_t)(bar - c) : strlen(c);
            if (cl == vl && strncmp(c, value, vl) == 0)
                ok = 1;
            c += cl + (bar ? 1 : 0);
        }
        if (!ok) {
            snprintf(err, errlen, "BOVEDA_%s (%s): must be one of %s", s->name, origin, s->choices);
            return BV_ECONFIG;
        }
        break;
    }
    case T_STR:
        break;
    }
    char *dup = strdup(value);
    if (dup == NULL) {
        snprintf(err, errlen, "out of memory");
        return BV_ECONFIG;
    }
    if (*strp != NULL && s->secret)
        OPENSSL_cleanse(*strp, strlen(*strp));
    free(*strp);
    *strp = dup;
    if (s->type != T_INT && s->offset != NO_FIELD)
        *(char **)((char *)cfg + s->offset) = dup; /* the typed field borrows the value */
    return 0;
}

static const setting_t *find(const char *name)
{
    for (size_t i = 0; i < N_SETTINGS; i++)
        if (strcmp(settings[i].name, name) == 0)
            return &settings[i];
    return NULL;
}

static char *trim(char *s)
{
    while (isspace((unsigned char)*s))
        s++;
    char *e = s + strlen(s);
    while (e > s && isspace((unsigned char)e[-1]))
        *--e = '\0';
    return s;
}

/* INI: `[section]` lines prefix the keys that follow ("[http]" + "listen" = HTTP_LISTEN);
 * keys are case-insensitive; `#` or `;` start comments; values may be double-quoted. */
static int load_file(bv_config_t *cfg, const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        snprintf(err, errlen, "--config %s: %s", path, strerror(errno));
        return BV_ECONFIG;
    }
    char line[4096], section[128] = "";
    int lineno = 0, rc = 0;
    while (rc == 0 && fgets(line, sizeof(line), f) != NULL) {
        lineno++;
        char *p = trim(line);
        if (*p == '\0' || *p == '#' || *p == ';')
            continue;
        if (*p == '[') {
            char *e = strchr(p, ']');
            if (e == NULL || e[1] != '\0' || (size_t)(e - p) >= sizeof(section)) {
                snprintf(err, errlen, "--config %s:%d: malformed section header", path, lineno);
                rc = BV_ECONFIG;
                break;
            }
            *e = '\0';
            snprintf(section, sizeof(section), "%s", trim(p + 1));
            continue;
        }
        char *eq = strchr(p, '=');
        if (eq == NULL) {
            snprintf(err, errlen, "--config %s:%d: expected key = value", path, lineno);
            rc = BV_ECONFIG;
            break;
        }
        *eq = '\0';
        char *key = trim(p), *val = trim(eq + 1);
        size_t vl = strlen(val);
        if (vl >= 2 && val[0] == '"' && val[vl - 1] == '"') {
            val[vl - 1] = '\0';
            val++;
        }
        char name[256];
        snprintf(name, sizeof(name), "%s%s%s", section, section[0] ? "_" : "", key);
        for (char *c = name; *c; c++)
            *c = *c == '.' || *c == '-' ? '_' : (char)toupper((unsigned char)*c);
        if (strncmp(name, "BOVEDA_", 7) == 0)
            memmove(name, name + 7, strlen(name + 7) + 1);
        const setting_t *s = find(name);
        if (s == NULL) {
            snprintf(err, errlen, "--config %s:%d: unknown setting %s", path, lineno, name);
            rc = BV_ECONFIG;
            break;
        }
        char origin[300];
        snprintf(origin, sizeof(origin), "%s:%d", path, lineno);
        rc = apply(cfg, s, val, origin, err, errlen);
    }
    fclose(f);
    return rc;
}

/* Cross-setting checks: nothing starts half-configured. */
static int validate(bv_config_t *cfg, char *err, size_t errlen)
{
    if (cfg->data_dir[0] == '\0') {
        snprintf(err, errlen, "BOVEDA_DATA_DIR: must not be empty");
        return BV_ECONFIG;
    }
    if (cfg->https_listen[0] != '\0') {
        if (cfg->tls_cert[0] == '\0' || access(cfg->tls_cert, R_OK) != 0) {
            snprintf(err, errlen, "BOVEDA_TLS_CERT: HTTPS is enabled but the certificate '%s' is not readable",
                     cfg->tls_cert);
            return BV_ECONFIG;
        }
        if (cfg->tls_key[0] == '\0' || access(cfg->tls_key, R_OK) != 0) {
            snprintf(err, errlen, "BOVEDA_TLS_KEY: HTTPS is enabled but the key file is not readable");
            return BV_ECONFIG;
        }
    }
    if (cfg->admin_token[0] != '\0' && strlen(cfg->admin_token) < 32) {
        snprintf(err, errlen, "BOVEDA_ADMIN_TOKEN: must be at least 32 characters");
        return BV_ECONFIG;
    }
    if (strcmp(cfg->keystore, "pkcs11") == 0) {
        if (cfg->pkcs11_module[0] == '\0') {
            snprintf(err, errlen, "BOVEDA_PKCS11_MODULE: required when BOVEDA_KEYSTORE=pkcs11");
            return BV_ECONFIG;
        }
        if (cfg->pkcs11_token[0] == '\0') {
            snprintf(err, errlen, "BOVEDA_PKCS11_TOKEN: required when BOVEDA_KEYSTORE=pkcs11");
            return BV_ECONFIG;
        }
        if (cfg->pkcs11_pin[0] == '\0' && cfg->pkcs11_pin_file[0] == '\0') {
            snprintf(err, errlen, "BOVEDA_PKCS11_PIN: PIN or BOVEDA_PKCS11_PIN_FILE required when BOVEDA_KEYSTORE=pkcs11");
            return BV_ECONFIG;
        }
    }
    return 0;
}

int bv_config_load(const char *file, bv_config_t **out, char *err, size_t errlen)
{
    bv_config_t *cfg = calloc(1, sizeof(*cfg));
    int rc = BV_ECONFIG;
    *out = NULL;
    if (cfg == NULL) {
        snprintf(err, errlen, "out of memory");
        return BV_ECONFIG;
    }
    for (size_t i = 0; i < N_SETTINGS; i++)
        if (apply(cfg, &settings[i], settings[i].def, "default", err, errlen) != 0)
            goto out;
    if (file != NULL && load_file(cfg, file, err, errlen) != 0)
        goto out;
    for (size_t i = 0; i < N_SETTINGS; i++) {
        char env[128];
        snprintf(env, sizeof(env), "BOVEDA_%s", settings[i].name);
        const char *v = getenv(env);
        if (v != NULL && apply(cfg, &settings[i], v, "environment", err, errlen) != 0)
            goto out;
    }
    if (validate(cfg, err, errlen) != 0)
        goto out;
    rc = 0;
out:
    if (rc != 0)
        bv_config_free(cfg);
    else
        *out = cfg;
    return rc;
}

void bv_config_free(bv_config_t *cfg)
{
    if (cfg == NULL)
        return;
    for (size_t i = 0; i < N_SETTINGS; i++) {
        char *v = cfg->values[i];
        if (v != NULL && settings[i].secret)
            OPENSSL_cleanse(v, strlen(v));
        free(v);
    }
    free(cfg);
}

void bv_config_print(const bv_config_t *cfg, int fd)
{
    for (size_t i = 0; i < N_SETTINGS; i++) {
        const setting_t *s = &settings[i];
        const char *v = cfg->values[i];
        dprintf(fd, "BOVEDA_%s=%s\n", s->name, s->secret && v[0] ? "********" : v);
    }
}

const char *bv_config_str(const bv_config_t *cfg, const char *name)
{
    const setting_t *s = find(name);
    if (s == NULL) {
        fprintf(stderr, "boveda: internal error: unknown setting %s\n", name);
        abort();
    }
    return cfg->values[s - settings];
}

int64_t bv_config_int(const bv_config_t *cfg, const char *name)
{
    return strtoll(bv_config_str(cfg, name), NULL, 10); /* validated at load */
}

static int cores(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

int bv_config_threads(const bv_config_t *cfg) { return cfg->threads > 0 ? (int)cfg->threads : cores(); }
int bv_config_read_workers(const bv_config_t *cfg)
{
    return cfg->read_workers > 0 ? (int)cfg->read_workers : 2 * cores() + 2;
}

/* Workers mostly wait (on the group commit's fsync, the key store, outbound calls), so the
 * default is many more than the cores. */
int bv_config_workers(const bv_config_t *cfg)
{
    if (cfg->workers > 0)
        return (int)cfg->workers;
    return 8 * cores() > 32 ? 8 * cores() : 32;
}
