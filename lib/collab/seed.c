#include "collab/seed.h"

#include <ctype.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "metrics/boxed.h"
#include "metrics/tokens.h"
#include "core/json.h"
#include "core/stream.h"

/* ---- row fields ---------------------------------------------------------------------- */

static int why_set(char *why, size_t n, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int why_set(char *why, size_t n, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, n, fmt, ap);
    va_end(ap);
    return -1;
}

static int blank(const char *s)
{
    while (*s && isspace((unsigned char)*s))
        s++;
    return !*s;
}

/* The string field key of row, or NULL with why set when it is absent, not a string or blank. */
static const char *need_str(const jv *row, const char *key, char *why, size_t n)
{
    jv_kind k = cl_json_kind(row, key);
    if (k == JV_KIND_INVALID || k == JV_KIND_NULL) {
        why_set(why, n, "field '%s' is missing", key);
        return NULL;
    }
    if (k != JV_KIND_STRING) {
        why_set(why, n, "field '%s' should be a string, not %s", key, jv_kind_name(k));
        return NULL;
    }
    const char *s = cl_json_str(row, key);
    if (blank(s)) {
        why_set(why, n, "field '%s' is empty", key);
        return NULL;
    }
    return s;
}

/* Copies row[key] into meta[as] when present and not null. */
static jv keep(jv meta, const jv *row, const char *key, const char *as)
{
    jv v = cl_json_get(row, key);
    if (!jv_is_valid(v) || jv_get_kind(v) == JV_KIND_NULL) {
        jv_free(v);
        return meta;
    }
    return cl_json_set(meta, as, v);
}

static jv part(const char *prompt, jv completion, jv meta)
{
    jv p = cl_json_set_str(jv_object(), "prompt", prompt);
    p = cl_json_set(p, "completion", completion);
    return cl_json_set(p, "metadata", meta);
}

/* ---- presets ------------------------------------------------------------------------- */

/* MATH / MATH-Hard: the problem as asked, the worked solution as reference, and its final
 * answer beside it so metrics need not parse LaTeX again. */
static int build_math(const jv *row, const cl_seed_opts *o, jv *out, char *why, size_t n)
{
    (void)o;
    const char *problem = need_str(row, "problem", why, n);
    const char *solution = problem ? need_str(row, "solution", why, n) : NULL;
    if (!solution)
        return -1;
    jv meta = jv_object();
    const char *given = cl_json_str(row, "answer");
    if (given && !blank(given)) {
        meta = cl_json_set_str(meta, "answer", given);
    } else {
        char *ans = cl_boxed_answer(solution);
        if (!ans || blank(ans)) {
            free(ans);
            jv_free(meta);
            return why_set(why, n, "field 'solution' has no \\boxed{} answer and the row has no 'answer'");
        }
        meta = cl_json_set_str(meta, "answer", ans);
        free(ans);
    }
    meta = keep(meta, row, "level", "level");
    meta = keep(meta, row, "type", "type");
    meta = keep(meta, row, "subject", "subject");
    *out = part(problem, jv_string(solution), meta);
    return 0;
}

/* BigCodeBench: the natural-language instruction is the request; the reference is the code
 * prompt completed by the canonical solution, which is what the unittest runs against. */
static int build_code(const jv *row, const cl_seed_opts *o, jv *out, char *why, size_t n)
{
    (void)o;
    static const char *const need[] = {"task_id", "instruct_prompt", "code_prompt",
                                       "canonical_solution", "test", "entry_point"};
    const char *f[6];
    for (int i = 0; i < 6; i++)
        if (!(f[i] = need_str(row, need[i], why, n)))
            return -1;
    size_t a = strlen(f[2]), b = strlen(f[3]);
    char *answer = malloc(a + b + 1);
    char *req = malloc(a + 200);
    if (!answer || !req) {
        free(answer);
        free(req);
        return why_set(why, n, "out of memory");
    }
    memcpy(answer, f[2], a);
    memcpy(answer + a, f[3], b + 1);
    snprintf(req, a + 200,
             "The code must run as it is and must begin with these lines, unchanged:\n%s", f[2]);
    jv meta = cl_json_set_str(jv_object(), "task_id", f[0]);
    meta = cl_json_set_str(meta, "entry_point", f[5]);
    meta = cl_json_set_str(meta, "code_prompt", f[2]);
    meta = cl_json_set_str(meta, "test", f[4]);
    meta = keep(meta, row, "libs", "libs");
    meta = cl_json_set_str(meta, "extraction_requirement", req);
    *out = part(f[1], jv_string(answer), meta);
    free(answer);
    free(req);
    return 0;
}

