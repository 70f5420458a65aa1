"""Exact resume after a real kill.

A training run is started in a child process, killed with SIGKILL as soon as it has written a checkpoint in the
middle of a stage, and resumed from its newest checkpoint in a fresh process. It must end with parameters, log,
buffer and pipeline record identical to an uninterrupted run with the same seed (all runs single-threaded).
Tested for the fit loop (`PipelineCallback` in a `Learner`) and for a minibatch trainer (`run_minibatch_pipeline`
with `BasicSearchAlgorithm`); a trainer checkpoint that is truncated or corrupt gives one clear error.

The `opto_nb design` console script is killed the same way: a run from scratch (`--prior nci`) in the pretrain stage,
in the rl stage while it writes a checkpoint, and after its final checkpoint, and a run from the shipped prior with an
oracle budget in the rl stage; each is resumed in new processes until it finishes and must leave the files an
uninterrupted run leaves. A second process on a folder in use is refused, naming the holder.

This file is also the child program: `python tests/test_resume.py {fit|search} CKDIR OUT RESUME THROTTLE`.
"""
import hashlib, json, math, os, re, signal, subprocess, sys, time
from pathlib import Path

HERE = Path(__file__).resolve()
TIMEOUT = 50  # seconds for any one child process


# ---------------------------------------------------------------------------------------------------------------------
# the runs (executed in child processes)

def _fit_run(ckdir, resume, throttle):
    "Pretrain (supervised) -> rl (policy gradient, samplers + buffer, early stopping) -> replay (off-policy)"
    from functools import partial
    import numpy as np, torch
    from opto_nb.utils import Builder, LinearDecay, MultiLinearDecay, set_seed
    from opto_nb.learner import Callback, Learner, Log
    from opto_nb.models import Agent, CharacterVocab, LSTMLM
    from opto_nb.losses import SupervisedLoss, PolicyGradient
    from opto_nb.samplers import ModelSampler, DatasetSampler
    from opto_nb.buffers import Buffer
    from opto_nb.rewards import Reward
    from opto_nb.pipeline import (TrainingPipeline, PipelineStage, OffPolicyPipelineComponent, MetricThresholdCriterion,
                                  Schedule)
    from opto_nb.drivers import PipelineCallback, TopSamplesReplay, imitation_loss

    class Throttle(Callback):
        "Slows the victim run down so that the kill lands mid-run (holds no state; present in every run)."
        def __init__(self, seconds): self.seconds = seconds
        def after_batch(self): time.sleep(self.seconds)

    def share_of_a(samples): return [s.count('a') / len(s) if s else 0.0 for s in samples]
    def valid_reward(learner): return {'reward': float(np.mean(share_of_a(learner.get_cb('agent').sample_strings(16))))}

    g = np.random.default_rng(0)
    data = [''.join(g.choice(list('abc'), size=int(g.integers(3, 8)))) for _ in range(64)]
    vocab = CharacterVocab.from_strings(data)
    set_seed(0)
    log = Log()
    agent = Agent(LSTMLM(len(vocab), emb_dim=16, hidden_dim=32, n_layers=1), vocab, max_len=8)
    pipe = TrainingPipeline(
        named_losses={'sup': Builder(SupervisedLoss, {'dataset': data, 'bs': 16, 'seed': 0}),
                      'pg': Builder(PolicyGradient), 'bc': imitation_loss},
        pipeline_stages=[
            PipelineStage(['sup'], 15, name='pretrain', hparams={'model.p_batch': 0.0, 'buffer.p_total': 0.0}),
            PipelineStage(['pg'], 30, name='rl', hparams={'model.p_batch': 0.75},
                          teacher_forcing=Schedule(LinearDecay(1, 0.25, 0.0), 'progress'),
                          early_stopping_criterion=MetricThresholdCriterion('valid/reward', 0.9, min_stage_steps=10),
                          schedules={'model.temperature': Schedule(LinearDecay(1, 1.2, 0.8), 'progress'),
                                     'pg.entropy_coef': Schedule(LinearDecay(5, 0.02, 0.0), 'stage')}),
            PipelineStage(['pg'], 12, name='replay', hparams={'model.p_batch': 1.0, 'buffer.p_total': 0.0},
                          offpolicy_component=OffPolicyPipelineComponent(
                              partial(TopSamplesReplay, log, k=8, batch_size=16), ['bc'], updates=2,
                              data_iterator_kwargs_generator=lambda w, r, s: {'seed': s}))],
        optimizer_builder=Builder(torch.optim.Adam, {'lr': 1e-2}), num_mini_batch=1, update_repeats=1,
        max_grad_norm=1.0, num_steps=8, gamma=1.0, use_gae=False, gae_lambda=1.0, advance_scene_rollout_period=None,
        save_interval=7, metric_accumulate_interval=5, should_log=False,
        lr_scheduler_builder=Builder(torch.optim.lr_scheduler.LambdaLR, {'lr_lambda': MultiLinearDecay(
            [LinearDecay(15, 1.0, 1.0), LinearDecay(42, 1.0, 0.2)])}),
        checkpoint_dir=ckdir, seed=0)
    pcb = PipelineCallback(pipe, 'agent', valid_fn=valid_reward, teacher_forcing_target='buffer.p_total',
                           resume_from='latest' if resume else None)
    cbs = [agent, ModelSampler(agent, 'model'), DatasetSampler(data, 'dataset', buffer_size=32, seed=0),
           Reward(share_of_a), Throttle(throttle), pcb]
    lrn = Learner(cbs, buffer=Buffer(0.0, seed=0), log=log, seed=0)
    if resume: set_seed(12345)   # the checkpoint must restore every random generator
    lrn.fit(10_000, bs=32)
    assert pipe.finished
    metrics = {k: v for k, v in lrn.log.metrics.items() if k != 'time'}
    buf = lrn.buffer.state_dict()
    return {'model': agent.model.state_dict(), 'opt': agent.opt.state_dict(), 'metrics': metrics,
            'samples': lrn.log.samples, 'iteration': lrn.iteration,
            'buffer': {**buf, '_history': sorted(buf['_history'])},
            'pipeline': {'metrics_log': pipe.metrics_log, 'history': pipe.history},
            'resumed_from': getattr(pcb, 'resumed_from', None)}


