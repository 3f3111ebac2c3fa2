/* scaleout — throughput of a run spread over processes on one PostgreSQL database: the
 * driver (`feedline run`) plus N-1 `feedline worker` processes, every process with
 * the same concurrency against one fake endpoint with a fixed latency. "N processes"
 * counts the driver: N = 1 is a plain single-process run.
 *
 *   scaleout [--conversations 2000] [--latency-ms 200] [--concurrency 20]
 *            [--processes 1,2,4] [--seed S] [--pg URL]
 *   scaleout --kill [--rounds 3] --conversations 300 --latency-ms 100 --processes 3
 *
 * For each N: a fresh database with the same generated conversations (the realistic
 * mix of tests/support/convgen), a fresh fake_openai, then the run without stories.
 * The database is sampled every 20 ms for each phase's finished items. A phase's
 * throughput is its steady state: items finished between 10% and 90% of the phase,
 * divided by the time between those two moments (it leaves out the workers' start
 * and the phase's tail, where the last batches run on fewer processes). The wall time
 * of each phase, start to end, is printed too. Ratios are to N = 1.
 *
 * --kill measures what a dead worker costs: for the one N of --processes (at least 2),
 * the run without a kill, then the same run with the first worker killed (SIGKILL)
 * 3 s after the driver started, or at a third of the no-kill run's wall time when
 * that run took under 3 s (the output says which). It prints both wall times and
 * their ratio, per round and the medians over --rounds pairs. The processes get the
 * bench's own environment, so FEEDLINE_LEASE_SECONDS set there applies to all.
 *
 * Without --pg a throwaway cluster is started with scripts/pg-test-cluster. Run from
 * the repository root after `make bench`. */
#include "bench.h"
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "store/store.h"
#include "support/convgen.h"
#include "support/dataset.h"
#include "support/fakeproc.h"
#include "support/fixtures.h"
#include "util/jsonx.h"
#include "util/mem.h"
#include "util/timeutil.h"

#define MAX_PROCS 16
#define SAMPLE_MS 20
#define MAX_ROUNDS 15
/* --kill: the kill comes this long after the driver started, or at a third of the
 * no-kill run when that is shorter (a kill after the run ended measures nothing). */
#define KILL_AT_MS 3000

typedef struct options {
    long conversations, latency, concurrency;
    int procs[8], nprocs;
    uint64_t seed;
    const char *pg;
    int kill;
    long rounds;
} options;

/* The phases measured, and the fake's tasks that serve them. */
static const struct {
    enum run_phase phase;
    const char *label;
} PHASES[] = {
    {PHASE_CLASSIFICATION, "classification"},
    {PHASE_FACETS, "facets"},
    {PHASE_THEMES, "themes"},
};
#define NPHASES (sizeof PHASES / sizeof PHASES[0])

typedef struct phase_result {
    int64_t items;
    int64_t first_ms, last_ms; /* first and last sample with progress in the phase */
    int64_t t10_ms, t90_ms;
    double steady_per_s;
} phase_result;

typedef struct result {
    int procs;
    int exit_code;
    int64_t total_ms;
    int64_t kill_at_ms;    /* --kill: when the first worker was killed (-1: not) */
    int64_t killed_claims; /* items claimed in the run's phase at that moment */
    phase_result ph[NPHASES];
    int64_t requests, max_in_flight;
} result;

static int parse_procs(const char *s, options *o) {
    o->nprocs = 0;
    for (const char *p = s; *p && o->nprocs < 8;) {
        char *end;
        long n = strtol(p, &end, 10);
        if (end == p || n < 1 || n > MAX_PROCS) return -1;
        o->procs[o->nprocs++] = (int)n;
        p = *end == ',' ? end + 1 : end;
        if (*end && *end != ',') return -1;
    }
    return o->nprocs > 0 ? 0 : -1;
}

