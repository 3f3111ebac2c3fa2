/* Spawning the API server for tests and talking to it over real sockets (see server.h). */
#include "support/server.h"
#include "support/outcome.h"
#include "store/db.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <netinet/in.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "source/source.h"
#include "support/convgen.h"
#include "support/fixtures.h"
#include "text/vocab.h"
#include "util/buf.h"
#include "util/mem.h"
#include "util/timeutil.h"

#define START_TIMEOUT_MS 60000
#define MAX_ARGS 32

/* ------------------------------------------------------------------ the server process */

static void exec_server(const char *db, const char *const extra[], const char *const env[],
                        int out_fd, const char *log_path) {
    const char *bin = getenv("FEEDLINE_BIN");
    if (!bin || !bin[0]) bin = "build/asan/feedline";
    const char *argv[MAX_ARGS] = {bin, "serve", "--db", db, "--listen", "127.0.0.1:0"};
    size_t n = 6;
    for (size_t i = 0; extra && extra[i] && n < MAX_ARGS - 1; i++) argv[n++] = extra[i];
    argv[n] = NULL;
    int logfd = open(log_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (logfd >= 0) dup2(logfd, 2);
    dup2(out_fd, 1);
    for (size_t i = 0; env && env[i]; i++) putenv((char *)env[i]);
    if (!getenv("FEEDLINE_LOG")) putenv((char *)"FEEDLINE_LOG=info");
    if (!getenv("FEEDLINE_VOCAB")) {
        char *vocab_path = fx_path("data/theme_vocabulary.json");
        setenv("FEEDLINE_VOCAB", vocab_path, 1);
        free(vocab_path);
    }
    execv(bin, (char *const *)argv);
    fprintf(stderr, "exec %s: %s\n", bin, strerror(errno));
    _exit(127);
}

/* Reads the child's stdout until the listening line; the port, or -1. */
static int read_port(int fd, pid_t pid) {
    buf_t b = BUF_INIT;
    int64_t deadline = mono_ms() + START_TIMEOUT_MS;
    int port = -1;
    while (port < 0 && mono_ms() < deadline) {
        struct pollfd p = {fd, POLLIN, 0};
        int rc = poll(&p, 1, 200);
        if (rc < 0 && errno != EINTR) break;
        if (rc > 0) {
            char chunk[256];
            ssize_t n = read(fd, chunk, sizeof chunk);
            if (n <= 0) break; /* the server exited */
            buf_append(&b, chunk, (size_t)n);
            /* "listening on ADDR:PORT": any address (a test may bind 0.0.0.0, which
             * 127.0.0.1 reaches too); the port follows the line's last colon. */
            const char *line = strstr(buf_cstr(&b), "listening on ");
            const char *nl = line ? strchr(line, '\n') : NULL;
            if (nl) {
                const char *colon = nl;
                while (colon > line && *colon != ':') colon--;
                if (*colon == ':') port = atoi(colon + 1);
            }
        }
        if (waitpid(pid, NULL, WNOHANG) == pid) break;
    }
    buf_free(&b);
    return port;
}

int ts_start(test_server *s, const char *db, const char *const extra[], const char *const env[]) {
    memset(s, 0, sizeof *s);
    char *dir = fx_tmpdir();
    s->log_path = xasprintf("%s/server.log", dir);
    free(dir);
    int pfd[2];
    if (pipe(pfd) != 0) return -1;
    fflush(stdout);
    fflush(stderr);
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) {
        /* A test that fails early never stops its server: let it die with the test. */
        if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != parent) _exit(127);
        close(pfd[0]);
        exec_server(db, extra, env, pfd[1], s->log_path);
    }
    close(pfd[1]);
    s->pid = pid;
    s->port = read_port(pfd[0], pid);
    close(pfd[0]); /* the server writes nothing more to stdout */
    if (s->port <= 0) {
        ts_dump_log(s);
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        s->pid = 0;
        return -1;
    }
    snprintf(s->base, sizeof s->base, "http://127.0.0.1:%d", s->port);
    return 0;
}

test_server ts_start_empty(char **db, const char *const extra[], const char *const env[]) {
    *db = fx_db_url();
    store *st = fx_store_open(*db);
    store_close(st);
    test_server s;
    if (ts_start(&s, *db, extra, env) != 0) s.pid = 0;
    return s;
}

int ts_finish(test_server *s, char *db) {
    int rc = ts_stop(s, 30000);
    ts_remove_db(db);
    free(db);
    return rc;
}

