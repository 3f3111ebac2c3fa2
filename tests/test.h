/* tests/test.h — the project's tiny test framework.
 *
 * A test file defines cases with TEST(name) { ... } and checks with CHECK*().
 * tests/support/test_main.c runs every registered case in its own forked process
 * (a crash or sanitizer abort fails that case, not the file), prints one line per
 * failure with file:line, and ends with "N passed, N failed". A case that runs no
 * check at all counts as failed: a test must be able to fail.
 */
#ifndef FEEDLINE_TEST_H
#define FEEDLINE_TEST_H

#include <inttypes.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

typedef void (*test_fn)(void);
void test_register(const char *name, test_fn fn);
void test_fail(const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void test_checked(void);

#define TEST(name)                                                          \
    static void name(void);                                                 \
    __attribute__((constructor)) static void test_reg_##name(void) {        \
        test_register(#name, name);                                         \
    }                                                                       \
    static void name(void)

#define CHECK(cond)                                                         \
    do {                                                                    \
        test_checked();                                                     \
        if (!(cond)) test_fail(__FILE__, __LINE__, "CHECK(%s)", #cond);     \
    } while (0)

#define CHECK_INT(a, b)                                                     \
    do {                                                                    \
        long long va_ = (long long)(a), vb_ = (long long)(b);               \
        test_checked();                                                     \
        if (va_ != vb_)                                                     \
            test_fail(__FILE__, __LINE__, "%s == %s: %lld != %lld", #a, #b, \
                      va_, vb_);                                            \
    } while (0)

#define CHECK_STR(a, b)                                                     \
    do {                                                                    \
        const char *sa_ = (a), *sb_ = (b);                                  \
        test_checked();                                                     \
        if (!sa_ || !sb_ || strcmp(sa_, sb_) != 0)                          \
            test_fail(__FILE__, __LINE__, "%s == %s: \"%s\" != \"%s\"", #a, \
                      #b, sa_ ? sa_ : "(null)", sb_ ? sb_ : "(null)");      \
    } while (0)

#define CHECK_NEAR(a, b, eps)                                               \
    do {                                                                    \
        double da_ = (double)(a), db_ = (double)(b);                        \
        test_checked();                                                     \
        if (!(fabs(da_ - db_) <= (eps)))                                    \
            test_fail(__FILE__, __LINE__, "%s ~= %s: %g != %g", #a, #b,     \
                      da_, db_);                                            \
    } while (0)

/* Fail the case and stop it here (e.g. a precondition for later checks). */
#define REQUIRE(cond)                                                       \
    do {                                                                    \
        test_checked();                                                     \
        if (!(cond)) {                                                      \
            test_fail(__FILE__, __LINE__, "REQUIRE(%s)", #cond);            \
            return;                                                         \
        }                                                                   \
    } while (0)

#endif
