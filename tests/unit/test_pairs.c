/* Unit tests for lib/collab/pairs: ranking, floors, pairs, the advance rules and the flat rows. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "core/json.h"
#include "collab/pairs.h"

static jv J(const char *s)
{
    jv v = jv_parse(s);
    assert_true(jv_is_valid(v));
    return v;
}

/* Compact JSON text of v (borrowed) compared with want, keys sorted. */
static void assert_json(const jv *v, const char *want)
{
    jv a = jv_dump_string(jv_copy(*v), JV_PRINT_SORTED), b = jv_dump_string(J(want), JV_PRINT_SORTED);
    assert_string_equal(jv_string_value(a), jv_string_value(b));
    jv_free(a);
    jv_free(b);
}

static void rank_orders_by_mean_then_std_then_position(void **state)
{
    (void)state;
    cl_err e = {0};
    cl_mr_rank r;
    jv c = J("[{\"mr\":{\"mean\":0.5,\"std\":0.2}},{\"mr\":{\"mean\":0.7,\"std\":0.3}},"
             "{\"mr\":{\"mean\":0.7,\"std\":0.1}},{\"mr\":{\"mean\":0.1}}]");
    assert_int_equal(mr_rank(&c, &r, &e), 0);
    assert_int_equal(r.best, 2); /* equal means: the steadier reply */
    assert_int_equal(r.worst, 3);
    assert_true(r.best_mean == 0.7 && r.worst_mean == 0.1);
    jv_free(c);
    /* All equal: first is best, last is worst, so a pair never holds one reply twice. */
    c = J("[{\"mr\":{\"mean\":0.5,\"std\":0.1}},{\"mr\":{\"mean\":0.5,\"std\":0.1}},{\"mr\":{\"mean\":0.5,\"std\":0.1}}]");
    assert_int_equal(mr_rank(&c, &r, &e), 0);
    assert_int_equal(r.best, 0);
    assert_int_equal(r.worst, 2);
    jv_free(c);
    /* Of equal lowest means the unsteadier one is rejected. */
    c = J("[{\"mr\":{\"mean\":0.9}},{\"mr\":{\"mean\":0.2,\"std\":0.3}},{\"mr\":{\"mean\":0.2,\"std\":0.1}}]");
    assert_int_equal(mr_rank(&c, &r, &e), 0);
    assert_int_equal(r.worst, 1);
    jv_free(c);
}

static void rank_names_a_missing_mr(void **state)
{
    (void)state;
    cl_err e = {0};
    cl_mr_rank r;
    jv c = J("[{\"mr\":{\"mean\":0.5}},{\"mr\":{\"std\":0.1}}]");
    assert_int_equal(mr_rank(&c, &r, &e), -1);
    assert_int_equal(e.code, CL_EXIT_DATAERR);
    assert_non_null(strstr(e.msg, "candidates[1].mr.mean"));
    jv_free(c);
    c = J("[{\"content\":\"x\"}]");
    assert_int_equal(mr_rank(&c, &r, &e), -1);
    assert_non_null(strstr(e.msg, "cl-reward"));
    jv_free(c);
}

static void floors_parse_and_hold(void **state)
{
    (void)state;
    cl_err e = {0};
    cl_floor f;
    assert_int_equal(cl_floor_parse("accuracy>=0.5", &f, &e), 0);
    assert_string_equal(f.metric, "accuracy");
    assert_string_equal(f.op, ">=");
    assert_true(cl_floor_holds(&f, 0.5) && !cl_floor_holds(&f, 0.49));
    assert_int_equal(cl_floor_parse("tokens<2e3", &f, &e), 0);
    assert_true(cl_floor_holds(&f, 1999) && !cl_floor_holds(&f, 2000));
    assert_int_equal(cl_floor_parse("bleu>0", &f, &e), 0);
    assert_false(cl_floor_holds(&f, 0));
    const char *bad[] = {"accuracy", ">=0.5", "accuracy>=", "accuracy>=x", "accuracy>=1 2", NULL};
    for (int i = 0; bad[i]; i++) {
        assert_int_equal(cl_floor_parse(bad[i], &f, &e), -1);
        assert_int_equal(e.code, CL_EXIT_USAGE);
    }
}

