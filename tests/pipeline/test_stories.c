/* Stories a product team can act on: the review before stories (keep / split / merge /
 * reject with reasons), written and distinct titles, identity across runs (a later
 * run grows last week's stories instead of twins; counts never double), story states,
 * and the checks every review and story answer goes through. Both backends. */
#include "test.h"

#include <stdlib.h>

#include "pipeline/pipeline.h"
#include "pipeline/story_plan.h"
#include "source/source.h"
#include "store/store_report.h"
#include "support/fixtures.h"
#include "util/jsonx.h"
#include "util/mem.h"

typedef struct harness {
    char *db;
    vocab *v;
} harness;

static llm_provider *make(void *ctx, const run_record *run, store *st, char *err, size_t len) {
    (void)run;
    (void)st;
    (void)err;
    (void)len;
    harness *h = ctx;
    return llm_local_new(h->v);
}

static void import_path(harness *h, const char *path) {
    store *st = fx_store_open(h->db);
    import_stats s = {0};
    char err[256];
    CHECK(import_file(st, path, &s, NULL, NULL, err, sizeof err) == 0);
    store_close(st);
}

static void setup(harness *h) {
    memset(h, 0, sizeof *h);
    h->db = fx_db_url();
    char *vp = fx_path("data/theme_vocabulary.json"), err[256];
    h->v = vocab_load(vp, err, sizeof err);
    free(vp);
    char *sample = fx_path("data/sample_conversations.jsonl");
    import_path(h, sample);
    free(sample);
}

static void teardown(harness *h) {
    vocab_free(h->v);
    free(h->db);
}

static int64_t run_once(harness *h) {
    run_env e = {0};
    e.db_url = h->db;
    e.vocab = h->v;
    e.make_provider = make;
    e.provider_ctx = h;
    e.owner = "test";
    run_params p = {0};
    p.concurrency = 8;
    p.auto_create_stories = 1;
    p.llm = "local";
    int64_t id = 0;
    char err[256] = "";
    CHECK_INT(pipeline_start(&e, &p, &id, err, sizeof err), 0);
    return id;
}

static json_t *stories_of_run(harness *h, int64_t run_id) {
    store *st = fx_store_open(h->db);
    story_filter f = {0};
    f.run_id = run_id;
    json_t *out = NULL;
    CHECK_INT(store_stories_json(st, &f, &out, NULL), STORE_OK);
    store_close(st);
    return out ? out : json_array();
}

static json_t *all_stories(harness *h) { return stories_of_run(h, 0); }

static json_t *story_detail(harness *h, int64_t id) {
    store *st = fx_store_open(h->db);
    json_t *out = NULL;
    CHECK_INT(store_story_detail_json(st, id, &out), STORE_FOUND);
    store_close(st);
    return out ? out : json_object();
}

static run_record get_run(harness *h, int64_t id) {
    store *st = fx_store_open(h->db);
    run_record r;
    memset(&r, 0, sizeof r);
    CHECK_INT(store_run_get(st, id, &r), STORE_FOUND);
    store_close(st);
    return r;
}

static json_t *reviews(harness *h, int64_t run_id) {
    store *st = fx_store_open(h->db);
    json_t *out = NULL;
    CHECK_INT(store_reviews_json(st, run_id, &out), STORE_OK);
    store_close(st);
    return out ? out : json_array();
}

static const json_t *review_of(const json_t *rv, const char *sig) {
    size_t i;
    json_t *d;
    json_array_foreach(rv, i, d) if (!strcmp(jx_str(d, "signature"), sig)) return d;
    return NULL;
}

/* No two live stories (open or exported) share a signature and a distinguisher. */
static int live_twins(const json_t *stories) {
    int twins = 0;
    size_t i, j;
    json_t *a, *b;
    json_array_foreach(stories, i, a) {
        if (!strcmp(jx_str(a, "status"), "closed")) continue;
        json_array_foreach(stories, j, b) {
            if (j <= i || !strcmp(jx_str(b, "status"), "closed")) continue;
            twins += !strcmp(jx_str(a, "signature"), jx_str(b, "signature")) &&
                     !strcmp(jx_str(a, "distinguisher"), jx_str(b, "distinguisher"));
        }
    }
    return twins;
}

