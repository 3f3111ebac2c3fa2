/* Authentication of the HTTP API: token parsing (lists, files, roles; errors that never
 * quote a token), and over real sockets every route of the server's own OpenAPI
 * document (so routes added later are covered without editing this file) with no
 * token, a wrong token, a metrics token, a read token and an operate token; the
 * response cache and the event stream behind the check; tokens never in the log; the
 * refusal to listen beyond loopback without a token. */
#include "test.h"

#include <stdlib.h>
#include <sys/stat.h>

#include "api/api.h"
#include "support/fixtures.h"
#include "support/server.h"
#include "util/buf.h"
#include "util/mem.h"

#define READ_TOK "read-tok-5f1c9e"
#define OP_TOK "operate-tok-a83d20"
#define METRICS_TOK "metrics-tok-77b4e1"

/* ------------------------------------------------------------------ parsing */

TEST(token_lists_grant_their_roles_and_nothing_else) {
    api_tokens *t = api_tokens_new();
    char err[256] = "";
    CHECK_INT(api_tokens_parse_list(t, " read:" READ_TOK " , operate:" OP_TOK ",,metrics:"
                                    METRICS_TOK " ", "FEEDLINE_API_TOKENS", err, sizeof err), 0);
    CHECK_INT(api_tokens_count(t), 3);
    CHECK_INT(api_tokens_check(t, READ_TOK), API_ROLE_READ | API_ROLE_METRICS);
    CHECK_INT(api_tokens_check(t, OP_TOK), API_ROLE_READ | API_ROLE_OPERATE | API_ROLE_METRICS);
    CHECK_INT(api_tokens_check(t, METRICS_TOK), API_ROLE_METRICS);
    /* A prefix, an extension, another case, empty, none: nothing. */
    CHECK_INT(api_tokens_check(t, "read-tok-5f1c9"), 0);
    CHECK_INT(api_tokens_check(t, READ_TOK "0"), 0);
    CHECK_INT(api_tokens_check(t, "READ-TOK-5F1C9E"), 0);
    CHECK_INT(api_tokens_check(t, ""), 0);
    CHECK_INT(api_tokens_check(t, NULL), 0);
    CHECK_INT(api_tokens_configured(t), API_ROLE_READ | API_ROLE_OPERATE | API_ROLE_METRICS);
    CHECK_INT(api_tokens_configured(NULL), 0);
    /* One token given twice with two roles has both. */
    CHECK_INT(api_tokens_add(t, "metrics", "shared-tok", err, sizeof err), 0);
    CHECK_INT(api_tokens_add(t, "read", "shared-tok", err, sizeof err), 0);
    CHECK_INT(api_tokens_check(t, "shared-tok"), API_ROLE_READ | API_ROLE_METRICS);
    CHECK_INT(api_tokens_add(t, "admin", "x", err, sizeof err), -1);
    CHECK(strstr(err, "unknown role") != NULL);
    CHECK_INT(api_tokens_add(t, "read", "", err, sizeof err), -1);
    api_tokens_free(t);

    /* Bad items are named by position; the text, which may be a token, is not shown. */
    static const char *const bad[][2] = {
        {"read:ok-1,s3cret-without-role", "item 2"},
        {"admin:s3cret-admin", "item 1"},
        {"read:", "item 1"},
        {"operate:s3cret with space", "item 1"},
        {"read:ok-1,operate:ok-2,:s3cret-no-role-name", "item 3"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        api_tokens *b = api_tokens_new();
        err[0] = '\0';
        CHECK_INT(api_tokens_parse_list(b, bad[i][0], "FEEDLINE_API_TOKENS", err, sizeof err), -1);
        CHECK(strstr(err, "FEEDLINE_API_TOKENS: ") == err);
        CHECK(strstr(err, bad[i][1]) != NULL);
        CHECK(strstr(err, "s3cret") == NULL);
        if (!strstr(err, bad[i][1]) || strstr(err, "s3cret")) printf("    %s -> %s\n", bad[i][0], err);
        api_tokens_free(b);
    }
}

TEST(token_files_hold_role_token_lines_and_errors_name_file_and_line) {
    char *dir = fx_tmpdir();
    char *good = xasprintf("%s/tokens", dir);
    REQUIRE(fx_write_file(good, "# feedline API tokens\n"
                                "read   " READ_TOK "\n"
                                "\n"
                                "  operate\t" OP_TOK "  \r\n"
                                "metrics " METRICS_TOK) == 0);
    REQUIRE(chmod(good, 0600) == 0);
    api_tokens *t = api_tokens_new();
    char err[512] = "";
    CHECK_INT(api_tokens_load_file(t, good, err, sizeof err), 0);
    CHECK_INT(api_tokens_count(t), 3);
    CHECK_INT(api_tokens_check(t, READ_TOK), API_ROLE_READ | API_ROLE_METRICS);
    CHECK_INT(api_tokens_check(t, OP_TOK), API_ROLE_READ | API_ROLE_OPERATE | API_ROLE_METRICS);
    CHECK_INT(api_tokens_check(t, METRICS_TOK), API_ROLE_METRICS);
    api_tokens_free(t);

    char *bad = xasprintf("%s/bad-tokens", dir);
    REQUIRE(fx_write_file(bad, "read " READ_TOK "\n# ok\ns3cret-on-its-own\n") == 0);
    REQUIRE(chmod(bad, 0600) == 0);
    t = api_tokens_new();
    CHECK_INT(api_tokens_load_file(t, bad, err, sizeof err), -1);
    char *where = xasprintf("%s:3: ", bad);
    CHECK(strstr(err, where) == err);
    CHECK(strstr(err, "s3cret") == NULL);
    api_tokens_free(t);
    REQUIRE(fx_write_file(bad, "read " READ_TOK " trailing-s3cret\n") == 0);
    t = api_tokens_new();
    CHECK_INT(api_tokens_load_file(t, bad, err, sizeof err), -1);
    free(where);
    where = xasprintf("%s:1: ", bad);
    CHECK(strstr(err, where) == err);
    CHECK(strstr(err, "s3cret") == NULL && strstr(err, READ_TOK) == NULL);
    api_tokens_free(t);

    char *missing = xasprintf("%s/none", dir);
    t = api_tokens_new();
    CHECK_INT(api_tokens_load_file(t, missing, err, sizeof err), -1);
    CHECK(strstr(err, "cannot open") != NULL);
    api_tokens_free(t);
    fx_rmtree(dir);
    free(dir);
    free(good);
    free(bad);
    free(where);
    free(missing);
}

/* ------------------------------------------------------------------ over HTTP */

/* One request with an optional bearer token; the status, and WWW-Authenticate. */
static long call(const test_server *s, const char *method, const char *path, const char *token,
                 char **www, char **body) {
    char *url = xasprintf("%s%s", s->base, path);
    char *auth = token ? xasprintf("Authorization: Bearer %s", token) : NULL;
    const char *headers[3] = {"Content-Type: application/json", auth, NULL};
    http_resp r;
    /* POST bodies are invalid JSON: a request that gets through is answered 422 (or
     * ignored) and never starts work. */
    http_do(method, url, strcmp(method, "POST") == 0 ? "{bad" : NULL, headers, &r);
    long status = r.status;
    if (www) *www = http_header(&r, "WWW-Authenticate");
    if (body) *body = xstrdup(r.body);
    http_resp_free(&r);
    free(auth);
    free(url);
    return status;
}

/* A path of the document with its {params} filled with a run/story id no one has. */
static char *concrete(const char *pattern) {
    buf_t b = BUF_INIT;
    for (const char *p = pattern; *p; p++) {
        if (*p == '{') {
            buf_puts(&b, "999999");
            p = strchr(p, '}');
        } else {
            buf_putc(&b, *p);
        }
    }
    return buf_detach(&b);
}

/* The role an operation's security requirement names ("read", "operate", "metrics"),
 * or NULL when it is open (an empty list). */
static const char *required_role(const json_t *op) {
    json_t *sec = json_object_get(op, "security");
    if (!json_is_array(sec) || json_array_size(sec) == 0) return NULL;
    return json_string_value(json_array_get(json_object_get(json_array_get(sec, 0), "bearerAuth"), 0));
}

static int denied(long status) { return status == 401 || status == 403; }

static const char *const DATA_ENV[] = {"FEEDLINE_API_TOKENS=read:" READ_TOK ",operate:" OP_TOK,
                                       "FEEDLINE_METRICS_TOKEN=" METRICS_TOK, NULL};

TEST(every_route_but_the_open_ones_needs_a_token_with_its_role) {
    char *db;
    test_server s = ts_start_empty(&db, NULL, DATA_ENV);
    REQUIRE(s.pid > 0);
    http_resp doc;
    REQUIRE(ts_get(&s, "/openapi.json", &doc) == 0); /* open */
    REQUIRE(doc.status == 200);
    json_t *paths = json_object_get(doc.json, "paths");
    REQUIRE(json_is_object(paths));
    const char *pattern;
    json_t *item;
    int open = 0, guarded = 0;
    json_object_foreach(paths, pattern, item) {
        const char *m;
        json_t *op;
        json_object_foreach(item, m, op) {
            const char *method = strcmp(m, "post") == 0 ? "POST" : "GET";
            const char *role = required_role(op);
            char *path = concrete(pattern);
            char *www = NULL;
            long none = call(&s, method, path, NULL, &www, NULL);
            long wrong = call(&s, method, path, "wrong-token", NULL, NULL);
            long metrics = call(&s, method, path, METRICS_TOK, NULL, NULL);
            long rd = call(&s, method, path, READ_TOK, NULL, NULL);
            long opr = call(&s, method, path, OP_TOK, NULL, NULL);
            int ok;
            if (!role) {
                open++;
                ok = !denied(none) && !denied(wrong) && !denied(metrics) && !denied(rd) &&
                     !denied(opr);
            } else {
                guarded++;
                int is_metrics = strcmp(role, "metrics") == 0;
                int is_operate = strcmp(role, "operate") == 0;
                ok = none == 401 && www && strcmp(www, "Bearer") == 0 && wrong == 401 &&
                     (is_metrics ? !denied(metrics) : metrics == 403) &&
                     (is_operate ? rd == 403 : !denied(rd)) && !denied(opr);
                /* The document's 401/403 answers are listed for it. */
                json_t *resp = json_object_get(op, "responses");
                CHECK(json_object_get(resp, "401") && json_object_get(resp, "403"));
            }
            CHECK(ok);
            if (!ok)
                printf("    %s %s (%s): none %ld wrong %ld metrics %ld read %ld operate %ld\n",
                       method, path, role ? role : "open", none, wrong, metrics, rd, opr);
            free(www);
            free(path);
        }
    }
    CHECK(guarded >= 20);
    /* Exactly what may stay open is open. */
    CHECK_INT(open, 3);
    static const char *const OPEN[] = {"/", "/health", "/openapi.json"};
    for (size_t i = 0; i < 3; i++)
        CHECK(required_role(json_object_get(json_object_get(paths, OPEN[i]), "get")) == NULL);
    http_resp_free(&doc);

    /* The routes the issue names, whatever the document says. */
    static const char *const NAMED[][2] = {
        {"GET", "/api/stories"},           {"GET", "/api/stories/1"},
        {"GET", "/api/themes"},            {"GET", "/api/pipeline/history"},
        {"GET", "/api/pipeline/status/1"}, {"GET", "/api/pipeline/1/events"},
        {"GET", "/metrics"},               {"POST", "/api/pipeline/run"},
        {"HEAD", "/api/stories"},          {"GET", "/health/db"},
    };
    for (size_t i = 0; i < sizeof NAMED / sizeof NAMED[0]; i++) {
        long st = call(&s, NAMED[i][0], NAMED[i][1], NULL, NULL, NULL);
        CHECK_INT(st, 401);
        if (st != 401) printf("    %s %s -> %ld\n", NAMED[i][0], NAMED[i][1], st);
    }
    /* A read token on a write route: 403 with the scope challenge, naming the route. */
    char *www = NULL, *body = NULL;
    CHECK_INT(call(&s, "POST", "/api/pipeline/stop", READ_TOK, &www, &body), 403);
    CHECK_STR(www, "Bearer error=\"insufficient_scope\"");
    CHECK(body && strstr(body, "POST /api/pipeline/stop") != NULL);
    free(www);
    free(body);
    /* "bearer" in any case, as before. */
    char *url = xasprintf("%s/api/stories", s.base);
    const char *headers[] = {"Authorization: bearer " READ_TOK, NULL};
    http_resp r;
    REQUIRE(http_do("GET", url, NULL, headers, &r) == 0);
    CHECK_INT(r.status, 200);
    http_resp_free(&r);
    free(url);
    CHECK_INT(ts_finish(&s, db), 0); /* clean, leak-free shutdown */
}

/* One HTTP worker, so its response cache holds what an authorised client was just
 * given: a client without the token still gets 401, not the cached body; and the
 * tokens do not appear in the debug log. */
TEST(cached_answers_and_the_log_do_not_leak_past_the_token_check) {
    char *db;
    const char *const extra[] = {"--threads", "1", NULL};
    const char *const env[] = {DATA_ENV[0], DATA_ENV[1], "FEEDLINE_LOG=debug", NULL};
    test_server s = ts_start_empty(&db, extra, env);
    REQUIRE(s.pid > 0);
    static const char *const CACHED[] = {"/api/pipeline/history", "/api/themes", "/api/stories"};
    for (size_t i = 0; i < sizeof CACHED / sizeof CACHED[0]; i++) {
        char *first = NULL, *second = NULL, *leak = NULL;
        CHECK_INT(call(&s, "GET", CACHED[i], READ_TOK, NULL, &first), 200);
        CHECK_INT(call(&s, "GET", CACHED[i], READ_TOK, NULL, &second), 200);
        CHECK_STR(first, second);
        CHECK_INT(call(&s, "GET", CACHED[i], NULL, NULL, &leak), 401);
        CHECK(leak && strstr(leak, "Not authenticated") != NULL);
        free(leak);
        leak = NULL;
        CHECK_INT(call(&s, "GET", CACHED[i], "wrong-token", NULL, &leak), 401);
        CHECK(leak && strcmp(leak, first) != 0);
        free(leak);
        CHECK_INT(call(&s, "GET", CACHED[i], METRICS_TOK, NULL, NULL), 403);
        free(first);
        free(second);
    }
    CHECK_INT(call(&s, "POST", "/api/pipeline/stop", OP_TOK, NULL, NULL), 200);
    CHECK_INT(call(&s, "GET", "/metrics", METRICS_TOK, NULL, NULL), 200);
    char *log = NULL;
    FILE *f = fopen(s.log_path, "r");
    REQUIRE(f != NULL);
    buf_t b = BUF_INIT;
    char chunk[4096];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) buf_append(&b, chunk, n);
    fclose(f);
    log = buf_detach(&b);
    CHECK(strstr(log, "GET /api/stories") != NULL); /* the debug log has the requests */
    CHECK(strstr(log, READ_TOK) == NULL);
    CHECK(strstr(log, OP_TOK) == NULL);
    CHECK(strstr(log, METRICS_TOK) == NULL);
    CHECK(strstr(log, "wrong-token") == NULL);
    free(log);
    CHECK_INT(ts_finish(&s, db), 0); /* clean, leak-free shutdown */
}

