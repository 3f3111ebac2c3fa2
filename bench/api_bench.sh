#!/bin/sh
# API benchmark: wrk on GET /api/pipeline/status/{id} with no run active, then while a
# run is in a given phase (default: theme extraction), side by side.
#
#   bench/api_bench.sh [--llm local|openai] [--conversations N] [--concurrency C]
#                      [--seconds S] [--phase PHASE] [--wrk-threads T] [--wrk-conns C]
#                      [--no-response-cache]
#
# --llm picks the run's provider: "local" is the offline analyzer (CPU-bound, in the
# server process); "openai" talks to whatever OPENAI_BASE_URL / OPENAI_API_KEY point at
# (start the fake OpenAI-compatible endpoint first and export them). Targets (issue 4):
# p99 < 10 ms and >= 10 000 req/s with wrk -t2 -c32 -d10s on a 2-core machine.
# Needs build/feedline and build/gen_sample (`make bench`) and wrk
# (`scripts/install-deps bench`). Prints a Markdown table for BENCHMARKS.md.
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

llm=local conversations=40000 concurrency=20 seconds=10 phase=theme_extraction
wrk_threads=2 wrk_conns=32 serve_opts=""
while [ $# -gt 0 ]; do
  case "$1" in
    --llm) llm=$2; shift 2 ;;
    --conversations) conversations=$2; shift 2 ;;
    --concurrency) concurrency=$2; shift 2 ;;
    --seconds) seconds=$2; shift 2 ;;
    --phase) phase=$2; shift 2 ;;
    --wrk-threads) wrk_threads=$2; shift 2 ;;
    --wrk-conns) wrk_conns=$2; shift 2 ;;
    --no-response-cache) serve_opts="--no-response-cache"; shift ;;
    -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
    *) echo "api_bench: unknown option $1" >&2; exit 2 ;;
  esac
done
for tool in build/feedline build/gen_sample; do
  [ -x "$tool" ] || { echo "api_bench: $tool missing (run make bench)" >&2; exit 1; }
done
command -v wrk >/dev/null || { echo "api_bench: wrk missing (scripts/install-deps bench)" >&2; exit 1; }

work=$(mktemp -d "${TMPDIR:-/tmp}/feedline-api-bench-XXXXXX")
server_pid=""
cleanup() {
  if [ -n "$server_pid" ]; then kill -TERM "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT INT TERM

echo "generating and importing $conversations conversations..." >&2
build/gen_sample --count "$conversations" --vocab data/theme_vocabulary.json --out "$work/c.jsonl"
build/feedline import --db "$work/bench.db" "$work/c.jsonl" >/dev/null

FEEDLINE_VOCAB=data/theme_vocabulary.json FEEDLINE_LOG=warn \
  build/feedline serve --db "$work/bench.db" --listen 127.0.0.1:0 $serve_opts >"$work/out" 2>"$work/err" &
server_pid=$!
for _ in $(seq 1 100); do grep -q "listening on" "$work/out" 2>/dev/null && break; sleep 0.1; done
base="http://$(sed -n 's/^listening on //p' "$work/out")"
[ "$base" != "http://" ] || { cat "$work/err" >&2; exit 1; }

field() { # field NAME: a top-level string or number from the JSON on stdin
  sed -n "s/.*\"$1\":\"\{0,1\}\([^\",}]*\).*/\1/p" | head -n 1
}
post_run() {
  curl -s -X POST -H 'Content-Type: application/json' -d "$1" "$base/api/pipeline/run" | field run_id
}
status_of() { curl -s "$base/api/pipeline/status/$1"; }
wait_for() { # wait_for ID KEY VALUE
  for _ in $(seq 1 36000); do
    st=$(status_of "$1")
    [ "$(echo "$st" | field "$2")" = "$3" ] && return 0
    case "$(echo "$st" | field status)" in
      failed|completed|stopped)
        echo "api_bench: run $1 ended ($(echo "$st" | field status): $(echo "$st" | field error_message)) before $2=$3" >&2
        return 1 ;;
    esac
    sleep 0.05
  done
  echo "api_bench: run $1 never reached $2=$3" >&2; return 1
}

# wrk_row LABEL ID: one table row from a wrk run on the status of run ID.
wrk_row() {
  wrk -t"$wrk_threads" -c"$wrk_conns" -d"${seconds}s" --latency "$base/api/pipeline/status/$2" >"$work/wrk" 2>&1
  rps=$(sed -n 's/^Requests\/sec: *\([0-9.]*\).*/\1/p' "$work/wrk")
  p50=$(sed -n 's/^ *50% *\([0-9.]*[a-z]*\).*/\1/p' "$work/wrk")
  p90=$(sed -n 's/^ *90% *\([0-9.]*[a-z]*\).*/\1/p' "$work/wrk")
  p99=$(sed -n 's/^ *99% *\([0-9.]*[a-z]*\).*/\1/p' "$work/wrk")
  errors=$(sed -n 's/^ *Non-2xx or 3xx responses: *\([0-9]*\).*/\1/p' "$work/wrk")
  printf '| %s | %s | %s | %s | %s | %s |\n' "$1" "${rps%.*}" "$p50" "$p90" "$p99" "${errors:-0}"
}

# A small finished run gives the idle measurement a status to read.
small=$(post_run '{"all_conversations": true, "max_conversations": 50}')
wait_for "$small" status completed

echo
echo "wrk -t$wrk_threads -c$wrk_conns -d${seconds}s GET /api/pipeline/status/{id}; run: llm $llm, concurrency $concurrency, $conversations conversations${serve_opts:+; serve $serve_opts}"
echo
echo "| situation | req/s | p50 | p90 | p99 | non-2xx |"
echo "|---|---|---|---|---|---|"
wrk_row "no run active" "$small"

run=$(post_run "{\"all_conversations\": true, \"auto_create_stories\": true, \"concurrency\": $concurrency, \"llm\": \"$llm\"}")
wait_for "$run" current_phase "$phase"
before=$(status_of "$run")
wrk_row "run $run in $phase" "$run"
after=$(status_of "$run")
end_phase=$(echo "$after" | field current_phase)
done_before=$(echo "$before" | field themes_extracted)
done_after=$(echo "$after" | field themes_extracted)
echo
echo "run $run: phase $phase at the start of the window, $end_phase at its end;" \
     "themes_extracted $done_before -> $done_after during it"
[ "$end_phase" = "$phase" ] || echo "note: the run left $phase before the window ended (use more --conversations)"
curl -s -X POST "$base/api/pipeline/stop" >/dev/null
