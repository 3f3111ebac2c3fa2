/* cluster.c — owns the story phase's vector grouping: exact complete-linkage
 * agglomerative clustering on cosine distance (nearest-neighbour chain over a
 * condensed float distance matrix), recursive spherical 2-means bisection for inputs
 * too large for the O(n^2) matrix, and the cosine similarity both are built on.
 * Pure computation: no I/O, no global state; everything allocated here is freed here.
 * The distance matrix is filled by a few threads (the rows shared out, each entry
 * written by one), joined before the fill returns. */
#include "pipeline/cluster.h"

#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util/util.h"

/* ------------------------------------------------------------------------------ */
/* Dot products. Products and sums are in double (embeddings are float, but a
 * 1024-term float sum loses digits that matter near the threshold). Independent
 * accumulator lanes let the compiler use packed SIMD at -O2 without -ffast-math,
 * which would otherwise forbid reassociating the sum. */

#define DOT_LANES 4

static double sum_lanes(const double s[DOT_LANES]) {
    double t = 0;
    for (int l = 0; l < DOT_LANES; l++) t += s[l];
    return t;
}

/* The end of a dot product: the lanes summed, then the terms from k on one by one. */
static double finish_dot(const double s[DOT_LANES], const float *a, const float *b, size_t k,
                         size_t dim) {
    double t = sum_lanes(s);
    for (; k < dim; k++) t += (double)a[k] * (double)b[k];
    return t;
}

static double dot_ff(const float *a, const float *b, size_t dim) {
    double s[DOT_LANES] = {0};
    size_t k = 0;
    for (; k + DOT_LANES <= dim; k += DOT_LANES)
        for (int l = 0; l < DOT_LANES; l++) s[l] += (double)a[k + l] * (double)b[k + l];
    return finish_dot(s, a, b, k, dim);
}

static double dot_fd(const float *a, const double *b, size_t dim) {
    double s[DOT_LANES] = {0};
    size_t k = 0;
    for (; k + DOT_LANES <= dim; k += DOT_LANES)
        for (int l = 0; l < DOT_LANES; l++) s[l] += (double)a[k + l] * b[k + l];
    double t = sum_lanes(s);
    for (; k < dim; k++) t += (double)a[k] * b[k];
    return t;
}

/* Dot products of the four consecutive rows starting at a0 with row b. Reading b
 * once for four rows quarters the memory traffic of the distance matrix fill, which
 * is what bounds it for large n. */
static void dot_4rows(const float *a0, const float *b, size_t dim, double out[4]) {
    const float *a1 = a0 + dim, *a2 = a1 + dim, *a3 = a2 + dim;
    double s0[DOT_LANES] = {0}, s1[DOT_LANES] = {0}, s2[DOT_LANES] = {0},
           s3[DOT_LANES] = {0};
    size_t k = 0;
    for (; k + DOT_LANES <= dim; k += DOT_LANES) {
        for (int l = 0; l < DOT_LANES; l++) {
            double y = b[k + l];
            s0[l] += y * a0[k + l];
            s1[l] += y * a1[k + l];
            s2[l] += y * a2[k + l];
            s3[l] += y * a3[k + l];
        }
    }
    double t0 = sum_lanes(s0);
    double t1 = sum_lanes(s1);
    double t2 = sum_lanes(s2);
    double t3 = sum_lanes(s3);
    for (; k < dim; k++) {
        double y = b[k];
        t0 += y * a0[k];
        t1 += y * a1[k];
        t2 += y * a2[k];
        t3 += y * a3[k];
    }
    out[0] = t0;
    out[1] = t1;
    out[2] = t2;
    out[3] = t3;
}

