/* chat.h — chat templates rendered straight to token ids and an SFT/DPO loss mask.
 *
 * Owns: the published chat formats as code, not Jinja: Llama-3 headers
 * (<|start_header_id|>role<|end_header_id|>\n\n content.strip() <|eot_id|>, one BOS first),
 * ChatML as Qwen2 and Qwen2.5 write it (with their default system prompts), and Qwen3 (no
 * default system; the last assistant turn after the last user turn carries an empty
 * <think></think> block, and earlier <think> blocks are dropped as its template does); the
 * generation prompt; and the loss mask: 1 on the assistant's content and its end-of-turn
 * token, 0 on everything else (headers, roles, system and user turns).
 *
 * Tokenisation is exactly the tokenizer's on the rendered text: the special tokens a template
 * writes are inserted by id and the text between them is encoded as one piece, which is what
 * splitting the whole rendered string on special tokens does.  A token is in the mask when it
 * starts inside the assistant content; a token that straddles a header and the content (only
 * when the content starts with whitespace the header's newline merges with) stays out.
 * Must not know: where conversations come from (records), models. */
#ifndef CL_MODEL_CHAT_H
#define CL_MODEL_CHAT_H

#include <stddef.h>
#include <stdint.h>

#include "core/err.h"
#include "model/tokenizer.h"

typedef enum cl_chat_format {
    CL_CHAT_LLAMA3,   /* Llama-3 Instruct */
    CL_CHAT_QWEN2,    /* ChatML, default system "You are a helpful assistant." */
    CL_CHAT_QWEN25,   /* ChatML, default system "You are Qwen, created by Alibaba Cloud. ..." */
    CL_CHAT_QWEN3     /* ChatML without default system, <think> handling */
} cl_chat_format;

/* Parses "llama3", "qwen2" (or "chatml"), "qwen2.5", "qwen3"; -1 if unknown. */
int cl_chat_format_parse(const char *name);
const char *cl_chat_format_name(cl_chat_format f);

/* The format a tokenizer speaks: llama3 when it has <|start_header_id|>, else ChatML in the
 * flavour tokenizer_config.json's chat template (text, may be NULL) names: qwen3 when it writes
 * <think>, qwen2.5 with its default system prompt, else qwen2.  -1 when the tokenizer has
 * neither Llama-3 headers nor ChatML tokens. */
int cl_chat_format_detect(const cl_tokenizer *t, const char *tokenizer_config);

typedef struct cl_chat_msg {
    const char *role;       /* "system", "user", "assistant" */
    const char *content;    /* UTF-8, NUL-terminated */
} cl_chat_msg;

typedef struct cl_chat_tokens {
    cl_ids ids;
    uint8_t *mask;          /* mask[i] for ids.v[i]: 1 = the model is trained to produce it */
    size_t mask_cap;
} cl_chat_tokens;

void cl_chat_tokens_free(cl_chat_tokens *c);

/* A Jinja chat template that prints what cl_chat_render_text does, for models that carry none
 * of their own (a new model's tokenizer_config.json, its GGUF): Llama-3 and ChatML (Qwen2);
 * NULL for the formats whose models always bring their published template. */
const char *cl_chat_jinja(cl_chat_format f);

/* The rendered text (what the Jinja template prints), malloc'd; *len set. */
char *cl_chat_render_text(cl_chat_format f, const cl_chat_msg *m, size_t n,
                          int add_generation_prompt, size_t *len, cl_err *e);

/* Appends the ids and mask of the rendered conversation to out.  The tokenizer must have the
 * format's special tokens.  A role other than system/user/assistant is an error. */
int cl_chat_render(cl_tokenizer *t, cl_chat_format f, const cl_chat_msg *m, size_t n,
                   int add_generation_prompt, cl_chat_tokens *out, cl_err *e);

#endif
