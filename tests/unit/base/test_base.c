/* base/: JSON field specs, configuration, time, UUIDv7, errors, log escaping. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <unistd.h>

#include "base/base64.h"
#include "base/config.h"
#include "base/errors.h"
#include "base/json.h"
#include "base/log.h"
#include "base/util.h"

typedef struct {
    const char *name;
    int64_t count;
    bool active;
    json_t *tags;
    const char *kind;
} sample_t;

static const char *const kinds[] = {"checking", "savings", NULL};
static const bv_json_field_t spec[] = {
    {"name", BV_JSON_STRING, BV_JSON_REQUIRED, 1, 10, offsetof(sample_t, name), NULL},
    {"count", BV_JSON_INT, 0, 0, 100, offsetof(sample_t, count), NULL},
    {"active", BV_JSON_BOOL, 0, 0, 0, offsetof(sample_t, active), NULL},
    {"tags", BV_JSON_ARRAY, BV_JSON_NULLABLE, 0, 3, offsetof(sample_t, tags), NULL},
    {"kind", BV_JSON_STRING, 0, 0, 0, offsetof(sample_t, kind), kinds},
    BV_JSON_END,
};

static int decode(const char *body, sample_t *out, bv_json_error_t *err)
{
    json_t *root = NULL;
    memset(out, 0, sizeof(*out));
    memset(err, 0, sizeof(*err));
    int rc = bv_json_decode(body, strlen(body), spec, out, &root, err);
    json_decref(root);
    return rc;
}

static void test_json_valid(void **state)
{
    (void)state;
    sample_t s;
    bv_json_error_t e;
    json_t *root = NULL;
    const char *body = "{\"name\":\"ana\",\"count\":5,\"active\":true,\"tags\":[1,2],\"kind\":\"savings\"}";
    assert_int_equal(bv_json_decode(body, strlen(body), spec, &s, &root, &e), 0);
    assert_string_equal(s.name, "ana");
    assert_int_equal(s.count, 5);
    assert_true(s.active);
    assert_int_equal(json_array_size(s.tags), 2);
    assert_string_equal(s.kind, "savings");
    json_decref(root);
}

static void test_json_errors_name_the_field(void **state)
{
    (void)state;
    sample_t s;
    bv_json_error_t e;
    assert_int_equal(decode("{\"count\":1}", &s, &e), BV_EINVALID);
    assert_string_equal(e.field, "name");
    assert_non_null(strstr(e.detail, "required"));
    assert_int_equal(decode("{\"name\":\"a\",\"bogus\":1}", &s, &e), BV_EINVALID);
    assert_string_equal(e.field, "bogus");
    assert_int_equal(decode("{\"name\":\"a\",\"count\":\"5\"}", &s, &e), BV_EINVALID);
    assert_string_equal(e.field, "count");
    assert_int_equal(decode("{\"name\":\"a\",\"count\":101}", &s, &e), BV_EINVALID);
    assert_string_equal(e.field, "count");
    assert_int_equal(decode("{\"name\":\"a\",\"count\":1.5}", &s, &e), BV_EINVALID);
    assert_int_equal(decode("{\"name\":\"abcdefghijk\"}", &s, &e), BV_EINVALID);
    assert_string_equal(e.field, "name");
    assert_int_equal(decode("{\"name\":\"\"}", &s, &e), BV_EINVALID);
    assert_int_equal(decode("{\"name\":\"a\",\"kind\":\"loan\"}", &s, &e), BV_EINVALID);
    assert_string_equal(e.field, "kind");
    assert_int_equal(decode("{\"name\":\"a\",\"tags\":[1,2,3,4]}", &s, &e), BV_EINVALID);
    assert_string_equal(e.field, "tags");
    assert_int_equal(decode("{\"name\":null}", &s, &e), BV_EINVALID);
    assert_string_equal(e.field, "name");
    assert_int_equal(decode("{\"name\":\"a\",\"tags\":null}", &s, &e), 0);
    assert_null(s.tags);
    assert_int_equal(decode("{\"name\":\"a\\u0000b\"}", &s, &e), BV_EINVALID);
    assert_int_equal(decode("{\"name\":\"a\",\"name\":\"b\"}", &s, &e), BV_EMALFORMED);
    assert_int_equal(decode("[1,2]", &s, &e), BV_EINVALID);
    assert_int_equal(decode("", &s, &e), BV_EMALFORMED);
}

static void test_json_syntax_error_position(void **state)
{
    (void)state;
    sample_t s;
    bv_json_error_t e;
    assert_int_equal(decode("{\"name\":\n \"a\",,}", &s, &e), BV_EMALFORMED);
    assert_non_null(strstr(e.detail, "line 2"));
    assert_string_equal(e.field, "");
}

static void test_time_parse_format(void **state)
{
    (void)state;
    int64_t us;
    char out[32];
    assert_int_equal(bv_time_parse("2026-11-22T10:20:30Z", &us), 0);
    assert_int_equal(us, 1795342830LL * 1000000);
    bv_time_format(us + 123456, out);
    assert_string_equal(out, "2026-11-22T10:20:30.123456Z");
    bv_time_format(0, out);
    assert_string_equal(out, "1970-01-01T00:00:00.000000Z");
    bv_time_format(-1, out); /* a microsecond before the epoch */
    assert_string_equal(out, "1969-12-31T23:59:59.999999Z");
    bv_time_format(253402300799999999LL, out); /* the last microsecond of 9999 */
    assert_string_equal(out, "9999-12-31T23:59:59.999999Z");
    assert_int_equal(bv_time_parse("2000-02-29T09:08:07.000001Z", &us), 0);
    bv_time_format(us, out);
    assert_string_equal(out, "2000-02-29T09:08:07.000001Z");
    assert_int_equal(bv_time_parse("2026-11-22T10:20:30.5+02:00", &us), 0);
    assert_int_equal(us, (1795342830LL - 7200) * 1000000 + 500000);
    assert_int_equal(bv_time_parse("2026-11-22", &us), 0);
    assert_int_equal(us, 1795305600LL * 1000000);
    assert_int_equal(bv_time_parse("2024-02-29", &us), 0);
    assert_int_equal(bv_time_parse("2026-02-29", &us), BV_EINVALID);
    assert_int_equal(bv_time_parse("2026-13-01", &us), BV_EINVALID);
    assert_int_equal(bv_time_parse("2026-11-22T10:20", &us), BV_EINVALID);
    assert_int_equal(bv_time_parse("2026-11-22T10:20:30", &us), BV_EINVALID); /* offset required */
    assert_int_equal(bv_time_parse("yesterday", &us), BV_EINVALID);
    assert_int_equal(bv_time_parse("2026-11-22T10:20:30Zjunk", &us), BV_EINVALID);
}