def _search_run(ckdir, resume, throttle):
    "explore (wide ES, 2 proposals) -> refine (narrow ES, 6 proposals, early stopping) with BasicSearchAlgorithm."
    import numpy as np
    from opto_nb.utils import Builder, set_seed
    from opto_nb.core import Module, Parameter
    from opto_nb.optimizers import EvolutionStrategy
    from opto_nb.trainers import BasicSearchAlgorithm
    from opto_nb.pipeline import TrainingPipeline, PipelineStage, MetricThresholdCriterion
    from opto_nb.drivers import run_minibatch_pipeline

    class Line(Module):
        def __init__(self): self.slope, self.offset = Parameter(0.0, bounds=(-5, 5)), Parameter(0.0, bounds=(-10, 10))
        def forward(self, x): return self.slope.value * x + self.offset.value

    def guide(x, y, target):
        if throttle: time.sleep(throttle)
        return -abs(y - target), f"off by {y - target:+.3f}"

    xs = np.round(np.linspace(-3, 3, 24), 2).tolist()
    data = {'inputs': xs, 'infos': [1.8 * x + 3.2 for x in xs]}
    valid = {'inputs': [-2.5, 0.5, 2.5], 'infos': [1.8 * x + 3.2 for x in (-2.5, 0.5, 2.5)]}
    set_seed(0)
    pipe = TrainingPipeline(
        named_losses={}, pipeline_stages=[
            PipelineStage([], 12, name='explore', hparams={'num_proposals': 2},
                          optimizer_builder=Builder(EvolutionStrategy, {'sigma': 0.3, 'max_sigma': 1.0, 'seed': 0})),
            PipelineStage([], 40, name='refine', hparams={'num_proposals': 6},
                          optimizer_builder=Builder(EvolutionStrategy, {'sigma': 0.05, 'min_sigma': 1e-3, 'seed': 1}),
                          early_stopping_criterion=MetricThresholdCriterion('valid/score', -0.05))],
        optimizer_builder=None, num_mini_batch=1, update_repeats=1, max_grad_norm=None, num_steps=1, gamma=1.0,
        use_gae=False, gae_lambda=1.0, advance_scene_rollout_period=2, save_interval=5, metric_accumulate_interval=4,
        should_log=False, checkpoint_dir=ckdir)
    tr = BasicSearchAlgorithm(Line(), seed=0)
    if resume: set_seed(12345)
    run_minibatch_pipeline(tr, pipe, guide, data, batch_size=4, seed=0, valid_dataset=valid,
                           resume_from='latest' if resume else None)
    assert pipe.finished
    return {'agent': tr.agent.state_dict(), 'optimizer': tr.optimizer.state_dict(), 'iteration': tr.iteration,
            'history': tr.history.state_dict(), 'counters': tr.counters,
            'pipeline': {'metrics_log': pipe.metrics_log, 'history': pipe.history}}


