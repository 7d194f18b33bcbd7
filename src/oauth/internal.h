/* Private to src/oauth/. */
#ifndef BV_OAUTH_INTERNAL_H
#define BV_OAUTH_INTERNAL_H

#include <jansson.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

#include "identity/identity.h"
#include "oauth/oauth.h"

/* ---- base64url (RFC 4648 §5, no padding) ---- */
/* Encodes into out (needs 4*ceil(len/3)+1 bytes); returns the length. */
size_t oauth_b64url_encode(const void *in, size_t len, char *out);
/* Decodes s[0..len) into out (up to cap bytes); returns the length or -1 (bad input). */
ssize_t oauth_b64url_decode(const char *s, size_t len, unsigned char *out, size_t cap);
/* A fresh random token: base64url of n random bytes (n <= 48) into out. */
void oauth_random_token(size_t n, char *out);

/* ---- JOSE ---- */
typedef enum { JWS_ALG_NONE_ = 0, JWS_ES256, JWS_RS256 } jws_alg_t;
/* "ES256" / "RS256" -> enum; anything else (none, HS256, PS256, ...) -> JWS_ALG_NONE_. */
jws_alg_t jws_alg_parse(const char *s);

/* Public key from a JWK (EC P-256 or RSA >= 2048 bits); the JWK's "alg", when present,
 * must agree with the key type. *alg_out gets the pinned algorithm. 0 or BV_EINVALID. */
int jwk_to_pkey(const json_t *jwk, EVP_PKEY **out, jws_alg_t *alg_out);
/* Verifies a JWS signature (ES256: raw r||s 64 bytes) with pub, through mctx when given (a
 * copy of a context prepared for pub, used up here; NULL: one is prepared). 0 or
 * BV_EINTEGRITY. */
int jws_verify(EVP_PKEY *pub, EVP_MD_CTX *mctx, jws_alg_t alg, const void *data, size_t len,
               const unsigned char *sig, size_t sig_len);

typedef struct {
    json_t *header;           /* owned */
    json_t *payload;          /* owned */
    size_t signing_input_len; /* token[0..len) is header.payload */
    unsigned char sig[512];
    size_t sig_len;
} jwt_t;
/* Splits and decodes a compact JWS (three parts, JSON objects). 0 or BV_EINVALID. */
int jwt_parse(const char *token, size_t len, jwt_t *out);
void jwt_free(jwt_t *j);

/* ---- the verified-key cache (keycache.c) ---- */
typedef struct {
    char kid[64];
    jws_alg_t alg;
    EVP_PKEY *pub;
    EVP_MD_CTX *vctx; /* prepared for verifying with pub (bv_keys_prepare_ctx) */
} kc_key_t;

typedef struct {
    bv_keys_t *src;
    pthread_rwlock_t lock;
    pthread_mutex_t copy_mu; /* serialises copies of the prepared contexts */
    kc_key_t *keys;
    size_t n;
    _Atomic uint64_t generation; /* bumped when the key set changes */
    /* refresher */
    pthread_t thread;
    int running;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int stop, poke;
    _Atomic int64_t last_poke_us;
} keycache_t;

int keycache_init(keycache_t *kc, bv_keys_t *src);
int keycache_refresh(keycache_t *kc);
int keycache_start_thread(keycache_t *kc);
/* Asks the refresher for a reload (rate-limited; never blocks). */
void keycache_poke(keycache_t *kc);
/* Verifies with key kid when its pinned alg equals alg. 0, BV_ENOTFOUND (kid unknown),
 * BV_EINVALID (alg does not match the key), BV_EINTEGRITY. */
int keycache_verify(keycache_t *kc, const char *kid, jws_alg_t alg, const void *data, size_t len,
                    const unsigned char *sig, size_t sig_len);
void keycache_fini(keycache_t *kc);

struct bv_oauth_validator {
    keycache_t kc;
    pthread_mutex_t mu;
    char issuer[512];
    char audience[512];
    _Atomic int cache_on;
    _Atomic uint64_t epoch; /* bumped on issuer change: invalidates the token cache */
    _Atomic uint64_t verifications; /* signatures checked (cache misses that got that far) */
};

