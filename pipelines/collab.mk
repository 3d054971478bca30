# pipelines/collab.mk — the CollabLLM data engine (paper §3.2) as make targets.
#
#   make -f pipelines/collab.mk SEEDS=seeds.jsonl.zst OUT=run [VARIABLE=value ...] [-j N]
#
# For every turn t of every conversation: cl-rollout --branch samples K candidate replies and
# S forward continuations of w turns each; cl-judge scores every continuation; cl-reward turns
# the scores into R per continuation and MR per candidate; cl-pairs --advance appends the best
# candidate and the next user message and writes the states of turn t+1.  Finished
# conversations leave the loop.  Then cl-pairs makes DPO pairs from every scored turn and SFT
# dialogues from the finished conversations.
#
# Every file is a target written to a temporary name and renamed when complete, so an
# interrupted run resumes with the same command; the LLM cache (CACHE) replays every call
# already paid for, and the resumed run writes the same bytes.  SHARDS=N splits the seeds into
# N independent chains that `make -j` runs in parallel; SHARD=I runs chain I alone (target
# shard), on whichever machine, and a make without SHARD merges them.  man 7 collabllm walks
# through it.
#
# Layout under OUT:
#   sI/tT/state.zst      states entering turn T of shard I (t0: the seeds)
#   sI/tT/branch.zst     cl-rollout --branch
#   sI/tT/scored.zst     branches judged (cl-judge) and rewarded (cl-reward)
#   sI/tT/next.zst       cl-pairs --advance
#   sI/tT/done.zst       conversations that finished in turn T
#   sI/tT/*.rejects      records a tool could not process (see ALLOW_FAILED)
#   conversations.jsonl.zst  every finished conversation
#   scored.jsonl.zst     every scored turn (the input of the pairs; `make rows` converts it)
#   dpo.jsonl.zst, sft.jsonl.zst  the training data

SEEDS   ?=
ifeq ($(SEEDS)$(filter clean,$(MAKECMDGOALS)),)
$(error SEEDS=FILE is required: seed records from cl-seed)
endif
OUT     ?= collab-out
include $(dir $(lastword $(MAKEFILE_LIST)))common.mk

# ---- the assistant (paper: GPT-4o, temperature 0.8 in the released engine) ---------------
ASSISTANT        ?= $(or $(MODEL),openai:gpt-4o)
FUTURE_ASSISTANT ?= $(ASSISTANT)
ASSISTANT_TEMPERATURE ?= 0.8
ASSISTANT_MAX_TOKENS  ?= 2048

# ---- shape of the tree (paper Table 6: K 2, S 3, w 2; v2 engine: 14 messages) --------------
CANDIDATES   ?= 2
SAMPLES      ?= 3
WINDOW       ?= 2
MAX_TURNS    ?= 7
PROACT_RATIO ?= 0.5
SYSTEM_PROMPT_RATIO ?= 0
# longest (v2 engine) or worst-open (paper-era engine)
NEXT_USER    ?= longest

# ---- scoring (TASK and METRICS_* in common.mk) ---------------------------------------------
JUDGES_math     ?= --accuracy --interactivity
JUDGES_document ?= --extract document --interactivity
JUDGES_code     ?= --extract code --interactivity
JUDGES          ?= $(JUDGES_$(TASK))
# R* and MR: v2 weights by task (math: accuracy 1, interactivity 0.5, tokens -0.5/1000), tokens
# counted with TOKENS (common.mk).
REWARD       ?= --reward v2 --tokens $(TOKENS) $(METRICS_$(TASK))

# ---- training data ------------------------------------------------------------------------
MIN_GAP       ?= 0.02
# e.g. accuracy>=0.5 (the official math recipe); several floors separated by blanks must all
# hold; empty = every finished conversation
SFT_MIN       ?=
# 1 = the CollabLLM system prompt opens every pair prompt and dialogue, as the official
# converters do before training
SYSTEM_PROMPT ?= 1

# ---- extra flags (ROLLOUT_FLAGS, JUDGE_FLAGS, REWARD_FLAGS and ALLOW_FAILED in common.mk) ---
PAIRS_FLAGS   ?=

SYS   = $(if $(filter 1,$(SYSTEM_PROMPT)),--system-prompt --prompt-set $(PROMPT_SET))

ROLLOUT = $(CL)cl-rollout --branch $(LLM) \
    --assistant '$(ASSISTANT)' --assistant-temperature $(ASSISTANT_TEMPERATURE) \
    --assistant-max-tokens $(ASSISTANT_MAX_TOKENS) \
    --future-assistant '$(FUTURE_ASSISTANT)' --future-assistant-temperature $(ASSISTANT_TEMPERATURE) \
    --future-assistant-max-tokens $(ASSISTANT_MAX_TOKENS) \
    --user '$(USER_MODEL)' --user-temperature $(USER_TEMPERATURE) --user-max-tokens $(USER_MAX_TOKENS) \
    -k $(CANDIDATES) --samples $(SAMPLES) --window $(WINDOW) --max-turns $(MAX_TURNS) \
    --proact-ratio $(PROACT_RATIO) --system-prompt-ratio $(SYSTEM_PROMPT_RATIO) \
    --terminate-marker '$(TERMINATE_MARKER)' --prompt-set $(PROMPT_SET) $(ROLLOUT_FLAGS)
JUDGE_CMD  = $(CL)cl-judge $(LLM) --judge '$(JUDGE)' --judge-temperature $(JUDGE_TEMPERATURE) \
    --judge-max-tokens $(JUDGE_MAX_TOKENS) \
    --context window $(JUDGES) $(JUDGE_FLAGS)
