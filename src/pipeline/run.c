/* The run driver: takes a running run from wherever it is to a terminal state.
 * The per-conversation phases stream (one engine serves them all at once: a
 * conversation moves on as soon as it is classified) or, with the offline analyzer,
 * run in order; the story phase follows once they are complete. Work already done is
 * skipped, so the same function starts a fresh run and resumes a stopped or failed
 * one. All state is in the store; a crash at any point leaves a run that
 * store_run_fail_orphaned() marks failed and pipeline_resume() can continue. */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "pipeline/engine.h"
#include "pipeline/stories.h"
#include "source/intercom.h"
#include "util/log.h"
#include "util/mem.h"
#include "util/timeutil.h"

typedef enum { STEP_DONE = 0, STEP_STOPPED = 1, STEP_FAILED = -1 } step_result;

static int set_phase(store *st, int64_t id, enum run_phase phase, char *err, size_t errlen) {
    if (store_run_set_phase(st, id, phase) != STORE_OK) {
        snprintf(err, errlen, "%s", store_errmsg(st));
        return -1;
    }
    return 0;
}

/* Seeds a phase's work from the run's actionable classifications. */
static int seed_actionable(store *st, int64_t run_id, enum run_phase phase, char *err,
                           size_t errlen) {
    int64_t n;
    if (store_work_seed_actionable(st, run_id, phase, &n) != STORE_OK) {
        snprintf(err, errlen, "%s", store_errmsg(st));
        return -1;
    }
    return 0;
}

static step_result run_engine_phase(const run_env *env, store *st, llm_provider *llm,
                                    const run_record *run, const phase_ops *ops, char *err,
                                    size_t errlen) {
    /* Seeded before the phase is announced: a worker that sees the phase finds all of
     * its work (the offline embedder's corpus statistics need every item). */
    if (ops->phase != PHASE_CLASSIFICATION && seed_actionable(st, run->id, ops->phase, err, errlen))
        return STEP_FAILED;
    if (set_phase(st, run->id, ops->phase, err, errlen)) return STEP_FAILED;
    int rc = engine_run_phase(env, st, llm, run, ops, err, errlen);
    return rc == 0 ? STEP_DONE : rc == 1 ? STEP_STOPPED : STEP_FAILED;
}

static step_result select_conversations(store *st, const run_record *run, char *err,
                                        size_t errlen) {
    int64_t from = run->days > 0 && run->date_from ? run->date_from : INT64_MIN;
    int64_t to = run->date_to ? run->date_to : wall_unix();
    int64_t n;
    if (store_work_seed_conversations(st, run->id, from, to, run->max_conversations, &n)) {
        snprintf(err, errlen, "%s", store_errmsg(st));
        return STEP_FAILED;
    }
    log_info("run %lld: %lld conversations selected", (long long)run->id, (long long)n);
    return STEP_DONE;
}

/* Every per-conversation phase at once. The later phases' work is seeded as
 * conversations are classified (classify.c); seeding it here from the classifications
 * already stored is idempotent and covers runs whose classifications were written
 * without it. */
static step_result run_streaming(const run_env *env, store *st, llm_provider *llm,
                                 const run_record *run, char *err, size_t errlen) {
    size_t nnext;
    const enum run_phase *next = engine_followers(run, &nnext);
    for (size_t i = 0; i < nnext; i++)
        if (seed_actionable(st, run->id, next[i], err, errlen)) return STEP_FAILED;
    const phase_ops *all[] = {&CLASSIFY_OPS, &EMBED_OPS, &FACETS_OPS, &THEMES_OPS};
    const phase_ops *dry[] = {&CLASSIFY_OPS, &THEMES_OPS};
    int rc = run->dry_run ? engine_run(env, st, llm, run, dry, 2, err, errlen)
                          : engine_run(env, st, llm, run, all, 4, err, errlen);
    return rc == 0 ? STEP_DONE : rc == 1 ? STEP_STOPPED : STEP_FAILED;
}