static int wait_exit(pid_t pid, int timeout_ms, int *status) {
    int64_t deadline = mono_ms() + timeout_ms;
    while (mono_ms() < deadline) {
        pid_t r = waitpid(pid, status, WNOHANG);
        if (r == pid) return 0;
        if (r < 0 && errno != EINTR) return -1;
        sleep_ms(10);
    }
    return -1;
}

int ts_stop(test_server *s, int timeout_ms) {
    int result = -1;
    if (s->pid > 0) {
        kill(s->pid, SIGTERM);
        int status = 0;
        if (wait_exit(s->pid, timeout_ms, &status) == 0) {
            result = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
        } else {
            kill(s->pid, SIGKILL);
            waitpid(s->pid, NULL, 0);
        }
        if (result != 0) ts_dump_log(s);
    }
    s->pid = 0;
    if (s->log_path) {
        char *dir = xstrdup(s->log_path);
        char *slash = strrchr(dir, '/');
        if (slash) *slash = '\0';
        fx_rmtree(dir);
        free(dir);
    }
    free(s->log_path);
    s->log_path = NULL;
    return result;
}

void ts_kill9(test_server *s) {
    if (s->pid <= 0) return;
    kill(s->pid, SIGKILL);
    waitpid(s->pid, NULL, 0); /* reaped: its pid is really gone */
    s->pid = 0;
}

int ts_connect(int port, int src_last) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return -1;
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    if (src_last > 0) {
        a.sin_addr.s_addr = htonl(0x7f000000u | (uint32_t)src_last);
        if (bind(fd, (struct sockaddr *)&a, sizeof a) != 0) {
            close(fd);
            return -1;
        }
    }
    a.sin_port = htons((uint16_t)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

void ts_dump_log(const test_server *s) {
    if (!s->log_path) return;
    FILE *f = fopen(s->log_path, "r");
    if (!f) return;
    char line[1024];
    size_t n = 0;
    char *tail[40] = {0};
    while (fgets(line, sizeof line, f)) {
        free(tail[n % 40]);
        tail[n % 40] = xstrdup(line);
        n++;
    }
    fclose(f);
    fprintf(stdout, "    --- server log (last lines) ---\n");
    for (size_t i = n > 40 ? n - 40 : 0; i < n; i++) fprintf(stdout, "    | %s", tail[i % 40]);
    for (size_t i = 0; i < 40; i++) free(tail[i]);
}

/* ------------------------------------------------------------------ HTTP client */

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static void curl_init(void) { curl_global_init(CURL_GLOBAL_DEFAULT); }

static size_t on_body(char *p, size_t size, size_t n, void *ctx) {
    buf_append(ctx, p, size * n);
    return size * n;
}

int http_do(const char *method, const char *url, const char *body, const char *const headers[],
            http_resp *out) {
    pthread_once(&curl_once, curl_init);
    memset(out, 0, sizeof *out);
    CURL *c = curl_easy_init();
    if (!c) return -1;
    buf_t b = BUF_INIT, h = BUF_INIT;
    struct curl_slist *hl = NULL;
    for (size_t i = 0; headers && headers[i]; i++) hl = curl_slist_append(hl, headers[i]);
    hl = curl_slist_append(hl, "Expect:");
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    if (strcmp(method, "HEAD") == 0) curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
    if (body) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
    }
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hl);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, &h);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 60L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    CURLcode rc = curl_easy_perform(c);
    if (rc == CURLE_OK) {
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &out->status);
        curl_easy_getinfo(c, CURLINFO_TOTAL_TIME, &out->seconds);
    }
    curl_slist_free_all(hl);
    curl_easy_cleanup(c);
    out->len = b.len;
    out->body = buf_detach(&b);
    out->headers = buf_detach(&h);
    out->json = json_loads(out->body, JSON_DECODE_ANY, NULL);
    return rc == CURLE_OK ? 0 : -1;
}

void http_resp_free(http_resp *r) {
    free(r->body);
    free(r->headers);
    json_decref(r->json);
    memset(r, 0, sizeof *r);
}

char *http_header(const http_resp *r, const char *name) {
    size_t n = strlen(name);
    for (const char *line = r->headers; line && *line;) {
        const char *end = strchr(line, '\n');
        if (!end) end = line + strlen(line);
        if (strncasecmp(line, name, n) == 0 && line[n] == ':') {
            const char *v = line + n + 1;
            while (*v == ' ') v++;
            const char *e = end;
            while (e > v && (e[-1] == '\r' || e[-1] == ' ')) e--;
            return xstrndup(v, (size_t)(e - v));
        }
        line = *end ? end + 1 : end;
    }
    return NULL;
}

