/* The HTTP surface of `feedline serve` over real sockets, without long runs: health,
 * routing (404/405), validation (422 in FastAPI form), reads on an empty database,
 * authentication, body limits, CORS, metrics and the OpenAPI document. */
#include "test.h"

#include <stdlib.h>

#include "support/fixtures.h"
#include "support/server.h"
#include "util/buf.h"
#include "util/mem.h"

/* The first validation error of a 422 body. */
static json_t *first_error(const http_resp *r) {
    return json_array_get(json_object_get(r->json, "detail"), 0);
}

static const char *str_at(const json_t *o, const char *key) {
    return json_string_value(json_object_get(o, key));
}

/* loc as "a.b" */
static char *loc_of(const json_t *err) {
    buf_t b = BUF_INIT;
    size_t i;
    json_t *v;
    json_array_foreach(json_object_get(err, "loc"), i, v) {
        if (i) buf_putc(&b, '.');
        if (json_is_string(v)) buf_puts(&b, json_string_value(v));
        else buf_printf(&b, "%lld", (long long)json_integer_value(v));
    }
    return buf_detach(&b);
}

/* POSTs body to /api/pipeline/run and checks a single 422 error of this type at loc,
 * with a message naming the field and containing msg_part. */
static void expect_run_422(const test_server *s, const char *body, const char *type,
                           const char *loc, const char *msg_part) {
    http_resp r;
    REQUIRE(ts_post(s, "/api/pipeline/run", body, &r) == 0);
    CHECK_INT(r.status, 422);
    json_t *e = first_error(&r);
    REQUIRE(e != NULL);
    CHECK_STR(str_at(e, "type"), type);
    char *l = loc_of(e);
    CHECK_STR(l, loc);
    free(l);
    const char *msg = str_at(e, "msg");
    CHECK(msg && strstr(msg, msg_part));
    /* The message starts with the field: the last name in loc (not a JSON position). */
    char *field = xstrdup(loc), *dot;
    while ((dot = strrchr(field, '.')) && dot[1] >= '0' && dot[1] <= '9') *dot = '\0';
    const char *name = strrchr(field, '.') ? strrchr(field, '.') + 1 : field;
    CHECK(msg && strncmp(msg, name, strlen(name)) == 0 && msg[strlen(name)] == ':');
    free(field);
    if (!(msg && strstr(msg, msg_part))) printf("    body %s -> %s\n", body, r.body);
    http_resp_free(&r);
}

TEST(health_routes_answer) {
    char *db;
    test_server s = ts_start_empty(&db, NULL, NULL);
    REQUIRE(s.pid > 0);
    http_resp r;
    REQUIRE(ts_get(&s, "/health", &r) == 0);
    CHECK_INT(r.status, 200);
    CHECK_STR(str_at(r.json, "status"), "ok");
    CHECK(str_at(r.json, "timestamp") && strchr(str_at(r.json, "timestamp"), 'T'));
    http_resp_free(&r);
    REQUIRE(ts_get(&s, "/health/db", &r) == 0);
    CHECK_INT(r.status, 200);
    CHECK(json_is_true(json_object_get(r.json, "connected")));
    CHECK(json_is_number(json_object_get(r.json, "latency_ms")));
    CHECK(json_is_null(json_object_get(r.json, "error")));
    http_resp_free(&r);
    REQUIRE(ts_get(&s, "/health/full", &r) == 0);
    CHECK_STR(str_at(r.json, "status"), "healthy");
    CHECK(json_is_true(json_object_get(json_object_get(r.json, "database"), "connected")));
    http_resp_free(&r);
    REQUIRE(ts_get(&s, "/", &r) == 0);
    CHECK_INT(r.status, 200);
    CHECK_STR(str_at(r.json, "health"), "/health");
    http_resp_free(&r);
    char *url = xasprintf("%s/health", s.base);
    REQUIRE(http_do("HEAD", url, NULL, NULL, &r) == 0);
    CHECK_INT(r.status, 200);
    CHECK_INT(r.len, 0);
    http_resp_free(&r);
    free(url);
    CHECK_INT(ts_finish(&s, db), 0); /* clean, leak-free shutdown */
}