/* The story phase: it needs every theme of the run. */
static step_result run_stories(const run_env *env, store *st, llm_provider *llm,
                               const run_record *run, char *err, size_t errlen) {
    if (!run->auto_create_stories) return STEP_DONE;
    if (engine_stop_requested(env, st, run->id)) return STEP_STOPPED;
    if (set_phase(st, run->id, PHASE_STORIES, err, errlen)) return STEP_FAILED;
    int rc = stories_run(env, st, llm, run, err, errlen);
    return rc == 0 ? STEP_DONE : rc == 1 ? STEP_STOPPED : STEP_FAILED;
}

static step_result run_phases(const run_env *env, store *st, llm_provider *llm,
                              const run_record *run, char *err, size_t errlen) {
    /* With INTERCOM_ACCESS_TOKEN set, the run's window is fetched first (source/). */
    int fetched = intercom_fetch_for_run(st, run, env->owner, env->stop_flag, err, errlen);
    if (fetched != 0) return fetched == 1 ? STEP_STOPPED : STEP_FAILED;
    step_result r = select_conversations(st, run, err, errlen);
    if (r != STEP_DONE) return r;
    if (pipeline_streams(env, llm)) {
        r = run_streaming(env, st, llm, run, err, errlen);
        if (r != STEP_DONE || run->dry_run) return r;
        return run_stories(env, st, llm, run, err, errlen);
    }
    r = run_engine_phase(env, st, llm, run, &CLASSIFY_OPS, err, errlen);
    if (r != STEP_DONE) return r;
    if (run->dry_run) /* a dry run stops at themes: nothing else would be kept */
        return run_engine_phase(env, st, llm, run, &THEMES_OPS, err, errlen);
    const phase_ops *phases[] = {&EMBED_OPS, &FACETS_OPS, &THEMES_OPS};
    for (size_t i = 0; i < sizeof phases / sizeof phases[0]; i++) {
        if (engine_stop_requested(env, st, run->id)) return STEP_STOPPED;
        r = run_engine_phase(env, st, llm, run, phases[i], err, errlen);
        if (r != STEP_DONE) return r;
    }
    return run_stories(env, st, llm, run, err, errlen);
}

/* How long the end of a run is retried while the database is busy (each attempt also
 * waits out SQLite's busy timeout: a count of attempts would be minutes). */
#define FINISH_RETRY_MS 2000

static void finish(store *st, int64_t run_id, const char *status, const char *error) {
    /* The terminal write must happen: retry for a while if the database is busy. Any
     * other failure (a full disk, a read-only file) is said, with what to do: the run
     * stays 'running' until a resume finds its process gone. */
    int64_t deadline = mono_ms() + FINISH_RETRY_MS;
    int rc;
    for (;;) {
        rc = store_run_refresh_counters(st, run_id);
        if (rc == STORE_OK) rc = store_run_finish(st, run_id, status, error, wall_unix());
        if (rc != STORE_RETRY || mono_ms() >= deadline) break;
        sleep_ms(100);
    }
    if (rc == STORE_OK || rc == STORE_CONFLICT) return; /* conflict: finished elsewhere */
    log_error("run %lld: could not record its end (%s): %s; `feedline resume %lld` continues "
              "it once the database can be written", (long long)run_id, status,
              store_errmsg(st), (long long)run_id);
}

static llm_provider *make_llm(const run_env *env, const run_record *run, store *st, char *err,
                              size_t errlen) {
    if (env->make_provider) return env->make_provider(env->provider_ctx, run, st, err, errlen);
    return llm_local_new(env->vocab);
}

static void release_llm(const run_env *env, llm_provider *llm) {
    if (env->make_provider && env->provider_done) env->provider_done(env->provider_ctx, llm);
    llm_provider_destroy(llm);
}

/* The run's heartbeat while pipeline_execute drives it: a thread with its own store
 * connection refreshes it every HEARTBEAT_MS, so stretches without engine ticks (the
 * story phase, phase set-up) never make a live run look orphaned to another process.
 * The same thread checkpoints SQLite's log every CHECKPOINT_MS, so the run's commits
 * never do (store_leave_checkpoints): one of them used to, several times a second,
 * and an answer that arrived meanwhile waited ~5 ms with its request slot empty. */
