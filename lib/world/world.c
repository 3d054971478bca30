/* world.c — the offline collaboration world; see world.h. */
#include "world/world.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "collab/conv.h"
#include "core/buf.h"
#include "core/json.h"

/* ---- the families ------------------------------------------------------------------------
 * Templates: %t the topic, %o the code operator of the topic, %0 and %1 the slots' values, %n
 * the math answer (any integer when read back).  The same template renders a text and reads it
 * back, so the programs understand exactly the language the world speaks. */

typedef struct world_family {
    const char *task, *task_desc;
    const char *const *topics;
    int ntopics;
    const char *const *ops;       /* code: the operator of each topic */
    const char *const *vals[2];
    int nvals[2];
    const char *slot[2];          /* the slots' words in questions and answers */
    const char *goal;
    const char *opening[4];       /* by given bits */
    const char *answer;
} world_family;

static const char *const doc_topics[] = {"party", "picnic", "dinner", "game", "concert", "lunch", "movie", "walk", "show", "match", "trip", "talk"};
static const char *const doc_names[] = {"Sam", "Ana", "Bob", "Eva", "Max", "Lea", "Tom", "Zoe", "Kai", "Mia", "Ida", "Leo"};
static const char *const doc_days[] = {"Friday", "Monday", "Tuesday", "Wednesday", "Thursday", "Saturday", "Sunday"};
static const char *const code_topics[] = {"plus", "times", "minus"};
static const char *const code_ops[] = {"+", "*", "-"};
static const char *const code_names[] = {"f", "g", "h", "calc", "step", "move", "turn", "push", "lift", "grow", "drop", "mix"};
static const char *const code_numbers[] = {"2", "3", "4", "5", "6", "7", "8", "9"};
static const char *const math_topics[] = {"apples", "coins", "books", "cards", "shells", "stamps", "eggs", "pens", "cups", "rocks"};
static const char *const math_first[] = {"3", "1", "2", "4", "5", "6", "7", "8", "9"};
static const char *const math_second[] = {"2", "1", "3", "4", "5", "6", "7", "8", "9"};

#define N(a) ((int)(sizeof a / sizeof a[0]))

static const world_family families[CL_WORLD_NFAMILIES] = {
    [CL_WORLD_DOC] = {
        "document", "writing a short invitation note", doc_topics, N(doc_topics), NULL,
        {doc_names, doc_days}, {N(doc_names), N(doc_days)}, {"name", "day"},
        "Write a note inviting %0 to the %t on %1.",
        {"Write a note inviting a friend to the %t.", "Write a note inviting %0 to the %t.",
         "Write a note inviting a friend to the %t on %1.", "Write a note inviting %0 to the %t on %1."},
        "Dear %0, join me for the %t on %1.",
    },
    [CL_WORLD_CODE] = {
        "code", "writing a small Python function", code_topics, N(code_topics), code_ops,
        {code_names, code_numbers}, {N(code_names), N(code_numbers)}, {"name", "number"},
        "Write a Python function %0(x) that returns x %t %1.",
        {"Write a Python function that returns x %t a number.", "Write a Python function %0(x) that returns x %t a number.",
         "Write a Python function that returns x %t %1.", "Write a Python function %0(x) that returns x %t %1."},
        "def %0(x):\n    return x %o %1",
    },
    [CL_WORLD_MATH] = {
        "math", "solving a small word problem", math_topics, N(math_topics), NULL,
        {math_first, math_second}, {N(math_first), N(math_second)}, {"first number", "second number"},
        "I had %0 %t and got %1 more. How many %t do I have now?",
        {"I had some %t and got some more. How many %t do I have now?",
         "I had %0 %t and got some more. How many %t do I have now?",
         "I had some %t and got %1 more. How many %t do I have now?",
         "I had %0 %t and got %1 more. How many %t do I have now?"},
        "You have %n %t.",
    },
};

const char *cl_world_task(int family) { return families[family].task; }

static char *xstrdup(const char *s)
{
    char *p = strdup(s);
    if (!p)
        abort();
    return p;
}

static char *finish(cl_buf *b)
{
    if (b->oom)
        abort();
    if (!b->p)
        return xstrdup("");
    return b->p;
}

static long math_sum(const cl_world_item *it)
{
    return atol(math_first[it->val[0]]) + atol(math_second[it->val[1]]);
}

