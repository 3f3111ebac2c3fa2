/* Agglomerative clustering for the story phase.
 *
 * cluster_complete_linkage: exact complete-linkage clustering on cosine distance
 * (1 - cosine similarity; a zero vector has similarity 0 with everything). Two
 * clusters merge only while their complete-linkage distance (the largest pairwise
 * distance between their members) is < threshold; so in the result every pair of
 * members of one cluster is closer than threshold. O(n^2) time and n(n-1)/2 floats of
 * memory (the NN-chain algorithm), so callers keep n <= CLUSTER_DIRECT_MAX.
 *
 * cluster_bisect: splits an oversized block into pieces of at most max_block items by
 * recursive 2-means on the vectors, so that complete linkage can then run within each
 * piece. Used when a partition is still larger than CLUSTER_DIRECT_MAX.
 *
 * Both are deterministic: the same input gives the same labels. */
#ifndef FEEDLINE_CLUSTER_H
#define FEEDLINE_CLUSTER_H

#include <stddef.h>

#define CLUSTER_DIRECT_MAX 4000
#define CLUSTER_DEFAULT_THRESHOLD 0.55f

/* vecs: n rows of dim floats (row-major). Writes labels[0..n) in 0..k-1, numbered in
 * order of each cluster's smallest member index (so item 0 is in cluster 0). Returns
 * k, or -1 if n > CLUSTER_DIRECT_MAX. n == 0 returns 0. */
int cluster_complete_linkage(const float *vecs, size_t n, size_t dim, float threshold,
                             int *labels);

/* Assigns each of the n rows to a block 0..b-1 with every block holding at most
 * max_block rows (max_block >= 2); returns b. Rows that are close in cosine terms
 * tend to share a block. Deterministic. */
int cluster_bisect(const float *vecs, size_t n, size_t dim, size_t max_block, int *block);

/* Cosine similarity of two dim-vectors (0 if either is zero). */
float cosine_similarity(const float *a, const float *b, size_t dim);

#endif
