/* The worker loop (pipeline_worker, see pipeline.h): a process that joins the active
 * run of a shared database and helps with its per-conversation phases.
 *
 * Each turn looks at the database only: the active run, its current phase, whether
 * anything is claimable in the phases it would work on (every per-conversation phase
 * when the run streams, else the current one). When there is, the generic engine runs
 * them in helper mode (it claims batches under this process's name, keeps its leases
 * alive, writes results and returns as soon as nothing is left to claim); then the
 * worker looks again at once. Otherwise it sleeps idle_ms. Nothing about the run is
 * kept in memory between turns except the LLM provider, which lives as long as the
 * run does (its response cache and rate limiter carry over from phase to phase). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pipeline/engine.h"
#include "util/log.h"
#include "util/timeutil.h"

#define DEFAULT_IDLE_MS 500
/* After leaving a phase, the run's next phase is seconds away at most (the driver
 * waits for the last batches, then seeds it): look more often for a while, so a
 * worker does not arrive up to idle_ms late into every phase. */
#define EAGER_IDLE_MS 100
#define EAGER_WINDOW_MS 10000
#define FAILURE_BACKOFF_FIRST_MS 1000
#define FAILURE_BACKOFF_MAX_MS 30000
#define STOP_CHECK_SLICE_MS 50

typedef enum { TURN_WORKED, TURN_IDLE, TURN_NO_RUN } turn_result;

typedef struct worker {
    run_env env; /* the caller's, with helper = 1 */
    worker_options opt;
    store *st;
    llm_provider *llm;
    int64_t llm_run; /* the run the provider was made for */
    int64_t backoff_ms, retry_at_ms;
    int64_t eager_until_ms; /* look every EAGER_IDLE_MS until then */
    int64_t noted_run;   /* the last run we logged a reason to stay out of */
    char noted_why[64];
} worker;

static int stop_requested(const worker *w) { return atomic_load(w->env.stop_flag) != 0; }

/* The per-conversation phases a worker may help with. */
static const phase_ops *phase_ops_of(int phase) {
    switch (phase) {
    case PHASE_CLASSIFICATION: return &CLASSIFY_OPS;
    case PHASE_EMBEDDINGS: return &EMBED_OPS;
    case PHASE_FACETS: return &FACETS_OPS;
    case PHASE_THEMES: return &THEMES_OPS;
    default: return NULL;
    }
}

static void drop_provider(worker *w) {
    if (w->llm && w->env.make_provider && w->env.provider_done)
        w->env.provider_done(w->env.provider_ctx, w->llm);
    if (w->llm) llm_provider_destroy(w->llm);
    w->llm = NULL;
    w->llm_run = 0;
}

/* Says once per run and reason why this worker stays out of it (operators wonder). */
static void note(worker *w, int64_t run, const char *why) {
    if (w->noted_run == run && !strcmp(w->noted_why, why)) return;
    w->noted_run = run;
    snprintf(w->noted_why, sizeof w->noted_why, "%s", why);
    log_info("worker %s: run %lld: %s", w->env.owner, (long long)run, why);
}

static void failed_turn(worker *w) {
    w->backoff_ms = w->backoff_ms ? w->backoff_ms * 2 : FAILURE_BACKOFF_FIRST_MS;
    if (w->backoff_ms > FAILURE_BACKOFF_MAX_MS) w->backoff_ms = FAILURE_BACKOFF_MAX_MS;
    w->retry_at_ms = mono_ms() + w->backoff_ms;
}

static int ensure_provider(worker *w, const run_record *run);

/* The phases to work on: all per-conversation ones when the run streams (the driver
 * decides the same way), else the current one. */
static size_t lanes_of(const worker *w, const run_record *run, const phase_ops *ops,
                       const phase_ops **lanes) {
    if (!pipeline_streams(&w->env, w->llm)) {
        lanes[0] = ops;
        return 1;
    }
    lanes[0] = &CLASSIFY_OPS;
    if (run->dry_run) {
        lanes[1] = &THEMES_OPS;
        return 2;
    }
    lanes[1] = &EMBED_OPS;
    lanes[2] = &FACETS_OPS;
    lanes[3] = &THEMES_OPS;
    return 4;
}

/* NULL when the run is one to help with now (*n lanes set), else why not. */
static const char *why_not_join(worker *w, const run_record *run, const phase_ops *ops,
                                const phase_ops **lanes, size_t *n) {
    if (strcmp(run->status, "running") != 0) return "stopping";
    if (run->dry_run) return "a dry run (its driver does it alone)";
    if (w->opt.llm && strcmp(w->opt.llm, run->llm) != 0) return "uses another LLM provider";
    if (!ops) return "not in a per-conversation phase";
    if (run->heartbeat_at < wall_unix() - RUN_STALE_SECONDS)
        return "its driver has no recent heartbeat (nobody would advance it)";
    if (mono_ms() < w->retry_at_ms) return "waiting after a failure";
    if (ensure_provider(w, run) != 0) {
        failed_turn(w);
        return "cannot create the LLM provider";
    }
    *n = lanes_of(w, run, ops, lanes);
    int any = 0;
    for (size_t i = 0; i < *n && !any; i++) {
        int claimable = 0;
        int64_t claimed = 0;
        if (store_work_probe(w->st, run->id, lanes[i]->phase, wall_unix(), &claimable,
                             &claimed) != STORE_OK) {
            log_warn("worker %s: run %lld: %s", w->env.owner, (long long)run->id,
                     store_errmsg(w->st));
            return "the database did not answer";
        }
        any = claimable;
    }
    if (!any) return *n > 1 ? "nothing to claim" : "nothing to claim in this phase";
    return NULL;
}

