#!/usr/bin/env bash
# The whole test suite: formatting, lints, and every unit and integration test
# (integration tests start their own mariadbd servers on free loopback ports).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh --test
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
if command -v cargo-nextest >/dev/null 2>&1; then
  cargo nextest run --workspace --locked --no-fail-fast
else
  cargo test --workspace --locked --no-fail-fast
fi
