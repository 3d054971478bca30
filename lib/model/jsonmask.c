/* jsonmask.c — the JSON schema automaton and token masks; see jsonmask.h. */
#include "model/jsonmask.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/json.h"

#define MAX_PROPS 64
#define MAX_NODES 512
#define MAX_NUM 32
#define CACHE_SLOTS 256 /* masks kept; when full the cache starts over (it only saves time) */

enum { T_OBJECT = 1, T_ARRAY = 2, T_STRING = 4, T_NUMBER = 8, T_INTEGER = 16, T_BOOLEAN = 32, T_NULL = 64,
       T_ANY = 127 };
static const char *const type_names[] = {"object", "array", "string", "number", "integer", "boolean", "null"};

/* A property name or enum value as its JSON string body (quotes left out). */
typedef struct word {
    char *s;
    size_t n;
} word;

typedef struct node {
    unsigned types;
    int any_keys;        /* keys free, values any (json_object, {} and untyped objects) */
    int nprops;
    word *props;
    int *pnode;
    uint64_t required;
    int items;           /* node of array items */
    int nenum;           /* > 0: the string must be one of these */
    word *enums;
    int minval;          /* bytes of the shortest value */
    int *pcost;          /* bytes of the shortest "key":value member of each property */
} node;

struct cl_jschema {
    node *n;
    int nn;
};

_Static_assert(offsetof(cl_jstate, f) == 32 && sizeof(struct cl_jframe) == 16, "cl_jstate has no padding");

enum { K_OBJ = 1, K_ARR };
enum { O_FIRST = 1, O_KEY, O_COLON, O_VALUE, O_NEXT, A_FIRST, A_VALUE, A_NEXT };
enum { L_NONE = 0, L_STR, L_NUM, L_LIT };
enum { S_CHAR = 0, S_ESC, S_HEX }; /* S_HEX + k: k digits of \u read */
enum { N_MINUS = 1, N_ZERO, N_INT, N_DOT, N_FRAC, N_E, N_ESIGN, N_EXP };
static const char *const literals[] = {"true", "false", "null"};

#define ANY_NODE 0

/* ---- compiling ------------------------------------------------------------------------ */

static int word_of(const char *s, size_t n, word *w)
{
    char *o = malloc(6 * n + 1);
    size_t k = 0;
    if (!o) return -1;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        const char *esc = c == '"' ? "\\\"" : c == '\\' ? "\\\\" : c == '\n' ? "\\n" : c == '\r' ? "\\r"
                        : c == '\t' ? "\\t" : c == '\b' ? "\\b" : c == '\f' ? "\\f" : NULL;
        if (esc)
            k += (size_t)sprintf(o + k, "%s", esc);
        else if (c < 0x20)
            k += (size_t)sprintf(o + k, "\\u%04x", c);
        else
            o[k++] = (char)c;
    }
    o[k] = 0;
    *w = (word){o, k};
    return 0;
}

static int new_node(cl_jschema *s, unsigned types, const char *path, cl_err *e)
{
    if (s->nn == MAX_NODES) return cl_err_set(e, CL_EXIT_DATAERR, "%s: the schema has more than %d parts", path, MAX_NODES);
    s->n[s->nn] = (node){.types = types, .items = ANY_NODE, .any_keys = 1};
    return s->nn++;
}

static int compile_node(cl_jschema *s, const jv *v, const char *path, int depth, cl_err *e);

static int type_bits(const jv *t, const char *path, unsigned *out, cl_err *e)
{
    jv_kind k = jv_get_kind(*t);
    int n = k == JV_KIND_ARRAY ? jv_array_length(jv_copy(*t)) : 1;
    *out = 0;
    for (int i = 0; i < n; i++) {
        jv x = k == JV_KIND_ARRAY ? jv_array_get(jv_copy(*t), i) : jv_copy(*t);
        int found = -1;
        for (int j = 0; j < 7 && jv_get_kind(x) == JV_KIND_STRING; j++)
            if (strcmp(jv_string_value(x), type_names[j]) == 0) found = j;
        jv_free(x);
        if (found < 0)
            return cl_err_set(e, CL_EXIT_DATAERR, "%s.type: want one of object, array, string, number, integer, "
                              "boolean, null (or an array of them)", path);
        *out |= 1u << found;
    }
    if (!*out) return cl_err_set(e, CL_EXIT_DATAERR, "%s.type: an empty list of types", path);
    return 0;
}

