# pipelines/online.mk — online training (CollabLLM's online DPO, verl's GRPO) as rounds of make
# targets.
#
#   make -f pipelines/online.mk STATES=seeds.jsonl.zst HELDOUT=test.jsonl.zst BASE=models/M \
#        OUT=online [METHOD=dpo|grpo] [ROUNDS=3] [VARIABLE=value ...]
#   make -f pipelines/online.mk OUT=online ... plot        # the per-round chart (gnuplot)
#
# Round K (1..ROUNDS) runs the data engine of collab.mk with the current policy as the
# assistant: a slice of STATES, cl-rollout --branch with the policy writing the candidates and
# the futures' assistant turns (local: with the last round's adapter), cl-judge, cl-reward (MR)
# and cl-pairs --dpo; then cl-finetune --dpo continues the last round's adapter for STEPS
# optimizer steps (ANCHOR=W adds the round's MR-best dialogues as an SFT loss of weight W; FULL=1
# trains every weight instead of an adapter).  METHOD=grpo samples GROUP candidates per state
# from the same policy, with their sampled-token log-probs (cl-rollout --logprobs), and trains
# cl-finetune --grpo on them (the MR of each candidate is its reward).  The DPO and GRPO
# reference is the starting policy's base with the adapters off (REF=start); REF=round merges
# each round's adapter into a new base, so the next round's reference is the last policy.
# After every round (and for the starting policy, round 0) eval.mk benchmarks the policy on the
# HELDOUT seeds, and the data engine measures its MR on their first turn (the round's engine
# settings, one turn; HELDOUT_MR=0 skips it); rounds.jsonl gathers the task metric, ITR, tokens
# and MR per round and `plot` draws them.
#
# Every file is a target written whole and renamed, so an interrupted run resumes at its round
# with the same command; a training killed mid-round resumes at its last checkpoint (SAVE_EVERY)
# and the LLM cache replays the calls already made.  The adapter and the AdamW state carry over
# from round to round (cl-finetune --adapter, --optimizer-from); the learning-rate schedule is
# each round's own (FT_FLAGS='--schedule ...').
#
# Two options make rounds comparable and robust.  CALLS=N is the rollout budget of a round: the
# states of its slice are taken in order while their rollout calls (every candidate and every
# forward sample of every turn, the policy's calls) fit N, and only their turns make the pairs,
# the groups and the dialogues (the engine runs each turn of all states at once, so it samples
# the rest too; no training sees them).  Two methods with the same ROUNDS x CALLS then train on
# the same number of calls whatever share of conversations reaches a second turn.  VALID=FILE
# benchmarks every policy (round 0 included) on those seeds, and best/policy is the round with
# the highest validation metric (ties: the later round), so that a late round that falls back
# is not the result; VALID must be disjoint from HELDOUT (e.g. cl-seed --split validation).
#
# Layout under OUT:
#   round-0/policy          the starting policy's model spec
#   round-K/states.zst      the states of round K
#   round-K/engine/         collab.mk's files (scored.jsonl.zst, dpo.jsonl.zst, ...)
#   round-K/budget/         CALLS: kept.ids (the states within the budget, calls.tsv the calls
#                           of each state) and the engine's files restricted to them
#   round-K/groups.jsonl.zst  METHOD=grpo: {prompt, completions, rewards} per scored turn
#   round-K/run/            cl-finetune's run (checkpoints, metrics.jsonl, final/; last is the
#                           checkpoint whose optimizer the next round continues)
#   round-K/policy          the spec of the policy after round K
#   round-K/eval/           eval.mk on HELDOUT with that policy (report.json, report.txt)
#   round-K/heldout-mr/     collab.mk's engine on HELDOUT's first turns with that policy
#   round-K/valid/          VALID: eval.mk on VALID with that policy
#   best/policy, best/round VALID: the spec of the round with the best validation metric and
#                           its number (valid.tsv: each round's metric)
#   rounds.jsonl, rounds.png  per-round held-out metrics and their chart

