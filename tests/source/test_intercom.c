/* The Intercom client against the fake Intercom server over real loopback sockets:
 * window bounds, pagination, the cap, quality filter counts, 429/5xx/timeout/malformed
 * recovery, 401 and 404, detail failure accounting, idempotent re-fetch, incremental
 * fetches and stopping. Expected values come from regenerating what the fake serves
 * (tests/support/intercom_fake.h), never from the client itself. */
#include "test.h"

#include <stdarg.h>
#include <stdlib.h>

#include "source/intercom.h"
#include "support/fixtures.h"
#include "support/intercom_fake.h"
#include "util/util.h"

#define SEED 11
#define BASE INT64_C(1769299200) /* 2026-01-25T00:00:00Z */
#define DAYS 30

typedef struct failure {
    char id[64];
    char reason[400];
} failure;

typedef struct fx {
    ifake fake;
    ifake_set set;
    char *db;
    store *st;
    intercom_options o;
    failure fails[16];
    int nfails;
} fx;

static void on_failure(void *ctx, const char *id, const char *reason) {
    fx *f = ctx;
    if (f->nfails < 16) {
        snprintf(f->fails[f->nfails].id, sizeof f->fails[0].id, "%s", id);
        snprintf(f->fails[f->nfails].reason, sizeof f->fails[0].reason, "%s", reason);
    }
    f->nfails++;
}

/* Starts a fake serving `count` conversations (extra fake arguments after count,
 * NULL-terminated), regenerates its data, opens a fresh database and sets client options
 * for fast tests (short backoff, seeded jitter). */
static int fx_start(fx *f, size_t count, ...) {
    memset(f, 0, sizeof *f);
    char n[32], seed[32], base[32], days[32];
    snprintf(n, sizeof n, "%zu", count);
    snprintf(seed, sizeof seed, "%d", SEED);
    snprintf(base, sizeof base, "%lld", (long long)BASE);
    snprintf(days, sizeof days, "%d", DAYS);
    const char *args[40] = {"--count", n, "--seed", seed, "--base-time", base, "--days", days};
    size_t k = 8;
    va_list ap;
    va_start(ap, count);
    const char *a;
    while ((a = va_arg(ap, const char *)) && k < 39) args[k++] = a;
    va_end(ap);
    args[k] = NULL;
    if (ifake_start(&f->fake, args)) return -1;
    if (ifake_set_build(&f->set, count, SEED, BASE, DAYS)) return -1;
    f->db = fx_db_url();
    f->st = fx_store_open(f->db);
    intercom_options_from_env(&f->o);
    f->o.token = "test-token";
    f->o.base_url = f->fake.base_url;
    f->o.concurrency = 8;
    f->o.backoff_base_ms = 5;
    f->o.backoff_cap_ms = 50;
    f->o.timeout_ms = 5000;
    f->o.seed = 42;
    f->o.on_failure = on_failure;
    f->o.failure_ctx = f;
    return 0;
}

static void fx_stop(fx *f) {
    ifake_stop(&f->fake);
    ifake_set_free(&f->set);
    if (f->st) store_close(f->st);
    free(f->db);
}

static const intercom_window ALL = {INTERCOM_CREATED_AT, 0, 0};

static int in_window(const ifake_conv *c, int64_t from, int64_t to) {
    return (from <= 0 || c->created_at >= from) && (to <= 0 || c->created_at <= to);
}

static size_t count_where(const ifake_set *s, int64_t from, int64_t to, int passing) {
    size_t n = 0;
    for (size_t i = 0; i < s->n; i++)
        if (in_window(&s->v[i], from, to) && (s->v[i].verdict == QUALITY_OK) == passing) n++;
    return n;
}

/* 1 when the stored record of c is its full thread (same content hash as conv_prepare
 * of the full conversation), 0 when absent, -1 when stored with other content. */
static int stored_as_full(store *st, const ifake_conv *c) {
    conv_record r;
    int rc = store_conv_get(st, c->id, &r);
    if (rc != STORE_FOUND) return 0;
    int same = strcmp(r.content_hash, c->content_hash) == 0;
    conv_record_free(&r);
    return same ? 1 : -1;
}

