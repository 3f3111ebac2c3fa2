/* intercom — the Intercom REST API client: fetches conversations into the store through
 * the same parsing and quality filter as `feedline import` (original-data_surfaces.md §1,
 * with its weak points 1–5 fixed).
 *
 * Flow: POST /conversations/search pages (cursor pagination, pages.next.starting_after)
 * are fetched one after the other; each search item is parsed and run through the
 * quality filter; every item that passes is fetched in full with GET /conversations/{id}
 * and stored with import_conversation() (idempotent by content hash: re-fetching updates
 * in place). Detail fetches of one page run while the next page is fetched: at most
 * `concurrency` requests are in flight in all (the page request included), on one
 * libcurl multi handle (net/httpc.h), and at most about two pages of ids wait, so memory
 * stays bounded whatever the window holds.
 *
 * The window. Bounds are inclusive UTC unix seconds [from, to], sent as
 * `field > from-1 AND field < to+1` (Intercom's date operators are strict). The order is
 * deterministic: a created_at window is requested newest first (`sort: created_at
 * descending`), so a cap keeps the newest conversations; an updated_at window
 * (incremental) oldest change first, so a capped or interrupted incremental fetch never
 * skips a change. The cap (max_conversations) counts conversations that PASSED the
 * quality filter, as in the original.
 *
 * Faults. 429: every request waits until X-RateLimit-Reset (epoch seconds) or
 * Retry-After, whichever is given (a shared pause, not one request retrying alone).
 * 5xx, transport errors, timeouts and 2xx bodies that are not the expected JSON are
 * retried with exponential backoff and full jitter, at most max_retries times. 401 and
 * 403 end the fetch at once with a message naming the cause ("Intercom rejected the
 * access token (401)"); so do 404 and other 4xx answers to the search. A detail fetch
 * that still fails after its retries (or gets a 4xx) is counted and reported with its
 * reason; the conversation is never stored from its search summary (which has no
 * thread).
 *
 * Threading: one fetch runs on the calling thread (the store handle is used from it
 * only). */
#ifndef FEEDLINE_INTERCOM_H
#define FEEDLINE_INTERCOM_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "source/source.h"
#include "store/store.h"

#define INTERCOM_DEFAULT_BASE_URL "https://api.intercom.io"
#define INTERCOM_API_VERSION "2.11"
#define INTERCOM_MAX_PER_PAGE 150      /* Intercom's maximum for search */
#define INTERCOM_DEFAULT_PER_PAGE 50
#define INTERCOM_MAX_CONCURRENCY 256
/* The incremental watermark (newest updated_at fetched) in the sync_state table. */
#define INTERCOM_SYNC_KEY "intercom.updated_at"
/* JSON summary of the last completed fetch (sync_state). */
#define INTERCOM_LAST_FETCH_KEY "intercom.last_fetch"

/* Progress, passed to the progress callback after each page and about once a second. */
typedef struct intercom_progress {
    int64_t pages;       /* search pages received */
    int64_t seen;        /* search items looked at */
    int64_t passed;      /* items that passed the quality filter (the cap counts these) */
    int64_t stored;      /* detail fetches stored (inserted + updated + unchanged) */
    int64_t failed;      /* detail fetches given up on */
    int64_t in_flight;
} intercom_progress;

typedef struct intercom_options {
    const char *token;          /* required: the access token */
    const char *base_url;       /* NULL = INTERCOM_DEFAULT_BASE_URL */
    int per_page;               /* 0 = 50; 1..150 */
    int concurrency;            /* requests in flight, page included; 0 = 20 */
    int64_t max_conversations;  /* 0 = no cap */
    int max_retries;            /* retries after 5xx/transport/malformed (from_env: 4) */
    int max_rate_limit_waits;   /* 429 waits per request before giving up; 0 = 30 */
    int64_t backoff_base_ms;    /* 0 = 1000 */
    int64_t backoff_cap_ms;     /* 0 = 30000 */
    int64_t max_rate_limit_wait_ms; /* longest single 429 wait honoured; 0 = 60000 */
    int64_t timeout_ms;         /* per request; 0 = 30000 */
    int64_t connect_timeout_ms; /* 0 = 10000 */
    uint64_t seed;              /* jitter; 0 = from the clock */
    /* Stopping: the flag is read on every loop turn; tick (optional) is called about
     * every 250 ms and stops the fetch when it returns non-zero (the run uses it for the
     * database stop flag and its heartbeat). */
    atomic_int *stop_flag;
    int (*tick)(void *ctx);
    void *tick_ctx;
    void (*progress)(void *ctx, const intercom_progress *p);
    void *progress_ctx;
    /* Called for each conversation that could not be fetched or parsed (id may be "" for
     * a search item without one), with the reason. */
    void (*on_failure)(void *ctx, const char *conversation_id, const char *reason);
    void *failure_ctx;
} intercom_options;

