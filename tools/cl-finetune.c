/* cl-finetune — SFT, DPO and GRPO of Llama/Qwen2-family models, LoRA or full, resumable.
 * Parses flags into cl_ft_opts and hands the run to lib/train/finetune.h.  A run directory
 * keeps its command line (args.json) so that `cl-finetune --resume DIR` needs nothing else. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/cli.h"
#include "core/files.h"
#include "core/json.h"
#include "train/finetune.h"
#include "train/modelio.h"
#ifdef CL_HAVE_CUDA
#include "cuda/cuda.h"
#endif

enum {
    O_SFT = 256, O_DPO, O_MODEL, O_INIT, O_TOKENIZER, O_TRAIN_TOK, O_VOCAB, O_RUN, O_RESUME, O_ADAPTER, O_EVAL,
    O_EVAL_SPLIT, O_EVAL_EVERY, O_ANCHOR, O_ANCHOR_W, O_FULL, O_LORA, O_BF16, O_LR, O_WD, O_B1, O_B2, O_EPS,
    O_CLIP, O_SCHED, O_WARMUP_RATIO, O_WARMUP_STEPS, O_EPOCHS, O_MAX_STEPS, O_BATCH, O_ACCUM, O_MAX_LEN,
    O_MAX_PROMPT, O_PACKING, O_BETA, O_LOSS, O_SMOOTH, O_RPO, O_SAVE_EVERY, O_KEEP, O_LOG_EVERY, O_MERGE,
    O_GGUF, O_GGUF_TYPE, O_CHAT, O_PRESET, O_DEVICE, O_RECOMPUTE, O_GRPO, O_CLIP_RATIO, O_KL_COEF, O_ADV_NORM, O_OPT_FROM
};

static const struct option opts[] = {
    {"sft", required_argument, 0, O_SFT},
    {"dpo", required_argument, 0, O_DPO},
    {"grpo", required_argument, 0, O_GRPO},
    {"clip-ratio", required_argument, 0, O_CLIP_RATIO},
    {"kl-coef", required_argument, 0, O_KL_COEF},
    {"adv-norm", required_argument, 0, O_ADV_NORM},
    {"model", required_argument, 0, O_MODEL},
    {"init", required_argument, 0, O_INIT},
    {"tokenizer", required_argument, 0, O_TOKENIZER},
    {"train-tokenizer", required_argument, 0, O_TRAIN_TOK},
    {"vocab", required_argument, 0, O_VOCAB},
    {"run", required_argument, 0, O_RUN},
    {"resume", required_argument, 0, O_RESUME},
    {"adapter", required_argument, 0, O_ADAPTER},
    {"optimizer-from", required_argument, 0, O_OPT_FROM},
    {"eval", required_argument, 0, O_EVAL},
    {"eval-split", required_argument, 0, O_EVAL_SPLIT},
    {"eval-every", required_argument, 0, O_EVAL_EVERY},
    {"anchor", required_argument, 0, O_ANCHOR},
    {"anchor-weight", required_argument, 0, O_ANCHOR_W},
    {"full", no_argument, 0, O_FULL},
    {"lora", required_argument, 0, O_LORA},
    {"bf16", no_argument, 0, O_BF16},
    {"lr", required_argument, 0, O_LR},
    {"weight-decay", required_argument, 0, O_WD},
    {"adam-beta1", required_argument, 0, O_B1},
    {"adam-beta2", required_argument, 0, O_B2},
    {"adam-eps", required_argument, 0, O_EPS},
    {"clip", required_argument, 0, O_CLIP},
    {"schedule", required_argument, 0, O_SCHED},
    {"warmup-ratio", required_argument, 0, O_WARMUP_RATIO},
    {"warmup-steps", required_argument, 0, O_WARMUP_STEPS},
    {"epochs", required_argument, 0, O_EPOCHS},
    {"max-steps", required_argument, 0, O_MAX_STEPS},
    {"batch", required_argument, 0, O_BATCH},
    {"grad-accum", required_argument, 0, O_ACCUM},
    {"max-len", required_argument, 0, O_MAX_LEN},
    {"max-prompt-len", required_argument, 0, O_MAX_PROMPT},
    {"packing", no_argument, 0, O_PACKING},
    {"beta", required_argument, 0, O_BETA},
    {"loss", required_argument, 0, O_LOSS},
    {"label-smoothing", required_argument, 0, O_SMOOTH},
    {"rpo-alpha", required_argument, 0, O_RPO},
    {"save-every", required_argument, 0, O_SAVE_EVERY},
    {"keep", required_argument, 0, O_KEEP},
    {"log-every", required_argument, 0, O_LOG_EVERY},
    {"merge", no_argument, 0, O_MERGE},
    {"gguf", no_argument, 0, O_GGUF},
        {"gguf-type", required_argument, 0, O_GGUF_TYPE},
    {"chat", required_argument, 0, O_CHAT},
    {"preset", required_argument, 0, O_PRESET},
    {"device", required_argument, 0, O_DEVICE},
    {"recompute", no_argument, 0, O_RECOMPUTE},
    {0, 0, 0, 0},
};

static const char help[] =
    "  Mode and inputs:\n"
    "      --sft FILE          supervised fine-tuning on dialogues ({\"messages\"}) or {prompt, completion} rows\n"
    "      --dpo FILE          DPO on {prompt, chosen, rejected} pairs (cl-pairs --dpo, published rows)\n"
    "      --grpo FILE         GRPO on {prompt, completions, rewards[, logps]} groups of sampled replies\n"
    "      --model DIR         model directory: config.json, *.safetensors, tokenizer.json\n"
    "      --init CONFIG       a new randomly initialised model from CONFIG (written to RUN/init)\n"
    "      --tokenizer FILE    tokenizer.json for --init\n"
    "      --train-tokenizer CORPUS  train a byte-level BPE (Llama-3 chat tokens) on CORPUS for --init\n"
    "      --vocab N           vocabulary size for --train-tokenizer (default 512)\n"
    "      --run DIR           run directory: checkpoints, metrics.jsonl, final/, exports (required)\n"
    "      --resume DIR        continue the run in DIR from its last checkpoint (bit for bit)\n"
    "      --adapter DIR       start from this PEFT adapter instead of fresh LoRA weights\n"
    "      --optimizer-from CKPT  continue the AdamW moments and step count of checkpoint CKPT\n"
    "      --chat FORMAT       llama3, qwen2, qwen2.5, qwen3 or auto (default auto)\n"
    "  Adapters or full weights:\n"
    "      --lora SPEC         r=8,alpha=16,dropout=0,targets=q,k,v,o,gate,up,down[,rslora][,init=gaussian]\n"
    "      --full              train every weight (default with --init)\n"
    "      --bf16              keep the frozen base in bf16 (LoRA only)\n"
    "  Optimisation:\n"
    "      --preset NAME       collabllm-sft, collabllm-dpo or verl-grpo: a published recipe (later flags override)\n"
    "      --lr X              peak learning rate (default 1e-4 LoRA, 1e-5 full)\n"
    "      --schedule NAME     constant, linear or cosine (default cosine)\n"
    "      --warmup-ratio X    warmup as a fraction of the steps (default 0)\n"
    "      --warmup-steps N    warmup steps (overrides the ratio)\n"
    "      --weight-decay X    AdamW decoupled weight decay (default 0)\n"
    "      --adam-beta1 X      (default 0.9)   --adam-beta2 X (default 0.999)   --adam-eps X (default 1e-8)\n"
    "      --clip X            global gradient-norm clip, 0 = off (default 1)\n"
    "      --epochs N          passes over the data (default 1)\n"
    "      --max-steps N       optimizer steps (overrides --epochs)\n"
    "      --batch N           examples per micro-batch (default 4)\n"
    "      --grad-accum N      micro-batches per optimizer step (default 1)\n"
    "      --max-len N         tokens per sequence; prompts are cut from the left (default 1024)\n"
    "      --max-prompt-len N  cut prompts to N tokens first (default: only --max-len)\n"
    "      --packing           pack a micro-batch's sequences into shared rows of --max-len\n"
    "  DPO:\n"
    "      --beta X            DPO beta (default 0.1)\n"
    "      --loss NAME         sigmoid, hinge, ipo or robust (default sigmoid)\n"
    "      --label-smoothing X conservative/robust DPO epsilon (default 0)\n"
    "      --rpo-alpha X       add X times the NLL of the chosen replies (default 0)\n"
    "      --anchor FILE       SFT dialogues mixed into every step (keeps small models fluent)\n"
    "      --anchor-weight W   weight of the anchor loss (default 1)\n"
    "  GRPO:\n"
    "      --clip-ratio X      clip the policy ratio to [1-X, 1+X] (default 0.2)\n"
    "      --kl-coef X         weight of the k3 KL to the reference, 0 = none (default 0.001)\n"
    "      --adv-norm std|mean advantages (r-mean)/std per group (verl's default) or r-mean\n"
    "  Evaluation, checkpoints, outputs:\n"
    "      --eval FILE         held-out rows of the same kind\n"
    "      --eval-split X      hold out this fraction of the data instead\n"
    "      --eval-every N      evaluate every N steps (and at the end); the best is kept\n"
    "      --save-every N      checkpoint every N steps (always at the end, and on SIGINT/SIGTERM)\n"
    "      --keep N            newest checkpoints kept besides the best, 0 = all (default 2)\n"
    "      --log-every N       progress line every N steps (default 10)\n"
    "      --merge             also write RUN/merged: the base with the adapters merged in\n"
    "      --gguf              also write GGUF for llama.cpp (RUN/adapter.gguf, RUN/model.gguf)\n"
    "      --gguf-type TYPE    model.gguf's matrices: f32, f16 or bf16 (default: as the model holds them)\n"
    "  Device:\n"
    "      --device DEV        cpu (default), cuda or cuda:N (an NVIDIA GPU; needs a make CUDA=1 build)\n"
    "      --recompute         keep only each layer's input and recompute the rest in backward (cuda)\n"
    "  -o FILE copies the metrics records to FILE; progress goes to stderr.\n"
    "  OMP_NUM_THREADS sets the training threads.\n";

typedef struct ctx {
    cl_ft_opts o;
    const char *device;
    int recompute;
    int lora_given, full_given, lr_given;
} ctx;

static const char *const short_targets[][2] = {{"q", "q_proj"},       {"k", "k_proj"},   {"v", "v_proj"},
                                               {"o", "o_proj"},       {"gate", "gate_proj"}, {"up", "up_proj"},
                                               {"down", "down_proj"}};

/* r=32,alpha=16,dropout=0.1,targets=q,k,v,o,gate,up,down,rslora,init=gaussian: words without
 * '=' after targets= are more targets. */
