# pipelines/common.mk — what collab.mk and eval.mk share: where the programs are, how the models
# are reached, the simulator and judge settings, the task's metrics and the failure policy.
# Every variable can be set on the make command line.

OUT     ?= out
# Directory of the cl programs; empty = from PATH.
BIN     ?=
SHARDS  ?= 1

# Paper: GPT-4o-mini user simulator (OPENAI_API_KEY), Claude 3.5 Sonnet judge at the snapshot the
# paper-era code pins, reached natively through Anthropic's Messages API (ANTHROPIC_API_KEY), as
# the official code reaches it through LiteLLM.  Anthropic retired that snapshot in October 2025:
# where it no longer answers, name a current model (JUDGE=anthropic:claude-sonnet-4-5) and say so
# with the results.  API_BASE: base URL of every openai: model; empty = $OPENAI_BASE_URL (anthropic:
# and azure: roles have their own variables, see cl-llm(7)).  Keys come from the environment only.
# One model for every role (one vLLM or llama.cpp server): MODEL=openai:NAME sets ASSISTANT,
# FUTURE_ASSISTANT, USER_MODEL and JUDGE (and eval.mk's MODELS) unless each is given.
MODEL             ?=
USER_MODEL        ?= $(or $(MODEL),openai:gpt-4o-mini)
JUDGE             ?= $(or $(MODEL),anthropic:claude-3-5-sonnet-20240620)
API_BASE          ?=
USER_TEMPERATURE  ?= 1.0
JUDGE_TEMPERATURE ?= 0
USER_MAX_TOKENS   ?= 1024
JUDGE_MAX_TOKENS  ?= 2048
CACHE             ?= $(OUT)/cache
MAX_INFLIGHT      ?= 64
SEED              ?= 0
TERMINATE_MARKER  ?= [[TERMINATE CHAT]]

# Task family of the seeds (math, document, code): picks the judges, the local task metric and,
# in eval.mk, the paper's per-task settings.  Default: the "task" of the first seed, else math.
ifeq ($(origin TASK),undefined)
TASK := $(or $(shell zstd -dcf '$(SEEDS)' 2>/dev/null | head -n 1 | jq -r '.task // empty' 2>/dev/null),math)
endif
METRICS_math     ?=
METRICS_document ?= --metric bleu
METRICS_code     ?= --metric pass_rate

# The assistant's own prompts (proactive and CollabLLM system prompt, in cl-rollout and in the
# training data of cl-pairs): official (the official prompts' behaviour in our words: clarify
# whenever a request is ambiguous, collaborate over several turns) or cl (ours: ask only when a
# gap changes the answer, act otherwise, short replies).  Records carry it as prompt_set.
PROMPT_SET ?= official

# Token counter of #Tokens and of the token term of R*: cl100k (OpenAI's cl100k_base, the
# paper's and the release code's count; `make deps` installs it), usage (the visible share of
# the completion tokens each call reported) or words (whitespace words: a stand-in, about half
# of cl100k on math and code).
TOKENS ?= cl100k

ROLLOUT_FLAGS ?=
JUDGE_FLAGS   ?=
REWARD_FLAGS  ?=
# 1 = a step whose tool reports failed records (exit 1 or 69) keeps the others and goes on; the
# failed records are in the step's .rejects file.  0 = the step fails and make stops there.
ALLOW_FAILED  ?= 0

CL  = $(if $(BIN),$(BIN)/)
LLM = $(if $(API_BASE),--api-base $(API_BASE)) --cache $(CACHE) --max-inflight $(MAX_INFLIGHT) --seed $(SEED)
# The recipes' exit test: status 1 (some records failed) and 69 (some failed because a model
# call gave up on an unavailable server; every record was still written) pass with
# ALLOW_FAILED=1; 75 never does (a budget stop leaves records unwritten).  Written for recipes
# defined through $(eval $(call ...)), which expand it twice.
OK  = ; rc=$$$$?; [ $$$$rc = 0 ] || { { [ $$$$rc = 1 ] || [ $$$$rc = 69 ]; } && [ "$(ALLOW_FAILED)" = 1 ]; }
# SHARD=I (0 <= I < SHARDS): this make runs shard I alone, so that the shards of one run can
# go to different machines (collab.mk's `shard` target; collabllm(7), Beyond one machine).
SHARD   ?=
SHARD_IDS := $(if $(SHARD),$(SHARD),$(shell seq 0 $$(($(SHARDS) - 1))))
# A step whose input holds no record (every conversation of the shard finished in an earlier
# turn) writes its empty output without running its tool, so that a run prints one line per
# step that did something, not pages of "0 records in, 0 out".  VERBOSE=1 runs every step.
# Used as `$(NONE) { the step's commands; }`, in recipes defined through $(eval $(call ...)).
VERBOSE ?= 0
NONE = [ "$(VERBOSE)" != 1 ] && [ -z "$$$$(zstd -dcq $$< | head -c 1)" ] && cp $$< $$@ ||

.DELETE_ON_ERROR:
# Every intermediate file is a checkpoint: never delete one because it is intermediate.
.SECONDARY:
