/* llm_latency — a whole `feedline run --llm openai` when the endpoint is slow: every
 * request takes `latency` ms at the fake, so the run can at best finish in
 * requests x latency / concurrency (every slot busy from the first request to the
 * last: the physical ideal). Reports the whole run against it and against the sum of
 * per-phase ideals ceil(requests / concurrency) x latency, and, per task of the fake
 * (classify, refine, embed, facets, theme, canonicalize, review, story), its requests
 * and the window from its first request's arrival to its last answer's release (the
 * fake's /_stats), which shows how the phases overlap. The run's current_phase (the
 * earliest phase with unfinished work) is sampled every 2 ms and its changes printed.
 * The wall time is split around the requests: spawn to first request, first request
 * to last answer (with how busy the slots were meanwhile: the fake's requests in flight
 * integrated over time), last answer to exit.
 *
 *   llm_latency [--conversations 2000] [--latency-ms 200] [--concurrency 20] [--seed S]
 *
 * Generates the conversations (tests/support/convgen, realistic mix: some are not
 * actionable, some are filtered), imports them with build/feedline, starts
 * build/fake_openai, runs the pipeline in a child process and samples the run's
 * current phase in the database every 2 ms for the phase boundaries. Run from the
 * repository root after `make bench`. */
#include "bench.h"
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/store.h"
#include "support/convgen.h"
#include "support/dataset.h"
#include "support/fakeproc.h"
#include "support/fixtures.h"
#include "util/jsonx.h"
#include "util/mem.h"
#include "util/timeutil.h"

typedef struct options {
    long conversations, latency, concurrency;
    uint64_t seed;
} options;

/* Phases in run order, with the fake's tasks that serve them. */
static const struct {
    const char *phase;
    const char *tasks[2];
} PHASES[] = {
    {"classification", {"classify", "refine"}},
    {"embedding_generation", {"embed", NULL}},
    {"facet_extraction", {"facets", NULL}},
    {"theme_extraction", {"theme", "canonicalize"}},
    {"story_creation", {"story", NULL}},
};
#define NPHASES (sizeof PHASES / sizeof PHASES[0])

static int write_conversations(const char *path, const options *o) {
    convgen_options co;
    convgen_options_default(&co);
    co.count = (size_t)o->conversations;
    return ds_write_jsonl_to(path, (size_t)o->conversations, o->seed, &co);
}

static int phase_index(const char *name) {
    for (size_t i = 0; i < NPHASES; i++)
        if (!strcmp(PHASES[i].phase, name)) return (int)i;
    return -1;
}

/* Samples the run's phase until the process exits; start times in ms since t0 (-1
 * when the phase was never seen). Returns the exit status. */
static int watch(pid_t pid, const char *db, int64_t t0, int64_t start[NPHASES], int64_t *end) {
    for (size_t i = 0; i < NPHASES; i++) start[i] = -1;
    store *st = NULL;
    char err[256];
    int rc;
    while ((rc = fakeproc_wait(pid, 0)) == -2) {
        if (!st && store_open(db, &st, err, sizeof err) != STORE_OK) st = NULL;
        run_record r;
        if (st && store_run_get(st, 1, &r) == STORE_FOUND) {
            int k = phase_index(r.current_phase);
            if (k >= 0 && start[k] < 0) start[k] = mono_ms() - t0;
            run_record_free(&r);
        }
        sleep_ms(2);
    }
    *end = mono_ms() - t0;
    if (st) store_close(st);
    return rc;
}

static int64_t task_count(json_t *stats, const char *task) {
    return task ? jx_int(jx_obj(jx_obj(stats, "tasks"), task), "requests", 0) : 0;
}

static double ceil_rounds(int64_t requests, long conc) {
    return requests > 0 ? ceil((double)requests / (double)conc) : 0;
}

/* The client's reaction time: how soon a connection whose answer went out carried the
 * next request, as the fake saw it (its reuse_gaps histogram). A slot idles that long
 * per request; gaps of 64 ms and more are slots with no work to take. */
static void print_reuse_gaps(json_t *stats) {
    json_t *gaps = jx_arr(stats, "reuse_gaps");
    int64_t first = jx_int(stats, "reuse_gap_first_us", 0);
    size_t n = json_array_size(gaps);
    if (n < 2 || first <= 0) return;
    if (n > 64) n = 64;
    int64_t count[64] = {0}, total = 0;
    for (size_t i = 0; i < n; i++) total += count[i] = json_integer_value(json_array_get(gaps, i));
    if (total == 0) return;
    printf("  next request on a connection after its answer: mean %.2f ms (gaps under %lld "
           "ms); share up to", (double)jx_int(stats, "reuse_gap_mean_us", 0) / 1000.0,
           (long long)(first << (n - 2)) / 1000);
    int64_t below = 0, edge = first;
    for (size_t i = 0; i + 1 < n; i++, edge *= 2) {
        below += count[i];
        if (edge >= 500)
            printf(" %g ms %.0f%%,", (double)edge / 1000.0, 100.0 * (double)below / (double)total);
    }
    printf(" longer %lld\n", (long long)count[n - 1]);
}

