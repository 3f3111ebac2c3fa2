/* The OpenAI-compatible provider (src/llm/openai.c) against the fake endpoint
 * (build/fake_openai) on loopback: answers, embeddings batching, the concurrency cap,
 * the repair retry, retries and their bounds, fatal errors, cancellation, the cache
 * and rate limits. */
#include "test.h"

#include <stdatomic.h>
#include <stdlib.h>

#include "llm/llm.h"
#include "llm/prompts.h"
#include "support/e2e.h"
#include "support/fakeproc.h"
#include "support/fixtures.h"
#include "util/hash.h"
#include "util/jsonx.h"
#include "util/mem.h"
#include "util/timeutil.h"


static vocab *load_vocab(void) {
    char *path = fx_path("data/theme_vocabulary.json");
    char err[256];
    vocab *v = vocab_load(path, err, sizeof err);
    free(path);
    return v;
}

static void config_for(llm_openai_config *c, const fakeproc *fp, char *url, size_t len) {
    memset(c, 0, sizeof *c);
    snprintf(url, len, "%s/v1", fp->url);
    c->base_url = url;
    c->api_key = "test-key";
    c->chat_model = "gpt-4o-mini";
    c->embed_model = "text-embedding-3-small";
    c->concurrency = 8;
    c->timeout_ms = 5000;
    c->backoff_base_ms = 10;
    c->seed = 7;
    c->usd_prompt = c->usd_cached = c->usd_completion = c->usd_embed = -1;
}

static void count_done(llm_call *c) { (*(int *)c->user)++; }

/* Submits every call and polls until all completed or timeout; the number completed,
 * or -1 if poll reported a fatal error. */
static int run_all(llm_provider *p, llm_call *calls, size_t n, int timeout_ms) {
    int done = 0, fatal = 0;
    for (size_t i = 0; i < n; i++) {
        calls[i].done = count_done;
        calls[i].user = &done;
        if (llm_submit(p, &calls[i]) != 0) return -1;
    }
    int64_t deadline = mono_ms() + timeout_ms;
    while ((size_t)done < n && mono_ms() < deadline)
        if (llm_poll(p, 50) < 0) {
            fatal = 1;
            break;
        }
    return fatal ? -1 : done;
}

static void free_calls(llm_call *calls, size_t n) {
    for (size_t i = 0; i < n; i++) llm_call_reset_result(&calls[i]);
}

static int64_t stat_int(json_t *stats, const char *key) { return jx_int(stats, key, -1); }

static int64_t fault_count(json_t *stats, const char *kind) {
    return jx_int(jx_obj(stats, "faults"), kind, -1);
}

static int validate_type(const json_t *args, const json_t *a, char *msg, size_t len) {
    (void)args;
    if (!json_is_string(json_object_get(a, "conversation_type"))) {
        snprintf(msg, len, "conversation_type: missing or not a string");
        return -1;
    }
    return 0;
}

static const char *TEXTS[] = {
    "My scheduled pins are not posting to Pinterest since yesterday, the queue shows an error.",
    "How do I change the email address on my account? I can't find the setting.",
    "I was charged twice this month for my subscription, please refund one charge.",
    "Please add TikTok support, I would love to schedule videos there too.",
    "The dashboard is stuck on a blank screen after I log in, nothing loads at all.",
    "Ghostwriter produced garbled text and used up my credits without saving anything.",
};
#define NTEXTS (sizeof TEXTS / sizeof TEXTS[0])

/* The fake started with opts, and a provider on it of the given concurrency (no
 * vocabulary, no cache). */
typedef struct on_fake {
    fakeproc fp;
    llm_openai_config c;
    char url[128];
    llm_provider *p;
} on_fake;

static int on_fake_start(on_fake *x, const char **opts, int concurrency) {
    memset(x, 0, sizeof *x);
    if (e2e_start_fake(&x->fp, opts) != 0) return -1;
    config_for(&x->c, &x->fp, x->url, sizeof x->url);
    x->c.concurrency = concurrency;
    char err[256];
    x->p = llm_openai_new(&x->c, NULL, NULL, err, sizeof err);
    if (!x->p) fprintf(stdout, "    provider: %s\n", err);
    return x->p ? 0 : -1;
}

static void on_fake_stop(on_fake *x) {
    llm_provider_destroy(x->p);
    CHECK_INT(fakeproc_stop(&x->fp), 0);
}

/* Submits n facet calls on TEXTS, each counting itself in *done through done_fn. */
static void submit_facets(llm_provider *p, llm_call *calls, int n, void (*done_fn)(llm_call *),
                          int *done) {
    memset(calls, 0, (size_t)n * sizeof *calls);
    for (int i = 0; i < n; i++) {
        calls[i].task = LLM_FACETS;
        calls[i].in.digest = TEXTS[i];
        calls[i].done = done_fn;
        calls[i].user = done;
        CHECK_INT(llm_submit(p, &calls[i]), 0);
    }
}

