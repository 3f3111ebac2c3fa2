/* fake_openai — an OpenAI-compatible endpoint on loopback for tests and benchmarks,
 * built on the fakehttp core (one thread, one epoll loop, delayed answers in a timer
 * heap, so thousands of slow requests cost no thread).
 *
 *   fake_openai --vocab FILE [--port N] [--latency-ms N]
 *               [--latency-dist fixed|uniform|exp|lognormal] [--max-conn N]
 *               [--rpm N] [--window-ms N] [--retry-after-ms N] [--require-key KEY]
 *               [--fault-500 P] [--fault-429 P] [--fault-timeout P]
 *               [--fault-truncated P] [--fault-nonjson P] [--fault-types P] [--seed S]
 *
 * Prints "listening on 127.0.0.1:PORT" first. Answers:
 *  - POST .../chat/completions: the user message (prompts.h format: Task line and
 *    <arguments>/<url>/<support>/<conversation> blocks) becomes an llm_input (body =
 *    digest = transcript = the conversation) answered by the offline analyzer on the
 *    same vocabulary, so answers are deterministic and realistic. A repair retry is
 *    answered from its first user message;
 *  - POST .../embeddings: the offline embedder's vectors of each input (no corpus
 *    statistics), "dimensions" honoured;
 *  - usage tokens ~ bytes / 4; x-ratelimit-* headers on every answer when --rpm is set;
 *  - usage.prompt_tokens_details.cached_tokens as OpenAI's automatic prompt caching
 *    reports it (see "prompt-prefix cache" below);
 *  - GET /_stats: counters (JSON); POST /_reset zeroes them (the prompt-prefix cache
 *    stays, as a real endpoint's would); POST /_config changes
 *    latency_ms, latency_dist, rpm, window_ms, retry_after_ms, the fault_* rates and
 *    prompt_cache (0: no prompt_tokens_details, as servers without them) at run time
 *    (JSON body with those keys); TASK_latency_ms (TASK a chat task name,
 *    e.g. story_latency_ms) sets a fixed latency for that task's answers alone.
 *
 * Requests/min: at most rpm x window/60000 requests are accepted in any sliding window
 * of window_ms (default 60000); beyond it the answer is 429 with Retry-After,
 * retry-after-ms (until the oldest accepted request leaves the window) and
 * x-ratelimit-* headers. Rejected requests do not count in the window.
 *
 * Faults: each API request draws one fault (or none) from the rates, from a hash of
 * the seed, the request body and how many times that body was seen; so the same
 * requests get the same faults whatever their arrival order, and a retry of a failed
 * request draws again. Kinds: 500, 429 (Retry-After = retry_after_ms), timeout (never
 * answered), truncated (Content-Length promises more than is sent), nonjson (the
 * message content is prose), types (every string field of the answer becomes a
 * number, every list a string; for embeddings the vector becomes a string).
 *
 * Prompt-prefix cache: OpenAI caches prompts in 128-token blocks once a prompt has
 * 1024 tokens, and reports how many prompt tokens of a request the cache served (the
 * longest prefix of the request seen before). Emulated on the chat messages (roles
 * and contents, in order, after the model name) with the fake's token estimate of
 * bytes / 4: the hashes of every prefix ending on a 128-token boundary at or past 1024
 * tokens are remembered in a bounded set (least recently used forgotten first), and a
 * request's cached_tokens is the longest of its boundary prefixes already there, 0
 * when none. Counted per task in /_stats (cached_tokens).
 *
 * Single-threaded: the handler runs on the server loop, so its state needs no lock. */
#include <getopt.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fakes/fakehttp.h"
#include "llm/llm.h"
#include "llm/prompts.h"
#include "text/vocab.h"
#include "util/buf.h"
#include "util/hash.h"
#include "util/jsonx.h"
#include "util/mem.h"
#include "util/rng.h"
#include "util/strmap.h"
#include "util/timeutil.h"

enum { DIST_FIXED, DIST_UNIFORM, DIST_EXP, DIST_LOGNORMAL };
enum { F_NONE, F_500, F_429, F_TIMEOUT, F_TRUNCATED, F_NONJSON, F_TYPES, F_COUNT };
static const char *const FAULT_NAMES[F_COUNT] = {"none",      "500",     "429",  "timeout",
                                                 "truncated", "nonjson", "types"};

typedef struct fake_config {
    double latency_ms;
    double task_latency_ms[LLM_TASK_COUNT]; /* < 0: latency_ms */
    int dist;
    double rpm;
    int64_t window_ms;
    int64_t retry_after_ms;
    double fault[F_COUNT];
    uint64_t seed;
    char *require_key;
    int no_prompt_cache; /* answer as a server without usage details (no cache) */
} fake_config;

/* A FIFO of millisecond timestamps (a sliding window). */
typedef struct tsq {
    int64_t *t;
    size_t head, n, cap;
} tsq;

typedef struct task_stat {
    uint64_t n;
    int64_t first_ms, last_ms; /* first arrival, last answer release (fake's clock) */
    int64_t cached_tokens;     /* reported as served from the prompt-prefix cache */
} task_stat;

