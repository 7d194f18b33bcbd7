#include "base/errors.h"

typedef struct {
    int status;
    const char *slug;
    const char *title;
    const char *name;
} entry_t;

static const entry_t entries[] = {
#define BV_ERR_ROW(name, status, slug, title) {status, slug, title, #name},
    BV_ERRORS(BV_ERR_ROW)
#undef BV_ERR_ROW
};

static const entry_t *lookup(int code)
{
    int i = code - (BV__ERR_FIRST_PLACEHOLDER + 1);
    if (code >= 0 || i < 0 || (size_t)i >= sizeof(entries) / sizeof(entries[0]))
        return &entries[0];
    return &entries[i];
}

int bv_err_status(int code) { return lookup(code)->status; }
const char *bv_err_slug(int code) { return lookup(code)->slug; }
const char *bv_err_title(int code) { return lookup(code)->title; }
const char *bv_err_name(int code) { return code == 0 ? "BV_OK" : lookup(code)->name; }