TEST(chat_answers_are_the_offline_analyzers_on_the_same_text) {
    fakeproc fp;
    REQUIRE(e2e_start_fake(&fp, NULL) == 0);
    vocab *v = load_vocab();
    llm_openai_config c;
    char url[128];
    config_for(&c, &fp, url, sizeof url);
    char err[256];
    llm_provider *p = llm_openai_new(&c, v, NULL, err, sizeof err);
    llm_provider *local = llm_local_new(v);
    REQUIRE(p != NULL);
    llm_call calls[NTEXTS], ref[NTEXTS];
    memset(calls, 0, sizeof calls);
    memset(ref, 0, sizeof ref);
    for (size_t i = 0; i < NTEXTS; i++) {
        calls[i].task = LLM_CLASSIFY;
        calls[i].in.digest = TEXTS[i];
        calls[i].validate = validate_type;
        ref[i].task = LLM_CLASSIFY;
        ref[i].in.body = ref[i].in.digest = ref[i].in.transcript = TEXTS[i];
        ref[i].in.support_text = "";
    }
    CHECK_INT(run_all(p, calls, NTEXTS, 10000), NTEXTS);
    CHECK_INT(run_all(local, ref, NTEXTS, 10000), NTEXTS);
    for (size_t i = 0; i < NTEXTS; i++) {
        CHECK_INT(calls[i].status, LLM_OK);
        CHECK_INT(calls[i].attempts, 1);
        CHECK(calls[i].prompt_tokens > 100 && calls[i].completion_tokens > 0);
        CHECK(json_equal(calls[i].answer, ref[i].answer));
    }
    CHECK_STR(jx_str(calls[0].answer, "conversation_type"), "product_issue");
    CHECK_STR(jx_str(calls[2].answer, "conversation_type"), "billing_question");
    CHECK_INT(atomic_load(&p->stats.requests), NTEXTS);
    CHECK(p->usd_per_mtok_prompt > 0 && p->usd_per_mtok_embed > 0); /* known model prices */
    free_calls(calls, NTEXTS);
    free_calls(ref, NTEXTS);
    llm_provider_destroy(p);
    llm_provider_destroy(local);
    vocab_free(v);
    CHECK_INT(fakeproc_stop(&fp), 0);
}

/* Embeds TEXTS through the fake with the given encoding_format (NULL: the default);
 * *worst is the largest difference to the offline embedder's vectors (1 when there are
 * none). The fake's counts must show batches by token budget, answered in the encoding
 * asked. */
static void embed_through_fake(const char *encoding, double *worst_out) {
    *worst_out = 1;
    fakeproc fp;
    REQUIRE(e2e_start_fake(&fp, NULL) == 0);
    vocab *v = load_vocab();
    llm_openai_config c;
    char url[128];
    config_for(&c, &fp, url, sizeof url);
    c.embed_dimensions = 256;
    c.embed_max_tokens = 60; /* about two of these texts per request */
    c.embed_encoding = encoding;
    char err[256];
    llm_provider *p = llm_openai_new(&c, v, NULL, err, sizeof err);
    llm_provider *local = llm_local_new(v);
    REQUIRE(p != NULL);
    llm_call e = {0}, r = {0};
    e.task = r.task = LLM_EMBED;
    e.texts = r.texts = TEXTS;
    e.ntexts = r.ntexts = NTEXTS;
    local->embed_dim = 256;
    CHECK_INT(run_all(p, &e, 1, 10000), 1);
    CHECK_INT(run_all(local, &r, 1, 10000), 1);
    CHECK_INT(e.status, LLM_OK);
    CHECK_INT(e.dim, 256);
    double worst = 1;
    if (e.vectors && r.vectors) {
        worst = 0;
        for (size_t i = 0; i < NTEXTS * 256; i++) {
            double d = fabs((double)e.vectors[i] - (double)r.vectors[i]);
            if (d > worst) worst = d;
        }
    }
    json_t *st = fakeproc_stats(&fp);
    CHECK(stat_int(st, "embeddings") >= 3);
    CHECK_INT(stat_int(st, "embedding_inputs"), NTEXTS);
    int as_float = encoding && !strcmp(encoding, "float");
    CHECK_INT(stat_int(st, "embedding_inputs_base64"), as_float ? 0 : NTEXTS);
    CHECK_INT(e.attempts, stat_int(st, "embeddings"));
    json_decref(st);
    free_calls(&e, 1);
    free_calls(&r, 1);
    llm_provider_destroy(p);
    llm_provider_destroy(local);
    vocab_free(v);
    CHECK_INT(fakeproc_stop(&fp), 0);
    *worst_out = worst;
}

TEST(embeddings_are_batched_by_token_budget_and_keep_their_order) {
    /* The default asks for base64: the exact float32s, so the only difference to the
     * offline vectors is the provider's renormalisation (a few ulps). Numbers in text
     * (9 decimals) round. */
    double b64, text;
    embed_through_fake(NULL, &b64);
    CHECK(b64 < 1e-6);
    embed_through_fake("float", &text);
    CHECK(text < 1e-5);
}

TEST(the_embedding_encoding_must_be_one_the_api_knows) {
    /* The client refuses a setting the API would refuse, before any request... */
    llm_openai_config c;
    memset(&c, 0, sizeof c);
    c.api_key = "k";
    c.embed_encoding = "base85";
    char err[256] = "";
    vocab *v = load_vocab();
    CHECK(llm_openai_new(&c, v, NULL, err, sizeof err) == NULL);
    CHECK(strstr(err, "FEEDLINE_EMBED_ENCODING") != NULL);
    vocab_free(v);
    /* ...and the fake answers it as the API does: a 400. */
    fakeproc fp;
    REQUIRE(e2e_start_fake(&fp, NULL) == 0);
#define EMBED_BODY(format) "{\"model\":\"m\",\"input\":[\"a\"],\"encoding_format\":\"" format "\"}"
    CHECK_INT(fakeproc_post(&fp, "/v1/embeddings", EMBED_BODY("base85")), 400);
    CHECK_INT(fakeproc_post(&fp, "/v1/embeddings", EMBED_BODY("base64")), 200);
#undef EMBED_BODY
    CHECK_INT(fakeproc_stop(&fp), 0);
}