TEST(unknown_routes_404_and_wrong_methods_405) {
    char *db;
    test_server s = ts_start_empty(&db, NULL, NULL);
    REQUIRE(s.pid > 0);
    http_resp r;
    REQUIRE(ts_get(&s, "/api/nope", &r) == 0);
    CHECK_INT(r.status, 404);
    CHECK_STR(str_at(r.json, "detail"), "Not Found");
    http_resp_free(&r);
    REQUIRE(ts_get(&s, "/api/pipeline/status/1/extra", &r) == 0);
    CHECK_INT(r.status, 404);
    http_resp_free(&r);

    char *url = xasprintf("%s/api/pipeline/history", s.base);
    REQUIRE(http_do("DELETE", url, NULL, NULL, &r) == 0);
    CHECK_INT(r.status, 405);
    CHECK_STR(str_at(r.json, "detail"), "Method Not Allowed");
    char *allow = http_header(&r, "Allow");
    CHECK_STR(allow, "GET");
    free(allow);
    http_resp_free(&r);
    free(url);

    REQUIRE(ts_get(&s, "/api/pipeline/run", &r) == 0); /* POST only */
    CHECK_INT(r.status, 405);
    allow = http_header(&r, "Allow");
    CHECK_STR(allow, "POST");
    free(allow);
    http_resp_free(&r);
    REQUIRE(ts_post(&s, "/health", NULL, &r) == 0);
    CHECK_INT(r.status, 405);
    http_resp_free(&r);
    /* A trailing slash names the same route. */
    REQUIRE(ts_get(&s, "/api/pipeline/history/", &r) == 0);
    CHECK_INT(r.status, 200);
    http_resp_free(&r);
    CHECK_INT(ts_finish(&s, db), 0); /* clean, leak-free shutdown */
}

TEST(run_request_validation_in_fastapi_form) {
    char *db;
    test_server s = ts_start_empty(&db, NULL, NULL);
    REQUIRE(s.pid > 0);
    expect_run_422(&s, NULL, "missing", "body", "Field required");
    expect_run_422(&s, "", "missing", "body", "Field required");
    expect_run_422(&s, "{\"days\": 7", "json_invalid", "body.10", "JSON decode error");
    /* jansson's message quotes the bytes near the error, here cut inside "é": the error
     * must still be reported (found by tests/fuzz/fuzz_api). */
    expect_run_422(&s, "{\"a\\\xc3\xa9\": 1}", "json_invalid", "body.5", "JSON decode error");
    expect_run_422(&s, "[1,2]", "model_attributes_type", "body", "valid dictionary");
    expect_run_422(&s, "{\"days\": 0}", "greater_than_equal", "body.days",
                   "greater than or equal to 1");
    expect_run_422(&s, "{\"days\": 91}", "less_than_equal", "body.days",
                   "less than or equal to 90");
    expect_run_422(&s, "{\"concurrency\": 513}", "less_than_equal", "body.concurrency",
                   "less than or equal to 512");
    expect_run_422(&s, "{\"concurrency\": 0}", "greater_than_equal", "body.concurrency",
                   "greater than or equal to 1");
    expect_run_422(&s, "{\"concurrency\": -5}", "greater_than_equal", "body.concurrency",
                   "greater than or equal to 1");
    expect_run_422(&s, "{\"concurrency\": \"5\"}", "int_type", "body.concurrency",
                   "valid integer");
    expect_run_422(&s, "{\"concurrency\": 5.5}", "int_from_float", "body.concurrency",
                   "fractional part");
    expect_run_422(&s, "{\"concurrency\": true}", "int_type", "body.concurrency",
                   "valid integer");
    expect_run_422(&s, "{\"days\": 1e30}", "less_than_equal", "body.days",
                   "less than or equal to 90");
    expect_run_422(&s, "{\"max_conversations\": 0}", "greater_than_equal",
                   "body.max_conversations", "greater than or equal to 1");
    expect_run_422(&s, "{\"dry_run\": \"yes\"}", "bool_type", "body.dry_run", "valid boolean");
    expect_run_422(&s, "{\"auto_create_stories\": 1}", "bool_type", "body.auto_create_stories",
                   "valid boolean");
    expect_run_422(&s, "{\"llm\": \"gpt\"}", "literal_error", "body.llm", "'local' or 'openai'");

    /* Several invalid fields: every one is reported; the input is echoed. */
    http_resp r;
    REQUIRE(ts_post(&s, "/api/pipeline/run", "{\"days\": 100, \"concurrency\": 0, \"x\": 1}", &r) == 0);
    CHECK_INT(r.status, 422);
    CHECK_INT(json_array_size(json_object_get(r.json, "detail")), 2);
    CHECK_INT(json_integer_value(json_object_get(first_error(&r), "input")), 100);
    CHECK_INT(json_integer_value(json_object_get(json_object_get(first_error(&r), "ctx"), "le")), 90);
    http_resp_free(&r);
    /* None of that created a run. */
    REQUIRE(ts_get(&s, "/api/pipeline/history", &r) == 0);
    CHECK_INT(json_array_size(r.json), 0);
    http_resp_free(&r);
    CHECK_INT(ts_finish(&s, db), 0); /* clean, leak-free shutdown */
}