/* Every passing conversation of the window is stored in full, nothing else is. */
static void check_store_holds_exactly(fx *f, int64_t from, int64_t to) {
    size_t want = 0, ok = 0, extra = 0;
    for (size_t i = 0; i < f->set.n; i++) {
        const ifake_conv *c = &f->set.v[i];
        int expected = in_window(c, from, to) && c->verdict == QUALITY_OK;
        int got = stored_as_full(f->st, c);
        want += expected;
        if (expected && got == 1) ok++;
        if (!expected && got != 0) extra++;
    }
    CHECK_INT(ok, want);
    CHECK_INT(extra, 0);
    CHECK_INT(store_conv_count(f->st), (int64_t)want);
}

/* The passing conversation of rank `rank` by (created_at, id), oldest first. */
static const ifake_conv *passing_by_rank(const ifake_set *s, size_t rank) {
    const ifake_conv **p = xcalloc(s->n, sizeof *p);
    size_t n = 0;
    for (size_t i = 0; i < s->n; i++)
        if (s->v[i].verdict == QUALITY_OK) p[n++] = &s->v[i];
    /* insertion sort by created_at: small sets */
    for (size_t i = 1; i < n; i++)
        for (size_t j = i; j > 0 && (p[j - 1]->created_at > p[j]->created_at ||
                                     (p[j - 1]->created_at == p[j]->created_at &&
                                      p[j - 1]->idnum > p[j]->idnum));
             j--) {
            const ifake_conv *t = p[j];
            p[j] = p[j - 1];
            p[j - 1] = t;
        }
    const ifake_conv *out = rank < n ? p[rank] : NULL;
    free(p);
    return out;
}

static json_t *last_search(fx *f) {
    json_t *s = ifake_stats(&f->fake);
    const char *body = jx_str(s, "last_search");
    json_t *out = body ? json_loads(body, 0, NULL) : NULL;
    json_decref(s);
    return out;
}

/* ------------------------------------------------------------------ window and paging */

TEST(window_bounds_are_inclusive_utc_seconds_sent_as_strict_operators) {
    fx f;
    REQUIRE(fx_start(&f, 300, NULL) == 0);
    const ifake_conv *lo = passing_by_rank(&f.set, 60), *hi = passing_by_rank(&f.set, 200);
    REQUIRE(lo && hi);
    intercom_window w = {INTERCOM_CREATED_AT, lo->created_at, hi->created_at};
    f.o.per_page = 25;
    intercom_result r;
    CHECK_INT(intercom_fetch(f.st, &f.o, &w, &r), INTERCOM_DONE);
    CHECK_INT(r.stats.inserted, (int64_t)count_where(&f.set, w.from, w.to, 1));
    CHECK_INT(r.stats.filtered, (int64_t)count_where(&f.set, w.from, w.to, 0));
    /* both boundary conversations are inside */
    CHECK_INT(stored_as_full(f.st, lo), 1);
    CHECK_INT(stored_as_full(f.st, hi), 1);
    check_store_holds_exactly(&f, w.from, w.to);
    /* the query on the wire: created_at > from-1 AND created_at < to+1, newest first */
    json_t *q = last_search(&f);
    json_t *conds = jx_arr(jx_obj(q, "query"), "value");
    CHECK_STR(jx_str(jx_obj(q, "query"), "operator"), "AND");
    CHECK_STR(jx_str(json_array_get(conds, 0), "operator"), ">");
    CHECK_INT(jx_int(json_array_get(conds, 0), "value", 0), lo->created_at - 1);
    CHECK_STR(jx_str(json_array_get(conds, 1), "operator"), "<");
    CHECK_INT(jx_int(json_array_get(conds, 1), "value", 0), hi->created_at + 1);
    CHECK_STR(jx_str(jx_obj(q, "sort"), "field"), "created_at");
    CHECK_STR(jx_str(jx_obj(q, "sort"), "order"), "descending");
    CHECK_INT(jx_int(jx_obj(q, "pagination"), "per_page", 0), 25);
    json_decref(q);
    fx_stop(&f);
}

