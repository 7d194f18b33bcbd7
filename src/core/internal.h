/* Core-port internals shared by the adapters (builtin.c, client.c), the contract's JSON
 * (wire.c), fault injection (faults.c) and the `boveda core` server (server.c). Not for
 * other modules: they use core/core.h. */
#ifndef BV_CORE_INTERNAL_H
#define BV_CORE_INTERNAL_H

#include <jansson.h>

#include "base/util.h"
#include "core/core.h"

/* One adapter: the operations of core.h behind function pointers. */
typedef struct {
    const char *name; /* "builtin" | "http" */
    int (*accounts_of)(void *cls, const char *customer_id, bv_ledger_account_t **items_out, size_t *n_out);
    int (*account_get)(void *cls, const char *account_id, bv_ledger_account_t *out);
    int (*account_by_number)(void *cls, const char *number, bv_ledger_account_t *out);
    int (*movements)(void *cls, const char *account_id, int64_t from, int64_t to, int64_t before,
                     size_t limit, bv_ledger_movement_t *items, size_t *n_out, int64_t *next_cursor_out);
    int (*statement)(void *cls, const char *account_id, int64_t from, int64_t to, bv_ledger_statement_t *out);
    int (*transfer_execute)(void *cls, const bv_core_transfer_req_t *req, bv_ledger_transfer_t *out,
                            bool *replayed_out);
    int (*transfer_lookup)(void *cls, const char *reference, bv_ledger_transfer_t *out);
    /* Optional: n valid requests at once (NULL: one transfer_execute after another). */
    int (*transfer_execute_batch)(void *cls, const bv_core_transfer_req_t *reqs, size_t n,
                                  bv_ledger_result_t *results);
    void (*close)(void *cls);
} core_ops_t;

struct bv_core {
    const core_ops_t *ops;
    void *cls;
};

/* `boveda core` sets this before opening the application: the core module then opens the
 * builtin adapter whatever BOVEDA_CORE says (the server IS the core). */
void core_server_mode(bool on);

/* ---- builtin adapter (builtin.c) ---- */
/* The adapter over `ledger`; account lists are read from `store` (the ledger's store).
 * 0 or BV_ENOMEM; frees with bv_core_close. */
int core_builtin_open(bv_ledger_t *ledger, bv_store_t *store, bv_core_t **out);
/* Account lists the ledger has no call for (read-only queries of its tables). */
int core_accounts_of_customer(bv_ledger_t *ledger, bv_store_t *store, const char *customer_id,
                              bv_ledger_account_t **items_out, size_t *n_out);
int core_account_by_number(bv_ledger_t *ledger, bv_store_t *store, const char *number,
                           bv_ledger_account_t *out);

/* ---- http adapter (client.c) ---- */
typedef struct {
    const char *url;     /* http:// or https://, no trailing slash needed */
    const char *token;   /* bearer, >= 32 bytes */
    int64_t timeout_ms;  /* connect + total */
    const char *ca_file; /* "" or NULL: the system store only */
} core_http_settings_t;
/* Validates the settings: 0 or BV_ECONFIG with the offending setting's name in
 * *bad_setting_out (static string) and a reason in *why_out. */
int core_http_settings_check(const core_http_settings_t *s, const char **bad_setting_out,
                             const char **why_out);
int core_http_open(const core_http_settings_t *s, bv_core_t **out);
/* Maps an HTTP answer of the core to a BV_E code: 2xx -> 0; 4xx -> the code whose slug is
 * the problem type's last segment (unknown slugs: BV_EINVALID for 400-family, BV_ENOTFOUND
 * for 404); 5xx, other statuses or an unparseable body -> BV_EUPSTREAM. */
int core_http_status_to_code(long status, const char *body, size_t len);
/* The BV_E code whose slug is `slug`, or 0 when none. */
int core_code_of_slug(const char *slug);

/* ---- the contract's JSON (wire.c) ---- */
/* Parsers of the same representations: 0 or BV_EUPSTREAM (missing/invalid member). */
int core_account_from_json(json_t *o, bv_ledger_account_t *out);
int core_transfer_from_json(json_t *o, bv_ledger_transfer_t *out);
int core_movement_from_json(json_t *o, int exponent, bv_ledger_movement_t *out);

/* ---- faults (faults.c) ---- */
typedef struct {
    uint64_t seed;
    int64_t delay_ms;
    uint32_t delay_ppm; /* per million */
    uint32_t error_ppm;
    uint32_t timeout_ppm;
    int64_t timeout_ms;
    uint32_t crash_ppm; /* crash after commit */
    bool any;
} core_faults_t;
/* Parses BOVEDA_CORE_FAULTS ("" = none): key=value pairs separated by commas, keys seed,
 * delay_ms, delay_rate, error_rate, timeout_rate, timeout_ms, crash_after_commit_rate;
 * rates are decimals in [0, 1] with up to 6 fractional digits, parsed with integers only.
 * 0 or BV_EINVALID with a reason (static or in errbuf) naming the key. */
int core_faults_parse(const char *spec, core_faults_t *out, char *err, size_t errlen);
/* A rate string ("0.05", "1", ".5" refused) in parts per million. 0 or BV_EINVALID. */
int core_rate_parse(const char *s, uint32_t *ppm_out);
/* Draws true with probability ppm / 10^6 from the fault generator (thread-safe). */
bool core_faults_draw(uint32_t ppm);
/* Seeds the generator. */
void core_faults_seed(uint64_t seed);

#endif
