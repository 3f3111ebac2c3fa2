/* The store against a real database (SQLite file; PostgreSQL when FEEDLINE_TEST_PG). */
#include "test.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "store/db.h"
#include "store/store.h"
#include "support/fixtures.h"
#include "util/mem.h"

static run_params default_params(void) {
    run_params p = {0};
    p.concurrency = 4;
    p.llm = "local";
    return p;
}

static void add_convs(store *s, int n, int64_t t0) {
    for (int i = 0; i < n; i++) {
        conv_record r;
        char id[32], body[64];
        snprintf(id, sizeof id, "c%03d", i);
        snprintf(body, sizeof body, "conversation number %d body text", i);
        fx_record(&r, id, t0 + i, body);
        enum upsert_outcome o;
        CHECK_INT(store_conv_upsert(s, &r, 1000, &o), STORE_OK);
        conv_record_free(&r);
    }
}

/* A run with the default parameters, started at started; its id. */
static int64_t create_run(store *s, int64_t started) {
    run_params p = default_params();
    int64_t run = 0;
    CHECK_INT(store_run_create(s, &p, started, &run, NULL), STORE_OK);
    return run;
}

TEST(open_migrates_once_and_reopens) {
    char *url = fx_db_url();
    store *s = fx_store_open(url);
    const char *pg = getenv("FEEDLINE_TEST_PG");
    CHECK_STR(store_backend(s), pg && pg[0] ? "postgres" : "sqlite");
    CHECK_INT(store_conv_count(s), 0);
    store_close(s);
    s = fx_store_open(url); /* second open must not re-apply migration 1 */
    CHECK_INT(store_conv_count(s), 0);
    CHECK_INT(store_ping(s), STORE_OK);
    store_close(s);
    free(url);
}

TEST(conversation_upsert_reports_inserted_unchanged_updated) {
    char *url = fx_db_url();
    store *s = fx_store_open(url);
    conv_record r;
    fx_record(&r, "42", 1700000000, "my pins are not posting");
    enum upsert_outcome o;
    CHECK_INT(store_conv_upsert(s, &r, 1, &o), STORE_OK);
    CHECK_INT(o, UPSERT_INSERTED);
    CHECK_INT(store_conv_upsert(s, &r, 2, &o), STORE_OK);
    CHECK_INT(o, UPSERT_UNCHANGED);
    free(r.body);
    r.body = xstrdup("my pins are not posting at all");
    memcpy(r.content_hash, "ffff", 5);
    CHECK_INT(store_conv_upsert(s, &r, 3, &o), STORE_OK);
    CHECK_INT(o, UPSERT_UPDATED);
    conv_record g;
    CHECK_INT(store_conv_get(s, "42", &g), STORE_FOUND);
    CHECK_STR(g.body, "my pins are not posting at all");
    CHECK_INT(g.created_at, 1700000000);
    conv_record_free(&g);
    CHECK_INT(store_conv_get(s, "nope", &g), STORE_NOTFOUND);
    CHECK_INT(store_conv_count(s), 1);
    conv_record_free(&r);
    store_close(s);
    free(url);
}

