/* Test servers as child processes (see fakeproc.h). */
#include "support/fakeproc.h"

#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "util/buf.h"
#include "util/jsonx.h"
#include "util/mem.h"
#include "util/timeutil.h"

#define START_TIMEOUT_MS 10000
#define STOP_TIMEOUT_MS 5000

static char *binary_path(const char *binary) {
    if (strchr(binary, '/')) return xstrdup(binary);
    const char *b = getenv("FEEDLINE_BUILD");
    return xasprintf("%s/%s", b && *b ? b : "build", binary);
}

/* Reads the child's stdout until the "listening" line; the port, or -1. */
static int read_port(int fd) {
    buf_t b = BUF_INIT;
    int64_t deadline = mono_ms() + START_TIMEOUT_MS;
    int port = -1;
    while (port < 0 && mono_ms() < deadline) {
        struct pollfd p = {fd, POLLIN, 0};
        int r = poll(&p, 1, 100);
        if (r < 0 && errno != EINTR) break;
        if (r <= 0) continue;
        char tmp[256];
        ssize_t n = read(fd, tmp, sizeof tmp);
        if (n <= 0) break;
        buf_append(&b, tmp, (size_t)n);
        const char *l = strstr(buf_cstr(&b), "listening on 127.0.0.1:");
        if (l && strchr(l, '\n')) port = atoi(l + strlen("listening on 127.0.0.1:"));
    }
    buf_free(&b);
    return port > 0 ? port : -1;
}

int fakeproc_start(fakeproc *fp, const char *binary, const char *const args[]) {
    memset(fp, 0, sizeof fp[0]);
    fp->pid = -1;
    char *path = binary_path(binary);
    size_t n = 0;
    while (args && args[n]) n++;
    char **argv = xcalloc(n + 2, sizeof *argv);
    argv[0] = path;
    for (size_t i = 0; i < n; i++) argv[i + 1] = (char *)args[i];
    int pipefd[2];
    if (pipe(pipefd) != 0) {
        free(argv);
        free(path);
        return -1;
    }
    fflush(stdout);
    fflush(stderr);
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGTERM);
        if (getppid() != parent) _exit(127);
        dup2(pipefd[1], 1);
        close(pipefd[0]);
        close(pipefd[1]);
        execv(argv[0], argv);
        fprintf(stderr, "exec %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    close(pipefd[1]);
    free(argv);
    free(path);
    if (pid < 0) {
        close(pipefd[0]);
        return -1;
    }
    fp->pid = pid;
    fp->port = read_port(pipefd[0]);
    close(pipefd[0]); /* the fake writes nothing after the port line */
    if (fp->port < 0) {
        fakeproc_stop(fp);
        return -1;
    }
    snprintf(fp->url, sizeof fp->url, "http://127.0.0.1:%d", fp->port);
    return 0;
}

static size_t collect(char *data, size_t size, size_t nmemb, void *user) {
    buf_append(user, data, size * nmemb);
    return size * nmemb;
}

/* One request; the HTTP status (body into out), or -1. */
static long request(const fakeproc *fp, const char *method, const char *path, const char *body,
                    buf_t *out) {
    CURL *c = curl_easy_init();
    if (!c) return -1;
    char *url = xasprintf("%s%s", fp->url, path);
    struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    if (body) curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, out);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 10000L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    long status = -1;
    if (curl_easy_perform(c) == CURLE_OK) curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    free(url);
    return status;
}

json_t *fakeproc_get_json(const fakeproc *fp, const char *path) {
    buf_t b = BUF_INIT;
    long st = request(fp, "GET", path, NULL, &b);
    json_t *j = st == 200 ? json_loads(buf_cstr(&b), 0, NULL) : NULL;
    buf_free(&b);
    return j;
}

json_t *fakeproc_stats(const fakeproc *fp) { return fakeproc_get_json(fp, "/_stats"); }

int64_t fakeproc_stat_int(const fakeproc *fp, const char *key) {
    json_t *s = fakeproc_stats(fp);
    int64_t n = jx_int(s, key, -1);
    json_decref(s);
    return n;
}

int fakeproc_post(const fakeproc *fp, const char *path, const char *json_body) {
    buf_t b = BUF_INIT;
    long st = request(fp, "POST", path, json_body ? json_body : "{}", &b);
    buf_free(&b);
    return (int)st;
}

int fakeproc_wait(pid_t pid, int timeout_ms) {
    int64_t deadline = mono_ms() + timeout_ms;
    for (;;) {
        int status;
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid) return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
        if (r < 0 && errno != EINTR) return -1;
        if (mono_ms() >= deadline) return -2;
        sleep_ms(5);
    }
}

int fakeproc_stop(fakeproc *fp) {
    if (fp->pid <= 0) return -1;
    kill(fp->pid, SIGTERM);
    int rc = fakeproc_wait(fp->pid, STOP_TIMEOUT_MS);
    if (rc == -2) {
        kill(fp->pid, SIGKILL);
        rc = fakeproc_wait(fp->pid, STOP_TIMEOUT_MS);
        if (rc == -2) rc = -1;
    }
    fp->pid = -1;
    return rc;
}

/* The child's side of a spawn: output to out_path, env added, then argv; waits first
 * for a byte on gate when gate >= 0. Never returns. */
static void spawn_child(pid_t parent, char *const argv[], char *const env[],
                        const char *out_path, int gate) {
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() != parent) _exit(127);
    int fd = open(out_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) _exit(127);
    dup2(fd, 1);
    dup2(fd, 2);
    close(fd);
    for (size_t i = 0; env && env[i]; i++) putenv(env[i]);
    if (gate >= 0) {
        char c;
        ssize_t r;
        while ((r = read(gate, &c, 1)) < 0 && errno == EINTR) {}
        if (r != 1) _exit(127); /* the test went away */
        close(gate);
    }
    execvp(argv[0], argv);
    _exit(127);
}

pid_t fakeproc_spawn(char *const argv[], char *const env[], const char *out_path) {
    fflush(stdout);
    fflush(stderr);
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid != 0) return pid;
    spawn_child(parent, argv, env, out_path, -1);
    return -1; /* not reached */
}

pid_t fakeproc_spawn_gated(char *const argv[], char *const env[], const char *out_path,
                           int *gate) {
    int fds[2];
    if (pipe(fds) != 0) return -1;
    fflush(stdout);
    fflush(stderr);
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid == 0) {
        close(fds[1]);
        spawn_child(parent, argv, env, out_path, fds[0]);
    }
    close(fds[0]);
    if (pid < 0) {
        close(fds[1]);
        return -1;
    }
    *gate = fds[1];
    return pid;
}

int fakeproc_open_gate(int gate) {
    ssize_t w = write(gate, "g", 1);
    close(gate);
    return w == 1 ? 0 : -1;
}
