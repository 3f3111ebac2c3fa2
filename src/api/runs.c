/* The jobs this server process drives — pipeline runs it started or resumed, and
 * create-stories jobs — each on its own thread, so no HTTP request ever waits for
 * pipeline work; plus a ticker thread that keeps their heartbeats fresh, joins finished
 * threads and recovers runs whose process died.
 *
 * The database stays the source of truth: start and resume are atomic transitions in
 * the runs table (one active run per database, across processes); this file only keeps
 * the thread handles, the in-process stop flags (a fast path next to the database stop
 * request the engine polls) and the live LLM providers for /metrics.
 *
 * State: at most API_MAX_JOBS job slots, guarded by mu (slot fields, live providers,
 * LLM totals); stop/finished flags are atomics the job threads read without the lock.
 * A slot is reserved under the lock before any database work, so two requests can
 * never start jobs that exclude each other in this process. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "api/api_internal.h"
#include "util/log.h"
#include "util/mem.h"
#include "util/timeutil.h"

/* The ticker's period; heartbeats must come at least every RUN_HEARTBEAT_SECONDS. */
#define TICK_MS 1000
/* How often runs of dead processes are looked for. */
#define SWEEP_MS 2000
/* Niceness of job threads: under CPU contention the HTTP workers win. */
#define JOB_NICENESS 10

typedef enum { JOB_RUN = 0, JOB_STORIES = 1 } job_kind;

typedef struct job {
    int used;           /* reserved (under mu) */
    int launched;       /* its thread exists and must be joined (under mu) */
    job_kind kind;
    int64_t run_id;
    pthread_t thread;
    atomic_int stop;    /* run_env.stop_flag */
    atomic_int finished;/* the thread is done (join it) */
    llm_provider *llm;  /* live provider while the job runs (under mu) */
    run_env env;
    api_runs *m;
} job;

struct api_runs {
    pthread_mutex_t mu;
    pthread_cond_t cv;      /* job finished, or quit (CLOCK_MONOTONIC) */
    job jobs[API_MAX_JOBS];
    char *db_url;
    const vocab *vocab;
    provider_factory make;
    void *make_ctx;
    char *owner;
    api_llm_totals done;    /* counters of providers already released */
    api_metrics *metrics;
    pthread_t ticker;
    int ticker_started;
    int quit;
    int stopping_all;
};

/* ------------------------------------------------------------------ providers */

static void add_stats(api_llm_totals *t, const llm_stats *s) {
    t->requests += atomic_load(&s->requests);
    t->retries += atomic_load(&s->retries);
    t->rate_limited += atomic_load(&s->rate_limited);
    t->failures += atomic_load(&s->failures);
    t->cache_hits += atomic_load(&s->cache_hits);
    t->prompt_tokens += atomic_load(&s->prompt_tokens);
    t->cached_tokens += atomic_load(&s->cached_tokens);
    t->completion_tokens += atomic_load(&s->completion_tokens);
}

static llm_provider *job_make_provider(void *ctx, const run_record *run, store *st, char *err,
                                       size_t errlen) {
    job *j = ctx;
    llm_provider *p = j->m->make(j->m->make_ctx, run, st, err, errlen);
    if (p) {
        pthread_mutex_lock(&j->m->mu);
        j->llm = p;
        pthread_mutex_unlock(&j->m->mu);
    }
    return p;
}

static void job_provider_done(void *ctx, llm_provider *p) {
    job *j = ctx;
    pthread_mutex_lock(&j->m->mu);
    add_stats(&j->m->done, &p->stats);
    if (j->llm == p) j->llm = NULL;
    pthread_mutex_unlock(&j->m->mu);
}

void api_runs_llm_totals(api_runs *m, api_llm_totals *out) {
    pthread_mutex_lock(&m->mu);
    *out = m->done;
    out->in_flight = 0;
    out->jobs_active = 0;
    for (size_t i = 0; i < API_MAX_JOBS; i++) {
        job *j = &m->jobs[i];
        if (j->used && !atomic_load(&j->finished)) out->jobs_active++;
        if (!j->llm) continue;
        add_stats(out, &j->llm->stats);
        out->in_flight += atomic_load(&j->llm->stats.in_flight);
    }
    pthread_mutex_unlock(&m->mu);
}

/* ------------------------------------------------------------------ job threads */

