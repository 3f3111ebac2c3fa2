/* hostile — the heavy hostile-input cases, too slow for `make test`
 * (tests/hostile/test_hostile.c has the fast ones; RELIABILITY.md "Hostile input").
 *
 * Runs the release CLI (build/feedline, or FEEDLINE_BIN) as a child and reports its
 * wall time, peak resident size (getrusage of the child) and exit status for:
 *
 *  1. lines: a JSONL file of a good line, a 65 MiB line (over the 64 MiB line limit), a
 *     63 MiB line that is valid JSON with a 63 MiB body (over the body limit), a
 *     line of exactly 64 MiB of '[' (at the limit: parsed, too deep), a good line; expects both good lines
 *     imported and each bad one named by file:line;
 *  2. many: one JSONL file of --conversations N (default 1 000 000) conversations;
 *     expects N imported and the peak resident size independent of N (compare with
 *     --conversations 100000);
 *  3. reimport: the same file again (every conversation unchanged).
 *
 *   hostile [--conversations N] [--dir DIR] [--skip-lines] [--skip-many]
 *
 * Files go to DIR (default a fresh directory under /tmp, removed afterwards); the
 * database is a SQLite file there. */
#include "bench.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "support/fixtures.h"
#include "util/mem.h"
#include "util/timeutil.h"

static const char USAGE[] =
    "usage: hostile [--conversations N] [--dir DIR] [--skip-lines] [--skip-many]\n"
    "Imports hostile JSONL files with the release CLI: 64 MiB lines, deep nesting,\n"
    "and N conversations in one file (default 1000000); prints time and peak RSS.\n";

static const char *cli(void) {
    const char *b = getenv("FEEDLINE_BIN");
    return b && *b ? b : "build/feedline";
}

typedef struct result {
    int status;
    double seconds;
    long maxrss_kb;
    char *out; /* stdout + stderr */
} result;

