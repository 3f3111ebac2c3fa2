/* llm — the provider interface every LLM-backed phase talks to, and its two
 * implementations: the offline analyzer (local.c: rules, vocabulary matching,
 * feature-hashed TF-IDF) and the OpenAI-compatible client (openai.c: libcurl multi,
 * rate limiter, response cache).
 *
 * The interface is asynchronous: a phase submits calls and the engine polls; a
 * provider completes each call exactly once by filling its result fields and
 * invoking call->done. Providers never call done from inside submit (completions
 * happen in poll or cancel), so a done callback may submit again.
 *
 * Answers of chat tasks are JSON objects in the shapes below, whichever provider
 * produced them; the phase that asked validates them (llm_validate_fn) before
 * storing, so an offline answer and an OpenAI answer go through the same checks.
 *
 * Owns: prompts, HTTP, flow control, the cache. Must not write pipeline results or
 * run state (it may read/write only the llm_cache table, through store.h, and in batch
 * mode the run_batches rows of its run: the batch ids a resumed run polls again). */
#ifndef FEEDLINE_LLM_H
#define FEEDLINE_LLM_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "text/vocab.h"

enum llm_task {
    /* Stage 1 routing. Answer: {"conversation_type": one of LLM_CONVERSATION_TYPES,
     *  "confidence": "high"|"medium"|"low", "urgency": "critical"|"high"|"normal"|"low",
     *  "reasoning": str, "key_signals": [str]} */
    LLM_CLASSIFY = 0,
    /* Stage 2 refinement, only when support replied. args: {"stage1_type": str}.
     * Answer: {"conversation_type", "confidence", "reasoning",
     *  "disambiguation_level": "high"|"medium"|"low"|"none",
     *  "support_insights": {"issue_confirmed": bool, "root_cause": str,
     *                       "solution_type": str, "products_mentioned": [str],
     *                       "features_mentioned": [str]}} */
    LLM_REFINE,
    /* Facets. Answer: {"action_type": one of LLM_ACTION_TYPES, "direction": one of
     *  LLM_DIRECTIONS, "symptom": str (<= 10 words), "user_goal": str (<= 10 words)} */
    LLM_FACETS,
    /* Theme extraction. args: {"conversation_type": str}. Answer:
     *  {"product_area": str, "component": str, "issue_signature": str,
     *   "matched_existing": bool, "match_confidence": "high"|"medium"|"low",
     *   "user_intent": str, "symptoms": [str], "affected_flow": str,
     *   "root_cause_hypothesis": str, "diagnostic_summary": str,
     *   "key_excerpts": [{"text": str, "relevance": str}],
     *   "context_used": [str], "context_gaps": [str]} */
    LLM_THEME,
    /* Signature canonicalisation of new (non-vocabulary) signatures of one product
     * area, several in one request. args:
     *  {"product_area": str,
     *   "existing": [{"signature", "product_area", "component"}],
     *   "proposals": [{"proposed": str, "component": str, "user_intent": str,
     *                  "symptoms": [str]}]}
     * Answer: {"decisions": [{"proposed": str, "signature": str,
     *                         "matched_existing": bool, "reasoning": str}]}
     * one decision per proposal (llm_canon_decision pairs them up). */
    LLM_CANONICALIZE,
    /* The written story of one group. args: {"signature", "product_area", "component",
     *  "kind": "bug"|"feature"|"question", "distinguisher": str ("" unless a review
     *  split the signature), "conversation_count": int, "first_seen", "last_seen":
     *  "YYYY-MM-DD", "theme": {"description", "engineering_fix"} (vocabulary themes
     *  only), "action_type", "direction", "user_intents": [str], "symptoms": [str],
     *  "excerpts": [str] (the strongest evidence)}
     * Answer: {"title": str (<= 90 chars, never a customer's words verbatim),
     *  "problem": str, "affected": str, "acceptance_criteria": [str] (bugs: >= 1)} */
    LLM_STORY,
    /* The review of one candidate group before it becomes a story. args:
     *  {"signature", "product_area", "component", "conversation_count": int,
     *   "theme": {"description", "engineering_fix"} (vocabulary themes only),
     *   "parts": [{"part": 1-based int, "conversations": int, "action_type",
     *              "direction", "user_intents": [str], "symptoms": [str]}],
     *   "other_groups": [{"signature", "conversations", "user_intents": [str]}]}
     *  (other_groups: the run's other candidates of the same product area)
     * Answer: {"decision": "keep"|"split"|"merge"|"reject", "reason": str,
     *  "merge_with": signature of other_groups (merge only),
     *  "split": [{"name": str, "parts": [int]}] (split only: >= 2 named sub-groups,
     *           every part in exactly one, each sub-group >= 3 conversations)} */
    LLM_REVIEW,
    /* Embeddings of texts[0..ntexts). Result: vectors (ntexts * dim floats,
     * L2-normalised). */
    LLM_EMBED,
    LLM_TASK_COUNT
};

