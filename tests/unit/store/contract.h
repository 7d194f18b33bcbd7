/* The storage contract: behaviour every adapter of src/store/store.h must show. An
 * adapter's test file defines the factory and runs bv_store_contract_tests. */
#ifndef BV_TEST_STORE_CONTRACT_H
#define BV_TEST_STORE_CONTRACT_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "store/store.h"

typedef struct {
    const char *name;
    /* Opens a fresh, empty, migrated store. */
    bv_store_t *(*open_fresh)(void);
    /* Reopens the store last made by open_fresh (same data), migrated. */
    bv_store_t *(*reopen)(void);
    void (*destroy)(bv_store_t *st); /* closes and removes the data */
} bv_store_factory_t;

extern const bv_store_factory_t *bv_contract_factory;

/* The contract tests, to pass to cmocka_run_group_tests. */
extern const struct CMUnitTest bv_store_contract_tests[];
extern const size_t bv_n_store_contract_tests;

#endif