static int parse_args(int argc, char **argv, options *o) {
    static const struct option lo[] = {{"conversations", required_argument, NULL, 'n'},
                                       {"latency-ms", required_argument, NULL, 'l'},
                                       {"concurrency", required_argument, NULL, 'c'},
                                       {"processes", required_argument, NULL, 'p'},
                                       {"seed", required_argument, NULL, 's'},
                                       {"pg", required_argument, NULL, 'g'},
                                       {"kill", no_argument, NULL, 'k'},
                                       {"rounds", required_argument, NULL, 'r'},
                                       {0}};
    int c;
    while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        if (c == 'n') o->conversations = atol(optarg);
        else if (c == 'l') o->latency = atol(optarg);
        else if (c == 'c') o->concurrency = atol(optarg);
        else if (c == 'p') {
            if (parse_procs(optarg, o)) return -1;
        } else if (c == 's') o->seed = strtoull(optarg, NULL, 10);
        else if (c == 'g') o->pg = optarg;
        else if (c == 'k') o->kill = 1;
        else if (c == 'r') o->rounds = atol(optarg);
        else return -1;
    }
    if (o->kill && (o->nprocs != 1 || o->procs[0] < 2)) return -1; /* one N, with a worker */
    return o->conversations >= 1 && o->latency >= 1 && o->concurrency >= 1 &&
                   o->concurrency <= 512 && o->rounds >= 1 && o->rounds <= MAX_ROUNDS
               ? 0
               : -1;
}

static int write_conversations(const char *path, const options *o) {
    convgen_options co;
    convgen_options_default(&co);
    co.count = (size_t)o->conversations;
    return ds_write_jsonl_to(path, (size_t)o->conversations, o->seed, &co);
}

/* scripts/pg-test-cluster ACTION DIR; the first line it prints in out (may be NULL). */
static int cluster(const char *action, const char *dir, char *out, size_t outlen) {
    char *cmd = xasprintf("scripts/pg-test-cluster %s %s", action, dir);
    FILE *f = popen(cmd, "r");
    free(cmd);
    if (!f) return -1;
    char line[512] = "";
    if (!fgets(line, sizeof line, f)) line[0] = '\0';
    line[strcspn(line, "\n")] = '\0';
    if (out) snprintf(out, outlen, "%s", line);
    return pclose(f) == 0 ? 0 : -1;
}

static int64_t active_run(store *st) {
    int64_t id = 0;
    char status[16];
    return store_run_active(st, &id, status) == STORE_FOUND ? id : 0;
}

/* Records a phase's progress from one sample taken t ms into the run. */
static void sample_phase(phase_result *p, const work_counts *c, int64_t t) {
    int64_t total = c->pending + c->claimed + c->done + c->failed;
    int64_t fin = c->done + c->failed;
    if (total == 0) return;
    p->items = total;
    if (p->first_ms < 0 && c->pending < total) p->first_ms = t; /* work was taken */
    if (p->t10_ms < 0 && fin * 10 >= total) p->t10_ms = t;
    if (p->t90_ms < 0 && fin * 10 >= total * 9) p->t90_ms = t;
    if (p->last_ms < 0 && fin == total) p->last_ms = t;
}

/* Items claimed (by anyone) in the phases measured, at one moment. */
static int64_t claimed_now(store *st, int64_t run) {
    int64_t n = 0;
    for (size_t i = 0; st && run && i < NPHASES; i++) {
        work_counts c;
        if (store_work_counts(st, run, PHASES[i].phase, &c) == STORE_OK) n += c.claimed;
    }
    return n;
}

/* Samples the run until the driver exits; kills `victim` (when > 0) with SIGKILL
 * kill_at ms into the run. */
static int watch(pid_t driver, const char *db, int64_t t0, pid_t victim, int64_t kill_at,
                 result *r) {
    store *st = NULL;
    char err[256];
    int64_t run = 0;
    for (size_t i = 0; i < NPHASES; i++)
        r->ph[i].first_ms = r->ph[i].last_ms = r->ph[i].t10_ms = r->ph[i].t90_ms = -1;
    int rc;
    while ((rc = fakeproc_wait(driver, 0)) == -2) {
        if (!st && store_open(db, &st, err, sizeof err) != STORE_OK) st = NULL;
        if (st && !run) run = active_run(st);
        int64_t t = mono_ms() - t0;
        if (victim > 0 && r->kill_at_ms < 0 && t >= kill_at) {
            r->killed_claims = claimed_now(st, run);
            if (kill(victim, SIGKILL) == 0) r->kill_at_ms = t;
            else perror("scaleout: kill");
        }
        for (size_t i = 0; st && run && i < NPHASES; i++) {
            work_counts c;
            if (store_work_counts(st, run, PHASES[i].phase, &c) != STORE_OK) continue;
            sample_phase(&r->ph[i], &c, t);
        }
        sleep_ms(SAMPLE_MS);
    }
    r->total_ms = mono_ms() - t0;
    for (size_t i = 0; i < NPHASES; i++) {
        phase_result *p = &r->ph[i];
        if (p->last_ms < 0) p->last_ms = r->total_ms;
        double span = (double)(p->t90_ms - p->t10_ms) / 1000.0;
        p->steady_per_s = p->t10_ms >= 0 && p->t90_ms > p->t10_ms
                              ? 0.8 * (double)p->items / span
                              : 0;
    }
    if (st) store_close(st);
    return rc;
}