static jv branch_with_means(double a, double b)
{
    char buf[512];
    snprintf(buf, sizeof buf,
             "{\"id\":\"k\",\"turn\":0,\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],"
             "\"candidates\":[{\"id\":\"c0\",\"content\":\"A\",\"mr\":{\"mean\":%.17g}},"
             "{\"id\":\"c1\",\"content\":\"B\",\"mr\":{\"mean\":%.17g}}]}", a, b);
    return J(buf);
}

static void pair_gap_is_decimal_exact(void **state)
{
    (void)state;
    cl_err e = {0};
    cl_pair_config cfg = {.min_gap = 0.02};
    jv pair;
    jv b = branch_with_means(0.28, 0.30); /* 0.30 - 0.28 < 0.02 in binary */
    assert_int_equal(dpo_pair(&b, &cfg, &pair, &e), 1);
    assert_json(&pair, "{\"id\":\"k/t0\",\"conv_id\":\"k\",\"turn\":0,"
                       "\"prompt\":[{\"role\":\"user\",\"content\":\"hi\"}],"
                       "\"chosen\":[{\"role\":\"assistant\",\"content\":\"B\"}],"
                       "\"rejected\":[{\"role\":\"assistant\",\"content\":\"A\"}],"
                       "\"score_chosen\":0.3,\"score_rejected\":0.28,"
                       "\"chosen_candidate\":\"c1\",\"rejected_candidate\":\"c0\"}");
    jv_free(pair);
    jv_free(b);
    b = branch_with_means(0.5, 0.49);
    assert_int_equal(dpo_pair(&b, &cfg, &pair, &e), 0);
    cfg.min_gap = 0.01;
    assert_int_equal(dpo_pair(&b, &cfg, &pair, &e), 1);
    jv_free(pair);
    jv_free(b);
}

static void system_prompt_is_prepended_once(void **state)
{
    (void)state;
    cl_err e = {0};
    cl_pair_config cfg = {.min_gap = 0, .system_prompt = "Be collaborative."};
    jv pair;
    jv b = branch_with_means(0.1, 0.9);
    jv before = jv_copy(b);
    assert_int_equal(dpo_pair(&b, &cfg, &pair, &e), 1);
    jv p = cl_json_get(&pair, "prompt");
    assert_json(&p, "[{\"role\":\"system\",\"content\":\"Be collaborative.\"},{\"role\":\"user\",\"content\":\"hi\"}]");
    assert_true(jv_equal(jv_copy(b), before)); /* the input is not touched */
    jv_free(p);
    jv_free(pair);
    jv_free(b);
    b = J("{\"id\":\"k\",\"messages\":[{\"role\":\"system\",\"content\":\"own\"},{\"role\":\"user\",\"content\":\"hi\"}],"
          "\"candidates\":[{\"content\":\"A\",\"mr\":{\"mean\":1}},{\"content\":\"B\",\"mr\":{\"mean\":0}}]}");
    assert_int_equal(dpo_pair(&b, &cfg, &pair, &e), 1);
    p = cl_json_get(&pair, "prompt");
    assert_int_equal(jv_array_length(jv_copy(p)), 2);
    assert_json(&pair, "{\"id\":\"k/t0\",\"conv_id\":\"k\",\"turn\":0,"
                       "\"prompt\":[{\"role\":\"system\",\"content\":\"own\"},{\"role\":\"user\",\"content\":\"hi\"}],"
                       "\"chosen\":[{\"role\":\"assistant\",\"content\":\"A\"}],"
                       "\"rejected\":[{\"role\":\"assistant\",\"content\":\"B\"}],"
                       "\"score_chosen\":1,\"score_rejected\":0,"
                       "\"chosen_candidate\":0,\"rejected_candidate\":1}");
    jv_free(p);
    jv_free(pair);
    jv_free(b);
}