typedef struct counters {
    uint64_t requests, chat, embeddings, embedding_inputs, other;
    uint64_t rate_limited, rate_limited_window, unauthorized, bad_requests;
    uint64_t faults[F_COUNT];
    int64_t max_in_flight;
    uint64_t max_window_arrivals;
    int64_t prompt_tokens, completion_tokens, cached_tokens;
    task_stat tasks[LLM_TASK_COUNT];
    uint64_t canon_proposals, canon_max_proposals; /* proposals per canonicalisation */
} counters;

typedef struct fake {
    fh_server *srv;
    fake_config cfg;
    vocab *v;
    llm_provider *local;
    rng_t rng;
    strmap_t seen; /* body hash -> times seen (uintptr_t) */
    /* The prompt-prefix cache: prefix hashes in two generations, the current one
     * (prefixes[0]) taking every insertion and lookup hit; when it is full the older
     * generation is dropped, so what was used within the last PREFIX_CACHE_ENTRIES/2
     * insertions is always kept and the set never exceeds PREFIX_CACHE_ENTRIES. */
    strmap_t prefixes[2];
    tsq accepted, arrivals;
    counters c;
    int64_t t0_ms;
} fake;

static fh_server *g_server; /* for the signal handler only */

static void on_signal(int sig) {
    (void)sig;
    if (g_server) fh_stop(g_server);
}

/* ------------------------------------------------------------ windows */

static void tsq_push(tsq *q, int64_t t) {
    if (q->n == q->cap) {
        size_t ncap = q->cap ? q->cap * 2 : 256;
        int64_t *nt = xmalloc(ncap * sizeof *nt);
        for (size_t i = 0; i < q->n; i++) nt[i] = q->t[(q->head + i) % q->cap];
        free(q->t);
        q->t = nt;
        q->cap = ncap;
        q->head = 0;
    }
    q->t[(q->head + q->n) % q->cap] = t;
    q->n++;
}

static void tsq_expire(tsq *q, int64_t before) {
    while (q->n && q->t[q->head] <= before) {
        q->head = (q->head + 1) % q->cap;
        q->n--;
    }
}

static int64_t tsq_oldest(const tsq *q) { return q->n ? q->t[q->head] : 0; }

static uint64_t window_limit(const fake *f) {
    double l = floor(f->cfg.rpm * (double)f->cfg.window_ms / 60000.0);
    return l < 1 ? 1 : (uint64_t)l;
}

/* ------------------------------------------------------------ helpers */

static void respond_json(fh_request *req, int status, json_t *body) {
    char *s = json_dumps(body, JSON_COMPACT);
    fh_respond(req, status, "application/json", s, strlen(s));
    free(s);
    json_decref(body);
}

static void respond_error(fh_request *req, int status, const char *type, const char *code,
                          const char *msg) {
    respond_json(req, status, json_pack("{s{sssssn}}", "error", "message", msg, "type", type,
                                        "code", code ? code : "", "param"));
}

static double sample_latency(fake *f) {
    double m = f->cfg.latency_ms;
    if (m <= 0) return 0;
    double u = rng_double(&f->rng);
    switch (f->cfg.dist) {
    case DIST_UNIFORM: return 2 * m * u;
    case DIST_EXP: return -m * log(1 - u);
    case DIST_LOGNORMAL: { /* sigma 0.5, mean m */
        double u2 = rng_double(&f->rng);
        double z = sqrt(-2 * log(1 - u)) * cos(2 * M_PI * u2);
        return m * exp(0.5 * z - 0.125);
    }
    default: return m;
    }
}

/* The fault for this body: deterministic in (seed, body, times seen). */
static int choose_fault(fake *f, const char *body, size_t len) {
    double total = 0;
    for (int k = F_500; k < F_COUNT; k++) total += f->cfg.fault[k];
    if (total <= 0) return F_NONE;
    char key[24];
    uint64_t h = fnv1a64(body, len);
    snprintf(key, sizeof key, "%016llx", (unsigned long long)h);
    uintptr_t seen = (uintptr_t)strmap_get(&f->seen, key);
    strmap_put(&f->seen, key, (void *)(seen + 1));
    uint64_t x = hash_mix64(h ^ hash_mix64(f->cfg.seed) ^ hash_mix64(seen + 0x9e37));
    double u = (double)(x >> 11) / 9007199254740992.0;
    double acc = 0;
    for (int k = F_500; k < F_COUNT; k++) {
        acc += f->cfg.fault[k];
        if (u < acc) return k;
    }
    return F_NONE;
}

static void add_rate_headers(fake *f, fh_request *req, int64_t now) {
    if (f->cfg.rpm <= 0) return;
    char v[64];
    snprintf(v, sizeof v, "%.0f", f->cfg.rpm);
    fh_add_header(req, "x-ratelimit-limit-requests", v);
    uint64_t lim = window_limit(f), used = f->accepted.n;
    snprintf(v, sizeof v, "%llu", (unsigned long long)(used < lim ? lim - used : 0));
    fh_add_header(req, "x-ratelimit-remaining-requests", v);
    int64_t reset = f->accepted.n ? tsq_oldest(&f->accepted) + f->cfg.window_ms - now : 0;
    snprintf(v, sizeof v, "%lldms", (long long)(reset > 0 ? reset : 0));
    fh_add_header(req, "x-ratelimit-reset-requests", v);
}

