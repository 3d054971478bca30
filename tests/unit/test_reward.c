/* Unit tests for lib/collab/reward: R* and MR arithmetic on hand-computed fixtures, every mode. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <string.h>

#include "collab/reward.h"

typedef struct scores {
    const char *name[8];
    double x[8];
} scores;

static int lookup(void *ctx, const char *metric, double *x)
{
    scores *s = ctx;
    for (int i = 0; i < 8 && s->name[i]; i++)
        if (strcmp(s->name[i], metric) == 0) {
            *x = s->x[i];
            return 0;
        }
    return -1;
}

static double rstar(const reward_cfg *c, const char *task, scores *s)
{
    reward_plan p;
    cl_err e = {0};
    assert_int_equal(reward_plan_for(c, task, &p, &e), 0);
    double r;
    if (reward_star(&p, lookup, s, &r, &e) != 0)
        fail_msg("%s", e.msg);
    return r;
}

#define NEAR(a, b) assert_true(fabs((a) - (b)) < 1e-12)

static void weights_are_a_signed_sum(void **state)
{
    (void)state;
    reward_cfg c = {.lambda = -1};
    cl_err e = {0};
    assert_int_equal(reward_parse_weights("bleu=1,interactivity=1,tokens=-5e-4", &c, &e), 0);
    scores s = {{"bleu", "interactivity", "tokens"}, {0.4, 0.5, 1200}};
    NEAR(rstar(&c, "document", &s), 0.4 + 0.5 - 0.6);
    assert_int_equal(reward_parse_weights("bleu", &c, &e), -1);
    assert_int_equal(reward_parse_weights("bleu=x", &c, &e), -1);
    assert_int_equal(reward_parse_weights("bleu=1,bleu=2", &c, &e), -1);
}

static void missing_score_is_an_error_not_zero(void **state)
{
    (void)state;
    reward_cfg c = {.lambda = -1};
    cl_err e = {0};
    assert_int_equal(reward_parse_weights("bleu=1,interactivity=1", &c, &e), 0);
    reward_plan p;
    assert_int_equal(reward_plan_for(&c, "document", &p, &e), 0);
    scores s = {{"bleu"}, {0.4}};
    double r;
    assert_int_equal(reward_star(&p, lookup, &s, &r, &e), -1);
    assert_non_null(strstr(e.msg, "interactivity"));
}

static void paper_caps_the_token_penalty_per_task_lambda(void **state)
{
    (void)state;
    reward_cfg c = {.lambda = -1};
    cl_err e = {0};
    assert_int_equal(reward_parse_mode("paper", &c, &e), 0);
    scores doc = {{"bleu", "interactivity", "tokens"}, {0.3, 1.0, 2500}};
    NEAR(rstar(&c, "document", &doc), 0.3 + 1.0 - 0.25);  /* λ = 1e-4 */
    scores code = {{"pass_rate", "interactivity", "tokens"}, {1, 0.5, 1000}};
    NEAR(rstar(&c, "code", &code), 1 + 0.5 - 0.5);        /* λ = 5e-4 */
    scores math = {{"accuracy", "interactivity", "tokens"}, {1, 0.5, 3400}};
    NEAR(rstar(&c, "math", &math), 1 + 0.5 - 1.0);         /* 1.7 capped at 1 */
    c.task_metric = "math_equiv";
    scores local = {{"math_equiv", "interactivity", "tokens"}, {0, 1, 100}};
    NEAR(rstar(&c, "math", &local), 0 + 1 - 0.05);
    reward_plan p;
    assert_int_equal(reward_plan_for(&(reward_cfg){.mode = REWARD_PAPER, .lambda = -1}, "qa", &p, &e), -1);
}

