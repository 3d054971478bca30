/* Unit tests for lib/collab/seed: the split rule, prompt keys, timestamps, token estimates, sets and
 * the row -> seed contract. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <string.h>

#include "core/json.h"
#include "collab/seed.h"

static void hash_split_is_stable_and_follows_the_ratio(void **state)
{
    (void)state;
    int test = 0;
    char id[32];
    for (int i = 0; i < 4000; i++) {
        snprintf(id, sizeof id, "row-%d", i);
        const char *a = cl_seed_hash_split(id, 0.2, 42);
        assert_string_equal(a, cl_seed_hash_split(id, 0.2, 42));
        test += strcmp(a, "test") == 0;
        /* a larger ratio only moves rows from train to test, never back */
        if (strcmp(a, "test") == 0)
            assert_string_equal(cl_seed_hash_split(id, 0.5, 42), "test");
    }
    assert_in_range(test, 700, 900);
    assert_string_equal(cl_seed_hash_split("x", 0.0, 1), "train");
    assert_string_equal(cl_seed_hash_split("x", 1.0, 1), "test");
    /* the same ids in the same splits as every earlier release: re-seeding a dataset must not
     * move a row between train and test */
    uint64_t in_test = 0;
    for (int i = 0; i < 64; i++) {
        snprintf(id, sizeof id, "row-%d", i);
        in_test |= (uint64_t)(strcmp(cl_seed_hash_split(id, 0.5, 42), "test") == 0) << i;
    }
    assert_true(in_test == 0xae982655f66b9d3fULL);
}

static void split_names_are_normalised(void **state)
{
    (void)state;
    assert_string_equal(cl_seed_split_name("train"), "train");
    assert_string_equal(cl_seed_split_name("eval"), "validation");
    assert_string_equal(cl_seed_split_name("val"), "validation");
    assert_string_equal(cl_seed_split_name("test"), "test");
    assert_null(cl_seed_split_name("Train"));
    assert_null(cl_seed_split_name("holdout"));
}

static void prompt_key_ignores_case_and_spacing_only(void **state)
{
    (void)state;
    uint64_t k = cl_seed_prompt_key("What is 2+2?");
    assert_true(k == cl_seed_prompt_key("  what IS\n2+2? "));
    assert_true(k == cl_seed_prompt_key("What\t\tis 2+2?"));
    assert_false(k == cl_seed_prompt_key("What is 2+3?"));
    assert_false(k == cl_seed_prompt_key("Whatis 2+2?"));
    /* the key is cl_hash64 of the normalised text */
    assert_true(k == cl_hash64("what is 2+2?", 12, 0));
    assert_true(cl_seed_prompt_key(" \t ") == cl_hash64("", 0, 0));
}

static double when(const char *s)
{
    double t = -1;
    if (cl_seed_time(jv_string(s), &t) < 0)
        return -1;
    return t;
}

static void timestamps_parse_to_epoch_seconds(void **state)
{
    (void)state;
    assert_true(when("1970-01-01") == 0);
    assert_true(when("2000-03-01 00:00:00") == 951868800);
    assert_true(when("2000-03-01T01:00:00+01:00") == 951868800);
    assert_true(when("2000-03-01T00:00:00Z") == 951868800);
    assert_true(when("2021-05-16 18:12:51.5+00:00") == 1621188771.5);
    assert_true(when("last week") == -1);
    assert_true(when("2021-13-01") == -1);
    assert_true(when("2021-01-01 25:00") == -1);
    double t;
    assert_int_equal(cl_seed_time(jv_number(1600000000), &t), 0);
    assert_true(t == 1600000000);
    assert_int_equal(cl_seed_time(jv_number(1600000000000.0), &t), 0);
    assert_true(t == 1600000000);
    assert_int_equal(cl_seed_time(jv_null(), &t), -1);
}

static void token_estimate_counts_words_numbers_and_symbols(void **state)
{
    (void)state;
    assert_int_equal(cl_seed_estimate_tokens(""), 0);
    assert_int_equal(cl_seed_estimate_tokens("the cat sat"), 3);
    assert_int_equal(cl_seed_estimate_tokens("Hello, world!"), 4);
    assert_int_equal(cl_seed_estimate_tokens("1234567"), 3);
    assert_int_equal(cl_seed_estimate_tokens("internationalisation"), 3);
    assert_int_equal(cl_seed_estimate_tokens("a\n\nb"), 3);
    assert_int_equal(cl_seed_estimate_tokens("caf\xc3\xa9"), 2);
}

static void seen_set_keeps_every_key_once(void **state)
{
    (void)state;
    cl_seed_seen s = {0};
    for (uint64_t i = 0; i < 5000; i++)
        assert_int_equal(cl_seed_seen_add(&s, i * 0x9e3779b97f4a7c15ULL), 1);
    for (uint64_t i = 0; i < 5000; i++)
        assert_int_equal(cl_seed_seen_add(&s, i * 0x9e3779b97f4a7c15ULL), 0);
    assert_int_equal(cl_seed_seen_add(&s, 7), 1);
    cl_seed_seen_free(&s);
}

static void set_keeps_the_most_recent_share(void **state)
{
    (void)state;
    cl_seed_set s = {0};
    for (int i = 0; i < 10; i++) {
        char id[16];
        snprintf(id, sizeof id, "%d", i);
        assert_int_equal(cl_seed_set_add(&s, cl_json_set_str(jv_object(), "id", id), (double)((i * 7) % 10)), 0);
    }
    assert_int_equal(cl_seed_set_keep_recent(&s, 0.3), 7);
    assert_int_equal(s.n, 3);
    assert_true(s.v[0].time == 7 && s.v[1].time == 8 && s.v[2].time == 9);
    cl_seed_set_shuffle(&s, 5);
    double sum = s.v[0].time + s.v[1].time + s.v[2].time;
    assert_true(sum == 24);
    cl_seed_set_free(&s);
}

static void a_row_missing_a_field_gives_no_seed(void **state)
{
    (void)state;
    const cl_seed_preset *p = cl_seed_preset_find("bigcodebench");
    assert_non_null(p);
    cl_seed_opts o = {0};
    char why[256];
    jv row = jv_parse("{\"task_id\":\"t\",\"instruct_prompt\":\"i\",\"code_prompt\":\"c\",\"canonical_solution\":\"s\",\"test\":\"x\"}");
    jv seed;
    assert_int_equal(cl_seed_from_row(p, &o, &row, &seed, why, sizeof why), -1);
    assert_false(jv_is_valid(seed));
    assert_string_equal(why, "field 'entry_point' is missing");
    jv_free(seed);
    row = jv_object_set(row, jv_string("entry_point"), jv_string("f"));
    assert_int_equal(cl_seed_from_row(p, &o, &row, &seed, why, sizeof why), 0);
    assert_string_equal(cl_json_str(&seed, "id"), "t");
    assert_string_equal(cl_json_str(&seed, "completion"), "cs");
    assert_false(cl_json_has(&seed, "split"));
    jv_free(seed);
    jv_free(row);
    assert_null(cl_seed_preset_find("nope"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(hash_split_is_stable_and_follows_the_ratio),
        cmocka_unit_test(split_names_are_normalised),
        cmocka_unit_test(prompt_key_ignores_case_and_spacing_only),
        cmocka_unit_test(timestamps_parse_to_epoch_seconds),
        cmocka_unit_test(token_estimate_counts_words_numbers_and_symbols),
        cmocka_unit_test(seen_set_keeps_every_key_once),
        cmocka_unit_test(set_keeps_the_most_recent_share),
        cmocka_unit_test(a_row_missing_a_field_gives_no_seed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
