#!/usr/bin/env bash
# A bounded run of every cargo-fuzz target (fuzz/): FUZZ_SECONDS each (default 30), seeded from
# the real Claude Code samples of both releases and fuzz/seeds/, plus every input in
# fuzz/regressions/ (inputs that once crashed: they must stay fixed). Prints the executions per
# target. A crash fails the run and leaves its input in fuzz/artifacts/.
# cargo-fuzz needs nightly flags; RUSTC_BOOTSTRAP lets this machine's stable toolchain take them.
#
# No sanitizer (`-s none`): the fuzzed crates (burnrate-otlp, burnrate-pricing) have no
# `unsafe` but one `from_utf8_unchecked` on bytes just checked to be ASCII (`wire.rs`), so what a
# fuzzer finds in them is a panic (cargo-fuzz builds with debug assertions and overflow checks),
# a hang or runaway memory, which libFuzzer catches without AddressSanitizer. Without it
# (2026-12-01, 2 vCPU): decode_proto ran 495,408 inputs in 30 s, where it ran 269,199 in 60 s
# with it; the fuzz crate's cold build took 5.1 minutes, not 7.5.
# Set FUZZ_SANITIZER=address to fuzz with it.
#
# `fuzz.sh --build-only` installs cargo-fuzz and builds the targets, and runs nothing: test.sh
# builds them behind the bench smoke runs and the Kafka tests.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${FUZZ_SECONDS:-30}"
sanitizer="${FUZZ_SANITIZER:-none}"
samples=("${BURNRATE_SAMPLES:-../shared/otlp-samples}" "${BURNRATE_SAMPLES_2_1_332:-../shared/otlp-samples-2.1.332}")
command -v cargo-fuzz >/dev/null 2>&1 || cargo install --locked cargo-fuzz@0.13.2
export RUSTC_BOOTSTRAP=1
if [ "${1:-}" = "--build-only" ]; then
    exec cargo fuzz build --fuzz-dir fuzz -s "$sanitizer"
fi

corpus="$(mktemp -d)"
trap 'rm -rf "$corpus"' EXIT
for target in decode_proto decode_json sniff_payload receiver_request; do
    mkdir -p "$corpus/$target"
done
# The first byte picks the signal (0 logs, 1 metrics, 2 traces); receiver_request inputs are
# path byte, Content-Type, Content-Encoding, Authorization and body, NUL-separated.
n=0
for dir in "${samples[@]}"; do
    for file in "$dir"/*/*.pb; do
        n=$((n + 1))
        case "$file" in
            *logs.pb) signal='\x00' ;;
            *metrics.pb) signal='\x01' ;;
            *) signal='\x02' ;;
        esac
        { printf "$signal"; cat "$file"; } >"$corpus/decode_proto/$n"
        cp "$file" "$corpus/sniff_payload/$n"
        { printf "$signal"; printf 'application/x-protobuf\x00gzip\x00Bearer tok-0123456789abcdef\x00'; gzip -c "$file"; } >"$corpus/receiver_request/$n"
    done
done
# The OTLP/JSON reader is seeded with the real JSON exports too, so it mutates what Claude Code
# sends, not only the hand-written seeds.
for dir in "${samples[@]}"; do
    for file in "$dir"/*/*.json; do
        [ -e "$file" ] || continue
        n=$((n + 1))
        case "$file" in
            *logs.json) signal='\x00' ;;
            *metrics.json) signal='\x01' ;;
            *) signal='\x02' ;;
        esac
        { printf "$signal"; cat "$file"; } >"$corpus/decode_json/$n"
    done
done
for file in fuzz/seeds/*.json; do
    n=$((n + 1))
    case "$file" in
        *metrics.json) signal='\x01' ;;
        *spans.json) signal='\x02' ;;
        *) signal='\x00' ;;
    esac
    { printf "$signal"; cat "$file"; } >"$corpus/decode_json/$n"
    cp "$file" "$corpus/sniff_payload/$n"
    gzip -c "$file" >"$corpus/sniff_payload/$n.gz"
    { printf "$signal"; printf 'application/json\x00\x00\x00'; cat "$file"; } >"$corpus/receiver_request/$n"
done

cargo fuzz build --fuzz-dir fuzz -s "$sanitizer"
fuzz_target() {
    local target="$1" log="$corpus/$1.log"
    if ! cargo fuzz run --fuzz-dir fuzz -s "$sanitizer" "$target" "$corpus/$target" "fuzz/regressions/$target" -- \
        -max_total_time="$seconds" -max_len=1048576 -rss_limit_mb=2048 -print_final_stats=1 >"$log" 2>&1; then
        # The panic's own lines first: a disagreement's debug dump can be longer than any tail.
        grep -m1 -A1 'panicked at' "$log" | cut -c1-400 >&2 || true
        grep -m1 '^ *right: ' "$log" | cut -c1-400 >&2 || true
        tail -n 30 "$log" | cut -c1-400 >&2
        echo "fuzz.sh: $target crashed; the input is in fuzz/artifacts/$target/ (fix it, then move it to fuzz/regressions/$target/)" >&2
        # A CI machine's artifacts are gone with it: a small input is printed to be copied back.
        for input in fuzz/artifacts/"$target"/*; do
            [ -f "$input" ] && [ "$(wc -c <"$input")" -le 8192 ] || continue
            echo "fuzz.sh: $input as base64 (base64 -d > fuzz/regressions/$target/NAME):" >&2
            base64 -w 0 "$input" >&2
            echo >&2
        done
        return 1
    fi
    executions=$(grep -m1 '^stat::number_of_executed_units' "$log" | awk '{print $2}')
    echo "fuzz.sh: $target ran clean for ${seconds}s: ${executions:-?} executions"
}
# One target per core at a time: each libFuzzer run is one process on one core, so on two cores
# the four runs take two rounds of FUZZ_SECONDS, not four, with as many executions each.
parallel="$(nproc)"
running=()
failed=0
for target in decode_proto decode_json sniff_payload receiver_request; do
    fuzz_target "$target" &
    running+=($!)
    if [ "${#running[@]}" -ge "$parallel" ]; then
        wait "${running[0]}" || failed=1
        running=("${running[@]:1}")
    fi
done
for pid in "${running[@]}"; do
    wait "$pid" || failed=1
done
exit "$failed"
