#!/bin/sh
# Entry point of the swqos image: checks that DPDK can get memory in this container, then runs
# swqos-dataplane in the foreground as this process (docker stop's SIGTERM drains it cleanly).
#
#   docker run ... swqos [--config PATH] [other swqos-dataplane options]
#
# Memory, in order:
#   1. hugepages: a hugetlbfs mounted in the container (-v /dev/hugepages:/dev/hugepages) with
#      enough free pages for [eal] memory_mb, and a page that can really be allocated there;
#   2. else, unless the config says hugepages = "required": --no-huge (plain memory; fine for
#      development and capture, not for production), which needs memory_mb + 128 MiB of memory;
#   3. else it refuses to start, saying what is missing (exit 78).
# `swqos-entrypoint swqos ...` (or any other command) runs that command instead.
set -eu

say() { printf 'swqos-entrypoint: %s\n' "$*" >&2; }
refuse() {
    say "ERROR: $*"
    exit 78
}

case "${1:-}" in
    swqos | swqos-dataplane | sh | bash | /*) exec "$@" ;;
esac

config=/etc/swqos/dev.toml
prev=
for a in "$@"; do
    case "$prev" in --config | -c) config=$a ;; esac
    case "$a" in --config=*) config=${a#--config=} ;; esac
    prev=$a
done
[ $# -gt 0 ] || set -- --config "$config"
[ -r "$config" ] || refuse "config $config not found (mount it, or use one of /etc/swqos/*.toml)"

# [eal] settings the decision needs (the dataplane validates the file itself).
eal_value() {
    awk -v key="$1" '
        /^[[:space:]]*\[/ { in_eal = ($0 ~ /^[[:space:]]*\[eal\][[:space:]]*(#.*)?$/); next }
        in_eal && $0 ~ "^[[:space:]]*" key "[[:space:]]*=" {
            sub(/^[^=]*=[[:space:]]*/, ""); sub(/[[:space:]]*#.*$/, ""); gsub(/"/, ""); print; exit
        }' "$config"
}
mode=$(eal_value hugepages)
mode=${mode:-auto}
memory_mb=$(eal_value memory_mb)
memory_mb=${memory_mb:-256}
huge_dir=$(eal_value huge_dir)

# Clients outside the container check the dataplane's pid and each other's ring leases with
# kill(pid, 0): that needs one pid namespace for everyone.
case "$(cat /proc/1/comm 2>/dev/null)" in
    swqos-entrypoi* | docker-init | tini | sh | dash | bash)
        say "WARNING: not in the host's pid namespace; run with --pid=host if clients outside this container submit to it" ;;
esac

huge_problem() {
    dir=${huge_dir:-$(awk '$3 == "hugetlbfs" {print $2; exit}' /proc/mounts)}
    if [ -z "$dir" ] || ! awk -v d="$dir" '$2 == d && $3 == "hugetlbfs" {f = 1} END {exit !f}' /proc/mounts; then
        echo "no hugetlbfs mounted in the container (docker run -v /dev/hugepages:/dev/hugepages)"
        return
    fi
    free=$(awk '/^HugePages_Free:/ {print $2}' /proc/meminfo)
    size_kb=$(awk '/^Hugepagesize:/ {print $2}' /proc/meminfo)
    free_mb=$((${free:-0} * ${size_kb:-2048} / 1024))
    if [ "$free_mb" -lt "$memory_mb" ]; then
        echo "$free_mb MiB of hugepages free on the host, $memory_mb MiB needed (on the host: echo $((memory_mb * 1024 / ${size_kb:-2048} + 64)) > /proc/sys/vm/nr_hugepages)"
        return
    fi
    # DPDK binds hugepage memory to NUMA nodes (get/set_mempolicy); Docker's seccomp profile
    # allows those only with CAP_SYS_NICE (bit 23).
    cap_eff=$(awk '/^CapEff:/ {print $2}' /proc/self/status)
    if [ $(((0x${cap_eff:-0} >> 23) & 1)) -eq 0 ]; then
        echo "the container lacks CAP_SYS_NICE, which DPDK needs for NUMA-placed hugepage memory (docker run --cap-add SYS_NICE)"
        return
    fi
    probe="$dir/.swqos-probe.$$"
    if ! fallocate -l "$((${size_kb:-2048} * 1024))" "$probe" 2>/dev/null; then
        rm -f "$probe"
        echo "cannot allocate a hugepage in $dir (mounted read-only, not writable by uid $(id -u), or a hugetlb cgroup limit)"
        return
    fi
    rm -f "$probe"
}

nohuge_problem() {
    if [ "$mode" = required ]; then
        echo "the config says hugepages = \"required\""
        return
    fi
    limit=
    for f in /sys/fs/cgroup/memory.max /sys/fs/cgroup/memory/memory.limit_in_bytes; do
        [ -r "$f" ] && limit=$(cat "$f") && break
    done
    case "$limit" in '' | max) return ;; esac
    need=$(((memory_mb + 128) * 1048576))
    if [ "$limit" -lt "$need" ]; then
        echo "the container's memory limit is $((limit / 1048576)) MiB, --no-huge needs $((need / 1048576)) MiB (docker run --memory)"
    fi
}

# Runs the dataplane with --no-huge: a copy of the config with hugepages = "off" (so the
# dataplane cannot pick pages it cannot use) and without --in-memory (DPDK refuses it with
# --no-huge, and without hugepage files there is nothing for it to clean up anyway).
run_no_huge() {
    effective=/tmp/swqos-effective.toml
    awk '
        /^[[:space:]]*\[/ { if (in_eal && !done) { print "hugepages = \"off\""; done = 1 }
                            in_eal = ($0 ~ /^[[:space:]]*\[eal\]/) }
        in_eal && /^[[:space:]]*hugepages[[:space:]]*=/ { if (!done) print "hugepages = \"off\""; done = 1; next }
        in_eal && /^[[:space:]]*extra_args[[:space:]]*=/ {
            gsub(/"--in-memory"[[:space:]]*,?[[:space:]]*/, ""); sub(/,[[:space:]]*\]/, "]")
        }
        { print }
        END { if (in_eal && !done) print "hugepages = \"off\"" }' "$config" >"$effective"
    first=1
    prev2=
    for a in "$@"; do
        [ "$first" = 1 ] && set -- && first=0
        case "$prev2" in --config | -c) a=$effective ;; esac
        case "$a" in --config=*) a=--config=$effective ;; esac
        set -- "$@" "$a"
        prev2=$a
    done
    exec swqos-dataplane "$@"
}

if [ "$mode" = off ]; then
    say "hugepages = \"off\" in $config: running with --no-huge"
    run_no_huge "$@"
fi
why_not_huge=$(huge_problem)
if [ -z "$why_not_huge" ]; then
    say "using hugepages ($memory_mb MiB from ${huge_dir:-the host's hugetlbfs})"
    exec swqos-dataplane "$@"
fi
why_not_plain=$(nohuge_problem)
if [ -n "$why_not_plain" ]; then
    refuse "cannot start: no usable hugepages ($why_not_huge) and no --no-huge fallback ($why_not_plain).
Fix one of them: mount and reserve hugepages (see README, Containers), or allow --no-huge."
fi
say "WARNING: no usable hugepages ($why_not_huge): running with --no-huge (development only)"
run_no_huge "$@"