/* Runs the CLI with argv (NULL-terminated, after the program name), output to a file. */
static result run_cli(const char *const args[], const char *outpath) {
    result r = {-1, 0, 0, NULL};
    fflush(stdout); /* or the child's freopen would write our buffer again */
    int64_t t0 = mono_us();
    pid_t pid = fork();
    if (pid == 0) {
        FILE *o = freopen(outpath, "w", stdout);
        if (!o || dup2(fileno(stdout), 2) < 0) _exit(127);
        const char *argv[16];
        int n = 0;
        argv[n++] = cli();
        while (*args && n < 15) argv[n++] = *args++;
        argv[n] = NULL;
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    int st;
    struct rusage ru;
    if (pid > 0 && wait4(pid, &st, 0, &ru) == pid) {
        r.status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
        r.maxrss_kb = ru.ru_maxrss;
    }
    r.seconds = (double)(mono_us() - t0) / 1e6;
    FILE *f = fopen(outpath, "r");
    if (f) {
        fseek(f, 0, SEEK_END);
        long len = ftell(f);
        fseek(f, 0, SEEK_SET);
        r.out = xmalloc((size_t)len + 1);
        size_t got = fread(r.out, 1, (size_t)len, f);
        r.out[got] = 0;
        fclose(f);
    }
    return r;
}

static void good(FILE *f, const char *id) {
    fprintf(f,
            "{\"id\":\"%s\",\"created_at\":1768903200,\"messages\":[{\"author\":\"customer\","
            "\"body\":\"My scheduled pins are not posting to Pinterest, case %s.\"}]}\n",
            id, id);
}

static void fill(FILE *f, int c, size_t n) {
    char chunk[65536];
    memset(chunk, c, sizeof chunk);
    while (n > 0) {
        size_t k = n < sizeof chunk ? n : sizeof chunk;
        fwrite(chunk, 1, k, f);
        n -= k;
    }
}

/* The output line holding word (the import summary's "N imported, ..."). */
static void print_line_with(const char *out, const char *word) {
    const char *at = out ? strstr(out, word) : NULL;
    if (!at) return;
    const char *b = at;
    while (b > out && b[-1] != '\n') b--;
    const char *e = strchr(at, '\n');
    printf("    %.*s\n", (int)(e ? e - b : (long)strlen(b)), b);
}

static void report(const char *name, const result *r) {
    printf("%-34s exit %d  %7.2f s  peak RSS %7.1f MiB\n", name, r->status, r->seconds,
           (double)r->maxrss_kb / 1024.0);
}

static void bench_lines(const char *dir) {
    char *path = xasprintf("%s/lines.jsonl", dir), *db = xasprintf("%s/lines.db", dir);
    char *outp = xasprintf("%s/lines.out", dir);
    FILE *f = fopen(path, "wb");
    if (!f) return;
    good(f, "first");
    fputs("{\"id\":\"huge\",\"x\":\"", f); /* line 2: 65 MiB */
    fill(f, 'a', (size_t)65 << 20);
    fputs("\"}\n", f);
    fputs("{\"id\":\"bigbody\",\"created_at\":1,\"messages\":[{\"author\":\"customer\",\"body\":\"", f);
    fill(f, 'b', (size_t)63 << 20); /* line 3: 63 MiB body */
    fputs("\"}]}\n", f);
    fill(f, '[', (size_t)64 << 20); /* line 4: 64 MiB of nesting */
    fputs("\n", f);
    good(f, "last");
    fclose(f);
    const char *args[] = {"import", "--db", db, path, NULL};
    result r = run_cli(args, outp);
    report("64 MiB lines (4 lines, 192 MiB)", &r);
    for (int line = 2; line <= 4; line++) {
        char want[32];
        snprintf(want, sizeof want, "lines.jsonl:%d:", line);
        const char *at = r.out ? strstr(r.out, want) : NULL;
        if (at) {
            const char *nl = strchr(at, '\n');
            printf("    %.*s\n", (int)(nl ? nl - at : (long)strlen(at)), at);
        } else {
            printf("    line %d: NOT REPORTED\n", line);
        }
    }
    print_line_with(r.out, "imported");
    free(r.out);
    unlink(path);
    free(path);
    free(db);
    free(outp);
}

static void bench_many(const char *dir, long n) {
    char *path = xasprintf("%s/many.jsonl", dir), *db = xasprintf("%s/many.db", dir);
    char *outp = xasprintf("%s/many.out", dir);
    FILE *f = fopen(path, "wb");
    if (!f) return;
    static const char *const what[] = {"scheduled pins are not posting", "was charged twice",
                                       "cannot change my email address", "dashboard is blank",
                                       "Ghostwriter used up my credits"};
    for (long i = 0; i < n; i++)
        fprintf(f,
                "{\"id\":\"m%ld\",\"created_at\":%ld,\"messages\":[{\"author\":\"customer\","
                "\"body\":\"Hello, my %s since yesterday (account %ld).\"},{\"author\":"
                "\"support\",\"body\":\"<p>Thanks, we are <b>looking</b> into it.</p>\"}]}\n",
                i, 1768903200L + i, what[i % 5], i * 7919 % 100003);
    fclose(f);
    struct stat sb;
    stat(path, &sb);
    const char *args[] = {"import", "--db", db, path, NULL};
    char name[96];
    snprintf(name, sizeof name, "%ld conversations (%.0f MiB)", n, (double)sb.st_size / 1048576.0);
    result r = run_cli(args, outp);
    report(name, &r);
    print_line_with(r.out, "imported");
    printf("    %.0f conversations/s\n", (double)n / r.seconds);
    free(r.out);
    snprintf(name, sizeof name, "  the same again (unchanged)");
    r = run_cli(args, outp);
    report(name, &r);
    print_line_with(r.out, "unchanged");
    free(r.out);
    unlink(path);
    free(path);
    free(db);
    free(outp);
}

int main(int argc, char **argv) {
    if (bench_help(argc, argv, USAGE)) return 0;
    long n = 1000000;
    const char *dir = NULL;
    int skip_lines = 0, skip_many = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--conversations") && i + 1 < argc) n = atol(argv[++i]);
        else if (!strcmp(argv[i], "--dir") && i + 1 < argc) dir = argv[++i];
        else if (!strcmp(argv[i], "--skip-lines")) skip_lines = 1;
        else if (!strcmp(argv[i], "--skip-many")) skip_many = 1;
        else return bench_usage_error(USAGE);
    }
    if (n <= 0) return bench_usage_error(USAGE);
    char *tmp = dir ? NULL : fx_tmpdir();
    if (!dir) dir = tmp;
    printf("CLI %s, files in %s\n", cli(), dir);
    if (!skip_lines) bench_lines(dir);
    if (!skip_many) bench_many(dir, n);
    if (tmp) {
        fx_rmtree(tmp);
        free(tmp);
    }
    return 0;
}
