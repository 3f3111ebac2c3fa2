/* Starting and querying the fake Intercom server (see intercom_fake.h). */
#include "support/intercom_fake.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "net/httpc.h"
#include "source/source.h"
#include "support/convgen.h"
#include "util/util.h"

#define START_TIMEOUT_MS 60000 /* generating 10 000 conversations takes a few seconds */

static char *server_path(void) {
    const char *b = getenv("FEEDLINE_BUILD");
    return xasprintf("%s/fake_intercom", b && b[0] ? b : "build");
}

/* Reads the "listening on 127.0.0.1:PORT" line; the port or -1. */
static int read_port(int fd) {
    char line[256];
    size_t len = 0;
    int64_t deadline = mono_ms() + START_TIMEOUT_MS;
    while (len < sizeof line - 1) {
        int64_t left = deadline - mono_ms();
        if (left <= 0) return -1;
        struct pollfd p = {fd, POLLIN, 0};
        int rc = poll(&p, 1, (int)left);
        if (rc < 0 && errno == EINTR) continue;
        if (rc <= 0) return -1;
        ssize_t n = read(fd, line + len, 1);
        if (n <= 0) return -1;
        if (line[len] == '\n') break;
        len++;
    }
    line[len] = '\0';
    const char *colon = strrchr(line, ':');
    return strncmp(line, "listening on ", 13) == 0 && colon ? atoi(colon + 1) : -1;
}

int ifake_start(ifake *f, const char *const *args) {
    memset(f, 0, sizeof *f);
    f->pid = -1;
    char *path = server_path();
    const char *argv[64];
    size_t n = 0;
    argv[n++] = path;
    argv[n++] = "--port";
    argv[n++] = "0";
    for (size_t i = 0; args && args[i] && n < 63; i++) argv[n++] = args[i];
    argv[n] = NULL;
    int fds[2];
    if (pipe(fds)) {
        free(path);
        return -1;
    }
    fflush(stdout);
    fflush(stderr);
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) {
        close(fds[0]);
        close(fds[1]);
        free(path);
        return -1;
    }
    if (pid == 0) {
        /* Exit with the process that started us, however it ends. */
        prctl(PR_SET_PDEATHSIG, SIGTERM);
        if (getppid() != parent) _exit(1);
        dup2(fds[1], 1);
        close(fds[0]);
        close(fds[1]);
        execv(argv[0], (char *const *)argv);
        fprintf(stderr, "exec %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    close(fds[1]);
    f->pid = pid;
    f->port = read_port(fds[0]);
    close(fds[0]);
    if (f->port <= 0) {
        fprintf(stdout, "    fake_intercom (%s) did not start\n", path);
        free(path);
        ifake_stop(f);
        return -1;
    }
    free(path);
    snprintf(f->base_url, sizeof f->base_url, "http://127.0.0.1:%d", f->port);
    return 0;
}

void ifake_stop(ifake *f) {
    if (f->pid <= 0) return;
    kill(f->pid, SIGTERM);
    int status;
    while (waitpid(f->pid, &status, 0) < 0 && errno == EINTR) {}
    f->pid = -1;
}

static void on_done(httpc_request *r) { *(int *)r->user = 1; }

static json_t *request(const ifake *f, const char *method, const char *path) {
    httpc *h = httpc_new(1, 0);
    if (!h) return NULL;
    char *url = xasprintf("%s%s", f->base_url, path);
    httpc_request *r = httpc_request_new(method, url);
    free(url);
    int done = 0;
    r->done = on_done;
    r->user = &done;
    r->timeout_ms = 10000;
    if (!strcmp(method, "POST")) httpc_request_body(r, "", 0);
    json_t *out = NULL;
    if (httpc_submit(h, r) == 0) {
        while (!done) httpc_poll(h, 100);
        if (r->status == 200) out = json_loadb(buf_cstr(&r->response), r->response.len, 0, NULL);
    }
    httpc_request_free(r);
    httpc_free(h);
    return out;
}

json_t *ifake_stats(const ifake *f) { return request(f, "GET", "/_stats"); }

int64_t ifake_stat(const ifake *f, const char *name) {
    json_t *s = ifake_stats(f);
    int64_t out = jx_int(s, name, -1);
    json_decref(s);
    return out;
}

json_t *ifake_post(const ifake *f, const char *path_and_query) {
    return request(f, "POST", path_and_query);
}

static vocab *load_vocab(void) {
    const char *root = getenv("FEEDLINE_ROOT");
    char *path = xasprintf("%s/data/theme_vocabulary.json", root ? root : ".");
    char err[512];
    vocab *v = vocab_load(path, err, sizeof err);
    if (!v) fprintf(stdout, "    %s\n", err);
    free(path);
    return v;
}

/* One generated conversation, through the wire format and back. */
static int fill(ifake_conv *out, const conversation *gen, const convgen_truth *t) {
    json_t *j = convgen_to_intercom(gen);
    conversation c;
    char err[300], reason[160];
    int rc = source_parse_intercom(j, &c, err, sizeof err);
    json_decref(j);
    if (rc) {
        fprintf(stdout, "    generated conversation %s does not parse: %s\n", gen->id, err);
        return -1;
    }
    out->id = xstrdup(c.id);
    out->idnum = strtoull(c.id, NULL, 10);
    out->created_at = c.created_at;
    out->updated_at = c.updated_at;
    out->verdict = (int)conv_quality(&c, reason, sizeof reason);
    out->truth_passes = t->passes_quality;
    conv_record r;
    conv_prepare(&c, "intercom", &r);
    out->subject = xstrdup(r.subject);
    out->external_id = xstrdup(r.external_id);
    out->tags_json = xstrdup(r.tags_json);
    memcpy(out->content_hash, r.content_hash, sizeof out->content_hash);
    conv_record_free(&r);
    conv_free(&c);
    return 0;
}

int ifake_set_build(ifake_set *s, size_t count, uint64_t seed, int64_t base_time, int days) {
    memset(s, 0, sizeof *s);
    vocab *v = load_vocab();
    if (!v) return -1;
    convgen_options o;
    convgen_options_default(&o);
    o.count = count;
    o.base_time = base_time;
    o.days = days;
    convgen *g = convgen_new(v, seed, &o);
    s->v = xcalloc(count ? count : 1, sizeof *s->v);
    int rc = 0;
    for (size_t i = 0; i < count && rc == 0; i++) {
        conversation c = {0};
        convgen_truth t;
        convgen_next(g, &c, &t);
        rc = fill(&s->v[i], &c, &t);
        conv_free(&c);
        if (rc == 0) s->n++;
    }
    convgen_free(g);
    vocab_free(v);
    return rc;
}

void ifake_set_free(ifake_set *s) {
    for (size_t i = 0; i < s->n; i++) {
        free(s->v[i].id);
        free(s->v[i].subject);
        free(s->v[i].external_id);
        free(s->v[i].tags_json);
    }
    free(s->v);
    memset(s, 0, sizeof *s);
}
