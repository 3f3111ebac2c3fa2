#include "util/embed.h"

#include <string.h>

const embedded_file *embedded_find(const embedded_file *table, const char *name) {
    for (; table && table->name; table++)
        if (strcmp(table->name, name) == 0) return table;
    return NULL;
}