/* Medium: the request names the title and carries the whole article, which is the simulated
 * user's hidden goal (the official v2 layout); the article is the reference for BLEU. */
static int build_document(const jv *row, const cl_seed_opts *o, jv *out, char *why, size_t n)
{
    const char *title = need_str(row, "title", why, n);
    const char *text = title ? need_str(row, "text", why, n) : NULL;
    if (!text)
        return -1;
    jv ts = cl_json_get(row, "timestamp");
    if (jv_is_valid(ts) && jv_get_kind(ts) != JV_KIND_NULL) {
        double t;
        if (cl_seed_time(ts, &t) < 0)
            return why_set(why, n, "field 'timestamp' is not a date or time");
    } else {
        jv_free(ts);
    }
    jv meta = cl_json_set_str(jv_object(), "title", title);
    meta = keep(meta, row, "url", "url");
    meta = keep(meta, row, "authors", "authors");
    meta = keep(meta, row, "timestamp", "timestamp");
    meta = keep(meta, row, "tags", "tags");
    jv_kind nk = cl_json_kind(row, "num_tokens");
    if (nk == JV_KIND_NUMBER) {
        meta = keep(meta, row, "num_tokens", "num_tokens");
        meta = cl_json_set(meta, "num_tokens_estimated", jv_false());
    } else if (nk != JV_KIND_INVALID && nk != JV_KIND_NULL) {
        jv_free(meta);
        return why_set(why, n, "field 'num_tokens' should be a number, not %s", jv_kind_name(nk));
    } else {
        long k = o->tk ? tokens_count_text(o->tk, text, strlen(text)) : (long)cl_seed_estimate_tokens(text);
        if (k < 0) {
            jv_free(meta);
            return why_set(why, n, "field 'text' could not be tokenized (out of memory)");
        }
        meta = cl_json_set_num(meta, "num_tokens", (double)k);
        meta = cl_json_set(meta, "num_tokens_estimated", jv_bool(!o->tk));
    }
    size_t len = strlen(title) + strlen(text) + 200;
    char *prompt = malloc(len);
    if (!prompt) {
        jv_free(meta);
        return why_set(why, n, "out of memory");
    }
    snprintf(prompt, len,
             "I want to write a short article, under 500 words, titled \"%s\". "
             "This is the article I have in mind:\n\n%s", title, text);
    *out = part(prompt, jv_string(text), meta);
    free(prompt);
    return 0;
}

/* Abg-CoQA: a story and a question about it; the reference is whether the question is
 * ambiguous, i.e. whether a good assistant should ask before answering. */