#define HEARTBEAT_MS (RUN_HEARTBEAT_SECONDS * 1000 / 2)
#define CHECKPOINT_MS 250

typedef struct heartbeat {
    const run_env *env;
    int64_t run_id;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int quit;
    int started;
} heartbeat;

static void heartbeat_wait(heartbeat *hb) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_nsec += (long)CHECKPOINT_MS * 1000000L;
    ts.tv_sec += ts.tv_nsec / 1000000000L;
    ts.tv_nsec %= 1000000000L;
    pthread_cond_timedwait(&hb->cv, &hb->mu, &ts);
}

static void *heartbeat_main(void *arg) {
    heartbeat *hb = arg;
    store *st = NULL;
    int64_t beat_ms = 0; /* the first pass beats */
    pthread_mutex_lock(&hb->mu);
    while (!hb->quit) {
        pthread_mutex_unlock(&hb->mu);
        char err[512];
        if (!st && store_open(hb->env->db_url, &st, err, sizeof err) != STORE_OK) st = NULL;
        int64_t now = mono_ms();
        if (st && now - beat_ms >= HEARTBEAT_MS) {
            beat_ms = now;
            if (store_run_heartbeat(st, hb->run_id, hb->env->owner, wall_unix()) != STORE_OK)
                log_warn("run %lld: heartbeat: %s", (long long)hb->run_id, store_errmsg(st));
        }
        /* A failure (a checkpoint already running elsewhere) leaves the log to the next
         * pass, or to the writer's fallback threshold. */
        if (st && store_checkpoint(st) != STORE_OK)
            log_debug("run %lld: %s", (long long)hb->run_id, store_errmsg(st));
        pthread_mutex_lock(&hb->mu);
        if (!hb->quit) heartbeat_wait(hb);
    }
    pthread_mutex_unlock(&hb->mu);
    store_close(st);
    return NULL;
}

static void heartbeat_start(heartbeat *hb, const run_env *env, int64_t run_id) {
    memset(hb, 0, sizeof *hb);
    hb->env = env;
    hb->run_id = run_id;
    pthread_mutex_init(&hb->mu, NULL);
    pthread_cond_init(&hb->cv, NULL);
    int rc = pthread_create(&hb->thread, NULL, heartbeat_main, hb);
    if (rc) log_warn("run %lld: no heartbeat thread: %s", (long long)run_id, strerror(rc));
    hb->started = rc == 0;
}

static void heartbeat_stop(heartbeat *hb) {
    pthread_mutex_lock(&hb->mu);
    hb->quit = 1;
    pthread_cond_signal(&hb->cv);
    pthread_mutex_unlock(&hb->mu);
    if (hb->started) pthread_join(hb->thread, NULL);
    pthread_cond_destroy(&hb->cv);
    pthread_mutex_destroy(&hb->mu);
}

int pipeline_execute(const run_env *env, int64_t run_id) {
    store *st = NULL;
    char err[512] = "";
    if (store_open(env->db_url, &st, err, sizeof err) != STORE_OK) {
        log_error("run %lld: %s", (long long)run_id, err);
        return -1;
    }
    run_record run;
    if (store_run_get(st, run_id, &run) != STORE_FOUND) {
        log_error("run %lld: not found", (long long)run_id);
        store_close(st);
        return -1;
    }
    int result = -1;
    llm_provider *llm = make_llm(env, &run, st, err, sizeof err);
    if (!llm) {
        finish(st, run_id, "failed", err[0] ? err : "cannot create the LLM provider");
    } else {
        if (store_run_heartbeat(st, run_id, env->owner, wall_unix()))
            log_warn("run %lld: heartbeat: %s", (long long)run_id, store_errmsg(st));
        heartbeat hb;
        heartbeat_start(&hb, env, run_id);
        if (hb.started && store_leave_checkpoints(st) != STORE_OK)
            log_warn("run %lld: %s", (long long)run_id, store_errmsg(st));
        step_result r = run_phases(env, st, llm, &run, err, sizeof err);
        heartbeat_stop(&hb);
        if (r == STEP_DONE) {
            finish(st, run_id, "completed", NULL);
            result = 0;
        } else if (r == STEP_STOPPED) {
            finish(st, run_id, "stopped", NULL);
            result = 1;
        } else {
            log_error("run %lld failed: %s", (long long)run_id, err);
            finish(st, run_id, "failed", err);
        }
        release_llm(env, llm);
    }
    /* A stop can arrive after the last check; report what the row says. */
    run_record final;
    if (store_run_get(st, run_id, &final) == STORE_FOUND) {
        if (!strcmp(final.status, "stopped")) result = 1;
        else if (!strcmp(final.status, "failed")) result = -1;
        run_record_free(&final);
    }
    run_record_free(&run);
    store_close(st);
    return result;
}

