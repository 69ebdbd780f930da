#!/usr/bin/env bash
# `pgshift demo`: starts a throwaway PostgreSQL from the machine's server binaries, runs the
# seed scenarios (S1 222,000 rows; S2 and S3 2,000,000 rows) under client traffic, prints
# figures per scenario and writes pgshift-demo-report.html. About 2.5 minutes on 2 cores.
# Extra arguments go to `pgshift demo` (e.g. --rows 200000, --only S1,S3, --output json).
# A step-by-step tour of the commands: cargo build --bin pgshift --bin pgshift-sandbox, then
# PATH="$PWD/target/debug:$PATH" pgshift-sandbox bash scripts/showcase.sh
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh

cargo build -j2 --locked --bin pgshift
exec target/debug/pgshift demo "$@"
