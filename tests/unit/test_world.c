/* Unit tests for lib/world: the user simulator and the judges on hand-written transcripts, the
 * judges' replies read back by collab/judge.c from prompts it rendered itself, and the world's
 * language read back by the same templates that wrote it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "collab/conv.h"
#include "collab/judge.h"
#include "core/json.h"
#include "world/world.h"

#define M CL_TERMINATE_MARKER

/* Goals whose openings are fixed by the world (the hash of the goal): this one gives the day
 * only, the math one nothing, the code one both details. */
static const char doc_goal[] = "Write a note inviting Sam to the lunch on Wednesday.";
static const char doc_open[] = "Write a note inviting a friend to the lunch on Wednesday.";

/* A conversation from alternating lines, the opening first. */
static jv conv(const char *const *lines)
{
    jv m = jv_array();
    for (int i = 0; lines[i]; i++)
        m = cl_conv_append(m, i % 2 ? "assistant" : "user", lines[i]);
    return m;
}

static void user_says(const char *goal, const char *const *lines, const char *want)
{
    jv m = conv(lines);
    char *got = cl_world_user(goal, &m, M);
    assert_non_null(got);
    assert_string_equal(got, want);
    free(got);
    jv_free(m);
}

static void user_opens_and_answers_what_is_asked(void **state)
{
    (void)state;
    user_says(doc_goal, (const char *const[]){NULL}, doc_open);
    user_says(doc_goal, (const char *const[]){doc_open, "What is the name?", NULL}, "The name is Sam.");
    user_says(doc_goal, (const char *const[]){doc_open, "What is the name?", "The name is Sam.",
                                              "Dear Sam, join me for the lunch on Wednesday.", NULL},
              "Thank you, that is right. " M);
    /* a question it does not recognise gets no detail */
    user_says(doc_goal, (const char *const[]){doc_open, "Anything else?", NULL}, "I do not understand the question.");
}

static void a_wrong_guess_is_corrected_and_the_user_gives_up(void **state)
{
    (void)state;
    user_says(doc_goal, (const char *const[]){doc_open, "Dear Ana, join me for the lunch on Wednesday.", NULL},
              "No, that is wrong. The name is Sam. " M);
    user_says(doc_goal, (const char *const[]){doc_open, "Dear Ana, join me for the lunch on Friday.", NULL},
              "No, that is wrong. The name is Sam. The day is Wednesday. " M);
    user_says(doc_goal, (const char *const[]){doc_open, "Hello there.", NULL}, "That is not what I asked for. " M);
    const char *g = "I had 4 coins and got 7 more. How many coins do I have now?";
    user_says(g, (const char *const[]){"I had some coins and got some more. How many coins do I have now?",
                                      "You have 5 coins.", NULL},
              "No, that is wrong. The first number is 4. The second number is 7. " M);
}

static void needless_and_repeated_questions_get_terse_answers(void **state)
{
    (void)state;
    /* the day was in the opening */
    user_says(doc_goal, (const char *const[]){doc_open, "What is the day?", NULL}, "Wednesday.");
    user_says(doc_goal, (const char *const[]){doc_open, "What is the name?", "The name is Sam.", "What is the name?",
                                              NULL},
              "Sam.");
    user_says(doc_goal, (const char *const[]){doc_open, "What are the name and the day?", NULL}, "The name is Sam.");
}

static void every_task_reads_back_through_its_own_templates(void **state)
{
    (void)state;
    int seen[CL_WORLD_NFAMILIES] = {0};
    for (uint64_t i = 0; i < 600; i++) {
        cl_world_item it, back, op;
        cl_world_draw(7, i, &it);
        seen[it.family]++;
        char *goal = cl_world_goal(&it), *open = cl_world_opening(&it), *ans = cl_world_answer(&it);
        assert_int_equal(cl_world_parse_goal(goal, &back), 0);
        assert_memory_equal(&back, &it, sizeof it);
        assert_int_equal(cl_world_parse_opening(open, &op), 0);
        assert_int_equal(op.family, it.family);
        assert_int_equal(op.given, it.given);
        for (int k = 0; k < 2; k++)
            assert_int_equal(op.val[k], it.given & (1u << k) ? it.val[k] : -1);
        cl_world_reply r;
        cl_world_read_reply(it.family, ans, &r);
        assert_int_equal(r.kind, CL_WORLD_ANSWER);
        assert_true(cl_world_answer_right(&it, &r));
        assert_true(cl_world_well_formed(&r));
        char *q = cl_world_question(&it, 3u);
        cl_world_read_reply(it.family, q, &r);
        assert_int_equal(r.kind, CL_WORLD_QUESTION);
        assert_int_equal(r.asks, 3u);
        free(q);
        free(goal);
        free(open);
        free(ans);
    }
    for (int f = 0; f < CL_WORLD_NFAMILIES; f++)
        assert_true(seen[f] > 100);
}

