/* lenient_json.h — the one reader of model outputs that are meant to be JSON.
 *
 * Owns: finding a JSON object inside free model text and parsing it with the tolerance that
 * model outputs need (the official CollabLLM reader accepts much of this; we accept more):
 *   - surrounding prose and Markdown code fences (the first object that parses wins, so
 *     "Sure! {\"a\": 1} Hope this helps" and ```json fences work);
 *   - strings in "double", 'single', """triple""" or '''triple''' quotes; triple-quoted
 *     content is verbatim; raw newlines and tabs inside any string; unknown escapes kept;
 *   - bare identifier keys (response: "..."), trailing commas, Python True/False/None and
 *     true/false/null in any case.
 * Unlike the official reader we never turn a string that looks like a number into a number
 * (a user message "42" stays a string): callers that want a number read it with
 * cl_lenient_num, which accepts both.
 * Must not know: models, prompts or records. */
#ifndef CL_LENIENT_JSON_H
#define CL_LENIENT_JSON_H

#include <jv.h>
#include <stddef.h>

/* The first JSON object found in text[0..len) that parses leniently, as an owned jv object;
 * jv_invalid_with_msg (a short reason) when the text holds none. */
jv cl_lenient_json(const char *text, size_t len);

/* Reads obj.key (obj borrowed) as a number: a JSON number, or a string holding one
 * ("0.5", " 3 ").  Returns 0 with *out set, -1 when absent or not numeric. */
int cl_lenient_num(const jv *obj, const char *key, double *out);

#endif