static int parse_lora(cl_lora_config *l, const char *spec, cl_err *e)
{
    char *s = strdup(spec), *save = NULL;
    int in_targets = 0, rc = 0;
    unsigned mask = 0;
    for (char *tok = strtok_r(s, ",", &save); tok && !rc; tok = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(tok, '=');
        const char *key = tok, *val = eq ? eq + 1 : NULL;
        if (eq) *eq = 0;
        if (!eq && in_targets && strcmp(tok, "rslora")) {
            val = tok;
            key = "targets";
        } else {
            in_targets = 0;
        }
        double x;
        if (!strcmp(key, "targets")) {
            in_targets = 1;
            const char *name = val;
            for (size_t i = 0; i < sizeof short_targets / sizeof *short_targets; i++)
                if (!strcmp(val, short_targets[i][0])) name = short_targets[i][1];
            unsigned one;
            rc = cl_lora_targets(name, &one, e);
            mask |= one;
        } else if (!strcmp(key, "r") && val) {
            rc = cl_parse_int(val, 1, 4096, "--lora r", &l->rank, e);
        } else if (!strcmp(key, "alpha") && val) {
            if (!(rc = cl_parse_double(val, 0, 1e6, "--lora alpha", &x, e))) l->alpha = x;
        } else if (!strcmp(key, "dropout") && val) {
            if (!(rc = cl_parse_double(val, 0, 0.99, "--lora dropout", &x, e))) l->dropout = x;
        } else if (!strcmp(key, "rslora") && !val) {
            l->rslora = 1;
        } else if (!strcmp(key, "init") && val && (!strcmp(val, "gaussian") || !strcmp(val, "kaiming"))) {
            l->init = strcmp(val, "gaussian") ? CL_LORA_INIT_KAIMING : CL_LORA_INIT_GAUSSIAN;
        } else {
            rc = cl_err_set(e, CL_EXIT_USAGE, "--lora: unknown item \"%s\" (r=, alpha=, dropout=, targets=, rslora, init=)",
                            key);
        }
    }
    if (mask) l->targets = mask;
    free(s);
    return rc;
}

