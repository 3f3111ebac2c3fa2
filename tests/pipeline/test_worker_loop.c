/* pipeline_worker in-process: a driver thread (pipeline_start) and worker threads on
 * one PostgreSQL database with the offline analyzer slowed down so that every phase
 * is shared. The offline embedder's vectors depend on corpus statistics (IDF) that
 * each process computes from the whole phase, so they must be identical whoever
 * computes them: compared byte for byte with a single-process run. Also: workers stay
 * out of runs whose driver is gone, and of runs using another provider. */
#include "test.h"

#include <pthread.h>
#include <stdlib.h>

#include "pipeline/pipeline.h"
#include "source/source.h"
#include "store/db.h"
#include "support/fixtures.h"
#include "util/hash.h"
#include "util/mem.h"
#include "util/timeutil.h"

/* ------------------------------------------------------------------ a slow provider */

/* Wraps the offline analyzer: each call reaches it only after a delay (per task), so
 * a phase takes long enough for several threads to share it. */
typedef struct slow {
    llm_provider base;
    llm_provider *inner;
    int delay_ms[LLM_TASK_COUNT];
    struct { llm_call *c; int64_t due; } *q;
    size_t n, cap;
    _Atomic long *calls; /* per task, shared with the test (may be NULL) */
} slow;

static int s_submit(llm_provider *p, llm_call *c) {
    slow *s = (slow *)p;
    XGROW(s->q, s->cap, s->n + 1);
    s->q[s->n].c = c;
    s->q[s->n].due = mono_ms() + s->delay_ms[c->task];
    s->n++;
    if (s->calls) atomic_fetch_add(&s->calls[c->task], 1);
    return 0;
}

static int s_poll(llm_provider *p, int ms) {
    slow *s = (slow *)p;
    int64_t now = mono_ms(), next = now + ms;
    for (size_t i = 0; i < s->n;) {
        if (s->q[i].due <= now) {
            if (llm_submit(s->inner, s->q[i].c) != 0) return -1;
            s->q[i] = s->q[--s->n];
        } else {
            if (s->q[i].due < next) next = s->q[i].due;
            i++;
        }
    }
    int done = llm_poll(s->inner, 0);
    if (done == 0 && next > now) sleep_ms(next - now < ms ? next - now : ms);
    return done;
}

static size_t s_pending(llm_provider *p) {
    slow *s = (slow *)p;
    return s->n + llm_pending(s->inner);
}

static void s_cancel(llm_provider *p) {
    slow *s = (slow *)p;
    while (s->n) {
        llm_call *c = s->q[--s->n].c;
        c->status = LLM_ERR_CANCELLED;
        c->done(c);
    }
    s->inner->ops->cancel_all(s->inner);
}

static int s_prepare(llm_provider *p, llm_text_iter next, void *ctx) {
    slow *s = (slow *)p;
    return s->inner->ops->prepare_embeddings(s->inner, next, ctx);
}

static void s_destroy(llm_provider *p) {
    slow *s = (slow *)p;
    llm_provider_destroy(s->inner);
    free(s->q);
    free(s);
}

static const llm_provider_ops SLOW_OPS = {"slow", s_submit, s_poll, s_pending, s_cancel,
                                          s_prepare, s_destroy};

/* ------------------------------------------------------------------ harness */

typedef struct proc {
    const vocab *v;
    _Atomic long calls[LLM_TASK_COUNT];
    int slow; /* 0 = the plain offline analyzer */
} proc;

static llm_provider *make(void *ctx, const run_record *run, store *st, char *err, size_t len) {
    (void)run;
    (void)st;
    (void)err;
    (void)len;
    proc *p = ctx;
    llm_provider *inner = llm_local_new(p->v);
    if (!p->slow) return inner;
    slow *s = xcalloc(1, sizeof *s);
    s->base = *inner; /* models, dimension, batch size */
    s->base.ops = &SLOW_OPS;
    s->inner = inner;
    for (int t = 0; t < LLM_TASK_COUNT; t++) s->delay_ms[t] = 15;
    s->delay_ms[LLM_EMBED] = 250;
    s->calls = p->calls;
    return &s->base;
}

static int pg_or_skip(const char *name) {
    const char *pg = getenv("FEEDLINE_TEST_PG");
    if (pg && pg[0]) return 1;
    fprintf(stdout, "    SKIP %s: FEEDLINE_TEST_PG is not set (workers share a PostgreSQL "
                    "database; runs in the PostgreSQL pass of make test)\n", name);
    test_checked();
    return 0;
}

static vocab *load_vocab(void) {
    char *vp = fx_path("data/theme_vocabulary.json"), err[256];
    vocab *v = vocab_load(vp, err, sizeof err);
    free(vp);
    return v;
}

static char *sample_db(void) {
    char *db = fx_db_url();
    store *st = fx_store_open(db);
    char *sample = fx_path("data/sample_conversations.jsonl"), err[256];
    import_stats s = {0};
    if (import_file(st, sample, &s, NULL, NULL, err, sizeof err)) fprintf(stdout, "    %s\n", err);
    store_close(st);
    free(sample);
    return db;
}

