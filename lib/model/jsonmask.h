/* jsonmask.h — constrained decoding to JSON: which tokens may come next so that a reply is a
 * JSON document of a given shape.
 *
 * Owns: compiling an OpenAI `response_format` ({"type":"json_object"}, or {"type":"json_schema",
 * "json_schema":{"schema":{...}}} with the JSON Schema subset below) into a schema; the
 * byte-level pushdown automaton (cl_jstate) that accepts exactly the documents the schema
 * allows and never reaches a state without a completion; and, over a tokenizer's vocabulary,
 * the set of tokens whose bytes can continue a document from a state (cl_jmask), memoised per
 * automaton state, since replies revisit a few states (inside a string, after a comma) over and
 * over.  Inside a free string most tokens are plain text (no quote, backslash or control byte,
 * whole UTF-8 characters) that leave the state as it was: the automaton marks them once per
 * vocabulary and a mask takes them without running it again; a token whose first byte cannot
 * come next is skipped without running it at all.
 *
 * Schema subset: "type" (one of object, array, string, number, integer, boolean, null, or an
 * array of them), "properties", "required", "additionalProperties": false (an object's keys are
 * always its declared properties, each at most once, in any order, as OpenAI's strict mode),
 * "items", "enum" (strings), and the annotations "title", "description", "examples", "$schema".
 * {} is any value.  Any other keyword is an error naming its path, never ignored.  The root is
 * an object.  Keys and enum values must be spelled as JSON's shortest escapes write them.
 * Whitespace between tokens is nothing, one space, or a newline and an indent of at most
 * CL_JMASK_WS - 1 spaces or tabs (compact and pretty-printed JSON both fit), and numbers are at
 * most 32 bytes, so that a runaway model cannot fill its budget with blanks or digits.
 * Must not know: the engine, sampling, chat templates, HTTP. */
#ifndef CL_MODEL_JSONMASK_H
#define CL_MODEL_JSONMASK_H

#include <jv.h>
#include <stddef.h>
#include <stdint.h>

#include "core/err.h"
#include "model/tokenizer.h"

#define CL_JMASK_DEPTH 32
#define CL_JMASK_WS 16

typedef struct cl_jschema cl_jschema;

/* Compiles response_format (borrowed).  *out is NULL for {"type":"text"} (no constraint).
 * -1 with e set (CL_EXIT_DATAERR, the offending path in the message) for anything else that is
 * not a supported format or schema. */
int cl_jschema_compile(const jv *response_format, cl_jschema **out, cl_err *e);
void cl_jschema_free(cl_jschema *s);

/* The automaton's state: plain data without padding, so that equal states are bytewise equal
 * up to the open frames (the mask cache compares them so). */
typedef struct cl_jstate {
    uint64_t cand;       /* properties or enum values the bytes so far still match */
    uint32_t pos;        /* bytes of a key or enum value matched so far */
    int32_t depth;       /* open containers */
    int16_t lnode;       /* schema node of the string or number, or the literal, being read */
    uint16_t hex;        /* \u digits so far */
    uint16_t ws, numlen; /* whitespace bytes in the current run; bytes of the number */
    uint8_t done;        /* the root object closed */
    uint8_t lex, sub;    /* lexeme in progress (string, number, literal) and its phase */
    uint8_t need, lo, hi; /* UTF-8 continuation bytes still due, the range of the next one */
    uint8_t low_due;     /* a \uD800-\uDBFF escape wants its low half next */
    uint8_t is_key;
    struct cl_jframe {
        uint64_t seen;   /* properties written */
        int16_t node, prop;
        uint16_t kind, phase;
    } f[CL_JMASK_DEPTH];
} cl_jstate;

/* The state before the first byte. */
void cl_jstate_init(cl_jstate *st);
/* Feeds bytes; 0, or -1 when they cannot continue a valid document (*st then undefined). */
int cl_jstate_feed(const cl_jschema *s, cl_jstate *st, const char *bytes, size_t n);

/* Token masks over a vocabulary. */
typedef struct cl_jmask cl_jmask;

/* A mask for schema s (owned from here on) over the tokens of t (ids 0..vocab-1; ids the
 * tokenizer does not use and special tokens are never allowed) where the ids end[0..nend) end
 * the reply: they are allowed exactly when the document is complete, and nothing else is then.
 * NULL with e set when out of memory or nend is 0. */
cl_jmask *cl_jmask_new(cl_jschema *s, const cl_tokenizer *t, int vocab, const int *end, int nend, cl_err *e);
void cl_jmask_free(cl_jmask *m);

/* Budgets: a reply that may still sample `budget` tokens (this one included; < 0: no limit)
 * must be able to close its document in them, counting one token a byte for what remains
 * (every byte is a token of a byte-level vocabulary).  Near the end of the budget, tokens that
 * leave more than that to write are not allowed, so a document that fits is finished (strings
 * are closed early, optional members left out) instead of cut off.  A budget already too small
 * for the shortest completion constrains nothing more. */

/* Whether tok may come next in st (no allocation, no cache). */
int cl_jmask_allows(const cl_jmask *m, const cl_jstate *st, int tok, int budget);
/* Every token that may come next in st: bit t of word t / 64, [ (vocab + 63) / 64 ] words,
 * valid until the next call.  Masks are cached per state; a budget near its end filters the
 * cached mask further (not cached). */
const uint64_t *cl_jmask_bits(cl_jmask *m, const cl_jstate *st, int budget);
/* Advances st over tok; -1 when tok may not come next. */
int cl_jmask_advance(const cl_jmask *m, cl_jstate *st, int tok);
/* Masks computed and masks served from the cache so far (for benchmarks). */
void cl_jmask_stats(const cl_jmask *m, long *computed, long *cached);

#endif
