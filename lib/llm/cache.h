/* llm/cache.h — the LLM loop's response cache: every completed call, stored under its key in
 * append-only packs with checksums, so a rerun replays what was paid for.
 * Owns: the on-disk packs, their index, torn-entry detection.
 * Must not know: what a key is made of (the loop hashes the request into it), HTTP, backends. */
#ifndef CL_LLM_CACHE_H
#define CL_LLM_CACHE_H

#include <jv.h>

#include "core/err.h"

typedef struct cl_llm_cache cl_llm_cache;
cl_llm_cache *cl_llm_cache_open(const char *dir, cl_err *e);
void cl_llm_cache_close(cl_llm_cache *k);
/* Packs whose reading stopped at a damaged entry when the cache was opened. */
long cl_llm_cache_torn(const cl_llm_cache *k);
/* Looks key up: 1 = hit (*response owned by the caller, *latency_s set), 0 = miss,
 * -1 = an entry exists but fails its key or checksum test (a miss: the entry the fetch then
 * appends supersedes it). */
int cl_llm_cache_get(cl_llm_cache *k, const char *key, jv *response, double *latency_s);
/* Stores a response: raw[0..raw_len) when given (its exact JSON text), else response
 * (borrowed) dumped.  0, or -1 when the entry could not be written (the run goes on; the call
 * just is not cached). */
int cl_llm_cache_put(cl_llm_cache *k, const char *key, const jv *response, const char *raw, size_t raw_len,
                     double latency_s, const char *sample_key);

#endif
