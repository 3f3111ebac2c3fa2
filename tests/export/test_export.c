/* Tracker exports (src/export/) against the fake trackers (build/fake_trackers), on
 * both backends: for each tracker a create, a re-export that updates the same ticket
 * with the evidence added since, a credentials failure, a rate limit waited out to the
 * announced reset, and 5xx retried; the markdown file; the selection rules; the CLI
 * binary and the HTTP API. */
#include "test.h"

#include <stdarg.h>
#include <stdlib.h>
#include <unistd.h>

#include "export/export.h"
#include "store/db.h"
#include "store/store_export.h"
#include "support/fakeproc.h"
#include "support/fixtures.h"
#include "support/server.h"
#include "util/util.h"

#define T0 1767225600 /* 2026-01-01 */
#define TITLE "Exporting a report to CSV fails with a timeout"

typedef struct world {
    fakeproc fake;
    int have_fake;
    char *db;
    store *st;
    int64_t run, story;
    json_t *items; /* the items of the last export */
} world;

/* ------------------------------------------------------------------ setup */

/* Points the tracker's settings at the fake (token = the fake's unless given). */
static void set_env(const char *tracker, const char *url, const char *token) {
    if (!strcmp(tracker, "shortcut")) {
        setenv("SHORTCUT_API_TOKEN", token, 1);
        setenv("SHORTCUT_WORKFLOW_STATE_ID", "500001", 1);
        setenv("SHORTCUT_BASE_URL", url, 1);
    } else if (!strcmp(tracker, "jira")) {
        setenv("JIRA_BASE_URL", url, 1);
        setenv("JIRA_EMAIL", "bot@example.com", 1);
        setenv("JIRA_API_TOKEN", token, 1);
        setenv("JIRA_PROJECT_KEY", "FEED", 1);
    } else if (!strcmp(tracker, "github")) {
        setenv("GITHUB_TOKEN", token, 1);
        setenv("GITHUB_REPOSITORY", "acme/app", 1);
        setenv("GITHUB_API_URL", url, 1);
    } else if (!strcmp(tracker, "linear")) {
        setenv("LINEAR_API_KEY", token, 1);
        setenv("LINEAR_TEAM_ID", "team-1", 1);
        setenv("LINEAR_API_URL", url, 1);
    }
}

static void add_conversation(world *w, const char *id, int64_t created_at) {
    conv_record r;
    char body[96];
    snprintf(body, sizeof body, "customer %s cannot export a report, it times out", id);
    fx_record(&r, id, created_at, body);
    enum upsert_outcome o;
    CHECK_INT(store_conv_upsert(w->st, &r, created_at, &o), STORE_OK);
    conv_record_free(&r);
}

/* A finished run (stories reference runs). */
static int64_t finished_run(world *w) {
    run_params p = {0};
    p.concurrency = 1;
    p.llm = "local";
    int64_t id = 0;
    CHECK_INT(store_run_create(w->st, &p, wall_unix(), &id, NULL), STORE_OK);
    CHECK_INT(store_run_finish(w->st, id, "completed", NULL, wall_unix()), STORE_OK);
    return id;
}

/* A story of run w->run with the given conversations as evidence. */
static int64_t add_story(world *w, const char *title, char *const *ids, size_t n) {
    char *excerpts[8];
    for (size_t i = 0; i < n; i++) excerpts[i] = xasprintf("excerpt of %s: the export times out", ids[i]);
    story_new sn = {0};
    sn.run_id = w->run;
    sn.title = title;
    sn.description = "Exports of large reports time out after 30 seconds.";
    sn.signature = "report_export_timeout";
    sn.product_area = "reports";
    sn.component = "export";
    sn.action_type = "bug_report";
    sn.direction = "deficit";
    sn.grouping_method = "test";
    sn.origin = "cluster";
    sn.confidence = 0.9;
    sn.conversation_ids = ids;
    sn.excerpts = excerpts;
    sn.n = n;
    int64_t id = 0;
    CHECK_INT(store_story_insert(w->st, &sn, wall_unix(), &id), STORE_OK);
    for (size_t i = 0; i < n; i++) free(excerpts[i]);
    return id;
}

