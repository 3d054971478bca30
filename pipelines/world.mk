# pipelines/world.mk — the offline world's passive base: a tiny Llama trained from scratch on
# world dialogues in which the assistant mostly guesses, as the paper's base models answer
# without asking (design/offline-world.md).
#
#   make -f pipelines/world.mk base [OUT=world-out] [BIN=bin] [DIALOGUES=N] [VAR=value ...]
#   make -f pipelines/world.mk ship      base, then copied to SHIP (examples/world-base), the
#                                        model `make demo` starts from (`make world-base`)
#
# Steps, each a file under OUT (I = 1, 2: two stages of fresh dialogues):
#   baseI-seeds.jsonl.zst   cl-seed --preset world --split train --keep-duplicates: DIALOGUES
#                           training tasks per stage, drawn with seed SEED+I-1 (held-out goals
#                           never appear)
#   baseI-convs.jsonl.zst   cl-rollout --full with the world's passive assistant (world:passive:
#                           the usual value for every missing detail, a question one time in ten)
#                           and the world's user (world:user)
#   baseI-sft.jsonl.zst     cl-pairs --sft: the dialogues, without the user's closing message
#   base.json               the model's shape (LAYERS, HIDDEN, HEADS, CONTEXT)
#   base1/                  cl-finetune --init: a byte-level BPE (VOCAB) trained on the stage-1
#                           dialogues, and the model pre-trained by SFT on them
#   base/                   stage 2: base1 trained on as many fresh dialogues (a second cosine
#                           cycle); base/final is the model directory (config.json,
#                           model.safetensors, tokenizer.json)
#
# OMP_NUM_THREADS sets the training threads.  Every file is written whole and renamed, so an
# interrupted run resumes with the same command.

OUT       ?= world-out
BIN       ?=
SEED      ?= 0
DIALOGUES ?= 20000
MAX_TURNS ?= 3
VOCAB     ?= 1024
LAYERS    ?= 4
HIDDEN    ?= 128
HEADS     ?= 4
CONTEXT   ?= 256
EPOCHS    ?= 1
BATCH     ?= 16
LR        ?= 3e-3
LR2       ?= 2e-3
FINETUNE_FLAGS ?=
SHIP      ?= $(dir $(lastword $(MAKEFILE_LIST)))../examples/world-base

CL = $(if $(BIN),$(BIN)/)

.PHONY: base ship clean
.DELETE_ON_ERROR:
.SECONDARY:

base: $(OUT)/base/final/config.json

# stage_data I: the dialogues of stage I.
define stage_data
$(OUT)/base$(1)-seeds.jsonl.zst:
	@mkdir -p $$(@D)
	$(CL)cl-seed -q --preset world --split train --keep-duplicates --limit $(DIALOGUES) \
	    --seed $$$$(($(SEED) + $(1) - 1)) -o $$@.tmp && mv $$@.tmp $$@

$(OUT)/base$(1)-convs.jsonl.zst: $(OUT)/base$(1)-seeds.jsonl.zst
	$(CL)cl-rollout -q --full --no-cache --seed $(SEED) --assistant world:passive --user world: \
	    --max-turns $(MAX_TURNS) -o $$@.tmp $$< && mv $$@.tmp $$@

# The user's closing message teaches the assistant nothing: SFT dialogues end with the
# assistant's last reply.
$(OUT)/base$(1)-sft.jsonl.zst: $(OUT)/base$(1)-convs.jsonl.zst
	$(CL)cl-pairs -q --sft --map '.messages |= (if .[-1].role == "user" then .[:-1] else . end)' \
	    -o $$@.tmp $$< && mv $$@.tmp $$@
endef
$(eval $(call stage_data,1))
$(eval $(call stage_data,2))

$(OUT)/base.json:
	@mkdir -p $(@D)
	printf '{"hidden_size": %d, "intermediate_size": %d, "num_hidden_layers": %d, "num_attention_heads": %d, "num_key_value_heads": %d, "max_position_embeddings": %d, "tie_word_embeddings": true}\n' \
	    $(HIDDEN) $$(($(HIDDEN) * 3)) $(LAYERS) $(HEADS) $(HEADS) $(CONTEXT) > $@.tmp && mv $@.tmp $@

TRAIN_FLAGS = --full --schedule cosine --warmup-ratio 0.05 --epochs $(EPOCHS) --batch $(BATCH) \
    --max-len $(CONTEXT) --packing --seed $(SEED) --log-every 50 --keep 0 $(FINETUNE_FLAGS)

$(OUT)/base1/final/config.json: $(OUT)/base1-sft.jsonl.zst $(OUT)/base.json
	rm -rf $(OUT)/base1
	$(CL)cl-finetune -q --init $(OUT)/base.json --train-tokenizer $< --vocab $(VOCAB) --sft $< \
	    --lr $(LR) $(TRAIN_FLAGS) --run $(OUT)/base1

$(OUT)/base/final/config.json: $(OUT)/base2-sft.jsonl.zst $(OUT)/base1/final/config.json
	rm -rf $(OUT)/base
	$(CL)cl-finetune -q --model $(OUT)/base1/final --sft $< --lr $(LR2) $(TRAIN_FLAGS) --run $(OUT)/base

ship: $(OUT)/base/final/config.json
	mkdir -p $(SHIP)
	cp $(OUT)/base/final/config.json $(OUT)/base/final/model.safetensors $(OUT)/base/final/tokenizer.json $(SHIP)/

clean:
	rm -rf $(OUT)/base $(OUT)/base1 $(OUT)/base[12]-*.jsonl.zst $(OUT)/base.json
