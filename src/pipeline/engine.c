/* The generic phase engine (see engine.h). */
#include "pipeline/engine.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/env.h"
#include "util/log.h"
#include "util/mem.h"
#include "util/timeutil.h"

/* Finished items are written in transactions of at most this many: short
 * transactions keep the SQLite write lock brief, so API requests that write
 * (start/stop) never wait long. With a provider whose answers are paid for, what a
 * poll finished is written before the next poll (a crash then repeats only the calls
 * in flight, and usage records every answer received); with the offline analyzer at
 * least every FLUSH_INTERVAL_MS (its answers cost only CPU time, and one transaction
 * per handful of items would slow a 100k run). A failed write is retried after
 * FLUSH_INTERVAL_MS. */
#define FLUSH_MAX_ITEMS 256
#define FLUSH_INTERVAL_MS 250
#define STOP_CHECK_INTERVAL_MS 250
#define TICK_INTERVAL_MS 1000
#define POLL_TIMEOUT_MS 50
#define FLUSH_RETRIES 40
#define FLUSH_FAULT_RETRIES 4
/* Transient failures also end a run once writing has failed for this long: each
 * attempt on a SQLite database locked by another process first waits out its busy
 * timeout (10 s), and so does every other statement of the loop, which made the 40
 * retries over half an hour. */
#define FLUSH_GIVE_UP_MS 120000
/* How often a process whose own work is done looks again while others still hold
 * claims of the phase (their results, or their expired leases, end the wait). */
#define WAIT_OTHERS_MS 200
/* Streaming: how often an exhausted lane tries to claim again (other processes seed
 * and release work), and how soon after the previous write results are written when
 * a request slot is free and nothing is ready (the write seeds the next phases). */
#define RECHECK_MS 100
#define STARVED_FLUSH_MS 5
/* The end of the per-conversation phases (see in_tail): a conversation whose
 * classification starts has a chain of up to 4 calls ahead of it (classification,
 * refinement, theme, canonicalisation), one latency each; one round of margin. A
 * conversation not yet classified is counted as 3 requests (1 to 4: the realistic
 * mix averages 2.85). Measured at 400 conversations x 100 ms x concurrency 100: the
 * whole run took 1442-1480 ms with 5, 1454-1497 ms with 9, 1457-1493 ms with 14 and
 * 1491-1547 ms without a tail (0); at concurrency 20 all four within 6.00-6.04 s. */
#define TAIL_ROUNDS 5
#define TAIL_REQUESTS_PER_CONV 3