/* The closed sets the phases validate against. NULL-terminated. */
extern const char *const LLM_CONVERSATION_TYPES[]; /* product_issue, how_to_question,
    feature_request, account_issue, billing_question, configuration_help,
    general_inquiry, spam */
extern const char *const LLM_ACTIONABLE_TYPES[];   /* product_issue, feature_request,
                                                     how_to_question */
extern const char *const LLM_CONFIDENCES[];        /* high, medium, low */
extern const char *const LLM_URGENCIES[];          /* critical, high, normal, low */
extern const char *const LLM_ACTION_TYPES[];       /* inquiry, complaint, bug_report,
    how_to_question, feature_request, account_change, delete_request, unknown */
extern const char *const LLM_DIRECTIONS[];         /* excess, deficit, creation,
    deletion, modification, performance, neutral */
/* Index of s in a NULL-terminated set, or -1. */
int llm_set_index(const char *const *set, const char *s);
const char *llm_task_name(enum llm_task t); /* "classify", "refine", ... */
/* At most this many proposals per canonicalisation request: the answer grows with
 * each (a few dozen tokens), and a real model's latency with the answer. */
#define LLM_CANON_BATCH_MAX 8
/* The decision of a canonicalisation answer for proposal i of its args: the decision
 * that names the same proposal (compared normalised), else the i-th when the answer
 * has exactly one decision per proposal and that one names none. NULL when the answer
 * has none for it. The answer's and args' shape: LLM_CANONICALIZE above. */
const json_t *llm_canon_decision(const json_t *answer, const json_t *args, size_t i);

enum llm_status {
    LLM_OK = 0,
    LLM_ERR_HTTP,      /* non-retryable HTTP status, or retries exhausted */
    LLM_ERR_TIMEOUT,   /* retries exhausted on timeouts */
    LLM_ERR_INVALID,   /* malformed or schema-invalid answer after the repair retry */
    LLM_ERR_CANCELLED, /* run stopping: the call was never sent or was aborted */
    LLM_ERR_INPUT      /* nothing to send (e.g. empty text) */
};
const char *llm_status_name(enum llm_status s);

/* The conversation texts a task may read. Borrowed; valid until done runs. */
typedef struct llm_input {
    const char *conv_id;
    const char *body;         /* stripped opening message */
    const char *digest;       /* customer digest */
    const char *transcript;   /* full conversation */
    const char *support_text; /* "[Support i]: ..." blocks, "" when none */
    const char *source_url;
    const char *subject;
} llm_input;

typedef struct llm_call llm_call;
typedef void (*llm_done_fn)(llm_call *call);
/* Checks an answer against its schema and the call's arguments (args, may be NULL);
 * 0 = valid, else writes why into msg. Used by the provider to decide on the one
 * repair retry; the phase applies it again anyway. */
typedef int (*llm_validate_fn)(const json_t *args, const json_t *answer, char *msg,
                               size_t msglen);

