/* Parsing and importing conversations, including bad input. */
#include "test.h"

#include <stdlib.h>
#include <unistd.h>

#include "source/source.h"
#include "support/fixtures.h"
#include "util/mem.h"

typedef struct rejects {
    int n;
    char msgs[16][256];
    long long lines[16];
} rejects;

static void on_reject(void *ctx, const char *file, int64_t line, const char *msg) {
    (void)file;
    rejects *r = ctx;
    if (r->n < 16) {
        snprintf(r->msgs[r->n], sizeof r->msgs[0], "%s", msg);
        r->lines[r->n] = line;
    }
    r->n++;
}

static json_t *parse(const char *text) {
    json_t *v = json_loads(text, JSON_ALLOW_NUL, NULL);
    if (!v) fprintf(stdout, "    test JSON does not parse: %s\n", text);
    return v;
}

static void expect_error(const char *text, const char *want) {
    json_t *v = parse(text);
    conversation c;
    char err[256] = "";
    CHECK_INT(source_parse_any(v, &c, err, sizeof err), -1);
    if (!strstr(err, want)) fprintf(stdout, "    got \"%s\", want \"%s\"\n", err, want);
    CHECK(strstr(err, want) != NULL);
    json_decref(v);
}

TEST(jsonl_object_parses_into_opening_message_and_parts) {
    json_t *v = parse("{\"id\":\"c1\",\"created_at\":\"2026-01-20T10:00:00Z\",\"source_url\":\"https://a/b\","
                      "\"subject\":\"Pins\",\"messages\":[{\"author\":\"customer\",\"body\":\"my pins are not posting at all\"},"
                      "{\"author\":\"support\",\"body\":\"Which board?\"},{\"author\":\"note\",\"body\":\"internal\"}]}");
    conversation c;
    char err[256];
    REQUIRE(source_parse_any(v, &c, err, sizeof err) == 0);
    CHECK_STR(c.id, "c1");
    CHECK_INT(c.created_at, 1768903200);
    CHECK_STR(c.delivered_as, "customer_initiated");
    CHECK_STR(c.source_author_type, "user");
    CHECK_STR(c.source_body, "my pins are not posting at all");
    CHECK_INT(c.nparts, 2);
    CHECK_INT(c.parts[0].author, AUTHOR_SUPPORT);
    CHECK_STR(c.parts[1].part_type, "note");
    CHECK_INT(conv_quality(&c, err, sizeof err), QUALITY_OK);
    conv_free(&c);
    json_decref(v);
}

TEST(jsonl_errors_name_the_field) {
    expect_error("[1,2]", "expected a JSON object");
    expect_error("{\"created_at\":1,\"messages\":[{\"author\":\"customer\",\"body\":\"x\"}]}", "id: missing");
    expect_error("{\"id\":\"a\",\"messages\":[{\"author\":\"customer\",\"body\":\"x\"}]}", "created_at: missing");
    expect_error("{\"id\":\"a\",\"created_at\":\"yesterday\",\"messages\":[{\"author\":\"customer\",\"body\":\"x\"}]}",
                 "created_at: \"yesterday\" is not an ISO-8601 date-time");
    expect_error("{\"id\":\"a\",\"created_at\":1768903200000,\"messages\":[{\"author\":\"customer\",\"body\":\"x\"}]}",
                 "created_at: 1768903200000 is out of range");
    expect_error("{\"id\":\"a\",\"created_at\":1.7e68,\"messages\":[{\"author\":\"customer\",\"body\":\"x\"}]}",
                 "created_at: 1.7e+68 is out of range");
    expect_error("{\"id\":\"a\",\"created_at\":1,\"updated_at\":-1e300,\"messages\":[{\"author\":\"customer\",\"body\":\"x\"}]}",
                 "updated_at: -1e+300 is out of range");
    expect_error("{\"id\":\"a\",\"created_at\":1,\"messages\":[]}", "messages: expected a non-empty array");
    expect_error("{\"id\":\"a\",\"created_at\":1}", "messages: missing");
    expect_error("{\"id\":\"a\",\"created_at\":1,\"messages\":[{\"author\":\"customer\",\"body\":\"x\"},{\"author\":\"agent\",\"body\":\"y\"}]}",
                 "messages[1].author: \"agent\" is not one of customer, support, bot, note");
    expect_error("{\"id\":\"a\",\"created_at\":1,\"messages\":[{\"author\":\"customer\"}]}", "messages[0].body: missing");
    expect_error("{\"id\":\"a\",\"created_at\":1,\"messages\":[{\"author\":\"customer\",\"body\":\"a\\u0000b\"}]}",
                 "messages[0].body: contains a NUL byte");
    expect_error("{\"id\":\"  \",\"created_at\":1,\"messages\":[{\"author\":\"customer\",\"body\":\"x\"}]}", "id: empty");
    expect_error("{\"id\":\"a\",\"created_at\":1,\"tags\":\"x\",\"messages\":[{\"author\":\"customer\",\"body\":\"x\"}]}",
                 "tags: expected an array of strings");
}

