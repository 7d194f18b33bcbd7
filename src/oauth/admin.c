/* `boveda admin clients ...` and `boveda admin demo-seed`. Secrets are printed once and
 * only their HMAC is stored. */
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/cli.h"
#include "base/errors.h"
#include "base/json.h"
#include "oauth/internal.h"

#define DEMO_CLIENT_ID "boveda-web"
#define DEMO_USERNAME  "demo"

static void usage(FILE *f)
{
    fprintf(
        f,
        "usage: boveda admin clients <command> [--json]\n"
        "  create --name N [--public] [--redirect-uri URI]... [--post-logout-redirect-uri URI]...\n"
        "         [--grant G]... [--scope \"S ...\"] [--auth-method M] [--jwks FILE]\n"
        "         [--id-token-alg ES256|RS256] [--third-party] [--legacy-password] [--client-id ID]\n"
        "      grants: authorization_code refresh_token client_credentials password (legacy only)\n"
        "      auth methods: none (public) client_secret_basic (default) client_secret_post private_key_jwt\n"
        "  list\n"
        "  rotate-secret --client-id ID\n"
        "  delete --client-id ID\n");
}

static int is_opt(const char *a)
{
    static const char *const opts[] = {"--name",  "--redirect-uri", "--post-logout-redirect-uri",
                                       "--grant", "--scope",        "--auth-method",
                                       "--jwks",  "--id-token-alg", "--client-id",
                                       NULL};
    for (const char *const *o = opts; *o; o++)
        if (strcmp(a, *o) == 0)
            return 1;
    return 0;
}

static int is_flag(const char *a)
{
    static const char *const flags[] = {"--public", "--third-party", "--legacy-password", "--json", NULL};
    for (const char *const *o = flags; *o; o++)
        if (strcmp(a, *o) == 0)
            return 1;
    return 0;
}

static int fail(const char *what, int rc, const char *why)
{
    if (why != NULL)
        fprintf(stderr, "boveda: %s failed: %s\n", what, why);
    else
        fprintf(stderr, "boveda: %s failed: %s (%s)\n", what, bv_err_title(rc), bv_err_name(rc));
    return 1;
}

static void print_json(json_t *o)
{
    char *s = bv_json_dump(o);
    printf("%s\n", s ? s : "{}");
    if (s != NULL)
        OPENSSL_cleanse(s, strlen(s));
    free(s);
}

static int cmd_create(oauth_t *o, int argc, char **argv)
{
    oauth_client_new_t req = {0};
    json_t *ru = json_array(), *plru = json_array(), *jwks = NULL;
    bv_buf_t grants = {0};
    char id[128], secret[OAUTH_SECRET_LEN + 1] = "";
    const char *why = NULL;
    int json = 0, status = 2, rc;
    req.first_party = 1;
    req.scope = "openid";
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        if (is_opt(a)) {
            if (i + 1 >= argc) {
                fprintf(stderr, "boveda: %s needs a value\n", a);
                goto out;
            }
            const char *v = argv[++i];
            if (strcmp(a, "--name") == 0)
                req.name = v;
            else if (strcmp(a, "--redirect-uri") == 0)
                json_array_append_new(ru, json_string(v));
            else if (strcmp(a, "--post-logout-redirect-uri") == 0)
                json_array_append_new(plru, json_string(v));
            else if (strcmp(a, "--grant") == 0) {
                if (grants.len > 0)
                    bv_buf_puts(&grants, " ");
                bv_buf_puts(&grants, v);
            } else if (strcmp(a, "--scope") == 0)
                req.scope = v;
            else if (strcmp(a, "--auth-method") == 0)
                req.auth_method = v;
            else if (strcmp(a, "--id-token-alg") == 0)
                req.id_token_alg = v;
            else if (strcmp(a, "--client-id") == 0)
                req.client_id = v;
            else if (strcmp(a, "--jwks") == 0) {
                json_error_t je;
                jwks = v[0] == '{' ? json_loads(v, 0, &je) : json_load_file(v, 0, &je);
                if (jwks == NULL) {
                    fprintf(stderr, "boveda: --jwks: not a JSON document (%s)\n", je.text);
                    goto out;
                }
            }
        } else if (is_flag(a)) {
            if (strcmp(a, "--public") == 0)
                req.is_public = 1;
            else if (strcmp(a, "--third-party") == 0)
                req.first_party = 0;
            else if (strcmp(a, "--legacy-password") == 0)
                req.legacy_password = 1;
            else
                json = 1;
        } else {
            fprintf(stderr, "boveda: unknown argument '%s'\n", a);
            usage(stderr);
            goto out;
        }
    }
    req.redirect_uris = ru;
    req.post_logout_redirect_uris = plru;
    req.jwks = jwks;
    req.grant_types = grants.len > 0 ? grants.data : "authorization_code refresh_token";
    status = 1;
    if ((rc = oauth_client_create(o, &req, id, secret, &why)) != 0) {
        fail("clients create", rc, why);
        goto out;
    }
    if (json) {
        json_t *r = json_pack("{s:s}", "client_id", id);
        if (secret[0] != '\0')
            json_object_set_new(r, "client_secret", json_string(secret));
        json_object_set_new(r, "token_endpoint_auth_method",
                            json_string(req.auth_method ? req.auth_method
                                        : req.is_public ? "none"
                                                        : "client_secret_basic"));
        print_json(r);
        json_decref(r);
    } else {
        printf("client_id      %s\n", id);
        if (secret[0] != '\0')
            printf("client_secret  %s   (shown once; only a hash is stored)\n", secret);
    }
    status = 0;