static int build_qa(const jv *row, const cl_seed_opts *o, jv *out, char *why, size_t n)
{
    const char *story = need_str(row, "story", why, n);
    if (!story)
        return -1;
    jv target = cl_json_get(row, "target_turn");
    if (!jv_is_valid(target) || jv_get_kind(target) != JV_KIND_OBJECT) {
        jv_kind k = jv_get_kind(target);
        jv_free(target);
        if (k == JV_KIND_INVALID || k == JV_KIND_NULL)
            return why_set(why, n, "field 'target_turn' is missing");
        return why_set(why, n, "field 'target_turn' should be an object, not %s", jv_kind_name(k));
    }
    const char *question = need_str(&target, "question", why, n);
    if (!question) {
        jv_free(target);
        char inner[200];
        snprintf(inner, sizeof inner, "%s", why);
        return why_set(why, n, "target_turn: %s", inner);
    }
    const char *label = need_str(row, "ambiguity", why, n);
    if (!label) {
        jv_free(target);
        return -1;
    }
    if (strcmp(label, "ambiguous") != 0 && strcmp(label, "non_ambiguous") != 0) {
        jv_free(target);
        return why_set(why, n, "field 'ambiguity' is '%.40s', not 'ambiguous' or 'non_ambiguous'", label);
    }
    jv hist = cl_json_get(row, "history_turns");
    jv_kind hk = jv_get_kind(hist);
    if (hk != JV_KIND_INVALID && hk != JV_KIND_NULL && hk != JV_KIND_ARRAY) {
        jv_free(target);
        jv_free(hist);
        return why_set(why, n, "field 'history_turns' should be an array, not %s", jv_kind_name(hk));
    }
    /* The prompt is built in a jv string so the history can grow it without a size guess. */
    jv prompt = jv_string_fmt("Could you help me with a question about this story?\n\n%s\n\n", story);
    if (o->history && hk == JV_KIND_ARRAY && jv_array_length(jv_copy(hist)) > 0) {
        prompt = jv_string_append_str(prompt, "What I asked before, with the answers:\n");
        jv_array_foreach(hist, i, t) {
            const char *q = cl_json_str(&t, "question"), *a = cl_json_str(&t, "answer");
            if (!q || !a) {
                jv_free(t);
                jv_free(prompt);
                jv_free(target);
                jv_free(hist);
                return why_set(why, n, "history_turns[%d] needs string 'question' and 'answer'", i);
            }
            prompt = jv_string_append_str(prompt, "Q: ");
            prompt = jv_string_append_str(prompt, q);
            prompt = jv_string_append_str(prompt, "\nA: ");
            prompt = jv_string_append_str(prompt, a);
            prompt = jv_string_append_str(prompt, "\n");
            jv_free(t);
        }
        prompt = jv_string_append_str(prompt, "\n");
    }
    prompt = jv_string_append_str(prompt, "My question: ");
    prompt = jv_string_append_str(prompt, question);
    jv meta = cl_json_set(jv_object(), "ambiguous", jv_bool(strcmp(label, "ambiguous") == 0));
    meta = cl_json_set_str(meta, "target_question", question);
    meta = keep(meta, &target, "answer", "target_answer");
    meta = keep(meta, row, "source", "source");
    if (hk == JV_KIND_ARRAY)
        meta = cl_json_set(meta, "history_turns", jv_copy(hist));
    jv p = jv_object();
    p = cl_json_set(p, "prompt", prompt);
    p = cl_json_set_str(p, "completion", label);
    *out = cl_json_set(p, "metadata", meta);
    jv_free(hist);
    jv_free(target);
    return 0;
}

static int known_generic_key(const char *k)
{
    static const char *const keys[] = {"id", "task", "task_desc", "split", "prompt", "completion",
                                       "metadata", "single_turn_prompt", "single_turn_completion",
                                       "single_turn_metadata"};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
        if (strcmp(k, keys[i]) == 0)
            return 1;
    return 0;
}

/* Any prompt/completion rows.  The official single_turn_* names win because the published
 * multi-turn rows carry them beside a message-list "prompt".  As in the official generic
 * loader, other keys of a plain row become metadata. */
static int build_generic(const jv *row, const cl_seed_opts *o, jv *out, char *why, size_t n)
{
    (void)o;
    jv_kind sk = cl_json_kind(row, "single_turn_prompt");
    int official = sk != JV_KIND_INVALID && sk != JV_KIND_NULL;
    const char *pk = official ? "single_turn_prompt" : "prompt";
    const char *ck = official ? "single_turn_completion" : "completion";
    const char *mk = official ? "single_turn_metadata" : "metadata";
    const char *prompt = need_str(row, pk, why, n);
    if (!prompt)
        return -1;
    jv comp = cl_json_get(row, ck);
    jv_kind k = jv_get_kind(comp);
    if (k == JV_KIND_INVALID || k == JV_KIND_NULL) {
        jv_free(comp);
        return why_set(why, n, "field '%s' is missing", ck);
    }
    if (k != JV_KIND_STRING) {
        /* a structured reference (e.g. the official code completion object) is kept as its
         * JSON text, so completion is always a string */
        char *s = cl_json_dump(&comp, NULL);
        jv_free(comp);
        comp = jv_string(s ? s : "");
        free(s);
    }
    jv meta = cl_json_get(row, mk);
    jv_kind mkind = jv_get_kind(meta);
    if (mkind == JV_KIND_INVALID || mkind == JV_KIND_NULL) {
        jv_free(meta);
        meta = jv_object();
    } else if (mkind != JV_KIND_OBJECT) {
        jv_free(meta);
        jv_free(comp);
        return why_set(why, n, "field '%s' should be an object, not %s", mk, jv_kind_name(mkind));
    }
    if (!official) {
        jv r = *row; /* the iteration macros borrow their object */
        jv_object_foreach(r, key, val) {
            if (!known_generic_key(jv_string_value(key)))
                meta = jv_object_set(meta, key, val);
            else {
                jv_free(key);
                jv_free(val);
            }
        }
    }
    jv p = part(prompt, comp, meta);
    p = keep(p, row, "task", "task");
    p = keep(p, row, "task_desc", "task_desc");
    *out = p;
    return 0;
}