TEST(requests_on_the_wire_never_exceed_the_concurrency_and_reach_it) {
    const char *opts[] = {"--latency-ms", "100", NULL};
    fakeproc fp;
    REQUIRE(e2e_start_fake(&fp, opts) == 0);
    llm_openai_config c;
    char url[128];
    config_for(&c, &fp, url, sizeof url);
    c.concurrency = 4;
    char err[256];
    llm_provider *p = llm_openai_new(&c, NULL, NULL, err, sizeof err);
    REQUIRE(p != NULL);
    enum { N = 24 };
    llm_call calls[N];
    memset(calls, 0, sizeof calls);
    char *texts[N];
    for (int i = 0; i < N; i++) {
        texts[i] = xasprintf("Question number %d: how do I export my report as a PDF file?", i);
        calls[i].task = LLM_FACETS;
        calls[i].in.digest = texts[i];
    }
    int64_t t0 = mono_ms();
    CHECK_INT(run_all(p, calls, N, 20000), N);
    int64_t elapsed = mono_ms() - t0;
    json_t *st = fakeproc_stats(&fp);
    CHECK_INT(stat_int(st, "max_in_flight"), 4);
    CHECK_INT(atomic_load(&p->stats.max_in_flight), 4);
    /* kept-alive connections reused: the provider's 4, plus this stats request's */
    CHECK_INT(stat_int(st, "conns_accepted"), 5);
    json_decref(st);
    /* 24 requests of 100 ms, 4 at a time: 6 rounds */
    CHECK(elapsed >= 600 && elapsed < 1500);
    for (int i = 0; i < N; i++) {
        CHECK_INT(calls[i].status, LLM_OK);
        free(texts[i]);
    }
    free_calls(calls, N);
    llm_provider_destroy(p);
    CHECK_INT(fakeproc_stop(&fp), 0);
}

/* The done callback of the first call to complete: how many requests the provider
 * had sent by then. */
static int64_t sent_at_first_done = -1;
static llm_provider *queue_provider;
static void note_sent(llm_call *c) {
    if (sent_at_first_done < 0) sent_at_first_done = atomic_load(&queue_provider->stats.requests);
    count_done(c);
}

/* A request queued beyond the concurrency goes on the wire the moment a slot frees,
 * before the answer that freed it is handed to its caller: the slot does not wait for
 * the caller's work on the answer. */
TEST(a_freed_slot_takes_a_queued_request_before_the_answer_is_handed_over) {
    const char *opts[] = {"--latency-ms", "50", NULL};
    on_fake x;
    REQUIRE(on_fake_start(&x, opts, 4) == 0);
    CHECK_INT(x.p->queue_ahead, 1); /* a quarter of the concurrency, rounded up */
    enum { N = 5 };
    llm_call calls[N];
    int done = 0;
    queue_provider = x.p;
    sent_at_first_done = -1;
    submit_facets(x.p, calls, N, note_sent, &done);
    int64_t deadline = mono_ms() + 10000;
    while (done < N && mono_ms() < deadline) REQUIRE(llm_poll(x.p, 50) >= 0);
    CHECK_INT(done, N);
    CHECK_INT(sent_at_first_done, N);
    json_t *st = fakeproc_stats(&x.fp);
    CHECK_INT(stat_int(st, "max_in_flight"), 4);
    json_decref(st);
    free_calls(calls, N);
    on_fake_stop(&x);
}

TEST(invalid_answers_get_one_repair_retry_then_fail_with_the_reason) {
    const char *opts[] = {"--fault-nonjson", "0.5", "--seed", "3", NULL};
    fakeproc fp;
    REQUIRE(e2e_start_fake(&fp, opts) == 0);
    llm_openai_config c;
    char url[128];
    config_for(&c, &fp, url, sizeof url);
    char err[256];
    llm_provider *p = llm_openai_new(&c, NULL, NULL, err, sizeof err);
    REQUIRE(p != NULL);
    enum { N = 40 };
    llm_call calls[N];
    memset(calls, 0, sizeof calls);
    char *texts[N];
    for (int i = 0; i < N; i++) {
        texts[i] = xasprintf("Case %d: my pins are not posting and the queue is stuck.", i);
        calls[i].task = LLM_CLASSIFY;
        calls[i].in.digest = texts[i];
        calls[i].validate = validate_type;
    }
    CHECK_INT(run_all(p, calls, N, 20000), N);
    int ok_first = 0, repaired = 0, invalid = 0;
    for (int i = 0; i < N; i++) {
        if (calls[i].status == LLM_OK && calls[i].attempts == 1) ok_first++;
        else if (calls[i].status == LLM_OK && calls[i].attempts == 2) repaired++;
        else if (calls[i].status == LLM_ERR_INVALID && calls[i].attempts == 2 &&
                 strstr(calls[i].error, "not a JSON object"))
            invalid++;
        free(texts[i]);
    }
    /* every call is one of the three outcomes, and each outcome happened */
    CHECK_INT(ok_first + repaired + invalid, N);
    CHECK(ok_first > 0 && repaired > 0 && invalid > 0);
    json_t *st = fakeproc_stats(&fp);
    CHECK_INT(stat_int(st, "chat"), N + repaired + invalid);
    json_decref(st);
    free_calls(calls, N);
    llm_provider_destroy(p);
    CHECK_INT(fakeproc_stop(&fp), 0);
}

TEST(wrong_field_types_fail_validation_and_name_the_field) {
    const char *opts[] = {"--fault-types", "1", NULL};
    fakeproc fp;
    REQUIRE(e2e_start_fake(&fp, opts) == 0);
    llm_openai_config c;
    char url[128];
    config_for(&c, &fp, url, sizeof url);
    char err[256];
    llm_provider *p = llm_openai_new(&c, NULL, NULL, err, sizeof err);
    REQUIRE(p != NULL);
    llm_call call = {0};
    call.task = LLM_CLASSIFY;
    call.in.digest = TEXTS[0];
    call.validate = validate_type;
    CHECK_INT(run_all(p, &call, 1, 10000), 1);
    CHECK_INT(call.status, LLM_ERR_INVALID);
    CHECK_INT(call.attempts, 2);
    CHECK(strstr(call.error, "conversation_type") != NULL);
    CHECK(call.answer == NULL);
    free_calls(&call, 1);
    llm_provider_destroy(p);
    CHECK_INT(fakeproc_stop(&fp), 0);
}

