("Rollouts on a real local Ray instance: same results as threads, failures travel back, unpicklable agents are refused "
 "clearly.")
import sys, threading, time
import pytest

ray = pytest.importorskip("ray")
import cloudpickle
from opto_nb.core import Module, Parameter
from opto_nb.rollouts import RayExecutor, RolloutConfig, sample_rollouts, Sampler, ErrorFeedback
from opto_nb.core import DataLoader

# Ray workers cannot import this test file, so its classes and functions travel by value.
cloudpickle.register_pickle_by_value(sys.modules[__name__])

class Poly(Module):
    "y = a*x^2 + b; fails on x == 13 to check that errors come back from the workers."
    def __init__(self, a, b): self.a, self.b = Parameter(a), Parameter(b)
    def forward(self, x):
        if x == 13: raise ValueError("13 is not allowed")
        return self.a.value * x * x + self.b.value

def work_guide(x, output, info):
    acc = 0                                   # a little CPU work, so tasks really run on the workers
    for i in range(2000): acc += (i * x) % 7
    return -abs(output - info), f"off by {output - info} ({acc})"

@pytest.fixture(scope="module")
def rx():
    ex = RayExecutor(num_cpus=2, init_kwargs=dict(include_dashboard=False, num_gpus=0,
                                                  object_store_memory=80 * 1024 * 1024))
    yield ex
    ex.shutdown()

def comparable(graphs):
    """What must be equal between backends: inputs, outputs, scores, order, flags, and for a failure its stage, error
    type and message. Tracebacks may differ in the file names of code that cloudpickle ships by value."""
    def one(r):
        d = r.to_dict()
        if r.failed: d['feedback'] = (r.feedback.stage, r.feedback.type, r.feedback.message)
        return d
    return [[one(r) for r in g] for g in graphs]

def _configs():
    xs = list(range(20))
    return [RolloutConfig(Poly(a, 1.0), xs, [2 * x * x for x in xs], work_guide) for a in (1.0, 2.0, 3.0)]

def test_ray_equals_threads(rx):
    cfgs = _configs()
    t0 = time.time()
    on_ray = sample_rollouts(cfgs, executor=rx, warn=False)
    assert rx.started_ray and ray.is_initialized() and rx.num_workers == 2
    on_threads = sample_rollouts(cfgs, num_threads=4, warn=False)
    assert [g.module for g in on_ray] == [c.module for c in cfgs]       # the caller's objects, not worker copies
    assert comparable(on_ray) == comparable(on_threads)
    assert [[r.failed for r in g] for g in on_ray] == [[x == 13 for x in range(20)]] * 3
    assert [g.get_scores() for g in on_ray][1][:3] == [-1.0, -1.0, -1.0]
    # the failure on x == 13 came back as a scored, counted ErrorFeedback with its traceback
    assert [g.n_failed for g in on_ray] == [1, 1, 1]
    fb = on_ray[0][13].feedback
    assert isinstance(fb, ErrorFeedback) and fb.stage == 'agent' and fb.type == 'ValueError'
    assert '13 is not allowed' in fb.traceback
    assert on_ray[0][13].score == 0.0
    # the traceback from a worker still names the user's function and the line that raised
    line = Poly.forward.__code__.co_firstlineno + 1
    assert f"line {line}, in forward" in fb.traceback, fb.traceback
    assert f"line {line}, in forward" in on_threads[0][13].feedback.traceback
    # small chunks and a min_score give the same as threads too
    a = sample_rollouts(cfgs, executor=rx, chunk_size=3, min_score=-9, warn=False)
    b = sample_rollouts(cfgs, num_threads=2, min_score=-9, warn=False)
    assert [g.get_scores() for g in a] == [g.get_scores() for g in b] and a[0][13].score == -9
    assert time.time() - t0 < 45

def test_sampler_on_ray(rx):
    data = {'inputs': list(range(8)), 'infos': [2 * x * x for x in range(8)]}
    agents = [Poly(1.0, 0.0), Poly(2.0, 0.0)]
    s_ray = Sampler(DataLoader(data, batch_size=4, seed=0), work_guide, sub_batch_size=2, executor=rx)
    s_thr = Sampler(DataLoader(data, batch_size=4, seed=0), work_guide, sub_batch_size=2, num_threads=2)
    for _ in range(2):
        (r, br), (t, bt) = s_ray.sample(agents), s_thr.sample(agents)
        assert br == bt and comparable(r) == comparable(t)
        assert [g.module for g in r] == [agents[0]] * 2 + [agents[1]] * 2

class Locked(Poly):
    def __init__(self):
        super().__init__(1.0, 0.0)
        self.lock = threading.Lock()

def test_unpicklable_agent_is_refused_clearly(rx):
    with pytest.raises(TypeError, match=r"the agent \(Locked\) cannot be sent to Ray workers.*lock.*num_threads"):
        sample_rollouts([RolloutConfig(Locked(), [1, 2], [1, 2], work_guide)], executor=rx)
    unpicklable_guide = lambda x, o, i, _l=threading.Lock(): (0.0, '')
    with pytest.raises(TypeError, match=r"the guide \(FunctionGuide\) cannot be sent to Ray workers"):
        sample_rollouts([RolloutConfig(Poly(1.0, 0.0), [1], [1], unpicklable_guide)], executor=rx)
    # the same agent works on threads
    g, = sample_rollouts([RolloutConfig(Locked(), [1, 2], [1, 4], work_guide)], num_threads=2)
    assert g.get_scores() == [0.0, 0.0]

def test_trainer_on_ray_equals_threads(rx):
    from opto_nb.optimizers import EvolutionStrategy
    from opto_nb.trainers import BasicSearchAlgorithm
    data = {'inputs': [float(x) for x in range(-4, 5)], 'infos': [3 * x * x - 2 for x in range(-4, 5)]}
    def run(**kw):
        agent = Poly(1.0, 0.0)
        search = BasicSearchAlgorithm(agent, EvolutionStrategy(agent, sigma=0.3, seed=0), seed=0, **kw)
        h = search.train(work_guide, data, num_proposals=3, num_epochs=2, batch_size=3, test_dataset=data,
                         progress=False)
        return h.state_dict(), agent.state_dict()
    on_ray, on_threads = run(executor=rx), run(num_threads=2)
    assert on_ray == on_threads
    test = on_ray[0]['series']['test/score'][1]
    assert test[-1] > test[0]   # it learned something
