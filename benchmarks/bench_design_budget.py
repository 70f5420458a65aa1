"""Sample-efficiency benchmark in the manner of PMO (Gao et al. 2022): `opto_nb design` on PMO goal-directed tasks
under an oracle-call budget, scored by the area under the top-10 curve (AUC top-10, in [0, 1]), per task and summed,
for several methods in the same run:

* `reinvent`: the default of `opto_nb design` (augmented-likelihood learner from the shipped MOSES prior);
* `ppo`: the PPO learner from the shipped MOSES prior;
* `previous`: the default before the shipped prior, PPO from a model pretrained on the embedded NCI set for
  `--nci-pretrain-steps` steps (about 4 minutes, as that default spent); the pretraining runs once per seed and every
  task of that seed starts from it.

Every run stops at its oracle budget, or earlier once its 100 best scores stayed the same for `--patience` steps
(PMO's early stop; the AUC credits the final top-10 for the calls left). A script, not a test: the full run (11 tasks
x 3 seeds x 2 methods at 10,000 calls) takes hours on a CPU; `--jobs` runs several at once and `--out DIR` keeps the
results, so that a second invocation with the same `--out` continues where the first stopped (a result is reused
only for the same budget, patience, time cap and starting model: a retrained prior runs again).

    python benchmarks/bench_design_budget.py --jobs 2 --out runs/bench          # everything (hours)
    python benchmarks/bench_design_budget.py --tasks qed --budget 300 --seeds 1  # a smoke run (a minute or two)
"""
import argparse, hashlib, json, shutil, statistics, sys, tempfile, time
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from pathlib import Path

TASKS = ['celecoxib_rediscovery', 'troglitazone_rediscovery', 'thiothixene_rediscovery', 'albuterol_similarity',
         'mestranol_similarity', 'isomers_c7h8n2o2', 'isomers_c9h10n2o2pf2cl', 'osimertinib_mpo', 'fexofenadine_mpo',
         'median1', 'qed']


METHODS = {'reinvent': dict(learner='reinvent', prior='moses'), 'ppo': dict(learner='ppo', prior='moses'),
           'previous': dict(learner='ppo', prior='nci')}


def mean_sd(xs):
    return f"{statistics.mean(xs):.3f}" + (f" ± {statistics.stdev(xs):.3f}" if len(xs) > 1 else '')


def pretrain_nci(folder: str, seed: int, steps: int) -> str:
    "Pretrain the 'previous' method's model on the NCI set (one per seed); returns a line for the log."
    import torch
    from opto_nb.design import DesignConfig, run_design
    torch.set_num_threads(1)
    shutil.rmtree(folder, ignore_errors=True)         # a pretraining cut short earlier starts again
    t0 = time.monotonic()
    cfg = DesignConfig(prior='nci', learner='ppo', pretrain_steps=steps, rl_steps=0, minutes=None, seed=seed,
                       n_eval=256)
    s = run_design(cfg, folder, quiet=True, dashboard=None)
    return f"NCI pretraining, seed {seed}: {s['pretrain_steps']} steps, validity {s['validity']:.3f}, " \
           f"{time.monotonic() - t0:.0f} s"


def start_of(method: str, nci_steps: int) -> str:
    "What a method's runs start from: the shipped prior's file hash, or the NCI pretraining's length."
    if METHODS[method]['prior'] == 'nci': return f'nci-pretrain-{nci_steps}-steps'
    from opto_nb.design import prior_path
    return 'sha256:' + hashlib.sha256(prior_path(METHODS[method]['prior']).read_bytes()).hexdigest()[:16]


