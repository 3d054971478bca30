# pipelines/finetune.mk — the paper's fine-tuning (SFT, then offline DPO on the merged SFT model)
# as make targets, and loss curves of any cl-finetune run as PNG.
#
#   make -f pipelines/finetune.mk MODEL=DIR SFT=sft.jsonl.zst DPO=dpo.jsonl.zst OUT=ft [VAR=value]
#   make -f pipelines/finetune.mk plot RUN=DIR [PNG=DIR/loss.png]
#
# The first form runs `cl-finetune --preset collabllm-sft` on SFT, merges, then
# `cl-finetune --preset collabllm-dpo` on DPO (with ANCHOR=FILE an anchor set), and plots both
# runs.  A stage is done when its run directory has final/; an interrupted stage resumes from its
# last checkpoint when make is run again.  The plot shows the training loss (and the evaluation
# loss when there is one) against the step and, for DPO, the reward accuracy and margin.
# gnuplot (Debian gnuplot-nox) draws the PNG; jq extracts the columns.

MODEL  ?=
SFT    ?=
DPO    ?=
ANCHOR ?=
ANCHOR_WEIGHT ?= 3
OUT    ?= finetune-out
# Directory of the cl programs; empty = from PATH.
BIN    ?=
# Extra flags for both stages (batch shapes, --bf16, --max-len ...) and for each.
FLAGS     ?=
SFT_FLAGS ?=
DPO_FLAGS ?=
RUN    ?=
PNG    ?= $(RUN)/loss.png

CL_FINETUNE := $(if $(BIN),$(BIN)/,)cl-finetune

.PHONY: all plot
.DELETE_ON_ERROR:

all: $(OUT)/dpo/loss.png $(if $(SFT),$(OUT)/sft/loss.png)

# A stage: resume when a checkpoint exists, else start.
stage = if ls -d $(1)/checkpoint-* >/dev/null 2>&1; then $(CL_FINETUNE) --resume $(1); \
        else $(CL_FINETUNE) $(2) --run $(1); fi

$(OUT)/sft/final/adapter_config.json: $(SFT)
	@test -n "$(MODEL)" || { echo "MODEL=DIR is required" >&2; exit 2; }
	$(call stage,$(OUT)/sft,--preset collabllm-sft --model $(MODEL) --sft $(SFT) --merge $(FLAGS) $(SFT_FLAGS))

$(OUT)/dpo/final/adapter_config.json: $(DPO) $(if $(SFT),$(OUT)/sft/final/adapter_config.json)
	@test -n "$(DPO)" || { echo "DPO=FILE is required" >&2; exit 2; }
	$(call stage,$(OUT)/dpo,--preset collabllm-dpo --model $(if $(SFT),$(OUT)/sft/merged,$(MODEL)) \
	    --dpo $(DPO) $(if $(ANCHOR),--anchor $(ANCHOR) --anchor-weight $(ANCHOR_WEIGHT)) --merge --gguf \
	    $(FLAGS) $(DPO_FLAGS))

$(OUT)/%/loss.png: $(OUT)/%/final/adapter_config.json
	$(MAKE) -f $(firstword $(MAKEFILE_LIST)) plot RUN=$(OUT)/$* PNG=$@

# ---- plotting ----------------------------------------------------------------------------

plot:
	@test -n "$(RUN)" || { echo "RUN=DIR is required" >&2; exit 2; }
	@test -s $(RUN)/metrics.jsonl || { echo "$(RUN)/metrics.jsonl is missing or empty" >&2; exit 66; }
	jq -r 'select(.loss != null) | [.step, .loss, (."rewards/accuracies" // "NaN"), (."rewards/margins" // "NaN")] | @tsv' \
	    $(RUN)/metrics.jsonl > $(PNG).train.tsv
	jq -r 'select(.eval_loss != null) | [.step, .eval_loss] | @tsv' $(RUN)/metrics.jsonl > $(PNG).eval.tsv
	dpo=$$(jq -s 'any(.[]; has("rewards/accuracies"))' $(RUN)/metrics.jsonl); \
	evl=$$(test -s $(PNG).eval.tsv && echo 1 || echo 0); \
	{ echo 'set terminal pngcairo size 900,'"$$([ $$dpo = true ] && echo 800 || echo 450)"' noenhanced'; \
	  echo 'set output "$(PNG).tmp"'; \
	  echo 'set datafile separator "\t"'; \
	  echo 'set datafile missing "NaN"'; \
	  [ $$dpo = true ] && echo 'set multiplot layout 2,1'; \
	  echo 'set title "$(RUN)"'; echo 'set xlabel "step"'; echo 'set ylabel "loss"'; echo 'set grid'; \
	  echo 'plot "$(PNG).train.tsv" using 1:2 with lines title "train loss"'"$$([ $$evl = 1 ] && \
	       echo ', "$(PNG).eval.tsv" using 1:2 with linespoints title "eval loss"')"; \
	  if [ $$dpo = true ]; then \
	    echo 'set title "rewards"'; echo 'set ylabel "accuracy / margin"'; \
	    echo 'plot "$(PNG).train.tsv" using 1:3 with lines title "accuracy", "" using 1:4 with lines title "margin"'; \
	    echo 'unset multiplot'; \
	  fi; } > $(PNG).gp
	gnuplot $(PNG).gp
	mv $(PNG).tmp $(PNG)
	rm -f $(PNG).gp $(PNG).train.tsv $(PNG).eval.tsv