static int compile_props(cl_jschema *s, int id, const jv *props, const jv *req, const char *path, int depth,
                         cl_err *e)
{
    int n = jv_object_length(jv_copy(*props));
    if (n > MAX_PROPS) return cl_err_set(e, CL_EXIT_DATAERR, "%s.properties: more than %d properties", path, MAX_PROPS);
    node *nd = &s->n[id];
    nd->any_keys = 0;
    nd->props = calloc((size_t)n + 1, sizeof *nd->props);
    nd->pnode = calloc((size_t)n + 1, sizeof *nd->pnode);
    if (!nd->props || !nd->pnode) return cl_err_set(e, CL_EXIT_SOFTWARE, "out of memory");
    int i = 0, rc = 0;
    jv_object_foreach(*props, k, sub) {
        char sp[512];
        snprintf(sp, sizeof sp, "%s.properties.%s", path, jv_string_value(k));
        int child = rc ? -1 : compile_node(s, &sub, sp, depth + 1, e);
        nd = &s->n[id];
        if (child >= 0 && word_of(jv_string_value(k), (size_t)jv_string_length_bytes(jv_copy(k)), &nd->props[i]) == 0) {
            nd->pnode[i] = child;
            nd->nprops = ++i;
        } else if (!rc) {
            rc = child < 0 ? -1 : cl_err_set(e, CL_EXIT_SOFTWARE, "out of memory");
        }
        jv_free(k);
        jv_free(sub);
    }
    if (rc) return rc;
    int nr = jv_get_kind(*req) == JV_KIND_ARRAY ? jv_array_length(jv_copy(*req)) : 0;
    if (jv_is_valid(*req) && jv_get_kind(*req) != JV_KIND_ARRAY)
        return cl_err_set(e, CL_EXIT_DATAERR, "%s.required: want an array of property names", path);
    for (int r = 0; r < nr; r++) {
        jv x = jv_array_get(jv_copy(*req), r);
        int found = -1;
        if (jv_get_kind(x) == JV_KIND_STRING) {
            word w;
            if (word_of(jv_string_value(x), (size_t)jv_string_length_bytes(jv_copy(x)), &w) == 0) {
                for (int j = 0; j < nd->nprops; j++)
                    if (nd->props[j].n == w.n && memcmp(nd->props[j].s, w.s, w.n) == 0) found = j;
                free(w.s);
            }
        }
        jv_free(x);
        if (found < 0)
            return cl_err_set(e, CL_EXIT_DATAERR, "%s.required[%d]: not one of the declared properties", path, r);
        nd->required |= 1ull << found;
    }
    return 0;
}

static int compile_enum(cl_jschema *s, int id, const jv *en, const char *path, cl_err *e)
{
    int n = jv_get_kind(*en) == JV_KIND_ARRAY ? jv_array_length(jv_copy(*en)) : 0;
    if (n < 1 || n > 64)
        return cl_err_set(e, CL_EXIT_DATAERR, "%s.enum: want an array of 1 to 64 strings", path);
    node *nd = &s->n[id];
    if (nd->types != T_STRING)
        return cl_err_set(e, CL_EXIT_DATAERR, "%s.enum: only an enum of strings (type string) is supported", path);
    if (!(nd->enums = calloc((size_t)n, sizeof *nd->enums))) return cl_err_set(e, CL_EXIT_SOFTWARE, "out of memory");
    for (int i = 0; i < n; i++) {
        jv x = jv_array_get(jv_copy(*en), i);
        int ok = jv_get_kind(x) == JV_KIND_STRING;
        if (ok && word_of(jv_string_value(x), (size_t)jv_string_length_bytes(jv_copy(x)), &nd->enums[i]))
            ok = -1;
        jv_free(x);
        if (ok <= 0)
            return ok < 0 ? cl_err_set(e, CL_EXIT_SOFTWARE, "out of memory")
                          : cl_err_set(e, CL_EXIT_DATAERR, "%s.enum[%d]: only strings are supported", path, i);
        nd->nenum = i + 1;
    }
    return 0;
}

static int compile_node(cl_jschema *s, const jv *v, const char *path, int depth, cl_err *e)
{
    static const char *const known[] = {"type", "properties", "required", "additionalProperties", "items", "enum",
                                        "title", "description", "examples", "$schema"};
    if (jv_get_kind(*v) != JV_KIND_OBJECT) return cl_err_set(e, CL_EXIT_DATAERR, "%s: a schema must be an object", path);
    if (depth >= CL_JMASK_DEPTH / 2)
        return cl_err_set(e, CL_EXIT_DATAERR, "%s: schemas nest at most %d deep", path, CL_JMASK_DEPTH / 2);
    int rc = 0;
    jv_object_foreach(*v, k, x) {
        size_t i = 0;
        while (i < sizeof known / sizeof *known && strcmp(known[i], jv_string_value(k))) i++;
        if (!rc && i == sizeof known / sizeof *known)
            rc = cl_err_set(e, CL_EXIT_DATAERR, "%s: unsupported JSON Schema keyword \"%s\" (supported: type, "
                            "properties, required, additionalProperties: false, items, enum of strings)", path,
                            jv_string_value(k));
        if (!rc && i == 3 && jv_get_kind(x) != JV_KIND_FALSE)
            rc = cl_err_set(e, CL_EXIT_DATAERR, "%s.additionalProperties: only false is supported (objects hold "
                            "their declared properties)", path);
        jv_free(k);
        jv_free(x);
    }
    if (rc) return rc;
    jv t = cl_json_get(v, "type"), props = cl_json_get(v, "properties"), req = cl_json_get(v, "required");
    jv items = cl_json_get(v, "items"), en = cl_json_get(v, "enum");
    unsigned types = T_ANY;
    if (jv_is_valid(t))
        rc = type_bits(&t, path, &types, e);
    else if (jv_is_valid(en))
        types = T_STRING;
    else if (jv_is_valid(props) || jv_is_valid(req))
        types = T_OBJECT;
    else if (jv_is_valid(items))
        types = T_ARRAY;
    int id = rc ? -1 : new_node(s, types, path, e);
    if (id >= 0 && jv_is_valid(props) && jv_get_kind(props) != JV_KIND_OBJECT)
        id = cl_err_set(e, CL_EXIT_DATAERR, "%s.properties: want an object of schemas", path);
    if (id >= 0 && (jv_is_valid(props) || jv_is_valid(req))) {
        jv none = jv_object();
        if (!(types & T_OBJECT))
            id = cl_err_set(e, CL_EXIT_DATAERR, "%s: properties on a schema whose type has no object", path);
        else if (compile_props(s, id, jv_is_valid(props) ? &props : &none, &req, path, depth, e))
            id = -1;
        jv_free(none);
    }
    if (id >= 0 && jv_is_valid(items)) {
        char sp[512];
        snprintf(sp, sizeof sp, "%s.items", path);
        int child = compile_node(s, &items, sp, depth + 1, e);
        if (child < 0)
            id = -1;
        else
            s->n[id].items = child;
    }
    if (id >= 0 && jv_is_valid(en) && compile_enum(s, id, &en, path, e)) id = -1;
    jv_free(t);
    jv_free(props);
    jv_free(req);
    jv_free(items);
    jv_free(en);
    return id;
}

