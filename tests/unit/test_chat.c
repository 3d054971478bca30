/* Unit tests for lib/model/chat: masks token by token on a small trained tokenizer. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "model/bpe_train.h"
#include "model/chat.h"

static cl_tokenizer *tok;

static int setup(void **state)
{
    (void)state;
    const char *text = "user assistant system hello world the answer is 42 hello hello";
    size_t len = strlen(text);
    cl_bpe_added added[] = {{"<|begin_of_text|>", 1, 0, 0}, {"<|start_header_id|>", 1, 0, 0},
                            {"<|end_header_id|>", 1, 0, 0}, {"<|eot_id|>", 1, 0, 0},
                            {"<|im_start|>", 1, 0, 0},      {"<|im_end|>", 1, 0, 0}};
    cl_bpe_train_opts o = {.vocab_size = 300, .added = added, .n_added = 6};
    cl_err e = {0};
    size_t jl;
    char *json = cl_bpe_train(&text, &len, 1, &o, &jl, &e);
    tok = json ? cl_tokenizer_from_json(json, jl, "chat", &e) : NULL;
    free(json);
    return tok ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    cl_tokenizer_free(tok);
    return 0;
}

static char *masked_text(const cl_chat_tokens *c, int want)
{
    int32_t *ids = malloc(c->ids.n * sizeof *ids + 1);
    size_t n = 0, len;
    for (size_t i = 0; i < c->ids.n; i++)
        if (c->mask[i] == want)
            ids[n++] = c->ids.v[i];
    cl_err e = {0};
    char *s = cl_tokenizer_decode(tok, ids, n, 0, &len, &e);
    free(ids);
    return s;
}

static const cl_chat_msg conv[] = {{"system", "Be brief."}, {"user", "hello"}, {"assistant", " the answer is 42 "},
                                   {"user", "world"}, {"assistant", "hello"}};

static void llama3_masks_trimmed_content_and_eot(void **state)
{
    (void)state;
    cl_chat_tokens c = {0};
    cl_err e = {0};
    assert_int_equal(cl_chat_render(tok, CL_CHAT_LLAMA3, conv, 5, 0, &c, &e), 0);
    char *on = masked_text(&c, 1);
    assert_string_equal(on, "the answer is 42<|eot_id|>hello<|eot_id|>");
    free(on);
    assert_int_equal(c.ids.v[0], cl_tokenizer_token_id(tok, "<|begin_of_text|>"));
    size_t bos = 0;
    for (size_t i = 0; i < c.ids.n; i++)
        bos += c.ids.v[i] == c.ids.v[0];
    assert_int_equal(bos, 1);
    /* The rendered text tokenised whole gives the same ids. */
    size_t tl;
    char *text = cl_chat_render_text(CL_CHAT_LLAMA3, conv, 5, 0, &tl, &e);
    cl_ids whole = {0};
    assert_int_equal(cl_tokenizer_encode(tok, text, tl, 0, &whole, &e), 0);
    assert_int_equal(whole.n, c.ids.n);
    assert_memory_equal(whole.v, c.ids.v, whole.n * sizeof *whole.v);
    cl_ids_free(&whole);
    free(text);
    cl_chat_tokens_free(&c);
}

static void chatml_masks_im_end_but_not_the_newline_after_it(void **state)
{
    (void)state;
    cl_chat_tokens c = {0};
    cl_err e = {0};
    assert_int_equal(cl_chat_render(tok, CL_CHAT_QWEN25, conv + 1, 2, 1, &c, &e), 0);
    char *on = masked_text(&c, 1), *off = masked_text(&c, 0);
    assert_string_equal(on, " the answer is 42 <|im_end|>");
    assert_string_equal(off, "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful "
                             "assistant.<|im_end|>\n<|im_start|>user\nhello<|im_end|>\n<|im_start|>assistant\n"
                             "\n<|im_start|>assistant\n");
    free(on);
    free(off);
    cl_chat_tokens_free(&c);
}

static void bad_roles_and_unknown_formats_are_errors(void **state)
{
    (void)state;
    cl_chat_tokens c = {0};
    cl_err e = {0};
    cl_chat_msg bad[] = {{"tool", "x"}};
    assert_int_equal(cl_chat_render(tok, CL_CHAT_QWEN2, bad, 1, 0, &c, &e), -1);
    assert_non_null(strstr(e.msg, "message 0"));
    assert_int_equal(cl_chat_format_parse("chatml"), CL_CHAT_QWEN2);
    assert_int_equal(cl_chat_format_parse("vicuna"), -1);
    cl_chat_tokens_free(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(llama3_masks_trimmed_content_and_eot),
        cmocka_unit_test(chatml_masks_im_end_but_not_the_newline_after_it),
        cmocka_unit_test(bad_roles_and_unknown_formats_are_errors),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
