/* bench.h — what every benchmark under bench/ shares: its command line's --help.
 * Benchmarks print figures, never assert them; they must not touch src/ internals
 * beyond the public headers and tests/support. */
#ifndef FEEDLINE_BENCH_H
#define FEEDLINE_BENCH_H

#include <stdio.h>
#include <string.h>

/* 1 when --help or -h is on the command line: the usage went to stdout and the
 * benchmark exits 0. */
static inline int bench_help(int argc, char **argv, const char *usage) {
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            fputs(usage, stdout);
            return 1;
        }
    return 0;
}

/* A usage error (after what was wrong, if the caller said so): the usage on stderr.
 * Returns 2, the exit status of a usage error. */
static inline int bench_usage_error(const char *usage) {
    fputs(usage, stderr);
    return 2;
}

#endif
