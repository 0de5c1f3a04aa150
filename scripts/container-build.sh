#!/usr/bin/env bash
# Builds the swqos runtime image from docker/Dockerfile without any container registry: the base
# and builder images are made locally (docker/make-local-base.sh: debootstrap + docker import,
# and the host's rustup toolchain) and the crates of Cargo.lock are vendored on the host (cargo
# vendor) into a layer over the builder, so nothing inside the build needs crates.io or rustup. Layers are cached: a second run with the
# same sources takes seconds. Run as root.
#
#   SWQOS_IMAGE    tag to build (default swqos:latest)
#   SWQOS_BASE     runtime base image (default: the local swqos-local/debian:bookworm-slim)
#   SWQOS_BUILDER  builder image (default: the local swqos-local/rust:bookworm); giving both
#                  (e.g. debian:bookworm-slim and rust:1-bookworm) skips making local ones
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
image=${SWQOS_IMAGE:-swqos:latest}
say() { printf '==> %s\n' "$*" >&2; }
[ -x "$HOME/.cargo/bin/cargo" ] && export PATH="$HOME/.cargo/bin:$PATH"

if [ -z "${SWQOS_BASE:-}" ] || [ -z "${SWQOS_BUILDER:-}" ]; then
    docker/make-local-base.sh
fi
base=${SWQOS_BASE:-swqos-local/debian:bookworm-slim}
builder=${SWQOS_BUILDER:-swqos-local/rust:bookworm}

# Crates for an offline build: vendored from the host's cargo cache (crates.io when missing)
# into a thin layer over the builder, whose CARGO_HOME config points cargo at them, offline.
# Cached: the layer is rebuilt only when Cargo.lock's crates change.
stage=/var/tmp/swqos-docker-context
mkdir -p "$stage"
if [ -z "${SWQOS_BUILDER:-}" ]; then
    say "cargo vendor (Cargo.lock) into the builder"
    rm -rf "$stage/crates"
    mkdir -p "$stage/crates"
    if ! cargo vendor --locked --offline -q --manifest-path "$root/Cargo.toml" "$stage/crates/vendor" >/dev/null 2>&1; then
        rm -rf "$stage/crates/vendor"
        cargo vendor --locked -q --manifest-path "$root/Cargo.toml" "$stage/crates/vendor" >/dev/null
    fi
    cat >"$stage/crates/config.toml" <<'TOML'
[source.crates-io]
replace-with = "vendored-sources"

[source.vendored-sources]
directory = "/usr/local/cargo/vendor"

[net]
offline = true
TOML
    cat >"$stage/crates/Dockerfile" <<DOCKERFILE
FROM $builder
COPY vendor /usr/local/cargo/vendor
COPY config.toml /usr/local/cargo/config.toml
DOCKERFILE
    builder=swqos-local/rust-crates:bookworm
    DOCKER_BUILDKIT=0 docker build --force-rm -t "$builder" "$stage/crates" >"$stage/crates.log" 2>&1 || {
        tail -n 30 "$stage/crates.log" >&2
        echo "error: building $builder failed" >&2
        exit 1
    }
    rm -rf "$stage/crates"
fi

# The context: the work tree as git sees it (tracked and new files, not target/ or ignored
# ones), without what cannot change the binaries (docs, scripts, the end-to-end tests), so that
# editing those keeps the compiled layer cached.
files() {
    if git -C "$root" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
        git -C "$root" ls-files -z --cached --others --exclude-standard
    else
        find . -path ./target -prune -o -path ./.git -prune -o -type f -print0 | sed -z 's|^\./||'
    fi | grep -zvE '^(docs/|scripts/|\.ci/|tests/tests/)|\.md$'
}
say "docker build -f docker/Dockerfile -t $image (BASE=$base BUILDER=$builder)"
t0=$(date +%s)
log=$stage/build.log
files | tar -C "$root" --no-recursion --ignore-failed-read --null -cf "$stage/context.tar" -T - 2>/dev/null || true
# The builder stage gets a tag of its own so its layers (the compiled workspace) stay cached
# when the dangling images of earlier builds are pruned below.
for target in builder runtime; do
    tag=$image
    [ "$target" = builder ] && tag=swqos-local/build-cache:latest
    if ! DOCKER_BUILDKIT=0 docker build --force-rm -f docker/Dockerfile --target "$target" -t "$tag" \
        --build-arg BASE="$base" --build-arg BUILDER="$builder" - <"$stage/context.tar" >"$log" 2>&1; then
        tail -n 60 "$log" >&2
        echo "error: docker build failed (whole log: $log)" >&2
        exit 1
    fi
done
rm -f "$stage/context.tar"
docker image prune -f >/dev/null 2>&1 || true
say "built $image in $(($(date +%s) - t0)) s ($(docker image inspect -f '{{.Size}}' "$image" | awk '{printf "%d MB", $1 / 1e6}'))"
