# pipelines/world.mk — the offline world's passive base: a tiny Llama trained from scratch on
# world dialogues in which the assistant mostly guesses, as the paper's base models answer
# without asking (design/offline-world.md).
#
#   make -f pipelines/world.mk base [OUT=world-out] [BIN=bin] [DIALOGUES=N] [VAR=value ...]
#   make -f pipelines/world.mk ship      base, then copied to SHIP (examples/world-base), the
#                                        model `make demo` starts from (`make world-base`)
#
# Steps, each a file under OUT:
#   base-seeds.jsonl.zst    cl-seed --preset world --split train --keep-duplicates: DIALOGUES
#                           training tasks (held-out goals never appear)
#   base-convs.jsonl.zst    cl-rollout --full with the world's passive assistant (world:passive:
#                           the usual value for every missing detail, a question one time in ten)
#                           and the world's user (world:user)
#   base-sft.jsonl.zst      cl-pairs --sft: the dialogues, without the user's closing message
#   base.json               the model's shape (LAYERS, HIDDEN, HEADS, CONTEXT)
#   base/                   cl-finetune --init: a byte-level BPE (VOCAB) trained on the dialogues
#                           and the model pre-trained by SFT on them; base/final is the model
#                           directory (config.json, model.safetensors, tokenizer.json)
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
FINETUNE_FLAGS ?=
SHIP      ?= $(dir $(lastword $(MAKEFILE_LIST)))../examples/world-base

CL = $(if $(BIN),$(BIN)/)

.PHONY: base ship clean
.DELETE_ON_ERROR:
.SECONDARY:

base: $(OUT)/base/final/config.json

$(OUT)/base-seeds.jsonl.zst:
	@mkdir -p $(@D)
	$(CL)cl-seed -q --preset world --split train --keep-duplicates --limit $(DIALOGUES) --seed $(SEED) \
	    -o $@.tmp && mv $@.tmp $@

$(OUT)/base-convs.jsonl.zst: $(OUT)/base-seeds.jsonl.zst
	$(CL)cl-rollout -q --full --no-cache --seed $(SEED) --assistant world:passive --user world: \
	    --max-turns $(MAX_TURNS) -o $@.tmp $< && mv $@.tmp $@

# The user's closing message teaches the assistant nothing: SFT dialogues end with the
# assistant's last reply.
$(OUT)/base-sft.jsonl.zst: $(OUT)/base-convs.jsonl.zst
	$(CL)cl-pairs -q --sft --map '.messages |= (if .[-1].role == "user" then .[:-1] else . end)' \
	    -o $@.tmp $< && mv $@.tmp $@

$(OUT)/base.json:
	@mkdir -p $(@D)
	printf '{"hidden_size": %d, "intermediate_size": %d, "num_hidden_layers": %d, "num_attention_heads": %d, "num_key_value_heads": %d, "max_position_embeddings": %d, "tie_word_embeddings": true}\n' \
	    $(HIDDEN) $$(($(HIDDEN) * 3)) $(LAYERS) $(HEADS) $(HEADS) $(CONTEXT) > $@.tmp && mv $@.tmp $@

$(OUT)/base/final/config.json: $(OUT)/base-sft.jsonl.zst $(OUT)/base.json
	rm -rf $(OUT)/base
	$(CL)cl-finetune -q --init $(OUT)/base.json --train-tokenizer $< --vocab $(VOCAB) --sft $< \
	    --full --lr $(LR) --schedule cosine --warmup-ratio 0.05 --epochs $(EPOCHS) --batch $(BATCH) \
	    --max-len $(CONTEXT) --packing --seed $(SEED) --log-every 50 --keep 0 $(FINETUNE_FLAGS) \
	    --run $(OUT)/base

ship: $(OUT)/base/final/config.json
	mkdir -p $(SHIP)
	cp $(OUT)/base/final/config.json $(OUT)/base/final/model.safetensors $(OUT)/base/final/tokenizer.json $(SHIP)/

clean:
	rm -rf $(OUT)/base $(OUT)/base-*.jsonl.zst $(OUT)/base.json