static void test_uuid7(void **state)
{
    (void)state;
    char a[37], b[37];
    bv_uuid7(a);
    assert_true(bv_uuid_valid(a));
    assert_int_equal(a[14], '7');
    assert_true(strchr("89ab", a[19]) != NULL);
    for (int i = 0; i < 10000; i++) {
        bv_uuid7(b);
        assert_true(strcmp(a, b) < 0); /* monotonic: time-ordered ids */
        memcpy(a, b, sizeof(a));
    }
    assert_false(bv_uuid_valid("not-a-uuid"));
    assert_false(bv_uuid_valid("01a20282-38de-70ca-a90b-2364c6df25a"));
    assert_false(bv_uuid_valid("01a20282x38de-70ca-a90b-2364c6df25a5"));
}

static void test_errors_registry(void **state)
{
    (void)state;
    assert_int_equal(bv_err_status(BV_ENOTFOUND), 404);
    assert_string_equal(bv_err_slug(BV_EINSUFFICIENT_FUNDS), "insufficient-funds");
    assert_int_equal(bv_err_status(BV_EINSUFFICIENT_FUNDS), 422);
    assert_int_equal(bv_err_status(12345), 500);
    assert_int_equal(bv_err_status(-99999), 500);
    assert_string_equal(bv_err_slug(BV_EINTERNAL), "internal");
}

static void test_log_escape(void **state)
{
    (void)state;
    char out[64];
    bv_json_escape(out, sizeof(out), "a\"b\\c\n\x01");
    assert_string_equal(out, "a\\\"b\\\\c\\n\\u0001");
    bv_json_escape(out, 4, "abcdef");
    assert_string_equal(out, "abc");
}