static void apply_preset(ctx *c, const char *name)
{
    cl_ft_opts *o = &c->o;
    if (!strcmp(name, "verl-grpo")) {
        /* verl's recipe/collabllm train_rl_collabllm.sh with verl's actor defaults: lr 1e-6,
         * constant, weight decay 0.01, clip 1.0; PPO mini-batch 8 prompts x n = 8 replies =
         * 64 replies per optimizer step; clip ratio 0.2 (dual clip 3); k3 KL loss 0.001 */
        o->lr = 1e-6;
        c->lr_given = 1;
        o->sched = CL_SCHED_CONSTANT;
        o->warmup_ratio = 0;
        o->adamw.weight_decay = 0.01;
        o->clip = 1.0;
        o->batch = 8;
        o->grad_accum = 8;
        o->grpo = (cl_grpo_config){.clip_low = 0.2, .clip_high = 0.2, .clip_c = 3, .kl_coef = 0.001, .adv_eps = 1e-6};
        return;
    }
    if (strcmp(name, "collabllm-sft") && strcmp(name, "collabllm-dpo"))
        cl_usage_error("--preset: unknown preset \"%s\" (collabllm-sft, collabllm-dpo, verl-grpo)", name);
    /* CollabLLM scripts/train/{sft,offline_dpo}.py: LoRA r 32, alpha 16, dropout 0.1 on all seven
     * projections with Gaussian A; cosine, no warmup, clip 1.0 */
    o->lora = (cl_lora_config){.rank = 32, .alpha = 16, .dropout = 0.1, .targets = (1u << CL_NPROJ) - 1,
                               .init = CL_LORA_INIT_GAUSSIAN};
    o->sched = CL_SCHED_COSINE;
    o->warmup_ratio = 0;
    o->clip = 1.0;
    c->lr_given = 1;
    if (!strcmp(name, "collabllm-sft")) {
        o->lr = 1e-5;
        o->epochs = 3;
    } else {
        o->lr = 5e-6;
        o->epochs = 8;
        o->dpo = (cl_dpo_config){.type = CL_DPO_SIGMOID, .beta = 0.1};
    }
}

