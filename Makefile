# feedline build. `make` builds build/feedline; `make test` builds everything under
# AddressSanitizer + UndefinedBehaviorSanitizer and runs the suite; `make demo` runs the
# whole pipeline offline on the bundled sample. Missing Debian packages are installed by
# scripts/install-deps the first time a target needs them.
#
# Layout of outputs (B = build directory, default "build"):
#   $(B)/feedline            release CLI          $(B)/asan/feedline   sanitizer CLI
#   $(B)/asan/tests/...      test binaries         $(B)/fake_*          test servers
#   $(B)/gen_sample          sample generator      $(B)/bench/*         benchmarks
#   $(B)/fuzz/fuzz_*         libFuzzer targets (clang; `make fuzz`, corpus replay in `make test`)

CC      ?= gcc
B       ?= build
PKGS    := jansson sqlite3 libcurl libmicrohttpd libpq
WARN    := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
           -Wno-missing-field-initializers -Wformat=2 -Wvla
BASE    := -std=c11 -D_GNU_SOURCE -pthread -Isrc -Itests $(WARN) -MMD -MP
OPT     := -O2 -g
SAN     := -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=all

DEPS_STAMP := $(B)/.deps-ok
PKG_CFLAGS = $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   = $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lm

LIB_SRC     := $(shell find src -name '*.c' ! -path src/main.c | sort)
TEST_SRC    := $(shell find tests -name 'test_*.c' ! -path 'tests/fakes/*' ! -path 'tests/support/*' | sort)
SUPPORT_SRC := $(shell find tests/support -name '*.c' ! -name test_main.c | sort)
FAKE_SRC    := $(shell find tests/fakes -name '*.c' | sort)
FAKE_MAINS  := $(shell grep -l '^int main' $(FAKE_SRC) /dev/null 2>/dev/null)
FAKE_LIB_SRC := $(filter-out $(FAKE_MAINS),$(FAKE_SRC))
TOOL_SRC    := $(shell find tools -name '*.c' | sort)
BENCH_SRC   := $(shell find bench -name '*.c' | sort)