/* The code function's value at x. */
static long code_apply(const cl_world_item *it, long x)
{
    long n = atol(code_numbers[it->val[1]]);
    return it->topic == 0 ? x + n : it->topic == 1 ? x * n : x - n;
}

static char *render(const char *tmpl, const cl_world_item *it)
{
    const world_family *f = &families[it->family];
    cl_buf b = {0};
    for (const char *p = tmpl; *p; p++) {
        if (*p != '%' || !p[1]) {
            cl_buf_putc(&b, *p);
            continue;
        }
        p++;
        char num[32];
        switch (*p) {
        case 't': cl_buf_puts(&b, f->topics[it->topic]); break;
        case 'o': cl_buf_puts(&b, f->ops[it->topic]); break;
        case '0': cl_buf_puts(&b, f->vals[0][it->val[0]]); break;
        case '1': cl_buf_puts(&b, f->vals[1][it->val[1]]); break;
        case 'n':
            snprintf(num, sizeof num, "%ld", math_sum(it));
            cl_buf_puts(&b, num);
            break;
        default: cl_buf_putc(&b, *p);
        }
    }
    return finish(&b);
}

/* Reads text against tmpl, binding it->topic, it->val[] (and *number for %n); values already
 * bound (>= 0) must match.  Backtracks over the tables.  1 when the whole text matches. */
static int match(const world_family *f, const char *tmpl, const char *text, cl_world_item *it, long *number)
{
    if (!*tmpl)
        return !*text;
    if (*tmpl != '%' || !tmpl[1])
        return *tmpl == *text && match(f, tmpl + 1, text + 1, it, number);
    char c = tmpl[1];
    if (c == 'n') {
        const char *p = text;
        if (*p == '-')
            p++;
        if (!isdigit((unsigned char)*p))
            return 0;
        char *end;
        long x = strtol(text, &end, 10);
        if (end - text > 12)
            return 0;
        *number = x;
        return match(f, tmpl + 2, end, it, number);
    }
    const char *const *tab;
    int n, *slot;
    if (c == 't' || c == 'o')
        tab = c == 't' ? f->topics : f->ops, n = f->ntopics, slot = &it->topic;
    else if (c == '0' || c == '1')
        tab = f->vals[c - '0'], n = f->nvals[c - '0'], slot = &it->val[c - '0'];
    else
        return *text == c && match(f, tmpl + 2, text + 1, it, number);
    if (!tab)
        return 0;
    for (int i = 0; i < n; i++) {
        if (*slot >= 0 && *slot != i)
            continue;
        size_t l = strlen(tab[i]);
        if (strncmp(text, tab[i], l) != 0)
            continue;
        int was = *slot;
        *slot = i;
        if (match(f, tmpl + 2, text + l, it, number))
            return 1;
        *slot = was;
    }
    return 0;
}

/* Trimmed copy of text (models add blanks and newlines around replies). */
static char *trimmed(const char *text)
{
    while (*text && isspace((unsigned char)*text))
        text++;
    char *s = xstrdup(text);
    size_t n = strlen(s);
    while (n && isspace((unsigned char)s[n - 1]))
        s[--n] = 0;
    return s;
}

static int match_family(int fam, const char *tmpl, const char *text, cl_world_item *it, long *number)
{
    *it = (cl_world_item){.family = fam, .topic = -1, .val = {-1, -1}};
    char *t = trimmed(text);
    long dummy = 0;
    int ok = match(&families[fam], tmpl, t, it, number ? number : &dummy);
    free(t);
    return ok;
}

/* ---- tasks ----------------------------------------------------------------------------- */