static void turns_merge_candidates_of_one_turn(void **state)
{
    (void)state;
    cl_err e = {0};
    cl_turns *t = cl_turns_new();
    jv a = branch_with_means(0.1, 0.2), b = branch_with_means(0.9, 0.3);
    jv other = J("{\"id\":\"k\",\"turn\":1,\"messages\":[],\"candidates\":[]}");
    assert_int_equal(cl_turns_add(t, &a, &e), 0);
    assert_int_equal(cl_turns_add(t, &other, &e), 0);
    assert_int_equal(cl_turns_add(t, &b, &e), 0);
    assert_int_equal(cl_turns_count(t), 2);
    jv g = cl_turns_get(t, 0);
    jv c = cl_json_get(&g, "candidates");
    assert_int_equal(jv_array_length(c), 4);
    jv_free(g);
    jv clash = J("{\"id\":\"k\",\"turn\":0,\"messages\":[{\"role\":\"user\",\"content\":\"other\"}],\"candidates\":[]}");
    assert_int_equal(cl_turns_add(t, &clash, &e), -1);
    assert_non_null(strstr(e.msg, "messages: differ"));
    jv bad = J("{\"id\":\"k\",\"turn\":0,\"messages\":[],\"candidates\":[{\"content\":3,\"mr\":{\"mean\":1}}]}");
    assert_int_equal(cl_turns_add(t, &bad, &e), -1);
    assert_non_null(strstr(e.msg, "candidates[0].content"));
    jv_free(bad);
    jv_free(clash);
    jv_free(a);
    jv_free(b);
    jv_free(other);
    cl_turns_free(t);
}

/* A branch whose best candidate (c1) has three futures: a long one that opens with an ordinary
 * reply (R 0.8), a shorter open one (R 0.6) and one whose user ends the chat at once (R 0.7). */
static const char *BRANCH =
    "{\"id\":\"a\",\"turn\":0,\"done\":false,\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],"
    "\"candidates\":[{\"id\":\"c0\",\"content\":\"No.\",\"mr\":{\"mean\":0.1},\"futures\":[]},"
    "{\"id\":\"c1\",\"content\":\"What for?\",\"source\":\"proact\",\"mr\":{\"mean\":0.7,\"std\":0.08,\"n\":3},\"futures\":["
    "{\"messages\":[{\"role\":\"user\",\"content\":\"long\"},{\"role\":\"assistant\",\"content\":\"x\"},"
    "{\"role\":\"user\",\"content\":\"bye [[TERMINATE CHAT]]\"}],\"terminated\":true,\"R\":0.8,\"scores\":{\"accuracy\":1}},"
    "{\"messages\":[{\"role\":\"user\",\"content\":\"short\"},{\"role\":\"assistant\",\"content\":\"y\"}],"
    "\"terminated\":false,\"R\":0.6,\"scores\":{\"accuracy\":0}},"
    "{\"messages\":[{\"role\":\"user\",\"content\":\"[[TERMINATE CHAT]]\"}],\"terminated\":true,\"R\":0.7,"
    "\"scores\":{\"accuracy\":1}}]}]}";

static jv advanced(cl_next_user_rule rule, long cap, const char *branch)
{
    cl_err e = {0};
    cl_advance_config cfg = {.rule = rule, .max_turns = cap, .marker = "[[TERMINATE CHAT]]"};
    jv s;
    assert_int_equal(advance_turn(J(branch), &cfg, &s, &e), 0);
    return s;
}

static const char *last_content(const jv *s)
{
    jv m = cl_json_get(s, "messages");
    int n = jv_array_length(jv_copy(m));
    jv last = jv_array_get(m, n - 1);
    const char *c = cl_json_str(&last, "content"); /* s keeps it alive */
    jv_free(last);
    return c;
}

static void advance_longest_takes_the_longest_future(void **state)
{
    (void)state;
    jv s = advanced(CL_NEXT_LONGEST, 7, BRANCH);
    assert_false(cl_json_has(&s, "candidates"));
    assert_int_equal((int)cl_json_num(&s, "turn", -1), 1);
    assert_false(cl_json_bool(&s, "done", 1));
    assert_string_equal(last_content(&s), "long");
    jv picks = cl_json_get(&s, "picks");
    assert_json(&picks, "[{\"turn\":0,\"candidate\":\"c1\",\"source\":\"proact\","
                        "\"mr\":{\"mean\":0.7,\"std\":0.08,\"n\":3},"
                        "\"scores\":{\"accuracy\":0.66666666666666663},\"future\":0}]");
    jv_free(picks);
    jv_free(s);
}

