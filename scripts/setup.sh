#!/usr/bin/env bash
# Installs what building and testing pgshift needs, when it can (as root on Debian), and
# otherwise says exactly what to install, all of it in one line. Sourced by demo.sh and
# test.sh.
set -euo pipefail

say() { printf 'setup: %s\n' "$*" >&2; }
is_root() { [ "$(id -u)" = 0 ]; }

# Rust toolchain (cargo, rustc).
if ! command -v cargo >/dev/null 2>&1; then
  say "cargo is missing: install Rust 1.82 or newer from https://rustup.rs (curl --proto '=https' -sSf https://sh.rustup.rs | sh)"
  exit 1
fi

MISSING=()

# A C compiler and linker: rustup brings none, and cargo needs one to link, and to build
# PostgreSQL's parser (pg_query).
if ! command -v cc >/dev/null 2>&1; then
  MISSING+=(build-essential)
fi

# libclang: pg_query generates its bindings with bindgen.
# (ls fails when any one pattern matches nothing: count what it lists instead.)
if ! ls /usr/lib/llvm-*/lib/libclang.so* /usr/lib/*-linux-gnu/libclang*.so* 2>/dev/null | grep -q .; then
  MISSING+=(libclang-dev)
fi

# PostgreSQL server binaries (and pgbench) for the throwaway clusters of the tests and the
# demo.
have_server() {
  if [ -n "${PGSHIFT_PG_BIN:-}" ]; then [ -x "$PGSHIFT_PG_BIN/postgres" ]; return; fi
  if command -v pg_config >/dev/null 2>&1 && [ -x "$(pg_config --bindir)/postgres" ]; then return 0; fi
  ls /usr/lib/postgresql/*/bin/postgres 2>/dev/null | grep -q .
}
if ! have_server; then
  MISSING+=(postgresql)
fi

if [ "${#MISSING[@]}" -gt 0 ]; then
  if ! is_root || ! command -v apt-get >/dev/null 2>&1; then
    say "missing: ${MISSING[*]}"
    say "install them with: sudo apt-get install -y --no-install-recommends ${MISSING[*]}"
    exit 1
  fi
  if [[ " ${MISSING[*]} " == *" postgresql "* ]]; then
    # The tests start their own clusters; the package's default cluster is not wanted.
    mkdir -p /etc/postgresql-common
    [ -f /etc/postgresql-common/createcluster.conf ] || echo "create_main_cluster = false" > /etc/postgresql-common/createcluster.conf
  fi
  say "apt-get update"
  apt-get update -qq
  # Without recommends: postgresql would otherwise bring a mail server, cron and sysstat.
  say "apt-get install --no-install-recommends ${MISSING[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${MISSING[@]}" >/dev/null
fi

# As root, initdb and postgres must run as an unprivileged user; Debian's package creates
# `postgres`. With PGSHIFT_PG_BIN pointing elsewhere, make sure the user exists.
if is_root && ! id postgres >/dev/null 2>&1; then
  say "creating the system user postgres (initdb refuses to run as root)"
  useradd --system --no-create-home --shell /usr/sbin/nologin postgres
fi