/* A story's state change validates its body like a run request: every problem is a
 * 422 naming where (a missing state was a 500), and a valid change of a story that
 * does not exist a 404. */
TEST(story_state_changes_are_validated) {
    char *db;
    test_server s = ts_start_empty(&db, NULL, NULL);
    REQUIRE(s.pid > 0);
    const struct {
        const char *body, *loc;
    } bad[] = {{"{\"state\": \"bogus\"}", "body.state"},
               {"{\"state\": 1}", "body.state"},
               {"{}", "body.state"},
               {"{\"state\": ", "body.10"},
               {"[\"closed\"]", "body"}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        http_resp r;
        REQUIRE(ts_post(&s, "/api/stories/1/state", bad[i].body, &r) == 0);
        CHECK_INT(r.status, 422);
        json_t *e = first_error(&r);
        REQUIRE(e != NULL);
        char *l = loc_of(e);
        CHECK_STR(l, bad[i].loc);
        free(l);
        http_resp_free(&r);
    }
    http_resp r;
    REQUIRE(ts_post(&s, "/api/stories/1/state", "{\"state\": \"closed\"}", &r) == 0);
    CHECK_INT(r.status, 404);
    http_resp_free(&r);
    CHECK_INT(ts_finish(&s, db), 0);
}

static void expect_get_422(const test_server *s, const char *path, const char *loc,
                           const char *type) {
    http_resp r;
    REQUIRE(ts_get(s, path, &r) == 0);
    CHECK_INT(r.status, 422);
    json_t *e = first_error(&r);
    REQUIRE(e != NULL);
    char *l = loc_of(e);
    CHECK_STR(l, loc);
    free(l);
    CHECK_STR(str_at(e, "type"), type);
    http_resp_free(&r);
}

TEST(path_and_query_validation) {
    char *db;
    test_server s = ts_start_empty(&db, NULL, NULL);
    REQUIRE(s.pid > 0);
    expect_get_422(&s, "/api/pipeline/status/abc", "path.run_id", "int_parsing");
    expect_get_422(&s, "/api/pipeline/status/1.5/preview", "path.run_id", "int_parsing");
    expect_get_422(&s, "/api/pipeline/history?limit=0", "query.limit", "greater_than_equal");
    expect_get_422(&s, "/api/pipeline/history?limit=101", "query.limit", "less_than_equal");
    expect_get_422(&s, "/api/pipeline/history?limit=ten", "query.limit", "int_parsing");
    expect_get_422(&s, "/api/pipeline/history?offset=-1", "query.offset", "greater_than_equal");
    expect_get_422(&s, "/api/pipeline/abc/events", "path.run_id", "int_parsing");
    expect_get_422(&s, "/api/stories?created_since=yesterday", "query.created_since",
                   "datetime_parsing");
    expect_get_422(&s, "/api/stories?limit=201", "query.limit", "less_than_equal");
    expect_get_422(&s, "/api/stories/x1", "path.story_id", "int_parsing");
    expect_get_422(&s, "/api/themes?limit=500", "query.limit", "less_than_equal");
    expect_get_422(&s, "/api/themes/trending?days=91", "query.days", "less_than_equal");
    expect_get_422(&s, "/api/themes/orphans?threshold=0", "query.threshold", "greater_than_equal");
    http_resp r;
    REQUIRE(ts_post(&s, "/api/pipeline/abc/resume", NULL, &r) == 0);
    CHECK_INT(r.status, 422);
    http_resp_free(&r);
    REQUIRE(ts_post(&s, "/api/pipeline/abc/create-stories", NULL, &r) == 0);
    CHECK_INT(r.status, 422);
    http_resp_free(&r);
    CHECK_INT(ts_finish(&s, db), 0); /* clean, leak-free shutdown */
}

