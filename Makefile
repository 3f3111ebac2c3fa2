# feedline build. `make` builds build/feedline; `make test` builds everything under
# AddressSanitizer + UndefinedBehaviorSanitizer and runs the suite; `make demo` runs the
# whole pipeline offline on the bundled sample. Missing Debian packages are installed by
# scripts/install-deps the first time a target needs them.
#
# Layout of outputs (B = build directory, default "build"):
#   $(B)/feedline            release CLI          $(B)/asan/feedline   sanitizer CLI
#   $(B)/asan/tests/...      test binaries         $(B)/fake_*          test servers
#   $(B)/gen_sample          sample generator      $(B)/bench/*         benchmarks

CC      ?= gcc
B       ?= build
PKGS    := jansson sqlite3 libmicrohttpd libcurl
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

REL_OBJ      := $(LIB_SRC:%.c=$(B)/rel/%.o)
ASAN_OBJ     := $(LIB_SRC:%.c=$(B)/asan/%.o)
REL_SUPPORT  := $(SUPPORT_SRC:%.c=$(B)/rel/%.o) $(FAKE_LIB_SRC:%.c=$(B)/rel/%.o)
ASAN_SUPPORT := $(SUPPORT_SRC:%.c=$(B)/asan/%.o) $(FAKE_LIB_SRC:%.c=$(B)/asan/%.o)
TEST_BINS    := $(TEST_SRC:tests/%.c=$(B)/asan/tests/%)
FAKE_BINS    := $(patsubst tests/fakes/%.c,$(B)/%,$(FAKE_MAINS))
TOOL_BINS    := $(patsubst tools/%.c,$(B)/%,$(TOOL_SRC))
BENCH_BINS   := $(patsubst bench/%.c,$(B)/bench/%,$(BENCH_SRC))

.PHONY: all test demo clean deps bench fakes tools
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

# Build and run the whole suite. T=substring runs only matching test binaries.
test: $(B)/asan/feedline $(B)/feedline $(TEST_BINS) $(FAKE_BINS) $(TOOL_BINS)
	@scripts/install-deps test
	@FEEDLINE_BUILD=$(abspath $(B)) tests/run.sh $(if $(T),$(foreach b,$(TEST_BINS),$(if $(findstring $(T),$(b)),$(b))),$(TEST_BINS))

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
