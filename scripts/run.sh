#!/usr/bin/env bash
# The main job on the built-in default topology: the whole pipeline on this machine.
#
#   scripts/run.sh            relays: a network namespace with a mock relay for every provider,
#                             the dataplane owning one end of a veth pair and bridging a TAP that
#                             carries the host's IP, `swqos control` with its relay connections;
#                             the sample transactions go to a UDP lane, fourteen HTTP relay lanes
#                             (four of them over TLS, through nginx) and seven QUIC lanes (the
#                             dataplane's own connections to an aioquic peer): all seventeen
#                             providers; each lane's completion and latency is printed; it fails
#                             unless the relays accepted every lane's transactions and refused none.
#   scripts/run.sh --pcap     the dataplane on a net_pcap port sends the sample transactions to
#                             two UDP lanes; tshark reads back what DPDK wrote.
#
# Runs as root (DPDK, namespaces). Cleans up after itself, also when interrupted.
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:-relays}
txs=wire/tests/data/solana-txs.jsonl
scripts/setup.sh
[ -x "$HOME/.cargo/bin/cargo" ] && export PATH="$HOME/.cargo/bin:$PATH"
echo "==> building (release)" >&2
cargo build --release --locked --bins -q
bin=target/release
work=$(mktemp -d /tmp/swqos-run.XXXXXX)

pids=()
cleanup() {
    for p in "${pids[@]}"; do kill -INT "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    ip netns del swqos-peer 2>/dev/null || true
    ip link del swqos-nic 2>/dev/null || true
}
trap cleanup EXIT

start_dataplane() { # profile
    "$bin/swqos-dataplane" --config "$1" --stats-interval 0 >"$work/report.txt" 2>"$work/dataplane.log" &
    dp=$!
    pids+=("$dp")
    local shm
    shm=$(awk -F'"' '/^path *=/ {print $2; exit}' "$1")
    for _ in $(seq 1 300); do
        [ -e "$shm" ] && grep -q "running:" "$work/dataplane.log" && break
        kill -0 "$dp" 2>/dev/null || { cat "$work/dataplane.log" >&2; echo "error: dataplane failed to start" >&2; exit 1; }
        sleep 0.1
    done
    grep -E "WARN|port |lane |bridges|running" "$work/dataplane.log" | sed 's/^.*runtime: /dataplane: /' >&2
}

stop_dataplane() {
    kill -INT "$dp"
    wait "$dp" || true
    echo "==> dataplane report" >&2
    cat "$work/report.txt"
}

if [ "$mode" = "--pcap" ]; then
    profile=dpdk-config/profiles/pcap.toml
    start_dataplane "$profile"
    echo "==> swqos submit --config $profile $txs" >&2
    "$bin/swqos" submit --config "$profile" "$txs" || true
    stop_dataplane
    pcap=$(grep -o 'tx_pcap=[^",]*' "$profile" | head -n1 | cut -d= -f2)
    echo "==> $pcap as tshark reads it (frames per destination, checksum status 1 = good)" >&2
    tshark -r "$pcap" -o ip.check_checksum:TRUE -o udp.check_checksum:TRUE \
        -T fields -e ip.dst -e udp.dstport -e ip.checksum.status -e udp.checksum.status 2>/dev/null |
        sort | uniq -c | awk '{printf "  %5d frames to %s:%s  ip-checksum %s udp-checksum %s\n", $1, $2, $3, $4, $5}'
    exit 0
fi