TEST(only_one_active_run_and_lifecycle_transitions) {
    char *url = fx_db_url();
    store *s = fx_store_open(url);
    run_params p = default_params();
    int64_t a = 0, b = 0, active = 0;
    CHECK_INT(store_run_create(s, &p, 100, &a, NULL), STORE_OK);
    CHECK_INT(store_run_create(s, &p, 101, &b, &active), STORE_BUSY);
    CHECK_INT(active, a);
    /* stopping still blocks a new run */
    CHECK_INT(store_run_request_stop(s, a), STORE_OK);
    CHECK_INT(store_run_request_stop(s, a), STORE_CONFLICT);
    CHECK_INT(store_run_stop_requested(s, a), 1);
    CHECK_INT(store_run_create(s, &p, 102, &b, &active), STORE_BUSY);
    /* a completed finish of a stopping run becomes stopped */
    CHECK_INT(store_run_finish(s, a, "completed", NULL, 103), STORE_OK);
    run_record r;
    CHECK_INT(store_run_get(s, a, &r), STORE_FOUND);
    CHECK_STR(r.status, "stopped");
    CHECK_INT(r.completed_at, 103);
    run_record_free(&r);
    CHECK_INT(store_run_finish(s, a, "completed", NULL, 104), STORE_CONFLICT);
    CHECK_INT(store_run_create(s, &p, 105, &b, NULL), STORE_OK);
    /* resuming a while b is active is refused */
    CHECK_INT(store_run_resume(s, a, 106), STORE_BUSY);
    CHECK_INT(store_run_finish(s, b, "completed", NULL, 107), STORE_OK);
    CHECK_INT(store_run_get(s, b, &r), STORE_FOUND);
    CHECK_STR(r.status, "completed");
    CHECK_STR(r.current_phase, "completed");
    run_record_free(&r);
    CHECK_INT(store_run_resume(s, b, 108), STORE_CONFLICT); /* completed runs don't resume */
    CHECK_INT(store_run_resume(s, a, 109), STORE_OK);
    CHECK_INT(store_run_get(s, a, &r), STORE_FOUND);
    CHECK_STR(r.status, "running");
    CHECK_INT(r.completed_at, 0);
    run_record_free(&r);
    CHECK_INT(store_run_resume(s, 999, 110), STORE_NOTFOUND);
    CHECK_INT(store_run_request_stop(s, 999), STORE_NOTFOUND);
    run_record *list = NULL;
    size_t n = 0;
    CHECK_INT(store_run_list(s, 10, 0, &list, &n), STORE_OK);
    CHECK_INT(n, 2);
    CHECK_INT(list[0].id, b); /* newest first */
    for (size_t i = 0; i < n; i++) run_record_free(&list[i]);
    free(list);
    store_close(s);
    free(url);
}

TEST(processes_opening_a_fresh_database_together_migrate_it_once) {
    char *url = fx_db_url();
    enum { N = 6 };
    pid_t pids[N];
    for (int i = 0; i < N; i++) {
        pids[i] = fork();
        if (pids[i] == 0) {
            store *c = NULL;
            char err[256];
            int rc = store_open(url, &c, err, sizeof err);
            if (rc) fprintf(stdout, "    child %d: %s\n", i, err);
            store_close(c);
            _exit(rc == STORE_OK ? 0 : 1);
        }
    }
    int opened = 0;
    for (int i = 0; i < N; i++) {
        int st = 0;
        waitpid(pids[i], &st, 0);
        opened += WIFEXITED(st) && WEXITSTATUS(st) == 0;
    }
    CHECK_INT(opened, N);
    char err[256];
    db_t *db = db_open(url, err, sizeof err);
    REQUIRE(db);
    db_stmt *q = db_prepare(db, "SELECT COUNT(*), COUNT(DISTINCT version) FROM schema_version");
    REQUIRE(q);
    REQUIRE(db_step(q) == DB_ROW);
    CHECK(db_col_int(q, 0) >= 1);
    CHECK_INT(db_col_int(q, 0), db_col_int(q, 1)); /* no migration applied twice */
    db_finalize(q);
    db_close(db);
    free(url);
}

TEST(concurrent_starts_from_processes_have_one_winner) {
    char *url = fx_db_url();
    store *s = fx_store_open(url);
    store_close(s);
    enum { N = 6 };
    pid_t pids[N];
    for (int i = 0; i < N; i++) {
        pids[i] = fork();
        if (pids[i] == 0) {
            store *c = NULL;
            char err[256];
            if (store_open(url, &c, err, sizeof err)) _exit(3);
            run_params p = default_params();
            int64_t id;
            int rc = store_run_create(c, &p, 100, &id, NULL);
            store_close(c);
            _exit(rc == STORE_OK ? 0 : rc == STORE_BUSY ? 1 : 2);
        }
    }
    int winners = 0, losers = 0;
    for (int i = 0; i < N; i++) {
        int st = 0;
        waitpid(pids[i], &st, 0);
        if (WIFEXITED(st) && WEXITSTATUS(st) == 0) winners++;
        else if (WIFEXITED(st) && WEXITSTATUS(st) == 1) losers++;
    }
    CHECK_INT(winners, 1);
    CHECK_INT(losers, N - 1);
    free(url);
}