TEST(intercom_object_parses_parts_tags_and_contact) {
    json_t *v = parse(
        "{\"type\":\"conversation\",\"id\":\"215472646393365\",\"created_at\":1737460800,\"updated_at\":1737464400,"
        "\"source\":{\"type\":\"conversation\",\"delivered_as\":\"customer_initiated\",\"subject\":\"\","
        "\"url\":\"https://x/dashboard/v2/communities\",\"body\":\"<p>My pins are published but don&#39;t show.</p>\","
        "\"author\":{\"type\":\"user\",\"id\":\"6123\",\"email\":\"n@example.com\"}},"
        "\"contacts\":{\"contacts\":[{\"id\":\"6123\",\"external_id\":\"1234567\"}]},"
        "\"tags\":{\"tags\":[{\"name\":\"Non-Ecomm\"}]},"
        "\"conversation_parts\":{\"conversation_parts\":["
        "{\"part_type\":\"assignment\",\"body\":null,\"author\":{\"type\":\"bot\"}},"
        "{\"part_type\":\"comment\",\"body\":\"<p>Which board?</p>\",\"author\":{\"type\":\"admin\"}},"
        "{\"part_type\":\"comment\",\"body\":\"<p>Recipe Ideas.</p>\",\"author\":{\"type\":\"user\"}},"
        "{\"part_type\":\"note\",\"body\":\"<p>check OAuth</p>\",\"author\":{\"type\":\"admin\"}}]}}");
    conversation c;
    char err[256];
    REQUIRE(source_parse_any(v, &c, err, sizeof err) == 0);
    CHECK_STR(c.id, "215472646393365");
    CHECK_STR(c.external_id, "1234567");
    CHECK_STR(c.contact_email, "n@example.com");
    CHECK_INT(c.ntags, 1);
    CHECK_STR(c.tags[0], "Non-Ecomm");
    CHECK_INT(c.nparts, 4);
    CHECK_INT(c.parts[3].author, AUTHOR_NOTE);
    conv_record r;
    conv_prepare(&c, "intercom", &r);
    CHECK_STR(r.body, "My pins are published but don't show.");
    CHECK_INT(r.support_count, 1);
    CHECK(strstr(r.transcript, "[Support]: Which board?") != NULL);
    CHECK(strstr(r.transcript, "check OAuth") == NULL);
    CHECK_STR(r.tags_json, "[\"Non-Ecomm\"]");
    conv_record_free(&r);
    conv_free(&c);
    json_decref(v);
    expect_error("{\"id\":\"1\",\"created_at\":1,\"source\":null}", "source: missing or not an object");
}