static run_env env_for(const char *db, proc *p, const char *owner, atomic_int *stop) {
    run_env e = {0};
    e.db_url = db;
    e.vocab = p->v;
    e.make_provider = make;
    e.provider_ctx = p;
    e.owner = owner;
    e.stop_flag = stop;
    e.lease_seconds = 5;
    e.claim_batch = 8;
    return e;
}

static run_params params(const char *llm) {
    run_params p = {0};
    p.concurrency = 4;
    p.auto_create_stories = 1;
    p.llm = llm;
    return p;
}

typedef struct worker_thread {
    pthread_t t;
    run_env env;
    worker_options opt;
    int rc;
} worker_thread;

static void *worker_main(void *arg) {
    worker_thread *w = arg;
    char err[256];
    w->rc = pipeline_worker(&w->env, &w->opt, err, sizeof err);
    return NULL;
}

/* SHA-256 over every embedding of the run, in conversation order. */
static void embeddings_digest(const char *url, int64_t run, char out[65], int64_t *count) {
    char err[256];
    out[0] = 0;
    *count = 0;
    db_t *db = db_open(url, err, sizeof err);
    if (!db) return;
    db_stmt *st = db_prepare(db, "SELECT conversation_id, dim, vector FROM embeddings"
                                 " WHERE run_id = ? ORDER BY conversation_id");
    sha256_ctx c;
    sha256_init(&c);
    if (st) {
        db_bind_int(st, 1, run);
        while (db_step(st) == DB_ROW) {
            const char *id = db_col_text(st, 0);
            int64_t dim = db_col_int(st, 1);
            size_t len = 0;
            const void *blob = db_col_blob(st, 2, &len);
            sha256_update(&c, id, strlen(id) + 1);
            sha256_update(&c, &dim, sizeof dim);
            sha256_update(&c, blob, len);
            (*count)++;
        }
        db_finalize(st);
    }
    db_close(db);
    uint8_t d[32];
    sha256_final(&c, d);
    for (int i = 0; i < 32; i++) snprintf(out + 2 * i, 3, "%02x", d[i]);
}

static run_record get_run(const char *url, int64_t id) {
    store *st = fx_store_open(url);
    run_record r;
    memset(&r, 0, sizeof r);
    store_run_get(st, id, &r);
    store_close(st);
    return r;
}

/* ------------------------------------------------------------------ cases */

TEST(offline_embeddings_are_identical_whoever_computes_them) {
    if (!pg_or_skip(__func__)) return;
    vocab *v = load_vocab();
    REQUIRE(v != NULL);

    /* Reference: one process, the plain offline analyzer. */
    char *ref_db = sample_db();
    proc ref = {.v = v};
    atomic_int ref_stop = 0;
    run_env re = env_for(ref_db, &ref, "ref", &ref_stop);
    run_params p = params("local");
    int64_t ref_id = 0;
    char err[256];
    CHECK_INT(pipeline_start(&re, &p, &ref_id, err, sizeof err), 0);

    /* A driver thread and two workers, each with its own (slow) analyzer. */
    char *db = sample_db();
    enum { NW = 2 };
    proc pd = {.v = v, .slow = 1}, pw[NW] = {{.v = v, .slow = 1}, {.v = v, .slow = 1}};
    atomic_int stop_driver = 0, stop_workers = 0;
    worker_thread w[NW];
    const char *owners[NW] = {"worker-a", "worker-b"};
    for (int i = 0; i < NW; i++) {
        memset(&w[i], 0, sizeof w[i]);
        w[i].env = env_for(db, &pw[i], owners[i], &stop_workers);
        w[i].opt.idle_ms = 50;
        REQUIRE(pthread_create(&w[i].t, NULL, worker_main, &w[i]) == 0);
    }
    run_env de = env_for(db, &pd, "driver", &stop_driver);
    int64_t id = 0;
    CHECK_INT(pipeline_start(&de, &p, &id, err, sizeof err), 0);
    atomic_store(&stop_workers, 1);
    for (int i = 0; i < NW; i++) {
        pthread_join(w[i].t, NULL);
        CHECK_INT(w[i].rc, 0);
    }

    run_record a = get_run(ref_db, ref_id), b = get_run(db, id);
    CHECK_STR(b.status, "completed");
#define SAME(n) CHECK_INT(b.n, a.n);
    RUN_COUNTERS(SAME)
#undef SAME
    char da[65], dbh[65];
    int64_t na = 0, nb = 0;
    embeddings_digest(ref_db, ref_id, da, &na);
    embeddings_digest(db, id, dbh, &nb);
    CHECK(na > 100);
    CHECK_INT(nb, na);
    CHECK_STR(dbh, da);
    /* The embedding phase really was shared. */
    long embed_driver = atomic_load(&pd.calls[LLM_EMBED]);
    long embed_a = atomic_load(&pw[0].calls[LLM_EMBED]), embed_b = atomic_load(&pw[1].calls[LLM_EMBED]);
    fprintf(stdout, "    embedding calls: driver %ld, workers %ld and %ld; classifications: "
                    "driver %ld, workers %ld and %ld\n",
            embed_driver, embed_a, embed_b, atomic_load(&pd.calls[LLM_CLASSIFY]),
            atomic_load(&pw[0].calls[LLM_CLASSIFY]), atomic_load(&pw[1].calls[LLM_CLASSIFY]));
    /* Shared: more than one process computed embeddings (which ones, and how many, is
     * up to the claims' timing: a worker busy with its last classifications may find
     * the embedding work already claimed by the other two). */
    CHECK((embed_a > 0) + (embed_b > 0) + (embed_driver > 0) >= 2);
    /* Story titles are the driver's alone. */
    CHECK_INT(atomic_load(&pw[0].calls[LLM_STORY]) + atomic_load(&pw[1].calls[LLM_STORY]), 0);
    run_record_free(&a);
    run_record_free(&b);
    free(db);
    free(ref_db);
    vocab_free(v);
}

