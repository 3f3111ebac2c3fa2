/* Tests for src/pipeline/cluster.c: complete-linkage clustering on cosine distance
 * (hand-made cases, validity of the stopping point, agreement with a naive O(n^3)
 * reference written here), recursive bisection, cosine similarity. */
#include "test.h"

#include <stdlib.h>
#include <string.h>

#include "pipeline/cluster.h"
#include "util/util.h"

/* ---- helpers ------------------------------------------------------------------ */

/* Reference cosine distance, computed independently of the implementation but
 * rounded to float the same way (the implementation stores a float matrix), so
 * that both sides agree on every comparison. */
static float ref_distance(const float *a, const float *b, size_t dim) {
    double dot = 0, na = 0, nb = 0;
    for (size_t k = 0; k < dim; k++) {
        dot += (double)a[k] * b[k];
        na += (double)a[k] * a[k];
        nb += (double)b[k] * b[k];
    }
    if (na == 0 || nb == 0) return 1.0f;
    double c = dot / (sqrt(na) * sqrt(nb));
    if (c > 1) c = 1;
    if (c < -1) c = -1;
    return (float)(1.0 - c);
}

/* Points scattered around a few random centres so that a threshold in the usual
 * range produces a mix of merges and separate clusters. */
static float *random_points(uint64_t seed, size_t n, size_t dim, size_t ncenters,
                            double spread) {
    rng_t r;
    rng_seed(&r, seed);
    float *centers = xmalloc(ncenters * dim * sizeof *centers);
    for (size_t i = 0; i < ncenters * dim; i++) centers[i] = (float)(rng_double(&r) * 2 - 1);
    float *v = xmalloc(n * dim * sizeof *v);
    for (size_t i = 0; i < n; i++) {
        const float *c = centers + rng_below(&r, ncenters) * dim;
        for (size_t k = 0; k < dim; k++)
            v[i * dim + k] = c[k] + (float)((rng_double(&r) * 2 - 1) * spread);
    }
    free(centers);
    return v;
}

static int count_distinct(const int *labels, size_t n) {
    int max = -1;
    for (size_t i = 0; i < n; i++)
        if (labels[i] > max) max = labels[i];
    return max + 1;
}

/* True if labels are 0..k-1, each first appearing in increasing order. */
static int numbered_by_smallest_member(const int *labels, size_t n, int k) {
    int next = 0;
    for (size_t i = 0; i < n; i++) {
        if (labels[i] < 0 || labels[i] > next) return 0;
        if (labels[i] == next) next++;
    }
    return next == k;
}

/* A valid stopping point of complete linkage: every cluster's diameter is below
 * the threshold (*inside_ok), and every two clusters are at least threshold apart
 * in complete-link terms, so no further merge is allowed (*apart_ok). */
static void check_stopping_point(const float *v, size_t n, size_t dim, float t,
                                 const int *labels, int k, int *inside_ok, int *apart_ok) {
    /* link[a*k+b] = largest distance between members of a and b */
    float *link = xcalloc((size_t)k * k, sizeof *link);
    for (size_t i = 0; i < n; i++)
        for (size_t j = i + 1; j < n; j++) {
            float d = ref_distance(v + i * dim, v + j * dim, dim);
            size_t a = (size_t)labels[i], b = (size_t)labels[j];
            if (d > link[a * k + b]) link[a * k + b] = link[b * k + a] = d;
        }
    *inside_ok = *apart_ok = 1;
    for (int a = 0; a < k; a++) {
        *inside_ok &= link[a * k + a] < t;
        for (int b = a + 1; b < k; b++) *apart_ok &= link[a * k + b] >= t;
    }
    free(link);
}

/* Naive ordered agglomerative clustering: repeatedly merge the two clusters whose
 * largest member-to-member distance is smallest (lowest cluster ids on ties),
 * recomputing that from the point distances every time, until the smallest is
 * >= threshold. Labels numbered by smallest member. Returns k. */