static const cl_seed_preset presets[] = {
    {"math", "math", "question answering", "problem, solution (with a \\boxed{} answer, or an 'answer' field)",
     {"unique_id", "id", NULL}, 0.1, 0, build_math},
    {"bigcodebench", "code", "code generation",
     "task_id, instruct_prompt, code_prompt, canonical_solution, test, entry_point",
     {"task_id", "id", NULL}, 0.2, 0, build_code},
    {"medium", "document", "document editing", "title, text (timestamp for the recency cut)",
     {"id", NULL, NULL}, 0.2, 1, build_document},
    {"abgcoqa", "qa", "question answering", "story, target_turn.question, ambiguity",
     {"id", NULL, NULL}, 0.1, 0, build_qa},
    {"generic", "generic", "general assistance",
     "prompt, completion (or single_turn_prompt, single_turn_completion)",
     {"id", NULL, NULL}, 0.1, 0, build_generic},
};

const cl_seed_preset *cl_seed_presets(size_t *n)
{
    *n = sizeof presets / sizeof presets[0];
    return presets;
}

const cl_seed_preset *cl_seed_preset_find(const char *name)
{
    for (size_t i = 0; i < sizeof presets / sizeof presets[0]; i++)
        if (strcmp(presets[i].name, name) == 0)
            return &presets[i];
    return NULL;
}

/* A generic row that names a preset's task gets that task's description. */
static const char *task_desc_for(const char *task)
{
    for (size_t i = 0; i < sizeof presets / sizeof presets[0]; i++)
        if (strcmp(presets[i].task, task) == 0)
            return presets[i].task_desc;
    return presets[sizeof presets / sizeof presets[0] - 1].task_desc;
}

/* The dataset's own id, as a string; NULL-kind invalid when it has none. */
static jv dataset_id(const cl_seed_preset *p, const jv *row)
{
    for (int i = 0; i < 3 && p->id_fields[i]; i++) {
        jv v = cl_json_get(row, p->id_fields[i]);
        if (jv_get_kind(v) == JV_KIND_STRING && !blank(jv_string_value(v)))
            return v;
        if (jv_get_kind(v) == JV_KIND_NUMBER) {
            double d = jv_number_value(v);
            jv_free(v);
            if (d == floor(d) && fabs(d) < 9e15)
                return jv_string_fmt("%.0f", d);
            return jv_string_fmt("%.17g", d);
        }
        jv_free(v);
    }
    return jv_invalid();
}

