/* `boveda admin notify log|replay|test`. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "notify/internal.h"
#include "queue/queue.h"

static int usage(void)
{
    fprintf(stderr, "usage: boveda admin notify log ID [--json]\n"
                    "       boveda admin notify log --customer CUSTOMER_ID [--limit N] [--json]\n"
                    "       boveda admin notify replay ID [--channel email|sms] [--json]\n"
                    "       boveda admin notify test [--email ADDRESS] [--phone +E164] [--timeout SECONDS | "
                    "--no-wait] [--json]\n");
    return 2;
}

static int print_json(json_t *o)
{
    char *s = o != NULL ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    if (s == NULL)
        return 2;
    printf("%s\n", s);
    free(s);
    return 0;
}

typedef struct {
    const char *id;
    json_t *out;
} get_t;

static int get_job(bv_tx_t *tx, void *arg)
{
    get_t *g = arg;
    json_decref(g->out);
    g->out = NULL;
    return notify_log_get(tx, g->id, &g->out);
}

static void print_log_text(json_t *o)
{
    printf("notification %s  kind=%s  customer=%s  created=%s\n", json_string_value(json_object_get(o, "id")),
           json_string_value(json_object_get(o, "kind")),
           json_string_value(json_object_get(o, "customer_id")),
           json_string_value(json_object_get(o, "created_at")));
    json_t *chans = json_object_get(o, "channels"), *atts = json_object_get(o, "attempts");
    for (size_t i = 0; i < json_array_size(chans); i++) {
        json_t *c = json_array_get(chans, i);
        const char *pid = json_string_value(json_object_get(c, "provider_message_id"));
        const char *err = json_string_value(json_object_get(c, "last_error"));
        printf("  %-5s %-9s attempts=%lld provider=%s id=%s%s%s\n",
               json_string_value(json_object_get(c, "channel")),
               json_string_value(json_object_get(c, "status")),
               (long long)json_integer_value(json_object_get(c, "attempts")),
               json_string_value(json_object_get(c, "provider"))
                   ? json_string_value(json_object_get(c, "provider"))
                   : "-",
               pid ? pid : "-", err ? "  error=" : "", err ? err : "");
    }
    for (size_t i = 0; i < json_array_size(atts); i++) {
        json_t *a = json_array_get(atts, i);
        const char *err = json_string_value(json_object_get(a, "error"));
        printf("    %s %-5s %-14s %-12s %lldms%s%s\n", json_string_value(json_object_get(a, "at")),
               json_string_value(json_object_get(a, "channel")),
               json_string_value(json_object_get(a, "provider")),
               json_string_value(json_object_get(a, "status")),
               (long long)json_integer_value(json_object_get(a, "duration_ms")), err ? "  " : "",
               err ? err : "");
    }
}

typedef struct {
    notify_query_t q;
    json_t *items;
    char next[BV_UUID_STR_LEN + 1];
} list_t;

static int list_job(bv_tx_t *tx, void *arg)
{
    list_t *l = arg;
    json_array_clear(l->items);
    return notify_log_list(tx, &l->q, l->items, l->next);
}

static int cmd_log(bv_app_t *app, const char *id, const char *customer, int limit, int json)
{
    int rc;
    if (customer != NULL) {
        list_t l = {.q = {.customer_id = customer, .limit = limit}, .items = json_array()};
        if ((rc = bv_store_run_tx(app->store, 0, list_job, &l)) != 0) {
            json_decref(l.items);
            fprintf(stderr, "notify log: %s\n", bv_err_title(rc));
            return 2;
        }
        if (json)
            return print_json(json_pack("{s:o}", "items", l.items));
        for (size_t i = 0; i < json_array_size(l.items); i++) {
            json_t *n = json_array_get(l.items, i), *chans = json_object_get(n, "channels");
            printf("%s  %-14s %s", json_string_value(json_object_get(n, "id")),
                   json_string_value(json_object_get(n, "kind")),
                   json_string_value(json_object_get(n, "created_at")));
            for (size_t k = 0; k < json_array_size(chans); k++)
                printf("  %s=%s", json_string_value(json_object_get(json_array_get(chans, k), "channel")),
                       json_string_value(json_object_get(json_array_get(chans, k), "status")));
            printf("\n");
        }
        json_decref(l.items);
        return 0;
    }
    if (!bv_uuid_valid(id)) {
        fprintf(stderr, "notify log: not a notification id\n");
        return 1;
    }
    get_t g = {.id = id};
    if ((rc = bv_store_run_tx(app->store, 0, get_job, &g)) != 0) {
        fprintf(stderr, "notify log: %s\n", rc == BV_ENOTFOUND ? "no such notification" : bv_err_title(rc));
        return rc == BV_ENOTFOUND ? 1 : 2;
    }
    if (json)
        return print_json(g.out);
    print_log_text(g.out);
    json_decref(g.out);
    return 0;
}

static int cmd_replay(bv_app_t *app, const char *id, const char *channel, int json)
{
    int n = 0;
    int rc = notify_replay(app->store, id, channel, "admin:cli", &n);
    if (rc != 0) {
        const char *why = rc == BV_ENOTFOUND  ? "no such notification (or no such channel on it)"
                          : rc == BV_EEXPIRED ? "OTP notifications are never replayed (the code is not kept)"
                          : rc == BV_EINVALID ? "not a notification id or channel"
                                              : bv_err_title(rc);
        if (json)
            printf("{\"ok\":false,\"error\":\"%s\"}\n", bv_err_slug(rc));
        else
            fprintf(stderr, "notify replay: %s\n", why);
        return rc == BV_EIO || rc == BV_EBUSY ? 2 : 1;
    }
    if (json)
        return print_json(json_pack("{s:b, s:s, s:i}", "ok", 1, "id", id, "channels", n));
    printf("replay queued for %s on %d channel%s\n", id, n, n == 1 ? "" : "s");
    return 0;
}

typedef struct {
    bv_notification_t n;
    char id[BV_UUID_STR_LEN + 1];
} test_pub_t;

static int test_publish_job(bv_tx_t *tx, void *arg)
{
    test_pub_t *t = arg;
    return bv_notify_publish_ex(tx, &t->n, t->id);
}

static int all_settled(json_t *log)
{
    json_t *chans = json_object_get(log, "channels");
    for (size_t i = 0; i < json_array_size(chans); i++) {
        const char *st = json_string_value(json_object_get(json_array_get(chans, i), "status"));
        if (st == NULL ||
            (strcmp(st, "delivered") != 0 && strcmp(st, "failed") != 0 && strcmp(st, "skipped") != 0))
            return 0;
    }
    return json_array_size(chans) > 0;
}

static int cmd_test(bv_app_t *app, const char *email, const char *phone, int timeout_s, int no_wait, int json)
{
    test_pub_t t = {0};
    get_t g = {0};
    int rc, ok = 1;
    if (email == NULL && phone == NULL)
        return usage();
    if (email != NULL && !no_wait && !notify_channel_ready("email")) {
        fprintf(stderr, "notify test: e-mail is not configured here (BOVEDA_SMTP_URL is not set)\n");
        return 1;
    }
    if (phone != NULL && !no_wait && !notify_channel_ready("sms")) {
        fprintf(
            stderr,
            "notify test: SMS is not configured here (BOVEDA_SMS_PROVIDER / BOVEDA_SMS_URL are not set)\n");
        return 1;
    }
    t.n.customer.id = "admin-test";
    t.n.customer.email = email;
    t.n.customer.phone = phone;
    t.n.kind = BV_NOTIFY_TEST;
    t.n.channels = (email ? BV_NOTIFY_EMAIL : 0) | (phone ? BV_NOTIFY_SMS : 0);
    if ((rc = bv_store_run_tx(app->store, 1, test_publish_job, &t)) != 0) {
        fprintf(stderr, "notify test: %s\n",
                rc == BV_EINVALID ? "invalid e-mail address or phone number (E.164)" : bv_err_title(rc));
        return rc == BV_EINVALID ? 1 : 2;
    }
    if (no_wait) { /* queued: a running server or worker delivers it */
        if (json)
            printf("{\"ok\":true,\"id\":\"%s\",\"queued\":true}\n", t.id);
        else
            printf("test notification %s queued\n", t.id);
        return 0;
    }
    /* deliver through the real queues with this process's consumers (a running server's
       consumers may take it too: either way the delivery log tells) */
    if ((rc = bv_queue_workers_start(app->store, "notify")) != 0) {
        fprintf(stderr, "notify test: cannot start the notification consumers\n");
        return 2;
    }
    g.id = t.id;
    int64_t deadline = bv_mono_us() + (int64_t)timeout_s * 1000000;
    for (;;) {
        rc = bv_store_run_tx(app->store, 0, get_job, &g);
        if (rc == 0 && all_settled(g.out))
            break;
        if (bv_mono_us() >= deadline) {
            ok = 0;
            break;
        }
        struct timespec ts = {0, 200 * 1000000L};
        nanosleep(&ts, NULL);
    }
    bv_queue_workers_stop();
    if (g.out == NULL) {
        fprintf(stderr, "notify test: cannot read the delivery log\n");
        return 2;
    }
    json_t *chans = json_object_get(g.out, "channels");
    for (size_t i = 0; i < json_array_size(chans); i++) {
        const char *st = json_string_value(json_object_get(json_array_get(chans, i), "status"));
        if (st == NULL || strcmp(st, "delivered") != 0)
            ok = 0;
    }
    if (json) {
        json_object_set_new(g.out, "ok", json_boolean(ok));
        print_json(g.out);
    } else {
        print_log_text(g.out);
        printf("%s\n", ok ? "test notification delivered on every channel"
                          : "test notification NOT delivered on every channel (see above)");
        json_decref(g.out);
    }
    return ok ? 0 : 1;
}

