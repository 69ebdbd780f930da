#!/usr/bin/env bash
# Runs `pgshift lint` and squawk (the squawk-cli package from PyPI, installed into a
# temporary folder unless `squawk` is on PATH) over the lint corpus, and prints a Markdown
# table: for each file, the problems it is written to have, and which of them each tool
# reports. docs/lint.md shows its output.
#
#   ./scripts/lint-compare.sh            # squawk from PyPI (pip install --target)
#   SQUAWK=/path/to/squawk ./scripts/lint-compare.sh
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh

corpus=crates/pgshift/tests/lint/corpus
if [ -z "${SQUAWK:-}" ]; then
  if command -v squawk >/dev/null 2>&1; then
    SQUAWK=$(command -v squawk)
  else
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    python3 -m pip --version >/dev/null 2>&1 || apt_install python3-pip
    # --target keeps it out of the system's packages (Debian marks those as its own).
    PIP_BREAK_SYSTEM_PACKAGES=1 python3 -m pip install --quiet --target "$tmp" squawk-cli >&2
    SQUAWK="$tmp/bin/squawk"
  fi
fi
cargo build -j2 --quiet -p pgshift-cli
PGSHIFT="$PWD/target/debug/pgshift"

python3 - "$corpus" "$PGSHIFT" "$SQUAWK" <<'EOF'
import json, os, subprocess, sys

corpus, pgshift, squawk = sys.argv[1:4]

# The squawk rules that report the same problem as a pgshift rule.
SAME = {
    "require-concurrent-index-creation": {"require-concurrent-index-creation"},
    "require-concurrent-index-deletion": {"require-concurrent-index-deletion"},
    "require-concurrent-reindex": {"require-concurrent-reindex"},
    "ban-concurrent-index-creation-in-transaction": {"ban-concurrent-index-creation-in-transaction"},
    "adding-foreign-key-constraint": {"adding-foreign-key-constraint", "constraint-missing-not-valid"},
    "constraint-missing-not-valid": {"constraint-missing-not-valid"},
    "disallowed-unique-constraint": {"disallowed-unique-constraint", "adding-serial-primary-key-field"},
    "adding-not-nullable-field": {"adding-not-nullable-field"},
    "adding-required-field": {"adding-required-field"},
    "ban-drop-not-null": {"ban-drop-not-null"},
    "changing-column-type": {"changing-column-type"},
    "adding-field-with-volatile-default": {"adding-field-with-default"},
    "adding-auto-increment-column": {"adding-field-with-default"},
    "adding-stored-generated-column": {"adding-field-with-default"},
    "renaming-column": {"renaming-column"},
    "renaming-table": {"renaming-table"},
    "ban-drop-column": {"ban-drop-column"},
    "ban-drop-table": {"ban-drop-table"},
    "ban-drop-database": {"ban-drop-database"},
    "ban-truncate-cascade": {"ban-truncate-cascade"},
    "table-rewrite": {"prefer-repack"},
    "require-concurrent-partition-detach": {"require-concurrent-partition-detach"},
    "ban-create-domain-with-constraint": {"ban-create-domain-with-constraint"},
    "ban-alter-domain-with-add-constraint": {"ban-alter-domain-with-add-constraint"},
    "require-enum-value-ordering": {"require-enum-value-ordering"},
    "identifier-too-long": {"identifier-too-long"},
    "prefer-bigint-keys": {"prefer-bigint-over-int", "prefer-bigint-over-smallint"},
    "prefer-identity": {"prefer-identity"},
    "prefer-timestamptz": {"prefer-timestamptz", "prefer-timestamp-tz"},
    "ban-char-field": {"ban-char-field"},
    "prefer-text-field": {"prefer-text-field"},
    "require-timeout-settings": {"require-lock-timeout", "require-timeout-settings"},
    "transaction-nesting": {"transaction-nesting"},
    "ban-uncommitted-transaction": {"ban-uncommitted-transaction"},
}

def expected(path):
    side = path[:-4] + ".expect"
    line = open(side).read() if os.path.exists(side) else open(path).readline().split("expect:", 1)[1]
    return [r for r in line.split() if r != "clean"]

rows, totals = [], {"problems": 0, "pgshift": 0, "squawk": 0, "clean": 0, "pgshift_fp": 0, "squawk_fp": 0}
for folder in sorted(os.listdir(corpus)):
    d = os.path.join(corpus, folder)
    if not os.path.isdir(d):
        continue
    for name in sorted(os.listdir(d)):
        if not name.endswith(".sql"):
            continue
        path = os.path.join(d, name)
        shown = f"{folder}/{name}"
        p = subprocess.run([pgshift, "lint", "--config", os.path.join(d, "pgshift.toml"), "--output", "json", path], capture_output=True, text=True)
        ours = {f["rule"] for f in json.loads(p.stdout)["findings"]}
        args = [squawk, "--reporter", "json", path]
        if folder == "transaction":
            args.insert(1, "--assume-in-transaction")
        if folder in ("transaction", "pgshift"):
            # The runner of these files sets the timeouts (the folder's pgshift.toml says
            # so for pgshift lint); tell squawk the same.
            args.insert(1, "--exclude=require-lock-timeout,require-statement-timeout")
        s = subprocess.run(args, capture_output=True, text=True)
        theirs = {f["rule_name"] for f in json.loads(s.stdout or "[]")}
        want = expected(path)
        got_p = [r for r in want if r in ours]
        got_s = [r for r in want if SAME.get(r, set()) & theirs]
        explained = set().union(*(SAME.get(r, set()) for r in want)) if want else set()
        other = sorted(theirs - explained)
        totals["problems"] += len(want)
        totals["pgshift"] += len(got_p)
        totals["squawk"] += len(got_s)
        if not want:
            totals["clean"] += 1
            totals["pgshift_fp"] += bool(ours)
            totals["squawk_fp"] += bool(theirs)
        mark = lambda got: ", ".join(("yes" if r in got else "**no**") for r in want) if want else ""
        rows.append((shown, ", ".join(want) or "clean", mark(got_p) or (", ".join(sorted(ours)) or "clean"),
                     mark(got_s) or (", ".join(sorted(theirs)) or "clean"), ", ".join(other)))

print(f"pgshift: `{subprocess.run([pgshift, '--version'], capture_output=True, text=True).stdout.strip()}`; squawk: `{subprocess.run([squawk, '--version'], capture_output=True, text=True).stdout.strip()}`\n")
print("| file | written to have | pgshift lint | squawk | squawk's other findings |")
print("|---|---|---|---|---|")
for r in rows:
    print("| " + " | ".join(r) + " |")
print()
print(f"Problems caught: pgshift {totals['pgshift']} of {totals['problems']}, squawk {totals['squawk']} of {totals['problems']}.")
print(f"Clean files with a finding: pgshift {totals['pgshift_fp']} of {totals['clean']}, squawk {totals['squawk_fp']} of {totals['clean']}.")
EOF
