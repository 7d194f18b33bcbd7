/* Unit tests of the OAuth module's pure parts (PKCE, form parsing, scopes, redirect URI
 * rules, base64url) and of the access-token validation rules with real keys from the
 * file key store: signature by kid, alg pinned per key (none / HS256 / a mismatched alg
 * refused), typ, iss, aud, exp/nbf/iat with the 60 s skew, unknown kid, and the cache. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/hmac.h>

#include "base/config.h"
#include "keys/keys.h"
#include "oauth/internal.h"
#include "store/store.h"

#define ISS "https://bank.example"

/* ---- pure helpers ---- */

static void test_pkce(void **state)
{
    (void)state;
    /* RFC 7636 Appendix B */
    const char *verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    const char *challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
    assert_true(oauth_pkce_challenge_valid(challenge));
    assert_true(oauth_pkce_verify(verifier, challenge));
    assert_false(oauth_pkce_verify("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXX", challenge));
    assert_false(oauth_pkce_verify("short", challenge));   /* < 43 chars */
    assert_false(oauth_pkce_verify(challenge, challenge)); /* plain is not S256 */
    assert_false(oauth_pkce_verify("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjX!", challenge)); /* charset */
    assert_false(oauth_pkce_verify(verifier, NULL));
    assert_false(oauth_pkce_challenge_valid("abc"));
    assert_false(oauth_pkce_challenge_valid("E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-c="));
}

static void test_form_parse(void **state)
{
    (void)state;
    bv_arena_t a = {0};
    oauth_form_t f;
    const char *body =
        "grant_type=authorization_code&code=a%2Bb+c&redirect_uri=https%3A%2F%2Fx.example%2Fcb&empty=&flag";
    assert_int_equal(oauth_form_parse(&a, body, strlen(body), &f), 0);
    assert_string_equal(oauth_form_get(&f, "grant_type"), "authorization_code");
    assert_string_equal(oauth_form_get(&f, "code"), "a+b c");
    assert_string_equal(oauth_form_get(&f, "redirect_uri"), "https://x.example/cb");
    assert_string_equal(oauth_form_get(&f, "empty"), "");
    assert_string_equal(oauth_form_get(&f, "flag"), "");
    assert_null(oauth_form_get(&f, "missing"));
    assert_null(f.duplicate);
    assert_int_equal(oauth_form_parse(&a, "a=1&b=2&a=3", 11, &f), 0);
    assert_string_equal(f.duplicate, "a");
    assert_int_equal(oauth_form_parse(&a, "a=%zz", 5, &f), BV_EINVALID);
    assert_int_equal(oauth_form_parse(&a, "a=%4", 4, &f), BV_EINVALID);
    assert_int_equal(oauth_form_parse(&a, "a=%00", 5, &f), BV_EINVALID);
    assert_int_equal(oauth_form_parse(&a, "=x", 2, &f), BV_EINVALID);
    char big[2048] = "";
    for (int i = 0; i < 40; i++)
        snprintf(big + strlen(big), sizeof(big) - strlen(big), "k%d=v&", i);
    assert_int_equal(oauth_form_parse(&a, big, strlen(big), &f), BV_EINVALID); /* > OAUTH_FORM_MAX */
    bv_buf_t b = {0};
    oauth_url_encode(&b, "a b&c=d/é");
    assert_string_equal(b.data, "a%20b%26c%3Dd%2F%C3%A9");
    bv_buf_free(&b);
    bv_arena_free(&a);
}

static void test_scopes_and_uris(void **state)
{
    (void)state;
    assert_true(oauth_scope_subset("openid profile", "openid profile email"));
    assert_false(oauth_scope_subset("openid admin", "openid profile"));
    assert_false(oauth_scope_subset("open\"id", "open\"id"));
    assert_true(oauth_scope_has("a b c", "b"));
    assert_false(oauth_scope_has("ab c", "a"));
    assert_true(oauth_redirect_uri_acceptable("https://app.example/cb"));
    assert_true(oauth_redirect_uri_acceptable("http://localhost:5173/callback"));
    assert_true(oauth_redirect_uri_acceptable("http://127.0.0.1:9000/cb"));
    assert_true(oauth_redirect_uri_acceptable("com.example.app:/oauth"));
    assert_false(oauth_redirect_uri_acceptable("http://app.example/cb"));    /* plain http off loopback */
    assert_false(oauth_redirect_uri_acceptable("https://app.example/cb#x")); /* fragment */
    assert_false(oauth_redirect_uri_acceptable("http://localhost.evil.example/cb"));
    assert_false(oauth_redirect_uri_acceptable("javascript:alert(1)"));
    assert_false(oauth_redirect_uri_acceptable("https:///cb"));
}

