/* End-to-end plumbing (see e2e.h). */
#include "support/e2e.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "support/fixtures.h"
#include "util/mem.h"

#define MAX_ARGS 32

void e2e_env_for(e2e_env *s, const fakeproc *fp) {
    memset(s, 0, sizeof *s);
    char *vpath = fx_path("data/theme_vocabulary.json");
    e2e_env_set(s, "FEEDLINE_VOCAB=%s", vpath);
    free(vpath);
    e2e_env_set(s, "OPENAI_BASE_URL=%s/v1", fp->url);
    e2e_env_set(s, "OPENAI_API_KEY=test-key");
    e2e_env_set(s, "FEEDLINE_LLM_BACKOFF_MS=20");
    e2e_env_set(s, "FEEDLINE_LLM_TIMEOUT_MS=10000");
}

void e2e_env_set(e2e_env *s, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    char *kv = xvasprintf(fmt, ap);
    va_end(ap);
    const char *eq = strchr(kv, '=');
    size_t klen = eq ? (size_t)(eq - kv) + 1 : strlen(kv);
    for (int i = 0; i < s->n; i++)
        if (!strncmp(s->e[i], kv, klen)) {
            free(s->e[i]);
            s->e[i] = kv;
            return;
        }
    if (s->n < E2E_MAX_ENV - 1) s->e[s->n++] = kv;
    else free(kv);
}

void e2e_env_free(e2e_env *s) {
    for (int i = 0; i < s->n; i++) free(s->e[i]);
    memset(s, 0, sizeof *s);
}

int e2e_start_fake(fakeproc *fp, const char *const extra[]) {
    char *vpath = fx_path("data/theme_vocabulary.json");
    const char *args[MAX_ARGS] = {"--vocab", vpath};
    size_t n = 2;
    while (extra && *extra && n < MAX_ARGS - 1) args[n++] = *extra++;
    args[n] = NULL;
    int rc = fakeproc_start(fp, "fake_openai", args);
    free(vpath);
    return rc;
}

const char *e2e_bin(void) { return fx_feedline_bin(); }

int e2e_feedline(const e2e_env *env, char **out, char **err, ...) {
    const char *args[MAX_ARGS];
    int n = 0;
    va_list ap;
    va_start(ap, err);
    const char *a;
    while ((a = va_arg(ap, const char *)) && n < MAX_ARGS - 1) args[n++] = a;
    va_end(ap);
    args[n] = NULL;
    char *o = NULL, *e = NULL;
    int rc = fx_feedline(args, env ? (const char *const *)env->e : NULL, &o, &e);
    if (out) *out = o;
    else free(o);
    if (err) *err = e;
    else free(e);
    return rc;
}