int pipeline_start(const run_env *env, const run_params *params, int64_t *run_id, char *err,
                   size_t errlen) {
    store *st = NULL;
    if (store_open(env->db_url, &st, err, errlen) != STORE_OK) return -3;
    /* A run whose process died without recording its end (it could not write: a full
     * disk, a read-only filesystem) would hold the active slot for ever. */
    pipeline_fail_orphaned_runs(st, RUN_STALE_SECONDS);
    int64_t active = 0;
    int rc = store_run_create(st, params, wall_unix(), run_id, &active);
    if (rc == STORE_BUSY) {
        *run_id = active;
        snprintf(err, errlen, "pipeline run %lld is already in progress", (long long)active);
        store_close(st);
        return -2;
    }
    if (rc != STORE_OK) {
        snprintf(err, errlen, "%s", store_errmsg(st));
        store_close(st);
        return -3;
    }
    store_close(st);
    return pipeline_execute(env, *run_id);
}

int pipeline_resume_prepare(store *st, int64_t run_id, char *err, size_t errlen) {
    /* The run may still say 'running' when its process died (killed, or unable to
     * write its end). */
    pipeline_fail_orphaned_runs(st, RUN_STALE_SECONDS);
    int rc = store_run_resume(st, run_id, wall_unix());
    if (rc == STORE_OK) rc = store_work_reset_for_resume(st, run_id);
    if (rc == STORE_OK) return 0;
    if (rc == STORE_BUSY) {
        snprintf(err, errlen, "another pipeline run is in progress");
        return -2;
    }
    if (rc == STORE_CONFLICT) {
        snprintf(err, errlen, "pipeline run %lld is not stopped or failed", (long long)run_id);
        return -4;
    }
    if (rc == STORE_NOTFOUND) {
        snprintf(err, errlen, "pipeline run %lld not found", (long long)run_id);
        return -5;
    }
    snprintf(err, errlen, "%s", store_errmsg(st));
    return -3;
}

int pipeline_resume(const run_env *env, int64_t run_id, char *err, size_t errlen) {
    store *st = NULL;
    if (store_open(env->db_url, &st, err, errlen) != STORE_OK) return -3;
    int out = pipeline_resume_prepare(st, run_id, err, errlen);
    store_close(st);
    return out ? out : pipeline_execute(env, run_id);
}

/* Why a finished run cannot get stories by hand, or NULL if it can. */
int pipeline_run_finished(const run_record *run) {
    return strcmp(run->status, "completed") == 0 || strcmp(run->status, "stopped") == 0;
}

static const char *stories_ineligible(const run_record *run) {
    if (!pipeline_run_finished(run)) return "is not completed";
    if (run->dry_run) return "is a dry run";
    if (run->stories_done) return "already has stories";
    if (!run->stories_ready || run->themes_extracted == 0) return "has no extracted themes";
    return NULL;
}

static int create_stories_with(const run_env *env, store *st, const run_record *run, char *err,
                               size_t errlen) {
    llm_provider *llm = make_llm(env, run, st, err, errlen);
    if (!llm) return -1;
    int rc = stories_run(env, st, llm, run, err, errlen);
    release_llm(env, llm);
    return rc;
}