TEST(pagination_follows_the_cursor_across_many_pages_without_duplicates) {
    fx f;
    REQUIRE(fx_start(&f, 500, NULL) == 0);
    f.o.per_page = 7;
    intercom_result r;
    CHECK_INT(intercom_fetch(f.st, &f.o, &ALL, &r), INTERCOM_DONE);
    size_t passing = count_where(&f.set, 0, 0, 1);
    CHECK_INT(r.pages, (500 + 6) / 7);
    CHECK_INT(ifake_stat(&f.fake, "search_requests"), (500 + 6) / 7);
    CHECK_INT(r.seen, 500);
    CHECK_INT(r.passed, (int64_t)passing);
    CHECK_INT(r.stats.inserted, (int64_t)passing);
    CHECK_INT(ifake_stat(&f.fake, "detail_requests"), (int64_t)passing);
    CHECK_INT(ifake_stat(&f.fake, "bad_requests"), 0);
    CHECK(ifake_stat(&f.fake, "max_in_flight") <= 8);
    check_store_holds_exactly(&f, 0, 0);
    fx_stop(&f);
}

TEST(max_counts_passing_conversations_and_keeps_the_newest) {
    fx f;
    REQUIRE(fx_start(&f, 300, NULL) == 0);
    f.o.per_page = 10;
    f.o.max_conversations = 25;
    intercom_result r;
    CHECK_INT(intercom_fetch(f.st, &f.o, &ALL, &r), INTERCOM_DONE);
    CHECK_INT(r.passed, 25);
    CHECK_INT(r.stats.inserted, 25);
    CHECK(r.capped);
    CHECK_INT(ifake_stat(&f.fake, "detail_requests"), 25);
    /* the 25 newest passing ones (the fake breaks created_at ties by id, likewise) */
    size_t npass = count_where(&f.set, 0, 0, 1);
    int newest_ok = 1;
    for (size_t rank = npass - 25; rank < npass; rank++)
        if (stored_as_full(f.st, passing_by_rank(&f.set, rank)) != 1) newest_ok = 0;
    CHECK(newest_ok);
    CHECK_INT(store_conv_count(f.st), 25);
    /* only the pages needed to find them: every conversation newer than the 25th
     * passing one was looked at, and at most one page more */
    const ifake_conv *last = passing_by_rank(&f.set, npass - 25);
    int64_t newer = 0;
    for (size_t i = 0; i < f.set.n; i++) newer += f.set.v[i].created_at >= last->created_at;
    CHECK_INT(r.pages, (newer + 9) / 10);
    fx_stop(&f);
}

TEST(quality_filter_counts_match_with_reasons_and_parsed_fields_are_stored) {
    fx f;
    REQUIRE(fx_start(&f, 400, NULL) == 0);
    intercom_result r;
    CHECK_INT(intercom_fetch(f.st, &f.o, &ALL, &r), INTERCOM_DONE);
    int64_t by[QUALITY_VERDICT_COUNT] = {0};
    int64_t truth_passing = 0;
    for (size_t i = 0; i < f.set.n; i++) {
        by[f.set.v[i].verdict]++;
        truth_passing += f.set.v[i].truth_passes;
    }
    /* the oracle agrees with the generator's intent */
    CHECK_INT(by[QUALITY_OK], truth_passing);
    CHECK(by[QUALITY_OK] < 400);
    CHECK_INT(r.passed, by[QUALITY_OK]);
    CHECK_INT(r.stats.filtered, 400 - by[QUALITY_OK]);
    for (int v = 1; v < QUALITY_VERDICT_COUNT; v++) {
        if (r.stats.filtered_by[v] != by[v])
            printf("    %s: %lld != %lld\n", quality_verdict_name((enum quality_verdict)v),
                   (long long)r.stats.filtered_by[v], (long long)by[v]);
        CHECK_INT(r.stats.filtered_by[v], by[v]);
    }
    /* subject, contact external id and tags are stored (weak point 7) */
    int with_tags = 0, with_ext = 0, with_subject = 0, mismatches = 0;
    for (size_t i = 0; i < f.set.n; i++) {
        const ifake_conv *c = &f.set.v[i];
        if (c->verdict != QUALITY_OK) continue;
        conv_record rec;
        if (store_conv_get(f.st, c->id, &rec) != STORE_FOUND) {
            mismatches++;
            continue;
        }
        if (strcmp(rec.tags_json ? rec.tags_json : "", c->tags_json ? c->tags_json : "") ||
            strcmp(rec.external_id ? rec.external_id : "", c->external_id ? c->external_id : "") ||
            strcmp(rec.subject ? rec.subject : "", c->subject ? c->subject : ""))
            mismatches++;
        with_tags += rec.tags_json && strcmp(rec.tags_json, "[]") != 0;
        with_ext += rec.external_id && rec.external_id[0];
        with_subject += rec.subject && rec.subject[0];
        conv_record_free(&rec);
    }
    CHECK_INT(mismatches, 0);
    CHECK(with_tags > 0);
    CHECK(with_ext > 0);
    CHECK(with_subject > 0);
    fx_stop(&f);
}