struct llm_call {
    /* --- request, set by the caller --- */
    enum llm_task task;
    llm_input in;
    json_t *args;               /* task arguments (caller owns) or NULL */
    const char *const *texts;   /* LLM_EMBED inputs (borrowed) */
    size_t ntexts;
    llm_validate_fn validate;   /* optional */
    llm_done_fn done;
    void *user;                 /* caller's context */
    int64_t user_tag;           /* caller's index/tag */

    /* --- result, set by the provider before done() --- */
    enum llm_status status;
    char error[256];            /* human reason when status != LLM_OK */
    json_t *answer;             /* chat tasks: the parsed answer (owned by the call) */
    float *vectors;             /* LLM_EMBED: ntexts * dim (owned by the call) */
    int dim;
    int from_cache;             /* answered from llm_cache without an HTTP request */
    int attempts;               /* HTTP attempts made (0 offline / cached); a request
                                 * answered through the Batch API counts as one */
    int batched;                /* answered through the Batch API (billed at
                                 * LLM_BATCH_PRICE_FACTOR of the usual prices) */
    int64_t prompt_tokens;
    /* Of prompt_tokens, those the endpoint served from its prompt-prefix cache
     * (usage.prompt_tokens_details.cached_tokens; 0 when not reported). */
    int64_t cached_tokens;
    int64_t completion_tokens;

    void *priv;                 /* provider-private */
};

/* Frees the result fields (answer, vectors) and clears status, keeping the request. */
void llm_call_reset_result(llm_call *c);

/* Streams texts to a provider that needs corpus statistics (the offline TF-IDF
 * embedder): returns the next text or NULL at the end. */
typedef const char *(*llm_text_iter)(void *ctx);

/* Counters a provider keeps; read from other threads (metrics), so atomics. */
typedef struct llm_stats {
    _Atomic int64_t requests;        /* HTTP requests sent (attempts) */
    _Atomic int64_t retries;
    _Atomic int64_t rate_limited;    /* 429 answers */
    _Atomic int64_t failures;        /* calls completed with an error */
    _Atomic int64_t cache_hits;
    _Atomic int64_t in_flight;       /* HTTP requests currently on the wire */
    _Atomic int64_t max_in_flight;
    _Atomic int64_t prompt_tokens;
    _Atomic int64_t cached_tokens;   /* of prompt_tokens, from the endpoint's prefix cache */
    _Atomic int64_t completion_tokens;
} llm_stats;

typedef struct llm_provider llm_provider;

typedef struct llm_provider_ops {
    const char *name; /* "local", "openai" */
    /* Queue a call. 0 = accepted (done will run exactly once), -1 = refused. */
    int (*submit)(llm_provider *p, llm_call *call);
    /* Drive work for up to timeout_ms (0 = don't block); run done callbacks of
     * finished calls. Returns the number of calls completed, or -1 on a fatal error. */
    int (*poll)(llm_provider *p, int timeout_ms);
    /* Calls accepted and not yet completed. */
    size_t (*pending)(llm_provider *p);
    /* Complete every queued and in-flight call with LLM_ERR_CANCELLED. */
    void (*cancel_all)(llm_provider *p);
    /* Optional: corpus statistics before LLM_EMBED calls (offline TF-IDF). */
    int (*prepare_embeddings)(llm_provider *p, llm_text_iter next, void *ctx);
    void (*destroy)(llm_provider *p);
} llm_provider_ops;