static int reference_complete_linkage(const float *v, size_t n, size_t dim, float t,
                                      int *labels) {
    float *d = xmalloc(n * n * sizeof *d);
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < n; j++) d[i * n + j] = ref_distance(v + i * dim, v + j * dim, dim);
    size_t *cid = xmalloc(n * sizeof *cid); /* cluster id = smallest member */
    for (size_t i = 0; i < n; i++) cid[i] = i;
    float *link = xmalloc(n * n * sizeof *link);
    for (;;) {
        for (size_t i = 0; i < n * n; i++) link[i] = -1;
        for (size_t i = 0; i < n; i++)
            for (size_t j = 0; j < n; j++) {
                size_t a = cid[i], b = cid[j];
                if (a != b && d[i * n + j] > link[a * n + b]) link[a * n + b] = d[i * n + j];
            }
        size_t ba = 0, bb = 0;
        float best = INFINITY;
        for (size_t a = 0; a < n; a++)
            for (size_t b = a + 1; b < n; b++)
                if (link[a * n + b] >= 0 && link[a * n + b] < best) {
                    best = link[a * n + b];
                    ba = a;
                    bb = b;
                }
        if (!(best < t)) break;
        for (size_t i = 0; i < n; i++)
            if (cid[i] == bb) cid[i] = ba;
    }
    int k = 0;
    for (size_t i = 0; i < n; i++) labels[i] = cid[i] == i ? k++ : labels[cid[i]];
    free(d);
    free(cid);
    free(link);
    return k;
}

/* ---- cosine_similarity -------------------------------------------------------- */

TEST(cosine_similarity_known_values) {
    float x[] = {1, 0}, y[] = {1, 1}, z[] = {-3, 0}, zero[] = {0, 0};
    CHECK_NEAR(cosine_similarity(x, y, 2), 1 / sqrt(2.0), 1e-6);
    CHECK_NEAR(cosine_similarity(x, z, 2), -1.0, 1e-6);
    CHECK_NEAR(cosine_similarity(y, y, 2), 1.0, 1e-6);
    CHECK_NEAR(cosine_similarity(x, zero, 2), 0.0, 0);
    CHECK_NEAR(cosine_similarity(zero, zero, 2), 0.0, 0);
    /* Scale does not matter: cosine is computed, not assumed from unit input. */
    float big[] = {300, 400}, small[] = {0.003f, 0.004f};
    CHECK_NEAR(cosine_similarity(big, small, 2), 1.0, 1e-6);
    /* Long vectors exercise the unrolled path plus a tail. */
    float a[11], b[11];
    for (int i = 0; i < 11; i++) {
        a[i] = (float)(i + 1);
        b[i] = (float)(11 - i);
    }
    /* dot = sum (i+1)(11-i) = 286, |a|^2 = |b|^2 = 506 */
    CHECK_NEAR(cosine_similarity(a, b, 11), 286.0 / 506.0, 1e-6);
}

/* ---- complete linkage: hand-made cases ---------------------------------------- */

TEST(empty_input_returns_zero) {
    int labels[1] = {-7};
    CHECK_INT(cluster_complete_linkage(NULL, 0, 3, 0.55f, labels), 0);
    CHECK_INT(labels[0], -7);
}

TEST(one_vector_is_label_zero) {
    float v[] = {0.3f, -0.2f, 0.9f};
    int labels[1] = {-7};
    CHECK_INT(cluster_complete_linkage(v, 1, 3, CLUSTER_DEFAULT_THRESHOLD, labels), 1);
    CHECK_INT(labels[0], 0);
}

TEST(identical_vectors_form_one_cluster) {
    float v[5 * 3];
    for (int i = 0; i < 5; i++) {
        v[i * 3] = 0.2f;
        v[i * 3 + 1] = -0.7f;
        v[i * 3 + 2] = 0.4f;
    }
    int labels[5];
    CHECK_INT(cluster_complete_linkage(v, 5, 3, CLUSTER_DEFAULT_THRESHOLD, labels), 1);
    for (int i = 0; i < 5; i++) CHECK_INT(labels[i], 0);
}