static void *job_main(void *arg) {
    job *j = arg;
    /* Per-thread niceness (Linux): pipeline work yields the CPU to request handling. */
    if (setpriority(PRIO_PROCESS, (id_t)gettid(), JOB_NICENESS) != 0)
        log_debug("run %lld: setpriority: %s", (long long)j->run_id, strerror(errno));
    if (j->kind == JOB_RUN) {
        int rc = pipeline_execute(&j->env, j->run_id);
        log_info("run %lld %s", (long long)j->run_id,
                 rc == 0 ? "completed" : rc == 1 ? "stopped" : "failed");
    } else {
        char err[512] = "";
        int rc = pipeline_create_stories(&j->env, j->run_id, err, sizeof err);
        if (rc < 0) log_warn("run %lld: creating stories: %s", (long long)j->run_id, err);
        else log_info("run %lld: stories %s", (long long)j->run_id, rc ? "stopped" : "created");
    }
    pthread_mutex_lock(&j->m->mu);
    atomic_store(&j->finished, 1);
    pthread_cond_broadcast(&j->m->cv);
    pthread_mutex_unlock(&j->m->mu);
    return NULL;
}

/* Joins finished threads and frees their slots. Under mu. */
static void reap_locked(api_runs *m) {
    for (size_t i = 0; i < API_MAX_JOBS; i++) {
        job *j = &m->jobs[i];
        if (!j->used || !j->launched || !atomic_load(&j->finished)) continue;
        pthread_join(j->thread, NULL);
        j->used = 0;
        j->launched = 0;
    }
}

static int active_locked(const job *j) { return j->used && !atomic_load(&j->finished); }

/* Reserves a slot for a job of this kind, or returns NULL with the reason. A stories
 * job excludes every other job of this process. */
static job *reserve(api_runs *m, job_kind kind, int64_t *other, int *why) {
    pthread_mutex_lock(&m->mu);
    reap_locked(m);
    job *free_slot = NULL;
    *why = API_JOB_OK;
    if (m->stopping_all) *why = API_JOB_FULL;
    for (size_t i = 0; i < API_MAX_JOBS && *why == API_JOB_OK; i++) {
        job *j = &m->jobs[i];
        if (!j->used) {
            if (!free_slot) free_slot = j;
            continue;
        }
        /* Runs exclude each other through the database (and a run thread may still be
         * closing after its row went terminal); only story jobs, which the database
         * does not see, are excluded here. */
        if (active_locked(j) && j->kind == JOB_STORIES) {
            *why = API_JOB_STORIES_BUSY;
            if (other) *other = j->run_id;
        }
    }
    if (*why == API_JOB_OK && !free_slot) *why = API_JOB_FULL;
    if (*why == API_JOB_OK) {
        memset(free_slot, 0, sizeof *free_slot);
        free_slot->used = 1;
        free_slot->kind = kind;
        free_slot->m = m;
    }
    pthread_mutex_unlock(&m->mu);
    return *why == API_JOB_OK ? free_slot : NULL;
}

static void release(api_runs *m, job *j) {
    pthread_mutex_lock(&m->mu);
    j->used = 0;
    pthread_mutex_unlock(&m->mu);
}

static int launch(api_runs *m, job *j, int64_t run_id) {
    j->run_id = run_id;
    run_env *e = &j->env;
    memset(e, 0, sizeof *e);
    e->db_url = m->db_url;
    e->vocab = m->vocab;
    e->make_provider = job_make_provider;
    e->provider_ctx = j;
    e->provider_done = job_provider_done;
    e->owner = m->owner;
    e->stop_flag = &j->stop;
    pthread_mutex_lock(&m->mu);
    int rc = pthread_create(&j->thread, NULL, job_main, j);
    if (rc == 0) j->launched = 1;
    else j->used = 0;
    pthread_mutex_unlock(&m->mu);
    if (rc) log_error("run %lld: cannot create a thread: %s", (long long)run_id, strerror(rc));
    return rc ? -1 : 0;
}

/* ------------------------------------------------------------------ starting jobs */

/* A run whose thread could not start is finished as failed (it can be resumed). */
static int fail_unlaunched(store *st, int64_t run_id, char *err, size_t errlen) {
    if (store_run_finish(st, run_id, "failed", "the server could not start a thread for the run",
                         wall_unix()) != STORE_OK)
        log_error("run %lld: %s", (long long)run_id, store_errmsg(st));
    snprintf(err, errlen, "cannot start a thread for the run");
    return API_JOB_THREAD;
}

