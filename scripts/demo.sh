#!/usr/bin/env bash
# Shows what pgshift does today against a throwaway PostgreSQL (started from the machine's
# server binaries, removed at the end).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh

cargo build -j2 --locked --bin pgshift --bin pgshift-sandbox
export PATH="$PWD/target/debug:$PATH"
exec pgshift-sandbox bash scripts/showcase.sh
