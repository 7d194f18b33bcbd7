/* The running application: what `boveda serve` (and admin commands) build at start-up and
 * hand to every module's init function. */
#ifndef BV_APP_APP_H
#define BV_APP_APP_H

#include "base/config.h"
#include "http/http.h"
#include "keys/keys.h"
#include "store/store.h"

typedef struct bv_ledger bv_ledger_t;

typedef struct {
    bv_config_t *cfg;
    bv_store_t *store;
    bv_keys_t *keys;     /* NULL until the key store is opened */
    bv_http_t *http;     /* NULL in admin commands */
    bv_ledger_t *ledger; /* NULL until initialised */
} bv_app_t;


/* A module plugged into the application. init runs in order at start-up (after the store
 * is migrated), routes registers HTTP routes (serve only), fini runs in reverse order.
 * Each may be NULL. init/routes return 0 or a negative BV_E... (start-up stops). */
typedef struct {
    const char *name;
    int (*init)(bv_app_t *app);
    int (*routes)(bv_app_t *app);
    void (*fini)(bv_app_t *app);
} bv_module_t;

/* Opens the data directory (created 0700 if missing), the store (migrated) and every
 * module's init. `with_http` also creates the HTTP server and registers routes. On
 * failure logs one line and returns a negative code; the caller still calls
 * bv_app_close. */
int bv_app_open(bv_app_t *app, bv_config_t *cfg, int with_http);
/* The same, starting only the modules named in `names` (NULL-terminated; NULL = all), in
 * table order: `boveda core` runs ops, keys, audit, ledger and core, nothing customer-facing
 * and no queue consumers. bv_app_close finishes exactly those. */
int bv_app_open_modules(bv_app_t *app, bv_config_t *cfg, int with_http, const char *const *names);
void bv_app_close(bv_app_t *app);

/* An admin command group: `boveda admin <name> ...`. main returns the process exit
 * status. The app is opened (without HTTP) before main is called. */
typedef struct {
    const char *name;
    const char *summary;
    int (*main)(bv_app_t *app, int argc, char **argv);
} bv_admin_command_t;

extern const bv_admin_command_t bv_admin_commands[];
extern const size_t bv_n_admin_commands;

#endif
