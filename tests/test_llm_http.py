"""LLMOptimizer against a real HTTP server on 127.0.0.1: concurrent proposals, retry backoff, no key leaks in a child
process, and a hostile endpoint that echoes the key into its suggestions cannot plant it anywhere in a run."""
import http.server, json, logging, os, pickle, subprocess, sys, threading, time
import pytest
from opto_nb.core import Module, Parameter
from opto_nb.optimizers import LLMOptimizer

KEY = "sk-pytest-DO-NOT-LEAK-0123456789"

class Agent(Module):
    def __init__(self): self.x, self.mode = Parameter(1, bounds=(0, 1000)), Parameter('a', choices=['a', 'b'])
    def forward(self, v): return v * self.x.value

class _Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *a): pass
    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers['Content-Length'])))
        srv = self.server
        with srv.lock:
            srv.requests.append({'t': time.monotonic(), 'auth': self.headers.get('Authorization'), 'body': body})
            kind = srv.script.pop(0) if srv.script else srv.default
        if kind == 'slow_good':
            time.sleep(0.3)
            kind = 'good'
        if kind == 'good':   # echo the per-proposal seed so that independence is visible
            content = json.dumps({'suggestion': {'x': body['seed'] % 1000, 'mode': 'b'}})
            data = json.dumps({'choices': [{'message': {'content': content}}]}).encode()
            code = 200
        elif kind == 'echo_key_400':  # a hostile server echoes the credentials back in its error body
            data, code = json.dumps({'error': f"bad key {self.headers.get('Authorization')}"}).encode(), 400
        elif kind == 'echo_key_garbage':
            data, code = f"<html>{self.headers.get('Authorization')}</html>".encode(), 200
        elif kind == 'echo_key_in_suggestion':  # a hostile server plants the credentials in the values it suggests
            auth = self.headers.get('Authorization')
            content = json.dumps({'reasoning': f"you sent {auth}",
                                  'suggestion': {'prompt': f"{auth} says hi", 'mode': 'b',
                                                 'notes': ['raw key: ' + auth.split(' ', 1)[1], {'k': auth}]}})
            data = json.dumps({'choices': [{'message': {'content': content}}]}).encode()
            code = 200
        elif kind == 'echo_key_late':  # the key straddles the point where error details are cut
            data, code = ('x' * 180 + f" {self.headers.get('Authorization')}").encode(), 200
        else: data, code = b'{"error": "unavailable"}', int(kind)
        self.send_response(code)
        self.send_header('Content-Length', str(len(data)))
        self.end_headers()
        self.wfile.write(data)

@pytest.fixture
def server():
    srv = http.server.ThreadingHTTPServer(('127.0.0.1', 0), _Handler)
    srv.daemon_threads, srv.lock, srv.requests, srv.script, srv.default = True, threading.Lock(), [], [], 'good'
    srv.url = f"http://127.0.0.1:{srv.server_address[1]}/v1"
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield srv
    srv.shutdown()
    srv.server_close()
    t.join(5)

def test_concurrent_independent_proposals(server):
    "BasicSearchAlgorithm-style: many proposals at once, each with its own seed, served in parallel."
    server.default = 'slow_good'
    opt = LLMOptimizer(Agent(), model='m', base_url=server.url, api_key=KEY, timeout=5, seed=3)
    opt.backward('out', (0.5, 'fine'))
    results = [None] * 8
    def run(i): results[i] = opt.step(bypassing=True)
    ths = [threading.Thread(target=run, args=(i,)) for i in range(8)]
    t0 = time.monotonic()
    for t in ths: t.start()
    for t in ths: t.join()
    elapsed = time.monotonic() - t0
    assert all(r for r in results), opt.failures
    seeds = [r['body']['seed'] for r in server.requests]
    assert len(set(seeds)) == 8 and opt.n_proposals == 8 and opt.n_requests == 8
    assert elapsed < 8 * 0.3 * 0.6, f"proposals were serialised: {elapsed:.2f}s"
    assert opt.values() == {'x': 1, 'mode': 'a'}                  # proposals only, nothing applied
    # same seed, same sequence of calls -> the same per-proposal seeds
    opt2 = LLMOptimizer(Agent(), model='m', base_url=server.url, api_key=KEY, seed=3)
    assert opt2.new_rng().integers(2**31) == LLMOptimizer(Agent(), base_url=server.url,
                                                          seed=3).new_rng().integers(2**31)

def test_retry_backoff_grows(server):
    server.script = ['503', '503', '503', 'good']
    opt = LLMOptimizer(Agent(), base_url=server.url, api_key=KEY, timeout=2, max_retries=3, backoff=0.1, seed=0)
    upd = opt.step()
    assert upd and opt.values()['mode'] == 'b' and opt.n_requests == 4 and not opt.failures
    ts = [r['t'] for r in server.requests]
    gaps = [b - a for a, b in zip(ts, ts[1:])]
    # jittered exponential backoff: gap k lies in [0.5, 1] * 0.1 * 2**k
    assert 0.045 <= gaps[0] < 0.2 and 0.095 <= gaps[1] < 0.3 and 0.19 <= gaps[2] < 0.5, gaps
    # a non-retryable status is not retried; exhausted retries are counted once
    server.script = ['400']
    assert opt.step() == {} and opt.failures['http_error'] == 1 and opt.n_requests == 5
    server.script = ['500'] * 4
    assert opt.step() == {} and opt.failures['http_error'] == 2 and opt.n_requests == 9