STATES  ?=
BASE    ?=
ifeq ($(filter clean,$(MAKECMDGOALS)),)
ifeq ($(STATES),)
$(error STATES=FILE is required: seed records (cl-seed) the rounds draw their conversations from)
endif
ifeq ($(BASE),)
$(error BASE=DIR is required: the local model directory of the policy)
endif
endif
OUT     ?= online-out
include $(dir $(lastword $(MAKEFILE_LIST)))common.mk
HERE    := $(dir $(lastword $(MAKEFILE_LIST)))

# ---- rounds -------------------------------------------------------------------------------
METHOD  ?= dpo
ROUNDS  ?= 3
# round K draws slice (K-1) mod SLICES of STATES (cl-pairs --shard); 1 = every state each round
SLICES  ?= $(ROUNDS)
# held-out seeds benchmarked after every round; empty = no per-round benchmark
HELDOUT ?=
# 1: each policy's MR on the HELDOUT states too (one engine turn per policy)
HELDOUT_MR ?= 1
# the rollout calls a round trains on (empty = all its slice's calls); see above
CALLS   ?=
# validation seeds benchmarked after every round to pick best/policy; empty = no selection
VALID   ?=
# an adapter of BASE the policy starts from (e.g. the offline DPO run's final/); empty = BASE
START_ADAPTER ?=
# start: the reference of every round is BASE (the starting policy without START_ADAPTER);
# round: each round merges its adapter and the next round trains a fresh one on the merge
REF     ?= start

# ---- the engine of a round (collab.mk's variables; the policy is the assistant) -------------
# paper: 2 on-policy samples per prompt for online DPO; verl: n = 8 for GRPO
CANDIDATES ?= 2
GROUP      ?= 4
# GRPO trains only on groups whose rewards spread at least this much (max - min): normalised by
# their standard deviation, MR differences of a few words would weigh as much as a success
# (DPO's pairs have MIN_GAP); 0 = every group, those of equal rewards training the KL alone
GROUP_GAP  ?= 0
ROUND_TURNS ?= 2
ENGINE_FLAGS ?=
# the candidates are trained with the prompt they were sampled with: no system prompt, no
# proactive prompt, so DPO and GRPO stay on-policy; GRPO's candidates record their sampled-token
# log-probs (cl-rollout --logprobs), the old policy of its ratio
ONLINE_ENGINE = SYSTEM_PROMPT=0 PROACT_RATIO=0 MAX_TURNS=$(ROUND_TURNS) \
    CANDIDATES=$(if $(filter grpo,$(METHOD)),$(GROUP),$(CANDIDATES)) \
    $(if $(filter grpo,$(METHOD)),ROLLOUT_FLAGS='$(ROLLOUT_FLAGS) --logprobs') $(ENGINE_FLAGS)

# ---- training -----------------------------------------------------------------------------
STEPS      ?= 8
# FULL=1 trains every weight: round K continues round K-1's weights and AdamW state, and its
# reference (DPO, GRPO's KL) is the policy it starts from, as with REF=round
FULL       ?= 0
# the weight of the MR-best dialogues' SFT loss in each DPO step; 0 = DPO alone
ANCHOR     ?= 0
SAVE_EVERY ?= 2
LORA       ?= r=8,alpha=16
# DPO: the paper's online recipe (lr 5e-6, beta 0.1 sigmoid); GRPO: verl's
FT_PRESET  ?= $(if $(filter grpo,$(METHOD)),verl-grpo,collabllm-dpo)
FT_FLAGS   ?=

# ---- evaluation ---------------------------------------------------------------------------
EVAL_FLAGS ?=

CACHE ?= $(OUT)/cache
ROUND_IDS := $(shell seq 1 $(ROUNDS))
EVAL_IDS  := $(if $(HELDOUT),0 $(ROUND_IDS))
MR_IDS    := $(if $(filter 1,$(HELDOUT_MR)),$(EVAL_IDS))
SUBMAKE    = $(MAKE) --no-print-directory -f $(HERE)
# data K: the directory of round K's scored turns, pairs and dialogues
data = $(OUT)/round-$(1)/$(if $(CALLS),budget,engine)

.PHONY: all rounds eval plot clean

