/* What sits on top of one Intercom fetch (intercom.c): the incremental watermark
 * (--since-last), the record of the last fetch, and the run's fetch step. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "source/intercom.h"
#include "util/jsonx.h"
#include "util/log.h"
#include "util/timeutil.h"

static void fail_result(intercom_result *res, const char *prefix, const char *msg) {
    memset(res, 0, sizeof *res);
    res->status = INTERCOM_FAILED;
    snprintf(res->error, sizeof res->error, "%s%s", prefix, msg);
}

int intercom_fetch_since_last(store *st, const intercom_options *o, int64_t initial_from,
                              int64_t *from_used, intercom_result *res) {
    int64_t from = 0;
    int rc = store_sync_get_int(st, INTERCOM_SYNC_KEY, &from);
    if (rc < 0) {
        fail_result(res, "store: ", store_errmsg(st));
        return res->status;
    }
    if (rc == STORE_NOTFOUND) {
        if (initial_from <= 0) {
            fail_result(res, "", "nothing fetched incrementally yet: the first --since-last "
                                   "fetch needs --days N (conversations updated in the last N days)");
            return res->status;
        }
        from = initial_from;
    }
    if (from_used) *from_used = from;
    /* Inclusive lower bound: conversations updated in the watermark's own second are
     * fetched again (unchanged ones cost nothing to store), none is skipped. */
    intercom_window w = {INTERCOM_UPDATED_AT, from, 0};
    intercom_fetch(st, o, &w, res);
    if (res->status != INTERCOM_DONE) return res->status;
    int64_t next = res->safe_watermark > from ? res->safe_watermark : from;
    if (store_sync_advance(st, INTERCOM_SYNC_KEY, next, wall_unix()) != STORE_OK) {
        snprintf(res->error, sizeof res->error, "store: %s", store_errmsg(st));
        res->status = INTERCOM_FAILED;
        return res->status;
    }
    if (intercom_record_last_fetch(st, &w, res) != STORE_OK)
        log_warn("intercom: recording the last fetch: %s", store_errmsg(st));
    return res->status;
}

int intercom_record_last_fetch(store *st, const intercom_window *w, const intercom_result *r) {
    json_t *o = json_pack(
        "{s:I,s:s,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:f}", "at",
        (json_int_t)wall_unix(), "field", w->field == INTERCOM_UPDATED_AT ? "updated_at" : "created_at",
        "from", (json_int_t)w->from, "to", (json_int_t)w->to, "pages", (json_int_t)r->pages,
        "seen", (json_int_t)r->seen, "passed", (json_int_t)r->passed, "inserted",
        (json_int_t)r->stats.inserted, "updated", (json_int_t)r->stats.updated, "unchanged",
        (json_int_t)r->stats.unchanged, "filtered", (json_int_t)r->stats.filtered, "rejected",
        (json_int_t)r->stats.rejected, "detail_failed", (json_int_t)r->detail_failed,
        "newest_updated_at", (json_int_t)r->newest_updated_at, "seconds", r->seconds);
    char *text = jx_dump(o);
    json_decref(o);
    int rc = store_sync_put(st, INTERCOM_LAST_FETCH_KEY, text, wall_unix());
    free(text);
    return rc;
}

/* ------------------------------------------------------------------ the run's step */

typedef struct run_ctx {
    store *st;
    int64_t run_id;
    const char *owner;
    int64_t last_beat;
    int64_t failures_recorded;
} run_ctx;

/* Every ~250 ms: the run's heartbeat (so a long fetch is not taken for an orphaned run)
 * and the database stop flag (a stop from another process or the API). */
static int run_tick(void *ctx) {
    run_ctx *c = ctx;
    int64_t now = wall_unix();
    if (now != c->last_beat) {
        c->last_beat = now;
        if (store_run_heartbeat(c->st, c->run_id, c->owner, now) != STORE_OK)
            log_warn("run %lld: heartbeat: %s", (long long)c->run_id, store_errmsg(c->st));
    }
    int stop = store_run_stop_requested(c->st, c->run_id);
    if (stop < 0) log_warn("run %lld: reading the stop flag: %s", (long long)c->run_id,
                           store_errmsg(c->st));
    return stop > 0;
}

static void run_failure(void *ctx, const char *id, const char *reason) {
    run_ctx *c = ctx;
    if (store_put_fetch_error(c->st, c->run_id, id, reason, wall_unix()) == STORE_OK)
        c->failures_recorded++;
    else
        log_warn("run %lld: recording a fetch failure: %s", (long long)c->run_id,
                 store_errmsg(c->st));
}

/* 1 when the run already selected its conversations (a resumed run): nothing to fetch. */
static int already_selected(store *st, int64_t run_id, int *out) {
    work_counts wc;
    if (store_work_counts(st, run_id, PHASE_CLASSIFICATION, &wc) != STORE_OK) return -1;
    *out = wc.pending + wc.claimed + wc.done + wc.failed > 0;
    return 0;
}

int intercom_fetch_for_run(store *st, const run_record *run, const char *owner,
                           atomic_int *stop_flag, char *err, size_t errlen) {
    intercom_options o;
    intercom_options_from_env(&o);
    if (!o.token || !o.token[0]) return 0; /* not configured: the run uses what is stored */
    int selected = 0;
    if (already_selected(st, run->id, &selected) != 0) {
        snprintf(err, errlen, "%s", store_errmsg(st));
        return -1;
    }
    if (selected) return 0;
    run_ctx ctx = {st, run->id, owner, 0, 0};
    o.concurrency = run->concurrency > 0 ? (int)run->concurrency : 20;
    o.max_conversations = run->max_conversations;
    o.stop_flag = stop_flag;
    o.tick = run_tick;
    o.tick_ctx = &ctx;
    o.on_failure = run_failure;
    o.failure_ctx = &ctx;
    /* The run's own window, the one selection uses next: one computation (at run
     * creation), not two. */
    intercom_window w = {INTERCOM_CREATED_AT, run->days > 0 ? run->date_from : 0, run->date_to};
    log_info("run %lld: fetching conversations created %lld..%lld from Intercom",
             (long long)run->id, (long long)w.from, (long long)w.to);
    intercom_result res;
    intercom_fetch(st, &o, &w, &res);
    if (res.status == INTERCOM_FAILED) {
        snprintf(err, errlen, "Intercom fetch failed: %s", res.error);
        run_failure(&ctx, "", res.error);
        return -1;
    }
    if (store_run_set_filtered(st, run->id, res.stats.filtered) != STORE_OK) {
        snprintf(err, errlen, "%s", store_errmsg(st));
        return -1;
    }
    if (res.status == INTERCOM_STOPPED) return 1;
    if (res.detail_failed > 0) {
        char warning[200];
        snprintf(warning, sizeof warning,
                 "%lld conversations could not be fetched from Intercom (failures, phase fetch)",
                 (long long)res.detail_failed);
        if (store_run_add_warning(st, run->id, warning) != STORE_OK)
            log_warn("run %lld: %s", (long long)run->id, store_errmsg(st));
    }
    if (intercom_record_last_fetch(st, &w, &res) != STORE_OK)
        log_warn("intercom: recording the last fetch: %s", store_errmsg(st));
    log_info("run %lld: Intercom: %lld pages, %lld passed the quality filter, %lld filtered, "
             "%lld detail failures, %.1fs", (long long)run->id, (long long)res.pages,
             (long long)res.passed, (long long)res.stats.filtered, (long long)res.detail_failed,
             res.seconds);
    return 0;
}