static int parse_args(int argc, char **argv, options *o) {
    static const struct option lo[] = {{"conversations", required_argument, NULL, 'n'},
                                       {"latency-ms", required_argument, NULL, 'l'},
                                       {"concurrency", required_argument, NULL, 'c'},
                                       {"seed", required_argument, NULL, 's'},
                                       {0}};
    int c;
    while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        if (c == 'n') o->conversations = atol(optarg);
        else if (c == 'l') o->latency = atol(optarg);
        else if (c == 'c') o->concurrency = atol(optarg);
        else if (c == 's') o->seed = strtoull(optarg, NULL, 10);
        else return -1;
    }
    return o->conversations >= 1 && o->latency >= 1 && o->concurrency >= 1 &&
                   o->concurrency <= 512
               ? 0
               : -1;
}

/* Generates and imports the conversations into dir/bench.db; its path, or NULL. */
static char *prepare_db(const char *dir, const options *o) {
    char *jsonl = xasprintf("%s/conversations.jsonl", dir), *db = xasprintf("%s/bench.db", dir);
    char *imp[] = {"build/feedline", "import", "--db", db, jsonl, NULL};
    int ok = write_conversations(jsonl, o) == 0 && fx_run(imp, NULL, NULL, NULL) == 0;
    free(jsonl);
    if (!ok) {
        fprintf(stderr, "llm_latency: preparing the data failed (run `make bench` from the "
                        "repository root)\n");
        free(db);
        return NULL;
    }
    return db;
}

static const char *const TASKS[] = {"classify", "refine", "embed", "facets", "theme",
                                    "canonicalize", "review", "story"};
#define NTASKS (sizeof TASKS / sizeof TASKS[0])

/* Prints the phases' first sightings as current_phase, each task's window, and the
 * whole run against the physical ideal and the sum of per-phase ideals. */
/* Where the run's wall time went around the requests: from the spawn to the first
 * request's arrival, from there to the last answer's release, and on to the exit, all
 * in ms since the spawn (the fake's clock is CLOCK_MONOTONIC too: its stats say where
 * its clock stood when they were read, stats_at ms after the spawn). In between, how
 * busy the slots were: the fake's requests in flight integrated over time, against
 * the concurrency over that stretch. */
static void print_span(const options *o, json_t *stats, int64_t end, int64_t stats_at) {
    json_t *tasks = jx_obj(stats, "tasks");
    int64_t first = -1, last = -1;
    for (size_t i = 0; i < NTASKS; i++) {
        json_t *t = jx_obj(tasks, TASKS[i]);
        if (!t) continue;
        int64_t f = jx_int(t, "first_ms", -1), l = jx_int(t, "last_ms", -1);
        if (f >= 0 && (first < 0 || f < first)) first = f;
        if (l > last) last = l;
    }
    int64_t busy_us = jx_int(stats, "busy_request_us", 0);
    if (first < 0 || last <= first || busy_us <= 0) return;
    int64_t shift = stats_at - jx_int(stats, "now_ms", 0); /* fake ms -> ms since spawn */
    double span_ms = (double)(last - first);
    printf("  first request at %lld ms, last answer at %lld ms, exit at %lld ms; in "
           "between the slots were busy %.1f%% (%.0f request-ms of %ld x %.0f ms)\n",
           (long long)(first + shift), (long long)(last + shift), (long long)end,
           100.0 * (double)busy_us / 1000.0 / ((double)o->concurrency * span_ms),
           (double)busy_us / 1000.0, o->concurrency, span_ms);
}