/* Bytes of the required members not yet in seen, with their commas ("first": none written). */
static int required_cost(const node *nd, uint64_t seen, int first)
{
    int c = 0, n = 0;
    for (uint64_t m = nd->required & ~seen; m; m &= m - 1, n++) c += nd->pcost[__builtin_ctzll(m)];
    return n ? c + n - first : 0;
}

static int shortest(cl_jschema *s, int id)
{
    node *nd = &s->n[id];
    unsigned t = nd->types;
    int best = 1 << 20;
    if (nd->nprops && !(nd->pcost = malloc(sizeof *nd->pcost * (size_t)nd->nprops))) return -1;
    for (int i = 0; i < nd->nprops; i++) nd->pcost[i] = (int)nd->props[i].n + 3 + s->n[nd->pnode[i]].minval;
    if (t & (T_NUMBER | T_INTEGER)) best = 1;
    if ((t & T_STRING) && !nd->nenum && best > 2) best = 2;
    for (int i = 0; (t & T_STRING) && i < nd->nenum; i++)
        if ((int)nd->enums[i].n + 2 < best) best = (int)nd->enums[i].n + 2;
    if ((t & T_ARRAY) && best > 2) best = 2;
    if ((t & (T_BOOLEAN | T_NULL)) && best > 4) best = 4;
    if ((t & T_OBJECT) && 2 + required_cost(nd, 0, 1) < best) best = 2 + required_cost(nd, 0, 1);
    nd->minval = best;
    return 0;
}

void cl_jschema_free(cl_jschema *s)
{
    if (!s) return;
    for (int i = 0; i < s->nn; i++) {
        for (int j = 0; j < s->n[i].nprops; j++) free(s->n[i].props[j].s);
        for (int j = 0; j < s->n[i].nenum; j++) free(s->n[i].enums[j].s);
        free(s->n[i].props);
        free(s->n[i].pnode);
        free(s->n[i].enums);
        free(s->n[i].pcost);
    }
    free(s->n);
    free(s);
}

int cl_jschema_compile(const jv *rf, cl_jschema **out, cl_err *e)
{
    *out = NULL;
    const char *type = jv_get_kind(*rf) == JV_KIND_OBJECT ? cl_json_str(rf, "type") : NULL;
    if (!type)
        return cl_err_set(e, CL_EXIT_DATAERR, "response_format: want an object with \"type\": \"json_object\", "
                          "\"json_schema\" or \"text\"");
    if (strcmp(type, "text") == 0) return 0;
    if (strcmp(type, "json_object") && strcmp(type, "json_schema"))
        return cl_err_set(e, CL_EXIT_DATAERR, "response_format.type: \"%s\" is not json_object, json_schema or text",
                          type);
    cl_jschema *s = calloc(1, sizeof *s);
    if (!s || !(s->n = calloc(MAX_NODES, sizeof *s->n))) {
        free(s);
        return cl_err_set(e, CL_EXIT_SOFTWARE, "out of memory");
    }
    new_node(s, T_ANY, "", e); /* ANY_NODE */
    int root;
    if (strcmp(type, "json_object") == 0) {
        root = new_node(s, T_OBJECT, "", e);
    } else {
        jv js = cl_json_get(rf, "json_schema");
        jv sc = jv_get_kind(js) == JV_KIND_OBJECT ? cl_json_get(&js, "schema") : jv_invalid();
        if (!jv_is_valid(sc))
            root = cl_err_set(e, CL_EXIT_DATAERR, "response_format.json_schema.schema: missing (want "
                              "{\"type\":\"json_schema\",\"json_schema\":{\"name\":...,\"schema\":{...}}})");
        else
            root = compile_node(s, &sc, "response_format.json_schema.schema", 0, e);
        if (root >= 0 && s->n[root].types != T_OBJECT)
            root = cl_err_set(e, CL_EXIT_DATAERR, "response_format.json_schema.schema: the root must be of type "
                              "object");
        jv_free(sc);
        jv_free(js);
    }
    if (root < 0) {
        cl_jschema_free(s);
        return -1;
    }
    /* the root is node 1 (json_object's, or the schema's first node); children come after
     * their parents, so the shortest values are known from the last node back */
    for (int i = s->nn - 1; i >= 0; i--)
        if (shortest(s, i)) {
            cl_jschema_free(s);
            return cl_err_set(e, CL_EXIT_SOFTWARE, "out of memory");
        }
    *out = s;
    return 0;
}

