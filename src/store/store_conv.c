/* Conversations: idempotent upsert by content hash, and loading records for phases. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/store_internal.h"
#include "util/mem.h"

#define CONV_COLUMNS                                                                   \
    "id, created_at, updated_at, source, source_type, source_url, subject, contact_id,"  \
    " contact_email, external_id, tags, body, digest, transcript, support_text,"        \
    " support_count, content_hash"

static void read_conv(db_stmt *st, int base, conv_record *r) {
    memset(r, 0, sizeof *r);
    r->id = store_col_dup(st, base + 0);
    r->created_at = db_col_int(st, base + 1);
    r->updated_at = db_col_int(st, base + 2);
    r->source = store_col_dup(st, base + 3);
    r->source_type = store_col_dup(st, base + 4);
    r->source_url = store_col_dup(st, base + 5);
    r->subject = store_col_dup(st, base + 6);
    r->contact_id = store_col_dup(st, base + 7);
    r->contact_email = store_col_dup(st, base + 8);
    r->external_id = store_col_dup(st, base + 9);
    r->tags_json = store_col_dup(st, base + 10);
    r->body = store_col_dup(st, base + 11);
    r->digest = store_col_dup(st, base + 12);
    r->transcript = store_col_dup(st, base + 13);
    r->support_text = store_col_dup(st, base + 14);
    r->support_count = (int)db_col_int(st, base + 15);
    const char *h = db_col_text(st, base + 16);
    snprintf(r->content_hash, sizeof r->content_hash, "%s", h ? h : "");
}

int store_conv_upsert(store *s, const conv_record *r, int64_t now, enum upsert_outcome *out) {
    db_stmt *st = store_stmt(s, "SELECT content_hash FROM conversations WHERE id = ?");
    if (!st) return STORE_ERR;
    db_bind_text(st, 1, r->id);
    int rc = store_step_row(s, st, "looking up conversation");
    if (rc < 0) return rc;
    int exists = rc == STORE_FOUND;
    int same = exists && strcmp(db_col_text(st, 0) ? db_col_text(st, 0) : "",
                                r->content_hash) == 0;
    db_reset(st);
    if (same) {
        *out = UPSERT_UNCHANGED;
        return STORE_OK;
    }
    /* The upsert keeps imported_at from the first import; changed_at moves. */
    st = store_stmt(s,
        "INSERT INTO conversations (" CONV_COLUMNS ", imported_at, changed_at)"
        " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)"
        " ON CONFLICT (id) DO UPDATE SET created_at = excluded.created_at,"
        " updated_at = excluded.updated_at, source = excluded.source,"
        " source_type = excluded.source_type, source_url = excluded.source_url,"
        " subject = excluded.subject, contact_id = excluded.contact_id,"
        " contact_email = excluded.contact_email, external_id = excluded.external_id,"
        " tags = excluded.tags, body = excluded.body, digest = excluded.digest,"
        " transcript = excluded.transcript, support_text = excluded.support_text,"
        " support_count = excluded.support_count, content_hash = excluded.content_hash,"
        " changed_at = excluded.changed_at");
    if (!st) return STORE_ERR;
    int i = 1;
    db_bind_text(st, i++, r->id);
    db_bind_int(st, i++, r->created_at);
    db_bind_int(st, i++, r->updated_at);
    db_bind_text(st, i++, r->source ? r->source : "jsonl");
    db_bind_text(st, i++, r->source_type);
    db_bind_text(st, i++, r->source_url);
    db_bind_text(st, i++, r->subject);
    db_bind_text(st, i++, r->contact_id);
    db_bind_text(st, i++, r->contact_email);
    db_bind_text(st, i++, r->external_id);
    db_bind_text(st, i++, r->tags_json ? r->tags_json : "[]");
    db_bind_text(st, i++, r->body ? r->body : "");
    db_bind_text(st, i++, r->digest ? r->digest : "");
    db_bind_text(st, i++, r->transcript ? r->transcript : "");
    db_bind_text(st, i++, r->support_text ? r->support_text : "");
    db_bind_int(st, i++, r->support_count);
    db_bind_text(st, i++, r->content_hash);
    db_bind_int(st, i++, now);
    db_bind_int(st, i++, now);
    rc = store_exec_stmt(s, st, "storing conversation");
    if (rc) return rc;
    *out = exists ? UPSERT_UPDATED : UPSERT_INSERTED;
    return STORE_OK;
}

int64_t store_conv_count(store *s) {
    db_stmt *st = store_stmt(s, "SELECT COUNT(*) FROM conversations");
    if (!st) return -1;
    int rc = store_step_row(s, st, "counting conversations");
    if (rc != STORE_FOUND) return -1;
    int64_t n = db_col_int(st, 0);
    db_reset(st);
    return n;
}

int store_conv_get(store *s, const char *id, conv_record *out) {
    memset(out, 0, sizeof *out);
    db_stmt *st = store_stmt(s, "SELECT " CONV_COLUMNS " FROM conversations WHERE id = ?");
    if (!st) return STORE_ERR;
    db_bind_text(st, 1, id);
    int rc = store_step_row(s, st, "loading conversation");
    if (rc == STORE_FOUND) {
        read_conv(st, 0, out);
        db_reset(st);
    } else if (rc == STORE_NOTFOUND) {
        db_reset(st);
    }
    return rc;
}

int store_phase_inputs(store *s, int64_t run_id, char *const *ids, size_t n,
                       phase_input *out) {
    memset(out, 0, n * sizeof *out);
    db_stmt *st = store_stmt(s,
        "SELECT c.id, c.created_at, c.updated_at, c.source, c.source_type, c.source_url,"
        " c.subject, c.contact_id, c.contact_email, c.external_id, c.tags, c.body, c.digest,"
        " c.transcript, c.support_text, c.support_count, c.content_hash, k.final_type"
        " FROM conversations c LEFT JOIN classifications k"
        " ON k.run_id = ? AND k.conversation_id = c.id WHERE c.id = ?");
    if (!st) return STORE_ERR;
    for (size_t i = 0; i < n; i++) {
        db_bind_int(st, 1, run_id);
        db_bind_text(st, 2, ids[i]);
        int rc = store_step_row(s, st, "loading phase input");
        if (rc < 0) {
            phase_inputs_free(out, i);
            return rc;
        }
        if (rc == STORE_FOUND) {
            read_conv(st, 0, &out[i].conv);
            out[i].final_type = store_col_dup(st, 17);
        }
        db_reset(st);
    }
    return STORE_OK;
}

void phase_input_copy(phase_input *dst, const phase_input *src) {
    conv_record_copy(&dst->conv, &src->conv);
    dst->final_type = xstrdup(src->final_type);
}

void phase_inputs_free(phase_input *v, size_t n) {
    for (size_t i = 0; i < n; i++) {
        conv_record_free(&v[i].conv);
        free(v[i].final_type);
        v[i].final_type = NULL;
    }
}
