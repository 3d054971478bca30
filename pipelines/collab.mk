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
# N independent chains that `make -j` runs in parallel.  man 7 collabllm walks through it.
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

# ---- input and output --------------------------------------------------------------------
SEEDS   ?= $(error SEEDS=FILE is required: seed records from cl-seed)
OUT     ?= collab-out
# Directory of the cl programs; empty = from PATH.
BIN     ?=
SHARDS  ?= 1

# ---- models (paper: GPT-4o assistant, GPT-4o-mini user simulator, Claude 3.5 Sonnet judge) ---
ASSISTANT        ?= openai:gpt-4o
FUTURE_ASSISTANT ?= $(ASSISTANT)
USER_MODEL       ?= openai:gpt-4o-mini
JUDGE            ?= openai:claude-3-5-sonnet-20240620
# Base URL of every openai: model; empty = $OPENAI_BASE_URL (keys come from the environment).
API_BASE         ?=
ASSISTANT_TEMPERATURE ?= 0.8
USER_TEMPERATURE      ?= 1.0
JUDGE_TEMPERATURE     ?= 0
CACHE        ?= $(OUT)/cache
MAX_INFLIGHT ?= 64
SEED         ?= 0

# ---- shape of the tree (paper Table 6: K 2, S 3, w 2; v2 engine: 14 messages) --------------
CANDIDATES   ?= 2
SAMPLES      ?= 3
WINDOW       ?= 2
MAX_TURNS    ?= 7
PROACT_RATIO ?= 0.5
SYSTEM_PROMPT_RATIO ?= 0
TERMINATE_MARKER    ?= [[TERMINATE CHAT]]
# longest (v2 engine) or worst-open (paper-era engine)
NEXT_USER    ?= longest

# ---- scoring ----------------------------------------------------------------------------
# Task family of the seeds: picks the judges and the local task metric.
TASK ?= math
JUDGES_math     ?= --accuracy --interactivity
JUDGES_document ?= --extract document --interactivity
JUDGES_code     ?= --extract code --interactivity
JUDGES          ?= $(JUDGES_$(TASK))
METRICS_math     ?=
METRICS_document ?= --metric bleu
METRICS_code     ?= --metric pass_rate
# R* and MR: v2 weights by task (math: accuracy 1, interactivity 0.5, tokens -0.5/1000).
# Token counts from whitespace words; --tokens usage needs per-message usage in the futures.
REWARD       ?= --reward v2 --tokens words $(METRICS_$(TASK))

# ---- training data ------------------------------------------------------------------------
MIN_GAP       ?= 0.02
# e.g. accuracy>=0.5 (the official math recipe); empty = every finished conversation
SFT_MIN       ?=
# 1 = the CollabLLM system prompt opens every pair prompt and dialogue, as the official
# converters do before training
SYSTEM_PROMPT ?= 1

# ---- extra flags and failure policy ------------------------------------------------------
ROLLOUT_FLAGS ?=
JUDGE_FLAGS   ?=
REWARD_FLAGS  ?=
PAIRS_FLAGS   ?=
# 1 = a step whose tool reports failed records (exit 1) keeps the others and goes on; the
# failed records are in the step's .rejects file.  0 = the step fails and make stops there.
ALLOW_FAILED  ?= 0

CL    = $(if $(BIN),$(BIN)/)
LLM   = $(if $(API_BASE),--api-base $(API_BASE)) --cache $(CACHE) --max-inflight $(MAX_INFLIGHT) --seed $(SEED)
SYS   = $(if $(filter 1,$(SYSTEM_PROMPT)),--system-prompt)
# The recipes' exit test: status 1 (some records failed) passes with ALLOW_FAILED=1.
OK    = ; rc=$$$$?; [ $$$$rc = 0 ] || { [ $$$$rc = 1 ] && [ "$(ALLOW_FAILED)" = 1 ]; }

