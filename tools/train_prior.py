#!/usr/bin/env python
"""Train the SMILES prior that `opto_nb design` starts from: an `LSTMLM` on the MOSES training set.

The MOSES training set (1,584,663 ZINC molecules, MIT licence) ships inside the `molsets` 0.3.1 wheel as
`moses/dataset/data/train.csv.gz`; the wheel is fetched with `pip download --no-deps` (never installed) and the csv
is read straight out of it. The run is resumable (`--resume`), checkpoints atomically every `--ckpt-minutes` and on
SIGTERM/SIGINT, samples and logs validity every `--sample-minutes`, and when training ends it evaluates 10,000
samples and writes the package files `opto_nb/data/prior_moses.pt` (float16 weights) and `prior_moses.json`.
Novelty is measured against every molecule of the file read. `--init FILE` continues from a model this script wrote
and `--skip-molecules N` leaves out the molecules that model was trained on; the shipped prior was trained in two
such stages (tools/README.md gives the commands).

    python tools/train_prior.py --ckpt-dir /tmp/prior_ckpt --hours 3
    python tools/train_prior.py --ckpt-dir /tmp/prior_ckpt --resume      # after a crash or kill
"""
import argparse, csv, multiprocessing, datetime, gzip, hashlib, io, json, math, os, pickle, platform, signal
import subprocess, sys, time, zipfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))            # the repository's opto_nb, also when it is not installed
from opto_nb.models import LSTMLM, RegexVocab, SMILES_REGEX                          # noqa: E402
from opto_nb.utils import (atomic_save, atomic_write, get_rng_state, set_rng_state, set_seed,  # noqa: E402
                           clean_temporaries, LineWriter)

MOSES_VERSION = '0.3.1'
WHEEL = f'molsets-{MOSES_VERSION}-py3-none-any.whl'
MEMBER = 'moses/dataset/data/train.csv.gz'
FORMAT = 'opto_nb.design.model/1'
CACHE_VERSION = 1
# settings that define the training run: a resumed run must keep them (it reads them from the checkpoint)
TRAINING_KEYS = ('max_molecules', 'skip_molecules', 'init', 'n_valid', 'max_tokens', 'emb_dim', 'hidden_dim',
                 'n_layers', 'dropout', 'batch_size', 'bucket', 'lr', 'min_lr', 'warmup', 'decay_frac', 'clip',
                 'weight_decay', 'seed', 'randomize')