/* ---- clients ---- */
typedef struct {
    char id[128];
    char name[128];
    int is_public;
    char auth_method[32];
    char secret_hash[65];              /* hex, "" when none */
    json_t *redirect_uris;             /* owned, array of strings */
    json_t *post_logout_redirect_uris; /* owned */
    char grant_types[256];
    char scope[512];
    int first_party;
    int legacy_password;
    char id_token_alg[8];
    json_t *jwks; /* owned, may be NULL */
    int64_t created_at, updated_at;
} oauth_client_t;

void oauth_client_clear(oauth_client_t *c);
/* By id. 0, BV_ENOTFOUND, store errors. The caller clears c. */
int oauth_client_get(bv_tx_t *tx, const char *id, oauth_client_t *c);

int oauth_client_has_grant(const oauth_client_t *c, const char *grant);
int oauth_client_redirect_ok(const oauth_client_t *c, const char *uri);
int oauth_client_post_logout_ok(const oauth_client_t *c, const char *uri);
/* 1 if every scope in `requested` is allowed for the client. */
int oauth_scope_subset(const char *requested, const char *allowed);
int oauth_scope_has(const char *scopes, const char *scope);

typedef struct oauth oauth_t;

/* ---- client registry (clients.c) ---- */
typedef struct {
    const char *client_id; /* NULL = a new UUIDv7 */
    const char *name;
    int is_public;
    const char *auth_method; /* NULL = none for public, client_secret_basic otherwise */
    json_t *redirect_uris;   /* borrowed array */
    json_t *post_logout_redirect_uris;
    const char *grant_types; /* space-separated */
    const char *scope;
    int first_party;
    int legacy_password;
    const char *id_token_alg;
    json_t *jwks; /* borrowed, may be NULL */
} oauth_client_new_t;

#define OAUTH_SECRET_LEN 47
/* Registers a client. secret_out gets the one-time secret ("" when the client has none).
 * 0, BV_EINVALID (*why says what), BV_ECONFLICT (client_id taken), store errors. */
int oauth_client_create(oauth_t *o, const oauth_client_new_t *req, char id_out[128],
                        char secret_out[OAUTH_SECRET_LEN + 1], const char **why);
/* Empties the cache of client registrations (module fini). */
void oauth_client_cache_clear(oauth_t *o);
/* The registration of client id, as read at most OAUTH_CLIENT_CACHE_TTL_US ago. 0,
 * BV_ENOTFOUND, store errors; the caller clears c. */
int oauth_client_load(oauth_t *o, const char *id, oauth_client_t *c);
int oauth_client_list(oauth_t *o, json_t **out);
int oauth_client_rotate_secret(oauth_t *o, const char *id, char secret_out[OAUTH_SECRET_LEN + 1]);
int oauth_client_delete(oauth_t *o, const char *id);
json_t *oauth_client_json(const oauth_client_t *c);
/* 1 if uri may be registered as a redirect URI (https, loopback http, or a private-use
 * scheme; absolute; no fragment). */
int oauth_redirect_uri_acceptable(const char *uri);

/* ---- the module's state ---- */
/* Recently read client registrations (clients.c), so that client authentication, on every
 * token and introspection request, does not read the database each time. */
#define OAUTH_CLIENT_CACHE_SLOTS 64
#define OAUTH_CLIENT_CACHE_TTL_US 1000000 /* a change (made by `boveda admin clients`) shows within this */
typedef struct {
    oauth_client_t c;
    int64_t loaded_us; /* 0: empty */
} oauth_client_slot_t;

struct oauth {
    bv_app_t *app;
    bv_store_t *store;
    bv_keys_t *keys;
    bv_identity_t *identity;
    bv_oauth_validator_t *validator;
    pthread_mutex_t mu;
    pthread_mutex_t clients_mu; /* guards clients */
    oauth_client_slot_t clients[OAUTH_CLIENT_CACHE_SLOTS];
    _Atomic int issuer_ready;
    char issuer[512];
    char kid_es256[64], kid_rs256[64]; /* last active kid seen per alg */
};

oauth_t *oauth_state(void);
/* Our issuer identifier: BOVEDA_PUBLIC_URL (without a trailing slash) or the URL of the
 * first bound listener (plain HTTP preferred). */