int pipeline_create_stories(const run_env *env, int64_t run_id, char *err, size_t errlen) {
    store *st = NULL;
    if (store_open(env->db_url, &st, err, errlen) != STORE_OK) return -1;
    run_record run;
    int rc = store_run_get(st, run_id, &run);
    if (rc != STORE_FOUND) {
        if (rc == STORE_NOTFOUND)
            snprintf(err, errlen, "pipeline run %lld not found", (long long)run_id);
        else
            snprintf(err, errlen, "%s", store_errmsg(st));
        store_close(st);
        return rc == STORE_NOTFOUND ? -5 : -1;
    }
    const char *why = stories_ineligible(&run);
    if (why) {
        snprintf(err, errlen, "pipeline run %lld %s", (long long)run_id, why);
        rc = -4;
    } else {
        rc = create_stories_with(env, st, &run, err, errlen);
        if (rc < 0) {
            log_error("run %lld: creating stories failed: %s", (long long)run_id, err);
            if (store_put_run_error(st, run_id, PHASE_STORIES, err, wall_unix()) != STORE_OK)
                log_warn("run %lld: recording the failure: %s", (long long)run_id,
                         store_errmsg(st));
        }
    }
    run_record_free(&run);
    store_close(st);
    return rc;
}

/* 1 if owner ("host:pid", the format of every process's run owner) names a process
 * on this host, other than this one, that no longer exists. A reused pid looks alive:
 * that run waits for its heartbeat to go stale instead. */
static int owner_is_dead_here(const char *owner) {
    if (!owner) return 0;
    char host[256] = "localhost";
    if (gethostname(host, sizeof host - 1) != 0) return 0;
    host[sizeof host - 1] = '\0';
    const char *colon = strchr(owner, ':');
    if (!colon || (size_t)(colon - owner) != strlen(host) ||
        strncmp(owner, host, (size_t)(colon - owner)) != 0)
        return 0;
    char *end = NULL;
    long pid = strtol(colon + 1, &end, 10);
    if (pid <= 0 || (*end && *end != ':') || pid == (long)getpid()) return 0;
    return kill((pid_t)pid, 0) != 0 && errno == ESRCH;
}

/* Fails the active run when the process driving it ran on this host and is gone, by
 * its id and owner alone (no time window: a run resumed since by another process has
 * another owner). Its id when it did, 0 when there was nothing to do, -1 on a store
 * error. */
static int64_t recover_dead_run(store *st) {
    int64_t id = 0;
    char status[16];
    int rc = store_run_active(st, &id, status);
    if (rc == STORE_NOTFOUND) return 0;
    if (rc != STORE_FOUND) return -1;
    run_record r;
    if (store_run_get(st, id, &r) != STORE_FOUND) return -1;
    int64_t out = 0;
    if (owner_is_dead_here(r.owner)) {
        int count = 0;
        if (store_run_fail_owned(st, id, r.owner, wall_unix(), &count) != STORE_OK) out = -1;
        else if (count) {
            log_warn("run %lld: its process (%s) is gone; marked failed (resumable)",
                     (long long)id, r.owner);
            out = id;
        }
    }
    run_record_free(&r);
    return out;
}

int pipeline_fail_orphaned_runs(store *st, int64_t stale_seconds) {
    int n = 0;
    int64_t now = wall_unix();
    int64_t dead = -1;
    if (store_run_fail_orphaned(st, now - stale_seconds, now, &n) == STORE_OK) {
        if (n > 0) log_warn("marked %d run(s) without heartbeat as failed (resumable)", n);
        /* A run whose driving process on this host is gone need not wait for its
         * heartbeat to go stale: fail it now. */
        dead = recover_dead_run(st);
    }
    if (dead < 0) log_warn("looking for orphaned runs: %s", store_errmsg(st));
    return dead < 0 ? -1 : n + (dead > 0);
}
