/* Shared by the libFuzzer targets (tests/fuzz/fuzz_*.c): input helpers and a check that
 * aborts (so libFuzzer keeps the input) when a property of the code under test fails. */
#ifndef FEEDLINE_FUZZ_H
#define FEEDLINE_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/log.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

/* A NUL-terminated copy of the input (embedded NULs stay: C-string entry points see
 * the input up to the first one). Caller frees. */
static inline char *fuzz_cstr(const uint8_t *data, size_t size) {
    char *s = malloc(size + 1);
    if (!s) abort();
    if (size) memcpy(s, data, size);
    s[size] = '\0';
    return s;
}

/* Splits the input at the first occurrence of sep: *a = [0, i), *b = after sep. 0 when
 * sep does not occur (then *a is the whole input and *b is empty). */
static inline int fuzz_split(const uint8_t *data, size_t size, const char *sep,
                             const uint8_t **b, size_t *alen, size_t *blen) {
    size_t n = strlen(sep);
    for (size_t i = 0; i + n <= size; i++) {
        if (memcmp(data + i, sep, n) == 0) {
            *alen = i;
            *b = data + i + n;
            *blen = size - i - n;
            return 1;
        }
    }
    *alen = size;
    *b = data + size;
    *blen = 0;
    return 0;
}

#define FUZZ_CHECK(cond)                                                                   \
    do {                                                                                   \
        if (!(cond)) {                                                                     \
            fprintf(stderr, "%s:%d: property failed: %s\n", __FILE__, __LINE__, #cond);   \
            abort();                                                                       \
        }                                                                                  \
    } while (0)

/* Quiet logs: the code under test may log about bad input at warn level. */
#define FUZZ_QUIET_INIT                                                                    \
    int LLVMFuzzerInitialize(int *argc, char ***argv) {                                    \
        (void)argc;                                                                        \
        (void)argv;                                                                        \
        log_set_level(LOG_ERROR);                                                          \
        return 0;                                                                          \
    }

#endif
