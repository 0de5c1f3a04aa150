#!/usr/bin/env bash
# The main job on the built-in default topology: the dataplane on a net_pcap port sends the
# sample transactions to two UDP lanes; the capture DPDK wrote is then read back with tshark.
#
#   scripts/run.sh [PROFILE] [TRANSACTIONS]
#     PROFILE       default dpdk-config/profiles/pcap.toml (writes /tmp/swqos/tx.pcap)
#     TRANSACTIONS  default wire/tests/data/solana-txs.jsonl (valid and deliberately invalid)
set -euo pipefail
cd "$(dirname "$0")/.."
profile=${1:-dpdk-config/profiles/pcap.toml}
txs=${2:-wire/tests/data/solana-txs.jsonl}
scripts/setup.sh
[ -x "$HOME/.cargo/bin/cargo" ] && export PATH="$HOME/.cargo/bin:$PATH"

echo "==> building (release)" >&2
cargo build --release --locked --bins -q
bin=target/release

log=$(mktemp /tmp/swqos-dataplane.XXXXXX.log)
report=$(mktemp /tmp/swqos-report.XXXXXX.txt)
"$bin/swqos-dataplane" --config "$profile" --stats-interval 0 >"$report" 2>"$log" &
dp=$!
trap 'kill -INT $dp 2>/dev/null || true; wait $dp 2>/dev/null || true' EXIT

shm=$(awk -F'"' '/^path *=/ {print $2; exit}' "$profile")
for _ in $(seq 1 300); do
    [ -e "$shm" ] && grep -q "running:" "$log" && break
    kill -0 $dp 2>/dev/null || { cat "$log" >&2; echo "error: dataplane failed to start" >&2; exit 1; }
    sleep 0.1
done
grep -E "WARN|port |lane |running" "$log" | sed 's/^/dataplane: /' >&2

echo "==> swqos submit --config $profile $txs" >&2
set +e
"$bin/swqos" submit --config "$profile" "$txs"
submit_status=$?
set -e

kill -INT $dp
wait $dp
trap - EXIT
echo "==> dataplane report" >&2
cat "$report"

pcap=$(grep -o 'tx_pcap=[^",]*' "$profile" | head -n1 | cut -d= -f2)
if [ -n "$pcap" ] && [ -e "$pcap" ]; then
    echo "==> $pcap as tshark reads it (frames per destination, checksum status 1 = good)" >&2
    tshark -r "$pcap" -o ip.check_checksum:TRUE -o udp.check_checksum:TRUE \
        -T fields -e ip.dst -e udp.dstport -e ip.checksum.status -e udp.checksum.status 2>/dev/null |
        sort | uniq -c | awk '{printf "  %5d frames to %s:%s  ip-checksum %s udp-checksum %s\n", $1, $2, $3, $4, $5}'
fi
# swqos exits 1 when some transactions were rejected: the sample set has deliberately invalid ones.
[ $submit_status -le 1 ]
