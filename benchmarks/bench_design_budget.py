"""Sample-efficiency benchmark in the manner of PMO (Gao et al. 2022): `opto_nb design` on PMO goal-directed tasks
under an oracle-call budget, scored by the area under the top-10 curve (AUC top-10, in [0, 1]), per task and summed,
for the reinvent and ppo learners in the same run, each starting from the shipped prior.

A script, not a test: the full run (11 tasks x 3 seeds x 2 learners at 10,000 calls) takes hours on a CPU.

    python benchmarks/bench_design_budget.py                                     # everything (hours)
    python benchmarks/bench_design_budget.py --tasks qed --budget 300 --seeds 1  # a smoke run (a minute or two)
"""
import argparse, shutil, statistics, sys, tempfile, time
from pathlib import Path

TASKS = ['celecoxib_rediscovery', 'troglitazone_rediscovery', 'thiothixene_rediscovery', 'albuterol_similarity',
         'mestranol_similarity', 'isomers_c7h8n2o2', 'isomers_c9h10n2o2pf2cl', 'osimertinib_mpo', 'fexofenadine_mpo',
         'median1', 'qed']


def mean_sd(xs):
    return f"{statistics.mean(xs):.3f}" + (f" ± {statistics.stdev(xs):.3f}" if len(xs) > 1 else '')


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--budget', type=int, default=10_000, help='oracle calls per run (default: 10000, as PMO)')
    ap.add_argument('--seeds', type=int, default=3, help='runs per task and learner, seeds 0..N-1 (default: 3)')
    ap.add_argument('--tasks', nargs='+', default=TASKS, choices=TASKS, metavar='TASK',
                    help=f"PMO tasks (default: all {len(TASKS)}: {', '.join(TASKS)})")
    ap.add_argument('--learners', nargs='+', default=['reinvent', 'ppo'], choices=['reinvent', 'ppo', 'pg'])
    ap.add_argument('--prior', default='moses', help='the --prior of every run (default: moses)')
    ap.add_argument('--max-minutes', type=float, default=120.0,
                    help='wall-clock cap of one run, should it stop finding new molecules (default: 120)')
    ap.add_argument('--out', default=None, help='keep the run folders here (default: a temporary folder, deleted)')
    args = ap.parse_args(argv)

    from opto_nb.design import DesignConfig, run_design
    from opto_nb.objectives import pmo_task
    root = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix='bench_design_budget_'))
    auc = {(t, L): [] for t in args.tasks for L in args.learners}
    secs = {(t, L): 0.0 for t in args.tasks for L in args.learners}
    try:
        for task in args.tasks:
            for learner in args.learners:
                for seed in range(args.seeds):
                    cfg = DesignConfig(minutes=args.max_minutes, oracle_budget=args.budget, learner=learner,
                                       prior=args.prior, seed=seed, n_eval=256)
                    t0 = time.monotonic()
                    s = run_design(cfg, root / f'{task}-{learner}-seed{seed}', objective=pmo_task(task), quiet=True,
                                   dashboard=None)
                    secs[task, learner] += time.monotonic() - t0
                    auc[task, learner].append(s['auc_top10'])
                    print(f"{task} {learner} seed {seed}: AUC top-10 {s['auc_top10']:.4f}, top-10 {s['top10']:.4f}, "
                          f"{s['n_calls']} calls, {time.monotonic() - t0:.0f} s", file=sys.stderr, flush=True)
    finally:
        if not args.out: shutil.rmtree(root, ignore_errors=True)

    print(f"\n### AUC top-10 at {args.budget} oracle calls, {args.seeds} seed(s), prior {args.prior}\n")
    print('| task | ' + ' | '.join(f'{L} AUC top-10 | {L} s' for L in args.learners) + ' |')
    print('|---|' + '---:|---:|' * len(args.learners))
    for task in args.tasks:
        cells = [f"{mean_sd(auc[task, L])} | {secs[task, L] / args.seeds:.0f}" for L in args.learners]
        print(f"| {task} | " + ' | '.join(cells) + ' |')
    sums = [f"**{sum(statistics.mean(auc[t, L]) for t in args.tasks):.3f}** | "
            f"{sum(secs[t, L] for t in args.tasks) / args.seeds:.0f}" for L in args.learners]
    print('| **sum** | ' + ' | '.join(sums) + ' |')
    print('\n(s: mean wall seconds of one run; AUC: mean ± sd over the seeds)')


if __name__ == '__main__':
    main()
