#!/usr/bin/env bash
# scripts/bench-e2e.sh: the end-to-end latency report (docs/benchmarks.md, "End to end").
#
#   sudo scripts/bench-e2e.sh          # plain HTTP relay lanes
#   sudo scripts/bench-e2e.sh --tls    # HTTPS relay lanes (nginx terminating TLS for the relay)
#   sudo scripts/bench-e2e.sh --quic   # QUIC relay lanes beside a quinn client (sol-trade-sdk's)
#
# 1. builds the release binaries;
# 2. sets up the relay-lane test topology (as tests/src/topology.rs does): a peer network
#    namespace with the relay (swqos-test-relay, the compiled twin of tests/relay/mock_relay.py:
#    the same request checks and answers, a thread per connection, --log), joined by a veth
#    pair whose root end (offloads off, `arp off`, no IP) is the dataplane's net_af_packet
#    "NIC"; the host address 198.18.79.1/24 sits on the TAP the dataplane bridges to that NIC,
#    so every kernel TCP connection of swqos control to the relay (198.18.79.2) crosses the data
#    plane. The baselines get a link of their own: a second veth pair (198.18.80.1 <->
#    198.18.80.2, kernel defaults) into the same namespace and relay, no DPDK in its path;
# 3. starts swqos-dataplane and `swqos control` with eight relay lanes, one per provider format
#    (each one kernel TCP connection to the same relay), waits until a warm-up submission
#    to every relay lane succeeds;
#    With --tls the lanes are `tls = true` to an nginx in the namespace (TLS 1.3, a test CA made
#    here with openssl, certificate for relay.test, listening on both links) in front of the
#    relay; reqwest and the kernel-socket client then speak TLS too (rustls);
# 4. runs `swqos bench tx-latency` (submit to the tx_burst of each delegated send, 1, 4 and 8
#    lanes, and the data plane's latency budget per stage) and `swqos bench latency --lanes
#    1,4,8`: one submission to 1, 4 and 8 lanes at once on the data-plane path beside a reqwest
#    client and a kernel-socket HTTP client sending the same requests to the same relay over
#    their own link, alternating one submission at a time, while tcpdump captures the relay's
#    end of both links (the wire truth: submit to the first and last byte of every request at
#    the relay's NIC); prints the tables and writes wire.csv, wire-<N>lanes.svg, latency.csv,
#    latency.svg (1 lane) and latency-<N>lanes.svg; then stops the dataplane and prints its
#    fast/fallback counts per lane.
#
# --quic: the lanes are `kind = "quic"` (the data plane's own QUIC connections: source address
# the host's on the TAP, UDP port 20000 + lane index, dst_mac the relay's), one per provider of
# BENCH_E2E_QUIC_PROVIDERS (a provider named again gets its own relay port: default + 1, ...),
# to tests/relay/quic_relay.py (aioquic, every provider's shape; certificates from
# tests/relay/quic_pki.py: a test CA both clients verify with) listening on both links; no
# swqos control (QUIC lanes need none) and no tx-latency run. The baseline is quinn configured
# as sol-trade-sdk configures it, on the baselines' own link; the wire truth is each
# transaction's first and last datagram at the relay's NIC (docs/benchmarks.md, "QUIC lanes").
#
# Environment: BENCH_E2E_COUNT (submissions per path and lane count, default 500),
# BENCH_E2E_WARMUP (default 20), BENCH_E2E_LANES (lane counts, default 1,4,8),
# BENCH_E2E_PROVIDERS (the lanes' relay formats, in order, default
# "jito bloxroute nextblock 0slot temporal helius astralane node1"), BENCH_E2E_QUIC_PROVIDERS
# (--quic, default "soyas speedlanding solami glaive astralane lunarlander soyas speedlanding"),
# BENCH_LOG_DIR (logs and output, default $CARGO_TARGET_DIR/bench/e2e, -tls, -quic),
# BENCH_E2E_BIN (use the binaries in this directory instead of building release ones).
# Idempotent (removes what an earlier run left behind); exits non-zero if any step fails; a
# trap stops every process it started and removes the namespace and interfaces.

