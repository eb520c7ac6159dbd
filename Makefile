# pinfer — the one build entry.  See README.md and ARCHITECTURE.md.
#
#   make            build everything into build/
#   make run        deps + model + build, then generate a reply to a sample prompt
#   make test       deps + model + build, then every test suite (prints each suite's time)
#   make asan       ASan+UBSan build (build-asan/) and its test run
#   make bench      benchmarks, with llama.cpp's figures beside ours
#   make deps       install the distribution packages we need (apt-get, as root)
#   make model      fetch the SmolLM2-135M-Instruct Q4_1 GGUF into models/
#   make install PREFIX=/usr/local DESTDIR= [SYSCONFDIR= LIBDIR= ...]  (see "installing" below)
#   make clean
#
# Sources are found by wildcard: a new .c file under runtime/<layer>/, kernels/cpu/,
# shm/ or client/ joins its library; tests/unit/test_X.c becomes one test binary;
# tools/X.c becomes the program X; tools/common/*.c are linked into every program.

.DEFAULT_GOAL := all
SHELL := /bin/bash

BUILD    ?= build
PREFIX   ?= /usr/local
DESTDIR  ?=
SANITIZE ?= 0
PF_CUDA  ?= auto

CC       ?= gcc
ifeq ($(CC),cc)
CC := gcc
endif

# Debian package that provides each pkg-config name, for the hint and `make deps`.
DEB_PKGS  := liburing-dev libnuma-dev libcmocka-dev libpcre2-dev libxxhash-dev libncurses-dev libmicrohttpd-dev libjansson-dev libsystemd-dev libedit-dev pkg-config clang libclang-rt-14-dev python3-pip python3-venv unzip prometheus curl tmux

# numa has no .pc on Debian 12; it is checked by header instead below.
PKG_CHECK := liburing cmocka libpcre2-8 libxxhash ncursesw libmicrohttpd jansson libsystemd libedit
PKG_MISSING := $(strip $(foreach p,$(PKG_CHECK),$(if $(shell pkg-config --exists $(p) 2>/dev/null && echo y),,$(p))))
NUMA_MISSING := $(if $(wildcard /usr/include/numa.h),,numa)
DEPS_MISSING := $(strip $(PKG_MISSING) $(NUMA_MISSING))

WARN    := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
           -Wno-unused-parameter -Wvla
OPT     ?= -O2
CFLAGS_BASE := -std=gnu11 $(OPT) -g -fPIC -fvisibility=hidden -pthread -D_GNU_SOURCE $(WARN) \
           -I.
LDLIBS_BASE := -lpthread -lm

ifneq ($(DEPS_MISSING),)
DEPS_OK := 0
else
DEPS_OK := 1
CFLAGS_BASE += $(shell pkg-config --cflags liburing libpcre2-8 libxxhash libsystemd 2>/dev/null)
LDLIBS_BASE += $(shell pkg-config --libs liburing libpcre2-8 libxxhash libsystemd 2>/dev/null) -lnuma
endif

ifeq ($(SANITIZE),1)
CFLAGS_BASE += -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
LDLIBS_BASE += -fsanitize=address,undefined
PF_CUDA := 0
endif

# ---- CUDA -------------------------------------------------------------------
# nvcc from PATH, $CUDA_HOME or /usr/local/cuda.  Kernels are built for
# CUDA_ARCHS (A100 = 80, H100 = 90) plus PTX of the last one, which newer GPUs
# compile at load.  Warnings are errors here as in the C code.
NVCC ?= $(shell command -v nvcc 2>/dev/null || ( [ -n "$$CUDA_HOME" ] && [ -x "$$CUDA_HOME/bin/nvcc" ] && echo $$CUDA_HOME/bin/nvcc ) || ( [ -x /usr/local/cuda/bin/nvcc ] && echo /usr/local/cuda/bin/nvcc ))
ifeq ($(PF_CUDA),auto)
PF_CUDA := $(if $(NVCC),1,0)
endif
CUDA_HOME ?= $(patsubst %/bin/nvcc,%,$(NVCC))
CUDA_ARCHS ?= 80 90
NVCCFLAGS := -O2 -std=c++17 -Xcompiler -fPIC -Werror all-warnings \
             $(foreach a,$(CUDA_ARCHS),-gencode arch=compute_$(a),code=sm_$(a)) \
             -gencode arch=compute_$(lastword $(CUDA_ARCHS)),code=compute_$(lastword $(CUDA_ARCHS)) \
             -I.
