/* conv.c — message lists and record accessors; see conv.h. */
#include "collab/conv.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/json.h"

static int is_array(const jv *v)
{
    return jv_get_kind(*v) == JV_KIND_ARRAY;
}

static int len_of(const jv *arr)
{
    return is_array(arr) ? jv_array_length(jv_copy(*arr)) : 0;
}

jv cl_conv_append(jv messages, const char *role, const char *content)
{
    if (jv_get_kind(messages) != JV_KIND_ARRAY) {
        jv_free(messages);
        messages = jv_array();
    }
    return jv_array_append(messages, cl_json_message(role, content ? content : ""));
}

/* Borrowed string member of the i-th array element (the array keeps the reference). */
static const char *elem_str(const jv *arr, int i, const char *key)
{
    jv m = jv_array_get(jv_copy(*arr), i);
    const char *s = jv_get_kind(m) == JV_KIND_OBJECT ? cl_json_str(&m, key) : NULL;
    jv_free(m);
    return s;
}

char *cl_conv_render(const jv *messages)
{
    int n = len_of(messages);
    jv out = jv_string("");
    for (int i = 0; i < n; i++) {
        jv m = jv_array_get(jv_copy(*messages), i);
        const char *r = jv_get_kind(m) == JV_KIND_OBJECT ? cl_json_str(&m, "role") : NULL;
        if (r && strcmp(r, "system") != 0) {
            const char *c = cl_json_str(&m, "content");
            char role[64];
            snprintf(role, sizeof role, "%s**%s", jv_string_length_bytes(jv_copy(out)) ? "\n" : "", r);
            size_t at = role[0] == '\n' ? 3 : 2;
            role[at] = (char)toupper((unsigned char)role[at]);
            out = jv_string_append_str(out, role);
            out = jv_string_append_str(out, "**: ");
            out = jv_string_append_str(out, c ? c : "");
        }
        jv_free(m);
    }
    char *s = strdup(jv_string_value(out));
    jv_free(out);
    if (!s)
        abort();
    return s;
}

int cl_conv_count(const jv *messages, const char *role)
{
    int n = len_of(messages), k = 0;
    for (int i = 0; i < n; i++) {
        const char *r = elem_str(messages, i, "role");
        if (r && (role ? !strcmp(r, role) : strcmp(r, "system") != 0))
            k++;
    }
    return k;
}

int cl_conv_turns(const jv *messages)
{
    return cl_conv_count(messages, "assistant");
}

const char *cl_conv_last_role(const jv *messages)
{
    for (int i = len_of(messages) - 1; i >= 0; i--) {
        const char *r = elem_str(messages, i, "role");
        if (r && strcmp(r, "system") != 0)
            return r;
    }
    return NULL;
}

const char *cl_conv_content(const jv *messages, int i)
{
    int n = len_of(messages);
    if (i < 0)
        i += n;
    if (i < 0 || i >= n)
        return NULL;
    return elem_str(messages, i, "content");
}

int cl_conv_has_marker(const char *text, const char *marker)
{
    return text && marker && *marker && strstr(text, marker) != NULL;
}

/* ---- seed ---------------------------------------------------------------------------- */

static const char *str_either(const jv *rec, const char *ours, const char *official)
{
    const char *s = cl_json_str(rec, ours);
    return s ? s : official ? cl_json_str(rec, official) : NULL;
}

const char *cl_seed_prompt(const jv *rec)
{
    return str_either(rec, "prompt", "single_turn_prompt");
}

const char *cl_seed_completion(const jv *rec)
{
    return str_either(rec, "completion", "single_turn_completion");
}

const char *cl_seed_task_desc(const jv *rec)
{
    return str_either(rec, "task_desc", NULL);
}

/* ---- state --------------------------------------------------------------------------- */

jv cl_state_messages(const jv *rec)
{
    jv m = cl_json_get(rec, "messages");
    if (jv_get_kind(m) != JV_KIND_ARRAY) {
        jv_free(m);
        return jv_array();
    }
    return m;
}