# Text compiled into the library as C strings by scripts/embed-files: the LLM prompt
# templates and the dashboard page. Generated once, built for both libraries.
PROMPT_TXT   := $(sort $(wildcard src/llm/prompts/*.txt))
WEB_FILES    := $(sort $(wildcard web/*.html))
GEN_C        := $(B)/gen/llm_prompts.c $(B)/gen/web_files.c
REL_OBJ      := $(LIB_SRC:%.c=$(B)/rel/%.o) $(GEN_C:$(B)/gen/%.c=$(B)/rel/gen/%.o)
ASAN_OBJ     := $(LIB_SRC:%.c=$(B)/asan/%.o) $(GEN_C:$(B)/gen/%.c=$(B)/asan/gen/%.o)
REL_SUPPORT  := $(SUPPORT_SRC:%.c=$(B)/rel/%.o) $(FAKE_LIB_SRC:%.c=$(B)/rel/%.o)
ASAN_SUPPORT := $(SUPPORT_SRC:%.c=$(B)/asan/%.o) $(FAKE_LIB_SRC:%.c=$(B)/asan/%.o)
TEST_BINS    := $(TEST_SRC:tests/%.c=$(B)/asan/tests/%)
FAKE_BINS    := $(patsubst tests/fakes/%.c,$(B)/%,$(FAKE_MAINS))
TOOL_BINS    := $(patsubst tools/%.c,$(B)/%,$(TOOL_SRC))
BENCH_BINS   := $(patsubst bench/%.c,$(B)/bench/%,$(BENCH_SRC))

# Fuzzing (tests/fuzz/README.md): libFuzzer targets built with clang against a separate
# instrumented copy of the library ($(B)/fuzz/); the normal build stays $(CC).
FUZZ_CC      ?= clang
FUZZ_SECONDS ?= 60
FUZZ_SAN     := -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined \
                -fno-sanitize-recover=undefined
FUZZ_BASE    := $(filter-out -Werror,$(BASE)) -Wno-format-nonliteral
FUZZ_SRC     := $(sort $(wildcard tests/fuzz/fuzz_*.c))
FUZZ_NAMES   := $(FUZZ_SRC:tests/fuzz/%.c=%)
FUZZ_BINS    := $(FUZZ_NAMES:%=$(B)/fuzz/%)
FUZZ_OBJ     := $(LIB_SRC:%.c=$(B)/fuzz/%.o) $(GEN_C:$(B)/gen/%.c=$(B)/fuzz/gen/%.o)
# One corpus replay per target for the suite: links to tests/fuzz/regress, which takes
# the target's name from its own.
FUZZ_REGRESS := $(FUZZ_NAMES:%=$(B)/fuzz/regress/%)
FUZZ_STAMP   := $(B)/.fuzz-deps-ok

.PHONY: all test demo clean deps bench fakes tools fuzz fuzz-build
all: $(B)/feedline

$(DEPS_STAMP): scripts/install-deps
	@scripts/install-deps build
	@mkdir -p $(B) && touch $@

deps: $(DEPS_STAMP)

$(B)/rel/%.o: %.c | $(DEPS_STAMP)
	@mkdir -p $(dir $@)
	@echo "  CC      $<"
	@$(CC) $(BASE) $(OPT) $(PKG_CFLAGS) -c $< -o $@

$(B)/asan/%.o: %.c | $(DEPS_STAMP)
	@mkdir -p $(dir $@)
	@echo "  CC asan $<"
	@$(CC) $(BASE) $(SAN) $(PKG_CFLAGS) -c $< -o $@

$(B)/gen/llm_prompts.c: $(PROMPT_TXT) scripts/embed-files
	@mkdir -p $(dir $@)
	@echo "  GEN     $@"
	@scripts/embed-files PROMPT_FILES $(PROMPT_TXT) > $@.tmp && mv $@.tmp $@
$(B)/gen/web_files.c: $(WEB_FILES) scripts/embed-files
	@mkdir -p $(dir $@)
	@echo "  GEN     $@"
	@scripts/embed-files WEB_FILES $(WEB_FILES) > $@.tmp && mv $@.tmp $@
$(B)/rel/gen/%.o: $(B)/gen/%.c | $(DEPS_STAMP)
	@mkdir -p $(dir $@)
	@echo "  CC      $<"
	@$(CC) $(BASE) $(OPT) $(PKG_CFLAGS) -c $< -o $@
$(B)/asan/gen/%.o: $(B)/gen/%.c | $(DEPS_STAMP)
	@mkdir -p $(dir $@)
	@echo "  CC asan $<"
	@$(CC) $(BASE) $(SAN) $(PKG_CFLAGS) -c $< -o $@

$(B)/rel/libfeedline.a: $(REL_OBJ)
	@rm -f $@; ar rcs $@ $^
$(B)/asan/libfeedline.a: $(ASAN_OBJ)
	@rm -f $@; ar rcs $@ $^
# Test support (fixtures, generators, fake-server cores), shared by tests, tools,
# fakes and benchmarks; never part of the product.
$(B)/rel/libsupport.a: $(REL_SUPPORT)
	@rm -f $@; ar rcs $@ $^ $(B)/rel/.empty.o
$(B)/asan/libsupport.a: $(ASAN_SUPPORT)
	@rm -f $@; ar rcs $@ $^ $(B)/asan/.empty.o

$(B)/rel/.empty.o $(B)/asan/.empty.o: | $(DEPS_STAMP)
	@mkdir -p $(dir $@)
	@echo 'typedef int feedline_empty_unit;' | $(CC) -x c -c - -o $@
$(B)/rel/libsupport.a: $(B)/rel/.empty.o
$(B)/asan/libsupport.a: $(B)/asan/.empty.o

$(B)/feedline: $(B)/rel/src/main.o $(B)/rel/libfeedline.a
	@echo "  LD      $@"
	@$(CC) $(BASE) $(OPT) -o $@ $^ $(PKG_LIBS)
$(B)/asan/feedline: $(B)/asan/src/main.o $(B)/asan/libfeedline.a
	@echo "  LD asan $@"
	@$(CC) $(BASE) $(SAN) -o $@ $^ $(PKG_LIBS)

$(B)/asan/tests/%: $(B)/asan/tests/%.o $(B)/asan/tests/support/test_main.o $(B)/asan/libsupport.a $(B)/asan/libfeedline.a
	@mkdir -p $(dir $@)
	@echo "  LD asan $@"
	@$(CC) $(BASE) $(SAN) -o $@ $^ $(PKG_LIBS)

# Test servers, tools and benchmarks are built optimised: they are fixtures and load
# generators, not code under test.
$(B)/%: $(B)/rel/tests/fakes/%.o $(B)/rel/libsupport.a $(B)/rel/libfeedline.a
	@echo "  LD      $@"
	@$(CC) $(BASE) $(OPT) -o $@ $^ $(PKG_LIBS)
$(B)/%: $(B)/rel/tools/%.o $(B)/rel/libsupport.a $(B)/rel/libfeedline.a
	@echo "  LD      $@"
	@$(CC) $(BASE) $(OPT) -o $@ $^ $(PKG_LIBS)
$(B)/bench/%: $(B)/rel/bench/%.o $(B)/rel/libsupport.a $(B)/rel/libfeedline.a
	@mkdir -p $(dir $@)
	@echo "  LD      $@"
	@$(CC) $(BASE) $(OPT) -o $@ $^ $(PKG_LIBS)

fakes: $(FAKE_BINS)
tools: $(TOOL_BINS)

# ------------------------------------------------------------------ fuzzing
$(FUZZ_STAMP): scripts/install-deps
	@scripts/install-deps fuzz
	@command -v $(FUZZ_CC) >/dev/null || { echo "fuzz: $(FUZZ_CC) not found" >&2; exit 1; }
	@mkdir -p $(B) && touch $@

$(B)/fuzz/%.o: %.c | $(DEPS_STAMP) $(FUZZ_STAMP)
	@mkdir -p $(dir $@)
	@echo "  CC fuzz $<"
	@$(FUZZ_CC) $(FUZZ_BASE) $(FUZZ_SAN) -fsanitize=fuzzer-no-link $(PKG_CFLAGS) -c $< -o $@
$(B)/fuzz/gen/%.o: $(B)/gen/%.c | $(DEPS_STAMP) $(FUZZ_STAMP)
	@mkdir -p $(dir $@)
	@echo "  CC fuzz $<"
	@$(FUZZ_CC) $(FUZZ_BASE) $(FUZZ_SAN) -fsanitize=fuzzer-no-link $(PKG_CFLAGS) -c $< -o $@
$(B)/fuzz/libfeedline.a: $(FUZZ_OBJ)
	@rm -f $@; ar rcs $@ $^
$(B)/fuzz/fuzz_%: $(B)/fuzz/tests/fuzz/fuzz_%.o $(B)/fuzz/libfeedline.a
	@echo "  LD fuzz $@"
	@$(FUZZ_CC) $(FUZZ_BASE) $(FUZZ_SAN) -fsanitize=fuzzer -o $@ $^ $(PKG_LIBS)
$(B)/fuzz/regress/%: tests/fuzz/regress | $(B)/fuzz/%
	@mkdir -p $(dir $@)
	@ln -sf $(abspath tests/fuzz/regress) $@

fuzz-build: $(FUZZ_BINS)

# Runs every target for FUZZ_SECONDS (one at a time, each one in-process libFuzzer run:
# no -jobs/-fork, so one process on the machine), starting from
# its committed corpus; new inputs go to $(B)/fuzz/corpus/<target> (merge what is worth
# keeping into tests/fuzz/corpus with -merge=1), crashes to $(B)/fuzz/artifacts/.
fuzz: $(FUZZ_BINS)
	@mkdir -p $(B)/fuzz/artifacts $(B)/fuzz/logs; fail=""; \
	for t in $(FUZZ_NAMES); do \
	  mkdir -p $(B)/fuzz/corpus/$$t; log=$(B)/fuzz/logs/$$t.log; \
	  echo "== $$t: $(FUZZ_SECONDS) s (log $$log)"; \
	  if $(B)/fuzz/$$t -max_total_time=$(FUZZ_SECONDS) -timeout=25 -rss_limit_mb=2048 \
	      -print_final_stats=1 -artifact_prefix=$(B)/fuzz/artifacts/$$t- \
	      $(B)/fuzz/corpus/$$t tests/fuzz/corpus/$$t >$$log 2>&1; then \
	    grep -aE '^#[0-9]+[[:space:]]+DONE|^stat::(number_of_executed_units|average_exec_per_sec)' $$log; \
	  else \
	    grep -aE '^==[0-9]+==ERROR|^SUMMARY|^artifact_prefix|Test unit written' $$log | head -5; \
	    fail="$$fail $$t"; \
	  fi; \
	done; \
	[ -z "$$fail" ] || { echo "fuzz findings in:$$fail (inputs in $(B)/fuzz/artifacts/)"; exit 1; }

# Build and run the whole suite once per backend: SQLite, then PostgreSQL on a
# throwaway cluster (scripts/pg-test-cluster; each test makes its own database there).
# The last line is the total over both passes. T=substring runs only matching test
# binaries; BACKENDS=sqlite skips the PostgreSQL pass. The cluster lives under /tmp:
# short unix-socket paths, and reachable by the postgres user when run as root.
BACKENDS ?= sqlite postgres
TEST_SELECTED = $(if $(T),$(foreach b,$(TEST_BINS) $(FUZZ_REGRESS),$(if $(findstring $(T),$(b)),$(b))),$(TEST_BINS) $(FUZZ_REGRESS))
test: $(B)/asan/feedline $(B)/feedline $(TEST_BINS) $(FAKE_BINS) $(TOOL_BINS) $(FUZZ_REGRESS) \
      tests/web/node_modules/.installed
	@scripts/install-deps test
	@export FEEDLINE_BUILD=$(abspath $(B)); \
	summary=$$(mktemp); pgdir=""; passed=0; failed=0; \
	trap 'rm -f "$$summary"; [ -z "$$pgdir" ] || scripts/pg-test-cluster stop "$$pgdir"' EXIT; \
	trap 'exit 130' INT TERM; \
	for backend in $(BACKENDS); do \
	  : >"$$summary"; \
	  case $$backend in \
	  sqlite) echo "== SQLite"; \
	    FEEDLINE_TEST_SUMMARY=$$summary tests/run.sh $(TEST_SELECTED) ;; \
	  postgres) echo "== PostgreSQL"; \
	    pgdir=$$(mktemp -d /tmp/feedline-pg.XXXXXX); \
	    if url=$$(scripts/pg-test-cluster start "$$pgdir"); then \
	      FEEDLINE_TEST_PG=$$url FEEDLINE_TEST_PG_DIR=$$pgdir \
	      FEEDLINE_TEST_SUMMARY=$$summary tests/run.sh $(TEST_SELECTED); \
	    else echo "the PostgreSQL test cluster did not start"; fi ;; \
	  *) echo "unknown backend $$backend (sqlite|postgres)" ;; \
	  esac; \
	  read p f <"$$summary" || { p=0; f=1; }; \
	  passed=$$((passed + p)); failed=$$((failed + f)); \
	done; \
	echo "$$passed passed, $$failed failed"; \
	[ "$$failed" -eq 0 ]

# playwright-core for the dashboard's browser test (it drives Debian's chromium; no
# browser download).
tests/web/node_modules/.installed: tests/web/package.json
	@scripts/install-deps test
	@echo "  NPM     tests/web"
	@cd tests/web && npm install --no-audit --no-fund --silent >/dev/null
	@touch $@

bench: $(B)/feedline $(BENCH_BINS) $(FAKE_BINS) $(TOOL_BINS)
	@scripts/install-deps bench

demo: $(B)/feedline
	@rm -f feedline.db feedline.db-wal feedline.db-shm
	$(B)/feedline import --db feedline.db data/sample_conversations.jsonl
	$(B)/feedline run --db feedline.db --llm local
	$(B)/feedline stories --db feedline.db --format table

clean:
	rm -rf $(B)

.SECONDARY:
-include $(shell find $(B) -name '*.d' 2>/dev/null)