/* ------------------------------------------------------------------ faults */

static void check_rate_limit_recovery(const char *retry_after_flag) {
    fx f;
    REQUIRE(fx_start(&f, 60, "--rate-limit", "20", retry_after_flag, NULL) == 0);
    int64_t t0 = mono_ms();
    intercom_result r;
    CHECK_INT(intercom_fetch(f.st, &f.o, &ALL, &r), INTERCOM_DONE);
    int64_t elapsed = mono_ms() - t0;
    CHECK_INT(r.detail_failed, 0);
    CHECK_INT(r.stats.inserted, (int64_t)count_where(&f.set, 0, 0, 1));
    int64_t limited = ifake_stat(&f.fake, "rate_limited");
    CHECK(limited > 0);
    CHECK_INT(r.rate_limited, limited);
    /* more than 40 requests at 20 per wall-clock second: at least two window changes */
    CHECK(r.requests - limited > 40);
    CHECK(elapsed >= 1000);
    /* the client pauses as a whole: at most one burst of 429s (<= concurrency) per
     * window, not a retry storm */
    CHECK(limited <= 8 * (elapsed / 1000 + 2));
    check_store_holds_exactly(&f, 0, 0);
    fx_stop(&f);
}

TEST(rate_limit_429_waits_until_x_ratelimit_reset) { check_rate_limit_recovery(NULL); }

TEST(rate_limit_429_honours_retry_after) { check_rate_limit_recovery("--retry-after"); }

TEST(server_errors_timeouts_and_malformed_answers_are_retried) {
    fx f;
    REQUIRE(fx_start(&f, 150, "--fault-5xx", "0.2", "--fault-timeout", "0.05",
                     "--fault-malformed", "0.1", NULL) == 0);
    f.o.per_page = 20;
    f.o.timeout_ms = 300;
    f.o.max_retries = 12;
    intercom_result r;
    CHECK_INT(intercom_fetch(f.st, &f.o, &ALL, &r), INTERCOM_DONE);
    CHECK_INT(r.detail_failed, 0);
    int64_t f5 = ifake_stat(&f.fake, "faults_5xx"), ft = ifake_stat(&f.fake, "faults_timeout"),
            fm = ifake_stat(&f.fake, "faults_malformed");
    CHECK(f5 > 0);
    CHECK(ft > 0);
    CHECK(fm > 0);
    /* every fault cost exactly one retry, nothing else was retried */
    CHECK_INT(r.retries, f5 + ft + fm);
    CHECK_INT(r.pages, (150 + 19) / 20);
    check_store_holds_exactly(&f, 0, 0);
    fx_stop(&f);
}

TEST(unauthorized_fails_at_once_naming_the_cause) {
    fx f;
    REQUIRE(fx_start(&f, 50, "--token", "the-right-one", NULL) == 0);
    intercom_result r;
    CHECK_INT(intercom_fetch(f.st, &f.o, &ALL, &r), INTERCOM_FAILED);
    CHECK(strncmp(r.error, "Intercom rejected the access token (401)", 40) == 0);
    CHECK_INT(ifake_stat(&f.fake, "unauthorized"), 1); /* never retried */
    CHECK_INT(r.requests, 1);
    CHECK_INT(store_conv_count(f.st), 0);
    fx_stop(&f);
}

TEST(a_wrong_base_url_fails_with_404_and_says_so) {
    fx f;
    REQUIRE(fx_start(&f, 20, NULL) == 0);
    char base[96];
    snprintf(base, sizeof base, "%s/v9/", f.fake.base_url);
    f.o.base_url = base;
    intercom_result r;
    CHECK_INT(intercom_fetch(f.st, &f.o, &ALL, &r), INTERCOM_FAILED);
    CHECK(strstr(r.error, "404") != NULL);
    CHECK(strstr(r.error, "INTERCOM_BASE_URL") != NULL);
    CHECK(strstr(r.error, "/v9/conversations/search") != NULL);
    CHECK_INT(ifake_stat(&f.fake, "not_found"), 1);
    /* and without a token there is no request at all */
    f.o.token = "";
    CHECK_INT(intercom_fetch(f.st, &f.o, &ALL, &r), INTERCOM_FAILED);
    CHECK_STR(r.error, "INTERCOM_ACCESS_TOKEN is not set");
    fx_stop(&f);
}