out:
    OPENSSL_cleanse(secret, sizeof(secret));
    json_decref(ru);
    json_decref(plru);
    json_decref(jwks);
    bv_buf_free(&grants);
    return status;
}

static const char *client_id_arg(int argc, char **argv)
{
    for (int i = 2; i + 1 < argc; i++)
        if (strcmp(argv[i], "--client-id") == 0)
            return argv[i + 1];
    return NULL;
}

int bv_oauth_admin_clients(bv_app_t *app, int argc, char **argv)
{
    (void)app;
    oauth_t *o = oauth_state();
    int json = bv_cli_flag(argc, argv, "--json"), rc;
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "help") == 0) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (o->store == NULL) {
        fprintf(stderr, "boveda: the oauth module is not initialised\n");
        return 1;
    }
    if (strcmp(argv[1], "create") == 0)
        return cmd_create(o, argc, argv);
    if (strcmp(argv[1], "list") == 0) {
        json_t *arr = NULL;
        if ((rc = oauth_client_list(o, &arr)) != 0)
            return fail("clients list", rc, NULL);
        if (json) {
            json_t *r = json_pack("{s:o}", "clients", arr);
            print_json(r);
            json_decref(r);
        } else {
            size_t i;
            json_t *c;
            json_array_foreach(arr, i, c)
                printf("%-38s %-24s %-20s %s\n", json_string_value(json_object_get(c, "client_id")),
                       json_string_value(json_object_get(c, "name")),
                       json_string_value(json_object_get(c, "token_endpoint_auth_method")),
                       json_string_value(json_object_get(c, "grant_types")));
            json_decref(arr);
        }
        return 0;
    }
    const char *id = client_id_arg(argc, argv);
    if (id == NULL) {
        usage(stderr);
        return 2;
    }
    if (strcmp(argv[1], "rotate-secret") == 0) {
        char secret[OAUTH_SECRET_LEN + 1];
        if ((rc = oauth_client_rotate_secret(o, id, secret)) != 0)
            return fail("clients rotate-secret", rc,
                        rc == BV_ENOTFOUND ? "no such client with a client secret" : NULL);
        if (json) {
            json_t *r = json_pack("{s:s,s:s}", "client_id", id, "client_secret", secret);
            print_json(r);
            json_decref(r);
        } else {
            printf("client_secret  %s   (shown once; the old secret no longer works)\n", secret);
        }
        OPENSSL_cleanse(secret, sizeof(secret));
        return 0;
    }
    if (strcmp(argv[1], "delete") == 0) {
        if ((rc = oauth_client_delete(o, id)) != 0)
            return fail("clients delete", rc, rc == BV_ENOTFOUND ? "no such client" : NULL);
        if (json)
            printf("{\"client_id\":\"%s\",\"deleted\":true}\n", id);
        else
            printf("deleted %s\n", id);
        return 0;
    }
    usage(stderr);
    return 2;
}

