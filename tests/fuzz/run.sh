#!/usr/bin/env bash
# The fuzz tier: builds the cargo-fuzz targets (nightly, AddressSanitizer, the fuzz
# crate's own target dir), makes the seed corpora (seeds.sh), runs every target for a
# fixed time on one core and fails on any crash, leak, timeout or out-of-memory.
#
#   tests/fuzz/run.sh [TARGET…]            every target (default) or the ones named
#   FUZZ_SECONDS=600 tests/fuzz/run.sh     a longer run (default 15 s per target)
#
# Installs the nightly toolchain and cargo-fuzz when they are missing. Crash inputs are
# kept in tests/fuzz/artifacts/<target>/; the corpora grow in tests/fuzz/corpus/.
set -euo pipefail
cd "$(dirname "$0")/../.."
secs="${FUZZ_SECONDS:-15}"
dir=tests/fuzz
export CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-2}"

if ! command -v rustup >/dev/null; then
    echo "tests/fuzz/run.sh: rustup is needed (for the nightly toolchain)" >&2
    exit 1
fi
if ! grep -q '^nightly' <<<"$(rustup toolchain list)"; then
    rustup toolchain install nightly --profile minimal
fi
if ! command -v cargo-fuzz >/dev/null; then
    cargo install cargo-fuzz --version 0.13.2 --locked
fi
command -v curl >/dev/null || {
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends curl >/dev/null
    fi
}

start=$SECONDS
cargo +nightly fuzz build --fuzz-dir "$dir"
echo "tests/fuzz/run.sh: built in $((SECONDS - start)) s"
"$dir/seeds.sh" "$dir/corpus"

if [ $# -gt 0 ]; then
    targets=("$@")
else
    mapfile -t targets < <(cargo +nightly fuzz list --fuzz-dir "$dir")
fi
bin_dir="$dir/target/$(rustc +nightly -vV | sed -n 's/^host: //p')/release"
passed=0
failed=0
TIMEFORMAT='%U %S'
for t in "${targets[@]}"; do
    mkdir -p "$dir/corpus/$t" "$dir/artifacts/$t"
    corpora=("$dir/corpus/$t")
    [ -d "$dir/seeds/$t" ] && corpora+=("$dir/seeds/$t")
    log="$dir/artifacts/$t/last-run.log"
    ok=1
    { time "$bin_dir/$t" -max_total_time="$secs" -rss_limit_mb=2048 -timeout=10 \
        -print_final_stats=1 -artifact_prefix="$dir/artifacts/$t/" "${corpora[@]}" \
        >"$log" 2>&1; } 2>"$dir/artifacts/$t/cpu" || ok=0
    read -r user sys <"$dir/artifacts/$t/cpu"
    execs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")"
    cov="$(sed -n 's/^#[0-9]*.*DONE *cov: \([0-9]*\).*/\1/p' "$log")"
    cpu="$(python3 -c 'import sys; print(f"{float(sys.argv[1]) + float(sys.argv[2]):.1f}")' "$user" "$sys")"
    if [ "$ok" = 1 ]; then
        passed=$((passed + 1))
        echo "fuzz $t: ok, ${execs:-?} executions, ${cpu} s CPU, coverage ${cov:-?}"
    else
        failed=$((failed + 1))
        echo "fuzz $t: FAILED after ${execs:-?} executions, ${cpu} s CPU; the end of its log:"
        tail -n 40 "$log"
    fi
done
echo "tests/fuzz/run.sh: $passed passed, $failed failed ($((SECONDS - start)) s)"
[ "$failed" = 0 ]