int api_runs_start(api_runs *m, store *st, const run_params *p, int64_t *run_id,
                   int64_t *other, char *err, size_t errlen) {
    int why;
    job *j = reserve(m, JOB_RUN, other, &why);
    if (!j) return why;
    int64_t id = 0, active = 0;
    int rc = store_run_create(st, p, wall_unix(), &id, &active);
    if (rc != STORE_OK) {
        release(m, j);
        if (rc == STORE_BUSY) {
            *other = active;
            return API_JOB_BUSY;
        }
        snprintf(err, errlen, "%s", store_errmsg(st));
        return API_JOB_STORE;
    }
    *run_id = id;
    return launch(m, j, id) == 0 ? API_JOB_OK : fail_unlaunched(st, id, err, errlen);
}

int api_runs_resume(api_runs *m, store *st, int64_t run_id, int64_t *other, char *err,
                    size_t errlen) {
    int why;
    job *j = reserve(m, JOB_RUN, other, &why);
    if (!j) return why;
    int rc = pipeline_resume_prepare(st, run_id, err, errlen);
    if (rc != 0) {
        release(m, j);
        if (rc == -2) {
            char status[16];
            if (store_run_active(st, other, status) != STORE_FOUND) *other = 0;
            return API_JOB_BUSY;
        }
        return rc == -4 ? API_JOB_CONFLICT : rc == -5 ? API_JOB_NOTFOUND : API_JOB_STORE;
    }
    return launch(m, j, run_id) == 0 ? API_JOB_OK : fail_unlaunched(st, run_id, err, errlen);
}

int api_runs_create_stories(api_runs *m, store *st, int64_t run_id, int64_t *other, char *err,
                            size_t errlen) {
    int why;
    job *j = reserve(m, JOB_STORIES, other, &why);
    if (!j) return why;
    /* In-process jobs are excluded by the reservation; runs of other processes by the
     * database's active slot. */
    char status[16];
    int rc = store_run_active(st, other, status);
    if (rc != STORE_NOTFOUND) {
        release(m, j);
        if (rc == STORE_FOUND) return API_JOB_BUSY;
        snprintf(err, errlen, "%s", store_errmsg(st));
        return API_JOB_STORE;
    }
    if (launch(m, j, run_id) != 0) {
        snprintf(err, errlen, "cannot start a thread for story creation");
        return API_JOB_THREAD;
    }
    return API_JOB_OK;
}

void api_runs_signal_stop(api_runs *m, int64_t run_id) {
    pthread_mutex_lock(&m->mu);
    for (size_t i = 0; i < API_MAX_JOBS; i++)
        if (active_locked(&m->jobs[i]) && m->jobs[i].run_id == run_id)
            atomic_store(&m->jobs[i].stop, 1);
    pthread_mutex_unlock(&m->mu);
}

int64_t api_runs_stories_job(api_runs *m) {
    int64_t id = 0;
    pthread_mutex_lock(&m->mu);
    for (size_t i = 0; i < API_MAX_JOBS; i++)
        if (active_locked(&m->jobs[i]) && m->jobs[i].kind == JOB_STORIES) id = m->jobs[i].run_id;
    pthread_mutex_unlock(&m->mu);
    return id;
}

/* ------------------------------------------------------------------ ticker */

static void timed_wait(api_runs *m, int ms) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_sec += ms / 1000;
    ts.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    pthread_cond_timedwait(&m->cv, &m->mu, &ts);
}

static void heartbeat(api_runs *m, store **st) {
    int64_t ids[API_MAX_JOBS];
    size_t n = 0;
    pthread_mutex_lock(&m->mu);
    for (size_t i = 0; i < API_MAX_JOBS; i++)
        if (active_locked(&m->jobs[i]) && m->jobs[i].kind == JOB_RUN && m->jobs[i].run_id)
            ids[n++] = m->jobs[i].run_id;
    pthread_mutex_unlock(&m->mu);
    for (size_t i = 0; i < n; i++) {
        int rc = store_run_heartbeat(*st, ids[i], m->owner, wall_unix());
        if (rc != STORE_OK)
            log_warn("run %lld: heartbeat: %s", (long long)ids[i], store_errmsg(*st));
        if (rc == STORE_RETRY) { /* a lost connection: reopen next tick */
            store_close(*st);
            *st = NULL;
            return;
        }
    }
}

