/* `boveda admin users ...`: operator commands for users. Passwords come from standard input
 * (--password-stdin), never from the command line, or are generated and printed once. */
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/cli.h"
#include "base/errors.h"
#include "base/json.h"
#include "identity/internal.h"

static void usage(FILE *f)
{
    fprintf(
        f,
        "usage: boveda admin users <command> [--json]\n"
        "  create --username U [--email E] [--phone +E164] [--name DISPLAY] [--status S] [--password-stdin]\n"
        "                         without --password-stdin a password is generated and printed once\n"
        "  list [--after ID] [--limit N]\n"
        "  lock (--username U | --id ID)       lock the account (operator lock)\n"
        "  unlock (--username U | --id ID)     make it active and clear failed-login locks\n"
        "  reset-password (--username U | --id ID) [--password-stdin]\n"
        "statuses: pending_onboarding, active, locked, disabled\n");
}

/* Rejects unknown options: every argv[i] from 2 must be a known flag or a known option
 * followed by its value. */
static int check_args(int argc, char **argv, const char *const *opts, const char *const *flags)
{
    for (int i = 2; i < argc; i++) {
        int ok = 0;
        for (const char *const *o = opts; *o && !ok; o++)
            if (strcmp(argv[i], *o) == 0) {
                ok = 1;
                i++;
            }
        for (const char *const *f = flags; *f && !ok; f++)
            ok = strcmp(argv[i], *f) == 0;
        if (!ok) {
            fprintf(stderr, "boveda: unknown argument '%s'\n", argv[i]);
            return -1;
        }
    }
    return 0;
}

static int fail(const char *what, int rc, const char *field)
{
    if (field != NULL)
        fprintf(stderr, "boveda: %s failed: %s (%s: %s)\n", what, bv_err_title(rc), bv_err_name(rc), field);
    else
        fprintf(stderr, "boveda: %s failed: %s (%s)\n", what, bv_err_title(rc), bv_err_name(rc));
    return 1;
}

/* Reads one password line from stdin into buf (size n); strips the line end. Length or -1. */
static ssize_t read_password(char *buf, size_t n)
{
    size_t len = 0;
    while (len < n - 1) {
        ssize_t r = read(STDIN_FILENO, buf + len, n - 1 - len);
        if (r < 0)
            return -1;
        if (r == 0)
            break;
        len += (size_t)r;
        if (memchr(buf, '\n', len) != NULL)
            break;
    }
    char *nl = memchr(buf, '\n', len);
    if (nl != NULL)
        len = (size_t)(nl - buf);
    if (len > 0 && buf[len - 1] == '\r')
        len--;
    buf[len] = '\0';
    return (ssize_t)len;
}

/* 20 characters from an unambiguous alphabet (~114 bits). */
static void generate_password(char out[21])
{
    static const char al[] = "ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789";
    unsigned char r[64];
    size_t o = 0;
    while (o < 20) {
        bv_random(r, sizeof(r));
        for (size_t i = 0; i < sizeof(r) && o < 20; i++)
            if (r[i] < 4 * (sizeof(al) - 1)) /* 228 < 256: no modulo bias */
                out[o++] = al[r[i] % (sizeof(al) - 1)];
    }
    out[20] = '\0';
    OPENSSL_cleanse(r, sizeof(r));
}

/* The password for create/reset: from stdin or generated (*generated set). */
static int obtain_password(int argc, char **argv, char *buf, size_t n, size_t *len, int *generated)
{
    *generated = 0;
    if (bv_cli_flag(argc, argv, "--password-stdin")) {
        ssize_t l = read_password(buf, n);
        if (l <= 0) {
            fprintf(stderr, "boveda: no password on standard input\n");
            return -1;
        }
        *len = (size_t)l;
        const char *why = NULL;
        if (bv_identity_password_check(buf, *len, &why) != 0) {
            fprintf(stderr, "boveda: %s\n", why);
            return -1;
        }
        return 0;
    }
    generate_password(buf);
    *len = strlen(buf);
    *generated = 1;
    return 0;
}

static void print_user(const bv_identity_user_t *u, int json, const char *password)
{
    if (json) {
        json_t *o = bv_identity_user_json(u);
        if (password != NULL)
            json_object_set_new(o, "password", json_string(password));
        char *s = bv_json_dump(o);
        printf("%s\n", s ? s : "{}");
        if (s != NULL)
            OPENSSL_cleanse(s, strlen(s));
        free(s);
        json_decref(o);
        return;
    }
    printf("%s  %-20s %-18s %s%s%s\n", u->id, u->username, u->status, u->email,
           password ? "  password: " : "", password ? password : "");
}

/* Resolves --id or --username to a user. */
static int resolve(bv_identity_t *id, int argc, char **argv, bv_identity_user_t *u)
{
    int bad = 0;
    const char *uid = bv_cli_opt(argc, argv, "--id", &bad), *un = bv_cli_opt(argc, argv, "--username", &bad);
    if (bad || (uid == NULL) == (un == NULL)) {
        fprintf(stderr, "boveda: give exactly one of --id ID or --username U\n");
        return 2;
    }
    int rc = uid != NULL ? bv_identity_user_get(id, uid, u) : bv_identity_user_find(id, un, u);
    if (rc == BV_ENOTFOUND) {
        fprintf(stderr, "boveda: no such user\n");
        return 1;
    }
    return rc != 0 ? fail("user lookup", rc, NULL) : 0;
}

