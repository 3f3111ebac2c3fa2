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
 *    statistics), "dimensions" honoured, as lists of numbers or (encoding_format
 *    "base64") base64 strings; another encoding_format is a 400;
 *  - usage tokens ~ bytes / 4; x-ratelimit-* headers on every answer when --rpm is set;
 *  - usage.prompt_tokens_details.cached_tokens as OpenAI's automatic prompt caching
 *    reports it (see "prompt-prefix cache" below);
 *  - GET /_stats: counters (JSON); POST /_reset zeroes them (the prompt-prefix cache
 *    stays, as a real endpoint's would); POST /_config changes
 *    latency_ms, latency_dist, rpm, window_ms, retry_after_ms, the fault_* rates and
 *    prompt_cache (0: no prompt_tokens_details, as servers without them) at run time
 *    (JSON body with those keys); TASK_latency_ms (TASK a chat task name,
 *    e.g. story_latency_ms) sets a fixed latency for that task's answers alone;
 *    hostile answers (/_config only): huge_body_bytes N pads every chat answer to N
 *    bytes (valid JSON, blanks before the last brace), endless_body 1 announces a
 *    Content-Length of 1 TiB and sends huge_body_bytes (default 8 MiB) of it, oov 1
 *    replaces every one-word string of a chat answer's object with "zz_oov_value"
 *    (valid JSON and types, values outside every vocabulary), oov 2 the same except
 *    in classification answers (so the later phases see such values);
 *    kill_pid P with kill_at_request N sends SIGKILL to process P as the N-th API
 *    request (counted since the last /_reset) arrives, or with kill_at_task T too as
 *    the N-th request of task T (e.g. "story") arrives; /_stats then has "killed"
 *    {at_request, at_task_request, in_flight (that request included), task}. Per
 *    task, /_stats gives first_request and last_request, the ordinals of its first
 *    and last requests.
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
 * Batch API: POST .../files (multipart/form-data, purpose=batch, the JSONL file),
 * POST .../batches ({"input_file_id", "endpoint", "completion_window"}), GET
 * .../batches/ID, POST .../batches/ID/cancel and GET .../files/ID/content. Each line of
 * a batch is answered exactly as its chat or embeddings request would be (the same
 * handlers, without transport faults), batch_delay_ms after the batch was created (the
 * status polls see validating/in_progress until then). Per line, batch_line_error (a
 * rate, drawn like the faults from the custom_id and how many times it was seen) makes
 * it an error line (HTTP 500 in the error file). batch_expire_frac < 1 makes batches
 * expire with only that share of their lines answered (the rest in the error file with
 * code batch_expired). A cancelled batch answers the share of its delay that had
 * passed when the cancel arrived (code batch_cancelled for the rest). /_stats counts
 * files_uploaded, batch_lines_uploaded, batch_duplicate_lines (custom_ids uploaded
 * before), batches_created, batch_polls, batch_cancels, batch_downloads,
 * batch_line_errors, and lists the batches (id, status, requests, polls).
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
#include "util/base64.h"
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
    double batch_delay_ms;
    double batch_line_error;
    double batch_expire_frac; /* 1 = batches do not expire */
    size_t huge_body_bytes;   /* > 0: chat answers padded to this size */
    int endless_body;         /* Content-Length 1 TiB, huge_body_bytes sent */
    int oov;                  /* one-word strings -> "zz_oov_value" */
    double kill_pid;          /* > 0: SIGKILL this process ... */
    double kill_at_request;   /* ... when the API request with this ordinal arrives */
    int kill_task;            /* >= 0: the ordinal counts this task's requests alone */
} fake_config;

/* A FIFO of millisecond timestamps (a sliding window). */
typedef struct tsq {
    int64_t *t;
    size_t head, n, cap;
} tsq;

typedef struct task_stat {
    uint64_t n;
    int64_t first_ms, last_ms; /* first arrival, last answer release (fake's clock) */
    uint64_t first_request, last_request; /* their ordinals among API requests (from 1) */
    int64_t cached_tokens;     /* reported as served from the prompt-prefix cache */
} task_stat;