static void advance_worst_open_skips_endings(void **state)
{
    (void)state;
    jv s = advanced(CL_NEXT_WORST_OPEN, 7, BRANCH);
    assert_string_equal(last_content(&s), "short");
    jv_free(s);
}

static void advance_stops_at_the_cap_and_at_the_marker(void **state)
{
    (void)state;
    jv s = advanced(CL_NEXT_LONGEST, 1, BRANCH);
    assert_true(cl_json_bool(&s, "done", 0));
    assert_string_equal(cl_json_str(&s, "done_reason"), "max_turns");
    assert_string_equal(last_content(&s), "What for?");
    jv_free(s);
    /* Only the ending future: worst-open falls back to future 0, which ends the chat. */
    const char *ending =
        "{\"id\":\"b\",\"turn\":2,\"messages\":[],\"candidates\":[{\"content\":\"Done.\",\"mr\":{\"mean\":0.5},"
        "\"futures\":[{\"messages\":[{\"role\":\"user\",\"content\":\"thanks [[TERMINATE CHAT]]\"}],\"R\":0.9},"
        "{\"messages\":[{\"role\":\"user\",\"content\":\"ok\"}],\"terminated\":true,\"R\":0.2}]}]}";
    s = advanced(CL_NEXT_WORST_OPEN, 7, ending);
    assert_string_equal(cl_json_str(&s, "done_reason"), "terminated");
    assert_string_equal(last_content(&s), "thanks [[TERMINATE CHAT]]"); /* kept, as cl-rollout does */
    assert_int_equal((int)cl_json_num(&s, "turn", -1), 3);
    jv_free(s);
    /* A lone terminated message counts as an ending even without the marker text. */
    const char *flagged =
        "{\"id\":\"b\",\"messages\":[],\"candidates\":[{\"content\":\"Done.\",\"mr\":{\"mean\":0.5},"
        "\"futures\":[{\"messages\":[{\"role\":\"user\",\"content\":\"ok\"}],\"terminated\":true}]}]}";
    s = advanced(CL_NEXT_LONGEST, 7, flagged);
    assert_string_equal(cl_json_str(&s, "done_reason"), "terminated");
    jv_free(s);
    /* No futures: no next user; the metric means cl-reward left in mr.metrics still count. */
    const char *none = "{\"id\":\"c\",\"messages\":[],\"candidates\":[{\"content\":\"A\","
                       "\"mr\":{\"mean\":0,\"n\":0,\"metrics\":{\"bleu\":0.3}},\"futures\":[]}]}";
    s = advanced(CL_NEXT_LONGEST, 7, none);
    assert_string_equal(cl_json_str(&s, "done_reason"), "no_next_user");
    jv picks = cl_json_get(&s, "picks");
    jv p0 = jv_array_get(picks, 0);
    jv sc = cl_json_get(&p0, "scores");
    assert_json(&sc, "{\"bleu\":0.3}");
    jv_free(sc);
    jv_free(p0);
    jv_free(s);
}