static void respond_429(fake *f, fh_request *req, int64_t after_ms, int64_t now, const char *msg) {
    char v[32];
    snprintf(v, sizeof v, "%lld", (long long)((after_ms + 999) / 1000));
    fh_add_header(req, "Retry-After", v);
    snprintf(v, sizeof v, "%lld", (long long)after_ms);
    fh_add_header(req, "retry-after-ms", v);
    add_rate_headers(f, req, now);
    f->c.rate_limited++;
    respond_error(req, 429, "requests", "rate_limit_exceeded", msg);
}

/* ------------------------------------------------------------ prompt-prefix cache */

#define PREFIX_CACHE_ENTRIES 4096
#define CACHE_MIN_TOKENS 1024
#define CACHE_BLOCK_TOKENS 128
#define BYTES_PER_TOKEN 4 /* the fake's token estimate everywhere */

static void prefix_key(uint64_t h, char key[24]) {
    snprintf(key, 24, "%016llx", (unsigned long long)h);
}

static int prefix_seen(fake *f, const char *key) {
    return strmap_has(&f->prefixes[0], key) || strmap_has(&f->prefixes[1], key);
}

/* Inserts or refreshes a prefix hash (moves it into the current generation). */
static void prefix_remember(fake *f, const char *key) {
    if (strmap_has(&f->prefixes[0], key)) return;
    if (f->prefixes[0].count >= PREFIX_CACHE_ENTRIES / 2) {
        strmap_free(&f->prefixes[1], NULL);
        f->prefixes[1] = f->prefixes[0];
        f->prefixes[0] = (strmap_t)STRMAP_INIT;
    }
    strmap_put(&f->prefixes[0], key, NULL);
}

/* The tokens of the request's messages served from the prompt-prefix cache (see the
 * top of the file), remembering its own prefixes for the next requests. */
static int64_t prefix_cached_tokens(fake *f, const json_t *body) {
    buf_t text = BUF_INIT;
    const char *model = jx_str(body, "model");
    buf_printf(&text, "%s\n", model ? model : "");
    size_t i;
    json_t *m;
    json_array_foreach(jx_arr(body, "messages"), i, m) {
        const char *role = jx_str(m, "role"), *content = jx_str(m, "content");
        /* The record separator keeps "ab"+"c" and "a"+"bc" apart. */
        buf_printf(&text, "%s:%s\x1e", role ? role : "", content ? content : "");
    }
    const size_t block = CACHE_BLOCK_TOKENS * BYTES_PER_TOKEN;
    const size_t first = CACHE_MIN_TOKENS * BYTES_PER_TOKEN;
    size_t nb = text.len >= first ? (text.len - first) / block + 1 : 0;
    char (*keys)[24] = nb ? xcalloc(nb, sizeof *keys) : NULL;
    uint64_t h = FNV1A64_BASIS;
    size_t done = 0, hit = 0;
    for (size_t k = 0; k < nb; k++) {
        size_t end = first + k * block;
        h = fnv1a64_more(h, text.data + done, end - done);
        done = end;
        prefix_key(h, keys[k]);
        if (prefix_seen(f, keys[k])) hit = end;
    }
    for (size_t k = 0; k < nb; k++) prefix_remember(f, keys[k]);
    free(keys);
    buf_free(&text);
    return (int64_t)(hit / BYTES_PER_TOKEN);
}

/* ------------------------------------------------------------ answers */

static void on_local_done(llm_call *c) { *(int *)c->user = 1; }

/* Runs the offline analyzer on one call (its queue is empty between requests). */
static void run_local(fake *f, llm_call *c) {
    int done = 0;
    c->done = on_local_done;
    c->user = &done;
    if (llm_submit(f->local, c) != 0) {
        c->status = LLM_ERR_INPUT;
        snprintf(c->error, sizeof c->error, "offline analyzer refused the call");
        return;
    }
    while (!done) llm_poll(f->local, 0);
}

/* The first user message that carries a Task line (a repair retry appends more). */
static const char *task_message(const json_t *messages) {
    size_t i;
    json_t *m;
    json_array_foreach(messages, i, m) {
        const char *role = jx_str(m, "role"), *content = jx_str(m, "content");
        if (role && content && !strcmp(role, "user") && strstr(content, "Task: ")) return content;
    }
    return NULL;
}

/* Every string becomes a number and every list a string (top level). */
static json_t *wrong_types(const json_t *a) {
    json_t *o = json_object();
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)a, k, v) {
        if (json_is_string(v)) json_object_set_new(o, k, json_integer(42));
        else if (json_is_array(v)) json_object_set_new(o, k, json_string("not a list"));
        else json_object_set(o, k, v);
    }
    return o;
}

static void count_task(fake *f, int task, int64_t arrival, int64_t release) {
    if (task < 0 || task >= LLM_TASK_COUNT) return;
    task_stat *t = &f->c.tasks[task];
    if (t->n++ == 0 || arrival < t->first_ms) t->first_ms = arrival;
    if (release > t->last_ms) t->last_ms = release;
}

/* A transcript ("[Customer]: ..." and "[Support]: ..." blocks separated by blank
 * lines) gives the analyzer what a real model would read as the customer's words: the
 * first customer block (body) and all of them (digest). Other text is used as is. */
