#!/usr/bin/env bash
# Instructions a logged Kafka round takes, counted by callgrind: a measure that does not move
# with the machine. This project's VM drifts by 10% and more within minutes, so two builds a
# few percent apart cannot be told by time even in pairs; their instruction counts can (two
# rounds of one build came within 0.4% of each other, docs/benchmarks.md, 2026-12-07).
#
#   scripts/kafka-instructions.sh BENCH [BENCH ...]
#
# BENCH is a built `kafka_throughput` bench binary (`cargo bench -p burnrate --bench
# kafka_throughput --no-run` prints its path; copy it aside to keep one per build). The first
# one produces the stream into Tansu (BURNRATE_TANSU) and is frozen at its first round; then
# each BENCH runs a logged round of that stream under callgrind, PAIRS times (2) in turn, and
# its instruction count is printed. COPIES (1,000: 36,000 messages, about a minute a round)
# sets the stream's size; ROUND=plain runs the bench's plain-Parquet round (no Delta logs)
# instead of the logged one. The rounds get 4 GiB of budget, so the source never holds (a hold
# that turns into a pause makes librdkafka fetch and inflate again, which time under
# valgrind would cause and a native run does not), and flushes of 22 MiB, about what the
# 512 MiB default cuts (`BURNRATE_BENCH_FLUSH_MIB`), never by time (a round under valgrind is
# fifty times slower than a native one). Counts leave out page faults and cache
# misses: what a change saves in memory traffic shows only in time.
set -euo pipefail

[ $# -ge 1 ] || { sed -n '2,20p' "$0"; exit 2; }
command -v valgrind >/dev/null || { echo "needs valgrind (apt-get install valgrind)" >&2; exit 1; }
: "${BURNRATE_TANSU:?set BURNRATE_TANSU to a Tansu binary (scripts/test.sh installs one)}"
cd "$(dirname "$0")/../crates/burnrate"
out=$(mktemp -d)

BURNRATE_BENCH_COPIES="${COPIES:-1000}" "$1" --bench >"$out/bench.log" 2>&1 &
bench=$!
trap 'kill -9 $(pgrep -P "$bench") "$bench" 2>/dev/null || true' EXIT
round=""
while [ -z "$round" ]; do
  kill -0 "$bench" 2>/dev/null || { cat "$out/bench.log" >&2; exit 1; }
  round=$(pgrep -P "$bench" -f -- "--round" | head -1 || true)
  sleep 0.1
done
kill -STOP "$bench"
mapfile -d '' -t args <"/proc/$round/cmdline"
kill -9 "$round"
broker=${args[3]} messages=${args[5]}
echo "stream: $messages messages on $broker; callgrind files in $out"

for pair in $(seq "${PAIRS:-2}"); do
  for binary in "$@"; do
    name="$(basename "$binary")-$pair"
    BURNRATE_BENCH_MEMORY_LIMIT_MIB=4096 BURNRATE_BENCH_FLUSH_MIB=22 \
      BURNRATE_BENCH_FLUSH_INTERVAL_MS=3600000 \
      valgrind --tool=callgrind --cache-sim=no --branch-sim=no \
      --callgrind-out-file="$out/callgrind.$name" \
      "$binary" --round "${ROUND:-logged}" "$broker" "instructions-$name-$RANDOM" "$messages" \
      >"$out/$name.log" 2>&1
    flushes=$(awk '/flush_seconds_count/ {print $3}' "$out/$name.log")
    holds=$(awk '/source_pauses_total/ {print $3}' "$out/$name.log")
    # By stage, each the inclusive count of its entry point (librdkafka's broker threads
    # inflate the fetched batches: how much they inflate twice moves with timing, so the
    # count without them is the one to compare).
    callgrind_annotate --inclusive=yes --threshold=100 "$out/callgrind.$name" 2>/dev/null |
      awk -v name="$name" -v messages="$messages" -v flushes="$flushes" -v holds="$holds" '
        function count(field) { gsub(",", "", field); return field + 0 }
        /PROGRAM TOTALS/ { total = count($1) }
        /rd_kafka_broker_thread_main \[/ && !broker { broker = count($1) }
        /decode::Job::run \[/ && !decode { decode = count($1) }
        /parquet_sink::write_atomically \[/ && !encode { encode = count($1) }
        /WindowStage::feed_many \[/ && !windows { windows = count($1) }
        END {
          printf "%-24s %6.3f G instructions, %6.3f G without librdkafka'"'"'s broker threads (%d a message): decode %.3f G, encode %.3f G, windows %.3f G, broker %.3f G; %s flushes, %s holds\n",
            name, total / 1e9, (total - broker) / 1e9, (total - broker) / messages,
            decode / 1e9, encode / 1e9, windows / 1e9, broker / 1e9, flushes, holds
        }'
  done
done