int ts_get(const test_server *s, const char *path, http_resp *out) {
    char *url = xasprintf("%s%s", s->base, path);
    int rc = http_do("GET", url, NULL, NULL, out);
    free(url);
    return rc;
}

int ts_post(const test_server *s, const char *path, const char *body, http_resp *out) {
    char *url = xasprintf("%s%s", s->base, path);
    static const char *const json_ct[] = {"Content-Type: application/json", NULL};
    int rc = http_do("POST", url, body, body ? json_ct : NULL, out);
    free(url);
    return rc;
}

json_t *ts_wait_status(const test_server *s, int64_t run_id, int timeout_ms,
                       int (*pred)(const json_t *status, void *ctx), void *ctx, int *ok) {
    char path[96];
    snprintf(path, sizeof path, "/api/pipeline/status/%lld", (long long)run_id);
    int64_t deadline = mono_ms() + timeout_ms;
    json_t *last = NULL;
    *ok = 0;
    while (mono_ms() < deadline) {
        http_resp r;
        if (ts_get(s, path, &r) == 0 && r.status == 200 && r.json) {
            json_decref(last);
            last = json_incref(r.json);
            if (pred(last, ctx)) {
                *ok = 1;
                http_resp_free(&r);
                break;
            }
        }
        http_resp_free(&r);
        sleep_ms(2);
    }
    return last;
}

int ts_is_terminal(const json_t *status, void *ctx) {
    (void)ctx;
    const char *s = json_string_value(json_object_get(status, "status"));
    return s && (!strcmp(s, "completed") || !strcmp(s, "stopped") || !strcmp(s, "failed"));
}

int ts_in_phase(const json_t *status, void *ctx) {
    const char *p = json_string_value(json_object_get(status, "current_phase"));
    return p && strcmp(p, (const char *)ctx) == 0;
}

/* ------------------------------------------------------------------ data */

static void import_generated(store *st, size_t n, uint64_t seed) {
    char *vp = fx_path("data/theme_vocabulary.json"), err[256];
    vocab *v = vocab_load(vp, err, sizeof err);
    free(vp);
    if (!v) {
        fprintf(stdout, "    cannot load the vocabulary: %s\n", err);
        abort();
    }
    convgen_options opt;
    convgen_options_default(&opt);
    opt.count = n;
    opt.base_time = wall_unix();
    convgen *g = convgen_new(v, seed, &opt);
    import_stats stats = {0};
    store_begin(st);
    for (size_t i = 0; i < n; i++) {
        conversation c = {0};
        convgen_truth truth;
        convgen_next(g, &c, &truth);
        if (import_conversation(st, &c, "jsonl", &stats) != 0) {
            fprintf(stdout, "    import failed: %s\n", store_errmsg(st));
            abort();
        }
        conv_free(&c);
    }
    store_commit(st);
    convgen_free(g);
    vocab_free(v);
}

char *ts_corpus_db(size_t n, uint64_t seed) {
    char *db = fx_db_url();
    store *st = fx_store_open(db);
    if (n == 0) {
        char *sample = fx_path("data/sample_conversations.jsonl"), err[256];
        import_stats stats = {0};
        if (import_file(st, sample, &stats, NULL, NULL, err, sizeof err) != 0) {
            fprintf(stdout, "    import %s: %s\n", sample, err);
            abort();
        }
        free(sample);
    } else {
        import_generated(st, n, seed);
    }
    store_close(st);
    return db;
}

char *ts_copy_db(const char *db) { return fx_db_copy(db); }

void ts_remove_db(const char *db) {
    if (db_is_postgres_url(db)) return; /* the throwaway cluster goes as a whole */
    char *dir = xstrdup(db);
    char *slash = strrchr(dir, '/');
    if (slash) {
        *slash = '\0';
        fx_rmtree(dir);
    }
    free(dir);
}

int64_t ts_start_run(const test_server *s, const char *body) {
    http_resp r;
    int64_t id = -1;
    if (ts_post(s, "/api/pipeline/run", body, &r) == 0 && r.status == 200)
        id = json_integer_value(json_object_get(r.json, "run_id"));
    else
        fprintf(stdout, "    POST /api/pipeline/run -> %ld %s\n", r.status, r.body ? r.body : "");
    http_resp_free(&r);
    return id > 0 ? id : -1;
}

char *ts_stories_fingerprint(const test_server *s, int64_t run_id) {
    char path[96];
    snprintf(path, sizeof path, "/api/stories?run_id=%lld&limit=200", (long long)run_id);
    http_resp r;
    ts_get(s, path, &r);
    char *text = outcome_stories_text(json_object_get(r.json, "stories"));
    http_resp_free(&r);
    return text;
}