static int on_opt(void *vp, int opt, const char *arg, cl_err *e)
{
    ctx *c = vp;
    cl_ft_opts *o = &c->o;
    int rc = 0;
    switch (opt) {
    case O_SFT: o->kind = CL_FT_SFT; o->data = arg; break;
    case O_DPO: o->kind = CL_FT_PAIRS; o->data = arg; break;
    case O_GRPO: o->kind = CL_FT_GRPO; o->data = arg; break;
    case O_CLIP_RATIO:
        rc = cl_parse_double(arg, 0, 0.99, "--clip-ratio", &o->grpo.clip_low, e);
        o->grpo.clip_high = o->grpo.clip_low;
        break;
    case O_KL_COEF: rc = cl_parse_double(arg, 0, 1e6, "--kl-coef", &o->grpo.kl_coef, e); break;
    case O_ADV_NORM:
        if (strcmp(arg, "std") && strcmp(arg, "mean"))
            rc = cl_err_set(e, CL_EXIT_USAGE, "--adv-norm: unknown value '%s' (std, mean)", arg);
        o->grpo.adv_mean_only = !strcmp(arg, "mean");
        break;
    case O_MODEL: o->model_dir = arg; break;
    case O_INIT: o->init_config = arg; break;
    case O_TOKENIZER: o->tokenizer = arg; break;
    case O_TRAIN_TOK: o->corpus = arg; break;
    case O_VOCAB: rc = cl_parse_int(arg, 262, 1 << 20, "--vocab", &o->corpus_vocab, e); break;
    case O_RUN: o->run_dir = arg; break;
    case O_RESUME: o->run_dir = arg; o->resume = 1; break;
    case O_ADAPTER: o->adapter = arg; break;
    case O_OPT_FROM: o->optimizer_from = arg; break;
    case O_EVAL: o->eval_data = arg; break;
    case O_EVAL_SPLIT: rc = cl_parse_double(arg, 0, 0.9, "--eval-split", &o->eval_split, e); break;
    case O_EVAL_EVERY: rc = cl_parse_long(arg, 0, 1L << 40, "--eval-every", &o->eval_every, e); break;
    case O_ANCHOR: o->anchor = arg; break;
    case O_ANCHOR_W: rc = cl_parse_double(arg, 1e-9, 1e6, "--anchor-weight", &o->anchor_weight, e); break;
    case O_FULL: o->full = 1; c->full_given = 1; break;
    case O_LORA: c->lora_given = 1; rc = parse_lora(&o->lora, arg, e); break;
    case O_BF16: o->bf16 = 1; break;
    case O_DEVICE: c->device = arg; break;
    case O_RECOMPUTE: c->recompute = 1; break;
    case O_LR: rc = cl_parse_double(arg, 0, 10, "--lr", &o->lr, e); c->lr_given = 1; break;
    case O_WD: rc = cl_parse_double(arg, 0, 10, "--weight-decay", &o->adamw.weight_decay, e); break;
    case O_B1: rc = cl_parse_double(arg, 0, 0.999999, "--adam-beta1", &o->adamw.beta1, e); break;
    case O_B2: rc = cl_parse_double(arg, 0, 0.999999999, "--adam-beta2", &o->adamw.beta2, e); break;
    case O_EPS: rc = cl_parse_double(arg, 0, 1, "--adam-eps", &o->adamw.eps, e); break;
    case O_CLIP: rc = cl_parse_double(arg, 0, 1e9, "--clip", &o->clip, e); break;
    case O_SCHED:
        if (cl_sched_parse(arg) < 0) return cl_err_set(e, CL_EXIT_USAGE, "--schedule: constant, linear or cosine");
        o->sched = (cl_sched)cl_sched_parse(arg);
        break;
    case O_WARMUP_RATIO: rc = cl_parse_double(arg, 0, 1, "--warmup-ratio", &o->warmup_ratio, e); break;
    case O_WARMUP_STEPS: rc = cl_parse_long(arg, 0, 1L << 40, "--warmup-steps", &o->warmup_steps, e); break;
    case O_EPOCHS: rc = cl_parse_int(arg, 1, 100000, "--epochs", &o->epochs, e); break;
    case O_MAX_STEPS: rc = cl_parse_long(arg, 1, 1L << 40, "--max-steps", &o->max_steps, e); break;
    case O_BATCH: rc = cl_parse_int(arg, 1, 1024, "--batch", &o->batch, e); break;
    case O_ACCUM: rc = cl_parse_int(arg, 1, 1 << 20, "--grad-accum", &o->grad_accum, e); break;
    case O_MAX_LEN: rc = cl_parse_int(arg, 2, 1 << 20, "--max-len", &o->max_len, e); break;
    case O_MAX_PROMPT: rc = cl_parse_int(arg, 1, 1 << 20, "--max-prompt-len", &o->max_prompt_len, e); break;
    case O_PACKING: o->packing = 1; break;
    case O_BETA: rc = cl_parse_double(arg, 1e-9, 1e6, "--beta", &o->dpo.beta, e); break;
    case O_LOSS:
        if (cl_dpo_type_parse(arg) < 0) return cl_err_set(e, CL_EXIT_USAGE, "--loss: sigmoid, hinge, ipo or robust");
        o->dpo.type = (cl_dpo_type)cl_dpo_type_parse(arg);
        break;
    case O_SMOOTH: rc = cl_parse_double(arg, 0, 0.49, "--label-smoothing", &o->dpo.label_smoothing, e); break;
    case O_RPO: rc = cl_parse_double(arg, 0, 1e6, "--rpo-alpha", &o->rpo_alpha, e); break;
    case O_SAVE_EVERY: rc = cl_parse_long(arg, 0, 1L << 40, "--save-every", &o->save_every, e); break;
    case O_KEEP: rc = cl_parse_int(arg, 0, 1 << 20, "--keep", &o->keep, e); break;
    case O_LOG_EVERY: rc = cl_parse_long(arg, 0, 1L << 40, "--log-every", &o->log_every, e); break;
    case O_MERGE: o->merge = 1; break;
    case O_GGUF: o->gguf = 1; break;
    case O_GGUF_TYPE:
        if (cl_gguf_matrices_parse(arg) < 0) return cl_err_set(e, CL_EXIT_USAGE, "--gguf-type: f32, f16 or bf16");
        o->gguf_type = (cl_gguf_matrices)cl_gguf_matrices_parse(arg);
        break;
    case O_CHAT: o->chat = arg; break;
    case O_PRESET: break; /* applied before the other flags */
    default: return cl_err_set(e, CL_EXIT_SOFTWARE, "unhandled option %d", opt);
    }
    return rc;
}