set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
BIN=$CARGO_TARGET_DIR/release
COUNT=${BENCH_E2E_COUNT:-500}
WARMUP=${BENCH_E2E_WARMUP:-20}
LANE_COUNTS=${BENCH_E2E_LANES:-1,4,8}
PROVIDERS=${BENCH_E2E_PROVIDERS:-jito bloxroute nextblock 0slot temporal helius astralane node1}
TXLAT_COUNT=${BENCH_TXLAT_COUNT:-1000}
QUIC_PROVIDERS=${BENCH_E2E_QUIC_PROVIDERS:-soyas speedlanding solami glaive astralane lunarlander soyas speedlanding}
TLS=0
QUIC=0
case "${1:-}" in
    --tls) TLS=1 ;;
    --quic) QUIC=1 ;;
    "") ;;
    *) echo "usage: $0 [--tls | --quic]" >&2; exit 2 ;;
esac
SUFFIX=""
[ "$TLS" -eq 1 ] && SUFFIX=-tls
[ "$QUIC" -eq 1 ] && SUFFIX=-quic
[ -n "${BENCH_E2E_BIN:-}" ] && BIN=$BENCH_E2E_BIN
OUT=${BENCH_LOG_DIR:-$CARGO_TARGET_DIR/bench/e2e$SUFFIX}

NS=swqos-e2e-peer
DP_IF=swqe2e-dp     # the dataplane's veth end (its NIC)
PEER_IF=swqe2e-peer # the relay's veth end, inside $NS
BASE_IF=swqe2e-base # the baselines' own kernel-owned link into $NS (root end)...
BPEER_IF=swqe2e-bpr # ...and its relay end, inside $NS
TAP=swqe2e-tap      # created by the dataplane (net_tap); carries the host address
# Not the tests' 198.18.77.0/24, so this can run while `cargo test` builds its own topology.
HOST_IP=198.18.79.1
RELAY_IP=198.18.79.2
BASE_HOST_IP=198.18.80.1  # the baselines' side of their own link
BASE_RELAY_IP=198.18.80.2 # the same relay, reached over that link
RELAY_PORT=8080
TOKEN=bench-e2e-token
SHM=/dev/shm/swqos-e2e/segment  # in a private directory the dataplane creates
CFG=$OUT/e2e.toml
RELAY_LOG=$OUT/relay.jsonl

say() { printf '\n== %s\n' "$*"; }
die() {
    printf 'bench-e2e.sh: FAILED: %s\n' "$*" >&2
    exit 1
}