static void clear_env(void)
{
    unsetenv("BOVEDA_THREADS");
    unsetenv("BOVEDA_HTTP_LISTEN");
    unsetenv("BOVEDA_ADMIN_TOKEN");
    unsetenv("BOVEDA_LOG_LEVEL");
    unsetenv("BOVEDA_HTTPS_LISTEN");
    unsetenv("BOVEDA_KEYSTORE");
}

static void test_config_defaults_env_file(void **state)
{
    (void)state;
    bv_config_t *cfg = NULL;
    char err[512];
    clear_env();
    assert_int_equal(bv_config_load(NULL, &cfg, err, sizeof(err)), 0);
    assert_string_equal(cfg->http_listen, "127.0.0.1:8080");
    assert_int_equal(cfg->threads, 0);
    bv_config_free(cfg);

    char path[] = "/tmp/boveda-cfg-XXXXXX";
    int fd = mkstemp(path);
    dprintf(fd, "# comment\n[http]\nlisten = 127.0.0.1:9000\n\nthreads = 3\n[log]\nlevel=\"debug\"\n");
    close(fd);
    /* [http] threads maps to HTTP_THREADS, which does not exist */
    assert_int_equal(bv_config_load(path, &cfg, err, sizeof(err)), BV_ECONFIG);
    assert_non_null(strstr(err, "HTTP_THREADS"));
    fd = open(path, O_WRONLY | O_TRUNC);
    dprintf(fd, "threads = 3\n[http]\nlisten = 127.0.0.1:9000\n[log]\nlevel=\"debug\"\n");
    close(fd);
    assert_int_equal(bv_config_load(path, &cfg, err, sizeof(err)), 0);
    assert_string_equal(cfg->http_listen, "127.0.0.1:9000");
    assert_int_equal(cfg->threads, 3);
    assert_int_equal(cfg->log_level, BV_LOG_DEBUG);
    bv_config_free(cfg);
    setenv("BOVEDA_THREADS", "5", 1); /* the environment wins */
    assert_int_equal(bv_config_load(path, &cfg, err, sizeof(err)), 0);
    assert_int_equal(cfg->threads, 5);
    bv_config_free(cfg);
    unlink(path);
    clear_env();
}

static void test_config_invalid_names_setting(void **state)
{
    (void)state;
    bv_config_t *cfg = NULL;
    char err[512];
    clear_env();
    setenv("BOVEDA_THREADS", "abc", 1);
    assert_int_equal(bv_config_load(NULL, &cfg, err, sizeof(err)), BV_ECONFIG);
    assert_null(cfg);
    assert_non_null(strstr(err, "BOVEDA_THREADS"));
    assert_null(strchr(err, '\n'));
    clear_env();
    setenv("BOVEDA_HTTP_LISTEN", "nonsense", 1);
    assert_int_equal(bv_config_load(NULL, &cfg, err, sizeof(err)), BV_ECONFIG);
    assert_non_null(strstr(err, "BOVEDA_HTTP_LISTEN"));
    clear_env();
    setenv("BOVEDA_ADMIN_TOKEN", "short", 1);
    assert_int_equal(bv_config_load(NULL, &cfg, err, sizeof(err)), BV_ECONFIG);
    assert_non_null(strstr(err, "BOVEDA_ADMIN_TOKEN"));
    assert_null(strstr(err, "short")); /* a secret never echoed */
    clear_env();
    setenv("BOVEDA_HTTPS_LISTEN", "127.0.0.1:8443", 1);
    assert_int_equal(bv_config_load(NULL, &cfg, err, sizeof(err)), BV_ECONFIG);
    assert_non_null(strstr(err, "BOVEDA_TLS_CERT"));
    clear_env();
    setenv("BOVEDA_KEYSTORE", "pkcs11", 1);
    assert_int_equal(bv_config_load(NULL, &cfg, err, sizeof(err)), BV_ECONFIG);
    assert_non_null(strstr(err, "BOVEDA_PKCS11_MODULE"));
    clear_env();
    setenv("BOVEDA_LOG_LEVEL", "loud", 1);
    assert_int_equal(bv_config_load(NULL, &cfg, err, sizeof(err)), BV_ECONFIG);
    assert_non_null(strstr(err, "BOVEDA_LOG_LEVEL"));
    clear_env();
}