TEST(server_errors_timeouts_and_truncation_retry_a_bounded_number_of_times) {
    const char *opts[] = {"--fault-500", "1", NULL};
    fakeproc fp;
    REQUIRE(e2e_start_fake(&fp, opts) == 0);
    llm_openai_config c;
    char url[128];
    config_for(&c, &fp, url, sizeof url);
    c.max_attempts = 3;
    c.timeout_ms = 300;
    char err[256];
    llm_provider *p = llm_openai_new(&c, NULL, NULL, err, sizeof err);
    REQUIRE(p != NULL);
    llm_call call = {0};
    call.task = LLM_FACETS;
    call.in.digest = TEXTS[1];
    CHECK_INT(run_all(p, &call, 1, 10000), 1);
    CHECK_INT(call.status, LLM_ERR_HTTP);
    CHECK_INT(call.attempts, 3);
    CHECK(strstr(call.error, "gave up after 3 attempts") && strstr(call.error, "HTTP 500"));
    free_calls(&call, 1);

    REQUIRE(fakeproc_post(&fp, "/_config", "{\"fault_500\":0,\"fault_timeout\":1}") == 200);
    int64_t t0 = mono_ms();
    CHECK_INT(run_all(p, &call, 1, 10000), 1);
    int64_t elapsed = mono_ms() - t0;
    CHECK_INT(call.status, LLM_ERR_TIMEOUT);
    CHECK_INT(call.attempts, 3);
    CHECK(elapsed >= 900 && elapsed < 3000); /* 3 x 300 ms + short backoffs */
    free_calls(&call, 1);

    REQUIRE(fakeproc_post(&fp, "/_config", "{\"fault_timeout\":0,\"fault_truncated\":1}") == 200);
    CHECK_INT(run_all(p, &call, 1, 10000), 1);
    CHECK_INT(call.status, LLM_ERR_HTTP);
    CHECK(strstr(call.error, "connection failed") != NULL);
    free_calls(&call, 1);

    /* and a healthy endpoint again answers at once */
    REQUIRE(fakeproc_post(&fp, "/_config", "{\"fault_truncated\":0}") == 200);
    CHECK_INT(run_all(p, &call, 1, 10000), 1);
    CHECK_INT(call.status, LLM_OK);
    CHECK_INT(call.attempts, 1);
    CHECK(atomic_load(&p->stats.retries) >= 6);
    free_calls(&call, 1);
    llm_provider_destroy(p);
    CHECK_INT(fakeproc_stop(&fp), 0);
}

TEST(a_refused_key_is_fatal_for_the_provider_not_a_failure_per_call) {
    const char *opts[] = {"--require-key", "right", NULL};
    fakeproc fp;
    REQUIRE(e2e_start_fake(&fp, opts) == 0);
    llm_openai_config c;
    char url[128];
    config_for(&c, &fp, url, sizeof url);
    c.api_key = "wrong";
    char err[256];
    llm_provider *p = llm_openai_new(&c, NULL, NULL, err, sizeof err);
    REQUIRE(p != NULL);
    enum { N = 10 };
    llm_call calls[N];
    memset(calls, 0, sizeof calls);
    for (int i = 0; i < N; i++) {
        calls[i].task = LLM_FACETS;
        calls[i].in.digest = TEXTS[i % NTEXTS];
    }
    CHECK_INT(run_all(p, calls, N, 10000), -1);
    CHECK(strstr(p->error, "HTTP 401") && strstr(p->error, "API key"));
    CHECK_INT(llm_pending(p), 0);
    for (int i = 0; i < N; i++) {
        CHECK_INT(calls[i].status, LLM_ERR_CANCELLED);
        CHECK(strstr(calls[i].error, "HTTP 401") != NULL);
    }
    llm_call late = {0};
    late.task = LLM_FACETS;
    late.in.digest = TEXTS[0];
    late.done = count_done;
    int d = 0;
    late.user = &d;
    CHECK_INT(llm_submit(p, &late), -1);
    CHECK_INT(llm_poll(p, 0), -1);
    free_calls(calls, N);
    llm_provider_destroy(p);
    /* the header name is configurable (Azure: api-key) */
    c.api_key = "right";
    c.key_header = "api-key";
    p = llm_openai_new(&c, NULL, NULL, err, sizeof err);
    REQUIRE(p != NULL);
    CHECK_INT(run_all(p, &late, 1, 10000), 1);
    CHECK_INT(late.status, LLM_OK);
    free_calls(&late, 1);
    llm_provider_destroy(p);
    CHECK_INT(fakeproc_stop(&fp), 0);
}

TEST(cancel_all_completes_queued_and_in_flight_calls_at_once) {
    const char *opts[] = {"--latency-ms", "5000", NULL};
    on_fake x;
    REQUIRE(on_fake_start(&x, opts, 3) == 0);
    llm_provider *p = x.p;
    enum { N = 6 };
    llm_call calls[N];
    int done = 0;
    submit_facets(p, calls, N, count_done, &done);
    int64_t t0 = mono_ms();
    while (mono_ms() - t0 < 300) llm_poll(p, 50);
    CHECK_INT(done, 0);
    CHECK_INT(atomic_load(&p->stats.in_flight), 3); /* 3 on the wire, 3 queued */
    t0 = mono_ms();
    p->ops->cancel_all(p);
    CHECK(mono_ms() - t0 < 100);
    CHECK_INT(done, N);
    CHECK_INT(llm_pending(p), 0);
    CHECK_INT(atomic_load(&p->stats.in_flight), 0);
    for (int i = 0; i < N; i++) CHECK_INT(calls[i].status, LLM_ERR_CANCELLED);
    /* the fake saw the three requests abandoned */
    int64_t aborted = 0;
    for (int i = 0; i < 50 && aborted < 3; i++) {
        json_t *st = fakeproc_stats(&x.fp);
        aborted = stat_int(st, "aborted");
        json_decref(st);
        if (aborted < 3) sleep_ms(20);
    }
    CHECK_INT(aborted, 3);
    free_calls(calls, N);
    on_fake_stop(&x);
}

