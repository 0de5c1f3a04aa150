#!/usr/bin/env bash
# Runs every test: formatting, lints, unit tests, and the end-to-end tests that start the real
# dataplane on DPDK vdevs and check its frames with tshark. Run as root on Debian 12.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
[ -x "$HOME/.cargo/bin/cargo" ] && export PATH="$HOME/.cargo/bin:$PATH"
echo "==> Python packages for the tests (solana-py: tests/tests/rpc_upstream.rs; setup.sh: aioquic)" >&2
# Pinned; PIP_BREAK_SYSTEM_PACKAGES lets Debian's own python3 take it (PEP 668).
PIP_BREAK_SYSTEM_PACKAGES=1 python3 -m pip install --quiet --disable-pip-version-check \
    --root-user-action=ignore 'solana==0.36.12'

echo "==> cargo fmt --check" >&2
cargo fmt --all -- --check
echo "==> cargo clippy -D warnings" >&2
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "==> cargo build (binaries for the end-to-end tests)" >&2
cargo build --workspace --bins --locked
echo "==> Rust's solana-rpc-client against the JSON-RPC endpoint (tests/solana-rpc, its own workspace)" >&2
cargo fmt --manifest-path tests/solana-rpc/Cargo.toml -- --check
SWQOS_BIN_DIR="$PWD/target/debug" CARGO_TARGET_DIR=target/solana-rpc \
    cargo test --manifest-path tests/solana-rpc/Cargo.toml --locked -- --test-threads=1
echo "==> loom model of the session-table protocol (shm/tests/session_model.rs)" >&2
# Its own target directory: `--cfg loom` rebuilds the crate and its dependencies.
RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom \
    cargo test -p swqos-shm --test session_model --release --locked
echo "==> fuzzing: a bounded run of every cargo-fuzz target (fuzz/README.md)" >&2
# libFuzzer needs flags only nightly accepts; RUSTC_BOOTSTRAP lets the stable toolchain take them.
command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --version 0.13.2 --locked
(
    cd fuzz
    export RUSTC_BOOTSTRAP=1
    cargo fuzz build -O
    for target in $(cargo fuzz list); do
        corpus=$(mktemp -d)
        cargo fuzz run -O "$target" "$corpus" "seeds/$target" -- -max_total_time="${SWQOS_FUZZ_SECONDS:-20}"
        rm -rf "$corpus"
    done
)
# Last, so the run closes on the test runner's own summary.
echo "==> cargo test" >&2
# One test at a time: end-to-end tests each run a dataplane that busy-polls a core.
cargo test --workspace --locked -- --test-threads=1
