"""Sample-efficiency benchmark in the manner of PMO (Gao et al. 2022): `opto_nb design` on PMO goal-directed tasks
under an oracle-call budget, scored by the area under the top-10 curve (AUC top-10, in [0, 1]), per task and summed,
for several methods in the same run:

* `reinvent`: the default of `opto_nb design` (augmented-likelihood learner from the shipped MOSES prior);
* `ppo`: the PPO learner from the shipped MOSES prior;
* `previous`: the default before the shipped prior, PPO from a model pretrained on the embedded NCI set for
  `--nci-pretrain-steps` steps (about 4 minutes, as that default spent); the pretraining runs once per seed and every
  task of that seed starts from it.

A script, not a test: the full run (11 tasks x 3 seeds x 2 methods at 10,000 calls) takes hours on a CPU.

    python benchmarks/bench_design_budget.py                                     # everything (hours)
    python benchmarks/bench_design_budget.py --tasks qed --budget 300 --seeds 1  # a smoke run (a minute or two)
"""
import argparse, shutil, statistics, sys, tempfile, time
from pathlib import Path

TASKS = ['celecoxib_rediscovery', 'troglitazone_rediscovery', 'thiothixene_rediscovery', 'albuterol_similarity',
         'mestranol_similarity', 'isomers_c7h8n2o2', 'isomers_c9h10n2o2pf2cl', 'osimertinib_mpo', 'fexofenadine_mpo',
         'median1', 'qed']


METHODS = {'reinvent': dict(learner='reinvent', prior='moses'), 'ppo': dict(learner='ppo', prior='moses'),
           'previous': dict(learner='ppo', prior='nci')}


def mean_sd(xs):
    return f"{statistics.mean(xs):.3f}" + (f" ± {statistics.stdev(xs):.3f}" if len(xs) > 1 else '')


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--budget', type=int, default=10_000, help='oracle calls per run (default: 10000, as PMO)')
    ap.add_argument('--seeds', type=int, default=3, help='runs per task and learner, seeds 0..N-1 (default: 3)')
    ap.add_argument('--tasks', nargs='+', default=TASKS, choices=TASKS, metavar='TASK',
                    help=f"PMO tasks (default: all {len(TASKS)}: {', '.join(TASKS)})")
    ap.add_argument('--methods', nargs='+', default=['reinvent', 'previous'], choices=list(METHODS),
                    help='what to compare (default: reinvent previous)')
    ap.add_argument('--nci-pretrain-steps', type=int, default=2400,
                    help="pretraining steps on the NCI set of the 'previous' method (default: 2400)")
    ap.add_argument('--pretrained', default=None, metavar='DIR',
                    help="reuse the NCI-pretrained models of an earlier run of this script (its --out DIR, folders "
                         "nci-pretrain-seedN) instead of pretraining again")
    ap.add_argument('--max-minutes', type=float, default=120.0,
                    help='wall-clock cap of one run, should it stop finding new molecules (default: 120)')
    ap.add_argument('--out', default=None, help='keep the run folders here (default: a temporary folder, deleted)')
    args = ap.parse_args(argv)

    from opto_nb.design import DesignConfig, run_design
    from opto_nb.objectives import pmo_task
    root = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix='bench_design_budget_'))
    methods = args.methods
    auc = {(t, m): [] for t in args.tasks for m in methods}
    secs = {(t, m): 0.0 for t in args.tasks for m in methods}
    nci_models = {}

    def prior_of(method, seed):
        "The --prior of a run: the shipped prior, or this seed's model pretrained on NCI (trained on first use)."
        if METHODS[method]['prior'] != 'nci': return METHODS[method]['prior']
        earlier = Path(args.pretrained or root) / f'nci-pretrain-seed{seed}'
        if seed not in nci_models and (earlier / 'summary.json').exists(): nci_models[seed] = str(earlier)
        if seed not in nci_models:
            t0 = time.monotonic()
            cfg = DesignConfig(prior='nci', learner='ppo', pretrain_steps=args.nci_pretrain_steps, rl_steps=0,
                               minutes=None, seed=seed, n_eval=256)
            s = run_design(cfg, root / f'nci-pretrain-seed{seed}', quiet=True, dashboard=None)
            nci_models[seed] = str(root / f'nci-pretrain-seed{seed}')
            print(f"NCI pretraining, seed {seed}: {s['pretrain_steps']} steps, validity {s['validity']:.3f}, "
                  f"{time.monotonic() - t0:.0f} s", file=sys.stderr, flush=True)
        return nci_models[seed]

    try:
        for task in args.tasks:
            for method in methods:
                for seed in range(args.seeds):
                    cfg = DesignConfig(minutes=args.max_minutes, oracle_budget=args.budget, seed=seed, n_eval=256,
                                       learner=METHODS[method]['learner'], prior=prior_of(method, seed))
                    t0 = time.monotonic()
                    s = run_design(cfg, root / f'{task}-{method}-seed{seed}', objective=pmo_task(task), quiet=True,
                                   dashboard=None)
                    secs[task, method] += time.monotonic() - t0
                    auc[task, method].append(s['auc_top10'])
                    print(f"{task} {method} seed {seed}: AUC top-10 {s['auc_top10']:.4f}, top-10 {s['top10']:.4f}, "
                          f"{s['n_calls']} calls, fresh samples unique {s.get('uniqueness', float('nan')):.3f} "
                          f"valid {s['validity']:.3f}, {time.monotonic() - t0:.0f} s", file=sys.stderr, flush=True)
    finally:
        if not args.out: shutil.rmtree(root, ignore_errors=True)

    print(f"\n### AUC top-10 at {args.budget} oracle calls, {args.seeds} seed(s), methods {', '.join(methods)}\n")
    print('| task | ' + ' | '.join(f'{m} AUC top-10 | {m} s' for m in methods) + ' |')
    print('|---|' + '---:|---:|' * len(methods))
    for task in args.tasks:
        cells = [f"{mean_sd(auc[task, m])} | {secs[task, m] / args.seeds:.0f}" for m in methods]
        print(f"| {task} | " + ' | '.join(cells) + ' |')
    sums = [f"**{sum(statistics.mean(auc[t, m]) for t in args.tasks):.3f}** | "
            f"{sum(secs[t, m] for t in args.tasks) / args.seeds:.0f}" for m in methods]
    print('| **sum** | ' + ' | '.join(sums) + ' |')
    print('\n(s: mean wall seconds of one run; AUC: mean ± sd over the seeds)')


if __name__ == '__main__':
    main()
