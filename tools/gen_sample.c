/* gen_sample — command-line front end of the conversation generator
 * (tests/support/convgen.h): writes N conversations as JSONL or as one Intercom
 * conversation.list envelope, streaming (one conversation in memory at a time),
 * plus an optional ground-truth TSV. scripts/gen-sample runs it to regenerate the
 * bundled sample; benchmarks run it for large inputs. */
#include <errno.h>
#include <stdarg.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "support/convgen.h"
#include "util/util.h"

#define EXIT_USAGE 2

static const char USAGE[] =
    "usage: gen_sample [options]\n"
    "Generates realistic support conversations from a theme vocabulary.\n"
    "\n"
    "  --count N            conversations to write (default 400)\n"
    "  --seed S             random seed, unsigned 64-bit (default 20260125)\n"
    "  --format F           jsonl (default) or intercom (one conversation.list envelope)\n"
    "  --vocab PATH         theme vocabulary (default data/theme_vocabulary.json)\n"
    "  --out FILE           output file (default stdout)\n"
    "  --truth FILE         also write ground truth as TSV:\n"
    "                       id, conversation_type, signature, passes_quality\n"
    "  --base-time ISO8601  conversations fall in the days before this instant\n"
    "                       (default 2026-01-25T00:00:00Z)\n"
    "  --days D             length of that window in days (default 30)\n"
    "  --help               this text\n"
    "The same options and vocabulary always produce the same bytes.\n";

typedef struct options {
    size_t count;
    uint64_t seed;
    int intercom;
    const char *vocab_path;
    const char *out_path;
    const char *truth_path;
    int64_t base_time;
    int days;
} options;

static int usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int usage_error(const char *fmt, ...) {
    va_list ap;
    fputs("gen_sample: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputs("\n(run gen_sample --help for usage)\n", stderr);
    return EXIT_USAGE;
}

/* A whole-string unsigned decimal; no sign, no trailing junk. */
static int parse_u64(const char *s, uint64_t max, uint64_t *out) {
    if (!s[0] || s[0] == '-' || s[0] == '+') return -1;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end || v > max) return -1;
    *out = v;
    return 0;
}

/* Returns 0, or an exit status after printing the problem (usage errors) or the
 * help text (EXIT_SUCCESS with *done set). */
static int parse_args(int argc, char **argv, options *o, int *done) {
    enum { O_COUNT = 1, O_SEED, O_FORMAT, O_VOCAB, O_OUT, O_TRUTH, O_BASE, O_DAYS, O_HELP };
    static const struct option longopts[] = {
        {"count", required_argument, NULL, O_COUNT}, {"seed", required_argument, NULL, O_SEED},
        {"format", required_argument, NULL, O_FORMAT}, {"vocab", required_argument, NULL, O_VOCAB},
        {"out", required_argument, NULL, O_OUT},     {"truth", required_argument, NULL, O_TRUTH},
        {"base-time", required_argument, NULL, O_BASE}, {"days", required_argument, NULL, O_DAYS},
        {"help", no_argument, NULL, O_HELP},          {NULL, 0, NULL, 0}};
    *done = 0;
    opterr = 0;
    optind = 1;
    int opt;
    uint64_t v;
    while ((opt = getopt_long(argc, argv, ":", longopts, NULL)) != -1) {
        switch (opt) {
        case O_COUNT:
            if (parse_u64(optarg, UINT64_C(1000000000), &v))
                return usage_error("--count: expected an integer from 0 to 1000000000, got '%s'", optarg);
            o->count = (size_t)v;
            break;
        case O_SEED:
            if (parse_u64(optarg, UINT64_MAX, &v))
                return usage_error("--seed: expected an unsigned 64-bit integer, got '%s'", optarg);
            o->seed = v;
            break;
        case O_FORMAT:
            if (strcmp(optarg, "jsonl") == 0) o->intercom = 0;
            else if (strcmp(optarg, "intercom") == 0) o->intercom = 1;
            else return usage_error("--format: expected jsonl or intercom, got '%s'", optarg);
            break;
        case O_VOCAB: o->vocab_path = optarg; break;
        case O_OUT: o->out_path = optarg; break;
        case O_TRUTH: o->truth_path = optarg; break;
        case O_BASE:
            if (iso8601_parse(optarg, &o->base_time))
                return usage_error("--base-time: expected an ISO-8601 time such as 2026-01-25T00:00:00Z, got '%s'", optarg);
            break;
        case O_DAYS:
            if (parse_u64(optarg, 36500, &v) || v == 0)
                return usage_error("--days: expected an integer from 1 to 36500, got '%s'", optarg);
            o->days = (int)v;
            break;
        case O_HELP:
            fputs(USAGE, stdout);
            *done = 1;
            return EXIT_SUCCESS;
        case ':':
            return usage_error("%s: missing value", argv[optind - 1]);
        default:
            return usage_error("unknown option '%s'", argv[optind - 1]);
        }
    }
    if (optind < argc) return usage_error("unexpected argument '%s'", argv[optind]);
    return 0;
}

