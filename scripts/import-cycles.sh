#!/usr/bin/env bash
# Lists import cycles between the library's modules (a folder counts as one module), from
# the `crate::<module>` paths each file names. Prints "no import cycle" and exits 0 when
# there is none; otherwise prints each cycle and exits 1.
set -euo pipefail
cd "$(dirname "$0")/../crates/pgshift/src"
python3 - <<'PY'
import os, re, sys
edges = {}
for entry in sorted(os.listdir('.')):
    if entry == 'lib.rs':
        continue
    name = entry[:-3] if entry.endswith('.rs') else entry
    files = [entry] if entry.endswith('.rs') else [
        os.path.join(root, f) for root, _, fs in os.walk(entry) for f in fs if f.endswith('.rs')]
    deps = set()
    for f in files:
        text = open(f).read()
        # Comments do not import.
        text = re.sub(r'//[^\n]*', '', text)
        deps |= set(re.findall(r'crate::([a-z_]+)', text))
    deps.discard(name)
    edges[name] = deps
cycles, state = [], {}
def visit(node, path):
    state[node] = 'open'
    for dep in sorted(edges.get(node, ())):
        if dep not in edges:
            continue
        if state.get(dep) == 'open':
            cycles.append(path[path.index(dep):] + [dep])
        elif dep not in state:
            visit(dep, path + [dep])
    state[node] = 'done'
for node in sorted(edges):
    if node not in state:
        visit(node, [node])
if cycles:
    for c in cycles:
        print('import cycle: ' + ' -> '.join(c))
    sys.exit(1)
print(f'no import cycle among {len(edges)} modules')
PY
