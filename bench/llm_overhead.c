/* llm_overhead — the LLM engine's own cost: how many requests per second the
 * OpenAI-compatible provider (one libcurl multi loop, the rate limiter, request
 * building, answer parsing and validation) drives through the fake endpoint when the
 * endpoint is fast, and the engine's CPU time per request.
 *
 *   llm_overhead [--requests 30000] [--concurrency 256] [--latency-ms 20] [--task facets|embed]
 *
 * Starts build/fake_openai (the fake runs the offline analyzer for each answer, in
 * its own process), submits the calls keeping `concurrency` submitted, and reports
 * wall time, requests/s, the ideal (concurrency / latency), this process's CPU time
 * per request (the engine) and the fake's. No store: the cache is off, every call is
 * a request. */
#include "bench.h"
#include <getopt.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "llm/llm.h"
#include "support/fakeproc.h"
#include "util/jsonx.h"
#include "util/mem.h"
#include "util/timeutil.h"

typedef struct bench {
    llm_call *calls;
    char **texts;
    size_t n, next, done, failed;
} bench;

static double cpu_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* CPU seconds of another process, from /proc/PID/stat (utime + stime). */
static double proc_cpu_seconds(pid_t pid) {
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    char buf[1024];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    const char *p = strrchr(buf, ')');
    unsigned long ut = 0, st = 0;
    if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) != 2)
        return -1;
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

static void on_done(llm_call *c) {
    bench *b = c->user;
    b->done++;
    if (c->status != LLM_OK) b->failed++;
    llm_call_reset_result(c);
}

static const char *const SAMPLES[] = {
    "My scheduled pins are not posting, the queue shows an error since yesterday.",
    "How do I change the email on my account?",
    "I was charged twice this month, please refund one of the charges.",
    "The dashboard is a blank screen after login, nothing loads.",
};

typedef struct options {
    long requests, concurrency, latency;
    int embed;
} options;

static int parse_args(int argc, char **argv, options *o) {
    static const struct option opts[] = {{"requests", required_argument, NULL, 'n'},
                                         {"concurrency", required_argument, NULL, 'c'},
                                         {"latency-ms", required_argument, NULL, 'l'},
                                         {"task", required_argument, NULL, 't'},
                                         {0}};
    int c;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        if (c == 'n') o->requests = atol(optarg);
        else if (c == 'c') o->concurrency = atol(optarg);
        else if (c == 'l') o->latency = atol(optarg);
        else if (c == 't') o->embed = !strcmp(optarg, "embed");
        else return -1;
    }
    return o->requests >= 1 && o->concurrency >= 1 && o->concurrency <= 512 && o->latency >= 0 ? 0 : -1;
}

static llm_provider *provider_for(const fakeproc *fp, long concurrency) {
    llm_openai_config cfg;
    llm_openai_config_from_env(&cfg);
    static char url[128];
    snprintf(url, sizeof url, "%s/v1", fp->url);
    cfg.base_url = url;
    cfg.embed_base_url = NULL;
    cfg.api_key = "bench";
    cfg.concurrency = (int)concurrency;
    cfg.rpm = cfg.tpm = 0;
    char err[256];
    llm_provider *p = llm_openai_new(&cfg, NULL, NULL, err, sizeof err);
    if (!p) fprintf(stderr, "llm_overhead: %s\n", err);
    return p;
}

/* Distinct calls (no two requests are the same). */
static void make_calls(bench *b, const options *o) {
    b->n = (size_t)o->requests;
    b->calls = xcalloc(b->n, sizeof *b->calls);
    b->texts = xcalloc(b->n, sizeof *b->texts);
    for (size_t i = 0; i < b->n; i++) {
        b->texts[i] = xasprintf("%s (ticket %zu)", SAMPLES[i % 4], i);
        llm_call *k = &b->calls[i];
        k->task = o->embed ? LLM_EMBED : LLM_FACETS;
        k->in.digest = b->texts[i];
        k->texts = (const char *const *)&b->texts[i];
        k->ntexts = 1;
        k->done = on_done;
        k->user = b;
    }
}

/* Keeps `concurrency` calls submitted until all completed; 0, or -1 on a fatal error. */
static int drive(llm_provider *p, bench *b, long concurrency) {
    while (b->done < b->n) {
        while (b->next < b->n && llm_pending(p) < (size_t)concurrency)
            if (llm_submit(p, &b->calls[b->next++]) != 0) return -1;
        if (llm_poll(p, 50) < 0) {
            fprintf(stderr, "llm_overhead: %s\n", p->error);
            return -1;
        }
    }
    return 0;
}

static const char USAGE[] =
    "usage: llm_overhead [--requests N] [--concurrency 1..512] [--latency-ms N] "
    "[--task facets|embed]\n";

int main(int argc, char **argv) {
    if (bench_help(argc, argv, USAGE)) return 0;
    options o = {30000, 256, 20, 0};
    if (parse_args(argc, argv, &o) != 0) {
        return bench_usage_error(USAGE);
    }
    char lat[32];
    snprintf(lat, sizeof lat, "%ld", o.latency);
    const char *args[] = {"--vocab", "data/theme_vocabulary.json", "--latency-ms", lat, NULL};
    fakeproc fp;
    if (fakeproc_start(&fp, "fake_openai", args) != 0) {
        fprintf(stderr, "llm_overhead: cannot start build/fake_openai (run from the repository root)\n");
        return 1;
    }
    llm_provider *p = provider_for(&fp, o.concurrency);
    if (!p) {
        fakeproc_stop(&fp);
        return 1;
    }
    bench b = {0};
    make_calls(&b, &o);
    double cpu0 = cpu_seconds(), fcpu0 = proc_cpu_seconds(fp.pid);
    int64_t t0 = mono_us();
    int rc = drive(p, &b, o.concurrency);
    double wall = (double)(mono_us() - t0) / 1e6;
    double cpu = cpu_seconds() - cpu0, fcpu = proc_cpu_seconds(fp.pid) - fcpu0;
    json_t *st = fakeproc_stats(&fp);
    printf("task %s, %zu requests, concurrency %ld, fake latency %ld ms\n", o.embed ? "embed" : "facets",
           b.n, o.concurrency, o.latency);
    printf("  wall %.2f s, %.0f requests/s (ideal %.0f/s = concurrency / latency), %zu failed\n", wall,
           (double)b.done / wall,
           o.latency > 0 ? (double)o.concurrency * 1000.0 / (double)o.latency : 0.0, b.failed);
    printf("  engine CPU %.2f s = %.1f us per request; fake CPU %.2f s = %.1f us per request\n", cpu,
           cpu * 1e6 / (double)b.n, fcpu, fcpu * 1e6 / (double)b.n);
    printf("  fake: max in flight %lld, requests %lld, connections %lld\n",
           (long long)jx_int(st, "max_in_flight", -1), (long long)jx_int(st, "requests", -1),
           (long long)jx_int(st, "conns_accepted", -1));
    json_decref(st);
    llm_provider_destroy(p);
    for (size_t i = 0; i < b.n; i++) free(b.texts[i]);
    free(b.texts);
    free(b.calls);
    fakeproc_stop(&fp);
    return rc == 0 && b.failed == 0 ? 0 : 1;
}
