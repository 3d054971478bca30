/* Unit tests for lib/metrics/boxed: the last \boxed{} answer of a LaTeX solution, the MATH
 * benchmark's way (quirks worked out by hand from its rules) and ours. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "metrics/boxed.h"

static void expect_answer(const char *text, const char *want)
{
    char *got = cl_boxed_answer(text);
    if (!want) {
        assert_null(got);
        return;
    }
    assert_non_null(got);
    assert_string_equal(got, want);
    free(got);
}

/* The MATH benchmark's extraction: want NULL for None; found is whether a box command is there. */
static void expect_reference(const char *text, const char *want, int found)
{
    int f = -1;
    char *got = cl_boxed_reference(text, &f);
    if (f != found)
        fail_msg("found(\"%s\") = %d, want %d", text, f, found);
    if (!want) {
        if (got)
            fail_msg("reference(\"%s\") = \"%s\", want none", text, got);
        return;
    }
    if (!got || strcmp(got, want) != 0)
        fail_msg("reference(\"%s\") = \"%s\", want \"%s\"", text, got ? got : "(none)", want);
    free(got);
}

static void the_reference_extraction_keeps_the_benchmarks_quirks(void **state)
{
    (void)state;
    expect_reference("So the total is $\\boxed{42}$.", "42", 1);
    expect_reference("Thus $\\boxed{\\frac{1}{2}}$.", "\\frac{1}{2}", 1);
    expect_reference("$\\boxed{ 7 }$", " 7 ", 1);                  /* whitespace kept */
    expect_reference("\\boxed {x+1}", NULL, 1);                     /* not "\boxed{": None */
    expect_reference("The answer is $\\boxed 5$.", NULL, 1);        /* no braces: None */
    expect_reference("Hence $\\fbox{-3}$.", NULL, 1);               /* found, not stripped */
    expect_reference("$\\fbox{6}$ and $\\boxed{5}$", "5", 1);
    expect_reference("$\\boxed{5}$ and $\\fbox{6}$", "5", 1);        /* any \boxed before \fbox */
    expect_reference("$\\boxed{\\{1, 2\\}}$", "\\{1, 2\\}", 1);
    expect_reference("$\\boxed{a\\}b}$", "a\\", 1);                /* escaped braces count */
    expect_reference("$\\boxedx{3}$", NULL, 1);                     /* \boxedx is found too */
    expect_reference("$\\boxed{1}$ then $\\boxed{2", NULL, 1);        /* the last one decides */
    expect_reference("$\\boxed{}$", "", 1);
    expect_reference("} $\\boxed{\xc3\xa9}$", "\xc3\xa9", 1);
    expect_reference("no box here", NULL, 0);
    expect_reference("", NULL, 0);
    /* ours reads what the benchmark does not */
    expect_answer("$\\boxed{a\\}b}$", "a\\}b");
    expect_answer("Hence $\\fbox{-3}$.", "-3");
}

static void a_simple_box_gives_its_content(void **state)
{
    (void)state;
    expect_answer("So the total is $\\boxed{42}$.", "42");
    expect_answer("$\\boxed{ 7 }$", "7");
    expect_answer("\\boxed {x+1}", "x+1");
}

static void nested_braces_stay_inside_the_answer(void **state)
{
    (void)state;
    expect_answer("Thus $\\boxed{\\frac{1}{2}}$.", "\\frac{1}{2}");
    expect_answer("$\\boxed{\\sqrt{\\frac{a^{2}}{b}}+\\left(3\\right)}$", "\\sqrt{\\frac{a^{2}}{b}}+\\left(3\\right)");
    expect_answer("$\\boxed{\\{1, 2\\}}$", "\\{1, 2\\}");
}

static void the_last_of_several_boxes_wins(void **state)
{
    (void)state;
    expect_answer("First $\\boxed{1}$, then $\\boxed{2}$, finally $\\boxed{\\text{3 cm}}$.", "\\text{3 cm}");
    expect_answer("$\\boxed{5}$ and $\\fbox{6}$", "6");
    expect_answer("$\\fbox{6}$ and $\\boxed{5}$", "5");
}

static void box_without_braces_runs_to_the_dollar(void **state)
{
    (void)state;
    expect_answer("The answer is $\\boxed 5$.", "5");
    expect_answer("so $x = \\boxed 12 $ and done", "12");
    expect_answer("ends with \\boxed 3", "3");
}

static void fbox_counts_as_a_box(void **state)
{
    (void)state;
    expect_answer("Hence $\\fbox{-3}$.", "-3");
}

static void no_box_or_broken_box_is_no_answer(void **state)
{
    (void)state;
    expect_answer("There is no box here, only $x=3$.", NULL);
    expect_answer("$\\boxed{unclosed", NULL);
    expect_answer("$\\boxed{}$", "");
    expect_answer("\\boxedsymbol{3}", NULL);
    expect_answer("$\\boxed$", NULL);
    expect_answer("", NULL);
    expect_answer(NULL, NULL);
    /* the last box decides: a broken final box is no answer, whatever came before */
    expect_answer("$\\boxed{4}$ then \\boxed{oops", NULL);
    expect_answer("$\\boxed{4}$ then \\boxed   $", NULL);
    /* the extraction table of the MATH metric (lib/metrics/mathans) */
    expect_answer("answer: \\boxed   x+1\nmore", "x+1");
    expect_answer("caf\xc3\xa9 \\boxed{\xc3\xa9t\xc3\xa9}", "\xc3\xa9t\xc3\xa9");
    expect_answer("\\boxedx", NULL);
}

static void span_points_into_the_text(void **state)
{
    (void)state;
    const char *s = "ab \\boxed{xyz} cd";
    size_t off = 99, n = 99;
    assert_int_equal(cl_boxed_last(s, strlen(s), &off, &n), 1);
    assert_int_equal(off, 10);
    assert_int_equal(n, 3);
    /* the length bounds the search: a box past len is not seen */
    assert_int_equal(cl_boxed_last(s, 12, &off, &n), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(the_reference_extraction_keeps_the_benchmarks_quirks),
        cmocka_unit_test(a_simple_box_gives_its_content),
        cmocka_unit_test(nested_braces_stay_inside_the_answer),
        cmocka_unit_test(the_last_of_several_boxes_wins),
        cmocka_unit_test(box_without_braces_runs_to_the_dollar),
        cmocka_unit_test(fbox_counts_as_a_box),
        cmocka_unit_test(no_box_or_broken_box_is_no_answer),
        cmocka_unit_test(span_points_into_the_text),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