static const char *reject_type = NULL;
static int validate_not_rejected(const json_t *args, const json_t *a, char *msg, size_t len) {
    (void)args;
    const char *t = jx_str(a, "conversation_type");
    if (!t || (reject_type && !strcmp(t, reject_type))) {
        snprintf(msg, len, "conversation_type: rejected");
        return -1;
    }
    return 0;
}

/* A provider on the fake whose cache lives in a fresh database. */
typedef struct cached {
    fakeproc fp;
    char *db;
    store *st;
    llm_openai_config c;
    char url[128];
    llm_provider *p;
} cached;

static int cached_start(cached *x) {
    memset(x, 0, sizeof *x);
    if (e2e_start_fake(&x->fp, NULL) != 0) return -1;
    x->db = fx_db_url();
    x->st = fx_store_open(x->db);
    config_for(&x->c, &x->fp, x->url, sizeof x->url);
    char err[256];
    x->p = llm_openai_new(&x->c, NULL, x->st, err, sizeof err);
    if (!x->p) fprintf(stdout, "    provider: %s\n", err);
    return x->p ? 0 : -1;
}

/* A new provider on the same cache (the old one writes what it buffered), and the
 * fake's counters zeroed. */
static int cached_restart(cached *x) {
    llm_provider_destroy(x->p);
    x->p = NULL;
    if (fakeproc_post(&x->fp, "/_reset", NULL) != 200) return -1;
    char err[256];
    x->p = llm_openai_new(&x->c, NULL, x->st, err, sizeof err);
    return x->p ? 0 : -1;
}

static void cached_stop(cached *x) {
    llm_provider_destroy(x->p);
    store_close(x->st);
    free(x->db);
    CHECK_INT(fakeproc_stop(&x->fp), 0);
}

TEST(identical_calls_are_answered_from_the_cache_after_validation) {
    cached x;
    REQUIRE(cached_start(&x) == 0);
    llm_provider *p = x.p;
    llm_call calls[NTEXTS];
    memset(calls, 0, sizeof calls);
    for (size_t i = 0; i < NTEXTS; i++) {
        calls[i].task = LLM_CLASSIFY;
        calls[i].in.digest = TEXTS[i];
        calls[i].validate = validate_not_rejected;
    }
    llm_call emb = {0};
    emb.task = LLM_EMBED;
    emb.texts = TEXTS;
    emb.ntexts = NTEXTS;
    CHECK_INT(run_all(p, calls, NTEXTS, 10000), NTEXTS);
    CHECK_INT(run_all(p, &emb, 1, 10000), 1);
    json_t *first[NTEXTS];
    for (size_t i = 0; i < NTEXTS; i++) first[i] = json_incref(calls[i].answer);
    float *vec = xmalloc(NTEXTS * (size_t)emb.dim * sizeof(float));
    memcpy(vec, emb.vectors, NTEXTS * (size_t)emb.dim * sizeof(float));
    int dim = emb.dim;
    free_calls(calls, NTEXTS);
    free_calls(&emb, 1);
    REQUIRE(cached_restart(&x) == 0);
    p = x.p;
    CHECK_INT(run_all(p, calls, NTEXTS, 10000), NTEXTS);
    CHECK_INT(run_all(p, &emb, 1, 10000), 1);
    for (size_t i = 0; i < NTEXTS; i++) {
        CHECK_INT(calls[i].status, LLM_OK);
        CHECK_INT(calls[i].from_cache, 1);
        CHECK_INT(calls[i].attempts, 0);
        CHECK_INT(calls[i].prompt_tokens, 0); /* nothing spent */
        CHECK(json_equal(calls[i].answer, first[i]));
    }
    CHECK_INT(emb.from_cache, 1);
    CHECK_INT(emb.dim, dim);
    CHECK(emb.vectors && !memcmp(emb.vectors, vec, NTEXTS * (size_t)dim * sizeof(float)));
    json_t *s = fakeproc_stats(&x.fp);
    CHECK_INT(stat_int(s, "requests"), 0);
    json_decref(s);
    free_calls(calls, NTEXTS);
    free_calls(&emb, 1);

    /* a cached answer the phase now rejects is not used: the endpoint is asked (and,
     * answering the same, gets the repair retry and fails) */
    reject_type = jx_str(first[0], "conversation_type");
    CHECK_INT(run_all(p, calls, 1, 10000), 1);
    CHECK_INT(calls[0].from_cache, 0);
    CHECK_INT(calls[0].status, LLM_ERR_INVALID);
    CHECK_INT(calls[0].attempts, 2);
    free_calls(calls, 1);
    reject_type = NULL;
    for (size_t i = 0; i < NTEXTS; i++) json_decref(first[i]);
    free(vec);
    cached_stop(&x);
}

/* The key under which an answer is cached, computed here from its definition: SHA-256
 * of the model, a newline and the request body as json_dumps(JSON_COMPACT) writes it. */
static void expected_key(const prompts *pr, const llm_call *c, char out[65]) {
    json_t *b = json_object();
    json_object_set_new(b, "model", json_string("gpt-4o-mini"));
    json_object_set_new(b, "messages", prompts_messages(pr, c));
    json_object_set_new(b, "response_format", json_pack("{ss}", "type", "json_object"));
    json_object_set_new(b, "temperature", json_integer(0));
    json_object_set_new(b, "max_tokens", json_integer(prompts_max_tokens(c)));
    char *body = json_dumps(b, JSON_COMPACT);
    char *text = xasprintf("gpt-4o-mini\n%s", body);
    sha256_hex(text, strlen(text), out);
    free(text);
    free(body);
    json_decref(b);
}