static void advance_passes_done_states_and_rejects_odd_futures(void **state)
{
    (void)state;
    const char *done = "{\"id\":\"d\",\"done\":true,\"messages\":[],\"x\":1}";
    jv s = advanced(CL_NEXT_LONGEST, 7, done);
    assert_json(&s, done);
    jv_free(s);
    cl_err e = {0};
    cl_advance_config cfg = {.rule = CL_NEXT_LONGEST, .max_turns = 7, .marker = "[[TERMINATE CHAT]]"};
    const char *odd = "{\"id\":\"c\",\"messages\":[],\"candidates\":[{\"content\":\"A\",\"mr\":{\"mean\":0},"
                      "\"futures\":[{\"messages\":[{\"role\":\"assistant\",\"content\":\"me again\"}]}]}]}";
    assert_int_equal(advance_turn(J(odd), &cfg, &s, &e), -1);
    assert_non_null(strstr(e.msg, "futures[0].messages[0]: not a user message"));
    assert_int_equal(advance_turn(J("{\"id\":\"c\",\"messages\":[]}"), &cfg, &s, &e), -1);
    assert_non_null(strstr(e.msg, "candidates"));
    cfg.rule = CL_NEXT_WORST_OPEN;
    const char *no_r = "{\"id\":\"c\",\"messages\":[],\"candidates\":[{\"content\":\"A\",\"mr\":{\"mean\":0},"
                       "\"futures\":[{\"messages\":[{\"role\":\"user\",\"content\":\"u\"}]}]}]}";
    assert_int_equal(advance_turn(J(no_r), &cfg, &s, &e), -1);
    assert_non_null(strstr(e.msg, "candidates[0].futures[0].R"));
    /* At the cap no user message is needed, so none is looked for. */
    cfg.max_turns = 1;
    assert_int_equal(advance_turn(J(no_r), &cfg, &s, &e), 0);
    assert_string_equal(cl_json_str(&s, "done_reason"), "max_turns");
    jv_free(s);
    cfg.max_turns = 7;
    const char *text = "{\"id\":\"c\",\"messages\":[],\"candidates\":[{\"content\":\"A\",\"mr\":{\"mean\":0},"
                       "\"futures\":[{\"messages\":[\"just text\"],\"R\":1}]}]}";
    assert_int_equal(advance_turn(J(text), &cfg, &s, &e), -1);
    assert_non_null(strstr(e.msg, "not a user message"));
}

static void flat_rows_round_trip(void **state)
{
    (void)state;
    cl_err e = {0};
    jv b = J(BRANCH), rows;
    b = cl_json_set_str(b, "prompt", "goal");
    assert_int_equal(flat_rows(&b, &rows, &e), 0);
    assert_int_equal(jv_array_length(jv_copy(rows)), 2);
    jv r1 = jv_array_get(jv_copy(rows), 1);
    jv rw = cl_json_get(&r1, "rewards");
    assert_json(&rw, "{\"accuracy\":[1,0,1],\"MR\":[0.8,0.6,0.7]}");
    assert_string_equal(cl_json_str(&r1, "single_turn_prompt"), "goal");
    assert_int_equal((int)cl_json_num(&r1, "turn_id", -1), 1);
    jv_free(rw);
    cl_turns *t = cl_turns_new();
    jv_array_foreach(rows, i, row) {
        jv one;
        assert_int_equal(flat_row_branch(row, &one, &e), 0);
        assert_int_equal(cl_turns_add(t, &one, &e), 0);
        jv_free(one);
        (void)i;
    }
    assert_int_equal(cl_turns_count(t), 1);
    jv back = cl_turns_get(t, 0);
    assert_true(jv_equal(jv_copy(back), jv_copy(b)));
    jv_free(back);
    jv_free(r1);
    jv_free(rows);
    jv_free(b);
    cl_turns_free(t);
}

static void flat_rows_of_the_published_shape(void **state)
{
    (void)state;
    cl_err e = {0};
    jv row = J("{\"prompt\":[{\"role\":\"user\",\"content\":\"q\"}],\"completion\":\"A\",\"conv_id\":17,"
               "\"turn_id\":1,\"score\":0.5,\"sessions\":[[{\"role\":\"user\",\"content\":\"q\"},"
               "{\"role\":\"assistant\",\"content\":\"A\"},{\"role\":\"user\",\"content\":\"u\"}]],"
               "\"rewards\":{\"bleu\":[0.25],\"MR\":[0.5]},\"single_turn_prompt\":\"goal\"}");
    jv b;
    assert_int_equal(flat_row_branch(jv_copy(row), &b, &e), 0);
    assert_json(&b, "{\"id\":\"17\",\"conv_id\":17,\"messages\":[{\"role\":\"user\",\"content\":\"q\"}],"
                    "\"prompt\":\"goal\",\"candidates\":[{\"content\":\"A\",\"mr\":{\"mean\":0.5},"
                    "\"futures\":[{\"messages\":[{\"role\":\"user\",\"content\":\"u\"}],"
                    "\"scores\":{\"bleu\":0.25},\"R\":0.5}]}]}");
    jv rows;
    assert_int_equal(flat_rows(&b, &rows, &e), 0);
    jv again = jv_array_get(rows, 0);
    assert_true(jv_equal(again, row));
    jv_free(b);
    jv bad = J("{\"prompt\":[],\"completion\":\"A\",\"conv_id\":1,\"score\":0,\"sessions\":[[]],"
               "\"rewards\":{\"MR\":[1,2]}}");
    assert_int_equal(flat_row_branch(bad, &b, &e), -1);
    assert_non_null(strstr(e.msg, "rewards.MR: not an array of 1 values"));
    assert_int_equal(flat_row_branch(J("{\"prompt\":[],\"completion\":\"A\",\"conv_id\":1}"), &b, &e), -1);
    assert_non_null(strstr(e.msg, "score"));
}