/* The same dot products with AVX, two columns at a time, where the CPU has it: the
 * distance matrix fill is most of the story phase's time, and this path does it about
 * 2.5 times faster. The results are dot_ff's bit for bit: one __m256d holds the
 * DOT_LANES accumulators of one (row, column) pair, each lane adding the same terms in
 * the same order, and the lanes and the tail are summed by finish_dot. (A product of
 * two floats is exact in double, so even a fused multiply-add would round alike.)
 * Four rows by two columns make eight independent sums, which hides the latency of
 * the adds. Other compilers and CPUs use dot_4rows alone. */
#if (defined(__x86_64__) || defined(__i386__)) && defined(__GNUC__)
#include <immintrin.h>
#define HAVE_AVX_FILL 1

_Static_assert(DOT_LANES == 4, "one __m256d holds the four lanes of a dot product");

__attribute__((target("avx"))) static inline __m256d avx_lanes(const float *p) {
    return _mm256_cvtps_pd(_mm_loadu_ps(p));
}

/* acc + x * y, lane by lane: s[l] += a[k + l] * b[k + l] of dot_ff. */
__attribute__((target("avx"))) static inline __m256d avx_madd(__m256d acc, __m256d x,
                                                              __m256d y) {
    return _mm256_add_pd(acc, _mm256_mul_pd(x, y));
}

__attribute__((target("avx"))) static double avx_finish(__m256d acc, const float *a,
                                                        const float *b, size_t k, size_t dim) {
    double s[DOT_LANES];
    _mm256_storeu_pd(s, acc);
    return finish_dot(s, a, b, k, dim);
}

/* Dot products of the four consecutive rows starting at a0 with rows b0 and b1:
 * out0[r] = dot(a_r, b0), out1[r] = dot(a_r, b1). */
__attribute__((target("avx"))) static void dot_4rows_2cols_avx(const float *a0, const float *b0,
                                                               const float *b1, size_t dim,
                                                               double out0[4], double out1[4]) {
    const float *a[4] = {a0, a0 + dim, a0 + 2 * dim, a0 + 3 * dim};
    /* Eight independent sums; the row loop is unrolled so they stay in registers. */
    __m256d s0[4], s1[4];
    for (int r = 0; r < 4; r++) s0[r] = s1[r] = _mm256_setzero_pd();
    size_t k = 0;
    for (; k + DOT_LANES <= dim; k += DOT_LANES) {
        __m256d y0 = avx_lanes(b0 + k), y1 = avx_lanes(b1 + k);
#pragma GCC unroll 4
        for (int r = 0; r < 4; r++) {
            __m256d x = avx_lanes(a[r] + k);
            s0[r] = avx_madd(s0[r], x, y0);
            s1[r] = avx_madd(s1[r], x, y1);
        }
    }
    for (int r = 0; r < 4; r++) {
        out0[r] = avx_finish(s0[r], a[r], b0, k, dim);
        out1[r] = avx_finish(s1[r], a[r], b1, k, dim);
    }
}
#else
#define HAVE_AVX_FILL 0
#endif

/* Cosine from a dot product and the two Euclidean norms. A zero (or non-finite)
 * vector has no direction, so it is "unrelated" to everything: similarity 0. */
static double cosine_from_dot(double dot, double norm_a, double norm_b) {
    if (!(norm_a > 0) || !(norm_b > 0) || isinf(norm_a) || isinf(norm_b)) return 0;
    double c = dot / (norm_a * norm_b);
    if (isnan(c)) return 0;
    /* Rounding can step just outside [-1, 1]; a distance must stay in [0, 2]. */
    if (c > 1) return 1;
    if (c < -1) return -1;
    return c;
}

float cosine_similarity(const float *a, const float *b, size_t dim) {
    return (float)cosine_from_dot(dot_ff(a, b, dim), sqrt(dot_ff(a, a, dim)),
                                  sqrt(dot_ff(b, b, dim)));
}

static double *row_norms(const float *vecs, size_t n, size_t dim) {
    double *norm = xmalloc(n * sizeof *norm);
    for (size_t i = 0; i < n; i++) {
        const float *v = vecs + i * dim;
        norm[i] = sqrt(dot_ff(v, v, dim));
    }
    return norm;
}