/* Copies the first n sample conversations under new ids ("ID-w2"): next week's
 * conversations about the same issues. Returns the file's path (caller frees). */
static char *next_week(size_t n) {
    char *sample = fx_path("data/sample_conversations.jsonl");
    FILE *in = fopen(sample, "r");
    free(sample);
    char *dir = fx_tmpdir(), *path = xasprintf("%s/week2.jsonl", dir);
    FILE *out = fopen(path, "w");
    char *line = NULL;
    size_t cap = 0;
    for (size_t k = 0; in && out && k < n && getline(&line, &cap, in) > 0; k++) {
        char *id = strstr(line, "\"id\":\"");
        char *end = id ? strchr(id + 6, '"') : NULL;
        if (!end) continue;
        fprintf(out, "%.*s-w2%s", (int)(end - line), line, end);
    }
    free(line);
    if (in) fclose(in);
    if (out) fclose(out);
    free(dir);
    return path;
}

TEST(a_run_makes_reviewed_distinct_written_stories) {
    harness h;
    setup(&h);
    int64_t id = run_once(&h);
    json_t *stories = stories_of_run(&h, id);
    CHECK(json_array_size(stories) >= 5);
    size_t i, j;
    json_t *a, *b;
    json_array_foreach(stories, i, a) {
        const char *title = jx_str(a, "title");
        /* written, not a customer's opening message */
        CHECK(strlen(title) > 10 && strlen(title) <= 120);
        CHECK(strncmp(title, "Hi ", 3) && strncmp(title, "Hey", 3) && strncmp(title, "Ciao", 4));
        CHECK_STR(jx_str(a, "status"), "open");
        json_t *d = story_detail(&h, jx_int(a, "id", 0));
        const char *desc = jx_str(d, "description");
        CHECK(desc && strstr(desc, "## Problem") && strstr(desc, "## Who is affected") &&
              strstr(desc, "## Evidence"));
        if (!strcmp(jx_str(a, "kind"), "bug"))
            CHECK(json_array_size(jx_arr(a, "acceptance_criteria")) >= 1 &&
                  strstr(desc, "## Acceptance criteria"));
        json_decref(d);
        json_array_foreach(stories, j, b) {
            if (j <= i) continue;
            CHECK(strcasecmp(title, jx_str(b, "title")) != 0);
            /* the same signature twice only when a review split it, each named */
            if (!strcmp(jx_str(a, "signature"), jx_str(b, "signature"))) {
                CHECK_STR(jx_str(jx_obj(a, "review"), "decision"), "split");
                CHECK(jx_str(a, "distinguisher")[0] && jx_str(b, "distinguisher")[0]);
                CHECK(strcmp(jx_str(a, "distinguisher"), jx_str(b, "distinguisher")) != 0);
            }
        }
    }
    /* every candidate was reviewed; a sales referral is rejected with its reason and
     * makes no story */
    json_t *rv = reviews(&h, id);
    CHECK(json_array_size(rv) >= json_array_size(stories));
    const json_t *training = review_of(rv, "training_request");
    CHECK(training != NULL);
    if (training) {
        CHECK_STR(jx_str(training, "decision"), "reject");
        CHECK(strstr(jx_str(training, "reason"), "route to") != NULL);
    }
    json_array_foreach(stories, i, a) CHECK(strcmp(jx_str(a, "signature"), "training_request"));
    run_record r = get_run(&h, id);
    CHECK_INT(r.stories_created + r.orphans_graduated, (int64_t)json_array_size(stories));
    CHECK_INT(r.stories_updated, 0);
    run_record_free(&r);
    json_decref(rv);
    json_decref(stories);
    teardown(&h);
}