TEST(reads_and_controls_on_an_empty_database) {
    char *db;
    test_server s = ts_start_empty(&db, NULL, NULL);
    REQUIRE(s.pid > 0);
    http_resp r;
    REQUIRE(ts_get(&s, "/api/pipeline/active", &r) == 0);
    CHECK_INT(r.status, 200);
    CHECK(json_is_false(json_object_get(r.json, "active")));
    CHECK(json_is_null(json_object_get(r.json, "run_id")));
    http_resp_free(&r);
    REQUIRE(ts_post(&s, "/api/pipeline/stop", NULL, &r) == 0);
    CHECK_INT(r.status, 200);
    CHECK_STR(str_at(r.json, "status"), "not_running");
    CHECK_INT(json_integer_value(json_object_get(r.json, "run_id")), 0);
    CHECK_STR(str_at(r.json, "message"), "No active pipeline run to stop.");
    http_resp_free(&r);
    REQUIRE(ts_get(&s, "/api/pipeline/history", &r) == 0);
    CHECK(json_is_array(r.json) && json_array_size(r.json) == 0);
    http_resp_free(&r);
    REQUIRE(ts_get(&s, "/api/pipeline/status/999", &r) == 0);
    CHECK_INT(r.status, 404);
    CHECK_STR(str_at(r.json, "detail"), "Pipeline run 999 not found");
    http_resp_free(&r);
    REQUIRE(ts_get(&s, "/api/pipeline/status/999/preview", &r) == 0);
    CHECK_INT(r.status, 404);
    CHECK_STR(str_at(r.json, "detail"), "Pipeline run 999 not found");
    http_resp_free(&r);
    REQUIRE(ts_get(&s, "/api/pipeline/999/events", &r) == 0);
    CHECK_INT(r.status, 404);
    http_resp_free(&r);
    REQUIRE(ts_post(&s, "/api/pipeline/999/create-stories", NULL, &r) == 0);
    CHECK_INT(r.status, 404);
    CHECK_STR(str_at(r.json, "detail"), "Pipeline run 999 not found");
    http_resp_free(&r);
    REQUIRE(ts_post(&s, "/api/pipeline/999/resume", NULL, &r) == 0);
    CHECK_INT(r.status, 404);
    CHECK_STR(str_at(r.json, "detail"), "Pipeline run 999 not found");
    http_resp_free(&r);
    REQUIRE(ts_get(&s, "/api/stories", &r) == 0);
    CHECK_INT(r.status, 200);
    CHECK_INT(json_array_size(json_object_get(r.json, "stories")), 0);
    CHECK_INT(json_integer_value(json_object_get(r.json, "total")), 0);
    CHECK_INT(json_integer_value(json_object_get(r.json, "limit")), 50);
    http_resp_free(&r);
    REQUIRE(ts_get(&s, "/api/stories/5", &r) == 0);
    CHECK_INT(r.status, 404);
    CHECK_STR(str_at(r.json, "detail"), "Story 5 not found");
    http_resp_free(&r);
    REQUIRE(ts_get(&s, "/api/themes", &r) == 0);
    CHECK_INT(r.status, 200);
    CHECK_INT(json_integer_value(json_object_get(r.json, "total")), 0);
    http_resp_free(&r);
    REQUIRE(ts_get(&s, "/api/themes/no_such_signature", &r) == 0);
    CHECK_INT(r.status, 404);
    CHECK_STR(str_at(r.json, "detail"), "Theme 'no_such_signature' not found");
    http_resp_free(&r);
    static const char *const lists[] = {"/api/themes/trending", "/api/themes/orphans",
                                        "/api/themes/singletons", "/api/themes/all"};
    for (size_t i = 0; i < sizeof lists / sizeof lists[0]; i++) {
        REQUIRE(ts_get(&s, lists[i], &r) == 0);
        CHECK_INT(r.status, 200);
        CHECK(json_is_array(json_object_get(r.json, "themes")));
        http_resp_free(&r);
    }
    CHECK_INT(ts_finish(&s, db), 0); /* clean, leak-free shutdown */
}