static int import_into(const char *db, const char *jsonl) {
    char *imp[] = {"build/feedline", "import", "--db", (char *)db, (char *)jsonl, NULL};
    return fx_run(imp, NULL, NULL, NULL);
}

/* One run over procs processes; with kill_at >= 0 the first worker is killed then. */
static int measure(const options *o, const char *jsonl, const char *dir, int procs,
                   int64_t kill_at, result *r) {
    memset(r, 0, sizeof *r);
    r->procs = procs;
    r->kill_at_ms = -1;
    char *db = fx_db_url(); /* a fresh database on FEEDLINE_TEST_PG */
    if (import_into(db, jsonl) != 0) {
        fprintf(stderr, "scaleout: import failed\n");
        free(db);
        return -1;
    }
    char lat[32], conc[32];
    snprintf(lat, sizeof lat, "%ld", o->latency);
    snprintf(conc, sizeof conc, "%ld", o->concurrency);
    const char *fargs[] = {"--vocab", "data/theme_vocabulary.json", "--latency-ms", lat, NULL};
    fakeproc fp;
    if (fakeproc_start(&fp, "fake_openai", fargs) != 0) {
        free(db);
        return -1;
    }
    char *env_url = xasprintf("OPENAI_BASE_URL=%s/v1", fp.url);
    char *env[] = {env_url, "OPENAI_API_KEY=bench", "FEEDLINE_VOCAB=data/theme_vocabulary.json",
                   NULL};
    char *log = xasprintf("%s/driver-%d%s.log", dir, procs, kill_at >= 0 ? "-kill" : "");
    char *run[] = {"build/feedline", "run", "--db", db, "--llm", "openai", "--concurrency", conc,
                   "--no-stories", NULL};
    int64_t t0 = mono_ms();
    pid_t driver = fakeproc_spawn(run, env, log);
    pid_t workers[MAX_PROCS];
    int nworkers = 0;
    /* Workers join once the run exists (as an operator would start them). */
    store *st = fx_store_open(db);
    while (!active_run(st) && fakeproc_wait(driver, 0) == -2) sleep_ms(5);
    store_close(st);
    for (int i = 1; i < procs; i++) {
        char *wlog = xasprintf("%s/worker-%d-%d.log", dir, procs, i);
        char *w[] = {"build/feedline", "worker", "--db", db, "--once", "--concurrency", conc, NULL};
        workers[nworkers++] = fakeproc_spawn(w, env, wlog);
        free(wlog);
    }
    r->exit_code = watch(driver, db, t0, kill_at >= 0 && nworkers > 0 ? workers[0] : 0, kill_at, r);
    for (int i = 0; i < nworkers; i++)
        if (fakeproc_wait(workers[i], 20000) == -2) kill(workers[i], SIGTERM);
    json_t *stats = fakeproc_stats(&fp);
    r->requests = jx_int(stats, "requests", 0);
    r->max_in_flight = jx_int(stats, "max_in_flight", 0);
    json_decref(stats);
    fakeproc_stop(&fp);
    free(env_url);
    free(log);
    free(db);
    return 0;
}

