#include <stdlib.h>
#include <string.h>

#include "base/errors.h"
#include "http/internal.h"

static int is_param(const char *seg) { return seg[0] == '{'; }

int router_add(router_t *r, const bv_route_t *route, void *ctx)
{
    route_entry_t *ne = realloc(r->entries, (r->n + 1) * sizeof(*ne));
    if (ne == NULL)
        return BV_ENOMEM;
    r->entries = ne;
    route_entry_t *e = &r->entries[r->n];
    memset(e, 0, sizeof(*e));
    e->route = route;
    e->ctx = ctx;
    e->index = r->n;
    const char *p = route->pattern;
    if (p[0] != '/')
        return BV_EINVALID;
    size_t cap = 0;
    for (const char *c = p; *c; c++)
        cap += *c == '/';
    e->segments = calloc(cap, sizeof(char *));
    if (e->segments == NULL)
        return BV_ENOMEM;
    while (*p == '/') {
        const char *start = ++p;
        while (*p && *p != '/')
            p++;
        e->segments[e->n_segments++] = strndup(start, (size_t)(p - start));
    }
    r->n++;
    return 0;
}

void router_free(router_t *r)
{
    for (size_t i = 0; i < r->n; i++) {
        for (size_t j = 0; j < r->entries[i].n_segments; j++)
            free(r->entries[i].segments[j]);
        free(r->entries[i].segments);
    }
    free(r->entries);
    r->entries = NULL;
    r->n = 0;
}

/* Splits the raw path into segments (at most 32); returns the count or -1. */
static int split(const char *path, size_t len, const char **segs, size_t *lens, int max)
{
    int n = 0;
    size_t i = 0;
    if (len == 0 || path[0] != '/')
        return -1;
    while (i < len && path[i] == '/') {
        size_t start = ++i;
        while (i < len && path[i] != '/')
            i++;
        if (n == max)
            return -1;
        segs[n] = path + start;
        lens[n] = i - start;
        n++;
    }
    return n;
}

match_t router_match(const router_t *r, const char *method, size_t method_len, const char *path, size_t path_len,
                     bv_arena_t *arena, const route_entry_t **out, bv_header_t *params, size_t *n_params,
                     char *allow, size_t allow_len)
{
    const char *segs[32];
    size_t lens[32];
    int n = split(path, path_len, segs, lens, 32);
    int path_matched = 0;
    size_t allow_off = 0;
    if (n < 0)
        return MATCH_NO_PATH;
    allow[0] = '\0';
    for (size_t i = 0; i < r->n; i++) {
        const route_entry_t *e = &r->entries[i];
        if ((int)e->n_segments != n)
            continue;
        int ok = 1;
        for (int j = 0; j < n && ok; j++) {
            const char *ps = e->segments[j];
            if (is_param(ps))
                ok = lens[j] > 0;
            else
                ok = strlen(ps) == lens[j] && memcmp(ps, segs[j], lens[j]) == 0;
        }
        if (!ok)
            continue;
        path_matched = 1;
        size_t ml = strlen(e->route->method);
        if (ml != method_len || memcmp(e->route->method, method, ml) != 0) {
            if (strstr(allow, e->route->method) == NULL && allow_off + ml + 3 < allow_len) {
                if (allow_off > 0) {
                    memcpy(allow + allow_off, ", ", 2);
                    allow_off += 2;
                }
                memcpy(allow + allow_off, e->route->method, ml);
                allow_off += ml;
                allow[allow_off] = '\0';
            }
            continue;
        }
        *n_params = 0;
        for (int j = 0; j < n; j++) {
            const char *ps = e->segments[j];
            if (!is_param(ps))
                continue;
            if (*n_params == BV_MAX_PARAMS)
                return MATCH_NO_PATH;
            char *v = bv_url_decode(arena, segs[j], lens[j], 0);
            if (v == NULL)
                return MATCH_NO_PATH;
            size_t pl = strlen(ps);
            params[*n_params].name = bv_arena_strndup(arena, ps + 1, pl - 2);
            params[*n_params].value = v;
            (*n_params)++;
        }
        *out = e;
        return MATCH_FOUND;
    }
    return path_matched ? MATCH_NO_METHOD : MATCH_NO_PATH;
}
