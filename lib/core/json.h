/* json.h — JSON text checking, libjq value helpers and user jq filters.
 *
 * Owns: the fast syntax/UTF-8 validator that every input line passes through (so a record that
 * is passed on untouched keeps its exact bytes), typed accessors over libjq's jv that make the
 * ownership rule visible in their names, and compiled --where/--map filters.
 *
 * Ownership (libjq): every jv_* call consumes its jv arguments except jv_copy.  Here:
 *   - functions taking `const jv *` BORROW: they copy internally and leave the caller's value;
 *   - functions taking `jv` by value CONSUME it, exactly like libjq;
 *   - returned jv values are owned by the caller.
 * jq 1.6 stores every number as a double: integers beyond 2^53 lose precision when a record is
 * re-serialised.  Records that pass through untouched are written from their original bytes. */
#ifndef CL_JSON_H
#define CL_JSON_H

#include <jv.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"
#include "core/err.h"

/* ---- validation ---------------------------------------------------------------------- */

/* jq 1.6's parser refuses deeper nesting; we refuse it first with a clearer message. */
#define CL_JSON_MAX_DEPTH 256

typedef struct cl_json_check {
    size_t err_off;       /* byte offset of the first problem, when invalid */
    const char *err_what; /* static description, when invalid */
    int is_object;        /* top-level value is an object */
    size_t id_off, id_len;/* span of the top-level "id" value, id_len 0 when absent */
} cl_json_check;

/* Checks that buf[0..len) is exactly one JSON value in valid UTF-8 (surrounding whitespace
 * allowed).  Returns 0 when valid, -1 otherwise with c->err_off / c->err_what set. */
int cl_json_validate(const char *buf, size_t len, cl_json_check *c);

/* ---- values -------------------------------------------------------------------------- */

/* Parses buf[0..len) (must be valid, e.g. checked by cl_json_validate); returns an invalid jv
 * with a (truncated) message on failure. */
jv cl_json_parse(const char *buf, size_t len);

/* ---- deferred strings ------------------------------------------------------------------
 * libjq re-checks the UTF-8 of every string it makes, which costs more than all the rest of
 * parsing.  A tool that passes long strings through and reads them only as bytes (cl-reward's
 * BLEU texts) can keep them out of libjq: cl_json_parse_deferring makes each string value on
 * one of `paths` ("completion", "extracted.document", "candidates[].futures[].extracted.document":
 * words joined by '.', "[]" for any array element; NULL-terminated) whose text is already
 * what jq prints a stand-in, a string of its own whose text stays in buf.  "What jq prints":
 * no DEL byte, and only the escapes jq writes (\" \\ \b \f \n \r \t, \u00xx in lowercase hex for
 * the other controls and DEL), so that documents with quotes and paragraphs qualify.  Print
 * such a value with cl_json_write_deferred, read its strings with cl_json_bytes; to anything
 * else a stand-in reads "(deferred)".  buf must outlive d. */
typedef struct cl_json_stand_in {
    jv s;                 /* the stand-in (a reference; its address names it) */
    const char *text;     /* its JSON text, escapes and all, in the parsed buffer */
    size_t len;
    const char *bytes;    /* the string itself: text when it has no escape, else owned */
    size_t blen;
    char *owned;
} cl_json_stand_in;

typedef struct cl_json_deferred {
    cl_json_stand_in *items;
    size_t n, cap;
} cl_json_deferred;

jv cl_json_parse_deferring(const char *buf, size_t len, const char *const *paths, cl_json_deferred *d);
void cl_json_deferred_free(cl_json_deferred *d);

/* The bytes of string s (borrowed), stand-in or not; NULL when s is not a string. */
const char *cl_json_bytes(const jv *s, const cl_json_deferred *d, size_t *len);

/* v (consumed) with real strings in place of d's stand-ins. */
jv cl_json_undefer(jv v, const cl_json_deferred *d);

/* Compact one-line JSON of v (borrowed), byte for byte what jq 1.6's jv_dump_string(v, 0)
 * writes: appended to b, or as a malloc'd string (*len set if non-NULL; NULL when out of
 * memory). */
void cl_json_write(cl_buf *b, const jv *v);
void cl_json_write_deferred(cl_buf *b, const jv *v, const cl_json_deferred *d); /* d: see above */
char *cl_json_dump(const jv *v, size_t *len);

/* v (consumed) itself when it is a string, else its compact JSON as a string: the text of an
 * id or of a jq error value. */
jv cl_json_text(jv v);

/* Borrowing accessors on an object.  Missing keys and kind mismatches give the fallback. */
const char *cl_json_str(const jv *obj, const char *key);      /* NULL if absent/not string;
                                                               * valid while obj lives */
double cl_json_num(const jv *obj, const char *key, double fallback);
int cl_json_bool(const jv *obj, const char *key, int fallback);
int cl_json_has(const jv *obj, const char *key);
jv cl_json_get(const jv *obj, const char *key);               /* owned; jv_invalid() if absent */
jv_kind cl_json_kind(const jv *obj, const char *key);         /* JV_KIND_INVALID if absent */

/* Consuming setters (obj consumed, new obj returned), for readable record building. */
jv cl_json_set(jv obj, const char *key, jv value);
jv cl_json_set_str(jv obj, const char *key, const char *s);
jv cl_json_set_num(jv obj, const char *key, double x);

/* {"role": role, "content": content} */
jv cl_json_message(const char *role, const char *content);

/* 64-bit FNV-1a finished with splitmix64's avalanche, for shard keys and derived ids. */
uint64_t cl_hash64(const void *data, size_t len, uint64_t seed);

/* ---- user filters ------------------------------------------------------------------- */

typedef struct cl_filter cl_filter;

/* Compiles a jq program once.  NULL with e filled on a compile error (message includes jq's). */
cl_filter *cl_filter_new(const char *program, const char *what, cl_err *e);
void cl_filter_free(cl_filter *f);

/* Runs f on in (consumed).  Outputs are appended to *out (an array, consumed and returned).
 * Returns 0, or -1 with e set on a runtime error (the record's outputs so far are discarded). */
int cl_filter_run(cl_filter *f, jv in, jv *out, cl_err *e);

/* First output of f on in (consumed) is truthy (not false/null).  -1 on error. */
int cl_filter_test(cl_filter *f, jv in, cl_err *e);

#endif
