/* The OpenAI-compatible provider ("openai"): chat completions in JSON mode and
 * embeddings, driven natively on one libcurl multi loop (net/httpc.h) by the thread
 * that polls the provider. No thread per request, no second event loop.
 *
 * This file owns the provider mechanics: building requests, the send queue and the
 * retry timers, reading answers (usage, the JSON content, the phase's validate
 * callback and the one repair retry), error policy, cancellation and completion.
 * When a request may go on the wire is decided by ratelimit.c; the messages come from
 * prompts.c; the response cache is cache.c.
 *
 * Error policy per HTTP attempt:
 *  - 2xx: the answer is read; a malformed envelope is a transient failure, an answer
 *    that is not a JSON object or fails validation gets one repair retry (the bad
 *    answer and what was wrong are sent back), then the call fails LLM_ERR_INVALID;
 *  - 429: pause + rate cut (ratelimit.c), then the same request again, at most
 *    MAX_RATE_LIMITED times; "insufficient_quota" is fatal (no retry can succeed);
 *  - 5xx, 408, 409, timeouts, transport errors: retried with exponential backoff and
 *    full jitter, at most max_attempts attempts in all;
 *  - 401, 403, 404: fatal for the provider (wrong key, no access, wrong model or
 *    URL): poll() returns -1 and every pending call completes LLM_ERR_CANCELLED, so
 *    the run fails once with the reason instead of failing every conversation;
 *  - other 4xx: the call fails (e.g. one conversation over the context length),
 *    unless the endpoint has rejected every request so far (REJECTED_FATAL of them):
 *    then the requests themselves are wrong for it, which is fatal too.
 *
 * Batch mode (config batch, batch.c): the requests of the per-conversation tasks are
 * built exactly as above, but instead of the send queue they go to the Batch API layer,
 * which answers them through batch_result() with the response body of their line; the
 * answer is then read by the same code as an HTTP answer (usage, validation, cache). A
 * repair retry, or the retry of unusable embeddings, is a direct request.
 *
 * Calls: a chat call is one request; an embedding call is split into requests of at
 * most embed_max_inputs texts and embed_max_tokens estimated tokens, after the texts
 * already in the cache are taken out (the embedding cache is per text, so a re-run
 * that batches differently still hits it). */
#include <float.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "llm/llm.h"
#include "llm/openai_internal.h"
#include "llm/prompts.h"
#include "llm/ratelimit.h"
#include "net/net.h"
#include "text/signature.h"
#include "util/base64.h"
#include "util/buf.h"
#include "util/hash.h"
#include "util/jsonx.h"
#include "util/log.h"
#include "util/mem.h"
#include "util/timeutil.h"
#include "util/utf8.h"

#define DEFAULT_BASE_URL "https://api.openai.com/v1"
#define DEFAULT_CHAT_MODEL "gpt-4o-mini"
#define DEFAULT_EMBED_MODEL "text-embedding-3-small"
#define DEFAULT_TIMEOUT_MS 60000
#define DEFAULT_MAX_ATTEMPTS 5
#define DEFAULT_BACKOFF_MS 500
#define BACKOFF_CAP_MS 30000
#define MAX_RATE_LIMITED 8
/* OpenAI's embeddings endpoint takes at most 2048 inputs and 300 000 tokens per
 * request, 8191 tokens per input. Tokens are estimated at 3 bytes each here (English
 * averages ~4), so the estimates err on the safe side. */
#define EMBED_MAX_INPUTS 2048
#define EMBED_MAX_TOKENS 200000
#define EMBED_INPUT_MAX_BYTES 24000
#define CONNECT_TIMEOUT_MS 10000
/* 2048 vectors of 3072 floats as JSON text stay below this. */
#define MAX_RESPONSE_BYTES ((size_t)192 << 20)
/* A chat answer is a few thousand tokens at most: a larger one is hostile or broken. */
#define MAX_CHAT_RESPONSE_BYTES ((size_t)16 << 20)
/* Bytes of a rejected answer echoed back in the repair retry. */
#define REPAIR_ECHO_BYTES 4000
/* An endpoint that has answered nothing but this many 4xx (400, 422, ...) in a row
 * rejects the requests themselves (an unsupported parameter, a model that does not
 * do JSON mode): the run fails once instead of failing every conversation. */
#define REJECTED_FATAL 10

typedef struct oa_provider oa_provider;
typedef struct oa_call oa_call;

/* One HTTP request (a chat call, or one batch of an embedding call). */
typedef struct oa_job {
    oa_call *owner;
    httpc_request *req;
    json_t *messages;   /* chat: the conversation so far, for the repair retry */
    size_t first, n;    /* embeddings: owner->todo[first .. first + n) */
    int64_t est_tokens; /* charged to the tokens/min bucket */
    int64_t ready_at_ms;
    uint64_t seq;       /* send sequence (ratelimit bookkeeping) */
    int transient;      /* 5xx/timeout/transport failures so far */
    int rate_limited;   /* 429s so far */
    int repaired;       /* the repair retry was used */
    struct oa_job *next;
} oa_job;

/* The provider's state of one accepted call (call->priv). */
struct oa_call {
    llm_call *call;
    oa_provider *p;
    char key[65];          /* chat: cache key of the first request's body */
    size_t jobs_left;
    int failed;            /* a job failed: call->status/error hold the first reason */
    size_t *todo;          /* embeddings: indices of the texts sent over HTTP */
    size_t ntodo;
    char (*tkeys)[65];     /* embeddings: cache key per text */
    float **vecs;          /* embeddings: vector per text until assembled */
    int dim;
    oa_call *prev, *next;  /* live calls */
    oa_call *done_next;    /* finished, done() not yet called */
};

/* The cache-key hash state after a task's shared leading bytes (chat_key). */
typedef struct key_prefix {
    sha256_ctx h;
    char *bytes;
    size_t len;
} key_prefix;

struct oa_provider {
    llm_provider base; /* first: the ops receive &base */
    char *body_head;   /* a chat body's start: {"model":"...","messages":[ */
    key_prefix key_prefix[LLM_TASK_COUNT];
    char *chat_url, *embed_url;
    char *auth_name, *auth_value;
    int embed_dimensions, timeout_ms, max_attempts, backoff_base_ms, embed_max_inputs;
    int64_t embed_max_tokens;
    const char *embed_encoding; /* "base64" or "float" (static strings) */
    httpc *http;
    oa_cache *cache;
    prompts *prompts;
    ratelimit rl;
    rng_t rng;
    oa_job *q_head, *q_tail;   /* ready to send, in order */
    oa_job **delayed;          /* waiting for their retry time */
    size_t ndelayed, delayed_cap;
    oa_call *live;
    size_t nlive;
    oa_call *done_head, *done_tail;
    store *budget_st;     /* the shared requests/min schedule's store, or NULL */
    char *budget_key;
    int budget_failing;   /* claims fail: warned once until one succeeds */
    int fatal;
    int answered;         /* a 2xx was ever received */
    int rejected_in_a_row; /* other 4xx since the last 2xx */
    oa_batcher *batcher;  /* batch mode, else NULL */
};

static oa_provider *as_oa(llm_provider *p) { return (oa_provider *)p; }

/* ------------------------------------------------------------ completion */

static void stat_add(_Atomic int64_t *c, int64_t n) { atomic_fetch_add(c, n); }

static void call_error(llm_call *c, enum llm_status st, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void call_error(llm_call *c, enum llm_status st, const char *fmt, ...) {
    c->status = st;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->error, sizeof c->error, fmt, ap);
    va_end(ap);
}

static void normalize(float *v, int dim) {
    double ss = 0;
    for (int i = 0; i < dim; i++) ss += (double)v[i] * v[i];
    if (ss <= 0) return;
    float inv = (float)(1.0 / sqrt(ss));
    for (int i = 0; i < dim; i++) v[i] *= inv;
}