TEST(a_later_run_grows_last_weeks_stories_and_never_double_counts) {
    harness h;
    setup(&h);
    int64_t first = run_once(&h);
    json_t *before = all_stories(&h);
    /* the same run again over the same conversations: nothing new, nothing doubled */
    int64_t again = run_once(&h);
    run_record r = get_run(&h, again);
    CHECK_INT(r.stories_created, 0);
    CHECK_INT(r.stories_updated, 0);
    run_record_free(&r);
    json_t *same = all_stories(&h);
    CHECK_INT(json_array_size(same), json_array_size(before));
    size_t i, j;
    json_t *a, *b;
    json_array_foreach(before, i, a) json_array_foreach(same, j, b) if (jx_int(a, "id", 0) == jx_int(b, "id", 0))
        CHECK_INT(jx_int(b, "conversation_count", -1), jx_int(a, "conversation_count", -2));
    json_decref(same);

    /* next week: 200 new conversations about the same issues */
    char *week2 = next_week(200);
    import_path(&h, week2);
    free(week2);
    int64_t second = run_once(&h);
    r = get_run(&h, second);
    CHECK(r.stories_updated > 0);
    run_record_free(&r);
    json_t *after = all_stories(&h);
    CHECK_INT(live_twins(after), 0);
    int64_t grown = 0, gained = 0;
    json_array_foreach(before, i, a) json_array_foreach(after, j, b) {
        if (jx_int(a, "id", 0) != jx_int(b, "id", 0)) continue;
        CHECK(jx_int(b, "conversation_count", 0) >= jx_int(a, "conversation_count", 0));
        if (jx_int(b, "conversation_count", 0) > jx_int(a, "conversation_count", 0)) {
            grown++;
            gained += jx_int(b, "conversation_count", 0) - jx_int(a, "conversation_count", 0);
            json_t *d = story_detail(&h, jx_int(b, "id", 0));
            /* its history: created by the first run, grown by the later one */
            const json_t *runs = jx_arr(d, "runs");
            CHECK(json_array_size(runs) >= 2);
            CHECK_INT(jx_int(json_array_get(runs, 0), "run_id", 0), first);
            CHECK(jx_bool(json_array_get(runs, 0), "created", 0));
            CHECK_INT(jx_int(json_array_get(runs, json_array_size(runs) - 1), "run_id", 0), second);
            CHECK_INT(jx_int(b, "last_run_id", 0), second);
            json_decref(d);
        }
    }
    CHECK(grown >= 3);
    /* what the stories gained is what the run says it added */
    store *st = fx_store_open(h.db);
    json_t *runs_added = stories_of_run(&h, second);
    int64_t added = 0;
    json_array_foreach(runs_added, i, a) {
        json_t *d = story_detail(&h, jx_int(a, "id", 0));
        size_t k;
        json_t *x;
        json_array_foreach(jx_arr(d, "runs"), k, x) if (jx_int(x, "run_id", 0) == second && !jx_bool(x, "created", 1))
            added += jx_int(x, "conversations_added", 0);
        json_decref(d);
    }
    CHECK_INT(added, gained);
    json_decref(runs_added);
    store_close(st);
    json_decref(after);
    json_decref(before);
    teardown(&h);
}