/* Sets the defaults above; token and base_url from INTERCOM_ACCESS_TOKEN and
 * INTERCOM_BASE_URL (the strings stay owned by the environment). */
void intercom_options_from_env(intercom_options *o);

enum intercom_field { INTERCOM_CREATED_AT = 0, INTERCOM_UPDATED_AT = 1 };

/* Which conversations: field in [from, to] (inclusive, UTC unix seconds). from <= 0
 * means no lower bound, to <= 0 no upper bound. */
typedef struct intercom_window {
    enum intercom_field field;
    int64_t from, to;
} intercom_window;

enum intercom_status { INTERCOM_DONE = 0, INTERCOM_STOPPED = 1, INTERCOM_FAILED = -1 };

typedef struct intercom_result {
    enum intercom_status status;
    char error[512];          /* why, when FAILED */
    int64_t pages;            /* search pages received */
    int64_t seen;             /* search items looked at */
    int64_t passed;           /* passed the quality filter at search time */
    int capped;               /* stopped paging at max_conversations */
    import_stats stats;       /* read / inserted / updated / unchanged / filtered (by reason)
                                 / rejected (unparsable items) */
    int64_t detail_failed;    /* detail fetches given up on (never stored from the summary) */
    int64_t requests;         /* HTTP requests sent, retries included */
    int64_t retries;          /* re-sent after 5xx/transport/malformed */
    int64_t rate_limited;     /* 429 answers */
    int64_t newest_updated_at; /* newest updated_at among items seen; 0 if none */
    /* The incremental watermark this fetch may move to: everything updated before it was
     * seen (updated_at windows only; 0 when it must not move). */
    int64_t safe_watermark;
    double seconds;
} intercom_result;

/* Fetches the window into the store. Returns result->status. Store errors are FAILED. */
int intercom_fetch(store *st, const intercom_options *o, const intercom_window *w,
                   intercom_result *result);

/* An incremental fetch: conversations updated since the stored watermark
 * (INTERCOM_SYNC_KEY; inclusive, so changes within the same second are not lost), or,
 * without one, since `initial_from` (required then: > 0). Advances the watermark when
 * the fetch completes; a detail failure holds it at the failed conversation so the next
 * incremental fetch retries it. *from_used receives the lower bound used. */
int intercom_fetch_since_last(store *st, const intercom_options *o, int64_t initial_from,
                              int64_t *from_used, intercom_result *result);

/* Records a completed fetch's summary under INTERCOM_LAST_FETCH_KEY. */
int intercom_record_last_fetch(store *st, const intercom_window *w, const intercom_result *r);

/* The run's fetch step (called by the run driver before selection): when
 * INTERCOM_ACCESS_TOKEN is set and the run has not selected its conversations yet,
 * fetches the run's own window [date_from, date_to] (the same bounds selection uses)
 * with the run's concurrency and cap, records the quality-filtered count
 * (conversations_filtered) and each failure (phase "fetch"), honours the run's stop
 * flag and the database stop request, and keeps the run's heartbeat. Returns 0 (done,
 * or nothing to do), 1 stopped, -1 failed (message in err). */
int intercom_fetch_for_run(store *st, const run_record *run, const char *owner,
                           atomic_int *stop_flag, char *err, size_t errlen);

/* For tests and tests/fuzz: one finished request handled exactly as a fetch handles it,
 * without a network: the verdict on its status, headers and body (accepted, retry with
 * backoff or Retry-After, 429 wait, given up, fatal with the error body's message), a
 * search page's items parsed and quality-filtered and its next cursor checked against
 * a previous one of previous_cursor_len bytes (0 = first page), or a detail
 * (conversation_id non-NULL) parsed, its id checked and stored in st. Takes h (status,
 * response and resp_headers filled in). Counts go to res (res->error says why on a
 * fatal answer). Returns 0 accepted or given up, 1 would be retried, -1 fatal. */
struct httpc_request;
int intercom_handle_response(store *st, struct httpc_request *h, const char *conversation_id,
                             int64_t previous_cursor_len, intercom_result *res);

#endif