# Processes we started, stopped by the trap (SIGTERM, then SIGKILL after 5 s), newest first:
# swqos control, the dataplane, the relay. Then the network goes.
BG_PIDS=()
teardown_net() {
    ip netns del "$NS" 2>/dev/null || true
    ip link del "$DP_IF" 2>/dev/null || true
    ip link del "$TAP" 2>/dev/null || true
    ip link del "$BASE_IF" 2>/dev/null || true
}
cleanup() {
    local rc=$?
    local i pid
    for ((i = ${#BG_PIDS[@]} - 1; i >= 0; i--)); do
        pid=${BG_PIDS[i]}
        if kill -0 "$pid" 2>/dev/null; then
            kill -TERM "$pid" 2>/dev/null || true
            for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
            kill -KILL "$pid" 2>/dev/null || true
            wait "$pid" 2>/dev/null || true
        fi
    done
    teardown_net
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

[ "$(id -u)" -eq 0 ] || die "run as root (DPDK, network namespaces)"
for tool in ip ethtool python3 tcpdump $([ "$TLS" -eq 1 ] && echo openssl nginx); do
    command -v "$tool" >/dev/null || die "$tool not found (scripts/setup.sh installs it)"
done
if [ "$QUIC" -eq 1 ]; then
    python3 -c "import aioquic" 2>/dev/null || die "python3 has no aioquic (scripts/test.sh installs it)"
fi
mkdir -p "$OUT"

# ---------------------------------------------------------------------------------------------
if [ -z "${BENCH_E2E_BIN:-}" ]; then
    say "building release binaries"
    cargo build --release --workspace --bins --quiet || die "cargo build failed"
fi
[ -x "$BIN/swqos-dataplane" ] && [ -x "$BIN/swqos" ] && [ -x "$BIN/swqos-test-relay" ] \
    || die "binaries missing in $BIN"

# ---------------------------------------------------------------------------------------------
say "topology: namespace $NS ($RELAY_IP), veth $DP_IF <-> $PEER_IF, TAP $TAP ($HOST_IP)"
# Left over from an interrupted run: the network (a dataplane still running on our segment
# refuses to be replaced; the new one then fails to start and says so).
teardown_net
ip netns add "$NS"
ip link add "$DP_IF" type veth peer name "$PEER_IF"
ip link set "$PEER_IF" netns "$NS"
ip netns exec "$NS" ip link set lo up
ip netns exec "$NS" ip addr add "$RELAY_IP/24" dev "$PEER_IF"
ip netns exec "$NS" ip link set "$PEER_IF" up
# Both ends behave like a wire: no GSO super-packets or partial checksums on the veth.
ip netns exec "$NS" ethtool -K "$PEER_IF" tso off gso off gro off tx off >/dev/null
ethtool -K "$DP_IF" tso off gso off gro off tx off >/dev/null
# The dataplane's end has no IP and answers no ARP: only DPDK uses it.
ip link set "$DP_IF" arp off
sysctl -qw "net.ipv6.conf.$DP_IF.disable_ipv6=1" 2>/dev/null || true
ip link set "$DP_IF" up
# The baselines' link: a plain kernel interface with the kernel's default offloads, as a bot
# without the data plane has; no DPDK bridge in its path.
ip link add "$BASE_IF" type veth peer name "$BPEER_IF"
ip link set "$BPEER_IF" netns "$NS"
ip netns exec "$NS" ip addr add "$BASE_RELAY_IP/24" dev "$BPEER_IF"
ip netns exec "$NS" ip link set "$BPEER_IF" up
ip addr add "$BASE_HOST_IP/24" dev "$BASE_IF"
ip link set "$BASE_IF" up

# --quic: the test PKI, one QUIC lane per provider of $QUIC_PROVIDERS in $CFG, and the QUIC
# peer's arguments (QUIC_ARGS: a listener per lane on both links, the keys it checks);
# QUIC_LANES: the lanes' names.
QUIC_ARGS=()
QUIC_LANES=()
quic_config() {
    local pki=$OUT/quic-pki mac p port name seen k
    local glaive_key=00112233-4455-4677-8899-aabbccddeeff lane_key=bench-e2e-api-key
    rm -rf "$pki"
    python3 "$ROOT/tests/relay/quic_pki.py" "$pki" --ip "$RELAY_IP" --ip "$BASE_RELAY_IP" \
        --keypair w1 >/dev/null || die "tests/relay/quic_pki.py failed"
    mac=$(ip netns exec "$NS" cat "/sys/class/net/$PEER_IF/address")
    QUIC_ARGS=(--cert "$pki/server.pem" --key "$pki/server.key"
        --key "glaive=$glaive_key" --key "astralane=$lane_key" --key "lunarlander=$lane_key")
    for p in soyas speedlanding solami; do
        QUIC_ARGS+=(--keypair-pubkey "$p=$(cat "$pki/keypair-w1.pubkey")")
    done
    seen=" "
    for p in $QUIC_PROVIDERS; do
        case $p in
            soyas) port=9000 ;; speedlanding) port=17778 ;; solami) port=11000 ;;
            glaive) port=4000 ;; astralane) port=7000 ;; lunarlander) port=16888 ;;
            node1) port=16666 ;;
            *) die "BENCH_E2E_QUIC_PROVIDERS: $p is not a QUIC provider" ;;
        esac
        # A provider named again: its next port, a lane and listener of its own.
        name=$p
        k=1
        while [[ "$seen" == *" $name "* ]]; do
            k=$((k + 1))
            name=$p-$k
            port=$((port + 1))
        done
        seen="$seen$name "
        QUIC_LANES+=("$name")
        QUIC_ARGS+=(--listen "$RELAY_IP:$port=$p" --listen "$BASE_RELAY_IP:$port=$p")
        cat >>"$CFG" <<EOF

[[lane]]
name = "$name"
kind = "quic"
provider = "$p"
port = "nic"
src_ip = "$HOST_IP"
dst_ip = "$RELAY_IP"
dst_port = $port
dst_mac = "$mac"
ca_files = ["$pki/ca.pem"]
EOF
        case $p in
            soyas | speedlanding | solami) echo "keypair_file = \"$pki/keypair-w1.json\"" >>"$CFG" ;;
            glaive | node1) echo "token = \"$glaive_key\"" >>"$CFG" ;;
            *) echo "token = \"$lane_key\"" >>"$CFG" ;;
        esac
    done
}

