#!/usr/bin/env bash
# Installs what building and testing pgshift needs, when it can (as root on Debian), and
# otherwise says exactly what to install. Sourced by demo.sh and test.sh.
set -euo pipefail

say() { printf 'setup: %s\n' "$*" >&2; }
is_root() { [ "$(id -u)" = 0 ]; }
APT_UPDATED=0
apt_install() {
  if ! is_root || ! command -v apt-get >/dev/null 2>&1; then
    say "missing: $*"
    say "install it with: sudo apt-get install -y $*"
    exit 1
  fi
  if [ "$APT_UPDATED" = 0 ]; then
    say "apt-get update"
    apt-get update -qq
    APT_UPDATED=1
  fi
  say "apt-get install $*"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

# Rust toolchain (cargo, rustc).
if ! command -v cargo >/dev/null 2>&1; then
  say "cargo is missing: install Rust 1.82 or newer from https://rustup.rs (curl --proto '=https' -sSf https://sh.rustup.rs | sh)"
  exit 1
fi

# libclang: pg_query (PostgreSQL's own parser) generates its bindings with bindgen.
if ! ls /usr/lib/llvm-*/lib/libclang.so* /usr/lib/x86_64-linux-gnu/libclang*.so* >/dev/null 2>&1; then
  apt_install libclang-dev
fi

# PostgreSQL server binaries for the throwaway clusters of the tests and the demo.
have_server() {
  if [ -n "${PGSHIFT_PG_BIN:-}" ]; then [ -x "$PGSHIFT_PG_BIN/postgres" ]; return; fi
  if command -v pg_config >/dev/null 2>&1 && [ -x "$(pg_config --bindir)/postgres" ]; then return 0; fi
  ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1
}
if ! have_server; then
  if is_root; then
    # The tests start their own clusters; the package's default cluster is not wanted.
    mkdir -p /etc/postgresql-common
    [ -f /etc/postgresql-common/createcluster.conf ] || echo "create_main_cluster = false" > /etc/postgresql-common/createcluster.conf
  fi
  apt_install postgresql
fi

# As root, initdb and postgres must run as an unprivileged user; Debian's package creates
# `postgres`. With PGSHIFT_PG_BIN pointing elsewhere, make sure the user exists.
if is_root && ! id postgres >/dev/null 2>&1; then
  say "creating the system user postgres (initdb refuses to run as root)"
  useradd --system --no-create-home --shell /usr/sbin/nologin postgres
fi
