/* The asynchronous HTTP client (see httpc.h). */
#include "net/httpc.h"

#include <ctype.h>
#include <curl/curl.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "util/log.h"
#include "util/mem.h"
#include "util/timeutil.h"

/* The transfers are driven with curl's socket interface: curl says which sockets it
 * waits on (on_socket) and when its next timeout is (on_timer), and an epoll set
 * reports the sockets that are ready, so a poll costs the transfers that have
 * something to do, not one check of every socket in flight. */
struct httpc {
    CURLM *multi;
    int epfd;               /* curl's sockets */
    int64_t timer_due_us;   /* curl's next timeout (mono_us), -1 = none */
    size_t max_response_bytes;
    httpc_request **active; /* in flight, for cancel_all */
    size_t nactive, cap;
    CURL **idle;            /* reusable easy handles */
    size_t nidle, idle_cap;
};

static pthread_once_t global_once = PTHREAD_ONCE_INIT;
static void global_init_once(void) {
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) log_error("curl_global_init failed");
}
void httpc_global_init(void) { pthread_once(&global_once, global_init_once); }

httpc_request *httpc_request_new(const char *method, const char *url) {
    httpc_request *r = xcalloc(1, sizeof *r);
    r->method = xstrdup(method);
    r->url = xstrdup(url);
    r->timeout_ms = 60000;
    r->connect_timeout_ms = 10000;
    return r;
}

void httpc_request_header(httpc_request *r, const char *name, const char *value) {
    char *line = xasprintf("%s: %s", name, value);
    struct curl_slist *l = curl_slist_append(r->headers, line);
    free(line);
    if (!l) {
        fprintf(stderr, "feedline: out of memory adding a header\n");
        abort();
    }
    r->headers = l;
}

void httpc_request_basic_auth(httpc_request *r, const char *user, const char *password) {
    free(r->userpwd);
    r->userpwd = xasprintf("%s:%s", user, password);
}

char *httpc_encode_segment(const char *s) {
    buf_t b = BUF_INIT;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (isalnum(*p) || *p == '-' || *p == '_' || *p == '.' || *p == '~') buf_putc(&b, (char)*p);
        else buf_printf(&b, "%%%02X", *p);
    }
    return buf_detach(&b);
}

void httpc_request_body(httpc_request *r, const char *body, size_t len) {
    free(r->body);
    r->body = xmalloc(len + 1);
    memcpy(r->body, body, len);
    r->body[len] = '\0';
    r->body_len = len;
}

static void clear_headers(httpc_request *r) {
    for (int i = 0; i < r->nresp_headers; i++) {
        free(r->resp_headers[i].name);
        free(r->resp_headers[i].value);
    }
    r->nresp_headers = 0;
}

void httpc_request_reset_response(httpc_request *r) {
    r->status = 0;
    r->failed = r->timed_out = r->cancelled = r->too_large = 0;
    r->error[0] = '\0';
    buf_reset(&r->response);
    clear_headers(r);
}

void httpc_request_free(httpc_request *r) {
    if (!r) return;
    free(r->method);
    free(r->url);
    curl_slist_free_all(r->headers);
    free(r->body);
    free(r->userpwd);
    buf_free(&r->response);
    clear_headers(r);
    free(r);
}

const char *httpc_response_header(const httpc_request *r, const char *name) {
    for (int i = 0; i < r->nresp_headers; i++)
        if (strcasecmp(r->resp_headers[i].name, name) == 0) return r->resp_headers[i].value;
    return NULL;
}

/* curl's socket callback: keeps the epoll set equal to the sockets curl waits on. A
 * socket is marked (curl_multi_assign) once it is in the set. */
static int on_socket(CURL *easy, curl_socket_t s, int what, void *userp, void *socketp) {
    (void)easy;
    httpc *h = userp;
    if (what == CURL_POLL_REMOVE) {
        /* The socket may be closed already (epoll then dropped it itself). */
        if (socketp) epoll_ctl(h->epfd, EPOLL_CTL_DEL, s, NULL);
        curl_multi_assign(h->multi, s, NULL);
        return 0;
    }
    struct epoll_event ev = {0};
    ev.events = ((what & CURL_POLL_IN) ? EPOLLIN : 0u) | ((what & CURL_POLL_OUT) ? EPOLLOUT : 0u);
    ev.data.fd = s;
    int rc = epoll_ctl(h->epfd, socketp ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, s, &ev);
    if (rc != 0 && errno == ENOENT) rc = epoll_ctl(h->epfd, EPOLL_CTL_ADD, s, &ev);
    else if (rc != 0 && errno == EEXIST) rc = epoll_ctl(h->epfd, EPOLL_CTL_MOD, s, &ev);
    if (rc != 0) {
        log_error("httpc: epoll_ctl on socket %d: %s", (int)s, strerror(errno));
        return -1; /* curl fails the transfers on this socket */
    }
    if (!socketp) curl_multi_assign(h->multi, s, h);
    return 0;
}