TEST(orthogonal_vectors_stay_apart) {
    float v[] = {1, 0, 0, 0, 1, 0, 0, 0, 1};
    int labels[3];
    CHECK_INT(cluster_complete_linkage(v, 3, 3, 0.5f, labels), 3);
    CHECK_INT(labels[0], 0);
    CHECK_INT(labels[1], 1);
    CHECK_INT(labels[2], 2);
    /* Distance is exactly 1, so only a threshold above 1 joins them. */
    CHECK_INT(cluster_complete_linkage(v, 3, 3, 1.0f, labels), 3);
    CHECK_INT(cluster_complete_linkage(v, 3, 3, 1.01f, labels), 1);
}

TEST(near_parallel_vectors_form_one_cluster) {
    float v[] = {1, 0.01f, 0, 0.98f, 0.02f, 0.01f, 1.02f, -0.01f, 0.02f, 50, 1, 0};
    int labels[4];
    CHECK_INT(cluster_complete_linkage(v, 4, 3, CLUSTER_DEFAULT_THRESHOLD, labels), 1);
    for (int i = 0; i < 4; i++) CHECK_INT(labels[i], 0);
}

/* a, b, c at 0, 35 and 75 degrees: d(a,b) = 0.18, d(b,c) = 0.23, d(a,c) = 0.74.
 * Single linkage would chain all three together; complete linkage merges a and b
 * and then sees {a,b}-c at max(0.74, 0.23) >= 0.55. */
TEST(complete_linkage_does_not_chain) {
    const double deg = 3.14159265358979 / 180;
    float v[] = {1, 0, (float)cos(35 * deg), (float)sin(35 * deg), (float)cos(75 * deg),
                 (float)sin(75 * deg)};
    REQUIRE(ref_distance(v, v + 2, 2) < 0.55f);
    REQUIRE(ref_distance(v + 2, v + 4, 2) < 0.55f);
    REQUIRE(ref_distance(v, v + 4, 2) > 0.55f);
    int labels[3];
    CHECK_INT(cluster_complete_linkage(v, 3, 2, 0.55f, labels), 2);
    CHECK_INT(labels[0], 0);
    CHECK_INT(labels[1], 0);
    CHECK_INT(labels[2], 1);
    /* Same points in reverse order (c, b, a): c-b is the first close pair in index
     * order, but b-a is closer, so b must go with a, not with c. */
    float w[] = {v[4], v[5], v[2], v[3], v[0], v[1]};
    CHECK_INT(cluster_complete_linkage(w, 3, 2, 0.55f, labels), 2);
    CHECK_INT(labels[0], 0);
    CHECK_INT(labels[1], 1);
    CHECK_INT(labels[2], 1);
}

TEST(labels_numbered_by_smallest_member) {
    /* 0 pairs with 3, 1 pairs with 2, 4 alone. */
    float v[] = {1, 0, 0, 0, 1, 0, 0.1f, 1, 0, 1, 0.1f, 0, 0, 0, 1};
    int labels[5];
    CHECK_INT(cluster_complete_linkage(v, 5, 3, 0.55f, labels), 3);
    CHECK_INT(labels[0], 0);
    CHECK_INT(labels[1], 1);
    CHECK_INT(labels[2], 1);
    CHECK_INT(labels[3], 0);
    CHECK_INT(labels[4], 2);
}

TEST(unnormalised_input_equals_normalised) {
    float *v = random_points(11, 40, 4, 5, 0.4);
    float *u = xmalloc(40 * 4 * sizeof *u);
    for (size_t i = 0; i < 40; i++) {
        double s = 0;
        for (size_t k = 0; k < 4; k++) s += (double)v[i * 4 + k] * v[i * 4 + k];
        double scale = (double)(i % 7 + 1) * 13.0 / sqrt(s);
        for (size_t k = 0; k < 4; k++) u[i * 4 + k] = (float)(v[i * 4 + k] * scale);
    }
    int lv[40], lu[40];
    int kv = cluster_complete_linkage(v, 40, 4, 0.3f, lv);
    int ku = cluster_complete_linkage(u, 40, 4, 0.3f, lu);
    CHECK(kv > 1 && kv < 40);
    CHECK_INT(kv, ku);
    for (int i = 0; i < 40; i++) CHECK_INT(lv[i], lu[i]);
    free(v);
    free(u);
}