TEST(work_queue_claims_leases_and_resume_reset) {
    char *url = fx_db_url();
    store *s = fx_store_open(url);
    add_convs(s, 10, 5000);
    int64_t run = create_run(s, 6000);
    int64_t count = 0;
    /* window [5003, 5008], newest first, capped at 4 */
    CHECK_INT(store_work_seed_conversations(s, run, 5003, 5008, 4, &count), STORE_OK);
    CHECK_INT(count, 4);
    /* seeding again is a no-op even with another window */
    CHECK_INT(store_work_seed_conversations(s, run, 0, 9999, 0, &count), STORE_OK);
    CHECK_INT(count, 4);
    char **ids;
    size_t n;
    CHECK_INT(store_work_claim(s, run, PHASE_CLASSIFICATION, "w1", 3, 100, 60, &ids, &n), STORE_OK);
    CHECK_INT(n, 3);
    CHECK_STR(ids[0], "c005");
    CHECK_STR(ids[2], "c007");
    for (size_t i = 0; i < n; i++) free(ids[i]);
    free(ids);
    CHECK_INT(store_work_claim(s, run, PHASE_CLASSIFICATION, "w2", 10, 100, 60, &ids, &n), STORE_OK);
    CHECK_INT(n, 1);
    CHECK_STR(ids[0], "c008");
    free(ids[0]);
    free(ids);
    /* w1's lease expires at 160: a claim at 200 takes its items */
    CHECK_INT(store_work_claim(s, run, PHASE_CLASSIFICATION, "w2", 10, 200, 60, &ids, &n), STORE_OK);
    CHECK_INT(n, 4);
    for (size_t i = 0; i < n; i++) free(ids[i]);
    free(ids);
    work_counts c;
    CHECK_INT(store_work_counts(s, run, PHASE_CLASSIFICATION, &c), STORE_OK);
    CHECK_INT(c.claimed, 4);
    CHECK_INT(store_work_finish(s, run, PHASE_CLASSIFICATION, "c005", "w2", 1), STORE_OK);
    CHECK_INT(store_work_release(s, run, "w2"), STORE_OK);
    CHECK_INT(store_work_counts(s, run, PHASE_CLASSIFICATION, &c), STORE_OK);
    CHECK_INT(c.pending, 3);
    CHECK_INT(c.failed, 1);
    CHECK_INT(store_work_reset_for_resume(s, run), STORE_OK);
    CHECK_INT(store_work_counts(s, run, PHASE_CLASSIFICATION, &c), STORE_OK);
    CHECK_INT(c.pending, 4);
    store_close(s);
    free(url);
}

/* The process that classified a conversation takes its later phases on at once: the
 * phases it asks for are seeded claimed under its name with its lease (nothing else
 * can claim them until the lease runs out), the others pending; an item that already
 * existed keeps its state and is not reported as taken. */