/* Creates a running run directly (no driver), in classification with seeded work. */
static int64_t bare_run(store *st, const char *llm, int64_t heartbeat) {
    run_params p = params(llm);
    int64_t id = 0, n = 0;
    if (store_run_create(st, &p, wall_unix(), &id, NULL) != STORE_OK) return 0;
    if (store_work_seed_conversations(st, id, INT64_MIN, wall_unix(), 0, &n) != STORE_OK) return 0;
    if (store_run_set_phase(st, id, PHASE_CLASSIFICATION) != STORE_OK) return 0;
    if (store_run_heartbeat(st, id, "gone", heartbeat) != STORE_OK) return 0;
    return id;
}

static int64_t done_items(const char *url, int64_t run) {
    store *st = fx_store_open(url);
    work_counts c;
    store_work_counts(st, run, PHASE_CLASSIFICATION, &c);
    store_close(st);
    return c.done;
}

TEST(workers_stay_out_of_runs_nobody_drives_or_that_use_another_provider) {
    if (!pg_or_skip(__func__)) return;
    vocab *v = load_vocab();
    REQUIRE(v != NULL);
    char *db = sample_db();
    store *st = fx_store_open(db);
    /* A run whose driver died long ago: joining it would finish phases nobody advances. */
    int64_t id = bare_run(st, "local", wall_unix() - 10 * RUN_STALE_SECONDS);
    REQUIRE(id > 0);
    proc pw = {.v = v};
    atomic_int stop = 0;
    worker_thread w;
    memset(&w, 0, sizeof w);
    w.env = env_for(db, &pw, "worker", &stop);
    w.opt.idle_ms = 20;
    REQUIRE(pthread_create(&w.t, NULL, worker_main, &w) == 0);
    sleep_ms(500);
    CHECK_INT(done_items(db, id), 0);
    /* Its driver is back (heartbeat), but the worker only serves openai runs. */
    atomic_store(&stop, 1);
    pthread_join(w.t, NULL);
    CHECK_INT(w.rc, 0);
    CHECK_INT(store_run_heartbeat(st, id, "driver", wall_unix()), STORE_OK);
    atomic_store(&stop, 0);
    w.opt.llm = "openai";
    REQUIRE(pthread_create(&w.t, NULL, worker_main, &w) == 0);
    sleep_ms(500);
    CHECK_INT(done_items(db, id), 0);
    atomic_store(&stop, 1);
    pthread_join(w.t, NULL);
    /* A local worker helps (the heartbeat is fresh): every conversation classified. */
    atomic_store(&stop, 0);
    w.opt.llm = "local";
    REQUIRE(pthread_create(&w.t, NULL, worker_main, &w) == 0);
    int64_t deadline = mono_ms() + 30000;
    work_counts c = {0};
    while (mono_ms() < deadline) {
        store_work_counts(st, id, PHASE_CLASSIFICATION, &c);
        if (c.pending == 0 && c.claimed == 0) break;
        store_run_heartbeat(st, id, "driver", wall_unix());
        sleep_ms(50);
    }
    atomic_store(&stop, 1);
    pthread_join(w.t, NULL);
    CHECK(c.done > 300);
    CHECK_INT(c.pending + c.claimed, 0);
    /* It never advanced or finished the run: that is the driver's job. */
    run_record r = get_run(db, id);
    CHECK_STR(r.status, "running");
    CHECK_STR(r.current_phase, "classification");
    run_record_free(&r);
    /* With the run over and once set, the worker returns by itself. */
    CHECK_INT(store_run_finish(st, id, "completed", NULL, wall_unix()), STORE_OK);
    atomic_store(&stop, 0);
    w.opt.once = 1;
    REQUIRE(pthread_create(&w.t, NULL, worker_main, &w) == 0);
    pthread_join(w.t, NULL);
    CHECK_INT(w.rc, 0);
    store_close(st);
    free(db);
    vocab_free(v);
}