static int world_start(world *w, const char *tracker) {
    memset(w, 0, sizeof *w);
    if (strcmp(tracker, "markdown") != 0) {
        const char *args[] = {"--tracker", tracker, NULL};
        if (fakeproc_start(&w->fake, "fake_trackers", args) != 0) return -1;
        w->have_fake = 1;
        set_env(tracker, w->fake.url, "test-token");
    }
    w->db = fx_db_url();
    w->st = fx_store_open(w->db);
    char *ids[] = {"c1", "c2", "c3"};
    for (int i = 0; i < 5; i++) {
        char id[16];
        snprintf(id, sizeof id, "c%d", i + 1);
        add_conversation(w, id, T0 + i * 86400);
    }
    w->run = finished_run(w);
    w->story = add_story(w, TITLE, ids, 3);
    return 0;
}

static void world_stop(world *w) {
    if (w->have_fake) fakeproc_stop(&w->fake);
    if (w->st) store_close(w->st);
    json_decref(w->items);
    free(w->db);
}

/* Runs SQL with one story id parameter on a second connection (what the store API
 * offers no function for: evidence added to an existing story, a changed state). */
static void sql_story(world *w, const char *sql, int64_t story_id) {
    char err[256];
    db_t *db = db_open(w->db, err, sizeof err);
    REQUIRE(db != NULL);
    db_stmt *st = db_prepare(db, sql);
    CHECK(st != NULL);
    if (st) {
        db_bind_int(st, 1, story_id);
        CHECK_INT(db_step(st), DB_DONE);
        db_finalize(st);
    }
    db_close(db);
}

/* Evidence c4 (of a later run) for the story. */
static void add_evidence_c4(world *w) {
    int64_t later = finished_run(w);
    char sql[256];
    snprintf(sql, sizeof sql,
             "INSERT INTO story_evidence (story_id, run_id, conversation_id, signature, excerpt)"
             " VALUES (?, %lld, 'c4', 'report_export_timeout', 'excerpt of c4: still times out')",
             (long long)later);
    sql_story(w, sql, w->story);
}

static void on_item(void *ctx, const export_item *it) {
    world *w = ctx;
    json_array_append_new(w->items, export_item_json(it));
}

static int do_export(world *w, const char *tracker, export_result *r, int dry_run,
                     const int64_t *ids, size_t nids) {
    json_decref(w->items);
    w->items = json_array();
    export_options o = {0};
    o.tracker = tracker;
    o.dry_run = dry_run;
    o.story_ids = ids;
    o.nstory_ids = nids;
    o.backoff_base_ms = 20; /* 5xx retries without slowing the suite */
    o.on_item = on_item;
    o.ctx = w;
    int rc = export_run(w->st, &o, r);
    if (rc != EXPORT_OK) printf("    export: %s\n", r->error);
    return rc;
}

static const char *item_action(const world *w, size_t i) {
    return jx_str(json_array_get(w->items, i), "action");
}

static int64_t stat(const world *w, const char *key) {
    json_t *s = fakeproc_stats(&w->fake);
    int64_t v = jx_int(s, key, -1);
    json_decref(s);
    return v;
}

static char *story_status(world *w, int64_t id) {
    export_story s;
    if (store_export_story(w->st, id, &s) != STORE_FOUND) return xstrdup("?");
    char *out = xstrdup(s.status);
    export_story_free(&s);
    return out;
}

/* The last accepted request body for the ticket, as text (caller frees). */
static char *ticket_request(const world *w, const char *id) {
    char path[160];
    snprintf(path, sizeof path, "/_ticket?id=%s", id);
    json_t *t = fakeproc_get_json(&w->fake, path);
    char *out = xstrdup(jx_str(t, "request") ? jx_str(t, "request") : "");
    json_decref(t);
    return out;
}

static const char *display(const char *tracker) {
    return !strcmp(tracker, "jira") ? "Jira" : !strcmp(tracker, "github") ? "GitHub"
           : !strcmp(tracker, "linear") ? "Linear" : "Shortcut";
}

/* ------------------------------------------------------------------ per tracker */