static void print_result(const result *r, const result *base) {
    printf("%9d  %6.1f s  exit %d  %5lld requests  max in flight %3lld\n", r->procs,
           (double)r->total_ms / 1000, r->exit_code, (long long)r->requests,
           (long long)r->max_in_flight);
    for (size_t i = 0; i < NPHASES; i++) {
        const phase_result *p = &r->ph[i];
        double wall = p->first_ms >= 0 ? (double)(p->last_ms - p->first_ms) / 1000 : 0;
        double bwall = base->ph[i].first_ms >= 0
                           ? (double)(base->ph[i].last_ms - base->ph[i].first_ms) / 1000
                           : 0;
        printf("           %-15s %5lld items  steady %7.1f items/s (x%.2f)  phase %6.2f s (x%.2f)\n",
               PHASES[i].label, (long long)p->items, p->steady_per_s,
               base->ph[i].steady_per_s > 0 ? p->steady_per_s / base->ph[i].steady_per_s : 0,
               wall, wall > 0 ? bwall / wall : 0);
    }
    fflush(stdout);
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, long n) {
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* --kill: rounds of (run without a kill, run with the first worker killed). */
static int kill_rounds(const options *o, const char *jsonl, const char *dir) {
    const char *lease = getenv("FEEDLINE_LEASE_SECONDS");
    printf("%d processes (the driver + %d workers), FEEDLINE_LEASE_SECONDS=%s; "
           "worker 1 killed with SIGKILL %d s into the run, or at 1/3 of the no-kill "
           "run when it took under %d s\n",
           o->procs[0], o->procs[0] - 1, lease && *lease ? lease : "(unset: the default)",
           KILL_AT_MS / 1000, KILL_AT_MS / 1000);
    printf("round  no kill    kill   killed at  claims then  ratio\n");
    double clean[MAX_ROUNDS], killed[MAX_ROUNDS], ratio[MAX_ROUNDS];
    for (long i = 0; i < o->rounds; i++) {
        result a, b;
        if (measure(o, jsonl, dir, o->procs[0], -1, &a) != 0) return 1;
        int64_t at = a.total_ms > KILL_AT_MS ? KILL_AT_MS : a.total_ms / 3;
        if (measure(o, jsonl, dir, o->procs[0], at, &b) != 0) return 1;
        clean[i] = (double)a.total_ms / 1000;
        killed[i] = (double)b.total_ms / 1000;
        ratio[i] = killed[i] / clean[i];
        printf("%5ld  %6.2f s  %6.2f s  %6.2f s%s  %11lld  %5.2f%s\n", i + 1, clean[i],
               killed[i], (double)b.kill_at_ms / 1000, at < KILL_AT_MS ? " (1/3)" : "      ",
               (long long)b.killed_claims, ratio[i],
               a.exit_code || b.exit_code ? "  (a run failed: see its driver log)" : "");
        fflush(stdout);
        if (b.kill_at_ms < 0) printf("       the driver ended before the kill: nothing killed\n");
    }
    double mc = median(clean, o->rounds), mk = median(killed, o->rounds);
    printf("median %6.2f s  %6.2f s  ratio of medians %.2f, median ratio %.2f\n", mc, mk,
           mk / mc, median(ratio, o->rounds));
    return 0;
}

static const char USAGE[] =
    "usage: scaleout [--conversations N] [--latency-ms N] [--concurrency 1..512] "
    "[--processes 1,2,4] [--seed S] [--pg URL]\n"
    "       scaleout --kill [--rounds 1..15] [--processes N (one, >= 2)] [same options]\n";

int main(int argc, char **argv) {
    if (bench_help(argc, argv, USAGE)) return 0;
    options o = {2000, 200, 20, {1, 2, 4}, 3, 20260125, NULL, 0, 1};
    if (parse_args(argc, argv, &o) != 0) {
        return bench_usage_error(USAGE);
    }
    char cluster_dir[] = "/tmp/feedline-bench-pg.XXXXXX";
    char started[512] = "";
    if (!o.pg) {
        if (!mkdtemp(cluster_dir) || cluster("start", cluster_dir, started, sizeof started)) {
            fprintf(stderr, "scaleout: could not start a PostgreSQL cluster; pass --pg URL\n");
            return 1;
        }
        o.pg = started;
    }
    setenv("FEEDLINE_TEST_PG", o.pg, 1); /* fx_db_url() makes each database there */
    char *dir = fx_tmpdir();
    char *jsonl = xasprintf("%s/conversations.jsonl", dir);
    int rc = write_conversations(jsonl, &o);
    printf("%ld conversations, fake latency %ld ms, concurrency %ld per process; "
           "N processes = the driver + N-1 workers\n",
           o.conversations, o.latency, o.concurrency);
    if (o.kill) {
        if (rc == 0) rc = kill_rounds(&o, jsonl, dir);
        o.nprocs = 0; /* the throughput table is not this mode's */
    } else {
        printf("processes  run      exit  requests   fake\n");
    }
    result base;
    memset(&base, 0, sizeof base);
    for (int i = 0; rc == 0 && i < o.nprocs; i++) {
        result r;
        if (measure(&o, jsonl, dir, o.procs[i], -1, &r) != 0) {
            rc = 1;
            break;
        }
        if (i == 0) base = r;
        print_result(&r, &base);
    }
    free(jsonl);
    fx_rmtree(dir);
    free(dir);
    if (started[0] && cluster("stop", cluster_dir, NULL, 0))
        fprintf(stderr, "scaleout: stopping the cluster in %s failed\n", cluster_dir);
    return rc;
}