struct llm_provider {
    const llm_provider_ops *ops;
    const vocab *vocab;   /* borrowed; may be NULL */
    llm_stats stats;
    char chat_model[64];
    char embed_model[64];
    int embed_dim;        /* dimension of the vectors it produces */
    int max_embed_batch;  /* texts per LLM_EMBED call the provider accepts */
    /* 0, or the calls the provider wants pending at once, when that is more than the
     * run's concurrency (batch mode: every call of a phase goes into a few large
     * batches, so the engine hands over all it can claim). */
    int max_pending;
    /* 1 when answers are paid for (a remote endpoint): whoever receives them stores them
     * (cache, results, usage) as soon as they arrive, so a crash loses only the calls
     * in flight; 0 for the offline analyzer, whose answers cost only CPU time. */
    int paid_answers;
    /* The requests it keeps on the wire at most (0: no limit of its own), and how many
     * calls it keeps queued beyond that, each sent into a slot an answer frees as soon
     * as that answer is in the response cache (before the caller processes it):
     * a caller whose own limit is at least `concurrency` keeps that many more calls
     * submitted. 0: none. */
    int concurrency;
    int queue_ahead;
    /* Prices in USD per million tokens, for the run's cost estimate (0 offline). */
    double usd_per_mtok_prompt;
    double usd_per_mtok_cached;  /* prompt tokens the endpoint's prefix cache served */
    double usd_per_mtok_completion;
    double usd_per_mtok_embed;  /* embedding input tokens */
    /* Why poll() returned -1: a provider-level fatal error (e.g. the endpoint refused
     * the API key). Every call pending then was completed with LLM_ERR_CANCELLED (so
     * the caller keeps its work for a resume instead of failing it), and submit
     * refuses new calls. */
    char error[256];
};

/* Estimated cost of the given chat token counts at the provider's prices:
 * cached_tokens (part of prompt_tokens) at the cached-input price, the rest of the
 * prompt at the prompt price. */
double llm_cost_usd(const llm_provider *p, int64_t prompt_tokens, int64_t cached_tokens,
                    int64_t completion_tokens);
/* Estimated cost of embedding input tokens. */
double llm_embed_cost_usd(const llm_provider *p, int64_t tokens);
/* The Batch API's price as a share of the usual one (OpenAI: half). */
#define LLM_BATCH_PRICE_FACTOR 0.5
/* Estimated cost of one completed call: its tokens at the chat or embedding prices,
 * times LLM_BATCH_PRICE_FACTOR when it was answered through the Batch API. */
double llm_call_cost_usd(const llm_provider *p, const llm_call *c);

/* Convenience wrappers. */
static inline int llm_submit(llm_provider *p, llm_call *c) { return p->ops->submit(p, c); }
static inline int llm_poll(llm_provider *p, int ms) { return p->ops->poll(p, ms); }
static inline size_t llm_pending(llm_provider *p) { return p->ops->pending(p); }
void llm_provider_destroy(llm_provider *p);

/* The offline analyzer (local.c). Deterministic; needs the vocabulary for themes. */
#define LOCAL_EMBED_DIM 1024
llm_provider *llm_local_new(const vocab *v);

/* The OpenAI-compatible client (openai.c): chat completions in JSON mode and
 * embeddings against any OpenAI-compatible endpoint (OpenAI, Azure OpenAI, vLLM,
 * Ollama, llama.cpp server), on one libcurl multi loop, with the flow control of
 * ratelimit.h and the persistent response cache (llm_cache). */