/* curl's timer callback: when to call it with CURL_SOCKET_TIMEOUT. */
static int on_timer(CURLM *multi, long timeout_ms, void *userp) {
    (void)multi;
    httpc *h = userp;
    h->timer_due_us = timeout_ms < 0 ? -1 : mono_us() + (int64_t)timeout_ms * 1000;
    return 0;
}

httpc *httpc_new(size_t max_connections, size_t max_response_bytes) {
    httpc_global_init();
    httpc *h = xcalloc(1, sizeof *h);
    h->timer_due_us = -1;
    h->epfd = epoll_create1(EPOLL_CLOEXEC);
    h->multi = h->epfd >= 0 ? curl_multi_init() : NULL;
    if (!h->multi) {
        if (h->epfd >= 0) close(h->epfd);
        free(h);
        return NULL;
    }
    curl_multi_setopt(h->multi, CURLMOPT_SOCKETFUNCTION, on_socket);
    curl_multi_setopt(h->multi, CURLMOPT_SOCKETDATA, h);
    curl_multi_setopt(h->multi, CURLMOPT_TIMERFUNCTION, on_timer);
    curl_multi_setopt(h->multi, CURLMOPT_TIMERDATA, h);
    h->max_response_bytes = max_response_bytes ? max_response_bytes : (16u << 20);
    /* Enough connections for every request in flight, so none waits for a socket;
     * idle ones are kept for reuse (keep-alive). */
    curl_multi_setopt(h->multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, (long)max_connections);
    curl_multi_setopt(h->multi, CURLMOPT_MAX_HOST_CONNECTIONS, (long)max_connections);
    curl_multi_setopt(h->multi, CURLMOPT_MAXCONNECTS, (long)max_connections);
    return h;
}

static size_t response_cap(const httpc_request *r) {
    size_t cap = r->owner->max_response_bytes;
    return r->max_response_bytes && r->max_response_bytes < cap ? r->max_response_bytes : cap;
}

static size_t on_body(char *data, size_t size, size_t nmemb, void *userp) {
    httpc_request *r = userp;
    size_t n = size * nmemb;
    if (r->response.len + n > response_cap(r)) {
        r->too_large = 1;
        return 0; /* aborts the transfer */
    }
    buf_append(&r->response, data, n);
    return n;
}

static size_t on_header(char *data, size_t size, size_t nmemb, void *userp) {
    httpc_request *r = userp;
    size_t n = size * nmemb;
    /* A new status line (after a redirect or 100-continue) starts a new header set. */
    if (n >= 5 && strncmp(data, "HTTP/", 5) == 0) {
        clear_headers(r);
        return n;
    }
    const char *colon = memchr(data, ':', n);
    if (!colon || r->nresp_headers >= HTTPC_MAX_HEADERS || n > 8192) return n;
    size_t nl = (size_t)(colon - data);
    const char *v = colon + 1, *end = data + n;
    while (v < end && (*v == ' ' || *v == '\t')) v++;
    while (end > v && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' ')) end--;
    httpc_header *hd = &r->resp_headers[r->nresp_headers++];
    hd->name = xstrndup(data, nl);
    for (char *c = hd->name; *c; c++) *c = (char)tolower((unsigned char)*c);
    hd->value = xstrndup(v, (size_t)(end - v));
    return n;
}

static CURL *take_easy(httpc *h) {
    if (h->nidle) {
        CURL *e = h->idle[--h->nidle];
        curl_easy_reset(e);
        return e;
    }
    return curl_easy_init();
}

static void give_easy(httpc *h, CURL *e) {
    XGROW(h->idle, h->idle_cap, h->nidle + 1);
    h->idle[h->nidle++] = e;
}

int httpc_submit(httpc *h, httpc_request *r) {
    CURL *e = take_easy(h);
    if (!e) return -1;
    httpc_request_reset_response(r);
    r->owner = h;
    curl_easy_setopt(e, CURLOPT_URL, r->url);
    curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, r->method);
    if (r->body) {
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, r->body);
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)r->body_len);
    } else if (!strcmp(r->method, "GET")) {
        curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
    }
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, (struct curl_slist *)r->headers);
    if (r->userpwd) {
        curl_easy_setopt(e, CURLOPT_HTTPAUTH, (long)CURLAUTH_BASIC);
        curl_easy_setopt(e, CURLOPT_USERPWD, r->userpwd);
    }
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, r);
    curl_easy_setopt(e, CURLOPT_PRIVATE, r);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, r->timeout_ms);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, r->connect_timeout_ms);
    curl_easy_setopt(e, CURLOPT_ACCEPT_ENCODING, "");
    curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, r->error);
    /* Only the two web protocols: a URL from configuration must not reach file:// etc. */
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    r->started_us = mono_us();
    r->easy = e;
    if (curl_multi_add_handle(h->multi, e) != CURLM_OK) {
        r->easy = NULL;
        give_easy(h, e);
        return -1;
    }
    XGROW(h->active, h->cap, h->nactive + 1);
    h->active[h->nactive++] = r;
    return 0;
}

