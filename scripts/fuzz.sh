#!/usr/bin/env bash
# Runs the cargo-fuzz targets in fuzz/ one after another (one libFuzzer
# process at a time), each for a set time, and prints executions, exec/s and
# findings per target. Not part of CI.
#
#   scripts/fuzz.sh                         every target, 60 s each
#   scripts/fuzz.sh -t 300 dns_request      one target for 5 minutes
#   FUZZ_SECONDS=120 scripts/fuzz.sh        every target, 120 s each
#   FUZZ_ARGS="-fork=1 -ignore_crashes=1" scripts/fuzz.sh store_recovery
#                                           go on after a crash (one child at a
#                                           time), counting every crash
#
# Needs the nightly toolchain and cargo-fuzz:
#   rustup toolchain install nightly && cargo install cargo-fuzz --locked
#
# Corpora grow in fuzz/corpus/<target> (git-ignored); the committed seeds in
# fuzz/seeds/<target> are read but never written. Crashes, timeouts and
# out-of-memory inputs land in fuzz/artifacts/<target>/; reproduce one with
#   (cd fuzz && cargo +nightly fuzz run <target> artifacts/<target>/<file>)
# Exits 1 when a target produced a finding, 2 on a usage or build error.
set -euo pipefail

ALL_TARGETS=(dns_request api_body docker_mapping store_recovery)
seconds="${FUZZ_SECONDS:-60}"

usage() {
    echo "usage: $0 [-t SECONDS] [TARGET...]   (targets: ${ALL_TARGETS[*]})" >&2
    exit 2
}

while getopts "t:h" opt; do
    case "$opt" in
        t) seconds="$OPTARG" ;;
        *) usage ;;
    esac
done
shift $((OPTIND - 1))
[[ "$seconds" =~ ^[1-9][0-9]*$ ]] || usage
targets=("$@")
[[ ${#targets[@]} -gt 0 ]] || targets=("${ALL_TARGETS[@]}")
for t in "${targets[@]}"; do
    [[ " ${ALL_TARGETS[*]} " == *" $t "* ]] || {
        echo "unknown target: $t" >&2
        usage
    }
done

cd "$(dirname "$0")/../fuzz"
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    echo "cargo-fuzz on nightly is missing: rustup toolchain install nightly && cargo install cargo-fuzz --locked" >&2
    exit 2
fi

child=""
# Each fuzz run is its own process group (setsid), so stopping it reaches
# cargo-fuzz and the fuzzer it started.
# shellcheck disable=SC2317  # invoked by the trap
cleanup() {
    if [[ -n "$child" ]] && kill -0 "$child" 2>/dev/null; then
        kill -TERM -- "-$child" 2>/dev/null || true
        wait "$child" 2>/dev/null || true
    fi
    # store_recovery's scratch directories (left behind when a run aborts).
    rm -rf /dev/shm/skydns-fuzz-* "${TMPDIR:-/tmp}"/skydns-fuzz-*
}
trap cleanup EXIT INT TERM

echo "building ${targets[*]} (nightly, address sanitizer)..."
# A cold build takes several minutes on 2 cores; bounded all the same.
mkdir -p target
build_args=()
[[ ${#targets[@]} -eq 1 ]] && build_args=("${targets[0]}")
if ! timeout 3600 cargo +nightly fuzz build "${build_args[@]}" >target/fuzz-build.log 2>&1; then
    tail -30 target/fuzz-build.log >&2
    exit 2
fi

read -r -a extra <<<"${FUZZ_ARGS:-}"
status=0
summary=()
for t in "${targets[@]}"; do
    mkdir -p "corpus/$t" "artifacts/$t"
    before=$(find "artifacts/$t" -type f | sort)
    log="artifacts/$t.log"
    echo "== $t: ${seconds}s"
    # -max_total_time stops libFuzzer; timeout is the backstop (startup,
    # a final slow input).
    setsid timeout --kill-after=10 $((seconds + 60)) \
        cargo +nightly fuzz run "$t" "corpus/$t" "seeds/$t" -- \
        -max_total_time="$seconds" -print_final_stats=1 -timeout=10 \
        -rss_limit_mb=2048 "${extra[@]}" >"$log" 2>&1 &
    child=$!
    wait "$child" || true
    child=""
    rm -rf /dev/shm/skydns-fuzz-* "${TMPDIR:-/tmp}"/skydns-fuzz-*
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1 || true)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1 || true)
    rss=$(sed -n 's/^stat::peak_rss_mb: *//p' "$log" | tail -1 || true)
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | cut -d' ' -f2 || true)
    if [[ -z "$execs" ]]; then
        # -fork mode: progress lines "#N: cov: .. exec/s: R .. crash: C".
        execs=$(grep -oE '^#[0-9]+: cov' "$log" | tail -1 | tr -dc '0-9' || true)
        rate=$(grep -oE 'exec/s: [0-9]+' "$log" | tail -1 | tr -dc '0-9' || true)
        rss=$(grep -oE 'rss: [0-9]+' "$log" | tail -1 | tr -dc '0-9' || true)
    fi
    corpus=$(find "corpus/$t" -type f | wc -l)
    new=$(comm -13 <(echo "$before") <(find "artifacts/$t" -type f | sort) | sed '/^$/d')
    findings=$(echo -n "$new" | grep -c . || true)
    if [[ -z "$execs" ]]; then
        findings=$((findings > 0 ? findings : 1))
        echo "   no final stats; last lines of $log:"
        tail -20 "$log" | sed 's/^/   /'
    fi
    [[ $findings -eq 0 ]] || status=1
    line=$(printf '%-15s %10s execs %7s exec/s  cov %6s  corpus %5s  peak %5s MB  findings %s' \
        "$t" "${execs:-?}" "${rate:-?}" "${cov:-?}" "$corpus" "${rss:-?}" "$findings")
    echo "   $line"
    summary+=("$line")
    [[ -z "$new" ]] || echo "$new" | sed 's/^/   finding: fuzz\//'
done

echo
echo "== summary (${seconds}s per target)"
printf '%s\n' "${summary[@]}"
exit "$status"