# --- the relays topology -----------------------------------------------------------------------
profile=dpdk-config/profiles/relays.toml
echo "==> network: namespace swqos-peer (198.18.77.2), veth swqos-nic (the dataplane's NIC)" >&2
ip netns del swqos-peer 2>/dev/null || true
ip link del swqos-nic 2>/dev/null || true
ip netns add swqos-peer
ip link add swqos-nic type veth peer name swqos-peer-if
ip link set swqos-peer-if netns swqos-peer
ip netns exec swqos-peer ip link set lo up
ip netns exec swqos-peer ip link set swqos-peer-if address 02:00:5e:77:00:02
ip netns exec swqos-peer ip addr add 198.18.77.2/24 dev swqos-peer-if
ip netns exec swqos-peer ip link set swqos-peer-if up
# Behave like a wire: no GSO/GRO super-packets, no partial checksums; the NIC end has no IP
# and answers no ARP (the host's IP is on the TAP the dataplane bridges).
ip netns exec swqos-peer ethtool -K swqos-peer-if tso off gso off gro off tx off >/dev/null
ethtool -K swqos-nic tso off gso off gro off tx off >/dev/null
sysctl -qw net.ipv6.conf.swqos-nic.disable_ipv6=1
ip link set swqos-nic arp off
ip link set swqos-nic up

echo "==> mock relay for every provider on 198.18.77.2:8080 (tests/relay/mock_relay.py)" >&2
# The profile's tokens: demo-token, and a UUID v4 for Glaive (its keys are UUIDs).
glaive_key=$(awk -F'"' '/^provider = "glaive"/ {g=1} g && /^token =/ {print $2; exit}' "$profile")
ip netns exec swqos-peer python3 -u tests/relay/mock_relay.py --listen 198.18.77.2:8080 \
    --token-all demo-token --token "glaive=$glaive_key" --log "$work/relay.jsonl" \
    >"$work/relay.out" 2>&1 &
pids+=($!)
for _ in $(seq 1 50); do grep -q "listening on" "$work/relay.out" && break; sleep 0.1; done

# The TLS lanes (jito, bloxroute, helius, astralane) reach the same mock relay through nginx,
# which terminates TLS with a certificate from a test CA the profile's lanes trust.
ca=/tmp/swqos-demo-ca
echo "==> test CA $ca and nginx with TLS on 198.18.77.2:8443 in front of the mock relay" >&2
scripts/tls-relay.sh "$ca" 198.18.77.2 8443 8080 "TLSv1.2 TLSv1.3"
ip netns exec swqos-peer nginx -c "$ca/nginx.conf" -p "$ca" >"$work/nginx.out" 2>&1 &
pids+=($!)

# The QUIC lanes reach the QUIC relay peer (aioquic), every provider on its own port, with a
# test CA and a demo wallet the profile names.
quic=/tmp/swqos-demo-quic
echo "==> QUIC relay peer for every QUIC provider on 198.18.77.2 (tests/relay/quic_relay.py)" >&2
rm -rf "$quic"
python3 tests/relay/quic_pki.py "$quic" --ip 198.18.77.2 --keypair demo >/dev/null
quic_args=()
for lp in node1=16666 astralane=7000 soyas=9000 speedlanding=17778 solami=11000 glaive=4000 lunarlander=16888; do
    quic_args+=(--listen "198.18.77.2:${lp#*=}=${lp%%=*}")
done
node1_key=$(awk -F'"' '/^provider = "node1"/ {g=1} g && /^token =/ {print $2; exit}' <(sed -n '/kind = "quic"/,$p' "$profile"))
wallet=$(cat "$quic/keypair-demo.pubkey")
ip netns exec swqos-peer python3 -u tests/relay/quic_relay.py "${quic_args[@]}" \
    --cert "$quic/server.pem" --key "$quic/server.key" \
    --key "node1=$node1_key" --key "glaive=$glaive_key" --key astralane=demo-token \
    --key lunarlander=demo-token --keypair-pubkey "soyas=$wallet" \
    --keypair-pubkey "speedlanding=$wallet" --keypair-pubkey "solami=$wallet" \
    --log "$work/quic.jsonl" >"$work/quic-relay.out" 2>"$work/quic-relay.err" &
pids+=($!)
for _ in $(seq 1 50); do grep -q "listening on" "$work/quic-relay.out" && break; sleep 0.1; done
grep -q "listening on" "$work/quic-relay.out" || { cat "$work/quic-relay.err" >&2; echo "error: the QUIC relay peer did not start" >&2; exit 1; }