/* ------------------------------------------------------------------------------ */
/* Condensed distance matrix: the n(n-1)/2 entries d(i,j), i < j, row by row. */

typedef struct dist_matrix {
    float *d;
    size_t *row; /* row[i] = position of d(i, i+1) */
    size_t n;
} dist_matrix_t;

static float *dm_at(const dist_matrix_t *m, size_t i, size_t j) {
    if (i > j) {
        size_t t = i;
        i = j;
        j = t;
    }
    return &m->d[m->row[i] + (j - i - 1)];
}

static void dm_init(dist_matrix_t *m, size_t n) {
    m->n = n;
    m->d = xmalloc((n * (n - 1) / 2) * sizeof *m->d);
    m->row = xmalloc(n * sizeof *m->row);
    size_t pos = 0;
    for (size_t i = 0; i < n; i++) {
        m->row[i] = pos;
        pos += n - 1 - i;
    }
}

static void dm_free(dist_matrix_t *m) {
    free(m->d);
    free(m->row);
}

static float cosine_distance(double dot, double norm_a, double norm_b) {
    return (float)(1.0 - cosine_from_dot(dot, norm_a, norm_b));
}

/* Sets d(i+p, j) for p < 4 from the four rows' dot products with row j. */
static void dm_set_4rows(dist_matrix_t *m, size_t i, size_t j, const double dot[4],
                         const double *norm) {
    for (size_t p = 0; p < 4; p++)
        *dm_at(m, i + p, j) = cosine_distance(dot[p], norm[i + p], norm[j]);
}

/* With AVX: d(i+p, j) for p < 4 and the later rows j, two at a time. Returns the
 * first j left to do (i + 4 without AVX). */
static size_t dm_fill_4rows_avx(dist_matrix_t *m, const float *vecs, size_t dim,
                                const double *norm, size_t i) {
    size_t j = i + 4;
#if HAVE_AVX_FILL
    if (!__builtin_cpu_supports("avx")) return j;
    for (; j + 2 <= m->n; j += 2) {
        double dot0[4], dot1[4];
        dot_4rows_2cols_avx(vecs + i * dim, vecs + j * dim, vecs + (j + 1) * dim, dim, dot0,
                            dot1);
        dm_set_4rows(m, i, j, dot0, norm);
        dm_set_4rows(m, i, j + 1, dot1, norm);
    }
#else
    (void)vecs;
    (void)dim;
    (void)norm;
#endif
    return j;
}

/* Fills the rows i..i+3 (a group of four) against every later row. */
static void dm_fill_group(dist_matrix_t *m, const float *vecs, size_t dim, const double *norm,
                          size_t i) {
    for (size_t p = i; p < i + 4; p++)
        for (size_t q = p + 1; q < i + 4; q++)
            *dm_at(m, p, q) =
                cosine_distance(dot_ff(vecs + p * dim, vecs + q * dim, dim), norm[p], norm[q]);
    for (size_t j = dm_fill_4rows_avx(m, vecs, dim, norm, i); j < m->n; j++) {
        double dot[4];
        dot_4rows(vecs + i * dim, vecs + j * dim, dim, dot);
        dm_set_4rows(m, i, j, dot, norm);
    }
}

/* One thread's share of the groups of four rows: every nth group from the first. Taking
 * them in turn (not in one range) evens the work out, since a group's work shrinks
 * with its rows' position. Each matrix entry is written by one thread alone. */
typedef struct fill_share {
    dist_matrix_t *m;
    const float *vecs;
    size_t dim;
    const double *norm;
    size_t first, stride;
} fill_share;

static void *fill_groups(void *arg) {
    fill_share *f = arg;
    for (size_t g = f->first; (g + 1) * 4 <= f->m->n; g += f->stride)
        dm_fill_group(f->m, f->vecs, f->dim, f->norm, g * 4);
    return NULL;
}

