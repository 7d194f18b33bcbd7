/* Operational endpoints: /healthz, /readyz, /metrics, and `boveda admin db`. */
#ifndef BV_OPS_OPS_H
#define BV_OPS_OPS_H

#include "app/app.h"

int bv_ops_routes(bv_app_t *app);
int bv_ops_admin_db(bv_app_t *app, int argc, char **argv);

#endif