/* ---- the automaton -------------------------------------------------------------------- */

void cl_jstate_init(cl_jstate *st)
{
    memset(st, 0, sizeof *st);
}

static int ws(int c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/* A value is complete: the container above wants a separator, or the document is done. */
static void value_done(cl_jstate *st)
{
    if (st->depth == 0)
        st->done = 1;
    else
        st->f[st->depth - 1].phase = st->f[st->depth - 1].kind == K_OBJ ? O_NEXT : A_NEXT;
}

static void end_lexeme(cl_jstate *st)
{
    st->lex = st->sub = st->need = st->lo = st->hi = st->low_due = st->is_key = st->numlen = 0;
    st->lnode = 0;
    st->hex = 0;
    st->pos = 0;
    st->cand = 0;
}

static uint64_t unseen(const node *nd, const struct cl_jframe *f)
{
    uint64_t all = nd->nprops == 64 ? ~0ull : (1ull << nd->nprops) - 1;
    return all & ~f->seen;
}

/* A value of node id starts with byte c. */
static int value_start(const cl_jschema *s, cl_jstate *st, int id, int c)
{
    const node *nd = &s->n[id];
    unsigned t = nd->types;
    if ((c == '{' || c == '[') && (t & (c == '{' ? T_OBJECT : T_ARRAY))) {
        if (st->depth == CL_JMASK_DEPTH) return -1;
        struct cl_jframe *f = &st->f[st->depth++];
        memset(f, 0, sizeof *f);
        f->node = (int16_t)id;
        f->prop = -1;
        f->kind = c == '{' ? K_OBJ : K_ARR;
        f->phase = c == '{' ? O_FIRST : A_FIRST;
        return 0;
    }
    if (c == '"' && (t & T_STRING)) {
        st->lex = L_STR;
        st->lnode = (int16_t)id;
        st->cand = nd->nenum ? (nd->nenum == 64 ? ~0ull : (1ull << nd->nenum) - 1) : 0;
        return 0;
    }
    if ((c == '-' || (c >= '0' && c <= '9')) && (t & (T_NUMBER | T_INTEGER))) {
        st->lex = L_NUM;
        st->lnode = (int16_t)id;
        st->sub = c == '-' ? N_MINUS : c == '0' ? N_ZERO : N_INT;
        st->numlen = 1;
        return 0;
    }
    for (int i = 0; i < 3; i++)
        if (c == literals[i][0] && (t & (i < 2 ? T_BOOLEAN : T_NULL))) {
            st->lex = L_LIT;
            st->lnode = (int16_t)i;
            st->pos = 1;
            return 0;
        }
    return -1;
}

static int hexval(int c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

/* A key or enum string whose candidates are words: byte c appended. */
static int match_byte(const word *w, cl_jstate *st, int c)
{
    uint64_t keep = 0;
    for (uint64_t m = st->cand; m; m &= m - 1) {
        int i = __builtin_ctzll(m);
        if (w[i].n > st->pos && (unsigned char)w[i].s[st->pos] == c) keep |= 1ull << i;
    }
    st->cand = keep;
    st->pos++;
    return keep ? 0 : -1;
}

/* The closing quote of a string. */
static int string_end(const cl_jschema *s, cl_jstate *st)
{
    const word *w = NULL;
    struct cl_jframe *f = st->depth ? &st->f[st->depth - 1] : NULL;
    const node *nd = &s->n[st->lnode];
    if (st->is_key && f && !s->n[f->node].any_keys)
        w = s->n[f->node].props;
    else if (!st->is_key && nd->nenum)
        w = nd->enums;
    int which = -1;
    for (uint64_t m = w ? st->cand : 0; m; m &= m - 1) {
        int i = __builtin_ctzll(m);
        if (w[i].n == st->pos) which = i;
    }
    if (w && which < 0) return -1;
    int key = st->is_key;
    end_lexeme(st);
    if (key) {
        f->prop = (int16_t)which;
        if (which >= 0) f->seen |= 1ull << which;
        f->phase = O_COLON;
    } else
        value_done(st);
    return 0;
}

static int string_byte(const cl_jschema *s, cl_jstate *st, int c)
{
    const word *w = NULL;
    if (st->is_key) {
        const node *on = &s->n[st->f[st->depth - 1].node];
        if (!on->any_keys) w = on->props;
    } else if (s->n[st->lnode].nenum)
        w = s->n[st->lnode].enums;
    if (st->need) {
        if (c < st->lo || c > st->hi) return -1;
        st->need--;
        st->lo = 0x80;
        st->hi = 0xbf;
        if (!st->need) st->lo = st->hi = 0;
    } else if (st->sub == S_ESC) {
        if (st->low_due ? c != 'u' : !strchr("\"\\/bfnrtu", c) || !c) return -1;
        st->sub = c == 'u' ? S_HEX : S_CHAR;
    } else if (st->sub >= S_HEX) {
        int d = hexval(c), k = st->sub - S_HEX;
        if (d < 0) return -1;
        /* surrogates come in pairs: \uD800-\uDBFF then \uDC00-\uDFFF */
        if (k == 1 && st->hex == 0xd) {
            int low = d >= 0xc;
            if (st->low_due != low) return -1;
        } else if (k == 1 && st->low_due)
            return -1;
        else if (k == 0 && st->low_due && d != 0xd)
            return -1;
        st->hex = (uint16_t)(st->hex << 4 | d);
        if (k == 3) {
            st->low_due = st->hex >= 0xd800 && st->hex < 0xdc00;
            st->hex = 0;
            st->sub = S_CHAR;
        } else
            st->sub++;
    } else if (st->low_due && c != '\\') {
        return -1;
    } else if (c == '"') {
        return string_end(s, st);
    } else if (c == '\\') {
        st->sub = S_ESC;
    } else if (c < 0x20) {
        return -1;
    } else if (c >= 0x80) {
        /* UTF-8: the lead byte says how many follow and the range of the first (no overlong
         * forms, no surrogates, nothing past U+10FFFF) */
        if (c >= 0xc2 && c <= 0xdf)
            st->need = 1, st->lo = 0x80, st->hi = 0xbf;
        else if (c >= 0xe0 && c <= 0xef)
            st->need = 2, st->lo = c == 0xe0 ? 0xa0 : 0x80, st->hi = c == 0xed ? 0x9f : 0xbf;
        else if (c >= 0xf0 && c <= 0xf4)
            st->need = 3, st->lo = c == 0xf0 ? 0x90 : 0x80, st->hi = c == 0xf4 ? 0x8f : 0xbf;
        else
            return -1;
    }
    return w ? match_byte(w, st, c) : 0;
}

static int number_byte(cl_jstate *st, int c, int integer)
{
    int digit = c >= '0' && c <= '9', full = st->numlen >= MAX_NUM;
    int next = 0;
    switch (st->sub) {
    case N_MINUS: next = c == '0' ? N_ZERO : digit ? N_INT : 0; break;
    case N_ZERO: next = c == '.' && !integer ? N_DOT : (c == 'e' || c == 'E') && !integer ? N_E : 0; break;
    case N_INT: next = digit ? N_INT : c == '.' && !integer ? N_DOT : (c == 'e' || c == 'E') && !integer ? N_E : 0; break;
    case N_DOT: next = digit ? N_FRAC : 0; break;
    case N_FRAC: next = digit ? N_FRAC : c == 'e' || c == 'E' ? N_E : 0; break;
    case N_E: next = digit ? N_EXP : c == '+' || c == '-' ? N_ESIGN : 0; break;
    case N_ESIGN: next = digit ? N_EXP : 0; break;
    case N_EXP: next = digit ? N_EXP : 0; break;
    }
    int accepting = st->sub == N_ZERO || st->sub == N_INT || st->sub == N_FRAC || st->sub == N_EXP;
    /* a complete number stops growing at MAX_NUM bytes; an incomplete one may finish */
    if (!next || (full && accepting)) return accepting ? 1 : -1;
    st->sub = (uint8_t)next;
    st->numlen++;
    return 0;
}

/* Whitespace, a separator or a value where the structure says. */
static int structural(const cl_jschema *s, cl_jstate *st, int c)
{
    if (ws(c)) {
        /* between tokens: nothing, one space, or a newline and an indent of spaces and tabs */
        if (st->ws == 0 && (c == ' ' || c == '\n'))
            st->ws = c == ' ' ? CL_JMASK_WS : 1;
        else if (st->ws == 0 || st->ws >= CL_JMASK_WS || c == '\n' || c == '\r')
            return -1;
        else
            st->ws++;
        return 0;
    }
    st->ws = 0;
    if (st->depth == 0) return c == '{' ? value_start(s, st, 1, c) : -1;
    struct cl_jframe *f = &st->f[st->depth - 1];
    const node *nd = &s->n[f->node];
    switch (f->phase) {
    case O_FIRST:
    case O_KEY:
        if (c == '"' && (nd->any_keys || unseen(nd, f))) {
            st->lex = L_STR;
            st->is_key = 1;
            st->cand = nd->any_keys ? 0 : unseen(nd, f);
            return 0;
        }
        if (c != '}' || f->phase != O_FIRST) return -1;
        break;
    case O_COLON:
        if (c != ':') return -1;
        f->phase = O_VALUE;
        return 0;
    case O_VALUE:
        return value_start(s, st, nd->any_keys ? ANY_NODE : nd->pnode[f->prop], c);
    case O_NEXT:
        if (c == ',' && (nd->any_keys || unseen(nd, f))) {
            f->phase = O_KEY;
            return 0;
        }
        if (c != '}') return -1;
        break;
    case A_FIRST:
        if (c == ']') break;
        return value_start(s, st, nd->items, c);
    case A_VALUE:
        return value_start(s, st, nd->items, c);
    case A_NEXT:
        if (c == ',') {
            f->phase = A_VALUE;
            return 0;
        }
        if (c != ']') return -1;
        break;
    default:
        return -1;
    }
    /* a closing bracket: an object needs its required properties */
    if (f->kind == K_OBJ && (nd->required & ~f->seen)) return -1;
    memset(f, 0, sizeof *f);
    st->depth--;
    value_done(st);
    return 0;
}

static int feed_byte(const cl_jschema *s, cl_jstate *st, int c)
{
    if (st->done) return -1;
    switch (st->lex) {
    case L_STR:
        return string_byte(s, st, c);
    case L_LIT: {
        const char *lit = literals[st->lnode];
        if (c != lit[st->pos]) return -1;
        if (!lit[++st->pos]) {
            end_lexeme(st);
            value_done(st);
        }
        return 0;
    }
    case L_NUM: {
        const node *nd = &s->n[st->lnode];
        int r = number_byte(st, c, !(nd->types & T_NUMBER));
        if (r <= 0) return r;
        end_lexeme(st); /* the byte after a number belongs to the structure */
        value_done(st);
        break;
    }
    }
    return structural(s, st, c);
}

int cl_jstate_feed(const cl_jschema *s, cl_jstate *st, const char *bytes, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (feed_byte(s, st, (unsigned char)bytes[i])) return -1;
    return 0;
}

/* ---- the shortest completion ---------------------------------------------------------- */

/* Bytes that close an object once its current member is complete. */
static int obj_close(const node *nd, uint64_t seen)
{
    return required_cost(nd, seen, 0) + 1;
}

/* Bytes that end the string in progress, escapes and UTF-8 sequences included (an escape in
 * progress counts as if a low surrogate were still due: never less than the truth). */
static int string_tail(const cl_jstate *st)
{
    return st->need + (st->sub == S_ESC ? 1 : 0) + (st->sub >= S_HEX ? 4 - (st->sub - S_HEX) + 6 : 0) +
           (st->low_due && st->sub < S_HEX ? 6 : 0) + 1;
}

/* The fewest bytes that complete a document from st (0 when done).  Every state short of done
 * has a byte that lowers it by one, so a reply with at least this many single-byte tokens left
 * can always finish. */
static int min_cost(const cl_jschema *s, const cl_jstate *st)
{
    if (st->done) return 0;
    if (st->depth == 0) return s->n[1].minval;
    int top = st->depth - 1, c = 0;
    const struct cl_jframe *f = &st->f[top];
    const node *nd = &s->n[f->node];
    if (st->lex == L_STR && st->is_key) {
        if (nd->any_keys)
            c = string_tail(st) + 1 + 1 + 1;
        else {
            c = 1 << 20;
            for (uint64_t m = st->cand; m; m &= m - 1) {
                int i = __builtin_ctzll(m);
                int k = (int)(nd->props[i].n - st->pos) + 2 + s->n[nd->pnode[i]].minval +
                        obj_close(nd, f->seen | 1ull << i);
                if (k < c) c = k;
            }
        }
    } else {
        if (st->lex == L_STR) {
            const node *vn = &s->n[st->lnode];
            if (vn->nenum) {
                c = 1 << 20;
                for (uint64_t m = st->cand; m; m &= m - 1) {
                    int i = __builtin_ctzll(m);
                    if ((int)(vn->enums[i].n - st->pos) + 1 < c) c = (int)(vn->enums[i].n - st->pos) + 1;
                }
            } else
                c = string_tail(st);
        } else if (st->lex == L_NUM)
            c = st->sub == N_ZERO || st->sub == N_INT || st->sub == N_FRAC || st->sub == N_EXP ? 0 : 1;
        else if (st->lex == L_LIT)
            c = (int)(strlen(literals[st->lnode]) - st->pos);
        int busy = st->lex != L_NONE; /* the top frame's member is being written */
        switch (f->phase) {
        case O_FIRST: c += busy ? 0 : required_cost(nd, 0, 1) + 1; break;
        case O_KEY: {
            int k = 1 << 20;
            if (nd->required & ~f->seen)
                k = required_cost(nd, f->seen, 1) + 1;
            else if (nd->any_keys)
                k = 5; /* "":0} */
            else
                for (int i = 0; i < nd->nprops; i++)
                    if (!(f->seen >> i & 1) && nd->pcost[i] + 1 < k) k = nd->pcost[i] + 1;
            c += k;
            break;
        }
        case O_COLON: c += 1 + s->n[nd->any_keys ? ANY_NODE : nd->pnode[f->prop]].minval + obj_close(nd, f->seen); break;
        case O_VALUE:
            c += (busy ? 0 : s->n[nd->any_keys ? ANY_NODE : nd->pnode[f->prop]].minval) + obj_close(nd, f->seen);
            break;
        case O_NEXT: c += obj_close(nd, f->seen); break;
        case A_VALUE: c += (busy ? 0 : s->n[nd->items].minval) + 1; break;
        default: c += 1; break; /* A_FIRST, A_NEXT: ']' */
        }
    }
    /* the containers below: each waits for its member (the frame above) to finish */
    for (int d = top - 1; d >= 0; d--) {
        const struct cl_jframe *g = &st->f[d];
        c += g->kind == K_OBJ ? obj_close(&s->n[g->node], g->seen) : 1;
    }
    return c;
}

/* ---- token masks ---------------------------------------------------------------------- */

struct slot {
    uint64_t hash;
    int used;
    int maxcost;        /* the largest min_cost after any token of the mask */
    cl_jstate st;
};

struct cl_jmask {
    cl_jschema *s;
    int vocab, words;
    char *bytes;        /* every allowed token's bytes, back to back */
    size_t *off;        /* [vocab + 1]; off[t] == off[t + 1]: never allowed */
    uint64_t *ends;     /* bitset of end tokens */
    uint64_t *plain;    /* bitset of tokens that leave a free string as it was (text without
                         * quotes, backslashes or control bytes, whole UTF-8 characters) */
    struct slot *slots; /* [CACHE_SLOTS] */
    uint64_t *masks;    /* [CACHE_SLOTS][words] */
    uint64_t *tight;    /* [words]: a mask cut down to a budget */
    int nused;
    long computed, cached;
};

void cl_jmask_free(cl_jmask *m)
{
    if (!m) return;
    cl_jschema_free(m->s);
    free(m->bytes);
    free(m->off);
    free(m->ends);
    free(m->plain);
    free(m->slots);
    free(m->masks);
    free(m->tight);
    free(m);
}

cl_jmask *cl_jmask_new(cl_jschema *s, const cl_tokenizer *t, int vocab, const int *end, int nend, cl_err *e)
{
    cl_jmask *m = calloc(1, sizeof *m);
    if (m) {
        m->s = s;
        m->vocab = vocab;
        m->words = (vocab + 63) / 64;
        m->off = calloc((size_t)vocab + 1, sizeof *m->off);
        m->ends = calloc((size_t)m->words, sizeof *m->ends);
        m->plain = calloc((size_t)m->words, sizeof *m->plain);
        m->slots = calloc(CACHE_SLOTS, sizeof *m->slots);
        m->masks = malloc(sizeof *m->masks * CACHE_SLOTS * (size_t)m->words);
        m->tight = malloc(sizeof *m->tight * (size_t)m->words);
    } else
        cl_jschema_free(s);
    if (!m || !m->off || !m->ends || !m->plain || !m->slots || !m->masks || !m->tight) {
        cl_jmask_free(m);
        cl_err_set(e, CL_EXIT_SOFTWARE, "out of memory");
        return NULL;
    }
    if (nend < 1) {
        cl_jmask_free(m);
        cl_err_set(e, CL_EXIT_DATAERR, "constrained decoding needs an end-of-text token and the model has none");
        return NULL;
    }
    for (int i = 0; i < nend; i++)
        if (end[i] >= 0 && end[i] < vocab) m->ends[end[i] / 64] |= 1ull << (end[i] % 64);
    size_t total = 0;
    int tv = cl_tokenizer_vocab_size(t);
    for (int pass = 0; pass < 2; pass++) {
        size_t at = 0;
        for (int i = 0; i < vocab; i++) {
            size_t n = 0;
            const char *b = i < tv && cl_tokenizer_token_kind(t, i) != CL_TOKEN_SPECIAL ?
                            cl_tokenizer_token_bytes(t, i, &n) : NULL;
            if (!b || (m->ends[i / 64] >> (i % 64) & 1)) n = 0;
            if (pass) {
                m->off[i] = at;
                if (n) memcpy(m->bytes + at, b, n);
            }
            at += n;
        }
        if (pass) m->off[vocab] = at;
        else total = at;
        if (!pass && !(m->bytes = malloc(total + 1))) {
            cl_jmask_free(m);
            cl_err_set(e, CL_EXIT_SOFTWARE, "out of memory");
            return NULL;
        }
    }
    /* the automaton itself says which tokens are plain text: inside a free string value */
    cl_jstate in, out;
    cl_jstate_init(&in);
    if (cl_jstate_feed(s, &in, "{\"", 2) == 0) {
        in.is_key = 0; /* the key's string made a free string value */
        in.cand = 0;
        in.lnode = ANY_NODE;
        for (int i = 0; i < vocab; i++) {
            out = in;
            size_t n = m->off[i + 1] - m->off[i];
            if (n && cl_jstate_feed(s, &out, m->bytes + m->off[i], n) == 0 && memcmp(&in, &out, sizeof in) == 0)
                m->plain[i / 64] |= 1ull << (i % 64);
        }
    }
    return m;
}

/* Inside a free string (no key or enum to match), between characters. */
static int in_free_string(const cl_jstate *st)
{
    return st->lex == L_STR && !st->cand && st->sub == S_CHAR && !st->need && !st->low_due;
}

/* The bytes of a state that can differ: the header and the open frames. */
static size_t state_size(const cl_jstate *st)
{
    return offsetof(cl_jstate, f) + sizeof st->f[0] * (size_t)st->depth;
}

/* Whether tok may follow st with budget tokens left (the token included; < 0: no limit).
 * *cost gets min_cost after it. */
static int allows(const cl_jmask *m, const cl_jstate *st, int tok, int budget, int *cost)
{
    *cost = 0;
    if (tok < 0 || tok >= m->vocab) return 0;
    if (m->ends[tok / 64] >> (tok % 64) & 1) return st->done;
    size_t n = m->off[tok + 1] - m->off[tok];
    if (!n) return 0;
    cl_jstate x;
    memcpy(&x, st, state_size(st));
    if (cl_jstate_feed(m->s, &x, m->bytes + m->off[tok], n)) return 0;
    *cost = min_cost(m->s, &x);
    /* a budget too small for any completion constrains nothing more */
    return budget < 0 || *cost <= budget - 1 || min_cost(m->s, st) > budget;
}

int cl_jmask_allows(const cl_jmask *m, const cl_jstate *st, int tok, int budget)
{
    int cost;
    return allows(m, st, tok, budget, &cost);
}

int cl_jmask_advance(const cl_jmask *m, cl_jstate *st, int tok)
{
    if (!cl_jmask_allows(m, st, tok, -1)) return -1;
    if (m->ends[tok / 64] >> (tok % 64) & 1) return 0;
    return cl_jstate_feed(m->s, st, m->bytes + m->off[tok], m->off[tok + 1] - m->off[tok]);
}

const uint64_t *cl_jmask_bits(cl_jmask *m, const cl_jstate *st, int budget)
{
    size_t sz = state_size(st);
    uint64_t h = cl_hash64(st, sz, 0x6a736f6e);
    unsigned at = (unsigned)(h % CACHE_SLOTS);
    uint64_t *bits = NULL;
    /* linear probing over a table never more than three quarters full */
    while (m->slots[at].used) {
        if (m->slots[at].hash == h && memcmp(&m->slots[at].st, st, sz) == 0) {
            m->cached++;
            bits = m->masks + (size_t)at * (size_t)m->words;
            break;
        }
        at = (at + 1) % CACHE_SLOTS;
    }
    if (!bits) {
        if (m->nused >= CACHE_SLOTS * 3 / 4) {
            memset(m->slots, 0, sizeof *m->slots * CACHE_SLOTS);
            m->nused = 0;
            at = (unsigned)(h % CACHE_SLOTS);
        }
        bits = m->masks + (size_t)at * (size_t)m->words;
        memset(bits, 0, sizeof *bits * (size_t)m->words);
        int maxcost = 0, free_str = in_free_string(st), here = free_str ? min_cost(m->s, st) : 0;
        /* a token whose first byte cannot come next is out without a copy of the state */
        unsigned char first[256];
        for (int c = 0; c < 256; c++) {
            cl_jstate x;
            char b = (char)c;
            memcpy(&x, st, sz);
            first[c] = cl_jstate_feed(m->s, &x, &b, 1) == 0;
        }
        for (int t = 0; t < m->vocab; t++) {
            int cost = here;
            if (m->off[t + 1] > m->off[t] && !first[(unsigned char)m->bytes[m->off[t]]]) continue;
            if ((free_str && (m->plain[t / 64] >> (t % 64) & 1)) || allows(m, st, t, -1, &cost)) {
                bits[t / 64] |= 1ull << (t % 64);
                if (cost > maxcost) maxcost = cost;
            }
        }
        m->slots[at].used = 1;
        m->slots[at].hash = h;
        m->slots[at].maxcost = maxcost;
        memcpy(&m->slots[at].st, st, sz);
        m->nused++;
        m->computed++;
    }
    if (budget < 0 || m->slots[at].maxcost <= budget - 1) return bits;
    /* near the end of the budget: only tokens after which the document can still close */
    memset(m->tight, 0, sizeof *m->tight * (size_t)m->words);
    for (int w = 0; w < m->words; w++)
        for (uint64_t b = bits[w]; b; b &= b - 1) {
            int t = w * 64 + __builtin_ctzll(b), cost;
            if (allows(m, st, t, budget, &cost)) m->tight[w] |= 1ull << (t % 64);
        }
    return m->tight;
}

void cl_jmask_stats(const cl_jmask *m, long *computed, long *cached)
{
    *computed = m->computed;
    *cached = m->cached;
}
