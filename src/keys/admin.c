/* `boveda admin keys ...`: operator commands for the key store. They run in their own
 * process against the same database and key store as a running server; the server picks
 * up new data-key versions and signing-key states within seconds (see keys.c/signing.c). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/cli.h"
#include "base/errors.h"
#include "base/json.h"
#include "keys/keys_app.h"
#include "keys/keys_internal.h"

#define DEFAULT_RETIRE_AFTER_S (24 * 3600)

int bv_keys_app_init(bv_app_t *app)
{
    return bv_keys_open(app->cfg, app->store, &app->keys);
}

void bv_keys_app_fini(bv_app_t *app)
{
    bv_keys_close(app->keys);
    app->keys = NULL;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: boveda admin keys <command>\n"
               "  list [--json]                     key inventory (never key material)\n"
               "  rotate --purpose P                new data-key version for P (old ones still decrypt)\n"
               "  rotate-master                     new master-key version; rewraps every data key\n"
               "  rotate-signing --alg ES256|RS256 [--retire-after SECONDS]\n"
               "                                    next -> active, active -> retired, new next\n"
               "  rewrap [--batch N]                re-encrypt stored fields under the newest versions\n");
}

static int fail(const char *what, int rc)
{
    fprintf(stderr, "boveda: %s failed: %s (%s)\n", what, bv_err_title(rc), bv_err_name(rc));
    return 1;
}

static int cmd_list(bv_app_t *app, int argc, char **argv)
{
    json_t *inv = NULL;
    int rc = bv_keys_list(app->keys, &inv);
    if (rc != 0)
        return fail("keys list", rc);
    if (bv_cli_flag(argc, argv, "--json")) {
        char *s = bv_json_dump(inv);
        printf("%s\n", s != NULL ? s : "{}");
        free(s);
        json_decref(inv);
        return 0;
    }
    printf("adapter %s, master key version %d\n", json_string_value(json_object_get(inv, "adapter")),
           (int)json_integer_value(json_object_get(inv, "master_version")));
    size_t i;
    json_t *e;
    printf("data keys:\n");
    json_array_foreach(json_object_get(inv, "data_keys"), i, e)
    {
        printf("  %-5s %-24s v%-4d master v%-3d %s%s\n", json_string_value(json_object_get(e, "kind")),
               json_string_value(json_object_get(e, "purpose")),
               (int)json_integer_value(json_object_get(e, "version")),
               (int)json_integer_value(json_object_get(e, "master_version")),
               json_string_value(json_object_get(e, "created_at")),
               json_is_true(json_object_get(e, "current")) ? "  (current)" : "");
    }
    printf("signing keys:\n");
    json_array_foreach(json_object_get(inv, "signing_keys"), i, e)
    {
        const char *until = json_string_value(json_object_get(e, "retire_until"));
        printf("  %s %s %-7s %-6s%s%s\n", json_string_value(json_object_get(e, "kid")),
               json_string_value(json_object_get(e, "alg")), json_string_value(json_object_get(e, "state")),
               json_string_value(json_object_get(e, "location")), until ? " verifies until " : "",
               until ? until : "");
    }
    json_decref(inv);
    return 0;
}

int bv_keys_admin_main(bv_app_t *app, int argc, char **argv)
{
    int bad = 0, rc;
    if (argc < 2 || strcmp(argv[1], "help") == 0 || strcmp(argv[1], "--help") == 0) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (app->keys == NULL) {
        fprintf(stderr, "boveda: key store not open\n");
        return 1;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "list") == 0)
        return cmd_list(app, argc, argv);
    if (strcmp(cmd, "rotate") == 0) {
        const char *purpose = bv_cli_opt(argc, argv, "--purpose", &bad);
        if (purpose == NULL || bad || !bv_keys_purpose_valid(purpose)) {
            fprintf(stderr, "boveda: rotate needs --purpose P (1-64 chars of a-z 0-9 . _ -)\n");
            return 2;
        }
        int version = 0;
        if ((rc = bv_keys_rotate(app->keys, purpose, &version)) != 0)
            return fail("keys rotate", rc);
        printf("data key '%s' is now at version %d (new writes use it; older versions still decrypt; run "
               "'boveda admin keys rewrap' to re-encrypt stored data)\n",
               purpose, version);
        return 0;
    }
    if (strcmp(cmd, "rotate-master") == 0) {
        int version = 0, n = 0;
        if ((rc = bv_keys_rotate_master(app->keys, &version, &n)) != 0)
            return fail("keys rotate-master", rc);
        printf("master key is now at version %d; %d data keys rewrapped\n", version, n);
        return 0;
    }
    if (strcmp(cmd, "rotate-signing") == 0) {
        const char *alg = bv_cli_opt(argc, argv, "--alg", &bad);
        const char *after = bv_cli_opt(argc, argv, "--retire-after", &bad);
        char *end = NULL;
        long long secs = after != NULL ? strtoll(after, &end, 10) : DEFAULT_RETIRE_AFTER_S;
        if (bad || alg == NULL || (strcmp(alg, "ES256") != 0 && strcmp(alg, "RS256") != 0) ||
            (after != NULL && (*end != '\0' || secs < 0 || secs > 366LL * 86400))) {
            fprintf(stderr, "boveda: rotate-signing needs --alg ES256|RS256 [--retire-after SECONDS]\n");
            return 2;
        }
        char kid[64];
        int promoted = 0;
        if ((rc = bv_keys_rotate_signing(app->keys, alg, secs * 1000000LL, kid, &promoted)) != 0)
            return fail("keys rotate-signing", rc);
        if (promoted)
            printf(
                "%s signing key %s is now active; the previous one verifies for %lld s more; a new next key "
                "is published\n",
                alg, kid, secs);
        else
            printf(
                "%s next key %s published; run rotate-signing again once clients have refreshed the JWKS\n",
                alg, kid);
        return 0;
    }
    if (strcmp(cmd, "rewrap") == 0) {
        const char *batch = bv_cli_opt(argc, argv, "--batch", &bad);
        int n = batch != NULL ? atoi(batch) : 256;
        if (bad || n <= 0 || n > 100000) {
            fprintf(stderr, "boveda: rewrap [--batch N] with 1 <= N <= 100000\n");
            return 2;
        }
        bv_keys_rewrap_stats_t st;
        rc = bv_keys_rewrap(app->keys, n, &st);
        printf("rewrap: %llu fields, %llu values scanned, %llu re-encrypted, %llu changed concurrently, %llu "
               "undecryptable, %llu write batches\n",
               (unsigned long long)st.fields, (unsigned long long)st.scanned,
               (unsigned long long)st.rewrapped, (unsigned long long)st.skipped,
               (unsigned long long)st.failed, (unsigned long long)st.batches);
        if (rc != 0)
            return fail("keys rewrap", rc);
        return st.failed > 0 ? 1 : 0;
    }
    fprintf(stderr, "boveda: unknown keys command '%s'\n", cmd);
    usage(stderr);
    return 2;
}