REWARD_CMD = $(CL)cl-reward $(REWARD) $(REWARD_FLAGS)
ADVANCE    = $(CL)cl-pairs --advance --next-user $(NEXT_USER) --max-turns $(MAX_TURNS) \
    --terminate-marker '$(TERMINATE_MARKER)' $(PAIRS_FLAGS)

TURNS     := $(shell seq 0 $$(($(MAX_TURNS) - 1)))
NEXTS     := $(shell seq 1 $(MAX_TURNS))

.PHONY: all pairs rows shard clean

ifneq ($(SHARD),)
# One shard of a run spread over machines: its per-turn files only.  The run's files come from
# a make without SHARD once every shard's directory is under OUT.
.DEFAULT_GOAL := shard
ifneq ($(filter-out shard clean,$(or $(MAKECMDGOALS),shard)),)
$(error SHARD=$(SHARD) runs one shard (target shard); merge with the same command without SHARD)
endif
endif

all: $(OUT)/dpo.jsonl.zst $(OUT)/sft.jsonl.zst
pairs: $(OUT)/dpo.jsonl.zst
rows: $(OUT)/rows.jsonl.zst

# seeds_rule SHARD: the seeds of one shard are its turn-0 states.
define seeds_rule
$(OUT)/s$(1)/t0/state.zst: $(SEEDS)
	@mkdir -p $$(@D)
	$(CL)cl-pairs -q --shard $(1)/$(SHARDS) -o $$@.tmp $$< && mv $$@.tmp $$@
endef

# turn_rules SHARD TURN NEXT: one turn of the loop.  Records cl-rollout already finished (the
# user ended the chat with the opening message, or the cap) skip the judge and the reward.
define turn_rules
$(OUT)/s$(1)/t$(2)/branch.zst: $(OUT)/s$(1)/t$(2)/state.zst
	$(NONE) { $(ROLLOUT) --rejects $$(@:.zst=.rejects) -o $$@.tmp $$< $(OK) && mv $$@.tmp $$@; }

$(OUT)/s$(1)/t$(2)/scored.zst: $(OUT)/s$(1)/t$(2)/branch.zst
	$(NONE) { { $(JUDGE_CMD) --where 'has("candidates")' --rejects $$(@D)/judged.rejects -o $$(@D)/judged.tmp $$< $(OK); } && \
	    { $(REWARD_CMD) --rejects $$(@:.zst=.rejects) -o $$@.tmp $$(@D)/judged.tmp $(OK); } && \
	    rm -f $$(@D)/judged.tmp && mv $$@.tmp $$@; }

$(OUT)/s$(1)/t$(2)/next.zst: $(OUT)/s$(1)/t$(2)/scored.zst
	$(NONE) { $(ADVANCE) --rejects $$(@:.zst=.rejects) -o $$@.tmp $$< $(OK) && mv $$@.tmp $$@; }

$(OUT)/s$(1)/t$(3)/state.zst: $(OUT)/s$(1)/t$(2)/next.zst
	@mkdir -p $$(@D)
	$(CL)cl-pairs -q --where '.done | not' -o $$@.tmp $$< && mv $$@.tmp $$@

$(OUT)/s$(1)/t$(2)/done.zst: $(OUT)/s$(1)/t$(2)/branch.zst $(OUT)/s$(1)/t$(2)/next.zst
	$(CL)cl-pairs -q --where '.done == true' -o $$@.tmp $$^ && mv $$@.tmp $$@
endef

$(foreach s,$(SHARD_IDS),$(eval $(call seeds_rule,$(s))))
$(foreach s,$(SHARD_IDS),$(foreach i,$(NEXTS),\
    $(eval $(call turn_rules,$(s),$(word $(i),$(TURNS)),$(i)))))

# What the loop leaves after the last turn is empty when both tools share MAX_TURNS; it is
# kept with the finished conversations so that nothing could be lost silently.
DONE_FILES   := $(foreach s,$(SHARD_IDS),$(foreach t,$(TURNS),$(OUT)/s$(s)/t$(t)/done.zst) \
                  $(OUT)/s$(s)/t$(MAX_TURNS)/state.zst)
SCORED_FILES := $(foreach s,$(SHARD_IDS),$(foreach t,$(TURNS),$(OUT)/s$(s)/t$(t)/scored.zst))

shard: $(DONE_FILES) $(SCORED_FILES)

$(OUT)/conversations.jsonl.zst: $(DONE_FILES)
	cat $^ > $@.tmp && mv $@.tmp $@

$(OUT)/scored.jsonl.zst: $(SCORED_FILES)
	cat $^ > $@.tmp && mv $@.tmp $@

$(OUT)/dpo.jsonl.zst: $(OUT)/scored.jsonl.zst
	$(CL)cl-pairs --dpo --min-gap $(MIN_GAP) $(SYS) $(PAIRS_FLAGS) --stats $(OUT)/dpo.stats -o $@.tmp $< && mv $@.tmp $@

$(OUT)/sft.jsonl.zst: $(OUT)/conversations.jsonl.zst
	$(CL)cl-pairs --sft $(foreach m,$(SFT_MIN),--min '$(m)') $(SYS) $(PAIRS_FLAGS) --stats $(OUT)/sft.stats -o $@.tmp $< && mv $@.tmp $@

$(OUT)/rows.jsonl.zst: $(OUT)/scored.jsonl.zst
	$(CL)cl-pairs --to-flat -o $@.tmp $< && mv $@.tmp $@

# Removes the run's files but keeps the cache, so a fresh run replays every paid call.
clean:
	rm -rf $(foreach s,$(SHARD_IDS),$(OUT)/s$(s)) $(OUT)/*.jsonl.zst $(OUT)/*.stats