static void customer_parts(const char *text, buf_t *first, buf_t *all) {
    static const char label[] = "[Customer]: ";
    for (const char *p = text; p && *p;) {
        const char *end = strstr(p, "\n\n[");
        size_t n = end ? (size_t)(end - p) : strlen(p);
        if (n >= sizeof label - 1 && strncmp(p, label, sizeof label - 1) == 0) {
            const char *b = p + sizeof label - 1;
            size_t bn = n - (sizeof label - 1);
            if (!first->len) buf_append(first, b, bn);
            if (all->len) buf_puts(all, "\n\n");
            buf_append(all, b, bn);
        }
        p = end ? end + 2 : NULL;
    }
}

/* The chat answer's content, or NULL with an HTTP error sent. */
static char *chat_content(fake *f, fh_request *req, const json_t *body, int *task) {
    const char *msg = task_message(jx_arr(body, "messages"));
    prompt_blocks b;
    if (!msg || prompts_parse_user(msg, &b) != 0 || b.task < 0 || b.task == LLM_EMBED) {
        if (msg) prompt_blocks_free(&b);
        f->c.bad_requests++;
        respond_error(req, 400, "invalid_request_error", NULL,
                      "the user message has no known \"Task:\" line");
        return NULL;
    }
    *task = b.task;
    llm_call c = {0};
    c.task = (enum llm_task)b.task;
    const char *text = b.conversation ? b.conversation : "";
    c.in.conv_id = "fake";
    buf_t first = BUF_INIT, all = BUF_INIT;
    customer_parts(text, &first, &all);
    c.in.body = first.len ? buf_cstr(&first) : text;
    c.in.digest = all.len ? buf_cstr(&all) : text;
    c.in.transcript = text;
    c.in.support_text = b.support ? b.support : "";
    c.in.source_url = b.url;
    c.args = b.args ? json_loads(b.args, 0, NULL) : NULL;
    if (c.task == LLM_CANONICALIZE) {
        uint64_t n = json_array_size(jx_arr(c.args, "proposals"));
        f->c.canon_proposals += n;
        if (n > f->c.canon_max_proposals) f->c.canon_max_proposals = n;
    }
    run_local(f, &c);
    char *out = NULL;
    if (c.status == LLM_OK && c.answer) {
        out = jx_dump(c.answer);
    } else {
        f->c.bad_requests++;
        respond_error(req, 400, "invalid_request_error", NULL, c.error[0] ? c.error : "no answer");
    }
    llm_call_reset_result(&c);
    json_decref(c.args);
    prompt_blocks_free(&b);
    buf_free(&first);
    buf_free(&all);
    return out;
}

/* The chat completion object; cached < 0 leaves out prompt_tokens_details. */
static json_t *chat_envelope(const char *model, const char *content, int64_t pt, int64_t cached,
                             int64_t ct, uint64_t id) {
    char cid[40];
    snprintf(cid, sizeof cid, "chatcmpl-fake-%llu", (unsigned long long)id);
    json_t *msg = json_pack("{s:s, s:o}", "role", "assistant", "content", jx_string(content));
    json_t *choice = json_pack("{s:i, s:o, s:s}", "index", 0, "message", msg, "finish_reason", "stop");
    json_t *usage = json_pack("{s:I, s:I, s:I}", "prompt_tokens", (json_int_t)pt,
                              "completion_tokens", (json_int_t)ct, "total_tokens", (json_int_t)(pt + ct));
    if (cached >= 0)
        json_object_set_new(usage, "prompt_tokens_details",
                            json_pack("{s:I}", "cached_tokens", (json_int_t)cached));
    return json_pack("{s:s, s:s, s:I, s:o, s:[o], s:o}", "id", cid, "object", "chat.completion",
                     "created", (json_int_t)wall_unix(), "model", jx_string(model), "choices",
                     choice, "usage", usage);
}

/* The embeddings response text, or NULL with an HTTP error sent. */
static char *embeddings_text(fake *f, fh_request *req, const json_t *body, int types_fault,
                             size_t *ninputs, int64_t *tokens) {
    json_t *input = json_object_get(body, "input");
    size_t n = json_is_array(input) ? json_array_size(input) : json_is_string(input) ? 1 : 0;
    if (n == 0) {
        f->c.bad_requests++;
        respond_error(req, 400, "invalid_request_error", NULL, "input must be a string or a list");
        return NULL;
    }
    const char **texts = xcalloc(n, sizeof *texts);
    int64_t bytes = 0;
    for (size_t i = 0; i < n; i++) {
        json_t *s = json_is_array(input) ? json_array_get(input, i) : input;
        texts[i] = json_string_value(s);
        if (!texts[i] || !texts[i][0]) {
            free(texts);
            f->c.bad_requests++;
            respond_error(req, 400, "invalid_request_error", NULL, "inputs must be non-empty strings");
            return NULL;
        }
        bytes += (int64_t)strlen(texts[i]);
    }
    int64_t dims = jx_int(body, "dimensions", 0);
    int saved = f->local->embed_dim;
    if (dims > 0 && dims <= 8192) f->local->embed_dim = (int)dims;
    llm_call c = {0};
    c.task = LLM_EMBED;
    c.texts = texts;
    c.ntexts = n;
    run_local(f, &c);
    f->local->embed_dim = saved;
    buf_t b = BUF_INIT;
    buf_puts(&b, "{\"object\":\"list\",\"data\":[");
    for (size_t i = 0; i < n && c.status == LLM_OK; i++) {
        buf_printf(&b, "%s{\"object\":\"embedding\",\"index\":%zu,\"embedding\":", i ? "," : "", i);
        if (types_fault && i == 0) {
            buf_puts(&b, "\"not a vector\"}");
            continue;
        }
        buf_putc(&b, '[');
        const float *v = c.vectors + i * (size_t)c.dim;
        for (int k = 0; k < c.dim; k++) buf_printf(&b, "%s%.7g", k ? "," : "", (double)v[k]);
        buf_puts(&b, "]}");
    }
    const char *model = jx_str(body, "model");
    *tokens = bytes / 4 + 1;
    buf_printf(&b, "],\"model\":\"%s\",\"usage\":{\"prompt_tokens\":%lld,\"total_tokens\":%lld}}",
               model && !strpbrk(model, "\"\\") ? model : "fake-embedding", (long long)*tokens,
               (long long)*tokens);
    free(texts);
    *ninputs = n;
    int ok = c.status == LLM_OK;
    llm_call_reset_result(&c);
    if (!ok) {
        buf_free(&b);
        f->c.bad_requests++;
        respond_error(req, 400, "invalid_request_error", NULL, "cannot embed the inputs");
        return NULL;
    }
    return buf_detach(&b);
}

