"""Flagship quality benchmark: `opto_nb design` with its default settings (QED, the shipped MOSES prior, 10 minutes or
`--oracle-budget` calls).

Prints the figures the run reaches against its targets (top-100 mean QED >= 0.93, validity of the final model's
fresh samples >= 0.9, internal diversity of the top 100 >= 0.6), next to the same figures of the NCI set embedded in
RDKit (the baseline: the best molecules one could pick from 4,892 drug-like molecules without any design). The
machine's load is printed before and after: on a shared machine the run gets fewer steps in its time budget.

    python benchmarks/bench_design.py               # the default run: 10 minutes
    python benchmarks/bench_design.py --minutes 3   # shorter
    python benchmarks/bench_design.py --quick       # 1 minute (a smoke run; the targets are for 10 minutes)
"""
import argparse, json, os, shutil, tempfile, time
from pathlib import Path

TARGETS = {'top100_mean': 0.93, 'validity': 0.9, 'top100_internal_diversity': 0.6}


def load() -> str:
    try: return ' '.join(f'{x:.2f}' for x in os.getloadavg()) + f' (load average 1/5/15 min, {os.cpu_count()} CPUs)'
    except OSError: return 'unknown'


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--minutes', type=float, default=10.0, help='time budget of the design run')
    ap.add_argument('--quick', action='store_true', help='a 1-minute smoke run')
    ap.add_argument('--seed', type=int, default=0)
    ap.add_argument('--oracle-budget', type=int, default=None, help='end the run after this many oracle calls')
    ap.add_argument('--out', default=None, help='keep the run folder here (default: a temporary folder, deleted)')
    args = ap.parse_args()
    minutes = 1.0 if args.quick else args.minutes

    from opto_nb import chem
    from opto_nb.design import DesignConfig, run_design, design_dataset
    cfg = DesignConfig(minutes=minutes, seed=args.seed, oracle_budget=args.oracle_budget)
    train, _, _ = design_dataset(cfg)
    base = chem.top_k_metrics(train, chem.qed(train), k=100)
    print(f'load before: {load()}')
    tmp = None if args.out else tempfile.mkdtemp(prefix='bench_design_')
    out = Path(args.out) if args.out else Path(tmp) / 'run'
    t0 = time.monotonic()
    try:
        s = run_design(cfg, out, quiet=True)
    finally:
        wall = time.monotonic() - t0
        print(f'load after:  {load()}')
    figures = {'top100_mean': s['top100_mean'], 'validity': s['validity'],
               'top100_internal_diversity': s['top100_internal_diversity']}
    baseline = {'top100_mean': base['top_mean'], 'validity': 1.0,
                'top100_internal_diversity': base['top_internal_diversity']}
    print(f"\nopto_nb design --objective qed --minutes {minutes:g} (seed {args.seed}): "
          f"{s['pretrain_steps']} pretrain + "
          f"{s['rl_steps']} RL steps in {wall:.0f} s wall time")
    print(f"{'figure':30s} {'run':>8s} {'target':>8s} {'ok':>4s} {'NCI set':>9s}")
    for k, v in figures.items():
        print(f"{k:30s} {v:8.4f} {TARGETS[k]:8.2f} {'yes' if v >= TARGETS[k] else 'NO':>4s} {baseline[k]:9.4f}")
    print(f"{'validity, RL batches (last 1/4)':30s} {s.get('batch_validity_last_quarter', float('nan')):8.4f}")
    print(f"{'best QED':30s} {s['best']:8.4f}          {'':4s} {base['top_max']:9.4f}")
    print(f"top-100 mean QED vs the NCI set's top 100: {figures['top100_mean'] / base['top_mean']:.3f}x")
    print(f"oracle: {s['n_calls']} calls, AUC top-1/10/100 {s['auc_top1']:.4f} / {s['auc_top10']:.4f} / "
          f"{s['auc_top100']:.4f}, rejected by the sanity filter {s['rejected']}")
    print(json.dumps({'minutes': minutes, 'wall_seconds': round(wall, 1), **figures,
                      'pretrain_steps': s['pretrain_steps'], 'rl_steps': s['rl_steps'], 'n_calls': s['n_calls'],
                      'auc_top10': s['auc_top10']}))
    if tmp: shutil.rmtree(tmp, ignore_errors=True)


if __name__ == '__main__':
    main()
