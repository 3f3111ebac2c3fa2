/* `feedline fetch` and `feedline run` against the fake Intercom server, through the
 * real CLI binary (FEEDLINE_BIN) with INTERCOM_ACCESS_TOKEN / INTERCOM_BASE_URL. */
#include "test.h"

#include <stdarg.h>
#include <stdlib.h>

#include "source/source.h"
#include "support/fixtures.h"
#include "support/intercom_fake.h"
#include "util/util.h"

#define SEED 5
#define DAYS 30

typedef struct cli {
    ifake fake;
    ifake_set set;
    int64_t base;
    char *db;
    char env_token[128], env_base[128], env_vocab[1024];
} cli;

static int cli_start(cli *c, size_t count, ...) {
    memset(c, 0, sizeof *c);
    /* conversations in the 30 days before now, so --days windows are meaningful */
    c->base = wall_unix();
    char n[32], seed[32], base[32], days[32];
    snprintf(n, sizeof n, "%zu", count);
    snprintf(seed, sizeof seed, "%d", SEED);
    snprintf(base, sizeof base, "%lld", (long long)c->base);
    snprintf(days, sizeof days, "%d", DAYS);
    const char *args[40] = {"--count", n, "--seed", seed, "--base-time", base, "--days", days};
    size_t k = 8;
    va_list ap;
    va_start(ap, count);
    const char *a;
    while ((a = va_arg(ap, const char *)) && k < 39) args[k++] = a;
    va_end(ap);
    args[k] = NULL;
    if (ifake_start(&c->fake, args)) return -1;
    if (ifake_set_build(&c->set, count, SEED, c->base, DAYS)) return -1;
    c->db = fx_db_url();
    snprintf(c->env_token, sizeof c->env_token, "INTERCOM_ACCESS_TOKEN=test-token");
    snprintf(c->env_base, sizeof c->env_base, "INTERCOM_BASE_URL=%s", c->fake.base_url);
    char *vocab = fx_path("data/theme_vocabulary.json");
    snprintf(c->env_vocab, sizeof c->env_vocab, "FEEDLINE_VOCAB=%s", vocab);
    free(vocab);
    return 0;
}

static void cli_stop(cli *c) {
    ifake_stop(&c->fake);
    ifake_set_free(&c->set);
    free(c->db);
}

/* Runs feedline with the fake's environment and the arguments (NULL-terminated). */
static int feedline(cli *c, char **out, char **err, ...) {
    char *argv[32];
    int n = 0;
    const char *b = getenv("FEEDLINE_BIN");
    argv[n++] = xstrdup(b ? b : "build/asan/feedline");
    va_list ap;
    va_start(ap, err);
    const char *a;
    while ((a = va_arg(ap, const char *)) && n < 31) argv[n++] = (char *)a;
    va_end(ap);
    argv[n] = NULL;
    char *env[] = {c->env_token, c->env_base, c->env_vocab, NULL};
    int rc = fx_run(argv, env, out, err);
    free(argv[0]);
    return rc;
}

static int64_t passing_in(const cli *c, int64_t from, int64_t to, int passing) {
    int64_t n = 0;
    for (size_t i = 0; i < c->set.n; i++) {
        const ifake_conv *v = &c->set.v[i];
        if (v->created_at >= from && v->created_at <= to && (v->verdict == QUALITY_OK) == passing) n++;
    }
    return n;
}

static json_t *parse_out(const char *out) {
    json_t *j = json_loads(out ? out : "", 0, NULL);
    if (!j) printf("    output is not JSON: %.300s\n", out ? out : "(null)");
    return j;
}