/* The provider assembles request bodies from pieces encoded once, and hashes only what
 * follows a task's shared start: the keys must stay those of the whole body (a cache
 * written before must keep answering). */
TEST(chat_answers_are_cached_under_the_hash_of_the_model_and_the_exact_body) {
    cached x;
    REQUIRE(cached_start(&x) == 0);
    prompts *pr = prompts_new(NULL);
    static const enum llm_task tasks[] = {LLM_CLASSIFY, LLM_THEME, LLM_FACETS};
    for (size_t t = 0; t < sizeof tasks / sizeof *tasks; t++)
        for (size_t i = 0; i < 3; i++) { /* the first of a task sets its shared start */
            llm_call c;
            memset(&c, 0, sizeof c);
            c.task = tasks[t];
            c.in.digest = c.in.transcript = TEXTS[i];
            if (c.task == LLM_THEME)
                c.args = json_pack("{ss}", "conversation_type", "product_issue");
            CHECK_INT(run_all(x.p, &c, 1, 10000), 1);
            CHECK_INT(c.status, LLM_OK);
            char key[65], *resp = NULL;
            expected_key(pr, &c, key);
            CHECK_INT(store_cache_get(x.st, key, &resp, NULL, NULL), STORE_FOUND);
            free(resp);
            json_decref(c.args);
            c.args = NULL;
            llm_call_reset_result(&c);
        }
    prompts_free(pr);
    cached_stop(&x);
}

/* One canonicalisation call of the given arguments, run to completion. */
static void canon_call(llm_provider *p, llm_call *c, const char *args) {
    memset(c, 0, sizeof *c);
    c->task = LLM_CANONICALIZE;
    c->args = json_loads(args, 0, NULL);
    CHECK(c->args != NULL);
    CHECK_INT(run_all(p, c, 1, 10000), 1);
    CHECK_INT(c->status, LLM_OK);
}

static const char *decided(const llm_call *c, size_t i) {
    const char *sig = jx_str(llm_canon_decision(c->answer, c->args, i), "signature");
    return sig ? sig : "(none)";
}

static void canon_free(llm_call *c) {
    llm_call_reset_result(c);
    json_decref(c->args);
}

TEST(canonicalisation_decisions_are_remembered_per_proposal) {
    cached x;
    REQUIRE(cached_start(&x) == 0);
    llm_provider *p = x.p;
    llm_call k;
    canon_call(p, &k,
               "{\"product_area\":\"reports\",\"existing\":[{\"signature\":\"csv_export_timeout\","
               "\"product_area\":\"reports\"}],\"proposals\":[{\"proposed\":\"Export CSV Timeout\"},"
               "{\"proposed\":\"pdf fonts garbled\"}]}");
    CHECK_STR(decided(&k, 0), "csv_export_timeout");
    CHECK_STR(decided(&k, 1), "pdf_fonts_garbled");
    canon_free(&k);
    REQUIRE(cached_restart(&x) == 0);
    p = x.p;

    /* batched the other way round, with more signatures known by now: other bytes, yet
     * both decisions still stand, so no request */
    canon_call(p, &k,
               "{\"product_area\":\"reports\",\"existing\":[{\"signature\":\"chart_legend_missing\","
               "\"product_area\":\"reports\"},{\"signature\":\"csv_export_timeout\","
               "\"product_area\":\"reports\"}],\"proposals\":[{\"proposed\":\"pdf fonts garbled\"},"
               "{\"proposed\":\"Export CSV Timeout\"}]}");
    CHECK_INT(k.from_cache, 1);
    CHECK_INT(k.attempts, 0);
    CHECK_STR(decided(&k, 0), "pdf_fonts_garbled");
    CHECK_STR(decided(&k, 1), "csv_export_timeout");
    canon_free(&k);
    json_t *s = fakeproc_stats(&x.fp);
    CHECK_INT(stat_int(s, "requests"), 0);
    json_decref(s);

    /* the signature it chose is no longer offered: the decision does not stand */
    canon_call(p, &k,
               "{\"product_area\":\"reports\",\"existing\":[],\"proposals\":["
               "{\"proposed\":\"Export CSV Timeout\"}]}");
    CHECK_INT(k.from_cache, 0);
    CHECK_STR(decided(&k, 0), "export_csv_timeout");
    canon_free(&k);
    /* one proposal never decided: the whole request is asked */
    canon_call(p, &k,
               "{\"product_area\":\"reports\",\"existing\":[],\"proposals\":["
               "{\"proposed\":\"pdf fonts garbled\"},{\"proposed\":\"chart legend missing\"}]}");
    CHECK_INT(k.from_cache, 0);
    CHECK_STR(decided(&k, 1), "chart_legend_missing");
    canon_free(&k);
    s = fakeproc_stats(&x.fp);
    CHECK_INT(stat_int(s, "requests"), 2);
    CHECK_INT(stat_int(s, "canonicalize_proposals"), 3);
    json_decref(s);
    cached_stop(&x);
}

