/* Versioned schema migrations (see migrations.c for the portable SQL conventions). */
#ifndef FEEDLINE_MIGRATIONS_H
#define FEEDLINE_MIGRATIONS_H

#include <stddef.h>

#include "store/db.h"

typedef struct migration {
    int version;
    const char *name;
    const char *sql; /* portable SQL with {{ID}} {{BLOB}} {{REAL}} tokens */
} migration;

extern const migration MIGRATIONS[];
extern const size_t MIGRATION_COUNT;

/* Translates the portable tokens for a dialect. Caller frees. */
char *migration_translate(const char *sql, enum db_dialect dialect);
/* Applies every migration newer than the database's schema_version, each in its own
 * transaction, serialised against other processes doing the same. 0 or -1 with a
 * message in err. Refuses a database whose version is newer than this binary. */
int migrations_apply(db_t *db, char *err, size_t errlen);

#endif