static void free_item(engine *e, work_item *it) {
    (void)e;
    if (!it) return;
    if (it->state && it->lane->ops->free_state) it->lane->ops->free_state(it);
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

static void account_usage(engine *e, lane *l, const llm_call *c) {
    l->u_requests += c->attempts;
    l->u_cache_hits += c->from_cache;
    l->u_prompt += c->prompt_tokens;
    l->u_cached += c->cached_tokens;
    l->u_completion += c->completion_tokens;
    l->u_cost += llm_call_cost_usd(e->llm, c);
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
    account_usage(e, g->lane, call);
    if (call->status == LLM_ERR_CANCELLED || e->stopping) {
        /* Abandoned by a stop: nothing is written, the work item stays claimed by us and
         * is released back to pending when the phase ends. */
        for (size_t i = 0; i < g->n; i++) free_item(e, g->items[i]);
        free_group(g);
        return;
    }
    int again = g->lane->ops->complete(e, g);
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
    g->lane = n > 0 ? held[0]->lane : NULL;
    for (size_t i = 0; i < n; i++) {
        for (size_t k = 0; k < held[i]->n; k++) g->items[g->n++] = held[i]->items[k];
        e->held--;
        free_group(held[i]); /* not its items: they moved */
    }
    return g;
}

/* Nothing of the lane's can start now. */
static int lane_idle(const lane *l) { return l->nready == 0 && (l->exhausted || l->gated); }

static int all_idle(const engine *e) {
    for (size_t i = 0; i < e->nlanes; i++)
        if (!lane_idle(&e->lanes[i])) return 0;
    return 1;
}

int engine_starved(const engine *e) {
    return e->in_flight < e->window && all_idle(e);
}

int engine_drained(const engine *e, enum run_phase phase) {
    if (e->in_flight >= e->window) return 0;
    const lane *l = e->by_phase[phase], *c = e->by_phase[PHASE_CLASSIFICATION];
    return (!l || lane_idle(l)) && (!c || lane_idle(c));
}

void engine_abandon_held(engine *e, call_group *g) {
    e->held--;
    for (size_t i = 0; i < g->n; i++) free_item(e, g->items[i]);
    free_group(g);
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
    const char *why = store_errmsg(e->st);
    if (!strncmp(why, what, strlen(what))) engine_fatal(e, "%s", why); /* says it already */
    else engine_fatal(e, "%s: %s", what, why);
    return -1;
}

static void push_ready(lane *l, work_item *it) {
    if (l->nready == 0) l->ready_since_ms = mono_ms();
    if (l->ready_tail) l->ready_tail->next = it;
    else l->ready_head = it;
    l->ready_tail = it;
    l->nready++;
}

static int claim_more(engine *e, lane *l) {
    char **ids = NULL;
    size_t n = 0;
    /* Expired leases (a dead or paused process's claims) are looked for at most every
     * RECHECK_MS, and whenever nothing is pending. */
    int64_t now = mono_ms();
    int expired_too = now - l->expired_checked_ms >= RECHECK_MS;
    int kinds = STORE_CLAIM_PENDING | (expired_too ? STORE_CLAIM_EXPIRED : 0);
    int rc = store_work_claim_kinds(e->st, kinds, e->run->id, l->ops->phase, e->env->owner,
                                    l->claim_batch, wall_unix(), e->lease_seconds, &ids, &n);
    if (rc == STORE_OK && n == 0 && !expired_too) {
        free(ids);
        expired_too = 1;
        rc = store_work_claim_kinds(e->st, STORE_CLAIM_EXPIRED, e->run->id, l->ops->phase,
                                    e->env->owner, l->claim_batch, wall_unix(),
                                    e->lease_seconds, &ids, &n);
    }
    if (expired_too) l->expired_checked_ms = now;
    if (rc) return claim_failed(e, rc, "claiming work");
    l->unclaimed = n < (size_t)l->unclaimed ? l->unclaimed - (int64_t)n : 0;
    if (n == 0) {
        l->unclaimed = 0;
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
        it->lane = l;
        it->in = in[i];
        if (!it->in.conv.id) {
            /* Deleted since the run selected it: fail it by id, visibly. */
            it->in.conv.id = ids[i];
            ids[i] = NULL;
            engine_item_fail(e, it, "conversation not found in the store");
            continue;
        }
        push_ready(l, it);
    }
    free_ids(ids, n);
    free(in);
    return (int)n;
}

static work_item *pop_ready(lane *l) {
    work_item *it = l->ready_head;
    if (!it) return NULL;
    l->ready_head = it->next;
    if (!l->ready_head) l->ready_tail = NULL;
    it->next = NULL;
    l->nready--;
    if (l->nready > 0) l->ready_since_ms = mono_ms(); /* the rest start waiting anew */
    return it;
}

/* Whether the lane's ready items make a call now: a full group, or (embeddings) a
 * partial one that has waited long enough, or when no more of its work can come soon
 * (classification has nothing left to start), or when nothing else could use the slot
 * (no other lane can start anything). */
static int group_due(const engine *e, const lane *l) {
    if (l->nready >= l->batch_target) return 1;
    if (!l->exhausted) return 0; /* claim more first */
    if (mono_ms() - l->ready_since_ms >= ENGINE_EMBED_WAIT_MS) return 1;
    const lane *c = e->by_phase[PHASE_CLASSIFICATION];
    if (!c || c == l || lane_idle(c)) return 1;
    for (size_t i = 0; i < e->nlanes; i++) {
        const lane *o = &e->lanes[i];
        if (o != l && !lane_idle(o)) return 0;
    }
    return 1;
}

/* A lane's preference for a free slot, lowest first. Conversations in progress
 * finish before new ones start: the theme phase first (its canonicalisations follow
 * it), then embeddings (a batch request; the story phase waits for it), then facets,
 * then classification. Theme requests, the endpoint's heaviest, so spread over the
 * run instead of bunching at its end. */
static int slot_rank(enum run_phase phase) {
    switch (phase) {
    case PHASE_THEMES: return 0;
    case PHASE_EMBEDDINGS: return 1;
    case PHASE_FACETS: return 2;
    default: return 3;
    }
}

/* Whether the run is near the end of its per-conversation work: what is left (the
 * conversations not yet classified at TAIL_REQUESTS_PER_CONV each, the ready items of
 * the other lanes, the calls in flight) fills no more than TAIL_ROUNDS rounds of the
 * request slots. From then on a conversation whose classification waits for a slot
 * would finish its chain after everything else, with the slots idle meanwhile, so
 * classification goes first (critical path first). Before, slot_rank's order. */
static int in_tail(const engine *e) {
    const lane *c = e->by_phase[PHASE_CLASSIFICATION];
    if (!e->streaming || !c || c->nready + c->unclaimed == 0) return 0;
    int64_t left = ((int64_t)c->nready + c->unclaimed) * TAIL_REQUESTS_PER_CONV +
                   (int64_t)e->in_flight;
    for (size_t i = 0; i < e->nlanes; i++)
        if (&e->lanes[i] != c) left += (int64_t)e->lanes[i].nready;
    return left <= (int64_t)TAIL_ROUNDS * e->concurrency;
}

/* The lanes by preference for the next free slot: e->order, or classification first
 * in the tail. */
static void slot_order(const engine *e, size_t order[PHASE_COUNT]) {
    size_t n = 0, first = e->nlanes;
    if (in_tail(e)) {
        first = (size_t)(e->by_phase[PHASE_CLASSIFICATION] - e->lanes);
        order[n++] = first;
    }
    for (size_t k = 0; k < e->nlanes; k++)
        if (e->order[k] != first) order[n++] = e->order[k];
}

/* Starts calls while there is room in the window (the concurrency, plus the calls the
 * provider keeps queued for the slots its answers free), in slot_order. */
static void fill(engine *e) {
    /* Back-pressure: results not yet written bound what is started, so memory stays
     * flat however fast the provider answers (the offline one answers at once). */
    while (!e->stopping && !e->fatal && e->in_flight < e->window &&
           e->nfinished < FLUSH_MAX_ITEMS) {
        /* Every lane claims before any is picked: whether a lane is idle (nothing
         * more to claim) decides what the others send (group_due, engine_drained),
         * and a lane ranked last would otherwise never find out while the others
         * have work. A lane with nothing claimable asks again after RECHECK_MS. */
        for (size_t i = 0; i < e->nlanes; i++) {
            lane *l = &e->lanes[i];
            if (l->gated || l->exhausted || l->nready >= l->batch_target) continue;
            int got = claim_more(e, l);
            if (got < 0) return;
            if (got == 0) l->exhausted = 1;
        }
        lane *pick = NULL;
        size_t order[PHASE_COUNT];
        slot_order(e, order);
        for (size_t k = 0; k < e->nlanes && !pick; k++) {
            lane *l = &e->lanes[order[k]];
            if (!l->gated && l->nready > 0 && group_due(e, l)) pick = l;
        }
        if (!pick) return;
        size_t n = pick->nready < pick->group_max ? pick->nready : pick->group_max;
        call_group *g = xcalloc(1, sizeof *g + n * sizeof(work_item *));
        g->e = e;
        g->lane = pick;
        g->n = n;
        for (size_t i = 0; i < n; i++) g->items[i] = pop_ready(pick);
        if (pick->ops->prepare(e, g)) engine_submit(e, g);
        else free_group(g);
    }
}

void engine_add_warning(engine *e, const char *warning) {
    XGROW(e->warnings, e->warnings_cap, e->nwarnings + 1);
    e->warnings[e->nwarnings++] = xstrdup(warning);
}

unsigned engine_takes(const engine *e) {
    if (!e->streaming || e->stopping || e->fatal) return 0;
    unsigned take = 0;
    for (size_t i = 0; i < e->nlanes; i++) {
        const lane *l = &e->lanes[i];
        if (l->ops->phase != PHASE_CLASSIFICATION && !l->gated) take |= 1u << l->ops->phase;
    }
    return take;
}

void engine_seeded(engine *e, work_item *it, unsigned seeded, unsigned taken,
                   const char *final_type) {
    e->seeded_pending |= seeded & ~taken;
    it->handed_off = taken;
    if (taken) {
        free(it->in.final_type);
        it->in.final_type = xstrdup(final_type);
    }
}

/* A written item's conversation joins the lanes of the phases its write seeded
 * claimed by us (engine_seeded): each gets its own copy of the input. */
static void hand_off(engine *e, const work_item *it) {
    for (size_t i = 0; i < e->nlanes; i++) {
        lane *l = &e->lanes[i];
        if (!((it->handed_off >> l->ops->phase) & 1u)) continue;
        work_item *next = xcalloc(1, sizeof *next);
        next->lane = l;
        phase_input_copy(&next->in, &it->in);
        push_ready(l, next);
    }
}

static void forget_warnings(engine *e) {
    for (size_t i = 0; i < e->nwarnings; i++) free(e->warnings[i]);
    e->nwarnings = 0;
}

static int has_usage(const lane *l) {
    return l->u_requests || l->u_cache_hits || l->u_prompt || l->u_completion;
}

/* Writes finished items and usage in one transaction. STORE_OK, or the store's error
 * code (the items stay, to retry later).
 * Usage is written whole, discarded results included: those requests were made and
 * billed, and the run's usage says what the run cost.
 * Lock order, for processes flushing at the same time on PostgreSQL: the items' own
 * rows (disjoint between processes) and signatures first, then the run's row
 * (warnings, lost claims), then the phases' usage rows (in phase order). */
static int flush(engine *e) {
    e->last_flush_ms = mono_ms();
    int usage = 0;
    for (size_t i = 0; i < e->nlanes; i++) usage |= has_usage(&e->lanes[i]);
    if (e->nfinished == 0 && !usage) return 0;
    size_t n = e->nfinished < FLUSH_MAX_ITEMS ? e->nfinished : FLUSH_MAX_ITEMS;
    int64_t now = wall_unix();
    forget_warnings(e); /* a retried flush writes its items' warnings again */
    size_t lost = 0;
    e->seeded_pending = 0; /* a retried flush seeds again */
    int rc = store_begin(e->st);
    for (size_t i = 0; rc == STORE_OK && i < n; i++) {
        work_item *it = e->finished[i];
        enum run_phase phase = it->lane->ops->phase;
        /* Closing the item first is the fence: it fails when our claim was taken over
         * (we were paused past the lease), and then the other process's result stands
         * and nothing of ours is written for the item. */
        rc = store_work_finish(e->st, e->run->id, phase, it->in.conv.id, e->env->owner,
                               it->failed);
        it->lost = rc == STORE_CONFLICT;
        if (it->lost) {
            lost++;
            rc = STORE_OK;
        } else if (rc == STORE_OK) {
            it->handed_off = 0;
            rc = it->failed ? store_put_run_error_for(e->st, e->run->id, phase, it->in.conv.id,
                                                      it->reason, now)
                            : it->lane->ops->write(e, it);
        }
    }
    for (size_t i = 0; rc == STORE_OK && i < e->nwarnings; i++)
        rc = store_run_add_warning(e->st, e->run->id, e->warnings[i]);
    if (rc == STORE_OK && lost > 0)
        rc = store_run_add_claims_lost(e->st, e->run->id, (int64_t)lost);
    forget_warnings(e);
    for (size_t i = 0; rc == STORE_OK && i < e->nlanes; i++) {
        lane *l = &e->lanes[i];
        if (!has_usage(l)) continue;
        rc = store_run_add_usage(e->st, e->run->id, l->ops->phase, l->u_requests, l->u_cache_hits,
                                 l->u_prompt, l->u_cached, l->u_completion, l->u_cost);
    }
    if (rc == STORE_OK) rc = store_commit(e->st);
    if (rc != STORE_OK) {
        log_warn("run %lld: writing results failed (will retry): %s", (long long)e->run->id,
                 store_errmsg(e->st));
        store_rollback(e->st);
        return rc;
    }
    for (size_t i = 0; i < n; i++) {
        work_item *it = e->finished[i];
        if (it->lost) {
            it->lane->discarded++;
        } else if (it->failed) {
            it->lane->failed++;
        } else {
            it->lane->done++;
            hand_off(e, it);
        }
        free_item(e, it);
    }
    if (lost > 0)
        log_warn("run %lld: %zu result(s) discarded: their claims had run out and another "
                 "process took them over", (long long)e->run->id, lost);
    /* Usage alone (no item finished yet) may be flushed before the array exists. */
    if (n > 0) memmove(e->finished, e->finished + n, (e->nfinished - n) * sizeof *e->finished);
    e->nfinished -= n;
    for (size_t i = 0; i < e->nlanes; i++) {
        lane *l = &e->lanes[i];
        l->u_requests = l->u_cache_hits = l->u_prompt = l->u_cached = l->u_completion = 0;
        l->u_cost = 0;
        /* Classifications just written seeded pending work: claim it now. */
        if ((e->seeded_pending >> l->ops->phase) & 1u) l->exhausted = 0;
    }
    return 0;
}

/* Failures to write results, and since when they have failed without a success. */
typedef struct flush_retry {
    int failures;
    int64_t since_ms; /* 0 after a success */
} flush_retry;

/* flush(), counting failures: past FLUSH_RETRIES transient ones (a lock
 * timeout, a lost connection) or FLUSH_GIVE_UP_MS of them, or past FLUSH_FAULT_RETRIES
 * others (a full disk, a read-only file: they fail alike the next time), the run
 * fails. Every flush counts, the ones made while waiting for work included: a database
 * that cannot be written would otherwise keep an idle run retrying for ever. 0, -1
 * (failed: retry later) or -2 (failed and gave up). */
static int flush_counted(engine *e, flush_retry *r) {
    int rc = flush(e);
    if (rc == STORE_OK) {
        r->since_ms = 0;
        if (e->nfinished == 0) r->failures = 0;
        return 0;
    }
    if (!r->since_ms) r->since_ms = mono_ms();
    int limit = rc == STORE_RETRY ? FLUSH_RETRIES : FLUSH_FAULT_RETRIES;
    int patient = rc != STORE_RETRY || mono_ms() - r->since_ms < FLUSH_GIVE_UP_MS;
    if (++r->failures <= limit && patient) return -1;
    engine_fatal(e, "cannot write results: %s", store_errmsg(e->st));
    return -2;
}

/* Ready items (claimed, no call started yet) whose claims are not among held (sorted)
 * were taken over by another process while we were paused: they are dropped unstarted,
 * so a process that resumes after its lease ran out spends no requests on them. Items
 * already in flight finish, and flush() discards their results. */
static void drop_lost_ready(engine *e, lane *l, char **held, size_t n) {
    work_item **link = &l->ready_head, *it;
    size_t dropped = 0;
    l->ready_tail = NULL;
    while ((it = *link)) {
        const char *id = it->in.conv.id;
        if (n > 0 && bsearch(&id, held, n, sizeof *held, cmp_id)) { /* held: NULL when 0 */
            l->ready_tail = it;
            link = &it->next;
            continue;
        }
        *link = it->next;
        l->nready--;
        free_item(e, it);
        dropped++;
    }
    if (dropped > 0) {
        l->discarded += (int64_t)dropped;
        if (store_run_add_claims_lost(e->st, e->run->id, (int64_t)dropped) != STORE_OK)
            log_warn("run %lld: counting lost claims: %s", (long long)e->run->id,
                     store_errmsg(e->st));
        log_warn("run %lld: %zu claimed %s item(s) dropped before they started: their claims "
                 "had run out and another process took them over",
                 (long long)e->run->id, dropped, run_phase_name(l->ops->phase));
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
    for (size_t i = 0; i < e->nlanes; i++) {
        lane *l = &e->lanes[i];
        char **held = NULL;
        size_t n = 0;
        if (store_work_renew(e->st, e->run->id, l->ops->phase, e->env->owner,
                             wall_unix() + e->lease_seconds, &held, &n)) {
            log_warn("run %lld: renewing leases failed: %s", (long long)e->run->id,
                     store_errmsg(e->st));
            return;
        }
        drop_lost_ready(e, l, held, n);
        free_ids(held, n);
    }
}

/* Probes a lane's phase: *claimable, *claimed as store_work_probe. 0, or -1 (retry
 * later, or fatal: e->fatal says). */
static int probe(engine *e, enum run_phase phase, int *claimable, int64_t *claimed) {
    *claimable = 0;
    *claimed = 0;
    int rc = store_work_probe(e->st, e->run->id, phase, wall_unix(), claimable, claimed);
    if (rc == STORE_OK) return 0;
    if (rc == STORE_RETRY)
        log_warn("run %lld: checking the work (will retry): %s", (long long)e->run->id,
                 store_errmsg(e->st));
    else
        engine_fatal(e, "checking the work: %s", store_errmsg(e->st));
    return -1;
}

/* The phase's work is complete everywhere: nothing pending or claimed (by anyone). */
static int phase_done(engine *e, enum run_phase phase) {
    int claimable;
    int64_t claimed;
    if (probe(e, phase, &claimable, &claimed)) return 0;
    return !claimable && claimed == 0;
}

/* A gated lane (the embedding corpus needs every actionable conversation) opens once
 * classification is complete: its corpus is fixed from then on. */
static void open_gate(engine *e, lane *l) {
    if (!l->gated || !phase_done(e, PHASE_CLASSIFICATION)) return;
    if (l->ops->begin && l->ops->begin(e) != 0) {
        if (!e->fatal) engine_fatal(e, "%s: setup failed", run_phase_name(l->ops->phase));
        return;
    }
    l->begun = 1;
    l->gated = 0;
    l->exhausted = 0;
}

/* The driver keeps current_phase at the earliest phase with unfinished work. */
static void show_phase(engine *e) {
    if (!e->streaming || e->env->helper) return;
    enum run_phase first = e->lanes[e->nlanes - 1].ops->phase;
    for (size_t i = 0; i < e->nlanes; i++) {
        lane *l = &e->lanes[i];
        int claimable;
        int64_t claimed;
        if (probe(e, l->ops->phase, &claimable, &claimed)) return;
        l->busy = claimable || claimed > 0;
        if (l->busy) {
            first = l->ops->phase;
            break;
        }
    }
    if (first == e->shown) return;
    if (!e->lanes[e->nlanes - 1].busy && e->shown < PHASE_COUNT) return; /* all done: keep it */
    if (store_run_set_phase(e->st, e->run->id, first) == STORE_OK) e->shown = first;
    else log_warn("run %lld: setting the phase: %s", (long long)e->run->id, store_errmsg(e->st));
}

/* The lane progress reports: the current phase's. */
static lane *shown_lane(engine *e) {
    lane *l = e->shown < PHASE_COUNT ? e->by_phase[e->shown] : NULL;
    return l ? l : &e->lanes[0];
}

static void report(engine *e) {
    /* The run's heartbeat says its driver is alive; a helper is not the driver. */
    if (!e->env->helper && (store_run_heartbeat(e->st, e->run->id, e->env->owner, wall_unix()) ||
                            store_run_refresh_counters(e->st, e->run->id)))
        log_warn("run %lld: bookkeeping failed: %s", (long long)e->run->id, store_errmsg(e->st));
    show_phase(e);
    if (e->env->progress) {
        lane *l = shown_lane(e);
        if (e->streaming) { /* the later phases grow as conversations are classified */
            work_counts c;
            if (store_work_counts(e->st, e->run->id, l->ops->phase, &c) == STORE_OK) {
                l->total = c.pending + c.claimed + c.done + c.failed;
                l->done = c.done;
                l->failed = c.failed;
            }
        }
        run_progress p = {e->run->id, l->ops->phase, l->done + l->failed, l->failed, l->total,
                          (int64_t)e->in_flight};
        e->env->progress(e->env->progress_ctx, &p);
    }
}

/* Called with nothing of ours in flight, ready or unwritten. Other processes may still
 * hold claims; the work is over when nothing is pending or claimed anywhere, in any
 * lane (checked in phase order: once classification is complete nothing seeds the
 * later phases any more). Work that became claimable again (released, seeded by
 * another process, or a dead worker's expired lease) is taken up. Returns 1 when
 * complete (a helper: when nothing is claimable), 0 if there is more to do or to wait
 * for. */
static int work_complete(engine *e) {
    int complete = 1;
    for (size_t i = 0; i < e->nlanes; i++) {
        lane *l = &e->lanes[i];
        if (l->gated) open_gate(e, l);
        if (e->fatal) return 1;
        int claimable;
        int64_t claimed;
        if (probe(e, l->ops->phase, &claimable, &claimed)) return e->fatal;
        if (claimable && !l->gated) l->exhausted = 0;
        if (claimable || (claimed > 0 && !e->env->helper)) complete = 0;
    }
    return complete;
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
    for (size_t i = 0; i < e->nlanes; i++) e->lanes[i].exhausted = 0;
}

static void drain_ready(engine *e) {
    for (size_t i = 0; i < e->nlanes; i++) {
        work_item *it;
        while ((it = pop_ready(&e->lanes[i]))) free_item(e, it);
    }
}

/* Lets the provider complete calls (their done callbacks run inside); a provider-level
 * failure (a refused key, say) ends the run. */
static void poll_provider(engine *e, int timeout_ms) {
    if (llm_poll(e->llm, timeout_ms) < 0)
        engine_fatal(e, "LLM provider failed: %s",
                     e->llm->error[0] ? e->llm->error : "unknown error");
}

int pipeline_streams(const run_env *env, const llm_provider *llm) {
    if (env->stream) return env->stream > 0;
    const char *v = getenv("FEEDLINE_STREAM");
    if (v && (!strcmp(v, "0") || !strcmp(v, "1"))) return v[0] == '1';
    return llm->ops->prepare_embeddings == NULL;
}

const enum run_phase *engine_followers(const run_record *run, size_t *n) {
    static const enum run_phase all[] = {PHASE_EMBEDDINGS, PHASE_FACETS, PHASE_THEMES};
    static const enum run_phase dry[] = {PHASE_THEMES};
    if (run->dry_run) {
        *n = 1;
        return dry;
    }
    *n = 3;
    return all;
}

/* Sets up a lane; 0, or -1 (message in err). */
static int lane_init(engine *e, lane *l, const phase_ops *ops, const run_env *env, char *err,
                     size_t errlen) {
    l->ops = ops;
    l->group_max = ops->group_max ? ops->group_max : (size_t)e->llm->max_embed_batch;
    if (l->group_max < 1) l->group_max = 1;
    if (l->group_max > ENGINE_MAX_GROUP) l->group_max = ENGINE_MAX_GROUP;
    l->batch_target = l->group_max;
    if (e->streaming && l->batch_target > ENGINE_EMBED_BATCH) l->batch_target = ENGINE_EMBED_BATCH;
    /* Two rounds of calls: enough to keep the calls going between claims, and little
     * enough that at the end of a phase no process sits on a long tail of work while
     * the others (workers) have nothing left to claim. FEEDLINE_CLAIM_BATCH overrides. */
    size_t want = (size_t)e->concurrency * 2 * l->group_max;
    long batch = env->claim_batch > 0 ? env->claim_batch : env_count("FEEDLINE_CLAIM_BATCH", 4096, 0);
    l->claim_batch = batch > 0 ? (size_t)batch : (want < 32 ? 32 : want);
    if (l->claim_batch > 4096) l->claim_batch = 4096;
    work_counts c;
    if (store_work_counts(e->st, e->run->id, ops->phase, &c)) {
        snprintf(err, errlen, "%s", store_errmsg(e->st));
        return -1;
    }
    l->total = c.pending + c.claimed + c.done + c.failed;
    l->done = c.done;
    l->failed = c.failed;
    l->unclaimed = c.pending;
    /* The embedding corpus (prepare_embeddings) is every actionable conversation of the
     * run: streaming, it is complete only once classification is. */
    l->gated = e->streaming && ops->phase == PHASE_EMBEDDINGS &&
               e->llm->ops->prepare_embeddings != NULL;
    if (l->gated) return 0;
    if (ops->begin && ops->begin(e) != 0) {
        snprintf(err, errlen, "%s", e->fatal ? e->fatal_msg : "phase setup failed");
        return -1;
    }
    l->begun = 1;
    return 0;
}

int engine_run(const run_env *env, store *st, llm_provider *llm, const run_record *run,
               const phase_ops *const *ops, size_t nops, char *err, size_t errlen) {
    engine e;
    memset(&e, 0, sizeof e);
    e.env = env;
    e.st = st;
    e.llm = llm;
    e.run = run;
    e.concurrency = run->concurrency > 0 ? (int)run->concurrency : 1;
    if (llm->max_pending > e.concurrency) e.concurrency = llm->max_pending; /* batch mode */
    /* Calls queued in the provider beyond the concurrency only when the provider itself
     * keeps the wire within it (a worker's provider may have been made for the
     * driver's larger concurrency). */
    int ahead = llm->queue_ahead > 0 && llm->concurrency > 0 && llm->concurrency <= e.concurrency;
    e.window = (size_t)e.concurrency + (size_t)(ahead ? llm->queue_ahead : 0);
    e.streaming = nops > 1;
    if (nops == 0 || nops > PHASE_COUNT) {
        snprintf(err, errlen, "no phases to run");
        return -1;
    }
    e.nlanes = nops;
    /* The order of the lanes for a free slot (see slot_rank); FEEDLINE_STREAM_ORDER=
     * earlier (kept for measurements) prefers the earliest phase instead. */
    const char *order = getenv("FEEDLINE_STREAM_ORDER");
    int earlier = order && !strcmp(order, "earlier");
    for (size_t i = 0; i < nops; i++) {
        e.by_phase[ops[i]->phase] = &e.lanes[i];
        e.order[i] = i;
    }
    for (size_t i = 1; i < nops && !earlier; i++) /* insertion sort: nops <= PHASE_COUNT */
        for (size_t j = i; j > 0; j--) {
            if (slot_rank(ops[e.order[j - 1]]->phase) <= slot_rank(ops[e.order[j]]->phase)) break;
            size_t t = e.order[j];
            e.order[j] = e.order[j - 1];
            e.order[j - 1] = t;
        }
    e.shown = ops[0]->phase;
    int rc = 0;
    for (size_t i = 0; i < nops && rc == 0; i++)
        rc = lane_init(&e, &e.lanes[i], ops[i], env, err, errlen);
    if (rc) {
        for (size_t i = 0; i < nops; i++)
            if (e.lanes[i].begun && e.lanes[i].ops->end) e.lanes[i].ops->end(&e);
        return -1;
    }
    e.lease_seconds = pipeline_lease_seconds(env);
    e.renew_interval_ms = e.lease_seconds * 1000 / 4;
    if (e.renew_interval_ms > TICK_INTERVAL_MS) e.renew_interval_ms = TICK_INTERVAL_MS;
    e.last_tick_ms = e.last_flush_ms = e.last_stop_check_ms = e.last_renew_ms =
        e.last_recheck_ms = mono_ms();
    if (e.streaming && !env->helper) {
        e.shown = PHASE_COUNT; /* unknown: written at once */
        show_phase(&e);
    }
    flush_retry flush_failures = {0, 0};
    for (;;) {
        int64_t now = mono_ms();
        if (!e.stopping && (e.env->stop_flag && atomic_load(e.env->stop_flag)))
            e.stopping = 1;
        if (!e.stopping && now - e.last_stop_check_ms >= STOP_CHECK_INTERVAL_MS) {
            e.last_stop_check_ms = now;
            if (engine_stop_requested(env, st, run->id)) e.stopping = 1;
        }
        if (e.stopping || e.fatal) break;

        /* Work a phase held back goes before new work takes the free slots: it is
         * the end of a conversation's chain (canonicalisation after its theme). */
        for (size_t i = 0; i < e.nlanes && !e.fatal; i++)
            if (e.lanes[i].ops->pump && e.lanes[i].begun) e.lanes[i].ops->pump(&e);
        fill(&e);
        if (e.in_flight > 0 || e.held > 0) {
            poll_provider(&e, POLL_TIMEOUT_MS);
        } else if (all_idle(&e)) {
            int waiting = 1;
            if (flush_counted(&e, &flush_failures) == 0 && e.nfinished == 0) {
                if (e.lost_claims) release_lost_claims(&e);
                if (all_idle(&e)) {
                    if (work_complete(&e)) break;
                    waiting = all_idle(&e);
                }
            }
            if (waiting) sleep_ms(WAIT_OTHERS_MS); /* others hold claims: wait */
        }
        now = mono_ms();
        /* A free slot and nothing to start: what is finished may seed the next phases. */
        int starved_flush = e.streaming && e.nfinished > 0 && engine_starved(&e) &&
                            now - e.last_flush_ms >= STARVED_FLUSH_MS;
        /* since_ms is set while writes fail: retries then wait FLUSH_INTERVAL_MS. */
        int eager_flush = llm->paid_answers && !flush_failures.since_ms && e.nfinished > 0;
        if (eager_flush && !e.fatal && !e.stopping) {
            /* Send what the free slots can take first, so the write below never
             * delays a request. */
            fill(&e);
            if (e.in_flight > 0) poll_provider(&e, 0);
        }
        if (eager_flush || starved_flush || e.nfinished >= FLUSH_MAX_ITEMS ||
            now - e.last_flush_ms >= FLUSH_INTERVAL_MS)
            flush_counted(&e, &flush_failures);
        if (e.streaming && now - e.last_recheck_ms >= RECHECK_MS) {
            /* Other processes seed, release and expire work: look again. */
            e.last_recheck_ms = now;
            for (size_t i = 0; i < e.nlanes; i++) {
                lane *l = &e.lanes[i];
                if (l->gated) open_gate(&e, l);
                else l->exhausted = 0;
            }
        }
        if (now - e.last_renew_ms >= e.renew_interval_ms) renew_leases(&e);
        if (now - e.last_tick_ms >= TICK_INTERVAL_MS) {
            e.last_tick_ms = now;
            report(&e);
        }
    }
    /* Stop or failure: abandon calls not yet answered, keep everything finished, with
     * the patience left (a run that gave up writing tries once more). */
    if (e.in_flight > 0) llm->ops->cancel_all(llm);
    int frc = 0;
    while (e.nfinished > 0 && (frc = flush_counted(&e, &flush_failures)) != -2)
        if (frc) sleep_ms(50);
    drain_ready(&e); /* after the writes: what a write handed off is not started */
    for (size_t i = 0; i < e.nfinished; i++) free_item(&e, e.finished[i]);
    free(e.finished);
    forget_warnings(&e);
    free(e.warnings);
    if (store_work_release(st, run->id, env->owner))
        log_warn("run %lld: releasing claims: %s", (long long)run->id, store_errmsg(st));
    report(&e);
    for (size_t i = 0; i < e.nlanes; i++)
        if (e.lanes[i].begun && e.lanes[i].ops->end) e.lanes[i].ops->end(&e);
    if (e.fatal) {
        snprintf(err, errlen, "%s", e.fatal_msg);
        return -1;
    }
    return e.stopping ? 1 : 0;
}

int engine_run_phase(const run_env *env, store *st, llm_provider *llm, const run_record *run,
                     const phase_ops *ops, char *err, size_t errlen) {
    return engine_run(env, st, llm, run, &ops, 1, err, errlen);
}