static void forget(httpc *h, httpc_request *r) {
    for (size_t i = 0; i < h->nactive; i++)
        if (h->active[i] == r) {
            h->active[i] = h->active[--h->nactive];
            return;
        }
}

static void finish(httpc *h, httpc_request *r, CURLcode code) {
    CURL *e = r->easy;
    curl_multi_remove_handle(h->multi, e);
    curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &r->status);
    r->finished_us = mono_us();
    if (code != CURLE_OK) {
        r->failed = 1;
        r->timed_out = code == CURLE_OPERATION_TIMEDOUT;
        if (r->too_large)
            snprintf(r->error, sizeof r->error, "response larger than %zu bytes",
                     response_cap(r));
        else if (!r->error[0])
            snprintf(r->error, sizeof r->error, "%s", curl_easy_strerror(code));
    }
    r->easy = NULL;
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, NULL);
    give_easy(h, e);
    forget(h, r);
    r->done(r);
}

/* Runs curl's timeout handling while it is due (a new transfer is due at once: this
 * is what starts it). A bounded number of rounds: curl may ask again for "now". */
static int run_due_timer(httpc *h) {
    int running;
    for (int i = 0; i < 4 && h->timer_due_us >= 0 && h->timer_due_us <= mono_us(); i++) {
        h->timer_due_us = -1;
        if (curl_multi_socket_action(h->multi, CURL_SOCKET_TIMEOUT, 0, &running) != CURLM_OK)
            return -1;
    }
    return 0;
}

/* Milliseconds to wait for events: timeout_ms, or less when curl's timer is due first
 * (rounded up: epoll_wait takes whole ms, and an early wake-up only loops again). */
static int wait_ms(const httpc *h, int timeout_ms) {
    if (h->timer_due_us < 0) return timeout_ms;
    int64_t us = h->timer_due_us - mono_us();
    if (us <= 0) return 0;
    int64_t ms = (us + 999) / 1000;
    return ms < timeout_ms ? (int)ms : timeout_ms;
}

int httpc_start(httpc *h) { return run_due_timer(h); }

int httpc_poll(httpc *h, int timeout_ms) {
    /* A caller's deadline can pass between its clock read and this call. */
    if (timeout_ms < 0) timeout_ms = 0;
    if (run_due_timer(h) < 0) return -1;
    struct epoll_event evs[64];
    int n = epoll_wait(h->epfd, evs, 64, h->nactive ? wait_ms(h, timeout_ms) : 0);
    if (n < 0 && errno != EINTR) return -1;
    for (int i = 0; i < n; i++) {
        int fd = evs[i].data.fd;
        int flags = 0;
        if (evs[i].events & (EPOLLIN | EPOLLHUP)) flags |= CURL_CSELECT_IN;
        if (evs[i].events & EPOLLOUT) flags |= CURL_CSELECT_OUT;
        if (evs[i].events & EPOLLERR) flags |= CURL_CSELECT_ERR;
        int running;
        if (curl_multi_socket_action(h->multi, fd, flags, &running) != CURLM_OK) return -1;
    }
    if (run_due_timer(h) < 0) return -1;
    int done = 0;
    CURLMsg *m;
    int left;
    while ((m = curl_multi_info_read(h->multi, &left))) {
        if (m->msg != CURLMSG_DONE) continue;
        httpc_request *r = NULL;
        curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&r);
        if (!r) continue;
        finish(h, r, m->data.result);
        done++;
    }
    /* Requests the done callbacks submitted go on the wire now, not at the next poll. */
    if (run_due_timer(h) < 0) return -1;
    return done;
}

size_t httpc_in_flight(const httpc *h) { return h->nactive; }

void httpc_cancel_all(httpc *h) {
    while (h->nactive) {
        httpc_request *r = h->active[h->nactive - 1];
        CURL *e = r->easy;
        curl_multi_remove_handle(h->multi, e);
        r->easy = NULL;
        r->failed = 1;
        r->cancelled = 1;
        snprintf(r->error, sizeof r->error, "cancelled");
        r->finished_us = mono_us();
        curl_easy_setopt(e, CURLOPT_ERRORBUFFER, NULL);
        give_easy(h, e);
        h->nactive--;
        r->done(r);
    }
}


void httpc_free(httpc *h) {
    if (!h) return;
    httpc_cancel_all(h);
    for (size_t i = 0; i < h->nidle; i++) curl_easy_cleanup(h->idle[i]);
    free(h->idle);
    free(h->active);
    curl_multi_cleanup(h->multi);
    close(h->epfd);
    free(h);
}