static void sft_keeps_the_latest_turn_and_applies_floors(void **state)
{
    (void)state;
    cl_err e = {0};
    cl_floor f;
    assert_int_equal(cl_floor_parse("accuracy>=0.5", &f, &e), 0);
    cl_dialogues *d = cl_dialogues_new(&f, 1);
    jv b = J(BRANCH);
    assert_int_equal(cl_dialogues_add(d, &b, &e), 1);
    jv unfinished = J("{\"id\":\"z\",\"done\":false,\"messages\":[]}");
    assert_int_equal(cl_dialogues_add(d, &unfinished, &e), 0);
    jv finished = J("{\"id\":\"a\",\"turn\":3,\"done\":true,\"messages\":[{\"role\":\"user\",\"content\":\"hi\"},"
                    "{\"role\":\"assistant\",\"content\":\"end\"},{\"role\":\"user\",\"content\":\"[[TERMINATE CHAT]]\"}],"
                    "\"picks\":[{\"mr\":{\"mean\":0.2},\"scores\":{\"accuracy\":0.4}}],\"scores\":{\"accuracy\":0.9}}");
    assert_int_equal(cl_dialogues_add(d, &finished, &e), 1);
    assert_int_equal(cl_dialogues_count(d), 1);
    jv sft;
    cl_pair_config pc = {.system_prompt = "S", .prompt_set = "official"};
    assert_int_equal(sft_dialogue(d, 0, &pc, &sft), 1);
    assert_json(&sft, "{\"id\":\"a\",\"messages\":[{\"role\":\"system\",\"content\":\"S\"},"
                      "{\"role\":\"user\",\"content\":\"hi\"},{\"role\":\"assistant\",\"content\":\"end\"}],"
                      "\"prompt_set\":\"official\"}");
    jv_free(sft);
    jv nometric = J("{\"id\":\"n\",\"done\":true,\"messages\":[]}");
    assert_int_equal(cl_dialogues_add(d, &nometric, &e), -1);
    assert_non_null(strstr(e.msg, "accuracy"));
    jv_free(nometric);
    jv_free(finished);
    jv_free(unfinished);
    jv_free(b);
    cl_dialogues_free(d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(rank_orders_by_mean_then_std_then_position),
        cmocka_unit_test(rank_names_a_missing_mr),
        cmocka_unit_test(floors_parse_and_hold),
        cmocka_unit_test(pair_gap_is_decimal_exact),
        cmocka_unit_test(system_prompt_is_prepended_once),
        cmocka_unit_test(turns_merge_candidates_of_one_turn),
        cmocka_unit_test(advance_longest_takes_the_longest_future),
        cmocka_unit_test(advance_worst_open_skips_endings),
        cmocka_unit_test(advance_stops_at_the_cap_and_at_the_marker),
        cmocka_unit_test(advance_passes_done_states_and_rejects_odd_futures),
        cmocka_unit_test(flat_rows_round_trip),
        cmocka_unit_test(flat_rows_of_the_published_shape),
        cmocka_unit_test(sft_keeps_the_latest_turn_and_applies_floors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