TEST(import_jsonl_counts_filters_rejects_and_is_idempotent) {
    char *dir = fx_tmpdir();
    char *path = xasprintf("%s/in.jsonl", dir);
    const char *text =
        "{\"id\":\"ok1\",\"created_at\":\"2026-01-20T10:00:00Z\",\"messages\":[{\"author\":\"customer\",\"body\":\"My scheduled pins never post to Pinterest\"}]}\n"
        "\n"
        "{\"id\":\"short\",\"created_at\":1768903200,\"messages\":[{\"author\":\"customer\",\"body\":\"help me\"}]}\n"
        "{not json}\n"
        "{\"id\":\"out\",\"created_at\":1768903200,\"messages\":[{\"author\":\"support\",\"body\":\"We have a new feature for you today!\"}]}\n"
        "{\"id\":\"bad\",\"created_at\":1768903200,\"messages\":[{\"author\":\"robot\",\"body\":\"x\"}]}\n"
        "{\"id\":\"ok2\",\"created_at\":1768903200,\"messages\":[{\"author\":\"customer\",\"body\":\"Analytics show zero impressions since Monday\"}]}\n";
    REQUIRE(fx_write_file(path, text) == 0);
    char *url = fx_db_url();
    store *st = fx_store_open(url);
    import_stats s = {0};
    rejects rj = {0};
    char err[256];
    CHECK_INT(import_file(st, path, &s, on_reject, &rj, err, sizeof err), 0);
    CHECK_INT(s.inserted, 2);
    CHECK_INT(s.filtered, 2);
    CHECK_INT(s.filtered_by[QUALITY_BODY_TOO_SHORT] + s.filtered_by[QUALITY_TEMPLATE_MESSAGE], 1);
    CHECK_INT(s.filtered_by[QUALITY_NOT_CUSTOMER_INITIATED], 1);
    CHECK_INT(s.rejected, 2);
    CHECK_INT(rj.n, 2);
    CHECK_INT(rj.lines[0], 4);
    CHECK(strstr(rj.msgs[0], "invalid JSON") != NULL);
    CHECK_INT(rj.lines[1], 6);
    CHECK(strstr(rj.msgs[1], "messages[0].author") != NULL);
    /* again: nothing changes */
    import_stats s2 = {0};
    CHECK_INT(import_file(st, path, &s2, NULL, NULL, err, sizeof err), 0);
    CHECK_INT(s2.inserted, 0);
    CHECK_INT(s2.unchanged, 2);
    CHECK_INT(store_conv_count(st), 2);
    store_close(st);
    fx_rmtree(dir);
    free(dir);
    free(path);
    free(url);
}

TEST(import_intercom_envelope_array_and_single_object) {
    char *dir = fx_tmpdir();
    char *url = fx_db_url();
    store *st = fx_store_open(url);
#define CONV_FMT \
        "{\"id\":\"%d\",\"created_at\":1737460800,\"source\":{\"delivered_as\":\"customer_initiated\"," \
        "\"body\":\"<p>The scheduler keeps failing for my drafts</p>\",\"author\":{\"type\":\"user\"}}}"
    char one[512], two[512];
    snprintf(one, sizeof one, CONV_FMT, 1);
    snprintf(two, sizeof two, CONV_FMT, 2);
    char *envelope = xasprintf("{\n \"type\": \"conversation.list\",\n \"conversations\": [%s,\n%s,\n{\"id\":\"3\"}]\n}\n", one, two);
    char *p1 = xasprintf("%s/list.json", dir);
    REQUIRE(fx_write_file(p1, envelope) == 0);
    import_stats s = {0};
    rejects rj = {0};
    char err[256];
    CHECK_INT(import_file(st, p1, &s, on_reject, &rj, err, sizeof err), 0);
    CHECK_INT(s.inserted, 2);
    CHECK_INT(s.rejected, 1);
    CHECK(strstr(rj.msgs[0], "conversation #2: created_at: missing") != NULL);
    /* a pretty-printed single object */
    char *p2 = xasprintf("%s/one.json", dir);
    char single[600];
    snprintf(single, sizeof single, CONV_FMT, 9);
    char *pretty = xasprintf("{\n%s", single + 1);
    REQUIRE(fx_write_file(p2, pretty) == 0);
    import_stats s2 = {0};
    CHECK_INT(import_file(st, p2, &s2, NULL, NULL, err, sizeof err), 0);
    CHECK_INT(s2.inserted, 1);
    /* not a conversation document */
    char *p3 = xasprintf("%s/other.json", dir);
    REQUIRE(fx_write_file(p3, "{\n\"hello\": 1\n}\n") == 0);
    import_stats s3 = {0};
    CHECK_INT(import_file(st, p3, &s3, on_reject, &rj, err, sizeof err), 0);
    CHECK_INT(s3.rejected, 1);
    char *p4 = xasprintf("%s/broken.json", dir);
    REQUIRE(fx_write_file(p4, "{\n\"conversations\": [\n") == 0);
    import_stats s4 = {0};
    CHECK_INT(import_file(st, p4, &s4, NULL, NULL, err, sizeof err), -1);
    CHECK(strstr(err, "broken.json:") != NULL);
    CHECK(strstr(err, "invalid JSON") != NULL);
    CHECK_INT(import_file(st, "/nonexistent/x.jsonl", &s4, NULL, NULL, err, sizeof err), -1);
    CHECK(strstr(err, "cannot open") != NULL);
    CHECK_INT(store_conv_count(st), 3);
    store_close(st);
    fx_rmtree(dir);
    free(dir);
    free(url);
    free(envelope);
    free(pretty);
    free(p1);
    free(p2);
    free(p3);
    free(p4);
}

