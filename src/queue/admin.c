/* `boveda admin queues list|peek|redrive|purge [--json]`. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "queue/internal.h"

static int usage(void)
{
    fprintf(stderr, "usage: boveda admin queues list [--json]\n"
                    "       boveda admin queues peek QUEUE [--limit N] [--json]\n"
                    "       boveda admin queues redrive DLQ [--max N] [--json]\n"
                    "       boveda admin queues purge QUEUE [--json]\n");
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

static int fail(const char *what, int rc, int json)
{
    if (json)
        printf("{\"ok\":false,\"error\":\"%s\"}\n", bv_err_slug(rc));
    else
        fprintf(stderr, "queues %s: %s\n", what, rc == BV_ENOTFOUND ? "no such queue" : bv_err_title(rc));
    return rc == BV_ENOTFOUND || rc == BV_EINVALID ? 1 : 2;
}

static int cmd_list(bv_app_t *app, int json)
{
    bv_queue_info_t *qs = NULL;
    size_t n = 0;
    int rc = bv_queue_list(app->store, &qs, &n);
    if (rc != 0)
        return fail("list", rc, json);
    if (json) {
        json_t *arr = json_array();
        for (size_t i = 0; i < n && arr != NULL; i++) {
            bv_queue_info_t *q = &qs[i];
            json_array_append_new(
                arr,
                json_pack("{s:s, s:s, s:I, s:I, s:I, s:I, s:I, s:s?, s:I, s:I, s:I, s:I}", "name", q->name,
                          "type", q->fifo ? "fifo" : "standard", "depth", (json_int_t)q->depth, "in_flight",
                          (json_int_t)q->in_flight, "delayed", (json_int_t)q->delayed, "oldest_age_ms",
                          (json_int_t)(q->oldest_age_us / 1000), "dlq_depth", (json_int_t)q->dlq_depth, "dlq",
                          q->dlq[0] ? q->dlq : NULL, "max_receives", (json_int_t)q->max_receives,
                          "visibility_timeout_ms", (json_int_t)q->visibility_timeout_ms, "delay_ms",
                          (json_int_t)q->delay_ms, "retention_s", (json_int_t)q->retention_s));
        }
        free(qs);
        return print_json(json_pack("{s:o}", "queues", arr != NULL ? arr : json_array()));
    }
    printf("%-24s %-8s %8s %9s %8s %10s %-24s %8s\n", "QUEUE", "TYPE", "DEPTH", "IN_FLIGHT", "DELAYED",
           "OLDEST_S", "DLQ", "DLQ_DEPTH");
    for (size_t i = 0; i < n; i++) {
        bv_queue_info_t *q = &qs[i];
        printf("%-24s %-8s %8lld %9lld %8lld %10lld %-24s %8lld\n", q->name, q->fifo ? "fifo" : "standard",
               (long long)q->depth, (long long)q->in_flight, (long long)q->delayed,
               (long long)(q->oldest_age_us / 1000000), q->dlq[0] ? q->dlq : "-", (long long)q->dlq_depth);
    }
    free(qs);
    return 0;
}

static int cmd_peek(bv_app_t *app, const char *queue, int limit, int json)
{
    json_t *items = NULL;
    int rc = bv_queue_peek(app->store, queue, limit, &items);
    if (rc != 0)
        return fail("peek", rc, json);
    if (json)
        return print_json(json_pack("{s:s, s:o}", "queue", queue, "messages", items));
    for (size_t i = 0; i < json_array_size(items); i++) {
        json_t *m = json_array_get(items, i);
        char *attrs = json_dumps(json_object_get(m, "attributes"), JSON_COMPACT | JSON_SORT_KEYS);
        printf("%s  %-9s  receives=%lld  sent=%s  attributes=%s\n",
               json_string_value(json_object_get(m, "id")), json_string_value(json_object_get(m, "state")),
               (long long)json_integer_value(json_object_get(m, "receive_count")),
               json_string_value(json_object_get(m, "sent_at")), attrs != NULL ? attrs : "{}");
        free(attrs);
    }
    if (json_array_size(items) == 0)
        printf("(queue %s is empty)\n", queue);
    json_decref(items);
    return 0;
}

static int cmd_count(bv_app_t *app, const char *sub, const char *queue, int64_t max, int json)
{
    int64_t n = 0;
    int rc;
    if (strcmp(sub, "redrive") == 0) {
        bv_queue_info_t *qs = NULL;
        size_t nq = 0;
        int found = 0;
        if ((rc = bv_queue_list(app->store, &qs, &nq)) != 0)
            return fail(sub, rc, json);
        for (size_t i = 0; i < nq; i++)
            found |= strcmp(qs[i].name, queue) == 0;
        free(qs);
        if (!found)
            return fail(sub, BV_ENOTFOUND, json);
        rc = bv_queue_redrive(app->store, queue, max, &n);
    } else {
        rc = bv_queue_purge(app->store, queue, &n);
    }
    if (rc != 0)
        return fail(sub, rc, json);
    if (json)
        return print_json(json_pack("{s:b, s:s, s:s, s:I}", "ok", 1, "queue", queue, "action", sub,
                                    "messages", (json_int_t)n));
    printf("%s %s: %lld message%s\n", strcmp(sub, "redrive") == 0 ? "redrove" : "purged", queue, (long long)n,
           n == 1 ? "" : "s");
    return 0;
}

static int parse_int(const char *s, int64_t min, int64_t max, int64_t *out)
{
    char *end = NULL;
    long long v = s != NULL ? strtoll(s, &end, 10) : 0;
    if (s == NULL || *s == '\0' || *end != '\0' || v < min || v > max)
        return -1;
    *out = v;
    return 0;
}

int bv_queue_admin_main(bv_app_t *app, int argc, char **argv)
{
    int i = 0, json = 0;
    int64_t limit = 10, max = 0;
    const char *sub, *name = NULL;
    if (i < argc && strcmp(argv[i], "queues") == 0)
        i++;
    if (i >= argc)
        return usage();
    sub = argv[i++];
    for (; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0)
            json = 1;
        else if (strcmp(argv[i], "--limit") == 0 && i + 1 < argc && strcmp(sub, "peek") == 0) {
            if (parse_int(argv[++i], 1, 100, &limit) != 0)
                return usage();
        } else if (strcmp(argv[i], "--max") == 0 && i + 1 < argc && strcmp(sub, "redrive") == 0) {
            if (parse_int(argv[++i], 1, INT64_MAX, &max) != 0)
                return usage();
        } else if (argv[i][0] != '-' && name == NULL)
            name = argv[i];
        else
            return usage();
    }
    if (strcmp(sub, "list") == 0 && name == NULL)
        return cmd_list(app, json);
    if (name == NULL)
        return usage();
    if (!bv_queue_name_valid(name)) {
        fprintf(stderr, "queues %s: invalid queue name (expected [a-z0-9._-]{1,80})\n", sub);
        return 1;
    }
    if (strcmp(sub, "peek") == 0)
        return cmd_peek(app, name, (int)limit, json);
    if (strcmp(sub, "redrive") == 0 || strcmp(sub, "purge") == 0)
        return cmd_count(app, sub, name, max, json);
    return usage();
}
