/* Text files compiled into the binary (prompt templates, the dashboard page) by
 * scripts/embed-files, so the program needs nothing from disk at run time. */
#ifndef FEEDLINE_EMBED_H
#define FEEDLINE_EMBED_H

#include <stddef.h>

typedef struct embedded_file {
    const char *name; /* file name without directory and extension */
    const char *text; /* NUL-terminated */
    size_t len;
} embedded_file;

/* The file called name in a {0}-terminated table, or NULL. */
const embedded_file *embedded_find(const embedded_file *table, const char *name);

#endif
