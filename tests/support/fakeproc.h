/* Test servers as child processes: start a fake binary (build/fake_openai, ...), read
 * the port it prints ("listening on 127.0.0.1:PORT"), talk to its admin endpoints
 * (/_stats, /_reset, /_config) and stop it. Also starts the CLI in the background for
 * tests that act on a run while it is running. */
#ifndef FEEDLINE_FAKEPROC_H
#define FEEDLINE_FAKEPROC_H

#include <jansson.h>
#include <stdint.h>
#include <sys/types.h>

typedef struct fakeproc {
    pid_t pid;
    int port;
    char url[64]; /* "http://127.0.0.1:PORT" */
} fakeproc;

/* Starts binary (a path, or a name under $FEEDLINE_BUILD, default "build") with args
 * (NULL-terminated, without argv[0]) and waits up to 10 s for its port. The child is
 * sent SIGTERM if the test process dies first. 0, or -1 (nothing left running). */
int fakeproc_start(fakeproc *fp, const char *binary, const char *const args[]);
/* GET url + path, parsed as JSON; NULL on any error. */
json_t *fakeproc_get_json(const fakeproc *fp, const char *path);
/* The fake's counters (GET /_stats). */
json_t *fakeproc_stats(const fakeproc *fp);
/* One integer counter of /_stats (top level), or -1. */
int64_t fakeproc_stat_int(const fakeproc *fp, const char *key);
/* POST url + path with a JSON body; the HTTP status, or -1. */
int fakeproc_post(const fakeproc *fp, const char *path, const char *json_body);
/* SIGTERM, then waits (SIGKILL after 5 s). Returns the exit status, or -1. */
int fakeproc_stop(fakeproc *fp);

/* Starts argv in the background with env additions ("K=V", NULL-terminated, may be
 * NULL), stdout and stderr to out_path. Returns the pid, or -1. */
pid_t fakeproc_spawn(char *const argv[], char *const env[], const char *out_path);
/* The same, but the child waits before exec until fakeproc_open_gate(*gate): the test
 * learns the pid first (to arm a fake's kill switch with it, say). */
pid_t fakeproc_spawn_gated(char *const argv[], char *const env[], const char *out_path,
                           int *gate);
/* Lets a gated child go on (and closes gate). 0, or -1. */
int fakeproc_open_gate(int gate);
/* Waits for a spawned process up to timeout_ms; its exit status, -2 on timeout (the
 * process keeps running), -1 on error or when it was killed by a signal. */
int fakeproc_wait(pid_t pid, int timeout_ms);

#endif
