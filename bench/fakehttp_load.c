/* fakehttp_load — load generator for the fake-server core (tests/fakes/fakehttp.c).
 *
 * A child process runs a fakehttp server whose handler answers every request after a
 * fixed delay; the parent opens C keep-alive connections on loopback and keeps one
 * request outstanding on each (raw sockets, one epoll loop), for a fixed time. Prints
 * requests per second, latency percentiles, and the CPU time of the server process and
 * of the client, so the server's share of a core can be read off directly.
 *
 *   fakehttp_load [--conns 256] [--delay-ms 20] [--seconds 5]
 */
#include "bench.h"
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "fakes/fakehttp.h"
#include "util/util.h"

static const char REQUEST[] = "GET /v1/ping HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
static const char BODY[] = "{\"object\":\"ping\",\"ok\":true,\"padding\":\"xxxxxxxxxxxxxxxxxxxxxxxx\"}";

typedef struct load_opts {
    int conns;
    int delay_ms;
    int seconds;
} load_opts;

/* What the server child reports back through a pipe when it stops. */
typedef struct server_report {
    double cpu_s;           /* CLOCK_PROCESS_CPUTIME_ID: the scheduler's exact runtime */
    double user_s, sys_s;   /* getrusage: tick-sampled on this kernel, only a rough split */
    fh_stats_t stats;
} server_report;

typedef struct client_conn {
    int fd;
    char buf[4096];
    size_t len;
    int64_t sent_us;
} client_conn;

/* ------------------------------------------------------------------ server child */

static void delayed_handler(fh_request *req, void *ctx) {
    const load_opts *o = ctx;
    fh_respond_after(req, o->delay_ms, 200, "application/json", BODY, sizeof BODY - 1);
}

static int write_all(int fd, const void *p, size_t n) {
    const char *c = p;
    while (n > 0) {
        ssize_t w = write(fd, c, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return -1;
        c += w;
        n -= (size_t)w;
    }
    return 0;
}

static int read_all(int fd, void *p, size_t n) {
    char *c = p;
    while (n > 0) {
        ssize_t r = read(fd, c, n);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return -1;
        c += r;
        n -= (size_t)r;
    }
    return 0;
}

static double tv_seconds(struct timeval tv) { return (double)tv.tv_sec + tv.tv_usec / 1e6; }

/* CPU time of the whole process (all threads), or 0 when the clock is unavailable. */
static double process_cpu_seconds(void) {
    struct timespec ts;
    if (clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts) < 0) return 0;
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Child: serve until the control pipe closes, then report CPU time and counters. */
static int run_server_child(load_opts *o, int port_wr, int ctl_rd, int report_wr) {
    fh_options fo = {.port = 0, .handler = delayed_handler, .ctx = o};
    fh_server *srv = fh_create(&fo);
    if (!srv) return 1;
    int port = fh_port(srv);
    if (fh_start_thread(srv) < 0 || write_all(port_wr, &port, sizeof port) < 0) {
        fh_destroy(srv);
        return 1;
    }
    char b;
    while (read(ctl_rd, &b, 1) > 0) {
    }
    fh_stop_thread(srv);
    struct rusage ru;
    server_report rep;
    memset(&rep, 0, sizeof rep);
    rep.cpu_s = process_cpu_seconds();
    if (getrusage(RUSAGE_SELF, &ru) == 0) {
        rep.user_s = tv_seconds(ru.ru_utime);
        rep.sys_s = tv_seconds(ru.ru_stime);
    }
    rep.stats = fh_stats(srv);
    fh_destroy(srv);
    return write_all(report_wr, &rep, sizeof rep) < 0;
}

/* ------------------------------------------------------------------ client */

static int connect_loopback(int port) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int one = 1;
    if (connect(fd, (struct sockaddr *)&a, sizeof a) < 0 ||
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) < 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static int send_request(client_conn *c) {
    c->sent_us = mono_us();
    ssize_t w = send(c->fd, REQUEST, sizeof REQUEST - 1, MSG_NOSIGNAL);
    return w == (ssize_t)(sizeof REQUEST - 1) ? 0 : -1;
}

/* Bytes of the first complete response in c->buf, or 0 when it is not complete yet. */
static size_t complete_response(const client_conn *c) {
    const char *end = memmem(c->buf, c->len, "\r\n\r\n", 4);
    if (!end) return 0;
    size_t head = (size_t)(end - c->buf) + 4;
    const char *cl = memmem(c->buf, head, "Content-Length: ", 16);
    size_t body = cl ? (size_t)strtoul(cl + 16, NULL, 10) : 0;
    return c->len >= head + body ? head + body : 0;
}

static int cmp_i64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

typedef struct client_result {
    uint64_t responses;
    int64_t *lat_us;
    size_t nlat, cap;
    int errors;
} client_result;

/* Reads what arrived on c; for every complete response records its latency and sends
 * the next request. Returns -1 when the connection failed. */
static int on_readable(client_conn *c, client_result *res) {
    ssize_t r = recv(c->fd, c->buf + c->len, sizeof c->buf - c->len, 0);
    if (r < 0 && (errno == EAGAIN || errno == EINTR)) return 0;
    if (r <= 0) return -1;
    c->len += (size_t)r;
    size_t n = complete_response(c);
    if (n == 0) return c->len < sizeof c->buf ? 0 : -1;
    if (strncmp(c->buf, "HTTP/1.1 200 ", 13) != 0) return -1;
    memmove(c->buf, c->buf + n, c->len - n);
    c->len -= n;
    XGROW(res->lat_us, res->cap, res->nlat + 1);
    res->lat_us[res->nlat++] = mono_us() - c->sent_us;
    res->responses++;
    return send_request(c);
}

static int run_client(const load_opts *o, int port, client_result *res) {
    int ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0) return -1;
    client_conn *conns = xcalloc((size_t)o->conns, sizeof *conns);
    int rc = 0;
    for (int i = 0; i < o->conns && rc == 0; i++) {
        conns[i].fd = connect_loopback(port);
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &conns[i]};
        if (conns[i].fd < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, conns[i].fd, &ev) < 0) rc = -1;
    }
    /* Spread the first requests over one delay period: started together, the
     * connections would move in lock-step waves and measure burst handling instead. */
    int64_t gap_us = (int64_t)o->delay_ms * 1000 / o->conns;
    int64_t start = mono_us();
    for (int i = 0; i < o->conns && rc == 0; i++) {
        while (mono_us() < start + i * gap_us) {
        }
        rc = send_request(&conns[i]);
    }
    int64_t end = mono_ms() + (int64_t)o->seconds * 1000;
    struct epoll_event evs[256];
    while (rc == 0 && mono_ms() < end) {
        int n = epoll_wait(ep, evs, 256, 100);
        if (n < 0 && errno != EINTR) rc = -1;
        for (int i = 0; i < n; i++)
            if (on_readable(evs[i].data.ptr, res) < 0) res->errors++;
        if (res->errors > 0) rc = -1;
    }
    for (int i = 0; i < o->conns; i++)
        if (conns[i].fd >= 0) close(conns[i].fd);
    free(conns);
    close(ep);
    return rc;
}

