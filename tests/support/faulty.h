/* A provider for tests that wraps another one (usually the offline analyzer) and
 * injects behaviour: fail calls of a task by a deterministic rule, set a stop flag
 * after N calls of a task, and count calls. Drives the same interface the pipeline
 * uses, so tests exercise the real engine. */
#ifndef FEEDLINE_FAULTY_H
#define FEEDLINE_FAULTY_H

#include <stdatomic.h>

#include "llm/llm.h"

typedef struct faulty_config {
    /* Fail every call of fail_task whose conversation id hashes into fail_percent %. */
    int fail_task;          /* -1 = none */
    int fail_percent;
    /* After stop_after calls of stop_task have been submitted, set *stop_flag. */
    int stop_task;          /* -1 = none */
    int stop_after;
    atomic_int *stop_flag;
} faulty_config;

/* Takes ownership of inner. */
llm_provider *faulty_new(llm_provider *inner, const faulty_config *cfg);
/* Calls submitted per task. */
long faulty_calls(llm_provider *p, enum llm_task t);

#endif