const char *oauth_issuer(oauth_t *o);
/* The audience of our access tokens: the issuer (the API and the server are one). */
const char *oauth_audience(oauth_t *o);

/* Signs claims (the serialised JSON object) as a compact JWS with the active key for alg
 * ("ES256"/"RS256") and header typ (may be NULL). *out is malloc'ed (caller frees). */
int oauth_sign_jwt(oauth_t *o, const char *alg, const char *typ, const char *claims, char **out);
/* HMAC "token-lookup" of a secret, as 64 hex characters. */
int oauth_lookup_hash(oauth_t *o, const char *secret, char out[65]);

/* ---- forms (application/x-www-form-urlencoded) ---- */
#define OAUTH_FORM_MAX 32
typedef struct {
    size_t n;
    const char *names[OAUTH_FORM_MAX];
    const char *values[OAUTH_FORM_MAX];
    const char *duplicate; /* a name given twice (RFC 6749 §3.1 forbids it), or NULL */
} oauth_form_t;

/* Parses body[0..len) into f (strings in the arena). 0, BV_EINVALID (bad escape, NUL,
 * more than OAUTH_FORM_MAX fields) or BV_ENOMEM. Duplicates are recorded, not rejected. */
int oauth_form_parse(bv_arena_t *arena, const char *body, size_t len, oauth_form_t *f);
/* The value of name, NULL if absent. */
const char *oauth_form_get(const oauth_form_t *f, const char *name);
/* Parses a query string the same way (authorization requests). */
#define oauth_query_parse oauth_form_parse
/* Appends s percent-encoded (unreserved characters kept) to b. */
int oauth_url_encode(bv_buf_t *b, const char *s);
/* Reads the call's form body, or the query for GET; replies 400 itself on failure. */
int oauth_call_form_or_reply(bv_call_t *c, oauth_form_t *f, int oauth_errors);

/* ---- replies ---- */
/* RFC 6749 §5.2 error: {"error":..., "error_description":...} with status. */
void oauth_reply_error(bv_call_t *c, int status, const char *error, const char *description);
/* 401 invalid_client with WWW-Authenticate when the client tried Basic. */
void oauth_reply_invalid_client(bv_call_t *c);
/* Value of cookie `name` from the Cookie header (arena copy), NULL if absent. */
const char *oauth_cookie(bv_call_t *c, const char *name);

/* ---- client authentication at the token, introspection and revocation endpoints ---- */
typedef struct {
    oauth_client_t client;
    const char *method; /* the method used */
} oauth_authed_client_t;
/* Authenticates the client of a form request per its registered method (Basic, post,
 * private_key_jwt with jti replay protection, or none for public clients). Replies
 * (invalid_client / invalid_request) itself and returns non-zero on failure. The caller
 * clears out->client. */
int oauth_client_auth_or_reply(oauth_t *o, bv_call_t *c, const oauth_form_t *f, const char *endpoint_url,
                               oauth_authed_client_t *out);

/* ---- PKCE (RFC 7636) ---- */
/* 1 if the verifier is 43..128 unreserved characters and S256(verifier) == challenge. */
int oauth_pkce_verify(const char *verifier, const char *challenge);
/* 1 if s is a syntactically valid S256 challenge (43 base64url characters). */
int oauth_pkce_challenge_valid(const char *s);

/* ---- issuing ---- */
typedef struct {
    const char *client_id;
    const char *user_id; /* NULL for client credentials */
    const char *scope;
    const char *family_id; /* NULL when none */
    int64_t auth_time;
    const char *acr, *amr; /* amr space-separated */
} oauth_grant_t;
/* Access token (RFC 9068) and, when the scope holds openid and a user is present, an ID
 * token; appends the token response members to resp. */
int oauth_issue_access_token(oauth_t *o, const oauth_grant_t *g, json_t *resp);
/* The whole token response of an access token alone (client_credentials), serialised
 * directly into body: the grant that runs most often. 0, BV_ENOMEM, signing errors. */
int oauth_access_token_response(oauth_t *o, const oauth_grant_t *g, bv_buf_t *body);
int oauth_issue_id_token(oauth_t *o, const oauth_grant_t *g, const char *nonce, const char *alg,
                         json_t *resp);

