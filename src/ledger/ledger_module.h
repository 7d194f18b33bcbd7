/* The ledger plugged into the application (src/app/app.c): module hooks and the admin
 * command `boveda admin ledger verify [--json]` (exit 0 when every invariant holds, 1 when
 * one fails, 2 on usage errors). */
#ifndef BV_LEDGER_MODULE_H
#define BV_LEDGER_MODULE_H

#include "app/app.h"

/* init opens the engine into app->ledger (with the hold sweeper when serving); routes adds
 * the HTTP routes; fini drains and closes the engine. */
int bv_ledger_module_init(bv_app_t *app);
int bv_ledger_module_routes(bv_app_t *app);
void bv_ledger_module_fini(bv_app_t *app);
int bv_ledger_admin_main(bv_app_t *app, int argc, char **argv);

#endif