TEST(rate_limited_answers_are_retried_after_retry_after) {
    const char *opts[] = {"--fault-429", "0.3", "--retry-after-ms", "150", "--seed", "5", NULL};
    fakeproc fp;
    REQUIRE(e2e_start_fake(&fp, opts) == 0);
    llm_openai_config c;
    char url[128];
    config_for(&c, &fp, url, sizeof url);
    char err[256];
    llm_provider *p = llm_openai_new(&c, NULL, NULL, err, sizeof err);
    REQUIRE(p != NULL);
    enum { N = 30 };
    llm_call calls[N];
    memset(calls, 0, sizeof calls);
    char *texts[N];
    for (int i = 0; i < N; i++) {
        texts[i] = xasprintf("Request %d: the analytics counter shows the wrong number of pins.", i);
        calls[i].task = LLM_FACETS;
        calls[i].in.digest = texts[i];
    }
    int64_t t0 = mono_ms();
    CHECK_INT(run_all(p, calls, N, 30000), N);
    int64_t elapsed = mono_ms() - t0;
    json_t *st = fakeproc_stats(&fp);
    int64_t n429 = fault_count(st, "429");
    CHECK(n429 > 0);
    CHECK_INT(atomic_load(&p->stats.rate_limited), n429);
    CHECK(elapsed >= 150);
    json_decref(st);
    for (int i = 0; i < N; i++) {
        CHECK_INT(calls[i].status, LLM_OK);
        free(texts[i]);
    }
    free_calls(calls, N);
    llm_provider_destroy(p);
    CHECK_INT(fakeproc_stop(&fp), 0);
}

TEST(requests_per_minute_learned_from_headers_are_never_exceeded) {
    /* 1200/min over a 5 s window: at most 100 requests in any 5 s */
    const char *opts[] = {"--rpm", "1200", "--window-ms", "5000", "--latency-ms", "5", NULL};
    fakeproc fp;
    REQUIRE(e2e_start_fake(&fp, opts) == 0);
    llm_openai_config c;
    char url[128];
    config_for(&c, &fp, url, sizeof url);
    c.concurrency = 8; /* no --rpm: the limit comes from x-ratelimit-* */
    char err[256];
    llm_provider *p = llm_openai_new(&c, NULL, NULL, err, sizeof err);
    REQUIRE(p != NULL);
    enum { N = 130 };
    llm_call calls[N];
    memset(calls, 0, sizeof calls);
    char *texts[N];
    for (int i = 0; i < N; i++) {
        texts[i] = xasprintf("Ticket %d: I cannot connect my Pinterest account, authorization fails.", i);
        calls[i].task = LLM_FACETS;
        calls[i].in.digest = texts[i];
    }
    int64_t t0 = mono_ms();
    CHECK_INT(run_all(p, calls, N, 30000), N);
    int64_t elapsed = mono_ms() - t0;
    json_t *st = fakeproc_stats(&fp);
    fprintf(stdout, "    %d requests in %lld ms, max %lld in a window of 5 s, %lld answered 429\n", N,
            (long long)elapsed, (long long)stat_int(st, "max_window_arrivals"),
            (long long)stat_int(st, "rate_limited"));
    CHECK_INT(stat_int(st, "rate_limited"), 0);
    CHECK(stat_int(st, "max_window_arrivals") <= 100);
    /* ...and the limit is used: 130 requests at 19.6/s after the first burst */
    CHECK(elapsed >= 5000 && elapsed < 8500);
    json_decref(st);
    for (int i = 0; i < N; i++) {
        CHECK_INT(calls[i].status, LLM_OK);
        free(texts[i]);
    }
    free_calls(calls, N);
    llm_provider_destroy(p);
    CHECK_INT(fakeproc_stop(&fp), 0);
}

TEST(an_endpoint_that_rejects_every_request_fails_the_provider_once) {
    fakeproc fp;
    REQUIRE(e2e_start_fake(&fp, NULL) == 0);
    llm_openai_config c;
    char url[128];
    config_for(&c, &fp, url, sizeof url);
    c.concurrency = 1; /* one at a time: the count of rejections is exact */
    char err[256];
    llm_provider *p = llm_openai_new(&c, NULL, NULL, err, sizeof err);
    REQUIRE(p != NULL);
    enum { N = 15 };
    llm_call calls[N];
    memset(calls, 0, sizeof calls);
    for (int i = 0; i < N; i++) {
        calls[i].task = LLM_CLASSIFY;
        calls[i].in.digest = " "; /* the fake's analyzer answers 400: nothing to classify */
    }
    CHECK_INT(run_all(p, calls, N, 10000), -1);
    CHECK(strstr(p->error, "rejected the first 10 requests (HTTP 400)") != NULL);
    int failed = 0, cancelled = 0;
    for (int i = 0; i < N; i++) {
        failed += calls[i].status == LLM_ERR_HTTP && strstr(calls[i].error, "HTTP 400") != NULL;
        cancelled += calls[i].status == LLM_ERR_CANCELLED;
    }
    CHECK_INT(failed, 9);
    CHECK_INT(cancelled, N - 9);
    free_calls(calls, N);
    llm_provider_destroy(p);
    /* a bad configuration is refused up front */
    c.base_url = "ftp://example.com";
    CHECK(llm_openai_new(&c, NULL, NULL, err, sizeof err) == NULL);
    CHECK(strstr(err, "http") != NULL);
    config_for(&c, &fp, url, sizeof url);
    c.key_header = "api-key: x";
    CHECK(llm_openai_new(&c, NULL, NULL, err, sizeof err) == NULL);
    CHECK_INT(fakeproc_stop(&fp), 0);
}

/* One chat call of a task on a text, run to completion. */
static void chat_call(llm_provider *p, llm_call *c, enum llm_task t, const char *text) {
    memset(c, 0, sizeof *c);
    c->task = t;
    c->in.digest = c->in.transcript = text;
    if (t == LLM_THEME) c->args = json_pack("{ss}", "conversation_type", "product_issue");
    CHECK_INT(run_all(p, c, 1, 10000), 1);
    CHECK_INT(c->status, LLM_OK);
    json_decref(c->args);
    c->args = NULL;
}

/* OpenAI serves the longest prefix of a prompt it has seen, in 128-token blocks from
 * 1024 tokens on; the fake does the same with its bytes/4 token estimate, and the
 * provider records and prices what the endpoint reports. */