/* Sessions and steps (login.c). */
#define OAUTH_SESSION_COOKIE "__Host-boveda_session"

/* ---- pages (pages.c) ---- */
typedef enum { LOC_ES = 0, LOC_EN = 1 } locale_t_;
locale_t_ oauth_locale_pick(const char *ui_locales, const char *deflt);
const char *oauth_locale_code(locale_t_ l);
/* HTML-escapes s into b. */
void oauth_html_escape(bv_buf_t *b, const char *s);
typedef struct {
    locale_t_ loc;
    const char *client_name;
    const char *tx_id;
    const char *csrf;
    const char *username; /* prefill, may be NULL */
    const char *error;    /* message key, may be NULL */
    int64_t retry_after;
    const char *step; /* "password" or "consent" */
    const char *scope;
} oauth_page_t;
void oauth_render_login(bv_call_t *c, int status, const oauth_page_t *p);
/* An error page for requests that cannot be redirected (bad client or redirect URI). */
/* The login's second-factor step (issue 7). */
typedef struct {
    const char *tx_id, *csrf;
    const char *challenge_id; /* the form's challenge; NULL or "" = no form */
    int channel;              /* bv_mfa_channel_t: where the code comes from */
    const char *destination;  /* masked phone / e-mail for sms / email */
    int error;                /* 0 none, 1 wrong code, 2 too many codes (no form), 3 resend refused, 4 new code sent */
} oauth_otp_page_t;
void oauth_render_otp_step(bv_call_t *c, int status, locale_t_ loc, const char *client_name, const oauth_otp_page_t *p);
void oauth_render_error(bv_call_t *c, int status, locale_t_ loc, const char *error, const char *description);
void oauth_render_message(bv_call_t *c, int status, locale_t_ loc, const char *msg_key);

/* ---- endpoint groups ---- */
void oauth_on_discovery(bv_call_t *c);
void oauth_on_jwks(bv_call_t *c);
void oauth_on_authorize(bv_call_t *c);
void oauth_on_login(bv_call_t *c);
void oauth_on_token(bv_call_t *c);
void oauth_on_introspect(bv_call_t *c);
void oauth_on_revoke(bv_call_t *c);
void oauth_on_userinfo(bv_call_t *c);
void oauth_on_logout(bv_call_t *c);

/* Authenticated session of the browser (cookie), or none. */
typedef struct {
    char id[65];
    char user_id[BV_UUID_STR_LEN + 1];
    int64_t auth_time;
    char acr[64];
    char amr[64];
} oauth_session_t;
/* Loads the session named by the cookie when it is live (user may be "" before login).
 * 0, BV_ENOTFOUND. */
int oauth_session_load(oauth_t *o, bv_call_t *c, oauth_session_t *out);
/* Issues an authorization code for a completed login and builds the redirect (303). */
int oauth_code_redirect(oauth_t *o, bv_call_t *c, const char *client_id, const char *redirect_uri,
                        const char *scope, const char *state, const char *nonce, const char *challenge,
                        const oauth_session_t *s);
/* Redirects (303) to redirect_uri with error, state and iss (RFC 9207). */
void oauth_redirect_error(oauth_t *o, bv_call_t *c, const char *redirect_uri, const char *error,
                          const char *description, const char *state);

/* Starts the hosted login for a validated authorization request: binds a login
 * transaction to the browser session (created, with its cookie, when missing) and renders
 * the first step. `authed` (may be NULL) is a live logged-in session: then only the steps
 * it lacks (consent for third-party clients) remain. */
int oauth_login_begin(oauth_t *o, bv_call_t *c, const oauth_client_t *cl, const char *redirect_uri,
                      const char *scope, const char *state, const char *nonce, const char *challenge,
                      locale_t_ loc, const oauth_session_t *authed);

/* Revokes a family (and so its refresh tokens and, at introspection, its access tokens)
 * inside a write job. */
int oauth_family_revoke_tx(bv_tx_t *tx, const char *family_id, const char *reason);
/* 1 if the family is revoked or gone (read). */
int oauth_family_revoked(oauth_t *o, const char *family_id);
int oauth_jti_revoked(oauth_t *o, const char *jti);

#endif