static void test_b64url(void **state)
{
    (void)state;
    char enc[64];
    unsigned char dec[64];
    oauth_b64url_encode("\xfb\xff", 2, enc);
    assert_string_equal(enc, "-_8");
    assert_int_equal(oauth_b64url_decode("-_8", 3, dec, sizeof(dec)), 2);
    assert_int_equal(dec[0], 0xfb);
    assert_int_equal(oauth_b64url_decode("-_9", 3, dec, sizeof(dec)), -1); /* non-canonical bits */
    assert_int_equal(oauth_b64url_decode("ab=c", 4, dec, sizeof(dec)), -1);
    assert_int_equal(oauth_b64url_decode("a", 1, dec, sizeof(dec)), -1);
}

/* ---- validation with real keys ---- */
typedef struct {
    char dir[128];
    bv_store_t *st;
    bv_config_t *cfg;
    bv_keys_t *keys;
    bv_oauth_validator_t *v;
    char es_kid[64], rs_kid[64];
} fx_t;

static int setup(void **state)
{
    fx_t *f = calloc(1, sizeof(*f));
    char err[256], db[256];
    snprintf(f->dir, sizeof(f->dir), "/tmp/bv-oauth-test-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(db, sizeof(db), "%s/boveda.db", f->dir);
    bv_store_options_t opt = {.path = db, .batch_max = 64, .busy_timeout_ms = 5000};
    assert_int_equal(bv_store_open(&opt, &f->st), 0);
    assert_int_equal(bv_store_migrate(f->st, NULL), 0);
    setenv("BOVEDA_DATA_DIR", f->dir, 1);
    setenv("BOVEDA_KEYSTORE", "file", 1);
    if (bv_config_load(NULL, &f->cfg, err, sizeof(err)) != 0)
        fail_msg("config: %s", err);
    assert_int_equal(bv_keys_open(f->cfg, f->st, &f->keys), 0);
    bv_buf_t sig = {0};
    assert_int_equal(bv_keys_sign(f->keys, "ES256", "x", 1, &sig, f->es_kid), 0);
    bv_buf_reset(&sig);
    assert_int_equal(bv_keys_sign(f->keys, "RS256", "x", 1, &sig, f->rs_kid), 0);
    bv_buf_free(&sig);
    assert_int_equal(bv_oauth_validator_create(f->keys, ISS, ISS, 0, &f->v), 0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx_t *f = *state;
    char cmd[200];
    bv_oauth_validator_free(f->v);
    bv_keys_close(f->keys);
    bv_config_free(f->cfg);
    bv_store_close(f->st);
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
    if (system(cmd) != 0)
        fprintf(stderr, "cannot remove %s\n", f->dir);
    free(f);
    return 0;
}

/* Takes ownership of j. */
static char *b64json(json_t *j)
{
    char *s = bv_json_dump(j);
    json_decref(j);
    char *out = malloc(strlen(s) * 4 / 3 + 4);
    oauth_b64url_encode(s, strlen(s), out);
    free(s);
    return out;
}

/* Signs header.payload with the key store ("ES256"/"RS256"); the header is used as given. */
static char *make_token(fx_t *f, const char *sign_alg, json_t *header, json_t *payload)
{
    char *h = b64json(header), *p = b64json(payload), kid[64];
    bv_buf_t in = {0}, sig = {0};
    bv_buf_printf(&in, "%s.%s", h, p);
    assert_int_equal(bv_keys_sign(f->keys, sign_alg, in.data, in.len, &sig, kid), 0);
    char *sb = malloc(sig.len * 2 + 4);
    oauth_b64url_encode(sig.data, sig.len, sb);
    bv_buf_printf(&in, ".%s", sb);
    free(h);
    free(p);
    free(sb);
    bv_buf_free(&sig);
    return in.data;
}

static json_t *std_header(fx_t *f)
{
    return json_pack("{s:s,s:s,s:s}", "alg", "ES256", "typ", "at+jwt", "kid", f->es_kid);
}

static json_t *std_claims(int64_t now, const char *sub)
{
    return json_pack("{s:s,s:s,s:s,s:s,s:s,s:I,s:I,s:s,s:s,s:[s]}", "iss", ISS, "sub", sub, "aud", ISS,
                     "client_id", "app", "scope", "ledger:read openid", "exp", (json_int_t)(now + 300), "iat",
                     (json_int_t)now, "jti", "j1", "acr", "urn:boveda:loa:1", "amr", "pwd");
}

/* The registration cache behind client authentication: copies that share its JSON members
 * (immutable, reference-counted: clearing a copy leaves the others whole), and changes
 * (rotation, deletion) visible once OAUTH_CLIENT_CACHE_TTL_US has passed. */
static void test_client_cache(void **state)
{
    fx_t *f = *state;
    oauth_t o = {.store = f->st, .keys = f->keys, .mu = PTHREAD_MUTEX_INITIALIZER,
                 .clients_mu = PTHREAD_MUTEX_INITIALIZER};
    char id[128], secret[OAUTH_SECRET_LEN + 1], secret2[OAUTH_SECRET_LEN + 1];
    const char *why = NULL;
    json_t *uris = json_pack("[s]", "https://app.example/cb");
    oauth_client_new_t req = {.name = "cached", .redirect_uris = uris, .grant_types = "authorization_code",
                              .scope = "openid"};
    assert_int_equal(oauth_client_create(&o, &req, id, secret, &why), 0);
    json_decref(uris);
    oauth_client_t a, b;
    assert_int_equal(oauth_client_load(&o, id, &a), 0); /* read, and kept */
    assert_int_equal(oauth_client_load(&o, id, &b), 0); /* from the cache */
    assert_string_equal(a.secret_hash, b.secret_hash);
    assert_ptr_equal(a.redirect_uris, b.redirect_uris);
    oauth_client_clear(&a); /* the cache's and b's references remain */
    assert_true(oauth_client_redirect_ok(&b, "https://app.example/cb"));
    oauth_client_cache_clear(&o); /* and b's alone */
    assert_true(oauth_client_redirect_ok(&b, "https://app.example/cb"));
    char old_hash[sizeof(b.secret_hash)];
    snprintf(old_hash, sizeof(old_hash), "%s", b.secret_hash);
    oauth_client_clear(&b);

    assert_int_equal(oauth_client_rotate_secret(&o, id, secret2), 0);
    usleep(OAUTH_CLIENT_CACHE_TTL_US + 50000);
    assert_int_equal(oauth_client_load(&o, id, &a), 0);
    assert_string_not_equal(a.secret_hash, old_hash); /* the rotation shows */
    oauth_client_clear(&a);
    assert_int_equal(oauth_client_delete(&o, id), 0);
    usleep(OAUTH_CLIENT_CACHE_TTL_US + 50000);
    assert_int_equal(oauth_client_load(&o, id, &a), BV_ENOTFOUND); /* and so does the deletion */
    oauth_client_cache_clear(&o);
}

static int validate(fx_t *f, const char *tok, int64_t now, bv_principal_t *p)
{
    return bv_oauth_validate_access_token(f->v, tok, strlen(tok), now, p);
}

static void test_valid_tokens(void **state)
{
    fx_t *f = *state;
    bv_principal_t p;
    int64_t now = 1800000000;
    char *t = make_token(f, "ES256", std_header(f), std_claims(now, "user-1"));
    assert_int_equal(validate(f, t, now, &p), 0);
    assert_int_equal(p.kind, BV_PRINCIPAL_USER);
    assert_string_equal(p.subject, "user-1");
    assert_string_equal(p.client_id, "app");
    assert_true(bv_principal_has_scope(&p, "openid"));
    /* a back-office scope in a customer's token never counts (http.h) */
    assert_false(bv_principal_has_scope(&p, "ledger:read"));
    assert_false(bv_principal_has_scope(&p, "ledger:write"));
    assert_string_equal(p.amr, "pwd");
    /* cached: the same answer, and expiry still applies on a hit */
    assert_int_equal(validate(f, t, now + 1, &p), 0);
    assert_int_equal(validate(f, t, now + 300 + 60, &p), BV_EUNAUTHENTICATED);
    free(t);
    /* client credentials: sub is the client */
    t = make_token(f, "ES256", std_header(f), std_claims(now, "app"));
    assert_int_equal(validate(f, t, now, &p), 0);
    assert_int_equal(p.kind, BV_PRINCIPAL_CLIENT);
    assert_true(bv_principal_has_scope(&p, "ledger:read"));
    assert_false(bv_principal_has_scope(&p, "ledger:write"));
    free(t);
    /* RS256 with an RS256 key; the media-type form of typ; aud as an array */
    json_t *c = std_claims(now, "u");
    json_object_set_new(c, "aud", json_pack("[ss]", "other", ISS));
    t = make_token(f, "RS256",
                   json_pack("{s:s,s:s,s:s}", "alg", "RS256", "typ", "application/at+jwt", "kid", f->rs_kid),
                   c);
    assert_int_equal(validate(f, t, now, &p), 0);
    free(t);
}

/* The cache holds the tokens in use at once: 400 distinct tokens presented round and round
 * are verified once each, and then hardly ever again (now and then more than four land in
 * one set of the 4-way cache: ~40 misses a round expected; a direct-mapped cache of 256
 * slots missed ~300 a round). */
static void test_cache_holds_tokens_in_use(void **state)
{
    fx_t *f = *state;
    bv_principal_t p;
    int64_t now = 1800000000;
    enum { N = 400 };
    char *toks[N];
    for (int i = 0; i < N; i++) {
        char sub[32];
        snprintf(sub, sizeof(sub), "user-%d", i);
        toks[i] = make_token(f, "ES256", std_header(f), std_claims(now, sub));
    }
    uint64_t v0 = bv_oauth_validator_verifications(f->v);
    for (int i = 0; i < N; i++)
        assert_int_equal(validate(f, toks[i], now, &p), 0);
    uint64_t v1 = bv_oauth_validator_verifications(f->v);
    assert_int_equal(v1 - v0, N);
    for (int round = 0; round < 2; round++)
        for (int i = 0; i < N; i++) {
            assert_int_equal(validate(f, toks[i], now, &p), 0);
            char sub[32];
            snprintf(sub, sizeof(sub), "user-%d", i);
            assert_string_equal(p.subject, sub); /* a hit answers for its own token */
        }
    uint64_t misses = bv_oauth_validator_verifications(f->v) - v1;
    printf("%d tokens: %llu verifications again over two more rounds\n", N, (unsigned long long)misses);
    assert_true(misses < 2 * 120);
    for (int i = 0; i < N; i++)
        free(toks[i]);
}

static void test_rejections(void **state)
{
    fx_t *f = *state;
    bv_principal_t p;
    int64_t now = 1800000000;
    struct {
        const char *what;
        json_t *h, *c;
        const char *sign;
    } cases[] = {
        {"wrong iss", std_header(f), NULL, "ES256"},
        {"wrong aud", std_header(f), NULL, "ES256"},
        {"typ JWT", json_pack("{s:s,s:s,s:s}", "alg", "ES256", "typ", "JWT", "kid", f->es_kid), NULL,
         "ES256"},
        {"no typ", json_pack("{s:s,s:s}", "alg", "ES256", "kid", f->es_kid), NULL, "ES256"},
        {"expired beyond skew", std_header(f), NULL, "ES256"},
        {"nbf in the future", std_header(f), NULL, "ES256"},
        {"iat in the future", std_header(f), NULL, "ES256"},
        {"lifetime too long", std_header(f), NULL, "ES256"},
        {"no sub", std_header(f), NULL, "ES256"},
        {"no client_id", std_header(f), NULL, "ES256"},
        {"no jti", std_header(f), NULL, "ES256"},
        {"alg RS256 on the ES256 key",
         json_pack("{s:s,s:s,s:s}", "alg", "RS256", "typ", "at+jwt", "kid", f->es_kid), NULL, "RS256"},
        {"alg ES256 on the RS256 key",
         json_pack("{s:s,s:s,s:s}", "alg", "ES256", "typ", "at+jwt", "kid", f->rs_kid), NULL, "ES256"},
        {"unknown kid", json_pack("{s:s,s:s,s:s}", "alg", "ES256", "typ", "at+jwt", "kid", "nope"), NULL,
         "ES256"},
        {"crit header",
         json_pack("{s:s,s:s,s:s,s:[s]}", "alg", "ES256", "typ", "at+jwt", "kid", f->es_kid, "crit", "x"),
         NULL, "ES256"},
    };
    size_t n = sizeof(cases) / sizeof(cases[0]);
    for (size_t i = 0; i < n; i++)
        cases[i].c = std_claims(now, "u");
    json_object_set_new(cases[0].c, "iss", json_string("https://evil.example"));
    json_object_set_new(cases[1].c, "aud", json_string("https://other.example"));
    json_object_set_new(cases[4].c, "exp", json_integer(now - 61));
    json_object_set_new(cases[5].c, "nbf", json_integer(now + 61));
    json_object_set_new(cases[6].c, "iat", json_integer(now + 61));
    json_object_set_new(cases[7].c, "exp", json_integer(now + 3600));
    json_object_del(cases[8].c, "sub");
    json_object_del(cases[9].c, "client_id");
    json_object_del(cases[10].c, "jti");
    for (size_t i = 0; i < n; i++) {
        char *t = make_token(f, cases[i].sign, cases[i].h, cases[i].c);
        if (validate(f, t, now, &p) != BV_EUNAUTHENTICATED)
            fail_msg("accepted: %s", cases[i].what);
        assert_int_equal(p.kind, BV_PRINCIPAL_NONE);
        free(t);
    }
    /* within the skew is fine */
    json_t *c = std_claims(now, "u");
    json_object_set_new(c, "exp", json_integer(now - 59));
    json_object_set_new(c, "nbf", json_integer(now + 59));
    char *t = make_token(f, "ES256", std_header(f), c);
    assert_int_equal(validate(f, t, now, &p), 0);
    free(t);
}

static void test_forgeries(void **state)
{
    fx_t *f = *state;
    bv_principal_t p;
    int64_t now = 1800000000;
    char *good = make_token(f, "ES256", std_header(f), std_claims(now, "u"));
    char *dot1 = strchr(good, '.'), *dot2 = strrchr(good, '.');
    bv_buf_t b = {0};
    /* alg none: header swapped, signature dropped */
    char *hn = b64json(json_pack("{s:s,s:s,s:s}", "alg", "none", "typ", "at+jwt", "kid", f->es_kid));
    bv_buf_printf(&b, "%s%.*s.", hn, (int)(dot2 - dot1), dot1);
    assert_int_equal(validate(f, b.data, now, &p), BV_EUNAUTHENTICATED);
    /* HS256 keyed with the public JWK of our key */
    json_t *jwks = NULL;
    assert_int_equal(bv_keys_jwks(f->keys, &jwks), 0);
    char *pub = bv_json_dump(json_array_get(json_object_get(jwks, "keys"), 0));
    char *hh = b64json(json_pack("{s:s,s:s,s:s}", "alg", "HS256", "typ", "at+jwt", "kid", f->es_kid));
    bv_buf_reset(&b);
    bv_buf_printf(&b, "%s%.*s", hh, (int)(dot2 - dot1), dot1);
    unsigned char mac[32];
    unsigned int ml = 0;
    HMAC(EVP_sha256(), pub, (int)strlen(pub), (const unsigned char *)b.data, b.len, mac, &ml);
    char mb[64];
    oauth_b64url_encode(mac, ml, mb);
    bv_buf_printf(&b, ".%s", mb);
    assert_int_equal(validate(f, b.data, now, &p), BV_EUNAUTHENTICATED);
    /* payload altered after signing */
    char *pa = b64json(std_claims(now + 1, "someone-else"));
    bv_buf_reset(&b);
    bv_buf_printf(&b, "%.*s.%s%s", (int)(dot1 - good), good, pa, dot2);
    assert_int_equal(validate(f, b.data, now, &p), BV_EUNAUTHENTICATED);
    /* junk */
    assert_int_equal(validate(f, "a.b.c", now, &p), BV_EUNAUTHENTICATED);
    assert_int_equal(validate(f, "not a jwt at all", now, &p), BV_EUNAUTHENTICATED);
    free(hn);
    free(hh);
    free(pa);
    free(pub);
    json_decref(jwks);
    bv_buf_free(&b);
    free(good);
}

static void test_rotation_and_issuer_change(void **state)
{
    fx_t *f = *state;
    bv_principal_t p;
    int64_t now = 1800000000;
    char kid[64];
    int promoted = 0;
    assert_int_equal(bv_keys_rotate_signing(f->keys, "ES256", 3600LL * 1000000, kid, &promoted), 0);
    assert_true(promoted);
    /* the validator still has the old set: the new active key is the former "next" one,
     * published before, so it is known */
    char *t = make_token(f, "ES256", json_pack("{s:s,s:s,s:s}", "alg", "ES256", "typ", "at+jwt", "kid", kid),
                         std_claims(now, "u"));
    assert_int_equal(validate(f, t, now, &p), 0);
    /* a new issuer invalidates what was cached */
    bv_oauth_validator_set_issuer(f->v, "https://other.example", "https://other.example");
    assert_int_equal(validate(f, t, now, &p), BV_EUNAUTHENTICATED);
    bv_oauth_validator_set_issuer(f->v, ISS, ISS);
    assert_int_equal(validate(f, t, now, &p), 0);
    free(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pkce),
        cmocka_unit_test(test_form_parse),
        cmocka_unit_test(test_scopes_and_uris),
        cmocka_unit_test(test_b64url),
        cmocka_unit_test_setup_teardown(test_valid_tokens, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cache_holds_tokens_in_use, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rejections, setup, teardown),
        cmocka_unit_test_setup_teardown(test_forgeries, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rotation_and_issuer_change, setup, teardown),
        cmocka_unit_test_setup_teardown(test_client_cache, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