TEST(failed_detail_fetches_are_retried_counted_and_never_stored_from_the_summary) {
    ifake_set probe;
    REQUIRE(ifake_set_build(&probe, 80, SEED, BASE, DAYS) == 0);
    const char *a = NULL, *b = NULL;
    for (size_t i = 0; i < probe.n && !b; i++)
        if (probe.v[i].verdict == QUALITY_OK) {
            if (!a) a = probe.v[i].id;
            else b = probe.v[i].id;
        }
    REQUIRE(a && b);
    char spec[160];
    snprintf(spec, sizeof spec, "%s:500,%s:404", a, b);
    fx f;
    REQUIRE(fx_start(&f, 80, "--fail-ids", spec, NULL) == 0);
    f.o.max_retries = 2;
    intercom_result r;
    CHECK_INT(intercom_fetch(f.st, &f.o, &ALL, &r), INTERCOM_DONE);
    CHECK_INT(r.detail_failed, 2);
    /* 500: three attempts; 404: one (a 4xx is not retried) */
    CHECK_INT(ifake_stat(&f.fake, "injected_failures"), 4);
    CHECK_INT(r.retries, 2);
    REQUIRE(f.nfails == 2);
    int seen500 = 0, seen404 = 0;
    for (int i = 0; i < 2; i++) {
        if (!strcmp(f.fails[i].id, a)) {
            seen500 = 1;
            CHECK(strstr(f.fails[i].reason, "HTTP 500") != NULL);
            CHECK(strstr(f.fails[i].reason, "after 3 attempts") != NULL);
        } else if (!strcmp(f.fails[i].id, b)) {
            seen404 = 1;
            CHECK(strstr(f.fails[i].reason, "HTTP 404") != NULL);
        }
    }
    CHECK(seen500 && seen404);
    conv_record rec;
    CHECK_INT(store_conv_get(f.st, a, &rec), STORE_NOTFOUND);
    CHECK_INT(store_conv_get(f.st, b, &rec), STORE_NOTFOUND);
    CHECK_INT(r.stats.inserted, (int64_t)count_where(&f.set, 0, 0, 1) - 2);
    fx_stop(&f);
    ifake_set_free(&probe);
}

/* ------------------------------------------------------------------ re-fetching */

TEST(refetching_is_idempotent_and_updates_changed_conversations_in_place) {
    fx f;
    REQUIRE(fx_start(&f, 120, NULL) == 0);
    int64_t passing = (int64_t)count_where(&f.set, 0, 0, 1);
    intercom_result r;
    CHECK_INT(intercom_fetch(f.st, &f.o, &ALL, &r), INTERCOM_DONE);
    CHECK_INT(r.stats.inserted, passing);
    CHECK_INT(intercom_fetch(f.st, &f.o, &ALL, &r), INTERCOM_DONE);
    CHECK_INT(r.stats.inserted, 0);
    CHECK_INT(r.stats.updated, 0);
    CHECK_INT(r.stats.unchanged, passing);
    json_t *t = ifake_post(&f.fake, "/_touch?n=3");
    REQUIRE(json_array_size(jx_arr(t, "touched")) == 3);
    CHECK_INT(intercom_fetch(f.st, &f.o, &ALL, &r), INTERCOM_DONE);
    CHECK_INT(r.stats.inserted, 0);
    CHECK_INT(r.stats.updated, 3);
    CHECK_INT(r.stats.unchanged, passing - 3);
    CHECK_INT(store_conv_count(f.st), passing);
    conv_record rec;
    const char *id = json_string_value(json_array_get(jx_arr(t, "touched"), 0));
    REQUIRE(store_conv_get(f.st, id, &rec) == STORE_FOUND);
    CHECK(strstr(rec.transcript, "this is fixed now") != NULL);
    CHECK_INT(rec.updated_at, jx_int(t, "updated_at", 0));
    conv_record_free(&rec);
    json_decref(t);
    fx_stop(&f);
}

