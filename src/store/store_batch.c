/* The OpenAI batches of batch-mode runs (run_batches, migration 7). */
#include <stdlib.h>
#include <string.h>

#include "store/store_internal.h"
#include "util/mem.h"

void run_batch_rows_free(run_batch_row *rows, size_t n) {
    for (size_t i = 0; i < n; i++) {
        free(rows[i].batch_id);
        free(rows[i].endpoint);
        free(rows[i].input_file_id);
        free(rows[i].status);
        free(rows[i].custom_ids);
    }
    free(rows);
}

int store_batch_put(store *s, int64_t run_id, const char *batch_id, const char *endpoint,
                    const char *input_file_id, const char *status, int64_t requests,
                    const char *custom_ids, int64_t now) {
    db_stmt *st = store_stmt(s,
        "INSERT INTO run_batches (batch_id, run_id, endpoint, input_file_id, status, requests,"
        " custom_ids, done, created_at, updated_at) VALUES (?,?,?,?,?,?,?,0,?,?)"
        " ON CONFLICT (batch_id) DO UPDATE SET status = excluded.status,"
        " updated_at = excluded.updated_at");
    if (!st) return STORE_ERR;
    int i = 1;
    db_bind_text(st, i++, batch_id);
    db_bind_int(st, i++, run_id);
    db_bind_text(st, i++, endpoint);
    db_bind_text(st, i++, input_file_id);
    db_bind_text(st, i++, status);
    db_bind_int(st, i++, requests);
    db_bind_text(st, i++, custom_ids ? custom_ids : "");
    db_bind_int(st, i++, now);
    db_bind_int(st, i++, now);
    return store_exec_stmt(s, st, "recording a batch");
}

int store_batch_set_status(store *s, const char *batch_id, const char *status, int done,
                           int64_t now) {
    db_stmt *st = store_stmt(s,
        "UPDATE run_batches SET status = ?, done = ?, updated_at = ? WHERE batch_id = ?");
    if (!st) return STORE_ERR;
    db_bind_text(st, 1, status);
    db_bind_int(st, 2, done ? 1 : 0);
    db_bind_int(st, 3, now);
    db_bind_text(st, 4, batch_id);
    return store_exec_stmt(s, st, "updating a batch");
}

int store_batch_list(store *s, int64_t run_id, int all, run_batch_row **rows, size_t *n) {
    *rows = NULL;
    *n = 0;
    db_stmt *st = store_stmt(s,
        "SELECT batch_id, endpoint, input_file_id, status, requests, custom_ids, done"
        " FROM run_batches WHERE run_id = ? AND (done = 0 OR ? = 1)"
        " ORDER BY created_at, batch_id");
    if (!st) return STORE_ERR;
    db_bind_int(st, 1, run_id);
    db_bind_int(st, 2, all ? 1 : 0);
    size_t cap = 0;
    int rc;
    while ((rc = db_step(st)) == DB_ROW) {
        XGROW(*rows, cap, *n + 1);
        run_batch_row *r = &(*rows)[(*n)++];
        memset(r, 0, sizeof *r);
        r->batch_id = store_col_dup(st, 0);
        r->endpoint = store_col_dup(st, 1);
        r->input_file_id = store_col_dup(st, 2);
        r->status = store_col_dup(st, 3);
        r->requests = db_col_int(st, 4);
        r->custom_ids = store_col_dup(st, 5);
        r->done = (int)db_col_int(st, 6);
        if (!r->custom_ids) r->custom_ids = xstrdup("");
    }
    db_reset(st);
    if (rc != DB_DONE) {
        run_batch_rows_free(*rows, *n);
        *rows = NULL;
        *n = 0;
        return store_fail(s, rc, "listing batches");
    }
    return STORE_OK;
}
