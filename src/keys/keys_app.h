/* The keys module's hooks into the application (src/app/app.c): module init/fini and the
 * `boveda admin keys ...` command group. */
#ifndef BV_KEYS_KEYS_APP_H
#define BV_KEYS_KEYS_APP_H

#include "app/app.h"

/* Opens the configured key store into app->keys (the store is migrated). 0 or the error
 * of bv_keys_open (start-up stops; the reason is logged). */
int bv_keys_app_init(bv_app_t *app);
/* Closes app->keys (wiping cached keys). */
void bv_keys_app_fini(bv_app_t *app);

/* `boveda admin keys rotate --purpose P | rotate-master | rotate-signing --alg ES256|RS256
 * [--retire-after SECONDS] | list [--json] | rewrap [--batch N]`. argv[0] is "keys".
 * Returns the process exit status (0 ok, 1 failure, 2 usage). */
int bv_keys_admin_main(bv_app_t *app, int argc, char **argv);

#endif
