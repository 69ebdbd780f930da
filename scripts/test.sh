#!/usr/bin/env bash
# Runs pgshift's whole test suite: formatting, lints (warnings denied), then every test,
# each against a real PostgreSQL that the test kit starts.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh

cargo fmt --all -- --check
cargo clippy -j2 --workspace --all-targets --locked -- -D warnings
cargo test -j2 --workspace --locked