TEST(seeding_the_next_phases_claims_the_taken_ones_for_the_seeder) {
    char *url = fx_db_url();
    store *s = fx_store_open(url);
    add_convs(s, 2, 5000);
    int64_t run = create_run(s, 6000);
    const enum run_phase next[] = {PHASE_EMBEDDINGS, PHASE_FACETS, PHASE_THEMES};
    unsigned take = 1u << PHASE_FACETS | 1u << PHASE_THEMES, taken = 99;
    CHECK_INT(store_work_seed_next(s, run, "c000", next, 3, "w1", 160, take, &taken), STORE_OK);
    CHECK_INT(taken, take);
    char **ids;
    size_t n;
    /* Before the lease runs out only the pending embedding item is claimable. */
    for (size_t k = 0; k < 3; k++) {
        CHECK_INT(store_work_claim(s, run, next[k], "w2", 10, 159, 60, &ids, &n), STORE_OK);
        CHECK_INT(n, next[k] == PHASE_EMBEDDINGS ? 1 : 0);
        for (size_t i = 0; i < n; i++) free(ids[i]);
        free(ids);
    }
    work_counts c;
    CHECK_INT(store_work_counts(s, run, PHASE_THEMES, &c), STORE_OK);
    CHECK_INT(c.claimed, 1);
    CHECK_INT(c.pending, 0);
    /* Held as a claim is: the seeder closes it, and seeding again changes nothing. */
    CHECK_INT(store_work_finish(s, run, PHASE_THEMES, "c000", "w1", 0), STORE_OK);
    CHECK_INT(store_work_seed_next(s, run, "c000", next, 3, "w1", 160, take, &taken), STORE_OK);
    CHECK_INT(taken, 0);
    CHECK_INT(store_work_counts(s, run, PHASE_THEMES, &c), STORE_OK);
    CHECK_INT(c.done, 1);
    CHECK_INT(c.claimed, 0);
    /* The lease of the facets item runs out: another process takes it over. */
    CHECK_INT(store_work_claim(s, run, PHASE_FACETS, "w2", 10, 161, 60, &ids, &n), STORE_OK);
    CHECK_INT(n, 1);
    CHECK_STR(ids[0], "c000");
    free(ids[0]);
    free(ids);
    CHECK_INT(store_work_finish(s, run, PHASE_FACETS, "c000", "w1", 0), STORE_CONFLICT);
    /* Nothing taken: all pending. */
    CHECK_INT(store_work_seed_next(s, run, "c001", next, 3, NULL, 0, 0, &taken), STORE_OK);
    CHECK_INT(taken, 0);
    CHECK_INT(store_work_counts(s, run, PHASE_THEMES, &c), STORE_OK);
    CHECK_INT(c.pending, 1);
    store_close(s);
    free(url);
}

static void classify(store *s, int64_t run, const char *id, int actionable) {
    classification_row r = {0};
    r.conversation_id = id;
    r.stage1_type = actionable ? "product_issue" : "spam";
    r.stage1_confidence = "high";
    r.urgency = "normal";
    r.routing_priority = "normal";
    r.routing_team = "technical_support";
    r.final_type = r.stage1_type;
    r.final_confidence = "high";
    r.actionable = actionable;
    CHECK_INT(store_put_classification(s, run, &r, 1), STORE_OK);
}

/* As the engine writes an item: closed under the claim of "w", then its result. */
static void classify_claimed(store *s, int64_t run, const char *id, int actionable) {
    CHECK_INT(store_work_finish(s, run, PHASE_CLASSIFICATION, id, "w", 0), STORE_OK);
    classify(s, run, id, actionable);
}

static void fail_claimed(store *s, int64_t run, const char *id, const char *reason) {
    CHECK_INT(store_work_finish(s, run, PHASE_CLASSIFICATION, id, "w", 1), STORE_OK);
    CHECK_INT(store_put_run_error_for(s, run, PHASE_CLASSIFICATION, id, reason, 1), STORE_OK);
}

static void claim_all(store *s, int64_t run, size_t expected) {
    char **ids = NULL;
    size_t n = 0;
    CHECK_INT(store_work_claim(s, run, PHASE_CLASSIFICATION, "w", 100, 10, 60, &ids, &n),
              STORE_OK);
    CHECK_INT(n, expected);
    for (size_t i = 0; i < n; i++) free(ids[i]);
    free(ids);
}

