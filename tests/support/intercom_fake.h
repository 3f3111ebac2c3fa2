/* intercom_fake — starts and talks to the fake Intercom server (tests/fakes/
 * fake_intercom.c, built as $FEEDLINE_BUILD/fake_intercom) from tests and benchmarks.
 *
 * The server runs as a child process on an ephemeral loopback port; it is told to exit
 * when the process that started it dies (PR_SET_PDEATHSIG), so a test case that fails
 * half-way never leaves a server behind. */
#ifndef FEEDLINE_INTERCOM_FAKE_H
#define FEEDLINE_INTERCOM_FAKE_H

#include <jansson.h>
#include <stdint.h>
#include <sys/types.h>

typedef struct ifake {
    pid_t pid;
    int port;
    char base_url[64]; /* "http://127.0.0.1:PORT" */
} ifake;

/* Starts the server with these extra arguments (NULL-terminated; NULL for none) and
 * waits until it listens. 0, or -1 with the reason printed. */
int ifake_start(ifake *f, const char *const *args);
/* Stops it (SIGTERM, then waits). Safe on a server that failed to start. */
void ifake_stop(ifake *f);
/* GET /_stats, or NULL. Caller decrefs. */
json_t *ifake_stats(const ifake *f);
/* One counter of /_stats (-1 when unavailable). */
int64_t ifake_stat(const ifake *f, const char *name);
/* POST to a control path ("/_reset", "/_touch?n=3"); the JSON answer or NULL. */
json_t *ifake_post(const ifake *f, const char *path_and_query);

/* What a fake started with --count/--seed/--base-time/--days serves, regenerated
 * independently of the client: each conversation with its quality verdict (as a search
 * item), the generator's own intent, and the record conv_prepare() makes of its FULL
 * thread (so a test can tell a stored full conversation from a stored summary). */
typedef struct ifake_conv {
    char *id;
    uint64_t idnum;
    int64_t created_at, updated_at;
    int verdict;         /* enum quality_verdict */
    int truth_passes;    /* convgen_truth.passes_quality */
    char *subject, *external_id, *tags_json;
    char content_hash[65];
} ifake_conv;

typedef struct ifake_set {
    ifake_conv *v;
    size_t n;
} ifake_set;

/* 0, or -1 with the reason printed. */
int ifake_set_build(ifake_set *s, size_t count, uint64_t seed, int64_t base_time, int days);
void ifake_set_free(ifake_set *s);

#endif