TEST(invalid_utf8_and_huge_bodies_are_rejected_cleanly_and_keep_stored_data) {
    char *dir = fx_tmpdir();
    char *path = xasprintf("%s/bad.jsonl", dir);
    FILE *f = fopen(path, "wb");
    REQUIRE(f != NULL);
    fputs("{\"id\":\"good\",\"created_at\":1,\"messages\":[{\"author\":\"customer\",\"body\":\"The analytics page shows no data at all\"}]}\n", f);
    fputs("{\"id\":\"u\",\"created_at\":1,\"messages\":[{\"author\":\"customer\",\"body\":\"caf\xc3\x28 broken utf8 here\"}]}\n", f);
    fputs("{\"id\":\"big\",\"created_at\":1,\"messages\":[{\"author\":\"customer\",\"body\":\"", f);
    for (int i = 0; i < 10 * 1024; i++) fputs("0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz012345", f);
    fputs("\"}]}\n", f);
    fputs("{\"id\":\"good2\",\"created_at\":1,\"messages\":[{\"author\":\"customer\",\"body\":\"Instagram posts are stuck in the queue\"}]}\n", f);
    fclose(f);
    char *url = fx_db_url();
    store *st = fx_store_open(url);
    import_stats s = {0};
    rejects rj = {0};
    char err[256];
    CHECK_INT(import_file(st, path, &s, on_reject, &rj, err, sizeof err), 0);
    CHECK_INT(s.inserted, 2);
    CHECK_INT(s.rejected, 2);
    CHECK_INT(rj.lines[0], 2);
    CHECK(strstr(rj.msgs[0], "invalid JSON") != NULL);
    CHECK_INT(rj.lines[1], 3);
    CHECK(strstr(rj.msgs[1], "messages[0].body:") != NULL);
    CHECK(strstr(rj.msgs[1], "the limit is 1048576") != NULL);
    conv_record r;
    CHECK_INT(store_conv_get(st, "good", &r), STORE_FOUND);
    CHECK_STR(r.body, "The analytics page shows no data at all");
    conv_record_free(&r);
    store_close(st);
    fx_rmtree(dir);
    free(dir);
    free(path);
    free(url);
}

#define REC(id, body) \
    "{\"id\":\"" id "\",\"created_at\":1768903200,\"messages\":[{\"author\":\"customer\"," \
    "\"body\":\"" body "\"}]}\n"

/* A JSONL file whose first record is cut off ("messages": and nothing more), with a
 * second broken record on line 4. */
static const char BROKEN_FIRST[] =
    "{\"id\":\"bad1\",\"messages\":\n"
    REC("j1", "My scheduled pins never post to Pinterest")
    REC("j2", "Analytics show zero impressions since Monday")
    "{\"id\":\"bad2\",\"messages\":\n"
    "\n"
    REC("j3", "Instagram posts are stuck in the queue");

/* Imports text written to dir/name into st; checks what a broken first line must give:
 * line 1 and line 4 rejected with their own numbers, the three good lines read. */
static void import_broken_first(store *st, const char *dir, const char *name, import_stats *s) {
    char *path = xasprintf("%s/%s", dir, name);
    REQUIRE(fx_write_file(path, BROKEN_FIRST) == 0);
    rejects rj = {0};
    char err[256] = "";
    CHECK_INT(import_file(st, path, s, on_reject, &rj, err, sizeof err), 0);
    if (err[0]) fprintf(stdout, "    %s: %s\n", name, err);
    CHECK_INT(s->read, 3);
    CHECK_INT(s->rejected, 2);
    CHECK_INT(rj.n, 2);
    CHECK_INT(rj.lines[0], 1);
    CHECK(strstr(rj.msgs[0], "invalid JSON") != NULL);
    CHECK_INT(rj.lines[1], 4);
    CHECK(strstr(rj.msgs[1], "invalid JSON") != NULL);
    free(path);
}

