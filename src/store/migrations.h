/* Embedded migrations, generated at build time from src/<module>/migrations/NNNN_*.sql
 * (cmake/embed_migrations.cmake). Numbers are global across modules and forward only;
 * docs/migrations.md records which module owns which numbers. */
#ifndef BV_STORE_MIGRATIONS_H
#define BV_STORE_MIGRATIONS_H

#include <stddef.h>

typedef struct {
    int number;
    const char *name;
    const char *sql;
} bv_migration_t;

extern const bv_migration_t bv_migrations[];
extern const size_t bv_n_migrations;

#endif
