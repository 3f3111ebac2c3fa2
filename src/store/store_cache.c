/* The persistent LLM response cache. */
#include "store/store_internal.h"

int store_cache_get(store *s, const char *key, char **response, int64_t *prompt_tokens,
                    int64_t *completion_tokens) {
    *response = NULL;
    db_stmt *st = store_stmt(s,
        "SELECT response, prompt_tokens, completion_tokens FROM llm_cache WHERE cache_key = ?");
    if (!st) return STORE_ERR;
    db_bind_text(st, 1, key);
    int rc = store_step_row(s, st, "reading llm cache");
    if (rc != STORE_FOUND) {
        if (rc == STORE_NOTFOUND) db_reset(st);
        return rc;
    }
    *response = store_col_dup(st, 0);
    if (prompt_tokens) *prompt_tokens = db_col_int(st, 1);
    if (completion_tokens) *completion_tokens = db_col_int(st, 2);
    db_reset(st);
    st = store_stmt(s, "UPDATE llm_cache SET hits = hits + 1 WHERE cache_key = ?");
    if (!st) return STORE_FOUND; /* the hit counter is informational */
    db_bind_text(st, 1, key);
    (void)store_exec_stmt(s, st, "counting cache hit");
    return STORE_FOUND;
}

int store_cache_put(store *s, const char *key, const char *model, const char *task,
                    const char *response, int64_t prompt_tokens, int64_t completion_tokens,
                    int64_t now) {
    db_stmt *st = store_stmt(s,
        "INSERT INTO llm_cache (cache_key, model, task, response, prompt_tokens,"
        " completion_tokens, created_at) VALUES (?,?,?,?,?,?,?)"
        " ON CONFLICT (cache_key) DO NOTHING");
    if (!st) return STORE_ERR;
    db_bind_text(st, 1, key);
    db_bind_text(st, 2, model);
    db_bind_text(st, 3, task);
    db_bind_text(st, 4, response);
    db_bind_int(st, 5, prompt_tokens);
    db_bind_int(st, 6, completion_tokens);
    db_bind_int(st, 7, now);
    return store_exec_stmt(s, st, "writing llm cache");
}