TEST(results_are_idempotent_and_counters_come_from_tables) {
    char *url = fx_db_url();
    store *s = fx_store_open(url);
    add_convs(s, 5, 100);
    int64_t run = create_run(s, 1000), count;
    CHECK_INT(store_work_seed_conversations(s, run, 0, 2000, 0, &count), STORE_OK);
    claim_all(s, run, 5);
    fail_claimed(s, run, "c000", "first try failed");
    CHECK_INT(store_run_error_count(s, run), 1);
    CHECK_INT(store_work_reset_for_resume(s, run), STORE_OK); /* c000 and the rest again */
    claim_all(s, run, 5);
    classify_claimed(s, run, "c000", 1); /* retried OK: the failure goes away */
    classify(s, run, "c000", 1);         /* written twice: counted once */
    classify_claimed(s, run, "c001", 1);
    classify_claimed(s, run, "c002", 0);
    fail_claimed(s, run, "c003", "bad answer");
    CHECK_INT(store_run_error_count(s, run), 1);
    CHECK_INT(store_work_seed_actionable(s, run, PHASE_THEMES, &count), STORE_OK);
    CHECK_INT(count, 2);
    theme_row t = {0};
    t.conversation_id = "c000";
    t.product_area = "scheduling";
    t.component = "queue";
    t.issue_signature = "pins_not_posting";
    t.match_confidence = "high";
    t.quality_score = 1.0;
    t.passed = 1;
    t.context_gaps_json = "[\"no docs\"]";
    CHECK_INT(store_put_theme(s, run, &t, 1), STORE_OK);
    CHECK_INT(store_put_theme(s, run, &t, 2), STORE_OK);
    t.conversation_id = "c001";
    t.passed = 0;
    t.filter_reason = "Below threshold";
    CHECK_INT(store_put_theme(s, run, &t, 1), STORE_OK);
    int is_new = -1;
    CHECK_INT(store_signature_register(s, "pins_not_posting", "scheduling", "queue", run, 1, &is_new), STORE_OK);
    CHECK_INT(is_new, 1);
    CHECK_INT(store_signature_register(s, "pins_not_posting", "scheduling", "queue", run, 1, &is_new), STORE_OK);
    CHECK_INT(is_new, 0);
    CHECK_INT(store_run_refresh_counters(s, run), STORE_OK);
    run_record r;
    CHECK_INT(store_run_get(s, run, &r), STORE_FOUND);
    CHECK_INT(r.conversations_fetched, 5);
    CHECK_INT(r.conversations_classified, 3);
    CHECK_INT(r.conversations_stored, 3);
    CHECK_INT(r.classification_failed, 1);
    CHECK_INT(r.themes_extracted, 1);
    CHECK_INT(r.themes_filtered, 1);
    CHECK_INT(r.themes_new, 1);
    CHECK_INT(r.stories_ready, 1);
    run_record_free(&r);
    char *errs = NULL;
    CHECK_INT(store_run_errors_json(s, run, &errs), STORE_OK);
    CHECK(strstr(errs, "\"bad answer\"") != NULL);
    CHECK(strstr(errs, "\"c003\"") != NULL);
    CHECK(strstr(errs, "first try failed") == NULL);
    free(errs);
    store_close(s);
    free(url);
}

TEST(stories_evidence_is_unique_per_run_and_orphans_accumulate) {
    char *url = fx_db_url();
    store *s = fx_store_open(url);
    int64_t run = create_run(s, 1), sid;
    char *ids[] = {"a", "b", "c"};
    story_new sn = {0};
    sn.run_id = run;
    sn.title = "Pins not posting";
    sn.signature = "pins_not_posting";
    sn.product_area = "scheduling";
    sn.component = "queue";
    sn.action_type = "bug_report";
    sn.direction = "deficit";
    sn.grouping_method = "hybrid_cluster";
    sn.origin = "cluster";
    sn.conversation_ids = ids;
    sn.n = 3;
    CHECK_INT(store_story_insert(s, &sn, 1, &sid), STORE_OK);
    CHECK(sid > 0);
    /* the same conversation in a second story of the same run is refused */
    char *ids2[] = {"c", "d", "e"};
    sn.conversation_ids = ids2;
    int64_t sid2 = 0;
    store_begin(s);
    CHECK(store_story_insert(s, &sn, 1, &sid2) < 0);
    store_rollback(s);

    orphan_key k = {"sig_x", "area", "comp", "bug_report", "deficit", "t"};
    int64_t o1, o2;
    int created, added;
    CHECK_INT(store_orphan_get_or_create(s, &k, run, 1, &o1, &created), STORE_OK);
    CHECK_INT(created, 1);
    CHECK_INT(store_orphan_get_or_create(s, &k, run, 2, &o2, &created), STORE_OK);
    CHECK_INT(created, 0);
    CHECK_INT(o1, o2);
    CHECK_INT(store_orphan_add_member(s, o1, "x1", run, "ex", 1, &added), STORE_OK);
    CHECK_INT(added, 1);
    CHECK_INT(store_orphan_add_member(s, o1, "x1", run, "ex", 1, &added), STORE_OK);
    CHECK_INT(added, 0);
    CHECK_INT(store_orphan_add_member(s, o1, "x2", run, "ex", 1, &added), STORE_OK);
    CHECK_INT(store_orphan_member_count(s, o1), 2);
    CHECK_INT(store_orphan_remove_conversation(s, "x2"), STORE_OK);
    CHECK_INT(store_orphan_member_count(s, o1), 1);
    CHECK_INT(store_orphan_graduate(s, o1, sid, 5), STORE_OK);
    CHECK_INT(store_orphan_graduate(s, o1, sid, 6), STORE_CONFLICT);
    /* a graduated orphan keeps its members: only active orphans lose a conversation */
    CHECK_INT(store_orphan_remove_conversation(s, "x1"), STORE_OK);
    CHECK_INT(store_orphan_member_count(s, o1), 1);
    /* after graduation the signature can start a new orphan */
    CHECK_INT(store_orphan_get_or_create(s, &k, run, 7, &o2, &created), STORE_OK);
    CHECK_INT(created, 1);
    CHECK(o2 != o1);
    store_close(s);
    free(url);
}

