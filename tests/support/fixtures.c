/* Test fixtures (see fixtures.h). */
#include "support/fixtures.h"
#include "store/db.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <libpq-fe.h>
#include <poll.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "util/buf.h"
#include "util/hash.h"
#include "util/mem.h"
#include "util/timeutil.h"

char *fx_tmpdir(void) {
    const char *base = getenv("TMPDIR");
    char *tmpl = xasprintf("%s/feedline-test-XXXXXX", base && base[0] ? base : "/tmp");
    if (!mkdtemp(tmpl)) {
        perror("mkdtemp");
        abort();
    }
    return tmpl;
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

void fx_rmtree(const char *path) {
    if (path) nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* The URL of server_url with its database name replaced by name (query parameters,
 * if any, kept). */
static char *url_with_database(const char *server_url, const char *name) {
    const char *auth = strstr(server_url, "://");
    const char *path = strchr(auth ? auth + 3 : server_url, '/');
    const char *query = strchr(server_url, '?');
    if (query && path && path > query) path = NULL; /* "host?x=/y": no path */
    size_t head = path ? (size_t)(path - server_url)
                       : query ? (size_t)(query - server_url) : strlen(server_url);
    return xasprintf("%.*s/%s%s", (int)head, server_url, name, query ? query : "");
}

/* A fresh database on the PostgreSQL test server. Names combine the pid, a per-process
 * counter and the clock, so neither the forked test cases of one binary nor two runs
 * of the suite against one server collide. */
static char *pg_test_database(const char *server_url, const char *template_db) {
    /* Shared by every call in the process (atomic: a test may call from threads). */
    static _Atomic unsigned counter;
    PGconn *c = PQconnectdb(server_url);
    if (PQstatus(c) != CONNECTION_OK) {
        fprintf(stdout, "    cannot connect to FEEDLINE_TEST_PG (%s): %s", server_url,
                PQerrorMessage(c));
        abort();
    }
    char name[64];
    snprintf(name, sizeof name, "feedline_test_%ld_%u_%llx", (long)getpid(), atomic_fetch_add(&counter, 1) + 1,
             (unsigned long long)(mono_us() & 0xffffffffffULL));
    char *sql = template_db ? xasprintf("CREATE DATABASE %s TEMPLATE %s", name, template_db)
                            : xasprintf("CREATE DATABASE %s", name);
    PGresult *r = PQexec(c, sql);
    if (PQresultStatus(r) != PGRES_COMMAND_OK) {
        fprintf(stdout, "    %s: %s", sql, PQresultErrorMessage(r));
        abort();
    }
    PQclear(r);
    PQfinish(c);
    free(sql);
    return url_with_database(server_url, name);
}

char *fx_db_url(void) {
    const char *pg = getenv("FEEDLINE_TEST_PG");
    if (pg && pg[0]) return pg_test_database(pg, NULL);
    char *dir = fx_tmpdir();
    char *url = xasprintf("%s/test.db", dir);
    free(dir);
    return url;
}

char *fx_db_copy(const char *url) {
    const char *pg = getenv("FEEDLINE_TEST_PG");
    if (pg && pg[0] && db_is_postgres_url(url)) {
        /* CREATE DATABASE ... TEMPLATE copies it server-side (nobody may be connected). */
        const char *name = strrchr(url, '/');
        char *src = xstrdup(name ? name + 1 : url);
        char *q = strchr(src, '?');
        if (q) *q = '\0';
        char *copy = pg_test_database(pg, src);
        free(src);
        return copy;
    }
    char *copy = fx_db_url();
    FILE *in = fopen(url, "rb"), *out = fopen(copy, "wb");
    if (!in || !out) {
        fprintf(stdout, "    cannot copy %s\n", url);
        abort();
    }
    char chunk[65536];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, in)) > 0)
        if (fwrite(chunk, 1, n, out) != n) abort();
    fclose(in);
    if (fclose(out) != 0) abort();
    return copy;
}

store *fx_store_open(const char *url) {
    store *s = NULL;
    char err[512];
    if (store_open(url, &s, err, sizeof err) != STORE_OK) {
        fprintf(stdout, "    cannot open store %s: %s\n", url, err);
        abort();
    }
    return s;
}