# ------------------------------------------------------------------------------------------------------------ arguments
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description="Train opto_nb's shipped SMILES prior (LSTMLM + RegexVocab) on the MOSES training set; resumable.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    g = p.add_argument_group('data')
    g.add_argument('--cache-dir', default=str(Path.home() / '.cache' / 'opto_nb' / 'moses'),
                   help="folder for the molsets wheel (downloaded with `pip download --no-deps` when missing) and the "
                        "prepared (parsed, tokenized) data set")
    g.add_argument('--wheel', default=None,
                   help=f"path of an already downloaded {WHEEL}; default: look in --cache-dir, else download it there")
    g.add_argument('--max-molecules', type=int, default=None,
                   help="use only the first N molecules of the file; default: all 1,584,663. The file is ordered, "
                        "not shuffled: its later molecules are harder for a model of its first ones, so a prefix is "
                        "not a random sample")
    g.add_argument('--skip-molecules', type=int, default=0,
                   help="leave the first N molecules of the file out of training and validation (with --init: the "
                        "molecules the starting model was trained on, its --max-molecules)")
    g.add_argument('--n-valid', type=int, default=10000,
                   help="molecules held out (seeded split) for the validation NLL")
    g.add_argument('--max-tokens', type=int, default=100, help="drop molecules longer than this many tokens")
    g = p.add_argument_group('model')
    g.add_argument('--emb-dim', type=int, default=64, help="LSTMLM token embedding size")
    g.add_argument('--hidden-dim', type=int, default=256, help="LSTMLM hidden size")
    g.add_argument('--n-layers', type=int, default=2, help="LSTMLM layers")
    g.add_argument('--dropout', type=float, default=0.0, help="LSTMLM dropout (0 is fine for about one epoch)")
    g.add_argument('--init', default=None, metavar='FILE',
                   help="start from the weights of a model file this script wrote (e.g. opto_nb/data/prior_moses.pt) "
                        "instead of a random initialisation; its architecture and vocabulary must match")
    g = p.add_argument_group('optimisation')
    g.add_argument('--batch-size', type=int, default=128, help="molecules per step")
    g.add_argument('--bucket', type=int, default=64,
                   help="length bucketing: every chunk of BUCKET batches is sorted by length before it is cut into "
                        "batches (cuts padding); 1 turns bucketing off")
    g.add_argument('--lr', type=float, default=1e-3, help="Adam peak learning rate")
    g.add_argument('--min-lr', type=float, default=5e-5, help="learning rate at the end of the decay")
    g.add_argument('--warmup', type=int, default=300, help="linear warm-up steps")
    g.add_argument('--decay-frac', type=float, default=0.25,
                   help="schedule: warm-up, constant, then a cosine decay over the last DECAY_FRAC of the run (of "
                        "--steps, or of --hours: the decay starts when that share of the time is left)")
    g.add_argument('--randomize', type=float, default=0.0, metavar='P',
                   help="share of every batch's molecules spelled as a random SMILES of the same molecule (atoms in "
                        "random order, drawn anew each step) instead of the canonical one; 0: canonical only. A prior "
                        "that knows random spellings anchors a design agent trained on them (its `augment`)")
    g.add_argument('--clip', type=float, default=1.0, help="gradient-norm clipping")
    g.add_argument('--weight-decay', type=float, default=0.0, help="Adam weight decay")
    g.add_argument('--seed', type=int, default=0, help="seed of the split, the data order, initialisation and samples")
    g = p.add_argument_group('stopping (whichever comes first)')
    g.add_argument('--steps', type=int, default=None, help="training steps; default: one epoch")
    g.add_argument('--hours', type=float, default=None,
                   help="time budget of the training loop (data preparation and the final evaluation not counted); "
                        "the loop also stops at 1.1x this if the decay runs slower than planned")
    g.add_argument('--minutes', type=float, default=None,
                   help="the same budget in minutes (for tests); overrides --hours")
    g = p.add_argument_group('checkpoints, logging, evaluation')
    g.add_argument('--ckpt-dir', default=str(ROOT / 'runs' / 'prior_ckpt'),
                   help="checkpoint folder (checkpoint.pt, log.csv, figures.json, final_fp32.pt)")
    g.add_argument('--resume', action='store_true',
                   help="continue from CKPT_DIR/checkpoint.pt (training settings come from the checkpoint; --hours, "
                        "--minutes, --steps and the runtime options given on the command line apply)")
    g.add_argument('--ckpt-minutes', type=float, default=5.0,
                   help="write a checkpoint this often (and on SIGTERM/SIGINT)")
    g.add_argument('--sample-minutes', type=float, default=20.0,
                   help="this often: validation NLL and validity of --sample-n molecules, logged to CKPT_DIR/log.csv")
    g.add_argument('--sample-n', type=int, default=1000, help="molecules sampled at every periodic evaluation")
    g.add_argument('--n-eval', type=int, default=10000, help="molecules sampled for the final figures")
    g.add_argument('--temperature', type=float, default=1.0, help="sampling temperature of the evaluations")
    g.add_argument('--out', default=str(ROOT / 'opto_nb' / 'data' / 'prior_moses.pt'),
                   help="the package file written at the end (its .json twin is written beside it)")
    g.add_argument('--no-package', action='store_true', help="do not write --out (tests); figures still go to CKPT_DIR")
    g.add_argument('--threads', type=int, default=2, help="torch threads and data-preparation processes")
    g.add_argument('--adapt-threads', action='store_true',
                   help="for a shared machine: every --adapt-minutes run a few steps on the other of 1 and --threads "
                        "threads and keep the faster (on an overloaded machine 1 thread can beat 2; the gradients are "
                        "the same either way)")
    g.add_argument('--adapt-minutes', type=float, default=5.0, help="how often --adapt-threads tries the other count")
    g.add_argument('--progress-seconds', type=float, default=30.0,
                   help="progress line interval when stdout is not a terminal")
    return p


def explicit_args(parser, argv):
    "Names of the options given on the command line (not defaults)."
    sup = argparse.ArgumentParser(add_help=False)
    for a in parser._actions:
        if a.option_strings and a.dest != 'help':
            kw = {'dest': a.dest, 'default': argparse.SUPPRESS}
            if isinstance(a, argparse._StoreTrueAction): sup.add_argument(*a.option_strings, action='store_true', **kw)
            else: sup.add_argument(*a.option_strings, type=a.type, **kw)
    return set(vars(sup.parse_args(argv)))


def check_args(a):
    def bad(flag, msg): raise SystemExit(f"train_prior: `--{flag}` {msg}")
    for k in ('n_valid', 'max_tokens', 'emb_dim', 'hidden_dim', 'n_layers', 'batch_size', 'bucket', 'sample_n',
              'n_eval', 'threads'):
        if getattr(a, k) < 1: bad(k.replace('_', '-'), f"must be >= 1, got {getattr(a, k)}")
    if a.skip_molecules < 0: bad('skip-molecules', f"must be >= 0, got {a.skip_molecules}")
    if a.max_molecules is not None and a.max_molecules <= a.skip_molecules + a.n_valid + a.batch_size:
        bad('max-molecules', "must exceed --skip-molecules + --n-valid + --batch-size "
                             f"({a.skip_molecules + a.n_valid + a.batch_size}), got {a.max_molecules}")
    if a.init is not None and not Path(a.init).is_file(): bad('init', f"{a.init} does not exist")
    if not 0 <= a.dropout < 1: bad('dropout', f"must be in [0, 1), got {a.dropout}")
    if not 0 <= a.randomize <= 1: bad('randomize', f"must be in [0, 1], got {a.randomize}")
    for k in ('lr', 'clip', 'ckpt_minutes', 'adapt_minutes', 'sample_minutes', 'temperature', 'progress_seconds'):
        if not getattr(a, k) > 0: bad(k.replace('_', '-'), f"must be > 0, got {getattr(a, k)}")
    if not 0 <= a.min_lr <= a.lr: bad('min-lr', f"must be in [0, --lr], got {a.min_lr}")
    if not 0 < a.decay_frac < 1: bad('decay-frac', f"must be in (0, 1), got {a.decay_frac}")
    if a.warmup < 0 or a.weight_decay < 0: bad('warmup/--weight-decay', "must be >= 0")
    if a.steps is not None and a.steps < 1: bad('steps', f"must be >= 1, got {a.steps}")
    if a.hours is not None and not a.hours > 0: bad('hours', f"must be > 0, got {a.hours}")
    if a.minutes is not None and not a.minutes > 0: bad('minutes', f"must be > 0, got {a.minutes}")