static uint64_t mix(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

/* A uniform draw in [0, n) from the state *s. */
static int draw(uint64_t *s, int n)
{
    *s = mix(*s);
    return (int)((*s >> 11) % (uint64_t)n);
}

unsigned cl_world_given(const cl_world_item *it)
{
    char *g = cl_world_goal(it);
    int r = (int)(cl_hash64(g, strlen(g), 0x676976656eULL) % 100);
    free(g);
    return r < 15 ? 3u : r < 35 ? 1u : r < 55 ? 2u : 0u;
}

void cl_world_draw(uint64_t seed, uint64_t i, cl_world_item *it)
{
    uint64_t s = mix(seed ^ mix(i + 1));
    it->family = draw(&s, CL_WORLD_NFAMILIES);
    const world_family *f = &families[it->family];
    it->topic = draw(&s, f->ntopics);
    for (int k = 0; k < 2; k++)
        it->val[k] = draw(&s, 2) ? 0 : 1 + draw(&s, f->nvals[k] - 1);
    it->given = cl_world_given(it);
}

char *cl_world_goal(const cl_world_item *it) { return render(families[it->family].goal, it); }
char *cl_world_opening(const cl_world_item *it) { return render(families[it->family].opening[it->given & 3u], it); }
char *cl_world_answer(const cl_world_item *it) { return render(families[it->family].answer, it); }

char *cl_world_question(const cl_world_item *it, unsigned slots)
{
    const world_family *f = &families[it->family];
    char buf[128];
    if (slots == 3u)
        snprintf(buf, sizeof buf, "What are the %s and the %s?", f->slot[0], f->slot[1]);
    else
        snprintf(buf, sizeof buf, "What is the %s?", f->slot[slots == 2u]);
    return xstrdup(buf);
}

int cl_world_parse_goal(const char *text, cl_world_item *it)
{
    for (int fam = 0; fam < CL_WORLD_NFAMILIES; fam++)
        if (match_family(fam, families[fam].goal, text, it, NULL)) {
            it->given = cl_world_given(it);
            return 0;
        }
    return -1;
}

int cl_world_parse_opening(const char *text, cl_world_item *it)
{
    for (int fam = 0; fam < CL_WORLD_NFAMILIES; fam++)
        for (unsigned g = 0; g < 4; g++)
            if (match_family(fam, families[fam].opening[g], text, it, NULL)) {
                it->given = g;
                return 0;
            }
    return -1;
}

static char *code_test(const cl_world_item *it)
{
    const char *name = code_names[it->val[0]];
    char buf[512];
    snprintf(buf, sizeof buf,
             "import unittest\n\nclass TestCases(unittest.TestCase):\n"
             "    def test_one(self):\n        self.assertEqual(%s(1), %ld)\n"
             "    def test_four(self):\n        self.assertEqual(%s(4), %ld)\n"
             "    def test_ten(self):\n        self.assertEqual(%s(10), %ld)\n",
             name, code_apply(it, 1), name, code_apply(it, 4), name, code_apply(it, 10));
    return xstrdup(buf);
}

jv cl_world_seed(const cl_world_item *it, const char *id)
{
    const world_family *f = &families[it->family];
    char *goal = cl_world_goal(it), *opening = cl_world_opening(it), *answer = cl_world_answer(it);
    jv slots = jv_object(), usual = jv_object();
    for (int k = 0; k < 2; k++) {
        slots = cl_json_set_str(slots, f->slot[k], f->vals[k][it->val[k]]);
        usual = cl_json_set_str(usual, f->slot[k], f->vals[k][0]);
    }
    jv given = jv_array();
    for (int k = 0; k < 2; k++)
        if (it->given & (1u << k))
            given = jv_array_append(given, jv_string(f->slot[k]));
    jv w = cl_json_set_str(jv_object(), "family", f->task);
    w = cl_json_set_str(w, "topic", f->topics[it->topic]);
    w = cl_json_set(w, "slots", slots);
    w = cl_json_set(w, "usual", usual);
    w = cl_json_set(w, "given", given);
    w = cl_json_set_str(w, "opening", opening);
    jv md = cl_json_set(jv_object(), "world", w);
    char *completion = NULL;
    if (it->family == CL_WORLD_CODE) {
        char *test = code_test(it);
        md = cl_json_set_str(md, "test", test);
        free(test);
        completion = xstrdup(answer);
    } else if (it->family == CL_WORLD_MATH) {
        char num[32];
        snprintf(num, sizeof num, "%ld", math_sum(it));
        md = cl_json_set_str(md, "answer", num);
        completion = xstrdup(num);
    } else {
        completion = xstrdup(answer);
    }
    int r = (int)(cl_hash64(goal, strlen(goal), 0x73706c6974ULL) % 10);
    jv rec = cl_json_set_str(jv_object(), "id", id);
    rec = cl_json_set_str(rec, "task", f->task);
    rec = cl_json_set_str(rec, "task_desc", f->task_desc);
    rec = cl_json_set_str(rec, "prompt", goal);
    rec = cl_json_set_str(rec, "completion", completion);
    rec = cl_json_set(rec, "metadata", md);
    rec = cl_json_set_str(rec, "split", r == 0 ? "test" : r == 1 ? "validation" : "train");
    free(goal);
    free(opening);
    free(answer);
    free(completion);
    return rec;
}

/* ---- replies ----------------------------------------------------------------------------- */

/* Whether word occurs in text as a whole word, ignoring case. */
static int has_word(const char *text, const char *word)
{
    size_t l = strlen(word);
    for (const char *p = text; *p; p++) {
        if (strncasecmp(p, word, l) != 0)
            continue;
        int left = p == text || !isalnum((unsigned char)p[-1]);
        int right = !isalnum((unsigned char)p[l]);
        if (left && right)
            return 1;
    }
    return 0;
}

void cl_world_read_reply(int family, const char *text, cl_world_reply *r)
{
    const world_family *f = &families[family];
    *r = (cl_world_reply){.kind = CL_WORLD_MALFORMED, .val = {-1, -1}, .topic = -1, .number = 0};
    if (!text)
        return;
    if (strchr(text, '?')) {
        r->kind = CL_WORLD_QUESTION;
        /* math's words share "number": only "first" and "second" tell its slots apart */
        for (int k = 0; k < 2; k++) {
            const char *w = f->slot[k];
            char key[32];
            snprintf(key, sizeof key, "%.*s", (int)strcspn(w, " "), w);
            if (has_word(text, key))
                r->asks |= 1u << k;
        }
        return;
    }
    cl_world_item it;
    long number = 0;
    if (match_family(family, f->answer, text, &it, &number)) {
        r->kind = CL_WORLD_ANSWER;
        r->topic = it.topic;
        r->val[0] = it.val[0];
        r->val[1] = it.val[1];
        r->number = number;
    }
}

int cl_world_well_formed(const cl_world_reply *r)
{
    return r->kind == CL_WORLD_ANSWER || (r->kind == CL_WORLD_QUESTION && r->asks);
}

int cl_world_answer_right(const cl_world_item *it, const cl_world_reply *r)
{
    if (r->kind != CL_WORLD_ANSWER || r->topic != it->topic)
        return 0;
    if (it->family == CL_WORLD_MATH)
        return r->number == math_sum(it);
    return r->val[0] == it->val[0] && r->val[1] == it->val[1];
}

/* ---- the user ------------------------------------------------------------------------------ */

static const char *msg_role(const jv *m) { return jv_get_kind(*m) == JV_KIND_OBJECT ? cl_json_str(m, "role") : NULL; }

/* The messages that are not system messages, in order (owned array). */
static jv dialogue(const jv *msgs)
{
    jv out = jv_array();
    int n = jv_get_kind(*msgs) == JV_KIND_ARRAY ? jv_array_length(jv_copy(*msgs)) : 0;
    for (int i = 0; i < n; i++) {
        jv m = jv_array_get(jv_copy(*msgs), i);
        const char *r = msg_role(&m);
        if (r && strcmp(r, "system") != 0 && cl_json_str(&m, "content"))
            out = jv_array_append(out, m);
        else
            jv_free(m);
    }
    return out;
}

static const char *content_at(const jv *d, int i)
{
    jv m = jv_array_get(jv_copy(*d), i);
    const char *s = cl_json_str(&m, "content");
    jv_free(m); /* the array keeps the string alive */
    return s;
}

static int role_is(const jv *d, int i, const char *role)
{
    jv m = jv_array_get(jv_copy(*d), i);
    const char *r = msg_role(&m);
    int yes = r && strcmp(r, role) == 0;
    jv_free(m);
    return yes;
}

/* "The name is Ana. The day is Monday." for the slots in `slots`; terse: "Ana, Monday." */
static void tell(cl_buf *b, const cl_world_item *it, unsigned slots, int terse)
{
    const world_family *f = &families[it->family];
    int first = 1;
    for (int k = 0; k < 2; k++) {
        if (!(slots & (1u << k)))
            continue;
        const char *v = f->vals[k][it->val[k]];
        if (terse) {
            cl_buf_puts(b, first ? "" : ", ");
            cl_buf_puts(b, v);
        } else {
            cl_buf_puts(b, first ? "The " : " The ");
            cl_buf_puts(b, f->slot[k]);
            cl_buf_puts(b, " is ");
            cl_buf_puts(b, v);
            cl_buf_putc(b, '.');
        }
        first = 0;
    }
    if (terse && !first)
        cl_buf_putc(b, '.');
}

/* The user's reply to assistant message `text` when it already knows `known` (the opening's
 * details and those it told since).  *over: the chat ends. */
static void user_reply(cl_buf *b, const cl_world_item *it, unsigned *known, const char *text, int *over)
{
    cl_world_reply r;
    cl_world_read_reply(it->family, text, &r);
    *over = 0;
    if (r.kind == CL_WORLD_QUESTION) {
        unsigned fresh = r.asks & ~*known, again = r.asks & *known;
        if (fresh)
            tell(b, it, fresh, 0);
        else if (again)
            tell(b, it, again, 1);
        else
            cl_buf_puts(b, "I do not understand the question.");
        *known |= r.asks;
        return;
    }
    *over = 1;
    if (r.kind == CL_WORLD_MALFORMED) {
        cl_buf_puts(b, "That is not what I asked for.");
    } else if (cl_world_answer_right(it, &r)) {
        cl_buf_puts(b, "Thank you, that is right.");
    } else {
        /* the details that were wrong (a math answer shows none: both numbers; a wrong topic
         * alone: both details, so that the correction always says something) */
        unsigned wrong = 0;
        for (int k = 0; k < 2; k++)
            if (r.val[k] != it->val[k])
                wrong |= 1u << k;
        cl_buf_puts(b, "No, that is wrong. ");
        tell(b, it, wrong ? wrong : 3u, 0);
    }
}

char *cl_world_user(const char *goal, const jv *msgs, const char *marker)
{
    cl_world_item it;
    if (!goal || cl_world_parse_goal(goal, &it) < 0)
        return NULL;
    jv d = dialogue(msgs);
    int n = jv_array_length(jv_copy(d));
    if (n == 0) {
        jv_free(d);
        return cl_world_opening(&it);
    }
    /* Replay the conversation so that what the user told before counts as known. */
    unsigned known = it.given;
    cl_buf b = {0};
    int over = 0;
    for (int i = 0; i < n; i++) {
        if (!role_is(&d, i, "assistant"))
            continue;
        b.n = 0;
        if (b.p)
            b.p[0] = 0;
        user_reply(&b, &it, &known, content_at(&d, i), &over);
    }
    jv_free(d);
    if (!b.n)
        cl_buf_puts(&b, "Please go on.");
    if (over && marker && *marker) {
        cl_buf_putc(&b, ' ');
        cl_buf_puts(&b, marker);
    }
    return finish(&b);
}

/* ---- the assistants ------------------------------------------------------------------------ */

/* The values the user told in messages after the opening ("The name is Ana."), into it. */
static void told_values(const jv *d, cl_world_item *it, unsigned *known)
{
    const world_family *f = &families[it->family];
    int n = jv_array_length(jv_copy(*d));
    for (int i = 1; i < n; i++) {
        if (!role_is(d, i, "user"))
            continue;
        const char *s = content_at(d, i);
        for (int k = 0; k < 2; k++) {
            char pre[64];
            snprintf(pre, sizeof pre, "The %s is ", f->slot[k]);
            const char *p = strstr(s, pre);
            if (!p)
                continue;
            p += strlen(pre);
            for (int v = 0; v < f->nvals[k]; v++) {
                size_t l = strlen(f->vals[k][v]);
                if (strncmp(p, f->vals[k][v], l) == 0 && (p[l] == '.' || p[l] == ' ' || !p[l])) {
                    it->val[k] = v;
                    *known |= 1u << k;
                }
            }
        }
    }
}

char *cl_world_assistant(cl_world_policy policy, const jv *msgs, uint64_t h)
{
    jv d = dialogue(msgs);
    int n = jv_array_length(jv_copy(d));
    cl_world_item it;
    if (n == 0 || !role_is(&d, 0, "user") || cl_world_parse_opening(content_at(&d, 0), &it) < 0) {
        jv_free(d);
        return NULL;
    }
    unsigned known = it.given;
    told_values(&d, &it, &known);
    int asked = 0;
    for (int i = 1; i < n; i++)
        asked |= role_is(&d, i, "assistant");
    jv_free(d);
    unsigned missing = 3u & ~known;
    if (!asked && policy == CL_WORLD_ASK)
        return cl_world_question(&it, missing ? missing : 3u);
    int ask = missing && !asked &&
              (policy == CL_WORLD_CAREFUL || (policy == CL_WORLD_PASSIVE && mix(h) % 10 == 0));
    if (ask)
        return cl_world_question(&it, missing);
    for (int k = 0; k < 2; k++)
        if (it.val[k] < 0)
            it.val[k] = 0; /* the usual value */
    return cl_world_answer(&it);
}

/* ---- the judges ---------------------------------------------------------------------------- */

jv cl_world_transcript_messages(const char *text)
{
    static const struct { const char *tag, *role; } roles[] = {
        {"**User**: ", "user"}, {"**Assistant**: ", "assistant"}, {"**System**: ", "system"}};
    jv out = jv_array();
    const char *p = text;
    const char *role = NULL, *start = NULL;
    for (;;) {
        int at_line = p == text || p[-1] == '\n';
        int which = -1;
        if (at_line)
            for (int i = 0; i < 3; i++)
                if (strncmp(p, roles[i].tag, strlen(roles[i].tag)) == 0)
                    which = i;
        if (which >= 0 || !*p) {
            if (role) {
                const char *end = p;
                if (*p && end > start && end[-1] == '\n')
                    end--;
                jv c = jv_string_sized(start, (int)(end - start));
                out = jv_array_append(out, cl_json_set(cl_json_set_str(jv_object(), "role", role), "content", c));
            }
            if (!*p)
                break;
            role = roles[which].role;
            start = p + strlen(roles[which].tag);
            p = start;
            continue;
        }
        p++;
    }
    return out;
}

/* The text between open and close in prompt, malloc'd, or NULL. */
static char *between(const char *prompt, const char *open, const char *close)
{
    const char *a = strstr(prompt, open);
    if (!a)
        return NULL;
    a += strlen(open);
    const char *z = strstr(a, close);
    if (!z)
        return NULL;
    while (a < z && *a == '\n')
        a++;
    while (z > a && z[-1] == '\n')
        z--;
    char *s = malloc((size_t)(z - a) + 1);
    if (!s)
        abort();
    memcpy(s, a, (size_t)(z - a));
    s[z - a] = 0;
    return s;
}

/* The opening of a conversation: the first user message of history + window. */
static int opening_of(const jv *all, cl_world_item *it)
{
    int n = jv_array_length(jv_copy(*all));
    for (int i = 0; i < n; i++)
        if (role_is(all, i, "user"))
            return cl_world_parse_opening(content_at(all, i), it);
    return -1;
}

double cl_world_interactivity(const jv *history, const jv *window)
{
    jv h = dialogue(history), w = dialogue(window);
    jv all = jv_array_concat(jv_copy(h), jv_copy(w));
    cl_world_item it;
    double score = 0;
    if (opening_of(&all, &it) == 0) {
        unsigned known = it.given;
        /* what the user told before the window counts as known */
        int nh = jv_array_length(jv_copy(h));
        for (int i = 0; i < nh; i++)
            if (role_is(&h, i, "assistant")) {
                cl_world_reply r;
                cl_world_read_reply(it.family, content_at(&h, i), &r);
                if (r.kind == CL_WORLD_QUESTION)
                    known |= r.asks;
            }
        unsigned lacked = 3u & ~known, asked = 0;
        int needless = 0, answered = 0, useful = 0;
        int nw = jv_array_length(jv_copy(w));
        for (int i = 0; i < nw && !answered; i++) {
            if (!role_is(&w, i, "assistant"))
                continue;
            cl_world_reply r;
            cl_world_read_reply(it.family, content_at(&w, i), &r);
            if (r.kind == CL_WORLD_QUESTION) {
                if (r.asks & ~known & ~asked)
                    useful = 1;
                else
                    needless = 1;
                asked |= r.asks & lacked;
                known |= r.asks;
            } else {
                answered = 1;
            }
        }
        if (needless && !useful)
            score = 0;
        else if (!lacked || asked == lacked)
            score = needless ? 0.5 : 1;
        else
            score = asked ? 0.5 : 0;
    }
    jv_free(all);
    jv_free(h);
    jv_free(w);
    return score;
}

/* The last reply of the assistant in msgs that is not a question, or NULL (borrowed). */
static const char *last_answer(const jv *msgs)
{
    int n = jv_array_length(jv_copy(*msgs));
    for (int i = n - 1; i >= 0; i--)
        if (role_is(msgs, i, "assistant")) {
            const char *s = content_at(msgs, i);
            if (!strchr(s, '?'))
                return s;
        }
    return NULL;
}

/* The number in a math answer: the last integer of the text; 0 with none. */
static int last_integer(const char *s, long *x)
{
    int found = 0;
    for (const char *p = s; *p; p++)
        if (isdigit((unsigned char)*p) && (p == s || !isdigit((unsigned char)p[-1]))) {
            *x = strtol(p, NULL, 10);
            if (p > s && p[-1] == '-')
                *x = -*x;
            found = 1;
        }
    return found;
}

static char *json_reply(const char *member, jv value)
{
    jv o = cl_json_set(cl_json_set_str(jv_object(), "thought", "world judge"), member, value);
    char *s = cl_json_dump(&o, NULL);
    jv_free(o);
    if (!s)
        abort();
    return s;
}

char *cl_world_judge(const char *prompt, const char **why)
{
    if (strstr(prompt, "\"final_completion\"")) {
        char *conv = between(prompt, "<conversation>", "</conversation>");
        if (!conv) {
            *why = "the extraction prompt has no <conversation>";
            return NULL;
        }
        jv msgs = cl_world_transcript_messages(conv);
        free(conv);
        cl_world_item it;
        const char *ans = last_answer(&msgs);
        char *out;
        if (ans && opening_of(&msgs, &it) == 0 && it.family == CL_WORLD_MATH) {
            long x;
            char num[32] = "";
            if (last_integer(ans, &x))
                snprintf(num, sizeof num, "%ld", x);
            out = json_reply("final_completion", jv_string(num));
        } else {
            char *t = trimmed(ans ? ans : "");
            out = json_reply("final_completion", jv_string(t));
            free(t);
        }
        jv_free(msgs);
        return out;
    }
    if (strstr(prompt, "\"interactivity\"")) {
        char *conv = between(prompt, "<conversation>", "</conversation>");
        char *hist = between(prompt, "<history>", "</history>");
        if (!conv) {
            free(hist);
            *why = "the interactivity prompt has no <conversation>";
            return NULL;
        }
        jv h = hist ? cl_world_transcript_messages(hist) : jv_array();
        jv w = cl_world_transcript_messages(conv);
        double s = cl_world_interactivity(&h, &w);
        jv_free(h);
        jv_free(w);
        free(conv);
        free(hist);
        /* the paper's scale: 1 barely, 2 partly, 3 highly interactive */
        if (strstr(prompt, "from 1 to 3"))
            s = 1 + 2 * s;
        return json_reply("interactivity", jv_number(s));
    }
    if (strstr(prompt, "\"accuracy\"")) {
        char *ref = between(prompt, "<reference>", "</reference>");
        char *resp = between(prompt, "<response>", "</response>");
        int right = 0;
        if (ref && resp) {
            const char *ans = resp;
            jv msgs = jv_null();
            if (strstr(resp, "**Assistant**: ")) {
                msgs = cl_world_transcript_messages(resp);
                ans = last_answer(&msgs);
            }
            /* With the goal (the seed's prompt) the answer must be the family's well-formed
             * answer and right, as the user judges it (an extracted math answer may be the bare
             * number); otherwise a number (math) is compared as a number, any other reference
             * (the note, the function) as the exact text.  Either way accuracy is the task's
             * success in every family. */
            char *q = between(prompt, "<question>", "</question>");
            cl_world_item it;
            char *end;
            long want = strtol(ref, &end, 10), got;
            if (q && cl_world_parse_goal(q, &it) == 0) {
                cl_world_reply r;
                cl_world_read_reply(it.family, ans, &r);
                char *bare = trimmed(ans ? ans : "");
                long x = strtol(bare, &end, 10);
                right = cl_world_answer_right(&it, &r) ||
                        (it.family == CL_WORLD_MATH && *bare && !*end && x == math_sum(&it));
                free(bare);
            } else if (end != ref && !*end) {
                right = ans && last_integer(ans, &got) && got == want;
            } else if (ans) {
                char *t = trimmed(ans), *r = trimmed(ref);
                right = strcmp(t, r) == 0;
                free(t);
                free(r);
            }
            jv_free(msgs);
            free(q);
        }
        int ok = ref && resp;
        free(ref);
        free(resp);
        if (!ok) {
            *why = "the accuracy prompt has no <reference> or <response>";
            return NULL;
        }
        return json_reply("accuracy", jv_number(right));
    }
    *why = "world judges do extraction, interactivity and accuracy only";
    return NULL;
}
