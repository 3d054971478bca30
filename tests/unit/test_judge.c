/* Unit tests for lib/collab/judge (reading replies, scales, units, requests, summaries) and the
 * bootstrap of lib/collab/report. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/json.h"
#include "collab/judge.h"
#include "collab/report.h"

static jv parse(const char *s)
{
    jv v = jv_parse(s);
    assert_true(jv_is_valid(v));
    return v;
}

static cl_judge *judge(unsigned kinds, cl_itr_scale scale, int full)
{
    cl_judge_config cfg = {.kinds = kinds, .artefact = "answer", .itr_scale = scale, .context_full = full};
    cl_err e = {0};
    cl_judge *j = cl_judge_new(&cfg, &e);
    assert_non_null(j);
    return j;
}

static void replies_are_read_leniently_and_range_checked(void **state)
{
    (void)state;
    cl_judge *j = judge(1u << CL_JUDGE_INTERACTIVITY | 1u << CL_JUDGE_ACCURACY, CL_ITR_UNIT, 0);
    cl_err e = {0};
    double x = -1;
    assert_int_equal(cl_judge_parse(j, CL_JUDGE_INTERACTIVITY, "```json\n{'thought': 'ok', 'interactivity': 0.5,}\n```", &x, NULL, &e), 0);
    assert_true(x == 0.5);
    assert_int_equal(cl_judge_parse(j, CL_JUDGE_INTERACTIVITY, "{\"interactivity\": \" 1 \"}", &x, NULL, &e), 0);
    assert_true(x == 1);
    assert_int_equal(cl_judge_parse(j, CL_JUDGE_INTERACTIVITY, "{\"interactivity\": 1.5}", &x, NULL, &e), -1);
    assert_non_null(strstr(e.msg, "outside 0..1"));
    assert_int_equal(cl_judge_parse(j, CL_JUDGE_INTERACTIVITY, "{\"thought\": \"no verdict\"}", &x, NULL, &e), -1);
    assert_non_null(strstr(e.msg, "no 'interactivity'"));
    assert_int_equal(cl_judge_parse(j, CL_JUDGE_INTERACTIVITY, "very interactive", &x, NULL, &e), -1);
    assert_int_equal(cl_judge_parse(j, CL_JUDGE_INTERACTIVITY, NULL, &x, NULL, &e), -1);
    assert_int_equal(cl_judge_parse(j, CL_JUDGE_ACCURACY, "{\"accuracy\": False}", &x, NULL, &e), 0);
    assert_true(x == 0);
    assert_int_equal(cl_judge_parse(j, CL_JUDGE_ACCURACY, "{\"accuracy\": 0.5}", &x, NULL, &e), -1);
    assert_non_null(strstr(e.msg, "not 0 or 1"));
    cl_judge_free(j);
}

static void extraction_keeps_text_and_numbers_as_strings(void **state)
{
    (void)state;
    cl_judge *j = judge(1u << CL_JUDGE_EXTRACT, CL_ITR_UNIT, 0);
    cl_err e = {0};
    char *t = NULL;
    assert_int_equal(cl_judge_parse(j, CL_JUDGE_EXTRACT, "{'final_completion': '''def f():\n    return \"x\"'''}", NULL, &t, &e), 0);
    assert_string_equal(t, "def f():\n    return \"x\"");
    free(t);
    assert_int_equal(cl_judge_parse(j, CL_JUDGE_EXTRACT, "{\"final_completion\": 42}", NULL, &t, &e), 0);
    assert_string_equal(t, "42");
    free(t);
    assert_int_equal(cl_judge_parse(j, CL_JUDGE_EXTRACT, "{\"final_completion\": null}", NULL, &t, &e), 0);
    assert_string_equal(t, "");
    free(t);
    assert_int_equal(cl_judge_parse(j, CL_JUDGE_EXTRACT, "{\"final_completion\": [1]}", NULL, &t, &e), -1);
    cl_judge_free(j);
}

static void paper_scales_rescale_apart_and_clarify_compares_with_the_label(void **state)
{
    (void)state;
    cl_judge *t = judge(1u << CL_JUDGE_INTERACTIVITY, CL_ITR_PAPER_TRAIN, 0);
    jv none = parse("{}");
    assert_true(cl_judge_score(t, CL_JUDGE_INTERACTIVITY, &none, 3) == 1); /* training: S / 3 */
    assert_true(cl_judge_score(t, CL_JUDGE_INTERACTIVITY, &none, 2) == 2.0 / 3);
    assert_true(cl_judge_score(t, CL_JUDGE_INTERACTIVITY, &none, 1) == 1.0 / 3);
    jv_free(none);
    cl_judge_free(t);
    cl_itr_scale s;
    cl_err pe = {0};
    assert_int_equal(cl_itr_scale_parse("paper", 0, &s, &pe), 0);
    assert_int_equal(s, CL_ITR_PAPER_TRAIN);
    assert_int_equal(cl_itr_scale_parse("paper", 1, &s, &pe), 0);
    assert_int_equal(s, CL_ITR_PAPER_EVAL);
    assert_int_equal(cl_itr_scale_parse("paper-train", 1, &s, &pe), 0);
    assert_int_equal(s, CL_ITR_PAPER_TRAIN);
    assert_int_equal(cl_itr_scale_parse("papers", 1, &s, &pe), -1);
    assert_string_equal(cl_itr_scale_known("paper"), "paper-eval"); /* what older versions wrote */
    assert_string_equal(cl_itr_scale_known("x"), "unknown");
    cl_judge *j = judge(1u << CL_JUDGE_INTERACTIVITY | 1u << CL_JUDGE_CLARIFY, CL_ITR_PAPER_EVAL, 0);
    cl_err e = {0};
    double x;
    jv rec = parse("{\"metadata\": {\"ambiguous\": true}}");
    assert_int_equal(cl_judge_parse(j, CL_JUDGE_INTERACTIVITY, "{\"interactivity\": 0.5}", &x, NULL, &e), -1);
    assert_true(cl_judge_score(j, CL_JUDGE_INTERACTIVITY, &rec, 3) == 1);
    assert_true(cl_judge_score(j, CL_JUDGE_INTERACTIVITY, &rec, 2) == -1);
    assert_true(cl_judge_score(j, CL_JUDGE_INTERACTIVITY, &rec, 1) == -3);
    assert_true(cl_judge_score(j, CL_JUDGE_CLARIFY, &rec, 1) == 1);
    assert_true(cl_judge_score(j, CL_JUDGE_CLARIFY, &rec, 0) == 0);
    jv clear = parse("{\"single_turn_completion\": \"non_ambiguous\"}");
    assert_true(cl_judge_score(j, CL_JUDGE_CLARIFY, &clear, 0) == 1);
    assert_true(cl_judge_score(j, CL_JUDGE_CLARIFY, &clear, 1) == 0);
    jv_free(rec);
    jv_free(clear);
    cl_judge_free(j);
}