all: rounds $(if $(HELDOUT),$(OUT)/rounds.jsonl) $(if $(VALID),$(OUT)/best/policy)
rounds: $(OUT)/round-$(ROUNDS)/policy
plot: $(OUT)/rounds.png

$(OUT)/round-0/policy:
	@mkdir -p $(@D)
	echo 'local:$(abspath $(BASE))$(if $(START_ADAPTER),+adapter=$(abspath $(START_ADAPTER)))' > $@.tmp && mv $@.tmp $@

# round_rules K PREV
define round_rules
$(OUT)/round-$(1)/states.zst: $(STATES)
	@mkdir -p $$(@D)
	$(CL)cl-pairs -q --shard $$$$(( ($(1) - 1) % $(SLICES) ))/$(SLICES) -o $$@.tmp $$< && mv $$@.tmp $$@

# The engine runs whole or resumes inside collab.mk; its directory is one target here.
$(OUT)/round-$(1)/engine/scored.jsonl.zst: $(OUT)/round-$(1)/states.zst $(OUT)/round-$(2)/policy
	policy=$$$$(cat $(OUT)/round-$(2)/policy) && \
	$(SUBMAKE)collab.mk SEEDS=$(OUT)/round-$(1)/states.zst OUT=$(OUT)/round-$(1)/engine CACHE=$(CACHE) \
	    ASSISTANT="$$$$policy" FUTURE_ASSISTANT="$$$$policy" $(ONLINE_ENGINE) \
	    $(OUT)/round-$(1)/engine/scored.jsonl.zst $(OUT)/round-$(1)/engine/dpo.jsonl.zst \
	    $(OUT)/round-$(1)/engine/sft.jsonl.zst

$(OUT)/round-$(1)/engine/dpo.jsonl.zst $(OUT)/round-$(1)/engine/sft.jsonl.zst: $(OUT)/round-$(1)/engine/scored.jsonl.zst

# CALLS: the states of the slice, in order, while their calls fit the budget; then the engine's
# scored turns and finished conversations of those states, and collab.mk's own pair and
# dialogue rules on them (-o: the restricted files stand for the engine's, not remade).
$(OUT)/round-$(1)/budget/kept.ids: $(OUT)/round-$(1)/states.zst $(OUT)/round-$(1)/engine/scored.jsonl.zst
	@mkdir -p $$(@D)
	zstd -dc $(OUT)/round-$(1)/engine/scored.jsonl.zst | \
	    jq -r '[.id, ([.candidates[]? | 1 + (.futures | length)] | add // 0)] | @tsv' > $$(@D)/calls.tsv && \
	zstd -dc $$< | jq -r .id | \
	    awk -F '\t' -v n=$(CALLS) 'NR == FNR { c[$$$$1] += $$$$2; next } { t += c[$$$$1]; if (t > n) exit; print }' \
	    $$(@D)/calls.tsv - > $$@.tmp && mv $$@.tmp $$@

$(OUT)/round-$(1)/budget/scored.jsonl.zst: $(OUT)/round-$(1)/budget/kept.ids
	zstd -dc $(OUT)/round-$(1)/engine/scored.jsonl.zst | $(call keep_ids,$$<) | zstd -q > $$@.tmp && \
	zstd -dc $(OUT)/round-$(1)/engine/conversations.jsonl.zst | $(call keep_ids,$$<) | zstd -q > $$(@D)/conversations.tmp && \
	mv $$(@D)/conversations.tmp $$(@D)/conversations.jsonl.zst && mv $$@.tmp $$@

$(OUT)/round-$(1)/budget/dpo.jsonl.zst: $(OUT)/round-$(1)/budget/scored.jsonl.zst
	$(SUBMAKE)collab.mk SEEDS=$(OUT)/round-$(1)/states.zst OUT=$(OUT)/round-$(1)/budget $(ONLINE_ENGINE) \
	    -o $$< -o $(OUT)/round-$(1)/budget/conversations.jsonl.zst $$@ $(OUT)/round-$(1)/budget/sft.jsonl.zst

$(OUT)/round-$(1)/budget/sft.jsonl.zst: $(OUT)/round-$(1)/budget/dpo.jsonl.zst