TEST(llm_cache_round_trip) {
    char *url = fx_db_url();
    store *s = fx_store_open(url);
    char *resp = NULL;
    int64_t pt = 0, ct = 0;
    CHECK_INT(store_cache_get(s, "k1", &resp, &pt, &ct), STORE_NOTFOUND);
    CHECK_INT(store_cache_put(s, "k1", "m", "theme", "{\"a\":1}", 10, 5, 1), STORE_OK);
    CHECK_INT(store_cache_put(s, "k1", "m", "theme", "{\"a\":2}", 10, 5, 1), STORE_OK);
    CHECK_INT(store_cache_get(s, "k1", &resp, &pt, &ct), STORE_FOUND);
    CHECK_STR(resp, "{\"a\":1}");
    CHECK_INT(pt, 10);
    CHECK_INT(ct, 5);
    free(resp);
    store_close(s);
    free(url);
}

static int64_t file_size(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0 ? (int64_t)sb.st_size : -1;
}

/* A run leaves SQLite's checkpoints to its heartbeat thread (pipeline/run.c): the
 * writer's commits no longer copy the log into the database file (SQLite's own
 * threshold is 1 000 pages), the other connection's store_checkpoint does. Both are
 * no-ops on PostgreSQL. */
TEST(a_writer_that_leaves_checkpoints_does_not_copy_its_log) {
    char *url = fx_db_url();
    store *w = fx_store_open(url), *c = fx_store_open(url);
    int sqlite = !strcmp(store_backend(w), "sqlite");
    CHECK_INT(store_leave_checkpoints(w), STORE_OK);
    int64_t before = sqlite ? file_size(url) : 0;
    enum { N = 1500, LEN = 3000 };
    char *big = xmalloc(LEN + 1);
    memset(big, 'x', LEN);
    big[LEN] = '\0';
    CHECK_INT(store_begin(w), STORE_OK);
    for (int i = 0; i < N; i++) {
        char key[32];
        snprintf(key, sizeof key, "k%d", i);
        CHECK_INT(store_cache_put(w, key, "m", "theme", big, 1, 1, 1), STORE_OK);
    }
    CHECK_INT(store_commit(w), STORE_OK);
    if (sqlite) {
        char *wal = xasprintf("%s-wal", url);
        CHECK_INT(file_size(url), before); /* all of it is still in the log */
        CHECK(file_size(wal) >= (int64_t)N * LEN);
        CHECK_INT(store_checkpoint(c), STORE_OK);
        CHECK(file_size(url) - before >= (int64_t)N * LEN);
        free(wal);
    } else {
        CHECK_INT(store_checkpoint(c), STORE_OK);
    }
    char *resp = NULL;
    CHECK_INT(store_cache_get(c, "k1499", &resp, NULL, NULL), STORE_FOUND);
    CHECK_INT(strlen(resp), LEN);
    free(resp);
    free(big);
    store_close(c);
    store_close(w);
    free(url);
}