/* Threads for the fill: FEEDLINE_CLUSTER_THREADS, else the online CPUs (at most
 * FILL_MAX_THREADS); one for matrices too small to pay for starting threads. */
#define FILL_MAX_THREADS 8
#define FILL_THREADED_MIN_ROWS 256

static size_t fill_threads(size_t n) {
    if (n < FILL_THREADED_MIN_ROWS) return 1;
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    if (cpus < 1) cpus = 1;
    long t = env_count("FEEDLINE_CLUSTER_THREADS", FILL_MAX_THREADS,
                       cpus < FILL_MAX_THREADS ? cpus : FILL_MAX_THREADS);
    return t < 1 ? 1 : (size_t)t;
}

/* Fills d(i,j) = 1 - cos(i,j). Rows go four at a time against every later row
 * (see dot_4rows; with AVX two later rows at a time), the groups of four shared out
 * among threads; the pairs inside each group and the leftover rows at the end use the
 * plain dot product. Every entry is computed the same way whatever the thread count,
 * so the matrix (and the clusters) are the same bit for bit. */
static void dm_fill_cosine(dist_matrix_t *m, const float *vecs, size_t dim,
                           const double *norm) {
    size_t n = m->n, nthreads = fill_threads(n);
    fill_share share[FILL_MAX_THREADS];
    pthread_t tid[FILL_MAX_THREADS];
    int started[FILL_MAX_THREADS] = {0};
    for (size_t t = 0; t < nthreads; t++) {
        share[t] = (fill_share){m, vecs, dim, norm, t, nthreads};
        /* The calling thread takes share 0; a thread that cannot start is done here. */
        if (t > 0) started[t] = pthread_create(&tid[t], NULL, fill_groups, &share[t]) == 0;
    }
    fill_groups(&share[0]);
    for (size_t t = 1; t < nthreads; t++) {
        if (started[t]) pthread_join(tid[t], NULL);
        else fill_groups(&share[t]);
    }
    for (size_t i = n / 4 * 4; i < n; i++)
        for (size_t j = i + 1; j < n; j++)
            *dm_at(m, i, j) = cosine_distance(dot_ff(vecs + i * dim, vecs + j * dim, dim),
                                              norm[i], norm[j]);
}

/* ------------------------------------------------------------------------------ */
/* Nearest-neighbour chain. A cluster is named by its smallest member index, and
 * its distances live in that member's row/column of the matrix. */

#define NO_CLUSTER SIZE_MAX

/* Clusters still able to merge, kept sorted so that scans run in index order
 * (the lowest-index tie-break relies on it). */
typedef struct alive_set {
    size_t *ids;
    size_t count;
} alive_set_t;

static void alive_remove(alive_set_t *s, size_t id) {
    size_t lo = 0, hi = s->count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (s->ids[mid] < id) lo = mid + 1;
        else hi = mid;
    }
    if (lo < s->count && s->ids[lo] == id) {
        memmove(&s->ids[lo], &s->ids[lo + 1], (s->count - lo - 1) * sizeof *s->ids);
        s->count--;
    }
}

/* The alive cluster nearest to a (lowest index on ties, except that the chain
 * predecessor wins a tie: without that rule two equidistant clusters can make the
 * chain cycle forever). Returns NO_CLUSTER if a is the only one alive. */
static size_t nearest_alive(const dist_matrix_t *m, const alive_set_t *s, size_t a,
                            size_t prev, float *dist) {
    size_t best = NO_CLUSTER;
    float best_d = INFINITY;
    for (size_t t = 0; t < s->count; t++) {
        size_t k = s->ids[t];
        if (k == a) continue;
        float d = *dm_at(m, a, k);
        if (best == NO_CLUSTER || d < best_d) {
            best = k;
            best_d = d;
        }
    }
    if (prev != NO_CLUSTER && *dm_at(m, a, prev) == best_d) best = prev;
    *dist = best_d;
    return best;
}

