/* The per-phase work queue of a run. On PostgreSQL, claims use FOR UPDATE SKIP LOCKED
 * so several worker processes take disjoint batches; a claim carries a lease, and an
 * expired lease (or, on PostgreSQL, the end of the claimer's database session) makes
 * the item claimable again (its worker died). Only the holder of a claim closes the
 * item (store_work_finish), so a worker that was paused past its lease cannot store a
 * result over the one of the process that took its work over. */
#include <stdlib.h>
#include <string.h>

#include "store/store_internal.h"
#include "util/mem.h"

/* PostgreSQL plans the per-item statements (close a work item: WHERE run_id, phase,
 * conversation_id) once per connection. Without statistics for a freshly filled
 * work_items, the (run_id, phase, state) index ties with the primary key and may be
 * picked, which scans the whole phase for every item (quadratic runs). Statistics
 * taken right after seeding make the planner use the primary key. SQLite's planner
 * prefers the full primary key on its own. */
static int refresh_work_statistics(store *s) {
    if (db_dialect_of(s->db) != DB_PG) return STORE_OK;
    int rc = db_exec(s->db, "ANALYZE work_items");
    return rc ? store_fail(s, rc, "analyzing work items") : STORE_OK;
}

int store_work_seed_conversations(store *s, int64_t run_id, int64_t from, int64_t to,
                                  int64_t max, int64_t *count) {
    work_counts c;
    int rc = store_work_counts(s, run_id, PHASE_CLASSIFICATION, &c);
    if (rc) return rc;
    int64_t existing = c.pending + c.claimed + c.done + c.failed;
    if (existing == 0) {
        /* A run's selection is fixed once: a resume must not re-select with a new
         * "now". WHERE on the SELECT is required by SQLite's upsert grammar. */
        db_stmt *st = store_stmt(s,
            "INSERT INTO work_items (run_id, phase, conversation_id)"
            " SELECT ?, 'classification', id FROM conversations"
            " WHERE created_at >= ? AND created_at <= ?"
            " ORDER BY created_at DESC, id LIMIT ?"
            " ON CONFLICT DO NOTHING");
        if (!st) return STORE_ERR;
        db_bind_int(st, 1, run_id);
        db_bind_int(st, 2, from);
        db_bind_int(st, 3, to);
        db_bind_int(st, 4, max > 0 ? max : INT64_MAX);
        rc = store_exec_stmt(s, st, "selecting the run's conversations");
        if (rc) return rc;
        existing = db_changes(s->db);
        rc = refresh_work_statistics(s);
        if (rc) return rc;
    }
    *count = existing;
    return STORE_OK;
}

int store_work_seed_actionable(store *s, int64_t run_id, enum run_phase phase,
                               int64_t *count) {
    db_stmt *st = store_stmt(s,
        "INSERT INTO work_items (run_id, phase, conversation_id)"
        " SELECT run_id, ?, conversation_id FROM classifications"
        " WHERE run_id = ? AND actionable = 1"
        " ON CONFLICT DO NOTHING");
    if (!st) return STORE_ERR;
    db_bind_text(st, 1, run_phase_name(phase));
    db_bind_int(st, 2, run_id);
    int rc = store_exec_stmt(s, st, "seeding phase work");
    if (rc) return rc;
    if (db_changes(s->db) > 0 && (rc = refresh_work_statistics(s)) != STORE_OK) return rc;
    work_counts c;
    rc = store_work_counts(s, run_id, phase, &c);
    if (rc) return rc;
    *count = c.pending + c.claimed + c.done + c.failed;
    return STORE_OK;
}