TEST(zero_vectors_are_singletons) {
    float v[] = {0, 0, 0, 1, 0, 0, 0, 0, 0, 1, 0.01f, 0};
    int labels[4];
    CHECK_INT(cluster_complete_linkage(v, 4, 3, 0.55f, labels), 3);
    CHECK_INT(labels[0], 0);
    CHECK_INT(labels[1], 1);
    CHECK_INT(labels[2], 2);
    CHECK_INT(labels[3], 1);
    /* Zero vectors are at distance exactly 1 from everything, themselves included. */
    CHECK_INT(cluster_complete_linkage(v, 4, 3, 1.0f, labels), 3);
    CHECK_INT(cluster_complete_linkage(v, 4, 3, 1.5f, labels), 1);
    for (int i = 0; i < 4; i++) CHECK_INT(labels[i], 0);
}

TEST(too_many_items_rejected_untouched) {
    size_t n = CLUSTER_DIRECT_MAX + 1;
    float *v = xcalloc(n * 2, sizeof *v);
    int *labels = xmalloc(n * sizeof *labels);
    for (size_t i = 0; i < n; i++) labels[i] = -7;
    CHECK_INT(cluster_complete_linkage(v, n, 2, 0.55f, labels), -1);
    int untouched = 1;
    for (size_t i = 0; i < n; i++) untouched &= labels[i] == -7;
    CHECK(untouched);
    free(v);
    free(labels);
}

TEST(direct_max_is_accepted) {
    /* Two directions, alternating: exactly two clusters at the largest allowed n. */
    size_t n = CLUSTER_DIRECT_MAX;
    float *v = xmalloc(n * 2 * sizeof *v);
    for (size_t i = 0; i < n; i++) {
        v[i * 2] = i % 2 ? 0.0f : 1.0f;
        v[i * 2 + 1] = i % 2 ? 1.0f : 0.0f;
    }
    int *labels = xmalloc(n * sizeof *labels);
    CHECK_INT(cluster_complete_linkage(v, n, 2, 0.55f, labels), 2);
    int ok = 1;
    for (size_t i = 0; i < n; i++) ok &= labels[i] == (int)(i % 2);
    CHECK(ok);
    free(v);
    free(labels);
}

/* ---- complete linkage: properties on random data ------------------------------ */

TEST(random_result_is_valid_stopping_point) {
    const size_t n = 300, dim = 6;
    const float thresholds[] = {0.1f, 0.3f, 0.55f, 0.9f};
    for (uint64_t seed = 1; seed <= 3; seed++) {
        float *v = random_points(seed, n, dim, 8, 0.5);
        for (size_t ti = 0; ti < ARRAY_LEN(thresholds); ti++) {
            float t = thresholds[ti];
            int labels[300];
            int k = cluster_complete_linkage(v, n, dim, t, labels);
            REQUIRE(k >= 1 && k <= (int)n);
            CHECK_INT(count_distinct(labels, n), k);
            CHECK(numbered_by_smallest_member(labels, n, k));
            int inside_ok, apart_ok;
            check_stopping_point(v, n, dim, t, labels, k, &inside_ok, &apart_ok);
            CHECK(inside_ok);
            CHECK(apart_ok);
        }
        free(v);
    }
}

