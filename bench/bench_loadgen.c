/* An open-loop HTTP/1.1 load generator for latency goals ("p99 <= 5 ms at 2,000 req/s"):
 * request i is due at t0 + i/rate whether or not earlier ones were answered, and its
 * latency counts from that due time (no coordinated omission). Keep-alive connections, one
 * request in flight per connection, epoll, one thread that sleeps until the next request is
 * due (epoll_pwait2's nanosecond timeout): it costs the machine far less than a Node.js
 * generator, so the server under test keeps the cores.
 *
 *   bench_loadgen HOST PORT PATH RATE SECONDS CONNECTIONS [TOKEN_FILE]
 *
 * A tool for the bench scripts (bench/summary.sh), not a benchmark of its own: bench/run
 * does not run it.
 *
 * PATH "@FILE": paths, one per line, used round-robin. PATH "POST@FILE": POST requests, one
 * per line as PATH<TAB>JSON-BODY, used round-robin, "{n}" in a body replaced by the
 * request's sequence number (unique references). TOKEN_FILE: bearer tokens, one per line,
 * used round-robin (none: no Authorization).
 * Prints one line: rate achieved, p50/p90/p99/p99.9/max in ms, errors (non-2xx, resets).
 * With BENCH_LOADGEN_TIMELINE set, also prints on stderr the worst latency of the requests
 * due in each 100 ms of the run (where the slow ones cluster). */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_CONNS 512
#define RESP_MAX  (256 * 1024)

typedef struct {
    int fd;
    int busy;
    int64_t due_ns; /* of the request in flight */
    size_t got;
    char *buf;
} conn_t;

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void note_worst(int64_t *worst, size_t n_slots, int64_t at_ns, int64_t lat_ns)
{
    size_t slot = at_ns < 0 ? 0 : (size_t)(at_ns / 100000000);
    if (worst != NULL && slot < n_slots && lat_ns > worst[slot])
        worst[slot] = lat_ns;
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

static int connect_to(const struct sockaddr_in *sa)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    if (fd < 0)
        return -1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (connect(fd, (const struct sockaddr *)sa, sizeof(*sa)) != 0) {
        close(fd);
        return -1;
    }
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    return fd;
}

/* A complete response in c->buf: headers and a Content-Length body. Returns the status
 * code, 0 when incomplete, -1 when malformed. */
static int response_complete(conn_t *c)
{
    c->buf[c->got] = '\0';
    char *end = strstr(c->buf, "\r\n\r\n");
    if (end == NULL)
        return 0;
    char *cl = strcasestr(c->buf, "\r\ncontent-length:");
    if (cl == NULL || cl > end)
        return -1;
    long len = strtol(cl + 17, NULL, 10);
    if ((size_t)(end + 4 - c->buf) + (size_t)len > c->got)
        return 0;
    int status = 0;
    if (sscanf(c->buf, "HTTP/1.1 %d", &status) != 1)
        return -1;
    return status;
}

