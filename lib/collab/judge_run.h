/* judge_run.h — runs the judges of judge.h over a record stream through the LLM client.
 *
 * Owns: the per-record work of cl-judge: every unit of every record, extraction first (the
 * accuracy judge reads the extracted answer), then N sampled judgements per scoring judge,
 * asking again (a new sample key) when a reply cannot be read, writing results into the record,
 * keeping input order on output while many records are in flight, and reporting failures:
 * a judge that gets no readable judgement for a unit after its retries fails the record (it is
 * written with "error" and the run exits 1); it is never scored 0.
 * Must not know: HTTP, cache or backoff (llm.h), prompt wording (judge.h). */
#ifndef CL_JUDGE_RUN_H
#define CL_JUDGE_RUN_H

#include <stdint.h>

#include "collab/judge.h"
#include "llm/llm.h"
#include "core/records.h"

typedef struct cl_judge_run_opts {
    int samples;        /* judgements per scoring judge and unit (extraction: always one) */
    int retries;        /* further asks after an unreadable reply */
    uint64_t seed;      /* part of every sample key: a new seed asks for new samples */
    int role;           /* the judge role of the client */
} cl_judge_run_opts;

/* Judges every record of io and writes it.  Returns 0 when the stream was processed (failed
 * records are reported through io: exit 1), or -1 with e set on a fatal error (write error,
 * bad input without --skip-bad).  Adds "judge" counters to --stats. */
int cl_judge_run(cl_io *io, cl_llm *llm, const cl_judge *j, const cl_judge_run_opts *o, cl_err *e);

#endif