TEST(random_matches_naive_reference) {
    const float thresholds[] = {0.05f, 0.2f, 0.55f, 0.8f, 1.2f};
    int nontrivial = 0;
    for (uint64_t seed = 1; seed <= 8; seed++) {
        /* n and dim vary so that the matrix fill's groups of four rows and the
         * dot product's four lanes both get ragged tails. */
        size_t n = 57 + seed, dim = seed % 4 == 0 ? 9 : 2 + seed % 4;
        float *v = random_points(100 + seed, n, dim, 4, 0.6);
        for (size_t ti = 0; ti < ARRAY_LEN(thresholds); ti++) {
            int got[65], want[65];
            int k = cluster_complete_linkage(v, n, dim, thresholds[ti], got);
            int kr = reference_complete_linkage(v, n, dim, thresholds[ti], want);
            CHECK_INT(k, kr);
            int same = 1;
            for (size_t i = 0; i < n; i++) same &= got[i] == want[i];
            if (!same) printf("    seed %d threshold %g: partitions differ\n", (int)seed,
                              (double)thresholds[ti]);
            CHECK(same);
            nontrivial += kr > 1 && kr < (int)n;
        }
        free(v);
    }
    /* The comparison means little if every case were all-singletons or all-one. */
    CHECK(nontrivial >= 20);
}

/* Directions from a coarse grid, many repeated: lots of exactly equal distances,
 * including zeros between duplicates. Ties may be broken either way, but the
 * result must still be a valid stopping point, and the run must terminate. */
TEST(tied_distances_still_valid) {
    const size_t n = 120, dim = 3;
    rng_t r;
    rng_seed(&r, 77);
    float v[120 * 3];
    for (size_t i = 0; i < n * dim; i++) v[i] = (float)rng_below(&r, 3) - 1.0f;
    const float thresholds[] = {0.2f, 0.55f, 1.0f, 1.4f};
    for (size_t ti = 0; ti < ARRAY_LEN(thresholds); ti++) {
        float t = thresholds[ti];
        int labels[120];
        int k = cluster_complete_linkage(v, n, dim, t, labels);
        REQUIRE(k >= 1);
        CHECK(numbered_by_smallest_member(labels, n, k));
        int inside_ok, apart_ok;
        check_stopping_point(v, n, dim, t, labels, k, &inside_ok, &apart_ok);
        CHECK(inside_ok);
        CHECK(apart_ok);
    }
}

TEST(lower_threshold_never_fewer_clusters) {
    const size_t n = 200, dim = 5;
    float *v = random_points(42, n, dim, 6, 0.7);
    int labels[200];
    int prev_k = (int)n + 1, distinct_counts = 0;
    for (int step = 0; step <= 40; step++) {
        float t = 0.05f * (float)step; /* 0 .. 2 ascending */
        int k = cluster_complete_linkage(v, n, dim, t, labels);
        CHECK(k <= prev_k);
        distinct_counts += k != prev_k;
        prev_k = k;
    }
    CHECK_INT(prev_k, 1); /* no two of these points are exactly opposite: all d < 2 */
    CHECK(distinct_counts >= 5);
    free(v);
}

TEST(deterministic_across_calls) {
    float *v = random_points(7, 150, 8, 5, 0.5);
    int a[150], b[150];
    int ka = cluster_complete_linkage(v, 150, 8, 0.55f, a);
    int kb = cluster_complete_linkage(v, 150, 8, 0.55f, b);
    CHECK_INT(ka, kb);
    CHECK(memcmp(a, b, sizeof a) == 0);
    free(v);
}

/* Above FILL_THREADED_MIN_ROWS the distance matrix is filled by several threads, each
 * taking every nth group of four rows: any thread count gives the same clusters as one
 * thread (a group filled twice or not at all would not), and the naive reference's. */
TEST(threaded_fill_gives_the_same_clusters_as_one_thread) {
    size_t n = 301, dim = 13; /* ragged: 301 = 75 groups of four + 1 row, 13 = 3 lanes + 1 */
    float *v = random_points(42, n, dim, 6, 0.5);
    int *one = xcalloc(n, sizeof *one), *many = xcalloc(n, sizeof *many);
    int *want = xcalloc(n, sizeof *want);
    int kr = reference_complete_linkage(v, n, dim, 0.55f, want);
    CHECK(kr > 1 && kr < (int)n);
    const char *counts[] = {"1", "2", "3", "8"};
    for (size_t c = 0; c < ARRAY_LEN(counts); c++) {
        setenv("FEEDLINE_CLUSTER_THREADS", counts[c], 1);
        int *got = c == 0 ? one : many;
        int k = cluster_complete_linkage(v, n, dim, 0.55f, got);
        CHECK_INT(k, kr);
        CHECK(memcmp(got, want, n * sizeof *got) == 0);
        if (c > 0) CHECK(memcmp(got, one, n * sizeof *got) == 0);
    }
    unsetenv("FEEDLINE_CLUSTER_THREADS");
    free(one);
    free(many);
    free(want);
    free(v);
}

