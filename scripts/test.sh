#!/usr/bin/env bash
# Installs what the tests need and runs every check: formatting, clippy, unit, golden and
# end-to-end tests (benches run once each as smoke tests). The README's test command and
# .ci/run both call this script.
set -euo pipefail
cd "$(dirname "$0")/.."

# The real Claude Code captures live beside the repository, in ../shared/otlp-samples.
export BURNRATE_SAMPLES="${BURNRATE_SAMPLES:-$(cd .. && pwd)/shared/otlp-samples}"
if [ ! -d "$BURNRATE_SAMPLES" ]; then
    echo "test.sh: no samples at $BURNRATE_SAMPLES (set BURNRATE_SAMPLES)" >&2
    exit 1
fi

# Needed to build: a C compiler for zstd and friends (present on the rust machine image).
if ! command -v cc >/dev/null 2>&1; then
    apt-get update -qq && apt-get install -y -qq build-essential
fi

cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --all-targets --locked