TEST(orphaned_runs_are_failed_by_heartbeat_age) {
    char *url = fx_db_url();
    store *s = fx_store_open(url);
    int64_t run = create_run(s, 100);
    int n = -1;
    CHECK_INT(store_run_fail_orphaned(s, 50, 200, &n), STORE_OK);
    CHECK_INT(n, 0); /* heartbeat 100 is newer than 50 */
    CHECK_INT(store_run_fail_orphaned(s, 150, 200, &n), STORE_OK);
    CHECK_INT(n, 1);
    run_record r;
    CHECK_INT(store_run_get(s, run, &r), STORE_FOUND);
    CHECK_STR(r.status, "failed");
    CHECK(strstr(r.error_message, "Resume") != NULL);
    run_record_free(&r);
    int64_t active;
    CHECK_INT(store_run_active(s, &active, NULL), STORE_NOTFOUND);
    CHECK_INT(store_run_resume(s, run, 300), STORE_OK);
    store_close(s);
    free(url);
}

TEST(usage_totals_filtered_count_and_orphan_members_read_back) {
    char *url = fx_db_url();
    store *s = fx_store_open(url);
    int64_t run = create_run(s, 1);
    /* Usage adds up per phase; the run's totals are sums over phases (numeric on
     * PostgreSQL, read back as integers and doubles). */
    CHECK_INT(store_run_add_usage(s, run, PHASE_CLASSIFICATION, 2, 1, 3000000000, 1000, 20, 0.25),
              STORE_OK);
    CHECK_INT(store_run_add_usage(s, run, PHASE_CLASSIFICATION, 1, 0, 100, 24, 10, 0.5), STORE_OK);
    CHECK_INT(store_run_add_usage(s, run, PHASE_THEMES, 4, 2, 50, 0, 5, 0.125), STORE_OK);
    CHECK_INT(store_run_set_filtered(s, run, 7), STORE_OK);
    run_record r;
    REQUIRE(store_run_get(s, run, &r) == STORE_FOUND);
    CHECK_INT(r.llm_requests, 7);
    CHECK_INT(r.llm_cache_hits, 3);
    CHECK_INT(r.prompt_tokens, 3000000150);
    CHECK_INT(r.completion_tokens, 35);
    CHECK_INT(r.cached_tokens, 1024);
    CHECK_NEAR(r.cost_usd, 0.875, 1e-12);
    CHECK_INT(r.conversations_filtered, 7);
    run_record_free(&r);
    char *usage = NULL;
    CHECK_INT(store_run_usage_json(s, run, &usage), STORE_OK);
    REQUIRE(usage);
    CHECK(strstr(usage, "\"classification\":{\"requests\":3,\"cache_hits\":1,") != NULL);
    CHECK(strstr(usage, "\"prompt_tokens\":3000000100,\"cached_tokens\":1024,") != NULL);
    CHECK(strstr(usage, "\"theme_extraction\":{\"requests\":4,") != NULL);
    CHECK(strstr(usage, "\"cost_usd\":0.75") != NULL);
    free(usage);

    orphan_key k = {"sig_y", "area", "comp", "bug_report", "deficit", "t"};
    int64_t o;
    int created, added;
    CHECK_INT(store_orphan_get_or_create(s, &k, run, 1, &o, &created), STORE_OK);
    CHECK_INT(store_orphan_add_member(s, o, "m2", run, "second", 20, &added), STORE_OK);
    CHECK_INT(store_orphan_add_member(s, o, "m1", run, NULL, 10, &added), STORE_OK);
    char **ids = NULL, **excerpts = NULL;
    size_t n = 0;
    CHECK_INT(store_orphan_members(s, o, &ids, &excerpts, &n), STORE_OK);
    REQUIRE(n == 2);
    CHECK_STR(ids[0], "m1"); /* oldest first */
    CHECK_STR(excerpts[0], "");
    CHECK_STR(ids[1], "m2");
    CHECK_STR(excerpts[1], "second");
    for (size_t i = 0; i < n; i++) {
        free(ids[i]);
        free(excerpts[i]);
    }
    free(ids);
    free(excerpts);
    CHECK_INT(store_orphan_first_run(s, o), run);
    store_close(s);
    free(url);
}
