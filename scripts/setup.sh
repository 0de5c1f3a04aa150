#!/usr/bin/env bash
# Prepares this host to build and run swqos: Debian packages, the relay peers' Python packages,
# then hugepages.
# Idempotent: installs only what is missing and never shrinks a hugepage reservation.
#
#   SWQOS_HUGEPAGES   2 MiB pages to reserve (default 512 = 1 GiB)
set -euo pipefail

say() { printf '==> %s\n' "$*" >&2; }
warn() { printf '\033[1;33mWARNING:\033[0m %s\n' "$*" >&2; }

if [ "$(id -u)" -ne 0 ]; then
    echo "error: run as root (package installs, hugepages and DPDK need it)" >&2
    exit 1
fi

# --- Debian packages -------------------------------------------------------------------------
packages=(pkg-config libdpdk-dev dpdk dpdk-dev libclang-dev clang gcc libc6-dev tshark tcpdump iproute2 iputils-ping procps ethtool nftables nginx-light python3 python3-pip openssl curl prometheus)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
    say "installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    # tshark asks whether non-root users may capture; answer for it.
    echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections
    apt-get update -qq
    # Install servers (nginx, for the tests) without starting them: nothing listens by surprise.
    had_policy=0; [ -e /usr/sbin/policy-rc.d ] && had_policy=1
    [ $had_policy = 1 ] || printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod +x /usr/sbin/policy-rc.d
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    [ $had_policy = 1 ] || rm -f /usr/sbin/policy-rc.d
else
    say "Debian packages present"
fi
pkg-config --atleast-version=22.11 libdpdk || {
    echo "error: DPDK 22.11 or newer not found by pkg-config (libdpdk)" >&2
    exit 1
}

# --- Rust ------------------------------------------------------------------------------------
if ! command -v cargo >/dev/null 2>&1; then
    for dir in "$HOME/.cargo/bin" /root/.cargo/bin /usr/local/cargo/bin; do
        [ -x "$dir/cargo" ] && export PATH="$dir:$PATH" && break
    done
fi
if ! command -v cargo >/dev/null 2>&1; then
    echo "error: cargo not found; install Rust 1.88 or newer (https://rustup.rs) and re-run" >&2
    exit 1
fi
rustc_minor=$(rustc --version | awk '{split($2, v, "."); print v[2]}')
if [ "${rustc_minor:-0}" -lt 88 ]; then
    echo "error: $(rustc --version) is too old; the dependencies need Rust 1.88 or newer (rustup update)" >&2
    exit 1
fi

# --- Python packages -------------------------------------------------------------------------
# The QUIC relay peer (tests/relay/quic_relay.py) that scripts/run.sh and the tests run: aioquic,
# pinned (it reaches into aioquic's TLS internals for the client certificate). PEP 668:
# PIP_BREAK_SYSTEM_PACKAGES lets Debian's own python3 take it.
if ! python3 -c 'import aioquic, sys; sys.exit(aioquic.__version__ != "1.7.2")' 2>/dev/null; then
    say "installing aioquic 1.7.2 (the QUIC relay peer)"
    PIP_BREAK_SYSTEM_PACKAGES=1 python3 -m pip install --quiet --disable-pip-version-check \
        --root-user-action=ignore 'aioquic==1.7.2'
fi

# --- Hugepages -------------------------------------------------------------------------------
want=${SWQOS_HUGEPAGES:-512}
have=$(cat /proc/sys/vm/nr_hugepages 2>/dev/null || echo 0)
if [ "$have" -lt "$want" ]; then
    if echo "$want" > /proc/sys/vm/nr_hugepages 2>/dev/null; then
        have=$(cat /proc/sys/vm/nr_hugepages)
        say "reserved $have hugepages of 2 MiB"
    else
        warn "cannot reserve hugepages here (read-only /proc/sys?)"
    fi
fi
if ! grep -qs ' hugetlbfs ' /proc/mounts; then
    mkdir -p /dev/hugepages
    if mount -t hugetlbfs nodev /dev/hugepages 2>/dev/null; then
        say "mounted hugetlbfs on /dev/hugepages"
    else
        warn "cannot mount hugetlbfs"
    fi
fi
free=$(awk '/HugePages_Free/ {print $2}' /proc/meminfo)
if [ "${free:-0}" -eq 0 ] || ! grep -qs ' hugetlbfs ' /proc/mounts; then
    warn "no usable hugepages: the dataplane will fall back to --no-huge (fine for development, not for production)"
else
    say "hugepages: ${free} free"
fi