int cl_seed_from_row(const cl_seed_preset *p, const cl_seed_opts *o, const jv *row, jv *seed,
                     char *why, size_t n)
{
    *seed = jv_invalid();
    if (jv_get_kind(*row) != JV_KIND_OBJECT)
        return why_set(why, n, "row is not a JSON object");
    jv split = jv_invalid();
    jv sv = cl_json_get(row, "split");
    if (jv_is_valid(sv) && jv_get_kind(sv) != JV_KIND_NULL) {
        const char *name = jv_get_kind(sv) == JV_KIND_STRING ? cl_seed_split_name(jv_string_value(sv)) : NULL;
        if (!name) {
            char *s = cl_json_dump(&sv, NULL);
            why_set(why, n, "field 'split' is %.60s, not train, test or validation", s ? s : "?");
            free(s);
            jv_free(sv);
            return -1;
        }
        split = jv_string(name);
    }
    jv_free(sv);
    jv part_v;
    if (p->build(row, o, &part_v, why, n) < 0) {
        jv_free(split);
        return -1;
    }
    const char *prompt = cl_json_str(&part_v, "prompt");
    const char *completion = cl_json_str(&part_v, "completion");
    jv id = dataset_id(p, row);
    if (!jv_is_valid(id)) {
        jv_free(id);
        /* same request and reference, same id, whatever the file layout or row order */
        uint64_t h = cl_hash64(prompt, strlen(prompt), 0);
        h = cl_hash64(completion, strlen(completion) + 1, h);
        id = jv_string_fmt("%s-%016" PRIx64, p->name, h);
    }
    const char *task = o->task ? o->task : cl_json_str(&part_v, "task");
    if (!task || blank(task))
        task = p->task;
    const char *desc = o->task_desc ? o->task_desc : cl_json_str(&part_v, "task_desc");
    if (!desc || blank(desc))
        desc = strcmp(p->name, "generic") == 0 ? task_desc_for(task) : p->task_desc;
    jv s = cl_json_set(jv_object(), "id", id);
    s = cl_json_set_str(s, "task", task);
    s = cl_json_set_str(s, "task_desc", desc);
    s = cl_json_set(s, "prompt", cl_json_get(&part_v, "prompt"));
    s = cl_json_set(s, "completion", cl_json_get(&part_v, "completion"));
    s = cl_json_set(s, "metadata", cl_json_get(&part_v, "metadata"));
    if (jv_is_valid(split))
        s = cl_json_set(s, "split", split);
    else
        jv_free(split);
    jv_free(part_v);
    *seed = s;
    return 0;
}

/* ---- splits ------------------------------------------------------------------------- */

const char *cl_seed_split_name(const char *s)
{
    static const struct { const char *alias, *name; } names[] = {
        {"train", "train"}, {"training", "train"}, {"test", "test"}, {"testing", "test"},
        {"validation", "validation"}, {"valid", "validation"}, {"val", "validation"},
        {"dev", "validation"}, {"eval", "validation"},
    };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (strcmp(s, names[i].alias) == 0)
            return names[i].name;
    return NULL;
}

/* The splitmix64 finaliser.  cl_hash64 already ends with it; the split applies it once more
 * (and to the seed), as it has since the first release: dropping it would move ids between
 * train and test in every re-seeded dataset. */
static uint64_t mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

const char *cl_seed_hash_split(const char *id, double test_ratio, uint64_t seed)
{
    uint64_t h = mix64(cl_hash64(id, strlen(id), mix64(seed ^ 0x5eed5eedULL)));
    double u = (double)(h >> 11) * (1.0 / 9007199254740992.0);
    return u < test_ratio ? "test" : "train";
}

uint64_t cl_seed_prompt_key(const char *prompt)
{
    char *norm = malloc(strlen(prompt) + 1);
    if (!norm)
        abort();
    size_t n = 0;
    int pending_space = 0;
    for (const unsigned char *p = (const unsigned char *)prompt; *p; p++) {
        if (isspace(*p)) {
            pending_space = n > 0;
            continue;
        }
        if (pending_space) {
            norm[n++] = ' ';
            pending_space = 0;
        }
        norm[n++] = (char)((*p >= 'A' && *p <= 'Z') ? *p + 32 : *p);
    }
    uint64_t key = cl_hash64(norm, n, 0);
    free(norm);
    return key;
}

/* ---- Medium helpers ----------------------------------------------------------------- */

size_t cl_seed_estimate_tokens(const char *text)
{
    size_t tokens = 0;
    const unsigned char *p = (const unsigned char *)text;
    while (*p) {
        size_t run = 0;
        if (isalpha(*p)) {
            while (isalpha(p[run]))
                run++;
            tokens += (run + 7) / 8;
        } else if (isdigit(*p)) {
            while (isdigit(p[run]))
                run++;
            tokens += (run + 2) / 3;
        } else if (*p >= 0x80) {
            run = 1; /* one code point: its lead byte and continuation bytes */
            while ((p[run] & 0xC0) == 0x80)
                run++;
            tokens++;
        } else if (isspace(*p)) {
            /* a single space joins the next word's token; a line break is its own token */
            while (isspace(p[run]))
                run++;
            if (memchr(p, '\n', run))
                tokens++;
        } else {
            run = 1;
            tokens++;
        }
        p += run;
    }
    return tokens;
}

