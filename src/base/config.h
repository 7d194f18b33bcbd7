/* Effective configuration: built-in defaults, then an optional INI file (--config FILE),
 * then environment variables (environment wins). Every setting is declared once in the
 * table in config.c (name, type, default, bounds, secret flag, help). Invalid values stop
 * start-up with one line naming the setting. */
#ifndef BV_BASE_CONFIG_H
#define BV_BASE_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/log.h"

typedef struct {
    /* core */
    char *data_dir;        /* BOVEDA_DATA_DIR */
    char *http_listen;     /* BOVEDA_HTTP_LISTEN host:port ("" disables) */
    char *https_listen;    /* BOVEDA_HTTPS_LISTEN host:port ("" disables) */
    char *tls_cert;        /* BOVEDA_TLS_CERT PEM path */
    char *tls_key;         /* BOVEDA_TLS_KEY PEM path (secret file) */
    int64_t threads;       /* BOVEDA_THREADS event-loop threads (0 = number of cores) */
    int64_t workers;       /* BOVEDA_WORKERS worker threads for writes (0 = max(32, 8 x cores)) */
    int64_t read_workers;  /* BOVEDA_READ_WORKERS worker threads for GET/HEAD (0 = 2 x cores + 2) */
    bv_log_level_t log_level; /* BOVEDA_LOG_LEVEL */
    char *log_level_name;
    char *admin_token;     /* BOVEDA_ADMIN_TOKEN (secret; "" = admin credential disabled) */
    char *cors_origins;    /* BOVEDA_CORS_ORIGINS comma-separated exact origins */
    int64_t max_body;      /* BOVEDA_MAX_BODY bytes, upper bound for every route */
    int64_t req_timeout_ms;    /* BOVEDA_REQUEST_TIMEOUT_MS read timeout (slow clients) */
    int64_t shutdown_timeout_ms; /* BOVEDA_SHUTDOWN_TIMEOUT_MS bound on draining in-flight work */
    int64_t queue_limit;   /* BOVEDA_WORKER_QUEUE_LIMIT max queued jobs before 503 */
    int64_t commit_batch_max; /* BOVEDA_COMMIT_BATCH_MAX jobs per group commit */
    char *public_url;      /* BOVEDA_PUBLIC_URL issuer/base URL as seen by clients */
    char *locale;          /* BOVEDA_LOCALE es|en customer-facing language */
    /* key store (issue 3) */
    char *keystore;        /* BOVEDA_KEYSTORE file|pkcs11 */
    char *pkcs11_module;   /* BOVEDA_PKCS11_MODULE */
    char *pkcs11_token;    /* BOVEDA_PKCS11_TOKEN */
    char *pkcs11_pin;      /* BOVEDA_PKCS11_PIN (secret) */
    char *pkcs11_pin_file; /* BOVEDA_PKCS11_PIN_FILE */

    /* Every setting's validated value as text, in table order (typed fields above borrow
     * from here). Modules read their own settings with bv_config_int / bv_config_str. */
    char *values[96];
} bv_config_t;

/* Loads defaults, then `file` (may be NULL), then the environment. On failure returns
 * BV_ECONFIG and writes one line naming the setting into err (size errlen). The caller
 * owns the result and frees it with bv_config_free. */
int bv_config_load(const char *file, bv_config_t **out, char *err, size_t errlen);
void bv_config_free(bv_config_t *cfg);

/* Prints "NAME=value" for every setting, secrets masked as "********" when set. */
void bv_config_print(const bv_config_t *cfg, int fd);

/* Splits "host:port" / "[v6]:port"; host_out has room for 256 bytes. 0 or BV_EINVALID. */
int bv_config_split_hostport(const char *s, char *host_out, int *port_out);

/* Any setting by name without the BOVEDA_ prefix ("ARGON2_MEMORY_KIB"), as validated at
 * load. An unknown name is a programming error and aborts. The string belongs to cfg. */
const char *bv_config_str(const bv_config_t *cfg, const char *name);
int64_t bv_config_int(const bv_config_t *cfg, const char *name);

/* Effective counts with 0 resolved to the machine's core count. */
int bv_config_threads(const bv_config_t *cfg);
int bv_config_workers(const bv_config_t *cfg);
int bv_config_read_workers(const bv_config_t *cfg);

#endif
