/* Settings from the environment (see env.h). */
#include "util/env.h"

#include <stdlib.h>

#include "util/log.h"

long env_count(const char *name, long max, long dflt) {
    const char *v = getenv(name);
    if (!v || !*v) return dflt;
    char *end;
    long n = strtol(v, &end, 10);
    if (!*end && n >= 1 && n <= max) return n;
    log_warn("%s=\"%s\" is not a whole number in 1..%ld; using %ld", name, v, max, dflt);
    return dflt;
}