TEST(since_last_fetches_only_what_changed_and_moves_the_watermark) {
    fx f;
    REQUIRE(fx_start(&f, 150, NULL) == 0);
    int64_t passing = (int64_t)count_where(&f.set, 0, 0, 1);
    intercom_result r;
    int64_t from = 0, mark = 0;
    /* no state yet and no starting point: refused */
    CHECK_INT(intercom_fetch_since_last(f.st, &f.o, 0, &from, &r), INTERCOM_FAILED);
    CHECK(strstr(r.error, "--days") != NULL);
    CHECK_INT(intercom_fetch_since_last(f.st, &f.o, 1, &from, &r), INTERCOM_DONE);
    CHECK_INT(from, 1);
    CHECK_INT(r.stats.inserted, passing);
    int64_t newest = ifake_stat(&f.fake, "max_updated_at");
    REQUIRE(store_sync_get_int(f.st, INTERCOM_SYNC_KEY, &mark) == STORE_FOUND);
    CHECK_INT(mark, newest);
    json_t *q = last_search(&f);
    CHECK_STR(jx_str(json_array_get(jx_arr(jx_obj(q, "query"), "value"), 0), "field"), "updated_at");
    CHECK_STR(jx_str(jx_obj(q, "sort"), "order"), "ascending");
    json_decref(q);

    /* three conversations change: only they (and the watermark's own second) come back */
    json_t *t = ifake_post(&f.fake, "/_touch?n=3");
    REQUIRE(json_array_size(jx_arr(t, "touched")) == 3);
    json_decref(ifake_post(&f.fake, "/_reset"));
    int64_t at_mark = 0;
    for (size_t i = 0; i < f.set.n; i++) at_mark += f.set.v[i].updated_at == mark;
    CHECK_INT(intercom_fetch_since_last(f.st, &f.o, 0, &from, &r), INTERCOM_DONE);
    CHECK_INT(from, mark);
    CHECK_INT(r.seen, 3 + at_mark);
    CHECK_INT(r.stats.updated, 3);
    CHECK_INT(r.stats.inserted, 0);
    CHECK(ifake_stat(&f.fake, "detail_requests") <= 3 + at_mark);
    REQUIRE(store_sync_get_int(f.st, INTERCOM_SYNC_KEY, &mark) == STORE_FOUND);
    CHECK_INT(mark, jx_int(t, "updated_at", 0));
    json_decref(t);
    /* nothing new: nothing updated */
    CHECK_INT(intercom_fetch_since_last(f.st, &f.o, 0, &from, &r), INTERCOM_DONE);
    CHECK_INT(r.stats.updated + r.stats.inserted, 0);
    fx_stop(&f);
}

TEST(a_failed_detail_holds_the_watermark_so_the_next_incremental_fetch_retries_it) {
    ifake_set probe;
    REQUIRE(ifake_set_build(&probe, 100, SEED, BASE, DAYS) == 0);
    /* a passing conversation that is not the most recently updated */
    const ifake_conv *victim = NULL;
    int64_t newest = 0;
    for (size_t i = 0; i < probe.n; i++)
        if (probe.v[i].updated_at > newest) newest = probe.v[i].updated_at;
    for (size_t i = 0; i < probe.n && !victim; i++)
        if (probe.v[i].verdict == QUALITY_OK && probe.v[i].updated_at < newest - 86400) victim = &probe.v[i];
    REQUIRE(victim != NULL);
    char spec[96];
    snprintf(spec, sizeof spec, "%s:503", victim->id);
    fx f;
    REQUIRE(fx_start(&f, 100, "--fail-ids", spec, NULL) == 0);
    f.o.max_retries = 1;
    intercom_result r;
    int64_t from = 0, mark = 0;
    CHECK_INT(intercom_fetch_since_last(f.st, &f.o, 1, &from, &r), INTERCOM_DONE);
    CHECK_INT(r.detail_failed, 1);
    REQUIRE(store_sync_get_int(f.st, INTERCOM_SYNC_KEY, &mark) == STORE_FOUND);
    CHECK_INT(mark, victim->updated_at);
    json_decref(ifake_post(&f.fake, "/_reset"));
    CHECK_INT(intercom_fetch_since_last(f.st, &f.o, 0, &from, &r), INTERCOM_DONE);
    CHECK_INT(from, victim->updated_at);
    CHECK_INT(ifake_stat(&f.fake, "injected_failures"), 2); /* asked again */
    fx_stop(&f);
    ifake_set_free(&probe);
}