static const char *preset_of(int argc, char **argv)
{
    const char *p = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--")) break;
        if (!strcmp(argv[i], "--preset") && i + 1 < argc) p = argv[++i];
        else if (!strncmp(argv[i], "--preset=", 9)) p = argv[i] + 9;
    }
    return p;
}

static void parse(ctx *c, const cl_cli *cli, int argc, char **argv, cl_common *common)
{
    memset(c, 0, sizeof *c);
    cl_ft_opts_default(&c->o);
    c->o.anchor_weight = 1.0;
    c->o.log_every = 10;
    const char *preset = preset_of(argc, argv);
    if (preset) apply_preset(c, preset);
    cl_cli_parse(cli, argc, argv, common);
}

/* --resume DIR without --sft/--dpo: the run's saved command line, then this one's flags (so
 * --resume DIR --log-every 1 changes what does not alter the training). */
static char **saved_args(const char *dir, int uargc, char **uargv, int *argc)
{
    char p[4200];
    cl_ft_path(p, sizeof p, dir, "args.json");
    cl_err e = {0};
    size_t len;
    char *b = cl_file_read(p, &len, &e);
    if (!b) cl_die(CL_EXIT_NOINPUT, "%s (give the run's flags with --resume)", e.msg);
    jv v = cl_json_parse(b, len);
    free(b);
    if (jv_get_kind(v) != JV_KIND_ARRAY) cl_die(CL_EXIT_DATAERR, "%s: not a JSON array of arguments", p);
    int n = jv_array_length(jv_copy(v));
    char **av = calloc((size_t)n + (size_t)uargc + 1, sizeof *av);
    av[0] = strdup("cl-finetune");
    for (int i = 0; i < n; i++) {
        jv s = jv_array_get(jv_copy(v), i);
        if (jv_get_kind(s) != JV_KIND_STRING) cl_die(CL_EXIT_DATAERR, "%s: argument %d is not a string", p, i);
        av[i + 1] = strdup(jv_string_value(s));
        jv_free(s);
    }
    jv_free(v);
    for (int i = 1; i < uargc; i++) av[n + i] = strdup(uargv[i]);
    *argc = n + uargc;
    return av;
}