CHILD = r'''
import logging, os, pickle, sys, http.client
logging.basicConfig(level=logging.DEBUG, stream=sys.stderr)
from opto_nb.core import Module, Parameter
from opto_nb.optimizers import LLMOptimizer
class Agent(Module):
    def __init__(self): self.x = Parameter(1, bounds=(0, 1000))
opt = LLMOptimizer(Agent(), base_url=sys.argv[1], timeout=2, max_retries=0, seed=0)   # key from OPENAI_API_KEY
opt.backward('out', 0.1)
for _ in range(4): print(opt.step(), opt.last_error)
print(opt, opt.state_dict(), vars(opt), opt.failures)
sys.stdout.buffer.write(pickle.dumps(opt)); sys.stdout.buffer.write(pickle.dumps(opt.state_dict()))
'''

def test_key_never_leaks_from_a_run(server):
    "A whole run in a child process, DEBUG logging on, a server echoing the key: stdout and stderr never hold it."
    server.script = ['echo_key_400', 'echo_key_garbage', 'echo_key_late', 'good']
    env = {**os.environ, 'OPENAI_API_KEY': KEY}
    r = subprocess.run([sys.executable, '-c', CHILD, server.url], env=env, capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr.decode()[-2000:]
    assert [q['auth'] for q in server.requests] == [f"Bearer {KEY}"] * 4    # the key was really used
    out, err = r.stdout, r.stderr
    assert b'http_error' in out and b'invalid_response' in out and b'***' in out
    assert KEY.encode() not in out and KEY.encode() not in err
    assert b'DO-NOT-LEAK' not in out + err and b'sk-pytest' not in out + err

class Prompted(Module):
    "A text parameter (where a planted key would travel furthest), a choice and an 'other' value."
    def __init__(self):
        self.prompt, self.mode, self.notes = Parameter('hello'), Parameter('a', choices=['a', 'b']), Parameter([])
    def forward(self, v): return f"{self.prompt.value} {v}"

def test_hostile_endpoint_cannot_plant_the_key(server, tmp_path, capfd):
    "The server echoes the Authorization header into its suggestions; the key lands nowhere a run keeps or shows."
    from opto_nb.trainers import BasicSearchAlgorithm
    server.default = 'echo_key_in_suggestion'
    handler = logging.StreamHandler(sys.stderr)
    log = logging.getLogger('opto_nb.optimizers')
    log.addHandler(handler)
    log.setLevel(logging.DEBUG)
    try:
        agent = Prompted()
        opt = LLMOptimizer(agent, model='m', base_url=server.url, api_key=KEY, timeout=5, max_retries=0, seed=0)
        search = BasicSearchAlgorithm(agent, opt, seed=0)
        def guide(x, out, info): return float('says hi' in out), f"output {out!r}"   # prefers the planted value
        ckpt = tmp_path / 'search.pt'
        h = search.train(guide, {'inputs': [1, 2, 3, 4], 'infos': [None] * 4}, num_proposals=2, batch_size=2,
                         save_frequency=1, save_path=ckpt, verbose=True, progress=False)
        csv = tmp_path / 'history.csv'
        h.to_pandas().to_csv(csv, index=False)
        print(search.agent, search.state_dict(), opt.last_reasoning, flush=True)
    finally:
        log.removeHandler(handler)
        log.setLevel(logging.NOTSET)
    out, err = capfd.readouterr()
    assert [q['auth'] for q in server.requests] == [f"Bearer {KEY}"] * len(server.requests) and server.requests
    # the planted suggestions were accepted, without the key
    assert search.counters['proposals_accepted'] >= 1 and agent.prompt.value == '*** says hi'
    assert agent.notes.value == ['raw key: ***', {'k': '***'}] and agent.mode.value == 'b'
    assert opt.failures['redacted'] >= 2 and 'held the API key' in err
    secrets = (KEY, 'DO-NOT-LEAK', KEY[-10:])
    for where, text in [('accepted values', repr(agent.state_dict())), ('state_dict', repr(search.state_dict())),
                        ('checkpoint file', ckpt.read_bytes()), ('history CSV', csv.read_bytes()),
                        ('pickled trainer', pickle.dumps(search)), ('pickled state', pickle.dumps(search.state_dict())),
                        ('stdout', out), ('stderr', err), ('reasoning', opt.last_reasoning or '')]:
        for secret in secrets:
            assert (secret.encode() if isinstance(text, bytes) else secret) not in text, f"the key leaked into {where}"
    assert 'says hi' in out and "param/prompt='*** says hi'" in out       # the run really printed the values