TEST(story_states_steer_what_a_later_run_does) {
    harness h;
    setup(&h);
    run_once(&h);
    json_t *stories = all_stories(&h);
    CHECK(json_array_size(stories) >= 2);
    int64_t rejected = jx_int(json_array_get(stories, 0), "id", 0);
    int64_t closed = jx_int(json_array_get(stories, 1), "id", 0);
    const char *rej_sig = jx_str(json_array_get(stories, 0), "signature");
    const char *closed_sig = jx_str(json_array_get(stories, 1), "signature");
    store *st = fx_store_open(h.db);
    CHECK_INT(store_story_set_state(st, rejected, "rejected", "not ours", 1000), STORE_OK);
    CHECK_INT(store_story_set_state(st, closed, "closed", "fixed in 4.2", 1000), STORE_OK);
    CHECK_INT(store_story_set_state(st, closed, "bogus", NULL, 1000), STORE_CONFLICT);
    CHECK_INT(store_story_set_state(st, 999999, "open", NULL, 1000), STORE_NOTFOUND);
    store_close(st);
    char *week2 = next_week(400);
    import_path(&h, week2);
    free(week2);
    run_once(&h);
    json_t *after = all_stories(&h);
    int rej_live = 0, closed_new = 0;
    size_t i;
    json_t *a;
    json_array_foreach(after, i, a) {
        int64_t id = jx_int(a, "id", 0);
        if (id == rejected) {
            CHECK_STR(jx_str(a, "status"), "rejected");
            CHECK_STR(jx_str(a, "state_reason"), "not ours");
        } else if (!strcmp(jx_str(a, "signature"), rej_sig) && !jx_str(a, "distinguisher")[0]) {
            rej_live++; /* a rejected story must not come back as a new one */
        }
        if (id == closed) {
            CHECK_STR(jx_str(a, "status"), "closed");
        } else if (!strcmp(jx_str(a, "signature"), closed_sig) && id > closed) {
            closed_new++;
            char *says = xasprintf("Recurs after story %lld was closed.", (long long)closed);
            CHECK(strstr(jx_str(a, "problem"), says) != NULL);
            free(says);
        }
    }
    CHECK_INT(rej_live, 0);
    CHECK(closed_new >= 1); /* a recurrence after a close is a new story */
    json_decref(after);
    json_decref(stories);
    teardown(&h);
}

static json_t *review_args_fixture(void) {
    return json_loads("{\"signature\":\"pins_posted_twice\",\"parts\":["
                      "{\"part\":1,\"conversations\":4,\"direction\":\"excess\"},"
                      "{\"part\":2,\"conversations\":3,\"direction\":\"deficit\"},"
                      "{\"part\":3,\"conversations\":1,\"direction\":\"neutral\"}],"
                      "\"other_groups\":[{\"signature\":\"pins_not_posting\",\"conversations\":9}]}",
                      0, NULL);
}

static int check_answer(const json_t *args, const char *answer) {
    json_t *a = json_loads(answer, 0, NULL);
    char why[256] = "";
    int rc = story_review_check(args, a, why, sizeof why);
    json_decref(a);
    return rc;
}

TEST(review_answers_are_checked_against_the_group) {
    json_t *args = review_args_fixture();
    CHECK_INT(check_answer(args, "{\"decision\":\"keep\",\"reason\":\"one fix\"}"), 0);
    CHECK_INT(check_answer(args, "{\"decision\":\"keep\",\"reason\":\"\"}"), -1);
    CHECK_INT(check_answer(args, "{\"decision\":\"ship it\",\"reason\":\"x\"}"), -1);
    CHECK_INT(check_answer(args, "{\"decision\":\"reject\",\"reason\":\"sales\"}"), 0);
    CHECK_INT(check_answer(args, "{\"decision\":\"merge\",\"reason\":\"same\","
                                 "\"merge_with\":\"pins_not_posting\"}"), 0);
    CHECK_INT(check_answer(args, "{\"decision\":\"merge\",\"reason\":\"same\","
                                 "\"merge_with\":\"made_up\"}"), -1);
    CHECK_INT(check_answer(args, "{\"decision\":\"split\",\"reason\":\"two fixes\",\"split\":["
                                 "{\"name\":\"twice\",\"parts\":[1,3]},{\"name\":\"never\",\"parts\":[2]}]}"), 0);
    /* a part left out, a part twice, a sub-group under 3 conversations, twin names */
    CHECK_INT(check_answer(args, "{\"decision\":\"split\",\"reason\":\"r\",\"split\":["
                                 "{\"name\":\"twice\",\"parts\":[1]},{\"name\":\"never\",\"parts\":[2]}]}"), -1);
    CHECK_INT(check_answer(args, "{\"decision\":\"split\",\"reason\":\"r\",\"split\":["
                                 "{\"name\":\"twice\",\"parts\":[1,3]},{\"name\":\"never\",\"parts\":[2,3]}]}"), -1);
    CHECK_INT(check_answer(args, "{\"decision\":\"split\",\"reason\":\"r\",\"split\":["
                                 "{\"name\":\"a\",\"parts\":[1,2]},{\"name\":\"b\",\"parts\":[3]}]}"), -1);
    CHECK_INT(check_answer(args, "{\"decision\":\"split\",\"reason\":\"r\",\"split\":["
                                 "{\"name\":\"Same\",\"parts\":[1,3]},{\"name\":\"same\",\"parts\":[2]}]}"), -1);
    CHECK_INT(check_answer(args, "{\"decision\":\"split\",\"reason\":\"r\",\"split\":["
                                 "{\"name\":\"all\",\"parts\":[1,2,3]}]}"), -1);
    json_decref(args);
}