int store_work_seed_next(store *s, int64_t run_id, const char *conversation_id,
                         const enum run_phase *phases, size_t n, const char *owner,
                         int64_t lease_until, unsigned take, unsigned *taken) {
    *taken = 0;
    for (size_t i = 0; i < n; i++) {
        int claim = (take >> phases[i]) & 1u;
        db_stmt *st = claim
            ? store_stmt2(s,
                  "INSERT INTO work_items (run_id, phase, conversation_id, state, owner,"
                  " lease_until, attempts) VALUES (?, ?, ?, 'claimed', ?, ?, 1)"
                  " ON CONFLICT DO NOTHING",
                  "INSERT INTO work_items (run_id, phase, conversation_id, state, owner,"
                  " lease_until, attempts, owner_session)"
                  " VALUES (?, ?, ?, 'claimed', ?, ?, 1, pg_backend_pid())"
                  " ON CONFLICT DO NOTHING")
            : store_stmt(s,
                  "INSERT INTO work_items (run_id, phase, conversation_id) VALUES (?, ?, ?)"
                  " ON CONFLICT DO NOTHING");
        if (!st) return STORE_ERR;
        db_bind_int(st, 1, run_id);
        db_bind_text(st, 2, run_phase_name(phases[i]));
        db_bind_text(st, 3, conversation_id);
        if (claim) {
            db_bind_text(st, 4, owner);
            db_bind_int(st, 5, lease_until);
        }
        int rc = store_exec_stmt(s, st, "seeding the next phases");
        if (rc) return rc;
        if (claim && db_changes(s->db) > 0) *taken |= 1u << phases[i];
    }
    return STORE_OK;
}

static void free_ids(char **ids, size_t n) {
    for (size_t i = 0; i < n; i++) free(ids[i]);
    free(ids);
}

/* RETURNING order is unspecified; callers like a stable order (and bsearch). */
static int cmp_id(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}
static void sort_ids(char **ids, size_t n) {
    if (n > 1) qsort(ids, n, sizeof *ids, cmp_id);
}

/* PostgreSQL: the claim's session (owner_session, the claimer's pg_backend_pid()) is
 * over. A process killed with kill -9 loses its connection with it, so its claims are
 * taken over at once instead of after the lease; a process that is alive but paused
 * keeps its session, and its claims last until the lease runs out. A pid that a new
 * session reused only makes a dead claim look alive: the lease still ends it. */
#define PG_SESSION_GONE(t)                                                                  \
    "(" t ".owner_session IS NOT NULL AND NOT EXISTS (SELECT 1 FROM pg_stat_activity"     \
    " AS a WHERE a.pid = " t ".owner_session))"

/* One claim statement per kind of claimable item, so each reads the
 * (run, phase, state, conversation_id) index in order instead of sorting: pending items,
 * then items whose lease expired or (PostgreSQL) whose session ended (their worker
 * died). On PostgreSQL, ARRAY(...) makes the locking subquery an InitPlan that runs
 * once: as an IN (...) semi-join PostgreSQL may rescan it per outer row, and each
 * rescan skips the rows the previous one locked, claiming more than LIMIT. */