# One group per scored turn whose candidates all have an MR that spread at least GROUP_GAP;
# with the sampler's log-probs when every candidate recorded them (else GRPO's ratio starts from
# the current policy).
$(OUT)/round-$(1)/groups.jsonl.zst: $(call data,$(1))/scored.jsonl.zst
	$(CL)cl-pairs -q --where '(.candidates | length) > 1 and all(.candidates[]; .mr.mean | type == "number") and \
	        ([.candidates[].mr.mean] | max - min) >= $(GROUP_GAP)' \
	    --map '{id: "\(.id)/t\(.turn)", prompt: [.messages[] | {role, content}], \
	            completions: [.candidates[].content], rewards: [.candidates[].mr.mean]} + \
	           (if all(.candidates[]; .logps | type == "array") then {logps: [.candidates[].logps]} else {} end)' \
	    -o $$@.tmp $$< && mv $$@.tmp $$@

# Training: a run with checkpoints resumes at its last one; the policy file is written last.
$(OUT)/round-$(1)/policy: $(if $(filter grpo,$(METHOD)),$(OUT)/round-$(1)/groups.jsonl.zst,$(call data,$(1))/dpo.jsonl.zst) \
                          $(OUT)/round-$(2)/policy $(if $(call anchor_flags,$(1)),$(call anchor_sft,$(1)))
	run=$(OUT)/round-$(1)/run; \
	if ls -d $$$$run/checkpoint-* >/dev/null 2>&1; then $(CL)cl-finetune --resume $$$$run; else \
	    rm -rf $$$$run && $(CL)cl-finetune --preset $(FT_PRESET) --$(METHOD) $$< --max-steps $(STEPS) \
	        --save-every $(SAVE_EVERY) --seed $$$$(( $(SEED) + $(1) )) $(call train_model,$(1),$(2)) \
	        $(call anchor_flags,$(1)) $(FT_FLAGS) --run $$$$run; fi && \
	echo '$(call policy_after,$(1))' > $$@.tmp && mv $$@.tmp $$@
endef

# keep_ids FILE: the records whose id is a line of FILE
keep_ids = jq -c --rawfile ids $(1) '($$$$ids | split("\n") | map({(.): true}) | add) as $$$$k | select($$$$k[.id])'

# anchor_flags K: METHOD=dpo with ANCHOR > 0 adds the round's MR-best dialogues as an SFT loss
# of that weight in every step (cl-finetune --anchor): SFT on the best path and DPO on the pairs
# at once, the recipe that moves a small policy (make demo).  A round without a dialogue (SFT_MIN
# kept none) trains DPO alone, and says so.
anchor_sft = $(call data,$(1))/sft.jsonl.zst
anchor_flags = $(if $(and $(filter dpo,$(METHOD)),$(filter-out 0,$(ANCHOR))),$$$$(if zstd -dc $(anchor_sft) | grep -q .; \
    then echo '--anchor $(anchor_sft) --anchor-weight $(ANCHOR)'; \
    else echo 'online.mk: round $(1) has no SFT dialogue: DPO without the anchor' >&2; fi))

# train_model K PREV: the model flags of round K.  REF=start: BASE, continuing the last adapter
# and its AdamW moments and step (round 1: START_ADAPTER, or a fresh LoRA); REF=round: the last
# round's merge, a fresh LoRA and a fresh optimizer.
ifeq ($(FULL),1)
train_model = --full --model $(if $(filter 1,$(1)),$(BASE),$(OUT)/round-$(2)/run/final --optimizer-from $(OUT)/round-$(2)/run/last)
policy_after = local:$(abspath $(OUT))/round-$(1)/run/final
else ifeq ($(REF),round)
train_model = $(if $(filter 1,$(1)),--model $(BASE) $(if $(START_ADAPTER),--adapter $(START_ADAPTER),--lora $(LORA)),\
    --model $(OUT)/round-$(2)/run/merged --lora $(LORA)) --merge
policy_after = local:$(abspath $(OUT))/round-$(1)/run/merged
else
train_model = --model $(BASE) $(if $(filter 1,$(1)),$(if $(START_ADAPTER),--adapter $(START_ADAPTER),--lora $(LORA)),\
    --adapter $(OUT)/round-$(2)/run/final --optimizer-from $(OUT)/round-$(2)/run/last)