# ------------------------------------------------------------------------------------------------------------ data
def log(msg):
    print(f"[{datetime.datetime.now():%Y-%m-%d %H:%M:%S}] {msg}", flush=True)


def get_wheel(args) -> Path:
    ("The molsets wheel: --wheel, else CACHE_DIR/WHEEL, else downloaded there with pip (no dependencies, never "
     "installed).")
    if args.wheel:
        p = Path(args.wheel)
        if not p.is_file(): raise SystemExit(f"train_prior: `--wheel` {p} does not exist; drop the flag to download it")
        return p
    cache = Path(args.cache_dir)
    cache.mkdir(parents=True, exist_ok=True)
    p = cache / WHEEL
    if p.is_file(): return p
    log(f"downloading {WHEEL} into {cache} (pip download --no-deps; molsets is not installed)")
    r = subprocess.run([sys.executable, '-m', 'pip', 'download', '--no-deps', f'molsets=={MOSES_VERSION}', '-d',
                        str(cache)])
    if r.returncode != 0 or not p.is_file():
        raise SystemExit(f"train_prior: `pip download --no-deps molsets=={MOSES_VERSION} -d {cache}` failed; download "
                         f"{WHEEL} by hand and pass --wheel PATH")
    return p


def read_moses(wheel: Path):
    "The SMILES of MOSES's train.csv.gz, read straight out of the wheel (first line is the header `SMILES`)."
    with zipfile.ZipFile(wheel) as z:
        lines = gzip.decompress(z.read(MEMBER)).decode().splitlines()
    if not lines or lines[0].strip() != 'SMILES':
        raise SystemExit(f"train_prior: {wheel}!{MEMBER} does not start with the header `SMILES`; is it molsets "
                         f"{MOSES_VERSION}?")
    return [ln.strip() for ln in lines[1:] if ln.strip()]


def _canon_chunk(smiles):
    from rdkit import RDLogger
    RDLogger.DisableLog('rdApp.*')
    from opto_nb.chem import canonicalize
    return canonicalize(list(smiles))


def _tokenize_chunk(smiles):
    tok = RegexVocab([])
    return [tok.tokenize(s) for s in smiles]


def _encode_chunk(job):
    itos, smiles, width = job
    v = RegexVocab(itos[4:], strict=True)
    out = np.zeros((len(smiles), width), dtype=np.uint8)
    for i, s in enumerate(smiles):
        ids = v.encode(s, add_eos=True)
        out[i, :len(ids)] = ids
    return out


def _chunks(xs, n):
    return [xs[i:i + n] for i in range(0, len(xs), n)]


def prepare_data(args):
    ("Parsed, tokenized MOSES training set (cached in --cache-dir): dict with tokens, lengths, canonical SMILES, "
     "vocabulary.")
    wheel = get_wheel(args)
    tag = 'all' if args.max_molecules is None else str(args.max_molecules)
    cache = Path(args.cache_dir) / f'moses_train_{tag}_maxtok{args.max_tokens}.pkl'
    if cache.is_file():
        with open(cache, 'rb') as f: d = pickle.load(f)
        if d.get('version') == CACHE_VERSION:
            log(f"prepared data from {cache}: {len(d['lengths']):,} molecules, vocabulary of {len(d['itos'])}")
            return d
    t0 = time.time()
    raw = read_moses(wheel)
    n_file = len(raw)
    if args.max_molecules is not None: raw = raw[:args.max_molecules]
    log(f"read {n_file:,} SMILES from {wheel.name}!{MEMBER}; parsing {len(raw):,} with RDKit on {args.threads} "
        f"processes")
    chunks = _chunks(raw, 20000)
    with ProcessPoolExecutor(args.threads, mp_context=multiprocessing.get_context('spawn')) as ex:
        canon = [c for part in ex.map(_canon_chunk, chunks) for c in part]
        keep = [i for i, c in enumerate(canon) if c is not None]
        n_unparsable = len(raw) - len(keep)
        smiles, canon = [raw[i] for i in keep], [canon[i] for i in keep]
        toks = [t for part in ex.map(_tokenize_chunk, _chunks(smiles, 20000)) for t in part]
        ok = [i for i, t in enumerate(toks) if len(t) <= args.max_tokens]
        n_long = len(smiles) - len(ok)
        smiles, canon = [smiles[i] for i in ok], [canon[i] for i in ok]
        itos = RegexVocab(sorted({t for tt in toks for t in tt})).itos
        del toks
        if len(itos) > 255: raise SystemExit(f"train_prior: vocabulary of {len(itos)} tokens does not fit uint8")
        width = args.max_tokens + 1
        tokens = np.concatenate(list(ex.map(_encode_chunk, [(itos, c, width) for c in _chunks(smiles, 20000)])))
    lengths = (tokens != 0).sum(1).astype(np.int16)
    tokens = np.ascontiguousarray(tokens[:, :int(lengths.max())])
    sha = hashlib.sha256(wheel.read_bytes()).hexdigest()
    d = dict(version=CACHE_VERSION, wheel=wheel.name, wheel_sha256=sha, n_file=n_file, n_read=len(raw),
             n_unparsable=n_unparsable, n_too_long=n_long, itos=list(itos), tokens=tokens, lengths=lengths,
             canonical=canon, prep_seconds=time.time() - t0)
    atomic_write(cache, lambda f: pickle.dump(d, f, protocol=pickle.HIGHEST_PROTOCOL))
    log(f"prepared {len(lengths):,} molecules ({n_unparsable} unparsable, {n_long} longer than {args.max_tokens} "
        f"tokens "
        f"dropped), vocabulary of {len(itos)}, {tokens.shape[1]} tokens at most, in {time.time() - t0:.0f}s -> {cache}")
    return d