/* Builds call->vectors from the per-text vectors. */
static void assemble_vectors(oa_call *oc) {
    llm_call *c = oc->call;
    for (size_t i = 0; i < c->ntexts; i++)
        if (!oc->vecs[i]) {
            call_error(c, LLM_ERR_INVALID, "no embedding for input %zu", i);
            return;
        }
    c->dim = oc->dim;
    c->vectors = xmalloc(c->ntexts * (size_t)oc->dim * sizeof(float));
    for (size_t i = 0; i < c->ntexts; i++)
        memcpy(c->vectors + i * (size_t)oc->dim, oc->vecs[i], (size_t)oc->dim * sizeof(float));
}

/* The call is finished: queue it for done() (run from poll, never from submit). */
static void finish_call(oa_provider *p, oa_call *oc) {
    llm_call *c = oc->call;
    if (c->status == LLM_OK && c->task == LLM_EMBED) assemble_vectors(oc);
    if (c->status != LLM_OK) {
        if (c->answer) json_decref(c->answer);
        c->answer = NULL;
    }
    oc->done_next = NULL;
    if (p->done_tail) p->done_tail->done_next = oc;
    else p->done_head = oc;
    p->done_tail = oc;
}

static void free_oa_call(oa_call *oc) {
    if (oc->vecs)
        for (size_t i = 0; i < oc->call->ntexts; i++) free(oc->vecs[i]);
    free(oc->vecs);
    free(oc->todo);
    free(oc->tkeys);
    free(oc);
}

static void unlink_live(oa_provider *p, oa_call *oc) {
    if (oc->prev) oc->prev->next = oc->next;
    else p->live = oc->next;
    if (oc->next) oc->next->prev = oc->prev;
    p->nlive--;
}

/* Runs done() for up to max finished calls (they may submit new calls). */
static int deliver(oa_provider *p, size_t max) {
    int n = 0;
    while (p->done_head && (size_t)n < max) {
        oa_call *oc = p->done_head;
        p->done_head = oc->done_next;
        if (!p->done_head) p->done_tail = NULL;
        unlink_live(p, oc);
        llm_call *c = oc->call;
        c->priv = NULL;
        free_oa_call(oc);
        if (c->status != LLM_OK) stat_add(&p->base.stats.failures, 1);
        n++;
        c->done(c);
    }
    return n;
}

static void free_job(oa_job *j) {
    httpc_request_free(j->req);
    if (j->messages) json_decref(j->messages);
    free(j);
}

/* A job is over; the call finishes with its last job. */
static void job_over(oa_provider *p, oa_job *j) {
    oa_call *oc = j->owner;
    free_job(j);
    if (--oc->jobs_left == 0) finish_call(p, oc);
}

