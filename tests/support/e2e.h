/* End-to-end plumbing for tests that run the real CLI against the fake
 * OpenAI-compatible endpoint (build/fake_openai): the fake's start on the bundled
 * vocabulary, the environment a feedline process needs to talk to it, and running the
 * CLI with that environment. One implementation for every e2e test. */
#ifndef FEEDLINE_TEST_E2E_H
#define FEEDLINE_TEST_E2E_H

#include "support/fakeproc.h"

#define E2E_MAX_ENV 24

typedef struct e2e_env {
    char *e[E2E_MAX_ENV]; /* "K=V", owned, NULL-terminated */
    int n;
} e2e_env;

/* FEEDLINE_VOCAB (the bundled vocabulary), OPENAI_BASE_URL (fp's /v1),
 * OPENAI_API_KEY=test-key, FEEDLINE_LLM_BACKOFF_MS=20, FEEDLINE_LLM_TIMEOUT_MS=10000. */
void e2e_env_for(e2e_env *s, const fakeproc *fp);
/* Sets one variable from a printf format giving "K=V", replacing an earlier K. */
void e2e_env_set(e2e_env *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void e2e_env_free(e2e_env *s);

/* Starts the fake with --vocab (the bundled vocabulary) and extra arguments
 * (NULL-terminated, may be NULL). 0, or -1. */
int e2e_start_fake(fakeproc *fp, const char *const extra[]);

/* The CLI binary under test: FEEDLINE_BIN, or the sanitizer build. */
const char *e2e_bin(void);
/* Runs `feedline ARGS...` (NULL-terminated; FEEDLINE_BIN, the sanitizer build) with env
 * (may be NULL) to completion: its exit status, stdout and stderr in out and err when
 * they are not NULL (caller frees). */
int e2e_feedline(const e2e_env *env, char **out, char **err, ...);

#endif