policy_after = local:$(abspath $(BASE))+adapter=$(abspath $(OUT))/round-$(1)/run/final
endif

$(foreach k,$(ROUND_IDS),$(eval $(call round_rules,$(k),$(shell echo $$(($(k) - 1))))))

# ---- the per-round benchmark ----------------------------------------------------------------
# eval_rules K DIR SEEDS: round K's policy benchmarked on SEEDS under round-K/DIR
define eval_rules
$(OUT)/round-$(1)/$(2)/report.json: $(OUT)/round-$(1)/policy
	policy=$$$$(cat $$<) && \
	$(SUBMAKE)eval.mk SEEDS=$(3) OUT=$(OUT)/round-$(1)/$(2) CACHE=$(CACHE) \
	    MODELS="round-$(1)=$$$$policy" BASELINE= $(EVAL_FLAGS) $(OUT)/round-$(1)/$(2)/report.json \
	    $(OUT)/round-$(1)/$(2)/report.txt
endef
$(foreach k,$(EVAL_IDS),$(eval $(call eval_rules,$(k),eval,$(HELDOUT))))

# Round K's policy in the data engine on the HELDOUT states, first turn only: the MR of its
# candidates, measured as the rounds measure their own (the same engine settings).
define heldout_mr_rules
$(OUT)/round-$(1)/heldout-mr/scored.jsonl.zst: $(OUT)/round-$(1)/policy
	policy=$$$$(cat $$<) && \
	$(SUBMAKE)collab.mk SEEDS=$(HELDOUT) OUT=$(OUT)/round-$(1)/heldout-mr CACHE=$(CACHE) \
	    ASSISTANT="$$$$policy" FUTURE_ASSISTANT="$$$$policy" $(ONLINE_ENGINE) MAX_TURNS=1 $$@
endef
$(foreach k,$(MR_IDS),$(eval $(call heldout_mr_rules,$(k))))
$(if $(VALID),$(foreach k,0 $(ROUND_IDS),$(eval $(call eval_rules,$(k),valid,$(VALID)))))

# The policy with the highest validation metric, the later round on a tie: a model selected on
# VALID, never on HELDOUT.
JQ_VALID = .tasks[0].runs[0].measures.metric.mean as $$m | if ($$m | type) == "number" then "\($$m) \($$k)" else error("no validation metric (eval.mk REPORT_FLAGS)") end
$(OUT)/best/policy: $(foreach k,0 $(ROUND_IDS),$(OUT)/round-$(k)/valid/report.json)
	@mkdir -p $(@D)
	for k in 0 $(ROUND_IDS); do jq -r --argjson k $$k '$(JQ_VALID)' $(OUT)/round-$$k/valid/report.json || exit 1; \
	done > $(@D)/valid.tsv && \
	k=$$(sort -k1,1g -k2,2n $(@D)/valid.tsv | tail -n 1 | cut -d' ' -f2) && \
	cp $(OUT)/round-$$k/policy $@.tmp && echo $$k > $(@D)/round && mv $@.tmp $@

eval: $(OUT)/rounds.jsonl

