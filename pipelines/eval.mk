# pipelines/eval.mk — the CollabLLM benchmark (paper §4) as make targets.
#
#   make -f pipelines/eval.mk SEEDS=test.jsonl.zst OUT=eval \
#        MODELS='base=openai:llama-3.1-8b collab=openai:collabllm-8b' MODE_collab=system
#
# For every model under test: cl-rollout --full holds one conversation per seed with the user
# simulator until it ends the chat or the turn cap; cl-judge extracts the final artefact and
# rates the whole conversation; cl-reward adds the task metric, the token count and R*; then
# cl-judge --report prints the paper's table (task metric, tokens in thousands, ITR; mean and
# 95% bootstrap interval per model, relative improvement against BASELINE).  Models run side by
# side: `make -j` runs their conversations (and SHARDS) in parallel.  Every file is written
# whole and renamed, so an interrupted run resumes; the LLM cache replays paid calls.
#
# Layout under OUT:
#   NAME/sI/conversations.zst, NAME/sI/scored.zst   per model and shard
#   NAME/scored.jsonl.zst                           per model
#   report.json, report.md, report.txt              the benchmark table

SEEDS   ?=
ifeq ($(SEEDS)$(filter clean,$(MAKECMDGOALS)),)
$(error SEEDS=FILE is required: test seeds from cl-seed --split test)
endif
OUT     ?= eval-out
include $(dir $(lastword $(MAKEFILE_LIST)))common.mk

# NAME=SPEC pairs; NAME labels the model in the report and names its directory.
MODELS   ?= base=$(or $(MODEL),openai:gpt-4o-mini)
# Assistant mode per model, MODE_NAME: vanilla (no system prompt: the paper's Base), system
# (the CollabLLM system prompt: the paper's trained models) or proact (Proactive Base).
MODE     ?= vanilla
BASELINE ?= $(firstword $(MODEL_NAMES))

# The published evaluation settings per task (paper §4 and the paper-era eval configs): top-p 0.9;
# temperature 0.6 math and code, 0.8 documents; at most 1536 tokens a reply for math and code,
# 2048 for documents; 6 rounds for math and code, 8 for documents.  TASK picks the set; each
# variable, per task (ASSISTANT_TEMPERATURE_document=...) or for all (ASSISTANT_TEMPERATURE=...),
# can be set on the command line.
ASSISTANT_TEMPERATURE_math     ?= 0.6
ASSISTANT_TEMPERATURE_document ?= 0.8
ASSISTANT_TEMPERATURE_code     ?= 0.6
ASSISTANT_MAX_TOKENS_math      ?= 1536
ASSISTANT_MAX_TOKENS_document  ?= 2048
ASSISTANT_MAX_TOKENS_code      ?= 1536
MAX_TURNS_math                 ?= 6
MAX_TURNS_document             ?= 8
MAX_TURNS_code                 ?= 6
ASSISTANT_TEMPERATURE ?= $(or $(ASSISTANT_TEMPERATURE_$(TASK)),$(ASSISTANT_TEMPERATURE_math))
ASSISTANT_TOP_P       ?= 0.9
ASSISTANT_MAX_TOKENS  ?= $(or $(ASSISTANT_MAX_TOKENS_$(TASK)),$(ASSISTANT_MAX_TOKENS_math))
MAX_TURNS             ?= $(or $(MAX_TURNS_$(TASK)),$(MAX_TURNS_math))

EVAL_JUDGES_math     ?= --accuracy --interactivity
EVAL_JUDGES_document ?= --extract document --interactivity
EVAL_JUDGES_code     ?= --extract code --interactivity
EVAL_JUDGES          ?= $(EVAL_JUDGES_$(TASK))
# unit (0/0.5/1, the current official scale) or paper (1-3 rescaled 2(S-2.5) as in Table 1: the
# benchmark judges whole conversations, so cl-judge reads paper as paper-eval)
ITR_SCALE            ?= unit
EVAL_REWARD      ?= --reward v2 --tokens $(TOKENS) $(METRICS_$(TASK))
BOOTSTRAP        ?= 2000

REPORT_FLAGS  ?=