def run_task(folder: str, task: str, method: str, seed: int, prior: str, budget: int, minutes: float, patience,
             start: str) -> dict:
    "One design run; its result is also written next to the run folder, so that a rerun of the script reuses it."
    import torch
    from opto_nb.design import DesignConfig, run_design
    from opto_nb.objectives import pmo_task
    from opto_nb.utils import atomic_write
    torch.set_num_threads(1)
    cfg = DesignConfig(minutes=minutes, oracle_budget=budget, patience=patience, seed=seed, n_eval=256,
                       learner=METHODS[method]['learner'], prior=prior)
    shutil.rmtree(folder, ignore_errors=True)         # a run cut short earlier (no result file) starts again
    t0 = time.monotonic()
    s = run_design(cfg, folder, objective=pmo_task(task), quiet=True, dashboard=None)
    secs = time.monotonic() - t0
    line = (f"{task} {method} seed {seed}: AUC top-10 {s['auc_top10']:.4f}, top-10 {s['top10']:.4f}, "
            f"{s['n_calls']} calls, fresh samples unique {s.get('uniqueness', float('nan')):.3f} "
            f"valid {s['validity']:.3f}, {secs:.0f} s, stopped: {s['stop_reason']}")
    out = dict(auc=s['auc_top10'], secs=secs, line=line, budget=budget, patience=patience, minutes=minutes,
               start=start)
    atomic_write(folder + '.result.json', json.dumps(out), mode='w')   # a kill never leaves half a result
    return out


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
    ap.add_argument('--patience', type=int, default=100,
                    help="end a run once its 100 best scores stayed the same for N steps in a row, a model that has "
                         "stopped finding better molecules; the AUC credits the final top-10 for the calls left "
                         "(default: 100, 6,400 samples; 0: never)")
    ap.add_argument('--max-minutes', type=float, default=120.0,
                    help='wall-clock cap of one run, should it neither spend its budget nor stall (default: 120)')
    ap.add_argument('--jobs', type=int, default=1,
                    help='runs at a time, each in its own process with one thread (default: 1)')
    ap.add_argument('--out', default=None,
                    help='keep the run folders here; a rerun with the same --out reuses the runs that finished '
                         '(default: a temporary folder, deleted)')
    args = ap.parse_args(argv)

    root = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix='bench_design_budget_'))
    root.mkdir(parents=True, exist_ok=True)
    methods, seeds, patience = args.methods, range(args.seeds), args.patience or None
    runs = [(t, m, sd) for sd in seeds for t in args.tasks for m in methods]   # seed by seed: the first ends first
    starts = {m: start_of(m, args.nci_pretrain_steps) for m in methods}
    results = {}
    for key in runs:
        done = root / ('{}-{}-seed{}'.format(*key) + '.result.json')
        earlier = json.loads(done.read_text()) if done.exists() else {}
        same = [args.budget, patience, args.max_minutes, starts[key[1]]]
        if [earlier.get(k) for k in ('budget', 'patience', 'minutes', 'start')] == same:
            results[key] = earlier                   # a run of the same protocol from the same model: reused

    def nci_folder(seed):
        for base in (Path(args.pretrained or root), root):
            folder = base / f'nci-pretrain-seed{seed}'
            if (folder / 'summary.json').exists(): return str(folder)
        return None

    def log(line): print(line, file=sys.stderr, flush=True)
    with ProcessPoolExecutor(max_workers=args.jobs, mp_context=get_context('spawn')) as pool:
        need = sorted({sd for t, m, sd in runs if (t, m, sd) not in results and METHODS[m]['prior'] == 'nci'
                       and nci_folder(sd) is None})
        for fut in [pool.submit(pretrain_nci, str(root / f'nci-pretrain-seed{sd}'), sd, args.nci_pretrain_steps)
                    for sd in need]: log(fut.result())
        futs = {}
        for key in runs:
            if key in results: log(results[key]['line'] + ' (reused)')
            else:
                task, method, seed = key
                prior = nci_folder(seed) if METHODS[method]['prior'] == 'nci' else METHODS[method]['prior']
                futs[pool.submit(run_task, str(root / f'{task}-{method}-seed{seed}'), task, method, seed, prior,
                                 args.budget, args.max_minutes, patience, starts[method])] = key
        for fut in as_completed(futs):
            key = futs[fut]
            results[key] = fut.result()
            log(results[key]['line'])
    if not args.out: shutil.rmtree(root, ignore_errors=True)

    auc = {(t, m): [results[t, m, sd]['auc'] for sd in seeds] for t in args.tasks for m in methods}
    secs = {(t, m): statistics.mean(results[t, m, sd]['secs'] for sd in seeds) for t in args.tasks for m in methods}
    print(f"\n### AUC top-10 at {args.budget} oracle calls, {args.seeds} seed(s), methods {', '.join(methods)}, "
          f"patience {patience}\n")
    print('| task | ' + ' | '.join(f'{m} AUC top-10 | {m} s' for m in methods) + ' |')
    print('|---|' + '---:|---:|' * len(methods))
    for task in args.tasks:
        cells = [f"{mean_sd(auc[task, m])} | {secs[task, m]:.0f}" for m in methods]
        print(f"| {task} | " + ' | '.join(cells) + ' |')
    sums = [f"**{sum(statistics.mean(auc[t, m]) for t in args.tasks):.3f}** | "
            f"{sum(secs[t, m] for t in args.tasks):.0f}" for m in methods]
    print('| **sum** | ' + ' | '.join(sums) + ' |')
    print(f'\n(s: mean wall seconds of one run, {args.jobs} at a time; AUC: mean ± sd over the seeds)')


if __name__ == '__main__':
    main()