def split(n, n_valid, seed, skip=0):
    "Seeded train/validation split of molecules `skip..n-1`: (train indices, validation indices)."
    perm = skip + np.random.default_rng([seed, 7]).permutation(n - skip)
    return np.sort(perm[n_valid:]), np.sort(perm[:n_valid])


def load_init(path, args, vocab):
    "The state dict (float32) of the model file `path`, after checking its format, architecture and vocabulary."
    d = torch.load(path, map_location='cpu', weights_only=False)
    if not isinstance(d, dict) or d.get('format') != FORMAT:
        raise SystemExit(f"train_prior: `--init` {path} is not a model file of format {FORMAT}")
    arch = {'emb_dim': args.emb_dim, 'hidden_dim': args.hidden_dim, 'n_layers': args.n_layers}
    if d['arch'] != arch:
        raise SystemExit(f"train_prior: `--init` {path} has architecture {d['arch']}, this run {arch}; pass "
                         + ' '.join(f"--{k.replace('_', '-')} {v}" for k, v in d['arch'].items()))
    if list(d['vocab']) != list(vocab.itos):
        raise SystemExit(f"train_prior: `--init` {path} has another vocabulary than the prepared data")
    return {k: v.float() for k, v in d['state_dict'].items()}, d


def epoch_batches(train_idx, lengths, batch_size, bucket, seed, epoch):
    ("The batches of one epoch, a function of (seed, epoch) only: shuffled, sorted by length within chunks, batch "
     "order shuffled.")
    rng = np.random.default_rng([seed, 11, epoch])
    idx = train_idx[rng.permutation(len(train_idx))]
    chunk = batch_size * bucket
    batches = []
    for s in range(0, len(idx), chunk):
        c = idx[s:s + chunk]
        c = c[np.argsort(lengths[c], kind='stable')]
        batches.extend(c[i:i + batch_size] for i in range(0, len(c), batch_size))
    order = rng.permutation(len(batches))
    return [batches[i] for i in order]


# ------------------------------------------------------------------------------------------------------------ model
def make_model(args, vocab_size):
    return LSTMLM(vocab_size, emb_dim=args.emb_dim, hidden_dim=args.hidden_dim, n_layers=args.n_layers,
                  dropout=args.dropout)


def batch_tensor(tokens, lengths, idx):
    L = int(lengths[idx].max())
    return torch.from_numpy(tokens[idx, :L].astype(np.int64))


def respell(x, idx, canonical, vocab, args, step):
    ("Batch `x` with a share `args.randomize` of its molecules spelled as a random SMILES (a function of seed and "
     "step, so a resumed run draws the same); a spelling with a token outside the vocabulary or too long is not used.")
    from opto_nb.chem import randomize_smiles
    rng = np.random.default_rng([args.seed, 13, step])
    pick = np.flatnonzero(rng.random(len(idx)) < args.randomize)
    if not len(pick): return x
    seqs = [row[:n] for row, n in zip(x.tolist(), (x != 0).sum(1).tolist())]
    for i, s in zip(pick, randomize_smiles([canonical[idx[i]] for i in pick], rng)):
        toks = vocab.tokenize(s) if s is not None else None
        if toks and len(toks) <= args.max_tokens and all(t in vocab for t in toks):
            seqs[i] = vocab.encode(s, add_eos=True)
    out = torch.zeros(len(seqs), max(map(len, seqs)), dtype=torch.long)
    for i, ids in enumerate(seqs): out[i, :len(ids)] = torch.tensor(ids)
    return out


def nll_sum(model, x):
    "Summed negative log-likelihood (nats) and token count of `x` `[n, L]` (targets incl. `<eos>`, padding ignored)."
    inp = torch.cat([x.new_full((len(x), 1), model.bos_idx), x[:, :-1]], 1)
    logits, _ = model.decode(inp, None, None)
    logits = logits + model._never_generate      # as the model's own log-softmax: <pad>/<bos> are never generated
    nll = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), x.reshape(-1), ignore_index=model.pad_idx,
                          reduction='sum')
    return nll, int((x != model.pad_idx).sum())


@torch.no_grad()
def valid_nll(model, tokens, lengths, idx, bs=500):
    "Validation NLL: (nats per token, nats per molecule)."
    model.eval()
    idx = idx[np.argsort(lengths[idx], kind='stable')]
    tot, ntok = 0.0, 0
    for s in range(0, len(idx), bs):
        nll, n = nll_sum(model, batch_tensor(tokens, lengths, idx[s:s + bs]))
        tot += float(nll)
        ntok += n
    model.train()
    return tot / ntok, tot / len(idx)


