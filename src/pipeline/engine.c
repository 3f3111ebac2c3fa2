/* The generic phase engine (see engine.h). */
#include "pipeline/engine.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/log.h"
#include "util/mem.h"
#include "util/timeutil.h"

/* Finished items are written in transactions of at most this many, at least every
 * FLUSH_INTERVAL_MS: short transactions keep the SQLite write lock brief, so API
 * requests that write (start/stop) never wait long. */
#define FLUSH_MAX_ITEMS 256
#define FLUSH_INTERVAL_MS 250
#define STOP_CHECK_INTERVAL_MS 250
#define TICK_INTERVAL_MS 1000
#define POLL_TIMEOUT_MS 50
#define FLUSH_RETRIES 40
/* How often a process whose own work is done looks again while others still hold
 * claims of the phase (their results, or their expired leases, end the wait). */
#define WAIT_OTHERS_MS 200

static void free_item(engine *e, work_item *it) {
    if (!it) return;
    if (it->state && e->ops->free_state) e->ops->free_state(it);
    phase_inputs_free(&it->in, 1);
    free(it);
}

static void free_group(call_group *g) {
    llm_call_reset_result(&g->call);
    if (g->args) json_decref(g->args);
    free(g->texts);
    free(g);
}

void engine_set_args(call_group *g, json_t *args) {
    if (g->args) json_decref(g->args);
    g->args = args;
    g->call.args = args;
}

void engine_fill_input(call_group *g) {
    const conv_record *c = &g->items[0]->in.conv;
    g->call.in.conv_id = c->id;
    g->call.in.body = c->body ? c->body : "";
    g->call.in.digest = c->digest ? c->digest : "";
    g->call.in.transcript = c->transcript ? c->transcript : "";
    g->call.in.support_text = c->support_text ? c->support_text : "";
    g->call.in.source_url = c->source_url;
    g->call.in.subject = c->subject;
}

static void push_finished(engine *e, work_item *it) {
    XGROW(e->finished, e->finished_cap, e->nfinished + 1);
    e->finished[e->nfinished++] = it;
}

void engine_item_ok(engine *e, work_item *it) {
    it->failed = 0;
    push_finished(e, it);
}

void engine_item_fail(engine *e, work_item *it, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(it->reason, sizeof it->reason, fmt, ap);
    va_end(ap);
    it->failed = 1;
    push_finished(e, it);
}

void engine_fatal(engine *e, const char *fmt, ...) {
    if (e->fatal) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->fatal_msg, sizeof e->fatal_msg, fmt, ap);
    va_end(ap);
    e->fatal = 1;
}

int engine_stop_requested(const run_env *env, store *st, int64_t run_id) {
    if (env->stop_flag && atomic_load(env->stop_flag)) return 1;
    return store_run_stop_requested(st, run_id) == 1;
}

static void account_usage(engine *e, const llm_call *c) {
    e->u_requests += c->attempts;
    e->u_cache_hits += c->from_cache;
    e->u_prompt += c->prompt_tokens;
    e->u_cached += c->cached_tokens;
    e->u_completion += c->completion_tokens;
    e->u_cost += llm_call_cost_usd(e->llm, c);
}

static void on_call_done(llm_call *call);

int engine_submit(engine *e, call_group *g) {
    g->call.done = on_call_done;
    g->call.user = g;
    e->in_flight++;
    if (llm_submit(e->llm, &g->call) != 0) {
        e->in_flight--;
        for (size_t i = 0; i < g->n; i++)
            engine_item_fail(e, g->items[i], "LLM provider refused the request");
        free_group(g);
        return -1;
    }
    return 0;
}

/* Completion of one call: account for it, let the phase decide, resubmit or finish. */
static void on_call_done(llm_call *call) {
    call_group *g = call->user;
    engine *e = g->e;
    e->in_flight--;
    account_usage(e, call);
    if (call->status == LLM_ERR_CANCELLED || e->stopping) {
        /* Abandoned by a stop: nothing is written, the work item stays claimed by us and
         * is released back to pending when the phase ends. */
        for (size_t i = 0; i < g->n; i++) free_item(e, g->items[i]);
        free_group(g);
        return;
    }
    int again = e->ops->complete(e, g);
    if (again == ENGINE_HOLD) {
        e->held++;
    } else if (again) {
        g->step++;
        llm_call_reset_result(&g->call);
        engine_submit(e, g);
    } else {
        free_group(g);
    }
}

void engine_finish_held(engine *e, call_group *g) {
    e->held--;
    free_group(g);
}