static void create_then_update(const char *tracker) {
    world w;
    REQUIRE(world_start(&w, tracker) == 0);
    export_result r;
    CHECK_INT(do_export(&w, tracker, &r, 0, NULL, 0), EXPORT_OK);
    CHECK_INT(r.created, 1);
    CHECK_INT(r.run_id, w.run);
    CHECK_STR(item_action(&w, 0), "created");
    export_link first;
    REQUIRE(store_export_link_get(w.st, w.story, tracker, &first) == STORE_FOUND);
    CHECK_INT(first.evidence_count, 3);
    CHECK(first.url[0] != '\0');
    char *status = story_status(&w, w.story);
    CHECK_STR(status, "exported");
    free(status);
    char *body = ticket_request(&w, first.external_id);
    CHECK(strstr(body, "c3") && strstr(body, "excerpt of c1"));
    free(body);

    add_evidence_c4(&w);
    CHECK_INT(do_export(&w, tracker, &r, 0, NULL, 0), EXPORT_OK);
    CHECK_INT(r.created, 0);
    CHECK_INT(r.updated, 1);
    CHECK_STR(item_action(&w, 0), "updated");
    CHECK(strstr(jx_str(json_array_get(w.items, 0), "note"), "1 new") != NULL);
    CHECK_INT(stat(&w, "creates"), 1);
    CHECK_INT(stat(&w, "updates"), 1);
    CHECK_INT(stat(&w, "tickets"), 1);
    export_link second;
    REQUIRE(store_export_link_get(w.st, w.story, tracker, &second) == STORE_FOUND);
    CHECK_STR(second.external_id, first.external_id);
    CHECK_INT(second.evidence_count, 4);
    body = ticket_request(&w, first.external_id);
    CHECK(strstr(body, "New since the last export") && strstr(body, "excerpt of c4"));
    free(body);
    export_link_free(&first);
    export_link_free(&second);
    world_stop(&w);
}

static void auth_failure(const char *tracker) {
    world w;
    REQUIRE(world_start(&w, tracker) == 0);
    char *ids[] = {"c4", "c5"};
    add_story(&w, "A second story", ids, 2);
    set_env(tracker, w.fake.url, "wrong-token");
    export_result r;
    CHECK_INT(do_export(&w, tracker, &r, 0, NULL, 0), EXPORT_PARTIAL);
    char want[80];
    snprintf(want, sizeof want, "%s rejected the credentials (401)", display(tracker));
    CHECK(strstr(r.error, want) != NULL);
    CHECK_INT(r.failed, 1);          /* stopped at once: the second story never went */
    CHECK_INT(stat(&w, "requests"), 1);
    CHECK_INT(stat(&w, "creates"), 0);
    export_link l;
    CHECK_INT(store_export_link_get(w.st, w.story, tracker, &l), STORE_NOTFOUND);
    char *status = story_status(&w, w.story);
    CHECK(strcmp(status, "exported") != 0);
    free(status);
    world_stop(&w);
}

static void configure(world *w, const char *json) {
    CHECK_INT(fakeproc_post(&w->fake, "/_config", json), 200);
}

static void rate_limited(const char *tracker) {
    world w;
    REQUIRE(world_start(&w, tracker) == 0);
    configure(&w, "{\"rate_limit\":1,\"reset_ms\":700}");
    export_result r;
    CHECK_INT(do_export(&w, tracker, &r, 0, NULL, 0), EXPORT_OK);
    CHECK_INT(r.created, 1);
    CHECK_INT(stat(&w, "rate_limited"), 1);
    CHECK_INT(stat(&w, "early_retries"), 0); /* the retry came after the announced reset */
    CHECK_INT(stat(&w, "creates"), 1);
    world_stop(&w);
}

static void server_errors(const char *tracker) {
    world w;
    REQUIRE(world_start(&w, tracker) == 0);
    configure(&w, "{\"fail_5xx\":2,\"fail_status\":502}");
    export_result r;
    CHECK_INT(do_export(&w, tracker, &r, 0, NULL, 0), EXPORT_OK);
    CHECK_INT(r.created, 1);
    CHECK_INT(stat(&w, "faults"), 2);
    CHECK_INT(stat(&w, "creates"), 1);
    world_stop(&w);
}

