#!/bin/sh
# Runs every test binary given on the command line and sums their results.
# The last line is "N passed, N failed" (CI reads it); exit status 1 on any failure.
# Environment for the tests: FEEDLINE_BIN (sanitizer build of the CLI), FEEDLINE_ROOT,
# FEEDLINE_TEST_PG (a PostgreSQL server URL: the tests' databases are made there).
# FEEDLINE_TEST_SUMMARY=FILE also writes "PASSED FAILED" to FILE (for make test, which
# sums the SQLite and PostgreSQL passes).
set -u
root=$(cd "$(dirname "$0")/.." && pwd)
export FEEDLINE_ROOT="$root"
export FEEDLINE_BUILD="${FEEDLINE_BUILD:-$root/build}"
export FEEDLINE_BIN="${FEEDLINE_BIN:-$FEEDLINE_BUILD/asan/feedline}"
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:strict_string_checks=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
passed=0; failed=0; broken=""
for t in "$@"; do
  t0=$(date +%s)
  out=$("$t" 2>&1); rc=$?
  printf '%s\n' "$out" | grep -v '^$'
  echo "  ($(basename "$t"): $(( $(date +%s) - t0 )) s)"
  line=$(printf '%s\n' "$out" | grep -E '^[^ ]+: [0-9]+ passed, [0-9]+ failed$' | tail -n 1)
  if [ -n "$line" ]; then
    p=$(echo "$line" | sed -E 's/.*: ([0-9]+) passed.*/\1/')
    f=$(echo "$line" | sed -E 's/.* ([0-9]+) failed$/\1/')
    passed=$((passed + p)); failed=$((failed + f))
  fi
  if [ $rc -ne 0 ] && { [ -z "$line" ] || [ "${f:-0}" = 0 ]; }; then
    failed=$((failed + 1)); broken="$broken $t"
  fi
done
[ -n "$broken" ] && echo "test binaries that exited abnormally:$broken"
echo "$passed passed, $failed failed"
if [ -n "${FEEDLINE_TEST_SUMMARY:-}" ]; then
  echo "$passed $failed" >"$FEEDLINE_TEST_SUMMARY"
fi
[ "$failed" -eq 0 ]