/* ------------------------------------------------------------ API requests */

static int authorized(const fake *f, fh_request *req) {
    if (!f->cfg.require_key) return 1;
    const char *auth = fh_req_header(req, "Authorization");
    const char *api_key = fh_req_header(req, "api-key");
    if (api_key && !strcmp(api_key, f->cfg.require_key)) return 1;
    return auth && !strncmp(auth, "Bearer ", 7) && !strcmp(auth + 7, f->cfg.require_key);
}

/* Admission: the window check. 0 = accepted, -1 = answered 429. */
static int admit(fake *f, fh_request *req, int64_t now) {
    tsq_expire(&f->arrivals, now - f->cfg.window_ms);
    tsq_push(&f->arrivals, now);
    if (f->arrivals.n > f->c.max_window_arrivals) f->c.max_window_arrivals = f->arrivals.n;
    if (f->cfg.rpm <= 0) return 0;
    tsq_expire(&f->accepted, now - f->cfg.window_ms);
    if (f->accepted.n >= window_limit(f)) {
        int64_t after = tsq_oldest(&f->accepted) + f->cfg.window_ms - now;
        f->c.rate_limited_window++;
        respond_429(f, req, after > 0 ? after : 1, now, "Rate limit reached for requests");
        return -1;
    }
    tsq_push(&f->accepted, now);
    return 0;
}

/* The chat completion text (envelope) for a request, with the content faults
 * applied; NULL when an error was sent instead. */
static char *chat_text(fake *f, fh_request *req, const json_t *body, size_t body_len, int fault,
                       int *task) {
    char *content = chat_content(f, req, body, task);
    if (!content) return NULL;
    f->c.chat++;
    if (fault == F_NONJSON) {
        free(content);
        content = xstrdup("Sure! Here is what I found: the customer seems unhappy.");
    } else if (fault == F_TYPES) {
        json_t *a = json_loads(content, 0, NULL), *w = wrong_types(a);
        free(content);
        content = jx_dump(w);
        json_decref(a);
        json_decref(w);
    }
    int64_t pt = (int64_t)body_len / BYTES_PER_TOKEN + 1;
    int64_t ct = (int64_t)strlen(content) / BYTES_PER_TOKEN + 1;
    /* -1: not reported at all */
    int64_t cached = f->cfg.no_prompt_cache ? -1 : prefix_cached_tokens(f, body);
    if (cached > pt) cached = pt;
    f->c.prompt_tokens += pt;
    if (cached > 0) {
        f->c.cached_tokens += cached;
        if (*task >= 0 && *task < LLM_TASK_COUNT) f->c.tasks[*task].cached_tokens += cached;
    }
    f->c.completion_tokens += ct;
    const char *model = jx_str(body, "model");
    json_t *env = chat_envelope(model ? model : "fake", content, pt, cached, ct, fh_req_id(req));
    char *text = jx_dump(env);
    json_decref(env);
    free(content);
    return text;
}

/* Answers a request that drew no transport-level fault: 200 after the latency (or a
 * truncated 200 for that fault). */
static void answer(fake *f, fh_request *req, const json_t *body, size_t body_len, int fault,
                   int embeddings, int64_t now, int64_t delay) {
    char *text = NULL;
    int task = LLM_EMBED;
    if (embeddings) {
        size_t n = 0;
        int64_t tokens = 0;
        text = embeddings_text(f, req, body, fault == F_TYPES || fault == F_NONJSON, &n, &tokens);
        if (text) {
            f->c.embeddings++;
            f->c.embedding_inputs += n;
            f->c.prompt_tokens += tokens;
        }
    } else {
        text = chat_text(f, req, body, body_len, fault, &task);
    }
    if (!text) return;
    if (task >= 0 && task < LLM_TASK_COUNT && f->cfg.task_latency_ms[task] >= 0)
        delay = (int64_t)(f->cfg.task_latency_ms[task] + 0.5);
    count_task(f, task, now, now + delay);
    add_rate_headers(f, req, now);
    size_t tl = strlen(text);
    if (fault == F_TRUNCATED) fh_respond_truncated(req, delay, 200, "application/json", text, tl, tl / 2);
    else fh_respond_after(req, delay, 200, "application/json", text, tl);
    free(text);
}