# ---------------------------------------------------------------------------------------------
if [ "$QUIC" -eq 1 ]; then
    say "config $CFG: QUIC lanes $QUIC_PROVIDERS (each -> $RELAY_IP, the provider's port)"
else
    say "config $CFG: relay lanes $PROVIDERS (each -> $RELAY_IP:$RELAY_PORT, 1 connection)"
fi
cat >"$CFG" <<EOF
[eal]
lcores = "0-1"
hugepages = "auto"
file_prefix = "swqos-e2e"

[shm]
path = "$SHM"
rings = 2

[[port]]
name = "nic"
device = "net_af_packet0,iface=$DP_IF"
rx_queues = 1
tx_queues = 1
promiscuous = true

[[port]]
name = "kernel"
device = "net_tap0,iface=$TAP"
rx_queues = 1
tx_queues = 1

[[lcore]]
id = 1
role = "tx"
queues = [{ port = "nic", queue = 0 }, { port = "kernel", queue = 0 }]
bridge = { nic = "nic", kernel = "kernel" }

[control]
metrics_listen = "127.0.0.1:19464"
EOF
LANE_PORT=$RELAY_PORT
LANE_TLS=""
if [ "$TLS" -eq 1 ]; then
    # The relay side's TLS: a test CA and a certificate for relay.test (and the relay's IP).
    LANE_PORT=8443
    PKI=$OUT/pki
    "$ROOT/scripts/tls-relay.sh" "$PKI" "$RELAY_IP" 8443 "$RELAY_PORT" TLSv1.3 "$BASE_RELAY_IP"
    LANE_TLS="host = \"relay.test\"