ROLLOUT = $(CL)cl-rollout --branch $(LLM) \
    --assistant '$(ASSISTANT)' --assistant-temperature $(ASSISTANT_TEMPERATURE) \
    --future-assistant '$(FUTURE_ASSISTANT)' --future-assistant-temperature $(ASSISTANT_TEMPERATURE) \
    --user '$(USER_MODEL)' --user-temperature $(USER_TEMPERATURE) \
    -k $(CANDIDATES) --samples $(SAMPLES) --window $(WINDOW) --max-turns $(MAX_TURNS) \
    --proact-ratio $(PROACT_RATIO) --system-prompt-ratio $(SYSTEM_PROMPT_RATIO) \
    --terminate-marker '$(TERMINATE_MARKER)' $(ROLLOUT_FLAGS)
JUDGE_CMD  = $(CL)cl-judge $(LLM) --judge '$(JUDGE)' --judge-temperature $(JUDGE_TEMPERATURE) \
    --context window $(JUDGES) $(JUDGE_FLAGS)
REWARD_CMD = $(CL)cl-reward $(REWARD) $(REWARD_FLAGS)
ADVANCE    = $(CL)cl-pairs --advance --next-user $(NEXT_USER) --max-turns $(MAX_TURNS) \
    --terminate-marker '$(TERMINATE_MARKER)' $(PAIRS_FLAGS)

SHARD_IDS := $(shell seq 0 $$(($(SHARDS) - 1)))
TURNS     := $(shell seq 0 $$(($(MAX_TURNS) - 1)))
NEXTS     := $(shell seq 1 $(MAX_TURNS))

.PHONY: all pairs rows clean
.DELETE_ON_ERROR:
# Every intermediate file is a checkpoint: never delete one because it is intermediate.
.SECONDARY:

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
	$(ROLLOUT) --rejects $$(@:.zst=.rejects) -o $$@.tmp $$< $(OK) && mv $$@.tmp $$@

$(OUT)/s$(1)/t$(2)/scored.zst: $(OUT)/s$(1)/t$(2)/branch.zst
	$(JUDGE_CMD) --where 'has("candidates")' --rejects $$(@D)/judged.rejects -o $$(@D)/judged.tmp $$< $(OK)
	$(REWARD_CMD) --rejects $$(@:.zst=.rejects) -o $$@.tmp $$(@D)/judged.tmp $(OK) && \
	    rm -f $$(@D)/judged.tmp && mv $$@.tmp $$@

$(OUT)/s$(1)/t$(2)/next.zst: $(OUT)/s$(1)/t$(2)/scored.zst
	$(ADVANCE) --rejects $$(@:.zst=.rejects) -o $$@.tmp $$< $(OK) && mv $$@.tmp $$@

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

$(OUT)/conversations.jsonl.zst: $(DONE_FILES)
	cat $^ > $@.tmp && mv $@.tmp $@

$(OUT)/scored.jsonl.zst: $(SCORED_FILES)
	cat $^ > $@.tmp && mv $@.tmp $@

$(OUT)/dpo.jsonl.zst: $(OUT)/scored.jsonl.zst
	$(CL)cl-pairs --dpo --min-gap $(MIN_GAP) $(SYS) $(PAIRS_FLAGS) --stats $(OUT)/dpo.stats -o $@.tmp $< && mv $@.tmp $@

$(OUT)/sft.jsonl.zst: $(OUT)/conversations.jsonl.zst
	$(CL)cl-pairs --sft $(if $(SFT_MIN),--min '$(SFT_MIN)') $(SYS) $(PAIRS_FLAGS) --stats $(OUT)/sft.stats -o $@.tmp $< && mv $@.tmp $@

$(OUT)/rows.jsonl.zst: $(OUT)/scored.jsonl.zst
	$(CL)cl-pairs --to-flat -o $@.tmp $< && mv $@.tmp $@

# Removes the run's files but keeps the cache, so a fresh run replays every paid call.
clean:
	rm -rf $(foreach s,$(SHARD_IDS),$(OUT)/s$(s)) $(OUT)/*.jsonl.zst $(OUT)/*.stats
