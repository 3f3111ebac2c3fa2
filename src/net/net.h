/* net — HTTP client plumbing shared by the OpenAI-compatible LLM client and the
 * Intercom client: an asynchronous client on one libcurl multi handle (httpc.h) and the
 * retry arithmetic both use (retry.h: full-jitter backoff, Retry-After and rate-limit
 * reset parsing), and one request performed to its end with that policy (call.h, for
 * the tracker exports).
 *
 * Owns: sockets, connection reuse, timeouts, response size bounds. Must not know about
 * LLMs, Intercom, the store or the pipeline; retry *policy* belongs to the callers. */
#ifndef FEEDLINE_NET_H
#define FEEDLINE_NET_H

#include "net/call.h"
#include "net/httpc.h"
#include "net/retry.h"

#endif