static void api_request(fake *f, fh_request *req, int embeddings) {
    int64_t now = mono_ms() - f->t0_ms;
    f->c.requests++;
    int64_t inf = fh_stats(f->srv).in_flight;
    if (inf > f->c.max_in_flight) f->c.max_in_flight = inf;
    if (!authorized(f, req)) {
        f->c.unauthorized++;
        respond_error(req, 401, "invalid_request_error", "invalid_api_key",
                      "Incorrect API key provided.");
        return;
    }
    if (admit(f, req, now) != 0) return;
    size_t len;
    const char *raw = fh_req_body(req, &len);
    json_t *body = json_loadb(raw, len, 0, NULL);
    if (!json_is_object(body)) {
        json_decref(body);
        f->c.bad_requests++;
        respond_error(req, 400, "invalid_request_error", NULL, "the body is not a JSON object");
        return;
    }
    int fault = choose_fault(f, raw, len);
    f->c.faults[fault]++;
    int64_t delay = (int64_t)(sample_latency(f) + 0.5);
    if (fault == F_429) {
        respond_429(f, req, f->cfg.retry_after_ms, now, "Rate limit reached (injected)");
    } else if (fault == F_TIMEOUT) {
        fh_hang(req);
    } else if (fault == F_500) {
        char *e = jx_dump(json_pack("{s{ssss}}", "error", "message", "The server had an error",
                                    "type", "server_error"));
        fh_respond_after(req, delay, 500, "application/json", e, strlen(e));
        free(e);
    } else {
        answer(f, req, body, len, fault, embeddings, now, delay);
    }
    json_decref(body);
}

/* ------------------------------------------------------------ admin */

static json_t *stats_json(fake *f) {
    fh_stats_t s = fh_stats(f->srv);
    json_t *faults = json_object();
    for (int k = F_500; k < F_COUNT; k++)
        json_object_set_new(faults, FAULT_NAMES[k], json_integer((json_int_t)f->c.faults[k]));
    json_t *tasks = json_object();
    for (int t = 0; t < LLM_TASK_COUNT; t++) {
        const task_stat *ts = &f->c.tasks[t];
        if (!ts->n) continue;
        json_object_set_new(tasks, llm_task_name((enum llm_task)t),
                            json_pack("{sIsIsIsI}", "requests", (json_int_t)ts->n, "first_ms",
                                      (json_int_t)ts->first_ms, "last_ms", (json_int_t)ts->last_ms,
                                      "cached_tokens", (json_int_t)ts->cached_tokens));
    }
    json_t *o = json_object();
    json_object_set_new(o, "requests", json_integer((json_int_t)f->c.requests));
    json_object_set_new(o, "chat", json_integer((json_int_t)f->c.chat));
    json_object_set_new(o, "embeddings", json_integer((json_int_t)f->c.embeddings));
    json_object_set_new(o, "embedding_inputs", json_integer((json_int_t)f->c.embedding_inputs));
    json_object_set_new(o, "other", json_integer((json_int_t)f->c.other));
    json_object_set_new(o, "in_flight", json_integer(s.in_flight));
    json_object_set_new(o, "max_in_flight", json_integer(f->c.max_in_flight));
    json_object_set_new(o, "rate_limited", json_integer((json_int_t)f->c.rate_limited));
    json_object_set_new(o, "rate_limited_window", json_integer((json_int_t)f->c.rate_limited_window));
    json_object_set_new(o, "max_window_arrivals", json_integer((json_int_t)f->c.max_window_arrivals));
    json_object_set_new(o, "window_limit",
                        json_integer(f->cfg.rpm > 0 ? (json_int_t)window_limit(f) : 0));
    json_object_set_new(o, "unauthorized", json_integer((json_int_t)f->c.unauthorized));
    json_object_set_new(o, "bad_requests", json_integer((json_int_t)f->c.bad_requests));
    json_object_set_new(o, "faults", faults);
    json_object_set_new(o, "tasks", tasks);
    json_object_set_new(o, "canonicalize_proposals", json_integer((json_int_t)f->c.canon_proposals));
    json_object_set_new(o, "canonicalize_max_proposals",
                        json_integer((json_int_t)f->c.canon_max_proposals));
    json_object_set_new(o, "prompt_tokens", json_integer(f->c.prompt_tokens));
    json_object_set_new(o, "cached_tokens", json_integer(f->c.cached_tokens));
    json_object_set_new(o, "completion_tokens", json_integer(f->c.completion_tokens));
    json_object_set_new(o, "conns_accepted", json_integer((json_int_t)s.conns_accepted));
    json_object_set_new(o, "conns_refused", json_integer((json_int_t)s.conns_refused));
    json_object_set_new(o, "max_conns_open", json_integer(s.max_conns_open));
    json_object_set_new(o, "aborted", json_integer((json_int_t)s.aborted));
    json_object_set_new(o, "now_ms", json_integer(mono_ms() - f->t0_ms));
    return o;
}