/* Complete-linkage Lance–Williams update: d(a∪b, k) = max(d(a,k), d(b,k)). The
 * union keeps the smaller index as its name; the other id stops being alive. */
static void merge_clusters(dist_matrix_t *m, alive_set_t *s, size_t a, size_t b,
                           size_t *parent) {
    size_t keep = MIN(a, b), drop = MAX(a, b);
    for (size_t t = 0; t < s->count; t++) {
        size_t k = s->ids[t];
        if (k == keep || k == drop) continue;
        float *dk = dm_at(m, keep, k);
        float dd = *dm_at(m, drop, k);
        if (dd > *dk) *dk = dd;
    }
    parent[drop] = keep;
    alive_remove(s, drop);
}

/* Performs every merge of distance < threshold, recording each as parent[drop] =
 * keep. Complete linkage is reducible (merging never brings a cluster closer to a
 * third), so the chain may merge reciprocal nearest neighbours out of global order
 * and still produce the same merges below the threshold as the sorted algorithm.
 * Reducibility also means a cluster whose nearest neighbour is already >= threshold
 * away can never merge again, so it is retired, which ends the loop early. */
static void nn_chain_merge(dist_matrix_t *m, float threshold, size_t *parent) {
    size_t n = m->n;
    alive_set_t alive = {xmalloc(n * sizeof(size_t)), n};
    size_t *chain = xmalloc(n * sizeof *chain);
    size_t len = 0;
    for (size_t i = 0; i < n; i++) alive.ids[i] = i;

    while (alive.count > 0) {
        if (len == 0) chain[len++] = alive.ids[0];
        size_t a = chain[len - 1];
        size_t prev = len >= 2 ? chain[len - 2] : NO_CLUSTER;
        float d;
        size_t b = nearest_alive(m, &alive, a, prev, &d);
        if (b == NO_CLUSTER || !(d < threshold)) {
            /* Retire a. Only reachable with len == 1: each chain link is no longer
             * than the one before it, and the first link was < threshold. */
            alive_remove(&alive, a);
            len--;
        } else if (b == prev) {
            len -= 2;
            merge_clusters(m, &alive, a, b, parent);
        } else {
            chain[len++] = b;
        }
    }
    free(alive.ids);
    free(chain);
}

/* parent[] links each merged-away cluster name to a smaller one, so resolving in
 * ascending order sees every parent already resolved, and the root of a cluster
 * is its smallest member: numbering roots in index order gives the contract's
 * "numbered by smallest member". */
static int label_by_smallest_member(size_t *parent, size_t n, int *labels) {
    int k = 0;
    for (size_t i = 0; i < n; i++) {
        if (parent[i] == i) {
            labels[i] = k++;
        } else {
            parent[i] = parent[parent[i]];
            labels[i] = labels[parent[i]];
        }
    }
    return k;
}

int cluster_complete_linkage(const float *vecs, size_t n, size_t dim, float threshold,
                             int *labels) {
    if (n > CLUSTER_DIRECT_MAX) return -1;
    if (n == 0) return 0;
    if (!vecs || !labels) return -1;
    if (n == 1) {
        labels[0] = 0;
        return 1;
    }
    double *norm = row_norms(vecs, n, dim);
    dist_matrix_t m;
    dm_init(&m, n);
    dm_fill_cosine(&m, vecs, dim, norm);
    free(norm);

    size_t *parent = xmalloc(n * sizeof *parent);
    for (size_t i = 0; i < n; i++) parent[i] = i;
    nn_chain_merge(&m, threshold, parent);
    dm_free(&m);

    int k = label_by_smallest_member(parent, n, labels);
    free(parent);
    return k;
}

/* ------------------------------------------------------------------------------ */
/* Recursive bisection. order[] is a permutation of the rows in which every pending
 * block is a contiguous span; partitions are stable, so each span stays in
 * ascending row order (which makes the index-halves fallback meaningful). */