@torch.no_grad()
def sample_smiles(model, vocab, n, temperature, seed, bs=1000):
    "`n` SMILES sampled at `temperature`, from a fixed seed and without touching the global RNG streams."
    model.eval()
    out = []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for s in range(0, n, bs):
            toks, _ = model.sample_no_grad(min(bs, n - s), max_len=100, temperature=temperature)
            out.extend(vocab.decode_batch(toks))
    model.train()
    return out


def sample_figures(smiles, reference=None):
    ("validity (parses, non-empty), uniqueness (distinct canonical / valid), novelty (distinct valid not in "
     "`reference` / distinct valid).")
    from rdkit import RDLogger
    RDLogger.DisableLog('rdApp.*')
    from opto_nb.chem import canonicalize
    can = canonicalize(list(smiles)) if smiles else []
    valid = [c for c in can if c]
    distinct = set(valid)
    out = dict(n_samples=len(smiles), n_valid=len(valid), n_distinct=len(distinct),
               validity=len(valid) / len(smiles) if smiles else float('nan'),
               uniqueness=len(distinct) / len(valid) if valid else float('nan'))
    if reference is not None:
        novel = [c for c in distinct if c not in reference]
        out.update(n_novel=len(novel), novelty=len(novel) / len(distinct) if distinct else float('nan'))
    return out


# ------------------------------------------------------------------------------------------------------------ schedule
def lr_at(step, st, args):
    "Learning rate of (0-based) `step`: linear warm-up, constant, cosine decay from `decay_start` to `end_step`."
    if args.warmup and step < args.warmup: return args.lr * (step + 1) / args.warmup
    ds, end = st['decay_start'], st['end_step']
    if ds is None or step < ds: return args.lr
    f = min(1.0, (step - ds) / max(1, end - ds))
    return args.min_lr + 0.5 * (args.lr - args.min_lr) * (1 + math.cos(math.pi * f))


def maybe_start_decay(st, args, budget_s):
    ("Fix the decay window when the step plan or the time budget says so (recorded in the checkpoint, so resumes "
     "follow it).")
    if st['decay_start'] is not None: return False
    s, f = st['step'], args.decay_frac
    if args.steps is not None and s >= round(args.steps * (1 - f)):
        st['decay_start'], st['end_step'] = s, args.steps
        return True
    if budget_s is not None and st['train_seconds'] >= budget_s * (1 - f):
        # the decay takes the same share of steps as of time, at the throughput measured so far
        end = s + max(1, round(s * f / (1 - f)))
        st['decay_start'], st['end_step'] = s, min(end, args.steps) if args.steps is not None else end
        return True
    return False


# ------------------------------------------------------------------------------------------------------------ progress
LOG_FIELDS = ['step', 'epoch', 'molecules_seen', 'tokens_seen', 'train_loss', 'valid_nll_token', 'valid_nll_molecule',
              'validity', 'uniqueness', 'lr', 'train_hours', 'time']


def write_log(ckpt_dir, rows):
    buf = io.StringIO()
    w = csv.DictWriter(buf, LOG_FIELDS)
    w.writeheader()
    w.writerows(rows)
    atomic_write(Path(ckpt_dir) / 'log.csv', buf.getvalue(), mode='w')


