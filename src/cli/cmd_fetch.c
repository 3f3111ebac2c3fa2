/* feedline fetch: conversations from the Intercom REST API into the database. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "source/intercom.h"
#include "util/jsonx.h"
#include "util/timeutil.h"

#define MAX_REPORTED_FAILURES 20

static void usage(FILE *out) {
    fprintf(out,
            "usage: feedline fetch [--db DB] --days N [--max N] [--since-last]\n"
            "                      [--concurrency N] [--per-page N] [--timeout S] [--json]\n"
            "\n"
            "Fetches conversations from the Intercom REST API (INTERCOM_ACCESS_TOKEN; base URL\n"
            "INTERCOM_BASE_URL, default https://api.intercom.io) into the database, through the\n"
            "same quality filter as import. Each conversation that passes is fetched in full\n"
            "(its whole thread) and stored; re-fetching updates conversations in place.\n"
            "\n"
            "  --db DB           SQLite file or postgres:// URL (default feedline.db)\n"
            "  --days N          conversations created in the last N days (UTC, bounds\n"
            "                    inclusive), newest first\n"
            "  --max N           at most N conversations that pass the quality filter\n"
            "  --since-last      only conversations created or updated since the newest one\n"
            "                    fetched by the previous --since-last fetch (the first one\n"
            "                    needs --days N: updated in the last N days)\n"
            "  --concurrency N   requests in flight (1..%d, default 20)\n"
            "  --per-page N      search page size (1..%d, default %d)\n"
            "  --timeout S       seconds per request (default 30)\n"
            "  --json            print the summary as JSON\n"
            "  -h, --help        this help\n"
            "\n"
            "429 answers are waited out (X-RateLimit-Reset / Retry-After); 5xx, timeouts and\n"
            "malformed answers are retried with backoff; 401/403 stop at once. Conversations\n"
            "that still fail are listed with their reason and not stored.\n"
            "\n"
            "Exit status: 0 done, 1 failed or some conversations could not be fetched,\n"
            "2 bad arguments, 4 stopped (Ctrl-C).\n",
            INTERCOM_MAX_CONCURRENCY, INTERCOM_MAX_PER_PAGE, INTERCOM_DEFAULT_PER_PAGE);
}

typedef struct fetch_args {
    const char *db;
    long long days, max, concurrency, per_page, timeout;
    int since_last, json;
} fetch_args;

typedef struct failures {
    int64_t count;
} failures;

static void on_failure(void *ctx, const char *id, const char *reason) {
    failures *f = ctx;
    if (f->count++ < MAX_REPORTED_FAILURES)
        fprintf(stderr, "%sfeedline fetch: conversation %s: %s\n", isatty(2) ? "\r\033[K" : "",
                id[0] ? id : "(without id)", reason);
}

static void on_progress(void *ctx, const intercom_progress *p) {
    (void)ctx;
    if (!isatty(2)) return;
    fprintf(stderr, "\r\033[K[fetch] page %lld  seen %lld  passed %lld  stored %lld",
            (long long)p->pages, (long long)p->seen, (long long)p->passed, (long long)p->stored);
    if (p->failed) fprintf(stderr, "  %lld failed", (long long)p->failed);
    if (p->in_flight) fprintf(stderr, "  %lld in flight", (long long)p->in_flight);
    fflush(stderr);
}

static int parse_args(int argc, char **argv, fetch_args *a) {
    static const struct option opts[] = {
        {"db", required_argument, NULL, 'd'},          {"days", required_argument, NULL, 'D'},
        {"max", required_argument, NULL, 'm'},         {"since-last", no_argument, NULL, 's'},
        {"concurrency", required_argument, NULL, 'c'}, {"per-page", required_argument, NULL, 'p'},
        {"timeout", required_argument, NULL, 't'},     {"json", no_argument, NULL, 'j'},
        {"help", no_argument, NULL, 'h'},              {0}};
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        int bad = 0;
        switch (c) {
        case 'd': a->db = optarg; break;
        case 'D': bad = cli_parse_int("--days", optarg, 1, 36500, &a->days); break;
        case 'm': bad = cli_parse_int("--max", optarg, 1, 100000000, &a->max); break;
        case 's': a->since_last = 1; break;
        case 'c':
            bad = cli_parse_int("--concurrency", optarg, 1, INTERCOM_MAX_CONCURRENCY, &a->concurrency);
            break;
        case 'p': bad = cli_parse_int("--per-page", optarg, 1, INTERCOM_MAX_PER_PAGE, &a->per_page); break;
        case 't': bad = cli_parse_int("--timeout", optarg, 1, 600, &a->timeout); break;
        case 'j': a->json = 1; break;
        case 'h': usage(stdout); return 1;
        default: usage(stderr); return -1;
        }
        if (bad) return -1;
    }
    if (optind < argc) {
        fprintf(stderr, "feedline fetch: unexpected argument \"%s\"\n", argv[optind]);
        return -1;
    }
    if (!a->days && !a->since_last) {
        fprintf(stderr, "feedline fetch: --days N is required (or --since-last)\n");
        return -1;
    }
    return 0;
}

static void print_json(const intercom_result *r, const intercom_window *w) {
    json_t *by = json_object();
    for (int v = 1; v < QUALITY_VERDICT_COUNT; v++)
        json_object_set_new(by, quality_verdict_name((enum quality_verdict)v),
                            json_integer((json_int_t)r->stats.filtered_by[v]));
    const char *status = r->status == INTERCOM_DONE ? "done"
                         : r->status == INTERCOM_STOPPED ? "stopped" : "failed";
    json_t *o = json_pack(
        "{s:s,s:s?,s:s,s:I,s:I,s:I,s:I,s:I,s:b,s:I,s:I,s:I,s:I,s:o,s:I,s:I,s:I,s:I,s:I,s:f}",
        "status", status, "error", r->status == INTERCOM_FAILED ? r->error : NULL, "field",
        w->field == INTERCOM_UPDATED_AT ? "updated_at" : "created_at", "from", (json_int_t)w->from,
        "to", (json_int_t)w->to, "pages", (json_int_t)r->pages, "seen", (json_int_t)r->seen,
        "passed", (json_int_t)r->passed, "capped", r->capped, "imported", (json_int_t)r->stats.inserted,
        "updated", (json_int_t)r->stats.updated, "unchanged", (json_int_t)r->stats.unchanged,
        "filtered", (json_int_t)r->stats.filtered, "filtered_by", by, "rejected",
        (json_int_t)r->stats.rejected, "detail_failures", (json_int_t)r->detail_failed, "requests",
        (json_int_t)r->requests, "retries", (json_int_t)r->retries, "rate_limited",
        (json_int_t)r->rate_limited, "seconds", r->seconds);
    cli_print_json(o);
    json_decref(o);
}

static void print_human(const intercom_result *r, const intercom_window *w) {
    char a[32], b[32];
    iso8601_format(w->from, a, sizeof a);
    if (w->to > 0) printf("window: %s %s .. %s\n", w->field == INTERCOM_UPDATED_AT ? "updated" : "created",
                          a, iso8601_format(w->to, b, sizeof b));
    else printf("window: %s since %s\n", w->field == INTERCOM_UPDATED_AT ? "updated" : "created", a);
    printf("fetched %lld search pages, %lld conversations seen in %.1fs%s\n", (long long)r->pages,
           (long long)r->seen, r->seconds, r->capped ? " (stopped at --max)" : "");
    printf("  %-16s %lld\n", "imported", (long long)r->stats.inserted);
    printf("  %-16s %lld\n", "updated", (long long)r->stats.updated);
    printf("  %-16s %lld\n", "unchanged", (long long)r->stats.unchanged);
    printf("  %-16s %lld\n", "filtered", (long long)r->stats.filtered);
    for (int v = 1; v < QUALITY_VERDICT_COUNT; v++)
        if (r->stats.filtered_by[v])
            printf("    %-24s %lld\n", quality_verdict_name((enum quality_verdict)v),
                   (long long)r->stats.filtered_by[v]);
    if (r->stats.rejected) printf("  %-16s %lld\n", "rejected", (long long)r->stats.rejected);
    printf("  %-16s %lld\n", "detail failures", (long long)r->detail_failed);
    if (r->rate_limited || r->retries)
        printf("  %lld requests, %lld retried, %lld rate limited (429)\n", (long long)r->requests,
               (long long)r->retries, (long long)r->rate_limited);
}

int cmd_fetch(int argc, char **argv) {
    fetch_args a = {0};
    int pr = parse_args(argc, argv, &a);
    if (pr) return pr > 0 ? EXIT_OK : EXIT_USAGE;
    intercom_options o;
    intercom_options_from_env(&o);
    if (!o.token || !o.token[0]) {
        fprintf(stderr, "feedline fetch: INTERCOM_ACCESS_TOKEN is not set\n");
        return EXIT_FAILURE_;
    }
    if (a.concurrency) o.concurrency = (int)a.concurrency;
    if (a.per_page) o.per_page = (int)a.per_page;
    if (a.timeout) o.timeout_ms = a.timeout * 1000;
    o.max_conversations = a.max;
    atomic_int stop = 0;
    cli_trap_stop(&stop);
    failures fl = {0};
    o.stop_flag = &stop;
    o.progress = on_progress;
    o.on_failure = on_failure;
    o.failure_ctx = &fl;
    store *st = cli_open_store(cli_db(a.db));
    if (!st) return EXIT_FAILURE_;
    int64_t now = wall_unix();
    intercom_result r;
    intercom_window w = {INTERCOM_CREATED_AT, a.days ? now - a.days * 86400 : 0, now};
    if (a.since_last) {
        int64_t from = 0;
        intercom_fetch_since_last(st, &o, a.days ? now - a.days * 86400 : 0, &from, &r);
        w.field = INTERCOM_UPDATED_AT;
        w.from = from;
        w.to = 0;
    } else {
        intercom_fetch(st, &o, &w, &r);
        if (r.status == INTERCOM_DONE && intercom_record_last_fetch(st, &w, &r) != STORE_OK)
            fprintf(stderr, "feedline fetch: recording the fetch: %s\n", store_errmsg(st));
    }
    if (isatty(2)) fprintf(stderr, "\r\033[K");
    if (fl.count > MAX_REPORTED_FAILURES)
        fprintf(stderr, "feedline fetch: ... and %lld more conversations could not be fetched\n",
                (long long)(fl.count - MAX_REPORTED_FAILURES));
    if (a.json) print_json(&r, &w);
    else if (r.status != INTERCOM_FAILED) print_human(&r, &w);
    if (r.status == INTERCOM_FAILED) fprintf(stderr, "feedline fetch: %s\n", r.error);
    else if (r.status == INTERCOM_STOPPED) fprintf(stderr, "feedline fetch: stopped\n");
    store_close(st);
    if (r.status == INTERCOM_STOPPED) return EXIT_STOPPED;
    if (r.status == INTERCOM_FAILED || r.detail_failed || r.stats.rejected) return EXIT_FAILURE_;
    return EXIT_OK;
}