#define BISECT_LLOYD_ITERS 8

typedef struct span {
    size_t start, len;
} span_t;

typedef struct bisect_ctx {
    const float *vecs;
    size_t dim;
    double *inv_norm;     /* 1/|row|, 0 for a zero row */
    size_t *order;        /* permutation of rows */
    size_t *scratch;      /* n, for stable partitioning */
    unsigned char *side;  /* per row: 0 = first part of the split, 1 = second */
    double *center[2];    /* dim each: the two unit centroids */
} bisect_ctx_t;

static double norm_d(const double *v, size_t dim) {
    double s = 0;
    for (size_t k = 0; k < dim; k++) s += v[k] * v[k];
    return sqrt(s);
}

static void normalize_d(double *v, size_t dim) {
    double nv = norm_d(v, dim);
    if (!(nv > 0)) return;
    for (size_t k = 0; k < dim; k++) v[k] /= nv;
}

/* acc += row r scaled to unit length. A zero (or non-finite) row adds nothing;
 * skipping it also keeps a NaN component from poisoning the centroid. */
static void add_unit_row(const bisect_ctx_t *c, size_t r, double *acc) {
    const float *v = c->vecs + r * c->dim;
    double s = c->inv_norm[r];
    if (s == 0) return;
    for (size_t k = 0; k < c->dim; k++) acc[k] += v[k] * s;
}

/* The row of the span least similar to direction dir (first in span order on
 * ties). A zero row counts as similarity 0. */
static size_t farthest_row(const bisect_ctx_t *c, span_t s, const double *dir) {
    double dir_norm = norm_d(dir, c->dim);
    size_t best = c->order[s.start];
    double best_cos = INFINITY;
    for (size_t t = s.start; t < s.start + s.len; t++) {
        size_t r = c->order[t];
        double cs = 0;
        if (dir_norm > 0)
            cs = dot_fd(c->vecs + r * c->dim, dir, c->dim) * c->inv_norm[r] / dir_norm;
        if (cs < best_cos) {
            best_cos = cs;
            best = r;
        }
    }
    return best;
}

/* Deterministic, spread-out seeds: the row farthest from the span's mean
 * direction, then the row farthest from that one. */
static void seed_centers(bisect_ctx_t *c, span_t s) {
    size_t dim = c->dim;
    memset(c->center[0], 0, dim * sizeof(double));
    for (size_t t = s.start; t < s.start + s.len; t++) add_unit_row(c, c->order[t], c->center[0]);
    size_t first = farthest_row(c, s, c->center[0]);
    memset(c->center[0], 0, dim * sizeof(double));
    add_unit_row(c, first, c->center[0]);
    size_t second = farthest_row(c, s, c->center[0]);
    memset(c->center[1], 0, dim * sizeof(double));
    add_unit_row(c, second, c->center[1]);
}

/* Puts each row on the side of the more similar centre (ties to side 0; centres
 * are unit length, so comparing dot products compares cosines). Returns how many
 * rows went to side 1; *changed tells whether any row switched side. */
static size_t assign_sides(bisect_ctx_t *c, span_t s, int *changed) {
    size_t ones = 0;
    *changed = 0;
    for (size_t t = s.start; t < s.start + s.len; t++) {
        size_t r = c->order[t];
        const float *v = c->vecs + r * c->dim;
        unsigned char side =
            dot_fd(v, c->center[1], c->dim) > dot_fd(v, c->center[0], c->dim) ? 1 : 0;
        if (side != c->side[r]) *changed = 1;
        c->side[r] = side;
        ones += side;
    }
    return ones;
}

static void recompute_centers(bisect_ctx_t *c, span_t s) {
    for (int h = 0; h < 2; h++) memset(c->center[h], 0, c->dim * sizeof(double));
    for (size_t t = s.start; t < s.start + s.len; t++) {
        size_t r = c->order[t];
        add_unit_row(c, r, c->center[c->side[r]]);
    }
    for (int h = 0; h < 2; h++) normalize_d(c->center[h], c->dim);
}