TEST(jsonl_with_a_broken_first_line_reports_line_1_and_imports_the_rest) {
    char *dir = fx_tmpdir();
    char *url = fx_db_url();
    store *st = fx_store_open(url);
    /* Something stored before must survive the import of the broken file. */
    char *before = xasprintf("%s/before.jsonl", dir);
    REQUIRE(fx_write_file(before, REC("old", "The calendar view does not load for my team")) == 0);
    import_stats s0 = {0};
    char err[256];
    CHECK_INT(import_file(st, before, &s0, NULL, NULL, err, sizeof err), 0);
    CHECK_INT(s0.inserted, 1);

    /* By its .jsonl name. */
    import_stats s1 = {0};
    import_broken_first(st, dir, "broken.jsonl", &s1);
    CHECK_INT(s1.inserted, 3);
    /* Without the name: the file is not one JSON document and its second line is a
     * record, so it is the same JSONL (the records are now unchanged). */
    import_stats s2 = {0};
    import_broken_first(st, dir, "broken.json", &s2);
    CHECK_INT(s2.unchanged, 3);
    import_stats s3 = {0};
    import_broken_first(st, dir, "broken", &s3);
    CHECK_INT(s3.unchanged, 3);

    CHECK_INT(store_conv_count(st), 4);
    static const char *const ids[] = {"old", "j1", "j2", "j3"};
    for (size_t i = 0; i < sizeof ids / sizeof ids[0]; i++) {
        conv_record r;
        CHECK_INT(store_conv_get(st, ids[i], &r), STORE_FOUND);
        conv_record_free(&r);
    }
    store_close(st);
    fx_rmtree(dir);
    free(dir);
    free(before);
    free(url);
}

/* The other reading of the same first line: a pretty-printed envelope whose second line
 * is its only conversation is one document, not JSONL. */
TEST(an_envelope_whose_second_line_is_a_conversation_is_still_a_document) {
    char *dir = fx_tmpdir();
    char *url = fx_db_url();
    store *st = fx_store_open(url);
    char *path = xasprintf("%s/list.json", dir);
    REQUIRE(fx_write_file(path, "{\"type\":\"conversation.list\",\"conversations\":[\n"
                                "{\"id\":\"e1\",\"created_at\":1737460800,\"source\":{\"delivered_as\":"
                                "\"customer_initiated\",\"body\":\"<p>The scheduler keeps failing for "
                                "my drafts</p>\",\"author\":{\"type\":\"user\"}}}\n"
                                "]}\n") == 0);
    import_stats s = {0};
    rejects rj = {0};
    char err[256] = "";
    CHECK_INT(import_file(st, path, &s, on_reject, &rj, err, sizeof err), 0);
    CHECK_INT(s.inserted, 1);
    CHECK_INT(s.rejected, 0);
    CHECK_INT(store_conv_count(st), 1);
    /* A broken document that is not JSONL still fails as a whole, naming its line. */
    char *p2 = xasprintf("%s/cut.json", dir);
    REQUIRE(fx_write_file(p2, "{\"type\":\"conversation.list\",\"conversations\":[\n"
                              "{\"id\":\"e2\",\n") == 0);
    import_stats s2 = {0};
    CHECK_INT(import_file(st, p2, &s2, NULL, NULL, err, sizeof err), -1);
    CHECK(strstr(err, "cut.json:") != NULL && strstr(err, "invalid JSON") != NULL);
    CHECK_INT(s2.read + s2.rejected, 0);
    store_close(st);
    fx_rmtree(dir);
    free(dir);
    free(path);
    free(p2);
    free(url);
}

/* The same through `feedline import`: FILE:1 on stderr, the rest imported, exit 1. */
TEST(cli_import_reports_a_broken_first_line_as_file_line_1) {
    char *dir = fx_tmpdir();
    char *url = fx_db_url();
    store *st = fx_store_open(url);
    store_close(st);
    char *path = xasprintf("%s/broken.jsonl", dir);
    REQUIRE(fx_write_file(path, BROKEN_FIRST) == 0);
    const char *const args[] = {"import", "--db", url, path, NULL};
    char *out = NULL, *errs = NULL;
    int rc = fx_feedline(args, NULL, &out, &errs);
    CHECK_INT(rc, 1);
    char *line1 = xasprintf("%s:1: invalid JSON", path);
    char *line4 = xasprintf("%s:4: invalid JSON", path);
    CHECK(errs && strstr(errs, line1) != NULL);
    CHECK(errs && strstr(errs, line4) != NULL);
    CHECK(errs && !strstr(errs, ":3:"));
    CHECK(out && strstr(out, "5 read, 3 imported") != NULL);
    if (!(out && strstr(out, "3 imported"))) fprintf(stdout, "    out: %s\n    err: %s\n", out, errs);
    st = fx_store_open(url);
    CHECK_INT(store_conv_count(st), 3);
    store_close(st);
    free(line1);
    free(line4);
    free(out);
    free(errs);
    fx_rmtree(dir);
    free(dir);
    free(path);
    free(url);
}