/* The non-empty lines of a file, as malloc'd strings. 0 or -1 (reported). */
static int read_lines(const char *file, char ***out, size_t *n)
{
    FILE *f = fopen(file, "r");
    char line[4096];
    if (f == NULL) {
        perror(file);
        return -1;
    }
    while (fgets(line, sizeof(line), f) != NULL) {
        line[strcspn(line, "\r\n")] = '\0';
        if (line[0] == '\0')
            continue;
        *out = realloc(*out, (*n + 1) * sizeof(**out));
        (*out)[(*n)++] = strdup(line);
    }
    fclose(f);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 7) {
        fprintf(stderr, "usage: bench_loadgen HOST PORT PATH RATE SECONDS CONNECTIONS [TOKEN_FILE]\n");
        return 2;
    }
    const char *host = argv[1], *path = argv[3];
    int port = atoi(argv[2]), nconn = atoi(argv[6]);
    double rate = atof(argv[4]), seconds = atof(argv[5]);
    if (nconn < 1 || nconn > MAX_CONNS || rate <= 0 || seconds <= 0) {
        fprintf(stderr, "bench_loadgen: bad arguments\n");
        return 2;
    }
    char **tokens = NULL, **paths = NULL, *one_path[1] = {(char *)path}, **bodies = NULL;
    size_t ntok = 0, npath = 1;
    if (argc > 7 && read_lines(argv[7], &tokens, &ntok) != 0)
        return 2;
    if (strncmp(path, "POST@", 5) == 0) {
        npath = 0;
        if (read_lines(path + 5, &paths, &npath) != 0 || npath == 0)
            return 2;
        bodies = calloc(npath, sizeof(*bodies));
        for (size_t i = 0; i < npath; i++) {
            char *tab = strchr(paths[i], '\t');
            if (tab == NULL) {
                fprintf(stderr, "bench_loadgen: POST lines are PATH<TAB>BODY\n");
                return 2;
            }
            *tab = '\0';
            bodies[i] = tab + 1;
        }
    } else if (path[0] == '@') {
        npath = 0;
        if (read_lines(path + 1, &paths, &npath) != 0 || npath == 0)
            return 2;
    } else {
        paths = one_path;
    }
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    if (inet_pton(AF_INET, host, &sa.sin_addr) != 1) {
        fprintf(stderr, "bench_loadgen: HOST must be an IPv4 address\n");
        return 2;
    }
    int ep = epoll_create1(0);
    conn_t *conns = calloc((size_t)nconn, sizeof(*conns));
    for (int i = 0; i < nconn; i++) {
        conns[i].buf = malloc(RESP_MAX + 1);
        if ((conns[i].fd = connect_to(&sa)) < 0) {
            perror("connect");
            return 1;
        }
        struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)i};
        epoll_ctl(ep, EPOLL_CTL_ADD, conns[i].fd, &ev);
    }
    size_t total = (size_t)(rate * seconds);
    int64_t *lat = malloc(total * sizeof(*lat));
    size_t n_slots = (size_t)(seconds * 10) + 1;
    int64_t *worst = getenv("BENCH_LOADGEN_TIMELINE") != NULL ? calloc(n_slots, sizeof(*worst)) : NULL;
    size_t sent = 0, done = 0, errors = 0;
    int64_t interval = (int64_t)(1e9 / rate), t0 = now_ns() + 10000000LL;
    char req[12288];
    int64_t give_up = t0 + (int64_t)((seconds + 10) * 1e9); /* answers still missing then count as errors */
    while (done < total) {
        int64_t now = now_ns();
        if (now > give_up) {
            fprintf(stderr, "bench_loadgen: %zu requests unanswered 10 s after the run\n", total - done);
            errors += total - done;
            break;
        }
        /* send every request that is due, on free connections (a due request waits for one) */
        int starved = 0;
        while (sent < total && t0 + (int64_t)sent * interval <= now) {
            int k = -1;
            for (int i = 0; i < nconn; i++)
                if (!conns[i].busy) {
                    k = i;
                    break;
                }
            if (k < 0) {
                starved = 1;
                break;
            }
            int n;
            char auth[4200] = "", body[4096] = "", head[256] = "";
            if (ntok > 0 && (size_t)snprintf(auth, sizeof(auth), "Authorization: Bearer %s\r\n",
                                             tokens[sent % ntok]) >= sizeof(auth)) {
                fprintf(stderr, "bench_loadgen: token too long\n");
                return 2;
            }
            if (bodies != NULL) { /* the body, {n} replaced */
                const char *t = bodies[sent % npath], *mark = strstr(t, "{n}");
                int bl = mark == NULL
                             ? snprintf(body, sizeof(body), "%s", t)
                             : snprintf(body, sizeof(body), "%.*s%zu%s", (int)(mark - t), t, sent, mark + 3);
                if (bl < 0 || (size_t)bl >= sizeof(body)) {
                    fprintf(stderr, "bench_loadgen: body too long\n");
                    return 2;
                }
                snprintf(head, sizeof(head), "Content-Type: application/json\r\nContent-Length: %d\r\n", bl);
            }
            n = snprintf(req, sizeof(req), "%s %s HTTP/1.1\r\nHost: %s:%d\r\n%s%s\r\n%s",
                         bodies != NULL ? "POST" : "GET", paths[sent % npath], host, port, auth, head, body);
            if (n <= 0 || (size_t)n >= sizeof(req)) {
                fprintf(stderr, "bench_loadgen: request too long\n");
                return 2;
            }
            conn_t *c = &conns[k];
            c->busy = 1;
            c->got = 0;
            c->due_ns = t0 + (int64_t)sent * interval;
            if (write(c->fd, req, (size_t)n) != n) {
                errors++;
                lat[done++] = now - c->due_ns;
                note_worst(worst, n_slots, c->due_ns - t0, now - c->due_ns);
                c->busy = 0;
            }
            sent++;
        }
        /* sleep until the next request is due or an answer comes, to the microsecond
         * (epoll_wait's milliseconds would make this loop spin and take a core from the
         * server under test) */
        int64_t next_due = sent < total ? t0 + (int64_t)sent * interval : now + 1000000;
        int64_t wait_ns = next_due - now;
        /* every connection busy: only an answer frees one (polling for it would take the
         * server's CPU when the server is slowest) */
        if (starved)
            wait_ns = 1000000;
        else if (wait_ns < 0)
            wait_ns = 0;
        if (wait_ns > 1000000)
            wait_ns = 1000000;
        struct timespec tmo = {.tv_sec = 0, .tv_nsec = (long)wait_ns};
        struct epoll_event evs[64];
        int n = epoll_pwait2(ep, evs, 64, &tmo, NULL);
        int64_t t = now_ns();
        for (int e = 0; e < n; e++) {
            conn_t *c = &conns[evs[e].data.u32];
            ssize_t r = read(c->fd, c->buf + c->got, RESP_MAX - c->got);
            if (r <= 0) {
                if (r < 0 && errno == EAGAIN)
                    continue;
                if (c->busy) {
                    errors++;
                    lat[done++] = t - c->due_ns;
                    note_worst(worst, n_slots, c->due_ns - t0, t - c->due_ns);
                }
                epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
                close(c->fd);
                c->fd = connect_to(&sa);
                c->busy = 0;
                if (c->fd >= 0) {
                    struct epoll_event ev = {.events = EPOLLIN, .data.u32 = evs[e].data.u32};
                    epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev);
                }
                continue;
            }
            c->got += (size_t)r;
            int st = response_complete(c);
            if (st == 0 && c->got < RESP_MAX)
                continue;
            if (st < 200 || st > 299)
                errors++;
            if (c->busy) {
                lat[done++] = t - c->due_ns;
                note_worst(worst, n_slots, c->due_ns - t0, t - c->due_ns);
            }
            c->busy = 0;
            c->got = 0;
        }
    }
    double elapsed = (double)(now_ns() - t0) / 1e9;
    if (done == 0) {
        printf("no answers in %.1f s, errors %zu\n", elapsed, errors);
        return 1;
    }
    for (size_t i = 0; worst != NULL && i < n_slots; i++)
        fprintf(stderr, "%6.1f s  worst %7.2f ms\n", (double)i / 10, (double)worst[i] / 1e6);
    free(worst);
    qsort(lat, done, sizeof(*lat), cmp_i64);
#define Q(p) ((double)lat[(size_t)((p) * (double)(done - 1))] / 1e6)
    printf(
        "%.0f req/s for %.1f s (%d connections): p50 %.2f ms, p90 %.2f ms, p99 %.2f ms, p99.9 %.2f ms, max "
        "%.2f ms, errors %zu\n",
        (double)done / elapsed, elapsed, nconn, Q(0.5), Q(0.9), Q(0.99), Q(0.999), Q(1.0), errors);
    return errors == 0 ? 0 : 1;
}
