/* schema.c — record shapes as tables; see schema.h.
 *
 * A shape lists the kinds a value may have; an object shape also lists its documented fields
 * (checked when present, or required), an array shape the shape of every element.  The tables
 * follow cl-records(5) line by line, so a field added there is one line here. */
#include "collab/schema.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#define K(kind) (1u << (kind))
#define STR K(JV_KIND_STRING)
#define NUM K(JV_KIND_NUMBER)
#define BOOL (K(JV_KIND_TRUE) | K(JV_KIND_FALSE))
#define NUL K(JV_KIND_NULL)
#define OBJ K(JV_KIND_OBJECT)
#define ARR K(JV_KIND_ARRAY)

typedef struct shape shape;
typedef struct field {
    const char *key;
    const shape *shape;
    int required;
} field;
struct shape {
    unsigned kinds;
    const field *fields;  /* OBJ: documented members, {NULL} ended; at most 32 (a bit each) */
    const shape *elem;    /* ARR: every element */
};

static const shape s_str = {STR, NULL, NULL}, s_num = {NUM, NULL, NULL}, s_bool = {BOOL, NULL, NULL},
                   s_obj = {OBJ, NULL, NULL}, s_id = {STR | NUM, NULL, NULL},
                   s_reference = {STR | OBJ, NULL, NULL}, s_metadata = {OBJ | NUL, NULL, NULL};

/* {"role", "content"} (and the "usage" cl-rollout adds). */
static const field f_message[] = {{"role", &s_str, 1}, {"content", &s_str, 1}, {"usage", &s_obj, 0}, {NULL, NULL, 0}};
static const shape s_message = {OBJ, f_message, NULL};
static const shape s_messages = {ARR, NULL, &s_message};

static const field f_future[] = {
    {"messages", &s_messages, 0}, {"terminated", &s_bool, 0}, {"scores", &s_obj, 0},
    {"R", &s_num, 0},             {"extracted", &s_obj, 0},   {"judge", &s_obj, 0},
    {NULL, NULL, 0}};
static const shape s_future = {OBJ, f_future, NULL};
static const shape s_futures = {ARR, NULL, &s_future};

static const field f_candidate[] = {
    {"id", &s_str, 0},    {"content", &s_str, 0}, {"source", &s_str, 0}, {"mode", &s_str, 0},
    {"usage", &s_obj, 0}, {"futures", &s_futures, 0}, {"mr", &s_obj, 0}, {"scores", &s_obj, 0},
    {NULL, NULL, 0}};
static const shape s_candidate = {OBJ, f_candidate, NULL};
static const shape s_candidates = {ARR, NULL, &s_candidate};
static const shape s_picks = {ARR, NULL, &s_obj};

/* seed, state, branch, scores, usage and error of cl-records(5). */
static const field f_state[] = {
    {"id", &s_id, 0},
    {"task", &s_str, 0},
    {"task_desc", &s_str, 0},
    {"prompt", &s_str, 0},
    {"completion", &s_reference, 0},
    {"metadata", &s_metadata, 0},
    {"split", &s_str, 0},
    {"single_turn_prompt", &s_str, 0},
    {"single_turn_completion", &s_reference, 0},
    {"single_turn_metadata", &s_metadata, 0},
    {"messages", &s_messages, 0},
    {"turn", &s_num, 0},
    {"done", &s_bool, 0},
    {"done_reason", &s_str, 0},
    {"candidates", &s_candidates, 0},
    {"scores", &s_obj, 0},
    {"extracted", &s_obj, 0},
    {"judge", &s_obj, 0},
    {"judge_usage", &s_obj, 0},
    {"picks", &s_picks, 0},
    {"usage", &s_obj, 0},
    {"error", &s_obj, 0},
    {NULL, NULL, 0}};
static const shape s_state = {OBJ, f_state, NULL};

/* The flat rows of the published datasets (cl-pairs --to-flat writes them). */
static const shape s_sessions = {ARR, NULL, &s_messages};
static const field f_row[] = {
    {"prompt", &s_messages, 1},
    {"completion", &s_str, 1},
    {"conv_id", &s_id, 0},
    {"turn_id", &s_num, 0},
    {"score", &s_num, 0},
    {"sessions", &s_sessions, 0},
    {"rewards", &s_metadata, 0},
    {"single_turn_prompt", &s_str, 0},
    {"single_turn_completion", &s_reference, 0},
    {"single_turn_metadata", &s_metadata, 0},
    {"state", &s_state, 0},
    {"candidate", &s_candidate, 0},
    {NULL, NULL, 0}};
static const shape s_row = {OBJ, f_row, NULL};