/* ---- bisection ---------------------------------------------------------------- */

static int blocks_valid(const int *block, size_t n, int nb, size_t max_block) {
    size_t *size = xcalloc((size_t)nb, sizeof *size);
    int ok = 1;
    for (size_t i = 0; i < n; i++) {
        if (block[i] < 0 || block[i] >= nb) {
            ok = 0;
            continue;
        }
        size[block[i]]++;
    }
    for (int b = 0; b < nb; b++) ok &= size[b] >= 1 && size[b] <= max_block;
    free(size);
    return ok;
}

TEST(bisect_empty_and_small) {
    int block[3] = {-7, -7, -7};
    CHECK_INT(cluster_bisect(NULL, 0, 4, 10, block), 0);
    float v[] = {1, 0, 0, 1, 1, 1};
    CHECK_INT(cluster_bisect(v, 3, 2, 10, block), 1);
    for (int i = 0; i < 3; i++) CHECK_INT(block[i], 0);
}

TEST(bisect_separates_two_groups) {
    /* Twelve noisy points near one axis and eight near another, interleaved;
     * unequal sizes so that swapping the two halves of a split is noticed. */
    rng_t r;
    rng_seed(&r, 5);
    float v[20 * 3];
    for (int i = 0; i < 20; i++) {
        for (int k = 0; k < 3; k++) v[i * 3 + k] = (float)(rng_double(&r) * 0.2);
        v[i * 3 + (i % 5 < 3 ? 0 : 1)] += 1.0f;
    }
    int block[20];
    int nb = cluster_bisect(v, 20, 3, 12, block);
    CHECK_INT(nb, 2);
    CHECK(blocks_valid(block, 20, nb, 12));
    for (int i = 0; i < 20; i++) CHECK_INT(block[i], i % 5 < 3 ? 0 : 1);
}

TEST(bisect_random_blocks_bounded_and_deterministic) {
    const size_t n = 1000, dim = 16, max_block = 37;
    float *v = random_points(9, n, dim, 12, 0.4);
    int *a = xmalloc(n * sizeof *a), *b = xmalloc(n * sizeof *b);
    int na = cluster_bisect(v, n, dim, max_block, a);
    int nb = cluster_bisect(v, n, dim, max_block, b);
    CHECK(na >= (int)((n + max_block - 1) / max_block));
    CHECK(blocks_valid(a, n, na, max_block));
    CHECK(numbered_by_smallest_member(a, n, na));
    CHECK_INT(na, nb);
    CHECK(memcmp(a, b, n * sizeof *a) == 0);
    free(v);
    free(a);
    free(b);
}

TEST(bisect_degenerate_rows_split_by_halves) {
    /* Identical rows and zero rows give 2-means nothing to separate; the fallback
     * must still bound every block. */
    float same[9 * 2], zeros[9 * 2] = {0};
    for (int i = 0; i < 9; i++) {
        same[i * 2] = 0.6f;
        same[i * 2 + 1] = 0.8f;
    }
    int block[9];
    int nb = cluster_bisect(same, 9, 2, 2, block);
    CHECK(nb >= 5);
    CHECK(blocks_valid(block, 9, nb, 2));
    CHECK(numbered_by_smallest_member(block, 9, nb));
    nb = cluster_bisect(zeros, 9, 2, 3, block);
    CHECK(nb >= 3);
    CHECK(blocks_valid(block, 9, nb, 3));
    /* Halving keeps index order: the first block holds the lowest rows. */
    CHECK_INT(block[0], 0);
    CHECK_INT(block[1], 0);
}