TEST(fetch_stores_the_window_and_a_second_fetch_changes_nothing) {
    cli c;
    REQUIRE(cli_start(&c, 120, NULL) == 0);
    char *out = NULL, *err = NULL;
    int rc = feedline(&c, &out, &err, "fetch", "--db", c.db, "--days", "40", "--json", NULL);
    if (rc) printf("    %s%s\n", out, err);
    CHECK_INT(rc, 0);
    json_t *j = parse_out(out);
    int64_t passing = passing_in(&c, 0, c.base, 1);
    CHECK_STR(jx_str(j, "status"), "done");
    CHECK_INT(jx_int(j, "imported", -1), passing);
    CHECK_INT(jx_int(j, "filtered", -1), 120 - passing);
    CHECK_INT(jx_int(j, "detail_failures", -1), 0);
    json_decref(j);
    free(out);
    free(err);

    rc = feedline(&c, &out, &err, "fetch", "--db", c.db, "--days", "40", NULL);
    CHECK_INT(rc, 0);
    char want[64];
    snprintf(want, sizeof want, "unchanged        %lld\n", (long long)passing);
    CHECK(strstr(out, want) != NULL);
    CHECK(strstr(out, "imported         0\n") != NULL);
    free(out);
    free(err);

    rc = feedline(&c, &out, &err, "fetch", "--db", c.db, "--days", "40", "--max", "10", "--json", NULL);
    CHECK_INT(rc, 0);
    j = parse_out(out);
    CHECK_INT(jx_int(j, "passed", -1), 10);
    CHECK(json_is_true(json_object_get(j, "capped")));
    CHECK_INT(jx_int(j, "unchanged", -1), 10);
    json_decref(j);
    free(out);
    free(err);
    cli_stop(&c);
}

TEST(fetch_since_last_takes_only_updates) {
    cli c;
    REQUIRE(cli_start(&c, 80, NULL) == 0);
    char *out = NULL, *err = NULL;
    int rc = feedline(&c, &out, &err, "fetch", "--db", c.db, "--since-last", NULL);
    CHECK_INT(rc, 1);
    CHECK(strstr(err, "--days") != NULL);
    free(out);
    free(err);
    rc = feedline(&c, &out, &err, "fetch", "--db", c.db, "--since-last", "--days", "40", "--json", NULL);
    CHECK_INT(rc, 0);
    json_t *j = parse_out(out);
    CHECK_INT(jx_int(j, "imported", -1), passing_in(&c, 0, c.base, 1));
    CHECK_STR(jx_str(j, "field"), "updated_at");
    json_decref(j);
    free(out);
    free(err);
    json_decref(ifake_post(&c.fake, "/_touch?n=2"));
    rc = feedline(&c, &out, &err, "fetch", "--db", c.db, "--since-last", "--json", NULL);
    CHECK_INT(rc, 0);
    j = parse_out(out);
    CHECK_INT(jx_int(j, "updated", -1), 2);
    CHECK_INT(jx_int(j, "imported", -1), 0);
    CHECK(jx_int(j, "seen", -1) <= 3);
    json_decref(j);
    free(out);
    free(err);
    cli_stop(&c);
}

TEST(fetch_lists_failed_conversations_and_exits_1) {
    ifake_set probe;
    REQUIRE(ifake_set_build(&probe, 40, SEED, wall_unix(), DAYS) == 0);
    const char *victim = NULL;
    for (size_t i = 0; i < probe.n && !victim; i++)
        if (probe.v[i].verdict == QUALITY_OK) victim = probe.v[i].id;
    REQUIRE(victim != NULL);
    char spec[96];
    snprintf(spec, sizeof spec, "%s:404", victim);
    cli c;
    REQUIRE(cli_start(&c, 40, "--fail-ids", spec, NULL) == 0);
    char *out = NULL, *err = NULL;
    int rc = feedline(&c, &out, &err, "fetch", "--db", c.db, "--days", "40", "--json", NULL);
    CHECK_INT(rc, 1);
    char want[160];
    snprintf(want, sizeof want, "conversation %s: HTTP 404", victim);
    CHECK(strstr(err, want) != NULL);
    json_t *j = parse_out(out);
    CHECK_INT(jx_int(j, "detail_failures", -1), 1);
    CHECK_INT(jx_int(j, "imported", -1), passing_in(&c, 0, c.base, 1) - 1);
    json_decref(j);
    free(out);
    free(err);
    cli_stop(&c);
    ifake_set_free(&probe);
}