call_group *engine_join_held(engine *e, call_group *const *held, size_t n) {
    size_t items = 0;
    for (size_t i = 0; i < n; i++) items += held[i]->n;
    call_group *g = xcalloc(1, sizeof *g + items * sizeof(work_item *));
    g->e = e;
    for (size_t i = 0; i < n; i++) {
        for (size_t k = 0; k < held[i]->n; k++) g->items[g->n++] = held[i]->items[k];
        e->held--;
        free_group(held[i]); /* not its items: they moved */
    }
    return g;
}

int engine_starved(const engine *e) {
    return e->nready == 0 && e->exhausted && e->in_flight < (size_t)e->concurrency;
}

void engine_abandon_held(engine *e, call_group *g) {
    e->held--;
    for (size_t i = 0; i < g->n; i++) free_item(e, g->items[i]);
    free_group(g);
}

/* A positive whole number from the environment, or dflt (with a warning when set to
 * something else). */
static long env_count(const char *name, long max, long dflt) {
    const char *v = getenv(name);
    if (!v || !*v) return dflt;
    char *end;
    long n = strtol(v, &end, 10);
    if (!*end && n >= 1 && n <= max) return n;
    log_warn("%s=\"%s\" is not a whole number in 1..%ld; using %ld", name, v, max, dflt);
    return dflt;
}

int pipeline_lease_seconds(const run_env *env) {
    if (env->lease_seconds > 0) return env->lease_seconds;
    return (int)env_count("FEEDLINE_LEASE_SECONDS", 86400, PIPELINE_LEASE_SECONDS);
}

static void free_ids(char **ids, size_t n) {
    for (size_t i = 0; i < n; i++) free(ids[i]);
    free(ids);
}