/* The command line as a JSON array, kept in the run directory for --resume. */
static char *args_json(int argc, char **argv)
{
    jv a = jv_array();
    for (int i = 1; i < argc; i++) a = jv_array_append(a, jv_string(argv[i]));
    char *s = cl_json_dump(&a, NULL);
    jv_free(a);
    return s;
}

int main(int argc, char **argv)
{
    static ctx c;
    const cl_cli cli = {
        .prog = "cl-finetune",
        .synopsis = "(--sft FILE | --dpo FILE | --grpo FILE) (--model DIR | --init CONFIG) --run DIR [options]\n"
                    "       cl-finetune --resume DIR",
        .summary = "Fine-tune Llama/Qwen2-family models with SFT, DPO or GRPO (LoRA or full).",
        .options_help = help,
        .opts = opts,
        .on_opt = on_opt,
        .ctx = &c,
        .records = 0,
    };
    cl_common common;
    parse(&c, &cli, argc, argv, &common);
    char **av = NULL;
    int ac = 0;
    int own_recompute = c.recompute; /* on this command line, not only in the saved one */
    if (c.o.resume && !c.o.data && !c.o.init_config && !c.o.model_dir) {
        av = saved_args(c.o.run_dir, argc, argv, &ac);
        optind = 0;
        parse(&c, &cli, ac, av, &common);
    }
    cl_ft_opts *o = &c.o;
    if (common.ninputs)
        cl_usage_error("unexpected argument '%s' (data files go with --sft, --dpo or --grpo)", common.inputs[0]);
    if (!o->run_dir) cl_usage_error("--run DIR is required");
    if (!o->model_dir == !o->init_config) cl_usage_error("give exactly one of --model DIR and --init CONFIG");
    if (o->init_config && !o->tokenizer == !o->corpus)
        cl_usage_error("--init needs exactly one of --tokenizer FILE and --train-tokenizer CORPUS");
    if (!o->init_config && (o->tokenizer || o->corpus)) cl_usage_error("--tokenizer and --train-tokenizer go with --init");
    if (!o->data && !o->init_config) cl_usage_error("give --sft FILE, --dpo FILE or --grpo FILE");
    if (c.lora_given && c.full_given) cl_usage_error("--lora and --full exclude each other");
    if (o->init_config && !c.lora_given) o->full = 1;
    if (o->full && (o->bf16 || o->adapter)) cl_usage_error("--bf16 and --adapter need LoRA, not --full");
    if (o->full && o->merge) cl_usage_error("--merge needs LoRA: full fine-tuning already writes whole weights");
    if (o->kind != CL_FT_PAIRS && (o->anchor || o->rpo_alpha > 0))
        cl_usage_error("--anchor and --rpo-alpha go with --dpo");
    if (o->eval_data && o->eval_split > 0) cl_usage_error("--eval and --eval-split exclude each other");
    if (o->kind == CL_FT_GRPO && (o->eval_data || o->eval_split > 0))
        cl_usage_error("--grpo has no held-out loss: score the policy with cl-rollout and cl-judge instead of --eval");
    if (!c.lr_given) o->lr = o->full ? 1e-5 : 1e-4;
    o->seed = common.seed;
    o->lora.seed = common.seed;
    o->quiet = common.quiet;
    /* --progress and --no-progress mean here what they mean to every tool: the step lines */
    o->progress_every = common.progress_every;
    if (!common.progress && common.progress_every <= 0)
        o->log_every = 0;
    o->stats = common.stats;
    char *args = o->resume ? NULL : args_json(argc, argv);
    o->args_json = args;
    cl_err e = {0};
    cl_device dev;
    int ordinal, gpu = c.device ? cl_device_parse(c.device, &ordinal, &e) : 0;
    if (gpu < 0) cl_usage_error("%s", e.msg);
    /* --recompute changes memory, not results: a GPU run resumed with --device cpu drops the
     * one its saved command line holds */
    if (c.recompute && !gpu && av && !own_recompute) c.recompute = 0;
    if (c.recompute && !gpu)
        cl_usage_error("--recompute needs --device cuda (the CPU path keeps every activation)");
    if (gpu) {
#ifdef CL_HAVE_CUDA
        if (cl_cuda_open(&dev, c.device, &e)) cl_die_err(&e);
        dev.recompute = c.recompute;
        o->device = &dev;
#else
        (void)dev;
        cl_die(CL_EXIT_UNAVAILABLE, "--device %s: this cl-finetune was built without CUDA (rebuild with make CUDA=1)",
               c.device);
#endif
    }
    cl_writer *w = NULL;
    if (common.output) {
        cl_writer_opts wo = {.plain = common.plain, .level = common.level, .threads = common.threads};
        if (!(w = cl_writer_open(common.output, &wo, &e))) cl_die_err(&e);
        o->metrics_out = w;
    }
    int rc = cl_ft_run(o, &e);
    cl_err we = {0};
    if (w && cl_writer_close(w, &we) && !rc) {
        e = we;
        rc = -1;
    }
    for (int i = 0; av && i < ac; i++) free(av[i]);
    free(av);
    free(args);
    if (rc) cl_die_err(&e);
#ifdef CL_HAVE_CUDA
    if (o->device && !o->quiet) {
        size_t peak;
        cl_cuda_memory(NULL, &peak);
        cl_warn("%s: at most %.0f MiB of device memory held (weights, optimizer state, activations)", o->device->name,
                (double)peak / (1 << 20));
    }
#endif
    return 0;
}
