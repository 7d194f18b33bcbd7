/* The OAuth 2 / OpenID Connect authorization server (issue 5), strict per RFC 9700:
 * authorization code with PKCE S256 only, exact redirect URIs, RFC 9207 `iss`, one-time
 * codes, rotating refresh tokens with reuse detection, JWT access tokens per RFC 9068
 * signed by the key store, a hosted login made of steps, and the resource-server
 * authenticator that every API uses to accept those access tokens.
 *
 * Routes (see docs/oauth.md):
 *   GET  /.well-known/openid-configuration   GET /oauth2/jwks
 *   GET  /oauth2/authorize                    POST /oauth2/login (the hosted login form)
 *   POST /oauth2/token                        POST /oauth2/introspect   POST /oauth2/revoke
 *   GET|POST /oauth2/userinfo                 GET|POST /oauth2/logout */
#ifndef BV_OAUTH_OAUTH_H
#define BV_OAUTH_OAUTH_H

#include <stddef.h>
#include <stdint.h>

#include "app/app.h"
#include "http/http.h"

/* Lifetimes (seconds). Access tokens never live longer than 10 minutes (issue 5). */
#define BV_OAUTH_ACCESS_TTL   300
#define BV_OAUTH_ID_TOKEN_TTL 300
#define BV_OAUTH_CODE_TTL     60
#define BV_OAUTH_REFRESH_TTL  (30 * 86400)
#define BV_OAUTH_SESSION_TTL  (8 * 3600)
#define BV_OAUTH_LOGIN_TTL    900
#define BV_OAUTH_SKEW         60 /* accepted clock skew on exp/nbf/iat */

/* ---- resource-server validation of our access tokens ----
 * A validator holds an in-memory copy of the published public signing keys (by kid, with
 * the algorithm pinned per key), refreshed from bv_keys_jwks by a background thread
 * every few seconds and on demand when a token names an unknown kid. Validation never
 * blocks: it runs on the event loops. */
typedef struct bv_oauth_validator bv_oauth_validator_t;

/* Creates a validator over `keys` expecting tokens from `issuer` for `audience` and loads
 * the keys once (blocking). `refresh_thread` starts the background refresher. Caller frees
 * with bv_oauth_validator_free (NULL accepted). 0, BV_ENOMEM, key-store errors. */
int bv_oauth_validator_create(bv_keys_t *keys, const char *issuer, const char *audience, int refresh_thread,
                              bv_oauth_validator_t **out);
void bv_oauth_validator_free(bv_oauth_validator_t *v);
/* Sets the expected issuer/audience (when only known after the listeners are bound). */
void bv_oauth_validator_set_issuer(bv_oauth_validator_t *v, const char *issuer, const char *audience);
/* Reloads the keys now (blocking; for tests and after a rotation in this process). */
int bv_oauth_validator_refresh(bv_oauth_validator_t *v);
/* Enables (1) or disables (0) the per-thread cache of already verified tokens (default on). */
void bv_oauth_validator_set_cache(bv_oauth_validator_t *v, int on);
/* How many token signatures this validator has verified (the cache's misses). */
uint64_t bv_oauth_validator_verifications(bv_oauth_validator_t *v);

/* Validates an access token at `now` (seconds): compact JWS, header alg ES256/RS256
 * matching the key's pinned alg (never none, never HMAC), typ at+jwt, kid known, valid
 * signature, iss, aud, exp/nbf/iat within BV_OAUTH_SKEW, sub and client_id present. Fills
 * *out: kind USER for a user subject, CLIENT when sub is the client (client
 * credentials). 0 or BV_EUNAUTHENTICATED. Never blocks. */
int bv_oauth_validate_access_token(bv_oauth_validator_t *v, const char *token, size_t len, int64_t now,
                                   bv_principal_t *out);

/* ---- application hooks (src/app/app.c) ---- */
int bv_oauth_module_init(bv_app_t *app);
int bv_oauth_module_routes(bv_app_t *app);
void bv_oauth_module_fini(bv_app_t *app);

/* `boveda admin clients create|list|rotate-secret|delete [--json]`. */
int bv_oauth_admin_clients(bv_app_t *app, int argc, char **argv);
/* `boveda admin demo-seed [--password-stdin] [--json]`: idempotently registers the demo SPA
 * client (public, client_id "boveda-web") and the demo customer "demo". */
int bv_oauth_admin_demo_seed(bv_app_t *app, int argc, char **argv);

#endif