static void mode_names_read_back_as_parsed(void **state)
{
    (void)state;
    static const char *names[] = {"paper", "v2", "verl"};
    for (int i = 0; i < 3; i++) {
        reward_cfg c = {.lambda = -1};
        cl_err e = {0};
        assert_int_equal(reward_parse_mode(names[i], &c, &e), 0);
        assert_string_equal(reward_mode_name(c.mode), names[i]);
    }
    reward_cfg c = {.lambda = -1};
    cl_err e = {0};
    assert_int_equal(reward_parse_mode("weights", &c, &e), -1);
    assert_int_equal(reward_parse_weights("bleu=1", &c, &e), 0);
    assert_string_equal(reward_mode_name(c.mode), "weights");
}

static void v2_uses_token_amount_uncapped(void **state)
{
    (void)state;
    reward_cfg c = {.lambda = -1};
    cl_err e = {0};
    assert_int_equal(reward_parse_mode("v2", &c, &e), 0);
    scores math = {{"accuracy", "interactivity", "tokens"}, {1, 0.5, 3400}};
    NEAR(rstar(&c, "math", &math), 1 + 0.25 - 1.7);
    scores doc = {{"bleu", "tokens"}, {0.6, 2000}};  /* no interactivity term for documents */
    NEAR(rstar(&c, "document", &doc), 0.6 - 0.2);
    scores code = {{"pass_rate", "tokens"}, {0, 800}};
    NEAR(rstar(&c, "code", &code), 0 - 0.4);
}

static void verl_clamps_each_term_and_its_mr_clamps_the_means(void **state)
{
    (void)state;
    reward_cfg c = {.lambda = -1};
    cl_err e = {0};
    assert_int_equal(reward_parse_mode("verl", &c, &e), 0);
    reward_plan p;
    assert_int_equal(reward_plan_for(&c, "math", &p, &e), 0);
    scores f1 = {{"accuracy", "interactivity", "tokens"}, {1, 0.7, 15000}};
    NEAR(rstar(&c, "math", &f1), 1 + 0.7 - 1);  /* -1.5 clamped to -1 */
    /* Two futures: tokens 15000 and 5000 → mean 10000 → -1e-4·10000 = -1 (clamp edge);
     * accuracy 1 and 0 → 0.5; interactivity 0.7 and 0.3 → 0.5. */
    double x[] = {1, 0.7, 15000, 0, 0.3, 5000};
    double r[] = {0.7, 0 + 0.3 - 0.5};
    mr_result m;
    mr_estimate(&p, r, x, 2, &m);
    NEAR(m.mean, 0.5 + 0.5 - 1.0);
    NEAR(m.metric_mean[2], 10000);
    NEAR(m.std, 0.45); /* R* 0.7 and -0.2 around 0.25 */
    mr_estimate(&p, NULL, NULL, 0, &m);
    assert_int_equal(m.n, 0);
    NEAR(m.mean, 0);
}

static void mr_is_the_mean_of_rstar_with_population_std(void **state)
{
    (void)state;
    reward_cfg c = {.lambda = -1};
    cl_err e = {0};
    assert_int_equal(reward_parse_weights("bleu=1,tokens=-1e-3", &c, &e), 0);
    reward_plan p;
    assert_int_equal(reward_plan_for(&c, NULL, &p, &e), 0);
    double x[] = {0.5, 100, 0.2, 300, 0.8, 200};
    double r[] = {0.4, -0.1, 0.6};
    mr_result m;
    mr_estimate(&p, r, x, 3, &m);
    assert_int_equal(m.n, 3);
    NEAR(m.mean, 0.3);
    NEAR(m.std, sqrt((0.01 + 0.16 + 0.09) / 3));
    NEAR(m.metric_mean[0], 0.5);
    NEAR(m.metric_mean[1], 200);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(weights_are_a_signed_sum),
        cmocka_unit_test(missing_score_is_an_error_not_zero),
        cmocka_unit_test(paper_caps_the_token_penalty_per_task_lambda),
        cmocka_unit_test(mode_names_read_back_as_parsed),
        cmocka_unit_test(v2_uses_token_amount_uncapped),
        cmocka_unit_test(verl_clamps_each_term_and_its_mr_clamps_the_means),
        cmocka_unit_test(mr_is_the_mean_of_rstar_with_population_std),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