static int parse_int(const char *s, int min, int max, int *out)
{
    char *end = NULL;
    long v = s != NULL ? strtol(s, &end, 10) : 0;
    if (s == NULL || *s == '\0' || *end != '\0' || v < min || v > max)
        return -1;
    *out = (int)v;
    return 0;
}

int bv_notify_admin_main(bv_app_t *app, int argc, char **argv)
{
    int i = 0, json = 0, timeout = 60, limit = 50, no_wait = 0;
    const char *sub, *id = NULL, *email = NULL, *phone = NULL, *channel = NULL, *customer = NULL;
    if (i < argc && strcmp(argv[i], "notify") == 0)
        i++;
    if (i >= argc)
        return usage();
    sub = argv[i++];
    for (; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--json") == 0)
            json = 1;
        else if (strcmp(a, "--no-wait") == 0 && strcmp(sub, "test") == 0)
            no_wait = 1;
        else if (strcmp(a, "--email") == 0 && v != NULL && strcmp(sub, "test") == 0)
            email = argv[++i];
        else if (strcmp(a, "--phone") == 0 && v != NULL && strcmp(sub, "test") == 0)
            phone = argv[++i];
        else if (strcmp(a, "--timeout") == 0 && v != NULL && strcmp(sub, "test") == 0) {
            if (parse_int(argv[++i], 1, 600, &timeout) != 0)
                return usage();
        } else if (strcmp(a, "--channel") == 0 && v != NULL && strcmp(sub, "replay") == 0)
            channel = argv[++i];
        else if (strcmp(a, "--customer") == 0 && v != NULL && strcmp(sub, "log") == 0)
            customer = argv[++i];
        else if (strcmp(a, "--limit") == 0 && v != NULL && strcmp(sub, "log") == 0) {
            if (parse_int(argv[++i], 1, 200, &limit) != 0)
                return usage();
        } else if (a[0] != '-' && id == NULL)
            id = a;
        else
            return usage();
    }
    if (strcmp(sub, "log") == 0 && (id != NULL) != (customer != NULL))
        return cmd_log(app, id, customer, limit, json);
    if (strcmp(sub, "replay") == 0 && id != NULL)
        return cmd_replay(app, id, channel, json);
    if (strcmp(sub, "test") == 0 && id == NULL)
        return cmd_test(app, email, phone, timeout, no_wait, json);
    return usage();
}
