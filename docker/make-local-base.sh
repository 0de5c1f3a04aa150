#!/usr/bin/env bash
# Makes, without any container registry, the two images docker/Dockerfile builds from:
#
#   swqos-local/debian:bookworm-slim  Debian 12 minbase from Debian's own mirror (debootstrap),
#                                     slimmed like the official debian:bookworm-slim, `docker import`ed
#   swqos-local/rust:bookworm         that base plus this host's rustup toolchain (rustc/cargo,
#                                     no docs), standing in for rust:1-bookworm
#
# Idempotent: an image that exists is kept (SWQOS_REBUILD_BASE=1 remakes both). Run as root.
#
#   SWQOS_DEBIAN_MIRROR  default: the first deb.debian.org-style URI of /etc/apt/sources.list*,
#                        else http://deb.debian.org/debian
#   SWQOS_TOOLCHAIN      rustup toolchain directory to copy (default: the one `rustc` runs from)
set -euo pipefail

BASE_IMAGE=${SWQOS_BASE_IMAGE:-swqos-local/debian:bookworm-slim}
BUILDER_IMAGE=${SWQOS_BUILDER_IMAGE:-swqos-local/rust:bookworm}
SUITE=bookworm

say() { printf '==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "run as root (debootstrap and docker need it)"
command -v docker >/dev/null || die "docker is not installed"
[ -x "$HOME/.cargo/bin/rustc" ] && export PATH="$HOME/.cargo/bin:$PATH"

have_image() { docker image inspect "$1" >/dev/null 2>&1; }

# --- the Debian base --------------------------------------------------------------------------
make_base() {
    if ! command -v debootstrap >/dev/null; then
        say "installing debootstrap"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null 2>&1 || {
            apt-get update -qq
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
        }
    fi
    local mirror=${SWQOS_DEBIAN_MIRROR:-}
    if [ -z "$mirror" ]; then
        mirror=$(grep -rhoE '(URIs:|^deb) +https?://[^ ]+/debian/?( |$)' /etc/apt/sources.list /etc/apt/sources.list.d/ 2>/dev/null |
            grep -oE 'https?://[^ ]+' | head -n1 || true)
        mirror=${mirror:-http://deb.debian.org/debian}
    fi
    local root
    root=$(mktemp -d /var/tmp/swqos-rootfs.XXXXXX)
    trap 'rm -rf "$root"' RETURN
    say "debootstrap --variant=minbase $SUITE from $mirror"
    debootstrap --variant=minbase --include=ca-certificates "$SUITE" "$root" "$mirror" >"$root.log" 2>&1 || {
        tail -n 30 "$root.log" >&2
        rm -f "$root.log"
        die "debootstrap failed"
    }
    rm -f "$root.log"
    # What the official slim image does: no docs, man pages or locales from later installs, no
    # recommends, no apt caches left in layers.
    cat >"$root/etc/dpkg/dpkg.cfg.d/docker-slim" <<'CFG'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/linda/*
CFG
    cat >"$root/etc/apt/apt.conf.d/docker-slim" <<'CFG'
APT::Install-Recommends "false";
APT::Install-Suggests "false";
Acquire::Languages "none";
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
CFG
    rm -f "$root/etc/apt/sources.list"
    cat >"$root/etc/apt/sources.list.d/debian.sources" <<CFG
Types: deb
URIs: ${mirror%/}
Suites: $SUITE $SUITE-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: ${mirror%/debian*}/debian-security
Suites: $SUITE-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
CFG
    rm -rf "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/locale/* \
        "$root"/usr/share/info/* "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin \
        "$root"/var/cache/apt/archives/*.deb "$root"/var/log/*.log "$root"/tmp/*
    : >"$root/etc/hostname"
    say "docker import -> $BASE_IMAGE"
    tar -C "$root" --numeric-owner -c . |
        docker import --change 'CMD ["bash"]' --change 'ENV LANG=C.UTF-8' \
            --message "debootstrap --variant=minbase $SUITE $mirror" - "$BASE_IMAGE" >/dev/null
}

# --- the builder: base + host toolchain -------------------------------------------------------
make_builder() {
    local sysroot ctx
    sysroot=${SWQOS_TOOLCHAIN:-$(rustc --print sysroot 2>/dev/null)} ||
        die "rustc not found: install Rust (rustup) on the host first"
    [ -x "$sysroot/bin/cargo" ] || die "$sysroot has no bin/cargo (a rustup toolchain is expected)"
    ctx=$(mktemp -d /var/tmp/swqos-builder.XXXXXX)
    trap 'rm -rf "$ctx"' RETURN
    say "builder: $BASE_IMAGE + $("$sysroot/bin/rustc" --version) from $sysroot"
    # rustc, cargo, std and the bundled linker (rust-lld); no docs (share/) and no rust-src.
    tar -C "$sysroot" -c --exclude=./share --exclude=./lib/rustlib/src . |
        gzip -1 >"$ctx/toolchain.tar.gz"
    cat >"$ctx/Dockerfile" <<DOCKERFILE
FROM $BASE_IMAGE
# What rust:1-bookworm provides and the build needs besides rustc: a C toolchain.
RUN apt-get update -qq && apt-get install -y -qq gcc libc6-dev >/dev/null && rm -rf /var/lib/apt/lists/*
ADD toolchain.tar.gz /usr/local/rust/
ENV CARGO_HOME=/usr/local/cargo PATH=/usr/local/rust/bin:/usr/local/cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
RUN rustc --version && cargo --version
DOCKERFILE
    DOCKER_BUILDKIT=0 docker build --force-rm -t "$BUILDER_IMAGE" "$ctx" >"$ctx/build.log" 2>&1 || {
        tail -n 30 "$ctx/build.log" >&2
        die "building $BUILDER_IMAGE failed"
    }
}

if [ "${SWQOS_REBUILD_BASE:-0}" = 1 ] || ! have_image "$BASE_IMAGE"; then
    t0=$(date +%s)
    make_base
    say "base image made in $(($(date +%s) - t0)) s"
else
    say "$BASE_IMAGE present"
fi
if [ "${SWQOS_REBUILD_BASE:-0}" = 1 ] || ! have_image "$BUILDER_IMAGE"; then
    t0=$(date +%s)
    make_builder
    say "builder image made in $(($(date +%s) - t0)) s"
else
    say "$BUILDER_IMAGE present"
fi