static int digits(const char **s, int n, int *out)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (!isdigit((unsigned char)(*s)[i]))
            return -1;
        v = v * 10 + ((*s)[i] - '0');
    }
    *s += n;
    *out = v;
    return 0;
}

/* Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's civil algorithm). */
static long days_from_civil(int y, int m, int d)
{
    y -= m <= 2;
    long era = (y >= 0 ? y : y - 399) / 400;
    long yoe = y - era * 400;
    long doy = (153L * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    long doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

int cl_seed_time(jv v, double *t)
{
    int rc = -1;
    if (jv_get_kind(v) == JV_KIND_NUMBER) {
        double x = jv_number_value(v);
        if (isfinite(x)) {
            *t = x > 1e11 ? x / 1000.0 : x;
            rc = 0;
        }
    } else if (jv_get_kind(v) == JV_KIND_STRING) {
        const char *s = jv_string_value(v);
        int y, mo, d, h = 0, mi = 0, se = 0;
        while (*s == ' ')
            s++;
        if (digits(&s, 4, &y) == 0 && *s++ == '-' && digits(&s, 2, &mo) == 0 && *s++ == '-' &&
            digits(&s, 2, &d) == 0 && mo >= 1 && mo <= 12 && d >= 1 && d <= 31) {
            double frac = 0, off = 0;
            int ok = 1;
            if (*s == ' ' || *s == 'T') {
                s++;
                ok = digits(&s, 2, &h) == 0 && *s++ == ':' && digits(&s, 2, &mi) == 0;
                if (ok && *s == ':') {
                    s++;
                    ok = digits(&s, 2, &se) == 0;
                    if (ok && *s == '.') {
                        char *end;
                        frac = strtod(s, &end);
                        s = end;
                    }
                }
                if (ok && (*s == 'Z' || *s == 'z')) {
                    s++;
                } else if (ok && (*s == '+' || *s == '-')) {
                    int sign = *s++ == '-' ? -1 : 1, oh, om = 0;
                    ok = digits(&s, 2, &oh) == 0;
                    if (ok && *s == ':')
                        s++;
                    if (ok && isdigit((unsigned char)*s))
                        ok = digits(&s, 2, &om) == 0;
                    off = sign * (oh * 3600.0 + om * 60.0);
                }
            }
            while (*s == ' ')
                s++;
            if (ok && !*s && h < 24 && mi < 60 && se <= 60) {
                *t = days_from_civil(y, mo, d) * 86400.0 + h * 3600.0 + mi * 60.0 + se + frac - off;
                rc = 0;
            }
        }
    }
    jv_free(v);
    return rc;
}

/* ---- --split-ids ---------------------------------------------------------------------- */

int cl_seed_split_ids_load(const char *path, jv *map, cl_err *e)
{
    cl_reader *r = cl_reader_open(path, e);
    if (!r)
        return -1;
    jv m = jv_object();
    cl_line l;
    int k;
    while ((k = cl_reader_next(r, &l, e)) > 0) {
        char *s = l.text;
        size_t len = l.len;
        while (len && isspace((unsigned char)*s))
            s++, len--;
        while (len && isspace((unsigned char)s[len - 1]))
            len--;
        if (!len || *s == '#')
            continue;
        jv id = jv_invalid(), split = jv_invalid();
        const char *bad = NULL;
        if (*s == '{') {
            cl_json_check chk;
            if (cl_json_validate(s, len, &chk) < 0) {
                bad = chk.err_what;
            } else {
                jv o = cl_json_parse(s, len);
                id = cl_json_get(&o, "id");
                split = cl_json_get(&o, "split");
                jv_free(o);
                if (jv_get_kind(id) != JV_KIND_STRING || jv_get_kind(split) != JV_KIND_STRING)
                    bad = "needs string fields 'id' and 'split'";
            }
        } else {
            size_t cut = len;
            while (cut && !isspace((unsigned char)s[cut - 1]))
                cut--;
            size_t idlen = cut;
            while (idlen && isspace((unsigned char)s[idlen - 1]))
                idlen--;
            if (!idlen) {
                bad = "expected 'ID SPLIT'";
            } else {
                id = jv_string_sized(s, (int)idlen);
                split = jv_string_sized(s + cut, (int)(len - cut));
            }
        }
        const char *name = bad ? NULL : cl_seed_split_name(jv_string_value(split));
        if (!bad && !name)
            bad = "the split is not train, test or validation";
        jv_free(split);
        if (bad) {
            jv_free(id);
            jv_free(m);
            cl_err_set(e, CL_EXIT_DATAERR, "%s:%" PRIu64 ": %s", cl_reader_name(r), l.lineno, bad);
            cl_reader_close(r);
            return -1;
        }
        m = jv_object_set(m, id, jv_string(name));
    }
    cl_reader_close(r);
    if (k < 0) {
        jv_free(m);
        return -1;
    }
    *map = m;
    return 0;
}

/* ---- sets --------------------------------------------------------------------------- */

static int seen_put(uint64_t *t, size_t cap, uint64_t key)
{
    size_t i = (size_t)(key & (cap - 1));
    while (t[i]) {
        if (t[i] == key)
            return 0;
        i = (i + 1) & (cap - 1);
    }
    t[i] = key;
    return 1;
}

int cl_seed_seen_add(cl_seed_seen *s, uint64_t key)
{
    if (key == 0) { /* 0 marks empty slots */
        int fresh = !s->has_zero;
        s->has_zero = 1;
        return fresh;
    }
    if (2 * (s->n + 1) > s->cap) {
        size_t cap = s->cap ? 2 * s->cap : 1024;
        uint64_t *t = calloc(cap, sizeof *t);
        if (!t)
            return -1;
        for (size_t i = 0; i < s->cap; i++)
            if (s->k[i])
                seen_put(t, cap, s->k[i]);
        free(s->k);
        s->k = t;
        s->cap = cap;
    }
    int fresh = seen_put(s->k, s->cap, key);
    s->n += (size_t)fresh;
    return fresh;
}

void cl_seed_seen_free(cl_seed_seen *s)
{
    free(s->k);
    memset(s, 0, sizeof *s);
}

int cl_seed_set_add(cl_seed_set *s, jv seed, double time)
{
    if (s->n == s->cap) {
        size_t cap = s->cap ? 2 * s->cap : 256;
        cl_seed_item *v = realloc(s->v, cap * sizeof *v);
        if (!v) {
            jv_free(seed);
            return -1;
        }
        s->v = v;
        s->cap = cap;
    }
    s->v[s->n].seed = seed;
    s->v[s->n].time = time;
    s->n++;
    return 0;
}

static int by_time_then_id(const void *a, const void *b)
{
    const cl_seed_item *x = a, *y = b;
    if (x->time != y->time)
        return x->time < y->time ? -1 : 1;
    return strcmp(cl_json_str(&x->seed, "id"), cl_json_str(&y->seed, "id"));
}

size_t cl_seed_set_keep_recent(cl_seed_set *s, double frac)
{
    qsort(s->v, s->n, sizeof *s->v, by_time_then_id);
    size_t keep = frac >= 1.0 ? s->n : (size_t)floor(frac * (double)s->n);
    size_t drop = s->n - keep;
    for (size_t i = 0; i < drop; i++)
        jv_free(s->v[i].seed);
    memmove(s->v, s->v + drop, keep * sizeof *s->v);
    s->n = keep;
    return drop;
}

void cl_seed_set_shuffle(cl_seed_set *s, uint64_t seed)
{
    uint64_t state = seed;
    for (size_t i = s->n; i > 1; i--) {
        state += 0x9e3779b97f4a7c15ULL;
        uint64_t r = mix64(state);
        size_t j = (size_t)(r % i);
        cl_seed_item t = s->v[i - 1];
        s->v[i - 1] = s->v[j];
        s->v[j] = t;
    }
}

void cl_seed_set_free(cl_seed_set *s)
{
    for (size_t i = 0; i < s->n; i++)
        jv_free(s->v[i].seed);
    free(s->v);
    memset(s, 0, sizeof *s);
}