CUDA_LINK := -L$(CUDA_HOME)/lib64 -Wl,-rpath,$(CUDA_HOME)/lib64 -lcublas -lcudart -lstdc++
CU_SRCS := $(wildcard kernels/cuda/*.cu)
ifeq ($(PF_CUDA),1)
CFLAGS_BASE += -DPF_HAVE_CUDA=1
CUDA_LIBS := $(CUDA_LINK)
else
CU_SRCS :=
CUDA_LIBS :=
endif

# Builds that run tests check every scheduler and KV invariant after each
# engine step and abort on a broken one (runtime/engine/engine.c; cost
# measured in the commit that added it).  On by default and always under
# ASan; `make bench` builds without them, into its own BENCH_BUILD.
PF_CHECK_INVARIANTS ?= 1
ifeq ($(SANITIZE),1)
override PF_CHECK_INVARIANTS := 1
endif
CFLAGS_BASE += -DPF_CHECK_INVARIANTS=$(PF_CHECK_INVARIANTS)
BENCH_BUILD ?= build-bench

CFLAGS  := $(CFLAGS_BASE) $(EXTRA_CFLAGS)
LDLIBS  := $(LDLIBS_BASE) $(CUDA_LIBS)

# Extra libraries of individual tools.
TOOL_LIBS_pinfer-top      = $(shell pkg-config --libs ncursesw 2>/dev/null)
# line editing and history in `pinfer chat` on a terminal
TOOL_LIBS_pinfer          = $(shell pkg-config --libs libedit 2>/dev/null)
TOOL_LIBS_pinfer-exporter = $(shell pkg-config --libs libmicrohttpd 2>/dev/null)

# ---- sources ----------------------------------------------------------------
CORE_SRCS   := $(wildcard runtime/*/*.c) $(wildcard kernels/cpu/*.c) $(wildcard kernels/*.c) $(wildcard shm/*.c)
CORE_SRCS   := $(filter-out runtime/daemon/pinferd.c,$(CORE_SRCS))
CLIENT_SRCS := $(wildcard client/*.c) $(wildcard shm/*.c)
TOOL_SRCS   := $(wildcard tools/*.c)
# helpers every tool links (a .c directly in tools/ is a program of its own)
TOOL_COMMON_SRCS := $(wildcard tools/common/*.c)
UNIT_SRCS   := $(wildcard tests/unit/test_*.c)
FUZZ_SRCS   := $(wildcard tests/fuzz/fuzz_*.c)

OBJ := $(BUILD)/obj
CORE_OBJS   := $(CORE_SRCS:%.c=$(OBJ)/%.o) $(CU_SRCS:%.cu=$(OBJ)/%.cu.o)
CLIENT_OBJS := $(CLIENT_SRCS:%.c=$(OBJ)/%.o)
TOOLS       := $(TOOL_SRCS:tools/%.c=$(BUILD)/bin/%)
TOOL_COMMON_OBJS := $(TOOL_COMMON_SRCS:%.c=$(OBJ)/%.o)
UNIT_BINS   := $(UNIT_SRCS:tests/unit/%.c=$(BUILD)/tests/%)
# helper programs of the integration scripts (tests/integration/*.sh)
IT_SRCS     := $(wildcard tests/integration/*.c)
IT_BINS     := $(IT_SRCS:tests/integration/%.c=$(BUILD)/it/%)
DAEMON      := $(if $(wildcard runtime/daemon/pinferd.c),$(BUILD)/bin/pinferd)

CORE_LIB    := $(BUILD)/libpfcore.a
CLIENT_LIB  := $(BUILD)/libpinfer.a
CLIENT_SO   := $(BUILD)/libpinfer.so.1
PINFER_SONAME := libpinfer.so.1

# ---- pinfer-server (tools/server/*.c) ------------------------------------------
# The OpenAI-compatible HTTP server: linked only with libpinfer, libmicrohttpd
# and jansson — never runtime/ or kernels/ (tests/check/layers.sh).  Joins
# TOOLS, so build, install and uninstall take it along.
SERVER_SRCS := $(wildcard tools/server/*.c)
SERVER_OBJS := $(SERVER_SRCS:%.c=$(OBJ)/%.o)
SERVER_BIN  := $(if $(SERVER_SRCS),$(BUILD)/bin/pinfer-server)
TOOLS       += $(SERVER_BIN)
$(SERVER_OBJS): CFLAGS += $(shell pkg-config --cflags libmicrohttpd jansson 2>/dev/null)
$(SERVER_BIN): $(SERVER_OBJS) $(TOOL_COMMON_OBJS) $(CLIENT_LIB)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  LD    $@")
	$(Q)$(CC) $(CFLAGS) -o $@ $(SERVER_OBJS) $(TOOL_COMMON_OBJS) $(CLIENT_LIB) $(shell pkg-config --libs liburing libmicrohttpd jansson 2>/dev/null) -lpthread

MODEL_DIR   := models
MODEL       := $(MODEL_DIR)/SmolLM2-135M-Instruct.Q4_1.gguf
MODEL_SHA   := b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53

.PHONY: all build check-deps deps model run test test-unit test-fuzz asan bench \
        install uninstall clean test-gpu bench-gpu clean-gpu

all: build

build: check-deps $(CORE_LIB) $(CLIENT_LIB) $(CLIENT_SO) $(TOOLS) $(DAEMON) $(UNIT_BINS) $(IT_BINS)

check-deps:
ifneq ($(DEPS_OK),1)
	@echo "pinfer: missing build dependencies: $(DEPS_MISSING)" >&2
	@echo "pinfer: install them with:  sudo apt-get install -y $(DEB_PKGS)   (or run: make deps)" >&2
	@exit 1
endif

deps:
	@bash scripts/deps.sh $(DEB_PKGS)

model: $(MODEL)

$(MODEL):
	@bash scripts/fetch-model.sh "$(MODEL)" "$(MODEL_SHA)"

# V=1 shows the full command lines.
V ?= 0
ifeq ($(V),0)
Q = @
endif

# The CPU kernels sum in one canonical order on every ISA (kernels/cpu/quant.h):
# no fused multiply-add the source does not write as one.
$(OBJ)/kernels/cpu/%.o: CFLAGS += -ffp-contract=off

$(OBJ)/%.o: %.c
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CC    $<")
	$(Q)$(CC) $(CFLAGS) -MMD -MP -c $< -o $@

$(OBJ)/%.cu.o: %.cu
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  NVCC  $<")
	$(Q)$(NVCC) $(NVCCFLAGS) -MMD -MP -MF $(@:.o=.d) -c $< -o $@

$(CORE_LIB): $(CORE_OBJS)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  AR    $@")
	$(Q)rm -f $@ && ar rcs $@ $^

$(CLIENT_LIB): $(CLIENT_OBJS)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  AR    $@")
	$(Q)rm -f $@ && ar rcs $@ $^

$(CLIENT_SO): $(CLIENT_OBJS)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  SO    $@")
	$(Q)$(CC) $(CFLAGS) -shared -Wl,-soname,$(PINFER_SONAME) -Wl,--exclude-libs,ALL -o $@ $^ $(shell pkg-config --libs liburing 2>/dev/null) -lpthread
	$(Q)ln -sf libpinfer.so.1 $(BUILD)/libpinfer.so

$(BUILD)/bin/%: $(OBJ)/tools/%.o $(TOOL_COMMON_OBJS) $(CORE_LIB) $(CLIENT_LIB)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  LD    $@")
	$(Q)$(CC) $(CFLAGS) -o $@ $< $(TOOL_COMMON_OBJS) $(CORE_LIB) $(CLIENT_LIB) $(LDLIBS) $(TOOL_LIBS_$*)

$(BUILD)/bin/pinferd: $(OBJ)/runtime/daemon/pinferd.o $(CORE_LIB)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  LD    $@")
	$(Q)$(CC) $(CFLAGS) -o $@ $< $(CORE_LIB) $(LDLIBS)

$(BUILD)/tests/test_%: $(OBJ)/tests/unit/test_%.o $(CORE_LIB) $(CLIENT_LIB)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  LD    $@")
	$(Q)$(CC) $(CFLAGS) -o $@ $< $(CORE_LIB) $(CLIENT_LIB) $(LDLIBS) -lcmocka

$(BUILD)/it/%: $(OBJ)/tests/integration/%.o $(CORE_LIB) $(CLIENT_LIB)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  LD    $@")
	$(Q)$(CC) $(CFLAGS) -o $@ $< $(CLIENT_LIB) $(CORE_LIB) $(LDLIBS)

# ---- running ----------------------------------------------------------------
run: deps model
	@$(MAKE) --no-print-directory build
	@bash scripts/run-demo.sh "$(BUILD)" "$(MODEL)"

# Each suite's time is printed; the final line is "N passed, N failed".
# TEST_FILTER keeps the suites whose name contains one of its words; TEST_CASE
# (a glob) runs only the matching cases of the unit binaries it names:
#   make test TEST_FILTER=test_sched TEST_CASE=test_cancel_any_state
# The model was just fetched, so a suite that still cannot read it fails
# (PF_REQUIRE_MODEL=1) instead of passing on skips.
test: deps model
	@$(MAKE) --no-print-directory build
	@PF_MODEL="$(MODEL)" PF_REQUIRE_MODEL=1 TEST_CASE="$(TEST_CASE)" bash tests/run.sh "$(BUILD)" $(TEST_FILTER)

asan: deps model
	@$(MAKE) --no-print-directory BUILD=build-asan SANITIZE=1 CC=clang build
	@PF_MODEL="$(MODEL)" PF_REQUIRE_MODEL=1 TEST_CASE="$(TEST_CASE)" PF_ASAN=1 ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
	  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 bash tests/run.sh build-asan $(TEST_FILTER)

# libFuzzer harnesses (clang); PF_FUZZ_SECONDS per harness.
PF_FUZZ_SECONDS ?= 60
test-fuzz: deps model
	@bash tests/fuzz/run.sh "$(PF_FUZZ_SECONDS)"

# Its own build directory: objects do not record their flags, so -O3 and
# the unchecked engine must not share build/ with `make`/`make test`.
bench: deps model
	@$(MAKE) --no-print-directory build BUILD="$(BENCH_BUILD)" OPT="-O3" PF_CHECK_INVARIANTS=0
	@bash bench/run.sh "$(BENCH_BUILD)" "$(MODEL)"

# ---- standalone GPU tests and benchmarks -----------------------------------
# `make test-gpu` and `make bench-gpu` need nothing but nvcc, a C compiler and
# libc: they build into build-gpu/ the CUDA kernels, the CPU reference they
# are checked against (kernels/cpu, kernels/dtype.c: libc, libm, pthreads)
# and the plain C drivers of tests/gpu — none of the serving stack's
# libraries (liburing, libnuma, cmocka, PCRE2, xxHash, systemd) and no model
# download.  Without nvcc, or without a GPU, they exit 77 (make reports
# "Error 77"); `make test` runs the same tests through
# tests/integration/gpu.sh, which skips before compiling on a machine
# without an NVIDIA driver.  GPU_ARGS: a test-name filter / benchmark options.
# bench-gpu then runs bench_serve (SERVE_ARGS): serving throughput through
# runtime/engine/scheduler.c and runtime/engine/kv.c — no engine (its tokenizer needs
# PCRE2); kv.c's xxHash comes from tests/gpu/shim (see the header there).
GPU_BUILD   := build-gpu
GPU_CFLAGS  := -std=gnu11 -O2 -g -pthread -D_GNU_SOURCE $(WARN) -I. -DPF_HAVE_CUDA=1
GPU_C_SRCS  := $(wildcard kernels/cpu/*.c) $(wildcard kernels/*.c)
GPU_CU_SRCS := $(wildcard kernels/cuda/*.cu)
GPU_OBJS    := $(GPU_C_SRCS:%.c=$(GPU_BUILD)/obj/%.o) $(GPU_CU_SRCS:%.cu=$(GPU_BUILD)/obj/%.cu.o)
GPU_BINS    := $(GPU_BUILD)/test_kernels $(GPU_BUILD)/bench_kernels
GPU_ARGS    ?=
GPU_SERVE   := $(GPU_BUILD)/bench_serve
GPU_SERVE_OBJS := $(GPU_BUILD)/obj/runtime/engine/scheduler.o $(GPU_BUILD)/obj/runtime/engine/kv.o
# a time limit per mode that keeps bench-gpu (both drivers) within ~8 minutes
SERVE_ARGS  ?= --time-limit 150

$(GPU_BUILD)/obj/kernels/cpu/%.o: GPU_CFLAGS += -ffp-contract=off

$(GPU_BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CC    $<")
	$(Q)$(CC) $(GPU_CFLAGS) -MMD -MP -c $< -o $@

$(GPU_BUILD)/obj/%.cu.o: %.cu
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  NVCC  $<")
	$(Q)$(NVCC) $(NVCCFLAGS) -MMD -MP -MF $(@:.o=.d) -c $< -o $@

$(GPU_BINS): $(GPU_BUILD)/%: $(GPU_BUILD)/obj/tests/gpu/%.o $(GPU_OBJS)
	@$(if $(Q),echo "  LD    $@")
	$(Q)$(CC) $(GPU_CFLAGS) -o $@ $^ $(CUDA_LINK) -lm -lpthread

$(GPU_SERVE_OBJS): GPU_CFLAGS += -Itests/gpu/shim
$(GPU_SERVE): $(GPU_BUILD)/obj/tests/gpu/bench_serve.o $(GPU_SERVE_OBJS) $(GPU_OBJS)
	@$(if $(Q),echo "  LD    $@")
	$(Q)$(CC) $(GPU_CFLAGS) -o $@ $^ $(CUDA_LINK) -lm -lpthread

test-gpu bench-gpu:
ifeq ($(NVCC),)
	@echo "$@: skip: no nvcc found (install the CUDA toolkit, or pass NVCC=/path/to/nvcc)" >&2; exit 77
else
	@$(MAKE) --no-print-directory $(GPU_BINS) $(if $(filter bench-gpu,$@),$(GPU_SERVE))
	@$(GPU_BUILD)/$(if $(filter test-gpu,$@),test_kernels,bench_kernels) $(GPU_ARGS)
	$(if $(filter bench-gpu,$@),@$(GPU_SERVE) $(SERVE_ARGS))
endif

# The test driver against a CPU emulator of the kernels (no GPU, no CUDA
# toolkit; slow): a check of their logic where no GPU is at hand, never a
# substitute for test-gpu.  See tests/gpu/emu/run.sh.
.PHONY: test-gpu-emu
test-gpu-emu:
	@bash tests/gpu/emu/run.sh test $(GPU_ARGS)

clean: clean-gpu
clean-gpu:
	rm -rf $(GPU_BUILD)

-include $(shell find $(GPU_BUILD)/obj -name '*.d' 2>/dev/null)

# ---- installing ----------------------------------------------------------------
# Every path below follows PREFIX; DESTDIR is prepended to each (staged
# installs for packages).  SYSCONFDIR holds pinfer/pinferd.conf.example: /etc
# for the system prefixes /usr and /usr/local (where pinferd looks for
# /etc/pinfer/pinferd.conf by default), $(PREFIX)/etc for any other prefix,
# so that `make install PREFIX=$$HOME/pinfer` writes nothing outside it.
# The unit files and the tmpfiles snippet are rewritten to name the real
# BINDIR, SYSCONFDIR and DOCDIR.  shm/stats.h goes to INCLUDEDIR/pinfer/stats.h:
# pinfer_stats_open() users read struct pf_stats from <pinfer/stats.h>.  Installing to a system prefix as root
# without DESTDIR runs ldconfig, so that programs find libpinfer.so.1 at once.
BINDIR     ?= $(PREFIX)/bin
LIBDIR     ?= $(PREFIX)/lib
INCLUDEDIR ?= $(PREFIX)/include
DOCDIR     ?= $(PREFIX)/share/doc/pinfer
UNITDIR    ?= $(PREFIX)/lib/systemd/system
ifneq ($(filter /usr /usr/ /usr/local /usr/local/,$(PREFIX)),)
SYSCONFDIR ?= /etc
else
SYSCONFDIR ?= $(PREFIX)/etc
endif
SYSTEM_PREFIX := $(if $(filter /usr /usr/ /usr/local /usr/local/,$(PREFIX)),1,0)
# what the unit files name in the tree (the defaults of PREFIX=/usr/local)
UNIT_SED := -e 's|/usr/local/bin/|$(BINDIR)/|g' -e 's|/usr/local/share/doc/pinfer|$(DOCDIR)|g' \
            -e 's|/etc/pinfer\([/ ]\)|$(SYSCONFDIR)/pinfer\1|g' -e 's|PREFIX=/usr/local|PREFIX=$(PREFIX)|g'

install: build
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(LIBDIR)/pkgconfig $(DESTDIR)$(INCLUDEDIR)/pinfer $(DESTDIR)$(DOCDIR)
	install -m 0755 $(TOOLS) $(DAEMON) $(DESTDIR)$(BINDIR)/
	install -m 0644 $(CLIENT_LIB) $(DESTDIR)$(LIBDIR)/
	install -m 0755 $(CLIENT_SO) $(DESTDIR)$(LIBDIR)/
	ln -sf libpinfer.so.1 $(DESTDIR)$(LIBDIR)/libpinfer.so
	install -m 0644 client/pinfer.h $(DESTDIR)$(INCLUDEDIR)/
	install -m 0644 shm/stats.h $(DESTDIR)$(INCLUDEDIR)/pinfer/stats.h
	sed -e 's|@PREFIX@|$(PREFIX)|; s|@LIBDIR@|$(LIBDIR)|; s|@INCLUDEDIR@|$(INCLUDEDIR)|' client/pinfer.pc.in \
	  > $(DESTDIR)$(LIBDIR)/pkgconfig/pinfer.pc
	install -d $(DESTDIR)$(UNITDIR) $(DESTDIR)$(PREFIX)/lib/sysusers.d $(DESTDIR)$(PREFIX)/lib/tmpfiles.d \
	  $(DESTDIR)$(SYSCONFDIR)/pinfer
	for u in systemd/*.service; do sed $(UNIT_SED) $$u > $(DESTDIR)$(UNITDIR)/$$(basename $$u); done
	install -m 0644 systemd/pinfer.sysusers $(DESTDIR)$(PREFIX)/lib/sysusers.d/pinfer.conf
	sed $(UNIT_SED) systemd/pinfer.tmpfiles > $(DESTDIR)$(PREFIX)/lib/tmpfiles.d/pinfer.conf
	install -m 0644 systemd/pinferd.conf.example $(DESTDIR)$(SYSCONFDIR)/pinfer/pinferd.conf.example
	install -m 0644 systemd/pinferd.conf.example README.md ARCHITECTURE.md $(DESTDIR)$(DOCDIR)/
	@if [ -z "$(DESTDIR)" ] && [ $(SYSTEM_PREFIX) = 1 ] && [ "$$(id -u)" = 0 ] && command -v ldconfig >/dev/null; then \
	  echo "ldconfig"; ldconfig; fi

uninstall:
	rm -f $(foreach t,$(TOOLS) $(DAEMON),$(DESTDIR)$(BINDIR)/$(notdir $(t)))
	rm -f $(DESTDIR)$(LIBDIR)/libpinfer.a $(DESTDIR)$(LIBDIR)/libpinfer.so $(DESTDIR)$(LIBDIR)/libpinfer.so.1
	rm -f $(DESTDIR)$(LIBDIR)/pkgconfig/pinfer.pc $(DESTDIR)$(INCLUDEDIR)/pinfer.h $(DESTDIR)$(INCLUDEDIR)/pinfer/stats.h
	-rmdir $(DESTDIR)$(INCLUDEDIR)/pinfer 2>/dev/null
	rm -f $(foreach u,$(wildcard systemd/*.service),$(DESTDIR)$(UNITDIR)/$(notdir $(u)))
	rm -f $(DESTDIR)$(PREFIX)/lib/sysusers.d/pinfer.conf $(DESTDIR)$(PREFIX)/lib/tmpfiles.d/pinfer.conf
	rm -f $(DESTDIR)$(SYSCONFDIR)/pinfer/pinferd.conf.example
	rm -rf $(DESTDIR)$(DOCDIR)

clean:
	rm -rf build build-asan build-fuzz build-bench

-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)
