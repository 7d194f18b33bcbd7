#include "app/app.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "audit/audit_module.h"
#include "base/log.h"
#include "core/core.h"
#include "customer/customer.h"
#include "identity/identity.h"
#include "keys/keys_app.h"
#include "ledger/ledger_module.h"
#include "mfa/mfa.h"
#include "oauth/oauth.h"
#include "notify/notify.h"
#include "ops/ops.h"
#include "queue/queue.h"
#include "statements/statements.h"
#include "transfers/transfers.h"

/* The modules, in start-up order. A module adds one line here. */
static const bv_module_t modules[] = {
    {"ops", NULL, bv_ops_routes, NULL},
    {"keys", bv_keys_app_init, NULL, bv_keys_app_fini},
    {"audit", bv_audit_module_init, bv_audit_module_routes, bv_audit_module_fini},
    {"ledger", bv_ledger_module_init, bv_ledger_module_routes, bv_ledger_module_fini},
    {"core", bv_core_module_init, NULL, bv_core_module_fini},
    {"customer", bv_customer_module_init, bv_customer_module_routes, bv_customer_module_fini},
    {"identity", bv_identity_module_init, NULL, bv_identity_module_fini},
    {"oauth", bv_oauth_module_init, bv_oauth_module_routes, bv_oauth_module_fini},
    {"notify", bv_notify_module_init, bv_notify_module_routes, bv_notify_module_fini},
    {"queue", bv_queue_module_init, bv_queue_module_routes, bv_queue_module_fini},
    {"mfa", bv_mfa_module_init, bv_mfa_module_routes, bv_mfa_module_fini},
    {"transfers", bv_transfers_module_init, bv_transfers_module_routes, bv_transfers_module_fini},
    {"statements", bv_statements_module_init, bv_statements_module_routes, bv_statements_module_fini},
};
static const size_t n_modules = sizeof(modules) / sizeof(modules[0]);

/* `boveda admin <group>` commands. A module adds one line here. */
const bv_admin_command_t bv_admin_commands[] = {
    {"db", "database status", bv_ops_admin_db},
    {"keys", "key store: list, rotate, rotate-master, rotate-signing, rewrap", bv_keys_admin_main},
    {"audit", "verify the audit chain / force a checkpoint", bv_audit_admin_main},
    {"ledger", "verify the ledger invariants", bv_ledger_admin_main},
    {"users", "users: create, list, lock, unlock, reset-password", bv_identity_admin_main},
    {"clients", "OAuth clients: create, list, rotate-secret, delete", bv_oauth_admin_clients},
    {"demo-seed", "register the demo SPA client and demo customer", bv_oauth_admin_demo_seed},
    {"queues", "queues: list, peek, redrive, purge", bv_queue_admin_main},
    {"notify", "notifications: log, replay, test", bv_notify_admin_main},
};
const size_t bv_n_admin_commands = sizeof(bv_admin_commands) / sizeof(bv_admin_commands[0]);

static size_t n_inited;

static int mkdir_p(const char *path, mode_t mode)
{
    char tmp[4096];
    snprintf(tmp, sizeof(tmp), "%s", path);
    for (char *p = tmp + 1; *p; p++) {
        if (*p == '/') {
            *p = '\0';
            if (mkdir(tmp, mode) != 0 && errno != EEXIST)
                return -1;
            *p = '/';
        }
    }
    if (mkdir(tmp, mode) != 0 && errno != EEXIST)
        return -1;
    return 0;
}

static const char *const *only_modules; /* NULL: every module */

static int selected(const bv_module_t *m)
{
    if (only_modules == NULL)
        return 1;
    for (const char *const *n = only_modules; *n != NULL; n++)
        if (strcmp(*n, m->name) == 0)
            return 1;
    return 0;
}

int bv_app_open(bv_app_t *app, bv_config_t *cfg, int with_http)
{
    return bv_app_open_modules(app, cfg, with_http, NULL);
}

int bv_app_open_modules(bv_app_t *app, bv_config_t *cfg, int with_http, const char *const *names)
{
    char path[4096];
    int rc, applied = 0;
    memset(app, 0, sizeof(*app));
    app->cfg = cfg;
    only_modules = names;
    if (mkdir_p(cfg->data_dir, 0700) != 0) {
        bv_log_error("cannot create data directory", "\"path\":\"%s\",\"error\":\"%s\"", cfg->data_dir,
                     strerror(errno));
        return BV_EIO;
    }
    snprintf(path, sizeof(path), "%s/boveda.db", cfg->data_dir);
    bv_store_options_t opt = {.path = path, .batch_max = (int)cfg->commit_batch_max, .busy_timeout_ms = 5000};
    if ((rc = bv_store_open(&opt, &app->store)) != 0)
        return rc;
    if ((rc = bv_store_migrate(app->store, &applied)) != 0)
        return rc;
    if (applied > 0)
        bv_log_info("migrations applied", "\"count\":%d", applied);
    if (with_http && (rc = bv_http_create(cfg, &app->http)) != 0)
        return rc;
    for (n_inited = 0; n_inited < n_modules; n_inited++) {
        const bv_module_t *m = &modules[n_inited];
        if (m->init != NULL && selected(m) && (rc = m->init(app)) != 0) {
            bv_log_error("module failed to start", "\"module\":\"%s\",\"error\":\"%s\"", m->name, bv_err_name(rc));
            return rc;
        }
    }
    if (with_http) {
        for (size_t i = 0; i < n_modules; i++) {
            if (modules[i].routes != NULL && selected(&modules[i]) && (rc = modules[i].routes(app)) != 0) {
                bv_log_error("module routes failed", "\"module\":\"%s\"", modules[i].name);
                return rc;
            }
        }
    }
    return 0;
}

void bv_app_close(bv_app_t *app)
{
    if (app->http != NULL)
        bv_http_stop(app->http);
    while (n_inited > 0) {
        const bv_module_t *m = &modules[--n_inited];
        if (m->fini != NULL && selected(m))
            m->fini(app);
    }
    bv_http_free(app->http);
    app->http = NULL;
    bv_store_close(app->store);
    app->store = NULL;
}