static int ensure_provider(worker *w, const run_record *run) {
    if (w->llm && w->llm_run == run->id) return 0;
    drop_provider(w);
    char err[512] = "";
    /* Made for this process's concurrency, not the driver's (help_with). */
    run_record mine = *run;
    if (w->opt.concurrency > 0) mine.concurrency = w->opt.concurrency;
    if (w->env.make_provider)
        w->llm = w->env.make_provider(w->env.provider_ctx, &mine, w->st, err, sizeof err);
    else
        w->llm = llm_local_new(w->env.vocab);
    if (!w->llm) {
        log_error("worker %s: run %lld: cannot create the LLM provider: %s", w->env.owner,
                  (long long)run->id, err[0] ? err : "unknown error");
        return -1;
    }
    w->llm_run = run->id;
    return 0;
}

static turn_result help_with(worker *w, run_record *run, const phase_ops *const *lanes,
                             size_t n) {
    /* This process's concurrency, not the driver's, bounds what it keeps in flight. */
    if (w->opt.concurrency > 0) run->concurrency = w->opt.concurrency;
    const char *what = n > 1 ? "the streaming phases" : run_phase_name(lanes[0]->phase);
    log_info("worker %s: run %lld: joining %s", w->env.owner, (long long)run->id, what);
    w->noted_run = 0;
    char err[512] = "";
    int rc = engine_run(&w->env, w->st, w->llm, run, lanes, n, err, sizeof err);
    if (rc < 0) {
        /* The run is not ours to fail: our claims were released for the others, and
         * the driver sees the same failure if it is not ours alone. */
        log_warn("worker %s: run %lld: %s: %s", w->env.owner, (long long)run->id, what, err);
        drop_provider(w); /* a provider that failed fatally refuses further calls */
        failed_turn(w);
        return TURN_IDLE;
    }
    w->backoff_ms = 0;
    w->eager_until_ms = mono_ms() + EAGER_WINDOW_MS;
    return TURN_WORKED;
}

static turn_result turn(worker *w) {
    int64_t id = 0;
    char status[16] = "";
    int rc = store_run_active(w->st, &id, status);
    if (rc == STORE_NOTFOUND) {
        drop_provider(w);
        return TURN_NO_RUN;
    }
    if (rc != STORE_FOUND) {
        log_warn("worker %s: looking for the active run: %s", w->env.owner, store_errmsg(w->st));
        return TURN_IDLE;
    }
    run_record run;
    if (store_run_get(w->st, id, &run) != STORE_FOUND) return TURN_IDLE;
    if (w->llm && w->llm_run != run.id) drop_provider(w);
    const phase_ops *ops = phase_ops_of(run_phase_from_name(run.current_phase));
    const phase_ops *lanes[PHASE_COUNT];
    size_t n = 0;
    const char *why = why_not_join(w, &run, ops, lanes, &n);
    turn_result out = TURN_IDLE;
    if (why) note(w, run.id, why);
    else out = help_with(w, &run, lanes, n);
    run_record_free(&run);
    return out;
}

static void idle(const worker *w) {
    int64_t now = mono_ms();
    int64_t wait = now < w->eager_until_ms && w->opt.idle_ms > EAGER_IDLE_MS ? EAGER_IDLE_MS
                                                                              : w->opt.idle_ms;
    int64_t until = now + wait;
    while (!stop_requested(w) && mono_ms() < until) sleep_ms(STOP_CHECK_SLICE_MS);
}

int pipeline_worker(const run_env *env, const worker_options *o, char *err, size_t errlen) {
    if (!env->stop_flag || !env->owner || !env->owner[0]) {
        snprintf(err, errlen, "a worker needs a stop flag and an owner name");
        return -1;
    }
    worker w;
    memset(&w, 0, sizeof w);
    w.env = *env;
    w.env.helper = 1;
    w.opt = *o;
    if (w.opt.idle_ms <= 0) w.opt.idle_ms = DEFAULT_IDLE_MS;
    if (store_open(env->db_url, &w.st, err, errlen) != STORE_OK) return -1;
    log_info("worker %s: watching for runs (lease %d s)", env->owner, pipeline_lease_seconds(env));
    while (!stop_requested(&w)) {
        turn_result r = turn(&w);
        if (r == TURN_NO_RUN && w.opt.once) break;
        if (r != TURN_WORKED) idle(&w);
    }
    drop_provider(&w);
    store_close(w.st);
    return 0;
}