static int cmp_id(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* A claim that failed on a lost connection may have been applied: not fatal, the
 * items are recovered by release_lost_claims(). Other failures end the phase. */
static int claim_failed(engine *e, int rc, const char *what) {
    if (rc == STORE_RETRY) {
        log_warn("run %lld: %s failed (will retry): %s", (long long)e->run->id, what,
                 store_errmsg(e->st));
        e->lost_claims = 1;
        return 0;
    }
    engine_fatal(e, "%s: %s", what, store_errmsg(e->st));
    return -1;
}

static int claim_more(engine *e) {
    char **ids = NULL;
    size_t n = 0;
    int rc = store_work_claim(e->st, e->run->id, e->ops->phase, e->env->owner, e->claim_batch,
                              wall_unix(), e->lease_seconds, &ids, &n);
    if (rc) return claim_failed(e, rc, "claiming work");
    if (n == 0) {
        free(ids);
        return 0;
    }
    phase_input *in = xcalloc(n, sizeof *in);
    rc = store_phase_inputs(e->st, e->run->id, ids, n, in);
    if (rc) {
        free_ids(ids, n);
        free(in);
        return claim_failed(e, rc, "loading conversations");
    }
    for (size_t i = 0; i < n; i++) {
        work_item *it = xcalloc(1, sizeof *it);
        it->in = in[i];
        if (!it->in.conv.id) {
            /* Deleted since the run selected it: fail it by id, visibly. */
            it->in.conv.id = ids[i];
            ids[i] = NULL;
            engine_item_fail(e, it, "conversation not found in the store");
            continue;
        }
        if (e->ready_tail) e->ready_tail->next = it;
        else e->ready_head = it;
        e->ready_tail = it;
        e->nready++;
    }
    free_ids(ids, n);
    free(in);
    return (int)n;
}

static work_item *pop_ready(engine *e) {
    work_item *it = e->ready_head;
    if (!it) return NULL;
    e->ready_head = it->next;
    if (!e->ready_head) e->ready_tail = NULL;
    it->next = NULL;
    e->nready--;
    return it;
}

/* Starts calls while there is room under the concurrency limit. */
static void fill(engine *e) {
    /* Back-pressure: results not yet written bound what is started, so memory stays
     * flat however fast the provider answers (the offline one answers at once). */
    while (!e->stopping && !e->fatal && e->in_flight < (size_t)e->concurrency &&
           e->nfinished < FLUSH_MAX_ITEMS) {
        if (e->nready < e->group_max && !e->exhausted) {
            int got = claim_more(e);
            if (got < 0) return;
            if (got == 0) e->exhausted = 1;
        }
        if (e->nready == 0) return;
        size_t n = e->nready < e->group_max ? e->nready : e->group_max;
        call_group *g = xcalloc(1, sizeof *g + n * sizeof(work_item *));
        g->e = e;
        g->n = n;
        for (size_t i = 0; i < n; i++) g->items[i] = pop_ready(e);
        if (e->ops->prepare(e, g)) engine_submit(e, g);
        else free_group(g);
    }
}

void engine_add_warning(engine *e, const char *warning) {
    XGROW(e->warnings, e->warnings_cap, e->nwarnings + 1);
    e->warnings[e->nwarnings++] = xstrdup(warning);
}

static void forget_warnings(engine *e) {
    for (size_t i = 0; i < e->nwarnings; i++) free(e->warnings[i]);
    e->nwarnings = 0;
}

/* Writes finished items and usage in one transaction. 0, or -1 to retry later.
 * Usage is written whole, discarded results included: those requests were made and
 * billed, and the run's usage says what the run cost.
 * Lock order, for processes flushing at the same time on PostgreSQL: the items' own
 * rows (disjoint between processes) and signatures first, then the run's row
 * (warnings), then the phase's usage row. */
static int flush(engine *e) {
    e->last_flush_ms = mono_ms();
    if (e->nfinished == 0 && e->u_requests == 0 && e->u_cache_hits == 0) return 0;
    size_t n = e->nfinished < FLUSH_MAX_ITEMS ? e->nfinished : FLUSH_MAX_ITEMS;
    int64_t now = wall_unix();
    forget_warnings(e); /* a retried flush writes its items' warnings again */
    size_t lost = 0;
    int rc = store_begin(e->st);
    for (size_t i = 0; rc == STORE_OK && i < n; i++) {
        work_item *it = e->finished[i];
        /* Closing the item first is the fence: it fails when our claim was taken over
         * (we were paused past the lease), and then the other process's result stands
         * and nothing of ours is written for the item. */
        rc = store_work_finish(e->st, e->run->id, e->ops->phase, it->in.conv.id, e->env->owner,
                               it->failed);
        it->lost = rc == STORE_CONFLICT;
        if (it->lost) {
            lost++;
            rc = STORE_OK;
        } else if (rc == STORE_OK) {
            rc = it->failed ? store_put_run_error_for(e->st, e->run->id, e->ops->phase,
                                                      it->in.conv.id, it->reason, now)
                            : e->ops->write(e, it);
        }
    }
    for (size_t i = 0; rc == STORE_OK && i < e->nwarnings; i++)
        rc = store_run_add_warning(e->st, e->run->id, e->warnings[i]);
    forget_warnings(e);
    if (rc == STORE_OK && (e->u_requests || e->u_cache_hits || e->u_prompt || e->u_completion))
        rc = store_run_add_usage(e->st, e->run->id, e->ops->phase, e->u_requests,
                                 e->u_cache_hits, e->u_prompt, e->u_cached, e->u_completion,
                                 e->u_cost);
    if (rc == STORE_OK) rc = store_commit(e->st);
    if (rc != STORE_OK) {
        log_warn("run %lld: writing %s results failed (will retry): %s", (long long)e->run->id,
                 run_phase_name(e->ops->phase), store_errmsg(e->st));
        store_rollback(e->st);
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        if (e->finished[i]->lost) e->discarded++;
        else if (e->finished[i]->failed) e->failed++;
        else e->done++;
        free_item(e, e->finished[i]);
    }
    if (lost > 0)
        log_warn("run %lld: %zu %s result(s) discarded: their claims had run out and another "
                 "process took them over (%lld so far in this phase)",
                 (long long)e->run->id, lost, run_phase_name(e->ops->phase),
                 (long long)e->discarded);
    /* Usage alone (no item finished yet) may be flushed before the array exists. */
    if (n > 0) memmove(e->finished, e->finished + n, (e->nfinished - n) * sizeof *e->finished);
    e->nfinished -= n;
    e->u_requests = e->u_cache_hits = e->u_prompt = e->u_cached = e->u_completion = 0;
    e->u_cost = 0;
    return 0;
}

/* Ready items (claimed, no call started yet) whose claims are not among held (sorted)
 * were taken over by another process while we were paused: they are dropped unstarted,
 * so a process that resumes after its lease ran out spends no requests on them. Items
 * already in flight finish, and flush() discards their results. */
static void drop_lost_ready(engine *e, char **held, size_t n) {
    work_item **link = &e->ready_head, *it;
    size_t dropped = 0;
    e->ready_tail = NULL;
    while ((it = *link)) {
        const char *id = it->in.conv.id;
        if (n > 0 && bsearch(&id, held, n, sizeof *held, cmp_id)) { /* held: NULL when 0 */
            e->ready_tail = it;
            link = &it->next;
            continue;
        }
        *link = it->next;
        e->nready--;
        free_item(e, it);
        dropped++;
    }
    if (dropped > 0) {
        e->discarded += (int64_t)dropped;
        log_warn("run %lld: %zu claimed %s item(s) dropped before they started: their claims "
                 "had run out and another process took them over",
                 (long long)e->run->id, dropped, run_phase_name(e->ops->phase));
    }
}

/* Keeps our claims alive: renewed every lease/4 (at most every second) from the
 * engine's loop, which never blocks on the LLM (it polls it 50 ms at a time), so
 * only a process that stopped working loses them. A renewal that comes late says the
 * process was paused or stalled: its claims may have been taken over, which the
 * renewal finds out (it returns what we still hold). */
static void renew_leases(engine *e) {
    int64_t now = mono_ms(), gap = now - e->last_renew_ms;
    e->last_renew_ms = now;
    if (gap >= e->lease_seconds * 1000 / 2)
        log_warn("run %lld: leases renewed %lld ms after the previous renewal (lease %lld s): "
                 "this process was paused or stalled", (long long)e->run->id, (long long)gap,
                 (long long)e->lease_seconds);
    char **held = NULL;
    size_t n = 0;
    if (store_work_renew(e->st, e->run->id, e->ops->phase, e->env->owner,
                         wall_unix() + e->lease_seconds, &held, &n)) {
        log_warn("run %lld: renewing leases failed: %s", (long long)e->run->id,
                 store_errmsg(e->st));
        return;
    }
    drop_lost_ready(e, held, n);
    free_ids(held, n);
}

static void report(engine *e) {
    /* The run's heartbeat says its driver is alive; a helper is not the driver. */
    if (!e->env->helper && (store_run_heartbeat(e->st, e->run->id, e->env->owner, wall_unix()) ||
                            store_run_refresh_counters(e->st, e->run->id)))
        log_warn("run %lld: bookkeeping failed: %s", (long long)e->run->id, store_errmsg(e->st));
    if (e->env->progress) {
        run_progress p = {e->run->id, e->ops->phase, e->done + e->failed, e->failed, e->total,
                          (int64_t)e->in_flight};
        e->env->progress(e->env->progress_ctx, &p);
    }
}

/* Other workers may still hold claims; the phase is over when nothing is pending or
 * claimed anywhere. Work that became claimable again (released, or a dead worker's
 * expired lease) is taken up. Returns 1 when complete, 0 if there is more to do or
 * to wait for. */
static int phase_complete(engine *e) {
    int claimable = 0;
    int64_t claimed = 0;
    int rc = store_work_probe(e->st, e->run->id, e->ops->phase, wall_unix(), &claimable, &claimed);
    if (rc == STORE_RETRY) {
        log_warn("run %lld: checking the phase (will retry): %s", (long long)e->run->id,
                 store_errmsg(e->st));
        return 0;
    }
    if (rc) {
        engine_fatal(e, "checking the phase: %s", store_errmsg(e->st));
        return 1;
    }
    if (claimable) {
        e->exhausted = 0;
        return 0;
    }
    return claimed == 0;
}

/* Called with nothing of ours in flight, ready or unwritten: every item still claimed
 * under our name is one a failed claim left behind, so all of them go back. */
static void release_lost_claims(engine *e) {
    if (store_work_release(e->st, e->run->id, e->env->owner) != STORE_OK) {
        log_warn("run %lld: releasing lost claims (will retry): %s", (long long)e->run->id,
                 store_errmsg(e->st));
        return;
    }
    e->lost_claims = 0;
    e->exhausted = 0;
}

static void drain_ready(engine *e) {
    work_item *it;
    while ((it = pop_ready(e))) free_item(e, it);
}

int engine_run_phase(const run_env *env, store *st, llm_provider *llm, const run_record *run,
                     const phase_ops *ops, char *err, size_t errlen) {
    engine e;
    memset(&e, 0, sizeof e);
    e.env = env;
    e.st = st;
    e.llm = llm;
    e.run = run;
    e.ops = ops;
    e.concurrency = run->concurrency > 0 ? (int)run->concurrency : 1;
    if (llm->max_pending > e.concurrency) e.concurrency = llm->max_pending; /* batch mode */
    e.group_max = ops->group_max ? ops->group_max : (size_t)llm->max_embed_batch;
    if (e.group_max < 1) e.group_max = 1;
    if (e.group_max > ENGINE_MAX_GROUP) e.group_max = ENGINE_MAX_GROUP;
    /* Two rounds of calls: enough to keep the calls going between claims, and little
     * enough that at the end of a phase no process sits on a long tail of work while
     * the others (workers) have nothing left to claim. FEEDLINE_CLAIM_BATCH overrides. */
    size_t want = (size_t)e.concurrency * 2 * e.group_max;
    long batch = env->claim_batch > 0 ? env->claim_batch : env_count("FEEDLINE_CLAIM_BATCH", 4096, 0);
    e.claim_batch = batch > 0 ? (size_t)batch : (want < 32 ? 32 : want);
    if (e.claim_batch > 4096) e.claim_batch = 4096;

    work_counts c;
    if (store_work_counts(st, run->id, ops->phase, &c)) {
        snprintf(err, errlen, "%s", store_errmsg(st));
        return -1;
    }
    e.total = c.pending + c.claimed + c.done + c.failed;
    e.done = c.done;
    e.failed = c.failed;

    if (ops->begin && ops->begin(&e) != 0) {
        snprintf(err, errlen, "%s", e.fatal ? e.fatal_msg : "phase setup failed");
        return -1;
    }
    e.lease_seconds = pipeline_lease_seconds(env);
    e.renew_interval_ms = e.lease_seconds * 1000 / 4;
    if (e.renew_interval_ms > TICK_INTERVAL_MS) e.renew_interval_ms = TICK_INTERVAL_MS;
    e.last_tick_ms = e.last_flush_ms = e.last_stop_check_ms = e.last_renew_ms = mono_ms();
    int flush_failures = 0;
    for (;;) {
        int64_t now = mono_ms();
        if (!e.stopping && (e.env->stop_flag && atomic_load(e.env->stop_flag)))
            e.stopping = 1;
        if (!e.stopping && now - e.last_stop_check_ms >= STOP_CHECK_INTERVAL_MS) {
            e.last_stop_check_ms = now;
            if (engine_stop_requested(env, st, run->id)) e.stopping = 1;
        }
        if (e.stopping || e.fatal) break;

        fill(&e);
        if (ops->pump && !e.fatal) ops->pump(&e);
        if (e.in_flight > 0 || e.held > 0) {
            if (llm_poll(llm, POLL_TIMEOUT_MS) < 0)
                engine_fatal(&e, "LLM provider failed: %s", llm->error[0] ? llm->error : "unknown error");
        } else if (e.nready == 0 && e.exhausted) {
            if (flush(&e) == 0 && e.nfinished == 0) {
                if (e.lost_claims) release_lost_claims(&e);
                /* A helper is done once nothing is claimable; the driver waits. */
                if (e.exhausted && (env->helper || phase_complete(&e))) break;
            }
            if (e.exhausted) sleep_ms(WAIT_OTHERS_MS); /* others hold claims: wait */
        }
        now = mono_ms();
        if (e.nfinished >= FLUSH_MAX_ITEMS || now - e.last_flush_ms >= FLUSH_INTERVAL_MS) {
            if (flush(&e) != 0 && ++flush_failures > FLUSH_RETRIES)
                engine_fatal(&e, "cannot write results: %s", store_errmsg(st));
            else if (flush_failures && e.nfinished == 0)
                flush_failures = 0;
        }
        if (now - e.last_renew_ms >= e.renew_interval_ms) renew_leases(&e);
        if (now - e.last_tick_ms >= TICK_INTERVAL_MS) {
            e.last_tick_ms = now;
            report(&e);
        }
    }
    /* Stop or failure: abandon calls not yet answered, keep everything finished. */
    if (e.in_flight > 0) llm->ops->cancel_all(llm);
    drain_ready(&e);
    for (int i = 0; e.nfinished > 0 && i < FLUSH_RETRIES; i++)
        if (flush(&e) != 0) sleep_ms(50);
    if (e.nfinished > 0 && !e.fatal)
        engine_fatal(&e, "cannot write results: %s", store_errmsg(st));
    for (size_t i = 0; i < e.nfinished; i++) free_item(&e, e.finished[i]);
    free(e.finished);
    forget_warnings(&e);
    free(e.warnings);
    if (store_work_release(st, run->id, env->owner))
        log_warn("run %lld: releasing claims: %s", (long long)run->id, store_errmsg(st));
    report(&e);
    if (ops->end) ops->end(&e);
    if (e.fatal) {
        snprintf(err, errlen, "%s", e.fatal_msg);
        return -1;
    }
    return e.stopping ? 1 : 0;
}
