#!/usr/bin/env python3
"""Module import graph of a crate's src/: prints cycles (mutual imports)."""
import os, re, sys
root = sys.argv[1]
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
for m, p in mods.items():
    src = open(p).read()
    src = src.split('#[cfg(test)]\nmod tests')[0]
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
bad = 0
for a in edges:
    for b in edges[a]:
        if a < b and a in edges[b]:
            print('cycle:', '::'.join(a) or 'crate', '<->', '::'.join(b) or 'crate'); bad += 1
# longer cycles
color = {}
def dfs(n, stack):
    color[n] = 1; stack.append(n)
    for m in edges[n]:
        if color.get(m) == 1:
            cyc = stack[stack.index(m):]
            if len(cyc) > 2: print('cycle:', ' -> '.join('::'.join(x) or 'crate' for x in cyc + [m]))
        elif m not in color: dfs(m, stack)
    stack.pop(); color[n] = 2
for n in sorted(edges): 
    if n not in color: dfs(n, [])
sys.exit(1 if bad else 0)