# ------------------------------------------------------------------------------------------------------------ main
def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    args = parser.parse_args(argv)
    given = explicit_args(parser, argv)
    ckpt_dir = Path(args.ckpt_dir)
    ckpt_path = ckpt_dir / 'checkpoint.pt'
    ck = None
    if args.resume:
        if not ckpt_path.is_file(): raise SystemExit(f"train_prior: `--resume` but there is no {ckpt_path}; drop "
                                                     f"--resume to start")
        clean_temporaries(ckpt_dir)
        ck = torch.load(ckpt_path, map_location='cpu', weights_only=False)
        saved = ck['args']
        clash = [k for k in TRAINING_KEYS if k in given and getattr(args, k) != saved.get(k)]
        if clash:
            raise SystemExit("train_prior: a resumed run keeps its training settings; drop " +
                             ', '.join(f"--{k.replace('_', '-')} (checkpoint has {saved.get(k)!r})" for k in clash))
        for k, v in saved.items():
            if k not in given and k != 'resume': setattr(args, k, v)    # everything not given comes from the checkpoint
        args.resume = True
        # a new budget given in hours replaces one in minutes
        if 'hours' in given and 'minutes' not in given: args.minutes = None
    elif ckpt_path.exists():
        raise SystemExit(f"train_prior: {ckpt_path} exists; pass --resume to continue it or choose another --ckpt-dir")
    check_args(args)
    torch.set_num_threads(args.threads)
    budget_s = args.minutes * 60 if args.minutes is not None else args.hours * 3600 if args.hours is not None else None
    t_session = time.time()
    log(f"train_prior {'resuming' if ck else 'starting'}: " + ' '.join(sys.argv))

    data = prepare_data(args)
    tokens, lengths = data['tokens'], data['lengths']
    vocab = RegexVocab(data['itos'][4:])
    assert vocab.itos == data['itos']
    train_idx, val_idx = split(len(lengths), args.n_valid, args.seed, args.skip_molecules)
    steps_per_epoch = len(epoch_batches(train_idx, lengths, args.batch_size, args.bucket, args.seed, 0))
    if args.steps is None: args.steps = steps_per_epoch      # default: one epoch
    pad_bucketed = padding_share(epoch_batches(train_idx, lengths, args.batch_size, args.bucket, args.seed, 0)[:500],
                                 lengths)
    pad_random = padding_share(epoch_batches(train_idx, lengths, args.batch_size, 1, args.seed, 0)[:500], lengths)
    log(f"{len(train_idx):,} training / {len(val_idx):,} validation molecules, {steps_per_epoch} steps per epoch of "
        f"{args.batch_size}; padding {pad_bucketed:.1%} with length buckets ({pad_random:.1%} without)")

    set_seed(args.seed)
    model = make_model(args, len(vocab))
    opt = torch.optim.Adam(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    n_params = sum(p.numel() for p in model.parameters())
    if ck is None:
        st = dict(step=0, epoch=0, pos=0, molecules=0, tokens=0, train_seconds=0.0, wall_seconds=0.0,
                  decay_start=None, end_step=None, next_sample=args.sample_minutes * 60, n_sample_evals=0,
                  loss_ema=None, history=[], done=False, sessions=0, init=None)
        if args.init is not None:
            weights, d = load_init(args.init, args, vocab)
            model.load_state_dict(weights)
            sha = hashlib.sha256(Path(args.init).read_bytes()).hexdigest()
            st['init'] = dict(file=Path(args.init).name, sha256=sha, figures=d.get('figures'),
                              command=(d.get('training') or {}).get('command'))
            log(f"starting from the weights of {args.init}")
        ckpt_dir.mkdir(parents=True, exist_ok=True)
    else:
        model.load_state_dict(ck['model'])
        opt.load_state_dict(ck['optimizer'])
        st = ck['state']
        set_rng_state(ck['rng'])
        log(f"resumed at step {st['step']} (epoch {st['epoch']}, batch {st['pos']}), {st['train_seconds'] / 3600:.2f} "
            f"h trained")
    st['sessions'] += 1
    log(f"LSTMLM emb {args.emb_dim} hidden {args.hidden_dim} layers {args.n_layers}: {n_params:,} parameters; "
        f"{args.threads} threads; stop at {args.steps} steps" + (f" or {budget_s / 3600:.2f} h" if budget_s else ''))

    def save_ckpt(reason):
        st['wall_seconds'] += time.time() - save_ckpt.t
        save_ckpt.t = time.time()
        atomic_save({'model': model.state_dict(), 'optimizer': opt.state_dict(), 'state': st, 'rng': get_rng_state(),
                     'args': {k: v for k, v in vars(args).items()}, 'vocab': list(vocab.itos)}, ckpt_path)
        write_log(ckpt_dir, st['history'])
        log(f"checkpoint ({reason}) at step {st['step']} -> {ckpt_path}")
    save_ckpt.t = t_session

    stop = {'sig': None}
    def on_signal(signum, frame): stop['sig'] = signum
    old = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}

    def periodic_eval():
        vt, vm = valid_nll(model, tokens, lengths, val_idx)
        smp = sample_smiles(model, vocab, args.sample_n, args.temperature,
                            seed=args.seed * 100003 + 1 + st['n_sample_evals'])
        fig = sample_figures(smp)
        st['n_sample_evals'] += 1
        row = dict(step=st['step'], epoch=round(st['molecules'] / len(train_idx), 4), molecules_seen=st['molecules'],
                   tokens_seen=st['tokens'], train_loss=round(st['loss_ema'], 4) if st['loss_ema'] is not None else '',
                   valid_nll_token=round(vt, 4), valid_nll_molecule=round(vm, 3), validity=round(fig['validity'], 4),
                   uniqueness=round(fig['uniqueness'], 4), lr=f"{lr_at(max(0, st['step'] - 1), st, args):.3g}",
                   train_hours=round(st['train_seconds'] / 3600,
                                     3), time=f"{datetime.datetime.now():%Y-%m-%d %H:%M:%S}")
        st['history'].append(row)
        write_log(ckpt_dir, st['history'])
        return row

    interactive = sys.stdout.isatty()
    def say(msg):
        msg = f"[{datetime.datetime.now():%Y-%m-%d %H:%M:%S}] {msg}"
        if interactive: tqdm.write(msg, file=sys.stdout)
        else: print(msg, flush=True)
    bar = tqdm(total=st['end_step'] or args.steps, initial=min(st['step'], args.steps),
               file=sys.stdout if interactive else LineWriter(sys.stdout),
               mininterval=1.0 if interactive else args.progress_seconds,
               maxinterval=max(60.0, args.progress_seconds * 2),
               smoothing=0.05, ascii=not interactive, dynamic_ncols=interactive, desc='prior', unit='step')
    last = st['history'][-1] if st['history'] else {}
    def postfix():
        if st['loss_ema'] is None: return bar.set_postfix_str('starting', refresh=False)
        bar.set_postfix_str(f"loss {st['loss_ema']:.3f} val_nll {last.get('valid_nll_token', float('nan'))} "
                            f"valid {last.get('validity', float('nan'))} ep {st['molecules'] / len(train_idx):.3f} "
                            f"lr {lr_at(max(0, st['step'] - 1), st, args):.2g} thr {torch.get_num_threads()}",
                            refresh=False)
    batches, batches_epoch = None, None
    last_ckpt = time.time()
    pair = sorted({1, args.threads}) if args.threads > 1 else [1, 2]
    cur_threads, recent, trial, next_adapt = args.threads, [], None, time.time() + args.adapt_minutes * 60
    model.train()
    try:
        while not st['done']:
            hard_stop = budget_s is not None and st['train_seconds'] >= budget_s * 1.1
            if st['step'] >= (st['end_step'] or args.steps) or st['step'] >= args.steps or hard_stop:
                if hard_stop: say(f"time budget x1.1 reached at step {st['step']}; stopping")
                st['done'] = True
                break
            if batches_epoch != st['epoch']:
                batches = epoch_batches(train_idx, lengths, args.batch_size, args.bucket, args.seed, st['epoch'])
                batches_epoch = st['epoch']
            if args.adapt_threads and trial is None and time.time() >= next_adapt and len(recent) >= 3:
                trial = {'threads': pair[0] if cur_threads == pair[1] else pair[1], 'times': []}
                torch.set_num_threads(trial['threads'])
            t0 = time.time()
            idx = batches[st['pos']]
            x = batch_tensor(tokens, lengths, idx)
            if args.randomize > 0: x = respell(x, idx, data['canonical'], vocab, args, st['step'])
            for g in opt.param_groups: g['lr'] = lr_at(st['step'], st, args)
            nll, ntok = nll_sum(model, x)
            loss = nll / ntok
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), args.clip)
            opt.step()
            lv = loss.detach().item()
            if not math.isfinite(lv): raise SystemExit(f"train_prior: loss is {lv} at step {st['step']}; lower --lr")
            st['loss_ema'] = lv if st['loss_ema'] is None else 0.98 * st['loss_ema'] + 0.02 * lv
            st['step'] += 1
            st['pos'] += 1
            st['molecules'] += len(idx)
            st['tokens'] += ntok
            if st['pos'] >= len(batches):
                st['epoch'] += 1
                st['pos'] = 0
            dt = time.time() - t0
            st['train_seconds'] += dt
            if args.adapt_threads:
                if trial is None: recent = (recent + [dt / ntok])[-5:]
                else:
                    trial['times'].append(dt / ntok)
                    if len(trial['times']) == 3:
                        alt, base = float(np.median(trial['times'])), float(np.median(recent))
                        if alt < 0.9 * base:
                            say(f"threads {cur_threads} -> {trial['threads']}: {alt * 1e6:.0f} vs {base * 1e6:.0f} "
                                f"us/token")
                            cur_threads, recent = trial['threads'], trial['times']
                        torch.set_num_threads(cur_threads)
                        trial, next_adapt = None, time.time() + args.adapt_minutes * 60
            if maybe_start_decay(st, args, budget_s):
                say(f"learning-rate decay from step {st['decay_start']} to {st['end_step']}")
                bar.total = st['end_step']
                bar.refresh()
            if st['train_seconds'] >= st['next_sample']:
                t1 = time.time()
                last = periodic_eval()
                st['train_seconds'] += time.time() - t1      # evaluations count against the budget
                st['next_sample'] = st['train_seconds'] + args.sample_minutes * 60
                say(f"eval step {last['step']}: val NLL {last['valid_nll_token']}/token, validity "
                           f"{last['validity']}, uniqueness {last['uniqueness']} ({args.sample_n} samples)")
            postfix()
            bar.update(1)
            if stop['sig'] is not None:
                bar.close()
                save_ckpt(f"signal {signal.Signals(stop['sig']).name}")
                log(f"stopped by {signal.Signals(stop['sig']).name}; continue with: python tools/train_prior.py "
                    f"--ckpt-dir {ckpt_dir} --resume")
                sys.exit(128 + stop['sig'])
            if time.time() - last_ckpt >= args.ckpt_minutes * 60:
                save_ckpt('periodic')
                last_ckpt = time.time()
        bar.close()
        save_ckpt('training done')
    finally:
        for s, h in old.items(): signal.signal(s, h)
    finish(args, model, vocab, data, train_idx, val_idx, st, n_params, ckpt_dir, steps_per_epoch)