typedef struct counters {
    uint64_t requests, chat, embeddings, embedding_inputs, other;
    uint64_t embedding_inputs_base64; /* answered as base64 strings */
    uint64_t rate_limited, rate_limited_window, unauthorized, bad_requests;
    uint64_t faults[F_COUNT];
    int64_t max_in_flight;
    uint64_t max_window_arrivals;
    int64_t prompt_tokens, completion_tokens, cached_tokens;
    task_stat tasks[LLM_TASK_COUNT];
    uint64_t canon_proposals, canon_max_proposals; /* proposals per canonicalisation */
    uint64_t files_uploaded, batch_lines_uploaded, batch_duplicate_lines, batches_created;
    uint64_t batch_polls, batch_cancels, batch_downloads, batch_line_errors;
    /* The kill switch: the request that triggered it, what was in flight then (that
     * request included) and its task (-1: none yet, or not a task). */
    uint64_t killed_at_request;
    uint64_t killed_task_request; /* the ordinal among its task's requests */
    int64_t killed_in_flight;
    int killed_task;
    int last_task; /* the task of the latest API request */
} counters;

typedef struct fbatch {
    char id[40], input_file_id[40], output_file_id[40], error_file_id[40];
    char endpoint[96];
    char status[16];
    json_t *lines;        /* [{"custom_id", "body"}] */
    int64_t created_ms, cancel_ms;
    int64_t polls, completed, failed;
} fbatch;

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
    strmap_t files;      /* file id -> content (char *) */
    strmap_t uploaded;   /* custom_ids ever uploaded */
    strmap_t line_seen;  /* custom_id -> times answered in a batch (uintptr_t) */
    fbatch **batches;
    size_t nbatches, batches_cap;
    uint64_t next_file, next_batch;
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

/* One-word strings (enum-like values) become a value outside every vocabulary. */
static json_t *oov_values(const json_t *a) {
    json_t *o = json_object();
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)a, k, v) {
        const char *sv = json_string_value(v);
        if (sv && !strchr(sv, ' ')) json_object_set_new(o, k, json_string("zz_oov_value"));
        else json_object_set(o, k, v);
    }
    return o;
}