tls = true
ca_files = [\"$PKI/ca.pem\"]"
fi
if [ "$QUIC" -eq 1 ]; then
    quic_config
else
for p in $PROVIDERS; do
    cat >>"$CFG" <<EOF

[[lane]]
name = "$p"
kind = "http"
provider = "$p"
port = "nic"
dst_ip = "$RELAY_IP"
dst_port = $LANE_PORT
connections = 1
token = "$TOKEN"
$LANE_TLS
EOF
done
fi

# ---------------------------------------------------------------------------------------------
: >"$RELAY_LOG"
if [ "$QUIC" -eq 1 ]; then
    say "QUIC relay (tests/relay/quic_relay.py, aioquic) in $NS, log $RELAY_LOG"
    ip netns exec "$NS" python3 "$ROOT/tests/relay/quic_relay.py" "${QUIC_ARGS[@]}" \
        --log "$RELAY_LOG" >"$OUT/relay.out" 2>"$OUT/relay.err" &
else
    say "relay (swqos-test-relay, compiled, a thread per connection) in $NS, log $RELAY_LOG"
    ip netns exec "$NS" "$BIN/swqos-test-relay" \
        --listen "$RELAY_IP:$RELAY_PORT" --listen "$BASE_RELAY_IP:$RELAY_PORT" --token-all "$TOKEN" --log "$RELAY_LOG" \
        >"$OUT/relay.out" 2>"$OUT/relay.err" &
fi
BG_PIDS+=($!)
for _ in $(seq 100); do grep -q "listening on" "$OUT/relay.out" && break; sleep 0.1; done
grep -q "listening on" "$OUT/relay.out" || die "relay did not start: $(cat "$OUT/relay.err")"

if [ "$TLS" -eq 1 ]; then
    say "nginx in $NS: TLS on $RELAY_IP:8443 and $BASE_RELAY_IP:8443 for the relay"
    ip netns exec "$NS" nginx -c "$PKI/nginx.conf" -p "$PKI" >"$OUT/nginx.out" 2>&1 &
    BG_PIDS+=($!)
    for _ in $(seq 50); do
        ip netns exec "$NS" bash -c "exec 3<>/dev/tcp/$RELAY_IP/8443" 2>/dev/null && break
        sleep 0.1
    done
fi

# ---------------------------------------------------------------------------------------------
say "swqos-dataplane"
"$BIN/swqos-dataplane" --config "$CFG" --stats-interval 0 </dev/null \
    >"$OUT/dataplane.out" 2>"$OUT/dataplane.err" &
DP_PID=$!
BG_PIDS+=("$DP_PID")
for _ in $(seq 600); do
    [ -e "$SHM" ] && ip link show "$TAP" >/dev/null 2>&1 && break
    kill -0 "$DP_PID" 2>/dev/null || die "dataplane exited: $(tail -5 "$OUT/dataplane.err")"
    sleep 0.1
done
ip link show "$TAP" >/dev/null 2>&1 || die "the dataplane did not create $TAP"
ip addr add "$HOST_IP/24" dev "$TAP"
ip link set "$TAP" up

if [ "$QUIC" -eq 0 ]; then
    say "swqos control"
    "$BIN/swqos" control --config "$CFG" >/dev/null 2>"$OUT/control.err" &
    BG_PIDS+=($!)
else
    : >"$OUT/control.err"
fi

say "warm-up: one submission to every relay lane until the relay answers on all"
WARM_TX=$(awk '!/"invalid"/ { print; exit }' "$ROOT/wire/tests/data/solana-txs.jsonl")
ok=0
for _ in $(seq 60); do
    if printf '%s\n' "$WARM_TX" | "$BIN/swqos" submit --config "$CFG" \
        --timeout 5 - >"$OUT/warmup.out" 2>&1; then
        ok=1
        break
    fi
    sleep 0.5
done
[ "$ok" -eq 1 ] || die "the relay lanes never answered: $(cat "$OUT/warmup.out")
control plane: $(tail -5 "$OUT/control.err")"
cat "$OUT/warmup.out"

# ---------------------------------------------------------------------------------------------
if [ "$QUIC" -eq 0 ]; then
    say "swqos bench tx-latency --lanes $LANE_COUNTS --count $TXLAT_COUNT (delegated sends)"
    "$BIN/swqos" bench tx-latency --config "$CFG" --lanes "$LANE_COUNTS" --count "$TXLAT_COUNT" \
        | tee "$OUT/tx-latency.txt" || die "swqos bench tx-latency failed"
else
    : >"$OUT/tx-latency.txt"
fi

# ---------------------------------------------------------------------------------------------
say "swqos bench latency --lanes $LANE_COUNTS --count $COUNT --warmup $WARMUP (load average $(cut -d' ' -f1-3 /proc/loadavg))"
LANE_ARGS=()
if [ "$QUIC" -eq 1 ]; then
    for p in "${QUIC_LANES[@]}"; do LANE_ARGS+=(--lane "$p"); done
else
    for p in $PROVIDERS; do LANE_ARGS+=(--lane "$p"); done
fi
if ! "$BIN/swqos" bench latency --config "$CFG" "${LANE_ARGS[@]}" --lanes "$LANE_COUNTS" \
    --count "$COUNT" --warmup "$WARMUP" --relay-log "$RELAY_LOG" --out "$OUT" \
    --baseline-ip "$BASE_RELAY_IP" --capture-netns "$NS" \
    --capture-dataplane-iface "$PEER_IF" --capture-baseline-iface "$BPEER_IF" \
    | tee "$OUT/report.txt"; then
    die "swqos bench latency failed (control plane: $(tail -3 "$OUT/control.err"))"
fi

cat "$OUT/tx-latency.txt" >>"$OUT/report.txt"
echo "load average after the run: $(cut -d' ' -f1-3 /proc/loadavg) ($(nproc) cores)" \
    | tee -a "$OUT/report.txt"

say "dataplane report (fast and fallback sends per relay lane)"
# The dataplane prints its report when it stops: stop swqos control, then the dataplane.
for ((i = ${#BG_PIDS[@]} - 1; i >= 1; i--)); do
    kill -TERM "${BG_PIDS[i]}" 2>/dev/null || true
    wait "${BG_PIDS[i]}" 2>/dev/null || true
done
cat "$OUT/dataplane.out" "$OUT/dataplane.err" 2>/dev/null | grep -E '^lane ' \
    | tee -a "$OUT/report.txt" || true

say "done: $OUT/report.txt, $OUT/latency.csv, $OUT/latency.svg, $OUT/latency-*lanes.svg"
