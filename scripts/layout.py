#!/usr/bin/env python3
"""Checks a crate's module layout: no module imports a module that imports it
(directly or round a longer cycle), and, with --max-lines N, no file has more
than N lines of code (the inline #[cfg(test)] module does not count).

Usage: layout.py SRC_DIR [--max-lines N]; exits 1 on a finding."""
import os, re, sys
root = sys.argv[1]
max_lines = int(sys.argv[sys.argv.index('--max-lines') + 1]) if '--max-lines' in sys.argv else None
mods = {}
for d, _, fs in os.walk(root):
    for f in fs:
        if not f.endswith('.rs'): continue
        p = os.path.join(d, f); rel = os.path.relpath(p, root)[:-3].split(os.sep)
        if rel[-1] in ('mod', 'lib', 'main'): rel = rel[:-1]
        if rel[:1] == ['bin']: continue
        mods[tuple(rel)] = p
def resolve(cur, path):
    parts = path.split('::')
    base = list(cur)
    if parts[0] == 'crate': base = []; parts = parts[1:]
    elif parts[0] == 'self': parts = parts[1:]
    elif parts[0] == 'super':
        while parts and parts[0] == 'super': base = base[:-1]; parts = parts[1:]
    else:
        if tuple(base + parts[:1]) not in mods: return None
    best = tuple(base)
    for i in range(len(parts)):
        cand = tuple(base + parts[:i+1])
        if cand in mods: best = cand
        else: break
    return best
edges = {m: set() for m in mods}
bad = 0
for m, p in mods.items():
    src = open(p).read()
    src = re.split(r'#\[cfg\(test\)\]\n(?:pub(?:\(crate\))? )?mod tests', src)[0]
    code_lines = src.count('\n')
    if max_lines is not None and code_lines > max_lines:
        print(f'{p}: {code_lines} lines of code, more than {max_lines}')
        bad = 1
    src = re.sub(r'//[^\n]*', '', src)
    for u in re.findall(r'(?<![\w:])((?:\w+)(?:::\w+)+)', src):
        t = resolve(m, u)
        if t is not None and t != m and t in mods: edges[m].add(t)
    for u in re.findall(r'\buse\s+((?:crate|super|self)::[\w:]*)\{([^}]*)\}', src):
        for item in u[1].split(','):
            item = item.strip().split(' as ')[0].split('::')[0]
            if item and item != 'self':
                t = resolve(m, u[0] + item)
                if t is not None and t != m and t in mods: edges[m].add(t)
for a in edges:
    for b in edges[a]:
        if a < b and a in edges[b]:
            print(f'{root}: cycle:', '::'.join(a) or 'crate', '<->', '::'.join(b) or 'crate'); bad = 1
# longer cycles
color = {}
def dfs(n, stack):
    global bad
    color[n] = 1; stack.append(n)
    for m in edges[n]:
        if color.get(m) == 1:
            cyc = stack[stack.index(m):]
            if len(cyc) > 2:
                print(f'{root}: cycle:', ' -> '.join('::'.join(x) or 'crate' for x in cyc + [m]))
                bad = 1
        elif m not in color: dfs(m, stack)
    stack.pop(); color[n] = 2
for n in sorted(edges): 
    if n not in color: dfs(n, [])
sys.exit(1 if bad else 0)
