/* Private to src/identity/. */
#ifndef BV_IDENTITY_INTERNAL_H
#define BV_IDENTITY_INTERNAL_H

#include "identity/identity.h"

struct bv_identity {
    bv_store_t *store;
    bv_identity_options_t opt;
    /* Argon2id hash of a random password with the configured cost: unknown users are
     * verified against it so that they cost the same work as known ones. */
    char dummy_phc[BV_IDENTITY_PHC_MAX + 1];
};

/* The Argon2 work-area pool (password.c): areas idle in it now, and unmapping them all. */
int identity_password_pool_size(void);
void identity_password_pool_release(void);

#endif