/* A metrics token alone guards /metrics only; FEEDLINE_API_TOKEN alone is an operate
 * token; a token file works like the list. */
TEST(metrics_token_legacy_token_and_token_file) {
    char *db;
    const char *const menv[] = {"FEEDLINE_METRICS_TOKEN=" METRICS_TOK, NULL};
    test_server s = ts_start_empty(&db, NULL, menv);
    REQUIRE(s.pid > 0);
    CHECK_INT(call(&s, "GET", "/metrics", NULL, NULL, NULL), 401);
    CHECK_INT(call(&s, "GET", "/metrics", "wrong-token", NULL, NULL), 401);
    CHECK_INT(call(&s, "GET", "/metrics", METRICS_TOK, NULL, NULL), 200);
    CHECK_INT(call(&s, "GET", "/api/stories", NULL, NULL, NULL), 200); /* no data token set */
    CHECK_INT(ts_finish(&s, db), 0); /* clean, leak-free shutdown */

    const char *const lenv[] = {"FEEDLINE_API_TOKEN=" OP_TOK, NULL};
    s = ts_start_empty(&db, NULL, lenv);
    REQUIRE(s.pid > 0);
    CHECK_INT(call(&s, "GET", "/api/stories", NULL, NULL, NULL), 401);
    CHECK_INT(call(&s, "GET", "/api/stories", OP_TOK, NULL, NULL), 200);
    CHECK_INT(call(&s, "GET", "/metrics", NULL, NULL, NULL), 401);
    CHECK_INT(call(&s, "GET", "/metrics", OP_TOK, NULL, NULL), 200);
    CHECK_INT(call(&s, "POST", "/api/pipeline/stop", OP_TOK, NULL, NULL), 200);
    CHECK_INT(ts_finish(&s, db), 0); /* clean, leak-free shutdown */

    char *dir = fx_tmpdir();
    char *file = xasprintf("%s/tokens", dir);
    REQUIRE(fx_write_file(file, "read " READ_TOK "\noperate " OP_TOK "\n") == 0);
    REQUIRE(chmod(file, 0600) == 0);
    char *fenv_file = xasprintf("FEEDLINE_API_TOKENS_FILE=%s", file);
    const char *const fenv[] = {fenv_file, NULL};
    s = ts_start_empty(&db, NULL, fenv);
    REQUIRE(s.pid > 0);
    CHECK_INT(call(&s, "GET", "/api/themes", NULL, NULL, NULL), 401);
    CHECK_INT(call(&s, "GET", "/api/themes", READ_TOK, NULL, NULL), 200);
    CHECK_INT(call(&s, "POST", "/api/pipeline/stop", READ_TOK, NULL, NULL), 403);
    CHECK_INT(call(&s, "POST", "/api/pipeline/stop", OP_TOK, NULL, NULL), 200);
    CHECK_INT(ts_finish(&s, db), 0); /* clean, leak-free shutdown */
    fx_rmtree(dir);
    free(dir);
    free(file);
    free(fenv_file);
}