static FILE *open_output(const char *path) {
    if (!path || strcmp(path, "-") == 0) return stdout;
    FILE *f = fopen(path, "w");
    if (!f) fprintf(stderr, "gen_sample: %s: %s\n", path, strerror(errno));
    return f;
}

/* Flushes and closes (stdout is only flushed); reports a write error once. */
static int close_output(FILE *f, const char *path) {
    int failed = fflush(f) != 0 || ferror(f);
    if (f != stdout && fclose(f) != 0) failed = 1;
    if (failed) fprintf(stderr, "gen_sample: %s: write failed: %s\n", path ? path : "stdout", strerror(errno));
    return failed ? -1 : 0;
}

static void write_intercom_header(FILE *out, size_t count) {
    fprintf(out,
            "{\"type\":\"conversation.list\",\"total_count\":%zu,"
            "\"pages\":{\"type\":\"pages\",\"page\":1,\"per_page\":%zu,\"total_pages\":1},"
            "\"conversations\":[",
            count, count);
}

static void write_conversation(FILE *out, const conversation *c, int intercom, size_t index) {
    char *s;
    if (intercom) {
        json_t *j = convgen_to_intercom(c);
        s = jx_dump(j);
        json_decref(j);
        fputs(index ? ",\n" : "\n", out);
        fputs(s, out);
    } else {
        s = convgen_to_jsonl(c);
        fputs(s, out);
        fputc('\n', out);
    }
    free(s);
}

static void generate(const options *o, const vocab *v, FILE *out, FILE *truth) {
    convgen_options gopt;
    convgen_options_default(&gopt);
    gopt.count = o->count;
    gopt.base_time = o->base_time;
    gopt.days = o->days;
    convgen *g = convgen_new(v, o->seed, &gopt);
    if (o->intercom) write_intercom_header(out, o->count);
    if (truth) fputs("id\tconversation_type\tsignature\tpasses_quality\n", truth);
    for (size_t i = 0; i < o->count; i++) {
        conversation c = {0};
        convgen_truth t;
        convgen_next(g, &c, &t);
        write_conversation(out, &c, o->intercom, i);
        if (truth) fprintf(truth, "%s\t%s\t%s\t%d\n", c.id, t.conversation_type, t.signature, t.passes_quality);
        conv_free(&c);
        if (ferror(out) || (truth && ferror(truth))) break; /* reported by close_output */
    }
    if (o->intercom) fputs("\n]}\n", out);
    convgen_free(g);
}

int main(int argc, char **argv) {
    options o = {.count = 400,
                 .seed = UINT64_C(20260125),
                 .vocab_path = "data/theme_vocabulary.json",
                 .base_time = INT64_C(1769299200), /* 2026-01-25T00:00:00Z */
                 .days = 30};
    int done;
    int rc = parse_args(argc, argv, &o, &done);
    if (rc || done) return rc;

    char err[512];
    vocab *v = vocab_load(o.vocab_path, err, sizeof err);
    if (!v) {
        fprintf(stderr, "gen_sample: %s\n", err);
        return EXIT_FAILURE;
    }
    FILE *out = open_output(o.out_path);
    FILE *truth = out && o.truth_path ? open_output(o.truth_path) : NULL;
    if (!out || (o.truth_path && !truth)) {
        if (out) close_output(out, o.out_path);
        vocab_free(v);
        return EXIT_FAILURE;
    }
    generate(&o, v, out, truth);
    rc = EXIT_SUCCESS;
    if (close_output(out, o.out_path)) rc = EXIT_FAILURE;
    if (truth && close_output(truth, o.truth_path)) rc = EXIT_FAILURE;
    vocab_free(v);
    return rc;
}