static int claim_kind(store *s, int expired, int64_t run_id, const char *phase_name,
                      const char *owner, size_t max, int64_t now, int64_t lease_seconds,
                      char ***ids, size_t *n, size_t *cap) {
    db_stmt *st = expired
        ? store_stmt2(s,
              "UPDATE work_items SET state = 'claimed', owner = ?, lease_until = ?,"
              " attempts = attempts + 1"
              " WHERE run_id = ? AND phase = ? AND conversation_id IN ("
              "  SELECT conversation_id FROM work_items WHERE run_id = ? AND phase = ?"
              "  AND state = 'claimed' AND lease_until < ? ORDER BY conversation_id LIMIT ?)"
              " RETURNING conversation_id",
              "UPDATE work_items AS w SET state = 'claimed', owner = ?, lease_until = ?,"
              " owner_session = pg_backend_pid(), attempts = w.attempts + 1"
              " WHERE w.run_id = ? AND w.phase = ? AND w.conversation_id = ANY (ARRAY("
              "  SELECT conversation_id FROM work_items AS x WHERE run_id = ? AND phase = ?"
              "  AND state = 'claimed' AND (lease_until < ? OR " PG_SESSION_GONE("x") ")"
              "  ORDER BY conversation_id LIMIT ? FOR UPDATE SKIP LOCKED))"
              " RETURNING w.conversation_id")
        : store_stmt2(s,
              "UPDATE work_items SET state = 'claimed', owner = ?, lease_until = ?,"
              " attempts = attempts + 1"
              " WHERE run_id = ? AND phase = ? AND conversation_id IN ("
              "  SELECT conversation_id FROM work_items WHERE run_id = ? AND phase = ?"
              "  AND state = 'pending' AND ? >= 0 ORDER BY conversation_id LIMIT ?)"
              " RETURNING conversation_id",
              "UPDATE work_items AS w SET state = 'claimed', owner = ?, lease_until = ?,"
              " owner_session = pg_backend_pid(), attempts = w.attempts + 1"
              " WHERE w.run_id = ? AND w.phase = ? AND w.conversation_id = ANY (ARRAY("
              "  SELECT conversation_id FROM work_items WHERE run_id = ? AND phase = ?"
              "  AND state = 'pending' AND ? >= 0 ORDER BY conversation_id LIMIT ?"
              "  FOR UPDATE SKIP LOCKED))"
              " RETURNING w.conversation_id");
    if (!st) return STORE_ERR;
    db_bind_text(st, 1, owner);
    db_bind_int(st, 2, now + lease_seconds);
    db_bind_int(st, 3, run_id);
    db_bind_text(st, 4, phase_name);
    db_bind_int(st, 5, run_id);
    db_bind_text(st, 6, phase_name);
    db_bind_int(st, 7, now);
    db_bind_int(st, 8, (int64_t)max);
    int rc;
    while ((rc = db_step(st)) == DB_ROW) {
        XGROW(*ids, *cap, *n + 1);
        (*ids)[(*n)++] = store_col_dup(st, 0);
    }
    db_reset(st);
    return rc == DB_DONE ? STORE_OK : store_fail(s, rc, "claiming work");
}

int store_work_claim_kinds(store *s, int kinds, int64_t run_id, enum run_phase phase,
                           const char *owner, size_t max, int64_t now, int64_t lease_seconds,
                           char ***ids, size_t *n) {
    *ids = NULL;
    *n = 0;
    size_t cap = 0;
    const char *phase_name = run_phase_name(phase);
    int rc = STORE_OK;
    if (kinds & STORE_CLAIM_PENDING)
        rc = claim_kind(s, 0, run_id, phase_name, owner, max, now, lease_seconds, ids, n, &cap);
    if (rc == STORE_OK && (kinds & STORE_CLAIM_EXPIRED) && *n < max)
        rc = claim_kind(s, 1, run_id, phase_name, owner, max - *n, now, lease_seconds, ids, n,
                        &cap);
    if (rc != STORE_OK) {
        free_ids(*ids, *n);
        *ids = NULL;
        *n = 0;
        return rc;
    }
    sort_ids(*ids, *n);
    return STORE_OK;
}

int store_work_claim(store *s, int64_t run_id, enum run_phase phase, const char *owner,
                     size_t max, int64_t now, int64_t lease_seconds, char ***ids, size_t *n) {
    return store_work_claim_kinds(s, STORE_CLAIM_PENDING | STORE_CLAIM_EXPIRED, run_id, phase,
                                  owner, max, now, lease_seconds, ids, n);
}

int store_work_renew(store *s, int64_t run_id, enum run_phase phase, const char *owner,
                     int64_t lease_until, char ***held, size_t *n) {
    *held = NULL;
    *n = 0;
    /* Only rows still claimed under our name: a claim another process took over after
     * our lease ran out (we were paused) stays theirs. The phase and state narrow the
     * index range to the phase's claimed items, so renewing every second stays cheap
     * however large the run is; what comes back is at most our batches. */
    db_stmt *st = store_stmt2(s,
        "UPDATE work_items SET lease_until = ?"
        " WHERE run_id = ? AND phase = ? AND state = 'claimed' AND owner = ?"
        " RETURNING conversation_id",
        /* The session too: after a reconnect our claims carry the new one again. */
        "UPDATE work_items SET lease_until = ?, owner_session = pg_backend_pid()"
        " WHERE run_id = ? AND phase = ? AND state = 'claimed' AND owner = ?"
        " RETURNING conversation_id");
    if (!st) return STORE_ERR;
    db_bind_int(st, 1, lease_until);
    db_bind_int(st, 2, run_id);
    db_bind_text(st, 3, run_phase_name(phase));
    db_bind_text(st, 4, owner);
    size_t cap = 0;
    int rc;
    while ((rc = db_step(st)) == DB_ROW) {
        XGROW(*held, cap, *n + 1);
        (*held)[(*n)++] = store_col_dup(st, 0);
    }
    db_reset(st);
    if (rc != DB_DONE) {
        free_ids(*held, *n);
        *held = NULL;
        *n = 0;
        return store_fail(s, rc, "renewing leases");
    }
    sort_ids(*held, *n);
    return STORE_OK;
}