def padding_share(batches, lengths):
    real = sum(int(lengths[b].sum()) for b in batches)
    full = sum(int(lengths[b].max()) * len(b) for b in batches)
    return 1 - real / full


def finish(args, model, vocab, data, train_idx, val_idx, st, n_params, ckpt_dir, steps_per_epoch):
    "Final figures over --n-eval samples, written to CKPT_DIR/figures.json and (unless --no-package) the package files."
    t0 = time.time()
    log(f"final evaluation: validation NLL and {args.n_eval:,} samples at temperature {args.temperature}")
    vt, vm = valid_nll(model, data['tokens'], data['lengths'], val_idx)
    smp = sample_smiles(model, vocab, args.n_eval, args.temperature, seed=args.seed * 100003)
    reference = set(data['canonical'])
    figs = sample_figures(smp, reference)
    eval_s = time.time() - t0
    wall = st['wall_seconds'] + eval_s      # every session, from its start (data preparation included) to here
    figures = dict(validity=round(figs['validity'], 4), uniqueness=round(figs['uniqueness'], 4),
                   novelty=round(figs['novelty'], 4), n_samples=figs['n_samples'], n_valid=figs['n_valid'],
                   n_distinct=figs['n_distinct'], n_novel=figs['n_novel'], temperature=args.temperature,
                   novelty_reference=f"{len(reference):,} canonical SMILES of the MOSES training file read",
                   valid_nll_per_token=round(vt, 4), valid_nll_per_molecule=round(vm, 3), n_validation=len(val_idx),
                   molecules_seen=st['molecules'], tokens_seen=st['tokens'],
                   epochs=round(st['molecules'] / len(train_idx), 4),
                   steps=st['step'], train_hours=round(st['train_seconds'] / 3600, 3),
                   wall_hours=round(wall / 3600, 3), parameters=n_params)
    training = dict(dataset=dict(name='MOSES training set', source=f"{data['wheel']} ({MEMBER})", licence='MIT',
                                 wheel_sha256=data['wheel_sha256'], molecules_in_file=data['n_file'],
                                 molecules_read=data['n_read'], dropped_unparsable=data['n_unparsable'],
                                 dropped_too_long=data['n_too_long'], skipped_first=args.skip_molecules,
                                 n_train=len(train_idx), n_valid=len(val_idx),
                                 smiles='as in the file (RDKit-canonical); molecules RDKit cannot parse dropped'),
                    tokenizer=dict(cls='opto_nb.models.RegexVocab', pattern=SMILES_REGEX, size=len(vocab)),
                    init=st.get('init'),
                    steps=st['step'], steps_per_epoch=steps_per_epoch, batch_size=args.batch_size, bucket=args.bucket,
                    optimizer='Adam', lr=args.lr, min_lr=args.min_lr, warmup=args.warmup,
                    schedule=f"linear warm-up {args.warmup} steps, constant, cosine decay steps "
                             f"{st['decay_start']}-{st['end_step']}",
                    clip=args.clip, weight_decay=args.weight_decay, dropout=args.dropout, seed=args.seed,
                    randomize=args.randomize,
                    threads=args.threads, adapt_threads=args.adapt_threads, sessions=st['sessions'],
                    torch=torch.__version__,
                    rdkit=__import__('rdkit').__version__, python=platform.python_version(),
                    machine=f"{platform.machine()}, {os.cpu_count()} CPUs",
                    finished=f"{datetime.datetime.now():%Y-%m-%d %H:%M:%S}",
                    command='python tools/train_prior.py ' + ' '.join(
                        f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items()
                        if k in TRAINING_KEYS + ('steps', 'hours', 'minutes') and v is not None))
    arch = {'emb_dim': args.emb_dim, 'hidden_dim': args.hidden_dim, 'n_layers': args.n_layers}
    atomic_write(ckpt_dir / 'figures.json',
                 json.dumps({'figures': figures, 'training': training, 'arch': arch}, indent=2) + '\n', mode='w')
    atomic_save({'format': FORMAT, 'state_dict': model.state_dict(), 'vocab': list(vocab.itos), 'arch': arch,
                 'config': None, 'dtype': 'float32', 'figures': figures, 'training': training},
                 ckpt_dir / 'final_fp32.pt')
    with open(ckpt_dir / 'samples.txt', 'w') as f: f.write('\n'.join(smp) + '\n')
    targets = dict(validity=0.95, uniqueness=0.99, novelty=0.9)
    print('\nFigures of the prior:')
    for k, v in figures.items():
        verdict = f"   (target >= {targets[k]}: {'met' if v >= targets[k] else 'NOT met'})" if k in targets else ''
        print(f"  {k:24s} {v}{verdict}")
    if args.no_package:
        log(f"--no-package: figures in {ckpt_dir / 'figures.json'}; package file not written")
        return
    out = Path(args.out)
    d = {'format': FORMAT, 'state_dict': {k: v.detach().to(torch.float16) for k, v in model.state_dict().items()},
         'vocab': list(vocab.itos), 'arch': arch, 'config': None, 'dtype': 'float16', 'figures': figures,
         'training': training}
    atomic_save(d, out)
    mb = out.stat().st_size / 1e6
    atomic_write(out.with_suffix('.json'),
                 json.dumps({'file': out.name, 'format': FORMAT, 'dtype': 'float16', 'megabytes': round(mb, 2),
                                                       'arch': arch, 'vocab_size': len(vocab), 'figures': figures,
                                                       'training': training}, indent=2) + '\n', mode='w')
    # the shipped file loads as float32 weights through the package's own loader, and the sampling matches
    from opto_nb.design import load_model
    agent = load_model(out)
    assert all(p.dtype == torch.float32 for p in agent.model.parameters())
    chk = sample_figures(sample_smiles(agent.model, agent.vocab, 1000, args.temperature, seed=12345))
    log(f"wrote {out} ({mb:.2f} MB, float16; loads as float32, validity of 1,000 fresh samples {chk['validity']:.3f}) "
        f"and {out.with_suffix('.json')}")
    if mb > 10: log(f"WARNING: {out} is {mb:.1f} MB, over the 10 MB limit")


if __name__ == '__main__':
    main()