static long post_with_auth(const test_server *s, const char *path, const char *auth,
                           const char *body, char **www) {
    char *url = xasprintf("%s%s", s->base, path);
    const char *headers[3] = {"Content-Type: application/json", auth, NULL};
    http_resp r;
    http_do("POST", url, body, headers, &r);
    long status = r.status;
    if (www) *www = http_header(&r, "WWW-Authenticate");
    if (status == 401) CHECK_STR(str_at(r.json, "detail"), "Not authenticated");
    http_resp_free(&r);
    free(url);
    return status;
}

TEST(routes_require_the_bearer_token) {
    char *db;
    const char *const env[] = {"FEEDLINE_API_TOKEN=s3cret-token", NULL};
    test_server s = ts_start_empty(&db, NULL, env);
    REQUIRE(s.pid > 0);
    char *www = NULL;
    CHECK_INT(post_with_auth(&s, "/api/pipeline/run", NULL, "{}", &www), 401);
    CHECK_STR(www, "Bearer");
    free(www);
    CHECK_INT(post_with_auth(&s, "/api/pipeline/run", "Authorization: Bearer wrong", "{}", NULL), 401);
    CHECK_INT(post_with_auth(&s, "/api/pipeline/run", "Authorization: Bearer s3cret-toke", "{}", NULL), 401);
    CHECK_INT(post_with_auth(&s, "/api/pipeline/run", "Authorization: Bearer s3cret-token2", "{}", NULL), 401);
    CHECK_INT(post_with_auth(&s, "/api/pipeline/run", "Authorization: Basic czNjcmV0LXRva2Vu", "{}", NULL), 401);
    CHECK_INT(post_with_auth(&s, "/api/pipeline/stop", NULL, NULL, NULL), 401);
    CHECK_INT(post_with_auth(&s, "/api/pipeline/1/resume", NULL, NULL, NULL), 401);
    CHECK_INT(post_with_auth(&s, "/api/pipeline/1/create-stories", NULL, NULL, NULL), 401);
    /* Authentication comes before validation: an invalid body without a token is 401. */
    CHECK_INT(post_with_auth(&s, "/api/pipeline/run", NULL, "{bad", NULL), 401);
    /* With the token: the request goes through (422 for the invalid body, 200 stop). */
    CHECK_INT(post_with_auth(&s, "/api/pipeline/run", "Authorization: Bearer s3cret-token", "{bad", NULL), 422);
    CHECK_INT(post_with_auth(&s, "/api/pipeline/stop", "Authorization: bearer s3cret-token", NULL, NULL), 200);
    /* Reads need it too (FEEDLINE_API_TOKEN is an operate token; test_api_auth covers
     * every route and role). */
    http_resp r;
    REQUIRE(ts_get(&s, "/api/pipeline/active", &r) == 0);
    CHECK_INT(r.status, 401);
    http_resp_free(&r);
    char *url = xasprintf("%s/api/pipeline/active", s.base);
    const char *headers[] = {"Authorization: Bearer s3cret-token", NULL};
    REQUIRE(http_do("GET", url, NULL, headers, &r) == 0);
    CHECK_INT(r.status, 200);
    http_resp_free(&r);
    free(url);
    CHECK_INT(ts_finish(&s, db), 0); /* clean, leak-free shutdown */
}

