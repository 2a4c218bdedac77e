#!/usr/bin/env python
"""Aggregate the issue-24 debian runs with the committed natural/ado runs (same corpus sha256)."""
import json, glob, sys, shutil, os
import numpy as np, scipy.stats as st
base = json.load(open('benchmarks/results/debian-cpu-full/report.json'))
nat_w = base['natural_weights']
doms = base['domains']
runs = {}
for x in base['runs']:
    if x['policy'] in ('natural', 'ado', 'doremi'):
        lab = {'doremi': 'doremi-eta1'}.get(x['policy'], x['policy'])
        runs[(lab, x['seed'])] = x
out = 'benchmarks/results/transfer-debian/runs'
for f in sorted(glob.glob('/work/runs-i24/debian-*/runs/*/seed*/result.json')):
    r = json.load(open(f))
    lab = {'doremi': 'doremi-eta0.1'}.get(r['policy'], r['policy'])
    r['uniform_avg'] = float(np.mean([r['heldout_loss'][d] for d in doms]))
    w = np.array([nat_w[d] for d in doms]); w = w / w.sum()
    r['natural_avg'] = float(np.dot(w, [r['heldout_loss'][d] for d in doms]))
    runs[(lab, r['seed'])] = r
    dst = f"{out}/{lab}-seed{r['seed']}.json"
    json.dump(r, open(dst, 'w'), indent=1)
keys = ['uniform_avg', 'natural_avg'] + list(base['runs'][0]['ood_loss'])
def val(x, k): return x[k] if k in ('uniform_avg', 'natural_avg') else x['ood_loss'][k]
labels = ['natural', 'ado', 'ado-transfer', 'doremi-eta0.1', 'doremi-eta1']
print('| policy | seeds | ' + ' | '.join(keys) + ' |')
print('|---|---|' + '---|' * len(keys))
for lab in labels:
    seeds = sorted(s for (l, s) in runs if l == lab)
    if not seeds: continue
    cells = []
    for k in keys:
        v = [val(runs[(lab, s)], k) for s in seeds]
        cells.append(f"{np.mean(v):.4f}" + (f" ± {np.std(v, ddof=1):.4f}" if len(v) > 1 else ""))
    print(f"| {lab} | {', '.join(map(str, seeds))} | " + ' | '.join(cells) + ' |')
print()
print('| comparison | metric | mean Δ | per seed | 95 % interval | lower on |')
print('|---|---|---|---|---|---|')
for a, b in [('ado-transfer', 'natural'), ('ado-transfer', 'ado'), ('doremi-eta0.1', 'natural'), ('doremi-eta0.1', 'ado'), ('doremi-eta0.1', 'doremi-eta1')]:
    seeds = sorted(s for (l, s) in runs if l == a and (b, s) in runs)
    if not seeds: continue
    for k in keys:
        d = np.array([val(runs[(a, s)], k) - val(runs[(b, s)], k) for s in seeds])
        if len(d) > 1:
            h = st.t.ppf(0.975, len(d) - 1) * d.std(ddof=1) / np.sqrt(len(d)); ci = f"[{d.mean()-h:+.4f}, {d.mean()+h:+.4f}]"
        else:
            ci = '(1 seed)'
        print(f"| {a} vs {b} | {k} | {d.mean():+.4f} | " + ', '.join(f'{s}: {v:+.4f}' for s, v in zip(seeds, d)) + f" | {ci} | {int((d < 0).sum())} of {len(d)} |")
print()
for lab in labels:
    for s in sorted(s for (l, s) in runs if l == lab):
        x = runs[(lab, s)]
        print(lab, s, 'tokens', {d: x['tokens_seen'][d] for d in doms}, 'resumed', x.get('resumed'), 'wall', round(x.get('wall_seconds', 0)))
