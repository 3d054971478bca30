/* Unit tests for lib/metrics/mathans: the MATH normalisation and equivalence tables (expected
 * values are what the original math_equivalence.py gives for each input). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "metrics/mathans.h"

static void normalisation_table(void **state)
{
    (void)state;
    static const char *cases[][2] = {
        {"\\frac12", "\\frac{1}{2}"},     {"0.5", "\\frac{1}{2}"},
        {".5", "\\frac{1}{2}"},           {"1/2", "\\frac{1}{2}"},
        {" 1 / 2", "\\frac{1}{2}"},       {"01/2", "01/2"},
        {"-1/2", "\\frac{-1}{2}"},        {"-0/2", "-0/2"},
        {"k = 5", "5"},                   {"xy = 5", "xy=5"},
        {"10^{\\circ}", "10"},            {"90^\\circ", "90"},
        {"\\left(1,2\\right)", "(1,2)"},  {"3\\text{ cm}", "3"},
        {"\\frac1", "\\frac1"},           {"1,000", "1,000"},
        {"\\dfrac{3}{4}", "\\frac{3}{4}"},{"\\tfrac34", "\\frac{3}{4}"},
        {"\\frac1{72}", "\\frac{1}{72}"}, {"\\sqrt2", "\\sqrt{2}"},
        {"2\\sqrt{3}", "2\\sqrt{3}"},     {"50\\%", "50"},
        {"\\$5", "5"},                    {"\\!1\\!0", "10"},
        {"x \\in \\{.3\\}", "x\\in\\{0.3\\}"}, {"a\nb", "ab"},
        {"", ""},                         {"\\frac{\xc3\xa9}2", "\\frac{\xc3\xa9}2"},
        {"\\sqrt\xc3\xa9", "\\sqrt{\xc3\xa9}"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        int raised;
        char *got = math_normalize(cases[i][0], &raised);
        assert_int_equal(raised, 0);
        assert_non_null(got);
        if (strcmp(got, cases[i][1]) != 0)
            fail_msg("normalize(\"%s\") = \"%s\", want \"%s\"", cases[i][0], got, cases[i][1]);
        free(got);
    }
    static const char *raises[] = {"\\text{ a}\\text{ b}", "x\\frac", "x\\sqrt", "\\frac\\frac12"};
    for (size_t i = 0; i < sizeof raises / sizeof *raises; i++) {
        int raised;
        assert_null(math_normalize(raises[i], &raised));
        assert_int_equal(raised, 1);
    }
}

static void equivalence_table(void **state)
{
    (void)state;
    static const struct { const char *a, *b; int eq; } cases[] = {
        {"\\frac{1}{2}", "0.5", 1},       {"\\dfrac12", "1/2", 1},
        {"k = 5", "5", 1},                {"5", "6", 0},
        {"\\left( 3, 4 \\right)", "(3,4)", 1},
        {"10^\\circ", "10", 1},           {"3\\text{ m}", "3", 1},
        {"x\\sqrt", "x\\sqrt", 1},        {"x\\sqrt", "x\\sqrt{}", 0},
        {"2", "2.0", 0},                  {"-1/2", "\\frac{-1}{2}", 1},
        {"\\boxed{5}", "5", 0},           /* a box is not taken off by the comparison */
        {" 5 ", "5", 1},                  /* spaces inside a kept box go in normalisation */
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
        if (math_equiv(cases[i].a, cases[i].b) != cases[i].eq)
            fail_msg("equiv(\"%s\", \"%s\") != %d", cases[i].a, cases[i].b, cases[i].eq);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(normalisation_table),
        cmocka_unit_test(equivalence_table),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
