"""Buffer benchmarks: add with dedup (target >= 1,000,000 items/s) and weighted sampling of 1,024 from 1,000,000 items
against numpy.random.Generator.choice(p=..., replace=False), measured in the same run (target >= 20x faster).

    python benchmarks/bench_buffers.py           # 1,000,000 items
    python benchmarks/bench_buffers.py --quick   # 200,000 items, fewer repeats
    python benchmarks/bench_buffers.py --table   # per-draw cost at 10^4, 10^5, 10^6 items, every transform

The table gives each cost as a ratio against a baseline measured in the same run at the same size (one
`Generator.choice(n, k, replace=False, p=...)`, an O(n) draw), so that a loaded machine shifts both alike; it also
has a row for rank weights re-computed from all scores after every change (the same ranks as a callable transform),
the cost 'rank' avoids by drawing from the score order.
"""
import argparse, os, statistics, time
import numpy as np
from opto_nb.buffers import Buffer, WeightedBuffer
from opto_nb.draw_weights import TRANSFORMS, transform_scores

def best_of(fn, repeats):
    "Median and best wall time of `repeats` calls of `fn`."
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts), min(ts)

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--quick', action='store_true', help='smaller sizes, fewer repeats')
    ap.add_argument('--n', type=int, default=None, help='buffer size (default 1,000,000; 200,000 with --quick)')
    ap.add_argument('--k', type=int, default=1024, help='items per weighted draw')
    ap.add_argument('--table', action='store_true',
                    help='only the per-draw cost table: 10^4, 10^5, 10^6 items, every transform, with and without '
                         'consume and pct_argmax')
    a = ap.parse_args()
    n = a.n or (200_000 if a.quick else 1_000_000)
    reps = 3 if a.quick else 7
    rng = np.random.default_rng(0)
    if a.table: return draw_table(a.k, reps, rng)
    print(f"bench_buffers: n={n:,}, k={a.k}, repeats={reps}")

    # 1. add with dedup: fresh items, then the same items again (all duplicates), then a 50% overlap
    items = [f"C{i}O{i % 97}" for i in range(n)]
    half = items[n // 2:] + [f"N{i}" for i in range(n // 2)]
    def add_fresh(): Buffer(0.5).add(items, 'model')
    b = Buffer(0.5)
    b.add(items, 'model')
    def add_dups(): b.add(items, 'model')
    def add_half():
        c = Buffer(0.5)
        c.add(items, 'model')
        t0 = time.perf_counter()
        c.add(half, 'model')
        return time.perf_counter() - t0
    fresh, _ = best_of(add_fresh, reps)
    dups, _ = best_of(add_dups, reps)
    halfs = statistics.median(add_half() for _ in range(max(1, reps // 2)))
    def baseline():                       # the obvious loop doing the same bookkeeping (slot index, samples, sources)
        index, samples, sources = {}, [], []
        for x in items:
            if x in index: continue
            index[x] = len(samples)
            samples.append(x)
            sources.append('model')
    base, _ = best_of(baseline, reps)
    print(f"add, all new         : {n / fresh / 1e6:6.2f} M items/s   (target >= 1.00)")
    print(f"add, all duplicates  : {n / dups / 1e6:6.2f} M items/s")
    print(f"add, half duplicates : {n / halfs / 1e6:6.2f} M items/s")
    print(f"baseline python loop : {n / base / 1e6:6.2f} M items/s   -> Buffer.add is {base / fresh:.2f}x as fast as "
          f"the loop")

    # 2. weighted sampling without replacement, 1,024 of n.
    # (a) the draw itself (indices): the sum tree vs Generator.choice(p=..., replace=False);
    # (b) end to end: WeightedBuffer.sample returns the items and their sources, so the baseline gathers them too
    #     (returning Python objects costs a cache miss or two per item, the same on both sides).
    scores = rng.random(n)
    w = WeightedBuffer(0.5, weight_transform='none', seed=0)
    w.add(range(n), 'model', scores=scores)
    w.sample(a.k, consume=False)                      # warm-up (weights already built at add)
    p = scores / scores.sum()
    g = np.random.default_rng(1)
    tr = np.random.default_rng(2)
    samples, sources = w._samples, w._sources
    def np_items():
        idx = g.choice(n, a.k, replace=False, p=p).tolist()
        return [samples[i] for i in idx], [sources[i] for i in idx]
    tree, tree_best = best_of(lambda: w._tree.draw(a.k, tr), reps * 3)
    ours, ours_best = best_of(lambda: w.sample(a.k, consume=False), reps * 3)
    npy, npy_best = best_of(lambda: g.choice(n, a.k, replace=False, p=p), reps)
    npy_items, npy_items_best = best_of(np_items, reps)
    print(f"weighted draw of {a.k} indices from {n:,}: sum tree {tree * 1e3:.3f} ms (best {tree_best * 1e3:.3f}), "
          f"Generator.choice(p=..., replace=False) {npy * 1e3:.3f} ms (best {npy_best * 1e3:.3f})")
    print(f"  -> {npy / tree:.1f}x faster (median), {npy_best / tree_best:.1f}x (best)   (target >= 20x)")
    print(f"WeightedBuffer.sample({a.k}) items+sources: {ours * 1e3:.3f} ms (best {ours_best * 1e3:.3f}); "
          f"choice + the same gathering {npy_items * 1e3:.3f} ms (best {npy_items_best * 1e3:.3f})")
    print(f"  -> {npy_items / ours:.1f}x faster (median), {npy_items_best / ours_best:.1f}x (best)")
    cons, _ = best_of(lambda: w.sample(a.k, consume=True), reps)
    print(f"WeightedBuffer.sample({a.k}, consume=True) (removal + tree updates): {cons * 1e3:.3f} ms")

    # 3. an argmax share: the top items come from a max tree kept next to the sum tree (O(m log n) per draw),
    #    not from copying and partitioning all n weights (O(n) per draw)
    m = a.k // 2
    wa = WeightedBuffer(0.5, weight_transform='none', pct_argmax=0.5, seed=0)
    wa.add(range(n), 'model', scores=scores)
    wa.sample(a.k, consume=False)                     # warm-up (builds the max tree once)
    top, _ = best_of(lambda: wa._tree.top(m), reps * 3)
    def partition_top():                              # the O(n) way: copy + partition + sort the top
        lw = wa._tree.leaves[:n].copy()
        t = np.argpartition(-lw, m - 1)[:m]
        return t[np.argsort(-lw[t], kind='stable')]
    part, _ = best_of(partition_top, reps)
    assert np.array_equal(np.sort(wa._tree.leaves[wa._tree.top(m)]), np.sort(wa._tree.leaves[partition_top()]))
    with_top, _ = best_of(lambda: wa.sample(a.k, consume=False), reps * 3)
    print(f"top {m} of {n:,} for pct_argmax=0.5: max tree {top * 1e3:.3f} ms, copy + argpartition "
          f"{part * 1e3:.3f} ms  -> {part / top:.1f}x; WeightedBuffer.sample({a.k}, pct_argmax=0.5) "
          f"{with_top * 1e3:.3f} ms")

    # 4. consume=True: with 'shift' a removal re-weights nothing unless the lowest score leaves, and 'rank' draws
    #    from the score order (O(k log n) removals), so neither re-weights n items per draw; the callable computing
    #    the same ranks from all scores does, after every consuming draw
    def consumed(transform, repeats):
        wt = WeightedBuffer(0.5, weight_transform=transform, seed=0)
        wt.add(range(n), 'model', scores=scores)
        wt.sample(a.k)
        return best_of(lambda: wt.sample(a.k), repeats)[0]
    none_c, shift_c, rank_c = consumed('none', reps * 3), consumed('shift', reps * 3), consumed('rank', reps * 3)
    rerank_c = consumed(_explicit_ranks, reps)
    print(f"WeightedBuffer.sample({a.k}, consume=True): 'none' {none_c * 1e3:.3f} ms, 'shift' {shift_c * 1e3:.3f} ms "
          f"({shift_c / none_c:.2f}x of 'none'), 'rank' {rank_c * 1e3:.3f} ms ({rank_c / none_c:.2f}x), ranks "
          f"re-computed from all scores {rerank_c * 1e3:.3f} ms ({rerank_c / rank_c:.1f}x of 'rank')")

def _explicit_ranks(scores):
    "The rank weights computed from all scores (as a callable transform: O(n log n) after every change)."
    return transform_scores(scores, 'rank')

def draw_table(k, reps, rng, sizes=(10_000, 100_000, 1_000_000)):
    ("Median cost of one `WeightedBuffer.sample(k)` per size, transform, consume and pct_argmax, with its ratio to a "
     "baseline measured in the same run (a markdown table).")
    load = ', '.join(f'{x:.2f}' for x in os.getloadavg())
    print(f"WeightedBuffer.sample({k}): median ms per draw over {reps} draws (after one warm-up draw), and in "
          f"parentheses the ratio to the baseline of the same size: one Generator.choice(n, {k}, replace=False, p=...) "
          f"(O(n)), measured in this run. {os.cpu_count()} CPUs, load average {load} at the start.\n")
    cols = [(c, p) for c in (False, True) for p in (0.0, 0.5)]
    rows = [(name, name) for name in TRANSFORMS] + [('rank, re-computed from all scores', _explicit_ranks)]
    print("| items | transform | baseline ms | " + " | ".join(f"consume={c}, pct_argmax={p}" for c, p in cols) + " |")
    print("|---|---|---|" + "---|" * len(cols))
    for n in sizes:
        scores = rng.random(n)
        p = scores / scores.sum()
        g = np.random.default_rng(1)
        base, _ = best_of(lambda: g.choice(n, k, replace=False, p=p), reps)
        for label, transform in rows:
            cells = []
            for consume, pct in cols:
                wb = WeightedBuffer(0.5, weight_transform=transform, pct_argmax=pct, seed=0)
                wb.add(range(n), 'model', scores=scores)
                wb.sample(k, consume=consume)
                med, _ = best_of(lambda: wb.sample(k, consume=consume), reps)
                cells.append(f"{med * 1e3:.3f} ({med / base:.3f}x)")
            print(f"| {n:,} | {label} | {base * 1e3:.3f} | " + " | ".join(cells) + " |", flush=True)

if __name__ == '__main__': main()