int store_work_finish(store *s, int64_t run_id, enum run_phase phase, const char *conv,
                      const char *owner, int failed) {
    /* The fence: an item is closed only by the process that still holds its claim. A
     * process paused past its lease (SIGSTOP, a stalled connection) finds its item
     * taken over by another (owner changed) or already finished (state changed) and
     * must write nothing for it. On PostgreSQL this UPDATE locks the row, so a claim
     * cannot slip in between it and the result written in the same transaction; under
     * READ COMMITTED a concurrent claim re-evaluates the WHERE and matches nothing. */
    db_stmt *st = store_stmt(s,
        "UPDATE work_items SET state = ?, owner = NULL, lease_until = NULL"
        " WHERE run_id = ? AND phase = ? AND conversation_id = ? AND owner = ?"
        " AND state = 'claimed'");
    if (!st) return STORE_ERR;
    const char *name = run_phase_name(phase);
    db_bind_text(st, 1, failed ? "failed" : "done");
    db_bind_int(st, 2, run_id);
    db_bind_text(st, 3, name);
    db_bind_text(st, 4, conv);
    db_bind_text(st, 5, owner);
    int rc = store_exec_stmt(s, st, "closing work item");
    if (rc) return rc;
    if (db_changes(s->db) == 0) return STORE_CONFLICT;
    if (failed) return STORE_OK;
    /* Done: an earlier failure of the item (a resumed run retried it) is forgotten. */
    st = store_stmt(s,
        "DELETE FROM run_errors WHERE run_id = ? AND phase = ? AND conversation_id = ?");
    if (!st) return STORE_ERR;
    db_bind_int(st, 1, run_id);
    db_bind_text(st, 2, name);
    db_bind_text(st, 3, conv);
    return store_exec_stmt(s, st, "clearing old failure");
}

int store_work_reset_for_resume(store *s, int64_t run_id) {
    db_stmt *st = store_stmt(s,
        "UPDATE work_items SET state = 'pending', owner = NULL, lease_until = NULL"
        " WHERE run_id = ? AND state IN ('claimed', 'failed')");
    if (!st) return STORE_ERR;
    db_bind_int(st, 1, run_id);
    return store_exec_stmt(s, st, "resetting work for resume");
}

int store_work_counts(store *s, int64_t run_id, enum run_phase phase, work_counts *out) {
    memset(out, 0, sizeof *out);
    db_stmt *st = store_stmt(s,
        "SELECT state, COUNT(*) FROM work_items WHERE run_id = ? AND phase = ? GROUP BY state");
    if (!st) return STORE_ERR;
    db_bind_int(st, 1, run_id);
    db_bind_text(st, 2, run_phase_name(phase));
    int rc;
    while ((rc = db_step(st)) == DB_ROW) {
        const char *state = db_col_text(st, 0);
        int64_t n = db_col_int(st, 1);
        if (!strcmp(state, "pending")) out->pending = n;
        else if (!strcmp(state, "claimed")) out->claimed = n;
        else if (!strcmp(state, "done")) out->done = n;
        else if (!strcmp(state, "failed")) out->failed = n;
    }
    db_reset(st);
    return rc == DB_DONE ? STORE_OK : store_fail(s, rc, "counting work");
}