static void count_task(fake *f, int task, int64_t arrival, int64_t release) {
    if (task < 0 || task >= LLM_TASK_COUNT) return;
    task_stat *t = &f->c.tasks[task];
    if (t->n++ == 0 || arrival < t->first_ms) t->first_ms = arrival;
    if (release > t->last_ms) t->last_ms = release;
    if (t->n == 1) t->first_request = f->c.requests;
    t->last_request = f->c.requests;
    f->c.last_task = task;
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

/* The chat answer's content, or NULL with why (an HTTP 400 for the caller). */
static char *chat_content(fake *f, const json_t *body, int *task, char *why, size_t whylen) {
    const char *msg = task_message(jx_arr(body, "messages"));
    prompt_blocks b;
    if (!msg || prompts_parse_user(msg, &b) != 0 || b.task < 0 || b.task == LLM_EMBED) {
        if (msg) prompt_blocks_free(&b);
        f->c.bad_requests++;
        snprintf(why, whylen, "the user message has no known \"Task:\" line");
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
        snprintf(why, whylen, "%s", c.error[0] ? c.error : "no answer");
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

/* Appends v as "%.9f" would, without printf: an embeddings answer is tens of thousands
 * of numbers, and while the fake's one thread formats them every answer due meanwhile
 * waits (printf took ~50 ms for 32 vectors of 1536). */
static void put_number(buf_t *b, float v) {
    double d = (double)v;
    if (!isfinite(d) || fabs(d) >= 1e9) {
        buf_printf(b, "%.9f", d);
        return;
    }
    char tmp[32], *p = tmp + sizeof tmp;
    uint64_t scaled = (uint64_t)(fabs(d) * 1e9 + 0.5);
    uint64_t ip = scaled / 1000000000u, fp = scaled % 1000000000u;
    for (int i = 0; i < 9; i++, fp /= 10) *--p = (char)('0' + fp % 10);
    *--p = '.';
    do *--p = (char)('0' + ip % 10);
    while ((ip /= 10) > 0);
    if (d < 0 && scaled > 0) *--p = '-';
    buf_append(b, p, (size_t)(tmp + sizeof tmp - p));
}

/* The embeddings response text, or NULL with why (an HTTP 400 for the caller). */
static char *embeddings_text(fake *f, const json_t *body, int types_fault, size_t *ninputs,
                             int64_t *tokens, char *why, size_t whylen) {
    json_t *input = json_object_get(body, "input");
    size_t n = json_is_array(input) ? json_array_size(input) : json_is_string(input) ? 1 : 0;
    if (n == 0) {
        f->c.bad_requests++;
        snprintf(why, whylen, "input must be a string or a list");
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
            snprintf(why, whylen, "inputs must be non-empty strings");
            return NULL;
        }
        bytes += (int64_t)strlen(texts[i]);
    }
    /* As the API: "float" (the default) or "base64" (little-endian float32 bytes). */
    json_t *fmt = json_object_get(body, "encoding_format");
    const char *format = fmt ? json_string_value(fmt) : "float";
    if (!format || (strcmp(format, "float") && strcmp(format, "base64"))) {
        free(texts);
        f->c.bad_requests++;
        snprintf(why, whylen, "encoding_format must be \"float\" or \"base64\"");
        return NULL;
    }
    int base64 = !strcmp(format, "base64");
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
        const float *v = c.vectors + i * (size_t)c.dim;
        if (base64) {
            char *enc = base64_from_floats(v, c.dim);
            buf_printf(&b, "\"%s\"}", enc);
            free(enc);
            continue;
        }
        buf_putc(&b, '[');
        for (int k = 0; k < c.dim; k++) {
            if (k) buf_putc(&b, ',');
            put_number(&b, v[k]);
        }
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
        snprintf(why, whylen, "cannot embed the inputs");
        return NULL;
    }
    f->c.embedding_inputs_base64 += base64 ? n : 0;
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
 * applied; NULL with why when the request is bad (HTTP 400). */
static char *chat_text(fake *f, uint64_t id, const json_t *body, size_t body_len, int fault,
                       int *task, char *why, size_t whylen) {
    char *content = chat_content(f, body, task, why, whylen);
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
    if (f->cfg.oov == 1 || (f->cfg.oov == 2 && *task != LLM_CLASSIFY)) {
        json_t *a = json_loads(content, 0, NULL);
        if (json_is_object(a)) {
            json_t *w = oov_values(a);
            free(content);
            content = jx_dump(w);
            json_decref(w);
        }
        json_decref(a);
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
    json_t *env = chat_envelope(model ? model : "fake", content, pt, cached, ct, id);
    char *text = jx_dump(env);
    json_decref(env);
    free(content);
    return text;
}

/* Answers a request that drew no transport-level fault: 200 the latency after its
 * arrival (or a truncated 200 for that fault). */
static void answer(fake *f, fh_request *req, const json_t *body, size_t body_len, int fault,
                   int embeddings, int64_t now, int64_t delay) {
    char *text = NULL;
    int task = LLM_EMBED;
    char why[300] = "";
    if (embeddings) {
        size_t n = 0;
        int64_t tokens = 0;
        text = embeddings_text(f, body, fault == F_TYPES || fault == F_NONJSON, &n, &tokens, why,
                               sizeof why);
        if (text) {
            f->c.embeddings++;
            f->c.embedding_inputs += n;
            f->c.prompt_tokens += tokens;
        }
    } else {
        text = chat_text(f, fh_req_id(req), body, body_len, fault, &task, why, sizeof why);
    }
    if (!text) {
        respond_error(req, 400, "invalid_request_error", NULL, why);
        return;
    }
    if (task >= 0 && task < LLM_TASK_COUNT && f->cfg.task_latency_ms[task] >= 0)
        delay = (int64_t)(f->cfg.task_latency_ms[task] + 0.5);
    count_task(f, task, now, now + delay);
    add_rate_headers(f, req, now);
    size_t tl = strlen(text);
    if (!embeddings && (f->cfg.huge_body_bytes > tl || f->cfg.endless_body)) {
        size_t n = f->cfg.huge_body_bytes > tl ? f->cfg.huge_body_bytes : (8u << 20);
        char *big = xmalloc(n);
        memcpy(big, text, tl - 1); /* all but the envelope's last brace */
        memset(big + tl - 1, ' ', n - tl);
        big[n - 1] = '}';
        if (f->cfg.endless_body)
            fh_respond_truncated(req, delay, 200, "application/json", big, (size_t)1 << 40, n);
        else fh_respond_after(req, delay, 200, "application/json", big, n);
        free(big);
        free(text);
        return;
    }
    if (fault == F_TRUNCATED) fh_respond_truncated(req, delay, 200, "application/json", text, tl, tl / 2);
    else fh_respond_after_arrival(req, delay * 1000, 200, "application/json", text, tl);
    free(text);
}

static void handle_api_request(fake *f, fh_request *req, int embeddings);

/* The kill switch (/_config kill_pid, kill_at_request, kill_at_task): the client
 * process is killed with SIGKILL as the request with that ordinal (among the task's
 * requests when kill_at_task names one) arrives, after the fake has taken it in
 * (so it counts, with the requests in flight, as work the client may have lost), for
 * tests that crash a client at a chosen point of a run. It fires once. */
static void api_request(fake *f, fh_request *req, int embeddings) {
    f->c.requests++;
    f->c.last_task = -1;
    handle_api_request(f, req, embeddings);
    int task = f->c.last_task;
    uint64_t task_n = task >= 0 ? f->c.tasks[task].n : 0;
    int due = f->cfg.kill_task >= 0
                  ? task == f->cfg.kill_task && (double)task_n == f->cfg.kill_at_request
                  : (double)f->c.requests == f->cfg.kill_at_request;
    if (f->cfg.kill_pid > 0 && due) {
        pid_t pid = (pid_t)f->cfg.kill_pid;
        f->cfg.kill_pid = 0;
        f->c.killed_at_request = f->c.requests;
        f->c.killed_task_request = task_n;
        f->c.killed_in_flight = fh_stats(f->srv).in_flight;
        f->c.killed_task = f->c.last_task;
        if (kill(pid, SIGKILL) != 0) perror("fake_openai: kill");
    }
}

static void handle_api_request(fake *f, fh_request *req, int embeddings) {
    /* Times are the request's arrival: the latency of an answer runs from there, not
     * from when this (single-threaded) server got round to it or finished computing it,
     * so the configured latency is what a client sees, whatever the server's load. */
    int64_t now = fh_req_arrival_us(req) / 1000 - f->t0_ms;
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

/* ------------------------------------------------------------ Batch API */

static const char *path_after(const char *path, const char *marker) {
    const char *p = strstr(path, marker);
    return p ? p + strlen(marker) : NULL;
}

/* The "file" part of a multipart/form-data body, or NULL. */
static char *multipart_file(fh_request *req, size_t *outlen) {
    const char *ct = fh_req_header(req, "Content-Type");
    const char *bd = ct ? strstr(ct, "boundary=") : NULL;
    if (!bd) return NULL;
    char delim[200];
    snprintf(delim, sizeof delim, "--%.*s", (int)strcspn(bd + 9, "; \r\n"), bd + 9);
    size_t len;
    const char *body = fh_req_body(req, &len), *end = body + len;
    const char *p = body;
    size_t dl = strlen(delim);
    while (p && p < end) {
        const char *part = memmem(p, (size_t)(end - p), delim, dl);
        if (!part) return NULL;
        part += dl;
        const char *hdr_end = memmem(part, (size_t)(end - part), "\r\n\r\n", 4);
        if (!hdr_end) return NULL;
        const char *content = hdr_end + 4;
        const char *next = memmem(content, (size_t)(end - content), delim, dl);
        if (!next) return NULL;
        size_t hl = (size_t)(hdr_end - part);
        if (memmem(part, hl, "name=\"file\"", 11)) {
            size_t n = (size_t)(next - content);
            if (n >= 2 && content[n - 2] == '\r' && content[n - 1] == '\n') n -= 2;
            *outlen = n;
            return xstrndup(content, n);
        }
        p = next;
    }
    return NULL;
}

static char *new_file(fake *f, char *content) {
    char id[40];
    snprintf(id, sizeof id, "file-fake%llu", (unsigned long long)++f->next_file);
    free(strmap_put(&f->files, id, content));
    return xstrdup(id);
}

static void h_file_upload(fake *f, fh_request *req) {
    size_t n = 0;
    char *content = multipart_file(req, &n);
    if (!content) {
        f->c.bad_requests++;
        respond_error(req, 400, "invalid_request_error", NULL, "expected a multipart file");
        return;
    }
    f->c.files_uploaded++;
    char *id = new_file(f, content);
    respond_json(req, 200, json_pack("{ss ss sI ss ss}", "id", id, "object", "file", "bytes",
                                     (json_int_t)n, "purpose", "batch", "filename",
                                     "batch.jsonl"));
    free(id);
}

static fbatch *find_batch(fake *f, const char *id, size_t idlen) {
    for (size_t i = 0; i < f->nbatches; i++)
        if (strlen(f->batches[i]->id) == idlen && !strncmp(f->batches[i]->id, id, idlen))
            return f->batches[i];
    return NULL;
}

static json_t *batch_json(const fbatch *b) {
    json_t *o = json_pack("{ss ss ss ss ss ss s{sIsIsI}}", "id", b->id, "object", "batch",
                          "endpoint", b->endpoint, "input_file_id", b->input_file_id,
                          "completion_window", "24h", "status", b->status, "request_counts",
                          "total", (json_int_t)json_array_size(b->lines), "completed",
                          (json_int_t)b->completed, "failed", (json_int_t)b->failed);
    json_object_set_new(o, "output_file_id",
                        b->output_file_id[0] ? json_string(b->output_file_id) : json_null());
    json_object_set_new(o, "error_file_id",
                        b->error_file_id[0] ? json_string(b->error_file_id) : json_null());
    return o;
}

static void h_batch_create(fake *f, fh_request *req) {
    size_t len;
    const char *raw = fh_req_body(req, &len);
    json_t *o = json_loadb(raw, len, 0, NULL);
    const char *fid = jx_str(o, "input_file_id"), *endpoint = jx_str(o, "endpoint");
    const char *content = fid ? strmap_get(&f->files, fid) : NULL;
    if (!content || !endpoint ||
        (!strstr(endpoint, "/chat/completions") && !strstr(endpoint, "/embeddings"))) {
        json_decref(o);
        f->c.bad_requests++;
        respond_error(req, 400, "invalid_request_error", NULL,
                      "input_file_id and a supported endpoint are required");
        return;
    }
    fbatch *b = xcalloc(1, sizeof *b);
    snprintf(b->id, sizeof b->id, "batch_fake%llu", (unsigned long long)++f->next_batch);
    snprintf(b->input_file_id, sizeof b->input_file_id, "%s", fid);
    snprintf(b->endpoint, sizeof b->endpoint, "%s", endpoint);
    snprintf(b->status, sizeof b->status, "validating");
    b->lines = json_array();
    b->created_ms = mono_ms();
    b->cancel_ms = -1;
    strmap_t in_batch = STRMAP_INIT;
    const char *why = NULL;
    for (const char *p = content; *p && !why;) {
        const char *nl = strchr(p, '\n');
        size_t n = nl ? (size_t)(nl - p) : strlen(p);
        if (n > 0) {
            json_t *line = json_loadb(p, n, 0, NULL);
            const char *cid = jx_str(line, "custom_id"), *url = jx_str(line, "url");
            if (!cid || !url || strcmp(url, endpoint) || !json_is_object(jx_obj(line, "body")))
                why = "every line needs custom_id, the batch's url and a body";
            else if (strmap_has(&in_batch, cid))
                why = "custom_id values must be unique within a batch";
            else {
                strmap_put(&in_batch, cid, NULL);
                if (strmap_has(&f->uploaded, cid)) f->c.batch_duplicate_lines++;
                strmap_put(&f->uploaded, cid, NULL);
                json_array_append_new(b->lines, json_pack("{sssO}", "custom_id", cid, "body",
                                                          jx_obj(line, "body")));
            }
            json_decref(line);
        }
        p = nl ? nl + 1 : p + n;
    }
    strmap_free(&in_batch, NULL);
    json_decref(o);
    if (why || !json_array_size(b->lines)) {
        json_decref(b->lines);
        free(b);
        f->c.bad_requests++;
        respond_error(req, 400, "invalid_request_error", NULL, why ? why : "the file is empty");
        return;
    }
    f->c.batches_created++;
    f->c.batch_lines_uploaded += json_array_size(b->lines);
    XGROW(f->batches, f->batches_cap, f->nbatches + 1);
    f->batches[f->nbatches++] = b;
    respond_json(req, 200, batch_json(b));
}

/* One line answered as its direct request would be; 0, or -1 with an error object. */
static char *batch_line(fake *f, const fbatch *b, const json_t *line, size_t i) {
    const char *cid = jx_str(line, "custom_id");
    json_t *body = jx_obj(line, "body");
    uintptr_t seen = (uintptr_t)strmap_get(&f->line_seen, cid);
    strmap_put(&f->line_seen, cid, (void *)(seen + 1));
    char rid[96];
    snprintf(rid, sizeof rid, "batch_req_%s_%zu", b->id, i);
    if (f->cfg.batch_line_error > 0) {
        uint64_t x = hash_mix64(fnv1a64(cid, strlen(cid)) ^ hash_mix64(f->cfg.seed) ^
                                hash_mix64(seen + 0x51ed));
        double u = (double)(x >> 11) / 9007199254740992.0;
        if (u < f->cfg.batch_line_error) {
            f->c.batch_line_errors++;
            json_t *e = json_pack("{ss ss s{si s{s{ssss}}} sn}", "id", rid, "custom_id", cid,
                                  "response", "status_code", 500, "body", "error", "message",
                                  "The server had an error (injected)", "type", "server_error",
                                  "error");
            char *t = jx_dump(e);
            json_decref(e);
            return t;
        }
    }
    char why[300] = "";
    char *text = NULL;
    int task = LLM_EMBED;
    char *bs = jx_dump(body);
    if (strstr(b->endpoint, "/embeddings")) {
        size_t n = 0;
        int64_t tokens = 0;
        text = embeddings_text(f, body, 0, &n, &tokens, why, sizeof why);
        if (text) {
            f->c.embedding_inputs += n;
            f->c.prompt_tokens += tokens;
        }
    } else {
        text = chat_text(f, (uint64_t)i + 1, body, strlen(bs), F_NONE, &task, why, sizeof why);
    }
    free(bs);
    int64_t now = mono_ms() - f->t0_ms;
    count_task(f, task, now, now);
    json_t *resp = text ? json_loads(text, 0, NULL) : NULL;
    free(text);
    json_t *l;
    if (resp)
        l = json_pack("{ss ss s{si ss so} sn}", "id", rid, "custom_id", cid, "response",
                      "status_code", 200, "request_id", rid, "body", resp, "error");
    else
        l = json_pack("{ss ss s{si s{s{ssss}}} sn}", "id", rid, "custom_id", cid, "response",
                      "status_code", 400, "body", "error", "message", why, "type",
                      "invalid_request_error", "error");
    char *t = jx_dump(l);
    json_decref(l);
    return t;
}

/* Ends a batch: the first `answered` lines are answered, the rest get `code`. */
static void finalize_batch(fake *f, fbatch *b, const char *status, size_t answered,
                           const char *code) {
    buf_t out = BUF_INIT, err = BUF_INIT;
    size_t i;
    json_t *line;
    json_array_foreach(b->lines, i, line) {
        if (i < answered) {
            char *t = batch_line(f, b, line, i);
            json_t *o = json_loads(t, 0, NULL);
            int ok = jx_int(jx_obj(o, "response"), "status_code", 0) == 200;
            json_decref(o);
            buf_t *dst = ok ? &out : &err;
            buf_printf(dst, "%s\n", t);
            if (ok) b->completed++;
            else b->failed++;
            free(t);
        } else {
            json_t *e = json_pack("{ss s{ssss} sn}", "custom_id", jx_str(line, "custom_id"),
                                  "error", "code", code, "message",
                                  "This request was not executed", "response");
            char *t = jx_dump(e);
            json_decref(e);
            buf_printf(&err, "%s\n", t);
            free(t);
        }
    }
    if (out.len) {
        char *id = new_file(f, buf_detach(&out));
        snprintf(b->output_file_id, sizeof b->output_file_id, "%s", id);
        free(id);
    }
    if (err.len) {
        char *id = new_file(f, buf_detach(&err));
        snprintf(b->error_file_id, sizeof b->error_file_id, "%s", id);
        free(id);
    }
    buf_free(&out);
    buf_free(&err);
    snprintf(b->status, sizeof b->status, "%s", status);
}

static void advance_batch(fake *f, fbatch *b) {
    int64_t now = mono_ms();
    size_t n = json_array_size(b->lines);
    double delay = f->cfg.batch_delay_ms;
    if (!strcmp(b->status, "cancelling")) {
        double share = delay > 0 ? (double)(b->cancel_ms - b->created_ms) / delay : 1;
        if (share > 1) share = 1;
        finalize_batch(f, b, "cancelled", (size_t)floor(share * (double)n), "batch_cancelled");
        return;
    }
    if (strcmp(b->status, "validating") && strcmp(b->status, "in_progress")) return;
    if ((double)(now - b->created_ms) < delay) {
        snprintf(b->status, sizeof b->status, "in_progress");
        return;
    }
    if (f->cfg.batch_expire_frac < 1)
        finalize_batch(f, b, "expired", (size_t)floor(f->cfg.batch_expire_frac * (double)n),
                       "batch_expired");
    else
        finalize_batch(f, b, "completed", n, NULL);
}

/* GET .../batches/ID, POST .../batches/ID/cancel */
static void h_batch(fake *f, fh_request *req, const char *rest, int cancel) {
    size_t idlen = strcspn(rest, "/");
    fbatch *b = find_batch(f, rest, idlen);
    if (!b) {
        respond_error(req, 404, "invalid_request_error", NULL, "no such batch");
        return;
    }
    if (cancel) {
        f->c.batch_cancels++;
        advance_batch(f, b); /* a batch already done stays as it is */
        if (!strcmp(b->status, "validating") || !strcmp(b->status, "in_progress")) {
            snprintf(b->status, sizeof b->status, "cancelling");
            b->cancel_ms = mono_ms();
        }
    } else {
        f->c.batch_polls++;
        b->polls++;
        advance_batch(f, b);
    }
    respond_json(req, 200, batch_json(b));
}

static void h_file_content(fake *f, fh_request *req, const char *rest) {
    size_t idlen = strcspn(rest, "/");
    char id[64];
    snprintf(id, sizeof id, "%.*s", (int)(idlen < 63 ? idlen : 63), rest);
    const char *content = strmap_get(&f->files, id);
    if (!content) {
        respond_error(req, 404, "invalid_request_error", NULL, "no such file");
        return;
    }
    f->c.batch_downloads++;
    fh_respond(req, 200, "application/jsonl", content, strlen(content));
}

/* Routes of the Batch API; 1 when the request was one of them. */
static int batch_route(fake *f, fh_request *req, const char *method, const char *path) {
    const char *rest;
    int post = !strcmp(method, "POST"), get = !strcmp(method, "GET");
    if (!authorized(f, req) && (strstr(path, "/files") || strstr(path, "/batches"))) {
        f->c.unauthorized++;
        respond_error(req, 401, "invalid_request_error", "invalid_api_key",
                      "Incorrect API key provided.");
        return 1;
    }
    size_t plen = strlen(path);
    if (post && plen >= 6 && !strcmp(path + plen - 6, "/files")) {
        h_file_upload(f, req);
    } else if (post && plen >= 8 && !strcmp(path + plen - 8, "/batches")) {
        h_batch_create(f, req);
    } else if ((rest = path_after(path, "/batches/")) && *rest) {
        const char *slash = strchr(rest, '/');
        if (post && slash && !strcmp(slash, "/cancel")) h_batch(f, req, rest, 1);
        else if (get && !slash) h_batch(f, req, rest, 0);
        else return 0;
    } else if (get && (rest = path_after(path, "/files/")) && strstr(rest, "/content")) {
        h_file_content(f, req, rest);
    } else {
        return 0;
    }
    return 1;
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
                            json_pack("{sIsIsIsIsIsI}", "requests", (json_int_t)ts->n,
                                      "first_ms", (json_int_t)ts->first_ms, "last_ms",
                                      (json_int_t)ts->last_ms, "first_request",
                                      (json_int_t)ts->first_request, "last_request",
                                      (json_int_t)ts->last_request, "cached_tokens",
                                      (json_int_t)ts->cached_tokens));
    }
    json_t *o = json_object();
    json_object_set_new(o, "requests", json_integer((json_int_t)f->c.requests));
    json_object_set_new(o, "chat", json_integer((json_int_t)f->c.chat));
    json_object_set_new(o, "embeddings", json_integer((json_int_t)f->c.embeddings));
    json_object_set_new(o, "embedding_inputs", json_integer((json_int_t)f->c.embedding_inputs));
    json_object_set_new(o, "embedding_inputs_base64",
                        json_integer((json_int_t)f->c.embedding_inputs_base64));
    json_object_set_new(o, "other", json_integer((json_int_t)f->c.other));
    json_object_set_new(o, "in_flight", json_integer(s.in_flight));
    json_object_set_new(o, "max_in_flight", json_integer(f->c.max_in_flight));
    /* How late the fake itself released delayed answers (its one thread was busy). */
    json_object_set_new(o, "late_mean_us",
                        json_integer(s.delayed ? (json_int_t)(s.late_us / s.delayed) : 0));
    json_object_set_new(o, "late_max_us", json_integer(s.max_late_us));
    /* How soon a connection whose answer went out was sent its next request. */
    json_t *gaps = json_array();
    uint64_t short_gaps = 0;
    for (size_t i = 0; i < FH_GAP_BUCKETS; i++) {
        json_array_append_new(gaps, json_integer((json_int_t)s.gaps[i]));
        if (i + 1 < FH_GAP_BUCKETS) short_gaps += s.gaps[i];
    }
    json_object_set_new(o, "reuse_gaps", gaps);
    json_object_set_new(o, "reuse_gap_first_us", json_integer(FH_GAP_FIRST_US));
    json_object_set_new(o, "reuse_gap_mean_us",
                        json_integer(short_gaps ? (json_int_t)(s.gap_us / short_gaps) : 0));
    /* Requests in flight integrated over time: how busy the client kept its slots. */
    json_object_set_new(o, "busy_request_us", json_integer((json_int_t)s.busy_us));
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
#define BATCH_COUNTER(n) json_object_set_new(o, #n, json_integer((json_int_t)f->c.n));
    BATCH_COUNTER(files_uploaded) BATCH_COUNTER(batch_lines_uploaded)
    BATCH_COUNTER(batch_duplicate_lines) BATCH_COUNTER(batches_created)
    BATCH_COUNTER(batch_polls) BATCH_COUNTER(batch_cancels) BATCH_COUNTER(batch_downloads)
    BATCH_COUNTER(batch_line_errors)
#undef BATCH_COUNTER
    json_t *batches = json_array();
    for (size_t i = 0; i < f->nbatches; i++) {
        const fbatch *b = f->batches[i];
        json_array_append_new(batches, json_pack("{ss ss sI sI ss}", "id", b->id, "status",
                                                 b->status, "requests",
                                                 (json_int_t)json_array_size(b->lines), "polls",
                                                 (json_int_t)b->polls, "endpoint", b->endpoint));
    }
    json_object_set_new(o, "batches", batches);
    if (f->c.killed_at_request) {
        const char *task = f->c.killed_task >= 0 ? llm_task_name((enum llm_task)f->c.killed_task)
                                                 : "";
        json_object_set_new(o, "killed",
                            json_pack("{sIsIsIss}", "at_request", (json_int_t)f->c.killed_at_request,
                                      "at_task_request", (json_int_t)f->c.killed_task_request,
                                      "in_flight", (json_int_t)f->c.killed_in_flight, "task", task));
    }
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
    int kill_task = -2; /* not given */
    json_object_foreach((json_t *)o, k, v) {
        if (!strcmp(k, "kill_at_task")) {
            const char *name = json_string_value(v);
            kill_task = -1;
            for (int t = 0; name && t < LLM_TASK_COUNT; t++)
                if (!strcmp(name, llm_task_name((enum llm_task)t))) kill_task = t;
            if (kill_task < 0) return snprintf(why, len, "kill_at_task: unknown task"), -1;
            continue;
        }
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
        else if (!strcmp(k, "batch_delay_ms")) c.batch_delay_ms = d;
        else if (!strcmp(k, "batch_line_error") && d <= 1) c.batch_line_error = d;
        else if (!strcmp(k, "batch_expire_frac") && d <= 1) c.batch_expire_frac = d;
        else if (!strcmp(k, "huge_body_bytes") && d <= (double)(1u << 30)) c.huge_body_bytes = (size_t)d;
        else if (!strcmp(k, "endless_body")) c.endless_body = d != 0;
        else if (!strcmp(k, "oov") && d <= 2) c.oov = (int)d;
        else if (!strcmp(k, "kill_pid") && d < 4194304 && d == (double)(int64_t)d) c.kill_pid = d;
        else if (!strcmp(k, "kill_at_request") && d >= 1 && d == (double)(int64_t)d)
            c.kill_at_request = d;
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
    f->cfg.batch_delay_ms = c.batch_delay_ms;
    f->cfg.batch_line_error = c.batch_line_error;
    f->cfg.batch_expire_frac = c.batch_expire_frac;
    f->cfg.huge_body_bytes = c.huge_body_bytes;
    f->cfg.endless_body = c.endless_body;
    f->cfg.oov = c.oov;
    f->cfg.kill_pid = c.kill_pid;
    f->cfg.kill_at_request = c.kill_at_request;
    /* Arming a kill without a task counts every request. */
    if (kill_task != -2 || json_object_get(o, "kill_at_request"))
        f->cfg.kill_task = kill_task >= 0 ? kill_task : -1;
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
    } else if (batch_route(f, req, method, path)) {
        /* answered */
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
    f.cfg.kill_task = -1;
    f.cfg.retry_after_ms = 1000;
    f.cfg.seed = 1;
    f.cfg.batch_delay_ms = 300;
    f.cfg.batch_expire_frac = 1;
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
    strmap_free(&f.files, free);
    strmap_free(&f.uploaded, NULL);
    strmap_free(&f.line_seen, NULL);
    for (size_t i = 0; i < f.nbatches; i++) {
        json_decref(f.batches[i]->lines);
        free(f.batches[i]);
    }
    free(f.batches);
    strmap_free(&f.prefixes[0], NULL);
    strmap_free(&f.prefixes[1], NULL);
    free(f.accepted.t);
    free(f.arrivals.t);
    return rc == 0 ? 0 : 1;
}
