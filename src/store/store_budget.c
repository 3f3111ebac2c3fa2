/* The shared requests/min budget (the rate_budget table of migration 3): a global
 * schedule of send slots per LLM endpoint, handed out in small blocks to whichever
 * process asks, so several feedline processes on one database together never send
 * faster than the endpoint's limit.
 *
 * A row holds the next free slot (microseconds of the database's clock). A claim of n
 * slots moves it to max(next, now) + n x interval in one UPDATE, which the row lock
 * serialises across processes: every slot is granted once and granted slots are never
 * closer than the interval. Slot times are returned relative to the database's "now",
 * so the clocks of the machines running workers never need to agree. */
#include <stdio.h>

#include "store/store_internal.h"

/* The schedule's row exists from the first claim on. */
static int ensure_row(store *s, const char *key) {
    db_stmt *st = store_stmt(s,
        "INSERT INTO rate_budget (key, next_us) VALUES (?, 0) ON CONFLICT (key) DO NOTHING");
    if (!st) return STORE_ERR;
    db_bind_text(st, 1, key);
    return store_exec_stmt(s, st, "creating the shared rate budget");
}

/* One claim: STORE_FOUND with *first_in_us, STORE_NOTFOUND when the row is missing. */
static int claim_once(store *s, const char *key, int n, int64_t interval_us,
                      int64_t *first_in_us) {
    /* SQLite's 'now' is fixed for the whole statement; PostgreSQL reads the clock once
     * in the CTE, so the grant and the returned offset use the same instant. */
    db_stmt *st = store_stmt2(s,
        "UPDATE rate_budget SET"
        " next_us = max(next_us, CAST((julianday('now') - 2440587.5) * 86400000000.0 AS INTEGER))"
        "  + ?, claims = claims + 1, granted = granted + ?"
        " WHERE key = ?"
        " RETURNING next_us - ?"
        "  - CAST((julianday('now') - 2440587.5) * 86400000000.0 AS INTEGER)",
        "WITH clock AS (SELECT CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000000 AS BIGINT)"
        "  AS us)"
        " UPDATE rate_budget SET next_us = GREATEST(rate_budget.next_us, clock.us) + ?,"
        " claims = rate_budget.claims + 1, granted = rate_budget.granted + ?"
        " FROM clock WHERE rate_budget.key = ?"
        " RETURNING rate_budget.next_us - ? - clock.us");
    if (!st) return STORE_ERR;
    int64_t span = (int64_t)n * interval_us;
    db_bind_int(st, 1, span);
    db_bind_int(st, 2, n);
    db_bind_text(st, 3, key);
    db_bind_int(st, 4, span);
    int rc = store_step_row(s, st, "claiming from the shared rate budget");
    if (rc == STORE_FOUND) *first_in_us = db_col_int(st, 0);
    if (rc >= 0) db_reset(st);
    return rc;
}

int store_budget_claim(store *s, const char *key, int n, int64_t interval_us,
                       int64_t *first_in_us) {
    if (n < 1 || interval_us < 0) {
        snprintf(s->err, sizeof s->err, "shared rate budget: bad claim (%d slots, %lld us)", n,
                 (long long)interval_us);
        return STORE_ERR;
    }
    int rc = claim_once(s, key, n, interval_us, first_in_us);
    if (rc == STORE_NOTFOUND) {
        rc = ensure_row(s, key);
        if (rc == STORE_OK) rc = claim_once(s, key, n, interval_us, first_in_us);
        if (rc == STORE_NOTFOUND) {
            snprintf(s->err, sizeof s->err, "shared rate budget %s vanished", key);
            return STORE_ERR;
        }
    }
    return rc == STORE_FOUND ? STORE_OK : rc;
}

int store_budget_stats(store *s, const char *key, int64_t *claims, int64_t *granted) {
    db_stmt *st = store_stmt(s, "SELECT claims, granted FROM rate_budget WHERE key = ?");
    if (!st) return STORE_ERR;
    db_bind_text(st, 1, key);
    int rc = store_step_row(s, st, "reading the shared rate budget");
    if (rc == STORE_FOUND) {
        *claims = db_col_int(st, 0);
        *granted = db_col_int(st, 1);
    }
    if (rc >= 0) db_reset(st);
    return rc;
}