MODEL_NAMES := $(foreach m,$(MODELS),$(firstword $(subst =, ,$(m))))
model_spec   = $(patsubst $(1)=%,%,$(filter $(1)=%,$(MODELS)))
model_mode   = $(or $(MODE_$(1)),$(MODE))
SCORED      := $(foreach n,$(MODEL_NAMES),$(OUT)/$(n)/scored.jsonl.zst)
REPORT       = $(CL)cl-judge --report --seed $(SEED) --bootstrap $(BOOTSTRAP) \
    $(if $(BASELINE),--baseline $(BASELINE)) $(foreach n,$(MODEL_NAMES),--label $(n)) $(REPORT_FLAGS)

.PHONY: all report plot clean

all: $(OUT)/report.json $(OUT)/report.md $(OUT)/report.txt

# Prints the table on the terminal.
report: $(OUT)/report.txt
	@cat $<

# model_rules NAME SHARD
define model_rules
$(OUT)/$(1)/s$(2)/conversations.zst: $(SEEDS)
	@mkdir -p $$(@D)
	$(CL)cl-rollout --full $(LLM) --assistant '$(call model_spec,$(1))' \
	    --assistant-mode $(call model_mode,$(1)) --assistant-temperature $(ASSISTANT_TEMPERATURE) \
	    --assistant-top-p $(ASSISTANT_TOP_P) --assistant-max-tokens $(ASSISTANT_MAX_TOKENS) \
	    --user '$(USER_MODEL)' --user-temperature $(USER_TEMPERATURE) --user-max-tokens $(USER_MAX_TOKENS) \
	    --max-turns $(MAX_TURNS) --terminate-marker '$(TERMINATE_MARKER)' --shard $(2)/$(SHARDS) \
	    --prompt-set $(PROMPT_SET) \
	    $(ROLLOUT_FLAGS) --rejects $$(@:.zst=.rejects) -o $$@.tmp $$< $(OK) && mv $$@.tmp $$@

$(OUT)/$(1)/s$(2)/scored.zst: $(OUT)/$(1)/s$(2)/conversations.zst
	$(CL)cl-judge $(LLM) --judge '$(JUDGE)' --judge-temperature $(JUDGE_TEMPERATURE) \
	    --judge-max-tokens $(JUDGE_MAX_TOKENS) --context full \
	    --itr-scale $(ITR_SCALE) $(EVAL_JUDGES) $(JUDGE_FLAGS) --rejects $$(@D)/judged.rejects \
	    -o $$(@D)/judged.tmp $$< $(OK)
	$(CL)cl-reward $(EVAL_REWARD) $(REWARD_FLAGS) --rejects $$(@:.zst=.rejects) \
	    -o $$@.tmp $$(@D)/judged.tmp $(OK) && rm -f $$(@D)/judged.tmp && mv $$@.tmp $$@
endef

define model_cat
$(OUT)/$(1)/scored.jsonl.zst: $(foreach s,$(SHARD_IDS),$(OUT)/$(1)/s$(s)/scored.zst)
	cat $$^ > $$@.tmp && mv $$@.tmp $$@
endef

$(foreach n,$(MODEL_NAMES),$(foreach s,$(SHARD_IDS),$(eval $(call model_rules,$(n),$(s)))))
$(foreach n,$(MODEL_NAMES),$(eval $(call model_cat,$(n))))

$(OUT)/report.json: $(SCORED)
	$(REPORT) --format json $^ > $@.tmp && mv $@.tmp $@
$(OUT)/report.md: $(SCORED)
	$(REPORT) --format markdown $^ > $@.tmp && mv $@.tmp $@
$(OUT)/report.txt: $(SCORED)
	$(REPORT) --format table $^ > $@.tmp && mv $@.tmp $@

# The chart of the table (needs gnuplot).
plot: $(OUT)/report.png
$(OUT)/report.png: $(SCORED)
	$(REPORT) --format json --plot $@.tmp.png $^ > /dev/null && mv $@.tmp.png $@

clean:
	rm -rf $(foreach n,$(MODEL_NAMES),$(OUT)/$(n)) $(OUT)/report.*