/* Stable partition of the span by side: side-0 rows first. */
static void partition_span(bisect_ctx_t *c, span_t s) {
    size_t front = s.start, back = 0;
    for (size_t t = s.start; t < s.start + s.len; t++) {
        size_t r = c->order[t];
        if (c->side[r] == 0) c->order[front++] = r;
        else c->scratch[back++] = r;
    }
    memcpy(&c->order[front], c->scratch, back * sizeof *c->order);
}

/* Spherical 2-means on the span: a few Lloyd iterations from deterministic seeds.
 * On success the span is partitioned and the size of its first part returned;
 * 0 means the split degenerated (one side empty) and the span is untouched. */
static size_t two_means_split(bisect_ctx_t *c, span_t s) {
    seed_centers(c, s);
    for (size_t t = s.start; t < s.start + s.len; t++) c->side[c->order[t]] = UCHAR_MAX;
    size_t ones = 0;
    for (int iter = 0; iter < BISECT_LLOYD_ITERS; iter++) {
        int changed;
        ones = assign_sides(c, s, &changed);
        if (ones == 0 || ones == s.len || !changed) break;
        recompute_centers(c, s);
    }
    if (ones == 0 || ones == s.len) return 0;
    partition_span(c, s);
    return s.len - ones;
}

/* Block ids were handed out in split order; renumber them by each block's
 * smallest row so the numbering follows the input like the clustering labels. */
static void renumber_blocks(int *block, size_t n, int nblocks) {
    int *map = xmalloc((size_t)nblocks * sizeof *map);
    for (int b = 0; b < nblocks; b++) map[b] = -1;
    int next = 0;
    for (size_t i = 0; i < n; i++) {
        if (map[block[i]] < 0) map[block[i]] = next++;
        block[i] = map[block[i]];
    }
    free(map);
}

int cluster_bisect(const float *vecs, size_t n, size_t dim, size_t max_block, int *block) {
    if (n == 0) return 0;
    if (!vecs || !block || n > INT_MAX) return -1;
    if (max_block < 1) max_block = 1; /* contract says >= 2; 0 would never finish */

    bisect_ctx_t c = {.vecs = vecs, .dim = dim};
    c.inv_norm = row_norms(vecs, n, dim);
    for (size_t i = 0; i < n; i++)
        c.inv_norm[i] = (c.inv_norm[i] > 0 && !isinf(c.inv_norm[i])) ? 1.0 / c.inv_norm[i] : 0;
    c.order = xmalloc(n * sizeof *c.order);
    c.scratch = xmalloc(n * sizeof *c.scratch);
    c.side = xmalloc(n);
    c.center[0] = xmalloc((dim ? dim : 1) * sizeof(double));
    c.center[1] = xmalloc((dim ? dim : 1) * sizeof(double));
    for (size_t i = 0; i < n; i++) c.order[i] = i;

    /* Pending spans are disjoint and non-empty, so at most n are ever stacked. */
    span_t *stack = xmalloc(n * sizeof *stack);
    size_t top = 0;
    stack[top++] = (span_t){0, n};
    int nblocks = 0;
    while (top > 0) {
        span_t s = stack[--top];
        if (s.len <= max_block) {
            for (size_t t = s.start; t < s.start + s.len; t++) block[c.order[t]] = nblocks;
            nblocks++;
            continue;
        }
        size_t left = two_means_split(&c, s);
        if (left == 0) left = s.len / 2; /* degenerate: split by index halves */
        stack[top++] = (span_t){s.start + left, s.len - left};
        stack[top++] = (span_t){s.start, left};
    }
    renumber_blocks(block, n, nblocks);

    free(stack);
    free(c.inv_norm);
    free(c.order);
    free(c.scratch);
    free(c.side);
    free(c.center[0]);
    free(c.center[1]);
    return nblocks;
}