static int cmd_create(bv_identity_t *id, int argc, char **argv)
{
    static const char *const opts[] = {"--username", "--email", "--phone", "--name", "--status", NULL};
    static const char *const flags[] = {"--password-stdin", "--json", NULL};
    char pw[BV_IDENTITY_PASSWORD_MAX + 2];
    size_t len = 0;
    int bad = 0, generated = 0, status = 1;
    bv_identity_user_t u;
    const char *field = NULL;
    if (check_args(argc, argv, opts, flags) != 0)
        return 2;
    bv_identity_new_user_t req = {
        bv_cli_opt(argc, argv, "--username", &bad), bv_cli_opt(argc, argv, "--email", &bad),
        bv_cli_opt(argc, argv, "--phone", &bad), bv_cli_opt(argc, argv, "--name", &bad),
        bv_cli_opt(argc, argv, "--status", &bad)};
    if (bad || req.username == NULL) {
        usage(stderr);
        return 2;
    }
    if (obtain_password(argc, argv, pw, sizeof(pw), &len, &generated) != 0)
        goto out;
    int rc = bv_identity_user_create(id, &req, pw, len, "admin:cli", &u, &field);
    if (rc != 0) {
        if (rc == BV_ECONFLICT)
            fprintf(stderr, "boveda: a user with this %s already exists\n", field ? field : "username");
        else
            fail("users create", rc, field);
        goto out;
    }
    print_user(&u, bv_cli_flag(argc, argv, "--json"), generated ? pw : NULL);
    status = 0;
out:
    OPENSSL_cleanse(pw, sizeof(pw));
    return status;
}

static int cmd_list(bv_identity_t *id, int argc, char **argv)
{
    static const char *const opts[] = {"--after", "--limit", NULL};
    static const char *const flags[] = {"--json", NULL};
    int bad = 0, json = bv_cli_flag(argc, argv, "--json");
    const char *after = bv_cli_opt(argc, argv, "--after", &bad),
               *lim = bv_cli_opt(argc, argv, "--limit", &bad);
    int limit = lim != NULL ? atoi(lim) : 1000;
    bv_identity_user_t *items = NULL;
    size_t n = 0;
    if (check_args(argc, argv, opts, flags) != 0 || bad || limit < 1 || limit > 10000) {
        usage(stderr);
        return 2;
    }
    int rc = bv_identity_user_list(id, after, limit, &items, &n);
    if (rc != 0)
        return fail("users list", rc, NULL);
    if (json) {
        json_t *arr = json_array();
        for (size_t i = 0; i < n; i++)
            json_array_append_new(arr, bv_identity_user_json(&items[i]));
        json_t *o = json_pack("{s:o}", "users", arr);
        char *s = bv_json_dump(o);
        printf("%s\n", s ? s : "{}");
        free(s);
        json_decref(o);
    } else {
        for (size_t i = 0; i < n; i++)
            print_user(&items[i], 0, NULL);
    }
    free(items);
    return 0;
}

static int cmd_status(bv_identity_t *id, int argc, char **argv, const char *to)
{
    static const char *const opts[] = {"--username", "--id", NULL};
    static const char *const flags[] = {"--json", NULL};
    bv_identity_user_t u;
    int rc;
    if (check_args(argc, argv, opts, flags) != 0)
        return 2;
    if ((rc = resolve(id, argc, argv, &u)) != 0)
        return rc;
    if ((rc = bv_identity_user_set_status(id, u.id, to, "admin:cli")) != 0)
        return fail(argv[1], rc, NULL);
    if ((rc = bv_identity_user_get(id, u.id, &u)) != 0)
        return fail(argv[1], rc, NULL);
    print_user(&u, bv_cli_flag(argc, argv, "--json"), NULL);
    return 0;
}

static int cmd_reset(bv_identity_t *id, int argc, char **argv)
{
    static const char *const opts[] = {"--username", "--id", NULL};
    static const char *const flags[] = {"--password-stdin", "--json", NULL};
    char pw[BV_IDENTITY_PASSWORD_MAX + 2];
    size_t len = 0;
    int generated = 0, status = 1, rc;
    bv_identity_user_t u;
    if (check_args(argc, argv, opts, flags) != 0)
        return 2;
    if ((rc = resolve(id, argc, argv, &u)) != 0)
        return rc;
    if (obtain_password(argc, argv, pw, sizeof(pw), &len, &generated) != 0)
        goto out;
    if ((rc = bv_identity_user_set_password(id, u.id, pw, len, "admin:cli")) != 0) {
        fail("users reset-password", rc, NULL);
        goto out;
    }
    print_user(&u, bv_cli_flag(argc, argv, "--json"), generated ? pw : NULL);
    status = 0;
out:
    OPENSSL_cleanse(pw, sizeof(pw));
    return status;
}

int bv_identity_admin_main(bv_app_t *app, int argc, char **argv)
{
    (void)app;
    bv_identity_t *id = bv_identity_instance();
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "help") == 0) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (id == NULL) {
        fprintf(stderr, "boveda: the identity module is not initialised\n");
        return 1;
    }
    if (strcmp(argv[1], "create") == 0)
        return cmd_create(id, argc, argv);
    if (strcmp(argv[1], "list") == 0)
        return cmd_list(id, argc, argv);
    if (strcmp(argv[1], "lock") == 0)
        return cmd_status(id, argc, argv, BV_IDENTITY_LOCKED);
    if (strcmp(argv[1], "unlock") == 0)
        return cmd_status(id, argc, argv, BV_IDENTITY_ACTIVE);
    if (strcmp(argv[1], "reset-password") == 0)
        return cmd_reset(id, argc, argv);
    usage(stderr);
    return 2;
}
