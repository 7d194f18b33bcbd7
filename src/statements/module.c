/* The statements module: its state and the application hooks. */
#include "statements/internal.h"

static bv_store_t *g_store;

bv_store_t *statements_store(void)
{
    return g_store;
}

int bv_statements_module_init(bv_app_t *app)
{
    g_store = app->store;
    return statements_worker_register(app);
}

int bv_statements_module_routes(bv_app_t *app)
{
    return bv_http_add_routes(app->http, statements_routes, statements_n_routes, app);
}

void bv_statements_module_fini(bv_app_t *app)
{
    (void)app;
    statements_worker_unregister();
    g_store = NULL;
}
