#!/usr/bin/env bash
# scripts/bench.sh: the data-plane benchmarks of DESIGN.md section 9, side by side in one run.
#
#   sudo scripts/bench.sh
#
# 1. builds the release binaries;
# 2. makes sure hugepages are reserved and mounted (or says it will run without them);
# 3. runs `dpdk-testpmd --forward-mode=txonly` on net_null0 with 64-byte frames: DPDK's own
#    per-lcore "line rate" on this machine;
# 4. starts `swqos-dataplane` with dpdk-config/profiles/bench.toml (net_null0, 8 UDP lanes), runs
#    `swqos bench throughput` (8 lanes, then 1 lane) and `swqos bench tx-latency`, stops it;
# 5. runs testpmd again with frames as large as the dataplane's average lane frame;
# 6. prints one table: testpmd pps, our lane pkt/s per tx lcore, the ratios, the latencies.
#
# Environment: BENCH_SECONDS (throughput window, default 5), BENCH_COUNT (latency samples per
# lane count, default 20000), BENCH_LOG_DIR (logs, default $CARGO_TARGET_DIR/bench).
# Idempotent; exits non-zero if any step fails; background processes are stopped on exit.

set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
BIN=$CARGO_TARGET_DIR/release
PROFILE=$ROOT/dpdk-config/profiles/bench.toml
SHM=/dev/shm/swqos-bench/segment   # [shm] path in the profile (its directory is private)
TP_PREFIX=swqos-bench-testpmd   # distinct from the profile's file_prefix
WINDOW=${BENCH_SECONDS:-5}
COUNT=${BENCH_COUNT:-20000}
LOGS=${BENCH_LOG_DIR:-$CARGO_TARGET_DIR/bench}
HUGE_MB_WANTED=256              # dataplane 128 MiB, testpmd 128 MiB (never at the same time)

say() { printf '\n== %s\n' "$*"; }
die() {
    printf 'bench.sh: FAILED: %s\n' "$*" >&2
    exit 1
}

