#!/usr/bin/env bash
# scripts/bench-poll.sh: busy against adaptive polling (`lcore.poll`) side by side: what the
# first submission after an idle spell pays, and what an idle lcore costs the host.
#
#   sudo scripts/bench-poll.sh
#
# Starts `swqos-dataplane` on net_null0 (dpdk-config/profiles/dev.toml with its own file prefix
# and segment) once per entry of POLL_MODES (default "busy adaptive adaptive:1000": busy polling,
# the profile's adaptive polling, and adaptive polling with max_sleep_us = 1000), and runs
# `swqos-bench wakeup` against each: one submission every
# POLL_GAP_MS (default 50) ms, POLL_COUNT (default 200) of them, submit-to-tx_burst p50/p99/max;
# then POLL_IDLE_SECS (default 5) s with nothing submitted: the lcore thread's CPU
# (utime+stime from /proc) and its busy share from its own counters. Prints one table.
# Logs in BENCH_LOG_DIR (default $CARGO_TARGET_DIR/bench-poll). Hugepages if free, else --no-huge.

set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
BIN=$CARGO_TARGET_DIR/release
GAP=${POLL_GAP_MS:-50}
COUNT=${POLL_COUNT:-200}
IDLE=${POLL_IDLE_SECS:-5}
read -r -a MODES <<<"${POLL_MODES:-busy adaptive adaptive:1000}"
LOGS=${BENCH_LOG_DIR:-$CARGO_TARGET_DIR/bench-poll}
SHM=/dev/shm/swqos-bench-poll/segment

die() {
    printf 'bench-poll.sh: FAILED: %s\n' "$*" >&2
    exit 1
}

DP_PID=
cleanup() {
    local rc=$?
    if [ -n "$DP_PID" ] && kill -0 "$DP_PID" 2>/dev/null; then
        kill -INT "$DP_PID" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$DP_PID" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$DP_PID" 2>/dev/null || true
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

[ "$(id -u)" -eq 0 ] || die "run as root (DPDK's EAL)"
mkdir -p "$LOGS"

echo "== building release binaries"
cargo build --release --quiet -p swqos-dataplane -p swqos-bench || die "cargo build failed"

# The dev profile (adaptive) with a prefix and segment of its own; for busy, without its poll
# keys; for adaptive:N, with max_sleep_us = N.
make_config() {
    local mode=$1 out=$LOGS/poll-$1.toml
    sed -e 's|^file_prefix = .*|file_prefix = "swqos-bench-poll"|' \
        -e "s|^path = .*|path = \"$SHM\"|" dpdk-config/profiles/dev.toml >"$out"
    case $mode in
        busy) sed -i -e '/^poll = /d' -e '/^idle_polls = /d' -e '/^max_sleep_us = /d' "$out" ;;
        adaptive) ;;
        adaptive:*) sed -i -e "s|^max_sleep_us = .*|max_sleep_us = ${mode#adaptive:}|" "$out" ;;
        *) die "unknown mode $mode in POLL_MODES (busy, adaptive, adaptive:MAX_SLEEP_US)" ;;
    esac
    grep -q '^poll = "adaptive"' "$out" && [ "$mode" = busy ] && die "busy config still adaptive"
    echo "$out"
}

run_mode() {
    local mode=$1 config log
    config=$(make_config "$mode")
    log=$LOGS/dataplane-$mode.log
    echo "== $mode: swqos-dataplane ($config)"
    "$BIN/swqos-dataplane" --config "$config" --stats-interval 0 </dev/null >"$log" 2>&1 &
    DP_PID=$!
    for _ in $(seq 300); do
        kill -0 "$DP_PID" 2>/dev/null || { cat "$log" >&2; die "swqos-dataplane exited at startup"; }
        [ -e "$SHM" ] && grep -q 'running:' "$log" && break
        sleep 0.1
    done
    grep -q 'running:' "$log" || die "swqos-dataplane did not start (log $log)"
    "$BIN/swqos-bench" wakeup --config "$config" --count "$COUNT" --gap-ms "$GAP" \
        --idle-secs "$IDLE" | tee "$LOGS/wakeup-$mode.txt" || die "swqos-bench wakeup ($mode) failed"
    kill -INT "$DP_PID"
    wait "$DP_PID" || die "swqos-dataplane ($mode) exited with status $? (log $log)"
    DP_PID=
}

for mode in "${MODES[@]}"; do
    run_mode "$mode"
done

echo
echo "== summary ($(nproc) cpus, $(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo))"
echo "one submission every $GAP ms on net_null0 ($COUNT of them); idle lcore over $IDLE s"
printf '%-14s %12s %12s %12s %14s %14s\n' "poll" "p50 us" "p99 us" "max us" "idle cpu %" "busy share %"
for mode in "${MODES[@]}"; do
    f=$LOGS/wakeup-$mode.txt
    lat=$(grep -E "^wakeup poll=" "$f")
    idl=$(grep -E "^idle poll=" "$f")
    val() { sed -E "s/.* $1 ([0-9.]+) us.*/\\1/" <<<"$lat"; }
    cpu=$(sed -E 's/.*: cpu ([0-9.]+|-)%?.*/\1/' <<<"$idl")
    busy=$(sed -E 's/.*busy share ([0-9.]+)%.*/\1/' <<<"$idl")
    sleep_us=$(sed -nE 's/^max_sleep_us = ([0-9]+).*/\1/p' "$LOGS/poll-$mode.toml")
    label=$mode
    [ "$mode" = busy ] || label="adaptive ${sleep_us}us"
    printf '%-14s %12s %12s %12s %14s %14s\n' "$label" "$(val p50)" "$(val p99)" "$(val max)" "$cpu" "$busy"
done
echo
echo "adaptive: idle_polls $(sed -nE 's/^idle_polls = ([0-9]+).*/\1/p' dpdk-config/profiles/dev.toml); busy share = time not asleep (the lcore's sleep_ns); idle cpu = the lcore thread's utime+stime"
echo "logs: $LOGS"
