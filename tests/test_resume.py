"""Exact resume after a real kill.

A training run is started in a child process, killed with SIGKILL as soon as it has written a checkpoint in the
middle of a stage, and resumed from its newest checkpoint in a fresh process. It must end with parameters, log,
buffer and pipeline record identical to an uninterrupted run with the same seed (all runs single-threaded).
Tested for the fit loop (`PipelineCallback` in a `Learner`) and for a minibatch trainer (`run_minibatch_pipeline`
with `BasicSearchAlgorithm`); a trainer checkpoint that is truncated or corrupt gives one clear error.

This file is also the child program: `python tests/test_resume.py {fit|search} CKDIR OUT RESUME THROTTLE`.
"""
import math, os, signal, subprocess, sys, time
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


if __name__ == '__main__':
    _main(sys.argv[1:])
