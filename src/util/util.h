/* util — the small, dependency-free building blocks every other module uses:
 * allocation (abort on out-of-memory), growable buffers, logging, clocks and
 * ISO-8601, settings from the environment, hashing (SHA-256, FNV), base64, a string
 * map, a seeded PRNG, jansson helpers.
 *
 * Owns: nothing stateful except the log level. Must not know about conversations,
 * storage, LLMs or HTTP; nothing here may include a header from another src/ module. */
#ifndef FEEDLINE_UTIL_H
#define FEEDLINE_UTIL_H

#include "util/base64.h"
#include "util/buf.h"
#include "util/env.h"
#include "util/hash.h"
#include "util/jsonx.h"
#include "util/log.h"
#include "util/mem.h"
#include "util/rng.h"
#include "util/strmap.h"
#include "util/timeutil.h"
#include "util/utf8.h"

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define MIN(a, b) ((a) < (b) ? (a) : (b))
#define MAX(a, b) ((a) > (b) ? (a) : (b))

#endif