struct store;
typedef struct llm_openai_config {
    const char *base_url;       /* chat endpoint base, e.g. "https://api.openai.com/v1" */
    const char *embed_base_url; /* NULL = base_url (Azure: another deployment) */
    const char *api_key;        /* NULL/"" = no key header (local servers) */
    const char *key_header;     /* NULL/"Authorization" = "Bearer KEY"; else "NAME: KEY" */
    const char *api_version;    /* NULL, or appended as ?api-version= (Azure) */
    const char *chat_model;
    const char *embed_model;
    int embed_dimensions;       /* 0 = the model's default (not sent) */
    /* How embeddings are asked to come back: NULL/"base64" (little-endian float32
     * bytes, as OpenAI's own SDK asks: less than half the bytes of "float", and no
     * number parsing) or "float" (for an endpoint that refuses base64). Either is read,
     * whatever was asked. */
    const char *embed_encoding;
    int concurrency;            /* HTTP requests on the wire, 1..LLM_MAX_CONCURRENCY */
    double rpm, tpm;            /* configured limits, 0 = none (headers may still set) */
    int timeout_ms;             /* per request; 0 = 60000 */
    size_t max_response_bytes;  /* per answer, larger ones fail the call; 0 = 192 MiB
                                   (chat answers: at most 16 MiB in any case) */
    int max_attempts;           /* per request for 5xx/timeouts/transport; 0 = 5 */
    int backoff_base_ms;        /* first retry's full-jitter ceiling; 0 = 500 */
    int embed_max_inputs;       /* per embeddings request; 0 = 2048 */
    int64_t embed_max_tokens;   /* estimated tokens per embeddings request; 0 = 200000 */
    uint64_t seed;              /* jitter; 0 = from the clock */
    /* USD per million tokens; < 0 = the known price of the model (else 0). A cached
     * price < 0 is the model's known cached-input price when the prompt price is the
     * model's too, else half the prompt price. */
    double usd_prompt, usd_cached, usd_completion, usd_embed;
    /* Requests/min shared with the other processes using the same PostgreSQL database
     * (feedline workers): with a limit known (rpm or x-ratelimit headers) and the
     * provider's store on PostgreSQL, sends follow a schedule kept in the database
     * (ratelimit.h, store_budget.c), one per endpoint base URL. 1 = pace this process
     * alone (FEEDLINE_SHARED_BUDGET=0). */
    int own_budget;
    /* Batch mode (feedline run --batch): the calls of the per-conversation tasks
     * (classify, refine, facets, theme, embeddings) go through the Batch API (/files,
     * /batches) instead of one request each; the other tasks (canonicalisation, story
     * review and titles) and repair retries stay direct requests. Batches are recorded
     * in run_batches under batch_run_id (needs the store), so a provider made for the
     * resumed run polls them again instead of sending their requests twice. */
    int batch;
    int64_t batch_run_id;
    int batch_poll_ms;          /* status polls per batch; 0 = 30000 */
    int batch_gather_ms;        /* a batch is sent once no call came for this long; 0 = 2000 */
    int batch_max_requests;     /* requests per batch (API: 50000); 0 = 50000 */
    int64_t batch_max_bytes;    /* input file size (API: 200 MB); 0 = 190 MB */
    int batch_max_pending;      /* calls taken at once (llm_provider.max_pending); 0 = 100000 */
} llm_openai_config;

/* Defaults, then the environment: OPENAI_API_KEY, OPENAI_BASE_URL (default
 * https://api.openai.com/v1), OPENAI_EMBED_BASE_URL, OPENAI_API_KEY_HEADER,
 * OPENAI_API_VERSION, FEEDLINE_CHAT_MODEL (gpt-4o-mini), FEEDLINE_EMBED_MODEL
 * (text-embedding-3-small), FEEDLINE_EMBED_DIMENSIONS, FEEDLINE_EMBED_ENCODING,
 * FEEDLINE_RPM, FEEDLINE_TPM,
 * FEEDLINE_LLM_TIMEOUT_MS, FEEDLINE_LLM_MAX_ATTEMPTS, FEEDLINE_LLM_BACKOFF_MS,
 * FEEDLINE_PRICE_PROMPT, FEEDLINE_PRICE_CACHED, FEEDLINE_PRICE_COMPLETION,
 * FEEDLINE_PRICE_EMBED,
 * FEEDLINE_SHARED_BUDGET (0 = own_budget), FEEDLINE_BATCH_POLL_MS,
 * FEEDLINE_BATCH_GATHER_MS, FEEDLINE_BATCH_MAX_REQUESTS, FEEDLINE_BATCH_MAX_BYTES,
 * FEEDLINE_BATCH_MAX_PENDING (batch is set by the caller, from the run). The strings
 * point into the environment (valid while it is unchanged). */
void llm_openai_config_from_env(llm_openai_config *c);
/* st (may be NULL: no cache) is used from the provider's thread only, for the
 * llm_cache table and the shared requests/min budget, and only while the thread is in
 * the provider's calls (never inside a transaction of the caller). v may be NULL (no vocabulary in the prompts). NULL with a message
 * on a bad configuration. */
llm_provider *llm_openai_new(const llm_openai_config *c, const vocab *v, struct store *st,
                             char *err, size_t errlen);

#endif