/* ------------------------------------------------------------------ main */

static int parse_args(int argc, char **argv, load_opts *o) {
    for (int i = 1; i < argc; i++) {
        if (i + 1 >= argc) return -1;
        int v = atoi(argv[i + 1]);
        if (v <= 0) return -1;
        if (!strcmp(argv[i], "--conns")) o->conns = v;
        else if (!strcmp(argv[i], "--delay-ms")) o->delay_ms = v;
        else if (!strcmp(argv[i], "--seconds")) o->seconds = v;
        else return -1;
        i++;
    }
    return 0;
}

/* The server's CPU share is taken over the client's run time: its process lived a
 * little longer (start-up and the report), so the share errs on the high side. */
static void report(const load_opts *o, client_result *res, double wall_s,
                   const server_report *srv, double cli_cpu_s) {
    qsort(res->lat_us, res->nlat, sizeof *res->lat_us, cmp_i64);
    int64_t p50 = res->nlat ? res->lat_us[res->nlat / 2] : 0;
    int64_t p99 = res->nlat ? res->lat_us[res->nlat * 99 / 100] : 0;
    int64_t pmax = res->nlat ? res->lat_us[res->nlat - 1] : 0;
    printf("conns=%d delay=%dms duration=%.2fs\n", o->conns, o->delay_ms, wall_s);
    printf("requests: %" PRIu64 "  (%.0f req/s; ideal %.0f)\n", res->responses,
           res->responses / wall_s, o->conns * 1000.0 / o->delay_ms);
    printf("latency: p50 %.2f ms  p99 %.2f ms  max %.2f ms\n", p50 / 1e3, p99 / 1e3,
           pmax / 1e3);
    printf("server cpu: %.2fs = %.0f%% of one core (rusage split: %.2fs user, %.2fs sys)\n",
           srv->cpu_s, 100.0 * srv->cpu_s / wall_s, srv->user_s, srv->sys_s);
    printf("client cpu: %.2fs = %.0f%% of one core\n", cli_cpu_s, 100.0 * cli_cpu_s / wall_s);
    printf("server stats: requests %" PRIu64 ", 2xx %" PRIu64 ", max in flight %" PRId64
           ", max conns %" PRId64 ", aborted %" PRIu64 "\n",
           srv->stats.requests, srv->stats.resp_2xx, srv->stats.max_in_flight,
           srv->stats.max_conns_open, srv->stats.aborted);
}

static const char USAGE[] =
    "usage: fakehttp_load [--conns N] [--delay-ms N] [--seconds N]\n";

int main(int argc, char **argv) {
    if (bench_help(argc, argv, USAGE)) return 0;
    load_opts o = {.conns = 256, .delay_ms = 20, .seconds = 5};
    if (parse_args(argc, argv, &o) < 0) {
        return bench_usage_error(USAGE);
    }
    int port_p[2], ctl_p[2], rep_p[2];
    if (pipe(port_p) < 0 || pipe(ctl_p) < 0 || pipe(rep_p) < 0) {
        perror("pipe");
        return 1;
    }
    pid_t pid = fork();
    if (pid < 0) {
        perror("fork");
        return 1;
    }
    if (pid == 0) {
        close(ctl_p[1]);
        _exit(run_server_child(&o, port_p[1], ctl_p[0], rep_p[1]));
    }
    close(ctl_p[0]);
    close(port_p[1]);
    close(rep_p[1]);
    int port = 0;
    if (read_all(port_p[0], &port, sizeof port) < 0) {
        fprintf(stderr, "server child failed to start\n");
        return 1;
    }
    client_result res = {0};
    double cpu0 = process_cpu_seconds();
    int64_t t0 = mono_us();
    int rc = run_client(&o, port, &res);
    double wall_s = (mono_us() - t0) / 1e6;
    double cli_cpu = process_cpu_seconds() - cpu0;
    close(ctl_p[1]); /* tells the server to stop and report */
    server_report srv;
    int got = read_all(rep_p[0], &srv, sizeof srv) == 0;
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    if (rc < 0 || !got) {
        fprintf(stderr, "load run failed (client errors %d, server report %s)\n", res.errors,
                got ? "ok" : "missing");
        free(res.lat_us);
        return 1;
    }
    report(&o, &res, wall_s, &srv, cli_cpu);
    free(res.lat_us);
    return 0;
}