def _main(argv):
    kind, ckdir, out, resume, throttle = argv
    import torch
    torch.set_num_threads(1)
    res = {'fit': _fit_run, 'search': _search_run}[kind](Path(ckdir), resume == 'resume', float(throttle))
    from opto_nb.utils import atomic_save
    atomic_save(res, out)


# ---------------------------------------------------------------------------------------------------------------------
# the tests (parent process)

def _child(kind, ckdir, out, mode, throttle):
    env = {**os.environ, 'OMP_NUM_THREADS': '1', 'MKL_NUM_THREADS': '1'}
    return subprocess.Popen([sys.executable, str(HERE), kind, str(ckdir), str(out), mode, str(throttle)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

def _finish(proc):
    try: stdout, stderr = proc.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise AssertionError("child run timed out")
    assert proc.returncode == 0, f"child failed ({proc.returncode}):\n{stdout[-3000:]}\n{stderr[-6000:]}"

def _kill_mid_stage(proc, ckdir, min_step):
    "SIGKILL `proc` as soon as it has written a checkpoint at total step >= `min_step`; return that checkpoint's name."
    from opto_nb.pipeline import _CKPT_RE
    t0 = time.time()
    while time.time() - t0 < TIMEOUT:
        if proc.poll() is not None:
            raise AssertionError(f"the victim ended (rc={proc.returncode}) before it could be killed:\n"
                                 f"{proc.stderr.read()[-4000:]}")
        found = [p.name for p in Path(ckdir).glob('ckpt-*.pt') if int(_CKPT_RE.match(p.name).group(1)) >= min_step] \
            if Path(ckdir).is_dir() else []
        if found:
            os.kill(proc.pid, signal.SIGKILL)
            proc.communicate(timeout=TIMEOUT)
            assert proc.returncode == -signal.SIGKILL
            return min(found)
        time.sleep(0.005)
    proc.kill()
    raise AssertionError("no checkpoint appeared in time")

def _same(a, b, path='state'):
    "Recursive equality (tensors, arrays, NaN == NaN); raises with the path of the first difference."
    import numpy as np, torch
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        assert isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.shape == b.shape \
            and torch.equal(torch.nan_to_num(a, nan=1.234e5), torch.nan_to_num(b, nan=1.234e5)), path
    elif isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        assert np.array_equal(np.asarray(a), np.asarray(b), equal_nan=np.asarray(a).dtype.kind == 'f'), path
    elif isinstance(a, dict):
        assert isinstance(b, dict) and set(a) == set(b), f"{path}: keys {sorted(map(str, set(a) ^ set(b)))}"
        for k in a: _same(a[k], b[k], f"{path}[{k!r}]")
    elif isinstance(a, (list, tuple)):
        assert isinstance(b, (list, tuple)) and len(a) == len(b), f"{path}: lengths {len(a)} != {len(b)}"
        for i, (x, y) in enumerate(zip(a, b)): _same(x, y, f"{path}[{i}]")
    elif isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b): pass
    else: assert a == b, f"{path}: {a!r} != {b!r}"

def _kill_and_resume(tmp_path, kind, throttle, min_step):
    import torch
    from opto_nb.pipeline import TrainingPipeline
    ck_full, ck_cut = tmp_path / 'full', tmp_path / 'cut'
    full = _child(kind, ck_full, tmp_path / 'full.pt', 'fresh', 0)                  # uninterrupted reference
    victim = _child(kind, ck_cut, tmp_path / 'victim.pt', 'fresh', throttle)
    killed_at = _kill_mid_stage(victim, ck_cut, min_step)
    assert not (tmp_path / 'victim.pt').exists()                                     # it really did not finish
    latest = TrainingPipeline.latest_checkpoint(ck_cut)
    ps = TrainingPipeline.load_checkpoint(latest)['pipeline']
    assert not ps['stage_done'] and 0 < ps['stage_steps'] < ps['stage_max_steps'], (latest.name, ps['stage_steps'])
    resumed = _child(kind, ck_cut, tmp_path / 'resumed.pt', 'resume', 0)
    _finish(full)
    _finish(resumed)
    a = torch.load(tmp_path / 'full.pt', weights_only=False)
    b = torch.load(tmp_path / 'resumed.pt', weights_only=False)
    return a, b, killed_at, latest

def test_fit_loop_kill_and_resume(tmp_path):
    a, b, killed_at, latest = _kill_and_resume(tmp_path, 'fit', throttle=0.05, min_step=20)
    assert b.pop('resumed_from') == latest and a.pop('resumed_from') is None
    _same(a, b)
    stages = [h['stage'] for h in a['pipeline']['history'] if h['event'] == 'stage_end']
    assert stages == ['pretrain', 'rl', 'replay'] and a['iteration'] > 20

def test_minibatch_trainer_kill_and_resume(tmp_path):
    a, b, killed_at, latest = _kill_and_resume(tmp_path, 'search', throttle=0.002, min_step=14)
    _same(a, b)
    stages = [h['stage'] for h in a['pipeline']['history'] if h['event'] == 'stage_end']
    assert stages == ['explore', 'refine'] and a['iteration'] > 14

def test_minibatch_trainer_truncated_or_corrupt_checkpoint(tmp_path):
    "A trainer checkpoint cut short or overwritten with garbage gives one clear error naming the file, not a traceback."
    import pytest
    from opto_nb.examples import fahrenheit_guide, fahrenheit_search, fahrenheit_splits
    from opto_nb.trainers import CheckpointError
    train, valid, _ = fahrenheit_splits(0)
    search = fahrenheit_search(seed=0)
    search.train(fahrenheit_guide, train, validate_dataset=valid, num_proposals=2, batch_size=8, progress=False)
    blob = search.save(tmp_path / 'search.pt').read_bytes()
    (tmp_path / 'cut.pt').write_bytes(blob[:len(blob) // 3])
    (tmp_path / 'junk.pt').write_bytes(bytes(range(256)) * 8)
    for name in ('cut.pt', 'junk.pt'):
        with pytest.raises(CheckpointError, match=r"BasicSearchAlgorithm.load: .*" + name
                           + r" is not a complete opto_nb checkpoint \(truncated or corrupt\): .*; delete it or "
                           r"restore it from a backup"):
            fahrenheit_search(seed=1).load(tmp_path / name)
    resumed = fahrenheit_search(seed=1).load(tmp_path / 'search.pt')       # the intact file still loads
    assert resumed.iteration == search.iteration == 3 and resumed.agent.state_dict() == search.agent.state_dict()


# ---------------------------------------------------------------------------------------------------------------------
# `opto_nb design` killed in real processes

from conftest import console_script  # noqa: E402

OPTO_NB = console_script()
# from scratch: 40 pretrain + 24 rl steps of a small model (the model of test_cli), a checkpoint every 4 steps
NCI_RUN = ['--prior', 'nci', '--n-train', 1500, '--max-tokens', 20, '--emb-dim', 16, '--hidden-dim', 64,
           '--n-layers', 1, '--pretrain-bs', 32, '--pretrain-lr', 5e-3, '--pretrain-steps', 40, '--rl-steps', 24,
           '--checkpoint-every', 4, '--threads', 1, '--bs', 32, '--n-eval', 32, '--top-k', 10, '--quiet']
# the shipped prior (reinvent) until its budget of 100 oracle calls is spent (7 steps), a checkpoint every 2 steps
PRIOR_RUN = ['--rl-steps', 40, '--oracle-budget', 100, '--checkpoint-every', 2, '--threads', 1, '--bs', 16,
             '--replay', 8, '--n-eval', 32, '--top-k', 10, '--quiet']
_TMP_RE = re.compile(r'^\.(ckpt-.+\.pt)\.[^.]+\.tmp$')     # atomic_write's temporary file of a checkpoint
# the summary's wall-clock figures, those that name the run folder, and how its outputs came about
_SUMMARY_OWN = ('wall_seconds', 'train_seconds', 'resumed_from', 'outputs_rewritten', 'paths')


def _design(*args):
    "Start `opto_nb design ARGS` in a child process (one thread; output unbuffered, so a killed one has said it all)."
    env = {**os.environ, 'OMP_NUM_THREADS': '1', 'MKL_NUM_THREADS': '1', 'PYTHONUNBUFFERED': '1'}
    return subprocess.Popen(OPTO_NB + ['design', *map(str, args)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)

def _wait(proc, rc=0):
    "Wait for `proc` and check its exit status; return its (stdout, stderr)."
    try: out, err = proc.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise AssertionError(f"timed out: {proc.args}") from None
    assert proc.returncode == rc, f"exit status {proc.returncode}, not {rc}: {proc.args}\n{out[-3000:]}\n{err[-6000:]}"
    return out, err

def _ckpt(name):
    "(total steps, stage, stage steps) of a checkpoint file name; None for another name."
    from opto_nb.pipeline import _CKPT_RE
    m = _CKPT_RE.match(name)
    return (int(m.group(1)), m.group(2), int(m.group(3))) if m else None

def _written(name):
    "(total steps, stage, stage steps) of the checkpoint a temporary file of atomic_write is to become; else None."
    m = _TMP_RE.match(name)
    return _ckpt(m.group(1)) if m else None

def _infos(names, of=_ckpt):
    "(total steps, stage, stage steps) of the checkpoints among `names` (`of=_written`: of those being written)."
    return [info for info in map(of, names) if info]

def _kill_when(proc, ckdir, condition, seen):
    "SIGKILL `proc` once `condition(names in ckdir)` holds (polled every ~0.5 ms); return the names; add to `seen`."
    t0 = time.time()
    while time.time() - t0 < TIMEOUT:
        names = os.listdir(ckdir) if ckdir.is_dir() else []
        seen.update(n for n in names if _ckpt(n))
        if condition(names):
            os.kill(proc.pid, signal.SIGKILL)
            _wait(proc, -signal.SIGKILL)            # it was still running: killed, not finished
            return names
        if proc.poll() is not None:
            raise AssertionError(f"it ended (exit status {proc.returncode}) before it could be killed: {proc.args}\n"
                                 f"{proc.stderr.read()[-4000:]}")
        time.sleep(0.0005)
    proc.kill()
    raise AssertionError(f"the point to kill it never came: {proc.args}")

def _resume_point(ckdir):
    "(total steps, stage, stage steps) of the checkpoint --resume starts from: the newest."
    from opto_nb.pipeline import TrainingPipeline
    return _ckpt(TrainingPipeline.latest_checkpoint(ckdir).name)

def _files(folder):
    "Every file under `folder`: its content's digest and its modification time."
    return {str(p.relative_to(folder)): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
            for p in sorted(folder.rglob('*')) if p.is_file()}

def _table(path, drop):
    "The rows of a CSV file without the column `drop` (which must be there)."
    import csv
    rows = list(csv.reader(path.open(newline='')))
    i = rows[0].index(drop)
    return [r[:i] + r[i + 1:] for r in rows]

def _without_clocks(ck):
    """A final checkpoint less what differs after a resume: the wall clock (the log's timings, the seconds the time
    budgets spent) and the log's event counts (`before_train` once per process; one `after_log` fewer per resume, as
    the checkpoint is written within that event, before it is counted)."""
    log = ck['learner']['log']
    for name in ('event_time', 'timings', 'event_calls'): del log[name]
    del log['metrics']['time']
    for criterion in ck['pipeline']['criteria'].values(): del criterion['spent']
    return ck

def _same_design_outputs(a, b):
    """Run folders `a` (uninterrupted) and `b` (killed and resumed) hold the same outputs, wall-clock figures aside:
    samples.csv and top_molecules.csv byte for byte, the weights of model.pt exactly, metrics.csv (.jsonl) without
    its one wall-clock column, the final checkpoint (the oracle's calls and cache in order, buffer, optimizer, RNG
    and log) but for its clocks, and the summary. Return both summaries."""
    import torch
    from opto_nb.pipeline import TrainingPipeline
    for name in ('samples.csv', 'top_molecules.csv'):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    ma, mb = (torch.load(p / 'model.pt', map_location='cpu', weights_only=False) for p in (a, b))
    wa, wb = ma.pop('state_dict'), mb.pop('state_dict')
    assert list(wa) == list(wb) and ma == mb                  # the same tensors, vocabulary, architecture and config
    for k in wa: assert wa[k].dtype == wb[k].dtype and torch.equal(wa[k], wb[k]), k
    # `time` (the seconds each batch took) is the one wall-clock column of metrics.csv; the others agree exactly
    ta, tb = _table(a / 'metrics.csv', 'time'), _table(b / 'metrics.csv', 'time')
    assert len(ta) > 2 and ta == tb
    ja, jb = ([{k: v for k, v in json.loads(line).items() if k != 'time'} for line in (p / 'metrics.jsonl').open()]
              for p in (a, b))
    assert len(ja) == len(ta) - 1 and ja == jb
    ca, cb = (TrainingPipeline.load_checkpoint(TrainingPipeline.latest_checkpoint(p / 'checkpoints')) for p in (a, b))
    assert ca['finished'] and cb['finished']
    oa, ob = (c['learner']['callbacks']['oracle']['oracle'] for c in (ca, cb))
    _same(list(oa['cache'].items()), list(ob['cache'].items()), 'oracle cache, in the order of the calls')
    _same(_without_clocks(ca), _without_clocks(cb), 'final checkpoint')     # the oracle's counts, buffer, RNG, ...
    sa, sb = (json.loads((p / 'summary.json').read_text()) for p in (a, b))
    assert sa['finished'] and sa['n_calls'] == len(oa['cache']) > 0
    own = lambda s: {k: v for k, v in s.items() if k not in _SUMMARY_OWN}
    _same(own(sa), own(sb), 'summary')
    return sa, sb


def test_design_from_scratch_killed_at_every_point(tmp_path):
    """`opto_nb design --prior nci` (40 pretrain + 24 rl steps, a checkpoint every 4) as a chain of processes, each
    SIGKILLed and followed by a `--resume`: in the pretrain stage just after a checkpoint; in the rl stage while it
    writes a checkpoint (as soon as atomic_write's temporary file appears, which must still be there after the kill;
    a kill that lands after the rename, rare with fsync on a disk, is tried again in the next process); just after
    the final checkpoint, before any output. The next --resume writes the outputs (no training, no checkpoint
    rewritten), equal to an uninterrupted run's; one more reports the run finished and leaves every file as it is.
    Two processes resuming at once: the one that comes second is refused and names the holder."""
    from opto_nb.pipeline import TrainingPipeline
    ref, run = tmp_path / 'reference', tmp_path / 'run'
    ck = run / 'checkpoints'
    reference = _design(*NCI_RUN, '--out', ref)                      # uninterrupted, beside the chain
    # 1. in the pretrain stage, just after one of its checkpoints
    _kill_when(_design(*NCI_RUN, '--out', run), ck, lambda names: any(c[1] == 'pretrain' for c in _infos(names)),
               set())
    step, stage, stage_steps = _resume_point(ck)
    assert stage == 'pretrain' and 0 < stage_steps < 40 and not (run / 'metrics.csv').exists(), (step, stage)
    # 2. two processes resume at once: the second to reach the folder is refused, naming the first (started 0.2 s
    # apart, so that the second does not look in the instant between the first taking the lock and naming itself)
    pair = [_design('--resume', '--out', run, '--quiet')]
    time.sleep(0.2)
    pair.append(_design('--resume', '--out', run, '--quiet'))
    t0 = time.time()
    while all(p.poll() is None for p in pair):
        assert time.time() - t0 < TIMEOUT, "neither resuming process was refused"
        time.sleep(0.01)
    refused = next(p for p in pair if p.poll() is not None)
    holder = next(p for p in pair if p is not refused)
    _, err = _wait(refused, 1)
    assert holder.poll() is None and f"{run} is in use by process {holder.pid} on " in err, err
    assert 'design --resume --out' in err, err                       # and the holder's command
    # 3. the holder, in the rl stage while it writes a checkpoint past rl step 4: its temporary file left on disk
    victim = holder
    for _ in range(3):
        start, before, seen = step, set(os.listdir(ck)), set()
        names = _kill_when(victim, ck, lambda names: any(c[0] > 44 for c in _infos(names, _written)), seen)
        assert all(_ckpt(n)[0] > start for n in seen - before), (start, seen - before)  # resumed, not restarted
        left = [n for n in names if _written(n) and (ck / n).exists()]
        step, stage, stage_steps = _resume_point(ck)
        if left: break
        victim = _design('--resume', '--out', run, '--quiet')         # the kill came after the rename: again
    else: raise AssertionError("no kill landed while a checkpoint was being written, in 3 tries")
    assert stage == 'rl' and 0 < stage_steps < 24 and _written(left[0])[0] > step, (left, step, stage_steps)
    # 4. just after the final checkpoint, before any output
    start, before, seen = step, set(os.listdir(ck)), set()
    _kill_when(_design('--resume', '--out', run, '--quiet'), ck,
               lambda names: any(c[1] == 'finished' for c in _infos(names)), seen)
    assert all(_ckpt(n)[0] > start for n in seen - before), (start, seen - before)
    assert not (ck / left[0]).exists()                              # the resume removed what the killed write left
    final = TrainingPipeline.latest_checkpoint(ck)
    assert _ckpt(final.name) == (64, 'finished', 0) and not (run / 'summary.json').exists(), final
    # 5. --resume: the outputs of the finished run; nothing trained, no checkpoint rewritten
    checkpoints = _files(ck)
    out, _ = _wait(_design('--resume', '--out', run, '--quiet'))
    assert re.search(r'^finished\s+True$', out, re.M) and _files(ck) == checkpoints, out
    _wait(reference)
    a, b = _same_design_outputs(ref, run)
    assert a['resumed_from'] is None and b['resumed_from'] == str(final) and b['steps'] == 64
    assert 'no training' in out and b['outputs_rewritten'] and not a['outputs_rewritten']
    # 6. --resume once more: reported as finished, every file as it was (content and modification time)
    files = _files(run)
    out, _ = _wait(_design('--resume', '--out', run, '--quiet'))
    assert 'has finished already (64 steps)' in out and _files(run) == files, out


def test_design_from_prior_killed_in_rl(tmp_path):
    """The shipped prior with a budget of 100 oracle calls (7 rl steps, a checkpoint every 2), SIGKILLed in the rl
    stage just after a checkpoint and resumed in a new process: the same outputs as the uninterrupted run, which the
    budget ended at exactly 100 calls."""
    ref, run = tmp_path / 'reference', tmp_path / 'run'
    ck = run / 'checkpoints'
    reference = _design(*PRIOR_RUN, '--out', ref)
    _kill_when(_design(*PRIOR_RUN, '--out', run), ck, lambda names: bool(_infos(names)), set())
    step, stage, stage_steps = _resume_point(ck)
    _wait(_design('--resume', '--out', run, '--quiet'))
    _wait(reference)
    a, b = _same_design_outputs(ref, run)
    assert stage == 'rl' and 0 < step < a['steps'] and a['n_calls'] == b['n_calls'] == 100, (step, a['steps'])
    assert 'oracle budget' in a['stop_reason'], a['stop_reason']
    assert b['resumed_from'] == str(ck / f"ckpt-{step:08d}-rl-{stage_steps:06d}.pt"), b['resumed_from']


if __name__ == '__main__':
    _main(sys.argv[1:])