static void scripted_assistants_follow_their_policies(void **state)
{
    (void)state;
    jv m = conv((const char *const[]){doc_open, NULL});
    char *careful = cl_world_assistant(CL_WORLD_CAREFUL, &m, 0);
    char *guess = cl_world_assistant(CL_WORLD_GUESS, &m, 0);
    assert_string_equal(careful, "What is the name?");
    assert_string_equal(guess, "Dear Sam, join me for the lunch on Wednesday.");
    int asks = 0;
    for (uint64_t h = 0; h < 1000; h++) {
        char *p = cl_world_assistant(CL_WORLD_PASSIVE, &m, h);
        asks += strchr(p, '?') != NULL;
        free(p);
    }
    assert_in_range(asks, 60, 140); /* one in ten */
    free(careful);
    free(guess);
    jv_free(m);
    m = conv((const char *const[]){doc_open, "What is the name?", "The name is Ana.", NULL});
    careful = cl_world_assistant(CL_WORLD_CAREFUL, &m, 0);
    assert_string_equal(careful, "Dear Ana, join me for the lunch on Wednesday.");
    free(careful);
    jv_free(m);
    m = conv((const char *const[]){"Hello", NULL});
    assert_null(cl_world_assistant(CL_WORLD_CAREFUL, &m, 0));
    jv_free(m);
}

/* Asks judge k of collab/judge.c about rec through the world judge; returns the score. */
static double judged(cl_judge_kind k, const char *artefact, const jv *rec, char **text)
{
    cl_judge_config cfg = {.kinds = 1u << k, .artefact = artefact, .context_full = 1};
    cl_err e = {0};
    cl_judge *j = cl_judge_new(&cfg, &e);
    assert_non_null(j);
    cl_judge_unit *u;
    int n;
    assert_int_equal(cl_judge_units(rec, &u, &n, &e), 0);
    assert_int_equal(n, 1);
    jv req = cl_judge_request(j, k, rec, &u[0], &e);
    assert_true(jv_is_valid(req));
    jv m0 = jv_array_get(req, 0);
    const char *why = NULL;
    char *reply = cl_world_judge(cl_json_str(&m0, "content"), &why);
    assert_non_null(reply);
    double raw = -1;
    assert_int_equal(cl_judge_parse(j, k, reply, &raw, text, &e), 0);
    free(reply);
    jv_free(m0);
    cl_judge_units_free(u, n);
    cl_judge_free(j);
    return raw;
}

static jv record_of(const char *goal, const char *const *lines, const char *completion)
{
    jv r = cl_json_set_str(cl_json_set_str(jv_object(), "id", "x"), "prompt", goal);
    r = cl_json_set_str(r, "completion", completion);
    return cl_json_set(r, "messages", conv(lines));
}

static jv record(const char *const *lines, const char *completion) { return record_of(doc_goal, lines, completion); }