TEST(the_endpoint_prefix_cache_is_reported_per_call_and_priced_at_the_cached_rate) {
    fakeproc fp;
    REQUIRE(e2e_start_fake(&fp, NULL) == 0);
    vocab *v = load_vocab();
    llm_openai_config c;
    char url[128];
    config_for(&c, &fp, url, sizeof url);
    char err[256];
    llm_provider *p = llm_openai_new(&c, v, NULL, err, sizeof err);
    REQUIRE(p != NULL);
    CHECK_NEAR(p->usd_per_mtok_cached, 0.075, 1e-12); /* gpt-4o-mini: half of 0.15 */
    prompts *pr = prompts_new(v);
    size_t sys = strlen(prompts_system(pr, LLM_THEME));
    REQUIRE(sys > 4096 + 512); /* over 1024 tokens: cacheable */

    /* the first request has nothing cached; the next ones the whole static prefix
     * (system message and Task line, at least) in 128-token blocks */
    llm_call calls[NTEXTS];
    chat_call(p, &calls[0], LLM_THEME, TEXTS[0]);
    CHECK_INT(calls[0].cached_tokens, 0);
    int64_t served = 0, prompt = calls[0].prompt_tokens, completion = calls[0].completion_tokens;
    for (size_t i = 1; i < NTEXTS; i++) {
        chat_call(p, &calls[i], LLM_THEME, TEXTS[i]);
        CHECK(calls[i].cached_tokens >= (int64_t)(sys / 512) * 128);
        CHECK(calls[i].cached_tokens < calls[i].prompt_tokens);
        CHECK_INT(calls[i].cached_tokens % 128, 0);
        served += calls[i].cached_tokens;
        prompt += calls[i].prompt_tokens;
        completion += calls[i].completion_tokens;
    }
    /* the same request again: all of its messages but the last partial block */
    llm_call again;
    chat_call(p, &again, LLM_THEME, TEXTS[0]);
    CHECK_INT(again.from_cache, 0); /* no llm_cache here: the request was sent */
    again.args = json_pack("{ss}", "conversation_type", "product_issue");
    char *user = prompts_user(pr, &again);
    CHECK(again.cached_tokens > (int64_t)(sys + strlen(user)) / 4 - 128);
    CHECK(again.cached_tokens >= calls[1].cached_tokens);
    CHECK_INT(again.cached_tokens % 128, 0);
    free(user);
    json_decref(again.args);
    again.args = NULL;
    prompts_free(pr);
    served += again.cached_tokens;
    prompt += again.prompt_tokens;
    completion += again.completion_tokens;
    CHECK_INT(atomic_load(&p->stats.cached_tokens), served);
    json_t *s = fakeproc_stats(&fp);
    CHECK_INT(stat_int(s, "cached_tokens"), served);
    CHECK_INT(jx_int(jx_obj(jx_obj(s, "tasks"), "theme"), "cached_tokens", -1), served);
    json_decref(s);
    /* cost: the cached tokens at the cached rate, the rest at the prompt rate */
    double full = llm_cost_usd(p, prompt, 0, completion);
    double with = llm_cost_usd(p, prompt, served, completion);
    CHECK_NEAR(full - with, (double)served * (0.15 - 0.075) / 1e6, 1e-12);
    CHECK_NEAR(llm_cost_usd(p, 100, 500, 0), 100 * 0.075 / 1e6, 1e-15); /* clamped */
    free_calls(calls, NTEXTS);
    free_calls(&again, 1);

    /* classification's static part is under 1024 tokens: never cached */
    llm_call cl[2];
    chat_call(p, &cl[0], LLM_CLASSIFY, TEXTS[0]);
    chat_call(p, &cl[1], LLM_CLASSIFY, TEXTS[0]);
    CHECK(cl[1].prompt_tokens < 1024);
    CHECK_INT(cl[0].cached_tokens + cl[1].cached_tokens, 0);
    free_calls(cl, 2);

    /* a server that reports no usage details: nothing cached */
    REQUIRE(fakeproc_post(&fp, "/_config", "{\"prompt_cache\": 0}") == 200);
    chat_call(p, &cl[0], LLM_THEME, TEXTS[1]);
    CHECK(cl[0].prompt_tokens > 1024);
    CHECK_INT(cl[0].cached_tokens, 0);
    free_calls(cl, 1);
    llm_provider_destroy(p);

    /* the cached price: configured; else half a configured prompt price; else the
     * model's published one; else half the prompt price (0 for unknown models) */
    c.usd_cached = 0.01;
    p = llm_openai_new(&c, v, NULL, err, sizeof err);
    REQUIRE(p != NULL);
    CHECK_NEAR(p->usd_per_mtok_cached, 0.01, 1e-12);
    llm_provider_destroy(p);
    c.usd_cached = -1;
    c.usd_prompt = 1.0;
    p = llm_openai_new(&c, v, NULL, err, sizeof err);
    REQUIRE(p != NULL);
    CHECK_NEAR(p->usd_per_mtok_cached, 0.5, 1e-12);
    llm_provider_destroy(p);
    c.usd_prompt = -1;
    c.chat_model = "gpt-4.1-mini";
    p = llm_openai_new(&c, v, NULL, err, sizeof err);
    REQUIRE(p != NULL);
    CHECK_NEAR(p->usd_per_mtok_cached, 0.10, 1e-12);
    llm_provider_destroy(p);
    c.chat_model = "llama-3.1-8b";
    p = llm_openai_new(&c, v, NULL, err, sizeof err);
    REQUIRE(p != NULL);
    CHECK_NEAR(p->usd_per_mtok_cached, 0, 1e-12);
    llm_provider_destroy(p);
    vocab_free(v);
    CHECK_INT(fakeproc_stop(&fp), 0);
}