int cl_state_done(const jv *rec)
{
    return cl_json_bool(rec, "done", 0) == 1;
}

jv cl_state_set_messages(jv rec, jv messages)
{
    int turns = cl_conv_turns(&messages);
    rec = cl_json_set(rec, "messages", messages);
    return cl_json_set_num(rec, "turn", turns);
}

jv cl_state_finish(jv rec, const char *reason)
{
    rec = cl_json_set(rec, "done", jv_true());
    return cl_json_set_str(rec, "done_reason", reason);
}

/* ---- branch -------------------------------------------------------------------------- */

/* The i-th element of obj.key when it is an object, else jv_invalid().  obj borrowed. */
static jv object_at(const jv *obj, const char *key, int i)
{
    jv arr = cl_json_get(obj, key);
    jv el = i >= 0 && i < len_of(&arr) ? jv_array_get(jv_copy(arr), i) : jv_invalid();
    jv_free(arr);
    if (jv_is_valid(el) && jv_get_kind(el) != JV_KIND_OBJECT) {
        jv_free(el);
        return jv_invalid();
    }
    return el;
}

static int length_of(const jv *obj, const char *key)
{
    jv arr = cl_json_get(obj, key);
    int n = len_of(&arr);
    jv_free(arr);
    return n;
}

int cl_branch_ncandidates(const jv *rec)
{
    return length_of(rec, "candidates");
}

jv cl_branch_candidate(const jv *rec, int c)
{
    return object_at(rec, "candidates", c);
}

int cl_branch_nfutures(const jv *rec, int c)
{
    jv cand = cl_branch_candidate(rec, c);
    int n = jv_is_valid(cand) ? length_of(&cand, "futures") : 0;
    jv_free(cand);
    return n;
}

jv cl_branch_future(const jv *rec, int c, int f)
{
    jv cand = cl_branch_candidate(rec, c);
    jv fut = jv_is_valid(cand) ? object_at(&cand, "futures", f) : jv_invalid();
    jv_free(cand);
    return fut;
}

jv cl_branch_future_conversation(const jv *rec, int c, int f)
{
    jv fut = cl_branch_future(rec, c, f);
    if (!jv_is_valid(fut))
        return fut;
    jv cand = cl_branch_candidate(rec, c);
    jv conv = cl_conv_append(cl_state_messages(rec), "assistant", cl_json_str(&cand, "content"));
    jv_free(cand);
    jv fm = cl_state_messages(&fut);
    jv_free(fut);
    return jv_array_concat(conv, fm);
}

jv cl_branch_set_candidate(jv rec, int c, jv cand)
{
    jv cs = cl_json_get(&rec, "candidates");
    if (c < 0 || c >= len_of(&cs)) {
        jv_free(cs);
        jv_free(cand);
        return rec;
    }
    return cl_json_set(rec, "candidates", jv_array_set(cs, c, cand));
}

jv cl_branch_set_future(jv rec, int c, int f, jv future)
{
    jv cand = cl_branch_candidate(&rec, c);
    jv fs = jv_is_valid(cand) ? cl_json_get(&cand, "futures") : jv_invalid();
    if (f < 0 || f >= len_of(&fs)) {
        jv_free(fs);
        jv_free(cand);
        jv_free(future);
        return rec;
    }
    cand = cl_json_set(cand, "futures", jv_array_set(fs, f, future));
    return cl_branch_set_candidate(rec, c, cand);
}

jv cl_conv_request(const jv *messages)
{
    jv out = jv_array();
    int n = jv_get_kind(*messages) == JV_KIND_ARRAY ? jv_array_length(jv_copy(*messages)) : 0;
    for (int i = 0; i < n; i++) {
        jv m = jv_array_get(jv_copy(*messages), i);
        jv slim = cl_json_set(cl_json_set(jv_object(), "role", cl_json_get(&m, "role")), "content",
                              cl_json_get(&m, "content"));
        out = jv_array_append(out, slim);
        jv_free(m);
    }
    return out;
}