static void judges_rate_asking_and_extract_the_last_answer(void **state)
{
    (void)state;
    const char *asked[] = {doc_open, "What is the name?", "The name is Sam.",
                           "Dear Sam, join me for the lunch on Wednesday.", "Thank you, that is right. " M, NULL};
    const char *guessed[] = {doc_open, "Dear Ana, join me for the lunch on Wednesday.",
                             "No, that is wrong. The name is Sam. " M, NULL};
    const char *needless[] = {doc_open, "What is the day?", "Wednesday.", NULL};
    jv r = record(asked, "x");
    char *text = NULL;
    assert_true(judged(CL_JUDGE_INTERACTIVITY, "document", &r, NULL) == 1.0);
    judged(CL_JUDGE_EXTRACT, "document", &r, &text);
    assert_string_equal(text, "Dear Sam, join me for the lunch on Wednesday.");
    free(text);
    jv_free(r);
    r = record(guessed, "x");
    assert_true(judged(CL_JUDGE_INTERACTIVITY, "document", &r, NULL) == 0.0);
    jv_free(r);
    r = record(needless, "x");
    assert_true(judged(CL_JUDGE_INTERACTIVITY, "document", &r, NULL) == 0.0);
    text = NULL;
    judged(CL_JUDGE_EXTRACT, "document", &r, &text);
    assert_string_equal(text, ""); /* no answer yet */
    free(text);
    jv_free(r);
    /* math: the accuracy judge compares the last answer with the reference */
    const char *math[] = {"I had some coins and got some more. How many coins do I have now?",
                          "What are the first number and the second number?",
                          "The first number is 4. The second number is 7.", "You have 11 coins.", NULL};
    const char *mg = "I had 4 coins and got 7 more. How many coins do I have now?";
    r = record_of(mg, math, "11");
    assert_true(judged(CL_JUDGE_ACCURACY, "answer", &r, NULL) == 1.0);
    assert_true(judged(CL_JUDGE_INTERACTIVITY, "answer", &r, NULL) == 1.0);
    text = NULL;
    judged(CL_JUDGE_EXTRACT, "answer", &r, &text);
    assert_string_equal(text, "11");
    free(text);
    jv_free(r);
    r = record_of("I had 4 coins and got 8 more. How many coins do I have now?", math, "12");
    assert_true(judged(CL_JUDGE_ACCURACY, "answer", &r, NULL) == 0.0);
    jv_free(r);
    /* the right number in an answer that is not well-formed is no success */
    const char *garbled[] = {math[0], math[1], math[2], "You have E11ks.", NULL};
    r = record_of(mg, garbled, "11");
    assert_true(judged(CL_JUDGE_ACCURACY, "answer", &r, NULL) == 0.0);
    jv_free(r);
    /* a reference that is no number: the exact answer is the success */
    r = record(asked, "Dear Sam, join me for the lunch on Wednesday.");
    assert_true(judged(CL_JUDGE_ACCURACY, "document", &r, NULL) == 1.0);
    jv_free(r);
    r = record(guessed, "Dear Sam, join me for the lunch on Wednesday.");
    assert_true(judged(CL_JUDGE_ACCURACY, "document", &r, NULL) == 0.0);
    jv_free(r);
    const char *why = NULL;
    assert_null(cl_world_judge("Rate the helpfulness: {\"helpfulness\": 1}", &why));
    assert_non_null(why);
}

static void the_window_counts_what_the_history_already_told(void **state)
{
    (void)state;
    jv h = conv((const char *const[]){doc_open, "What is the name?", "The name is Sam.", NULL});
    jv w = jv_array();
    w = cl_conv_append(w, "assistant", "Dear Sam, join me for the lunch on Wednesday.");
    assert_true(cl_world_interactivity(&h, &w) == 1.0); /* nothing was missing any more */
    jv_free(w);
    w = cl_conv_append(jv_array(), "assistant", "What is the name?");
    assert_true(cl_world_interactivity(&h, &w) == 0.0); /* asked again */
    jv_free(w);
    jv_free(h);
    /* asked one of two missing details, then guessed the other */
    const char *g = "I had some coins and got some more. How many coins do I have now?";
    h = jv_array();
    w = conv((const char *const[]){g, "What is the first number?", "The first number is 4.", "You have 6 coins.", NULL});
    assert_true(cl_world_interactivity(&h, &w) == 0.5);
    jv_free(w);
    jv_free(h);
}

static void transcripts_split_back_into_messages(void **state)
{
    (void)state;
    jv m = conv((const char *const[]){"a\nb", "def f(x):\n    return x + 2", "c", NULL});
    char *t = cl_conv_render(&m);
    jv back = cl_world_transcript_messages(t);
    assert_true(jv_equal(jv_copy(m), back));
    free(t);
    jv_free(m);
}

static void seeds_carry_their_references_and_a_stable_split(void **state)
{
    (void)state;
    cl_world_item it;
    assert_int_equal(cl_world_parse_goal("Write a Python function g(x) that returns x times 7.", &it), 0);
    jv s = cl_world_seed(&it, "w1");
    assert_string_equal(cl_json_str(&s, "task"), "code");
    assert_string_equal(cl_json_str(&s, "completion"), "def g(x):\n    return x * 7");
    jv md = cl_json_get(&s, "metadata");
    assert_non_null(strstr(cl_json_str(&md, "test"), "self.assertEqual(g(4), 28)"));
    jv s2 = cl_world_seed(&it, "w2");
    assert_string_equal(cl_json_str(&s, "split"), cl_json_str(&s2, "split"));
    jv_free(md);
    jv_free(s);
    jv_free(s2);
    assert_int_equal(cl_world_parse_goal("Write a poem.", &it), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(user_opens_and_answers_what_is_asked),
        cmocka_unit_test(a_wrong_guess_is_corrected_and_the_user_gives_up),
        cmocka_unit_test(needless_and_repeated_questions_get_terse_answers),
        cmocka_unit_test(every_task_reads_back_through_its_own_templates),
        cmocka_unit_test(scripted_assistants_follow_their_policies),
        cmocka_unit_test(judges_rate_asking_and_extract_the_last_answer),
        cmocka_unit_test(the_window_counts_what_the_history_already_told),
        cmocka_unit_test(transcripts_split_back_into_messages),
        cmocka_unit_test(seeds_carry_their_references_and_a_stable_split),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
