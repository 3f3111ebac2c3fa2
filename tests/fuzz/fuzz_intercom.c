/* Intercom API responses as the fetcher handles them (intercom_handle_response): a
 * search page (conversations array, each item parsed and quality-filtered, the
 * pages.next.starting_after cursor) or a conversation detail (parsed, id-checked and
 * stored in a SQLite store), under any status with its retry/rate-limit headers
 * (Retry-After, X-RateLimit-Reset) and error bodies. Input: byte 0 = request kind and
 * status, byte 1 = length of a previous page cursor; then "Name: value" header lines up
 * to an empty line; the rest is the body. Property: counts stay consistent. */
#include "fuzz.h"
#include "fuzz_store.h"
#include "net/httpc.h"
#include "source/intercom.h"
#include "util/mem.h"

#include <ctype.h>
#include <unistd.h>

/* The id the detail request asked for (the seeds' details have it). */
#define DETAIL_ID "215468773210394"

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    log_set_level(LOG_ERROR);
    unsetenv("INTERCOM_ACCESS_TOKEN");
    unsetenv("INTERCOM_BASE_URL");
    fuzz_store_init("fuzz-intercom");
    return 0;
}

static const long STATUSES[] = {200, 200, 200, 200, 201, 204, 301, 400, 401, 403,
                                404, 409, 422, 429, 429, 500, 502, 503, 0,   0};
#define NSTATUSES (sizeof STATUSES / sizeof STATUSES[0])

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 2 || size > 512 * 1024) return -1;
    store *st = fuzz_store_next();
    uint8_t kind = data[0];
    int detail = kind & 1;
    long status = STATUSES[(data[0] >> 1) % NSTATUSES];
    int64_t cursor_len = data[1] % 16;
    data += 2;
    size -= 2;

    httpc_request *h = httpc_request_new(detail ? "GET" : "POST", "http://fuzz.invalid/x");
    h->status = status;
    if (status == 0) {
        h->failed = 1;
        h->timed_out = (kind & 0x80) != 0;
        snprintf(h->error, sizeof h->error, "fuzz transport failure");
    }
    /* Header lines up to an empty line (or the end). */
    size_t i = 0;
    while (i < size && data[i] != '\n' && h->nresp_headers < HTTPC_MAX_HEADERS) {
        size_t e = i;
        while (e < size && data[e] != '\n') e++;
        const char *line = (const char *)data + i;
        size_t n = e - i;
        const char *colon = memchr(line, ':', n);
        if (colon) {
            size_t nl = (size_t)(colon - line);
            char *name = xstrndup(line, nl);
            for (char *p = name; *p; p++) *p = (char)tolower((unsigned char)*p);
            const char *v = colon + 1, *ve = line + n;
            while (v < ve && (*v == ' ' || *v == '\t')) v++;
            while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t' || ve[-1] == '\r')) ve--;
            h->resp_headers[h->nresp_headers].name = name;
            h->resp_headers[h->nresp_headers].value = xstrndup(v, (size_t)(ve - v));
            h->nresp_headers++;
        }
        i = e < size ? e + 1 : e;
    }
    if (i < size && data[i] == '\n') i++;
    buf_append(&h->response, (const char *)data + i, size - i);

    intercom_result res;
    int rc = intercom_handle_response(st, h, detail ? DETAIL_ID : NULL, cursor_len, &res);
    FUZZ_CHECK(rc >= -1 && rc <= 1);
    if (rc == -1) FUZZ_CHECK(res.error[0] != '\0');
    FUZZ_CHECK(res.passed <= res.seen);
    FUZZ_CHECK(res.stats.rejected + res.stats.filtered + res.passed == res.seen || detail);
    return 0;
}