static void test_config_print_masks_secrets(void **state)
{
    (void)state;
    bv_config_t *cfg = NULL;
    char err[512], buf[8192] = {0};
    clear_env();
    setenv("BOVEDA_ADMIN_TOKEN", "0123456789abcdef0123456789abcdef-secret", 1);
    assert_int_equal(bv_config_load(NULL, &cfg, err, sizeof(err)), 0);
    char path[] = "/tmp/boveda-cfgout-XXXXXX";
    int fd = mkstemp(path);
    bv_config_print(cfg, fd);
    lseek(fd, 0, SEEK_SET);
    assert_true(read(fd, buf, sizeof(buf) - 1) > 0);
    close(fd);
    unlink(path);
    assert_non_null(strstr(buf, "BOVEDA_ADMIN_TOKEN=********"));
    assert_null(strstr(buf, "secret"));
    bv_config_free(cfg);
    clear_env();
}

static void test_buf_and_arena(void **state)
{
    (void)state;
    bv_buf_t b = {0};
    for (int i = 0; i < 1000; i++)
        assert_int_equal(bv_buf_printf(&b, "%d,", i), 0);
    assert_true(b.len > 2000);
    assert_int_equal(b.data[b.len], '\0');
    bv_buf_free(&b);
    bv_arena_t a = {0};
    for (int i = 0; i < 100; i++) {
        char *p = bv_arena_alloc(&a, 1000);
        assert_non_null(p);
        assert_int_equal((uintptr_t)p % 16, 0);
        memset(p, 1, 1000);
    }
    assert_non_null(bv_arena_alloc(&a, 100000));
    bv_arena_free(&a);
    assert_true(bv_ct_equal("abc", 3, "abc", 3));
    assert_false(bv_ct_equal("abc", 3, "abd", 3));
    assert_false(bv_ct_equal("abc", 3, "abcd", 4));
}

static void test_base64(void **state)
{
    (void)state;
    /* RFC 4648 §10, padded and unpadded */
    static const char *in[] = {"", "f", "fo", "foo", "foob", "fooba", "foobar"};
    static const char *padded[] = {"", "Zg==", "Zm8=", "Zm9v", "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy"};
    for (int i = 0; i < 7; i++) {
        char out[16];
        unsigned char dec[16];
        bv_buf_t b = {0};
        assert_int_equal(bv_b64_encode_buf(BV_B64_STD, BV_B64_PAD, in[i], strlen(in[i]), &b), 0);
        assert_string_equal(b.data ? b.data : "", padded[i]);
        size_t n = bv_b64_encode(BV_B64_URL, in[i], strlen(in[i]), out);
        assert_int_equal(n, strcspn(padded[i], "="));
        assert_int_equal(bv_b64_decode(BV_B64_URL, out, n, dec, sizeof(dec)), (ssize_t)strlen(in[i]));
        assert_memory_equal(dec, in[i], strlen(in[i]));
        bv_buf_free(&b);
    }
    /* the alphabets differ in two characters */
    const unsigned char hi[] = {0xfb, 0xff};
    char out[8];
    unsigned char dec[8];
    bv_b64_encode(BV_B64_STD, hi, 2, out);
    assert_string_equal(out, "+/8");
    bv_b64_encode(BV_B64_URL, hi, 2, out);
    assert_string_equal(out, "-_8");
    assert_int_equal(bv_b64_decode(BV_B64_URL, "+/8", 3, dec, sizeof(dec)), -1);
    /* non-canonical trailing bits, impossible length, no room, padding */
    assert_int_equal(bv_b64_decode(BV_B64_STD, "Zh", 2, dec, sizeof(dec)), -1);
    assert_int_equal(bv_b64_decode(BV_B64_STD, "Zm9vY", 5, dec, sizeof(dec)), -1);
    assert_int_equal(bv_b64_decode(BV_B64_STD, "Zm9vYmFy", 8, dec, 5), -1);
    assert_int_equal(bv_b64_decode(BV_B64_STD, "Zg==", 4, dec, sizeof(dec)), -1);
    /* MIME wrapping: 76 characters a line */
    unsigned char big[100];
    memset(big, 0xab, sizeof(big));
    bv_buf_t b = {0};
    assert_int_equal(bv_b64_encode_buf(BV_B64_STD, BV_B64_PAD | BV_B64_WRAP76, big, sizeof(big), &b), 0);
    assert_int_equal(strchr(b.data, '\r') - b.data, 76);
    assert_int_equal(b.len, 136 + 2);
    bv_buf_free(&b);
}

