/* The JSON text of the customer routes is written with a buffer and printf (the summary is
 * the hot path): check that it is valid JSON whatever the customer's data holds, that
 * missing contacts are null and that channels render as the set they stand for. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>
#include <jansson.h>
#include <string.h>

#include "customer/internal.h"
#include "notify/notify.h"

static json_t *parse(const bv_buf_t *b)
{
    json_error_t err;
    json_t *j = json_loadb(b->data, b->len, 0, &err);
    if (j == NULL)
        fail_msg("not JSON (%s): %s", err.text, b->data);
    return j;
}

static void test_profile_json_escapes_everything(void **state)
{
    (void)state;
    bv_customer_profile_t p;
    bv_buf_t b = {0};
    memset(&p, 0, sizeof(p));
    snprintf(p.id, sizeof(p.id), "01890a5d-ac96-774b-bcce-b302099a8057");
    snprintf(p.username, sizeof(p.username), "ana.o'neil");
    snprintf(p.display_name, sizeof(p.display_name), "Ana \"la\" Peña\\ \n\t\x01 </script>");
    snprintf(p.email, sizeof(p.email), "ana@example.test");
    snprintf(p.locale, sizeof(p.locale), "en");
    p.channels = BV_NOTIFY_EMAIL;
    assert_int_equal(customer_profile_json(&b, &p), 0);
    json_t *j = parse(&b);
    assert_string_equal(json_string_value(json_object_get(j, "id")), p.id);
    assert_string_equal(json_string_value(json_object_get(j, "username")), p.username);
    assert_string_equal(json_string_value(json_object_get(j, "display_name")), p.display_name);
    assert_string_equal(json_string_value(json_object_get(j, "email")), "ana@example.test");
    assert_true(json_is_null(json_object_get(j, "phone")));
    assert_string_equal(json_string_value(json_object_get(j, "locale")), "en");
    json_t *prefs = json_object_get(j, "notification_preferences");
    assert_int_equal(json_array_size(json_object_get(prefs, "channels")), 1);
    assert_string_equal(json_string_value(json_array_get(json_object_get(prefs, "channels"), 0)), "email");
    assert_string_equal(json_string_value(json_object_get(prefs, "locale")), "en");
    assert_int_equal(json_object_size(j), 7);
    json_decref(j);
    bv_buf_free(&b);
}

static void test_channels(void **state)
{
    (void)state;
    static const struct {
        unsigned ch;
        const char *text;
    } cases[] = {
        {BV_NOTIFY_EMAIL, "[\"email\"]"},
        {BV_NOTIFY_SMS, "[\"sms\"]"},
        {BV_NOTIFY_EMAIL | BV_NOTIFY_SMS, "[\"email\",\"sms\"]"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        bv_buf_t b = {0};
        assert_int_equal(customer_json_channels(&b, cases[i].ch), 0);
        assert_string_equal(b.data, cases[i].text);
        bv_buf_free(&b);
    }
}

static void test_available_channels(void **state)
{
    (void)state;
    assert_int_equal(customer_available_channels("a@b.test", "+34600111222"),
                     BV_NOTIFY_EMAIL | BV_NOTIFY_SMS);
    assert_int_equal(customer_available_channels("a@b.test", ""), BV_NOTIFY_EMAIL);
    assert_int_equal(customer_available_channels(NULL, "+34600111222"), BV_NOTIFY_SMS);
    assert_int_equal(customer_available_channels("", NULL), 0);
}

static void test_json_str_and_time(void **state)
{
    (void)state;
    bv_buf_t b = {0};
    char big[3000];
    memset(big, '"', sizeof(big) - 1); /* escapes to more than the stack buffer */
    big[sizeof(big) - 1] = '\0';
    assert_int_equal(bv_buf_puts(&b, "["), 0);
    assert_int_equal(bv_buf_json_string(&b, "", true), 0);
    assert_int_equal(bv_buf_puts(&b, ","), 0);
    assert_int_equal(bv_buf_json_string(&b, "", false), 0);
    assert_int_equal(bv_buf_puts(&b, ","), 0);
    assert_int_equal(bv_buf_json_string(&b, big, false), 0);
    assert_int_equal(bv_buf_puts(&b, ","), 0);
    assert_int_equal(bv_buf_json_time(&b, 0), 0);
    assert_int_equal(bv_buf_puts(&b, ","), 0);
    assert_int_equal(bv_buf_json_time(&b, 1700000000123456LL), 0);
    assert_int_equal(bv_buf_puts(&b, "]"), 0);
    json_t *j = parse(&b);
    assert_true(json_is_null(json_array_get(j, 0)));
    assert_string_equal(json_string_value(json_array_get(j, 1)), "");
    assert_string_equal(json_string_value(json_array_get(j, 2)), big);
    assert_true(json_is_null(json_array_get(j, 3)));
    assert_string_equal(json_string_value(json_array_get(j, 4)), "2023-11-14T22:13:20.123456Z");
    json_decref(j);
    bv_buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_profile_json_escapes_everything),
        cmocka_unit_test(test_channels),
        cmocka_unit_test(test_available_channels),
        cmocka_unit_test(test_json_str_and_time),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