static int parse_dist(const char *s) {
    if (!s) return -1;
    if (!strcmp(s, "fixed")) return DIST_FIXED;
    if (!strcmp(s, "uniform")) return DIST_UNIFORM;
    if (!strcmp(s, "exp")) return DIST_EXP;
    if (!strcmp(s, "lognormal")) return DIST_LOGNORMAL;
    return -1;
}

/* Applies a /_config body; -1 with why on a bad value (nothing applied then). */
static int apply_config(fake *f, const json_t *o, char *why, size_t len) {
    fake_config c = f->cfg;
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)o, k, v) {
        if (!strcmp(k, "latency_dist")) {
            c.dist = parse_dist(json_string_value(v));
            if (c.dist < 0) return snprintf(why, len, "latency_dist: fixed|uniform|exp|lognormal"), -1;
            continue;
        }
        if (!json_is_number(v) || json_number_value(v) < 0)
            return snprintf(why, len, "%s: expected a non-negative number", k), -1;
        double d = json_number_value(v);
        int fk = -1;
        for (int i = F_500; i < F_COUNT; i++) {
            char name[32];
            snprintf(name, sizeof name, "fault_%s", FAULT_NAMES[i]);
            if (!strcmp(k, name)) fk = i;
        }
        int tk = -1;
        for (int t = 0; t < LLM_TASK_COUNT; t++) {
            char name[48];
            snprintf(name, sizeof name, "%s_latency_ms", llm_task_name((enum llm_task)t));
            if (t != LLM_EMBED && !strcmp(k, name)) tk = t;
        }
        if (fk > 0) c.fault[fk] = d;
        else if (tk >= 0) c.task_latency_ms[tk] = d;
        else if (!strcmp(k, "latency_ms")) c.latency_ms = d;
        else if (!strcmp(k, "rpm")) c.rpm = d;
        else if (!strcmp(k, "window_ms") && d >= 1) c.window_ms = (int64_t)d;
        else if (!strcmp(k, "retry_after_ms")) c.retry_after_ms = (int64_t)d;
        else if (!strcmp(k, "prompt_cache")) c.no_prompt_cache = d == 0;
        else return snprintf(why, len, "unknown setting %s", k), -1;
    }
    f->cfg.latency_ms = c.latency_ms;
    memcpy(f->cfg.task_latency_ms, c.task_latency_ms, sizeof c.task_latency_ms);
    f->cfg.dist = c.dist;
    f->cfg.rpm = c.rpm;
    f->cfg.window_ms = c.window_ms;
    f->cfg.retry_after_ms = c.retry_after_ms;
    memcpy(f->cfg.fault, c.fault, sizeof c.fault);
    f->cfg.no_prompt_cache = c.no_prompt_cache;
    return 0;
}

static void handle(fh_request *req, void *ctx) {
    fake *f = ctx;
    const char *path = fh_req_path(req), *method = fh_req_method(req);
    size_t plen = strlen(path);
    if (!strcmp(method, "GET") && !strcmp(path, "/_stats")) {
        respond_json(req, 200, stats_json(f));
    } else if (!strcmp(method, "POST") && !strcmp(path, "/_reset")) {
        memset(&f->c, 0, sizeof f->c);
        fh_reset_stats(f->srv);
        respond_json(req, 200, json_pack("{sb}", "ok", 1));
    } else if (!strcmp(method, "POST") && !strcmp(path, "/_config")) {
        size_t len;
        const char *raw = fh_req_body(req, &len);
        json_t *o = json_loadb(raw, len, 0, NULL);
        char why[128] = "expected a JSON object";
        if (json_is_object(o) && apply_config(f, o, why, sizeof why) == 0)
            respond_json(req, 200, json_pack("{sb}", "ok", 1));
        else
            respond_error(req, 400, "invalid_request_error", NULL, why);
        json_decref(o);
    } else if (!strcmp(method, "POST") && plen >= 17 && !strcmp(path + plen - 17, "/chat/completions")) {
        api_request(f, req, 0);
    } else if (!strcmp(method, "POST") && plen >= 11 && !strcmp(path + plen - 11, "/embeddings")) {
        api_request(f, req, 1);
    } else {
        f->c.other++;
        respond_error(req, 404, "invalid_request_error", NULL, "no such endpoint");
    }
}

/* ------------------------------------------------------------ main */

static const char USAGE[] =
    "usage: fake_openai --vocab FILE [--port N] [--latency-ms N]\n"
    "                   [--latency-dist fixed|uniform|exp|lognormal] [--max-conn N]\n"
    "                   [--rpm N] [--window-ms N] [--retry-after-ms N] [--require-key KEY]\n"
    "                   [--fault-500 P] [--fault-429 P] [--fault-timeout P]\n"
    "                   [--fault-truncated P] [--fault-nonjson P] [--fault-types P] [--seed S]\n";

static int number_arg(const char *opt, const char *s, double max, double *out) {
    char *end;
    double d = strtod(s, &end);
    if (!*s || *end || d < 0 || d > max) {
        fprintf(stderr, "fake_openai: %s: bad value \"%s\"\n%s", opt, s, USAGE);
        return -1;
    }
    *out = d;
    return 0;
}

/* Parses the command line into f->cfg; the vocabulary path, the port and the
 * connection limit. 0, or the exit status on a usage error. */