static void job_fail(oa_provider *p, oa_job *j, enum llm_status st, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void job_fail(oa_provider *p, oa_job *j, enum llm_status st, const char *fmt, ...) {
    oa_call *oc = j->owner;
    if (!oc->failed) { /* the first reason is the one reported */
        oc->failed = 1;
        oc->call->status = st;
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(oc->call->error, sizeof oc->call->error, fmt, ap);
        va_end(ap);
    }
    job_over(p, j);
}

/* ------------------------------------------------------------ queue */

static void enqueue(oa_provider *p, oa_job *j) {
    j->next = NULL;
    if (p->q_tail) p->q_tail->next = j;
    else p->q_head = j;
    p->q_tail = j;
}

/* Retries go before new work: they are older. */
static void enqueue_front(oa_provider *p, oa_job *j) {
    j->next = p->q_head;
    p->q_head = j;
    if (!p->q_tail) p->q_tail = j;
}

static oa_job *dequeue(oa_provider *p) {
    oa_job *j = p->q_head;
    if (!j) return NULL;
    p->q_head = j->next;
    if (!p->q_head) p->q_tail = NULL;
    j->next = NULL;
    return j;
}

static void delay_job(oa_provider *p, oa_job *j, int64_t ready_at_ms) {
    j->ready_at_ms = ready_at_ms;
    XGROW(p->delayed, p->delayed_cap, p->ndelayed + 1);
    p->delayed[p->ndelayed++] = j;
}

/* Moves due retries to the front of the queue; returns ms until the next one is due
 * (-1 when none waits). */
static int64_t promote_delayed(oa_provider *p, int64_t now) {
    int64_t next = -1;
    for (size_t i = 0; i < p->ndelayed;) {
        oa_job *j = p->delayed[i];
        if (j->ready_at_ms <= now) {
            p->delayed[i] = p->delayed[--p->ndelayed];
            enqueue_front(p, j);
        } else {
            int64_t d = j->ready_at_ms - now;
            if (next < 0 || d < next) next = d;
            i++;
        }
    }
    return next;
}

/* ------------------------------------------------------------ requests */

static httpc_request *new_request(oa_provider *p, const char *url) {
    httpc_request *r = httpc_request_new("POST", url);
    httpc_request_header(r, "Content-Type", "application/json");
    httpc_request_header(r, "Accept", "application/json");
    if (p->auth_name) httpc_request_header(r, p->auth_name, p->auth_value);
    r->timeout_ms = p->timeout_ms;
    r->connect_timeout_ms = CONNECT_TIMEOUT_MS < p->timeout_ms ? CONNECT_TIMEOUT_MS : p->timeout_ms;
    return r;
}

static oa_job *new_job(oa_call *oc) {
    oa_job *j = xcalloc(1, sizeof *j);
    j->owner = oc;
    oc->jobs_left++;
    return j;
}

/* Batch mode sends the per-conversation tasks through the Batch API; the others
 * (canonicalisation, which waits on them, and the story phase's few calls) go direct. */
static int batched_task(const oa_provider *p, enum llm_task t) {
    return p->batcher && (t == LLM_CLASSIFY || t == LLM_REFINE || t == LLM_FACETS ||
                          t == LLM_THEME || t == LLM_EMBED);
}

/* The chat request body; the same call always gives the same bytes (cache key):
 * those json_dumps(JSON_COMPACT) gives for {"model", "messages", "response_format",
 * "temperature", "max_tokens"}, assembled from the pieces' JSON, the task's system
 * message's made once (prompts_message_json) instead of encoding its ~18 KB again
 * for every request. *static_len: how many leading bytes every request of the task
 * shares (through its system message), 0 when not known. */
static char *chat_body(const oa_provider *p, const llm_call *c, const json_t *messages,
                       size_t *static_len) {
    buf_t b = BUF_INIT;
    buf_puts(&b, p->body_head);
    *static_len = 0;
    for (size_t i = 0; i < json_array_size(messages); i++) {
        const json_t *m = json_array_get(messages, i);
        const char *shared = prompts_message_json(p->prompts, m);
        if (i > 0) buf_putc(&b, ',');
        if (shared) {
            buf_puts(&b, shared);
            if (i == 0) *static_len = b.len;
        } else {
            char *one = jx_dump(m);
            buf_puts(&b, one);
            free(one);
        }
    }
    buf_printf(&b, "],\"response_format\":{\"type\":\"json_object\"},\"temperature\":0,"
                   "\"max_tokens\":%d}",
               prompts_max_tokens(c));
    return buf_detach(&b);
}

/* A chat body's cache key (oa_cache_key), hashing only what follows the task's shared
 * leading bytes: the hash state after them is kept per task, and used while a body
 * starts with the same bytes. */
static void chat_key(oa_provider *p, enum llm_task t, const char *body, size_t len,
                     size_t static_len, char out[65]) {
    if ((unsigned)t >= LLM_TASK_COUNT || static_len == 0 || static_len > len) {
        oa_cache_key(p->base.chat_model, body, len, out);
        return;
    }
    key_prefix *kp = &p->key_prefix[t];
    if (!kp->bytes || kp->len != static_len || memcmp(kp->bytes, body, static_len) != 0) {
        free(kp->bytes);
        kp->bytes = xstrndup(body, static_len);
        kp->len = static_len;
        oa_cache_key_begin(&kp->h, p->base.chat_model);
        sha256_update(&kp->h, body, static_len);
    }
    sha256_ctx h = kp->h;
    oa_cache_key_end(&h, body + static_len, len - static_len, out);
}

static void set_chat_body(oa_job *j, const char *body) {
    size_t len = strlen(body);
    httpc_request_body(j->req, body, len);
    j->est_tokens = (int64_t)len / 4 + prompts_max_tokens(j->owner->call);
}

/* a when it is an object that passes the phase's validation, else NULL (a released). */
static json_t *valid_answer(const llm_call *c, json_t *a) {
    char why[200] = "";
    if (!json_is_object(a) || (c->validate && c->validate(c->args, a, why, sizeof why) != 0)) {
        json_decref(a);
        return NULL;
    }
    return a;
}

/* A cached answer text that parses and passes the phase's validation, or NULL. */
static json_t *usable_answer(const llm_call *c, char *text) {
    if (!text) return NULL;
    json_t *a = json_loads(text, 0, NULL);
    free(text);
    return valid_answer(c, a);
}

/* Canonicalisation requests carry the signatures known at the time (and whichever
 * proposals happened to be batched together), which change as runs register new
 * ones, so an identical re-run would not send identical bytes. Its decisions are
 * therefore also remembered per proposal (model, proposal, area, component): a
 * request whose every proposal has a remembered decision that still stands (it kept
 * the proposal, or chose a signature still among the existing ones offered now) is
 * answered from them. The same proposal then gets the same signature run after run. */
static void canon_memo_key(const oa_provider *p, const json_t *args, const json_t *proposal,
                           char out[65]) {
    json_t *k = json_pack("{s:s, s:o, s:o, s:o}", "task", "canonicalize", "proposed",
                          jx_string_or_null(jx_str(proposal, "proposed")), "product_area",
                          jx_string_or_null(jx_str(args, "product_area")), "component",
                          jx_string_or_null(jx_str(proposal, "component")));
    char *text = jx_dump(k);
    oa_cache_key(p->base.chat_model, text, strlen(text), out);
    free(text);
    json_decref(k);
}

static int canon_decision_stands(const json_t *args, const json_t *proposal,
                                 const json_t *decision) {
    const char *sig = jx_str(decision, "signature");
    if (!sig || !*sig) return 0;
    if (signature_same(sig, jx_str(proposal, "proposed"))) return 1;
    size_t i;
    json_t *e;
    json_array_foreach(jx_arr(args, "existing"), i, e)
        if (signature_same(sig, jx_str(e, "signature"))) return 1;
    return 0;
}

/* The answer assembled from remembered decisions, or NULL when one is missing. */
static json_t *canon_from_memo(oa_provider *p, const llm_call *c) {
    const json_t *proposals = jx_arr(c->args, "proposals");
    if (!json_array_size(proposals)) return NULL;
    json_t *decisions = json_array();
    size_t i;
    json_t *pr;
    json_array_foreach(proposals, i, pr) {
        char memo[65];
        canon_memo_key(p, c->args, pr, memo);
        char *text = oa_cache_get(p->cache, memo);
        json_t *d = text ? json_loads(text, 0, NULL) : NULL;
        free(text);
        if (!json_is_object(d) || !canon_decision_stands(c->args, pr, d)) {
            json_decref(d);
            json_decref(decisions);
            return NULL;
        }
        json_object_set_new(d, "proposed", json_string(jx_str(pr, "proposed")));
        json_array_append_new(decisions, d);
    }
    return json_pack("{s:o}", "decisions", decisions);
}

static void canon_remember(oa_provider *p, const llm_call *c, const json_t *answer) {
    size_t i;
    json_t *pr;
    json_array_foreach(jx_arr(c->args, "proposals"), i, pr) {
        const json_t *d = llm_canon_decision(answer, c->args, i);
        if (!d) continue;
        char memo[65], *text = jx_dump(d);
        canon_memo_key(p, c->args, pr, memo);
        oa_cache_put(p->cache, memo, p->base.chat_model, "canonicalize-memo", text, 0, 0);
        free(text);
    }
}

/* Answers a chat call from the cache; 1 when it did. */
static int chat_from_cache(oa_provider *p, oa_call *oc) {
    llm_call *c = oc->call;
    json_t *a = usable_answer(c, oa_cache_get(p->cache, oc->key));
    if (!a && c->task == LLM_CANONICALIZE) a = valid_answer(c, canon_from_memo(p, c));
    if (!a) return 0;
    c->answer = a;
    c->from_cache = 1;
    stat_add(&p->base.stats.cache_hits, 1);
    return 1;
}

static void start_chat(oa_provider *p, oa_call *oc) {
    llm_call *c = oc->call;
    json_t *messages = prompts_messages(p->prompts, c);
    if (!messages) {
        call_error(c, LLM_ERR_INPUT, "unknown task %d", (int)c->task);
        finish_call(p, oc);
        return;
    }
    size_t static_len;
    char *body = chat_body(p, c, messages, &static_len);
    chat_key(p, c->task, body, strlen(body), static_len, oc->key);
    if (chat_from_cache(p, oc)) {
        free(body);
        json_decref(messages);
        finish_call(p, oc);
        return;
    }
    oa_job *j = new_job(oc);
    j->messages = messages;
    j->req = new_request(p, p->chat_url);
    j->req->max_response_bytes = MAX_CHAT_RESPONSE_BYTES;
    set_chat_body(j, body);
    if (batched_task(p, c->task)) oa_batcher_add(p->batcher, 0, oc->key, body, strlen(body), 1, j);
    else enqueue(p, j);
    free(body);
}

/* ------------------------------------------------------------ embeddings */

static size_t embed_input_len(const char *text) {
    return utf8_cut(text, strlen(text), EMBED_INPUT_MAX_BYTES);
}

static void embed_text_key(const oa_provider *p, const char *text, char out[65]) {
    char *head = xasprintf("embeddings dimensions=%d\n", p->embed_dimensions);
    size_t hl = strlen(head), tl = embed_input_len(text);
    char *buf = xmalloc(hl + tl + 1);
    memcpy(buf, head, hl);
    memcpy(buf + hl, text, tl);
    oa_cache_key(p->base.embed_model, buf, hl + tl, out);
    free(head);
    free(buf);
}

static int embed_from_cache(oa_provider *p, oa_call *oc, size_t i) {
    char *text = oa_cache_get(p->cache, oc->tkeys[i]);
    if (!text) return 0;
    int dim = 0;
    float *v = oa_vec_decode(text, &dim);
    free(text);
    if (!v || (oc->dim && dim != oc->dim)) {
        free(v);
        return 0;
    }
    oc->dim = dim;
    oc->vecs[i] = v;
    return 1;
}

static void add_embed_job(oa_provider *p, oa_call *oc, size_t first, size_t n, int64_t tokens) {
    llm_call *c = oc->call;
    json_t *input = json_array();
    for (size_t k = 0; k < n; k++) {
        const char *t = c->texts[oc->todo[first + k]];
        char *cut = xstrndup(t, embed_input_len(t));
        json_array_append_new(input, jx_string(cut));
        free(cut);
    }
    json_t *b = json_object();
    json_object_set_new(b, "model", json_string(p->base.embed_model));
    json_object_set_new(b, "input", input);
    if (p->embed_dimensions > 0) json_object_set_new(b, "dimensions", json_integer(p->embed_dimensions));
    json_object_set_new(b, "encoding_format", json_string(p->embed_encoding));
    char *body = json_dumps(b, JSON_COMPACT);
    json_decref(b);
    oa_job *j = new_job(oc);
    j->first = first;
    j->n = n;
    j->est_tokens = tokens;
    j->req = new_request(p, p->embed_url);
    httpc_request_body(j->req, body, strlen(body));
    if (batched_task(p, LLM_EMBED)) {
        char key[65];
        oa_cache_key(p->base.embed_model, body, strlen(body), key);
        oa_batcher_add(p->batcher, 1, key, body, strlen(body), (int)n, j);
    } else {
        enqueue(p, j);
    }
    free(body);
}

static void start_embed(oa_provider *p, oa_call *oc) {
    llm_call *c = oc->call;
    if (c->ntexts == 0 || !c->texts) {
        call_error(c, LLM_ERR_INPUT, "no texts to embed");
        finish_call(p, oc);
        return;
    }
    oc->vecs = xcalloc(c->ntexts, sizeof *oc->vecs);
    oc->tkeys = xcalloc(c->ntexts, sizeof *oc->tkeys);
    oc->todo = xcalloc(c->ntexts, sizeof *oc->todo);
    for (size_t i = 0; i < c->ntexts; i++) {
        if (!c->texts[i] || !c->texts[i][0]) {
            call_error(c, LLM_ERR_INPUT, "input %zu is empty", i);
            finish_call(p, oc);
            return;
        }
        embed_text_key(p, c->texts[i], oc->tkeys[i]);
        if (!embed_from_cache(p, oc, i)) oc->todo[oc->ntodo++] = i;
    }
    if (oc->ntodo == 0) {
        c->from_cache = 1;
        stat_add(&p->base.stats.cache_hits, 1);
        finish_call(p, oc);
        return;
    }
    /* Batches bounded by input count and estimated tokens (at least one input each). */
    size_t first = 0;
    int64_t tokens = 0;
    for (size_t k = 0; k < oc->ntodo; k++) {
        int64_t t = (int64_t)embed_input_len(c->texts[oc->todo[k]]) / 3 + 1;
        if (k > first && (k - first >= (size_t)p->embed_max_inputs || tokens + t > p->embed_max_tokens)) {
            add_embed_job(p, oc, first, k - first, tokens);
            first = k;
            tokens = 0;
        }
        tokens += t;
    }
    add_embed_job(p, oc, first, oc->ntodo - first, tokens);
}

/* ------------------------------------------------------------ answers */

/* The server's error message ("error": {"message": ...}) or the start of the body. */
static void api_error(const httpc_request *r, char *out, size_t len) {
    json_t *b = json_loadb(buf_cstr(&r->response), r->response.len, 0, NULL);
    const char *msg = jx_str(jx_obj(b, "error"), "message");
    if (!msg) msg = jx_str(b, "error");
    if (!msg) msg = jx_str(b, "message");
    if (msg) {
        snprintf(out, len, "%s", msg);
    } else {
        size_t n = utf8_cut(buf_cstr(&r->response), r->response.len, len > 1 ? len - 1 : 0);
        snprintf(out, len, "%.*s", (int)n, buf_cstr(&r->response));
    }
    for (char *c = out; *c; c++)
        if (*c == '\n' || *c == '\r' || *c == '\t') *c = ' ';
    json_decref(b);
}

static const char *api_error_code(const httpc_request *r, char *buf, size_t len) {
    json_t *b = json_loadb(buf_cstr(&r->response), r->response.len, 0, NULL);
    const char *code = jx_str(jx_obj(b, "error"), "code");
    if (!code) code = jx_str(jx_obj(b, "error"), "type");
    snprintf(buf, len, "%s", code ? code : "");
    json_decref(b);
    return buf;
}

static void fatal(oa_provider *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void fatal(oa_provider *p, const char *fmt, ...) {
    if (p->fatal) return;
    p->fatal = 1;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->base.error, sizeof p->base.error, fmt, ap);
    va_end(ap);
    log_error("LLM provider: %s", p->base.error);
}

/* 5xx, timeout, transport failure: again after a full-jitter backoff, or give up. */
static void transient(oa_provider *p, oa_job *j, enum llm_status st, const char *why) {
    j->transient++;
    if (j->transient >= p->max_attempts) {
        job_fail(p, j, st, "gave up after %d attempts: %s", j->transient, why);
        return;
    }
    stat_add(&p->base.stats.retries, 1);
    int64_t d = backoff_full_jitter_ms(j->transient - 1, p->backoff_base_ms, BACKOFF_CAP_MS, &p->rng);
    delay_job(p, j, mono_ms() + d);
}

static void add_usage(oa_provider *p, oa_job *j, const json_t *env, int direct) {
    llm_call *c = j->owner->call;
    json_t *u = jx_obj(env, "usage");
    int64_t pt = jx_int(u, "prompt_tokens", -1), ct = jx_int(u, "completion_tokens", 0);
    if (pt < 0) { /* not reported: estimate, so the cost is not silently zero */
        pt = (int64_t)j->req->body_len / 4;
        ct = 0;
    }
    if (ct < 0) ct = 0;
    /* The part of the prompt the endpoint's prefix cache served (OpenAI, vLLM with
     * usage details); absent means none. Never more than the prompt. */
    int64_t cached = jx_int(jx_obj(u, "prompt_tokens_details"), "cached_tokens", 0);
    if (cached < 0) cached = 0;
    if (cached > pt) cached = pt;
    c->prompt_tokens += pt;
    c->cached_tokens += cached;
    c->completion_tokens += ct;
    stat_add(&p->base.stats.prompt_tokens, pt);
    stat_add(&p->base.stats.cached_tokens, cached);
    stat_add(&p->base.stats.completion_tokens, ct);
    if (direct) rl_on_usage(&p->rl, j->est_tokens, pt + ct, mono_ms());
}

/* An unusable chat answer: one repair retry, then the call fails. */
static void chat_invalid(oa_provider *p, oa_job *j, const char *content, const char *why) {
    if (j->repaired || !j->messages) {
        job_fail(p, j, LLM_ERR_INVALID, "invalid answer after a repair retry: %s", why);
        return;
    }
    j->repaired = 1;
    stat_add(&p->base.stats.retries, 1);
    char *echo = xstrndup(content ? content : "", utf8_cut(content ? content : "",
                                                           content ? strlen(content) : 0,
                                                           REPAIR_ECHO_BYTES));
    json_array_append_new(j->messages, prompts_message("assistant", echo));
    free(echo);
    char *fix = prompts_repair(why);
    json_array_append_new(j->messages, prompts_message("user", fix));
    free(fix);
    size_t static_len;
    char *body = chat_body(p, j->owner->call, j->messages, &static_len);
    set_chat_body(j, body);
    free(body);
    j->transient = 0;
    enqueue_front(p, j);
}

static void chat_answer(oa_provider *p, oa_job *j, const json_t *env) {
    oa_call *oc = j->owner;
    llm_call *c = oc->call;
    json_t *choice = json_array_get(jx_arr(env, "choices"), 0);
    const char *content = jx_str(jx_obj(choice, "message"), "content");
    if (!content) {
        chat_invalid(p, j, NULL, "the reply had no message content");
        return;
    }
    const char *finish = jx_str(choice, "finish_reason");
    if (finish && !strcmp(finish, "length")) {
        chat_invalid(p, j, content, "the JSON object was cut off; keep it shorter");
        return;
    }
    json_error_t jerr;
    json_t *a = json_loads(content, 0, &jerr);
    if (!json_is_object(a)) {
        json_decref(a);
        chat_invalid(p, j, content, "it was not a JSON object");
        return;
    }
    char why[200] = "";
    if (c->validate && c->validate(c->args, a, why, sizeof why) != 0) {
        json_decref(a);
        chat_invalid(p, j, content, why[0] ? why : "a field had the wrong type or value");
        return;
    }
    char *text = jx_dump(a);
    oa_cache_put(p->cache, oc->key, p->base.chat_model, llm_task_name(c->task), text,
                 c->prompt_tokens, c->completion_tokens);
    if (c->task == LLM_CANONICALIZE) canon_remember(p, c, a);
    free(text);
    if (c->answer) json_decref(c->answer);
    c->answer = a;
    job_over(p, j);
}

/* One embedding of an answer, as asked (encoding_format) or not: a list of numbers, or
 * a string of base64 little-endian float32s. A new vector of *dim values (finite; *dim
 * is checked against it when nonzero), or NULL with why. */
static float *read_vector(const json_t *e, size_t i, int *dim, char *why, size_t len) {
    float *v = NULL;
    int d = 0;
    if (json_is_string(e)) {
        v = base64_to_floats(json_string_value(e), json_string_length(e), &d);
    } else if (json_is_array(e) && json_array_size(e) > 0 && json_array_size(e) <= INT_MAX) {
        d = (int)json_array_size(e);
        v = xmalloc((size_t)d * sizeof(float));
        for (int k = 0; k < d; k++) {
            json_t *x = json_array_get(e, (size_t)k);
            if (!json_is_number(x)) {
                d = -1;
                break;
            }
            double n = json_number_value(x);
            /* out of float's range, the conversion itself is undefined behaviour */
            v[k] = fabs(n) <= FLT_MAX ? (float)n : INFINITY;
        }
    }
    if (!v) {
        snprintf(why, len, "embedding %zu: not a list of numbers nor base64 floats", i);
        return NULL;
    }
    for (int k = 0; k < d; k++)
        if (!isfinite(v[k])) d = -1;
    if (d < 0) {
        free(v);
        snprintf(why, len, "embedding %zu: a value is not a finite float", i);
        return NULL;
    }
    if (*dim && d != *dim) {
        free(v);
        snprintf(why, len, "embedding %zu: %d dimensions where the others have %d", i, d, *dim);
        return NULL;
    }
    *dim = d;
    return v;
}

/* Reads data[] into the call's per-text vectors; 0, or -1 with why. */
static int read_vectors(oa_provider *p, oa_job *j, const json_t *env, char *why, size_t len) {
    oa_call *oc = j->owner;
    json_t *data = jx_arr(env, "data");
    if (json_array_size(data) != j->n) {
        snprintf(why, len, "%zu embeddings for %zu inputs", json_array_size(data), j->n);
        return -1;
    }
    float **got = xcalloc(j->n, sizeof *got);
    int dim = oc->dim, rc = 0;
    size_t i;
    json_t *item;
    json_array_foreach(data, i, item) {
        size_t idx = (size_t)jx_int(item, "index", (int64_t)i);
        if (idx >= j->n || got[idx]) {
            snprintf(why, len, "embedding %zu: bad index", i);
            rc = -1;
            break;
        }
        got[idx] = read_vector(json_object_get(item, "embedding"), i, &dim, why, len);
        if (!got[idx]) {
            rc = -1;
            break;
        }
        normalize(got[idx], dim);
    }
    for (size_t k = 0; k < j->n; k++) {
        if (rc == 0) {
            size_t t = oc->todo[j->first + k];
            char *enc = oa_vec_encode(got[k], dim);
            oa_cache_put(p->cache, oc->tkeys[t], p->base.embed_model, "embed", enc, 0, 0);
            free(enc);
            oc->vecs[t] = got[k];
        } else {
            free(got[k]);
        }
    }
    free(got);
    if (rc == 0) oc->dim = dim;
    return rc;
}

static void embed_answer(oa_provider *p, oa_job *j, const json_t *env) {
    char why[160];
    if (read_vectors(p, j, env, why, sizeof why) == 0) {
        if (!p->base.embed_dim) p->base.embed_dim = j->owner->dim;
        job_over(p, j);
    } else if (!j->repaired) { /* garbage once: the same request again */
        j->repaired = 1;
        stat_add(&p->base.stats.retries, 1);
        enqueue_front(p, j);
    } else {
        job_fail(p, j, LLM_ERR_INVALID, "invalid embeddings after a retry: %s", why);
    }
}

static void on_success(oa_provider *p, oa_job *j) {
    httpc_request *r = j->req;
    json_t *env = json_loadb(buf_cstr(&r->response), r->response.len, 0, NULL);
    if (!json_is_object(env)) {
        json_decref(env);
        transient(p, j, LLM_ERR_HTTP, "malformed response body (not a JSON object)");
        return;
    }
    add_usage(p, j, env, 1);
    if (j->owner->call->task == LLM_EMBED) embed_answer(p, j, env);
    else chat_answer(p, j, env);
    json_decref(env);
}

/* A batch line's outcome for one of its requests (batch.c): the line's response body
 * is read as the HTTP answer of the same request would be. */
static void batch_result(void *ctx, void *job, const json_t *body, int usage,
                         enum llm_status st, const char *error) {
    oa_provider *p = ctx;
    oa_job *j = job;
    llm_call *c = j->owner->call;
    if (!body) {
        job_fail(p, j, st, "%s", error ? error : "the batch request failed");
        return;
    }
    c->batched = 1;
    if (usage) { /* a line serving identical requests is billed once */
        c->attempts++;
        stat_add(&p->base.stats.requests, 1);
        add_usage(p, j, body, 0);
    }
    if (c->task == LLM_EMBED) embed_answer(p, j, body);
    else chat_answer(p, j, body);
}

static void batch_fatal(void *ctx, const char *why) { fatal(ctx, "%s", why); }

static void on_rate_limited(oa_provider *p, oa_job *j, int64_t now) {
    httpc_request *r = j->req;
    char code[64], msg[200];
    if (!strcmp(api_error_code(r, code, sizeof code), "insufficient_quota")) {
        api_error(r, msg, sizeof msg);
        fatal(p, "the endpoint refused the request: quota exceeded (HTTP 429): %s", msg);
        job_fail(p, j, LLM_ERR_CANCELLED, "%s", p->base.error);
        return;
    }
    int64_t after = -1;
    const char *ms = httpc_response_header(r, "retry-after-ms");
    if (ms) after = (int64_t)strtoll(ms, NULL, 10);
    if (after < 0) after = parse_retry_after_ms(httpc_response_header(r, "retry-after"), wall_unix());
    rl_on_429(&p->rl, after, j->seq, now);
    stat_add(&p->base.stats.rate_limited, 1);
    if (++j->rate_limited > MAX_RATE_LIMITED) {
        job_fail(p, j, LLM_ERR_HTTP, "rate limited (HTTP 429) %d times in a row", j->rate_limited);
        return;
    }
    stat_add(&p->base.stats.retries, 1);
    enqueue_front(p, j); /* the limiter's pause decides when it goes again */
}

static const char *req_header(const void *ctx, const char *name) {
    return httpc_response_header(ctx, name);
}

/* No complete answer: too large (final), timed out or the connection failed
 * (retried). */
static void on_transport_failure(oa_provider *p, oa_job *j) {
    httpc_request *r = j->req;
    char msg[200];
    if (r->too_large) {
        job_fail(p, j, LLM_ERR_HTTP, "%s", r->error);
    } else if (r->timed_out) {
        transient(p, j, LLM_ERR_TIMEOUT, "request timed out");
    } else {
        snprintf(msg, sizeof msg, "connection failed: %.170s", r->error);
        transient(p, j, LLM_ERR_HTTP, msg);
    }
}

/* An HTTP error status other than 429 (see the policy at the top). */
static void on_http_error(oa_provider *p, oa_job *j) {
    httpc_request *r = j->req;
    long st = r->status;
    char msg[200];
    api_error(r, msg, sizeof msg);
    if (st >= 500 || st == 408 || st == 409) {
        char why[260];
        snprintf(why, sizeof why, "HTTP %ld: %s", st, msg);
        transient(p, j, LLM_ERR_HTTP, why);
        return;
    }
    if (st == 401 || st == 403)
        fatal(p, "the endpoint refused the API key (HTTP %ld): %s", st, msg);
    else if (st == 404)
        fatal(p, "model or endpoint not found (HTTP 404 from %s): %s", r->url, msg);
    else if (!p->answered && ++p->rejected_in_a_row >= REJECTED_FATAL)
        fatal(p, "the endpoint rejected the first %d requests (HTTP %ld): %s", REJECTED_FATAL, st,
              msg);
    if (p->fatal) job_fail(p, j, LLM_ERR_CANCELLED, "%s", p->base.error);
    else job_fail(p, j, LLM_ERR_HTTP, "HTTP %ld: %s", st, msg);
}

static void on_http_done(httpc_request *r) {
    oa_job *j = r->user;
    oa_provider *p = j->owner->p;
    int64_t now = mono_ms();
    rl_on_done(&p->rl);
    stat_add(&p->base.stats.in_flight, -1);
    if (r->cancelled) {
        job_fail(p, j, LLM_ERR_CANCELLED, "cancelled");
        return;
    }
    rl_headers h;
    rl_parse_headers(&h, req_header, r);
    rl_on_headers(&p->rl, &h, j->seq, now);
    if (r->failed) {
        on_transport_failure(p, j);
    } else if (r->status >= 200 && r->status < 300) {
        p->answered = 1;
        p->rejected_in_a_row = 0;
        rl_on_success(&p->rl, now);
        on_success(p, j);
    } else if (r->status == 429) {
        on_rate_limited(p, j, now);
    } else {
        on_http_error(p, j);
    }
}

/* ------------------------------------------------------------ sending */

static void send_job(oa_provider *p, oa_job *j, int64_t now) {
    j->req->done = on_http_done;
    j->req->user = j;
    j->seq = rl_on_send(&p->rl, j->est_tokens, now);
    if (httpc_submit(p->http, j->req) != 0) {
        rl_on_done(&p->rl);
        transient(p, j, LLM_ERR_HTTP, "could not start the request");
        return;
    }
    j->owner->call->attempts++;
    stat_add(&p->base.stats.requests, 1);
    int64_t inf = atomic_fetch_add(&p->base.stats.in_flight, 1) + 1;
    int64_t max = atomic_load(&p->base.stats.max_in_flight);
    while (inf > max && !atomic_compare_exchange_weak(&p->base.stats.max_in_flight, &max, inf)) {}
}

/* While the database does not grant slots, nothing is sent (sending anyway could
 * exceed the limit the processes share); this is how long to wait before asking again. */
#define BUDGET_RETRY_MS 500

static int queued_jobs(const oa_provider *p, int max) {
    int n = 0;
    for (const oa_job *j = p->q_head; j && n < max; j = j->next) n++;
    return n;
}

/* Claims send slots from the shared schedule for the queued requests. Returns 0 when
 * granted, else ms to wait before trying again. */
static int64_t claim_slots(oa_provider *p) {
    int n = rl_grant_size(&p->rl, queued_jobs(p, RL_SHARED_BLOCK));
    /* Whole microseconds, rounded up: the spacing is never below the limit's. */
    int64_t interval_us = (int64_t)ceil(rl_shared_interval_ms(&p->rl) * 1000.0);
    int64_t first_in_us = 0;
    if (store_budget_claim(p->budget_st, p->budget_key, n, interval_us, &first_in_us) !=
        STORE_OK) {
        if (!p->budget_failing)
            log_warn("openai: the shared requests/min budget is unavailable, holding requests: %s",
                     store_errmsg(p->budget_st));
        p->budget_failing = 1;
        return BUDGET_RETRY_MS;
    }
    p->budget_failing = 0;
    /* The offset is from the database's clock at the claim; read ours after the answer,
     * so the slot lands at or after its time here, never before. */
    double now = (double)mono_us() / 1000.0;
    rl_grant(&p->rl, now + (double)first_in_us / 1000.0, (double)interval_us / 1000.0, n);
    return 0;
}

/* Sends queued requests while the limiter allows. Returns ms until the head of the
 * queue may go (-1: nothing queued, or waiting for a request to leave the wire). */
static int64_t dispatch(oa_provider *p, int64_t now) {
    while (p->q_head && !p->fatal) {
        int64_t d = rl_delay_ms(&p->rl, p->q_head->est_tokens, now);
        if (d == RL_NEED_GRANT) {
            d = claim_slots(p);
            now = mono_ms();
            if (d == 0) continue;
        }
        if (d == RL_WAIT_SLOT) return -1;
        if (d > 0) return d;
        send_job(p, dequeue(p), now);
    }
    return -1;
}

/* ------------------------------------------------------------ cancellation */

/* Completes every queued, delayed and in-flight request as cancelled. */
static void cancel_jobs(oa_provider *p) {
    httpc_cancel_all(p->http); /* their done callbacks run job_fail(CANCELLED) */
    oa_job *j;
    while ((j = dequeue(p))) job_fail(p, j, LLM_ERR_CANCELLED, "cancelled");
    while (p->ndelayed) job_fail(p, p->delayed[--p->ndelayed], LLM_ERR_CANCELLED, "cancelled");
    if (p->batcher) oa_batcher_fail_waiting(p->batcher, "cancelled");
}

/* Fatal error: every pending call completes cancelled, carrying the reason (its
 * work is kept for a resume); calls that finished before keep their results. */
static int fail_all(oa_provider *p) {
    cancel_jobs(p);
    for (oa_call *oc = p->done_head; oc; oc = oc->done_next)
        if (oc->call->status == LLM_ERR_CANCELLED)
            snprintf(oc->call->error, sizeof oc->call->error, "%s", p->base.error);
    return deliver(p, p->nlive);
}

/* ------------------------------------------------------------ ops */

static int oa_submit(llm_provider *bp, llm_call *call) {
    oa_provider *p = as_oa(bp);
    if (p->fatal || !call || !call->done) return -1;
    llm_call_reset_result(call);
    oa_call *oc = xcalloc(1, sizeof *oc);
    oc->call = call;
    oc->p = p;
    call->priv = oc;
    oc->next = p->live;
    if (p->live) p->live->prev = oc;
    p->live = oc;
    p->nlive++;
    if (call->task == LLM_EMBED) start_embed(p, oc);
    else start_chat(p, oc);
    return 0;
}

static int has_waiting_jobs(const oa_provider *p) {
    return p->q_head || p->ndelayed || (p->batcher && oa_batcher_busy(p->batcher));
}

/* Right after answers arrive: once they are in the cache (a crash now asks nothing
 * again that was answered), the slots they freed take queued requests, before the
 * answers are handed to their callers (whose work on them would otherwise keep the
 * slots empty). */
static void send_into_freed_slots(oa_provider *p) {
    oa_cache_flush(p->cache);
    if (p->fatal || !p->q_head) return;
    dispatch(p, mono_ms());
    if (httpc_start(p->http) < 0) fatal(p, "the HTTP client failed (libcurl)");
}

/* Drives sends, the HTTP loop and completions for up to timeout_ms; returns as soon
 * as something completed (after starting what can start), so the caller can submit
 * follow-up work without waiting out the timeout. */
static int oa_poll(llm_provider *bp, int timeout_ms) {
    oa_provider *p = as_oa(bp);
    if (p->fatal) {
        fail_all(p);
        return -1;
    }
    int64_t deadline = mono_ms() + (timeout_ms > 0 ? timeout_ms : 0);
    int completed = deliver(p, p->nlive);
    for (;;) {
        int64_t now = mono_ms();
        int64_t next_retry = promote_delayed(p, now);
        int64_t next_send = dispatch(p, now);
        int64_t next_batch = p->batcher ? oa_batcher_step(p->batcher, now) : -1;
        completed += deliver(p, p->nlive); /* a resumed batch may answer at once */
        oa_cache_flush(p->cache);
        int64_t wait = deadline - now; /* may be negative: httpc_poll takes it as 0 */
        if (completed > 0 || p->fatal) wait = 0;
        if (next_send >= 0 && next_send < wait) wait = next_send;
        if (next_retry >= 0 && next_retry < wait) wait = next_retry;
        if (next_batch >= 0 && next_batch < wait) wait = next_batch;
        if (httpc_in_flight(p->http) > 0) {
            if (httpc_poll(p->http, (int)wait) < 0) fatal(p, "the HTTP client failed (libcurl)");
            send_into_freed_slots(p); /* answers cached first */
        } else if (wait > 0 && has_waiting_jobs(p)) {
            sleep_ms(wait); /* only the limiter or a retry timer to wait for */
        }
        completed += deliver(p, p->nlive);
        if (p->fatal || completed > 0 || mono_ms() >= deadline) break;
        if (!has_waiting_jobs(p) && httpc_in_flight(p->http) == 0 && !p->done_head) break;
    }
    /* Answers paid for are in the cache before the caller sees them. */
    oa_cache_flush(p->cache);
    if (completed > 0 && !p->fatal) {
        /* Start what the done callbacks submitted right away. */
        int64_t now = mono_ms();
        promote_delayed(p, now);
        dispatch(p, now);
        if (httpc_start(p->http) < 0) fatal(p, "the HTTP client failed (libcurl)");
    }
    if (p->fatal) {
        fail_all(p);
        return -1;
    }
    return completed;
}

static size_t oa_pending(llm_provider *bp) { return as_oa(bp)->nlive; }

static void oa_cancel_all(llm_provider *bp) {
    oa_provider *p = as_oa(bp);
    cancel_jobs(p);
    /* A stop: the batches are cancelled too; a resume reads what they answered. */
    if (p->batcher) oa_batcher_cancel_remote(p->batcher);
    /* Calls submitted by the done callbacks below wait for the next poll. */
    size_t n = 0;
    for (oa_call *oc = p->done_head; oc; oc = oc->done_next) n++;
    deliver(p, n);
}

static void oa_destroy(llm_provider *bp) {
    oa_provider *p = as_oa(bp);
    /* Destroy follows cancel_all or the last completion; a call still pending here
     * belongs to a caller that is gone, so it is dropped without done(). */
    cancel_jobs(p);
    while (p->live) {
        oa_call *oc = p->live;
        unlink_live(p, oc);
        oc->call->priv = NULL;
        free_oa_call(oc);
    }
    oa_batcher_free(p->batcher);
    httpc_free(p->http);
    oa_cache_free(p->cache);
    prompts_free(p->prompts);
    free(p->budget_key);
    free(p->body_head);
    for (int t = 0; t < LLM_TASK_COUNT; t++) free(p->key_prefix[t].bytes);
    free(p->delayed);
    free(p->chat_url);
    free(p->embed_url);
    free(p->auth_name);
    free(p->auth_value);
    free(p);
}

static const llm_provider_ops OPENAI_OPS = {
    .name = "openai",
    .submit = oa_submit,
    .poll = oa_poll,
    .pending = oa_pending,
    .cancel_all = oa_cancel_all,
    .prepare_embeddings = NULL,
    .destroy = oa_destroy,
};

/* ------------------------------------------------------------ configuration */

/* Published prices, USD per million tokens (OpenAI pricing page, 2025): prompt,
 * cached prompt (the prefix-cache discount: 50% for the 4o family, 75% for 4.1;
 * none for 3.5), completion. Longest prefixes first. Other models cost 0 unless
 * FEEDLINE_PRICE_* says otherwise. */
static const struct {
    const char *prefix;
    double prompt, cached, completion;
} CHAT_PRICES[] = {
    {"gpt-4o-mini", 0.15, 0.075, 0.60},  {"gpt-4o", 2.50, 1.25, 10.00},
    {"gpt-4.1-nano", 0.10, 0.025, 0.40}, {"gpt-4.1-mini", 0.40, 0.10, 1.60},
    {"gpt-4.1", 2.00, 0.50, 8.00},       {"gpt-3.5-turbo", 0.50, 0.50, 1.50},
};
static const struct {
    const char *prefix;
    double price;
    int dim;
} EMBED_MODELS[] = {
    {"text-embedding-3-small", 0.02, 1536},
    {"text-embedding-3-large", 0.13, 3072},
    {"text-embedding-ada-002", 0.10, 1536},
};

static void set_prices(oa_provider *p, const llm_openai_config *c) {
    double pp = 0, cached = -1, cp = 0, ep = 0;
    for (size_t i = 0; i < sizeof CHAT_PRICES / sizeof CHAT_PRICES[0]; i++)
        if (!strncmp(p->base.chat_model, CHAT_PRICES[i].prefix, strlen(CHAT_PRICES[i].prefix))) {
            pp = CHAT_PRICES[i].prompt;
            cached = CHAT_PRICES[i].cached;
            cp = CHAT_PRICES[i].completion;
            break;
        }
    for (size_t i = 0; i < sizeof EMBED_MODELS / sizeof EMBED_MODELS[0]; i++)
        if (!strcmp(p->base.embed_model, EMBED_MODELS[i].prefix)) {
            ep = EMBED_MODELS[i].price;
            if (!p->embed_dimensions) p->base.embed_dim = EMBED_MODELS[i].dim;
        }
    p->base.usd_per_mtok_prompt = c->usd_prompt >= 0 ? c->usd_prompt : pp;
    /* A configured prompt price makes the model's published cached price meaningless
     * (another deployment, another price list): half of it, OpenAI's usual discount. */
    if (c->usd_cached >= 0) p->base.usd_per_mtok_cached = c->usd_cached;
    else if (c->usd_prompt < 0 && cached >= 0) p->base.usd_per_mtok_cached = cached;
    else p->base.usd_per_mtok_cached = p->base.usd_per_mtok_prompt / 2;
    p->base.usd_per_mtok_completion = c->usd_completion >= 0 ? c->usd_completion : cp;
    p->base.usd_per_mtok_embed = c->usd_embed >= 0 ? c->usd_embed : ep;
}

static char *endpoint_url(const char *base, const char *path, const char *api_version) {
    size_t n = strlen(base);
    while (n > 0 && base[n - 1] == '/') n--;
    if (api_version && *api_version)
        return xasprintf("%.*s/%s?api-version=%s", (int)n, base, path, api_version);
    return xasprintf("%.*s/%s", (int)n, base, path);
}

static int valid_base_url(const char *u) {
    return u && (!strncmp(u, "http://", 7) || !strncmp(u, "https://", 8)) && !strpbrk(u, " \r\n");
}

static const char *env_str(const char *name) {
    const char *v = getenv(name);
    return v && *v ? v : NULL;
}

static double env_num(const char *name, double dflt) {
    const char *v = env_str(name);
    if (!v) return dflt;
    char *end;
    double d = strtod(v, &end);
    if (*end || d < 0) {
        log_warn("%s=\"%s\" is not a non-negative number; ignored", name, v);
        return dflt;
    }
    return d;
}

void llm_openai_config_from_env(llm_openai_config *c) {
    memset(c, 0, sizeof *c);
    c->base_url = env_str("OPENAI_BASE_URL");
    if (!c->base_url) c->base_url = DEFAULT_BASE_URL;
    c->embed_base_url = env_str("OPENAI_EMBED_BASE_URL");
    c->api_key = env_str("OPENAI_API_KEY");
    c->key_header = env_str("OPENAI_API_KEY_HEADER");
    c->api_version = env_str("OPENAI_API_VERSION");
    c->chat_model = env_str("FEEDLINE_CHAT_MODEL");
    if (!c->chat_model) c->chat_model = DEFAULT_CHAT_MODEL;
    c->embed_model = env_str("FEEDLINE_EMBED_MODEL");
    if (!c->embed_model) c->embed_model = DEFAULT_EMBED_MODEL;
    c->embed_dimensions = (int)env_num("FEEDLINE_EMBED_DIMENSIONS", 0);
    c->embed_encoding = env_str("FEEDLINE_EMBED_ENCODING");
    c->concurrency = LLM_DEFAULT_CONCURRENCY;
    c->rpm = env_num("FEEDLINE_RPM", 0);
    c->tpm = env_num("FEEDLINE_TPM", 0);
    c->timeout_ms = (int)env_num("FEEDLINE_LLM_TIMEOUT_MS", 0);
    c->max_attempts = (int)env_num("FEEDLINE_LLM_MAX_ATTEMPTS", 0);
    c->backoff_base_ms = (int)env_num("FEEDLINE_LLM_BACKOFF_MS", 0);
    c->usd_prompt = env_num("FEEDLINE_PRICE_PROMPT", -1);
    c->usd_cached = env_num("FEEDLINE_PRICE_CACHED", -1);
    c->usd_completion = env_num("FEEDLINE_PRICE_COMPLETION", -1);
    c->usd_embed = env_num("FEEDLINE_PRICE_EMBED", -1);
    const char *shared = env_str("FEEDLINE_SHARED_BUDGET");
    c->own_budget = shared && !strcmp(shared, "0");
    c->batch_poll_ms = (int)env_num("FEEDLINE_BATCH_POLL_MS", 0);
    c->batch_gather_ms = (int)env_num("FEEDLINE_BATCH_GATHER_MS", 0);
    c->batch_max_requests = (int)env_num("FEEDLINE_BATCH_MAX_REQUESTS", 0);
    c->batch_max_bytes = (int64_t)env_num("FEEDLINE_BATCH_MAX_BYTES", 0);
    c->batch_max_pending = (int)env_num("FEEDLINE_BATCH_MAX_PENDING", 0);
}

static int model_name_ok(const char *m) {
    return m && *m && strlen(m) < sizeof(((llm_provider *)0)->chat_model);
}

/* Rejects configurations that would only fail later, request by request. */
static int check_config(const llm_openai_config *c, char *err, size_t errlen) {
    const char *base = c->base_url ? c->base_url : DEFAULT_BASE_URL;
    if (!valid_base_url(base) || (c->embed_base_url && !valid_base_url(c->embed_base_url)))
        return snprintf(err, errlen, "OPENAI_BASE_URL must be an http:// or https:// URL"), -1;
    if ((c->chat_model && !model_name_ok(c->chat_model)) ||
        (c->embed_model && !model_name_ok(c->embed_model)))
        return snprintf(err, errlen, "model names must be 1..63 bytes"), -1;
    const char *enc = c->embed_encoding;
    if (enc && strcmp(enc, "base64") && strcmp(enc, "float"))
        return snprintf(err, errlen,
                        "FEEDLINE_EMBED_ENCODING must be base64 or float, not \"%.40s\"", enc), -1;
    if (c->key_header && (!*c->key_header || strpbrk(c->key_header, ": \r\n")))
        return snprintf(err, errlen, "OPENAI_API_KEY_HEADER must be a header name"), -1;
    if (c->api_key && strpbrk(c->api_key, "\r\n"))
        return snprintf(err, errlen, "OPENAI_API_KEY contains a line break"), -1;
    return 0;
}

/* "Authorization: Bearer KEY" by default; "NAME: KEY" for another header (Azure's
 * api-key). No header without a key (local servers). */
static void set_auth(oa_provider *p, const llm_openai_config *c) {
    if (!c->api_key || !*c->api_key) return;
    if (!c->key_header || !strcasecmp(c->key_header, "Authorization")) {
        p->auth_name = xstrdup("Authorization");
        p->auth_value = xasprintf("Bearer %s", c->api_key);
    } else {
        p->auth_name = xstrdup(c->key_header);
        p->auth_value = xstrdup(c->api_key);
    }
}

static void set_limits(oa_provider *p, const llm_openai_config *c) {
    p->embed_dimensions = c->embed_dimensions > 0 ? c->embed_dimensions : 0;
    p->base.embed_dim = p->embed_dimensions;
    const char *enc = c->embed_encoding;
    p->embed_encoding = enc && !strcmp(enc, "float") ? "float" : "base64";
    p->embed_max_inputs = c->embed_max_inputs > 0 && c->embed_max_inputs < EMBED_MAX_INPUTS
                              ? c->embed_max_inputs : EMBED_MAX_INPUTS;
    p->embed_max_tokens = c->embed_max_tokens > 0 ? c->embed_max_tokens : EMBED_MAX_TOKENS;
    p->base.max_embed_batch = p->embed_max_inputs;
    p->base.paid_answers = 1;

    p->timeout_ms = c->timeout_ms > 0 ? c->timeout_ms : DEFAULT_TIMEOUT_MS;
    p->max_attempts = c->max_attempts > 0 ? c->max_attempts : DEFAULT_MAX_ATTEMPTS;
    p->backoff_base_ms = c->backoff_base_ms > 0 ? c->backoff_base_ms : DEFAULT_BACKOFF_MS;
}

/* On PostgreSQL the processes of a run share the endpoint's requests/min (one
 * schedule per base URL); SQLite databases are not shared across machines. */
static void share_budget(oa_provider *p, const llm_openai_config *c, store *st,
                         const char *base) {
    if (c->own_budget || !st || strcmp(store_backend(st), "postgres") != 0) return;
    p->budget_st = st;
    p->budget_key = xasprintf("requests/min %s", base);
    rl_share(&p->rl, 1, mono_ms());
}

#define BATCH_MAX_PENDING 100000

static void start_batch_mode(oa_provider *p, const llm_openai_config *c, store *st,
                             const char *base) {
    oa_batch_cfg bc = {0};
    bc.base_url = base;
    bc.embed_base_url = c->embed_base_url;
    bc.api_version = c->api_version;
    bc.auth_name = p->auth_name;
    bc.auth_value = p->auth_value;
    bc.timeout_ms = p->timeout_ms;
    bc.poll_ms = c->batch_poll_ms;
    bc.gather_ms = c->batch_gather_ms;
    bc.max_requests = c->batch_max_requests;
    bc.max_bytes = c->batch_max_bytes;
    bc.st = st;
    bc.run_id = c->batch_run_id;
    p->batcher = oa_batcher_new(&bc, p->http, batch_result, batch_fatal, p);
    p->base.max_pending = c->batch_max_pending > 0 ? c->batch_max_pending : BATCH_MAX_PENDING;
}

llm_provider *llm_openai_new(const llm_openai_config *c, const vocab *v, struct store *st,
                             char *err, size_t errlen) {
    if (check_config(c, err, errlen) != 0) return NULL;
    int conc = c->concurrency > 0 ? c->concurrency : LLM_DEFAULT_CONCURRENCY;
    if (conc > LLM_MAX_CONCURRENCY) conc = LLM_MAX_CONCURRENCY;
    httpc *http =
        httpc_new((size_t)conc, c->max_response_bytes ? c->max_response_bytes : MAX_RESPONSE_BYTES);
    if (!http) {
        snprintf(err, errlen, "cannot initialise the HTTP client (libcurl)");
        return NULL;
    }
    oa_provider *p = xcalloc(1, sizeof *p);
    p->base.ops = &OPENAI_OPS;
    p->base.vocab = v;
    p->http = http;
    snprintf(p->base.chat_model, sizeof p->base.chat_model, "%s",
             c->chat_model ? c->chat_model : DEFAULT_CHAT_MODEL);
    snprintf(p->base.embed_model, sizeof p->base.embed_model, "%s",
             c->embed_model ? c->embed_model : DEFAULT_EMBED_MODEL);
    json_t *model = json_string(p->base.chat_model);
    char *model_json = jx_dump(model);
    json_decref(model);
    p->body_head = xasprintf("{\"model\":%s,\"messages\":[", model_json);
    free(model_json);
    set_limits(p, c);
    set_prices(p, c);
    const char *base = c->base_url ? c->base_url : DEFAULT_BASE_URL;
    p->chat_url = endpoint_url(base, "chat/completions", c->api_version);
    p->embed_url = endpoint_url(c->embed_base_url ? c->embed_base_url : base, "embeddings",
                                c->api_version);
    set_auth(p, c);
    rl_init(&p->rl, conc, c->rpm, c->tpm, mono_ms());
    share_budget(p, c, st, base);
    rng_seed(&p->rng, c->seed ? c->seed : (uint64_t)mono_us());
    p->cache = oa_cache_new(st);
    p->prompts = prompts_new(v);
    if (c->batch) start_batch_mode(p, c, st, base);
    else {
        int qa = (int)env_num("FEEDLINE_QUEUE_AHEAD", -1);
        p->base.queue_ahead = qa >= 0 ? qa : (conc + 3) / 4;
        p->base.concurrency = conc;
    }
    return &p->base;
}