/* `feedline serve` with args and one env addition (or NULL); its exit status and
 * stderr (it must exit). */
static int serve_exits(const char *const args[], const char *env_add, char **errs) {
    const char *argv[16] = {"serve"};
    size_t n = 1;
    for (size_t i = 0; args[i] && n < 15; i++) argv[n++] = args[i];
    argv[n] = NULL;
    const char *const env[] = {env_add, NULL};
    return fx_feedline(argv, env, NULL, errs);
}

TEST(serve_refuses_a_non_loopback_address_without_a_token) {
    char *dir = fx_tmpdir();
    char *dbp = xasprintf("%s/x.db", dir);
    const char *const wide[] = {"--db", dbp, "--listen", "0.0.0.0:0", NULL};
    char *errs = NULL;
    CHECK_INT(serve_exits(wide, NULL, &errs), 1);
    CHECK(errs && strstr(errs, "refusing to listen on 0.0.0.0:0 without an API token") != NULL);
    CHECK(errs && strstr(errs, "--insecure-no-auth") != NULL);
    free(errs);
    /* A metrics token does not protect the data. */
    CHECK_INT(serve_exits(wide, "FEEDLINE_METRICS_TOKEN=" METRICS_TOK, &errs), 1);
    CHECK(errs && strstr(errs, "refusing") != NULL && !strstr(errs, METRICS_TOK));
    free(errs);
    /* A malformed token setting stops the start, naming the setting, not the token. */
    CHECK_INT(serve_exits(wide, "FEEDLINE_API_TOKENS=read:ok-tok,s3cret-alone", &errs), 1);
    CHECK(errs && strstr(errs, "FEEDLINE_API_TOKENS: item 2") != NULL && !strstr(errs, "s3cret"));
    free(errs);
    fx_rmtree(dir);
    free(dir);
    free(dbp);

    /* With --insecure-no-auth, or with a token, it starts there. */
    char *db;
    const char *const insecure[] = {"--listen", "0.0.0.0:0", "--insecure-no-auth", NULL};
    test_server s = ts_start_empty(&db, insecure, NULL);
    REQUIRE(s.pid > 0);
    CHECK_INT(call(&s, "GET", "/api/stories", NULL, NULL, NULL), 200);
    CHECK_INT(ts_finish(&s, db), 0); /* clean, leak-free shutdown */
    const char *const anyaddr[] = {"--listen", "0.0.0.0:0", NULL};
    const char *const env[] = {"FEEDLINE_API_TOKENS=read:" READ_TOK, NULL};
    s = ts_start_empty(&db, anyaddr, env);
    REQUIRE(s.pid > 0);
    CHECK_INT(call(&s, "GET", "/api/stories", NULL, NULL, NULL), 401);
    CHECK_INT(call(&s, "GET", "/api/stories", READ_TOK, NULL, NULL), 200);
    /* Only a read token: nobody may operate. */
    CHECK_INT(call(&s, "POST", "/api/pipeline/stop", READ_TOK, NULL, NULL), 403);
    CHECK_INT(ts_finish(&s, db), 0); /* clean, leak-free shutdown */
}