static void summary_has_mean_sample_sd_and_range(void **state)
{
    (void)state;
    cl_judge *j = judge(1u << CL_JUDGE_INTERACTIVITY, CL_ITR_PAPER_EVAL, 0);
    double raw[] = {3, 2, 3}, score[] = {1, -1, 1};
    jv s = cl_judge_summary(j, CL_JUDGE_INTERACTIVITY, raw, score, 3, 1);
    assert_true(cl_json_num(&s, "mean", NAN) == 1.0 / 3);
    assert_true(fabs(cl_json_num(&s, "sd", NAN) - sqrt(4.0 / 3)) < 1e-12); /* (4/9*2 + 16/9)/2 */
    assert_true(cl_json_num(&s, "min", NAN) == -1 && cl_json_num(&s, "max", NAN) == 1);
    assert_true(cl_json_num(&s, "n", 0) == 3 && cl_json_num(&s, "failed", 0) == 1);
    assert_string_equal(cl_json_str(&s, "scale"), "paper-eval");
    jv_free(s);
    s = cl_judge_summary(j, CL_JUDGE_INTERACTIVITY, raw, score, 0, 2);
    assert_false(cl_json_has(&s, "mean"));
    jv_free(s);
    cl_judge_free(j);
}

static void branch_records_give_one_unit_per_future(void **state)
{
    (void)state;
    jv rec = parse("{\"messages\": [{\"role\": \"system\", \"content\": \"s\"}, {\"role\": \"user\", \"content\": \"u\"}],"
                   " \"candidates\": [{\"content\": \"c0\", \"futures\": [{\"messages\": [{\"role\": \"user\", \"content\": \"f\"}]},"
                   " {\"messages\": []}]}, {\"content\": \"c1\", \"futures\": []}]}");
    cl_judge_unit *u;
    int n;
    cl_err e = {0};
    assert_int_equal(cl_judge_units(&rec, &u, &n, &e), 0);
    assert_int_equal(n, 2);
    assert_int_equal(u[1].cand, 0);
    assert_int_equal(u[1].fut, 1);
    assert_int_equal(jv_array_length(jv_copy(u[0].history)), 2);
    assert_int_equal(jv_array_length(jv_copy(u[0].window)), 2); /* candidate + future */
    assert_int_equal(jv_array_length(jv_copy(u[1].window)), 1);
    char name[32];
    cl_judge_unit_name(&u[1], name, sizeof name);
    assert_string_equal(name, "c0/f1");
    rec = cl_judge_unit_set(rec, &u[1], "extracted", jv_string("x"));
    jv f = cl_judge_unit_get(&rec, &u[1]);
    assert_string_equal(cl_json_str(&f, "extracted"), "x");
    jv_free(f);
    cl_judge_units_free(u, n);
    jv_free(rec);

    jv bad = parse("{\"candidates\": [{\"content\": \"c\", \"futures\": [{\"messages\": [{\"role\": 1}]}]}]}");
    assert_int_equal(cl_judge_units(&bad, &u, &n, &e), -1);
    assert_int_equal(e.code, CL_EXIT_DATAERR);
    assert_non_null(strstr(e.msg, "candidates[0].futures[0]"));
    jv_free(bad);
    jv none = parse("{\"id\": \"x\"}");
    assert_int_equal(cl_judge_units(&none, &u, &n, &e), -1);
    jv_free(none);
}

