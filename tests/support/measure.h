/* Running a command and measuring it (wall time, peak RSS, CPU), for benchmarks. */
#ifndef FEEDLINE_MEASURE_H
#define FEEDLINE_MEASURE_H

#include <stdint.h>

typedef struct measured {
    int status;          /* exit status, -1 if killed / could not run */
    double wall_s;
    double cpu_s;        /* user + system of the child */
    long max_rss_kb;     /* peak resident set size of the child */
} measured;

/* Runs argv with stdout sent to out_path (NULL: /dev/null) and stderr inherited. */
measured measure_run(char *const argv[], const char *out_path);

#endif
