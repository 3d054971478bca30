/* rm.h — the reward-model metric (rm_score) as a metric program: units in, scores out.
 *
 * Owns: reading the units of cl-reward's --metric cmd: protocol (one JSON object a line whose
 * "messages" is the whole conversation the unit stands for), asking a reward model through
 * llm/llm.h for each (every unit that has arrived, at once), and answering every line, in
 * order, with {"rm_score": x}, x the number the model's reply holds, or {"error": why}.
 * Must not know: records, batches or how the scores are merged (collab/score does that). */
#ifndef CL_RM_H
#define CL_RM_H

#include <stdio.h>

#include "core/err.h"
#include "llm/llm.h"

/* Serves units read from fd until its end, answering on out (flushed after each group of
 * answers).  The role's model gets each unit's messages as role and content only; its reply
 * must be a number and nothing else (spaces around it are allowed).  0 at the end of the
 * input; -1 with e set when reading or writing fails. */
int cl_rm_serve(cl_llm *llm, int role, int fd, FILE *out, cl_err *e);

#endif