# One line per policy (round 0: the starting one): its held-out means and 95% bootstrap
# intervals as cl-judge --report computes them (task metric and ITR x100, tokens in thousands),
# the mean MR of its candidates on HELDOUT's first turns (mr_heldout; null with HELDOUT_MR=0),
# the mean MR of the candidates it sampled in the next round (null after the last round), and
# the wall seconds of the round that trained it (from the policy before it to its own: make
# draws every round's slice of STATES first), and its VALID metric (null without VALID).
JQ_MR    = [.[].candidates[]?.mr.mean | numbers] | if length > 0 then add / length else null end
JQ_ROUND = .tasks[0] | {round: $$k, task, metric_name: .metric} + (.runs[0] | {records, failed} + (.measures | with_entries(.value |= {mean, lo, hi}))) + {mr_heldout: $$mrh, mr: $$mr, round_s: $$s, valid: $$valid}
JQ_TSV   = [.round, .metric.mean, .metric.lo, .metric.hi, .itr.mean, .itr.lo, .itr.hi, .tokens.mean, .tokens.lo, .tokens.hi, (.mr // "NaN"), (.valid.mean // "NaN"), (.mr_heldout // "NaN")] | @tsv
$(OUT)/rounds.jsonl: $(foreach k,$(EVAL_IDS),$(OUT)/round-$(k)/eval/report.json $(if $(VALID),$(OUT)/round-$(k)/valid/report.json)) \
                     $(foreach k,$(MR_IDS),$(OUT)/round-$(k)/heldout-mr/scored.jsonl.zst)
	for k in $(EVAL_IDS); do \
	    next=$(OUT)/round-$$((k + 1))/engine/scored.jsonl.zst; \
	    mr=$$(if [ -f $$next ]; then zstd -dc $$next | jq -s '$(JQ_MR)'; else echo null; fi) && \
	    held=$(OUT)/round-$$k/heldout-mr/scored.jsonl.zst; \
	    mrh=$$(if [ "$(HELDOUT_MR)" = 1 ]; then zstd -dc $$held | jq -s '$(JQ_MR)'; else echo null; fi) && \
	    secs=$$(if [ $$k -gt 0 ]; then echo $$(( $$(stat -c %Y $(OUT)/round-$$k/policy) - \
	        $$(stat -c %Y $(OUT)/round-$$((k - 1))/policy) )); else echo null; fi) && \
	    valid=$$(if [ -f $(OUT)/round-$$k/valid/report.json ]; then \
	        jq -c '.tasks[0].runs[0].measures.metric | {mean, lo, hi}' $(OUT)/round-$$k/valid/report.json; else echo null; fi) && \
	    jq -c --argjson k $$k --argjson mrh "$$mrh" --argjson mr "$$mr" --argjson s "$$secs" --argjson valid "$$valid" '$(JQ_ROUND)' \
	        $(OUT)/round-$$k/eval/report.json || exit 1; \
	done > $@.tmp && mv $@.tmp $@

# Four panels: the task metric (with VALID, the validation metric beside it), ITR, tokens and
# MR (on HELDOUT, and of the policy's samples in the next round), per round.
comma := ,
PLOT_METRIC = plot "$@.tsv" using 1:2:3:4 with yerrorlines title "held-out"
PLOT_MR     = $(if $(MR_IDS),"$@.tsv" using 1:13 with linespoints title "held-out"$(comma) "","$@.tsv")
$(OUT)/rounds.png: $(OUT)/rounds.jsonl
	jq -r '$(JQ_TSV)' $< > $@.tsv && \
	metric=$$(head -1 $< | jq -r .metric_name) && \
	{ echo 'set terminal pngcairo size 1000,700 noenhanced'; echo 'set output "$@.tmp"'; \
	  echo 'set multiplot layout 2,2 title "$(METHOD): held-out means per round (95% bootstrap intervals)"'; \
	  echo 'set xlabel "round"'; echo 'set xtics 1'; echo 'set key off'; echo 'set offsets 0.3, 0.3, graph 0.05, graph 0.05'; \
	  echo "set title \"$$metric x100\""; \
	  $(if $(VALID),echo 'set key top left'; echo '$(PLOT_METRIC)$(comma) "" using 1:12 with linespoints title "validation"'; \
	               echo 'set key off';,echo '$(PLOT_METRIC)';) \
	  echo 'set title "ITR x100"'; echo 'plot "$@.tsv" using 1:5:6:7 with yerrorlines'; \
	  echo 'set title "tokens (thousands)"'; echo 'plot "$@.tsv" using 1:8:9:10 with yerrorlines'; \
	  echo 'set title "MR"'; echo 'set key below'; \
	  echo 'plot $(PLOT_MR) using 1:11 with linespoints title "its samples in the next round"'; \
	  echo 'unset multiplot'; } > $@.gp && gnuplot $@.gp && rm -f $@.gp && mv $@.tmp $@

# Removes the rounds but keeps the cache.
clean:
	rm -rf $(OUT)/round-* $(OUT)/rounds.* $(OUT)/best