/* ------------------------------------------------------------------ stopping */

typedef struct stopper {
    atomic_int flag;
    int64_t at_ms;
} stopper;

static void stop_after_two_pages(void *ctx, const intercom_progress *p) {
    stopper *s = ctx;
    if (p->pages >= 2 && !atomic_load(&s->flag)) {
        s->at_ms = mono_ms();
        atomic_store(&s->flag, 1);
    }
}

TEST(stop_during_fetch_cancels_in_flight_work_and_keeps_what_was_stored) {
    fx f;
    REQUIRE(fx_start(&f, 400, "--latency-ms", "40", NULL) == 0);
    stopper s = {0, 0};
    f.o.per_page = 20;
    f.o.concurrency = 4;
    f.o.stop_flag = &s.flag;
    f.o.progress = stop_after_two_pages;
    f.o.progress_ctx = &s;
    intercom_result r;
    int64_t from = 0;
    CHECK_INT(intercom_fetch_since_last(f.st, &f.o, 1, &from, &r), INTERCOM_STOPPED);
    int64_t stop_latency = mono_ms() - s.at_ms;
    CHECK(stop_latency < 500); /* no waiting for in-flight requests */
    CHECK(r.pages >= 2 && r.pages < 20);
    int64_t stored = store_conv_count(f.st);
    CHECK_INT(stored, r.stats.inserted);
    CHECK(stored < (int64_t)count_where(&f.set, 0, 0, 1));
    /* a stopped incremental fetch does not move the watermark */
    int64_t mark;
    CHECK_INT(store_sync_get_int(f.st, INTERCOM_SYNC_KEY, &mark), STORE_NOTFOUND);
    /* the cancelled requests are gone from the server too */
    int64_t deadline = mono_ms() + 3000, in_flight = -1;
    while (mono_ms() < deadline && (in_flight = ifake_stat(&f.fake, "in_flight")) > 1) sleep_ms(20);
    CHECK_INT(in_flight, 1); /* the /_stats request itself */
    fx_stop(&f);
}

TEST(forbidden_on_any_request_stops_the_fetch_naming_the_cause) {
    ifake_set probe;
    REQUIRE(ifake_set_build(&probe, 60, SEED, BASE, DAYS) == 0);
    const char *victim = NULL;
    for (size_t i = 0; i < probe.n && !victim; i++)
        if (probe.v[i].verdict == QUALITY_OK) victim = probe.v[i].id;
    REQUIRE(victim != NULL);
    char spec[96];
    snprintf(spec, sizeof spec, "%s:403", victim);
    fx f;
    REQUIRE(fx_start(&f, 60, "--fail-ids", spec, NULL) == 0);
    intercom_result r;
    CHECK_INT(intercom_fetch(f.st, &f.o, &ALL, &r), INTERCOM_FAILED);
    CHECK(strncmp(r.error, "Intercom refused access (403)", 29) == 0);
    CHECK_INT(ifake_stat(&f.fake, "injected_failures"), 1); /* not retried */
    CHECK_INT(r.retries, 0);
    fx_stop(&f);
    ifake_set_free(&probe);
}

TEST(sync_watermark_only_moves_forward) {
    char *db = fx_db_url();
    store *st = fx_store_open(db);
    int64_t v = 0;
    CHECK_INT(store_sync_get_int(st, "k", &v), STORE_NOTFOUND);
    CHECK_INT(store_sync_advance(st, "k", 100, 1), STORE_OK);
    CHECK_INT(store_sync_advance(st, "k", 90, 2), STORE_OK);
    CHECK_INT(store_sync_get_int(st, "k", &v), STORE_FOUND);
    CHECK_INT(v, 100);
    CHECK_INT(store_sync_advance(st, "k", 1000, 3), STORE_OK);
    CHECK_INT(store_sync_get_int(st, "k", &v), STORE_FOUND);
    CHECK_INT(v, 1000);
    CHECK_INT(store_sync_put(st, "text", "not a number", 4), STORE_OK);
    CHECK_INT(store_sync_get_int(st, "text", &v), STORE_ERR);
    char *s = NULL;
    CHECK_INT(store_sync_get(st, "text", &s), STORE_FOUND);
    CHECK_STR(s, "not a number");
    free(s);
    store_close(st);
    free(db);
}
