/* The ledger as an application module (init / routes / fini) and its admin command
 * `boveda admin ledger verify [--json]`. */
#include <stdio.h>
#include <string.h>

#include "base/log.h"
#include "ledger/internal.h"
#include "ledger/ledger_module.h"

int bv_ledger_module_init(bv_app_t *app)
{
    /* Only the serving process expires holds: an admin command opening the same database
     * must not write behind the server's back. */
    bv_ledger_options_t opt = {.sweeper = app->http != NULL, .sweep_interval_ms = 1000};
    return bv_ledger_open(app->store, &opt, &app->ledger);
}

int bv_ledger_module_routes(bv_app_t *app)
{
    int rc = bv_http_add_routes(app->http, ledger_account_routes, ledger_n_account_routes, app->ledger);
    if (rc == 0)
        rc = bv_http_add_routes(app->http, ledger_transfer_routes, ledger_n_transfer_routes, app->ledger);
    return rc;
}

void bv_ledger_module_fini(bv_app_t *app)
{
    bv_ledger_close(app->ledger);
    app->ledger = NULL;
}

static void print_json_checks(const bv_ledger_check_t *checks, int ok)
{
    char esc[600];
    printf("{\"ok\":%s,\"checks\":[", ok ? "true" : "false");
    for (int i = 0; i < BV_LEDGER_N_CHECKS; i++) {
        bv_json_escape(esc, sizeof(esc), checks[i].detail);
        printf("%s{\"name\":\"%s\",\"ok\":%s,\"detail\":\"%s\"}", i ? "," : "", checks[i].name,
               checks[i].ok ? "true" : "false", esc);
    }
    printf("]}\n");
}

int bv_ledger_admin_main(bv_app_t *app, int argc, char **argv)
{
    bool json = false, verify = false;
    bv_ledger_check_t checks[BV_LEDGER_N_CHECKS];
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0)
            json = true;
        else if (strcmp(argv[i], "verify") == 0)
            verify = true;
        else
            verify = false, i = argc; /* unknown argument: usage */
    }
    if (!verify || argc < 2) {
        fprintf(stderr, "usage: boveda admin ledger verify [--json]\n");
        return 2;
    }
    memset(checks, 0, sizeof(checks));
    int rc = bv_ledger_verify(app->store, checks);
    if (rc != 0 && rc != BV_EINTEGRITY) {
        fprintf(stderr, "boveda: ledger verify could not run (%s)\n", bv_err_name(rc));
        return 1;
    }
    if (json) {
        print_json_checks(checks, rc == 0);
    } else {
        for (int i = 0; i < BV_LEDGER_N_CHECKS; i++) {
            if (checks[i].ok)
                printf("ok    %s\n", checks[i].name);
            else
                printf("FAIL  %s: %s\n", checks[i].name, checks[i].detail);
        }
        printf(rc == 0 ? "ledger verified: all invariants hold\n" : "ledger verification FAILED\n");
    }
    return rc == 0 ? 0 : 1;
}