/* ---- demo-seed ---- */
static ssize_t read_line(char *buf, size_t n)
{
    size_t len = 0;
    while (len < n - 1) {
        ssize_t r = read(STDIN_FILENO, buf + len, n - 1 - len);
        if (r <= 0)
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

int bv_oauth_admin_demo_seed(bv_app_t *app, int argc, char **argv)
{
    oauth_t *o = oauth_state();
    int json = 0, from_stdin = 0, rc, status = 1;
    char pw[BV_IDENTITY_PASSWORD_MAX + 2] = "", id[128], secret[OAUTH_SECRET_LEN + 1];
    const char *why = NULL, *field = NULL;
    oauth_client_t existing;
    bv_identity_user_t u;
    int client_created = 0, user_created = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0) {
            json = 1;
        } else if (strcmp(argv[i], "--password-stdin") == 0) {
            from_stdin = 1;
        } else {
            fprintf(stderr, "usage: boveda admin demo-seed [--password-stdin] [--json]\n");
            return 2;
        }
    }
    if (o->store == NULL || o->identity == NULL) {
        fprintf(stderr, "boveda: the oauth module is not initialised\n");
        return 1;
    }
    /* the SPA: a public first-party client (PKCE), local dev server and the HTTPS demo */
    if (oauth_client_load(o, DEMO_CLIENT_ID, &existing) == 0) {
        oauth_client_clear(&existing);
    } else {
        json_t *ru = json_array(), *plru = json_array();
        char own[600];
        json_array_append_new(ru, json_string("http://localhost:5173/callback"));
        json_array_append_new(ru, json_string("https://localhost:8443/callback"));
        json_array_append_new(plru, json_string("http://localhost:5173/"));
        json_array_append_new(plru, json_string("https://localhost:8443/"));
        if (app->cfg->public_url[0] != '\0') {
            size_t l = strlen(app->cfg->public_url);
            snprintf(own, sizeof(own), "%.*s/callback", (int)(app->cfg->public_url[l - 1] == '/' ? l - 1 : l),
                     app->cfg->public_url);
            if (strcmp(own, "https://localhost:8443/callback") != 0 && oauth_redirect_uri_acceptable(own))
                json_array_append_new(ru, json_string(own));
        }
        oauth_client_new_t req = {.client_id = DEMO_CLIENT_ID,
                                  .name = "Bóveda web",
                                  .is_public = 1,
                                  .redirect_uris = ru,
                                  .post_logout_redirect_uris = plru,
                                  .grant_types = "authorization_code refresh_token",
                                  .scope =
                                      "openid profile email phone offline_access banking:read banking:write",
                                  .first_party = 1};
        rc = oauth_client_create(o, &req, id, secret, &why);
        json_decref(ru);
        json_decref(plru);
        if (rc != 0 && rc != BV_ECONFLICT)
            return fail("demo-seed (client)", rc, why);
        client_created = rc == 0;
    }
    /* the demo customer */
    if (bv_identity_user_find(o->identity, DEMO_USERNAME, &u) != 0) {
        size_t len;
        if (from_stdin) {
            ssize_t l = read_line(pw, sizeof(pw));
            if (l <= 0) {
                fprintf(stderr, "boveda: no password on standard input\n");
                goto out;
            }
            len = (size_t)l;
        } else {
            static const char al[] = "ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789";
            unsigned char r[64];
            size_t n = 0;
            while (n < 20) {
                bv_random(r, sizeof(r));
                for (size_t i = 0; i < sizeof(r) && n < 20; i++)
                    if (r[i] < 4 * (sizeof(al) - 1))
                        pw[n++] = al[r[i] % (sizeof(al) - 1)];
            }
            pw[n] = '\0';
            len = n;
            OPENSSL_cleanse(r, sizeof(r));
        }
        bv_identity_new_user_t nu = {.username = DEMO_USERNAME,
                                     .email = "demo@boveda.local",
                                     .phone = "+34600000000", /* SMS codes go to the demo inbox */
                                     .display_name = "Cliente Demo"};
        rc = bv_identity_user_create(o->identity, &nu, pw, len, "admin:cli", &u, &field);
        if (rc != 0) {
            fail("demo-seed (user)", rc, field);
            goto out;
        }
        user_created = 1;
    }
    if (json) {
        json_t *r = json_pack("{s:{s:s,s:b,s:[ss]},s:{s:s,s:s,s:b}}", "client", "client_id", DEMO_CLIENT_ID,
                              "created", client_created, "redirect_uris", "http://localhost:5173/callback",
                              "https://localhost:8443/callback", "user", "username", DEMO_USERNAME, "id",
                              u.id, "created", user_created);
        if (user_created && !from_stdin)
            json_object_set_new(json_object_get(r, "user"), "password", json_string(pw));
        print_json(r);
        json_decref(r);
    } else {
        printf("demo client  %s (%s)\n", DEMO_CLIENT_ID, client_created ? "created" : "already there");
        printf("demo user    %s (%s)%s%s\n", DEMO_USERNAME, user_created ? "created" : "already there",
               user_created && !from_stdin ? "  password: " : "", user_created && !from_stdin ? pw : "");
    }
    status = 0;
out:
    OPENSSL_cleanse(pw, sizeof(pw));
    return status;
}