TEST(request_bodies_over_64k_get_413) {
    char *db;
    test_server s = ts_start_empty(&db, NULL, NULL);
    REQUIRE(s.pid > 0);
    /* Exactly 64 KiB of valid JSON is accepted (then validated: days 0 -> 422). */
    size_t limit = 64 * 1024;
    char *body = xmalloc(limit + 2);
    memset(body, ' ', limit + 1);
    memcpy(body, "{\"days\":0}", 10);
    body[limit] = '\0';
    http_resp r;
    REQUIRE(ts_post(&s, "/api/pipeline/run", body, &r) == 0);
    CHECK_INT(r.status, 422);
    http_resp_free(&r);
    body[limit] = ' ';
    body[limit + 1] = '\0';
    REQUIRE(ts_post(&s, "/api/pipeline/run", body, &r) == 0);
    CHECK_INT(r.status, 413);
    CHECK(str_at(r.json, "detail") && strstr(str_at(r.json, "detail"), "65536"));
    http_resp_free(&r);
    /* Without Content-Length (chunked), counted as it arrives. */
    char *url = xasprintf("%s/api/pipeline/run", s.base);
    const char *chunked[] = {"Transfer-Encoding: chunked", "Content-Type: application/json", NULL};
    REQUIRE(http_do("POST", url, body, chunked, &r) == 0);
    CHECK_INT(r.status, 413);
    http_resp_free(&r);
    /* Any route: a GET with a huge body too. */
    REQUIRE(http_do("GET", url, body, NULL, &r) == 0);
    CHECK_INT(r.status, 413);
    http_resp_free(&r);
    free(url);
    free(body);
    REQUIRE(ts_get(&s, "/health", &r) == 0);
    CHECK_INT(r.status, 200);
    http_resp_free(&r);
    CHECK_INT(ts_finish(&s, db), 0); /* clean, leak-free shutdown */
}

static char *get_with_origin(const test_server *s, const char *method, const char *origin,
                             long *status) {
    char *url = xasprintf("%s/api/pipeline/active", s->base);
    char *o = xasprintf("Origin: %s", origin);
    const char *headers[] = {o, "Access-Control-Request-Method: POST", NULL};
    http_resp r;
    http_do(method, url, NULL, strcmp(method, "OPTIONS") == 0 ? headers : (const char *const[]){o, NULL}, &r);
    *status = r.status;
    char *acao = http_header(&r, "Access-Control-Allow-Origin");
    if (acao && strcmp(method, "OPTIONS") == 0 && r.status == 200) {
        char *methods = http_header(&r, "Access-Control-Allow-Methods");
        CHECK(methods && strstr(methods, "POST"));
        free(methods);
    }
    http_resp_free(&r);
    free(o);
    free(url);
    return acao;
}

TEST(cors_allow_list) {
    char *db;
    test_server s = ts_start_empty(&db, NULL, NULL);
    REQUIRE(s.pid > 0);
    long status;
    char *acao = get_with_origin(&s, "GET", "http://localhost:3000", &status);
    CHECK_INT(status, 200);
    CHECK_STR(acao, "http://localhost:3000"); /* the original's default list */
    free(acao);
    acao = get_with_origin(&s, "GET", "http://evil.example", &status);
    CHECK_INT(status, 200);
    CHECK(acao == NULL);
    free(acao);
    acao = get_with_origin(&s, "OPTIONS", "http://127.0.0.1:8501", &status);
    CHECK_INT(status, 200);
    CHECK_STR(acao, "http://127.0.0.1:8501");
    free(acao);
    acao = get_with_origin(&s, "OPTIONS", "http://evil.example", &status);
    CHECK_INT(status, 400);
    CHECK(acao == NULL);
    free(acao);
    CHECK_INT(ts_finish(&s, db), 0); /* clean, leak-free shutdown */

    const char *const extra[] = {"--cors-origin", "https://app.example", NULL};
    s = ts_start_empty(&db, extra, NULL);
    REQUIRE(s.pid > 0);
    acao = get_with_origin(&s, "GET", "https://app.example", &status);
    CHECK_STR(acao, "https://app.example");
    free(acao);
    acao = get_with_origin(&s, "GET", "http://localhost:3000", &status);
    CHECK(acao == NULL);
    free(acao);
    CHECK_INT(ts_finish(&s, db), 0); /* clean, leak-free shutdown */
}

