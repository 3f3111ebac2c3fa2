/* Runs every TEST() case of one test binary, each in a forked child so that a
 * crash, abort or sanitizer report fails just that case. Usage:
 *   test_x [case-name-substring]
 * Output ends with "<file>: N passed, N failed"; exit status 1 on any failure. */
#include "test.h"

#include <stdarg.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#define MAX_TESTS 512

static struct { const char *name; test_fn fn; } tests[MAX_TESTS];
static int ntests;
static int case_failed;
static int case_checks;

/* LeakSanitizer checks at exit(), which a case's _exit() skips: ask it explicitly.
 * Weak, so the file also links without sanitizers. Non-zero when leaks were found. */
extern int __lsan_do_recoverable_leak_check(void) __attribute__((weak));

void test_register(const char *name, test_fn fn) {
    if (ntests == MAX_TESTS) {
        fprintf(stderr, "test_main: more than %d tests in one file\n", MAX_TESTS);
        abort();
    }
    tests[ntests].name = name;
    tests[ntests].fn = fn;
    ntests++;
}

void test_checked(void) { case_checks++; }

void test_fail(const char *file, int line, const char *fmt, ...) {
    va_list ap;
    case_failed = 1;
    fprintf(stdout, "    FAIL %s:%d: ", file, line);
    va_start(ap, fmt);
    vfprintf(stdout, fmt, ap);
    va_end(ap);
    fputc('\n', stdout);
    fflush(stdout);
}

static int run_case(int i) {
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) {
        perror("fork");
        return 0;
    }
    if (pid == 0) {
        case_failed = 0;
        case_checks = 0;
        tests[i].fn();
        fflush(stdout);
        if (__lsan_do_recoverable_leak_check && __lsan_do_recoverable_leak_check()) {
            fprintf(stdout, "    FAIL %s: memory leaked (see the LeakSanitizer report)\n",
                    tests[i].name);
            _exit(1);
        }
        if (case_checks == 0) {
            fprintf(stdout, "    FAIL %s: the case made no check\n", tests[i].name);
            _exit(1);
        }
        _exit(case_failed ? 1 : 0);
    }
    int status = 0;
    while (waitpid(pid, &status, 0) < 0) {}
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return 1;
    if (WIFSIGNALED(status))
        fprintf(stdout, "    (killed by signal %d)\n", WTERMSIG(status));
    return 0;
}

int main(int argc, char **argv) {
    const char *filter = argc > 1 ? argv[1] : NULL;
    const char *self = strrchr(argv[0], '/');
    self = self ? self + 1 : argv[0];
    int passed = 0, failed = 0;
    setvbuf(stdout, NULL, _IOLBF, 0);
    for (int i = 0; i < ntests; i++) {
        if (filter && !strstr(tests[i].name, filter)) continue;
        if (run_case(i)) {
            passed++;
        } else {
            failed++;
            fprintf(stdout, "  FAILED %s\n", tests[i].name);
        }
    }
    fprintf(stdout, "%s: %d passed, %d failed\n", self, passed, failed);
    return failed ? 1 : 0;
}