static void accuracy_needs_the_reference_and_reads_the_extracted_answer(void **state)
{
    (void)state;
    cl_judge *j = judge(1u << CL_JUDGE_ACCURACY, CL_ITR_UNIT, 0);
    jv rec = parse("{\"prompt\": \"q?\", \"messages\": [{\"role\": \"user\", \"content\": \"q\"}]}");
    cl_judge_unit *u;
    int n;
    cl_err e = {0};
    assert_int_equal(cl_judge_units(&rec, &u, &n, &e), 0);
    jv m = cl_judge_request(j, CL_JUDGE_ACCURACY, &rec, &u[0], &e);
    assert_false(jv_is_valid(m));
    assert_int_equal(e.code, CL_EXIT_DATAERR);
    jv_free(m);
    rec = cl_json_set_str(rec, "completion", "REF");
    rec = cl_json_set(rec, "extracted", JV_OBJECT(jv_string("answer"), jv_string("ANSWER")));
    m = cl_judge_request(j, CL_JUDGE_ACCURACY, &rec, &u[0], &e);
    assert_true(jv_is_valid(m));
    jv msg = jv_array_get(jv_copy(m), 0);
    const char *text = cl_json_str(&msg, "content");
    assert_non_null(strstr(text, "REF"));
    assert_non_null(strstr(text, "<response>\nANSWER\n</response>"));
    jv_free(msg);
    jv_free(m);
    cl_judge_units_free(u, n);
    jv_free(rec);
    cl_judge_free(j);
}

static void bootstrap_of_a_constant_is_the_constant_and_seeds_matter(void **state)
{
    (void)state;
    double c[] = {2, 2, 2}, lo, hi;
    cl_bootstrap_mean_ci(c, 3, 500, 1, 0.95, &lo, &hi);
    assert_true(lo == 2 && hi == 2);
    double x[] = {0, 1, 0, 1, 1, 0, 0, 0, 1, 1};
    double lo2, hi2, lo3, hi3;
    cl_bootstrap_mean_ci(x, 10, 2000, 1, 0.95, &lo, &hi);
    cl_bootstrap_mean_ci(x, 10, 2000, 1, 0.95, &lo2, &hi2);
    assert_true(lo == lo2 && hi == hi2);
    assert_true(lo >= 0 && lo < 0.5 && hi > 0.5 && hi <= 1);
    /* the normal approximation 0.5 +- 1.96 * sqrt(.25/10) = [0.19, 0.81]: close to it */
    assert_true(fabs(lo - 0.19) < 0.12 && fabs(hi - 0.81) < 0.12);
    cl_bootstrap_mean_ci(x, 10, 2000, 2, 0.95, &lo3, &hi3);
    assert_true(lo3 >= 0 && hi3 <= 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(replies_are_read_leniently_and_range_checked),
        cmocka_unit_test(extraction_keeps_text_and_numbers_as_strings),
        cmocka_unit_test(paper_scales_rescale_apart_and_clarify_compares_with_the_label),
        cmocka_unit_test(summary_has_mean_sample_sd_and_range),
        cmocka_unit_test(branch_records_give_one_unit_per_future),
        cmocka_unit_test(accuracy_needs_the_reference_and_reads_the_extracted_answer),
        cmocka_unit_test(bootstrap_of_a_constant_is_the_constant_and_seeds_matter),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