static void noop_done(llm_call *c) { (void)c; }

TEST(the_offline_review_follows_its_rules) {
    char *vp = fx_path("data/theme_vocabulary.json"), err[256];
    vocab *v = vocab_load(vp, err, sizeof err);
    free(vp);
    llm_provider *p = llm_local_new(v);
    static const char *const cases[][2] = {
        /* the vocabulary routes training to another team: reject */
        {"{\"signature\":\"training_request\",\"conversation_count\":9,\"theme\":{\"engineering_fix\":"
         "\"Marketing/sales referral - route to professional services team\"},"
         "\"parts\":[{\"part\":1,\"conversations\":9,\"direction\":\"neutral\"}],\"other_groups\":[]}",
         "reject"},
        /* a near-duplicate, larger group of the same area: merge into it */
        {"{\"signature\":\"failure_pins_posting\",\"conversation_count\":3,"
         "\"parts\":[{\"part\":1,\"conversations\":3,\"direction\":\"deficit\"}],"
         "\"other_groups\":[{\"signature\":\"pins_posting_failure\",\"conversations\":8}]}",
         "merge"},
        /* pins posted twice versus not at all: two fixes */
        {"{\"signature\":\"pinterest_publishing_failure\",\"conversation_count\":8,"
         "\"parts\":[{\"part\":1,\"conversations\":4,\"direction\":\"excess\"},"
         "{\"part\":2,\"conversations\":4,\"direction\":\"deficit\"}],\"other_groups\":[]}",
         "split"},
        {"{\"signature\":\"billing_flow_error\",\"conversation_count\":6,"
         "\"parts\":[{\"part\":1,\"conversations\":4,\"direction\":\"deficit\"},"
         "{\"part\":2,\"conversations\":2,\"direction\":\"modification\"}],\"other_groups\":[]}",
         "keep"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        llm_call c = {0};
        c.task = LLM_REVIEW;
        c.args = json_loads(cases[i][0], 0, NULL);
        c.validate = story_review_check;
        c.done = noop_done;
        CHECK(c.args != NULL);
        CHECK_INT(llm_submit(p, &c), 0);
        while (llm_pending(p)) llm_poll(p, 10);
        CHECK_INT(c.status, LLM_OK);
        CHECK_STR(jx_str(c.answer, "decision"), cases[i][1]);
        CHECK(jx_str(c.answer, "reason") && jx_str(c.answer, "reason")[0]);
        json_decref(c.args);
        llm_call_reset_result(&c);
    }
    llm_provider_destroy(p);
    vocab_free(v);
}

/* The story request shows each thing customers said once: twins (the same words after
 * a greeting or a lead-in) are left out, the most typical member's wording kept, and
 * different requests in similar words both stay. */
TEST(a_story_request_shows_each_thing_said_once) {
    char *vp = fx_path("data/theme_vocabulary.json"), err[256];
    vocab *v = vocab_load(vp, err, sizeof err);
    free(vp);
    REQUIRE(v != NULL);
    static const char *const intents[] = {
        "How do I close my account?", "Hello team Help: how do I close my account.",
        "How do I close my account?", "How do I delete my profile?"};
    static const char *const symptoms[][2] = {{"close account", "delete account"},
                                              {"Close account", "error"},
                                              {"delete account", "can't find the option"},
                                              {"delete profile", "error canceling"}};
    splan p = {0};
    p.nmem = 4;
    p.mem = xcalloc(p.nmem, sizeof *p.mem);
    sstory s = {0};
    s.m = xcalloc(p.nmem, sizeof *s.m);
    for (size_t i = 0; i < p.nmem; i++) {
        smember *m = &p.mem[i];
        m->id = xasprintf("c%zu", i);
        m->intent = xstrdup(intents[i]);
        m->excerpt = xstrdup(intents[i]);
        m->sig = xstrdup("account_deletion_request");
        m->symptoms = json_pack("[ss]", symptoms[i][0], symptoms[i][1]);
        s.m[s.n++] = i;
    }
    p.ncands = 1;
    p.cands = xcalloc(1, sizeof *p.cands);
    p.cands[0].signature = xstrdup("account_deletion_request");
    p.cands[0].area = xstrdup("account");
    p.cands[0].component = xstrdup("settings");
    s.distinguisher = xstrdup("");
    s.action = xstrdup("deletion");
    s.direction = xstrdup("deficit");
    s.kind = xstrdup("feature");
    llm_call c = {0};
    story_write_call(v, &p, &s, &c);
    REQUIRE(c.args != NULL);
    char *got = json_dumps(jx_arr(c.args, "user_intents"), JSON_COMPACT);
    CHECK_STR(got, "[\"How do I close my account?\",\"How do I delete my profile?\"]");
    free(got);
    got = json_dumps(jx_arr(c.args, "excerpts"), JSON_COMPACT);
    CHECK_STR(got, "[\"How do I close my account?\",\"How do I delete my profile?\"]");
    free(got);
    /* "Close account" is "close account"; "error" is its own symptom, not part of
     * "error canceling" */
    got = json_dumps(jx_arr(c.args, "symptoms"), JSON_COMPACT);
    CHECK_STR(got, "[\"close account\",\"delete account\",\"error\",\"can't find the option\","
                   "\"delete profile\",\"error canceling\"]");
    free(got);
    json_decref(c.args);
    sstory_free(&s);
    splan_free(&p);
    vocab_free(v);
}

/* The description's evidence shows quotes that each say something new: a conversation
 * that says what a shown one says is counted among the "more". */
TEST(the_evidence_shown_says_each_thing_once) {
    json_t *story = json_pack("{s:s, s:s, s:I, s:s, s:s, s:s, s:[]}", "title", "Billing: cancel",
                              "problem", "p", "conversation_count", (json_int_t)7, "product_area",
                              "billing", "component", "subscription", "signature",
                              "billing_flow_error", "evidence");
    static const char *const quotes[] = {
        "The cancel button doesn't work.",
        "Hello team, quick one: the cancel button doesn't work!",
        "I was charged twice this month.",
        "the cancel button doesn't work",
        "Upgrading to the yearly plan fails with an error.",
        "Where do I find my invoices?",
        "My card was declined although it is valid.",
    };
    for (size_t i = 0; i < 7; i++) {
        char id[8], day[32];
        snprintf(id, sizeof id, "c%zu", i);
        snprintf(day, sizeof day, "2026-01-%02zuT10:00:00Z", 20 - i); /* newest first */
        json_array_append_new(jx_arr(story, "evidence"),
                              json_pack("{s:s, s:s, s:s}", "conversation_id", id, "excerpt",
                                        quotes[i], "created_at", day));
    }
    char *d = story_render_description(story);
    REQUIRE(d != NULL);
    size_t bullets = 0;
    for (const char *p = strstr(d, "## Evidence"); p && (p = strstr(p, "\n- \"")); p++) bullets++;
    CHECK_INT(bullets, 5);
    CHECK(strstr(d, "(conversation c0,") != NULL);
    CHECK(strstr(d, "(conversation c1,") == NULL); /* says what c0 says */
    CHECK(strstr(d, "(conversation c3,") == NULL);
    CHECK(strstr(d, "(conversation c6,") != NULL);
    CHECK(strstr(d, "- and 2 more conversations") != NULL);
    free(d);
    /* at most 20 are looked at: 30 conversations saying the same but the 26th */
    json_array_clear(jx_arr(story, "evidence"));
    for (size_t i = 0; i < 30; i++) {
        char id[8];
        snprintf(id, sizeof id, "c%02zu", i); /* the same day: in the order of the ids */
        json_array_append_new(jx_arr(story, "evidence"),
                              json_pack("{s:s, s:s, s:s}", "conversation_id", id, "excerpt",
                                        i == 25 ? quotes[2] : quotes[i % 2],
                                        "created_at", "2026-01-20T10:00:00Z"));
    }
    d = story_render_description(story);
    REQUIRE(d != NULL);
    CHECK(strstr(d, "(conversation c00,") != NULL);
    CHECK(strstr(d, "(conversation c25,") == NULL);
    CHECK(strstr(d, "- and 29 more conversations") != NULL);
    free(d);
    json_decref(story);
}

TEST(titles_are_distinct_and_never_a_customer_message) {
    char *t[4] = {xstrdup("Billing: cancel fails"), xstrdup("Billing: cancel fails"),
                  xstrdup("billing: CANCEL fails"), xstrdup("Other")};
    char *dist[4] = {"", "upgrade", "", ""};
    char *areas[4] = {"Billing", "Billing", "Account", "Billing"};
    story_titles_distinct(t, dist, areas, 4);
    for (int i = 0; i < 4; i++)
        for (int j = i + 1; j < 4; j++) CHECK(strcasecmp(t[i], t[j]) != 0);
    CHECK_STR(t[1], "Billing: cancel fails (upgrade)");
    CHECK_STR(t[2], "billing: CANCEL fails [Account]");
    for (int i = 0; i < 4; i++) free(t[i]);

    json_t *args = json_loads("{\"kind\":\"bug\",\"user_intents\":[\"I keep getting an error when "
                              "trying to cancel\"],\"excerpts\":[]}",
                              0, NULL);
    char why[256];
    json_t *copy = json_loads("{\"title\":\"I keep getting an error when trying to cancel!\","
                              "\"problem\":\"p\",\"affected\":\"a\",\"acceptance_criteria\":[\"c\"]}",
                              0, NULL);
    json_t *written = json_loads("{\"title\":\"Billing: cancelling a plan fails with an error\","
                                 "\"problem\":\"p\",\"affected\":\"a\",\"acceptance_criteria\":[\"c\"]}",
                                 0, NULL);
    json_t *no_criteria = json_loads("{\"title\":\"Billing: cancelling fails\",\"problem\":\"p\","
                                     "\"affected\":\"a\",\"acceptance_criteria\":[]}",
                                     0, NULL);
    CHECK_INT(story_answer_check(args, copy, why, sizeof why), -1);
    CHECK(strstr(why, "copies a customer") != NULL);
    CHECK_INT(story_answer_check(args, written, why, sizeof why), 0);
    CHECK_INT(story_answer_check(args, no_criteria, why, sizeof why), -1);
    /* a customer who wrote the product's own words (the theme's description) does not
     * make a title in those words a copy */
    json_t *echo = json_loads("{\"kind\":\"bug\",\"user_intents\":[\"Problem: made For You "
                              "generated content is poor quality.\"],\"theme\":{\"description\":"
                              "\"Made For You generated content is poor quality\"}}",
                              0, NULL);
    json_t *product = json_loads("{\"title\":\"Made For You: generated content is poor quality\","
                                 "\"problem\":\"p\",\"affected\":\"a\","
                                 "\"acceptance_criteria\":[\"c\"]}",
                                 0, NULL);
    CHECK_INT(story_answer_check(echo, product, why, sizeof why), 0);
    json_object_del(echo, "theme");
    CHECK_INT(story_answer_check(echo, product, why, sizeof why), -1);
    json_decref(product);
    json_decref(echo);
    json_decref(copy);
    json_decref(written);
    json_decref(no_criteria);
    json_decref(args);
}