/* The value of a metric line "name{labels} value" (first match), or -1. */
static double metric_value(const char *text, const char *series) {
    const char *p = text;
    size_t n = strlen(series);
    while ((p = strstr(p, series))) {
        if ((p == text || p[-1] == '\n') && p[n] == ' ') return atof(p + n + 1);
        p += n;
    }
    return -1;
}

TEST(metrics_in_prometheus_text) {
    char *db;
    test_server s = ts_start_empty(&db, NULL, NULL);
    REQUIRE(s.pid > 0);
    http_resp r;
    for (int i = 0; i < 5; i++) {
        ts_get(&s, "/health", &r);
        http_resp_free(&r);
    }
    ts_get(&s, "/nope", &r);
    http_resp_free(&r);
    ts_get(&s, "/api/pipeline/history?limit=0", &r);
    http_resp_free(&r);
    REQUIRE(ts_get(&s, "/metrics", &r) == 0);
    CHECK_INT(r.status, 200);
    char *ct = http_header(&r, "Content-Type");
    CHECK(ct && strncmp(ct, "text/plain", 10) == 0);
    free(ct);
    const char *t = r.body;
    CHECK_NEAR(metric_value(t, "feedline_runs{state=\"running\"}"), 0, 0);
    CHECK_NEAR(metric_value(t, "feedline_runs{state=\"completed\"}"), 0, 0);
    CHECK_NEAR(metric_value(t, "feedline_http_requests_total{method=\"GET\",route=\"/health\",status=\"200\"}"), 5, 0);
    CHECK_NEAR(metric_value(t, "feedline_http_requests_total{method=\"any\",route=\"unmatched\",status=\"404\"}"), 1, 0);
    CHECK_NEAR(metric_value(t, "feedline_http_requests_total{method=\"GET\",route=\"/api/pipeline/history\",status=\"422\"}"), 1, 0);
    CHECK_NEAR(metric_value(t, "feedline_http_request_duration_seconds_count{method=\"GET\",route=\"/health\"}"), 5, 0);
    CHECK_NEAR(metric_value(t, "feedline_http_request_duration_seconds_bucket{method=\"GET\",route=\"/health\",le=\"+Inf\"}"), 5, 0);
    CHECK(metric_value(t, "feedline_http_request_duration_seconds_sum{method=\"GET\",route=\"/health\"}") > 0);
    CHECK(metric_value(t, "feedline_llm_requests_total") >= 0);
    CHECK(metric_value(t, "feedline_llm_rate_limited_total") >= 0);
    CHECK(metric_value(t, "feedline_llm_in_flight") >= 0);
    CHECK(metric_value(t, "feedline_llm_tokens_total{kind=\"prompt\"}") >= 0);
    CHECK(metric_value(t, "feedline_llm_tokens_total{kind=\"cached\"}") >= 0);
    CHECK_NEAR(metric_value(t, "feedline_event_streams"), 0, 0);
    /* Buckets are cumulative. */
    double prev = 0;
    const char *p = t;
    const char *series = "feedline_http_request_duration_seconds_bucket{method=\"GET\",route=\"/health\",le=";
    int buckets = 0;
    while ((p = strstr(p, series))) {
        const char *sp = strchr(p, ' ');
        double v = atof(sp + 1);
        CHECK(v >= prev);
        prev = v;
        buckets++;
        p = sp;
    }
    CHECK(buckets >= 10);
    http_resp_free(&r);
    CHECK_INT(ts_finish(&s, db), 0); /* clean, leak-free shutdown */
}

