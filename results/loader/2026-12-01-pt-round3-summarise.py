import re, sys, glob, statistics as st
def parse(f):
    d = {}
    cur = None
    for line in open(f):
        m = re.match(r'(\w+): state Live', line)
        if m: cur = m.group(1); continue
        m = re.match(r'\s+load cycles: (.*)', line)
        if m and cur:
            kv = m.group(1).split()
            d[cur] = {kv[i]: int(kv[i+1]) for i in range(0, len(kv), 2)}
            continue
        m = re.match(r'module (\w+): relocation (\d+) cycles, (\d+) again', line)
        if m and m.group(1) in d:
            d[m.group(1)]['reloc_cold'] = int(m.group(2)); d[m.group(1)]['reloc_warm'] = int(m.group(3))
    for v in d.values():
        v['alloc+protect'] = v['allocate'] + v['protect']
        v['a+p+init'] = v['allocate'] + v['protect'] + v['init']
        v['tail'] = v['total'] - sum(v[k] for k in ['copy', 'verify', 'validate', 'params', 'layout'])
    return d
def fmt(xs):
    k = lambda x: f"{x/1e6:.2f} M" if x >= 1e6 else (f"{x/1e3:.0f} k" if x >= 1e4 else f"{x/1e3:.1f} k" if x >= 1000 else f"{x}")
    return f"{k(st.median(xs))} ({k(min(xs))}–{k(max(xs))})"
prefixes = sys.argv[1:]
runs = {p: [parse(f) for f in sorted(glob.glob(p + '-*.txt'))] for p in prefixes}
steps = ['allocate', 'protect', 'alloc+protect', 'relocate', 'init', 'a+p+init', 'tail', 'total', 'reloc_cold', 'reloc_warm']
print('| module | step | ' + ' | '.join(f'{p.split("round3-")[-1]} (n={len(runs[p])})' for p in prefixes) + ' |')
print('|---|---|' + '---|' * len(prefixes))
for mod in ['hello', 'crc32', 'big']:
    for s in steps:
        print(f'| {mod} | {s} | ' + ' | '.join(fmt([r[mod][s] for r in runs[p] if mod in r]) for p in prefixes) + ' |')
