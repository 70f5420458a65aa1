"""One RL fit-loop step vs a hand-written torch loop doing the same math on the same model.

The fit loop is a `Learner` with an `Agent` (LSTMLM), a live sampler (`opto_nb.samplers.ModelSampler` with
`p_batch=1`, its metrics on; `--sampler inline` or a missing samplers module uses a small inline callback instead),
a reward callback, and `PolicyGradient`. The hand-written loop samples, decodes, scores,
re-tokenizes, runs the teacher-forced pass, computes REINFORCE with the same moving baseline, zero_grad, backward,
clips and steps the same Adam optimizer.

Both start every trial from the same model/optimizer state and the same torch RNG state, so they draw the same
samples and do the same work; the script checks that their parameters agree at the end of a trial (same math), then
times them in interleaved trials and prints the per-step medians and the ratio (target: fit loop <= 1.10x).

    python benchmarks/bench_fitloop.py            # default sizes (~30-60 s on 2 shared cores)
    python benchmarks/bench_fitloop.py --quick    # a few seconds
"""
import argparse, copy, statistics, time

import torch
from torch import nn

from opto_nb.learner import Callback, Learner
from opto_nb.losses import PolicyGradient, MovingBaseline, policy_gradient_loss
from opto_nb.models import Agent, CharacterVocab, LSTMLM
from opto_nb.utils import set_seed


def reward_fn(s: str) -> float:
    "Share of 'a' in the string (0 for the empty string)."
    return s.count('a') / len(s) if s else 0.0


class InlineSampler(Callback):
    "Adds `bs` live samples from the agent at sample_batch."
    def sample_batch(self):
        st = self.learner.batch_state
        st.add(self.learner.get_cb('agent').sample_strings(st.bs), 'live')


class Reward(Callback):
    def compute_reward(self):
        st = self.learner.batch_state
        st.rewards = torch.tensor([reward_fn(s) for s in st.samples], dtype=torch.float32)


def hand_step(model, vocab, opt, baseline, bs, max_len, clip):
    "The same math as Agent + InlineSampler + Reward + PolicyGradient, written out."
    tokens, _ = model.sample_no_grad(bs, max_len=max_len)
    strings = vocab.decode_batch(tokens)
    r = torch.tensor([reward_fn(s) for s in strings], dtype=torch.float32)
    out = model.model_outputs(vocab.tensorize(strings))
    adv = baseline.advantages(r)
    loss = policy_gradient_loss(out['log_probs'], out['mask'], adv)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    nn.utils.clip_grad_norm_(model.parameters(), clip)
    opt.step()
    return loss.item()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--quick', action='store_true', help='small sizes, a few seconds')
    ap.add_argument('--bs', type=int, default=None)
    ap.add_argument('--steps', type=int, default=None, help='steps per timed trial')
    ap.add_argument('--trials', type=int, default=None)
    ap.add_argument('--sampler', choices=('model', 'inline'), default='model',
                    help='live sampler in the fit loop: ModelSampler (default) or a minimal inline callback')
    ap.add_argument('--threads', type=int, default=1, help='torch threads (1 keeps timings stable on a shared machine)')
    args = ap.parse_args()
    bs = args.bs or (32 if args.quick else 64)
    steps = args.steps or (5 if args.quick else 10)
    trials = args.trials or (3 if args.quick else 7)
    max_len, clip = 24, 1.0
    torch.set_num_threads(args.threads)
    sampler = args.sampler
    if sampler == 'model':
        try: from opto_nb.samplers import ModelSampler
        except ImportError as e:
            print(f"opto_nb.samplers.ModelSampler unavailable ({e}); using the inline sampler")
            sampler = 'inline'

    vocab = CharacterVocab(list('abcdefgh'))
    set_seed(0)
    model0 = LSTMLM(len(vocab), emb_dim=32, hidden_dim=128, n_layers=2)
    opt0 = torch.optim.Adam(model0.parameters(), lr=1e-3)

    def fresh():
        "The same starting point for every run: model, optimizer, baseline and torch RNG."
        m = copy.deepcopy(model0)
        o = torch.optim.Adam(m.parameters(), lr=1e-3)
        o.load_state_dict(opt0.state_dict())
        return m, o

    def run_hand(n, seed):
        m, o = fresh()
        b = MovingBaseline(0.9)
        torch.manual_seed(seed)
        t0, c0 = time.perf_counter(), time.process_time()
        for _ in range(n): hand_step(m, vocab, o, b, bs, max_len, clip)
        return time.perf_counter() - t0, time.process_time() - c0, m

    def run_loop(n, seed):
        m, o = fresh()
        agent = Agent(m, vocab, opt=o, clip=clip, max_len=max_len)
        live = ModelSampler(agent, p_batch=1.0) if sampler == 'model' else InlineSampler()
        learn = Learner([agent, live, Reward(), PolicyGradient(baseline_decay=0.9)])
        torch.manual_seed(seed)
        t0, c0 = time.perf_counter(), time.process_time()
        learn.fit(n, bs=bs)
        return time.perf_counter() - t0, time.process_time() - c0, m

    # same math: identical parameters after the same number of steps from the same state
    *_, mh = run_hand(3, 123)
    *_, ml = run_loop(3, 123)
    same = all(torch.allclose(p, q, atol=1e-6) for p, q in zip(mh.parameters(), ml.parameters()))
    print(f"same parameters after 3 steps (hand loop vs fit loop): {same}")
    assert same, "the fit loop and the hand-written loop disagree: they do not compute the same thing"

    run_hand(2, 0)  # warm-up
    run_loop(2, 0)
    res = {'hand': {'wall': [], 'cpu': []}, 'loop': {'wall': [], 'cpu': []}}
    for t in range(trials):
        # alternate which goes first so drifting machine load hits both equally
        order = (('hand', run_hand), ('loop', run_loop)) if t % 2 == 0 else (('loop', run_loop), ('hand', run_hand))
        for nm, fn in order:
            w, c, _ = fn(steps, t)
            res[nm]['wall'].append(w / steps)
            res[nm]['cpu'].append(c / steps)
    print(f"config: LSTMLM 2x128, bs={bs}, max_len={max_len}, {steps} steps x {trials} trials, "
          f"torch threads={args.threads}, sampler={sampler}")
    # On a shared machine wall time includes waiting for a core; the process CPU time (one torch thread) counts only
    # the work done, so it is the stable figure. Both are printed.
    for clock in ('cpu', 'wall'):
        h, l = res['hand'][clock], res['loop'][clock]
        ratios = [b / a for a, b in zip(h, l)]
        print(f"[{clock:4s}] hand-written torch loop: {statistics.median(h) * 1e3:8.2f} ms/step (median; min "
              f"{min(h) * 1e3:.2f})")
        print(f"[{clock:4s}] Learner fit loop       : {statistics.median(l) * 1e3:8.2f} ms/step (median; min "
              f"{min(l) * 1e3:.2f})")
        print(f"[{clock:4s}] ratio fit/hand: median of per-trial ratios {statistics.median(ratios):.3f}, "
              f"ratio of mins {min(l) / min(h):.3f} (target <= 1.10)")

if __name__ == '__main__':
    main()