# Background processes we started, stopped by the trap: SIGINT first (so DPDK tears down and
# removes its runtime files), SIGKILL if they do not exit within 5 s.
BG_PIDS=()
cleanup() {
    local rc=$?
    for pid in "${BG_PIDS[@]}"; do
        if kill -0 "$pid" 2>/dev/null; then
            kill -INT "$pid" 2>/dev/null || true
            for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
            kill -KILL "$pid" 2>/dev/null || true
        fi
    done
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Sends SIGINT to $1 and waits for it; dies unless it exits 0 within $2 seconds.
stop_and_wait() {
    local pid=$1 what=$2 limit=${3:-10} rc=0
    kill -INT "$pid" 2>/dev/null || die "$what exited before it was stopped (see its log)"
    for _ in $(seq $((limit * 10))); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && die "$what did not stop within ${limit}s of SIGINT"
    wait "$pid" || rc=$?
    [ "$rc" -eq 0 ] || die "$what exited with status $rc"
}

[ "$(id -u)" -eq 0 ] || die "run as root (DPDK needs hugepages and /var/run/dpdk)"
command -v dpdk-testpmd >/dev/null || die "dpdk-testpmd not found (apt-get install dpdk)"
mkdir -p "$LOGS"

# ---------------------------------------------------------------------------------------------
say "building release binaries"
cargo build --release --workspace --quiet || die "cargo build failed"
cargo build --release -p swqos-dataplane --example fast_send --quiet || die "cargo build failed"
[ -x "$BIN/swqos-dataplane" ] && [ -x "$BIN/swqos" ] || die "binaries missing in $BIN"

# ---------------------------------------------------------------------------------------------
say "hugepages"
HP_DIR=/sys/kernel/mm/hugepages/hugepages-2048kB
if [ -d "$HP_DIR" ]; then
    free_pages=$(cat "$HP_DIR/free_hugepages")
    total_pages=$(cat "$HP_DIR/nr_hugepages")
    want_pages=$((HUGE_MB_WANTED / 2))
    if [ "$free_pages" -lt "$want_pages" ]; then
        target=$((total_pages + want_pages - free_pages))
        if echo "$target" >/proc/sys/vm/nr_hugepages 2>/dev/null; then
            echo "raised nr_hugepages from $total_pages to $(cat "$HP_DIR/nr_hugepages") (asked $target)"
        else
            echo "could not raise nr_hugepages (kept $total_pages)"
        fi
    else
        echo "$free_pages of $total_pages 2 MiB pages free: enough, nothing reserved"
    fi
    free_pages=$(cat "$HP_DIR/free_hugepages")
else
    echo "no 2 MiB hugepage support in this kernel"
    free_pages=0
fi
if ! mountpoint -q /dev/hugepages; then
    mkdir -p /dev/hugepages
    if mount -t hugetlbfs nodev /dev/hugepages; then
        echo "mounted hugetlbfs on /dev/hugepages"
    else
        echo "could not mount hugetlbfs on /dev/hugepages"
        free_pages=0
    fi
fi
if [ "$free_pages" -ge 64 ]; then
    HUGE=yes
    TP_MEM=(-m 128)
    echo "using hugepages: $free_pages x 2 MiB free on /dev/hugepages"
else
    HUGE=no
    TP_MEM=(--no-huge -m 512)
    echo "WARNING: only $free_pages hugepages free: testpmd runs with --no-huge and the dataplane" \
        "falls back to --no-huge (hugepages = \"auto\"): expect lower rates"
fi

# ---------------------------------------------------------------------------------------------
# On-CPU nanoseconds of the thread of process $1 named like $2 (its schedstat's first field).
thread_oncpu_ns() {
    local tid
    tid=$(ps -L -o tid=,comm= -p "$1" | awk -v n="$2" '$2 ~ n { print $1; exit }')
    [ -n "$tid" ] && awk '{ print $1 }' "/proc/$1/task/$tid/schedstat" 2>/dev/null
}

# testpmd txonly on net_null0 for ~WINDOW seconds; sets TP_PPS to the mean Tx-pps of the full
# 1-second stats periods (the first period, partly spent starting up, is left out), and
# TP_ONCPU_PPS to all its packets per second its forwarding lcore's thread was on a CPU (read
# just before it is stopped; the thread blocks until forwarding starts).
run_testpmd() {
    local len=$1 log=$LOGS/testpmd-$1.log pid pps oncpu
    dpdk-testpmd -l 0-1 --no-pci --vdev net_null0 --file-prefix "$TP_PREFIX" "${TP_MEM[@]}" \
        --log-level=notice -- \
        --forward-mode=txonly --txpkts="$len" --nb-cores=1 --total-num-mbufs=8192 \
        --stats-period 1 --tx-first </dev/null >"$log" 2>&1 &
    pid=$!
    BG_PIDS+=("$pid")
    sleep $((WINDOW + 2))
    oncpu=$(thread_oncpu_ns "$pid" 'worker') || oncpu=
    stop_and_wait "$pid" "dpdk-testpmd (--txpkts=$len, log $log)" 10
    pps=$(awk '/Tx-pps:/ { v = $2 + 0; if (v > 0) { n++; if (n > 1) { s += v; m++ } } }
               END { if (m > 0) printf "%.0f", s / m }' "$log")
    [ -n "$pps" ] || die "no Tx-pps in testpmd output ($log)"
    TP_PPS=$pps
    TP_ONCPU_PPS=$(awk -v ns="$oncpu" '/Accumulated forward statistics/ { acc = 1 }
        acc && /TX-packets:/ { if (ns > 0) printf "%.0f", $2 / (ns / 1e9); exit }' "$log")
    [ -n "$TP_ONCPU_PPS" ] || TP_ONCPU_PPS=0
}

say "dpdk-testpmd txonly, 64-byte frames, ${WINDOW}s"
run_testpmd 64
TP64=$TP_PPS
TP64_CPU=$TP_ONCPU_PPS
echo "testpmd txonly 64 B: $TP64 pkt/s on one forwarding lcore, $TP64_CPU per on-cpu second" \
    "(log $LOGS/testpmd-64.log)"

# ---------------------------------------------------------------------------------------------
say "swqos-dataplane with $PROFILE"
DP_LOG=$LOGS/dataplane.log
"$BIN/swqos-dataplane" --config "$PROFILE" --stats-interval 0 </dev/null >"$DP_LOG" 2>&1 &
DP_PID=$!
BG_PIDS+=("$DP_PID")
ready=no
for _ in $(seq 300); do
    kill -0 "$DP_PID" 2>/dev/null || { cat "$DP_LOG" >&2; die "swqos-dataplane exited at startup"; }
    if [ -e "$SHM" ] && grep -q 'running:' "$DP_LOG"; then
        ready=yes
        break
    fi
    sleep 0.1
done
[ "$ready" = yes ] || die "swqos-dataplane did not create $SHM within 30 s (log $DP_LOG)"
sleep 0.2
if grep -q -- '--no-huge' "$DP_LOG"; then
    DP_HUGE="no (fell back to --no-huge)"
else
    DP_HUGE=yes
fi
echo "dataplane running (pid $DP_PID, hugepages: $DP_HUGE, log $DP_LOG)"

say "swqos bench throughput, 8 lanes, ${WINDOW}s"
"$BIN/swqos" bench throughput --config "$PROFILE" --seconds "$WINDOW" |
    tee "$LOGS/throughput-8.txt" || die "swqos bench throughput (8 lanes) failed"
say "swqos bench throughput, 1 lane, ${WINDOW}s"
"$BIN/swqos" bench throughput --config "$PROFILE" --seconds "$WINDOW" --lanes 1 |
    tee "$LOGS/throughput-1.txt" || die "swqos bench throughput (1 lane) failed"
say "swqos bench tx-latency, lanes 1,4,8, $COUNT submissions each"
"$BIN/swqos" bench tx-latency --config "$PROFILE" --count "$COUNT" --lanes 1,4,8 |
    tee "$LOGS/latency.txt" || die "swqos bench tx-latency failed"

say "stopping swqos-dataplane"
stop_and_wait "$DP_PID" "swqos-dataplane (log $DP_LOG)" 15
sed -n '/^submissions /,$p' "$DP_LOG"

# "lcore 1 (tx): 4532485 lane pkt/s, 20.25 Gbit/s, avg frame 558.6 B, ..."
tx_lines() { grep -E '^lcore [0-9]+ \(tx\):' "$1" || die "no tx lcore line in $1"; }
FRAME=$(tx_lines "$LOGS/throughput-8.txt" | head -1 | sed -E 's/.*avg frame ([0-9.]+) B.*/\1/')
FRAME=$(printf '%.0f' "$FRAME")
[ "$FRAME" -ge 60 ] || die "could not read the average frame size"

# ---------------------------------------------------------------------------------------------
say "delegated sends on a synthetic armed relay connection (examples/fast_send), ${WINDOW}s per mode"
"$BIN/examples/fast_send" "$WINDOW" </dev/null 2>&1 | tee "$LOGS/fast-send.txt" ||
    die "examples/fast_send failed"
grep -q '^fast_send tls:' "$LOGS/fast-send.txt" || die "no fast_send figures ($LOGS/fast-send.txt)"

# ---------------------------------------------------------------------------------------------
say "dpdk-testpmd txonly, ${FRAME}-byte frames (our average lane frame), ${WINDOW}s"
run_testpmd "$FRAME"
TPM=$TP_PPS
TPM_CPU=$TP_ONCPU_PPS
echo "testpmd txonly $FRAME B: $TPM pkt/s on one forwarding lcore, $TPM_CPU per on-cpu second" \
    "(log $LOGS/testpmd-$FRAME.log)"

# ---------------------------------------------------------------------------------------------
say "summary ($(nproc) cpus, $(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo), hugepages: $HUGE)"
gbps() { awk -v p="$1" -v b="$2" 'BEGIN { printf "%.2f", p * b * 8 / 1e9 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.3f", a / b; else print "-" }'; }
printf '%-44s %14s %10s %12s %12s\n' "sender (net_null0, one tx lcore)" "pkt/s" "Gbit/s" "vs tp 64B" "vs tp ${FRAME}B"
printf '%-44s %14s %10s %12s %12s\n' "testpmd txonly 64 B" "$TP64" "$(gbps "$TP64" 64)" "1.000" "-"
printf '%-44s %14s %10s %12s %12s\n' "testpmd txonly $FRAME B" "$TPM" "$(gbps "$TPM" "$FRAME")" "$(ratio "$TPM" "$TP64")" "1.000"
for lanes in 8 1; do
    while read -r line; do
        lcore=$(sed -E 's/^lcore ([0-9]+) .*/\1/' <<<"$line")
        pps=$(sed -E 's/^[^:]*: ([0-9]+) lane pkt\/s.*/\1/' <<<"$line")
        g=$(sed -E 's/.* lane pkt\/s, ([0-9.]+) Gbit\/s.*/\1/' <<<"$line")
        subs=$(grep -E '^client: [0-9]+ submissions' "$LOGS/throughput-$lanes.txt" |
            sed -E 's/^client: ([0-9]+) .*/\1/')
        printf '%-44s %14s %10s %12s %12s\n' \
            "swqos lcore $lcore, $lanes lane(s) ($subs subm/s)" "$pps" "$g" \
            "$(ratio "$pps" "$TP64")" "$(ratio "$pps" "$TPM")"
    done < <(tx_lines "$LOGS/throughput-$lanes.txt")
done
echo
# The same, per second its thread was on a CPU (the host is shared: wall-clock rates fall
# with the share of the core a busy-polling thread gets, these do not).
printf '%-44s %14s %10s %12s %12s\n' "per on-cpu second of the lcore's thread" "pkt/s" "ns/pkt" \
    "vs tp 64B" "vs tp ${FRAME}B"
nspp() { awk -v p="$1" 'BEGIN { if (p > 0) printf "%.1f", 1e9 / p; else print "-" }'; }
printf '%-44s %14s %10s %12s %12s\n' "testpmd txonly 64 B" "$TP64_CPU" "$(nspp "$TP64_CPU")" "1.000" "-"
printf '%-44s %14s %10s %12s %12s\n' "testpmd txonly $FRAME B" "$TPM_CPU" "$(nspp "$TPM_CPU")" \
    "$(ratio "$TPM_CPU" "$TP64_CPU")" "1.000"
for lanes in 8 1; do
    grep -E '^lcore [0-9]+ \(tx\) on-cpu: [0-9.]+ s' "$LOGS/throughput-$lanes.txt" | while read -r line; do
        lcore=$(sed -E 's/^lcore ([0-9]+) .*/\1/' <<<"$line")
        pps=$(sed -E 's/.*, ([0-9]+) lane pkt per on-cpu second.*/\1/' <<<"$line")
        share=$(sed -E 's/.* \(([0-9]+)%, thread.*/\1/' <<<"$line")
        printf '%-44s %14s %10s %12s %12s\n' "swqos lcore $lcore, $lanes lane(s) (on cpu ${share}%)" \
            "$pps" "$(nspp "$pps")" "$(ratio "$pps" "$TP64_CPU")" "$(ratio "$pps" "$TPM_CPU")"
        # Less its empty polls (waiting for the client), at an empty poll's cost at rest.
        fed=$(grep -E "^lcore $lcore \(tx\) fed:" "$LOGS/throughput-$lanes.txt" |
            sed -E 's/.* ([0-9]+) lane pkt per working second.*/\1/')
        [ -n "$fed" ] && printf '%-44s %14s %10s %12s %12s\n' \
            "  the same, working polls only (fed)" "$fed" "$(nspp "$fed")" \
            "$(ratio "$fed" "$TP64_CPU")" "$(ratio "$fed" "$TPM_CPU")"
    done
done
printf '%-44s %14s %10s %12s\n' "delegated HTTP requests (Jito), one lcore" "req/s" "ns/req" "req/on-cpu s"
for mode in plain tls; do
    line=$(grep -E "^fast_send $mode:" "$LOGS/fast-send.txt")
    rps=$(sed -E 's/.*: ([0-9]+) req\/s,.*/\1/' <<<"$line")
    cpu=$(sed -E 's/.* ([0-9]+) req per on-cpu second.*/\1/' <<<"$line")
    printf '%-44s %14s %10s %12s\n' "synthetic armed session, $mode" "$rps" "$(nspp "$cpu")" "$cpu"
done
echo
printf '%-34s %10s %10s %10s %10s\n' "submit-to-tx_burst latency (us)" "p50" "p99" "p99.9" "max"
grep -E '^latency lanes=' "$LOGS/latency.txt" | while read -r line; do
    k=$(sed -E 's/^latency lanes=([0-9]+):.*/\1/' <<<"$line")
    val() { sed -E "s/.* $1 ([0-9.]+) us.*/\\1/" <<<"$line"; }
    printf '%-34s %10s %10s %10s %10s\n' "$k lane(s), one in flight" "$(val p50)" "$(val p99)" \
        "$(val p99.9)" "$(val max)"
done
echo
echo "logs: $LOGS"