static const char *kind_name(jv_kind k)
{
    switch (k) {
    case JV_KIND_STRING: return "a string";
    case JV_KIND_NUMBER: return "a number";
    case JV_KIND_TRUE:
    case JV_KIND_FALSE: return "a boolean";
    case JV_KIND_NULL: return "null";
    case JV_KIND_OBJECT: return "an object";
    case JV_KIND_ARRAY: return "an array";
    default: return "nothing";
    }
}

/* "a string or an object": what the kinds allow, for messages. */
static void kinds_text(unsigned kinds, char *buf, size_t n)
{
    static const jv_kind order[] = {JV_KIND_STRING, JV_KIND_NUMBER, JV_KIND_TRUE, JV_KIND_OBJECT,
                                    JV_KIND_ARRAY, JV_KIND_NULL};
    size_t at = 0;
    buf[0] = 0;
    for (size_t i = 0; i < sizeof order / sizeof *order; i++)
        if (kinds & K(order[i])) {
            int w = snprintf(buf + at, n - at, "%s%s", at ? " or " : "", kind_name(order[i]));
            if (w < 0 || (size_t)w >= n - at)
                return;
            at += (size_t)w;
        }
}

/* The walk keeps its path as steps (a key, or an index when key is NULL) and spells it out only
 * when something does not fit: a record that fits costs no formatting. */
typedef struct step {
    const char *key;
    int index;
} step;

typedef struct walk {
    step steps[32];
    int depth;
    char *why;
    size_t n;
} walk;

static int wrong(walk *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int wrong(walk *w, const char *fmt, ...)
{
    char path[256] = "", what[160];
    size_t at = 0;
    for (int i = 0; i < w->depth && i < 32 && at < sizeof path; i++) {
        const step *st = &w->steps[i];
        int k = st->key ? snprintf(path + at, sizeof path - at, "%s%s", at ? "." : "", st->key)
                        : snprintf(path + at, sizeof path - at, "[%d]", st->index);
        at = k < 0 ? sizeof path : at + (size_t)k;
    }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    snprintf(w->why, w->n, "%s: %s", path[0] ? path : "the record", what);
    return -1;
}

static int check(walk *w, const jv *v, const shape *s);

/* Checks v under the step; deeper than the path can hold, the walk still checks and names
 * the deepest step it kept. */
static int check_at(walk *w, const char *key, int index, const jv *v, const shape *s)
{
    if (w->depth < 32)
        w->steps[w->depth] = (step){key, index};
    w->depth++;
    int rc = check(w, v, s);
    w->depth--;
    return rc;
}

static int check(walk *w, const jv *v, const shape *s)
{
    jv_kind k = jv_get_kind(*v);
    if (!(s->kinds & K(k))) {
        char want[96];
        kinds_text(s->kinds, want, sizeof want);
        return wrong(w, "%s where %s belongs", kind_name(k), want);
    }
    if (k == JV_KIND_OBJECT && s->fields) {
        /* One pass over the members the record has (no key strings made for lookups). */
        unsigned seen = 0;
        for (int it = jv_object_iter(*v); jv_object_iter_valid(*v, it); it = jv_object_iter_next(*v, it)) {
            jv key = jv_object_iter_key(*v, it);
            const char *name = jv_string_value(key);
            int rc = 0;
            for (const field *f = s->fields; f->key; f++)
                if (f->key[0] == name[0] && !strcmp(f->key, name)) {
                    seen |= 1u << (f - s->fields);
                    jv m = jv_object_iter_value(*v, it);
                    rc = check_at(w, f->key, 0, &m, f->shape);
                    jv_free(m);
                    break;
                }
            jv_free(key);
            if (rc < 0)
                return -1;
        }
        for (const field *f = s->fields; f->key; f++)
            if (f->required && !(seen & 1u << (f - s->fields))) {
                w->steps[w->depth < 32 ? w->depth : 31] = (step){f->key, 0};
                w->depth++;
                wrong(w, "missing");
                w->depth--;
                return -1;
            }
    } else if (k == JV_KIND_ARRAY && s->elem) {
        int n = jv_array_length(jv_copy(*v));
        for (int i = 0; i < n; i++) {
            jv el = jv_array_get(jv_copy(*v), i);
            int rc = check_at(w, NULL, i, &el, s->elem);
            jv_free(el);
            if (rc < 0)
                return -1;
        }
    }
    return 0;
}

int cl_schema_check(const jv *rec, cl_schema s, char *why, size_t n)
{
    walk w = {.why = why, .n = n, .depth = 0};
    return check(&w, rec, s == CL_SCHEMA_ROW ? &s_row : &s_state);
}

int cl_schema_admit(cl_io *io, cl_rec *rec, cl_schema s, cl_err *e)
{
    char why[512];
    if (cl_schema_check(cl_rec_value(rec), s, why, sizeof why) == 0)
        return 1;
    return cl_io_reject(io, rec, why, e) < 0 ? -1 : 0;
}
