/* schema.h — the shapes of cl-records(5) as data, checked where records come in.
 *
 * Owns: the kind every documented field must have when it is present (a string, a number, an
 * array of message objects with a string "role" and "content", ...), for each family of
 * records a tool reads, and the one walk that checks a record against them and names the first
 * field that does not fit ("candidates[1].futures[0].messages[2].role: a number where a string
 * belongs").  Tools check each record before anything reads it, so the accessors of conv.h and
 * the code behind them only ever meet documented shapes: a wrong-shaped field is a clear
 * error, never a libjq assertion and never silently dropped.  Absent fields are the tools'
 * business (a seed without "prompt" is a per-record failure in cl-rollout, for example).
 * Training rows (pairs, dialogues) are train/data's to check: that layer sits below this one.
 * Must not know: any tool, model or metric. */
#ifndef CL_SCHEMA_H
#define CL_SCHEMA_H

#include <jv.h>
#include <stddef.h>

#include "core/err.h"
#include "core/records.h"

typedef enum cl_schema {
    CL_SCHEMA_STATE, /* seed, state, branch and their scores (cl-rollout, cl-judge, cl-reward,
                      * cl-pairs but --from-flat) */
    CL_SCHEMA_ROW,   /* a flat row of the collabllm-multiturn-* datasets (cl-pairs --from-flat) */
} cl_schema;

/* 0 when every documented field of rec (borrowed) that is present has its documented shape;
 * -1 otherwise with why (n bytes) naming the field path and what is wrong.  rec itself must
 * be an object (the record reader already made sure). */
int cl_schema_check(const jv *rec, cl_schema s, char *why, size_t n);

/* Checks the record io just read: 1 when it fits; else it is rejected as malformed input
 * (cl_io_reject: -1 with e = CL_EXIT_DATAERR "file:line: field: what is wrong", or 0 with
 * --skip-bad, the record then counted, reported and copied to --rejects). */
int cl_schema_admit(cl_io *io, cl_rec *rec, cl_schema s, cl_err *e);

#endif