static int parse_args(int argc, char **argv, fake *f, const char **vocab_path, double *port,
                      double *maxconn) {
    static const struct option opts[] = {
        {"port", required_argument, NULL, 'p'},          {"vocab", required_argument, NULL, 'v'},
        {"latency-ms", required_argument, NULL, 'l'},    {"latency-dist", required_argument, NULL, 'd'},
        {"max-conn", required_argument, NULL, 'c'},      {"rpm", required_argument, NULL, 'r'},
        {"window-ms", required_argument, NULL, 'w'},     {"retry-after-ms", required_argument, NULL, 'a'},
        {"require-key", required_argument, NULL, 'k'},   {"seed", required_argument, NULL, 's'},
        {"fault-500", required_argument, NULL, '5'},     {"fault-429", required_argument, NULL, '4'},
        {"fault-timeout", required_argument, NULL, 't'}, {"fault-truncated", required_argument, NULL, 'u'},
        {"fault-nonjson", required_argument, NULL, 'n'}, {"fault-types", required_argument, NULL, 'y'},
        {"help", no_argument, NULL, 'h'},                {0}};
    fake_config *cfg = &f->cfg;
    for (int t = 0; t < LLM_TASK_COUNT; t++) cfg->task_latency_ms[t] = -1;
    double d = 0;
    int c;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        int bad = 0;
        switch (c) {
        case 'p': bad = number_arg("--port", optarg, 65535, port); break;
        case 'v': *vocab_path = optarg; break;
        case 'l': bad = number_arg("--latency-ms", optarg, 3600000, &cfg->latency_ms); break;
        case 'd':
            cfg->dist = parse_dist(optarg);
            bad = cfg->dist < 0;
            if (bad) fprintf(stderr, "fake_openai: --latency-dist: fixed|uniform|exp|lognormal\n");
            break;
        case 'c': bad = number_arg("--max-conn", optarg, 1e6, maxconn); break;
        case 'r': bad = number_arg("--rpm", optarg, 1e9, &cfg->rpm); break;
        case 'w':
            bad = number_arg("--window-ms", optarg, 3600000, &d) || d < 1;
            cfg->window_ms = (int64_t)d;
            break;
        case 'a':
            bad = number_arg("--retry-after-ms", optarg, 3600000, &d);
            cfg->retry_after_ms = (int64_t)d;
            break;
        case 'k': cfg->require_key = optarg; break;
        case 's':
            bad = number_arg("--seed", optarg, 1e18, &d);
            cfg->seed = (uint64_t)d;
            break;
        case '5': bad = number_arg("--fault-500", optarg, 1, &cfg->fault[F_500]); break;
        case '4': bad = number_arg("--fault-429", optarg, 1, &cfg->fault[F_429]); break;
        case 't': bad = number_arg("--fault-timeout", optarg, 1, &cfg->fault[F_TIMEOUT]); break;
        case 'u': bad = number_arg("--fault-truncated", optarg, 1, &cfg->fault[F_TRUNCATED]); break;
        case 'n': bad = number_arg("--fault-nonjson", optarg, 1, &cfg->fault[F_NONJSON]); break;
        case 'y': bad = number_arg("--fault-types", optarg, 1, &cfg->fault[F_TYPES]); break;
        case 'h': fputs(USAGE, stdout); return -1;
        default: fputs(USAGE, stderr); return 2;
        }
        if (bad) return 2;
    }
    if (!*vocab_path || optind < argc) {
        fputs(USAGE, stderr);
        return 2;
    }
    return 0;
}

int main(int argc, char **argv) {
    fake f;
    memset(&f, 0, sizeof f);
    f.cfg.window_ms = 60000;
    f.cfg.retry_after_ms = 1000;
    f.cfg.seed = 1;
    const char *vocab_path = NULL;
    double port = 0, maxconn = 0;
    int rc = parse_args(argc, argv, &f, &vocab_path, &port, &maxconn);
    if (rc) return rc < 0 ? 0 : rc;
    char err[512];
    f.v = vocab_load(vocab_path, err, sizeof err);
    if (!f.v) {
        fprintf(stderr, "fake_openai: %s\n", err);
        return 1;
    }
    f.local = llm_local_new(f.v);
    rng_seed(&f.rng, f.cfg.seed);
    f.t0_ms = mono_ms();
    fh_options o = {0};
    o.port = (int)port;
    o.max_connections = (int)maxconn;
    o.max_body = (size_t)64 << 20;
    o.handler = handle;
    o.ctx = &f;
    f.srv = fh_create(&o);
    if (!f.srv) {
        fprintf(stderr, "fake_openai: cannot listen on port %d\n", (int)port);
        llm_provider_destroy(f.local);
        vocab_free(f.v);
        return 1;
    }
    g_server = f.srv;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    printf("listening on 127.0.0.1:%d\n", fh_port(f.srv));
    fflush(stdout);
    rc = fh_run(f.srv);
    g_server = NULL;
    fh_destroy(f.srv);
    llm_provider_destroy(f.local);
    vocab_free(f.v);
    strmap_free(&f.seen, NULL);
    strmap_free(&f.prefixes[0], NULL);
    strmap_free(&f.prefixes[1], NULL);
    free(f.accepted.t);
    free(f.arrivals.t);
    return rc == 0 ? 0 : 1;
}