static void *ticker_main(void *arg) {
    api_runs *m = arg;
    store *st = NULL;
    int64_t last_sweep = mono_ms();
    pthread_mutex_lock(&m->mu);
    while (!m->quit) {
        reap_locked(m);
        pthread_mutex_unlock(&m->mu);
        char err[512];
        if (!st && store_open(m->db_url, &st, err, sizeof err) != STORE_OK) {
            log_warn("ticker: %s", err);
            st = NULL;
        }
        if (st) heartbeat(m, &st);
        if (st && mono_ms() - last_sweep >= SWEEP_MS) {
            last_sweep = mono_ms();
            pipeline_fail_orphaned_runs(st, RUN_STALE_SECONDS);
        }
        pthread_mutex_lock(&m->mu);
        if (!m->quit) timed_wait(m, TICK_MS);
    }
    pthread_mutex_unlock(&m->mu);
    store_close(st);
    return NULL;
}

/* ------------------------------------------------------------------ lifecycle */

int api_runs_new(const api_config *cfg, api_metrics *metrics, api_runs **out, char *err,
                 size_t errlen) {
    api_runs *m = xcalloc(1, sizeof *m);
    pthread_mutex_init(&m->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&m->cv, &ca);
    pthread_condattr_destroy(&ca);
    m->db_url = xstrdup(cfg->db_url);
    m->vocab = cfg->vocab;
    m->make = cfg->make_provider;
    m->make_ctx = cfg->provider_ctx;
    m->owner = xstrdup(cfg->owner);
    m->metrics = metrics;
    int rc = pthread_create(&m->ticker, NULL, ticker_main, m);
    if (rc) {
        snprintf(err, errlen, "cannot start the ticker thread: %s", strerror(rc));
        api_runs_free(m);
        return -1;
    }
    m->ticker_started = 1;
    *out = m;
    return 0;
}

void api_runs_stop_all(api_runs *m) {
    int64_t ids[API_MAX_JOBS];
    size_t n = 0;
    pthread_mutex_lock(&m->mu);
    m->stopping_all = 1;
    for (size_t i = 0; i < API_MAX_JOBS; i++) {
        job *j = &m->jobs[i];
        if (!active_locked(j)) continue;
        atomic_store(&j->stop, 1);
        if (j->kind == JOB_RUN && j->run_id) ids[n++] = j->run_id;
    }
    pthread_mutex_unlock(&m->mu);
    if (!n) return;
    /* Also in the database, so other processes see the run is stopping. */
    store *st = NULL;
    char err[512];
    if (store_open(m->db_url, &st, err, sizeof err) != STORE_OK) {
        log_warn("shutdown: %s", err);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        int rc = store_run_request_stop(st, ids[i]);
        if (rc != STORE_OK && rc != STORE_CONFLICT)
            log_warn("run %lld: requesting stop: %s", (long long)ids[i], store_errmsg(st));
    }
    store_close(st);
}

int api_runs_wait(api_runs *m, int timeout_ms) {
    int64_t deadline = mono_ms() + timeout_ms;
    pthread_mutex_lock(&m->mu);
    for (;;) {
        int busy = 0;
        for (size_t i = 0; i < API_MAX_JOBS; i++) busy |= active_locked(&m->jobs[i]);
        int64_t left = deadline - mono_ms();
        if (!busy || left <= 0) {
            pthread_mutex_unlock(&m->mu);
            return !busy;
        }
        timed_wait(m, (int)left);
    }
}

void api_runs_free(api_runs *m) {
    if (!m) return;
    pthread_mutex_lock(&m->mu);
    m->quit = 1;
    pthread_cond_broadcast(&m->cv);
    pthread_mutex_unlock(&m->mu);
    if (m->ticker_started) pthread_join(m->ticker, NULL);
    for (size_t i = 0; i < API_MAX_JOBS; i++)
        if (m->jobs[i].launched) pthread_join(m->jobs[i].thread, NULL);
    pthread_cond_destroy(&m->cv);
    pthread_mutex_destroy(&m->mu);
    free(m->db_url);
    free(m->owner);
    free(m);
}