#define TRACKER_TESTS(t)                                                         \
    TEST(t##_creates_then_updates_the_same_ticket) { create_then_update(#t); }   \
    TEST(t##_bad_credentials_stop_at_once_naming_the_tracker) { auth_failure(#t); } \
    TEST(t##_rate_limit_waits_for_the_announced_reset) { rate_limited(#t); }     \
    TEST(t##_server_errors_are_retried) { server_errors(#t); }

TRACKER_TESTS(shortcut)
TRACKER_TESTS(jira)
TRACKER_TESTS(github)
TRACKER_TESTS(linear)

/* ------------------------------------------------------------------ other rules */

TEST(github_primary_rate_limit_403_is_waited_out_not_a_refusal) {
    world w;
    REQUIRE(world_start(&w, "github") == 0);
    configure(&w, "{\"rate_limit\":1,\"reset_ms\":500,\"rate_status\":403}");
    export_result r;
    CHECK_INT(do_export(&w, "github", &r, 0, NULL, 0), EXPORT_OK);
    CHECK_INT(stat(&w, "early_retries"), 0);
    CHECK_INT(stat(&w, "creates"), 1);
    world_stop(&w);
}

TEST(a_deleted_ticket_stops_the_export_with_the_404) {
    world w;
    REQUIRE(world_start(&w, "jira") == 0);
    export_result r;
    CHECK_INT(do_export(&w, "jira", &r, 0, NULL, 0), EXPORT_OK);
    sql_story(&w, "UPDATE story_exports SET external_id = 'FEED-999' WHERE story_id = ?", w.story);
    CHECK_INT(do_export(&w, "jira", &r, 0, NULL, 0), EXPORT_PARTIAL);
    CHECK(strstr(r.error, "Jira answered 404") != NULL);
    CHECK_INT(stat(&w, "creates"), 1);
    world_stop(&w);
}

TEST(missing_settings_name_the_variable_and_send_nothing) {
    world w;
    REQUIRE(world_start(&w, "shortcut") == 0);
    unsetenv("SHORTCUT_API_TOKEN");
    export_result r;
    CHECK_INT(do_export(&w, "shortcut", &r, 0, NULL, 0), EXPORT_CONFIG);
    CHECK(strstr(r.error, "SHORTCUT_API_TOKEN") != NULL);
    setenv("SHORTCUT_API_TOKEN", "test-token", 1);
    unsetenv("SHORTCUT_WORKFLOW_STATE_ID");
    CHECK_INT(do_export(&w, "shortcut", &r, 0, NULL, 0), EXPORT_CONFIG);
    CHECK(strstr(r.error, "SHORTCUT_WORKFLOW_STATE_ID") != NULL);
    CHECK_INT(stat(&w, "requests"), 0);
    world_stop(&w);
}

TEST(dry_run_reports_and_sends_nothing) {
    world w;
    REQUIRE(world_start(&w, "linear") == 0);
    export_result r;
    CHECK_INT(do_export(&w, "linear", &r, 1, NULL, 0), EXPORT_OK);
    CHECK_STR(item_action(&w, 0), "would create");
    CHECK_INT(stat(&w, "requests"), 0);
    export_link l;
    CHECK_INT(store_export_link_get(w.st, w.story, "linear", &l), STORE_NOTFOUND);
    CHECK_INT(do_export(&w, "linear", &r, 0, NULL, 0), EXPORT_OK);
    CHECK_INT(do_export(&w, "linear", &r, 1, NULL, 0), EXPORT_OK);
    CHECK_STR(item_action(&w, 0), "would update");
    CHECK_INT(stat(&w, "requests"), 1);
    world_stop(&w);
}

TEST(closed_stories_are_skipped_unless_named) {
    world w;
    REQUIRE(world_start(&w, "shortcut") == 0);
    sql_story(&w, "UPDATE stories SET status = 'closed' WHERE id = ?", w.story);
    export_result r;
    CHECK_INT(do_export(&w, "shortcut", &r, 0, NULL, 0), EXPORT_OK);
    CHECK_INT(r.skipped, 1);
    CHECK(strstr(jx_str(json_array_get(w.items, 0), "note"), "closed") != NULL);
    CHECK_INT(stat(&w, "requests"), 0);
    CHECK_INT(do_export(&w, "shortcut", &r, 0, &w.story, 1), EXPORT_OK);
    CHECK_INT(r.created, 1);
    char *status = story_status(&w, w.story);
    CHECK_STR(status, "closed"); /* a closed story stays closed */
    free(status);
    world_stop(&w);
}

TEST(markdown_file_has_a_section_per_story_and_changes_no_state) {
    world w;
    REQUIRE(world_start(&w, "markdown") == 0);
    char *ids[] = {"c4", "c5"};
    add_story(&w, "Billing page shows the wrong currency", ids, 2);
    sql_story(&w, "UPDATE stories SET acceptance_criteria = '[\"Exports of 1M rows finish\"]',"
                  " problem = 'Large exports hit the 30 s gateway timeout.' WHERE id = ?", w.story);
    char *dir = fx_tmpdir();
    char *path = xasprintf("%s/stories.md", dir);
    export_options o = {0};
    o.tracker = "markdown";
    o.out_path = path;
    export_result r;
    CHECK_INT(export_run(w.st, &o, &r), EXPORT_OK);
    CHECK_INT(r.created, 2);
    FILE *f = fopen(path, "r");
    REQUIRE(f != NULL);
    char text[8192];
    size_t n = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    text[n] = '\0';
    CHECK(strstr(text, "## " TITLE) != NULL);
    CHECK(strstr(text, "## Billing page shows the wrong currency") != NULL);
    CHECK(strstr(text, "State: open") != NULL);
    CHECK(strstr(text, "Area: reports / export") != NULL);
    CHECK(strstr(text, "Seen: 2026-01-01 to 2026-01-03") != NULL);
    CHECK(strstr(text, "### Problem\n\nLarge exports") != NULL);
    CHECK(strstr(text, "- [ ] Exports of 1M rows finish") != NULL);
    CHECK(strstr(text, "- c1 (2026-01-01)") != NULL);
    CHECK(strstr(text, "excerpt of c5") != NULL);
    char *status = story_status(&w, w.story);
    CHECK(strcmp(status, "exported") != 0);
    free(status);
    export_link l;
    CHECK_INT(store_export_link_get(w.st, w.story, "markdown", &l), STORE_NOTFOUND);
    fx_rmtree(dir);
    free(dir);
    free(path);
    world_stop(&w);
}

/* ------------------------------------------------------------------ CLI and API */

/* Runs the CLI binary with extra environment; rc, output in *out / *err. */
static int feedline(char *const env[], char **out, char **err, ...) {
    char *argv[24];
    int n = 0;
    const char *b = getenv("FEEDLINE_BIN");
    argv[n++] = (char *)(b ? b : "build/asan/feedline");
    va_list ap;
    va_start(ap, err);
    const char *a;
    while ((a = va_arg(ap, const char *)) && n < 23) argv[n++] = (char *)a;
    va_end(ap);
    argv[n] = NULL;
    return fx_run(argv, env, out, err);
}

TEST(cli_exports_to_github_then_updates_and_refuses_missing_settings) {
    world w;
    REQUIRE(world_start(&w, "github") == 0);
    char *env[] = {NULL};
    char *out = NULL, *err = NULL;
    int rc = feedline(env, &out, &err, "export", "--to", "github", "--db", w.db, NULL);
    if (rc) printf("    %s%s\n", out, err);
    CHECK_INT(rc, 0);
    CHECK(strstr(out, "created      story") != NULL);
    CHECK(strstr(out, "https://github.com/acme/app/issues/1") != NULL);
    free(out);
    free(err);
    rc = feedline(env, &out, &err, "export", "--to", "github", "--db", w.db, "--json", NULL);
    CHECK_INT(rc, 0);
    json_t *j = json_loads(out ? out : "", 0, NULL);
    CHECK_INT(jx_int(j, "updated", -1), 1);
    CHECK_STR(jx_str(json_array_get(jx_arr(j, "items"), 0), "external_id"), "1");
    json_decref(j);
    free(out);
    free(err);
    unsetenv("GITHUB_TOKEN");
    rc = feedline(env, &out, &err, "export", "--to", "github", "--db", w.db, NULL);
    CHECK_INT(rc, 2);
    CHECK(err && strstr(err, "GITHUB_TOKEN is not set") != NULL);
    free(out);
    free(err);
    rc = feedline(env, &out, &err, "export", "--help", NULL);
    CHECK_INT(rc, 0);
    CHECK(out && strstr(out, "--dry-run") != NULL);
    free(out);
    free(err);
    CHECK_INT(stat(&w, "creates"), 1);
    CHECK_INT(stat(&w, "updates"), 1);
    world_stop(&w);
}

/* Polls GET /api/exports/{id} until it is no longer running (at most 30 s). */
static json_t *wait_export(const test_server *s, int64_t id) {
    char path[64];
    snprintf(path, sizeof path, "/api/exports/%lld", (long long)id);
    int64_t deadline = mono_ms() + 30000;
    for (;;) {
        http_resp resp;
        if (ts_get(s, path, &resp) == 0 && resp.status == 200 && resp.json &&
            (strcmp(jx_str(resp.json, "status"), "running") != 0 || mono_ms() > deadline)) {
            json_t *j = json_incref(resp.json);
            http_resp_free(&resp);
            return j;
        }
        http_resp_free(&resp);
        if (mono_ms() > deadline) return NULL;
        sleep_ms(50);
    }
}

static int64_t post_export(const test_server *s, const char *body, long *status) {
    http_resp resp;
    int64_t id = -1;
    *status = 0;
    if (ts_post(s, "/api/stories/export", body, &resp) == 0) {
        *status = resp.status;
        id = jx_int(resp.json, "export_id", -1);
        if (resp.status != 202) printf("    %ld %s\n", resp.status, resp.body);
    }
    http_resp_free(&resp);
    return id;
}

TEST(api_exports_in_the_background_one_at_a_time) {
    world w;
    REQUIRE(world_start(&w, "shortcut") == 0);
    store_close(w.st); /* the server owns the database now */
    w.st = NULL;
    char env_url[128];
    snprintf(env_url, sizeof env_url, "SHORTCUT_BASE_URL=%s", w.fake.url);
    const char *env[] = {"SHORTCUT_API_TOKEN=test-token", "SHORTCUT_PROJECT_ID=7", env_url, NULL};
    test_server s;
    REQUIRE(ts_start(&s, w.db, NULL, env) == 0);

    /* The first export waits out a 1.5 s rate limit: a second one meanwhile is refused. */
    configure(&w, "{\"rate_limit\":1,\"reset_ms\":1500}");
    long status;
    int64_t id = post_export(&s, "{\"to\":\"shortcut\"}", &status);
    CHECK_INT(status, 202);
    CHECK(id > 0);
    post_export(&s, "{\"to\":\"shortcut\",\"dry_run\":true}", &status);
    CHECK_INT(status, 409);
    json_t *j = wait_export(&s, id);
    CHECK_STR(jx_str(j, "status"), "completed");
    CHECK_INT(jx_int(j, "created", -1), 1);
    json_t *item = json_array_get(jx_arr(j, "items"), 0);
    CHECK_STR(jx_str(item, "action"), "created");
    CHECK_STR(jx_str(item, "external_id"), "1");
    json_decref(j);

    /* Again, for the named story: the same ticket is updated. */
    char body[96];
    snprintf(body, sizeof body, "{\"to\":\"shortcut\",\"story_ids\":[%lld]}", (long long)w.story);
    id = post_export(&s, body, &status);
    CHECK_INT(status, 202);
    j = wait_export(&s, id);
    CHECK_INT(jx_int(j, "updated", -1), 1);
    json_decref(j);
    CHECK_INT(stat(&w, "creates"), 1);
    CHECK_INT(stat(&w, "updates"), 1);

    post_export(&s, "{\"to\":\"linear\"}", &status); /* not configured on this server */
    CHECK_INT(status, 400);
    post_export(&s, "{\"to\":\"trello\"}", &status);
    CHECK_INT(status, 422);
    post_export(&s, "{\"to\":\"jira\",\"story_ids\":[\"x\"]}", &status);
    CHECK_INT(status, 422);
    post_export(&s, "{\"dry_run\":true}", &status);
    CHECK_INT(status, 422);
    http_resp resp;
    CHECK_INT(ts_get(&s, "/api/exports/999", &resp), 0);
    CHECK_INT(resp.status, 404);
    http_resp_free(&resp);
    CHECK_INT(ts_get(&s, "/openapi.json", &resp), 0);
    CHECK(resp.body && strstr(resp.body, "/api/stories/export") != NULL);
    http_resp_free(&resp);
    CHECK_INT(ts_stop(&s, 20000), 0); /* clean, leak-free shutdown */
    world_stop(&w);
}
