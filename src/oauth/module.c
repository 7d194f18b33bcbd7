/* The OAuth module: its state, the route table, the resource-server authenticator and
 * the issuer identifier. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/errors.h"
#include "base/log.h"
#include "oauth/internal.h"

static oauth_t state = {.mu = PTHREAD_MUTEX_INITIALIZER, .clients_mu = PTHREAD_MUTEX_INITIALIZER};

oauth_t *oauth_state(void)
{
    return &state;
}

const char *oauth_issuer(oauth_t *o)
{
    if (atomic_load(&o->issuer_ready))
        return o->issuer;
    pthread_mutex_lock(&o->mu);
    if (!atomic_load(&o->issuer_ready)) {
        const char *pub = o->app != NULL ? o->app->cfg->public_url : "";
        const char *url = NULL;
        if (pub != NULL && pub[0] != '\0')
            url = pub;
        else if (o->app != NULL && o->app->http != NULL)
            url = bv_http_url(o->app->http, 0) ? bv_http_url(o->app->http, 0) : bv_http_url(o->app->http, 1);
        if (url != NULL) {
            snprintf(o->issuer, sizeof(o->issuer), "%s", url);
            size_t l = strlen(o->issuer);
            while (l > 0 && o->issuer[l - 1] == '/')
                o->issuer[--l] = '\0';
            if (o->validator != NULL)
                bv_oauth_validator_set_issuer(o->validator, o->issuer, o->issuer);
            atomic_store(&o->issuer_ready, 1);
        }
    }
    pthread_mutex_unlock(&o->mu);
    return o->issuer;
}

const char *oauth_audience(oauth_t *o)
{
    return oauth_issuer(o);
}

/* ---- the authenticator (runs on the event loops) ---- */
static int authenticate(void *cls, const char *token, size_t len, bv_principal_t *out)
{
    oauth_t *o = cls;
    size_t dots = 0;
    for (size_t i = 0; i < len; i++)
        dots += token[i] == '.';
    if (dots != 2)
        return BV_ENOTFOUND; /* not a JWT: some other authenticator's kind */
    oauth_issuer(o);
    return bv_oauth_validate_access_token(o->validator, token, len, bv_now_us() / 1000000, out) == 0
               ? 0
               : BV_EUNAUTHENTICATED;
}

/* ---- routes ---- */
#define FORM_LIMIT 16384

/* A client_credentials grant authenticated by a client secret writes nothing (the token is
 * signed, not stored): it is CPU work and runs on the small pool. Every other grant, and a
 * private_key_jwt assertion (its jti is recorded), may wait for a commit. */
static int token_is_short(bv_call_t *c)
{
    oauth_form_t f;
    if (c->body == NULL || oauth_form_parse(&c->arena, c->body, c->body_len, &f) != 0)
        return 0;
    const char *grant = oauth_form_get(&f, "grant_type");
    return grant != NULL && strcmp(grant, "client_credentials") == 0 &&
           oauth_form_get(&f, "client_assertion") == NULL;
}

/* Introspection only reads. */
static int always_short(bv_call_t *c)
{
    (void)c;
    return 1;
}

static const bv_route_t routes[] = {
    {"GET", "/.well-known/openid-configuration", oauth_on_discovery, NULL, 0, BV_ROUTE_ON_LOOP, NULL},
    {"GET", "/oauth2/jwks", oauth_on_jwks, NULL, 0, 0, NULL},
    {"GET", "/oauth2/authorize", oauth_on_authorize, NULL, 0, 0, NULL},
    {"POST", "/oauth2/login", oauth_on_login, NULL, 8192, BV_ROUTE_FORM, NULL},
    {"POST", "/oauth2/token", oauth_on_token, NULL, FORM_LIMIT, BV_ROUTE_FORM, token_is_short},
    {"POST", "/oauth2/introspect", oauth_on_introspect, NULL, FORM_LIMIT, BV_ROUTE_FORM, always_short},
    {"POST", "/oauth2/revoke", oauth_on_revoke, NULL, FORM_LIMIT, BV_ROUTE_FORM, NULL},
    {"GET", "/oauth2/userinfo", oauth_on_userinfo, "openid", 0, 0, NULL},
    {"POST", "/oauth2/userinfo", oauth_on_userinfo, "openid", 1024, BV_ROUTE_FORM, NULL},
    {"GET", "/oauth2/logout", oauth_on_logout, NULL, 0, 0, NULL},
    {"POST", "/oauth2/logout", oauth_on_logout, NULL, 8192, BV_ROUTE_FORM, NULL},
};

int bv_oauth_module_init(bv_app_t *app)
{
    oauth_t *o = &state;
    int rc;
    o->app = app;
    o->store = app->store;
    o->keys = app->keys;
    o->identity = bv_identity_instance();
    if (o->keys == NULL || o->identity == NULL) {
        bv_log_error("oauth needs the keys and identity modules", NULL);
        return BV_ECONFIG;
    }
    if (app->http == NULL)
        return 0; /* admin commands: no validator */
    /* Make sure both signing keys exist (created on first use) before caching the JWKS. */
    static const char *const algs[] = {"ES256", "RS256"};
    for (size_t i = 0; i < 2; i++) {
        bv_buf_t sig = {0};
        char kid[64];
        rc = bv_keys_sign(o->keys, algs[i], "boveda", 6, &sig, kid);
        bv_buf_free(&sig);
        if (rc != 0) {
            bv_log_error("cannot use the signing key", "\"alg\":\"%s\",\"error\":\"%s\"", algs[i],
                         bv_err_name(rc));
            return rc;
        }
        snprintf(i == 0 ? o->kid_es256 : o->kid_rs256, 64, "%s", kid);
    }
    return bv_oauth_validator_create(o->keys, "", "", 1, &o->validator);
}

int bv_oauth_module_routes(bv_app_t *app)
{
    oauth_t *o = &state;
    int rc = bv_http_add_routes(app->http, routes, sizeof(routes) / sizeof(routes[0]), o);
    if (rc != 0)
        return rc;
    bv_authenticator_t a = {"oauth-access-token", authenticate, o};
    return bv_http_add_authenticator(app->http, &a);
}

void bv_oauth_module_fini(bv_app_t *app)
{
    (void)app;
    bv_oauth_validator_free(state.validator);
    state.validator = NULL;
    oauth_client_cache_clear(&state);
    atomic_store(&state.issuer_ready, 0);
}