static void test_url_decode(void **state)
{
    (void)state;
    bv_arena_t a = {0};
    assert_string_equal(bv_url_decode(&a, "a%20b+c%2F", 10, 1), "a b c/");
    assert_string_equal(bv_url_decode(&a, "a+b", 3, 0), "a+b");
    assert_null(bv_url_decode(&a, "%zz", 3, 1));
    assert_null(bv_url_decode(&a, "%2", 2, 1));
    assert_null(bv_url_decode(&a, "a%00b", 5, 1));
    assert_null(bv_url_decode(&a, "a\0b", 3, 1));
    bv_arena_free(&a);
}

/* bv_json_dump writes exactly what json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY) writes */
static void test_json_dump_matches_jansson(void **state)
{
    (void)state;
    const char *docs[] = {
        "{}", "[]", "\"\"", "0", "-9223372036854775808", "true", "false", "null", "1.5", "-0.0", "1e300",
        "{\"a\":1,\"b\":[true,false,null],\"c\":{\"d\":\"e\"}}",
        "{\"z\":1,\"a\":2,\"m\":3}", /* insertion order kept */
        "\"quote \\\" backslash \\\\ slash / tab \\t nl \\n cr \\r bs \\b ff \\f\"",
        "\"ctl \\u0001 \\u001f del \\u007f\"", "\"nul \\u0000 inside\"",
        "\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x92\xb8 \\u2028\"",
        "[[[[[[1]]]]],{\"\":{\"\\n\":\"k\"}}]",
        "{\"access_token\":\"eyJhbGciOiJFUzI1NiIsImtpZCI6IngiLCJ0eXAiOiJhdCtqd3QifQ.eyJpc3MiOiJ4In0.c2ln\","
        "\"token_type\":\"Bearer\",\"expires_in\":600}",
    };
    for (size_t i = 0; i < sizeof(docs) / sizeof(docs[0]); i++) {
        json_error_t err;
        json_t *v = json_loads(docs[i], JSON_DECODE_ANY | JSON_ALLOW_NUL, &err);
        if (v == NULL)
            fail_msg("doc %zu: %s", i, err.text);
        char *want = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY), *got = bv_json_dump(v);
        assert_non_null(got);
        assert_string_equal(got, want);
        free(want);
        free(got);
        json_decref(v);
    }
    /* a long string with escapes spread through it */
    char big[5000];
    for (size_t i = 0; i < sizeof(big) - 1; i++)
        big[i] = (char)(i % 97 == 0 ? '\n' : i % 89 == 0 ? '"' : 'a' + (int)(i % 26));
    big[sizeof(big) - 1] = '\0';
    json_t *v = json_pack("{s:s,s:[s,i]}", "big", big, "arr", big, 7);
    char *want = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY), *got = bv_json_dump(v);
    assert_string_equal(got, want);
    free(want);
    free(got);
    json_decref(v);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_json_valid),
        cmocka_unit_test(test_json_errors_name_the_field),
        cmocka_unit_test(test_json_syntax_error_position),
        cmocka_unit_test(test_time_parse_format),
        cmocka_unit_test(test_uuid7),
        cmocka_unit_test(test_errors_registry),
        cmocka_unit_test(test_log_escape),
        cmocka_unit_test(test_config_defaults_env_file),
        cmocka_unit_test(test_config_invalid_names_setting),
        cmocka_unit_test(test_config_print_masks_secrets),
        cmocka_unit_test(test_buf_and_arena),
        cmocka_unit_test(test_base64),
        cmocka_unit_test(test_json_dump_matches_jansson),
        cmocka_unit_test(test_url_decode),
    };
    return cmocka_run_group_tests_name("base", tests, NULL, NULL);
}