static void report(const options *o, json_t *stats, const run_record *r, const int64_t start[NPHASES],
                   int64_t end) {
    printf("  current_phase first seen at:");
    for (size_t i = 0; i < NPHASES; i++)
        if (start[i] >= 0) printf(" %s %lld ms", PHASES[i].phase, (long long)start[i]);
    printf("\n");
    json_t *tasks = jx_obj(stats, "tasks");
    int64_t t0 = -1;
    for (size_t i = 0; i < NTASKS; i++) {
        json_t *t = jx_obj(tasks, TASKS[i]);
        int64_t f = t ? jx_int(t, "first_ms", -1) : -1;
        if (f >= 0 && (t0 < 0 || f < t0)) t0 = f;
    }
    for (size_t i = 0; i < NTASKS; i++) {
        json_t *t = jx_obj(tasks, TASKS[i]);
        if (!t) continue;
        int64_t f = jx_int(t, "first_ms", 0) - t0, l = jx_int(t, "last_ms", 0) - t0;
        printf("  %-13s %6lld requests  from %7lld ms to %7lld ms (%lld ms)\n", TASKS[i],
               (long long)jx_int(t, "requests", 0), (long long)f, (long long)l,
               (long long)(l - f));
    }
    double ideal_sum = 0;
    for (size_t i = 0; i < NPHASES; i++) {
        int64_t reqs = task_count(stats, PHASES[i].tasks[0]) + task_count(stats, PHASES[i].tasks[1]);
        if (i == NPHASES - 1) reqs += task_count(stats, "review");
        ideal_sum += ceil_rounds(reqs, o->concurrency) * (double)o->latency;
    }
    int64_t requests = jx_int(stats, "requests", 0);
    double physical = (double)requests * (double)o->latency / (double)o->concurrency;
    if (r)
        printf("  %lld themes; %lld new-signature proposals canonicalised in %lld requests (at "
               "most %lld in one)\n",
               (long long)(r->themes_extracted + r->themes_filtered + r->themes_failed),
               (long long)jx_int(stats, "canonicalize_proposals", 0),
               (long long)task_count(stats, "canonicalize"),
               (long long)jx_int(stats, "canonicalize_max_proposals", 0));
    printf("  whole run %.0f ms; physical ideal (%lld requests x %ld ms / %ld) %.0f ms, ratio "
           "%.3f; sum of phase ideals %.0f ms, ratio %.3f\n",
           (double)end, (long long)requests, o->latency, o->concurrency, physical,
           (double)end / physical, ideal_sum, (double)end / ideal_sum);
    /* No schedule beats this. Every request takes the latency, so a slot has answered
     * at most k requests after k latencies: the per-conversation requests take at least
     * ceil(n / concurrency) rounds (the physical ideal counts the last round's fraction
     * only). The story phase needs every theme, so its requests (at best all at once)
     * follow in ceil(m / concurrency) rounds more. */
    int64_t story = task_count(stats, "review") + task_count(stats, "story");
    double floor_ms = (ceil_rounds(requests - story, o->concurrency) +
                       ceil_rounds(story, o->concurrency)) * (double)o->latency;
    printf("  floor (whole rounds, the story phase after every theme) %.0f ms (ratio %.3f to "
           "the ideal); run / floor %.3f\n", floor_ms, floor_ms / physical, (double)end / floor_ms);
    printf("  fake: %lld requests, max in flight %lld; answers released %.2f ms late on "
           "average (at most %.1f ms): its one thread was busy\n",
           (long long)jx_int(stats, "requests", 0), (long long)jx_int(stats, "max_in_flight", 0),
           (double)jx_int(stats, "late_mean_us", 0) / 1000.0,
           (double)jx_int(stats, "late_max_us", 0) / 1000.0);
    print_reuse_gaps(stats);
    if (r) /* the endpoint's prompt-prefix cache (the run's usage, chat and embeddings) */
        printf("  prompt tokens %lld, %lld served from the endpoint's prefix cache (%.1f%%), "
               "cost $%.4f\n", (long long)r->prompt_tokens, (long long)r->cached_tokens,
               r->prompt_tokens ? 100.0 * (double)r->cached_tokens / (double)r->prompt_tokens : 0.0,
               r->cost_usd);
}

static const char USAGE[] =
    "usage: llm_latency [--conversations N] [--latency-ms N] [--concurrency 1..512] [--seed S]\n";

int main(int argc, char **argv) {
    if (bench_help(argc, argv, USAGE)) return 0;
    options o = {2000, 200, 20, 20260125};
    if (parse_args(argc, argv, &o) != 0) {
        return bench_usage_error(USAGE);
    }
    char *dir = fx_tmpdir();
    char *db = prepare_db(dir, &o);
    char lat[32];
    snprintf(lat, sizeof lat, "%ld", o.latency);
    const char *fargs[] = {"--vocab", "data/theme_vocabulary.json", "--latency-ms", lat, NULL};
    fakeproc fp;
    if (!db || fakeproc_start(&fp, "fake_openai", fargs) != 0) return 1;
    char *env_url = xasprintf("OPENAI_BASE_URL=%s/v1", fp.url), *log = xasprintf("%s/run.log", dir);
    char *env[] = {env_url, "OPENAI_API_KEY=bench", "FEEDLINE_VOCAB=data/theme_vocabulary.json", NULL};
    char conc[32];
    snprintf(conc, sizeof conc, "%ld", o.concurrency);
    char *run[] = {"build/feedline", "run", "--db", db, "--llm", "openai", "--concurrency", conc, NULL};
    int64_t t0 = mono_ms(), start[NPHASES], end;
    int rc = watch(fakeproc_spawn(run, env, log), db, t0, start, &end);
    json_t *stats = fakeproc_stats(&fp);
    int64_t stats_at = mono_ms() - t0;
    store *st = fx_store_open(db);
    run_record r;
    int found = store_run_get(st, 1, &r) == STORE_FOUND;
    printf("%ld conversations, fake latency %ld ms, concurrency %ld: run %s in %.2f s (exit %d)\n",
           o.conversations, o.latency, o.concurrency, found ? r.status : "?", (double)end / 1000, rc);
    report(&o, stats, found ? &r : NULL, start, end);
    print_span(&o, stats, end, stats_at);
    if (found) run_record_free(&r);
    store_close(st);
    json_decref(stats);
    fakeproc_stop(&fp);
    fx_rmtree(dir);
    free(env_url);
    free(db);
    free(log);
    free(dir);
    return rc == 0 ? 0 : 1;
}