TEST(fetch_refuses_bad_credentials_and_arguments_with_clear_messages) {
    cli c;
    REQUIRE(cli_start(&c, 10, "--token", "another-token", NULL) == 0);
    char *out = NULL, *err = NULL;
    int rc = feedline(&c, &out, &err, "fetch", "--db", c.db, "--days", "7", NULL);
    CHECK_INT(rc, 1);
    CHECK(strstr(err, "Intercom rejected the access token (401)") != NULL);
    CHECK_INT(ifake_stat(&c.fake, "unauthorized"), 1);
    free(out);
    free(err);
    snprintf(c.env_token, sizeof c.env_token, "INTERCOM_ACCESS_TOKEN=");
    rc = feedline(&c, &out, &err, "fetch", "--db", c.db, "--days", "7", NULL);
    CHECK_INT(rc, 1);
    CHECK(strstr(err, "INTERCOM_ACCESS_TOKEN is not set") != NULL);
    free(out);
    free(err);
    rc = feedline(&c, &out, &err, "fetch", "--db", c.db, NULL);
    CHECK_INT(rc, 2);
    CHECK(strstr(err, "--days N is required") != NULL);
    free(out);
    free(err);
    rc = feedline(&c, &out, &err, "fetch", "--help", NULL);
    CHECK_INT(rc, 0);
    CHECK(strstr(out, "INTERCOM_ACCESS_TOKEN") != NULL);
    free(out);
    free(err);
    cli_stop(&c);
}

static int64_t iso_field(const json_t *j, const char *key) {
    int64_t t = 0;
    const char *s = jx_str(j, key);
    if (!s || iso8601_parse(s, &t)) return -1;
    return t;
}

TEST(run_fetches_its_own_window_then_classifies) {
    ifake_set probe;
    int64_t base = wall_unix();
    REQUIRE(ifake_set_build(&probe, 150, SEED, base, DAYS) == 0);
    /* one conversation of the last 7 days fails to fetch */
    const char *victim = NULL;
    for (size_t i = 0; i < probe.n && !victim; i++)
        if (probe.v[i].verdict == QUALITY_OK && probe.v[i].created_at > base - 5 * 86400)
            victim = probe.v[i].id;
    REQUIRE(victim != NULL);
    char spec[96];
    snprintf(spec, sizeof spec, "%s:500", victim);
    cli c;
    REQUIRE(cli_start(&c, 150, "--fail-ids", spec, NULL) == 0);
    char *out = NULL, *err = NULL;
    int rc = feedline(&c, &out, &err, "run", "--db", c.db, "--days", "7", "--llm", "local",
                      "--concurrency", "8", "--json", NULL);
    if (rc) printf("    %s%s\n", out, err);
    CHECK_INT(rc, 0);
    json_t *j = parse_out(out);
    REQUIRE(j != NULL);
    CHECK_STR(jx_str(j, "status"), "completed");
    int64_t from = iso_field(j, "date_from"), to = iso_field(j, "date_to");
    CHECK(from > 0 && to - from == 7 * 86400);
    /* the run selected exactly what it fetched in its own window */
    int64_t passing = passing_in(&c, from, to, 1);
    CHECK(passing > 5);
    CHECK_INT(jx_int(j, "conversations_fetched", -1), passing - 1);
    CHECK_INT(jx_int(j, "conversations_filtered", -1), passing_in(&c, from, to, 0));
    CHECK_INT(jx_int(j, "conversations_classified", -1) + jx_int(j, "classification_failed", -1),
              passing - 1);
    /* the failed fetch is a counted failure of phase "fetch" and a warning */
    json_t *e = json_array_get(jx_arr(j, "errors"), 0);
    CHECK_STR(jx_str(e, "phase"), "fetch");
    CHECK(jx_str(e, "message") && strstr(jx_str(e, "message"), "HTTP 500") != NULL);
    CHECK_STR(json_string_value(json_array_get(jx_arr(jx_obj(e, "details"), "conversation_ids"), 0)),
              victim);
    CHECK(strstr(json_string_value(json_array_get(jx_arr(j, "warnings"), 0)), "could not be fetched") != NULL);
    json_decref(j);
    free(out);
    free(err);
    cli_stop(&c);
    ifake_set_free(&probe);
}

TEST(run_with_a_rejected_token_fails_naming_the_cause) {
    cli c;
    REQUIRE(cli_start(&c, 20, "--token", "another-token", NULL) == 0);
    char *out = NULL, *err = NULL;
    int rc = feedline(&c, &out, &err, "run", "--db", c.db, "--days", "7", "--llm", "local", "--json", NULL);
    CHECK_INT(rc, 1);
    json_t *j = parse_out(out);
    CHECK_STR(jx_str(j, "status"), "failed");
    const char *msg = jx_str(j, "error_message");
    CHECK(msg && strstr(msg, "Intercom rejected the access token (401)") != NULL);
    CHECK_INT(ifake_stat(&c.fake, "unauthorized"), 1);
    json_decref(j);
    free(out);
    free(err);
    cli_stop(&c);
}