/* Every route of the contract, as the original's client and the issue name them. */
static const char *const CONTRACT[][2] = {
    {"post", "/api/pipeline/run"},
    {"get", "/api/pipeline/status/{run_id}"},
    {"get", "/api/pipeline/status/{run_id}/preview"},
    {"get", "/api/pipeline/history"},
    {"get", "/api/pipeline/active"},
    {"post", "/api/pipeline/stop"},
    {"post", "/api/pipeline/{run_id}/create-stories"},
    {"post", "/api/pipeline/{run_id}/resume"},
    {"get", "/api/pipeline/{run_id}/events"},
    {"get", "/api/themes"},
    {"get", "/api/themes/{signature}"},
    {"get", "/api/stories"},
    {"get", "/api/stories/{story_id}"},
    {"get", "/health"},
    {"get", "/health/db"},
    {"get", "/metrics"},
    {"get", "/openapi.json"},
};

TEST(openapi_describes_every_route_and_the_server_serves_every_path_it_lists) {
    char *db;
    test_server s = ts_start_empty(&db, NULL, NULL);
    REQUIRE(s.pid > 0);
    http_resp doc;
    REQUIRE(ts_get(&s, "/openapi.json", &doc) == 0);
    CHECK_INT(doc.status, 200);
    json_t *paths = json_object_get(doc.json, "paths");
    REQUIRE(json_is_object(paths));
    for (size_t i = 0; i < sizeof CONTRACT / sizeof CONTRACT[0]; i++) {
        json_t *op = json_object_get(json_object_get(paths, CONTRACT[i][1]), CONTRACT[i][0]);
        CHECK(op != NULL);
        if (!op) printf("    missing %s %s\n", CONTRACT[i][0], CONTRACT[i][1]);
    }
    /* The request body schema carries the bounds the server enforces. */
    json_t *post_run = json_object_get(json_object_get(paths, "/api/pipeline/run"), "post");
    json_t *content = json_object_get(json_object_get(post_run, "requestBody"), "content");
    json_t *schema = json_object_get(json_object_get(content, "application/json"), "schema");
    json_t *props = json_object_get(schema, "properties");
    CHECK_INT(json_integer_value(json_object_get(json_object_get(props, "concurrency"), "maximum")), 512);
    CHECK_INT(json_integer_value(json_object_get(json_object_get(props, "concurrency"), "default")), 20);
    CHECK_INT(json_integer_value(json_object_get(json_object_get(props, "days"), "maximum")), 90);
    CHECK_INT(json_integer_value(json_object_get(json_object_get(props, "days"), "default")), 7);
    CHECK(json_object_get(post_run, "security") != NULL);
    CHECK(json_object_get(json_object_get(post_run, "responses"), "409") != NULL);
    /* Every documented operation exists on the server (never the router's 404). */
    const char *path;
    json_t *item;
    int ops = 0;
    json_object_foreach(paths, path, item) {
        const char *method;
        json_t *op;
        json_object_foreach(item, method, op) {
            buf_t url = BUF_INIT;
            buf_puts(&url, s.base);
            for (const char *p = path; *p; p++) {
                if (*p == '{') {
                    buf_puts(&url, "999999");
                    p = strchr(p, '}');
                } else {
                    buf_putc(&url, *p);
                }
            }
            if (strstr(path, "events")) { /* a stream: only check it is not a 404 route */
                buf_free(&url);
                continue;
            }
            http_resp r;
            const char *m = strcmp(method, "get") == 0 ? "GET" : "POST";
            http_do(m, buf_cstr(&url), strcmp(m, "POST") == 0 ? "{}" : NULL, NULL, &r);
            const char *detail = str_at(r.json, "detail");
            CHECK(r.status != 405 && !(r.status == 404 && detail && !strcmp(detail, "Not Found")));
            if (r.status == 405 || (r.status == 404 && detail && !strcmp(detail, "Not Found")))
                printf("    %s %s -> %ld\n", m, buf_cstr(&url), r.status);
            http_resp_free(&r);
            buf_free(&url);
            ops++;
        }
    }
    CHECK(ops >= 20);
    http_resp_free(&doc);
    /* The document itself describes the errors. */
    CHECK_INT(ts_finish(&s, db), 0); /* clean, leak-free shutdown */
}