struct store_cursor {
    store *s;
    db_stmt *st;
    int rc;
};

store_cursor *store_work_digests(store *s, int64_t run_id, enum run_phase phase) {
    /* A dedicated statement (not the cache): it stays open across the whole pass. */
    db_stmt *st = db_prepare(s->db,
        "SELECT c.digest FROM work_items w JOIN conversations c ON c.id = w.conversation_id"
        " WHERE w.run_id = ? AND w.phase = ? ORDER BY w.conversation_id");
    if (!st) {
        store_fail(s, DB_ERR, "reading the corpus");
        return NULL;
    }
    db_bind_int(st, 1, run_id);
    db_bind_text(st, 2, run_phase_name(phase));
    store_cursor *c = xcalloc(1, sizeof *c);
    c->s = s;
    c->st = st;
    c->rc = DB_ROW;
    return c;
}

const char *store_cursor_next(store_cursor *c) {
    if (c->rc != DB_ROW) return NULL;
    c->rc = db_step(c->st);
    if (c->rc != DB_ROW) return NULL;
    const char *t = db_col_text(c->st, 0);
    return t ? t : "";
}

int store_cursor_close(store_cursor *c) {
    if (!c) return STORE_ERR;
    int out = c->rc == DB_DONE ? STORE_OK : store_fail(c->s, c->rc, "reading the corpus");
    db_finalize(c->st);
    free(c);
    return out;
}

int store_work_release(store *s, int64_t run_id, const char *owner) {
    db_stmt *st = store_stmt(s,
        "UPDATE work_items SET state = 'pending', owner = NULL, lease_until = NULL"
        " WHERE run_id = ? AND owner = ? AND state = 'claimed'");
    if (!st) return STORE_ERR;
    db_bind_int(st, 1, run_id);
    db_bind_text(st, 2, owner);
    return store_exec_stmt(s, st, "releasing claimed work");
}

int store_work_probe(store *s, int64_t run_id, enum run_phase phase, int64_t now,
                     int *claimable, int64_t *claimed) {
    /* Claimed items are few (the batches in progress); pending ones are only probed for
     * one row, so the cost does not grow with the phase. */
    db_stmt *st = store_stmt2(s,
        "SELECT"
        " (SELECT COUNT(*) FROM work_items WHERE run_id = ? AND phase = ? AND state = 'claimed'),"
        " (SELECT COUNT(*) FROM work_items WHERE run_id = ? AND phase = ? AND state = 'claimed'"
        "  AND lease_until < ?),"
        " (SELECT COUNT(*) FROM (SELECT 1 FROM work_items WHERE run_id = ? AND phase = ?"
        "  AND state = 'pending' LIMIT 1) AS p)",
        "SELECT"
        " (SELECT COUNT(*) FROM work_items WHERE run_id = ? AND phase = ? AND state = 'claimed'),"
        " (SELECT COUNT(*) FROM work_items AS x WHERE run_id = ? AND phase = ?"
        "  AND state = 'claimed' AND (lease_until < ? OR " PG_SESSION_GONE("x") ")),"
        " (SELECT COUNT(*) FROM (SELECT 1 FROM work_items WHERE run_id = ? AND phase = ?"
        "  AND state = 'pending' LIMIT 1) AS p)");
    if (!st) return STORE_ERR;
    const char *name = run_phase_name(phase);
    db_bind_int(st, 1, run_id);
    db_bind_text(st, 2, name);
    db_bind_int(st, 3, run_id);
    db_bind_text(st, 4, name);
    db_bind_int(st, 5, now);
    db_bind_int(st, 6, run_id);
    db_bind_text(st, 7, name);
    int rc = store_step_row(s, st, "probing work");
    if (rc == STORE_FOUND) {
        *claimed = db_col_int(st, 0);
        *claimable = db_col_int(st, 1) > 0 || db_col_int(st, 2) > 0;
    }
    if (rc >= 0) db_reset(st);
    return rc == STORE_FOUND ? STORE_OK : rc == STORE_NOTFOUND ? STORE_ERR : rc;
}