void fx_record(conv_record *r, const char *id, int64_t created_at, const char *body) {
    memset(r, 0, sizeof *r);
    r->id = xstrdup(id);
    r->created_at = created_at;
    r->source = xstrdup("jsonl");
    r->source_type = xstrdup("jsonl");
    r->tags_json = xstrdup("[]");
    r->body = xstrdup(body);
    r->digest = xstrdup(body);
    r->transcript = xasprintf("[Customer]: %s", body);
    r->support_text = xstrdup("");
    char *key = xasprintf("%s|%lld|%s", id, (long long)created_at, body);
    sha256_hex(key, strlen(key), r->content_hash);
    free(key);
}

char *fx_path(const char *rel) {
    const char *root = getenv("FEEDLINE_ROOT");
    return xasprintf("%s/%s", root ? root : ".", rel);
}

int fx_write_file(const char *path, const char *text) {
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    size_t n = strlen(text);
    int ok = fwrite(text, 1, n, f) == n;
    ok &= fclose(f) == 0;
    return ok ? 0 : -1;
}

static void drain(int fd, buf_t *b, int *open_flag) {
    char chunk[8192];
    ssize_t n = read(fd, chunk, sizeof chunk);
    if (n > 0) buf_append(b, chunk, (size_t)n);
    else if (n == 0 || (errno != EINTR && errno != EAGAIN)) *open_flag = 0;
}

int fx_run(char *const argv[], char *const env[], char **out, char **err) {
    int po[2], pe[2];
    if (pipe(po) || pipe(pe)) return -1;
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) {
        dup2(po[1], 1);
        dup2(pe[1], 2);
        close(po[0]);
        close(pe[0]);
        close(po[1]);
        close(pe[1]);
        for (size_t i = 0; env && env[i]; i++) putenv(env[i]);
        execvp(argv[0], argv);
        fprintf(stderr, "exec %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    close(po[1]);
    close(pe[1]);
    buf_t bo = BUF_INIT, be = BUF_INIT;
    int oo = 1, eo = 1;
    while (oo || eo) {
        struct pollfd p[2] = {{po[0], POLLIN, 0}, {pe[0], POLLIN, 0}};
        if (poll(p, 2, -1) < 0) {
            if (errno == EINTR) continue;
            break;
        }
        if (oo && (p[0].revents & (POLLIN | POLLHUP | POLLERR))) drain(po[0], &bo, &oo);
        if (eo && (p[1].revents & (POLLIN | POLLHUP | POLLERR))) drain(pe[0], &be, &eo);
        if (!oo) p[0].fd = -1;
        if (!eo) p[1].fd = -1;
    }
    close(po[0]);
    close(pe[0]);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
    if (out) *out = buf_detach(&bo);
    else buf_free(&bo);
    if (err) *err = buf_detach(&be);
    else buf_free(&be);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

#define FX_MAX_ARGS 32

const char *fx_feedline_bin(void) {
    const char *bin = getenv("FEEDLINE_BIN");
    return bin && bin[0] ? bin : "build/asan/feedline";
}

int fx_feedline(const char *const args[], const char *const env[], char **out, char **err) {
    char *argv[FX_MAX_ARGS], *envv[FX_MAX_ARGS];
    size_t n = 0, k = 0;
    argv[n++] = (char *)fx_feedline_bin();
    for (size_t i = 0; args && args[i] && n < FX_MAX_ARGS - 1; i++) argv[n++] = (char *)args[i];
    argv[n] = NULL;
    char *vocab = fx_path("data/theme_vocabulary.json");
    char *env_vocab = xasprintf("FEEDLINE_VOCAB=%s", vocab);
    envv[k++] = env_vocab; /* first, so that an addition can override it */
    for (size_t i = 0; env && env[i] && k < FX_MAX_ARGS - 1; i++) envv[k++] = (char *)env[i];
    envv[k] = NULL;
    int rc = fx_run(argv, envv, out, err);
    free(vocab);
    free(env_vocab);
    return rc;
}

int fx_pg_cluster(const char *action, const char *dir) {
    char *script = fx_path("scripts/pg-test-cluster");
    char *argv[] = {script, (char *)action, (char *)dir, NULL};
    char *out = NULL, *err = NULL;
    int rc = fx_run(argv, NULL, &out, &err);
    if (rc != 0) fprintf(stdout, "    pg-test-cluster %s: %s%s\n", action, out, err);
    free(out);
    free(err);
    free(script);
    return rc;
}