start_dataplane "$profile"
ip addr add 198.18.77.1/24 dev swqos-k0
ip link set swqos-k0 up

echo "==> swqos control (relay connections through the dataplane's exception path)" >&2
"$bin/swqos" control --config "$profile" 2>"$work/control.log" &
pids+=($!)
warm=$(awk '!/"invalid"/ {print; exit}' "$txs")
for _ in $(seq 1 60); do
    echo "$warm" | "$bin/swqos" submit --config "$profile" --timeout 3 - >/dev/null 2>&1 && break
    sleep 0.5
done

echo "==> swqos submit --config $profile --verbose --sequential $txs" >&2
echo "    (latency: submit to tx_burst for the UDP lane; submit to the relay's answer for relays)" >&2
set +e
"$bin/swqos" submit --config "$profile" --verbose --sequential "$txs" | tee "$work/submit.txt"
set -e
stop_dataplane
echo "==> per relay lane: the data plane's own time beside the mock relay's answer" >&2
python3 - "$work/report.txt" "$work/submit.txt" <<'PY'
import re, statistics, sys
wire = {m[1]: (m[2], m[3]) for m in re.finditer(
    r"^lane (\S+): .*\(fast (\d+), .*on the wire ([\d.]+) us", open(sys.argv[1]).read(), re.M)}
answer = {}
for m in re.finditer(r"^\s+(\S+)\s+sent in\s+([\d.]+) us", open(sys.argv[2]).read(), re.M):
    answer.setdefault(m[1], []).append(float(m[2]))
print(f"  {'lane':<16} {'data plane: submit -> tx_burst':>32} {'relay answered (median)':>25}")
for lane, (fast, us) in wire.items():
    a = answer.get(lane)
    med = f"{statistics.median(a):.0f} us" if a else "-"
    print(f"  {lane:<16} {us + ' us (mean of ' + fast + ' fast)':>32} {med:>25}")
print("  (the answer time is the Python relays' and swqos control's (QUIC: the aioquic peer's")
print("   acknowledgement), not the data plane's:")
print("   scripts/bench-e2e.sh times the request on the relay's wire)")
PY
grep -h "TLS" "$work/control.log" | grep "conn 0" | sed 's/^swqos control: /control: /' >&2 || true
echo "==> the relays' logs: transactions accepted per lane (each once, plus the warm-up)" >&2
python3 - "$work/relay.jsonl" "$work/quic.jsonl" "$profile" <<'PY'
import collections, json, re, sys
ok = collections.Counter(); bad = collections.Counter()
for path, kind in ((sys.argv[1], "http"), (sys.argv[2], "quic")):
    for line in open(path):
        v = json.loads(line)
        (ok if v.get("ok") else bad)[(kind, v.get("provider"))] += 1
# Every lane of the profile, in its order (kind and provider), then anything else seen.
lanes = [(m[2] if m[2] in ("http", "quic") else "http", m[3]) for m in re.finditer(
    r'^name = "([^"]+)"\nkind = "([^"]+)"\nprovider = "([^"]+)"', open(sys.argv[3]).read(), re.M)]
lanes += sorted((set(ok) | set(bad)) - set(lanes), key=str)
failed = []
for kind, p in lanes:
    flag = "" if ok[kind, p] and not bad[kind, p] else "  <-- FAILED"
    print(f"  {p:<12} {kind:<4} {ok[kind, p]:4d} accepted  {bad[kind, p]:3d} refused{flag}")
    if flag:
        failed.append(f"{p} ({kind})")
if failed:
    sys.exit(f"error: the relays did not accept every transaction of: {', '.join(failed)}")
providers = {p for _, p in lanes}
print(f"  all {len(lanes)} relay lanes accepted: {len(providers)} providers, "
      f"{sum(k == 'quic' for k, _ in lanes)} over QUIC")
PY
