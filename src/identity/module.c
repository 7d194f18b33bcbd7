/* The identity service: options from the environment, open/close, and the module hooks. */
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/errors.h"
#include "base/log.h"
#include "identity/internal.h"

static bv_identity_t *instance;

int bv_identity_options_load(const bv_config_t *cfg, bv_identity_options_t *out, char *err, size_t errlen)
{
    /* bounds and defaults live in the configuration table (src/base/config.c) */
    static const char *const names[] = {"ARGON2_MEMORY_KIB",     "ARGON2_ITERATIONS",   "ARGON2_PARALLELISM",
                                        "LOGIN_MAX_FAILURES",    "LOGIN_IP_MAX_FAILURES", "LOGIN_FREE_FAILURES",
                                        "LOGIN_DELAY_MS",        "LOGIN_DELAY_MAX_MS",  "LOGIN_LOCK_SECONDS"};
    int64_t v[sizeof(names) / sizeof(names[0])];
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        v[i] = bv_config_int(cfg, names[i]);
    memset(out, 0, sizeof(*out));
    out->argon2.m_kib = (uint32_t)v[0];
    out->argon2.t_cost = (uint32_t)v[1];
    out->argon2.parallelism = (uint32_t)v[2];
    out->lockout.max_failures = (int)v[3];
    out->lockout.ip_max_failures = (int)v[4];
    out->lockout.free_failures = (int)v[5];
    out->lockout.delay_base_us = v[6] * 1000;
    out->lockout.delay_max_us = v[7] * 1000;
    out->lockout.lock_us = v[8] * 1000000;
    if (out->argon2.m_kib < 8 * out->argon2.parallelism) {
        snprintf(err, errlen, "BOVEDA_ARGON2_MEMORY_KIB: must be at least 8 x BOVEDA_ARGON2_PARALLELISM");
        return BV_ECONFIG;
    }
    return 0;
}

int bv_identity_open(bv_store_t *store, const bv_identity_options_t *opt, bv_identity_t **out)
{
    unsigned char pw[32];
    int rc;
    bv_identity_t *id = calloc(1, sizeof(*id));
    *out = NULL;
    if (id == NULL)
        return BV_ENOMEM;
    id->store = store;
    id->opt = *opt;
    bv_random(pw, sizeof(pw));
    rc = bv_identity_password_hash(&id->opt.argon2, (const char *)pw, sizeof(pw), id->dummy_phc);
    OPENSSL_cleanse(pw, sizeof(pw));
    if (rc != 0) {
        free(id);
        return rc;
    }
    *out = id;
    return 0;
}

void bv_identity_close(bv_identity_t *id)
{
    if (id == NULL)
        return;
    OPENSSL_cleanse(id, sizeof(*id));
    free(id);
}

const bv_identity_options_t *bv_identity_options(const bv_identity_t *id)
{
    return &id->opt;
}

bv_identity_t *bv_identity_instance(void)
{
    return instance;
}

int bv_identity_module_init(bv_app_t *app)
{
    bv_identity_options_t opt;
    char err[256];
    int rc = bv_identity_options_load(app->cfg, &opt, err, sizeof(err));
    if (rc != 0) {
        char esc[300];
        bv_json_escape(esc, sizeof(esc), err);
        bv_log_error("invalid identity setting", "\"detail\":\"%s\"", esc);
        return rc;
    }
    if ((rc = bv_identity_open(app->store, &opt, &instance)) != 0)
        return rc;
    return 0;
}

void bv_identity_module_fini(bv_app_t *app)
{
    (void)app;
    bv_identity_close(instance);
    instance = NULL;
}
